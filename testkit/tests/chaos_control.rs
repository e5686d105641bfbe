//! The HTTP/JSON control endpoint, spoken to with raw HTTP/1.1 over TCP.

mod chaos_common;

use std::time::Duration;

use chaos_common::*;
use mssql_testkit::chaos::{ChaosProxy, Mode, Toxics};
use serde_json::json;
use tokio::net::TcpStream;

#[tokio::test]
async fn toxics_counters_and_schedule_round_trip_over_http() {
    let echo = echo_server().await;
    let proxy = ChaosProxy::start(any_port(), echo.addr).await.unwrap();
    let control = proxy.serve_control(any_port()).await.unwrap();
    assert!(control.ip().is_loopback());
    assert_ne!(control.port(), 0);
    let chaos = proxy.handle();

    // GET /toxics: ok by default.
    let (status, body) = http(control, "GET", "/toxics", "").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"mode": "ok", "upstream": {}, "downstream": {}})
    );

    // PUT /toxics sets them (shorthand keys apply to both directions).
    let (status, body) = http(
        control,
        "PUT",
        "/toxics",
        r#"{"latency": "20ms", "downstream": {"bandwidth": 1000000}}"#,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"mode": "ok",
               "upstream": {"latency": "20ms"},
               "downstream": {"latency": "20ms", "bandwidth": 1000000}})
    );
    assert_eq!(chaos.toxics().upstream.latency, Duration::from_millis(20));
    assert_eq!(chaos.toxics().downstream.bandwidth, Some(1_000_000));

    // Invalid toxics: 400 naming the field; nothing changes.
    let (status, body) = http(
        control,
        "PUT",
        "/toxics",
        r#"{"downstream": {"latency": "soon"}}"#,
    )
    .await;
    assert_eq!(status, 400);
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("downstream.latency = \"soon\""), "{error}");
    assert_eq!(chaos.toxics().upstream.latency, Duration::from_millis(20));
    let (status, _) = http(control, "PUT", "/toxics", "{not json").await;
    assert_eq!(status, 400);

    // The proxy really behaves accordingly; counters move.
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(
        round_trip(&mut c, b"via proxy").await.unwrap(),
        b"via proxy"
    );
    let (status, counters) = http(control, "GET", "/counters", "").await;
    assert_eq!(status, 200);
    assert_eq!(counters["accepted"], 1);
    assert_eq!(counters["active"], 1);
    assert_eq!(counters["bytes_up"], 9);
    assert_eq!(counters["bytes_down"], 9);

    // DELETE /toxics: back to ok.
    let (status, body) = http(control, "DELETE", "/toxics", "").await;
    assert_eq!(status, 200);
    assert_eq!(body["mode"], "ok");
    assert!(chaos.toxics().is_ok());

    // POST /reset: one-shot reset of open connections.
    let (status, _) = http(control, "POST", "/reset", "").await;
    assert_eq!(status, 200);
    let h = proxy.handle();
    eventually("reset counted", || h.counters().reset == 1).await;

    // POST /schedule with a TOML body starts it; GET shows it; DELETE stops it.
    let (status, body) = http(
        control,
        "POST",
        "/schedule",
        "[[phase]]\nfrom = \"0s\"\nto = \"1h\"\nmode = \"refuse\"\n",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["phases"], 1);
    assert_eq!(body["outages"][0]["label"], "refuse");
    eventually("schedule applied", || h.toxics().mode == Mode::Refuse).await;
    let (_, body) = http(control, "GET", "/schedule", "").await;
    assert_eq!(body["running"], true);
    assert_eq!(body["schedule"]["phase"][0]["mode"], "refuse");
    assert_eq!(body["schedule"]["phase"][0]["to"], "1h");
    let (_, body) = http(control, "DELETE", "/schedule", "").await;
    assert_eq!(body, json!({"cancelled": true}));
    let (_, body) = http(control, "GET", "/schedule", "").await;
    assert_eq!(body, json!({"running": false}));
    assert_eq!(
        chaos.toxics(),
        Toxics::refuse(),
        "cancelling keeps the toxics"
    );

    // PUT /toxics also cancels a running schedule (manual override).
    let (status, _) = http(
        control,
        "POST",
        "/schedule",
        "repeat = true\n[[phase]]\nfrom = \"0s\"\nto = \"1h\"\nmode = \"blackhole\"\n",
    )
    .await;
    assert_eq!(status, 200);
    let (_, _) = http(control, "PUT", "/toxics", r#""ok""#).await;
    assert!(chaos.running_schedule().is_none());
    assert!(chaos.toxics().is_ok());

    // A bad schedule: 400 with a one-line message naming the phase and key.
    let (status, body) = http(
        control,
        "POST",
        "/schedule",
        "[[phase]]\nfrom = \"2s\"\nto = \"1s\"\n",
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"],
        "invalid schedule: phase[0].to = \"1s\": must be after `from` (2s)"
    );

    // Unknown path: 404 JSON.
    let (status, body) = http(control, "GET", "/nope", "").await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("/toxics"));

    proxy.shutdown().await;
    assert!(
        TcpStream::connect(control).await.is_err(),
        "control stops with the proxy"
    );
}

#[tokio::test]
async fn control_refuses_non_loopback_addresses() {
    let proxy = ChaosProxy::start(any_port(), "127.0.0.1:9").await.unwrap();
    let err = proxy
        .serve_control("0.0.0.0:0".parse().unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    proxy.shutdown().await;
}
