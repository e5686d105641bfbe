//! One replay of one timeline: start each arm's two regions, play the timeline on each
//! arm's own copy, drive the same open-loop load through every arm, then verify the
//! writes against the databases and compute each arm's figures.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mssql_testkit::tds::ErrorSpec;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::achievable::Oracle;
use crate::arms::{self, Arm, Baseline, Middleware, Region};
use crate::peer::Peer;
use crate::record;
use crate::report::{self, Record, Series, Verification};
use crate::timeline::{Target, Timeline};
use crate::Options;

/// The arms, in the order of the report and the plot.
pub const ARMS: [&str; 3] = ["baseline", "middleware", "peer"];

/// What one replay produced.
pub struct ScenarioRun {
    /// The full report: timeline, settings and every arm's figures.
    pub report: serde_json::Value,
    /// Per-second success rate and p99 latency of each arm, for the plot.
    pub series: Vec<(&'static str, Series)>,
    /// The primary's outage windows (for the plot).
    pub windows: Vec<(Duration, Duration)>,
    /// Whole seconds covered by the series.
    pub seconds: usize,
    /// With `--record-metrics`: the middleware arm's scrapes, one per second.
    pub scrapes: Option<Vec<record::Scrape>>,
    /// With `--requests`: every arm's requests as CSV (see `main.rs`).
    pub requests: Option<String>,
}

/// One arm's regions, client and collected figures.
struct ArmRun {
    name: &'static str,
    primary: Region,
    secondary: Region,
    arm: Arc<Arm>,
    records: Arc<Mutex<Vec<Record>>>,
    acknowledged: Arc<Mutex<Vec<i64>>>,
}

/// Replays `timeline` (already scaled) against every arm, with the failover-group flip
/// at its `flip_at` when `flip`. `verbose` prints the header and progress lines.
pub async fn run_scenario(
    o: &Options,
    timeline: &Timeline,
    flip: bool,
    verbose: bool,
) -> Result<ScenarioRun, Box<dyn std::error::Error>> {
    let flip_at = if flip { timeline.flip_at } else { None };
    let windows = timeline.outage_windows();
    if verbose {
        println!(
        "replaying {:?}: {:.0} s, {} primary outage window(s){}; {} req/s per arm, {} in flight max, {:.0} % writes",
        timeline.name,
        timeline.duration.as_secs_f64(),
        windows.len(),
        if flip_at.is_some() { ", with a failover-group flip" } else { "" },
        o.rate,
        o.concurrency,
        o.writes * 100.0
    );
    }

    let mut arms = Vec::new();
    for name in ARMS {
        let primary = Region::start("westeurope", o.seed).await?;
        let secondary = Region::start("northeurope", o.seed.wrapping_add(1)).await?;
        primary.seed().await?;
        secondary.seed().await?;
        // Failover-group semantics: the secondary is a read-only replica until a flip.
        secondary.server.faults().set_read_only(true);
        let arm = match name {
            "baseline" => Arm::Baseline(Baseline::new(
                primary.proxy.addr().port(),
                o.baseline_timeout,
            )),
            "middleware" => Arm::Middleware(Middleware::new(
                &primary, &secondary, o.budget, o.min_idle, o.max_pool,
            )?),
            _ => Arm::Peer(Peer::new(&primary, &secondary, o.budget).await?),
        };
        arms.push(ArmRun {
            name,
            primary,
            secondary,
            arm: Arc::new(arm),
            records: Arc::default(),
            acknowledged: Arc::default(),
        });
    }
    for run in &arms {
        match &*run.arm {
            Arm::Middleware(m) => {
                m.stack.wait_for_probes(Duration::from_secs(5)).await;
            }
            Arm::Peer(p) => p.wait_until_healthy(Duration::from_secs(5)).await,
            Arm::Baseline(_) => {}
        }
    }

    let start = Instant::now();
    for run in &arms {
        if let Some(log) = run.arm.attempt_log() {
            *log.start.lock().map_err(|_| "poisoned")? = Some(start);
        }
    }
    let mut guards = Vec::new();
    let mut tasks = Vec::new();
    for run in &arms {
        for (region, target) in [
            (&run.primary, Target::Primary),
            (&run.secondary, Target::Secondary),
        ] {
            if let Some(schedule) = timeline.schedule(target)? {
                guards.push(region.proxy.handle().run_schedule(schedule));
            }
            for (i, phase) in timeline.login_errors(target).into_iter().enumerate() {
                let faults = region.server.faults();
                let trigger = phase.login_trigger(o.seed.wrapping_add(i as u64));
                tasks.push(tokio::spawn(async move {
                    tokio::time::sleep_until(start + phase.from).await;
                    faults.fail_logins(ErrorSpec::known(phase.error), trigger);
                    tokio::time::sleep_until(start + phase.to).await;
                    faults.clear_login_faults();
                }));
            }
        }
        if let Some(at) = flip_at {
            let (old, new) = (run.primary.server.faults(), run.secondary.server.faults());
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep_until(start + at).await;
                old.set_read_only(true);
                new.set_read_only(false);
            }));
        }
    }

    // With --record-metrics: the middleware arm's exposition, every second from `start`.
    let recording = arms
        .iter()
        .find_map(|run| match (&*run.arm, &o.record_metrics) {
            (Arm::Middleware(m), Some(_)) => Some(record::Recording::start(
                m.stack.clone(),
                start,
                timeline.duration.as_secs_f64().ceil() as usize + 1,
            )),
            _ => None,
        });
    let loads: Vec<_> = arms
        .iter()
        .map(|run| {
            tokio::spawn(load(
                run.arm.clone(),
                run.records.clone(),
                run.acknowledged.clone(),
                start,
                timeline.duration,
                o.clone(),
            ))
        })
        .collect();
    // The middleware's view of its regions, sampled every 100 ms: state changes go into
    // the report (serving region, health grade, writability, breaker); and each region's pool
    // every 500 ms (`pool_timeline`, see `pool_sample`).
    let region_log: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let pool_log: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let middleware = arms.iter().find_map(|run| match &*run.arm {
        Arm::Middleware(m) => Some(m),
        _ => None,
    });
    let sampler = if let Some(m) = middleware {
        let (stack, log, pools) = (m.stack.clone(), region_log.clone(), pool_log.clone());
        Some(tokio::spawn(async move {
            let mut last = String::new();
            for tick in 0u64.. {
                if tick % 5 == 0 {
                    let t_s = start.elapsed().as_secs_f64();
                    let samples: Vec<_> = stack
                        .pools()
                        .iter()
                        .map(|(name, pool)| pool_sample(t_s, name, pool))
                        .collect();
                    if let Ok(mut log) = pools.lock() {
                        log.extend(samples);
                    }
                }
                let state: Vec<String> = stack
                    .health()
                    .iter()
                    .map(|r| {
                        format!(
                            "{}:{}{}{}{} breaker={}",
                            r.name,
                            r.grade.as_str(),
                            if r.writable { ",rw" } else { ",ro" },
                            if r.serving_reads { ",reads" } else { "" },
                            if r.serving_writes { ",writes" } else { "" },
                            r.breaker.as_str()
                        )
                    })
                    .collect();
                let state = state.join(" ");
                if state != last {
                    if let Ok(mut log) = log.lock() {
                        log.push(json!({ "t_s": start.elapsed().as_secs_f64(), "regions": state }));
                    }
                    last = state;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }))
    } else {
        None
    };
    let progress = tokio::spawn({
        let records: Vec<_> = arms.iter().map(|r| (r.name, r.records.clone())).collect();
        let duration = timeline.duration;
        async move {
            if !verbose {
                return;
            }
            let step = Duration::from_secs(5);
            let mut at = step;
            while at < duration {
                tokio::time::sleep_until(start + at).await;
                let line: Vec<String> = records
                    .iter()
                    .map(|(name, recs)| {
                        let recs = recs.lock().map(|r| r.clone()).unwrap_or_default();
                        let recent: Vec<_> = recs.iter().filter(|r| r.at + step >= at).collect();
                        let ok = recent.iter().filter(|r| r.ok).count();
                        format!(
                            "{name} {:>5.1} % ok",
                            100.0 * ok as f64 / recent.len().max(1) as f64
                        )
                    })
                    .collect();
                println!("  t={:>3.0}s  {}", at.as_secs_f64(), line.join("   "));
                at += step;
            }
        }
    });
    for load in loads {
        load.await?;
    }
    let scrapes = match recording {
        Some(recording) => Some(recording.finish().await?),
        None => None,
    };
    progress.abort();
    if let Some(sampler) = sampler {
        sampler.abort();
    }
    drop(guards);
    for task in tasks {
        task.abort();
    }

    // Read the databases back (directly, not through the proxies) and compare with what
    // each arm acknowledged.
    let oracle = Oracle::new(timeline, flip_at, o.budget);
    let mut arm_reports = serde_json::Map::new();
    let mut series = Vec::new();
    let seconds = timeline.duration.as_secs_f64().ceil() as usize;
    let mut requests = o
        .requests
        .is_some()
        .then(|| String::from("arm,start_s,kind,ok,achievable,latency_ms,error\n"));
    for run in &arms {
        for region in [&run.primary, &run.secondary] {
            region.proxy.handle().clear();
            region.server.faults().clear_login_faults();
        }
        let mut found = run.primary.write_ids().await?;
        found.extend(run.secondary.write_ids().await?);
        let acknowledged = run
            .acknowledged
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default();
        let verification: Verification = report::verify(&acknowledged, &found);
        let records = run.records.lock().map(|r| r.clone()).unwrap_or_default();
        if let Some(csv) = &mut requests {
            for r in &records {
                csv.push_str(&format!(
                    "{},{:.3},{},{},{:.3},{:.1},{}\n",
                    run.name,
                    r.at.as_secs_f64(),
                    if r.write { "write" } else { "read" },
                    u8::from(r.ok),
                    oracle.achievable(r.at, r.write),
                    r.latency.as_secs_f64() * 1000.0,
                    r.error.as_deref().unwrap_or(""),
                ));
            }
        }
        let (attempts_in_windows, mut extra) = match run.arm.attempt_log() {
            None => (
                records
                    .iter()
                    .filter(|r| !r.shed && report::in_windows(r.at, &windows))
                    .count() as u64,
                json!({}),
            ),
            Some(log) => {
                let attempts = log.attempts.lock().map(|a| a.clone()).unwrap_or_default();
                let in_windows = attempts
                    .iter()
                    .filter(|a| report::in_windows(a.at, &windows))
                    .count() as u64;
                // The first read answered by `region` at or after `after`.
                let first_read = |region: &str, after: Duration| {
                    attempts
                        .iter()
                        .find(|a| a.ok && a.read && a.region == region && a.at >= after)
                        .map(|a| (a.at - after).as_secs_f64())
                };
                let per_window: Vec<Option<f64>> = windows
                    .iter()
                    .map(|(from, _)| first_read(run.secondary.name, *from))
                    .collect();
                let failover = per_window
                    .iter()
                    .flatten()
                    .copied()
                    .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
                let failback = windows
                    .last()
                    .and_then(|(_, to)| first_read(run.primary.name, *to));
                (
                    in_windows,
                    json!({
                        "failover_s": failover,
                        "failover_s_per_window": per_window,
                        "failback_s": failback,
                    }),
                )
            }
        };
        if let (Arm::Middleware(m), serde_json::Value::Object(e)) = (&*run.arm, &mut extra) {
            e.insert(
                "retry_budget".into(),
                json!(format!("{:?}", m.stack.retry_budget().snapshot())),
            );
            e.insert(
                "region_states".into(),
                json!(region_log.lock().map(|l| l.clone()).unwrap_or_default()),
            );
            e.insert(
                "pool_timeline".into(),
                json!(pool_log.lock().map(|l| l.clone()).unwrap_or_default()),
            );
        }
        // What an oracle could have served of the same requests.
        if let (serde_json::Value::Object(e), serde_json::Value::Object(a)) =
            (&mut extra, oracle.figures(&records, &windows))
        {
            e.extend(a);
        }
        let figures = report::figures(
            &records,
            &windows,
            o.budget,
            attempts_in_windows,
            verification,
            extra,
        );
        arm_reports.insert(run.name.to_owned(), figures.json);
        series.push((run.name, report::per_second(&records, seconds)));
    }
    let report = json!({
        "timeline": {
            "name": timeline.name,
            "duration_s": timeline.duration.as_secs_f64(),
            "flip_at_s": flip_at.map(|d| d.as_secs_f64()),
            "outage_windows_s": windows.iter().map(|(a, b)| [a.as_secs_f64(), b.as_secs_f64()]).collect::<Vec<_>>(),
        },
        "settings": {
            "seed": o.seed,
            "rate_per_s": o.rate,
            "concurrency": o.concurrency,
            "write_share": o.writes,
            "idempotent_share": o.idempotent,
            "budget_ms": o.budget.as_millis() as u64,
            "baseline_timeout_ms": o.baseline_timeout.as_millis() as u64,
            "middleware_min_idle": o.min_idle,
            "middleware_max_pool": o.max_pool,
        },
        "arms": arm_reports,
    });
    Ok(ScenarioRun {
        report,
        series,
        windows,
        seconds,
        scrapes,
        requests,
    })
}

/// Open-loop load: `rate` requests per second whatever the latency; at most `concurrency`
/// in flight, beyond which a request is shed at once (an API at its limit answers 503).
async fn load(
    arm: Arc<Arm>,
    records: Arc<Mutex<Vec<Record>>>,
    acknowledged: Arc<Mutex<Vec<i64>>>,
    start: Instant,
    duration: Duration,
    o: Options,
) {
    let slots = Arc::new(Semaphore::new(o.concurrency));
    let mut rng = fastrand::Rng::with_seed(o.seed);
    let next_write = Arc::new(AtomicI64::new(1));
    let interval = Duration::from_secs_f64(1.0 / o.rate);
    let mut ticker = tokio::time::interval_at(start, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut in_flight = Vec::new();
    loop {
        let tick = ticker.tick().await;
        let at = tick.saturating_duration_since(start);
        if at >= duration {
            break;
        }
        let write = rng.f64() < o.writes;
        let idempotent = rng.f64() < o.idempotent;
        let item = rng.i32(1..=arms::ITEMS);
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            records
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Record {
                    at,
                    latency: Duration::ZERO,
                    write,
                    ok: false,
                    outcome_unknown: false,
                    shed: true,
                    error: None,
                });
            continue;
        };
        let (arm, records, acknowledged, next_write) = (
            arm.clone(),
            records.clone(),
            acknowledged.clone(),
            next_write.clone(),
        );
        let started = Instant::now();
        let budget = o.budget;
        let task = tokio::spawn(async move {
            let _permit = permit;
            let result = if write {
                let id = next_write.fetch_add(1, Ordering::Relaxed);
                let result = arm.write(id, idempotent).await;
                // Acknowledged by the arm (even late): it must then be in a database.
                if result.ok {
                    acknowledged
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(id);
                }
                result
            } else {
                arm.read(item).await
            };
            // The API's caller gave up at its deadline: a later success is a failure to
            // it (`late`), and for a write it cannot know whether it happened.
            let latency = started.elapsed();
            let ok = report::on_time(result.ok, latency, budget);
            let late = result.ok && !ok;
            records
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Record {
                    at,
                    latency,
                    write,
                    ok,
                    outcome_unknown: result.outcome_unknown || (late && write),
                    shed: false,
                    error: if late {
                        Some("late".into())
                    } else {
                        result.error
                    },
                });
        });
        in_flight.push((task, at, started, write));
        in_flight.retain(|(t, ..)| !t.is_finished());
    }
    // Give each call still in flight until its own deadline (+ the grace) to finish:
    // past that it is a failure whatever happens (`late`), so a call still hanging then
    // is abandoned and counted as failed (its client gave up; for a write, with an
    // unknown outcome).
    for (task, at, started, write) in in_flight {
        let abort = task.abort_handle();
        let give_up = started + o.budget + report::LATE_GRACE + Duration::from_millis(10);
        tokio::select! {
            _ = task => {}
            _ = tokio::time::sleep_until(give_up) => {
                abort.abort();
                records.lock().unwrap_or_else(|e| e.into_inner()).push(Record {
                    at,
                    latency: started.elapsed(),
                    write,
                    ok: false,
                    outcome_unknown: write,
                    shed: false,
                    error: Some("abandoned_at_end".into()),
                });
            }
        }
    }
}

/// One region's pool at `t_s`: connections open and idle, checkouts waiting now, and the
/// counters since start (connects made and failed, connections proven with a round trip
/// before reuse, connections closed as broken or invalid, checkouts that timed out, gets
/// that had to wait) — the difference of two samples is what happened between them.
fn pool_sample(t_s: f64, region: &str, pool: &mssql_resilience::pool::Pool) -> serde_json::Value {
    let state = pool.state();
    let stats = &state.statistics;
    let checkouts = pool.checkout_stats();
    let manager = pool.manager_stats();
    json!({
        "t_s": t_s,
        "region": region,
        "open": state.connections,
        "idle": state.idle_connections,
        "waiting": checkouts.pending,
        "connects": manager.connects(),
        "connect_failures": manager.connect_failures(),
        "late_connects": manager.late_connects(),
        "checks": manager.checks(),
        "closed_broken": stats.connections_closed_broken,
        "closed_invalid": stats.connections_closed_invalid,
        "checkouts_timed_out": checkouts.timed_out,
        "gets_waited": stats.get_waited,
    })
}
