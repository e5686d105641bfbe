//! The per-layer sections of [`Config`](super::Config) and their conversions into the
//! layers' own validated types.

use std::borrow::Cow;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::util::{renamed, with_field};
use crate::circuit_breaker::{CircuitBreakerConfig, WindowKind};
use crate::deadline::{TimeoutBudget, MAX_BUDGET};
use crate::error::ConfigError;
use crate::retry::backoff::{Backoff, Jitter};
use crate::retry::budget::RetryBudget;
use crate::retry::RetryPolicy;

/// `[timeouts]`: the call's total budget, one attempt's bound, and one connection
/// attempt's bound. Rule: `0 < connect ≤ attempt ≤ total ≤ 24h`
/// ([`MAX_BUDGET`](crate::deadline::MAX_BUDGET)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeoutsConfig {
    /// The whole call: every attempt and every backoff sleep, > 0 and ≤ 24 h. Default
    /// `"5s"`.
    #[serde(with = "super::duration")]
    pub total: Duration,
    /// One attempt, > 0 and ≤ `total`. Default `"2s"`.
    #[serde(with = "super::duration")]
    pub attempt: Duration,
    /// Opening one connection: TCP connect + PRELOGIN (+ TLS) + login, > 0 and
    /// ≤ `attempt`. Default `"1s"`.
    #[serde(with = "super::duration")]
    pub connect: Duration,
    /// The longest total budget one request may ask for with
    /// [`RequestContext::budget`](crate::RequestContext::budget) (a longer ask is capped
    /// here), ≥ `total` and ≤ 24 h. Default (unset or `"none"`): the larger of `total` and
    /// 60 s.
    #[serde(
        with = "super::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_total: Option<Duration>,
}

/// The default of `timeouts.max_total` when `total` is shorter: 60 s.
pub const DEFAULT_MAX_TOTAL: Duration = Duration::from_secs(60);

impl Default for TimeoutsConfig {
    fn default() -> Self {
        TimeoutsConfig {
            total: Duration::from_secs(5),
            attempt: Duration::from_secs(2),
            connect: Duration::from_secs(1),
            max_total: None,
        }
    }
}

impl TimeoutsConfig {
    /// The validated [`TimeoutBudget`] (`total`, `attempt`, `max_total`). Errors name
    /// `timeouts.total` / `timeouts.attempt` / `timeouts.max_total`.
    pub fn budget(&self) -> Result<TimeoutBudget, ConfigError> {
        TimeoutBudget::new(self.total, self.attempt)
            .and_then(|budget| budget.with_max_total(self.effective_max_total()))
            .map_err(|e| {
                renamed(
                    e,
                    &[
                        ("total_timeout", "timeouts.total"),
                        ("attempt_timeout", "timeouts.attempt"),
                        ("max_total_timeout", "timeouts.max_total"),
                    ],
                )
            })
    }

    /// `max_total`, or its default: the larger of `total` and [`DEFAULT_MAX_TOTAL`].
    pub fn effective_max_total(&self) -> Duration {
        self.max_total
            .unwrap_or_else(|| self.total.max(DEFAULT_MAX_TOTAL))
    }

    /// Checks `0 < connect ≤ attempt ≤ total ≤ max_total ≤ 24h`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.budget()?;
        if self.connect.is_zero() {
            return Err(ConfigError::new(
                "timeouts.connect",
                self.connect,
                "must be greater than zero",
            ));
        }
        if self.connect > self.attempt {
            return Err(ConfigError::new(
                "timeouts.connect",
                self.connect,
                format!("must not exceed `timeouts.attempt` ({:?})", self.attempt),
            ));
        }
        Ok(())
    }
}

/// The jitter strategy, as written in a file: `"full"`, `"equal"`, `"decorrelated"` or
/// `"none"`. See [`Jitter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JitterKind {
    /// Uniform in `[0, envelope]`. The default.
    #[default]
    Full,
    /// Half the envelope plus uniform in `[0, envelope/2]`.
    Equal,
    /// `min(cap, uniform[base, 3 × previous delay])`.
    Decorrelated,
    /// No randomness.
    None,
}

impl From<JitterKind> for Jitter {
    fn from(kind: JitterKind) -> Self {
        match kind {
            JitterKind::Full => Jitter::Full,
            JitterKind::Equal => Jitter::Equal,
            JitterKind::Decorrelated => Jitter::Decorrelated,
            JitterKind::None => Jitter::None,
        }
    }
}

impl From<Jitter> for JitterKind {
    fn from(jitter: Jitter) -> Self {
        match jitter {
            Jitter::Full => JitterKind::Full,
            Jitter::Equal => JitterKind::Equal,
            Jitter::Decorrelated => JitterKind::Decorrelated,
            Jitter::None => JitterKind::None,
        }
    }
}

/// `[retry]`: attempts and backoff. See [`crate::retry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts in all, 1–100 (1 = no retries). Default 3.
    pub max_attempts: u32,
    /// The first backoff delay, > 0 and ≤ `cap`. Default `"50ms"`.
    #[serde(with = "super::duration")]
    pub base: Duration,
    /// The largest backoff delay, ≥ `base` and ≤ 24 h. Default `"2s"`.
    #[serde(with = "super::duration")]
    pub cap: Duration,
    /// Default `"full"`.
    pub jitter: JitterKind,
    /// Seeds the jitter for reproducible runs (tests), any `u64`. Default: random.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// How many calls may be tried again at once after the router turned them away
    /// without counting the tries, 0–100 000 (0: never). Default 100. See
    /// [`RetryPolicy::with_max_polling`].
    pub max_polling: u32,
}

impl Default for RetryConfig {
    /// The retry layer's own defaults ([`RetryPolicy::default`]).
    fn default() -> Self {
        let policy = RetryPolicy::default();
        let backoff = policy.backoff();
        RetryConfig {
            max_attempts: policy.max_attempts(),
            base: backoff.base(),
            cap: backoff.cap(),
            jitter: backoff.jitter().into(),
            seed: None,
            max_polling: policy.max_polling(),
        }
    }
}

impl RetryConfig {
    /// The validated [`RetryPolicy`]. Errors name `retry.max_attempts`, `retry.base`,
    /// `retry.cap`, `retry.max_polling`.
    pub fn policy(&self) -> Result<RetryPolicy, ConfigError> {
        let backoff = Backoff::new(self.base, self.cap, self.jitter.into()).map_err(|e| {
            renamed(
                e,
                &[("backoff.base", "retry.base"), ("backoff.cap", "retry.cap")],
            )
        })?;
        let policy =
            RetryPolicy::new(self.max_attempts, backoff)?.with_max_polling(self.max_polling)?;
        Ok(match self.seed {
            Some(seed) => policy.with_seed(seed),
            None => policy,
        })
    }
}

/// `[retry_budget]`: how much extra load retries may add. See [`crate::retry::budget`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryBudgetConfig {
    /// The sliding window, 100 ms – 1 h. Default `"10s"`.
    #[serde(with = "super::duration")]
    pub window: Duration,
    /// Retries per second always allowed, a finite number in 0–100 000. Default 10.
    pub min_per_second: f64,
    /// Retries allowed per call, a finite number in 0–1000. Default 0.2.
    pub ratio: f64,
}

impl Default for RetryBudgetConfig {
    /// The retry budget's own defaults ([`RetryBudget::default`]).
    fn default() -> Self {
        let (window, min_per_second, ratio) = RetryBudget::default().settings();
        RetryBudgetConfig {
            window,
            min_per_second,
            ratio,
        }
    }
}

impl RetryBudgetConfig {
    /// A new, validated [`RetryBudget`] (each call makes a new, empty budget: share the
    /// handle by cloning it). Errors name `retry_budget.*`.
    pub fn budget(&self) -> Result<RetryBudget, ConfigError> {
        RetryBudget::new(self.window, self.min_per_second, self.ratio)
    }
}

/// `[breaker]`: the per-region circuit breaker. See [`CircuitBreakerConfig`] for each
/// setting's meaning and rule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Judge the last `n` calls, 1–10 000. Default: unset, which judges the calls of the
    /// last `window_duration` instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_calls: Option<u32>,
    /// The time window, used when `window_calls` is unset; 10 ms–1 h. Default `"10s"`.
    #[serde(with = "super::duration")]
    pub window_duration: Duration,
    /// Opens at this failure fraction, in (0, 1]. Default 0.5.
    pub failure_rate_threshold: f64,
    /// Opens at this slow-call fraction, in (0, 1]. Default 1.0.
    pub slow_call_rate_threshold: f64,
    /// A call this long is slow, > 0 and < `timeouts.total` (every call ends by then, so a
    /// longer one could never be seen). Default (unset or `"none"`): 2 s, or half of
    /// `timeouts.total` when that is shorter — see
    /// [`slow_call_duration_for`](Self::slow_call_duration_for).
    #[serde(
        with = "super::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub slow_call_duration: Option<Duration>,
    /// Calls in the window before the breaker judges, 1–10 000 and ≤ `window_calls`.
    /// Default 10.
    pub minimum_calls: u32,
    /// The first open period, > 0 and ≤ `max_open_duration`. Default `"5s"`.
    #[serde(with = "super::duration")]
    pub open_duration: Duration,
    /// Growth of the open period on each re-opening, 1.0–100.0. Default 2.0.
    pub open_backoff_multiplier: f64,
    /// The longest open period, ≥ `open_duration` and ≤ 24 h. Default `"60s"` (written
    /// `"1m"`).
    #[serde(with = "super::duration")]
    pub max_open_duration: Duration,
    /// ± spread of each open period, in [0, 1). Default 0.2.
    pub open_jitter: f64,
    /// Probe calls while half-open, 1–1000. Default 3.
    pub half_open_calls: u32,
}

impl Default for BreakerConfig {
    /// The circuit breaker's own defaults ([`CircuitBreakerConfig::builder`]).
    fn default() -> Self {
        let d = CircuitBreakerConfig::builder("defaults").config;
        let (window_calls, window_duration) = match d.window {
            WindowKind::Count(n) => (Some(n), Duration::from_secs(10)),
            WindowKind::Time(t) => (None, t),
        };
        BreakerConfig {
            window_calls,
            window_duration,
            failure_rate_threshold: d.failure_rate_threshold,
            slow_call_rate_threshold: d.slow_call_rate_threshold,
            slow_call_duration: None,
            minimum_calls: d.minimum_calls,
            open_duration: d.open_duration,
            open_backoff_multiplier: d.open_backoff_multiplier,
            max_open_duration: d.max_open_duration,
            open_jitter: d.open_jitter,
            half_open_calls: d.half_open_calls,
        }
    }
}

/// The default of `breaker.slow_call_duration` (unless half of `timeouts.total` is
/// shorter): 2 s, the default attempt timeout.
pub const DEFAULT_SLOW_CALL_DURATION: Duration = Duration::from_secs(2);

impl BreakerConfig {
    /// The slow-call duration for calls whose budget is `total`: the configured one, or
    /// [`DEFAULT_SLOW_CALL_DURATION`] capped at half of `total` (a default that could never
    /// be reached would switch the slow-call rule off unnoticed).
    pub fn slow_call_duration_for(&self, total: Duration) -> Duration {
        self.slow_call_duration
            .unwrap_or_else(|| DEFAULT_SLOW_CALL_DURATION.min(total / 2))
    }

    /// The window as the breaker takes it.
    pub fn window(&self) -> WindowKind {
        match self.window_calls {
            Some(calls) => WindowKind::Count(calls),
            None => WindowKind::Time(self.window_duration),
        }
    }

    /// The validated [`CircuitBreakerConfig`] for a breaker called `name` (the region's
    /// name). Errors name `breaker.*`.
    pub fn breaker_config(
        &self,
        name: impl Into<Cow<'static, str>>,
    ) -> Result<CircuitBreakerConfig, ConfigError> {
        CircuitBreakerConfig::builder(name)
            .window(self.window())
            .failure_rate_threshold(self.failure_rate_threshold)
            .slow_call_rate_threshold(self.slow_call_rate_threshold)
            .slow_call_duration(
                self.slow_call_duration
                    .unwrap_or(DEFAULT_SLOW_CALL_DURATION),
            )
            .minimum_calls(self.minimum_calls)
            .open_duration(self.open_duration)
            .open_backoff(self.open_backoff_multiplier, self.max_open_duration)
            .open_jitter(self.open_jitter)
            .half_open_calls(self.half_open_calls)
            .build()
            .map_err(|e| {
                if e.field() != "breaker.window" {
                    return e;
                }
                match self.window_calls {
                    Some(calls) => with_field(e, "breaker.window_calls", format!("{calls}")),
                    None => with_field(
                        e,
                        "breaker.window_duration",
                        format!("{:?}", self.window_duration),
                    ),
                }
            })
    }
}

/// `[pool]`: the connection pool of each region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// Most connections per region, 1–1000 ([`MAX_POOL_SIZE`]). Default 100 (SqlClient's
    /// default `Max Pool Size`): the pool opens them on demand, so it grows with load and
    /// latency up to this bound; each connection is a session on the server.
    pub max_size: u32,
    /// Idle connections kept open, ≤ `max_size` and ≤ 100 ([`MAX_MIN_IDLE`]): they are
    /// all opened at start. Default: unset (none kept on purpose).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_idle: Option<u32>,
    /// Closes connections idle this long, > 0 and ≤ 24 h; `"none"` keeps them. Default
    /// `"10m"`.
    #[serde(with = "super::duration::option")]
    pub idle_timeout: Option<Duration>,
    /// Closes connections this old, > 0 and ≤ 24 h; `"none"` keeps them. Default `"30m"`.
    #[serde(with = "super::duration::option")]
    pub max_lifetime: Option<Duration>,
    /// Bound on the health check (one round trip) of a pooled connection idle for 2 s or
    /// more, at normal latency; on a region observed to answer slowly the check may take
    /// one of its round trips (up to the connect timeout's ceiling). > 0 and ≤ 1 min
    /// ([`MAX_VALIDATION_TIMEOUT`]). Default `"500ms"`.
    #[serde(with = "super::duration")]
    pub validation_timeout: Duration,
}

/// The largest `pool.max_size`: 1000 connections per region.
pub const MAX_POOL_SIZE: u32 = 1000;

/// The largest `pool.min_idle`: 100 connections per region, all opened at start.
pub const MAX_MIN_IDLE: u32 = 100;

/// The longest `pool.validation_timeout`: 1 minute (a health check is a round trip).
pub const MAX_VALIDATION_TIMEOUT: Duration = Duration::from_secs(60);

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_size: crate::pool::PoolSettings::default().max_size,
            min_idle: None,
            idle_timeout: Some(Duration::from_secs(10 * 60)),
            max_lifetime: Some(Duration::from_secs(30 * 60)),
            validation_timeout: Duration::from_millis(500),
        }
    }
}

impl PoolConfig {
    /// Checks each range listed on the fields. A zero `idle_timeout` / `max_lifetime`
    /// is rejected (bb8 panics on a zero; write `"none"`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        ConfigError::check_count("pool.max_size", self.max_size, 1, MAX_POOL_SIZE)?;
        if let Some(min_idle) = self.min_idle {
            if min_idle > self.max_size {
                return Err(ConfigError::new(
                    "pool.min_idle",
                    min_idle,
                    format!("must not exceed `pool.max_size` ({})", self.max_size),
                ));
            }
            ConfigError::check_count("pool.min_idle", min_idle, 0, MAX_MIN_IDLE)?;
        }
        for (field, value) in [
            ("pool.idle_timeout", self.idle_timeout),
            ("pool.max_lifetime", self.max_lifetime),
        ] {
            if value == Some(Duration::ZERO) {
                return Err(ConfigError::new(
                    field,
                    Duration::ZERO,
                    "must be greater than zero (write \"none\" to disable it)",
                ));
            }
            if let Some(value) = value {
                ConfigError::check_at_most(field, value, MAX_BUDGET, "24h (or \"none\")")?;
            }
        }
        if self.validation_timeout.is_zero() {
            return Err(ConfigError::new(
                "pool.validation_timeout",
                self.validation_timeout,
                "must be greater than zero",
            ));
        }
        ConfigError::check_at_most(
            "pool.validation_timeout",
            self.validation_timeout,
            MAX_VALIDATION_TIMEOUT,
            "1m",
        )?;
        Ok(())
    }
}

/// `[failover]`: health probing of the regions and the rules for moving between them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FailoverConfig {
    /// Time between health probes of a region, 100 ms–1 h ([`MAX_PROBE_INTERVAL`]).
    /// Default `"2s"`.
    #[serde(with = "super::duration")]
    pub probe_interval: Duration,
    /// Bound on one probe, > 0 and ≤ `probe_interval`. Default `"1s"`.
    #[serde(with = "super::duration")]
    pub probe_timeout: Duration,
    /// Spreads each probe interval by ± this fraction, in [0, 1). Default 0.2.
    pub probe_jitter: f64,
    /// How long the preferred region must stay healthy before traffic moves back to it,
    /// 0–24 h. Default `"30s"`.
    #[serde(with = "super::duration")]
    pub failback_hysteresis: Duration,
    /// Failed probes in a row that mark a region unhealthy, 1–1000. Default 1.
    pub unhealthy_after: u32,
    /// Good probes in a row that mark a region healthy again, 1–1000. Default 2.
    pub healthy_after: u32,
    /// Gateway redirects followed per connection attempt, 0–10. Default 2.
    pub max_redirects: u32,
    /// Idempotent reads still unanswered after this long are also sent to the next
    /// region (the first answer wins; each hedge draws on the retry budget), between 1 ms
    /// and `timeouts.attempt` (so at most 24 h), or `"none"`. Default `"250ms"`.
    #[serde(with = "super::duration::option")]
    pub hedge_delay: Option<Duration>,
    /// A probe round trip at or above this marks a region degraded (it still serves, but
    /// reads prefer a healthy region), between 1 ms and 1 min. Default `"200ms"`.
    #[serde(with = "super::duration")]
    pub degraded_latency: Duration,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        FailoverConfig {
            probe_interval: Duration::from_secs(2),
            probe_timeout: Duration::from_secs(1),
            probe_jitter: 0.2,
            failback_hysteresis: Duration::from_secs(30),
            unhealthy_after: 1,
            healthy_after: 2,
            max_redirects: 2,
            hedge_delay: Some(Duration::from_millis(250)),
            degraded_latency: crate::failover::HealthPolicy::default().degraded_latency,
        }
    }
}

/// The shortest probe interval.
pub const MIN_PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// The longest probe interval: 1 h. (A region probed less often than that is not
/// watched.)
pub const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(3600);

/// The most probes in a row `failover.healthy_after` / `unhealthy_after` may ask for.
pub const MAX_PROBES_IN_A_ROW: u32 = 1000;

/// The most redirects a connection attempt may follow.
pub const MAX_REDIRECTS_LIMIT: u32 = 10;

impl FailoverConfig {
    /// Checks each rule listed on the fields, except `hedge_delay ≤ timeouts.attempt`,
    /// which [`Config::validate`](super::Config::validate) checks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.probe_interval < MIN_PROBE_INTERVAL {
            return Err(ConfigError::new(
                "failover.probe_interval",
                self.probe_interval,
                "must be at least 100ms",
            ));
        }
        ConfigError::check_at_most(
            "failover.probe_interval",
            self.probe_interval,
            MAX_PROBE_INTERVAL,
            "1h",
        )?;
        if self.probe_timeout.is_zero() {
            return Err(ConfigError::new(
                "failover.probe_timeout",
                self.probe_timeout,
                "must be greater than zero",
            ));
        }
        if self.probe_timeout > self.probe_interval {
            return Err(ConfigError::new(
                "failover.probe_timeout",
                self.probe_timeout,
                format!(
                    "must not exceed `failover.probe_interval` ({:?})",
                    self.probe_interval
                ),
            ));
        }
        if self
            .hedge_delay
            .is_some_and(|d| d < Duration::from_millis(1))
        {
            return Err(ConfigError::new(
                "failover.hedge_delay",
                self.hedge_delay,
                "must be at least 1ms, or \"none\" to disable hedging",
            ));
        }
        if self.degraded_latency < Duration::from_millis(1)
            || self.degraded_latency > Duration::from_secs(60)
        {
            return Err(ConfigError::new(
                "failover.degraded_latency",
                self.degraded_latency,
                "must be between 1ms and 1m",
            ));
        }
        if let Some(hedge_delay) = self.hedge_delay {
            ConfigError::check_at_most("failover.hedge_delay", hedge_delay, MAX_BUDGET, "24h")?;
        }
        ConfigError::check_at_most(
            "failover.failback_hysteresis",
            self.failback_hysteresis,
            MAX_BUDGET,
            "24h",
        )?;
        ConfigError::check_fraction("failover.probe_jitter", self.probe_jitter)?;
        ConfigError::check_count(
            "failover.unhealthy_after",
            self.unhealthy_after,
            1,
            MAX_PROBES_IN_A_ROW,
        )?;
        ConfigError::check_count(
            "failover.healthy_after",
            self.healthy_after,
            1,
            MAX_PROBES_IN_A_ROW,
        )?;
        if self.max_redirects > MAX_REDIRECTS_LIMIT {
            return Err(ConfigError::new(
                "failover.max_redirects",
                self.max_redirects,
                format!("must be at most {MAX_REDIRECTS_LIMIT}"),
            ));
        }
        Ok(())
    }
}
