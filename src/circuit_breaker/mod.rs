//! Circuit breaker: stop calling a dependency that is failing, and probe it back carefully.
//!
//! During an outage every call to a black-holed database waits out its full timeout. A
//! breaker turns that into an immediate, cheap rejection ([`ErrorKind::CircuitOpen`], a
//! *not-sent* error, so the failover router can move on to the next region at once) and
//! spares the database a stampede while it recovers.
//!
//! The design follows resilience4j and Polly: a [sliding window](window) (last *N* calls or
//! last *T*), a failure-rate and a slow-call-rate threshold judged only once the window
//! holds `minimum_calls`, an open duration that grows on consecutive re-openings and is
//! jittered so a fleet does not probe in lock-step, and a half-open state that lets
//! `half_open_calls` probes through (others are rejected at once). What counts as a
//! failure is the [classifier](crate::classify)'s `counts_as_failure`: a syntax error or a
//! constraint violation proves the database is up, so it counts as a success; errors where
//! nothing reached the dependency are ignored.
//!
//! The [`CircuitBreakerHandle`] gives a cheap state read, a snapshot, a subscription to
//! transitions, and manual [`isolate`](CircuitBreakerHandle::isolate) /
//! [`reset`](CircuitBreakerHandle::reset).
//!
//! ```
//! use std::time::Duration;
//! use mssql_resilience::circuit_breaker::{
//!     BreakerState, CircuitBreakerConfig, CircuitBreakerHandle, CircuitBreakerLayer, WindowKind,
//! };
//!
//! let config = CircuitBreakerConfig::builder("westeurope")
//!     .window(WindowKind::Count(20))
//!     .minimum_calls(10)
//!     .failure_rate_threshold(0.5)
//!     .open_duration(Duration::from_secs(5))
//!     .build()?;
//! let breaker = CircuitBreakerHandle::new(config);
//! let layer = CircuitBreakerLayer::new(breaker.clone());
//! assert_eq!(breaker.state(), BreakerState::Closed);
//! # let _ = layer;
//! # Ok::<(), mssql_resilience::ConfigError>(())
//! ```
//!
//! [`ErrorKind::CircuitOpen`]: crate::error::ErrorKind::CircuitOpen

pub mod config;
pub mod future;
mod layer;
pub mod state;
pub mod window;

use std::task::{Context, Poll};

use tower::Service;

pub use self::config::{CircuitBreakerConfig, CircuitBreakerConfigBuilder};
use self::future::ResponseFuture;
pub use self::layer::CircuitBreakerLayer;
pub use self::state::{BreakerSnapshot, BreakerState, CircuitBreakerHandle, Transition};
pub use self::window::{Totals, WindowKind};
use crate::error::Error;
use crate::observe::{emit, Event};

/// Rejects calls while its breaker is open. See the [module docs](self).
#[derive(Clone)]
pub struct CircuitBreaker<S> {
    inner: S,
    handle: CircuitBreakerHandle,
}

impl<S: std::fmt::Debug> std::fmt::Debug for CircuitBreaker<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("inner", &self.inner)
            .field("breaker", &self.handle)
            .finish()
    }
}

impl<S> CircuitBreaker<S> {
    /// Wraps `inner` with the breaker `handle`.
    pub fn new(inner: S, handle: CircuitBreakerHandle) -> Self {
        CircuitBreaker { inner, handle }
    }

    /// The breaker.
    pub fn handle(&self) -> &CircuitBreakerHandle {
        &self.handle
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

impl<S, Req> Service<Req> for CircuitBreaker<S>
where
    S: Service<Req>,
    S::Error: Into<Error>,
    Req: crate::request::HasContext,
{
    type Response = S::Response;
    type Error = Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match self.handle.acquire() {
            Ok(permit) => {
                ResponseFuture::running(self.inner.call(req), self.handle.clone(), permit)
            }
            // The router's last resort: no other region can take the request, so an open
            // (not isolated) breaker lets it through unrecorded rather than fail it fast.
            Err(BreakerState::Open | BreakerState::HalfOpen) if req.context().breaker_bypass() => {
                ResponseFuture::unrecorded(self.inner.call(req))
            }
            Err(state) => {
                emit(
                    self.handle.observer(),
                    Event::BreakerRejected {
                        name: self.handle.name(),
                        state,
                    },
                );
                ResponseFuture::rejected(Error::circuit_open(self.handle.name().to_owned()))
            }
        }
    }
}
