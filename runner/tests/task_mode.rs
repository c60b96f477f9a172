//! The `runner` binary in task mode, end to end: samples, traps, limits, bad modules and
//! inputs, the WASI sandbox, determinism and the three copies of the result.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::{json, Value};
use sha2::Digest;
use support::{sample, wasi_module, Sandbox};

const TRAPS: &str = r#"(module
  (memory 1)
  (func (export "unreachable") unreachable)
  (func (export "div") (param i32 i32) (result i32) (i32.div_s (local.get 0) (local.get 1)))
  (func (export "oob") (result i32) (i32.load (i32.const 70000)))
  (func $rec (export "recurse") (param i32) (result i32)
    (i32.add (call $rec (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))
  (func (export "spin") (loop $l (br $l)))
  (func (export "grow") (result i32)
    (block $done (loop $l
      (br_if $done (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
      (br $l)))
    (memory.size))
  (func (export "mix") (param i32 i64 f32 f64) (result i32 i64 f32 f64)
    (local.get 0) (local.get 1) (local.get 2) (local.get 3))
)"#;

// ---------------------------------------------------------------- samples

#[test]
fn fib_sample_with_its_input_gives_144() {
    let sb = Sandbox::new();
    let mut cmd = sb.runner();
    cmd.arg("--wasm")
        .arg(sample("fib.wasm"))
        .arg("--input")
        .arg(sample("fib-input.json"))
        .env("TASK_ID", "fib-1");
    let run = sb.run(&mut cmd);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.line["status"], "ok");
    assert_eq!(run.line["entry"], "fib");
    assert_eq!(run.line["args"], json!([12]));
    assert_eq!(run.line["result"], json!([144]));
    assert_eq!(run.line["task_id"], "fib-1");
    assert_eq!(run.line["schema_version"], 1);
    assert!(run.line["fuel_consumed"].as_u64().unwrap() > 0);
    let sha = |bytes: &[u8]| runner::task::hex(&sha2::Sha256::digest(bytes));
    let file = |name| std::fs::read(sample(name)).unwrap();
    assert_eq!(run.line["module_sha256"], sha(&file("fib.wasm")));
    assert_eq!(run.line["input_sha256"], sha(&file("fib-input.json")));
    assert_eq!(run.line["args_sha256"], sha(b"[12]"));
    assert_eq!(
        run.line["engine"],
        json!({"name": "wasmi", "version": runner::result::WASMI_VERSION, "fuel_metering": true, "deterministic": false})
    );
    assert_eq!(run.line["limits"]["memory_bytes"], 256 << 20);
    let result: runner::TaskResult = serde_json::from_value(run.line.clone()).unwrap();
    assert_eq!(run.line["output_sha256"], result.output_digest());
    // The file and the stdout line are the same object.
    assert_eq!(run.file, run.line);
}

#[test]
fn affine_sample_is_a_times_x_plus_b() {
    let sb = Sandbox::new();
    let mut cmd = sb.runner();
    cmd.arg("--wasm")
        .arg(sample("affine.wasm"))
        .arg("--input")
        .arg(sample("affine-input.json"));
    let run = sb.run(&mut cmd);
    assert_eq!(run.line["result"], json!([13 * 9 + 2]), "{}", run.stderr);
}

#[test]
fn add_sample_falls_back_to_add_x_and_add_y() {
    let sb = Sandbox::new();
    let mut cmd = sb.runner();
    cmd.arg("--wasm")
        .arg(sample("add.wasm"))
        .env("ADD_X", "2")
        .env("ADD_Y", "3");
    let run = sb.run(&mut cmd);
    assert_eq!((run.code, run.status()), (0, "ok"), "{}", run.stderr);
    assert_eq!(run.line["entry"], "add");
    assert_eq!(run.line["result"], json!([5]));

    // u64 arithmetic wraps; the i64 result reads as signed.
    let mut cmd = sb.runner();
    cmd.arg("--wasm")
        .arg(sample("add.wasm"))
        .env("ADD_X", u64::MAX.to_string())
        .env("ADD_Y", "2");
    assert_eq!(sb.run(&mut cmd).line["result"], json!([1]));
}

#[test]
fn add_without_arguments_says_how_to_give_them() {
    let sb = Sandbox::new();
    let mut cmd = sb.runner();
    cmd.arg("--wasm").arg(sample("add.wasm"));
    let run = sb.run(&mut cmd);
    assert_eq!((run.code, run.status()), (2, "invalid_input"));
    assert!(
        run.error().contains("add(i64, i64) -> i64"),
        "{}",
        run.error()
    );
}

#[test]
fn stats_sample_reads_its_input_from_the_input_preopen() {
    let sb = Sandbox::new();
    // The fetcher's layout: module.wasm and input.json side by side.
    std::fs::create_dir_all(sb.path("in")).unwrap();
    std::fs::copy(sample("stats.wasm"), sb.path("in/module.wasm")).unwrap();
    std::fs::copy(sample("stats-input.json"), sb.path("in/input.json")).unwrap();
    let mut cmd = sb.runner();
    cmd.arg("--wasm")
        .arg(sb.path("in/module.wasm"))
        .arg("--input")
        .arg(sb.path("in/input.json"));
    let run = sb.run(&mut cmd);
    assert_eq!((run.code, run.status()), (0, "ok"), "{run:?}");
    assert_eq!(run.line["entry"], "_start");
    assert_eq!(run.line["exit_code"], 0);
    let printed: Value =
        serde_json::from_str(run.line["stdout"]["text"].as_str().unwrap().trim()).unwrap();
    assert_eq!(printed, json!({"count": 8, "sum": 31, "min": 1, "max": 9}));
    // The guest's output is in the result only: stdout holds the one result line.
    assert_eq!(run.stdout.lines().count(), 1);
}

#[test]
fn stats_sample_takes_a_path_argument_and_reports_a_missing_file() {
    let sb = Sandbox::new();
    let mut cmd = sb.runner();
    cmd.arg("--wasm")
        .arg(sample("stats.wasm"))
        .arg("--input")
        .arg(sample("stats-input.json"))
        .arg("--args-json")
        .arg(r#"["/input/stats-input.json"]"#);
    let run = sb.run(&mut cmd);
    assert_eq!(run.line["exit_code"], 0, "{run:?}");
    assert!(run.line["stdout"]["text"]
        .as_str()
        .unwrap()
        .contains("\"sum\":31"));

    let mut cmd = sb.runner();
    cmd.arg("--wasm")
        .arg(sample("stats.wasm"))
        .arg("--input")
        .arg(sample("stats-input.json"))
        .arg("--args-json")
        .arg(r#"["/input/nope.json"]"#);
    let run = sb.run(&mut cmd);
    // The command failed, the task did not: status ok, its exit code and stderr say why.
    assert_eq!((run.code, run.status()), (0, "ok"));
    assert_eq!(run.line["exit_code"], 1);
    assert!(run.line["stderr"]["text"]
        .as_str()
        .unwrap()
        .contains("/input/nope.json"));
}

// ---------------------------------------------------------------- traps and limits

#[test]
fn traps_are_reported_with_their_cause() {
    let sb = Sandbox::new();
    let cases = [
        ("unreachable", "[]", "unreachable"),
        ("div", "[1, 0]", "divi"),
        ("oob", "[]", "out of bounds memory"),
        ("recurse", "[0]", "stack"),
    ];
    for (entry, args, needle) in cases {
        let run = sb.call(TRAPS, entry, args, &[]);
        assert_eq!((run.code, run.status()), (2, "trap"), "{entry}: {run:?}");
        assert!(
            run.error().to_lowercase().contains(needle),
            "{entry}: {}",
            run.error()
        );
        assert_eq!(run.line["entry"], entry);
        assert_eq!(run.line["result"], Value::Null);
    }
}

#[test]
fn infinite_loop_runs_out_of_fuel() {
    let sb = Sandbox::new();
    let run = sb.call(TRAPS, "spin", "[]", &["--fuel", "100000"]);
    assert_eq!((run.code, run.status()), (2, "out_of_fuel"), "{run:?}");
    assert_eq!(run.line["fuel_consumed"], 100000);
}

/// Deep calls, each block paid for before it runs: whatever the budget, a run that ran out
/// reports that it consumed all of it (not what the last slice happened to say).
#[test]
fn out_of_fuel_reports_the_whole_budget_whatever_the_code() {
    const FIB: &str = r#"(module
      (func $fib (export "fib") (param i32) (result i32)
        (if (result i32) (i32.lt_u (local.get 0) (i32.const 2))
          (then (local.get 0))
          (else (i32.add (call $fib (i32.sub (local.get 0) (i32.const 1)))
                         (call $fib (i32.sub (local.get 0) (i32.const 2))))))))"#;
    let sb = Sandbox::new();
    for budget in [1u64, 7, 100, 300, 5_000, 99_999] {
        let run = sb.call(FIB, "fib", "[25]", &["--fuel", &budget.to_string()]);
        assert_eq!(
            (run.code, run.status()),
            (2, "out_of_fuel"),
            "{budget}: {run:?}"
        );
        assert_eq!(run.line["fuel_consumed"], budget, "{run:?}");
    }
}

#[test]
fn infinite_loop_with_fuel_off_is_stopped_by_the_timeout() {
    let sb = Sandbox::new();
    let started = std::time::Instant::now();
    let run = sb.call(TRAPS, "spin", "[]", &["--fuel", "0", "--timeout", "0.5"]);
    assert_eq!((run.code, run.status()), (3, "timeout"), "{run:?}");
    assert!(run.error().contains("0.500 s"), "{}", run.error());
    assert_eq!(run.line["fuel_consumed"], Value::Null);
    assert_eq!(run.file, run.line);
    // Not a timing assertion: only that the process did not hang until the test harness
    // gave up on it.
    assert!(started.elapsed().as_secs() < 60);
}

#[test]
fn memory_growth_stops_at_the_cap() {
    let sb = Sandbox::new();
    let run = sb.call(TRAPS, "grow", "[]", &["--max-memory", "1MiB"]);
    assert_eq!(run.status(), "ok", "{run:?}");
    assert_eq!(run.line["result"], json!([16]));
    let run = sb.call(TRAPS, "grow", "[]", &["--max-memory", "4MiB"]);
    assert_eq!(run.line["result"], json!([64]));
}

#[test]
fn initial_memory_beyond_the_cap_fails_the_task() {
    let sb = Sandbox::new();
    let run = sb.call(
        r#"(module (memory 100) (func (export "f")))"#,
        "f",
        "[]",
        &["--max-memory", "1MiB"],
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.error().contains("memory"), "{}", run.error());
}

// ---------------------------------------------------------------- bad modules and inputs

#[test]
fn empty_malformed_and_truncated_modules_are_invalid() {
    let sb = Sandbox::new();
    let fib = std::fs::read(sample("fib.wasm")).unwrap();
    let cases: [(&str, Vec<u8>); 4] = [
        ("empty", Vec::new()),
        ("text", b"this is not wasm".to_vec()),
        ("truncated", fib[..fib.len() / 2].to_vec()),
        ("bad-version", b"\0asm\x02\0\0\0".to_vec()),
    ];
    for (name, bytes) in cases {
        let module = sb.file(&format!("{name}.wasm"), &bytes);
        let mut cmd = sb.runner();
        cmd.arg("--wasm").arg(module).arg("--entry").arg("fib");
        let run = sb.run(&mut cmd);
        assert_eq!(
            (run.code, run.status()),
            (2, "invalid_module"),
            "{name}: {run:?}"
        );
        assert!(
            run.error().contains("WebAssembly"),
            "{name}: {}",
            run.error()
        );
        assert!(run.line["module_sha256"].is_string());
    }
}

#[test]
fn unknown_import_is_an_invalid_module_naming_it() {
    let sb = Sandbox::new();
    let run = sb.call(
        r#"(module (import "env" "host_magic" (func)) (func (export "f")))"#,
        "f",
        "[]",
        &[],
    );
    assert_eq!((run.code, run.status()), (2, "invalid_module"), "{run:?}");
    assert!(run.error().contains("host_magic"), "{}", run.error());
}

#[test]
fn wrong_argument_count_and_types_name_index_and_signature() {
    let sb = Sandbox::new();
    let cases = [
        (
            "[1]",
            "`div(i32, i32) -> i32` takes 2 argument(s), but 1 were given",
        ),
        ("[1, 2, 3]", "takes 2 argument(s), but 3 were given"),
        (
            "[1, \"x\"]",
            "argument 1 of `div(i32, i32) -> i32`: expected i32",
        ),
        ("[1.5, 1]", "argument 0 of `div(i32, i32) -> i32`"),
        ("[4294967296, 1]", "outside the i32 range"),
    ];
    for (args, needle) in cases {
        let run = sb.call(TRAPS, "div", args, &[]);
        assert_eq!((run.code, run.status()), (2, "invalid_input"), "{args}");
        assert!(run.error().contains(needle), "{args}: {}", run.error());
    }
}

#[test]
fn unknown_entry_lists_the_exported_functions() {
    let sb = Sandbox::new();
    let run = sb.call(TRAPS, "nope", "[]", &[]);
    assert_eq!((run.code, run.status()), (2, "invalid_input"));
    assert!(
        run.error().contains("div(i32, i32) -> i32") && run.error().contains("grow() -> i32"),
        "{}",
        run.error()
    );
}

#[test]
fn values_of_every_type_round_trip() {
    let sb = Sandbox::new();
    let run = sb.call(
        TRAPS,
        "mix",
        r#"[4294967295, 18446744073709551615, 0.1, "-inf"]"#,
        &[],
    );
    assert_eq!(run.status(), "ok", "{run:?}");
    assert_eq!(run.line["result"], json!([-1, -1, 0.1, "-inf"]));
}

#[test]
fn malformed_input_json_is_invalid_input() {
    let sb = Sandbox::new();
    let input = sb.file("input.json", b"{\"entry\":");
    let mut cmd = sb.runner();
    cmd.arg("--wasm")
        .arg(sample("fib.wasm"))
        .arg("--input")
        .arg(input);
    let run = sb.run(&mut cmd);
    assert_eq!((run.code, run.status()), (2, "invalid_input"));
    assert!(run.error().contains("not valid JSON"));
}

#[test]
fn missing_input_file_is_a_runner_failure_with_a_result() {
    let sb = Sandbox::new();
    let mut cmd = sb.runner();
    cmd.arg("--wasm")
        .arg(sample("fib.wasm"))
        .arg("--input")
        .arg(sb.path("missing.json"));
    let run = sb.run(&mut cmd);
    assert_eq!((run.code, run.status()), (1, "error"));
    assert!(run.error().contains("missing.json"), "{}", run.error());
    assert_eq!(run.file, run.line);
}

#[test]
fn missing_module_is_a_runner_failure_with_a_result() {
    let sb = Sandbox::new();
    let mut cmd = sb.runner();
    cmd.arg("--wasm").arg(sb.path("nope.wasm"));
    let run = sb.run(&mut cmd);
    assert_eq!((run.code, run.status()), (1, "error"));
    assert!(run.error().contains("nope.wasm"));
    assert_eq!(run.line["module_sha256"], Value::Null);
}

#[test]
fn bad_flag_values_exit_1_naming_the_value() {
    let sb = Sandbox::new();
    let out = sb.runner().env("MAX_MEMORY", "lots").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("lots"));
}

#[test]
fn unwritable_output_still_prints_the_result_and_exits_1() {
    let sb = Sandbox::new();
    sb.file("blocker", b"a file where a directory should be");
    let mut cmd = assert_cmd::Command::cargo_bin("runner").unwrap();
    cmd.arg("--wasm")
        .arg(sample("fib.wasm"))
        .arg("--input")
        .arg(sample("fib-input.json"))
        .arg("--output")
        .arg(sb.path("blocker/result.json"))
        .arg("--termination-log")
        .arg(sb.path("none"));
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(line["result"], json!([144]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("blocker/result.json"));
}

// ---------------------------------------------------------------- WASI

#[test]
fn preopen_escapes_are_refused_and_inside_paths_work() {
    let sb = Sandbox::new();
    sb.file("pre/inside.txt", b"inside");
    sb.file("pre/sub/keep", b"");
    sb.file("outside.txt", b"secret");
    std::os::unix::fs::symlink(sb.path("outside.txt"), sb.path("pre/link-out")).unwrap();
    std::os::unix::fs::symlink("inside.txt", sb.path("pre/link-in")).unwrap();
    let paths = [
        ("inside.txt", true),
        ("sub/../inside.txt", true),
        ("link-in", true),
        ("../outside.txt", false),
        ("/etc/passwd", false),
        ("sub/../../outside.txt", false),
        ("link-out", false),
        ("sub/../../pre/../outside.txt", false),
    ];
    let mut data = String::new();
    for (i, (p, _)) in paths.iter().enumerate() {
        data.push_str(&format!("(data (i32.const {}) \"{p}\")\n", 1024 + i * 64));
    }
    // open(ptr, len, oflags, rights) -> errno; then reads the file's first byte into 512.
    let module = wasi_module(&format!(
        r#"{data}
  (func (export "open") (param $p i32) (param $n i32) (param $oflags i32) (param $rights i64) (result i32)
    (call $path_open (i32.const 3) (i32.const 1) (local.get $p) (local.get $n)
      (local.get $oflags) (local.get $rights) (i64.const 0) (i32.const 0) (i32.const 16)))"#
    ));
    let dir = format!("{}::/pre", sb.path("pre").display());
    let read = 2; // FD_READ
    for (i, (p, allowed)) in paths.iter().enumerate() {
        let args = format!("[{}, {}, 0, {read}]", 1024 + i * 64, p.len());
        let run = sb.call(&module, "open", &args, &["--dir", &dir]);
        assert_eq!(run.status(), "ok", "{p}: {run:?}");
        let errno = run.line["result"][0].as_i64().unwrap();
        assert_eq!(errno == 0, *allowed, "{p}: errno {errno}");
    }
    // Read-only preopen: creating a file is refused with EPERM (63), as in wasmtime...
    let create = format!("[{}, {}, 1, 66]", 1024, "inside.txt".len()); // O_CREAT, READ|WRITE
    let run = sb.call(&module, "open", &create, &["--dir", &dir]);
    assert_eq!(run.line["result"], json!([63]), "{run:?}");
    // ...and allowed on a --dir-rw preopen.
    let run = sb.call(&module, "open", &create, &["--dir-rw", &dir]);
    assert_eq!(run.line["result"], json!([0]), "{run:?}");
}

#[test]
fn the_guest_sees_only_the_environment_it_is_given() {
    let sb = Sandbox::new();
    let module = wasi_module(
        r#"
  (func (export "count") (result i32)
    (drop (call $environ_sizes_get (i32.const 64) (i32.const 68)))
    (i32.load (i32.const 64)))"#,
    );
    let run = sb.call(&module, "count", "[]", &["--env", "A=1", "--env", "B=2"]);
    assert_eq!(run.line["result"], json!([2]), "{run:?}");
}

#[test]
fn a_command_calling_proc_exit_reports_its_exit_code() {
    let sb = Sandbox::new();
    let module = wasi_module(
        r#"
  (data (i32.const 1024) "bye\n")
  (func (export "_start") (drop (call $print (i32.const 1024) (i32.const 4))) (call $proc_exit (i32.const 7)))"#,
    );
    let path = sb.wat("exit", &module);
    let mut cmd = sb.runner();
    cmd.arg("--wasm").arg(path);
    let run = sb.run(&mut cmd);
    assert_eq!((run.code, run.status()), (0, "ok"), "{run:?}");
    assert_eq!(run.line["exit_code"], 7);
    assert_eq!(run.line["stdout"]["text"], "bye\n");
}

#[test]
fn initialize_runs_before_the_entry() {
    let sb = Sandbox::new();
    let run = sb.call(
        r#"(module (global $g (mut i32) (i32.const 0))
          (func (export "_initialize") (global.set $g (i32.const 41)))
          (func (export "get") (result i32) (i32.add (global.get $g) (i32.const 1))))"#,
        "get",
        "[]",
        &[],
    );
    assert_eq!(run.line["result"], json!([42]), "{run:?}");
}

#[test]
fn an_initialize_with_a_signature_is_an_invalid_module() {
    let sb = Sandbox::new();
    let run = sb.call(
        r#"(module (func (export "_initialize") (param i32)) (func (export "f")))"#,
        "f",
        "[]",
        &[],
    );
    assert_eq!((run.code, run.status()), (2, "invalid_module"), "{run:?}");
    assert!(run.error().contains("_initialize(i32)"), "{}", run.error());
}

fn entropy_module() -> String {
    wasi_module(
        r#"
  (func (export "entropy") (result i64)
    (drop (call $random_get (i32.const 2048) (i32.const 16)))
    (drop (call $clock_time_get (i32.const 0) (i64.const 1) (i32.const 2100)))
    (drop (call $print (i32.const 2048) (i32.const 16)))
    (i64.xor (i64.load (i32.const 2048)) (i64.load (i32.const 2100))))"#,
    )
}

#[test]
fn deterministic_runs_give_byte_identical_results() {
    let sb = Sandbox::new();
    let module = entropy_module();
    let det = |task: &str| {
        let run = sb.call(
            &module,
            "entropy",
            "[]",
            &["--deterministic", "--task-id", task],
        );
        assert_eq!(run.status(), "ok", "{run:?}");
        run
    };
    let first = det("task-a");
    assert_eq!(first.file_bytes, det("task-a").file_bytes);
    // The seed comes from the module and the input, not the task's name: equal tasks see
    // one world (what lets a cached result or a re-execution stand for a run).
    let other = det("task-b");
    assert_eq!(first.line["result"], other.line["result"]);
    assert_eq!(first.line["output_sha256"], other.line["output_sha256"]);
    assert_eq!(first.line["engine"]["deterministic"], true);
    let real = |_| {
        sb.call(&module, "entropy", "[]", &["--task-id", "task-a"])
            .line["result"]
            .clone()
    };
    assert_ne!(
        real(0),
        real(1),
        "without --deterministic random bytes differ"
    );
}

#[test]
fn termination_message_fits_4096_bytes_with_a_mebibyte_of_stdout() {
    let sb = Sandbox::new();
    sb.file("termination-log", b"");
    let xs = "x".repeat(1024);
    let module = wasi_module(&format!(
        r#"
  (data (i32.const 4096) "{xs}")
  (func (export "flood") (local $i i32)
    (loop $l
      (drop (call $print (i32.const 4096) (i32.const 1024)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 1024)))))"#
    ));
    let run = sb.call(&module, "flood", "[]", &[]);
    assert_eq!(run.status(), "ok", "{}", run.stderr);
    let msg = std::fs::read(sb.path("termination-log")).unwrap();
    assert!(msg.len() <= 4096, "{} bytes", msg.len());
    let msg: Value = serde_json::from_slice(&msg).unwrap();
    assert_eq!(msg["status"], "ok");
    assert_eq!(msg["elided"], json!(["stdout"]));
    assert_eq!(msg["stdout"]["bytes"], 1 << 20);
    // The result file keeps the first 64 KiB; stdout carries the result line only.
    assert_eq!(
        run.file["stdout"]["text"].as_str().unwrap().len(),
        64 * 1024
    );
    assert_eq!(run.file["stdout"]["truncated"], true);
    assert_eq!(run.stdout.lines().count(), 1);
}

// ---------------------------------------------------------------- CLI surface

#[test]
fn help_documents_env_names_defaults_and_exit_codes() {
    let out = assert_cmd::Command::cargo_bin("runner")
        .unwrap()
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "WASM_PATH",
        "/mnt/input/module.wasm",
        "INPUT_PATH",
        "ARGS_JSON",
        "ENTRY",
        "OUTPUT_PATH",
        "/mnt/shared/result.json",
        "TIMEOUT_SEC",
        "ADD_X",
        "ADD_Y",
        "TASK_ID",
        "FUEL",
        "MAX_MEMORY",
        "256MiB",
        "Exit codes",
        "out of fuel",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}");
    }
}

#[test]
fn json_logs_carry_the_task_id_on_every_line() {
    let sb = Sandbox::new();
    let mut cmd = sb.runner();
    cmd.arg("--wasm")
        .arg(sample("fib.wasm"))
        .arg("--input")
        .arg(sample("fib-input.json"))
        .env("TASK_ID", "t-42")
        .env("LOG_FORMAT", "json");
    let run = sb.run(&mut cmd);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert!(!lines.is_empty());
    for line in lines {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["span"]["task_id"], "t-42", "{line}");
    }
}

/// fuel_consumed counts what WASI calls cost for the bytes they move
/// (`wasi::HOST_BYTES_PER_FUEL`), beyond the guest's own instructions.
#[test]
fn fuel_consumed_includes_the_bytes_host_calls_move() {
    let sb = Sandbox::new();
    let module = wasi_module(
        r#"
  (func (export "random") (param $len i32) (param $times i32) (local $i i32)
    (loop $again
      (drop (call $random_get (i32.const 4096) (local.get $len)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (local.get $times)))))"#,
    );
    let fuel = |len: u32| {
        let run = sb.call(&module, "random", &format!("[{len}, 100]"), &[]);
        assert_eq!(run.status(), "ok", "{run:?}");
        run.line["fuel_consumed"].as_u64().unwrap()
    };
    let without = fuel(0);
    let with = fuel(64 * 1024);
    // 100 calls of 64 KiB at 64 bytes per unit: 102 400 more.
    assert_eq!(
        with - without,
        100 * 64 * 1024 / runner::wasi::HOST_BYTES_PER_FUEL
    );
}
