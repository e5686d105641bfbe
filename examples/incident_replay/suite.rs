//! `--suite DIR`: every scenario in DIR (`*.toml` timeline files, sorted by file name),
//! each replayed without and then with its failover-group flip (a scenario without
//! `flip_at` has no flip run), one summary table for all of them, one JSON file with
//! every run's full report, and one plot per run.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::report::{at, num, pct};
use crate::run::run_scenario;
use crate::timeline::Timeline;
use crate::{plot, write_file, Options};

/// The scenario files of `dir`: every `*.toml`, sorted by name.
pub fn scenario_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("--suite {}: cannot list: {e}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| format!("--suite {}: cannot list: {e}", dir.display()))?
            .path();
        if path.is_file() && path.extension().is_some_and(|e| e == "toml") {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(format!(
            "--suite {}: no scenario (*.toml) in this directory",
            dir.display()
        ));
    }
    Ok(files)
}

/// Runs the suite (see the module documentation).
pub async fn run_suite(o: &Options) -> Result<(), Box<dyn std::error::Error>> {
    let dir = o.suite.as_deref().ok_or("--suite DIR is missing")?;
    // Parse every scenario first: a bad file fails the suite before minutes of running.
    let mut scenarios = Vec::new();
    for path in scenario_files(dir)? {
        let timeline = Timeline::load(&path.display().to_string())?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let timeline = match o.duration {
            Some(d) => timeline.scaled(d),
            None => timeline,
        };
        scenarios.push((stem, timeline));
    }
    let runs_total: usize = scenarios
        .iter()
        .map(|(_, t)| if t.flip_at.is_some() { 2 } else { 1 })
        .sum();
    let seconds: f64 = scenarios
        .iter()
        .map(|(_, t)| t.duration.as_secs_f64() * if t.flip_at.is_some() { 2.0 } else { 1.0 })
        .sum();
    println!(
        "suite {}: {} scenario(s), {runs_total} run(s), about {:.0} s of replay; {} req/s per arm, {:.0} % writes",
        dir.display(),
        scenarios.len(),
        seconds,
        o.rate,
        o.writes * 100.0
    );
    let mut runs = Vec::new();
    for (stem, timeline) in &scenarios {
        let flips: &[bool] = if timeline.flip_at.is_some() {
            &[false, true]
        } else {
            &[false]
        };
        for &flip in flips {
            let label = format!("{stem}{}", if flip { " (flip)" } else { "" });
            println!(
                "== {label}: {:?}, {:.0} s",
                timeline.name,
                timeline.duration.as_secs_f64()
            );
            let run = run_scenario(o, timeline, flip, false).await?;
            for (arm, figures) in run.report["arms"].as_object().into_iter().flatten() {
                println!(
                    "   {arm:<10} reads {:>8}  writes {:>8}  over deadline {:>5}",
                    pct(at(figures, &["reads", "success_rate"])),
                    pct(at(figures, &["writes", "success_rate"])),
                    num(&figures["over_deadline"], 0)
                );
            }
            let plot_path = o
                .plots
                .join(format!("{stem}{}.svg", if flip { "-flip" } else { "" }));
            let title = format!(
                "{}{} — baseline vs mssql-resilience vs peer",
                timeline.name,
                if flip { ", with flip" } else { "" }
            );
            write_file(&plot_path, &plot::svg(&title, &run))?;
            runs.push(json!({
                "scenario": stem,
                "name": timeline.name,
                "flip": flip,
                "plot": plot_path.display().to_string(),
                "report": run.report,
            }));
        }
    }
    println!("\n{}", summary_table(&runs));
    let json_path = o.json.clone().unwrap_or_else(|| o.plots.join("suite.json"));
    let report = json!({
        "suite": dir.display().to_string(),
        "duration_override_s": o.duration.map(|d| d.as_secs_f64()),
        "runs": runs,
    });
    write_file(&json_path, &serde_json::to_string_pretty(&report)?)?;
    println!("JSON report: {}", json_path.display());
    println!("plots: {}", o.plots.display());
    Ok(())
}

/// The summary: a row per scenario × flip × arm.
pub fn summary_table(runs: &[Value]) -> String {
    let header = [
        ("scenario", 30),
        ("flip", 4),
        ("arm", 10),
        ("rd win", 8),
        ("rd all", 8),
        ("wr win", 8),
        ("wr all", 8),
        ("ach rd", 8),
        ("ach wr", 8),
        ("rd/ach", 8),
        ("wr/ach", 8),
        ("late", 6),
        ("att/req", 7),
        ("lost/dup", 8),
        ("p99 ms", 8),
    ];
    let mut out = String::new();
    let line = |cells: &[String]| {
        let mut l = String::new();
        for (i, (cell, (_, w))) in cells.iter().zip(header.iter()).enumerate() {
            if i < 3 {
                l.push_str(&format!("{cell:<w$} ", w = *w));
            } else {
                l.push_str(&format!("{cell:>w$} ", w = *w));
            }
        }
        l.trim_end().to_owned() + "\n"
    };
    let names: Vec<String> = header.iter().map(|(h, _)| (*h).to_owned()).collect();
    out.push_str(&line(&names));
    let width: usize = header.iter().map(|(_, w)| w + 1).sum();
    out.push_str(&format!("{}\n", "-".repeat(width - 1)));
    for run in runs {
        let scenario = run["scenario"].as_str().unwrap_or("?");
        let flip = if run["flip"].as_bool().unwrap_or(false) {
            "yes"
        } else {
            "no"
        };
        let pct1 = |v: &Value| {
            v.as_f64()
                .map_or("-".into(), |x| format!("{:.1}", x * 100.0))
        };
        for (arm, a) in run["report"]["arms"].as_object().into_iter().flatten() {
            let cells = vec![
                scenario.chars().take(30).collect(),
                flip.to_owned(),
                arm.clone(),
                pct1(at(a, &["outage", "reads", "success_rate"])),
                pct1(at(a, &["reads", "success_rate"])),
                pct1(at(a, &["outage", "writes", "success_rate"])),
                pct1(at(a, &["writes", "success_rate"])),
                pct1(at(a, &["achievable", "reads"])),
                pct1(at(a, &["achievable", "writes"])),
                pct1(at(a, &["of_achievable", "reads"])),
                pct1(at(a, &["of_achievable", "writes"])),
                num(&a["over_deadline"], 0),
                num(&a["db_attempts_per_request"], 2),
                format!(
                    "{}/{}",
                    num(&a["lost_writes"], 0),
                    num(&a["duplicate_writes"], 0)
                ),
                num(at(a, &["latency_ms", "p99"]), 0),
            ];
            out.push_str(&line(&cells));
        }
    }
    out.push_str(
        "\nrd/wr win: reads/writes ok (%) in the primary's outage windows; all: whole run; \
         ach: achievable (%, oracle); /ach: ok as a share of achievable (%); \
         late: calls over deadline + 50 ms; att/req: DB attempts per request in the windows\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_files_are_the_sorted_toml_files() {
        let dir = std::env::temp_dir().join(format!("replay-suite-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["b.toml", "a.toml", "notes.md"] {
            std::fs::write(dir.join(name), "").unwrap();
        }
        let files = scenario_files(&dir).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.toml", "b.toml"]);
        std::fs::remove_dir_all(&dir).unwrap();
        let e = scenario_files(&dir).unwrap_err();
        assert!(e.contains("cannot list"), "{e}");
    }

    #[test]
    fn the_shipped_scenarios_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/scenarios");
        let files = scenario_files(&dir).unwrap();
        assert!(files.len() >= 8, "{files:?}");
        for f in files {
            let t = Timeline::load(&f.display().to_string()).unwrap();
            assert!(
                t.flip_at.is_some(),
                "{}: every scenario has a flip_at",
                f.display()
            );
            assert!(
                (30..=60).contains(&t.duration.as_secs()),
                "{}: 30 to 60 s",
                f.display()
            );
            for target in [
                crate::timeline::Target::Primary,
                crate::timeline::Target::Secondary,
            ] {
                t.schedule(target).unwrap();
            }
        }
    }

    #[test]
    fn the_summary_has_a_row_per_run_and_arm() {
        let runs = vec![json!({
            "scenario": "x", "flip": true,
            "report": {"arms": {
                "baseline": {"reads": {"success_rate": 0.5}, "lost_writes": 0, "duplicate_writes": 0},
                "middleware": {"reads": {"success_rate": 1.0}, "lost_writes": 0, "duplicate_writes": 1},
            }}
        })];
        let t = summary_table(&runs);
        assert_eq!(t.lines().filter(|l| l.starts_with("x ")).count(), 2, "{t}");
        assert!(t.contains("100.0"), "{t}");
        assert!(t.contains("0/1"), "{t}");
    }
}
