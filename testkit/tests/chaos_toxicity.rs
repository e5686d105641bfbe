//! Partial failure: toxics with a toxicity below 1 act on a seeded share of the
//! connections, decided per connection at accept time.
//!
//! Every test knows in advance which connections must be hit: the n-th connection the
//! proxy accepts is affected when the n-th value of `connection_draws(seed)` is below
//! the toxicity. Connections are opened one after the other (each `connect` awaited
//! before the next), so the proxy accepts them in that order.

mod chaos_common;

use std::io::ErrorKind;
use std::time::Duration;

use chaos_common::*;
use mssql_testkit::chaos::{connection_draws, ChaosProxy, ProxyConfig, Schedule, Toxicity, Toxics};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

async fn seeded_proxy(upstream: std::net::SocketAddr, seed: u64) -> ChaosProxy {
    ChaosProxy::start_with(ProxyConfig::new(any_port(), upstream).with_seed(seed))
        .await
        .expect("start proxy")
}

fn toxicity(p: f64) -> Toxicity {
    Toxicity::new(p).expect("valid toxicity")
}

/// Which of the first `n` connections toxics of toxicity `p` hit, for `seed`.
fn expected(seed: u64, n: usize, p: f64) -> Vec<bool> {
    connection_draws(seed).take(n).map(|d| d < p).collect()
}

/// Opens `n` connections in order; returns them once each was accepted and answered
/// an echo (the toxics in force must spare them all).
async fn open_healthy(proxy: &ChaosProxy, n: usize) -> Vec<TcpStream> {
    let mut conns = Vec::new();
    for i in 0..n {
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(
            round_trip(&mut s, b"hi").await.unwrap(),
            b"hi",
            "connection {i}"
        );
        conns.push(s);
    }
    conns
}

/// `refuse` at toxicity `p` on `n` new connections opened in order: which were refused.
async fn refused_connections(seed: u64, n: usize, p: f64) -> (Vec<bool>, u64, u64) {
    let echo = echo_server().await;
    let proxy = seeded_proxy(echo.addr, seed).await;
    proxy
        .handle()
        .set(Toxics::refuse().with_toxicity(toxicity(p)));
    let mut hit = Vec::new();
    for _ in 0..n {
        let refused = match TcpStream::connect(proxy.addr()).await {
            Err(_) => true,
            Ok(mut s) => round_trip(&mut s, b"x").await.is_err(),
        };
        hit.push(refused);
    }
    let counters = proxy.counters();
    proxy.shutdown().await;
    (hit, counters.refused, counters.spared)
}

#[tokio::test]
async fn partial_refuse_hits_exactly_the_drawn_connections() {
    const N: usize = 200;
    let want = expected(42, N, 0.3);
    let n_hit = want.iter().filter(|h| **h).count();
    // The draws are uniform: for this seed the share is close to the toxicity.
    assert!((45..=75).contains(&n_hit), "{n_hit} of {N}");

    let (hit, refused, spared) = refused_connections(42, N, 0.3).await;
    assert_eq!(hit, want);
    assert_eq!(refused, n_hit as u64);
    assert_eq!(spared, (N - n_hit) as u64);

    // The same seed hits the same connections; another seed others.
    let (again, ..) = refused_connections(42, N, 0.3).await;
    assert_eq!(again, hit);
    assert_ne!(expected(43, N, 0.3), want);
}

#[tokio::test]
async fn toxicity_zero_and_one_are_none_and_all() {
    let (hit, refused, _) = refused_connections(5, 20, 0.0).await;
    assert!(hit.iter().all(|h| !h));
    assert_eq!(refused, 0);
    let (hit, refused, spared) = refused_connections(5, 20, 1.0).await;
    assert!(hit.iter().all(|h| *h));
    assert_eq!((refused, spared), (20, 0));
}

#[tokio::test]
async fn partial_blackhole_freezes_only_the_drawn_open_connections() {
    const N: usize = 40;
    let seed = 9;
    let echo = echo_server().await;
    let proxy = seeded_proxy(echo.addr, seed).await;
    let conns = open_healthy(&proxy, N).await;

    proxy
        .handle()
        .set(Toxics::blackhole().with_toxicity(toxicity(0.5)));
    let want = expected(seed, N, 0.5);
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                s.write_all(b"y").await.unwrap();
                let mut b = [0u8; 1];
                // Frozen: nothing comes back within QUIET.
                timeout(QUIET, s.read_exact(&mut b)).await.is_err()
            })
        })
        .collect();
    let mut frozen = Vec::new();
    for t in tasks {
        frozen.push(t.await.unwrap());
    }
    assert_eq!(frozen, want);
    proxy.shutdown().await;
}

#[tokio::test]
async fn partial_blackhole_at_accept_swallows_only_the_drawn_new_connections() {
    const N: usize = 30;
    let seed = 77;
    let echo = echo_server().await;
    let proxy = seeded_proxy(echo.addr, seed).await;
    proxy
        .handle()
        .set(Toxics::blackhole().with_toxicity(toxicity(0.4)));
    let mut conns = Vec::new();
    for _ in 0..N {
        conns.push(TcpStream::connect(proxy.addr()).await.unwrap());
    }
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                s.write_all(b"z").await.unwrap();
                let mut b = [0u8; 1];
                timeout(QUIET, s.read_exact(&mut b)).await.is_err()
            })
        })
        .collect();
    let mut swallowed = Vec::new();
    for t in tasks {
        swallowed.push(t.await.unwrap());
    }
    let want = expected(seed, N, 0.4);
    assert_eq!(swallowed, want);
    let counters = proxy.counters();
    let n_hit = want.iter().filter(|h| **h).count() as u64;
    assert_eq!(counters.blackholed, n_hit);
    assert_eq!(counters.spared, N as u64 - n_hit);
    proxy.shutdown().await;
}

#[tokio::test]
async fn partial_reset_kills_only_the_drawn_open_connections() {
    const N: usize = 30;
    let seed = 3;
    let echo = echo_server().await;
    let proxy = seeded_proxy(echo.addr, seed).await;
    let mut conns = open_healthy(&proxy, N).await;

    proxy
        .handle()
        .set(Toxics::reset().with_toxicity(toxicity(0.25)));
    let want = expected(seed, N, 0.25);
    let n_hit = want.iter().filter(|h| **h).count() as u64;
    eventually("the drawn connections are reset", || {
        proxy.counters().reset == n_hit
    })
    .await;
    // Back to normal: the spared connections never noticed, the others are gone.
    proxy.handle().clear();
    for (i, s) in conns.iter_mut().enumerate() {
        let result = round_trip(s, b"after").await;
        if want[i] {
            let kind = result.expect_err("a reset connection").kind();
            assert!(
                matches!(
                    kind,
                    ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::UnexpectedEof
                ),
                "connection {i}: {kind:?}"
            );
        } else {
            assert_eq!(result.unwrap(), b"after", "connection {i}");
        }
    }
    assert_eq!(proxy.counters().reset, n_hit);
    proxy.shutdown().await;
}

#[tokio::test]
async fn partial_latency_delays_only_the_drawn_connections() {
    const N: usize = 16;
    let seed = 11;
    let delay = Duration::from_millis(200);
    let echo = echo_server().await;
    let proxy = seeded_proxy(echo.addr, seed).await;
    proxy
        .handle()
        .set(Toxics::latency(delay, Duration::ZERO).with_toxicity(toxicity(0.5)));
    let mut conns = Vec::new();
    for _ in 0..N {
        conns.push(TcpStream::connect(proxy.addr()).await.unwrap());
    }
    let want = expected(seed, N, 0.5);
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let start = Instant::now();
                round_trip(&mut s, b"t").await.unwrap();
                start.elapsed()
            })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        let took = t.await.unwrap();
        if want[i] {
            assert!(took >= 2 * delay, "connection {i} took {took:?}");
        } else {
            assert!(took < 2 * delay, "connection {i} took {took:?}");
        }
    }
    proxy.shutdown().await;
}

#[test]
fn schedules_take_a_toxicity_per_phase_and_name_a_bad_one() {
    let sch = Schedule::from_toml_str(
        r#"
        [[phase]]
        from = "1s"
        to = "5s"
        mode = "reset"
        toxicity = 0.3

        [[phase]]
        from = "5s"
        to = "6s"
        mode = "blackhole"
        "#,
    )
    .unwrap();
    assert_eq!(
        sch.mode_at(Duration::from_secs(2)),
        Toxics::reset().with_toxicity(toxicity(0.3))
    );
    assert_eq!(sch.mode_at(Duration::from_secs(5)), Toxics::blackhole());
    assert_eq!(sch.outage_windows()[0].label, "reset; toxicity 0.3");
    let text = toml::to_string(&sch).unwrap();
    assert_eq!(Schedule::from_toml_str(&text).unwrap(), sch, "{text}");

    let e = Schedule::from_toml_str(
        "[[phase]]\nfrom = \"0s\"\nto = \"1s\"\nmode = \"reset\"\ntoxicity = 2\n",
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "invalid schedule: phase[0].toxicity = 2: expected a number from 0 to 1 (the share of connections affected)"
    );
    let e = Schedule::from_toml_str("[[phase]]\nfrom = \"0s\"\nto = \"1s\"\ntoxicity = \"half\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("phase[0].toxicity = \"half\""), "{e}");
}

#[tokio::test]
async fn the_control_api_sets_and_shows_a_toxicity() {
    let echo = echo_server().await;
    let proxy = ChaosProxy::start(any_port(), echo.addr).await.unwrap();
    let control = proxy.serve_control(any_port()).await.unwrap();
    let (status, body) = http(
        control,
        "PUT",
        "/toxics",
        r#"{"mode": "reset", "toxicity": 0.25}"#,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["mode"], "reset");
    assert_eq!(body["toxicity"], 0.25);
    assert_eq!(
        proxy.handle().toxics(),
        Toxics::reset().with_toxicity(toxicity(0.25))
    );
    let (status, body) = http(control, "PUT", "/toxics", r#"{"toxicity": 1.01}"#).await;
    assert_eq!(status, 400);
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("toxicity = 1.01"), "{error}");
    assert_eq!(proxy.handle().toxics().toxicity, toxicity(0.25));
    let (_, counters) = http(control, "GET", "/counters", "").await;
    assert!(counters.get("spared").is_some(), "{counters}");
    proxy.shutdown().await;
}
