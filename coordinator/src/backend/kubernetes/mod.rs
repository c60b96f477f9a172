//! The Kubernetes backend: one Job per task. The Job comes from [`job`] (pure), its
//! verdict from [`status`] (pure); this file is the IO shell around them:
//!
//! 1. create the Job, or adopt the one that already exists for the same task (same name,
//!    same task-id annotation): a restarted coordinator never starts a task twice;
//! 2. wait until it is `Complete` or `Failed`, watching its pods meanwhile so that an
//!    image that cannot be pulled fails the task at once instead of at the deadline (one
//!    watch on Jobs and one on pods for all tasks: [`JobWatch`]). A suspended Job waits
//!    for Kueue's admission first ([`kueue`]), its time limit counted from admission; one
//!    suspended again after it ran was preempted and waits again;
//! 3. judge it from its newest pod: the runner's termination message, else its log;
//! 4. once the report is recorded in the ledger ([`Backend::release`]), delete the Job with background
//!    propagation, so its pods go too. A coordinator that dies before recording leaves
//!    the Job, and the next one adopts it ([`KubernetesBackend::adoptable`]).
//!
//! Events on each Job (created, adopted, result published, failed with its cause) make
//! `kubectl describe job` tell the story; failing to record one never fails a task.

pub mod job;
pub mod kueue;
pub mod ledger;
pub mod status;
pub mod wasm_task;
mod watch;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, LogParams, PostParams,
    Preconditions,
};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use self::job::{
    build_job, job_name, managed_selector, task_of, JobSettings, ANNOTATION_TASK_ID,
    DEADLINE_SLACK, MANAGER, RUNNER_CONTAINER,
};
use self::kueue::{job_state, JobState};
use self::ledger::WasmTaskLedger;
use self::status::{stage_times, verdict, verdict_from_log, JobEnd, Verdict};
use self::wasm_task::Admission;
use self::watch::{JobWatch, JOB_NAME_LABEL};
use crate::backend::{AttemptOutcome, Backend, BoxFuture, FailureKind, NotReady};
use crate::metrics::AdmissionMetrics;
use crate::task::{ReportStatus, Stage, Task, TaskReport};

/// How long past the Job's own deadline the coordinator waits before it gives up on it.
const WAIT_SLACK: Duration = Duration::from_secs(60);
/// How long a deleted Job may take to go before a retry creates it again.
const GONE_WITHIN: Duration = Duration::from_secs(60);
/// Lines of the runner's log read for the result when the termination message has none.
const LOG_TAIL_LINES: i64 = 200;
/// `/readyz`'s bound on the API server's answer.
const READY_WITHIN: Duration = Duration::from_secs(3);
/// How long the pod watch gets to show a finished Job's pod ended before the pods are
/// listed instead.
const POD_CATCH_UP: Duration = Duration::from_secs(1);
/// Kubernetes caps an event's note at 1 kB.
const NOTE_MAX: usize = 1000;
/// How long a Job may stay suspended before the task counts as waiting for admission and
/// its Workload is asked why; then how often it is asked again.
const FIRST_LOOK: Duration = Duration::from_secs(1);
const LOOK_EVERY: Duration = Duration::from_secs(5);

/// How an admitted Job's wait ended.
enum Ran {
    Finished(JobEnd),
    /// Suspended again: preempted.
    Suspended,
}

#[derive(Debug, thiserror::Error)]
pub enum KubernetesError {
    #[error("cannot set up a Kubernetes client (in-cluster service account, or KUBECONFIG / ~/.kube/config): {0}")]
    Client(#[source] kube::Error),
    #[error("listing this coordinator's Jobs ({selector}) in namespace {namespace}: {source}")]
    List {
        namespace: String,
        selector: String,
        #[source]
        source: kube::Error,
    },
}

pub struct KubernetesBackend {
    client: Client,
    jobs: Api<Job>,
    pods: Api<Pod>,
    template: Job,
    settings: JobSettings,
    recorder: Recorder,
    /// Started by the first task.
    watch: OnceLock<JobWatch>,
    /// Job name → uid of the Jobs this coordinator created or adopted and has not released:
    /// for the events about them, and so that only those are ever deleted.
    uids: Mutex<HashMap<String, String>>,
    /// The WasmTasks, when they are the ledger: each Job is owned by its task's WasmTask,
    /// so deleting the task deletes its Job and pods.
    owners: Option<Arc<WasmTaskLedger>>,
    admission: AdmissionMetrics,
}

impl std::fmt::Debug for KubernetesBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesBackend")
            .field("namespace", &self.settings.namespace)
            .field("executor_image", &self.settings.executor_image)
            .field("fetcher_image", &self.settings.fetcher_image)
            .finish_non_exhaustive()
    }
}

impl KubernetesBackend {
    /// A client from the environment: the pod's service account inside a cluster, else
    /// `KUBECONFIG` or `~/.kube/config`.
    pub async fn connect(
        template: Job,
        settings: JobSettings,
        instance: String,
    ) -> Result<Self, KubernetesError> {
        let client = Client::try_default()
            .await
            .map_err(KubernetesError::Client)?;
        Ok(Self::new(client, template, settings, instance))
    }

    /// `instance` names this coordinator in the events it records (its pod name).
    pub fn new(client: Client, template: Job, settings: JobSettings, instance: String) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: MANAGER.into(),
                instance: Some(instance),
            },
        );
        Self {
            jobs: Api::namespaced(client.clone(), &settings.namespace),
            pods: Api::namespaced(client.clone(), &settings.namespace),
            client,
            template,
            settings,
            recorder,
            watch: OnceLock::new(),
            uids: Mutex::new(HashMap::new()),
            owners: None,
            admission: AdmissionMetrics::default(),
        }
    }

    /// Where the backend counts Jobs waiting for admission, admission waits and
    /// preemptions.
    pub fn admission_metrics(&mut self, metrics: AdmissionMetrics) {
        self.admission = metrics;
    }

    /// Makes every Job owned by its task's WasmTask in `ledger`.
    pub fn owners(&mut self, ledger: Arc<WasmTaskLedger>) {
        self.owners = Some(ledger);
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The tasks of this coordinator's Jobs that exist now, running or finished but not yet
    /// collected. Running them adopts the Jobs: each result is collected and published once.
    pub async fn adoptable(&self) -> Result<Vec<Task>, KubernetesError> {
        let selector = managed_selector();
        let list = self
            .jobs
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|source| KubernetesError::List {
                namespace: self.settings.namespace.clone(),
                selector: selector.clone(),
                source,
            })?;
        let mut tasks = Vec::new();
        for job in list.items {
            if job.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let labels = job.metadata.labels.as_ref();
            if labels.is_some_and(|l| l.contains_key(job::LABEL_CHECK)) {
                // A check run: its task's own run collects it.
                continue;
            }
            // Read back, then validated like a task from any source.
            match task_of(&job).map(Task::validate) {
                Ok(Ok(t)) => tasks.push(t),
                Ok(Err(e)) => {
                    warn!("not adopting a Job with our labels: its task is not valid: {e}")
                }
                Err(e) => warn!("not adopting a Job with our labels: {e}"),
            }
        }
        Ok(tasks)
    }

    async fn attempt(&self, task: &Task) -> AttemptOutcome {
        let job = build_job(&self.template, task, &self.settings);
        self.attempt_job(task, job).await
    }

    /// One attempt with `job`: the task's own Job, or its check's ([`job::as_check`]).
    async fn attempt_job(&self, task: &Task, mut job: Job) -> AttemptOutcome {
        if let Some(ledger) = &self.owners {
            let Some((name, uid)) = ledger.owner_of(&task.task_id) else {
                return AttemptOutcome::failed(
                    FailureKind::Api,
                    Stage::Fetch,
                    format!(
                        "the task's WasmTask {} is gone (deleted?); the task is not run",
                        wasm_task::name_of(&task.task_id)
                    ),
                    false,
                );
            };
            if let Some(queue) = ledger.queue_of(&task.task_id) {
                kueue::queue_job(
                    &mut job,
                    &queue,
                    self.settings.queueing.priority_class.as_deref(),
                );
            }
            job.metadata.owner_references = Some(vec![OwnerReference {
                api_version: format!("{}/{}", wasm_task::GROUP, wasm_task::VERSION),
                kind: wasm_task::KIND.into(),
                name,
                uid,
                controller: Some(true),
                block_owner_deletion: None,
            }]);
        }
        let name = job.metadata.name.clone().unwrap_or_default();
        let adopted = match self.create_or_adopt(&job, task).await {
            Ok(adopted) => adopted,
            Err(outcome) => return *outcome,
        };
        let queue = kueue::queue_of(&job).map(str::to_owned);
        // An adopted Job (after a restart) may have waited for admission already: its wait
        // counts from when it began, as the API server recorded it; a new one's from now.
        let since = adopted.as_ref().and_then(kueue::waiting_since);
        let end = match self.wait(&name, task, queue.as_deref(), since).await {
            Err(outcome) => {
                warn!(
                    task_id = %task.task_id,
                    job = name,
                    "{}",
                    outcome.error.as_deref().unwrap_or_default()
                );
                return *outcome;
            }
            Ok(end) => end,
        };
        self.collect(&name, &end).await
    }

    /// Creates the Job (`None`), or adopts the existing one of the same task (returned).
    async fn create_or_adopt(
        &self,
        job: &Job,
        task: &Task,
    ) -> Result<Option<Job>, Box<AttemptOutcome>> {
        let name = job.metadata.name.as_deref().unwrap_or_default();
        let ns = &self.settings.namespace;
        let fail = |kind: FailureKind, message: String, retryable: bool| {
            Box::new(AttemptOutcome::failed(
                kind,
                Stage::Fetch,
                message,
                retryable,
            ))
        };
        loop {
            let err = match self.jobs.create(&PostParams::default(), job).await {
                Ok(created) => {
                    // No event: the Job's own creation is in its metadata, and the task's
                    // module, input and entry in its annotations; the outcome gets one.
                    info!(job = name, "created Job");
                    self.remember(&created);
                    return Ok(None);
                }
                Err(e) => e,
            };
            match err {
                kube::Error::Api(ref status) if status.code == 409 => {}
                kube::Error::Api(ref status) if status.code == 403 => {
                    return Err(fail(
                        FailureKind::Forbidden,
                        format!("creating Job {name} in namespace {ns}: forbidden ({}); the coordinator's ServiceAccount needs the Role in k8s/coordinator.yaml", status.message),
                        false,
                    ))
                }
                kube::Error::Api(ref status) if status.code == 422 || status.code == 400 => {
                    return Err(fail(
                        FailureKind::Rejected,
                        format!("creating Job {name} in namespace {ns}: the API server rejected the Job built from the template: {}", status.message),
                        false,
                    ))
                }
                e => {
                    return Err(fail(
                        FailureKind::Api,
                        format!("creating Job {name} in namespace {ns}: {e}"),
                        true,
                    ))
                }
            }
            // It exists: ours to adopt if it runs the same task.
            let existing = match self.jobs.get_opt(name).await {
                Ok(Some(j)) => j,
                Ok(None) => continue, // deleted meanwhile: create it again
                Err(e) => {
                    return Err(fail(
                        FailureKind::Api,
                        format!("reading the existing Job {name} in namespace {ns}: {e}"),
                        true,
                    ))
                }
            };
            let owner = existing
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ANNOTATION_TASK_ID));
            if owner != Some(&task.task_id) {
                return Err(fail(
                    FailureKind::NameTaken,
                    format!(
                        "a Job named {name} already exists in namespace {ns} for {}; delete it (kubectl delete job {name} -n {ns}) or give the task another id",
                        owner.map_or("something else (no task-id annotation)".to_string(), |o| format!("task {o:?}"))
                    ),
                    false,
                ));
            }
            if existing.metadata.deletion_timestamp.is_some() {
                // Being deleted (a retry after a failed attempt): wait, then create anew.
                if !self.gone(name).await {
                    return Err(fail(
                        FailureKind::Api,
                        format!(
                            "Job {name} is still being deleted after {} s",
                            GONE_WITHIN.as_secs()
                        ),
                        true,
                    ));
                }
                continue;
            }
            info!(job = name, "adopting the existing Job of this task");
            self.remember(&existing);
            self.record(
                name,
                EventType::Normal,
                "Adopted",
                "Adopt",
                format!(
                    "task {}: a coordinator adopted this Job and collects its result",
                    task.task_id
                ),
            )
            .await;
            return Ok(Some(existing));
        }
    }

    /// Waits for the Job to finish; fails fast on a pod that cannot start. The watches
    /// start with the first task and are shared by all.
    ///
    /// A suspended Job waits for Kueue's admission first ([`Self::admitted`]); the task's
    /// time limit runs from admission on, as the Job's activeDeadlineSeconds does (its
    /// startTime is reset when it is resumed). A Job suspended again after it ran was
    /// preempted: it waits for admission again, neither failed nor retried.
    async fn wait(
        &self,
        name: &str,
        task: &Task,
        queue: Option<&str>,
        since: Option<k8s_openapi::jiff::Timestamp>,
    ) -> Result<JobEnd, Box<AttemptOutcome>> {
        let watch = self
            .watch
            .get_or_init(|| JobWatch::start(self.jobs.clone(), self.pods.clone()));
        let ns = &self.settings.namespace;
        let bound =
            self.settings.limits.for_task(task.limits).timeout + DEADLINE_SLACK + WAIT_SLACK;
        let mut preempted = false;
        let mut since = since;
        loop {
            if let Some(end) = self
                .admitted(watch, name, task, queue, preempted, since)
                .await?
            {
                return Ok(end);
            }
            let ran = watch.until(name, ns, |job| match job_state(job) {
                JobState::Running => None,
                JobState::Waiting => Some(Ran::Suspended),
                JobState::Finished(end) => Some(Ran::Finished(end)),
            });
            match tokio::time::timeout(bound, ran).await {
                Err(_) => {
                    return Err(Box::new(AttemptOutcome::failed(
                        FailureKind::Deadline,
                        Stage::Run,
                        format!(
                            "Job {name} did not finish within {} s of its start (its admission), past its activeDeadlineSeconds; is the Job controller working?",
                            bound.as_secs()
                        ),
                        false,
                    )))
                }
                Ok(Err(outcome)) => return Err(outcome),
                Ok(Ok(Ran::Finished(end))) => return Ok(end),
                Ok(Ok(Ran::Suspended)) => {
                    self.preempted(watch, name, task).await;
                    preempted = true;
                    // Waiting again since its suspension (its `Suspended` condition).
                    since = watch
                        .job(name, ns)
                        .and_then(|job| kueue::waiting_since(&job));
                }
            }
        }
    }

    /// Waits while the Job is suspended, for Kueue to admit it; `Some` when it finished
    /// meanwhile. While it waits, the task counts as admitting, and its WasmTask says why
    /// (the Workload's message); past `admission_timeout` the task fails, naming the cause.
    /// After a preemption (`preempted`) the WasmTask already says it waits, so its admission
    /// is recorded however soon it comes.
    async fn admitted(
        &self,
        watch: &JobWatch,
        name: &str,
        task: &Task,
        queue: Option<&str>,
        preempted: bool,
        since: Option<k8s_openapi::jiff::Timestamp>,
    ) -> Result<Option<JobEnd>, Box<AttemptOutcome>> {
        let ns = &self.settings.namespace;
        let limit = self.settings.queueing.admission_timeout;
        // From when the Job began to wait (`since`, as the API server recorded it), else
        // from now: a restarted coordinator does not start admission_timeout again.
        let began = since
            .and_then(|since| Instant::now().checked_sub(kueue::elapsed_since(since)))
            .unwrap_or_else(Instant::now);
        // A queued Job counts as waiting from its creation; another only once seen suspended.
        let mut waiting = queue.map(|_| self.admission.waiting());
        let mut said: Option<String> = None;
        // One wait on the watch throughout (it looks the Job up directly when the cache
        // lacks it for long); the looks at the Workload come between.
        let admitted = watch.until(name, ns, |job| match job_state(job) {
            JobState::Waiting => None,
            JobState::Running => Some(None),
            JobState::Finished(end) => Some(Some(end)),
        });
        tokio::pin!(admitted);
        loop {
            let look = if said.is_none() {
                FIRST_LOOK
            } else {
                LOOK_EVERY
            };
            let look_in =
                kueue::admission_left(began.elapsed(), limit).map_or(look, |l| look.min(l));
            let end = tokio::select! {
                end = &mut admitted => Some(end),
                () = tokio::time::sleep(look_in) => None,
            };
            if let Some(end) = end {
                let end = end?;
                if waiting.take().is_some() {
                    self.admission.admitted_after(began.elapsed());
                }
                if said.is_some() || preempted {
                    info!(
                        task_id = %task.task_id,
                        job = name,
                        "admitted after {:.1} s",
                        began.elapsed().as_secs_f64()
                    );
                    self.note_admission(task, Admission::Admitted).await;
                }
                return Ok(end);
            }
            let suspended = watch
                .job(name, ns)
                .is_some_and(|j| job_state(&j) == JobState::Waiting);
            let out_of_time = kueue::admission_left(began.elapsed(), limit) == Some(Duration::ZERO);
            if !suspended && !out_of_time {
                continue;
            }
            if waiting.is_none() {
                waiting = Some(self.admission.waiting());
            }
            let why = self.why_waiting(name, queue).await;
            if said.as_ref() != Some(&why) {
                info!(task_id = %task.task_id, job = name, "waiting for admission: {why}");
                self.note_admission(task, Admission::Waiting(why.clone()))
                    .await;
                said = Some(why.clone());
            }
            if out_of_time {
                return Err(Box::new(AttemptOutcome::failed(
                    FailureKind::Admission,
                    Stage::Fetch,
                    format!(
                        "not admitted within admission_timeout ({} s; it waited {:.0} s): {why}",
                        limit.unwrap_or_default().as_secs_f64(),
                        began.elapsed().as_secs_f64()
                    ),
                    false,
                )));
            }
        }
    }

    /// Why Job `name` waits, in one line: whose queue, and what its Workload says.
    async fn why_waiting(&self, name: &str, queue: Option<&str>) -> String {
        let whose = match queue {
            Some(q) => format!("Job {name} waits for Kueue to admit it from LocalQueue {q}"),
            None => format!("Job {name} is suspended (this coordinator put it in no queue)"),
        };
        let uid = self.uids.lock().ok().and_then(|u| u.get(name).cloned());
        let says = match uid {
            None => "its uid is unknown, so its Workload cannot be found".to_owned(),
            Some(uid) => self.workload_says(&uid).await,
        };
        format!("{whose}: {says}")
    }

    /// What the Workload of the Job with `uid` says of its admission.
    async fn workload_says(&self, uid: &str) -> String {
        let gvk = GroupVersionKind::gvk(kueue::GROUP, kueue::VERSION, kueue::WORKLOAD_KIND);
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &self.settings.namespace,
            &ApiResource::from_gvk(&gvk),
        );
        let selector = format!("{}={uid}", kueue::LABEL_JOB_UID);
        match api.list(&ListParams::default().labels(&selector)).await {
            Ok(list) => match list.items.first() {
                None => "no Workload for it yet (is Kueue installed, and does it manage batch/v1 Jobs?)".into(),
                Some(w) => serde_json::to_value(w)
                    .ok()
                    .and_then(|v| kueue::workload_says(&v))
                    .unwrap_or_else(|| "its Workload gives no reason yet".into()),
            },
            Err(kube::Error::Api(s)) if s.code == 404 => format!(
                "Kueue's Workloads ({}/{}) are not served here: is Kueue installed?",
                kueue::GROUP,
                kueue::VERSION
            ),
            Err(kube::Error::Api(s)) if s.code == 403 => format!(
                "the coordinator may not read Kueue's Workloads ({}); give its Role get/list on workloads.{} as k8s/coordinator.yaml does",
                s.message,
                kueue::GROUP
            ),
            Err(e) => format!("reading its Workload ({selector}): {e}"),
        }
    }

    /// Kueue suspended the running Job again and its pods are gone: counted, recorded as an
    /// event and in the WasmTask; the task waits for admission again.
    async fn preempted(&self, watch: &JobWatch, name: &str, task: &Task) {
        let uid = watch
            .job(name, &self.settings.namespace)
            .and_then(|j| j.metadata.uid.clone());
        let says = match uid {
            Some(uid) => self.workload_says(&uid).await,
            None => "its Workload is unknown".into(),
        };
        self.admission.preempted();
        warn!(
            task_id = %task.task_id,
            job = name,
            "preempted: Kueue suspended the Job again ({says}); it waits for admission, and its pod's partial work is discarded"
        );
        self.record(
            name,
            EventType::Warning,
            "Preempted",
            "Preempt",
            format!(
                "task {}: Kueue suspended the Job again and its pods were deleted ({says}); the task waits for admission and runs anew, its partial work discarded",
                task.task_id
            ),
        )
        .await;
        self.note_admission(task, Admission::Preempted(says)).await;
    }

    /// Records admission news in the task's WasmTask (when the WasmTasks are the ledger);
    /// a failure is logged, never fatal.
    async fn note_admission(&self, task: &Task, a: Admission) {
        if let Some(ledger) = &self.owners {
            if let Err(e) = ledger.admission(&task.task_id, a).await {
                warn!(task_id = %task.task_id, "cannot record the admission in the WasmTask: {e}");
            }
        }
    }

    /// Judges the finished Job by its newest pod: the one the shared pod watch has, once
    /// it shows the pod ended; else (the watch lags, or the pod is gone) listed afresh.
    async fn collect(&self, name: &str, end: &JobEnd) -> AttemptOutcome {
        let cached = match self.watch.get() {
            Some(watch) => watch.ended_pod(name, POD_CATCH_UP).await,
            None => None,
        };
        let pods = match cached {
            Some(pod) => vec![(*pod).clone()],
            None => match self
                .pods
                .list(&ListParams::default().labels(&format!("{JOB_NAME_LABEL}={name}")))
                .await
            {
                Ok(l) => l.items,
                Err(e) => {
                    return AttemptOutcome::failed(
                        FailureKind::Api,
                        Stage::Run,
                        format!("listing the pods of Job {name}: {e}"),
                        true,
                    )
                }
            },
        };
        let pod = pods
            .iter()
            .max_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
        let mut outcome = match (verdict(end, pod), pod) {
            (Verdict::Done(o), _) => *o,
            (Verdict::NeedLog { exit_code }, Some(pod)) => {
                let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
                let params = LogParams {
                    container: Some(RUNNER_CONTAINER.into()),
                    tail_lines: Some(LOG_TAIL_LINES),
                    ..LogParams::default()
                };
                match self.pods.logs(pod_name, &params).await {
                    Ok(log) => verdict_from_log(&log, exit_code),
                    Err(e) => AttemptOutcome::failed(
                        FailureKind::Api,
                        Stage::Run,
                        format!("reading the runner's log of pod {pod_name} for its result: {e}"),
                        true,
                    ),
                }
            }
            (Verdict::NeedLog { .. }, None) => AttemptOutcome::failed(
                FailureKind::NoResult,
                Stage::Run,
                format!("Job {name} finished without a pod to read a result from"),
                true,
            ),
        };
        outcome.stages = pod.map(stage_times).unwrap_or_default();
        outcome.node = pod.and_then(|p| p.spec.as_ref()?.node_name.clone());
        outcome
    }

    /// Forgets Job `name` and deletes it, when it is one this coordinator created or
    /// adopted and has not released; false when it has none of that name.
    async fn release_job(&self, name: &str) -> bool {
        let uid = self.uids.lock().ok().and_then(|mut u| u.remove(name));
        let Some(uid) = uid else { return false };
        self.delete(name, uid).await;
        true
    }

    /// Deletes the Job (its pods go with it: background propagation), if it is still the
    /// one with `uid`: never a Job of the same name that someone else made meanwhile.
    async fn delete(&self, name: &str, uid: String) {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        match self.jobs.delete(name, &params).await {
            Ok(_) => debug!(job = name, "deleted Job"),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => warn!(
                job = name,
                "cannot delete Job {name} ({e}); its ttlSecondsAfterFinished removes it later"
            ),
        }
    }

    /// Polls until the Job is gone; false if it is still there after [`GONE_WITHIN`].
    async fn gone(&self, name: &str) -> bool {
        let until = tokio::time::Instant::now() + GONE_WITHIN;
        while tokio::time::Instant::now() < until {
            match self.jobs.get_opt(name).await {
                Ok(None) => return true,
                Ok(Some(_)) | Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        false
    }

    fn remember(&self, job: &Job) {
        if let (Some(name), Some(uid)) = (&job.metadata.name, &job.metadata.uid) {
            if let Ok(mut uids) = self.uids.lock() {
                uids.insert(name.clone(), uid.clone());
            }
        }
    }

    /// Records an event on the Job; a failure to record is logged, never fatal.
    async fn record(&self, job: &str, type_: EventType, reason: &str, action: &str, note: String) {
        let uid = self.uids.lock().ok().and_then(|u| u.get(job).cloned());
        let reference = ObjectReference {
            api_version: Some("batch/v1".into()),
            kind: Some("Job".into()),
            name: Some(job.into()),
            namespace: Some(self.settings.namespace.clone()),
            uid,
            ..ObjectReference::default()
        };
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(clip(&note, NOTE_MAX)),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &reference).await {
            warn!(job, "cannot record the {reason} event: {e}");
        }
    }
}

impl Backend for KubernetesBackend {
    fn run<'a>(&'a self, task: &'a Task) -> BoxFuture<'a, AttemptOutcome> {
        Box::pin(self.attempt(task))
    }

    fn release<'a>(&'a self, task: &'a Task, report: Option<&'a TaskReport>) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let name = job_name(&task.task_id);
            match report {
                Some(r) if r.status == ReportStatus::OK => {
                    let result = r
                        .result
                        .as_ref()
                        .map(|x| serde_json::to_string(&x.result).unwrap_or_default())
                        .unwrap_or_default();
                    self.record(
                        &name,
                        EventType::Normal,
                        "ResultPublished",
                        "Publish",
                        format!("task {}: ok, result {result}", task.task_id),
                    )
                    .await;
                }
                Some(r) if r.status == ReportStatus::Nondeterministic => {
                    let v = r.verification.as_ref();
                    let note = format!(
                        "task {}: a second run (Job {}) gave another output: output_sha256 {} then {}",
                        task.task_id,
                        job::check_job_name(&task.task_id),
                        v.map_or("?", |v| v.output_sha256.as_str()),
                        v.and_then(|v| v.check_output_sha256.as_deref()).unwrap_or("?"),
                    );
                    self.record(&name, EventType::Warning, "Nondeterministic", "Check", note)
                        .await;
                }
                Some(r) => {
                    let cause = format!(
                        "task {}: {}{}: {}",
                        task.task_id,
                        r.status.as_str(),
                        r.stage
                            .map(|s| format!(" while {}", s.as_str()))
                            .unwrap_or_default(),
                        r.error.as_deref().unwrap_or("no error message")
                    );
                    self.record(&name, EventType::Warning, "TaskFailed", "Publish", cause)
                        .await;
                }
                None => {}
            }
            // None: the attempt never had a Job of its own (e.g. the name was taken).
            if !self.release_job(&name).await {
                return;
            }
            if report.is_none() && !self.gone(&name).await {
                warn!(
                    job = name,
                    "Job {name} is still there {} s after its deletion",
                    GONE_WITHIN.as_secs()
                );
            }
        })
    }

    fn run_check<'a>(
        &'a self,
        task: &'a Task,
        first: &'a AttemptOutcome,
    ) -> BoxFuture<'a, AttemptOutcome> {
        Box::pin(async move {
            let job = build_job(&self.template, task, &self.settings);
            let job = job::as_check(job, &task.task_id, first.node.as_deref());
            self.attempt_job(task, job).await
        })
    }

    fn release_check<'a>(&'a self, task: &'a Task) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.release_job(&job::check_job_name(&task.task_id)).await;
        })
    }

    fn hands_over(&self) -> bool {
        true
    }

    fn ready(&self) -> BoxFuture<'_, Result<(), Vec<NotReady>>> {
        Box::pin(async move {
            match tokio::time::timeout(READY_WITHIN, self.client.apiserver_version()).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(vec![NotReady::ApiServer(e.to_string())]),
                Err(_) => Err(vec![NotReady::ApiServerSlow(READY_WITHIN.as_secs())]),
            }
        })
    }
}

fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
