//! Batch and transaction semantics as SQL Server has them: statement-level errors let
//! the batch go on, batch-aborting ones stop it (some rolling back), `SET XACT_ABORT ON`
//! turns every runtime error into abort-and-roll-back; `@@ERROR`, `@@TRANCOUNT` and
//! `XACT_STATE()` read the session; a parameterised request (a module) that changes the
//! transaction count gets error 266; `TRY…CATCH` catches runtime errors, dooms the
//! transaction where SQL Server does, and `THROW;` rethrows.

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
async fn a_caught_statement_error_runs_the_catch_block_and_the_transaction_stays_committable() {
    let server = start().await;
    let mut c = connect(&server).await;
    setup(&mut c).await;
    // The duplicate is caught: the rest of the TRY block is skipped, the CATCH block sees
    // the error, the transaction (XACT_ABORT OFF) is still committable, and the client
    // gets no error at all.
    let sets = batch(
        &mut c,
        "BEGIN TRAN; BEGIN TRY INSERT INTO t (id) VALUES (1); INSERT INTO t (id) VALUES (1); INSERT INTO t (id) VALUES (2) END TRY BEGIN CATCH INSERT INTO log (n) VALUES (ERROR_NUMBER()); SELECT XACT_STATE() AS s, ERROR_SEVERITY() AS sev END CATCH; COMMIT",
    )
    .await
    .unwrap();
    let row = &sets.last().unwrap()[0];
    assert_eq!(row.get::<i32, _>("s"), Some(1));
    assert_eq!(row.get::<i32, _>("sev"), Some(14));
    assert_eq!(scalar(&mut c, "SELECT COUNT(*) FROM t").await, 1);
    assert_eq!(scalar(&mut c, "SELECT MAX(n) FROM log").await, 2627);
    assert_eq!(scalar(&mut c, "SELECT @@TRANCOUNT").await, 0);
}

#[tokio::test]
async fn the_usual_catch_rolls_back_and_rethrows_the_original_error() {
    let server = start().await;
    let mut c = connect(&server).await;
    setup(&mut c).await;
    let err = batch(
        &mut c,
        "BEGIN TRY BEGIN TRANSACTION; INSERT INTO t (id) VALUES (1); INSERT INTO t (id) VALUES (1); COMMIT TRANSACTION; END TRY BEGIN CATCH IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION; INSERT INTO log (n) VALUES (ERROR_NUMBER()); THROW; END CATCH",
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), Some(2627), "{err}");
    assert_eq!(scalar(&mut c, "SELECT COUNT(*) FROM t").await, 0);
    assert_eq!(scalar(&mut c, "SELECT COUNT(*) FROM log").await, 1);
    assert_eq!(scalar(&mut c, "SELECT @@TRANCOUNT").await, 0);
}

#[tokio::test]
async fn a_caught_error_that_would_roll_back_dooms_the_transaction() {
    let server = start().await;
    let mut c = connect(&server).await;
    setup(&mut c).await;
    // XACT_ABORT ON: the caught duplicate dooms the transaction; the CATCH block reads
    // XACT_STATE() = -1, and its write fails with 3930 (not caught: outside the TRY).
    let err = batch(
        &mut c,
        "SET XACT_ABORT ON; BEGIN TRAN; BEGIN TRY INSERT INTO t (id) VALUES (1); INSERT INTO t (id) VALUES (1) END TRY BEGIN CATCH INSERT INTO log (n) VALUES (XACT_STATE()) END CATCH",
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), Some(3930), "{err}");
    assert_eq!(scalar(&mut c, "SELECT @@TRANCOUNT").await, 0);
    assert_eq!(scalar(&mut c, "SELECT COUNT(*) FROM t").await, 0);
    assert_eq!(scalar(&mut c, "SELECT COUNT(*) FROM log").await, 0);
    batch(&mut c, "SET XACT_ABORT OFF").await.unwrap();
    // XACT_ABORT OFF: a conversion error dooms it too; reads still work, COMMIT fails
    // with 3930 (statement-level), and the batch's end rolls the transaction back with
    // 3998.
    let sets = batch(
        &mut c,
        "BEGIN TRAN; INSERT INTO t (id) VALUES (5); BEGIN TRY SELECT CAST(v AS INT) FROM c END TRY BEGIN CATCH SELECT XACT_STATE() AS s, COUNT(*) AS n FROM t END CATCH",
    )
    .await;
    let err = sets.unwrap_err();
    assert_eq!(code(&err), Some(3998), "{err}");
    assert_eq!(scalar(&mut c, "SELECT @@TRANCOUNT").await, 0);
    assert_eq!(scalar(&mut c, "SELECT COUNT(*) FROM t").await, 0);
    let err = batch(
        &mut c,
        "BEGIN TRAN; INSERT INTO t (id) VALUES (6); BEGIN TRY SELECT CAST(v AS INT) FROM c END TRY BEGIN CATCH SELECT 1 END CATCH; COMMIT",
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), Some(3930), "{err}");
    assert_eq!(scalar(&mut c, "SELECT @@TRANCOUNT").await, 0);
    assert_eq!(scalar(&mut c, "SELECT COUNT(*) FROM t").await, 0);
}

#[tokio::test]
async fn the_catch_block_reads_the_doomed_state_before_it_rolls_back() {
    let server = start().await;
    let mut c = connect(&server).await;
    setup(&mut c).await;
    let sets = batch(
        &mut c,
        "SET XACT_ABORT ON; BEGIN TRAN; BEGIN TRY INSERT INTO t (id) VALUES (1); INSERT INTO t (id) VALUES (1) END TRY BEGIN CATCH SELECT XACT_STATE() AS s; ROLLBACK; INSERT INTO log (n) VALUES (ERROR_NUMBER()) END CATCH",
    )
    .await
    .unwrap();
    assert_eq!(sets.last().unwrap()[0].get::<i32, _>("s"), Some(-1));
    assert_eq!(scalar(&mut c, "SELECT COUNT(*) FROM t").await, 0);
    // After the ROLLBACK the CATCH block writes again, outside any transaction.
    assert_eq!(scalar(&mut c, "SELECT MAX(n) FROM log").await, 2627);
}

#[tokio::test]
async fn try_does_not_catch_name_resolution_errors_or_messages() {
    let server = start().await;
    let mut c = connect(&server).await;
    setup(&mut c).await;
    // 208 is raised before the statement runs: the batch stops, the CATCH block does not
    // run (as in SQL Server).
    let err = batch(
        &mut c,
        "BEGIN TRY SELECT * FROM missing END TRY BEGIN CATCH INSERT INTO log (n) VALUES (1) END CATCH",
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), Some(208), "{err}");
    assert_eq!(scalar(&mut c, "SELECT COUNT(*) FROM log").await, 0);
    // RAISERROR of severity 10 is a message, not an error; 16 is caught.
    let sets = batch(
        &mut c,
        "BEGIN TRY RAISERROR('only a message', 10, 1); INSERT INTO log (n) VALUES (10); RAISERROR('a real one', 16, 3) END TRY BEGIN CATCH SELECT ERROR_MESSAGE() AS m, ERROR_STATE() AS st, ERROR_NUMBER() AS n END CATCH",
    )
    .await
    .unwrap();
    let row = &sets.last().unwrap()[0];
    assert_eq!(row.get::<&str, _>("m"), Some("a real one"));
    assert_eq!(row.get::<i32, _>("st"), Some(3));
    assert_eq!(row.get::<i32, _>("n"), Some(50000));
    assert_eq!(scalar(&mut c, "SELECT COUNT(*) FROM log").await, 1);
}

#[tokio::test]
async fn nested_try_blocks_and_error_functions_outside_catch() {
    let server = start().await;
    let mut c = connect(&server).await;
    setup(&mut c).await;
    // An error in an inner CATCH block goes to the outer one.
    let sets = batch(
        &mut c,
        "BEGIN TRY BEGIN TRY THROW 50001, 'inner', 1; END TRY BEGIN CATCH THROW 50002, 'from the catch', 1; END CATCH END TRY BEGIN CATCH SELECT ERROR_NUMBER() AS n END CATCH",
    )
    .await
    .unwrap();
    assert_eq!(sets.last().unwrap()[0].get::<i32, _>("n"), Some(50002));
    // Outside a CATCH block the error functions are NULL, and THROW; has nothing to
    // rethrow.
    let rows = batch(&mut c, "SELECT ERROR_NUMBER() AS n, ERROR_MESSAGE() AS m")
        .await
        .unwrap();
    assert_eq!(rows[0][0].get::<i32, _>("n"), None);
    assert_eq!(rows[0][0].get::<&str, _>("m"), None);
    let err = batch(&mut c, "THROW;").await.unwrap_err();
    assert_eq!(code(&err), Some(10704), "{err}");
    // A TRY block without its CATCH block is a syntax error; nothing runs.
    let err = batch(&mut c, "BEGIN TRY INSERT INTO log (n) VALUES (1) END TRY")
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(102), "{err}");
    assert_eq!(scalar(&mut c, "SELECT COUNT(*) FROM log").await, 0);
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
