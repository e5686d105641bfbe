//! The proxy itself: [`ChaosProxy`] (listener and accept loop) and [`ChaosHandle`]
//! (switch behaviour at run time).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use std::{fmt, io};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::counters::{Counters, CountersSnapshot};
use super::pump;
use super::schedule::{self, RunningSchedule, Schedule, ScheduleGuard, ScheduleSlot};
use super::toxics::{Mode, Toxics};

/// How to start a [`ChaosProxy`].
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Address to listen on; port 0 picks a free port (see [`ChaosProxy::addr`]).
    pub listen: SocketAddr,
    /// Upstream `HOST:PORT`, resolved anew for every connection.
    pub upstream: String,
    /// Toxics in force from the start (default: ok).
    pub toxics: Toxics,
    /// Seed of the RNGs used for jitter and for the per-connection draws that decide
    /// which connections toxics with a [`Toxicity`](super::Toxicity) below 1 affect
    /// (default: 0, so runs are reproducible).
    pub seed: u64,
    /// Give up dialling the upstream after this long and reset the client
    /// (default: 10s).
    pub connect_timeout: Duration,
}

impl ProxyConfig {
    /// Defaults: no toxics, seed 0, connect timeout 10s.
    pub fn new(listen: SocketAddr, upstream: impl ToString) -> Self {
        ProxyConfig {
            listen,
            upstream: upstream.to_string(),
            toxics: Toxics::default(),
            seed: 0,
            connect_timeout: Duration::from_secs(10),
        }
    }

    /// Sets the initial toxics.
    pub fn with_toxics(mut self, toxics: Toxics) -> Self {
        self.toxics = toxics;
        self
    }

    /// Sets the seed of the jitter and toxicity RNGs.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the upstream connect timeout.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
}

/// State shared by the proxy, its handles and its tasks.
pub(crate) struct Shared {
    pub(crate) toxics: watch::Sender<Toxics>,
    /// Bumped by [`ChaosHandle::reset_connections`].
    pub(crate) kill: watch::Sender<u64>,
    pub(crate) counters: Counters,
    pub(crate) upstream: String,
    pub(crate) connect_timeout: Duration,
    schedule: Mutex<Option<ScheduleSlot>>,
    schedule_ids: AtomicU64,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("upstream", &self.upstream)
            .field("toxics", &*self.toxics.borrow())
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn schedule_slot(&self) -> MutexGuard<'_, Option<ScheduleSlot>> {
        // A panic while holding this lock cannot leave the slot inconsistent.
        self.schedule
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn next_schedule_id(&self) -> u64 {
        self.schedule_ids.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn clear_schedule_slot(&self, id: u64) {
        let mut slot = self.schedule_slot();
        if slot.as_ref().is_some_and(|s| s.id == id) {
            *slot = None;
        }
    }
}

/// A cloneable remote control for a [`ChaosProxy`]: switch toxics, play a
/// schedule, read counters. Changes apply to open connections too.
#[derive(Clone, Debug)]
pub struct ChaosHandle {
    shared: Arc<Shared>,
}

impl ChaosHandle {
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Replaces the toxics.
    pub fn set(&self, toxics: Toxics) {
        self.shared.toxics.send_if_modified(|current| {
            if *current == toxics {
                false
            } else {
                tracing::debug!(%toxics, "chaos: toxics set");
                *current = toxics;
                true
            }
        });
    }

    /// Changes only the mode, keeping the direction toxics.
    pub fn set_mode(&self, mode: Mode) {
        self.update(|t| t.mode = mode);
    }

    /// Edits the toxics in place.
    pub fn update(&self, edit: impl FnOnce(&mut Toxics)) {
        let mut toxics = self.toxics();
        edit(&mut toxics);
        self.set(toxics);
    }

    /// Back to a clean pass-through.
    pub fn clear(&self) {
        self.set(Toxics::default());
    }

    /// The toxics in force.
    pub fn toxics(&self) -> Toxics {
        self.shared.toxics.borrow().clone()
    }

    /// A receiver that sees every change of toxics (e.g. to log a schedule).
    pub fn subscribe(&self) -> watch::Receiver<Toxics> {
        self.shared.toxics.subscribe()
    }

    /// Resets (RST) every connection open right now, without changing the
    /// toxics; later connections are unaffected.
    pub fn reset_connections(&self) {
        self.shared.kill.send_modify(|epoch| *epoch += 1);
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> CountersSnapshot {
        self.shared.counters.snapshot()
    }

    /// Plays `schedule` from now on tokio's clock (so `tokio::time::pause()` and
    /// `advance()` drive it), replacing any schedule already playing on this
    /// proxy. Each phase boundary sets the phase's toxics (a gap or the end of a
    /// non-repeating schedule sets "ok").
    ///
    /// Dropping the returned guard cancels the schedule and leaves the toxics as
    /// they are; [`ScheduleGuard::detach`] lets it run on.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn run_schedule(&self, schedule: Schedule) -> ScheduleGuard {
        schedule::spawn_runner(self, schedule)
    }

    /// Stops the schedule playing on this proxy, if any (the toxics stay as they
    /// are). Returns whether one was playing.
    pub fn cancel_schedule(&self) -> bool {
        match self.shared.schedule_slot().take() {
            Some(slot) => {
                slot.abort.abort();
                true
            }
            None => false,
        }
    }

    /// The schedule playing on this proxy, if any, and how far along it is.
    pub fn running_schedule(&self) -> Option<RunningSchedule> {
        self.shared.running_schedule()
    }
}

/// A TCP proxy from a listening address to an upstream `HOST:PORT`, with
/// switchable [`Toxics`]. See the [module documentation](super).
///
/// Dropping the proxy stops it like [`ChaosProxy::shutdown`], without waiting.
#[derive(Debug)]
pub struct ChaosProxy {
    addr: SocketAddr,
    handle: ChaosHandle,
    stop: watch::Sender<bool>,
    accept: Option<JoinHandle<()>>,
    control: Mutex<Vec<JoinHandle<()>>>,
}

impl ChaosProxy {
    /// Listens on `listen` (port 0 picks a free port) and forwards every
    /// connection to `upstream` (`HOST:PORT`, or a `SocketAddr`), with no toxics.
    pub async fn start(listen: SocketAddr, upstream: impl ToString) -> io::Result<ChaosProxy> {
        Self::start_with(ProxyConfig::new(listen, upstream)).await
    }

    /// Starts a proxy from a full configuration.
    pub async fn start_with(config: ProxyConfig) -> io::Result<ChaosProxy> {
        validate_upstream(&config.upstream)?;
        let listener = TcpListener::bind(config.listen).await.map_err(|e| {
            io::Error::new(e.kind(), format!("cannot listen on {}: {e}", config.listen))
        })?;
        let addr = listener.local_addr()?;
        let (toxics, _) = watch::channel(config.toxics);
        let (kill, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            toxics,
            kill,
            counters: Counters::default(),
            upstream: config.upstream,
            connect_timeout: config.connect_timeout,
            schedule: Mutex::new(None),
            schedule_ids: AtomicU64::new(0),
        });
        let (stop, stop_rx) = watch::channel(false);
        let accept = tokio::spawn(accept_loop(listener, shared.clone(), stop_rx, config.seed));
        Ok(ChaosProxy {
            addr,
            handle: ChaosHandle { shared },
            stop,
            accept: Some(accept),
            control: Mutex::new(Vec::new()),
        })
    }

    /// The address the proxy listens on (with the real port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The upstream `HOST:PORT`.
    pub fn upstream(&self) -> &str {
        &self.handle.shared.upstream
    }

    /// A handle to switch toxics, play schedules and read counters.
    pub fn handle(&self) -> ChaosHandle {
        self.handle.clone()
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> CountersSnapshot {
        self.handle.counters()
    }

    /// Serves the HTTP/JSON control API (see [`control_router`]) on `addr`, which
    /// must be a loopback address (port 0 picks a free port). Returns the real
    /// address. The server stops with the proxy.
    ///
    /// [`control_router`]: super::control_router
    pub async fn serve_control(&self, addr: SocketAddr) -> io::Result<SocketAddr> {
        if !addr.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("control address {addr} is not a loopback address (the API has no authentication)"),
            ));
        }
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
        let local = listener.local_addr()?;
        let router = super::control::control_router(self.handle());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::warn!(error = %e, "chaos: control server stopped");
            }
        });
        self.control
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(task);
        Ok(local)
    }

    /// Stops accepting, closes every connection (and the control servers),
    /// cancels a running schedule, and waits until that is done.
    pub async fn shutdown(mut self) {
        self.handle.cancel_schedule();
        for task in self.take_control_tasks() {
            task.abort();
            let _ = task.await;
        }
        let _ = self.stop.send(true);
        if let Some(accept) = self.accept.take() {
            let _ = accept.await;
        }
    }

    fn take_control_tasks(&self) -> Vec<JoinHandle<()>> {
        std::mem::take(
            &mut *self
                .control
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.handle.cancel_schedule();
        for task in self.take_control_tasks() {
            task.abort();
        }
        if let Some(accept) = self.accept.take() {
            // Aborting the accept task drops its JoinSet, which aborts every
            // connection task.
            accept.abort();
        }
    }
}

fn validate_upstream(upstream: &str) -> io::Result<()> {
    let ok = upstream
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0));
    if ok {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("upstream {upstream:?} is not HOST:PORT"),
        ))
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    seed: u64,
) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut draws = super::toxics::connection_draws(seed);
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => accepted,
        };
        while connections.try_join_next().is_some() {}
        let (socket, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Typically EMFILE; back off instead of spinning.
                tracing::warn!(error = %e, "chaos: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        Counters::bump(&shared.counters.accepted);
        // One draw per accepted connection, whatever the toxics: the n-th connection
        // always gets the n-th draw.
        let draw = draws.next().unwrap_or(0.0);
        // Subscribing marks the current values as seen: only later changes (and
        // the mode now in force, checked below) affect this connection.
        let toxics = shared.toxics.subscribe();
        let kill = shared.kill.subscribe();
        let mode = {
            let current = toxics.borrow();
            let effective = current.for_draw(draw);
            if !current.is_ok() && effective.is_ok() {
                Counters::bump(&shared.counters.spared);
            }
            effective.mode
        };
        tracing::trace!(%peer, %mode, draw, "chaos: accepted");
        match mode {
            Mode::Refuse | Mode::Reset => {
                Counters::bump(&shared.counters.refused);
                pump::reset(&socket);
                drop(socket);
            }
            Mode::Blackhole => {
                connections.spawn(pump::sink_connection(
                    socket,
                    shared.clone(),
                    toxics,
                    kill,
                    draw,
                ));
            }
            Mode::Ok => {
                connections.spawn(pump::proxy_connection(
                    socket,
                    shared.clone(),
                    toxics,
                    kill,
                    rng.u64(..),
                    draw,
                ));
            }
        }
    }
    drop(listener);
    connections.shutdown().await;
}
