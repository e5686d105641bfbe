//! Background health probes: `SELECT 1` and the database's updateability, on a dedicated
//! connection, with a short timeout and a jittered interval.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bb8::ManageConnection;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::health::ProbeSuccess;
use crate::error::Error;
use crate::pool::{Connection, TiberiusManager};
use crate::sql::Value;

/// The probe batch. `CAST` because `DATABASEPROPERTYEX` returns `sql_variant`.
pub const PROBE_SQL: &str =
    "SELECT 1; SELECT CAST(DATABASEPROPERTYEX(DB_NAME(), 'Updateability') AS NVARCHAR(128))";

/// The future a [`Prober`] returns.
pub type ProbeFuture<'a> = Pin<Box<dyn Future<Output = Result<bool, Error>> + Send + 'a>>;

/// Checks one region. Resolves to whether the region is writable (READ_WRITE).
pub trait Prober: Send + Sync + 'static {
    /// Runs one probe. The caller bounds it with the probe timeout.
    fn probe(&self) -> ProbeFuture<'_>;
}

/// Probes a SQL Server over its own connection (not the pool's: a saturated pool must not
/// make a healthy region look dead, and a probe must not take a request's connection).
#[derive(Debug)]
pub struct SqlProber {
    manager: TiberiusManager,
    conn: Mutex<Option<Connection>>,
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
            let mut conn = match slot.take() {
                Some(conn) => conn,
                None => self.manager.connect().await?,
            };
            let stream = conn.client().simple_query(PROBE_SQL).await?;
            let response = crate::pool::materialize(stream).await?;
            conn.mark_clean();
            let updateability = response
                .result_sets
                .get(1)
                .and_then(|set| set.rows.first())
                .and_then(|row| row.first())
                .cloned()
                .unwrap_or(Value::Null);
            *slot = Some(conn);
            Ok(updateability.as_str() == Some("READ_WRITE"))
        })
    }
}

/// Runs `prober` every `interval` (± `jitter`, a fraction), or at once when `nudge` fires,
/// and reports each result to `report`.
pub(crate) async fn run(
    prober: Arc<dyn Prober>,
    interval: Duration,
    timeout: Duration,
    jitter: f64,
    seed: u64,
    nudge: Arc<tokio::sync::Notify>,
    report: impl Fn(Result<ProbeSuccess, (String, Duration)>) + Send,
) {
    let mut rng = fastrand::Rng::with_seed(seed);
    loop {
        let start = Instant::now();
        let result = match tokio::time::timeout(timeout, prober.probe()).await {
            Ok(Ok(read_write)) => Ok(ProbeSuccess {
                latency: start.elapsed(),
                read_write,
            }),
            Ok(Err(e)) => Err((e.to_string(), start.elapsed())),
            Err(_) => Err((
                format!("probe timed out after {timeout:?}"),
                start.elapsed(),
            )),
        };
        report(result);
        let spread = 1.0 + jitter * (2.0 * rng.f64() - 1.0);
        let wait = interval.mul_f64(spread.max(0.0));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = nudge.notified() => {}
        }
    }
}
