//! The call span: OpenTelemetry attribute names, no secrets, no SQL text unless opted in.
//! Its own test binary: it installs a global `tracing` subscriber that captures output.

mod support;

use std::sync::{Arc, Mutex};

use mssql_resilience::Stack;
use mssql_testkit::tds::{DropPoint, Trigger};
use support::*;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_carry_otel_attributes_and_never_secrets() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .finish(),
    )
    .expect("the only subscriber in this binary");

    let regions = testkit().await;
    let config = regions.config("", 1, |_| {});
    let stack = Stack::builder(config).probes(false).build().unwrap();
    stack
        .call(exec("ddl", "CREATE TABLE t (a INT)", vec![]))
        .await
        .unwrap();
    regions
        .primary()
        .faults()
        .drop_responses(DropPoint::BeforeFinalDone, Trigger::Next(1));
    let err = stack
        .call(exec("span_write", "INSERT INTO t (a) VALUES (1)", vec![]))
        .await
        .unwrap_err();
    assert!(err.is_outcome_unknown());
    let logs = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    for needle in [
        "db.call{",
        "otel.kind=\"client\"",
        "db.system.name=\"microsoft.sql_server\"",
        "db.operation.name=span_write",
        "db.namespace=\"app\"",
        "write outcome unknown",
    ] {
        assert!(logs.contains(needle), "missing {needle:?} in:\n{logs}");
    }
    assert!(!logs.contains(PASSWORD), "a password leaked into the logs");
    assert!(
        !logs.contains("INSERT INTO t"),
        "SQL text is only logged when opted in"
    );

    // Opting in puts the statement on the span.
    let config = regions.config("", 1, |_| {});
    let verbose = Stack::builder(config)
        .probes(false)
        .record_query_text(true)
        .build()
        .unwrap();
    verbose
        .call(read("span_read", "SELECT COUNT(*) FROM t"))
        .await
        .unwrap();
    regions
        .primary()
        .faults()
        .drop_responses(DropPoint::BeforeFinalDone, Trigger::Next(1));
    let _ = verbose
        .call(read("span_read_fails", "SELECT a FROM t"))
        .await;
    let logs = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("db.query.text=\"SELECT a FROM t\""), "{logs}");
}
