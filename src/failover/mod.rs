//! Regional failover: regions in priority order, each with its own pool, circuit breaker
//! and health; reads to the most preferred healthy region, writes only to a writable one;
//! fail-back only after a region has stayed healthy for a hysteresis period.
//!
//! # Routing
//!
//! For each request the [`Router`] picks an ordered list of candidate regions:
//!
//! - **eligible** regions are healthy by their probes, have a breaker that lets calls
//!   through, and — for writes — are writable;
//! - the first candidate is the region currently *serving* that intent. It changes at once
//!   when the serving region stops being eligible (failover), but moves back to a more
//!   preferred region only after that region has been trouble-free for
//!   `failback_hysteresis` (no failed probe, no breaker opening, no failed request): the
//!   2023 incident flapped several times, and traffic that flaps with it is worse than
//!   traffic that stays put;
//! - the other eligible regions follow in priority order. If none is eligible, regions whose
//!   breaker lets calls through are tried (reads: any; writes: last known writable); if
//!   there are none either, the call fails at once with
//!   [`ErrorKind::NoRegionAvailable`](crate::error::ErrorKind::NoRegionAvailable), never
//!   hanging.
//!
//! Within one call, a failure moves the request to the next candidate only when that
//! cannot duplicate a write: the outcome is *not sent*, or *ambiguous* on an idempotent
//! request, or a transient server error on an idempotent read, or the region refused a
//! write as read-only (3906: nothing was applied). Moves
//! are bounded by the call's deadline (every region's attempt timeout is cut to the
//! remaining budget) and, unless the failed region never saw the request (*not sent*:
//! no extra load anywhere), draw on the shared [retry budget](crate::retry::budget).
//!
//! **Hedging**: an idempotent read still unanswered after `hedge_delay` (default 250 ms)
//! is also sent to the next candidate, and the first answer wins; the slower attempt is
//! dropped and its connection discarded. This is what moves reads off a black-holed
//! region in a quarter of a second instead of a full attempt timeout. Hedges draw on the
//! retry budget, so a slow-but-alive fleet cannot double its own load.
//!
//! # Health
//!
//! A background probe per region runs [`probe::PROBE_SQL`] (`SELECT 1` and the database's
//! `Updateability`) on its own connection, with a short timeout, at a jittered interval.
//! When a write is refused with 3906 (an Azure failover-group flip: the old primary turned
//! read-only), the region is marked read-only at once and every probe is nudged to run
//! now, so writes follow the new primary within one probe round trip rather than one
//! interval. [`Router::snapshot`] gives each region's breaker state, health, writability,
//! last probe and in-flight count; [`Router::subscribe`] delivers a new snapshot whenever
//! health, writability, a breaker or the serving region changes.

pub mod health;
pub mod probe;

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tower::util::BoxCloneSyncService;
use tower::ServiceExt;

use self::health::Health;
pub use self::health::{HealthPolicy, ProbeRecord, RegionSnapshot, Role};
use self::probe::Prober;
use crate::circuit_breaker::{BreakerState, CircuitBreakerHandle};
use crate::classify::SharedClassifier;
use crate::error::{Error, ErrorKind, Outcome};
use crate::observe::{emit, Event, SharedObserver};
use crate::pool::Pool;
use crate::request::Intent;
use crate::retry::budget::RetryBudget;
use crate::sql::{SqlRequest, SqlResponse};

/// The per-region service the router calls (breaker → attempt timeout → pool → tiberius).
pub type RegionService = BoxCloneSyncService<SqlRequest, SqlResponse, Error>;

/// Everything the router needs to know about one region.
pub struct RegionSpec {
    /// Name (a metric label: lower-case).
    pub name: Cow<'static, str>,
    /// Configured role.
    pub role: Role,
    /// The region's service stack.
    pub service: RegionService,
    /// The region's breaker (the one inside `service`).
    pub breaker: CircuitBreakerHandle,
    /// How to probe it; `None` disables probes (health then comes from the breaker alone).
    pub prober: Option<Arc<dyn Prober>>,
    /// Its pool, for snapshots.
    pub pool: Option<Pool>,
    /// The server's host and port, for telemetry.
    pub address: Option<(String, u16)>,
}

impl fmt::Debug for RegionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegionSpec")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// Probe and health settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailoverSettings {
    /// Time between probes of a region.
    pub probe_interval: Duration,
    /// Bound of one probe.
    pub probe_timeout: Duration,
    /// ± fraction applied to each interval.
    pub probe_jitter: f64,
    /// Health thresholds and fail-back hysteresis.
    pub health: HealthPolicy,
    /// Idempotent reads still unanswered after this long are also sent to the next
    /// region; the first answer wins. Each hedge draws on the retry budget. `None`
    /// disables hedging.
    pub hedge_delay: Option<Duration>,
}

impl Default for FailoverSettings {
    /// 2 s ± 20 % interval, 1 s probe timeout, [`HealthPolicy::default`], hedging after
    /// 250 ms.
    fn default() -> Self {
        FailoverSettings {
            probe_interval: Duration::from_secs(2),
            probe_timeout: Duration::from_secs(1),
            probe_jitter: 0.2,
            health: HealthPolicy::default(),
            hedge_delay: Some(Duration::from_millis(250)),
        }
    }
}

struct Region {
    name: Arc<str>,
    address: Option<(String, u16)>,
    service: RegionService,
    breaker: CircuitBreakerHandle,
    health: Arc<Health>,
    pool: Option<Pool>,
    in_flight: Arc<AtomicUsize>,
    nudge: Arc<Notify>,
}

struct Shared {
    regions: Vec<Region>,
    /// The region serving reads (0) and writes (1).
    serving: Mutex<[Option<usize>; 2]>,
    budget: Option<RetryBudget>,
    hedge_delay: Option<Duration>,
    classifier: SharedClassifier,
    observer: Option<SharedObserver>,
    report: watch::Sender<Vec<RegionSnapshot>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        for task in self
            .tasks
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }
}

/// Routes each request to a region. See the [module docs](self). Cloning shares the
/// router; background probes stop when the last clone is dropped.
#[derive(Clone)]
pub struct Router {
    shared: Arc<Shared>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.shared.regions.iter().map(|r| &*r.name).collect();
        f.debug_struct("Router").field("regions", &names).finish()
    }
}

fn slot(intent: Intent) -> usize {
    match intent {
        Intent::Read => 0,
        Intent::Write => 1,
    }
}

impl Router {
    /// Starts a router over `regions` (most preferred first) and their background probes.
    /// Must be called within a tokio runtime.
    pub fn start(
        regions: Vec<RegionSpec>,
        settings: FailoverSettings,
        budget: Option<RetryBudget>,
        classifier: SharedClassifier,
        observer: Option<SharedObserver>,
    ) -> Self {
        let mut probers = Vec::new();
        let regions: Vec<Region> = regions
            .into_iter()
            .map(|spec| {
                probers.push(spec.prober);
                Region {
                    name: Arc::from(spec.name.as_ref()),
                    address: spec.address,
                    service: spec.service,
                    breaker: spec.breaker,
                    health: Arc::new(Health::new(spec.role, settings.health)),
                    pool: spec.pool,
                    in_flight: Arc::default(),
                    nudge: Arc::default(),
                }
            })
            .collect();
        let (report, _) = watch::channel(Vec::new());
        let router = Router {
            shared: Arc::new(Shared {
                regions,
                serving: Mutex::new([None, None]),
                budget,
                hedge_delay: settings.hedge_delay,
                classifier,
                observer,
                report,
                tasks: Mutex::new(Vec::new()),
            }),
        };
        let mut tasks = Vec::new();
        for (index, prober) in probers.into_iter().enumerate() {
            let weak = Arc::downgrade(&router.shared);
            let region = &router.shared.regions[index];
            if let Some(prober) = prober {
                let health = region.health.clone();
                let nudge = region.nudge.clone();
                let breaker = region.breaker.clone();
                let weak = weak.clone();
                tasks.push(tokio::spawn(probe::run(
                    prober,
                    settings.probe_interval,
                    settings.probe_timeout,
                    settings.probe_jitter,
                    0x5eed ^ index as u64,
                    nudge,
                    move |result| {
                        let now = Instant::now();
                        if result.is_ok() {
                            // The probe saw the region answer: an open breaker may try it now
                            // rather than wait out its (growing) open duration.
                            breaker.allow_probe_now();
                        }
                        let changed = match result {
                            Ok(ok) => health.probe_ok(ok, now),
                            Err((error, latency)) => health.probe_failed(error, latency, now),
                        };
                        if changed {
                            if let Some(shared) = weak.upgrade() {
                                Router { shared }.health_changed(index);
                            }
                        } else if let Some(shared) = weak.upgrade() {
                            Router { shared }.publish();
                        }
                    },
                )));
            }
            let mut transitions = region.breaker.subscribe();
            let health = region.health.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    match transitions.recv().await {
                        Ok(t) => {
                            if t.to == BreakerState::Open || t.to == BreakerState::Isolated {
                                health.note_trouble(t.at);
                            }
                            match weak.upgrade() {
                                Some(shared) => Router { shared }.reevaluate(),
                                None => return,
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    }
                }
            }));
        }
        *router
            .shared
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = tasks;
        router.reevaluate();
        router
    }

    /// Each region's state now (live: in-flight and pool figures are read now).
    pub fn snapshot(&self) -> Vec<RegionSnapshot> {
        let serving = *self.serving_lock();
        self.shared
            .regions
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let (healthy, writable) = r.health.status();
                let pool = r.pool.as_ref().map(|p| (p.state(), p.settings().max_size));
                RegionSnapshot {
                    name: Cow::Owned(r.name.to_string()),
                    role: r.health.role(),
                    breaker: r.breaker.state(),
                    healthy,
                    writable,
                    last_probe: r.health.last_probe(),
                    in_flight: r.in_flight.load(Ordering::Relaxed),
                    pool_connections: pool.as_ref().map_or(0, |(s, _)| s.connections),
                    pool_idle: pool.as_ref().map_or(0, |(s, _)| s.idle_connections),
                    pool_max: pool.as_ref().map_or(0, |(_, m)| *m),
                    serving_reads: serving[0] == Some(i),
                    serving_writes: serving[1] == Some(i),
                }
            })
            .collect()
    }

    /// A receiver that sees a new snapshot whenever health, writability, a breaker or the
    /// serving region changes.
    pub fn subscribe(&self) -> watch::Receiver<Vec<RegionSnapshot>> {
        self.shared.report.subscribe()
    }

    /// The breaker of the region called `name`.
    pub fn breaker(&self, name: &str) -> Option<&CircuitBreakerHandle> {
        self.region(name).map(|r| &r.breaker)
    }

    /// Asks every region's probe to run now.
    pub fn probe_now(&self) {
        for region in &self.shared.regions {
            region.nudge.notify_one();
        }
    }

    fn region(&self, name: &str) -> Option<&Region> {
        self.shared.regions.iter().find(|r| &*r.name == name)
    }

    fn serving_lock(&self) -> std::sync::MutexGuard<'_, [Option<usize>; 2]> {
        self.shared
            .serving
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self) {
        self.shared.report.send_replace(self.snapshot());
    }

    /// Re-evaluates which region serves each intent (after a health or breaker change, so
    /// the serving region is right even when no request is flowing), then publishes.
    fn reevaluate(&self) {
        let _ = self.candidates(Intent::Read);
        let _ = self.candidates(Intent::Write);
        self.publish();
    }

    fn health_changed(&self, index: usize) {
        let region = &self.shared.regions[index];
        let (healthy, writable) = region.health.status();
        emit(
            self.shared.observer.as_ref(),
            Event::RegionHealthChanged {
                region: &region.name,
                healthy,
                writable,
            },
        );
        self.reevaluate();
    }

    fn eligible(&self, region: &Region, intent: Intent) -> bool {
        let (healthy, writable) = region.health.status();
        healthy && region.breaker.is_call_permitted() && (intent == Intent::Read || writable)
    }

    /// The candidate regions for `intent`, serving region first.
    fn candidates(&self, intent: Intent) -> Vec<usize> {
        let now = Instant::now();
        let regions = &self.shared.regions;
        let eligible: Vec<usize> = (0..regions.len())
            .filter(|&i| self.eligible(&regions[i], intent))
            .collect();
        let mut serving = self.serving_lock();
        let current = serving[slot(intent)];
        let chosen = match (current, eligible.first()) {
            (_, None) => None,
            (Some(cur), Some(_)) if eligible.contains(&cur) => {
                // Fail back only to a more preferred region that has been stable.
                Some(
                    eligible
                        .iter()
                        .copied()
                        .find(|&i| i < cur && regions[i].health.is_stable(now))
                        .unwrap_or(cur),
                )
            }
            (_, Some(&best)) => Some(best),
        };
        if chosen != current {
            serving[slot(intent)] = chosen;
            drop(serving);
            emit(
                self.shared.observer.as_ref(),
                Event::RegionSwitched {
                    intent,
                    from: current.map(|i| &*regions[i].name),
                    to: chosen.map(|i| &*regions[i].name),
                },
            );
            self.publish();
        }
        match chosen {
            Some(first) => std::iter::once(first)
                .chain(eligible.into_iter().filter(|&i| i != first))
                .collect(),
            // Nothing is eligible: last resort, regions whose breaker lets calls through.
            None => (0..regions.len())
                .filter(|&i| {
                    regions[i].breaker.is_call_permitted()
                        && (intent == Intent::Read || regions[i].health.status().1)
                })
                .collect(),
        }
    }

    /// One attempt on region `index`, with its bookkeeping.
    async fn attempt(&self, index: usize, req: SqlRequest) -> (usize, Result<SqlResponse, Error>) {
        let region = &self.shared.regions[index];
        region.in_flight.fetch_add(1, Ordering::Relaxed);
        let _in_flight = InFlight(&region.in_flight);
        record_server(region);
        let req_intent = req.context.intent();
        let result = region.service.clone().oneshot(req).await;
        emit(
            self.shared.observer.as_ref(),
            Event::AttemptFinished {
                region: &region.name,
                intent: req_intent,
                outcome: result.as_ref().err().map(Error::outcome),
            },
        );
        (index, result)
    }

    /// Health bookkeeping after a failed attempt; whether the request may move on to
    /// another region without risking a duplicate write.
    fn after_failure(&self, index: usize, req: &SqlRequest, error: &Error) -> bool {
        let region = &self.shared.regions[index];
        let verdict = self.shared.classifier.classify(error);
        if verdict.counts_as_failure {
            region.health.note_trouble(Instant::now());
        }
        let read_only =
            req.context.intent() == Intent::Write && error.server_number() == Some(3906);
        if read_only {
            if region.health.mark_read_only() {
                self.health_changed(index);
            }
            self.probe_now();
        }
        read_only
            || match error.outcome() {
                Outcome::NotSent => true,
                Outcome::Ambiguous => req.context.is_idempotent() && verdict.retryable,
                // A read the region answered with a transient error (40613, 40197, 49918…)
                // may do better elsewhere; a write stays (its retry goes back to the
                // writable region).
                Outcome::Rejected => {
                    req.context.intent() == Intent::Read
                        && req.context.is_idempotent()
                        && verdict.retryable
                }
            }
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

    async fn route(self, req: SqlRequest) -> Result<SqlResponse, Error> {
        let intent = req.context.intent();
        let candidates = self.candidates(intent);
        if candidates.is_empty() {
            return Err(self.nothing_eligible(intent));
        }
        let hedge_after = self.shared.hedge_delay.filter(|_| {
            intent == Intent::Read && req.context.is_idempotent() && candidates.len() > 1
        });
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

    /// The candidates one after the other (no hedging): the common path, kept free of the
    /// hedging machinery.
    async fn in_turn(&self, req: &SqlRequest, candidates: &[usize]) -> Ended {
        let mut n = 0;
        loop {
            let (index, result) = self.attempt(candidates[n], req.clone()).await;
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

    /// The candidates with one hedge: when the first attempt is still unanswered after
    /// `delay`, the next region is asked too; the first answer wins and the slower attempt
    /// is dropped (its connection discarded). Failures move on as in [`in_turn`](Self::in_turn).
    async fn hedged(&self, req: &SqlRequest, candidates: &[usize], delay: Duration) -> Ended {
        let regions = &self.shared.regions;
        let first = candidates[0];
        let mut pending = FuturesUnordered::new();
        pending.push(self.attempt(first, req.clone()));
        let mut running = vec![first];
        let mut next = 1;
        let mut hedge = std::pin::pin!(tokio::time::sleep(delay));
        let mut hedged = false;
        loop {
            tokio::select! {
                Some((index, result)) = pending.next() => {
                    running.retain(|&i| i != index);
                    let error = match result {
                        Ok(response) => {
                            // The attempts still running lost to a faster region: that
                            // slowness counts against their regions' fail-back clock.
                            for &slow in &running {
                                regions[slow].health.note_trouble(Instant::now());
                            }
                            return Ended::Answered(response);
                        }
                        Err(error) => error,
                    };
                    if !self.after_failure(index, req, &error) {
                        return Ended::Failed(error);
                    }
                    // A hedged attempt still running: wait for it.
                    if !pending.is_empty() {
                        continue;
                    }
                    let free = error.outcome() == Outcome::NotSent;
                    if next >= candidates.len() || !self.may_add_attempt(req, free) {
                        return Ended::Exhausted(index, error);
                    }
                    self.moving_on(req, index, candidates[next]);
                    pending.push(self.attempt(candidates[next], req.clone()));
                    running.push(candidates[next]);
                    next += 1;
                }
                _ = &mut hedge, if !hedged && next < candidates.len() && pending.len() == 1 => {
                    hedged = true;
                    if self.may_add_attempt(req, false) {
                        emit(
                            self.shared.observer.as_ref(),
                            Event::Hedged {
                                operation: req.context.operation(),
                                from: &regions[first].name,
                                to: &regions[candidates[next]].name,
                            },
                        );
                        pending.push(self.attempt(candidates[next], req.clone()));
                        running.push(candidates[next]);
                        next += 1;
                    }
                }
            }
        }
    }

    /// Why no region can take `intent` now, region by region.
    fn nothing_eligible(&self, intent: Intent) -> Error {
        let states: Vec<String> = self
            .shared
            .regions
            .iter()
            .map(|r| {
                let (healthy, writable) = r.health.status();
                let mut why = Vec::new();
                if !healthy {
                    why.push("unhealthy");
                }
                if !r.breaker.is_call_permitted() {
                    why.push(match r.breaker.state() {
                        BreakerState::Isolated => "isolated",
                        _ => "breaker open",
                    });
                }
                if intent == Intent::Write && !writable {
                    why.push("read-only");
                }
                format!("{}: {}", r.name, why.join(", "))
            })
            .collect();
        let what = match intent {
            Intent::Read => "no healthy region",
            Intent::Write => "no healthy writable region",
        };
        Error::new(
            ErrorKind::NoRegionAvailable {
                reason: format!("{what} ({})", states.join("; ")).into(),
            },
            Outcome::NotSent,
        )
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

/// How routing one request ended.
enum Ended {
    Answered(SqlResponse),
    /// A failure that must not move on (it could duplicate a write, or it is permanent).
    Failed(Error),
    /// Every candidate tried (or no budget/deadline left); the last failure, and where.
    Exhausted(usize, Error),
}

struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
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

impl tower::Service<SqlRequest> for Router {
    type Response = SqlResponse;
    type Error = Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<SqlResponse, Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: SqlRequest) -> Self::Future {
        Box::pin(self.clone().route(req))
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router").finish_non_exhaustive()
    }
}
