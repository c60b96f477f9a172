//! How a task runs, behind one trait. `local` (the embedded default) runs the `fetcher` and
//! `runner` binaries as child processes with the pod's environment contract; `kubernetes`
//! runs one Job per task.

mod job_watch;
mod kubernetes;
mod local;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub use kubernetes::{KubernetesBackend, KubernetesError};
pub use local::LocalBackend;
use runner::TaskResult;

use crate::task::{ReportStatus, Stage, Task, TaskReport};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How one attempt at a task ended.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptOutcome {
    pub status: ReportStatus,
    pub stage: Option<Stage>,
    pub result: Option<TaskResult>,
    pub error: Option<String>,
    /// True for infrastructure failures, which a retry may cure; never for a task's own
    /// deterministic failure.
    pub retryable: bool,
    /// How long each stage that ran took.
    pub stages: Vec<(Stage, Duration)>,
}

impl AttemptOutcome {
    pub fn failed(status: ReportStatus, stage: Stage, error: String, retryable: bool) -> Self {
        Self {
            status,
            stage: Some(stage),
            result: None,
            error: Some(error),
            retryable,
            stages: Vec::new(),
        }
    }
}

pub trait Backend: Send + Sync {
    /// One attempt at `task`.
    fn run<'a>(&'a self, task: &'a Task) -> BoxFuture<'a, AttemptOutcome>;

    /// The attempt's outcome is settled: its report was published (`Some`), or a retry
    /// comes next (`None`). What the attempt still holds is freed only now (the Kubernetes
    /// backend deletes the Job here), so a coordinator that dies before publishing loses
    /// no result: the next one adopts the Job and publishes it.
    fn release<'a>(
        &'a self,
        _task: &'a Task,
        _report: Option<&'a TaskReport>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    /// True when a task left unfinished at shutdown carries on without the coordinator and
    /// the next coordinator adopts it (a Job does); such a task is not reported interrupted.
    fn hands_over(&self) -> bool {
        false
    }

    /// For `/readyz`: why the backend cannot take tasks now, if it cannot.
    fn ready(&self) -> BoxFuture<'_, Result<(), String>>;
}
