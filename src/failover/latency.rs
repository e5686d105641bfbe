//! Per-region latency estimates and the timeouts derived from them.
//!
//! A fixed timeout is right only for the latency it was chosen for. During the 2023
//! incident the network was often *slow* rather than dead: a new login over a path with
//! a few hundred milliseconds each way needs well over the 1 s a connect timeout allows,
//! and a region that is the only way to serve a request is then declared dead although
//! it answers. So every region keeps a round-trip estimate in the style of TCP's
//! retransmission timer (RFC 6298: a smoothed round trip `srtt`, its mean deviation
//! `rttvar`, `rto = srtt + 4·rttvar`), fed by
//!
//! - health probes, divided by the round trips they needed (a probe on its open
//!   connection is one round trip; one that had to log in first is about five), and
//! - successful live attempts, each counted as one round trip (a long-running query
//!   inflates the estimate, which only lengthens timeouts: never the wrong direction).
//!
//! A timeout that fires without an answer doubles a back-off factor (Karn's rule: no
//! sample from an operation that did not answer), up to 2⁶; the next sample resets it.
//! Without any slow answer as evidence, back-off grows the configured value at most
//! four-fold: a black hole must not earn ever longer waits (a connect stuck in one holds
//! a pool slot until it times out). So a region that turns slow earns longer timeouts
//! within a couple of tries, and one that recovers earns its short timeouts back with its
//! next answers.
//!
//! Timeouts are then `round trips needed × rto × back-off`, never below the configured
//! value (the configured timeouts are the floor used at normal latency) and never above
//! the ceiling given (the call's remaining budget, or the probe's cap).

use std::sync::Mutex;
use std::time::Duration;

/// Round trips a new connection needs before its first query: TCP handshake, PRELOGIN,
/// LOGIN7 (two for a gateway redirect are covered by the margin of `rto`), and one for
/// the query itself.
pub const CONNECT_ROUND_TRIPS: u32 = 4;

/// Round trips an attempt may need: a fresh connection ([`CONNECT_ROUND_TRIPS`]) plus the
/// request itself.
pub const ATTEMPT_ROUND_TRIPS: u32 = CONNECT_ROUND_TRIPS + 1;

/// The largest back-off shift (×64).
const MAX_BACKOFF: u32 = 6;

/// The largest back-off shift applied to the configured floor without evidence (×4).
const MAX_FLOOR_BACKOFF: u32 = 2;

/// The longest round trip a sample may claim; larger samples are clamped (an hour-long
/// query must not make every later timeout an hour).
const MAX_SAMPLE: Duration = Duration::from_secs(60);

#[derive(Debug, Default, Clone, Copy)]
struct State {
    /// Smoothed round trip, nanoseconds; `None` before the first sample.
    srtt: Option<u64>,
    /// Mean deviation, nanoseconds.
    rttvar: u64,
    /// Timeouts in a row since the last sample.
    backoff: u32,
    /// When the last sample arrived.
    last_answer: Option<tokio::time::Instant>,
}

/// A region's round-trip estimate. See the [module docs](self).
#[derive(Debug, Default)]
pub struct LatencyEstimator {
    state: Mutex<State>,
}

/// A point-in-time view of a [`LatencyEstimator`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencySnapshot {
    /// Smoothed round trip, if any sample arrived.
    pub srtt: Option<Duration>,
    /// `srtt + 4·rttvar`, before back-off.
    pub rto: Option<Duration>,
    /// Timeouts in a row since the last answer (each doubles derived timeouts, up to ×64).
    pub backoff: u32,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.min(MAX_SAMPLE).as_nanos()).unwrap_or(u64::MAX)
}

impl LatencyEstimator {
    /// An estimator with no samples (derived timeouts are the configured floors).
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that an operation needing `round_trips` round trips answered after
    /// `elapsed`, now; resets the back-off.
    pub fn sample(&self, elapsed: Duration, round_trips: u32) {
        self.sample_at(elapsed, round_trips, tokio::time::Instant::now());
    }

    /// [`sample`](Self::sample) for an answer that arrived at `at` (saves a clock read
    /// when the caller has one).
    pub fn sample_at(&self, elapsed: Duration, round_trips: u32, at: tokio::time::Instant) {
        let rtt = nanos(elapsed) / u64::from(round_trips.max(1));
        let mut s = self.lock();
        s.backoff = 0;
        s.last_answer = Some(s.last_answer.map_or(at, |t| t.max(at)));
        match s.srtt {
            None => {
                s.srtt = Some(rtt);
                s.rttvar = rtt / 2;
            }
            Some(srtt) => {
                // RFC 6298: rttvar ← ¾·rttvar + ¼·|srtt − r|; srtt ← ⅞·srtt + ⅛·r.
                let err = srtt.abs_diff(rtt);
                s.rttvar = s.rttvar - s.rttvar / 4 + err / 4;
                s.srtt = Some(srtt - srtt / 8 + rtt / 8);
            }
        }
    }

    /// Records that an operation timed out without an answer: derived timeouts double
    /// (up to ×64) until the next sample.
    pub fn timed_out(&self) {
        let mut s = self.lock();
        s.backoff = (s.backoff + 1).min(MAX_BACKOFF);
    }

    /// Whether an answer (a sample) arrived at or after `since`.
    pub fn answered_since(&self, since: tokio::time::Instant) -> bool {
        self.lock().last_answer.is_some_and(|t| t >= since)
    }

    /// The estimate now.
    pub fn snapshot(&self) -> LatencySnapshot {
        let s = *self.lock();
        LatencySnapshot {
            srtt: s.srtt.map(Duration::from_nanos),
            rto: s
                .srtt
                .map(|srtt| Duration::from_nanos(srtt.saturating_add(s.rttvar.saturating_mul(4)))),
            backoff: s.backoff,
        }
    }

    /// The timeout for an operation that has somewhere better to go (an attempt with
    /// another region after it, a health probe): `round_trips × rto × 2^backoff`, at least
    /// `floor`, at most `ceiling` — the configured floor itself never grows without a
    /// slow answer as evidence. Backing off on timeouts alone is right when the same path
    /// must be tried again (a connect), not when it delays finding out a region is gone.
    pub fn timeout_on_evidence(
        &self,
        round_trips: u32,
        floor: Duration,
        ceiling: Duration,
    ) -> Duration {
        let snap = self.snapshot();
        let estimate = snap.rto.map_or(Duration::ZERO, |rto| {
            rto.saturating_mul(round_trips)
                .saturating_mul(1 << snap.backoff)
        });
        estimate
            .max(floor)
            .min(ceiling.max(Duration::from_millis(1)))
    }

    /// The timeout for an operation needing `round_trips` round trips: the larger of
    /// `round_trips × rto × 2^backoff` (evidence: the region answered that slowly) and
    /// `floor × 2^min(backoff, 2)` (no evidence: timeouts alone grow the configured value
    /// at most four-fold, so a black hole does not earn ever longer waits), at most
    /// `ceiling`.
    pub fn timeout(&self, round_trips: u32, floor: Duration, ceiling: Duration) -> Duration {
        let snap = self.snapshot();
        let estimate = snap.rto.map_or(Duration::ZERO, |rto| {
            rto.saturating_mul(round_trips)
                .saturating_mul(1 << snap.backoff)
        });
        let backed_off = floor.saturating_mul(1 << snap.backoff.min(MAX_FLOOR_BACKOFF));
        estimate
            .max(backed_off)
            .min(ceiling.max(Duration::from_millis(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn answered_since_is_the_last_sample() {
        let e = LatencyEstimator::new();
        let t0 = tokio::time::Instant::now();
        assert!(!e.answered_since(t0), "no answer yet");
        e.sample_at(MS, 1, t0 + 10 * MS);
        assert!(e.answered_since(t0));
        assert!(e.answered_since(t0 + 10 * MS));
        assert!(!e.answered_since(t0 + 11 * MS));
        // An older answer reported late does not move it back.
        e.sample_at(MS, 1, t0 + 5 * MS);
        assert!(e.answered_since(t0 + 10 * MS));
        // A timeout is not an answer.
        e.timed_out();
        assert!(!e.answered_since(t0 + 11 * MS));
    }

    #[test]
    fn no_sample_means_the_floor() {
        let e = LatencyEstimator::new();
        assert_eq!(e.snapshot().rto, None);
        assert_eq!(e.timeout(5, 2 * MS * 1000, 5 * MS * 1000), 2 * MS * 1000);
    }

    #[test]
    fn grows_with_latency_and_shrinks_back() {
        let e = LatencyEstimator::new();
        for _ in 0..20 {
            e.sample(MS, 1);
        }
        let fast = e.timeout(5, 100 * MS, Duration::from_secs(30));
        assert_eq!(fast, 100 * MS, "1 ms round trips stay at the floor");
        for _ in 0..20 {
            e.sample(600 * MS, 1);
        }
        let slow = e.timeout(5, 100 * MS, Duration::from_secs(30));
        assert!(slow >= 5 * 600 * MS, "5 round trips of 600 ms: {slow:?}");
        for _ in 0..60 {
            e.sample(MS, 1);
        }
        let back = e.timeout(5, 100 * MS, Duration::from_secs(30));
        assert_eq!(back, 100 * MS, "recovered: {back:?}");
    }

    #[test]
    fn never_exceeds_the_ceiling() {
        let e = LatencyEstimator::new();
        e.sample(Duration::from_secs(3600), 1);
        for _ in 0..10 {
            e.timed_out();
        }
        assert_eq!(e.snapshot().backoff, MAX_BACKOFF);
        assert_eq!(e.timeout(5, MS, 700 * MS), 700 * MS);
        assert_eq!(
            e.timeout(u32::MAX, Duration::MAX, Duration::MAX),
            Duration::MAX
        );
    }

    #[test]
    fn timeouts_back_off_until_an_answer() {
        let e = LatencyEstimator::new();
        let floor = Duration::from_secs(1);
        let cap = Duration::from_secs(30);
        assert_eq!(e.timeout(4, floor, cap), floor);
        e.timed_out();
        assert_eq!(e.timeout(4, floor, cap), 2 * floor);
        e.timed_out();
        assert_eq!(e.timeout(4, floor, cap), 4 * floor);
        e.timed_out();
        assert_eq!(
            e.timeout(4, floor, cap),
            4 * floor,
            "timeouts alone grow the floor at most four-fold"
        );
        e.sample(10 * MS, 1);
        assert_eq!(
            e.timeout(4, floor, cap),
            floor,
            "an answer resets the back-off"
        );
    }

    #[test]
    fn timeouts_alone_never_lengthen_an_operation_with_an_alternative() {
        let e = LatencyEstimator::new();
        e.sample(MS, 1);
        let floor = Duration::from_secs(1);
        let cap = Duration::from_secs(30);
        for _ in 0..5 {
            e.timed_out();
        }
        assert_eq!(e.timeout_on_evidence(5, floor, cap), floor);
        assert_eq!(e.timeout(5, floor, cap), 4 * floor, "connects do back off");
        for _ in 0..20 {
            e.sample(600 * MS, 1);
        }
        assert!(e.timeout_on_evidence(5, floor, cap) >= 5 * 600 * MS);
        assert_eq!(e.timeout_on_evidence(5, floor, 700 * MS), 700 * MS);
    }

    #[test]
    fn probes_are_divided_by_their_round_trips() {
        let e = LatencyEstimator::new();
        e.sample(Duration::from_millis(2500), 5);
        assert_eq!(e.snapshot().srtt, Some(500 * MS));
    }
}
