//! Deciding *what a failure means*, apart from the layers that react to it.
//!
//! Two questions are asked of every [`Error`], and they are answered separately because
//! they differ: a syntax error is neither retryable nor a sign of a sick database, while a
//! `Routing` redirect is retryable but says nothing bad about the database's health.
//!
//! - **Is it worth another attempt?** ([`Classification::retryable`]). The retry layer then
//!   also applies the write-safety rule: an [`Outcome::Ambiguous`] failure, or a rejected one
//!   that [`may have applied`](Error::may_have_applied), is retried only when the request is
//!   idempotent; [`rollback`] says which server errors prove that nothing was applied.
//! - **Does it count against the dependency's health?** ([`Classification::counts_as_failure`]),
//!   read by the circuit breaker and the failover router.
//!
//! [`SqlServerClassifier`] is the default: server errors are transient when their number is
//! in [`transient::TRANSIENT_NUMBERS`]; I/O errors and client-side timeouts are retryable
//! but ambiguous once sent (so "client-side timeouts are ambiguous, not transient": the
//! write-safety rule decides); 40501 asks for at least 10 s before the next try.

pub mod rollback;
pub mod transient;

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, ErrorKind, Outcome, TimeoutScope};

/// The verdict on one error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classification {
    /// Another attempt may succeed (subject to idempotency when the outcome is ambiguous).
    pub retryable: bool,
    /// The failure says the dependency is unhealthy (feeds breakers and failover).
    pub counts_as_failure: bool,
    /// The least time the server asked the client to wait before retrying.
    pub delay_hint: Option<Duration>,
}

impl Classification {
    /// Permanent and harmless to health: a caller error (syntax, constraint, conversion).
    pub const PERMANENT: Classification = Classification {
        retryable: false,
        counts_as_failure: false,
        delay_hint: None,
    };
    /// Retryable and a sign of trouble: transient server errors, broken connections, timeouts.
    pub const TRANSIENT: Classification = Classification {
        retryable: true,
        counts_as_failure: true,
        delay_hint: None,
    };
}

/// Classifies errors. Shared by the retry layer, the circuit breaker and failover.
pub trait Classify: Send + Sync + 'static {
    /// The verdict on `error`.
    fn classify(&self, error: &Error) -> Classification;
}

impl<F> Classify for F
where
    F: Fn(&Error) -> Classification + Send + Sync + 'static,
{
    fn classify(&self, error: &Error) -> Classification {
        self(error)
    }
}

/// A shared classifier, as the layers hold it.
pub type SharedClassifier = Arc<dyn Classify>;

/// The SQL Server / Azure SQL default classifier.
///
/// Server errors: transient when the number is in [`transient::TRANSIENT_NUMBERS`] (plus any
/// added with [`with_transient`](Self::with_transient), minus any removed with
/// [`without_transient`](Self::without_transient)); a non-transient error of class 20 or
/// above (the server closed the connection) still counts against health. I/O errors,
/// attempt/connect/pool timeouts, protocol errors and routing redirects are retryable;
/// conversion errors, TLS failures, open breakers and an exhausted deadline are not. TLS
/// failures (an untrusted or mismatched certificate) count against neither breaker nor
/// health: they are configuration, not a failing region.
#[derive(Clone, Default)]
pub struct SqlServerClassifier {
    added: HashSet<u32>,
    removed: HashSet<u32>,
}

impl fmt::Debug for SqlServerClassifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlServerClassifier")
            .field("added", &self.added)
            .field("removed", &self.removed)
            .finish()
    }
}

impl SqlServerClassifier {
    /// The default table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Treats these server error numbers as transient too.
    pub fn with_transient(mut self, numbers: impl IntoIterator<Item = u32>) -> Self {
        for n in numbers {
            self.removed.remove(&n);
            self.added.insert(n);
        }
        self
    }

    /// Stops treating these server error numbers as transient.
    pub fn without_transient(mut self, numbers: impl IntoIterator<Item = u32>) -> Self {
        for n in numbers {
            self.added.remove(&n);
            self.removed.insert(n);
        }
        self
    }

    /// Whether `number` is treated as transient by this classifier.
    pub fn is_transient_number(&self, number: u32) -> bool {
        !self.removed.contains(&number)
            && (self.added.contains(&number) || transient::lookup(number).is_some())
    }
}

impl Classify for SqlServerClassifier {
    fn classify(&self, error: &Error) -> Classification {
        match error.kind() {
            ErrorKind::Server { number, class, .. } => {
                if self.is_transient_number(*number) {
                    Classification {
                        delay_hint: transient::lookup(*number).and_then(|t| t.delay_hint),
                        ..Classification::TRANSIENT
                    }
                } else {
                    Classification {
                        counts_as_failure: *class >= 20,
                        ..Classification::PERMANENT
                    }
                }
            }
            // Every pooled connection busy: this process's own limit, not the database's
            // health (a burst must not open a healthy region's breaker).
            ErrorKind::Timeout {
                scope: TimeoutScope::PoolCheckout,
                ..
            } => Classification {
                retryable: true,
                counts_as_failure: false,
                delay_hint: None,
            },
            ErrorKind::Io(_) | ErrorKind::Timeout { .. } | ErrorKind::Protocol => {
                Classification::TRANSIENT
            }
            // A redirect is the gateway doing its job: retry (at the new address), not a fault.
            ErrorKind::Routing { .. } => Classification {
                retryable: true,
                counts_as_failure: false,
                delay_hint: None,
            },
            // Fails fast while no region can take the request; worth another try after a
            // backoff (probes may find the new primary), and no fault of any one region.
            ErrorKind::NoRegionAvailable { .. } => Classification {
                retryable: true,
                counts_as_failure: false,
                delay_hint: None,
            },
            // The call's own budget ran out: nothing to retry. It says the region was
            // slower than this call could wait, not that it is down: the region may be the
            // only one that can serve the request, and a breaker opened on slowness would
            // fail fast where waiting succeeds. A region that is truly down shows it through
            // its probes, its attempt timeouts (the router bounds each attempt when another
            // region could take it) and its other failures.
            ErrorKind::DeadlineExceeded => Classification {
                retryable: false,
                counts_as_failure: false,
                delay_hint: None,
            },
            // The identity endpoint hiccupped: nothing was sent, and the database is not at
            // fault; another try (or another region) may get a token.
            ErrorKind::AccessToken => Classification {
                retryable: true,
                counts_as_failure: false,
                delay_hint: None,
            },
            // The client could not set up TLS — nearly always a certificate it does not
            // trust, or a name that does not match: configuration, which another try
            // will not fix, and no sign the region is failing (a client missing a CA
            // fails every region alike; opening breakers would only hide the cause).
            // Nothing was sent, so the request may still move to another region, and a
            // region whose certificate is bad is graded down by its probes, which fail
            // the same handshake.
            ErrorKind::Tls => Classification {
                retryable: false,
                counts_as_failure: false,
                delay_hint: None,
            },
            ErrorKind::Other => Classification {
                // Unknown failures from a foreign service: count them, but only retry
                // them if nothing can have been sent.
                retryable: error.outcome() == Outcome::NotSent,
                counts_as_failure: true,
                delay_hint: None,
            },
            _ => Classification::PERMANENT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::TimeoutScope;

    fn server(number: u32, class: u8) -> Error {
        Error::new(
            ErrorKind::Server {
                number,
                class,
                state: 1,
                message: String::new(),
            },
            Outcome::Rejected,
        )
    }

    #[test]
    fn transient_server_numbers_are_retryable_and_unhealthy() {
        let c = SqlServerClassifier::new();
        for n in [1205, 40613, 40197, 4060, 49918, 233, 10054] {
            let v = c.classify(&server(n, 16));
            assert!(v.retryable && v.counts_as_failure, "{n}");
        }
    }

    #[test]
    fn caller_errors_are_neither_retryable_nor_unhealthy() {
        let c = SqlServerClassifier::new();
        for n in [102, 208, 2627, 515, 547, 3906] {
            assert_eq!(c.classify(&server(n, 16)), Classification::PERMANENT, "{n}");
        }
    }

    #[test]
    fn fatal_class_counts_against_health_without_being_retryable() {
        let v = SqlServerClassifier::new().classify(&server(50000, 20));
        assert!(!v.retryable && v.counts_as_failure);
    }

    #[test]
    fn forty_five_oh_one_carries_a_ten_second_hint() {
        let v = SqlServerClassifier::new().classify(&server(40501, 20));
        assert_eq!(v.delay_hint, Some(Duration::from_secs(10)));
    }

    #[test]
    fn timeouts_and_io_are_retryable_and_the_outcome_decides_write_safety() {
        let c = SqlServerClassifier::new();
        let t = Error::timeout(TimeoutScope::Attempt, Duration::from_secs(1));
        assert_eq!(c.classify(&t), Classification::TRANSIENT);
        assert_eq!(t.outcome(), Outcome::Ambiguous);
        assert!(!c.classify(&Error::circuit_open("r")).retryable);
        assert!(
            !c.classify(&Error::deadline_exceeded(Outcome::NotSent))
                .retryable
        );
        // The call's own budget ran out: slow is not dead, so it counts against nothing.
        let on_the_wire = c.classify(&Error::deadline_exceeded(Outcome::Ambiguous));
        assert!(!on_the_wire.retryable && !on_the_wire.counts_as_failure);
        // A full pool is this process's limit, not the database's.
        let full = c.classify(&Error::timeout(
            TimeoutScope::PoolCheckout,
            Duration::from_secs(1),
        ));
        assert!(full.retryable && !full.counts_as_failure);
        assert!(
            !c.classify(&Error::deadline_exceeded(Outcome::NotSent))
                .counts_as_failure
        );
    }

    #[test]
    fn numbers_can_be_added_and_removed() {
        let c = SqlServerClassifier::new()
            .with_transient([50001])
            .without_transient([1205]);
        assert!(c.classify(&server(50001, 16)).retryable);
        assert!(!c.classify(&server(1205, 13)).retryable);
    }

    #[test]
    fn closures_are_classifiers() {
        let c: SharedClassifier = Arc::new(|_: &Error| Classification::PERMANENT);
        assert!(!c.classify(&server(1205, 13)).retryable);
    }
}
