//! The local backend's cost per task: 200 trivial tasks (`add(2, 3)`, distinct task ids)
//! through the release `coordinator --once` at concurrency 1 and 2 (a fresh ledger each
//! run, on disk; and once with the ledger on tmpfs, `/dev/shm`, where a commit costs no
//! disk flush), and the same 200 tasks run directly as `fetcher` (init-container mode, the
//! mirror) then `runner`, one after the other, from this process. The coordinator's
//! overhead per task is (coordinator at concurrency 1 − direct) / 200. Prints a Markdown
//! table.
//!
//! `cargo build --release --workspace && cargo bench -p coordinator --bench coordinator_local`
//! (`COORDINATOR_BIN=path` picks another coordinator; `runner` and `fetcher` are taken from
//! beside it). `BASELINE_COORDINATOR=path` adds a row for another coordinator binary run the
//! same way but without `--state` (e.g. one built from before the ledger, commit b554cf1, to
//! measure what the ledger costs). Without `--bench` (e.g. `cargo test --all-targets`) it
//! prints "skipped".
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;
use common::{clean, release_dir, repo_root};

const TASKS: usize = 200;
const RUNS: usize = 3;
const ADD_INPUT: &str = r#"{"entry":"add","args":[2,3]}"#;

struct Bins {
    coordinator: PathBuf,
    runner: PathBuf,
    fetcher: PathBuf,
}

fn bins() -> Bins {
    let coordinator = std::env::var_os("COORDINATOR_BIN")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| release_dir().join("coordinator"));
    let dir = coordinator.parent().unwrap_or(Path::new(".")).to_path_buf();
    let b = Bins {
        runner: dir.join("runner"),
        fetcher: dir.join("fetcher"),
        coordinator,
    };
    for p in [&b.coordinator, &b.runner, &b.fetcher] {
        assert!(
            p.is_file(),
            "{} is missing: run `cargo build --release --workspace` first \
             (or set COORDINATOR_BIN; runner and fetcher must sit beside it)",
            p.display()
        );
    }
    b
}

fn cid_of(bytes: &[u8]) -> String {
    fetcher::importer::cid_of_bytes(fetcher::importer::Params::V0, bytes).to_string()
}

/// The mirror: `host/wasm` when it has `add-input.json`, else a temp copy of `add.wasm` with
/// the input written beside it. Returns (mirror, temp guard, wasm CID, input CID).
fn mirror() -> (PathBuf, Option<tempfile::TempDir>, String, String) {
    let samples = repo_root().join("host/wasm");
    let wasm = std::fs::read(samples.join("add.wasm")).expect("host/wasm/add.wasm");
    let wasm_cid = cid_of(&wasm);
    if let Ok(input) = std::fs::read(samples.join("add-input.json")) {
        return (samples, None, wasm_cid, cid_of(&input));
    }
    let tmp = tempfile::Builder::new()
        .prefix("coord-bench-mirror-")
        .tempdir()
        .unwrap();
    std::fs::write(tmp.path().join("add.wasm"), &wasm).unwrap();
    std::fs::write(tmp.path().join("add-input.json"), ADD_INPUT).unwrap();
    (
        tmp.path().to_path_buf(),
        Some(tmp),
        wasm_cid,
        cid_of(ADD_INPUT.as_bytes()),
    )
}

fn check_result(v: &Value, what: &str) {
    let ok = v["status"] == "ok" && v["result"]["result"] == json!([5]);
    assert!(ok, "{what}: not ok(5): {v}");
}

/// Which coordinator runs, and where its ledger is.
#[derive(Clone, Copy)]
enum Variant<'a> {
    /// The coordinator under test, its ledger in a temp dir on disk.
    Disk,
    /// The same, its ledger on tmpfs.
    Tmpfs,
    /// Another coordinator binary, without `--state` (one from before the ledger).
    Baseline(&'a Path),
}

/// One `coordinator --once` over the task file; returns its wall time.
fn coordinator_run(
    b: &Bins,
    mirror: &Path,
    tasks: &Path,
    concurrency: usize,
    variant: Variant<'_>,
) -> Duration {
    let mut builder = tempfile::Builder::new();
    builder.prefix("coord-bench-work-");
    let work = match variant {
        Variant::Tmpfs => builder.tempdir_in("/dev/shm"),
        _ => builder.tempdir(),
    }
    .unwrap();
    let program = match variant {
        Variant::Baseline(p) => p,
        _ => &b.coordinator,
    };
    let mut cmd = Command::new(program);
    clean(&mut cmd)
        .args(["--once", "--backend", "local", "--listen", "off"])
        .arg("--tasks")
        .arg(tasks)
        .arg("--ipfs-mirror")
        .arg(mirror)
        .arg("--work-dir")
        .arg(work.path().join("work"))
        .arg("--runner-path")
        .arg(&b.runner)
        .arg("--fetcher-path")
        .arg(&b.fetcher)
        .args(["--concurrency", &concurrency.to_string()])
        .stdin(Stdio::null());
    if !matches!(variant, Variant::Baseline(_)) {
        // A fresh ledger per run (the same task ids run again).
        cmd.arg("--state").arg(work.path().join("ledger.sqlite"));
    }
    let start = Instant::now();
    let out = cmd.output().expect("spawn the coordinator");
    let elapsed = start.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let results: Vec<Value> = stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        out.status.success() && results.len() == TASKS,
        "coordinator at concurrency {concurrency}: {} with {} results\nstderr:\n{}",
        out.status,
        results.len(),
        String::from_utf8_lossy(&out.stderr)
    );
    for r in &results {
        check_result(r, "coordinator");
    }
    elapsed
}

/// The same tasks as the local backend runs them, serially: a work dir, `fetcher` in
/// init-container mode from the mirror, `runner`, the result read back, the dir removed.
fn direct_run(b: &Bins, mirror: &Path, wasm_cid: &str, input_cid: &str) -> Duration {
    let base = tempfile::Builder::new()
        .prefix("coord-bench-direct-")
        .tempdir()
        .unwrap();
    let gateway = format!("file://{}", mirror.display());
    let start = Instant::now();
    for i in 0..TASKS {
        let dir = tempfile::Builder::new()
            .prefix("task-")
            .tempdir_in(base.path())
            .unwrap();
        let input_dir = dir.path().join("input");
        let out = clean(&mut Command::new(&b.fetcher))
            .env("IPFS_GATEWAY", &gateway)
            .env("WASM_CID", wasm_cid)
            .env("INPUT_CID", input_cid)
            .env("FETCH_DIR", &input_dir)
            .stdin(Stdio::null())
            .output()
            .expect("spawn fetcher");
        assert!(
            out.status.success(),
            "fetcher: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let result_path = dir.path().join("result.json");
        let out = clean(&mut Command::new(&b.runner))
            .arg("--wasm")
            .arg(input_dir.join("module.wasm"))
            .arg("--input")
            .arg(input_dir.join("input.json"))
            .arg("--output")
            .arg(&result_path)
            .args(["--task-id", &format!("direct-{i:03}")])
            .args(["--fuel", "10000000000", "--timeout", "60"])
            .stdin(Stdio::null())
            .output()
            .expect("spawn runner");
        assert!(
            out.status.success(),
            "runner: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&std::fs::read(&result_path).unwrap()).unwrap();
        check_result(&json!({ "status": v["status"], "result": v }), "runner");
        dir.close().unwrap();
    }
    start.elapsed()
}

fn min_of(runs: usize, mut f: impl FnMut() -> Duration) -> Duration {
    (0..runs).map(|_| f()).min().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("coordinator_local: skipped (run it with `cargo bench`)");
        return;
    }
    let b = bins();
    let (mirror, _guard, wasm_cid, input_cid) = mirror();
    let tasks_dir = tempfile::tempdir().unwrap();
    let tasks = tasks_dir.path().join("tasks.jsonl");
    let lines: Vec<String> = (0..TASKS)
        .map(|i| {
            json!({ "task_id": format!("bench-{i:03}"), "wasm_cid": wasm_cid, "input_cid": input_cid })
                .to_string()
        })
        .collect();
    std::fs::write(&tasks, lines.join("\n") + "\n").unwrap();

    eprintln!(
        "coordinator_local: {TASKS} tasks, minimum of {RUNS} runs after a warm-up; {} \
         (mirror {})",
        b.coordinator.display(),
        mirror.display()
    );
    let baseline = std::env::var_os("BASELINE_COORDINATOR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    // Warm-up: page cache, binaries loaded once.
    coordinator_run(&b, &mirror, &tasks, 1, Variant::Disk);
    direct_run(&b, &mirror, &wasm_cid, &input_cid);

    let c1 = min_of(RUNS, || {
        coordinator_run(&b, &mirror, &tasks, 1, Variant::Disk)
    });
    let c2 = min_of(RUNS, || {
        coordinator_run(&b, &mirror, &tasks, 2, Variant::Disk)
    });
    let tmpfs = min_of(RUNS, || {
        coordinator_run(&b, &mirror, &tasks, 1, Variant::Tmpfs)
    });
    let base = baseline.as_deref().map(|p| {
        min_of(RUNS, || {
            coordinator_run(&b, &mirror, &tasks, 1, Variant::Baseline(p))
        })
    });
    let direct = min_of(RUNS, || direct_run(&b, &mirror, &wasm_cid, &input_cid));

    let n = TASKS as f64;
    let cores = std::thread::available_parallelism().map_or(0, |c| c.get());
    println!();
    println!("{TASKS} `add(2, 3)` tasks, local backend, release build, {cores} cores, minimum of {RUNS} runs:");
    println!();
    println!("| measurement | time (ms) | tasks/s | per task (ms) |");
    println!("| --- | ---: | ---: | ---: |");
    let mut rows = vec![
        ("`coordinator --once`, concurrency 1".to_string(), c1),
        ("`coordinator --once`, concurrency 2".to_string(), c2),
        (
            "`coordinator --once`, concurrency 1, ledger on tmpfs".to_string(),
            tmpfs,
        ),
        (
            "direct `fetcher` + `runner` per task, serial".to_string(),
            direct,
        ),
    ];
    if let (Some(p), Some(d)) = (&baseline, base) {
        rows.push((
            format!("baseline `{}` (no ledger), concurrency 1", p.display()),
            d,
        ));
    }
    for (name, d) in rows {
        println!(
            "| {name} | {:.1} | {:.1} | {:.2} |",
            ms(d),
            n / d.as_secs_f64(),
            ms(d) / n
        );
    }
    println!(
        "| coordinator overhead per task, (concurrency 1 − direct) / {TASKS} | | | {:.2} |",
        (ms(c1) - ms(direct)) / n
    );
    if let Some(d) = base {
        println!(
            "| ledger and pods per task, (concurrency 1 − baseline) / {TASKS} | | | {:.2} |",
            (ms(c1) - ms(d)) / n
        );
    }
}
