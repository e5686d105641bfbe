//! End-to-end overhead of the full mssql-resilience stack against raw bb8 + tiberius.
//!
//! Both sides talk TDS over loopback TCP to an in-process testkit server
//! (`mssql_testkit::tds::TdsServer`) on the same tokio runtime: a current-thread runtime
//! for the `c1` (latency) cases, a multi-thread runtime with 2 workers for the `c32`
//! (throughput) cases; each has its own server, pools and stack. Each side has a pool of
//! at most 32 connections.
//!
//! * **raw**: a `bb8::Pool` of `tiberius::Client<Compat<TcpStream>>` over a minimal
//!   `ManageConnection` (`is_valid` = `SELECT 1`, `has_broken` = false), with bb8's
//!   defaults — so `test_on_check_out` is on and every checkout costs a `SELECT 1` round
//!   trip. Each call reads every row (`into_results`), without converting them to owned
//!   values.
//! * **raw_nocheck**: the same pool with `test_on_check_out(false)`: the bare minimum of
//!   work per call, hence the stack's pure overhead. (The stack itself only revalidates a
//!   connection idle for more than 2 s.)
//! * **service**: the stack's innermost `SqlService` on the stack's own pool, without
//!   the layers (telemetry, deadline, retry, failover router, breaker, attempt timeout):
//!   splits the stack's overhead into pool/materialization and layers.
//! * **stack**: `Stack::builder(config).metrics(false).build()`, called with
//!   `stack.call(SqlRequest::query(..))`; it materializes the rows into its `SqlResponse`.
//!   Background probes run every 2 s, as by default. (Metrics on without an installed
//!   recorder takes the same path: the facade's calls are no-ops.)
//!
//! Cases (group `stack`): `select1_*` runs `SELECT 1`, `rows100_*` a 100-row
//! `SELECT id, name FROM rows100`; `*_c1_*` are sequential calls from one task (latency),
//! `*_c32_*` are 32 tasks each making sequential calls (throughput; the time reported is
//! wall time per call, i.e. 1 / calls per second). After the criterion run, the bench
//! prints each stack/raw ratio of the mean time per call (target: ≤ 1.03).

use std::time::Duration;

#[path = "support/estimates.rs"]
mod estimates;
use estimates::mean_ns;

use criterion::{criterion_group, Criterion};
use mssql_resilience::config::Config;
use mssql_resilience::pool::SqlService;
use mssql_resilience::sql::SqlRequest;
use mssql_resilience::{RequestContext, Stack};
use mssql_testkit::tds::{TdsServer, TdsServerConfig};
use tiberius::{AuthMethod, EncryptionLevel};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio::time::Instant;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};
use tower::ServiceExt;

const USER: &str = "bench";
const PASSWORD: &str = "bench-pw";
const DATABASE: &str = "bench";
const POOL_SIZE: u32 = 32;
const TASKS: u64 = 32;
const SELECT1: &str = "SELECT 1";
const ROWS100: &str = "SELECT id, name FROM rows100";

/// The baseline's connection manager, as a team would write it.
struct RawManager {
    config: tiberius::Config,
}

type RawClient = tiberius::Client<Compat<TcpStream>>;

impl bb8::ManageConnection for RawManager {
    type Connection = RawClient;
    type Error = tiberius::error::Error;

    async fn connect(&self) -> Result<RawClient, tiberius::error::Error> {
        let tcp = TcpStream::connect(self.config.get_addr()).await?;
        tcp.set_nodelay(true)?;
        tiberius::Client::connect(self.config.clone(), tcp.compat_write()).await
    }

    async fn is_valid(&self, conn: &mut RawClient) -> Result<(), tiberius::error::Error> {
        conn.simple_query("SELECT 1").await?.into_results().await?;
        Ok(())
    }

    fn has_broken(&self, _: &mut RawClient) -> bool {
        false
    }
}

type RawPool = bb8::Pool<RawManager>;

/// One call through the raw pool, reading every row.
async fn raw_call(pool: &RawPool, sql: &str) -> usize {
    let mut conn = pool.get().await.expect("raw checkout");
    let sets = conn
        .query(sql, &[])
        .await
        .expect("raw query")
        .into_results()
        .await
        .expect("raw rows");
    std::hint::black_box(sets.iter().map(Vec::len).sum())
}

/// One call through the stack.
async fn stack_call(stack: &Stack, sql: &'static str) -> usize {
    let response = stack
        .call(SqlRequest::query(RequestContext::read("bench"), sql, []))
        .await
        .expect("stack query");
    std::hint::black_box(response.result_sets.iter().map(|s| s.rows.len()).sum())
}

/// One call through the stack's innermost service alone (its pool, no layers).
async fn service_call(service: &SqlService, sql: &'static str) -> usize {
    let response = service
        .clone()
        .oneshot(SqlRequest::query(RequestContext::read("bench"), sql, []))
        .await
        .expect("service query");
    std::hint::black_box(response.result_sets.iter().map(|s| s.rows.len()).sum())
}

/// Which client a case drives.
#[derive(Clone)]
enum Client {
    Raw(RawPool),
    Service(SqlService),
    Stack(Stack),
}

impl Client {
    async fn call(&self, sql: &'static str) -> usize {
        match self {
            Client::Raw(pool) => raw_call(pool, sql).await,
            Client::Service(service) => service_call(service, sql).await,
            Client::Stack(stack) => stack_call(stack, sql).await,
        }
    }

    /// `calls` calls spread over `tasks` concurrent tasks; the wall time they take.
    fn run(&self, rt: &Runtime, sql: &'static str, tasks: u64, calls: u64) -> Duration {
        rt.block_on(async {
            let start = Instant::now();
            let handles: Vec<_> = (0..tasks)
                .map(|i| {
                    let client = self.clone();
                    let n = calls / tasks + u64::from(i < calls % tasks);
                    tokio::spawn(async move {
                        for _ in 0..n {
                            client.call(sql).await;
                        }
                    })
                })
                .collect();
            for handle in handles {
                handle.await.expect("bench task");
            }
            start.elapsed()
        })
    }
}

/// The server, the clients and the runtime they all run on.
struct Fixture {
    clients: Vec<(&'static str, Client)>,
    _server: TdsServer,
    rt: Runtime,
}

/// A fixture on a runtime with `workers` worker threads (0: a current-thread runtime);
/// `probes` runs the stack's background health probes (as by default).
fn fixture(workers: usize, probes: bool) -> Fixture {
    let rt = match workers {
        0 => tokio::runtime::Builder::new_current_thread(),
        n => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(n);
            builder
        }
    }
    .enable_all()
    .build()
    .expect("runtime");
    let (server, clients) = rt.block_on(async {
        let server = TdsServer::start(TdsServerConfig::new(USER, PASSWORD).database(DATABASE))
            .await
            .expect("tds server starts");
        let port = server.addr().port();

        let toml = format!(
            "[pool]\nmax_size = {POOL_SIZE}\n\
             [[regions]]\nname = \"bench\"\nhost = \"127.0.0.1\"\nport = {port}\n\
             database = \"{DATABASE}\"\nuser = \"{USER}\"\npassword = \"{PASSWORD}\"\n\
             encryption = \"not_supported\"\n"
        );
        let config = Config::from_toml_str(&toml).expect("bench config");
        let stack = Stack::builder(config)
            .metrics(false)
            .probes(probes)
            .build()
            .expect("stack builds");
        if probes {
            stack.wait_for_probes(Duration::from_secs(5)).await;
        }

        let mut config = tiberius::Config::new();
        config.host("127.0.0.1");
        config.port(port);
        config.authentication(AuthMethod::sql_server(USER, PASSWORD));
        config.database(DATABASE);
        config.encryption(EncryptionLevel::NotSupported);
        let raw = bb8::Pool::builder()
            .max_size(POOL_SIZE)
            .build(RawManager {
                config: config.clone(),
            })
            .await
            .expect("raw pool");
        let raw_nocheck = bb8::Pool::builder()
            .max_size(POOL_SIZE)
            .test_on_check_out(false)
            .build(RawManager { config })
            .await
            .expect("raw pool");

        let values: Vec<String> = (1..=100).map(|i| format!("({i}, N'name-{i}')")).collect();
        for sql in [
            "CREATE TABLE rows100 (id INT NOT NULL PRIMARY KEY, name NVARCHAR(50) NOT NULL)"
                .to_owned(),
            format!(
                "INSERT INTO rows100 (id, name) VALUES {}",
                values.join(", ")
            ),
        ] {
            stack
                .call(SqlRequest::execute(RequestContext::write("setup"), sql, []))
                .await
                .expect("setup statement");
        }

        let service = SqlService::new(stack.pools()[0].1.clone(), "bench");
        let clients = vec![
            ("raw", Client::Raw(raw)),
            ("raw_nocheck", Client::Raw(raw_nocheck)),
            ("service", Client::Service(service)),
            ("stack", Client::Stack(stack)),
        ];
        (server, clients)
    });
    for (name, client) in &clients {
        assert_eq!(
            rt.block_on(client.call(ROWS100)),
            100,
            "{name} reads 100 rows"
        );
        // Open every connection of the pool before timing.
        for _ in 0..3 {
            client.run(&rt, SELECT1, TASKS, TASKS * 4);
        }
    }
    Fixture {
        clients,
        _server: server,
        rt,
    }
}

const QUERIES: [(&str, &str); 2] = [("select1", SELECT1), ("rows100", ROWS100)];
const CONCURRENCY: [u64; 2] = [1, 32];

fn stack(c: &mut Criterion) {
    // Latency on one thread (client, server and probes interleave deterministically;
    // on 2 workers the result depends on whether client and session task share a worker),
    // throughput on 2 workers.
    let fixtures = [fixture(0, true), fixture(2, true)];
    let mut group = c.benchmark_group("stack");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5));
    for (tasks, fixture) in CONCURRENCY.into_iter().zip(&fixtures) {
        for (query, sql) in QUERIES {
            for (side, client) in &fixture.clients {
                group.bench_function(format!("{query}_c{tasks}_{side}"), |b| {
                    b.iter_custom(|iters| client.run(&fixture.rt, sql, tasks, iters))
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, stack);

/// Instruction-count mode for `benches/instructions.sh`: `STACK_BENCH_COUNT=side:query:calls`
/// makes `calls` sequential calls with one client on a current-thread runtime (probes off,
/// so nothing runs in the background) and exits. Under `valgrind --tool=callgrind`, the
/// difference between two call counts gives instructions per call, independent of the
/// machine's load.
fn count_mode(spec: &str) {
    let parts: Vec<&str> = spec.split(':').collect();
    let [side, query, calls] = parts[..] else {
        panic!("STACK_BENCH_COUNT must be side:query:calls, got {spec:?}");
    };
    let sql = QUERIES
        .iter()
        .find(|(name, _)| *name == query)
        .map(|(_, sql)| *sql)
        .unwrap_or_else(|| panic!("unknown query {query:?}"));
    let calls: u64 = calls.parse().expect("calls is a number");
    let fixture = fixture(0, false);
    let (_, client) = fixture
        .clients
        .iter()
        .find(|(name, _)| *name == side)
        .unwrap_or_else(|| panic!("unknown side {side:?}"));
    client.run(&fixture.rt, sql, 1, calls);
}

fn main() {
    if let Ok(spec) = std::env::var("STACK_BENCH_COUNT") {
        count_mode(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    println!("\nmean wall time per call (c32: 1 / throughput) and stack / raw ratio:");
    for tasks in CONCURRENCY {
        for (query, _) in QUERIES {
            let case = format!("{query}_c{tasks}");
            let Some(stack) = mean_ns("stack", &format!("{case}_stack")) else {
                continue;
            };
            for raw in ["raw", "raw_nocheck", "service"] {
                if let Some(base) = mean_ns("stack", &format!("{case}_{raw}")) {
                    let ratio = stack / base;
                    println!(
                        "  {case:<12} stack {:>8.1} µs / {raw:<11} {:>8.1} µs = {ratio:.3}   \
                         overhead {:+.1} % (target <= 3 %)",
                        stack / 1e3,
                        base / 1e3,
                        (ratio - 1.0) * 100.0
                    );
                }
            }
        }
    }
}
