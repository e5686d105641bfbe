//! Figures per arm: success rates, latency percentiles, over-deadline calls, attempts per
//! request in the outage windows, write verification; the JSON report and the table.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};

/// How long past its deadline an answer may arrive and still count: the API's own
/// caller measures the same deadline, so an answer later than this is a timeout to it.
pub const LATE_GRACE: Duration = Duration::from_millis(50);

/// The caller's view of a call that took `latency` and succeeded (`ok`): a success only
/// when it arrived within `deadline` + [`LATE_GRACE`]. A later answer counts as a
/// failure labelled `late`.
pub fn on_time(ok: bool, latency: Duration, deadline: Duration) -> bool {
    ok && latency <= deadline + LATE_GRACE
}

/// One API call as the load generator saw it.
#[derive(Debug, Clone)]
pub struct Record {
    /// Start, from the beginning of the run.
    pub at: Duration,
    pub latency: Duration,
    pub write: bool,
    pub ok: bool,
    pub outcome_unknown: bool,
    /// The client had no free slot: the request was shed at once (an API at its limit).
    pub shed: bool,
    /// Why it failed.
    pub error: Option<String>,
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn rate(ok: usize, total: usize) -> Value {
    if total == 0 {
        Value::Null
    } else {
        json!(ok as f64 / total as f64)
    }
}

fn counts(records: &[&Record], write: bool) -> Value {
    let all: Vec<_> = records.iter().filter(|r| r.write == write).collect();
    let ok = all.iter().filter(|r| r.ok).count();
    let mut errors: std::collections::BTreeMap<String, usize> = Default::default();
    for r in all.iter().filter(|r| !r.ok) {
        let why = if r.shed {
            "shed"
        } else {
            r.error.as_deref().unwrap_or("abandoned")
        };
        *errors.entry(why.to_owned()).or_default() += 1;
    }
    json!({ "total": all.len(), "ok": ok, "success_rate": rate(ok, all.len()), "errors": errors })
}

pub fn in_windows(at: Duration, windows: &[(Duration, Duration)]) -> bool {
    windows.iter().any(|(from, to)| at >= *from && at < *to)
}

/// Write verification against the databases.
#[derive(Debug, Clone, Copy, Default)]
pub struct Verification {
    pub acknowledged: usize,
    pub lost: usize,
    pub duplicated: usize,
}

/// Compares the acknowledged write ids with every id found in the regions.
pub fn verify(acknowledged: &[i64], found: &[i64]) -> Verification {
    let mut seen: HashMap<i64, usize> = HashMap::new();
    for id in found {
        *seen.entry(*id).or_default() += 1;
    }
    Verification {
        acknowledged: acknowledged.len(),
        lost: acknowledged
            .iter()
            .filter(|id| !seen.contains_key(id))
            .count(),
        duplicated: seen.values().filter(|n| **n > 1).map(|n| n - 1).sum(),
    }
}

pub struct ArmFigures {
    pub json: Value,
}

#[allow(clippy::too_many_arguments)]
pub fn figures(
    records: &[Record],
    windows: &[(Duration, Duration)],
    deadline: Duration,
    attempts_in_windows: u64,
    verification: Verification,
    extra: Value,
) -> ArmFigures {
    let all: Vec<&Record> = records.iter().collect();
    let outage: Vec<&Record> = records
        .iter()
        .filter(|r| in_windows(r.at, windows))
        .collect();
    let mut latencies: Vec<f64> = records
        .iter()
        .map(|r| r.latency.as_secs_f64() * 1000.0)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let over = records
        .iter()
        .filter(|r| !r.shed && r.latency > deadline + LATE_GRACE)
        .count();
    let attempted_in_windows = outage.iter().filter(|r| !r.shed).count();
    let mut json = json!({
        "requests": records.len(),
        "reads": counts(&all, false),
        "writes": counts(&all, true),
        "latency_ms": {
            "p50": percentile(&latencies, 50.0),
            "p99": percentile(&latencies, 99.0),
            "max": latencies.last().copied().unwrap_or(0.0),
        },
        "over_deadline": over,
        "shed": records.iter().filter(|r| r.shed).count(),
        "db_attempts_per_request": if attempted_in_windows == 0 { Value::Null } else {
            json!(attempts_in_windows as f64 / attempted_in_windows as f64)
        },
        "outcome_unknown": records.iter().filter(|r| r.outcome_unknown).count(),
        "acknowledged_writes": verification.acknowledged,
        "lost_writes": verification.lost,
        "duplicate_writes": verification.duplicated,
        "outage": {
            "requests": outage.len(),
            "reads": counts(&outage, false),
            "writes": counts(&outage, true),
        },
    });
    if let (Value::Object(target), Value::Object(more)) = (&mut json, extra) {
        target.extend(more);
    }
    ArmFigures { json }
}

/// Per second: the success rate and the p99 latency (ms), `None` for a second without
/// requests.
pub type Series = Vec<(Option<f64>, Option<f64>)>;

/// Per-second success rate and p99 latency (ms), by request start.
pub fn per_second(records: &[Record], seconds: usize) -> Series {
    let mut buckets: Vec<Vec<&Record>> = vec![Vec::new(); seconds];
    for r in records {
        let s = r.at.as_secs() as usize;
        if s < seconds {
            buckets[s].push(r);
        }
    }
    buckets
        .iter()
        .map(|b| {
            if b.is_empty() {
                return (None, None);
            }
            let ok = b.iter().filter(|r| r.ok).count() as f64 / b.len() as f64;
            let mut lat: Vec<f64> = b
                .iter()
                .filter(|r| !r.shed)
                .map(|r| r.latency.as_secs_f64() * 1000.0)
                .collect();
            lat.sort_by(f64::total_cmp);
            (Some(ok), (!lat.is_empty()).then(|| percentile(&lat, 99.0)))
        })
        .collect()
}

/// A share as a percentage with two decimals, `-` when absent.
pub fn pct(v: &Value) -> String {
    v.as_f64()
        .map_or("-".into(), |x| format!("{:.2} %", x * 100.0))
}

/// A number with `digits` decimals, `-` when absent.
pub fn num(v: &Value, digits: usize) -> String {
    v.as_f64().map_or("-".into(), |x| format!("{x:.digits$}"))
}

/// A JSON value at a path of keys (`Null` when missing).
pub fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, k| &v[*k])
}

/// The human table of one replay: a column per arm.
pub fn table(report: &Value) -> String {
    let arms: Vec<(&String, &Value)> = report["arms"]
        .as_object()
        .map(|m| m.iter().collect())
        .unwrap_or_default();
    type Cell = fn(&Value) -> String;
    let rows: Vec<(&str, Cell)> = vec![
        ("reads ok (whole run)", |a| {
            pct(at(a, &["reads", "success_rate"]))
        }),
        ("reads ok (outage windows)", |a| {
            pct(at(a, &["outage", "reads", "success_rate"]))
        }),
        ("writes ok (whole run)", |a| {
            pct(at(a, &["writes", "success_rate"]))
        }),
        ("writes ok (outage windows)", |a| {
            pct(at(a, &["outage", "writes", "success_rate"]))
        }),
        ("reads achievable (whole run)", |a| {
            pct(at(a, &["achievable", "reads"]))
        }),
        ("writes achievable (whole run)", |a| {
            pct(at(a, &["achievable", "writes"]))
        }),
        ("reads ok / achievable", |a| {
            pct(at(a, &["of_achievable", "reads"]))
        }),
        ("writes ok / achievable", |a| {
            pct(at(a, &["of_achievable", "writes"]))
        }),
        ("latency p50 (ms)", |a| {
            num(at(a, &["latency_ms", "p50"]), 2)
        }),
        ("latency p99 (ms)", |a| {
            num(at(a, &["latency_ms", "p99"]), 1)
        }),
        ("latency max (ms)", |a| {
            num(at(a, &["latency_ms", "max"]), 1)
        }),
        ("calls over deadline (+50 ms)", |a| {
            num(&a["over_deadline"], 0)
        }),
        ("shed (client at its limit)", |a| num(&a["shed"], 0)),
        ("DB attempts / request (outages)", |a| {
            num(&a["db_attempts_per_request"], 2)
        }),
        ("outcome unknown (writes)", |a| {
            num(&a["outcome_unknown"], 0)
        }),
        ("lost writes (verified)", |a| num(&a["lost_writes"], 0)),
        ("duplicate writes (verified)", |a| {
            num(&a["duplicate_writes"], 0)
        }),
        ("failover: outage -> secondary (s)", |a| {
            num(&a["failover_s"], 3)
        }),
        ("fail-back: calm -> primary (s)", |a| {
            num(&a["failback_s"], 3)
        }),
    ];
    let mut out = format!("{:<36}", "");
    for (name, _) in &arms {
        out.push_str(&format!(" {name:>14}"));
    }
    out.push_str(&format!("\n{}\n", "-".repeat(36 + 15 * arms.len())));
    for (label, cell) in rows {
        out.push_str(&format!("{label:<36}"));
        for (_, arm) in &arms {
            out.push_str(&format!(" {:>14}", cell(arm)));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verification_finds_lost_and_duplicated_writes() {
        let v = verify(&[1, 2, 3], &[1, 1, 3, 4]);
        assert_eq!((v.lost, v.duplicated), (1, 1));
    }

    #[test]
    fn a_success_counts_only_within_the_deadline() {
        let d = Duration::from_secs(5);
        assert!(on_time(true, Duration::from_millis(10), d));
        assert!(on_time(true, d + LATE_GRACE, d));
        assert!(!on_time(true, d + LATE_GRACE + Duration::from_millis(1), d));
        assert!(!on_time(true, Duration::from_secs(29), d));
        assert!(!on_time(false, Duration::from_millis(10), d));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
    }
}
