//! The HTTP face of the store: the Kubernetes REST paths and verbs for the served
//! resources (built-in ones, CustomResourceDefinitions and the custom resources they
//! define, namespaced or cluster-scoped, with a cross-namespace list and watch), the status
//! subresource, watch streams, `pods/log`, discovery and `/version`; every error is a
//! `metav1.Status`. Paths of a resource not served (a CRD not installed) answer 404.
//!
//! Writes of custom resources honour `fieldValidation` (unknown fields: `Strict` refuses
//! them, `Warn`, the default, warns in `Warning` headers). Lists page with `limit` and
//! `continue`; a list or get asked for a `meta.k8s.io` Table in `Accept` (as `kubectl get`
//! asks) gets one, with a CRD's printer columns. The OpenAPI v3 skeleton kubectl needs is
//! at `/openapi/v3`; `/openapi/v2` is not served (kubectl copes). Watches replay
//! the store's history after the given resourceVersion (absent or `0`: the current objects
//! as ADDED first) and end after `timeoutSeconds`. PATCH takes merge, strategic merge (as
//! merge), JSON patch and apply (as merge) bodies.
//!
//! Simplified: a MODIFIED object is sent when it matches the selector (Kubernetes turns an
//! object leaving or entering the selection into DELETED/ADDED), no bookmarks, no Tables
//! for watches, built-in resources' Tables have only Name and Age, the pages after the
//! first are read from the current objects, no `deletecollection`, and
//! `pods/log?follow=true` returns the log so far and ends.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header::{ACCEPT, CONTENT_TYPE, HOST};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use axum::Router;
use serde_json::{json, Value};

use super::discovery;
use super::store::{ApiError, Part, PatchKind, Res, Selector};
use super::Cluster;

pub(super) fn router(c: Arc<Cluster>) -> Router {
    Router::new().fallback(handle).with_state(c)
}

async fn handle(
    State(c): State<Arc<Cluster>>,
    method: Method,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = uri.path_and_query().map_or(uri.path(), |pq| pq.as_str());
    c.lock()
        .requests
        .push((method.to_string(), target.to_string()));
    serve(&c, &method, uri.path(), &q, &headers, &body)
        .unwrap_or_else(|e| respond(e.code, "application/json", e.status().to_string()))
}

fn respond(code: u16, content_type: &str, body: impl Into<Body>) -> Response {
    Response::builder()
        .status(code)
        .header(CONTENT_TYPE, content_type)
        .body(body.into())
        .unwrap()
}

fn json_ok(code: u16, v: &Value) -> Result<Response, ApiError> {
    Ok(respond(code, "application/json", v.to_string()))
}

fn parse(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))
}

fn serve(
    c: &Arc<Cluster>,
    method: &Method,
    path: &str,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let not_served = || {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    };
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let get = method == Method::GET;
    let (api_version, rest) = match segments.as_slice() {
        ["version"] => return json_ok(200, &version()),
        ["api"] if get => {
            let host = headers.get(HOST).and_then(|h| h.to_str().ok());
            return json_ok(200, &discovery::core_versions(host.unwrap_or("")));
        }
        ["apis"] if get => return json_ok(200, &c.read(discovery::groups)),
        ["apis", g] if get => {
            let group = c.read(|s| discovery::group(s, g)).ok_or_else(not_served)?;
            return json_ok(200, &group);
        }
        ["openapi", "v3"] if get => return json_ok(200, &c.read(discovery::openapi_root)),
        ["openapi", "v3", "api", v] if get => {
            let doc = c
                .read(|s| discovery::openapi(s, v))
                .ok_or_else(not_served)?;
            return json_ok(200, &doc);
        }
        ["openapi", "v3", "apis", g, v] if get => {
            let gv = format!("{g}/{v}");
            let doc = c
                .read(|s| discovery::openapi(s, &gv))
                .ok_or_else(not_served)?;
            return json_ok(200, &doc);
        }
        ["api", v, rest @ ..] => (v.to_string(), rest),
        ["apis", g, v, rest @ ..] => (format!("{g}/{v}"), rest),
        _ => return Err(not_served()),
    };
    let (ns, plural, rest) = match rest {
        [] if get => {
            let list = c.read(|s| discovery::resources(s, &api_version));
            return json_ok(200, &list.ok_or_else(not_served)?);
        }
        ["namespaces", ns, plural, rest @ ..] => (Some(*ns), *plural, rest),
        [plural, rest @ ..] => (None, *plural, rest),
        [] => return Err(not_served()),
    };
    let res = c
        .read(|s| s.resource(&api_version, plural))
        .ok_or_else(not_served)?;
    // Where the objects are: a namespace, "" for cluster-scoped ones, or (a list or watch
    // of a namespaced resource across namespaces) `None`.
    let scope = match (res.namespaced(), ns) {
        (true, Some(ns)) => Some(ns),
        (false, None) => Some(""),
        (true, None) if rest.is_empty() && get => None,
        _ => return Err(not_served()),
    };
    let ns = scope.unwrap_or("");
    let param = |k: &str| q.get(k).map(String::as_str);
    // Custom resources are served at each version with that version's apiVersion.
    let at_version = |mut v: Value| {
        if matches!(res, Res::Custom(_)) && v.is_object() {
            v["apiVersion"] = json!(api_version);
        }
        v
    };
    let (name, part) = match rest {
        [] => (None, Part::Main),
        [name] => (Some(*name), Part::Main),
        [name, "status"] if c.read(|s| s.status_subresource(res)) => (Some(*name), Part::Status),
        [name, "log"] if res == Res::Pods && get => return pod_log(c, ns, name, q),
        _ => return Err(not_served()),
    };
    let table = table_version(headers);
    match (method.as_str(), name) {
        ("GET", None) => {
            let sel = Selector::parse(param("labelSelector"), param("fieldSelector"))?;
            if matches!(param("watch"), Some("true" | "1")) {
                let api_version = matches!(res, Res::Custom(_)).then_some(api_version);
                return watch(
                    c,
                    res,
                    scope,
                    sel,
                    api_version,
                    param("resourceVersion"),
                    param("timeoutSeconds"),
                );
            }
            let (items, rv) = c.read(|s| (s.list(res, scope, &sel), s.rv()));
            let selective = param("labelSelector").is_some_and(|l| !l.is_empty())
                || param("fieldSelector").is_some_and(|f| !f.is_empty());
            let (items, metadata) = page(items, rv, param("limit"), param("continue"), selective)?;
            let items: Vec<Value> = items.into_iter().map(at_version).collect();
            if let Some(table_version) = table {
                let version = api_version.rsplit('/').next().unwrap_or_default();
                let columns = c.read(|s| s.printer_columns(res, version));
                let include = param("includeObject");
                return json_ok(
                    200,
                    &as_table(table_version, &columns, &items, metadata, include),
                );
            }
            json_ok(
                200,
                &json!({
                    "apiVersion": api_version,
                    "kind": format!("{}List", res.kind()),
                    "metadata": metadata,
                    "items": items,
                }),
            )
        }
        ("POST", None) => {
            let obj = parse(body)?;
            check_kind(res, &api_version, &obj)?;
            let warnings = field_validation(c, res, &api_version, &obj, param("fieldValidation"))?;
            warned(
                json_ok(201, &at_version(c.create(res, ns, obj)?)),
                &warnings,
            )
        }
        ("GET", Some(name)) => {
            let obj = at_version(c.read(|s| s.get(res, ns, name))?);
            if let Some(table_version) = table {
                let version = api_version.rsplit('/').next().unwrap_or_default();
                let columns = c.read(|s| s.printer_columns(res, version));
                let metadata = json!({"resourceVersion": obj["metadata"]["resourceVersion"]});
                let include = param("includeObject");
                return json_ok(
                    200,
                    &as_table(table_version, &columns, &[obj], metadata, include),
                );
            }
            json_ok(200, &obj)
        }
        ("PUT", Some(name)) => {
            let obj = parse(body)?;
            check_kind(res, &api_version, &obj)?;
            let warnings = field_validation(c, res, &api_version, &obj, param("fieldValidation"))?;
            let stored = c.write(|s| s.replace(res, ns, name, obj, part))?;
            warned(json_ok(200, &at_version(stored)), &warnings)
        }
        ("PATCH", Some(name)) => {
            let content_type = headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let kind = match content_type.split(';').next().unwrap_or("").trim() {
                "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                    PatchKind::Merge
                }
                "application/json-patch+json" => PatchKind::Json,
                "application/apply-patch+yaml" => PatchKind::Apply {
                    force: param("force") == Some("true"),
                },
                other => {
                    return Err(ApiError::new(
                        415,
                        "UnsupportedMediaType",
                        format!("the fake cluster does not support patches of type {other:?}"),
                    ))
                }
            };
            let manager = param("fieldManager").unwrap_or("");
            if manager.is_empty() && matches!(kind, PatchKind::Apply { .. }) {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                ));
            }
            let body = parse(body)?;
            // A JSON patch is a list of operations, not the object's shape: not checked.
            let warnings = match kind {
                PatchKind::Json => Vec::new(),
                _ => field_validation(c, res, &api_version, &body, param("fieldValidation"))?,
            };
            let stored = c.write(|s| s.patch(res, ns, name, kind, &body, manager, part))?;
            warned(json_ok(200, &at_version(stored)), &warnings)
        }
        ("DELETE", Some(name)) if part == Part::Main => {
            let opts = if body.is_empty() {
                Value::Null
            } else {
                parse(body)?
            };
            let policy = param("propagationPolicy").or(opts["propagationPolicy"].as_str());
            let deleted = c.delete(res, ns, name, policy, opts["preconditions"]["uid"].as_str())?;
            // Like the real registry: pods answer with the deleted object, others a Status.
            if res == Res::Pods {
                return json_ok(200, &deleted);
            }
            json_ok(
                200,
                &json!({
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                    "details": {"name": name, "group": res.group(), "kind": res.plural(),
                                "uid": deleted["metadata"]["uid"]},
                }),
            )
        }
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("{method} is not supported on {path}"),
        )),
    }
}

/// `fieldValidation` for a custom resource: the fields the schema does not declare are a
/// 400 under `Strict`, a `Warning` header each under `Warn` (the default), nothing under
/// `Ignore`. Either way the write prunes them.
fn field_validation(
    c: &Cluster,
    res: Res,
    api_version: &str,
    obj: &Value,
    directive: Option<&str>,
) -> Result<Vec<String>, ApiError> {
    let unknown = c.read(|s| s.unknown_fields(res, obj));
    let unknown: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field {}", json!(f)))
        .collect();
    match directive.unwrap_or("Warn") {
        "Ignore" => Ok(Vec::new()),
        "Strict" if !unknown.is_empty() => {
            let version = api_version.rsplit('/').next().unwrap_or_default();
            Err(ApiError::bad_request(format!(
                "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
                unknown.join(", "),
                kind = res.kind(),
            )))
        }
        "Strict" | "Warn" => Ok(unknown),
        other => Err(ApiError::bad_request(format!(
            "fieldValidation must be one of Ignore, Warn or Strict, not {other:?}"
        ))),
    }
}

/// Adds a `Warning: 299 - "…"` header per warning.
fn warned(response: Result<Response, ApiError>, warnings: &[String]) -> Result<Response, ApiError> {
    let mut response = response?;
    for w in warnings {
        let value = format!("299 - {}", json!(w));
        if let Ok(v) = axum::http::HeaderValue::from_str(&value) {
            response.headers_mut().append("Warning", v);
        }
    }
    Ok(response)
}

/// A custom resource's body must name the resource's kind and the request's version, as
/// the server checks for unstructured objects.
fn check_kind(res: Res, api_version: &str, obj: &Value) -> Result<(), ApiError> {
    if !matches!(res, Res::Custom(_)) {
        return Ok(());
    }
    for key in ["kind", "apiVersion"] {
        if obj[key].as_str().is_none_or(str::is_empty) {
            let key = if key == "kind" { "Kind" } else { key };
            return Err(ApiError::bad_request(format!(
                "Object '{key}' is missing in '{obj}'"
            )));
        }
    }
    if obj["apiVersion"] != api_version {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({}) does not match the expected API version ({api_version})",
            obj["apiVersion"].as_str().unwrap_or_default()
        )));
    }
    if obj["kind"] != res.kind() {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({}) does not match the expected kind ({})",
            obj["kind"].as_str().unwrap_or_default(),
            res.kind()
        )));
    }
    Ok(())
}

/// One page of a list (`limit`, `continue`) and the list's metadata. The continue token is
/// opaque to clients: the first page's resourceVersion and the last key served, in hex.
/// Later pages are read from the current objects (as the real server does once the first
/// page's snapshot is compacted), but carry the first page's resourceVersion.
fn page(
    items: Vec<Value>,
    rv: u64,
    limit: Option<&str>,
    token: Option<&str>,
    selective: bool,
) -> Result<(Vec<Value>, Value), ApiError> {
    let key = |o: &Value| {
        let meta = &o["metadata"];
        let part = |k: &str| meta[k].as_str().unwrap_or_default().to_string();
        (part("namespace"), part("name"))
    };
    let invalid =
        || ApiError::bad_request("continue key is not valid: the fake cluster did not issue it");
    let (rv, mut items) = match token.filter(|t| !t.is_empty()) {
        None => (rv, items),
        Some(token) => {
            let text = unhex(token).ok_or_else(invalid)?;
            let mut parts = text.splitn(3, '/');
            let (Some(rv), Some(ns), Some(name)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(invalid());
            };
            let rv = rv.parse::<u64>().map_err(|_| invalid())?;
            let after = (ns.to_string(), name.to_string());
            (rv, items.into_iter().filter(|o| key(o) > after).collect())
        }
    };
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    let limit = limit
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    if let Some(limit) = limit.filter(|l| items.len() > *l) {
        let remaining = items.len() - limit;
        items.truncate(limit);
        let (ns, name) = items.last().map(key).unwrap_or_default();
        metadata["continue"] = json!(hex(&format!("{rv}/{ns}/{name}")));
        // Like the server: no count when a selector makes it expensive to know.
        if !selective {
            metadata["remainingItemCount"] = json!(remaining);
        }
    }
    Ok((items, metadata))
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// The Table version the `Accept` header asks for (`application/json;as=Table;v=v1;
/// g=meta.k8s.io`, what `kubectl get` sends), if it asks for one before plain JSON.
fn table_version(headers: &HeaderMap) -> Option<&'static str> {
    let accept = headers.get(ACCEPT).and_then(|v| v.to_str().ok())?;
    for media in accept.split(',') {
        let params: Vec<&str> = media.split(';').map(str::trim).collect();
        let has = |p: &str| params.contains(&p);
        if !has("as=Table") {
            // The first acceptable non-Table type wins.
            if params
                .first()
                .is_some_and(|t| *t == "application/json" || *t == "*/*")
            {
                return None;
            }
            continue;
        }
        if has("g=meta.k8s.io") && has("v=v1") {
            return Some("meta.k8s.io/v1");
        }
        if has("g=meta.k8s.io") && has("v=v1beta1") {
            return Some("meta.k8s.io/v1beta1");
        }
    }
    None
}

/// A `meta.k8s.io` Table of `items`: a Name column, then the CRD's printer columns (or, for
/// a resource without any, an Age column), cells evaluated from each column's `jsonPath`
/// as the server does (`date` columns as an age like `5m`), and each row's object as
/// `includeObject` asks (default: PartialObjectMetadata).
fn as_table(
    api_version: &str,
    columns: &[Value],
    items: &[Value],
    metadata: Value,
    include: Option<&str>,
) -> Value {
    let age = json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp",
                     "description": "CreationTimestamp is a timestamp representing the server time when this object was created."});
    let columns: Vec<Value> = if columns.is_empty() {
        vec![age]
    } else {
        columns.to_vec()
    };
    let mut definitions = vec![json!({
        "name": "Name", "type": "string", "format": "name", "priority": 0,
        "description": "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
    })];
    for col in &columns {
        let path = col["jsonPath"].as_str().unwrap_or_default();
        let description = match col["description"].as_str() {
            Some(d) if !d.is_empty() => d.to_string(),
            _ => format!("Custom resource definition column (in JSONPath format): {path}"),
        };
        definitions.push(json!({
            "name": col["name"], "type": col["type"], "format": col["format"].as_str().unwrap_or(""),
            "description": description, "priority": col["priority"].as_i64().unwrap_or(0),
        }));
    }
    let now = k8s_openapi::jiff::Timestamp::now();
    let rows: Vec<Value> = items
        .iter()
        .map(|obj| {
            let mut cells = vec![obj["metadata"]["name"].clone()];
            cells.extend(columns.iter().map(|col| cell(col, obj, now)));
            let mut row = json!({"cells": cells});
            match include.unwrap_or("Metadata") {
                "None" => {}
                "Object" => row["object"] = obj.clone(),
                _ => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                        "metadata": obj["metadata"],
                    })
                }
            }
            row
        })
        .collect();
    json!({
        "kind": "Table", "apiVersion": api_version, "metadata": metadata,
        "columnDefinitions": definitions, "rows": rows,
    })
}

/// One cell: the value at the column's `jsonPath` (dotted names and `[n]` indexes), as
/// text for `string` columns, an age for `date` ones, as is for the others; null if absent.
fn cell(col: &Value, obj: &Value, now: k8s_openapi::jiff::Timestamp) -> Value {
    let path = col["jsonPath"].as_str().unwrap_or_default();
    let found =
        path.split(['.', '['])
            .filter(|p| !p.is_empty())
            .try_fold(obj, |v, step| match step.strip_suffix(']') {
                Some(i) => v.get(i.parse::<usize>().ok()?),
                None => v.get(step),
            });
    let Some(value) = found.filter(|v| !v.is_null()) else {
        return Value::Null;
    };
    match (col["type"].as_str(), value) {
        (Some("string"), Value::String(_)) => value.clone(),
        (Some("string"), other) => json!(other.to_string()),
        (Some("date"), Value::String(s)) => match s.parse::<k8s_openapi::jiff::Timestamp>() {
            Ok(t) => json!(human_duration(now.as_second() - t.as_second())),
            Err(_) => json!("<invalid>"),
        },
        _ => value.clone(),
    }
}

/// An age as `kubectl` shows it (Kubernetes' `duration.HumanDuration`).
fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    let s = seconds.max(0);
    let (minutes, hours) = (s / 60, s / 3600);
    let days = hours / 24;
    let pair = |a: i64, ua: &str, b: i64, ub: &str| {
        if b == 0 {
            format!("{a}{ua}")
        } else {
            format!("{a}{ua}{b}{ub}")
        }
    };
    match () {
        _ if s < 120 => format!("{s}s"),
        _ if minutes < 10 => pair(minutes, "m", s % 60, "s"),
        _ if minutes < 180 => format!("{minutes}m"),
        _ if hours < 8 => pair(hours, "h", minutes % 60, "m"),
        _ if hours < 48 => format!("{hours}h"),
        _ if hours < 24 * 8 => pair(days, "d", hours % 24, "h"),
        _ if hours < 24 * 365 * 2 => format!("{days}d"),
        _ if hours < 24 * 365 * 8 => pair(days / 365, "y", days % 365, "d"),
        _ => format!("{}y", days / 365),
    }
}

/// A streaming watch: newline-delimited `{"type", "object"}` events, of `scope`'s namespace
/// (every namespace for `None`); custom resources shown at `api_version`.
fn watch(
    c: &Arc<Cluster>,
    res: Res,
    scope: Option<&str>,
    sel: Selector,
    api_version: Option<String>,
    rv: Option<&str>,
    timeout: Option<&str>,
) -> Result<Response, ApiError> {
    let line = move |event: &str, obj: &Value| {
        let mut obj = obj.clone();
        if let Some(v) = &api_version {
            obj["apiVersion"] = json!(v);
        }
        format!("{}\n", json!({"type": event, "object": obj}))
    };
    let since = match rv.filter(|v| !v.is_empty() && *v != "0") {
        None => None,
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {v:?}")))?,
        ),
    };
    let secs = timeout.and_then(|t| t.parse().ok()).unwrap_or(1800);
    // Subscribed before reading, so no change between the read and the first wait is lost.
    let wake = c.changed.subscribe();
    let (first, cursor) = c.read(|s| match since {
        None => {
            let objects = s.list(res, scope, &sel);
            let first: String = objects.iter().map(|o| line("ADDED", o)).collect();
            (first, s.cursor_after(s.rv()))
        }
        Some(rv) => (String::new(), s.cursor_after(rv)),
    });
    let scope = scope.map(String::from);
    let state = (Arc::clone(c), scope, sel, cursor, wake, first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let stream = futures_util::stream::unfold(state, move |mut st| {
        let line = line.clone();
        async move {
            let (c, scope, sel, cursor, wake, first) = &mut st;
            if !first.is_empty() {
                let chunk = std::mem::take(first);
                return Some((Ok::<_, Infallible>(Bytes::from(chunk)), st));
            }
            loop {
                let chunk: String = c.read(|s| {
                    let changes = s.changes_from(*cursor);
                    *cursor += changes.len();
                    changes
                        .iter()
                        .filter(|ch| ch.res == res && scope.as_ref().is_none_or(|n| ch.ns == *n))
                        .filter(|ch| sel.matches(&ch.object))
                        .map(|ch| line(ch.event, &ch.object))
                        .collect()
                });
                if !chunk.is_empty() {
                    return Some((Ok(Bytes::from(chunk)), st));
                }
                match tokio::time::timeout_at(deadline, wake.changed()).await {
                    Ok(Ok(())) => {}
                    _ => return None,
                }
            }
        }
    });
    Ok(respond(200, "application/json", Body::from_stream(stream)))
}

/// `pods/log`: one container's stdout and stderr, as they were interleaved.
fn pod_log(
    c: &Cluster,
    ns: &str,
    name: &str,
    q: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let pod = c.read(|s| s.get(Res::Pods, ns, name))?;
    let names = |list: &str| -> Vec<String> {
        let containers = pod["spec"][list].as_array().cloned().unwrap_or_default();
        containers
            .iter()
            .filter_map(|k| k["name"].as_str().map(String::from))
            .collect()
    };
    let (inits, mains) = (names("initContainers"), names("containers"));
    let container = match q.get("container") {
        Some(k) => k.clone(),
        None if inits.is_empty() && mains.len() == 1 => mains[0].clone(),
        None => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}] or one of the init containers: [{}]",
                mains.join(" "),
                inits.join(" ")
            )))
        }
    };
    if !inits.contains(&container) && !mains.contains(&container) {
        return Err(ApiError::bad_request(format!(
            "container {container} is not valid for pod {name}"
        )));
    }
    let key = (ns.to_string(), name.to_string(), container.clone());
    let Some(log) = c.read(|s| s.logs.get(&key).cloned()) else {
        let statuses = ["initContainerStatuses", "containerStatuses"]
            .iter()
            .flat_map(|l| pod["status"][*l].as_array().cloned().unwrap_or_default())
            .find(|s| s["name"] == container.as_str());
        let reason = statuses
            .as_ref()
            .and_then(|s| s["state"]["waiting"]["reason"].as_str())
            .unwrap_or("ContainerCreating");
        let reason = match reason {
            "ErrImagePull" | "ImagePullBackOff" => "trying and failing to pull image",
            r => r,
        };
        return Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
        )));
    };
    let mut text = log.as_str();
    if let Some(n) = q.get("tailLines").and_then(|n| n.parse::<usize>().ok()) {
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        let skipped = &lines[..lines.len().saturating_sub(n)];
        text = &text[skipped.iter().map(|l| l.len()).sum::<usize>()..];
    }
    if let Some(mut n) = q.get("limitBytes").and_then(|n| n.parse::<usize>().ok()) {
        n = n.min(text.len());
        while !text.is_char_boundary(n) {
            n -= 1;
        }
        text = &text[..n];
    }
    Ok(respond(200, "text/plain", text.to_string()))
}

/// What `GET /version` answers: a plausible 1.33 server.
fn version() -> Value {
    json!({
        "major": "1", "minor": "33", "gitVersion": "v1.33.0-fake", "gitCommit": "0000000",
        "gitTreeState": "clean", "buildDate": "2025-04-23T00:00:00Z", "goVersion": "go1.24.2",
        "compiler": "gc", "platform": "linux/amd64",
    })
}
