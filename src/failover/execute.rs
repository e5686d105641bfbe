//! Running one request over its candidate regions: attempts with latency-aware bounds,
//! the move to the next region after a failure, and hedged reads.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;
use tower::{Service, ServiceExt};

use super::latency::ATTEMPT_ROUND_TRIPS;
use super::{Region, Router};
use crate::circuit_breaker::BreakerState;
use crate::error::{Error, ErrorKind, Outcome, TimeoutScope};
use crate::observe::{emit, Event};
use crate::request::{Consistency, Intent, WireState};
use crate::sql::{SqlRequest, SqlResponse};

/// How routing one request ended.
enum Ended {
    Answered(SqlResponse),
    /// A failure that must not move on (it could duplicate a write, or it is permanent).
    Failed(Error),
    /// Every candidate tried (or no budget/deadline left); the last failure, and where.
    Exhausted(usize, Error),
}

impl Router {
    /// Routes one request. A plain `fn` returning an `async move` block, not an `async
    /// fn`: an `async fn` keeps its arguments twice in its future (rust-lang/rust#62958),
    /// and the request is the largest of them; this future is allocated on every call.
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn would hold the request twice (rust-lang/rust#62958)"
    )]
    pub(super) fn route(
        self,
        mut req: SqlRequest,
    ) -> impl std::future::Future<Output = Result<SqlResponse, Error>> + Send {
        async move {
            let ctx = &req.context;
            let intent = ctx.intent();
            let (candidates, last_resort) =
                self.candidates(intent, ctx.read_consistency(), ctx.deadline());
            if candidates.is_empty() {
                return Err(self.nothing_eligible(intent, ctx.read_consistency()));
            }
            let hedge_after = self.shared.hedge_delay.filter(|_| {
                intent == Intent::Read
                    && ctx.is_idempotent()
                    && ctx.may_hedge()
                    && candidates.len() > 1
            });
            // Last resort: a region's open breaker may be passed (see `select`).
            req.context.set_breaker_bypass(last_resort);
            let ended = match hedge_after {
                None => self.in_turn(&req, &candidates).await,
                Some(delay) => self.hedged(&req, &candidates, delay).await,
            };
            match ended {
                Ended::Answered(response) => Ok(response),
                Ended::Failed(error) => Err(error),
                Ended::Exhausted(index, error) if error.server_number() == Some(3906) => {
                    Err(refused_read_only(&self.shared.regions[index].name).with_source(error))
                }
                Ended::Exhausted(_, error) => Err(error),
            }
        }
    }

    /// The bound of an attempt on `region`: the whole remaining budget when it is the
    /// `last` candidate (nowhere better to go), otherwise the region's latency-aware
    /// timeout (at least the configured attempt timeout), never past the deadline.
    fn attempt_limit(
        &self,
        region: &Region,
        req: &SqlRequest,
        last: bool,
        now: Instant,
    ) -> Option<Duration> {
        let floor = self
            .shared
            .attempt_timeout?
            .saturating_add(req.context.budget_extension());
        let remaining = req
            .context
            .deadline()
            .map(|d| d.saturating_duration_since(now));
        match remaining {
            Some(remaining) if last => Some(remaining),
            Some(remaining) => Some(region.latency.timeout_on_evidence(
                ATTEMPT_ROUND_TRIPS,
                floor,
                remaining,
            )),
            None => Some(region.latency.timeout_on_evidence(
                ATTEMPT_ROUND_TRIPS,
                floor,
                Duration::MAX,
            )),
        }
    }

    /// One attempt on region `index`, with its bookkeeping: in-flight count, the attempt's
    /// bound, the latency sample of an answer, and the stale-read count.
    async fn attempt(
        &self,
        index: usize,
        req: &SqlRequest,
        last: bool,
        watch: Option<&Arc<WireState>>,
    ) -> (usize, Result<SqlResponse, Error>) {
        let region = &self.shared.regions[index];
        region.make_room(req.context.deadline());
        let _in_flight = InFlight::enter(&region.in_flight);
        record_server(region);
        let start = Instant::now();
        let limit = self.attempt_limit(region, req, last, start);
        // Nowhere better to go: an open (or full half-open) breaker would only turn this
        // request into a failure; it passes, unrecorded.
        let bypassed = last || req.context.breaker_bypass();
        // `ready` then `call` rather than `oneshot`, and the request copied only once the
        // service is ready: this future holds no copy of it across an await (it is on
        // every call's path, and its size is allocated with the call's).
        let mut service = region.service.clone();
        let result = match service.ready().await {
            Ok(ready) => {
                let mut attempt = req.clone();
                if let Some(wire) = watch {
                    attempt.context.watch_attempt(wire.clone());
                }
                attempt.context.set_attempt_limit(limit);
                attempt.context.set_no_alternative(
                    last.then(|| crate::request::StillLast::new(self.clone(), index)),
                );
                attempt.context.set_breaker_bypass(bypassed);
                ready.call(attempt).await
            }
            Err(error) => Err(error),
        };
        let intent = req.context.intent();
        self.check_pool_starvation(index);
        if result.is_ok() {
            if bypassed {
                // It answered past its open breaker: let the breaker try it now (half-open)
                // rather than wait out its open period.
                region.breaker.allow_probe_now();
            }
            let end = Instant::now();
            region
                .latency
                .sample_at(end.saturating_duration_since(start), 1, end);
            let (changed, writable) = region.health.live(false, end);
            if changed {
                self.health_changed(index);
            }
            if intent == Intent::Read && !writable {
                emit(
                    self.shared.observer.as_ref(),
                    Event::StaleRead {
                        operation: req.context.operation(),
                        region: &region.name,
                    },
                );
            }
        }
        emit(
            self.shared.observer.as_ref(),
            Event::AttemptFinished {
                region: &region.name,
                intent,
                outcome: result.as_ref().err().map(Error::outcome),
            },
        );
        (index, result)
    }

    /// A region whose pool starved since the last look (a checkout kept waiting because
    /// new connections fail while every open one is busy) is degraded for a while: reads
    /// go where they need not queue, and the region's connections are left to what has
    /// nowhere else to go.
    fn check_pool_starvation(&self, index: usize) {
        let region = &self.shared.regions[index];
        let Some(pool) = &region.pool else { return };
        let starved = pool.starved_waits();
        let seen = region
            .starved_seen
            .swap(starved, std::sync::atomic::Ordering::Relaxed);
        if seen != starved && region.health.pool_starved(Instant::now()) {
            self.health_changed(index);
        }
    }

    /// Health bookkeeping after a failed attempt; whether the request may move on to
    /// another region.
    fn after_failure(&self, index: usize, req: &SqlRequest, error: &Error) -> bool {
        let region = &self.shared.regions[index];
        let verdict = self.shared.classifier.classify(error);
        let unanswered = matches!(
            error.kind(),
            ErrorKind::Timeout {
                scope: TimeoutScope::Attempt,
                ..
            } | ErrorKind::DeadlineExceeded
        ) && error.outcome() == Outcome::Ambiguous;
        if unanswered {
            // No answer within the bound (Karn's rule: no sample, back the timeouts off),
            // and the connections idle since before now may be as unanswered.
            region.latency.timed_out();
            if let Some(pool) = &region.pool {
                pool.suspicion().unanswered();
            }
        }
        if verdict.counts_as_failure && region.health.live(true, Instant::now()).0 {
            self.health_changed(index);
        }
        let read_only =
            req.context.intent() == Intent::Write && error.server_number() == Some(3906);
        if read_only {
            if region.health.mark_read_only() {
                self.health_changed(index);
            }
            self.probe_now();
        }
        if !crate::safety::may_resend(&req.context, error) {
            return false;
        }
        read_only
            || error.outcome() == Outcome::NotSent
            // A transient failure may do better elsewhere; a write the server rejected
            // stays (its retry goes back to the writable region).
            || (verdict.retryable
                && (error.outcome() == Outcome::Ambiguous || req.context.intent() == Intent::Read))
    }

    /// Whether one more attempt (a failover hop or a hedge) may start: the deadline must
    /// not have passed, and the attempt must be paid from the retry budget — unless it is
    /// `free`: a hop after a *not-sent* failure adds no load anywhere (the failed region
    /// never saw the request), so it costs nothing.
    fn may_add_attempt(&self, req: &SqlRequest, free: bool) -> bool {
        if req.context.deadline().is_some_and(|d| d <= Instant::now()) {
            return false;
        }
        match &self.shared.budget {
            Some(budget) if !free && !budget.try_withdraw() => {
                emit(
                    self.shared.observer.as_ref(),
                    Event::RetryBudgetExhausted {
                        operation: req.context.operation(),
                    },
                );
                false
            }
            _ => true,
        }
    }

    /// Reports that the request moves from region `from` to region `to`.
    fn moving_on(&self, req: &SqlRequest, from: usize, to: usize) {
        let regions = &self.shared.regions;
        emit(
            self.shared.observer.as_ref(),
            Event::FailoverAttempt {
                operation: req.context.operation(),
                from: &regions[from].name,
                to: &regions[to].name,
                intent: req.context.intent(),
            },
        );
    }

    /// The candidates one after the other (no hedging): the common path, kept free of the
    /// hedging machinery.
    async fn in_turn(&self, req: &SqlRequest, candidates: &[usize]) -> Ended {
        let mut n = 0;
        loop {
            let last = n + 1 == candidates.len();
            // The second chance races two executions: only for what may be hedged (a
            // stream may not: two would interleave their rows).
            let (index, result) = if last && req.context.is_idempotent() && req.context.may_hedge()
            {
                self.last_with_second_chance(candidates[n], req).await
            } else {
                self.attempt(candidates[n], req, last, None).await
            };
            let error = match result {
                Ok(response) => return Ended::Answered(response),
                Err(error) => error,
            };
            if !self.after_failure(index, req, &error) {
                return Ended::Failed(error);
            }
            let free = error.outcome() == Outcome::NotSent;
            let Some(&next) = candidates.get(n + 1) else {
                return Ended::Exhausted(index, error);
            };
            if !self.may_add_attempt(req, free) {
                return Ended::Exhausted(index, error);
            }
            self.moving_on(req, index, next);
            n += 1;
        }
    }

    /// The last region an idempotent request can use: one attempt with the whole remaining
    /// budget (nowhere better to go, and a slow answer is still an answer) and, if it is
    /// still unanswered when an attempt that had somewhere else to go would have timed out
    /// (the region's latency-aware bound), a second attempt on the same region — another
    /// connection — racing it. The first may be a slow query, or a connection the network
    /// silently lost (a close held back, a half-open socket) on a region that is otherwise
    /// fine; the first answer wins, a failure waits for the other attempt. The second
    /// attempt is paid from the retry budget, like a hedge, and is made only once the
    /// first was sent (one still waiting for a connection would only have a twin waiting
    /// beside it).
    async fn last_with_second_chance(
        &self,
        index: usize,
        req: &SqlRequest,
    ) -> (usize, Result<SqlResponse, Error>) {
        let region = &self.shared.regions[index];
        // One attempt future for every path (this one is inside every call's future).
        let wire = Arc::new(WireState::default());
        let first = self.attempt(index, req, true, Some(&wire));
        tokio::pin!(first);
        let now = Instant::now();
        let remaining = req
            .context
            .deadline()
            .map(|d| d.saturating_duration_since(now));
        let bound = match (remaining, self.attempt_limit(region, req, false, now)) {
            (Some(remaining), Some(bound)) if bound < remaining => bound,
            _ => return first.await,
        };
        // The race is against a request that was sent: one still waiting for a connection
        // (its region is down, or its pool cannot grow) gains nothing from a twin waiting
        // beside it, which would only count twice against the region's bound on waiting
        // requests. So the bound is counted again until the first attempt is sent.
        let timer = tokio::time::sleep(bound);
        tokio::pin!(timer);
        loop {
            tokio::select! {
                ended = &mut first => return ended,
                () = &mut timer => {}
            }
            // Not sent as far as the service says (a service that never says may have
            // sent it: the twin is made).
            if wire.outcome_if_lost() != Outcome::NotSent {
                break;
            }
            timer.as_mut().reset(Instant::now() + bound);
        }
        if !self.may_add_attempt(req, false) {
            return first.await;
        }
        emit(
            self.shared.observer.as_ref(),
            Event::Hedged {
                operation: req.context.operation(),
                from: &region.name,
                to: &region.name,
            },
        );
        // Boxed: rarely made, and inline it would double the size of every call's future.
        let mut second = Box::pin(self.attempt(index, req, true, None));
        tokio::select! {
            ended = &mut first => match ended {
                (_, Ok(_)) => ended,
                (_, Err(_)) => second.await,
            },
            ended = &mut second => match ended {
                (_, Ok(_)) => ended,
                (_, Err(_)) => first.await,
            },
        }
    }

    /// The candidates with hedging: while one attempt is running and still unanswered
    /// after `delay`, the next region is asked too; the first answer wins and the slower
    /// attempt is dropped (its request drained in the background). A failure moves on as in
    /// [`in_turn`](Self::in_turn), and restarts the hedge timer for the new attempt; a
    /// failure that cannot move on ends the request only when no other attempt is still
    /// running (that one may yet answer).
    async fn hedged(&self, req: &SqlRequest, candidates: &[usize], delay: Duration) -> Ended {
        let regions = &self.shared.regions;
        let mut pending = FuturesUnordered::new();
        let last = |n: usize| n + 1 == candidates.len();
        pending.push(self.attempt(candidates[0], req, last(0), None));
        // The regions with an attempt running, and when each started.
        let mut running = vec![(candidates[0], Instant::now())];
        let mut next = 1;
        let hedge = tokio::time::sleep(delay);
        tokio::pin!(hedge);
        let mut hedge_armed = true;
        let mut final_error: Option<Ended> = None;
        loop {
            tokio::select! {
                Some((index, result)) = pending.next() => {
                    let started = running.iter().find(|(i, _)| *i == index).map(|&(_, s)| s);
                    running.retain(|&(i, _)| i != index);
                    let error = match result {
                        Ok(response) => {
                            // The attempts still running that started no later than this
                            // one lost to a faster region: that slowness counts against
                            // their regions' fail-back clock, and their connections are
                            // suspect until those regions answer. A hedge sent after it
                            // and still running shows nothing (it had less time).
                            let won_started = started.unwrap_or_else(Instant::now);
                            for &(slow, _) in running.iter().filter(|&&(_, s)| s <= won_started) {
                                regions[slow].health.note_trouble(Instant::now());
                                if let Some(pool) = &regions[slow].pool {
                                    pool.suspicion().unanswered();
                                }
                            }
                            return Ended::Answered(response);
                        }
                        Err(error) => error,
                    };
                    if !self.after_failure(index, req, &error) {
                        if pending.is_empty() {
                            return final_error.unwrap_or(Ended::Failed(error));
                        }
                        final_error.get_or_insert(Ended::Failed(error));
                        continue;
                    }
                    // A hedged attempt still running: wait for it.
                    if !pending.is_empty() {
                        continue;
                    }
                    let free = error.outcome() == Outcome::NotSent;
                    if next >= candidates.len() || !self.may_add_attempt(req, free) {
                        return final_error.unwrap_or(Ended::Exhausted(index, error));
                    }
                    self.moving_on(req, index, candidates[next]);
                    pending.push(self.attempt(candidates[next], req, last(next), None));
                    running.push((candidates[next], Instant::now()));
                    next += 1;
                    // The new attempt gets its own hedge delay.
                    hedge.as_mut().reset(crate::deadline::instant_after(Instant::now(), delay));
                    hedge_armed = true;
                }
                _ = &mut hedge, if hedge_armed && next < candidates.len() && pending.len() == 1 => {
                    hedge_armed = false;
                    if self.may_add_attempt(req, false) {
                        let from = running.first().map_or(candidates[0], |&(i, _)| i);
                        emit(
                            self.shared.observer.as_ref(),
                            Event::Hedged {
                                operation: req.context.operation(),
                                from: &regions[from].name,
                                to: &regions[candidates[next]].name,
                            },
                        );
                        pending.push(self.attempt(candidates[next], req, last(next), None));
                        running.push((candidates[next], Instant::now()));
                        next += 1;
                    }
                }
            }
        }
    }

    /// Why no region can take the request now, region by region.
    fn nothing_eligible(&self, intent: Intent, consistency: Consistency) -> Error {
        let states: Vec<String> = self
            .shared
            .regions
            .iter()
            .map(|r| {
                let view = r.view(Instant::now(), None);
                let mut why = vec![view.grade.as_str()];
                if !view.permitted {
                    why.push(match r.breaker.state() {
                        BreakerState::Isolated => "isolated",
                        _ => "breaker open",
                    });
                }
                if !view.writable {
                    why.push("read-only");
                }
                let in_flight = r.in_flight.load(std::sync::atomic::Ordering::Relaxed);
                let shed = if view.saturated {
                    format!(", saturated: {in_flight} requests already waiting on it")
                } else {
                    String::new()
                };
                format!("{}: {}{shed}", r.name, why.join(", "))
            })
            .collect();
        let what = match (intent, consistency) {
            (Intent::Read, Consistency::AllowStale) => "no region can take this read",
            (Intent::Read, Consistency::Latest) => {
                "no writable region can take this read (it asked for the latest data)"
            }
            (Intent::Write, _) => "no writable region can take this write",
        };
        Error::new(
            ErrorKind::NoRegionAvailable {
                reason: format!("{what} ({})", states.join("; ")).into(),
            },
            Outcome::NotSent,
        )
        .turned_away()
    }
}

/// Names the serving region on the call's span (`server.address`, `server.port`, `region`).
fn record_server(region: &Region) {
    let span = tracing::Span::current();
    span.record("region", &*region.name);
    if let Some((host, port)) = &region.address {
        span.record("server.address", host.as_str());
        span.record("server.port", *port);
    }
}

/// One request counted in flight on a region until dropped.
struct InFlight<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(count: &'a std::sync::atomic::AtomicUsize) -> Self {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        InFlight(count)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A write refused as read-only (3906) by `region`, with no other writable region known.
fn refused_read_only(region: &str) -> Error {
    Error::new(
        ErrorKind::NoRegionAvailable {
            reason: format!(
                "no writable region: `{region}` refused the write as read-only (3906) and no other region is known to be writable yet"
            )
            .into(),
        },
        Outcome::NotSent,
    )
}
