//! What receipts and the result cache cost: 1 000 trivial tasks (`add(i, 1)`, distinct task
//! ids) through the release `coordinator --once` on the local backend (concurrency 2, a
//! fresh ledger on disk each run):
//!
//! - unsigned receipts vs receipts signed with an Ed25519 key (`signing_key_file`), and
//!   building + signing a receipt in this process alone (what signing adds to a task);
//! - deterministic tasks with distinct inputs (every lookup misses) with `cache = off` vs
//!   `on` (a lookup and a store per task);
//! - then 1 000 new task ids with the same content against the filled ledger: every task a
//!   cache hit, answered without a process; a hit's cost is that run's time per task.
//!
//! Prints a Markdown table. `cargo build --release --workspace && cargo bench -p
//! coordinator --bench coordinator_receipts`. Without `--bench` it prints "skipped".
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;
use common::{clean, release_dir, repo_root};

const TASKS: usize = 1000;

fn cid_of(bytes: &[u8]) -> String {
    fetcher::importer::cid_of_bytes(fetcher::importer::Params::V0, bytes).to_string()
}

/// One `coordinator --once` over `tasks` with `extra` flags and the ledger `state`;
/// returns its wall time and the reports.
fn run(mirror: &Path, tasks: &Path, state: &Path, extra: &[&str]) -> (Duration, Vec<Value>) {
    let bin = release_dir().join("coordinator");
    let work = tempfile::Builder::new()
        .prefix("coord-bench-work-")
        .tempdir()
        .unwrap();
    let mut cmd = Command::new(&bin);
    clean(&mut cmd)
        .args(["--once", "--backend", "local", "--listen", "off"])
        .args(["--concurrency", "2"])
        .arg("--tasks")
        .arg(tasks)
        .arg("--ipfs-mirror")
        .arg(mirror)
        .arg("--work-dir")
        .arg(work.path())
        .arg("--state")
        .arg(state)
        .args(extra)
        .stdin(Stdio::null());
    let start = Instant::now();
    let out = cmd.output().expect("spawn the coordinator");
    let took = start.elapsed();
    let reports: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        out.status.success() && reports.len() == TASKS,
        "{}: {} reports\n{}",
        out.status,
        reports.len(),
        String::from_utf8_lossy(&out.stderr)
    );
    for r in &reports {
        assert_eq!(r["status"], "ok", "{r}");
    }
    (took, reports)
}

fn per_task_ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0 / TASKS as f64
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("coordinator_receipts: skipped (run it with `cargo bench`)");
        return;
    }
    let bin = release_dir().join("coordinator");
    assert!(
        bin.is_file(),
        "{} is missing: cargo build --release --workspace",
        bin.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let mirror = dir.path().join("mirror");
    std::fs::create_dir(&mirror).unwrap();
    let wasm = std::fs::read(repo_root().join("host/wasm/add.wasm")).unwrap();
    std::fs::write(mirror.join("add.wasm"), &wasm).unwrap();
    let wasm_cid = cid_of(&wasm);
    let inputs: Vec<String> = (0..TASKS)
        .map(|i| {
            let input = format!(r#"{{"entry":"add","args":[{i},1]}}"#);
            std::fs::write(mirror.join(format!("in-{i}.json")), &input).unwrap();
            cid_of(input.as_bytes())
        })
        .collect();
    let task_file = |name: &str, prefix: &str, deterministic: bool| -> PathBuf {
        let lines: Vec<String> = inputs
            .iter()
            .enumerate()
            .map(|(i, input)| {
                json!({"task_id": format!("{prefix}-{i:04}"), "wasm_cid": wasm_cid,
                       "input_cid": input, "deterministic": deterministic})
                .to_string()
            })
            .collect();
        let p = dir.path().join(name);
        std::fs::write(&p, lines.join("\n") + "\n").unwrap();
        p
    };
    let key = dir.path().join("key.pem");
    // RFC 8032's first test secret, PKCS#8 PEM.
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let plain = task_file("plain.jsonl", "p", false);
    let det = task_file("det.jsonl", "d", true);
    let again = task_file("again.jsonl", "h", true);
    let state = |name: &str| dir.path().join(format!("{name}.sqlite"));
    let key_arg = key.to_str().unwrap();

    eprintln!(
        "coordinator_receipts: {TASKS} tasks a run, {}",
        bin.display()
    );
    // Warm-up: page cache, binaries loaded.
    run(&mirror, &plain, &state("warm"), &[]);
    let (unsigned, _) = run(&mirror, &plain, &state("unsigned"), &[]);
    let (signed, reports) = run(
        &mirror,
        &plain,
        &state("signed"),
        &["--signing-key-file", key_arg],
    );
    assert!(reports
        .iter()
        .all(|r| r["receipt"]["signature"].is_string()));
    let (cache_off, _) = run(&mirror, &det, &state("off"), &["--cache", "off"]);
    let (cache_on, _) = run(&mirror, &det, &state("on"), &[]);
    let (hits, reports) = run(&mirror, &again, &state("on"), &[]);
    assert!(
        reports.iter().all(|r| r["cached"] == true),
        "every task a hit"
    );

    // Building and signing a receipt alone, in this process.
    let signer = coordinator::receipt::Signer::new(Some(
        coordinator::receipt::read_signing_key(&key).unwrap(),
    ));
    let report: coordinator::task::TaskReport = serde_json::from_value(reports[0].clone()).unwrap();
    let start = Instant::now();
    for _ in 0..TASKS {
        std::hint::black_box(signer.receipt(&report, "2026-12-01T00:00:00.000Z".into()));
    }
    let sign_us = start.elapsed().as_secs_f64() * 1e6 / TASKS as f64;

    println!("| run ({TASKS} `add` tasks, local backend, concurrency 2) | wall | per task |");
    println!("| --- | --- | --- |");
    for (what, d) in [
        ("unsigned receipts", unsigned),
        ("signed receipts (Ed25519)", signed),
        ("deterministic, `cache = off`", cache_off),
        ("deterministic, `cache = on`, every lookup a miss", cache_on),
        ("deterministic, every task a cache hit (no process)", hits),
    ] {
        println!(
            "| {what} | {:.2} s | {:.2} ms |",
            d.as_secs_f64(),
            per_task_ms(d)
        );
    }
    println!("| building and signing one receipt, in process | – | {sign_us:.1} µs |");
}
