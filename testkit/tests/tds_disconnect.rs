//! What a client disconnect does to the work in flight: rolled back at once (the
//! default) or run to its end ([`DisconnectMode::Complete`]), where an autocommit
//! write commits and an open explicit transaction is still rolled back when the session
//! ends.

mod tds_common;

use mssql_testkit::tds::{DisconnectMode, TdsServer, TdsServerConfig};
use std::time::Duration;
use tds_common::{batch, connect, start, TestClient, PASSWORD, USER};

async fn count(c: &mut TestClient) -> i64 {
    let rows = batch(c, "SELECT COUNT(*) FROM t").await.unwrap();
    let row = &rows[0][0];
    row.try_get::<i32, _>(0)
        .ok()
        .flatten()
        .map(i64::from)
        .or_else(|| row.try_get::<i64, _>(0).ok().flatten())
        .unwrap()
}

/// Waits until the server has ended every session but `keep` (bounded so a broken server
/// fails the test instead of hanging it).
async fn sessions_settle(server: &TdsServer, keep: u64) {
    for _ in 0..1000 {
        if server.counters().connections_open <= keep {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("sessions did not end: {:?}", server.counters());
}

/// Sends `sql` on a fresh connection while every request is delayed by 1 s, gives up
/// after 50 ms and closes the connection while the server still holds the request.
async fn abandon(server: &TdsServer, sql: &str) {
    server.faults().set_query_delay(Duration::from_secs(1));
    let mut victim = connect(server).await;
    let r = tokio::time::timeout(Duration::from_millis(50), victim.execute(sql, &[])).await;
    assert!(
        r.is_err(),
        "the request is still running when the client leaves"
    );
    drop(victim);
}

async fn setup(server: &TdsServer) -> TestClient {
    let mut c = connect(server).await;
    batch(&mut c, "CREATE TABLE t (id INT NOT NULL PRIMARY KEY)")
        .await
        .unwrap();
    c
}

#[tokio::test]
async fn by_default_a_disconnect_rolls_back_the_statement_in_flight() {
    let server = start().await;
    let mut c = setup(&server).await;
    assert_eq!(server.faults().disconnect_mode(), DisconnectMode::RollBack);
    abandon(&server, "INSERT INTO t (id) VALUES (1)").await;
    sessions_settle(&server, 1).await;
    server.faults().set_query_delay(Duration::ZERO);
    assert_eq!(count(&mut c).await, 0, "the write never happened");
}

#[tokio::test]
async fn in_complete_mode_an_autocommit_write_in_flight_commits() {
    let server = start().await;
    let mut c = setup(&server).await;
    server
        .faults()
        .set_disconnect_mode(DisconnectMode::Complete);
    abandon(&server, "INSERT INTO t (id) VALUES (1)").await;
    sessions_settle(&server, 1).await;
    server.faults().set_query_delay(Duration::ZERO);
    assert_eq!(count(&mut c).await, 1, "the write happened");
}

#[tokio::test]
async fn in_complete_mode_an_open_transaction_still_rolls_back_at_session_end() {
    let server = start().await;
    let mut c = setup(&server).await;
    server
        .faults()
        .set_disconnect_mode(DisconnectMode::Complete);
    abandon(&server, "BEGIN TRANSACTION; INSERT INTO t (id) VALUES (1)").await;
    sessions_settle(&server, 1).await;
    server.faults().set_query_delay(Duration::ZERO);
    assert_eq!(count(&mut c).await, 0);
    // A whole transaction in the request commits.
    abandon(
        &server,
        "BEGIN TRANSACTION; INSERT INTO t (id) VALUES (2); COMMIT TRANSACTION",
    )
    .await;
    sessions_settle(&server, 1).await;
    server.faults().set_query_delay(Duration::ZERO);
    assert_eq!(count(&mut c).await, 1);
}

#[tokio::test]
async fn the_mode_is_a_server_option_and_clear_restores_it() {
    let server =
        TdsServer::start(TdsServerConfig::new(USER, PASSWORD).disconnect(DisconnectMode::Complete))
            .await
            .unwrap();
    let f = server.faults();
    assert_eq!(f.disconnect_mode(), DisconnectMode::Complete);
    f.set_disconnect_mode(DisconnectMode::RollBack);
    f.clear();
    assert_eq!(f.disconnect_mode(), DisconnectMode::Complete);
    let mut c = setup(&server).await;
    abandon(&server, "INSERT INTO t (id) VALUES (1)").await;
    sessions_settle(&server, 1).await;
    server.faults().set_query_delay(Duration::ZERO);
    assert_eq!(count(&mut c).await, 1);
}

#[tokio::test]
async fn an_attention_still_cancels_in_complete_mode() {
    let server = start().await;
    let mut c = setup(&server).await;
    server
        .faults()
        .set_disconnect_mode(DisconnectMode::Complete);
    server.faults().set_query_delay(Duration::from_secs(1));
    let r = tokio::time::timeout(
        Duration::from_millis(50),
        c.execute("INSERT INTO t (id) VALUES (1)", &[]),
    )
    .await;
    assert!(r.is_err());
    c.cancel_query().await.unwrap();
    server.faults().set_query_delay(Duration::ZERO);
    assert_eq!(count(&mut c).await, 0, "cancelled before it ran");
}
