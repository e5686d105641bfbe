//! Per-call overhead of the resilience layers around a no-op service.
//!
//! Cases (group `layers`): the bare service; our deadline + retry + circuit breaker; tower's
//! own `Timeout` + `Retry`; tower-resilience's circuit breaker + retry. After the criterion
//! run, the bench prints each case's ratio to the bare service and ours to
//! tower-resilience's (target: ≤ 1.0, and under 1 µs per call).

use std::future::{ready, Ready};
use std::time::Duration;

#[path = "support/estimates.rs"]
mod estimates;
use estimates::mean_ns;

use criterion::{criterion_group, Criterion};
use mssql_resilience::circuit_breaker::{
    CircuitBreakerConfig, CircuitBreakerHandle, CircuitBreakerLayer,
};
use mssql_resilience::deadline::TimeoutBudget;
use mssql_resilience::retry::{RetryLayer, RetryPolicy};
use mssql_resilience::{Error, RequestContext, WithContext};
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};

type Req = WithContext<u32>;

fn noop(
) -> impl Service<Req, Response = u32, Error = Error, Future = Ready<Result<u32, Error>>> + Clone {
    tower::service_fn(|req: Req| ready(Ok::<_, Error>(req.payload)))
}

fn request() -> Req {
    WithContext::new(RequestContext::read("bench"), 1)
}

/// Times `iters` sequential calls through `svc` on a current-thread runtime.
fn run<S>(rt: &tokio::runtime::Runtime, mut svc: S, iters: u64) -> Duration
where
    S: Service<Req, Response = u32>,
    S::Error: std::fmt::Debug,
{
    rt.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            let out = svc.ready().await.unwrap().call(request()).await.unwrap();
            std::hint::black_box(out);
        }
        start.elapsed()
    })
}

#[derive(Clone)]
struct AttemptsPolicy(u32);

impl<E> tower::retry::Policy<Req, u32, E> for AttemptsPolicy {
    type Future = Ready<()>;
    fn retry(&mut self, _: &mut Req, result: &mut Result<u32, E>) -> Option<Self::Future> {
        match result {
            Err(_) if self.0 > 1 => {
                self.0 -= 1;
                Some(ready(()))
            }
            _ => None,
        }
    }
    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

fn layers(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let mut group = c.benchmark_group("layers");

    group.bench_function("bare", |b| b.iter_custom(|iters| run(&rt, noop(), iters)));

    group.bench_function("mssql_resilience", |b| {
        b.iter_custom(|iters| {
            let budget =
                TimeoutBudget::new(Duration::from_secs(5), Duration::from_secs(2)).unwrap();
            let breaker =
                CircuitBreakerHandle::new(CircuitBreakerConfig::builder("bench").build().unwrap());
            let svc = ServiceBuilder::new()
                .layer(budget.deadline_layer())
                .layer(RetryLayer::new(RetryPolicy::default()))
                .layer(CircuitBreakerLayer::new(breaker))
                .service(noop());
            run(&rt, svc, iters)
        })
    });

    group.bench_function("tower_retry_timeout", |b| {
        b.iter_custom(|iters| {
            let svc = ServiceBuilder::new()
                .timeout(Duration::from_secs(5))
                .retry(AttemptsPolicy(3))
                .service(noop());
            run(&rt, svc, iters)
        })
    });

    group.bench_function("tower_resilience_breaker_retry", |b| {
        b.iter_custom(|iters| {
            let breaker = tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
                .failure_rate_threshold(0.5)
                .build()
                .unwrap();
            let retry = tower_resilience::retry::RetryLayer::<
                Req,
                u32,
                tower_resilience::circuitbreaker::CircuitBreakerError<Error>,
            >::builder()
            .max_attempts(3)
            .exponential_backoff(Duration::from_millis(50))
            .build();
            let svc = ServiceBuilder::new()
                .layer(retry)
                .layer(breaker)
                .service(noop());
            run(&rt, svc, iters)
        })
    });
    group.finish();
}

criterion_group!(benches, layers);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    let cases = [
        "bare",
        "mssql_resilience",
        "tower_retry_timeout",
        "tower_resilience_breaker_retry",
    ];
    let means: Vec<_> = cases.iter().map(|c| mean_ns("layers", c)).collect();
    if let [Some(bare), Some(ours), Some(tower), Some(tr)] = means[..] {
        println!("\nper-call mean (ns) and ratio to the bare service:");
        for (case, mean) in cases.iter().zip([bare, ours, tower, tr]) {
            println!("  {case:<32} {mean:>8.1} ns   x{:.2}", mean / bare);
        }
        println!(
            "  mssql_resilience / tower_resilience_breaker_retry = {:.2} (target <= 1.0); overhead {:.0} ns/call (target < 1000)",
            ours / tr,
            ours - bare
        );
    }
}
