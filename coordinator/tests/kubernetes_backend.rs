//! End to end through the Kubernetes backend, with no cluster: the `coordinator` binary
//! talks through the real `kube` client to the API-server stand-in on 127.0.0.1
//! (`support::cluster`), whose kubelet stand-in runs each pod's containers as the real
//! `fetcher` and `runner` binaries, fetching from a gateway stand-in on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, EnvVar};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use support::cluster::{build_images, ClusterOptions, FakeCluster, EXECUTOR_IMAGE, FETCHER_IMAGE};
use support::{
    coordinator_bin, samples, task_line, wasm_of, write_lines, Coord, PlainGateway, Run, ADD_INPUT,
};

const NS: &str = "tasks";

fn job_template() -> PathBuf {
    support::repo_root().join("k8s/job.yaml")
}

/// A cluster stand-in with the two images mapped to this build's binaries, a gateway
/// serving the sample files, and a kubeconfig for both.
struct Kube {
    cluster: FakeCluster,
    gateway: PlainGateway,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl Kube {
    fn start(extra_files: &[&[u8]]) -> Self {
        let bin_dir = coordinator_bin().parent().unwrap().to_path_buf();
        let cluster = FakeCluster::start(ClusterOptions {
            images: build_images(&bin_dir),
            pod_backoff: Duration::from_millis(100),
            // The ledger's custom resource, as `kubectl apply -f k8s/crd.yaml` installs it.
            crds: vec![FakeCluster::wasm_task_crd()],
            kueue: None,
        });
        let mut files: Vec<Vec<u8>> = [
            "fib.wasm",
            "fib-input.json",
            "affine.wasm",
            "affine-input.json",
            "add.wasm",
            "add-input.json",
        ]
        .iter()
        .map(|f| std::fs::read(samples().join(f)).unwrap())
        .collect();
        // sample_mirror()'s copy of add's input (the placeholder uses host/wasm's file).
        files.push(ADD_INPUT.as_bytes().to_vec());
        files.extend(extra_files.iter().map(|f| f.to_vec()));
        let refs: Vec<&[u8]> = files.iter().map(Vec::as_slice).collect();
        let gateway = PlainGateway::start(&refs, false);
        let dir = tempfile::Builder::new()
            .prefix("coord-kube-")
            .tempdir()
            .unwrap();
        let kubeconfig = cluster.write_kubeconfig(dir.path(), NS);
        Self {
            cluster,
            gateway,
            dir,
            kubeconfig,
        }
    }

    /// A `--once` coordinator on the kubernetes backend.
    fn coord(&self) -> Coord {
        let mut c = Coord::new();
        self.kube_env(&mut c);
        c
    }

    /// Replaces the cluster with an empty one on another port: the old address answers no
    /// more, as when the API server is down.
    fn stop_cluster(&mut self) {
        self.cluster = FakeCluster::start(ClusterOptions::default());
    }

    fn kube_env(&self, c: &mut Coord) {
        c.on_kubernetes(&self.kubeconfig, NS, &self.gateway.url());
    }

    fn tasks(&self, name: &str, lines: &[String]) -> PathBuf {
        write_lines(self.dir.path(), name, lines)
    }

    /// `k8s/job.yaml` with `edit` applied to its runner container, written as `name`.
    fn edited_template(&self, name: &str, edit: impl FnOnce(&mut Container)) -> PathBuf {
        let mut job = template();
        let pod_spec = job.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
        let runner = pod_spec.containers.iter_mut().find(|c| c.name == "runner");
        edit(runner.unwrap());
        let p = self.dir.path().join(name);
        std::fs::write(&p, serde_yaml_ng::to_string(&job).unwrap()).unwrap();
        p
    }

    /// The template with the runner's memory limit at `limit` and its wasm memory cap lifted.
    fn template_with_memory_limit(&self, limit: &str) -> PathBuf {
        self.edited_template("job-small.yaml", |runner| {
            let resources = runner.resources.as_mut().unwrap();
            for quantities in [&mut resources.requests, &mut resources.limits] {
                let memory = Quantity(limit.to_owned());
                quantities.as_mut().unwrap().insert("memory".into(), memory);
            }
            set_env(runner, "MAX_MEMORY", "1GiB");
        })
    }

    fn expect_clean(&self, run: &Run) {
        self.cluster.wait_until(
            "every Job and pod deleted and no container left running",
            Duration::from_secs(20),
            |c| c.jobs(NS).is_empty() && c.pods(NS).is_empty() && c.running_processes() == 0,
        );
        for (method, path) in self.cluster.requests() {
            assert!(
                !(path.contains("configmaps") || path.contains("secrets")),
                "{method} {path}: no ConfigMap or Secret is ever touched\n{}",
                run.describe()
            );
        }
    }

    /// (reason, note) of the events recorded about Job `name`.
    fn events_of(&self, job: &str) -> Vec<(String, String)> {
        self.cluster
            .events(NS)
            .iter()
            .filter(|e| {
                e.pointer("/regarding/name")
                    .or_else(|| e.pointer("/involvedObject/name"))
                    .and_then(Value::as_str)
                    == Some(job)
            })
            .map(|e| {
                (
                    e["reason"].as_str().unwrap_or_default().to_owned(),
                    e["note"]
                        .as_str()
                        .or_else(|| e["message"].as_str())
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect()
    }
}

fn job_name(task_id: &str) -> String {
    coordinator::backend::kubernetes::job::job_name(task_id)
}

/// Adds a variable to the container's env.
fn set_env(c: &mut Container, name: &str, value: &str) {
    c.env.get_or_insert_with(Vec::new).push(EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    });
}

fn cid(bytes: &[u8]) -> String {
    support::cid_of(bytes)
}

fn only_result(run: &Run) -> Value {
    let results = run.results();
    assert_eq!(results.len(), 1, "{}", run.describe());
    results.into_iter().next().unwrap()
}

#[test]
fn the_placeholder_tasks_run_as_jobs_end_to_end() {
    let k = Kube::start(&[]);
    let run = k.coord().arg("--concurrency").arg("3").run();
    run.expect_code(0);
    let by_id = run.by_id();
    let expected = [
        ("fib", json!([144])),
        ("affine", json!([119])),
        ("add", json!([5])),
    ];
    assert_eq!(by_id.len(), 3, "{}", run.describe());
    for (id, value) in expected {
        let r = &by_id[id];
        assert_eq!(r["status"], "ok", "{id}: {}", run.describe());
        assert_eq!(r["result"]["result"], value, "{id}");
        assert_eq!(r["attempts"], 1, "{id}");
        let events = k.events_of(&job_name(id));
        let reasons: Vec<&str> = events.iter().map(|(r, _)| r.as_str()).collect();
        assert_eq!(reasons, ["ResultPublished"], "{id}: {events:?}");
        assert!(events[0].1.contains(&value.to_string()), "{events:?}");
    }
    k.expect_clean(&run);
    // The pods fetched by CID through the gateway: modules never travel in the Job.
    assert!(k.gateway.requests().iter().any(|r| r.status == 200));
    assert!(
        !k.cluster.requests().iter().any(|(_, p)| p.contains("/log")),
        "the results came from the termination messages; no log was read"
    );
    let pod_lists = k
        .cluster
        .requests()
        .iter()
        .filter(|(m, p)| m == "GET" && p.contains("/pods?") && !p.contains("watch"))
        .count();
    assert!(
        pod_lists <= 1,
        "the finished pods came from the shared watch, not one list per task ({pod_lists} lists)"
    );
}

#[test]
fn an_image_that_cannot_be_pulled_fails_the_task_at_once_naming_it() {
    let k = Kube::start(&[]);
    let run = k
        .coord()
        .args(["--scenario", "fib", "--task-timeout", "3000"])
        .env("COORDINATOR_FETCHER_IMAGE", "registry.invalid/fetcher:nope")
        .run();
    run.expect_code(1);
    let r = only_result(&run);
    assert_eq!(
        (r["status"].as_str(), r["stage"].as_str()),
        (Some("error"), Some("fetch"))
    );
    let error = r["error"].as_str().unwrap();
    assert!(
        error.contains("registry.invalid/fetcher:nope") && error.contains("ImagePull"),
        "{error}"
    );
    assert_eq!(r["attempts"], 1, "a wrong image name is not retried");
    assert!(
        !run.killed_at_hang_bound,
        "it did not wait for the deadline"
    );
    let events = k.events_of(&job_name("fib"));
    assert!(
        events
            .iter()
            .any(|(r, n)| r == "TaskFailed" && n.contains("ImagePull")),
        "{events:?}"
    );
    k.expect_clean(&run);
}

#[test]
fn a_failed_fetch_is_named_from_the_init_container() {
    let k = Kube::start(&[]);
    let missing = cid(b"not on the gateway");
    let tasks = k.tasks("t.jsonl", &[task_line("lost", &missing, None, None)]);
    let run = k
        .coord()
        .arg("--tasks")
        .arg(&tasks)
        .args(["--retries", "0"])
        .run();
    run.expect_code(1);
    let r = only_result(&run);
    assert_eq!(
        (r["status"].as_str(), r["stage"].as_str()),
        (Some("fetch_failed"), Some("fetch")),
        "{}",
        run.describe()
    );
    let error = r["error"].as_str().unwrap();
    assert!(
        error.contains("fetcher exited") && error.contains(&missing),
        "{error}"
    );
    k.expect_clean(&run);
}

#[test]
fn a_trap_fails_the_job_at_once_with_the_runners_result() {
    let trap = wasm_of(r#"(module (func (export "boom") unreachable))"#);
    let k = Kube::start(&[&trap]);
    let tasks = k.tasks(
        "t.jsonl",
        &[task_line("boom", &cid(&trap), None, Some("boom"))],
    );
    let run = k.coord().arg("--tasks").arg(&tasks).run();
    run.expect_code(0);
    let r = only_result(&run);
    assert_eq!(
        (r["status"].as_str(), r["stage"].as_str()),
        (Some("trap"), Some("run"))
    );
    assert_eq!(r["attempts"], 1);
    assert_eq!(r["result"]["status"], "trap", "the runner's own result");
    assert_eq!(
        k.cluster.pods_created(NS, &job_name("boom")),
        1,
        "podFailurePolicy fails the Job on the runner's exit 2: no second pod"
    );
    k.expect_clean(&run);
}

#[test]
fn an_oom_killed_runner_is_named() {
    // Grows linear memory to 160 MiB and writes every page, over and over.
    let hog = wasm_of(
        r#"(module (memory 1)
          (func (export "hog") (local $p i32) (local $round i32)
            (drop (memory.grow (i32.const 2559)))
            (loop $again
              (local.set $p (i32.const 0))
              (loop $page
                (i32.store (local.get $p) (local.get $round))
                (local.set $p (i32.add (local.get $p) (i32.const 4096)))
                (br_if $page (i32.lt_u (local.get $p) (i32.const 167772160))))
              (local.set $round (i32.add (local.get $round) (i32.const 1)))
              (br_if $again (i32.lt_u (local.get $round) (i32.const 1000))))))"#,
    );
    let k = Kube::start(&[&hog]);
    let template = k.template_with_memory_limit("40Mi");
    let tasks = k.tasks(
        "t.jsonl",
        &[task_line("hog", &cid(&hog), None, Some("hog"))],
    );
    let run = k
        .coord()
        .arg("--tasks")
        .arg(&tasks)
        .env("COORDINATOR_JOB_TEMPLATE", &template)
        .args(["--fuel", "0", "--retries", "0"])
        .run();
    let r = only_result(&run);
    assert_eq!(r["status"], "error", "{}", run.describe());
    let error = r["error"].as_str().unwrap();
    assert!(
        error.contains("OOMKilled") && error.contains("memory"),
        "{error}"
    );
    k.expect_clean(&run);
}

#[test]
fn ids_that_clean_to_the_same_name_get_two_jobs_and_a_foreign_job_is_not_adopted() {
    let k = Kube::start(&[]);
    let fib = cid(&std::fs::read(samples().join("fib.wasm")).unwrap());
    let input = cid(&std::fs::read(samples().join("fib-input.json")).unwrap());
    // A Job of our name for another task, as another tool might have made it.
    let mut foreign = coordinator::backend::kubernetes::job::build_job(
        &template(),
        &coordinator::task::Task {
            task_id: "someone-else".into(),
            wasm_cid: fib.clone(),
            input_cid: None,
            entry: None,
            limits: Default::default(),
            invalid: None,
            deterministic: false,
        },
        &settings(&k),
    );
    // Of our name, but not labelled as ours: startup adoption (by label) leaves it alone.
    foreign.metadata.name = Some(job_name("taken"));
    foreign.metadata.labels = None;
    k.cluster.create_job(NS, &foreign);
    // `t1-1f93603db5` was the name part of `T1` once; the second is `T1`'s today.
    let t1_name = coordinator::backend::kubernetes::job::task_label("T1");
    let ours = ["a_b", "a.b", "T1", "t1-1f93603db5", &t1_name];
    let mut lines: Vec<String> = ours
        .iter()
        .map(|id| task_line(id, &fib, Some(&input), None))
        .collect();
    lines.push(task_line("taken", &fib, Some(&input), None));
    let tasks = k.tasks("t.jsonl", &lines);
    let names: std::collections::HashSet<String> = ours.iter().map(|id| job_name(id)).collect();
    assert_eq!(names.len(), ours.len(), "{names:?}");
    let run = k
        .coord()
        .arg("--tasks")
        .arg(&tasks)
        .args(["--concurrency", "6"])
        .run();
    let by_id = run.by_id();
    for id in ours {
        assert_eq!(by_id[id]["status"], "ok", "{id}: {}", run.describe());
        assert_eq!(by_id[id]["result"]["result"], json!([144]));
    }
    let taken = &by_id["taken"];
    assert_eq!(taken["status"], "error");
    let error = taken["error"].as_str().unwrap();
    assert!(
        error.contains(&job_name("taken")) && error.contains("someone-else"),
        "{error}"
    );
    // The foreign Job is not ours to delete.
    k.cluster
        .wait_until("our Jobs deleted", Duration::from_secs(20), |c| {
            c.jobs(NS).len() == 1
        });
    assert_eq!(
        k.cluster.jobs(NS)[0].metadata.annotations.as_ref().unwrap()["wasm-exec.io/task-id"],
        "someone-else"
    );
}

#[test]
fn a_task_id_and_entry_with_dollar_references_reach_the_runner_as_written() {
    let k = Kube::start(&[]);
    let fib = cid(&std::fs::read(samples().join("fib.wasm")).unwrap());
    // Unescaped, Kubernetes would turn `$$` into `$` and expand `$(NAME)` where NAME comes
    // earlier in the container's env: GREETING (the template's own), TASK_ID (before ENTRY).
    let id = "$(HOSTNAME) $(WASM_CID) $$ $(TASK_ID) $(GREETING) $$(GREETING) $$$(GREETING) é$ $(";
    let entry = "fib$(TASK_ID)$(GREETING)$$(GREETING)$$$(WASM_PATH)$";
    let template = k.edited_template("job-greeting.yaml", |runner| {
        set_env(runner, "GREETING", "hello")
    });
    let tasks = k.tasks("t.jsonl", &[task_line(id, &fib, None, Some(entry))]);
    let run = k
        .coord()
        .arg("--tasks")
        .arg(&tasks)
        .env("COORDINATOR_JOB_TEMPLATE", &template)
        .run();
    run.expect_code(0);
    let r = only_result(&run);
    assert_eq!(
        (r["task_id"].as_str(), r["entry"].as_str()),
        (Some(id), Some(entry))
    );
    // The runner's own result: what it read from TASK_ID and ENTRY.
    let result = &r["result"];
    assert_eq!(result["status"], "invalid_input", "{}", run.describe());
    assert_eq!(result["task_id"].as_str(), Some(id), "{result}");
    let error = result["error"].as_str().unwrap();
    assert!(error.contains(&format!("entry `{entry}`")), "{error}");
    k.expect_clean(&run);
}

#[test]
fn a_restarted_coordinator_adopts_the_running_job_and_publishes_its_result_once() {
    let k = Kube::start(&[]);
    let tasks = k.tasks(
        "t.jsonl",
        &[task_line(
            "fib",
            &cid(&std::fs::read(samples().join("fib.wasm")).unwrap()),
            Some(&cid(
                &std::fs::read(samples().join("fib-input.json")).unwrap()
            )),
            None,
        )],
    );
    // The task stays in its fetch until released.
    k.gateway.hold(true);
    let first = k.coord().arg("--tasks").arg(&tasks).spawn();
    k.cluster.wait_until(
        "the first coordinator's Job",
        Duration::from_secs(60),
        |c| c.jobs(NS).len() == 1 && c.running_processes() > 0,
    );
    first.signal(Signal::SIGKILL);
    let first = first.wait();
    assert!(first.results().is_empty(), "{}", first.describe());
    assert_eq!(
        k.cluster.jobs(NS).len(),
        1,
        "the Job outlives its coordinator"
    );

    // The second has no task of its own: it finds the Job by its labels and adopts it.
    let nothing = k.tasks("none.jsonl", &[]);
    let second = k.coord().arg("--tasks").arg(&nothing).spawn();
    std::thread::sleep(Duration::from_millis(500));
    k.gateway.hold(false);
    let second = second.wait();
    second.expect_code(0);
    let r = only_result(&second);
    assert_eq!(
        (r["task_id"].as_str(), r["status"].as_str()),
        (Some("fib"), Some("ok"))
    );
    assert_eq!(r["result"]["result"], json!([144]));
    assert!(second.stderr.contains("adopting"), "{}", second.describe());
    let creates = k
        .cluster
        .requests()
        .iter()
        .filter(|(m, p)| m == "POST" && p.contains("/jobs"))
        .count();
    assert_eq!(
        creates,
        1 + 1,
        "one create, and one that found the Job and adopted it"
    );
    let events = k.events_of(&job_name("fib"));
    let reasons: Vec<&str> = events.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(reasons, ["Adopted", "ResultPublished"], "{events:?}");
    assert_eq!(
        k.cluster.pods_created(NS, &job_name("fib")),
        1,
        "the task ran once"
    );
    k.expect_clean(&second);
}

fn template() -> k8s_openapi::api::batch::v1::Job {
    coordinator::backend::kubernetes::job::parse_template(
        "k8s/job.yaml",
        &std::fs::read_to_string(job_template()).unwrap(),
    )
    .unwrap()
}

fn settings(k: &Kube) -> coordinator::backend::kubernetes::job::JobSettings {
    coordinator::backend::kubernetes::job::JobSettings {
        namespace: NS.into(),
        executor_image: EXECUTOR_IMAGE.into(),
        fetcher_image: FETCHER_IMAGE.into(),
        gateway: k.gateway.url(),
        limits: coordinator::task::RunLimits {
            timeout: Duration::from_secs(60),
            fuel: 1_000_000,
        },
        queueing: Default::default(),
    }
}

/// A `--once` coordinator with leader election over `tasks`, a short Lease and no grace.
fn elected(k: &Kube, tasks: &std::path::Path) -> Coord {
    let mut c = k.coord();
    c.arg("--tasks")
        .arg(tasks)
        .args([
            "--leader-election",
            "--concurrency",
            "3",
            "--grace-period",
            "0",
        ])
        .env("COORDINATOR_LEASE_DURATION", "3");
    c
}

fn lease_holder(k: &Kube) -> Option<String> {
    k.cluster
        .leases(NS)
        .into_iter()
        .find(|l| l.metadata.name.as_deref() == Some("wasm-exec-coordinator"))
        .and_then(|l| l.spec?.holder_identity)
}

fn job_creates(k: &Kube) -> usize {
    k.cluster
        .requests()
        .iter()
        .filter(|(m, p)| m == "POST" && p.contains("/jobs"))
        .count()
}

fn sample_tasks(k: &Kube) -> PathBuf {
    let (_mirror, samples) = support::sample_mirror();
    let lines: Vec<String> = samples
        .iter()
        .map(|(id, (wasm, input, _))| task_line(id, wasm, Some(input), None))
        .collect();
    k.tasks("t.jsonl", &lines)
}

#[test]
fn two_coordinators_one_leader_then_the_other_finishes_the_work_once() {
    let k = Kube::start(&[]);
    let tasks = sample_tasks(&k);
    k.gateway.hold(true);
    let a = elected(&k, &tasks).spawn();
    let a_id = format!("-{}", a.child.id());
    k.cluster
        .wait_until("the leader's three Jobs", Duration::from_secs(60), |c| {
            c.jobs(NS).len() == 3
        });
    assert!(
        lease_holder(&k).is_some_and(|h| h.ends_with(&a_id)),
        "{:?}",
        lease_holder(&k)
    );

    let b = elected(&k, &tasks).spawn();
    let b_id = format!("-{}", b.child.id());
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(job_creates(&k), 3, "the follower takes no task");

    // The leader stops (a rolling update): its running tasks stay with their Jobs.
    a.signal(Signal::SIGTERM);
    let a = a.wait();
    a.expect_code(0);
    assert!(
        a.results().is_empty(),
        "nothing published twice: {}",
        a.describe()
    );
    k.cluster.wait_until(
        "the follower holding the Lease",
        Duration::from_secs(30),
        |_| lease_holder(&k).is_some_and(|h| h.ends_with(&b_id)),
    );
    k.gateway.hold(false);
    let b = b.wait();
    b.expect_code(0);
    let by_id = b.by_id();
    assert_eq!(b.results().len(), 3, "{}", b.describe());
    for (id, value) in [
        ("fib", json!([144])),
        ("affine", json!([119])),
        ("add", json!([5])),
    ] {
        assert_eq!(by_id[id]["status"], "ok", "{id}: {}", b.describe());
        assert_eq!(by_id[id]["result"]["result"], value);
        assert_eq!(
            k.cluster.pods_created(NS, &job_name(id)),
            1,
            "{id} ran once"
        );
    }
    k.expect_clean(&b);
}

#[test]
fn a_leader_that_loses_its_lease_stops_at_once_and_leaves_the_jobs() {
    let k = Kube::start(&[]);
    let tasks = sample_tasks(&k);
    k.gateway.hold(true);
    let a = elected(&k, &tasks).spawn();
    k.cluster
        .wait_until("the leader's three Jobs", Duration::from_secs(60), |c| {
            c.jobs(NS).len() == 3
        });
    // Someone else takes the Lease.
    steal_lease(&k, "intruder");
    let a = a.wait();
    a.expect_code(1);
    a.expect_stderr_mentions("lost the Lease", "why it stopped");
    assert!(a.results().is_empty(), "{}", a.describe());
    assert_eq!(
        k.cluster.jobs(NS).len(),
        3,
        "the Jobs stay for the next leader"
    );
    assert_eq!(job_creates(&k), 3);
}

/// Runs `f` with a kube client of the stand-in, as another tool would use it.
fn with_client<F, Fut>(k: &Kube, f: F)
where
    F: FnOnce(kube::Client) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let kubeconfig = kube::config::Kubeconfig::read_from(&k.kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        f(kube::Client::try_from(config).unwrap()).await;
    });
}

/// Makes `holder` the Lease's holder for a minute, as another replica would.
fn steal_lease(k: &Kube, holder: &str) {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    use kube::api::{Api, Patch, PatchParams};
    with_client(k, |client| async move {
        let leases: Api<Lease> = Api::namespaced(client, NS);
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        leases
            .patch(
                "wasm-exec-coordinator",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {
                    "holderIdentity": holder,
                    "acquireTime": now,
                    "renewTime": now,
                    "leaseDurationSeconds": 60,
                }})),
            )
            .await
            .unwrap();
    });
}

#[test]
fn a_job_deleted_by_someone_else_fails_its_task_naming_that() {
    let k = Kube::start(&[]);
    k.gateway.hold(true);
    let running = k
        .coord()
        .args(["--scenario", "fib", "--retries", "0"])
        .spawn();
    k.cluster
        .wait_until("the Job", Duration::from_secs(60), |c| {
            c.jobs(NS).len() == 1
        });
    with_client(&k, |client| async move {
        let jobs: kube::Api<k8s_openapi::api::batch::v1::Job> = kube::Api::namespaced(client, NS);
        jobs.delete(&job_name("fib"), &kube::api::DeleteParams::background())
            .await
            .unwrap();
    });
    k.gateway.hold(false);
    let run = running.wait();
    run.expect_code(1);
    let r = only_result(&run);
    assert_eq!(r["status"], "error");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("deleted before it finished"),
        "{}",
        run.describe()
    );
}

#[test]
fn followers_are_ready_and_take_tasks_and_readiness_asks_the_api_server_and_the_crd() {
    let mut k = Kube::start(&[]);
    let nothing = k.tasks("none.jsonl", &[]);
    let service = |k: &Kube| {
        // A long-running service (no --once), with its HTTP listener on a free port.
        let mut c = Coord::bare();
        k.kube_env(&mut c);
        c.arg("--tasks")
            .arg(&nothing)
            .args(["--leader-election", "--listen", "127.0.0.1:0"])
            .env("COORDINATOR_LEASE_DURATION", "3");
        c.spawn()
    };
    let leader = service(&k);
    leader.wait_for_log("holding the Lease", Duration::from_secs(30));
    let follower = service(&k);
    follower.wait_for_log("waiting to hold the Lease", Duration::from_secs(30));
    let (lp, fp) = (leader.http_port(), follower.http_port());
    let http = support::http::request;

    let (status, body) = http(lp, "GET", "/readyz", b"");
    assert_eq!((status, body.trim()), (200, "ready (leader)"));
    let (status, body) = http(fp, "GET", "/readyz", b"");
    assert_eq!(
        status, 200,
        "a follower is ready, so rolling updates proceed: {body}"
    );
    assert!(body.contains("follower"), "{body}");

    let add = support::task_line(
        "api-add",
        "QmYyMt9rdrgr376CxpAoAGiT6xUo3bafoq4rzBxpQ2aScu",
        Some("QmR7FbyEjeVvsctqBYCX16Snhogs6MYF3fssLF1tTw9dDN"),
        None,
    );
    // A follower takes the task into the ledger; the leader knows it already.
    let (status, body) = http(fp, "POST", "/tasks", add.as_bytes());
    assert_eq!(status, 202, "{body}");
    let (status, body) = http(lp, "POST", "/tasks", add.as_bytes());
    assert_eq!(status, 200, "{body}");
    let started = std::time::Instant::now();
    let done = loop {
        let (_, body) = http(lp, "GET", "/tasks/api-add", b"");
        let v: Value = serde_json::from_str(&body).unwrap();
        if v["state"] == "done" {
            break v;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{v}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(done["report"]["result"]["result"], json!([5]), "{done}");

    // Without the custom resource, no replica is ready, and each names the fix.
    let deleted = kubectl(&k, &["delete", "crd", "wasmtasks.wasm-exec.io"]);
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    for port in [lp, fp] {
        let (status, body) = http(port, "GET", "/readyz", b"");
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("kubectl apply -f k8s/crd.yaml"), "{body}");
    }

    // Without its API server, the leader is not ready, and says why.
    k.stop_cluster();
    let (status, body) = http(lp, "GET", "/readyz", b"");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("Kubernetes API server"), "{body}");
    for c in [&leader, &follower] {
        c.signal(Signal::SIGTERM);
    }
    let _ = (leader.wait(), follower.wait());
}

#[test]
fn a_template_that_cannot_serve_stops_startup_before_any_api_call() {
    let k = Kube::start(&[]);
    let no_runner = k.dir.path().join("no-runner.yaml");
    std::fs::write(
        &no_runner,
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      containers:\n        - name: main\n          image: x\n",
    )
    .unwrap();
    let run = k.coord().env("COORDINATOR_JOB_TEMPLATE", &no_runner).run();
    run.expect_code(2)
        .expect_stderr_mentions("no container named `runner`", "what is wrong")
        .expect_stderr_mentions("no-runner.yaml", "which file")
        .expect_stderr_mentions("job_template", "which key");
    // Without the fetcher, the runner would find no module: refused, not patched up.
    let mut no_fetcher = template();
    no_fetcher
        .spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .init_containers = None;
    let no_fetcher_path = k.dir.path().join("no-fetcher.yaml");
    std::fs::write(
        &no_fetcher_path,
        serde_yaml_ng::to_string(&no_fetcher).unwrap(),
    )
    .unwrap();
    let run = k
        .coord()
        .env("COORDINATOR_JOB_TEMPLATE", &no_fetcher_path)
        .run();
    run.expect_code(2)
        .expect_stderr_mentions("no init container named `fetcher`", "what is missing")
        .expect_stderr_mentions("/mnt/input", "what to add")
        .expect_stderr_mentions("no-fetcher.yaml", "which file");
    let missing = k.dir.path().join("missing.yaml");
    let run = k.coord().env("COORDINATOR_JOB_TEMPLATE", &missing).run();
    run.expect_code(2)
        .expect_stderr_mentions("missing.yaml", "which file")
        .expect_stderr_mentions("cannot read it", "what is wrong");
    assert!(
        k.cluster.requests().is_empty(),
        "{:?}",
        k.cluster.requests()
    );
}

#[test]
fn without_a_termination_message_the_result_comes_from_the_runners_log() {
    let k = Kube::start(&[]);
    // The runner writes its termination message only where the file exists; here it does not.
    let template = k.edited_template("job-no-message.yaml", |runner| {
        set_env(runner, "TERMINATION_LOG", "/nonexistent/termination-log")
    });
    let run = k
        .coord()
        .args(["--scenario", "fib"])
        .env("COORDINATOR_JOB_TEMPLATE", &template)
        .run();
    run.expect_code(0);
    let r = only_result(&run);
    assert_eq!(
        (r["status"].as_str(), r["result"]["result"].clone()),
        (Some("ok"), json!([144])),
        "{}",
        run.describe()
    );
    assert!(
        k.cluster
            .requests()
            .iter()
            .any(|(m, p)| m == "GET" && p.contains("/log") && p.contains("container=runner")),
        "{:?}",
        k.cluster.requests()
    );
    k.expect_clean(&run);
}

#[test]
fn without_a_cluster_to_talk_to_startup_says_how_to_give_one() {
    let dir = tempfile::tempdir().unwrap();
    let run = Coord::new()
        .env("COORDINATOR_BACKEND", "kubernetes")
        .env("COORDINATOR_IPFS_ENDPOINT", "http://127.0.0.1:9/ipfs")
        .env("COORDINATOR_JOB_TEMPLATE", job_template())
        .env("KUBECONFIG", dir.path().join("no-such-kubeconfig"))
        .run();
    run.expect_code(2)
        .expect_stderr_mentions("KUBECONFIG", "where a client comes from")
        .expect_stderr_mentions("backend = kubernetes", "which setting needs it");
}

#[test]
fn a_leader_cut_off_from_the_api_server_stops_before_its_lease_can_pass_on() {
    let mut k = Kube::start(&[]);
    let tasks = sample_tasks(&k);
    k.gateway.hold(true);
    let a = elected(&k, &tasks).spawn();
    k.cluster
        .wait_until("the leader's three Jobs", Duration::from_secs(60), |c| {
            c.jobs(NS).len() == 3
        });
    // The API server goes away (a partition, as far as the leader can tell).
    k.stop_cluster();
    let a = a.wait();
    a.expect_code(1)
        .expect_stderr_mentions("could not be confirmed", "why it stopped");
    assert!(a.results().is_empty(), "{}", a.describe());
}

// ---------------------------------------------------------------------------------------------
// The ledger: WasmTask custom resources
// ---------------------------------------------------------------------------------------------

/// `kubectl` against the stand-in (the real binary: fails loudly when it is missing).
fn kubectl(k: &Kube, args: &[&str]) -> std::process::Output {
    std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&k.kubeconfig)
        .args(["--namespace", NS])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("kubectl is needed for this test and cannot run: {e}"))
}

fn wasm_task_yaml(k: &Kube, name: &str, wasm_cid: &str, input_cid: &str, entry: &str) -> PathBuf {
    let p = k.dir.path().join(format!("{name}.yaml"));
    std::fs::write(
        &p,
        format!(
            "apiVersion: wasm-exec.io/v1alpha1\nkind: WasmTask\nmetadata:\n  name: {name}\nspec:\n  wasmCid: {wasm_cid}\n  inputCid: {input_cid}\n  entry: {entry}\n"
        ),
    )
    .unwrap();
    p
}

fn wasm_task(k: &Kube, name: &str) -> Option<Value> {
    let out = kubectl(k, &["get", "wasmtask", name, "-o", "json"]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

fn sample_cids(id: &str) -> (String, String) {
    let (_mirror, samples) = support::sample_mirror();
    let (wasm, input, _) = &samples[id];
    (wasm.clone(), input.clone())
}

#[test]
fn a_wasm_task_applied_with_kubectl_runs_and_kubectl_shows_its_result() {
    let k = Kube::start(&[]);
    let (wasm, input) = sample_cids("fib");
    let file = wasm_task_yaml(&k, "fib-12", &wasm, &input, "fib");
    let applied = kubectl(&k, &["apply", "-f", file.to_str().unwrap()]);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    // A malformed task is refused by the API server's schema, naming the field.
    let bad = wasm_task_yaml(&k, "bad", "not a cid", &input, "fib");
    let refused = kubectl(&k, &["apply", "-f", bad.to_str().unwrap()]);
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && why.contains("spec.wasmCid"),
        "{why}"
    );

    let empty = k.tasks("none.jsonl", &[]);
    let run = k.coord().arg("--tasks").arg(&empty).run();
    run.expect_code(0);
    let r = only_result(&run);
    assert_eq!(
        (&r["task_id"], &r["result"]["result"]),
        (&json!("fib-12"), &json!([144])),
        "{}",
        run.describe()
    );
    let wt = wasm_task(&k, "fib-12").expect("kept for task_ttl");
    let status = &wt["status"];
    assert_eq!(status["phase"], "Succeeded", "{wt}");
    assert_eq!(status["result"], "[144]", "{wt}");
    assert_eq!(status["attempts"], 1, "{wt}");
    assert_eq!(status["report"]["result"]["result"], json!([144]), "{wt}");
    assert!(
        status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Published" && c["status"] == "True"),
        "{wt}"
    );
    let table = kubectl(&k, &["get", "wt"]);
    let text = String::from_utf8_lossy(&table.stdout);
    for column in ["STATUS", "RESULT", "ATTEMPTS", "AGE", "Succeeded", "[144]"] {
        assert!(
            text.contains(column),
            "kubectl get wt shows {column}:\n{text}"
        );
    }
    k.expect_clean(&run);

    // Read again (a restarted coordinator, the same task file): done, not run again.
    let again = k.coord().arg("--tasks").arg(&empty).run();
    again.expect_code(0);
    assert!(again.results().is_empty(), "{}", again.describe());
    assert_eq!(job_creates(&k), 1);
}

/// `spec.limits` reach the task's Job, capped by the coordinator's own: fib(12) needs 240
/// fuel; the coordinator allows 200.
#[test]
fn a_wasm_tasks_limits_lower_the_coordinators_and_are_checked_by_the_schema() {
    let k = Kube::start(&[]);
    let (wasm, input) = sample_cids("fib");
    let with_limits = |name: &str, limits: &str| {
        let p = wasm_task_yaml(&k, name, &wasm, &input, "fib");
        let mut text = std::fs::read_to_string(&p).unwrap();
        text.push_str(&format!("  limits: {limits}\n"));
        std::fs::write(&p, text).unwrap();
        kubectl(&k, &["apply", "-f", p.to_str().unwrap()])
    };
    for (name, limits) in [
        ("tight", "{fuel: 100}"),
        ("capped", "{fuel: 1000000000000000, timeoutSeconds: 600}"),
    ] {
        let applied = with_limits(name, limits);
        assert!(
            applied.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&applied.stderr)
        );
    }
    for (limits, field) in [
        ("{fuel: 0}", "spec.limits.fuel"),
        ("{timeoutSeconds: 0}", "spec.limits.timeoutSeconds"),
        ("{timeoutSeconds: 604801}", "spec.limits.timeoutSeconds"),
        ("{fuel: lots}", "spec.limits.fuel"),
    ] {
        let refused = with_limits("bad-limits", limits);
        let why = String::from_utf8_lossy(&refused.stderr);
        assert!(
            !refused.status.success() && why.contains(field),
            "{limits}: {why}"
        );
    }

    let empty = k.tasks("none.jsonl", &[]);
    let run = k
        .coord()
        .arg("--tasks")
        .arg(&empty)
        .args(["--fuel", "200"])
        .run();
    run.expect_code(0);
    let by_id = run.by_id();
    let consumed = |id: &str| {
        let r = &by_id[id];
        assert_eq!(r["status"], "out_of_fuel", "{r}\n{}", run.describe());
        r["result"]["fuel_consumed"].as_u64().unwrap()
    };
    assert!(consumed("tight") <= 100, "{}", by_id["tight"]);
    let capped = consumed("capped");
    assert!((101..=200).contains(&capped), "{}", by_id["capped"]);
    assert_eq!(by_id["tight"]["limits"], json!({"fuel": 100}));
    let wt = wasm_task(&k, "capped").unwrap();
    assert_eq!(
        wt["spec"]["limits"],
        json!({"fuel": 1_000_000_000_000_000u64, "timeoutSeconds": 600})
    );
    k.expect_clean(&run);
}

#[test]
fn a_task_file_read_again_by_a_new_coordinator_finds_its_tasks_done() {
    let k = Kube::start(&[]);
    let tasks = sample_tasks(&k);
    let first = k.coord().arg("--tasks").arg(&tasks).run();
    first.expect_code(0);
    assert_eq!(first.results().len(), 3, "{}", first.describe());
    let second = k.coord().arg("--tasks").arg(&tasks).run();
    second.expect_code(0);
    assert!(second.results().is_empty(), "{}", second.describe());
    second.expect_stderr_mentions("already done", "what became of the tasks read again");
    assert_eq!(job_creates(&k), 3, "each task ran once");
}

#[test]
fn a_follower_takes_tasks_and_the_leader_runs_them_once() {
    let k = Kube::start(&[]);
    let empty = k.tasks("none.jsonl", &[]);
    let mut leader = elected(&k, &empty);
    leader
        .env("COORDINATOR_LISTEN", "127.0.0.1:0")
        .args(["--task-ttl", "3600"]);
    // Not --once: they serve until stopped.
    let leader = leader.serving().spawn();
    k.cluster
        .wait_until("a leader", Duration::from_secs(30), |_| {
            lease_holder(&k).is_some()
        });
    let mut follower = elected(&k, &empty);
    follower.env("COORDINATOR_LISTEN", "127.0.0.1:0");
    let follower = follower.serving().spawn();
    let port = follower.http_port();
    let (wasm, input) = sample_cids("add");
    let body = json!({"task_id": "via-follower", "wasm_cid": wasm, "input_cid": input});
    let (code, text) = support::http::request(port, "POST", "/tasks", body.to_string().as_bytes());
    assert_eq!(code, 202, "{text}");
    k.cluster
        .wait_until("the task done", Duration::from_secs(60), |_| {
            wasm_task(
                &k,
                &coordinator::backend::kubernetes::job::task_label("via-follower"),
            )
            .is_some_and(|wt| wt["status"]["phase"] == "Succeeded")
        });
    // Any replica lists the tasks from the WasmTasks, paging by position.
    let (code, text) = support::http::request(port, "GET", "/tasks?status=ok&limit=10", b"");
    assert_eq!(code, 200, "{text}");
    let page: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(page.len(), 1, "{text}");
    assert_eq!(
        (&page[0]["task_id"], &page[0]["seq"]),
        (&json!("via-follower"), &json!(1))
    );
    let (_, text) = support::http::request(port, "GET", "/tasks?status=ok&after=1", b"");
    assert_eq!(text.trim(), "[]");
    follower.signal(Signal::SIGTERM);
    leader.signal(Signal::SIGTERM);
    let (f, l) = (follower.wait(), leader.wait());
    let published: Vec<Value> = f.results().into_iter().chain(l.results()).collect();
    assert_eq!(published.len(), 1, "{}\n{}", f.describe(), l.describe());
    assert_eq!(published[0]["result"]["result"], json!([5]));
    assert_eq!(job_creates(&k), 1);
}

#[test]
fn deleting_a_wasm_task_mid_run_takes_its_job_with_it_and_it_does_not_run_again() {
    let k = Kube::start(&[]);
    let (wasm, input) = sample_cids("fib");
    let tasks = k.tasks("t.jsonl", &[task_line("doomed", &wasm, Some(&input), None)]);
    k.gateway.hold(true);
    let spawned = k.coord().arg("--tasks").arg(&tasks).spawn();
    k.cluster
        .wait_until("the task's Job", Duration::from_secs(60), |c| {
            c.jobs(NS).len() == 1
        });
    let job = &k.cluster.jobs(NS)[0];
    let owner = job.metadata.owner_references.clone().unwrap_or_default();
    assert_eq!(
        owner.len(),
        1,
        "the Job is owned by its WasmTask: {owner:?}"
    );
    assert_eq!(owner[0].kind, "WasmTask");
    let deleted = kubectl(&k, &["delete", "wasmtask", "doomed"]);
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    k.cluster.wait_until(
        "the Job gone with its WasmTask",
        Duration::from_secs(30),
        |c| c.jobs(NS).is_empty() && c.pods(NS).is_empty(),
    );
    k.gateway.hold(false);
    let run = spawned.wait();
    assert!(
        run.results().is_empty(),
        "a deleted task publishes nothing: {}",
        run.describe()
    );
    assert_eq!(job_creates(&k), 1, "not run again");
}

#[test]
fn finished_wasm_tasks_are_deleted_after_task_ttl() {
    let k = Kube::start(&[]);
    let tasks = sample_tasks(&k);
    let mut c = k.coord();
    c.arg("--tasks").arg(&tasks).args(["--task-ttl", "1"]);
    let spawned = c.serving().spawn();
    k.cluster.wait_until(
        "three WasmTasks done and then pruned",
        Duration::from_secs(60),
        |_| {
            let out = kubectl(&k, &["get", "wasmtasks", "-o", "json"]);
            let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            out.status.success()
                && list["items"].as_array().is_some_and(Vec::is_empty)
                && job_creates(&k) == 3
        },
    );
    spawned.signal(Signal::SIGTERM);
    let run = spawned.wait();
    assert_eq!(run.results().len(), 3, "{}", run.describe());
}

/// Leaders killed (`kill -9`) at random moments while a second replica waits: whoever holds
/// the Lease next resumes from the WasmTasks. Every task ends in the shared results file
/// exactly once, and each Job ran one pod.
#[test]
fn leaders_killed_at_random_moments_publish_every_task_once() {
    use rand::{Rng, SeedableRng};
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("CRASH_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let nap = wasm_of(support::NAP_WAT);
    let nap_input = br#"{"entry":"nap","args":[300]}"#;
    let k = Kube::start(&[&nap, nap_input]);
    let ids: Vec<String> = (0..12).map(|i| format!("k-{i:02}")).collect();
    let lines: Vec<String> = ids
        .iter()
        .map(|id| task_line(id, &cid(&nap), Some(&cid(nap_input)), None))
        .collect();
    let tasks = k.tasks("t.jsonl", &lines);
    let results = k.dir.path().join("results.jsonl");
    let replica = || {
        let mut c = elected(&k, &tasks);
        c.arg("--results").arg(&results).serving();
        c.spawn()
    };
    let count = || {
        std::fs::read_to_string(&results)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let mut alive = vec![replica(), replica()];
    for _ in 0..4 {
        if count() >= ids.len() {
            break;
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(200..1500)));
        // The leader: the replica whose pid ends the Lease's holderIdentity.
        let holder = lease_holder(&k).unwrap_or_default();
        if let Some(i) = alive
            .iter()
            .position(|s| holder.ends_with(&format!("-{}", s.child.id())))
        {
            let leader = alive.remove(i);
            leader.signal(Signal::SIGKILL);
            let _ = leader.wait();
            alive.push(replica());
        }
    }
    k.cluster
        .wait_until("every task published", Duration::from_secs(120), |_| {
            count() >= ids.len()
        });
    for s in &alive {
        s.signal(Signal::SIGTERM);
    }
    for s in alive {
        let _ = s.wait();
    }
    let text = std::fs::read_to_string(&results).unwrap();
    let mut published: Vec<String> = text
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["status"], "ok", "{v}");
            v["task_id"].as_str().unwrap().to_owned()
        })
        .collect();
    published.sort();
    assert_eq!(
        published, ids,
        "each task once in the results file:\n{text}"
    );
    for id in &ids {
        assert_eq!(
            k.cluster.pods_created(NS, &job_name(id)),
            1,
            "{id}: one Job, one pod"
        );
    }
}

#[test]
fn without_the_custom_resource_startup_says_how_to_install_it() {
    let k = Kube::start(&[]);
    let deleted = kubectl(&k, &["delete", "crd", "wasmtasks.wasm-exec.io"]);
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    let run = k.coord().args(["--scenario", "fib"]).run();
    run.expect_code(1);
    run.expect_stderr_mentions("kubectl apply -f k8s/crd.yaml", "the fix");
    assert_eq!(job_creates(&k), 0, "{}", run.describe());
}

#[test]
fn cursors_live_in_a_config_map_and_notes_in_the_wasm_tasks_status() {
    use coordinator::backend::kubernetes::ledger::{WasmTaskLedger, CURSORS};
    use coordinator::ledger::{Accepted, Ledger};
    use coordinator::task::Task;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, PostParams};
    let k = Kube::start(&[]);
    with_client(&k, |client| async move {
        let ttl = Duration::from_secs(3600);
        let ledger = WasmTaskLedger::new(client.clone(), NS, ttl);
        ledger.ready().await.unwrap();
        let chain = || "chain:1:0xabc".to_string();
        assert_eq!(ledger.cursor(chain()).await.unwrap(), None);
        ledger.set_cursor(chain(), 41).await.unwrap();
        ledger.set_cursor(chain(), 42).await.unwrap();
        assert_eq!(ledger.cursor(chain()).await.unwrap(), Some(42));
        let replica = WasmTaskLedger::new(client.clone(), NS, ttl);
        assert_eq!(
            replica.cursor(chain()).await.unwrap(),
            Some(42),
            "another replica reads the same cursor"
        );
        replica.set_cursor("chain:2:0xdef".into(), 7).await.unwrap();
        assert_eq!(
            ledger.cursor("chain:2:0xdef".into()).await.unwrap(),
            Some(7)
        );
        assert_eq!(
            ledger.cursor(chain()).await.unwrap(),
            Some(42),
            "two names are kept apart"
        );

        // The stand-in refuses a write on a stale resourceVersion, as the ledger expects.
        let config_maps: Api<ConfigMap> = Api::namespaced(client, NS);
        let mut stale = config_maps.get(CURSORS).await.unwrap();
        ledger.set_cursor(chain(), 43).await.unwrap();
        stale.data.as_mut().unwrap().insert("x".into(), "1".into());
        match config_maps
            .replace(CURSORS, &PostParams::default(), &stale)
            .await
        {
            Err(kube::Error::Api(s)) => assert_eq!(s.code, 409, "{s:?}"),
            other => panic!("a stale resourceVersion is a conflict: {other:?}"),
        }
        assert_eq!(replica.cursor(chain()).await.unwrap(), Some(43));

        let task: Task = serde_json::from_value(json!({
            "task_id": "t",
            "wasm_cid": "Qmakqmav82dp99fynQmoZHUr8UgmnmopakEmEaTeTnMHg1",
        }))
        .unwrap();
        let accepted = ledger.accept(vec![task]).await.unwrap();
        assert!(
            matches!(accepted.as_slice(), [Accepted::New(_)]),
            "{accepted:?}"
        );
        let key = || "tx contract 0xabc".to_string();
        ledger.note("t".into(), key(), "0x01".into()).await.unwrap();
        ledger.note("t".into(), key(), "0x02".into()).await.unwrap();
        let notes = ledger.notes("t".into()).await.unwrap();
        assert_eq!(notes.get(&key()).map(String::as_str), Some("0x02"));
        let notes = replica.notes("t".into()).await.unwrap();
        assert_eq!(
            notes.get(&key()).map(String::as_str),
            Some("0x02"),
            "another replica reads the notes from the API server"
        );
        // Another replica notes over this one's last write: this one reads it, and its own
        // next note (on a stale copy: a conflict, read again) keeps it.
        replica
            .note("t".into(), key(), "0x03".into())
            .await
            .unwrap();
        let notes = ledger.notes("t".into()).await.unwrap();
        assert_eq!(
            notes.get(&key()).map(String::as_str),
            Some("0x03"),
            "the notes another replica wrote are read"
        );
        ledger
            .note("t".into(), "tx other".into(), "0x04".into())
            .await
            .unwrap();
        assert!(ledger
            .note("nope".into(), key(), "0x".into())
            .await
            .is_err());
        assert!(ledger.notes("nope".into()).await.unwrap().is_empty());
    });

    let out = kubectl(&k, &["get", "configmap", CURSORS, "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cm: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        cm["metadata"]["labels"]["app.kubernetes.io/managed-by"], "wasm-exec-coordinator",
        "{cm:#}"
    );
    let data = cm["data"].as_object().unwrap();
    assert_eq!(data.len(), 2, "one key per cursor: {cm:#}");
    assert!(data.values().any(|v| v == "43") && data.values().any(|v| v == "7"));
    assert_eq!(k.cluster.config_maps(NS).len(), 1);

    let tasks = kubectl(&k, &["get", "wasmtasks", "-o", "json"]);
    assert!(
        tasks.status.success(),
        "{}",
        String::from_utf8_lossy(&tasks.stderr)
    );
    let list: Value = serde_json::from_slice(&tasks.stdout).unwrap();
    let [wt] = list["items"].as_array().unwrap().as_slice() else {
        panic!("one WasmTask: {list:#}");
    };
    assert_eq!(
        wt["status"]["notes"],
        json!({"tx contract 0xabc": "0x03", "tx other": "0x04"}),
        "{wt:#}"
    );
}

/// A replica that never leads keeps nothing of what it accepts (nothing would read or prune
/// it); the leader holds only what is still to run or to publish.
#[test]
fn a_follower_holds_no_task_in_memory_and_the_leader_only_those_in_flight() {
    use coordinator::backend::kubernetes::ledger::WasmTaskLedger;
    use coordinator::ledger::{Accepted, Ledger};
    use coordinator::task::Task;
    let k = Kube::start(&[]);
    with_client(&k, |client| async move {
        let ttl = Duration::from_secs(3600);
        let task = |i: usize| -> Task {
            serde_json::from_value(json!({
                "task_id": format!("t{i}"),
                "wasm_cid": "Qmakqmav82dp99fynQmoZHUr8UgmnmopakEmEaTeTnMHg1",
            }))
            .unwrap()
        };
        let follower = WasmTaskLedger::new(client.clone(), NS, ttl);
        let accepted = follower.accept((0..20).map(task).collect()).await.unwrap();
        assert!(accepted.iter().all(|a| matches!(a, Accepted::New(_))));
        assert_eq!(follower.held(), 0, "a follower keeps none of them");

        let leader = WasmTaskLedger::new(client.clone(), NS, ttl);
        // Leading starts the index: the full list brings the 20 queued tasks.
        let started = leader.start(5).await.unwrap();
        assert_eq!(started.len(), 5);
        assert_eq!(leader.held(), 20);
        leader.accept(vec![task(20)]).await.unwrap();
        assert_eq!(leader.held(), 21, "what it accepts itself while leading");
        // Follower writes after the list reach the leader through its watch, not its memory.
        follower.accept(vec![task(21)]).await.unwrap();
        assert_eq!(follower.held(), 0);
    });
}

#[test]
fn a_checked_task_runs_again_off_the_first_node_and_a_clock_reader_is_flagged() {
    let clock = wasm_of(support::CLOCK_WAT);
    let k = Kube::start(&[&clock]);
    let fib = cid(&std::fs::read(samples().join("fib.wasm")).unwrap());
    let fib_input = cid(&std::fs::read(samples().join("fib-input.json")).unwrap());
    let tasks = k.tasks(
        "t.jsonl",
        &[
            task_line("fib", &fib, Some(&fib_input), None),
            task_line("clock", &cid(&clock), None, Some("now")),
        ],
    );
    let run = k
        .coord()
        .arg("--tasks")
        .arg(&tasks)
        .args(["--verify-fraction", "1"])
        .run();
    run.expect_code(0);
    let by_id = run.by_id();
    assert_eq!(by_id["fib"]["status"], "ok", "{}", run.describe());
    assert_eq!(by_id["fib"]["verification"]["matched"], true);
    let clock_report = &by_id["clock"];
    assert_eq!(
        clock_report["status"],
        "nondeterministic",
        "{}",
        run.describe()
    );
    assert_eq!(clock_report["verification"]["matched"], false);
    // Two Jobs a task: its own, then the check's, which keeps off the first pod's node.
    assert_eq!(job_creates(&k), 4);
    let check_jobs: Vec<Value> = k
        .cluster
        .created_jobs()
        .into_iter()
        .filter(|job| job.pointer("/metadata/labels/wasm-exec.io~1check") == Some(&json!("true")))
        .collect();
    assert_eq!(check_jobs.len(), 2, "one check Job a task");
    for job in &check_jobs {
        let fields = job
            .pointer("/spec/template/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchFields/0")
            .unwrap_or_else(|| panic!("no node affinity: {job}"));
        assert_eq!(
            fields,
            &json!({"key": "metadata.name", "operator": "NotIn", "values": ["node-a"]})
        );
    }
    // The stand-in puts pods on the first node their affinity allows: the checks on node-b.
    let scheduled = k.cluster.scheduled();
    let on = |node: &str| scheduled.iter().filter(|(_, n)| n == node).count();
    assert_eq!((on("node-a"), on("node-b")), (2, 2), "{scheduled:?}");
    let events = k.events_of(&job_name("clock"));
    let flagged = events.iter().find(|(r, _)| r == "Nondeterministic");
    let (_, note) = flagged.unwrap_or_else(|| panic!("no Nondeterministic event: {events:?}"));
    let v = &clock_report["verification"];
    for hash in [&v["output_sha256"], &v["check_output_sha256"]] {
        assert!(note.contains(hash.as_str().unwrap()), "{note}");
    }
    k.expect_clean(&run);
}

#[test]
fn a_cached_task_creates_no_job_even_after_a_restart() {
    let k = Kube::start(&[]);
    let fib = cid(&std::fs::read(samples().join("fib.wasm")).unwrap());
    let fib_input = cid(&std::fs::read(samples().join("fib-input.json")).unwrap());
    let det = |id: &str| {
        json!({"task_id": id, "wasm_cid": fib, "input_cid": fib_input, "deterministic": true})
            .to_string()
    };
    let first = k
        .coord()
        .arg("--tasks")
        .arg(k.tasks("1.jsonl", &[det("d1")]))
        .run();
    first.expect_code(0);
    assert_eq!(job_creates(&k), 1);
    let d1 = first.by_id()["d1"].clone();
    // The WasmTask carries the key and the receipt's hash.
    let objects = k
        .cluster
        .custom_objects("wasm-exec.io/v1alpha1", "wasmtasks", NS);
    let d1_object = objects
        .iter()
        .find(|o| o["spec"]["taskId"] == "d1" || o["metadata"]["name"] == "d1")
        .unwrap();
    assert!(d1_object
        .pointer("/metadata/labels/wasm-exec.io~1cache-key")
        .is_some());
    let receipt: coordinator::receipt::Receipt =
        serde_json::from_value(d1["receipt"].clone()).unwrap();
    assert_eq!(d1_object["status"]["receiptSha256"], receipt.sha256());

    // Another coordinator (a restart): the equal task is answered from the WasmTasks.
    let second = k
        .coord()
        .arg("--tasks")
        .arg(k.tasks("2.jsonl", &[det("d2")]))
        .run();
    second.expect_code(0);
    assert_eq!(job_creates(&k), 1, "a cache hit creates no Job");
    let d2 = &second.by_id()["d2"];
    assert_eq!(d2["cached"], true, "{}", second.describe());
    assert_eq!(d2["cached_from"]["task_id"], "d1");
    assert_eq!(d2["result"]["result"], json!([144]));
    k.expect_clean(&second);
}
