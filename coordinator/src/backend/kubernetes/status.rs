//! What a task's Job and pod say about how it went. Pure: Kubernetes objects in, a verdict
//! out; the Kubernetes backend watches the objects and acts on the verdict.
//!
//! - [`job_finished`] reads the Job's conditions: `Complete` or `Failed`. (kube's
//!   `is_job_completed` matches `Complete` only, so a failed Job would be waited on until
//!   the timeout.)
//! - [`fail_fast`] spots, while the pod still runs, failures that will not heal: an image
//!   that cannot be pulled. The task fails at once, naming the image, instead of waiting
//!   out the deadline.
//! - [`verdict`] turns a finished Job and its pod into the task's outcome: the runner's
//!   result from its termination message, or a named cause (fetch failed, OOMKilled,
//!   deadline exceeded, no result). A pod that finished without a result is an error,
//!   never a success.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use runner::TaskResult;

use crate::backend::kubernetes::job::{FETCHER_CONTAINER, RUNNER_CONTAINER};
use crate::backend::{AttemptOutcome, FailureKind};
use crate::task::Stage;

/// How a Job ended, from its conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEnd {
    Complete,
    Failed { reason: String, message: String },
}

/// `Some` once the Job has a true `Complete` or `Failed` condition.
pub fn job_finished(job: &Job) -> Option<JobEnd> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    for c in conditions.iter().filter(|c| c.status == "True") {
        match c.type_.as_str() {
            "Complete" => return Some(JobEnd::Complete),
            "Failed" => {
                return Some(JobEnd::Failed {
                    reason: c.reason.clone().unwrap_or_default(),
                    message: c.message.clone().unwrap_or_default(),
                })
            }
            _ => {}
        }
    }
    None
}

const IMAGE_PULL_REASONS: [&str; 4] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
];

/// A failure visible while the pod is still pending or running that will not heal.
pub fn fail_fast(pod: &Pod) -> Option<AttemptOutcome> {
    let status = pod.status.as_ref()?;
    let all = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    for cs in all {
        let Some(waiting) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
            continue;
        };
        let reason = waiting.reason.as_deref().unwrap_or("");
        if IMAGE_PULL_REASONS.contains(&reason) {
            return Some(AttemptOutcome::failed(
                FailureKind::ImagePull,
                stage_of(&cs.name),
                format!(
                    "container `{}` cannot start: {reason} for image {}: {}",
                    cs.name,
                    cs.image,
                    waiting.message.as_deref().unwrap_or("")
                ),
                // The image name will not fix itself; retrying only waits longer.
                false,
            ));
        }
    }
    None
}

fn stage_of(container: &str) -> Stage {
    if container == FETCHER_CONTAINER {
        Stage::Fetch
    } else {
        Stage::Run
    }
}

fn find<'a>(statuses: Option<&'a Vec<ContainerStatus>>, name: &str) -> Option<&'a ContainerStatus> {
    statuses?.iter().find(|c| c.name == name)
}

/// How a container terminated: (exit code, reason, message); last state included, since a
/// container restarted by the kubelet keeps the first termination there.
fn terminated(cs: &ContainerStatus) -> Option<(i32, String, String)> {
    let t = cs
        .state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .or_else(|| cs.last_state.as_ref().and_then(|s| s.terminated.as_ref()))?;
    Some((
        t.exit_code,
        t.reason.clone().unwrap_or_default(),
        t.message.clone().unwrap_or_default(),
    ))
}

/// What the backend needs to finish judging a Job.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Done(Box<AttemptOutcome>),
    /// The runner ended but its termination message holds no result: read the last JSON
    /// line of its log and call [`verdict_from_log`].
    NeedLog {
        exit_code: Option<i32>,
    },
}

/// Judges a finished Job (`end`) by its pod.
pub fn verdict(end: &JobEnd, pod: Option<&Pod>) -> Verdict {
    let status = pod.and_then(|p| p.status.as_ref());
    let fetcher = status.and_then(|s| find(s.init_container_statuses.as_ref(), FETCHER_CONTAINER));
    let runner = status.and_then(|s| find(s.container_statuses.as_ref(), RUNNER_CONTAINER));

    if let Some((code, reason, message)) = fetcher
        .and_then(terminated)
        .filter(|(code, _, _)| *code != 0)
    {
        return finished(AttemptOutcome::failed(
            FailureKind::Fetch,
            Stage::Fetch,
            format!(
                "the fetcher exited with {code}{}: {}",
                paren(&reason),
                message.trim()
            ),
            // Bad usage (an unparsable CID) cannot be cured by a retry.
            code != i32::from(pod::exit::fetcher::USAGE),
        ));
    }
    if let Some((code, reason, message)) = runner.and_then(terminated) {
        if reason == "OOMKilled" {
            return finished(AttemptOutcome::failed(
                FailureKind::OutOfMemory,
                Stage::Run,
                "the runner was OOMKilled: the container's memory limit is below what the task needs (raise resources.limits.memory in the Job template, or lower MAX_MEMORY)".into(),
                false,
            ));
        }
        if let Some(result) = TaskResult::last_in(&message) {
            return finished(AttemptOutcome::from_result(result, Some(code)));
        }
        return Verdict::NeedLog {
            exit_code: Some(code),
        };
    }
    match end {
        JobEnd::Failed { reason, message } if reason == "DeadlineExceeded" => {
            let stage = if fetcher.and_then(terminated).is_some() { Stage::Run } else { Stage::Fetch };
            finished(AttemptOutcome::failed(
                FailureKind::Deadline,
                stage,
                format!("the Job's activeDeadlineSeconds passed: {message}"),
                false,
            ))
        }
        JobEnd::Failed { reason, message } => finished(AttemptOutcome::failed(
            FailureKind::JobFailed,
            if fetcher.and_then(terminated).is_some() { Stage::Run } else { Stage::Fetch },
            format!("the Job failed{}: {message}", paren(reason)),
            true,
        )),
        JobEnd::Complete => finished(AttemptOutcome::failed(
            FailureKind::NoResult,
            Stage::Run,
            "the Job completed but its pod left no result (no runner status, termination message or log line)".into(),
            true,
        )),
    }
}

/// How long the fetcher and the runner ran in `pod`, from their containers' start and
/// finish times (for the stage-duration metrics).
pub fn stage_times(pod: &Pod) -> Vec<(Stage, std::time::Duration)> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    let took = |cs: &ContainerStatus| {
        let t = cs.state.as_ref()?.terminated.as_ref()?;
        let (start, end) = (t.started_at.as_ref()?, t.finished_at.as_ref()?);
        std::time::Duration::try_from(end.0.duration_since(start.0)).ok()
    };
    [
        (
            Stage::Fetch,
            find(status.init_container_statuses.as_ref(), FETCHER_CONTAINER),
        ),
        (
            Stage::Run,
            find(status.container_statuses.as_ref(), RUNNER_CONTAINER),
        ),
    ]
    .into_iter()
    .filter_map(|(stage, cs)| Some((stage, took(cs?)?)))
    .collect()
}

/// The log fallback: the last line of the runner's log that is a result object.
pub fn verdict_from_log(log: &str, exit_code: Option<i32>) -> AttemptOutcome {
    match TaskResult::last_in(log) {
        Some(result) => AttemptOutcome::from_result(result, exit_code),
        None => AttemptOutcome::failed(
            FailureKind::NoResult,
            Stage::Run,
            format!(
                "the runner ended{} without a result in its termination message or its log",
                exit_code
                    .map(|c| format!(" with exit code {c}"))
                    .unwrap_or_default()
            ),
            true,
        ),
    }
}

fn finished(outcome: AttemptOutcome) -> Verdict {
    Verdict::Done(Box::new(outcome))
}

fn paren(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(" ({reason})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::ReportStatus;
    use runner::Status;
    use serde_json::json;

    fn job(conditions: serde_json::Value) -> Job {
        serde_json::from_value(
            json!({"metadata": {"name": "j"}, "status": {"conditions": conditions}}),
        )
        .unwrap()
    }

    fn pod(init: serde_json::Value, main: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "status": {"initContainerStatuses": init, "containerStatuses": main}
        }))
        .unwrap()
    }

    fn status(name: &str, state: serde_json::Value) -> serde_json::Value {
        json!({"name": name, "image": format!("reg/{name}:1"), "imageID": "", "ready": false, "restartCount": 0, "state": state})
    }

    fn terminated(code: i32, reason: &str, message: &str) -> serde_json::Value {
        json!({"terminated": {"exitCode": code, "reason": reason, "message": message}})
    }

    fn done(v: Verdict) -> AttemptOutcome {
        match v {
            Verdict::Done(o) => *o,
            other => panic!("not done: {other:?}"),
        }
    }

    #[test]
    fn failed_jobs_are_finished_too() {
        assert_eq!(
            job_finished(&job(json!([{"type": "Complete", "status": "True"}]))),
            Some(JobEnd::Complete)
        );
        let failed = job(
            json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "m"}]),
        );
        assert!(
            matches!(job_finished(&failed), Some(JobEnd::Failed { reason, .. }) if reason == "BackoffLimitExceeded")
        );
        assert_eq!(
            job_finished(&job(json!([{"type": "Complete", "status": "False"}]))),
            None
        );
        assert_eq!(job_finished(&job(json!([]))), None);
    }

    #[test]
    fn the_result_comes_from_the_termination_message() {
        let mut r = runner::TaskResult::new(Some("t".into()), runner::Status::Trap);
        r.error = Some("wasm trap: unreachable".into());
        let p = pod(
            json!([status("fetcher", terminated(0, "Completed", ""))]),
            json!([status("runner", terminated(2, "Error", &r.to_line()))]),
        );
        let failed = JobEnd::Failed {
            reason: "PodFailurePolicy".into(),
            message: String::new(),
        };
        let o = done(verdict(&failed, Some(&p)));
        assert_eq!(
            (o.status, o.stage, o.retryable),
            (ReportStatus::Runner(Status::Trap), Some(Stage::Run), false)
        );
        assert_eq!(o.result, Some(r));
    }

    #[test]
    fn a_missing_message_asks_for_the_log_and_the_log_decides() {
        let p = pod(
            json!([]),
            json!([status("runner", terminated(0, "Completed", "not json"))]),
        );
        assert_eq!(
            verdict(&JobEnd::Complete, Some(&p)),
            Verdict::NeedLog { exit_code: Some(0) }
        );
        let r = runner::TaskResult::new(None, runner::Status::Ok);
        let o = verdict_from_log(&format!("log\n{}\n", r.to_line()), Some(0));
        assert_eq!(o.status, ReportStatus::OK);
        let o = verdict_from_log("nothing useful", Some(0));
        assert_eq!(
            (o.status, o.retryable),
            (ReportStatus::Runner(Status::Error), true)
        );
        assert!(o.error.unwrap().contains("without a result"));
    }

    #[test]
    fn each_failure_is_named() {
        let fetch = pod(
            json!([status(
                "fetcher",
                terminated(1, "Error", "QmX: could not be fetched")
            )]),
            json!([]),
        );
        let o = done(verdict(
            &JobEnd::Failed {
                reason: "BackoffLimitExceeded".into(),
                message: String::new(),
            },
            Some(&fetch),
        ));
        assert_eq!(
            (o.status, o.stage),
            (ReportStatus::FetchFailed, Some(Stage::Fetch))
        );
        assert!(o.error.unwrap().contains("QmX: could not be fetched"));

        let oom = pod(
            json!([]),
            json!([status("runner", terminated(137, "OOMKilled", ""))]),
        );
        let o = done(verdict(
            &JobEnd::Failed {
                reason: "BackoffLimitExceeded".into(),
                message: String::new(),
            },
            Some(&oom),
        ));
        assert!(o.error.unwrap().contains("OOMKilled"));

        let running_fetch = pod(
            json!([status("fetcher", json!({"running": {}}))]),
            json!([]),
        );
        let o = done(verdict(
            &JobEnd::Failed {
                reason: "DeadlineExceeded".into(),
                message: "too slow".into(),
            },
            Some(&running_fetch),
        ));
        assert_eq!(
            (o.status, o.stage),
            (ReportStatus::Runner(Status::Timeout), Some(Stage::Fetch))
        );

        let o = done(verdict(&JobEnd::Complete, None));
        assert_eq!(
            o.status,
            ReportStatus::Runner(Status::Error),
            "a pod without a result is never a success"
        );
    }

    #[test]
    fn stage_times_come_from_the_containers_start_and_finish() {
        let ran = |start: &str, end: &str| json!({"terminated": {"exitCode": 0, "startedAt": start, "finishedAt": end}});
        let p = pod(
            json!([status(
                "fetcher",
                ran("2026-01-01T00:00:00Z", "2026-01-01T00:00:02Z")
            )]),
            json!([status("runner", json!({"running": {}}))]),
        );
        assert_eq!(
            stage_times(&p),
            vec![(Stage::Fetch, std::time::Duration::from_secs(2))]
        );
    }

    #[test]
    fn image_pull_errors_fail_fast_naming_the_image() {
        let p = pod(
            json!([status(
                "fetcher",
                json!({"waiting": {"reason": "ImagePullBackOff", "message": "not found"}})
            )]),
            json!([]),
        );
        let o = fail_fast(&p).unwrap();
        assert_eq!((o.stage, o.retryable), (Some(Stage::Fetch), false));
        assert!(o.error.unwrap().contains("reg/fetcher:1"));
        let fine = pod(
            json!([status(
                "fetcher",
                json!({"waiting": {"reason": "PodInitializing"}})
            )]),
            json!([]),
        );
        assert_eq!(fail_fast(&fine), None);
    }
}
