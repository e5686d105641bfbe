//! The innermost service: one request on one pooled connection, fully materialized.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::TryStreamExt;
use tiberius::QueryItem;
use tokio::time::Instant;

use super::Pool;
use crate::classify::rollback::{is_single_dml, proves_nothing_applied};
use crate::error::{Error, ErrorKind, Outcome};
use crate::failover::latency::LatencyEstimator;
use crate::sql::session_effects::SessionEffects;
use crate::sql::{ResultLimits, ResultSet, Row, SqlRequest, SqlResponse, WireStatement};

/// Runs a [`SqlRequest`] on a connection from its [`Pool`].
///
/// It waits for a connection no longer than the request's remaining budget, tracks whether
/// request bytes reached the wire (so each failure carries the right [`Outcome`]), reads
/// every result before answering, and hands a connection back to the pool only when the
/// request finished cleanly: a connection with a failed I/O is dropped, and so is one
/// whose unit of work failed (it may hold an open transaction).
///
/// **A request cut short after it was sent is cancelled, not abandoned.** When the caller
/// stops waiting (its attempt timed out, or a hedge answered first) after the request
/// reached the server, the request gets, in the background, two of the region's round
/// trips (at least [`DRAIN_FLOOR`], at most [`DRAIN_CEILING`]): the first half to finish
/// on its own (an answer already on its way needs no cancel), then the crate sends the
/// server an ATTENTION, so it stops working on a request no one waits for, and reads its
/// acknowledgement. A cancelled statement leaves a transaction it opened open (SQL
/// Server's rule without `XACT_ABORT`): it is rolled back (and the session reset as after
/// any request that needs it) and the connection goes back to the pool; one whose
/// cancellation is not acknowledged in time is closed. Closing at once would discard a
/// working connection, and while new logins fail (a 40613 storm) a pool that discards its
/// connections empties and fails every request. The caller's outcome is unchanged:
/// ambiguous.
#[derive(Clone, Debug)]
pub struct SqlService {
    pool: Pool,
    region: Arc<str>,
    latency: Option<Arc<LatencyEstimator>>,
    limits: ResultLimits,
}

/// The least time a cut-short request is given to finish in the background.
pub const DRAIN_FLOOR: Duration = Duration::from_secs(1);
/// The most time a cut-short request is given to finish in the background.
pub const DRAIN_CEILING: Duration = Duration::from_secs(30);

impl SqlService {
    /// A service over `pool`, labelling errors with `region`.
    pub fn new(pool: Pool, region: impl Into<Arc<str>>) -> Self {
        SqlService {
            pool,
            region: region.into(),
            latency: None,
            limits: ResultLimits::default(),
        }
    }

    /// Caps what one response may materialize (default: [`ResultLimits::default`]); a
    /// response past a cap fails with [`ErrorKind::ResponseTooLarge`] and its connection
    /// is closed (the rest of the result is not read).
    pub fn with_limits(mut self, limits: ResultLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Bounds the background drain of cut-short requests by the region's latency: two
    /// round trips of its estimate (at least [`DRAIN_FLOOR`], at most [`DRAIN_CEILING`]).
    /// Without it the drain gets [`DRAIN_FLOOR`].
    pub fn with_latency(mut self, latency: Arc<LatencyEstimator>) -> Self {
        self.latency = Some(latency);
        self
    }

    /// The pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl tower::Service<SqlRequest> for SqlService {
    type Response = SqlResponse;
    type Error = Error;
    type Future = DrainOnDrop;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: SqlRequest) -> Self::Future {
        let pool = self.pool.clone();
        let region = self.region.clone();
        let wire = req.context.wire().cloned();
        let limits = self.limits;
        let (cancel, cancelled) = tokio::sync::oneshot::channel();
        DrainOnDrop {
            inner: Some(Box::pin(async move {
                run(&pool, &req, limits, cancelled)
                    .await
                    .map_err(|e| e.with_region(region.to_string()))
            })),
            wire,
            latency: self.latency.clone(),
            cancel: Some(cancel),
        }
    }
}

/// The future of [`SqlService`]: if dropped after its request was sent, it cancels the
/// request in the background (an ATTENTION, bounded) so the server stops and the
/// connection returns to the pool.
pub struct DrainOnDrop {
    inner: Option<BoxFuture<Result<SqlResponse, Error>>>,
    wire: Option<Arc<crate::request::WireState>>,
    latency: Option<Arc<LatencyEstimator>>,
    /// Tells the running request that no one waits for it any more, and how long it may
    /// still take to finish before it is cancelled.
    cancel: Option<tokio::sync::oneshot::Sender<Duration>>,
}

impl std::fmt::Debug for DrainOnDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DrainOnDrop")
            .field("running", &self.inner.is_some())
            .finish_non_exhaustive()
    }
}

impl Future for DrainOnDrop {
    type Output = Result<SqlResponse, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Pending;
        };
        let result = std::task::ready!(inner.as_mut().poll(cx));
        self.inner = None;
        Poll::Ready(result)
    }
}

impl Drop for DrainOnDrop {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else {
            return;
        };
        // Not sent yet (still waiting for a connection): nothing to finish.
        if !self.wire.as_ref().is_some_and(|w| w.is_sent()) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let limit = self.latency.as_ref().map_or(DRAIN_FLOOR, |l| {
            l.timeout_on_evidence(2, DRAIN_FLOOR, DRAIN_CEILING)
        });
        if let Some(cancel) = self.cancel.take() {
            // Half the time to finish on its own, half for the cancel's acknowledgement.
            let _ = cancel.send(limit / 2);
        }
        runtime.spawn(async move {
            // Its result has no one to go to: the request cancels itself on the server
            // and returns its connection clean, or the connection is closed.
            let _ = tokio::time::timeout(limit, inner).await;
        });
    }
}

async fn run(
    pool: &Pool,
    req: &SqlRequest,
    limits: ResultLimits,
    cancelled: tokio::sync::oneshot::Receiver<Duration>,
) -> Result<SqlResponse, Error> {
    let wire = req.context.wire().cloned();
    if let Some(wire) = &wire {
        wire.mark_not_sent();
    }
    req.check_params()?;
    let sink = match &req.body {
        crate::sql::request::Body::Statement {
            returns: crate::sql::request::Returns::Stream(sink),
            ..
        } => Some(sink),
        _ => None,
    };
    // A stream that handed rows over is never re-sent (another attempt would repeat them).
    if let Some(sink) = sink.filter(|s| s.delivered() > 0) {
        return Err(sink.interrupted(None));
    }
    // Before the checkout, so no later than the request is sent (see `proof`).
    let asked = Instant::now();
    let within = req
        .context
        .deadline()
        .map_or(Duration::MAX, |d| d.saturating_duration_since(asked));
    let still_last = || req.context.no_alternative();
    let mut conn = pool.checkout_persisting(within, &still_last).await?;
    // A write that cannot be re-sent, on a connection last seen working before its region
    // left a request unanswered (with no answer since: a slow region is not a black hole):
    // sent into a black hole it would end with an unknown outcome. One round trip proves
    // the path first; if it fails, the write is still not sent (the connection is
    // discarded).
    let suspicion = pool.suspicion();
    let mark = suspicion.mark();
    if req.context.intent() == crate::request::Intent::Write
        && !req.context.is_idempotent()
        && suspicion.is_suspect(conn.last_used, mark)
    {
        Box::pin(pool.check(&mut conn)).await?;
        suspicion.answered_after(mark);
    }
    let written_before = conn.tap.written();
    conn.tap.attach(wire);
    // Until the request completes, the connection counts as broken: if this future is
    // dropped mid-request (a timeout), bb8 discards it instead of reusing a corrupt stream.
    conn.broken = true;
    // Boxed: the driver's futures are large, and inline they would make this future (moved
    // into its box on every call) tens of kilobytes — copied per call.
    let executed = {
        // Set when the attempt is cut short: it may finish in the background, but rows of
        // a streamed query it had not begun handing over no longer go to the caller (the
        // request may be running elsewhere by then).
        let cut_short = AtomicBool::new(false);
        let mut execution = Box::pin(execute(&mut conn, req, limits, &cut_short));
        tokio::select! {
            biased;
            result = &mut execution => Some(result),
            grace = cancelled => {
                cut_short.store(true, Ordering::Release);
                // An answer already on its way needs no cancel (and an ATTENTION that
                // arrives after it is acknowledged in a message of its own, which tiberius
                // does not read): give it `grace` to finish first.
                let grace = grace.unwrap_or(Duration::ZERO);
                tokio::time::timeout(grace, &mut execution).await.ok()
            }
        }
    };
    let Some(mut result) = executed else {
        conn.tap.detach();
        return Err(Box::pin(cancel(&mut conn, req)).await);
    };
    if let (Err(error), Some(sink)) = (&mut result, sink) {
        if sink.delivered() > 0 {
            let cause = std::mem::replace(error, Error::new(ErrorKind::Other, Outcome::Ambiguous));
            *error = sink.interrupted(Some(cause));
        }
    }
    conn.tap.detach();
    // The server answered (rows or an error of its own): the path works.
    let answered_at = result
        .as_ref()
        .map_or_else(|e| e.server_number().is_some(), |_| true)
        .then(Instant::now);
    if let Some(at) = answered_at {
        suspicion.answered_after(mark);
        if let Some(addr) = conn.peer {
            pool.proof().answered(addr, asked, at);
        }
    }
    let sent = conn.tap.written() > written_before;
    let effects = req.session_effects();
    match result {
        Ok(response) => {
            if effects.lasting {
                // State no reset batch undoes (temp tables, USE, …): the connection is
                // closed when it goes back (still marked broken) and a fresh one replaces it.
                return Ok(response);
            }
            if !effects.reset() {
                // Finished as it was answered (one clock read for both).
                conn.mark_clean_at(answered_at.unwrap_or_else(Instant::now));
                return Ok(response);
            }
            let settled = Box::pin(settle(&mut conn.client, effects)).await;
            if !settled.clean {
                // The reset failed: the connection stays broken (closed); the work is done.
                return Ok(response);
            }
            conn.mark_clean();
            if settled.left_open == 0 {
                return Ok(response);
            }
            // A request must end what it begins: a transaction left open would hold its
            // locks and be rolled back whenever the connection finally closed, losing work
            // the caller was told had succeeded.
            let what = if req.is_unit_of_work() {
                "the unit of work returned Ok"
            } else {
                "the statement succeeded"
            };
            let mut error = Error::new(ErrorKind::Other, Outcome::Rejected).with_source(
                std::io::Error::other(format!(
                    "{what} with {} transaction(s) still open; they were rolled back",
                    settled.left_open
                )),
            );
            // What it committed before the transaction it left open stays committed.
            error.set_may_have_applied(true);
            Err(error)
        }
        Err(mut error) => {
            let evidence = conn.tap.tx_evidence();
            // Correct the outcome with what the wire saw.
            match error.kind().clone() {
                // The server answered and kept the session: the connection is reusable
                // once no transaction is left open (a batch that failed after its
                // BEGIN TRANSACTION would otherwise leak it into the next request) and
                // the options the request changed are reset. A unit of work's connection
                // is never reused, but its open transaction is rolled back here too: that
                // is what proves the unit left nothing behind.
                ErrorKind::Server { number, class, .. } => {
                    let mut rolled_back_after = false;
                    if class < 20 {
                        let settled = Box::pin(settle(&mut conn.client, effects)).await;
                        rolled_back_after = settled.clean && settled.left_open > 0;
                        if settled.clean && !req.is_unit_of_work() && !effects.lasting {
                            conn.mark_clean();
                        }
                    }
                    if sent {
                        let single_dml = req.sql().is_some_and(is_single_dml);
                        let proven = proves_nothing_applied(
                            &evidence,
                            number,
                            class,
                            rolled_back_after,
                            single_dml,
                        );
                        error.set_may_have_applied(!proven);
                    }
                }
                // The guarded write's own answers: its replay branch wrote nothing, and
                // rows it could not record were rolled back before any COMMIT was sent.
                ErrorKind::IdempotencyConflict => {}
                ErrorKind::Conversion
                    if std::error::Error::source(&error)
                        .is_some_and(|s| s.is::<crate::idempotency::RecordError>()) => {}
                _ if !sent => error.set_outcome(Outcome::NotSent),
                // Sent, and the failure says nothing about what ran.
                _ if error.outcome() == Outcome::Rejected => error.set_may_have_applied(true),
                _ => {}
            }
            Err(error)
        }
    }
}

/// The caller stopped waiting for a request already sent: an ATTENTION stops it on the
/// server; once acknowledged, a transaction it left open is rolled back (and the session
/// reset when the request needs that) and the connection is clean again. Otherwise the
/// connection stays broken and is closed. The error goes to no one (the caller is gone).
async fn cancel(
    conn: &mut bb8::PooledConnection<'static, super::TiberiusManager>,
    req: &SqlRequest,
) -> Error {
    let cancelled = Error::new(ErrorKind::Other, Outcome::Ambiguous).with_source(
        std::io::Error::other("cancelled: the caller stopped waiting for the answer"),
    );
    if conn.client.cancel_query().await.is_err() {
        return cancelled;
    }
    let effects = req.session_effects();
    if settle(&mut conn.client, effects).await.clean && !effects.lasting {
        conn.mark_clean();
    }
    cancelled
}

/// What [`settle`] found.
struct Settled {
    /// No transaction is left open (and the options are reset when that was asked).
    clean: bool,
    /// Transactions the request had left open (rolled back when `clean`).
    left_open: i64,
}

/// Leaves nothing of a request on its session: the reset batch when `effects` asks for
/// it, otherwise a `@@TRANCOUNT` check and a rollback of what is open. One rule for the
/// success, error and cancellation paths.
async fn settle(client: &mut crate::sql::Client, effects: SessionEffects) -> Settled {
    let failed = Settled {
        clean: false,
        left_open: 0,
    };
    if effects.reset() {
        return match reset_session(client).await {
            Ok(left_open) => Settled {
                clean: true,
                left_open,
            },
            Err(_) => failed,
        };
    }
    match open_transactions(client).await {
        Ok(0) => Settled {
            clean: true,
            left_open: 0,
        },
        Ok(left_open) => Settled {
            clean: crate::sql::batch(client, "ROLLBACK TRANSACTION")
                .await
                .is_ok(),
            left_open,
        },
        Err(_) => failed,
    }
}

/// Runs the session reset batch: the `@@TRANCOUNT` the request left (rolled back by the
/// batch when not 0), with the options restored.
async fn reset_session(client: &mut crate::sql::Client) -> Result<i64, tiberius::error::Error> {
    let stream = client
        .simple_query(crate::sql::session_effects::RESET_BATCH)
        .await?;
    let first = stream.into_first_result().await?;
    Ok(first.first().map_or(0, trancount_of))
}

/// The integer `@@TRANCOUNT` of a row: INT on SQL Server, BIGINT from the testkit.
pub(crate) fn trancount_of(row: &tiberius::Row) -> i64 {
    row.try_get::<i32, _>(0)
        .ok()
        .flatten()
        .map(i64::from)
        .or_else(|| row.try_get::<i64, _>(0).ok().flatten())
        .unwrap_or(0)
}

/// `@@TRANCOUNT` on the connection.
async fn open_transactions(client: &mut crate::sql::Client) -> Result<i64, tiberius::error::Error> {
    let row = client
        .simple_query("SELECT @@TRANCOUNT")
        .await?
        .into_row()
        .await?;
    Ok(row.as_ref().map_or(0, trancount_of))
}

async fn execute(
    conn: &mut bb8::PooledConnection<'static, super::TiberiusManager>,
    req: &SqlRequest,
    limits: ResultLimits,
    cut_short: &AtomicBool,
) -> Result<SqlResponse, Error> {
    use crate::sql::request::{Body, Returns};
    let client = &mut conn.client;
    match &req.body {
        Body::Statement {
            returns,
            sql,
            params,
            ..
        } => {
            let statement = WireStatement::new(sql, params);
            let params = statement.params();
            let sql = statement.sql.as_ref();
            match returns {
                Returns::Rows => {
                    let stream = client.query(sql, &params).await?;
                    materialize_within(stream, limits).await
                }
                Returns::RowsAffected => {
                    let result = client.execute(sql, &params).await?;
                    Ok(SqlResponse {
                        rows_affected: result.rows_affected().to_vec(),
                        ..SqlResponse::default()
                    })
                }
                Returns::Stream(sink) => {
                    let ticket = sink.ticket();
                    let mut stream = client.query(sql, &params).await?;
                    while let Some(item) = stream.try_next().await? {
                        if let QueryItem::Row(row) = item {
                            if cut_short.load(Ordering::Acquire) {
                                return Err(Error::new(ErrorKind::Other, Outcome::Ambiguous)
                                    .with_source(std::io::Error::other(
                                        "the attempt was cut short; its rows are not handed over",
                                    )));
                            }
                            sink.send(ticket, Row::from(row)).await?;
                        }
                    }
                    Ok(SqlResponse::default())
                }
            }
        }
        Body::Work { work, .. } => work.run(client).await,
    }
}

/// Reads every result set of a tiberius stream, keeping column names even for empty ones.
/// Not capped (the stack caps its responses with `[results]`).
pub async fn materialize(stream: tiberius::QueryStream<'_>) -> Result<SqlResponse, Error> {
    materialize_within(
        stream,
        ResultLimits {
            max_rows: u32::MAX,
            max_bytes: u64::MAX,
        },
    )
    .await
}

/// Reads every result set of a tiberius stream, keeping column names even for empty ones,
/// and fails with [`ErrorKind::ResponseTooLarge`] as soon as the rows or their bytes pass
/// `limits` (the rest is not read).
pub(crate) async fn materialize_within(
    mut stream: tiberius::QueryStream<'_>,
    limits: ResultLimits,
) -> Result<SqlResponse, Error> {
    let mut sets: Vec<ResultSet> = Vec::new();
    let mut rows: u32 = 0;
    let mut bytes: u64 = 0;
    while let Some(item) = stream.try_next().await? {
        match item {
            QueryItem::Metadata(meta) => sets.push(ResultSet {
                columns: meta.columns().iter().map(|c| c.name().to_owned()).collect(),
                rows: Vec::new(),
            }),
            QueryItem::Row(row) => {
                let row = Row::from(row);
                rows = rows.saturating_add(1);
                bytes = bytes.saturating_add(row.size_estimate() as u64);
                if rows > limits.max_rows || bytes > limits.max_bytes {
                    let (limit, max) = if rows > limits.max_rows {
                        ("rows", u64::from(limits.max_rows))
                    } else {
                        ("bytes", limits.max_bytes)
                    };
                    return Err(Error::new(
                        ErrorKind::ResponseTooLarge { limit, max },
                        Outcome::Ambiguous,
                    ));
                }
                match sets.last_mut() {
                    Some(set) => set.rows.push(row),
                    None => sets.push(ResultSet {
                        columns: row.columns().map(str::to_owned).collect(),
                        rows: vec![row],
                    }),
                }
            }
        }
    }
    Ok(SqlResponse {
        result_sets: sets,
        ..SqlResponse::default()
    })
}
