//! The arms: what a team writes without the crate (bb8 + tiberius + a per-call
//! timeout, one region), the full mssql-resilience stack with default settings, and
//! (in `peer.rs`) what a careful team builds with tower-resilience.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mssql_resilience::config::Config;
use mssql_resilience::deadline::ambient;
use mssql_resilience::idempotency::{create_table_sql, idempotent_execute, DEFAULT_TABLE};
use mssql_resilience::observe::{Event, Observer};
use mssql_resilience::sql::{Param, SqlRequest};
use mssql_resilience::{Intent, RequestContext, Stack};
use mssql_testkit::chaos::{ChaosProxy, ProxyConfig};
use mssql_testkit::tds::{TdsServer, TdsServerConfig};
use tiberius::{AuthMethod, Client, EncryptionLevel};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use crate::peer::Peer;

pub const USER: &str = "api";
pub const PASSWORD: &str = "replay-only";
pub const DATABASE: &str = "apiv2";
pub const ITEMS: i32 = 1000;

/// One region of one arm: a TDS server behind a chaos proxy.
pub struct Region {
    pub name: &'static str,
    pub server: TdsServer,
    pub proxy: ChaosProxy,
}

impl Region {
    /// Starts the region's server and its chaos proxy; `seed` seeds the proxy's jitter
    /// and its per-connection toxicity draws (so every arm sees the same draws).
    pub async fn start(
        name: &'static str,
        seed: u64,
    ) -> Result<Region, Box<dyn std::error::Error>> {
        let server =
            TdsServer::start(TdsServerConfig::new(USER, PASSWORD).database(DATABASE)).await?;
        let proxy = ChaosProxy::start_with(
            ProxyConfig::new("127.0.0.1:0".parse()?, server.addr()).with_seed(seed),
        )
        .await?;
        Ok(Region {
            name,
            server,
            proxy,
        })
    }

    /// A direct tiberius connection to the server (not through the proxy).
    pub async fn direct(&self) -> Result<Client<Compat<TcpStream>>, Box<dyn std::error::Error>> {
        connect(self.server.addr().port()).await
    }

    /// Creates the schema and the items every read looks up.
    pub async fn seed(&self) -> Result<(), Box<dyn std::error::Error>> {
        let mut client = self.direct().await?;
        for ddl in [
            "CREATE TABLE items (id INT NOT NULL PRIMARY KEY, name NVARCHAR(50) NOT NULL)"
                .to_owned(),
            // No key: a duplicated write shows up as two rows.
            "CREATE TABLE writes (write_id BIGINT NOT NULL, note NVARCHAR(50) NULL)".to_owned(),
            create_table_sql(DEFAULT_TABLE),
        ] {
            client.simple_query(ddl).await?.into_results().await?;
        }
        for chunk in (1..=ITEMS).collect::<Vec<_>>().chunks(250) {
            let values: Vec<String> = chunk
                .iter()
                .map(|i| format!("({i}, N'item {i}')"))
                .collect();
            let sql = format!("INSERT INTO items (id, name) VALUES {}", values.join(", "));
            client.simple_query(sql).await?.into_results().await?;
        }
        Ok(())
    }

    /// Every write id in the region's `writes` table (with repeats).
    pub async fn write_ids(&self) -> Result<Vec<i64>, Box<dyn std::error::Error>> {
        let mut client = self.direct().await?;
        let rows = client
            .simple_query("SELECT write_id FROM writes")
            .await?
            .into_first_result()
            .await?;
        Ok(rows.iter().filter_map(|r| r.get::<i64, _>(0)).collect())
    }
}

pub fn tiberius_config(port: u16) -> tiberius::Config {
    let mut config = tiberius::Config::new();
    config.host("127.0.0.1");
    config.port(port);
    config.database(DATABASE);
    config.authentication(AuthMethod::sql_server(USER, PASSWORD));
    config.encryption(EncryptionLevel::NotSupported);
    config
}

async fn connect(port: u16) -> Result<Client<Compat<TcpStream>>, Box<dyn std::error::Error>> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.set_nodelay(true)?;
    Ok(Client::connect(tiberius_config(port), tcp.compat_write()).await?)
}

/// The result of one API call.
pub struct CallResult {
    pub ok: bool,
    /// A write that may or may not have been applied.
    pub outcome_unknown: bool,
    /// Why it failed (a short, bounded label).
    pub error: Option<String>,
}

impl CallResult {
    /// A success.
    pub fn ok() -> Self {
        CallResult {
            ok: true,
            outcome_unknown: false,
            error: None,
        }
    }

    /// A failure labelled `error`.
    pub fn failed(error: impl Into<String>, outcome_unknown: bool) -> Self {
        CallResult {
            ok: false,
            outcome_unknown,
            error: Some(error.into()),
        }
    }
}

/// What the arms can do.
pub enum Arm {
    /// bb8 + tiberius + a per-call timeout, primary only.
    Baseline(Baseline),
    /// The full mssql-resilience stack with default settings.
    Middleware(Middleware),
    /// tower-resilience over plain bb8 pools (see `peer.rs`).
    Peer(Peer),
}

impl Arm {
    /// A read of the item `id`.
    pub async fn read(&self, id: i32) -> CallResult {
        match self {
            Arm::Baseline(b) => b.read(id).await,
            Arm::Middleware(m) => m.read(id).await,
            Arm::Peer(p) => p.read(id).await,
        }
    }

    /// A write; only the middleware can use an idempotency key (`idempotent`).
    pub async fn write(&self, write_id: i64, idempotent: bool) -> CallResult {
        match self {
            Arm::Baseline(b) => b.write(write_id).await,
            Arm::Middleware(m) => m.write(write_id, idempotent).await,
            Arm::Peer(p) => p.write(write_id).await,
        }
    }

    /// Every database attempt the arm made, when it keeps a log of them (the baseline
    /// makes exactly one per request it does not shed).
    pub fn attempt_log(&self) -> Option<&AttemptLog> {
        match self {
            Arm::Baseline(_) => None,
            Arm::Middleware(m) => Some(&m.log),
            Arm::Peer(p) => Some(&p.log),
        }
    }
}

// ---------------------------------------------------------------- baseline

/// A minimal bb8 manager, as teams write it (bb8-tiberius style: never "broken").
pub struct PlainManager {
    port: u16,
}

impl PlainManager {
    /// Connections to 127.0.0.1:`port`.
    pub fn new(port: u16) -> Self {
        PlainManager { port }
    }
}

impl bb8::ManageConnection for PlainManager {
    type Connection = Client<Compat<TcpStream>>;
    type Error = tiberius::error::Error;

    async fn connect(&self) -> Result<Self::Connection, Self::Error> {
        let tcp = TcpStream::connect(("127.0.0.1", self.port)).await?;
        tcp.set_nodelay(true)?;
        Client::connect(tiberius_config(self.port), tcp.compat_write()).await
    }

    async fn is_valid(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
        conn.simple_query("SELECT 1")
            .await?
            .into_results()
            .await
            .map(|_| ())
    }

    fn has_broken(&self, _: &mut Self::Connection) -> bool {
        false
    }
}

/// bb8 (default settings) + tiberius + `tokio::time::timeout(per_call, …)`, primary only.
pub struct Baseline {
    pool: bb8::Pool<PlainManager>,
    timeout: Duration,
}

impl Baseline {
    pub fn new(primary_port: u16, timeout: Duration) -> Baseline {
        let pool = bb8::Pool::builder()
            .max_size(10)
            .build_unchecked(PlainManager::new(primary_port));
        Baseline { pool, timeout }
    }

    async fn read(&self, id: i32) -> CallResult {
        let call = async {
            let mut conn = self.pool.get().await.map_err(|e| e.to_string())?;
            let rows = conn
                .query("SELECT id, name FROM items WHERE id = @P1", &[&id])
                .await
                .map_err(|e| e.to_string())?
                .into_first_result()
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(rows.len() == 1)
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(true)) => CallResult::ok(),
            Ok(Ok(false)) => CallResult::failed("wrong_row_count", false),
            Ok(Err(_)) => CallResult::failed("error", false),
            Err(_) => CallResult::failed("timeout", false),
        }
    }

    async fn write(&self, write_id: i64) -> CallResult {
        let sent = std::sync::atomic::AtomicBool::new(false);
        let call = async {
            let mut conn = self.pool.get().await.map_err(|e| (false, e.to_string()))?;
            sent.store(true, Ordering::Relaxed);
            conn.execute(
                "INSERT INTO writes (write_id, note) VALUES (@P1, @P2)",
                &[&write_id, &"baseline"],
            )
            .await
            .map_err(|e| {
                (
                    !matches!(e, tiberius::error::Error::Server(_)),
                    e.to_string(),
                )
            })?;
            Ok::<_, (bool, String)>(())
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(())) => CallResult::ok(),
            // The team's code cannot tell; count what a careful reader would call unknown:
            // sent and then lost (I/O error or timeout after checkout).
            Ok(Err((lost_after_send, _))) => CallResult::failed("error", lost_after_send),
            Err(_) => CallResult::failed("timeout", sent.load(Ordering::Relaxed)),
        }
    }
}

// ---------------------------------------------------------------- middleware

/// One attempt seen by the stack's observer.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub at: Duration,
    pub region: String,
    pub read: bool,
    pub ok: bool,
}

/// Attempts seen by the stack's observer (or logged by the peer arm).
#[derive(Default)]
pub struct AttemptLog {
    pub start: Mutex<Option<Instant>>,
    pub attempts: Mutex<Vec<Attempt>>,
}

impl AttemptLog {
    fn push(&self, at: Duration, region: &str, read: bool, ok: bool) {
        if let Ok(mut attempts) = self.attempts.lock() {
            attempts.push(Attempt {
                at,
                region: region.to_owned(),
                read,
                ok,
            });
        }
    }

    /// An attempt starting now; it is logged (at its start time) when finished, or as
    /// failed when dropped unfinished (cancelled by a timeout). Nothing is logged before
    /// the run's start is set.
    pub fn begin(self: &Arc<Self>, region: &'static str, read: bool) -> AttemptGuard {
        let at = self.start.lock().ok().and_then(|s| *s).map(|s| s.elapsed());
        AttemptGuard {
            log: self.clone(),
            at,
            region,
            read,
            done: false,
        }
    }
}

/// An attempt in progress (see [`AttemptLog::begin`]).
pub struct AttemptGuard {
    log: Arc<AttemptLog>,
    at: Option<Duration>,
    region: &'static str,
    read: bool,
    done: bool,
}

impl AttemptGuard {
    /// Logs the attempt with its outcome.
    pub fn finish(mut self, ok: bool) {
        self.done = true;
        if let Some(at) = self.at {
            self.log.push(at, self.region, self.read, ok);
        }
    }
}

impl Drop for AttemptGuard {
    fn drop(&mut self) {
        if let (false, Some(at)) = (self.done, self.at) {
            self.log.push(at, self.region, self.read, false);
        }
    }
}

impl Observer for AttemptLog {
    fn on_event(&self, event: &Event<'_>) {
        if let Event::AttemptFinished {
            region,
            intent,
            outcome,
            ..
        } = event
        {
            let start = self.start.lock().ok().and_then(|s| *s);
            if let (Some(start), Ok(mut attempts)) = (start, self.attempts.lock()) {
                attempts.push(Attempt {
                    at: start.elapsed(),
                    region: (*region).to_owned(),
                    read: *intent == Intent::Read,
                    ok: outcome.is_none(),
                });
            }
        }
    }
}

/// The full stack with default settings (`--min-idle` sets `pool.min_idle`, `--max-pool`
/// `pool.max_size`), over both regions.
pub struct Middleware {
    pub stack: Stack,
    pub log: Arc<AttemptLog>,
    budget: Duration,
}

impl Middleware {
    pub fn new(
        primary: &Region,
        secondary: &Region,
        budget: Duration,
        min_idle: Option<u32>,
        max_pool: Option<u32>,
    ) -> Result<Middleware, Box<dyn std::error::Error>> {
        let mut toml = String::from("[pool]\n");
        if let Some(n) = min_idle {
            toml.push_str(&format!("min_idle = {n}\n"));
        }
        if let Some(n) = max_pool {
            toml.push_str(&format!("max_size = {n}\n"));
        }
        for region in [primary, secondary] {
            toml.push_str(&format!(
                "[[regions]]\nname = \"{}\"\nhost = \"127.0.0.1\"\nport = {}\ndatabase = \"{DATABASE}\"\n\
                 user = \"{USER}\"\npassword = \"{PASSWORD}\"\nencryption = \"not_supported\"\n",
                region.name,
                region.proxy.addr().port()
            ));
        }
        let log = Arc::new(AttemptLog::default());
        let stack = Stack::builder(Config::from_toml_str(&toml)?)
            .observer(log.clone())
            .build()?;
        Ok(Middleware { stack, log, budget })
    }

    async fn read(&self, id: i32) -> CallResult {
        let request = SqlRequest::query(
            RequestContext::read("get_item"),
            "SELECT id, name FROM items WHERE id = @P1",
            [Param::from(id)],
        );
        match ambient::with_budget(self.budget, self.stack.call(request)).await {
            Ok(r) if r.first().is_some_and(|s| s.rows.len() == 1) => CallResult::ok(),
            Ok(_) => CallResult::failed("wrong_row_count", false),
            Err(e) => CallResult::failed(error_label(&e), false),
        }
    }

    async fn write(&self, write_id: i64, idempotent: bool) -> CallResult {
        let sql = "INSERT INTO writes (write_id, note) VALUES (@P1, @P2)";
        let params = [Param::from(write_id), Param::from("middleware")];
        let context = RequestContext::write("create_write");
        let request = if idempotent {
            match idempotent_execute(context, DEFAULT_TABLE, format!("w-{write_id}"), sql, params) {
                Ok(request) => request,
                Err(_) => return CallResult::failed("invalid_key", false),
            }
        } else {
            SqlRequest::execute(context, sql, params)
        };
        match ambient::with_budget(self.budget, self.stack.call(request)).await {
            Ok(_) => CallResult::ok(),
            Err(e) => CallResult::failed(error_label(&e), e.is_outcome_unknown()),
        }
    }
}

/// A short, bounded label for a failed call: the error kind, with the server's error
/// number for server errors (`server_1205`), so the report says which one.
fn error_label(e: &mssql_resilience::Error) -> String {
    match e.server_number() {
        Some(n) => format!("server_{n}"),
        None => e.kind().as_str().to_owned(),
    }
}
