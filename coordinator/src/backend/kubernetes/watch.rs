//! One watch on this coordinator's Jobs and one on their pods, shared by every running task,
//! instead of two watches per task: the API server holds two long-lived requests however
//! many tasks run. kube's reflector keeps a cache of each; a generation counter wakes the
//! waiting tasks on every change, and each looks up its own Job and pods in the caches.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{stream, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::warn;

use super::job::managed_selector;
use super::status::fail_fast;
use crate::backend::{AttemptOutcome, FailureKind};
use crate::task::Stage;

/// The label the Job controller puts on a Job's pods.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
/// How often a Job not yet in the cache is looked up directly (it may be gone already).
const LOOKUP_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct JobWatch {
    jobs_api: Api<Job>,
    jobs: Store<Job>,
    pods: Store<Pod>,
    changed: watch::Receiver<u64>,
    task: JoinHandle<()>,
}

impl Drop for JobWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl JobWatch {
    /// Starts both watches (within a tokio runtime); they retry with backoff on errors.
    pub fn start(jobs_api: Api<Job>, pods_api: Api<Pod>) -> Self {
        let selector = managed_selector();
        let config = || watcher::Config::default().labels(&selector);
        let (jobs, jobs_writer) = reflector::store();
        let (pods, pods_writer) = reflector::store();
        let job_events = reflector::reflector(
            jobs_writer,
            watcher(jobs_api.clone(), config()).default_backoff(),
        )
        .map(|e| e.map(|_| ()));
        let pod_events =
            reflector::reflector(pods_writer, watcher(pods_api, config()).default_backoff())
                .map(|e| e.map(|_| ()));
        let (tx, changed) = watch::channel(0u64);
        let task = tokio::spawn(async move {
            let mut events = std::pin::pin!(stream::select(job_events, pod_events));
            while let Some(event) = events.next().await {
                match event {
                    Ok(()) => tx.send_modify(|generation| *generation += 1),
                    // The watcher backs off and lists again; the caches stay as they were.
                    Err(e) => warn!("watching the task Jobs and pods: {e}"),
                }
            }
        });
        Self {
            jobs_api,
            jobs,
            pods,
            changed,
            task,
        }
    }

    /// Job `name` as the cache has it now.
    pub fn job(&self, name: &str, namespace: &str) -> Option<Arc<Job>> {
        self.jobs
            .get(&ObjectRef::<Job>::new(name).within(namespace))
    }

    /// Waits until `seen` says something of Job `name` (e.g. that it finished, or that it
    /// was suspended), or fails fast on a pod that cannot start.
    pub async fn until<T>(
        &self,
        name: &str,
        namespace: &str,
        seen: impl Fn(&Job) -> Option<T>,
    ) -> Result<T, Box<AttemptOutcome>> {
        let key = ObjectRef::<Job>::new(name).within(namespace);
        let mut changed = self.changed.clone();
        let mut cached = false;
        loop {
            match self.jobs.get(&key) {
                Some(job) => {
                    cached = true;
                    if let Some(said) = seen(&job) {
                        return Ok(said);
                    }
                }
                None if cached => return Err(gone(name)),
                None => {}
            }
            for pod in self.pods_of(name) {
                if let Some(outcome) = fail_fast(&pod) {
                    return Err(Box::new(outcome));
                }
            }
            tokio::select! {
                c = changed.changed() => if c.is_err() {
                    return Err(Box::new(AttemptOutcome::failed(FailureKind::Api, Stage::Run, "the watch on the task Jobs ended".into(), true)));
                },
                // Not yet seen in the cache: make sure it still exists.
                () = tokio::time::sleep(LOOKUP_EVERY), if !cached => {
                    if let Ok(None) = self.jobs_api.get_opt(name).await {
                        return Err(gone(name));
                    }
                }
            }
        }
    }

    /// The newest pod of Job `name` once the cache shows it ended (phase `Succeeded` or
    /// `Failed`), waiting up to `within` for the pod watch to catch up with the Job watch
    /// (separate streams); `None` if it does not, and the caller lists the pods itself.
    pub async fn ended_pod(&self, name: &str, within: Duration) -> Option<Arc<Pod>> {
        let mut changed = self.changed.clone();
        let until = tokio::time::Instant::now() + within;
        loop {
            let newest = self
                .pods_of(name)
                .into_iter()
                .max_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
            let ended = newest.filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.phase.as_deref())
                    .is_some_and(|phase| phase == "Succeeded" || phase == "Failed")
            });
            if ended.is_some() {
                return ended;
            }
            tokio::select! {
                c = changed.changed() => if c.is_err() { return None },
                () = tokio::time::sleep_until(until) => return None,
            }
        }
    }

    fn pods_of(&self, job: &str) -> Vec<Arc<Pod>> {
        self.pods.state_filter(|p| {
            p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(JOB_NAME_LABEL))
                .is_some_and(|n| n == job)
        })
    }
}

fn gone(name: &str) -> Box<AttemptOutcome> {
    Box::new(AttemptOutcome::failed(
        FailureKind::Api,
        Stage::Run,
        format!("Job {name} was deleted before it finished (by someone else?)"),
        true,
    ))
}
