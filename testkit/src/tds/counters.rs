//! Per-server counters.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a server's counters (also served as JSON by `GET /counters`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Successful logins.
    pub logins: u64,
    /// Failed logins: wrong credentials, unknown database and injected login faults.
    pub failed_logins: u64,
    /// Logins answered with an injected routing (redirect) ENVCHANGE.
    pub redirects: u64,
    /// SQL batch requests received (after login).
    pub batches: u64,
    /// RPC requests received (after login).
    pub rpcs: u64,
    /// Attention (cancel) packets received.
    pub attentions: u64,
    /// Errors produced by injected faults (login, query, read-only refusals).
    pub errors_injected: u64,
    /// Responses cut short by an injected connection drop.
    pub responses_dropped: u64,
    /// Responses stalled part-way by an injected stall fault.
    #[serde(default)]
    pub responses_stalled: u64,
    /// TLS handshakes completed (PRELOGIN negotiated encryption and the handshake ended).
    #[serde(default)]
    pub tls_handshakes: u64,
    /// TLS handshakes that failed (e.g. the client rejected the certificate).
    #[serde(default)]
    pub tls_handshakes_failed: u64,
    /// TLS handshakes left unanswered by an injected stall
    /// ([`Faults::stall_tls_handshakes`](super::Faults::stall_tls_handshakes)).
    #[serde(default)]
    pub tls_handshakes_stalled: u64,
    /// TCP connections currently open.
    pub connections_open: u64,
    /// TCP connections accepted since start (including ones closed immediately
    /// because accepting was switched off).
    pub connections_total: u64,
    /// Sessions closed by `kill_sessions`.
    pub sessions_killed: u64,
}

#[derive(Debug, Default)]
pub(crate) struct CounterCells {
    pub logins: AtomicU64,
    pub failed_logins: AtomicU64,
    pub redirects: AtomicU64,
    pub batches: AtomicU64,
    pub rpcs: AtomicU64,
    pub attentions: AtomicU64,
    pub errors_injected: AtomicU64,
    pub responses_dropped: AtomicU64,
    pub responses_stalled: AtomicU64,
    pub tls_handshakes: AtomicU64,
    pub tls_handshakes_failed: AtomicU64,
    pub tls_handshakes_stalled: AtomicU64,
    pub connections_open: AtomicU64,
    pub connections_total: AtomicU64,
    pub sessions_killed: AtomicU64,
}

pub(crate) fn bump(cell: &AtomicU64) {
    cell.fetch_add(1, Ordering::Relaxed);
}

impl CounterCells {
    pub fn snapshot(&self) -> Counters {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counters {
            logins: g(&self.logins),
            failed_logins: g(&self.failed_logins),
            redirects: g(&self.redirects),
            batches: g(&self.batches),
            rpcs: g(&self.rpcs),
            attentions: g(&self.attentions),
            errors_injected: g(&self.errors_injected),
            responses_dropped: g(&self.responses_dropped),
            responses_stalled: g(&self.responses_stalled),
            tls_handshakes: g(&self.tls_handshakes),
            tls_handshakes_failed: g(&self.tls_handshakes_failed),
            tls_handshakes_stalled: g(&self.tls_handshakes_stalled),
            connections_open: g(&self.connections_open),
            connections_total: g(&self.connections_total),
            sessions_killed: g(&self.sessions_killed),
        }
    }
}
