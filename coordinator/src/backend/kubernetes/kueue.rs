//! Running the task Jobs through Kueue (kubernetes-sigs/kueue), the batch queue operators
//! share clusters with. Pure: Jobs and Workloads in, labels, states and messages out; the
//! backend ([`super`]) does the waiting.
//!
//! What Kueue expects of a tool that creates Jobs, and what this module gives it:
//! - the label [`LABEL_QUEUE`] (the LocalQueue) and optionally [`LABEL_PRIORITY`] on the
//!   Job ([`queue_job`]); the Job is created suspended, as Kueue's webhook would make it,
//!   so that a Job never runs past the quota even where the webhook is not called;
//! - requests on every container, init containers included (`k8s/job.yaml` has them);
//! - a Job that Kueue suspends again (its pods deleted) after it ran is *preempted*: the
//!   task waits for admission again, neither failed nor retried ([`job_state`] tells the
//!   backend which state the Job is in);
//! - Kubernetes resets a Job's `startTime` when it is resumed, so its activeDeadlineSeconds
//!   counts from admission: the coordinator's own bound on a task does too.
//!
//! Kueue records why a Job waits in its Workload (one per Job, labelled [`LABEL_JOB_UID`]);
//! [`workload_says`] turns that into one line for the WasmTask's status and the logs.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use serde_json::Value;

use super::status::{job_finished, JobEnd};

/// The LocalQueue a Job is submitted to.
pub const LABEL_QUEUE: &str = "kueue.x-k8s.io/queue-name";
/// The WorkloadPriorityClass of a Job.
pub const LABEL_PRIORITY: &str = "kueue.x-k8s.io/priority-class";
/// On a Workload: the uid of the Job it stands for.
pub const LABEL_JOB_UID: &str = "kueue.x-k8s.io/job-uid";
/// Kueue's API group and the version of it read (served by every Kueue release so far).
pub const GROUP: &str = "kueue.x-k8s.io";
pub const VERSION: &str = "v1beta1";
pub const WORKLOAD_KIND: &str = "Workload";

/// How the Jobs of a run are queued; all unset: Jobs exactly as without Kueue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Queueing {
    /// The LocalQueue of every Job, unless its WasmTask names its own (`spec.queueName`).
    pub queue_name: Option<String>,
    pub priority_class: Option<String>,
    /// The longest a Job may wait for admission; unset: as long as it takes.
    pub admission_timeout: Option<Duration>,
}

/// Puts the Job in `queue` (and `priority` class): the Kueue labels on the Job, and
/// `spec.suspend: true`, which Kueue lifts when it admits the Job. A label already there
/// is replaced: the Job is new, no Workload has reserved quota for it yet.
pub fn queue_job(job: &mut Job, queue: &str, priority: Option<&str>) {
    let labels = job.metadata.labels.get_or_insert_with(Default::default);
    labels.insert(LABEL_QUEUE.into(), queue.into());
    if let Some(p) = priority {
        labels.insert(LABEL_PRIORITY.into(), p.into());
    }
    job.spec.get_or_insert_with(Default::default).suspend = Some(true);
}

/// The queue a Job was put in, if any.
pub fn queue_of(job: &Job) -> Option<&str> {
    job.metadata
        .labels
        .as_ref()?
        .get(LABEL_QUEUE)
        .map(String::as_str)
}

/// Whether `s` can be a label value (a LocalQueue or priority class name must be one):
/// at most 63 characters of `[A-Za-z0-9._-]`, alphanumeric at both ends.
pub fn is_label_value(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    (1..=63).contains(&s.len())
        && s.chars().all(|c| alnum(c) || "-_.".contains(c))
        && s.starts_with(alnum)
        && s.ends_with(alnum)
}

/// Where a Job is, as far as waiting goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Suspended: waiting for admission (again, after a preemption).
    Waiting,
    /// Admitted (or never queued): its pods may run.
    Running,
    Finished(JobEnd),
}

/// The Job's state: finished once it has a `Complete` or `Failed` condition, else waiting
/// while `spec.suspend` is true (Kueue has not admitted it, or suspended it again).
pub fn job_state(job: &Job) -> JobState {
    if let Some(end) = job_finished(job) {
        return JobState::Finished(end);
    }
    let suspended = job.spec.as_ref().and_then(|s| s.suspend) == Some(true);
    if suspended {
        JobState::Waiting
    } else {
        JobState::Running
    }
}

/// What a Workload says about its admission, in one line: the message of its `Evicted`
/// condition when it was evicted (preempted), else of `QuotaReserved` when that is False
/// (e.g. `LocalQueue foo doesn't exist`, or no room in the quota), else `None`.
pub fn workload_says(workload: &Value) -> Option<String> {
    let conditions = workload.pointer("/status/conditions")?.as_array()?;
    let find = |type_: &str, status: &str| {
        conditions
            .iter()
            .find(|c| c["type"] == type_ && c["status"] == status)
    };
    let line = |c: &Value| {
        let reason = c["reason"].as_str().unwrap_or_default();
        let message = c["message"].as_str().unwrap_or_default();
        match (reason.is_empty(), message.is_empty()) {
            (_, true) => reason.to_owned(),
            (true, false) => message.to_owned(),
            (false, false) => format!("{reason}: {message}"),
        }
    };
    find("Evicted", "True")
        .or_else(|| find("QuotaReserved", "False"))
        .map(line)
        .filter(|l| !l.is_empty())
}

/// How long a Job that began waiting `waited` ago may still wait; `None` without a
/// limit, zero once it is past.
pub fn admission_left(waited: Duration, timeout: Option<Duration>) -> Option<Duration> {
    timeout.map(|t| t.saturating_sub(waited))
}

/// When a suspended Job began to wait, as the API server recorded it: its `Suspended`
/// condition's last transition (a preempted Job, or one the Job controller marked), else
/// its creation (a queued Job is created suspended). What lets a coordinator that adopts
/// a waiting Job (after a restart) count its wait from where it began, not from the
/// adoption. `None` for a Job that is not suspended.
pub fn waiting_since(job: &Job) -> Option<k8s_openapi::jiff::Timestamp> {
    if job_state(job) != JobState::Waiting {
        return None;
    }
    let suspended = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "Suspended" && c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref().map(|t| t.0));
    suspended.or_else(|| job.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// How long ago `since` was, by this machine's clock; zero for a time ahead of it (the
/// API server's clock may run ahead).
pub fn elapsed_since(since: k8s_openapi::jiff::Timestamp) -> Duration {
    let now = k8s_openapi::jiff::Timestamp::now();
    Duration::try_from(now.duration_since(since)).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_waiting_job_waits_since_its_suspension_else_its_creation() {
        let created = "2026-12-01T08:00:00Z";
        let suspended = "2026-12-01T08:05:00Z";
        let mut j = job(json!({
            "metadata": {"name": "j", "creationTimestamp": created},
            "spec": {"suspend": true, "template": {}},
        }));
        assert_eq!(waiting_since(&j), Some(created.parse().unwrap()));
        j.status = serde_json::from_value(json!({"conditions": [
            {"type": "Suspended", "status": "True", "lastTransitionTime": suspended}
        ]}))
        .unwrap();
        assert_eq!(waiting_since(&j), Some(suspended.parse().unwrap()));
        j.spec.as_mut().unwrap().suspend = Some(false);
        assert_eq!(waiting_since(&j), None, "running: not waiting");
        let ahead =
            k8s_openapi::jiff::Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_secs(60);
        assert_eq!(elapsed_since(ahead), Duration::ZERO);
        let past =
            k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(90);
        assert!(elapsed_since(past) >= Duration::from_secs(90));
    }

    fn job(v: Value) -> Job {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_queued_job_carries_the_labels_and_starts_suspended() {
        let mut j =
            job(json!({"metadata": {"name": "j", "labels": {"a": "b"}}, "spec": {"template": {}}}));
        queue_job(&mut j, "team-a", Some("high"));
        let labels = j.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[LABEL_QUEUE], "team-a");
        assert_eq!(labels[LABEL_PRIORITY], "high");
        assert_eq!(labels["a"], "b");
        assert_eq!(j.spec.as_ref().unwrap().suspend, Some(true));
        assert_eq!(queue_of(&j), Some("team-a"));
        // A WasmTask's own queue replaces the configured one.
        queue_job(&mut j, "team-b", None);
        assert_eq!(queue_of(&j), Some("team-b"));
        assert_eq!(j.metadata.labels.as_ref().unwrap()[LABEL_PRIORITY], "high");
    }

    #[test]
    fn queue_names_must_be_label_values() {
        for good in ["q", "team-a", "a.b_c", &"x".repeat(63)] {
            assert!(is_label_value(good), "{good}");
        }
        for bad in ["", "-a", "a-", "a b", "ä", &"x".repeat(64)] {
            assert!(!is_label_value(bad), "{bad}");
        }
    }

    #[test]
    fn a_suspended_job_waits_and_a_finished_one_is_finished_even_if_suspended() {
        let waiting = job(json!({"spec": {"suspend": true, "template": {}}}));
        assert_eq!(job_state(&waiting), JobState::Waiting);
        let running = job(json!({"spec": {"suspend": false, "template": {}}}));
        assert_eq!(job_state(&running), JobState::Running);
        let plain = job(json!({"spec": {"template": {}}}));
        assert_eq!(job_state(&plain), JobState::Running);
        let done = job(json!({"spec": {"suspend": true, "template": {}},
            "status": {"conditions": [{"type": "Complete", "status": "True"}]}}));
        assert_eq!(job_state(&done), JobState::Finished(JobEnd::Complete));
    }

    #[test]
    fn the_workload_says_why_it_waits_or_why_it_was_evicted() {
        let unknown = json!({"status": {"conditions": [
            {"type": "QuotaReserved", "status": "False", "reason": "Inadmissible",
             "message": "LocalQueue nope doesn't exist"}]}});
        assert_eq!(
            workload_says(&unknown).as_deref(),
            Some("Inadmissible: LocalQueue nope doesn't exist")
        );
        let evicted = json!({"status": {"conditions": [
            {"type": "QuotaReserved", "status": "False", "reason": "Pending", "message": "no room"},
            {"type": "Evicted", "status": "True", "reason": "Preempted",
             "message": "Preempted to accommodate a higher priority Workload"}]}});
        assert_eq!(
            workload_says(&evicted).as_deref(),
            Some("Preempted: Preempted to accommodate a higher priority Workload")
        );
        let admitted = json!({"status": {"conditions": [
            {"type": "QuotaReserved", "status": "True", "reason": "QuotaReserved", "message": "ok"}]}});
        assert_eq!(workload_says(&admitted), None);
        assert_eq!(workload_says(&json!({})), None);
    }

    /// The admission budget runs from when the Job began to wait, and only while it waits:
    /// the task's own timeout is not spent on it (the backend bounds the run from
    /// admission on).
    #[test]
    fn the_admission_budget_is_counted_from_the_wait_alone() {
        let s = Duration::from_secs;
        assert_eq!(admission_left(s(100), None), None);
        assert_eq!(admission_left(s(3), Some(s(10))), Some(s(7)));
        assert_eq!(admission_left(s(30), Some(s(10))), Some(Duration::ZERO));
    }
}
