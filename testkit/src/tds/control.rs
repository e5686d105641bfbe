//! The HTTP/JSON control endpoint (axum): set and clear faults, read counters.
//! Routes are documented in `testkit/README.md`.

use super::counters::Counters;
use super::errors::ErrorSpec;
use super::faults::{
    AcceptMode, DisconnectMode, DropPoint, Faults, QueryFault, StallFault, StallPoint, Trigger,
};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ErrorBody {
    number: u32,
    class: Option<u8>,
    state: Option<u8>,
    message: Option<String>,
}

impl ErrorBody {
    fn spec(&self) -> ErrorSpec {
        let mut e = ErrorSpec::known(self.number);
        if let Some(c) = self.class {
            e.class = c;
        }
        if let Some(s) = self.state {
            e.state = s;
        }
        if let Some(m) = &self.message {
            e.message = m.clone();
        }
        e
    }
}

#[derive(Debug, Default, Deserialize)]
struct TriggerBody {
    count: Option<u32>,
    always: Option<bool>,
    probability: Option<f64>,
    seed: Option<u64>,
}

impl TriggerBody {
    fn trigger(&self) -> Result<Trigger, (StatusCode, String)> {
        match (self.count, self.always, self.probability) {
            (Some(n), None | Some(false), None) => Ok(Trigger::Next(n)),
            (None, _, Some(p)) if (0.0..=1.0).contains(&p) => Ok(Trigger::Probability {
                p,
                seed: self.seed.unwrap_or(0),
            }),
            (None, _, None) => Ok(Trigger::Always),
            _ => Err((
                StatusCode::UNPROCESSABLE_ENTITY,
                "give at most one of count, always, probability (0.0-1.0)".into(),
            )),
        }
    }
}

#[derive(Debug, Deserialize)]
struct LoginBody {
    error: ErrorBody,
    #[serde(flatten)]
    trigger: TriggerBody,
}

#[derive(Debug, Deserialize)]
struct RedirectBody {
    host: String,
    port: u16,
    #[serde(flatten)]
    trigger: TriggerBody,
}

#[derive(Debug, Deserialize)]
struct QueryBody {
    error: ErrorBody,
    #[serde(rename = "match")]
    matching: Option<String>,
    close_connection: Option<bool>,
    #[serde(flatten)]
    trigger: TriggerBody,
}

#[derive(Debug, Deserialize)]
struct DelayBody {
    ms: u64,
}

#[derive(Debug, Deserialize)]
struct EnabledBody {
    enabled: bool,
    mode: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DropBody {
    after_bytes: Option<usize>,
    before_final_done: Option<bool>,
    #[serde(flatten)]
    trigger: TriggerBody,
}

#[derive(Debug, Deserialize)]
struct StallBody {
    after_rows: Option<usize>,
    after_bytes: Option<usize>,
    #[serde(rename = "match")]
    matching: Option<String>,
    #[serde(flatten)]
    trigger: TriggerBody,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DisconnectBody {
    mode: DisconnectMode,
}

type Reply = Result<Json<Value>, (StatusCode, String)>;

fn ok() -> Reply {
    Ok(Json(json!({"ok": true})))
}

async fn counters(State(f): State<Faults>) -> Json<Counters> {
    Json(f.counters())
}

async fn login(State(f): State<Faults>, Json(b): Json<LoginBody>) -> Reply {
    f.fail_logins(b.error.spec(), b.trigger.trigger()?);
    ok()
}

async fn redirect(State(f): State<Faults>, Json(b): Json<RedirectBody>) -> Reply {
    f.redirect_logins(b.host, b.port, b.trigger.trigger()?);
    ok()
}

async fn query(State(f): State<Faults>, Json(b): Json<QueryBody>) -> Reply {
    let mut q = QueryFault::new(b.error.spec(), b.trigger.trigger()?);
    q.matching = b.matching;
    if let Some(c) = b.close_connection {
        q.close_connection = c;
    }
    f.fail_queries(q);
    ok()
}

async fn delay(State(f): State<Faults>, Json(b): Json<DelayBody>) -> Reply {
    f.set_query_delay(Duration::from_millis(b.ms));
    ok()
}

async fn read_only(State(f): State<Faults>, Json(b): Json<EnabledBody>) -> Reply {
    f.set_read_only(b.enabled);
    ok()
}

async fn drop_fault(State(f): State<Faults>, Json(b): Json<DropBody>) -> Reply {
    let point = match (b.after_bytes, b.before_final_done) {
        (Some(n), None | Some(false)) => DropPoint::AfterBytes(n),
        (None, Some(true)) => DropPoint::BeforeFinalDone,
        _ => {
            return Err((
                StatusCode::UNPROCESSABLE_ENTITY,
                "give either after_bytes or before_final_done: true".into(),
            ))
        }
    };
    f.drop_responses(point, b.trigger.trigger()?);
    ok()
}

async fn stall(State(f): State<Faults>, Json(b): Json<StallBody>) -> Reply {
    let point = match (b.after_rows, b.after_bytes) {
        (Some(n), None) => StallPoint::AfterRows(n),
        (None, Some(n)) => StallPoint::AfterBytes(n),
        _ => {
            return Err((
                StatusCode::UNPROCESSABLE_ENTITY,
                "give either after_rows or after_bytes".into(),
            ))
        }
    };
    let mut fault = StallFault::new(point, b.trigger.trigger()?);
    fault.matching = b.matching;
    f.stall_responses(fault);
    ok()
}

async fn tls_stall(State(f): State<Faults>, Json(b): Json<TriggerBody>) -> Reply {
    f.stall_tls_handshakes(b.trigger()?);
    ok()
}

async fn disconnect(State(f): State<Faults>, Json(b): Json<DisconnectBody>) -> Reply {
    f.set_disconnect_mode(b.mode);
    ok()
}

async fn accept(State(f): State<Faults>, Json(b): Json<EnabledBody>) -> Reply {
    let mode = if b.enabled {
        AcceptMode::Normal
    } else {
        match b.mode.as_deref() {
            None | Some("close") => AcceptMode::CloseImmediately,
            Some("refuse") => AcceptMode::Refuse,
            Some(other) => {
                return Err((
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("unknown mode {other:?} (use \"close\" or \"refuse\")"),
                ))
            }
        }
    };
    f.set_accept_mode(mode);
    ok()
}

async fn kill(State(f): State<Faults>) -> Reply {
    let n = f.kill_sessions();
    Ok(Json(json!({"ok": true, "killed": n})))
}

async fn clear(State(f): State<Faults>) -> Reply {
    f.clear();
    ok()
}

/// The control routes over a [`Faults`] handle.
fn router(faults: Faults) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/counters", get(counters))
        .route("/faults", delete(clear))
        .route("/faults/login", post(login))
        .route("/faults/redirect", post(redirect))
        .route("/faults/query", post(query))
        .route("/faults/delay", post(delay))
        .route("/faults/read-only", post(read_only))
        .route("/faults/drop", post(drop_fault))
        .route("/faults/stall", post(stall))
        .route("/faults/tls-stall", post(tls_stall))
        .route("/faults/disconnect", post(disconnect))
        .route("/faults/accept", post(accept))
        .route("/sessions/kill", post(kill))
        .with_state(faults)
}

/// Serves the control endpoint until `stop` turns true.
pub(crate) async fn serve(listener: TcpListener, faults: Faults, mut stop: watch::Receiver<bool>) {
    let shutdown = async move {
        let _ = stop.wait_for(|v| *v).await;
    };
    if let Err(e) = axum::serve(listener, router(faults))
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::warn!(error = %e, "control endpoint stopped");
    }
}
