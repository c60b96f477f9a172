//! The local backend: per task a fresh work dir, `fetcher` then `runner` as child processes
//! with exactly the environment a task's pod gives them, the task timeout enforced by
//! killing each child's process group, and the work dir removed afterwards.
//!
//! Layout of a work dir, as in the pod ([`pod`] defines the contract): `input/` (the
//! fetcher's `FETCH_DIR`, the emptyDir at `/mnt/input`) and `shared/result.json` (the
//! runner's `OUTPUT_PATH`).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use pod::{FetcherEnv, RunnerEnv};
use runner::result::MAX_RESULT_BYTES;
use runner::TaskResult;
use tokio::process::Command;
use tokio::time::Instant;
use tracing::debug;

use crate::backend::{AttemptOutcome, Backend, BoxFuture, FailureKind, NotReady};
use crate::task::{Stage, Task};

/// Time the runner gets past its own timeout to write its result before it is killed.
const KILL_SLACK: Duration = Duration::from_secs(5);
/// How much of a child's stderr is kept for an error message.
const STDERR_TAIL: usize = 2048;

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
    pub task_timeout: Duration,
    pub fuel: u64,
    pub work_dir: Option<PathBuf>,
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

    /// One attempt; the time each stage took goes into `stages`, also when it fails.
    async fn attempt(&self, task: &Task, stages: &mut Vec<(Stage, Duration)>) -> AttemptOutcome {
        let deadline = Instant::now() + self.task_timeout + KILL_SLACK;
        let mut builder = tempfile::Builder::new();
        builder.prefix("wasm-exec-task-");
        let dir = match &self.work_dir {
            Some(d) => builder.tempdir_in(d),
            None => builder.tempdir(),
        };
        let dir = match dir {
            Ok(d) => d,
            Err(e) => {
                return AttemptOutcome::failed(
                    FailureKind::Local,
                    Stage::Fetch,
                    format!("cannot create a work dir: {e}"),
                    true,
                )
            }
        };
        let input = dir.path().join("input");
        let shared = dir.path().join("shared");

        let mut fetch = Command::new(&self.fetcher);
        fetch.env_clear();
        set_env(
            &mut fetch,
            FetcherEnv {
                gateway: &self.gateway,
                wasm_cid: &task.wasm_cid,
                input_cid: task.input_cid.as_deref(),
                fetch_dir: &input,
            }
            .vars(),
        );
        let started = Instant::now();
        let fetched = run(fetch, deadline).await;
        stages.push((Stage::Fetch, started.elapsed()));
        let fetched = match fetched {
            Ok(o) => o,
            Err(e) => {
                return AttemptOutcome::failed(
                    FailureKind::Local,
                    Stage::Fetch,
                    e.to_string(),
                    true,
                )
            }
        };
        match fetched {
            Finished::TimedOut => {
                return AttemptOutcome::failed(
                    FailureKind::Deadline,
                    Stage::Fetch,
                    self.timeout_message("fetching"),
                    false,
                )
            }
            Finished::Exited { code: Some(0), .. } => {}
            Finished::Exited { code, stderr, .. } => {
                // Bad usage (an unparsable CID) cannot be cured by a retry; anything else may
                // be transient.
                let retryable = code != Some(i32::from(pod::exit::fetcher::USAGE));
                return AttemptOutcome::failed(
                    FailureKind::Fetch,
                    Stage::Fetch,
                    last_error(&stderr, "fetcher", code),
                    retryable,
                );
            }
        }

        let output = shared.join(pod::path::RESULT_FILE);
        let mut run_cmd = Command::new(&self.runner);
        run_cmd.env_clear().env(
            pod::env::TERMINATION_LOG,
            dir.path().join("termination-log"),
        );
        set_env(
            &mut run_cmd,
            RunnerEnv {
                task_id: &task.task_id,
                entry: task.entry.as_deref(),
                input_dir: &input,
                has_input: task.input_cid.is_some(),
                output: &output,
                timeout_sec: self.task_timeout.as_secs_f64(),
                fuel: self.fuel,
            }
            .vars(),
        );
        let started = Instant::now();
        let ran = run(run_cmd, deadline).await;
        stages.push((Stage::Run, started.elapsed()));
        let ran = match ran {
            Ok(o) => o,
            Err(e) => {
                return AttemptOutcome::failed(FailureKind::Local, Stage::Run, e.to_string(), true)
            }
        };
        let (code, stdout, stderr) = match ran {
            Finished::TimedOut => {
                return AttemptOutcome::failed(
                    FailureKind::Deadline,
                    Stage::Run,
                    self.timeout_message("running"),
                    false,
                )
            }
            Finished::Exited {
                code,
                stdout,
                stderr,
            } => (code, stdout, stderr),
        };
        let result = read_result(&output, &stdout);
        let Some(result) = result else {
            return AttemptOutcome::failed(
                FailureKind::NoResult,
                Stage::Run,
                format!(
                    "the runner finished without a result: {}",
                    last_error(&stderr, "runner", code)
                ),
                true,
            );
        };
        AttemptOutcome::from_result(result, code)
    }

    fn timeout_message(&self, doing: &str) -> String {
        format!(
            "killed while {doing}: the task took longer than its timeout of {} s",
            self.task_timeout.as_secs_f64()
        )
    }
}

impl Backend for LocalBackend {
    fn run<'a>(
        &'a self,
        task: &'a Task,
    ) -> Pin<Box<dyn Future<Output = AttemptOutcome> + Send + 'a>> {
        Box::pin(async move {
            let mut stages = Vec::new();
            let mut outcome = self.attempt(task, &mut stages).await;
            outcome.stages = stages;
            outcome
        })
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

enum Finished {
    Exited {
        code: Option<i32>,
        stdout: Vec<u8>,
        stderr: Vec<u8>,
    },
    TimedOut,
}

/// Kills a child's whole process group when dropped: on timeout, and when a shutdown
/// abandons the task mid-run.
struct GroupGuard(Option<i32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.take() {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
}

/// A child process that could not be run or waited for.
#[derive(Debug, thiserror::Error)]
enum ProcessError {
    #[error("cannot start {program}: {source}")]
    Start {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("waiting for {program} failed: {source}")]
    Wait {
        program: String,
        #[source]
        source: std::io::Error,
    },
}

async fn run(mut cmd: Command, deadline: Instant) -> Result<Finished, ProcessError> {
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    cmd.process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().map_err(|source| ProcessError::Start {
        program: program.clone(),
        source,
    })?;
    let mut guard = GroupGuard(child.id().and_then(|id| i32::try_from(id).ok()));
    match tokio::time::timeout_at(deadline, child.wait_with_output()).await {
        Err(_) => Ok(Finished::TimedOut),
        Ok(Err(source)) => Err(ProcessError::Wait { program, source }),
        Ok(Ok(out)) => {
            // Reaped: the group id may be reused, so do not signal it.
            guard.0 = None;
            debug!(program = %program, code = ?out.status.code(), "child finished");
            Ok(Finished::Exited {
                code: out.status.code(),
                stdout: out.stdout,
                stderr: out.stderr,
            })
        }
    }
}

/// Sets a program's part of the pod's environment.
fn set_env(cmd: &mut Command, vars: Vec<(&'static str, Option<String>)>) {
    for (name, value) in vars {
        if let Some(v) = value {
            cmd.env(name, v);
        }
    }
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

/// The child's last error line (its log goes to stderr), for the report.
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
}
