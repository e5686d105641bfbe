//! Request isolation: what one request does to its session never reaches the next one
//! that borrows the same pooled connection. Each test uses a one-connection pool, so the
//! second request runs on the first one's session unless the pool closed it.
//!
//! No fault injection: these run against a real server when `MSSQL_TEST_URL` is set.

mod support;

use mssql_resilience::sql::{batch, work, Client, SqlRequest, SqlResponse};
use mssql_resilience::{RequestContext, Stack};
use support::*;

async fn one_connection(backend: &Backend) -> Stack {
    let config = backend.config("", 1, |c| {
        c.pool.max_size = 1;
        c.pool.min_idle = Some(0);
    });
    Stack::builder(config).probes(false).build().unwrap()
}

/// A unit of work that sends `sql` as a plain batch (whose SETs last for the session) and
/// then reads one integer on the same session, before the pool resets anything.
fn set_then_read(sql: &'static str, read: &'static str) -> SqlRequest {
    SqlRequest::unit_of_work(
        RequestContext::write("session_state"),
        work(move |client: &mut Client| {
            Box::pin(async move {
                batch(client, sql).await?;
                let row = client.simple_query(read).await?.into_row().await?;
                let value = row.and_then(|r| int(&r)).unwrap_or(i64::MIN);
                Ok(SqlResponse {
                    rows_affected: vec![u64::try_from(value).unwrap_or(u64::MAX)],
                    ..SqlResponse::default()
                })
            })
        }),
    )
}

fn int(row: &mssql_resilience::tiberius::Row) -> Option<i64> {
    row.try_get::<i32, _>(0)
        .ok()
        .flatten()
        .map(i64::from)
        .or_else(|| row.try_get::<i64, _>(0).ok().flatten())
        .or_else(|| row.try_get::<i16, _>(0).ok().flatten().map(i64::from))
        .or_else(|| row.try_get::<u8, _>(0).ok().flatten().map(i64::from))
}

/// Logins so far on the testkit primary; `None` on a real server, which cannot count them.
fn logins(backend: &Backend) -> Option<u64> {
    match backend {
        Backend::Testkit { primary, .. } => Some(primary.faults().counters().logins),
        Backend::Real { .. } => None,
    }
}

const ISOLATION: &str =
    "SELECT transaction_isolation_level FROM sys.dm_exec_sessions WHERE session_id = @@SPID";

#[tokio::test]
async fn a_unit_of_works_isolation_level_does_not_reach_the_next_request() {
    let backend = backend().await;
    let stack = one_connection(&backend).await;
    assert_eq!(
        scalar(&stack, ISOLATION).await,
        2,
        "READ COMMITTED at login"
    );
    let logged_in = logins(&backend);
    let seen = stack
        .call(set_then_read(
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            ISOLATION,
        ))
        .await
        .unwrap();
    assert_eq!(seen.rows_affected, vec![4], "SERIALIZABLE inside the unit");
    assert_eq!(
        scalar(&stack, ISOLATION).await,
        2,
        "READ COMMITTED after it"
    );
    assert_eq!(
        logins(&backend),
        logged_in,
        "the session was reset, not replaced"
    );
}

#[tokio::test]
async fn a_unit_of_works_set_options_do_not_reach_the_next_request() {
    let backend = backend().await;
    let stack = one_connection(&backend).await;
    let before = scalar(&stack, "SELECT @@OPTIONS").await;
    let logged_in = logins(&backend);
    for (set, bit) in [
        ("SET XACT_ABORT ON", 16384),
        ("SET NOCOUNT ON", 512),
        ("SET ANSI_NULLS OFF", 32),
        ("SET ARITHABORT ON", 64),
    ] {
        let seen = stack
            .call(set_then_read(set, "SELECT @@OPTIONS"))
            .await
            .unwrap();
        let inside = i64::try_from(seen.rows_affected[0]).unwrap();
        assert_ne!(
            inside & bit,
            before & bit,
            "{set} changed @@OPTIONS inside the unit"
        );
        assert_eq!(
            scalar(&stack, "SELECT @@OPTIONS").await,
            before,
            "{set} is gone after the unit"
        );
    }
    let seen = stack
        .call(set_then_read(
            "SET LOCK_TIMEOUT 1800",
            "SELECT @@LOCK_TIMEOUT",
        ))
        .await
        .unwrap();
    assert_eq!(seen.rows_affected, vec![1800]);
    assert_eq!(scalar(&stack, "SELECT @@LOCK_TIMEOUT").await, -1);
    assert_eq!(
        logins(&backend),
        logged_in,
        "the session was reset, not replaced"
    );
}

#[tokio::test]
async fn implicit_transactions_from_a_unit_of_work_do_not_swallow_the_next_write() {
    let backend = backend().await;
    let stack = one_connection(&backend).await;
    let _ = stack
        .call(exec("ddl", "DROP TABLE implicit_writes", vec![]))
        .await;
    stack
        .call(exec(
            "ddl",
            "CREATE TABLE implicit_writes (id INT NOT NULL PRIMARY KEY)",
            vec![],
        ))
        .await
        .unwrap();
    let logged_in = logins(&backend);
    let seen = stack
        .call(set_then_read(
            "SET IMPLICIT_TRANSACTIONS ON; INSERT INTO implicit_writes (id) VALUES (1); COMMIT",
            "SELECT @@OPTIONS & 2",
        ))
        .await
        .unwrap();
    assert_eq!(
        seen.rows_affected,
        vec![2],
        "IMPLICIT_TRANSACTIONS on inside"
    );
    // The next borrower's INSERT autocommits: it is not the start of a transaction that
    // nobody commits.
    stack
        .call(exec(
            "insert",
            "INSERT INTO implicit_writes (id) VALUES (2)",
            vec![],
        ))
        .await
        .unwrap();
    assert_eq!(scalar(&stack, "SELECT @@TRANCOUNT").await, 0);
    assert_eq!(
        scalar(&stack, "SELECT COUNT(*) FROM implicit_writes").await,
        2
    );
    assert_eq!(
        logins(&backend),
        logged_in,
        "the session was reset, not replaced"
    );
}

#[tokio::test]
async fn a_statement_that_leaves_a_transaction_open_fails_and_its_work_is_rolled_back() {
    let backend = backend().await;
    let stack = one_connection(&backend).await;
    let _ = stack.call(exec("ddl", "DROP TABLE open_tx", vec![])).await;
    stack
        .call(exec(
            "ddl",
            "CREATE TABLE open_tx (id INT NOT NULL PRIMARY KEY)",
            vec![],
        ))
        .await
        .unwrap();
    let logged_in = logins(&backend);
    let err = stack
        .call(exec(
            "forgot_commit",
            "BEGIN TRANSACTION; INSERT INTO open_tx (id) VALUES (1)",
            vec![],
        ))
        .await
        .unwrap_err();
    // A statement travels as sp_executesql, a module: SQL Server answers a transaction
    // count that differs at its end with 266 and leaves the transaction open; the pool
    // rolls it back on the same session.
    assert_eq!(err.server_number(), Some(266), "{err}");
    // Conservative: a statement before the BEGIN would have committed on its own.
    assert!(err.may_have_applied(), "{err}");
    assert_eq!(scalar(&stack, "SELECT @@TRANCOUNT").await, 0);
    assert_eq!(scalar(&stack, "SELECT COUNT(*) FROM open_tx").await, 0);
    // A balanced one is fine and costs nothing more than its answer.
    stack
        .call(exec(
            "balanced",
            "BEGIN TRANSACTION; INSERT INTO open_tx (id) VALUES (2); COMMIT TRANSACTION",
            vec![],
        ))
        .await
        .unwrap();
    assert_eq!(scalar(&stack, "SELECT COUNT(*) FROM open_tx").await, 1);
    assert_eq!(
        logins(&backend),
        logged_in,
        "rolled back on the same session"
    );
}

#[tokio::test]
async fn temp_tables_do_not_outlive_a_statement() {
    let backend = backend().await;
    let stack = one_connection(&backend).await;
    // Statements run as sp_executesql: SQL Server drops their #temp tables when it returns.
    stack
        .call(exec(
            "scratch",
            "CREATE TABLE #scratch (a INT); INSERT INTO #scratch (a) VALUES (1)",
            vec![],
        ))
        .await
        .unwrap();
    let err = stack
        .call(read("scratch", "SELECT COUNT(*) FROM #scratch"))
        .await
        .unwrap_err();
    assert_eq!(err.server_number(), Some(208), "{err}");
}

#[tokio::test]
async fn a_statement_that_sets_session_context_gets_a_fresh_connection_next() {
    // Counts logins, so the testkit only.
    let backend = testkit().await;
    let stack = one_connection(&backend).await;
    let logins = || backend.primary().faults().counters().logins;
    stack.call(read("warm", "SELECT 1")).await.unwrap();
    let before = logins();
    stack.call(read("plain", "SELECT 1")).await.unwrap();
    assert_eq!(logins(), before, "a plain statement's session is reused");
    // CONTEXT_INFO outlives the statement, and no fixed batch knows its old value: the
    // pool closes that session instead of handing it on.
    stack
        .call(exec("context", "SET CONTEXT_INFO 0x01", vec![]))
        .await
        .unwrap();
    stack.call(read("after", "SELECT 1")).await.unwrap();
    assert_eq!(logins(), before + 1, "the next request logged in afresh");
}
