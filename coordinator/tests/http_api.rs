//! The HTTP listener over real HTTP on 127.0.0.1: health and readiness, the task API
//! (good, duplicate, oversized, malformed and invalid bodies), and the metrics text after a
//! run of tasks, parsed and checked.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[path = "support/env.rs"]
mod env;
#[path = "support/http.rs"]
mod http;

const ADD_WASM: &str = "QmYyMt9rdrgr376CxpAoAGiT6xUo3bafoq4rzBxpQ2aScu";
const ADD_INPUT: &str = "QmR7FbyEjeVvsctqBYCX16Snhogs6MYF3fssLF1tTw9dDN";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A coordinator without `--once`, listening on a free port, with an empty task file so
/// that only API tasks run.
struct Service {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Service {
    fn start() -> Self {
        let bin = assert_cmd::cargo::cargo_bin("coordinator");
        for b in ["runner", "fetcher"] {
            assert!(
                bin.with_file_name(b).is_file(),
                "{b} is not beside {}: run `cargo build --workspace` first",
                bin.display()
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let tasks = dir.path().join("tasks.jsonl");
        std::fs::write(&tasks, "").unwrap();
        let mut cmd = Command::new(bin);
        env::clean(&mut cmd)
            .args(["--listen", "127.0.0.1:0", "--backend", "local", "--tasks"])
            .arg(&tasks)
            .arg("--ipfs-mirror")
            .arg(repo().join("host/wasm"))
            .arg("--work-dir")
            .arg(dir.path().join("work"))
            .arg("--state")
            .arg(dir.path().join("state/ledger.sqlite"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("http listener on ").nth(1) {
                    let addr = rest.split(':').nth(1).unwrap_or("");
                    let _ = tx.send(addr.trim().parse::<u16>().unwrap_or(0));
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the coordinator did not report its listener");
        assert_ne!(port, 0);
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    fn request(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        http::request(self.port, method, path, body)
    }

    fn get(&self, path: &str) -> (u16, String) {
        self.request("GET", path, b"")
    }

    fn post(&self, body: &str) -> (u16, Value) {
        let (status, text) = self.request("POST", "/tasks", body.as_bytes());
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    fn wait_done(&self, id: &str) -> Value {
        let started = Instant::now();
        loop {
            let (status, body) = self.get(&format!("/tasks/{id}"));
            assert_eq!(status, 200, "{body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            if v["state"] == "done" {
                return v;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{id} never finished: {v}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The metrics text as `name{labels} -> value`.
    fn metrics(&self) -> HashMap<String, f64> {
        let (status, text) = self.get("/metrics");
        assert_eq!(status, 200);
        assert!(
            text.trim_end().ends_with("# EOF"),
            "not OpenMetrics text: {text}"
        );
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let (name, value) = l
                    .rsplit_once(' ')
                    .unwrap_or_else(|| panic!("bad metrics line {l:?}"));
                (
                    name.to_owned(),
                    value
                        .parse::<f64>()
                        .unwrap_or_else(|_| panic!("bad value in {l:?}")),
                )
            })
            .collect()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
    }
}

fn task(id: &str) -> String {
    json!({"task_id": id, "wasm_cid": ADD_WASM, "input_cid": ADD_INPUT}).to_string()
}

#[test]
fn health_and_readiness() {
    let svc = Service::start();
    assert_eq!(svc.get("/healthz"), (200, "ok\n".to_string()));
    let (status, body) = svc.get("/readyz");
    assert_eq!(status, 200, "{body}");
    assert_eq!(svc.get("/nope").0, 404);
}

#[test]
fn post_tasks_good_duplicate_oversized_malformed_and_invalid() {
    let svc = Service::start();
    let (status, v) = svc.post(&task("t-1"));
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["state"], "queued");
    let done = svc.wait_done("t-1");
    assert_eq!(done["status"], "ok");
    assert_eq!(done["report"]["result"]["result"], json!([5]));

    // Idempotent on task_id: answered with the current state, and not run again.
    let (status, v) = svc.post(&task("t-1"));
    assert_eq!((status, v["state"].as_str()), (200, Some("done")));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(svc.metrics()["wasm_exec_tasks_total{status=\"ok\"}"], 1.0);

    let big = format!(
        "{{\"task_id\":\"x\",\"wasm_cid\":\"{}\"}}",
        "Q".repeat(100 * 1024)
    );
    assert_eq!(svc.request("POST", "/tasks", big.as_bytes()).0, 413);
    let (status, v) = svc.post("{\"task_id\":");
    assert_eq!(status, 400);
    assert!(
        v["error"].as_str().unwrap().contains("not a valid task"),
        "{v}"
    );
    let (status, v) = svc.post(&json!({"task_id": "t-2", "wasm_cid": "not-a-cid"}).to_string());
    assert_eq!(status, 400);
    assert!(v["error"].as_str().unwrap().contains("wasm_cid"), "{v}");
    let (status, v) = svc.post(&json!({"task_id": "", "wasm_cid": ADD_WASM}).to_string());
    assert_eq!(status, 400, "{v}");
    // Refused tasks are not known afterwards.
    assert_eq!(svc.get("/tasks/t-2").0, 404);
}

#[test]
fn metrics_count_a_run_of_tasks() {
    let svc = Service::start();
    let before = svc.metrics();
    assert_eq!(before.get("wasm_exec_tasks_in_flight"), Some(&0.0));
    assert!(before
        .keys()
        .any(|k| k.starts_with("wasm_exec_build_info{")));
    for i in 0..3 {
        assert_eq!(svc.post(&task(&format!("m-{i}"))).0, 202);
    }
    // A module that is not in the mirror: a fetch failure, retried, then published.
    let missing = json!({"task_id": "m-missing", "wasm_cid": "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"});
    assert_eq!(svc.post(&missing.to_string()).0, 202);
    for id in ["m-0", "m-1", "m-2"] {
        assert_eq!(svc.wait_done(id)["status"], "ok");
    }
    assert_eq!(svc.wait_done("m-missing")["status"], "fetch_failed");
    std::thread::sleep(Duration::from_millis(300));
    let m = svc.metrics();
    assert_eq!(m["wasm_exec_tasks_total{status=\"ok\"}"], 3.0);
    assert_eq!(m["wasm_exec_tasks_total{status=\"fetch_failed\"}"], 1.0);
    assert_eq!(m["wasm_exec_task_duration_seconds_count"], 4.0);
    assert!(m["wasm_exec_stage_duration_seconds_count{stage=\"fetch\"}"] >= 4.0);
    assert_eq!(
        m["wasm_exec_stage_duration_seconds_count{stage=\"run\"}"],
        3.0
    );
    assert_eq!(m["wasm_exec_retries_total"], 2.0, "the default retries = 2");
    assert_eq!(m["wasm_exec_backend_errors_total{kind=\"fetch\"}"], 3.0);
    assert_eq!(m["wasm_exec_tasks_in_flight"], 0.0);

    let (status, body) = svc.get("/tasks?status=ok&limit=2");
    assert_eq!(status, 200);
    let listed: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|v| v["status"] == "ok"));
    let (_, body) = svc.get("/tasks?status=fetch_failed");
    let listed: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(listed[0]["task_id"], "m-missing");
}
