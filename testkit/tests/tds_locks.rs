//! What the testkit's locking models: SQLite's single writer stands in for SQL Server's
//! row locks. A second writer waits for the first one's transaction (up to the server's
//! `busy_timeout`) and then fails with 1222, as a SQL Server session with `SET
//! LOCK_TIMEOUT` would; readers see the last committed state and never wait (like
//! READ_COMMITTED_SNAPSHOT). An `UPDLOCK` read queues as in SQL Server, and a READ COMMITTED
//! transaction that has not written yet is not made a deadlock victim by another session's
//! commit. See the README's "Locking" limits for what this does not prove.

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

/// Two sessions and an empty table `t (id INT PRIMARY KEY)`.
async fn two_sessions(busy_timeout: Duration) -> (TdsServer, TestClient, TestClient) {
    let server = server(busy_timeout).await;
    let mut a = connect(&server).await;
    let b = connect(&server).await;
    batch(&mut a, "CREATE TABLE t (id INT NOT NULL PRIMARY KEY)")
        .await
        .unwrap();
    (server, a, b)
}

/// Two sessions; the first has inserted row 1 in a transaction it has not committed.
async fn writer_holding_the_lock(busy_timeout: Duration) -> (TdsServer, TestClient, TestClient) {
    let (server, mut a, b) = two_sessions(busy_timeout).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updlock_reads_queue_behind_each_other_instead_of_deadlocking() {
    // The idempotency pattern: look the key up WITH (UPDLOCK, HOLDLOCK), insert it if
    // absent. SQL Server makes the second session wait at its read; it then sees the
    // first one's row and inserts nothing. Neither is a deadlock victim.
    let (_server, mut a, mut b) = two_sessions(Duration::from_secs(10)).await;
    batch(
        &mut a,
        "BEGIN TRANSACTION; SELECT id FROM t WITH (UPDLOCK, HOLDLOCK) WHERE id = 5",
    )
    .await
    .unwrap();
    let waiting = tokio::spawn(async move {
        let r = batch(
            &mut b,
            "BEGIN TRANSACTION;
             IF NOT EXISTS (SELECT 1 FROM t WITH (UPDLOCK, HOLDLOCK) WHERE id = 5)
                 INSERT INTO t (id) VALUES (5);
             COMMIT TRANSACTION",
        )
        .await
        .map(|_| ());
        (b, r)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "B waits at its UPDLOCK read");
    batch(&mut a, "INSERT INTO t (id) VALUES (5); COMMIT TRANSACTION")
        .await
        .expect("A, which read first, writes: it is not a deadlock victim");
    let (mut b, r) = waiting.await.unwrap();
    r.expect("B sees A's row and inserts nothing");
    assert_eq!(
        count(&batch(&mut b, "SELECT COUNT(*) FROM t").await.unwrap()),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_committed_transaction_writes_after_another_session_committed() {
    // B reads, A commits a row, B writes: under READ COMMITTED (SNAPSHOT) each statement
    // sees the latest commit, so B's write goes through and B then counts A's row too.
    let (_server, mut a, mut b) = two_sessions(Duration::from_secs(10)).await;
    assert_eq!(
        count(
            &batch(&mut b, "BEGIN TRANSACTION; SELECT COUNT(*) FROM t")
                .await
                .unwrap()
        ),
        0
    );
    batch(&mut a, "INSERT INTO t (id) VALUES (1)")
        .await
        .unwrap();
    batch(&mut b, "INSERT INTO t (id) VALUES (2)")
        .await
        .expect("no deadlock: B had written nothing");
    assert_eq!(
        count(&batch(&mut b, "SELECT COUNT(*) FROM t").await.unwrap()),
        2
    );
    batch(&mut b, "COMMIT TRANSACTION").await.unwrap();
    // Once B has written, its transaction keeps its own writes: a rollback undoes them.
    batch(&mut b, "BEGIN TRANSACTION; INSERT INTO t (id) VALUES (3)")
        .await
        .unwrap();
    batch(&mut b, "ROLLBACK TRANSACTION").await.unwrap();
    assert_eq!(
        count(&batch(&mut a, "SELECT COUNT(*) FROM t").await.unwrap()),
        2
    );
}
