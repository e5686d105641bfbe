//! The failover router's decisions, deterministically: scripted region services and
//! probes, no network, tokio's paused clock.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mssql_resilience::circuit_breaker::{
    BreakerState, CircuitBreakerConfig, CircuitBreakerHandle, WindowKind,
};
use mssql_resilience::classify::SqlServerClassifier;
use mssql_resilience::deadline::TimeoutBudget;
use mssql_resilience::error::{ErrorKind, Outcome};
use mssql_resilience::failover::probe::{ProbeFuture, Prober};
use mssql_resilience::failover::Grade;
use mssql_resilience::failover::{FailoverSettings, HealthPolicy, RegionSpec, Role, Router};
use mssql_resilience::observe::{Recorded, RecordingObserver};
use mssql_resilience::retry::budget::RetryBudget;
use mssql_resilience::sql::{SqlRequest, SqlResponse};
use mssql_resilience::{Consistency, Error, RequestContext};
use tokio::time::Instant;
use tower::util::BoxCloneSyncService;
use tower::ServiceExt;

/// How a fake region answers.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Ok,
    /// Fails with this outcome (I/O-like error).
    Fail(Outcome),
    /// Answers after this long.
    Slow(Duration),
    /// Refuses writes with 3906.
    ReadOnly,
    /// The first call hangs this long (a connection the network lost); later calls
    /// answer at once.
    FirstHangs(Duration),
    /// Waits for a connection that never comes: says the request is not sent, and hangs.
    NoConnection,
}

/// A fake region: a scripted service, a switchable probe, call counters.
struct Fake {
    mode: Arc<std::sync::Mutex<Mode>>,
    probe_ok: Arc<AtomicBool>,
    writable: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
    breaker: CircuitBreakerHandle,
}

struct FakeProber {
    ok: Arc<AtomicBool>,
    writable: Arc<AtomicBool>,
}

impl Prober for FakeProber {
    fn probe(&self) -> ProbeFuture<'_> {
        let (ok, writable) = (
            self.ok.load(Ordering::SeqCst),
            self.writable.load(Ordering::SeqCst),
        );
        Box::pin(async move {
            if ok {
                Ok(writable.into())
            } else {
                Err(Error::new(
                    ErrorKind::Io(std::io::ErrorKind::TimedOut),
                    Outcome::NotSent,
                ))
            }
        })
    }
}

impl Fake {
    fn new(name: &'static str) -> (Fake, RegionSpec) {
        let mode = Arc::new(std::sync::Mutex::new(Mode::Ok));
        let calls = Arc::new(AtomicUsize::new(0));
        let (probe_ok, writable) = (
            Arc::new(AtomicBool::new(true)),
            Arc::new(AtomicBool::new(true)),
        );
        let breaker = CircuitBreakerHandle::new(
            CircuitBreakerConfig::builder(name)
                .window(WindowKind::Count(4))
                .minimum_calls(4)
                .open_duration(Duration::from_secs(60))
                .open_jitter(0.0)
                .half_open_calls(1)
                .build()
                .unwrap(),
        );
        let service = {
            let (mode, calls) = (mode.clone(), calls.clone());
            tower::service_fn(move |req: SqlRequest| {
                let mode = *mode.lock().unwrap();
                let earlier = calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    match mode {
                        Mode::Ok => Ok(SqlResponse::default()),
                        Mode::Fail(outcome) => Err(Error::new(
                            ErrorKind::Io(std::io::ErrorKind::ConnectionReset),
                            outcome,
                        )),
                        Mode::Slow(d) => {
                            tokio::time::sleep(d).await;
                            Ok(SqlResponse::default())
                        }
                        Mode::ReadOnly
                            if req.context().intent() == mssql_resilience::Intent::Write =>
                        {
                            Err(Error::new(
                                ErrorKind::Server {
                                    number: 3906,
                                    class: 16,
                                    state: 1,
                                    message: "read-only".into(),
                                },
                                Outcome::Rejected,
                            ))
                        }
                        Mode::ReadOnly => Ok(SqlResponse::default()),
                        Mode::FirstHangs(d) => {
                            if earlier == 0 {
                                tokio::time::sleep(d).await;
                            }
                            Ok(SqlResponse::default())
                        }
                        Mode::NoConnection => {
                            if let Some(wire) = req.context().wire() {
                                wire.mark_not_sent();
                            }
                            std::future::pending().await
                        }
                    }
                }
            })
        };
        let breaker_layer =
            mssql_resilience::circuit_breaker::CircuitBreakerLayer::new(breaker.clone());
        let spec = RegionSpec {
            name: name.into(),
            role: Role::Auto,
            // A fixed attempt timeout far above every test's needs: the router's
            // per-attempt limits (when `attempt_timeout` is set) replace it.
            service: BoxCloneSyncService::new(tower::Layer::layer(
                &breaker_layer,
                tower::Layer::layer(
                    &TimeoutBudget::new(Duration::from_secs(60), Duration::from_secs(60))
                        .unwrap()
                        .attempt_layer(),
                    service,
                ),
            )),
            breaker: breaker.clone(),
            prober: Some(Arc::new(FakeProber {
                ok: probe_ok.clone(),
                writable: writable.clone(),
            })),
            pool: None,
            address: None,
            latency: Default::default(),
        };
        (
            Fake {
                mode,
                probe_ok,
                writable,
                calls,
                breaker,
            },
            spec,
        )
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

fn settings(hedge: Option<Duration>) -> FailoverSettings {
    FailoverSettings {
        probe_interval: Duration::from_secs(1),
        probe_timeout: Duration::from_millis(500),
        probe_jitter: 0.0,
        health: HealthPolicy {
            unhealthy_after: 1,
            healthy_after: 2,
            failback_hysteresis: Duration::from_secs(30),
            degraded_latency: Duration::from_millis(200),
        },
        hedge_delay: hedge,
        attempt_timeout: None,
        max_probe_timeout: Duration::from_secs(4),
    }
}

fn start(
    hedge: Option<Duration>,
    budget: Option<RetryBudget>,
) -> (Router, Fake, Fake, RecordingObserver) {
    start_with(settings(hedge), budget)
}

/// Latency-aware attempt limits on: 1 s at normal latency.
fn adaptive(hedge: Option<Duration>) -> FailoverSettings {
    FailoverSettings {
        attempt_timeout: Some(Duration::from_secs(1)),
        ..settings(hedge)
    }
}

fn start_with(
    settings: FailoverSettings,
    budget: Option<RetryBudget>,
) -> (Router, Fake, Fake, RecordingObserver) {
    let (west, west_spec) = Fake::new("west");
    let (north, north_spec) = Fake::new("north");
    let observer = RecordingObserver::new();
    let router = Router::start(
        vec![west_spec, north_spec],
        settings,
        budget,
        Arc::new(SqlServerClassifier::new()),
        Some(observer.shared()),
    );
    (router, west, north, observer)
}

fn read() -> SqlRequest {
    SqlRequest::query(RequestContext::read("r"), "SELECT 1", [])
}

fn write() -> SqlRequest {
    SqlRequest::execute(RequestContext::write("w"), "INSERT", [])
}

async fn call(router: &Router, req: SqlRequest) -> Result<SqlResponse, Error> {
    router.clone().oneshot(req).await
}

fn serving_reads(router: &Router) -> Option<String> {
    router
        .snapshot()
        .into_iter()
        .find(|r| r.serving_reads)
        .map(|r| r.name.to_string())
}

/// Lets the background probes run for `d` of virtual time.
async fn run_for(d: Duration) {
    tokio::time::sleep(d).await;
}

#[tokio::test(start_paused = true)]
async fn reads_fail_over_at_once_and_fail_back_only_after_the_hysteresis() {
    let (router, west, _north, observer) = start(None, None);
    run_for(Duration::from_millis(10)).await;
    assert_eq!(serving_reads(&router).as_deref(), Some("west"));

    west.probe_ok.store(false, Ordering::SeqCst);
    run_for(Duration::from_secs(1)).await;
    assert_eq!(
        serving_reads(&router).as_deref(),
        Some("north"),
        "one failed probe moves reads"
    );

    west.probe_ok.store(true, Ordering::SeqCst);
    let healed = Instant::now();
    // Two good probes make it healthy; then 30 s trouble-free before reads come back.
    run_for(Duration::from_secs(25)).await;
    call(&router, read()).await.unwrap();
    assert_eq!(
        serving_reads(&router).as_deref(),
        Some("north"),
        "still inside the hysteresis"
    );
    run_for(Duration::from_secs(10)).await;
    call(&router, read()).await.unwrap();
    assert_eq!(serving_reads(&router).as_deref(), Some("west"));
    assert!(healed.elapsed() >= Duration::from_secs(30));
    let switches: Vec<_> = observer
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Recorded::RegionSwitched {
                intent: mssql_resilience::Intent::Read,
                from,
                to,
            } => Some((from, to)),
            _ => None,
        })
        .collect();
    assert_eq!(
        switches,
        vec![
            (None, Some("west".into())),
            (Some("west".into()), Some("north".into())),
            (Some("north".into()), Some("west".into())),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_not_sent_failure_moves_on_even_with_an_empty_budget() {
    let empty = RetryBudget::new(Duration::from_secs(1), 0.0, 0.0).unwrap();
    let (router, west, north, _) = start(None, Some(empty.clone()));
    west.set(Mode::Fail(Outcome::NotSent));
    call(&router, read()).await.unwrap();
    assert_eq!((west.calls(), north.calls()), (1, 1));
    assert_eq!(empty.snapshot().refused_total, 0, "the hop was free");

    // An ambiguous failure would add load where it may already have run: it must pay.
    west.set(Mode::Fail(Outcome::Ambiguous));
    let err = call(&router, read()).await.unwrap_err();
    assert_eq!(err.outcome(), Outcome::Ambiguous);
    assert_eq!(north.calls(), 1, "no budget, no second attempt");
    assert_eq!(empty.snapshot().refused_total, 1);
}

#[tokio::test(start_paused = true)]
async fn a_transient_server_error_moves_a_read_but_not_a_write() {
    let (router, west, north, _) = start(None, None);
    // Rejected + retryable (the fake's I/O kind classifies as transient).
    west.set(Mode::Fail(Outcome::Rejected));
    call(&router, read()).await.unwrap();
    assert_eq!((west.calls(), north.calls()), (1, 1));
    let err = call(&router, write()).await.unwrap_err();
    assert_eq!(err.outcome(), Outcome::Rejected);
    assert_eq!(
        (west.calls(), north.calls()),
        (2, 1),
        "the write stays on its region"
    );
}

#[tokio::test(start_paused = true)]
async fn an_ambiguous_write_never_moves_to_another_region() {
    let (router, west, north, _) = start(None, None);
    west.set(Mode::Fail(Outcome::Ambiguous));
    let err = call(&router, write()).await.unwrap_err();
    assert_eq!(err.outcome(), Outcome::Ambiguous);
    assert_eq!((west.calls(), north.calls()), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn slow_reads_are_hedged_and_the_first_answer_wins() {
    let (router, west, north, observer) = start(Some(Duration::from_millis(250)), None);
    west.set(Mode::Slow(Duration::from_secs(10)));
    let start = Instant::now();
    call(&router, read()).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(250));
    assert_eq!((west.calls(), north.calls()), (1, 1));
    assert!(observer.events().contains(&Recorded::Hedged {
        from: "west".into(),
        to: "north".into()
    }));
    // A fast read is not hedged.
    west.set(Mode::Slow(Duration::from_millis(100)));
    call(&router, read()).await.unwrap();
    assert_eq!(north.calls(), 1);
    // Writes are never hedged.
    west.set(Mode::Slow(Duration::from_secs(1)));
    let start = Instant::now();
    call(&router, write()).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(north.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_hedge_that_loses_to_the_region_it_followed_does_not_delay_fail_back() {
    let (router, west, north, _observer) = start(Some(Duration::from_millis(250)), None);
    run_for(Duration::from_millis(10)).await;
    west.probe_ok.store(false, Ordering::SeqCst);
    run_for(Duration::from_secs(1)).await;
    assert_eq!(serving_reads(&router).as_deref(), Some("north"));
    west.probe_ok.store(true, Ordering::SeqCst);
    let healed = Instant::now();
    run_for(Duration::from_secs(10)).await;
    // A read on north that takes 300 ms is hedged to west at 250 ms; north answers first,
    // while west's attempt (100 ms) is still running. West had less time, not a slower
    // answer: its fail-back clock keeps running.
    north.set(Mode::Slow(Duration::from_millis(300)));
    west.set(Mode::Slow(Duration::from_millis(100)));
    call(&router, read()).await.unwrap();
    assert_eq!((west.calls(), north.calls()), (1, 1), "hedged to west");
    north.set(Mode::Ok);
    west.set(Mode::Ok);
    run_for((healed + Duration::from_secs(32)) - Instant::now()).await;
    call(&router, read()).await.unwrap();
    assert_eq!(
        serving_reads(&router).as_deref(),
        Some("west"),
        "back on west 30 s after it healed"
    );
}

#[tokio::test(start_paused = true)]
async fn a_read_only_refusal_marks_the_region_and_writes_follow_the_probes() {
    let (router, west, north, _) = start(None, None);
    north.writable.store(false, Ordering::SeqCst);
    run_for(Duration::from_millis(10)).await;
    // The flip: west refuses writes, north becomes writable (its probe will say so).
    west.set(Mode::ReadOnly);
    west.writable.store(false, Ordering::SeqCst);
    north.writable.store(true, Ordering::SeqCst);
    let err = call(&router, write()).await.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::NoRegionAvailable { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("west"), "{err}");
    // The refusal nudged the probes: the next write goes to north.
    run_for(Duration::from_millis(10)).await;
    call(&router, write()).await.unwrap();
    assert_eq!(north.calls(), 1);
    let west_snapshot = router
        .snapshot()
        .into_iter()
        .find(|r| r.name == "west")
        .unwrap();
    assert!(!west_snapshot.writable);
}

#[tokio::test(start_paused = true)]
async fn no_eligible_region_fails_at_once_naming_each_state() {
    let (router, west, north, _) = start(None, None);
    west.breaker.isolate();
    north.probe_ok.store(false, Ordering::SeqCst);
    run_for(Duration::from_secs(1)).await;
    // Last resort: when no region is healthy, one whose breaker lets calls through is
    // still tried (probes can be wrong; the breaker bounds the cost).
    call(&router, read()).await.unwrap();
    assert_eq!(north.calls(), 1);
    north.breaker.isolate();
    let start = Instant::now();
    let err = call(&router, read()).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(err.outcome(), Outcome::NotSent);
    let text = err.to_string();
    assert!(text.contains("west: healthy, isolated"), "{text}");
    // Its probe failed, but the last-resort read it answered since lifted it to degraded.
    assert!(text.contains("north: degraded, isolated"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn a_good_probe_lets_an_open_breaker_try_at_once() {
    let (router, west, _north, _) = start(None, None);
    west.set(Mode::Fail(Outcome::NotSent));
    for _ in 0..4 {
        let _ = call(&router, read()).await;
    }
    assert_eq!(west.breaker.state(), BreakerState::Open);
    assert!(!west.breaker.is_call_permitted(), "open for 60 s");
    // The region recovers; its probe succeeds within a probe interval.
    west.set(Mode::Ok);
    run_for(Duration::from_secs(1)).await;
    assert!(
        west.breaker.is_call_permitted(),
        "the probe ended the open period early"
    );
}

/// A read (or a write) whose caller waits `budget` from now.
fn within(intent: mssql_resilience::Intent, budget: Duration) -> SqlRequest {
    let deadline = Instant::now() + budget;
    match intent {
        mssql_resilience::Intent::Read => SqlRequest::query(
            RequestContext::read("r").with_deadline(deadline),
            "SELECT 1",
            [],
        ),
        mssql_resilience::Intent::Write => SqlRequest::execute(
            RequestContext::write("w").with_deadline(deadline),
            "INSERT",
            [],
        ),
    }
}

fn region_now(router: &Router, name: &str) -> mssql_resilience::failover::RegionSnapshot {
    router
        .snapshot()
        .into_iter()
        .find(|r| r.name == name)
        .unwrap()
}

fn grade(router: &Router, name: &str) -> Grade {
    region_now(router, name).grade
}

/// West is the only writable region and its probes say it is down.
async fn start_with_the_only_writable_region_down() -> (Router, Fake, Fake) {
    let (router, west, north, _) = start(None, None);
    north.writable.store(false, Ordering::SeqCst);
    run_for(Duration::from_millis(10)).await;
    west.probe_ok.store(false, Ordering::SeqCst);
    run_for(Duration::from_secs(1)).await;
    assert_eq!(grade(&router, "west"), Grade::Down);
    (router, west, north)
}

#[tokio::test(start_paused = true)]
async fn with_nowhere_better_to_go_a_slow_region_gets_the_whole_budget() {
    let (router, west, north, _) = start_with(adaptive(None), None);
    north.writable.store(false, Ordering::SeqCst);
    run_for(Duration::from_millis(10)).await;
    west.set(Mode::Slow(Duration::from_secs(3)));
    // A read has somewhere better to go: west's attempt is cut at 1 s and north answers.
    let r = within(mssql_resilience::Intent::Read, Duration::from_secs(5));
    let start = Instant::now();
    call(&router, r).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(north.calls(), 1);
    // The only writable region: its attempt may use the whole 5 s, so the slow write
    // succeeds (a fixed 1 s attempt timeout would have failed it).
    let w = within(mssql_resilience::Intent::Write, Duration::from_secs(5));
    let start = Instant::now();
    call(&router, w).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn attempt_limits_grow_with_the_regions_latency() {
    let (router, west, north, _) = start_with(adaptive(None), None);
    run_for(Duration::from_millis(10)).await;
    // West answers in 600 ms for a while: its estimate grows past the 1 s floor...
    west.set(Mode::Slow(Duration::from_millis(600)));
    for _ in 0..5 {
        call(&router, read()).await.unwrap();
    }
    // ...so a 1.5 s answer is waited for instead of failed over.
    west.set(Mode::Slow(Duration::from_millis(1500)));
    let r = within(mssql_resilience::Intent::Read, Duration::from_secs(5));
    call(&router, r).await.unwrap();
    assert_eq!(north.calls(), 0, "west's latency-aware limit covered 1.5 s");
}

#[tokio::test(start_paused = true)]
async fn latest_reads_never_reach_a_replica_and_stale_reads_are_counted() {
    let (router, west, north, observer) = start(Some(Duration::from_millis(250)), None);
    north.writable.store(false, Ordering::SeqCst);
    run_for(Duration::from_millis(10)).await;
    west.set(Mode::Slow(Duration::from_millis(400)));
    let latest = SqlRequest::query(
        RequestContext::read("r").consistency(Consistency::Latest),
        "SELECT 1",
        [],
    );
    call(&router, latest).await.unwrap();
    assert_eq!(north.calls(), 0, "no hedge to the replica");
    // The default allows stale reads: the slow read is hedged to the replica, and counted.
    call(&router, read()).await.unwrap();
    assert_eq!(north.calls(), 1);
    assert!(observer
        .events()
        .iter()
        .any(|e| matches!(e, Recorded::StaleRead { region } if region == "north")));
}

#[tokio::test(start_paused = true)]
async fn turning_hedging_off_keeps_failover() {
    let (router, west, north, observer) = start(Some(Duration::from_millis(250)), None);
    run_for(Duration::from_millis(10)).await;
    west.set(Mode::Slow(Duration::from_millis(400)));
    let unhedged = || SqlRequest::query(RequestContext::read("r").hedge(false), "SELECT 1", []);
    call(&router, unhedged()).await.unwrap();
    assert_eq!(north.calls(), 0, "no hedge");
    assert!(!observer
        .events()
        .iter()
        .any(|e| matches!(e, Recorded::Hedged { .. })));
    west.set(Mode::Fail(Outcome::NotSent));
    call(&router, unhedged()).await.unwrap();
    assert_eq!(north.calls(), 1, "a failure still moves the read on");
}

#[tokio::test(start_paused = true)]
async fn writes_return_to_the_primary_at_its_first_good_probe() {
    let (router, west, _north) = start_with_the_only_writable_region_down().await;
    assert_eq!(serving_reads(&router).as_deref(), Some("north"));
    west.probe_ok.store(true, Ordering::SeqCst);
    // One probe interval: one good probe, and writes are back (reads keep the hysteresis).
    run_for(Duration::from_secs(1)).await;
    assert_eq!(grade(&router, "west"), Grade::Degraded);
    let west_now = region_now(&router, "west");
    assert!(west_now.serving_writes);
    assert!(!west_now.serving_reads);
    call(&router, write()).await.unwrap();
    assert_eq!(west.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_down_region_still_takes_writes_as_a_last_resort_and_its_answer_lifts_it() {
    let (router, _west, _north) = start_with_the_only_writable_region_down().await;
    // The probe is wrong (say, its own connection is stuck): live writes still succeed.
    call(&router, write()).await.unwrap();
    assert_eq!(grade(&router, "west"), Grade::Degraded);
}

#[tokio::test(start_paused = true)]
async fn an_idempotent_request_on_its_last_region_gets_a_second_chance() {
    let (router, west, north, observer) = start_with(adaptive(None), None);
    north.writable.store(false, Ordering::SeqCst);
    run_for(Duration::from_millis(10)).await;
    let latest = |budget: Duration| {
        SqlRequest::query(
            RequestContext::read("r")
                .consistency(Consistency::Latest)
                .with_deadline(Instant::now() + budget),
            "SELECT 1",
            [],
        )
    };
    // West is the only region a latest-data read may use. Its first attempt hangs (a
    // connection the network silently lost): at the 1 s bound an attempt with somewhere
    // else to go would have had, a second attempt on west races it and answers.
    west.set(Mode::FirstHangs(Duration::from_secs(60)));
    let start = Instant::now();
    call(&router, latest(Duration::from_secs(5))).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!((west.calls(), north.calls()), (2, 0));
    assert!(observer.events().iter().any(|e| matches!(
        e,
        Recorded::Hedged { from, to } if from == "west" && to == "west"
    )));
    // A slow answer is still an answer: the first attempt keeps its whole budget and
    // wins at 1.5 s although the second one started at 1 s.
    west.set(Mode::Slow(Duration::from_millis(1500)));
    let start = Instant::now();
    call(&router, latest(Duration::from_secs(5))).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(1500));
    assert_eq!(west.calls(), 4);
    // A write is not idempotent: no second attempt, whatever the wait.
    west.set(Mode::Slow(Duration::from_secs(60)));
    let calls = west.calls();
    let w = within(mssql_resilience::Intent::Write, Duration::from_secs(3));
    assert!(call(&router, w).await.is_err());
    assert_eq!(west.calls(), calls + 1);
}

#[tokio::test(start_paused = true)]
async fn a_request_still_waiting_for_a_connection_gets_no_twin() {
    let (router, west, north, observer) = start_with(adaptive(None), None);
    north.writable.store(false, Ordering::SeqCst);
    run_for(Duration::from_millis(10)).await;
    // West is the only region a latest-data read may use, and its attempt waits for a
    // connection that never comes (the region went dark). A second attempt would wait
    // beside it for the same connections, and count twice against the region's bound on
    // waiting requests: none is made, however long the wait.
    west.set(Mode::NoConnection);
    let read = SqlRequest::query(
        RequestContext::read("r")
            .consistency(Consistency::Latest)
            .with_deadline(Instant::now() + Duration::from_secs(5)),
        "SELECT 1",
        [],
    );
    let err = call(&router, read).await.expect_err("nothing answered");
    assert_eq!(err.outcome(), Outcome::NotSent, "{err}");
    assert_eq!(west.calls(), 1, "one attempt, no twin");
    assert!(!observer
        .events()
        .iter()
        .any(|e| matches!(e, Recorded::Hedged { .. })));
}
