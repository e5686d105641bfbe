//! Which pooled connections are suspect: those last seen working before their region
//! left a request unanswered (an attempt timed out after it was sent, a probe failed, a
//! hedge on another region answered first), as long as nothing sent since has been
//! answered. A write that cannot be re-sent proves a suspect connection with one round
//! trip before it is sent: into a black hole it would end with an unknown outcome. A slow
//! region is not a black hole — its answers clear the suspicion — so it pays for no
//! proofs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// A region's suspicion mark, shared by its pool's clones.
#[derive(Debug)]
pub(crate) struct Suspicion {
    /// When a request on the region last went unanswered, as nanoseconds after `epoch`
    /// plus one (0: no suspicion).
    mark: AtomicU64,
    epoch: Instant,
}

impl Suspicion {
    pub(crate) fn new() -> Self {
        Suspicion {
            mark: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// A request on the region went unanswered now: connections last seen working
    /// before now become suspect.
    pub(crate) fn unanswered(&self) {
        let nanos = Instant::now()
            .saturating_duration_since(self.epoch)
            .as_nanos();
        let mark = u64::try_from(nanos).unwrap_or(u64::MAX - 1) + 1;
        self.mark.fetch_max(mark, Ordering::Relaxed);
    }

    /// The mark now (0: none): read before a request is sent, and handed to
    /// [`is_suspect`](Self::is_suspect) and [`answered_after`](Self::answered_after).
    pub(crate) fn mark(&self) -> u64 {
        self.mark.load(Ordering::Relaxed)
    }

    /// Whether a connection last seen working at `last_used` is suspect under `mark`.
    pub(crate) fn is_suspect(&self, last_used: Instant, mark: u64) -> bool {
        mark != 0 && last_used <= self.epoch + Duration::from_nanos(mark - 1)
    }

    /// A request sent under `mark` was answered: the path works, the suspicion ends —
    /// unless a newer unanswered request moved the mark since.
    pub(crate) fn answered_after(&self, mark: u64) {
        if mark != 0 {
            let _ = self
                .mark
                .compare_exchange(mark, 0, Ordering::Relaxed, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test(start_paused = true)]
    async fn connections_used_before_an_unanswered_request_are_suspect_until_an_answer() {
        let s = Suspicion::new();
        let before = Instant::now();
        tokio::time::advance(10 * MS).await;
        assert_eq!(s.mark(), 0);
        assert!(!s.is_suspect(before, s.mark()), "no suspicion yet");
        s.unanswered();
        let mark = s.mark();
        assert!(s.is_suspect(before, mark));
        tokio::time::advance(10 * MS).await;
        assert!(
            !s.is_suspect(Instant::now(), mark),
            "a connection that worked after the mark is not suspect"
        );
        // An answer to a request sent under the mark ends the suspicion.
        s.answered_after(mark);
        assert_eq!(s.mark(), 0);
        assert!(!s.is_suspect(before, s.mark()));
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_under_an_older_mark_leaves_a_newer_one() {
        let s = Suspicion::new();
        let before = Instant::now();
        tokio::time::advance(MS).await;
        s.unanswered();
        let old = s.mark();
        tokio::time::advance(MS).await;
        s.unanswered();
        let new = s.mark();
        assert!(new > old);
        s.answered_after(old);
        assert_eq!(s.mark(), new, "the newer silence still stands");
        assert!(s.is_suspect(before, s.mark()));
        s.answered_after(0);
        assert_eq!(s.mark(), new, "no mark, nothing to clear");
    }
}
