//! Retry layer: stopping rules, write safety, server hints, budgets. Paused clock throughout.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use mssql_resilience::deadline::TimeoutBudget;
use mssql_resilience::error::RetryStop;
use mssql_resilience::observe::{Recorded, RecordingObserver};
use mssql_resilience::retry::backoff::{Backoff, Jitter};
use mssql_resilience::retry::budget::RetryBudget;
use mssql_resilience::retry::{RetryLayer, RetryPolicy};
use mssql_resilience::{Error, Outcome};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

fn policy(max: u32, base: Duration, cap: Duration) -> RetryPolicy {
    RetryPolicy::new(max, Backoff::new(base, cap, Jitter::None).unwrap())
        .unwrap()
        .with_attempt_reserve(Duration::ZERO)
}

async fn call<S>(svc: &mut S, req: mssql_resilience::WithContext<u32>) -> Result<u32, Error>
where
    S: Service<mssql_resilience::WithContext<u32>, Response = u32, Error = Error>,
{
    svc.ready().await?.call(req).await
}

#[tokio::test(start_paused = true)]
async fn stops_at_max_attempts() {
    let script = Script::new([Step::Err(server(1205, 13))]);
    let mut svc = RetryLayer::new(policy(3, ms(10), ms(100))).layer(script.clone());
    let err = call(&mut svc, read()).await.unwrap_err();
    assert_eq!(script.calls(), 3);
    assert_eq!(err.attempts(), 3);
    assert_eq!(err.retry_stop(), Some(RetryStop::MaxAttempts));
    assert_eq!(err.server_number(), Some(1205));
    // Backoff without jitter: 10 ms then 20 ms between the calls.
    let t = script.call_times();
    assert_eq!((t[1] - t[0], t[2] - t[1]), (ms(10), ms(20)));
}

#[tokio::test(start_paused = true)]
async fn succeeds_after_transient_failures() {
    let script = Script::new([
        Step::Err(server(40613, 20)),
        Step::Err(reset_after_send()),
        Step::Ok(7),
    ]);
    let mut svc = RetryLayer::new(policy(3, ms(10), ms(100))).layer(script.clone());
    assert_eq!(call(&mut svc, read()).await.unwrap(), 7);
    assert_eq!(script.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn never_retries_a_permanent_error() {
    for number in [102, 208, 2627, 515] {
        let script = Script::new([Step::Err(server(number, 16)), Step::Ok(1)]);
        let mut svc = RetryLayer::new(policy(5, ms(10), ms(100))).layer(script.clone());
        let err = call(&mut svc, read()).await.unwrap_err();
        assert_eq!(script.calls(), 1, "error {number} must not be retried");
        assert_eq!(err.retry_stop(), Some(RetryStop::NotRetryable));
    }
}

#[tokio::test(start_paused = true)]
async fn never_retries_an_ambiguous_non_idempotent_write() {
    let script = Script::new([Step::Err(reset_after_send()), Step::Ok(1)]);
    let mut svc = RetryLayer::new(policy(5, ms(10), ms(100))).layer(script.clone());
    let err = call(&mut svc, write()).await.unwrap_err();
    assert_eq!(script.calls(), 1);
    assert_eq!(err.outcome(), Outcome::Ambiguous);
    assert_eq!(err.retry_stop(), Some(RetryStop::NotIdempotent));
    assert!(err.is_outcome_unknown());
    assert!(
        err.to_string().contains("may or may not have been applied"),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn retries_an_ambiguous_write_that_is_idempotent() {
    let script = Script::new([Step::Err(reset_after_send()), Step::Ok(9)]);
    let mut svc = RetryLayer::new(policy(5, ms(10), ms(100))).layer(script.clone());
    let mut req = write();
    req.context = req.context.idempotent(true);
    assert_eq!(call(&mut svc, req).await.unwrap(), 9);
    assert_eq!(script.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn retries_a_write_that_was_never_sent() {
    let script = Script::new([Step::Err(pool_timeout()), Step::Ok(3)]);
    let mut svc = RetryLayer::new(policy(5, ms(10), ms(100))).layer(script.clone());
    assert_eq!(call(&mut svc, write()).await.unwrap(), 3);
    assert_eq!(script.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn honours_the_40501_delay_hint() {
    let script = Script::new([Step::Err(server(40501, 20)), Step::Ok(1)]);
    let mut svc = RetryLayer::new(policy(3, ms(10), ms(100))).layer(script.clone());
    call(&mut svc, read()).await.unwrap();
    let t = script.call_times();
    assert_eq!(t[1] - t[0], Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn a_40501_hint_that_does_not_fit_the_budget_stops_at_once() {
    let script = Script::new([Step::Err(server(40501, 20)), Step::Ok(1)]);
    let budget = TimeoutBudget::new(Duration::from_secs(5), Duration::from_secs(1)).unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(budget.deadline_layer())
        .layer(RetryLayer::new(policy(3, ms(10), ms(100))))
        .service(script.clone());
    let start = Instant::now();
    let err = call(&mut svc, read()).await.unwrap_err();
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "it must not sleep into certain failure"
    );
    assert_eq!(script.calls(), 1);
    match err.retry_stop() {
        Some(RetryStop::DeadlineWouldBeExceeded {
            next_delay,
            remaining,
        }) => {
            assert_eq!(next_delay, Duration::from_secs(10));
            assert_eq!(remaining, Duration::from_secs(5));
        }
        other => panic!("unexpected stop {other:?}"),
    }
    assert!(err.to_string().contains("would not fit"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn stops_before_a_sleep_that_would_pass_the_deadline() {
    let script = Script::new([Step::Err(server(1205, 13))]);
    let budget = TimeoutBudget::new(ms(1000), ms(500)).unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(budget.deadline_layer())
        .layer(RetryLayer::new(policy(10, ms(400), ms(400))))
        .layer(budget.attempt_layer())
        .service(script.clone());
    let start = Instant::now();
    let err = call(&mut svc, read()).await.unwrap_err();
    // Calls at 0, 400, 800 ms; a fourth would start at 1200 ms, past the deadline.
    assert_eq!(script.calls(), 3);
    assert_eq!(start.elapsed(), ms(800));
    assert!(matches!(
        err.retry_stop(),
        Some(RetryStop::DeadlineWouldBeExceeded { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn an_exhausted_budget_returns_the_original_error_and_is_observable() {
    let observer = RecordingObserver::new();
    // A floor of 1 retry per second over a 1 s window, nothing proportional.
    let budget = RetryBudget::new(Duration::from_secs(1), 1.0, 0.0).unwrap();
    let script = Script::new([Step::Err(server(1205, 13))]);
    let layer = RetryLayer::new(policy(3, ms(10), ms(10)))
        .with_budget(budget.clone())
        .with_observer(observer.shared());
    let mut svc = layer.layer(script.clone());

    let first = call(&mut svc, read()).await.unwrap_err();
    assert_eq!(
        first.attempts(),
        2,
        "one retry from the floor, then the budget is empty"
    );
    assert_eq!(first.retry_stop(), Some(RetryStop::BudgetExhausted));
    assert_eq!(
        first.server_number(),
        Some(1205),
        "the original error comes back"
    );
    let second = call(&mut svc, read()).await.unwrap_err();
    assert_eq!(second.attempts(), 1);
    assert_eq!(second.retry_stop(), Some(RetryStop::BudgetExhausted));
    assert_eq!(script.calls(), 3);
    assert_eq!(budget.snapshot().refused_total, 2);
    let exhausted = observer
        .events()
        .iter()
        .filter(|e| **e == Recorded::RetryBudgetExhausted)
        .count();
    assert_eq!(exhausted, 2);
}

#[tokio::test(start_paused = true)]
async fn a_shared_budget_caps_retries_across_services() {
    let budget = RetryBudget::new(Duration::from_secs(10), 0.0, 0.5).unwrap();
    let script = Script::new([Step::Err(server(40613, 20))]);
    let layer = RetryLayer::new(policy(2, ms(1), ms(1))).with_budget(budget.clone());
    let (mut a, mut b) = (layer.layer(script.clone()), layer.layer(script.clone()));
    for _ in 0..10 {
        let _ = call(&mut a, read()).await;
        let _ = call(&mut b, read()).await;
    }
    // 20 calls deposited; at 50 % at most 10 retries in all, whatever the service.
    assert_eq!(script.calls(), 20 + 10);
}

#[tokio::test(start_paused = true)]
async fn observer_sees_each_scheduled_retry() {
    let observer = RecordingObserver::new();
    let script = Script::new([Step::Err(server(1205, 13)), Step::Ok(1)]);
    let mut svc = RetryLayer::new(policy(3, ms(25), ms(25)))
        .with_observer(observer.shared())
        .layer(script);
    call(&mut svc, read()).await.unwrap();
    assert_eq!(
        observer.events(),
        vec![Recorded::RetryScheduled {
            attempt: 1,
            delay: ms(25)
        }]
    );
}

#[tokio::test(start_paused = true)]
async fn custom_classifiers_decide() {
    let script = Script::new([Step::Err(server(50000, 16)), Step::Ok(1)]);
    let classifier = mssql_resilience::classify::SqlServerClassifier::new().with_transient([50000]);
    let mut svc = RetryLayer::new(policy(3, ms(1), ms(1)))
        .with_classifier(Arc::new(classifier))
        .layer(script.clone());
    call(&mut svc, read()).await.unwrap();
    assert_eq!(script.calls(), 2);
}

#[test]
fn invalid_policies_name_the_field() {
    let e = RetryPolicy::new(0, Backoff::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid `retry.max_attempts` = 0: must be between 1 and 100"
    );
}

#[tokio::test(start_paused = true)]
async fn huge_reserves_and_delay_hints_stop_at_the_deadline_instead_of_panicking() {
    use mssql_resilience::classify::Classification;

    // A reserve of Duration::MAX: no retry fits, and the sum does not overflow.
    let script = Script::new([Step::Err(server(1205, 13))]);
    let budget = TimeoutBudget::new(ms(1000), ms(500)).unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(budget.deadline_layer())
        .layer(RetryLayer::new(
            policy(3, ms(10), ms(10)).with_attempt_reserve(Duration::MAX),
        ))
        .layer(budget.attempt_layer())
        .service(script.clone());
    let err = call(&mut svc, read()).await.unwrap_err();
    assert_eq!(script.calls(), 1);
    assert!(matches!(
        err.retry_stop(),
        Some(RetryStop::DeadlineWouldBeExceeded { .. })
    ));

    // A classifier asking for a Duration::MAX pause: the same.
    let script = Script::new([Step::Err(server(1205, 13))]);
    let classifier = |_: &Error| Classification {
        delay_hint: Some(Duration::MAX),
        ..Classification::TRANSIENT
    };
    let mut svc = ServiceBuilder::new()
        .layer(budget.deadline_layer())
        .layer(
            RetryLayer::new(policy(3, ms(10), ms(10)).with_attempt_reserve(ms(10)))
                .with_classifier(Arc::new(classifier)),
        )
        .layer(budget.attempt_layer())
        .service(script.clone());
    let err = call(&mut svc, read()).await.unwrap_err();
    assert_eq!(script.calls(), 1);
    assert!(matches!(
        err.retry_stop(),
        Some(RetryStop::DeadlineWouldBeExceeded { .. })
    ));
}

#[test]
fn retry_budget_bounds_name_the_field() {
    use mssql_resilience::retry::budget::{MAX_MIN_PER_SECOND, MAX_RATIO, MAX_WINDOW};
    // An "unlimited" floor is no budget at all.
    let e = RetryBudget::new(Duration::from_secs(10), 1e308, 0.2).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid `retry_budget.min_per_second` = 1e308: must be a finite number between 0 and 100000"
    );
    let e = RetryBudget::new(Duration::from_secs(10), f64::INFINITY, 0.2).unwrap_err();
    assert_eq!(e.field(), "retry_budget.min_per_second");
    let e = RetryBudget::new(Duration::from_secs(10), 10.0, 1000.5).unwrap_err();
    assert_eq!(e.field(), "retry_budget.ratio");
    let e = RetryBudget::new(Duration::from_secs(3601), 10.0, 0.2).unwrap_err();
    assert_eq!(e.field(), "retry_budget.window");
    RetryBudget::new(MAX_WINDOW, MAX_MIN_PER_SECOND, MAX_RATIO).unwrap();
    // A backoff cap over 24 h is rejected, so no delay can be longer.
    let e = Backoff::new(ms(1), Duration::MAX, Jitter::Full).unwrap_err();
    assert_eq!(e.field(), "backoff.cap");
}

/// `policy` over `script`, under a deadline `total` away (the stack's order).
fn under_deadline(
    total: Duration,
    policy: RetryPolicy,
    script: &Script,
) -> impl Service<mssql_resilience::WithContext<u32>, Response = u32, Error = Error> + Clone {
    let budget = TimeoutBudget::new(total, total).unwrap();
    ServiceBuilder::new()
        .layer(budget.deadline_layer())
        .layer(RetryLayer::new(policy))
        .service(script.clone())
}

fn turned_away() -> Error {
    Error::new(
        mssql_resilience::ErrorKind::NoRegionAvailable {
            reason: "every region is full".into(),
        },
        Outcome::NotSent,
    )
    .turned_away()
}

#[tokio::test(start_paused = true)]
async fn a_call_turned_away_is_tried_again_without_using_attempts_or_budget() {
    // Five refusals before anything is tried, then a transient failure, then an answer:
    // only the last two count against max_attempts (2) and draw on the budget.
    let retries = RetryBudget::new(Duration::from_secs(10), 1.0, 0.0).unwrap();
    let script = Script::new([
        Step::Err(turned_away()),
        Step::Err(turned_away()),
        Step::Err(turned_away()),
        Step::Err(turned_away()),
        Step::Err(turned_away()),
        Step::Err(server(40613, 20)),
        Step::Ok(7),
    ]);
    let budget = TimeoutBudget::new(ms(5000), ms(5000)).unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(budget.deadline_layer())
        .layer(RetryLayer::new(policy(2, ms(100), ms(400))).with_budget(retries.clone()))
        .service(script.clone());
    assert_eq!(call(&mut svc, write()).await.unwrap(), 7);
    assert_eq!(script.calls(), 7);
    assert_eq!(
        retries.snapshot().withdrawals,
        1,
        "only the 40613 retry is paid"
    );
    // The backoff still grows between the refusals: 100, 200, 400, 400, 400, 400 ms.
    let t = script.call_times();
    let gaps: Vec<Duration> = t.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(gaps, [ms(100), ms(200), ms(400), ms(400), ms(400), ms(400)]);
}

#[tokio::test(start_paused = true)]
async fn a_call_turned_away_stops_at_the_deadline_or_without_one_at_max_attempts() {
    let script = Script::new([Step::Err(turned_away())]);
    let mut svc = under_deadline(ms(1000), policy(2, ms(300), ms(300)), &script);
    let err = call(&mut svc, read()).await.unwrap_err();
    // Tries at 0, 300, 600, 900 ms; a fifth would start at 1200 ms, past the deadline.
    assert_eq!(script.calls(), 4);
    assert!(err.is_turned_away());
    assert_eq!(err.attempts(), 4);
    assert!(matches!(
        err.retry_stop(),
        Some(RetryStop::DeadlineWouldBeExceeded { .. })
    ));

    // No deadline: nothing else would stop it, so each refusal counts.
    let script = Script::new([Step::Err(turned_away())]);
    let mut svc = RetryLayer::new(policy(2, ms(300), ms(300))).layer(script.clone());
    let err = call(&mut svc, read()).await.unwrap_err();
    assert_eq!(script.calls(), 2);
    assert_eq!(err.retry_stop(), Some(RetryStop::MaxAttempts));

    // max_attempts = 1 is no retries of any kind.
    let script = Script::new([Step::Err(turned_away())]);
    let mut svc = under_deadline(ms(1000), policy(1, ms(300), ms(300)), &script);
    let err = call(&mut svc, read()).await.unwrap_err();
    assert_eq!(script.calls(), 1);
    assert_eq!(err.retry_stop(), Some(RetryStop::MaxAttempts));
}

#[tokio::test(start_paused = true)]
async fn beyond_max_polling_a_turned_away_call_counts_its_tries() {
    // One place to sleep before a free try: the first call turned away takes it each time
    // and polls to its deadline; the second, turned away while the first sleeps, counts
    // its tries and fails within its two attempts.
    let script = Script::new([Step::Err(turned_away())]);
    let policy = policy(2, ms(300), ms(300)).with_max_polling(1).unwrap();
    let svc = under_deadline(ms(1000), policy, &script);
    let (mut a, mut b) = (svc.clone(), svc);
    let (first, second) = tokio::join!(call(&mut a, read()), call(&mut b, read()));
    let (first, second) = (first.unwrap_err(), second.unwrap_err());
    assert!(matches!(
        first.retry_stop(),
        Some(RetryStop::DeadlineWouldBeExceeded { .. })
    ));
    assert_eq!(first.attempts(), 4);
    assert_eq!(second.retry_stop(), Some(RetryStop::MaxAttempts));
    assert_eq!(second.attempts(), 2);
    // The place is given back: a later call polls again.
    let third = call(&mut a, read()).await.unwrap_err();
    assert_eq!(third.attempts(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_full_polling_line_makes_room_for_a_call_due_later() {
    // One place to sleep before a free try. The first call takes it; a second call,
    // arriving 100 ms later (due 100 ms later), finds the line full: the first — due
    // first, with the least time left to see a region back — gives its place and ends
    // at once, and the second polls to its own deadline.
    let script = Script::new([Step::Err(turned_away())]);
    let policy = policy(2, ms(300), ms(300)).with_max_polling(1).unwrap();
    let svc = under_deadline(ms(1000), policy, &script);
    let (mut a, mut b) = (svc.clone(), svc);
    let start = tokio::time::Instant::now();
    let first = async {
        let result = call(&mut a, read()).await;
        (result, start.elapsed())
    };
    let second = async {
        tokio::time::sleep(ms(100)).await;
        let result = call(&mut b, read()).await;
        (result, start.elapsed())
    };
    let ((first, first_ended), (second, second_ended)) = tokio::join!(first, second);
    let (first, second) = (first.unwrap_err(), second.unwrap_err());
    assert_eq!(first.retry_stop(), Some(RetryStop::GaveWay));
    assert!(first.is_turned_away());
    assert_eq!(first.attempts(), 1);
    assert_eq!(first_ended, ms(100), "it ends when the newcomer arrives");
    assert!(matches!(
        second.retry_stop(),
        Some(RetryStop::DeadlineWouldBeExceeded { .. })
    ));
    assert_eq!(second.attempts(), 4, "tries at 100, 400, 700, 1000 ms");
    assert_eq!(second_ended, ms(1000));
}

#[tokio::test(start_paused = true)]
async fn a_call_that_stops_anyway_pushes_no_sleeper_out() {
    // The first call polls (tries at 0, 300, 600, 900 ms, due at 1000 ms). A second one,
    // due later (1050 ms) but turned away at 850 ms with only 200 ms left for a 300 ms
    // backoff, stops at once — without taking the first one's place on its way out.
    let script = Script::new([Step::Err(turned_away())]);
    let policy = policy(2, ms(300), ms(300)).with_max_polling(1).unwrap();
    let svc = under_deadline(ms(1000), policy, &script);
    let (mut a, mut b) = (svc.clone(), svc);
    let start = tokio::time::Instant::now();
    let first = call(&mut a, read());
    let second = async {
        tokio::time::sleep(ms(850)).await;
        let late = mssql_resilience::RequestContext::read("late").with_deadline(start + ms(1050));
        call(&mut b, mssql_resilience::WithContext::new(late, 1)).await
    };
    let (first, second) = tokio::join!(first, second);
    let (first, second) = (first.unwrap_err(), second.unwrap_err());
    assert!(matches!(
        second.retry_stop(),
        Some(RetryStop::DeadlineWouldBeExceeded { .. })
    ));
    assert_eq!(second.attempts(), 1);
    assert!(
        matches!(
            first.retry_stop(),
            Some(RetryStop::DeadlineWouldBeExceeded { .. })
        ),
        "{:?}",
        first.retry_stop()
    );
    assert_eq!(first.attempts(), 4, "it kept its place to the end");
}
