//! One small observer interface for everything the layers do that an operator may care
//! about.
//!
//! Each layer reports its events through [`Observer::on_event`]; the layer also emits a
//! `tracing` event for each one (target `mssql_resilience`), so logs work with no observer
//! at all. Metrics are an observer: the telemetry module connects these events to the
//! `metrics` facade; tests use [`RecordingObserver`] to assert on them.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::circuit_breaker::BreakerState;
use crate::error::{Error, RetryStop};
use crate::failover::Grade;
use crate::request::Intent;

/// Something a layer did.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Event<'a> {
    /// The retry layer will retry after `delay`.
    RetryScheduled {
        /// The request's operation name.
        operation: &'a str,
        /// The attempt that failed (1 = the first).
        attempt: u32,
        /// How long it will sleep first.
        delay: Duration,
        /// The failure being retried.
        error: &'a Error,
    },
    /// The retry layer gave up and is returning `error`.
    RetryStopped {
        /// The request's operation name.
        operation: &'a str,
        /// Attempts made.
        attempts: u32,
        /// Why it stopped.
        stop: RetryStop,
        /// The error returned to the caller.
        error: &'a Error,
    },
    /// A retry was wanted but the shared retry budget had none left.
    RetryBudgetExhausted {
        /// The request's operation name.
        operation: &'a str,
    },
    /// A circuit breaker changed state.
    BreakerTransition {
        /// The breaker's name.
        name: &'a str,
        /// The state it left.
        from: BreakerState,
        /// The state it entered.
        to: BreakerState,
    },
    /// A circuit breaker rejected a call without running it.
    BreakerRejected {
        /// The breaker's name.
        name: &'a str,
        /// Its state at the time.
        state: BreakerState,
    },
    /// A call's total deadline ran out.
    DeadlineExceeded {
        /// The request's operation name.
        operation: &'a str,
    },
    /// One attempt ran out of its own time.
    AttemptTimedOut {
        /// The request's operation name.
        operation: &'a str,
        /// The attempt's timeout.
        after: Duration,
    },
    /// Within one call, the request moved from one region to the next after a failure.
    FailoverAttempt {
        /// The request's operation name.
        operation: &'a str,
        /// The region that failed.
        from: &'a str,
        /// The region tried next.
        to: &'a str,
        /// Read or write.
        intent: Intent,
    },
    /// An idempotent request was slow on its region and was also sent to the next one —
    /// or, on the last region it could use, sent to that region again on another
    /// connection (`to` equals `from`): a second chance.
    Hedged {
        /// The request's operation name.
        operation: &'a str,
        /// The slow region.
        from: &'a str,
        /// The region also asked.
        to: &'a str,
    },
    /// The region that takes new requests of an intent changed (failover or fail-back).
    RegionSwitched {
        /// Read or write.
        intent: Intent,
        /// The region that took them before (none at start).
        from: Option<&'a str>,
        /// The region that takes them now (none: no region is eligible).
        to: Option<&'a str>,
    },
    /// A region's probed health or writability changed.
    RegionHealthChanged {
        /// The region.
        region: &'a str,
        /// Not down (it answers probes or live requests).
        healthy: bool,
        /// Healthy, degraded or down.
        grade: Grade,
        /// Writable by its probes.
        writable: bool,
    },
    /// A read was answered by a region that is not writable (a replica that may lag).
    StaleRead {
        /// The request's operation name.
        operation: &'a str,
        /// The region that answered.
        region: &'a str,
    },
    /// A gateway redirect was followed while connecting.
    RedirectFollowed {
        /// The region.
        region: &'a str,
    },
    /// A connection attempt (TCP + PRELOGIN + login, redirects included) ended. An
    /// attempt that timed out (`ok: false`) but ran on as a spare and opened its
    /// connection later is reported again then, with `ok: true` (see
    /// [`ManagerStats::late_connects`](crate::pool::ManagerStats::late_connects)).
    ConnectFinished {
        /// The region.
        region: &'a str,
        /// How long it took.
        duration: Duration,
        /// Whether it succeeded.
        ok: bool,
    },
    /// A pool checkout ended (with a connection or not).
    CheckoutFinished {
        /// The region.
        region: &'a str,
        /// How long it waited.
        waited: Duration,
    },
    /// One attempt on a region ended (`outcome` is `None` on success).
    AttemptFinished {
        /// The region.
        region: &'a str,
        /// Read or write.
        intent: Intent,
        /// How it failed, if it did.
        outcome: Option<crate::error::Outcome>,
    },
}

/// Receives the layers' events. Must be cheap: it runs on the request path.
pub trait Observer: Send + Sync + 'static {
    /// Called once per event.
    fn on_event(&self, event: &Event<'_>);
}

/// A shared observer, as the layers hold it.
pub type SharedObserver = Arc<dyn Observer>;

/// Hands every event to several observers in turn (e.g. metrics and a test recorder).
#[derive(Clone, Default)]
pub struct Fanout(pub Vec<SharedObserver>);

impl fmt::Debug for Fanout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Fanout").field(&self.0.len()).finish()
    }
}

impl Observer for Fanout {
    fn on_event(&self, event: &Event<'_>) {
        for observer in &self.0 {
            observer.on_event(event);
        }
    }
}

/// Emits the `tracing` event for `event`, then hands it to `observer` if any.
pub(crate) fn emit(observer: Option<&SharedObserver>, event: Event<'_>) {
    match &event {
        Event::RetryScheduled {
            operation,
            attempt,
            delay,
            error,
        } => tracing::debug!(
            target: "mssql_resilience",
            operation = operation, attempt, delay_ms = delay.as_millis() as u64,
            error_type = error.kind().as_str(), outcome = error.outcome().as_str(),
            "retry scheduled: {}", error.for_logs()
        ),
        Event::RetryStopped {
            operation,
            attempts,
            stop,
            error,
        } => tracing::debug!(
            target: "mssql_resilience",
            operation = operation, attempts, stop = stop.as_str(),
            error_type = error.kind().as_str(), "retries stopped"
        ),
        Event::RetryBudgetExhausted { operation } => tracing::warn!(
            target: "mssql_resilience",
            operation = operation, "retry budget exhausted: returning the error without retrying"
        ),
        Event::BreakerTransition { name, from, to } => tracing::warn!(
            target: "mssql_resilience",
            breaker = name, from = from.as_str(), to = to.as_str(), "circuit breaker transition"
        ),
        Event::BreakerRejected { name, state } => tracing::debug!(
            target: "mssql_resilience",
            breaker = name, state = state.as_str(), "circuit breaker rejected a call"
        ),
        Event::DeadlineExceeded { operation } => tracing::debug!(
            target: "mssql_resilience",
            operation = operation, "deadline exceeded"
        ),
        Event::AttemptTimedOut { operation, after } => tracing::debug!(
            target: "mssql_resilience",
            operation = operation, after_ms = after.as_millis() as u64, "attempt timed out"
        ),
        Event::FailoverAttempt {
            operation,
            from,
            to,
            intent,
        } => tracing::info!(
            target: "mssql_resilience",
            operation = operation, from = from, to = to, intent = intent.as_str(),
            "request failed over to the next region"
        ),
        Event::Hedged {
            operation,
            from,
            to,
        } => tracing::debug!(
            target: "mssql_resilience",
            operation = operation, from = from, to = to, "slow request hedged"
        ),
        Event::RegionSwitched { intent, from, to } => tracing::warn!(
            target: "mssql_resilience",
            intent = intent.as_str(), from = from.unwrap_or("none"), to = to.unwrap_or("none"),
            "routing switched region"
        ),
        Event::RegionHealthChanged {
            region,
            healthy,
            grade,
            writable,
        } => tracing::warn!(
            target: "mssql_resilience",
            region = region, healthy = healthy, grade = grade.as_str(), writable = writable,
            "region health changed"
        ),
        Event::StaleRead { operation, region } => tracing::debug!(
            target: "mssql_resilience",
            operation = operation, region = region, "read answered by a read-only region"
        ),
        Event::RedirectFollowed { region } => tracing::debug!(
            target: "mssql_resilience",
            region = region, "gateway redirect followed"
        ),
        Event::ConnectFinished {
            region,
            duration,
            ok,
        } => tracing::debug!(
            target: "mssql_resilience",
            region = region, duration_ms = duration.as_millis() as u64, ok = ok, "connect finished"
        ),
        Event::CheckoutFinished { region, waited } => tracing::trace!(
            target: "mssql_resilience",
            region = region, waited_us = waited.as_micros() as u64, "pool checkout finished"
        ),
        Event::AttemptFinished {
            region,
            intent,
            outcome,
        } => tracing::trace!(
            target: "mssql_resilience",
            region = region, intent = intent.as_str(), outcome = outcome.map_or("success", |o| o.as_str()), "attempt finished"
        ),
    }
    if let Some(observer) = observer {
        observer.on_event(&event);
    }
}

/// An owned summary of an [`Event`], as [`RecordingObserver`] keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Recorded {
    /// See [`Event::RetryScheduled`].
    RetryScheduled {
        /// Failed attempt number.
        attempt: u32,
        /// Delay before the retry.
        delay: Duration,
    },
    /// See [`Event::RetryStopped`].
    RetryStopped {
        /// Attempts made.
        attempts: u32,
        /// Why.
        stop: RetryStop,
    },
    /// See [`Event::RetryBudgetExhausted`].
    RetryBudgetExhausted,
    /// See [`Event::BreakerTransition`].
    BreakerTransition {
        /// Breaker name.
        name: Cow<'static, str>,
        /// Left state.
        from: BreakerState,
        /// Entered state.
        to: BreakerState,
    },
    /// See [`Event::BreakerRejected`].
    BreakerRejected {
        /// Breaker name.
        name: Cow<'static, str>,
    },
    /// See [`Event::DeadlineExceeded`].
    DeadlineExceeded,
    /// See [`Event::AttemptTimedOut`].
    AttemptTimedOut {
        /// The attempt's timeout.
        after: Duration,
    },
    /// See [`Event::FailoverAttempt`].
    FailoverAttempt {
        /// From region.
        from: String,
        /// To region.
        to: String,
        /// Intent.
        intent: Intent,
    },
    /// See [`Event::Hedged`].
    Hedged {
        /// Slow region.
        from: String,
        /// Region also asked.
        to: String,
    },
    /// See [`Event::RegionSwitched`].
    RegionSwitched {
        /// Intent.
        intent: Intent,
        /// Previous region.
        from: Option<String>,
        /// New region.
        to: Option<String>,
    },
    /// See [`Event::RegionHealthChanged`].
    RegionHealthChanged {
        /// Region.
        region: String,
        /// Not down.
        healthy: bool,
        /// Grade.
        grade: Grade,
        /// Writable.
        writable: bool,
    },
    /// See [`Event::StaleRead`].
    StaleRead {
        /// Region that answered.
        region: String,
    },
    /// See [`Event::RedirectFollowed`].
    RedirectFollowed {
        /// Region.
        region: String,
    },
    /// See [`Event::ConnectFinished`].
    ConnectFinished {
        /// Region.
        region: String,
        /// Whether it succeeded.
        ok: bool,
    },
    /// See [`Event::CheckoutFinished`].
    CheckoutFinished {
        /// Region.
        region: String,
    },
    /// See [`Event::AttemptFinished`].
    AttemptFinished {
        /// Region.
        region: String,
        /// Read or write.
        intent: Intent,
        /// Failure outcome, `None` on success.
        outcome: Option<crate::error::Outcome>,
    },
}

/// An observer that keeps every event, for tests and diagnostics.
#[derive(Default, Clone)]
pub struct RecordingObserver {
    events: Arc<Mutex<Vec<Recorded>>>,
}

impl fmt::Debug for RecordingObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordingObserver")
            .field("events", &self.events().len())
            .finish()
    }
}

impl RecordingObserver {
    /// A new, empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything recorded so far, in order.
    pub fn events(&self) -> Vec<Recorded> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// This recorder as a [`SharedObserver`].
    pub fn shared(&self) -> SharedObserver {
        Arc::new(self.clone())
    }
}

impl Observer for RecordingObserver {
    fn on_event(&self, event: &Event<'_>) {
        let recorded = match *event {
            Event::RetryScheduled { attempt, delay, .. } => {
                Recorded::RetryScheduled { attempt, delay }
            }
            Event::RetryStopped { attempts, stop, .. } => Recorded::RetryStopped { attempts, stop },
            Event::RetryBudgetExhausted { .. } => Recorded::RetryBudgetExhausted,
            Event::BreakerTransition { name, from, to } => Recorded::BreakerTransition {
                name: Cow::Owned(name.to_owned()),
                from,
                to,
            },
            Event::BreakerRejected { name, .. } => Recorded::BreakerRejected {
                name: Cow::Owned(name.to_owned()),
            },
            Event::DeadlineExceeded { .. } => Recorded::DeadlineExceeded,
            Event::AttemptTimedOut { after, .. } => Recorded::AttemptTimedOut { after },
            Event::FailoverAttempt {
                from, to, intent, ..
            } => Recorded::FailoverAttempt {
                from: from.to_owned(),
                to: to.to_owned(),
                intent,
            },
            Event::Hedged { from, to, .. } => Recorded::Hedged {
                from: from.to_owned(),
                to: to.to_owned(),
            },
            Event::RegionSwitched { intent, from, to } => Recorded::RegionSwitched {
                intent,
                from: from.map(str::to_owned),
                to: to.map(str::to_owned),
            },
            Event::RegionHealthChanged {
                region,
                healthy,
                grade,
                writable,
            } => Recorded::RegionHealthChanged {
                region: region.to_owned(),
                healthy,
                grade,
                writable,
            },
            Event::StaleRead { region, .. } => Recorded::StaleRead {
                region: region.to_owned(),
            },
            Event::RedirectFollowed { region } => Recorded::RedirectFollowed {
                region: region.to_owned(),
            },
            Event::ConnectFinished { region, ok, .. } => Recorded::ConnectFinished {
                region: region.to_owned(),
                ok,
            },
            Event::CheckoutFinished { region, .. } => Recorded::CheckoutFinished {
                region: region.to_owned(),
            },
            Event::AttemptFinished {
                region,
                intent,
                outcome,
            } => Recorded::AttemptFinished {
                region: region.to_owned(),
                intent,
                outcome,
            },
        };
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(recorded);
    }
}
