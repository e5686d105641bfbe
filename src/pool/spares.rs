//! Connects kept running past their timeout ("spares").
//!
//! When a region that was answering a moment ago turns slow, the connects started on its
//! fast estimate time out before the server's first answer arrives: at 1 s each way a
//! login's PRELOGIN answer is 2 s away, past a 1 s connect timeout. Thrown away, each such
//! connect is started over with a longer timeout and all its waiting is lost; requests
//! that have nowhere else to go wait those extra seconds and miss their deadlines.
//!
//! So such a connect fails on time as before — it is counted, it backs the latency
//! estimate off, its waiters see the failure — but when its TCP connection is up and had
//! no answer yet, the region answered something else since that timeout before the
//! connect began (or later), and a request with nowhere else to go waits, the connect
//! itself runs on in the background as a
//! *spare*: for the backed-off timeout a fresh connect would get (counted from its start),
//! then for as long as the server keeps answering it within each such window, at most
//! the connect ceiling. A spare that opens its connection adds it to the pool, which hands
//! it to a waiting checkout; when the pool has no room (its places are taken by connects
//! still in progress, started for the same waiting checkouts), the connection is handed to
//! the first of those connects to ask, which returns it instead of waiting on for its own
//! (closed) — or, when none asks within [`SPARE_SHELF_LIFE`], closed. A spare that fails
//! is dropped quietly: its failure was already counted when its timeout fired, and a late
//! failure of a connect started before the region's last answers says nothing about the
//! region now (counting it would grade a region that has come back as down again).
//!
//! At most as many spares run (or wait to be taken) at once as the pool may hold
//! connections.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::manager::Connection;
use super::Shared;

/// How long a spare's connection that the pool had no room for waits for a connect in
/// progress to take it before it is closed.
pub(crate) const SPARE_SHELF_LIFE: Duration = Duration::from_secs(2);

/// The spares of one pool's manager (shared by the manager's clones).
#[derive(Default)]
pub(crate) struct Spares {
    /// Most spares running at once (the pool's size; 0 until the pool is made).
    cap: AtomicUsize,
    /// Spares running, plus their connections waiting in `ready`.
    running: AtomicUsize,
    /// Where a spare's connection goes. Weak: the pool owns the manager that owns this.
    pool: OnceLock<Weak<Shared>>,
    /// Spares' connections the pool had no room for, with when each was left here.
    ready: Mutex<Vec<(Instant, Box<Connection>)>>,
    /// Woken when a connection is left in `ready`.
    offered: Notify,
}

impl std::fmt::Debug for Spares {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spares")
            .field("cap", &self.cap.load(Ordering::Relaxed))
            .field("running", &self.running.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Spares {
    /// Spares add their connections to `pool`, at most `cap` running at once.
    pub(super) fn attach(&self, pool: Weak<Shared>, cap: usize) {
        // A manager belongs to one pool; a second pool made over a clone of it (which
        // shares these spares) keeps the first pool's.
        if self.pool.set(pool).is_ok() {
            self.cap.store(cap, Ordering::Relaxed);
        }
    }

    /// Reserves a place for one more spare, if the cap allows; released when the place
    /// drops.
    pub(crate) fn reserve(self: &Arc<Self>) -> Option<SparePlace> {
        let cap = self.cap.load(Ordering::Relaxed);
        self.running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |running| {
                (running < cap).then_some(running + 1)
            })
            .ok()
            .map(|_| SparePlace {
                spares: self.clone(),
                kept: false,
            })
    }

    fn ready(&self) -> std::sync::MutexGuard<'_, Vec<(Instant, Box<Connection>)>> {
        self.ready.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The freshest spare connection left in `ready` within [`SPARE_SHELF_LIFE`], if any
    /// (older ones are closed).
    fn take(&self) -> Option<Box<Connection>> {
        let (conn, stale) = {
            let mut ready = self.ready();
            if ready.is_empty() {
                return None;
            }
            let stale = extract_stale(&mut ready, Instant::now());
            (ready.pop().map(|(_, conn)| conn), stale)
        };
        self.release(stale.len() + usize::from(conn.is_some()));
        conn
    }

    /// Closes the connections left in `ready` for [`SPARE_SHELF_LIFE`] or longer.
    fn expire(&self) {
        let stale = extract_stale(&mut self.ready(), Instant::now());
        self.release(stale.len());
    }

    fn release(&self, n: usize) {
        if n > 0 {
            self.running.fetch_sub(n, Ordering::AcqRel);
        }
    }

    /// Waits for a spare's connection that the pool had no room for (a connect in
    /// progress returns it instead of its own).
    pub(crate) async fn offered(&self) -> Box<Connection> {
        loop {
            let notified = self.offered.notified();
            tokio::pin!(notified);
            // Registered before looking, so an offer between the look and the wait wakes it.
            notified.as_mut().enable();
            if let Some(conn) = self.take() {
                return conn;
            }
            notified.await;
        }
    }

    /// Spares running now.
    #[cfg(test)]
    fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }
}

/// One running spare's place under the cap; released when dropped, unless its
/// connection keeps it (waiting in `ready`).
#[derive(Debug)]
pub(crate) struct SparePlace {
    spares: Arc<Spares>,
    kept: bool,
}

impl SparePlace {
    /// Adds the spare's connection to the pool, which hands it to a waiting checkout. If
    /// the pool has no room, leaves it for a connect in progress to take, and closes it
    /// after [`SPARE_SHELF_LIFE`] if none does.
    /// `connected` is woken once the connection is in the pool or on the shelf.
    pub(crate) async fn deliver(self, conn: Box<Connection>, connected: &Notify) {
        let Some(shared) = self.spares.pool.get().and_then(Weak::upgrade) else {
            return;
        };
        let Err(bb8::AddError::NoCapacity(conn)) = shared.inner.add(conn) else {
            // Added (bb8 hands it to a waiting checkout), or broken (closed).
            connected.notify_waiters();
            return;
        };
        drop(shared);
        let mut place = self;
        // The place stays held while the connection waits in `ready`.
        place.kept = true;
        let spares = place.spares.clone();
        drop(place);
        spares.ready().push((Instant::now(), conn));
        spares.offered.notify_waiters();
        connected.notify_waiters();
        tokio::time::sleep(SPARE_SHELF_LIFE).await;
        spares.expire();
    }
}

impl Drop for SparePlace {
    fn drop(&mut self) {
        if !self.kept {
            self.spares.release(1);
        }
    }
}

/// Removes and returns the entries left at or before `now - SPARE_SHELF_LIFE` (the oldest
/// first: they are pushed in order).
fn extract_stale<T>(ready: &mut Vec<(Instant, T)>, now: Instant) -> Vec<(Instant, T)> {
    let fresh_from = ready
        .iter()
        .position(|(at, _)| now.saturating_duration_since(*at) < SPARE_SHELF_LIFE)
        .unwrap_or(ready.len());
    ready.drain(..fresh_from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_capped_and_released() {
        let spares = Arc::new(Spares::default());
        assert!(spares.reserve().is_none(), "no pool yet: no spares");
        spares.cap.store(2, Ordering::Relaxed);
        let a = spares.reserve().expect("first place");
        let b = spares.reserve().expect("second place");
        assert!(spares.reserve().is_none(), "at the cap");
        assert_eq!(spares.running(), 2);
        drop(a);
        assert_eq!(spares.running(), 1);
        assert!(
            spares.reserve().is_some(),
            "a finished spare frees its place"
        );
        drop(b);
        assert_eq!(spares.running(), 0);
        assert!(spares.take().is_none(), "nothing offered");
    }

    #[tokio::test(start_paused = true)]
    async fn only_what_outlived_its_shelf_life_is_stale() {
        let start = Instant::now();
        let mut ready = vec![(start, 1), (start + SPARE_SHELF_LIFE / 2, 2)];
        assert!(extract_stale(&mut ready, start).is_empty());
        let stale = extract_stale(&mut ready, start + SPARE_SHELF_LIFE);
        assert_eq!(stale, vec![(start, 1)]);
        assert_eq!(ready, vec![(start + SPARE_SHELF_LIFE / 2, 2)]);
        assert_eq!(
            extract_stale(&mut ready, start + 2 * SPARE_SHELF_LIFE).len(),
            1
        );
        assert!(ready.is_empty());
    }
}
