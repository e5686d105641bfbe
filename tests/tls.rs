//! TLS end to end: the testkit negotiates encryption in PRELOGIN and serves a certificate
//! signed by a CA it generated at start; the Stack connects with the real tiberius
//! (rustls) over loopback TCP. A trusted CA works, an untrusted certificate fails with a
//! clear, non-retried error that blames no region, `trust_server_certificate` skips the
//! check, and a stalled handshake is bounded by the connect timeout.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use mssql_resilience::circuit_breaker::BreakerState;
use mssql_resilience::config::Config;
use mssql_resilience::error::TimeoutScope;
use mssql_resilience::pool::RECONNECT_PACE;
use mssql_resilience::{ErrorKind, Outcome, Stack};
use mssql_testkit::tds::{TdsServer, TdsServerConfig, TlsMode, Trigger};
use support::{exec, read, scalar, BASE, DATABASE, PASSWORD, USER};

async fn server(mode: TlsMode) -> TdsServer {
    TdsServer::start(
        TdsServerConfig::new(USER, PASSWORD)
            .database(DATABASE)
            .tls(mode),
    )
    .await
    .expect("tds server starts")
}

/// The server's CA written to a fresh file (removed on drop).
struct CaFile(PathBuf);

impl CaFile {
    fn of(server: &TdsServer) -> CaFile {
        let path = std::env::temp_dir().join(format!(
            "mssql-resilience-tls-{}-{}.pem",
            std::process::id(),
            fastrand::u64(..)
        ));
        server
            .tls()
            .expect("a TLS server")
            .write_ca_pem(&path)
            .unwrap();
        CaFile(path)
    }

    /// The path as a TOML string literal.
    fn toml(&self) -> String {
        format!("{:?}", self.0.display().to_string())
    }
}

impl Drop for CaFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// [`BASE`] with one region at `host`:`server`'s port; `extra` adds region keys.
fn config(server: &TdsServer, host: &str, extra: &str) -> Config {
    Config::from_toml_str(&format!(
        "{BASE}[[regions]]\nname = \"westeurope\"\nhost = \"{host}\"\nport = {}\n\
         database = \"{DATABASE}\"\nuser = \"{USER}\"\npassword = \"{PASSWORD}\"\n{extra}",
        server.addr().port()
    ))
    .expect("test config is valid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encryption_required_with_the_server_ca_trusted_works_end_to_end() {
    let server = server(TlsMode::Required).await;
    let ca = CaFile::of(&server);
    let config = config(
        &server,
        "localhost",
        &format!(
            "encryption = \"required\"\ntrust_server_certificate_ca = {}\n",
            ca.toml()
        ),
    );
    let stack = Stack::builder(config).build().unwrap();
    assert!(stack.wait_for_probes(Duration::from_secs(5)).await);
    assert_eq!(scalar(&stack, "SELECT 41 + 1").await, 42);
    stack
        .call(exec(
            "create",
            "CREATE TABLE tls_notes (id INT PRIMARY KEY, body NVARCHAR(50))",
            vec![],
        ))
        .await
        .unwrap();
    stack
        .call(exec(
            "insert",
            "INSERT INTO tls_notes VALUES (1, N'over TLS')",
            vec![],
        ))
        .await
        .unwrap();
    assert_eq!(scalar(&stack, "SELECT COUNT(*) FROM tls_notes").await, 1);
    let health = &stack.health()[0];
    assert!(health.healthy, "{health:?}");
    let counters = server.counters();
    assert!(counters.tls_handshakes >= 1, "{counters:?}");
    assert_eq!(
        counters.tls_handshakes, counters.logins,
        "every login over TLS"
    );
    assert_eq!(counters.tls_handshakes_failed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_string_names_the_ca_with_trust_server_certificate_ca() {
    let server = server(TlsMode::Required).await;
    let ca = CaFile::of(&server);
    let text = format!(
        "{BASE}[[regions]]\nname = \"westeurope\"\nconnection_string = \
         \"server=tcp:127.0.0.1,{};database={DATABASE};user id={USER};password={PASSWORD};\
         TrustServerCertificateCA={}\"\n",
        server.addr().port(),
        ca.0.display()
    );
    let config = Config::from_toml_str(&text).expect("valid");
    let stack = Stack::builder(config).probes(false).build().unwrap();
    assert_eq!(scalar(&stack, "SELECT 7").await, 7);
    assert!(server.counters().tls_handshakes >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_fails_clearly_is_not_retried_and_blames_no_region() {
    let server = server(TlsMode::Required).await;
    // `required` without the CA: the certificate does not chain to a system root.
    let config = config(&server, "localhost", "encryption = \"required\"\n");
    let stack = Stack::builder(config).probes(false).build().unwrap();
    let calls = 12;
    for _ in 0..calls {
        let err = stack.call(read("select", "SELECT 1")).await.unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Tls, "{err}");
        assert_eq!(err.outcome(), Outcome::NotSent);
        assert_eq!(err.attempts(), 1, "not retried: {err}");
        let text = err.to_string();
        for says in [
            "certificate is not trusted",
            "trust_server_certificate_ca",
            "UnknownIssuer",
        ] {
            assert!(text.contains(says), "`{says}` missing from: {text}");
        }
    }
    // One handshake per call (no retry), and the server saw each one fail.
    support::eventually(
        "the server saw every failed handshake",
        Duration::from_secs(5),
        || server.counters().tls_handshakes_failed == calls,
    )
    .await;
    let counters = server.counters();
    assert_eq!((counters.tls_handshakes, counters.logins), (0, 0));
    // Twelve failures against a breaker that opens after 4 of 10: it stays closed, and
    // the region stays healthy — the certificate trust is this client's configuration.
    let health = &stack.health()[0];
    assert_eq!(health.breaker, BreakerState::Closed, "{health:?}");
    assert!(health.healthy, "{health:?}");
    assert_eq!(stack.retry_budget().snapshot().withdrawals, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_server_certificate_connects_without_the_ca() {
    let server = server(TlsMode::Required).await;
    let config = config(
        &server,
        "127.0.0.1",
        "encryption = \"trust_server_certificate\"\n",
    );
    let stack = Stack::builder(config).probes(false).build().unwrap();
    assert_eq!(scalar(&stack, "SELECT 5").await, 5);
    let counters = server.counters();
    assert!(counters.tls_handshakes >= 1, "{counters:?}");
    assert_eq!(counters.tls_handshakes_failed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handshake_ends_as_a_connect_timeout() {
    let server = server(TlsMode::Required).await;
    let ca = CaFile::of(&server);
    let config = config(
        &server,
        "localhost",
        &format!("trust_server_certificate_ca = {}\n", ca.toml()),
    );
    let mut config = config;
    // One attempt: the error is that attempt's own (a retry's connect limit would grow
    // with the latency estimate's backoff, and could meet the attempt timeout first).
    config.retry.max_attempts = 1;
    let configured = config.timeouts.connect;
    let stack = Stack::builder(config).probes(false).build().unwrap();
    server.faults().stall_tls_handshakes(Trigger::Always);
    let err = stack.call(read("select", "SELECT 1")).await.unwrap_err();
    match err.kind() {
        ErrorKind::Timeout {
            scope: TimeoutScope::Connect,
            after,
        } => assert!(*after >= configured, "{err}"),
        other => panic!("expected a connect timeout, got {other:?}: {err}"),
    }
    assert_eq!(err.outcome(), Outcome::NotSent);
    assert_eq!(err.attempts(), 1);
    let counters = server.counters();
    // The only region, so the checkout kept the pool trying until the budget ran out:
    // each handshake bounded by the connect timeout, new ones paced (at most one per
    // `RECONNECT_PACE` over the 3 s budget).
    let most = 3_000 / RECONNECT_PACE.as_millis() as u64 + 1;
    assert!(
        (1..=most).contains(&counters.tls_handshakes_stalled),
        "{counters:?}"
    );
    assert_eq!((counters.tls_handshakes, counters.logins), (0, 0));
    // The handshake answers again: the next call connects.
    server.faults().clear();
    assert_eq!(scalar(&stack, "SELECT 3").await, 3);
    assert!(server.counters().tls_handshakes >= 1);
}

#[test]
fn the_ca_file_is_checked_when_the_configuration_loads() {
    let region = |extra: &str| {
        format!(
            "[[regions]]\nname = \"westeurope\"\nhost = \"db.example\"\nuser = \"u\"\n\
             password = \"p\"\n{extra}"
        )
    };
    let missing = std::env::temp_dir().join("mssql-resilience-no-such-ca.pem");
    let err = Config::from_toml_str(&region(&format!(
        "trust_server_certificate_ca = {:?}\n",
        missing.display().to_string()
    )))
    .unwrap_err();
    assert_eq!(err.field(), "regions[0].trust_server_certificate_ca");
    assert!(err.to_string().contains("cannot be read"), "{err}");

    let not_pem = std::env::temp_dir().join(format!(
        "mssql-resilience-not-a-ca-{}.pem",
        fastrand::u64(..)
    ));
    std::fs::write(&not_pem, "hello").unwrap();
    let literal = format!("{:?}", not_pem.display().to_string());
    let err = Config::from_toml_str(&region(&format!(
        "trust_server_certificate_ca = {literal}\n"
    )))
    .unwrap_err();
    assert!(
        err.to_string().contains("holds no PEM certificate"),
        "{err}"
    );
    let err = Config::from_toml_str(&region(&format!(
        "encryption = \"trust_server_certificate\"\ntrust_server_certificate_ca = {literal}\n"
    )))
    .unwrap_err();
    assert!(err.to_string().contains("trusts any certificate"), "{err}");
    let err =
        Config::from_toml_str(&region("trust_server_certificate_ca = \"ca.txt\"\n")).unwrap_err();
    assert!(
        err.to_string().contains("`.pem`, `.crt` or `.der`"),
        "{err}"
    );
    // The connection string's key is checked the same way, without showing the string.
    let err = Config::from_toml_str(&format!(
        "[[regions]]\nname = \"westeurope\"\nconnection_string = \
         \"server=tcp:db.example,1433;user id=u;password=hunter2;TrustServerCertificateCA={}\"\n",
        not_pem.display()
    ))
    .unwrap_err();
    assert_eq!(err.field(), "regions[0].connection_string");
    assert!(
        err.to_string()
            .contains("`TrustServerCertificateCA` file holds no PEM"),
        "{err}"
    );
    assert!(!err.to_string().contains("hunter2"), "{err}");
    let _ = std::fs::remove_file(&not_pem);
}

/// Live calls count against nothing, but the probes run the same handshake: they grade
/// the region down and the health report carries the reason, while calls keep getting
/// the TLS error (not "no region available").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_grade_a_region_with_an_untrusted_certificate_down_and_say_why() {
    let server = server(TlsMode::Required).await;
    let config = config(&server, "localhost", "encryption = \"required\"\n");
    let stack = Stack::builder(config).build().unwrap();
    assert!(stack.wait_for_probes(Duration::from_secs(5)).await);
    let health = &stack.health()[0];
    assert!(!health.healthy, "{health:?}");
    let probe = health.last_probe.as_ref().expect("probed");
    let reason = probe.error.as_deref().unwrap_or_default();
    assert!(reason.starts_with("tls handshake failed"), "{reason}");
    for _ in 0..3 {
        let err = stack.call(read("select", "SELECT 1")).await.unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Tls, "{err}");
    }
    assert_eq!(stack.health()[0].breaker, BreakerState::Closed);
}
