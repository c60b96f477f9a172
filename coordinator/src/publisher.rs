//! Publishing: every report to every sink, once each, and never lost to a sink that fails.
//!
//! What each sink has is recorded in the ledger ([`Publisher::take_delivered`] hands the
//! reconciler what to record), so a restarted coordinator sends each sink only what it
//! lacks; [`Publisher::reconcile`] first asks each sink which of those it has after all
//! (the results file is read back: a report written just before a crash is not written
//! twice).
//!
//! A sink that fails keeps its reports, in order, in a backlog, and is retried with backoff
//! ([`RETRY_FIRST`] doubling to [`RETRY_MAX`]); later reports queue behind the backlog so
//! the sink still sees them in order. A report is *published* only when every sink has it:
//! only then may the backend let go of what the task holds (the Kubernetes backend keeps
//! the Job, so a coordinator that exits with reports unpublished leaves them to the next
//! one). While a sink fails, `/readyz` says so ([`PublishHealth`]) and the metrics count
//! it; reports still unpublished when the run ends make it fail (exit code 1), and each is
//! logged whole, so none is lost from sight.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tracing::{error, warn};

use crate::metrics::Metrics;
use crate::sink::{ResultSink, Sent};
use crate::task::TaskReport;

/// The first wait before a failed sink is tried again.
pub const RETRY_FIRST: Duration = Duration::from_millis(500);
/// The longest wait between tries of a failing sink.
pub const RETRY_MAX: Duration = Duration::from_secs(30);

/// How each sink is doing, for `/readyz`.
#[derive(Debug, Default)]
pub struct PublishHealth {
    failing: Mutex<BTreeMap<String, (usize, String)>>,
}

impl PublishHealth {
    fn set(&self, sink: &str, waiting: usize, error: Option<String>) {
        let mut failing = self
            .failing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match error {
            Some(e) if waiting > 0 => {
                failing.insert(sink.to_owned(), (waiting, e));
            }
            _ => {
                failing.remove(sink);
            }
        }
    }

    /// One line per failing sink: its name, the reports waiting for it, its last error.
    pub fn problems(&self) -> Vec<String> {
        self.failing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(sink, (waiting, e))| {
                format!("results cannot be published to {sink} ({waiting} waiting): {e}")
            })
            .collect()
    }
}

struct Slot {
    sink: Box<dyn ResultSink>,
    name: String,
    backlog: VecDeque<Arc<TaskReport>>,
    /// Sent, and not yet confirmed by the sink ([`Sent::Pending`]).
    in_flight: HashMap<String, Arc<TaskReport>>,
    retry_at: Option<Instant>,
    backoff: Duration,
    last_error: Option<String>,
}

pub struct Publisher {
    slots: Vec<Slot>,
    /// Task id → how many sinks do not have its report yet, and the report.
    missing: HashMap<String, (usize, Arc<TaskReport>)>,
    /// (sink index, task id) of every write since the last [`Publisher::take_delivered`].
    delivered: Vec<(usize, String)>,
    health: Arc<PublishHealth>,
    metrics: Option<Arc<crate::reconciler::Observers>>,
    /// Woken by a sink whose pending send ended: see [`Publisher::collect_completed`].
    waker: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field(
                "sinks",
                &self.slots.iter().map(|s| &s.name).collect::<Vec<_>>(),
            )
            .field("unpublished", &self.missing.len())
            .finish()
    }
}

impl Publisher {
    pub fn new(sinks: Vec<Box<dyn ResultSink>>, health: Arc<PublishHealth>) -> Self {
        let waker = Arc::new(tokio::sync::Notify::new());
        let slots = sinks
            .into_iter()
            .map(|mut sink| {
                sink.set_waker(waker.clone());
                sink
            })
            .map(|sink| Slot {
                name: sink.name(),
                sink,
                backlog: VecDeque::new(),
                in_flight: HashMap::new(),
                retry_at: None,
                backoff: RETRY_FIRST,
                last_error: None,
            })
            .collect();
        Self {
            slots,
            missing: HashMap::new(),
            delivered: Vec::new(),
            health,
            metrics: None,
            waker,
        }
    }

    /// Resolves when a sink's pending send may have ended.
    pub fn waker(&self) -> Arc<tokio::sync::Notify> {
        self.waker.clone()
    }

    /// Takes what the sinks' pending sends ended with: a delivered report counts as written
    /// (see [`Publisher::take_delivered`]); a failed one goes back to the front of its
    /// sink's backlog, retried with backoff. Returns the reports now published everywhere.
    pub fn collect_completed(&mut self) -> Vec<Arc<TaskReport>> {
        for i in 0..self.slots.len() {
            let ended = self.slots[i].sink.completed();
            if ended.is_empty() {
                continue;
            }
            for (task_id, outcome) in ended {
                let Some(report) = self.slots[i].in_flight.remove(&task_id) else {
                    continue;
                };
                match outcome {
                    Ok(()) => self.delivered_to(i, &task_id),
                    Err(e) => {
                        self.failed(i, &task_id, e.to_string());
                        self.slots[i].backlog.push_front(report);
                    }
                }
            }
            if self.slots[i].backlog.is_empty() {
                self.recovered(i);
            }
            self.show(i);
        }
        self.take_published()
    }

    /// Sends that a sink has started and not yet confirmed.
    pub fn in_flight(&self) -> usize {
        self.slots.iter().map(|s| s.in_flight.len()).sum()
    }

    /// Counts failures and waiting reports in these observers' metrics.
    pub fn with_metrics(mut self, observers: Arc<crate::reconciler::Observers>) -> Self {
        self.metrics = Some(observers);
        self
    }

    fn metrics(&self) -> Option<&Metrics> {
        self.metrics.as_ref().map(|o| &o.metrics)
    }

    /// Every sink's name, as the ledger records deliveries.
    pub fn sink_names(&self) -> Vec<String> {
        self.slots.iter().map(|s| s.name.clone()).collect()
    }

    /// Asks each sink which of the reports it lacks by the ledger (`unpublished`, in the
    /// order they are to be written) it has after all. Returns (sink, task ids) to record.
    pub fn reconcile(
        &mut self,
        unpublished: &[crate::ledger::Unpublished],
    ) -> Vec<(String, Vec<String>)> {
        let mut found = Vec::new();
        for slot in &mut self.slots {
            let candidates: Vec<String> = unpublished
                .iter()
                .filter(|u| !u.delivered.contains(&slot.name))
                .map(|u| u.report.task.task_id.clone())
                .collect();
            match slot.sink.reconcile(&candidates) {
                Ok(ids) if !ids.is_empty() => found.push((slot.name.clone(), ids)),
                Ok(_) => {}
                Err(e) => {
                    warn!(sink = %slot.name, "{e}; the reports it lacks by the ledger are written again")
                }
            }
        }
        found
    }

    /// The writes since the last call, by sink name, for the ledger.
    pub fn take_delivered(&mut self) -> Vec<(String, Vec<String>)> {
        let mut by_sink: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for (i, id) in self.delivered.drain(..) {
            by_sink.entry(i).or_default().push(id);
        }
        by_sink
            .into_iter()
            .map(|(i, ids)| (self.slots[i].name.clone(), ids))
            .collect()
    }

    /// Offers `report` to every sink but those in `have` (they have it already); returns
    /// it if every sink has it now.
    pub fn publish(&mut self, report: TaskReport, have: &[String]) -> Option<Arc<TaskReport>> {
        let report = Arc::new(report);
        let lacking: Vec<usize> = (0..self.slots.len())
            .filter(|i| !have.contains(&self.slots[*i].name))
            .collect();
        self.missing
            .insert(report.task.task_id.clone(), (lacking.len(), report.clone()));
        for i in lacking {
            self.slots[i].backlog.push_back(report.clone());
            // A sink with a backlog waits for its retry time: the new report queues behind.
            if self.slots[i].retry_at.is_none() {
                self.flush(i);
            } else {
                self.show(i);
            }
        }
        self.take_published().into_iter().next()
    }

    /// Retries every sink whose time has come; returns the reports now published
    /// everywhere.
    pub fn retry_due(&mut self) -> Vec<Arc<TaskReport>> {
        let now = Instant::now();
        for i in 0..self.slots.len() {
            if self.slots[i].retry_at.is_some_and(|t| t <= now) {
                self.flush(i);
            }
        }
        self.take_published()
    }

    /// Retries every failing sink now, whatever its backoff (the last tries at the end).
    pub fn retry_now(&mut self) -> Vec<Arc<TaskReport>> {
        for i in 0..self.slots.len() {
            if !self.slots[i].backlog.is_empty() {
                self.flush(i);
            }
        }
        self.take_published()
    }

    /// When the next retry is due, if any sink is failing.
    pub fn next_retry(&self) -> Option<Instant> {
        self.slots.iter().filter_map(|s| s.retry_at).min()
    }

    /// Reports that some sink does not have yet.
    pub fn unpublished(&self) -> usize {
        self.missing.len()
    }

    /// Gives up on what is still waiting: logs each report whole (so it is not lost from
    /// sight) with the sinks that lack it, and returns how many there were.
    pub fn give_up(&mut self) -> usize {
        let mut lacking: BTreeMap<String, (Arc<TaskReport>, Vec<String>)> = BTreeMap::new();
        for slot in &mut self.slots {
            let in_flight: Vec<Arc<TaskReport>> = slot.in_flight.drain().map(|(_, r)| r).collect();
            for r in slot.backlog.drain(..).chain(in_flight) {
                lacking
                    .entry(r.task.task_id.clone())
                    .or_insert_with(|| (r.clone(), Vec::new()))
                    .1
                    .push(slot.name.clone());
            }
        }
        for (task_id, (report, sinks)) in &lacking {
            let json = serde_json::to_string(&**report).unwrap_or_default();
            error!(task_id = %task_id, "this result was not published to {}: {json}", sinks.join(", "));
        }
        self.missing.clear();
        lacking.len()
    }

    /// Writes sink `i`'s backlog in order until it is empty or a write fails.
    fn flush(&mut self, i: usize) {
        while let Some(report) = self.slots[i].backlog.front().cloned() {
            let task_id = report.task.task_id.clone();
            match self.slots[i].sink.publish(&report) {
                Ok(Sent::Done) => {
                    self.slots[i].backlog.pop_front();
                    self.delivered_to(i, &task_id);
                }
                Ok(Sent::Pending) => {
                    self.slots[i].backlog.pop_front();
                    self.slots[i].in_flight.insert(task_id, report);
                }
                Err(e) => {
                    self.failed(i, &task_id, e.to_string());
                    break;
                }
            }
        }
        if self.slots[i].backlog.is_empty() {
            self.recovered(i);
        }
        self.show(i);
    }

    /// Sink `i` has the report of `task_id`.
    fn delivered_to(&mut self, i: usize, task_id: &str) {
        self.delivered.push((i, task_id.to_owned()));
        if let Some((n, _)) = self.missing.get_mut(task_id) {
            *n = n.saturating_sub(1);
        }
    }

    /// Sink `i` failed on `task_id`'s report: it is tried again after the backoff.
    fn failed(&mut self, i: usize, task_id: &str, message: String) {
        let slot = &mut self.slots[i];
        warn!(task_id = %task_id, sink = %slot.name, "{message}; kept, retrying in {:.1} s", slot.backoff.as_secs_f64());
        if let Some(m) = self.metrics.as_ref().map(|o| &o.metrics) {
            m.publish_failed(&slot.name);
        }
        slot.retry_at = Some(Instant::now() + slot.backoff);
        slot.backoff = (slot.backoff * 2).min(RETRY_MAX);
        slot.last_error = Some(message);
    }

    /// Sink `i` has nothing waiting to be retried.
    fn recovered(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        slot.retry_at = None;
        slot.backoff = RETRY_FIRST;
        slot.last_error = None;
    }

    /// Makes sink `i`'s state visible to `/readyz` and the metrics.
    fn show(&self, i: usize) {
        let slot = &self.slots[i];
        let waiting = slot.backlog.len() + slot.in_flight.len();
        self.health
            .set(&slot.name, waiting, slot.last_error.clone());
        if let Some(m) = self.metrics() {
            m.unpublished(&slot.name, waiting);
        }
    }

    /// Reports that every sink has now, forgotten here.
    fn take_published(&mut self) -> Vec<Arc<TaskReport>> {
        let done: Vec<String> = self
            .missing
            .iter()
            .filter(|(_, (n, _))| *n == 0)
            .map(|(id, _)| id.clone())
            .collect();
        done.into_iter()
            .filter_map(|id| self.missing.remove(&id).map(|(_, r)| r))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::SinkError;
    use crate::task::{ReportStatus, Task};

    /// A sink that fails while `broken` is set, and records what it got.
    struct Flaky {
        name: &'static str,
        broken: Arc<Mutex<bool>>,
        got: Arc<Mutex<Vec<String>>>,
    }

    impl ResultSink for Flaky {
        fn name(&self) -> String {
            self.name.into()
        }
        fn publish(&mut self, r: &TaskReport) -> Result<Sent, SinkError> {
            if *self.broken.lock().unwrap() {
                return Err(SinkError::Write {
                    task_id: r.task.task_id.clone(),
                    target: "flaky".into(),
                    source: std::io::Error::other("disk full"),
                });
            }
            self.got.lock().unwrap().push(r.task.task_id.clone());
            Ok(Sent::Done)
        }
    }

    fn report(id: &str) -> TaskReport {
        let task = Task {
            task_id: id.into(),
            wasm_cid: "Qm".into(),
            input_cid: None,
            entry: None,
            limits: Default::default(),
            invalid: None,
            deterministic: false,
        };
        TaskReport::new(&task, ReportStatus::OK)
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_sink_keeps_its_reports_in_order_and_gets_them_later() {
        let broken = Arc::new(Mutex::new(true));
        let flaky_got = Arc::new(Mutex::new(Vec::new()));
        let good_got = Arc::new(Mutex::new(Vec::new()));
        let health = Arc::new(PublishHealth::default());
        let mut p = Publisher::new(
            vec![
                Box::new(Flaky {
                    name: "good",
                    broken: Arc::new(Mutex::new(false)),
                    got: good_got.clone(),
                }),
                Box::new(Flaky {
                    name: "flaky",
                    broken: broken.clone(),
                    got: flaky_got.clone(),
                }),
            ],
            health.clone(),
        );
        assert!(p.publish(report("a"), &[]).is_none(), "one sink lacks it");
        assert!(p.publish(report("b"), &[]).is_none());
        assert_eq!(p.unpublished(), 2);
        assert_eq!(*good_got.lock().unwrap(), vec!["a", "b"]);
        assert!(
            health.problems()[0].contains("2 waiting"),
            "{:?}",
            health.problems()
        );
        // Not due yet: nothing is retried.
        assert!(p.retry_due().is_empty());
        *broken.lock().unwrap() = false;
        tokio::time::advance(RETRY_FIRST).await;
        let done: Vec<String> = p
            .retry_due()
            .iter()
            .map(|r| r.task.task_id.clone())
            .collect();
        assert_eq!(done.len(), 2);
        assert_eq!(*flaky_got.lock().unwrap(), vec!["a", "b"], "in order");
        assert!(health.problems().is_empty());
        assert_eq!(p.unpublished(), 0);
        assert!(
            p.publish(report("c"), &[]).is_some(),
            "every sink has it at once"
        );
    }

    /// A sink that answers later: each send pends until the test ends it.
    struct Later {
        waker: Option<Arc<tokio::sync::Notify>>,
        ended: Arc<Mutex<Vec<(String, bool)>>>,
        sent: Arc<Mutex<Vec<String>>>,
    }

    impl ResultSink for Later {
        fn name(&self) -> String {
            "later".into()
        }
        fn set_waker(&mut self, waker: Arc<tokio::sync::Notify>) {
            self.waker = Some(waker);
        }
        fn publish(&mut self, r: &TaskReport) -> Result<Sent, SinkError> {
            self.sent.lock().unwrap().push(r.task.task_id.clone());
            Ok(Sent::Pending)
        }
        fn completed(&mut self) -> Vec<(String, Result<(), SinkError>)> {
            self.ended
                .lock()
                .unwrap()
                .drain(..)
                .map(|(id, ok)| {
                    let outcome = if ok {
                        Ok(())
                    } else {
                        Err(SinkError::Post {
                            task_id: id.clone(),
                            target: "later".into(),
                            reason: "reverted".into(),
                        })
                    };
                    (id, outcome)
                })
                .collect()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_pending_send_counts_only_when_it_ends_well_and_a_failed_one_is_sent_again() {
        let ended = Arc::new(Mutex::new(Vec::new()));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let health = Arc::new(PublishHealth::default());
        let mut p = Publisher::new(
            vec![Box::new(Later {
                waker: None,
                ended: ended.clone(),
                sent: sent.clone(),
            })],
            health.clone(),
        );
        let waker = p.waker();
        assert!(
            p.publish(report("a"), &[]).is_none(),
            "pending is not published"
        );
        assert!(p.publish(report("b"), &[]).is_none());
        assert_eq!((p.unpublished(), p.in_flight()), (2, 2));
        assert!(p.take_delivered().is_empty(), "nothing to record yet");
        assert!(health.problems().is_empty(), "pending is not failing");

        ended
            .lock()
            .unwrap()
            .extend([("a".to_string(), true), ("b".to_string(), false)]);
        waker.notify_one();
        let done: Vec<String> = p
            .collect_completed()
            .iter()
            .map(|r| r.task.task_id.clone())
            .collect();
        assert_eq!(done, vec!["a"]);
        assert_eq!(
            p.take_delivered(),
            vec![("later".to_string(), vec!["a".to_string()])]
        );
        assert_eq!((p.unpublished(), p.in_flight()), (1, 0));
        assert!(
            health.problems()[0].contains("reverted"),
            "{:?}",
            health.problems()
        );

        // The failed one is sent again once its backoff is over, and counts when it ends.
        tokio::time::advance(RETRY_FIRST).await;
        p.retry_due();
        assert_eq!(*sent.lock().unwrap(), vec!["a", "b", "b"]);
        ended.lock().unwrap().push(("b".to_string(), true));
        let done = p.collect_completed();
        assert_eq!(done.len(), 1);
        assert_eq!(p.unpublished(), 0);
        assert!(health.problems().is_empty());
        // An ending the publisher did not ask for (a duplicate) changes nothing.
        ended.lock().unwrap().push(("b".to_string(), true));
        assert!(p.collect_completed().is_empty());
        assert!(p
            .take_delivered()
            .iter()
            .all(|(_, ids)| ids == &vec!["b".to_string()]));
    }

    #[tokio::test(start_paused = true)]
    async fn what_cannot_be_published_is_counted_at_the_end() {
        let mut p = Publisher::new(
            vec![Box::new(Flaky {
                name: "broken",
                broken: Arc::new(Mutex::new(true)),
                got: Arc::default(),
            })],
            Arc::default(),
        );
        p.publish(report("a"), &[]);
        p.publish(report("b"), &[]);
        assert!(p.retry_now().is_empty());
        assert_eq!(p.give_up(), 2);
        assert_eq!(p.unpublished(), 0);
    }
}
