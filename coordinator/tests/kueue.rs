//! The Kubernetes backend behind Kueue, with no cluster: the `coordinator` binary talks to
//! the API-server stand-in (`support::cluster`) with its Kueue emulation switched on (the
//! webhook suspending labelled Jobs, admission in creation order under a CPU quota,
//! release on finish, eviction), whose kubelet runs the real `fetcher` and `runner`.
//!
//! The Job template is `k8s/job.yaml`: the fetcher requests 100m, the runner 500m, so each
//! task's pod counts 500m against the quota.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::cluster::{
    build_images, ClusterOptions, FakeCluster, KueueOptions, EXECUTOR_IMAGE, FETCHER_IMAGE,
};
use support::{coordinator_bin, samples, wasm_of, write_lines, Coord, PlainGateway, NAP_WAT};

const NS: &str = "tasks";
const QUEUE: &str = "wasm-exec";
const WASM_TASKS: (&str, &str) = ("wasm-exec.io/v1alpha1", "wasmtasks");

/// The stand-in with Kueue (one LocalQueue, [`QUEUE`], and a CPU quota), a gateway with
/// the nap module, its inputs and fib's, and a kubeconfig.
struct Queued {
    cluster: FakeCluster,
    gateway: PlainGateway,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    nap: String,
}

impl Queued {
    fn start(cpu_quota_millis: u64) -> Self {
        Self::start_with(Some(KueueOptions {
            local_queues: vec![QUEUE.into()],
            cpu_quota_millis,
            requeue_after: Duration::from_millis(1500),
        }))
    }

    /// `None`: a cluster without Kueue (no Workloads served).
    fn start_with(kueue: Option<KueueOptions>) -> Self {
        let bins = coordinator_bin().parent().unwrap().to_path_buf();
        let cluster = FakeCluster::start(ClusterOptions {
            images: build_images(&bins),
            crds: vec![FakeCluster::wasm_task_crd()],
            kueue,
            ..ClusterOptions::default()
        });
        let nap = wasm_of(NAP_WAT);
        let mut files = vec![
            nap.clone(),
            std::fs::read(samples().join("fib.wasm")).unwrap(),
            std::fs::read(samples().join("fib-input.json")).unwrap(),
        ];
        files.extend([300, 400, 2000, 3500].map(|ms| nap_input(ms).into_bytes()));
        let refs: Vec<&[u8]> = files.iter().map(Vec::as_slice).collect();
        let gateway = PlainGateway::start(&refs, false);
        let dir = tempfile::Builder::new()
            .prefix("coord-kueue-")
            .tempdir()
            .unwrap();
        let kubeconfig = cluster.write_kubeconfig(dir.path(), NS);
        Self {
            cluster,
            gateway,
            dir,
            kubeconfig,
            nap: support::cid_of(&nap),
        }
    }

    /// A `--once` coordinator on the kubernetes backend, its Jobs in [`QUEUE`].
    fn coord(&self, tasks: &[String]) -> Coord {
        let file = write_lines(self.dir.path(), "tasks.jsonl", tasks);
        let mut c = Coord::new();
        c.on_kubernetes(&self.kubeconfig, NS, &self.gateway.url())
            .env("COORDINATOR_QUEUE_NAME", QUEUE)
            .arg("--tasks")
            .arg(file);
        c
    }

    /// A task napping `ms` milliseconds (one of the inputs the gateway has).
    fn nap_task(&self, id: &str, ms: u64) -> String {
        let input = support::cid_of(nap_input(ms).as_bytes());
        support::task_line(id, &self.nap, Some(&input), Some("nap"))
    }

    fn wasm_task(&self, name: &str) -> Option<Value> {
        let (gv, plural) = WASM_TASKS;
        self.cluster
            .custom_objects(gv, plural, NS)
            .into_iter()
            .find(|w| w["metadata"]["name"] == name)
    }

    /// Once Job `job`'s runner is running, evicts it as Kueue does for a higher priority.
    fn evict_while_running(&self, job: &str) {
        self.cluster.wait_until(
            "the runner is running",
            Duration::from_secs(30),
            runner_running,
        );
        self.cluster.evict(
            NS,
            job,
            "Preempted to accommodate a higher priority Workload",
        );
    }

    /// Waits until WasmTask `name` says `Admitting`, its `Admitted` condition's message
    /// holding `why`.
    /// A user's WasmTask `name` (fib) naming the LocalQueue `nope`, which does not exist.
    fn fib_in_unknown_queue(&self, name: &str) {
        let (gv, plural) = WASM_TASKS;
        let fib = support::cid_of(&std::fs::read(samples().join("fib.wasm")).unwrap());
        self.cluster.create_custom(
            gv,
            plural,
            NS,
            json!({"apiVersion": gv, "kind": "WasmTask",
                   "metadata": {"name": name, "namespace": NS},
                   "spec": {"wasmCid": fib, "entry": "fib", "queueName": "nope"}}),
        );
    }

    fn admitting_because(&self, name: &str, why: &str) {
        self.cluster.wait_until(
            &format!("WasmTask {name} says Admitting because {why}"),
            Duration::from_secs(10),
            |_| {
                self.wasm_task(name).is_some_and(|wt| {
                    wt["status"]["phase"] == "Admitting"
                        && admitted_condition(&wt)
                            .and_then(|c| c["message"].as_str())
                            .is_some_and(|m| m.contains(why))
                })
            },
        );
    }

    fn job_events(&self, job: &str) -> Vec<String> {
        self.cluster
            .events(NS)
            .iter()
            .filter(|e| e.pointer("/regarding/name").and_then(Value::as_str) == Some(job))
            .map(|e| format!("{} {}", e["reason"].as_str().unwrap_or_default(), e["note"]))
            .collect()
    }
}

fn nap_input(ms: u64) -> String {
    json!({"entry": "nap", "args": [ms]}).to_string()
}

fn job_name(task_id: &str) -> String {
    coordinator::backend::kubernetes::job::job_name(task_id)
}

fn admitted_condition(wt: &Value) -> Option<&Value> {
    wt["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Admitted")
}

/// Whether a pod's runner container is running.
fn runner_running(c: &FakeCluster) -> bool {
    c.pods(NS).iter().any(|p| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .into_iter()
            .flatten()
            .any(|cs| {
                cs.name == "runner" && cs.state.as_ref().is_some_and(|st| st.running.is_some())
            })
    })
}

/// Samples, until `stop`, the most task Jobs running at once (admitted, not finished) and
/// the most container processes alive at once.
fn watch_peaks(cluster: &FakeCluster, stop: &AtomicBool) -> (usize, usize) {
    let (mut jobs, mut processes) = (0, 0);
    while !stop.load(Ordering::Relaxed) {
        let running = cluster
            .jobs(NS)
            .iter()
            .filter(|j| j.spec.as_ref().and_then(|s| s.suspend) == Some(false))
            .filter(|j| {
                !j.status
                    .iter()
                    .flat_map(|s| s.conditions.iter().flatten())
                    .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
            })
            .count();
        jobs = jobs.max(running);
        processes = processes.max(cluster.running_processes());
        std::thread::sleep(Duration::from_millis(5));
    }
    (jobs, processes)
}

#[test]
fn a_one_cpu_quota_runs_at_most_two_500m_tasks_at_once_and_each_is_published_once() {
    let k = Queued::start(1000);
    let ids: Vec<String> = (0..6).map(|i| format!("nap-{i}")).collect();
    let tasks: Vec<String> = ids.iter().map(|id| k.nap_task(id, 400)).collect();
    // Concurrency above what the quota admits: Kueue, not the coordinator, decides.
    let mut coord = k.coord(&tasks);
    coord.arg("--concurrency").arg("6");
    let stop = Arc::new(AtomicBool::new(false));
    let (run, (peak_jobs, peak_processes)) = std::thread::scope(|s| {
        let sampler = s.spawn(|| watch_peaks(&k.cluster, &stop));
        let run = coord.run();
        stop.store(true, Ordering::Relaxed);
        (run, sampler.join().unwrap())
    });
    run.expect_code(0);
    let results = run.results();
    assert_eq!(
        results.len(),
        6,
        "each task published once: {}",
        run.describe()
    );
    let by_id = run.by_id();
    for id in &ids {
        assert_eq!(by_id[id]["status"], "ok", "{id}: {}", run.describe());
        assert_eq!(by_id[id]["attempts"], 1, "{id}");
    }
    assert!(
        peak_jobs <= 2 && peak_processes <= 2,
        "never more than two Jobs running under a 1-CPU quota: {peak_jobs} Jobs, {peak_processes} processes"
    );
    assert_eq!(
        peak_jobs, 2,
        "the quota holds two at once, and both were used"
    );
    assert!(k.cluster.kueue_peak() <= 2);
    // Every Job went through Kueue: labelled, and with a Workload of its own.
    let creates: Vec<(String, String)> = k
        .cluster
        .requests()
        .into_iter()
        .filter(|(m, p)| m == "POST" && p.contains("/jobs"))
        .collect();
    assert_eq!(creates.len(), 6, "{creates:?}");
}

/// The task's own time limit (1 s) runs from admission: waiting three times as long for a
/// blocker to free the quota does not fail it.
#[test]
fn a_task_that_waits_for_admission_three_times_its_timeout_still_succeeds() {
    let k = Queued::start(500);
    // Another team's Job, queued first, takes the whole quota for 3.5 s.
    let mut blocker = coordinator::backend::kubernetes::job::build_job(
        &coordinator::backend::kubernetes::job::parse_template(
            "k8s/job.yaml",
            &std::fs::read_to_string(support::repo_root().join("k8s/job.yaml")).unwrap(),
        )
        .unwrap(),
        &serde_json::from_str(&k.nap_task("other-team", 3500)).unwrap(),
        &coordinator::backend::kubernetes::job::JobSettings {
            namespace: NS.into(),
            executor_image: EXECUTOR_IMAGE.into(),
            fetcher_image: FETCHER_IMAGE.into(),
            gateway: k.gateway.url(),
            limits: coordinator::task::RunLimits {
                timeout: Duration::from_secs(60),
                fuel: 0,
            },
            queueing: coordinator::backend::kubernetes::kueue::Queueing {
                queue_name: Some(QUEUE.into()),
                ..Default::default()
            },
        },
    );
    // Not one of the coordinator's: another manager's labels.
    let labels = blocker.metadata.labels.as_mut().unwrap();
    labels.insert("app.kubernetes.io/managed-by".into(), "someone-else".into());
    labels.insert("app.kubernetes.io/name".into(), "other".into());
    let blocker = k.cluster.create_job(NS, &blocker);
    let blocker_name = blocker.metadata.name.clone().unwrap();
    k.cluster
        .wait_until("the blocker is admitted", Duration::from_secs(10), |c| {
            c.jobs(NS).iter().any(|j| {
                j.metadata.name.as_deref() == Some(blocker_name.as_str())
                    && j.spec.as_ref().and_then(|s| s.suspend) == Some(false)
            })
        });
    let began = Instant::now();
    let fib = support::task_line(
        "patient",
        &support::cid_of(&std::fs::read(samples().join("fib.wasm")).unwrap()),
        Some(&support::cid_of(
            &std::fs::read(samples().join("fib-input.json")).unwrap(),
        )),
        Some("fib"),
    );
    let mut task: Value = serde_json::from_str(&fib).unwrap();
    task["limits"] = json!({"timeout_seconds": 1});
    let run = k.coord(&[task.to_string()]).run();
    run.expect_code(0);
    let r = &run.by_id()["patient"];
    assert_eq!(r["status"], "ok", "{}", run.describe());
    assert_eq!(r["result"]["result"], json!([144]));
    assert_eq!(r["attempts"], 1);
    assert!(
        began.elapsed() >= Duration::from_secs(3),
        "it waited for the blocker ({:?})",
        began.elapsed()
    );
    let log = run.stderr.clone();
    assert!(
        log.contains("waiting for admission") && log.contains("admitted after"),
        "{}",
        run.describe()
    );
    let wt = k.wasm_task("patient").unwrap();
    assert_eq!(wt["status"]["phase"], "Succeeded", "{wt}");
    assert_eq!(admitted_condition(&wt).unwrap()["status"], "True", "{wt}");
}

#[test]
fn a_task_evicted_mid_run_is_admitted_again_succeeds_is_published_once_and_keeps_its_attempts() {
    let k = Queued::start(1000);
    let mut coord = k.coord(&[k.nap_task("evicted", 2000)]);
    coord.env("COORDINATOR_LISTEN", "127.0.0.1:0");
    let spawned = coord.spawn();
    let port = spawned.http_port();
    let job = job_name("evicted");
    k.evict_while_running(&job);
    k.cluster
        .wait_until("the evicted pod is gone", Duration::from_secs(10), |c| {
            c.pods(NS).is_empty()
        });
    // Suspended as Kubernetes does it: the condition, and no startTime until it resumes
    // (so activeDeadlineSeconds counts from the next admission).
    k.cluster.wait_until(
        "the Job says Suspended and has no startTime",
        Duration::from_secs(10),
        |c| {
            c.jobs(NS).iter().any(|j| {
                let status = j.status.clone().unwrap_or_default();
                status.start_time.is_none()
                    && status
                        .conditions
                        .iter()
                        .flatten()
                        .any(|c| c.type_ == "Suspended" && c.status == "True")
            })
        },
    );
    // While it waits to be admitted again, the WasmTask says so.
    k.cluster.wait_until(
        "the WasmTask records the preemption",
        Duration::from_secs(10),
        |_| {
            k.wasm_task("evicted")
                .is_some_and(|wt| wt["status"]["preemptions"] == 1)
        },
    );
    let wt = k.wasm_task("evicted").unwrap();
    let admitted = admitted_condition(&wt).unwrap();
    assert_eq!(
        (&admitted["status"], &admitted["reason"]),
        (&json!("False"), &json!("Preempted")),
        "{wt}"
    );
    assert!(
        admitted["message"]
            .as_str()
            .unwrap()
            .contains("higher priority Workload"),
        "{wt}"
    );
    let (_, metrics) = support::http::request(port, "GET", "/metrics", b"");
    let run = spawned.wait();
    run.expect_code(0);
    let results = run.results();
    assert_eq!(results.len(), 1, "published once: {}", run.describe());
    let r = &results[0];
    assert_eq!(r["status"], "ok", "{}", run.describe());
    assert_eq!(r["attempts"], 1, "a preemption uses up no attempt");
    assert_eq!(
        k.cluster.pods_created(NS, &job),
        2,
        "it ran again, from the start"
    );
    let events = k.job_events(&job);
    assert!(
        events.iter().any(|e| e.starts_with("Preempted ")),
        "{events:?}"
    );
    assert!(
        !events.iter().any(|e| e.starts_with("TaskFailed")),
        "{events:?}"
    );
    assert!(
        metrics.contains("wasm_exec_preemptions_total 1"),
        "{metrics}"
    );
    let wt = k.wasm_task("evicted").unwrap();
    assert_eq!(wt["status"]["phase"], "Succeeded", "{wt}");
    assert_eq!(wt["status"]["preemptions"], 1, "{wt}");
}

/// Re-admitted at once (before the coordinator would look at the Workload), the task's
/// WasmTask still goes back from `Admitting` to `Running`.
#[test]
fn a_task_admitted_again_at_once_after_a_preemption_reads_running_again() {
    let k = Queued::start_with(Some(KueueOptions {
        local_queues: vec![QUEUE.into()],
        cpu_quota_millis: 1000,
        requeue_after: Duration::from_millis(300),
    }));
    let spawned = k.coord(&[k.nap_task("bounced", 3500)]).spawn();
    let job = job_name("bounced");
    k.evict_while_running(&job);
    k.cluster.wait_until(
        "a second pod runs, with the WasmTask Running and admitted again",
        Duration::from_secs(20),
        |c| {
            c.pods_created(NS, &job) == 2
                && c.jobs(NS).iter().any(|j| {
                    let status = j.status.clone().unwrap_or_default();
                    status.start_time.is_some()
                        && status
                            .conditions
                            .iter()
                            .flatten()
                            .any(|c| c.type_ == "Suspended" && c.status == "False")
                })
                && k.wasm_task("bounced").is_some_and(|wt| {
                    wt["status"]["phase"] == "Running"
                        && wt["status"]["preemptions"] == 1
                        && admitted_condition(&wt).is_some_and(|a| a["status"] == "True")
                })
        },
    );
    let run = spawned.wait();
    run.expect_code(0);
    assert_eq!(run.results().len(), 1, "{}", run.describe());
}

/// Where no Kueue runs, a queued Job is never admitted: the WasmTask says Kueue looks
/// missing, and `admission_timeout` ends the wait.
#[test]
fn without_kueue_a_queued_task_says_kueue_is_missing_and_admission_timeout_fails_it() {
    let k = Queued::start_with(None);
    let mut coord = k.coord(&[k.nap_task("stranded", 300)]);
    coord.env("COORDINATOR_ADMISSION_TIMEOUT", "4");
    let spawned = coord.spawn();
    k.admitting_because("stranded", "is Kueue installed?");
    let job = &k.cluster.jobs(NS)[0];
    assert_eq!(
        job.spec.as_ref().unwrap().suspend,
        Some(true),
        "created suspended"
    );
    assert_eq!(k.cluster.pods(NS).len(), 0, "so it never ran past a quota");
    let run = spawned.wait();
    run.expect_code(1);
    let error = run.by_id()["stranded"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        error.contains("admission_timeout (4 s;") && error.contains("is Kueue installed?"),
        "{}",
        run.describe()
    );
}

#[test]
fn an_unknown_queue_leaves_the_task_admitting_with_the_reason_and_admission_timeout_fails_it() {
    let k = Queued::start(1000);
    // A user's WasmTask naming a LocalQueue that does not exist.
    k.fib_in_unknown_queue("lost");
    let mut coord = k.coord(&[]);
    coord
        .env("COORDINATOR_ADMISSION_TIMEOUT", "6")
        .env("COORDINATOR_LISTEN", "127.0.0.1:0");
    let spawned = coord.spawn();
    let port = spawned.http_port();
    k.admitting_because("lost", "LocalQueue nope doesn't exist");
    let job = &k.cluster.jobs(NS)[0];
    assert_eq!(
        job.metadata.labels.as_ref().unwrap()["kueue.x-k8s.io/queue-name"],
        "nope",
        "the WasmTask's queue wins over queue_name"
    );
    let (_, metrics) = support::http::request(port, "GET", "/metrics", b"");
    assert!(metrics.contains("wasm_exec_tasks_admitting 1"), "{metrics}");
    // To the task API it is queued, with Kueue's reason.
    let (code, body) = support::http::request(port, "GET", "/tasks/lost", b"");
    let entry: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((code, &entry["state"]), (200, &json!("queued")), "{body}");
    let why = entry["admission"].as_str().unwrap_or_default();
    assert!(why.contains("LocalQueue nope doesn't exist"), "{body}");
    let (_, body) = support::http::request(port, "GET", "/tasks?status=queued", b"");
    assert!(body.contains("\"lost\""), "listed as queued: {body}");
    let run = spawned.wait();
    run.expect_code(1);
    let r = &run.by_id()["lost"];
    let error = r["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("admission_timeout (6 s;")
            && error.contains("LocalQueue nope doesn't exist"),
        "the cause is named: {}",
        run.describe()
    );
    assert_eq!(r["attempts"], 1, "not retried: waiting again cannot help");
    let wt = k.wasm_task("lost").unwrap();
    assert_eq!(wt["status"]["phase"], "Failed", "{wt}");
}

#[test]
fn a_restarted_coordinator_counts_the_admission_wait_from_when_the_job_began_to_wait() {
    let k = Queued::start(1000);
    k.fib_in_unknown_queue("stuck");
    // The first coordinator sees the Job wait for at least 3 s, then dies.
    let first = k.coord(&[]).spawn();
    k.admitting_because("stuck", "LocalQueue nope doesn't exist");
    std::thread::sleep(Duration::from_secs(3));
    first.signal(nix::sys::signal::Signal::SIGKILL);
    let _ = first.wait();
    // The next one adopts the waiting Job with a 2 s admission_timeout: the Job has
    // waited longer than that already, and the error says how long it waited.
    let mut second = k.coord(&[]);
    second.env("COORDINATOR_ADMISSION_TIMEOUT", "2");
    let run = second.run();
    run.expect_code(1);
    let error = run.by_id()["stuck"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let waited: f64 = error
        .split("it waited ")
        .nth(1)
        .and_then(|rest| rest.split(" s)").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no wait in the error: {error}\n{}", run.describe()));
    assert!(
        waited >= 3.0,
        "the wait counts from the Job's creation, not the adoption: {error}"
    );
}
