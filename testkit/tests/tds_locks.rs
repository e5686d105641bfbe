//! What the testkit's locking models: SQLite's single writer stands in for SQL Server's
//! row locks. A second writer waits for the first one's transaction (up to the server's
//! `busy_timeout`) and then fails with 1222, as a SQL Server session with `SET
//! LOCK_TIMEOUT` would; readers see the last committed state and never wait (like
//! READ_COMMITTED_SNAPSHOT). See the README's "Locking" limits for what this does not prove.

mod tds_common;

use std::time::Duration;

use mssql_testkit::tds::{TdsServer, TdsServerConfig};
use tds_common::*;

async fn server(busy_timeout: Duration) -> TdsServer {
    let config = TdsServerConfig {
        busy_timeout,
        ..TdsServerConfig::new(USER, PASSWORD)
    };
    TdsServer::start(config).await.expect("server starts")
}

/// Two sessions; the first has inserted row 1 in a transaction it has not committed.
async fn writer_holding_the_lock(busy_timeout: Duration) -> (TdsServer, TestClient, TestClient) {
    let server = server(busy_timeout).await;
    let mut a = connect(&server).await;
    let b = connect(&server).await;
    batch(&mut a, "CREATE TABLE t (id INT NOT NULL PRIMARY KEY)")
        .await
        .unwrap();
    batch(&mut a, "BEGIN TRANSACTION; INSERT INTO t (id) VALUES (1)")
        .await
        .unwrap();
    (server, a, b)
}

fn count(rows: &[Vec<tiberius::Row>]) -> i64 {
    rows[0][0]
        .try_get::<i32, _>(0)
        .ok()
        .flatten()
        .map(i64::from)
        .or_else(|| rows[0][0].try_get::<i64, _>(0).ok().flatten())
        .expect("a count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_waits_for_the_open_transaction_then_times_out_with_1222() {
    let (_server, mut a, mut b) = writer_holding_the_lock(Duration::from_millis(300)).await;
    // B reads the committed state without waiting: A's row is not there yet.
    assert_eq!(
        count(&batch(&mut b, "SELECT COUNT(*) FROM t").await.unwrap()),
        0
    );
    // B's write waits for A's transaction, then gives up with a lock timeout.
    let err = batch(&mut b, "INSERT INTO t (id) VALUES (2)")
        .await
        .unwrap_err();
    match &err {
        tiberius::error::Error::Server(e) => assert_eq!(e.code(), 1222, "{err}"),
        other => panic!("expected 1222, got {other}"),
    }
    // A statement-level error: B's session lives on and writes once A commits.
    batch(&mut a, "COMMIT TRANSACTION").await.unwrap();
    batch(&mut b, "INSERT INTO t (id) VALUES (2)")
        .await
        .unwrap();
    assert_eq!(
        count(&batch(&mut b, "SELECT COUNT(*) FROM t").await.unwrap()),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_that_waits_less_than_the_lock_timeout_goes_through() {
    let (_server, mut a, mut b) = writer_holding_the_lock(Duration::from_secs(10)).await;
    let waiting = tokio::spawn(async move {
        batch(&mut b, "INSERT INTO t (id) VALUES (2)")
            .await
            .map(|_| ())
    });
    // B is blocked behind A's open transaction until A commits.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "B waits for A's write lock");
    batch(&mut a, "COMMIT TRANSACTION").await.unwrap();
    waiting.await.unwrap().unwrap();
    assert_eq!(
        count(&batch(&mut a, "SELECT COUNT(*) FROM t").await.unwrap()),
        2
    );
}
