//! `FakeCluster`: an in-process stand-in for a Kubernetes 1.33 cluster, for tests that drive
//! the real `kube` client, or the real `kubectl`, against it.
//!
//! - [`api`]: an API server on 127.0.0.1 speaking the REST and watch protocol for Jobs, Pods
//!   (and `pods/log`), Leases, ConfigMaps, both kinds of Events, CustomResourceDefinitions and
//!   the custom resources they define (status subresource, Tables with printer columns,
//!   paging), over the [`store`] (every object as JSON, one resourceVersion counter, the full
//!   change history for watches); [`discovery`] has the discovery documents kubectl reads
//!   first, and [`schema`] the OpenAPI v3 pruning and validation of custom resources.
//! - [`controller`]: the Job controller (pods from the template, podFailurePolicy,
//!   backoffLimit, activeDeadlineSeconds, the 1.33 conditions) and the garbage collector's
//!   part for objects whose owners are gone. Deleting an object deletes its dependents (by
//!   `ownerReferences`) at once, cascading, unless the policy is `Orphan`.
//! - [`kueue`] (when [`ClusterOptions::kueue`] is set): Kueue's webhook, Workloads,
//!   admission under a CPU quota and eviction, as a Job-creating tool sees them.
//! - [`kubelet`]: runs each pod's init containers and containers as local processes (the
//!   images map to local binaries), with emptyDir volumes as temp dirs, termination
//!   messages, logs and a memory limit enforced like the cgroup OOM killer.
//!
//! Not simulated, because the tests of a Job-running service do not need them: nodes and
//! scheduling, namespaces as objects, other built-in resources, authentication, admission,
//! validation of built-in resources, graceful deletion (deletes are immediate and kill with
//! SIGKILL), finalizers, restartPolicy other than Never, `ttlSecondsAfterFinished`, and the
//! containers' isolation (user, read-only root, read-only mounts, CPU limits: processes run
//! as the test's user). Each module says what it simplifies.
//!
//! The cluster runs on its own tokio runtime and thread, so its sync methods work from plain
//! `#[test]`s and from inside `#[tokio::test]`s alike; the snapshots read the store under a
//! std mutex and never block on the cluster's runtime.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod api;
mod controller;
mod discovery;
mod kubelet;
mod kueue;
mod schema;
mod store;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, watch};

use self::kubelet::Kubelet;
pub use self::kueue::KueueOptions;
use self::store::{ApiError, Res, Selector, Store};

/// The coordinator's default images (`executor_image`, `fetcher_image`).
pub const EXECUTOR_IMAGE: &str = "executor-demo/executor:demo";
pub const FETCHER_IMAGE: &str = "executor-demo/fetcher:demo";

/// [`ClusterOptions::images`] for the default images: the `runner` and `fetcher` in `bins`
/// (beside the coordinator under test).
pub fn build_images(bins: &Path) -> Vec<(String, PathBuf)> {
    vec![
        (EXECUTOR_IMAGE.into(), bins.join("runner")),
        (FETCHER_IMAGE.into(), bins.join("fetcher")),
    ]
}

#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// image reference -> local binary; any image not in the map fails to pull.
    pub images: Vec<(String, PathBuf)>,
    /// Delay before a failed pod is replaced (Kubernetes: 10 s, doubling); default 100 ms.
    /// Doubles here too, per failure.
    pub pod_backoff: Duration,
    /// CustomResourceDefinitions installed at start (e.g. [`FakeCluster::wasm_task_crd`]);
    /// default none.
    pub crds: Vec<Value>,
    /// Kueue in front of the Job controller, with its Workload CRD; default none (a
    /// Workload is then not served, as on a cluster without Kueue).
    pub kueue: Option<KueueOptions>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            images: Vec::new(),
            pod_backoff: Duration::from_millis(100),
            crds: Vec::new(),
            kueue: None,
        }
    }
}

/// A pod for the kubelet to run.
#[derive(Debug, Clone)]
struct PodRef {
    ns: String,
    name: String,
    uid: String,
}

/// What the API server, the controller and the kubelet share.
struct Cluster {
    store: Mutex<Store>,
    /// The store's resourceVersion after each write: watches and the controller wake on it.
    changed: watch::Sender<u64>,
    to_run: mpsc::UnboundedSender<PodRef>,
    kubelet: Kubelet,
    images: HashMap<String, PathBuf>,
    pod_backoff: Duration,
    /// Per-pod dirs: emptyDir volumes, working dirs, termination-message files.
    root: PathBuf,
    kueue: Option<kueue::Kueue>,
}

impl Cluster {
    fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn read<T>(&self, f: impl FnOnce(&Store) -> T) -> T {
        f(&self.lock())
    }

    /// Runs `f` on the store and wakes watchers if it stored anything.
    fn write<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        let (out, rv) = {
            let mut s = self.lock();
            let out = f(&mut s);
            (out, s.rv())
        };
        self.changed
            .send_if_modified(|v| std::mem::replace(v, rv) != rv);
        out
    }

    /// Creates an object; a new pod goes to the kubelet.
    fn create(&self, res: Res, ns: &str, obj: Value) -> Result<Value, ApiError> {
        self.create_if(res, ns, obj, |_| Ok(()))
    }

    /// Creates an object if `check` passes, under the same lock (the Job controller's
    /// pod create must not race a delete of its Job); a new pod goes to the kubelet.
    fn create_if(
        &self,
        res: Res,
        ns: &str,
        mut obj: Value,
        check: impl FnOnce(&Store) -> Result<(), ApiError>,
    ) -> Result<Value, ApiError> {
        if let Some(kueue) = &self.kueue {
            kueue.on_create(res, &mut obj);
        }
        let created = self.write(|s| {
            check(s)?;
            s.create(res, ns, obj)
        })?;
        if let Some(kueue) = &self.kueue {
            kueue.created(res, ns, &created);
        }
        if res == Res::Pods {
            let pod = PodRef {
                ns: ns.to_string(),
                name: created["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                uid: created["metadata"]["uid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            };
            self.kubelet.admit(&pod.uid);
            let _ = self.to_run.send(pod);
        }
        Ok(created)
    }

    /// Deletes at once, then the dependents, as the garbage collector would: objects whose
    /// owner references name the deleted one are deleted in turn (`Background`;
    /// `Foreground` is treated alike), cascading, or freed of that owner reference
    /// (`Orphan`, the server's default for batch/v1 Jobs when the client names no policy).
    /// A pod's processes are killed; a CRD's custom resources are deleted with it.
    fn delete(
        &self,
        res: Res,
        ns: &str,
        name: &str,
        policy: Option<&str>,
        uid: Option<&str>,
    ) -> Result<Value, ApiError> {
        let custom = match res {
            Res::Crds => self.read(|s| s.custom_names(name)),
            _ => None,
        };
        let default = if res == Res::Jobs {
            "Orphan"
        } else {
            "Background"
        };
        let orphan = policy.unwrap_or(default) == "Orphan";
        let deleted = self.write(|s| {
            let obj = s.get(res, ns, name)?;
            let obj_uid = obj["metadata"]["uid"].as_str().unwrap_or_default();
            if uid.is_some_and(|u| u != obj_uid) {
                let why = format!(
                    "Precondition failed: UID in precondition: {}, UID in object meta: {obj_uid}",
                    uid.unwrap_or("")
                );
                return Err(ApiError::conflict(res, name, &why));
            }
            // Orphans are freed under the same lock, so the garbage collector never sees
            // them owned by nothing.
            if orphan {
                for (dep_res, dep_ns, dep_name) in s.dependents(obj_uid, ns) {
                    s.modify(dep_res, &dep_ns, &dep_name, |o| {
                        let meta = &mut o["metadata"];
                        if let Some(refs) = meta["ownerReferences"].as_array_mut() {
                            refs.retain(|r| r["uid"] != obj_uid);
                            if refs.is_empty() {
                                meta.as_object_mut().map(|m| m.remove("ownerReferences"));
                            }
                        }
                    });
                }
            }
            s.remove(res, ns, name)
        })?;
        let uid = deleted["metadata"]["uid"].as_str().unwrap_or_default();
        if res == Res::Pods {
            self.kubelet.stop(uid, true);
            let _ = std::fs::remove_dir_all(self.root.join(uid));
        }
        if let Some(names) = custom {
            let objects = Res::Custom(names);
            for (ns, name) in self.read(|s| s.keys(objects)) {
                let _ = self.delete(objects, &ns, &name, Some("Background"), None);
            }
        }
        if !orphan {
            for (dep_res, dep_ns, dep_name) in self.read(|s| s.dependents(uid, ns)) {
                let _ = self.delete(dep_res, &dep_ns, &dep_name, Some("Background"), None);
            }
        }
        Ok(deleted)
    }
}

/// The stand-in cluster. Dropping it stops the server and kills every pod process.
pub struct FakeCluster {
    cluster: Arc<Cluster>,
    addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    _root: tempfile::TempDir,
}

impl std::fmt::Debug for FakeCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FakeCluster({})", self.url())
    }
}

impl FakeCluster {
    /// Starts the API server, the Job controller and the kubelet on a runtime of their own.
    pub fn start(opts: ClusterOptions) -> FakeCluster {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let root = tempfile::Builder::new()
            .prefix("fake-cluster-")
            .tempdir()
            .unwrap();
        let (to_run, run_rx) = mpsc::unbounded_channel();
        let cluster = Arc::new(Cluster {
            store: Mutex::new(Store::new()),
            changed: watch::Sender::new(0),
            to_run,
            kubelet: Kubelet::default(),
            images: opts.images.into_iter().collect(),
            pod_backoff: opts.pod_backoff,
            root: root.path().to_path_buf(),
            kueue: opts.kueue.map(kueue::Kueue::new),
        });
        let with_kueue = cluster.kueue.is_some();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let c = Arc::clone(&cluster);
        let thread = std::thread::Builder::new()
            .name("fake-cluster".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    tokio::spawn(kubelet::run(Arc::clone(&c), run_rx));
                    tokio::spawn(controller::run(Arc::clone(&c)));
                    if c.kueue.is_some() {
                        tokio::spawn(kueue::run(Arc::clone(&c)));
                    }
                    let server = axum::serve(listener, api::router(c));
                    tokio::select! {
                        r = server => r.unwrap(),
                        _ = stop_rx => {}
                    }
                });
                rt.shutdown_timeout(Duration::from_secs(2));
            })
            .unwrap();
        let fc = FakeCluster {
            cluster,
            addr,
            stop: Some(stop),
            thread: Some(thread),
            _root: root,
        };
        for crd in opts.crds {
            fc.create_crd(crd);
        }
        if with_kueue {
            fc.create_crd(kueue::workload_crd());
        }
        fc
    }

    /// Installs a CRD as `kubectl apply -f` would; it is served (Established) at once.
    fn create_crd(&self, crd: Value) {
        let name = crd["metadata"]["name"].to_string();
        self.cluster
            .create(Res::Crds, "", crd)
            .unwrap_or_else(|e| panic!("install CRD {name}: {}", e.message));
    }

    /// Installs the CRD in a YAML file (one document).
    pub fn install_crd(&self, yaml_path: &Path) {
        self.create_crd(read_yaml(yaml_path));
    }

    /// `k8s/crd.yaml`: the WasmTask CRD, as a value for [`ClusterOptions::crds`].
    pub fn wasm_task_crd() -> Value {
        read_yaml(&super::repo_root().join("k8s/crd.yaml"))
    }

    /// The custom resources `{plural}` of `group_version` in `ns`, raw (`[]` when the
    /// resource is not served).
    pub fn custom_objects(&self, group_version: &str, plural: &str, ns: &str) -> Vec<Value> {
        self.cluster
            .read(|s| match s.resource(group_version, plural) {
                Some(res) => s.list(res, Some(ns), &Selector::default()),
                None => Vec::new(),
            })
    }

    /// Creates a custom resource as another client would (e.g. a WasmTask a user applies).
    pub fn create_custom(&self, group_version: &str, plural: &str, ns: &str, obj: Value) -> Value {
        let res = self
            .cluster
            .read(|s| s.resource(group_version, plural))
            .unwrap_or_else(|| panic!("create_custom: {plural}.{group_version} is not served"));
        self.cluster
            .create(res, ns, obj)
            .unwrap_or_else(|e| panic!("create_custom: {}", e.message))
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Writes a kubeconfig for this cluster (no auth) whose context names `namespace`, for
    /// `KUBECONFIG` or `Kubeconfig::read_from`.
    pub fn write_kubeconfig(&self, dir: &Path, namespace: &str) -> PathBuf {
        let config = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url()}}],
            "users": [{"name": "fake", "user": {}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": namespace}}],
            "current-context": "fake",
        });
        let path = dir.join("kubeconfig");
        std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
        path
    }

    fn snapshot<T: DeserializeOwned>(&self, res: Res, ns: &str) -> Vec<T> {
        self.cluster
            .read(|s| s.list(res, Some(ns), &Selector::default()))
            .into_iter()
            .map(|o| serde_json::from_value(o).unwrap())
            .collect()
    }

    pub fn jobs(&self, ns: &str) -> Vec<Job> {
        self.snapshot(Res::Jobs, ns)
    }

    pub fn pods(&self, ns: &str) -> Vec<Pod> {
        self.snapshot(Res::Pods, ns)
    }

    pub fn leases(&self, ns: &str) -> Vec<Lease> {
        self.snapshot(Res::Leases, ns)
    }

    pub fn config_maps(&self, ns: &str) -> Vec<ConfigMap> {
        self.snapshot(Res::ConfigMaps, ns)
    }

    /// `v1` and `events.k8s.io/v1` Events, raw.
    pub fn events(&self, ns: &str) -> Vec<Value> {
        let mut events = self.snapshot(Res::CoreEvents, ns);
        events.extend(self.snapshot::<Value>(Res::Events, ns));
        events
    }

    /// Every request so far, in order: (method, path?query).
    pub fn requests(&self) -> Vec<(String, String)> {
        self.cluster.read(|s| s.requests.clone())
    }

    /// Every Job as created, in order.
    pub fn created_jobs(&self) -> Vec<Value> {
        self.cluster.read(|s| s.created_jobs.clone())
    }

    /// (pod, node) of every pod put on a node, in order.
    pub fn scheduled(&self) -> Vec<(String, String)> {
        self.cluster.read(|s| s.scheduled.clone())
    }

    /// Creates a Job as another client would (for adoption tests).
    pub fn create_job(&self, ns: &str, job: &Job) -> Job {
        let created = self
            .cluster
            .create(Res::Jobs, ns, serde_json::to_value(job).unwrap())
            .unwrap_or_else(|e| panic!("create_job: {}", e.message));
        serde_json::from_value(created).unwrap()
    }

    /// Pods ever created for the Job named `job` in `ns`, deleted ones included.
    pub fn pods_created(&self, ns: &str, job: &str) -> usize {
        self.cluster.read(|s| {
            let changes = s.changes_from(0).iter();
            changes
                .filter(|c| c.res == Res::Pods && c.ns == ns && c.event == "ADDED")
                .filter(|c| c.object["metadata"]["labels"][store::JOB_NAME] == job)
                .count()
        })
    }

    /// Kueue's Workloads in `ns`, raw.
    pub fn workloads(&self, ns: &str) -> Vec<Value> {
        self.custom_objects("kueue.x-k8s.io/v1beta1", "workloads", ns)
    }

    /// Evicts Job `job`'s Workload as Kueue's preemption does: the Job is suspended again
    /// (its pods deleted) and may be admitted again after [`KueueOptions::requeue_after`].
    pub fn evict(&self, ns: &str, job: &str, message: &str) {
        kueue::evict(&self.cluster, ns, job, message);
    }

    /// The most Jobs the Kueue stand-in has had admitted at once.
    pub fn kueue_peak(&self) -> usize {
        self.cluster.kueue.as_ref().map_or(0, kueue::Kueue::peak)
    }

    /// Container processes alive now.
    pub fn running_processes(&self) -> usize {
        self.cluster.kubelet.running()
    }

    /// Polls `f` every 20 ms; on timeout panics naming `what`, with the Jobs and pods.
    #[track_caller]
    pub fn wait_until(&self, what: &str, timeout: Duration, f: impl Fn(&FakeCluster) -> bool) {
        let deadline = Instant::now() + timeout;
        while !f(self) {
            if Instant::now() >= deadline {
                let all = self.cluster.read(|s| {
                    let sel = Selector::default();
                    let mut all = s.list(Res::Jobs, None, &sel);
                    all.extend(s.list(Res::Pods, None, &sel));
                    all
                });
                let dump: Vec<String> = all
                    .iter()
                    .map(|o| format!("{} {}: {}", o["kind"], o["metadata"]["name"], o["status"]))
                    .collect();
                panic!(
                    "timed out after {timeout:?} waiting until {what}\n{}",
                    dump.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn read_yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml_ng::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not one YAML document: {e}", path.display()))
}

impl Drop for FakeCluster {
    fn drop(&mut self) {
        self.cluster.kubelet.kill_all();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
