//! Tests of the fake cluster itself (`support::cluster`), driven through the real `kube`
//! client: Jobs built from `k8s/job.yaml` run the real `fetcher` and `runner` binaries as
//! local processes, and the API's protocol (watch, conflicts, leases, events) is checked
//! the way kube's runtime uses it. Needs `cargo build --workspace` first.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::PathBuf;
use std::time::Duration;

use coordinator::job::{build_job, parse_template, JobSettings};
use coordinator::task::Task;
use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::EnvVar;
use k8s_openapi::api::core::v1::{ContainerStatus, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{
    Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::wait::await_condition;
use kube::runtime::watcher;
use kube::{Client, Config};
use kube_lease_manager::LeaseManagerBuilder;
use serde_json::{json, Value};
use support::cluster::{ClusterOptions, FakeCluster};
use tempfile::TempDir;

const NS: &str = "tasks";
const FETCHER_IMAGE: &str = "test/fetcher:1";
const RUNNER_IMAGE: &str = "test/runner:1";
const LONG: Duration = Duration::from_secs(60);

fn cluster() -> FakeCluster {
    let dir = support::coordinator_bin().parent().unwrap().to_path_buf();
    FakeCluster::start(ClusterOptions {
        images: vec![
            (FETCHER_IMAGE.into(), dir.join("fetcher")),
            (RUNNER_IMAGE.into(), dir.join("runner")),
        ],
        pod_backoff: Duration::from_millis(100),
    })
}

/// A client configured the way the coordinator's would be: from a kubeconfig file.
async fn client(fc: &FakeCluster) -> (Client, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = fc.write_kubeconfig(dir.path(), NS);
    let kubeconfig = Kubeconfig::read_from(&path).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    assert_eq!(config.default_namespace, NS);
    (Client::try_from(config).unwrap(), dir)
}

fn template() -> Job {
    let path: PathBuf = support::repo_root().join("k8s/job.yaml");
    let yaml = std::fs::read_to_string(&path).unwrap();
    parse_template(&path.to_string_lossy(), &yaml).unwrap()
}

/// The Job for a task whose module and input the fetcher takes from `mirror`.
fn job(
    template: &Job,
    mirror: &support::Mirror,
    id: &str,
    wasm: &str,
    input: Option<&str>,
    entry: &str,
) -> Job {
    let settings = JobSettings {
        namespace: NS.into(),
        executor_image: RUNNER_IMAGE.into(),
        fetcher_image: FETCHER_IMAGE.into(),
        gateway: format!("file://{}", mirror.path().display()),
        task_timeout: Duration::from_secs(60),
        fuel: 0,
    };
    let task = Task {
        task_id: id.into(),
        wasm_cid: wasm.into(),
        input_cid: input.map(String::from),
        entry: Some(entry.into()),
    };
    build_job(template, &task, &settings)
}

fn condition_types(job: &Job) -> Vec<(String, String)> {
    let conds = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    conds
        .into_iter()
        .filter(|c| c.status == "True")
        .map(|c| (c.type_, c.reason.unwrap_or_default()))
        .collect()
}

/// Complete or Failed: what the coordinator waits for (`is_job_completed` sees Complete only).
fn finished(job: &Job) -> bool {
    condition_types(job)
        .iter()
        .any(|(t, _)| t == "Complete" || t == "Failed")
}

fn job_named(fc: &FakeCluster, name: &str) -> Option<Job> {
    fc.jobs(NS)
        .into_iter()
        .find(|j| j.metadata.name.as_deref() == Some(name))
}

fn pods_of(fc: &FakeCluster, job: &str) -> Vec<Pod> {
    let of_job = |p: &Pod| {
        p.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("job-name"))
            .map(String::as_str)
            == Some(job)
    };
    fc.pods(NS).into_iter().filter(of_job).collect()
}

fn status_of(pod: &Pod, container: &str) -> Option<ContainerStatus> {
    let st = pod.status.clone().unwrap_or_default();
    st.init_container_statuses
        .into_iter()
        .flatten()
        .chain(st.container_statuses.into_iter().flatten())
        .find(|c| c.name == container)
}

/// (exit code, reason, message) of a terminated container.
fn terminated(pod: &Pod, container: &str) -> Option<(i32, String, String)> {
    let t = status_of(pod, container)?.state?.terminated?;
    Some((
        t.exit_code,
        t.reason.unwrap_or_default(),
        t.message.unwrap_or_default(),
    ))
}

fn waiting_reason(pod: &Pod, container: &str) -> Option<String> {
    status_of(pod, container)?.state?.waiting?.reason
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fib_job_completes_with_its_result_as_termination_message_and_last_log_line() {
    let fc = cluster();
    let (client, _dir) = client(&fc).await;
    let (mirror, table) = support::sample_mirror();
    let (wasm, input, expected) = &table["fib"];
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    let created = jobs
        .create(
            &PostParams::default(),
            &job(&template(), &mirror, "fib-1", wasm, Some(input), "fib"),
        )
        .await
        .unwrap();
    let name = created.metadata.name.clone().unwrap();
    assert!(created.metadata.uid.is_some() && created.metadata.resource_version.is_some());

    let wait = await_condition(jobs.clone(), &name, |j: Option<&Job>| {
        j.is_some_and(finished)
    });
    let done = tokio::time::timeout(LONG, wait)
        .await
        .expect("the Job did not finish")
        .unwrap()
        .unwrap();
    let types: Vec<String> = condition_types(&done).into_iter().map(|(t, _)| t).collect();
    assert_eq!(
        types,
        ["SuccessCriteriaMet", "Complete"],
        "{:?}",
        done.status
    );
    let status = done.status.unwrap();
    assert_eq!(
        (status.succeeded, status.failed, status.active),
        (Some(1), None, None)
    );
    assert!(status.completion_time.is_some() && status.start_time.is_some());

    let pods: Api<Pod> = Api::namespaced(client, NS);
    let listed = pods
        .list(&ListParams::default().labels(&format!("job-name={name}")))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    let pod = &listed.items[0];
    assert_eq!(
        pod.status.as_ref().unwrap().phase.as_deref(),
        Some("Succeeded")
    );
    let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.controller), ("Job", Some(true)));
    assert_eq!(terminated(pod, "fetcher").unwrap().0, 0);
    let (code, reason, message) = terminated(pod, "runner").unwrap();
    assert_eq!((code, reason.as_str()), (0, "Completed"));
    let result: Value = serde_json::from_str(&message).unwrap_or_else(|e| panic!("{e}: {message}"));
    assert_eq!(result["status"], "ok", "{result}");
    assert_eq!(&result["result"], expected, "{result}");

    let pod_name = pod.metadata.name.clone().unwrap();
    let log_params = LogParams {
        container: Some("runner".into()),
        ..LogParams::default()
    };
    let log = pods.logs(&pod_name, &log_params).await.unwrap();
    let last: Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(last, result, "the log's last line is the result");
    let tail = LogParams {
        container: Some("runner".into()),
        tail_lines: Some(1),
        ..LogParams::default()
    };
    assert_eq!(
        pods.logs(&pod_name, &tail).await.unwrap().trim(),
        message.trim()
    );
    let err = pods
        .logs(&pod_name, &LogParams::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 400 && s.message.contains("container name must be specified")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_image_fails_to_pull_and_the_job_stays_active() {
    let fc = cluster();
    let (client, _dir) = client(&fc).await;
    let (mirror, table) = support::sample_mirror();
    let (wasm, input, _) = &table["fib"];
    let mut job = job(&template(), &mirror, "pull", wasm, Some(input), "fib");
    let pod_spec = job.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
    pod_spec.init_containers.as_mut().unwrap()[0].image = Some("nowhere/fetcher:0".into());
    let created = fc.create_job(NS, &job);
    let name = created.metadata.name.unwrap();

    let reason = |fc: &FakeCluster| {
        pods_of(fc, &name)
            .first()
            .and_then(|p| waiting_reason(p, "fetcher"))
    };
    fc.wait_until("the fetcher shows ErrImagePull", LONG, |fc| {
        reason(fc).as_deref() == Some("ErrImagePull")
    });
    fc.wait_until("the fetcher shows ImagePullBackOff", LONG, |fc| {
        reason(fc).as_deref() == Some("ImagePullBackOff")
    });
    let pod = &pods_of(&fc, &name)[0];
    let waiting = status_of(pod, "fetcher")
        .unwrap()
        .state
        .unwrap()
        .waiting
        .unwrap();
    assert_eq!(
        waiting.message.as_deref(),
        Some("Back-off pulling image \"nowhere/fetcher:0\"")
    );
    assert_eq!(
        waiting_reason(pod, "runner").as_deref(),
        Some("PodInitializing")
    );
    assert_eq!(
        pod.status.as_ref().unwrap().phase.as_deref(),
        Some("Pending")
    );

    let pods: Api<Pod> = Api::namespaced(client, NS);
    let params = LogParams {
        container: Some("runner".into()),
        ..LogParams::default()
    };
    let err = pods
        .logs(pod.metadata.name.as_deref().unwrap(), &params)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 400 && s.message.contains("is waiting to start: PodInitializing")),
        "{err}"
    );

    tokio::time::sleep(Duration::from_millis(500)).await;
    let job = job_named(&fc, &name).unwrap();
    assert!(condition_types(&job).is_empty(), "{:?}", job.status);
    assert_eq!(job.status.unwrap().active, Some(1));
    assert_eq!(pods_of(&fc, &name).len(), 1);
    assert_eq!(fc.running_processes(), 0);
}

#[test]
fn a_failed_fetch_is_retried_up_to_the_backoff_limit() {
    let fc = cluster();
    let mirror = support::Mirror::new();
    let absent = support::cid_of(b"never added to the mirror");
    let created = fc.create_job(
        NS,
        &job(&template(), &mirror, "absent", &absent, None, "fib"),
    );
    let name = created.metadata.name.unwrap();
    fc.wait_until("the Job fails", LONG, |fc| {
        job_named(fc, &name).is_some_and(|j| finished(&j))
    });

    let job = job_named(&fc, &name).unwrap();
    let conds = condition_types(&job);
    assert_eq!(
        conds,
        [
            ("FailureTarget".into(), "BackoffLimitExceeded".into()),
            ("Failed".into(), "BackoffLimitExceeded".into())
        ]
    );
    let status = job.status.unwrap();
    assert_eq!(
        (status.failed, status.active, status.succeeded),
        (Some(3), None, None)
    );
    let pods = pods_of(&fc, &name);
    assert_eq!(
        pods.len(),
        3,
        "backoffLimit 2: the first pod and two replacements"
    );
    assert_eq!(fc.pods_created(NS, &name), 3);
    for pod in &pods {
        assert_eq!(
            pod.status.as_ref().unwrap().phase.as_deref(),
            Some("Failed")
        );
        let (code, reason, message) = terminated(pod, "fetcher").unwrap();
        assert!(code != 0 && reason == "Error", "{code} {reason}");
        assert!(
            message.contains(&absent),
            "FallbackToLogsOnError gives the fetcher's error: {message}"
        );
        assert_eq!(
            waiting_reason(pod, "runner").as_deref(),
            Some("PodInitializing")
        );
    }
}

#[test]
fn a_trap_fails_the_job_by_pod_failure_policy_after_one_pod() {
    let fc = cluster();
    let mirror = support::Mirror::new();
    let wasm = mirror.add("trap.wasm", &support::wasm_of(support::TRAP_WAT));
    let created = fc.create_job(NS, &job(&template(), &mirror, "trap", &wasm, None, "boom"));
    let name = created.metadata.name.unwrap();
    fc.wait_until("the Job fails", LONG, |fc| {
        job_named(fc, &name).is_some_and(|j| finished(&j))
    });

    let job = job_named(&fc, &name).unwrap();
    assert_eq!(
        condition_types(&job),
        [
            ("FailureTarget".into(), "PodFailurePolicy".into()),
            ("Failed".into(), "PodFailurePolicy".into())
        ]
    );
    let pods = pods_of(&fc, &name);
    assert_eq!(pods.len(), 1, "FailJob: no replacement pod");
    assert_eq!(fc.pods_created(NS, &name), 1);
    let pod_name = pods[0].metadata.name.clone().unwrap();
    let failed = job.status.unwrap().conditions.unwrap().pop().unwrap();
    assert_eq!(
        failed.message.as_deref(),
        Some(format!("Container runner for pod {NS}/{pod_name} failed with exit code 2 matching FailJob rule at index 0").as_str())
    );
    let (code, _, message) = terminated(&pods[0], "runner").unwrap();
    assert_eq!(code, 2);
    let result: Value = serde_json::from_str(&message).unwrap();
    assert_eq!(result["status"], "trap", "{result}");
}

/// Grows memory to 128 MiB and touches every page, forever.
const HOG_WAT: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "hog") (local $i i32)
    (drop (memory.grow (i32.const 2047)))
    (loop $again
      (local.set $i (i32.const 0))
      (loop $touch
        (i32.store8 (local.get $i) (i32.const 1))
        (local.set $i (i32.add (local.get $i) (i32.const 4096)))
        (br_if $touch (i32.lt_u (local.get $i) (i32.const 134217728))))
      (br $again))))"#;

#[test]
fn a_container_over_its_memory_limit_is_oom_killed() {
    let fc = cluster();
    let mirror = support::Mirror::new();
    let wasm = mirror.add("hog.wasm", &support::wasm_of(HOG_WAT));
    let mut template = template();
    let spec = template.spec.as_mut().unwrap();
    spec.backoff_limit = Some(0);
    let runner = &mut spec.template.spec.as_mut().unwrap().containers[0];
    let limits = runner.resources.as_mut().unwrap().limits.as_mut().unwrap();
    limits.insert("memory".into(), Quantity("40Mi".into()));
    runner.env.as_mut().unwrap().push(EnvVar {
        name: "MAX_MEMORY".into(),
        value: Some("1GiB".into()),
        value_from: None,
    });
    let created = fc.create_job(NS, &job(&template, &mirror, "hog", &wasm, None, "hog"));
    let name = created.metadata.name.unwrap();
    fc.wait_until("the Job fails", LONG, |fc| {
        job_named(fc, &name).is_some_and(|j| finished(&j))
    });

    let pods = pods_of(&fc, &name);
    let (code, reason, _) = terminated(&pods[0], "runner").unwrap();
    assert_eq!((code, reason.as_str()), (137, "OOMKilled"));
    let job = job_named(&fc, &name).unwrap();
    assert_eq!(
        condition_types(&job).last().unwrap().1,
        "BackoffLimitExceeded"
    );
    assert_eq!(fc.running_processes(), 0);
}

/// `nap(ms)` with a long nap: a runner that stays up until killed.
fn napping_job(template: &Job, mirror: &support::Mirror, id: &str) -> Job {
    let wasm = mirror.add("nap.wasm", &support::wasm_of(support::NAP_WAT));
    let input = mirror.add("nap-input.json", br#"{"entry":"nap","args":[120000]}"#);
    job(template, mirror, id, &wasm, Some(&input), "nap")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_background_delete_removes_the_job_and_its_pods_and_kills_the_processes() {
    let fc = cluster();
    let (client, _dir) = client(&fc).await;
    let mirror = support::Mirror::new();
    let jobs: Api<Job> = Api::namespaced(client, NS);
    let created = jobs
        .create(
            &PostParams::default(),
            &napping_job(&template(), &mirror, "nap"),
        )
        .await
        .unwrap();
    let name = created.metadata.name.unwrap();
    let runner_running = |fc: &FakeCluster| {
        pods_of(fc, &name).first().is_some_and(|p| {
            status_of(p, "runner")
                .and_then(|s| s.state)
                .is_some_and(|s| s.running.is_some())
        })
    };
    fc.wait_until("the runner runs", LONG, runner_running);
    assert_eq!(fc.running_processes(), 1);
    fc.wait_until("the Job counts the pod ready", LONG, |fc| {
        let status = job_named(fc, &name)
            .and_then(|j| j.status)
            .unwrap_or_default();
        (status.active, status.ready) == (Some(1), Some(1))
    });

    jobs.delete(&name, &DeleteParams::background())
        .await
        .unwrap();
    assert!(job_named(&fc, &name).is_none(), "the Job is gone at once");
    fc.wait_until(
        "the pods are gone and no process runs",
        Duration::from_secs(10),
        |fc| pods_of(fc, &name).is_empty() && fc.running_processes() == 0,
    );
    assert_eq!(
        fc.pods_created(NS, &name),
        1,
        "deleted pods are still counted"
    );
    let err = jobs.get(&name).await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 404 && s.reason == "NotFound"),
        "{err}"
    );
    let err = jobs
        .delete(&name, &DeleteParams::background())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 404),
        "{err}"
    );
}

async fn next<S: futures_util::Stream<Item = watcher::Result<watcher::Event<Pod>>> + Unpin>(
    events: &mut S,
) -> watcher::Event<Pod> {
    let event = tokio::time::timeout(Duration::from_secs(20), events.try_next()).await;
    event.expect("no watch event").unwrap().unwrap()
}

#[test]
fn a_job_past_its_deadline_is_failed_and_its_pod_killed() {
    let fc = cluster();
    let mirror = support::Mirror::new();
    let mut job = napping_job(&template(), &mirror, "late");
    job.spec.as_mut().unwrap().active_deadline_seconds = Some(2);
    let name = fc.create_job(NS, &job).metadata.name.unwrap();
    fc.wait_until("the Job fails", LONG, |fc| {
        job_named(fc, &name).is_some_and(|j| finished(&j))
    });

    let job = job_named(&fc, &name).unwrap();
    let deadline = (
        "DeadlineExceeded".to_string(),
        "Job was active longer than specified deadline",
    );
    let conds = job.status.clone().unwrap().conditions.unwrap();
    let got: Vec<_> = conds
        .iter()
        .map(|c| {
            (
                c.type_.as_str(),
                c.reason.clone().unwrap(),
                c.message.as_deref().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("FailureTarget", deadline.0.clone(), deadline.1),
            ("Failed", deadline.0, deadline.1)
        ]
    );
    assert_eq!(
        (
            job.status.as_ref().unwrap().failed,
            job.status.unwrap().active
        ),
        (Some(1), None)
    );
    let pods = pods_of(&fc, &name);
    assert_eq!(pods.len(), 1);
    assert_eq!(
        pods[0].status.as_ref().unwrap().phase.as_deref(),
        Some("Failed")
    );
    let (code, reason, _) = terminated(&pods[0], "runner").unwrap();
    assert_eq!((code, reason.as_str()), (137, "Error"));
    assert_eq!(fc.running_processes(), 0);
}

fn labelled_pod(name: &str, labels: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "nowhere/none:0"}]},
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn watches_see_added_modified_deleted_and_a_duplicate_create_is_409() {
    let fc = cluster();
    let (client, _dir) = client(&fc).await;
    let pods: Api<Pod> = Api::namespaced(client, NS);
    let selector = "app=watched";
    let list = pods
        .list(&ListParams::default().labels(selector))
        .await
        .unwrap();
    let rv = list.metadata.resource_version.unwrap();
    let raw = pods
        .watch(&WatchParams::default().labels(selector).timeout(20), &rv)
        .await
        .unwrap();
    // The raw events, up to the deletion.
    let raw = tokio::spawn(async move {
        let mut raw = std::pin::pin!(raw);
        let mut kinds = Vec::new();
        while let Some(event) = raw.try_next().await.unwrap() {
            kinds.push(match event {
                WatchEvent::Added(_) => "ADDED",
                WatchEvent::Modified(_) => "MODIFIED",
                WatchEvent::Deleted(_) => "DELETED",
                _ => "other",
            });
            if kinds.last() == Some(&"DELETED") {
                break;
            }
        }
        kinds
    });
    let mut seen = watcher(pods.clone(), watcher::Config::default().labels(selector)).boxed();
    assert!(matches!(
        seen.try_next().await.unwrap(),
        Some(watcher::Event::Init)
    ));
    assert!(matches!(
        seen.try_next().await.unwrap(),
        Some(watcher::Event::InitDone)
    ));

    pods.create(
        &PostParams::default(),
        &labelled_pod("other", json!({"app": "else"})),
    )
    .await
    .unwrap();
    pods.create(
        &PostParams::default(),
        &labelled_pod("watched", json!({"app": "watched"})),
    )
    .await
    .unwrap();
    let watcher::Event::Apply(added) = next(&mut seen).await else {
        panic!("expected the pod")
    };
    assert_eq!(added.metadata.name.as_deref(), Some("watched"));
    // The kubelet's status updates (the image fails to pull) come as modifications.
    let watcher::Event::Apply(modified) = next(&mut seen).await else {
        panic!("expected a modification")
    };
    assert_eq!(modified.metadata.name.as_deref(), Some("watched"));
    assert_ne!(
        modified.metadata.resource_version,
        added.metadata.resource_version
    );
    let err = pods
        .create(&PostParams::default(), &labelled_pod("watched", json!({})))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists"),
        "{err}"
    );
    pods.delete("watched", &DeleteParams::default())
        .await
        .unwrap();
    loop {
        match next(&mut seen).await {
            watcher::Event::Apply(p) => assert_eq!(p.metadata.name.as_deref(), Some("watched")),
            watcher::Event::Delete(p) => {
                assert_eq!(p.metadata.name.as_deref(), Some("watched"));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    let kinds = tokio::time::timeout(Duration::from_secs(20), raw)
        .await
        .unwrap()
        .unwrap();
    let (first, last) = (kinds.first().copied(), kinds.last().copied());
    assert_eq!((first, last), (Some("ADDED"), Some("DELETED")), "{kinds:?}");
    assert!(
        kinds[1..kinds.len() - 1].iter().all(|k| *k == "MODIFIED") && kinds.len() > 2,
        "{kinds:?}"
    );
    let watches: Vec<String> = fc
        .requests()
        .into_iter()
        .filter(|(m, p)| m == "GET" && p.contains("watch=true"))
        .map(|(_, p)| p)
        .collect();
    assert!(
        watches
            .iter()
            .any(|p| p.contains("labelSelector=app%3Dwatched")
                && p.contains(&format!("resourceVersion={rv}"))),
        "{watches:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_lease_manager_leads_and_the_other_takes_over_after_a_release() {
    let fc = cluster();
    let (client, _dir) = client(&fc).await;
    let manager = |id: &str| {
        LeaseManagerBuilder::new(client.clone(), "leader")
            .with_namespace(NS)
            .with_identity(id)
            .with_duration(3)
            .with_grace(1)
            .build()
    };
    let (a, b) = (manager("a").await.unwrap(), manager("b").await.unwrap());
    let ((rx_a, task_a), (rx_b, task_b)) = tokio::join!(a.watch(), b.watch());
    let leaders = |a: &tokio::sync::watch::Receiver<bool>,
                   b: &tokio::sync::watch::Receiver<bool>| {
        (*a.borrow(), *b.borrow())
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while leaders(&rx_a, &rx_b) == (false, false) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nobody became leader"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Through renewals (the lease lasts 3 s), never two leaders.
    for _ in 0..40 {
        assert_ne!(leaders(&rx_a, &rx_b), (true, true), "two leaders");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let a_leads = *rx_a.borrow();
    let (leader, leader_task, follower, follower_id, follower_task) = if a_leads {
        (rx_a, task_a, rx_b, "b", task_b)
    } else {
        (rx_b, task_b, rx_a, "a", task_a)
    };
    let holder = |fc: &FakeCluster| {
        fc.leases(NS)[0]
            .spec
            .clone()
            .unwrap_or_default()
            .holder_identity
    };
    assert_eq!(
        holder(&fc).as_deref(),
        Some(if a_leads { "a" } else { "b" })
    );
    drop(leader); // the manager releases the lease and stops
    tokio::time::timeout(Duration::from_secs(10), leader_task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !*follower.borrow() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the other manager did not take over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(holder(&fc).as_deref(), Some(follower_id));
    drop(follower);
    tokio::time::timeout(Duration::from_secs(10), follower_task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let applies = fc
        .requests()
        .into_iter()
        .filter(|(m, p)| m == "PATCH" && p.contains("fieldManager=kube-lease-manager-"))
        .count();
    assert!(applies > 0);
}

/// The server-side-apply rule kube-lease-manager's locking rests on.
#[tokio::test(flavor = "multi_thread")]
async fn applying_a_lease_key_owned_by_another_manager_conflicts_unless_forced() {
    let fc = cluster();
    let (client, _dir) = client(&fc).await;
    let leases: Api<Lease> = Api::namespaced(client, NS);
    let holder = |who: &str| json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "spec": {"holderIdentity": who}});
    let apply = |manager: &str, force: bool| {
        let mut pp = PatchParams::apply(manager);
        pp.force = force;
        pp
    };
    leases
        .patch("l", &apply("m1", false), &Patch::Apply(holder("x")))
        .await
        .unwrap();
    leases
        .patch("l", &apply("m2", false), &Patch::Apply(holder("x")))
        .await
        .expect("an equal value is no conflict");
    let err = leases
        .patch("l", &apply("m2", false), &Patch::Apply(holder("y")))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 409 && s.reason == "Conflict"),
        "{err}"
    );
    leases
        .patch("l", &apply("m2", true), &Patch::Apply(holder("y")))
        .await
        .expect("forced");
    let err = leases
        .patch("l", &apply("m1", false), &Patch::Apply(holder("x")))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 409),
        "m2 owns it now: {err}"
    );
    let release = json!({"spec": {"holderIdentity": null}});
    let m2 = PatchParams {
        field_manager: Some("m2".into()),
        ..PatchParams::default()
    };
    leases
        .patch("l", &m2, &Patch::Strategic(release))
        .await
        .unwrap();
    leases
        .patch("l", &apply("m1", false), &Patch::Apply(holder("x")))
        .await
        .expect("nobody owns a nulled key");
    assert_eq!(
        leases
            .get("l")
            .await
            .unwrap()
            .spec
            .unwrap()
            .holder_identity
            .as_deref(),
        Some("x")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn recorder_events_are_stored_and_a_repeat_is_patched_into_a_series() {
    let fc = cluster();
    let (client, _dir) = client(&fc).await;
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "fake-cluster-test".into(),
            instance: None,
        },
    );
    let regarding = ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: Some("some-job".into()),
        namespace: Some(NS.into()),
        uid: Some("0000-1111".into()),
        ..ObjectReference::default()
    };
    let event = Event {
        type_: EventType::Warning,
        reason: "TaskFailed".into(),
        note: Some("the task trapped".into()),
        action: "Collect".into(),
        secondary: None,
    };
    recorder.publish(&event, &regarding).await.unwrap();
    recorder.publish(&event, &regarding).await.unwrap();

    let events = fc.events(NS);
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(
        (e["apiVersion"].as_str(), e["kind"].as_str()),
        (Some("events.k8s.io/v1"), Some("Event"))
    );
    assert_eq!(e["reason"], "TaskFailed");
    assert_eq!(e["regarding"]["name"], "some-job");
    assert_eq!(e["series"]["count"], 2, "the repeat is a series: {e}");
    let calls: Vec<String> = fc
        .requests()
        .into_iter()
        .filter(|(_, p)| p.contains("/events"))
        .map(|(m, _)| m)
        .collect();
    assert_eq!(calls, ["POST", "PATCH"]);

    let core: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client, NS);
    let old_style =
        json!({"metadata": {"generateName": "x-"}, "involvedObject": regarding, "reason": "Old"});
    core.create(
        &PostParams::default(),
        &serde_json::from_value(old_style).unwrap(),
    )
    .await
    .unwrap();
    let events = fc.events(NS);
    assert!(
        events
            .iter()
            .any(|e| e["apiVersion"] == "v1" && e["involvedObject"]["name"] == "some-job"),
        "{events:?}"
    );
}
