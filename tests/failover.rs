//! Regional failover with the real tiberius client over loopback TCP: testkit servers as
//! regions, chaos proxies in front. Real time (the network is real), with generous
//! bounds: assertions are about outcomes and "within the deadline", never machine speed.

mod support;

use std::time::Duration;

use mssql_resilience::circuit_breaker::BreakerState;
use mssql_resilience::error::{ErrorKind, RetryStop};
use mssql_resilience::failover::RegionSnapshot;
use mssql_resilience::observe::{Recorded, RecordingObserver};
use mssql_resilience::{Intent, RequestContext, SqlRequest, Stack};
use mssql_testkit::chaos::{Mode, Phase, Schedule, Toxics};
use mssql_testkit::tds::{ErrorSpec, Trigger};
use support::*;
use tokio::time::Instant;

fn serving_reads(health: &[RegionSnapshot]) -> Option<String> {
    health
        .iter()
        .find(|r| r.serving_reads)
        .map(|r| r.name.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_move_to_the_secondary_when_the_primary_is_black_holed() {
    let regions = testkit().await;
    let config = regions.config("", 2, |_| {});
    let stack = Stack::builder(config).build().unwrap();
    assert!(stack.wait_for_probes(Duration::from_secs(5)).await);
    assert_eq!(scalar(&stack, "SELECT 1").await, 1);
    let primary_batches = regions.primary().server.counters();

    regions.primary().chaos().set(Toxics::blackhole());
    let deadline = stack_deadline();
    for _ in 0..20 {
        let start = Instant::now();
        let value = scalar(&stack, "SELECT 2").await;
        assert_eq!(value, 2);
        assert!(
            start.elapsed() <= deadline,
            "a call took {:?}",
            start.elapsed()
        );
    }
    eventually(
        "reads served by northeurope",
        Duration::from_secs(5),
        || serving_reads(&stack.health()).as_deref() == Some("northeurope"),
    )
    .await;
    // Once failed over, nothing more reaches the black-holed primary's server.
    let before = regions.primary().server.counters();
    for _ in 0..5 {
        assert_eq!(scalar(&stack, "SELECT 3").await, 3);
    }
    assert_eq!(regions.primary().server.counters().batches, before.batches);
    assert!(before.logins >= primary_batches.logins);
}

/// A one-region stack straight at `region` (for setup and checks).
fn single_region(regions: &Backend, region: &Region) -> Stack {
    let port = region.proxy.addr().port();
    let config = regions.config("", 1, |c| c.regions[0].port = port);
    Stack::builder(config).probes(false).build().unwrap()
}

fn stack_deadline() -> Duration {
    // BASE's total budget (3 s) plus scheduling slack.
    Duration::from_millis(3_500)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_error_40613_on_the_primary_fails_over() {
    let regions = testkit().await;
    let config = regions.config("", 2, |_| {});
    // Every login to the primary fails the way Azure SQL fails during reconfiguration.
    regions
        .primary()
        .faults()
        .fail_logins(ErrorSpec::database_unavailable(DATABASE), Trigger::Always);
    let observer = RecordingObserver::new();
    // No probes: a probe that saw the failing login first would send reads straight to the
    // secondary, and the failover under test would not happen.
    let stack = Stack::builder(config)
        .observer(observer.shared())
        .probes(false)
        .build()
        .unwrap();
    for _ in 0..5 {
        assert_eq!(scalar(&stack, "SELECT 1").await, 1);
    }
    assert!(regions.primary().server.counters().failed_logins >= 1);
    assert!(observer.events().iter().any(
        |e| matches!(e, Recorded::FailoverAttempt { from, to, intent: Intent::Read }
            if from == "westeurope" && to == "northeurope")
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_redirects_are_followed_and_counted() {
    let regions = testkit().await;
    let target = regions.secondary().server.addr();
    // The primary's "gateway" redirects every login to the secondary's server.
    regions
        .primary()
        .faults()
        .redirect_logins("127.0.0.1", target.port(), Trigger::Always);
    let config = regions.config("", 1, |_| {});
    let observer = RecordingObserver::new();
    let stack = Stack::builder(config)
        .observer(observer.shared())
        .probes(false)
        .build()
        .unwrap();
    assert_eq!(scalar(&stack, "SELECT 5").await, 5);
    let (_, pool) = &stack.pools()[0];
    assert_eq!(pool.manager_stats().redirects(), 1);
    assert!(
        regions.secondary().server.counters().batches + regions.secondary().server.counters().rpcs
            >= 1
    );
    assert!(observer.events().contains(&Recorded::RedirectFollowed {
        region: "westeurope".into()
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_fails_fast_with_a_clear_error() {
    let backend = backend().await;
    let config = backend.config("", 1, |c| {
        c.pool.max_size = 1;
        c.retry.max_attempts = 1;
        c.timeouts.total = Duration::from_secs(10);
        c.timeouts.attempt = Duration::from_secs(5);
    });
    let stack = Stack::builder(config).probes(false).build().unwrap();
    // Hold the only connection with a slow statement.
    let holder = {
        let stack = stack.clone();
        tokio::spawn(async move {
            stack
                .call(read("hold", "WAITFOR DELAY '00:00:02'; SELECT 1"))
                .await
        })
    };
    eventually("the connection is taken", Duration::from_secs(5), || {
        stack.pools()[0].1.state().idle_connections == 0
            && stack.pools()[0].1.state().connections == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    // The caller has 300 ms left of its own budget: the checkout must not wait longer.
    let starved = mssql_resilience::sql::SqlRequest::query(
        mssql_resilience::RequestContext::read("starved")
            .with_deadline(start + Duration::from_millis(300)),
        "SELECT 1",
        [],
    );
    let err = stack.call(starved).await.unwrap_err();
    let waited = start.elapsed();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::Timeout { .. } | ErrorKind::DeadlineExceeded
        ),
        "{err}"
    );
    assert_eq!(err.outcome(), mssql_resilience::Outcome::NotSent, "{err}");
    assert!(waited >= Duration::from_millis(300), "waited {waited:?}");
    assert!(waited <= Duration::from_millis(800), "waited {waited:?}");
    assert!(
        err.to_string().contains("pool_checkout") || err.to_string().contains("deadline"),
        "{err}"
    );
    // The checkout the caller's budget cut short is counted as timed out and no longer
    // pending (bb8's own statistics would show it pending forever).
    let stats = stack.pools()[0].1.checkout_stats();
    assert_eq!(stats.timed_out, 1, "{stats:?}");
    assert_eq!(stats.pending, 0, "{stats:?}");
    holder.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_primary_does_not_make_traffic_flap() {
    let regions = testkit().await;
    let config = regions.config("", 2, |c| {
        c.failover.failback_hysteresis = Duration::from_secs(30);
    });
    let stack = Stack::builder(config).build().unwrap();
    assert!(stack.wait_for_probes(Duration::from_secs(5)).await);
    assert_eq!(
        serving_reads(&stack.health()).as_deref(),
        Some("westeurope")
    );
    // Black-hole / ok / black-hole / ok … every 600 ms for 6 s.
    let phases: Vec<Phase> = (0..10)
        .map(|i| {
            let from = Duration::from_millis(600 * i);
            let to = from + Duration::from_millis(600);
            Phase::new(
                from,
                to,
                if i % 2 == 0 {
                    Toxics::blackhole()
                } else {
                    Toxics::ok()
                },
            )
        })
        .collect();
    let mut seen = vec![serving_reads(&stack.health())];
    let _schedule = regions
        .primary()
        .chaos()
        .run_schedule(Schedule::new(phases).unwrap());
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(7) {
        assert_eq!(scalar(&stack, "SELECT 1").await, 1);
        let serving = serving_reads(&stack.health());
        if seen.last() != Some(&serving) {
            seen.push(serving);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        seen,
        vec![
            Some("westeurope".to_owned()),
            Some("northeurope".to_owned())
        ],
        "traffic moved once and stayed put"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_fails_back_after_the_hysteresis() {
    let regions = testkit().await;
    let config = regions.config("", 2, |c| {
        c.failover.failback_hysteresis = Duration::from_secs(1);
    });
    let stack = Stack::builder(config).build().unwrap();
    assert!(stack.wait_for_probes(Duration::from_secs(5)).await);
    regions.primary().chaos().set(Toxics::blackhole());
    eventually("failed over", Duration::from_secs(5), || {
        let _ = &stack;
        serving_reads(&stack.health()).as_deref() == Some("northeurope")
    })
    .await;
    regions.primary().chaos().set(Toxics::ok());
    let healed = Instant::now();
    let mut back_at = None;
    while healed.elapsed() < Duration::from_secs(8) {
        assert_eq!(scalar(&stack, "SELECT 1").await, 1);
        if serving_reads(&stack.health()).as_deref() == Some("westeurope") {
            back_at = Some(healed.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let back_at = back_at.expect("traffic failed back");
    assert!(
        back_at >= Duration::from_secs(1),
        "failed back after only {back_at:?}"
    );
}

/// Two regions as a failover group before a flip: the table `orders` in both (as
/// geo-replication would ensure), the secondary read-only, and a stack whose probes
/// have seen both.
async fn a_failover_group_with_orders() -> (Backend, Stack) {
    let regions = testkit().await;
    let ddl = "CREATE TABLE orders (id INT NOT NULL PRIMARY KEY, note NVARCHAR(100) NULL)";
    for region in [regions.primary(), regions.secondary()] {
        single_region(&regions, region)
            .call(exec("ddl", ddl, vec![]))
            .await
            .unwrap();
    }
    regions.secondary().faults().set_read_only(true);
    let config = regions.config("", 2, |_| {});
    let stack = Stack::builder(config).build().unwrap();
    assert!(stack.wait_for_probes(Duration::from_secs(5)).await);
    (regions, stack)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_follow_a_failover_group_flip_and_read_only_regions_take_none() {
    let (regions, stack) = a_failover_group_with_orders().await;
    let (primary, secondary) = (regions.primary(), regions.secondary());

    let insert = |id: i32| {
        exec(
            "insert_order",
            "INSERT INTO orders (id, note) VALUES (@P1, @P2)",
            vec![id.into(), "x".into()],
        )
    };
    for id in 0..5 {
        stack.call(insert(id)).await.unwrap();
    }
    // The failover-group flip: the old primary turns read-only, the secondary writable.
    primary.faults().set_read_only(true);
    secondary.faults().set_read_only(false);
    let flip = Instant::now();
    let mut failures = 0;
    let mut id = 5;
    while id < 15 {
        match stack.call(insert(id)).await {
            Ok(_) => id += 1,
            Err(e) => {
                failures += 1;
                assert!(
                    matches!(e.kind(), ErrorKind::NoRegionAvailable { .. })
                        || e.server_number() == Some(3906),
                    "{e}"
                );
                assert!(
                    flip.elapsed() < Duration::from_secs(3),
                    "writes did not follow: {e}"
                );
            }
        }
    }
    assert!(failures <= 3, "{failures} failed writes during the flip");
    let count = "SELECT COUNT(*) FROM orders";
    assert_eq!(
        scalar(&single_region(&regions, primary), count).await,
        5,
        "the read-only old primary took no write"
    );
    assert_eq!(
        scalar(&single_region(&regions, secondary), count).await,
        10,
        "every later write went to the new primary"
    );
    let health = stack.health();
    assert!(health
        .iter()
        .any(|r| r.name == "northeurope" && r.writable && r.serving_writes));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_issued_mid_flip_waits_for_the_new_primary() {
    let (regions, stack) = a_failover_group_with_orders().await;
    let (primary, secondary) = (regions.primary(), regions.secondary());
    // Mid-flip: the old primary has turned read-only, the new one is not writable yet,
    // and the probes have seen it (no region is writable).
    primary.faults().set_read_only(true);
    eventually(
        "the probes see no writable region",
        Duration::from_secs(30),
        || !stack.health().iter().any(|r| r.writable),
    )
    .await;
    let insert = exec(
        "insert",
        "INSERT INTO orders (id, note) VALUES (1, NULL)",
        vec![],
    );
    let write = tokio::spawn({
        let stack = stack.clone();
        async move { stack.call(insert).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    secondary.faults().set_read_only(false);
    // Turned away until the probes find the new primary writable, then written there:
    // the write had most of its budget left, and nothing was sent before.
    write
        .await
        .unwrap()
        .expect("the write waits for the new primary");
    let count = "SELECT COUNT(*) FROM orders";
    assert_eq!(scalar(&single_region(&regions, secondary), count).await, 1);
    assert_eq!(scalar(&single_region(&regions, primary), count).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_writable_region_is_polled_until_the_deadline_and_says_so() {
    let regions = testkit().await;
    regions.primary().faults().set_read_only(true);
    regions.secondary().faults().set_read_only(true);
    let config = regions.config("", 2, |_| {});
    let stack = Stack::builder(config).build().unwrap();
    assert!(stack.wait_for_probes(Duration::from_secs(5)).await);
    let write = |budget| {
        let context = RequestContext::write("insert").budget(budget);
        SqlRequest::execute(context, "INSERT INTO nowhere (a) VALUES (1)", vec![])
    };
    // Turned away by the router (nothing sent): tried again, without using attempts,
    // until the next try would not fit in its budget — a failover group mid-flip gets
    // the whole budget to make a region writable.
    let err = stack
        .call(write(Duration::from_millis(400)))
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::NoRegionAvailable { .. }),
        "{err}"
    );
    assert!(err.is_turned_away(), "{err}");
    assert!(
        matches!(
            err.retry_stop(),
            Some(RetryStop::DeadlineWouldBeExceeded { .. })
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("no writable region can take this write"),
        "{err}"
    );
    // With polling off it fails within its attempts, as any not-sent failure does.
    let config = regions.config("", 2, |c| c.retry.max_polling = 0);
    let stack = Stack::builder(config).build().unwrap();
    assert!(stack.wait_for_probes(Duration::from_secs(5)).await);
    let err = stack
        .call(write(Duration::from_secs(60)))
        .await
        .unwrap_err();
    assert_eq!(err.retry_stop(), Some(RetryStop::MaxAttempts), "{err}");
    assert_eq!(err.attempts(), 3);
    // Reads still work.
    assert_eq!(scalar(&stack, "SELECT 1").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_opens_on_a_dead_region_which_is_still_tried_when_it_is_the_only_one() {
    let regions = testkit().await;
    let config = regions.config("", 1, |c| c.retry.max_attempts = 1);
    let stack = Stack::builder(config).probes(false).build().unwrap();
    assert_eq!(scalar(&stack, "SELECT 1").await, 1);
    regions.primary().chaos().set(Toxics::reset());
    for _ in 0..6 {
        let _ = stack.call(read("r", "SELECT 1")).await;
    }
    let breaker = stack.router().breaker("westeurope").unwrap();
    assert_eq!(breaker.state(), BreakerState::Open);
    // Nowhere better to go: the request still reaches the region (failing fast would be
    // failing for nothing) and reports the region's own failure, not "breaker open".
    let err = stack.call(read("r", "SELECT 1")).await.unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Io(_)), "{err}");
    assert_eq!(breaker.state(), BreakerState::Open, "not recorded");
    // It answers again: the first answer lets the breaker try it at once.
    regions.primary().chaos().set(Toxics::ok());
    assert_eq!(scalar(&stack, "SELECT 1").await, 1);
    assert!(breaker.is_call_permitted(), "half-open at once");
    let _ = Mode::Ok;
}

/// Two regions, hedging after `hedge_delay`, a 2 s attempt timeout, no probes (they would
/// see a slow primary too; these tests are about the request path).
async fn hedging_stack(hedge_delay: Option<Duration>) -> (Backend, Stack, RecordingObserver) {
    let regions = testkit().await;
    let config = regions.config("", 2, |c| {
        c.failover.hedge_delay = hedge_delay;
        c.timeouts.attempt = Duration::from_secs(2);
    });
    let observer = RecordingObserver::new();
    let stack = Stack::builder(config)
        .observer(observer.shared())
        .probes(false)
        .build()
        .unwrap();
    (regions, stack, observer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_read_is_hedged_to_the_next_region() {
    let (regions, stack, observer) = hedging_stack(Some(Duration::from_millis(100))).await;

    // The primary answers, but only after 1.5 s.
    regions
        .primary()
        .faults()
        .set_query_delay(Duration::from_millis(1_500));
    let start = Instant::now();
    assert_eq!(scalar(&stack, "SELECT 7").await, 7);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(100),
        "answered before the hedge: {took:?}"
    );
    assert!(
        took < Duration::from_millis(1_500),
        "the hedge did not win: {took:?}"
    );
    assert!(observer.events().contains(&Recorded::Hedged {
        from: "westeurope".into(),
        to: "northeurope".into()
    }));
    // Writes are never hedged: they wait for the primary.
    let start = Instant::now();
    stack
        .call(exec("ddl", "CREATE TABLE h (a INT)", vec![]))
        .await
        .unwrap();
    assert!(start.elapsed() >= Duration::from_millis(1_500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hedging_can_be_turned_off() {
    let (regions, stack, observer) = hedging_stack(None).await;

    regions
        .primary()
        .faults()
        .set_query_delay(Duration::from_millis(600));
    let start = Instant::now();
    assert_eq!(scalar(&stack, "SELECT 8").await, 8);
    assert!(start.elapsed() >= Duration::from_millis(600));
    assert!(!observer
        .events()
        .iter()
        .any(|e| matches!(e, Recorded::Hedged { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_query_asks_for_a_longer_budget_from_the_same_stack() {
    let regions = testkit().await;
    let port = regions.primary().proxy.addr().port();
    let config = regions.config("", 1, |c| {
        c.regions[0].port = port;
        c.timeouts.max_total = Some(Duration::from_secs(10));
    });
    let stack = Stack::builder(config).probes(false).build().unwrap();
    assert_eq!(scalar(&stack, "SELECT 1").await, 1);
    // The query now takes longer than the default 3 s budget.
    regions
        .primary()
        .faults()
        .set_query_delay(Duration::from_millis(3_500));
    let err = stack.call(read("report", "SELECT 2")).await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    // The same stack, asked for 8 s on this one request, runs it.
    let report = mssql_resilience::sql::SqlRequest::query(
        mssql_resilience::RequestContext::read("report").budget(Duration::from_secs(8)),
        "SELECT 3",
        [],
    );
    let response = stack
        .call(report)
        .await
        .expect("the longer budget is honoured");
    assert_eq!(response.scalar().and_then(|v| v.as_i64()), Some(3));
}
