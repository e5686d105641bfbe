//! Which requests with nowhere else to go wait on a pool for a connection, and until
//! when. A connect whose latency-aware timeout fires while the server is answering it
//! (slowly: a latency spike) is not abandoned when such a request waits: starting over
//! would throw away the round trips already made, and the request has no better place to
//! go. The connect gets one more timeout at a time while the server keeps answering, up
//! to the latest of those requests' deadlines (see the manager's connect).

use std::sync::{Arc, Mutex};

use tokio::time::Instant;

/// The deadlines of the waiting requests that have nowhere else to go.
#[derive(Debug, Default)]
pub(crate) struct Waiting {
    deadlines: Mutex<Vec<Instant>>,
}

impl Waiting {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Instant>> {
        self.deadlines.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A request waits until `deadline`; it stops waiting when the guard drops.
    pub(crate) fn enter(self: &Arc<Self>, deadline: Instant) -> WaitingGuard {
        self.lock().push(deadline);
        WaitingGuard {
            waiting: self.clone(),
            deadline,
        }
    }

    /// The latest deadline of the requests waiting now, if any waits.
    pub(crate) fn latest(&self) -> Option<Instant> {
        self.lock().iter().max().copied()
    }
}

/// A waiting request's registration (see [`Waiting::enter`]).
#[derive(Debug)]
pub(crate) struct WaitingGuard {
    waiting: Arc<Waiting>,
    deadline: Instant,
}

impl Drop for WaitingGuard {
    fn drop(&mut self) {
        let mut deadlines = self.waiting.lock();
        if let Some(at) = deadlines.iter().position(|d| *d == self.deadline) {
            deadlines.swap_remove(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_latest_deadline_of_those_still_waiting() {
        let waiting = Arc::new(Waiting::default());
        assert_eq!(waiting.latest(), None);
        let now = Instant::now();
        let early = waiting.enter(now + Duration::from_secs(1));
        let late = waiting.enter(now + Duration::from_secs(3));
        let same = waiting.enter(now + Duration::from_secs(1));
        assert_eq!(waiting.latest(), Some(now + Duration::from_secs(3)));
        drop(late);
        assert_eq!(waiting.latest(), Some(now + Duration::from_secs(1)));
        drop(early);
        assert_eq!(waiting.latest(), Some(now + Duration::from_secs(1)));
        drop(same);
        assert_eq!(waiting.latest(), None);
    }
}
