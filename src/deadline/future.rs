//! The futures returned by [`Deadline`](super::Deadline) and
//! [`AttemptTimeout`](super::AttemptTimeout).

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Sleep;

use crate::error::{Error, ErrorKind, Outcome, TimeoutScope};
use crate::observe::{emit, Event, SharedObserver};
use crate::request::WireState;

/// What running out of time means for this future.
#[derive(Debug, Clone)]
pub(super) enum Expiry {
    /// The call's total deadline; with the attempt's wire state when an attempt layer hit it.
    Deadline(Option<Arc<WireState>>),
    /// The attempt's own timeout of this length.
    Attempt(Duration, Arc<WireState>),
}

impl Expiry {
    fn outcome(&self) -> Outcome {
        match self {
            Expiry::Deadline(Some(wire)) | Expiry::Attempt(_, wire) => wire.outcome_if_lost(),
            Expiry::Deadline(None) => Outcome::Ambiguous,
        }
    }
}

pin_project! {
    /// Response future of the deadline and attempt-timeout layers.
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
            #[pin]
            sleep: Sleep,
            expiry: Expiry,
            operation: Cow<'static, str>,
            idempotent: bool,
            observer: Option<SharedObserver>,
        },
        Failed {
            error: Option<Error>,
        },
        Unbounded {
            #[pin]
            inner: F,
            idempotent: bool,
        },
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn running(
        inner: F,
        sleep: Sleep,
        expiry: Expiry,
        operation: Cow<'static, str>,
        idempotent: bool,
        observer: Option<SharedObserver>,
    ) -> Self {
        ResponseFuture {
            state: State::Running {
                inner,
                sleep,
                expiry,
                operation,
                idempotent,
                observer,
            },
        }
    }

    /// No timer of its own: the inner layers bound the call (see
    /// [`DeadlineLayer::stamp_only`](super::DeadlineLayer::stamp_only)).
    pub(super) fn unbounded(inner: F, idempotent: bool) -> Self {
        ResponseFuture {
            state: State::Unbounded { inner, idempotent },
        }
    }

    pub(super) fn failed(error: Error) -> Self {
        ResponseFuture {
            state: State::Failed { error: Some(error) },
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
            StateProj::Failed { error } => Poll::Ready(Err(error
                .take()
                .expect("ResponseFuture polled after completion"))),
            StateProj::Unbounded { inner, idempotent } => {
                Poll::Ready(ready!(inner.poll(cx)).map_err(|e| {
                    let mut e: Error = e.into();
                    e.note_idempotency(*idempotent);
                    e
                }))
            }
            StateProj::Running {
                inner,
                sleep,
                expiry,
                operation,
                idempotent,
                observer,
            } => {
                // The inner future first: when it and the timer are both ready, its own
                // (better-informed) answer wins.
                if let Poll::Ready(result) = inner.poll(cx) {
                    return Poll::Ready(result.map_err(|e| {
                        let mut e: Error = e.into();
                        e.note_idempotency(*idempotent);
                        e
                    }));
                }
                ready!(sleep.poll(cx));
                let outcome = expiry.outcome();
                let mut error = match &*expiry {
                    Expiry::Deadline(_) => {
                        emit(
                            observer.as_ref(),
                            Event::DeadlineExceeded {
                                operation: operation.as_ref(),
                            },
                        );
                        Error::deadline_exceeded(outcome)
                    }
                    Expiry::Attempt(after, _) => {
                        let after = *after;
                        emit(
                            observer.as_ref(),
                            Event::AttemptTimedOut {
                                operation: operation.as_ref(),
                                after,
                            },
                        );
                        Error::new(
                            ErrorKind::Timeout {
                                scope: TimeoutScope::Attempt,
                                after,
                            },
                            outcome,
                        )
                    }
                };
                error.note_idempotency(*idempotent);
                Poll::Ready(Err(error))
            }
        }
    }
}
