//! The task API under a steady load: the release coordinator (local backend, concurrency 2,
//! no `--once`) takes `add(2, 3)` tasks through `POST /tasks` at 100 per second for 60
//! seconds, each with a distinct task id, paced by an absolute schedule. A second thread
//! polls the API about every 20 ms to see when each task is done (the report has no
//! timestamps, so a task's completion time is when the poller first sees it done; the poll
//! before, which did not see it, gives a lower bound). Then it waits (at most 5 minutes) for
//! every accepted task, reads the coordinator's resident memory, stops it with SIGTERM, and
//! prints a Markdown table. There are no timing assertions: it fails only when something is
//! broken (a task that never completes, a 5xx other than the documented 503 for a full
//! queue, a result on stdout that is not `ok(5)`).
//!
//! `cargo build --release --workspace && cargo bench -p coordinator --bench coordinator_api`
//! (`COORDINATOR_BIN=path` picks another coordinator; `runner` and `fetcher` are taken from
//! beside it; `API_BENCH_SECONDS=N` submits for N seconds instead of 60). Without `--bench`
//! (e.g. `cargo test --all-targets`) it prints "skipped".
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;
use common::{clean, release_dir, repo_root};

/// Submissions per second.
const RATE: u64 = 100;
const DEFAULT_SECONDS: u64 = 60;
/// How often the poller looks for finished tasks, on average: the resolution of the
/// completion times. Each interval is drawn from [POLL_EVERY / 2, 3 * POLL_EVERY / 2) so that
/// the polls do not lock in phase with the submissions.
const POLL_EVERY: Duration = Duration::from_millis(20);
/// How long to wait for the accepted tasks after the last submission.
const DRAIN_LIMIT: Duration = Duration::from_secs(300);
/// The largest `limit` of `GET /tasks`.
const MAX_LIST: usize = 1000;
const CONCURRENCY: usize = 2;
const ADD_WASM_CID: &str = "QmYyMt9rdrgr376CxpAoAGiT6xUo3bafoq4rzBxpQ2aScu";
const ADD_INPUT_CID: &str = "QmR7FbyEjeVvsctqBYCX16Snhogs6MYF3fssLF1tTw9dDN";

fn coordinator_bin() -> PathBuf {
    let coordinator = std::env::var_os("COORDINATOR_BIN")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| release_dir().join("coordinator"));
    let dir = coordinator.parent().unwrap_or(Path::new(".")).to_path_buf();
    for p in [&coordinator, &dir.join("runner"), &dir.join("fetcher")] {
        assert!(
            p.is_file(),
            "{} is missing: run `cargo build --release --workspace` first \
             (or set COORDINATOR_BIN; runner and fetcher must sit beside it)",
            p.display()
        );
    }
    coordinator
}

fn seconds() -> u64 {
    match std::env::var("API_BENCH_SECONDS") {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .ok()
            .filter(|&s| s > 0)
            .unwrap_or_else(|| panic!("API_BENCH_SECONDS={v:?}: expected whole seconds > 0")),
        _ => DEFAULT_SECONDS,
    }
}

/// The coordinator, killed if the bench panics before stopping it.
struct Coordinator {
    child: Child,
    addr: SocketAddr,
    /// The last lines of its stderr, for failure messages.
    log_tail: Arc<Mutex<VecDeque<String>>>,
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Coordinator {
    fn start(bin: &Path, mirror: &Path, tasks: &Path, work: &Path, results: &Path) -> Self {
        let mut cmd = Command::new(bin);
        clean(&mut cmd)
            .args(["--listen", "127.0.0.1:0", "--backend", "local"])
            .arg("--tasks")
            .arg(tasks)
            .arg("--ipfs-mirror")
            .arg(mirror)
            .arg("--work-dir")
            .arg(work.join("work"))
            .arg("--state")
            .arg(work.join("ledger.sqlite"))
            .args(["--concurrency", &CONCURRENCY.to_string()])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(results).unwrap())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn the coordinator");
        let stderr = child.stderr.take().unwrap();
        let log_tail = Arc::new(Mutex::new(VecDeque::new()));
        let (port_tx, port_rx) = mpsc::channel();
        let tail = log_tail.clone();
        // Drains stderr for the whole run (a full pipe would block the coordinator).
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = listener_addr(&line) {
                    let _ = port_tx.send(addr);
                }
                let mut t = tail.lock().unwrap();
                t.push_back(line);
                if t.len() > 40 {
                    t.pop_front();
                }
            }
        });
        let mut c = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log_tail,
        };
        match port_rx.recv_timeout(Duration::from_secs(15)) {
            Ok(addr) => c.addr = addr,
            Err(_) => {
                let status = c.child.try_wait().ok().flatten();
                panic!(
                    "the coordinator did not report `http listener on 127.0.0.1:PORT` \
                     within 15 s (exit status {status:?})\nstderr:\n{}",
                    c.tail()
                );
            }
        }
        c
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn tail(&self) -> String {
        let t = self.log_tail.lock().unwrap();
        t.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// SIGTERM, then waits (30 s at most) for a successful exit.
    fn stop(mut self) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        let pid = i32::try_from(self.child.id()).unwrap();
        kill(Pid::from_raw(pid), Signal::SIGTERM).expect("SIGTERM the coordinator");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "the coordinator exited with {status} after SIGTERM\nstderr:\n{}",
                    self.tail()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the coordinator did not exit within 30 s of SIGTERM\nstderr:\n{}",
                self.tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `… http listener on 127.0.0.1:PORT: /healthz …` → the address.
fn listener_addr(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("http listener on ")? + "http listener on ".len()..];
    let word = rest.split_whitespace().next()?;
    word.trim_end_matches(':').parse().ok()
}

/// Resident memory of `pid` from /proc (`field` is `VmRSS` or `VmHWM`), in MiB.
fn proc_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    let kib: f64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("unreadable /proc line {line:?}"));
    kib / 1024.0
}

/// One HTTP/1.1 exchange on a fresh connection (`Connection: close`): (status, body).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_write_timeout(Some(Duration::from_secs(30)))?;
    s.set_nodelay(true)?;
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let bad = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad("no status code"))?;
    let mut payload = raw[split + 4..].to_vec();
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        payload = dechunk(&payload).ok_or_else(|| bad("bad chunked body"))?;
    }
    Ok((status, payload))
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n")?;
        let size_field = std::str::from_utf8(&b[..eol]).ok()?;
        let size = usize::from_str_radix(size_field.split(';').next()?.trim(), 16).ok()?;
        b = &b[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

fn task_id(i: usize) -> String {
    format!("b-{i}")
}

fn index_of(id: &str) -> Option<usize> {
    id.strip_prefix("b-")?.parse().ok()
}

/// What is known of task `b-i`.
#[derive(Debug, Default, Clone)]
struct Slot {
    /// When its `POST /tasks` began.
    sent: Option<Instant>,
    /// The POST's status code once answered, or 0 after an I/O error.
    answer: Option<u16>,
    /// When the poller first saw it done, and its final status.
    done: Option<(Instant, String)>,
    /// A time it was not done yet (the previous poll of the `ok` list), when known.
    not_done_at: Option<Instant>,
}

impl Slot {
    fn refused(&self) -> bool {
        self.answer.is_some_and(|a| a != 202)
    }
    /// Sent, not refused, not yet seen done (a slot whose POST is still being answered
    /// counts: its task may already be running).
    fn outstanding(&self) -> bool {
        self.sent.is_some() && !self.refused() && self.done.is_none()
    }
}

#[derive(Debug, Default)]
struct PollStats {
    rounds: u64,
    requests: u64,
    longest_round: Duration,
    max_backlog: usize,
    /// Anything the poller found wrong.
    problems: Vec<String>,
}

/// Every `POLL_EVERY` (jittered): the `ok` list, newest first, far enough back to reach the
/// oldest outstanding task (the limit doubles until it does); then `GET /tasks/{id}` from
/// the oldest outstanding task on, until one is not done (this catches every other final
/// status). Ends when `submitting` is over and nothing is outstanding, or on `stop`.
fn poll(
    addr: SocketAddr,
    slots: &Mutex<Vec<Slot>>,
    submitting: &AtomicBool,
    stop: &AtomicBool,
) -> PollStats {
    let mut st = PollStats::default();
    let mut low = 0usize;
    let mut next = Instant::now();
    // When the previous round's `ok` list was asked for.
    let mut prev_list: Option<Instant> = None;
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let get_json = |st: &mut PollStats, path: &str| -> Option<(u16, Value)> {
        st.requests += 1;
        match http(addr, "GET", path, None) {
            Ok((code, body)) => Some((code, serde_json::from_slice(&body).unwrap_or(Value::Null))),
            Err(e) => {
                st.problems.push(format!("GET {path}: {e}"));
                None
            }
        }
    };
    loop {
        let finished = !submitting.load(Ordering::SeqCst);
        let round_start = Instant::now();
        {
            let s = slots.lock().unwrap();
            while low < s.len() && s[low].sent.is_some() && !s[low].outstanding() {
                low += 1;
            }
            if finished && !s[low..].iter().any(Slot::outstanding) {
                break;
            }
        }
        // The ok list: a small limit, doubled while it may not reach back far enough.
        let mut limit = 16usize;
        let list_start = Instant::now();
        loop {
            let path = format!("/tasks?status=ok&limit={limit}");
            let Some((code, v)) = get_json(&mut st, &path) else {
                break;
            };
            let Some(list) = v.as_array().filter(|_| code == 200) else {
                st.problems.push(format!("GET {path}: {code} {v}"));
                break;
            };
            let seen = Instant::now();
            let mut oldest = usize::MAX;
            {
                let mut s = slots.lock().unwrap();
                for view in list {
                    let Some(i) = view["task_id"].as_str().and_then(index_of) else {
                        continue;
                    };
                    oldest = oldest.min(i);
                    if let Some(slot) = s.get_mut(i) {
                        if slot.done.is_none() {
                            slot.done = Some((seen, "ok".into()));
                            slot.not_done_at = prev_list;
                        }
                    }
                }
            }
            if list.len() == limit && oldest > low && limit < MAX_LIST {
                limit = (limit * 2).min(MAX_LIST);
                continue;
            }
            break;
        }
        prev_list = Some(list_start);
        // The oldest outstanding tasks, one by one, until one is not done.
        let mut i = low;
        loop {
            let candidate = {
                let s = slots.lock().unwrap();
                match s.get(i) {
                    Some(slot) if slot.sent.is_none() => None,
                    Some(slot) if !slot.outstanding() => Some(false),
                    Some(_) => Some(true),
                    None => None,
                }
            };
            match candidate {
                None => break,
                Some(false) => {
                    i += 1;
                    continue;
                }
                Some(true) => {}
            }
            let path = format!("/tasks/{}", task_id(i));
            let Some((code, v)) = get_json(&mut st, &path) else {
                break;
            };
            if code != 200 || v["state"] != "done" {
                // 404: its POST is not answered yet (or it was refused meanwhile).
                break;
            }
            let status = v["status"].as_str().unwrap_or("?").to_string();
            let mut s = slots.lock().unwrap();
            if s[i].done.is_none() {
                s[i].done = Some((Instant::now(), status));
            }
            i += 1;
        }
        {
            let s = slots.lock().unwrap();
            let backlog = s
                .iter()
                .filter(|x| x.answer == Some(202) && x.done.is_none())
                .count();
            st.max_backlog = st.max_backlog.max(backlog);
        }
        st.rounds += 1;
        st.longest_round = st.longest_round.max(round_start.elapsed());
        if stop.load(Ordering::SeqCst) {
            break;
        }
        // xorshift64: a jitter of ±POLL_EVERY / 2.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let every = u64::try_from(POLL_EVERY.as_micros()).unwrap();
        next += Duration::from_micros(every / 2 + rng % every);
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
    st
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("coordinator_api: skipped (run it with `cargo bench`)");
        return;
    }
    let bin = coordinator_bin();
    let mirror = repo_root().join("host/wasm");
    assert!(
        mirror.join("add.wasm").is_file() && mirror.join("add-input.json").is_file(),
        "{} needs add.wasm and add-input.json",
        mirror.display()
    );
    let secs = seconds();
    let total = usize::try_from(RATE * secs).unwrap();
    let tmp = tempfile::Builder::new()
        .prefix("coord-api-bench-")
        .tempdir()
        .unwrap();
    let tasks = tmp.path().join("tasks.jsonl");
    std::fs::write(&tasks, "").unwrap();
    let work = tmp.path().join("work");
    let results = tmp.path().join("results.jsonl");

    let coordinator = Coordinator::start(&bin, &mirror, &tasks, &work, &results);
    let addr = coordinator.addr;
    let pid = coordinator.pid();
    let rss_start = proc_mib(pid, "VmRSS");
    let cores = std::thread::available_parallelism().map_or(0, |c| c.get());
    eprintln!(
        "coordinator_api: {total} tasks at {RATE}/s for {secs} s to {} on {addr} \
         (pid {pid}, concurrency {CONCURRENCY}, {cores} cores, mirror {})",
        bin.display(),
        mirror.display()
    );

    let slots = Arc::new(Mutex::new(vec![Slot::default(); total]));
    let submitting = Arc::new(AtomicBool::new(true));
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (slots, submitting, stop) = (slots.clone(), submitting.clone(), stop.clone());
        std::thread::spawn(move || poll(addr, &slots, &submitting, &stop))
    };

    // Submissions on an absolute schedule: task i is due at start + i / RATE.
    let start = Instant::now();
    let mut post_ms = Vec::with_capacity(total);
    let mut max_lag = Duration::ZERO;
    let mut errors: Vec<String> = Vec::new();
    for i in 0..total {
        let due = start + Duration::from_micros(1_000_000 / RATE * i as u64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let sent = Instant::now();
        max_lag = max_lag.max(sent.saturating_duration_since(due));
        slots.lock().unwrap()[i].sent = Some(sent);
        let body =
            json!({ "task_id": task_id(i), "wasm_cid": ADD_WASM_CID, "input_cid": ADD_INPUT_CID })
                .to_string();
        let answer = match http(addr, "POST", "/tasks", Some(&body)) {
            Ok((code, resp)) => {
                if code >= 500 && code != 503 || (400..500).contains(&code) {
                    errors.push(format!(
                        "POST /tasks ({}): {code} {}",
                        task_id(i),
                        String::from_utf8_lossy(&resp)
                    ));
                }
                code
            }
            Err(e) => {
                errors.push(format!("POST /tasks ({}): {e}", task_id(i)));
                0
            }
        };
        post_ms.push(ms(sent.elapsed()));
        slots.lock().unwrap()[i].answer = Some(answer);
    }
    let submit_time = start.elapsed();
    submitting.store(false, Ordering::SeqCst);

    // The poller ends by itself once every accepted task is done; this bounds the wait.
    let drain_deadline = Instant::now() + DRAIN_LIMIT;
    while !poller.is_finished() && Instant::now() < drain_deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let timed_out = !poller.is_finished();
    stop.store(true, Ordering::SeqCst);
    let polls = poller.join().expect("the poller thread");
    let rss_end = proc_mib(pid, "VmRSS");
    let rss_peak = proc_mib(pid, "VmHWM");
    let log_tail = coordinator.tail();
    coordinator.stop();

    let slots = slots.lock().unwrap().clone();
    let accepted = slots.iter().filter(|s| s.answer == Some(202)).count();
    let mut refused: BTreeMap<u16, usize> = BTreeMap::new();
    for s in slots.iter().filter(|s| s.refused()) {
        *refused.entry(s.answer.unwrap_or(0)).or_default() += 1;
    }
    let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
    let mut latencies = Vec::new();
    let mut lower = Vec::new();
    let mut last_done = start;
    for s in &slots {
        if let (Some(sent), Some((done, status))) = (s.sent, &s.done) {
            *by_status.entry(status.as_str()).or_default() += 1;
            latencies.push(ms(done.saturating_duration_since(sent)));
            lower.push(ms(s
                .not_done_at
                .map_or(Duration::ZERO, |t| t.saturating_duration_since(sent))));
            last_done = last_done.max(*done);
        }
    }
    let completed: usize = by_status.values().sum();
    let ok = by_status.get("ok").copied().unwrap_or(0);
    let never_done = slots
        .iter()
        .filter(|s| s.answer == Some(202) && s.done.is_none())
        .count();
    latencies.sort_by(f64::total_cmp);
    lower.sort_by(f64::total_cmp);
    post_ms.sort_by(f64::total_cmp);
    let span = last_done.saturating_duration_since(start);

    // Cross-check: the results the coordinator printed on stdout.
    let printed: Vec<Value> = std::fs::read_to_string(&results)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let printed_ok = printed
        .iter()
        .filter(|v| v["status"] == "ok" && v["result"]["result"] == json!([5]))
        .count();

    let refused_text = if refused.is_empty() {
        "0".to_string()
    } else {
        let parts: Vec<String> = refused
            .iter()
            .map(|(code, n)| match code {
                0 => format!("{n} × I/O error"),
                c => format!("{n} × {c}"),
            })
            .collect();
        format!("{} ({})", refused.values().sum::<usize>(), parts.join(", "))
    };
    let other: Vec<String> = by_status
        .iter()
        .filter(|(k, _)| **k != "ok")
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
    let other_text = if other.is_empty() {
        "0".to_string()
    } else {
        other.join(", ")
    };

    println!();
    println!(
        "`POST /tasks` at {RATE}/s for {secs} s, `add(2, 3)` tasks, local backend, \
         concurrency {CONCURRENCY}, release build, {cores} cores; completion seen by polling \
         every {} ms on average (jittered; longest poll round {:.1} ms, {} requests in {} rounds):",
        POLL_EVERY.as_millis(),
        ms(polls.longest_round),
        polls.requests,
        polls.rounds
    );
    println!();
    println!("| measurement | value |");
    println!("| --- | ---: |");
    println!("| tasks submitted | {total} |");
    println!(
        "| submission rate achieved (tasks/s) | {:.1} |",
        total as f64 / submit_time.as_secs_f64()
    );
    println!(
        "| latest submission behind schedule (ms) | {:.1} |",
        ms(max_lag)
    );
    println!("| accepted (202) | {accepted} |");
    println!("| refused | {refused_text} |");
    println!("| completed ok / other | {ok} / {other_text} |");
    println!(
        "| throughput, first submission → last completion (tasks/s) | {:.1} |",
        completed as f64 / span.as_secs_f64()
    );
    println!(
        "| largest backlog (accepted, not yet done) | {} |",
        polls.max_backlog
    );
    println!(
        "| submit → done latency p50 / p99 / max (ms) | {:.0} / {:.0} / {:.0} |",
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "| … lower bound: not yet done at the poll before (ms) | {:.0} / {:.0} / {:.0} |",
        percentile(&lower, 50.0),
        percentile(&lower, 99.0),
        lower.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "| `POST /tasks` answer p50 / p99 (ms) | {:.2} / {:.2} |",
        percentile(&post_ms, 50.0),
        percentile(&post_ms, 99.0)
    );
    println!(
        "| coordinator RSS start / end / peak (MiB) | {rss_start:.1} / {rss_end:.1} / {rss_peak:.1} |"
    );

    let mut broken = errors;
    broken.extend(polls.problems.iter().take(10).cloned());
    if timed_out || never_done > 0 {
        broken.push(format!(
            "{never_done} accepted task(s) not done {} s after the last submission",
            DRAIN_LIMIT.as_secs()
        ));
    }
    if printed.len() != completed || printed_ok != ok {
        broken.push(format!(
            "the coordinator printed {} results ({printed_ok} ok(5)); the API showed {completed} \
             done ({ok} ok)",
            printed.len()
        ));
    }
    if !broken.is_empty() {
        eprintln!("coordinator_api: broken:");
        for b in broken.iter().take(20) {
            eprintln!("  {b}");
        }
        eprintln!("coordinator stderr (last lines):\n{log_tail}");
        std::process::exit(1);
    }
}
