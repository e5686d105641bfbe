//! The outermost layer: a `tracing` span per call and the call-latency histogram.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use metrics::{counter, histogram};
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower::{Layer, Service};

use super::names::{DB_SYSTEM, OPERATION_DURATION, OUTCOME_UNKNOWN};
use crate::error::{Error, ErrorKind};
use crate::request::{HasContext, WithContext};
use crate::sql::SqlRequest;

/// Requests whose statement text can be put on spans (only when the user opts in).
pub trait QueryText {
    /// The SQL text, if the request has one.
    fn query_text(&self) -> Option<&str> {
        None
    }
}

impl QueryText for SqlRequest {
    fn query_text(&self) -> Option<&str> {
        self.sql()
    }
}

impl<T> QueryText for WithContext<T> {}

/// Adds [`Telemetry`] around a service.
#[derive(Debug, Clone)]
pub struct TelemetryLayer {
    /// Shared: every call clones the layer.
    namespace: Option<std::sync::Arc<str>>,
    record_query_text: bool,
    metrics: bool,
}

impl Default for TelemetryLayer {
    fn default() -> Self {
        TelemetryLayer {
            namespace: None,
            record_query_text: false,
            metrics: true,
        }
    }
}

impl TelemetryLayer {
    /// Spans and metrics with no `db.namespace` and no SQL text.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the call histogram and the outcome-unknown counter. Defaults to `true`;
    /// spans are recorded either way.
    pub fn metrics(mut self, enabled: bool) -> Self {
        self.metrics = enabled;
        self
    }

    /// Sets `db.namespace` (the database name) on spans. Defaults to unset.
    pub fn namespace(mut self, database: impl Into<String>) -> Self {
        self.namespace = Some(database.into().into());
        self
    }

    /// Puts the statement text on spans as `db.query.text`. Defaults to `false`: SQL text
    /// can carry personal data and is high-cardinality; it never goes into metrics.
    pub fn record_query_text(mut self, enabled: bool) -> Self {
        self.record_query_text = enabled;
        self
    }
}

impl<S> Layer<S> for TelemetryLayer {
    type Service = Telemetry<S>;

    fn layer(&self, inner: S) -> Telemetry<S> {
        Telemetry {
            inner,
            layer: self.clone(),
        }
    }
}

/// A client span per call (OpenTelemetry database attribute names) and
/// `db_client_operation_duration_seconds`, labelled by operation, outcome and error type.
/// Counts writes whose outcome is unknown.
#[derive(Debug, Clone)]
pub struct Telemetry<S> {
    inner: S,
    layer: TelemetryLayer,
}

impl<S, Req> Service<Req> for Telemetry<S>
where
    S: Service<Req, Error = Error>,
    Req: HasContext + QueryText,
{
    type Response = S::Response;
    type Error = Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let operation = req.context().operation_cow();
        let span = tracing::info_span!(
            "db.call",
            otel.kind = "client",
            db.system.name = DB_SYSTEM,
            db.namespace = self.layer.namespace.as_deref(),
            db.operation.name = %operation,
            db.query.text = tracing::field::Empty,
            region = tracing::field::Empty,
            server.address = tracing::field::Empty,
            server.port = tracing::field::Empty,
            db.response.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
            intent = req.context().intent().as_str(),
        );
        if self.layer.record_query_text {
            if let Some(text) = req.query_text() {
                span.record("db.query.text", text);
            }
        }
        let future = {
            let _entered = enter(&span);
            self.inner.call(req)
        };
        ResponseFuture {
            inner: future,
            span,
            operation,
            // The clock is read only for the histogram.
            start: self.layer.metrics.then(Instant::now),
        }
    }
}

pin_project! {
    /// Response future of [`Telemetry`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        // Entered around each poll of `inner` (see `enter`).
        span: tracing::Span,
        operation: std::borrow::Cow<'static, str>,
        // When the call started, with metrics on (`None`: metrics off).
        start: Option<Instant>,
    }
}

/// Enters `span` unless it is disabled: with nothing listening, entering would only cost
/// time (tiberius turns on `tracing`'s `log` feature, which logs every enter and exit).
fn enter(span: &tracing::Span) -> Option<tracing::span::Entered<'_>> {
    (!span.is_disabled()).then(|| span.enter())
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, T> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, Error>>,
{
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _entered = enter(this.span);
            ready!(this.inner.poll(cx))
        };
        let seconds = this.start.map(|start| start.elapsed().as_secs_f64());
        let metrics = seconds.is_some();
        let seconds = seconds.unwrap_or_default();
        // A `Cow::Borrowed` operation name is passed on without allocating.
        let operation = this.operation.clone();
        match &result {
            Ok(_) if !metrics => {}
            Ok(_) => histogram!(
                OPERATION_DURATION,
                "db_system_name" => DB_SYSTEM,
                "db_operation_name" => operation,
                "outcome" => "success",
                "error_type" => ""
            )
            .record(seconds),
            Err(error) => {
                let error_type = error.kind().as_str();
                this.span.record("error.type", error_type);
                if let ErrorKind::Server { number, .. } = error.kind() {
                    this.span
                        .record("db.response.status_code", number.to_string());
                }
                if error.is_outcome_unknown() {
                    if metrics {
                        counter!(OUTCOME_UNKNOWN, "db_operation_name" => operation.clone())
                            .increment(1);
                    }
                    this.span
                        .in_scope(|| tracing::warn!("write outcome unknown: {}", error.for_logs()));
                }
                if !metrics {
                    return Poll::Ready(result);
                }
                histogram!(
                    OPERATION_DURATION,
                    "db_system_name" => DB_SYSTEM,
                    "db_operation_name" => operation,
                    "outcome" => "error",
                    "error_type" => error_type
                )
                .record(seconds);
            }
        }
        Poll::Ready(result)
    }
}
