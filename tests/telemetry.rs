//! Metrics and spans over real scenarios (a failover, a breaker opening), checked with
//! `metrics-util`'s debugging recorder. One recorder serves the whole test binary, so each
//! test uses its own region and operation names.

mod support;

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Key, Label};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::{CompositeKey, MetricKind};
use mssql_resilience::circuit_breaker::BreakerState;
use mssql_resilience::sql::SqlRequest;
use mssql_resilience::telemetry::{describe_metrics, names, record_gauges};
use mssql_resilience::{RequestContext, Stack};
use mssql_testkit::chaos::Toxics;
use support::*;

fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder
            .install()
            .expect("the only recorder in this binary");
        describe_metrics();
        snapshotter
    })
}

type Metrics = Vec<(CompositeKey, Option<metrics::Unit>, DebugValue)>;

fn metrics() -> Metrics {
    snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(k, unit, _, v)| (k, unit, v))
        .collect()
}

fn key_matches(key: &Key, name: &str, labels: &[(&str, &str)]) -> bool {
    key.name() == name
        && labels.iter().all(|(k, v)| {
            key.labels()
                .any(|l: &Label| l.key() == *k && l.value() == *v)
        })
}

fn counter(m: &Metrics, name: &str, labels: &[(&str, &str)]) -> u64 {
    m.iter()
        .filter(|(k, _, _)| k.kind() == MetricKind::Counter && key_matches(k.key(), name, labels))
        .map(|(_, _, v)| match v {
            DebugValue::Counter(n) => *n,
            _ => 0,
        })
        .sum()
}

fn gauge(m: &Metrics, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    m.iter()
        .find(|(k, _, _)| k.kind() == MetricKind::Gauge && key_matches(k.key(), name, labels))
        .map(|(_, _, v)| match v {
            DebugValue::Gauge(g) => g.into_inner(),
            _ => f64::NAN,
        })
}

fn histogram_count(m: &Metrics, name: &str, labels: &[(&str, &str)]) -> usize {
    m.iter()
        .filter(|(k, _, _)| k.kind() == MetricKind::Histogram && key_matches(k.key(), name, labels))
        .map(|(_, _, v)| match v {
            DebugValue::Histogram(h) => h.len(),
            _ => 0,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_shows_in_the_metrics() {
    snapshotter();
    let regions = testkit().await;
    let config = regions.config("", 2, |c| {
        c.regions[0].name = "tele_west".into();
        c.regions[1].name = "tele_north".into();
    });
    let stack = Stack::builder(config).build().unwrap();
    assert!(stack.wait_for_probes(Duration::from_secs(5)).await);
    regions.primary().chaos().set(Toxics::blackhole());
    for _ in 0..10 {
        let request = SqlRequest::query(RequestContext::read("tele_failover_read"), "SELECT 1", []);
        stack.call(request).await.unwrap();
    }
    eventually(
        "the probe marks tele_west unhealthy",
        Duration::from_secs(5),
        || {
            stack
                .health()
                .iter()
                .any(|r| r.name == "tele_west" && !r.healthy)
        },
    )
    .await;
    record_gauges(&stack);
    let m = metrics();
    let op = ("db_operation_name", "tele_failover_read");
    assert_eq!(
        histogram_count(
            &m,
            names::OPERATION_DURATION,
            &[
                op,
                ("outcome", "success"),
                ("db_system_name", "microsoft.sql_server")
            ]
        ),
        10
    );
    assert_eq!(
        histogram_count(&m, names::OPERATION_DURATION, &[op, ("outcome", "error")]),
        0
    );
    assert!(
        counter(
            &m,
            names::FAILOVERS,
            &[
                ("from", "tele_west"),
                ("to", "tele_north"),
                ("intent", "read")
            ]
        ) >= 1
    );
    assert_eq!(
        counter(
            &m,
            names::REGION_SWITCHES,
            &[
                ("intent", "read"),
                ("from", "tele_west"),
                ("to", "tele_north")
            ]
        ),
        1
    );
    let failed_on_west = counter(
        &m,
        names::ATTEMPTS,
        &[("region", "tele_west"), ("outcome", "ambiguous")],
    ) + counter(
        &m,
        names::ATTEMPTS,
        &[("region", "tele_west"), ("outcome", "not_sent")],
    );
    assert!(failed_on_west >= 1);
    assert!(
        counter(
            &m,
            names::ATTEMPTS,
            &[("region", "tele_north"), ("outcome", "success")]
        ) >= 10
    );
    assert_eq!(
        gauge(&m, names::REGION_HEALTHY, &[("region", "tele_west")]),
        Some(0.0)
    );
    assert_eq!(
        gauge(&m, names::REGION_HEALTHY, &[("region", "tele_north")]),
        Some(1.0)
    );
    assert_eq!(
        gauge(
            &m,
            names::REGION_SERVING,
            &[("region", "tele_north"), ("intent", "read")]
        ),
        Some(1.0)
    );
    assert_eq!(
        gauge(
            &m,
            names::REGION_SERVING,
            &[("region", "tele_west"), ("intent", "read")]
        ),
        Some(0.0)
    );
    assert_eq!(
        gauge(&m, names::CONNECTION_MAX, &[("region", "tele_north")]),
        Some(4.0)
    );
    assert!(
        histogram_count(
            &m,
            names::CONNECTION_CREATE_TIME,
            &[("region", "tele_north")]
        ) >= 1
    );
    assert!(histogram_count(&m, names::CONNECTION_WAIT_TIME, &[("region", "tele_north")]) >= 10);
    assert_eq!(
        gauge(&m, names::CONNECTION_PENDING, &[("region", "tele_north")]),
        Some(0.0)
    );
    // Units come from describe_metrics().
    let unit = m
        .iter()
        .find(|(k, _, _)| k.key().name() == names::OPERATION_DURATION)
        .and_then(|(_, u, _)| *u);
    assert_eq!(unit, Some(metrics::Unit::Seconds));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_opening_shows_in_the_metrics() {
    snapshotter();
    let regions = testkit().await;
    let config = regions.config("", 1, |c| {
        c.regions[0].name = "tele_solo".into();
        c.retry.max_attempts = 1;
    });
    let stack = Stack::builder(config).probes(false).build().unwrap();
    regions.primary().chaos().set(Toxics::reset());
    for _ in 0..8 {
        let request = SqlRequest::query(RequestContext::read("tele_breaker_read"), "SELECT 1", []);
        let _ = stack.call(request).await;
    }
    assert_eq!(
        stack.router().breaker("tele_solo").unwrap().state(),
        BreakerState::Open
    );
    record_gauges(&stack);
    let m = metrics();
    let region = ("region", "tele_solo");
    assert_eq!(
        counter(
            &m,
            names::BREAKER_TRANSITIONS,
            &[region, ("from", "closed"), ("to", "open")]
        ),
        1
    );
    assert_eq!(
        gauge(&m, names::BREAKER_STATE, &[region, ("state", "open")]),
        Some(1.0)
    );
    assert_eq!(
        gauge(&m, names::BREAKER_STATE, &[region, ("state", "closed")]),
        Some(0.0)
    );
    let op = ("db_operation_name", "tele_breaker_read");
    assert_eq!(
        histogram_count(&m, names::OPERATION_DURATION, &[op, ("outcome", "error")]),
        8
    );
    // Once the breaker is open, the only region is still tried (nowhere better to go):
    // every call ends with the region's own error, never "no region available".
    assert_eq!(
        histogram_count(
            &m,
            names::OPERATION_DURATION,
            &[op, ("error_type", "no_region_available")]
        ),
        0
    );
    let err = stack
        .call(SqlRequest::query(
            RequestContext::read("tele_breaker_read"),
            "SELECT 1",
            [],
        ))
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("breaker open"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcome_unknown_writes_are_counted() {
    snapshotter();
    let regions = testkit().await;
    let config = regions.config("", 1, |c| c.regions[0].name = "tele_unknown".into());
    let stack = Stack::builder(config).probes(false).build().unwrap();
    stack
        .call(exec("ddl", "CREATE TABLE t (a INT)", vec![]))
        .await
        .unwrap();
    regions.primary().faults().drop_responses(
        mssql_testkit::tds::DropPoint::BeforeFinalDone,
        mssql_testkit::tds::Trigger::Next(1),
    );
    let err = stack
        .call(exec(
            "tele_unknown_write",
            "INSERT INTO t (a) VALUES (1)",
            vec![],
        ))
        .await
        .unwrap_err();
    assert!(err.is_outcome_unknown());
    let m = metrics();
    assert_eq!(
        counter(
            &m,
            names::OUTCOME_UNKNOWN,
            &[("db_operation_name", "tele_unknown_write")]
        ),
        1
    );
}
