//! How a task runs, behind one trait. `local` (the embedded default) runs the `fetcher` and
//! `runner` binaries as child processes with the pod's environment contract; the
//! Kubernetes backend (one Job per task) is a later piece of work.

mod local;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub use local::LocalBackend;
use runner::TaskResult;

use crate::task::{ReportStatus, Stage, Task};

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
    fn run<'a>(
        &'a self,
        task: &'a Task,
    ) -> Pin<Box<dyn Future<Output = AttemptOutcome> + Send + 'a>>;
}
