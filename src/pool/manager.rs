//! The bb8 connection manager for tiberius that the crate owns.
//!
//! Unlike `bb8-tiberius` (whose `has_broken` is always false and which has no timeouts):
//! connect + PRELOGIN + login is bounded by `connect_timeout` (bb8's own wait does not save
//! a task stuck on a black-holed connect); Azure gateway redirects are followed up to
//! `max_redirects` and counted; `is_valid` runs `SELECT 1` under its own short timeout;
//! and a connection whose attempt timed out, was cancelled or hit an I/O error reports
//! `has_broken`, so it never goes back into the pool (tiberius leaves such a connection
//! mid-stream and unusable).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::compat::TokioAsyncWriteCompatExt;

use super::connector::SharedConnector;
use super::proof::{self, PathProof};
use super::spares::Spares;
use super::stream::{Tap, TrackedStream};
use super::waiting::Waiting;
use crate::auth::AccessTokenProvider;
use crate::error::{Error, TimeoutScope};
use crate::failover::latency::{LatencyEstimator, CONNECT_ROUND_TRIPS};
use crate::observe::{emit, Event, SharedObserver};
use crate::sql::Client;

/// A pooled tiberius connection.
pub struct Connection {
    pub(crate) client: Client,
    pub(crate) tap: Arc<Tap>,
    /// Set while an attempt runs; cleared only when it finishes cleanly.
    pub(crate) broken: bool,
    /// When the connection last finished a request cleanly.
    pub(crate) last_used: tokio::time::Instant,
    /// The server's address (after any redirect), whose answers on other sessions may
    /// spare this one its idle check (see [`proof`]).
    pub(crate) peer: Option<std::net::SocketAddr>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("broken", &self.broken)
            .field("bytes_written", &self.tap.written())
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// The tiberius client, for code that runs its own queries on a checked-out connection.
    /// Marks the connection broken until [`Connection::mark_clean`] is called, since a
    /// cancelled tiberius future leaves the connection unusable.
    pub fn client(&mut self) -> &mut Client {
        self.broken = true;
        &mut self.client
    }

    /// Declares the last use finished cleanly: the connection may return to the pool.
    pub fn mark_clean(&mut self) {
        self.mark_clean_at(tokio::time::Instant::now());
    }

    /// [`mark_clean`](Self::mark_clean) with the time the use finished.
    pub(crate) fn mark_clean_at(&mut self, at: tokio::time::Instant) {
        self.broken = false;
        self.last_used = at;
    }
}

/// Counters a manager keeps (shared by its clones).
#[derive(Debug, Default)]
pub struct ManagerStats {
    connects: AtomicU64,
    connect_failures: AtomicU64,
    late_connects: AtomicU64,
    redirects: AtomicU64,
    checks: AtomicU64,
    /// Woken at every connection opened (checkouts that persist through failed connects
    /// wait on it).
    connected: tokio::sync::Notify,
}

impl ManagerStats {
    /// Woken at every connection opened.
    pub(crate) fn connected(&self) -> &tokio::sync::Notify {
        &self.connected
    }

    /// Connections opened.
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }
    /// Connection attempts that failed (including timeouts).
    pub fn connect_failures(&self) -> u64 {
        self.connect_failures.load(Ordering::Relaxed)
    }
    /// Connections opened by connects that had timed out (and were counted in
    /// [`connect_failures`](Self::connect_failures)) but ran on as spares (see
    /// [`TiberiusManager`]); each is also counted in [`connects`](Self::connects).
    pub fn late_connects(&self) -> u64 {
        self.late_connects.load(Ordering::Relaxed)
    }
    /// Gateway redirects followed.
    pub fn redirects(&self) -> u64 {
        self.redirects.load(Ordering::Relaxed)
    }
    /// `SELECT 1` round trips made to prove a pooled connection before reuse, whether it
    /// passed or not (idle ones whose server has not answered lately, and suspect ones
    /// before a write that cannot be re-sent): each cost a round trip before the request
    /// itself.
    pub fn checks(&self) -> u64 {
        self.checks.load(Ordering::Relaxed)
    }
}

/// A [`bb8::ManageConnection`] for tiberius: bounded (latency-aware) connects, redirects
/// followed and counted, idle revalidation, and broken connections never reused.
///
/// A connect that times out before the server answered anything fails on time (counted,
/// the latency estimate backed off), but when its TCP connection is up, the region
/// answered something else since that timeout before the connect began (or later) and a
/// request with nowhere else to go waits, the
/// connect runs on in the background as a *spare* (the region was alive a moment ago and
/// may just have turned slow: started over, the connect would lose the round trips it
/// waited for). A spare that opens its connection within the backed-off timeout a fresh
/// connect would get — or later, while the server keeps answering it within each such
/// window, at most the connect ceiling — adds it to the pool, which hands it to a waiting
/// checkout (or, when connects in progress fill the pool, to the first of them to ask,
/// which returns it instead of its own), and counts in
/// [`ManagerStats::late_connects`]; a spare that fails is dropped without a second count
/// or any health evidence (a connect started before the region's last answers says
/// nothing about it now). At most the pool's size of spares run at once.
#[derive(Clone)]
pub struct TiberiusManager {
    config: tiberius::Config,
    connector: SharedConnector,
    connect_timeout: Duration,
    validation_timeout: Duration,
    max_redirects: u32,
    revalidate_after: Duration,
    /// The region's latency estimate: connects take `CONNECT_ROUND_TRIPS` of it, at least
    /// `connect_timeout`, at most `max_connect_timeout`.
    latency: Option<Arc<LatencyEstimator>>,
    max_connect_timeout: Duration,
    /// Asked for a fresh access token for every connect (Entra ID regions).
    access_tokens: Option<Arc<dyn AccessTokenProvider>>,
    stats: Arc<ManagerStats>,
    events: EventSink,
    /// Requests with nowhere else to go waiting on this region's pool (shared with it).
    waiting: Arc<Waiting>,
    /// Connects run on past their timeout, and the connections they opened.
    spares: Arc<Spares>,
    /// The answers the region's servers sent on established sessions (shared by clones).
    proof: Arc<PathProof>,
}

/// A region label and an observer: where a manager and its pool report events. Cheap to
/// clone.
#[derive(Clone, Default)]
pub(crate) struct EventSink(Option<(Arc<str>, SharedObserver)>);

impl EventSink {
    /// Reports the event built for this sink's region, if it has an observer.
    pub(crate) fn emit<'a>(&'a self, event: impl FnOnce(&'a str) -> Event<'a>) {
        if let Some((region, observer)) = &self.0 {
            emit(Some(observer), event(region));
        }
    }
}

impl fmt::Debug for TiberiusManager {
    /// The tiberius config is left out: it holds credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TiberiusManager")
            .field("address", &self.config.get_addr())
            .field("connect_timeout", &self.connect_timeout)
            .field("validation_timeout", &self.validation_timeout)
            .field("max_redirects", &self.max_redirects)
            .finish_non_exhaustive()
    }
}

impl TiberiusManager {
    /// A manager dialling with `connector`. Connect + login is bounded by
    /// `connect_timeout`; `is_valid` by `validation_timeout`; at most `max_redirects`
    /// redirects are followed per connect.
    pub fn new(
        config: tiberius::Config,
        connector: SharedConnector,
        connect_timeout: Duration,
        validation_timeout: Duration,
        max_redirects: u32,
    ) -> Self {
        TiberiusManager {
            config,
            connector,
            connect_timeout,
            validation_timeout,
            max_redirects,
            revalidate_after: Duration::from_secs(2),
            latency: None,
            max_connect_timeout: connect_timeout,
            access_tokens: None,
            stats: Arc::default(),
            events: EventSink::default(),
            waiting: Arc::default(),
            spares: Arc::default(),
            proof: Arc::default(),
        }
    }

    /// Logs in with an access token from `provider`, asked afresh for every connect (so
    /// tokens are renewed as connections are), instead of the configuration's
    /// authentication. Its time counts against the connect timeout; its failure is a
    /// not-sent [`ErrorKind::AccessToken`](crate::ErrorKind::AccessToken) error. See
    /// [`auth`](crate::auth).
    pub fn with_access_tokens(mut self, provider: Arc<dyn AccessTokenProvider>) -> Self {
        self.access_tokens = Some(provider);
        self
    }

    /// Reports followed redirects to `observer` as events of `region`.
    pub fn with_observer(mut self, region: impl Into<Arc<str>>, observer: SharedObserver) -> Self {
        self.events = EventSink(Some((region.into(), observer)));
        self
    }

    /// A connection idle for longer than this is checked with `SELECT 1` on checkout —
    /// unless its server (the same address) answered within the last two of the region's
    /// round trips and either the connection has been idle for less than two round trips
    /// or, up to 30 s of idleness, the server answered a request sent after the
    /// connection's last use (a session the server closed is still found, *not sent*, by
    /// the zero-wait check before a request's first byte). One used more recently is
    /// handed out directly (a check per checkout would double the round trips). Defaults
    /// to 2 s; zero checks every connection whose server has not answered lately.
    pub fn with_revalidate_after(mut self, idle: Duration) -> Self {
        self.revalidate_after = idle;
        self
    }

    /// Adapts the connect timeout to the region's latency: a connect (TCP, PRELOGIN,
    /// login) may take [`CONNECT_ROUND_TRIPS`] round trips of `latency`'s estimate, at
    /// least the configured connect timeout and at most `max`. Successful connects feed
    /// the estimate; timed-out ones back it off. Without this, a region whose round trip
    /// is a few hundred milliseconds can never open a connection within a fixed 1 s.
    pub fn with_latency(mut self, latency: Arc<LatencyEstimator>, max: Duration) -> Self {
        self.latency = Some(latency);
        self.max_connect_timeout = max.max(self.connect_timeout);
        self
    }

    /// The answers the region's servers sent on established sessions.
    pub(crate) fn proof(&self) -> &PathProof {
        &self.proof
    }

    /// The manager's counters.
    pub fn stats(&self) -> Arc<ManagerStats> {
        self.stats.clone()
    }

    pub(crate) fn event_sink(&self) -> EventSink {
        self.events.clone()
    }

    /// The requests with nowhere else to go waiting on this manager's pool.
    pub(crate) fn waiting(&self) -> &Arc<Waiting> {
        &self.waiting
    }

    /// A new connection of the manager's own, for a health probe: never a spare's (its
    /// elapsed time must be a login's, since it feeds the latency estimate). Its own
    /// connect may still run on as a spare for the pool, like any other.
    pub(crate) async fn connect_for_probe(&self) -> Result<Box<Connection>, Error> {
        self.open(false).await
    }

    /// The connects run on past their timeout (see [`spares`](super::spares)).
    pub(super) fn spares(&self) -> &Spares {
        &self.spares
    }

    /// The configured server address (`host:port`), for telemetry.
    pub fn address(&self) -> String {
        self.config.get_addr()
    }

    /// One connect (following redirects); `current` holds the tap of the connection
    /// being opened, so a timeout can tell whether the server has answered it yet.
    async fn connect_once(
        &self,
        current: &std::sync::Mutex<Option<Arc<Tap>>>,
    ) -> Result<Box<Connection>, Error> {
        let mut config = self.config.clone();
        if let Some(provider) = &self.access_tokens {
            let token = crate::auth::fetch(provider.as_ref()).await?;
            config.authentication(tiberius::AuthMethod::aad_token(token.expose()));
        }
        let mut redirects = 0;
        loop {
            let addr = config.get_addr();
            let (host, port) = split_addr(&addr);
            let tcp = self
                .connector
                .connect(host, port)
                .await
                .map_err(|e| Error::from_tiberius(e.into(), false))?;
            let peer = tcp.peer_addr().ok();
            let (stream, tap) = TrackedStream::new(tcp);
            *current.lock().unwrap_or_else(|e| e.into_inner()) = Some(tap.clone());
            match tiberius::Client::connect(config.clone(), stream.compat_write()).await {
                Ok(client) => {
                    return Ok(Box::new(Connection {
                        client,
                        tap,
                        broken: false,
                        last_used: tokio::time::Instant::now(),
                        peer,
                    }))
                }
                Err(tiberius::error::Error::Routing { host, port })
                    if redirects < self.max_redirects =>
                {
                    redirects += 1;
                    self.stats.redirects.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(target: "mssql_resilience", to_host = %host, to_port = port, "following gateway redirect");
                    self.events
                        .emit(|region| Event::RedirectFollowed { region });
                    config.host(host);
                    config.port(port);
                }
                Err(e) => return Err(Error::from_tiberius(e, false)),
            }
        }
    }
}

/// What the server has sent on the connection a connect is opening: (which connection,
/// bytes), so that a redirect's new connection counts as new progress.
fn answered(current: &std::sync::Mutex<Option<Arc<Tap>>>) -> (usize, u64) {
    current
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map_or((0, 0), |tap| (Arc::as_ptr(tap) as usize, tap.read()))
}

/// Lets a connect past its timeout run on window by window — each ending at `next(now)`,
/// while that is later than now — as long as the server sent something new on it during
/// the window before (a connect it has not answered at all gets no window): its result,
/// or `None` once it stalls or `next` says stop (the future still unfinished).
async fn run_while_answered(
    mut connect: Pin<&mut impl Future<Output = Result<Box<Connection>, Error>>>,
    current: &std::sync::Mutex<Option<Arc<Tap>>>,
    next: impl Fn(tokio::time::Instant) -> Option<tokio::time::Instant>,
) -> Option<Result<Box<Connection>, Error>> {
    // What the server had sent when the last window began.
    let mut seen = (0, 0);
    loop {
        let now = tokio::time::Instant::now();
        let answered = answered(current);
        let until = next(now).filter(|until| answered != seen && answered.1 > 0 && *until > now)?;
        seen = answered;
        if let Ok(result) = tokio::time::timeout_at(until, connect.as_mut()).await {
            return Some(result);
        }
    }
}

fn split_addr(addr: &str) -> (&str, u16) {
    match addr.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().unwrap_or(1433)),
        None => (addr, 1433),
    }
}

impl bb8::ManageConnection for TiberiusManager {
    /// Boxed: the tiberius client is ~1.5 KB, and bb8 and every future between it and the
    /// request move the connection by value — a pointer moves for free.
    type Connection = Box<Connection>;
    type Error = Error;

    async fn connect(&self) -> Result<Box<Connection>, Error> {
        self.open(true).await
    }

    async fn is_valid(&self, conn: &mut Box<Connection>) -> Result<(), Error> {
        let now = tokio::time::Instant::now();
        let idle = now.saturating_duration_since(conn.last_used);
        // The common checkout (used recently) takes neither lock below; `needs_check`
        // says the same for it.
        if idle < self.revalidate_after {
            return Ok(());
        }
        let srtt = self.latency.as_ref().and_then(|l| l.snapshot().srtt);
        let evidence = conn.peer.map_or_else(proof::Evidence::default, |addr| {
            self.proof.evidence(addr, conn.last_used, now)
        });
        if !proof::needs_check(idle, self.revalidate_after, srtt, evidence) {
            return Ok(());
        }
        self.check(conn).await
    }

    fn has_broken(&self, conn: &mut Box<Connection>) -> bool {
        conn.broken
    }
}

impl TiberiusManager {
    /// Opens a new connection under the region's latency-aware connect timeout (see
    /// [`with_latency`](Self::with_latency)), finishing one the server is answering for
    /// requests with nowhere else to go, and running one it has not answered yet on as a
    /// spare when the region answered just before it began (see [`spares`](super::spares)).
    /// With `take_spares`, a spare's connection the pool had no room for is returned
    /// instead, as soon as one is offered.
    async fn open(&self, take_spares: bool) -> Result<Box<Connection>, Error> {
        let start = tokio::time::Instant::now();
        let limit = self.connect_limit();
        // Owned (the manager's clone, boxed), so that it can outlive this call as a spare.
        let current = Arc::new(std::sync::Mutex::new(None));
        let connect = {
            let manager = self.clone();
            let current = current.clone();
            Box::pin(async move { manager.connect_once(&current).await })
        };
        let own = async {
            let mut connect = connect;
            match tokio::time::timeout(limit, &mut connect).await {
                Ok(result) => result,
                Err(_) => {
                    match self
                        .finish_for_waiters(connect.as_mut(), &current, start, limit)
                        .await
                    {
                        Some(result) => result,
                        // Given up on, still running: it may run on as a spare.
                        None => {
                            self.keep_as_spare(connect, current.clone(), start, limit);
                            Err(Error::timeout(TimeoutScope::Connect, start.elapsed()))
                        }
                    }
                }
            }
        };
        // A spare's connection the pool had no room for (its places are taken by connects
        // like this one) is taken instead: it was counted when it opened.
        let result = tokio::select! {
            biased;
            result = own => result,
            conn = self.spares.offered(), if take_spares => {
                self.stats.connected.notify_waiters();
                return Ok(conn);
            }
        };
        let duration = start.elapsed();
        if let (Ok(_), Some(latency)) = (&result, &self.latency) {
            latency.sample(duration, CONNECT_ROUND_TRIPS);
        }
        self.events.emit(|region| Event::ConnectFinished {
            region,
            duration,
            ok: result.is_ok(),
        });
        match &result {
            Ok(_) => {
                self.stats.connects.fetch_add(1, Ordering::Relaxed);
                self.stats.connected.notify_waiters();
            }
            Err(_) => {
                self.stats.connect_failures.fetch_add(1, Ordering::Relaxed);
            }
        };
        result
    }

    /// A connect that timed out on an established connection the server had not answered
    /// yet: if the region answered something else since `limit` before the connect began,
    /// a request with nowhere else to go waits and the cap allows, it runs on in the
    /// background as a spare (see [`spares`](super::spares)); otherwise it is dropped
    /// (closed).
    fn keep_as_spare(
        &self,
        connect: Pin<Box<impl Future<Output = Result<Box<Connection>, Error>> + Send + 'static>>,
        current: Arc<std::sync::Mutex<Option<Arc<Tap>>>>,
        start: tokio::time::Instant,
        limit: Duration,
    ) {
        let Some(latency) = &self.latency else { return };
        // Established (a tap: TCP is up, so a sample of its end measures the login, not
        // a retransmitted SYN) and not answered yet.
        let (established, read) = answered(&current);
        if established == 0
            || read != 0
            || self.waiting.latest().is_none()
            || !latency.answered_since(start.checked_sub(limit).unwrap_or(start))
        {
            return;
        }
        let Some(place) = self.spares.reserve() else {
            return;
        };
        // Each window: the backed-off timeout a fresh connect would get now (this
        // connect's failure has just backed the estimate off).
        let window = self.connect_limit().max(limit);
        let ceiling = start + self.max_connect_timeout;
        let manager = self.clone();
        tokio::spawn(async move {
            let mut connect = connect;
            let first = tokio::time::timeout_at((start + window).min(ceiling), connect.as_mut());
            let result = match first.await {
                Ok(result) => result,
                Err(_) => {
                    let next = |now: tokio::time::Instant| Some((now + window).min(ceiling));
                    match run_while_answered(connect.as_mut(), &current, next).await {
                        Some(result) => result,
                        None => return,
                    }
                }
            };
            // A late failure is dropped quietly: counted when the timeout fired.
            let Ok(conn) = result else { return };
            let duration = start.elapsed();
            if let Some(latency) = &manager.latency {
                latency.sample(duration, CONNECT_ROUND_TRIPS);
            }
            manager.events.emit(|region| Event::ConnectFinished {
                region,
                duration,
                ok: true,
            });
            tracing::debug!(target: "mssql_resilience", ?duration, "a connect that had timed out opened its connection");
            manager.stats.connects.fetch_add(1, Ordering::Relaxed);
            manager.stats.late_connects.fetch_add(1, Ordering::Relaxed);
            // Waiters are woken (to ask for a connect, which may take it) only once the
            // connection is in the pool or on the shelf.
            place.deliver(conn, &manager.stats.connected).await;
        });
    }
}

impl TiberiusManager {
    /// A connect past its latency-aware timeout (`limit`). If the server answered it
    /// within that time (so the path works, slowly: not a black hole) and a request with
    /// nowhere else to go waits on the pool, starting over would only throw away the round
    /// trips made: the connect gets another `limit`, and another as long as the server
    /// keeps answering within each, until the latest such request's deadline (at most the
    /// ceiling): its result. A connect that stalls (no byte in a whole `limit`), or that
    /// no such request waits for, is given up on (`None`, the future still unfinished) and
    /// the latency estimate backs off.
    async fn finish_for_waiters(
        &self,
        connect: Pin<&mut impl Future<Output = Result<Box<Connection>, Error>>>,
        current: &std::sync::Mutex<Option<Arc<Tap>>>,
        start: tokio::time::Instant,
        limit: Duration,
    ) -> Option<Result<Box<Connection>, Error>> {
        let ceiling = start + self.max_connect_timeout;
        let next = |now: tokio::time::Instant| {
            self.waiting
                .latest()
                .map(|deadline| deadline.min(ceiling).min(now + limit))
        };
        let finished = run_while_answered(connect, current, next).await;
        if finished.is_none() {
            if let Some(latency) = &self.latency {
                latency.timed_out();
            }
        }
        finished
    }

    /// The connect timeout now: [`CONNECT_ROUND_TRIPS`] of the region's latency estimate
    /// (backed off), at least the configured connect timeout, at most the ceiling.
    fn connect_limit(&self) -> Duration {
        self.latency.as_ref().map_or(self.connect_timeout, |l| {
            l.timeout(
                CONNECT_ROUND_TRIPS,
                self.connect_timeout,
                self.max_connect_timeout,
            )
        })
    }

    /// Proves `conn` works with one round trip (`SELECT 1`), bounded by the region's
    /// observed round trip (at least `validation_timeout`). On failure the connection
    /// stays marked broken, so the pool discards it; the error is not-sent.
    pub(crate) async fn check(&self, conn: &mut Connection) -> Result<(), Error> {
        self.stats.checks.fetch_add(1, Ordering::Relaxed);
        conn.broken = true;
        let check = async {
            conn.client
                .simple_query("SELECT 1")
                .await?
                .into_results()
                .await?;
            Ok::<_, tiberius::error::Error>(())
        };
        // One round trip: on a region that answers slowly (evidence, not timeouts) it may
        // take that round trip, or a working connection would be closed for being slow and
        // the request sent to wait for a new login instead (several round trips).
        let limit = self.latency.as_ref().map_or(self.validation_timeout, |l| {
            l.timeout_on_evidence(1, self.validation_timeout, self.max_connect_timeout)
        });
        // Boxed: this future sits inside every checkout's future, and the driver's query
        // future inline would make each checkout (and each call) kilobytes larger — copied
        // on every call, though the check itself runs only after `revalidate_after`.
        match Box::pin(tokio::time::timeout(limit, check)).await {
            Ok(Ok(())) => {
                conn.mark_clean();
                Ok(())
            }
            Ok(Err(e)) => Err(Error::from_tiberius(e, false).raised_by_validation()),
            Err(_) => Err(Error::timeout(TimeoutScope::Validation, limit).raised_by_validation()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{split_addr, TiberiusManager};
    use crate::failover::latency::LatencyEstimator;
    use crate::pool::TcpConnector;
    use bb8::ManageConnection;
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Duration;

    /// A real connection to a testkit server, last used 25 s ago, on a region whose
    /// estimate says 10 s round trips: whether `is_valid` spends a round trip proving it
    /// when the only answer on record came from `from` (the connection's own server when
    /// `None`) for a request sent `sent` seconds ago, answered `answered` seconds ago.
    async fn checked_after_idle(answer: Option<(Option<SocketAddr>, u64, u64)>) -> bool {
        let server = mssql_testkit::tds::TdsServer::start(
            mssql_testkit::tds::TdsServerConfig::new("u", "pw"),
        )
        .await
        .unwrap();
        let mut config = tiberius::Config::new();
        config.host("127.0.0.1");
        config.port(server.addr().port());
        config.authentication(tiberius::AuthMethod::sql_server("u", "pw"));
        config.encryption(tiberius::EncryptionLevel::NotSupported);
        let s = Duration::from_secs;
        let manager =
            TiberiusManager::new(config, Arc::new(TcpConnector::default()), s(5), s(5), 0);
        let mut conn = manager.connect().await.unwrap();
        // The estimate only from here on: the connect's own sample would blur it.
        let latency = Arc::new(LatencyEstimator::new());
        let manager = manager.with_latency(latency.clone(), s(30));
        let peer = conn.peer.expect("a TCP connection has a peer address");
        let now = tokio::time::Instant::now();
        let ago = |secs| now.checked_sub(s(secs)).expect("the clock is past 25 s");
        conn.last_used = ago(25);
        // 10 s round trips (answers stay fresh for 20 s; idle below that is not checked
        // while they do).
        latency.sample(s(10), 1);
        if let Some((from, sent, answered)) = answer {
            manager
                .proof()
                .answered(from.unwrap_or(peer), ago(sent), ago(answered));
        }
        let checks = manager.stats().checks();
        manager.is_valid(&mut conn).await.unwrap();
        manager.stats().checks() - checks == 1
    }

    #[tokio::test]
    async fn an_idle_connection_is_checked_unless_its_server_lately_answered_a_later_request() {
        assert!(checked_after_idle(None).await, "no answer on record");
        assert!(
            !checked_after_idle(Some((None, 20, 5))).await,
            "its server answered a request sent after its last use, lately"
        );
        assert!(
            checked_after_idle(Some((None, 26, 5))).await,
            "the answered request was sent before its last use"
        );
        assert!(
            checked_after_idle(Some((None, 24, 21))).await,
            "no answer for two round trips: a black hole may have begun"
        );
        let elsewhere = SocketAddr::from(([127, 0, 0, 2], 1433));
        assert!(
            checked_after_idle(Some((Some(elsewhere), 20, 5))).await,
            "another server's answers prove nothing for this session"
        );
    }

    #[test]
    fn addresses_split_at_the_last_colon() {
        assert_eq!(split_addr("db.example:1444"), ("db.example", 1444));
        assert_eq!(split_addr("db.example"), ("db.example", 1433));
    }
}
