//! The ledger's state machine, without IO: what an entry is, how a task is accepted, and
//! which transitions are allowed. Every [`crate::ledger::Ledger`] implementation loads an
//! entry, asks this module for the next one, and stores it; so the rules are written (and
//! tested) once.
//!
//! ```text
//!  accept ──► Queued ──start──► Running ──finish(report)──► Done ──published──► Done, published
//!               ▲                  │
//!               └─────requeue──────┘   (a shutdown cut the run short: it published nothing)
//! ```
//!
//! Accepting a known task id is a no-op that returns the entry as it is (idempotent), or a
//! conflict when the same id names a different task.

use serde::Serialize;

use crate::task::{ReportStatus, Task, TaskReport};

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Accepted, waiting for a free slot.
    Queued,
    /// Handed to the backend (possibly by a coordinator that died: the next one resumes it).
    Running,
    /// Finished, with its report.
    Done,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Queued => "queued",
            Phase::Running => "running",
            Phase::Done => "done",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        [Phase::Queued, Phase::Running, Phase::Done]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// One task in the ledger: `GET /tasks/{id}` shows it as it is (see [`Entry::shown_state`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub task_id: String,
    /// The order of acceptance (1, 2, …): the order tasks start in, and the paging key of
    /// `GET /tasks?after=`.
    pub seq: u64,
    pub state: Phase,
    /// The final status once done.
    pub status: Option<ReportStatus>,
    /// Times the task was started (a resumed or retried run counts again).
    pub attempts: u32,
    /// True once every sink has the report.
    pub published: bool,
    /// Unix milliseconds.
    pub accepted_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub task: Task,
    pub report: Option<TaskReport>,
    /// Set while the task's Job waits for a batch queue to admit it (Kueue): why it waits,
    /// as the queue says. Read from the WasmTask; the ledger's own state is `running` (the
    /// coordinator has started the task: its Job exists).
    pub admission: Option<String>,
}

impl Entry {
    /// The state readers see: `queued` for a started task whose Job waits for admission
    /// (nothing of it runs yet), else the ledger's state.
    pub fn shown_state(&self) -> Phase {
        if self.state == Phase::Running && self.admission.is_some() {
            Phase::Queued
        } else {
            self.state
        }
    }

    /// A task accepted now, to be stored with sequence number `seq`.
    pub fn queued(task: Task, seq: u64, now: i64) -> Entry {
        Entry {
            task_id: task.task_id.clone(),
            seq,
            state: Phase::Queued,
            status: None,
            attempts: 0,
            published: false,
            accepted_at: now,
            started_at: None,
            finished_at: None,
            task,
            report: None,
            admission: None,
        }
    }
}

/// The wire form (`GET /tasks`): every field as it is, but `state` as [`Entry::shown_state`]
/// and `admission` only when set.
impl Serialize for Entry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut m = s.serialize_struct("Entry", 13)?;
        m.serialize_field("task_id", &self.task_id)?;
        m.serialize_field("seq", &self.seq)?;
        m.serialize_field("state", &self.shown_state())?;
        m.serialize_field("status", &self.status)?;
        m.serialize_field("attempts", &self.attempts)?;
        m.serialize_field("published", &self.published)?;
        m.serialize_field("accepted_at", &self.accepted_at)?;
        m.serialize_field("started_at", &self.started_at)?;
        m.serialize_field("finished_at", &self.finished_at)?;
        m.serialize_field("task", &self.task)?;
        m.serialize_field("report", &self.report)?;
        match &self.admission {
            Some(why) => m.serialize_field("admission", why)?,
            None => m.skip_field("admission")?,
        }
        m.end()
    }
}

/// The answer to accepting a task.
#[derive(Debug, Clone, PartialEq)]
pub enum Accepted {
    /// New: queued now.
    New(Entry),
    /// The id is known with the same task: nothing changed.
    Known(Entry),
    /// The id is known with a different task: refused, nothing changed.
    Conflict { known: Entry, offered: Task },
}

impl Accepted {
    pub fn entry(&self) -> &Entry {
        match self {
            Accepted::New(e) | Accepted::Known(e) => e,
            Accepted::Conflict { known, .. } => known,
        }
    }
}

/// Accepts `task` given what the ledger holds under its id.
pub fn accept(existing: Option<Entry>, task: Task, seq: u64, now: i64) -> Accepted {
    match existing {
        None => Accepted::New(Entry::queued(task, seq, now)),
        Some(known) if known.task == task => Accepted::Known(known),
        Some(known) => Accepted::Conflict {
            known,
            offered: task,
        },
    }
}

/// What happens to a task after it is accepted.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// A coordinator hands it to the backend.
    Start,
    /// Its run ended: the report is final.
    Finish(Box<TaskReport>),
    /// A shutdown cut its run short before it finished: it runs again later.
    Requeue,
    /// Every sink has its report.
    Published,
}

impl Transition {
    fn name(&self) -> &'static str {
        match self {
            Transition::Start => "start",
            Transition::Finish(_) => "finish",
            Transition::Requeue => "requeue",
            Transition::Published => "mark published",
        }
    }
}

/// A transition the entry's state does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("task {task_id:?}: cannot {transition} a task that is {state}")]
pub struct TransitionError {
    pub task_id: String,
    pub transition: &'static str,
    pub state: &'static str,
}

/// The entry after `t`, or why `t` is not allowed now.
pub fn apply(mut entry: Entry, t: Transition, now: i64) -> Result<Entry, TransitionError> {
    let refuse = |e: &Entry, t: &Transition| TransitionError {
        task_id: e.task_id.clone(),
        transition: t.name(),
        state: match (e.state, e.published) {
            (Phase::Done, true) => "done and published",
            (s, _) => s.as_str(),
        },
    };
    match (entry.state, &t) {
        (Phase::Queued, Transition::Start) => {
            entry.state = Phase::Running;
            entry.attempts = entry.attempts.saturating_add(1);
            entry.started_at = Some(now);
        }
        (Phase::Running, Transition::Finish(report)) if report.task == entry.task => {
            entry.state = Phase::Done;
            entry.status = Some(report.status);
            // The report counts the backend's retries too; never fewer than the starts.
            entry.attempts = entry.attempts.max(report.attempts);
            entry.finished_at = Some(now);
            let Transition::Finish(report) = t else {
                unreachable!("matched above")
            };
            entry.report = Some(*report);
        }
        (Phase::Running, Transition::Requeue) => {
            entry.state = Phase::Queued;
            entry.started_at = None;
        }
        (Phase::Done, Transition::Published) if !entry.published => {
            entry.published = true;
        }
        _ => return Err(refuse(&entry, &t)),
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn task(id: &str) -> Task {
        Task {
            entry: Some("main".into()),
            ..Task::example(id)
        }
    }

    fn report(t: &Task, attempts: u32) -> Box<TaskReport> {
        let mut r = TaskReport::new(t, ReportStatus::OK);
        r.attempts = attempts;
        Box::new(r)
    }

    #[test]
    fn a_task_goes_queued_running_done_published() {
        let t = task("a");
        let Accepted::New(e) = accept(None, t.clone(), 7, 100) else {
            panic!("new")
        };
        assert_eq!((e.state, e.seq, e.attempts), (Phase::Queued, 7, 0));
        let e = apply(e, Transition::Start, 110).unwrap();
        assert_eq!(
            (e.state, e.attempts, e.started_at),
            (Phase::Running, 1, Some(110))
        );
        let e = apply(e, Transition::Finish(report(&t, 3)), 120).unwrap();
        assert_eq!(
            (e.state, e.status, e.attempts, e.finished_at),
            (Phase::Done, Some(ReportStatus::OK), 3, Some(120))
        );
        assert!(!e.published);
        let e = apply(e, Transition::Published, 130).unwrap();
        assert!(e.published);
        assert_eq!(e.report.as_ref().unwrap().task, t);
    }

    #[test]
    fn accepting_a_known_id_changes_nothing_and_a_different_task_conflicts() {
        let t = task("a");
        let Accepted::New(e) = accept(None, t.clone(), 1, 0) else {
            panic!()
        };
        let running = apply(e, Transition::Start, 5).unwrap();
        assert_eq!(
            accept(Some(running.clone()), t.clone(), 2, 9),
            Accepted::Known(running.clone())
        );
        let mut other = t.clone();
        other.entry = Some("other".into());
        assert!(matches!(
            accept(Some(running.clone()), other, 2, 9),
            Accepted::Conflict { known, .. } if known == running
        ));
    }

    #[test]
    fn a_requeued_task_starts_again_and_counts_the_attempt() {
        let t = task("a");
        let e = Entry::queued(t, 1, 0);
        let e = apply(e, Transition::Start, 1).unwrap();
        let e = apply(e, Transition::Requeue, 2).unwrap();
        assert_eq!((e.state, e.started_at), (Phase::Queued, None));
        let e = apply(e, Transition::Start, 3).unwrap();
        assert_eq!(e.attempts, 2);
    }

    #[test]
    fn a_report_for_another_task_is_refused() {
        let e = apply(Entry::queued(task("a"), 1, 0), Transition::Start, 1).unwrap();
        let err = apply(e, Transition::Finish(report(&task("b"), 1)), 2).unwrap_err();
        assert_eq!(err.transition, "finish");
    }

    fn transition() -> impl Strategy<Value = Transition> {
        prop_oneof![
            Just(Transition::Start),
            (0u32..5).prop_map(|n| Transition::Finish(report(&task("a"), n))),
            Just(Transition::Requeue),
            Just(Transition::Published),
        ]
    }

    proptest! {
        /// Whatever sequence of transitions is tried: a finished task never changes again
        /// but to be published once, attempts never go down, and a refused transition
        /// leaves the entry as it was (the caller keeps the old one).
        #[test]
        fn done_is_final_and_attempts_only_grow(ts in proptest::collection::vec(transition(), 0..40)) {
            let mut e = Entry::queued(task("a"), 1, 0);
            let mut now = 0;
            for t in ts {
                now += 1;
                let before = e.clone();
                match apply(e.clone(), t.clone(), now) {
                    Ok(next) => {
                        prop_assert!(next.attempts >= before.attempts);
                        if before.state == Phase::Done {
                            prop_assert_eq!(&t, &Transition::Published);
                            prop_assert!(!before.published && next.published);
                            prop_assert_eq!(&next.report, &before.report);
                        }
                        if next.state == Phase::Done {
                            prop_assert!(next.report.is_some() && next.status.is_some());
                        }
                        e = next;
                    }
                    Err(err) => {
                        prop_assert_eq!(err.task_id.as_str(), "a");
                        prop_assert_eq!(&e, &before);
                    }
                }
            }
        }
    }
}
