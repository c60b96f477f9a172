//! The coordinator's metrics, in the Prometheus text format (OpenMetrics), served at
//! `/metrics`. One [`Metrics`] per process, shared by the service and the HTTP listener.
//!
//! Names: `wasm_exec_tasks` (by final status), `wasm_exec_task_duration_seconds` and
//! `wasm_exec_stage_duration_seconds` (by stage: fetch, run), `wasm_exec_tasks_in_flight`,
//! `wasm_exec_retries`, `wasm_exec_backend_errors` (by kind: `fetch`, `image_pull`,
//! `oom_killed`, `forbidden`… see [`FailureKind`]), `wasm_exec_publish_failures` and
//! `wasm_exec_unpublished_results` (by sink), `wasm_exec_build` (info); with Kueue
//! ([`AdmissionMetrics`]): `wasm_exec_tasks_admitting`, `wasm_exec_admission_wait_seconds`,
//! `wasm_exec_preemptions`.

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::backend::FailureKind;
use crate::task::{ReportStatus, Stage};

type Labels = Vec<(String, String)>;

fn duration_histogram() -> Histogram {
    // 5 ms to about 80 s: from a trivial local task to a long one.
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    tasks: Family<Labels, Counter>,
    task_duration: Histogram,
    stage_duration: Family<Labels, Histogram, fn() -> Histogram>,
    in_flight: Gauge,
    retries: Counter,
    backend_errors: Family<Labels, Counter>,
    publish_failures: Family<Labels, Counter>,
    unpublished: Family<Labels, Gauge>,
    contract_posts: Family<Labels, Counter>,
    fuel_consumed: Family<Labels, Counter>,
    task_fuel: Histogram,
    checks: Family<Labels, Counter>,
    cache_lookups: Family<Labels, Counter>,
    admission: AdmissionMetrics,
}

/// What the Kubernetes backend counts of Kueue's admission: handed to it by
/// [`Metrics::admission`] (the same series), or standing alone ([`Default`]) when nothing
/// serves them.
#[derive(Debug, Clone)]
pub struct AdmissionMetrics {
    admitting: Gauge,
    wait: Histogram,
    preemptions: Counter,
}

impl Default for AdmissionMetrics {
    fn default() -> Self {
        Self {
            admitting: Gauge::default(),
            // 50 ms to about 1.8 hours: a queue can hold a task much longer than it runs.
            wait: Histogram::new(exponential_buckets(0.05, 2.0, 18)),
            preemptions: Counter::default(),
        }
    }
}

impl AdmissionMetrics {
    /// Counts a task whose Job waits for admission until the guard is dropped.
    pub fn waiting(&self) -> Admitting {
        self.admitting.inc();
        Admitting(self.admitting.clone())
    }

    /// A Job was admitted after waiting `took` (since its creation, or its preemption).
    pub fn admitted_after(&self, took: Duration) {
        self.wait.observe(took.as_secs_f64());
    }

    pub fn preempted(&self) {
        self.preemptions.inc();
    }
}

/// See [`AdmissionMetrics::waiting`].
#[derive(Debug)]
pub struct Admitting(Gauge);

impl Drop for Admitting {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("wasm_exec");
        let tasks = Family::<Labels, Counter>::default();
        let task_duration = duration_histogram();
        let stage_duration = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram,
        );
        let in_flight = Gauge::default();
        let retries = Counter::default();
        let backend_errors = Family::<Labels, Counter>::default();
        let publish_failures = Family::<Labels, Counter>::default();
        let unpublished = Family::<Labels, Gauge>::default();
        let contract_posts = Family::<Labels, Counter>::default();
        let fuel_consumed = Family::<Labels, Counter>::default();
        // 1 000 to 10^13 units: a trivial call to about an hour of interpretation.
        let task_fuel = Histogram::new(exponential_buckets(1e3, 10.0, 11));
        let checks = Family::<Labels, Counter>::default();
        let cache_lookups = Family::<Labels, Counter>::default();
        registry.register(
            "fuel_consumed",
            "Fuel the runs of tasks consumed (the unit of account: about one unit per Wasm instruction), by final status; answers from the cache consume none",
            fuel_consumed.clone(),
        );
        registry.register(
            "task_fuel",
            "Fuel consumed by each task run with metering on",
            task_fuel.clone(),
        );
        registry.register(
            "checks",
            "Re-execution checks (verify_fraction), by outcome: match, mismatch (the task is published nondeterministic), inconclusive (the second run gave no result)",
            checks.clone(),
        );
        registry.register(
            "cache_lookups",
            "Result cache lookups of deterministic tasks, by outcome: hit (answered without running), miss",
            cache_lookups.clone(),
        );
        registry.register(
            "contract_posts",
            "Results posted to the TaskRegistry contract, by outcome: posted (our transaction, confirmed), already_posted (the contract had it), failed (retried)",
            contract_posts.clone(),
        );
        registry.register("tasks", "Tasks published, by final status", tasks.clone());
        registry.register(
            "task_duration_seconds",
            "Wall-clock time of a task, retries included",
            task_duration.clone(),
        );
        registry.register(
            "stage_duration_seconds",
            "Time of each stage of an attempt (fetch, run)",
            stage_duration.clone(),
        );
        registry.register("tasks_in_flight", "Tasks running now", in_flight.clone());
        registry.register(
            "retries",
            "Attempts retried after an infrastructure failure",
            retries.clone(),
        );
        registry.register(
            "backend_errors",
            "Infrastructure failures of attempts, by kind",
            backend_errors.clone(),
        );
        registry.register(
            "publish_failures",
            "Failed writes of a result to a sink (each is kept and retried), by sink",
            publish_failures.clone(),
        );
        registry.register(
            "unpublished_results",
            "Results waiting for a sink that failed, by sink",
            unpublished.clone(),
        );
        let admission = AdmissionMetrics::default();
        registry.register(
            "tasks_admitting",
            "Tasks whose Job waits for Kueue to admit it (or to admit it again after a preemption)",
            admission.admitting.clone(),
        );
        registry.register(
            "admission_wait_seconds",
            "Time a queued Job waited for admission, from its creation or its preemption",
            admission.wait.clone(),
        );
        registry.register(
            "preemptions",
            "Jobs suspended again by Kueue after they were admitted (their pods deleted); each task waits and runs again",
            admission.preemptions.clone(),
        );
        registry.register(
            "build",
            "Build information",
            Info::new(vec![(
                "version".to_string(),
                env!("CARGO_PKG_VERSION").to_string(),
            )]),
        );
        Self {
            registry,
            tasks,
            task_duration,
            stage_duration,
            in_flight,
            retries,
            backend_errors,
            publish_failures,
            unpublished,
            contract_posts,
            fuel_consumed,
            task_fuel,
            checks,
            cache_lookups,
            admission,
        }
    }

    /// The admission series, for the Kubernetes backend.
    pub fn admission(&self) -> AdmissionMetrics {
        self.admission.clone()
    }

    /// Fuel one task's run consumed.
    pub fn fuel(&self, status: ReportStatus, fuel: u64) {
        self.fuel_consumed
            .get_or_create(&vec![("status".into(), status.as_str().into())])
            .inc_by(fuel);
        self.task_fuel.observe(fuel as f64);
    }

    /// A re-execution check ended: `match`, `mismatch` or `inconclusive`.
    pub fn checked(&self, outcome: &'static str) {
        self.checks
            .get_or_create(&vec![("outcome".into(), outcome.into())])
            .inc();
    }

    /// A cache lookup: `hit` or `miss`.
    pub fn cache_lookup(&self, outcome: &'static str) {
        self.cache_lookups
            .get_or_create(&vec![("outcome".into(), outcome.into())])
            .inc();
    }

    /// Counts a task in flight until the returned guard is dropped (also when the task is
    /// cancelled at shutdown).
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    pub fn task_took(&self, took: Duration) {
        self.task_duration.observe(took.as_secs_f64());
    }

    /// Every published report, by its final status.
    pub fn published(&self, status: ReportStatus) {
        self.tasks
            .get_or_create(&vec![("status".into(), status.as_str().into())])
            .inc();
    }

    pub fn stage(&self, stage: Stage, took: Duration) {
        self.stage_duration
            .get_or_create(&vec![("stage".into(), stage.as_str().into())])
            .observe(took.as_secs_f64());
    }

    pub fn retried(&self) {
        self.retries.inc();
    }

    /// An attempt that the machinery ended, by why.
    pub fn backend_error(&self, kind: FailureKind) {
        self.backend_errors
            .get_or_create(&vec![("kind".into(), kind.as_str().into())])
            .inc();
    }

    /// A write of a result to `sink` failed.
    pub fn publish_failed(&self, sink: &str) {
        self.publish_failures
            .get_or_create(&vec![("sink".into(), sink.into())])
            .inc();
    }

    /// A post to the contract ended: `posted`, `already_posted` or `failed`.
    pub fn contract_post(&self, outcome: &'static str) {
        self.contract_posts
            .get_or_create(&vec![("outcome".into(), outcome.into())])
            .inc();
    }

    /// Results waiting for `sink` now.
    pub fn unpublished(&self, sink: &str, waiting: usize) {
        self.unpublished
            .get_or_create(&vec![("sink".into(), sink.into())])
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// See [`Metrics::in_flight`].
#[derive(Debug)]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family() {
        let m = Metrics::new();
        let flight = m.in_flight();
        assert!(m.render().contains("wasm_exec_tasks_in_flight 1"));
        m.stage(Stage::Fetch, Duration::from_millis(3));
        m.retried();
        m.backend_error(FailureKind::ImagePull);
        m.publish_failed("file r.jsonl");
        m.unpublished("file r.jsonl", 3);
        m.task_took(Duration::from_millis(20));
        m.published(ReportStatus::OK);
        m.fuel(ReportStatus::OK, 5000);
        m.checked("mismatch");
        m.cache_lookup("hit");
        let admission = m.admission();
        let waiting = admission.waiting();
        assert!(m.render().contains("wasm_exec_tasks_admitting 1"));
        drop(waiting);
        admission.admitted_after(Duration::from_secs(3));
        admission.preempted();
        drop(flight);
        let text = m.render();
        for needle in [
            "wasm_exec_tasks_total{status=\"ok\"} 1",
            "wasm_exec_fuel_consumed_total{status=\"ok\"} 5000",
            "wasm_exec_task_fuel_count 1",
            "wasm_exec_checks_total{outcome=\"mismatch\"} 1",
            "wasm_exec_cache_lookups_total{outcome=\"hit\"} 1",
            "wasm_exec_task_duration_seconds_count 1",
            "wasm_exec_stage_duration_seconds_count{stage=\"fetch\"} 1",
            "wasm_exec_tasks_in_flight 0",
            "wasm_exec_retries_total 1",
            "wasm_exec_backend_errors_total{kind=\"image_pull\"} 1",
            "wasm_exec_publish_failures_total{sink=\"file r.jsonl\"} 1",
            "wasm_exec_unpublished_results{sink=\"file r.jsonl\"} 3",
            "wasm_exec_build_info{version=",
            "wasm_exec_tasks_admitting 0",
            "wasm_exec_admission_wait_seconds_count 1",
            "wasm_exec_preemptions_total 1",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
    }
}
