//! The Kubernetes ledger: the API server holds it, as one `WasmTask` per task
//! ([`super::wasm_task`]). Accepting a task creates its WasmTask (on any replica); the
//! leader moves it `Queued → Running → Succeeded/Failed` in its status subresource, each
//! write conditional on the object's resourceVersion, and records there which sinks have
//! the report (the `Published` condition once all do).
//!
//! The leader keeps an index of only the WasmTasks still to run or to publish, fed by one
//! watch (the initial list paged): the coordinator's memory grows with the work in flight,
//! not with the tasks recorded. WasmTasks done and published are deleted `task_ttl` after
//! they finished (a paged list every minute or so).

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use tokio::sync::{watch, Notify};
use tracing::{debug, info, warn};

use super::job::job_name;
use super::wasm_task::{
    admission_status, entry_of, for_task, name_of, status_of, task_of, Admission, WasmTask,
    CACHE_KEY_LABEL,
};
use crate::backend::BoxFuture;
use crate::ledger::state::{self, Transition};
use crate::ledger::{
    now_ms, Accepted, Counts, Entry, Filter, Ledger, LedgerError, Notes, Phase, Unpublished,
};
use crate::task::{ReportStatus, Task, TaskReport};

/// The command that installs the custom resource, for errors and `/readyz`.
pub const INSTALL_CRD: &str = "kubectl apply -f k8s/crd.yaml";
/// Objects per page when listing.
const PAGE: u32 = 500;
/// How often finished, published WasmTasks older than `task_ttl` are looked for.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// How many times a status write is tried again after a conflict.
const CONFLICT_RETRIES: usize = 5;

/// What a status write does.
#[derive(Debug, Clone)]
enum Write {
    Transition(Transition),
    /// `sink` has the report; published once every one of `sinks` has it.
    Delivered {
        sink: String,
        sinks: Vec<String>,
    },
    /// A note beside the report ([`Ledger::note`]).
    Note {
        key: String,
        value: String,
    },
    /// What the backend learned of the running task's Job and Kueue.
    Admission(Admission),
}

#[derive(Debug, Default)]
struct Index {
    /// Name → the WasmTask, for those still to run or to publish.
    tasks: HashMap<String, WasmTask>,
    /// Name → resourceVersion of the WasmTasks this coordinator itself saw finished and
    /// published: the watch may still bring older versions of them, which must not
    /// bring them back. Each goes when the watch has caught up with it.
    gone: HashMap<String, u64>,
    /// What this coordinator wrote since the watch began its last full list: the list may
    /// miss it, so it is kept when the list is done. Nothing older is (a copy from before
    /// the list that the list lacks was deleted or published meanwhile).
    written_since_list: std::collections::HashSet<String>,
}

impl Index {
    /// The object name of a task in flight (a WasmTask made with kubectl may have a name
    /// that is not the id's label), else the label.
    fn name_for(&self, task_id: &str) -> String {
        self.tasks
            .iter()
            .find(|(_, wt)| task_of(wt).is_ok_and(|t| t.task_id == task_id))
            .map_or_else(|| name_of(task_id), |(name, _)| name.clone())
    }
}

pub struct WasmTaskLedger {
    api: Api<WasmTask>,
    /// Where the sources' cursors are: the ConfigMap [`CURSORS`].
    config_maps: Api<ConfigMap>,
    namespace: String,
    task_ttl: Duration,
    index: Arc<Mutex<Index>>,
    synced: watch::Receiver<bool>,
    synced_tx: Arc<watch::Sender<bool>>,
    changed: Arc<Notify>,
    /// The watch and the pruner, started by the first leader-side call.
    started: OnceLock<Vec<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for WasmTaskLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmTaskLedger")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Drop for WasmTaskLedger {
    fn drop(&mut self) {
        if let Some(tasks) = self.started.get() {
            for t in tasks {
                t.abort();
            }
        }
    }
}

/// The ConfigMap holding the sources' cursors (one key per source).
pub const CURSORS: &str = "wasm-exec-cursors";
/// Conflicting writes of the cursors tried before giving up.
const CURSOR_TRIES: usize = 5;

/// A ConfigMap key for a source's cursor name (keys allow `[-._a-zA-Z0-9]`).
/// A cache key as a label value (at most 63 characters).
fn cache_label(key: &str) -> &str {
    key.get(..63).unwrap_or(key)
}

fn cursor_key(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn api_error(doing: String, source: kube::Error) -> LedgerError {
    match &source {
        kube::Error::Api(s) if s.code == 404 && s.details.as_ref().is_none_or(|d| d.name.is_empty()) => {
            LedgerError::Kubernetes {
                doing: format!("{doing}: the WasmTask custom resource is not installed; install it with `{INSTALL_CRD}`"),
                source: Box::new(source),
            }
        }
        _ => LedgerError::Kubernetes {
            doing,
            source: Box::new(source),
        },
    }
}

fn invalid(wt: &WasmTask, e: crate::task::TaskError) -> LedgerError {
    LedgerError::InvalidObject {
        name: wt.metadata.name.clone().unwrap_or_default(),
        reason: e.to_string(),
    }
}

/// Whether the index keeps a WasmTask: not once it is done and published.
fn keep(wt: &WasmTask) -> bool {
    entry_of(wt).is_ok_and(|e| !(e.state == Phase::Done && e.published))
}

impl WasmTaskLedger {
    pub fn new(client: Client, namespace: &str, task_ttl: Duration) -> Self {
        let (synced_tx, synced) = watch::channel(false);
        Self {
            api: Api::namespaced(client.clone(), namespace),
            config_maps: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            task_ttl,
            index: Arc::default(),
            synced,
            synced_tx: Arc::new(synced_tx),
            changed: Arc::new(Notify::new()),
            started: OnceLock::new(),
        }
    }

    /// How many WasmTasks this coordinator holds in memory: those still to run or to
    /// publish, once it leads; none before.
    pub fn held(&self) -> usize {
        self.lock_index().tasks.len()
    }

    /// The task's WasmTask as the index has it (the uid for a Job's ownerReference).
    pub fn owner_of(&self, task_id: &str) -> Option<(String, String)> {
        let index = self.lock_index();
        let name = index.name_for(task_id);
        let wt = index.tasks.get(&name)?;
        Some((name, wt.metadata.uid.clone()?))
    }

    /// Records in the task's WasmTask what the backend learned of its Job's admission
    /// (waiting and why, admitted, preempted); nothing once the task is no longer running.
    pub async fn admission(&self, task_id: &str, a: Admission) -> Result<(), LedgerError> {
        self.transition(task_id, Write::Admission(a))
            .await
            .map(|_| ())
    }

    /// The Kueue LocalQueue the task's WasmTask names (`spec.queueName`), if it names one.
    pub fn queue_of(&self, task_id: &str) -> Option<String> {
        let index = self.lock_index();
        let name = index.name_for(task_id);
        index.tasks.get(&name)?.spec.queue_name.clone()
    }

    /// Starts the index's watch and the pruner (once), and waits for the first full list.
    async fn synced(&self) {
        self.started.get_or_init(|| {
            vec![
                tokio::spawn(watch_index(
                    self.api.clone(),
                    self.index.clone(),
                    self.synced_tx.clone(),
                    self.changed.clone(),
                )),
                tokio::spawn(prune(self.api.clone(), self.task_ttl)),
            ]
        });
        let mut synced = self.synced.clone();
        let _ = synced.wait_for(|s| *s).await;
    }

    fn remember(&self, wt: WasmTask) {
        let Some(name) = wt.metadata.name.clone() else {
            return;
        };
        // Without the watch (a replica that never led) nothing reads the index or would
        // ever prune it: what it accepts through the API is not kept.
        if self.started.get().is_none() {
            return;
        }
        let mut index = self.lock_index();
        index.written_since_list.insert(name.clone());
        if keep(&wt) {
            index.tasks.insert(name, wt);
        } else {
            index.tasks.remove(&name);
            index.gone.insert(name, rv(&wt));
        }
    }

    /// The index; a panic elsewhere while it was held left it consistent (every change is
    /// one insert or remove), so a poisoned lock is still usable.
    fn lock_index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn indexed(&self, name: &str) -> Option<WasmTask> {
        self.lock_index().tasks.get(name).cloned()
    }

    /// Applies `write` to the task's WasmTask and writes its status, conditional on the
    /// resourceVersion read; on a conflict, reads it again and tries again.
    async fn transition(&self, task_id: &str, write: Write) -> Result<Entry, LedgerError> {
        let name = self.lock_index().name_for(task_id);
        let unknown = || LedgerError::Unknown(task_id.to_owned());
        let mut current = match self.indexed(&name) {
            Some(wt) => wt,
            None => self.fetch(&name).await?.ok_or_else(unknown)?,
        };
        for _ in 0..=CONFLICT_RETRIES {
            let entry = entry_of(&current).map_err(|e| invalid(&current, e))?;
            let before = current.status.clone().unwrap_or_default();
            let previous = before.clone();
            let mut have = before.delivered;
            let mut notes = before.notes;
            let next = match &write {
                Write::Note { key, value } => {
                    notes.insert(key.clone(), value.clone());
                    entry
                }
                Write::Transition(t) => state::apply(entry, t.clone(), now_ms())?,
                // Only while it runs: a finished task's status says how it ended.
                Write::Admission(_) if entry.state != Phase::Running => return Ok(entry),
                Write::Admission(_) => entry,
                Write::Delivered { sink, sinks } => {
                    if !have.contains(sink) {
                        have.push(sink.clone());
                    }
                    if !entry.published && sinks.iter().all(|s| have.contains(s)) {
                        state::apply(entry, Transition::Published, now_ms())?
                    } else {
                        entry
                    }
                }
            };
            let mut wt = current.clone();
            let mut status = status_of(&next, &job_name(&next.task_id), &have);
            status.notes = notes.clone();
            let update = match &write {
                Write::Admission(a) => Some(a),
                _ => None,
            };
            admission_status(&mut status, &previous, update, now_ms());
            wt.status = Some(status);
            match self
                .api
                .replace_status(&name, &PostParams::default(), &wt)
                .await
            {
                Ok(written) => {
                    self.remember(written);
                    return Ok(next);
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    debug!(wasm_task = %name, "conflict writing the status; reading it again");
                    current = self.fetch(&name).await?.ok_or_else(unknown)?;
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    self.lock_index().tasks.remove(&name);
                    return Err(unknown());
                }
                Err(e) => {
                    return Err(api_error(
                        format!("writing the status of WasmTask {name}"),
                        e,
                    ))
                }
            }
        }
        Err(LedgerError::Contended {
            what: format!("the status of WasmTask {name}"),
            tries: CONFLICT_RETRIES + 1,
        })
    }

    /// Applies `t` to each task in turn; one it no longer fits (started, finished or
    /// deleted by someone else meanwhile) is skipped.
    async fn each(&self, task_ids: Vec<String>, t: Transition) -> Result<Vec<Entry>, LedgerError> {
        let mut done = Vec::new();
        for id in task_ids {
            match self.transition(&id, Write::Transition(t.clone())).await {
                Ok(e) => done.push(e),
                Err(LedgerError::Transition(_) | LedgerError::Unknown(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    /// Visits every WasmTask of the namespace, a page at a time (memory: one page), until
    /// `visit` breaks.
    async fn scan(
        &self,
        doing: &str,
        mut visit: impl FnMut(&WasmTask) -> ControlFlow<()>,
    ) -> Result<(), LedgerError> {
        let mut token: Option<String> = None;
        loop {
            let mut lp = ListParams::default().limit(PAGE);
            if let Some(t) = &token {
                lp = lp.continue_token(t);
            }
            let page = self.api.list(&lp).await.map_err(|e| {
                api_error(
                    format!("{doing} WasmTasks in namespace {}", self.namespace),
                    e,
                )
            })?;
            for wt in &page.items {
                if visit(wt).is_break() {
                    return Ok(());
                }
            }
            token = page.metadata.continue_.filter(|t| !t.is_empty());
            if token.is_none() {
                return Ok(());
            }
        }
    }

    async fn fetch(&self, name: &str) -> Result<Option<WasmTask>, LedgerError> {
        self.api.get_opt(name).await.map_err(|e| {
            api_error(
                format!("reading WasmTask {name} in namespace {}", self.namespace),
                e,
            )
        })
    }

    async fn accept_one(&self, task: Task) -> Result<Accepted, LedgerError> {
        let wt = for_task(&task, &self.namespace);
        let name = wt.metadata.name.clone().unwrap_or_default();
        match self.api.create(&PostParams::default(), &wt).await {
            Ok(created) => {
                let entry = entry_of(&created).map_err(|e| invalid(&created, e))?;
                self.remember(created);
                Ok(Accepted::New(entry))
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let Some(existing) = self.fetch(&name).await? else {
                    // Deleted meanwhile (its TTL): it was done; accept it anew.
                    return Box::pin(self.accept_one(task)).await;
                };
                let known = entry_of(&existing).map_err(|e| invalid(&existing, e))?;
                Ok(if known.task == task {
                    Accepted::Known(known)
                } else {
                    Accepted::Conflict {
                        known,
                        offered: task,
                    }
                })
            }
            Err(e) => Err(api_error(
                format!("creating WasmTask {name} in namespace {}", self.namespace),
                e,
            )),
        }
    }
}

/// Keeps the index: the WasmTasks still to run or to publish.
async fn watch_index(
    api: Api<WasmTask>,
    index: Arc<Mutex<Index>>,
    synced: Arc<watch::Sender<bool>>,
    changed: Arc<Notify>,
) {
    let config = watcher::Config::default().page_size(PAGE);
    let mut events = std::pin::pin!(watcher(api, config).default_backoff());
    let mut buffer: HashMap<String, WasmTask> = HashMap::new();
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                warn!("watching the WasmTasks: {e}");
                continue;
            }
        };
        let mut idx = index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match event {
            watcher::Event::Init => {
                buffer.clear();
                idx.written_since_list.clear();
            }
            watcher::Event::InitApply(wt) => {
                if let (true, Some(name)) = (keep(&wt), wt.metadata.name.clone()) {
                    buffer.insert(name, wt);
                }
            }
            watcher::Event::InitDone => {
                // What this coordinator wrote itself while the list was being read may be
                // missing from it: keep that (an object deleted meanwhile is dropped when a
                // write to it finds it gone), and nothing else the list lacks.
                let listed = std::mem::take(&mut buffer);
                let written = std::mem::take(&mut idx.written_since_list);
                let mut merged = std::mem::take(&mut idx.tasks);
                merged.retain(|name, _| !listed.contains_key(name) && written.contains(name));
                merged.extend(listed);
                idx.tasks = merged;
                let _ = synced.send(true);
                changed.notify_one();
            }
            watcher::Event::Apply(wt) => {
                let Some(name) = wt.metadata.name.clone() else {
                    continue;
                };
                if let Some(seen) = idx.gone.get(&name).copied() {
                    if rv(&wt) < seen {
                        continue; // an older version of a task already published
                    }
                    idx.gone.remove(&name);
                }
                if keep(&wt) {
                    let newly_queued = entry_of(&wt).is_ok_and(|e| e.state == Phase::Queued);
                    // Never replace a newer object (this coordinator's own write) by an
                    // older one.
                    let newer = idx.tasks.get(&name).is_none_or(|old| rv(old) <= rv(&wt));
                    if newer {
                        idx.tasks.insert(name, wt);
                    }
                    if newly_queued {
                        changed.notify_one();
                    }
                } else {
                    idx.tasks.remove(&name);
                }
            }
            watcher::Event::Delete(wt) => {
                if let Some(name) = wt.metadata.name {
                    idx.tasks.remove(&name);
                    idx.gone.remove(&name);
                }
            }
        }
    }
}

/// The resourceVersion as a number, for ordering (the API server's are integers).
fn rv(wt: &WasmTask) -> u64 {
    wt.metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Deletes WasmTasks done and published more than `ttl` ago, every [`PRUNE_EVERY`].
async fn prune(api: Api<WasmTask>, ttl: Duration) {
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    let every = PRUNE_EVERY.min(ttl.max(Duration::from_secs(1)));
    loop {
        tokio::time::sleep(every).await;
        let mut token: Option<String> = None;
        loop {
            let mut lp = ListParams::default().limit(PAGE);
            if let Some(t) = &token {
                lp = lp.continue_token(t);
            }
            let page = match api.list(&lp).await {
                Ok(p) => p,
                Err(e) => {
                    warn!("listing WasmTasks to prune: {e}");
                    break;
                }
            };
            for wt in &page.items {
                let Ok(e) = entry_of(wt) else { continue };
                let expired = e.state == Phase::Done
                    && e.published
                    && e.finished_at
                        .is_some_and(|f| now_ms().saturating_sub(f) > ttl_ms);
                if let (true, Some(name)) = (expired, wt.metadata.name.as_deref()) {
                    match api.delete(name, &DeleteParams::background()).await {
                        Ok(_) => {
                            info!(task_id = %e.task_id, "WasmTask {name} deleted: done and published more than task_ttl ago")
                        }
                        Err(err) => warn!("deleting WasmTask {name}: {err}"),
                    }
                }
            }
            token = page.metadata.continue_.filter(|t| !t.is_empty());
            if token.is_none() {
                break;
            }
        }
    }
}

impl Ledger for WasmTaskLedger {
    fn accept(&self, tasks: Vec<Task>) -> BoxFuture<'_, Result<Vec<Accepted>, LedgerError>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(tasks.len());
            for t in tasks {
                out.push(self.accept_one(t).await?);
            }
            Ok(out)
        })
    }

    fn start(&self, limit: usize) -> BoxFuture<'_, Result<Vec<Entry>, LedgerError>> {
        Box::pin(async move {
            self.synced().await;
            let mut queued: Vec<(i64, String, String)> = self
                .lock_index()
                .tasks
                .values()
                .filter_map(|wt| {
                    let e = entry_of(wt).ok()?;
                    (e.state == Phase::Queued).then(|| {
                        (
                            e.accepted_at,
                            wt.metadata.name.clone().unwrap_or_default(),
                            e.task_id,
                        )
                    })
                })
                .collect();
            queued.sort();
            let ids = queued.into_iter().take(limit).map(|(_, _, id)| id);
            self.each(ids.collect(), Transition::Start).await
        })
    }

    fn finish(&self, report: TaskReport) -> BoxFuture<'_, Result<Entry, LedgerError>> {
        Box::pin(async move {
            let id = report.task.task_id.clone();
            self.transition(&id, Write::Transition(Transition::Finish(Box::new(report))))
                .await
        })
    }

    fn requeue(&self, task_ids: Vec<String>) -> BoxFuture<'_, Result<Vec<String>, LedgerError>> {
        Box::pin(async move {
            let requeued = self.each(task_ids, Transition::Requeue).await?;
            Ok(requeued.into_iter().map(|e| e.task_id).collect())
        })
    }

    fn delivered(
        &self,
        sink: String,
        task_ids: Vec<String>,
        sinks: Vec<String>,
    ) -> BoxFuture<'_, Result<(), LedgerError>> {
        Box::pin(async move {
            for id in task_ids {
                self.transition(
                    &id,
                    Write::Delivered {
                        sink: sink.clone(),
                        sinks: sinks.clone(),
                    },
                )
                .await?;
            }
            Ok(())
        })
    }

    fn note(
        &self,
        task_id: String,
        key: String,
        value: String,
    ) -> BoxFuture<'_, Result<(), LedgerError>> {
        Box::pin(async move {
            self.transition(&task_id, Write::Note { key, value })
                .await
                .map(|_| ())
        })
    }

    /// The key goes on the task's WasmTask: its first 63 digits as a label (to list by),
    /// the whole key as an annotation (to confirm). It lasts as long as the WasmTask
    /// (`task_ttl` after it is published).
    fn cache_put(&self, key: String, task_id: String) -> BoxFuture<'_, Result<(), LedgerError>> {
        Box::pin(async move {
            let name = self.lock_index().name_for(&task_id);
            let patch = serde_json::json!({"metadata": {
                "labels": {CACHE_KEY_LABEL: cache_label(&key)},
                "annotations": {CACHE_KEY_LABEL: key},
            }});
            match self
                .api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(written) => {
                    self.remember(written);
                    Ok(())
                }
                Err(kube::Error::Api(s)) if s.code == 404 => Err(LedgerError::Unknown(task_id)),
                Err(e) => Err(api_error(
                    format!("labelling WasmTask {name} with its cache key"),
                    e,
                )),
            }
        })
    }

    fn cache_get(&self, key: String) -> BoxFuture<'_, Result<Option<TaskReport>, LedgerError>> {
        Box::pin(async move {
            let lp =
                ListParams::default().labels(&format!("{CACHE_KEY_LABEL}={}", cache_label(&key)));
            let found = self.api.list(&lp).await.map_err(|e| {
                api_error(
                    format!(
                        "listing WasmTasks of cache key {key} in namespace {}",
                        self.namespace
                    ),
                    e,
                )
            })?;
            Ok(found
                .items
                .iter()
                .filter(|wt| {
                    wt.metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(CACHE_KEY_LABEL))
                        == Some(&key)
                })
                .filter_map(|wt| entry_of(wt).ok()?.report)
                .find(|r| r.status == ReportStatus::OK))
        })
    }

    /// Read from the API server, not from the index: a replica's index holds only its own
    /// writes until it leads, so its copy may lack what the leader noted since.
    fn notes(&self, task_id: String) -> BoxFuture<'_, Result<Notes, LedgerError>> {
        Box::pin(async move {
            let name = self.lock_index().name_for(&task_id);
            Ok(self
                .fetch(&name)
                .await?
                .and_then(|wt| wt.status)
                .map(|s| s.notes)
                .unwrap_or_default())
        })
    }

    fn running(&self) -> BoxFuture<'_, Result<Vec<Entry>, LedgerError>> {
        Box::pin(async move {
            self.synced().await;
            let idx = self.lock_index();
            Ok(idx
                .tasks
                .values()
                .filter_map(|wt| entry_of(wt).ok())
                .filter(|e| e.state == Phase::Running)
                .collect())
        })
    }

    fn unpublished(&self) -> BoxFuture<'_, Result<Vec<Unpublished>, LedgerError>> {
        Box::pin(async move {
            self.synced().await;
            let idx = self.lock_index();
            let mut done: Vec<(i64, Unpublished)> = idx
                .tasks
                .values()
                .filter_map(|wt| {
                    let e = entry_of(wt).ok()?;
                    if e.state != Phase::Done || e.published {
                        return None;
                    }
                    let delivered = wt.status.clone().unwrap_or_default().delivered;
                    Some((
                        e.finished_at.unwrap_or(0),
                        Unpublished {
                            report: e.report?,
                            delivered,
                        },
                    ))
                })
                .collect();
            done.sort_by_key(|(at, _)| *at);
            Ok(done.into_iter().map(|(_, u)| u).collect())
        })
    }

    fn get(&self, task_id: String) -> BoxFuture<'_, Result<Option<Entry>, LedgerError>> {
        Box::pin(async move {
            let name = self.lock_index().name_for(&task_id);
            match self.fetch(&name).await? {
                Some(wt) => Ok(Some(entry_of(&wt).map_err(|e| invalid(&wt, e))?)),
                None => Ok(None),
            }
        })
    }

    fn list(
        &self,
        filter: Option<Filter>,
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> BoxFuture<'_, Result<Vec<Entry>, LedgerError>> {
        Box::pin(async move {
            // No sequence numbers here: `seq` is the position in the API server's order
            // (by name), so `after` pages through a listing that does not change meanwhile.
            let mut out = Vec::new();
            let mut position = 0u64;
            let mut bytes = 0usize;
            self.scan("listing", |wt| {
                let Ok(mut e) = entry_of(wt) else {
                    return ControlFlow::Continue(());
                };
                let wanted = match filter {
                    None => true,
                    Some(Filter::Queued) => e.shown_state() == Phase::Queued,
                    Some(Filter::Running) => e.shown_state() == Phase::Running,
                    Some(Filter::Status(s)) => e.state == Phase::Done && e.status == Some(s),
                };
                if !wanted {
                    return ControlFlow::Continue(());
                }
                position += 1;
                if position <= after {
                    return ControlFlow::Continue(());
                }
                let size = serde_json::to_vec(&e.report).map_or(0, |v| v.len());
                if out.len() >= limit || (!out.is_empty() && bytes + size > max_bytes) {
                    return ControlFlow::Break(());
                }
                bytes += size;
                e.seq = position;
                out.push(e);
                ControlFlow::Continue(())
            })
            .await?;
            Ok(out)
        })
    }

    fn cursor(&self, name: String) -> BoxFuture<'_, Result<Option<u64>, LedgerError>> {
        Box::pin(async move {
            let cm = self.config_maps.get_opt(CURSORS).await.map_err(|e| {
                api_error(
                    format!(
                        "reading ConfigMap {CURSORS} in namespace {}",
                        self.namespace
                    ),
                    e,
                )
            })?;
            let value = cm
                .and_then(|cm| cm.data)
                .and_then(|d| d.get(&cursor_key(&name)).cloned());
            match value {
                None => Ok(None),
                Some(v) => v.parse().map(Some).map_err(|_| LedgerError::InvalidObject {
                    name: format!("ConfigMap {CURSORS}"),
                    reason: format!("the cursor of {name} is {v:?}, not a number"),
                }),
            }
        })
    }

    fn set_cursor(&self, name: String, value: u64) -> BoxFuture<'_, Result<(), LedgerError>> {
        Box::pin(async move {
            let doing = || {
                format!(
                    "saving the cursor of {name} in ConfigMap {CURSORS} in namespace {}",
                    self.namespace
                )
            };
            for _ in 0..CURSOR_TRIES {
                let current = self
                    .config_maps
                    .get_opt(CURSORS)
                    .await
                    .map_err(|e| api_error(doing(), e))?;
                let written = match current {
                    None => {
                        let mut cm = ConfigMap::default();
                        cm.metadata.name = Some(CURSORS.into());
                        cm.metadata.labels = Some(
                            [(
                                super::job::LABEL_MANAGED_BY.to_owned(),
                                super::job::MANAGER.to_owned(),
                            )]
                            .into(),
                        );
                        cm.data = Some([(cursor_key(&name), value.to_string())].into());
                        self.config_maps
                            .create(&PostParams::default(), &cm)
                            .await
                            .map(|_| ())
                    }
                    Some(mut cm) => {
                        cm.data
                            .get_or_insert_with(Default::default)
                            .insert(cursor_key(&name), value.to_string());
                        // Checked against its resourceVersion: a concurrent write is a conflict.
                        self.config_maps
                            .replace(CURSORS, &PostParams::default(), &cm)
                            .await
                            .map(|_| ())
                    }
                };
                match written {
                    Ok(()) => return Ok(()),
                    // Changed (409) or deleted (404) since it was read: read it again.
                    Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => continue,
                    Err(e) => return Err(api_error(doing(), e)),
                }
            }
            Err(LedgerError::Contended {
                what: format!("ConfigMap {CURSORS}"),
                tries: CURSOR_TRIES,
            })
        })
    }

    /// Read from the API server (paged), not from the index: `--once` ends on it, and
    /// the index may not have seen a task this coordinator created a moment ago.
    fn counts(&self) -> BoxFuture<'_, Result<Counts, LedgerError>> {
        Box::pin(async move {
            let mut c = Counts::default();
            self.scan("counting", |wt| {
                if let Ok(e) = entry_of(wt) {
                    match e.state {
                        Phase::Queued => c.queued += 1,
                        Phase::Running => c.running += 1,
                        Phase::Done => {
                            c.done += 1;
                            c.unpublished += u64::from(!e.published);
                        }
                    }
                }
                ControlFlow::Continue(())
            })
            .await?;
            Ok(c)
        })
    }

    fn changed(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move { self.changed.notified().await })
    }

    fn ready(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            match self.api.list(&ListParams::default().limit(1)).await {
                Ok(_) => Ok(()),
                Err(e) => Err(api_error(
                    format!("listing WasmTasks in namespace {}", self.namespace),
                    e,
                )
                .to_string()),
            }
        })
    }

    fn describe(&self) -> String {
        format!("the WasmTasks in namespace {}", self.namespace)
    }
}
