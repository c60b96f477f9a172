//! The runner's WASI against wasmtime's (the PyPI package, as the differential test uses
//! it): whole-process time of two WASI commands from bench/runner, each run as a child
//! process. `wasi_startup.wasm` is a trivial command (wasi-libc start-up, one line out);
//! `wasi_calls.wasm` makes 100 000 one-byte `fd_write`s to stdout and 100 000
//! `path_open`/`fd_close` pairs beneath a preopen. Prints a Markdown table; asserts nothing
//! about time, only that every side prints the same output.
//!
//! ```text
//! cargo build --release -p runner
//! scripts/ensure-wasmtime.sh
//! cargo bench -p runner --bench wasi_vs_wasmtime
//! ```
//!
//! Environment: `RUNNER_BIN` (default `<target dir>/release/runner`), `WASMTIME_PYTHON`
//! (default `target/wasmtime-venv/bin/python`), `WASMI_CLI_BIN` (optional: the `wasmi` CLI
//! of `cargo install wasmi_cli`, whose WASI is `wasmi_wasi` over wasi-common, adds a
//! column), `RUNNER_BENCH_RUNS` (timed runs, default 10, after one warm-up). Under
//! `cargo test --benches` it runs each command once when everything is there, and otherwise
//! says what is missing and exits 0.

mod support;

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use support::{release_dir, timed_runs, workspace_root};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("\nwasi_vs_wasmtime: FAILED: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// One way of running a WASI command: a program and the flags before the module.
struct Engine {
    name: &'static str,
    program: PathBuf,
    /// Arguments before the module; `{dir}` is replaced by the preopened directory.
    args: Vec<String>,
}

impl Engine {
    fn command(&self, module: &Path, dir: &Path) -> Command {
        let mut cmd = Command::new(&self.program);
        for arg in &self.args {
            cmd.arg(arg.replace("{dir}", &dir.display().to_string()));
        }
        cmd.arg(module).stdin(Stdio::null()).stderr(Stdio::piped());
        cmd
    }
}

fn run() -> Result<(), String> {
    let bench_mode = env::args().skip(1).any(|a| a == "--bench");
    let root = workspace_root();
    let runner = file_from("RUNNER_BIN", release_dir().join("runner"));
    let python = file_from(
        "WASMTIME_PYTHON",
        root.join("target/wasmtime-venv/bin/python"),
    );
    let missing: Vec<String> = [
        (
            &runner,
            "the release runner: run `cargo build --release -p runner`",
        ),
        (&python, "wasmtime's venv: run `scripts/ensure-wasmtime.sh`"),
    ]
    .into_iter()
    .filter(|(p, _)| !p.is_file())
    .map(|(p, what)| format!("{} is missing ({what})", p.display()))
    .collect();
    if !missing.is_empty() {
        if bench_mode {
            return Err(missing.join("\n"));
        }
        eprintln!(
            "wasi_vs_wasmtime: skipped (not run by cargo bench):\n{}",
            missing.join("\n")
        );
        return Ok(());
    }
    let runs = timed_runs(bench_mode, 10)?;

    let mut engines = vec![
        Engine {
            name: "runner --plain",
            program: runner.clone(),
            args: vec!["--plain".into(), "--dir".into(), "{dir}::/data".into()],
        },
        Engine {
            name: "wasmtime-py",
            program: python,
            args: vec![
                root.join("scripts/wasmtime-wasi.py").display().to_string(),
                "--dir".into(),
                "{dir}::/data".into(),
            ],
        },
    ];
    if let Some(wasmi) = env::var_os("WASMI_CLI_BIN").filter(|p| !p.is_empty()) {
        engines.push(Engine {
            name: "wasmi_wasi (wasmi CLI)",
            program: PathBuf::from(wasmi),
            args: vec!["--dir".into(), "{dir}".into()],
        });
    }

    let tmp = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    std::fs::write(tmp.path().join("bench-file"), b"x").map_err(|e| e.to_string())?;
    let programs = [
        ("start-up: trivial WASI command", "wasi_startup.wasm"),
        (
            "call-heavy: 100 000 fd_write + 100 000 path_open/fd_close",
            "wasi_calls.wasm",
        ),
    ];
    eprintln!("wasi_vs_wasmtime: min of {runs} runs after 1 warm-up, whole process");
    let mut table = String::from("| program |");
    for e in &engines {
        table.push_str(&format!(" {} |", e.name));
    }
    table.push_str(" runner / wasmtime |\n|---|");
    for _ in &engines {
        table.push_str("---:|");
    }
    table.push_str("---:|\n");
    for (label, file) in programs {
        let module = root.join("bench/runner").join(file);
        let mut times = Vec::new();
        let mut expected: Option<Vec<u8>> = None;
        for engine in &engines {
            let mut best = Duration::MAX;
            for i in 0..=runs {
                let started = Instant::now();
                let out = engine
                    .command(&module, tmp.path())
                    .output()
                    .map_err(|e| format!("{}: {e}", engine.name))?;
                let took = started.elapsed();
                if !out.status.success() {
                    return Err(format!(
                        "{} on {file}: {}\n{}",
                        engine.name,
                        out.status,
                        String::from_utf8_lossy(&out.stderr)
                    ));
                }
                match &expected {
                    None => expected = Some(out.stdout.clone()),
                    Some(e) if *e != out.stdout => {
                        return Err(format!("{} on {file}: different output", engine.name));
                    }
                    Some(_) => {}
                }
                if i > 0 {
                    best = best.min(took);
                }
            }
            times.push(best);
        }
        table.push_str(&format!("| {label} |"));
        for t in &times {
            table.push_str(&format!(" {:.1} ms |", t.as_secs_f64() * 1000.0));
        }
        let ratio = times[0].as_secs_f64() / times[1].as_secs_f64();
        table.push_str(&format!(" {ratio:.2}x |\n"));
    }
    println!("{table}");
    Ok(())
}

fn file_from(var: &str, default: PathBuf) -> PathBuf {
    env::var_os(var)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or(default)
}
