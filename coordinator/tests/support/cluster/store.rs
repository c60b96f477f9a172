//! The API server's storage: every object as JSON under one global resourceVersion counter,
//! the full history of changes (what watches replay from any resourceVersion, so a watch is
//! never answered 410 Gone), server-side-apply ownership of Lease spec keys, container logs
//! and the request log. Pure data: no IO and no async; callers hold the lock.
//!
//! Simplified: no admission, no validation beyond names, no managedFields in metadata,
//! labelSelector equality terms only (set-based `in`/`notin` answer 400).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{json, Map, Value};

/// The resources the stand-in serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Res {
    Jobs,
    Pods,
    Leases,
    CoreEvents,
    Events,
}

impl Res {
    const ALL: [Res; 5] = [
        Res::Jobs,
        Res::Pods,
        Res::Leases,
        Res::CoreEvents,
        Res::Events,
    ];

    pub(crate) fn lookup(api_version: &str, plural: &str) -> Option<Res> {
        Res::ALL
            .into_iter()
            .find(|r| r.api_version() == api_version && r.plural() == plural)
    }

    pub(crate) fn api_version(self) -> &'static str {
        match self {
            Res::Jobs => "batch/v1",
            Res::Pods | Res::CoreEvents => "v1",
            Res::Leases => "coordination.k8s.io/v1",
            Res::Events => "events.k8s.io/v1",
        }
    }

    pub(crate) fn kind(self) -> &'static str {
        match self {
            Res::Jobs => "Job",
            Res::Pods => "Pod",
            Res::Leases => "Lease",
            Res::CoreEvents | Res::Events => "Event",
        }
    }

    pub(crate) fn plural(self) -> &'static str {
        match self {
            Res::Jobs => "jobs",
            Res::Pods => "pods",
            Res::Leases => "leases",
            Res::CoreEvents | Res::Events => "events",
        }
    }

    pub(crate) fn group(self) -> &'static str {
        self.api_version().rsplit_once('/').map_or("", |(g, _)| g)
    }

    /// As Kubernetes names it in messages: `jobs.batch`, `pods`.
    fn qualified(self) -> String {
        match self.group() {
            "" => self.plural().to_string(),
            g => format!("{}.{g}", self.plural()),
        }
    }
}

/// A failed call, answered as a `metav1.Status`.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    details: Value,
}

impl ApiError {
    fn about(code: u16, reason: &'static str, res: Res, name: &str, message: String) -> Self {
        let details = json!({"name": name, "group": res.group(), "kind": res.plural()});
        Self {
            code,
            reason,
            message,
            details,
        }
    }

    pub(crate) fn not_found(res: Res, name: &str) -> Self {
        let msg = format!("{} \"{name}\" not found", res.qualified());
        Self::about(404, "NotFound", res, name, msg)
    }

    fn already_exists(res: Res, name: &str) -> Self {
        let msg = format!("{} \"{name}\" already exists", res.qualified());
        Self::about(409, "AlreadyExists", res, name, msg)
    }

    pub(crate) fn conflict(res: Res, name: &str, why: &str) -> Self {
        let msg = format!(
            "Operation cannot be fulfilled on {} \"{name}\": {why}",
            res.qualified()
        );
        Self::about(409, "Conflict", res, name, msg)
    }

    pub(crate) fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: Value::Null,
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub(crate) fn status(&self) -> Value {
        let mut s = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code,
        });
        if !self.details.is_null() {
            s["details"] = self.details.clone();
        }
        s
    }
}

/// An equality-based label selector and a `metadata.name`/`metadata.namespace` field
/// selector, ANDed.
#[derive(Debug, Default, Clone)]
pub(crate) struct Selector {
    /// (key, operator, value); operators `=`, `!=`, `exists`, `!exists`.
    labels: Vec<(String, &'static str, String)>,
    /// (field, equal?, value).
    fields: Vec<(String, bool, String)>,
}

impl Selector {
    pub(crate) fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Self, ApiError> {
        let terms = |s: Option<&str>| -> Vec<String> {
            s.unwrap_or("")
                .split(',')
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect()
        };
        let mut sel = Selector::default();
        for t in terms(labels) {
            if t.contains(" in ") || t.contains(" notin ") || t.contains('(') {
                return Err(ApiError::bad_request(format!(
                    "the fake cluster supports equality-based label selectors only: {t}"
                )));
            }
            let term = if let Some((k, v)) = t.split_once("!=") {
                (k, "!=", v)
            } else if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
                (k, "=", v)
            } else if let Some(k) = t.strip_prefix('!') {
                (k, "!exists", "")
            } else {
                (t.as_str(), "exists", "")
            };
            sel.labels
                .push((term.0.trim().into(), term.1, term.2.trim().into()));
        }
        for t in terms(fields) {
            let (k, eq, v) = match t.split_once("!=") {
                Some((k, v)) => (k, false, v),
                None => match t.split_once("==").or_else(|| t.split_once('=')) {
                    Some((k, v)) => (k, true, v),
                    None => {
                        return Err(ApiError::bad_request(format!(
                            "invalid field selector: {t}"
                        )))
                    }
                },
            };
            if k != "metadata.name" && k != "metadata.namespace" {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {k}"
                )));
            }
            sel.fields.push((k.into(), eq, v.into()));
        }
        Ok(sel)
    }

    pub(crate) fn label(key: &str, value: &str) -> Self {
        Selector {
            labels: vec![(key.into(), "=", value.into())],
            fields: Vec::new(),
        }
    }

    pub(crate) fn matches(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        let labels_ok = self.labels.iter().all(|(k, op, v)| {
            let got = labels[k.as_str()].as_str();
            match *op {
                "=" => got == Some(v.as_str()),
                "!=" => got != Some(v.as_str()),
                "exists" => got.is_some(),
                _ => got.is_none(),
            }
        });
        let fields_ok = self.fields.iter().all(|(k, eq, v)| {
            let field = k.trim_start_matches("metadata.");
            (obj["metadata"][field].as_str() == Some(v.as_str())) == *eq
        });
        labels_ok && fields_ok
    }
}

/// RFC 7386 JSON merge patch: objects merge recursively, `null` deletes, anything else
/// (arrays included) replaces.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// How a PATCH treats the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchKind {
    /// `merge-patch+json` and `strategic-merge-patch+json` (both as RFC 7386; the types
    /// served here have no strategic list-merge keys that matter to the tests).
    Merge,
    /// `apply-patch+yaml` (server-side apply, the body being JSON), creating if missing.
    Apply { force: bool },
}

/// One stored change, as a watch sends it.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub rv: u64,
    pub res: Res,
    pub ns: String,
    pub event: &'static str,
    pub object: Value,
}

type Key = (Res, String, String);

#[derive(Debug, Default)]
pub(crate) struct Store {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    history: Vec<Change>,
    /// Lease spec key -> the field managers owning it.
    lease_owners: HashMap<Key, BTreeMap<String, BTreeSet<String>>>,
    /// (namespace, pod, container) -> the container's stdout and stderr, line by line.
    pub logs: HashMap<(String, String, String), String>,
    /// (method, path?query) of every request.
    pub requests: Vec<(String, String)>,
    ids: u64,
}

impl Store {
    /// An empty store at resourceVersion 1: `0` means "any version" to a watch or list, so
    /// no state of the store may be called that.
    pub(crate) fn new() -> Self {
        Store {
            rv: 1,
            ..Store::default()
        }
    }

    pub(crate) fn rv(&self) -> u64 {
        self.rv
    }

    pub(crate) fn get(&self, res: Res, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.objects
            .get(&(res, ns.to_string(), name.to_string()))
            .cloned()
            .ok_or_else(|| ApiError::not_found(res, name))
    }

    /// Objects of `res` in `ns` (every namespace for `None`) that match, by namespace/name.
    pub(crate) fn list(&self, res: Res, ns: Option<&str>, sel: &Selector) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((r, n, _), o)| *r == res && ns.is_none_or(|ns| ns == n) && sel.matches(o))
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// The history index just after `rv`: where a watch from `rv` resumes.
    pub(crate) fn cursor_after(&self, rv: u64) -> usize {
        self.history.partition_point(|c| c.rv <= rv)
    }

    pub(crate) fn changes_from(&self, cursor: usize) -> &[Change] {
        self.history.get(cursor..).unwrap_or_default()
    }

    /// A fresh id from a per-process random key and a counter: uids and name suffixes.
    fn random(&mut self) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        thread_local!(static KEYS: std::collections::hash_map::RandomState = Default::default());
        self.ids += 1;
        let mut h = KEYS.with(|k| k.build_hasher());
        h.write_u64(self.ids);
        h.finish()
    }

    fn new_uid(&mut self) -> String {
        let (a, b) = (self.random(), self.random());
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            b >> 52,
            b & 0xffff_ffff_ffff
        )
    }

    /// Five characters from Kubernetes' `rand.String` alphabet (no vowels), as
    /// `generateName` gets.
    fn name_suffix(&mut self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut n = self.random();
        (0..5)
            .map(|_| {
                let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
                n /= ALPHABET.len() as u64;
                c
            })
            .collect()
    }

    /// Stamps the next resourceVersion on `obj`, stores it (unless deleted) and records the
    /// change.
    fn commit(&mut self, res: Res, ns: &str, mut obj: Value, event: &'static str) -> Value {
        self.rv += 1;
        obj["apiVersion"] = json!(res.api_version());
        obj["kind"] = json!(res.kind());
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let key = (res, ns.to_string(), name);
        if event == "DELETED" {
            self.objects.remove(&key);
            self.lease_owners.remove(&key);
        } else {
            self.objects.insert(key, obj.clone());
        }
        self.history.push(Change {
            rv: self.rv,
            res,
            ns: ns.to_string(),
            event,
            object: obj.clone(),
        });
        obj
    }

    pub(crate) fn create(&mut self, res: Res, ns: &str, mut obj: Value) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request("the body is not a JSON object"));
        }
        let meta = &obj["metadata"];
        if meta["namespace"].as_str().is_some_and(|n| n != ns) {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let name = match (meta["name"].as_str(), meta["generateName"].as_str()) {
            (Some(n), _) if !n.is_empty() => n.to_string(),
            (_, Some(prefix)) => loop {
                let n = format!("{prefix}{}", self.name_suffix());
                if !self.objects.contains_key(&(res, ns.to_string(), n.clone())) {
                    break n;
                }
            },
            _ => {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    "metadata.name: Required value: name or generateName is required",
                ))
            }
        };
        if self
            .objects
            .contains_key(&(res, ns.to_string(), name.clone()))
        {
            return Err(ApiError::already_exists(res, &name));
        }
        let uid = self.new_uid();
        let meta = &mut obj["metadata"];
        meta["name"] = json!(name);
        meta["namespace"] = json!(ns);
        meta["uid"] = json!(uid);
        meta["creationTimestamp"] = json!(now());
        meta["generation"] = json!(1);
        match res {
            Res::Jobs => default_job(&mut obj, &name, &uid),
            Res::Pods => default_pod(&mut obj),
            _ => {}
        }
        Ok(self.commit(res, ns, obj, "ADDED"))
    }

    pub(crate) fn replace(
        &mut self,
        res: Res,
        ns: &str,
        name: &str,
        obj: Value,
    ) -> Result<Value, ApiError> {
        let old = self.get(res, ns, name)?;
        if obj["metadata"]["name"].as_str().is_some_and(|n| n != name) {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        self.update(res, ns, name, old, obj)
    }

    pub(crate) fn patch(
        &mut self,
        res: Res,
        ns: &str,
        name: &str,
        kind: PatchKind,
        body: &Value,
        manager: &str,
    ) -> Result<Value, ApiError> {
        let old = match (self.get(res, ns, name), kind) {
            (Ok(old), _) => old,
            (Err(_), PatchKind::Apply { .. }) => {
                let mut obj = body.clone();
                obj["metadata"]["name"] = json!(name);
                let created = self.create(res, ns, obj)?;
                self.own_lease_keys(res, ns, name, kind, body, &Value::Null, manager)?;
                return Ok(created);
            }
            (Err(e), PatchKind::Merge) => return Err(e),
        };
        self.own_lease_keys(res, ns, name, kind, body, &old["spec"], manager)?;
        let mut new = old.clone();
        merge_patch(&mut new, body);
        self.update(res, ns, name, old, new)
    }

    /// Leases only, per spec key: a merge patch makes `manager` the sole owner of each key it
    /// sets and leaves keys it nulls unowned; an apply that changes a key another manager
    /// owns fails with 409 `Conflict` unless forced, and otherwise makes `manager` the sole
    /// owner (or a co-owner, when it applies the value already there). (Real server-side
    /// apply also drops fields a manager applied before and no longer applies;
    /// kube-lease-manager always applies the same keys, so that is left out.)
    #[allow(clippy::too_many_arguments)]
    fn own_lease_keys(
        &mut self,
        res: Res,
        ns: &str,
        name: &str,
        kind: PatchKind,
        body: &Value,
        current: &Value,
        manager: &str,
    ) -> Result<(), ApiError> {
        let (Res::Leases, Some(spec)) = (res, body["spec"].as_object()) else {
            return Ok(());
        };
        let key = (res, ns.to_string(), name.to_string());
        let owners = self.lease_owners.entry(key).or_default();
        let changes = |k: &str, v: &Value| current.get(k) != Some(v);
        if kind == (PatchKind::Apply { force: false }) {
            let conflicts: Vec<String> = spec
                .iter()
                .filter(|(k, v)| changes(k, v))
                .flat_map(|(k, _)| {
                    let others = owners
                        .get(k)
                        .into_iter()
                        .flatten()
                        .filter(|o| *o != manager);
                    others.map(move |o| {
                        format!("conflict with \"{o}\" using coordination.k8s.io/v1: .spec.{k}")
                    })
                })
                .collect();
            if !conflicts.is_empty() {
                let s = if conflicts.len() == 1 { "" } else { "s" };
                let msg = format!(
                    "Apply failed with {} conflict{s}: {}",
                    conflicts.len(),
                    conflicts.join("\n")
                );
                return Err(ApiError::about(409, "Conflict", res, name, msg));
            }
        }
        for (k, v) in spec {
            if v.is_null() {
                owners.remove(k);
            } else if changes(k, v) || kind == PatchKind::Merge {
                owners.insert(k.clone(), BTreeSet::from([manager.to_string()]));
            } else {
                owners
                    .entry(k.clone())
                    .or_default()
                    .insert(manager.to_string());
            }
        }
        Ok(())
    }

    /// Stores `new` over `old` (replace and patch): identity metadata is kept, a stale
    /// `resourceVersion` in the body is a conflict, Jobs and Pods keep their status (the
    /// status subresource owns it), a spec change bumps the generation, and a no-op
    /// update stores nothing (no new resourceVersion, no event), as Kubernetes does.
    fn update(
        &mut self,
        res: Res,
        ns: &str,
        name: &str,
        old: Value,
        mut new: Value,
    ) -> Result<Value, ApiError> {
        let sent_rv = new["metadata"]["resourceVersion"].as_str().unwrap_or("");
        if !sent_rv.is_empty() && Some(sent_rv) != old["metadata"]["resourceVersion"].as_str() {
            return Err(ApiError::conflict(
                res,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        for key in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "generation",
            "resourceVersion",
        ] {
            new["metadata"][key] = old["metadata"][key].clone();
        }
        if matches!(res, Res::Jobs | Res::Pods) {
            new["status"] = old["status"].clone();
        }
        if new["spec"] != old["spec"] {
            new["metadata"]["generation"] =
                json!(old["metadata"]["generation"].as_i64().unwrap_or(0) + 1);
        }
        new["apiVersion"] = old["apiVersion"].clone();
        new["kind"] = old["kind"].clone();
        if new == old {
            return Ok(old);
        }
        Ok(self.commit(res, ns, new, "MODIFIED"))
    }

    /// What the controllers and kubelet write (status, mostly): `f` edits a copy; nothing
    /// is stored when it changed nothing.
    pub(crate) fn modify(
        &mut self,
        res: Res,
        ns: &str,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) -> Option<Value> {
        let old = self.get(res, ns, name).ok()?;
        let mut new = old.clone();
        f(&mut new);
        (new != old).then(|| self.commit(res, ns, new, "MODIFIED"))
    }

    pub(crate) fn remove(&mut self, res: Res, ns: &str, name: &str) -> Result<Value, ApiError> {
        let obj = self.get(res, ns, name)?;
        Ok(self.commit(res, ns, obj, "DELETED"))
    }
}

/// Now, to the second, as `metav1.Time` is written.
pub(crate) fn now() -> String {
    let now = k8s_openapi::jiff::Timestamp::now();
    k8s_openapi::jiff::Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string()
}

pub(crate) const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
pub(crate) const JOB_NAME: &str = "batch.kubernetes.io/job-name";

/// The Job defaults and selector labels the API server adds on create.
fn default_job(job: &mut Value, name: &str, uid: &str) {
    job.as_object_mut().map(|o| o.remove("status"));
    let policy = if job["spec"]["podFailurePolicy"].is_null() {
        "TerminatingOrFailed"
    } else {
        "Failed"
    };
    let spec = &mut job["spec"];
    for (k, v) in [
        ("backoffLimit", json!(6)),
        ("completions", json!(1)),
        ("parallelism", json!(1)),
        ("completionMode", json!("NonIndexed")),
        ("suspend", json!(false)),
        ("podReplacementPolicy", json!(policy)),
        ("selector", json!({"matchLabels": {CONTROLLER_UID: uid}})),
    ] {
        if spec[k].is_null() {
            spec[k] = v;
        }
    }
    let labels = &mut spec["template"]["metadata"]["labels"];
    for (k, v) in [
        (CONTROLLER_UID, uid),
        (JOB_NAME, name),
        ("controller-uid", uid),
        ("job-name", name),
    ] {
        labels[k] = json!(v);
    }
}

/// The pod defaults the API server adds on create (the ones the kubelet reads).
fn default_pod(pod: &mut Value) {
    pod["status"] = json!({"phase": "Pending"});
    let spec = &mut pod["spec"];
    if spec["restartPolicy"].is_null() {
        spec["restartPolicy"] = json!("Always");
    }
    for list in ["initContainers", "containers"] {
        for c in spec[list].as_array_mut().into_iter().flatten() {
            if c["terminationMessagePath"].is_null() {
                c["terminationMessagePath"] = json!("/dev/termination-log");
            }
            if c["terminationMessagePolicy"].is_null() {
                c["terminationMessagePolicy"] = json!("File");
            }
        }
    }
}
