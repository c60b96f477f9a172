//! Tests of the fake cluster itself (`support::cluster`), driven through the real `kube`
//! client: Jobs built from `k8s/job.yaml` run the real `fetcher` and `runner` binaries as
//! local processes, and the API's protocol (watch, conflicts, leases, events) is checked
//! the way kube's runtime uses it; custom resources are served from the WasmTask CRD
//! (`k8s/crd.yaml`) as the real server would, to kube and to the real `kubectl`. Needs
//! `cargo build --workspace` first, and `kubectl` on PATH.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::PathBuf;
use std::time::Duration;

use coordinator::backend::kubernetes::job::{build_job, parse_template, JobSettings};
use coordinator::task::{RunLimits, Task, TaskLimits};
use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::EnvVar;
use k8s_openapi::api::core::v1::{ContainerStatus, ObjectReference, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, LogParams, Patch,
    PatchParams, PostParams, WatchEvent, WatchParams,
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
        ..ClusterOptions::default()
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
        limits: RunLimits {
            timeout: Duration::from_secs(60),
            fuel: 0,
        },
        queueing: Default::default(),
    };
    let task = Task {
        task_id: id.into(),
        wasm_cid: wasm.into(),
        input_cid: input.map(String::from),
        entry: Some(entry.into()),
        limits: TaskLimits::default(),
        invalid: None,
        deterministic: false,
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

// ---------------------------------------------------------------------------------------------
// Custom resources: the WasmTask CRD (k8s/crd.yaml) and others
// ---------------------------------------------------------------------------------------------

fn wasm_task_resource() -> ApiResource {
    let gvk = GroupVersionKind::gvk("wasm-exec.io", "v1alpha1", "WasmTask");
    ApiResource::from_gvk_with_plural(&gvk, "wasmtasks")
}

fn wasm_tasks(client: &Client) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), NS, &wasm_task_resource())
}

fn wasm_task(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "wasm-exec.io/v1alpha1", "kind": "WasmTask",
        "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap()
}

/// The stand-in with the WasmTask CRD installed at start.
fn cluster_with_crd() -> FakeCluster {
    let dir = support::coordinator_bin().parent().unwrap().to_path_buf();
    FakeCluster::start(ClusterOptions {
        images: vec![
            (FETCHER_IMAGE.into(), dir.join("fetcher")),
            (RUNNER_IMAGE.into(), dir.join("runner")),
        ],
        crds: vec![FakeCluster::wasm_task_crd()],
        ..ClusterOptions::default()
    })
}

/// The `metav1.Status` of a failed call.
#[track_caller]
fn api_error<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> kube::core::Status {
    match r {
        Err(kube::Error::Api(s)) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// (code, reason, message, the causes' fields).
fn refusal(s: &kube::core::Status) -> (u16, &str, &str, Vec<&str>) {
    let causes = s
        .details
        .as_ref()
        .map(|d| d.causes.as_slice())
        .unwrap_or_default();
    let fields = causes.iter().map(|c| c.field.as_str()).collect();
    (s.code, s.reason.as_str(), s.message.as_str(), fields)
}

fn names(list: &[DynamicObject]) -> Vec<String> {
    list.iter()
        .map(|o| o.metadata.name.clone().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crd_installed_from_k8s_serves_wasm_tasks_with_lists_pages_and_watches() {
    let fc = cluster();
    let (client, _dir) = client(&fc).await;
    let tasks = wasm_tasks(&client);
    let before = api_error(tasks.list(&ListParams::default()).await);
    assert_eq!(
        (before.code, before.reason.as_str()),
        (404, "NotFound"),
        "no CRD yet"
    );

    fc.install_crd(&support::repo_root().join("k8s/crd.yaml"));
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = crds.get("wasmtasks.wasm-exec.io").await.unwrap();
    let conditions = crd.status.unwrap().conditions.unwrap();
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True"),
        "{conditions:?}"
    );
    let list = tasks.list(&ListParams::default()).await.unwrap();
    assert!(list.items.is_empty());
    let rv = list.metadata.resource_version.unwrap();
    let events = tasks
        .watch(&WatchParams::default().timeout(20), &rv)
        .await
        .unwrap();

    let spec = json!({"wasmCid": "QmFib", "inputCid": "QmInput", "entry": "fib"});
    let created = tasks
        .create(&PostParams::default(), &wasm_task("fib-12", spec.clone()))
        .await
        .unwrap();
    let meta = &created.metadata;
    assert!(
        meta.uid.is_some() && meta.resource_version.is_some() && meta.creation_timestamp.is_some()
    );
    assert_eq!(
        (meta.generation, meta.namespace.as_deref()),
        (Some(1), Some(NS))
    );
    assert_eq!(created.data["spec"], spec);
    assert_eq!(tasks.get("fib-12").await.unwrap().data["spec"], spec);
    let again = api_error(
        tasks
            .create(&PostParams::default(), &wasm_task("fib-12", spec.clone()))
            .await,
    );
    assert_eq!(
        refusal(&again),
        (
            409,
            "AlreadyExists",
            "wasmtasks.wasm-exec.io \"fib-12\" already exists",
            vec![]
        )
    );
    let mut generated = wasm_task("", spec.clone());
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("gen-".into());
    let generated = tasks
        .create(&PostParams::default(), &generated)
        .await
        .unwrap();
    let generated = generated.metadata.name.unwrap();
    assert!(
        generated.starts_with("gen-") && generated.len() == 9,
        "{generated}"
    );
    tasks
        .patch_status(
            "fib-12",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running"}})),
        )
        .await
        .unwrap();

    let mut events = std::pin::pin!(events);
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let event = tokio::time::timeout(Duration::from_secs(20), events.try_next()).await;
        let (kind, obj) = match event.expect("no watch event").unwrap().unwrap() {
            WatchEvent::Added(o) => ("ADDED", o),
            WatchEvent::Modified(o) => ("MODIFIED", o),
            other => panic!("unexpected {other:?}"),
        };
        seen.push((
            kind,
            obj.metadata.name.unwrap(),
            obj.data["status"]["phase"].clone(),
        ));
    }
    assert_eq!(
        seen,
        [
            ("ADDED", "fib-12".to_string(), Value::Null),
            ("ADDED", generated.clone(), Value::Null),
            ("MODIFIED", "fib-12".to_string(), json!("Running")),
        ]
    );

    // Five more, labelled, read back whole by label and two at a time.
    let labelled: Vec<String> = (0..5).map(|i| format!("page-{i}")).collect();
    for name in &labelled {
        let mut t = wasm_task(name, spec.clone());
        t.metadata.labels = Some([("set".to_string(), "paged".to_string())].into());
        tasks.create(&PostParams::default(), &t).await.unwrap();
    }
    let by_label = ListParams::default().labels("set=paged");
    assert_eq!(names(&tasks.list(&by_label).await.unwrap().items), labelled);
    let (mut pages, mut read, mut token) = (0, Vec::new(), None::<String>);
    loop {
        let mut lp = ListParams::default().limit(2);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = tasks.list(&lp).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 2);
        read.extend(names(&page.items));
        if pages == 1 {
            assert_eq!(
                page.metadata.remaining_item_count,
                Some(5),
                "7 objects in all"
            );
        }
        token = page.metadata.continue_.filter(|c| !c.is_empty());
        if token.is_none() {
            break;
        }
    }
    let mut all = vec!["fib-12".to_string(), generated];
    all.extend(labelled);
    all.sort();
    assert_eq!(
        (pages, read),
        (4, all),
        "seven objects, two a page, in name order"
    );

    let posts = fc
        .requests()
        .into_iter()
        .filter(|(m, p)| {
            m == "POST" && p.starts_with("/apis/wasm-exec.io/v1alpha1/namespaces/tasks/wasmtasks")
        })
        .count();
    assert_eq!(posts, 8, "every request is logged, refused ones too");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_wasm_task_schema_refuses_malformed_tasks_with_422_naming_the_field() {
    let fc = cluster_with_crd();
    let (client, _dir) = client(&fc).await;
    let tasks = wasm_tasks(&client);
    let refused = |spec: Value| {
        let tasks = tasks.clone();
        async move {
            api_error(
                tasks
                    .create(&PostParams::default(), &wasm_task("bad", spec))
                    .await,
            )
        }
    };

    let s = refused(json!({"wasmCid": "x y"})).await;
    assert_eq!(
        refusal(&s),
        (
            422,
            "Invalid",
            r#"WasmTask.wasm-exec.io "bad" is invalid: spec.wasmCid: Invalid value: "x y": spec.wasmCid in body should match '^[A-Za-z0-9]+$'"#,
            vec!["spec.wasmCid"]
        )
    );
    let s = refused(json!({"entry": "fib"})).await;
    assert_eq!(
        refusal(&s),
        (
            422,
            "Invalid",
            r#"WasmTask.wasm-exec.io "bad" is invalid: spec: Invalid value: "object": a task needs wasmCid (only a task recorded as refused, with invalid, has none)"#,
            vec!["spec"]
        )
    );
    let s = refused(json!({"wasmCid": "QmOk", "entry": "e".repeat(257)})).await;
    assert_eq!(
        refusal(&s),
        (
            422,
            "Invalid",
            r#"WasmTask.wasm-exec.io "bad" is invalid: spec.entry: Too long: may not be more than 256 bytes"#,
            vec!["spec.entry"]
        )
    );
    let s = refused(json!({"wasmCid": "", "inputCid": 7})).await;
    assert_eq!(
        refusal(&s).3,
        ["spec.inputCid", "spec.wasmCid", "spec.wasmCid"],
        "each failed check is a cause: {}",
        s.message
    );
    assert!(
        s.message.contains("is invalid: ["),
        "several errors are listed: {}",
        s.message
    );
    assert!(fc
        .custom_objects("wasm-exec.io/v1alpha1", "wasmtasks", NS)
        .is_empty());

    // Unknown fields are pruned (the default fieldValidation, Warn).
    let mut t = wasm_task(
        "ok",
        json!({"wasmCid": "QmOk", "entry": "fib", "retries": 3}),
    );
    t.data["extra"] = json!(true);
    let created = tasks.create(&PostParams::default(), &t).await.unwrap();
    assert_eq!(
        created.data["spec"],
        json!({"wasmCid": "QmOk", "entry": "fib"})
    );
    assert!(created.data.get("extra").is_none(), "{:?}", created.data);

    let s = api_error(
        tasks
            .patch_status(
                "ok",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": "Done", "attempts": -1}})),
            )
            .await,
    );
    assert_eq!(
        (s.code, s.message.as_str()),
        (
            422,
            r#"WasmTask.wasm-exec.io "ok" is invalid: [status.attempts: Invalid value: -1: status.attempts in body should be greater than or equal to 0, status.phase: Unsupported value: "Done": supported values: "Queued", "Admitting", "Running", "Succeeded", "Failed"]"#
        )
    );

    // The spec is immutable (`self == oldSelf`); metadata is not.
    let mut changed = tasks.get("ok").await.unwrap();
    changed.data["spec"]["entry"] = json!("other");
    let s = api_error(tasks.replace("ok", &PostParams::default(), &changed).await);
    assert_eq!(
        refusal(&s),
        (
            422,
            "Invalid",
            r#"WasmTask.wasm-exec.io "ok" is invalid: spec: Invalid value: "object": a WasmTask's spec cannot change; create another task"#,
            vec!["spec"]
        )
    );
    let relabelled = tasks
        .patch(
            "ok",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(relabelled.metadata.generation, Some(1));
    assert_eq!(relabelled.data["spec"]["entry"], "fib");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_status_subresource_owns_status_and_a_stale_resource_version_conflicts() {
    let fc = cluster_with_crd();
    let (client, _dir) = client(&fc).await;
    let tasks = wasm_tasks(&client);
    let mut t = wasm_task("t", json!({"wasmCid": "QmOk"}));
    t.data["status"] = json!({"phase": "Succeeded"});
    let created = tasks.create(&PostParams::default(), &t).await.unwrap();
    assert!(
        created.data.get("status").is_none(),
        "a create sets no status"
    );
    let running = tasks
        .patch_status(
            "t",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running", "attempts": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(
        running.data["status"],
        json!({"phase": "Running", "attempts": 1})
    );

    // A write of the object keeps the stored status.
    let mut main = running.clone();
    main.data["status"]["phase"] = json!("Failed");
    main.metadata.labels = Some([("k".to_string(), "v".to_string())].into());
    let stored = tasks
        .replace("t", &PostParams::default(), &main)
        .await
        .unwrap();
    assert_eq!(stored.data["status"]["phase"], "Running");
    assert_eq!(stored.metadata.labels, main.metadata.labels);
    assert_ne!(
        stored.metadata.resource_version,
        running.metadata.resource_version
    );

    // A write of /status changes the status only.
    let mut status = stored.clone();
    status.data["status"] = json!({"phase": "Succeeded", "attempts": 1, "result": "[144]"});
    status.data["spec"]["wasmCid"] = json!("QmElse");
    status.metadata.labels = None;
    let done = tasks
        .replace_status("t", &PostParams::default(), &status)
        .await
        .unwrap();
    assert_eq!(done.data["status"]["phase"], "Succeeded");
    assert_eq!(done.data["spec"]["wasmCid"], "QmOk");
    assert_eq!(done.metadata.labels, main.metadata.labels);
    assert_eq!(
        tasks.get_status("t").await.unwrap().data["status"]["result"],
        "[144]"
    );
    assert_eq!(done.metadata.generation, Some(1), "no spec change");

    // Writes naming an older resourceVersion conflict, on both.
    let stale = "Operation cannot be fulfilled on wasmtasks.wasm-exec.io \"t\": the object has been modified; please apply your changes to the latest version and try again";
    let s = api_error(tasks.replace("t", &PostParams::default(), &stored).await);
    assert_eq!(refusal(&s), (409, "Conflict", stale, vec![]));
    let s = api_error(
        tasks
            .replace_status("t", &PostParams::default(), &stored)
            .await,
    );
    assert_eq!(refusal(&s), (409, "Conflict", stale, vec![]));
    assert_eq!(
        tasks.get("t").await.unwrap().data["status"]["phase"],
        "Succeeded"
    );
}

/// A CRD unlike WasmTask's: cluster-scoped, two versions, no status subresource.
#[tokio::test(flavor = "multi_thread")]
async fn any_crd_is_served_generically_and_deleting_it_deletes_its_objects() {
    let fc = cluster();
    let (client, _dir) = client(&fc).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let schema = json!({"openAPIV3Schema": {"type": "object", "properties": {"spec": {
        "type": "object", "properties": {"size": {"type": "integer", "minimum": 1, "maximum": 10}},
    }}}});
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Cluster",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
                 "versions": [{"name": "v1", "served": true, "storage": true, "schema": schema},
                              {"name": "v1beta1", "served": true, "storage": false, "schema": schema}]},
    });
    crds.create(
        &PostParams::default(),
        &serde_json::from_value(crd).unwrap(),
    )
    .await
    .unwrap();
    let gvk = |v: &str| GroupVersionKind::gvk("example.com", v, "Widget");
    let (resource, caps) = kube::discovery::pinned_kind(&client, &gvk("v1"))
        .await
        .unwrap();
    assert_eq!(resource.plural, "widgets");
    assert_eq!(caps.scope, kube::discovery::Scope::Cluster);
    let widgets = |v: &str| -> Api<DynamicObject> {
        Api::all_with(
            client.clone(),
            &ApiResource::from_gvk_with_plural(&gvk(v), "widgets"),
        )
    };
    let (v1, beta) = (widgets("v1"), widgets("v1beta1"));

    let widget = serde_json::from_value(json!({
        "apiVersion": "example.com/v1beta1", "kind": "Widget",
        "metadata": {"name": "w"}, "spec": {"size": 3},
    }))
    .unwrap();
    let created = beta.create(&PostParams::default(), &widget).await.unwrap();
    assert_eq!(created.types.unwrap().api_version, "example.com/v1beta1");
    assert!(created.metadata.namespace.is_none());
    let got = v1.get("w").await.unwrap();
    assert_eq!(got.types.unwrap().api_version, "example.com/v1");
    assert_eq!(got.metadata.uid, created.metadata.uid);

    let resized = v1
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 4}})),
        )
        .await
        .unwrap();
    assert_eq!(resized.metadata.generation, Some(2));
    let labelled = v1
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        labelled.metadata.generation,
        Some(2),
        "metadata is no spec change"
    );
    // A JSON patch (RFC 6902), sent raw: kube's needs the json-patch crate.
    let mut req = kube::core::Request::new("/apis/example.com/v1/widgets")
        .patch("w", &PatchParams::default(), &Patch::Merge(json!({})))
        .unwrap();
    *req.body_mut() = serde_json::to_vec(&json!([
        {"op": "test", "path": "/spec/size", "value": 4},
        {"op": "replace", "path": "/spec/size", "value": 11},
    ]))
    .unwrap();
    req.headers_mut().insert(
        "content-type",
        "application/json-patch+json".parse().unwrap(),
    );
    let s = api_error(client.request::<Value>(req).await);
    assert_eq!(
        refusal(&s),
        (
            422,
            "Invalid",
            r#"Widget.example.com "w" is invalid: spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10"#,
            vec!["spec.size"]
        )
    );

    crds.delete("widgets.example.com", &DeleteParams::default())
        .await
        .unwrap();
    assert!(fc
        .custom_objects("example.com/v1", "widgets", "")
        .is_empty());
    let s = api_error(v1.get("w").await);
    assert_eq!((s.code, s.reason.as_str()), (404, "NotFound"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_request_gets_the_printer_columns() {
    let fc = cluster_with_crd();
    let (client, _dir) = client(&fc).await;
    let tasks = wasm_tasks(&client);
    tasks
        .create(
            &PostParams::default(),
            &wasm_task("fib-12", json!({"wasmCid": "QmFib"})),
        )
        .await
        .unwrap();
    tasks
        .patch_status(
            "fib-12",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"phase": "Succeeded", "result": "[144]", "attempts": 1}}),
            ),
        )
        .await
        .unwrap();
    let table = |path: &str| {
        let mut req = kube::core::Request::new(path)
            .list(&ListParams::default())
            .unwrap();
        // What `kubectl get` asks for.
        req.headers_mut().insert(
            "accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
                .parse()
                .unwrap(),
        );
        client.request::<Value>(req)
    };
    let t = table("/apis/wasm-exec.io/v1alpha1/namespaces/tasks/wasmtasks")
        .await
        .unwrap();
    assert_eq!(
        (&t["kind"], &t["apiVersion"]),
        (&json!("Table"), &json!("meta.k8s.io/v1"))
    );
    let columns: Vec<(&str, &str, i64)> = t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap(),
                c["type"].as_str().unwrap(),
                c["priority"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        columns,
        [
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Result", "string", 0),
            ("Attempts", "integer", 0),
            ("Age", "date", 0),
            ("Job", "string", 1),
            ("Error", "string", 1),
        ]
    );
    let row = &t["rows"][0];
    assert_eq!(
        row["cells"].as_array().unwrap()[..4],
        [
            json!("fib-12"),
            json!("Succeeded"),
            json!("[144]"),
            json!(1)
        ]
    );
    let age = row["cells"][4].as_str().unwrap();
    assert!(
        age.ends_with('s') && age[..age.len() - 1].parse::<u32>().is_ok(),
        "{age}"
    );
    assert_eq!(
        (&row["cells"][5], &row["cells"][6]),
        (&Value::Null, &Value::Null)
    );
    assert_eq!(row["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(row["object"]["metadata"]["name"], "fib-12");
    let t = table("/apis/batch/v1/namespaces/tasks/jobs").await.unwrap();
    assert_eq!(
        t["columnDefinitions"][1]["name"], "Age",
        "built-in resources: Name and Age"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_wasm_task_deletes_the_job_it_owns_and_its_pods() {
    let fc = cluster_with_crd();
    let (client, _dir) = client(&fc).await;
    let tasks = wasm_tasks(&client);
    let mirror = support::Mirror::new();
    let owner = tasks
        .create(
            &PostParams::default(),
            &wasm_task("nap", json!({"wasmCid": "QmNap"})),
        )
        .await
        .unwrap();
    let owned_by = |uid: &str| {
        let mut job = napping_job(&template(), &mirror, "nap");
        job.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "wasm-exec.io/v1alpha1".into(),
            kind: "WasmTask".into(),
            name: "nap".into(),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: None,
        }]);
        job
    };
    let uid = owner.metadata.uid.unwrap();
    let name = fc.create_job(NS, &owned_by(&uid)).metadata.name.unwrap();
    fc.wait_until("the runner runs", LONG, |fc| fc.running_processes() == 1);

    tasks.delete("nap", &DeleteParams::default()).await.unwrap();
    assert!(
        job_named(&fc, &name).is_none(),
        "the Job goes with its owner at once"
    );
    fc.wait_until(
        "the pods are gone and no process runs",
        Duration::from_secs(10),
        |fc| pods_of(fc, &name).is_empty() && fc.running_processes() == 0,
    );

    // A Job created for an owner already gone (a race with the delete) is collected.
    let late = fc.create_job(NS, &owned_by(&uid)).metadata.name.unwrap();
    fc.wait_until(
        "the orphan Job is collected",
        Duration::from_secs(10),
        |fc| job_named(fc, &late).is_none() && fc.pods(NS).is_empty(),
    );
}

/// The real `kubectl`, against the stand-in only (its kubeconfig names 127.0.0.1), with its
/// caches in `dir`. Fails loudly when kubectl is missing: this test never skips.
fn kubectl(
    kubeconfig: &std::path::Path,
    dir: &std::path::Path,
    args: &[&str],
) -> (bool, String, String) {
    let out = std::process::Command::new("kubectl")
        .env_remove("KUBECONFIG")
        .env("HOME", dir)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("kubectl is needed for this test and cannot run: {e}"));
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_applies_a_wasm_task_and_gets_it_with_its_printer_columns() {
    let fc = cluster_with_crd();
    let (client, dir) = client(&fc).await;
    let kubeconfig = dir.path().join("kubeconfig");
    assert!(fc.url().starts_with("http://127.0.0.1:"));
    let yaml = |name: &str, cid: &str, extra: &str| {
        let path = dir.path().join(format!("{name}.yaml"));
        let text = format!(
            "apiVersion: wasm-exec.io/v1alpha1\nkind: WasmTask\nmetadata:\n  name: {name}\n{extra}spec:\n  wasmCid: {cid}\n  entry: fib\n"
        );
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let kubectl = |args: &[&str]| kubectl(&kubeconfig, dir.path(), args);

    // kubectl's default validation (server-side, fieldValidation=Strict) and none.
    let (ok, out, err) = kubectl(&["apply", "-f", &yaml("fib-12", "QmFib", "")]);
    assert!(
        ok && out.contains("wasmtask.wasm-exec.io/fib-12 created"),
        "{out}{err}"
    );
    let (ok, out, err) = kubectl(&[
        "apply",
        "--validate=false",
        "-f",
        &yaml("fib-13", "QmFib", ""),
    ]);
    assert!(ok && out.contains("fib-13 created"), "{out}{err}");
    let (ok, out, err) = kubectl(&[
        "apply",
        "-f",
        &yaml("fib-12", "QmFib", "  labels: {tier: a}\n"),
    ]);
    assert!(ok && out.contains("fib-12 configured"), "{out}{err}");
    let (ok, _, err) = kubectl(&["apply", "-f", &yaml("bad", "not a cid", "")]);
    assert!(
        !ok && err.contains("spec.wasmCid: Invalid value: \"not a cid\""),
        "{err}"
    );
    let (ok, _, err) = kubectl(&["apply", "-f", &yaml("fib-12", "QmOther", "")]);
    assert!(
        !ok && err.contains("a WasmTask's spec cannot change"),
        "{err}"
    );

    let applied = wasm_tasks(&client).get("fib-12").await.unwrap();
    let labels = applied.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("tier").map(String::as_str), Some("a"));
    let annotations = applied.metadata.annotations.unwrap_or_default();
    assert!(
        annotations.contains_key("kubectl.kubernetes.io/last-applied-configuration"),
        "{annotations:?}"
    );
    wasm_tasks(&client)
        .patch_status(
            "fib-12",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"phase": "Succeeded", "result": "[144]", "attempts": 1}}),
            ),
        )
        .await
        .unwrap();

    let (ok, out, err) = kubectl(&["get", "wt"]);
    assert!(ok, "{err}");
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        ["NAME", "STATUS", "RESULT", "ATTEMPTS", "AGE"],
        "{out}"
    );
    assert_eq!(
        lines[1][..4],
        ["fib-12", "Succeeded", "[144]", "1"],
        "{out}"
    );
    assert_eq!(lines[2][0], "fib-13", "{out}");
    let (ok, out, err) = kubectl(&["get", "wasmtasks.wasm-exec.io", "fib-12", "-o", "wide"]);
    assert!(
        ok && out.lines().next().unwrap_or("").ends_with("JOB   ERROR"),
        "{out}{err}"
    );
    let (ok, out, err) = kubectl(&["delete", "wt", "fib-13"]);
    assert!(ok && out.contains("\"fib-13\" deleted"), "{out}{err}");

    let served: Vec<String> = fc
        .requests()
        .into_iter()
        .map(|(m, p)| format!("{m} {p}"))
        .collect();
    for expected in [
        "GET /apis?",
        "GET /apis/wasm-exec.io/v1alpha1?",
        "GET /openapi/v3?",
    ] {
        assert!(
            served.iter().any(|r| r.starts_with(expected)),
            "{expected}: {served:#?}"
        );
    }
}
