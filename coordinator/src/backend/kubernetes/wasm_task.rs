//! The `WasmTask` custom resource (`k8s/crd.yaml`, group `wasm-exec.io`, version
//! `v1alpha1`): its wire types, and the conversions between a WasmTask and the ledger's
//! [`Entry`], without IO. The object's name is the task id's [`task_label`] (the id itself
//! when it is a DNS label); `spec.taskId` keeps the raw id (unset on an object a user
//! created with `kubectl`: its name is the id).

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::NamespaceResourceScope;
use serde::{Deserialize, Serialize};

use super::job::{task_label, LABEL_MANAGED_BY, MANAGER};
use crate::ledger::{rfc3339, unix_ms, Entry, Phase};
use crate::task::{ReportStatus, Task, TaskError, TaskLimits, TaskReport};

pub const GROUP: &str = "wasm-exec.io";
pub const VERSION: &str = "v1alpha1";
pub const KIND: &str = "WasmTask";
pub const PLURAL: &str = "wasmtasks";
/// The condition saying every sink has the report.
pub const PUBLISHED: &str = "Published";
/// The label that finds a WasmTask by its cache key (the key's first 63 hex digits: a
/// label value's limit), and the annotation holding the whole key.
pub const CACHE_KEY_LABEL: &str = "wasm-exec.io/cache-key";
/// The condition saying whether Kueue has admitted the task's Job (set only for a Job that
/// had to wait); while it is False the phase of a running task reads [`ADMITTING`].
pub const ADMITTED: &str = "Admitted";
pub const ADMITTING: &str = "Admitting";
/// The most of the result values kept in `status.result` (the whole report is in
/// `status.report`).
pub const RESULT_MAX: usize = 1024;
/// The most of the error kept in `status.error`.
pub const ERROR_MAX: usize = 4096;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WasmTask {
    #[serde(rename = "apiVersion", default = "api_version")]
    pub api_version: String,
    #[serde(default = "kind")]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: WasmTaskSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<WasmTaskStatus>,
}

fn api_version() -> String {
    format!("{GROUP}/{VERSION}")
}

fn kind() -> String {
    KIND.into()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WasmTaskSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// Empty only for a task recorded as refused (`invalid`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub wasm_cid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_cid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<WasmTaskLimits>,
    /// Why the task cannot run ([`Task::invalid`]): a malformed on-chain task, recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid: Option<String>,
    /// [`Task::deterministic`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deterministic: bool,
    /// The Kueue LocalQueue of this task's Job, instead of the coordinator's `queue_name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_name: Option<String>,
}

/// `spec.limits`: the task's [`TaskLimits`] in the API's spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WasmTaskLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WasmTaskStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The receipt's `result_sha256`: the runner's result in RFC 8785 form, hashed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_sha256: Option<String>,
    /// [`crate::receipt::Receipt::sha256`] of the report's receipt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delivered: Vec<String>,
    /// [`crate::ledger::Ledger::note`]s: e.g. the contract sink's transaction hash.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub notes: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Times Kueue suspended the task's Job again after admitting it (its pods deleted).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub preemptions: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What the Kubernetes backend learns of a running task's Job and Kueue, for its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// The Job waits for admission: why, as far as known (the Workload's message).
    Waiting(String),
    Admitted,
    /// Kueue suspended the Job again and deleted its pods: it waits to be admitted again.
    Preempted(String),
}

/// Carries the admission record of `previous` (the [`ADMITTED`] condition and the
/// preemption count, which [`status_of`] does not know) into `status`, applies `update`,
/// and makes a running task whose Job is not admitted read [`ADMITTING`].
pub fn admission_status(
    status: &mut WasmTaskStatus,
    previous: &WasmTaskStatus,
    update: Option<&Admission>,
    now_ms: i64,
) {
    status.preemptions = previous.preemptions;
    let mut admitted = previous
        .conditions
        .iter()
        .find(|c| c.type_ == ADMITTED)
        .cloned();
    let condition = |ok: bool, reason: &str, message: String| Condition {
        type_: ADMITTED.into(),
        status: if ok { "True" } else { "False" }.into(),
        last_transition_time: Some(rfc3339(now_ms)),
        reason: Some(reason.into()),
        message: Some(runner::result::cap_text(&message, ERROR_MAX)),
    };
    match update {
        None => {}
        Some(Admission::Waiting(why)) => admitted = Some(condition(false, "Waiting", why.clone())),
        Some(Admission::Admitted) => {
            admitted = Some(condition(true, "Admitted", "Kueue admitted the Job".into()))
        }
        Some(Admission::Preempted(why)) => {
            status.preemptions = status.preemptions.saturating_add(1);
            admitted = Some(condition(false, "Preempted", why.clone()));
        }
    }
    if let Some(c) = admitted {
        if c.status == "False" && status.phase.as_deref() == Some("Running") {
            status.phase = Some(ADMITTING.into());
        }
        status.conditions.retain(|k| k.type_ != ADMITTED);
        status.conditions.push(c);
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl kube::Resource for WasmTask {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        KIND.into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        GROUP.into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        VERSION.into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        PLURAL.into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// The object name of a task's WasmTask.
pub fn name_of(task_id: &str) -> String {
    task_label(task_id)
}

/// A new WasmTask for `task` (no status: the API server ignores it on create).
pub fn for_task(task: &Task, namespace: &str) -> WasmTask {
    WasmTask {
        api_version: api_version(),
        kind: kind(),
        metadata: ObjectMeta {
            name: Some(name_of(&task.task_id)),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([(
                LABEL_MANAGED_BY.to_owned(),
                MANAGER.to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        spec: WasmTaskSpec {
            task_id: Some(task.task_id.clone()),
            wasm_cid: task.wasm_cid.clone(),
            input_cid: task.input_cid.clone(),
            entry: task.entry.clone(),
            limits: (!task.limits.is_none()).then_some(WasmTaskLimits {
                timeout_seconds: task.limits.timeout_seconds,
                fuel: task.limits.fuel,
            }),
            invalid: task.invalid.clone(),
            deterministic: task.deterministic,
            queue_name: None,
        },
        status: None,
    }
}

/// The task a WasmTask asks for, validated like a task from any source.
pub fn task_of(wt: &WasmTask) -> Result<Task, TaskError> {
    let task_id = wt
        .spec
        .task_id
        .clone()
        .or_else(|| wt.metadata.name.clone())
        .unwrap_or_default();
    Task {
        task_id,
        wasm_cid: wt.spec.wasm_cid.clone(),
        input_cid: wt.spec.input_cid.clone(),
        entry: wt.spec.entry.clone(),
        limits: wt
            .spec
            .limits
            .map_or_else(TaskLimits::default, |l| TaskLimits {
                timeout_seconds: l.timeout_seconds,
                fuel: l.fuel,
            }),
        invalid: wt.spec.invalid.clone(),
        deterministic: wt.spec.deterministic,
    }
    .validate()
}

/// The ledger entry a WasmTask stands for. `seq` is 0: the API server has no sequence.
pub fn entry_of(wt: &WasmTask) -> Result<Entry, TaskError> {
    let task = task_of(wt)?;
    let status = wt.status.clone().unwrap_or_default();
    let state = match status.phase.as_deref() {
        Some("Running" | ADMITTING) => Phase::Running,
        Some("Succeeded" | "Failed") => Phase::Done,
        _ => Phase::Queued,
    };
    let report: Option<TaskReport> = status
        .report
        .clone()
        .and_then(|r| serde_json::from_value(r).ok());
    // A finished task without a readable report is not done as far as the ledger goes.
    let state = if state == Phase::Done && report.is_none() {
        Phase::Running
    } else {
        state
    };
    Ok(Entry {
        task_id: task.task_id.clone(),
        seq: 0,
        state,
        status: report.as_ref().map(|r| r.status),
        attempts: status.attempts,
        published: status
            .conditions
            .iter()
            .any(|c| c.type_ == PUBLISHED && c.status == "True"),
        accepted_at: wt
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(0, |t| t.0.as_millisecond()),
        started_at: status.start_time.as_deref().and_then(unix_ms),
        finished_at: status.finish_time.as_deref().and_then(unix_ms),
        admission: (status.phase.as_deref() == Some(ADMITTING)).then(|| {
            status
                .conditions
                .iter()
                .find(|c| c.type_ == ADMITTED)
                .and_then(|c| c.message.clone())
                .unwrap_or_else(|| "waiting for Kueue to admit the Job".into())
        }),
        task,
        report,
    })
}

/// The status that records `entry` (with the sinks that have its report).
pub fn status_of(entry: &Entry, job_name: &str, delivered: &[String]) -> WasmTaskStatus {
    let phase = match (entry.state, entry.status) {
        (Phase::Queued, _) => "Queued",
        (Phase::Running, _) => "Running",
        (Phase::Done, Some(ReportStatus::OK)) => "Succeeded",
        (Phase::Done, _) => "Failed",
    };
    let report = entry.report.as_ref();
    let result = report.map(|r| match (&r.result, r.status) {
        (Some(res), ReportStatus::OK) => runner::result::cap_text(
            &serde_json::to_string(&res.result).unwrap_or_default(),
            RESULT_MAX,
        ),
        _ => r.status.as_str().to_owned(),
    });
    let result_sha256 = report
        .and_then(|r| r.result.as_ref())
        .map(crate::receipt::result_sha256);
    let receipt_sha256 = report.and_then(|r| r.receipt.as_ref()).map(|r| r.sha256());
    let mut conditions = Vec::new();
    if entry.published {
        conditions.push(Condition {
            type_: PUBLISHED.into(),
            status: "True".into(),
            last_transition_time: entry.finished_at.map(rfc3339),
            reason: Some("EverySinkHasIt".into()),
            message: Some(format!("published to {}", delivered.join(", "))),
        });
    }
    WasmTaskStatus {
        phase: Some(phase.into()),
        attempts: entry.attempts,
        job_name: (entry.state != Phase::Queued).then(|| job_name.to_owned()),
        start_time: entry.started_at.map(rfc3339),
        finish_time: entry.finished_at.map(rfc3339),
        runner_status: entry.status.map(|s| s.as_str().to_owned()),
        result,
        error: report
            .and_then(|r| r.error.as_deref())
            .map(|e| runner::result::cap_text(e, ERROR_MAX)),
        result_sha256,
        receipt_sha256,
        report: report.and_then(|r| serde_json::to_value(r).ok()),
        delivered: delivered.to_vec(),
        notes: Default::default(),
        conditions,
        preemptions: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::state::{self, Transition};

    #[test]
    fn a_task_goes_into_a_wasm_task_and_back() {
        let task = Task {
            entry: Some("fib".into()),
            limits: TaskLimits {
                timeout_seconds: Some(30),
                fuel: None,
            },
            ..Task::example("Fib Task #1")
        };
        let wt = for_task(&task, "ns");
        // The API's spelling: camelCase, and only what the task asked for.
        assert_eq!(
            serde_json::to_value(&wt.spec).unwrap()["limits"],
            serde_json::json!({"timeoutSeconds": 30})
        );
        assert!(
            serde_json::to_value(for_task(&Task::example("t"), "ns").spec)
                .unwrap()
                .get("limits")
                .is_none()
        );
        assert_eq!(
            wt.metadata.name.as_deref(),
            Some(name_of("Fib Task #1").as_str())
        );
        let text = serde_json::to_string(&wt).unwrap();
        assert!(
            text.contains("\"apiVersion\":\"wasm-exec.io/v1alpha1\""),
            "{text}"
        );
        let back: WasmTask = serde_json::from_str(&text).unwrap();
        assert_eq!(task_of(&back).unwrap(), task);
        let e = entry_of(&back).unwrap();
        assert_eq!(
            (e.state, e.attempts, e.published),
            (Phase::Queued, 0, false)
        );
    }

    #[test]
    fn a_wasm_task_made_with_kubectl_takes_its_name_as_the_id() {
        let wt: WasmTask = serde_json::from_value(serde_json::json!({
            "apiVersion": "wasm-exec.io/v1alpha1", "kind": "WasmTask",
            "metadata": {"name": "my-task"},
            "spec": {"wasmCid": "QmPZ9gcCEpqKTo6aq61g2nXGUhM4iCL3ewB6LDXZCtioEB"}
        }))
        .unwrap();
        assert_eq!(task_of(&wt).unwrap().task_id, "my-task");
    }

    #[test]
    fn every_phase_of_an_entry_round_trips_through_its_status() {
        let task = Task::example("t");
        let mut wt = for_task(&task, "ns");
        let mut e = Entry::queued(task.clone(), 0, 0);
        let mut report = TaskReport::new(&task, ReportStatus::OK);
        report.attempts = 1;
        report.result = Some(runner::TaskResult::new(
            Some("t".into()),
            runner::Status::Ok,
        ));
        for t in [
            Transition::Start,
            Transition::Finish(Box::new(report.clone())),
            Transition::Published,
        ] {
            e = state::apply(e, t, 1_700_000_000_123).unwrap();
            wt.status = Some(status_of(&e, "wasm-t", &["stdout".into()]));
            let json = serde_json::to_value(&wt).unwrap();
            let back = entry_of(&serde_json::from_value(json).unwrap()).unwrap();
            assert_eq!(
                (
                    back.state,
                    back.attempts,
                    back.published,
                    back.started_at,
                    back.finished_at
                ),
                (
                    e.state,
                    e.attempts,
                    e.published,
                    e.started_at,
                    e.finished_at
                )
            );
            assert_eq!(back.report, e.report);
        }
        let status = wt.status.unwrap();
        assert_eq!(status.phase.as_deref(), Some("Succeeded"));
        assert_eq!(status.result_sha256.as_ref().map(String::len), Some(64));
    }

    #[test]
    fn a_job_waiting_for_admission_reads_admitting_and_preemptions_are_kept_across_writes() {
        let task = Task::example("t");
        let mut wt = for_task(&task, "ns");
        let running =
            state::apply(Entry::queued(task.clone(), 0, 0), Transition::Start, 1).unwrap();
        let write = |wt: &WasmTask, entry: &Entry, update: Option<&Admission>| {
            let mut status = status_of(entry, "wasm-t", &[]);
            admission_status(
                &mut status,
                &wt.status.clone().unwrap_or_default(),
                update,
                2,
            );
            status
        };
        let waiting = Admission::Waiting("LocalQueue nope doesn't exist".into());
        wt.status = Some(write(&wt, &running, Some(&waiting)));
        let status = wt.status.clone().unwrap();
        assert_eq!(status.phase.as_deref(), Some(ADMITTING));
        let admitted = status
            .conditions
            .iter()
            .find(|c| c.type_ == ADMITTED)
            .unwrap();
        assert_eq!(admitted.status, "False");
        assert_eq!(
            admitted.message.as_deref(),
            Some("LocalQueue nope doesn't exist")
        );
        // Read back, an Admitting task is in flight to the ledger, and queued to readers,
        // with the queue's reason.
        let back =
            entry_of(&serde_json::from_value(serde_json::to_value(&wt).unwrap()).unwrap()).unwrap();
        assert_eq!(back.state, Phase::Running);
        assert_eq!(back.shown_state(), Phase::Queued);
        let shown = serde_json::to_value(&back).unwrap();
        assert_eq!(shown["state"], "queued");
        assert_eq!(shown["admission"], "LocalQueue nope doesn't exist");

        wt.status = Some(write(&wt, &running, Some(&Admission::Admitted)));
        assert_eq!(
            wt.status.as_ref().unwrap().phase.as_deref(),
            Some("Running")
        );
        wt.status = Some(write(
            &wt,
            &running,
            Some(&Admission::Preempted("evicted".into())),
        ));
        assert_eq!(
            wt.status.as_ref().unwrap().phase.as_deref(),
            Some(ADMITTING)
        );
        wt.status = Some(write(&wt, &running, Some(&Admission::Admitted)));
        // A later write that knows nothing of admission (a note, the finish) keeps both.
        let mut report = TaskReport::new(&task, ReportStatus::OK);
        report.attempts = 1;
        let done = state::apply(running, Transition::Finish(Box::new(report)), 3).unwrap();
        let status = write(&wt, &done, None);
        assert_eq!(status.phase.as_deref(), Some("Succeeded"));
        assert_eq!(status.preemptions, 1);
        assert!(status
            .conditions
            .iter()
            .any(|c| c.type_ == ADMITTED && c.status == "True"));
    }
}
