//! Sliding windows of recent call results: the breaker's view of health.
//!
//! Two kinds, as in resilience4j: the last *N* calls ([`WindowKind::Count`]), or the calls
//! of the last *T* ([`WindowKind::Time`], kept as ten buckets of `T/10` so old results
//! expire a bucket at a time). Both keep running totals, so judging is O(1).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// Which sliding window the breaker judges by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// The last `n` calls.
    Count(u32),
    /// The calls of the last `duration`.
    Time(Duration),
}

/// Totals over the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Calls recorded.
    pub calls: u32,
    /// Of which failed.
    pub failures: u32,
    /// Of which were slow (failed or not).
    pub slow: u32,
}

impl Totals {
    fn add(&mut self, failed: bool, slow: bool) {
        self.calls += 1;
        self.failures += u32::from(failed);
        self.slow += u32::from(slow);
    }

    fn sub(&mut self, other: Totals) {
        self.calls -= other.calls;
        self.failures -= other.failures;
        self.slow -= other.slow;
    }

    /// Failed calls / calls (0 when empty).
    pub fn failure_rate(&self) -> f64 {
        ratio(self.failures, self.calls)
    }

    /// Slow calls / calls (0 when empty).
    pub fn slow_rate(&self) -> f64 {
        ratio(self.slow, self.calls)
    }
}

fn ratio(part: u32, whole: u32) -> f64 {
    if whole == 0 {
        0.0
    } else {
        f64::from(part) / f64::from(whole)
    }
}

const TIME_BUCKETS: usize = 10;

#[derive(Debug)]
pub(super) enum Window {
    Count {
        size: usize,
        ring: VecDeque<(bool, bool)>,
        totals: Totals,
    },
    Time {
        width: Duration,
        buckets: [Totals; TIME_BUCKETS],
        current: usize,
        current_start: Instant,
        totals: Totals,
    },
}

impl Window {
    pub(super) fn new(kind: WindowKind, now: Instant) -> Self {
        match kind {
            WindowKind::Count(n) => Window::Count {
                size: n as usize,
                ring: VecDeque::with_capacity(n as usize),
                totals: Totals::default(),
            },
            WindowKind::Time(d) => Window::Time {
                width: d / TIME_BUCKETS as u32,
                buckets: [Totals::default(); TIME_BUCKETS],
                current: 0,
                current_start: now,
                totals: Totals::default(),
            },
        }
    }

    pub(super) fn record(&mut self, failed: bool, slow: bool, now: Instant) {
        self.expire(now);
        match self {
            Window::Count { size, ring, totals } => {
                if ring.len() == *size {
                    if let Some((f, s)) = ring.pop_front() {
                        let mut old = Totals::default();
                        old.add(f, s);
                        totals.sub(old);
                    }
                }
                ring.push_back((failed, slow));
                totals.add(failed, slow);
            }
            Window::Time {
                buckets,
                current,
                totals,
                ..
            } => {
                buckets[*current].add(failed, slow);
                totals.add(failed, slow);
            }
        }
    }

    pub(super) fn totals(&mut self, now: Instant) -> Totals {
        self.expire(now);
        match self {
            Window::Count { totals, .. } | Window::Time { totals, .. } => *totals,
        }
    }

    pub(super) fn clear(&mut self, now: Instant) {
        match self {
            Window::Count { ring, totals, .. } => {
                ring.clear();
                *totals = Totals::default();
            }
            Window::Time {
                buckets,
                current_start,
                totals,
                ..
            } => {
                *buckets = [Totals::default(); TIME_BUCKETS];
                *current_start = now;
                *totals = Totals::default();
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        if let Window::Time {
            width,
            buckets,
            current,
            current_start,
            totals,
        } = self
        {
            let elapsed = now.saturating_duration_since(*current_start);
            if elapsed < *width {
                return;
            }
            let steps = elapsed.as_nanos() / width.as_nanos().max(1);
            for _ in 0..steps.min(TIME_BUCKETS as u128) {
                *current = (*current + 1) % TIME_BUCKETS;
                totals.sub(buckets[*current]);
                buckets[*current] = Totals::default();
            }
            // `steps × width ≤ elapsed`, so the new start is never after `now`.
            let advance = width.saturating_mul(u32::try_from(steps).unwrap_or(u32::MAX));
            *current_start = crate::deadline::instant_after(*current_start, advance);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_window_keeps_the_last_n() {
        let now = Instant::now();
        let mut w = Window::new(WindowKind::Count(3), now);
        w.record(true, false, now);
        w.record(true, true, now);
        w.record(false, false, now);
        assert_eq!(
            w.totals(now),
            Totals {
                calls: 3,
                failures: 2,
                slow: 1
            }
        );
        w.record(false, false, now);
        assert_eq!(
            w.totals(now),
            Totals {
                calls: 3,
                failures: 1,
                slow: 1
            }
        );
        w.record(false, false, now);
        assert_eq!(
            w.totals(now),
            Totals {
                calls: 3,
                failures: 0,
                slow: 0
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn time_window_forgets_old_buckets() {
        let start = Instant::now();
        let mut w = Window::new(WindowKind::Time(Duration::from_secs(10)), start);
        w.record(true, false, start);
        w.record(false, false, start + Duration::from_secs(5));
        assert_eq!(w.totals(start + Duration::from_secs(9)).calls, 2);
        assert_eq!(
            w.totals(start + Duration::from_secs(11)),
            Totals {
                calls: 1,
                failures: 0,
                slow: 0
            }
        );
        assert_eq!(w.totals(start + Duration::from_secs(60)), Totals::default());
    }
}
