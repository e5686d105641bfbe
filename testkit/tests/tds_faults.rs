//! Each injected fault produces what tiberius reports for the real thing.

mod tds_common;

use mssql_testkit::tds::{AcceptMode, DropPoint, ErrorSpec, QueryFault, Trigger};
use std::io::ErrorKind;
use std::time::Duration;
use tds_common::{batch, connect, connect_with, start, PASSWORD, USER};
use tiberius::error::Error;
use tokio::time::Instant;

fn server_code(e: &Error) -> Option<u32> {
    match e {
        Error::Server(t) => Some(t.code()),
        _ => None,
    }
}

#[tokio::test]
async fn login_fault_next_n_then_recovers() {
    let server = start().await;
    server
        .faults()
        .fail_logins(ErrorSpec::database_unavailable("testdb"), Trigger::Next(2));
    for _ in 0..2 {
        let Err(err) = connect_with(server.addr(), USER, PASSWORD, "testdb").await else {
            panic!("login must fail");
        };
        match &err {
            Error::Server(t) => {
                assert_eq!(t.code(), 40613);
                assert_eq!(t.class(), 20);
                assert!(
                    t.message().contains("Database 'testdb' on server"),
                    "{}",
                    t.message()
                );
            }
            other => panic!("expected Error::Server, got {other:?}"),
        }
    }
    let mut c = connect(&server).await;
    assert_eq!(
        batch(&mut c, "SELECT 1").await.unwrap()[0][0].get::<i32, _>(0),
        Some(1)
    );
    let n = server.counters();
    assert_eq!((n.failed_logins, n.errors_injected, n.logins), (2, 2, 1));
}

#[tokio::test]
async fn login_fault_always_and_custom_errors() {
    let server = start().await;
    let f = server.faults();
    f.fail_logins(ErrorSpec::cannot_open_database("testdb"), Trigger::Always);
    for _ in 0..3 {
        let err = connect_with(server.addr(), USER, PASSWORD, "testdb")
            .await
            .err()
            .unwrap();
        assert_eq!(server_code(&err), Some(4060), "{err:?}");
    }
    f.fail_logins(
        ErrorSpec::new(18456, 14, "Login failed for user '{user}'."),
        Trigger::Always,
    );
    let err = connect_with(server.addr(), USER, PASSWORD, "testdb")
        .await
        .err()
        .unwrap();
    match err {
        Error::Server(t) => assert_eq!(t.message(), format!("Login failed for user '{USER}'.")),
        other => panic!("{other:?}"),
    }
    f.clear_login_faults();
    connect(&server).await;
}

#[tokio::test]
async fn login_fault_probability_is_reproducible_with_a_seed() {
    async fn outcomes(seed: u64) -> Vec<bool> {
        let server = start().await;
        server.faults().fail_logins(
            ErrorSpec::known(40613),
            Trigger::Probability { p: 0.5, seed },
        );
        let mut out = Vec::new();
        for _ in 0..16 {
            out.push(
                connect_with(server.addr(), USER, PASSWORD, "testdb")
                    .await
                    .is_ok(),
            );
        }
        out
    }
    let a = outcomes(7).await;
    let b = outcomes(7).await;
    assert_eq!(a, b, "same seed, same sequence");
    assert!(a.iter().any(|ok| *ok) && a.iter().any(|ok| !*ok), "{a:?}");
}

#[tokio::test]
async fn redirect_produces_error_routing() {
    let server = start().await;
    server
        .faults()
        .redirect_logins("replica.example.internal", 11433, Trigger::Next(1));
    let err = connect_with(server.addr(), USER, PASSWORD, "testdb")
        .await
        .err()
        .unwrap();
    match err {
        Error::Routing { host, port } => {
            assert_eq!(host, "replica.example.internal");
            assert_eq!(port, 11433);
        }
        other => panic!("expected Error::Routing, got {other:?}"),
    }
    assert_eq!(server.counters().redirects, 1);
    connect(&server).await;
}

#[tokio::test]
async fn query_fault_deadlock_then_recovers() {
    let server = start().await;
    let mut c = connect(&server).await;
    c.execute("CREATE TABLE t (a INT)", &[]).await.unwrap();
    server.faults().fail_queries(
        QueryFault::new(ErrorSpec::deadlock(), Trigger::Next(1)).matching("insert into t"),
    );
    // Not matching: runs.
    batch(&mut c, "SELECT 1").await.unwrap();
    let err = c
        .execute("INSERT INTO t VALUES (1)", &[])
        .await
        .unwrap_err();
    assert_eq!(server_code(&err), Some(1205), "{err:?}");
    match &err {
        Error::Server(t) => {
            assert_eq!(t.class(), 13);
            assert!(t.message().contains("deadlocked"), "{}", t.message());
        }
        _ => unreachable!(),
    }
    // The faulted statement did not run; the next one does.
    c.execute("INSERT INTO t VALUES (2)", &[]).await.unwrap();
    let rows = batch(&mut c, "SELECT a FROM t").await.unwrap();
    assert_eq!(rows[0].len(), 1);
    assert_eq!(rows[0][0].get::<i32, _>(0), Some(2));
    assert_eq!(server.counters().errors_injected, 1);
}

#[tokio::test]
async fn query_fault_class_20_ends_the_session() {
    let server = start().await;
    let mut c = connect(&server).await;
    server
        .faults()
        .fail_queries(QueryFault::new(ErrorSpec::service_busy(), Trigger::Next(1)));
    let err = batch(&mut c, "SELECT 1").await.unwrap_err();
    assert_eq!(server_code(&err), Some(40501), "{err:?}");
    let err = batch(&mut c, "SELECT 1").await.unwrap_err();
    assert!(
        matches!(err, Error::Io { .. }),
        "the connection is gone: {err:?}"
    );
    // A new connection works.
    let mut c = connect(&server).await;
    batch(&mut c, "SELECT 1").await.unwrap();

    server.faults().fail_queries(
        QueryFault::new(ErrorSpec::service_error(), Trigger::Next(1)).close_connection(false),
    );
    let err = c.query("SELECT @P1", &[&1i32]).await.err().unwrap();
    assert_eq!(server_code(&err), Some(40197), "{err:?}");
    batch(&mut c, "SELECT 1").await.unwrap();
}

#[tokio::test]
async fn read_only_mode_refuses_writes_with_3906() {
    let server = start().await;
    let mut c = connect(&server).await;
    c.execute("CREATE TABLE t (a INT)", &[]).await.unwrap();
    server.faults().set_read_only(true);
    for sql in [
        "INSERT INTO t VALUES (1)",
        "UPDATE t SET a = 1",
        "DELETE FROM t",
        "CREATE TABLE u (a INT)",
        "DROP TABLE t",
    ] {
        let err = c.execute(sql, &[]).await.unwrap_err();
        match err {
            Error::Server(t) => {
                assert_eq!(t.code(), 3906, "{sql}");
                assert_eq!(t.class(), 16);
                assert_eq!(
                    t.message(),
                    "Failed to update database \"testdb\" because the database is read-only."
                );
            }
            other => panic!("{sql}: {other:?}"),
        }
    }
    let rows = batch(
        &mut c,
        "SELECT DATABASEPROPERTYEX(DB_NAME(), 'Updateability'); SELECT COUNT(*) FROM t",
    )
    .await
    .unwrap();
    assert_eq!(rows[0][0].get::<&str, _>(0), Some("READ_ONLY"));
    assert_eq!(rows[1][0].get::<i32, _>(0), Some(0));
    server.faults().set_read_only(false);
    c.execute("INSERT INTO t VALUES (1)", &[]).await.unwrap();
    let rows = batch(
        &mut c,
        "SELECT DATABASEPROPERTYEX(DB_NAME(), 'Updateability')",
    )
    .await
    .unwrap();
    assert_eq!(rows[0][0].get::<&str, _>(0), Some("READ_WRITE"));
}

#[tokio::test]
async fn query_delay_slows_every_request() {
    let server = start().await;
    let mut c = connect(&server).await;
    server.faults().set_query_delay(Duration::from_millis(300));
    let started = Instant::now();
    batch(&mut c, "SELECT 1").await.unwrap();
    c.query("SELECT @P1", &[&1i32])
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );
    // A client-side timeout shorter than the delay fires.
    server.faults().set_query_delay(Duration::from_secs(60));
    let timed_out = tokio::time::timeout(Duration::from_millis(100), batch(&mut c, "SELECT 1"))
        .await
        .is_err();
    assert!(timed_out);
}

#[tokio::test]
async fn drop_before_final_done_is_an_unexpected_eof() {
    let server = start().await;
    let mut c = connect(&server).await;
    server
        .faults()
        .drop_responses(DropPoint::BeforeFinalDone, Trigger::Next(1));
    let err = batch(&mut c, "SELECT 1; SELECT 2").await.unwrap_err();
    match &err {
        Error::Io { kind, .. } => assert_eq!(*kind, ErrorKind::UnexpectedEof, "{err:?}"),
        other => panic!("expected Error::Io, got {other:?}"),
    }
    assert_eq!(server.counters().responses_dropped, 1);
    let mut c = connect(&server).await;
    batch(&mut c, "SELECT 1").await.unwrap();
}

#[tokio::test]
async fn drop_after_n_bytes_mid_packet_is_an_io_error() {
    let server = start().await;
    let mut c = connect(&server).await;
    server
        .faults()
        .drop_responses(DropPoint::AfterBytes(20), Trigger::Next(1));
    let err = c.query("SELECT @P1", &[&"some text"]).await.err().unwrap();
    match &err {
        // A partial packet: tiberius's framing reports the bytes left on the stream.
        Error::Io { kind, message } => {
            assert_eq!(*kind, ErrorKind::BrokenPipe, "{err:?}");
            assert!(message.contains("bytes remaining on stream"), "{message}");
        }
        other => panic!("expected Error::Io, got {other:?}"),
    }
}

#[tokio::test]
async fn killed_sessions_fail_their_next_query() {
    let server = start().await;
    let mut a = connect(&server).await;
    let mut b = connect(&server).await;
    assert_eq!(server.counters().connections_open, 2);
    assert_eq!(server.faults().kill_sessions(), 2);
    for c in [&mut a, &mut b] {
        let err = batch(c, "SELECT 1").await.unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.counters().connections_open > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let n = server.counters();
    assert_eq!(
        (n.connections_open, n.connections_total, n.sessions_killed),
        (0, 2, 2)
    );
    let mut c = connect(&server).await;
    batch(&mut c, "SELECT 1").await.unwrap();
}

#[tokio::test]
async fn kill_ends_a_running_waitfor() {
    let server = start().await;
    let mut c = connect(&server).await;
    let faults = server.faults();
    let killer = tokio::spawn(async move {
        // Kill once the batch is in flight.
        while faults.counters().batches == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        faults.kill_sessions();
    });
    let err = tokio::time::timeout(
        Duration::from_secs(30),
        batch(&mut c, "WAITFOR DELAY '00:05:00'"),
    )
    .await
    .expect("the kill ends the WAITFOR")
    .unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    killer.await.unwrap();
}

#[tokio::test]
async fn stop_accepting_then_resume() {
    let server = start().await;
    let f = server.faults();
    f.set_accept_mode(AcceptMode::CloseImmediately);
    let err = connect_with(server.addr(), USER, PASSWORD, "testdb")
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");

    f.set_accept_mode(AcceptMode::Refuse);
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        match tokio::net::TcpStream::connect(server.addr()).await {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => break e,
            // A connection caught in the closing listener's backlog is reset.
            Err(e) if e.kind() == ErrorKind::ConnectionReset && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            Err(e) => panic!("unexpected connect error {e:?}"),
            // The listener is being dropped by the accept loop; try again.
            Ok(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            Ok(_) => panic!("still accepting"),
        }
    };
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);

    f.set_accept_mode(AcceptMode::Normal);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut c = loop {
        match connect_with(server.addr(), USER, PASSWORD, "testdb").await {
            Ok(c) => break c,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            Err(e) => panic!("not accepting again: {e:?}"),
        }
    };
    batch(&mut c, "SELECT 1").await.unwrap();
    assert!(server.counters().connections_total >= 2);
}

#[tokio::test]
async fn counters_move() {
    let server = start().await;
    let mut c = connect(&server).await;
    batch(&mut c, "SELECT 1").await.unwrap();
    batch(&mut c, "SELECT 1").await.unwrap();
    c.query("SELECT @P1", &[&1i32])
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    let n = server.counters();
    assert_eq!(
        (
            n.logins,
            n.batches,
            n.rpcs,
            n.connections_open,
            n.connections_total
        ),
        (1, 2, 1, 1, 1)
    );
}
