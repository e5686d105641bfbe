//! The incident replay: the 2023-09-15 West Europe incident, compressed, against two arms
//! at once — what a team writes without this crate, and the full mssql-resilience stack
//! with default settings — each with its own two regions and its own copy of the timeline.
//!
//! ```text
//! cargo run --release --example incident_replay
//! cargo run --release --example incident_replay -- --flip --json target/replay.json
//! cargo run --release --example incident_replay -- --timeline my-outage.toml --duration 30s
//! ```
//!
//! Options: `--timeline FILE` (default: examples/incident-2023-09-15.toml), `--duration D`
//! (stretch or compress the timeline), `--seed N`, `--concurrency N` (requests in flight
//! per arm, default 256), `--rate R` (requests per second per arm, default 200),
//! `--writes F` (share of writes, default 0.1), `--idempotent F` (share of writes with an
//! idempotency key, default 0.5), `--budget D` (each API request's deadline, default 5s),
//! `--baseline-timeout D` (the baseline's per-call timeout, default 30s like ADO.NET's
//! CommandTimeout), `--flip` (a failover-group flip at the timeline's `flip_at`),
//! `--json FILE`, `--svg FILE` (default target/incident-replay.svg).
//!
//! A call counts as a success only when its answer arrives within the request's deadline
//! (`--budget`) + 50 ms, for every arm: the API's own caller has given up by then, so a
//! later answer is a failure labelled `late` (and, for a write, an unknown outcome).

mod arms;
mod plot;
mod report;
mod timeline;

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mssql_resilience::config::duration::parse_duration;
use mssql_testkit::tds::ErrorSpec;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use arms::{Arm, Baseline, Middleware, Region};
use report::{Record, Verification};
use timeline::{Target, Timeline};

const DEFAULT_TIMELINE: &str = include_str!("../incident-2023-09-15.toml");

#[derive(Clone)]
struct Options {
    timeline: Option<String>,
    duration: Option<Duration>,
    seed: u64,
    concurrency: usize,
    rate: f64,
    writes: f64,
    idempotent: f64,
    budget: Duration,
    baseline_timeout: Duration,
    flip: bool,
    json: Option<PathBuf>,
    svg: PathBuf,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        timeline: None,
        duration: None,
        seed: 1,
        concurrency: 256,
        rate: 200.0,
        writes: 0.1,
        idempotent: 0.5,
        budget: Duration::from_secs(5),
        baseline_timeout: Duration::from_secs(30),
        flip: false,
        json: None,
        svg: PathBuf::from("target/incident-replay.svg"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--flip" {
            o.flip = true;
            continue;
        }
        if flag == "-h" || flag == "--help" {
            return Err(
                "see the doc comment at the top of examples/incident_replay/main.rs".into(),
            );
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |what: &str| format!("invalid {flag} {value:?}: {what}");
        let fraction = |v: &str| -> Result<f64, String> {
            v.parse::<f64>()
                .ok()
                .filter(|f| (0.0..=1.0).contains(f))
                .ok_or_else(|| bad("expected a number from 0 to 1"))
        };
        match flag.as_str() {
            "--timeline" => o.timeline = Some(value),
            "--duration" => {
                let d = parse_duration(&value).map_err(|e| bad(&e))?;
                if d < Duration::from_secs(1) {
                    return Err(bad("must be at least 1s"));
                }
                o.duration = Some(d);
            }
            "--seed" => o.seed = value.parse().map_err(|_| bad("expected an integer"))?,
            "--concurrency" => {
                o.concurrency = value
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| bad("expected a positive integer"))?
            }
            "--rate" => {
                o.rate = value
                    .parse()
                    .ok()
                    .filter(|r: &f64| *r > 0.0 && *r <= 10_000.0)
                    .ok_or_else(|| bad("expected 0 < rate <= 10000"))?
            }
            "--writes" => o.writes = fraction(&value)?,
            "--idempotent" => o.idempotent = fraction(&value)?,
            "--budget" => {
                o.budget = parse_duration(&value).map_err(|e| bad(&e)).and_then(|d| {
                    if d.is_zero() {
                        Err(bad("must be greater than zero"))
                    } else {
                        Ok(d)
                    }
                })?
            }
            "--baseline-timeout" => {
                o.baseline_timeout = parse_duration(&value).map_err(|e| bad(&e))?
            }
            "--json" => o.json = Some(PathBuf::from(value)),
            "--svg" => o.svg = PathBuf::from(value),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    Ok(o)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let options = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("incident_replay: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(options).await {
        eprintln!("incident_replay: {e}");
        std::process::exit(1);
    }
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

async fn run(o: Options) -> Result<(), Box<dyn std::error::Error>> {
    let mut timeline = match &o.timeline {
        Some(path) => Timeline::load(path)?,
        None => Timeline::parse(DEFAULT_TIMELINE, "examples/incident-2023-09-15.toml")?,
    };
    if let Some(d) = o.duration {
        timeline = timeline.scaled(d);
    }
    let windows = timeline.outage_windows();
    println!(
        "replaying {:?}: {:.0} s, {} primary outage window(s){}; {} req/s per arm, {} in flight max, {:.0} % writes",
        timeline.name,
        timeline.duration.as_secs_f64(),
        windows.len(),
        if o.flip { ", with a failover-group flip" } else { "" },
        o.rate,
        o.concurrency,
        o.writes * 100.0
    );

    let mut arms = Vec::new();
    for name in ["baseline", "middleware"] {
        let primary = Region::start("westeurope").await?;
        let secondary = Region::start("northeurope").await?;
        primary.seed().await?;
        secondary.seed().await?;
        // Failover-group semantics: the secondary is a read-only replica until a flip.
        secondary.server.faults().set_read_only(true);
        let arm = if name == "baseline" {
            Arm::Baseline(Baseline::new(
                primary.proxy.addr().port(),
                o.baseline_timeout,
            ))
        } else {
            Arm::Middleware(Middleware::new(&primary, &secondary, o.budget)?)
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
    if let Arm::Middleware(m) = &*arms[1].arm {
        m.stack.wait_for_probes(Duration::from_secs(5)).await;
    }

    let start = Instant::now();
    if let Arm::Middleware(m) = &*arms[1].arm {
        *m.log.start.lock().map_err(|_| "poisoned")? = Some(start);
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
        if let (true, Some(at)) = (o.flip, timeline.flip_at) {
            let (old, new) = (run.primary.server.faults(), run.secondary.server.faults());
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep_until(start + at).await;
                old.set_read_only(true);
                new.set_read_only(false);
            }));
        }
    }

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
    // the report (serving region, health, writability, breaker).
    let region_log: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let sampler = if let Arm::Middleware(m) = &*arms[1].arm {
        let (stack, log) = (m.stack.clone(), region_log.clone());
        Some(tokio::spawn(async move {
            let mut last = String::new();
            loop {
                let state: Vec<String> = stack
                    .health()
                    .iter()
                    .map(|r| {
                        format!(
                            "{}:{}{}{}{} breaker={}",
                            r.name,
                            if r.healthy { "healthy" } else { "UNHEALTHY" },
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
    let mut arm_reports = serde_json::Map::new();
    let mut series = Vec::new();
    let seconds = timeline.duration.as_secs_f64().ceil() as usize;
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
        let (attempts_in_windows, extra) = match &*run.arm {
            Arm::Baseline(_) => (
                records
                    .iter()
                    .filter(|r| !r.shed && report::in_windows(r.at, &windows))
                    .count() as u64,
                json!({}),
            ),
            Arm::Middleware(m) => {
                let attempts = m.log.attempts.lock().map(|a| a.clone()).unwrap_or_default();
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
                        "retry_budget": format!("{:?}", m.stack.retry_budget().snapshot()),
                        "region_states": region_log.lock().map(|l| l.clone()).unwrap_or_default(),
                    }),
                )
            }
        };
        let figures = report::figures(
            &records,
            &windows,
            o.budget,
            attempts_in_windows,
            verification,
            extra,
        );
        arm_reports.insert(run.name.to_owned(), figures.json);
        series.push(report::per_second(&records, seconds));
    }
    let report = json!({
        "timeline": {
            "name": timeline.name,
            "duration_s": timeline.duration.as_secs_f64(),
            "flip_at_s": if o.flip { timeline.flip_at.map(|d| d.as_secs_f64()) } else { None },
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
        },
        "arms": arm_reports,
    });
    println!("\n{}", report::table(&report));
    if let Some(path) = &o.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!("JSON report: {}", path.display());
    }
    if let Some(dir) = o.svg.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let title = format!("{} — baseline vs mssql-resilience", timeline.name);
    std::fs::write(
        &o.svg,
        plot::svg(&title, seconds, &windows, &series[0], &series[1]),
    )
    .map_err(|e| format!("cannot write {}: {e}", o.svg.display()))?;
    println!("plot: {}", o.svg.display());
    Ok(())
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
    // Give calls in flight until their API deadline to finish; calls still hanging then
    // count as failed at the time they were abandoned (their client gave up).
    let grace = tokio::time::sleep(o.budget + Duration::from_millis(100));
    tokio::pin!(grace);
    for (task, at, started, write) in in_flight {
        let abort = task.abort_handle();
        tokio::select! {
            _ = task => {}
            _ = &mut grace => {
                abort.abort();
                records.lock().unwrap_or_else(|e| e.into_inner()).push(Record {
                    at,
                    latency: started.elapsed(),
                    write,
                    ok: false,
                    outcome_unknown: false,
                    shed: false,
                    error: Some("abandoned_at_end".into()),
                });
            }
        }
    }
}
