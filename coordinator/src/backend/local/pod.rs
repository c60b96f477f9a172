//! A local task's "pod": a process of its own (`coordinator --local-pod DIR`, in its own
//! process group) that runs the task's `fetcher`, then its `runner`, in the task's work
//! dir, as a kubelet runs a Job's pod, and writes how each ended into the dir. It outlives
//! the coordinator that started it: a coordinator that dies (even `kill -9`) leaves its
//! tasks running, and the next one collects them.
//!
//! Layout of a work dir, `<work_dir>/<name from the task id>/` ([`PodDir`]):
//! `pod.json` (what to run, [`PodSpec`]), `pod.lock`, `input/` (the fetcher's `FETCH_DIR`,
//! the emptyDir at `/mnt/input`), `shared/result.json` (the runner's `OUTPUT_PATH`),
//! `termination-log`, each program's `.stdout` and `.stderr`, and at the end
//! `pod-status.json` ([`PodStatus`]).
//!
//! Liveness is a lock, not a pid: the coordinator locks `pod.lock` (`flock`) before starting
//! the pod and hands the locked file over as the pod's stdin, which the fetcher and the
//! runner inherit. The lock is held exactly while any process of the task lives, and is
//! released by the kernel when the last one exits, however it ends. So "lock free and a
//! status" means finished, "lock free and no status" means it died (it runs again), and
//! "lock held" means still running (wait for it): no pid that could be reused.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use pod::{FetcherEnv, RunnerEnv};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::process::Command;
use tokio::time::Instant;

use crate::task::Task;

/// Time the runner gets past its own timeout to write its result before it is killed.
pub const KILL_SLACK: Duration = Duration::from_secs(5);

/// What a pod runs: written by the coordinator before it starts the pod.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodSpec {
    pub task: Task,
    pub fetcher: PathBuf,
    pub runner: PathBuf,
    /// `IPFS_GATEWAY` for the fetcher: a gateway URL or `file:///abs/mirror`.
    pub gateway: String,
    pub timeout_sec: f64,
    pub fuel: u64,
    /// The runner's linear-memory cap in bytes; `None` leaves the runner's default.
    #[serde(default)]
    pub max_memory: Option<u64>,
}

/// How one program of the pod ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ended {
    /// It exited (`code` is `None` when a signal killed it).
    Exited { code: Option<i32> },
    /// The pod killed it at the task's deadline.
    TimedOut,
    /// It could not be started.
    NotStarted { error: String },
}

/// How the pod ended, written last (atomically): its presence means the pod finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodStatus {
    pub fetcher: Ended,
    pub fetch_ms: u64,
    /// `None` when the fetcher failed (the runner was not started).
    pub runner: Option<Ended>,
    pub run_ms: u64,
}

/// A task's work dir and the files in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodDir(PathBuf);

impl PodDir {
    /// The work dir of `task_id` under `root`: the id's readable head (letters, digits,
    /// `.`, `_`, `-`; at most 40) then 16 hex digits of its sha256, so that distinct ids
    /// never share a dir and the next coordinator finds the same one.
    pub fn of(root: &Path, task_id: &str) -> PodDir {
        let head: String = task_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            .take(40)
            .collect();
        let head = head.trim_start_matches('.');
        let hash = Sha256::digest(task_id.as_bytes());
        let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
        let name = if head.is_empty() {
            format!("task-{hex}")
        } else {
            format!("{head}-{hex}")
        };
        PodDir(root.join(name))
    }

    pub fn at(path: PathBuf) -> PodDir {
        PodDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn spec(&self) -> PathBuf {
        self.0.join("pod.json")
    }
    pub fn lock(&self) -> PathBuf {
        self.0.join("pod.lock")
    }
    pub fn status(&self) -> PathBuf {
        self.0.join("pod-status.json")
    }
    pub fn input(&self) -> PathBuf {
        self.0.join("input")
    }
    pub fn result(&self) -> PathBuf {
        self.0.join("shared").join(pod::path::RESULT_FILE)
    }
    pub fn termination_log(&self) -> PathBuf {
        self.0.join("termination-log")
    }
    pub fn stdout(&self, program: &str) -> PathBuf {
        self.0.join(format!("{program}.stdout"))
    }
    pub fn stderr(&self, program: &str) -> PathBuf {
        self.0.join(format!("{program}.stderr"))
    }
    /// The process group a program runs in, written when it starts.
    pub fn pgid(&self, program: &str) -> PathBuf {
        self.0.join(format!("{program}.pgid"))
    }

    /// Kills what is left of a pod that died (its programs run on, holding the lock):
    /// the process groups its programs were started in. Only while the lock is held, so a
    /// group is signalled only while some of its processes live (a group id is not reused
    /// while its group has members).
    pub fn kill_leftovers(&self) {
        if !matches!(self.probe(), Ok(Probe::Held)) {
            return;
        }
        for program in ["fetcher", "runner"] {
            let pgid = std::fs::read_to_string(self.pgid(program))
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
                .filter(|p| *p > 1);
            if let Some(pgid) = pgid {
                let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            }
        }
    }

    pub fn read_spec(&self) -> Option<PodSpec> {
        serde_json::from_slice(&std::fs::read(self.spec()).ok()?).ok()
    }

    pub fn read_status(&self) -> Option<PodStatus> {
        serde_json::from_slice(&std::fs::read(self.status()).ok()?).ok()
    }

    /// Whether a process of the task still holds the lock. `Free` carries the lock, held
    /// until dropped (no pod can start meanwhile).
    pub fn probe(&self) -> std::io::Result<Probe> {
        let file = match File::open(self.lock()) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Probe::NoLock),
            Err(e) => return Err(e),
        };
        match file.try_lock() {
            Ok(()) => Ok(Probe::Free(file)),
            Err(std::fs::TryLockError::WouldBlock) => Ok(Probe::Held),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

/// What [`PodDir::probe`] found.
#[derive(Debug)]
pub enum Probe {
    /// No lock file: the dir was never a started pod.
    NoLock,
    /// A process of the task lives.
    Held,
    /// Nothing of the task runs; the lock is ours while this lives.
    Free(#[allow(dead_code)] File),
}

/// `coordinator --local-pod DIR`: runs the pod described in `DIR/pod.json`. Exit code 0
/// when it wrote its status; 1 when it could not (read its stderr), or was stopped by
/// SIGTERM/SIGINT before it finished (then it writes none: the run did not end).
pub fn run_pod(dir: &Path) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "local pod {}: cannot start the async runtime: {e}",
                dir.display()
            );
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async {
        let dir = PodDir::at(dir.to_owned());
        let Some(spec) = dir.read_spec() else {
            eprintln!("local pod: cannot read {}", dir.spec().display());
            return ExitCode::from(1);
        };
        tokio::select! {
            status = pod(&dir, &spec) => match write_status(&dir, &status) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("local pod: cannot write {}: {e}", dir.status().display());
                    ExitCode::from(1)
                }
            },
            // Dropping `pod` kills the running program's process group.
            () = terminated() => ExitCode::from(1),
        }
    })
}

async fn terminated() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

/// The fetcher, then (if it succeeded) the runner, within the task's deadline.
async fn pod(dir: &PodDir, spec: &PodSpec) -> PodStatus {
    let timeout = Duration::try_from_secs_f64(spec.timeout_sec).unwrap_or(Duration::MAX);
    let deadline = Instant::now()
        .checked_add(timeout.saturating_add(KILL_SLACK))
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
    let task = &spec.task;
    let mut fetch = Command::new(&spec.fetcher);
    fetch.env_clear();
    set_env(
        &mut fetch,
        FetcherEnv {
            gateway: &spec.gateway,
            wasm_cid: &task.wasm_cid,
            input_cid: task.input_cid.as_deref(),
            fetch_dir: &dir.input(),
        }
        .vars(),
    );
    let started = Instant::now();
    let fetcher = run(fetch, dir, "fetcher", deadline).await;
    let fetch_ms = millis(started.elapsed());
    if fetcher != (Ended::Exited { code: Some(0) }) {
        return PodStatus {
            fetcher,
            fetch_ms,
            runner: None,
            run_ms: 0,
        };
    }
    let mut run_cmd = Command::new(&spec.runner);
    run_cmd
        .env_clear()
        .env(pod::env::TERMINATION_LOG, dir.termination_log());
    if let Some(bytes) = spec.max_memory {
        run_cmd.env(pod::env::MAX_MEMORY, bytes.to_string());
    }
    set_env(
        &mut run_cmd,
        RunnerEnv {
            task_id: &task.task_id,
            entry: task.entry.as_deref(),
            input_dir: &dir.input(),
            has_input: task.input_cid.is_some(),
            output: &dir.result(),
            timeout_sec: spec.timeout_sec,
            fuel: spec.fuel,
            deterministic: task.deterministic,
        }
        .vars(),
    );
    let started = Instant::now();
    let runner = run(run_cmd, dir, "runner", deadline).await;
    PodStatus {
        fetcher,
        fetch_ms,
        runner: Some(runner),
        run_ms: millis(started.elapsed()),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Sets a program's part of the pod's environment.
fn set_env(cmd: &mut Command, vars: Vec<(&'static str, Option<String>)>) {
    for (name, value) in vars {
        if let Some(v) = value {
            cmd.env(name, v);
        }
    }
}

/// Kills a child's whole process group when dropped: at the deadline, and when the pod is
/// stopped mid-run.
struct GroupGuard(Option<i32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.take() {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
}

/// Runs one program in its own process group, stdin inherited (the lock), stdout and
/// stderr into the work dir, until it exits or the deadline passes.
async fn run(mut cmd: Command, dir: &PodDir, name: &str, deadline: Instant) -> Ended {
    let files =
        File::create(dir.stdout(name)).and_then(|o| Ok((o, File::create(dir.stderr(name))?)));
    let (out, err) = match files {
        Ok(f) => f,
        Err(e) => {
            return Ended::NotStarted {
                error: format!(
                    "cannot create its output files in {}: {e}",
                    dir.path().display()
                ),
            }
        }
    };
    cmd.process_group(0)
        .stdin(Stdio::inherit())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Ended::NotStarted {
                error: format!(
                    "cannot start {}: {e}",
                    cmd.as_std().get_program().to_string_lossy()
                ),
            }
        }
    };
    let mut guard = GroupGuard(child.id().and_then(|id| i32::try_from(id).ok()));
    if let Some(pgid) = guard.0 {
        // For the coordinator, should this pod die and leave the program running.
        let _ = std::fs::write(dir.pgid(name), pgid.to_string());
    }
    match tokio::time::timeout_at(deadline, child.wait()).await {
        Err(_) => Ended::TimedOut,
        Ok(Err(e)) => Ended::NotStarted {
            error: format!("waiting for it failed: {e}"),
        },
        Ok(Ok(status)) => {
            // Reaped: the group id may be reused, so do not signal it.
            guard.0 = None;
            Ended::Exited {
                code: status.code(),
            }
        }
    }
}

/// Writes the status through a temporary file and a rename: it appears whole. Not synced
/// to disk: a crash of any process leaves it whole in the page cache, and after a power
/// loss a missing or unreadable status only means the task runs again (two fsyncs would
/// cost milliseconds per task).
fn write_status(dir: &PodDir, status: &PodStatus) -> std::io::Result<()> {
    let tmp = dir.path().join("pod-status.json.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec(status).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(&tmp, dir.status())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn work_dir_names_are_plain_file_names_and_distinct(a in "\\PC{1,60}", b in "\\PC{1,60}") {
            let root = Path::new("/w");
            let (da, db) = (PodDir::of(root, &a), PodDir::of(root, &b));
            let name = da.path().file_name().unwrap().to_str().unwrap().to_owned();
            prop_assert!(name.len() <= 57 && !name.starts_with('.'));
            prop_assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')));
            prop_assert_eq!(da.path().parent(), Some(root));
            if a != b {
                prop_assert_ne!(da, db);
            }
        }
    }

    #[test]
    fn the_lock_tells_a_running_pod_from_a_dead_one() {
        let dir = tempfile::tempdir().unwrap();
        let pod = PodDir::at(dir.path().to_owned());
        assert!(matches!(pod.probe().unwrap(), Probe::NoLock));
        std::fs::write(pod.lock(), b"").unwrap();
        let held = File::open(pod.lock()).unwrap();
        held.try_lock().unwrap();
        assert!(matches!(pod.probe().unwrap(), Probe::Held));
        drop(held);
        assert!(matches!(pod.probe().unwrap(), Probe::Free(_)));
    }
}
