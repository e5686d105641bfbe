//! The incident replay: the 2023-09-15 West Europe incident, compressed, against the arms
//! at once — what a team writes without this crate, and the full mssql-resilience stack
//! with default settings — each with its own two regions and its own copy of the timeline.
//! With `--suite DIR`, every scenario in DIR (timeline files, sorted by name), each
//! without and with its failover-group flip, and one summary table.
//!
//! ```text
//! cargo run --release --example incident_replay
//! cargo run --release --example incident_replay -- --flip --json target/replay.json
//! cargo run --release --example incident_replay -- --timeline my-outage.toml --duration 30s
//! cargo run --release --example incident_replay -- --suite examples/scenarios --json target/suite.json
//! ```
//!
//! Options: `--timeline FILE` (default: examples/incident-2023-09-15.toml), `--suite DIR`
//! (every `*.toml` in DIR; plots go to `--plots DIR`, default target/incident-replay-suite),
//! `--duration D` (stretch or compress the timeline, or each scenario of a suite),
//! `--seed N`, `--concurrency N` (requests in flight
//! per arm, default 256), `--rate R` (requests per second per arm, default 200),
//! `--writes F` (share of writes, default 0.1), `--idempotent F` (share of writes with an
//! idempotency key, default 0.5), `--budget D` (each API request's deadline, default 5s),
//! `--baseline-timeout D` (the baseline's per-call timeout, default 30s like ADO.NET's
//! CommandTimeout), `--min-idle N` (the middleware's `pool.min_idle`, 1–100: idle
//! connections kept open per region; default unset, as in the crate), `--max-pool N` (the
//! middleware's `pool.max_size`, 1–1000: connections per region; default 100, as in the
//! crate), `--flip` (a failover-group flip at the timeline's `flip_at`),
//! `--json FILE`, `--svg FILE` (default target/incident-replay.svg),
//! `--record-metrics FILE` (the middleware arm's Prometheus exposition, scraped every
//! second of replay time, as promtool `input_series`; 1 replay second = 1 minute of
//! series time; see `record.rs`), `--record-tail D` (with `--record-metrics`: the run goes
//! on for D more of healthy traffic after the timeline's end, so that alerts can resolve;
//! default 20s). `--record-metrics` needs a single timeline, not `--suite`.
//! `--requests FILE`: every request of every arm as CSV (`arm,start_s,kind,ok,
//! achievable,latency_ms,error`: when it was issued, read or write, whether it succeeded
//! within its deadline, the oracle's achievable value for it, how long it took, and the
//! error label of a failure) — to see *which* requests an arm lost and why; a single
//! timeline, not `--suite`.
//!
//! A call counts as a success only when its answer arrives within the request's deadline
//! (`--budget`) + 50 ms, for every arm: the API's own caller has given up by then, so a
//! later answer is a failure labelled `late` (and, for a write, an unknown outcome).

mod achievable;
mod arms;
mod peer;
mod plot;
mod record;
mod report;
mod run;
mod suite;
mod timeline;

use std::path::{Path, PathBuf};
use std::time::Duration;

use mssql_resilience::config::duration::parse_duration;

use timeline::Timeline;

const DEFAULT_TIMELINE: &str = include_str!("../incident-2023-09-15.toml");

/// The command line.
#[derive(Clone, Debug)]
pub struct Options {
    timeline: Option<String>,
    suite: Option<PathBuf>,
    plots: PathBuf,
    duration: Option<Duration>,
    seed: u64,
    concurrency: usize,
    rate: f64,
    writes: f64,
    idempotent: f64,
    budget: Duration,
    baseline_timeout: Duration,
    min_idle: Option<u32>,
    max_pool: Option<u32>,
    flip: bool,
    json: Option<PathBuf>,
    svg: PathBuf,
    record_metrics: Option<PathBuf>,
    record_tail: Duration,
    requests: Option<PathBuf>,
}

/// `value` as a whole number from `lo` to `hi`.
fn whole_number(value: &str, lo: u32, hi: u32) -> Result<u32, String> {
    value
        .parse::<u32>()
        .ok()
        .filter(|n| (lo..=hi).contains(n))
        .ok_or_else(|| format!("expected a whole number from {lo} to {hi}"))
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        timeline: None,
        suite: None,
        plots: PathBuf::from("target/incident-replay-suite"),
        duration: None,
        seed: 1,
        concurrency: 256,
        rate: 200.0,
        writes: 0.1,
        idempotent: 0.5,
        budget: Duration::from_secs(5),
        baseline_timeout: Duration::from_secs(30),
        min_idle: None,
        max_pool: None,
        flip: false,
        json: None,
        svg: PathBuf::from("target/incident-replay.svg"),
        record_metrics: None,
        record_tail: Duration::from_secs(20),
        requests: None,
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
        let at_most_a_day = |d: Duration, bad: &dyn Fn(&str) -> String| {
            if d > timeline::MAX_DURATION {
                Err(bad("must be at most 24h"))
            } else {
                Ok(d)
            }
        };
        let fraction = |v: &str| -> Result<f64, String> {
            v.parse::<f64>()
                .ok()
                .filter(|f| (0.0..=1.0).contains(f))
                .ok_or_else(|| bad("expected a number from 0 to 1"))
        };
        match flag.as_str() {
            "--timeline" => o.timeline = Some(value),
            "--suite" => o.suite = Some(PathBuf::from(value)),
            "--plots" => o.plots = PathBuf::from(value),
            "--duration" => {
                let d = parse_duration(&value).map_err(|e| bad(&e))?;
                if d < Duration::from_secs(1) || d > timeline::MAX_DURATION {
                    return Err(bad("must be from 1s to 24h"));
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
                    if d.is_zero() || d > timeline::MAX_DURATION {
                        Err(bad("must be greater than zero and at most 24h"))
                    } else {
                        Ok(d)
                    }
                })?
            }
            "--baseline-timeout" => {
                o.baseline_timeout = parse_duration(&value)
                    .map_err(|e| bad(&e))
                    .and_then(|d| at_most_a_day(d, &bad))?
            }
            "--min-idle" => o.min_idle = Some(whole_number(&value, 1, 100).map_err(|e| bad(&e))?),
            "--max-pool" => o.max_pool = Some(whole_number(&value, 1, 1000).map_err(|e| bad(&e))?),
            "--json" => o.json = Some(PathBuf::from(value)),
            "--svg" => o.svg = PathBuf::from(value),
            "--record-metrics" => o.record_metrics = Some(PathBuf::from(value)),
            "--record-tail" => {
                o.record_tail = parse_duration(&value)
                    .map_err(|e| bad(&e))
                    .and_then(|d| at_most_a_day(d, &bad))?
            }
            "--requests" => o.requests = Some(PathBuf::from(value)),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    if o.suite.is_some() {
        if o.record_metrics.is_some() {
            return Err("--record-metrics records one timeline; it excludes --suite".into());
        }
        if o.requests.is_some() {
            return Err("--requests lists one timeline's requests; it excludes --suite".into());
        }
        if o.timeline.is_some() {
            return Err("--suite and --timeline exclude each other".into());
        }
        if o.flip {
            return Err(
                "--flip is implied by --suite (each scenario runs without and with its flip)"
                    .into(),
            );
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
    let result = if options.suite.is_some() {
        suite::run_suite(&options).await
    } else {
        single(&options).await
    };
    if let Err(e) = result {
        eprintln!("incident_replay: {e}");
        std::process::exit(1);
    }
}

/// One timeline (the 2023 replay unless `--timeline`): progress, the table, the JSON
/// report and the plot.
async fn single(o: &Options) -> Result<(), Box<dyn std::error::Error>> {
    let mut timeline = match &o.timeline {
        Some(path) => Timeline::load(path)?,
        None => Timeline::parse(DEFAULT_TIMELINE, "examples/incident-2023-09-15.toml")?,
    };
    if let Some(d) = o.duration {
        timeline = timeline.scaled(d);
    }
    let origin = o
        .timeline
        .clone()
        .unwrap_or_else(|| "examples/incident-2023-09-15.toml".into());
    let recorded = timeline.clone();
    if o.record_metrics.is_some() {
        // Before any arm's stack exists, so its start-up series are recorded too.
        record::install()?;
        // A healthy tail after the timeline, so that alerts resolve within the recording.
        timeline.duration += o.record_tail;
    }
    let run = run::run_scenario(o, &timeline, o.flip, true).await?;
    println!("\n{}", report::table(&run.report));
    if let Some(path) = &o.json {
        write_file(path, &serde_json::to_string_pretty(&run.report)?)?;
        println!("JSON report: {}", path.display());
    }
    if let (Some(path), Some(csv)) = (&o.requests, &run.requests) {
        write_file(path, csv)?;
        println!("requests: {}", path.display());
    }
    if let (Some(path), Some(scrapes)) = (&o.record_metrics, &run.scrapes) {
        let settings = serde_json::json!({
            "seed": o.seed,
            "rate_per_s": o.rate,
            "writes": o.writes,
            "budget_ms": o.budget.as_millis() as u64,
            "flip": o.flip,
        });
        record::write(
            path,
            &recorded,
            &origin,
            timeline.duration,
            scrapes,
            settings,
        )?;
        println!("metrics: {} ({} scrapes)", path.display(), scrapes.len());
    }
    let title = format!("{} — baseline vs mssql-resilience", timeline.name);
    write_file(&o.svg, &plot::svg(&title, &run))?;
    println!("plot: {}", o.svg.display());
    Ok(())
}

/// Writes `text` to `path`, creating its directory; errors name the path.
fn write_file(path: &Path, text: &str) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
