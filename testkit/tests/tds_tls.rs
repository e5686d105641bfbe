//! TLS: PRELOGIN encryption negotiation (MS-TDS 2.2.6.5), the handshake carried in
//! PRELOGIN packets, login-only and full encryption, certificate validation, and a
//! stalled handshake — with the real tiberius client (rustls) over loopback TCP, a tap
//! that records what crosses the wire, and raw PRELOGIN bytes.

mod tds_common;

use mssql_testkit::tds::{TdsServer, TdsServerConfig, TlsMode, Trigger};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tds_common::{batch, PASSWORD, USER};
use tiberius::{AuthMethod, Client, Config, EncryptionLevel};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::compat::TokioAsyncWriteCompatExt;

async fn server(mode: TlsMode) -> TdsServer {
    TdsServer::start(TdsServerConfig::new(USER, PASSWORD).tls(mode))
        .await
        .expect("server starts")
}

/// A tiberius config for `localhost` (the name on the server certificate) at `addr`,
/// trusting the server's CA.
fn trusting(server: &TdsServer, addr: SocketAddr, level: EncryptionLevel) -> Config {
    let mut cfg = Config::new();
    cfg.host("localhost");
    cfg.port(addr.port());
    cfg.authentication(AuthMethod::sql_server(USER, PASSWORD));
    cfg.database(server.database());
    cfg.encryption(level);
    let tls = server.tls().expect("a TLS server");
    cfg.trust_cert_ca_bundle(tls.ca_pem().as_bytes().to_vec());
    cfg
}

async fn connect(
    cfg: Config,
    addr: SocketAddr,
) -> tiberius::Result<Client<tokio_util::compat::Compat<TcpStream>>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    Client::connect(cfg, tcp.compat_write()).await
}

/// A TCP relay to `target` that records the bytes the client sends.
async fn tap(target: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        let (client, _) = listener.accept().await.unwrap();
        let upstream = TcpStream::connect(target).await.unwrap();
        let (mut cr, mut cw) = client.into_split();
        let (mut ur, mut uw) = upstream.into_split();
        let down = tokio::spawn(async move {
            let _ = tokio::io::copy(&mut ur, &mut cw).await;
        });
        let mut buf = [0u8; 4096];
        while let Ok(n) = cr.read(&mut buf).await {
            if n == 0 {
                break;
            }
            // Recorded before it is forwarded, so nothing the server answered is missing.
            record.lock().unwrap().extend_from_slice(&buf[..n]);
            if uw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = uw.shutdown().await;
        let _ = down.await;
    });
    (addr, seen)
}

fn utf16(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

const MARKER: &str = "SELECT 424242 AS plaintext_marker";

/// Logs in through a tap, runs [`MARKER`], and tells whether the login name and the
/// query crossed the wire in clear text.
async fn what_is_visible(server: &TdsServer, level: EncryptionLevel) -> (bool, bool) {
    let (addr, seen) = tap(server.addr()).await;
    let cfg = match server.tls() {
        Some(_) => trusting(server, addr, level),
        None => tds_common::config(addr, USER, PASSWORD, server.database()),
    };
    let mut c = connect(cfg, addr).await.expect("login succeeds");
    let rows = batch(&mut c, MARKER).await.unwrap();
    assert_eq!(rows[0][0].get::<i32, _>(0), Some(424242));
    drop(c);
    let wire = seen.lock().unwrap().clone();
    (
        contains(&wire, &utf16(USER)),
        contains(&wire, &utf16(MARKER)),
    )
}

#[tokio::test]
async fn required_encrypts_everything_with_a_certificate_the_ca_validates() {
    let server = server(TlsMode::Required).await;
    assert_eq!(
        what_is_visible(&server, EncryptionLevel::Required).await,
        (false, false),
        "neither the login nor the query may be readable"
    );
    // A client offering ENCRYPT_OFF is answered ENCRYPT_REQ: still all encrypted.
    assert_eq!(
        what_is_visible(&server, EncryptionLevel::Off).await,
        (false, false)
    );
    let c = server.counters();
    assert_eq!((c.tls_handshakes, c.logins), (2, 2));
    server.shutdown().await;
}

#[tokio::test]
async fn login_only_encrypts_just_the_login_for_a_client_offering_encrypt_off() {
    let server = server(TlsMode::LoginOnly).await;
    assert_eq!(
        what_is_visible(&server, EncryptionLevel::Off).await,
        (false, true),
        "the LOGIN7 is encrypted, the batch after it is not"
    );
    // A client asking for encryption gets all of it.
    assert_eq!(
        what_is_visible(&server, EncryptionLevel::Required).await,
        (false, false)
    );
    // A client without TLS logs in in plaintext.
    let mut cfg = tds_common::config(server.addr(), USER, PASSWORD, server.database());
    cfg.encryption(EncryptionLevel::NotSupported);
    let mut c = connect(cfg, server.addr()).await.unwrap();
    batch(&mut c, "SELECT 1").await.unwrap();
    let counters = server.counters();
    assert_eq!((counters.tls_handshakes, counters.logins), (2, 3));
    server.shutdown().await;
}

#[tokio::test]
async fn off_is_plaintext_and_refuses_a_client_that_requires_tls() {
    let server = TdsServer::start(TdsServerConfig::new(USER, PASSWORD))
        .await
        .unwrap();
    assert!(server.tls().is_none());
    assert_eq!(
        what_is_visible(&server, EncryptionLevel::NotSupported).await,
        (true, true)
    );
    let mut cfg = tds_common::config(server.addr(), USER, PASSWORD, server.database());
    cfg.encryption(EncryptionLevel::Required);
    cfg.trust_cert();
    let Err(err) = connect(cfg, server.addr()).await else {
        panic!("must fail");
    };
    assert!(
        err.to_string().contains("encryption level"),
        "tiberius gives up on ENCRYPT_NOT_SUP: {err}"
    );
    assert_eq!(server.counters().tls_handshakes, 0);
    server.shutdown().await;
}

/// Sends a PRELOGIN with `encryption` (or none) and returns the server's answer.
async fn answer(addr: SocketAddr, encryption: Option<u8>) -> u8 {
    // VERSION (6 bytes), then ENCRYPTION when given, then the terminator.
    let mut table = Vec::new();
    let mut data = vec![0x10, 0, 0, 0, 0, 0];
    let options = 1 + usize::from(encryption.is_some());
    let start = options * 5 + 1;
    table.extend_from_slice(&[0x00, 0, start as u8, 0, 6]);
    if let Some(e) = encryption {
        table.extend_from_slice(&[0x01, 0, (start + 6) as u8, 0, 1]);
        data.push(e);
    }
    table.push(0xFF);
    table.extend_from_slice(&data);
    let mut packet = vec![0x12, 1];
    packet.extend_from_slice(&((table.len() + 8) as u16).to_be_bytes());
    packet.extend_from_slice(&[0, 0, 1, 0]);
    packet.extend_from_slice(&table);
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&packet).await.unwrap();
    let mut header = [0u8; 8];
    tcp.read_exact(&mut header).await.unwrap();
    assert_eq!(header[0], 0x04, "the PRELOGIN answer is a reply packet");
    let len = u16::from_be_bytes([header[2], header[3]]) as usize - 8;
    let mut body = vec![0u8; len];
    tcp.read_exact(&mut body).await.unwrap();
    let mut i = 0;
    while body[i] != 0xFF {
        if body[i] == 0x01 {
            let off = u16::from_be_bytes([body[i + 1], body[i + 2]]) as usize;
            return body[off];
        }
        i += 5;
    }
    panic!("no ENCRYPTION option in {body:?}");
}

#[tokio::test]
async fn the_prelogin_answer_follows_the_negotiation_table() {
    const OFF: u8 = 0;
    const ON: u8 = 1;
    const NOT_SUP: u8 = 2;
    const REQ: u8 = 3;
    let expected = [
        (TlsMode::Off, [NOT_SUP, NOT_SUP, NOT_SUP, NOT_SUP, NOT_SUP]),
        (TlsMode::LoginOnly, [NOT_SUP, OFF, ON, NOT_SUP, ON]),
        (TlsMode::Required, [REQ, REQ, ON, REQ, ON]),
    ];
    for (mode, answers) in expected {
        let server = server(mode).await;
        let offers = [None, Some(OFF), Some(ON), Some(NOT_SUP), Some(REQ)];
        for (offer, want) in offers.into_iter().zip(answers) {
            assert_eq!(
                answer(server.addr(), offer).await,
                want,
                "{mode:?} {offer:?}"
            );
        }
        server.shutdown().await;
    }
}

#[tokio::test]
async fn an_untrusted_certificate_fails_the_handshake_and_trust_cert_skips_the_check() {
    let server = server(TlsMode::Required).await;
    let mut cfg = Config::new();
    cfg.host("localhost");
    cfg.port(server.addr().port());
    cfg.authentication(AuthMethod::sql_server(USER, PASSWORD));
    cfg.encryption(EncryptionLevel::Required);
    let Err(err) = connect(cfg.clone(), server.addr()).await else {
        panic!("the CA is not trusted");
    };
    assert!(
        matches!(err, tiberius::error::Error::Tls(_)),
        "a certificate error: {err:?}"
    );
    cfg.trust_cert();
    let mut c = connect(cfg, server.addr())
        .await
        .expect("trust_cert connects");
    batch(&mut c, "SELECT 1").await.unwrap();
    let counters = server.counters();
    assert_eq!(
        (counters.tls_handshakes_failed, counters.tls_handshakes),
        (1, 1)
    );
    assert_eq!(counters.logins, 1);
    server.shutdown().await;
}

#[tokio::test]
async fn the_certificate_names_localhost_and_loopback_only() {
    let server = server(TlsMode::Required).await;
    for host in ["localhost", "127.0.0.1"] {
        let mut cfg = trusting(&server, server.addr(), EncryptionLevel::Required);
        cfg.host(host);
        connect(cfg, server.addr()).await.expect(host);
    }
    let mut cfg = trusting(&server, server.addr(), EncryptionLevel::Required);
    cfg.host("db.example");
    let Err(err) = connect(cfg, server.addr()).await else {
        panic!("wrong name");
    };
    assert!(err.to_string().contains("not valid for name"), "{err}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_stalled_handshake_never_answers_until_the_fault_is_spent() {
    let server = server(TlsMode::Required).await;
    server.faults().stall_tls_handshakes(Trigger::Next(1));
    let cfg = trusting(&server, server.addr(), EncryptionLevel::Required);
    let stalled = tokio::time::timeout(
        Duration::from_millis(300),
        connect(cfg.clone(), server.addr()),
    )
    .await;
    assert!(stalled.is_err(), "the handshake must hang");
    let counters = server.counters();
    assert_eq!(counters.tls_handshakes_stalled, 1);
    assert_eq!(counters.tls_handshakes, 0);
    // The fault is spent: the next connection gets through.
    let mut c = connect(cfg, server.addr()).await.unwrap();
    batch(&mut c, "SELECT 1").await.unwrap();
    assert_eq!(server.counters().tls_handshakes, 1);
    server.shutdown().await;
}

#[tokio::test]
async fn killing_sessions_ends_a_stalled_handshake() {
    let server = server(TlsMode::Required).await;
    server.faults().stall_tls_handshakes(Trigger::Always);
    let cfg = trusting(&server, server.addr(), EncryptionLevel::Required);
    let addr = server.addr();
    let client = tokio::spawn(async move { connect(cfg, addr).await.map(drop) });
    let faults = server.faults();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while faults.counters().tls_handshakes_stalled == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never stalled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(faults.kill_sessions(), 1);
    let result = client.await.unwrap();
    assert!(result.is_err(), "the server closed the connection");
    server.shutdown().await;
}

#[tokio::test]
async fn binary_serves_tls_and_writes_its_ca() {
    use std::io::BufRead;
    let dir = std::env::temp_dir().join(format!("mssql-testkit-tls-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tds-server"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--user",
            USER,
            "--password",
            PASSWORD,
        ])
        .args(["--tls", "required", "--tls-ca"])
        .arg(&ca)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr: SocketAddr = first
        .strip_prefix("listening on ")
        .expect(&first)
        .parse()
        .unwrap();
    let mut cfg = Config::new();
    cfg.host("localhost");
    cfg.port(addr.port());
    cfg.authentication(AuthMethod::sql_server(USER, PASSWORD));
    cfg.encryption(EncryptionLevel::Required);
    cfg.trust_cert_ca(ca.display());
    let outcome = async {
        let mut c = connect(cfg, addr).await?;
        batch(&mut c, "SELECT 1").await
    }
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let rows = outcome.expect("the written CA validates the server");
    assert_eq!(rows[0][0].get::<i32, _>(0), Some(1));
}

#[test]
fn binary_rejects_bad_tls_arguments() {
    let base = ["--listen", "127.0.0.1:0", "--user", "u", "--password", "p"];
    for extra in [
        &["--tls", "sometimes"][..],
        &["--tls-ca", "/tmp/x.pem"][..],
        &["--tls"][..],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tds-server"))
            .args(base)
            .args(extra)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{extra:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("tds-server: --tls"), "{extra:?}: {err}");
        assert!(!err.contains("panicked"), "{extra:?}: {err}");
    }
}
