//! Batch and transaction semantics as SQL Server has them: statement-level errors let
//! the batch go on, batch-aborting ones stop it (some rolling back), `SET XACT_ABORT ON`
//! turns every runtime error into abort-and-roll-back; `@@ERROR`, `@@TRANCOUNT` and
//! `XACT_STATE()` read the session; a parameterised request (a module) that changes the
//! transaction count gets error 266.

mod tds_common;

use tds_common::{batch, connect, start, TestClient};
use tiberius::error::Error;

fn code(e: &Error) -> Option<u32> {
    match e {
        Error::Server(t) => Some(t.code()),
        _ => None,
    }
}

async fn scalar(c: &mut TestClient, sql: &str) -> i64 {
    let rows = batch(c, sql).await.unwrap();
    let row = &rows[0][0];
    row.try_get::<i64, _>(0)
        .ok()
        .flatten()
        .or_else(|| row.try_get::<i32, _>(0).ok().flatten().map(i64::from))
        .unwrap()
}

async fn setup(c: &mut TestClient) {
    batch(
        c,
        "CREATE TABLE t (id INT NOT NULL PRIMARY KEY); CREATE TABLE log (n INT NULL); CREATE TABLE c (v NVARCHAR(20) NULL); INSERT INTO c (v) VALUES (N'not a number')",
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_statement_level_error_lets_the_batch_run_on_to_its_commit() {
    let server = start().await;
    let mut c = connect(&server).await;
    setup(&mut c).await;
    let err = batch(
        &mut c,
        "BEGIN TRANSACTION; INSERT INTO t (id) VALUES (1); INSERT INTO t (id) VALUES (1); INSERT INTO t (id) VALUES (2); COMMIT TRANSACTION",
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), Some(2627), "{err}");
    // The duplicate alone was undone; the rest ran, COMMIT included.
    assert_eq!(scalar(&mut c, "SELECT COUNT(*) FROM t").await, 2);
    assert_eq!(scalar(&mut c, "SELECT @@TRANCOUNT").await, 0);
}

#[tokio::test]
async fn other_statement_level_errors_continue_too() {
    let server = start().await;
    let mut c = connect(&server).await;
    setup(&mut c).await;
    // 515 (NULL into NOT NULL), 3902 (COMMIT without BEGIN), RAISERROR: each reported,
    // and the next statement runs.
    let err = batch(
        &mut c,
        "INSERT INTO t (id) VALUES (NULL); INSERT INTO t (id) VALUES (10); COMMIT; INSERT INTO t (id) VALUES (11); RAISERROR('careful', 16, 1); INSERT INTO t (id) VALUES (12)",
    )
    .await
    .unwrap_err();
    assert_eq!(
        code(&err),
        Some(515),
        "the first error is the one reported: {err}"
    );
    assert_eq!(scalar(&mut c, "SELECT COUNT(*) FROM t").await, 3);
}

#[tokio::test]
async fn a_conversion_error_aborts_the_batch_and_rolls_back() {
    let server = start().await;
    let mut c = connect(&server).await;
    setup(&mut c).await;
    let err = batch(
        &mut c,
        "BEGIN TRANSACTION; INSERT INTO t (id) VALUES (1); SELECT CAST(v AS INT) FROM c; INSERT INTO t (id) VALUES (2); COMMIT TRANSACTION",
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), Some(245), "{err}");
    assert_eq!(scalar(&mut c, "SELECT @@TRANCOUNT").await, 0);
    assert_eq!(scalar(&mut c, "SELECT COUNT(*) FROM t").await, 0);
}

#[tokio::test]
async fn a_missing_object_aborts_the_batch_and_leaves_the_transaction_open() {
    let server = start().await;
    let mut c = connect(&server).await;
    setup(&mut c).await;
    let err = batch(
        &mut c,
        "BEGIN TRANSACTION; INSERT INTO t (id) VALUES (1); SELECT * FROM missing; INSERT INTO t (id) VALUES (2); COMMIT TRANSACTION",
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), Some(208), "{err}");
    // Neither the second INSERT nor the COMMIT ran; the transaction is still open.
    assert_eq!(scalar(&mut c, "SELECT @@TRANCOUNT").await, 1);
    assert_eq!(scalar(&mut c, "SELECT XACT_STATE()").await, 1);
    assert_eq!(scalar(&mut c, "SELECT COUNT(*) FROM t").await, 1);
    batch(&mut c, "ROLLBACK TRANSACTION").await.unwrap();
    assert_eq!(scalar(&mut c, "SELECT COUNT(*) FROM t").await, 0);
    assert_eq!(scalar(&mut c, "SELECT XACT_STATE()").await, 0);
}

#[tokio::test]
async fn xact_abort_on_rolls_back_at_the_first_runtime_error() {
    let server = start().await;
    let mut c = connect(&server).await;
    setup(&mut c).await;
    batch(&mut c, "SET XACT_ABORT ON").await.unwrap();
    // The setting lasts for the session, across batches.
    let err = batch(
        &mut c,
        "BEGIN TRANSACTION; INSERT INTO t (id) VALUES (1); INSERT INTO t (id) VALUES (1); INSERT INTO t (id) VALUES (2); COMMIT TRANSACTION",
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), Some(2627), "{err}");
    assert_eq!(scalar(&mut c, "SELECT @@TRANCOUNT").await, 0);
    assert_eq!(scalar(&mut c, "SELECT COUNT(*) FROM t").await, 0);
    // Outside a transaction it still stops the batch.
    let err = batch(
        &mut c,
        "INSERT INTO t (id) VALUES (5); INSERT INTO t (id) VALUES (5); INSERT INTO t (id) VALUES (6)",
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), Some(2627), "{err}");
    assert_eq!(scalar(&mut c, "SELECT COUNT(*) FROM t").await, 1);
    // RAISERROR is not affected by XACT_ABORT.
    let err = batch(
        &mut c,
        "RAISERROR('note', 16, 1); INSERT INTO t (id) VALUES (7)",
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), Some(50000), "{err}");
    assert_eq!(scalar(&mut c, "SELECT COUNT(*) FROM t").await, 2);
    // OFF again: back to statement-level errors.
    batch(&mut c, "SET XACT_ABORT OFF").await.unwrap();
    let _ = batch(
        &mut c,
        "BEGIN TRANSACTION; INSERT INTO t (id) VALUES (8); INSERT INTO t (id) VALUES (8); COMMIT TRANSACTION",
    )
    .await
    .unwrap_err();
    assert_eq!(scalar(&mut c, "SELECT COUNT(*) FROM t").await, 3);
}

#[tokio::test]
async fn error_reads_the_last_statement_and_resets() {
    let server = start().await;
    let mut c = connect(&server).await;
    setup(&mut c).await;
    batch(&mut c, "INSERT INTO t (id) VALUES (1)")
        .await
        .unwrap();
    let _ = batch(
        &mut c,
        "INSERT INTO t (id) VALUES (1); INSERT INTO log (n) SELECT @@ERROR; INSERT INTO log (n) SELECT @@ERROR",
    )
    .await
    .unwrap_err();
    let rows = batch(&mut c, "SELECT n FROM log ORDER BY rowid")
        .await
        .unwrap();
    let got: Vec<Option<i32>> = rows[0].iter().map(|r| r.get::<i32, _>(0)).collect();
    assert_eq!(got, vec![Some(2627), Some(0)]);
}

#[tokio::test]
async fn xact_state_and_trancount_follow_nesting() {
    let server = start().await;
    let mut c = connect(&server).await;
    setup(&mut c).await;
    assert_eq!(scalar(&mut c, "SELECT XACT_STATE()").await, 0);
    batch(&mut c, "BEGIN TRAN; BEGIN TRAN").await.unwrap();
    assert_eq!(scalar(&mut c, "SELECT @@TRANCOUNT").await, 2);
    assert_eq!(scalar(&mut c, "SELECT XACT_STATE()").await, 1);
    batch(&mut c, "COMMIT").await.unwrap();
    assert_eq!(scalar(&mut c, "SELECT @@TRANCOUNT").await, 1);
    batch(&mut c, "COMMIT").await.unwrap();
    assert_eq!(scalar(&mut c, "SELECT XACT_STATE()").await, 0);
}

#[tokio::test]
async fn rpc_statement_errors_continue_and_the_client_sees_the_error() {
    let server = start().await;
    let mut c = connect(&server).await;
    setup(&mut c).await;
    let err = c
        .execute(
            "INSERT INTO t (id) VALUES (@P1); INSERT INTO t (id) VALUES (@P1); INSERT INTO t (id) VALUES (@P2)",
            &[&1i32, &2i32],
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(2627), "{err}");
    assert_eq!(scalar(&mut c, "SELECT COUNT(*) FROM t").await, 2);
    // The connection is in a clean state for the next request.
    let ok = c
        .execute("INSERT INTO t (id) VALUES (@P1)", &[&3i32])
        .await
        .unwrap();
    assert_eq!(ok.rows_affected(), &[1]);
}

#[tokio::test]
async fn try_catch_is_rejected_not_half_run() {
    // Documented as out of reach (no doomed transactions without TRY/CATCH): the batch
    // fails before running anything and leaves no transaction behind.
    let server = start().await;
    let mut c = connect(&server).await;
    setup(&mut c).await;
    let err = batch(
        &mut c,
        "BEGIN TRY INSERT INTO t (id) VALUES (1) END TRY BEGIN CATCH SELECT 2 END CATCH",
    )
    .await
    .unwrap_err();
    assert!(code(&err).is_some(), "{err}");
    assert_eq!(scalar(&mut c, "SELECT @@TRANCOUNT").await, 0);
    assert_eq!(scalar(&mut c, "SELECT COUNT(*) FROM t").await, 0);
}

#[tokio::test]
async fn a_parameterised_request_must_end_with_the_transaction_count_it_began_with() {
    let server = start().await;
    let mut c = connect(&server).await;
    setup(&mut c).await;
    // BEGIN inside sp_executesql: the statement runs, then 266, and the transaction stays
    // open (as SQL Server leaves it).
    let err = c
        .execute(
            "BEGIN TRANSACTION; INSERT INTO t (id) VALUES (@P1)",
            &[&1i32],
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(266), "{err}");
    assert!(
        err.to_string()
            .contains("Previous count = 0, current count = 1"),
        "{err}"
    );
    assert_eq!(scalar(&mut c, "SELECT @@TRANCOUNT").await, 1);
    // COMMIT inside sp_executesql of a transaction a plain batch began: committed, and 266.
    let err = c
        .execute(
            "INSERT INTO t (id) VALUES (@P1); COMMIT TRANSACTION",
            &[&2i32],
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(266), "{err}");
    assert_eq!(scalar(&mut c, "SELECT @@TRANCOUNT").await, 0);
    assert_eq!(scalar(&mut c, "SELECT COUNT(*) FROM t").await, 2);
    // Balanced inside the request, or begun and ended in plain batches around it: fine.
    c.execute(
        "BEGIN TRANSACTION; INSERT INTO t (id) VALUES (@P1); COMMIT TRANSACTION",
        &[&3i32],
    )
    .await
    .unwrap();
    batch(&mut c, "BEGIN TRANSACTION").await.unwrap();
    c.execute("INSERT INTO t (id) VALUES (@P1)", &[&4i32])
        .await
        .unwrap();
    batch(&mut c, "COMMIT TRANSACTION").await.unwrap();
    assert_eq!(scalar(&mut c, "SELECT COUNT(*) FROM t").await, 4);
    // A plain batch may leave a transaction open: no 266.
    batch(&mut c, "BEGIN TRANSACTION").await.unwrap();
    batch(&mut c, "ROLLBACK TRANSACTION").await.unwrap();
}
