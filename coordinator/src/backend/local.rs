//! The local backend: per task a fresh work dir, `fetcher` then `runner` as child processes
//! with exactly the environment a task's pod gives them, the task timeout enforced by
//! killing each child's process group, and the work dir removed afterwards.
//!
//! Layout of a work dir, as in the pod: `input/` (the fetcher's `FETCH_DIR`, the emptyDir
//! at `/mnt/input`) and `shared/result.json` (the runner's `OUTPUT_PATH`).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use pod::exit::runner as runner_exit;
use runner::TaskResult;
use tokio::process::Command;
use tokio::time::Instant;
use tracing::debug;

use crate::backend::{AttemptOutcome, Backend, BoxFuture};
use crate::task::{ReportStatus, Stage, Task};

/// Time the runner gets past its own timeout to write its result before it is killed.
const KILL_SLACK: Duration = Duration::from_secs(5);
/// How much of a child's stderr is kept for an error message.
const STDERR_TAIL: usize = 2048;

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
        name: &str,
    ) -> Result<PathBuf, String> {
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
            Err(format!(
                "the `{name}` binary is not at {} (beside the coordinator); build the workspace (`cargo build --workspace`) or set {name}_path",
                beside.display()
            ))
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
                    ReportStatus::Error,
                    Stage::Fetch,
                    format!("cannot create a work dir: {e}"),
                    true,
                )
            }
        };
        let input = dir.path().join("input");
        let shared = dir.path().join("shared");

        let mut fetch = Command::new(&self.fetcher);
        fetch
            .env_clear()
            .env("IPFS_GATEWAY", &self.gateway)
            .env("WASM_CID", &task.wasm_cid)
            .env("FETCH_DIR", &input);
        if let Some(c) = &task.input_cid {
            fetch.env("INPUT_CID", c);
        }
        let started = Instant::now();
        let fetched = run(fetch, deadline).await;
        stages.push((Stage::Fetch, started.elapsed()));
        let fetched = match fetched {
            Ok(o) => o,
            Err(e) => return AttemptOutcome::failed(ReportStatus::Error, Stage::Fetch, e, true),
        };
        match fetched {
            Finished::TimedOut => {
                return AttemptOutcome::failed(
                    ReportStatus::Timeout,
                    Stage::Fetch,
                    self.timeout_message("fetching"),
                    false,
                )
            }
            Finished::Exited { code: Some(0), .. } => {}
            Finished::Exited { code, stderr, .. } => {
                // Exit 2 is a bad CID: no retry can fix it. Anything else may be transient.
                let retryable = code != Some(2);
                return AttemptOutcome::failed(
                    ReportStatus::FetchFailed,
                    Stage::Fetch,
                    last_error(&stderr, "fetcher", code),
                    retryable,
                );
            }
        }

        let output = shared.join("result.json");
        let input_json = input.join("input.json");
        let mut run_cmd = Command::new(&self.runner);
        run_cmd
            .env_clear()
            .env("WASM_PATH", input.join("module.wasm"))
            .env(
                "INPUT_PATH",
                if task.input_cid.is_some() {
                    input_json.as_os_str()
                } else {
                    "".as_ref()
                },
            )
            .env("OUTPUT_PATH", &output)
            .env("TERMINATION_LOG", dir.path().join("termination-log"))
            .env("TASK_ID", &task.task_id)
            .env(
                "TIMEOUT_SEC",
                format!("{}", self.task_timeout.as_secs_f64()),
            )
            .env("FUEL", self.fuel.to_string());
        if let Some(e) = &task.entry {
            run_cmd.env("ENTRY", e);
        }
        let started = Instant::now();
        let ran = run(run_cmd, deadline).await;
        stages.push((Stage::Run, started.elapsed()));
        let ran = match ran {
            Ok(o) => o,
            Err(e) => return AttemptOutcome::failed(ReportStatus::Error, Stage::Run, e, true),
        };
        let (code, stdout, stderr) = match ran {
            Finished::TimedOut => {
                return AttemptOutcome::failed(
                    ReportStatus::Timeout,
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
                ReportStatus::Error,
                Stage::Run,
                format!(
                    "the runner finished without a result: {}",
                    last_error(&stderr, "runner", code)
                ),
                true,
            );
        };
        let status = ReportStatus::from(result.status);
        AttemptOutcome {
            status,
            stage: (status != ReportStatus::Ok).then_some(Stage::Run),
            error: result.error.clone(),
            // Exit 1: the runner could not do its job; everything else is the task's answer.
            retryable: code == Some(i32::from(runner_exit::RUNNER_FAILED)),
            result: Some(result),
            stages: Vec::new(),
        }
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

    fn ready(&self) -> BoxFuture<'_, Result<(), String>> {
        let missing: Vec<String> = [&self.fetcher, &self.runner]
            .into_iter()
            .filter(|p| !p.is_file())
            .map(|p| format!("the local backend needs {}, which is missing", p.display()))
            .collect();
        Box::pin(async move {
            if missing.is_empty() {
                Ok(())
            } else {
                Err(missing.join("; "))
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

async fn run(mut cmd: Command, deadline: Instant) -> Result<Finished, String> {
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    cmd.process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    let mut guard = GroupGuard(child.id().and_then(|id| i32::try_from(id).ok()));
    match tokio::time::timeout_at(deadline, child.wait_with_output()).await {
        Err(_) => Ok(Finished::TimedOut),
        Ok(Err(e)) => Err(format!("waiting for {program} failed: {e}")),
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

/// The result file, else the last JSON line of stdout (the runner writes both).
fn read_result(path: &Path, stdout: &[u8]) -> Option<TaskResult> {
    if let Some(r) = std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
    {
        return Some(r);
    }
    String::from_utf8_lossy(stdout)
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l.trim()).ok())
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
