//! The ledger: every accepted task, durably, keyed by its id, with where it is in its life
//! (queued → running → done, then published). Sources write to it, the
//! [`crate::reconciler`] takes queued tasks from it and records how they ended, the
//! [`crate::publisher`] records which sinks have each report, and the task API reads it. A
//! coordinator that starts (after a crash, a restart, an election) resumes from it alone.
//!
//! One trait, implemented by [`SqliteLedger`] (an embedded SQLite file: the local backend).
//! The rules (which transitions are allowed, what accepting a known id does) live in
//! [`state`], without IO.

mod sqlite;
pub mod state;

use std::path::PathBuf;

pub use sqlite::SqliteLedger;
pub use state::{Accepted, Entry, Phase, TransitionError};

use crate::backend::BoxFuture;
use crate::task::{ReportStatus, Task, TaskReport};

/// Which tasks `GET /tasks?status=…` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Queued,
    Running,
    /// Done, with this final status.
    Status(ReportStatus),
}

impl Filter {
    /// `queued`, `running` or a final status; `None` for anything else.
    pub fn parse(s: &str) -> Option<Filter> {
        match s {
            "queued" => Some(Filter::Queued),
            "running" => Some(Filter::Running),
            other => ReportStatus::parse(other).map(Filter::Status),
        }
    }

    /// Every value `parse` accepts, for an error message.
    pub fn choices() -> String {
        let mut all = vec!["queued", "running"];
        all.extend(ReportStatus::ALL.iter().map(|s| s.as_str()));
        all.join(", ")
    }
}

/// A finished task whose report some sink does not have yet, with the sinks that do.
#[derive(Debug, Clone, PartialEq)]
pub struct Unpublished {
    pub report: TaskReport,
    pub delivered: Vec<String>,
}

/// How many tasks are in each phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub queued: u64,
    pub running: u64,
    pub done: u64,
    /// Done, but some sink lacks the report.
    pub unpublished: u64,
}

/// Why the ledger could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot open the ledger {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the ledger {path} is in use by another coordinator (its lock {lock} is held); stop that one, or give this one its own state file (--state)")]
    InUse { path: PathBuf, lock: PathBuf },
    #[error("the ledger {path} was written by a newer coordinator (schema {found}; this one knows {known}); use that version, or another state file (--state)")]
    NewerSchema {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("ledger {path}: {doing}: {source}")]
    Sql {
        path: PathBuf,
        doing: String,
        #[source]
        source: rusqlite::Error,
    },
    /// A transaction failed as a whole (every operation in it fails with the same text).
    #[error("ledger {path}: {doing}: {why}")]
    Commit {
        path: PathBuf,
        doing: &'static str,
        why: String,
    },
    #[error("ledger {path}: the stored {what} of task {task_id:?} does not read back: {source}")]
    Corrupt {
        path: PathBuf,
        task_id: String,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("ledger: no task {0:?} is recorded")]
    Unknown(String),
    #[error("ledger: {0}")]
    Transition(#[from] TransitionError),
    #[error("the ledger {0} stopped (its writer thread ended); the coordinator cannot go on")]
    Stopped(PathBuf),
    #[error("ledger: {doing}: {source}")]
    Kubernetes {
        doing: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("ledger: WasmTask {name} does not hold a valid task: {reason}")]
    InvalidObject { name: String, reason: String },
    #[error("ledger: {what} kept changing under this coordinator ({tries} conflicting writes)")]
    Contended { what: String, tries: usize },
}

/// The durable record of every task, behind one trait (local: SQLite; the trait is what
/// the reconciler, the publisher and the API see).
///
/// Every write is durable when its future resolves: an accepted task is on disk before
/// the caller answers anyone.
pub trait Ledger: Send + Sync + std::fmt::Debug {
    /// Accepts tasks (one transaction for all): each is queued if its id is new, else
    /// left as it is (see [`state::accept`]).
    fn accept(&self, tasks: Vec<Task>) -> BoxFuture<'_, Result<Vec<Accepted>, LedgerError>>;

    /// Moves up to `limit` of the oldest queued tasks to running, and returns them.
    fn start(&self, limit: usize) -> BoxFuture<'_, Result<Vec<Entry>, LedgerError>>;

    /// Records a running task's final report.
    fn finish(&self, report: TaskReport) -> BoxFuture<'_, Result<Entry, LedgerError>>;

    /// Puts running tasks back in the queue (a shutdown cut their runs short); a task that
    /// finished meanwhile stays done. Returns the ids requeued.
    fn requeue(&self, task_ids: Vec<String>) -> BoxFuture<'_, Result<Vec<String>, LedgerError>>;

    /// Records that `sink` has the reports of these tasks; those that every sink in
    /// `sinks` now has are marked published.
    fn delivered(
        &self,
        sink: String,
        task_ids: Vec<String>,
        sinks: Vec<String>,
    ) -> BoxFuture<'_, Result<(), LedgerError>>;

    /// Tasks left running (by a coordinator that died, or one that handed its Jobs over).
    fn running(&self) -> BoxFuture<'_, Result<Vec<Entry>, LedgerError>>;

    /// Finished tasks not yet published everywhere, in the order they finished (the order
    /// their reports are written in).
    fn unpublished(&self) -> BoxFuture<'_, Result<Vec<Unpublished>, LedgerError>>;

    fn get(&self, task_id: String) -> BoxFuture<'_, Result<Option<Entry>, LedgerError>>;

    /// Up to `limit` tasks after sequence number `after`, oldest first, and at most about
    /// `max_bytes` of reports (at least one task).
    fn list(
        &self,
        filter: Option<Filter>,
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> BoxFuture<'_, Result<Vec<Entry>, LedgerError>>;

    fn counts(&self) -> BoxFuture<'_, Result<Counts, LedgerError>>;

    /// Resolves when tasks may have been added by someone other than this coordinator's
    /// sources (a WasmTask created with kubectl); never, where only the sources add.
    fn changed(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::pending())
    }

    /// For `/readyz`: why the ledger cannot be used now, if it cannot.
    fn ready(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }

    /// Where it is, for logs and errors.
    fn describe(&self) -> String;
}

/// Milliseconds since the Unix epoch, as the ledger records times.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
