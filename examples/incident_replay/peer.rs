//! The peer arm: what a careful team builds today without this crate, with the best
//! Rust peer, tower-resilience, configured as its own guides recommend for databases,
//! over a plain bb8 pool of tiberius connections per region (the baseline's
//! [`PlainManager`], bb8 defaults but for a maximum of 10 connections).
//!
//! Outermost first (the guides' "recommended layer order": total timeout, retry,
//! circuit breaker, per-attempt timeout):
//!
//! * `TimeLimiter` of the request's deadline (`--budget`, 5 s by default; the guides'
//!   database stack bounds a query at 5 s), around the choice of region below;
//!
//! then per region:
//!
//! * `Retry`: [`MAX_ATTEMPTS`] attempts (the database stack's `max_attempts(2)`),
//!   exponential backoff from [`BACKOFF`], retrying only transient errors
//!   (`is_transient_db_error`: I/O errors, timeouts and SQL Server's documented
//!   transient error numbers, [`TRANSIENT`]) and never a rejection by the breaker.
//!   Writes carry no idempotency key, so, as the guides say about non-idempotent
//!   operations, a write is retried only when it surely never reached the server (no
//!   connection could be had);
//! * `CircuitBreaker` as in the guides' "database replica failover" example: opens at
//!   a 50 % failure rate over the last 100 calls (at least 10), stays open 30 s;
//! * `TimeLimiter` per attempt, [`ATTEMPT_TIMEOUT`], so that an attempt that hangs
//!   leaves room for the retry within the deadline and counts as a failure for the
//!   breaker (the guides' "per-call timeout" innermost).
//!
//! **Failover** uses tower-resilience's health check, its facility for "primary/secondary
//! databases": a `HealthCheckWrapper` over the two regions (primary first,
//! `SelectionStrategy::FirstAvailable`), checking each with `SELECT 1` on a pooled
//! connection every [`HEALTH_INTERVAL`] (the guides: every 5–30 s), with the crate's
//! defaults otherwise: a 2 s timeout, 2 consecutive failures to mark a region unhealthy
//! (the guides: "require 2-3 consecutive failures"), 1 success to recover.
//!
//! * A **read** goes to the first usable region; when that region's breaker is open
//!   (the guides' replica-failover scenario: "circuit breaker opens, application
//!   switches to the read replica") it goes to the next usable one.
//! * A **write** goes to the primary. The team knows the primary is the writer and
//!   the health check says nothing about writability, so after a failover-group flip
//!   its writes fail with the read-only error until someone reconfigures it (a team
//!   using the failover group's read-write listener name would follow a flip through
//!   DNS; the replay has no DNS).

use std::sync::Arc;
use std::time::Duration;

use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceExt};
use tower_resilience::circuitbreaker::CircuitBreakerLayer;
use tower_resilience::healthcheck::{HealthCheckWrapper, HealthStatus, SelectionStrategy};
use tower_resilience::retry::RetryLayer;
use tower_resilience::timelimiter::{TimeLimiterError, TimeLimiterLayer};

use crate::arms::{AttemptLog, CallResult, PlainManager, Region};

/// Attempts per call (the first included).
pub const MAX_ATTEMPTS: usize = 2;
/// First backoff of the exponential backoff between attempts.
pub const BACKOFF: Duration = Duration::from_millis(100);
/// Time limit of one attempt.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the health check probes each region.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// SQL Server / Azure SQL error numbers a team treats as transient (Microsoft's list
/// of transient errors for Azure SQL, plus a deadlock victim).
pub const TRANSIENT: &[u32] = &[
    1205, 4060, 4221, 10928, 10929, 40143, 40197, 40501, 40540, 40613, 49918, 49919, 49920,
];

/// One request to the database.
#[derive(Debug, Clone, Copy)]
pub enum PeerRequest {
    /// Read the item with this id.
    Read(i32),
    /// Insert this write id.
    Write(i64),
}

/// Why a call failed, as the team's code sees it.
#[derive(Debug, Clone)]
pub enum PeerError {
    /// The database or the network failed.
    Db {
        /// The statement may have reached the server (it may have been applied).
        maybe_applied: bool,
        /// An error the team retries.
        transient: bool,
        /// A short label for the report.
        label: &'static str,
    },
    /// An attempt hit [`ATTEMPT_TIMEOUT`].
    AttemptTimeout,
    /// The region's breaker is open.
    CircuitOpen,
    /// The call hit its deadline.
    Timeout,
    /// No region is usable according to the health check.
    NoRegion,
}

impl std::fmt::Display for PeerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

impl std::error::Error for PeerError {}

impl PeerError {
    /// A short label for the report.
    pub fn label(&self) -> &'static str {
        match self {
            PeerError::Db { label, .. } => label,
            PeerError::AttemptTimeout => "attempt_timeout",
            PeerError::CircuitOpen => "circuit_open",
            PeerError::Timeout => "timeout",
            PeerError::NoRegion => "no_healthy_region",
        }
    }

    /// A write that failed this way may still have been applied.
    fn outcome_unknown(&self) -> bool {
        match self {
            PeerError::Db { maybe_applied, .. } => *maybe_applied,
            PeerError::AttemptTimeout | PeerError::Timeout => true,
            PeerError::CircuitOpen | PeerError::NoRegion => false,
        }
    }
}

/// `is_transient_db_error`, as the guides call it.
fn classify(e: tiberius::error::Error) -> PeerError {
    match e {
        tiberius::error::Error::Server(token) => PeerError::Db {
            // The server answered with an error: the statement was not applied.
            maybe_applied: false,
            transient: TRANSIENT.contains(&token.code()),
            label: "server_error",
        },
        _ => PeerError::Db {
            maybe_applied: true,
            transient: true,
            label: "io_error",
        },
    }
}

type Pool = bb8::Pool<PlainManager>;
type Stack = BoxCloneSyncService<PeerRequest, (), PeerError>;

/// One attempt on a pooled connection.
async fn attempt(pool: Pool, request: PeerRequest) -> Result<(), PeerError> {
    let mut conn = pool.get().await.map_err(|_| PeerError::Db {
        maybe_applied: false,
        transient: true,
        label: "pool",
    })?;
    match request {
        PeerRequest::Read(id) => {
            let rows = conn
                .query("SELECT id, name FROM items WHERE id = @P1", &[&id])
                .await
                .map_err(classify)?
                .into_first_result()
                .await
                .map_err(classify)?;
            if rows.len() == 1 {
                Ok(())
            } else {
                Err(PeerError::Db {
                    maybe_applied: false,
                    transient: false,
                    label: "wrong_row_count",
                })
            }
        }
        PeerRequest::Write(id) => conn
            .execute(
                "INSERT INTO writes (write_id, note) VALUES (@P1, @P2)",
                &[&id, &"peer"],
            )
            .await
            .map(|_| ())
            .map_err(classify),
    }
}

/// A region for the health check: its name and pool.
#[derive(Clone)]
struct PeerRegion {
    pool: Pool,
}

/// One region's two stacks (reads and writes share the breaker).
struct RegionStacks {
    name: &'static str,
    read: Stack,
    write: Stack,
}

/// The regions and their health, shared by the routing services.
struct Regions {
    stacks: Vec<RegionStacks>,
    health: HealthCheckWrapper<PeerRegion, HealthCheck>,
}

/// The peer arm.
pub struct Peer {
    regions: Arc<Regions>,
    /// Reads: deadline, then routing to a region.
    read: Stack,
    /// Writes: deadline, then the primary.
    write: Stack,
    /// Every attempt, for attempts per request and the failover time.
    pub log: Arc<AttemptLog>,
}

/// The whole call within the deadline.
fn with_deadline(budget: Duration, service: Stack) -> Stack {
    BoxCloneSyncService::new(
        TimeLimiterLayer::builder()
            .name("peer-total")
            .timeout_duration(budget)
            .build()
            .layer(service)
            .map_err(|e: TimeLimiterError<PeerError>| match e {
                TimeLimiterError::Timeout => PeerError::Timeout,
                TimeLimiterError::Inner(e) => e,
            }),
    )
}

async fn call(stack: &Stack, request: PeerRequest) -> Result<(), PeerError> {
    let mut stack = stack.clone();
    stack.ready().await?;
    stack.call(request).await
}

/// A read: the first usable region, the next usable one when its breaker is open.
async fn route_read(regions: Arc<Regions>, request: PeerRequest) -> Result<(), PeerError> {
    let statuses = regions.health.get_all_statuses().await;
    let mut last = PeerError::NoRegion;
    for region in &regions.stacks {
        let usable = statuses
            .iter()
            .any(|(name, s)| name == region.name && s.is_usable());
        if !usable {
            continue;
        }
        match call(&region.read, request).await {
            Err(PeerError::CircuitOpen) => last = PeerError::CircuitOpen,
            other => return other,
        }
    }
    Err(last)
}

/// The health check: `SELECT 1` on a pooled connection.
struct HealthCheck;

impl tower_resilience::healthcheck::HealthChecker<PeerRegion> for HealthCheck {
    async fn check(&self, region: &PeerRegion) -> HealthStatus {
        let pool = region.pool.clone();
        let ok = async move {
            let mut conn = pool.get().await.ok()?;
            let stream = conn.simple_query("SELECT 1").await.ok()?;
            let results = stream.into_results().await.ok();
            results
        }
        .await
        .is_some();
        if ok {
            HealthStatus::Healthy
        } else {
            HealthStatus::Unhealthy
        }
    }
}

fn region_stacks(
    name: &'static str,
    pool: Pool,
    log: Arc<AttemptLog>,
) -> Result<RegionStacks, Box<dyn std::error::Error>> {
    let base = tower::service_fn(move |request: PeerRequest| {
        let (pool, log) = (pool.clone(), log.clone());
        async move {
            let guard = log.begin(name, matches!(request, PeerRequest::Read(_)));
            let result = attempt(pool, request).await;
            guard.finish(result.is_ok());
            result
        }
    });
    let per_attempt = TimeLimiterLayer::builder()
        .name(format!("{name}-attempt"))
        .timeout_duration(ATTEMPT_TIMEOUT)
        .build()
        .layer(base)
        .map_err(|e: TimeLimiterError<PeerError>| match e {
            TimeLimiterError::Timeout => PeerError::AttemptTimeout,
            TimeLimiterError::Inner(e) => e,
        });
    let breaker = CircuitBreakerLayer::builder()
        .name(name)
        .failure_rate_threshold(0.5)
        .sliding_window_size(100)
        .minimum_number_of_calls(10)
        .wait_duration_in_open(Duration::from_secs(30))
        .build()?
        .layer(per_attempt)
        .map_err(|e| match e {
            tower_resilience::circuitbreaker::CircuitBreakerError::OpenCircuit => {
                PeerError::CircuitOpen
            }
            tower_resilience::circuitbreaker::CircuitBreakerError::Inner(e) => e,
        });
    let total = |retry: RetryLayer<PeerRequest, (), PeerError>| {
        BoxCloneSyncService::new(retry.layer(breaker.clone()))
    };
    let read = RetryLayer::<PeerRequest, (), PeerError>::builder()
        .name(format!("{name}-read"))
        .max_attempts(MAX_ATTEMPTS)
        .exponential_backoff(BACKOFF)
        .retry_on(|e| {
            matches!(
                e,
                PeerError::Db {
                    transient: true,
                    ..
                } | PeerError::AttemptTimeout
            )
        })
        .build();
    let write = RetryLayer::<PeerRequest, (), PeerError>::builder()
        .name(format!("{name}-write"))
        .max_attempts(MAX_ATTEMPTS)
        .exponential_backoff(BACKOFF)
        .retry_on(|e| {
            matches!(
                e,
                PeerError::Db {
                    transient: true,
                    maybe_applied: false,
                    ..
                }
            )
        })
        .build();
    Ok(RegionStacks {
        name,
        read: total(read),
        write: total(write),
    })
}

impl Peer {
    /// The peer arm over `primary` and `secondary`, each call bounded by `budget`.
    /// Starts the health check.
    pub async fn new(
        primary: &Region,
        secondary: &Region,
        budget: Duration,
    ) -> Result<Peer, Box<dyn std::error::Error>> {
        let log = Arc::new(AttemptLog::default());
        let mut stacks = Vec::new();
        let mut health = HealthCheckWrapper::builder()
            .with_checker(HealthCheck)
            .with_interval(HEALTH_INTERVAL)
            .with_timeout(Duration::from_secs(2))
            .with_failure_threshold(2)
            .with_success_threshold(1)
            .with_selection_strategy(SelectionStrategy::FirstAvailable);
        for region in [primary, secondary] {
            let pool = bb8::Pool::builder()
                .max_size(10)
                .build_unchecked(PlainManager::new(region.proxy.addr().port()));
            health = health.with_context(PeerRegion { pool: pool.clone() }, region.name);
            stacks.push(region_stacks(region.name, pool, log.clone())?);
        }
        let health = health.build();
        health.start().await;
        let regions = Arc::new(Regions { stacks, health });
        let read = with_deadline(
            budget,
            BoxCloneSyncService::new(tower::service_fn({
                let regions = regions.clone();
                move |request| route_read(regions.clone(), request)
            })),
        );
        let write = with_deadline(budget, regions.stacks[0].write.clone());
        Ok(Peer {
            regions,
            read,
            write,
            log,
        })
    }

    /// Waits (at most `limit`) until the health check has found both regions healthy.
    pub async fn wait_until_healthy(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            let statuses = self.regions.health.get_all_statuses().await;
            if statuses.iter().all(|(_, s)| *s == HealthStatus::Healthy) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A read (see the module documentation).
    pub async fn read(&self, id: i32) -> CallResult {
        match call(&self.read, PeerRequest::Read(id)).await {
            Ok(()) => CallResult::ok(),
            Err(e) => CallResult::failed(e.label(), false),
        }
    }

    /// A write, to the primary.
    pub async fn write(&self, write_id: i64) -> CallResult {
        match call(&self.write, PeerRequest::Write(write_id)).await {
            Ok(()) => CallResult::ok(),
            Err(e) => CallResult::failed(e.label(), e.outcome_unknown()),
        }
    }
}
