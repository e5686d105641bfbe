//! What every layer needs to know about a request, whatever its payload.
//!
//! The layers are generic over the request type: they only need a [`RequestContext`]
//! (operation name, read/write intent, idempotency, deadline), reached through
//! [`HasContext`]. SQL requests carry one; [`WithContext`] wraps any other payload so
//! the layers can be used outside SQL (and in tests with `tower_test::mock`).

use std::borrow::Cow;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use tokio::time::Instant;

use crate::error::Outcome;

/// Whether a request reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Intent {
    /// Reads only; may go to any healthy region, including read-only replicas.
    Read,
    /// Writes; goes only to a region known to be writable.
    Write,
}

impl Intent {
    /// `read` or `write`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Intent::Read => "read",
            Intent::Write => "write",
        }
    }
}

/// Whether a read may be answered by a read-only replica, which may lag the primary.
///
/// The default is [`AllowStale`](Consistency::AllowStale), chosen with the 2023 incident
/// in mind: when the primary region is slow or unreachable for hours, an API that serves
/// slightly stale reads from the replica stays up, and one that insists on the primary
/// goes down with it. A read that must see the caller's own recent writes (read after
/// write, a balance before a debit) asks for [`Latest`](Consistency::Latest): it goes only
/// to the writable region, and is neither hedged nor failed over to a replica. Reads
/// answered by a region that is not writable are counted
/// (`mssql_resilience_stale_reads_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Consistency {
    /// Any healthy region may answer, including a read-only replica. The default.
    #[default]
    AllowStale,
    /// Only the writable (primary) region may answer.
    Latest,
}

impl Consistency {
    /// `allow_stale` or `latest`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Consistency::AllowStale => "allow_stale",
            Consistency::Latest => "latest",
        }
    }
}

/// Whether one attempt's request reached the wire, as far as the innermost service knows.
///
/// The [attempt timeout](crate::deadline::AttemptTimeout) installs a fresh one per attempt
/// ([`RequestContext::begin_attempt`]); the innermost service marks it; when the attempt is
/// cut short, the timeout reads it to tell a not-sent failure (safe to retry anywhere) from
/// an ambiguous one. A service that never marks it leaves it unknown, which is treated as
/// ambiguous.
#[derive(Debug, Default)]
pub struct WireState(AtomicU8);

const WIRE_UNKNOWN: u8 = 0;
const WIRE_NOT_SENT: u8 = 1;
const WIRE_SENT: u8 = 2;

impl WireState {
    /// The service owns the attempt and will mark it once bytes are written.
    pub fn mark_not_sent(&self) {
        let _ = self.0.compare_exchange(
            WIRE_UNKNOWN,
            WIRE_NOT_SENT,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// Request bytes were written to the connection.
    pub fn mark_sent(&self) {
        self.0.store(WIRE_SENT, Ordering::Release);
    }

    /// Whether request bytes were written.
    pub fn is_sent(&self) -> bool {
        self.0.load(Ordering::Acquire) == WIRE_SENT
    }

    /// No service has marked it yet.
    fn is_fresh(&self) -> bool {
        self.0.load(Ordering::Acquire) == WIRE_UNKNOWN
    }

    /// The outcome of this attempt if it is lost now: not-sent only when the service said
    /// so and wrote nothing; otherwise ambiguous.
    pub fn outcome_if_lost(&self) -> Outcome {
        match self.0.load(Ordering::Acquire) {
            WIRE_NOT_SENT => Outcome::NotSent,
            _ => Outcome::Ambiguous,
        }
    }
}

/// The per-request facts the resilience layers read.
#[derive(Debug, Clone)]
pub struct RequestContext {
    operation: Cow<'static, str>,
    intent: Intent,
    idempotent: bool,
    consistency: Consistency,
    hedge: bool,
    deadline: Option<Instant>,
    budget: Option<std::time::Duration>,
    budget_extension: std::time::Duration,
    attempt_limit: Option<std::time::Duration>,
    breaker_bypass: bool,
    no_alternative: Option<StillLast>,
    wire: Option<Arc<WireState>>,
}

/// Where an attempt went when it was on the last region that could take its request: the
/// router answers, whenever asked, whether that is still so (its view changes while the
/// attempt waits). No allocation: a router handle (one `Arc`) and an index.
#[derive(Clone, Debug)]
pub(crate) struct StillLast {
    router: crate::failover::Router,
    region: usize,
}

impl StillLast {
    pub(crate) fn new(router: crate::failover::Router, region: usize) -> Self {
        StillLast { router, region }
    }
}

impl RequestContext {
    /// A read: idempotent by default.
    pub fn read(operation: impl Into<Cow<'static, str>>) -> Self {
        RequestContext {
            operation: operation.into(),
            intent: Intent::Read,
            idempotent: true,
            consistency: Consistency::AllowStale,
            hedge: true,
            deadline: None,
            budget: None,
            budget_extension: std::time::Duration::ZERO,
            attempt_limit: None,
            breaker_bypass: false,
            no_alternative: None,
            wire: None,
        }
    }

    /// A write: not idempotent by default (so an ambiguous failure is never retried).
    pub fn write(operation: impl Into<Cow<'static, str>>) -> Self {
        RequestContext {
            operation: operation.into(),
            intent: Intent::Write,
            idempotent: false,
            consistency: Consistency::AllowStale,
            hedge: true,
            deadline: None,
            budget: None,
            budget_extension: std::time::Duration::ZERO,
            attempt_limit: None,
            breaker_bypass: false,
            no_alternative: None,
            wire: None,
        }
    }

    /// Declares whether running the request twice is harmless. Defaults to `true` for
    /// reads and `false` for writes.
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = idempotent;
        self
    }

    /// Whether a read may be answered by a read-only replica. Defaults to
    /// [`Consistency::AllowStale`]; see [`Consistency`] for why. Ignored for writes.
    pub fn consistency(mut self, consistency: Consistency) -> Self {
        self.consistency = consistency;
        self
    }

    /// Whether the request may run twice at once: a slow read also sent to the next region
    /// (hedging), or a slow idempotent request on its last region raced by a second
    /// attempt. Defaults to `true`; turning it off leaves retries and failover after a
    /// failure as they are (a streamed query turns it off: two would interleave rows).
    pub fn hedge(mut self, hedge: bool) -> Self {
        self.hedge = hedge;
        self
    }

    /// Asks for a total budget of `total` for this call instead of the stack's default
    /// (`timeouts.total`): shorter, or longer up to `timeouts.max_total` (a longer ask is
    /// capped there). A longer budget also lengthens each attempt's bound by as much
    /// (`timeouts.attempt + (budget − timeouts.total)`), so a report query that needs 20 s
    /// can run in one attempt while a quick failure still leaves the usual reserve for a
    /// retry. The caller's own deadline ([`with_deadline`](Self::with_deadline)) and the
    /// [ambient](crate::deadline::ambient) deadline still cut it short.
    ///
    /// ```
    /// use std::time::Duration;
    /// use mssql_resilience::RequestContext;
    ///
    /// let report = RequestContext::read("monthly_report").budget(Duration::from_secs(30));
    /// assert_eq!(report.requested_budget(), Some(Duration::from_secs(30)));
    /// ```
    pub fn budget(mut self, total: std::time::Duration) -> Self {
        self.budget = Some(total);
        self
    }

    /// The budget asked for with [`budget`](Self::budget), if any.
    pub fn requested_budget(&self) -> Option<std::time::Duration> {
        self.budget
    }

    /// How far past the stack's default total budget the deadline layer let this request
    /// go (zero unless [`budget`](Self::budget) asked for more): the attempt bounds grow by
    /// as much.
    pub fn budget_extension(&self) -> std::time::Duration {
        self.budget_extension
    }

    /// Sets [`budget_extension`](Self::budget_extension) (the deadline layer does).
    pub fn set_budget_extension(&mut self, extension: std::time::Duration) {
        self.budget_extension = extension;
    }

    /// Sets a deadline of the caller's own. The deadline layer only ever shortens it.
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// The operation name for telemetry: low cardinality, never SQL text.
    pub fn operation(&self) -> &str {
        &self.operation
    }

    /// The operation name as an owned value (free for `&'static str` names).
    pub fn operation_cow(&self) -> Cow<'static, str> {
        self.operation.clone()
    }

    /// Read or write.
    pub fn intent(&self) -> Intent {
        self.intent
    }

    /// The read consistency asked for ([`Consistency::AllowStale`] by default).
    pub fn read_consistency(&self) -> Consistency {
        self.consistency
    }

    /// Whether hedging is allowed (reads only; `true` by default).
    pub fn may_hedge(&self) -> bool {
        self.hedge
    }

    /// The bound the failover router set for the next attempt, if any: the
    /// [attempt timeout](crate::deadline::AttemptTimeout) uses it instead of its fixed
    /// value (latency-aware timeouts; the whole remaining budget when no other region
    /// could take the request).
    pub fn attempt_limit(&self) -> Option<std::time::Duration> {
        self.attempt_limit
    }

    /// Whether the router let this attempt past an open (not isolated) circuit breaker:
    /// no other region could take the request, and failing fast there would be failing
    /// for nothing. The breaker does not record such an attempt.
    pub fn breaker_bypass(&self) -> bool {
        self.breaker_bypass
    }

    /// Sets [`breaker_bypass`](Self::breaker_bypass) for the next attempt.
    pub fn set_breaker_bypass(&mut self, bypass: bool) {
        self.breaker_bypass = bypass;
    }

    /// Whether this attempt's region is, right now, the last one that could take the
    /// request (the router re-evaluates on every call): with nowhere else to go, a pool
    /// checkout keeps waiting (and keeps the pool trying to connect) until the attempt's
    /// bound instead of failing at the first connect that cannot reach the region; once
    /// another region could take the request, it stops and the request moves on.
    pub fn no_alternative(&self) -> bool {
        self.no_alternative.as_ref().is_some_and(|last| {
            !last
                .router
                .has_alternative(self.intent, self.consistency, last.region)
        })
    }

    /// Sets what [`no_alternative`](Self::no_alternative) asks, for the next attempt.
    pub(crate) fn set_no_alternative(&mut self, still_last: Option<StillLast>) {
        self.no_alternative = still_last;
    }

    /// Sets the bound of the next attempt (see [`attempt_limit`](Self::attempt_limit)).
    pub fn set_attempt_limit(&mut self, limit: Option<std::time::Duration>) {
        self.attempt_limit = limit;
    }

    /// Whether the request may run twice.
    pub fn is_idempotent(&self) -> bool {
        self.idempotent
    }

    /// The deadline of the whole call, once the deadline layer (or the caller) set it.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Starts tracking a new attempt's wire state and returns it. One the router
    /// installed for this attempt, that no service marked yet, is kept, so the router sees
    /// whether the attempt reached the wire.
    pub fn begin_attempt(&mut self) -> Arc<WireState> {
        match &self.wire {
            Some(wire) if wire.is_fresh() => wire.clone(),
            _ => {
                let wire = Arc::new(WireState::default());
                self.wire = Some(wire.clone());
                wire
            }
        }
    }

    /// Installs `wire` (fresh) for the next attempt made with this context: the attempt
    /// layer adopts it, so the router sees whether an attempt it started reached the wire.
    pub(crate) fn watch_attempt(&mut self, wire: Arc<WireState>) {
        self.wire = Some(wire);
    }

    /// The current attempt's wire state, if an attempt layer is tracking one.
    pub fn wire(&self) -> Option<&Arc<WireState>> {
        self.wire.as_ref()
    }

    /// Sets the deadline to `deadline` unless an earlier one is already set.
    pub fn shorten_deadline(&mut self, deadline: Instant) {
        self.deadline = Some(match self.deadline {
            Some(current) => current.min(deadline),
            None => deadline,
        });
    }
}

/// Gives the layers access to a request's [`RequestContext`].
pub trait HasContext {
    /// The context.
    fn context(&self) -> &RequestContext;
    /// The context, mutably (the deadline layer stamps the deadline here).
    fn context_mut(&mut self) -> &mut RequestContext;
}

impl HasContext for RequestContext {
    fn context(&self) -> &RequestContext {
        self
    }
    fn context_mut(&mut self) -> &mut RequestContext {
        self
    }
}

/// Any payload with a [`RequestContext`], for using the layers outside SQL.
#[derive(Debug, Clone)]
pub struct WithContext<T> {
    /// The context the layers read.
    pub context: RequestContext,
    /// The payload the inner service gets.
    pub payload: T,
}

impl<T> WithContext<T> {
    /// Pairs a payload with its context.
    pub fn new(context: RequestContext, payload: T) -> Self {
        WithContext { context, payload }
    }
}

impl<T> HasContext for WithContext<T> {
    fn context(&self) -> &RequestContext {
        &self.context
    }
    fn context_mut(&mut self) -> &mut RequestContext {
        &mut self.context
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn reads_are_idempotent_and_writes_are_not_by_default() {
        assert!(RequestContext::read("get").is_idempotent());
        assert!(!RequestContext::write("put").is_idempotent());
        assert!(RequestContext::write("put")
            .idempotent(true)
            .is_idempotent());
    }

    #[test]
    fn deadlines_only_shorten() {
        let now = Instant::now();
        let mut ctx = RequestContext::read("r").with_deadline(now + Duration::from_secs(1));
        ctx.shorten_deadline(now + Duration::from_secs(5));
        assert_eq!(ctx.deadline(), Some(now + Duration::from_secs(1)));
        ctx.shorten_deadline(now + Duration::from_millis(10));
        assert_eq!(ctx.deadline(), Some(now + Duration::from_millis(10)));
    }
}
