//! Where tasks come from, behind one trait: the placeholder contract (the sample tasks) and
//! a JSON-lines file or stdin, and `POST /tasks`; [`Merged`] takes from two at once, and
//! [`Preloaded`] puts a list (the adopted Jobs' tasks) in front of a source.

mod api;
mod jsonl;
mod placeholder;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

pub use api::{channel as api_channel, ApiIntake, ApiSource};
pub use jsonl::JsonLinesSource;
pub use placeholder::{PlaceholderSource, SAMPLES};

use crate::task::Task;

/// What [`TaskSource::next_task`] gives: a task, `Ok(None)` when drained (no task will
/// come any more), or an error when the source broke (it is then drained too).
pub type NextTask<'a> =
    Pin<Box<dyn Future<Output = Result<Option<Task>, SourceError>> + Send + 'a>>;

/// A stream of tasks.
///
/// `next_task` must be cancel-safe: [`Merged`] races two sources and drops the loser's
/// future, which must not have taken a task yet.
pub trait TaskSource: Send {
    fn next_task(&mut self) -> NextTask<'_>;

    /// Entries skipped as bad so far (a task file's bad lines), for the summary.
    fn skipped(&self) -> u64 {
        0
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
}

/// The configured source and the task API together. With `once`, the run ends when the
/// configured source is drained: the API stops taking tasks then, and what it had already
/// queued still runs. Without, it goes on until the service stops asking.
pub struct Merged {
    primary: Box<dyn TaskSource>,
    api: ApiSource,
    primary_done: bool,
    api_done: bool,
    once: bool,
    /// Cleared when no task can come any more (for `/readyz`).
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for Merged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Merged(primary_done: {}, api_done: {})",
            self.primary_done, self.api_done
        )
    }
}

impl Merged {
    pub fn new(
        primary: Box<dyn TaskSource>,
        api: ApiSource,
        once: bool,
        open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> Self {
        open.store(true, std::sync::atomic::Ordering::SeqCst);
        Self {
            primary,
            api,
            primary_done: false,
            api_done: false,
            once,
            open,
        }
    }
}

impl TaskSource for Merged {
    fn next_task(&mut self) -> NextTask<'_> {
        Box::pin(async move {
            loop {
                if self.primary_done && self.once {
                    self.api.close();
                }
                if self.primary_done && self.api_done {
                    self.open.store(false, std::sync::atomic::Ordering::SeqCst);
                    return Ok(None);
                }
                tokio::select! {
                    t = self.primary.next_task(), if !self.primary_done => match t {
                        Ok(Some(t)) => return Ok(Some(t)),
                        Ok(None) => self.primary_done = true,
                        // Broken: drained from now on, and the caller hears why once.
                        Err(e) => {
                            self.primary_done = true;
                            return Err(e);
                        }
                    },
                    t = self.api.next_task(), if !self.api_done => match t {
                        Ok(Some(t)) => return Ok(Some(t)),
                        Ok(None) => self.api_done = true,
                        Err(e) => {
                            self.api_done = true;
                            return Err(e);
                        }
                    },
                }
            }
        })
    }

    fn skipped(&self) -> u64 {
        self.primary.skipped()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Scenario;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    #[tokio::test]
    async fn merged_loses_no_task_when_the_api_closes_meanwhile() {
        // Regression: the placeholder source took its task before its future was polled,
        // and a select! that finished on the closed API dropped it (affine went missing).
        let (intake, api) = api_channel();
        drop(intake);
        let open = Arc::new(AtomicBool::new(true));
        let mut m = Merged::new(
            Box::new(PlaceholderSource::new(Scenario::All)),
            api,
            true,
            open.clone(),
        );
        let mut ids = Vec::new();
        while let Some(t) = m.next_task().await.unwrap() {
            ids.push(t.task_id);
        }
        assert_eq!(ids, vec!["fib", "affine", "add"]);
        assert!(!open.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test]
    async fn preloaded_tasks_come_first() {
        let adopted = Task {
            task_id: "adopted".into(),
            wasm_cid: "Qm".into(),
            input_cid: None,
            entry: None,
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

    #[tokio::test]
    async fn with_once_queued_api_tasks_still_run_after_the_source_drains() {
        let (intake, api) = api_channel();
        let task = Task {
            task_id: "api".into(),
            wasm_cid: "Qm".into(),
            input_cid: None,
            entry: None,
        };
        intake.try_send(task).unwrap();
        let mut m = Merged::new(
            Box::new(PlaceholderSource::new(Scenario::Fib)),
            api,
            true,
            Arc::new(AtomicBool::new(true)),
        );
        let mut ids = Vec::new();
        while let Some(t) = m.next_task().await.unwrap() {
            ids.push(t.task_id);
        }
        ids.sort();
        assert_eq!(ids, vec!["api", "fib"]);
        assert!(
            intake
                .try_send(Task {
                    task_id: "late".into(),
                    wasm_cid: "Qm".into(),
                    input_cid: None,
                    entry: None
                })
                .is_err(),
            "intake closes"
        );
    }
}
