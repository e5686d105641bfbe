//! Replay timelines: TOML files of outage phases for the primary (or secondary) region.
//!
//! A phase has `from`, `to`, `kind` and optionally `name`, `target` (`primary`, the
//! default, or `secondary`) and the keys its kind uses:
//!
//! | kind | keys |
//! |---|---|
//! | `blackhole` | `direction` (optional: only `upstream` or `downstream` traffic is discarded) |
//! | `reset`, `refuse` | |
//! | `latency` | `latency` (each way), `jitter`, `direction` (optional: one way only) |
//! | `bandwidth` | `bandwidth` (bytes per second, per connection and direction), `direction` |
//! | `login_error` | `error` (the SQL error number new logins get) |
//!
//! Every kind takes `toxicity` (0 to 1, default 1): the share of connections the phase
//! affects (a partial failure; for `login_error`, the share of new logins that fail).
//! The chaos proxy draws per connection at accept time from a seeded RNG, so a run is
//! repeatable (see `mssql_testkit::chaos::Toxicity`).

use std::time::Duration;

use mssql_resilience::config::duration::parse_duration;
use mssql_testkit::chaos::{DirectionToxics, Phase, Schedule, Toxicity, Toxics};
use mssql_testkit::tds::Trigger;
use serde::Deserialize;

/// The longest run a timeline (or `--duration`, `--record-tail`, `--budget`) may ask for:
/// a day is far past any rehearsal, and keeps every time sum far from overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
/// The region a phase acts on.
pub enum Target {
    /// The primary (westeurope), writable until a flip.
    Primary,
    /// The secondary (northeurope), a read-only replica until a flip.
    Secondary,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
/// What a phase does.
pub enum Kind {
    /// Nothing gets through, nothing is closed (or only one `direction`).
    Blackhole,
    /// Open connections get an RST, new ones are reset at once.
    Reset,
    /// New connections are reset at once; open ones are left alone.
    Refuse,
    /// `latency` ± `jitter` each way (or one `direction`).
    Latency,
    /// A cap in bytes per second per connection and direction.
    Bandwidth,
    /// New logins fail with `error`; open connections keep working.
    LoginError,
}

/// Which traffic a `direction` phase acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Client → server (requests).
    Upstream,
    /// Server → client (answers).
    Downstream,
    /// Both (the default).
    Both,
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
    toxicity: Option<f64>,
    direction: Option<Direction>,
    bandwidth: Option<u64>,
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
    /// The phase's `name`, or its kind.
    pub label: String,
    /// Start, from the beginning of the run.
    pub from: Duration,
    /// End (exclusive).
    pub to: Duration,
    /// The region it acts on.
    pub target: Target,
    /// What it does.
    pub kind: Kind,
    /// One-way latency (a `latency` phase).
    pub latency: Duration,
    /// Jitter around the latency.
    pub jitter: Duration,
    /// The SQL error number of a `login_error` phase.
    pub error: u32,
    /// Share of connections (or, for `login_error`, of logins) affected, 0 to 1.
    pub toxicity: f64,
    /// The traffic a blackhole, latency or bandwidth phase acts on.
    pub direction: Direction,
    /// Bytes per second (a `bandwidth` phase).
    pub bandwidth: u64,
}

impl OutagePhase {
    /// When new logins fail during a `login_error` phase: always, or (with a toxicity
    /// below 1) each login with that probability, from an RNG seeded with `seed`.
    pub fn login_trigger(&self, seed: u64) -> Trigger {
        if self.toxicity >= 1.0 {
            Trigger::Always
        } else {
            Trigger::Probability {
                p: self.toxicity,
                seed,
            }
        }
    }
}

/// A validated timeline.
#[derive(Debug, Clone)]
pub struct Timeline {
    /// Its `name`.
    pub name: String,
    /// How long the run lasts.
    pub duration: Duration,
    /// When the failover-group flip happens in a run with the flip.
    pub flip_at: Option<Duration>,
    /// The phases, by start time.
    pub phases: Vec<OutagePhase>,
}

fn dur(field: &str, text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| format!("`{field}` = {text:?}: {e}"))
}

impl Timeline {
    /// Parses and validates a timeline; errors start with `origin` and name the phase,
    /// the field and the value.
    pub fn parse(text: &str, origin: &str) -> Result<Timeline, String> {
        let file: TimelineFile = toml::from_str(text).map_err(|e| {
            // Name the line (key and value) the parser stopped at.
            let at = e
                .span()
                .map(|span| {
                    let before = &text[..span.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let source = text.lines().nth(line - 1).unwrap_or("").trim();
                    format!(" at line {line} (`{source}`)")
                })
                .unwrap_or_default();
            format!("{origin}{at}: {}", e.message().trim())
        })?;
        let duration = dur("duration", &file.duration)?;
        if duration < Duration::from_secs(1) || duration > MAX_DURATION {
            return Err(format!(
                "{origin}: duration = {:?}: must be from 1s to {}h",
                file.duration,
                MAX_DURATION.as_secs() / 3600
            ));
        }
        let flip_at = file
            .flip_at
            .as_deref()
            .map(|t| dur("flip_at", t))
            .transpose()?;
        if let (Some(at), Some(text)) = (flip_at, &file.flip_at) {
            if at.is_zero() || at >= duration {
                return Err(format!(
                    "{origin}: flip_at = {text:?}: must be after 0s and before the end (duration {:?})",
                    file.duration
                ));
            }
        }
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
            let toxicity = p.toxicity.unwrap_or(1.0);
            if !(0.0..=1.0).contains(&toxicity) {
                return Err(format!(
                    "{} = {toxicity}: expected a number from 0 to 1 (the share of connections affected)",
                    at("toxicity")
                ));
            }
            if let Some(d) = p.direction {
                if !matches!(p.kind, Kind::Blackhole | Kind::Latency | Kind::Bandwidth) {
                    return Err(format!(
                        "{} = {:?}: only blackhole, latency and bandwidth phases have a direction (this one is {:?})",
                        at("direction"),
                        format!("{d:?}").to_lowercase(),
                        format!("{:?}", p.kind).to_lowercase(),
                    ));
                }
            }
            match (p.kind, p.bandwidth) {
                (Kind::Bandwidth, None) => {
                    return Err(format!(
                        "{}: a bandwidth phase needs `bandwidth` (bytes per second)",
                        at("bandwidth")
                    ))
                }
                (Kind::Bandwidth, Some(_)) | (_, None) => {}
                (kind, Some(b)) => {
                    return Err(format!(
                        "{} = {b}: only a bandwidth phase has a bandwidth (this one is {:?})",
                        at("bandwidth"),
                        format!("{kind:?}").to_lowercase()
                    ))
                }
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
                toxicity,
                direction: p.direction.unwrap_or(Direction::Both),
                bandwidth: p.bandwidth.unwrap_or(0),
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

    /// Reads and parses a timeline file.
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
                let directed = |d: DirectionToxics| match p.direction {
                    Direction::Both => Toxics::both(d),
                    Direction::Upstream => Toxics::ok().with_upstream(d),
                    Direction::Downstream => Toxics::ok().with_downstream(d),
                };
                let toxics = match p.kind {
                    Kind::Blackhole if p.direction == Direction::Both => Toxics::blackhole(),
                    Kind::Blackhole => directed(DirectionToxics::new().with_blackhole()),
                    Kind::Reset => Toxics::reset(),
                    Kind::Refuse => Toxics::refuse(),
                    Kind::Latency => {
                        directed(DirectionToxics::new().with_latency(p.latency, p.jitter))
                    }
                    Kind::Bandwidth => directed(DirectionToxics::new().with_bandwidth(p.bandwidth)),
                    // Filtered out above: login errors are the server's, not the network's.
                    Kind::LoginError => Toxics::ok(),
                };
                let toxicity = Toxicity::new(p.toxicity)
                    .map_err(|e| format!("phase {:?}: toxicity {}: {e}", p.label, p.toxicity))?;
                Ok(Phase::new(p.from, p.to, toxics.with_toxicity(toxicity)).named(p.label.clone()))
            })
            .collect::<Result<_, String>>()?;
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

    const HEAD: &str = "name = \"t\"\nduration = \"10s\"\n";

    fn one(phase: &str) -> Result<Timeline, String> {
        Timeline::parse(
            &format!("{HEAD}[[phase]]\nfrom = \"1s\"\nto = \"2s\"\n{phase}"),
            "t.toml",
        )
    }

    fn first(t: &Timeline, target: Target) -> Phase {
        t.schedule(target).unwrap().unwrap().phases()[0].clone()
    }

    #[test]
    fn new_keys_map_onto_the_proxy() {
        let t = one("kind = \"reset\"\ntoxicity = 0.3\n").unwrap();
        let phase = first(&t, Target::Primary);
        assert_eq!(
            phase.toxics,
            Toxics::reset().with_toxicity(Toxicity::new(0.3).unwrap())
        );

        let t = one("kind = \"blackhole\"\ndirection = \"downstream\"\n").unwrap();
        let phase = first(&t, Target::Primary);
        assert_eq!(
            phase.toxics,
            Toxics::ok().with_downstream(DirectionToxics::new().with_blackhole())
        );

        let t = one("kind = \"blackhole\"\ndirection = \"both\"\n").unwrap();
        let phase = first(&t, Target::Primary);
        assert_eq!(phase.toxics, Toxics::blackhole());

        let t = one("kind = \"bandwidth\"\nbandwidth = 500\ntarget = \"secondary\"\n").unwrap();
        assert!(t.schedule(Target::Primary).unwrap().is_none());
        let phase = first(&t, Target::Secondary);
        assert_eq!(
            phase.toxics,
            Toxics::both(DirectionToxics::new().with_bandwidth(500))
        );

        let t = one("kind = \"latency\"\nlatency = \"40ms\"\ndirection = \"upstream\"\n").unwrap();
        let phase = first(&t, Target::Primary);
        assert_eq!(
            phase.toxics,
            Toxics::ok().with_upstream(
                DirectionToxics::new().with_latency(Duration::from_millis(40), Duration::ZERO)
            )
        );

        let t = one("kind = \"login_error\"\nerror = 40613\ntoxicity = 0.5\n").unwrap();
        assert!(t.schedule(Target::Primary).unwrap().is_none());
        let login = &t.login_errors(Target::Primary)[0];
        assert!(matches!(login.login_trigger(3), Trigger::Probability { p, seed: 3 } if p == 0.5));
        let t = one("kind = \"login_error\"\nerror = 40613\n").unwrap();
        assert!(matches!(
            t.login_errors(Target::Primary)[0].login_trigger(3),
            Trigger::Always
        ));
    }

    #[test]
    fn bad_values_name_the_field_and_value() {
        let e = one("kind = \"reset\"\ntoxicity = 1.5\n").unwrap_err();
        assert_eq!(
            e,
            "t.toml: phase[0].toxicity = 1.5: expected a number from 0 to 1 (the share of connections affected)"
        );
        let e = one("kind = \"reset\"\ntoxicity = \"half\"\n").unwrap_err();
        assert!(e.contains("line 7 (`toxicity = \"half\"`)"), "{e}");
        let e = one("kind = \"reset\"\ndirection = \"upstream\"\n").unwrap_err();
        assert!(
            e.contains("phase[0].direction = \"upstream\": only blackhole, latency and bandwidth"),
            "{e}"
        );
        let e = one("kind = \"blackhole\"\ndirection = \"sideways\"\n").unwrap_err();
        assert!(
            e.contains("`direction = \"sideways\"`") && e.contains("unknown variant"),
            "{e}"
        );
        let e = one("kind = \"bandwidth\"\n").unwrap_err();
        assert!(
            e.contains("phase[0].bandwidth: a bandwidth phase needs `bandwidth`"),
            "{e}"
        );
        let e = one("kind = \"latency\"\nlatency = \"1s\"\nbandwidth = 10\n").unwrap_err();
        assert!(
            e.contains("phase[0].bandwidth = 10: only a bandwidth phase"),
            "{e}"
        );
        let e = one("kind = \"bandwidth\"\nbandwidth = -1\n").unwrap_err();
        assert!(e.contains("`bandwidth = -1`"), "{e}");
        let e = one("kind = \"meteor\"\n").unwrap_err();
        assert!(
            e.contains("`kind = \"meteor\"`") && e.contains("unknown variant"),
            "{e}"
        );
        let e = one("kind = \"reset\"\ncolour = 1\n").unwrap_err();
        assert!(e.contains("unknown field `colour`"), "{e}");
    }

    #[test]
    fn the_flip_and_the_duration_must_fit_the_run() {
        let with = |head: &str| Timeline::parse(head, "t.toml");
        let e = with("name = \"x\"\nduration = \"10s\"\nflip_at = \"20s\"\n").unwrap_err();
        assert_eq!(
            e,
            "t.toml: flip_at = \"20s\": must be after 0s and before the end (duration \"10s\")"
        );
        assert!(with("name = \"x\"\nduration = \"10s\"\nflip_at = \"0s\"\n").is_err());
        assert!(with("name = \"x\"\nduration = \"10s\"\nflip_at = \"9s\"\n").is_ok());
        let e = with("name = \"x\"\nduration = \"9999999999h\"\n").unwrap_err();
        assert!(e.contains("must be from 1s to 24h"), "{e}");
    }

    #[test]
    fn the_default_timeline_parses() {
        let t = Timeline::parse(include_str!("../incident-2023-09-15.toml"), "default").unwrap();
        assert_eq!(t.duration, Duration::from_secs(75));
        assert!(!t.outage_windows().is_empty());
        assert!(t.schedule(Target::Primary).unwrap().is_some());
        assert!(t.schedule(Target::Secondary).unwrap().is_none());
    }
}
