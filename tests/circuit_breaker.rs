//! Circuit breaker: every transition, both windows, the minimum-calls rule, probes,
//! manual control and subscriptions. Paused clock throughout.

mod common;

use std::time::Duration;

use common::*;
use mssql_resilience::circuit_breaker::{
    BreakerState, CircuitBreaker, CircuitBreakerConfig, CircuitBreakerConfigBuilder,
    CircuitBreakerHandle, WindowKind,
};
use mssql_resilience::error::ErrorKind;
use mssql_resilience::observe::{Recorded, RecordingObserver};
use mssql_resilience::{Error, Outcome, WithContext};
use tokio::time::Instant;
use tower::{Service, ServiceExt};

fn config() -> CircuitBreakerConfigBuilder {
    CircuitBreakerConfig::builder("westeurope")
        .window(WindowKind::Count(10))
        .minimum_calls(4)
        .failure_rate_threshold(0.5)
        .open_duration(Duration::from_secs(5))
        .open_jitter(0.0)
        .half_open_calls(2)
        .seed(1)
}

fn breaker(
    builder: CircuitBreakerConfigBuilder,
    script: &Script,
) -> (CircuitBreaker<Script>, CircuitBreakerHandle) {
    let handle = CircuitBreakerHandle::new(builder.build().unwrap());
    (CircuitBreaker::new(script.clone(), handle.clone()), handle)
}

async fn call<S>(svc: &mut S) -> Result<u32, Error>
where
    S: Service<WithContext<u32>, Response = u32, Error = Error>,
{
    svc.ready().await?.call(read()).await
}

/// A script of `n` failures followed by successes.
fn failing(n: usize) -> Script {
    let mut steps: Vec<Step> = (0..n).map(|_| Step::Err(server(40613, 20))).collect();
    steps.push(Step::Ok(1));
    Script::new(steps)
}

#[tokio::test(start_paused = true)]
async fn opens_when_the_failure_rate_reaches_the_threshold() {
    let script = failing(2);
    let (mut svc, handle) = breaker(config(), &script);
    let mut transitions = handle.subscribe();
    call(&mut svc).await.unwrap_err();
    call(&mut svc).await.unwrap_err();
    call(&mut svc).await.unwrap();
    assert_eq!(
        handle.state(),
        BreakerState::Closed,
        "3 calls < minimum_calls"
    );
    call(&mut svc).await.unwrap();
    // 2 failures of 4 calls = 50 %.
    assert_eq!(handle.state(), BreakerState::Open);
    let t = transitions.recv().await.unwrap();
    assert_eq!(
        (t.from, t.to, t.name.as_ref()),
        (BreakerState::Closed, BreakerState::Open, "westeurope")
    );
}

#[tokio::test(start_paused = true)]
async fn stays_closed_below_the_threshold_or_the_minimum() {
    let script = failing(3);
    let (mut svc, handle) = breaker(
        config().minimum_calls(10).failure_rate_threshold(0.9),
        &script,
    );
    for _ in 0..9 {
        let _ = call(&mut svc).await;
    }
    assert_eq!(handle.state(), BreakerState::Closed);
    assert_eq!(handle.snapshot().window.calls, 9);
}

#[tokio::test(start_paused = true)]
async fn open_rejects_fast_with_a_not_sent_error_naming_the_breaker() {
    let script = failing(100);
    let observer = RecordingObserver::new();
    let handle = CircuitBreakerHandle::with_parts(
        config().build().unwrap(),
        std::sync::Arc::new(mssql_resilience::classify::SqlServerClassifier::new()),
        Some(observer.shared()),
    );
    let mut svc = CircuitBreaker::new(script.clone(), handle.clone());
    for _ in 0..4 {
        let _ = call(&mut svc).await;
    }
    assert_eq!(handle.state(), BreakerState::Open);
    let err = call(&mut svc).await.unwrap_err();
    assert_eq!(
        script.calls(),
        4,
        "the rejected call never reached the service"
    );
    assert_eq!(err.outcome(), Outcome::NotSent);
    assert_eq!(
        err.kind(),
        &ErrorKind::CircuitOpen {
            name: "westeurope".into()
        }
    );
    assert!(err.to_string().contains("westeurope"));
    assert_eq!(handle.snapshot().rejected_total, 1);
    assert!(observer.events().contains(&Recorded::BreakerRejected {
        name: "westeurope".into()
    }));
}

#[tokio::test(start_paused = true)]
async fn half_opens_after_the_open_duration_and_closes_after_n_successes() {
    let script = failing(4);
    let (mut svc, handle) = breaker(config(), &script);
    for _ in 0..4 {
        let _ = call(&mut svc).await;
    }
    assert_eq!(handle.state(), BreakerState::Open);
    tokio::time::advance(Duration::from_millis(4999)).await;
    call(&mut svc).await.unwrap_err();
    assert_eq!(
        script.calls(),
        4,
        "still open 1 ms before the open duration ends"
    );
    tokio::time::advance(Duration::from_millis(1)).await;
    call(&mut svc).await.unwrap();
    assert_eq!(handle.state(), BreakerState::HalfOpen);
    call(&mut svc).await.unwrap();
    assert_eq!(handle.state(), BreakerState::Closed);
    assert_eq!(
        handle.snapshot().window.calls,
        0,
        "closing clears the window"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens_for_longer() {
    let script = failing(5);
    let (mut svc, handle) = breaker(config().open_backoff(2.0, Duration::from_secs(60)), &script);
    for _ in 0..4 {
        let _ = call(&mut svc).await;
    }
    let first_until = handle.snapshot().open_until.unwrap();
    assert_eq!(first_until - Instant::now(), Duration::from_secs(5));
    tokio::time::advance(Duration::from_secs(5)).await;
    call(&mut svc).await.unwrap_err(); // the probe fails
    assert_eq!(handle.state(), BreakerState::Open);
    let snapshot = handle.snapshot();
    assert_eq!(snapshot.consecutive_opens, 2);
    assert_eq!(
        snapshot.open_until.unwrap() - Instant::now(),
        Duration::from_secs(10)
    );
}

#[tokio::test(start_paused = true)]
async fn probes_beyond_the_permitted_number_are_rejected() {
    let script = Script::new([
        Step::Err(server(40613, 20)),
        Step::Err(server(40613, 20)),
        Step::Err(server(40613, 20)),
        Step::Err(server(40613, 20)),
        Step::After(Duration::from_secs(1), Box::new(Step::Ok(1))),
    ]);
    let (mut svc, handle) = breaker(config(), &script);
    for _ in 0..4 {
        let _ = call(&mut svc).await;
    }
    tokio::time::advance(Duration::from_secs(5)).await;
    // Two slow probes in flight, then a third call.
    let p1 = tokio::spawn(svc.clone().oneshot(read()));
    let p2 = tokio::spawn(svc.clone().oneshot(read()));
    tokio::task::yield_now().await;
    let third = call(&mut svc).await.unwrap_err();
    assert_eq!(
        third.kind(),
        &ErrorKind::CircuitOpen {
            name: "westeurope".into()
        }
    );
    assert_eq!(handle.state(), BreakerState::HalfOpen);
    p1.await.unwrap().unwrap();
    p2.await.unwrap().unwrap();
    assert_eq!(handle.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn an_abandoned_probe_gives_its_slot_back() {
    let script = Script::new([
        Step::Err(server(40613, 20)),
        Step::Err(server(40613, 20)),
        Step::Err(server(40613, 20)),
        Step::Err(server(40613, 20)),
        Step::Hang,
        Step::Ok(1),
    ]);
    let (mut svc, handle) = breaker(config().half_open_calls(1), &script);
    for _ in 0..4 {
        let _ = call(&mut svc).await;
    }
    tokio::time::advance(Duration::from_secs(5)).await;
    let hung = tokio::time::timeout(Duration::from_millis(10), call(&mut svc)).await;
    assert!(hung.is_err(), "the probe hangs and its caller gives up");
    call(&mut svc).await.unwrap();
    assert_eq!(handle.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn opens_on_slow_calls_in_a_time_window() {
    let slow = Step::After(Duration::from_secs(2), Box::new(Step::Ok(1)));
    let script = Script::new([slow]);
    let builder = config()
        .window(WindowKind::Time(Duration::from_secs(60)))
        .slow_call_duration(Duration::from_secs(1))
        .slow_call_rate_threshold(0.75)
        .minimum_calls(4);
    let (mut svc, handle) = breaker(builder, &script);
    for _ in 0..3 {
        call(&mut svc).await.unwrap();
    }
    assert_eq!(handle.state(), BreakerState::Closed);
    call(&mut svc).await.unwrap();
    assert_eq!(handle.state(), BreakerState::Open, "4 of 4 calls were slow");
}

#[tokio::test(start_paused = true)]
async fn failures_age_out_of_a_time_window() {
    let script = failing(3);
    let builder = config().window(WindowKind::Time(Duration::from_secs(10)));
    let (mut svc, handle) = breaker(builder, &script);
    for _ in 0..3 {
        call(&mut svc).await.unwrap_err();
    }
    tokio::time::advance(Duration::from_secs(11)).await;
    call(&mut svc).await.unwrap();
    assert_eq!(
        handle.state(),
        BreakerState::Closed,
        "the old failures left the window"
    );
    assert_eq!(handle.snapshot().window.calls, 1);
}

#[tokio::test(start_paused = true)]
async fn caller_errors_prove_the_database_is_up() {
    let script = Script::new([Step::Err(server(2627, 14))]);
    let (mut svc, handle) = breaker(config(), &script);
    for _ in 0..10 {
        call(&mut svc).await.unwrap_err();
    }
    assert_eq!(handle.state(), BreakerState::Closed);
    let w = handle.snapshot().window;
    assert_eq!((w.calls, w.failures), (10, 0));
}

#[tokio::test(start_paused = true)]
async fn isolate_and_reset_are_manual_overrides() {
    let script = Script::new([Step::Ok(1)]);
    let (mut svc, handle) = breaker(config(), &script);
    let mut transitions = handle.subscribe();
    handle.isolate();
    assert_eq!(handle.state(), BreakerState::Isolated);
    tokio::time::advance(Duration::from_secs(3600)).await;
    call(&mut svc).await.unwrap_err();
    assert_eq!(script.calls(), 0);
    handle.reset();
    call(&mut svc).await.unwrap();
    let seen: Vec<_> = [
        transitions.recv().await.unwrap(),
        transitions.recv().await.unwrap(),
    ]
    .iter()
    .map(|t| (t.from, t.to))
    .collect();
    assert_eq!(
        seen,
        [
            (BreakerState::Closed, BreakerState::Isolated),
            (BreakerState::Isolated, BreakerState::Closed)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn open_duration_jitter_stays_within_bounds() {
    for seed in 0..50 {
        let script = failing(100);
        let (mut svc, handle) = breaker(config().open_jitter(0.2).seed(seed), &script);
        for _ in 0..4 {
            let _ = call(&mut svc).await;
        }
        let d = handle.snapshot().open_until.unwrap() - Instant::now();
        assert!(
            d >= Duration::from_secs(4) && d <= Duration::from_secs(6),
            "{d:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn works_with_tower_test_mock() {
    let handle = CircuitBreakerHandle::new(config().build().unwrap());
    let (mut svc, mut mock) = tower_test::mock::spawn_layer::<WithContext<u32>, u32, _>(
        mssql_resilience::circuit_breaker::CircuitBreakerLayer::new(handle.clone()),
    );
    for _ in 0..4 {
        mock.allow(1);
        assert!(svc.poll_ready().is_ready());
        let fut = svc.call(read());
        let (_req, send) = mock.next_request().await.unwrap();
        send.send_error(Error::new(
            ErrorKind::Io(std::io::ErrorKind::ConnectionReset),
            Outcome::Ambiguous,
        ));
        assert!(fut.await.is_err());
    }
    assert_eq!(handle.state(), BreakerState::Open);
}

#[test]
fn invalid_configs_name_the_field_and_value() {
    let cases: Vec<(CircuitBreakerConfigBuilder, &str)> = vec![
        (config().failure_rate_threshold(1.5), "invalid `breaker.failure_rate_threshold` = 1.5: must be in (0.0, 1.0]"),
        (config().minimum_calls(0), "invalid `breaker.minimum_calls` = 0: must be at least 1"),
        (config().window(WindowKind::Count(3)).minimum_calls(4), "invalid `breaker.minimum_calls` = 4: must not exceed the count window (3), or the breaker never judges"),
        (config().half_open_calls(0), "invalid `breaker.half_open_calls` = 0: must be at least 1"),
        (config().open_duration(Duration::ZERO), "invalid `breaker.open_duration` = 0ns: must be greater than zero"),
        (config().open_jitter(1.0), "invalid `breaker.open_jitter` = 1.0: must be in [0.0, 1.0)"),
        (config().open_backoff(0.5, Duration::from_secs(60)), "invalid `breaker.open_backoff_multiplier` = 0.5: must be at least 1.0"),
    ];
    for (builder, message) in cases {
        assert_eq!(builder.build().unwrap_err().to_string(), message);
    }
}

#[test]
fn sizes_and_counts_have_upper_bounds() {
    use mssql_resilience::circuit_breaker::config::{
        MAX_HALF_OPEN_CALLS, MAX_MINIMUM_CALLS, MAX_WINDOW_CALLS, MAX_WINDOW_DURATION,
    };
    let time = || config().window(WindowKind::Time(Duration::from_secs(10)));
    let cases: Vec<(CircuitBreakerConfigBuilder, &str)> = vec![
        // Would reserve gigabytes for the window at build time.
        (
            config().window(WindowKind::Count(u32::MAX)),
            "invalid `breaker.window` = Count(4294967295): must hold at most 10000 calls",
        ),
        (
            config().window(WindowKind::Time(Duration::MAX)),
            "invalid `breaker.window` = Time(18446744073709551615.999999999s): must be at most 1h",
        ),
        (
            time().minimum_calls(u32::MAX),
            "invalid `breaker.minimum_calls` = 4294967295: must be at most 10000",
        ),
        (
            config().half_open_calls(u32::MAX),
            "invalid `breaker.half_open_calls` = 4294967295: must be at most 1000",
        ),
        (
            config().open_backoff(f64::INFINITY, Duration::from_secs(60)),
            "invalid `breaker.open_backoff_multiplier` = inf: must be at most 100.0",
        ),
        (
            config().open_backoff(2.0, Duration::MAX),
            "invalid `breaker.max_open_duration` = 18446744073709551615.999999999s: must be at most 24h",
        ),
    ];
    for (builder, message) in cases {
        assert_eq!(builder.build().unwrap_err().to_string(), message);
    }
    let long_name = "b".repeat(100_000);
    let e = CircuitBreakerConfig::builder(long_name)
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "breaker.name");
    assert!(
        e.to_string().contains("must be at most 64 characters"),
        "{e}"
    );
    assert!(e.to_string().len() < 300, "the name is echoed whole: {e}");

    // The bounds themselves are accepted.
    config()
        .window(WindowKind::Count(MAX_WINDOW_CALLS))
        .minimum_calls(MAX_MINIMUM_CALLS)
        .half_open_calls(MAX_HALF_OPEN_CALLS)
        .open_backoff(100.0, Duration::from_secs(24 * 3600))
        .build()
        .unwrap();
    config()
        .window(WindowKind::Time(MAX_WINDOW_DURATION))
        .build()
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_longest_open_period_does_not_overflow() {
    let (mut svc, handle) = breaker(
        config()
            .open_duration(Duration::from_secs(24 * 3600))
            .open_backoff(100.0, Duration::from_secs(24 * 3600))
            .open_jitter(0.9),
        &Script::new([Step::Err(server(40613, 16))]),
    );
    for _ in 0..4 {
        let _ = call(&mut svc).await;
    }
    assert_eq!(handle.state(), BreakerState::Open);
    let until = handle.snapshot().open_until.expect("open");
    assert!(until > Instant::now() + Duration::from_secs(3600));
}
