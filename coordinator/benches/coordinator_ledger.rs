//! What the size of the ledger costs the coordinator's memory: a ledger holding N finished
//! tasks (1 000, then 100 000, written through the library), then the release coordinator
//! started on it (local backend, the task API on 127.0.0.1), 200 `add(2, 3)` tasks
//! submitted through `POST /tasks` and waited for, and every task listed through
//! `GET /tasks` (pages of 1000). Reports the coordinator's resident memory (VmRSS) and
//! its peak (VmHWM) for each N, and the ledger's size on disk. The goal: RSS with 100 000
//! tasks under 1.2x that with 1 000 (the ledger is on disk, not in memory).
//!
//! `cargo build --release --workspace && cargo bench -p coordinator --bench coordinator_ledger`.
//! Without `--bench` it prints "skipped".
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coordinator::ledger::{Ledger, SqliteLedger};
use coordinator::task::{ReportStatus, Task, TaskReport};
use serde_json::{json, Value};

mod common;
use common::{clean, release_dir, repo_root};

#[path = "../tests/support/http.rs"]
mod http;

const SUBMITTED: usize = 200;
const ADD_WASM: &str = "QmYyMt9rdrgr376CxpAoAGiT6xUo3bafoq4rzBxpQ2aScu";
const ADD_INPUT: &str = "QmR7FbyEjeVvsctqBYCX16Snhogs6MYF3fssLF1tTw9dDN";

/// Writes `n` finished, published tasks (with a report like a real one) into the ledger.
fn fill(path: &Path, n: usize) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ledger = Arc::new(SqliteLedger::open(path).unwrap());
        let sinks = vec!["stdout".to_string()];
        for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
            let tasks: Vec<Task> = chunk
                .iter()
                .map(|i| {
                    serde_json::from_value(json!({
                        "task_id": format!("old-{i:06}"),
                        "wasm_cid": ADD_WASM,
                        "input_cid": ADD_INPUT,
                    }))
                    .unwrap()
                })
                .collect();
            ledger.accept(tasks.clone()).await.unwrap();
            ledger.start(tasks.len()).await.unwrap();
            let finishing = tasks.iter().map(|t| {
                let mut r = TaskReport::new(t, ReportStatus::OK);
                r.attempts = 1;
                r.result = Some(
                    serde_json::from_value(json!({
                        "schema_version": 1, "task_id": t.task_id, "status": "ok",
                        "entry": "add", "args": [2, 3], "result": [5], "exit_code": null,
                        "fuel_consumed": 53, "duration_ms": 0.9,
                        "module_sha256": "8b4add815c9c845015ca0109a7fb960b62b9b0e25603e43a7689ba3e680a8a33",
                        "error": null
                    }))
                    .unwrap(),
                );
                let ledger = ledger.clone();
                async move { ledger.finish(r).await.unwrap() }
            });
            futures_util::future::join_all(finishing).await;
            let ids = tasks.iter().map(|t| t.task_id.clone()).collect();
            ledger
                .delivered("stdout".into(), ids, sinks.clone())
                .await
                .unwrap();
        }
    });
}

fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)
                .map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap())
        })
        .unwrap()
}

struct Measured {
    recorded: usize,
    ledger_mib: f64,
    /// After start-up, and after the submitted tasks ran (before the listing).
    started_mib: f64,
    ran_mib: f64,
    rss_mib: f64,
    peak_mib: f64,
    listed: usize,
}

fn measure(n: usize) -> Measured {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("ledger.sqlite");
    let began = Instant::now();
    fill(&state, n);
    eprintln!(
        "coordinator_ledger: {n} tasks written in {:.1} s",
        began.elapsed().as_secs_f64()
    );
    let empty = dir.path().join("none.jsonl");
    std::fs::write(&empty, "").unwrap();
    let mut cmd = Command::new(release_dir().join("coordinator"));
    clean(&mut cmd)
        .args([
            "--backend",
            "local",
            "--listen",
            "127.0.0.1:0",
            "--concurrency",
            "2",
        ])
        .arg("--state")
        .arg(&state)
        .arg("--work-dir")
        .arg(dir.path().join("work"))
        .arg("--tasks")
        .arg(&empty)
        .arg("--ipfs-mirror")
        .arg(repo_root().join("host/wasm"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child: Child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("http listener on 127.0.0.1:").nth(1) {
                let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                let _ = tx.send(port.parse::<u16>().unwrap());
            }
        }
    });
    let port = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the listener");
    let started = status_kib(child.id(), "VmRSS:");
    for i in 0..SUBMITTED {
        let body =
            json!({"task_id": format!("new-{i:03}"), "wasm_cid": ADD_WASM, "input_cid": ADD_INPUT});
        let (code, text) = http::request(port, "POST", "/tasks", body.to_string().as_bytes());
        assert_eq!(code, 202, "{text}");
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (_, text) = http::request(
            port,
            "GET",
            &format!("/tasks/new-{:03}", SUBMITTED - 1),
            b"",
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        if v["state"] == "done" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the submitted tasks did not finish: {v}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let ran = status_kib(child.id(), "VmRSS:");
    let mut after = 0u64;
    let mut listed = 0;
    loop {
        let (code, text) = http::request(
            port,
            "GET",
            &format!("/tasks?limit=1000&after={after}"),
            b"",
        );
        assert_eq!(code, 200, "{text}");
        let page: Vec<Value> = serde_json::from_str(&text).unwrap();
        let Some(last) = page.last() else { break };
        after = last["seq"].as_u64().unwrap();
        listed += page.len();
    }
    let pid = child.id();
    let rss = status_kib(pid, "VmRSS:");
    let peak = status_kib(pid, "VmHWM:");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(child.wait().unwrap().success());
    let ledger_bytes: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("ledger.sqlite"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    Measured {
        recorded: n + SUBMITTED,
        ledger_mib: ledger_bytes as f64 / (1 << 20) as f64,
        started_mib: started as f64 / 1024.0,
        ran_mib: ran as f64 / 1024.0,
        rss_mib: rss as f64 / 1024.0,
        peak_mib: peak as f64 / 1024.0,
        listed,
    }
}

/// Milliseconds per task of the ledger's writes alone: 200 tasks accepted at once, then
/// each started, finished and recorded as delivered one after the other, as the reconciler
/// does at concurrency 1; on disk (the temp dir); minimum of 3 runs.
fn ledger_cost() -> f64 {
    let rt = tokio::runtime::Runtime::new().unwrap();
    (0..3)
        .map(|_| {
            let dir = tempfile::tempdir().unwrap();
            rt.block_on(async {
                let ledger = SqliteLedger::open(&dir.path().join("ledger.sqlite")).unwrap();
                let tasks: Vec<Task> = (0..200)
                    .map(|i| {
                        serde_json::from_value(
                            json!({"task_id": format!("t{i}"), "wasm_cid": ADD_WASM}),
                        )
                        .unwrap()
                    })
                    .collect();
                ledger.accept(tasks.clone()).await.unwrap();
                let began = Instant::now();
                for t in &tasks {
                    ledger.start(1).await.unwrap();
                    ledger
                        .finish(TaskReport::new(t, ReportStatus::OK))
                        .await
                        .unwrap();
                    ledger
                        .delivered(
                            "stdout".into(),
                            vec![t.task_id.clone()],
                            vec!["stdout".into()],
                        )
                        .await
                        .unwrap();
                }
                began.elapsed().as_secs_f64() * 1000.0 / 200.0
            })
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("coordinator_ledger: skipped (run it with `cargo bench`)");
        return;
    }
    let small = measure(1_000);
    let large = measure(100_000);
    println!();
    println!("The coordinator's memory against the size of its ledger ({SUBMITTED} tasks submitted and run, then every task listed through GET /tasks):");
    println!();
    println!("| tasks in the ledger | ledger on disk (MiB) | RSS started (MiB) | RSS after {SUBMITTED} tasks (MiB) | listed | RSS after listing all (MiB) | peak RSS (MiB) |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for m in [&small, &large] {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {} | {:.1} | {:.1} |",
            m.recorded, m.ledger_mib, m.started_mib, m.ran_mib, m.listed, m.rss_mib, m.peak_mib
        );
    }
    println!(
        "| ratio 100 000 / 1 000 | | {:.2}x | {:.2}x | | {:.2}x | {:.2}x |",
        large.started_mib / small.started_mib,
        large.ran_mib / small.ran_mib,
        large.rss_mib / small.rss_mib,
        large.peak_mib / small.peak_mib
    );
    let per_task = ledger_cost();
    println!();
    println!(
        "The ledger's own cost per task, on disk, as the reconciler pays it at concurrency 1 \
         (start, finish, record the delivery; 200 tasks, minimum of 3 runs): {per_task:.3} ms"
    );
}
