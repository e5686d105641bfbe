//! The chaos proxy over real loopback TCP: every toxic, run-time switching, counters.
//!
//! Timing assertions are only ever "took at least"; "does not happen" is checked
//! by a bounded wait (`QUIET`) whose expiry is the expected outcome.

mod chaos_common;

use std::io::ErrorKind;
use std::time::Duration;

use chaos_common::*;
use mssql_testkit::chaos::{ChaosProxy, DirectionToxics, Mode, ProxyConfig, Toxics};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

async fn proxy_to(upstream: std::net::SocketAddr) -> ChaosProxy {
    ChaosProxy::start(any_port(), upstream)
        .await
        .expect("start proxy")
}

/// Reads once, expecting the read to stay pending for QUIET.
async fn assert_read_hangs(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match timeout(QUIET, s.read(&mut buf)).await {
        Err(_elapsed) => {}
        Ok(Ok(0)) => panic!("connection was closed (EOF), expected it to hang"),
        Ok(Ok(n)) => panic!("read {n} bytes, expected nothing"),
        Ok(Err(e)) => panic!("read failed with {e:?}, expected it to hang"),
    }
}

/// Reads until something happens; returns the error kind, or None for EOF.
async fn read_outcome(s: &mut TcpStream) -> Option<ErrorKind> {
    let mut buf = Vec::new();
    match timeout(EVENTUALLY, s.read_to_end(&mut buf))
        .await
        .expect("the connection should end")
    {
        Ok(_) => None,
        Err(e) => Some(e.kind()),
    }
}

#[tokio::test]
async fn passthrough_forwards_both_ways_and_counts() {
    let echo = echo_server().await;
    let proxy = proxy_to(echo.addr).await;
    assert_eq!(proxy.upstream(), echo.addr.to_string());
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(round_trip(&mut c, b"hello").await.unwrap(), b"hello");
    assert_eq!(round_trip(&mut c, &big).await.unwrap(), big);
    let n = 5 + big.len() as u64;
    let counters = proxy.counters();
    assert_eq!(counters.accepted, 1);
    assert_eq!(counters.active, 1);
    assert_eq!(counters.bytes_up, n);
    assert_eq!(counters.bytes_down, n);
    // A clean close propagates and the connection is no longer active.
    c.shutdown().await.unwrap();
    assert_eq!(read_outcome(&mut c).await, None);
    let h = proxy.handle();
    eventually("connection closed", || h.counters().active == 0).await;
    proxy.shutdown().await;
}

#[tokio::test]
async fn blackhole_freezes_open_connections_without_closing_them() {
    let echo = echo_server().await;
    let proxy = proxy_to(echo.addr).await;
    let chaos = proxy.handle();
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(round_trip(&mut c, b"before").await.unwrap(), b"before");

    chaos.set_mode(Mode::Blackhole);
    c.write_all(b"lost").await.unwrap();
    assert_read_hangs(&mut c).await;
    assert_read_hangs(&mut c).await; // still not closed
    let h = proxy.handle();
    eventually("bytes discarded", || h.counters().bytes_discarded == 4).await;
    let during = proxy.counters();
    assert_eq!(during.blackholed, 1);
    assert_eq!(during.bytes_discarded, 4);
    assert_eq!(during.active, 1);

    // The connection survived: once the black-hole ends it works again (the
    // bytes sent during the black-hole are gone).
    chaos.clear();
    assert_eq!(round_trip(&mut c, b"after").await.unwrap(), b"after");
    proxy.shutdown().await;
}

#[tokio::test]
async fn blackhole_swallows_new_connections_and_never_dials_upstream() {
    let mut echo = echo_server().await;
    let proxy = ChaosProxy::start_with(
        ProxyConfig::new(any_port(), echo.addr).with_toxics(Toxics::blackhole()),
    )
    .await
    .unwrap();
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    c.write_all(b"PRELOGIN").await.unwrap();
    assert_read_hangs(&mut c).await;
    let h = proxy.handle();
    eventually("bytes discarded", || h.counters().bytes_discarded == 8).await;
    assert_eq!(proxy.counters().blackholed, 1);
    assert!(
        echo.accepted.try_recv().is_err(),
        "upstream must not be dialled"
    );

    // A connection accepted into a black-hole stays dead after it ends...
    proxy.handle().clear();
    c.write_all(b"more").await.unwrap();
    assert_read_hangs(&mut c).await;
    // ...while new connections work.
    let mut fresh = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(round_trip(&mut fresh, b"ok").await.unwrap(), b"ok");
    proxy.shutdown().await;
}

#[tokio::test]
async fn blackhole_holds_a_close_until_it_ends() {
    let mut rec = recording_server(b"", false).await;
    let proxy = proxy_to(rec.addr).await;
    let chaos = proxy.handle();
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    c.write_all(b"abc").await.unwrap();
    let h = proxy.handle();
    eventually("bytes forwarded", || h.counters().bytes_up == 3).await;
    chaos.set_mode(Mode::Blackhole);
    c.shutdown().await.unwrap();
    assert!(
        timeout(QUIET, rec.done.recv()).await.is_err(),
        "the server saw the close during the black-hole"
    );
    chaos.clear();
    let seen = timeout(EVENTUALLY, rec.done.recv()).await.unwrap().unwrap();
    assert_eq!(seen.bytes, b"abc");
    assert_eq!(seen.end, Ok(()));
    proxy.shutdown().await;
}

#[tokio::test]
async fn one_way_blackhole_discards_only_that_direction() {
    let mut rec = recording_server(b"", false).await;
    let proxy = ChaosProxy::start_with(
        ProxyConfig::new(any_port(), rec.addr)
            .with_toxics(Toxics::ok().with_upstream(DirectionToxics::new().with_blackhole())),
    )
    .await
    .unwrap();
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    c.write_all(b"dropped").await.unwrap();
    let h = proxy.handle();
    eventually("discarded", || h.counters().bytes_discarded == 7).await;
    proxy.handle().update(|t| t.upstream.blackhole = false);
    c.write_all(b"kept").await.unwrap();
    eventually("forwarded", || h.counters().bytes_up == 4).await;
    c.shutdown().await.unwrap();
    let seen = timeout(EVENTUALLY, rec.done.recv()).await.unwrap().unwrap();
    assert_eq!(seen.bytes, b"kept");
    assert_eq!(proxy.counters().blackholed, 0, "mode was never blackhole");
    proxy.shutdown().await;
}

#[tokio::test]
async fn reset_kills_open_connections_with_rst_on_both_sides() {
    let mut rec = recording_server(b"hi", false).await;
    let proxy = proxy_to(rec.addr).await;
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    let mut hi = [0u8; 2];
    c.read_exact(&mut hi).await.unwrap();
    proxy.handle().set(Toxics::reset());
    assert_eq!(read_outcome(&mut c).await, Some(ErrorKind::ConnectionReset));
    let upstream_side = timeout(EVENTUALLY, rec.done.recv()).await.unwrap().unwrap();
    assert_eq!(upstream_side.end, Err(ErrorKind::ConnectionReset));
    let counters = proxy.counters();
    assert_eq!(counters.reset, 1);
    assert_eq!(counters.refused, 0);

    // While the mode stays `reset`, new connections are reset at once.
    assert_eq!(
        connect_and_read_outcome(proxy.addr()).await,
        Some(ErrorKind::ConnectionReset)
    );
    assert_eq!(proxy.counters().refused, 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn reset_connections_is_one_shot() {
    let echo = echo_server().await;
    let proxy = proxy_to(echo.addr).await;
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(round_trip(&mut c, b"x").await.unwrap(), b"x");
    proxy.handle().reset_connections();
    assert_eq!(read_outcome(&mut c).await, Some(ErrorKind::ConnectionReset));
    assert_eq!(proxy.handle().toxics(), Toxics::ok());
    let mut c2 = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(round_trip(&mut c2, b"y").await.unwrap(), b"y");
    assert_eq!(proxy.counters().reset, 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn refuse_resets_new_connections_and_spares_open_ones() {
    let mut echo = echo_server().await;
    let proxy = proxy_to(echo.addr).await;
    let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(round_trip(&mut open, b"1").await.unwrap(), b"1");
    let _ = echo.accepted.recv().await;

    proxy.handle().set_mode(Mode::Refuse);
    // The listener stays open: the handshake completes, then the proxy's RST
    // shows up as ConnectionReset (from connect, or from the first read).
    assert_eq!(
        connect_and_read_outcome(proxy.addr()).await,
        Some(ErrorKind::ConnectionReset)
    );
    assert_eq!(round_trip(&mut open, b"2").await.unwrap(), b"2");
    let counters = proxy.counters();
    assert_eq!((counters.accepted, counters.refused), (2, 1));
    assert!(
        echo.accepted.try_recv().is_err(),
        "a refused connection never reaches upstream"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn unreachable_upstream_resets_the_client() {
    // A port nobody listens on: bind, learn the port, close.
    let dead = tokio::net::TcpListener::bind(any_port()).await.unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let proxy = proxy_to(dead_addr).await;
    assert_eq!(
        connect_and_read_outcome(proxy.addr()).await,
        Some(ErrorKind::ConnectionReset)
    );
    assert_eq!(proxy.counters().upstream_errors, 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn cut_after_downstream_delivers_exactly_n_bytes_then_eof() {
    let echo = echo_server().await;
    let proxy = ChaosProxy::start_with(
        ProxyConfig::new(any_port(), echo.addr)
            .with_toxics(Toxics::ok().with_downstream(DirectionToxics::new().with_cut_after(10))),
    )
    .await
    .unwrap();
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    c.write_all(&[7u8; 100]).await.unwrap();
    let mut got = Vec::new();
    timeout(EVENTUALLY, c.read_to_end(&mut got))
        .await
        .unwrap()
        .expect("a clean EOF after the cut");
    assert_eq!(got, vec![7u8; 10]);
    let h = proxy.handle();
    eventually("cut counted", || h.counters().cut == 1).await;
    assert_eq!(proxy.counters().bytes_down, 10);
    proxy.shutdown().await;
}

#[tokio::test]
async fn cut_after_upstream_lets_the_server_see_exactly_n_bytes() {
    let mut rec = recording_server(b"", false).await;
    let proxy = proxy_to(rec.addr).await;
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    c.write_all(b"12345").await.unwrap();
    let h = proxy.handle();
    eventually("first bytes", || h.counters().bytes_up == 5).await;
    // Set at run time: counts from now.
    h.update(|t| t.upstream.cut_after = Some(100));
    let payload: Vec<u8> = (0..1000u32).map(|i| (i % 256) as u8).collect();
    // The proxy may close while we write; a failed write is fine here.
    let _ = c.write_all(&payload).await;
    let seen = timeout(EVENTUALLY, rec.done.recv()).await.unwrap().unwrap();
    assert_eq!(seen.end, Ok(()));
    assert_eq!(seen.bytes.len(), 105);
    assert_eq!(&seen.bytes[..5], b"12345");
    assert_eq!(&seen.bytes[5..], &payload[..100]);
    proxy.shutdown().await;
}

#[tokio::test]
async fn latency_delays_each_direction_and_applies_to_open_connections() {
    let echo = echo_server().await;
    let proxy = proxy_to(echo.addr).await;
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(round_trip(&mut c, b"warm").await.unwrap(), b"warm");

    proxy
        .handle()
        .set(Toxics::latency(Duration::from_millis(150), Duration::ZERO));
    let t0 = Instant::now();
    assert_eq!(round_trip(&mut c, b"slow").await.unwrap(), b"slow");
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "round trip took only {took:?}"
    );

    // Downstream only, with jitter: at least latency - jitter once.
    proxy.handle().set(Toxics::ok().with_downstream(
        DirectionToxics::new().with_latency(Duration::from_millis(200), Duration::from_millis(50)),
    ));
    let t0 = Instant::now();
    assert_eq!(round_trip(&mut c, b"jitter").await.unwrap(), b"jitter");
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(150),
        "round trip took only {took:?}"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn bandwidth_cap_limits_throughput() {
    let echo = echo_server().await;
    let proxy =
        ChaosProxy::start_with(ProxyConfig::new(any_port(), echo.addr).with_toxics(
            Toxics::ok().with_downstream(DirectionToxics::new().with_bandwidth(20_000)),
        ))
        .await
        .unwrap();
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    let payload = vec![1u8; 20_000];
    let t0 = Instant::now();
    assert_eq!(round_trip(&mut c, &payload).await.unwrap(), payload);
    let took = t0.elapsed();
    // 20 000 bytes at 20 000 B/s, written in 1 000-byte slices: >= 0.95 s.
    assert!(took >= Duration::from_millis(900), "took only {took:?}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn zero_bandwidth_stalls_without_losing_bytes() {
    let echo = echo_server().await;
    let proxy = proxy_to(echo.addr).await;
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    proxy
        .handle()
        .set(Toxics::ok().with_downstream(DirectionToxics::new().with_bandwidth(0)));
    c.write_all(b"held").await.unwrap();
    assert_read_hangs(&mut c).await;
    proxy.handle().clear();
    let mut back = [0u8; 4];
    timeout(EVENTUALLY, c.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&back, b"held");
    assert_eq!(proxy.counters().bytes_discarded, 0);
    proxy.shutdown().await;
}

#[tokio::test]
async fn slow_close_delays_the_servers_close() {
    let rec = recording_server(b"bye", true).await;
    let proxy =
        ChaosProxy::start_with(ProxyConfig::new(any_port(), rec.addr).with_toxics(
            Toxics::ok().with_downstream(
                DirectionToxics::new().with_slow_close(Duration::from_millis(300)),
            ),
        ))
        .await
        .unwrap();
    let t0 = Instant::now();
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    let mut got = Vec::new();
    timeout(EVENTUALLY, c.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    let took = t0.elapsed();
    assert_eq!(got, b"bye");
    assert!(
        took >= Duration::from_millis(300),
        "EOF after only {took:?}"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn toxics_combine() {
    let echo = echo_server().await;
    let proxy = ChaosProxy::start_with(
        ProxyConfig::new(any_port(), echo.addr).with_toxics(
            Toxics::ok().with_downstream(
                DirectionToxics::new()
                    .with_latency(Duration::from_millis(100), Duration::ZERO)
                    .with_cut_after(3),
            ),
        ),
    )
    .await
    .unwrap();
    let t0 = Instant::now();
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    c.write_all(b"abcdef").await.unwrap();
    let mut got = Vec::new();
    timeout(EVENTUALLY, c.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"abc");
    assert!(t0.elapsed() >= Duration::from_millis(100));
    proxy.shutdown().await;
}

#[tokio::test]
async fn handle_subscribe_sees_changes() {
    let echo = echo_server().await;
    let proxy = proxy_to(echo.addr).await;
    let h = proxy.handle();
    let mut rx = h.subscribe();
    h.set(Toxics::ok()); // unchanged: no notification
    h.set_mode(Mode::Refuse);
    timeout(EVENTUALLY, rx.changed()).await.unwrap().unwrap();
    assert_eq!(rx.borrow_and_update().mode, Mode::Refuse);
    assert!(!rx.has_changed().unwrap());
    proxy.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_listener_and_connections() {
    let echo = echo_server().await;
    let proxy = proxy_to(echo.addr).await;
    let addr = proxy.addr();
    let mut c = TcpStream::connect(addr).await.unwrap();
    assert_eq!(round_trip(&mut c, b"z").await.unwrap(), b"z");
    proxy.shutdown().await;
    assert_eq!(
        read_outcome(&mut c).await,
        None,
        "connection closed with FIN"
    );
    let err = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn start_rejects_bad_upstream_and_taken_port() {
    let err = ChaosProxy::start(any_port(), "no-port").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let taken = tokio::net::TcpListener::bind(any_port()).await.unwrap();
    let err = ChaosProxy::start(taken.local_addr().unwrap(), "127.0.0.1:1")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AddrInUse);
    assert!(err.to_string().contains("cannot listen on"), "{err}");
}

#[tokio::test]
async fn latency_delays_the_close_too() {
    let rec = recording_server(b"", true).await;
    let proxy = ChaosProxy::start_with(ProxyConfig::new(any_port(), rec.addr).with_toxics(
        Toxics::ok().with_downstream(
            DirectionToxics::new().with_latency(Duration::from_millis(200), Duration::ZERO),
        ),
    ))
    .await
    .unwrap();
    let t0 = Instant::now();
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(read_outcome(&mut c).await, None);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(200),
        "EOF after only {took:?}"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn many_concurrent_connections() {
    let echo = echo_server().await;
    let proxy = proxy_to(echo.addr).await;
    let addr = proxy.addr();
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..50u32 {
        clients.spawn(async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            let msg = format!("client {i}").into_bytes();
            for _ in 0..5 {
                assert_eq!(round_trip(&mut c, &msg).await.unwrap(), msg);
            }
            msg.len() as u64 * 5
        });
    }
    let mut total = 0;
    while let Some(sent) = clients.join_next().await {
        total += sent.unwrap();
    }
    let h = proxy.handle();
    eventually("all closed", || h.counters().active == 0).await;
    let counters = proxy.counters();
    assert_eq!(counters.accepted, 50);
    assert_eq!((counters.bytes_up, counters.bytes_down), (total, total));
    proxy.shutdown().await;
}
