//! The Kubernetes backend's cost per task, against the API-server and kubelet stand-in of
//! the tests (`tests/support/cluster`): 100 trivial tasks (`add(2, 3)`) through the release
//! `coordinator --once --backend kubernetes` at concurrency 1 and 4, with the pods' containers
//! run as the release `fetcher` and `runner`. Prints the time per task and the API requests
//! the coordinator makes per task (what a real API server would see), as Markdown.
//!
//! Then, with and without Kueue (the stand-in's): 200 trivial tasks with a quota for 4 at
//! once (2 CPU, 500m a task) and concurrency 8, against concurrency 4 and no Kueue.
//!
//! `cargo build --release --workspace && cargo bench -p coordinator --bench coordinator_kubernetes`
//! (`-- kueue`: only the Kueue comparison). Without `--bench` (e.g. `cargo test
//! --all-targets`) it prints "skipped".
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[path = "../tests/support/mod.rs"]
mod support;
use support::cluster::{build_images, ClusterOptions, FakeCluster, KueueOptions};
use support::{cid_of, clean, coordinator_bin, repo_root, PlainGateway};

const TASKS: usize = 100;
/// Tasks of the Kueue comparison, and the quota: 4 tasks of 500m at once.
const KUEUE_TASKS: usize = 200;
const KUEUE_QUOTA_MILLIS: u64 = 2000;
const QUEUE: &str = "wasm-exec";
const RUNS: usize = 3;
const NS: &str = "bench";

/// One `coordinator --once` over the task file (`count` tasks) against a fresh stand-in,
/// behind its Kueue with `kueue_quota` millicores when given; its wall time and the
/// requests it made.
fn run(
    tasks: &std::path::Path,
    count: usize,
    gateway: &PlainGateway,
    concurrency: usize,
    kueue_quota: Option<u64>,
) -> (Duration, Vec<(String, String)>) {
    // The release build's, when run by `cargo bench` (runner and fetcher beside it).
    let bin = coordinator_bin().parent().unwrap().to_path_buf();
    let cluster = FakeCluster::start(ClusterOptions {
        images: build_images(&bin),
        pod_backoff: Duration::from_millis(100),
        // The ledger's custom resource, as `kubectl apply -f k8s/crd.yaml` installs it.
        crds: vec![FakeCluster::wasm_task_crd()],
        kueue: kueue_quota.map(|cpu_quota_millis| KueueOptions {
            local_queues: vec![QUEUE.into()],
            cpu_quota_millis,
            requeue_after: Duration::from_secs(1),
        }),
    });
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = cluster.write_kubeconfig(dir.path(), NS);
    let mut cmd = Command::new(bin.join("coordinator"));
    clean(&mut cmd)
        .args([
            "--once",
            "--backend",
            "kubernetes",
            "--listen",
            "off",
            "--namespace",
            NS,
        ])
        .arg("--tasks")
        .arg(tasks)
        .args(["--ipfs-endpoint", &gateway.url()])
        .args(["--concurrency", &concurrency.to_string()])
        .arg("--state")
        .arg(dir.path().join("ledger.sqlite"))
        .env("KUBECONFIG", &kubeconfig)
        .env("COORDINATOR_JOB_TEMPLATE", repo_root().join("k8s/job.yaml"))
        .stdin(Stdio::null());
    if kueue_quota.is_some() {
        cmd.env("COORDINATOR_QUEUE_NAME", QUEUE);
    }
    let start = Instant::now();
    let out = cmd.output().expect("spawn the coordinator");
    let elapsed = start.elapsed();
    let results: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        out.status.success() && results.len() == count,
        "concurrency {concurrency}: {} with {} results\nstderr:\n{}",
        out.status,
        results.len(),
        String::from_utf8_lossy(&out.stderr)
    );
    for r in &results {
        assert!(
            r["status"] == "ok" && r["result"]["result"] == json!([5]),
            "{r}"
        );
    }
    (elapsed, cluster.requests())
}

/// `GET pods (watch)`, `POST jobs`, …: what a request did, without names and queries.
fn kind_of(method: &str, path: &str) -> String {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let resource = parts
        .iter()
        .position(|p| *p == "namespaces")
        .and_then(|i| parts.get(i + 2..))
        .map(|rest| match rest {
            [r] | [r, _] => (*r).to_string(),
            [r, _, sub, ..] => format!("{r}/{sub}"),
            [] => String::new(),
        })
        .unwrap_or_else(|| path.to_string());
    let watch = query.split('&').any(|p| p == "watch=true");
    format!("{method} {resource}{}", if watch { " (watch)" } else { "" })
}

/// A task file of `count` `add(2, 3)` tasks.
fn task_file(dir: &std::path::Path, count: usize, wasm: &[u8], input: &[u8]) -> std::path::PathBuf {
    let tasks = dir.join(format!("tasks-{count}.jsonl"));
    let lines: Vec<String> = (0..count)
        .map(|i| {
            json!({"task_id": format!("bench-{i:03}"), "wasm_cid": cid_of(wasm), "input_cid": cid_of(input)})
                .to_string()
        })
        .collect();
    std::fs::write(&tasks, lines.join("\n") + "\n").unwrap();
    tasks
}

/// Requests by kind, counted.
fn request_mix(requests: &[(String, String)]) -> BTreeMap<String, usize> {
    let mut mix = BTreeMap::new();
    for (m, p) in requests {
        *mix.entry(kind_of(m, p)).or_insert(0usize) += 1;
    }
    mix
}

/// [`KUEUE_TASKS`] tasks without Kueue (concurrency 4) and behind it (a quota for 4 at
/// once, concurrency 8: Kueue decides): time and API requests per task.
fn kueue_comparison(tasks: &std::path::Path, gateway: &PlainGateway) {
    let setups = [
        ("without Kueue, concurrency 4", 4, None),
        (
            "with Kueue (quota: 4 tasks of 500m), concurrency 8",
            8,
            Some(KUEUE_QUOTA_MILLIS),
        ),
    ];
    let mut rows = Vec::new();
    for (label, concurrency, quota) in setups {
        let mut best: Option<Duration> = None;
        let mut mix = BTreeMap::new();
        for _ in 0..RUNS {
            let (took, requests) = run(tasks, KUEUE_TASKS, gateway, concurrency, quota);
            best = Some(best.map_or(took, |b| b.min(took)));
            mix = request_mix(&requests);
        }
        rows.push((label, best.unwrap_or_default(), mix));
    }
    let n = KUEUE_TASKS as f64;
    println!();
    println!("{KUEUE_TASKS} `add(2, 3)` tasks with and without Kueue (the stand-in's), minimum of {RUNS} runs:");
    println!();
    println!("| run | time (s) | tasks/s | API requests per task |");
    println!("| --- | ---: | ---: | ---: |");
    for (label, d, mix) in &rows {
        let total: usize = mix.values().sum();
        println!(
            "| {label} | {:.1} | {:.1} | {:.2} |",
            d.as_secs_f64(),
            n / d.as_secs_f64(),
            total as f64 / n
        );
    }
    println!();
    println!("API requests per task, by kind:");
    println!();
    println!("| request | without Kueue | with Kueue |");
    println!("| --- | ---: | ---: |");
    let kinds: std::collections::BTreeSet<&String> =
        rows.iter().flat_map(|(_, _, m)| m.keys()).collect();
    for kind in kinds {
        let per = |m: &BTreeMap<String, usize>| m.get(kind).copied().unwrap_or(0) as f64 / n;
        println!(
            "| {kind} | {:.2} | {:.2} |",
            per(&rows[0].2),
            per(&rows[1].2)
        );
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("coordinator_kubernetes: skipped (run it with `cargo bench`)");
        return;
    }
    let samples = repo_root().join("host/wasm");
    let wasm = std::fs::read(samples.join("add.wasm")).expect("host/wasm/add.wasm");
    let input = br#"{"entry":"add","args":[2,3]}"#.to_vec();
    let gateway = PlainGateway::start(&[&wasm, &input], false);
    let dir = tempfile::tempdir().unwrap();
    if std::env::args().any(|a| a == "kueue") {
        let tasks = task_file(dir.path(), KUEUE_TASKS, &wasm, &input);
        eprintln!("coordinator_kubernetes: the Kueue comparison only");
        kueue_comparison(&tasks, &gateway);
        return;
    }
    let tasks = task_file(dir.path(), TASKS, &wasm, &input);
    eprintln!("coordinator_kubernetes: {TASKS} tasks, minimum of {RUNS} runs after a warm-up");
    run(&tasks, TASKS, &gateway, 4, None);

    let mut rows = Vec::new();
    let mut mix = BTreeMap::new();
    for concurrency in [1, 4] {
        let mut best: Option<Duration> = None;
        for _ in 0..RUNS {
            let (took, requests) = run(&tasks, TASKS, &gateway, concurrency, None);
            best = Some(best.map_or(took, |b| b.min(took)));
            if concurrency == 1 {
                mix = request_mix(&requests);
            }
        }
        rows.push((concurrency, best.unwrap_or_default()));
    }

    let cores = std::thread::available_parallelism().map_or(0, |c| c.get());
    println!();
    println!("{TASKS} `add(2, 3)` tasks, Kubernetes backend against the test stand-in, release build, {cores} cores, minimum of {RUNS} runs:");
    println!();
    println!("| measurement | time (ms) | tasks/s | per task (ms) |");
    println!("| --- | ---: | ---: | ---: |");
    for (concurrency, d) in rows {
        let ms = d.as_secs_f64() * 1000.0;
        println!(
            "| `coordinator --once`, concurrency {concurrency} | {ms:.1} | {:.1} | {:.2} |",
            TASKS as f64 / d.as_secs_f64(),
            ms / TASKS as f64
        );
    }
    println!();
    println!("API requests per task (concurrency 1):");
    println!();
    println!("| request | per task |");
    println!("| --- | ---: |");
    let mut total = 0;
    for (kind, n) in &mix {
        total += n;
        println!("| {kind} | {:.2} |", *n as f64 / TASKS as f64);
    }
    println!("| all | {:.2} |", total as f64 / TASKS as f64);
    let tasks = task_file(dir.path(), KUEUE_TASKS, &wasm, &input);
    kueue_comparison(&tasks, &gateway);
}
