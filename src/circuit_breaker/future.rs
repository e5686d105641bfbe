//! The future returned by [`CircuitBreaker`](super::CircuitBreaker).

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::state::{CallResult, Permit};
use super::CircuitBreakerHandle;
use crate::error::{Error, Outcome};

pin_project! {
    /// Response future of the circuit breaker: records the call's result when it ends.
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Running {
            #[pin]
            inner: F,
            guard: Option<Guard>,
        },
        Rejected {
            error: Option<Error>,
        },
    }
}

/// Holds the permit; gives a probe slot back if the call is abandoned.
pub(super) struct Guard {
    handle: CircuitBreakerHandle,
    permit: Permit,
    start: Instant,
    finished: bool,
}

impl Guard {
    fn finish(mut self, result: CallResult) {
        self.finished = true;
        self.handle
            .record(self.permit, result, self.start.elapsed());
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.finished {
            self.handle.release(self.permit);
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn running(inner: F, handle: CircuitBreakerHandle, permit: Permit) -> Self {
        ResponseFuture {
            state: State::Running {
                inner,
                guard: Some(Guard {
                    handle,
                    permit,
                    start: Instant::now(),
                    finished: false,
                }),
            },
        }
    }

    /// A call let through without a permit (the router's last resort): its result is not
    /// recorded.
    pub(super) fn unrecorded(inner: F) -> Self {
        ResponseFuture {
            state: State::Running { inner, guard: None },
        }
    }

    pub(super) fn rejected(error: Error) -> Self {
        ResponseFuture {
            state: State::Rejected { error: Some(error) },
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<Error>,
{
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Rejected { error } => Poll::Ready(Err(error
                .take()
                .expect("ResponseFuture polled after completion"))),
            StateProj::Running { inner, guard } => {
                let result = ready!(inner.poll(cx)).map_err(Into::into);
                if let Some(guard) = guard.take() {
                    let verdict = match &result {
                        Ok(_) => CallResult::Success,
                        Err(e) => {
                            if guard.handle.classifier().classify(e).counts_as_failure {
                                CallResult::Failure
                            } else if e.outcome() == Outcome::Rejected {
                                // The dependency answered: it is reachable and working.
                                CallResult::Success
                            } else {
                                CallResult::Ignored
                            }
                        }
                    };
                    guard.finish(verdict);
                }
                Poll::Ready(result)
            }
        }
    }
}
