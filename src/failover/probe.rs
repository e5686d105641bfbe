//! Background health probes: `SELECT 1` and the database's updateability, on a dedicated
//! connection, with a short timeout and a jittered interval.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::health::ProbeSuccess;
use super::latency::{LatencyEstimator, ATTEMPT_ROUND_TRIPS};
use crate::error::Error;
use crate::pool::{Connection, TiberiusManager};
use crate::sql::Value;

/// The probe batch. `CAST` because `DATABASEPROPERTYEX` returns `sql_variant`.
pub const PROBE_SQL: &str =
    "SELECT 1; SELECT CAST(DATABASEPROPERTYEX(DB_NAME(), 'Updateability') AS NVARCHAR(128))";

/// What one probe learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeAnswer {
    /// The database is writable (READ_WRITE).
    pub read_write: bool,
    /// Round trips the probe needed: 1 on an open connection, more when it had to connect
    /// and log in first (its latency is divided by this for the region's round-trip
    /// estimate).
    pub round_trips: u32,
}

impl From<bool> for ProbeAnswer {
    /// A one-round-trip answer.
    fn from(read_write: bool) -> Self {
        ProbeAnswer {
            read_write,
            round_trips: 1,
        }
    }
}

/// The future a [`Prober`] returns.
pub type ProbeFuture<'a> = Pin<Box<dyn Future<Output = Result<ProbeAnswer, Error>> + Send + 'a>>;

/// Checks one region.
pub trait Prober: Send + Sync + 'static {
    /// Runs one probe. The caller bounds it with the probe timeout.
    fn probe(&self) -> ProbeFuture<'_>;
}

/// Probes a SQL Server over its own connection (not the pool's: a saturated pool must not
/// make a healthy region look dead, and a probe must not take a request's connection).
#[derive(Debug)]
pub struct SqlProber {
    manager: TiberiusManager,
    conn: Mutex<Option<Box<Connection>>>,
}

impl SqlProber {
    /// A prober dialling with `manager`.
    pub fn new(manager: TiberiusManager) -> Self {
        SqlProber {
            manager,
            conn: Mutex::new(None),
        }
    }
}

impl Prober for SqlProber {
    fn probe(&self) -> ProbeFuture<'_> {
        Box::pin(async move {
            let mut slot = self.conn.lock().await;
            // Dropped (and so closed) unless the probe finishes cleanly.
            let (mut conn, round_trips) = match slot.take() {
                Some(conn) => (conn, 1),
                None => (
                    self.manager.connect_for_probe().await?,
                    super::latency::ATTEMPT_ROUND_TRIPS,
                ),
            };
            let stream = conn.client().simple_query(PROBE_SQL).await?;
            let response = crate::pool::materialize(stream).await?;
            conn.mark_clean();
            let updateability = response
                .result_sets
                .get(1)
                .and_then(|set| set.rows.first())
                .and_then(|row| row.value(0))
                .unwrap_or(Value::Null);
            *slot = Some(conn);
            Ok(ProbeAnswer {
                read_write: updateability.as_str() == Some("READ_WRITE"),
                round_trips,
            })
        })
    }
}

/// How a region's probe runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ProbeSettings {
    pub interval: Duration,
    /// The bound at normal latency.
    pub timeout: Duration,
    /// The bound however slow the region.
    pub max_timeout: Duration,
    pub jitter: f64,
    pub seed: u64,
}

/// Runs `prober` every `interval` (± `jitter`, a fraction), or at once when `nudge` fires,
/// and reports each result to `report`. Each probe is bounded by a latency-aware timeout
/// (the region's round-trip estimate × the round trips of a login and a query, at least
/// `timeout`, at most `max_timeout`; timeouts alone never lengthen it, so a black hole is
/// found within one probe timeout); answers feed the estimate.
pub(crate) async fn run(
    prober: Arc<dyn Prober>,
    settings: ProbeSettings,
    latency: Arc<LatencyEstimator>,
    nudge: Arc<tokio::sync::Notify>,
    report: impl Fn(Result<ProbeSuccess, (String, Duration)>) + Send,
) {
    let mut rng = fastrand::Rng::with_seed(settings.seed);
    loop {
        let start = Instant::now();
        let timeout = latency.timeout_on_evidence(
            ATTEMPT_ROUND_TRIPS,
            settings.timeout,
            settings.max_timeout,
        );
        let result = match tokio::time::timeout(timeout, prober.probe()).await {
            Ok(Ok(answer)) => {
                let elapsed = start.elapsed();
                latency.sample(elapsed, answer.round_trips);
                Ok(ProbeSuccess {
                    latency: elapsed,
                    read_write: answer.read_write,
                    round_trips: answer.round_trips,
                })
            }
            Ok(Err(e)) => Err((e.to_string(), start.elapsed())),
            Err(_) => {
                latency.timed_out();
                Err((
                    format!("probe timed out after {timeout:?}"),
                    start.elapsed(),
                ))
            }
        };
        report(result);
        tokio::select! {
            _ = tokio::time::sleep(jittered(settings.interval, settings.jitter, &mut rng)) => {}
            _ = nudge.notified() => {}
        }
    }
}

/// `interval` ± `jitter` (a fraction), computed without any conversion that can panic.
fn jittered(interval: Duration, jitter: f64, rng: &mut fastrand::Rng) -> Duration {
    let spread = 1.0 + jitter.clamp(0.0, 1.0) * (2.0 * rng.f64() - 1.0);
    Duration::try_from_secs_f64(interval.as_secs_f64() * spread).unwrap_or(interval)
}

/// Runs the task `make` builds and restarts it if it panics: a probe that died silently
/// would leave its region's health frozen. Each panic is logged and counted
/// (`mssql_resilience_background_task_panics_total{region}`).
pub(crate) async fn supervise<F, Fut>(region: Arc<str>, make: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        match tokio::spawn(make()).await {
            Err(e) if e.is_panic() => {
                tracing::error!(
                    target: "mssql_resilience",
                    region = &*region,
                    "health probe task panicked; restarting it"
                );
                metrics::counter!(
                    crate::telemetry::names::BACKGROUND_TASK_PANICS,
                    "region" => region.to_string()
                )
                .increment(1);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            // Finished or cancelled: the router is gone.
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_never_panics_and_stays_in_range() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..1000 {
            let d = jittered(Duration::from_secs(2), 0.2, &mut rng);
            assert!(d >= Duration::from_millis(1600) && d <= Duration::from_millis(2400));
        }
        let huge = Duration::from_secs(u64::MAX);
        assert!(jittered(huge, 0.9, &mut rng) > Duration::ZERO);
        assert_eq!(jittered(Duration::ZERO, 0.5, &mut rng), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_probe_is_restarted() {
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = runs.clone();
        let task = tokio::spawn(supervise(Arc::from("r"), move || {
            let n = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                if n < 2 {
                    panic!("probe bug");
                }
            }
        }));
        task.await.expect("the supervisor itself never panics");
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 3);
    }
}
