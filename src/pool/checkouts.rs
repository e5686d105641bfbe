//! The pool's own checkout accounting: how many checkouts are waiting now, how many ran
//! out of time, and how often one had to keep waiting because the pool could not grow.
//!
//! bb8 counts a checkout as settled only when its own future completes. A checkout the
//! caller's budget cuts short (the attempt's timer drops it) never completes, so bb8's
//! figures would show it pending forever and never as timed out — the pool alert would
//! under-fire exactly when budgets are small. These counters settle on drop instead.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A snapshot of a pool's checkout counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckoutStats {
    /// Checkouts waiting for a connection now.
    pub pending: u64,
    /// Checkouts that ran out of time since the pool started: the pool's own timeout, the
    /// call's remaining budget, or the caller dropping the wait.
    pub timed_out: u64,
    /// Times a waiting checkout saw a new connection fail while every open connection
    /// was in use, and kept waiting for one of those: demand above what the pool has,
    /// and the pool cannot grow (a login storm, connects timing out). The router counts a
    /// region whose pool starves as degraded, so reads go where they need not queue.
    pub starved: u64,
}

/// The live counters, shared by a pool's clones.
#[derive(Debug, Default)]
pub(crate) struct CheckoutCounters {
    pending: AtomicU64,
    timed_out: AtomicU64,
    starved: AtomicU64,
}

impl CheckoutCounters {
    /// Counts a checkout as pending until the returned guard settles or is dropped.
    pub(crate) fn start(self: &Arc<Self>) -> PendingCheckout {
        self.pending.fetch_add(1, Ordering::Relaxed);
        PendingCheckout {
            counters: self.clone(),
            timed_out: true,
        }
    }

    /// A waiting checkout keeps waiting after a failed connect (see
    /// [`CheckoutStats::starved`]).
    pub(crate) fn note_starved(&self) {
        self.starved.fetch_add(1, Ordering::Relaxed);
    }

    /// [`CheckoutStats::starved`] alone, for the router's per-attempt check.
    pub(crate) fn starved(&self) -> u64 {
        self.starved.load(Ordering::Relaxed)
    }

    pub(crate) fn snapshot(&self) -> CheckoutStats {
        CheckoutStats {
            pending: self.pending.load(Ordering::Relaxed),
            timed_out: self.timed_out.load(Ordering::Relaxed),
            starved: self.starved(),
        }
    }
}

/// One checkout in progress. Dropped without [`settle`](Self::settle) (the wait was cut
/// short or ran out of time), it counts as timed out.
#[derive(Debug)]
pub(crate) struct PendingCheckout {
    counters: Arc<CheckoutCounters>,
    timed_out: bool,
}

impl PendingCheckout {
    /// The checkout ended with a connection or with a connect error: not a timeout.
    pub(crate) fn settle(mut self) {
        self.timed_out = false;
    }
}

impl Drop for PendingCheckout {
    fn drop(&mut self) {
        self.counters.pending.fetch_sub(1, Ordering::Relaxed);
        if self.timed_out {
            self.counters.timed_out.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settled_checkouts_are_not_timeouts_and_dropped_ones_are() {
        let counters = Arc::new(CheckoutCounters::default());
        let a = counters.start();
        let b = counters.start();
        assert_eq!(
            counters.snapshot(),
            CheckoutStats {
                pending: 2,
                timed_out: 0,
                starved: 0
            }
        );
        a.settle();
        drop(b);
        assert_eq!(
            counters.snapshot(),
            CheckoutStats {
                pending: 0,
                timed_out: 1,
                starved: 0
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_cut_short_by_a_timer_is_counted_once() {
        let counters = Arc::new(CheckoutCounters::default());
        let wait = {
            let counters = counters.clone();
            async move {
                let pending = counters.start();
                std::future::pending::<()>().await;
                pending.settle();
            }
        };
        let cut = tokio::time::timeout(std::time::Duration::from_millis(5), wait).await;
        assert!(cut.is_err());
        assert_eq!(
            counters.snapshot(),
            CheckoutStats {
                pending: 0,
                timed_out: 1,
                starved: 0
            }
        );
    }
}
