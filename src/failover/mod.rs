//! Regional failover: regions in priority order, each with its own pool, circuit breaker,
//! graded health and latency estimate; reads to the best region on offer, writes only to
//! a writable one; read fail-back only after a region has stayed healthy for a hysteresis
//! period. The rule everywhere: *fail fast only when there is somewhere better to go*.
//!
//! # Health
//!
//! Each region is [`Grade::Healthy`], [`Grade::Degraded`] or [`Grade::Down`], from its
//! background probes *and* its live traffic ([`health`]): slow probes, a quarter of recent
//! attempts failing, a recent recovery, or a pool that cannot grow to meet demand (a
//! checkout kept waiting because new connections fail while every open one is busy, as
//! in a login storm under load) make it degraded; failed probes with no live
//! success since make it down; one good probe or one live answer lifts a down region to
//! degraded, which is enough for writes. The circuit breaker still cuts off a region that
//! is truly down.
//!
//! # Routing
//!
//! For each request the [`Router`] picks an ordered list of candidate regions
//! ([`select`], a pure function): best grade first, then priority; a read keeps its
//! serving region until a better grade is on offer and fails back to a more preferred
//! region only after that region has been trouble-free for `failback_hysteresis` (the
//! 2023 incident flapped several times, and traffic that flaps with it is worse than
//! traffic that stays put); writes follow the best writable region at once. A read that
//! asks for [`Consistency::Latest`](crate::request::Consistency) never goes to a read-only
//! replica. A degraded or down region holding as many requests as its pool has
//! connections takes no more (they would only queue): the request moves on, or is shed at once. If no
//! region can take the request the call fails at once with
//! [`ErrorKind::NoRegionAvailable`](crate::error::ErrorKind::NoRegionAvailable), never
//! hanging.
//!
//! # Timeouts
//!
//! Each attempt's bound comes from its region's [latency estimate](latency): the
//! configured attempt timeout at normal latency, longer when the region is slow, never
//! past the call's deadline — and the **whole remaining budget** when the attempt is the
//! last candidate (no better alternative: the only writable region for a write, the last
//! region for a read). Connects and probes adapt the same way. The last candidate also
//! passes its region's open circuit breaker (unrecorded): a breaker fails fast so that a
//! request goes somewhere better, and there is nowhere better. A region that is down is
//! still cut off whenever another region can serve, and no region holds more requests
//! than its pool has connections once it is not healthy.
//!
//! Within one call, a failure moves the request to the next candidate only when the
//! [write-safety rule](crate::safety) allows re-sending it and moving is worth it: the
//! request was *not sent*, or the region refused a write as read-only (3906), or the error
//! is retryable (transient) and the request a read or an idempotent write. Moves are
//! bounded by the call's deadline and, unless the failed region never saw the request
//! (*not sent*: no extra load anywhere), draw on the shared
//! [retry budget](crate::retry::budget).
//!
//! **Hedging**: an idempotent read (that allows it: [`RequestContext::hedge`]) still
//! unanswered after `hedge_delay` (default 250 ms) is also sent to the next candidate,
//! and the first answer wins; the slower attempt is dropped (the pool drains its request
//! in the background and keeps the connection).
//! Hedges draw on the retry budget, so a slow-but-alive fleet cannot double its own load.
//!
//! # Probes
//!
//! A background probe per region runs [`probe::PROBE_SQL`] (`SELECT 1` and the database's
//! `Updateability`) on its own connection, at a jittered interval. When a write is refused
//! with 3906 (an Azure failover-group flip: the old primary turned read-only), the region
//! is marked read-only at once and every probe is nudged to run now, so writes follow the
//! new primary within one probe round trip. [`Router::snapshot`] gives each region's
//! breaker state, grade, writability, latency, last probe and in-flight count;
//! [`Router::subscribe`] delivers a new snapshot whenever health, writability, a breaker
//! or the serving region changes.
//!
//! [`RequestContext::hedge`]: crate::RequestContext::hedge

mod execute;
pub mod health;
pub mod latency;
pub mod probe;
pub mod select;
mod tasks;

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tower::util::BoxCloneSyncService;

use self::health::Health;
pub use self::health::{Grade, HealthPolicy, ProbeRecord, RegionSnapshot, Role};
pub use self::latency::{LatencyEstimator, LatencySnapshot};
use self::probe::Prober;
use self::select::{RegionView, Selection};
use crate::circuit_breaker::{BreakerState, CircuitBreakerHandle};
use crate::classify::SharedClassifier;
use crate::error::Error;
use crate::observe::{emit, Event, SharedObserver};
use crate::pool::Pool;
use crate::request::{Consistency, Intent};
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
    /// How to probe it; `None` disables probes (health then comes from live traffic and
    /// the breaker).
    pub prober: Option<Arc<dyn Prober>>,
    /// Its pool, for snapshots and the in-flight bound of a degraded region.
    pub pool: Option<Pool>,
    /// The server's host and port, for telemetry.
    pub address: Option<(String, u16)>,
    /// Its latency estimate (shared with its connection manager, so connects adapt too).
    pub latency: Arc<LatencyEstimator>,
}

impl fmt::Debug for RegionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegionSpec")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// Probe, health and timeout settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailoverSettings {
    /// Time between probes of a region (at least 100 ms; smaller values are raised).
    pub probe_interval: Duration,
    /// Bound of one probe at normal latency (it grows with the region's latency).
    pub probe_timeout: Duration,
    /// ± fraction applied to each interval.
    pub probe_jitter: f64,
    /// Health thresholds and fail-back hysteresis.
    pub health: HealthPolicy,
    /// Idempotent reads still unanswered after this long are also sent to the next
    /// region; the first answer wins. Each hedge draws on the retry budget. `None`
    /// disables hedging.
    pub hedge_delay: Option<Duration>,
    /// The attempt timeout at normal latency: the floor of each attempt's latency-aware
    /// bound. `None` leaves attempts to the attempt-timeout layer's fixed value.
    pub attempt_timeout: Option<Duration>,
    /// The longest a probe may take however slow the region (at least `probe_timeout`).
    pub max_probe_timeout: Duration,
}

impl Default for FailoverSettings {
    /// 2 s ± 20 % interval, 1 s probe timeout (up to 8 s on a slow region),
    /// [`HealthPolicy::default`], hedging after 250 ms, attempts left to the attempt layer.
    fn default() -> Self {
        FailoverSettings {
            probe_interval: Duration::from_secs(2),
            probe_timeout: Duration::from_secs(1),
            probe_jitter: 0.2,
            health: HealthPolicy::default(),
            hedge_delay: Some(Duration::from_millis(250)),
            attempt_timeout: None,
            max_probe_timeout: Duration::from_secs(8),
        }
    }
}

struct Region {
    name: Arc<str>,
    address: Option<(String, u16)>,
    service: RegionService,
    breaker: CircuitBreakerHandle,
    health: Arc<Health>,
    latency: Arc<LatencyEstimator>,
    pool: Option<Pool>,
    in_flight: Arc<AtomicUsize>,
    /// The pool's starved-wait count when last looked at (see
    /// [`Pool::starved_waits`](crate::pool::Pool::starved_waits)).
    starved_seen: AtomicU64,
    nudge: Arc<Notify>,
}

impl Region {
    /// What [`select`](select::select) needs to know, now, for a request due at `due`.
    fn view(&self, now: Instant, due: Option<Instant>) -> RegionView {
        let (grade, writable, stable) = self.health.view(now);
        let saturated =
            self.saturated(grade) && !due.is_some_and(|due| self.would_make_room(grade, due));
        let permitted = self.breaker.is_call_permitted();
        RegionView {
            grade,
            permitted,
            bypassable: !permitted && self.breaker.state() == BreakerState::Open,
            writable,
            stable,
            saturated,
        }
    }

    /// Whether as many requests as the region may hold wait on it: as many as its pool
    /// has connections, once it is not healthy (a slow or down region must not take every
    /// request slot of the service).
    fn saturated(&self, grade: Grade) -> bool {
        grade != Grade::Healthy && self.at_bound()
    }

    /// As many requests are in flight on the region as its pool has connections.
    fn at_bound(&self) -> bool {
        self.pool.as_ref().is_some_and(|p| {
            self.in_flight.load(Ordering::Relaxed) >= p.settings().max_size as usize
        })
    }

    /// Whether a saturated region would make room for a request due at `due`: while it is
    /// down ([`gives_way`]), a request waiting there for a connection that is due earlier
    /// gives way (see `pool::waiting`).
    fn would_make_room(&self, grade: Grade, due: Instant) -> bool {
        gives_way(grade)
            && self
                .pool
                .as_ref()
                .is_some_and(|p| p.waiting().would_give_way(due))
    }

    /// Makes the room [`would_make_room`](Self::would_make_room) promised a request due
    /// at `due` that starts an attempt here: if the region is still saturated, the waiting
    /// request due first gives way. (As before, a request the selection let in is not
    /// turned away here: a race past the bound is brief and small.) The bound is looked at
    /// first: this runs on every attempt.
    fn make_room(&self, due: Option<Instant>) {
        let (Some(due), Some(pool)) = (due, &self.pool) else {
            return;
        };
        if self.at_bound() && gives_way(self.health.view(Instant::now()).0) {
            pool.waiting().give_way(due);
        }
    }
}

/// Whether requests waiting on a saturated region of this grade give way to later ones.
/// Only while it is down: a place in its line is then worth nothing (nobody is served,
/// and whoever still waits when it comes back is served at once), and the request due
/// first has the least chance to see it back. A slow region serving its line keeps the
/// order: the request due first is the next served.
fn gives_way(grade: Grade) -> bool {
    grade == Grade::Down
}

struct Shared {
    regions: Vec<Region>,
    /// The region serving reads (0) and writes (1).
    serving: Mutex<[Option<usize>; 2]>,
    budget: Option<RetryBudget>,
    hedge_delay: Option<Duration>,
    attempt_timeout: Option<Duration>,
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

/// The serving slot a request of this kind follows, and whether it moves that slot: a read
/// that must see the latest data follows the writes' slot and moves nothing.
fn serving_slot(intent: Intent, consistency: Consistency) -> (usize, bool) {
    let tracked = intent == Intent::Write || consistency == Consistency::AllowStale;
    (slot(if tracked { intent } else { Intent::Write }), tracked)
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
                    latency: spec.latency,
                    pool: spec.pool,
                    in_flight: Arc::default(),
                    starved_seen: AtomicU64::new(0),
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
                attempt_timeout: settings.attempt_timeout,
                classifier,
                observer,
                report,
                tasks: Mutex::new(Vec::new()),
            }),
        };
        let tasks = tasks::spawn(&router, probers, &settings);
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
                let (grade, writable) = r.health.status();
                let pool = r.pool.as_ref().map(|p| (p.state(), p.settings().max_size));
                RegionSnapshot {
                    name: Cow::Owned(r.name.to_string()),
                    role: r.health.role(),
                    breaker: r.breaker.state(),
                    healthy: grade != Grade::Down,
                    grade,
                    latency: r.latency.snapshot(),
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
        let _ = self.candidates(Intent::Read, Consistency::AllowStale, None);
        let _ = self.candidates(Intent::Write, Consistency::AllowStale, None);
        self.publish();
    }

    fn health_changed(&self, index: usize) {
        let region = &self.shared.regions[index];
        let (grade, writable) = region.health.status();
        emit(
            self.shared.observer.as_ref(),
            Event::RegionHealthChanged {
                region: &region.name,
                healthy: grade != Grade::Down,
                grade,
                writable,
            },
        );
        self.reevaluate();
    }

    /// The candidate regions for a request, serving region first; updates (and reports)
    /// the serving region of the intent. A read that must see the latest data follows the
    /// writes' serving region and moves nothing. `due` is the request's deadline (a down,
    /// saturated region makes room for a request due later than one waiting there).
    fn candidates(
        &self,
        intent: Intent,
        consistency: Consistency,
        due: Option<Instant>,
    ) -> (Vec<usize>, bool) {
        let regions = &self.shared.regions;
        let (followed, tracked) = serving_slot(intent, consistency);
        let mut serving = self.serving_lock();
        let current = serving[followed];
        let Selection {
            serving: chosen,
            candidates,
            last_resort,
        } = self.with_views(due, |views| {
            select::select(views, intent, consistency, current)
        });
        if tracked && chosen != current {
            serving[followed] = chosen;
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
        (candidates, last_resort)
    }

    /// Runs `f` on what [`select`](select::select) needs to know about every region, now
    /// (on the stack for up to `INLINE_VIEWS` regions: this runs on every call).
    fn with_views<R>(&self, due: Option<Instant>, f: impl FnOnce(&[RegionView]) -> R) -> R {
        const INLINE_VIEWS: usize = 8;
        let now = Instant::now();
        let regions = &self.shared.regions;
        if regions.len() > INLINE_VIEWS {
            return f(&regions.iter().map(|r| r.view(now, due)).collect::<Vec<_>>());
        }
        let mut views = [RegionView::UNUSABLE; INLINE_VIEWS];
        for (view, region) in views.iter_mut().zip(regions.iter()) {
            *view = region.view(now, due);
        }
        f(&views[..regions.len()])
    }

    /// Whether a region other than `index` could take a request of this kind now (the
    /// same selection as [`candidates`](Self::candidates), without moving the serving
    /// region or reporting anything).
    pub(crate) fn has_alternative(
        &self,
        intent: Intent,
        consistency: Consistency,
        index: usize,
    ) -> bool {
        let current = self.serving_lock()[serving_slot(intent, consistency).0];
        self.with_views(None, |views| {
            select::select(views, intent, consistency, current)
        })
        .candidates
        .iter()
        .any(|&i| i != index)
    }
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
