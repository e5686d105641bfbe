//! The fault matrix: every fault × every kind of request, through the full stack over
//! real TCP (testkit server behind the chaos proxy, real tiberius), one region.
//!
//! Each cell starts a fresh region and stack, arms the fault, sends one request, disarms
//! the fault and checks:
//! - the call ended within its deadline (3 s; the stack's promise, checked with 1 s of
//!   slack for scheduling — not a speed measure);
//! - what it answered: success, an error that says nothing was applied, or an
//!   outcome-unknown error — as the cell expects, with the error kind a caller would act on;
//! - no acknowledged write lost and none duplicated: the row is there exactly once after a
//!   success, at most once after an unknown outcome, and absent when the error says so;
//! - the pool is healthy afterwards: the next call succeeds, no checkout is left waiting,
//!   every pooled connection is idle and the server holds no session the pool forgot.
//!
//! A test per fault (they run in parallel); a test reports every cell that broke.

mod support;

use std::time::Duration;

use mssql_resilience::idempotency::{ensure_table, idempotent_execute, DEFAULT_TABLE};
use mssql_resilience::sql::{batch, work, SqlRequest, SqlResponse};
use mssql_resilience::{Error, ErrorKind, Outcome, RequestContext, Stack};
use mssql_testkit::chaos::{DirectionToxics, Mode, Toxics};
use mssql_testkit::tds::{DropPoint, ErrorSpec, QueryFault, Trigger};
use support::*;

/// The deadline every cell's call runs under (`timeouts.total`).
const DEADLINE: Duration = Duration::from_secs(3);
/// Scheduling slack on top of the deadline.
const SLACK: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
    KeyedWrite,
    UnitOfWork,
}

const KINDS: [Kind; 4] = [Kind::Read, Kind::Write, Kind::KeyedWrite, Kind::UnitOfWork];

impl Kind {
    fn writes(self) -> bool {
        self != Kind::Read
    }

    /// The request; writes insert row 2.
    fn request(self) -> SqlRequest {
        const INSERT: &str = "INSERT INTO items (id, note) VALUES (@P1, @P2)";
        match self {
            Kind::Read => read("read_items", "SELECT id FROM items WHERE id = 1"),
            Kind::Write => exec("insert_item", INSERT, vec![2.into(), "w".into()]),
            Kind::KeyedWrite => idempotent_execute(
                RequestContext::write("insert_item"),
                DEFAULT_TABLE,
                "item-2",
                INSERT,
                [2.into(), "k".into()],
            )
            .unwrap(),
            Kind::UnitOfWork => SqlRequest::unit_of_work(
                RequestContext::write("insert_item_tx"),
                work(|client| {
                    Box::pin(async move {
                        batch(client, "BEGIN TRANSACTION").await?;
                        client
                            .execute(
                                "INSERT INTO items (id, note) VALUES (@P1, @P2)",
                                &[&2i32, &"u"],
                            )
                            .await?;
                        batch(client, "COMMIT TRANSACTION").await?;
                        Ok(SqlResponse::default())
                    })
                }),
            ),
        }
    }
}

/// What a cell's call should answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Success (a write: applied exactly once).
    Ok,
    /// An error that says nothing was applied (not sent, or rejected and proven).
    NotApplied,
    /// An outcome-unknown error (a write: applied at most once).
    Unknown,
    /// Success or outcome unknown: both are honest, depending on where the fault hit.
    OkOrUnknown,
    /// An error, whatever it says about the outcome (a read; or a keyed write, which the
    /// key guards either way).
    Fails,
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    Blackhole,
    ResetMidQuery,
    Refuse,
    LatencySpike,
    LoginError(u32),
    QueryError(u32),
    Redirect,
    ReadOnlyFlip,
    PoolExhaustion,
    SlowClose,
}

impl Fault {
    fn expect(self, kind: Kind) -> Expect {
        use Expect::*;
        match (self, kind) {
            // A read is idempotent: retried, but the black hole outlasts the deadline.
            (Fault::Blackhole, Kind::Read | Kind::KeyedWrite) => Fails,
            (Fault::Blackhole, _) => Unknown,
            (Fault::ResetMidQuery, Kind::Read | Kind::KeyedWrite) => Ok,
            // The server ran the INSERT; its answer was lost: only the server knows.
            (Fault::ResetMidQuery, Kind::Write) => Unknown,
            // The unit's first request (BEGIN) loses its answer: nothing applied yet, so
            // re-running it is safe; reporting unknown would be honest too.
            (Fault::ResetMidQuery, Kind::UnitOfWork) => OkOrUnknown,
            (Fault::Refuse, _) => NotApplied,
            (Fault::LatencySpike, _) => Ok,
            (Fault::LoginError(_), _) => Ok,
            (Fault::QueryError(1205), _) => Ok,
            // 40501 asks the client to wait 10 s: more than the deadline, so no retry.
            (Fault::QueryError(_), _) => NotApplied,
            (Fault::Redirect, _) => Ok,
            (Fault::ReadOnlyFlip, Kind::Read) => Ok,
            (Fault::ReadOnlyFlip, _) => NotApplied,
            (Fault::PoolExhaustion, _) => NotApplied,
            // The server closed the session, but the close is held back in the network:
            // the request goes out on a dead connection and no answer comes.
            (Fault::SlowClose, Kind::Read | Kind::KeyedWrite) => Ok,
            (Fault::SlowClose, _) => Unknown,
        }
    }

    /// Checks the error's kind beyond its outcome.
    fn check_error(self, kind: Kind, e: &Error) -> Result<(), String> {
        let ok = match self {
            Fault::Blackhole => e.is_timeout() || matches!(e.kind(), ErrorKind::DeadlineExceeded),
            Fault::Refuse => e.outcome() == Outcome::NotSent,
            Fault::QueryError(n) => e.server_number() == Some(n),
            Fault::ReadOnlyFlip => {
                e.server_number() == Some(3906)
                    || matches!(e.kind(), ErrorKind::NoRegionAvailable { .. })
            }
            Fault::PoolExhaustion => e.outcome() == Outcome::NotSent,
            Fault::SlowClose => kind.writes(),
            _ => true,
        };
        if ok {
            Ok(())
        } else {
            Err(format!("unexpected error kind {:?}: {e}", e.kind()))
        }
    }
}

struct Cell {
    regions: Backend,
    stack: Stack,
}

impl Cell {
    async fn start(pool_size: u32) -> Cell {
        let regions = testkit().await;
        let config = regions.config("", 1, |c| {
            c.pool.max_size = pool_size;
            c.pool.min_idle = Some(0);
            c.retry.max_attempts = 4;
        });
        let stack = Stack::builder(config).probes(false).build().unwrap();
        stack
            .call(exec(
                "ddl",
                "CREATE TABLE items (id INT NOT NULL PRIMARY KEY, note NVARCHAR(50) NOT NULL)",
                vec![],
            ))
            .await
            .unwrap();
        stack
            .call(exec(
                "seed",
                "INSERT INTO items (id, note) VALUES (1, 'seed')",
                vec![],
            ))
            .await
            .unwrap();
        ensure_table(&stack, DEFAULT_TABLE).await.unwrap();
        Cell { regions, stack }
    }

    fn region(&self) -> &Region {
        self.regions.primary()
    }

    async fn arm(&self, fault: Fault) -> Vec<tokio::task::JoinHandle<()>> {
        let region = self.region();
        let (faults, chaos) = (region.faults(), region.chaos());
        let mut holders = Vec::new();
        match fault {
            Fault::Blackhole => chaos.set_mode(Mode::Blackhole),
            Fault::ResetMidQuery => {
                faults.drop_responses(DropPoint::BeforeFinalDone, Trigger::Next(1))
            }
            Fault::Refuse => {
                chaos.set_mode(Mode::Refuse);
                faults.kill_sessions();
                self.sessions_closed().await;
            }
            Fault::LatencySpike => {
                chaos.set(Toxics::latency(Duration::from_millis(150), Duration::ZERO))
            }
            Fault::LoginError(n) => {
                faults.kill_sessions();
                self.sessions_closed().await;
                faults.fail_logins(ErrorSpec::known(n), Trigger::Next(2));
            }
            Fault::QueryError(n) => {
                let needle = "items";
                let spec = if n == 1205 {
                    ErrorSpec::deadlock()
                } else {
                    ErrorSpec::known(n)
                };
                faults.fail_queries(QueryFault::new(spec, Trigger::Next(1)).matching(needle));
            }
            Fault::Redirect => {
                faults.kill_sessions();
                self.sessions_closed().await;
                // To the server itself, past the proxy: a gateway handing the client on.
                let to = region.server.addr();
                faults.redirect_logins(to.ip().to_string(), to.port(), Trigger::Next(1));
            }
            Fault::ReadOnlyFlip => faults.set_read_only(true),
            Fault::PoolExhaustion => {
                // Two long requests hold both connections past the call's deadline.
                for _ in 0..2 {
                    let stack = self.stack.clone();
                    holders.push(tokio::spawn(async move {
                        let _ = stack
                            .call(read("hold", "WAITFOR DELAY '00:00:05'; SELECT 1"))
                            .await;
                    }));
                }
                let pool = self.stack.pools()[0].1.clone();
                eventually("both connections busy", Duration::from_secs(5), || {
                    let s = pool.state();
                    s.connections == 2 && s.idle_connections == 0
                })
                .await;
            }
            Fault::SlowClose => {
                chaos.set(Toxics::both(
                    DirectionToxics::new().with_slow_close(Duration::from_millis(4000)),
                ));
                faults.kill_sessions();
            }
        }
        holders
    }

    async fn disarm(&self, holders: Vec<tokio::task::JoinHandle<()>>) {
        let region = self.region();
        region.chaos().clear();
        region.faults().clear();
        for holder in holders {
            let _ = holder.await;
        }
    }

    async fn sessions_closed(&self) {
        let faults = self.region().faults();
        eventually("killed sessions closed", Duration::from_secs(5), || {
            faults.counters().connections_open == 0
        })
        .await;
    }

    async fn rows(&self) -> Result<i64, String> {
        let response = self
            .stack
            .call(read("count", "SELECT COUNT(*) FROM items WHERE id = 2"))
            .await
            .map_err(|e| format!("the next call failed: {e}"))?;
        response
            .scalar()
            .and_then(|v| v.as_i64())
            .ok_or_else(|| "no count".to_owned())
    }

    /// No checkout waiting, every pooled connection idle, no server session the pool lost.
    async fn pool_settled(&self) -> Result<(), String> {
        let pool = self.stack.pools()[0].1.clone();
        let faults = self.region().faults();
        let settled = tokio::time::timeout(Duration::from_secs(8), async {
            loop {
                let s = pool.state();
                let open = faults.counters().connections_open;
                if pool.checkout_stats().pending == 0
                    && s.idle_connections == s.connections
                    && open == u64::from(s.connections)
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        settled.map_err(|_| {
            let s = pool.state();
            format!(
                "pool not settled: {} connections, {} idle, {} checkouts pending, {} server sessions",
                s.connections,
                s.idle_connections,
                pool.checkout_stats().pending,
                faults.counters().connections_open
            )
        })
    }
}

async fn run_cell(fault: Fault, kind: Kind) -> Result<(), String> {
    let pool_size = if matches!(fault, Fault::PoolExhaustion) {
        2
    } else {
        4
    };
    let cell = Cell::start(pool_size).await;
    let holders = cell.arm(fault).await;
    let started = tokio::time::Instant::now();
    let result = cell.stack.call(kind.request()).await;
    let took = started.elapsed();
    cell.disarm(holders).await;
    if took > DEADLINE + SLACK {
        return Err(format!("took {took:?}, past the {DEADLINE:?} deadline"));
    }
    let expect = fault.expect(kind);
    let verdict = match (&result, expect) {
        (Ok(_), Expect::Ok | Expect::OkOrUnknown) => Ok(()),
        (Err(e), Expect::Unknown | Expect::OkOrUnknown) if e.is_outcome_unknown() => {
            fault.check_error(kind, e)
        }
        (Err(e), Expect::NotApplied) if !e.is_outcome_unknown() => fault.check_error(kind, e),
        (Err(e), Expect::Fails) => fault.check_error(kind, e),
        (Ok(_), _) => Err(format!("expected {expect:?}, got Ok")),
        (Err(e), _) => Err(format!(
            "expected {expect:?}, got {} error {:?} (unknown outcome: {}): {e}",
            e.outcome(),
            e.kind(),
            e.is_outcome_unknown()
        )),
    };
    verdict?;
    let rows = cell.rows().await?;
    if kind.writes() {
        let fine = match &result {
            Ok(_) => rows == 1,
            Err(e) if e.is_outcome_unknown() => rows <= 1,
            Err(_) => rows == 0,
        };
        if !fine {
            return Err(format!(
                "row 2 is there {rows} time(s) after {:?}",
                result.map(|_| ())
            ));
        }
    } else if rows != 0 {
        return Err(format!("a read wrote {rows} row(s)"));
    }
    cell.pool_settled().await
}

async fn matrix(fault: Fault) {
    let mut broken = Vec::new();
    for kind in KINDS {
        if let Err(why) = run_cell(fault, kind).await {
            broken.push(format!("{fault:?} × {kind:?}: {why}"));
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackhole() {
    matrix(Fault::Blackhole).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_mid_query() {
    matrix(Fault::ResetMidQuery).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections() {
    matrix(Fault::Refuse).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_spike() {
    matrix(Fault::LatencySpike).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_40613() {
    matrix(Fault::LoginError(40613)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_4060() {
    matrix(Fault::LoginError(4060)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_1205() {
    matrix(Fault::QueryError(1205)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_40501() {
    matrix(Fault::QueryError(40501)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_redirect() {
    matrix(Fault::Redirect).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_flip() {
    matrix(Fault::ReadOnlyFlip).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_exhaustion() {
    matrix(Fault::PoolExhaustion).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_close() {
    matrix(Fault::SlowClose).await;
}
