//! The local backend: each task runs in a [`pod`] (a process of its own that runs the
//! `fetcher`, then the `runner`, with exactly the environment a Job's pod gives them) in a
//! work dir named from the task id. A pod outlives the coordinator: the next coordinator
//! finds the dir, collects a finished task's result, waits for one still running, and
//! runs again only a task that died without a result (see [`pod`] for how it tells).
//! The work dir is removed once the task's outcome is in the ledger ([`Backend::release`]).

mod pod;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use runner::result::MAX_RESULT_BYTES;
use runner::TaskResult;
use tokio::process::Command;
use tracing::{info, warn};

pub use pod::{run_pod, PodDir};
use pod::{Ended, PodSpec, PodStatus, Probe, KILL_SLACK};

use crate::backend::{AttemptOutcome, Backend, BoxFuture, FailureKind, NotReady};
use crate::task::{RunLimits, Stage, Task, TaskReport};

/// How much of a program's stderr is kept for an error message.
const STDERR_TAIL: usize = 2048;
/// How often a task left running by a previous coordinator is looked at.
const ADOPTED_POLL: Duration = Duration::from_millis(100);

/// Why the local backend cannot be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocalError {
    #[error("the `{name}` binary is not at {path} (beside the coordinator); build the workspace (`cargo build --workspace`) or set {name}_path")]
    MissingBinary { name: &'static str, path: PathBuf },
}

#[derive(Debug, Clone)]
pub struct LocalBackend {
    pub fetcher: PathBuf,
    pub runner: PathBuf,
    /// `IPFS_GATEWAY` for the fetcher: a gateway URL or `file:///abs/mirror`.
    pub gateway: String,
    /// The configured maxima; a task's own limits can lower them.
    pub limits: RunLimits,
    /// Where the tasks' work dirs are; the same for every coordinator sharing a ledger.
    pub work_dir: PathBuf,
    /// The program that runs a pod: the coordinator itself (`--local-pod DIR`).
    pub pod_program: PathBuf,
    /// The runner's linear-memory cap in bytes; `None` leaves the runner's default.
    pub max_memory: Option<u64>,
}

impl LocalBackend {
    /// The binaries beside `exe` (the coordinator's own path), unless configured.
    pub fn find_binary(
        configured: Option<&Path>,
        exe: &Path,
        name: &'static str,
    ) -> Result<PathBuf, LocalError> {
        if let Some(p) = configured.filter(|p| !p.as_os_str().is_empty()) {
            return Ok(p.to_owned());
        }
        let beside = exe
            .parent()
            .map(|d| d.join(name))
            .unwrap_or_else(|| PathBuf::from(name));
        if beside.is_file() {
            Ok(beside)
        } else {
            Err(LocalError::MissingBinary { name, path: beside })
        }
    }

    /// At start-up: removes the work dirs nothing runs in any more, except those of
    /// `running` (tasks the ledger has as running: their dirs are collected or adopted).
    pub fn sweep(&self, running: &HashSet<String>) {
        let Ok(entries) = std::fs::read_dir(&self.work_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let dir = PodDir::at(entry.path());
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let task_id = dir.read_spec().map(|s| s.task.task_id);
            if task_id.as_ref().is_some_and(|id| running.contains(id)) {
                continue;
            }
            match dir.probe() {
                Ok(Probe::Held) => warn!(
                    dir = %dir.path().display(),
                    "a task the ledger does not have as running still runs in this work dir; left alone"
                ),
                _ => remove(&dir),
            }
        }
    }

    /// One attempt: collects or waits for a run a previous coordinator left, else starts
    /// a fresh pod (in a fresh work dir: [`prepare`] removes what a dead run left).
    async fn attempt(&self, task: &Task, dir: PodDir) -> AttemptOutcome {
        let mut waited = false;
        while dir.path().exists() {
            match dir.probe() {
                Ok(Probe::Held) => {
                    if !waited {
                        info!("a run of this task that a previous coordinator started is still going; waiting for it");
                        waited = true;
                    }
                    tokio::time::sleep(ADOPTED_POLL).await;
                }
                Ok(Probe::Free(_lock)) => {
                    if let Some(status) = dir.read_status() {
                        info!("collecting the result of a run a previous coordinator started");
                        return collect(&dir, &status, self.limits.for_task(task.limits).timeout);
                    }
                    warn!("a previous run of this task ended without finishing (it was stopped); running it again");
                    break;
                }
                // Never started, or not probeable: what is there goes in `prepare`, which
                // says so if it cannot remove it.
                Ok(Probe::NoLock) | Err(_) => break,
            }
        }
        self.start_pod(task, &dir).await
    }

    /// A fresh work dir, the spec, the lock, and the pod; then waits for it.
    async fn start_pod(&self, task: &Task, dir: &PodDir) -> AttemptOutcome {
        let limits = self.limits.for_task(task.limits);
        let spec = PodSpec {
            task: task.clone(),
            fetcher: self.fetcher.clone(),
            runner: self.runner.clone(),
            gateway: self.gateway.clone(),
            timeout_sec: limits.timeout.as_secs_f64(),
            fuel: limits.fuel,
            max_memory: self.max_memory,
        };
        let lock = match prepare(dir, &spec) {
            Ok(lock) => lock,
            Err(e) => {
                return AttemptOutcome::failed(
                    FailureKind::Local,
                    Stage::Fetch,
                    format!("cannot prepare the work dir {}: {e}", dir.path().display()),
                    true,
                )
            }
        };
        let pod_log = match std::fs::File::create(dir.stderr("pod")) {
            Ok(f) => Stdio::from(f),
            Err(_) => Stdio::null(),
        };
        let mut cmd = Command::new(&self.pod_program);
        cmd.arg("--local-pod")
            .arg(dir.path())
            .env_clear()
            .process_group(0)
            // The locked file: held by the pod and its programs for as long as any lives.
            .stdin(Stdio::from(lock))
            .stdout(Stdio::null())
            .stderr(pod_log);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                return AttemptOutcome::failed(
                    FailureKind::Local,
                    Stage::Fetch,
                    format!("cannot start {}: {e}", self.pod_program.display()),
                    true,
                )
            }
        };
        // Our copy of the lock goes with the command; the pod's stays.
        drop(cmd);
        let mut stop = StopPod(child.id());
        let backstop = limits.timeout.saturating_add(KILL_SLACK * 2);
        let waited = tokio::time::timeout(backstop, child.wait()).await;
        match waited {
            Ok(Ok(_)) => {
                // Reaped: its pid may be reused, so never signal it.
                stop.0 = None;
            }
            Ok(Err(e)) => {
                return AttemptOutcome::failed(
                    FailureKind::Local,
                    Stage::Run,
                    format!("waiting for the task's pod failed: {e}"),
                    true,
                )
            }
            Err(_) => {
                drop(stop);
                let _ = child.wait().await;
                return AttemptOutcome::failed(
                    FailureKind::Deadline,
                    Stage::Run,
                    timeout_message(limits.timeout, "running"),
                    false,
                );
            }
        }
        match dir.read_status() {
            Some(status) => collect(dir, &status, limits.timeout),
            None => {
                // The pod died (killed from outside): its programs must not run on
                // beside the retry.
                dir.kill_leftovers();
                AttemptOutcome::failed(
                    FailureKind::NoResult,
                    Stage::Run,
                    format!(
                        "the task's pod ended without saying how: {}",
                        last_error(&tail(&dir.stderr("pod"), 64 * 1024), "pod", None)
                    ),
                    true,
                )
            }
        }
    }
}

/// Stops a pod this coordinator started and has not reaped when dropped: when a shutdown
/// abandons the task, and at the backstop. SIGTERM: the pod kills its programs and leaves
/// no status, so the task runs again.
struct StopPod(Option<u32>);

impl Drop for StopPod {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take().and_then(|p| i32::try_from(p).ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }
}

/// A fresh work dir with the spec and a locked, empty lock file (returned).
fn prepare(dir: &PodDir, spec: &PodSpec) -> std::io::Result<std::fs::File> {
    match std::fs::remove_dir_all(dir.path()) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::fs::create_dir_all(dir.input())?;
    if let Some(shared) = dir.result().parent() {
        std::fs::create_dir_all(shared)?;
    }
    std::fs::write(
        dir.spec(),
        serde_json::to_vec(spec).map_err(std::io::Error::other)?,
    )?;
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(dir.lock())?;
    lock.try_lock().map_err(std::io::Error::from)?;
    // The programs read it as their stdin: it is empty, like /dev/null.
    Ok(lock)
}

fn remove(dir: &PodDir) {
    if let Err(e) = std::fs::remove_dir_all(dir.path()) {
        if e.kind() != std::io::ErrorKind::NotFound {
            warn!(dir = %dir.path().display(), "cannot remove a task's work dir: {e}");
        }
    }
}

fn timeout_message(timeout: Duration, doing: &str) -> String {
    format!(
        "killed while {doing}: the task took longer than its timeout of {} s",
        timeout.as_secs_f64()
    )
}

/// The attempt's outcome from what the pod left in its work dir.
fn collect(dir: &PodDir, status: &PodStatus, timeout: Duration) -> AttemptOutcome {
    let stages = |outcome: AttemptOutcome| AttemptOutcome {
        stages: [
            Some((Stage::Fetch, Duration::from_millis(status.fetch_ms))),
            status
                .runner
                .as_ref()
                .map(|_| (Stage::Run, Duration::from_millis(status.run_ms))),
        ]
        .into_iter()
        .flatten()
        .collect(),
        ..outcome
    };
    let fetch_err = || tail(&dir.stderr("fetcher"), 64 * 1024);
    let outcome = match (&status.fetcher, &status.runner) {
        (Ended::TimedOut, _) => AttemptOutcome::failed(
            FailureKind::Deadline,
            Stage::Fetch,
            timeout_message(timeout, "fetching"),
            false,
        ),
        (Ended::NotStarted { error }, _) => AttemptOutcome::failed(
            FailureKind::Local,
            Stage::Fetch,
            format!("fetcher: {error}"),
            true,
        ),
        (Ended::Exited { code }, _) if *code != Some(0) => {
            // Bad usage (an unparsable CID) cannot be cured by a retry; anything else may
            // be transient.
            let retryable = *code != Some(i32::from(::pod::exit::fetcher::USAGE));
            AttemptOutcome::failed(
                FailureKind::Fetch,
                Stage::Fetch,
                last_error(&fetch_err(), "fetcher", *code),
                retryable,
            )
        }
        (_, None) => AttemptOutcome::failed(
            FailureKind::NoResult,
            Stage::Run,
            "the pod ended after fetching without running the runner".into(),
            true,
        ),
        (_, Some(Ended::TimedOut)) => AttemptOutcome::failed(
            FailureKind::Deadline,
            Stage::Run,
            timeout_message(timeout, "running"),
            false,
        ),
        (_, Some(Ended::NotStarted { error })) => AttemptOutcome::failed(
            FailureKind::Local,
            Stage::Run,
            format!("runner: {error}"),
            true,
        ),
        (_, Some(Ended::Exited { code })) => {
            match read_result(
                &dir.result(),
                &tail(&dir.stdout("runner"), MAX_RESULT_BYTES + 2),
            ) {
                Some(result) => AttemptOutcome::from_result(result, *code),
                None => AttemptOutcome::failed(
                    FailureKind::NoResult,
                    Stage::Run,
                    format!(
                        "the runner finished without a result: {}",
                        last_error(&tail(&dir.stderr("runner"), 64 * 1024), "runner", *code)
                    ),
                    true,
                ),
            }
        }
    };
    stages(outcome)
}

impl Backend for LocalBackend {
    fn run<'a>(&'a self, task: &'a Task) -> BoxFuture<'a, AttemptOutcome> {
        Box::pin(self.attempt(task, PodDir::of(&self.work_dir, &task.task_id)))
    }

    /// In a pod and work dir of its own ([`check_dir`]); locally there is no other node.
    fn run_check<'a>(
        &'a self,
        task: &'a Task,
        _first: &'a AttemptOutcome,
    ) -> BoxFuture<'a, AttemptOutcome> {
        Box::pin(self.attempt(task, check_dir(&self.work_dir, &task.task_id)))
    }

    fn release_check<'a>(&'a self, task: &'a Task) -> BoxFuture<'a, ()> {
        Box::pin(release_dir(check_dir(&self.work_dir, &task.task_id)))
    }

    /// The outcome is recorded, a retry comes next, or the run was cut short: the work
    /// dir goes, once nothing of the task runs in it any more (a pod that was just told to
    /// stop gets [`KILL_SLACK`] to go).
    fn release<'a>(&'a self, task: &'a Task, _report: Option<&'a TaskReport>) -> BoxFuture<'a, ()> {
        Box::pin(release_dir(PodDir::of(&self.work_dir, &task.task_id)))
    }

    fn ready(&self) -> BoxFuture<'_, Result<(), Vec<NotReady>>> {
        let missing: Vec<NotReady> = [&self.fetcher, &self.runner]
            .into_iter()
            .filter(|p| !p.is_file())
            .map(|p| NotReady::MissingBinary(p.clone()))
            .collect();
        Box::pin(async move {
            if missing.is_empty() {
                Ok(())
            } else {
                Err(missing)
            }
        })
    }
}

/// Removes a work dir once nothing runs in it any more (a pod that was just told to stop
/// gets [`KILL_SLACK`] to go).
async fn release_dir(dir: PodDir) {
    let until = tokio::time::Instant::now() + KILL_SLACK;
    while matches!(dir.probe(), Ok(Probe::Held)) && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = tokio::task::spawn_blocking(move || remove(&dir)).await;
}

/// The work dir of a task's re-execution check: that of an id no task can have (task ids
/// hold no control characters), so it never meets a task's.
fn check_dir(root: &Path, task_id: &str) -> PodDir {
    PodDir::of(root, &format!("{task_id}\ncheck"))
}

/// The last `max` bytes of a file (nothing if it cannot be read).
fn tail(path: &Path, max: usize) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(max as u64);
    let mut bytes = Vec::new();
    if f.seek(SeekFrom::Start(from)).is_ok() {
        let _ = f.take(max as u64).read_to_end(&mut bytes);
    }
    bytes
}

/// The result file, else the last result line of stdout (the runner writes both). A result
/// is at most [`MAX_RESULT_BYTES`]: a larger file is not read whole.
fn read_result(path: &Path, stdout: &[u8]) -> Option<TaskResult> {
    use std::io::Read;
    let from_file = std::fs::File::open(path).ok().and_then(|f| {
        let mut bytes = Vec::new();
        f.take(MAX_RESULT_BYTES as u64 + 2)
            .read_to_end(&mut bytes)
            .ok()?;
        TaskResult::last_in(&String::from_utf8_lossy(&bytes))
    });
    from_file.or_else(|| TaskResult::last_in(&String::from_utf8_lossy(stdout)))
}

/// The program's last error line (its log goes to stderr), for the report.
fn last_error(stderr: &[u8], program: &str, code: Option<i32>) -> String {
    let text = String::from_utf8_lossy(stderr);
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("ERROR"))
        .or_else(|| text.lines().rev().find(|l| !l.trim().is_empty()))
        .unwrap_or("")
        .trim();
    let line = match line.char_indices().nth(STDERR_TAIL) {
        Some((cut, _)) => &line[..cut],
        None => line,
    };
    let how = code.map_or_else(
        || "was killed by a signal".to_string(),
        |c| format!("exited with {c}"),
    );
    format!("{program} {how}: {line}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_error_prefers_error_lines() {
        let s = b"INFO a\nERROR QmX: could not be fetched\nINFO b\n";
        assert_eq!(
            last_error(s, "fetcher", Some(1)),
            "fetcher exited with 1: ERROR QmX: could not be fetched"
        );
        assert!(last_error(b"", "runner", None).contains("killed by a signal"));
    }

    #[test]
    fn result_falls_back_to_the_last_stdout_line() {
        let r = runner::TaskResult::new(Some("t".into()), runner::Status::Trap);
        let stdout = format!("noise\n{}\n", r.to_line());
        assert_eq!(
            read_result(Path::new("/nonexistent"), stdout.as_bytes()),
            Some(r)
        );
        assert_eq!(read_result(Path::new("/nonexistent"), b"nothing"), None);
    }

    #[test]
    fn tail_keeps_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"0123456789").unwrap();
        assert_eq!(tail(&p, 4), b"6789");
        assert_eq!(tail(&p, 100), b"0123456789");
        assert!(tail(&dir.path().join("none"), 4).is_empty());
    }
}
