//! Exactly once across crashes, local backend: 500 tasks, the coordinator killed (`kill
//! -9`) or stopped (SIGTERM) at random moments and started again each time with the same
//! ledger and work dir. At the end every task is in the results file exactly once, each
//! task's runner was started exactly once (a wrapper counts them), and nothing is left in
//! the work dir or running.
//!
//! The moments are random; the seed is printed and `CRASH_SEED=N` replays a run.

// Helpers outside #[test] functions state expectations too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use support::*;

const TASKS: usize = 500;
const STOPS: usize = 10;

struct Setup {
    mirror: Mirror,
    dir: tempfile::TempDir,
    lines: Vec<String>,
    ids: Vec<String>,
    rng: rand::rngs::StdRng,
}

impl Setup {
    /// 500 tasks: most a quick `add`, every fifth a 30 ms nap (so that some are running at
    /// any moment), behind a runner wrapper that logs each start.
    fn new() -> Setup {
        let seed = std::env::var("CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| rand::rng().random::<u64>());
        eprintln!("CRASH_SEED={seed}");
        let (mirror, samples) = sample_mirror();
        let (add, add_in, _) = &samples["add"];
        let nap = mirror.add("nap.wasm", &wasm_of(NAP_WAT));
        let nap_in = mirror.add("nap-input.json", br#"{"entry":"nap","args":[30]}"#);
        let mut lines = Vec::new();
        let mut ids = Vec::new();
        for i in 0..TASKS {
            let id = format!("c-{i:03}");
            lines.push(if i % 5 == 0 {
                task_line(&id, &nap, Some(&nap_in), None)
            } else {
                task_line(&id, add, Some(add_in), None)
            });
            ids.push(id);
        }
        Setup {
            mirror,
            dir: tempfile::tempdir().unwrap(),
            lines,
            ids,
            rng: rand::rngs::StdRng::seed_from_u64(seed),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The runner behind a wrapper that appends the task id to `runs.log`.
    fn wrapper(&self) -> PathBuf {
        let real = coordinator_bin().with_file_name("runner");
        write_script(
            self.dir.path(),
            "runner-wrapper",
            &format!(
                "echo \"$TASK_ID\" >> '{}'\nexec '{}' \"$@\"",
                self.path("runs.log").display(),
                real.display()
            ),
        )
    }

    /// A coordinator on the shared ledger, work dir and results file.
    fn coord(&self, extra: &[&str]) -> Coord {
        let mut c = Coord::bare();
        c.env("COORDINATOR_STATE", self.path("state/ledger.sqlite"))
            .arg("--work-dir")
            .arg(self.path("work"))
            .arg("--ipfs-mirror")
            .arg(self.mirror.path())
            .arg("--results")
            .arg(self.path("results.jsonl"))
            .arg("--runner-path")
            .arg(self.wrapper())
            .args(["--concurrency", "2", "--fuel", "0"])
            .args(extra)
            .timeout(Duration::from_secs(240));
        c
    }

    fn results(&self) -> Vec<Value> {
        std::fs::read_to_string(self.path("results.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("a broken line in the results file ({e}): {l}"))
            })
            .collect()
    }

    /// Every task exactly once in the results file and among the runner starts, with its
    /// right answer; the work dir empty; nothing of any run still alive.
    fn check(&self, last: &Run) {
        let mut published: BTreeMap<String, usize> = BTreeMap::new();
        for r in self.results() {
            let id = r["task_id"].as_str().unwrap().to_owned();
            assert_eq!(r["status"], "ok", "{r}");
            let want = if id.ends_with('0') || id.ends_with('5') {
                json!([0])
            } else {
                json!([5])
            };
            assert_eq!(r["result"]["result"], want, "{r}");
            *published.entry(id).or_default() += 1;
        }
        let twice: Vec<_> = published.iter().filter(|(_, n)| **n > 1).collect();
        if !twice.is_empty() {
            let lines: Vec<(usize, String)> = self
                .results()
                .iter()
                .enumerate()
                .map(|(i, r)| (i, r["task_id"].as_str().unwrap_or("").to_owned()))
                .collect();
            for (id, _) in &twice {
                let at: Vec<usize> = lines
                    .iter()
                    .filter(|(_, t)| t == *id)
                    .map(|(i, _)| *i)
                    .collect();
                eprintln!("{id} at lines {at:?}");
            }
        }
        assert!(twice.is_empty(), "published more than once: {twice:?}");
        let missing: Vec<_> = self
            .ids
            .iter()
            .filter(|id| !published.contains_key(*id))
            .collect();
        assert!(
            missing.is_empty(),
            "never published: {missing:?}\n{}",
            last.describe()
        );
        let mut runs: BTreeMap<String, usize> = BTreeMap::new();
        for id in std::fs::read_to_string(self.path("runs.log"))
            .unwrap()
            .lines()
        {
            *runs.entry(id.to_owned()).or_default() += 1;
        }
        let reran: Vec<_> = runs.iter().filter(|(_, n)| **n != 1).collect();
        assert!(
            reran.is_empty(),
            "runners started more than once: {reran:?}"
        );
        assert_eq!(runs.len(), TASKS, "every task's runner started");
        let left = dir_entries(&self.path("work"));
        assert!(left.is_empty(), "left in the work dir: {left:?}");
        let work = self.path("work").to_string_lossy().into_owned();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !processes_mentioning(&work).is_empty() {
            assert!(
                Instant::now() < deadline,
                "still running: {:?}",
                processes_mentioning(&work)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs the coordinator `STOPS` times, each stopped by `sig` at a random moment
    /// (while results are coming), then once to the end.
    fn stop_and_restart(&mut self, sig: Signal, extra: &[&str]) -> Run {
        let mut stops = 0;
        let mut attempts = 0;
        while stops < STOPS {
            attempts += 1;
            assert!(
                attempts < STOPS * 5,
                "the coordinator kept finishing before it could be stopped"
            );
            let mut spawned = self.coord(extra).spawn();
            let after = Duration::from_millis(self.rng.random_range(150..900));
            std::thread::sleep(after);
            let exited = spawned.child.try_wait().ok().flatten().is_some();
            if !exited {
                let _ = nix::sys::signal::kill(spawned.pid(), sig);
                stops += 1;
            }
            let run = spawned.wait();
            if sig == Signal::SIGKILL {
                assert!(
                    run.signal == Some(9) || run.code == Some(0),
                    "{}",
                    run.describe()
                );
            } else {
                assert!(matches!(run.code, Some(0 | 1)), "{}", run.describe());
            }
        }
        self.coord(extra).run()
    }
}

#[test]
fn kill_9_at_random_moments_loses_nothing_and_runs_nothing_twice() {
    let mut s = Setup::new();
    let tasks = write_lines(s.dir.path(), "tasks.jsonl", &s.lines);
    let tasks = tasks.to_string_lossy().into_owned();
    let last = s.stop_and_restart(Signal::SIGKILL, &["--once", "--tasks", &tasks]);
    last.expect_code(0);
    s.check(&last);
}

#[test]
fn sigterm_at_random_moments_loses_nothing_and_runs_nothing_twice() {
    let mut s = Setup::new();
    let tasks = write_lines(s.dir.path(), "tasks.jsonl", &s.lines);
    let tasks = tasks.to_string_lossy().into_owned();
    // The running tasks finish within the grace period; the queued ones wait in the ledger.
    let last = s.stop_and_restart(
        Signal::SIGTERM,
        &["--once", "--tasks", &tasks, "--grace-period", "30"],
    );
    last.expect_code(0);
    s.check(&last);
}

/// Tasks through `POST /tasks`: a client submits each until the coordinator acknowledges it
/// (202, or 200 when it knew it already), across `kill -9`s; an acknowledged task is never
/// lost and never runs twice.
#[test]
fn tasks_posted_across_kill_9_are_each_run_and_published_once() {
    let mut s = Setup::new();
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let listen = format!("127.0.0.1:{port}");
    // No task file: only the API's tasks (not the placeholder's).
    let empty = write_lines(s.dir.path(), "none.jsonl", &[]);
    let empty = empty.to_string_lossy().into_owned();
    let bodies: Vec<String> = s.lines.clone();
    let client = std::thread::spawn(move || {
        let mut acked = 0;
        for body in &bodies {
            let deadline = Instant::now() + Duration::from_secs(180);
            loop {
                assert!(
                    Instant::now() < deadline,
                    "no coordinator took {body} in 180 s"
                );
                match post(port, body) {
                    Some(202 | 200) => break,
                    _ => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            acked += 1;
        }
        acked
    });
    let mut stops = 0;
    while stops < STOPS {
        let spawned = s.coord(&["--listen", &listen, "--tasks", &empty]).spawn();
        std::thread::sleep(Duration::from_millis(s.rng.random_range(300..1200)));
        spawned.signal(Signal::SIGKILL);
        let _ = spawned.wait();
        stops += 1;
    }
    // The last one runs until every task is published, then stops on SIGTERM.
    let spawned = s.coord(&["--listen", &listen, "--tasks", &empty]).spawn();
    assert_eq!(client.join().unwrap(), TASKS);
    let deadline = Instant::now() + Duration::from_secs(180);
    while s.results().len() < TASKS && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    // Started for sure (all may have been published before it was), then stopped.
    spawned.wait_for_log("coordinator started", Duration::from_secs(60));
    spawned.signal(Signal::SIGTERM);
    let last = spawned.wait();
    last.expect_code(0);
    s.check(&last);
}

/// `POST /tasks` on a fresh connection: the status code, or `None` when no coordinator
/// answered.
fn post(port: u16, body: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let request = format!(
        "POST /tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.split_whitespace().nth(1)?.parse().ok()
}
