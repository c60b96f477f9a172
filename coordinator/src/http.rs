//! The HTTP listener: `/healthz`, `/readyz`, `/metrics`, and the task API (`POST /tasks`,
//! `GET /tasks/{id}`, `GET /tasks?status=…&limit=…`).
//!
//! The task API is a task source beside the configured one: a submitted task is validated
//! (400 with the reason), capped in size (413), idempotent on `task_id` (a known id
//! answers 200 with its current state and queues nothing; the same id for a different task
//! is 409), and recorded in the ledger before the answer (202). Reads come from the
//! ledger. Every error answer is a JSON object `{"error": "…"}`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;

use crate::backend::Backend;
use crate::ledger::{Accepted, Filter};
use crate::reconciler::Observers;
use crate::source::{Intake, IntakeError};
use crate::task::Task;

/// Largest `POST /tasks` body: a task is four short strings.
pub const MAX_BODY: usize = 64 * 1024;
/// Largest `limit` of `GET /tasks`.
pub const MAX_LIST: usize = 1000;
/// About the most bytes of tasks and reports one `GET /tasks` answer holds (at least one
/// task): a report can be a megabyte.
pub const MAX_LIST_BYTES: usize = 16 << 20;

/// What `/readyz` checks.
pub struct Readiness {
    /// Closed once no task can come any more.
    pub intake: Arc<Intake>,
    /// Asked on every probe: its binaries (local) or the API server (kubernetes).
    pub backend: Arc<dyn Backend>,
    /// With leader election: whether this replica holds the Lease. A follower is ready
    /// (so that rolling updates proceed) and takes tasks too (they go into the shared
    /// ledger, the WasmTasks; the leader runs them).
    pub leading: Option<Arc<AtomicBool>>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("intake_open", &self.intake.is_open())
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct App {
    observers: Arc<Observers>,
    intake: Arc<Intake>,
    ready: Arc<Readiness>,
}

pub fn router(observers: Arc<Observers>, intake: Arc<Intake>, ready: Arc<Readiness>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/tasks", get(list_tasks).post(submit))
        .route("/tasks/{id}", get(get_task))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(App {
            observers,
            intake,
            ready,
        })
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

async fn readyz(State(app): State<App>) -> Response {
    let mut problems = Vec::new();
    if !app.ready.intake.is_open() {
        problems.push(
            "the coordinator takes no more tasks (its source is drained, or it is stopping)"
                .to_string(),
        );
    }
    if let Err(why) = app.ready.backend.ready().await {
        problems.extend(why.iter().map(ToString::to_string));
    }
    if let Err(why) = app.intake.ledger().ready().await {
        problems.push(why);
    }
    problems.extend(app.observers.publishing.problems());
    if problems.is_empty() {
        let role = match &app.ready.leading {
            Some(l) if l.load(Ordering::SeqCst) => " (leader)",
            Some(_) => " (follower: takes tasks into the ledger; the leader runs them)",
            None => "",
        };
        (StatusCode::OK, format!("ready{role}\n")).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", problems.join("; ")),
        )
            .into_response()
    }
}

async fn metrics(State(app): State<App>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.observers.metrics.render(),
    )
        .into_response()
}

async fn submit(State(app): State<App>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            let why = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                format!("the body is larger than {MAX_BODY} bytes; a task is four short strings")
            } else {
                e.body_text()
            };
            return error(e.status(), why);
        }
    };
    // Deserializing validates (see `Task`): the reason names the field.
    let task: Task = match serde_json::from_slice(&body) {
        Ok(t) => t,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("the body is not a valid task ({{\"task_id\", \"wasm_cid\", optional \"input_cid\", \"entry\"}}): {e}"),
            )
        }
    };
    match app.intake.accept(vec![task]).await {
        Ok(mut accepted) => match accepted.pop() {
            Some(Accepted::New(entry)) => (StatusCode::ACCEPTED, Json(entry)).into_response(),
            Some(Accepted::Known(entry)) => (StatusCode::OK, Json(entry)).into_response(),
            Some(Accepted::Conflict { known, .. }) => error(
                StatusCode::CONFLICT,
                format!(
                    "task_id {:?} is already recorded for a different task (module, input or entry); give the new task its own id (GET /tasks/{{id}} shows the recorded one)",
                    runner::result::cap_text(&known.task_id, 256)
                ),
            ),
            None => error(StatusCode::INTERNAL_SERVER_ERROR, "the ledger answered nothing"),
        },
        Err(IntakeError::Closed) => error(StatusCode::SERVICE_UNAVAILABLE, IntakeError::Closed.to_string()),
        Err(IntakeError::Ledger(e)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the task could not be recorded, so it is not accepted; try again: {e}"),
        ),
    }
}

async fn not_found(uri: axum::http::Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!(
            "no such endpoint {}: try /healthz, /readyz, /metrics, /tasks, /tasks/{{id}}",
            runner::result::cap_text(uri.path(), 256)
        ),
    )
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{method} is not allowed on {}: tasks are submitted with POST /tasks and read with GET",
            runner::result::cap_text(uri.path(), 256)
        ),
    )
}

async fn get_task(State(app): State<App>, id: Result<Path<String>, PathRejection>) -> Response {
    let id = match id {
        Ok(Path(id)) => id,
        Err(e) => return error(e.status(), e.body_text()),
    };
    let ledger = app.intake.ledger();
    match ledger.get(id.clone()).await {
        Ok(Some(entry)) => {
            // With what sinks noted about its delivery (a transaction hash), if anything.
            let notes = match ledger.notes(id).await {
                Ok(n) => n,
                Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            };
            let mut v = serde_json::to_value(&entry).unwrap_or_default();
            if let (false, Some(obj)) = (notes.is_empty(), v.as_object_mut()) {
                obj.insert("notes".into(), serde_json::json!(notes));
            }
            Json(v).into_response()
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!(
                "no task {:?} is recorded in this coordinator's ledger",
                runner::result::cap_text(&id, 256)
            ),
        ),
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    status: Option<String>,
    limit: Option<usize>,
    /// Only tasks after this sequence number (the last `seq` of the previous page).
    after: Option<u64>,
}

async fn list_tasks(
    State(app): State<App>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("{} (GET /tasks?status=ok&limit=100&after=0)", e.body_text()),
            )
        }
    };
    let filter = match q.status.as_deref() {
        None => None,
        Some(s) => match Filter::parse(s) {
            Some(f) => Some(f),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "status={:?} is not a task state or status; use one of: {}",
                        runner::result::cap_text(s, 64),
                        Filter::choices()
                    ),
                )
            }
        },
    };
    let limit = q.limit.unwrap_or(100).min(MAX_LIST);
    // The ledger writes the page's JSON itself (the SQLite one on its reader thread, one
    // task at a time): the page is never held as entries and as text at once, and no async
    // worker keeps the memory of building it.
    match app
        .intake
        .ledger()
        .list_json(filter, q.after.unwrap_or(0), limit, MAX_LIST_BYTES)
        .await
    {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}
