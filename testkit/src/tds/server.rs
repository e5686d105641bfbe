//! The server: configuration, listener, accept loop, lifecycle.

use super::counters::{bump, Counters};
use super::faults::{AcceptMode, DisconnectMode, Faults, SessionCtl, Shared};
use super::session::{self, ServerCtx};
use super::tls::{TlsIdentity, TlsMode};
use super::{control, sql};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, warn};

/// Configuration of a [`TdsServer`].
#[derive(Debug, Clone)]
pub struct TdsServerConfig {
    /// Address to listen on; port 0 picks a free port. Default `127.0.0.1:0`.
    pub listen: SocketAddr,
    /// The one SQL login accepted. Default `sa`.
    pub user: String,
    /// Its password. Default `Testkit#Passw0rd`.
    pub password: String,
    /// The database name (logins may name it or leave it empty). Default `testdb`.
    pub database: String,
    /// SQLite file holding the data. `None` (default): a fresh temporary file,
    /// deleted when the server shuts down or is dropped.
    pub db_file: Option<PathBuf>,
    /// Address for the HTTP/JSON control endpoint, if wanted (e.g. `127.0.0.1:0`).
    pub control: Option<SocketAddr>,
    /// Server name reported in error messages. Default `mssql-testkit`.
    pub server_name: String,
    /// How long a statement waits for a lock held by another session before failing
    /// (1222, or 1205 inside a transaction). Default 5 s.
    pub busy_timeout: Duration,
    /// What a client disconnect does to the work in flight. Default
    /// [`DisconnectMode::RollBack`]; [`Faults::set_disconnect_mode`] changes it at run
    /// time.
    pub disconnect: DisconnectMode,
    /// Microsoft Entra ID access tokens accepted by a FEDAUTH login (any other token fails
    /// with 18456, as an expired or foreign token does on Azure SQL). Default none: token
    /// logins fail.
    pub access_tokens: Vec<String>,
    /// How PRELOGIN encryption is negotiated. Default [`TlsMode::Off`] (plaintext,
    /// `ENCRYPT_NOT_SUP`); with the other modes the server generates a CA and a
    /// certificate for `localhost` at start ([`TdsServer::tls`] hands out the CA).
    pub tls: TlsMode,
}

impl Default for TdsServerConfig {
    fn default() -> Self {
        TdsServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            user: "sa".into(),
            password: "Testkit#Passw0rd".into(),
            database: "testdb".into(),
            db_file: None,
            control: None,
            server_name: "mssql-testkit".into(),
            busy_timeout: Duration::from_secs(5),
            disconnect: DisconnectMode::RollBack,
            access_tokens: Vec::new(),
            tls: TlsMode::Off,
        }
    }
}

impl TdsServerConfig {
    /// Defaults with the given login.
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Self {
        TdsServerConfig {
            user: user.into(),
            password: password.into(),
            ..Default::default()
        }
    }

    /// Accepts `token` from a Microsoft Entra ID (FEDAUTH) login too.
    pub fn access_token(mut self, token: impl Into<String>) -> Self {
        self.access_tokens.push(token.into());
        self
    }

    /// Sets the database name.
    pub fn database(mut self, name: impl Into<String>) -> Self {
        self.database = name.into();
        self
    }

    /// Sets the listen address.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Uses (and keeps) this SQLite file.
    pub fn db_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.db_file = Some(path.into());
        self
    }

    /// Sets what a client disconnect does to the work in flight.
    pub fn disconnect(mut self, mode: DisconnectMode) -> Self {
        self.disconnect = mode;
        self
    }

    /// Negotiates encryption as `mode` says (see [`TlsMode`]).
    pub fn tls(mut self, mode: TlsMode) -> Self {
        self.tls = mode;
        self
    }

    /// Serves the control endpoint on this address.
    pub fn control(mut self, addr: SocketAddr) -> Self {
        self.control = Some(addr);
        self
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A running TDS test server. Dropping it stops accepting, kills its sessions and
/// deletes a temporary database; [`TdsServer::shutdown`] does the same and waits.
#[derive(Debug)]
pub struct TdsServer {
    ctx: Arc<ServerCtx>,
    addr: SocketAddr,
    control_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    accept_task: Option<JoinHandle<()>>,
    control_task: Option<JoinHandle<()>>,
    temp_db: Option<PathBuf>,
}

impl TdsServer {
    /// Binds the listener (and the control endpoint if configured), prepares the
    /// database and starts serving. Must be called inside a Tokio runtime.
    pub async fn start(config: TdsServerConfig) -> io::Result<TdsServer> {
        let tls = match config.tls {
            TlsMode::Off => None,
            mode => Some(Arc::new(TlsIdentity::generate(mode)?)),
        };
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let (db_path, temp_db) = match &config.db_file {
            Some(p) => (p.clone(), None),
            None => {
                let nonce = fastrand::u32(..);
                let p = std::env::temp_dir().join(format!(
                    "mssql-testkit-{}-{}-{}.db",
                    std::process::id(),
                    TEMP_COUNTER.fetch_add(1, Ordering::Relaxed),
                    nonce
                ));
                (p.clone(), Some(p))
            }
        };
        let init_path = db_path.clone();
        tokio::task::spawn_blocking(move || sql::init(&init_path))
            .await
            .map_err(io::Error::other)?
            .map_err(|e| {
                io::Error::other(format!("cannot open database {}: {e}", db_path.display()))
            })?;
        let shared = Arc::new(Shared::new(config.disconnect));
        let ctx = Arc::new(ServerCtx {
            shared: shared.clone(),
            user: config.user.clone(),
            password: config.password.clone(),
            access_tokens: config.access_tokens.clone(),
            database: config.database.clone(),
            db_path,
            busy_timeout: config.busy_timeout,
            server_name: config.server_name.clone(),
            version: format!(
                "Microsoft SQL Server 2022 (RTM) - 16.0.4135.4 (X64) \n\tmssql-testkit {} (SQLite {})\n",
                env!("CARGO_PKG_VERSION"),
                rusqlite::version()
            ),
            next_spid: AtomicU64::new(0),
            tls,
        });
        let (stop, stop_rx) = watch::channel(false);
        let (control_addr, control_task) = match config.control {
            Some(caddr) => {
                let l = TcpListener::bind(caddr).await?;
                let a = l.local_addr()?;
                let faults = Faults { shared };
                let t = tokio::spawn(control::serve(l, faults, stop_rx.clone()));
                (Some(a), Some(t))
            }
            None => (None, None),
        };
        let accept_task = tokio::spawn(accept_loop(ctx.clone(), listener, addr, stop_rx));
        Ok(TdsServer {
            ctx,
            addr,
            control_addr,
            stop,
            accept_task: Some(accept_task),
            control_task,
            temp_db,
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The control endpoint's address, if one was configured.
    pub fn control_addr(&self) -> Option<SocketAddr> {
        self.control_addr
    }

    /// The accepted login name.
    pub fn user(&self) -> &str {
        &self.ctx.user
    }

    /// The accepted password.
    pub fn password(&self) -> &str {
        &self.ctx.password
    }

    /// The database name.
    pub fn database(&self) -> &str {
        &self.ctx.database
    }

    /// The SQLite file backing the database.
    pub fn db_path(&self) -> &Path {
        &self.ctx.db_path
    }

    /// The generated certificates and the negotiation mode, when the server was started
    /// with TLS ([`TdsServerConfig::tls`]): trust [`TlsIdentity::ca_pem`] to validate the
    /// server's certificate (valid for `localhost`, `127.0.0.1` and `::1`).
    pub fn tls(&self) -> Option<&TlsIdentity> {
        self.ctx.tls.as_deref()
    }

    /// A handle for injecting faults (cloneable, usable after the server moved).
    pub fn faults(&self) -> Faults {
        Faults {
            shared: self.ctx.shared.clone(),
        }
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        self.ctx.shared.counters.snapshot()
    }

    /// Stops accepting, closes every session, stops the control endpoint, waits (up to
    /// 5 s) for sessions to finish and deletes a temporary database.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.accept_task.take() {
            let _ = t.await;
        }
        self.faults().kill_sessions();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.ctx.shared.sessions().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if let Some(t) = self.control_task.take() {
            let _ = t.await;
        }
        self.remove_temp();
    }

    fn remove_temp(&mut self) {
        if let Some(p) = self.temp_db.take() {
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let mut s = p.clone().into_os_string();
                s.push(suffix);
                let _ = std::fs::remove_file(PathBuf::from(s));
            }
        }
    }
}

impl Drop for TdsServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.accept_task.take() {
            t.abort();
        }
        if let Some(t) = self.control_task.take() {
            t.abort();
        }
        for ctl in self.ctx.shared.sessions().values() {
            ctl.kill();
        }
        self.remove_temp();
    }
}

/// Keeps `connections_open` and the session registry right however the task ends.
struct SessionGuard {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.shared.sessions().remove(&self.id);
        self.shared
            .counters
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
    }
}

fn spawn_session(ctx: &Arc<ServerCtx>, stream: TcpStream) {
    let shared = ctx.shared.clone();
    let id = shared.next_session.fetch_add(1, Ordering::Relaxed);
    let ctl = Arc::new(SessionCtl::new());
    shared.sessions().insert(id, ctl.clone());
    bump(&shared.counters.connections_open);
    let guard = SessionGuard { shared, id };
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let _guard = guard;
        session::serve(ctx, stream, ctl).await;
    });
}

async fn accept_loop(
    ctx: Arc<ServerCtx>,
    listener: TcpListener,
    addr: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    let mut listener = Some(listener);
    let mut mode_rx = ctx.shared.accept.subscribe();
    loop {
        if *stop.borrow() {
            return;
        }
        let mode = *mode_rx.borrow_and_update();
        if mode == AcceptMode::Refuse {
            listener = None;
            tokio::select! {
                _ = stop.changed() => return,
                _ = mode_rx.changed() => continue,
            }
        }
        let l = match &listener {
            Some(l) => l,
            None => match TcpListener::bind(addr).await {
                Ok(l) => listener.insert(l),
                Err(e) => {
                    warn!(%addr, error = %e, "cannot bind the listener again; retrying");
                    tokio::select! {
                        _ = stop.changed() => return,
                        _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
                    }
                }
            },
        };
        tokio::select! {
            r = l.accept() => match r {
                Ok((stream, peer)) => {
                    bump(&ctx.shared.counters.connections_total);
                    if *ctx.shared.accept.borrow() == AcceptMode::CloseImmediately {
                        debug!(%peer, "closing a new connection (accepting is off)");
                        drop(stream);
                    } else {
                        spawn_session(&ctx, stream);
                    }
                }
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = mode_rx.changed() => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + 'static>() {}

    #[test]
    fn public_handles_are_send_and_sync() {
        assert_send_sync::<TdsServer>();
        assert_send_sync::<Faults>();
        assert_send_sync::<TdsServerConfig>();
    }

    #[tokio::test]
    async fn temporary_database_is_removed_on_shutdown() {
        let server = TdsServer::start(TdsServerConfig::default()).await.unwrap();
        let path = server.db_path().to_path_buf();
        assert!(path.exists());
        server.shutdown().await;
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn a_given_db_file_is_kept() {
        let dir = std::env::temp_dir().join(format!("mssql-testkit-keep-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("kept.db");
        let server = TdsServer::start(TdsServerConfig::default().db_file(&file))
            .await
            .unwrap();
        server.shutdown().await;
        assert!(file.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
