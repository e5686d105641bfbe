//! The HTTP/JSON control API of a proxy (see [`control_router`]).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use super::proxy::ChaosHandle;
use super::schedule::Schedule;
use super::toxics::Toxics;

/// The control API as an axum [`Router`], for [`ChaosProxy::serve_control`] or
/// to mount in another server. Every response body is JSON; errors are
/// `{"error": "..."}` with status 400 (bad input) or 404 (unknown path).
///
/// | Request | Effect | Response |
/// |---|---|---|
/// | `GET /counters` | | [`CountersSnapshot`] |
/// | `GET /toxics` | | the [`Toxics`] in force |
/// | `PUT /toxics` (JSON toxics) | set them; cancels a running schedule | the toxics |
/// | `DELETE /toxics` | back to ok; cancels a running schedule | the toxics |
/// | `POST /reset` | reset every open connection once | `{"reset": true}` |
/// | `GET /schedule` | | `{"running": false}` or `{"running": true, "elapsed": "3s", "schedule": {...}, "outages": [...]}` |
/// | `POST /schedule` (TOML schedule) | play it from now, replacing any other | `{"running": true, "phases": N, "outages": [...]}` |
/// | `DELETE /schedule` | stop the schedule (toxics stay) | `{"cancelled": bool}` |
///
/// Request bodies are read whatever their `Content-Type`. Toxics take every key of
/// the [toxics form](super::toxics), `toxicity` included: `PUT /toxics` with
/// `{"mode": "reset", "toxicity": 0.3}` resets about 30 % of the connections (a
/// seeded choice, see [`Toxicity`](super::Toxicity)).
///
/// [`ChaosProxy::serve_control`]: super::ChaosProxy::serve_control
/// [`CountersSnapshot`]: super::CountersSnapshot
pub fn control_router(handle: ChaosHandle) -> Router {
    Router::new()
        .route("/counters", get(get_counters))
        .route(
            "/toxics",
            get(get_toxics).put(put_toxics).delete(delete_toxics),
        )
        .route("/reset", post(post_reset))
        .route(
            "/schedule",
            get(get_schedule)
                .post(post_schedule)
                .delete(delete_schedule),
        )
        .fallback(not_found)
        .with_state(handle)
}

fn bad_request(message: impl std::fmt::Display) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": message.to_string() })),
    )
        .into_response()
}

async fn get_counters(State(handle): State<ChaosHandle>) -> Response {
    Json(handle.counters()).into_response()
}

async fn get_toxics(State(handle): State<ChaosHandle>) -> Response {
    Json(handle.toxics()).into_response()
}

async fn put_toxics(State(handle): State<ChaosHandle>, body: Bytes) -> Response {
    match serde_json::from_slice::<Toxics>(&body) {
        Ok(toxics) => {
            handle.cancel_schedule();
            handle.set(toxics);
            Json(handle.toxics()).into_response()
        }
        Err(e) => bad_request(format!("invalid toxics: {e}")),
    }
}

async fn delete_toxics(State(handle): State<ChaosHandle>) -> Response {
    handle.cancel_schedule();
    handle.clear();
    Json(handle.toxics()).into_response()
}

async fn post_reset(State(handle): State<ChaosHandle>) -> Response {
    handle.reset_connections();
    Json(json!({ "reset": true })).into_response()
}

async fn get_schedule(State(handle): State<ChaosHandle>) -> Response {
    match handle.running_schedule() {
        None => Json(json!({ "running": false })).into_response(),
        Some(running) => Json(json!({
            "running": true,
            "elapsed": super::format_duration(std::time::Duration::from_millis(
                u64::try_from(running.elapsed.as_millis()).unwrap_or(u64::MAX),
            )),
            "outages": running.schedule.outage_windows(),
            "schedule": running.schedule,
        }))
        .into_response(),
    }
}

async fn post_schedule(State(handle): State<ChaosHandle>, body: Bytes) -> Response {
    let Ok(text) = std::str::from_utf8(&body) else {
        return bad_request("the schedule must be UTF-8 TOML");
    };
    match Schedule::from_toml_str(text) {
        Ok(schedule) => {
            let phases = schedule.phases().len();
            let outages = schedule.outage_windows();
            handle.run_schedule(schedule).detach();
            Json(json!({ "running": true, "phases": phases, "outages": outages })).into_response()
        }
        Err(e) => bad_request(e),
    }
}

async fn delete_schedule(State(handle): State<ChaosHandle>) -> Response {
    Json(json!({ "cancelled": handle.cancel_schedule() })).into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({
            "error": "no such endpoint; try GET /counters, GET|PUT|DELETE /toxics, POST /reset, GET|POST|DELETE /schedule"
        })),
    )
        .into_response()
}
