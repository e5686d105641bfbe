//! Gray failures over real TCP: testkit regions behind chaos proxies that make a region
//! slow rather than dead. Slow is not dead: a region that answers within the call's
//! budget must keep answering, even when a fixed timeout would call it dead. Real time
//! (the network is real); every assertion is about outcomes within the call's deadline.

mod support;

use std::time::Duration;

use mssql_resilience::config::Config;
use mssql_resilience::deadline::ambient;
use mssql_resilience::error::Outcome;
use mssql_resilience::failover::Grade;
use mssql_resilience::observe::{Recorded, RecordingObserver};
use mssql_resilience::sql::SqlRequest;
use mssql_resilience::{Consistency, Intent, RequestContext, Stack, StackBuilder};
use mssql_testkit::chaos::Toxics;
use mssql_testkit::tds::{ErrorSpec, Trigger};
use support::*;

fn grade(stack: &Stack, region: &str) -> Grade {
    stack
        .health()
        .into_iter()
        .find(|r| r.name == region)
        .map(|r| r.grade)
        .expect("region exists")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_but_working_secondary_serves_reads_while_the_primary_is_down() {
    let regions = testkit().await;
    let config = regions.config("", 2, |_| {});
    let stack = Stack::builder(config).build().unwrap();
    assert!(stack.wait_for_probes(Duration::from_secs(5)).await);
    assert_eq!(scalar(&stack, "SELECT 1").await, 1);
    // The primary is gone; the secondary answers, 150 ms each way. A new connection
    // there needs ~4 round trips (1.2 s): more than the configured 500 ms connect
    // timeout, well within the 3 s budget.
    regions.primary().chaos().set(Toxics::blackhole());
    regions
        .secondary()
        .chaos()
        .set(Toxics::latency(Duration::from_millis(150), Duration::ZERO));
    eventually("the primary is down", Duration::from_secs(5), || {
        grade(&stack, "westeurope") == Grade::Down
    })
    .await;
    // The stack's 3 s budget bounds every call: an answer is an answer within it.
    let mut ok = 0;
    for _ in 0..10 {
        let result = stack.call(read("slow_read", "SELECT 7")).await;
        if result.is_ok_and(|r| r.scalar().and_then(|v| v.as_i64()) == Some(7)) {
            ok += 1;
        }
    }
    // The first read may spend its budget learning the latency (a connect that times out
    // once); every later one is served.
    assert!(ok >= 9, "{ok} of 10 reads served by the slow secondary");
    assert_eq!(
        grade(&stack, "northeurope"),
        Grade::Degraded,
        "slow, not dead"
    );
}

/// Two regions whose secondary is a read-only replica (the primary is the only writable
/// region), probed, with an empty `table (id INT)` on the primary.
async fn only_writable_primary(table: &str) -> (Backend, Stack) {
    only_writable_primary_with(table, |_| {}, |b| b).await
}

/// [`only_writable_primary`], with the configuration edited by `config` and the stack's
/// builder by `builder`.
async fn only_writable_primary_with(
    table: &str,
    config: impl FnOnce(&mut Config),
    builder: impl FnOnce(StackBuilder) -> StackBuilder,
) -> (Backend, Stack) {
    let regions = testkit().await;
    regions.secondary().faults().set_read_only(true);
    let config = regions.config("", 2, config);
    let stack = builder(Stack::builder(config)).build().unwrap();
    assert!(stack.wait_for_probes(Duration::from_secs(5)).await);
    let ddl = format!("CREATE TABLE {table} (id INT)");
    stack.call(exec("ddl", &ddl, vec![])).await.unwrap();
    (regions, stack)
}

/// The primary refuses new connections and its open ones are reset; returns once the proxy
/// holds none (a connection reset while a write is on it would make the write's outcome
/// unknown, which other tests cover), so the next checkout must connect.
async fn refuse_every_connection(regions: &Backend) -> mssql_testkit::chaos::ChaosHandle {
    let chaos = regions.primary().chaos();
    chaos.set(Toxics::refuse());
    chaos.reset_connections();
    eventually(
        "the proxy closed every connection",
        Duration::from_secs(5),
        || chaos.counters().active == 0,
    )
    .await;
    chaos
}

/// One region (1 s connect timeout, no probes) with an empty table `table`, created
/// through the stack: the region has just answered.
async fn one_region_with_table(table: &str) -> (Backend, Stack) {
    let regions = testkit().await;
    let config = regions.config("", 1, |c| c.timeouts.connect = Duration::from_secs(1));
    let stack = Stack::builder(config).probes(false).build().unwrap();
    stack
        .call(exec(
            "ddl",
            &format!("CREATE TABLE {table} (id INT)"),
            vec![],
        ))
        .await
        .unwrap();
    (regions, stack)
}

/// Closes every connection to the primary, then lets new ones through `each_way` late:
/// the next request must log in over the slow path.
async fn slow_new_logins(
    regions: &Backend,
    each_way: Duration,
) -> mssql_testkit::chaos::ChaosHandle {
    let chaos = refuse_every_connection(regions).await;
    chaos.set(Toxics::latency(each_way, Duration::ZERO));
    chaos
}

/// Writes one row into `table` (a write with `budget`), then heals the path.
async fn insert_one_then_heal(
    stack: &Stack,
    chaos: &mssql_testkit::chaos::ChaosHandle,
    table: &str,
    budget: Duration,
) -> Result<mssql_resilience::SqlResponse, mssql_resilience::Error> {
    let write = SqlRequest::execute(
        RequestContext::write("insert_one").budget(budget),
        format!("INSERT INTO {table} (id) VALUES (1)"),
        [],
    );
    let result = stack.call(write).await;
    chaos.set(Toxics::ok());
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_primary_keeps_taking_writes() {
    let (regions, stack) = only_writable_primary("gray_writes").await;
    // 600 ms each way: one write on a pooled connection takes 1.2 s, past the configured
    // 1 s attempt timeout, within the 3 s budget. With nowhere better to go, the write
    // may use its whole budget.
    regions
        .primary()
        .chaos()
        .set(Toxics::latency(Duration::from_millis(600), Duration::ZERO));
    // Each succeeds within the stack's 3 s budget, which bounds every call.
    insert_ids(&stack, "gray_writes", "slow_write", 0..5).await;
    regions.primary().chaos().set(Toxics::ok());
    // Read-your-writes: only the primary has them (the testkit regions do not replicate).
    assert_eq!(rows_on_primary(&stack, "gray_writes").await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_short_request_is_drained_and_its_connection_survives_a_login_storm() {
    let regions = testkit().await;
    let config = regions.config("", 1, |c| c.retry.max_attempts = 1);
    let stack = Stack::builder(config).probes(false).build().unwrap();
    assert_eq!(scalar(&stack, "SELECT 1").await, 1);
    let pool = stack.pools()[0].1.clone();
    assert_eq!(pool.state().statistics.connections_created, 1);
    // New logins fail from now on: only the pooled connection can serve.
    login_storm_while_slow(&regions, Duration::from_millis(150));
    // The caller gives up after 100 ms, long before the 300 ms round trip answers.
    let err = ambient::with_budget(
        Duration::from_millis(100),
        stack.call(read("cut_short", "SELECT 2")),
    )
    .await
    .unwrap_err();
    assert_eq!(err.outcome(), Outcome::Ambiguous, "{err}");
    // The request finishes in the background and its connection returns to the pool.
    eventually(
        "the connection is back in the pool",
        Duration::from_secs(5),
        || {
            let state = pool.state();
            state.connections == 1 && state.idle_connections == 1
        },
    )
    .await;
    regions.primary().chaos().set(Toxics::ok());
    assert_eq!(scalar(&stack, "SELECT 3").await, 3);
    let stats = pool.state().statistics;
    assert_eq!(stats.connections_created, 1, "no new login was needed");
    assert_eq!(stats.connections_closed_broken, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_waits_out_a_short_outage_of_its_only_region() {
    let (regions, stack) = only_writable_primary("outage_writes").await;
    // The primary refuses every connection and its open ones are cut: each connect fails
    // at once. It comes back 1.2 s later, well within the write's 3 s budget.
    let chaos = refuse_every_connection(&regions).await;
    write_outlasts(&regions, &stack, "outage_writes", async move {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        chaos.set(Toxics::ok());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_waits_out_a_short_login_storm_of_its_only_region() {
    let (regions, stack) = only_writable_primary("storm_writes").await;
    // No connection is left open, and every new login gets 40613 ("database not currently
    // available", a reconfiguration) for 1.2 s: transient, so the write waits.
    let chaos = refuse_every_connection(&regions).await;
    let faults = regions.primary().faults();
    faults.fail_logins(ErrorSpec::known(40613), Trigger::Always);
    chaos.set(Toxics::ok());
    let failed = faults.counters().failed_logins;
    write_outlasts(&regions, &stack, "storm_writes", {
        let faults = faults.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(1200)).await;
            faults.clear_login_faults();
        }
    })
    .await;
    assert!(
        faults.counters().failed_logins > failed,
        "the storm was met"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_into_a_latency_spike_is_finished_for_a_write_with_nowhere_else_to_go() {
    // One region, no probes: the latency estimate is the loopback's until the spike.
    let (regions, stack) = one_region_with_table("spike_writes").await;
    // A spike of 300 ms each way, and no connection left open: the write must log in.
    // The server answers the PRELOGIN after 0.6 s, but the whole login takes 1.2 s, past
    // the 1 s connect timeout. Abandoned there, the next connect (2 s bound) would end
    // at about 2.3 s and the write at about 2.9 s, past its 2.4 s budget; finished, the
    // login ends at 1.2 s and the write at 1.8 s.
    let chaos = slow_new_logins(&regions, Duration::from_millis(300)).await;
    let logins = regions.primary().faults().counters().logins;
    let result =
        insert_one_then_heal(&stack, &chaos, "spike_writes", Duration::from_millis(2400)).await;
    result.unwrap_or_else(|e| panic!("the login was finished for the write: {e}"));
    assert_eq!(
        regions.primary().faults().counters().logins,
        logins + 1,
        "one login, finished rather than started over"
    );
    assert_eq!(rows_on_primary(&stack, "spike_writes").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_not_answered_within_the_connect_timeout_runs_on_when_the_region_just_answered() {
    // As above, but slower: 600 ms each way, so even the PRELOGIN answer (1.2 s) comes
    // after the 1 s connect timeout, and the connect fails on time. The region answered
    // the DDL a moment before, so it is alive and has just become slow: with a write that
    // has nowhere else to go waiting, the connect runs on as a spare and opens its
    // connection at about 2.4 s, which the pool hands to the write; the write ends at
    // about 3.6 s, within its 4 s budget. Thrown away at 1 s, the next connect (started
    // at 1.0–1.25 s) would end at about 3.4 s and the write at 4.6 s.
    let (regions, stack) = one_region_with_table("slow_login_writes").await;
    let chaos = slow_new_logins(&regions, Duration::from_millis(600)).await;
    let stats = stack.pools()[0].1.manager_stats();
    let (failures, late) = (stats.connect_failures(), stats.late_connects());
    let result =
        insert_one_then_heal(&stack, &chaos, "slow_login_writes", Duration::from_secs(4)).await;
    result.unwrap_or_else(|e| panic!("the spare's connection served the write: {e}"));
    assert!(
        stats.connect_failures() > failures,
        "the first connect failed on time"
    );
    assert_eq!(
        stats.late_connects(),
        late + 1,
        "the first connect ran on and opened its connection"
    );
    assert_eq!(rows_on_primary(&stack, "slow_login_writes").await, 1);
}

/// Sends a non-idempotent INSERT into `table` on the only writable region while it is
/// out, `back` bringing it back within the write's budget, and asserts the write was
/// served once, on a connection opened after the outage. With nowhere else to go, the
/// write's checkout keeps the pool trying (paced) instead of failing at each failed
/// connect and spending its three attempts at once.
async fn write_outlasts(
    regions: &Backend,
    stack: &Stack,
    table: &str,
    back: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let back = tokio::spawn(back);
    let logins = regions.primary().faults().counters().logins;
    let sql = format!("INSERT INTO {table} (id) VALUES (1)");
    let result = stack.call(exec("outage_write", &sql, vec![])).await;
    back.await.unwrap();
    let response = result.unwrap_or_else(|e| panic!("the write waited out the outage: {e}"));
    assert_eq!(response.total_rows_affected(), 1);
    assert!(
        regions.primary().faults().counters().logins > logins,
        "served on a connection opened after the outage"
    );
    assert_eq!(rows_on_primary(stack, table).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_to_a_slow_region_is_kept_not_failed_by_its_check() {
    let (regions, stack) = only_writable_primary("idle_writes").await;
    let pool = stack.pools()[0].1.clone();
    // 600 ms each way: a round trip takes 1.2 s, a new login (~4 round trips) more than
    // the 3 s budget. Only the pooled connection can take these writes.
    regions
        .primary()
        .chaos()
        .set(Toxics::latency(Duration::from_millis(600), Duration::ZERO));
    let write = |id: i32| {
        exec(
            "idle_write",
            &format!("INSERT INTO idle_writes (id) VALUES ({id})"),
            vec![],
        )
    };
    stack.call(write(1)).await.unwrap();
    let created = pool.state().statistics.connections_created;
    let checks = pool.manager_stats().checks();
    // Idle 4 s: past the 2 s after which a connection is checked before use, and past two
    // of the region's round trips with no answer since (so no answer spares the check).
    // The check (one round trip, 1.2 s) may take the region's round trip; bounded by the
    // configured 500 ms it closed the working connection as dead, and the write waited
    // for a login that could not finish in time (an unknown outcome).
    for (id, idle) in [(2, 4000), (3, 4500)] {
        tokio::time::sleep(Duration::from_millis(idle)).await;
        stack
            .call(write(id))
            .await
            .unwrap_or_else(|e| panic!("after {idle} ms idle: {e}"));
    }
    let stats = pool.state().statistics;
    assert_eq!(
        stats.connections_created, created,
        "no new login was needed"
    );
    assert_eq!(
        pool.manager_stats().checks() - checks,
        2,
        "each idle write was checked"
    );
    assert_eq!(stats.connections_closed_broken, 0);
    regions.primary().chaos().set(Toxics::ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_waiting_for_its_only_region_moves_when_another_becomes_writable() {
    let (regions, stack) = only_writable_primary("moved_writes").await;
    // The primary becomes unreachable for good: the write has nowhere else to go and
    // waits in its checkout while the pool keeps trying.
    refuse_every_connection(&regions).await;
    // A failover-group flip 600 ms later: the secondary becomes writable, and the probes
    // (every 200 ms) see it. The waiting write must not sit out its 3 s budget on the
    // unreachable primary.
    let flip = tokio::spawn({
        let faults = regions.secondary().faults();
        async move {
            tokio::time::sleep(Duration::from_millis(600)).await;
            faults.set_read_only(false);
        }
    });
    let before = regions.secondary().faults().counters();
    // A write-intent statement every region can run (the regions do not replicate).
    let result = stack.call(exec("moved_write", "SELECT 1", vec![])).await;
    flip.await.unwrap();
    result.unwrap_or_else(|e| panic!("the write moved to the new primary: {e}"));
    let after = regions.secondary().faults().counters();
    assert!(
        after.batches + after.rpcs > before.batches + before.rpcs,
        "served by the secondary"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_whose_pool_cannot_grow_hands_reads_to_the_secondary_and_keeps_writes() {
    let observer = RecordingObserver::new();
    // No hedging: reads that queue on the primary must move because its pool starves,
    // not because a hedge on the secondary answered first.
    let (regions, stack) = only_writable_primary_with(
        "starved_writes",
        |c| c.failover.hedge_delay = None,
        |b| b.observer(observer.shared()),
    )
    .await;
    let pool = stack.pools()[0].1.clone();
    // A login storm (40613) while the primary gets a little slower (20 ms each way, far
    // below every timeout, so nothing else degrades it): the connections it has keep
    // working, new ones fail, and more requests arrive than its connections can carry at
    // once.
    login_storm_while_slow(&regions, Duration::from_millis(20));
    let open = pool.state().connections;
    let reads = (0..open + 10).map(|_| stack.call(read("starved_read", "SELECT 1")));
    for result in futures_util::future::join_all(reads).await {
        let response = result.expect("every read is served, by the primary or the secondary");
        assert_eq!(response.scalar().and_then(|v| v.as_i64()), Some(1));
    }
    assert!(
        pool.checkout_stats().starved > 0,
        "the primary's pool starved"
    );
    let events = observer.events();
    assert!(
        events.iter().any(|e| matches!(e,
            Recorded::RegionHealthChanged { region, grade: Grade::Degraded, writable: true, .. }
                if region == "westeurope")),
        "a pool that cannot grow degrades its region: {events:?}"
    );
    assert!(
        events.iter().any(|e| matches!(e,
            Recorded::RegionSwitched { intent: Intent::Read, to: Some(to), .. }
                if to == "northeurope")),
        "reads move to the secondary: {events:?}"
    );
    // Writes have nowhere else to go and keep using the primary's open connections.
    insert_ids(&stack, "starved_writes", "starved_write", 0..3).await;
    regions.primary().chaos().set(Toxics::ok());
    assert_eq!(rows_on_primary(&stack, "starved_writes").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_cannot_be_resent_is_not_sent_on_a_connection_the_region_may_swallow() {
    let (regions, stack) = only_writable_primary("swallowed_writes").await;
    // A pooled connection that works, used just now (the pool's own idle check would
    // only look at it after 2 s idle).
    let first = "INSERT INTO swallowed_writes (id) VALUES (0)";
    stack.call(exec("first", first, vec![])).await.unwrap();
    // The network starts swallowing everything; the probes notice.
    regions.primary().chaos().set(Toxics::blackhole());
    eventually("the primary is down", Duration::from_secs(5), || {
        grade(&stack, "westeurope") == Grade::Down
    })
    .await;
    // A write that cannot be re-sent, with nowhere else to go: sent on that connection
    // it would vanish, its outcome unknown. The connection is proved first, and fails.
    let second = "INSERT INTO swallowed_writes (id) VALUES (1)";
    let err = stack
        .call(exec("second", second, vec![]))
        .await
        .expect_err("nothing answers");
    assert_eq!(err.outcome(), Outcome::NotSent, "{err}");
    regions.primary().chaos().set(Toxics::ok());
    assert_eq!(rows_on_primary(&stack, "swallowed_writes").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_region_at_its_bound_keeps_the_writes_due_last() {
    // A pool of two: two requests waiting on the primary once it is not healthy are as
    // many as it may hold.
    let (regions, stack) =
        only_writable_primary_with("roomy_writes", |c| c.pool.max_size = 2, |b| b).await;
    let pool = stack.pools()[0].1.clone();
    refuse_every_connection(&regions).await;
    eventually("the primary is down", Duration::from_secs(5), || {
        grade(&stack, "westeurope") == Grade::Down
    })
    .await;
    let write = |id: i32, budget_ms: u64| {
        let stack = stack.clone();
        tokio::spawn(async move {
            let sql = format!("INSERT INTO roomy_writes (id) VALUES ({id})");
            let ctx = RequestContext::write("roomy_write").budget(Duration::from_millis(budget_ms));
            stack.call(SqlRequest::execute(ctx, sql, [])).await
        })
    };
    // Two writes with nowhere else to go wait for the primary to come back: the first
    // due in 1.5 s, the second in 3 s.
    let first = write(1, 1500);
    let second = write(2, 3000);
    eventually("both writes wait", Duration::from_secs(1), || {
        pool.checkout_stats().pending == 2
    })
    .await;
    // A third, due after the first: while the region is down a place in line is worth
    // nothing, so the write due first gives way (it would be the first to run out of
    // time) rather than the newcomer being turned away.
    let third = write(3, 3000);
    let err = first
        .await
        .unwrap()
        .expect_err("the write due first gave its place");
    assert_eq!(err.kind().as_str(), "no_region_available", "{err}");
    assert_eq!(err.outcome(), Outcome::NotSent, "{err}");
    // The region comes back within the other two writes' budgets: both are served.
    regions.primary().chaos().set(Toxics::ok());
    for (id, w) in [(2, second), (3, third)] {
        w.await
            .unwrap()
            .unwrap_or_else(|e| panic!("write {id} kept its place and was served: {e}"));
    }
    assert_eq!(rows_on_primary(&stack, "roomy_writes").await, 2);
}

/// Inserts each of `ids` into `table (id INT)` as its own non-idempotent write, each of
/// which must succeed.
async fn insert_ids(stack: &Stack, table: &str, op: &'static str, ids: std::ops::Range<i32>) {
    for i in ids {
        let sql = format!("INSERT INTO {table} (id) VALUES ({i})");
        stack
            .call(exec(op, &sql, vec![]))
            .await
            .unwrap_or_else(|e| panic!("write {i}: {e}"));
    }
}

/// The rows of `table` on the writable region (a read that asks for the latest data:
/// only the primary has the writes; the testkit regions do not replicate).
async fn rows_on_primary(stack: &Stack, table: &str) -> i64 {
    let count = SqlRequest::query(
        RequestContext::read("count").consistency(Consistency::Latest),
        format!("SELECT COUNT(*) FROM {table}"),
        [],
    );
    let response = stack.call(count).await.unwrap();
    response.scalar().and_then(|v| v.as_i64()).expect("a count")
}

/// Every new login to the primary fails with 40613 from now on (its open connections keep
/// working), and its network adds `latency` each way.
fn login_storm_while_slow(regions: &Backend, latency: Duration) {
    regions
        .primary()
        .faults()
        .fail_logins(ErrorSpec::known(40613), Trigger::Always);
    regions
        .primary()
        .chaos()
        .set(Toxics::latency(latency, Duration::ZERO));
}
