//! Replay timelines: TOML files of outage phases for the primary (or secondary) region.

use std::time::Duration;

use mssql_resilience::config::duration::parse_duration;
use mssql_testkit::chaos::{DirectionToxics, Phase, Schedule, Toxics};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Primary,
    Secondary,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Blackhole,
    Reset,
    Refuse,
    Latency,
    LoginError,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PhaseFile {
    name: Option<String>,
    from: String,
    to: String,
    #[serde(default = "primary")]
    target: Target,
    kind: Kind,
    latency: Option<String>,
    jitter: Option<String>,
    error: Option<u32>,
}

fn primary() -> Target {
    Target::Primary
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimelineFile {
    name: String,
    duration: String,
    flip_at: Option<String>,
    #[serde(default)]
    phase: Vec<PhaseFile>,
}

/// One outage phase.
#[derive(Debug, Clone)]
pub struct OutagePhase {
    pub label: String,
    pub from: Duration,
    pub to: Duration,
    pub target: Target,
    pub kind: Kind,
    pub latency: Duration,
    pub jitter: Duration,
    pub error: u32,
}

/// A validated timeline.
#[derive(Debug, Clone)]
pub struct Timeline {
    pub name: String,
    pub duration: Duration,
    pub flip_at: Option<Duration>,
    pub phases: Vec<OutagePhase>,
}

fn dur(field: &str, text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| format!("`{field}` = {text:?}: {e}"))
}

impl Timeline {
    pub fn parse(text: &str, origin: &str) -> Result<Timeline, String> {
        let file: TimelineFile =
            toml::from_str(text).map_err(|e| format!("{origin}: {}", e.message()))?;
        let duration = dur("duration", &file.duration)?;
        if duration < Duration::from_secs(1) {
            return Err(format!("{origin}: `duration` must be at least 1s"));
        }
        let flip_at = file
            .flip_at
            .as_deref()
            .map(|t| dur("flip_at", t))
            .transpose()?;
        let mut phases = Vec::new();
        for (i, p) in file.phase.into_iter().enumerate() {
            let at = |f: &str| format!("{origin}: phase[{i}].{f}");
            let from = dur(&at("from"), &p.from)?;
            let to = dur(&at("to"), &p.to)?;
            if from >= to || to > duration {
                return Err(format!(
                    "{}: must satisfy from < to <= duration ({:?} .. {:?}, duration {:?})",
                    at("to"),
                    from,
                    to,
                    duration
                ));
            }
            let latency = p
                .latency
                .as_deref()
                .map(|t| dur(&at("latency"), t))
                .transpose()?;
            if p.kind == Kind::Latency && latency.is_none() {
                return Err(format!(
                    "{}: a latency phase needs `latency`",
                    at("latency")
                ));
            }
            if p.kind == Kind::LoginError && p.error.is_none() {
                return Err(format!(
                    "{}: a login_error phase needs `error`",
                    at("error")
                ));
            }
            phases.push(OutagePhase {
                label: p
                    .name
                    .unwrap_or_else(|| format!("{:?}", p.kind).to_lowercase()),
                from,
                to,
                target: p.target,
                kind: p.kind,
                latency: latency.unwrap_or_default(),
                jitter: p
                    .jitter
                    .as_deref()
                    .map(|t| dur(&at("jitter"), t))
                    .transpose()?
                    .unwrap_or_default(),
                error: p.error.unwrap_or(0),
            });
        }
        phases.sort_by_key(|p| p.from);
        Ok(Timeline {
            name: file.name,
            duration,
            flip_at,
            phases,
        })
    }

    pub fn load(path: &str) -> Result<Timeline, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        Timeline::parse(&text, path)
    }

    /// The same timeline stretched or compressed to `duration`.
    pub fn scaled(&self, duration: Duration) -> Timeline {
        let k = duration.as_secs_f64() / self.duration.as_secs_f64();
        let s = |d: Duration| d.mul_f64(k);
        Timeline {
            name: self.name.clone(),
            duration,
            flip_at: self.flip_at.map(s),
            phases: self
                .phases
                .iter()
                .map(|p| OutagePhase {
                    from: s(p.from),
                    to: s(p.to),
                    ..p.clone()
                })
                .collect(),
        }
    }

    /// The primary's outage windows (overlapping or touching phases merged).
    pub fn outage_windows(&self) -> Vec<(Duration, Duration)> {
        let mut windows: Vec<(Duration, Duration)> = Vec::new();
        for p in self.phases.iter().filter(|p| p.target == Target::Primary) {
            match windows.last_mut() {
                Some(last) if p.from <= last.1 => last.1 = last.1.max(p.to),
                _ => windows.push((p.from, p.to)),
            }
        }
        windows
    }

    /// The chaos-proxy schedule of `target`'s network phases (`None` if it has none).
    pub fn schedule(&self, target: Target) -> Result<Option<Schedule>, String> {
        let phases: Vec<Phase> = self
            .phases
            .iter()
            .filter(|p| p.target == target && p.kind != Kind::LoginError)
            .map(|p| {
                let toxics = match p.kind {
                    Kind::Blackhole => Toxics::blackhole(),
                    Kind::Reset => Toxics::reset(),
                    Kind::Refuse => Toxics::refuse(),
                    Kind::Latency => {
                        Toxics::both(DirectionToxics::new().with_latency(p.latency, p.jitter))
                    }
                    Kind::LoginError => unreachable!("filtered out"),
                };
                Phase::new(p.from, p.to, toxics).named(p.label.clone())
            })
            .collect();
        if phases.is_empty() {
            return Ok(None);
        }
        Schedule::new(phases)
            .map(Some)
            .map_err(|e| format!("timeline phases overlap: {e}"))
    }

    /// `target`'s login-error phases.
    pub fn login_errors(&self, target: Target) -> Vec<OutagePhase> {
        self.phases
            .iter()
            .filter(|p| p.target == target && p.kind == Kind::LoginError)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_timeline_parses() {
        let t = Timeline::parse(include_str!("../incident-2023-09-15.toml"), "default").unwrap();
        assert_eq!(t.duration, Duration::from_secs(75));
        assert!(!t.outage_windows().is_empty());
        assert!(t.schedule(Target::Primary).unwrap().is_some());
        assert!(t.schedule(Target::Secondary).unwrap().is_none());
    }
}
