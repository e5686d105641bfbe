//! Timeout budgets: one total deadline per call that bounds every attempt and every sleep.
//!
//! # Why a budget and not just a timeout per query?
//!
//! During the 2023 West Europe incident, calls did not fail: they *hung*. A per-query
//! timeout alone does not bound a call that retries (three attempts of 30 s plus backoff is
//! well over a minute), and an API handler has its own budget to keep. So the stack has two
//! clocks:
//!
//! - [`Deadline`] (outermost) fixes the call's deadline once: `now + total`, shortened by a
//!   deadline the request already carries and by the [ambient](ambient) deadline of the
//!   task. It stamps the deadline into the request's [`RequestContext`] so inner layers can
//!   read it, and fails the call when it passes, whatever is running.
//! - [`AttemptTimeout`] (per attempt, inside retry and failover) bounds one attempt by
//!   `min(attempt, remaining budget)`, so the retry layer gets the error back in time to
//!   decide, and never starts an attempt with no time left.
//!
//! [`TimeoutBudget`] validates the pair (`attempt ≤ total`, both non-zero) and builds both
//! layers.
//!
//! ```
//! use std::time::Duration;
//! use mssql_resilience::deadline::TimeoutBudget;
//!
//! let budget = TimeoutBudget::new(Duration::from_secs(5), Duration::from_secs(2)).unwrap();
//! let (deadline, attempt) = (budget.deadline_layer(), budget.attempt_layer());
//! # let _ = (deadline, attempt);
//! let err = TimeoutBudget::new(Duration::from_secs(1), Duration::from_secs(2)).unwrap_err();
//! assert_eq!(err.to_string(), "invalid `attempt_timeout` = 2s: must not exceed `total_timeout` (1s)");
//! ```
//!
//! [`RequestContext`]: crate::request::RequestContext

pub mod ambient;
pub mod future;
mod layer;

use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower::Service;

use self::future::{Expiry, ResponseFuture};
pub use self::layer::{AttemptTimeoutLayer, DeadlineLayer};
use crate::error::{ConfigError, Error, Outcome};
use crate::observe::{emit, Event, SharedObserver};
use crate::request::HasContext;

/// The longest total budget accepted: 24 hours.
pub const MAX_BUDGET: Duration = Duration::from_secs(24 * 3600);

/// A validated pair of timeouts: the total budget of a call and the bound of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeoutBudget {
    total: Duration,
    attempt: Duration,
}

impl TimeoutBudget {
    /// `total` bounds the whole call; `attempt` bounds each attempt.
    ///
    /// Rejects zero durations and `attempt > total`, naming the fields.
    pub fn new(total: Duration, attempt: Duration) -> Result<Self, ConfigError> {
        if total.is_zero() {
            return Err(ConfigError::new(
                "total_timeout",
                total,
                "must be greater than zero",
            ));
        }
        if attempt.is_zero() {
            return Err(ConfigError::new(
                "attempt_timeout",
                attempt,
                "must be greater than zero",
            ));
        }
        if attempt > total {
            return Err(ConfigError::new(
                "attempt_timeout",
                attempt,
                format!("must not exceed `total_timeout` ({total:?})"),
            ));
        }
        Ok(TimeoutBudget { total, attempt })
    }

    /// The total budget.
    pub fn total(&self) -> Duration {
        self.total
    }

    /// The per-attempt bound.
    pub fn attempt(&self) -> Duration {
        self.attempt
    }

    /// The outer layer: the call's total deadline.
    pub fn deadline_layer(&self) -> DeadlineLayer {
        DeadlineLayer {
            total: self.total,
            observer: None,
            enforce: true,
        }
    }

    /// The per-attempt layer.
    pub fn attempt_layer(&self) -> AttemptTimeoutLayer {
        AttemptTimeoutLayer {
            attempt: self.attempt,
            observer: None,
        }
    }
}

/// Bounds a whole call (all attempts, all sleeps) by a deadline. See the [module docs](self).
#[derive(Clone)]
pub struct Deadline<S> {
    inner: S,
    total: Duration,
    observer: Option<SharedObserver>,
    enforce: bool,
}

impl<S: std::fmt::Debug> std::fmt::Debug for Deadline<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deadline")
            .field("inner", &self.inner)
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl<S> Deadline<S> {
    /// Wraps `inner` with a total budget; `total` must be non-zero.
    pub fn new(inner: S, total: Duration) -> Result<Self, ConfigError> {
        if total.is_zero() {
            return Err(ConfigError::new(
                "total_timeout",
                total,
                "must be greater than zero",
            ));
        }
        Ok(Deadline {
            inner,
            total,
            observer: None,
            enforce: true,
        })
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req> Service<Req> for Deadline<S>
where
    S: Service<Req>,
    S::Error: Into<Error>,
    Req: HasContext,
{
    type Response = S::Response;
    type Error = Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Req) -> Self::Future {
        let now = Instant::now();
        let ctx = req.context_mut();
        ctx.shorten_deadline(now + self.total);
        if let Some(ambient) = ambient::current() {
            ctx.shorten_deadline(ambient);
        }
        let deadline = ctx.deadline().unwrap_or(now + self.total);
        let operation = ctx.operation_cow();
        let idempotent = ctx.is_idempotent();
        if deadline <= now {
            emit(
                self.observer.as_ref(),
                Event::DeadlineExceeded {
                    operation: &operation,
                },
            );
            return ResponseFuture::failed(Error::deadline_exceeded(Outcome::NotSent));
        }
        if !self.enforce {
            return ResponseFuture::unbounded(self.inner.call(req), idempotent);
        }
        ResponseFuture::running(
            self.inner.call(req),
            tokio::time::sleep_until(deadline),
            Expiry::Deadline(None),
            operation,
            idempotent,
            self.observer.clone(),
        )
    }
}

/// Bounds one attempt by `min(attempt timeout, remaining budget)`. See the [module docs](self).
#[derive(Clone)]
pub struct AttemptTimeout<S> {
    inner: S,
    attempt: Duration,
    observer: Option<SharedObserver>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for AttemptTimeout<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttemptTimeout")
            .field("inner", &self.inner)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl<S> AttemptTimeout<S> {
    /// Wraps `inner` with a per-attempt timeout; `attempt` must be non-zero.
    pub fn new(inner: S, attempt: Duration) -> Result<Self, ConfigError> {
        if attempt.is_zero() {
            return Err(ConfigError::new(
                "attempt_timeout",
                attempt,
                "must be greater than zero",
            ));
        }
        Ok(AttemptTimeout {
            inner,
            attempt,
            observer: None,
        })
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req> Service<Req> for AttemptTimeout<S>
where
    S: Service<Req>,
    S::Error: Into<Error>,
    Req: HasContext,
{
    type Response = S::Response;
    type Error = Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Req) -> Self::Future {
        let now = Instant::now();
        let wire = req.context_mut().begin_attempt();
        let ctx = req.context();
        let operation = ctx.operation_cow();
        let idempotent = ctx.is_idempotent();
        // The router's latency-aware bound for this attempt, if it set one.
        let attempt = ctx.attempt_limit().unwrap_or(self.attempt);
        let (until, expiry) = match ctx.deadline() {
            Some(deadline) if deadline <= now => {
                emit(
                    self.observer.as_ref(),
                    Event::DeadlineExceeded {
                        operation: &operation,
                    },
                );
                return ResponseFuture::failed(Error::deadline_exceeded(Outcome::NotSent));
            }
            Some(deadline) if deadline.saturating_duration_since(now) < attempt => {
                (deadline, Expiry::Deadline(Some(wire)))
            }
            _ => (now + attempt, Expiry::Attempt(attempt, wire)),
        };
        ResponseFuture::running(
            self.inner.call(req),
            tokio::time::sleep_until(until),
            expiry,
            operation,
            idempotent,
            self.observer.clone(),
        )
    }
}
