//! The API server's storage: every object as JSON under one global resourceVersion counter,
//! the full history of changes (what watches replay from any resourceVersion, so a watch is
//! never answered 410 Gone), server-side-apply ownership of Lease spec keys, container logs
//! and the request log. Pure data: no IO and no async; callers hold the lock.
//!
//! CustomResourceDefinitions are stored like any object, and each one makes its resource
//! served ([`Res::Custom`]): its objects are pruned and validated against the schema
//! ([`super::schema`]) on every write, their status is the status subresource's when the CRD
//! declares one, and `metadata.generation` counts changes outside metadata and status.
//!
//! Simplified: no admission, no validation beyond names for built-in resources, no
//! managedFields in metadata, labelSelector equality terms only (set-based `in`/`notin`
//! answer 400). Custom resources get no conversion: every served version shares the same
//! objects (stored with the storage version's apiVersion, served with the requested one), and
//! a PATCH is validated against the storage version's schema. A CRD's group, names, scope
//! and storage version cannot change once created.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

use serde_json::{json, Map, Value};

use super::schema::{self, FieldError};

/// The resources the stand-in serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Res {
    Jobs,
    Pods,
    Leases,
    ConfigMaps,
    CoreEvents,
    Events,
    /// `apiextensions.k8s.io/v1` CustomResourceDefinitions (cluster-scoped).
    Crds,
    /// The objects of one CRD, named by its interned names (see [`intern`]).
    Custom(&'static CustomNames),
}

/// What identifies a custom resource, from its CRD.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct CustomNames {
    /// The CRD's name, `{plural}.{group}`.
    pub crd: String,
    pub group: String,
    /// `{group}/{storage version}`: the apiVersion objects are stored with.
    pub api_version: String,
    pub plural: String,
    pub kind: String,
    pub namespaced: bool,
}

/// The `&'static` copy of `names`, made once per process: [`Res`] stays `Copy` with
/// `&'static str` names for built-in and custom resources alike. A test process installs a
/// handful of distinct CRDs, so what is kept is bounded by them, not by the clusters started.
fn intern(names: CustomNames) -> &'static CustomNames {
    static INTERNED: Mutex<BTreeSet<&'static CustomNames>> = Mutex::new(BTreeSet::new());
    let mut interned = INTERNED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(n) = interned.get(&names) {
        return n;
    }
    let n: &'static CustomNames = Box::leak(Box::new(names));
    interned.insert(n);
    n
}

/// The names a CRD object declares, or why it cannot be served.
fn names_of(crd: &Value) -> Result<CustomNames, FieldError> {
    let spec = &crd["spec"];
    let text = |v: &Value, field: &str| {
        v.as_str()
            .filter(|s| !s.is_empty())
            .map(String::from)
            .ok_or_else(|| FieldError::new(field, "FieldValueRequired", "Required value"))
    };
    let group = text(&spec["group"], "spec.group")?;
    let plural = text(&spec["names"]["plural"], "spec.names.plural")?;
    let kind = text(&spec["names"]["kind"], "spec.names.kind")?;
    let namespaced = match spec["scope"].as_str() {
        Some("Namespaced") => true,
        Some("Cluster") => false,
        other => {
            let body = format!(
                "Unsupported value: {}: supported values: \"Cluster\", \"Namespaced\"",
                json!(other)
            );
            return Err(FieldError::new(
                "spec.scope",
                "FieldValueNotSupported",
                body,
            ));
        }
    };
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    let storage: Vec<&str> = versions
        .iter()
        .filter(|v| v["storage"] == true)
        .filter_map(|v| v["name"].as_str())
        .collect();
    let [storage] = storage.as_slice() else {
        let body = format!(
            "Invalid value: {}: must have exactly one version marked as storage version",
            json!(storage)
        );
        return Err(FieldError::new("spec.versions", "FieldValueInvalid", body));
    };
    let crd_name = format!("{plural}.{group}");
    if crd["metadata"]["name"].as_str() != Some(crd_name.as_str()) {
        let body = format!(
            "Invalid value: {}: must be spec.names.plural+\".\"+spec.group",
            crd["metadata"]["name"]
        );
        return Err(FieldError::new("metadata.name", "FieldValueInvalid", body));
    }
    Ok(CustomNames {
        crd: crd_name,
        api_version: format!("{group}/{storage}"),
        group,
        plural,
        kind,
        namespaced,
    })
}

impl Res {
    /// The built-in resources.
    const BUILT_IN: [Res; 7] = [
        Res::Jobs,
        Res::Pods,
        Res::Leases,
        Res::ConfigMaps,
        Res::CoreEvents,
        Res::Events,
        Res::Crds,
    ];

    pub(crate) fn built_in() -> &'static [Res] {
        &Res::BUILT_IN
    }

    fn lookup(api_version: &str, plural: &str) -> Option<Res> {
        Res::BUILT_IN
            .into_iter()
            .find(|r| r.api_version() == api_version && r.plural() == plural)
    }

    pub(crate) fn api_version(self) -> &'static str {
        match self {
            Res::Jobs => "batch/v1",
            Res::Pods | Res::ConfigMaps | Res::CoreEvents => "v1",
            Res::Leases => "coordination.k8s.io/v1",
            Res::Events => "events.k8s.io/v1",
            Res::Crds => "apiextensions.k8s.io/v1",
            Res::Custom(n) => &n.api_version,
        }
    }

    pub(crate) fn kind(self) -> &'static str {
        match self {
            Res::Jobs => "Job",
            Res::Pods => "Pod",
            Res::Leases => "Lease",
            Res::ConfigMaps => "ConfigMap",
            Res::CoreEvents | Res::Events => "Event",
            Res::Crds => "CustomResourceDefinition",
            Res::Custom(n) => &n.kind,
        }
    }

    pub(crate) fn plural(self) -> &'static str {
        match self {
            Res::Jobs => "jobs",
            Res::Pods => "pods",
            Res::Leases => "leases",
            Res::ConfigMaps => "configmaps",
            Res::CoreEvents | Res::Events => "events",
            Res::Crds => "customresourcedefinitions",
            Res::Custom(n) => &n.plural,
        }
    }

    pub(crate) fn group(self) -> &'static str {
        self.api_version().rsplit_once('/').map_or("", |(g, _)| g)
    }

    /// Whether objects live in a namespace (the others are stored under namespace "").
    pub(crate) fn namespaced(self) -> bool {
        match self {
            Res::Crds => false,
            Res::Custom(n) => n.namespaced,
            _ => true,
        }
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

    /// 422 `Invalid`, naming each field, as the server answers a failed validation:
    /// `WasmTask.wasm-exec.io "x" is invalid: spec.wasmCid: Invalid value: …`.
    pub(crate) fn invalid(res: Res, name: &str, errors: &[FieldError]) -> Self {
        let group_kind = match res.group() {
            "" => res.kind().to_string(),
            g => format!("{}.{g}", res.kind()),
        };
        let messages: Vec<String> = errors.iter().map(FieldError::message).collect();
        let listed = match messages.as_slice() {
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        };
        let causes: Vec<Value> = errors.iter().map(FieldError::cause).collect();
        Self {
            code: 422,
            reason: "Invalid",
            message: format!("{group_kind} \"{name}\" is invalid: {listed}"),
            details: json!({"name": name, "group": res.group(), "kind": res.kind(), "causes": causes}),
        }
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

/// RFC 6902 JSON patch: `add`, `remove`, `replace`, `move`, `copy` and `test`, applied in
/// order to `target`; the first operation that fails fails the patch and leaves `target`
/// unspecified (callers patch a copy).
pub(crate) fn json_patch(target: &mut Value, ops: &Value) -> Result<(), ApiError> {
    let Some(ops) = ops.as_array() else {
        return Err(ApiError::bad_request(
            "a JSON patch must be an array of operations",
        ));
    };
    for op in ops {
        let path = |key: &str| -> Result<Vec<String>, ApiError> {
            let p = op[key].as_str().ok_or_else(|| {
                ApiError::bad_request(format!("JSON patch operation {op} has no {key:?}"))
            })?;
            pointer(p)
        };
        let failed = |why: &str| {
            ApiError::new(
                422,
                "Invalid",
                format!("the JSON patch could not be applied: {why} in {op}"),
            )
        };
        let value = || op.get("value").cloned().ok_or_else(|| failed("no value"));
        match op["op"].as_str().unwrap_or("") {
            "add" => insert(target, &path("path")?, value()?).map_err(|w| failed(&w))?,
            "remove" => {
                take(target, &path("path")?).map_err(|w| failed(&w))?;
            }
            "replace" => {
                let at = path("path")?;
                take(target, &at).map_err(|w| failed(&w))?;
                insert(target, &at, value()?).map_err(|w| failed(&w))?;
            }
            "move" => {
                let moved = take(target, &path("from")?).map_err(|w| failed(&w))?;
                insert(target, &path("path")?, moved).map_err(|w| failed(&w))?;
            }
            "copy" => {
                let from = path("from")?;
                let copied = find(target, &from)
                    .cloned()
                    .ok_or_else(|| failed("no such from"))?;
                insert(target, &path("path")?, copied).map_err(|w| failed(&w))?;
            }
            "test" => {
                if find(target, &path("path")?) != Some(&value()?) {
                    return Err(failed("the test failed"));
                }
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown JSON patch operation {other:?}"
                )))
            }
        }
    }
    Ok(())
}

/// A JSON pointer's reference tokens (`~1` is `/`, `~0` is `~`).
fn pointer(p: &str) -> Result<Vec<String>, ApiError> {
    if p.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = p.strip_prefix('/') else {
        return Err(ApiError::bad_request(format!("invalid JSON pointer {p:?}")));
    };
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn find<'a>(v: &'a Value, at: &[String]) -> Option<&'a Value> {
    at.iter().try_fold(v, |v, t| match v {
        Value::Object(m) => m.get(t),
        Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

fn insert(v: &mut Value, at: &[String], value: Value) -> Result<(), String> {
    let Some((last, parent)) = at.split_last() else {
        *v = value;
        return Ok(());
    };
    let parent = parent
        .iter()
        .try_fold(v, |v, t| match v {
            Value::Object(m) => m.get_mut(t),
            Value::Array(a) => t.parse::<usize>().ok().and_then(move |i| a.get_mut(i)),
            _ => None,
        })
        .ok_or("no such path")?;
    match parent {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => {
            let i = if last == "-" {
                a.len()
            } else {
                last.parse::<usize>().map_err(|_| "not an index")?
            };
            if i > a.len() {
                return Err("index out of range".into());
            }
            a.insert(i, value);
            Ok(())
        }
        _ => Err("the parent is not an object or array".into()),
    }
}

fn take(v: &mut Value, at: &[String]) -> Result<Value, String> {
    let (last, parent) = at.split_last().ok_or("cannot remove the whole document")?;
    let parent = parent
        .iter()
        .try_fold(v, |v, t| match v {
            Value::Object(m) => m.get_mut(t),
            Value::Array(a) => t.parse::<usize>().ok().and_then(move |i| a.get_mut(i)),
            _ => None,
        })
        .ok_or("no such path")?;
    match parent {
        Value::Object(m) => m.remove(last).ok_or_else(|| "no such key".into()),
        Value::Array(a) => match last.parse::<usize>() {
            Ok(i) if i < a.len() => Ok(a.remove(i)),
            _ => Err("no such index".into()),
        },
        _ => Err("the parent is not an object or array".into()),
    }
}

/// How a PATCH treats the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchKind {
    /// `merge-patch+json` and `strategic-merge-patch+json` (both as RFC 7386; the types
    /// served here have no strategic list-merge keys that matter to the tests).
    Merge,
    /// `json-patch+json` (RFC 6902).
    Json,
    /// `apply-patch+yaml` (server-side apply, the body being JSON, merged as a merge patch),
    /// creating if missing.
    Apply { force: bool },
}

/// Which part of an object a write is for: the object itself, or its status subresource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// The object: where a status subresource exists, the stored status is kept.
    Main,
    /// `/status`: only `.status` changes; the rest is kept from the stored object.
    Status,
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

/// (resource, namespace ("" when cluster-scoped), name).
pub(crate) type Key = (Res, String, String);

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
    /// Every Job as created, in order.
    pub created_jobs: Vec<Value>,
    /// (pod, node) of every pod the kubelet stand-in put on a node, in order.
    pub scheduled: Vec<(String, String)>,
    ids: u64,
    /// CRD name -> the resource it serves, for the CRDs stored.
    custom: BTreeMap<String, &'static CustomNames>,
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

    /// The resource served at `/api[s]/{api_version}/…/{plural}`: a built-in one, or a
    /// custom one whose CRD serves that version.
    pub(crate) fn resource(&self, api_version: &str, plural: &str) -> Option<Res> {
        if let Some(res) = Res::lookup(api_version, plural) {
            return Some(res);
        }
        let (group, version) = api_version.split_once('/')?;
        let names = self
            .custom
            .values()
            .find(|n| n.group == group && n.plural == plural)?;
        let res = Res::Custom(names);
        self.crd_version(res, version).map(|_| res)
    }

    /// The CRD entry of a served `version` of a custom resource.
    pub(crate) fn crd_version(&self, res: Res, version: &str) -> Option<Value> {
        let Res::Custom(names) = res else {
            return None;
        };
        let crd = self
            .objects
            .get(&(Res::Crds, String::new(), names.crd.clone()))?;
        let versions = crd["spec"]["versions"].as_array()?;
        versions
            .iter()
            .find(|v| v["name"] == version && v["served"] == true)
            .cloned()
    }

    /// The storage version's CRD entry.
    fn storage_version(&self, res: Res) -> Option<Value> {
        let version = res.api_version().rsplit_once('/')?.1;
        self.crd_version(res, version)
    }

    /// Whether `res` has a status subresource (Jobs and Pods do; custom resources when the
    /// CRD says so).
    pub(crate) fn status_subresource(&self, res: Res) -> bool {
        match res {
            Res::Jobs | Res::Pods => true,
            Res::Custom(_) => self
                .storage_version(res)
                .is_some_and(|v| v["subresources"]["status"].is_object()),
            _ => false,
        }
    }

    /// The CRD's `additionalPrinterColumns` for `version` (none for built-in resources).
    pub(crate) fn printer_columns(&self, res: Res, version: &str) -> Vec<Value> {
        self.crd_version(res, version)
            .and_then(|v| v["additionalPrinterColumns"].as_array().cloned())
            .unwrap_or_default()
    }

    /// The custom resource the CRD named `crd` serves.
    pub(crate) fn custom_names(&self, crd: &str) -> Option<&'static CustomNames> {
        self.custom.get(crd).copied()
    }

    /// (namespace, name) of every object of `res`.
    pub(crate) fn keys(&self, res: Res) -> Vec<(String, String)> {
        self.objects
            .keys()
            .filter(|(r, _, _)| *r == res)
            .map(|(_, ns, name)| (ns.clone(), name.clone()))
            .collect()
    }

    /// Objects with an owner reference to `uid`: in namespace `ns`, or anywhere for an owner
    /// that is cluster-scoped (`ns` empty).
    pub(crate) fn dependents(&self, uid: &str, ns: &str) -> Vec<Key> {
        self.objects
            .iter()
            .filter(|((_, n, _), _)| ns.is_empty() || n == ns)
            .filter(|(_, o)| owner_uids(o).any(|u| u == uid))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Objects all of whose owners are gone: what the garbage collector deletes (an object
    /// created for an owner being deleted meanwhile).
    pub(crate) fn orphans(&self) -> Vec<Key> {
        let uids: HashSet<&str> = self
            .objects
            .values()
            .filter_map(|o| o["metadata"]["uid"].as_str())
            .collect();
        self.objects
            .iter()
            .filter(|(_, o)| {
                let mut owners = owner_uids(o).peekable();
                owners.peek().is_some() && owners.all(|u| !uids.contains(u))
            })
            .map(|(k, _)| k.clone())
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
        if res.namespaced() && meta["namespace"].as_str().is_some_and(|n| n != ns) {
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
        if res.namespaced() {
            meta["namespace"] = json!(ns);
        } else if let Some(m) = meta.as_object_mut() {
            m.remove("namespace");
        }
        meta["uid"] = json!(uid);
        meta["creationTimestamp"] = json!(now());
        meta["generation"] = json!(1);
        let mut names = None;
        match res {
            Res::Jobs => default_job(&mut obj, &name, &uid),
            Res::Pods => default_pod(&mut obj),
            Res::Crds => {
                let n = names_of(&obj).map_err(|e| ApiError::invalid(res, &name, &[e]))?;
                obj["status"] = crd_status(&obj, &n);
                names = Some(intern(n));
            }
            Res::Custom(_) => {
                // Status is the subresource's to write, even on create.
                if self.status_subresource(res) {
                    obj.as_object_mut().map(|o| o.remove("status"));
                }
                self.admit(res, None, &mut obj)?;
            }
            _ => {}
        }
        let created = self.commit(res, ns, obj, "ADDED");
        if res == Res::Jobs {
            self.created_jobs.push(created.clone());
        }
        if let Some(n) = names {
            self.custom.insert(n.crd.clone(), n);
        }
        Ok(created)
    }

    /// The schema of a custom resource object: the one of the version the object names, or
    /// the storage version's.
    fn schema_of(&self, res: Res, obj: &Value) -> Option<Value> {
        let Res::Custom(names) = res else {
            return None;
        };
        let named = obj["apiVersion"]
            .as_str()
            .and_then(|v| v.strip_prefix(&format!("{}/", names.group)))
            .and_then(|v| self.crd_version(res, v));
        let version = named.or_else(|| self.storage_version(res))?;
        let schema = &version["schema"]["openAPIV3Schema"];
        schema.is_object().then(|| schema.clone())
    }

    /// The paths of the fields in `obj` (a body or a merge patch) that its schema does not
    /// declare: what a write would prune.
    pub(crate) fn unknown_fields(&self, res: Res, obj: &Value) -> Vec<String> {
        match self.schema_of(res, obj) {
            Some(schema) => schema::prune(&schema, &mut obj.clone()),
            None => Vec::new(),
        }
    }

    /// Prunes a custom resource to its schema and validates it (`old`: the stored object,
    /// on an update).
    fn admit(&self, res: Res, old: Option<&Value>, obj: &mut Value) -> Result<(), ApiError> {
        let Some(schema) = self.schema_of(res, obj) else {
            return Ok(());
        };
        let schema = &schema;
        schema::prune(schema, obj);
        let errors = schema::validate(schema, obj, old);
        if errors.is_empty() {
            return Ok(());
        }
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        Err(ApiError::invalid(res, name, &errors))
    }

    pub(crate) fn replace(
        &mut self,
        res: Res,
        ns: &str,
        name: &str,
        obj: Value,
        part: Part,
    ) -> Result<Value, ApiError> {
        let old = self.get(res, ns, name)?;
        if obj["metadata"]["name"].as_str().is_some_and(|n| n != name) {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        self.update(res, ns, name, old, obj, part)
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn patch(
        &mut self,
        res: Res,
        ns: &str,
        name: &str,
        kind: PatchKind,
        body: &Value,
        manager: &str,
        part: Part,
    ) -> Result<Value, ApiError> {
        let old = match (self.get(res, ns, name), kind, part) {
            (Ok(old), _, _) => old,
            (Err(_), PatchKind::Apply { .. }, Part::Main) => {
                let mut obj = body.clone();
                obj["metadata"]["name"] = json!(name);
                let created = self.create(res, ns, obj)?;
                self.own_lease_keys(res, ns, name, kind, body, &Value::Null, manager)?;
                return Ok(created);
            }
            (Err(e), _, _) => return Err(e),
        };
        self.own_lease_keys(res, ns, name, kind, body, &old["spec"], manager)?;
        let mut new = old.clone();
        match kind {
            PatchKind::Json => json_patch(&mut new, body)?,
            PatchKind::Merge | PatchKind::Apply { .. } => merge_patch(&mut new, body),
        }
        self.update(res, ns, name, old, new, part)
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
    /// `resourceVersion` in the body is a conflict, and a no-op update stores nothing (no new
    /// resourceVersion, no event), as Kubernetes does. Where a status subresource exists, a
    /// write of the object keeps the stored status and a write of `/status` keeps all but the
    /// status. Custom resources are pruned and validated; their generation counts changes
    /// outside metadata (and status, with the subresource), the others' spec changes.
    fn update(
        &mut self,
        res: Res,
        ns: &str,
        name: &str,
        old: Value,
        mut new: Value,
        part: Part,
    ) -> Result<Value, ApiError> {
        let sent_rv = new["metadata"]["resourceVersion"].as_str().unwrap_or("");
        if !sent_rv.is_empty() && Some(sent_rv) != old["metadata"]["resourceVersion"].as_str() {
            return Err(ApiError::conflict(
                res,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        let status_subresource = self.status_subresource(res);
        match part {
            Part::Status => {
                let status = new.get("status").cloned();
                new = old.clone();
                set_or_remove(&mut new, "status", status);
            }
            Part::Main => {
                for key in [
                    "name",
                    "namespace",
                    "uid",
                    "creationTimestamp",
                    "generation",
                    "resourceVersion",
                ] {
                    set_or_remove(&mut new["metadata"], key, old["metadata"].get(key).cloned());
                }
                if status_subresource {
                    set_or_remove(&mut new, "status", old.get("status").cloned());
                }
            }
        }
        if res == Res::Crds && names_of(&new).ok().map(intern) != self.custom_names(name) {
            let why = FieldError::new(
                "spec",
                "FieldValueForbidden",
                "Forbidden: the fake cluster cannot change a CRD's group, names, scope or storage version",
            );
            return Err(ApiError::invalid(res, name, &[why]));
        }
        self.admit(res, Some(&old), &mut new)?;
        let changed = match res {
            Res::Custom(_) => {
                let without = |o: &Value| {
                    let mut o = o.clone();
                    if let Some(m) = o.as_object_mut() {
                        m.remove("metadata");
                        if status_subresource {
                            m.remove("status");
                        }
                    }
                    o
                };
                without(&new) != without(&old)
            }
            _ => new["spec"] != old["spec"],
        };
        if changed {
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
        if res == Res::Crds {
            self.custom.remove(name);
        }
        Ok(self.commit(res, ns, obj, "DELETED"))
    }
}

/// The uids an object's `ownerReferences` name.
fn owner_uids(obj: &Value) -> impl Iterator<Item = &str> {
    let refs = obj["metadata"]["ownerReferences"].as_array();
    refs.into_iter().flatten().filter_map(|r| r["uid"].as_str())
}

/// Sets `obj[key]` to `value`, or removes the key for `None` (no `"key": null` left behind).
fn set_or_remove(obj: &mut Value, key: &str, value: Option<Value>) {
    match (value, obj.as_object_mut()) {
        (Some(v), _) => obj[key] = v,
        (None, Some(m)) => {
            m.remove(key);
        }
        (None, None) => {}
    }
}

/// What the API server reports of a CRD it accepted: names accepted, established at once.
fn crd_status(crd: &Value, names: &CustomNames) -> Value {
    let now = now();
    let condition = |type_: &str, reason: &str, message: &str| {
        json!({"type": type_, "status": "True", "lastTransitionTime": now,
               "reason": reason, "message": message})
    };
    json!({
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "acceptedNames": crd["spec"]["names"],
        "storedVersions": [names.api_version.rsplit_once('/').map_or("", |(_, v)| v)],
    })
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
