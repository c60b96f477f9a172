//! Task mode runs each task in a worker process, so that a result is written whatever
//! happens to the run.
//!
//! The `runner` binary starts itself again with `--worker`; the worker reads the module,
//! runs the task and prints its one result line on stdout; this supervisor reads that line
//! and publishes it ([`crate::report`]). If the worker dies without printing a result — a
//! crash the process cannot survive (a native stack overflow or an abort kills every thread
//! at once), a signal from outside — the supervisor writes a result itself: status
//! `error`, the cause named, exit code 1 (worth a retry). If the worker outlives its
//! timeout by [`BACKSTOP`] (a guest that the worker could not abandon), it is killed and
//! the result is `timeout`.
//!
//! The cost is one more process start per task (about a millisecond); the supervisor
//! itself never touches the module or the guest.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use pod::exit::runner as exit;
use sha2::{Digest, Sha256};
use tracing::{error, warn};

use crate::report;
use crate::result::{Status, TaskResult, MAX_RESULT_BYTES};
use crate::task::{hex, read_capped, TaskOptions};

/// The flag that makes the runner a worker.
pub const WORKER_FLAG: &str = "--worker";
/// How long past its own timeout a worker may take to report before it is killed.
pub const BACKSTOP: Duration = Duration::from_secs(2);

/// Runs the task in a worker process and publishes its result; returns the exit code.
pub fn supervise(opts: &TaskOptions, output: &Path, termination_log: &Path) -> u8 {
    let result = match run_worker(opts) {
        Ok(result) => result,
        Err(failure) => failure.into_result(opts),
    };
    match report::publish(&result, output, termination_log) {
        Ok(()) => result.status.exit_code(),
        Err(e) => {
            error!("{e}");
            exit::RUNNER_FAILED
        }
    }
}

/// How a worker failed to report.
#[derive(Debug)]
enum WorkerFailure {
    Start(std::io::Error),
    Died(ExitStatus),
    Overran(Duration),
}

impl WorkerFailure {
    fn into_result(self, opts: &TaskOptions) -> TaskResult {
        let (status, error) = match self {
            WorkerFailure::Start(e) => (
                Status::Error,
                format!("cannot start the runner's worker process: {e}"),
            ),
            WorkerFailure::Died(how) => (
                Status::Error,
                format!(
                    "the runner's worker process {} before it reported a result; the runner's log (stderr) says more",
                    describe(how)
                ),
            ),
            WorkerFailure::Overran(timeout) => (
                Status::Timeout,
                format!(
                    "the task ran longer than its timeout of {} s and its worker process did not stop; it was killed {} s later",
                    timeout.as_secs_f64(),
                    BACKSTOP.as_secs_f64()
                ),
            ),
        };
        error!("{error}");
        let mut result = TaskResult::new(opts.task_id.clone(), status);
        result.error = Some(error);
        result.entry.clone_from(&opts.entry);
        // The module's hash still identifies what was run (only on this rare path is the
        // module read here).
        result.module_sha256 = read_capped(&opts.wasm_path, opts.max_module_size)
            .ok()
            .map(|m| hex(&Sha256::digest(m)));
        result
    }
}

fn run_worker(opts: &TaskOptions) -> Result<TaskResult, WorkerFailure> {
    let exe = std::env::current_exe().map_err(WorkerFailure::Start)?;
    let mut child = Command::new(exe)
        .args(std::env::args_os().skip(1))
        .arg(WORKER_FLAG)
        // The runner's own stdin (the guest never reads it: task mode gives the guest an
        // empty one): whoever watches a task through a lock handed over as stdin, as the
        // coordinator's local pods do, sees the worker too.
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(WorkerFailure::Start)?;
    let Some(mut stdout) = child.stdout.take() else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(WorkerFailure::Start(std::io::Error::other(
            "no pipe to the worker's stdout",
        )));
    };
    // The worker prints one line; more than a result's maximum is not a result, and is
    // read on and dropped so the worker never blocks on a full pipe.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 64 * 1024];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = (MAX_RESULT_BYTES + 1).saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
        let _ = tx.send(kept);
    });
    let deadline = opts.limits.timeout.map(|t| t + BACKSTOP);
    let printed = match deadline {
        Some(d) => rx.recv_timeout(d).ok(),
        None => rx.recv().ok(),
    };
    let Some(printed) = printed else {
        warn!("the worker overran its timeout; killing it");
        let _ = child.kill();
        let _ = child.wait();
        return Err(WorkerFailure::Overran(
            opts.limits.timeout.unwrap_or_default(),
        ));
    };
    let status = child.wait().map_err(WorkerFailure::Start)?;
    // A result line is trusted however the worker ended after printing it.
    match TaskResult::last_in(&String::from_utf8_lossy(&printed)) {
        Some(result) => Ok(result),
        None => Err(WorkerFailure::Died(status)),
    }
}

/// `was killed by signal 11 (SIGSEGV)` or `exited with code 101`.
fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) => {
            let name = match sig {
                4 => " (SIGILL)",
                6 => " (SIGABRT: an abort, e.g. a native stack overflow)",
                7 => " (SIGBUS)",
                8 => " (SIGFPE)",
                9 => " (SIGKILL: killed from outside, e.g. by the out-of-memory killer)",
                11 => " (SIGSEGV)",
                15 => " (SIGTERM)",
                _ => "",
            };
            format!("was killed by signal {sig}{name}")
        }
        (None, None) => "ended in an unknown way".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deaths_are_named() {
        assert_eq!(
            describe(ExitStatus::from_raw(101 << 8)),
            "exited with code 101"
        );
        assert!(describe(ExitStatus::from_raw(6)).contains("SIGABRT"));
        assert!(describe(ExitStatus::from_raw(9)).contains("SIGKILL"));
        assert_eq!(
            describe(ExitStatus::from_raw(31)),
            "was killed by signal 31"
        );
    }
}
