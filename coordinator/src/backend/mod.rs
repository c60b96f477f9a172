//! How a task runs, behind one trait. `local` (the embedded default) runs the `fetcher` and
//! `runner` binaries in a pod process per task with the pod's environment contract; `kubernetes`
//! runs one Job per task.

pub mod kubernetes;
mod local;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub use kubernetes::{KubernetesBackend, KubernetesError};
pub use local::{run_pod, LocalBackend, LocalError, PodDir};
use pod::exit::runner as runner_exit;
use runner::{Status, TaskResult};

use crate::task::{ReportStatus, Stage, Task, TaskReport};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why an attempt ended without the runner's own answer: the `kind` label of the metric
/// `wasm_exec_backend_errors_total`, and the status it is reported with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The fetcher could not get or verify the module or input.
    Fetch,
    /// The runner reported that it could not do its job (its exit code 1).
    Runner,
    /// A program or pod ended without leaving a result.
    NoResult,
    /// The task was stopped at its time limit from outside (the runner did not report it).
    Deadline,
    /// A container image cannot be pulled.
    ImagePull,
    /// The runner's container was killed for exceeding its memory limit.
    OutOfMemory,
    /// The Job failed for another reason its conditions give.
    JobFailed,
    /// The API server refused a request (HTTP 403: RBAC).
    Forbidden,
    /// The API server rejected the Job built from the template (HTTP 400 or 422).
    Rejected,
    /// A Job of the task's name belongs to another task.
    NameTaken,
    /// Another request to the API server failed (network, 5xx, a watch that ended).
    Api,
    /// The coordinator's own machine: a work dir, starting or waiting for a process.
    Local,
    /// The Job waited for Kueue's admission longer than `admission_timeout`.
    Admission,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Fetch => "fetch",
            FailureKind::Runner => "runner",
            FailureKind::NoResult => "no_result",
            FailureKind::Deadline => "deadline",
            FailureKind::ImagePull => "image_pull",
            FailureKind::OutOfMemory => "oom_killed",
            FailureKind::JobFailed => "job_failed",
            FailureKind::Forbidden => "forbidden",
            FailureKind::Rejected => "rejected",
            FailureKind::NameTaken => "name_taken",
            FailureKind::Api => "api",
            FailureKind::Local => "local",
            FailureKind::Admission => "admission",
        }
    }

    /// The status a task that ends this way is published with.
    pub fn status(self) -> ReportStatus {
        match self {
            FailureKind::Fetch => ReportStatus::FetchFailed,
            FailureKind::Deadline => ReportStatus::Runner(Status::Timeout),
            _ => ReportStatus::Runner(Status::Error),
        }
    }
}

/// How one attempt at a task ended.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptOutcome {
    pub status: ReportStatus,
    pub stage: Option<Stage>,
    pub result: Option<TaskResult>,
    pub error: Option<String>,
    /// Why the attempt failed, when the machinery (not the task) decided how it ended.
    pub failure: Option<FailureKind>,
    /// True for infrastructure failures, which a retry may cure; never for a task's own
    /// deterministic failure.
    pub retryable: bool,
    /// How long each stage that ran took.
    pub stages: Vec<(Stage, Duration)>,
    /// The node the task's pod ran on, where the backend knows it (Kubernetes): a
    /// re-execution check keeps off it.
    pub node: Option<String>,
}

impl AttemptOutcome {
    /// An attempt that ended without the runner's answer.
    pub fn failed(kind: FailureKind, stage: Stage, error: String, retryable: bool) -> Self {
        Self {
            status: kind.status(),
            stage: Some(stage),
            result: None,
            error: Some(error),
            failure: Some(kind),
            retryable,
            stages: Vec::new(),
            node: None,
        }
    }

    /// The runner's result, with the exit code its process ended with: the one conversion
    /// from a runner's answer to an attempt's outcome, for every backend. Exit code 1 (the
    /// runner could not do its job) is worth a retry; every other status is the task's own.
    pub fn from_result(result: TaskResult, exit_code: Option<i32>) -> Self {
        let status = ReportStatus::from(result.status);
        let runner_failed = exit_code == Some(i32::from(runner_exit::RUNNER_FAILED))
            || result.status == Status::Error;
        Self {
            status,
            stage: (status != ReportStatus::OK).then_some(Stage::Run),
            error: result.error.clone(),
            failure: runner_failed.then_some(FailureKind::Runner),
            retryable: runner_failed,
            result: Some(result),
            stages: Vec::new(),
            node: None,
        }
    }
}

/// Why a backend cannot take tasks now (for `/readyz`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    #[error("the local backend needs {0}, which is missing")]
    MissingBinary(std::path::PathBuf),
    #[error("the Kubernetes API server is not answering: {0}")]
    ApiServer(String),
    #[error("the Kubernetes API server did not answer within {0} s")]
    ApiServerSlow(u64),
}

pub trait Backend: Send + Sync {
    /// One attempt at `task`.
    fn run<'a>(&'a self, task: &'a Task) -> BoxFuture<'a, AttemptOutcome>;

    /// The attempt's outcome is settled: its report is recorded in the ledger (`Some`), or
    /// a retry comes next or the run was cut short (`None`). What the attempt still holds
    /// is freed only now (the Kubernetes backend deletes the Job, the local one the work
    /// dir), so a coordinator that dies before recording loses no result: the next one
    /// collects it.
    fn release<'a>(
        &'a self,
        _task: &'a Task,
        _report: Option<&'a TaskReport>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    /// A re-execution check (`verify_fraction`): a second run of `task`, independent of
    /// its first (`first`): in a pod of its own, which may exist beside the first's, and on
    /// Kubernetes on another node than `first.node`. Like `run`, it collects a check run a
    /// previous coordinator left. A backend without checks says so as a failed outcome.
    fn run_check<'a>(
        &'a self,
        _task: &'a Task,
        _first: &'a AttemptOutcome,
    ) -> BoxFuture<'a, AttemptOutcome> {
        Box::pin(async {
            AttemptOutcome::failed(
                FailureKind::Local,
                Stage::Run,
                "this backend runs no re-execution checks".into(),
                false,
            )
        })
    }

    /// Frees what a check run of `task` holds (its Job, its work dir).
    fn release_check<'a>(&'a self, _task: &'a Task) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    /// True when a task left unfinished at shutdown carries on without the coordinator and
    /// the next coordinator adopts it (a Job does); such a task stays running in the ledger.
    fn hands_over(&self) -> bool {
        false
    }

    /// For `/readyz`: why the backend cannot take tasks now, if it cannot.
    fn ready(&self) -> BoxFuture<'_, Result<(), Vec<NotReady>>>;
}
