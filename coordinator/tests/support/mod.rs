//! Test support for the `coordinator` end-to-end tests.
//!
//! - locating the `coordinator` binary and checking that `runner` and `fetcher` sit beside it;
//! - running it with a clean environment, a temp working directory and a temp `--work-dir`,
//!   under a hang bound, and parsing its stdout as JSON-lines results;
//! - temp mirrors with modules built from WAT, CIDs computed with the fetcher's importer;
//! - `PlainGateway`, a tiny HTTP/1.1 gateway on 127.0.0.1 that refuses CAR and raw blocks
//!   and serves plain bodies, correct or tampered (ideas from `fetcher/tests/support`).
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod env;
pub use env::clean;
pub mod chain;
pub mod cluster;
pub mod http;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------
// Paths and binaries
// ---------------------------------------------------------------------------------------------

/// The workspace root (the coordinator crate's parent).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the coordinator crate sits in the workspace")
        .to_path_buf()
}

/// `host/wasm`: the sample modules and inputs, the default mirror.
pub fn samples() -> PathBuf {
    repo_root().join("host/wasm")
}

/// `target/debug/coordinator`, after checking that `runner` and `fetcher` are beside it
/// (the coordinator's default `runner_path` / `fetcher_path`).
pub fn coordinator_bin() -> PathBuf {
    // What `assert_cmd::Command::cargo_bin("coordinator")` runs; the path is needed here.
    let bin = assert_cmd::cargo::cargo_bin("coordinator");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build --workspace` first",
        bin.display()
    );
    let dir = bin.parent().expect("the binary has a directory");
    for name in ["runner", "fetcher"] {
        let p = dir.join(name);
        assert!(
            p.is_file(),
            "{} is missing beside {}: run `cargo build --workspace` first \
             (`cargo test -p coordinator` builds only the coordinator)",
            p.display(),
            bin.display()
        );
    }
    bin
}

// ---------------------------------------------------------------------------------------------
// CIDs, modules, mirrors, tasks
// ---------------------------------------------------------------------------------------------

/// The CIDv0 `ipfs add -Q --only-hash` (and `fetcher cid`) gives for these bytes.
pub fn cid_of(bytes: &[u8]) -> String {
    fetcher::importer::cid_of_bytes(fetcher::importer::Params::V0, bytes).to_string()
}

pub fn cid_of_file(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    cid_of(&bytes)
}

/// `unreachable` at once: status `trap`.
pub const TRAP_WAT: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "boom") (result i32) unreachable))"#;

/// A loop that never ends: `timeout` with fuel off, `out_of_fuel` with a small budget.
pub const SPIN_WAT: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "spin") (loop $l (br $l))))"#;

/// `nap(ms)` sleeps `ms` milliseconds through WASI `poll_oneoff` (a relative monotonic clock
/// subscription) and returns its errno: a slow task whose length does not depend on the CPU
/// or on a debug build of the runner.
pub const NAP_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "nap") (param $ms i64) (result i32)
    (i64.store (i32.const 0) (i64.const 7))        ;; userdata
    (i32.store8 (i32.const 8) (i32.const 0))       ;; tag: clock
    (i32.store (i32.const 16) (i32.const 1))       ;; clock id: monotonic
    (i64.store (i32.const 24) (i64.mul (local.get $ms) (i64.const 1000000)))
    (i64.store (i32.const 32) (i64.const 0))       ;; precision
    (i32.store16 (i32.const 40) (i32.const 0))     ;; flags: relative
    (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128))))"#;

/// `now()`: the realtime clock in nanoseconds, read through WASI: a module
/// that is not deterministic unless run deterministically.
pub const CLOCK_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "clock_time_get"
    (func $clock (param i32 i64 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "now") (result i64)
    (drop (call $clock (i32.const 0) (i64.const 1) (i32.const 0)))
    (i64.load (i32.const 0))))"#;

pub fn wasm_of(wat_src: &str) -> Vec<u8> {
    wat::parse_str(wat_src).unwrap_or_else(|e| panic!("WAT does not parse: {e}\n{wat_src}"))
}

/// A temp directory of files served by CID.
#[derive(Debug)]
pub struct Mirror {
    pub dir: TempDir,
}

impl Mirror {
    pub fn new() -> Self {
        Self {
            dir: tempfile::Builder::new()
                .prefix("coord-mirror-")
                .tempdir()
                .unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `bytes` as `name` and returns their CID.
    pub fn add(&self, name: &str, bytes: &[u8]) -> String {
        std::fs::write(self.dir.path().join(name), bytes).unwrap();
        cid_of(bytes)
    }

    /// Copies a sample file from `host/wasm` and returns its CID.
    pub fn add_sample(&self, name: &str) -> String {
        let bytes = std::fs::read(samples().join(name)).unwrap();
        self.add(name, &bytes)
    }
}

impl Default for Mirror {
    fn default() -> Self {
        Self::new()
    }
}

/// The add sample's input as the contract states it.
pub const ADD_INPUT: &str = r#"{"entry":"add","args":[2,3]}"#;

/// A mirror with the three sample modules and their inputs (add's input written here, so
/// the tests do not depend on `host/wasm/add-input.json`). Returns it with a table
/// `name -> (wasm_cid, input_cid, expected result)`.
pub fn sample_mirror() -> (Mirror, BTreeMap<&'static str, (String, String, Value)>) {
    let m = Mirror::new();
    let mut t = BTreeMap::new();
    t.insert(
        "fib",
        (
            m.add_sample("fib.wasm"),
            m.add_sample("fib-input.json"),
            json!([144]),
        ),
    );
    t.insert(
        "affine",
        (
            m.add_sample("affine.wasm"),
            m.add_sample("affine-input.json"),
            json!([119]),
        ),
    );
    t.insert(
        "add",
        (
            m.add_sample("add.wasm"),
            m.add("add-input.json", ADD_INPUT.as_bytes()),
            json!([5]),
        ),
    );
    (m, t)
}

/// One JSON-lines task.
pub fn task_line(id: &str, wasm_cid: &str, input_cid: Option<&str>, entry: Option<&str>) -> String {
    let mut v = json!({ "task_id": id, "wasm_cid": wasm_cid });
    if let Some(c) = input_cid {
        v["input_cid"] = json!(c);
    }
    if let Some(e) = entry {
        v["entry"] = json!(e);
    }
    v.to_string()
}

/// Writes `lines` (newline-terminated) to `dir/name` and returns the path.
pub fn write_lines(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let p = dir.join(name);
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(&p, text).unwrap();
    p
}

// ---------------------------------------------------------------------------------------------
// Running the coordinator
// ---------------------------------------------------------------------------------------------

/// Upper bound on any single run: a hung coordinator fails a test instead of blocking it.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(180);

/// A coordinator invocation being assembled: clean environment, cwd = a temp dir,
/// `--once`, `--work-dir` = a temp dir that must be empty again afterwards.
#[derive(Debug)]
pub struct Coord {
    cmd: Command,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
    /// Shared with the `Run`, so they outlive a temporary `Coord`.
    pub cwd: Arc<TempDir>,
    pub work: Arc<TempDir>,
    /// Adds `--once` when spawned.
    once: bool,
}

impl Coord {
    /// Without `--once` (for `--print-config` and config errors).
    pub fn bare() -> Self {
        let mut cmd = Command::new(coordinator_bin());
        clean(&mut cmd);
        let cwd = tempfile::Builder::new()
            .prefix("coord-cwd-")
            .tempdir()
            .unwrap();
        let work = tempfile::Builder::new()
            .prefix("coord-work-")
            .tempdir()
            .unwrap();
        cmd.current_dir(cwd.path());
        // No HTTP listener: tests run side by side and would all want 127.0.0.1:8080.
        cmd.env("COORDINATOR_LISTEN", "off");
        // Each coordinator its own ledger (the default one is shared by the user's runs).
        cmd.env("COORDINATOR_STATE", cwd.path().join("state/ledger.sqlite"));
        Self {
            cmd,
            stdin: None,
            timeout: RUN_TIMEOUT,
            cwd: Arc::new(cwd),
            work: Arc::new(work),
            once: false,
        }
    }

    /// `--once --work-dir <temp>`.
    pub fn new() -> Self {
        let mut c = Self::bare();
        let work = c.work.path().to_path_buf();
        c.cmd.arg("--work-dir").arg(work);
        c.once = true;
        c
    }

    /// `new()` plus `--ipfs-mirror DIR`.
    pub fn with_mirror(dir: &Path) -> Self {
        let mut c = Self::new();
        c.cmd.arg("--ipfs-mirror").arg(dir);
        c
    }

    /// Without `--once`: it serves until stopped.
    pub fn serving(&mut self) -> &mut Self {
        self.once = false;
        self
    }

    /// The ledger this coordinator uses (`COORDINATOR_STATE`, in its cwd).
    pub fn state(&self) -> PathBuf {
        self.cwd.path().join("state/ledger.sqlite")
    }

    pub fn arg(&mut self, a: impl AsRef<std::ffi::OsStr>) -> &mut Self {
        self.cmd.arg(a);
        self
    }

    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.cmd.args(args);
        self
    }

    /// The kubernetes backend against a cluster stand-in: its kubeconfig, namespace `ns`,
    /// `k8s/job.yaml`, the gateway at `gateway`, and a short retry backoff.
    pub fn on_kubernetes(&mut self, kubeconfig: &Path, ns: &str, gateway: &str) -> &mut Self {
        self.env("KUBECONFIG", kubeconfig)
            .env("COORDINATOR_BACKEND", "kubernetes")
            .env("COORDINATOR_NAMESPACE", ns)
            .env("COORDINATOR_IPFS_ENDPOINT", gateway)
            .env("COORDINATOR_JOB_TEMPLATE", repo_root().join("k8s/job.yaml"))
            .env("COORDINATOR_RETRY_BACKOFF_MS", "50")
    }

    pub fn env(&mut self, k: &str, v: impl AsRef<std::ffi::OsStr>) -> &mut Self {
        self.cmd.env(k, v);
        self
    }

    pub fn current_dir(&mut self, dir: &Path) -> &mut Self {
        self.cmd.current_dir(dir);
        self
    }

    pub fn stdin(&mut self, bytes: impl Into<Vec<u8>>) -> &mut Self {
        self.stdin = Some(bytes.into());
        self
    }

    pub fn timeout(&mut self, t: Duration) -> &mut Self {
        self.timeout = t;
        self
    }

    /// Starts the coordinator in its own process group, stdout lines streamed to a channel.
    pub fn spawn(&mut self) -> Spawned {
        if std::mem::take(&mut self.once) {
            self.cmd.arg("--once");
        }
        let cmdline = format!("{:?}", self.cmd);
        self.cmd
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let start = Instant::now();
        let mut child = self
            .cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmdline}: {e}"));
        if let Some(bytes) = self.stdin.take() {
            let mut w = child.stdin.take().unwrap();
            std::thread::spawn(move || {
                let _ = w.write_all(&bytes);
            });
        }
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                all.push_str(&line);
                all.push('\n');
                let _ = tx.send((start.elapsed(), line));
            }
            all
        });
        let err = child.stderr.take().unwrap();
        let stderr_so_far = Arc::new(Mutex::new(String::new()));
        let so_far = Arc::clone(&stderr_so_far);
        let stderr = std::thread::spawn(move || {
            let mut reader = BufReader::new(err);
            let mut line = Vec::new();
            while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                so_far
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push_str(&String::from_utf8_lossy(&line));
                line.clear();
            }
            so_far
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        });
        Spawned {
            cmdline,
            child,
            start,
            timeout: self.timeout,
            lines,
            stdout: Some(stdout),
            stderr: Some(stderr),
            stderr_so_far,
            work: Arc::clone(&self.work),
            cwd: Arc::clone(&self.cwd),
        }
    }

    /// Runs to the end (or the hang bound, then kills the process group).
    pub fn run(&mut self) -> Run {
        self.spawn().wait()
    }
}

impl Default for Coord {
    fn default() -> Self {
        Self::new()
    }
}

/// A running coordinator.
#[derive(Debug)]
pub struct Spawned {
    pub cmdline: String,
    pub child: Child,
    pub start: Instant,
    timeout: Duration,
    /// Each stdout line as it arrives, with the time since the start.
    pub lines: Receiver<(Duration, String)>,
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
    stderr_so_far: Arc<Mutex<String>>,
    work: Arc<TempDir>,
    cwd: Arc<TempDir>,
}

impl Spawned {
    /// Waits until a stderr line contains `needle` and returns that line.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        let until = Instant::now() + timeout;
        loop {
            let text = self
                .stderr_so_far
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            if let Some(line) = text.lines().find(|l| l.contains(needle)) {
                return line.to_owned();
            }
            assert!(
                Instant::now() < until,
                "no log line with {needle:?} within {timeout:?}; stderr so far:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The port of the coordinator's HTTP listener (`--listen 127.0.0.1:0`), from its log.
    /// The `--work-dir` of this coordinator.
    pub fn work_dir(&self) -> &Path {
        self.work.path()
    }

    pub fn http_port(&self) -> u16 {
        let line = self.wait_for_log("http listener on ", Duration::from_secs(30));
        let addr = line.split("http listener on ").nth(1).unwrap_or_default();
        addr.split(':')
            .nth(1)
            .and_then(|p| p.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"))
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).unwrap())
    }

    pub fn signal(&self, sig: Signal) {
        nix::sys::signal::kill(self.pid(), sig).unwrap();
    }

    /// Waits for the exit; past the hang bound kills the whole process group.
    pub fn wait(mut self) -> Run {
        let deadline = self.start + self.timeout;
        let mut killed = false;
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() >= deadline {
                let _ = killpg(self.pid(), Signal::SIGKILL);
                killed = true;
                break self.child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let elapsed = self.start.elapsed();
        // Children left in the group would keep the pipes open: they are a bug, reported by
        // the test, but must not hang it.
        let _ = killpg(self.pid(), Signal::SIGKILL);
        let stdout = self.stdout.take().unwrap().join().unwrap_or_default();
        let stderr = self.stderr.take().unwrap().join().unwrap_or_default();
        let run = Run {
            cmdline: self.cmdline.clone(),
            code: status.code(),
            signal: std::os::unix::process::ExitStatusExt::signal(&status),
            killed_at_hang_bound: killed,
            stdout,
            stderr,
            elapsed,
            work: self.work.path().to_path_buf(),
            work_guard: Arc::clone(&self.work),
            cwd_guard: Arc::clone(&self.cwd),
        };
        // `COORD_TEST_SHOW=1 cargo test -- --nocapture` shows every run.
        if std::env::var_os("COORD_TEST_SHOW").is_some() {
            eprintln!("---\n{}", run.describe());
        }
        run
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if self.stdout.is_some() {
            let _ = killpg(self.pid(), Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// A finished run.
#[derive(Debug)]
pub struct Run {
    pub cmdline: String,
    /// `None` when ended by a signal.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub killed_at_hang_bound: bool,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    /// The `--work-dir`.
    pub work: PathBuf,
    work_guard: Arc<TempDir>,
    cwd_guard: Arc<TempDir>,
}

pub fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        s.to_string()
    } else {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}… [{} bytes more]", &s[..end], s.len() - end)
    }
}

impl Run {
    pub fn describe(&self) -> String {
        format!(
            "command: {}\nexit: {:?} (signal {:?}{}) after {:.2?}\nstdout:\n{}\nstderr:\n{}",
            self.cmdline,
            self.code,
            self.signal,
            if self.killed_at_hang_bound {
                ", KILLED at the hang bound"
            } else {
                ""
            },
            self.elapsed,
            clip(&self.stdout, 6000),
            clip(&self.stderr, 8000)
        )
    }

    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit code {code}\n{}",
            self.describe()
        );
        self
    }

    /// Every non-empty stdout line, parsed; a line that is not a JSON object fails the test
    /// (stdout carries only results; logs go to stderr).
    #[track_caller]
    pub fn results(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap_or_else(|e| {
                    panic!(
                        "stdout line is not JSON ({e}): {l:?}\n(logs belong on stderr)\n{}",
                        self.describe()
                    )
                });
                assert!(
                    v.is_object(),
                    "stdout line is not a JSON object: {l}\n{}",
                    self.describe()
                );
                v
            })
            .collect()
    }

    /// Results by task id; a task id published twice fails the test.
    #[track_caller]
    pub fn by_id(&self) -> BTreeMap<String, Value> {
        let mut map = BTreeMap::new();
        for r in self.results() {
            let id = r["task_id"]
                .as_str()
                .unwrap_or_else(|| panic!("result without a task_id: {r}\n{}", self.describe()))
                .to_string();
            if let Some(prev) = map.insert(id.clone(), r) {
                panic!(
                    "task {id} published twice (first: {prev})\n{}",
                    self.describe()
                );
            }
        }
        map
    }

    #[track_caller]
    pub fn expect_stderr_mentions(&self, needle: &str, what: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr should name {what} ({needle:?})\n{}",
            self.describe()
        );
        self
    }

    /// The `--work-dir` holds nothing: every per-task work dir was removed.
    #[track_caller]
    pub fn expect_work_dir_clean(&self) -> &Self {
        let left = dir_entries(&self.work);
        assert!(
            left.is_empty(),
            "per-task work dirs left in --work-dir {}: {left:?}\n{}",
            self.work.display(),
            self.describe()
        );
        self
    }

    /// No process anywhere still names the `--work-dir` on its command line or in its
    /// environment (the local backend hands paths to `fetcher` and `runner` through the
    /// environment, which their children inherit): no orphan survived. Waits up to 3 s for
    /// stragglers being reaped; on failure kills what it found (by pid) before failing.
    #[track_caller]
    pub fn expect_no_orphans(&self) -> &Self {
        let needle = self.work.to_string_lossy().into_owned();
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let found = processes_mentioning(&needle);
            if found.is_empty() {
                return self;
            }
            if Instant::now() >= deadline {
                for (pid, _) in &found {
                    let _ = nix::sys::signal::kill(Pid::from_raw(*pid), Signal::SIGKILL);
                }
                panic!(
                    "processes outlived the coordinator, with {needle} in their command line \
                     or environment (now killed): {found:?}\n{}",
                    self.describe()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `(pid, cmdline)` of every live (non-zombie) process other than this one whose command
/// line or environment contains `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    let me = std::process::id();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if u32::try_from(pid).ok() == Some(me) {
            continue;
        }
        let read = |f: &str| {
            std::fs::read(e.path().join(f))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default()
        };
        let cmdline = read("cmdline");
        if !cmdline.contains(needle) && !read("environ").contains(needle) {
            continue;
        }
        if proc_state(pid) != Some('Z') {
            found.push((pid, cmdline));
        }
    }
    found
}

/// A process's state letter and parent pid, from `/proc/PID/stat`.
fn proc_stat(pid: i32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

fn proc_state(pid: i32) -> Option<char> {
    proc_stat(pid).map(|(s, _)| s)
}

/// Live descendants of `root` (children, grandchildren…) whose name (`/proc/PID/comm`) is
/// one of `names`, leaving out those whose parent has the same name (a runner's worker).
pub fn descendants_named(root: i32, names: &[&str]) -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let comm = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    let procs: Vec<(i32, i32)> = rd
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter_map(|pid| match proc_stat(pid) {
            Some((s, pp)) if s != 'Z' => Some((pid, pp)),
            _ => None,
        })
        .collect();
    let parent_of = |pid: i32| procs.iter().find(|(p, _)| *p == pid).map(|(_, pp)| *pp);
    procs
        .iter()
        .filter(|(pid, _)| {
            let mut at = *pid;
            for _ in 0..16 {
                match parent_of(at) {
                    Some(pp) if pp == root => return true,
                    Some(pp) if pp > 1 => at = pp,
                    _ => return false,
                }
            }
            false
        })
        .filter(|(pid, pp)| {
            let name = comm(*pid);
            names.contains(&name.as_str()) && comm(*pp) != name
        })
        .map(|(pid, _)| *pid)
        .collect()
}

/// Live children of `parent` whose name (`/proc/PID/comm`) is one of `names`.
pub fn children_named(parent: i32, names: &[&str]) -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|pid| matches!(proc_stat(*pid), Some((s, pp)) if pp == parent && s != 'Z'))
        .filter(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            names.contains(&comm.trim())
        })
        .collect()
}

/// Writes an executable shell script (a stand-in `runner`) and returns its path.
pub fn write_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    {
        let mut f = std::fs::File::create(&p).unwrap();
        f.write_all(format!("#!/bin/sh\n{body}\n").as_bytes())
            .unwrap();
        f.sync_all().unwrap();
    }
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// Names of the entries in `dir`, sorted.
pub fn dir_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The published object's keys, as the contract lists them.
pub const REPORT_KEYS: [&str; 9] = [
    "task_id",
    "wasm_cid",
    "input_cid",
    "entry",
    "status",
    "stage",
    "attempts",
    "result",
    "error",
];

/// Checks the shape of one published result: every key present, types as documented.
#[track_caller]
pub fn check_report_shape(r: &Value, run: &Run) {
    for key in REPORT_KEYS {
        assert!(
            r.get(key).is_some(),
            "published result lacks {key:?}: {r}\n{}",
            run.describe()
        );
    }
    let ok_types = r["task_id"].is_string()
        && r["wasm_cid"].is_string()
        && (r["input_cid"].is_string() || r["input_cid"].is_null())
        && (r["entry"].is_string() || r["entry"].is_null())
        && r["status"].is_string()
        && (r["stage"].is_null() || r["stage"] == "fetch" || r["stage"] == "run")
        && r["attempts"].is_u64()
        && (r["result"].is_object() || r["result"].is_null())
        && (r["error"].is_string() || r["error"].is_null());
    assert!(
        ok_types,
        "published result has a field of the wrong type: {r}\n{}",
        run.describe()
    );
}

/// The `ok=` / `failed=` summary line of `--once` on stderr.
#[track_caller]
pub fn summary_line(run: &Run) -> String {
    run.stderr
        .lines()
        .rev()
        .find(|l| l.contains("ok=") && l.contains("failed="))
        .unwrap_or_else(|| {
            panic!(
                "no summary line with ok= and failed= on stderr\n{}",
                run.describe()
            )
        })
        .to_string()
}

/// The number after `key=` in a summary line.
pub fn summary_count(line: &str, key: &str) -> Option<u64> {
    let at = line.find(&format!("{key}="))? + key.len() + 1;
    let digits: String = line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// A plain-only HTTP gateway on 127.0.0.1
// ---------------------------------------------------------------------------------------------

/// What a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Car,
    Raw,
    Plain,
}

/// One request the gateway answered.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub kind: Kind,
    pub status: u16,
}

#[derive(Debug)]
struct GwShared {
    files: HashMap<String, Vec<u8>>,
    tamper: bool,
    stop: AtomicBool,
    /// While set, requests wait before they are answered (a task held mid-fetch).
    hold: AtomicBool,
    requests: Mutex<Vec<Recorded>>,
}

/// Refuses CAR and raw-block requests with 406 and serves `/ipfs/{cid}` as a plain body,
/// with one byte flipped when `tamper` is set. Files are looked up by their CIDv0.
#[derive(Debug)]
pub struct PlainGateway {
    pub addr: SocketAddr,
    shared: Arc<GwShared>,
    thread: Option<JoinHandle<()>>,
}

impl PlainGateway {
    pub fn start(files: &[&[u8]], tamper: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(GwShared {
            files: files.iter().map(|f| (cid_of(f), f.to_vec())).collect(),
            tamper,
            stop: AtomicBool::new(false),
            hold: AtomicBool::new(false),
            requests: Mutex::new(Vec::new()),
        });
        let s = Arc::clone(&shared);
        let thread = std::thread::spawn(move || {
            while !s.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let s = Arc::clone(&s);
                        std::thread::spawn(move || handle(&s, stream));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self {
            addr,
            shared,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// While `on`, every request waits unanswered: tasks stay in their fetch.
    pub fn hold(&self, on: bool) {
        self.shared.hold.store(on, Ordering::SeqCst);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Drop for PlainGateway {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn handle(s: &GwShared, mut stream: TcpStream) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > 64 * 1024 {
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_string();
    let target = request_line.next().unwrap_or_default().to_string();
    let accept = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("accept"))
        .map(|(_, v)| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let kind = if query.split('&').any(|p| p == "format=car") || accept.contains("ipld.car") {
        Kind::Car
    } else if query.split('&').any(|p| p == "format=raw") || accept.contains("ipld.raw") {
        Kind::Raw
    } else {
        Kind::Plain
    };
    while s.hold.load(Ordering::SeqCst) && !s.stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let cid = path.strip_prefix("/ipfs/").map(|c| c.trim_end_matches('/'));
    let (status, content_type, body) = match (kind, cid.and_then(|c| s.files.get(c))) {
        (Kind::Car | Kind::Raw, _) => (406, "text/plain", b"plain only\n".to_vec()),
        (Kind::Plain, None) => (404, "text/plain", b"not found\n".to_vec()),
        (Kind::Plain, Some(bytes)) => {
            let mut bytes = bytes.clone();
            if s.tamper {
                if let Some(b) = bytes.last_mut() {
                    *b ^= 0x01;
                }
            }
            (200, "application/octet-stream", bytes)
        }
    };
    s.requests
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(Recorded {
            path: path.to_string(),
            kind,
            status,
        });
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Not Acceptable",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    if method != "HEAD" {
        let _ = stream.write_all(&body);
    }
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut sink = [0u8; 1024];
    while let Ok(n) = stream.read(&mut sink) {
        if n == 0 {
            break;
        }
    }
}
