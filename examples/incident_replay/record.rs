//! `--record-metrics FILE`: the middleware arm's own Prometheus exposition, scraped once
//! per second of replay time, written in promtool's `input_series` notation.
//!
//! Time scale: **one second of replay is one minute of series time** (sample `k`, taken
//! `k` seconds after the replay's start, is the series' `k`-th value at `interval: 1m`).
//! The replay compresses a 9-hour incident into about 75 s; at this scale an alert's
//! `for: 1m` is one replay second and a 10-minute window is ten, so the rules' durations
//! keep their meaning relative to the outage phases. The library's own reaction times
//! (probes, breaker, fail-back hysteresis) run in real seconds, so in the series they look
//! 60 times slower than they are: a detection that takes 1 s shows up as 1 minute.
//!
//! Every series gets `job="incident_replay"` and `instance="middleware"`, the labels a
//! Prometheus scrape would add. The file is one promtool test group without assertions:
//! `interval`, then `input_series`. `ops/record.sh` keeps only the series the alerts use
//! and builds the tests around it (see `ops/README.md`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use mssql_resilience::telemetry::record_gauges;
use mssql_resilience::Stack;
use serde_json::json;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::timeline::Timeline;

/// The labels a scrape of the middleware arm would add.
const SCRAPE_LABELS: &str = "job=\"incident_replay\",instance=\"middleware\"";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the crate's Prometheus recorder as the process's global recorder (once).
/// Must run before the middleware arm's stack is built, so that its start-up series
/// (the first region pick per intent) are recorded.
pub fn install() -> Result<(), String> {
    if HANDLE.get().is_some() {
        return Ok(());
    }
    let handle = mssql_resilience::telemetry::prometheus::install()
        .map_err(|e| format!("--record-metrics: cannot install the Prometheus recorder: {e}"))?;
    let _ = HANDLE.set(handle);
    Ok(())
}

/// One scrape: series (exposition name and labels, verbatim) → value.
pub type Scrape = BTreeMap<String, f64>;

/// Scrapes in progress; [`Recording::finish`] collects them.
pub struct Recording {
    task: JoinHandle<Vec<Scrape>>,
}

impl Recording {
    /// Scrapes `stack` (after [`record_gauges`], as a `/metrics` handler does) at `start`
    /// and every second after it, `samples` times in all. Without [`install`] the
    /// scrapes are empty.
    pub fn start(stack: Stack, start: Instant, samples: usize) -> Recording {
        let task = tokio::spawn(async move {
            let mut scrapes = Vec::with_capacity(samples);
            for k in 0..samples {
                tokio::time::sleep_until(start + Duration::from_secs(k as u64)).await;
                record_gauges(&stack);
                let text = HANDLE.get().map(|h| h.render()).unwrap_or_default();
                scrapes.push(parse_exposition(&text));
            }
            scrapes
        });
        Recording { task }
    }

    /// Waits for the last scrape and returns them all.
    pub async fn finish(self) -> Result<Vec<Scrape>, String> {
        self.task
            .await
            .map_err(|e| format!("--record-metrics: the scraper failed: {e}"))
    }
}

/// The samples of a Prometheus text exposition (comments and malformed lines skipped).
pub fn parse_exposition(text: &str) -> Scrape {
    let mut scrape = Scrape::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // The value follows the last space (after the closing brace, if there are labels).
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => match v.parse::<f64>() {
                Ok(v) => v,
                Err(_) => continue,
            },
        };
        scrape.insert(series.trim().to_owned(), value);
    }
    scrape
}

/// `name{labels}` with the scrape labels added.
fn with_scrape_labels(series: &str) -> String {
    match series.split_once('{') {
        Some((name, rest)) if rest.trim() == "}" => format!("{name}{{{SCRAPE_LABELS}}}"),
        Some((name, rest)) => format!("{name}{{{SCRAPE_LABELS},{rest}"),
        None => format!("{series}{{{SCRAPE_LABELS}}}"),
    }
}

/// A value as promtool reads it.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// promtool's expanding notation for one series: `_` for a scrape without it, `_xN` for
/// N+1 of them, `a+bxN` for N+1 values from `a` in steps of `b` (whole numbers only, so
/// the expansion is exact), single values otherwise.
pub fn values_notation(values: &[Option<f64>]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < values.len() {
        match values[i] {
            None => {
                let n = values[i..].iter().take_while(|v| v.is_none()).count();
                out.push(if n == 1 {
                    "_".to_owned()
                } else {
                    format!("_x{}", n - 1)
                });
                i += n;
            }
            Some(a) => {
                let whole = |v: f64| v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15;
                let step = match values.get(i + 1) {
                    Some(Some(b)) if whole(a) && whole(*b) => Some(b - a),
                    _ => None,
                };
                let n = match step {
                    Some(step) => {
                        1 + values[i + 1..]
                            .iter()
                            .zip(&values[i..])
                            .take_while(|(v, prev)| match (v, prev) {
                                (Some(v), Some(p)) => whole(*v) && v - p == step,
                                _ => false,
                            })
                            .count()
                    }
                    None => 1,
                };
                match step {
                    Some(step) if n > 2 => out.push(format!(
                        "{}{}{}x{}",
                        number(a),
                        if step < 0.0 { "-" } else { "+" },
                        number(step.abs()),
                        n - 1
                    )),
                    // Too short for a run: one value, and look for a run from the next.
                    _ => {
                        out.push(number(a));
                        i += 1;
                        continue;
                    }
                }
                i += n;
            }
        }
    }
    out.join(" ")
}

/// Writes the scrapes to `path` as a promtool test group (`interval` + `input_series`),
/// with a header that says what was replayed and a `# meta:` line (JSON) the ops
/// scripts read: the time scale and the primary's outage windows in series minutes.
pub fn write(
    path: &Path,
    timeline: &Timeline,
    origin: &str,
    played: Duration,
    scrapes: &[Scrape],
    settings: serde_json::Value,
) -> Result<(), String> {
    let mut names: Vec<&String> = scrapes.iter().flat_map(|s| s.keys()).collect();
    names.sort();
    names.dedup();
    let minutes = |d: Duration| d.as_secs_f64();
    let windows: Vec<[f64; 2]> = timeline
        .outage_windows()
        .iter()
        .map(|(a, b)| [minutes(*a), minutes(*b)])
        .collect();
    let meta = json!({
        "timeline": timeline.name,
        "timeline_file": origin,
        "scale": "1 replay second = 1 minute of series time",
        "samples": scrapes.len(),
        "timeline_end_min": minutes(timeline.duration),
        "played_min": minutes(played),
        "outage_windows_min": windows,
        "flip_at_min": timeline.flip_at.map(minutes),
        "primary": "westeurope",
        "secondary": "northeurope",
        "settings": settings,
    });
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Recorded by examples/incident_replay --record-metrics: the middleware arm's own\n\
         # Prometheus exposition, scraped every second of replay time.\n\
         # Timeline: {:?} ({origin}); the load ran for {:.0} s.\n\
         # Time scale: 1 replay second = 1 minute of series time (value k is at k minutes).\n\
         # Outage windows of the primary (westeurope), in series minutes: {}\n\
         # meta: {meta}",
        timeline.name,
        minutes(played),
        windows
            .iter()
            .map(|[a, b]| format!("{a}-{b}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    out.push_str("interval: 1m\ninput_series:\n");
    for name in names {
        let values: Vec<Option<f64>> = scrapes.iter().map(|s| s.get(name).copied()).collect();
        let _ = writeln!(
            out,
            "  - series: '{}'\n    values: '{}'",
            with_scrape_labels(name).replace('\'', "''"),
            values_notation(&values)
        );
    }
    crate::write_file(path, &out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notation_compresses_runs_and_steps() {
        let v = |xs: &[Option<f64>]| values_notation(xs);
        assert_eq!(
            v(&[None, None, Some(1.0), Some(1.0), Some(1.0)]),
            "_x1 1+0x2"
        );
        assert_eq!(v(&[Some(0.0), Some(2.0), Some(4.0), Some(5.0)]), "0+2x2 5");
        assert_eq!(
            v(&[Some(1.0), Some(45.0), Some(45.0), Some(45.0)]),
            "1 45+0x2"
        );
        assert_eq!(v(&[Some(3.0), Some(2.0), Some(1.0)]), "3-1x2");
        assert_eq!(v(&[Some(0.5), Some(0.5), Some(0.5)]), "0.5 0.5 0.5");
        assert_eq!(v(&[Some(1.0), Some(2.0)]), "1 2");
        assert_eq!(v(&[Some(f64::NAN)]), "NaN");
    }

    #[test]
    fn exposition_lines_become_series() {
        let s = parse_exposition("# TYPE x gauge\nx{region=\"a b\"} 1\ny 2.5\nz +Inf\nbroken\n");
        assert_eq!(s.get("x{region=\"a b\"}"), Some(&1.0));
        assert_eq!(s.get("y"), Some(&2.5));
        assert_eq!(s.get("z"), Some(&f64::INFINITY));
        assert_eq!(s.len(), 3);
        assert_eq!(
            with_scrape_labels("x{region=\"a\"}"),
            "x{job=\"incident_replay\",instance=\"middleware\",region=\"a\"}"
        );
        assert_eq!(
            with_scrape_labels("y"),
            "y{job=\"incident_replay\",instance=\"middleware\"}"
        );
    }
}
