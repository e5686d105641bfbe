use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tower::Layer;

use super::{Retry, RetryPolicy, Shared};
use crate::classify::{SharedClassifier, SqlServerClassifier};
use crate::observe::SharedObserver;
use crate::retry::budget::RetryBudget;

/// Wraps services with [`Retry`].
#[derive(Clone)]
pub struct RetryLayer {
    policy: RetryPolicy,
    classifier: SharedClassifier,
    budget: Option<RetryBudget>,
    observer: Option<SharedObserver>,
}

impl std::fmt::Debug for RetryLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryLayer")
            .field("policy", &self.policy)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl RetryLayer {
    /// Retries by `policy`, classifying with [`SqlServerClassifier`], with no budget and no
    /// observer.
    pub fn new(policy: RetryPolicy) -> Self {
        RetryLayer {
            policy,
            classifier: Arc::new(SqlServerClassifier::new()),
            budget: None,
            observer: None,
        }
    }

    /// Classifies errors with `classifier`. Defaults to [`SqlServerClassifier`].
    pub fn with_classifier(mut self, classifier: SharedClassifier) -> Self {
        self.classifier = classifier;
        self
    }

    /// Draws every retry from `budget` (share it with failover). Defaults to no budget.
    pub fn with_budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Reports retry events to `observer`. Defaults to none (tracing only).
    pub fn with_observer(mut self, observer: SharedObserver) -> Self {
        self.observer = Some(observer);
        self
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry {
            inner,
            shared: Arc::new(Shared {
                policy: self.policy,
                classifier: self.classifier.clone(),
                budget: self.budget.clone(),
                observer: self.observer.clone(),
                calls: AtomicU64::new(0),
                polling: Default::default(),
            }),
        }
    }
}
