//! Where tasks come from, behind one trait: the placeholder contract (the sample tasks) and
//! a JSON-lines file or stdin; [`Preloaded`] puts a list (the adopted Jobs' tasks) in front
//! of a source. Every source's tasks go into the ledger through the [`Intake`], which
//! `POST /tasks` uses too.

mod intake;
mod jsonl;
mod placeholder;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

pub use intake::{Intake, IntakeError};
pub use jsonl::JsonLinesSource;
pub use placeholder::{PlaceholderSource, SAMPLES};

use crate::backend::BoxFuture;
use crate::task::Task;

/// What [`TaskSource::next_task`] gives: a task, `Ok(None)` when drained (no task will
/// come any more), or an error when the source broke (it is then drained too).
pub type NextTask<'a> =
    Pin<Box<dyn Future<Output = Result<Option<Task>, SourceError>> + Send + 'a>>;

/// A stream of tasks.
///
/// `next_task` must be cancel-safe: the reconciler races it against a stop and drops it,
/// which must not lose a task it had taken.
pub trait TaskSource: Send {
    fn next_task(&mut self) -> NextTask<'_>;

    /// Entries skipped as bad so far (a task file's bad lines), for the summary.
    fn skipped(&self) -> u64 {
        0
    }

    /// Called once every task handed out so far is in the ledger: a source with a cursor
    /// (the chain's next block) may move it now, never before.
    fn accepted(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// A source that cannot be read. Skipped bad entries are not errors: they are logged
/// with their line numbers and counted.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot open the task file {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the task file {path} is {what}, not a file of JSON lines")]
    NotAFile { path: PathBuf, what: &'static str },
    #[error("cannot read tasks from {name} any more, at line {line}: {source}")]
    Read {
        name: String,
        line: u64,
        #[source]
        source: std::io::Error,
    },
}

/// `first`, then whatever `then` gives: the tasks of Jobs adopted at startup go before
/// the configured source's.
pub struct Preloaded {
    first: std::collections::VecDeque<Task>,
    then: Box<dyn TaskSource>,
}

impl std::fmt::Debug for Preloaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Preloaded({} left)", self.first.len())
    }
}

impl Preloaded {
    pub fn new(first: Vec<Task>, then: Box<dyn TaskSource>) -> Self {
        Self {
            first: first.into(),
            then,
        }
    }
}

impl TaskSource for Preloaded {
    fn next_task(&mut self) -> NextTask<'_> {
        // Taken inside the future (when polled, not when made): cancel-safe.
        Box::pin(async move {
            match self.first.pop_front() {
                Some(t) => Ok(Some(t)),
                None => self.then.next_task().await,
            }
        })
    }

    fn skipped(&self) -> u64 {
        self.then.skipped()
    }

    fn accepted(&mut self) -> BoxFuture<'_, ()> {
        // The adopted tasks come first: once any of `then`'s were handed out, these are in.
        if self.first.is_empty() {
            self.then.accepted()
        } else {
            Box::pin(async {})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Scenario;

    #[tokio::test]
    async fn preloaded_tasks_come_first() {
        let adopted = Task {
            task_id: "adopted".into(),
            wasm_cid: "Qm".into(),
            input_cid: None,
            entry: None,
            limits: Default::default(),
            invalid: None,
            deterministic: false,
        };
        let mut p = Preloaded::new(
            vec![adopted],
            Box::new(PlaceholderSource::new(Scenario::Fib)),
        );
        let mut ids = Vec::new();
        while let Some(t) = p.next_task().await.unwrap() {
            ids.push(t.task_id);
        }
        assert_eq!(ids, vec!["adopted", "fib"]);
    }
}
