//! The HTTP/JSON control endpoint and the `tds-server` binary.

mod tds_common;

use mssql_testkit::tds::{TdsServer, TdsServerConfig};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use tds_common::{batch, connect, connect_with, PASSWORD, USER};
use tiberius::error::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A minimal HTTP/1.1 client: returns (status, body).
async fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    let status = resp[9..12].parse().unwrap();
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

async fn start_with_control() -> (TdsServer, SocketAddr) {
    let cfg = TdsServerConfig::new(USER, PASSWORD).control("127.0.0.1:0".parse().unwrap());
    let server = TdsServer::start(cfg).await.unwrap();
    let control = server.control_addr().unwrap();
    (server, control)
}

fn code(e: &Error) -> Option<u32> {
    match e {
        Error::Server(t) => Some(t.code()),
        _ => None,
    }
}

#[tokio::test]
async fn control_endpoint_sets_and_clears_faults() {
    let (server, ctl) = start_with_control().await;
    let (st, body) = http(
        ctl,
        "POST",
        "/faults/login",
        Some(r#"{"error":{"number":40613},"count":1}"#),
    )
    .await;
    assert_eq!((st, body.as_str()), (200, r#"{"ok":true}"#));
    let err = connect_with(server.addr(), USER, PASSWORD, "testdb")
        .await
        .err()
        .unwrap();
    assert_eq!(code(&err), Some(40613));
    let mut c = connect(&server).await;

    http(
        ctl,
        "POST",
        "/faults/query",
        Some(r#"{"error":{"number":1205},"match":"from t","count":1}"#),
    )
    .await;
    batch(&mut c, "CREATE TABLE t (a INT)").await.unwrap();
    let err = batch(&mut c, "SELECT * FROM t").await.unwrap_err();
    assert_eq!(code(&err), Some(1205));

    http(
        ctl,
        "POST",
        "/faults/read-only",
        Some(r#"{"enabled":true}"#),
    )
    .await;
    let err = batch(&mut c, "INSERT INTO t VALUES (1)").await.unwrap_err();
    assert_eq!(code(&err), Some(3906));

    let (st, _) = http(ctl, "DELETE", "/faults", None).await;
    assert_eq!(st, 200);
    batch(&mut c, "INSERT INTO t VALUES (1)").await.unwrap();

    http(
        ctl,
        "POST",
        "/faults/redirect",
        Some(r#"{"host":"elsewhere","port":1444,"count":1}"#),
    )
    .await;
    let err = connect_with(server.addr(), USER, PASSWORD, "testdb")
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, Error::Routing { ref host, port: 1444 } if host == "elsewhere"),
        "{err:?}"
    );

    http(
        ctl,
        "POST",
        "/faults/drop",
        Some(r#"{"before_final_done":true,"count":1}"#),
    )
    .await;
    let err = batch(&mut c, "SELECT 1").await.unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");

    let (st, body) = http(ctl, "POST", "/sessions/kill", None).await;
    assert_eq!(st, 200);
    assert!(body.contains("\"killed\""), "{body}");

    http(ctl, "POST", "/faults/delay", Some(r#"{"ms":200}"#)).await;
    let mut c = connect(&server).await;
    let t = tokio::time::Instant::now();
    batch(&mut c, "SELECT 1").await.unwrap();
    assert!(t.elapsed() >= std::time::Duration::from_millis(200));

    http(ctl, "POST", "/faults/accept", Some(r#"{"enabled":false}"#)).await;
    assert!(connect_with(server.addr(), USER, PASSWORD, "testdb")
        .await
        .is_err());
    http(ctl, "POST", "/faults/accept", Some(r#"{"enabled":true}"#)).await;
    connect(&server).await;

    let (st, body) = http(ctl, "GET", "/counters", None).await;
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["failed_logins"], 1);
    assert_eq!(v["redirects"], 1);
    assert!(v["logins"].as_u64().unwrap() >= 3);
    assert!(v["errors_injected"].as_u64().unwrap() >= 3);
    assert_eq!(v["responses_dropped"], 1);

    // Bad requests are rejected, not applied.
    let (st, _) = http(ctl, "POST", "/faults/login", Some(r#"{"count":1}"#)).await;
    assert!((400..500).contains(&st), "{st}");
    let (st, _) = http(
        ctl,
        "POST",
        "/faults/login",
        Some(r#"{"error":{"number":1},"count":1,"probability":0.5}"#),
    )
    .await;
    assert_eq!(st, 422);
    server.shutdown().await;
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tds-server"))
}

#[tokio::test]
async fn binary_prints_its_address_and_serves() {
    let mut child = bin()
        .args([
            "--listen",
            "127.0.0.1:0",
            "--user",
            "u",
            "--password",
            "p",
            "--database",
            "shop",
            "--control",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr: SocketAddr = first
        .strip_prefix("listening on ")
        .expect(&first)
        .parse()
        .unwrap();
    assert_ne!(addr.port(), 0);
    let second = lines.next().unwrap().unwrap();
    let ctl: SocketAddr = second
        .strip_prefix("control on ")
        .expect(&second)
        .parse()
        .unwrap();
    let mut c = connect_with(addr, "u", "p", "shop").await.unwrap();
    let rows = batch(&mut c, "SELECT DB_NAME()").await.unwrap();
    assert_eq!(rows[0][0].get::<&str, _>(0), Some("shop"));
    let (st, body) = http(ctl, "GET", "/counters", None).await;
    assert_eq!(st, 200);
    assert!(body.contains("\"logins\":1"), "{body}");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn binary_rejects_bad_arguments_without_panicking() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let cases: Vec<Vec<&str>> = vec![
        vec![],
        vec!["--listen", "nonsense", "--user", "u", "--password", "p"],
        vec!["--listen", "127.0.0.1:0", "--user", "u"],
        vec![
            "--listen",
            "127.0.0.1:0",
            "--user",
            "u",
            "--password",
            "p",
            "--bogus",
        ],
        vec!["--listen", "127.0.0.1:0", "--user"],
        vec!["--listen", &taken_addr, "--user", "u", "--password", "p"],
    ];
    for args in cases {
        let out = bin().args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("tds-server: "), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    let out = bin().arg("--help").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("usage: tds-server"));
}

#[tokio::test]
async fn control_endpoint_sets_stalls_and_the_disconnect_mode() {
    use mssql_testkit::tds::DisconnectMode;
    let (server, ctl) = start_with_control().await;
    let (st, body) = http(
        ctl,
        "POST",
        "/faults/disconnect",
        Some(r#"{"mode":"complete"}"#),
    )
    .await;
    assert_eq!((st, body.as_str()), (200, r#"{"ok":true}"#));
    assert_eq!(server.faults().disconnect_mode(), DisconnectMode::Complete);
    let (st, _) = http(
        ctl,
        "POST",
        "/faults/disconnect",
        Some(r#"{"mode":"sometimes"}"#),
    )
    .await;
    assert_eq!(st, 422);
    http(ctl, "DELETE", "/faults", None).await;
    assert_eq!(server.faults().disconnect_mode(), DisconnectMode::RollBack);

    let (st, _) = http(
        ctl,
        "POST",
        "/faults/stall",
        Some(r#"{"after_rows":1,"after_bytes":3}"#),
    )
    .await;
    assert_eq!(st, 422, "one stall point only");
    let (st, _) = http(
        ctl,
        "POST",
        "/faults/stall",
        Some(r#"{"after_rows":1,"match":"from s","count":1}"#),
    )
    .await;
    assert_eq!(st, 200);
    let mut c = connect(&server).await;
    batch(
        &mut c,
        "CREATE TABLE s (a INT); INSERT INTO s (a) VALUES (1), (2)",
    )
    .await
    .unwrap();
    let stalled = tokio::time::timeout(
        std::time::Duration::from_millis(200),
        batch(&mut c, "SELECT a FROM s"),
    )
    .await;
    assert!(stalled.is_err(), "the result stalls after its first row");
    let (_, counters) = http(ctl, "GET", "/counters", None).await;
    assert!(counters.contains(r#""responses_stalled":1"#), "{counters}");
}

#[tokio::test]
async fn control_endpoint_stalls_tls_handshakes() {
    use mssql_testkit::tds::TlsMode;
    let cfg = TdsServerConfig::new(USER, PASSWORD)
        .control("127.0.0.1:0".parse().unwrap())
        .tls(TlsMode::Required);
    let server = TdsServer::start(cfg).await.unwrap();
    let ctl = server.control_addr().unwrap();
    let (st, body) = http(ctl, "POST", "/faults/tls-stall", Some(r#"{"count":1}"#)).await;
    assert_eq!((st, body.as_str()), (200, r#"{"ok":true}"#));
    let (st, _) = http(
        ctl,
        "POST",
        "/faults/tls-stall",
        Some(r#"{"count":1,"always":true}"#),
    )
    .await;
    assert_eq!(st, 422);
    let mut cfg = tiberius::Config::new();
    cfg.host("localhost");
    cfg.port(server.addr().port());
    cfg.authentication(tiberius::AuthMethod::sql_server(USER, PASSWORD));
    cfg.encryption(tiberius::EncryptionLevel::Required);
    cfg.trust_cert();
    let tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let stalled = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        tiberius::Client::connect(
            cfg,
            tokio_util::compat::TokioAsyncWriteCompatExt::compat_write(tcp),
        ),
    )
    .await;
    assert!(stalled.is_err(), "the handshake hangs");
    let (_, body) = http(ctl, "GET", "/counters", None).await;
    assert!(body.contains("\"tls_handshakes_stalled\":1"), "{body}");
    server.shutdown().await;
}
