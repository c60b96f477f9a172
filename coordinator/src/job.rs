//! A task's Kubernetes Job, built from the template (`k8s/job.yaml`). Pure: template and
//! task in, Job out.
//!
//! The template's own settings (resources, security context, node selectors, tolerations,
//! podFailurePolicy, TTL) are kept; only what is per task is filled in: the Job's name,
//! labels and annotation, the two images, the containers' env, and activeDeadlineSeconds.
//! Three settings the design depends on are enforced whatever the template says:
//! `restartPolicy: Never` (required by podFailurePolicy), no service-account token and no
//! service links. Nothing travels in a ConfigMap or Secret: the fetcher init container
//! pulls module and input by CID.
//!
//! [`task_of`] reads a Job back into its task, for adoption after a restart.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec};
use sha2::{Digest, Sha256};

use crate::task::Task;

pub const FETCHER_CONTAINER: &str = "fetcher";
pub const RUNNER_CONTAINER: &str = "runner";
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_TASK_ID: &str = "wasm-exec.io/task-id";
pub const ANNOTATION_TASK_ID: &str = "wasm-exec.io/task-id";
pub const APP_NAME: &str = "wasm-exec-task";
pub const MANAGER: &str = "wasm-exec-coordinator";
/// Kubernetes' limit for a Job name (it becomes a label value on its pods).
pub const MAX_NAME_LEN: usize = 63;
/// Time a pod gets beyond the task timeout for scheduling, pulling and fetching.
pub const DEADLINE_SLACK: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    #[error("the Job template {path}: {reason}")]
    Template { path: String, reason: String },
}

/// What every Job of a run shares.
#[derive(Debug, Clone)]
pub struct JobSettings {
    pub namespace: String,
    pub executor_image: String,
    pub fetcher_image: String,
    /// `IPFS_GATEWAY` as the pods see it (an in-cluster gateway URL).
    pub gateway: String,
    pub task_timeout: Duration,
    pub fuel: u64,
}

/// Parses and checks the template: a Job whose pod has a `runner` container. A missing
/// `fetcher` init container is added (with the runner's security context).
pub fn parse_template(path: &str, yaml: &str) -> Result<Job, JobError> {
    let bad = |reason: String| JobError::Template {
        path: path.to_owned(),
        reason,
    };
    let job: Job =
        serde_yaml_ng::from_str(yaml).map_err(|e| bad(format!("not a Job manifest: {e}")))?;
    let pod = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .ok_or_else(|| bad("it has no spec.template.spec".into()))?;
    if !pod.containers.iter().any(|c| c.name == RUNNER_CONTAINER) {
        let names: Vec<&str> = pod.containers.iter().map(|c| c.name.as_str()).collect();
        return Err(bad(format!(
            "it has no container named `{RUNNER_CONTAINER}` (containers: {})",
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        )));
    }
    for c in pod
        .containers
        .iter()
        .chain(pod.init_containers.iter().flatten())
    {
        if c.command.is_some() {
            return Err(bad(format!(
                "container `{}` sets `command`; start through the image's entrypoint and set `args` instead",
                c.name
            )));
        }
    }
    Ok(job)
}

/// A DNS-1123 label from the task id, at most 63 characters. When the id had to be
/// cleaned or cut, a hash of the raw id is appended, so two ids never share a name.
pub fn job_name(task_id: &str) -> String {
    const PREFIX: &str = "wasm-exec-";
    let cleaned: String = task_id
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = cleaned.trim_matches('-');
    let candidate = format!("{PREFIX}{trimmed}");
    if trimmed == task_id && candidate.len() <= MAX_NAME_LEN {
        return candidate;
    }
    let hash = &fetcher::cid::hex(&Sha256::digest(task_id.as_bytes()))[..10];
    let room = MAX_NAME_LEN - PREFIX.len() - 1 - hash.len();
    let head: String = trimmed.chars().take(room).collect();
    let head = head.trim_end_matches('-');
    if head.is_empty() {
        format!("{PREFIX}{hash}")
    } else {
        format!("{PREFIX}{head}-{hash}")
    }
}

/// A label value for the task id: the same cleaning, without the prefix.
pub fn task_label(task_id: &str) -> String {
    job_name(task_id)
        .trim_start_matches("wasm-exec-")
        .to_owned()
}

/// The Job for `task`: the template with the per-task parts filled in.
pub fn build_job(template: &Job, task: &Task, s: &JobSettings) -> Job {
    let mut job = template.clone();
    let meta = &mut job.metadata;
    meta.name = Some(job_name(&task.task_id));
    meta.namespace = Some(s.namespace.clone());
    meta.generate_name = None;
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(LABEL_NAME.into(), APP_NAME.into());
    labels.insert(LABEL_MANAGED_BY.into(), MANAGER.into());
    labels.insert(LABEL_TASK_ID.into(), task_label(&task.task_id));
    let pod_labels = labels.clone();
    meta.annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(ANNOTATION_TASK_ID.into(), task.task_id.clone());

    let spec = job.spec.get_or_insert_with(Default::default);
    let deadline = s.task_timeout + DEADLINE_SLACK;
    spec.active_deadline_seconds = Some(i64::try_from(deadline.as_secs()).unwrap_or(i64::MAX));
    spec.template
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(BTreeMap::new)
        .extend(pod_labels);
    let pod = spec.template.spec.get_or_insert_with(PodSpec::default);
    pod.restart_policy = Some("Never".into());
    pod.automount_service_account_token = Some(false);
    pod.enable_service_links = Some(false);

    let fetcher_env = [
        ("IPFS_GATEWAY", Some(s.gateway.clone())),
        ("WASM_CID", Some(task.wasm_cid.clone())),
        ("INPUT_CID", task.input_cid.clone()),
        ("FETCH_DIR", Some("/mnt/input".into())),
    ];
    let inits = pod.init_containers.get_or_insert_with(Vec::new);
    if !inits.iter().any(|c| c.name == FETCHER_CONTAINER) {
        inits.insert(
            0,
            Container {
                name: FETCHER_CONTAINER.into(),
                ..Container::default()
            },
        );
    }
    for c in inits.iter_mut().filter(|c| c.name == FETCHER_CONTAINER) {
        c.image = Some(s.fetcher_image.clone());
        set_env(c, &fetcher_env);
    }
    let runner_env = [
        ("TASK_ID", Some(task.task_id.clone())),
        ("ENTRY", task.entry.clone()),
        (
            "INPUT_PATH",
            Some(if task.input_cid.is_some() {
                "/mnt/input/input.json".into()
            } else {
                String::new()
            }),
        ),
        (
            "TIMEOUT_SEC",
            Some(s.task_timeout.as_secs_f64().to_string()),
        ),
        ("FUEL", Some(s.fuel.to_string())),
    ];
    for c in pod
        .containers
        .iter_mut()
        .filter(|c| c.name == RUNNER_CONTAINER)
    {
        c.image = Some(s.executor_image.clone());
        set_env(c, &runner_env);
    }
    job
}

/// The selector of the Jobs this coordinator manages.
pub fn managed_selector() -> String {
    format!("{LABEL_NAME}={APP_NAME},{LABEL_MANAGED_BY}={MANAGER}")
}

/// The task a Job of ours runs, read back from its annotation and its containers' env (the
/// inverse of [`build_job`]), for adopting the Job after a restart.
pub fn task_of(job: &Job) -> Result<Task, String> {
    let name = job.metadata.name.as_deref().unwrap_or("?");
    let task_id = job
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_TASK_ID))
        .ok_or_else(|| format!("Job {name} has no {ANNOTATION_TASK_ID} annotation"))?
        .clone();
    let pod = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .ok_or_else(|| format!("Job {name} has no pod spec"))?;
    let env = |containers: Option<&Vec<Container>>, container: &str, var: &str| {
        containers?
            .iter()
            .find(|c| c.name == container)?
            .env
            .as_ref()?
            .iter()
            .find(|e| e.name == var)?
            .value
            .clone()
    };
    let wasm_cid =
        env(pod.init_containers.as_ref(), FETCHER_CONTAINER, "WASM_CID").ok_or_else(|| {
            format!("Job {name}: the {FETCHER_CONTAINER} init container has no WASM_CID")
        })?;
    Ok(Task {
        task_id,
        wasm_cid,
        input_cid: env(pod.init_containers.as_ref(), FETCHER_CONTAINER, "INPUT_CID"),
        entry: env(Some(&pod.containers), RUNNER_CONTAINER, "ENTRY"),
    })
}

/// Sets (or, for `None`, removes) env vars, keeping the template's others in order.
fn set_env(c: &mut Container, vars: &[(&str, Option<String>)]) {
    let env = c.env.get_or_insert_with(Vec::new);
    for (name, value) in vars {
        env.retain(|e| e.name != *name);
        if let Some(v) = value {
            env.push(EnvVar {
                name: (*name).into(),
                value: Some(v.clone()),
                value_from: None,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> Job {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../k8s/job.yaml");
        let yaml = std::fs::read_to_string(path).unwrap();
        parse_template(path, &yaml).unwrap()
    }

    fn settings() -> JobSettings {
        JobSettings {
            namespace: "tasks".into(),
            executor_image: "reg/runner:1".into(),
            fetcher_image: "reg/fetcher:1".into(),
            gateway: "http://ipfs:8080/ipfs".into(),
            task_timeout: Duration::from_secs(60),
            fuel: 5,
        }
    }

    fn task(id: &str) -> Task {
        Task {
            task_id: id.into(),
            wasm_cid: "QmW".into(),
            input_cid: Some("QmI".into()),
            entry: Some("fib".into()),
        }
    }

    fn env_of(c: &Container) -> BTreeMap<String, String> {
        c.env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
            .collect()
    }

    #[test]
    fn names_are_dns_labels_and_never_collide() {
        assert_eq!(job_name("fib"), "wasm-exec-fib");
        let cleaned = job_name("Task_1/α");
        assert!(cleaned.starts_with("wasm-exec-task-1-"), "{cleaned}");
        assert_ne!(job_name("a_b"), job_name("a.b"));
        assert_ne!(job_name("a-b"), job_name("a_b"));
        let long = "x".repeat(200);
        for id in [long.as_str(), "___", "-", "UPPER", "ok-but-", "é"] {
            let n = job_name(id);
            assert!(n.len() <= MAX_NAME_LEN, "{id}: {n}");
            assert!(
                n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{n}"
            );
            assert!(!n.ends_with('-') && !n.starts_with('-'), "{n}");
        }
        assert_ne!(job_name(&"x".repeat(200)), job_name(&"x".repeat(201)));
    }

    #[test]
    fn the_job_keeps_the_template_and_fills_in_the_task() {
        let job = build_job(&template(), &task("Fib 1"), &settings());
        let meta = &job.metadata;
        assert_eq!(meta.namespace.as_deref(), Some("tasks"));
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels[LABEL_MANAGED_BY], MANAGER);
        assert_eq!(
            meta.annotations.as_ref().unwrap()[ANNOTATION_TASK_ID],
            "Fib 1"
        );
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(spec.active_deadline_seconds, Some(180));
        assert_eq!(spec.backoff_limit, Some(2), "from the template");
        let rules = &spec.pod_failure_policy.as_ref().unwrap().rules;
        assert_eq!(rules[0].on_exit_codes.as_ref().unwrap().values, vec![2]);
        let pod = spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert_eq!(pod.enable_service_links, Some(false));
        let fetcher = &pod.init_containers.as_ref().unwrap()[0];
        assert_eq!(fetcher.image.as_deref(), Some("reg/fetcher:1"));
        let fe = env_of(fetcher);
        assert_eq!(
            (fe["WASM_CID"].as_str(), fe["INPUT_CID"].as_str()),
            ("QmW", "QmI")
        );
        assert_eq!(fe["FETCH_DIR"], "/mnt/input");
        let runner = &pod.containers[0];
        assert_eq!(runner.image.as_deref(), Some("reg/runner:1"));
        assert!(runner.command.is_none());
        let re = env_of(runner);
        assert_eq!(re["ENTRY"], "fib");
        assert_eq!(re["TASK_ID"], "Fib 1");
        assert_eq!(
            re["WASM_PATH"], "/mnt/input/module.wasm",
            "template env kept"
        );
        let limits = runner.resources.as_ref().unwrap().limits.as_ref().unwrap();
        assert_eq!(limits["cpu"].0, "500m");
        assert_eq!(limits["memory"].0, "512Mi");
        let sc = runner.security_context.as_ref().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        let pod_labels = spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap();
        assert_eq!(pod_labels[LABEL_TASK_ID], task_label("Fib 1"));
    }

    #[test]
    fn a_job_reads_back_into_its_task() {
        for t in [
            task("Fib 1"),
            Task {
                input_cid: None,
                entry: None,
                ..task("x")
            },
        ] {
            let job = build_job(&template(), &t, &settings());
            assert_eq!(task_of(&job), Ok(t));
        }
        let mut job = build_job(&template(), &task("y"), &settings());
        job.metadata.annotations = None;
        assert!(task_of(&job).unwrap_err().contains(ANNOTATION_TASK_ID));
    }

    #[test]
    fn a_task_without_input_or_entry_sets_neither() {
        let mut t = task("x");
        t.input_cid = None;
        t.entry = None;
        let job = build_job(&template(), &t, &settings());
        let pod = job.spec.unwrap().template.spec.unwrap();
        assert!(!env_of(&pod.init_containers.unwrap()[0]).contains_key("INPUT_CID"));
        let re = env_of(&pod.containers[0]);
        assert!(!re.contains_key("ENTRY"));
        assert_eq!(re["INPUT_PATH"], "");
    }

    #[test]
    fn templates_that_cannot_serve_are_refused_clearly() {
        let err = parse_template("t.yaml", "kind: [").unwrap_err().to_string();
        assert!(err.contains("t.yaml") && err.contains("not a Job"), "{err}");
        let no_runner = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      containers:\n        - name: main\n          image: x\n";
        let err = parse_template("t.yaml", no_runner).unwrap_err().to_string();
        assert!(
            err.contains("no container named `runner`") && err.contains("main"),
            "{err}"
        );
        let with_command = no_runner.replace("name: main", "name: runner\n          command: [sh]");
        let err = parse_template("t.yaml", &with_command)
            .unwrap_err()
            .to_string();
        assert!(err.contains("command"), "{err}");
    }
}
