//! The reconciler: the ledger's queued tasks run through the backend, at most
//! `concurrency` at once, and how each ended is recorded; the publisher sends every
//! recorded report to every sink once, and records that it did.
//!
//! A task's path: a source (or `POST /tasks`) → [`Intake`] → the ledger (queued) → here
//! (started: running) → the backend (with bounded retries for infrastructure failures) →
//! the ledger (done, with the report) → [`Backend::release`] (the work dir or Job goes) →
//! the publisher → the ledger (published).
//!
//! A coordinator resumes from the ledger alone: tasks it finds running were left by one
//! that died or handed them over, and go to the backend again, which collects (or waits
//! for) what still runs instead of running it twice; reports recorded but not published
//! are published first. On shutdown, intake stops, running tasks get the grace period,
//! and a task cut short goes back to the queue (it published nothing) — or, with a backend
//! that hands over ([`Backend::hands_over`]: a Job runs on without the coordinator), stays
//! running for the next coordinator to adopt. Nothing accepted is lost.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{error, info, info_span, warn, Instrument};

use crate::backend::Backend;
use crate::ledger::{Accepted, Entry, Ledger, LedgerError, Phase};
use crate::metrics::Metrics;
use crate::publisher::{PublishHealth, Publisher};
use crate::receipt::Signer;
use crate::sink::ResultSink;
use crate::source::{Intake, TaskSource};
use crate::task::{ReportStatus, RunLimits, Task, TaskReport};
use crate::verify::Verdict;

/// How long to wait before trying the ledger again after it failed.
const LEDGER_RETRY: Duration = Duration::from_secs(1);
/// The most tasks a source hands the ledger in one transaction.
const ACCEPT_BATCH: usize = 256;

#[derive(Debug, Clone)]
pub struct Settings {
    pub concurrency: usize,
    pub retries: u32,
    pub retry_backoff: Duration,
    pub grace_period: Duration,
    /// Exit when the source is drained and the ledger holds nothing queued or running,
    /// instead of waiting for a signal.
    pub once: bool,
    /// The backend's maximum limits (a task's own can lower them): part of a cache key.
    pub limits: RunLimits,
    /// Answer deterministic tasks from equal ones done before ([`crate::cache`]).
    pub cache: bool,
    /// The share of tasks run a second time and compared ([`crate::verify`]).
    pub verify_fraction: f64,
    /// Signs every report's receipt (or leaves it unsigned, without a key).
    pub signer: Signer,
}

/// What the HTTP listener reads beside the ledger: metrics and how publishing goes.
#[derive(Debug, Default)]
pub struct Observers {
    pub metrics: Metrics,
    pub publishing: Arc<PublishHealth>,
}

/// Counts of tasks finished in this run by status, and what went wrong around them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub by_status: BTreeMap<&'static str, u64>,
    pub total: u64,
    pub ok: u64,
    pub infrastructure_failures: u64,
    /// Reports that some sink never took (each was logged whole, and stays in the ledger).
    pub unpublished: u64,
    /// Task sources that broke (could not be read to their end).
    pub source_failures: u64,
    /// Entries a source skipped as bad (a task file's bad lines).
    pub skipped: u64,
    /// Tasks a shutdown cut short, back in the queue for the next start.
    pub requeued: u64,
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
    /// results, broken sources, skipped lines and requeued tasks.
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
            ("requeued", self.requeued),
        ] {
            if n > 0 {
                line.push_str(&format!(" {name}={n}"));
            }
        }
        line
    }
}

/// What the reconciler is told to do through its shutdown channel.
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

/// How a running task's future ended.
enum Ended {
    /// Its report is in the ledger and was handed to the publisher.
    Recorded,
    /// Cancelled at shutdown before it finished: nothing was recorded.
    CutShort(String),
}

/// The whole lifecycle: feeds `source` into the ledger, runs what the ledger holds, and
/// publishes what finished, until drained (`once`) or stopped.
pub async fn reconcile(
    settings: Settings,
    source: Box<dyn TaskSource>,
    intake: Arc<Intake>,
    sinks: Vec<Box<dyn ResultSink>>,
    backend: Arc<dyn Backend>,
    mut shutdown: watch::Receiver<Stop>,
    observers: Arc<Observers>,
) -> Summary {
    let ledger = intake.ledger().clone();
    let publisher =
        Publisher::new(sinks, observers.publishing.clone()).with_metrics(observers.clone());
    let (done_tx, done_rx) = mpsc::unbounded_channel::<TaskReport>();
    let publishing = tokio::spawn(publish(
        publisher,
        ledger.clone(),
        done_rx,
        settings.grace_period,
        observers.clone(),
    ));
    let (drained_tx, drained) = watch::channel(false);
    let feeding = tokio::spawn(feed(
        source,
        intake.clone(),
        shutdown.clone(),
        settings.once,
        drained_tx,
    ));
    // Cancels the backend part of running tasks (the rest of a task, recording and
    // handing over its report, is never cut).
    let (cancel_tx, cancel) = watch::channel(false);
    let mut running: JoinSet<Ended> = JoinSet::new();
    let spawn = |running: &mut JoinSet<Ended>, entry: Entry| {
        let span = info_span!("task", task_id = %entry.task_id);
        running.spawn(
            run_task(
                entry,
                backend.clone(),
                ledger.clone(),
                settings.clone(),
                done_tx.clone(),
                cancel.clone(),
                observers.clone(),
            )
            .instrument(span),
        );
    };

    // What a previous coordinator left running goes first.
    let resumed = retry_ledger("reading the tasks left running", &mut shutdown, || {
        ledger.running()
    })
    .await;
    if let Some(resumed) = resumed {
        if !resumed.is_empty() {
            info!(
                count = resumed.len(),
                "resuming the tasks a previous coordinator left running: {}",
                ids(&resumed)
            );
        }
        for entry in resumed {
            spawn(&mut running, entry);
        }
    }

    let mut stopping = loop {
        while let Some(done) = running.try_join_next() {
            reaped(done);
        }
        if let Some(how) = stop_asked(&shutdown) {
            break Some(how);
        }
        let free = settings.concurrency.saturating_sub(running.len());
        let mut started_none = true;
        if free > 0 {
            match ledger.start(free).await {
                Ok(entries) => {
                    started_none = entries.is_empty();
                    for entry in entries {
                        spawn(&mut running, entry);
                    }
                }
                Err(e) => {
                    error!("{e}; trying again in {} s", LEDGER_RETRY.as_secs());
                    tokio::time::sleep(LEDGER_RETRY).await;
                    continue;
                }
            }
        }
        if settings.once
            && *drained.borrow()
            && !intake.is_open()
            && running.is_empty()
            && started_none
        {
            match ledger.counts().await {
                Ok(c) if c.queued == 0 && c.running == 0 => break None,
                // Queued, but not yet where `start` takes from (the WasmTask index hears of
                // a new one through its watch): wait for the wake-up below.
                Ok(_) => {}
                Err(e) => {
                    error!("{e}");
                    tokio::time::sleep(LEDGER_RETRY).await;
                    continue;
                }
            }
        }
        if !started_none && running.len() < settings.concurrency {
            // There may be more queued than were taken in one go.
            continue;
        }
        tokio::select! {
            biased;
            how = stopped(&mut shutdown) => break Some(how),
            () = intake.woken() => {}
            () = ledger.changed() => {}
            Some(done) = running.join_next(), if !running.is_empty() => reaped(done),
        }
    };

    intake.close();
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
            j = running.join_next() => j,
            () = tokio::time::sleep_until(deadline), if stopping.is_some() => break,
            how = escalated(&mut shutdown, stopping), if stopping != Some(Stop::Now) => {
                stopping = Some(how);
                deadline = tokio::time::Instant::now() + grace(how);
                info!(running = running.len(), "stopping: letting running tasks finish");
                continue;
            }
        };
        match joined {
            None => break,
            Some(done) => reaped(done),
        }
    }
    // Past the grace period: what still runs is cut short.
    let _ = cancel_tx.send(true);
    let mut cut_short = Vec::new();
    while let Some(done) = running.join_next().await {
        if let Ok(Ended::CutShort(id)) = done {
            cut_short.push(id);
        }
    }
    let mut requeued = 0;
    if !cut_short.is_empty() {
        if backend.hands_over() {
            for id in &cut_short {
                warn!(task_id = %id, "still running at shutdown: left to its Job, which the next coordinator adopts");
            }
        } else {
            match ledger.requeue(cut_short.clone()).await {
                Ok(ids) => {
                    for id in &ids {
                        warn!(task_id = %id, "cut short by the shutdown: back in the queue, it runs at the next start");
                    }
                    requeued = ids.len() as u64;
                }
                Err(e) => error!(
                    "{e}; the tasks cut short ({}) stay running in the ledger and run again at the next start",
                    cut_short.join(", ")
                ),
            }
        }
    }
    drop(done_tx);
    let (source_failures, skipped) = feeding.await.unwrap_or_default();
    let mut summary = publishing.await.unwrap_or_default();
    summary.source_failures = source_failures;
    summary.skipped = skipped;
    summary.requeued = requeued;
    if let Ok(c) = ledger.counts().await {
        if c.queued + c.running > 0 {
            info!(
                queued = c.queued,
                running = c.running,
                "left in the ledger for the next start"
            );
        }
    }
    summary
}

fn stop_asked(shutdown: &watch::Receiver<Stop>) -> Option<Stop> {
    let now = *shutdown.borrow();
    (now != Stop::No).then_some(now)
}

/// A task's future that ended before shutdown: it recorded its report.
fn reaped(done: Result<Ended, tokio::task::JoinError>) {
    if let Err(e) = done {
        error!("a task's run panicked: {e}");
    }
}

fn ids(entries: &[Entry]) -> String {
    entries
        .iter()
        .map(|e| e.task_id.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Calls `f` until the ledger answers or a stop is asked for.
async fn retry_ledger<T, F>(
    doing: &str,
    shutdown: &mut watch::Receiver<Stop>,
    f: impl Fn() -> F,
) -> Option<T>
where
    F: std::future::Future<Output = Result<T, LedgerError>>,
{
    loop {
        match f().await {
            Ok(v) => return Some(v),
            Err(e) => {
                error!("{doing}: {e}; trying again in {} s", LEDGER_RETRY.as_secs());
                tokio::select! {
                    _ = stopped(shutdown) => return None,
                    () = tokio::time::sleep(LEDGER_RETRY) => {}
                }
            }
        }
    }
}

/// Reads `source` into the ledger, in batches of what is ready. Returns the source's
/// failures and skipped entries. With `once`, intake closes when the source is drained.
async fn feed(
    mut source: Box<dyn TaskSource>,
    intake: Arc<Intake>,
    mut shutdown: watch::Receiver<Stop>,
    once: bool,
    drained: watch::Sender<bool>,
) -> (u64, u64) {
    use futures_util::FutureExt;
    let mut failures = 0;
    loop {
        let next = tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => break,
            t = source.next_task() => t,
        };
        let mut batch = Vec::new();
        let mut ended = false;
        match next {
            Ok(Some(t)) => batch.push(t),
            Ok(None) => ended = true,
            Err(e) => {
                error!("{e}");
                failures += 1;
                ended = true;
            }
        }
        // Whatever else is ready at once goes into the same transaction.
        while !ended && batch.len() < ACCEPT_BATCH {
            match source.next_task().now_or_never() {
                Some(Ok(Some(t))) => batch.push(t),
                Some(Ok(None)) => ended = true,
                Some(Err(e)) => {
                    error!("{e}");
                    failures += 1;
                    ended = true;
                }
                None => break,
            }
        }
        if !batch.is_empty() {
            if !accept_all(&intake, batch, &mut shutdown).await {
                break;
            }
            source.accepted().await;
        }
        if ended {
            info!("the task source is drained");
            if once {
                intake.close();
            } else {
                info!("still taking tasks through the API; waiting for a signal (SIGTERM/SIGINT) to stop; use --once to exit when done");
            }
            break;
        }
    }
    let _ = drained.send(true);
    intake.wake();
    (failures, source.skipped())
}

/// Accepts a batch, retrying while the ledger fails; false when stopped meanwhile or
/// intake closed (the source's later tasks are read again at the next start).
async fn accept_all(
    intake: &Intake,
    batch: Vec<Task>,
    shutdown: &mut watch::Receiver<Stop>,
) -> bool {
    loop {
        match intake.accept(batch.clone()).await {
            Ok(accepted) => {
                for a in accepted {
                    log_known(&a);
                }
                return true;
            }
            Err(crate::source::IntakeError::Closed) => return false,
            Err(e) => {
                error!(
                    "cannot record tasks from the source: {e}; trying again in {} s",
                    LEDGER_RETRY.as_secs()
                );
                tokio::select! {
                    _ = stopped(shutdown) => return false,
                    () = tokio::time::sleep(LEDGER_RETRY) => {}
                }
            }
        }
    }
}

/// Says what became of a task a source offered again.
fn log_known(a: &Accepted) {
    match a {
        Accepted::New(_) => {}
        Accepted::Known(e) => match (&e.state, &e.report) {
            (Phase::Done, Some(r)) => info!(
                task_id = %e.task_id,
                status = r.status.as_str(),
                "already done, not run again: {}",
                r.describe()
            ),
            _ => {
                info!(task_id = %e.task_id, state = e.state.as_str(), "already accepted; not queued twice")
            }
        },
        Accepted::Conflict { known, .. } => warn!(
            task_id = %known.task_id,
            "refused: this task id is already recorded for a different task (module, input or entry); give the new task its own id"
        ),
    }
}

/// Runs one task with bounded retries for infrastructure failures, records its report in
/// the ledger, lets the backend release it, and hands the report to the publisher. Only
/// the backend part can be cut short (by `cancel`).
async fn run_task(
    entry: Entry,
    backend: Arc<dyn Backend>,
    ledger: Arc<dyn Ledger>,
    settings: Settings,
    done: mpsc::UnboundedSender<TaskReport>,
    mut cancel: watch::Receiver<bool>,
    observers: Arc<Observers>,
) -> Ended {
    let task = entry.task;
    // Earlier starts (a resumed or requeued task) count as attempts.
    let before = entry.attempts.saturating_sub(1);
    let _flight = observers.metrics.in_flight();
    let began = std::time::Instant::now();
    let ran = match &task.invalid {
        // Recorded by its source although malformed (an on-chain task): nothing to run.
        Some(why) => {
            let mut report =
                TaskReport::new(&task, ReportStatus::Runner(runner::Status::InvalidInput));
            report.stage = Some(crate::task::Stage::Fetch);
            report.error = Some(format!("the task is malformed and was not run: {why}"));
            Some(report)
        }
        None => tokio::select! {
            biased;
            _ = cancel.wait_for(|c| *c) => None,
            report = settle(&task, before, &*backend, &*ledger, &settings, &observers) => Some(report),
        },
    };
    let Some(mut report) = ran else {
        // It runs again from the start: what the cut-short run left goes (a Job that
        // runs on without the coordinator stays, for the next one to adopt).
        if !backend.hands_over() {
            backend.release(&task, None).await;
            backend.release_check(&task).await;
        }
        return Ended::CutShort(task.task_id);
    };
    observers.metrics.task_took(began.elapsed());
    if let (Some(fuel), false) = (
        report.result.as_ref().and_then(|r| r.fuel_consumed),
        report.cached,
    ) {
        observers.metrics.fuel(report.status, fuel);
    }
    let finished_at = crate::ledger::rfc3339(crate::ledger::now_ms());
    report.receipt = Some(settings.signer.receipt(&report, finished_at));
    loop {
        match ledger.finish(report.clone()).await {
            Ok(_) => break,
            Err(LedgerError::Transition(e)) => {
                // Not running any more (another coordinator finished it): nothing to add.
                warn!("{e}; this run's report is dropped");
                return Ended::Recorded;
            }
            Err(LedgerError::Unknown(_)) => {
                // Its record was deleted meanwhile (a WasmTask deleted with kubectl).
                warn!("the task's record was deleted while it ran; its report is dropped");
                backend.release(&task, None).await;
                return Ended::Recorded;
            }
            Err(e) => {
                error!(
                    "cannot record the report: {e}; trying again in {} s",
                    LEDGER_RETRY.as_secs()
                );
                tokio::time::sleep(LEDGER_RETRY).await;
            }
        }
    }
    if settings.cache {
        if let Some(key) =
            crate::cache::key_of_report(&report, settings.limits.for_task(task.limits))
        {
            if let Err(e) = ledger.cache_put(key, task.task_id.clone()).await {
                // The result stands; only later equal tasks will run instead of reusing it.
                warn!("cannot record the task's result in the cache: {e}");
            }
        }
    }
    backend.release(&task, Some(&report)).await;
    let _ = done.send(report);
    Ended::Recorded
}

/// The task's report: from the cache when an equal task was done before, else from its
/// attempts, then checked by a second run when it is among `verify_fraction`.
async fn settle(
    task: &Task,
    before: u32,
    backend: &dyn Backend,
    ledger: &dyn Ledger,
    settings: &Settings,
    observers: &Observers,
) -> TaskReport {
    let limits = settings.limits.for_task(task.limits);
    if let Some(report) = cached(task, limits, ledger, settings, observers).await {
        return report;
    }
    let (outcome, attempts) = attempts(task, backend, settings, observers).await;
    let mut report = TaskReport::new(task, outcome.status);
    report.stage = outcome.stage;
    report.attempts = before + attempts;
    report.result = outcome.result.clone();
    report.error = outcome.error.clone();
    if crate::verify::selected(&task.task_id, settings.verify_fraction)
        && crate::verify::checkable(&outcome)
    {
        info!("running the task a second time to check its output (verify_fraction)");
        let second = backend.run_check(task, &outcome).await;
        let verdict = crate::verify::apply(&mut report, &second);
        observers.metrics.checked(verdict.as_str());
        match verdict {
            Verdict::Mismatch => warn!(
                "the second run gave another output; the task is nondeterministic: {}",
                report.error.as_deref().unwrap_or_default()
            ),
            Verdict::Inconclusive => warn!(
                "the check's second run gave no result: {}",
                second.error.as_deref().unwrap_or_default()
            ),
            Verdict::Match => info!("the second run gave the same output"),
        }
        backend.release_check(task).await;
    }
    report
}

/// The report of an equal task done before, answering `task`, when it may be cached.
async fn cached(
    task: &Task,
    limits: RunLimits,
    ledger: &dyn Ledger,
    settings: &Settings,
    observers: &Observers,
) -> Option<TaskReport> {
    if !settings.cache {
        return None;
    }
    let key = crate::cache::key(task, limits, &crate::cache::engine_for(task, limits))?;
    match ledger.cache_get(key).await {
        Ok(Some(original)) if original.task.task_id != task.task_id => {
            observers.metrics.cache_lookup("hit");
            info!(
                cached_from = %original.task.task_id,
                "answered from the result cache (an equal deterministic task was done)"
            );
            Some(crate::cache::answer(task, &original))
        }
        Ok(_) => {
            observers.metrics.cache_lookup("miss");
            None
        }
        Err(e) => {
            warn!("cannot look the task up in the result cache, so it runs: {e}");
            None
        }
    }
}

/// Attempts until one is final or the retries are used up; returns it with the count.
async fn attempts(
    task: &Task,
    backend: &dyn Backend,
    settings: &Settings,
    observers: &Observers,
) -> (crate::backend::AttemptOutcome, u32) {
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        info!(attempt = attempts, wasm_cid = %task.wasm_cid, "starting");
        let outcome = backend.run(task).await;
        for (stage, took) in &outcome.stages {
            observers.metrics.stage(*stage, *took);
        }
        if let Some(kind) = outcome.failure {
            observers.metrics.backend_error(kind);
        }
        if !(outcome.retryable && attempts <= settings.retries) {
            return (outcome, attempts);
        }
        observers.metrics.retried();
        // The failed attempt's leftovers (its Job, its work dir) go before the next starts.
        backend.release(task, None).await;
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
    }
}

/// Publishes what the ledger holds unpublished (first reconciling each sink with it),
/// then every report finished in this run; records each delivery in the ledger. Ends when
/// the reports stop coming, after giving failing sinks the grace period.
async fn publish(
    mut publisher: Publisher,
    ledger: Arc<dyn Ledger>,
    mut reports: mpsc::UnboundedReceiver<TaskReport>,
    final_grace: Duration,
    observers: Arc<Observers>,
) -> Summary {
    let mut summary = Summary::default();
    let sinks = publisher.sink_names();
    // The tasks published from the ledger's backlog: one that finished while the backlog
    // was being read is also on its way through `reports`, and must not go out twice.
    let mut from_backlog: HashSet<String> = HashSet::new();
    match ledger.unpublished().await {
        Ok(backlog) => {
            let found = publisher.reconcile(&backlog);
            for (sink, ids) in &found {
                info!(sink = %sink, count = ids.len(), "reports written before the last stop but not recorded as written: recorded now, not written again");
            }
            let mut have: HashMap<String, Vec<String>> = HashMap::new();
            for (sink, ids) in &found {
                for id in ids {
                    have.entry(id.clone()).or_default().push(sink.clone());
                }
            }
            record(&*ledger, found, &sinks).await;
            if !backlog.is_empty() {
                info!(
                    count = backlog.len(),
                    "publishing the reports a previous run recorded but did not publish everywhere"
                );
            }
            for u in backlog {
                from_backlog.insert(u.report.task.task_id.clone());
                let mut already = u.delivered.clone();
                already.extend(have.remove(&u.report.task.task_id).unwrap_or_default());
                publisher.publish(u.report, &already);
            }
            let delivered = publisher.take_delivered();
            record(&*ledger, delivered, &sinks).await;
        }
        Err(e) => {
            error!("cannot read the unpublished reports: {e}; they are published at the next start")
        }
    }
    let waker = publisher.waker();
    loop {
        let next_retry = publisher.next_retry();
        let received = tokio::select! {
            r = reports.recv() => r,
            () = sleep_until_some(next_retry), if next_retry.is_some() => {
                publisher.retry_due();
                let delivered = publisher.take_delivered();
                record(&*ledger, delivered, &sinks).await;
                continue;
            }
            () = waker.notified() => {
                publisher.collect_completed();
                let delivered = publisher.take_delivered();
                record(&*ledger, delivered, &sinks).await;
                continue;
            }
        };
        let Some(report) = received else {
            break;
        };
        let mut batch = vec![report];
        // Whatever else finished meanwhile shares the ledger write.
        while let Ok(report) = reports.try_recv() {
            batch.push(report);
        }
        for report in batch {
            observers.metrics.published(report.status);
            info!(task_id = %report.task.task_id, status = report.status.as_str(), attempts = report.attempts, "{}", report.describe());
            summary.add(&report);
            if !from_backlog.remove(&report.task.task_id) {
                publisher.publish(report, &[]);
            }
        }
        let delivered = publisher.take_delivered();
        record(&*ledger, delivered, &sinks).await;
    }
    // Every task has finished: the sinks still failing get until the end of the grace
    // period, then what they lack is logged whole and counted (it stays in the ledger).
    // Sends still pending (transactions waiting for confirmations) are waited for as long.
    let until = tokio::time::Instant::now() + final_grace;
    while publisher.unpublished() > 0 {
        let next_retry = publisher.next_retry().filter(|at| *at <= until);
        if next_retry.is_none() && publisher.in_flight() == 0 {
            publisher.retry_now();
            break;
        }
        tokio::select! {
            () = sleep_until_some(next_retry), if next_retry.is_some() => {
                publisher.retry_due();
            }
            () = waker.notified() => {
                publisher.collect_completed();
            }
            () = tokio::time::sleep_until(until) => {
                publisher.collect_completed();
                publisher.retry_now();
                break;
            }
        }
        let delivered = publisher.take_delivered();
        record(&*ledger, delivered, &sinks).await;
    }
    let delivered = publisher.take_delivered();
    record(&*ledger, delivered, &sinks).await;
    summary.unpublished = publisher.give_up() as u64;
    summary
}

/// Records deliveries; a failure is logged (the sink may then get those reports again at
/// the next start, and a results file is reconciled first).
async fn record(ledger: &dyn Ledger, delivered: Vec<(String, Vec<String>)>, sinks: &[String]) {
    for (sink, ids) in delivered {
        if let Err(e) = ledger.delivered(sink.clone(), ids, sinks.to_vec()).await {
            error!(sink = %sink, "cannot record what was published: {e}");
        }
    }
}

/// Sleeps until `at`; never returns for `None` (the caller guards the branch).
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{AttemptOutcome, BoxFuture, FailureKind, NotReady};
    use crate::ledger::SqliteLedger;
    use crate::task::Stage;
    use runner::Status;
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

    /// Fails `fail_first` times with the given retryability, then succeeds; records runs
    /// and releases.
    struct Flaky {
        calls: AtomicU32,
        fail_first: u32,
        retryable: bool,
        delay: Duration,
        hands_over: bool,
        runs: Arc<Mutex<Vec<String>>>,
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
                runs: Arc::default(),
                releases: Arc::default(),
            }
        }
    }
    impl Backend for Flaky {
        fn release<'a>(&'a self, t: &'a Task, report: Option<&'a TaskReport>) -> BoxFuture<'a, ()> {
            let what = if report.is_some() {
                "recorded"
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
        fn ready(&self) -> BoxFuture<'_, Result<(), Vec<NotReady>>> {
            Box::pin(async { Ok(()) })
        }
        fn run<'a>(&'a self, t: &'a Task) -> BoxFuture<'a, AttemptOutcome> {
            self.runs.lock().unwrap().push(t.task_id.clone());
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
        fn publish(&mut self, r: &TaskReport) -> Result<crate::sink::Sent, crate::sink::SinkError> {
            self.0.lock().unwrap().push(r.clone());
            Ok(crate::sink::Sent::Done)
        }
    }

    fn task(id: &str) -> Task {
        Task::example(id)
    }

    fn settings(retries: u32) -> Settings {
        Settings {
            concurrency: 2,
            retries,
            retry_backoff: Duration::from_millis(1),
            grace_period: Duration::from_millis(50),
            once: true,
            limits: RunLimits {
                timeout: Duration::from_secs(60),
                fuel: 1000,
            },
            cache: true,
            verify_fraction: 0.0,
            signer: Signer::default(),
        }
    }

    /// A ledger in `dir` (the same file across calls: a restart).
    fn ledger(dir: &std::path::Path) -> Arc<dyn Ledger> {
        Arc::new(SqliteLedger::open_for_test(&dir.join("ledger.sqlite")))
    }

    async fn go(
        ledger: Arc<dyn Ledger>,
        backend: Arc<Flaky>,
        tasks: Vec<Task>,
        s: Settings,
        stop_after: Option<Duration>,
    ) -> (Summary, Vec<TaskReport>) {
        let got = Arc::new(Mutex::new(Vec::new()));
        let (stop_tx, stop_rx) = watch::channel(Stop::No);
        if let Some(after) = stop_after {
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let _ = stop_tx.send(Stop::Graceful);
                std::future::pending::<()>().await;
            });
        } else {
            std::mem::forget(stop_tx);
        }
        let summary = reconcile(
            s,
            Box::new(Tasks(tasks)),
            Arc::new(Intake::new(ledger)),
            vec![Box::new(Collect(got.clone()))],
            backend,
            stop_rx,
            Arc::new(Observers::default()),
        )
        .await;
        let reports = got.lock().unwrap().clone();
        (summary, reports)
    }

    #[tokio::test]
    async fn infrastructure_failures_are_retried_a_bounded_number_of_times() {
        let dir = tempfile::tempdir().unwrap();
        let b = Arc::new(Flaky::new(2, true, Duration::ZERO));
        let (summary, reports) = go(
            ledger(dir.path()),
            b.clone(),
            vec![task("a")],
            settings(2),
            None,
        )
        .await;
        assert_eq!(
            (reports[0].status, reports[0].attempts),
            (ReportStatus::OK, 3)
        );
        assert_eq!(
            *b.releases.lock().unwrap(),
            vec!["a retry", "a retry", "a recorded"],
            "each failed attempt is released before the next, the last once recorded"
        );
        assert_eq!(summary.ok, 1);
        let dir = tempfile::tempdir().unwrap();
        let b = Arc::new(Flaky::new(5, true, Duration::ZERO));
        let (summary, reports) =
            go(ledger(dir.path()), b, vec![task("a")], settings(1), None).await;
        assert_eq!(
            (reports[0].status, reports[0].attempts),
            (ReportStatus::FetchFailed, 2)
        );
        assert_eq!(summary.infrastructure_failures, 1);
    }

    #[tokio::test]
    async fn task_failures_are_never_retried() {
        let dir = tempfile::tempdir().unwrap();
        let b = Arc::new(Flaky::new(1, false, Duration::ZERO));
        let (summary, reports) =
            go(ledger(dir.path()), b, vec![task("a")], settings(3), None).await;
        assert_eq!(
            (reports[0].status, reports[0].attempts),
            (ReportStatus::Runner(Status::Trap), 1)
        );
        assert!(
            summary
                .line()
                .contains("ok=0 failed=1 infrastructure_failed=0 (trap=1)"),
            "{}",
            summary.line()
        );
    }

    #[tokio::test]
    async fn a_refused_task_is_answered_invalid_input_without_running() {
        let dir = tempfile::tempdir().unwrap();
        let b = Arc::new(Flaky::new(0, false, Duration::ZERO));
        let refused = Task::refused("bad".into(), "wasm_cid \"x y\": not a CID").unwrap();
        let (summary, reports) = go(
            ledger(dir.path()),
            b.clone(),
            vec![refused, task("good")],
            settings(1),
            None,
        )
        .await;
        let bad = reports.iter().find(|r| r.task.task_id == "bad").unwrap();
        assert_eq!(
            (bad.status, bad.attempts),
            (ReportStatus::Runner(Status::InvalidInput), 0)
        );
        assert!(
            bad.error.as_deref().unwrap().contains("not a CID"),
            "{bad:?}"
        );
        assert_eq!(b.calls.load(Ordering::SeqCst), 1, "only the good task ran");
        assert_eq!((summary.ok, summary.infrastructure_failures), (1, 0));
    }

    #[tokio::test]
    async fn a_task_runs_and_publishes_once_however_often_it_is_offered() {
        let dir = tempfile::tempdir().unwrap();
        let b = Arc::new(Flaky::new(0, false, Duration::ZERO));
        let tasks = vec![task("a"), task("b"), task("a")];
        let (_, reports) = go(
            ledger(dir.path()),
            b.clone(),
            tasks.clone(),
            settings(0),
            None,
        )
        .await;
        assert_eq!(reports.len(), 2);
        // Offered again after a restart: already done, neither run nor published.
        let (summary, reports) = go(ledger(dir.path()), b.clone(), tasks, settings(0), None).await;
        assert!(reports.is_empty(), "{reports:?}");
        assert_eq!(summary.total, 0);
        let mut runs = b.runs.lock().unwrap().clone();
        runs.sort();
        assert_eq!(runs, ["a", "b"]);
    }

    #[tokio::test]
    async fn a_shutdown_puts_unfinished_tasks_back_in_the_queue_for_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let slow = Arc::new(Flaky::new(0, false, Duration::from_secs(30)));
        let tasks: Vec<Task> = (0..5).map(|i| task(&format!("t{i}"))).collect();
        let (summary, reports) = go(
            ledger(dir.path()),
            slow.clone(),
            tasks,
            settings(0),
            Some(Duration::from_millis(100)),
        )
        .await;
        assert!(
            reports.is_empty(),
            "nothing finished, nothing published: {reports:?}"
        );
        assert_eq!(summary.requeued, 2, "the two running at concurrency 2");
        let mut released = slow.releases.lock().unwrap().clone();
        released.sort();
        assert_eq!(
            released,
            ["t0 retry", "t1 retry"],
            "what a cut-short run left is released"
        );
        // The next start runs all five, each once.
        let fast = Arc::new(Flaky::new(0, false, Duration::ZERO));
        let (summary, reports) = go(
            ledger(dir.path()),
            fast.clone(),
            Vec::new(),
            settings(0),
            None,
        )
        .await;
        assert_eq!(summary.ok, 5, "{}", summary.line());
        assert_eq!(reports.len(), 5);
        let by_id: BTreeMap<String, u32> = reports
            .iter()
            .map(|r| (r.task.task_id.clone(), r.attempts))
            .collect();
        assert_eq!(
            by_id["t0"], 2,
            "a requeued task's cut-short start counts as an attempt"
        );
        assert_eq!(by_id["t4"], 1);
    }

    #[tokio::test]
    async fn tasks_left_running_are_resumed_first_without_being_started_twice() {
        let dir = tempfile::tempdir().unwrap();
        {
            let l = ledger(dir.path());
            l.accept(vec![task("left"), task("queued")]).await.unwrap();
            l.start(1).await.unwrap();
        }
        let b = Arc::new(Flaky::new(0, false, Duration::ZERO));
        let mut s = settings(0);
        s.concurrency = 1;
        let (summary, reports) = go(ledger(dir.path()), b.clone(), Vec::new(), s, None).await;
        assert_eq!(summary.ok, 2);
        assert_eq!(*b.runs.lock().unwrap(), ["left", "queued"]);
        assert_eq!(reports[0].attempts, 1, "resumed, not started again");
    }

    #[tokio::test]
    async fn an_urgent_stop_cuts_a_graceful_one_short_and_a_backend_that_hands_over_keeps_its_tasks(
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Flaky::new(0, false, Duration::from_secs(60));
        b.hands_over = true;
        let b = Arc::new(b);
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
        let l = ledger(dir.path());
        let serving = reconcile(
            s,
            Box::new(Tasks(vec![task("a")])),
            Arc::new(Intake::new(l.clone())),
            Vec::new(),
            b.clone(),
            stop_rx,
            Arc::new(Observers::default()),
        );
        let summary = tokio::time::timeout(Duration::from_secs(20), serving)
            .await
            .expect("Stop::Now ends the 60 s grace period at once");
        assert_eq!((summary.total, summary.requeued), (0, 0));
        assert!(
            b.releases.lock().unwrap().is_empty(),
            "a handed-over task keeps its Job"
        );
        assert_eq!(
            l.get("a".into()).await.unwrap().unwrap().state,
            Phase::Running
        );
    }
}
