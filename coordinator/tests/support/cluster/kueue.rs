//! Kueue, as far as a tool that creates Jobs sees it (kubernetes-sigs/kueue, "Run a
//! Kubernetes Job"):
//!
//! - the webhook: a Job created with the label `kueue.x-k8s.io/queue-name` is suspended
//!   (`spec.suspend: true`) before it is stored;
//! - one Workload (`kueue.x-k8s.io/v1beta1`, a custom resource here) per such Job, labelled
//!   `kueue.x-k8s.io/job-uid` and owned by the Job;
//! - admission in creation order (StrictFIFO) under one ClusterQueue's CPU quota: a Workload
//!   is admitted when the effective CPU request of its pod (the larger of the biggest init
//!   container and the sum of the containers) fits beside the admitted ones; admitting
//!   un-suspends the Job; the queue's head that does not fit blocks those behind it;
//! - a Job naming a LocalQueue that does not exist stays suspended, its Workload saying so
//!   (`QuotaReserved` False, `LocalQueue … doesn't exist`), and blocks nothing;
//! - quota is released when the Job finishes (`Complete`/`Failed`) or is deleted;
//! - eviction ([`super::FakeCluster::evict`]): the Job is suspended again (the Job
//!   controller deletes its pods, adds the `Suspended` condition and resets `startTime` on
//!   resume), the Workload says `Evicted`, and it waits [`KueueOptions::requeue_after`]
//!   before it can be admitted again.
//!
//! Not emulated: flavors other than one, resources other than CPU, cohorts, borrowing,
//! priorities and preemption decisions (eviction is the test's call), MultiKueue, admission
//! checks, partial admission.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::store::{now, Res, Selector};
use super::Cluster;

pub const LABEL_QUEUE: &str = "kueue.x-k8s.io/queue-name";
pub const LABEL_JOB_UID: &str = "kueue.x-k8s.io/job-uid";
const GROUP_VERSION: &str = "kueue.x-k8s.io/v1beta1";
const WORKLOADS: &str = "workloads";

/// What Kueue is set up with: the LocalQueues of the namespaces (all pointing at one
/// ClusterQueue) and that ClusterQueue's CPU quota.
#[derive(Debug, Clone)]
pub struct KueueOptions {
    pub local_queues: Vec<String>,
    /// In millicores.
    pub cpu_quota_millis: u64,
    /// How long an evicted Workload waits before it may be admitted again (Kueue requeues
    /// with a backoff); long enough for a client's watch to see the Job suspended.
    pub requeue_after: Duration,
}

pub(super) struct Kueue {
    opts: KueueOptions,
    /// (namespace, name) of the queued Jobs in the order they were created.
    order: Mutex<Vec<(String, String)>>,
    /// Job uid → when its Workload was evicted.
    evicted: Mutex<HashMap<String, Instant>>,
    /// The most Jobs admitted at once (for the tests' own cross-check).
    peak: Mutex<usize>,
}

impl Kueue {
    pub(super) fn new(opts: KueueOptions) -> Self {
        Self {
            opts,
            order: Mutex::new(Vec::new()),
            evicted: Mutex::new(HashMap::new()),
            peak: Mutex::new(0),
        }
    }

    /// The webhook's part: a Job with a queue label is stored suspended.
    pub(super) fn on_create(&self, res: Res, obj: &mut Value) {
        if res == Res::Jobs && obj["metadata"]["labels"][LABEL_QUEUE].as_str().is_some() {
            obj["spec"]["suspend"] = json!(true);
        }
    }

    /// A queued Job was stored: it joins the queue's end.
    pub(super) fn created(&self, res: Res, ns: &str, obj: &Value) {
        if res != Res::Jobs || obj["metadata"]["labels"][LABEL_QUEUE].as_str().is_none() {
            return;
        }
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let mut order = self.order.lock().unwrap_or_else(PoisonError::into_inner);
        order.retain(|(n, j)| !(n == ns && *j == name));
        order.push((ns.to_owned(), name));
    }

    pub(super) fn peak(&self) -> usize {
        *self.peak.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn evicted_now(&self, job_uid: &str) {
        self.evicted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(job_uid.to_owned(), Instant::now());
    }
}

/// The Workload CRD, enough to serve Workloads (any content; a status subresource).
pub(super) fn workload_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "workloads.kueue.x-k8s.io"},
        "spec": {
            "group": "kueue.x-k8s.io",
            "scope": "Namespaced",
            "names": {"kind": "Workload", "listKind": "WorkloadList", "plural": "workloads", "singular": "workload"},
            "versions": [{
                "name": "v1beta1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
            }],
        },
    })
}

/// Kueue's controllers: a pass on every change, and at least every 50 ms.
pub(super) async fn run(c: Arc<Cluster>) {
    let mut wake = c.changed.subscribe();
    loop {
        pass(&c);
        let _ = tokio::time::timeout(Duration::from_millis(50), wake.changed()).await;
    }
}

/// `500m`, `1`, `0.5`, `2k`… as millicores (0 when unreadable).
fn cpu_millis(q: &Value) -> u64 {
    let s = match q {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return 0,
    };
    if let Some(m) = s.strip_suffix('m') {
        return m.parse().unwrap_or(0);
    }
    s.parse::<f64>()
        .map_or(0, |cores| (cores * 1000.0).round() as u64)
}

/// The pod's effective CPU request: the larger of its biggest init container's and the sum
/// of its containers'.
fn effective_cpu(job: &Value) -> u64 {
    let spec = &job["spec"]["template"]["spec"];
    let request = |c: &Value| cpu_millis(&c["resources"]["requests"]["cpu"]);
    let list = |k: &str| spec[k].as_array().cloned().unwrap_or_default();
    let init = list("initContainers")
        .iter()
        .map(request)
        .max()
        .unwrap_or(0);
    let main: u64 = list("containers").iter().map(request).sum();
    init.max(main)
}

fn condition(type_: &str, status: bool, reason: &str, message: &str) -> Value {
    json!({"type": type_, "status": if status { "True" } else { "False" },
           "reason": reason, "message": message, "lastTransitionTime": now()})
}

/// Sets the Workload's conditions to `conditions` (by type, keeping the others), writing
/// only when a type's status, reason or message changes.
fn set_conditions(c: &Cluster, res: Res, ns: &str, name: &str, conditions: &[Value]) {
    c.write(|s| {
        let Ok(current) = s.get(res, ns, name) else {
            return;
        };
        let mut list = current["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut changed = false;
        for new in conditions {
            let same = |old: &Value| {
                ["status", "reason", "message"]
                    .iter()
                    .all(|k| old[*k] == new[*k])
            };
            match list.iter_mut().find(|o| o["type"] == new["type"]) {
                Some(old) if same(old) => {}
                Some(old) => {
                    *old = new.clone();
                    changed = true;
                }
                None => {
                    list.push(new.clone());
                    changed = true;
                }
            }
        }
        if changed {
            s.modify(res, ns, name, |o| o["status"]["conditions"] = json!(list));
        }
    });
}

fn set_suspend(c: &Cluster, ns: &str, name: &str, uid: &str, suspend: bool) {
    c.write(|s| {
        s.modify(Res::Jobs, ns, name, |o| {
            if o["metadata"]["uid"] == uid {
                o["spec"]["suspend"] = json!(suspend);
            }
        })
    });
}

fn workload_name(job: &str, uid: &str) -> String {
    format!("job-{job}-{}", uid.get(..5).unwrap_or(uid))
}

fn pass(c: &Cluster) {
    let Some(kueue) = &c.kueue else { return };
    let Some(workloads) = c.read(|s| s.resource(GROUP_VERSION, WORKLOADS)) else {
        return;
    };
    let order = kueue
        .order
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let mut used = 0u64;
    let mut admitted = 0usize;
    let mut pending = Vec::new();
    let mut gone = Vec::new();
    for (ns, name) in order {
        let Ok(job) = c.read(|s| s.get(Res::Jobs, &ns, &name)) else {
            gone.push((ns, name));
            continue;
        };
        let uid = job["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let wl = workload_name(&name, &uid);
        let exists = c.read(|s| {
            !s.list(workloads, Some(&ns), &Selector::label(LABEL_JOB_UID, &uid))
                .is_empty()
        });
        let queue = job["metadata"]["labels"][LABEL_QUEUE]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let cpu = effective_cpu(&job);
        if !exists {
            let obj = json!({
                "apiVersion": GROUP_VERSION, "kind": "Workload",
                "metadata": {"name": wl, "namespace": ns,
                    "labels": {LABEL_JOB_UID: uid, LABEL_QUEUE: queue},
                    "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name,
                        "uid": uid, "controller": true, "blockOwnerDeletion": true}]},
                "spec": {"queueName": queue, "podSets": [{"name": "main", "count": 1,
                    "template": job["spec"]["template"].clone()}]},
            });
            let _ = c.create(workloads, &ns, obj);
        }
        let finished = job["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|cond| {
                (cond["type"] == "Complete" || cond["type"] == "Failed") && cond["status"] == "True"
            });
        if finished {
            set_conditions(
                c,
                workloads,
                &ns,
                &wl,
                &[condition("Finished", true, "JobFinished", "Job finished")],
            );
            continue;
        }
        if job["spec"]["suspend"] == false {
            used += cpu;
            admitted += 1;
            continue;
        }
        pending.push((ns, name, uid, wl, queue, cpu));
    }
    if !gone.is_empty() {
        kueue
            .order
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|k| !gone.contains(k));
    }
    let quota = kueue.opts.cpu_quota_millis;
    for (ns, name, uid, wl, queue, cpu) in pending {
        if !kueue.opts.local_queues.contains(&queue) {
            let message = format!("LocalQueue {queue} doesn't exist");
            set_conditions(
                c,
                workloads,
                &ns,
                &wl,
                &[condition("QuotaReserved", false, "Inadmissible", &message)],
            );
            continue;
        }
        let backing_off = kueue
            .evicted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&uid)
            .is_some_and(|at| at.elapsed() < kueue.opts.requeue_after);
        if backing_off {
            continue;
        }
        if used + cpu > quota {
            let message = format!(
                "couldn't assign flavors to pod set main: insufficient unused quota for cpu in flavor default-flavor, {}m more needed",
                used + cpu - quota
            );
            set_conditions(
                c,
                workloads,
                &ns,
                &wl,
                &[condition("QuotaReserved", false, "Pending", &message)],
            );
            // StrictFIFO: the head that does not fit holds the ones behind it.
            break;
        }
        used += cpu;
        admitted += 1;
        set_conditions(
            c,
            workloads,
            &ns,
            &wl,
            &[
                condition(
                    "QuotaReserved",
                    true,
                    "QuotaReserved",
                    "Quota reserved in ClusterQueue cluster-queue",
                ),
                condition("Admitted", true, "Admitted", "The workload is admitted"),
                condition("Evicted", false, "Admitted", "The workload is admitted"),
            ],
        );
        set_suspend(c, &ns, &name, &uid, false);
    }
    let mut peak = kueue.peak.lock().unwrap_or_else(PoisonError::into_inner);
    *peak = (*peak).max(admitted);
}

/// Evicts the Workload of Job `name`: the Job is suspended again and its Workload says why.
pub(super) fn evict(c: &Cluster, ns: &str, name: &str, message: &str) {
    let Some(kueue) = &c.kueue else {
        panic!("evict: the cluster runs no Kueue (ClusterOptions::kueue)");
    };
    let workloads = c
        .read(|s| s.resource(GROUP_VERSION, WORKLOADS))
        .expect("the Workload CRD is installed with Kueue");
    let job = c
        .read(|s| s.get(Res::Jobs, ns, name))
        .unwrap_or_else(|e| panic!("evict: Job {name}: {}", e.message));
    let uid = job["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    kueue.evicted_now(&uid);
    set_conditions(
        c,
        workloads,
        ns,
        &workload_name(name, &uid),
        &[
            condition("Evicted", true, "Preempted", message),
            condition(
                "Admitted",
                false,
                "NoReservation",
                "The workload has no reservation",
            ),
            condition("QuotaReserved", false, "Pending", message),
        ],
    );
    set_suspend(c, ns, name, &uid, true);
}
