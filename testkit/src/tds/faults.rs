//! Fault injection: the cloneable [`Faults`] handle and the state sessions consult.

use super::counters::{CounterCells, Counters};
use super::errors::ErrorSpec;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;

/// When a fault fires.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The next `n` occasions (logins, queries, responses), then the fault clears.
    Next(u32),
    /// Every occasion until cleared.
    Always,
    /// Each occasion independently with probability `p` (0.0–1.0), drawn from an RNG
    /// seeded with `seed`, so a run is reproducible.
    Probability {
        /// Probability of firing, 0.0–1.0.
        p: f64,
        /// RNG seed.
        seed: u64,
    },
}

#[derive(Debug)]
enum TriggerState {
    Next(u32),
    Always,
    Probability(f64, fastrand::Rng),
}

impl TriggerState {
    fn new(t: Trigger) -> Self {
        match t {
            Trigger::Next(n) => TriggerState::Next(n),
            Trigger::Always => TriggerState::Always,
            Trigger::Probability { p, seed } => {
                TriggerState::Probability(p.clamp(0.0, 1.0), fastrand::Rng::with_seed(seed))
            }
        }
    }

    /// Whether the fault fires on this occasion.
    fn fire(&mut self) -> bool {
        match self {
            TriggerState::Next(n) => {
                if *n > 0 {
                    *n -= 1;
                    true
                } else {
                    false
                }
            }
            TriggerState::Always => true,
            TriggerState::Probability(p, rng) => rng.f64() < *p,
        }
    }

    fn exhausted(&self) -> bool {
        matches!(self, TriggerState::Next(0))
    }
}

/// A query fault: requests whose SQL text matches fail with `error` instead of running.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryFault {
    /// The error sent back.
    pub error: ErrorSpec,
    /// Only requests whose SQL text contains this (case-insensitive) substring; `None`
    /// matches every batch and RPC.
    pub matching: Option<String>,
    /// When it fires (counted over matching requests only).
    pub trigger: Trigger,
    /// Close the connection after sending the error. SQL Server ends the session after
    /// errors of class 20 and above, so [`QueryFault::new`] sets this for those classes.
    pub close_connection: bool,
}

impl QueryFault {
    /// A fault failing matching requests with `error`; closes the connection afterwards
    /// when the class is 20 or more (as SQL Server does for fatal errors).
    pub fn new(error: ErrorSpec, trigger: Trigger) -> Self {
        let close_connection = error.class >= 20;
        QueryFault {
            error,
            matching: None,
            trigger,
            close_connection,
        }
    }

    /// Restrict the fault to requests whose SQL contains `needle` (case-insensitive).
    pub fn matching(mut self, needle: impl Into<String>) -> Self {
        self.matching = Some(needle.into());
        self
    }

    /// Override whether the connection is closed after the error.
    pub fn close_connection(mut self, close: bool) -> Self {
        self.close_connection = close;
        self
    }
}

/// Where a response is cut when a drop fault fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropPoint {
    /// Send this many bytes of the response (packet headers included, so a value that
    /// is not on a packet boundary leaves a partial packet), then close the connection.
    AfterBytes(usize),
    /// Send every token except the final DONE as complete (non-final) packets, then
    /// close the connection.
    BeforeFinalDone,
}

/// Where a response stops when a stall fault fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StallPoint {
    /// Send every token up to and including the `n`-th row (counted over the whole
    /// response) as complete packets, then nothing more; 0 sends nothing at all. A
    /// response with fewer rows is sent whole except its final DONE. The client can read those rows; after an
    /// attention the server answers DONE(ATTN) and the connection stays usable.
    AfterRows(usize),
    /// Send this many bytes of the framed response (a partial packet if the count is
    /// not on a packet boundary), then nothing more. The connection cannot be resumed:
    /// an attention closes it.
    AfterBytes(usize),
}

/// A stall fault: matching responses are sent up to `point`, then the server sends
/// nothing more and holds the connection until the client cancels (attention),
/// disconnects, or the session is killed. The statements have run (and an autocommit
/// write committed) before anything is sent, as with a real server whose network path
/// stalls while the client reads a result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StallFault {
    /// Where the response stops.
    pub point: StallPoint,
    /// Only requests whose SQL text contains this (case-insensitive) substring; `None`
    /// matches every batch and RPC.
    pub matching: Option<String>,
    /// When it fires (counted over matching requests only).
    pub trigger: Trigger,
}

impl StallFault {
    /// A stall at `point` for every request, when `trigger` fires.
    pub fn new(point: StallPoint, trigger: Trigger) -> Self {
        StallFault {
            point,
            matching: None,
            trigger,
        }
    }

    /// Restrict the fault to requests whose SQL contains `needle` (case-insensitive).
    pub fn matching(mut self, needle: impl Into<String>) -> Self {
        self.matching = Some(needle.into());
        self
    }
}

/// What happens to the work in flight when a client disconnects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisconnectMode {
    /// The running statement is interrupted at once and rolled back, as is any open
    /// transaction (the testkit's historical behaviour).
    #[default]
    #[serde(rename = "rollback")]
    RollBack,
    /// The request in flight runs to its end: an autocommit statement commits; an open
    /// explicit transaction is still rolled back when the session then ends. This is
    /// what makes a lost answer ambiguous on a real server, which notices a dead client
    /// only when it next writes to it. Attentions and killed sessions still interrupt.
    Complete,
}

/// How the listener treats new connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AcceptMode {
    /// Accept and serve connections.
    #[default]
    Normal,
    /// Keep the port bound, accept the TCP connection and close it at once (the client's
    /// TCP connect succeeds; its PRELOGIN read hits end-of-file).
    CloseImmediately,
    /// Unbind the port, so connecting is refused (ECONNREFUSED); switching back to
    /// another mode binds the same address again.
    Refuse,
}

#[derive(Debug, Default)]
pub(crate) struct FaultState {
    login: Option<(ErrorSpec, TriggerState)>,
    redirect: Option<(String, u16, TriggerState)>,
    query: Vec<(QueryFault, TriggerState)>,
    delay: Duration,
    drop: Option<(DropPoint, TriggerState)>,
    stall: Vec<(StallFault, TriggerState)>,
    tls_stall: Option<TriggerState>,
}

/// Control block of one live session, used to kill it.
#[derive(Debug)]
pub(crate) struct SessionCtl {
    pub killed: AtomicBool,
    pub events: watch::Sender<u64>,
}

impl SessionCtl {
    pub fn new() -> Self {
        SessionCtl {
            killed: AtomicBool::new(false),
            events: watch::Sender::new(0),
        }
    }

    pub fn bump(&self) {
        self.events.send_modify(|v| *v = v.wrapping_add(1));
    }

    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        self.bump();
    }
}

/// State shared by the server, its sessions, its control endpoint and [`Faults`] handles.
#[derive(Debug)]
pub(crate) struct Shared {
    pub state: Mutex<FaultState>,
    pub read_only: AtomicBool,
    pub counters: CounterCells,
    pub sessions: Mutex<HashMap<u64, Arc<SessionCtl>>>,
    pub accept: watch::Sender<AcceptMode>,
    pub next_session: AtomicU64,
    /// The configured disconnect mode (what [`Faults::clear`] goes back to).
    pub default_disconnect: DisconnectMode,
    /// The disconnect mode in force: true for [`DisconnectMode::Complete`].
    disconnect_completes: AtomicBool,
}

impl Shared {
    pub fn new(default_disconnect: DisconnectMode) -> Self {
        Shared {
            state: Mutex::new(FaultState::default()),
            read_only: AtomicBool::new(false),
            counters: CounterCells::default(),
            sessions: Mutex::new(HashMap::new()),
            accept: watch::Sender::new(AcceptMode::Normal),
            next_session: AtomicU64::new(1),
            default_disconnect,
            disconnect_completes: AtomicBool::new(default_disconnect == DisconnectMode::Complete),
        }
    }

    pub fn disconnect_mode(&self) -> DisconnectMode {
        if self.disconnect_completes.load(Ordering::SeqCst) {
            DisconnectMode::Complete
        } else {
            DisconnectMode::RollBack
        }
    }

    fn set_disconnect_mode(&self, mode: DisconnectMode) {
        self.disconnect_completes
            .store(mode == DisconnectMode::Complete, Ordering::SeqCst);
    }

    /// The stall point of the first stall fault that matches and fires for this request.
    pub fn stall_fault(&self, sql: &str) -> Option<StallPoint> {
        let mut st = self.lock();
        let lower = sql.to_lowercase();
        let mut fired = None;
        for (fault, trig) in st.stall.iter_mut() {
            let matches = fault
                .matching
                .as_ref()
                .is_none_or(|m| lower.contains(&m.to_lowercase()));
            if matches && trig.fire() {
                fired = Some(fault.point);
                break;
            }
        }
        st.stall.retain(|(_, t)| !t.exhausted());
        fired
    }

    fn lock(&self) -> MutexGuard<'_, FaultState> {
        // A poisoned lock only means a panic elsewhere; the data is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn sessions(&self) -> MutexGuard<'_, HashMap<u64, Arc<SessionCtl>>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Decides the fate of one login: an injected error, a redirect, or none.
    pub fn login_fault(&self) -> LoginFate {
        let mut st = self.lock();
        if let Some((err, trig)) = st.login.as_mut() {
            let fired = trig.fire().then(|| err.clone());
            if trig.exhausted() {
                st.login = None;
            }
            if let Some(err) = fired {
                return LoginFate::Fail(err);
            }
        }
        if let Some((host, port, trig)) = st.redirect.as_mut() {
            let fired = trig.fire().then(|| (host.clone(), *port));
            if trig.exhausted() {
                st.redirect = None;
            }
            if let Some((host, port)) = fired {
                return LoginFate::Redirect(host, port);
            }
        }
        LoginFate::Proceed
    }

    /// The first query fault that matches and fires for this request text.
    pub fn query_fault(&self, sql: &str) -> Option<QueryFault> {
        let mut st = self.lock();
        let lower = sql.to_lowercase();
        let mut fired = None;
        for (fault, trig) in st.query.iter_mut() {
            let matches = fault
                .matching
                .as_ref()
                .is_none_or(|m| lower.contains(&m.to_lowercase()));
            if matches && trig.fire() {
                fired = Some(fault.clone());
                break;
            }
        }
        st.query.retain(|(_, t)| !t.exhausted());
        fired
    }

    /// Whether this connection's TLS handshake is left unanswered.
    pub fn tls_stall_fault(&self) -> bool {
        let mut st = self.lock();
        let Some(trig) = st.tls_stall.as_mut() else {
            return false;
        };
        let fired = trig.fire();
        if trig.exhausted() {
            st.tls_stall = None;
        }
        fired
    }

    pub fn query_delay(&self) -> Duration {
        self.lock().delay
    }

    pub fn drop_fault(&self) -> Option<DropPoint> {
        let mut st = self.lock();
        let (point, trig) = st.drop.as_mut()?;
        let fired = trig.fire().then_some(*point);
        if trig.exhausted() {
            st.drop = None;
        }
        fired
    }
}

/// What happens to a login.
#[derive(Debug)]
pub(crate) enum LoginFate {
    Proceed,
    Fail(ErrorSpec),
    Redirect(String, u16),
}

/// A cloneable handle for setting and clearing faults on a running server (and reading
/// its counters). Every setter takes effect for the next login / request / connection.
#[derive(Debug, Clone)]
pub struct Faults {
    pub(crate) shared: Arc<Shared>,
}

impl Faults {
    /// Logins fail with `error` (sent as an ERROR token followed by DONE with the
    /// error flag, like SQL Server) when `trigger` fires. Replaces any login fault.
    /// Checked before the credentials.
    pub fn fail_logins(&self, error: ErrorSpec, trigger: Trigger) {
        self.shared.lock().login = Some((error, TriggerState::new(trigger)));
    }

    /// Logins are answered like an Azure SQL gateway in redirect mode: LOGINACK, an
    /// ENVCHANGE of type 20 (routing) to `host:port`, and DONE. tiberius reports
    /// `Error::Routing { host, port }`. Replaces any redirect.
    pub fn redirect_logins(&self, host: impl Into<String>, port: u16, trigger: Trigger) {
        self.shared.lock().redirect = Some((host.into(), port, TriggerState::new(trigger)));
    }

    /// Adds a query fault (several may be active; the first that matches and fires wins).
    pub fn fail_queries(&self, fault: QueryFault) {
        let trig = TriggerState::new(fault.trigger);
        self.shared.lock().query.push((fault, trig));
    }

    /// Every batch and RPC waits this long before running (cancelled by an attention or
    /// by the connection closing). `Duration::ZERO` turns it off.
    pub fn set_query_delay(&self, delay: Duration) {
        self.shared.lock().delay = delay;
    }

    /// Read-only mode: INSERT, UPDATE, DELETE, MERGE and DDL fail with 3906 and
    /// `DATABASEPROPERTYEX(DB_NAME(), 'Updateability')` reads `READ_ONLY`.
    pub fn set_read_only(&self, enabled: bool) {
        self.shared.read_only.store(enabled, Ordering::SeqCst);
    }

    /// Responses to batches and RPCs are cut at `point` and the connection closed when
    /// `trigger` fires (login responses are never cut). Replaces any drop fault.
    pub fn drop_responses(&self, point: DropPoint, trigger: Trigger) {
        self.shared.lock().drop = Some((point, TriggerState::new(trigger)));
    }

    /// Adds a stall fault (several may be active; the first that matches and fires
    /// wins). Checked after the request ran, before a drop fault.
    pub fn stall_responses(&self, fault: StallFault) {
        let trig = TriggerState::new(fault.trigger);
        self.shared.lock().stall.push((fault, trig));
    }

    /// Removes every stall fault (sessions already stalled stay stalled until the
    /// client cancels or leaves).
    pub fn clear_stall_faults(&self) {
        self.shared.lock().stall.clear();
    }

    /// When `trigger` fires for a connection whose PRELOGIN negotiated encryption, the
    /// server answers the PRELOGIN and then never answers the client's TLS handshake: it
    /// reads and discards what the client sends and holds the connection until the client
    /// leaves or the session is killed (a server or middlebox that stalls mid-handshake).
    /// Only servers started with TLS (see [`TlsMode`](super::TlsMode)) negotiate
    /// encryption. Replaces any TLS stall fault; [`Faults::clear`] removes it.
    pub fn stall_tls_handshakes(&self, trigger: Trigger) {
        self.shared.lock().tls_stall = Some(TriggerState::new(trigger));
    }

    /// What a client disconnect does to the work in flight (see [`DisconnectMode`]).
    /// Applies to disconnects noticed from now on, in every session.
    pub fn set_disconnect_mode(&self, mode: DisconnectMode) {
        self.shared.set_disconnect_mode(mode);
    }

    /// The disconnect mode in force.
    pub fn disconnect_mode(&self) -> DisconnectMode {
        self.shared.disconnect_mode()
    }

    /// How the listener treats new connections (existing sessions are unaffected).
    pub fn set_accept_mode(&self, mode: AcceptMode) {
        self.shared.accept.send_replace(mode);
    }

    /// Closes every open session at once (in-flight requests are abandoned, including
    /// open transactions, which roll back). Returns how many sessions were killed.
    pub fn kill_sessions(&self) -> usize {
        let sessions = self.shared.sessions();
        for ctl in sessions.values() {
            ctl.kill();
        }
        self.shared
            .counters
            .sessions_killed
            .fetch_add(sessions.len() as u64, Ordering::Relaxed);
        sessions.len()
    }

    /// Clears every fault: login failures and redirects, query faults, the delay, drop
    /// and stall faults, TLS handshake stalls, read-only mode; sets the accept mode back to normal and the
    /// disconnect mode back to the server's configured one.
    pub fn clear(&self) {
        *self.shared.lock() = FaultState::default();
        self.shared.read_only.store(false, Ordering::SeqCst);
        self.shared.accept.send_replace(AcceptMode::Normal);
        self.shared
            .set_disconnect_mode(self.shared.default_disconnect);
    }

    /// Removes the login fault and the redirect.
    pub fn clear_login_faults(&self) {
        let mut st = self.shared.lock();
        st.login = None;
        st.redirect = None;
    }

    /// Removes every query fault and the query delay.
    pub fn clear_query_faults(&self) {
        let mut st = self.shared.lock();
        st.query.clear();
        st.delay = Duration::ZERO;
    }

    /// Removes the drop fault.
    pub fn clear_drop_faults(&self) {
        self.shared.lock().drop = None;
    }

    /// Whether read-only mode is on.
    pub fn read_only(&self) -> bool {
        self.shared.read_only.load(Ordering::SeqCst)
    }

    /// A snapshot of the server's counters.
    pub fn counters(&self) -> Counters {
        self.shared.counters.snapshot()
    }
}
