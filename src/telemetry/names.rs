//! Metric names, in Prometheus form (the `metrics` facade's keys).

/// Call latency histogram (OpenTelemetry `db.client.operation.duration`).
pub const OPERATION_DURATION: &str = "db_client_operation_duration_seconds";
/// Attempts per region by outcome.
pub const ATTEMPTS: &str = "mssql_resilience_attempts_total";
/// Retries scheduled, by error type.
pub const RETRIES: &str = "mssql_resilience_retries_total";
/// Retries or failovers refused by the retry budget.
pub const RETRY_BUDGET_EXHAUSTED: &str = "mssql_resilience_retry_budget_exhausted_total";
/// One 0/1 gauge per breaker state.
pub const BREAKER_STATE: &str = "mssql_resilience_breaker_state";
/// Breaker transitions.
pub const BREAKER_TRANSITIONS: &str = "mssql_resilience_breaker_transitions_total";
/// Calls rejected by an open breaker.
pub const BREAKER_REJECTIONS: &str = "mssql_resilience_breaker_rejections_total";
/// Requests moved to another region within a call.
pub const FAILOVERS: &str = "mssql_resilience_failovers_total";
/// Slow reads also sent to the next region.
pub const HEDGES: &str = "mssql_resilience_hedges_total";
/// Serving-region changes.
pub const REGION_SWITCHES: &str = "mssql_resilience_region_switches_total";
/// 1 on the region serving an intent.
pub const REGION_SERVING: &str = "mssql_resilience_region_serving";
/// 1 when a region is not down (it answers probes or live requests).
pub const REGION_HEALTHY: &str = "mssql_resilience_region_healthy";
/// 1 when a region is degraded (slow, partly failing, or recovering).
pub const REGION_DEGRADED: &str = "mssql_resilience_region_degraded";
/// A region's smoothed round trip.
pub const REGION_RTT: &str = "mssql_resilience_region_rtt_seconds";
/// Background tasks (health probes) that panicked and were restarted.
pub const BACKGROUND_TASK_PANICS: &str = "mssql_resilience_background_task_panics_total";
/// Reads answered by a read-only region (possibly stale).
pub const STALE_READS: &str = "mssql_resilience_stale_reads_total";
/// 1 when a region is writable.
pub const REGION_WRITABLE: &str = "mssql_resilience_region_writable";
/// Requests in flight per region.
pub const REGION_IN_FLIGHT: &str = "mssql_resilience_region_in_flight";
/// The last probe's latency per region.
pub const PROBE_LATENCY: &str = "mssql_resilience_probe_latency_seconds";
/// Calls that ran out of their total budget.
pub const DEADLINE_EXCEEDED: &str = "mssql_resilience_deadline_exceeded_total";
/// Attempts that ran out of their own time.
pub const ATTEMPT_TIMEOUTS: &str = "mssql_resilience_attempt_timeouts_total";
/// Non-idempotent writes whose outcome is unknown.
pub const OUTCOME_UNKNOWN: &str = "mssql_resilience_outcome_unknown_total";
/// Gateway redirects followed.
pub const REDIRECTS: &str = "mssql_resilience_redirects_total";
/// Pool connections by state (OpenTelemetry `db.client.connection.count`).
pub const CONNECTION_COUNT: &str = "db_client_connection_count";
/// Pool maximum size (`db.client.connection.max`).
pub const CONNECTION_MAX: &str = "db_client_connection_max";
/// Pool checkouts that timed out (`db.client.connection.timeouts`).
pub const CONNECTION_TIMEOUTS: &str = "db_client_connection_timeouts_total";
/// Pool checkouts that had to wait.
pub const CONNECTION_WAITS: &str = "db_client_connection_waits_total";
/// Times a waiting checkout saw a new connection fail while every open one was busy (the
/// pool could not grow to meet demand).
pub const POOL_STARVED: &str = "mssql_resilience_pool_starved_waits_total";
/// Checkouts waiting for a connection now (`db.client.connection.pending_requests`).
pub const CONNECTION_PENDING: &str = "db_client_connection_pending_requests";
/// Time to open a connection (`db.client.connection.create_time`).
pub const CONNECTION_CREATE_TIME: &str = "db_client_connection_create_time_seconds";
/// Time a checkout waited (`db.client.connection.wait_time`).
pub const CONNECTION_WAIT_TIME: &str = "db_client_connection_wait_time_seconds";
/// Connections created.
pub const CONNECTION_CREATED: &str = "db_client_connection_created_total";

/// `db.system.name` for SQL Server.
pub const DB_SYSTEM: &str = "microsoft.sql_server";
