//! Schedules played on tokio's paused clock: phases switch at exact virtual times.

mod chaos_common;

use std::time::Duration;

use chaos_common::any_port;
use mssql_testkit::chaos::{ChaosProxy, Mode, Phase, Schedule, ScheduleErrorKind, Toxics};
use tokio::time::{advance, Instant};

const TIMELINE: &str = r#"
[[phase]]
from = "0s"
to = "5s"
mode = "ok"

[[phase]]
from = "5s"
to = "12s"
mode = "blackhole"

[[phase]]
from = "12s"
to = "14s"
latency = "200ms"
jitter = "50ms"

[[phase]]
from = "20s"
to = "25s"
mode = "reset"
"#;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

async fn idle_proxy() -> ChaosProxy {
    // The upstream is never dialled in these tests.
    ChaosProxy::start(any_port(), "127.0.0.1:9")
        .await
        .expect("start proxy")
}

/// Lets spawned tasks run after the clock moved.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn runner_switches_at_the_right_virtual_times() {
    let proxy = idle_proxy().await;
    let chaos = proxy.handle();
    let mut changes = chaos.subscribe();
    let start = Instant::now();
    let guard = chaos.run_schedule(Schedule::from_toml_str(TIMELINE).unwrap());

    // With the clock paused, tokio jumps straight to each timer: every change
    // is observed at exactly its phase boundary.
    let mut seen = Vec::new();
    for _ in 0..5 {
        changes.changed().await.unwrap();
        let toxics = changes.borrow_and_update().clone();
        seen.push((start.elapsed(), toxics));
    }
    assert_eq!(
        seen,
        vec![
            (secs(5), Toxics::blackhole()),
            (
                secs(12),
                Toxics::latency(Duration::from_millis(200), Duration::from_millis(50))
            ),
            (secs(14), Toxics::ok()),
            (secs(20), Toxics::reset()),
            (secs(25), Toxics::ok()),
        ]
    );
    guard.finished().await;
    assert_eq!(start.elapsed(), secs(25));
    assert!(chaos.running_schedule().is_none());
    proxy.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn runner_follows_manual_advance() {
    let proxy = idle_proxy().await;
    let chaos = proxy.handle();
    let _guard = chaos.run_schedule(Schedule::from_toml_str(TIMELINE).unwrap());
    settle().await;
    assert_eq!(chaos.toxics(), Toxics::ok());

    advance(Duration::from_millis(4_999)).await;
    settle().await;
    assert_eq!(chaos.toxics(), Toxics::ok(), "one millisecond early");

    advance(Duration::from_millis(1)).await;
    settle().await;
    assert_eq!(chaos.toxics().mode, Mode::Blackhole);

    let running = chaos.running_schedule().expect("running");
    assert_eq!(running.elapsed, secs(5));
    assert_eq!(running.schedule.phases().len(), 4);

    advance(secs(7)).await;
    settle().await;
    assert_eq!(chaos.toxics().upstream.latency, Duration::from_millis(200));
    proxy.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn dropping_the_guard_cancels_and_keeps_the_current_toxics() {
    let proxy = idle_proxy().await;
    let chaos = proxy.handle();
    let guard = chaos.run_schedule(Schedule::from_toml_str(TIMELINE).unwrap());
    advance(secs(6)).await;
    settle().await;
    assert_eq!(chaos.toxics(), Toxics::blackhole());
    drop(guard);
    assert!(chaos.running_schedule().is_none());
    advance(secs(60)).await;
    settle().await;
    assert_eq!(
        chaos.toxics(),
        Toxics::blackhole(),
        "no phase applied after cancel"
    );
    chaos.clear();
    proxy.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_new_schedule_replaces_the_running_one() {
    let proxy = idle_proxy().await;
    let chaos = proxy.handle();
    let first = chaos.run_schedule(Schedule::from_toml_str(TIMELINE).unwrap());
    let second = chaos
        .run_schedule(Schedule::new(vec![Phase::new(secs(1), secs(2), Mode::Refuse)]).unwrap());
    advance(secs(1)).await;
    settle().await;
    assert_eq!(chaos.toxics(), Toxics::refuse());
    assert!(first.is_finished(), "the first schedule was cancelled");
    advance(secs(4)).await; // 5s: the first schedule would black-hole now
    settle().await;
    assert_eq!(chaos.toxics(), Toxics::ok());
    second.finished().await;
    proxy.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn repeating_schedule_loops() {
    let proxy = idle_proxy().await;
    let chaos = proxy.handle();
    let schedule = Schedule::from_toml_str(
        r#"
        repeat = true
        period = "10s"
        [[phase]]
        from = "0s"
        to = "3s"
        mode = "refuse"
        "#,
    )
    .unwrap();
    let mut changes = chaos.subscribe();
    let start = Instant::now();
    let guard = chaos.run_schedule(schedule);
    let mut seen = Vec::new();
    for _ in 0..5 {
        changes.changed().await.unwrap();
        seen.push((start.elapsed().as_secs(), changes.borrow_and_update().mode));
    }
    assert_eq!(
        seen,
        vec![
            (0, Mode::Refuse),
            (3, Mode::Ok),
            (10, Mode::Refuse),
            (13, Mode::Ok),
            (20, Mode::Refuse),
        ]
    );
    assert!(!guard.is_finished());
    assert!(chaos.cancel_schedule());
    assert!(!chaos.cancel_schedule());
    proxy.shutdown().await;
}

#[tokio::test]
async fn from_file_reads_and_reports_errors_with_the_file_name() {
    let dir = std::env::temp_dir().join(format!("chaos-schedule-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, TIMELINE).unwrap();
    let schedule = Schedule::from_file(&good).unwrap();
    assert_eq!(schedule.phases().len(), 4);
    let outages: Vec<_> = schedule
        .outage_windows()
        .iter()
        .map(|w| (w.from.as_secs(), w.to.as_secs(), w.label.clone()))
        .collect();
    assert_eq!(
        outages,
        vec![
            (5, 12, "blackhole".to_owned()),
            (12, 14, "latency 200ms±50ms".to_owned()),
            (20, 25, "reset".to_owned()),
        ]
    );

    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[[phase]]\nfrom = \"0s\"\nto = \"5s\"\n[[phase]]\nfrom = \"3s\"\nto = \"6s\"\nmode = \"blackhole\"\n",
    )
    .unwrap();
    let err = Schedule::from_file(&bad).unwrap_err();
    let field = err.field_error().expect("a field error");
    assert_eq!(field.path, "phase[1].from");
    assert_eq!(field.value.as_deref(), Some("\"3s\""));
    assert_eq!(
        err.to_string(),
        format!(
            "{}: invalid schedule: phase[1].from = \"3s\": overlaps phase[0], which ends at 5s",
            bad.display()
        )
    );

    let missing = dir.join("missing.toml");
    let err = Schedule::from_file(&missing).unwrap_err();
    assert!(matches!(err.kind(), ScheduleErrorKind::Io(_)));
    assert!(err.to_string().starts_with(&missing.display().to_string()));
    std::fs::remove_dir_all(&dir).unwrap();
}
