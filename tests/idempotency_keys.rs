//! Idempotency keys over real TCP: a keyed write runs once under repeated resets and
//! lost answers, a reused key is a conflict, and the rows a keyed write returned (a
//! generated id) are recorded and replayed value for value.

mod support;

use mssql_resilience::idempotency::{
    idempotent_execute, idempotent_query, RecordError, DEFAULT_TABLE, MAX_RECORDED_CHARS,
};
use std::time::Duration;

use mssql_resilience::sql::{Param, SqlRequest};
use mssql_resilience::{ErrorKind, RequestContext};
use mssql_testkit::tds::{DropPoint, StallFault, StallPoint, Trigger};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_under_repeated_resets_writes_exactly_once() {
    let regions = testkit().await;
    let stack = payments_stack(&regions).await;
    // The first three responses to the guarded write are cut before their final DONE.
    regions
        .primary()
        .faults()
        .drop_responses(DropPoint::BeforeFinalDone, Trigger::Next(3));
    let request = idempotent_execute(
        RequestContext::write("create_payment"),
        DEFAULT_TABLE,
        "payment-42",
        "INSERT INTO payments (id, amount) VALUES (@P1, @P2)",
        [42.into(), 4200i64.into()],
    )
    .unwrap();
    let response = stack.call(request.clone()).await.unwrap();
    assert_eq!(response.total_rows_affected(), 1);
    assert_eq!(
        scalar(&stack, "SELECT COUNT(*) FROM payments WHERE id = 42").await,
        1
    );
    // Sending it again (a client retry after its own timeout) replays the recorded outcome.
    let again = stack.call(request).await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.rows_affected, vec![1]);
    assert_eq!(scalar(&stack, "SELECT COUNT(*) FROM payments").await, 1);
}

fn guarded_payment(key: &str, id: i32) -> SqlRequest {
    idempotent_execute(
        RequestContext::write("create_payment"),
        DEFAULT_TABLE,
        key,
        "INSERT INTO payments (id, amount) VALUES (@P1, @P2)",
        [id.into(), 100i64.into()],
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guarded_write_and_its_replay_are_one_request_each() {
    let regions = testkit().await;
    let stack = payments_stack(&regions).await;
    let requests = || {
        let c = regions.primary().faults().counters();
        c.batches + c.rpcs
    };
    let before = requests();
    let first = stack.call(guarded_payment("one-trip", 1)).await.unwrap();
    assert_eq!(
        (first.rows_affected.clone(), first.replayed),
        (vec![1], false)
    );
    assert_eq!(
        requests() - before,
        1,
        "the check, the write and the key in one request"
    );
    let before = requests();
    let again = stack.call(guarded_payment("one-trip", 1)).await.unwrap();
    assert_eq!(
        (again.rows_affected.clone(), again.replayed),
        (vec![1], true)
    );
    assert_eq!(requests() - before, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_reused_for_a_different_request_is_a_conflict_and_writes_nothing() {
    let regions = testkit().await;
    let stack = payments_stack(&regions).await;
    let first = stack.call(guarded_payment("order-77", 10)).await.unwrap();
    assert!(!first.replayed);
    // The same key, another payment: not "replayed" (that would claim a write that never
    // happened), but a conflict.
    let err = stack
        .call(guarded_payment("order-77", 11))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::IdempotencyConflict, "{err}");
    assert!(
        !err.may_have_applied() && !err.is_outcome_unknown(),
        "{err}"
    );
    assert_eq!(err.attempts(), 1, "not retried: {err}");
    assert_eq!(
        scalar(&stack, "SELECT COUNT(*) FROM payments WHERE id = 11").await,
        0
    );
    // The same request again is a replay.
    let again = stack.call(guarded_payment("order-77", 10)).await.unwrap();
    assert!(again.replayed);
    assert_eq!(
        scalar(&stack, "SELECT COUNT(*) FROM payments WHERE id = 10").await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_guarded_write_records_nothing_and_leaves_the_session_as_it_was() {
    let regions = testkit().await;
    // One connection, so the next request surely runs on the session the guard used.
    let stack = payments_stack_with(&regions, |c| {
        c.pool.max_size = 1;
        c.pool.min_idle = Some(0);
    })
    .await;
    stack.call(guarded_payment("key-a", 42)).await.unwrap();
    // The guard's SET XACT_ABORT ON ended with its request: on the same session (the pool
    // has one connection) a plain batch still goes on after a statement-level error, as
    // SQL Server's default says.
    let plain = stack
        .call(exec(
            "two_inserts",
            "INSERT INTO payments (id, amount) VALUES (42, 1); INSERT INTO payments (id, amount) VALUES (43, 1)",
            vec![],
        ))
        .await;
    assert_eq!(plain.unwrap_err().server_number(), Some(2627));
    assert_eq!(
        scalar(&stack, "SELECT COUNT(*) FROM payments WHERE id = 43").await,
        1,
        "the statement after the error ran"
    );
    // Another key, the same payment id: the write itself violates the primary key.
    let err = stack.call(guarded_payment("key-b", 42)).await.unwrap_err();
    assert_eq!(err.server_number(), Some(2627), "{err}");
    let recorded = format!("SELECT COUNT(*) FROM {DEFAULT_TABLE} WHERE idempotency_key = 'key-b'");
    assert_eq!(
        scalar(&stack, &recorded).await,
        0,
        "a failed write records no key"
    );
}

/// The orders table: the server generates the id, the caller must learn it.
const ORDERS: &str = "CREATE TABLE orders (id INT IDENTITY(1,1) NOT NULL PRIMARY KEY, \
    customer UNIQUEIDENTIFIER NOT NULL, amount DECIMAL(18,2) NOT NULL, \
    created_at DATETIME2 NOT NULL, note NVARCHAR(MAX) NULL)";

/// An order whose generated id (and the rest of the row) comes back with `OUTPUT`.
fn create_order(key: &str, note: &str) -> SqlRequest {
    let customer =
        mssql_resilience::uuid::Uuid::from_u128(0x5eed_0000_0000_0000_0000_0000_0000_0042);
    let amount = mssql_resilience::rust_decimal::Decimal::new(1_234_567, 2);
    let created = mssql_resilience::chrono::NaiveDate::from_ymd_opt(2024, 2, 29)
        .and_then(|d| d.and_hms_nano_opt(13, 45, 56, 123_456_700))
        .unwrap();
    idempotent_query(
        RequestContext::write("create_order"),
        DEFAULT_TABLE,
        key,
        "INSERT INTO orders (customer, amount, created_at, note) \
         OUTPUT INSERTED.id, INSERTED.customer, INSERTED.amount, INSERTED.created_at, INSERTED.note \
         VALUES (@P1, @P2, @P3, @P4)",
        [
            Param::from(customer),
            Param::from(amount),
            Param::from(created),
            Param::from(note),
        ],
    )
    .unwrap()
}

async fn orders_stack(regions: &Backend) -> mssql_resilience::Stack {
    let stack = payments_stack(regions).await;
    stack.call(exec("ddl", ORDERS, vec![])).await.unwrap();
    stack
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_id_is_recorded_with_its_key_and_replayed_value_for_value() {
    let regions = testkit().await;
    let stack = orders_stack(&regions).await;
    stack.call(create_order("warm-up", "first")).await.unwrap();
    let requests = || {
        let c = regions.primary().faults().counters();
        c.batches + c.rpcs
    };
    let before = requests();
    let fresh = stack.call(create_order("order-1", "ß €")).await.unwrap();
    assert_eq!(
        requests() - before,
        3,
        "begin, the guarded write, record and commit"
    );
    assert!(!fresh.replayed);
    assert_eq!(fresh.rows_affected, vec![1]);
    let row = fresh.first_row().expect("the OUTPUT row");
    assert_eq!(
        row.get::<i32>("id"),
        2,
        "the server generated the second id"
    );
    assert_eq!(row.get::<Option<&str>>("note"), Some("ß €"));
    let again = stack.call(create_order("order-1", "ß €")).await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.rows_affected, vec![1]);
    assert_eq!(
        again.result_sets, fresh.result_sets,
        "the same rows, value for value"
    );
    let replayed = again.first_row().unwrap();
    assert_eq!(replayed.get::<i32>("id"), 2);
    assert_eq!(
        replayed.get::<mssql_resilience::rust_decimal::Decimal>("amount"),
        mssql_resilience::rust_decimal::Decimal::new(1_234_567, 2)
    );
    assert_eq!(
        replayed.get::<mssql_resilience::chrono::NaiveDateTime>("created_at"),
        row.get::<mssql_resilience::chrono::NaiveDateTime>("created_at")
    );
    assert_eq!(scalar(&stack, "SELECT COUNT(*) FROM orders").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_whose_commit_answer_was_lost_still_learns_the_generated_id() {
    let regions = testkit().await;
    let stack = orders_stack(&regions).await;
    // The record-and-commit batch runs (the order and its key commit), then its answer
    // never comes. The retry finds the key and answers the recorded row.
    regions.primary().faults().stall_responses(
        StallFault::new(StallPoint::AfterRows(0), Trigger::Next(1)).matching("SET returned ="),
    );
    let response = stack.call(create_order("order-9", "lost")).await.unwrap();
    assert_eq!(regions.primary().faults().counters().responses_stalled, 1);
    assert!(response.replayed, "answered from the record");
    assert_eq!(response.first_row().unwrap().get::<i32>("id"), 1);
    assert_eq!(scalar(&stack, "SELECT COUNT(*) FROM orders").await, 1);
    assert_eq!(scalar(&stack, "SELECT MAX(id) FROM orders").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_write_whose_connection_dies_before_its_commit_runs_once() {
    let regions = testkit().await;
    let stack = orders_stack(&regions).await;
    // The guarded write runs (its transaction still open, holding its locks) and its
    // answer stalls; then the connection dies. Nothing was committed, so the server
    // rolls it back and the retry writes and records it.
    let faults = regions.primary().faults();
    faults.stall_responses(
        StallFault::new(StallPoint::AfterRows(0), Trigger::Next(1)).matching("OUTPUT INSERTED"),
    );
    let call = tokio::spawn({
        let stack = stack.clone();
        async move { stack.call(create_order("order-3", "retried")).await }
    });
    eventually("the answer stalls", Duration::from_secs(10), || {
        faults.counters().responses_stalled == 1
    })
    .await;
    assert!(faults.kill_sessions() >= 1);
    let response = call.await.unwrap().unwrap();
    assert!(!response.replayed, "the first write was rolled back");
    assert_eq!(scalar(&stack, "SELECT COUNT(*) FROM orders").await, 1);
    let id = response.first_row().unwrap().get::<i32>("id");
    assert_eq!(
        i64::from(id),
        scalar(&stack, "SELECT MAX(id) FROM orders").await
    );
    let again = stack
        .call(create_order("order-3", "retried"))
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.first_row().unwrap().get::<i32>("id"), id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returned_rows_too_large_to_record_roll_the_write_back() {
    let regions = testkit().await;
    let stack = orders_stack(&regions).await;
    let note = "x".repeat(MAX_RECORDED_CHARS);
    let err = stack.call(create_order("big", &note)).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Conversion, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("rolled back") && text.contains(&MAX_RECORDED_CHARS.to_string()),
        "{text}"
    );
    assert!(!text.contains("xxxx"), "the value is not echoed");
    assert!(!err.may_have_applied(), "{err}");
    assert_eq!(scalar(&stack, "SELECT COUNT(*) FROM orders").await, 0);
    let key = format!("SELECT COUNT(*) FROM {DEFAULT_TABLE} WHERE idempotency_key = 'big'");
    assert_eq!(scalar(&stack, &key).await, 0);
    let source = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<RecordError>());
    assert!(matches!(source, Some(RecordError::TooLarge)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_cannot_be_replayed_across_execute_and_query() {
    let regions = testkit().await;
    let stack = orders_stack(&regions).await;
    stack.call(create_order("shared", "a")).await.unwrap();
    let as_execute = idempotent_execute(
        RequestContext::write("create_order"),
        DEFAULT_TABLE,
        "shared",
        "INSERT INTO orders (customer, amount, created_at, note) \
         OUTPUT INSERTED.id, INSERTED.customer, INSERTED.amount, INSERTED.created_at, INSERTED.note \
         VALUES (@P1, @P2, @P3, @P4)",
        [Param::I32(Some(1))],
    )
    .unwrap();
    let err = stack.call(as_execute).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::IdempotencyConflict, "{err}");
    assert_eq!(scalar(&stack, "SELECT COUNT(*) FROM orders").await, 1);
}
