//! Circuit breaker settings, validated when built.

use std::borrow::Cow;
use std::time::Duration;

use super::window::WindowKind;
use crate::deadline::MAX_BUDGET;
use crate::error::ConfigError;

/// The largest count window: 10 000 calls. The window is allocated up front (two bytes
/// per call), and a larger one adds nothing a time window does not do better.
pub const MAX_WINDOW_CALLS: u32 = 10_000;

/// The shortest time window: 10 ms.
pub const MIN_WINDOW_DURATION: Duration = Duration::from_millis(10);

/// The longest time window: 1 h.
pub const MAX_WINDOW_DURATION: Duration = Duration::from_secs(3600);

/// The largest `minimum_calls`: 10 000 (and never more than a count window holds).
pub const MAX_MINIMUM_CALLS: u32 = 10_000;

/// The most probe calls while half-open: 1000.
pub const MAX_HALF_OPEN_CALLS: u32 = 1000;

/// The largest growth factor of the open duration: 100.
pub const MAX_OPEN_BACKOFF_MULTIPLIER: f64 = 100.0;

/// The longest name: 64 characters (the name is a metric label).
pub const MAX_NAME_CHARS: usize = 64;

/// How a breaker judges health and how long it stays open. Build with
/// [`CircuitBreakerConfig::builder`]; every setter says its default and its range, and
/// [`build`](CircuitBreakerConfigBuilder::build) checks them all.
#[derive(Debug, Clone, PartialEq)]
pub struct CircuitBreakerConfig {
    pub(crate) name: Cow<'static, str>,
    pub(crate) window: WindowKind,
    pub(crate) failure_rate_threshold: f64,
    pub(crate) slow_call_rate_threshold: f64,
    pub(crate) slow_call_duration: Duration,
    pub(crate) minimum_calls: u32,
    pub(crate) open_duration: Duration,
    pub(crate) open_backoff_multiplier: f64,
    pub(crate) max_open_duration: Duration,
    pub(crate) open_jitter: f64,
    pub(crate) half_open_calls: u32,
    pub(crate) seed: Option<u64>,
}

impl CircuitBreakerConfig {
    /// The same configuration with another slow-call duration (validated by the caller).
    pub(crate) fn with_slow_call_duration(mut self, duration: Duration) -> Self {
        self.slow_call_duration = duration;
        self
    }

    /// A builder with the defaults below, for a breaker called `name` (e.g. the region).
    pub fn builder(name: impl Into<Cow<'static, str>>) -> CircuitBreakerConfigBuilder {
        CircuitBreakerConfigBuilder {
            config: CircuitBreakerConfig {
                name: name.into(),
                window: WindowKind::Time(Duration::from_secs(10)),
                failure_rate_threshold: 0.5,
                slow_call_rate_threshold: 1.0,
                slow_call_duration: Duration::from_secs(2),
                minimum_calls: 10,
                open_duration: Duration::from_secs(5),
                open_backoff_multiplier: 2.0,
                max_open_duration: Duration::from_secs(60),
                open_jitter: 0.2,
                half_open_calls: 3,
                seed: None,
            },
        }
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Builds a [`CircuitBreakerConfig`].
#[derive(Debug, Clone)]
pub struct CircuitBreakerConfigBuilder {
    pub(crate) config: CircuitBreakerConfig,
}

impl CircuitBreakerConfigBuilder {
    /// The sliding window. Defaults to the calls of the last 10 s. A count window holds
    /// 1–[`MAX_WINDOW_CALLS`] (10 000) calls; a time window is 10 ms–1 h.
    pub fn window(mut self, window: WindowKind) -> Self {
        self.config.window = window;
        self
    }

    /// Opens when at least this fraction of the window's calls failed, in (0, 1].
    /// Defaults to 0.5.
    pub fn failure_rate_threshold(mut self, rate: f64) -> Self {
        self.config.failure_rate_threshold = rate;
        self
    }

    /// Opens when at least this fraction of the window's calls were slow. Defaults to 1.0
    /// (only when every call is slow).
    pub fn slow_call_rate_threshold(mut self, rate: f64) -> Self {
        self.config.slow_call_rate_threshold = rate;
        self
    }

    /// A call taking at least this long is slow. Defaults to 2 s (the stack's default
    /// attempt timeout: an answer that takes longer than an ordinary attempt may).
    pub fn slow_call_duration(mut self, duration: Duration) -> Self {
        self.config.slow_call_duration = duration;
        self
    }

    /// The window must hold this many calls before the breaker judges:
    /// 1–[`MAX_MINIMUM_CALLS`] (10 000), and at most a count window's size. Defaults
    /// to 10.
    pub fn minimum_calls(mut self, calls: u32) -> Self {
        self.config.minimum_calls = calls;
        self
    }

    /// How long the breaker stays open the first time, > 0 and at most
    /// `max_open_duration`. Defaults to 5 s.
    pub fn open_duration(mut self, duration: Duration) -> Self {
        self.config.open_duration = duration;
        self
    }

    /// Each consecutive re-opening (open → half-open → open) multiplies the open duration by
    /// this (1.0–[`MAX_OPEN_BACKOFF_MULTIPLIER`]), up to `max_open_duration` (at least
    /// `open_duration`, at most 24 h). 1.0 disables growth. Defaults to 2.0 and 60 s.
    pub fn open_backoff(mut self, multiplier: f64, max_open_duration: Duration) -> Self {
        self.config.open_backoff_multiplier = multiplier;
        self.config.max_open_duration = max_open_duration;
        self
    }

    /// Spreads each open duration uniformly by ± this fraction, in [0, 1), so a fleet's
    /// breakers do not probe a recovering database all at once. Defaults to 0.2.
    pub fn open_jitter(mut self, fraction: f64) -> Self {
        self.config.open_jitter = fraction;
        self
    }

    /// Probe calls let through while half-open; all must succeed to close. Others are
    /// rejected at once. 1–[`MAX_HALF_OPEN_CALLS`] (1000). Defaults to 3.
    pub fn half_open_calls(mut self, calls: u32) -> Self {
        self.config.half_open_calls = calls;
        self
    }

    /// Seeds the open-duration jitter, for reproducible tests. Defaults to random.
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = Some(seed);
        self
    }

    /// Validates and builds. Errors name the field and the value. The name must be
    /// 1–[`MAX_NAME_CHARS`] characters.
    pub fn build(self) -> Result<CircuitBreakerConfig, ConfigError> {
        let c = self.config;
        let rate = |field: &'static str, v: f64| {
            if v.is_finite() && v > 0.0 && v <= 1.0 {
                Ok(())
            } else {
                Err(ConfigError::new(field, v, "must be in (0.0, 1.0]"))
            }
        };
        if c.name.is_empty() {
            return Err(ConfigError::new(
                "breaker.name",
                &c.name,
                "must not be empty",
            ));
        }
        let name_chars = c.name.chars().count();
        if name_chars > MAX_NAME_CHARS {
            return Err(ConfigError::new(
                "breaker.name",
                &c.name,
                format!(
                    "must be at most {MAX_NAME_CHARS} characters (it is a metric label); it has {name_chars}"
                ),
            ));
        }
        match c.window {
            WindowKind::Count(0) => {
                return Err(ConfigError::new(
                    "breaker.window",
                    c.window,
                    "must hold at least 1 call",
                ))
            }
            WindowKind::Count(n) if n > MAX_WINDOW_CALLS => {
                return Err(ConfigError::new(
                    "breaker.window",
                    c.window,
                    format!("must hold at most {MAX_WINDOW_CALLS} calls"),
                ))
            }
            WindowKind::Time(d) if d < MIN_WINDOW_DURATION => {
                return Err(ConfigError::new(
                    "breaker.window",
                    c.window,
                    "must be at least 10ms",
                ))
            }
            WindowKind::Time(d) if d > MAX_WINDOW_DURATION => {
                return Err(ConfigError::new(
                    "breaker.window",
                    c.window,
                    "must be at most 1h",
                ))
            }
            _ => {}
        }
        rate("breaker.failure_rate_threshold", c.failure_rate_threshold)?;
        rate(
            "breaker.slow_call_rate_threshold",
            c.slow_call_rate_threshold,
        )?;
        if c.slow_call_duration.is_zero() {
            return Err(ConfigError::new(
                "breaker.slow_call_duration",
                c.slow_call_duration,
                "must be greater than zero",
            ));
        }
        ConfigError::check_count(
            "breaker.minimum_calls",
            c.minimum_calls,
            1,
            MAX_MINIMUM_CALLS,
        )?;
        if let WindowKind::Count(n) = c.window {
            if c.minimum_calls > n {
                return Err(ConfigError::new(
                    "breaker.minimum_calls",
                    c.minimum_calls,
                    format!("must not exceed the count window ({n}), or the breaker never judges"),
                ));
            }
        }
        if c.open_duration.is_zero() {
            return Err(ConfigError::new(
                "breaker.open_duration",
                c.open_duration,
                "must be greater than zero",
            ));
        }
        if c.open_backoff_multiplier.is_nan() || c.open_backoff_multiplier < 1.0 {
            return Err(ConfigError::new(
                "breaker.open_backoff_multiplier",
                c.open_backoff_multiplier,
                "must be at least 1.0",
            ));
        }
        if c.open_backoff_multiplier > MAX_OPEN_BACKOFF_MULTIPLIER {
            return Err(ConfigError::new(
                "breaker.open_backoff_multiplier",
                c.open_backoff_multiplier,
                "must be at most 100.0",
            ));
        }
        if c.max_open_duration > MAX_BUDGET {
            return Err(ConfigError::new(
                "breaker.max_open_duration",
                c.max_open_duration,
                "must be at most 24h",
            ));
        }
        if c.max_open_duration < c.open_duration {
            return Err(ConfigError::new(
                "breaker.max_open_duration",
                c.max_open_duration,
                format!(
                    "must be at least `breaker.open_duration` ({:?})",
                    c.open_duration
                ),
            ));
        }
        ConfigError::check_fraction("breaker.open_jitter", c.open_jitter)?;
        ConfigError::check_count(
            "breaker.half_open_calls",
            c.half_open_calls,
            1,
            MAX_HALF_OPEN_CALLS,
        )?;
        Ok(c)
    }
}
