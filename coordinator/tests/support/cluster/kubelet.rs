//! The kubelet: runs a pod's init containers in order, then its containers concurrently, as
//! local processes, and writes the pod's status the way the kubelet does.
//!
//! - An image is a key of the images map; any other image fails to pull: `ErrImagePull`,
//!   then `ImagePullBackOff`, and the pod stays Pending until deleted or its Job's deadline.
//! - A container runs its image's binary with `args` (never `command`), a cleared
//!   environment plus its `env` values, `PATH` and `TERMINATION_LOG` (a host file standing in
//!   for `terminationMessagePath`), in its own process group, in a per-pod working dir.
//!   `$(VAR)` references in env values and args are expanded as Kubernetes does.
//!   emptyDir volumes are temp dirs; mount paths in env values and args are rewritten to
//!   them (read-only mounts are not enforced). What Kubernetes cannot start (`command`,
//!   `valueFrom`, other volume types, a binary that does not run) terminates the container
//!   at once with reason `StartError`, exit code 128, saying why.
//! - A memory limit is enforced like the cgroup OOM killer: the RSS of the process and its
//!   descendants is polled every 10 ms and the group SIGKILLed above the limit (`OOMKilled`,
//!   137). When the main process exits, the rest of its group is killed, as the runtime
//!   tears down the container's cgroup.
//! - restartPolicy is treated as Never (what Jobs with a podFailurePolicy require).

use std::collections::{HashMap, HashSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};

use super::store::{now, Res};
use super::{Cluster, PodRef};

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const MESSAGE_LIMIT: usize = 4096;
const FALLBACK_LINES: usize = 80;
const FALLBACK_BYTES: usize = 2048;

/// The pods this kubelet runs: a stop signal each and their containers' process groups.
#[derive(Debug, Default)]
pub(super) struct Kubelet {
    registry: Mutex<Registry>,
    running: AtomicUsize,
}

#[derive(Debug, Default)]
struct Registry {
    pods: HashMap<String, Procs>,
    /// Set when the cluster shuts down: nothing starts after.
    closing: bool,
}

#[derive(Debug)]
struct Procs {
    stop: watch::Sender<bool>,
    groups: HashSet<i32>,
}

fn kill_group(pgid: i32) {
    let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
}

impl Kubelet {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a new pod (before its task runs, so a delete can never miss it).
    pub(super) fn admit(&self, uid: &str) {
        let procs = Procs {
            stop: watch::Sender::new(false),
            groups: HashSet::new(),
        };
        self.lock().pods.insert(uid.to_string(), procs);
    }

    pub(super) fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    /// Stops a pod: nothing more starts and its processes get SIGKILL. `forget` for a
    /// deleted pod, whose task then writes nothing more.
    pub(super) fn stop(&self, uid: &str, forget: bool) {
        let mut r = self.lock();
        if let Some(p) = r.pods.get(uid) {
            p.stop.send_replace(true);
            p.groups.iter().copied().for_each(kill_group);
        }
        if forget {
            r.pods.remove(uid);
        }
    }

    pub(super) fn kill_all(&self) {
        let mut r = self.lock();
        r.closing = true;
        for p in r.pods.values() {
            p.stop.send_replace(true);
            p.groups.iter().copied().for_each(kill_group);
        }
    }

    /// Spawns under the registry lock, so a concurrent stop either prevents the start or
    /// sees the new process group.
    fn spawn(&self, uid: &str, cmd: &mut Command) -> Result<Child, String> {
        let mut r = self.lock();
        let closing = r.closing;
        let procs = r.pods.get_mut(uid).ok_or("the pod was deleted")?;
        if closing || *procs.stop.borrow() {
            return Err("the pod is being stopped".into());
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start the image's binary: {e}"))?;
        let pid = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .ok_or("the process has no pid")?;
        procs.groups.insert(pid);
        self.running.fetch_add(1, Ordering::SeqCst);
        Ok(child)
    }

    /// The container's main process has exited: the rest of its group goes with it.
    fn exited(&self, uid: &str, pgid: i32) {
        let mut r = self.lock();
        kill_group(pgid);
        if let Some(p) = r.pods.get_mut(uid) {
            p.groups.remove(&pgid);
        }
        self.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs every pod the API server admits, each in a task of its own.
pub(super) async fn run(c: Arc<Cluster>, mut pods: mpsc::UnboundedReceiver<PodRef>) {
    while let Some(pod) = pods.recv().await {
        tokio::spawn(run_pod(Arc::clone(&c), pod));
    }
}

/// The stand-in's nodes, in the order pods are put on them.
pub(super) const NODES: [&str; 2] = ["node-a", "node-b"];

/// The nodes a pod's required node affinity keeps it off (`matchFields` on
/// `metadata.name` with `NotIn`, in every term).
fn excluded_nodes(spec: &PodSpec) -> Vec<String> {
    let terms = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|r| r.node_selector_terms.clone())
        .unwrap_or_default();
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .filter(|f| f.key == "metadata.name" && f.operator == "NotIn")
        .flat_map(|f| f.values.clone().unwrap_or_default())
        .collect()
}

/// Edits the pod's status, unless the pod was deleted (or replaced by a namesake).
fn update(c: &Cluster, pod: &PodRef, f: impl FnOnce(&mut Value)) {
    c.write(|s| {
        s.modify(Res::Pods, &pod.ns, &pod.name, |o| {
            if o["metadata"]["uid"] == pod.uid.as_str() {
                f(&mut o["status"]);
            }
        })
    });
}

fn set_condition(st: &mut Value, type_: &str, ok: bool, reason: Option<&str>) {
    let status = if ok { "True" } else { "False" };
    let mut cond = json!({"type": type_, "status": status, "lastProbeTime": null, "lastTransitionTime": now()});
    if let Some(r) = reason {
        cond["reason"] = json!(r);
    }
    let conds = st["conditions"].as_array_mut();
    let Some(conds) = conds else {
        st["conditions"] = json!([cond]);
        return;
    };
    match conds.iter_mut().find(|c| c["type"] == type_) {
        Some(c) if c["status"] == status => {}
        Some(c) => *c = cond,
        None => conds.push(cond),
    }
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    Init(usize),
    Main(usize),
}

impl Slot {
    fn entry(self, st: &mut Value) -> &mut Value {
        match self {
            Slot::Init(i) => &mut st["initContainerStatuses"][i],
            Slot::Main(i) => &mut st["containerStatuses"][i],
        }
    }
}

/// Sets a container's state; `started` and `ready` follow from it (there are no probes: a
/// running container is ready, and an init container once it succeeded).
fn set_state(c: &Cluster, pod: &PodRef, slot: Slot, state: Value) {
    let started = state["running"].is_object();
    let ready = match slot {
        Slot::Main(_) => started,
        Slot::Init(_) => state["terminated"]["exitCode"] == 0,
    };
    update(c, pod, |st| {
        let e = slot.entry(st);
        e["state"] = state;
        e["started"] = json!(started);
        e["ready"] = json!(ready);
        if let (Slot::Main(_), true) = (slot, started) {
            st["phase"] = json!("Running");
            let all_running = st["containerStatuses"]
                .as_array()
                .is_some_and(|all| all.iter().all(|e| e["state"]["running"].is_object()));
            if all_running {
                set_condition(st, "ContainersReady", true, None);
                set_condition(st, "Ready", true, None);
            }
        }
    });
}

/// A pod's host side: its dir (working dir, termination-message files) and volumes.
struct PodDirs {
    dir: PathBuf,
    volumes: HashMap<String, PathBuf>,
}

async fn run_pod(c: Arc<Cluster>, pod: PodRef) {
    let stop = {
        let r = c.kubelet.lock();
        match r.pods.get(&pod.uid) {
            Some(p) => p.stop.subscribe(),
            None => return,
        }
    };
    let Ok(obj) = c.read(|s| s.get(Res::Pods, &pod.ns, &pod.name)) else {
        return;
    };
    let spec: PodSpec = match serde_json::from_value(obj["spec"].clone()) {
        Ok(spec) => spec,
        Err(e) => {
            update(&c, &pod, |st| {
                st["phase"] = json!("Failed");
                st["message"] = json!(format!("fake kubelet: the pod spec does not parse: {e}"));
            });
            return;
        }
    };
    // Scheduling: the first of the stand-in's nodes that the pod's required node affinity
    // (`matchFields metadata.name NotIn`, the one form the coordinator writes) leaves.
    let Some(node) = NODES
        .iter()
        .find(|n| !excluded_nodes(&spec).contains(&n.to_string()))
    else {
        update(&c, &pod, |st| {
            set_condition(st, "PodScheduled", false, Some("Unschedulable"));
        });
        return;
    };
    c.write(|s| {
        s.modify(Res::Pods, &pod.ns, &pod.name, |o| {
            if o["metadata"]["uid"] == pod.uid.as_str() {
                o["spec"]["nodeName"] = json!(node);
            }
        });
        s.scheduled.push((pod.name.clone(), (*node).to_owned()));
    });
    let inits = spec.init_containers.clone().unwrap_or_default();
    let dir = c.root.join(&pod.uid);
    let mut volumes = HashMap::new();
    for v in spec
        .volumes
        .iter()
        .flatten()
        .filter(|v| v.empty_dir.is_some())
    {
        let host = dir.join("volumes").join(&v.name);
        std::fs::create_dir_all(&host).unwrap();
        volumes.insert(v.name.clone(), host);
    }
    std::fs::create_dir_all(dir.join("work")).unwrap();
    let dirs = PodDirs { dir, volumes };

    let entry = |k: &Container| {
        json!({"name": k.name, "image": k.image, "imageID": "", "ready": false, "restartCount": 0,
               "started": false, "state": {"waiting": {"reason": "PodInitializing"}}})
    };
    update(&c, &pod, |st| {
        st["startTime"] = json!(now());
        st["hostIP"] = json!("127.0.0.1");
        st["podIP"] = json!("127.0.0.1");
        set_condition(st, "PodScheduled", true, None);
        let pending = if inits.is_empty() {
            None
        } else {
            Some("ContainersNotInitialized")
        };
        set_condition(st, "Initialized", inits.is_empty(), pending);
        set_condition(st, "ContainersReady", false, Some("ContainersNotReady"));
        set_condition(st, "Ready", false, Some("ContainersNotReady"));
        if !inits.is_empty() {
            st["initContainerStatuses"] = inits.iter().map(entry).collect();
        }
        st["containerStatuses"] = spec.containers.iter().map(entry).collect();
    });

    let mut ok = true;
    for (i, k) in inits.iter().enumerate() {
        if run_container(&c, &pod, &dirs, k, Slot::Init(i), stop.clone()).await != Some(0) {
            ok = false;
            break;
        }
    }
    if ok {
        update(&c, &pod, |st| set_condition(st, "Initialized", true, None));
        let mains = spec.containers.iter().enumerate();
        let runs =
            mains.map(|(i, k)| run_container(&c, &pod, &dirs, k, Slot::Main(i), stop.clone()));
        ok = futures_util::future::join_all(runs)
            .await
            .iter()
            .all(|code| *code == Some(0));
    }
    update(&c, &pod, |st| {
        st["phase"] = json!(if ok { "Succeeded" } else { "Failed" });
        let reason = if ok { "PodCompleted" } else { "PodFailed" };
        set_condition(st, "ContainersReady", false, Some(reason));
        set_condition(st, "Ready", false, Some(reason));
    });
}

/// Runs one container to its end; `None` when it never started (image pull failure, pod
/// stopped first).
async fn run_container(
    c: &Arc<Cluster>,
    pod: &PodRef,
    dirs: &PodDirs,
    k: &Container,
    slot: Slot,
    mut stop: watch::Receiver<bool>,
) -> Option<i32> {
    if *stop.borrow() {
        return None;
    }
    let image = k.image.as_deref().unwrap_or_default();
    let Some(bin) = c.images.get(image) else {
        let waiting = |reason: &str, message: String| json!({"waiting": {"reason": reason, "message": message}});
        let pull_error = format!("failed to pull and unpack image \"{image}\": not found");
        set_state(c, pod, slot, waiting("ErrImagePull", pull_error));
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
            _ = stop.wait_for(|s| *s) => return None,
        }
        let back_off = format!("Back-off pulling image \"{image}\"");
        set_state(c, pod, slot, waiting("ImagePullBackOff", back_off));
        let _ = stop.wait_for(|s| *s).await;
        return None;
    };
    let started_at = now();
    let terminated = |code: i32, reason: &str, message: &str| {
        let mut t = json!({"exitCode": code, "reason": reason, "startedAt": started_at, "finishedAt": now()});
        if !message.is_empty() {
            t["message"] = json!(message);
        }
        json!({ "terminated": t })
    };
    let term_log = dirs.dir.join(format!("termination-{}", k.name));
    let prepared = std::fs::write(&term_log, b"")
        .map_err(|e| format!("cannot create {}: {e}", term_log.display()))
        .and_then(|()| command(k, bin, dirs, &term_log))
        .and_then(|cmd| Ok((cmd, memory_limit(k)?)))
        .and_then(|(mut cmd, limit)| Ok((c.kubelet.spawn(&pod.uid, &mut cmd)?, limit)));
    let (mut child, limit) = match prepared {
        Ok(p) => p,
        Err(why) => {
            let message = format!("fake kubelet: {why}");
            set_state(c, pod, slot, terminated(128, "StartError", &message));
            return Some(128);
        }
    };
    let pid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .unwrap_or_default();
    let key = (pod.ns.clone(), pod.name.clone(), k.name.clone());
    c.lock().logs.insert(key.clone(), String::new());
    let pumps = [
        child
            .stdout
            .take()
            .map(|r| pump(Arc::clone(c), key.clone(), r)),
        child
            .stderr
            .take()
            .map(|r| pump(Arc::clone(c), key.clone(), r)),
    ];
    let running = json!({"running": {"startedAt": started_at}});
    set_state(c, pod, slot, running);

    let mut oom_killed = false;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            _ = tick.tick(), if limit.is_some() => {
                if limit.is_some_and(|l| tree_rss(pid) > l) {
                    kill_group(pid);
                    oom_killed = true;
                }
            }
        }
    };
    c.kubelet.exited(&pod.uid, pid);
    for p in pumps.into_iter().flatten() {
        let _ = tokio::time::timeout(Duration::from_secs(2), p).await;
    }
    // A signal death reads as 128 + signal, as container runtimes report it.
    let code = match status {
        Ok(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)),
        Err(_) => 128 + Signal::SIGKILL as i32,
    };
    let reason = match (oom_killed, code) {
        (true, _) => "OOMKilled",
        (false, 0) => "Completed",
        _ => "Error",
    };
    let log = c.read(|s| s.logs.get(&key).cloned().unwrap_or_default());
    let fallback = k.termination_message_policy.as_deref() == Some("FallbackToLogsOnError");
    let message = termination_message(&term_log, fallback && code != 0, &log);
    set_state(c, pod, slot, terminated(code, reason, &message));
    Some(code)
}

/// Appends a stream's lines to the container's log as they arrive.
fn pump(
    c: Arc<Cluster>,
    key: (String, String, String),
    r: impl AsyncRead + Unpin + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut r = BufReader::new(r);
        let mut line = Vec::new();
        while matches!(r.read_until(b'\n', &mut line).await, Ok(n) if n > 0) {
            let mut text = String::from_utf8_lossy(&line).into_owned();
            if !text.ends_with('\n') {
                text.push('\n');
            }
            c.lock()
                .logs
                .entry(key.clone())
                .or_default()
                .push_str(&text);
            line.clear();
        }
    })
}

/// The file's contents (at most 4096 bytes); when empty and `fallback`, the log's last 80
/// lines, at most 2048 bytes, as the kubelet's FallbackToLogsOnError does.
fn termination_message(file: &Path, fallback: bool, log: &str) -> String {
    let mut bytes = std::fs::read(file).unwrap_or_default();
    bytes.truncate(MESSAGE_LIMIT);
    let message = String::from_utf8_lossy(&bytes).into_owned();
    if !message.is_empty() || !fallback {
        return message;
    }
    let lines: Vec<&str> = log.split_inclusive('\n').collect();
    let tail = lines[lines.len().saturating_sub(FALLBACK_LINES)..].concat();
    let mut start = tail.len().saturating_sub(FALLBACK_BYTES);
    while !tail.is_char_boundary(start) {
        start += 1;
    }
    tail[start..].to_string()
}

/// The process for a container, or why Kubernetes could not start it.
fn command(k: &Container, bin: &Path, dirs: &PodDirs, term_log: &Path) -> Result<Command, String> {
    if k.command.is_some() {
        return Err(format!(
            "container {} sets `command`; the fake cluster runs the image's entrypoint only (set `args`)",
            k.name
        ));
    }
    let mut mounts = Vec::new();
    for m in k.volume_mounts.iter().flatten() {
        let host = dirs.volumes.get(&m.name).ok_or_else(|| {
            format!(
                "volume {:?} is not an emptyDir of the pod (the fake cluster has emptyDir only)",
                m.name
            )
        })?;
        mounts.push((m.mount_path.trim_end_matches('/').to_string(), host.clone()));
    }
    mounts.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("PATH", PATH)
        .env("TERMINATION_LOG", term_log);
    // As the kubelet does: each value expanded with the variables defined before it, args
    // with all of them (only the container's env: the stand-in's PATH and TERMINATION_LOG
    // are the runtime's, as HOSTNAME is, and no reference sees them).
    let mut defined = HashMap::new();
    for e in k.env.iter().flatten() {
        if e.value_from.is_some() {
            return Err(format!(
                "env {} of container {} uses valueFrom, which the fake cluster does not support",
                e.name, k.name
            ));
        }
        let value = expand(e.value.as_deref().unwrap_or(""), &defined);
        cmd.env(&e.name, rewrite(&value, &mounts));
        defined.insert(e.name.clone(), value);
    }
    cmd.args(
        k.args
            .iter()
            .flatten()
            .map(|a| rewrite(&expand(a, &defined), &mounts)),
    )
    .current_dir(dirs.dir.join("work"))
    .process_group(0)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    Ok(cmd)
}

/// `s` with its `$(NAME)` references expanded as Kubernetes expands env values and args
/// (k8s.io/kubernetes third_party/forked/golang/expansion): `$$` is a literal `$`; `$(NAME)`
/// (the name is all up to the first `)`) is the value of `NAME` in `vars`, or stays as it is
/// when there is none; any other `$` is kept, as are an unclosed `$(` and a `$` at the end.
/// A character after a lone `$` is kept whole, as since kubernetes#136325 (before, a
/// multi-byte one was cut into invalid UTF-8, which stopped the container from starting; the
/// Job builder writes no lone `$`).
fn expand(s: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(escaped) = after.strip_prefix('$') {
            out.push('$');
            rest = escaped;
        } else if let Some(reference) = after.strip_prefix('(') {
            match reference.split_once(')') {
                Some((name, tail)) => {
                    match vars.get(name) {
                        Some(value) => out.push_str(value),
                        None => out.push_str(&format!("$({name})")),
                    }
                    rest = tail;
                }
                None => {
                    out.push_str("$(");
                    rest = reference;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Replaces each mount path in `s` (longest first, where a path component ends) with its
/// host dir.
fn rewrite(s: &str, mounts: &[(String, PathBuf)]) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(ch) = rest.chars().next() {
        let hit = mounts.iter().find(|(path, _)| {
            rest.strip_prefix(path.as_str()).is_some_and(|after| {
                after.is_empty()
                    || !after.starts_with(|c: char| c.is_alphanumeric() || "-_.".contains(c))
            })
        });
        match hit {
            Some((path, host)) => {
                out.push_str(&host.to_string_lossy());
                rest = &rest[path.len()..];
            }
            None => {
                out.push(ch);
                rest = &rest[ch.len_utf8()..];
            }
        }
    }
    out
}

/// `resources.limits.memory` in bytes: `512Mi`, `1Gi`, `500M`, `1.5G`, plain bytes.
fn memory_limit(k: &Container) -> Result<Option<u64>, String> {
    let Some(q) = k
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .and_then(|l| l.get("memory"))
    else {
        return Ok(None);
    };
    let q = q.0.as_str();
    let split = q
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let unit: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => {
            return Err(format!(
                "the memory limit {q:?} is not a quantity the fake cluster reads"
            ))
        }
    };
    let number: f64 = number
        .parse()
        .map_err(|_| format!("the memory limit {q:?} is not a quantity"))?;
    Ok(Some((number * unit) as u64))
}

/// Resident memory of `pid` and its descendants, in bytes (the cgroup's count, near enough:
/// page cache is not charged here).
fn tree_rss(pid: i32) -> u64 {
    let mut total = 0;
    let mut pids = vec![pid];
    while let Some(p) = pids.pop() {
        let status = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
        total += kb.unwrap_or(0) * 1024;
        let children =
            std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")).unwrap_or_default();
        pids.extend(
            children
                .split_whitespace()
                .filter_map(|c| c.parse::<i32>().ok()),
        );
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The cases of k8s.io/kubernetes third_party/forked/golang/expansion/expand_test.go
    /// (`doExpansionTest`, with its variables), with a `$` before multi-byte characters as
    /// kubernetes#136325 keeps them.
    #[test]
    fn expansion_follows_kubernetes() {
        let v = vars(&[
            ("VAR_A", "A"),
            ("VAR_B", "B"),
            ("VAR_C", "C"),
            ("VAR_REF", "$(VAR_A)"),
            ("VAR_EMPTY", ""),
        ]);
        let cases = [
            ("$(VAR_A)", "A"),
            ("$(VAR_A)-$(VAR_A)", "A-A"),
            ("$(VAR_A)-1", "A-1"),
            ("___$(VAR_B)___", "___B___"),
            ("___$(VAR_C)", "___C"),
            ("$(VAR_A)_$(VAR_B)_$(VAR_C)", "A_B_C"),
            ("$$(VAR_B)_$(VAR_A)", "$(VAR_B)_A"),
            ("$$(VAR_A)_$$(VAR_B)", "$(VAR_A)_$(VAR_B)"),
            ("f000-$$VAR_A", "f000-$VAR_A"),
            ("foo\\$(VAR_C)bar", "foo\\Cbar"),
            ("foo\\\\$(VAR_C)bar", "foo\\\\Cbar"),
            ("foo\\\\\\\\$(VAR_A)bar", "foo\\\\\\\\Abar"),
            ("$(VAR_A$(VAR_B))", "$(VAR_A$(VAR_B))"),
            ("$(VAR_A$(VAR_B)", "$(VAR_A$(VAR_B)"),
            ("$(VAR_REF)", "$(VAR_A)"),
            ("%%$(VAR_REF)--$(VAR_REF)%%", "%%$(VAR_A)--$(VAR_A)%%"),
            ("foo$(VAR_EMPTY)bar", "foobar"),
            ("foo$(VAR_Awhoops!", "foo$(VAR_Awhoops!"),
            ("f00__(VAR_A)__", "f00__(VAR_A)__"),
            ("$?_boo_$!", "$?_boo_$!"),
            ("$VAR_A", "$VAR_A"),
            ("$(VAR_DNE)", "$(VAR_DNE)"),
            ("$$$$$$(BIG_MONEY)", "$$$(BIG_MONEY)"),
            ("$$$$$$(VAR_A)", "$$$(VAR_A)"),
            ("$$$$$$$(GOOD_ODDS)", "$$$$(GOOD_ODDS)"),
            ("$$$$$$$(VAR_A)", "$$$A"),
            ("$VAR_A)", "$VAR_A)"),
            ("${VAR_A}", "${VAR_A}"),
            ("$(VAR_B)_______$(A", "B_______$(A"),
            ("$(VAR_C)_______$(", "C_______$("),
            ("$(VAR_A)foobarzab$", "Afoobarzab$"),
            ("foo-\\$(VAR_A", "foo-\\$(VAR_A"),
            ("--$($($($($--", "--$($($($($--"),
            ("$($($($($--foo$(", "$($($($($--foo$("),
            ("foo0--$($($($(", "foo0--$($($($("),
            ("$(foo$$var)", "$(foo$$var)"),
            ("\n", "\n"),
            ("$£FOO", "$£FOO"),
            ("prefix-$€-suffix", "prefix-$€-suffix"),
            ("$中文", "$中文"),
            // And ours: an empty name, a lone `$` at the end after an escape.
            ("$()", "$()"),
            ("$$$", "$$"),
        ];
        for (input, expected) in cases {
            assert_eq!(expand(input, &v), expected, "{input:?}");
        }
    }

    #[test]
    fn a_reference_sees_only_variables_defined_before_it() {
        let k: Container = serde_json::from_value(json!({
            "name": "c",
            "env": [
                {"name": "A", "value": "a$(B)"},
                {"name": "B", "value": "b"},
                {"name": "C", "value": "$(A)$(B)$$(A)"},
                {"name": "B", "value": "again $(B)"},
            ],
            "args": ["$(A)", "$(B)", "$(C)", "$(PATH)", "$(HOSTNAME)", "$$(A)"],
        }))
        .unwrap();
        let dirs = PodDirs {
            dir: std::env::temp_dir(),
            volumes: HashMap::new(),
        };
        let cmd = command(&k, Path::new("/bin/true"), &dirs, Path::new("/dev/null")).unwrap();
        let cmd = cmd.as_std();
        let env: HashMap<String, String> = cmd
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_str()?.to_owned(), v?.to_str()?.to_owned())))
            .collect();
        assert_eq!(env["A"], "a$(B)", "B is defined after A");
        assert_eq!(env["C"], "a$(B)b$(A)");
        assert_eq!(env["B"], "again b", "the earlier B");
        let args: Vec<&str> = cmd.get_args().filter_map(|a| a.to_str()).collect();
        assert_eq!(
            args,
            [
                "a$(B)",
                "again b",
                "a$(B)b$(A)",
                "$(PATH)",
                "$(HOSTNAME)",
                "$(A)"
            ]
        );
    }
}
