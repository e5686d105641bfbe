//! Write safety over real TCP: outcome-unknown writes, units of work re-run only when
//! proven rolled back, and deadlock victims re-run (idempotency keys:
//! `idempotency_keys.rs`).

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mssql_resilience::error::RetryStop;
use mssql_resilience::sql::{batch, work, SqlRequest, SqlResponse};
use mssql_resilience::{Outcome, RequestContext, Stack};
use mssql_testkit::tds::{
    DisconnectMode, DropPoint, ErrorSpec, QueryFault, StallFault, StallPoint, Trigger,
};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_after_a_non_idempotent_write_was_sent_is_outcome_unknown() {
    let regions = testkit().await;
    let stack = payments_stack(&regions).await;
    // The server runs the INSERT, then the connection drops before the final DONE.
    regions
        .primary()
        .faults()
        .drop_responses(DropPoint::BeforeFinalDone, Trigger::Next(1));
    let err = stack
        .call(exec(
            "create_payment",
            "INSERT INTO payments (id, amount) VALUES (@P1, @P2)",
            vec![1.into(), 100i64.into()],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.outcome(), Outcome::Ambiguous, "{err}");
    assert!(err.is_outcome_unknown(), "{err}");
    assert_eq!(err.retry_stop(), Some(RetryStop::NotIdempotent));
    assert_eq!(err.attempts(), 1, "never retried");
    let text = err.to_string();
    assert!(text.contains("may or may not have been applied"), "{text}");
    assert!(
        text.contains("westeurope"),
        "the error names the region: {text}"
    );
    let rows = scalar(&stack, "SELECT COUNT(*) FROM payments").await;
    assert!(
        rows == 0 || rows == 1,
        "zero or one row, never more: {rows}"
    );
    // Here the server did run it: the reconciliation read finds exactly one.
    assert_eq!(rows, 1);
}

/// Sends a non-idempotent INSERT that the server holds for 500 ms, resets the connection
/// (chaos proxy) while the server still works on it, and returns the caller's error once
/// the server has finished with every session, so the table shows the final outcome.
async fn write_cut_off_mid_flight(
    regions: &Backend,
    stack: &Stack,
    id: i32,
) -> mssql_resilience::Error {
    let primary = regions.primary();
    primary.faults().set_query_delay(Duration::from_millis(500));
    let requests_before = {
        let c = primary.faults().counters();
        c.batches + c.rpcs
    };
    let call = {
        let stack = stack.clone();
        tokio::spawn(async move {
            stack
                .call(exec(
                    "create_payment",
                    "INSERT INTO payments (id, amount) VALUES (@P1, @P2)",
                    vec![id.into(), 100i64.into()],
                ))
                .await
        })
    };
    eventually(
        "the server holds the INSERT",
        Duration::from_secs(5),
        || {
            let c = primary.faults().counters();
            c.batches + c.rpcs > requests_before
        },
    )
    .await;
    primary.chaos().reset_connections();
    let err = call.await.unwrap().unwrap_err();
    primary.faults().set_query_delay(Duration::ZERO);
    // Every connection went through the proxy, so every session ends — the held one
    // only once its work is over (rolled back or committed, depending on the mode).
    eventually(
        "the server ends its sessions",
        Duration::from_secs(5),
        || primary.faults().counters().connections_open == 0,
    )
    .await;
    err
}

fn assert_unknown_and_not_retried(err: &mssql_resilience::Error) {
    assert_eq!(err.outcome(), Outcome::Ambiguous, "{err}");
    assert!(err.is_outcome_unknown(), "{err}");
    assert_eq!(err.retry_stop(), Some(RetryStop::NotIdempotent), "{err}");
    assert_eq!(err.attempts(), 1, "never retried: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnect_mid_write_is_outcome_unknown_when_the_write_did_not_happen() {
    let regions = testkit().await;
    let stack = payments_stack(&regions).await;
    // Default: the server interrupts the statement when the client goes away.
    let err = write_cut_off_mid_flight(&regions, &stack, 1).await;
    assert_unknown_and_not_retried(&err);
    assert_eq!(scalar(&stack, "SELECT COUNT(*) FROM payments").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnect_mid_write_is_outcome_unknown_when_the_write_did_happen() {
    let regions = testkit().await;
    let stack = payments_stack(&regions).await;
    // As a real server may: the statement runs on after the client left, and commits.
    regions
        .primary()
        .faults()
        .set_disconnect_mode(DisconnectMode::Complete);
    let err = write_cut_off_mid_flight(&regions, &stack, 1).await;
    assert_unknown_and_not_retried(&err);
    // Exactly one row: it happened, and the crate did not add a second one.
    assert_eq!(scalar(&stack, "SELECT COUNT(*) FROM payments").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_answer_stalls_is_outcome_unknown_when_the_deadline_fires() {
    let regions = testkit().await;
    let stack = payments_stack(&regions).await;
    // The server runs (and commits) the INSERT, then its answer never comes.
    regions.primary().faults().stall_responses(
        StallFault::new(StallPoint::AfterRows(0), Trigger::Next(1))
            .matching("INSERT INTO payments"),
    );
    let err = stack
        .call(exec(
            "create_payment",
            "INSERT INTO payments (id, amount) VALUES (@P1, @P2)",
            vec![1.into(), 100i64.into()],
        ))
        .await
        .unwrap_err();
    // One region: the attempt may use the whole budget, so the call's deadline fires.
    assert!(err.is_timeout(), "the deadline fired: {err}");
    assert_eq!(err.outcome(), Outcome::Ambiguous, "{err}");
    assert!(err.is_outcome_unknown(), "{err}");
    assert_eq!(err.attempts(), 1, "never retried: {err}");
    assert_eq!(regions.primary().faults().counters().responses_stalled, 1);
    assert_eq!(scalar(&stack, "SELECT COUNT(*) FROM payments").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_read_gets_a_second_chance_and_ends_at_the_deadline_when_every_answer_stalls() {
    let regions = testkit().await;
    let stack = payments_stack(&regions).await;
    stack
        .call(exec(
            "seed",
            "INSERT INTO payments (id, amount) VALUES (1, 10), (2, 20), (3, 30)",
            vec![],
        ))
        .await
        .unwrap();
    let faults = regions.primary().faults();
    // One answer stalls after its first row. The read has nowhere else to go, so its
    // attempt may wait the whole budget; a second attempt on another connection, sent
    // when an attempt would normally have timed out, answers it whole.
    faults.stall_responses(
        StallFault::new(StallPoint::AfterRows(1), Trigger::Next(1)).matching("ORDER BY id"),
    );
    let response = stack
        .call(read("list", "SELECT id FROM payments ORDER BY id"))
        .await
        .unwrap();
    assert_eq!(response.first().map(|s| s.rows.len()), Some(3));
    assert_eq!(faults.counters().responses_stalled, 1);
    // Every answer stalls: the call ends with its deadline, not a hang.
    faults.stall_responses(
        StallFault::new(StallPoint::AfterRows(1), Trigger::Always).matching("ORDER BY id"),
    );
    let err = stack
        .call(read("list", "SELECT id FROM payments ORDER BY id"))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(faults.counters().responses_stalled >= 2);
    faults.clear_stall_faults();
    // The stalled connections are not reused in a corrupt state: the next read is whole.
    let response = stack
        .call(read("list", "SELECT id FROM payments ORDER BY id"))
        .await
        .unwrap();
    assert_eq!(response.first().map(|s| s.rows.len()), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_a_pooled_connection_the_server_closed_is_not_sent_and_retried() {
    let regions = testkit().await;
    let stack = payments_stack(&regions).await;
    let faults = regions.primary().faults();
    // The pool holds connections used a moment ago (not revalidated: idle < 2 s).
    assert_eq!(scalar(&stack, "SELECT COUNT(*) FROM payments").await, 0);
    // The server closes every session while they sit idle in the pool.
    assert!(faults.kill_sessions() >= 1);
    eventually(
        "the killed sessions are closed",
        Duration::from_secs(5),
        || faults.counters().connections_open == 0,
    )
    .await;
    // A non-idempotent write: the zero-wait check finds the close before writing, so the
    // attempt is *not sent* and may be retried on a fresh connection.
    let response = stack
        .call(exec(
            "create_payment",
            "INSERT INTO payments (id, amount) VALUES (@P1, @P2)",
            vec![5.into(), 500i64.into()],
        ))
        .await
        .unwrap();
    assert_eq!(response.total_rows_affected(), 1);
    assert_eq!(
        scalar(&stack, "SELECT COUNT(*) FROM payments WHERE id = 5").await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_caller_gave_up_on_is_cancelled_on_the_server_and_its_connection_kept() {
    let regions = testkit().await;
    let stack = payments_stack(&regions).await;
    let faults = regions.primary().faults();
    let pool = stack.pools()[0].1.clone();
    let connections = pool.state().connections;
    assert!(connections >= 1);
    // A ten-second query under an 800 ms budget: the caller gives up long before.
    let slow = SqlRequest::query(
        RequestContext::read("slow_report").budget(Duration::from_millis(800)),
        "WAITFOR DELAY '00:00:10'; SELECT 1",
        [],
    );
    let err = stack.call(slow).await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    // The server is told to stop (an ATTENTION, acknowledged) and the connection goes
    // back to the pool instead of being closed after a wait.
    eventually(
        "the server got the attention",
        Duration::from_secs(5),
        || faults.counters().attentions == 1,
    )
    .await;
    eventually(
        "the connection is back, idle",
        Duration::from_secs(5),
        || {
            let s = pool.state();
            s.connections == connections && s.idle_connections == connections
        },
    )
    .await;
    let logins = faults.counters().logins;
    assert_eq!(scalar(&stack, "SELECT COUNT(*) FROM payments").await, 0);
    assert_eq!(
        faults.counters().logins,
        logins,
        "no new connection was needed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadlock_victim_reruns_the_whole_unit_of_work_once() {
    let regions = testkit().await;
    let stack = payments_stack(&regions).await;
    regions.primary().faults().fail_queries(
        QueryFault::new(ErrorSpec::deadlock(), Trigger::Next(1)).matching("INSERT INTO payments"),
    );
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let transfer = SqlRequest::unit_of_work(
        RequestContext::write("transfer"),
        work(move |client| {
            let counter = counter.clone();
            Box::pin(async move {
                counter.fetch_add(1, Ordering::SeqCst);
                batch(client, "BEGIN TRANSACTION").await?;
                client
                    .execute(
                        "INSERT INTO payments (id, amount) VALUES (@P1, @P2)",
                        &[&7i32, &70i64],
                    )
                    .await?;
                batch(client, "COMMIT TRANSACTION").await?;
                Ok(SqlResponse::default())
            })
        }),
    );
    stack.call(transfer).await.unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 2, "run, deadlock, run again");
    assert_eq!(scalar(&stack, "SELECT COUNT(*) FROM payments").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_transactions_and_types_round_trip() {
    // No fault injection: runs against a real server when MSSQL_TEST_URL is set.
    let backend = backend().await;
    let config = backend.config("", 1, |_| {});
    let stack = Stack::builder(config).probes(false).build().unwrap();
    let _ = stack
        .call(exec("ddl", "DROP TABLE roundtrip", vec![]))
        .await;
    stack
        .call(exec(
            "ddl",
            "CREATE TABLE roundtrip (id INT NOT NULL PRIMARY KEY, big BIGINT NULL, f FLOAT NULL, b BIT NULL, s NVARCHAR(MAX) NULL)",
            vec![],
        ))
        .await
        .unwrap();
    let long = "x".repeat(10_000);
    let inserted = stack
        .call(exec(
            "insert",
            "INSERT INTO roundtrip (id, big, f, b, s) VALUES (@P1, @P2, @P3, @P4, @P5)",
            vec![
                1.into(),
                9_000_000_000i64.into(),
                1.5f64.into(),
                true.into(),
                long.as_str().into(),
            ],
        ))
        .await
        .unwrap();
    assert_eq!(inserted.total_rows_affected(), 1);
    stack
        .call(exec(
            "insert",
            "INSERT INTO roundtrip (id, big, f, b, s) VALUES (@P1, @P2, @P3, @P4, @P5)",
            vec![
                2.into(),
                Option::<i64>::None.into(),
                Option::<f64>::None.into(),
                Option::<bool>::None.into(),
                Option::<String>::None.into(),
            ],
        ))
        .await
        .unwrap();
    let rows = stack
        .call(read(
            "select",
            "SELECT id, big, f, b, s FROM roundtrip ORDER BY id",
        ))
        .await
        .unwrap();
    let set = rows.first().unwrap();
    assert_eq!(set.columns, ["id", "big", "f", "b", "s"]);
    assert_eq!(
        set.get(0, "big").and_then(|v| v.as_i64()),
        Some(9_000_000_000)
    );
    assert_eq!(set.get(0, "f").and_then(|v| v.as_f64()), Some(1.5));
    assert_eq!(set.get(0, "b").and_then(|v| v.as_bool()), Some(true));
    assert_eq!(
        set.get(0, "s").and_then(|v| v.as_str().map(str::len)),
        Some(10_000)
    );
    assert!(set.rows[1].values().skip(1).all(|v| v.is_null()));
    // A failed unit of work rolls back and its connection is not reused.
    let failing = SqlRequest::unit_of_work(
        RequestContext::write("failing"),
        work(|client| {
            Box::pin(async move {
                batch(client, "BEGIN TRANSACTION").await?;
                client
                    .execute("INSERT INTO roundtrip (id) VALUES (@P1)", &[&3i32])
                    .await?;
                client
                    .execute("INSERT INTO roundtrip (id) VALUES (@P1)", &[&3i32])
                    .await?;
                batch(client, "COMMIT TRANSACTION").await?;
                Ok(SqlResponse::default())
            })
        }),
    );
    let err = stack.call(failing).await.unwrap_err();
    assert_eq!(err.server_number(), Some(2627), "{err}");
    assert_eq!(
        scalar(&stack, "SELECT COUNT(*) FROM roundtrip WHERE id = 3").await,
        0
    );
    let _ = Duration::ZERO;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_never_leaks_its_open_transaction_into_the_next_request() {
    let regions = testkit().await;
    let config = regions.config("", 1, |c| c.pool.max_size = 1);
    let stack = Stack::builder(config).probes(false).build().unwrap();
    stack
        .call(exec(
            "ddl",
            "CREATE TABLE ledger (id INT NOT NULL PRIMARY KEY)",
            vec![],
        ))
        .await
        .unwrap();
    // BEGIN, one row, a duplicate, COMMIT. As on SQL Server (XACT_ABORT OFF), the
    // duplicate key is a statement-level error: the batch goes on and COMMIT runs, so
    // row 1 is committed although the call reports 2627.
    let err = stack
        .call(exec(
            "batch",
            "BEGIN TRANSACTION; INSERT INTO ledger (id) VALUES (1); INSERT INTO ledger (id) VALUES (1); COMMIT TRANSACTION",
            vec![],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.server_number(), Some(2627), "{err}");
    assert_eq!(scalar(&stack, "SELECT COUNT(*) FROM ledger").await, 1);
    // A batch-aborting error that leaves the transaction open (208, an object missing
    // at run time): the COMMIT never runs.
    let err = stack
        .call(exec(
            "batch",
            "BEGIN TRANSACTION; INSERT INTO ledger (id) VALUES (10); SELECT * FROM no_such_table; COMMIT TRANSACTION",
            vec![],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.server_number(), Some(208), "{err}");
    // The one pooled connection is reused: it must not still be inside that transaction.
    stack
        .call(exec("next", "INSERT INTO ledger (id) VALUES (2)", vec![]))
        .await
        .unwrap();
    assert_eq!(
        scalar(&stack, "SELECT @@TRANCOUNT").await,
        0,
        "no transaction left open"
    );
    assert_eq!(
        scalar(&stack, "SELECT COUNT(*) FROM ledger WHERE id = 10").await,
        0,
        "the open transaction was rolled back, not committed by a later request"
    );
    assert_eq!(scalar(&stack, "SELECT COUNT(*) FROM ledger").await, 2);

    // A unit of work that forgets to commit is rolled back and reported.
    let forgetful = SqlRequest::unit_of_work(
        RequestContext::write("forgetful"),
        work(|client| {
            Box::pin(async move {
                batch(client, "BEGIN TRANSACTION").await?;
                client
                    .execute("INSERT INTO ledger (id) VALUES (@P1)", &[&3i32])
                    .await?;
                Ok(SqlResponse::default())
            })
        }),
    );
    let err = stack.call(forgetful).await.unwrap_err();
    assert!(err.to_string().contains("still open"), "{err}");
    // What a unit commits before the transaction it leaves open stays committed: the
    // error never claims nothing was applied.
    assert!(err.may_have_applied(), "{err}");
    assert!(err.is_outcome_unknown(), "{err}");
    assert_eq!(
        scalar(&stack, "SELECT COUNT(*) FROM ledger WHERE id = 3").await,
        0
    );
}

/// A unit of work: BEGIN, INSERT, COMMIT, then a read after the commit (tagged so a
/// query fault can target it). Counts its runs.
fn commit_then_read(runs: Arc<AtomicUsize>, id: i32) -> SqlRequest {
    SqlRequest::unit_of_work(
        RequestContext::write("transfer"),
        work(move |client| {
            let runs = runs.clone();
            Box::pin(async move {
                runs.fetch_add(1, Ordering::SeqCst);
                batch(client, "BEGIN TRANSACTION").await?;
                client
                    .execute(
                        "INSERT INTO payments (id, amount) VALUES (@P1, @P2)",
                        &[&id, &70i64],
                    )
                    .await?;
                batch(client, "COMMIT TRANSACTION").await?;
                batch(client, "SELECT COUNT(*) AS after_commit FROM payments").await?;
                Ok(SqlResponse::default())
            })
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_error_after_the_commit_never_reruns_the_unit_of_work() {
    let regions = testkit().await;
    let stack = payments_stack(&regions).await;
    // 1205 and 1222 (the session lives on) and 40613 (class 20: the session ends).
    for (i, number) in [1205u32, 1222, 40613].into_iter().enumerate() {
        let id = 100 + i as i32;
        regions.primary().faults().fail_queries(
            QueryFault::new(ErrorSpec::known(number), Trigger::Next(1)).matching("after_commit"),
        );
        let runs = Arc::new(AtomicUsize::new(0));
        let err = stack
            .call(commit_then_read(runs.clone(), id))
            .await
            .unwrap_err();
        assert_eq!(err.server_number(), Some(number), "{err}");
        assert_eq!(
            runs.load(Ordering::SeqCst),
            1,
            "{number}: committed, so not re-run"
        );
        assert_eq!(err.outcome(), Outcome::Rejected, "{err}");
        assert!(err.may_have_applied(), "{err}");
        assert!(err.is_outcome_unknown(), "{err}");
        assert_eq!(err.retry_stop(), Some(RetryStop::NotIdempotent), "{err}");
        assert_eq!(
            scalar(
                &stack,
                &format!("SELECT COUNT(*) FROM payments WHERE id = {id}")
            )
            .await,
            1,
            "{number}: written exactly once"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_inside_the_open_transaction_reruns_the_unit_of_work() {
    let regions = testkit().await;
    let stack = payments_stack(&regions).await;
    // 1205 (the server rolls the transaction back), 1222 (the transaction stays open
    // and the crate rolls it back) and 40613 (the session, and the transaction, end).
    for (i, number) in [1205u32, 1222, 40613].into_iter().enumerate() {
        let id = 200 + i as i32;
        regions.primary().faults().fail_queries(
            QueryFault::new(ErrorSpec::known(number), Trigger::Next(1))
                .matching("INSERT INTO payments"),
        );
        let runs = Arc::new(AtomicUsize::new(0));
        stack
            .call(commit_then_read(runs.clone(), id))
            .await
            .unwrap_or_else(|e| panic!("{number}: {e}"));
        assert_eq!(
            runs.load(Ordering::SeqCst),
            2,
            "{number}: run, rolled back, run again"
        );
        assert_eq!(
            scalar(
                &stack,
                &format!("SELECT COUNT(*) FROM payments WHERE id = {id}")
            )
            .await,
            1
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadlock_on_a_lone_statement_is_retried_but_not_on_a_batch_of_several() {
    let regions = testkit().await;
    let stack = payments_stack(&regions).await;
    let faults = regions.primary().faults();
    // One INSERT: the deadlock undid it; retried, written once.
    faults.fail_queries(
        QueryFault::new(ErrorSpec::deadlock(), Trigger::Next(1)).matching("INSERT INTO payments"),
    );
    stack
        .call(exec(
            "create_payment",
            "INSERT INTO payments (id, amount) VALUES (@P1, @P2)",
            vec![1.into(), 100i64.into()],
        ))
        .await
        .unwrap();
    assert_eq!(scalar(&stack, "SELECT COUNT(*) FROM payments").await, 1);
    // Two statements: an earlier one may have committed before the deadlock (the
    // crate cannot tell), so the write is not re-sent and the caller must reconcile.
    faults.fail_queries(
        QueryFault::new(ErrorSpec::deadlock(), Trigger::Next(1)).matching("INSERT INTO payments"),
    );
    let err = stack
        .call(exec(
            "create_payments",
            "INSERT INTO payments (id, amount) VALUES (2, 1); INSERT INTO payments (id, amount) VALUES (3, 1)",
            vec![],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.server_number(), Some(1205), "{err}");
    assert!(err.is_outcome_unknown(), "{err}");
    assert_eq!(err.attempts(), 1, "{err}");
}
