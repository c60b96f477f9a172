//! The HTTP face of the store: the Kubernetes REST paths and verbs for the served
//! resources, watch streams, `pods/log` and `/version`; every error is a `metav1.Status`.
//!
//! Watches replay the store's history after the given resourceVersion (absent or `0`: the
//! current objects as ADDED first) and end after `timeoutSeconds`. Simplified: a MODIFIED
//! object is sent when it matches the selector (Kubernetes turns an object leaving or
//! entering the selection into DELETED/ADDED), no bookmarks, no pagination (`limit` and
//! `continue` ignored), and `pods/log?follow=true` returns the log so far and ends.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use axum::Router;
use serde_json::{json, Value};

use super::store::{ApiError, PatchKind, Res, Selector};
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
    let (api_version, rest) = match segments.as_slice() {
        ["version"] => return json_ok(200, &version()),
        ["api", v, rest @ ..] => (v.to_string(), rest),
        ["apis", g, v, rest @ ..] => (format!("{g}/{v}"), rest),
        _ => return Err(not_served()),
    };
    let ["namespaces", ns, plural, rest @ ..] = rest else {
        return Err(not_served());
    };
    let res = Res::lookup(&api_version, plural).ok_or_else(not_served)?;
    let param = |k: &str| q.get(k).map(String::as_str);
    match (method.as_str(), rest) {
        ("GET", []) => {
            let sel = Selector::parse(param("labelSelector"), param("fieldSelector"))?;
            if matches!(param("watch"), Some("true" | "1")) {
                return watch(
                    c,
                    res,
                    ns,
                    sel,
                    param("resourceVersion"),
                    param("timeoutSeconds"),
                );
            }
            let (items, rv) = c.read(|s| (s.list(res, Some(ns), &sel), s.rv()));
            json_ok(
                200,
                &json!({
                    "apiVersion": res.api_version(),
                    "kind": format!("{}List", res.kind()),
                    "metadata": {"resourceVersion": rv.to_string()},
                    "items": items,
                }),
            )
        }
        ("POST", []) => json_ok(201, &c.create(res, ns, parse(body)?)?),
        ("GET", [name]) => json_ok(200, &c.read(|s| s.get(res, ns, name))?),
        ("PUT", [name]) => json_ok(200, &c.write(|s| s.replace(res, ns, name, parse(body)?))?),
        ("PATCH", [name]) => {
            let content_type = headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let kind = match content_type.split(';').next().unwrap_or("").trim() {
                "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                    PatchKind::Merge
                }
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
            if manager.is_empty() && kind != PatchKind::Merge {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                ));
            }
            let body = parse(body)?;
            json_ok(
                200,
                &c.write(|s| s.patch(res, ns, name, kind, &body, manager))?,
            )
        }
        ("DELETE", [name]) => {
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
        ("GET", [name, "log"]) if res == Res::Pods => pod_log(c, ns, name, q),
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("{method} is not supported on {path}"),
        )),
    }
}

/// A streaming watch: newline-delimited `{"type", "object"}` events.
fn watch(
    c: &Arc<Cluster>,
    res: Res,
    ns: &str,
    sel: Selector,
    rv: Option<&str>,
    timeout: Option<&str>,
) -> Result<Response, ApiError> {
    let line = |event: &str, obj: &Value| format!("{}\n", json!({"type": event, "object": obj}));
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
            let objects = s.list(res, Some(ns), &sel);
            let first: String = objects.iter().map(|o| line("ADDED", o)).collect();
            (first, s.cursor_after(s.rv()))
        }
        Some(rv) => (String::new(), s.cursor_after(rv)),
    });
    let state = (Arc::clone(c), ns.to_string(), sel, cursor, wake, first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let stream = futures_util::stream::unfold(state, move |mut st| async move {
        let (c, ns, sel, cursor, wake, first) = &mut st;
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
                    .filter(|ch| ch.res == res && ch.ns == *ns && sel.matches(&ch.object))
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
