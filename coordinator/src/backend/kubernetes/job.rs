//! A task's Kubernetes Job, built from the template (`k8s/job.yaml`). Pure: template and
//! task in, Job out.
//!
//! The template's own settings (resources, security context, node selectors, tolerations,
//! podFailurePolicy, TTL, env of its own) are kept; only what is per task is filled in: the
//! Job's name, labels and annotation, the two images, the containers' env (the pod
//! contract, [`pod::FetcherEnv`] and [`pod::RunnerEnv`]), and activeDeadlineSeconds.
//! Three settings the design depends on are enforced whatever the template says:
//! `restartPolicy: Never` (required by podFailurePolicy), no service-account token and no
//! service links. Nothing travels in a ConfigMap or Secret: the fetcher init container
//! pulls module and input by CID.
//!
//! What the template must provide, [`parse_template`] checks at startup: a `fetcher` init
//! container and a `runner` container that mount the same volume at
//! [`pod::path::INPUT_DIR`], a volume for the runner's result at [`pod::path::SHARED_DIR`],
//! and no `command`.
//!
//! Kubernetes expands `$(VAR)` in env values, so every `$` of a value the builder writes is
//! doubled (`$$` is Kubernetes' escape for a literal `$`): the programs see a task's id,
//! CIDs and entry byte for byte. [`task_of`] reads a Job back into its task, for adoption
//! after a restart, undoing the escape.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    Container, EnvVar, NodeSelectorRequirement, PodSpec, VolumeMount,
};
use sha2::{Digest, Sha256};

use crate::task::{RunLimits, Task, TaskLimits};

pub const FETCHER_CONTAINER: &str = "fetcher";
pub const RUNNER_CONTAINER: &str = "runner";
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_TASK_ID: &str = "wasm-exec.io/task-id";
pub const ANNOTATION_TASK_ID: &str = "wasm-exec.io/task-id";
/// The limits the task asked for (JSON, [`TaskLimits`]), when it asked for any.
pub const ANNOTATION_LIMITS: &str = "wasm-exec.io/limits";
pub const APP_NAME: &str = "wasm-exec-task";
pub const MANAGER: &str = "wasm-exec-coordinator";
/// Every Job name of ours starts with this.
pub const NAME_PREFIX: &str = "wasm-exec-";
/// Kubernetes' limit for a Job name (it becomes a label value on its pods), and for a label
/// value.
pub const MAX_NAME_LEN: usize = 63;
/// Time a pod gets beyond the task timeout for scheduling, pulling and fetching.
pub const DEADLINE_SLACK: Duration = Duration::from_secs(120);

/// Room for the task's part of a name, after [`NAME_PREFIX`].
const PART_LEN: usize = MAX_NAME_LEN - NAME_PREFIX.len();
/// Separates a hashed part's head from its hash; a verbatim id never contains it.
const HASH_MARK: &str = "--";
/// Hex digits of the raw id's SHA-256 in a hashed part: 64 bits.
const HASH_DIGITS: usize = 16;
/// The head of a hashed part when the id keeps no character a name may hold.
const EMPTY_HEAD: &str = "task";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    #[error("the Job template {path}: {reason}")]
    Template { path: String, reason: String },
    #[error("Job {name} is not a task's Job: {missing}")]
    NotATaskJob { name: String, missing: String },
}

/// What every Job of a run shares.
#[derive(Debug, Clone)]
pub struct JobSettings {
    pub namespace: String,
    pub executor_image: String,
    pub fetcher_image: String,
    /// `IPFS_GATEWAY` as the pods see it (an in-cluster gateway URL).
    pub gateway: String,
    /// The configured maxima; a task's own limits can lower them.
    pub limits: RunLimits,
    /// Kueue's queue and priority class for every Job ([`super::kueue`]).
    pub queueing: super::kueue::Queueing,
}

/// Parses and checks the template: a Job whose pod has a `fetcher` init container and a
/// `runner` container mounting the same volume at [`pod::path::INPUT_DIR`] (where the one
/// writes the module and input and the other reads them), neither setting `command`.
/// Refused at startup, naming what is missing: a Job built from such a template could only
/// fail.
pub fn parse_template(path: &str, yaml: &str) -> Result<Job, JobError> {
    let bad = |reason: String| JobError::Template {
        path: path.to_owned(),
        reason,
    };
    let job: Job =
        serde_yaml_ng::from_str(yaml).map_err(|e| bad(format!("not a Job manifest: {e}")))?;
    let pod_spec = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .ok_or_else(|| bad("it has no spec.template.spec".into()))?;
    let names = |cs: &[Container]| {
        if cs.is_empty() {
            "none".to_owned()
        } else {
            cs.iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let inits = pod_spec.init_containers.as_deref().unwrap_or_default();
    let Some(runner) = pod_spec
        .containers
        .iter()
        .find(|c| c.name == RUNNER_CONTAINER)
    else {
        return Err(bad(format!(
            "it has no container named `{RUNNER_CONTAINER}` (containers: {})",
            names(&pod_spec.containers)
        )));
    };
    let input_dir = pod::path::INPUT_DIR;
    let Some(fetcher) = inits.iter().find(|c| c.name == FETCHER_CONTAINER) else {
        return Err(bad(format!(
            "it has no init container named `{FETCHER_CONTAINER}` (init containers: {}): add \
             one that mounts an emptyDir volume at {input_dir}, where it writes the module \
             and the input for `{RUNNER_CONTAINER}`, as k8s/job.yaml does",
            names(inits)
        )));
    };
    let Some(input) = mount_at(fetcher, input_dir) else {
        return Err(bad(format!(
            "init container `{FETCHER_CONTAINER}` mounts no volume at {input_dir}, where it \
             writes the module and the input: add a volumeMount of an emptyDir volume there, \
             and the same in container `{RUNNER_CONTAINER}`"
        )));
    };
    let declared = pod_spec
        .volumes
        .iter()
        .flatten()
        .any(|v| v.name == input.name);
    if !declared {
        return Err(bad(format!(
            "volume `{}`, mounted at {input_dir} by init container `{FETCHER_CONTAINER}`, is \
             not in spec.template.spec.volumes: add it (an emptyDir)",
            input.name
        )));
    }
    match mount_at(runner, input_dir) {
        Some(m) if same_dir(m, input) => {}
        Some(m) => {
            return Err(bad(format!(
                "container `{RUNNER_CONTAINER}` mounts {} at {input_dir}, but init container \
                 `{FETCHER_CONTAINER}` writes the module to {} there: mount that one",
                describe(m),
                describe(input)
            )))
        }
        None => {
            return Err(bad(format!(
                "container `{RUNNER_CONTAINER}` mounts no volume at {input_dir}, where it \
                 reads the module: mount {} there (readOnly), as init container \
                 `{FETCHER_CONTAINER}` does",
                describe(input)
            )))
        }
    }
    let shared_dir = pod::path::SHARED_DIR;
    if mount_at(runner, shared_dir).is_none() {
        return Err(bad(format!(
            "container `{RUNNER_CONTAINER}` mounts no volume at {shared_dir}, where it writes \
             its result file ({}): add a volumeMount of an emptyDir volume there, as \
             k8s/job.yaml does",
            pod::path::RESULT
        )));
    }
    for c in pod_spec.containers.iter().chain(inits) {
        if c.command.is_some() {
            return Err(bad(format!(
                "container `{}` sets `command`; start through the image's entrypoint and set `args` instead",
                c.name
            )));
        }
    }
    Ok(job)
}

/// The container's mount at `dir` (a trailing `/` names the same dir).
fn mount_at<'c>(c: &'c Container, dir: &str) -> Option<&'c VolumeMount> {
    c.volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path.trim_end_matches('/') == dir)
}

/// Whether two mounts show the same directory: the same volume, at the same sub-path.
fn same_dir(a: &VolumeMount, b: &VolumeMount) -> bool {
    let sub = |m: &VolumeMount| {
        (
            m.sub_path.clone().unwrap_or_default(),
            m.sub_path_expr.clone().unwrap_or_default(),
        )
    };
    a.name == b.name && sub(a) == sub(b)
}

/// "volume `input`", with its sub-path if it has one.
fn describe(m: &VolumeMount) -> String {
    let sub = m
        .sub_path
        .as_deref()
        .or(m.sub_path_expr.as_deref())
        .filter(|s| !s.is_empty());
    match sub {
        Some(s) => format!("volume `{}` (subPath `{s}`)", m.name),
        None => format!("volume `{}`", m.name),
    }
}

/// The Job's name: [`NAME_PREFIX`] and the task's part (see [`task_label`]), a DNS-1123
/// label of at most 63 characters.
pub fn job_name(task_id: &str) -> String {
    format!("{NAME_PREFIX}{}", task_label(task_id))
}

/// The label on a re-execution check's Job (`"true"`): such a Job is no task of its own,
/// and is not adopted as one.
pub const LABEL_CHECK: &str = "wasm-exec.io/check";

/// The name of the Job of a task's re-execution check: the Job name of an id no task can
/// have (task ids hold no control characters), so it never meets a task's.
pub fn check_job_name(task_id: &str) -> String {
    job_name(&format!("{task_id}\ncheck"))
}

/// `task`'s Job as a re-execution check: its own name and the [`LABEL_CHECK`] label, and
/// kept off `avoid_node` (the node of the first run's pod) by a required node affinity.
pub fn as_check(mut job: Job, task_id: &str, avoid_node: Option<&str>) -> Job {
    job.metadata.name = Some(check_job_name(task_id));
    job.metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(LABEL_CHECK.into(), "true".into());
    if let Some(node) = avoid_node {
        let pod_spec = job
            .spec
            .get_or_insert_with(Default::default)
            .template
            .spec
            .get_or_insert_with(PodSpec::default);
        let affinity = pod_spec.affinity.get_or_insert_with(Default::default);
        let required = affinity
            .node_affinity
            .get_or_insert_with(Default::default)
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(Default::default);
        let off_node = NodeSelectorRequirement {
            key: "metadata.name".into(),
            operator: "NotIn".into(),
            values: Some(vec![node.to_owned()]),
        };
        if required.node_selector_terms.is_empty() {
            required.node_selector_terms.push(Default::default());
        }
        // Terms are ORed: the requirement goes into each, so every way to schedule the
        // pod keeps it off the node.
        for term in &mut required.node_selector_terms {
            term.match_fields
                .get_or_insert_with(Vec::new)
                .push(off_node.clone());
        }
    }
    job
}

/// The task's part of its Job's name, also its `wasm-exec.io/task-id` label value: a
/// DNS-1123 label (so a valid label value) of at most 53 characters. Distinct ids get
/// distinct parts by construction, up to a 64-bit hash collision:
///
/// - an id that is a DNS-1123 label of at most 53 characters without `--` is used
///   verbatim: distinct ids, distinct parts;
/// - any other id becomes `<head>--<hash>`: the id lowercased, each character other than
///   `a-z0-9` turned into `-`, runs of `-` collapsed, trimmed, cut to 35 characters
///   (`task` when nothing is left), then `--` and the first 16 hex digits (64 bits) of the
///   raw id's SHA-256. A hashed part contains `--` and a verbatim one never does, so the
///   two kinds cannot meet; two hashed parts are equal only if the raw ids' hashes are,
///   which for distinct ids is a 64-bit collision.
///
/// The head keeps the name readable; the hash alone tells ids apart.
pub fn task_label(task_id: &str) -> String {
    if is_verbatim(task_id) {
        return task_id.to_owned();
    }
    let hash = fetcher::cid::hex(&Sha256::digest(task_id.as_bytes()));
    let hash = hash.get(..HASH_DIGITS).unwrap_or(&hash);
    let head = cleaned_head(task_id, PART_LEN - HASH_MARK.len() - HASH_DIGITS);
    let head = if head.is_empty() { EMPTY_HEAD } else { &head };
    format!("{head}{HASH_MARK}{hash}")
}

/// Whether the id can be a name's part as it is: a DNS-1123 label that fits, and that
/// cannot be mistaken for a hashed part.
fn is_verbatim(id: &str) -> bool {
    let dns_label = id
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && id.ends_with(|c: char| c.is_ascii_alphanumeric());
    dns_label && id.len() <= PART_LEN && !id.contains(HASH_MARK)
}

/// The id's readable head: lowercase `a-z0-9` with single `-` between runs, at most `room`
/// characters, no `-` at either end.
fn cleaned_head(id: &str, room: usize) -> String {
    let mut head = String::with_capacity(room.min(id.len()));
    for c in id.chars() {
        if head.len() == room {
            break;
        }
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            head.push(c);
        } else if !head.is_empty() && !head.ends_with('-') {
            head.push('-');
        }
    }
    head.truncate(head.trim_end_matches('-').len());
    head
}

/// `$` doubled: Kubernetes turns `$$` back into `$` and expands no `$(VAR)` in the result.
fn escape(value: &str) -> String {
    value.replace('$', "$$")
}

/// The inverse of [`escape`], and what Kubernetes makes of an escaped value.
fn unescape(value: &str) -> String {
    value.replace("$$", "$")
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
    // Annotations are not expanded: the raw id.
    let annotations = meta.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(ANNOTATION_TASK_ID.into(), task.task_id.clone());
    // What the task asked for (the env has what it got), for reading the task back.
    if !task.limits.is_none() {
        annotations.insert(
            ANNOTATION_LIMITS.into(),
            serde_json::to_string(&task.limits).unwrap_or_default(),
        );
    }
    let limits = s.limits.for_task(task.limits);

    let spec = job.spec.get_or_insert_with(Default::default);
    let deadline = limits.timeout + DEADLINE_SLACK;
    spec.active_deadline_seconds = Some(i64::try_from(deadline.as_secs()).unwrap_or(i64::MAX));
    spec.template
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(BTreeMap::new)
        .extend(pod_labels);
    let pod_spec = spec.template.spec.get_or_insert_with(PodSpec::default);
    pod_spec.restart_policy = Some("Never".into());
    pod_spec.automount_service_account_token = Some(false);
    pod_spec.enable_service_links = Some(false);

    let input_dir = Path::new(pod::path::INPUT_DIR);
    let fetcher_env = pod::FetcherEnv {
        gateway: &s.gateway,
        wasm_cid: &task.wasm_cid,
        input_cid: task.input_cid.as_deref(),
        fetch_dir: input_dir,
    }
    .vars();
    let runner_env = pod::RunnerEnv {
        task_id: &task.task_id,
        entry: task.entry.as_deref(),
        input_dir,
        has_input: task.input_cid.is_some(),
        output: Path::new(pod::path::RESULT),
        timeout_sec: limits.timeout.as_secs_f64(),
        fuel: limits.fuel,
        deterministic: task.deterministic,
    }
    .vars();
    // parse_template made sure both containers are there.
    for c in pod_spec
        .init_containers
        .iter_mut()
        .flatten()
        .filter(|c| c.name == FETCHER_CONTAINER)
    {
        c.image = Some(s.fetcher_image.clone());
        set_env(c, &fetcher_env);
    }
    for c in pod_spec
        .containers
        .iter_mut()
        .filter(|c| c.name == RUNNER_CONTAINER)
    {
        c.image = Some(s.executor_image.clone());
        set_env(c, &runner_env);
    }
    if let Some(queue) = &s.queueing.queue_name {
        super::kueue::queue_job(&mut job, queue, s.queueing.priority_class.as_deref());
    }
    job
}

/// The selector of the Jobs this coordinator manages.
pub fn managed_selector() -> String {
    format!("{LABEL_NAME}={APP_NAME},{LABEL_MANAGED_BY}={MANAGER}")
}

/// The task a Job of ours runs, read back from its annotation (the raw id: annotations are
/// not expanded) and its containers' env, unescaped (the inverse of [`build_job`]), for
/// adopting the Job after a restart.
pub fn task_of(job: &Job) -> Result<Task, JobError> {
    let name = job.metadata.name.as_deref().unwrap_or("?");
    let missing = |what: String| JobError::NotATaskJob {
        name: name.to_owned(),
        missing: what,
    };
    let annotations = job.metadata.annotations.as_ref();
    let task_id = annotations
        .and_then(|a| a.get(ANNOTATION_TASK_ID))
        .ok_or_else(|| missing(format!("it has no {ANNOTATION_TASK_ID} annotation")))?
        .clone();
    let limits = match annotations.and_then(|a| a.get(ANNOTATION_LIMITS)) {
        None => TaskLimits::default(),
        Some(text) => serde_json::from_str(text).map_err(|e| {
            missing(format!(
                "its {ANNOTATION_LIMITS} annotation is not valid: {e}"
            ))
        })?,
    };
    let pod_spec = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .ok_or_else(|| missing("it has no pod spec".into()))?;
    let env = |containers: Option<&Vec<Container>>, container: &str, var: &str| {
        let value = containers?
            .iter()
            .find(|c| c.name == container)?
            .env
            .as_ref()?
            .iter()
            .find(|e| e.name == var)?
            .value
            .as_deref()?;
        Some(unescape(value))
    };
    let inits = pod_spec.init_containers.as_ref();
    let wasm_cid = env(inits, FETCHER_CONTAINER, pod::env::WASM_CID).ok_or_else(|| {
        missing(format!(
            "the {FETCHER_CONTAINER} init container has no {}",
            pod::env::WASM_CID
        ))
    })?;
    Ok(Task {
        task_id,
        wasm_cid,
        input_cid: env(inits, FETCHER_CONTAINER, pod::env::INPUT_CID),
        entry: env(
            Some(&pod_spec.containers),
            RUNNER_CONTAINER,
            pod::env::ENTRY,
        ),
        limits,
        invalid: None,
        deterministic: env(
            Some(&pod_spec.containers),
            RUNNER_CONTAINER,
            pod::env::DETERMINISTIC,
        )
        .is_some_and(|v| v == "true"),
    })
}

/// Sets (or, for `None`, removes) env vars, keeping the template's others, in order, ahead
/// of them. Values are escaped: a task's `$(VAR)` must reach the program as written.
fn set_env(c: &mut Container, vars: &[(&str, Option<String>)]) {
    let env = c.env.get_or_insert_with(Vec::new);
    for (name, value) in vars {
        env.retain(|e| e.name != *name);
        if let Some(v) = value {
            env.push(EnvVar {
                name: (*name).into(),
                value: Some(escape(v)),
                value_from: None,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Volume;
    use proptest::prelude::*;

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
            limits: RunLimits {
                timeout: Duration::from_secs(60),
                fuel: 5,
            },
            queueing: Default::default(),
        }
    }

    #[test]
    fn a_check_job_has_its_own_name_and_label_and_keeps_off_the_first_node_in_every_term() {
        let job = build_job(&template(), &task("fib"), &settings());
        let first = job.metadata.name.clone().unwrap();
        let check = as_check(job.clone(), "fib", Some("node-7"));
        let name = check.metadata.name.clone().unwrap();
        assert_ne!(name, first);
        assert!(
            name.starts_with(NAME_PREFIX) && name.len() <= MAX_NAME_LEN,
            "{name}"
        );
        assert_eq!(name, check_job_name("fib"));
        assert_eq!(check.metadata.labels.as_ref().unwrap()[LABEL_CHECK], "true");
        // The task reads back the same: adoption after a restart finds the same task.
        assert_eq!(task_of(&check), task_of(&job));
        let terms = |j: &Job| {
            j.spec
                .as_ref()
                .unwrap()
                .template
                .spec
                .as_ref()
                .unwrap()
                .affinity
                .as_ref()
                .and_then(|a| a.node_affinity.as_ref())
                .and_then(|n| {
                    n.required_during_scheduling_ignored_during_execution
                        .as_ref()
                })
                .map(|r| r.node_selector_terms.clone())
                .unwrap_or_default()
        };
        let t = terms(&check);
        assert_eq!(t.len(), 1);
        let f = &t[0].match_fields.as_ref().unwrap()[0];
        assert_eq!(
            (f.key.as_str(), f.operator.as_str()),
            ("metadata.name", "NotIn")
        );
        assert_eq!(f.values.as_deref(), Some(&["node-7".to_string()][..]));
        // A template with node terms of its own (ORed): each keeps off the node.
        let mut own = job.clone();
        let required = own
            .spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .affinity
            .get_or_insert_with(Default::default)
            .node_affinity
            .get_or_insert_with(Default::default)
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(Default::default);
        required.node_selector_terms = vec![Default::default(), Default::default()];
        let t = terms(&as_check(own, "fib", Some("node-7")));
        assert_eq!(t.len(), 2);
        assert!(t
            .iter()
            .all(|t| t.match_fields.as_ref().is_some_and(|f| f.len() == 1)));
        // No node known (the first pod's was not read): no affinity added.
        assert!(terms(&as_check(job, "fib", None)).is_empty());
    }

    fn task(id: &str) -> Task {
        Task {
            task_id: id.into(),
            wasm_cid: "QmW".into(),
            input_cid: Some("QmI".into()),
            entry: Some("fib".into()),
            limits: Default::default(),
            invalid: None,
            deterministic: false,
        }
    }

    fn env_of(c: &Container) -> BTreeMap<String, String> {
        c.env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
            .collect()
    }

    fn containers(job: &Job) -> (&Container, &Container) {
        let pod_spec = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let inits = pod_spec.init_containers.as_ref().unwrap();
        let fetcher = inits.iter().find(|c| c.name == FETCHER_CONTAINER);
        let runner = pod_spec
            .containers
            .iter()
            .find(|c| c.name == RUNNER_CONTAINER);
        (fetcher.unwrap(), runner.unwrap())
    }

    /// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters: written out here, not
    /// taken from the code under test.
    fn is_dns_label(s: &str) -> bool {
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
        (1..=63).contains(&s.len())
            && s.chars().all(allowed)
            && s.starts_with(alnum)
            && s.ends_with(alnum)
    }

    /// A non-empty label value: `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, at most 63.
    fn is_label_value(s: &str) -> bool {
        let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
        let alnum = |c: char| c.is_ascii_alphanumeric();
        (1..=63).contains(&s.len())
            && s.chars().all(allowed)
            && s.starts_with(alnum)
            && s.ends_with(alnum)
    }

    fn check_name_and_label(id: &str) -> Result<(), TestCaseError> {
        let (name, label) = (job_name(id), task_label(id));
        prop_assert!(is_dns_label(&name), "{id:?}: name {name:?}");
        prop_assert!(name.starts_with(NAME_PREFIX), "{id:?}: name {name:?}");
        prop_assert!(is_label_value(&label), "{id:?}: label {label:?}");
        Ok(())
    }

    #[test]
    fn names_are_dns_labels_and_keep_the_ids_readable_head() {
        assert_eq!(job_name("fib"), "wasm-exec-fib");
        assert_eq!(task_label("fib"), "fib");
        let cleaned = job_name("Task_1/α");
        assert!(cleaned.starts_with("wasm-exec-task-1--"), "{cleaned}");
        assert_eq!(cleaned.len(), "wasm-exec-task-1--".len() + HASH_DIGITS);
        let long = job_name("Fib_1/a task id that is far too long to be a Kubernetes name");
        assert!(
            long.starts_with("wasm-exec-fib-1-a-task-id-that-is-far-too-lon--"),
            "{long}"
        );
        assert_eq!(long.len(), MAX_NAME_LEN);
        for id in ["", "___", "-", "é", "$(HOSTNAME)"] {
            let n = job_name(id);
            assert!(n.starts_with("wasm-exec-"), "{id}: {n}");
            assert!(is_dns_label(&n), "{id}: {n}");
        }
        assert!(job_name("___").starts_with("wasm-exec-task--"));
        // The longest verbatim id: a 63-character name.
        let longest = "x".repeat(MAX_NAME_LEN - NAME_PREFIX.len());
        assert_eq!(job_name(&longest), format!("{NAME_PREFIX}{longest}"));
        assert_ne!(
            job_name(&format!("{longest}x")),
            format!("{NAME_PREFIX}{longest}")
        );
    }

    #[test]
    fn an_id_shaped_like_a_hashed_name_does_not_take_that_name() {
        // The hardening issue's pair: `t1-1f93603db5` was the old name part of `T1`.
        assert_ne!(job_name("T1"), job_name("t1-1f93603db5"));
        assert_ne!(task_label("T1"), task_label("t1-1f93603db5"));
        // Today's form: the hashed part of `T1`, given as an id, is hashed in its turn.
        let hashed = task_label("T1");
        assert!(hashed.starts_with("t1--"), "{hashed}");
        assert_ne!(task_label(&hashed), hashed);
        assert_ne!(job_name(&hashed), job_name("T1"));
        // The old code trimmed every leading `wasm-exec-` off a name to make the label.
        assert_ne!(task_label("wasm-exec-foo"), task_label("foo"));
    }

    /// Ids shaped to collide: names and labels of others, prefixes, hashed shapes.
    fn any_id() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9][a-z0-9-]{0,60}",
            "[a-z0-9-]{0,40}--[0-9a-f]{16}",
            "[0-9a-f]{16}",
            "(wasm-exec-){0,2}[a-zA-Z0-9]{0,4}(--)?[0-9a-f]{0,16}",
            "[A-Za-z0-9_. /$()-]{0,80}",
            "\\PC{0,70}",
        ]
    }

    /// A character that cleaning turns into `-` (or drops, at the ends).
    fn cleaned_away() -> impl Strategy<Value = char> {
        prop::sample::select(vec![
            '-',
            '_',
            '.',
            ' ',
            '/',
            '$',
            '(',
            'é',
            'Ω',
            '字',
            '\u{1F600}',
        ])
    }

    /// An id built from `a`, as an adversary would: its name, its label, with and without
    /// the prefix, another case, its cleaned forms, one more character, separators swapped.
    fn derived(a: &str, how: u8, c: char) -> String {
        let swap_case = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c.is_ascii_lowercase() {
                        c.to_ascii_uppercase()
                    } else {
                        c.to_ascii_lowercase()
                    }
                })
                .collect()
        };
        let dashes = |s: &str| -> String {
            s.to_ascii_lowercase()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect()
        };
        match how % 13 {
            0 => job_name(a),
            1 => task_label(a),
            2 => format!("{NAME_PREFIX}{a}"),
            3 => a.strip_prefix(NAME_PREFIX).unwrap_or(a).to_owned(),
            4 => a.to_uppercase(),
            5 => a.to_lowercase(),
            6 => swap_case(a),
            7 => dashes(a),
            8 => cleaned_head(a, usize::MAX),
            9 => dashes(a).trim_matches('-').to_owned(),
            10 => format!("{a}{c}"),
            11 => format!("{c}{a}"),
            _ => a
                .chars()
                .map(|x| if x.is_ascii_alphanumeric() { x } else { c })
                .collect(),
        }
    }

    fn id_pair() -> impl Strategy<Value = (String, String)> {
        let built = (
            any_id(),
            any::<u8>(),
            any::<u8>(),
            cleaned_away(),
            any::<bool>(),
        )
            .prop_map(|(a, h1, h2, c, twice)| {
                let b = derived(&a, h1, c);
                let b = if twice { derived(&b, h2, c) } else { b };
                (a, b)
            });
        // Long ids differing only past the cut.
        let long = ("[a-zA-Z0-9_.-]{45,70}", "\\PC{0,4}", "\\PC{0,4}")
            .prop_map(|(p, x, y)| (format!("{p}{x}"), format!("{p}{y}")));
        // Ids differing only in characters that cleaning maps to `-`.
        let separators =
            prop::collection::vec(("[a-zA-Z0-9]{0,4}", cleaned_away(), cleaned_away()), 1..8)
                .prop_map(|parts| {
                    let a = parts.iter().map(|(s, x, _)| format!("{s}{x}")).collect();
                    let b = parts.iter().map(|(s, _, y)| format!("{s}{y}")).collect();
                    (a, b)
                });
        prop_oneof![built, long, separators, (any_id(), any_id())]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn distinct_ids_never_share_a_name_or_a_label((a, b) in id_pair()) {
            check_name_and_label(&a)?;
            check_name_and_label(&b)?;
            if a != b {
                prop_assert_ne!(job_name(&a), job_name(&b), "ids {:?} and {:?}", a, b);
                prop_assert_ne!(task_label(&a), task_label(&b), "ids {:?} and {:?}", a, b);
            }
        }
    }

    #[test]
    fn a_tasks_limits_lower_the_jobs_and_read_back() {
        // settings(): 60 s, fuel 5. Asking more gets the maximum; asking less gets that.
        for (asked, deadline, timeout, fuel) in [
            (TaskLimits::default(), 180, "60", "5"),
            (
                TaskLimits {
                    timeout_seconds: Some(10),
                    fuel: Some(3),
                },
                130,
                "10",
                "3",
            ),
            (
                TaskLimits {
                    timeout_seconds: Some(3600),
                    fuel: Some(1_000),
                },
                180,
                "60",
                "5",
            ),
        ] {
            let t = Task {
                limits: asked,
                ..task("limited")
            };
            let job = build_job(&template(), &t, &settings());
            let spec = job.spec.as_ref().unwrap();
            assert_eq!(spec.active_deadline_seconds, Some(deadline), "{asked:?}");
            let env = env_of(containers(&job).1);
            assert_eq!(env[pod::env::TIMEOUT_SEC], timeout, "{asked:?}");
            assert_eq!(env[pod::env::FUEL], fuel, "{asked:?}");
            let annotations = job.metadata.annotations.as_ref().unwrap();
            assert_eq!(
                annotations.contains_key(ANNOTATION_LIMITS),
                !asked.is_none()
            );
            assert_eq!(
                task_of(&job),
                Ok(t),
                "the task reads back with what it asked"
            );
        }
        let mut job = build_job(&template(), &task("x"), &settings());
        job.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(ANNOTATION_LIMITS.into(), "{fuel".into());
        let err = task_of(&job).unwrap_err().to_string();
        assert!(err.contains(ANNOTATION_LIMITS), "{err}");
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
        let pod_spec = spec.template.spec.as_ref().unwrap();
        assert_eq!(pod_spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod_spec.automount_service_account_token, Some(false));
        assert_eq!(pod_spec.enable_service_links, Some(false));
        let (fetcher, runner) = containers(&job);
        assert_eq!(fetcher.image.as_deref(), Some("reg/fetcher:1"));
        let fe = env_of(fetcher);
        assert_eq!(
            (
                fe[pod::env::WASM_CID].as_str(),
                fe[pod::env::INPUT_CID].as_str()
            ),
            ("QmW", "QmI")
        );
        assert_eq!(fe[pod::env::IPFS_GATEWAY], "http://ipfs:8080/ipfs");
        assert_eq!(fe[pod::env::FETCH_DIR], pod::path::INPUT_DIR);
        assert_eq!(runner.image.as_deref(), Some("reg/runner:1"));
        assert!(runner.command.is_none());
        let re = env_of(runner);
        assert_eq!(re[pod::env::ENTRY], "fib");
        assert_eq!(re[pod::env::TASK_ID], "Fib 1");
        assert_eq!(re[pod::env::WASM_PATH], pod::path::MODULE);
        assert_eq!(re[pod::env::INPUT_PATH], pod::path::INPUT);
        assert_eq!(re[pod::env::OUTPUT_PATH], pod::path::RESULT);
        assert_eq!(re[pod::env::TIMEOUT_SEC], "60");
        assert_eq!(re[pod::env::FUEL], "5");
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

    /// Kueue counts the pod's effective requests: the init container's count too, so both
    /// carry them in the template.
    #[test]
    fn with_a_queue_the_job_is_labelled_and_suspended_and_without_one_it_is_as_before() {
        let plain = build_job(&template(), &task("t"), &settings());
        let labels = plain.metadata.labels.as_ref().unwrap();
        assert!(
            !labels.keys().any(|k| k.starts_with("kueue.x-k8s.io/")),
            "{labels:?}"
        );
        assert_eq!(plain.spec.as_ref().unwrap().suspend, None);
        let (fetcher, runner) = containers(&plain);
        for c in [fetcher, runner] {
            let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref());
            let requests = requests.unwrap_or_else(|| panic!("{} has no requests", c.name));
            assert!(
                requests.contains_key("cpu") && requests.contains_key("memory"),
                "{}",
                c.name
            );
        }

        let mut s = settings();
        s.queueing.queue_name = Some("wasm-exec".into());
        s.queueing.priority_class = Some("batch-low".into());
        let queued = build_job(&template(), &task("t"), &s);
        let labels = queued.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[super::super::kueue::LABEL_QUEUE], "wasm-exec");
        assert_eq!(labels[super::super::kueue::LABEL_PRIORITY], "batch-low");
        assert_eq!(queued.spec.as_ref().unwrap().suspend, Some(true));
    }

    #[test]
    fn the_templates_own_env_comes_first_and_is_not_escaped() {
        let mut template = template();
        let runner = &mut template
            .spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .containers[0];
        let own = |name: &str, value: &str| EnvVar {
            name: name.into(),
            value: Some(value.into()),
            value_from: None,
        };
        runner.env = Some(vec![
            own("RUST_LOG", "$(LEVEL)"),
            own("TASK_ID", "overridden"),
        ]);
        let job = build_job(&template, &task("$x"), &settings());
        let env = containers(&job).1.env.clone().unwrap();
        assert_eq!(
            env[0],
            own("RUST_LOG", "$(LEVEL)"),
            "the template's, as written"
        );
        let ids: Vec<&EnvVar> = env.iter().filter(|e| e.name == pod::env::TASK_ID).collect();
        assert_eq!(
            ids,
            [&own("TASK_ID", "$$x")],
            "the task's, escaped, and only once"
        );
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
        assert!(task_of(&job)
            .unwrap_err()
            .to_string()
            .contains(ANNOTATION_TASK_ID));
    }

    /// Text rich in what Kubernetes would expand or unescape, and in non-ASCII.
    fn dollar_text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("$".to_owned()),
            Just("$$".to_owned()),
            Just("$(".to_owned()),
            Just("$$(".to_owned()),
            Just(")".to_owned()),
            Just("$(HOSTNAME)".to_owned()),
            Just("$(WASM_CID)".to_owned()),
            Just("$(TASK_ID)".to_owned()),
            Just("$()".to_owned()),
            "\\PC{0,3}",
        ];
        prop::collection::vec(piece, 0..10).prop_map(|v| v.concat())
    }

    /// Whether Kubernetes sees only `$$` escapes in `value`: every run of `$` is even, so
    /// its left-to-right reading pairs them all and no `$(` starts a reference.
    fn only_escapes(value: &str) -> bool {
        value.split(|c| c != '$').all(|run| run.len() % 2 == 0)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn every_task_reads_back_exactly_and_kubernetes_expands_none_of_it(
            id in dollar_text(),
            wasm in dollar_text(),
            input in prop::option::of(dollar_text()),
            entry in prop::option::of(dollar_text()),
            deterministic in any::<bool>(),
        ) {
            let t = Task { task_id: id, wasm_cid: wasm, input_cid: input, entry, limits: TaskLimits::default(), invalid: None, deterministic };
            let job = build_job(&template(), &t, &settings());
            prop_assert_eq!(task_of(&job), Ok(t.clone()));
            let (fetcher, runner) = containers(&job);
            for e in fetcher.env.iter().chain(runner.env.iter()).flatten() {
                let value = e.value.as_deref().unwrap_or_default();
                prop_assert!(only_escapes(value), "{}={:?}", e.name, value);
            }
            let re = env_of(runner);
            prop_assert_eq!(unescape(&re[pod::env::TASK_ID]), t.task_id);
        }
    }

    #[test]
    fn escaping_doubles_every_dollar_and_nothing_else() {
        assert_eq!(escape("a$(B)$$c$"), "a$$(B)$$$$c$$");
        assert_eq!(unescape("a$$(B)$$$$c$$"), "a$(B)$$c$");
        assert_eq!(escape("é字"), "é字");
    }

    #[test]
    fn a_task_without_input_or_entry_sets_neither() {
        let mut t = task("x");
        t.input_cid = None;
        t.entry = None;
        let job = build_job(&template(), &t, &settings());
        let (fetcher, runner) = containers(&job);
        assert!(!env_of(fetcher).contains_key(pod::env::INPUT_CID));
        let re = env_of(runner);
        assert!(!re.contains_key(pod::env::ENTRY));
        assert_eq!(re[pod::env::INPUT_PATH], "");
    }

    /// The refusal of the template `edit` makes of k8s/job.yaml.
    fn refusal(edit: impl FnOnce(&mut PodSpec)) -> String {
        let mut job = template();
        edit(job.spec.as_mut().unwrap().template.spec.as_mut().unwrap());
        let yaml = serde_yaml_ng::to_string(&job).unwrap();
        parse_template("t.yaml", &yaml).unwrap_err().to_string()
    }

    fn runner_of(p: &mut PodSpec) -> &mut Container {
        p.containers
            .iter_mut()
            .find(|c| c.name == RUNNER_CONTAINER)
            .unwrap()
    }

    fn fetcher_of(p: &mut PodSpec) -> &mut Container {
        let inits = p.init_containers.as_mut().unwrap();
        inits
            .iter_mut()
            .find(|c| c.name == FETCHER_CONTAINER)
            .unwrap()
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
        let err = refusal(|p| runner_of(p).command = Some(vec!["sh".into()]));
        assert!(err.contains("container `runner` sets `command`"), "{err}");
    }

    #[test]
    fn a_template_without_a_result_volume_is_refused() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../k8s/job.yaml");
        let yaml = std::fs::read_to_string(path).unwrap();
        let cut = yaml.replace("mountPath: /mnt/shared", "mountPath: /mnt/elsewhere");
        assert_ne!(cut, yaml);
        let err = parse_template("t.yaml", &cut).unwrap_err().to_string();
        assert!(
            err.contains("/mnt/shared") && err.contains("runner"),
            "{err}"
        );
    }

    #[test]
    fn a_template_without_a_fetcher_is_refused_naming_what_to_add() {
        let err = refusal(|p| p.init_containers = None);
        for part in [
            "t.yaml",
            "no init container named `fetcher`",
            "(init containers: none)",
            "/mnt/input",
        ] {
            assert!(err.contains(part), "{part:?} in {err}");
        }
        let err = refusal(|p| fetcher_of(p).name = "fetch".into());
        assert!(err.contains("(init containers: fetch)"), "{err}");
    }

    #[test]
    fn a_template_whose_fetcher_and_runner_do_not_share_the_input_dir_is_refused() {
        let err = refusal(|p| fetcher_of(p).volume_mounts = None);
        assert!(
            err.contains("init container `fetcher` mounts no volume at /mnt/input"),
            "{err}"
        );
        let err = refusal(|p| p.volumes = None);
        assert!(
            err.contains("volume `input`") && err.contains("not in spec.template.spec.volumes"),
            "{err}"
        );
        let err = refusal(|p| {
            let mounts = runner_of(p).volume_mounts.as_mut().unwrap();
            mounts.retain(|m| m.mount_path != pod::path::INPUT_DIR);
        });
        assert!(
            err.contains("container `runner` mounts no volume at /mnt/input")
                && err.contains("volume `input`"),
            "{err}"
        );
        let err = refusal(|p| {
            let volumes = p.volumes.as_mut().unwrap();
            let other = Volume {
                name: "other".into(),
                ..volumes[0].clone()
            };
            volumes.push(other);
            let mounts = runner_of(p).volume_mounts.as_mut().unwrap();
            let input = mounts
                .iter_mut()
                .find(|m| m.mount_path == pod::path::INPUT_DIR);
            input.unwrap().name = "other".into();
        });
        assert!(
            err.contains("container `runner` mounts volume `other` at /mnt/input")
                && err.contains("writes the module to volume `input`"),
            "{err}"
        );
        let err = refusal(|p| {
            let mounts = runner_of(p).volume_mounts.as_mut().unwrap();
            let input = mounts
                .iter_mut()
                .find(|m| m.mount_path == pod::path::INPUT_DIR);
            input.unwrap().sub_path = Some("elsewhere".into());
        });
        assert!(
            err.contains("volume `input` (subPath `elsewhere`)"),
            "{err}"
        );

        // The same dir, written with a trailing slash, serves.
        let mut job = template();
        let p = job.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
        let mounts = runner_of(p).volume_mounts.as_mut().unwrap();
        mounts.iter_mut().for_each(|m| {
            if m.mount_path == pod::path::INPUT_DIR {
                m.mount_path.push('/');
            }
        });
        let yaml = serde_yaml_ng::to_string(&job).unwrap();
        assert!(parse_template("t.yaml", &yaml).is_ok());
    }
}
