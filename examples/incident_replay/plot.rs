//! An SVG plot: success rate and p99 latency per second for every arm, outages shaded.

use std::fmt::Write;

use crate::run::ScenarioRun;

/// Line colour and legend text of an arm.
fn style(arm: &str) -> (&'static str, &'static str) {
    match arm {
        "baseline" => ("#d62728", "baseline (bb8 + tiberius + per-call timeout)"),
        "middleware" => ("#1f77b4", "mssql-resilience (defaults)"),
        "peer" => ("#2ca02c", "peer (tower-resilience)"),
        _ => ("#7f7f7f", "other"),
    }
}

const W: f64 = 960.0;
const PANEL_H: f64 = 220.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const GAP: f64 = 60.0;

fn polyline(points: &[(f64, f64)], color: &str) -> String {
    if points.is_empty() {
        return String::new();
    }
    let pts: Vec<String> = points
        .iter()
        .map(|(x, y)| format!("{x:.1},{y:.1}"))
        .collect();
    format!(
        r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
        pts.join(" ")
    )
}

/// The plot of one replay: a line per arm in each panel.
pub fn svg(title: &str, run: &ScenarioRun) -> String {
    let (seconds, windows) = (run.seconds, &run.windows);
    let plot_w = W - LEFT - RIGHT;
    let x = |s: f64| LEFT + plot_w * s / seconds.max(1) as f64;
    let max_latency = nice_ceiling(
        run.series
            .iter()
            .flat_map(|(_, series)| series.iter())
            .filter_map(|(_, l)| *l)
            .fold(100.0_f64, f64::max),
    );
    let height = TOP + 2.0 * PANEL_H + GAP + 50.0;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = write!(
        out,
        r#"<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{}</text>"#,
        escape(title)
    );
    for (panel, (label, top)) in [
        ("success rate per second (%)", TOP),
        ("p99 latency per second (ms)", TOP + PANEL_H + GAP),
    ]
    .into_iter()
    .enumerate()
    {
        let bottom = top + PANEL_H;
        for (from, to) in windows {
            let (x0, x1) = (x(from.as_secs_f64()), x(to.as_secs_f64()));
            let _ = write!(
                out,
                r##"<rect x="{x0:.1}" y="{top}" width="{:.1}" height="{PANEL_H}" fill="#d0d0d0" opacity="0.6"/>"##,
                (x1 - x0).max(1.0)
            );
        }
        let _ = write!(
            out,
            r#"<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL_H}" fill="none" stroke="black"/>"#
        );
        let _ = write!(out, r#"<text x="{LEFT}" y="{}">{label}</text>"#, top - 6.0);
        let ticks: Vec<(f64, String)> = if panel == 0 {
            (0..=4)
                .map(|i| (f64::from(i) * 25.0, format!("{}", i * 25)))
                .collect()
        } else {
            (0..=4)
                .map(|i| {
                    (
                        max_latency * f64::from(i) / 4.0,
                        format!("{:.0}", max_latency * f64::from(i) / 4.0),
                    )
                })
                .collect()
        };
        let scale = if panel == 0 { 100.0 } else { max_latency };
        for (v, text) in ticks {
            let y = bottom - PANEL_H * v / scale;
            let _ = write!(
                out,
                r##"<line x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#eeeeee"/>"##,
                LEFT + plot_w
            );
            let _ = write!(
                out,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{text}</text>"#,
                LEFT - 6.0,
                y + 4.0
            );
        }
        for (arm, series) in &run.series {
            let color = style(arm).0;
            let points: Vec<(f64, f64)> = series
                .iter()
                .enumerate()
                .filter_map(|(s, (ok, lat))| {
                    let v = if panel == 0 {
                        ok.map(|o| o * 100.0)
                    } else {
                        *lat
                    };
                    v.map(|v| (x(s as f64 + 0.5), bottom - PANEL_H * (v / scale).min(1.0)))
                })
                .collect();
            out.push_str(&polyline(&points, color));
        }
        for s in (0..=seconds).step_by(10.max(seconds / 10)) {
            let _ = write!(
                out,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{s}s</text>"#,
                x(s as f64),
                bottom + 16.0
            );
        }
    }
    let legend_y = height - 14.0;
    let mut legend_x = LEFT;
    for (arm, _) in &run.series {
        let (color, text) = style(arm);
        let _ = write!(
            out,
            r##"<rect x="{legend_x:.1}" y="{:.1}" width="14" height="4" fill="{color}"/><text x="{:.1}" y="{legend_y:.1}">{}</text>"##,
            legend_y - 8.0,
            legend_x + 20.0,
            escape(text)
        );
        legend_x += 30.0 + 6.5 * text.chars().count() as f64;
    }
    let _ = write!(
        out,
        r##"<rect x="{legend_x:.1}" y="{:.1}" width="14" height="10" fill="#d0d0d0"/><text x="{:.1}" y="{legend_y:.1}">primary outage</text>"##,
        legend_y - 10.0,
        legend_x + 20.0
    );
    out.push_str("</svg>\n");
    out
}

/// The smallest 1, 2 or 5 × 10ⁿ at or above `v`.
fn nice_ceiling(v: f64) -> f64 {
    let magnitude = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * magnitude)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
