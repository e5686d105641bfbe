//! The crate's one error type.
//!
//! Every failure that crosses a layer is an [`Error`]: a [`ErrorKind`] that says *what*
//! happened, and an [`Outcome`] that says *what the server may have done* about the
//! request. The layers read these two instead of re-parsing driver errors:
//!
//! - [`Outcome::NotSent`]: nothing reached the server (pool checkout timeout, connect or
//!   login failure, TLS failure, a redirect, an open breaker, a deadline spent before the
//!   send). Always safe to retry or fail over.
//! - [`Outcome::Rejected`]: the server answered with an error. Whether a retry may help is
//!   the [classifier](crate::classify)'s call (transient numbers yes, syntax errors no);
//!   whether it may be *sent again* for a non-idempotent request depends on whether the
//!   error proves nothing was applied ([`Error::may_have_applied`]; see
//!   [`classify::rollback`](crate::classify::rollback)).
//! - [`Outcome::Ambiguous`]: the request was (or may have been) sent and then the
//!   connection broke or the attempt timed out. A write may or may not have committed, so
//!   it is retried only when the request is idempotent; otherwise the caller gets an error
//!   for which [`Error::is_outcome_unknown`] is true and must reconcile.
//!
//! Driver errors are mapped here once: [`Error::from_tiberius`] (with the phase the error
//! happened in) and [`Error::from_pool`] for bb8's `RunError`.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// A boxed error, as `tower` and `tower_test` use.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the server may have done with a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Nothing reached the server; retrying or failing over cannot duplicate anything.
    NotSent,
    /// The server received the request and answered with an error.
    Rejected,
    /// The request was or may have been sent, and no answer arrived: it may have run.
    Ambiguous,
}

impl Outcome {
    /// A short lower-case name (`not_sent`, `rejected`, `ambiguous`), for logs and labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::NotSent => "not_sent",
            Outcome::Rejected => "rejected",
            Outcome::Ambiguous => "ambiguous",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which clock ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeoutScope {
    /// One attempt's own timeout (`min(attempt timeout, remaining budget)`).
    Attempt,
    /// Opening a connection: TCP connect + PRELOGIN + login.
    Connect,
    /// Checking an idle pooled connection before handing it out.
    Validation,
    /// Waiting for a pooled connection.
    PoolCheckout,
}

impl TimeoutScope {
    /// A short lower-case name for logs and labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            TimeoutScope::Attempt => "attempt",
            TimeoutScope::Connect => "connect",
            TimeoutScope::Validation => "validation",
            TimeoutScope::PoolCheckout => "pool_checkout",
        }
    }
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The server answered with an error (an ERROR token).
    Server {
        /// SQL Server error number, e.g. 1205 (deadlock victim) or 40613.
        number: u32,
        /// Severity class (0–25); 20 and above close the connection.
        class: u8,
        /// Error state.
        state: u8,
        /// The server's message.
        message: String,
    },
    /// An I/O error on the connection (reset, broken pipe, unexpected EOF, refused …).
    Io(io::ErrorKind),
    /// A client-side timeout.
    Timeout {
        /// Which timeout.
        scope: TimeoutScope,
        /// How long was waited.
        after: Duration,
    },
    /// The call's total deadline (its timeout budget) was spent.
    DeadlineExceeded,
    /// The server (an Azure gateway) asked the client to reconnect elsewhere.
    Routing {
        /// Host to connect to.
        host: String,
        /// Port to connect to.
        port: u16,
    },
    /// TLS could not be established.
    Tls,
    /// The byte stream did not follow the protocol (the connection is unusable).
    Protocol,
    /// A value could not be encoded or decoded (a bug or schema mismatch on the caller's side).
    Conversion,
    /// A circuit breaker is open (or half-open with no probe slot) and rejected the call.
    CircuitOpen {
        /// The breaker's name (for SQL Server, the region).
        name: Cow<'static, str>,
    },
    /// No region could take this request (none healthy, or none writable for a write).
    NoRegionAvailable {
        /// Why, in words.
        reason: Cow<'static, str>,
    },
    /// The [access-token provider](crate::auth::AccessTokenProvider) failed (or returned an
    /// empty token) while a connection was being opened: nothing was sent, and the
    /// database is not at fault.
    AccessToken,
    /// A response grew past the configured cap (`[results]` in the config): the rest was
    /// not read and the connection was closed. Not retryable; stream the query instead
    /// ([`Stack::stream`](crate::Stack::stream)) or narrow it.
    ResponseTooLarge {
        /// Which limit: `"rows"` or `"bytes"`.
        limit: &'static str,
        /// The configured maximum.
        max: u64,
    },
    /// A streamed query failed after it had handed rows to the caller: it is not re-sent
    /// (see [`RowStream`](crate::sql::RowStream)). The cause is the error's source.
    StreamInterrupted {
        /// Rows handed over before the failure.
        rows: u64,
    },
    /// An idempotency key was used again for a *different* request (another operation,
    /// SQL text or parameter values than the one recorded with it): nothing was written
    /// and nothing is replayed. Not retryable — fix the caller (a new key per logical
    /// operation), as an HTTP API answers 422 to a reused key.
    IdempotencyConflict,
    /// Anything else (a foreign error from an inner service).
    Other,
}

impl ErrorKind {
    /// A short, bounded, lower-case name suitable as a metric label (`error.type`).
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorKind::Server { .. } => "server",
            ErrorKind::Io(_) => "io",
            ErrorKind::Timeout { scope, .. } => match scope {
                TimeoutScope::Attempt => "attempt_timeout",
                TimeoutScope::Connect => "connect_timeout",
                TimeoutScope::Validation => "validation_timeout",
                TimeoutScope::PoolCheckout => "pool_timeout",
            },
            ErrorKind::DeadlineExceeded => "deadline_exceeded",
            ErrorKind::Routing { .. } => "routing",
            ErrorKind::Tls => "tls",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Conversion => "conversion",
            ErrorKind::CircuitOpen { .. } => "circuit_open",
            ErrorKind::NoRegionAvailable { .. } => "no_region_available",
            ErrorKind::AccessToken => "access_token",
            ErrorKind::ResponseTooLarge { .. } => "response_too_large",
            ErrorKind::StreamInterrupted { .. } => "stream_interrupted",
            ErrorKind::IdempotencyConflict => "idempotency_conflict",
            ErrorKind::Other => "other",
        }
    }
}

/// Why the retry layer stopped retrying and returned this error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryStop {
    /// The classifier says this error is permanent.
    NotRetryable,
    /// The outcome is ambiguous and the request is not idempotent: the outcome is unknown.
    NotIdempotent,
    /// `max_attempts` attempts were made.
    MaxAttempts,
    /// The next backoff delay (plus time for an attempt) did not fit in the remaining budget.
    DeadlineWouldBeExceeded {
        /// The delay that would have been slept.
        next_delay: Duration,
        /// What was left of the budget.
        remaining: Duration,
    },
    /// The shared retry budget had no retry left.
    BudgetExhausted,
    /// The call was waiting to be tried again after being turned away, and gave its place
    /// among such calls to one due later (see [`retry`](crate::retry)).
    GaveWay,
}

impl RetryStop {
    /// A short lower-case name for logs and labels.
    pub const fn as_str(&self) -> &'static str {
        match self {
            RetryStop::NotRetryable => "not_retryable",
            RetryStop::NotIdempotent => "not_idempotent",
            RetryStop::MaxAttempts => "max_attempts",
            RetryStop::DeadlineWouldBeExceeded { .. } => "deadline",
            RetryStop::BudgetExhausted => "budget_exhausted",
            RetryStop::GaveWay => "gave_way",
        }
    }
}

/// The crate's error: a kind, an outcome, and context added by the layers it crossed.
///
/// Cheap to move (one pointer); `Clone` shares the source.
#[derive(Clone)]
pub struct Error {
    inner: Box<Inner>,
}

#[derive(Clone)]
struct Inner {
    kind: ErrorKind,
    outcome: Outcome,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    attempts: u32,
    stop: Option<RetryStop>,
    region: Option<Cow<'static, str>>,
    idempotent: Option<bool>,
    /// Raised by a pooled connection's check, not by a connect.
    validation: bool,
    /// A rejected request whose effects the error does not prove undone.
    may_have_applied: bool,
    /// The router found no region to try: nothing was attempted anywhere.
    turned_away: bool,
}

impl Error {
    /// Builds an error from a kind and an outcome.
    pub fn new(kind: ErrorKind, outcome: Outcome) -> Self {
        Error {
            inner: Box::new(Inner {
                kind,
                outcome,
                source: None,
                attempts: 0,
                stop: None,
                region: None,
                idempotent: None,
                validation: false,
                may_have_applied: false,
                turned_away: false,
            }),
        }
    }

    /// Marks an error raised while checking an idle pooled connection.
    pub(crate) fn raised_by_validation(mut self) -> Self {
        self.inner.validation = true;
        self
    }

    /// Whether the error was raised while checking an idle pooled connection.
    pub(crate) fn is_validation(&self) -> bool {
        self.inner.validation
    }

    /// Attaches the underlying error.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.inner.source = Some(Arc::new(source));
        self
    }

    /// Records which region (or breaker) produced the error.
    pub fn with_region(mut self, region: impl Into<Cow<'static, str>>) -> Self {
        self.inner.region = Some(region.into());
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> &ErrorKind {
        &self.inner.kind
    }

    /// What the server may have done with the request.
    pub fn outcome(&self) -> Outcome {
        self.inner.outcome
    }

    /// The SQL Server error number, if the server answered with one.
    pub fn server_number(&self) -> Option<u32> {
        match &self.inner.kind {
            ErrorKind::Server { number, .. } => Some(*number),
            _ => None,
        }
    }

    /// How many attempts the retry layer made (0 when no retry layer was crossed).
    pub fn attempts(&self) -> u32 {
        self.inner.attempts
    }

    /// Why the retry layer gave up, when one was crossed.
    pub fn retry_stop(&self) -> Option<RetryStop> {
        self.inner.stop
    }

    /// The region (or breaker name) that produced the error, if known.
    pub fn region(&self) -> Option<&str> {
        self.inner.region.as_deref()
    }

    /// True when the request may or may not have taken effect and was not retried because
    /// it is not idempotent: the caller must reconcile (read back, or use an idempotency key).
    /// That is an [`Outcome::Ambiguous`] failure, or an [`Outcome::Rejected`] one that
    /// [`may_have_applied`](Self::may_have_applied).
    pub fn is_outcome_unknown(&self) -> bool {
        let unknown = match self.inner.outcome {
            Outcome::Ambiguous => true,
            Outcome::Rejected => self.inner.may_have_applied,
            Outcome::NotSent => false,
        };
        unknown && self.inner.idempotent == Some(false)
    }

    /// For an [`Outcome::Rejected`] failure: the server's error does not prove that the
    /// request left nothing applied — e.g. a unit of work whose `COMMIT` had completed
    /// before a later statement failed, or a batch in which an earlier statement had
    /// committed before another one failed. The write-safety rule re-sends such a request
    /// only when it is idempotent. See [`classify::rollback`](crate::classify::rollback)
    /// for what counts as proof. False for other outcomes, and for rejected errors built
    /// with [`Error::new`] (a service that reports `Rejected` vouches that nothing applied).
    pub fn may_have_applied(&self) -> bool {
        self.inner.outcome == Outcome::Rejected && self.inner.may_have_applied
    }

    /// Records whether a rejected request may have left effects behind.
    pub(crate) fn set_may_have_applied(&mut self, may: bool) {
        self.inner.may_have_applied = may;
    }

    /// True when the request was turned away before any region was tried: the failover
    /// router found none that could take it (each one that could is saturated — not
    /// healthy and holding as many requests as its pool has connections — or isolated by
    /// hand, or none is writable for a write) — an [`ErrorKind::NoRegionAvailable`] that sent
    /// nothing, opened no connection and waited for none. The
    /// [retry layer](crate::retry) retries such a call while its deadline allows without
    /// counting it against `max_attempts` or the retry budget: it put no load on any
    /// server.
    pub fn is_turned_away(&self) -> bool {
        self.inner.turned_away
    }

    /// Marks the error as [turned away](Self::is_turned_away): for a service of your own
    /// under the retry layer that refuses a request before it does anything with it. Mark
    /// only a failure that sent nothing and opened or waited for no connection; the retry
    /// layer then tries the call again without counting the try.
    pub fn turned_away(mut self) -> Self {
        self.inner.turned_away = true;
        self
    }

    /// True for a deadline or timeout of any scope.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self.inner.kind,
            ErrorKind::Timeout { .. } | ErrorKind::DeadlineExceeded
        )
    }

    /// Corrects the outcome once the caller knows better (e.g. nothing reached the wire).
    pub(crate) fn set_outcome(&mut self, outcome: Outcome) {
        self.inner.outcome = outcome;
    }

    /// Records whether the failed request was idempotent, unless already recorded.
    pub(crate) fn note_idempotency(&mut self, idempotent: bool) {
        if self.inner.idempotent.is_none() {
            self.inner.idempotent = Some(idempotent);
        }
    }

    pub(crate) fn set_retry_context(&mut self, attempts: u32, stop: RetryStop, idempotent: bool) {
        self.inner.attempts = attempts;
        self.inner.stop = Some(stop);
        self.inner.idempotent = Some(idempotent);
    }

    /// A timeout of the given scope. Attempt timeouts are ambiguous (the request may have
    /// been sent); connect and pool-checkout timeouts are not-sent.
    pub fn timeout(scope: TimeoutScope, after: Duration) -> Self {
        let outcome = match scope {
            TimeoutScope::Attempt => Outcome::Ambiguous,
            TimeoutScope::Connect | TimeoutScope::Validation | TimeoutScope::PoolCheckout => {
                Outcome::NotSent
            }
        };
        Error::new(ErrorKind::Timeout { scope, after }, outcome)
    }

    /// The call's total deadline was spent; `outcome` says whether an attempt was in flight.
    pub fn deadline_exceeded(outcome: Outcome) -> Self {
        Error::new(ErrorKind::DeadlineExceeded, outcome)
    }

    /// A breaker named `name` rejected the call without running it.
    pub fn circuit_open(name: impl Into<Cow<'static, str>>) -> Self {
        let name = name.into();
        Error::new(
            ErrorKind::CircuitOpen { name: name.clone() },
            Outcome::NotSent,
        )
        .with_region(name)
    }

    /// Maps a tiberius error.
    ///
    /// `sent` says whether the request had been (or may have been) written to the wire when
    /// the error happened: `false` for errors while connecting or logging in. Server errors
    /// are `Rejected` once sent; everything during connect is `NotSent`.
    pub fn from_tiberius(err: tiberius::error::Error, sent: bool) -> Self {
        use tiberius::error::Error as T;
        let after_send = if sent {
            Outcome::Ambiguous
        } else {
            Outcome::NotSent
        };
        let (kind, outcome) = match &err {
            T::Io { kind, .. } => (ErrorKind::Io(*kind), after_send),
            T::Server(token) => (
                ErrorKind::Server {
                    number: token.code(),
                    class: token.class(),
                    state: token.state(),
                    message: token.message().to_owned(),
                },
                if sent {
                    Outcome::Rejected
                } else {
                    Outcome::NotSent
                },
            ),
            T::Routing { host, port } => (
                ErrorKind::Routing {
                    host: host.clone(),
                    port: *port,
                },
                Outcome::NotSent,
            ),
            T::Tls(_) => (ErrorKind::Tls, Outcome::NotSent),
            T::Protocol(_) => (ErrorKind::Protocol, after_send),
            T::Encoding(_)
            | T::Conversion(_)
            | T::Utf8
            | T::Utf16
            | T::ParseInt(_)
            | T::BulkInput(_) => (
                ErrorKind::Conversion,
                if sent {
                    Outcome::Rejected
                } else {
                    Outcome::NotSent
                },
            ),
            #[allow(unreachable_patterns)]
            _ => (ErrorKind::Other, after_send),
        };
        Error::new(kind, outcome).with_source(err)
    }

    /// Maps a bb8 checkout error: a checkout timeout (after `waited`) is not-sent; a
    /// connection-manager error converts with `Into` (the crate's manager already returns
    /// an [`Error`]).
    pub fn from_pool<E>(err: bb8::RunError<E>, waited: Duration) -> Self
    where
        E: Into<Error>,
    {
        match err {
            bb8::RunError::User(e) => e.into(),
            bb8::RunError::TimedOut => Error::timeout(TimeoutScope::PoolCheckout, waited),
        }
    }
}

impl From<tiberius::error::Error> for Error {
    /// Assumes the request was sent (the conservative choice: I/O errors become ambiguous).
    /// Use [`Error::from_tiberius`] with `sent = false` for connect-phase errors.
    fn from(err: tiberius::error::Error) -> Self {
        Error::from_tiberius(err, true)
    }
}

impl From<io::Error> for Error {
    /// An I/O error of unknown phase: ambiguous.
    fn from(err: io::Error) -> Self {
        Error::new(ErrorKind::Io(err.kind()), Outcome::Ambiguous).with_source(err)
    }
}

impl From<BoxError> for Error {
    /// Recovers an [`Error`], a tiberius error or an I/O error from a box; anything else is
    /// [`ErrorKind::Other`] with an ambiguous outcome (nothing is known about it).
    fn from(err: BoxError) -> Self {
        let err = match err.downcast::<Error>() {
            Ok(e) => return *e,
            Err(e) => e,
        };
        let err = match err.downcast::<tiberius::error::Error>() {
            Ok(e) => return Error::from(*e),
            Err(e) => e,
        };
        let err = match err.downcast::<io::Error>() {
            Ok(e) => return Error::from(*e),
            Err(e) => e,
        };
        Error {
            inner: Box::new(Inner {
                kind: ErrorKind::Other,
                outcome: Outcome::Ambiguous,
                source: Some(Arc::from(err)),
                attempts: 0,
                stop: None,
                region: None,
                idempotent: None,
                validation: false,
                may_have_applied: false,
                turned_away: false,
            }),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.inner.kind)
            .field("outcome", &self.inner.outcome);
        if let Some(region) = &self.inner.region {
            d.field("region", region);
        }
        if self.inner.stop.is_some() {
            d.field("attempts", &self.inner.attempts)
                .field("retry_stop", &self.inner.stop);
        }
        if let Some(source) = &self.inner.source {
            d.field("source", &format_args!("{source}"));
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.describe(f, true)
    }
}

/// An [`Error`] as the crate's own log lines show it: everything but a server error's
/// message text, which may quote data (a duplicate key's value, a value that failed to
/// convert). See [`Error::for_logs`].
#[derive(Clone, Copy)]
pub struct ForLogs<'a>(&'a Error);

impl fmt::Display for ForLogs<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.describe(f, false)
    }
}

/// As `Display`: the `Debug` of an [`Error`] holds the message text.
impl fmt::Debug for ForLogs<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.describe(f, false)
    }
}

impl Error {
    /// The error for a log line: its `Display` without a server error's message text
    /// (number, class and state identify the error; the text may quote row data, e.g.
    /// 2627's duplicate key value). The crate's own `tracing` events use it; `Display`
    /// keeps the message for the caller.
    pub fn for_logs(&self) -> ForLogs<'_> {
        ForLogs(self)
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>, message_text: bool) -> fmt::Result {
        match &self.inner.kind {
            ErrorKind::Server {
                number,
                class,
                state,
                message,
            } => {
                write!(f, "server error {number} (class {class}, state {state})")?;
                if message_text {
                    write!(f, ": {message}")?;
                }
            }
            ErrorKind::Io(kind) => write!(f, "i/o error on the connection: {kind}")?,
            ErrorKind::Timeout { scope, after } => {
                write!(f, "{} timed out after {after:?}", scope.as_str())?
            }
            ErrorKind::DeadlineExceeded => f.write_str("deadline exceeded")?,
            ErrorKind::Routing { host, port } => {
                write!(f, "server redirected the connection to {host}:{port}")?
            }
            ErrorKind::Tls => f.write_str(TLS_HINT)?,
            ErrorKind::Protocol => f.write_str("protocol error")?,
            ErrorKind::Conversion => {
                f.write_str("value conversion failed")?;
                // The crate's own conversion errors name the column or parameter and the
                // types, never the value (tiberius's may hold the value: left out).
                if let Some(source) = self.inner.source.as_deref() {
                    if source.is::<crate::sql::RowError>()
                        || source.is::<crate::sql::ParamError>()
                        || source.is::<crate::idempotency::RecordError>()
                    {
                        write!(f, ": {source}")?;
                    }
                }
            }
            ErrorKind::CircuitOpen { name } => write!(f, "circuit breaker `{name}` is open")?,
            ErrorKind::NoRegionAvailable { reason } => write!(f, "no region available: {reason}")?,
            ErrorKind::AccessToken => {
                f.write_str("the access-token provider failed")?;
                if let Some(source) = &self.inner.source {
                    write!(f, ": {}", truncate_chars(&source.to_string(), 200))?;
                }
            }
            ErrorKind::ResponseTooLarge { limit, max } => write!(
                f,
                "the response has more than {max} {limit} (the `results.max_{limit}` cap); stream it or narrow the query"
            )?,
            ErrorKind::StreamInterrupted { rows } => write!(
                f,
                "the row stream failed after {rows} row(s) were handed over; not re-sent"
            )?,
            ErrorKind::IdempotencyConflict => f.write_str(
                "the idempotency key was recorded for a different request (operation, SQL or parameters); nothing was written or replayed",
            )?,
            ErrorKind::Other => f.write_str("inner service failed")?,
        }
        if let Some(region) = &self.inner.region {
            if !matches!(self.inner.kind, ErrorKind::CircuitOpen { .. }) {
                write!(f, " [region {region}]")?;
            }
        }
        write!(f, " (outcome: {}", self.inner.outcome)?;
        if self.is_outcome_unknown() {
            f.write_str(", the write may or may not have been applied")?;
        }
        if let Some(stop) = &self.inner.stop {
            match stop {
                RetryStop::DeadlineWouldBeExceeded {
                    next_delay,
                    remaining,
                } => write!(
                    f,
                    "; gave up after {} attempt(s): next retry in {next_delay:?} would not fit in the remaining {remaining:?}",
                    self.inner.attempts
                )?,
                other => write!(
                    f,
                    "; gave up after {} attempt(s): {}",
                    self.inner.attempts,
                    other.as_str()
                )?,
            }
        }
        f.write_str(")")?;
        if let (
            Some(source),
            ErrorKind::Other | ErrorKind::Protocol | ErrorKind::StreamInterrupted { .. },
        ) = (&self.inner.source, &self.inner.kind)
        {
            f.write_str(": ")?;
            match source.downcast_ref::<Error>() {
                // The crate's own error inside (a stream's failure): the same rule for it.
                Some(inner) => inner.describe(f, message_text)?,
                None => write!(f, "{source}")?,
            }
        }
        if let (Some(source), ErrorKind::Tls) = (&self.inner.source, &self.inner.kind) {
            write!(f, ": {}", tls_detail(&source.to_string()))?;
        }
        Ok(())
    }
}

/// What a TLS failure says first: what went wrong and what to do about it, in this
/// crate's configuration terms.
const TLS_HINT: &str = "tls handshake failed: the server's certificate is not trusted (or not \
valid for the host name), or TLS could not be set up. Trust its CA with the region's \
`trust_server_certificate_ca` (or `TrustServerCertificateCA` in its connection string), \
or, for a test server only, set `encryption = \"trust_server_certificate\"`";

/// tiberius's TLS message without the remedies it words in its own API (the hint above
/// gives them in configuration terms).
fn tls_detail(message: &str) -> &str {
    let message = message
        .strip_prefix("Error forming TLS connection: ")
        .unwrap_or(message);
    match message.find(" To connect anyway") {
        Some(end) => message[..end].trim_end(),
        None => message,
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// A configuration value was rejected. Names the field, the value and the rule.
///
/// The value is shown as its `Debug` form, cut to [`MAX_SHOWN_VALUE_CHARS`] characters
/// (a cut value has `…` in place of its middle), so a huge input is never echoed whole;
/// the field name and the reason are bounded the same way (to [`MAX_SHOWN_FIELD_CHARS`] and
/// [`MAX_SHOWN_REASON_CHARS`]). Secrets show as `***` (their `Debug`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    field: Cow<'static, str>,
    value: String,
    reason: Cow<'static, str>,
}

/// The most characters of a rejected value that a [`ConfigError`] shows.
pub const MAX_SHOWN_VALUE_CHARS: usize = 64;

/// The most characters of a field name that a [`ConfigError`] shows.
pub const MAX_SHOWN_FIELD_CHARS: usize = 128;

/// The most characters of a reason that a [`ConfigError`] shows.
pub const MAX_SHOWN_REASON_CHARS: usize = 1024;

/// `text` cut to at most `max` characters by replacing its middle with `…`: the start
/// and the end (a closing quote, a unit, a line number) stay readable.
pub(crate) fn truncate_chars(text: &str, max: usize) -> Cow<'_, str> {
    let count = text.chars().count();
    if count <= max {
        return Cow::Borrowed(text);
    }
    let keep = max.saturating_sub(1);
    let tail = keep / 3;
    let head = keep - tail;
    let head_end = text.char_indices().nth(head).map_or(text.len(), |(i, _)| i);
    let tail_start = text
        .char_indices()
        .nth(count - tail)
        .map_or(text.len(), |(i, _)| i);
    Cow::Owned(format!("{}…{}", &text[..head_end], &text[tail_start..]))
}

fn bounded(text: Cow<'static, str>, max: usize) -> Cow<'static, str> {
    match truncate_chars(&text, max) {
        Cow::Borrowed(_) => text,
        Cow::Owned(cut) => Cow::Owned(cut),
    }
}

impl ConfigError {
    /// A rejected `field` whose `value` breaks `reason`. The value's `Debug` form is cut
    /// to [`MAX_SHOWN_VALUE_CHARS`] characters.
    pub fn new(
        field: impl Into<Cow<'static, str>>,
        value: impl fmt::Debug,
        reason: impl Into<Cow<'static, str>>,
    ) -> Self {
        let value = format!("{value:?}");
        ConfigError {
            field: bounded(field.into(), MAX_SHOWN_FIELD_CHARS),
            value: truncate_chars(&value, MAX_SHOWN_VALUE_CHARS).into_owned(),
            reason: bounded(reason.into(), MAX_SHOWN_REASON_CHARS),
        }
    }

    /// The field's dotted name, e.g. `retry.max_attempts`.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The rejected value, as written in the message.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Checks a jitter-like fraction: finite and in `[0.0, 1.0)`.
    pub(crate) fn check_fraction(field: &'static str, value: f64) -> Result<(), ConfigError> {
        if value.is_finite() && (0.0..1.0).contains(&value) {
            Ok(())
        } else {
            Err(ConfigError::new(field, value, "must be in [0.0, 1.0)"))
        }
    }

    /// Checks a count against `min..=max`: "must be at least `min`" below,
    /// "must be at most `max`" above.
    pub(crate) fn check_count(
        field: &'static str,
        value: u32,
        min: u32,
        max: u32,
    ) -> Result<(), ConfigError> {
        if value < min {
            Err(ConfigError::new(
                field,
                value,
                format!("must be at least {min}"),
            ))
        } else if value > max {
            Err(ConfigError::new(
                field,
                value,
                format!("must be at most {max}"),
            ))
        } else {
            Ok(())
        }
    }

    /// Checks that a duration is at most `max` (written in the message as `max_text`).
    pub(crate) fn check_at_most(
        field: &'static str,
        value: Duration,
        max: Duration,
        max_text: &str,
    ) -> Result<(), ConfigError> {
        if value > max {
            Err(ConfigError::new(
                field,
                value,
                format!("must be at most {max_text}"),
            ))
        } else {
            Ok(())
        }
    }

    /// Prefixes the field name with a section, e.g. `retry` + `max_attempts`.
    pub fn within(mut self, section: &str) -> Self {
        self.field = format!("{section}.{}", self.field).into();
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid `{}` = {}: {}",
            self.field, self.value, self.reason
        )
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_leave_out_the_server_message_text() {
        let error = Error::new(
            ErrorKind::Server {
                number: 2627,
                class: 14,
                state: 1,
                message: "Violation of PRIMARY KEY constraint. The duplicate key value is (ada@example.com).".into(),
            },
            Outcome::Rejected,
        );
        assert!(
            error.to_string().contains("ada@example.com"),
            "the caller gets it"
        );
        let logged = error.for_logs().to_string();
        assert!(
            logged.starts_with("server error 2627 (class 14, state 1) (outcome: "),
            "{logged}"
        );
        assert!(!logged.contains("ada@example.com"), "{logged}");
        assert!(!format!("{:?}", error.for_logs()).contains("ada@example.com"));
        // Inside a stream's failure too.
        let stream = Error::new(ErrorKind::StreamInterrupted { rows: 3 }, Outcome::Ambiguous)
            .with_source(error.clone());
        assert!(stream.to_string().contains("ada@example.com"));
        let logged = stream.for_logs().to_string();
        assert!(logged.contains("server error 2627"), "{logged}");
        assert!(!logged.contains("ada@example.com"), "{logged}");
        let timeout = Error::new(ErrorKind::DeadlineExceeded, Outcome::NotSent);
        assert_eq!(timeout.for_logs().to_string(), timeout.to_string());
    }

    #[test]
    fn error_stays_one_pointer_wide() {
        assert_eq!(std::mem::size_of::<Error>(), std::mem::size_of::<usize>());
    }

    #[test]
    fn io_after_send_is_ambiguous_and_before_send_is_not_sent() {
        let io = || tiberius::error::Error::Io {
            kind: io::ErrorKind::ConnectionReset,
            message: "reset".into(),
        };
        assert_eq!(
            Error::from_tiberius(io(), true).outcome(),
            Outcome::Ambiguous
        );
        assert_eq!(
            Error::from_tiberius(io(), false).outcome(),
            Outcome::NotSent
        );
        assert_eq!(
            Error::from_tiberius(io(), true).kind(),
            &ErrorKind::Io(io::ErrorKind::ConnectionReset)
        );
    }

    #[test]
    fn routing_and_tls_are_never_sent() {
        let e = Error::from_tiberius(
            tiberius::error::Error::Routing {
                host: "h".into(),
                port: 1,
            },
            true,
        );
        assert_eq!(e.outcome(), Outcome::NotSent);
        assert_eq!(
            e.kind(),
            &ErrorKind::Routing {
                host: "h".into(),
                port: 1
            }
        );
        let e = Error::from_tiberius(tiberius::error::Error::Tls("x".into()), true);
        assert_eq!((e.kind(), e.outcome()), (&ErrorKind::Tls, Outcome::NotSent));
    }

    #[test]
    fn tls_errors_say_what_to_do_in_configuration_terms() {
        let e = Error::from_tiberius(
            tiberius::error::Error::Tls(
                "the server's certificate was rejected during the TLS handshake: invalid peer \
                 certificate: UnknownIssuer. To connect anyway you can: (1) trust a specific \
                 CA certificate with `Config::trust_cert_ca(path)`"
                    .into(),
            ),
            false,
        );
        let text = e.to_string();
        assert!(text.starts_with("tls handshake failed: "), "{text}");
        assert!(text.contains("`trust_server_certificate_ca`"), "{text}");
        assert!(text.contains("UnknownIssuer"), "{text}");
        assert!(!text.contains("Config::trust_cert_ca"), "{text}");
        assert_eq!(tls_detail("plain"), "plain");
    }

    #[test]
    fn conversion_errors_map_to_conversion() {
        for err in [
            tiberius::error::Error::Utf8,
            tiberius::error::Error::Utf16,
            tiberius::error::Error::Conversion("c".into()),
            tiberius::error::Error::Encoding("e".into()),
            tiberius::error::Error::BulkInput("b".into()),
        ] {
            assert_eq!(Error::from(err).kind(), &ErrorKind::Conversion);
        }
        let protocol = Error::from(tiberius::error::Error::Protocol("p".into()));
        assert_eq!(
            (protocol.kind(), protocol.outcome()),
            (&ErrorKind::Protocol, Outcome::Ambiguous)
        );
    }

    #[test]
    fn pool_timeout_is_not_sent() {
        let e = Error::from_pool::<Error>(bb8::RunError::TimedOut, Duration::from_millis(5));
        assert_eq!(e.outcome(), Outcome::NotSent);
        assert!(e.is_timeout());
        assert_eq!(e.kind().as_str(), "pool_timeout");
        let inner = Error::circuit_open("x");
        let e = Error::from_pool(bb8::RunError::User(inner), Duration::ZERO);
        assert_eq!(e.kind().as_str(), "circuit_open");
    }

    #[test]
    fn box_round_trip_keeps_the_error() {
        let boxed: BoxError = Box::new(Error::circuit_open("westeurope"));
        let e = Error::from(boxed);
        assert_eq!(
            e.kind(),
            &ErrorKind::CircuitOpen {
                name: "westeurope".into()
            }
        );
        let boxed: BoxError = "foreign".into();
        let e = Error::from(boxed);
        assert_eq!(
            (e.kind(), e.outcome()),
            (&ErrorKind::Other, Outcome::Ambiguous)
        );
        assert!(e.to_string().contains("foreign"));
    }

    #[test]
    fn outcome_unknown_needs_ambiguous_and_not_idempotent() {
        let mut e = Error::timeout(TimeoutScope::Attempt, Duration::from_secs(1));
        assert!(!e.is_outcome_unknown());
        e.set_retry_context(1, RetryStop::NotIdempotent, false);
        assert!(e.is_outcome_unknown());
        assert!(e.to_string().contains("may or may not have been applied"));
    }

    #[test]
    fn config_error_values_are_cut() {
        assert_eq!(truncate_chars("abc", 3), "abc");
        assert_eq!(truncate_chars("abcd", 3), "ab…");
        assert_eq!(truncate_chars("abcdefghij", 8), "abcde…ij");
        assert_eq!(truncate_chars("ééééé", 4), "éé…é");
        // A cut value is cut no further.
        let once = truncate_chars(&"x".repeat(100), 64).into_owned();
        assert_eq!(once.chars().count(), 64);
        assert_eq!(truncate_chars(&once, 64), once);
        let e = ConfigError::new("f", "y".repeat(100_000), "r".repeat(5000));
        assert_eq!(e.value().chars().count(), MAX_SHOWN_VALUE_CHARS);
        assert!(e.value().starts_with("\"yyy") && e.value().ends_with("yy\""));
        assert!(e.value().contains('…'));
        assert!(e.to_string().chars().count() < 1200);
    }

    #[test]
    fn config_error_names_field_and_value() {
        let e = ConfigError::new("max_attempts", 0u32, "must be at least 1").within("retry");
        assert_eq!(e.field(), "retry.max_attempts");
        assert_eq!(
            e.to_string(),
            "invalid `retry.max_attempts` = 0: must be at least 1"
        );
    }
}
