//! Per-proxy counters.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// A snapshot of a proxy's counters (all since the proxy started).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountersSnapshot {
    /// Connections accepted by the listener (including those then refused or
    /// black-holed).
    pub accepted: u64,
    /// New connections turned away with an RST at accept time (mode `refuse` or
    /// `reset`).
    pub refused: u64,
    /// Open connections killed with an RST by mode `reset` or
    /// [`ChaosHandle::reset_connections`](super::ChaosHandle::reset_connections).
    pub reset: u64,
    /// Connections caught by mode `blackhole`: accepted into it, or open when it
    /// began (once per black-hole episode).
    pub blackholed: u64,
    /// Connections closed by a `cut_after` toxic.
    pub cut: u64,
    /// Connections whose upstream could not be reached (dial failed or timed out);
    /// the client was reset.
    pub upstream_errors: u64,
    /// Connections open right now (proxied or black-holed).
    pub active: u64,
    /// Bytes forwarded client → server.
    pub bytes_up: u64,
    /// Bytes forwarded server → client.
    pub bytes_down: u64,
    /// Bytes read and thrown away by a black-hole.
    pub bytes_discarded: u64,
    /// Connections accepted while toxics were in force that their
    /// [`Toxicity`](super::Toxicity) left alone (a partial failure spared them).
    #[serde(default)]
    pub spared: u64,
}

/// The live counters behind [`CountersSnapshot`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) accepted: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) reset: AtomicU64,
    pub(crate) blackholed: AtomicU64,
    pub(crate) cut: AtomicU64,
    pub(crate) upstream_errors: AtomicU64,
    pub(crate) active: AtomicU64,
    pub(crate) bytes_up: AtomicU64,
    pub(crate) bytes_down: AtomicU64,
    pub(crate) bytes_discarded: AtomicU64,
    pub(crate) spared: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> CountersSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CountersSnapshot {
            accepted: get(&self.accepted),
            refused: get(&self.refused),
            reset: get(&self.reset),
            blackholed: get(&self.blackholed),
            cut: get(&self.cut),
            upstream_errors: get(&self.upstream_errors),
            active: get(&self.active),
            bytes_up: get(&self.bytes_up),
            bytes_down: get(&self.bytes_down),
            bytes_discarded: get(&self.bytes_discarded),
            spared: get(&self.spared),
        }
    }
}

/// Counts a connection as active for as long as it lives (also when its task is
/// aborted).
#[derive(Debug)]
pub(crate) struct ActiveGuard<'a>(&'a Counters);

impl<'a> ActiveGuard<'a> {
    pub(crate) fn new(counters: &'a Counters) -> Self {
        Counters::bump(&counters.active);
        ActiveGuard(counters)
    }
}

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}
