//! Telemetry: metrics through the `metrics` facade, `tracing` spans, and health as
//! `application/health+json`.
//!
//! The library only uses the facades; the application installs a recorder (for example
//! `metrics-exporter-prometheus`, or [`prometheus::install`] with the `prometheus`
//! feature) and a `tracing` subscriber. Then:
//!
//! 1. call [`describe_metrics`] once after installing the recorder;
//! 2. pass [`MetricsObserver`] to [`StackBuilder::observer`](crate::StackBuilder::observer)
//!    so retries, budgets, breakers, failovers and health changes become metrics;
//! 3. call [`record_gauges`] before each scrape (pool figures and region state);
//! 4. the stack's outermost [`TelemetryLayer`] opens a client span per call and records
//!    `db_client_operation_duration_seconds`.
//!
//! Names follow OpenTelemetry's database conventions in Prometheus form (base units,
//! `_total` on counters); every label is bounded and lower-case: region, intent, outcome,
//! state, error type, and the operation name the caller chose — never SQL text.

pub mod health;
mod layer;
mod metrics;
pub mod names;
#[cfg(feature = "prometheus")]
pub mod prometheus;
pub mod status_line;

pub use self::layer::{QueryText, Telemetry, TelemetryLayer};
pub use self::metrics::{record_gauges, MetricsObserver};

use ::metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use names::*;

/// Describes every metric (type, unit, help text) to the installed recorder.
pub fn describe_metrics() {
    describe_histogram!(
        OPERATION_DURATION,
        Unit::Seconds,
        "Duration of database client calls through the whole resilience stack."
    );
    describe_counter!(
        ATTEMPTS,
        Unit::Count,
        "Attempts on a region, by outcome (success, not_sent, rejected, ambiguous)."
    );
    describe_counter!(
        RETRIES,
        Unit::Count,
        "Retries scheduled, by the error type being retried."
    );
    describe_counter!(
        RETRY_BUDGET_EXHAUSTED,
        Unit::Count,
        "Retries or failovers refused because the retry budget was spent."
    );
    describe_gauge!(
        BREAKER_STATE,
        Unit::Count,
        "Circuit breaker state: 1 for the current state, 0 for the others."
    );
    describe_counter!(
        BREAKER_TRANSITIONS,
        Unit::Count,
        "Circuit breaker state transitions."
    );
    describe_counter!(
        BREAKER_REJECTIONS,
        Unit::Count,
        "Calls rejected by an open circuit breaker."
    );
    describe_counter!(
        FAILOVERS,
        Unit::Count,
        "Requests moved to another region within one call."
    );
    describe_counter!(
        REGION_SWITCHES,
        Unit::Count,
        "Changes of the region serving reads or writes."
    );
    describe_gauge!(
        REGION_SERVING,
        Unit::Count,
        "1 on the region currently serving the intent."
    );
    describe_gauge!(
        REGION_HEALTHY,
        Unit::Count,
        "1 when the region is not down: it answers probes or live requests."
    );
    describe_gauge!(
        REGION_DEGRADED,
        Unit::Count,
        "1 when the region is degraded: slow, partly failing, or recovering."
    );
    describe_gauge!(
        REGION_RTT,
        Unit::Seconds,
        "The region's smoothed round trip (probes and live answers)."
    );
    describe_counter!(
        STALE_READS,
        Unit::Count,
        "Reads answered by a read-only region, which may lag the primary."
    );
    describe_gauge!(
        REGION_WRITABLE,
        Unit::Count,
        "1 when the region accepts writes."
    );
    describe_gauge!(
        REGION_IN_FLIGHT,
        Unit::Count,
        "Requests in flight on the region."
    );
    describe_gauge!(
        PROBE_LATENCY,
        Unit::Seconds,
        "Latency of the region's last health probe."
    );
    describe_counter!(
        DEADLINE_EXCEEDED,
        Unit::Count,
        "Calls that ran out of their total time budget."
    );
    describe_counter!(
        ATTEMPT_TIMEOUTS,
        Unit::Count,
        "Attempts that ran out of their own timeout."
    );
    describe_counter!(
        OUTCOME_UNKNOWN,
        Unit::Count,
        "Non-idempotent writes that failed ambiguously: they may or may not have committed."
    );
    describe_counter!(
        REDIRECTS,
        Unit::Count,
        "Azure gateway redirects followed while connecting."
    );
    describe_gauge!(
        CONNECTION_COUNT,
        Unit::Count,
        "Pool connections by state (idle, used)."
    );
    describe_gauge!(CONNECTION_MAX, Unit::Count, "Pool maximum size.");
    describe_counter!(
        CONNECTION_TIMEOUTS,
        Unit::Count,
        "Pool checkouts that timed out."
    );
    describe_counter!(
        CONNECTION_WAITS,
        Unit::Count,
        "Pool checkouts that had to wait for a connection."
    );
    describe_counter!(
        POOL_STARVED,
        Unit::Count,
        "Times a waiting pool checkout saw a new connection fail while every open one was busy: demand above what the pool has, and it cannot grow (the region counts as degraded)."
    );
    describe_gauge!(
        CONNECTION_PENDING,
        Unit::Count,
        "Pool checkouts waiting for a connection."
    );
    describe_histogram!(
        CONNECTION_CREATE_TIME,
        Unit::Seconds,
        "Time to open a connection (TCP, PRELOGIN, login, redirects)."
    );
    describe_histogram!(
        CONNECTION_WAIT_TIME,
        Unit::Seconds,
        "Time a pool checkout waited."
    );
    describe_counter!(CONNECTION_CREATED, Unit::Count, "Pool connections created.");
}
