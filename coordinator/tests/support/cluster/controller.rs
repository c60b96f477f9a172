//! The Job controller, as Kubernetes 1.33 runs the Jobs of a task runner (one completion,
//! parallelism 1, NonIndexed): one pod at a time from the template, a replacement after a
//! backoff while failures stay within backoffLimit, podFailurePolicy (`onExitCodes` over
//! containers then init containers; `onPodConditions` never match, since nothing here sets
//! `DisruptionTarget`), activeDeadlineSeconds from startTime, and the 1.33 terminal
//! conditions: `SuccessCriteriaMet` or `FailureTarget` first, then `Complete` or `Failed`
//! once no pod is active. Active pods of a failing Job are killed and end up Failed.
//!
//! Suspension as in 1.33: a suspended Job's active pods are deleted (not counted as
//! failures), it gets the `Suspended` condition and loses its `startTime`; resumed, the
//! condition turns False and `startTime` is set anew, so activeDeadlineSeconds counts from
//! the resumption.
//!
//! Also the garbage collector's part for objects whose owners are all gone (a pod whose Job
//! was deleted while the pod was being created, a Job whose WasmTask was): they are deleted.
//!
//! Simplified: counted pods are remembered in memory (Kubernetes tracks them with a
//! finalizer and `uncountedTerminatedPods`); `ttlSecondsAfterFinished` is ignored, so finished Jobs stay
//! until deleted; success with several completions or indexes is not modelled.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobSpec, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;

use super::store::{ApiError, Res, Selector, Store, CONTROLLER_UID, JOB_NAME};
use super::Cluster;

/// What the controller remembers of a Job between passes.
#[derive(Debug, Default)]
struct Tracking {
    /// Terminal pods already added to `succeeded` / `failed`.
    counted: HashSet<String>,
    /// No replacement pod before this.
    retry_at: Option<Instant>,
}

pub(super) async fn run(c: Arc<Cluster>) {
    let mut wake = c.changed.subscribe();
    let mut tracking: HashMap<String, Tracking> = HashMap::new();
    loop {
        let jobs = c.read(|s| s.list(Res::Jobs, None, &Selector::default()));
        let jobs: Vec<Job> = jobs
            .into_iter()
            .filter_map(|j| serde_json::from_value(j).ok())
            .collect();
        tracking.retain(|uid, _| jobs.iter().any(|j| j.metadata.uid.as_ref() == Some(uid)));
        for job in &jobs {
            let uid = job.metadata.uid.clone().unwrap_or_default();
            reconcile(&c, job, tracking.entry(uid).or_default());
        }
        collect_garbage(&c);
        // Deadlines and backoffs are timed: look again at least every 50 ms.
        let _ = tokio::time::timeout(Duration::from_millis(50), wake.changed()).await;
    }
}

/// The garbage collector's part: an object all of whose owners are gone is deleted (in
/// the background, so its own dependents follow), as happens to a pod created by a pass
/// that raced its Job's deletion, or a Job created for a WasmTask being deleted.
fn collect_garbage(c: &Cluster) {
    for (res, ns, name) in c.read(Store::orphans) {
        let _ = c.delete(res, &ns, &name, Some("Background"), None);
    }
}

/// Where a Job is heading once its fate is known: (success?, reason, message).
type Target = (bool, String, String);

fn target_of(status: &JobStatus) -> Option<Target> {
    status.conditions.iter().flatten().find_map(|c| {
        let reason = || c.reason.clone().unwrap_or_default();
        let message = || c.message.clone().unwrap_or_default();
        match c.type_.as_str() {
            "SuccessCriteriaMet" => Some((true, reason(), message())),
            "FailureTarget" => Some((false, reason(), message())),
            _ => None,
        }
    })
}

fn add_condition(status: &mut JobStatus, type_: &str, reason: &str, message: &str) {
    let conds = status.conditions.get_or_insert_with(Vec::new);
    if conds.iter().any(|c| c.type_ == type_) {
        return;
    }
    let now = Time(Timestamp::now());
    conds.push(JobCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(now.clone()),
        last_transition_time: Some(now),
    });
}

fn has_condition(status: &JobStatus, type_: &str, value: &str) -> bool {
    status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == type_ && c.status == value)
}

/// Sets condition `type_` (replacing one of that type whose status differs).
fn set_condition(status: &mut JobStatus, type_: &str, value: bool, reason: &str, message: &str) {
    let value = if value { "True" } else { "False" };
    let conds = status.conditions.get_or_insert_with(Vec::new);
    conds.retain(|c| c.type_ != type_ || c.status == value);
    if conds.iter().any(|c| c.type_ == type_) {
        return;
    }
    let now = Time(Timestamp::now());
    conds.push(JobCondition {
        type_: type_.into(),
        status: value.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(now.clone()),
        last_transition_time: Some(now),
    });
}

/// A suspended Job: its active pods are deleted, it says `Suspended` and has no
/// `startTime` (set again when it is resumed).
fn suspend(c: &Cluster, ns: &str, name: &str, uid: &str, mut status: JobStatus) {
    let pods = c.read(|s| s.list(Res::Pods, Some(ns), &Selector::label(CONTROLLER_UID, uid)));
    for pod in pods {
        let terminal = matches!(
            pod["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        );
        if let (false, Some(pod_name)) = (terminal, pod["metadata"]["name"].as_str()) {
            let _ = c.delete(Res::Pods, ns, pod_name, Some("Background"), None);
        }
    }
    if has_condition(&status, "Suspended", "True")
        && status.start_time.is_none()
        && status.active.is_none()
    {
        return;
    }
    set_condition(
        &mut status,
        "Suspended",
        true,
        "JobSuspended",
        "Job suspended",
    );
    status.start_time = None;
    status.active = None;
    status.ready = Some(0);
    let new = serde_json::to_value(&status).unwrap();
    c.write(|s| {
        s.modify(Res::Jobs, ns, name, |o| {
            if o["metadata"]["uid"] == uid {
                o["status"] = new;
            }
        })
    });
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

fn reconcile(c: &Cluster, job: &Job, t: &mut Tracking) {
    let meta = &job.metadata;
    let (Some(ns), Some(name), Some(uid)) = (&meta.namespace, &meta.name, &meta.uid) else {
        return;
    };
    let spec = job.spec.clone().unwrap_or_default();
    let mut status = job.status.clone().unwrap_or_default();
    let finished = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Complete" || c.type_ == "Failed");
    if finished {
        return;
    }
    if spec.suspend == Some(true) {
        suspend(c, ns, name, uid, status);
        return;
    }
    if has_condition(&status, "Suspended", "True") {
        set_condition(&mut status, "Suspended", false, "JobResumed", "Job resumed");
        status.start_time = None;
    }
    let start = status
        .start_time
        .get_or_insert_with(|| Time(Timestamp::now()))
        .0;
    let pods = c.read(|s| s.list(Res::Pods, Some(ns), &Selector::label(CONTROLLER_UID, uid)));
    let pods: Vec<Pod> = pods
        .into_iter()
        .filter_map(|p| serde_json::from_value(p).ok())
        .collect();

    let mut target = target_of(&status);
    let (mut succeeded, mut failed) = (status.succeeded.unwrap_or(0), status.failed.unwrap_or(0));
    for pod in &pods {
        let terminal = matches!(phase(pod), "Succeeded" | "Failed");
        if !terminal
            || !t
                .counted
                .insert(pod.metadata.uid.clone().unwrap_or_default())
        {
            continue;
        }
        if phase(pod) == "Succeeded" {
            succeeded += 1;
            continue;
        }
        match target.is_none().then(|| failure_action(&spec, pod, ns)) {
            Some(Action::Ignore) => {}
            Some(Action::FailJob(message)) => {
                failed += 1;
                target = Some((false, "PodFailurePolicy".into(), message));
            }
            Some(Action::Count) | None => failed += 1,
        }
        let doublings = u32::try_from(failed.max(1) - 1).unwrap_or(0).min(6);
        t.retry_at = Some(Instant::now() + c.pod_backoff * 2u32.pow(doublings));
    }
    let active: Vec<&Pod> = pods
        .iter()
        .filter(|p| !matches!(phase(p), "Succeeded" | "Failed"))
        .collect();

    if target.is_none() {
        let deadline = spec.active_deadline_seconds;
        let elapsed = Timestamp::now().as_second() - start.as_second();
        target = if succeeded >= spec.completions.unwrap_or(1) {
            Some((
                true,
                "CompletionsReached".into(),
                "Reached expected number of succeeded pods".into(),
            ))
        } else if failed > spec.backoff_limit.unwrap_or(6) {
            Some((
                false,
                "BackoffLimitExceeded".into(),
                "Job has reached the specified backoff limit".into(),
            ))
        } else if deadline.is_some_and(|d| elapsed >= d) {
            Some((
                false,
                "DeadlineExceeded".into(),
                "Job was active longer than specified deadline".into(),
            ))
        } else {
            None
        };
    }
    let mut active_count = active.len();
    match &target {
        Some((success, reason, message)) => {
            let (interim, last) = if *success {
                ("SuccessCriteriaMet", "Complete")
            } else {
                ("FailureTarget", "Failed")
            };
            add_condition(&mut status, interim, reason, message);
            for p in &active {
                c.kubelet
                    .stop(p.metadata.uid.as_deref().unwrap_or_default(), false);
            }
            if active.is_empty() {
                add_condition(&mut status, last, reason, message);
                if *success {
                    status.completion_time = Some(Time(Timestamp::now()));
                }
            }
        }
        None if active.is_empty() && t.retry_at.is_none_or(|at| Instant::now() >= at) => {
            let pod = serde_json::to_value(pod_for(&spec, name, uid)).unwrap();
            // Only while the Job is still there: this pass read it before a delete may have.
            let job_alive = |s: &Store| match s.get(Res::Jobs, ns, name) {
                Ok(j) if j["metadata"]["uid"] == uid.as_str() => Ok(()),
                _ => Err(ApiError::not_found(Res::Jobs, name)),
            };
            if c.create_if(Res::Pods, ns, pod, job_alive).is_ok() {
                active_count += 1;
            }
        }
        None => {}
    }
    // Zero counts are omitted, as the API server's `omitempty` does; `ready` is always set.
    let nonzero = |n: i32| (n != 0).then_some(n);
    status.active = nonzero(i32::try_from(active_count).unwrap_or(i32::MAX));
    status.succeeded = nonzero(succeeded);
    status.failed = nonzero(failed);
    let ready = active.iter().filter(|p| {
        let conds = p.status.as_ref().and_then(|s| s.conditions.as_ref());
        conds.is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    });
    status.ready = Some(i32::try_from(ready.count()).unwrap_or(i32::MAX));
    status.terminating = Some(0);
    status.uncounted_terminated_pods = Some(Default::default());
    let new = serde_json::to_value(&status).unwrap();
    c.write(|s| {
        s.modify(Res::Jobs, ns, name, |o| {
            if o["metadata"]["uid"] == uid.as_str() {
                o["status"] = new;
            }
        })
    });
}

enum Action {
    FailJob(String),
    Ignore,
    Count,
}

/// The first podFailurePolicy rule matching a failed pod.
fn failure_action(spec: &JobSpec, pod: &Pod, ns: &str) -> Action {
    let Some(policy) = &spec.pod_failure_policy else {
        return Action::Count;
    };
    let status = pod.status.clone().unwrap_or_default();
    let exits: Vec<(String, i32)> = status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
        .filter_map(|cs| {
            let code = cs.state.as_ref()?.terminated.as_ref()?.exit_code;
            (code != 0).then(|| (cs.name.clone(), code))
        })
        .collect();
    for (i, rule) in policy.rules.iter().enumerate() {
        let Some(req) = &rule.on_exit_codes else {
            continue;
        };
        let hit = exits.iter().find(|(container, code)| {
            req.container_name.as_ref().is_none_or(|n| n == container)
                && req.values.contains(code) == (req.operator == "In")
        });
        let Some((container, code)) = hit else {
            continue;
        };
        let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
        return match rule.action.as_str() {
            "FailJob" => Action::FailJob(format!(
                "Container {container} for pod {ns}/{pod_name} failed with exit code {code} matching FailJob rule at index {i}"
            )),
            "Ignore" => Action::Ignore,
            _ => Action::Count,
        };
    }
    Action::Count
}

/// A pod from the Job's template: its labels plus the Job's, owned by the Job.
fn pod_for(spec: &JobSpec, name: &str, uid: &str) -> Pod {
    let template = spec.template.metadata.clone().unwrap_or_default();
    let mut labels = template.labels.unwrap_or_default();
    for (k, v) in [
        (CONTROLLER_UID, uid),
        (JOB_NAME, name),
        ("controller-uid", uid),
        ("job-name", name),
    ] {
        labels.insert(k.into(), v.into());
    }
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            labels: Some(labels),
            annotations: template.annotations,
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "Job".into(),
                name: name.into(),
                uid: uid.into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        spec: spec.template.spec.clone(),
        status: None,
    }
}
