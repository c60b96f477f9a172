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

/// Notes about a task, by key (see [`Ledger::note`]).
pub type Notes = std::collections::BTreeMap<String, String>;

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
    #[error(
        "the ledger {0} stopped (its writer or reader thread ended); the coordinator cannot go on"
    )]
    Stopped(PathBuf),
    /// Never seen: an entry's types always serialize (no map with other than string keys).
    #[error("ledger: task {task_id:?} does not serialize: {source}")]
    Serialize {
        task_id: String,
        #[source]
        source: serde_json::Error,
    },
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

    /// [`Ledger::list`] as the JSON array `GET /tasks` answers with. The SQLite ledger
    /// overrides it to write each task as it reads it, holding one at a time.
    fn list_json(
        &self,
        filter: Option<Filter>,
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> BoxFuture<'_, Result<Vec<u8>, LedgerError>> {
        Box::pin(async move {
            let mut json = JsonList::default();
            for e in self.list(filter, after, limit, max_bytes).await? {
                json.push(&e)?;
            }
            Ok(json.finish())
        })
    }

    fn counts(&self) -> BoxFuture<'_, Result<Counts, LedgerError>>;

    /// Records a note about a task beside its report: what a sink knows of its delivery
    /// (the contract sink's transaction hash, under `tx <sink>`). Shown by `GET
    /// /tasks/{id}`; a later note under the same key replaces the earlier.
    fn note(
        &self,
        task_id: String,
        key: String,
        value: String,
    ) -> BoxFuture<'_, Result<(), LedgerError>>;

    /// Remembers that the report of `task_id` (done `ok`) answers every task with this
    /// cache key (see [`crate::cache`]). The first task recorded under a key keeps it.
    fn cache_put(&self, key: String, task_id: String) -> BoxFuture<'_, Result<(), LedgerError>>;

    /// The report that answers tasks with this cache key: a task done `ok` recorded under
    /// it, if the ledger still holds that task.
    fn cache_get(&self, key: String) -> BoxFuture<'_, Result<Option<TaskReport>, LedgerError>>;

    /// A task's notes, by key.
    fn notes(&self, task_id: String) -> BoxFuture<'_, Result<Notes, LedgerError>>;

    /// A source's saved position (the chain source's next block), if it saved one.
    fn cursor(&self, name: String) -> BoxFuture<'_, Result<Option<u64>, LedgerError>>;

    /// Saves a source's position, durably. A source saves it only once the tasks before
    /// it are accepted.
    fn set_cursor(&self, name: String, value: u64) -> BoxFuture<'_, Result<(), LedgerError>>;

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

/// A JSON array of entries, written one entry at a time: the same bytes as
/// `serde_json::to_vec` of them all, without holding them all.
#[derive(Debug, Default)]
pub struct JsonList {
    bytes: Vec<u8>,
}

impl JsonList {
    pub fn push(&mut self, e: &Entry) -> Result<(), LedgerError> {
        self.bytes
            .push(if self.bytes.is_empty() { b'[' } else { b',' });
        serde_json::to_writer(&mut self.bytes, e).map_err(|source| LedgerError::Serialize {
            task_id: e.task_id.clone(),
            source,
        })
    }

    pub fn finish(mut self) -> Vec<u8> {
        if self.bytes.is_empty() {
            self.bytes.push(b'[');
        }
        self.bytes.push(b']');
        self.bytes
    }
}

/// RFC 3339 (UTC, milliseconds) from Unix milliseconds: how the WasmTasks and the receipts
/// write the ledger's times.
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let nanos = u32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0);
    k8s_openapi::jiff::Timestamp::new(secs, i32::try_from(nanos).unwrap_or(0))
        .map(|t| format!("{t:.3}"))
        .unwrap_or_default()
}

/// Unix milliseconds from RFC 3339.
pub fn unix_ms(text: &str) -> Option<i64> {
    text.parse::<k8s_openapi::jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
}

/// Milliseconds since the Unix epoch, as the ledger records times.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(unix_ms("2023-11-14T22:13:20.123Z"), Some(1_700_000_000_123));
    }

    #[test]
    fn a_json_list_is_the_same_bytes_as_the_entries_serialized_at_once() {
        let entries: Vec<Entry> = ["a", "b", "c"]
            .iter()
            .zip(1..)
            .map(|(id, seq)| Entry::queued(Task::example(id), seq, 1_700_000_000_000))
            .collect();
        for n in 0..=entries.len() {
            let mut json = JsonList::default();
            for e in &entries[..n] {
                json.push(e).unwrap();
            }
            assert_eq!(
                String::from_utf8(json.finish()).unwrap(),
                serde_json::to_string(&entries[..n]).unwrap()
            );
        }
    }
}
