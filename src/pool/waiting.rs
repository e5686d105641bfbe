//! Which requests with nowhere else to go wait on a pool for a connection, and until
//! when.
//!
//! - A connect whose latency-aware timeout fires while the server is answering it
//!   (slowly: a latency spike) is not abandoned when such a request waits: starting over
//!   would throw away the round trips already made, and the request has no better place
//!   to go. The connect gets one more timeout at a time while the server keeps answering,
//!   up to the latest of those requests' deadlines (see the manager's connect).
//! - While the region is down, a place in the line gives no head start: nobody is being
//!   served, and whoever is still waiting when the region comes back is served at once.
//!   So when the router's bound on requests waiting there is reached, the waiter with the
//!   **earliest** deadline — the least chance to see the region back — gives way to a
//!   newcomer with a later one ([`Waiting::give_way`]), instead of the newcomer being
//!   turned away. The bound holds either way; what changes is who keeps a place.
//! - The same holds for the retry layer's calls that sleep before another try after
//!   being turned away (no region writable, every region full): they wait for a region
//!   to come back or make room, so a full line of them makes room for a newcomer due
//!   later ([`Waiting::enter_bounded`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::time::Instant;

/// A waiting request's key: its deadline, then the order it came in (unique). Ordered, so
/// the request due first and the one due last are found without a scan, however long the
/// line (the retry layer's may hold up to `retry.max_polling` calls).
type Key = (Instant, u64);

#[derive(Debug, Default)]
struct Line {
    entries: BTreeMap<Key, Arc<Notify>>,
    next: u64,
}

impl Line {
    fn push(&mut self, deadline: Instant) -> (Key, Arc<Notify>) {
        let key = (deadline, self.next);
        self.next += 1;
        let give_way = Arc::new(Notify::new());
        self.entries.insert(key, give_way.clone());
        (key, give_way)
    }

    /// Tells the entry due first, if due before `deadline`, to give way, and removes it.
    fn displace(&mut self, deadline: Instant) -> bool {
        match self.entries.first_key_value() {
            Some((&(due, _), _)) if due < deadline => {
                if let Some((_, give_way)) = self.entries.pop_first() {
                    give_way.notify_one();
                }
                true
            }
            _ => false,
        }
    }
}

/// The deadlines of the waiting requests that have nowhere else to go.
#[derive(Debug, Default)]
pub(crate) struct Waiting {
    line: Mutex<Line>,
}

impl Waiting {
    fn lock(&self) -> std::sync::MutexGuard<'_, Line> {
        self.line.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn guard(self: &Arc<Self>, (key, give_way): (Key, Arc<Notify>)) -> WaitingGuard {
        WaitingGuard {
            waiting: self.clone(),
            key,
            give_way,
        }
    }

    /// A request waits until `deadline`; it stops waiting when the guard drops.
    pub(crate) fn enter(self: &Arc<Self>, deadline: Instant) -> WaitingGuard {
        let entry = self.lock().push(deadline);
        self.guard(entry)
    }

    /// A place for a request due at `deadline` in a line of at most `max`: taken while
    /// fewer wait; otherwise the waiter due first gives way ([`give_way`](Self::give_way))
    /// if it is due earlier, and `None` if none is (the line and its bound as they were).
    /// One lock for the look and the push, so the bound holds however many come at once.
    /// The retry layer's line of calls polling for a region keeps this rule (see
    /// [`retry`](crate::retry)).
    pub(crate) fn enter_bounded(
        self: &Arc<Self>,
        deadline: Instant,
        max: usize,
    ) -> Option<WaitingGuard> {
        let entry = {
            let mut line = self.lock();
            if line.entries.len() >= max && !line.displace(deadline) {
                return None;
            }
            line.push(deadline)
        };
        Some(self.guard(entry))
    }

    /// How many wait now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// The latest deadline of the requests waiting now, if any waits.
    pub(crate) fn latest(&self) -> Option<Instant> {
        self.lock()
            .entries
            .last_key_value()
            .map(|(&(due, _), _)| due)
    }

    /// Whether a waiting request would give way to one due at `deadline` (one of them is
    /// due earlier).
    pub(crate) fn would_give_way(&self, deadline: Instant) -> bool {
        self.lock()
            .entries
            .first_key_value()
            .is_some_and(|(&(due, _), _)| due < deadline)
    }

    /// Tells the waiting request with the earliest deadline, if it is earlier than
    /// `deadline`, to give up its place (its checkout ends, not sent); it stops counting
    /// as waiting at once. Whether one did.
    pub(crate) fn give_way(&self, deadline: Instant) -> bool {
        self.lock().displace(deadline)
    }
}

/// A waiting request's registration (see [`Waiting::enter`]).
#[derive(Debug)]
pub(crate) struct WaitingGuard {
    waiting: Arc<Waiting>,
    key: Key,
    give_way: Arc<Notify>,
}

impl WaitingGuard {
    /// Completes when this request was told to give way to one with a later deadline
    /// (see [`Waiting::give_way`]).
    pub(crate) async fn told_to_give_way(&self) {
        self.give_way.notified().await;
    }
}

impl Drop for WaitingGuard {
    fn drop(&mut self) {
        // Gone already if it was told to give way (its key is never reused).
        self.waiting.lock().entries.remove(&self.key);
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

    #[tokio::test(start_paused = true)]
    async fn a_full_line_takes_a_later_newcomer_in_place_of_its_earliest() {
        let waiting = Arc::new(Waiting::default());
        let now = Instant::now();
        let s = Duration::from_secs(1);
        let early = waiting.enter_bounded(now + s, 2).expect("room");
        let late = waiting.enter_bounded(now + 3 * s, 2).expect("room");
        // Full, and nobody is due before the newcomer: no place, nobody told.
        assert!(waiting.enter_bounded(now + s, 2).is_none());
        assert!(
            tokio::time::timeout(Duration::ZERO, early.told_to_give_way())
                .await
                .is_err()
        );
        // A newcomer due later takes the earliest's place; the bound holds.
        let newcomer = waiting.enter_bounded(now + 2 * s, 2).expect("a place");
        tokio::time::timeout(Duration::ZERO, early.told_to_give_way())
            .await
            .expect("the earliest was told to give way");
        assert_eq!(waiting.len(), 2);
        drop(early);
        assert_eq!(waiting.len(), 2, "its place was already given");
        drop((late, newcomer));
        assert!(waiting.enter_bounded(now, 1).is_some());
    }

    #[test]
    fn the_bound_holds_when_many_come_at_once() {
        let waiting = Arc::new(Waiting::default());
        let now = Instant::now();
        let held = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for t in 0..8u64 {
                let (waiting, held) = (&waiting, &held);
                scope.spawn(move || {
                    for i in 0..200u64 {
                        let due = now + Duration::from_millis(t * 1000 + i);
                        if let Some(place) = waiting.enter_bounded(due, 5) {
                            assert!(waiting.len() <= 5);
                            held.lock().unwrap().push(place);
                        }
                    }
                });
            }
        });
        assert_eq!(waiting.len(), 5, "the bound, however many came at once");
        // The five kept are the five due last; the displaced guards drop as no-ops.
        let latest = now + Duration::from_millis(7 * 1000 + 199);
        assert_eq!(waiting.latest(), Some(latest));
        drop(held);
        assert_eq!(waiting.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_earliest_deadline_gives_way_to_a_later_one_only() {
        let waiting = Arc::new(Waiting::default());
        let now = Instant::now();
        let s = Duration::from_secs(1);
        let middle = waiting.enter(now + 2 * s);
        let earliest = waiting.enter(now + s);
        let latest = waiting.enter(now + 3 * s);
        // Nobody is due before `now + 1 s`: nobody gives way to it.
        assert!(!waiting.would_give_way(now + s));
        assert!(!waiting.give_way(now + s));
        assert!(waiting.would_give_way(now + 4 * s));
        assert!(waiting.give_way(now + 4 * s));
        // The earliest was told (a stored permit: it completes at once), the others not.
        tokio::time::timeout(Duration::ZERO, earliest.told_to_give_way())
            .await
            .expect("the earliest waiter gives way");
        for other in [&middle, &latest] {
            assert!(
                tokio::time::timeout(Duration::ZERO, other.told_to_give_way())
                    .await
                    .is_err()
            );
        }
        // It no longer counts as waiting: the next to give way is the middle one.
        assert!(!waiting.would_give_way(now + 2 * s));
        assert!(waiting.give_way(now + 4 * s));
        tokio::time::timeout(Duration::ZERO, middle.told_to_give_way())
            .await
            .expect("then the next earliest");
        drop(earliest);
        assert_eq!(waiting.latest(), Some(now + 3 * s));
    }
}
