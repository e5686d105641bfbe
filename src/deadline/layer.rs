use std::time::Duration;

use tower::Layer;

use super::{AttemptTimeout, Deadline};
use crate::observe::SharedObserver;

/// Applies a total [`Deadline`] (timeout budget) to every call.
#[derive(Clone)]
pub struct DeadlineLayer {
    pub(super) total: Duration,
    pub(super) max_total: Duration,
    pub(super) observer: Option<SharedObserver>,
    pub(super) enforce: bool,
}

impl std::fmt::Debug for DeadlineLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadlineLayer")
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl DeadlineLayer {
    /// Only stamps the deadline into each request, without a timer of its own. For stacks
    /// whose inner layers already bound everything by it — every attempt under an
    /// [`AttemptTimeout`](super::AttemptTimeout), every retry sleep checked by the retry
    /// layer — as the [`Stack`](crate::Stack) builder's are; saves a timer per call.
    /// Defaults to enforcing.
    pub fn stamp_only(mut self) -> Self {
        self.enforce = false;
        self
    }

    /// Reports deadline events to `observer`. Defaults to none (tracing only).
    pub fn with_observer(mut self, observer: SharedObserver) -> Self {
        self.observer = Some(observer);
        self
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline {
            inner,
            total: self.total,
            max_total: self.max_total,
            observer: self.observer.clone(),
            enforce: self.enforce,
        }
    }
}

/// Applies a per-attempt timeout, cut to the remaining budget, to every call.
#[derive(Clone)]
pub struct AttemptTimeoutLayer {
    pub(super) attempt: Duration,
    pub(super) observer: Option<SharedObserver>,
}

impl std::fmt::Debug for AttemptTimeoutLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttemptTimeoutLayer")
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl AttemptTimeoutLayer {
    /// Reports timeout events to `observer`. Defaults to none (tracing only).
    pub fn with_observer(mut self, observer: SharedObserver) -> Self {
        self.observer = Some(observer);
        self
    }
}

impl<S> Layer<S> for AttemptTimeoutLayer {
    type Service = AttemptTimeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AttemptTimeout {
            inner,
            attempt: self.attempt,
            observer: self.observer.clone(),
        }
    }
}
