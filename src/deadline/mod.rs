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
//!   deadline the request already carries and by the [ambient] deadline of the
//!   task. It stamps the deadline into the request's [`RequestContext`] so inner layers can
//!   read it, and fails the call when it passes, whatever is running.
//! - [`AttemptTimeout`] (per attempt, inside retry and failover) bounds one attempt by
//!   `min(attempt, remaining budget)`, so the retry layer gets the error back in time to
//!   decide, and never starts an attempt with no time left.
//!
//! [`TimeoutBudget`] validates the pair (`0 < attempt ≤ total ≤` [`MAX_BUDGET`]) and builds
//! both layers.
//!
//! # No value overflows the clock
//!
//! Every constructor rejects a budget over [`MAX_BUDGET`] (24 h), and every deadline is
//! computed with [`instant_after`], which saturates instead of panicking, so no duration
//! a caller can pass (not even `Duration::MAX` to [`ambient::with_budget`]) reaches an
//! "overflow when adding duration to instant" panic.
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

/// The longest budget accepted: 24 hours. [`TimeoutBudget::new`], [`Deadline::new`] and
/// [`AttemptTimeout::new`] reject a longer one (and so does the configuration's
/// `[timeouts]` section). A call that needs longer is not a call this stack can bound
/// meaningfully.
pub const MAX_BUDGET: Duration = Duration::from_secs(24 * 3600);

/// How far ahead [`instant_after`] answers when `now + after` is past the clock's range:
/// about 30 years, "never" for any practical purpose (the same horizon tokio uses for a
/// sleep that cannot be represented).
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `now + after`, saturating: when the sum is not representable, an instant about
/// 30 years ahead (or, failing that, the latest instant this function can reach) instead
/// of a panic. Use it for every deadline built from a caller's duration.
///
/// ```
/// use std::time::Duration;
/// use mssql_resilience::deadline::instant_after;
/// use tokio::time::Instant;
///
/// let now = Instant::now();
/// assert_eq!(instant_after(now, Duration::from_secs(1)), now + Duration::from_secs(1));
/// assert!(instant_after(now, Duration::MAX) > now + Duration::from_secs(86_400 * 365));
/// ```
pub fn instant_after(now: Instant, after: Duration) -> Instant {
    if let Some(at) = now.checked_add(after) {
        return at;
    }
    let mut step = FAR_FUTURE.min(after);
    while !step.is_zero() {
        if let Some(at) = now.checked_add(step) {
            return at;
        }
        step /= 2;
    }
    now
}

/// Rejects a zero budget and one over [`MAX_BUDGET`], naming `field`.
fn check_budget(field: &'static str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        return Err(ConfigError::new(field, value, "must be greater than zero"));
    }
    if value > MAX_BUDGET {
        return Err(ConfigError::new(
            field,
            value,
            "must be at most 24h (`deadline::MAX_BUDGET`)",
        ));
    }
    Ok(())
}

/// The budget a call gets: the one its request asked for, capped at `max_total`, or
/// `total`. Records in the request how far past `total` it reaches, so the attempt bounds
/// grow by as much (a request granted 30 s instead of 5 s may spend 25 s more in one
/// attempt; the reserve for retries stays what it was).
fn granted_budget(
    ctx: &mut crate::request::RequestContext,
    total: Duration,
    max_total: Duration,
) -> Duration {
    let Some(asked) = ctx.requested_budget() else {
        return total;
    };
    let granted = asked.min(max_total);
    if granted < asked {
        tracing::debug!(
            target: "mssql_resilience",
            operation = %ctx.operation(),
            asked_ms = asked.as_millis() as u64,
            granted_ms = granted.as_millis() as u64,
            "request budget capped at timeouts.max_total"
        );
    }
    ctx.set_budget_extension(granted.saturating_sub(total));
    granted
}

/// A validated pair of timeouts: the total budget of a call and the bound of one attempt,
/// with the longest budget a single request may ask for (see
/// [`RequestContext::budget`](crate::request::RequestContext::budget)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeoutBudget {
    total: Duration,
    attempt: Duration,
    max_total: Duration,
}

impl TimeoutBudget {
    /// `total` bounds the whole call; `attempt` bounds each attempt.
    ///
    /// Rejects zero durations, durations over [`MAX_BUDGET`] (24 h) and `attempt > total`,
    /// naming the fields.
    pub fn new(total: Duration, attempt: Duration) -> Result<Self, ConfigError> {
        check_budget("total_timeout", total)?;
        check_budget("attempt_timeout", attempt)?;
        if attempt > total {
            return Err(ConfigError::new(
                "attempt_timeout",
                attempt,
                format!("must not exceed `total_timeout` ({total:?})"),
            ));
        }
        Ok(TimeoutBudget {
            total,
            attempt,
            max_total: total,
        })
    }

    /// Lets a request ask for a longer budget than `total` (with
    /// [`RequestContext::budget`](crate::request::RequestContext::budget)), up to `max_total`.
    /// Defaults to `total`: no request gets more than the default unless this is raised.
    ///
    /// Rejects `max_total` below `total` or over [`MAX_BUDGET`], naming `max_total_timeout`.
    pub fn with_max_total(mut self, max_total: Duration) -> Result<Self, ConfigError> {
        check_budget("max_total_timeout", max_total)?;
        if max_total < self.total {
            return Err(ConfigError::new(
                "max_total_timeout",
                max_total,
                format!("must not be less than `total_timeout` ({:?})", self.total),
            ));
        }
        self.max_total = max_total;
        Ok(self)
    }

    /// The total budget.
    pub fn total(&self) -> Duration {
        self.total
    }

    /// The longest budget a request may ask for.
    pub fn max_total(&self) -> Duration {
        self.max_total
    }

    /// The per-attempt bound.
    pub fn attempt(&self) -> Duration {
        self.attempt
    }

    /// The outer layer: the call's total deadline.
    pub fn deadline_layer(&self) -> DeadlineLayer {
        DeadlineLayer {
            total: self.total,
            max_total: self.max_total,
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
    max_total: Duration,
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
    /// Wraps `inner` with a total budget; `total` must be non-zero and at most
    /// [`MAX_BUDGET`] (24 h).
    pub fn new(inner: S, total: Duration) -> Result<Self, ConfigError> {
        check_budget("total_timeout", total)?;
        Ok(Deadline {
            inner,
            total,
            max_total: total,
            observer: None,
            enforce: true,
        })
    }

    /// Lets a request ask for a budget up to `max_total` (see
    /// [`TimeoutBudget::with_max_total`]); defaults to `total`.
    pub fn with_max_total(mut self, max_total: Duration) -> Result<Self, ConfigError> {
        let budget = TimeoutBudget::new(self.total, self.total)?.with_max_total(max_total)?;
        self.max_total = budget.max_total;
        Ok(self)
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
        let granted = granted_budget(ctx, self.total, self.max_total);
        let own = instant_after(now, granted);
        ctx.shorten_deadline(own);
        if let Some(ambient) = ambient::current() {
            ctx.shorten_deadline(ambient);
        }
        let deadline = ctx.deadline().unwrap_or(own);
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
    /// Wraps `inner` with a per-attempt timeout; `attempt` must be non-zero and at most
    /// [`MAX_BUDGET`] (24 h).
    pub fn new(inner: S, attempt: Duration) -> Result<Self, ConfigError> {
        check_budget("attempt_timeout", attempt)?;
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
        // The router's latency-aware bound for this attempt, if it set one; otherwise the
        // configured bound, grown by as much as the request's budget was.
        let attempt = ctx
            .attempt_limit()
            .unwrap_or_else(|| self.attempt.saturating_add(ctx.budget_extension()));
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
            _ => (instant_after(now, attempt), Expiry::Attempt(attempt, wire)),
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
