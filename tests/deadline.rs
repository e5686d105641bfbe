//! Timeout budgets: the total deadline bounds every attempt and sleep; the ambient deadline
//! only shortens it. Paused clock throughout.

mod common;

use std::time::Duration;

use common::*;
use mssql_resilience::deadline::{ambient, AttemptTimeout, Deadline, TimeoutBudget};
use mssql_resilience::error::{ErrorKind, RetryStop, TimeoutScope};
use mssql_resilience::observe::{Recorded, RecordingObserver};
use mssql_resilience::retry::backoff::{Backoff, Jitter};
use mssql_resilience::retry::{RetryLayer, RetryPolicy};
use mssql_resilience::{Error, Outcome, RequestContext, WithContext};
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};

async fn call<S>(svc: &mut S, req: WithContext<u32>) -> Result<u32, Error>
where
    S: Service<WithContext<u32>, Response = u32, Error = Error>,
{
    svc.ready().await?.call(req).await
}

fn full_stack(
    script: Script,
    total: Duration,
    attempt: Duration,
    max_attempts: u32,
) -> impl Service<WithContext<u32>, Response = u32, Error = Error> {
    let budget = TimeoutBudget::new(total, attempt).unwrap();
    let backoff = Backoff::new(ms(100), ms(100), Jitter::None).unwrap();
    ServiceBuilder::new()
        .layer(budget.deadline_layer())
        .layer(RetryLayer::new(
            RetryPolicy::new(max_attempts, backoff)
                .unwrap()
                .with_attempt_reserve(Duration::ZERO),
        ))
        .layer(budget.attempt_layer())
        .service(script)
}

#[tokio::test(start_paused = true)]
async fn the_total_budget_bounds_attempts_and_sleeps() {
    let script = Script::new([Step::Hang]);
    let mut svc = full_stack(script.clone(), ms(5000), ms(2000), 100);
    let start = Instant::now();
    let err = call(&mut svc, read()).await.unwrap_err();
    let elapsed = start.elapsed();
    assert!(elapsed <= ms(5000), "took {elapsed:?}");
    // Attempts at 0, 2100, 4200 ms; the third is cut to the 800 ms left.
    assert_eq!(script.calls(), 3);
    assert_eq!(elapsed, ms(5000));
    assert!(err.is_timeout(), "{err}");
}

#[tokio::test(start_paused = true)]
async fn the_attempt_timeout_is_cut_to_the_remaining_budget() {
    let script = Script::new([Step::Hang]);
    let mut svc = full_stack(script.clone(), ms(1500), ms(1000), 2);
    let start = Instant::now();
    let err = call(&mut svc, read()).await.unwrap_err();
    let t = script.call_times();
    assert_eq!(t[1] - start, ms(1100));
    // The second attempt had only 400 ms left: it ends with the deadline, not after 1 s.
    assert_eq!(start.elapsed(), ms(1500));
    assert_eq!(err.kind(), &ErrorKind::DeadlineExceeded);
    assert_eq!(err.outcome(), Outcome::Ambiguous);
}

#[tokio::test(start_paused = true)]
async fn an_attempt_timeout_is_ambiguous_and_names_its_scope() {
    let observer = RecordingObserver::new();
    let budget = TimeoutBudget::new(ms(5000), ms(300)).unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(budget.attempt_layer().with_observer(observer.shared()))
        .service(Script::new([Step::Hang]));
    let mut req = write();
    req.context = req.context.with_deadline(Instant::now() + ms(5000));
    let err = call(&mut svc, req).await.unwrap_err();
    assert_eq!(
        err.kind(),
        &ErrorKind::Timeout {
            scope: TimeoutScope::Attempt,
            after: ms(300)
        }
    );
    assert_eq!(err.outcome(), Outcome::Ambiguous);
    assert!(
        err.is_outcome_unknown(),
        "a write whose attempt timed out has an unknown outcome"
    );
    assert_eq!(
        observer.events(),
        vec![Recorded::AttemptTimedOut { after: ms(300) }]
    );
}

#[tokio::test(start_paused = true)]
async fn an_ambient_deadline_shortens_the_budget() {
    let script = Script::new([Step::Hang]);
    let mut svc = full_stack(script.clone(), ms(5000), ms(2000), 10);
    let start = Instant::now();
    let err = ambient::with_budget(ms(300), async { call(&mut svc, read()).await })
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), ms(300));
    assert!(err.is_timeout());
}

#[tokio::test(start_paused = true)]
async fn an_ambient_deadline_never_lengthens_the_budget() {
    let script = Script::new([Step::Hang]);
    let mut svc = full_stack(script.clone(), ms(500), ms(500), 1);
    let start = Instant::now();
    let _ = ambient::with_budget(Duration::from_secs(60), async {
        call(&mut svc, read()).await
    })
    .await
    .unwrap_err();
    assert_eq!(start.elapsed(), ms(500));
}

#[tokio::test(start_paused = true)]
async fn the_request_deadline_is_honoured_and_stamped() {
    let script = Script::new([Step::Hang]);
    let mut svc = full_stack(script.clone(), ms(5000), ms(2000), 10);
    let start = Instant::now();
    let req = WithContext::new(RequestContext::read("r").with_deadline(start + ms(250)), 1);
    let _ = call(&mut svc, req).await.unwrap_err();
    assert_eq!(start.elapsed(), ms(250));
}

#[tokio::test(start_paused = true)]
async fn a_spent_deadline_fails_without_calling_the_service() {
    let script = Script::new([Step::Ok(1)]);
    let mut svc = Deadline::new(script.clone(), ms(100)).unwrap();
    let req = WithContext::new(RequestContext::read("r").with_deadline(Instant::now()), 1);
    let err = call(&mut svc, req).await.unwrap_err();
    assert_eq!(script.calls(), 0);
    assert_eq!(
        (err.kind(), err.outcome()),
        (&ErrorKind::DeadlineExceeded, Outcome::NotSent)
    );
}

#[tokio::test(start_paused = true)]
async fn a_fast_answer_wins() {
    let script = Script::new([Step::After(ms(99), Box::new(Step::Ok(5)))]);
    let mut svc = AttemptTimeout::new(Deadline::new(script, ms(100)).unwrap(), ms(100)).unwrap();
    assert_eq!(call(&mut svc, read()).await.unwrap(), 5);
}

#[tokio::test(start_paused = true)]
async fn retry_says_when_the_deadline_stopped_it() {
    let script = Script::new([Step::Err(server(1205, 13))]);
    let mut svc = full_stack(script.clone(), ms(250), ms(250), 10);
    let err = call(&mut svc, read()).await.unwrap_err();
    // Attempts at 0, 100 and 200 ms; a fourth would start at 300 ms, past the 250 ms budget.
    assert_eq!(script.calls(), 3);
    assert!(matches!(
        err.retry_stop(),
        Some(RetryStop::DeadlineWouldBeExceeded { .. })
    ));
}

#[test]
fn invalid_budgets_are_rejected_naming_the_fields() {
    let cases = [
        (
            ms(0),
            ms(1),
            "invalid `total_timeout` = 0ns: must be greater than zero",
        ),
        (
            ms(1),
            ms(0),
            "invalid `attempt_timeout` = 0ns: must be greater than zero",
        ),
        (
            ms(100),
            ms(200),
            "invalid `attempt_timeout` = 200ms: must not exceed `total_timeout` (100ms)",
        ),
    ];
    for (total, attempt, message) in cases {
        assert_eq!(
            TimeoutBudget::new(total, attempt).unwrap_err().to_string(),
            message
        );
    }
    assert!(Deadline::new((), Duration::ZERO).is_err());
    assert!(AttemptTimeout::new((), Duration::ZERO).is_err());
}

#[tokio::test(start_paused = true)]
async fn a_timeout_before_anything_was_sent_is_not_sent() {
    // A service that tracks the wire (like the SQL service waiting for a pool checkout):
    // it marks the attempt not-sent and never writes.
    let svc = tower::service_fn(|req: WithContext<u32>| async move {
        if let Some(wire) = req.context.wire() {
            wire.mark_not_sent();
        }
        std::future::pending::<Result<u32, Error>>().await
    });
    let mut svc = AttemptTimeout::new(svc, ms(200)).unwrap();
    let err = call(&mut svc, write()).await.unwrap_err();
    assert_eq!(err.outcome(), Outcome::NotSent);
    assert!(
        !err.is_outcome_unknown(),
        "nothing was sent, so nothing is unknown"
    );

    let sent = tower::service_fn(|req: WithContext<u32>| async move {
        let wire = req
            .context
            .wire()
            .expect("the attempt layer installs a wire state");
        wire.mark_not_sent();
        wire.mark_sent();
        std::future::pending::<Result<u32, Error>>().await
    });
    let mut sent = AttemptTimeout::new(sent, ms(200)).unwrap();
    let err = call(&mut sent, write()).await.unwrap_err();
    assert_eq!(err.outcome(), Outcome::Ambiguous);
    assert!(err.is_outcome_unknown());
}

#[tokio::test(start_paused = true)]
async fn a_stamp_only_deadline_is_still_bounded_by_the_inner_layers() {
    let script = Script::new([Step::Hang]);
    let budget = TimeoutBudget::new(ms(5000), ms(2000)).unwrap();
    let backoff = Backoff::new(ms(100), ms(100), Jitter::None).unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(budget.deadline_layer().stamp_only())
        .layer(RetryLayer::new(
            RetryPolicy::new(100, backoff)
                .unwrap()
                .with_attempt_reserve(Duration::ZERO),
        ))
        .layer(budget.attempt_layer())
        .service(script.clone());
    let start = Instant::now();
    let err = call(&mut svc, read()).await.unwrap_err();
    assert_eq!(start.elapsed(), ms(5000));
    assert!(err.is_timeout(), "{err}");
    // Without the attempt layer nothing would bound it: stamp-only is for composed stacks.
    let mut bare = ServiceBuilder::new()
        .layer(budget.deadline_layer().stamp_only())
        .service(Script::new([Step::Ok(1)]));
    assert_eq!(call(&mut bare, read()).await.unwrap(), 1);
}

// ---------------------------------------------------------------------------------------
// No duration a caller can pass reaches a panic
// ---------------------------------------------------------------------------------------

#[test]
fn budgets_over_max_budget_are_rejected_by_every_constructor() {
    use mssql_resilience::deadline::MAX_BUDGET;
    let over = MAX_BUDGET + Duration::from_nanos(1);
    for (total, attempt, field) in [
        (Duration::MAX, Duration::MAX, "total_timeout"),
        (over, ms(1), "total_timeout"),
        (MAX_BUDGET, over, "attempt_timeout"),
    ] {
        let e = TimeoutBudget::new(total, attempt).unwrap_err();
        assert_eq!(e.field(), field, "{e}");
        assert!(e.to_string().contains("must be at most 24h"), "{e}");
    }
    // The bound itself is accepted.
    TimeoutBudget::new(MAX_BUDGET, MAX_BUDGET).unwrap();

    let e = Deadline::new(Script::new([Step::Ok(1)]), Duration::MAX)
        .err()
        .expect("rejected");
    assert_eq!(e.field(), "total_timeout");
    assert!(e.to_string().contains("must be at most 24h"), "{e}");
    let e = AttemptTimeout::new(Script::new([Step::Ok(1)]), over)
        .err()
        .expect("rejected");
    assert_eq!(e.field(), "attempt_timeout");
    assert!(Deadline::new(Script::new([Step::Ok(1)]), MAX_BUDGET).is_ok());
    assert!(AttemptTimeout::new(Script::new([Step::Ok(1)]), MAX_BUDGET).is_ok());
}

#[tokio::test(start_paused = true)]
async fn the_longest_budget_runs_calls_without_overflow() {
    use mssql_resilience::deadline::MAX_BUDGET;
    let mut svc = full_stack(Script::new([Step::Ok(7)]), MAX_BUDGET, MAX_BUDGET, 3);
    assert_eq!(call(&mut svc, read()).await.unwrap(), 7);
    let mut svc = full_stack(Script::new([Step::Hang]), MAX_BUDGET, MAX_BUDGET, 1);
    let err = call(&mut svc, read()).await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
}

#[tokio::test(start_paused = true)]
async fn an_ambient_budget_of_duration_max_saturates_instead_of_panicking() {
    let now = Instant::now();
    let deadline = ambient::with_budget(Duration::MAX, async { ambient::current() })
        .await
        .expect("an ambient deadline is set");
    assert!(
        deadline > now + Duration::from_secs(86_400 * 365),
        "{deadline:?}"
    );

    // Calls inside it keep their own budget.
    let script = Script::new([Step::Hang]);
    let mut svc = full_stack(script, ms(500), ms(500), 1);
    let start = Instant::now();
    let err = ambient::with_budget(Duration::MAX, async { call(&mut svc, read()).await })
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(start.elapsed(), ms(500));
}

#[test]
fn instant_after_saturates() {
    use mssql_resilience::deadline::instant_after;
    let now = Instant::now();
    assert_eq!(instant_after(now, ms(5)), now + ms(5));
    assert!(instant_after(now, Duration::MAX) > now);
    assert!(instant_after(now, Duration::from_secs(u64::MAX / 2)) > now);
}

fn stack_with_max_total(
    script: Script,
    max_total: Duration,
) -> impl Service<WithContext<u32>, Response = u32, Error = Error> {
    let budget = TimeoutBudget::new(ms(5000), ms(2000))
        .unwrap()
        .with_max_total(max_total)
        .unwrap();
    let backoff = Backoff::new(ms(100), ms(100), Jitter::None).unwrap();
    ServiceBuilder::new()
        .layer(budget.deadline_layer())
        .layer(RetryLayer::new(
            RetryPolicy::new(3, backoff)
                .unwrap()
                .with_attempt_reserve(Duration::ZERO),
        ))
        .layer(budget.attempt_layer())
        .service(script)
}

#[tokio::test(start_paused = true)]
async fn a_request_may_ask_for_a_longer_budget_and_its_attempt_grows_with_it() {
    // A 20 s query: the default budget (5 s total, 2 s attempts) cannot run it.
    let script = Script::new([Step::After(ms(20_000), Box::new(Step::Ok(1)))]);
    let mut svc = stack_with_max_total(script.clone(), ms(60_000));
    let err = call(&mut svc, read()).await.unwrap_err();
    assert!(err.is_timeout(), "{err}");

    // Asking for 30 s: the attempt bound is 2 s + (30 s − 5 s) = 27 s, so it runs once.
    let script = Script::new([Step::After(ms(20_000), Box::new(Step::Ok(1)))]);
    let mut svc = stack_with_max_total(script.clone(), ms(60_000));
    let start = Instant::now();
    let mut req = read();
    req.context = req.context.budget(ms(30_000));
    call(&mut svc, req).await.unwrap();
    assert_eq!(start.elapsed(), ms(20_000));
    assert_eq!(script.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_longer_budget_is_capped_at_max_total() {
    let script = Script::new([Step::Hang]);
    let mut svc = stack_with_max_total(script.clone(), ms(10_000));
    let start = Instant::now();
    let mut req = read();
    req.context = req.context.budget(ms(3_600_000));
    let err = call(&mut svc, req).await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    // Capped at 10 s: attempts of 7 s (2 s + 5 s extension), then the 2.9 s left.
    assert_eq!(start.elapsed(), ms(10_000));
    assert_eq!(script.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn without_max_total_a_request_cannot_extend_its_budget() {
    let script = Script::new([Step::Hang]);
    let mut svc = full_stack(script.clone(), ms(5000), ms(2000), 100);
    let start = Instant::now();
    let mut req = read();
    req.context = req.context.budget(ms(30_000));
    call(&mut svc, req).await.unwrap_err();
    assert_eq!(start.elapsed(), ms(5000));
}

#[tokio::test(start_paused = true)]
async fn a_shorter_requested_budget_shortens_the_call() {
    let script = Script::new([Step::Hang]);
    let mut svc = stack_with_max_total(script.clone(), ms(60_000));
    let start = Instant::now();
    let mut req = read();
    req.context = req.context.budget(ms(1500));
    call(&mut svc, req).await.unwrap_err();
    assert_eq!(start.elapsed(), ms(1500));
}

#[test]
fn max_total_below_total_is_rejected_by_name() {
    let err = TimeoutBudget::new(ms(5000), ms(2000))
        .unwrap()
        .with_max_total(ms(1000))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid `max_total_timeout` = 1s: must not be less than `total_timeout` (5s)"
    );
    assert!(TimeoutBudget::new(ms(5000), ms(2000))
        .unwrap()
        .with_max_total(Duration::from_secs(25 * 3600))
        .is_err());
}
