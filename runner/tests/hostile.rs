//! The runner against hostile modules and inputs: each test pins a class of input that once
//! ended wrongly (a crash, an uncapped resource, an unbounded result, a retryable status for
//! a deterministic failure, a special file replaced), tried over generated cases.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::os::unix::fs::FileTypeExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use runner::entry::Request;
use runner::exec::{execute, Execution, Limits};
use runner::result::{Status, MAX_RESULT_BYTES};
use runner::wasi::{CaptureBuffer, Determinism, OutputSink, StdinSource, WasiConfig};
use serde_json::Value;
use support::Sandbox;

const PAGE: usize = 65536;

fn run_module(
    wat: &str,
    entry: &str,
    max_memory: usize,
    max_table_elements: usize,
) -> runner::exec::Outcome {
    execute(Execution {
        module: wat::parse_str(wat).unwrap(),
        request: Request {
            entry: Some(entry.into()),
            args: Some(Vec::new()),
            ..Request::default()
        },
        limits: Limits {
            fuel: Some(100_000_000),
            max_memory,
            max_table_elements,
            timeout: Some(Duration::from_secs(60)),
        },
        wasi: WasiConfig {
            args: vec!["m.wasm".into()],
            env: Vec::new(),
            preopens: Vec::new(),
            stdin: StdinSource::Null,
            stdout: OutputSink::Capture(CaptureBuffer::new(64)),
            stderr: OutputSink::Capture(CaptureBuffer::new(64)),
            determinism: Determinism::Seeded([0; 32]),
        },
    })
}

/// A module with one memory per entry of `pages` (initial sizes) whose `main` grows every
/// memory one page at a time until each refuses, and returns the pages of all together.
fn multi_memory_module(pages: &[u32]) -> String {
    let memories: String = pages.iter().map(|p| format!("(memory {p})")).collect();
    let grow: String = (0..pages.len())
        .map(|i| {
            format!(
                "(block $d{i} (loop $l{i} (br_if $d{i} (i32.eq (memory.grow {i} (i32.const 1)) (i32.const -1))) (br $l{i})))"
            )
        })
        .collect();
    let sum: String = (0..pages.len())
        .map(|i| format!("(local.set $n (i32.add (local.get $n) (memory.size {i})))"))
        .collect();
    format!("(module {memories} (func (export \"main\") (result i32) (local $n i32) {grow} {sum} (local.get $n)))")
}

/// A module with one table per entry of `sizes` whose `main` grows every table by `step`
/// until each refuses, and returns the elements of all together.
fn multi_table_module(sizes: &[u32], step: u32) -> String {
    let tables: String = sizes
        .iter()
        .map(|s| format!("(table {s} funcref)"))
        .collect();
    let grow: String = (0..sizes.len())
        .map(|i| {
            format!(
                "(block $d{i} (loop $l{i} (br_if $d{i} (i32.eq (table.grow {i} (ref.null func) (i32.const {step})) (i32.const -1))) (br $l{i})))"
            )
        })
        .collect();
    let sum: String = (0..sizes.len())
        .map(|i| format!("(local.set $n (i32.add (local.get $n) (table.size {i})))"))
        .collect();
    format!("(module {tables} (func (export \"main\") (result i32) (local $n i32) {grow} {sum} (local.get $n)))")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Issue: eight `(memory 4096)` ran under a 256 MiB cap. Whatever the number and sizes of
    /// the memories, their sum stays within the cap at instantiation and after growing.
    #[test]
    fn all_memories_together_stay_within_the_memory_cap(
        pages in proptest::collection::vec(0u32..24, 1..8),
        cap_pages in 0usize..64,
    ) {
        let out = run_module(&multi_memory_module(&pages), "main", cap_pages * PAGE, 1000);
        let initial: usize = pages.iter().map(|p| *p as usize).sum();
        if initial > cap_pages {
            prop_assert_eq!(out.status, Status::InvalidModule, "{:?}", out.error);
            prop_assert!(out.error.as_deref().unwrap_or("").contains("--max-memory"));
        } else {
            prop_assert_eq!(out.status, Status::Ok, "{:?}", out.error);
            // Every memory grew until the shared budget ran out: exactly the cap.
            prop_assert_eq!(out.result, Some(vec![Value::from(cap_pages)]));
        }
    }

    /// The same for tables: six tables of 10 million elements each ran at 240 MB.
    #[test]
    fn all_tables_together_stay_within_the_table_cap(
        sizes in proptest::collection::vec(0u32..400, 1..7),
        cap in 0usize..2000,
        step in 1u32..50,
    ) {
        let out = run_module(&multi_table_module(&sizes, step), "main", PAGE, cap);
        let initial: usize = sizes.iter().map(|s| *s as usize).sum();
        if initial > cap {
            prop_assert_eq!(out.status, Status::InvalidModule, "{:?}", out.error);
            prop_assert!(out.error.as_deref().unwrap_or("").contains("--max-table-elements"));
        } else {
            prop_assert_eq!(out.status, Status::Ok, "{:?}", out.error);
            let total = out.result.as_ref().unwrap()[0].as_u64().unwrap() as usize;
            prop_assert!(total <= cap && cap - total < step as usize * sizes.len(), "{total} of {cap}");
        }
    }
}

/// Issue: a loop of `memory.grow` overflowed the native stack of a release build (wasmi's
/// tail-call dispatch), and the runner died without a result. The test profile optimizes
/// wasmi as release does, so this exercises the same dispatch.
#[test]
fn a_memory_grow_loop_runs_to_the_cap_without_crashing() {
    let sb = Sandbox::new();
    let grow = "(module (memory 1) (func (export \"main\") (result i32) (local $n i32) (block $d (loop $l (br_if $d (i32.eq (memory.grow (i32.const 1)) (i32.const -1))) (local.set $n (i32.add (local.get $n) (i32.const 1))) (br $l))) (local.get $n)))";
    let table = "(module (table 1 funcref) (func (export \"main\") (result i32) (local $n i32) (block $d (loop $l (br_if $d (i32.eq (table.grow (ref.null func) (i32.const 1)) (i32.const -1))) (local.set $n (i32.add (local.get $n) (i32.const 1))) (br $l))) (local.get $n)))";
    for (wat, flags, expected) in [
        (grow, ["--max-memory", "256MiB"], 4095),
        (table, ["--max-table-elements", "200000"], 199_999),
    ] {
        let run = sb.call(wat, "main", "[]", &flags);
        assert_eq!((run.code, run.status()), (0, "ok"), "{run:?}");
        assert_eq!(run.line["result"], serde_json::json!([expected]));
    }
}

/// The class behind the crash above: whatever a guest does with `memory.grow` and
/// `table.grow` (millions of calls that change nothing, that fail, in `main` or in the
/// module's `start` function), the run ends with its result. wasmi's fast dispatch leaks a
/// native frame per grow; the runner's fuel slices unwind them (runner/src/exec.rs).
#[test]
fn millions_of_grows_anywhere_end_with_a_result() {
    let sb = Sandbox::new();
    let n = 3_000_000;
    let grow_loop = |op: &str| {
        format!(
            "(local $i i32) (loop $l (drop ({op})) (local.set $i (i32.add (local.get $i) (i32.const 1))) (br_if $l (i32.lt_u (local.get $i) (i32.const {n}))))"
        )
    };
    let cases = [
        // Growth by nothing, in `main`.
        format!("(module (memory 1) (func (export \"main\") (result i32) {} (memory.size)))", grow_loop("memory.grow (i32.const 0)")),
        // Growth that always fails (past the declared maximum).
        format!("(module (memory 1 1) (func (export \"main\") (result i32) {} (memory.size)))", grow_loop("memory.grow (i32.const 1)")),
        format!("(module (table 1 funcref) (func (export \"main\") (result i32) {} (table.size)))", grow_loop("table.grow (ref.null func) (i32.const 0)")),
        // In the start function, which then leaves a mark for `main`.
        format!("(module (memory 1) (global $g (mut i32) (i32.const 0)) (func $s {} (global.set $g (i32.const 1))) (start $s) (func (export \"main\") (result i32) (global.get $g)))", grow_loop("memory.grow (i32.const 0)")),
    ];
    for (i, wat) in cases.iter().enumerate() {
        for fuel in ["0", "1000000000"] {
            let run = sb.call(wat, "main", "[]", &["--fuel", fuel]);
            assert_eq!(
                (run.code, run.status()),
                (0, "ok"),
                "case {i}, fuel {fuel}: {run:?}"
            );
            assert_eq!(run.line["result"], serde_json::json!([1]), "case {i}");
        }
    }
}

/// A module's start function runs once, before `_initialize` and the entry, and its trap is
/// the task's trap.
#[test]
fn the_start_function_runs_first_and_its_trap_is_the_tasks() {
    let sb = Sandbox::new();
    let order = r#"(module (global $g (mut i32) (i32.const 0))
        (func $s (global.set $g (i32.add (i32.mul (global.get $g) (i32.const 10)) (i32.const 1)))) (start $s)
        (func (export "_initialize") (global.set $g (i32.add (i32.mul (global.get $g) (i32.const 10)) (i32.const 2))))
        (func (export "main") (result i32) (global.get $g)))"#;
    let run = sb.call(order, "main", "[]", &[]);
    assert_eq!(run.line["result"], serde_json::json!([12]), "{run:?}");
    let trap = "(module (func $s unreachable) (start $s) (func (export \"main\")))";
    let run = sb.call(trap, "main", "[]", &[]);
    assert_eq!((run.code, run.status()), (2, "trap"), "{run:?}");
    assert!(run.error().contains("unreachable"), "{}", run.error());
    // The moved start function is nobody's entry and is listed nowhere.
    let run = sb.call(
        "(module (func $s) (start $s) (func (export \"f\")))",
        "nope",
        "[]",
        &[],
    );
    assert_eq!(run.status(), "invalid_input");
    assert!(!run.error().contains("wasm-exec:start"), "{}", run.error());
}

/// The pid of `parent`'s child, read from /proc.
fn child_of(parent: u32) -> Option<u32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid …: comm may hold spaces, so read after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            return Some(pid);
        }
    }
    None
}

/// Issue: whatever happens to the run (a stack overflow, an abort, a signal), the runner
/// writes a result with status `error` naming the cause, and exits 1.
#[test]
fn a_worker_that_dies_still_leaves_an_error_result() {
    let sb = Sandbox::new();
    let spin = sb.wat(
        "spin",
        "(module (func (export \"main\") (loop $l (br $l))))",
    );
    for (signal, name) in [
        (11, "SIGSEGV"),
        (6, "SIGABRT"),
        (9, "SIGKILL"),
        (7, "SIGBUS"),
        (4, "SIGILL"),
    ] {
        let _ = std::fs::remove_file(sb.path("out/result.json"));
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("runner"));
        cmd.arg("--wasm")
            .arg(&spin)
            .args([
                "--entry",
                "main",
                "--fuel",
                "0",
                "--timeout",
                "60",
                "--input",
                "",
            ])
            .arg("--output")
            .arg(sb.path("out/result.json"))
            .arg("--termination-log")
            .arg(sb.path("termination-log"))
            .env("TASK_ID", "doomed")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = cmd.spawn().unwrap();
        let started = Instant::now();
        let worker = loop {
            if let Some(w) = child_of(child.id()) {
                break w;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no worker process"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        // Let the worker reach the guest's loop.
        std::thread::sleep(Duration::from_millis(300));
        // Rust's runtime handles the first SIGSEGV or SIGBUS (to report a stack overflow)
        // and, when the signal was not a fault, carries on with the default action
        // restored: a second one kills, as a real fault would have at once.
        for _ in 0..2 {
            let _ = std::process::Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(worker.to_string())
                .status();
            std::thread::sleep(Duration::from_millis(100));
        }
        let out = child.wait_with_output().unwrap();
        let run = sb.read(&out);
        assert_eq!(run.code, 1, "{name}: {run:?}");
        assert_eq!(run.status(), "error", "{name}");
        assert!(
            run.error().contains(&format!("signal {signal} ({name}")),
            "{name}: {}",
            run.error()
        );
        assert_eq!(run.line["task_id"], "doomed");
        assert_eq!(run.file, run.line, "{name}: the result file says the same");
        assert!(run.line["module_sha256"].is_string());
    }
}

/// Issue: an unknown entry on a module with 100 000 exports gave a 1.7 MB error, and a
/// `_start` task with 100 MB of args echoed them. Every author-controlled field is capped
/// and a result is never larger than `MAX_RESULT_BYTES`.
#[test]
fn results_are_bounded_whatever_the_module_and_the_task_give() {
    let sb = Sandbox::new();
    let exports: String = (0..100_000)
        .map(|i| format!("(func (export \"exported_function_with_a_long_name_{i:06}\"))"))
        .collect();
    let wide = sb.wat("wide", &format!("(module {exports})"));
    let start = sb.wat("start", "(module (func (export \"_start\")))");
    let huge_arg = "a".repeat(8 << 20);
    let many_args: Vec<Value> = (0..200_000).map(Value::from).collect();
    let cases: Vec<(&std::path::Path, Value, &str)> = vec![
        (&wide, serde_json::json!({"entry": "nope"}), "error"),
        (
            &wide,
            serde_json::json!({"entry": "e".repeat(1 << 20)}),
            "error",
        ),
        (&start, serde_json::json!({"args": [huge_arg]}), "args"),
        (&start, serde_json::json!({"args": many_args}), "args"),
    ];
    for (module, input, field) in cases {
        let input_path = sb.file("input.json", input.to_string().as_bytes());
        let mut cmd = sb.runner();
        cmd.arg("--wasm")
            .arg(module)
            .arg("--input")
            .arg(&input_path);
        let run = sb.run(&mut cmd);
        let line = run.stdout.lines().last().unwrap();
        assert!(
            line.len() <= 64 * 1024,
            "{field}: a {} byte result",
            line.len()
        );
        assert!(run.file_bytes.len() <= MAX_RESULT_BYTES + 1);
        let elided: Vec<&str> = run.line["elided"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert!(
            elided.contains(&field) || run.line[field].as_str().is_some_and(|e| e.len() <= 4096),
            "{field}: {elided:?} {line:.300}"
        );
        if field == "args" {
            assert_eq!(run.status(), "ok");
            assert!(elided.contains(&"args"), "{elided:?}");
        } else {
            assert_eq!(run.status(), "invalid_input");
            assert!(
                run.error().len() <= 4096 && run.error().contains("more"),
                "{}",
                run.error()
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Issue: `_start` with parameters or results ended as `error` (exit 1: retried as an
    /// infrastructure failure). Any signature but `() -> ()` on `_start` or `_initialize` is
    /// an invalid module, exit 2.
    #[test]
    fn reserved_exports_with_a_signature_are_invalid_modules(
        params in proptest::collection::vec(prop_oneof!["i32", "i64", "f32", "f64"], 0..3),
        results in proptest::collection::vec(prop_oneof!["i32", "i64", "f32", "f64"], 0..3),
        reserved in prop_oneof!["_start", "_initialize"],
    ) {
        prop_assume!(!(params.is_empty() && results.is_empty()));
        let zeros: String = results.iter().map(|t| format!("({t}.const 0)")).collect();
        let wat = format!(
            "(module (func (export \"{reserved}\") (param {}) (result {}) {zeros}) (func (export \"_start_other\")))",
            params.join(" "), results.join(" ")
        );
        let sb = Sandbox::new();
        let module = sb.wat("m", &wat);
        let mut cmd = sb.runner();
        cmd.arg("--wasm").arg(module);
        if reserved == "_initialize" {
            cmd.args(["--entry", "_start_other"]);
        }
        let run = sb.run(&mut cmd);
        prop_assert_eq!((run.code, run.status()), (2, "invalid_module"), "{:?}", run);
        prop_assert!(run.error().contains(reserved.as_str()));
    }
}

/// Issue: `--output /dev/null` was replaced by a regular file through the temp-file rename.
/// Only a regular file (or nothing) is replaced; special files are written in place or
/// refused, named.
#[test]
fn the_result_file_never_replaces_a_special_file() {
    let sb = Sandbox::new();
    let module = sb.wat(
        "m",
        "(module (func (export \"main\") (result i32) (i32.const 7)))",
    );
    let run_to = |output: &std::path::Path| {
        let mut cmd = sb.runner_writing_to(output);
        cmd.arg("--wasm").arg(&module).args(["--entry", "main"]);
        sb.run(&mut cmd)
    };

    // A character device: written in place, still a device afterwards.
    let run = run_to(std::path::Path::new("/dev/null"));
    assert_eq!(run.code, 0, "{run:?}");
    assert!(std::fs::metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());

    // A FIFO with a reader gets the line; without one the write is refused, not blocked.
    let fifo = sb.path("fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
    };
    std::thread::sleep(Duration::from_millis(200));
    let run = run_to(&fifo);
    assert_eq!(run.code, 0, "{run:?}");
    let got = reader.join().unwrap();
    assert!(got.contains("\"result\":[7]"), "{got}");
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    let run = run_to(&fifo);
    assert_eq!(run.code, 1, "no reader: {run:?}");
    assert!(run.stderr.contains("FIFO"), "{}", run.stderr);
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());

    // A symlink is followed: the link stays, what it names is replaced.
    let target = sb.path("real.json");
    std::fs::write(&target, b"old").unwrap();
    let link = sb.path("link.json");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert_eq!(run_to(&link).code, 0);
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(std::fs::read_to_string(&target)
        .unwrap()
        .contains("\"result\":[7]"));
    let dangling = sb.path("dangling.json");
    std::os::unix::fs::symlink(sb.path("made-through-link.json"), &dangling).unwrap();
    assert_eq!(run_to(&dangling).code, 0);
    assert!(sb.path("made-through-link.json").is_file());

    // A directory and a socket are refused by name, and left alone.
    let dir = sb.path("a-dir");
    std::fs::create_dir(&dir).unwrap();
    let run = run_to(&dir);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("directory"), "{}", run.stderr);
    assert!(dir.is_dir());
    let socket_path = sb.path("sock");
    let _socket = std::os::unix::net::UnixListener::bind(&socket_path).unwrap();
    let run = run_to(&socket_path);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("socket"), "{}", run.stderr);
    assert!(std::fs::metadata(&socket_path)
        .unwrap()
        .file_type()
        .is_socket());
}

/// Issue: `--input /dev/zero` read 2 GB before failing. The module and the input are read
/// up to a cap, whatever they are.
#[test]
fn module_and_input_are_read_up_to_their_caps() {
    let sb = Sandbox::new();
    let module = sb.wat(
        "m",
        "(module (func (export \"main\") (result i32) (i32.const 7)))",
    );
    let big_input = sb.file(
        "big.json",
        format!("{{\"pad\":\"{}\"}}", "x".repeat(5000)).as_bytes(),
    );
    for (wasm, input, flags, status, cap) in [
        (
            module.as_path(),
            std::path::Path::new("/dev/zero"),
            vec![],
            "invalid_input",
            "MAX_INPUT_SIZE",
        ),
        (
            module.as_path(),
            big_input.as_path(),
            vec!["--max-input-size", "4KiB"],
            "invalid_input",
            "MAX_INPUT_SIZE",
        ),
        (
            std::path::Path::new("/dev/zero"),
            std::path::Path::new(""),
            vec!["--max-module-size", "1MiB"],
            "invalid_module",
            "MAX_MODULE_SIZE",
        ),
        (
            module.as_path(),
            std::path::Path::new(""),
            vec!["--max-module-size", "16"],
            "invalid_module",
            "MAX_MODULE_SIZE",
        ),
    ] {
        let started = Instant::now();
        let mut cmd = sb.runner();
        cmd.arg("--wasm")
            .arg(wasm)
            .arg("--input")
            .arg(input)
            .args(["--entry", "main"])
            .args(&flags);
        let run = sb.run(&mut cmd);
        assert_eq!((run.code, run.status()), (2, status), "{run:?}");
        assert!(run.error().contains(cap), "{}", run.error());
        assert!(started.elapsed() < Duration::from_secs(30));
    }
}

/// Issue: a bad magic number printed a multi-line Debug dump. Errors are one line, and a
/// wrong file is named plainly.
#[test]
fn a_file_that_is_not_a_module_is_named_on_one_line() {
    let sb = Sandbox::new();
    let cases: [(&[u8], &str); 5] = [
        (b"XXXXXXXX", "magic bytes"),
        (b"\x7fELF\x02\x01\x01\x00", "magic bytes"),
        (b"\0asm\x0d\x00\x01\x00", "component"),
        (b"\0asm\x02\x00\x00\x00", "version"),
        (b"\0as", "magic bytes"),
    ];
    for (bytes, says) in cases {
        let module = sb.file("m.wasm", bytes);
        let mut cmd = sb.runner();
        cmd.arg("--wasm").arg(module);
        let run = sb.run(&mut cmd);
        assert_eq!((run.code, run.status()), (2, "invalid_module"), "{run:?}");
        assert!(
            run.error().contains(says) && !run.error().contains('\n'),
            "{}",
            run.error()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever bytes stand in for a module, no error text spans lines.
    #[test]
    fn module_errors_are_single_lines(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut module = b"\0asm\x01\0\0\0".to_vec();
        module.extend(bytes);
        let out = execute(Execution {
            module,
            request: Request::default(),
            limits: Limits { fuel: Some(1000), max_memory: PAGE, max_table_elements: 10, timeout: Some(Duration::from_secs(10)) },
            wasi: WasiConfig {
                args: vec!["m".into()], env: Vec::new(), preopens: Vec::new(), stdin: StdinSource::Null,
                stdout: OutputSink::Capture(CaptureBuffer::new(8)), stderr: OutputSink::Capture(CaptureBuffer::new(8)),
                determinism: Determinism::Seeded([0; 32]),
            },
        });
        let error = out.error.unwrap_or_default();
        prop_assert!(!error.contains('\n'), "{error}");
    }
}
