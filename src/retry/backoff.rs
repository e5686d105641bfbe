//! Backoff schedules: how long to wait before retry *n*.
//!
//! The envelope is `base · 2ⁿ`, capped at `cap`, in exact integer arithmetic. `backon`
//! (the maintained successor of the unmaintained `backoff` crate) was the first choice, but
//! it does not fit: its factor is an `f32` (so `10 ms · 2²` comes out as 39.999 ms, not
//! 40 ms), its jitter *adds* up to one extra delay (so a delay can exceed the cap), and it
//! has neither full, equal nor decorrelated jitter. The jitter strategies from the AWS
//! Architecture Blog ("Exponential Backoff And Jitter") are applied on the envelope here,
//! with a seedable RNG so tests are deterministic:
//!
//! | [`Jitter`]       | delay for retry *n*                              |
//! |------------------|--------------------------------------------------|
//! | `Full` (default) | uniform in `[0, envelope(n)]`                    |
//! | `Equal`          | `envelope(n)/2 + uniform[0, envelope(n)/2]`      |
//! | `Decorrelated`   | `min(cap, uniform[base, 3 · previous])`          |
//! | `None`           | `envelope(n)`                                    |
//!
//! Full jitter spreads a fleet's retries the most and is the default; decorrelated jitter
//! grows more smoothly; `None` is for tests and for callers that add their own spread.

use std::time::Duration;

use crate::deadline::MAX_BUDGET;
use crate::error::ConfigError;

/// How randomness is applied to the exponential envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Jitter {
    /// Uniform in `[0, envelope]`. The default.
    #[default]
    Full,
    /// Half the envelope plus uniform in `[0, envelope/2]`.
    Equal,
    /// `min(cap, uniform[base, 3 × previous delay])`.
    Decorrelated,
    /// No randomness: exactly the envelope.
    None,
}

/// A validated backoff policy: base delay, cap and jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    jitter: Jitter,
}

impl Default for Backoff {
    /// 50 ms base, 2 s cap, full jitter.
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(50),
            cap: Duration::from_secs(2),
            jitter: Jitter::Full,
        }
    }
}

impl Backoff {
    /// A policy with the given base delay, cap and jitter. Rejects a zero base, a cap
    /// below the base and a cap over 24 h ([`MAX_BUDGET`]), so every delay is between
    /// `base` and 24 h.
    pub fn new(base: Duration, cap: Duration, jitter: Jitter) -> Result<Self, ConfigError> {
        if base.is_zero() {
            return Err(ConfigError::new(
                "backoff.base",
                base,
                "must be greater than zero",
            ));
        }
        if cap > MAX_BUDGET {
            return Err(ConfigError::new("backoff.cap", cap, "must be at most 24h"));
        }
        if cap < base {
            return Err(ConfigError::new(
                "backoff.cap",
                cap,
                format!("must be at least `backoff.base` ({base:?})"),
            ));
        }
        Ok(Backoff { base, cap, jitter })
    }

    /// The first envelope delay.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The largest delay.
    pub fn cap(&self) -> Duration {
        self.cap
    }

    /// The jitter strategy.
    pub fn jitter(&self) -> Jitter {
        self.jitter
    }

    /// A fresh schedule for one call, drawing randomness from `rng`.
    pub fn schedule(&self, rng: fastrand::Rng) -> Schedule {
        Schedule {
            policy: *self,
            retry: 0,
            previous: self.base,
            rng,
        }
    }

    /// The envelope for retry `n` (0-based): `min(cap, base · 2ⁿ)`.
    pub fn envelope(&self, n: u32) -> Duration {
        self.base
            .checked_mul(1u32.checked_shl(n).unwrap_or(u32::MAX))
            .map_or(self.cap, |d| d.min(self.cap))
    }
}

/// The delays of one call's retries, in order. An endless iterator.
#[derive(Debug)]
pub struct Schedule {
    policy: Backoff,
    retry: u32,
    previous: Duration,
    rng: fastrand::Rng,
}

impl Schedule {
    fn uniform(&mut self, low: Duration, high: Duration) -> Duration {
        if high <= low {
            return low;
        }
        let span = (high - low).as_nanos().min(u64::MAX as u128) as u64;
        low + Duration::from_nanos(self.rng.u64(0..=span))
    }
}

impl Iterator for Schedule {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let envelope = self.policy.envelope(self.retry);
        self.retry = self.retry.saturating_add(1);
        let delay = match self.policy.jitter {
            Jitter::None => envelope,
            Jitter::Full => self.uniform(Duration::ZERO, envelope),
            Jitter::Equal => {
                let half = envelope / 2;
                half + self.uniform(Duration::ZERO, envelope - half)
            }
            Jitter::Decorrelated => {
                let high = self.previous.saturating_mul(3).min(self.policy.cap);
                self.uniform(self.policy.base, high)
            }
        };
        self.previous = delay;
        Some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn envelope(base: Duration, cap: Duration, n: u32) -> Duration {
        Backoff::new(base, cap, Jitter::None).unwrap().envelope(n)
    }

    #[test]
    fn the_envelope_is_exact_and_never_overflows() {
        let b = Backoff::new(
            Duration::from_millis(10),
            Duration::from_secs(3600),
            Jitter::None,
        )
        .unwrap();
        assert_eq!(b.envelope(2), Duration::from_millis(40));
        assert_eq!(b.envelope(30), Duration::from_secs(3600));
        assert_eq!(b.envelope(u32::MAX), Duration::from_secs(3600));
    }

    #[test]
    fn invalid_policies_name_the_field() {
        let e = Backoff::new(Duration::ZERO, Duration::from_secs(1), Jitter::Full).unwrap_err();
        assert_eq!(e.field(), "backoff.base");
        let e =
            Backoff::new(Duration::from_secs(2), Duration::from_secs(1), Jitter::Full).unwrap_err();
        assert_eq!(e.field(), "backoff.cap");
        assert!(e.to_string().contains("backoff.base"));
    }

    #[test]
    fn no_jitter_is_the_exponential_envelope() {
        let b = Backoff::new(
            Duration::from_millis(10),
            Duration::from_millis(100),
            Jitter::None,
        )
        .unwrap();
        let got: Vec<_> = b
            .schedule(fastrand::Rng::with_seed(1))
            .take(6)
            .map(|d| d.as_millis())
            .collect();
        assert_eq!(got, [10, 20, 40, 80, 100, 100]);
    }

    #[test]
    fn the_same_seed_gives_the_same_delays() {
        let b = Backoff::default();
        let a: Vec<_> = b.schedule(fastrand::Rng::with_seed(7)).take(8).collect();
        let c: Vec<_> = b.schedule(fastrand::Rng::with_seed(7)).take(8).collect();
        assert_eq!(a, c);
    }

    fn policy() -> impl Strategy<Value = (Duration, Duration, u64)> {
        (1u64..5_000, 1u64..100, any::<u64>()).prop_map(|(base_ms, mult, seed)| {
            (
                Duration::from_millis(base_ms),
                Duration::from_millis(base_ms * mult),
                seed,
            )
        })
    }

    proptest! {
        #[test]
        fn full_jitter_stays_within_the_envelope((base, cap, seed) in policy()) {
            let b = Backoff::new(base, cap, Jitter::Full).unwrap();
            for (n, d) in b.schedule(fastrand::Rng::with_seed(seed)).take(40).enumerate() {
                prop_assert!(d <= envelope(base, cap, n as u32));
                prop_assert!(d <= cap);
            }
        }

        #[test]
        fn equal_jitter_stays_in_the_upper_half((base, cap, seed) in policy()) {
            let b = Backoff::new(base, cap, Jitter::Equal).unwrap();
            for (n, d) in b.schedule(fastrand::Rng::with_seed(seed)).take(40).enumerate() {
                let env = envelope(base, cap, n as u32);
                prop_assert!(d >= env / 2 && d <= env, "{d:?} not in [{:?}, {env:?}]", env / 2);
            }
        }

        #[test]
        fn decorrelated_jitter_stays_between_base_and_cap((base, cap, seed) in policy()) {
            let b = Backoff::new(base, cap, Jitter::Decorrelated).unwrap();
            let mut previous = base;
            for d in b.schedule(fastrand::Rng::with_seed(seed)).take(40) {
                prop_assert!(d >= base && d <= cap);
                prop_assert!(d <= previous.saturating_mul(3).max(base));
                previous = d;
            }
        }

        #[test]
        fn the_envelope_is_monotone_and_reaches_the_cap((base, cap, seed) in policy()) {
            let b = Backoff::new(base, cap, Jitter::None).unwrap();
            let delays: Vec<_> = b.schedule(fastrand::Rng::with_seed(seed)).take(40).collect();
            prop_assert!(delays.windows(2).all(|w| w[0] <= w[1]));
            prop_assert_eq!(delays[0], base);
            prop_assert_eq!(*delays.last().unwrap(), cap);
        }
    }
}
