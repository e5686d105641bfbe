use tower::Layer;

use super::{CircuitBreaker, CircuitBreakerHandle};

/// Wraps services with a [`CircuitBreaker`]; every service it makes shares one breaker.
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer {
    handle: CircuitBreakerHandle,
}

impl CircuitBreakerLayer {
    /// A layer over the breaker `handle`.
    pub fn new(handle: CircuitBreakerHandle) -> Self {
        CircuitBreakerLayer { handle }
    }

    /// The shared breaker.
    pub fn handle(&self) -> &CircuitBreakerHandle {
        &self.handle
    }
}

impl<S> Layer<S> for CircuitBreakerLayer {
    type Service = CircuitBreaker<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker {
            inner,
            handle: self.handle.clone(),
        }
    }
}
