//! The WASI shim against a reference no one here wrote: every test program in
//! `tests/wasi/` (C built with wasi-libc; sources and `.wasm` committed, rebuilt by
//! `make wasm-check`) runs under `runner --plain` and under wasmtime's WASI preview1 (the
//! PyPI package `wasmtime`, installed into a venv by `scripts/ensure-wasmtime.sh`; the test
//! fails when it cannot be installed, it is never skipped). Both get identical fresh
//! trees (a read-only preopen at `/ro`, a writable one at `/rw`, files, directories and
//! symlinks leading inside, outside, nowhere and in a loop); the exit code, stdout and the
//! trees left behind, the directory beside the preopens included, must be equal.
//!
//! Each program prints one line per check, so a difference names the call and errno.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use support::repo_root;

const PROGRAMS: &[&str] = &[
    "fds", "paths", "dirs", "sandbox", "clocks", "process", "libc", "edges", "raw",
];
const ARGS: &[&str] = &["one", "two words"];
const ENV: &str = "WASI_TEST=from the runner";

/// The venv's python with wasmtime, installed once per test binary.
fn reference_python() -> &'static PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let root = repo_root();
        let out = Command::new(root.join("scripts/ensure-wasmtime.sh"))
            .output()
            .expect("scripts/ensure-wasmtime.sh runs");
        assert!(
            out.status.success(),
            "the reference (PyPI wasmtime) could not be installed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let python = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        root.join(python)
    })
}

/// The tree every program starts from; `outside/` is beside the preopens, never in one.
fn make_tree(root: &Path) {
    let rw = root.join("rw");
    let ro = root.join("ro");
    for dir in [
        rw.join("dir/sub"),
        rw.join("empty"),
        ro.join("dir"),
        root.join("outside"),
    ] {
        std::fs::create_dir_all(dir).unwrap();
    }
    for (path, text) in [
        (rw.join("file.txt"), "hello\n"),
        (rw.join("dir/a.txt"), "a\n"),
        (rw.join("dir/sub/b.txt"), "b\n"),
        (ro.join("file.txt"), "read only\n"),
        (ro.join("dir/a.txt"), "ro a\n"),
        (root.join("outside/secret.txt"), "secret\n"),
    ] {
        std::fs::write(path, text).unwrap();
    }
    for (target, link) in [
        ("file.txt", rw.join("link_in")),
        ("dir", rw.join("link_dir")),
        ("../outside/secret.txt", rw.join("link_out")),
        ("/etc/passwd", rw.join("link_abs")),
        ("nowhere", rw.join("link_dangling")),
        ("loop2", rw.join("loop1")),
        ("loop1", rw.join("loop2")),
        ("../..", rw.join("link_up")),
        ("../outside/secret.txt", ro.join("link_out")),
    ] {
        symlink(target, link).unwrap();
    }
}

/// Every entry beneath `root`: directories, files with their contents, symlinks with
/// their targets.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let name = path.strip_prefix(root).unwrap().display().to_string();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.insert(name, format!("-> {}", target.display()));
            } else if meta.is_dir() {
                out.insert(name, "dir".to_owned());
                walk(root, &path, out);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.insert(name, format!("{:?}", String::from_utf8_lossy(&bytes)));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

#[derive(Debug, PartialEq)]
struct Run {
    exit: Option<i32>,
    stdout: String,
    tree: BTreeMap<String, String>,
}

/// Runs `program` on a fresh tree with the runner (`reference: false`) or wasmtime.
fn run(program: &str, reference: bool, extra: &[&str]) -> (Run, String) {
    let tmp = tempfile::tempdir().unwrap();
    make_tree(tmp.path());
    let module = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/wasi")
        .join(format!("{program}.wasm"));
    let ro = format!("{}::/ro", tmp.path().join("ro").display());
    let rw = format!("{}::/rw", tmp.path().join("rw").display());
    let mut cmd = if reference {
        let mut cmd = Command::new(reference_python());
        cmd.arg(repo_root().join("scripts/wasmtime-wasi.py"));
        cmd
    } else {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_runner"));
        cmd.arg("--plain").args(extra);
        cmd
    };
    // --dir before --dir-rw: the runner numbers read-only preopens first (fd 3 = /ro).
    cmd.args(["--dir", &ro, "--dir-rw", &rw, "--env", ENV])
        .arg(&module)
        .args(ARGS)
        .current_dir(tmp.path())
        .env_remove("RUST_LOG");
    let out = cmd.output().unwrap();
    let run = Run {
        exit: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        tree: snapshot(tmp.path()),
    };
    (run, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn differential(program: &str) {
    let (ours, our_err) = run(program, false, &[]);
    let (theirs, their_err) = run(program, true, &[]);
    if ours.stdout != theirs.stdout {
        let diff: Vec<String> = ours
            .stdout
            .lines()
            .zip(theirs.stdout.lines())
            .filter(|(a, b)| a != b)
            .map(|(a, b)| format!("  runner:   {a}\n  wasmtime: {b}"))
            .collect();
        panic!(
            "{program}: stdout differs from wasmtime's ({} vs {} lines):\n{}\nrunner stderr: {our_err}\nwasmtime stderr: {their_err}",
            ours.stdout.lines().count(),
            theirs.stdout.lines().count(),
            diff.join("\n")
        );
    }
    assert_eq!(
        ours.exit, theirs.exit,
        "{program}: exit code differs\nrunner stderr: {our_err}\nwasmtime stderr: {their_err}"
    );
    assert_eq!(ours.tree, theirs.tree, "{program}: the trees left differ");
    assert!(
        ours.stdout.lines().count() > 5,
        "{program}: printed almost nothing:\n{}",
        ours.stdout
    );
}

#[test]
fn fds_behave_as_in_wasmtime() {
    differential("fds");
}

#[test]
fn paths_behave_as_in_wasmtime() {
    differential("paths");
}

#[test]
fn readdir_behaves_as_in_wasmtime() {
    differential("dirs");
}

#[test]
fn sandbox_escapes_and_read_only_preopens_behave_as_in_wasmtime() {
    differential("sandbox");
}

#[test]
fn clocks_random_and_poll_behave_as_in_wasmtime() {
    differential("clocks");
}

#[test]
fn args_env_and_sockets_behave_as_in_wasmtime() {
    differential("process");
}

#[test]
fn libc_programs_behave_as_in_wasmtime() {
    differential("libc");
}

#[test]
fn edge_cases_behave_as_in_wasmtime() {
    differential("edges");
}

#[test]
fn the_raw_abi_behaves_as_in_wasmtime() {
    differential("raw");
}

#[test]
fn every_program_is_tested() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/wasi");
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".wasm").map(str::to_owned)
        })
        .collect();
    found.sort();
    let mut listed: Vec<String> = PROGRAMS.iter().map(|p| (*p).to_owned()).collect();
    listed.sort();
    assert_eq!(found, listed);
}

/// `--deterministic`: two runs of every program see the same clocks, random bytes,
/// inodes and times, so their output and trees are byte-identical.
#[test]
fn deterministic_runs_are_identical() {
    for program in PROGRAMS {
        let (first, err) = run(program, false, &["--deterministic", "--task-id", "t"]);
        let (second, _) = run(program, false, &["--deterministic", "--task-id", "t"]);
        assert_eq!(
            first, second,
            "{program}: deterministic runs differ; stderr: {err}"
        );
    }
}

/// A sleep in poll_oneoff cannot outlive the wall-clock timeout.
#[test]
fn a_poll_oneoff_sleep_ends_at_the_timeout() {
    let wat = r#"(module
      (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      ;; one relative monotonic clock subscription of an hour at 0
      (data (i32.const 8) "\00")
      (data (i32.const 16) "\01\00\00\00\00\00\00\00\00\a0\3b\1d\45\03\00\00")
      (func (export "_start") (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))))"#;
    let tmp = tempfile::tempdir().unwrap();
    let module = tmp.path().join("sleep.wasm");
    std::fs::write(&module, wat::parse_str(wat).unwrap()).unwrap();
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["--plain", "--timeout", "0.5"])
        .arg(&module)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(124), "{out:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

/// A module calling `random_get` of `len` bytes `times` times.
fn random_loop(len: u32, times: u32) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
      (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "_start") (local $i i32)
        (loop $again
          (drop (call $random (i32.const 0) (i32.const {len})))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $again (i32.lt_u (local.get $i) (i32.const {times}))))))"#
    ))
    .unwrap()
}

/// Host calls cost fuel for the bytes they move, so a guest cannot do unbounded work per
/// unit of fuel through them: 100 calls moving 64 KiB each need about 100 000 fuel, far
/// more than the same calls moving nothing.
#[test]
fn bytes_moved_by_host_calls_cost_fuel() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |len: u32| {
        let module = tmp.path().join(format!("random-{len}.wasm"));
        std::fs::write(&module, random_loop(len, 100)).unwrap();
        Command::new(env!("CARGO_BIN_EXE_runner"))
            .args(["--plain", "--fuel", "50000"])
            .arg(&module)
            .output()
            .unwrap()
    };
    let nothing = run(0);
    assert_eq!(nothing.status.code(), Some(0), "{nothing:?}");
    let plenty = run(65_536);
    assert_eq!(plenty.status.code(), Some(134), "{plenty:?}");
    assert!(
        String::from_utf8_lossy(&plenty.stderr).contains("out of fuel"),
        "{plenty:?}"
    );
}

/// proc_exit with a status of 126 or more ends the guest with an error in wasmtime (such
/// statuses are what shells make of signals); the runner does the same, and passes lower
/// ones through.
#[test]
fn exit_statuses_from_126_are_refused_as_in_wasmtime() {
    let tmp = tempfile::tempdir().unwrap();
    for status in [0u32, 1, 125, 126, 200, 255, 256, u32::MAX] {
        let wat = format!(
            r#"(module
          (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
          (memory (export "memory") 1)
          (func (export "_start") (call $exit (i32.const {}))))"#,
            status as i32
        );
        let module = tmp.path().join(format!("exit-{status}.wasm"));
        std::fs::write(&module, wat::parse_str(wat).unwrap()).unwrap();
        let ours = Command::new(env!("CARGO_BIN_EXE_runner"))
            .arg("--plain")
            .arg(&module)
            .output()
            .unwrap();
        let theirs = Command::new(reference_python())
            .arg(repo_root().join("scripts/wasmtime-wasi.py"))
            .arg(&module)
            .output()
            .unwrap();
        assert_eq!(
            ours.status.code(),
            theirs.status.code(),
            "proc_exit({status})\nrunner: {ours:?}\nwasmtime: {theirs:?}"
        );
        let expected = if status < 126 { status as i32 } else { 134 };
        assert_eq!(ours.status.code(), Some(expected), "proc_exit({status})");
    }
}
