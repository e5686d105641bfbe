//! Retries with jittered backoff, a retry budget, and the write-safety rules.
//!
//! A failed attempt is retried only when all of these hold:
//!
//! 1. the [classifier](crate::classify) calls the error retryable (a syntax error or a
//!    constraint violation never is);
//! 2. the [write-safety rule](crate::safety) allows it: an [`Outcome::Ambiguous`](crate::error::Outcome::Ambiguous) failure (sent, then the
//!    connection broke or the attempt timed out), or a rejected one whose error does not
//!    prove that nothing was applied ([`Error::may_have_applied`]), is retried only when
//!    the request is idempotent; otherwise the error comes back with
//!    [`Error::is_outcome_unknown`] true;
//! 3. fewer than `max_attempts` attempts were made;
//! 4. the next delay — the [backoff] delay, or the server's hint if longer (40501
//!    asks for 10 s) — plus a reserve for the attempt itself fits before the call's
//!    deadline. If not, the layer stops *now* rather than sleep into certain failure, and
//!    the error says so ([`RetryStop::DeadlineWouldBeExceeded`]);
//! 5. the shared [retry budget](budget), if any, has a retry left.
//!
//! A call the failover router **turned away** before trying any region
//! ([`Error::is_turned_away`]: each region that could take it saturated or isolated by hand,
//! or none writable for a write) put no load on any server. When the call has a deadline and
//! the policy retries at all, such a failure neither uses up one of `max_attempts` nor
//! draws on the budget: the call is tried again after the backoff (which keeps growing to
//! its cap) for as long as rule 4 allows, so a request that arrives while the only region
//! it can use is full or not yet back gets in when room appears instead of giving up three
//! backoffs later. At most [`RetryPolicy::max_polling`] calls sleep before such a free try
//! at once (default 100): they hold the service's request slots while they sleep. When
//! that many sleep, the one due first gives way to a newcomer due later (it ends at once,
//! [`RetryStop::GaveWay`]): they wait for a region to come back or make room, and the call
//! due first has the least time left to see it — the rule of a down region's line of
//! requests waiting for a connection. A newcomer due no later than all of them counts its
//! try instead, so it fails within its attempts, fast, as before. A failure after which
//! anything was sent, or a connection was opened or waited for, counts as usual — a retry
//! after a failed login adds a login.
//!
//! Every returned error carries the number of attempts and the [`RetryStop`] reason.
//!
//! ```
//! use std::time::Duration;
//! use mssql_resilience::retry::{RetryLayer, RetryPolicy, backoff::{Backoff, Jitter}, budget::RetryBudget};
//!
//! let backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2), Jitter::Full)?;
//! let layer = RetryLayer::new(RetryPolicy::new(3, backoff)?).with_budget(RetryBudget::default());
//! # let _ = layer;
//! # Ok::<(), mssql_resilience::ConfigError>(())
//! ```

pub mod backoff;
pub mod budget;
pub mod future;
mod layer;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower::{Service, ServiceExt};

use self::backoff::Backoff;
use self::budget::RetryBudget;
use self::future::ResponseFuture;
pub use self::layer::RetryLayer;
use crate::classify::SharedClassifier;
use crate::error::{ConfigError, Error, RetryStop};
use crate::observe::{emit, Event, SharedObserver};
use crate::pool::waiting::Waiting;
use crate::request::HasContext;

/// The most attempts a policy may allow.
pub const MAX_ATTEMPTS_LIMIT: u32 = 100;

/// The largest [`RetryPolicy::with_max_polling`] a policy accepts.
pub const MAX_POLLING_LIMIT: u32 = 100_000;

/// How many attempts, how far apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    max_attempts: u32,
    backoff: Backoff,
    attempt_reserve: Duration,
    max_polling: u32,
    seed: Option<u64>,
}

impl Default for RetryPolicy {
    /// 3 attempts, [`Backoff::default`] (50 ms base, 2 s cap, full jitter), 10 ms reserve,
    /// at most 100 calls polling at once.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            backoff: Backoff::default(),
            attempt_reserve: Duration::from_millis(10),
            max_polling: 100,
            seed: None,
        }
    }
}

impl RetryPolicy {
    /// At most `max_attempts` attempts in all (1 = no retries), spaced by `backoff`.
    pub fn new(max_attempts: u32, backoff: Backoff) -> Result<Self, ConfigError> {
        if !(1..=MAX_ATTEMPTS_LIMIT).contains(&max_attempts) {
            return Err(ConfigError::new(
                "retry.max_attempts",
                max_attempts,
                format!("must be between 1 and {MAX_ATTEMPTS_LIMIT}"),
            ));
        }
        Ok(RetryPolicy {
            max_attempts,
            backoff,
            ..RetryPolicy::default()
        })
    }

    /// The least time that must remain after a backoff sleep for a retry to be worth
    /// starting. Defaults to 10 ms. Any value is safe: a reserve longer than the call's
    /// budget just means no retry fits (the sum is saturating).
    pub fn with_attempt_reserve(mut self, reserve: Duration) -> Self {
        self.attempt_reserve = reserve;
        self
    }

    /// At most `max_polling` calls of this layer (all its clones together) sleep at once
    /// before a try that does not count, after being [turned away](Error::is_turned_away).
    /// A call turned away while that many sleep takes the place of the one due first if
    /// that one is due earlier (which ends at once, [`RetryStop::GaveWay`]); otherwise it
    /// counts the try as any other failure, so it fails within its `max_attempts`. Sleeping
    /// calls hold the service's request slots: the bound keeps a long outage from taking
    /// all of them, as the router's bound on requests waiting on one region does. 0 turns
    /// polling off.
    /// Default 100 (as many requests as a region's pool, at its default size, may hold).
    pub fn with_max_polling(mut self, max_polling: u32) -> Result<Self, ConfigError> {
        if max_polling > MAX_POLLING_LIMIT {
            return Err(ConfigError::new(
                "retry.max_polling",
                max_polling,
                format!("must be at most {MAX_POLLING_LIMIT}"),
            ));
        }
        self.max_polling = max_polling;
        Ok(self)
    }

    /// How many calls may poll at once (see [`with_max_polling`](Self::with_max_polling)).
    pub fn max_polling(&self) -> u32 {
        self.max_polling
    }

    /// Seeds the jitter, for reproducible runs. Defaults to a random seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Attempts in all.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The backoff between attempts.
    pub fn backoff(&self) -> Backoff {
        self.backoff
    }
}

struct Shared {
    policy: RetryPolicy,
    classifier: SharedClassifier,
    budget: Option<RetryBudget>,
    observer: Option<SharedObserver>,
    calls: AtomicU64,
    /// Calls sleeping before a free try after being turned away, and until when (at
    /// most `policy.max_polling`; a full line makes room for a call due later).
    polling: Arc<Waiting>,
}

impl Shared {
    fn rng(&self) -> fastrand::Rng {
        match self.policy.seed {
            Some(seed) => {
                let n = self.calls.fetch_add(1, Ordering::Relaxed);
                fastrand::Rng::with_seed(seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            }
            None => fastrand::Rng::new(),
        }
    }
}

/// Retries failed calls. See the [module docs](self).
pub struct Retry<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: Clone> Clone for Retry<S> {
    fn clone(&self) -> Self {
        Retry {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for Retry<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("policy", &self.shared.policy)
            .finish_non_exhaustive()
    }
}

impl<S> Retry<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req> Service<Req> for Retry<S>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<Error>,
    S::Response: Send + 'static,
    Req: HasContext + Clone + Send + 'static,
{
    type Response = S::Response;
    type Error = Error;
    type Future = ResponseFuture<S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        // The ready service takes the first attempt; `self` keeps a fresh clone.
        let clone = self.inner.clone();
        let svc = std::mem::replace(&mut self.inner, clone);
        if let Some(budget) = &self.shared.budget {
            budget.deposit();
        }
        ResponseFuture {
            inner: Box::pin(run(svc, self.shared.clone(), req)),
        }
    }
}

/// The attempts of one call. A plain `fn` returning an `async move` block that uses what it
/// captured in place: an `async fn` keeps its arguments twice in its future
/// (rust-lang/rust#62958), and this future is allocated on every call.
fn run<S, Req>(
    mut svc: S,
    shared: Arc<Shared>,
    req: Req,
) -> impl std::future::Future<Output = Result<S::Response, Error>>
where
    S: Service<Req>,
    S::Error: Into<Error>,
    Req: HasContext + Clone,
{
    let mut pending = Some(req);
    async move {
        let policy = shared.policy;
        let mut schedule = None;
        // Tries made, and the failed ones that count against `max_attempts` (a try the
        // router turned away, while the call may poll, does not).
        let mut attempt: u32 = 1;
        let mut counted: u32 = 0;
        loop {
            let req = pending.take().expect("a request is kept for every attempt");
            let ctx = req.context();
            let (idempotent, deadline, operation) =
                (ctx.is_idempotent(), ctx.deadline(), ctx.operation_cow());
            if counted + 1 < policy.max_attempts || may_poll(&policy, deadline) {
                pending = Some(req.clone());
            }
            let mut error: Error = match svc.call(req).await {
                Ok(response) => return Ok(response),
                Err(e) => e.into(),
            };
            let verdict = shared.classifier.classify(&error);
            // A turned-away call may sleep before a free try, if it gets a place among the
            // polling calls: taken only once it is sure to sleep (a call that stops anyway
            // must not push a sleeper out), held through the sleep, given back before the
            // next try. Without one, the try counts.
            let may_be_free = error.is_turned_away() && may_poll(&policy, deadline);
            if !may_be_free {
                counted += 1;
            }
            let stop = if !verdict.retryable {
                Some(RetryStop::NotRetryable)
            } else if !crate::safety::may_resend_idempotent(idempotent, &error) {
                Some(RetryStop::NotIdempotent)
            } else if counted >= policy.max_attempts {
                Some(RetryStop::MaxAttempts)
            } else {
                let backoff = schedule
                    .get_or_insert_with(|| policy.backoff.schedule(shared.rng()))
                    .next()
                    .unwrap_or(policy.backoff.cap());
                let delay = backoff.max(verdict.delay_hint.unwrap_or_default());
                let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                match remaining {
                    Some(remaining)
                        if delay.saturating_add(policy.attempt_reserve) >= remaining =>
                    {
                        Some(RetryStop::DeadlineWouldBeExceeded {
                            next_delay: delay,
                            remaining,
                        })
                    }
                    _ => {
                        let polling = match deadline {
                            Some(due) if may_be_free => shared
                                .polling
                                .enter_bounded(due, policy.max_polling as usize),
                            _ => None,
                        };
                        if may_be_free && polling.is_none() {
                            counted += 1;
                        }
                        if counted >= policy.max_attempts {
                            Some(RetryStop::MaxAttempts)
                        } else if polling.is_none()
                            && shared.budget.as_ref().is_some_and(|b| !b.try_withdraw())
                        {
                            emit(
                                shared.observer.as_ref(),
                                Event::RetryBudgetExhausted {
                                    operation: &operation,
                                },
                            );
                            Some(RetryStop::BudgetExhausted)
                        } else {
                            emit(
                                shared.observer.as_ref(),
                                Event::RetryScheduled {
                                    operation: &operation,
                                    attempt,
                                    delay,
                                    error: &error,
                                },
                            );
                            match polling {
                                // A call due later took this one's place in the line.
                                Some(place) => tokio::select! {
                                    () = tokio::time::sleep(delay) => None,
                                    () = place.told_to_give_way() => Some(RetryStop::GaveWay),
                                },
                                None => {
                                    tokio::time::sleep(delay).await;
                                    None
                                }
                            }
                        }
                    }
                }
            };
            if let Some(stop) = stop {
                error.set_retry_context(attempt, stop, idempotent);
                emit(
                    shared.observer.as_ref(),
                    Event::RetryStopped {
                        operation: &operation,
                        attempts: attempt,
                        stop,
                        error: &error,
                    },
                );
                return Err(error);
            }
            if let Err(e) = svc.ready().await {
                let mut error: Error = e.into();
                error.set_retry_context(attempt, RetryStop::NotRetryable, idempotent);
                return Err(error);
            }
            attempt += 1;
        }
    }
}

/// Whether a call [turned away](Error::is_turned_away) may be tried again without it
/// counting as an attempt: only when it has a deadline to stop it, and only when the
/// policy retries at all (`max_attempts = 1` means no retries of any kind) and polls.
fn may_poll(policy: &RetryPolicy, deadline: Option<Instant>) -> bool {
    policy.max_attempts > 1 && policy.max_polling > 0 && deadline.is_some()
}
