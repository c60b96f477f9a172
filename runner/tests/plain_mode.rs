//! `runner --plain`: the runner used like `wasmtime run`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{sample, wasi_module, Sandbox};

fn plain(sb: &Sandbox) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("runner").unwrap();
    cmd.current_dir(sb.dir.path()).arg("--plain");
    cmd
}

#[test]
fn a_wasi_command_gets_args_and_dirs_and_streams_pass_through() {
    let sb = Sandbox::new();
    std::fs::copy(sample("stats-input.json"), sb.path("data.json")).unwrap();
    let dir = format!("{}::/work", sb.dir.path().display());
    let out = plain(&sb)
        .args(["--dir", &dir])
        .arg(sample("stats.wasm"))
        .arg("/work/data.json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"{"count":8,"sum":31,"min":1,"max":9}"#
    );
}

#[test]
fn the_guest_exit_code_becomes_the_process_exit_code() {
    let sb = Sandbox::new();
    let out = plain(&sb)
        .arg(sample("stats.wasm"))
        .arg("/nowhere/data.json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nowhere/data.json"));

    let module = sb.wat(
        "exit",
        &wasi_module(r#"(func (export "_start") (call $proc_exit (i32.const 42)))"#),
    );
    let out = plain(&sb).arg(module).output().unwrap();
    assert_eq!(out.status.code(), Some(42));
    assert!(out.stdout.is_empty(), "no result JSON in plain mode");
}

#[test]
fn invoke_prints_results_one_per_line() {
    let sb = Sandbox::new();
    let out = plain(&sb)
        .args(["--invoke", "fib"])
        .arg(sample("fib.wasm"))
        .arg("12")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "144\n");
}

#[test]
fn a_trap_exits_134_with_the_message_on_stderr() {
    let sb = Sandbox::new();
    let module = sb.wat("trap", r#"(module (func (export "_start") unreachable))"#);
    let out = plain(&sb).arg(module).output().unwrap();
    assert_eq!(out.status.code(), Some(134));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unreachable"));
}

#[test]
fn a_module_without_start_suggests_invoke() {
    let sb = Sandbox::new();
    let out = plain(&sb).arg(sample("fib.wasm")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("_start") && err.contains("fib(i32) -> i64"),
        "{err}"
    );
}
