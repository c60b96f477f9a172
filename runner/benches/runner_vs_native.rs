//! The runner against native code: the same C kernels (bench/runner/kernels.c) run natively
//! and as kernels.wasm under the release `runner` binary, each as a child process, plus the
//! startup of a generated 20 MiB module. Prints a Markdown table; asserts nothing about time,
//! only that both sides compute the same numbers.
//!
//! Before running:
//!
//! ```text
//! cargo build --release -p runner
//! make -C bench/runner
//! cargo bench -p runner --bench runner_vs_native
//! ```
//!
//! Environment: `RUNNER_BIN` (default `<target dir>/release/runner`), `NATIVE_BENCH_BIN` (default
//! `target/bench/native_kernels`), `RUNNER_BENCH_RUNS` (timed runs per measurement, default
//! 5, after one warm-up), `RUNNER_BENCH_QUICK=1` (tiny sizes: checks agreement in seconds).
//! Under `cargo test --benches` (no `--bench` flag) it runs the quick sizes once when both
//! binaries exist, and otherwise says what is missing and exits 0.

mod support;

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{release_dir, timed_runs, workspace_root};

/// The benchmark's kernels and their arguments: (kernel, full size, quick size).
/// Full sizes aim at roughly 0.5-3 s per run under the runner (wasmi, fuel off).
const KERNELS: &[(&str, i64, i64)] = &[
    ("fib_rec", 38, 20),
    ("loop_sum", 150_000_000, 100_000),
    ("mem_kernel", 16_384, 256),
];

/// Fuel for the metered run: far more than the fib_rec run needs, so it measures only the
/// cost of counting.
const FUEL: u64 = 100_000_000_000;

/// The generated module: this many filler functions of about `FILLER_ROUNDS` * 20 bytes.
const BIG_FUNCTIONS: u32 = 40_000;
const BIG_FUNCTIONS_QUICK: u32 = 400;
const FILLER_ROUNDS: u32 = 26;
/// What the generated module's `run` returns.
const BIG_RUN_RESULT: i64 = 42;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("\nrunner_vs_native: FAILED: {msg}");
            ExitCode::FAILURE
        }
    }
}

struct Config {
    root: PathBuf,
    runner: PathBuf,
    native: PathBuf,
    kernels_wasm: PathBuf,
    runs: usize,
    quick: bool,
}

/// One row of the table. `native` is `None` where there is no native counterpart.
struct Row {
    name: String,
    native: Option<Duration>,
    runner: Duration,
    note: &'static str,
}

fn run() -> Result<(), String> {
    let bench_mode = env::args().skip(1).any(|a| a == "--bench");
    let root = workspace_root();
    let runner = locate(
        "RUNNER_BIN",
        &release_dir().join("runner"),
        "the release runner binary",
        "run `cargo build --release -p runner` first",
    );
    let native = locate(
        "NATIVE_BENCH_BIN",
        &release_dir().with_file_name("bench").join("native_kernels"),
        "the native kernels binary",
        "run `make -C bench/runner` first",
    );
    let kernels_wasm = root.join("bench/runner/kernels.wasm");

    let (runner, native) = match (runner, native) {
        (Ok(r), Ok(n)) => (r, n),
        (r, n) => {
            let msg = [r.err(), n.err()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("\n");
            if bench_mode {
                return Err(msg);
            }
            // `cargo test --benches` builds and runs this too; do not fail a test run over
            // binaries that only a benchmark run needs.
            eprintln!("runner_vs_native: skipped (not run by cargo bench):\n{msg}");
            return Ok(());
        }
    };
    if !kernels_wasm.is_file() {
        return Err(format!(
            "{} is missing; run `make -C bench/runner`",
            kernels_wasm.display()
        ));
    }

    let quick =
        !bench_mode || env::var("RUNNER_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let runs = timed_runs(bench_mode, 5)?;
    let cfg = Config {
        root,
        runner,
        native,
        kernels_wasm,
        runs,
        quick,
    };
    let tmp =
        tempfile::tempdir().map_err(|e| format!("cannot create a temporary directory: {e}"))?;

    eprintln!(
        "runner_vs_native: runner {}, native {}, min of {} runs after 1 warm-up{}",
        cfg.runner.display(),
        cfg.native.display(),
        cfg.runs,
        if cfg.quick { ", quick sizes" } else { "" }
    );

    let mut rows = Vec::new();
    let mut fib_unmetered = None;
    for &(kernel, full, small) in KERNELS {
        let n = if cfg.quick { small } else { full };
        let (native_time, expected) = time_native(&cfg, kernel, n)?;
        let wasm = cfg.kernels_wasm.clone();
        let runner_time = time_runner(&cfg, tmp.path(), &wasm, kernel, Some(n), 0, expected)?;
        if kernel == "fib_rec" {
            fib_unmetered = Some((n, native_time, runner_time, expected));
        }
        rows.push(Row {
            name: format!("{kernel}({n})"),
            native: Some(native_time),
            runner: runner_time,
            note: "",
        });
    }

    if let Some((n, native_time, unmetered, expected)) = fib_unmetered {
        let wasm = cfg.kernels_wasm.clone();
        let metered = time_runner(&cfg, tmp.path(), &wasm, "fib_rec", Some(n), FUEL, expected)?;
        rows.push(Row {
            name: format!("fib_rec({n}), fuel metering on"),
            native: Some(native_time),
            runner: metered,
            note: "metering",
        });
        eprintln!(
            "fuel metering overhead on fib_rec({n}): {:.2}x the unmetered runner time",
            secs(metered) / secs(unmetered).max(1e-9)
        );
    }

    // Startup: a trivial native call is the process-startup baseline for both startup rows.
    let (baseline, trivial) = time_native(&cfg, "loop_sum", 1)?;
    let wasm = cfg.kernels_wasm.clone();
    let small_startup = time_runner(&cfg, tmp.path(), &wasm, "loop_sum", Some(1), 0, trivial)?;
    rows.push(Row {
        name: "startup: kernels.wasm loop_sum(1)".into(),
        native: Some(baseline),
        runner: small_startup,
        note: "baseline",
    });

    let functions = if cfg.quick {
        BIG_FUNCTIONS_QUICK
    } else {
        BIG_FUNCTIONS
    };
    let big = tmp.path().join("big.wasm");
    let bytes = big_module(functions, FILLER_ROUNDS);
    let size_mib = bytes.len() as f64 / (1024.0 * 1024.0);
    fs::write(&big, &bytes).map_err(|e| format!("cannot write {}: {e}", big.display()))?;
    let big_startup = time_runner(&cfg, tmp.path(), &big, "run", None, 0, BIG_RUN_RESULT)?;
    rows.push(Row {
        name: format!("startup: {size_mib:.1} MiB module, {functions} functions"),
        native: Some(baseline),
        runner: big_startup,
        note: "baseline",
    });

    print_table(&cfg, &rows);
    Ok(())
}

/// `$var` when set, else `default`; an error that says how to get it when it is not a file.
fn locate(var: &str, default: &Path, what: &str, hint: &str) -> Result<PathBuf, String> {
    let (path, source) = match env::var_os(var) {
        Some(p) if !p.is_empty() => (PathBuf::from(p), format!("from {var}")),
        _ => (
            default.to_path_buf(),
            format!("default; set {var} to override"),
        ),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{what} is not at {} ({source}): {hint}",
            path.display()
        ))
    }
}

/// Runs `cmd` once and returns its wall time and output.
fn timed(cmd: &mut Command) -> Result<(Duration, Output), String> {
    let start = Instant::now();
    let out = cmd
        .output()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    Ok((start.elapsed(), out))
}

/// Runs `make_cmd()` once to warm up and then `runs` times; checks every run with `check`
/// and returns the fastest time and the warm-up's checked value.
fn min_time<T>(
    runs: usize,
    mut make_cmd: impl FnMut() -> Command,
    mut check: impl FnMut(&Output) -> Result<T, String>,
) -> Result<(Duration, T), String> {
    let (_, warm) = timed(&mut make_cmd())?;
    let value = check(&warm)?;
    let mut best = Duration::MAX;
    for _ in 0..runs {
        let (t, out) = timed(&mut make_cmd())?;
        check(&out)?;
        best = best.min(t);
    }
    Ok((best, value))
}

/// `native_kernels KERNEL N`: its fastest time and the number it printed.
fn time_native(cfg: &Config, kernel: &str, n: i64) -> Result<(Duration, i64), String> {
    eprintln!("native: {kernel} {n}");
    let make = || {
        let mut c = Command::new(&cfg.native);
        c.arg(kernel).arg(n.to_string());
        c
    };
    min_time(cfg.runs, make, |out| {
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(format!(
                "native {kernel} {n} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        stdout.trim().parse::<i64>().map_err(|_| {
            format!(
                "native {kernel} {n} printed {:?}, not an integer",
                stdout.trim()
            )
        })
    })
}

/// The runner on `wasm`'s `entry`: its fastest time; every run must report `expected`.
fn time_runner(
    cfg: &Config,
    tmp: &Path,
    wasm: &Path,
    entry: &str,
    arg: Option<i64>,
    fuel: u64,
    expected: i64,
) -> Result<Duration, String> {
    let label = match arg {
        Some(n) => format!("{entry}({n}) in {}", short(cfg, wasm)),
        None => format!("{entry}() in {}", short(cfg, wasm)),
    };
    let label = if fuel > 0 {
        format!("{label}, fuel {fuel}")
    } else {
        label
    };
    eprintln!("runner: {label}");
    let output = tmp.join("result.json");
    let make = || {
        let mut c = Command::new(&cfg.runner);
        c.arg("--wasm").arg(wasm).arg("--entry").arg(entry);
        if let Some(n) = arg {
            c.arg("--args-json").arg(format!("[{n}]"));
        }
        c.arg("--fuel")
            .arg(fuel.to_string())
            .args(["--timeout", "0", "--max-memory", "1GiB"])
            .arg("--output")
            .arg(&output)
            .arg("--termination-log")
            .arg(tmp.join("none"));
        c
    };
    let (best, _) = min_time(cfg.runs, make, |out| {
        let got = runner_result(out).map_err(|e| format!("runner {label}: {e}"))?;
        if got != expected {
            return Err(format!(
                "MISMATCH: runner {label} returned {got}, native computed {expected}"
            ));
        }
        Ok(())
    })?;
    Ok(best)
}

/// The single i64 result from the runner's last stdout line, which must say `"status":"ok"`.
fn runner_result(out: &Output) -> Result<i64, String> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let context = || format!("exit {}; stderr:\n{}", out.status, tail(&stderr, 20));
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .ok_or_else(|| format!("printed no result line ({})", context()))?;
    let v: Value = serde_json::from_str(line)
        .map_err(|e| format!("last stdout line is not JSON ({e}): {line}\n{}", context()))?;
    if v.get("status").and_then(Value::as_str) != Some("ok") {
        return Err(format!("status is not ok: {line}\n{}", context()));
    }
    match v.get("result").and_then(Value::as_array).map(Vec::as_slice) {
        Some([x]) => x
            .as_i64()
            .or_else(|| x.as_u64().map(|u| u as i64))
            .ok_or_else(|| format!("result is not an integer: {line}")),
        _ => Err(format!("result is not a one-element array: {line}")),
    }
}

fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn short(cfg: &Config, p: &Path) -> String {
    match p.strip_prefix(&cfg.root) {
        Ok(rel) => rel.display().to_string(),
        Err(_) => p
            .file_name()
            .map_or_else(|| p.display().to_string(), |f| f.to_string_lossy().into()),
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn ms(d: Duration) -> String {
    format!("{:.1}", secs(d) * 1000.0)
}

fn print_table(cfg: &Config, rows: &[Row]) {
    println!();
    println!(
        "runner vs native: wall time of one process, min of {} runs after 1 warm-up{}",
        cfg.runs,
        if cfg.quick { " (quick sizes)" } else { "" }
    );
    println!();
    println!("| benchmark | native (ms) | runner (ms) | ratio |");
    println!("| --- | ---: | ---: | ---: |");
    for r in rows {
        let native = r.native.map_or_else(|| "-".into(), ms);
        let ratio = r.native.map_or_else(
            || "-".into(),
            |n| format!("{:.1}x", secs(r.runner) / secs(n).max(1e-9)),
        );
        let name = match r.note {
            "baseline" => format!(
                "{} (native: process-startup baseline, `native_kernels loop_sum 1`)",
                r.name
            ),
            "metering" => format!("{} (`--fuel {FUEL}`)", r.name),
            _ => r.name.clone(),
        };
        println!("| {name} | {native} | {} | {ratio} |", ms(r.runner));
    }
    println!();
    println!(
        "native: bench/runner/kernels.c built with clang -O2; runner: the same source as kernels.wasm \
         (clang --target=wasm32-wasi -O2), `--fuel 0` unless noted."
    );
}

// ---- the generated module ----

fn leb_u32(out: &mut Vec<u8>, mut v: u32) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn leb_i32(out: &mut Vec<u8>, mut v: i32) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        let done = (v == 0 && byte & 0x40 == 0) || (v == -1 && byte & 0x40 != 0);
        if done {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn section(module: &mut Vec<u8>, id: u8, body: &[u8]) {
    module.push(id);
    leb_u32(module, body.len() as u32);
    module.extend_from_slice(body);
}

/// A module of `functions` filler functions `(i32) -> i32`, each `rounds` rounds of
/// `x = rotl((x + c1) * c2, 13)` (about 20 bytes a round), and an exported
/// `run: () -> i32` returning [`BIG_RUN_RESULT`]. Emitted directly as binary: with 40,000
/// functions of 26 rounds it is about 20 MiB.
fn big_module(functions: u32, rounds: u32) -> Vec<u8> {
    const I32: u8 = 0x7f;
    let mut m = b"\0asm\x01\0\0\0".to_vec();

    // types: 0 = (i32) -> i32, 1 = () -> i32
    section(&mut m, 1, &[2, 0x60, 1, I32, 1, I32, 0x60, 0, 1, I32]);

    let mut funcs = Vec::new();
    leb_u32(&mut funcs, functions + 1);
    funcs.extend(std::iter::repeat_n(0u8, functions as usize));
    funcs.push(1);
    section(&mut m, 3, &funcs);

    let mut exports = Vec::new();
    leb_u32(&mut exports, 1);
    leb_u32(&mut exports, 3);
    exports.extend_from_slice(b"run");
    exports.push(0x00); // a function
    leb_u32(&mut exports, functions);
    section(&mut m, 7, &exports);

    let mut code = Vec::with_capacity(functions as usize * (rounds as usize * 17 + 8));
    leb_u32(&mut code, functions + 1);
    let mut seed: u32 = 0x1234_5678;
    let mut body = Vec::new();
    for _ in 0..functions {
        body.clear();
        body.push(0); // no locals besides the parameter
        for _ in 0..rounds {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            body.extend_from_slice(&[0x20, 0]); // local.get 0
            body.push(0x41); // i32.const
            leb_i32(&mut body, (seed >> 4) as i32 | 0x0100_0000);
            body.push(0x6a); // i32.add
            body.push(0x41);
            leb_i32(&mut body, (seed.rotate_left(11) >> 4) as i32 | 0x0100_0001);
            body.push(0x6c); // i32.mul
            body.extend_from_slice(&[0x41, 13]);
            body.push(0x77); // i32.rotl
            body.extend_from_slice(&[0x21, 0]); // local.set 0
        }
        body.extend_from_slice(&[0x20, 0, 0x0b]); // local.get 0, end
        leb_u32(&mut code, body.len() as u32);
        code.extend_from_slice(&body);
    }
    body.clear();
    body.push(0);
    body.push(0x41);
    leb_i32(&mut body, BIG_RUN_RESULT as i32);
    body.push(0x0b);
    leb_u32(&mut code, body.len() as u32);
    code.extend_from_slice(&body);
    section(&mut m, 10, &code);
    m
}
