//! Shared helpers for the TDS server integration tests.
#![allow(dead_code)]

use mssql_testkit::tds::{TdsServer, TdsServerConfig};
use std::net::SocketAddr;
use tiberius::{AuthMethod, Client, Config, EncryptionLevel};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

pub type TestClient = Client<Compat<TcpStream>>;

pub const USER: &str = "tester";
pub const PASSWORD: &str = "S3cret!pw";

pub async fn start() -> TdsServer {
    TdsServer::start(TdsServerConfig::new(USER, PASSWORD))
        .await
        .expect("server starts")
}

pub fn config(addr: SocketAddr, user: &str, password: &str, db: &str) -> Config {
    let mut cfg = Config::new();
    cfg.host("127.0.0.1");
    cfg.port(addr.port());
    cfg.authentication(AuthMethod::sql_server(user, password));
    cfg.encryption(EncryptionLevel::NotSupported);
    cfg.database(db);
    cfg
}

pub async fn connect_with(
    addr: SocketAddr,
    user: &str,
    password: &str,
    db: &str,
) -> tiberius::Result<TestClient> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    Client::connect(config(addr, user, password, db), tcp.compat_write()).await
}

pub async fn connect(server: &TdsServer) -> TestClient {
    connect_with(
        server.addr(),
        server.user(),
        server.password(),
        server.database(),
    )
    .await
    .expect("login succeeds")
}

/// Runs a batch and returns every result set's rows.
pub async fn batch(
    client: &mut TestClient,
    sql: &str,
) -> tiberius::Result<Vec<Vec<tiberius::Row>>> {
    client.simple_query(sql).await?.into_results().await
}
