//! Microsoft Entra ID logins: the access-token provider is asked once per new connection,
//! its failures are not-sent and blame no region, and the configuration says what is
//! missing. Against the testkit's FEDAUTH login, over real TCP with the real tiberius.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use mssql_resilience::auth::{AccessToken, AccessTokenProvider, BoxError};
use mssql_resilience::circuit_breaker::BreakerState;
use mssql_resilience::config::Config;
use mssql_resilience::sql::{SqlRequest, SqlResponse};
use mssql_resilience::{ErrorKind, Outcome, RequestContext, Stack};
use mssql_testkit::tds::{TdsServer, TdsServerConfig};

/// Hands out `tok-1`, `tok-2`, … and remembers what it handed out.
#[derive(Clone, Default)]
struct Minter {
    issued: Arc<Mutex<Vec<String>>>,
    fail: Arc<AtomicUsize>,
}

impl Minter {
    fn provider(&self) -> Arc<dyn AccessTokenProvider> {
        let me = self.clone();
        Arc::new(move || {
            let me = me.clone();
            async move {
                if me.fail.load(Ordering::SeqCst) > 0 {
                    me.fail.fetch_sub(1, Ordering::SeqCst);
                    return Err::<AccessToken, BoxError>("identity endpoint unreachable".into());
                }
                let mut issued = me.issued.lock().unwrap();
                let token = format!("tok-{}", issued.len() + 1);
                issued.push(token.clone());
                Ok(AccessToken::new(token))
            }
        })
    }

    fn issued(&self) -> Vec<String> {
        self.issued.lock().unwrap().clone()
    }
}

async fn server(tokens: usize) -> TdsServer {
    let mut config = TdsServerConfig::new("sa", "unused-Passw0rd").database("app");
    for i in 1..=tokens {
        config = config.access_token(format!("tok-{i}"));
    }
    TdsServer::start(config).await.expect("tds server starts")
}

fn config(server: &TdsServer) -> Config {
    Config::from_toml_str(&format!(
        "[timeouts]\ntotal = \"3s\"\nattempt = \"1s\"\nconnect = \"500ms\"\n\
         [retry]\nmax_attempts = 2\nbase = \"10ms\"\ncap = \"20ms\"\nseed = 1\n\
         [pool]\nmax_size = 2\n\
         [[regions]]\nname = \"westeurope\"\nhost = \"127.0.0.1\"\nport = {}\n\
         database = \"app\"\nauthentication = \"entra\"\nencryption = \"not_supported\"\n",
        server.addr().port()
    ))
    .expect("config is valid")
}

async fn select(stack: &Stack, n: i32) -> Result<SqlResponse, mssql_resilience::Error> {
    stack
        .call(SqlRequest::query(
            RequestContext::read("select"),
            format!("SELECT {n}"),
            [],
        ))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_new_connection_logs_in_with_a_fresh_token() {
    let server = server(20).await;
    let minter = Minter::default();
    let stack = Stack::builder(config(&server))
        .probes(false)
        .access_tokens(minter.provider())
        .build()
        .unwrap();
    let answer = select(&stack, 7).await.unwrap();
    assert_eq!(answer.scalar().and_then(|v| v.as_i64()), Some(7));
    assert_eq!(minter.issued(), ["tok-1"]);
    // A pooled connection is reused: no new token.
    select(&stack, 8).await.unwrap();
    assert_eq!(minter.issued(), ["tok-1"]);
    // The server ends every session: the reconnect asks for a new token.
    assert!(server.faults().kill_sessions() >= 1);
    select(&stack, 9).await.unwrap();
    assert_eq!(minter.issued(), ["tok-1", "tok-2"]);
    assert_eq!(server.counters().logins, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_failure_is_not_sent_and_blames_no_region() {
    let server = server(20).await;
    let minter = Minter::default();
    minter.fail.store(1_000, Ordering::SeqCst);
    let stack = Stack::builder(config(&server))
        .probes(false)
        .access_tokens(minter.provider())
        .build()
        .unwrap();
    for _ in 0..12 {
        let err = select(&stack, 1).await.unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::AccessToken, "{err}");
        assert_eq!(err.outcome(), Outcome::NotSent);
        assert!(
            err.to_string().contains("identity endpoint unreachable"),
            "{err}"
        );
    }
    assert_eq!(server.counters().logins, 0);
    // Twelve failed calls, and the breaker stays closed: the database is not at fault.
    assert_eq!(stack.health()[0].breaker, BreakerState::Closed);
    // The identity endpoint is back: the next call logs in.
    minter.fail.store(0, Ordering::SeqCst);
    select(&stack, 2).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_the_server_does_not_accept_is_login_failed() {
    let server = server(0).await;
    let minter = Minter::default();
    let stack = Stack::builder(config(&server))
        .probes(false)
        .access_tokens(minter.provider())
        .build()
        .unwrap();
    let err = select(&stack, 1).await.unwrap_err();
    assert_eq!(err.server_number(), Some(18456), "{err}");
    assert_eq!(err.outcome(), Outcome::NotSent);
    assert!(!minter.issued().is_empty());
}

#[test]
fn the_configuration_says_what_entra_needs() {
    let base =
        "[[regions]]\nname = \"westeurope\"\nhost = \"db.example\"\nauthentication = \"entra\"\n";
    let err = Config::from_toml_str(&format!("{base}user = \"app\"\n")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid `regions[0].user` = \"app\": must not be set with `authentication = \"entra\"` (the access token logs in)"
    );
    let err = Config::from_toml_str(
        "[[regions]]\nname = \"westeurope\"\nauthentication = \"entra\"\n\
         connection_string = \"server=tcp:db.example,1433;user id=app;password=hunter2\"\n",
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("must not hold `user id` or `password`"),
        "{err}"
    );
    assert!(!err.to_string().contains("hunter2"), "{err}");
    // A host without user and password is fine with entra…
    let config = Config::from_toml_str(base).unwrap();
    // …but the stack needs a provider.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt.block_on(async { Stack::builder(config).build().map(drop).unwrap_err() });
    assert_eq!(
        err.to_string(),
        "invalid `regions[0].authentication` = \"entra\": needs an access-token provider: call `StackBuilder::access_tokens`"
    );
}
