//! The real tiberius client through the chaos proxy to the TDS test server:
//! a black-hole makes a query time out, a reset makes it fail with an I/O error.

mod chaos_common;

use std::time::Duration;

use chaos_common::{any_port, EVENTUALLY, QUIET};
use mssql_testkit::chaos::{ChaosProxy, Mode, Toxics};
use mssql_testkit::tds::{TdsServer, TdsServerConfig};
use tiberius::{AuthMethod, Client, Config, EncryptionLevel};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

const USER: &str = "chaos";
const PASSWORD: &str = "Ch@os-pw1";

type TdsClient = Client<Compat<TcpStream>>;

async fn server_and_proxy() -> (TdsServer, ChaosProxy) {
    let server = TdsServer::start(TdsServerConfig::new(USER, PASSWORD))
        .await
        .expect("TDS server starts");
    let proxy = ChaosProxy::start(any_port(), server.addr())
        .await
        .expect("proxy starts");
    (server, proxy)
}

async fn connect(proxy: &ChaosProxy, server: &TdsServer) -> tiberius::Result<TdsClient> {
    let mut config = Config::new();
    config.host("127.0.0.1");
    config.port(proxy.addr().port());
    config.authentication(AuthMethod::sql_server(USER, PASSWORD));
    config.encryption(EncryptionLevel::NotSupported);
    config.database(server.database());
    let tcp = TcpStream::connect(proxy.addr()).await?;
    tcp.set_nodelay(true)?;
    Client::connect(config, tcp.compat_write()).await
}

async fn select_one(client: &mut TdsClient) -> tiberius::Result<i32> {
    let row = client
        .query("SELECT 1 AS one", &[])
        .await?
        .into_row()
        .await?
        .expect("one row");
    Ok(row.get::<i32, _>(0).expect("an int"))
}

#[tokio::test]
async fn queries_pass_through_the_proxy() {
    let (server, proxy) = server_and_proxy().await;
    let mut client = timeout(EVENTUALLY, connect(&proxy, &server))
        .await
        .unwrap()
        .expect("login through the proxy");
    assert_eq!(select_one(&mut client).await.unwrap(), 1);
    let counters = proxy.counters();
    assert_eq!(counters.accepted, 1);
    assert!(counters.bytes_up > 0 && counters.bytes_down > 0);
    drop(client);
    proxy.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn blackhole_makes_a_query_time_out_and_a_login_hang() {
    let (server, proxy) = server_and_proxy().await;
    let mut client = timeout(EVENTUALLY, connect(&proxy, &server))
        .await
        .unwrap()
        .expect("login");
    assert_eq!(select_one(&mut client).await.unwrap(), 1);

    proxy.handle().set_mode(Mode::Blackhole);
    assert!(
        timeout(QUIET, select_one(&mut client)).await.is_err(),
        "the query should hang in a black-hole"
    );
    // A new login hangs too (the client's own connect timeout would fire).
    assert!(timeout(QUIET, connect(&proxy, &server)).await.is_err());
    assert_eq!(proxy.counters().blackholed, 2);
    proxy.handle().clear();
    proxy.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn reset_makes_a_query_fail_with_an_io_error() {
    let (server, proxy) = server_and_proxy().await;
    let mut client = timeout(EVENTUALLY, connect(&proxy, &server))
        .await
        .unwrap()
        .expect("login");
    assert_eq!(select_one(&mut client).await.unwrap(), 1);

    proxy.handle().set(Toxics::reset());
    let err = timeout(EVENTUALLY, select_one(&mut client))
        .await
        .expect("fails promptly")
        .expect_err("the connection was reset");
    assert!(
        matches!(err, tiberius::error::Error::Io { .. }),
        "expected Error::Io, got {err:?}"
    );
    // While the mode stays `reset`, logins fail with an I/O error too.
    let err = timeout(EVENTUALLY, connect(&proxy, &server))
        .await
        .expect("fails promptly")
        .expect_err("login through a resetting proxy");
    assert!(
        matches!(err, tiberius::error::Error::Io { .. }),
        "expected Error::Io, got {err:?}"
    );

    // Once the proxy is healthy again, a new connection works.
    proxy.handle().clear();
    let mut again = timeout(EVENTUALLY, connect(&proxy, &server))
        .await
        .unwrap()
        .expect("login after the outage");
    assert_eq!(select_one(&mut again).await.unwrap(), 1);
    proxy.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn latency_slows_a_query_down() {
    let (server, proxy) = server_and_proxy().await;
    let mut client = timeout(EVENTUALLY, connect(&proxy, &server))
        .await
        .unwrap()
        .expect("login");
    proxy
        .handle()
        .set(Toxics::latency(Duration::from_millis(100), Duration::ZERO));
    let t0 = tokio::time::Instant::now();
    assert_eq!(select_one(&mut client).await.unwrap(), 1);
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(200), "took only {took:?}");
    proxy.shutdown().await;
    server.shutdown().await;
}
