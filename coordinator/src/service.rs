//! The service loop: takes tasks from the source at most `concurrency` at a time, runs each
//! through the backend with bounded retries for infrastructure failures only, publishes
//! every report to every sink (through the [`Publisher`], which keeps and retries what a
//! failing sink could not take), and on shutdown stops intake, gives running tasks a grace
//! period, and reports the rest as interrupted.
//!
//! Each task id runs at most once per run: a duplicate from the source is skipped. A task
//! publishes its own report as the last thing it does (no await point after it), so a task
//! cancelled at shutdown either has published or is reported interrupted, never both.
//!
//! With a backend that hands tasks over ([`Backend::hands_over`]: a Job runs on without the
//! coordinator), a task still running at shutdown is not reported: the next coordinator
//! adopts it and publishes its result. The backend releases an attempt (deletes its Job)
//! only after its report was published, or before a retry.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tracing::{error, info, info_span, warn, Instrument};

use crate::backend::Backend;
use crate::metrics::Metrics;
use crate::publisher::{PublishHealth, Publisher};
use crate::sink::ResultSink;
use crate::source::TaskSource;
use crate::store::TaskStore;
use crate::task::{ReportStatus, Task, TaskReport};

#[derive(Debug, Clone)]
pub struct ServiceSettings {
    pub concurrency: usize,
    pub retries: u32,
    pub retry_backoff: Duration,
    pub grace_period: Duration,
    /// Exit when the source is drained, instead of waiting for a signal.
    pub once: bool,
}

/// What the HTTP listener reads: metrics, the task store and how publishing goes, fed by
/// the service.
#[derive(Debug, Default)]
pub struct Observers {
    pub metrics: Metrics,
    pub store: TaskStore,
    pub publishing: Arc<PublishHealth>,
}

/// Counts of finished tasks by status, and what went wrong around them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub by_status: BTreeMap<&'static str, u64>,
    pub total: u64,
    pub ok: u64,
    pub infrastructure_failures: u64,
    /// Reports that some sink never took (each was logged whole).
    pub unpublished: u64,
    /// Task sources that broke (could not be read to their end).
    pub source_failures: u64,
    /// Entries a source skipped as bad (a task file's bad lines).
    pub skipped: u64,
}

impl Summary {
    fn add(&mut self, r: &TaskReport) {
        *self.by_status.entry(r.status.as_str()).or_default() += 1;
        self.total += 1;
        if r.status == ReportStatus::OK {
            self.ok += 1;
        }
        if r.status.is_infrastructure_failure() {
            self.infrastructure_failures += 1;
        }
    }

    /// True when the run failed as a whole: an infrastructure failure, a result not
    /// published, or a source that broke (the exit code is then 1).
    pub fn failed(&self) -> bool {
        self.infrastructure_failures > 0 || self.unpublished > 0 || self.source_failures > 0
    }

    /// `total=3 ok=2 failed=1 infrastructure_failed=0 (trap=1)`, then any unpublished
    /// results, broken sources and skipped lines.
    pub fn line(&self) -> String {
        let detail: Vec<String> = self
            .by_status
            .iter()
            .filter(|(s, _)| **s != "ok")
            .map(|(s, n)| format!("{s}={n}"))
            .collect();
        let mut line = format!(
            "total={} ok={} failed={} infrastructure_failed={}{}",
            self.total,
            self.ok,
            self.total - self.ok,
            self.infrastructure_failures,
            if detail.is_empty() {
                String::new()
            } else {
                format!(" ({})", detail.join(" "))
            }
        );
        for (name, n) in [
            ("unpublished", self.unpublished),
            ("source_failures", self.source_failures),
            ("skipped_lines", self.skipped),
        ] {
            if n > 0 {
                line.push_str(&format!(" {name}={n}"));
            }
        }
        line
    }
}

/// Resolves with a stop more urgent than `current`: any stop while running, [`Stop::Now`]
/// during a graceful one (the Lease was lost meanwhile).
async fn escalated(shutdown: &mut watch::Receiver<Stop>, current: Option<Stop>) -> Stop {
    loop {
        let asked = *shutdown.borrow_and_update();
        let more_urgent = match current {
            None => asked != Stop::No,
            Some(Stop::Graceful) => asked == Stop::Now,
            Some(_) => false,
        };
        if more_urgent {
            return asked;
        }
        if shutdown.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The id of a joined task, whether it finished or was cancelled.
fn joined_id(done: &Result<(tokio::task::Id, ()), tokio::task::JoinError>) -> tokio::task::Id {
    match done {
        Ok((id, ())) => *id,
        Err(e) => e.id(),
    }
}

/// What the service is told to do through its shutdown channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Keep going.
    No,
    /// Take no new task; running tasks get the grace period (SIGTERM, SIGINT).
    Graceful,
    /// Take no new task and stop running ones at once (this replica lost its lease: the new
    /// leader adopts the running Jobs).
    Now,
}

/// Resolves once a stop is asked for, with which; never if the sender is gone silently.
async fn stopped(shutdown: &mut watch::Receiver<Stop>) -> Stop {
    loop {
        let now = *shutdown.borrow_and_update();
        if now != Stop::No {
            return now;
        }
        if shutdown.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

pub async fn serve(
    settings: ServiceSettings,
    mut source: Box<dyn TaskSource>,
    sinks: Vec<Box<dyn ResultSink>>,
    backend: Arc<dyn Backend>,
    mut shutdown: watch::Receiver<Stop>,
    observers: Arc<Observers>,
) -> Summary {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Task, TaskReport)>();
    let published = observers.clone();
    let releaser = backend.clone();
    let final_grace = settings.grace_period;
    let publisher = tokio::spawn(async move {
        let mut summary = Summary::default();
        let mut publisher =
            Publisher::new(sinks, published.publishing.clone()).with_metrics(published.clone());
        // Only once every sink has a report may the backend let go of the task (its Job).
        let release = |reports: Vec<Arc<TaskReport>>| {
            let releaser = releaser.clone();
            async move {
                for r in reports {
                    releaser
                        .release(&r.task, Some(&r))
                        .instrument(info_span!("task", task_id = %r.task.task_id))
                        .await;
                }
            }
        };
        loop {
            let next_retry = publisher.next_retry();
            let received = tokio::select! {
                r = rx.recv() => r,
                () = sleep_until_some(next_retry), if next_retry.is_some() => {
                    release(publisher.retry_due()).await;
                    continue;
                }
            };
            let Some((_task, report)) = received else {
                break;
            };
            published.metrics.published(report.status);
            published.store.done(&report);
            info!(task_id = %report.task.task_id, status = report.status.as_str(), attempts = report.attempts, "{}", report.describe());
            summary.add(&report);
            if let Some(done) = publisher.publish(report) {
                release(vec![done]).await;
            }
        }
        // Every task has finished: the sinks still failing get until the end of the grace
        // period, then what they lack is logged whole and counted.
        let until = tokio::time::Instant::now() + final_grace;
        while publisher.unpublished() > 0 {
            match publisher.next_retry() {
                Some(at) if at <= until => {
                    tokio::time::sleep_until(at).await;
                    release(publisher.retry_due()).await;
                }
                _ => {
                    release(publisher.retry_now()).await;
                    break;
                }
            }
        }
        summary.unpublished = publisher.give_up() as u64;
        summary
    });

    let permits = Arc::new(Semaphore::new(settings.concurrency));
    let mut running: JoinSet<()> = JoinSet::new();
    // Each running task, with a count of its attempts that survives its cancellation.
    let mut in_flight: HashMap<tokio::task::Id, (Task, Arc<AtomicU32>)> = HashMap::new();
    let mut seen = HashSet::new();
    let mut source_failures = 0u64;

    let mut stopping = loop {
        while let Some(done) = running.try_join_next_with_id() {
            in_flight.remove(&joined_id(&done));
        }
        let permit = tokio::select! {
            biased;
            how = stopped(&mut shutdown) => break Some(how),
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break Some(Stop::Graceful),
            },
        };
        let next = tokio::select! {
            biased;
            how = stopped(&mut shutdown) => break Some(how),
            t = source.next_task() => t,
        };
        let task = match next {
            Ok(Some(task)) => task,
            Ok(None) => break None,
            Err(e) => {
                // That source is drained now; the others (the task API) go on.
                error!("{e}");
                source_failures += 1;
                continue;
            }
        };
        if !seen.insert(task.task_id.clone()) {
            warn!(task_id = %task.task_id, "a task with this id already ran in this run; skipping the duplicate");
            continue;
        }
        let span = info_span!("task", task_id = %task.task_id);
        let attempts = Arc::new(AtomicU32::new(0));
        let work = run_task(
            task.clone(),
            backend.clone(),
            settings.clone(),
            tx.clone(),
            attempts.clone(),
            observers.clone(),
        );
        let handle = running.spawn(
            async move {
                let _permit = permit;
                work.await;
            }
            .instrument(span),
        );
        in_flight.insert(handle.id(), (task, attempts));
    };

    if stopping.is_none() {
        info!("the task source is drained");
        if !settings.once {
            info!("waiting for a signal (SIGTERM/SIGINT) to stop; use --once to exit when done");
            // Running tasks go on meanwhile; finished ones are reaped below.
            stopping = Some(stopped(&mut shutdown).await);
        }
    }
    let grace = |how: Stop| {
        if how == Stop::Now {
            Duration::ZERO
        } else {
            settings.grace_period
        }
    };
    let mut deadline = tokio::time::Instant::now() + stopping.map_or(Duration::ZERO, grace);
    if stopping.is_some() {
        info!(
            grace_period_sec = (deadline - tokio::time::Instant::now()).as_secs_f64(),
            running = running.len(),
            "stopping: no new tasks; letting running tasks finish"
        );
    }
    loop {
        let joined = tokio::select! {
            j = running.join_next_with_id() => j,
            () = tokio::time::sleep_until(deadline), if stopping.is_some() => break,
            // A stop while running; or a graceful stop turned urgent, which ends the grace.
            how = escalated(&mut shutdown, stopping), if stopping != Some(Stop::Now) => {
                stopping = Some(how);
                deadline = tokio::time::Instant::now() + grace(how);
                info!(running = running.len(), "stopping: letting running tasks finish");
                continue;
            }
        };
        match joined {
            None => break,
            Some(done) => {
                in_flight.remove(&joined_id(&done));
            }
        }
    }
    running.abort_all();
    let hands_over = backend.hands_over();
    while let Some(done) = running.join_next_with_id().await {
        match done {
            // It finished (and published) before the abort reached it.
            Ok((id, ())) => {
                in_flight.remove(&id);
            }
            Err(e) => {
                if let Some((task, attempts)) = in_flight.remove(&e.id()) {
                    if hands_over {
                        warn!(task_id = %task.task_id, "still running at shutdown: left to its Job, which the next coordinator adopts");
                        continue;
                    }
                    warn!(task_id = %task.task_id, "interrupted by shutdown");
                    let mut report = TaskReport::new(&task, ReportStatus::Interrupted);
                    report.attempts = attempts.load(Ordering::SeqCst);
                    report.error = Some(format!(
                        "the coordinator shut down and the task did not finish within the grace period of {} s",
                        settings.grace_period.as_secs_f64()
                    ));
                    let _ = tx.send((task, report));
                }
            }
        }
    }
    drop(tx);
    let mut summary = publisher.await.unwrap_or_default();
    summary.source_failures = source_failures;
    summary.skipped = source.skipped();
    summary
}

/// Sleeps until `at`; never returns for `None` (the caller guards the branch).
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Runs one task with bounded retries for infrastructure failures, then publishes it.
async fn run_task(
    task: Task,
    backend: Arc<dyn Backend>,
    settings: ServiceSettings,
    tx: mpsc::UnboundedSender<(Task, TaskReport)>,
    started: Arc<AtomicU32>,
    observers: Arc<Observers>,
) {
    let _flight = observers.metrics.in_flight();
    observers.store.running(&task);
    let began = std::time::Instant::now();
    let mut attempts = 0u32;
    let outcome = loop {
        attempts += 1;
        started.store(attempts, Ordering::SeqCst);
        info!(attempt = attempts, wasm_cid = %task.wasm_cid, "starting");
        let outcome = backend.run(&task).await;
        for (stage, took) in &outcome.stages {
            observers.metrics.stage(*stage, *took);
        }
        if let Some(kind) = outcome.failure {
            observers.metrics.backend_error(kind);
        }
        if !(outcome.retryable && attempts <= settings.retries) {
            break outcome;
        }
        observers.metrics.retried();
        // The failed attempt's leftovers (its Job) go before the next attempt starts.
        backend.release(&task, None).await;
        let wait = settings
            .retry_backoff
            .saturating_mul(1 << (attempts - 1).min(16));
        warn!(
            attempt = attempts,
            status = outcome.status.as_str(),
            "infrastructure failure, retrying in {:.1} s: {}",
            wait.as_secs_f64(),
            outcome.error.as_deref().unwrap_or("")
        );
        tokio::time::sleep(wait).await;
    };
    let mut report = TaskReport::new(&task, outcome.status);
    report.stage = outcome.stage;
    report.attempts = attempts;
    report.result = outcome.result;
    report.error = outcome.error;
    observers.metrics.task_took(began.elapsed());
    // The last statement: no await point after the report is handed over.
    let _ = tx.send((task, report));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{AttemptOutcome, FailureKind};
    use crate::task::Stage;
    use runner::Status;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Mutex;

    struct Tasks(Vec<Task>);
    impl TaskSource for Tasks {
        fn next_task(&mut self) -> crate::source::NextTask<'_> {
            let t = if self.0.is_empty() {
                None
            } else {
                Some(self.0.remove(0))
            };
            Box::pin(async move { Ok(t) })
        }
    }

    /// Fails `fail_first` times with the given retryability, then succeeds.
    struct Flaky {
        calls: AtomicU32,
        fail_first: u32,
        retryable: bool,
        delay: Duration,
        hands_over: bool,
        /// `id published` or `id retry`, in order.
        releases: Arc<Mutex<Vec<String>>>,
    }
    impl Flaky {
        fn new(fail_first: u32, retryable: bool, delay: Duration) -> Self {
            Self {
                calls: AtomicU32::new(0),
                fail_first,
                retryable,
                delay,
                hands_over: false,
                releases: Arc::default(),
            }
        }
    }
    impl Backend for Flaky {
        fn release<'a>(
            &'a self,
            t: &'a Task,
            report: Option<&'a TaskReport>,
        ) -> crate::backend::BoxFuture<'a, ()> {
            let what = if report.is_some() {
                "published"
            } else {
                "retry"
            };
            self.releases
                .lock()
                .unwrap()
                .push(format!("{} {what}", t.task_id));
            Box::pin(async {})
        }
        fn hands_over(&self) -> bool {
            self.hands_over
        }
        fn ready(
            &self,
        ) -> crate::backend::BoxFuture<'_, Result<(), Vec<crate::backend::NotReady>>> {
            Box::pin(async { Ok(()) })
        }
        fn run<'a>(
            &'a self,
            _t: &'a Task,
        ) -> Pin<Box<dyn Future<Output = AttemptOutcome> + Send + 'a>> {
            Box::pin(async move {
                tokio::time::sleep(self.delay).await;
                let n = self.calls.fetch_add(1, Ordering::SeqCst);
                if n < self.fail_first && self.retryable {
                    AttemptOutcome::failed(FailureKind::Fetch, Stage::Fetch, "boom".into(), true)
                } else if n < self.fail_first {
                    let mut r = runner::TaskResult::new(None, Status::Trap);
                    r.error = Some("boom".into());
                    AttemptOutcome::from_result(r, Some(2))
                } else {
                    AttemptOutcome::from_result(runner::TaskResult::new(None, Status::Ok), Some(0))
                }
            })
        }
    }

    struct Collect(Arc<Mutex<Vec<TaskReport>>>);
    impl ResultSink for Collect {
        fn name(&self) -> String {
            "collect".into()
        }
        fn publish(&mut self, r: &TaskReport) -> Result<(), crate::sink::SinkError> {
            self.0.lock().unwrap().push(r.clone());
            Ok(())
        }
    }

    fn task(id: &str) -> Task {
        Task {
            task_id: id.into(),
            wasm_cid: "Qm".into(),
            input_cid: None,
            entry: None,
        }
    }

    fn settings(retries: u32) -> ServiceSettings {
        ServiceSettings {
            concurrency: 2,
            retries,
            retry_backoff: Duration::from_millis(1),
            grace_period: Duration::from_millis(50),
            once: true,
        }
    }

    async fn go(
        backend: Flaky,
        tasks: Vec<Task>,
        s: ServiceSettings,
        stop_after: Option<Duration>,
    ) -> (Summary, Vec<TaskReport>) {
        let got = Arc::new(Mutex::new(Vec::new()));
        let (stop_tx, stop_rx) = watch::channel(Stop::No);
        if let Some(after) = stop_after {
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let _ = stop_tx.send(Stop::Graceful);
            });
        } else {
            std::mem::forget(stop_tx);
        }
        let summary = serve(
            s,
            Box::new(Tasks(tasks)),
            vec![Box::new(Collect(got.clone()))],
            Arc::new(backend),
            stop_rx,
            Arc::new(Observers::default()),
        )
        .await;
        let reports = got.lock().unwrap().clone();
        (summary, reports)
    }

    #[tokio::test]
    async fn infrastructure_failures_are_retried_a_bounded_number_of_times() {
        let b = Flaky::new(2, true, Duration::ZERO);
        let releases = b.releases.clone();
        let (summary, reports) = go(b, vec![task("a")], settings(2), None).await;
        assert_eq!(
            (reports[0].status, reports[0].attempts),
            (ReportStatus::OK, 3)
        );
        assert_eq!(
            *releases.lock().unwrap(),
            vec!["a retry", "a retry", "a published"],
            "each failed attempt is released before the next, the last after publishing"
        );
        assert_eq!(summary.ok, 1);
        let b = Flaky::new(5, true, Duration::ZERO);
        let (summary, reports) = go(b, vec![task("a")], settings(1), None).await;
        assert_eq!(
            (reports[0].status, reports[0].attempts),
            (ReportStatus::FetchFailed, 2)
        );
        assert_eq!(summary.infrastructure_failures, 1);
    }

    #[tokio::test]
    async fn task_failures_are_never_retried() {
        let b = Flaky::new(1, false, Duration::ZERO);
        let (summary, reports) = go(b, vec![task("a")], settings(3), None).await;
        assert_eq!(
            (reports[0].status, reports[0].attempts),
            (ReportStatus::Runner(Status::Trap), 1)
        );
        assert_eq!(summary.infrastructure_failures, 0);
        assert!(
            summary
                .line()
                .contains("ok=0 failed=1 infrastructure_failed=0 (trap=1)"),
            "{}",
            summary.line()
        );
    }

    #[tokio::test]
    async fn duplicates_run_once() {
        let b = Flaky::new(0, false, Duration::ZERO);
        let (_, reports) = go(b, vec![task("a"), task("b"), task("a")], settings(0), None).await;
        let mut ids: Vec<_> = reports.iter().map(|r| r.task.task_id.clone()).collect();
        ids.sort();
        assert_eq!(ids, vec!["a", "b"]);
    }

    #[tokio::test]
    async fn shutdown_reports_unfinished_tasks_as_interrupted_exactly_once() {
        let b = Flaky::new(0, false, Duration::from_secs(30));
        let tasks = (0..5).map(|i| task(&format!("t{i}"))).collect();
        let (summary, reports) = go(b, tasks, settings(0), Some(Duration::from_millis(50))).await;
        // Concurrency 2: two were running and are interrupted; the rest were never taken.
        assert_eq!(reports.len(), 2);
        assert!(reports
            .iter()
            .all(|r| r.status == ReportStatus::Interrupted));
        assert_eq!(summary.infrastructure_failures, 2);
    }

    #[tokio::test]
    async fn an_urgent_stop_cuts_a_graceful_one_short() {
        let mut b = Flaky::new(0, false, Duration::from_secs(60));
        b.hands_over = true;
        let mut s = settings(0);
        s.grace_period = Duration::from_secs(60);
        let (stop_tx, stop_rx) = watch::channel(Stop::No);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = stop_tx.send(Stop::Graceful);
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = stop_tx.send(Stop::Now);
            std::future::pending::<()>().await;
        });
        let serving = serve(
            s,
            Box::new(Tasks(vec![task("a")])),
            Vec::new(),
            Arc::new(b),
            stop_rx,
            Arc::new(Observers::default()),
        );
        let summary = tokio::time::timeout(Duration::from_secs(20), serving)
            .await
            .expect("Stop::Now ends the 60 s grace period at once");
        assert_eq!(summary.total, 0);
    }

    #[tokio::test]
    async fn a_backend_that_hands_over_leaves_unfinished_tasks_unreported() {
        let mut b = Flaky::new(0, false, Duration::from_secs(30));
        b.hands_over = true;
        let releases = b.releases.clone();
        let tasks = (0..3).map(|i| task(&format!("t{i}"))).collect();
        let (summary, reports) = go(b, tasks, settings(0), Some(Duration::from_millis(50))).await;
        assert!(reports.is_empty(), "{reports:?}");
        assert_eq!(summary.total, 0);
        assert!(
            releases.lock().unwrap().is_empty(),
            "a handed-over task keeps its Job"
        );
    }
}
