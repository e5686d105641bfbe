//! Pooled tiberius connections: the connection manager, the connector, and the pool with
//! a checkout that never waits longer than the call's remaining budget.
//!
//! bb8 is configured so that it adds no hidden behaviour of its own: it does **not** retry
//! failed connects in the background (`retry_connection(false)`: retries belong to the
//! retry layer, under its budget, or a fleet would hammer a database that refuses logins),
//! and a connect failure is reported to the callers waiting for a connection at once
//! (bb8 alone would let them wait out the whole checkout timeout and then report only
//! "timed out", losing e.g. the 40613 the server sent) — unless the request has nowhere
//! else to go and the failure says the region may serve again soon
//! ([`Pool::checkout_persisting`]).
//!
//! The pool also keeps two signals for the router: checkouts **starved** (kept waiting
//! because new connections fail while every open one is busy, [`Pool::starved_waits`]),
//! and connections made **suspect** when the region leaves a request unanswered (until it
//! answers again), which a write that cannot be re-sent proves with one round trip
//! before it is sent.

mod checkouts;
mod connector;
mod manager;
mod proof;
pub(crate) mod service;
mod spares;
mod stream;
pub(crate) mod suspicion;
pub(crate) mod waiting;
mod wire_tx;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::Instant;

pub use self::checkouts::CheckoutStats;
use self::checkouts::{CheckoutCounters, PendingCheckout};
pub use self::connector::{
    tune, ConnectFuture, Connector, FixedAddress, SharedConnector, TcpConnector,
};
use self::manager::EventSink;
pub use self::manager::{Connection, ManagerStats, TiberiusManager};
pub use self::service::{materialize, DrainOnDrop, SqlService, DRAIN_CEILING, DRAIN_FLOOR};
pub use self::stream::TrackedStream;
use crate::error::{Error, ErrorKind, TimeoutScope};

/// Pool limits. Defaults: up to 100 connections (SqlClient's default maximum), no minimum
/// idle, 10 min idle timeout, 30 min lifetime.
///
/// The pool opens connections on demand, so it grows with the demand it sees up to
/// `max_size` and shrinks back as idle connections time out. A generous bound matters
/// under latency: by Little's law the connections in use are the request rate times the
/// time each holds one, so at 200 requests/s a pool of 10 is exhausted as soon as a query
/// takes 50 ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// Most connections open at once.
    pub max_size: u32,
    /// Connections kept open while idle.
    pub min_idle: Option<u32>,
    /// Idle connections are closed after this long.
    pub idle_timeout: Option<Duration>,
    /// Connections are closed after this long whatever their use.
    pub max_lifetime: Option<Duration>,
    /// The longest a checkout may wait (also bounded by each call's remaining budget).
    pub checkout_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_size: 100,
            min_idle: None,
            idle_timeout: Some(Duration::from_secs(600)),
            max_lifetime: Some(Duration::from_secs(1800)),
            checkout_timeout: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Clone)]
struct FailureSink(broadcast::Sender<Error>);

impl bb8::ErrorSink<Error> for FailureSink {
    fn sink(&self, error: Error) {
        // bb8 also reports idle connections that failed their check; it then hands the
        // waiter another connection, so those must not fail anybody's checkout.
        if error.is_validation() {
            tracing::debug!(target: "mssql_resilience", error = %error.for_logs(), "idle connection failed its check");
            return;
        }
        tracing::debug!(target: "mssql_resilience", error = %error.for_logs(), "connection attempt failed");
        let _ = self.0.send(error);
    }

    fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<Error>> {
        Box::new(self.clone())
    }
}

/// A bb8 pool of tiberius connections for one server. Cloning it is one reference
/// count: every call's service holds a clone.
#[derive(Clone)]
pub struct Pool {
    shared: Arc<Shared>,
}

/// What a pool's clones share.
struct Shared {
    inner: bb8::Pool<TiberiusManager>,
    /// Where checkout events go (the manager's region label and observer).
    events: EventSink,
    failures: broadcast::Sender<Error>,
    stats: Arc<ManagerStats>,
    checkouts: Arc<CheckoutCounters>,
    settings: PoolSettings,
    /// The next slot for a persisting checkout's connect while connects fail.
    next_reconnect: std::sync::Mutex<Instant>,
    /// The manager, for checks of suspect connections.
    manager: TiberiusManager,
    /// Which idle connections are suspect (see [`suspicion`]).
    suspicion: suspicion::Suspicion,
}

/// A connect failure that says the region may serve again soon: it could not be reached
/// (an I/O error or a timeout), or it refused the login with a transient error (40613
/// "database not currently available" during a reconfiguration, 40501 "service busy",
/// …: the numbers SqlClient and the Azure SQL documentation call transient) — as opposed
/// to one that says it refuses this client (TLS, a wrong password).
fn may_come_back(error: &Error) -> bool {
    matches!(error.kind(), ErrorKind::Io(_) | ErrorKind::Timeout { .. })
        || error
            .server_number()
            .is_some_and(|n| crate::classify::transient::lookup(n).is_some())
}

/// A checked-out connection.
type PooledConnection = bb8::PooledConnection<'static, TiberiusManager>;
/// What bb8's checkout ends with.
type GetResult = Result<PooledConnection, bb8::RunError<Error>>;

/// The end of bb8's checkout: a connection, or bb8's own error. bb8's timeout counts as
/// a timeout (the pending guard drops unsettled); anything else settles.
fn settled(
    got: GetResult,
    pending: PendingCheckout,
    start: Instant,
) -> Result<PooledConnection, Error> {
    if !matches!(got, Err(bb8::RunError::TimedOut)) {
        pending.settle();
    }
    got.map_err(|e| Error::from_pool(e, start.elapsed()))
}

/// A waiting checkout told to give its place to a request due later (see [`waiting`]):
/// not sent, and not worth retrying here (its deadline is the nearest of those waiting).
fn gave_way(last_failure: Option<Error>) -> Error {
    let error = Error::new(
        ErrorKind::NoRegionAvailable {
            reason: "the region is down and as many requests as it may hold wait on it; this \
                     one, due first, gave its place to one due later"
                .into(),
        },
        crate::error::Outcome::NotSent,
    );
    match last_failure {
        Some(cause) => error.with_source(cause),
        None => error,
    }
}

/// The bb8 checkout a waiting checkout polls: `first` (pinned in the caller's frame)
/// until it asks bb8 again, then a fresh one of its own.
struct Getting<'a, G> {
    first: Pin<&'a mut Option<G>>,
    fresh: Option<Pin<Box<dyn Future<Output = GetResult> + Send + 'a>>>,
}

impl<'a, G: Future<Output = GetResult>> Getting<'a, G> {
    fn poll(&mut self, cx: &mut std::task::Context<'_>) -> Poll<GetResult> {
        match (self.fresh.as_mut(), self.first.as_mut().as_pin_mut()) {
            (Some(get), _) => get.as_mut().poll(cx),
            (None, Some(get)) => get.poll(cx),
            (None, None) => Poll::Pending,
        }
    }

    /// Asks bb8 again (a fresh checkout, for which bb8 starts a connect while getters
    /// outnumber connects). The old checkout is dropped first: kept, bb8 could hand it the
    /// connection it waits for, and no one would poll it.
    fn renew(&mut self, pool: &'a bb8::Pool<TiberiusManager>) {
        self.first.set(None);
        self.fresh = Some(Box::pin(pool.get_owned()));
    }
}

/// While connects to a region fail, checkouts that persist (their request has nowhere
/// else to go) ask for one new connect per this interval between them all.
pub const RECONNECT_PACE: Duration = Duration::from_millis(250);

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("settings", &self.shared.settings)
            .field("state", &self.shared.inner.state())
            .finish()
    }
}

impl Pool {
    /// A pool over `manager`. Opens no connection until the first checkout (or `min_idle`).
    pub fn new(manager: TiberiusManager, settings: PoolSettings) -> Self {
        let (failures, _) = broadcast::channel(16);
        let stats = manager.stats();
        let inner = bb8::Pool::builder()
            .max_size(settings.max_size.max(1))
            .min_idle(settings.min_idle)
            .idle_timeout(settings.idle_timeout)
            .max_lifetime(settings.max_lifetime)
            .connection_timeout(settings.checkout_timeout)
            .retry_connection(false)
            .test_on_check_out(true)
            .error_sink(Box::new(FailureSink(failures.clone())))
            .build_unchecked(manager.clone());
        let shared = Arc::new(Shared {
            events: manager.event_sink(),
            manager,
            inner,
            failures,
            stats,
            checkouts: Arc::default(),
            settings,
            next_reconnect: std::sync::Mutex::new(Instant::now()),
            suspicion: suspicion::Suspicion::new(),
        });
        // Connects run on past their timeout add their connections here; at most as many
        // run at once as the pool may hold (so at most twice its size in logins).
        shared.manager.spares().attach(
            Arc::downgrade(&shared),
            usize::try_from(settings.max_size.max(1)).unwrap_or(usize::MAX),
        );
        Pool { shared }
    }

    /// The requests with nowhere else to go waiting on this pool for a connection (see
    /// [`waiting`]).
    pub(crate) fn waiting(&self) -> &waiting::Waiting {
        self.shared.manager.waiting()
    }

    /// The answers this region's servers sent on established sessions (see [`proof`]).
    pub(crate) fn proof(&self) -> &proof::PathProof {
        self.shared.manager.proof()
    }

    /// Which of this region's idle connections are suspect (see [`suspicion`]).
    pub(crate) fn suspicion(&self) -> &suspicion::Suspicion {
        &self.shared.suspicion
    }

    /// Proves `conn` with one round trip (see [`TiberiusManager`]'s idle check); on
    /// failure the connection is left broken (discarded) and the error is not-sent.
    pub(crate) async fn check(&self, conn: &mut Connection) -> Result<(), Error> {
        self.shared.manager.check(conn).await
    }

    /// Checks a connection out, waiting at most `min(within, checkout_timeout)`. A connect
    /// that fails while waiting fails the checkout with that error (not sent).
    pub async fn checkout(
        &self,
        within: Duration,
    ) -> Result<bb8::PooledConnection<'static, TiberiusManager>, Error> {
        self.checkout_persisting(within, &|| false).await
    }

    /// [`checkout`](Self::checkout), and while `still_last()` says the request has
    /// nowhere else to go, a failed connect that says the region may serve again soon (it
    /// could not be reached, or refused the login with a transient error such as 40613)
    /// does not end the wait:
    /// the pool tries again — one connect per [`RECONNECT_PACE`] for all persisting
    /// checkouts together while connects fail, and one per waiting checkout as soon as
    /// one succeeds — until the bound, which then fails with the last connect error. A
    /// region that comes back within the request's budget serves it, instead of the
    /// request spending its attempts and the retry budget on connects into the outage.
    /// Once a connect has failed, `still_last` is asked again at every failure and every
    /// [`RECONNECT_PACE`]: once another region could take the request, the wait ends with
    /// the last connect error (not sent), so the request moves on. (Before that, the
    /// request waits for the connect in progress, which its latency-aware timeout bounds.)
    pub async fn checkout_persisting(
        &self,
        within: Duration,
        still_last: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<bb8::PooledConnection<'static, TiberiusManager>, Error> {
        let start = Instant::now();
        let result = self.wait_for_connection(within, start, still_last).await;
        self.shared
            .events
            .emit(|region| crate::observe::Event::CheckoutFinished {
                region,
                waited: start.elapsed(),
            });
        result
    }

    async fn wait_for_connection(
        &self,
        within: Duration,
        start: Instant,
        still_last: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<PooledConnection, Error> {
        // Pending until it ends; ended by the timer of the slow path, or dropped by the
        // caller's, it counts as timed out.
        let pending = self.shared.checkouts.start();
        // Subscribed before bb8 may start a connect, so its failure cannot be missed.
        let failures = self.shared.failures.subscribe();
        // In an `Option` so the slow path can drop it in place (pinned here).
        let get = Some(self.shared.inner.get_owned());
        tokio::pin!(get);
        // The common case — an idle connection (bb8 answers at once) — makes none of the
        // waiting machinery: that lives in its own boxed future, so this one stays small.
        if let Poll::Ready(got) = std::future::poll_fn(|cx| {
            Poll::Ready(
                get.as_mut()
                    .as_pin_mut()
                    .map_or(Poll::Pending, |g| g.poll(cx)),
            )
        })
        .await
        {
            return settled(got, pending, start);
        }
        Box::pin(self.wait_longer(within, start, still_last, pending, failures, get)).await
    }

    /// The checkout's slow path: `first` (bb8's checkout, already polled once) is still
    /// pending.
    async fn wait_longer<'a, G>(
        &'a self,
        within: Duration,
        start: Instant,
        still_last: &(dyn Fn() -> bool + Send + Sync),
        pending: PendingCheckout,
        mut failures: broadcast::Receiver<Error>,
        first: Pin<&'a mut Option<G>>,
    ) -> Result<PooledConnection, Error>
    where
        G: Future<Output = GetResult> + Send,
    {
        let limit = within.min(self.shared.settings.checkout_timeout);
        // With nowhere else to go, a connect the server answers slowly is finished for
        // this request instead of abandoned at its latency-aware timeout (see `waiting`).
        // Registered, it may also be told to give way to a request due later (see
        // `waiting`).
        let waiting = still_last().then(|| self.shared.manager.waiting().enter(start + limit));
        let mut get = Getting { first, fresh: None };
        let deadline = tokio::time::sleep(limit.saturating_sub(start.elapsed()));
        tokio::pin!(deadline);
        // Persisting (made only once a connect failed, so the common checkout pays for
        // none of it): the last connect error, when this checkout may ask for another
        // connect (bb8 starts one for a fresh `get` while getters outnumber connects), and
        // one timer for that and for asking again whether the request is still without
        // an alternative.
        let mut last_failure: Option<Error> = None;
        let mut retry_at: Option<Instant> = None;
        let mut timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
        let wake = |retry_at: Option<Instant>| {
            let recheck = Instant::now() + RECONNECT_PACE;
            retry_at.map_or(recheck, |at| at.min(recheck))
        };
        loop {
            tokio::select! {
                biased;
                got = std::future::poll_fn(|cx| get.poll(cx)) => {
                    return settled(got, pending, start);
                }
                failure = failures.recv() => match failure {
                    // A connection in use may come back any moment: a failed new login
                    // (a 40613 storm at the gateway) must not fail a checkout that a
                    // working pooled connection can serve. The pool is starved, though:
                    // more demand than connections, and it cannot grow.
                    Ok(_) if self.has_connections_in_use() => {
                        self.shared.checkouts.note_starved();
                        continue;
                    }
                    // The region could not be reached (refused, reset, black-holed) or
                    // refused the login with a transient error: it may come back. Anything
                    // else (TLS, a wrong password) says it will not, and ends the wait.
                    Ok(error) if may_come_back(&error) && still_last() => {
                        last_failure = Some(error);
                        retry_at = Some(self.next_reconnect());
                        match timer.as_mut() {
                            Some(t) => t.as_mut().reset(wake(retry_at)),
                            None => timer = Some(Box::pin(tokio::time::sleep_until(wake(retry_at)))),
                        }
                    }
                    Ok(error) => {
                        pending.settle();
                        return Err(error);
                    }
                    // Missed some failures: keep waiting; the next one or the timer ends it.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => {
                        // Cannot happen while `self` holds the sender; wait on the rest.
                        (&mut deadline).await;
                        return Err(self.exhausted(limit));
                    }
                },
                // The region is down, the requests waiting on it are at the router's bound,
                // and one due later than this one came: it takes this place.
                _ = async {
                    if let Some(w) = &waiting {
                        w.told_to_give_way().await;
                    }
                }, if waiting.is_some() => {
                    pending.settle();
                    return Err(gave_way(last_failure));
                }
                // The region answers logins again: ask for a connect of our own at once.
                _ = self.shared.stats.connected().notified(), if retry_at.is_some() => {
                    retry_at = None;
                    get.renew(&self.shared.inner);
                }
                _ = async {
                    if let Some(t) = timer.as_mut() {
                        t.as_mut().await;
                    }
                }, if timer.is_some() => {
                    // Somewhere else could take the request now: stop persisting.
                    if !still_last() {
                        pending.settle();
                        return Err(last_failure.take().unwrap_or_else(|| self.exhausted(limit)));
                    }
                    if retry_at.is_some_and(|at| at <= Instant::now()) {
                        retry_at = None;
                        get.renew(&self.shared.inner);
                    }
                    if let Some(t) = timer.as_mut() {
                        t.as_mut().reset(wake(retry_at));
                    }
                }
                // Out of time (counted as a checkout timeout, persisting or not); a
                // persisting one says why with the last connect error.
                _ = &mut deadline => {
                    return Err(last_failure.unwrap_or_else(|| self.exhausted(limit)));
                }
            }
        }
    }

    /// When a persisting checkout may ask for its next connect while connects fail: one
    /// slot per [`RECONNECT_PACE`] for the whole pool, so waiting requests do not turn an
    /// outage into a connect storm.
    fn next_reconnect(&self) -> Instant {
        let mut next = self
            .shared
            .next_reconnect
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let slot = (*next).max(Instant::now());
        *next = slot + RECONNECT_PACE;
        slot
    }

    fn has_connections_in_use(&self) -> bool {
        let state = self.shared.inner.state();
        state.connections > state.idle_connections
    }

    /// The checkout ran out of time. With every connection open and busy that is this
    /// process's own limit ([`TimeoutScope::PoolCheckout`], which says nothing about the
    /// database); otherwise a connection was being opened and did not come in time
    /// ([`TimeoutScope::Connect`]).
    fn exhausted(&self, waited: Duration) -> Error {
        let state = self.shared.inner.state();
        tracing::debug!(
            target: "mssql_resilience",
            connections = state.connections, idle = state.idle_connections,
            "pool checkout timed out"
        );
        let scope = if state.connections >= self.shared.settings.max_size.max(1) {
            TimeoutScope::PoolCheckout
        } else {
            TimeoutScope::Connect
        };
        Error::new(
            ErrorKind::Timeout {
                scope,
                after: waited,
            },
            crate::error::Outcome::NotSent,
        )
    }

    /// bb8's figures (connections, idle, statistics).
    pub fn state(&self) -> bb8::State {
        self.shared.inner.state()
    }

    /// The pool's limits.
    pub fn settings(&self) -> PoolSettings {
        self.shared.settings
    }

    /// Checkouts waiting now and checkouts that ran out of time, counting those the
    /// caller's budget cut short (bb8's own statistics miss them).
    pub fn checkout_stats(&self) -> CheckoutStats {
        self.shared.checkouts.snapshot()
    }

    /// How often a waiting checkout kept waiting because a new connection failed while
    /// every open one was busy ([`CheckoutStats::starved`]).
    pub fn starved_waits(&self) -> u64 {
        self.shared.checkouts.starved()
    }

    /// The manager's counters (connects, failures, redirects).
    pub fn manager_stats(&self) -> Arc<ManagerStats> {
        self.shared.stats.clone()
    }
}
