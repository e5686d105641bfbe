//! The retry budget: a cap on how much *extra* load retries may add.
//!
//! # Why budgets and not just max attempts?
//!
//! `max_attempts = 3` lets a fleet triple its load on a database that is already failing:
//! exactly the retry storm that keeps a struggling primary down. A budget (as in Finagle
//! and Envoy) instead allows retries in proportion to recent traffic: every call deposits,
//! every retry withdraws, and a retry is allowed only while
//!
//! ```text
//! retries in the window < min_per_second × window + ratio × calls in the window
//! ```
//!
//! So with the defaults (ratio 0.2, floor 10/s, 10 s window) retries add at most ~20 % load
//! on top of a small floor that keeps low-traffic services able to retry at all. When the
//! budget is spent, the original error is returned at once and the event is observable
//! ([`RetryBudget::snapshot`] counts refusals; the retry layer emits
//! [`Event::RetryBudgetExhausted`](crate::observe::Event::RetryBudgetExhausted)).
//!
//! The budget is a cloneable handle: share one between the retry layer and anything else
//! that adds attempts (failover to another region, hedged requests).
//!
//! tower's `TpsBudget` does the same job but reads `std::time::Instant`, so its window
//! cannot be driven by a paused tokio clock; this one runs on tokio's clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::error::ConfigError;

const BUCKETS: usize = 10;

/// The shortest window a [`RetryBudget`] accepts: 100 ms.
pub const MIN_WINDOW: Duration = Duration::from_millis(100);

/// The longest window a [`RetryBudget`] accepts: 1 h.
pub const MAX_WINDOW: Duration = Duration::from_secs(3600);

/// The largest `min_per_second` a [`RetryBudget`] accepts: 100 000 retries per second,
/// far above any real floor (the default is 10); a larger one would be no budget at all.
pub const MAX_MIN_PER_SECOND: f64 = 100_000.0;

/// The largest `ratio` a [`RetryBudget`] accepts: 1000 retries per call.
pub const MAX_RATIO: f64 = 1000.0;

/// A shared retry budget. Cloning shares the same balance.
#[derive(Clone)]
pub struct RetryBudget {
    shared: Arc<Shared>,
}

struct Shared {
    window: Duration,
    bucket_width: Duration,
    min_per_second: f64,
    ratio: f64,
    state: Mutex<State>,
}

#[derive(Default, Clone, Copy)]
struct Bucket {
    deposits: u64,
    withdrawals: u64,
}

struct State {
    buckets: [Bucket; BUCKETS],
    current: usize,
    current_start: Instant,
    refused: u64,
}

/// What the budget holds right now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetSnapshot {
    /// Calls deposited within the window.
    pub deposits: u64,
    /// Retries withdrawn within the window.
    pub withdrawals: u64,
    /// Retries that may still be withdrawn now.
    pub available: u64,
    /// Retries refused since the budget was created.
    pub refused_total: u64,
}

impl std::fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryBudget")
            .field("window", &self.shared.window)
            .field("min_per_second", &self.shared.min_per_second)
            .field("ratio", &self.shared.ratio)
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

impl Default for RetryBudget {
    /// 10 s window, 10 retries per second floor, 20 % of calls.
    fn default() -> Self {
        RetryBudget::new(Duration::from_secs(10), 10.0, 0.2).expect("the defaults are valid")
    }
}

impl RetryBudget {
    /// A budget over `window` that allows `min_per_second` retries per second plus `ratio`
    /// retries per call. Rejects a window under 100 ms or over 1 h
    /// ([`MAX_WINDOW`]), a floor that is not a finite number in
    /// `0.0..=`[`MAX_MIN_PER_SECOND`] (a larger floor is no budget at all), and a ratio
    /// that is not a finite number in `0.0..=`[`MAX_RATIO`].
    pub fn new(window: Duration, min_per_second: f64, ratio: f64) -> Result<Self, ConfigError> {
        if window < MIN_WINDOW || window > MAX_WINDOW {
            return Err(ConfigError::new(
                "retry_budget.window",
                window,
                "must be between 100ms and 1h",
            ));
        }
        if !min_per_second.is_finite() || !(0.0..=MAX_MIN_PER_SECOND).contains(&min_per_second) {
            return Err(ConfigError::new(
                "retry_budget.min_per_second",
                min_per_second,
                "must be a finite number between 0 and 100000",
            ));
        }
        if !ratio.is_finite() || !(0.0..=MAX_RATIO).contains(&ratio) {
            return Err(ConfigError::new(
                "retry_budget.ratio",
                ratio,
                "must be between 0.0 and 1000.0",
            ));
        }
        Ok(RetryBudget {
            shared: Arc::new(Shared {
                window,
                bucket_width: window / BUCKETS as u32,
                min_per_second,
                ratio,
                state: Mutex::new(State {
                    buckets: [Bucket::default(); BUCKETS],
                    current: 0,
                    current_start: Instant::now(),
                    refused: 0,
                }),
            }),
        })
    }

    fn with_state<R>(&self, f: impl FnOnce(&mut State, &Shared) -> R) -> R {
        let mut state = self
            .shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.rotate(Instant::now(), self.shared.bucket_width);
        f(&mut state, &self.shared)
    }

    /// The window, the per-second floor and the ratio this budget was built with.
    pub fn settings(&self) -> (Duration, f64, f64) {
        (
            self.shared.window,
            self.shared.min_per_second,
            self.shared.ratio,
        )
    }

    /// Records one call (first attempts deposit; retries do not).
    pub fn deposit(&self) {
        self.with_state(|s, _| s.buckets[s.current].deposits += 1);
    }

    /// Takes one retry from the budget; `false` (and a refusal counted) when none is left.
    pub fn try_withdraw(&self) -> bool {
        self.with_state(|s, shared| {
            if s.available(shared) >= 1 {
                s.buckets[s.current].withdrawals += 1;
                true
            } else {
                s.refused += 1;
                false
            }
        })
    }

    /// The budget's current figures.
    pub fn snapshot(&self) -> BudgetSnapshot {
        self.with_state(|s, shared| {
            let (deposits, withdrawals) = s.totals();
            BudgetSnapshot {
                deposits,
                withdrawals,
                available: s.available(shared),
                refused_total: s.refused,
            }
        })
    }
}

impl State {
    fn rotate(&mut self, now: Instant, width: Duration) {
        let elapsed = now.saturating_duration_since(self.current_start);
        if elapsed < width {
            return;
        }
        let steps = elapsed.as_nanos() / width.as_nanos().max(1);
        for _ in 0..steps.min(BUCKETS as u128) {
            self.current = (self.current + 1) % BUCKETS;
            self.buckets[self.current] = Bucket::default();
        }
        // `steps × width ≤ elapsed`, so the new start is never after `now`.
        let advance = width.saturating_mul(u32::try_from(steps).unwrap_or(u32::MAX));
        self.current_start = crate::deadline::instant_after(self.current_start, advance);
    }

    fn totals(&self) -> (u64, u64) {
        self.buckets
            .iter()
            .fold((0, 0), |(d, w), b| (d + b.deposits, w + b.withdrawals))
    }

    fn available(&self, shared: &Shared) -> u64 {
        let (deposits, withdrawals) = self.totals();
        let allowed =
            shared.min_per_second * shared.window.as_secs_f64() + shared.ratio * deposits as f64;
        (allowed.floor() as u64).saturating_sub(withdrawals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_floor_allows_retries_without_traffic() {
        let b = RetryBudget::new(Duration::from_secs(1), 3.0, 0.0).unwrap();
        assert!(b.try_withdraw() && b.try_withdraw() && b.try_withdraw());
        assert!(!b.try_withdraw());
        assert_eq!(b.snapshot().refused_total, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_are_a_fraction_of_calls() {
        let b = RetryBudget::new(Duration::from_secs(10), 0.0, 0.2).unwrap();
        for _ in 0..50 {
            b.deposit();
        }
        let granted = (0..100).filter(|_| b.try_withdraw()).count();
        assert_eq!(granted, 10);
        assert_eq!(b.snapshot().available, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_slides() {
        let b = RetryBudget::new(Duration::from_secs(1), 2.0, 0.0).unwrap();
        assert!(b.try_withdraw() && b.try_withdraw());
        assert!(!b.try_withdraw());
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(!b.try_withdraw(), "withdrawals are still inside the window");
        tokio::time::advance(Duration::from_millis(600)).await;
        assert!(b.try_withdraw(), "the old withdrawals left the window");
    }

    #[test]
    fn invalid_budgets_name_the_field() {
        let e = RetryBudget::new(Duration::from_millis(1), 1.0, 0.1).unwrap_err();
        assert_eq!(e.field(), "retry_budget.window");
        let e = RetryBudget::new(Duration::from_secs(1), f64::NAN, 0.1).unwrap_err();
        assert_eq!(e.field(), "retry_budget.min_per_second");
        let e = RetryBudget::new(Duration::from_secs(1), 1.0, -0.5).unwrap_err();
        assert_eq!(e.field(), "retry_budget.ratio");
        assert!(e.to_string().contains("-0.5"));
        let e = RetryBudget::new(Duration::from_secs(1), 1e308, 0.1).unwrap_err();
        assert_eq!(e.field(), "retry_budget.min_per_second");
        let e = RetryBudget::new(Duration::from_secs(1), 1.0, f64::INFINITY).unwrap_err();
        assert_eq!(e.field(), "retry_budget.ratio");
        RetryBudget::new(MAX_WINDOW, MAX_MIN_PER_SECOND, MAX_RATIO).unwrap();
    }
}
