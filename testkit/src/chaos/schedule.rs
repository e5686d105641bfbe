//! A scripted outage: a timeline of phases, each with its [`Toxics`], played on
//! tokio's clock.
//!
//! # TOML format
//!
//! ```toml
//! repeat = false        # optional: loop the timeline forever
//! # period = "30s"      # optional with repeat: loop length (default: end of last phase)
//!
//! [[phase]]
//! from = "0s"
//! to = "5s"
//! mode = "ok"
//!
//! [[phase]]
//! from = "5s"
//! to = "12s"
//! name = "partition"    # optional label, used for outage windows
//! mode = "blackhole"
//!
//! [[phase]]
//! from = "12s"
//! to = "14s"
//! latency = "200ms"     # both directions
//! jitter = "50ms"
//!
//! [[phase]]
//! from = "20s"          # 14s..20s is a gap: "ok"
//! to = "25s"
//! mode = "refuse"
//! downstream = { cut_after = 1024 }
//!
//! [[phase]]
//! from = "25s"
//! to = "30s"
//! mode = "reset"
//! toxicity = 0.3        # only ~30 % of the connections (seeded; see Toxicity)
//! ```
//!
//! Each phase has `from` and `to` (humane durations since the schedule started;
//! the phase covers `from <= t < to`), an optional `name`, and any keys of the
//! [toxics form](super::toxics) (`mode`, `toxicity`, `latency`, `jitter`, `bandwidth`,
//! `cut_after`, `slow_close`, `blackhole`, `upstream`, `downstream`). Phases must be
//! in order and must not overlap; a gap between phases, and the time after the last
//! phase of a non-repeating schedule, is "ok". Errors name the phase index (from 0),
//! the key and the value: `phase[1].from = "4s": overlaps phase[0], which ends at 5s`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::duration::{format_duration, serde_humane, MAX_DURATION};
use super::proxy::{ChaosHandle, Shared};
use super::toxics::{duration_value, parse_toxics_map, FieldError, Toxics};

/// Keys of a phase besides the toxics keys.
const PHASE_KEYS: &[&str] = &["from", "to", "name"];
/// Top-level keys of a schedule.
const SCHEDULE_KEYS: &[&str] = &["phase", "repeat", "period"];

/// One phase of a [`Schedule`]: `toxics` apply for `from <= elapsed < to`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Phase {
    /// Start, relative to the start of the schedule (inclusive).
    #[serde(with = "serde_humane")]
    pub from: Duration,
    /// End, relative to the start of the schedule (exclusive).
    #[serde(with = "serde_humane")]
    pub to: Duration,
    /// Optional label (used for outage windows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What the proxy does during the phase.
    #[serde(flatten)]
    pub toxics: Toxics,
}

impl Phase {
    /// A phase from `from` to `to` with `toxics`.
    pub fn new(from: Duration, to: Duration, toxics: impl Into<Toxics>) -> Self {
        Phase {
            from,
            to,
            name: None,
            toxics: toxics.into(),
        }
    }

    /// Sets the label.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The label: the name if set, else a description of the toxics.
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.toxics.to_string())
    }
}

/// The error for a `field` of `value`, past [`MAX_DURATION`].
fn too_large(field: &str, value: Duration) -> FieldError {
    FieldError::new(
        field,
        Some(&Value::String(format_duration(value))),
        format!("too large (at most {})", format_duration(MAX_DURATION)),
    )
}

/// The shortest period of a repeating schedule: a shorter one would only make the
/// runner wake up (nearly) continuously.
pub const MIN_PERIOD: Duration = Duration::from_millis(1);

/// A validated timeline of [`Phase`]s. Build it from TOML
/// ([`Schedule::from_toml_str`], [`Schedule::from_file`]) or in code
/// ([`Schedule::new`], [`Schedule::repeating`]); play it with
/// [`ChaosHandle::run_schedule`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    phases: Vec<Phase>,
    repeat: bool,
    period: Duration,
}

/// A time window of a [`Schedule`] in which the proxy is not "ok", e.g. for
/// shading a chart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutageWindow {
    /// Index of the phase (within its period).
    pub phase: usize,
    /// Start, relative to the start of the schedule.
    #[serde(with = "serde_humane")]
    pub from: Duration,
    /// End, relative to the start of the schedule.
    #[serde(with = "serde_humane")]
    pub to: Duration,
    /// The phase's name, or a description of its toxics.
    pub label: String,
    /// What the proxy does in the window.
    pub toxics: Toxics,
}

/// Why a schedule was rejected.
#[derive(Debug)]
pub struct ScheduleError {
    file: Option<PathBuf>,
    kind: ScheduleErrorKind,
}

/// The cause of a [`ScheduleError`].
#[derive(Debug)]
#[non_exhaustive]
pub enum ScheduleErrorKind {
    /// The schedule file could not be read.
    Io(std::io::Error),
    /// The text is not valid TOML.
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// A key or value is wrong (names the phase, key and value).
    Field(FieldError),
}

impl ScheduleError {
    fn field(error: FieldError) -> Self {
        ScheduleError {
            file: None,
            kind: ScheduleErrorKind::Field(error),
        }
    }

    /// The cause.
    pub fn kind(&self) -> &ScheduleErrorKind {
        &self.kind
    }

    /// The rejected field, when the cause is one.
    pub fn field_error(&self) -> Option<&FieldError> {
        match &self.kind {
            ScheduleErrorKind::Field(e) => Some(e),
            _ => None,
        }
    }

    /// The file, when the schedule came from one.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }
}

impl fmt::Display for ScheduleError {
    /// Always a single line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}: ", file.display())?;
        }
        match &self.kind {
            ScheduleErrorKind::Io(e) => write!(f, "cannot read schedule: {e}"),
            ScheduleErrorKind::Syntax {
                line,
                column,
                message,
            } => write!(
                f,
                "invalid TOML at line {line}, column {column}: {}",
                message.trim().replace('\n', " ")
            ),
            ScheduleErrorKind::Field(e) => write!(f, "invalid schedule: {e}"),
        }
    }
}

impl std::error::Error for ScheduleError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ScheduleErrorKind::Io(e) => Some(e),
            ScheduleErrorKind::Field(e) => Some(e),
            ScheduleErrorKind::Syntax { .. } => None,
        }
    }
}

impl Schedule {
    /// A schedule that plays `phases` once; afterwards the proxy is "ok".
    pub fn new(phases: Vec<Phase>) -> Result<Self, ScheduleError> {
        Self::build(phases, false, None).map_err(ScheduleError::field)
    }

    /// A schedule that loops forever with the given period (default: the end of
    /// the last phase).
    pub fn repeating(phases: Vec<Phase>, period: Option<Duration>) -> Result<Self, ScheduleError> {
        Self::build(phases, true, period).map_err(ScheduleError::field)
    }

    fn build(
        phases: Vec<Phase>,
        repeat: bool,
        period: Option<Duration>,
    ) -> Result<Self, FieldError> {
        if phases.is_empty() {
            return Err(FieldError::new(
                "phase",
                None,
                "a schedule needs at least one [[phase]]",
            ));
        }
        for (i, p) in phases.iter().enumerate() {
            if p.to > MAX_DURATION {
                return Err(too_large(&format!("phase[{i}].to"), p.to));
            }
            if p.from >= p.to {
                return Err(FieldError::new(
                    &format!("phase[{i}].to"),
                    Some(&Value::String(format_duration(p.to))),
                    format!("must be after `from` ({})", format_duration(p.from)),
                ));
            }
            if i > 0 {
                let prev = &phases[i - 1];
                if p.from < prev.from {
                    return Err(FieldError::new(
                        &format!("phase[{i}].from"),
                        Some(&Value::String(format_duration(p.from))),
                        format!(
                            "phases must be in time order: phase[{}] starts later, at {}",
                            i - 1,
                            format_duration(prev.from)
                        ),
                    ));
                }
                if p.from < prev.to {
                    return Err(FieldError::new(
                        &format!("phase[{i}].from"),
                        Some(&Value::String(format_duration(p.from))),
                        format!(
                            "overlaps phase[{}], which ends at {}",
                            i - 1,
                            format_duration(prev.to)
                        ),
                    ));
                }
            }
        }
        let end = phases.last().map_or(Duration::ZERO, |p| p.to);
        let period = match period {
            None => end,
            Some(_) if !repeat => {
                return Err(FieldError::new(
                    "period",
                    None,
                    "only meaningful with `repeat = true`",
                ))
            }
            Some(p) if p < end => {
                return Err(FieldError::new(
                    "period",
                    Some(&Value::String(format_duration(p))),
                    format!(
                        "shorter than the timeline, whose last phase ends at {}",
                        format_duration(end)
                    ),
                ))
            }
            Some(p) if p > MAX_DURATION => return Err(too_large("period", p)),
            Some(p) => p,
        };
        if repeat && period < MIN_PERIOD {
            return Err(FieldError::new(
                "period",
                Some(&Value::String(format_duration(period))),
                format!(
                    "a repeating schedule's period (by default the end of its last phase) must be at least {}",
                    format_duration(MIN_PERIOD)
                ),
            ));
        }
        Ok(Schedule {
            phases,
            repeat,
            period,
        })
    }

    /// Parses the TOML form (see the [module documentation](self)).
    pub fn from_toml_str(text: &str) -> Result<Self, ScheduleError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map_or((1, 1), |span| line_column(text, span.start));
            ScheduleError {
                file: None,
                kind: ScheduleErrorKind::Syntax {
                    line,
                    column,
                    message: e.message().to_owned(),
                },
            }
        })?;
        let value = serde_json::to_value(&table).map_err(|e| {
            ScheduleError::field(FieldError::new("", None, format!("unsupported value: {e}")))
        })?;
        Self::from_json_value(&value).map_err(ScheduleError::field)
    }

    /// Reads and parses a TOML file; errors start with the file name.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ScheduleError> {
        let path = path.as_ref();
        let with_file = |mut e: ScheduleError| {
            e.file = Some(path.to_owned());
            e
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            with_file(ScheduleError {
                file: None,
                kind: ScheduleErrorKind::Io(e),
            })
        })?;
        Self::from_toml_str(&text).map_err(with_file)
    }

    /// Parses the same structure from a JSON value (`{"phase": [ {...}, ... ]}`).
    pub fn from_json_value(value: &Value) -> Result<Self, FieldError> {
        match value {
            Value::Object(map) => parse_schedule(map),
            other => Err(FieldError::new("", Some(other), "expected a table")),
        }
    }

    /// The phases, in time order.
    pub fn phases(&self) -> &[Phase] {
        &self.phases
    }

    /// Whether the timeline loops.
    pub fn is_repeating(&self) -> bool {
        self.repeat
    }

    /// Length of one pass: the period of a repeating schedule, else the end of
    /// the last phase.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Index of the phase in force `elapsed` after the start, if any (`None` in
    /// a gap or after the end).
    pub fn phase_index_at(&self, elapsed: Duration) -> Option<usize> {
        let t = self.fold(elapsed)?;
        // Phases are sorted and disjoint: the candidate is the last one starting <= t.
        let i = self
            .phases
            .partition_point(|p| p.from <= t)
            .checked_sub(1)?;
        (t < self.phases[i].to).then_some(i)
    }

    /// The toxics in force `elapsed` after the start: the phase covering it
    /// (`from <= elapsed < to`), else "ok". Pure; used by the runner.
    pub fn mode_at(&self, elapsed: Duration) -> Toxics {
        self.phase_index_at(elapsed)
            .map(|i| self.phases[i].toxics.clone())
            .unwrap_or_default()
    }

    /// The first instant after `elapsed` at which the toxics may change, or
    /// `None` once a non-repeating schedule is over.
    pub fn next_change_after(&self, elapsed: Duration) -> Option<Duration> {
        let period = self.period;
        let (base, offset) = if self.repeat {
            // The offset into the current pass; the pass started exactly that long ago.
            let offset = self.fold(elapsed).unwrap_or_default();
            (elapsed - offset, offset)
        } else {
            (Duration::ZERO, elapsed)
        };
        let next_in_period = self
            .phases
            .iter()
            .flat_map(|p| [p.from, p.to])
            .filter(|b| *b > offset)
            .min();
        match next_in_period {
            Some(b) if b < period || !self.repeat => Some(base + b),
            _ if self.repeat => Some(base + period),
            _ => None,
        }
    }

    /// The windows of one pass in which the proxy is not "ok" (phases whose
    /// toxics are not the default).
    pub fn outage_windows(&self) -> Vec<OutageWindow> {
        self.phases
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.toxics.is_ok())
            .map(|(i, p)| OutageWindow {
                phase: i,
                from: p.from,
                to: p.to,
                label: p.label(),
                toxics: p.toxics.clone(),
            })
            .collect()
    }

    /// The outage windows up to `horizon`, with the passes of a repeating
    /// schedule unrolled and the last window clipped to `horizon`.
    pub fn outage_windows_until(&self, horizon: Duration) -> Vec<OutageWindow> {
        let one_pass = self.outage_windows();
        let mut out = Vec::new();
        let mut base = Duration::ZERO;
        loop {
            for w in &one_pass {
                let from = base + w.from;
                if from >= horizon {
                    return out;
                }
                out.push(OutageWindow {
                    from,
                    to: (base + w.to).min(horizon),
                    ..w.clone()
                });
            }
            if !self.repeat || one_pass.is_empty() {
                return out;
            }
            base += self.period;
            if base >= horizon {
                return out;
            }
        }
    }

    /// Folds `elapsed` into one pass; `None` after the end of a non-repeating one.
    fn fold(&self, elapsed: Duration) -> Option<Duration> {
        if self.repeat {
            let nanos = elapsed.as_nanos() % self.period.as_nanos();
            Some(Duration::from_nanos(
                u64::try_from(nanos).unwrap_or(u64::MAX),
            ))
        } else if elapsed < self.period {
            Some(elapsed)
        } else {
            None
        }
    }
}

impl Serialize for Schedule {
    /// The TOML structure (`repeat`, `period`, `phase = [...]`), so that
    /// `toml::to_string(&schedule)` reads back with [`Schedule::from_toml_str`].
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Schedule", 3)?;
        if self.repeat {
            st.serialize_field("repeat", &true)?;
            st.serialize_field("period", &format_duration(self.period))?;
        } else {
            st.skip_field("repeat")?;
            st.skip_field("period")?;
        }
        st.serialize_field("phase", &self.phases)?;
        st.end()
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        Schedule::from_json_value(&value).map_err(serde::de::Error::custom)
    }
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.chars().count(), |i| before[i + 1..].chars().count())
        + 1;
    (line, column)
}

fn unknown_key(path: &str, allowed: &[&str]) -> FieldError {
    FieldError::new(
        path,
        None,
        format!("unknown key (expected one of: {})", allowed.join(", ")),
    )
}

fn parse_schedule(root: &Map<String, Value>) -> Result<Schedule, FieldError> {
    let mut repeat = false;
    let mut period = None;
    let mut phases_value = None;
    for (key, v) in root {
        match key.as_str() {
            "repeat" => {
                repeat = v
                    .as_bool()
                    .ok_or_else(|| FieldError::new("repeat", Some(v), "expected true or false"))?;
            }
            "period" => period = Some(duration_value(v, "period")?),
            "phase" => phases_value = Some(v),
            _ => return Err(unknown_key(key, SCHEDULE_KEYS)),
        }
    }
    let items = match phases_value {
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(FieldError::new(
                "phase",
                Some(other),
                "expected an array of tables ([[phase]])",
            ))
        }
        None => {
            return Err(FieldError::new(
                "phase",
                None,
                "missing: a schedule needs at least one [[phase]]",
            ))
        }
    };
    let mut phases = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let prefix = format!("phase[{i}]");
        let Value::Object(map) = item else {
            return Err(FieldError::new(&prefix, Some(item), "expected a table"));
        };
        let required = |key: &str| {
            let path = format!("{prefix}.{key}");
            match map.get(key) {
                Some(v) => duration_value(v, &path),
                None => Err(FieldError::new(
                    &path,
                    None,
                    "missing (a duration such as \"5s\")",
                )),
            }
        };
        let from = required("from")?;
        let to = required("to")?;
        let name = match map.get("name") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                return Err(FieldError::new(
                    &format!("{prefix}.name"),
                    Some(other),
                    "expected a string",
                ))
            }
        };
        let toxics = parse_toxics_map(
            map.iter()
                .filter(|(k, _)| !PHASE_KEYS.contains(&k.as_str())),
            &prefix,
        )
        .map_err(|mut e| {
            if e.reason.starts_with("unknown key") && e.path.matches('.').count() == 1 {
                e.reason = format!(
                    "unknown key (expected one of: {}, {})",
                    PHASE_KEYS.join(", "),
                    super::toxics::TOXICS_KEYS.join(", ")
                );
            }
            e
        })?;
        phases.push(Phase {
            from,
            to,
            name,
            toxics,
        });
    }
    Schedule::build(phases, repeat, period)
}

/// A schedule being played by a proxy.
#[derive(Clone, Debug, Serialize)]
pub struct RunningSchedule {
    /// The schedule.
    pub schedule: Schedule,
    /// Time since it started (tokio's clock).
    #[serde(with = "serde_humane")]
    pub elapsed: Duration,
}

/// Bookkeeping for the schedule a proxy is playing.
#[derive(Debug)]
pub(crate) struct ScheduleSlot {
    pub(crate) id: u64,
    pub(crate) abort: tokio::task::AbortHandle,
    pub(crate) started: Instant,
    pub(crate) schedule: Arc<Schedule>,
}

/// Plays a schedule (see [`ChaosHandle::run_schedule`]). Dropping the guard
/// cancels the schedule; the toxics stay as the last phase set them.
#[derive(Debug)]
#[must_use = "dropping the guard cancels the schedule; call .detach() to let it run"]
pub struct ScheduleGuard {
    id: u64,
    task: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl ScheduleGuard {
    /// True once the schedule has played out or was cancelled.
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Waits until a non-repeating schedule has played out (the proxy is then
    /// "ok"), or until the schedule is cancelled. Never returns for a repeating
    /// schedule unless cancelled.
    pub async fn finished(mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Lets the schedule run without the guard; stop it with
    /// [`ChaosHandle::cancel_schedule`].
    pub fn detach(mut self) {
        self.task = None;
    }

    /// Cancels the schedule now (same as dropping the guard).
    pub fn cancel(self) {}
}

impl Drop for ScheduleGuard {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            self.shared.clear_schedule_slot(self.id);
        }
    }
}

/// Starts playing `schedule` on `handle`'s proxy, replacing any schedule already
/// running there.
pub(crate) fn spawn_runner(handle: &ChaosHandle, schedule: Schedule) -> ScheduleGuard {
    let shared = handle.shared().clone();
    let schedule = Arc::new(schedule);
    let started = Instant::now();
    let mut slot = shared.schedule_slot();
    let id = shared.next_schedule_id();
    let task = tokio::spawn(run(handle.clone(), schedule.clone(), started, id));
    if let Some(old) = slot.replace(ScheduleSlot {
        id,
        abort: task.abort_handle(),
        started,
        schedule,
    }) {
        old.abort.abort();
    }
    drop(slot);
    ScheduleGuard {
        id,
        task: Some(task),
        shared,
    }
}

async fn run(handle: ChaosHandle, schedule: Arc<Schedule>, started: Instant, id: u64) {
    let mut elapsed = Duration::ZERO;
    loop {
        let toxics = schedule.mode_at(elapsed);
        tracing::debug!(elapsed = %format_duration(elapsed), %toxics, "chaos schedule");
        handle.set(toxics);
        match schedule.next_change_after(elapsed) {
            Some(next) => {
                // Schedules are bounded (MAX_DURATION), so this only fails past the
                // clock's range, where the change never comes: keep the toxics.
                let Some(at) = started.checked_add(next) else {
                    return std::future::pending().await;
                };
                tokio::time::sleep_until(at).await;
                elapsed = next;
            }
            None => break,
        }
    }
    handle.shared().clear_schedule_slot(id);
}

impl Shared {
    pub(crate) fn running_schedule(&self) -> Option<RunningSchedule> {
        let slot = self.schedule_slot();
        slot.as_ref().map(|s| RunningSchedule {
            schedule: (*s.schedule).clone(),
            elapsed: s.started.elapsed(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::Mode;

    const EXAMPLE: &str = r#"
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
        name = "refusing"
        mode = "refuse"
        downstream = { cut_after = 1024 }
    "#;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn parses_the_example() {
        let sch = Schedule::from_toml_str(EXAMPLE).unwrap();
        assert_eq!(sch.phases().len(), 4);
        assert!(!sch.is_repeating());
        assert_eq!(sch.period(), s(25));
        assert_eq!(sch.phases()[1].toxics, Toxics::blackhole());
        assert_eq!(sch.phases()[2].toxics, Toxics::latency(ms(200), ms(50)));
        assert_eq!(sch.phases()[3].name.as_deref(), Some("refusing"));
        assert_eq!(sch.phases()[3].toxics.downstream.cut_after, Some(1024));
        assert_eq!(sch.phases()[3].toxics.upstream.cut_after, None);
    }

    #[test]
    fn mode_at_boundaries() {
        let sch = Schedule::from_toml_str(EXAMPLE).unwrap();
        assert_eq!(sch.mode_at(Duration::ZERO), Toxics::ok());
        assert_eq!(sch.mode_at(s(5) - Duration::from_nanos(1)), Toxics::ok());
        assert_eq!(sch.mode_at(s(5)), Toxics::blackhole());
        assert_eq!(sch.mode_at(ms(11_999)).mode, Mode::Blackhole);
        assert_eq!(sch.mode_at(s(12)), Toxics::latency(ms(200), ms(50)));
        assert_eq!(sch.mode_at(s(14)), Toxics::ok(), "gap");
        assert_eq!(sch.mode_at(s(19)), Toxics::ok(), "gap");
        assert_eq!(sch.mode_at(s(20)).mode, Mode::Refuse);
        assert_eq!(sch.mode_at(s(25)), Toxics::ok(), "after the end");
        assert_eq!(sch.mode_at(s(1000)), Toxics::ok());
        assert_eq!(sch.phase_index_at(s(13)), Some(2));
        assert_eq!(sch.phase_index_at(s(15)), None);
    }

    #[test]
    fn next_change_walks_every_boundary_then_stops() {
        let sch = Schedule::from_toml_str(EXAMPLE).unwrap();
        let mut t = Duration::ZERO;
        let mut seen = vec![];
        while let Some(n) = sch.next_change_after(t) {
            seen.push(n.as_secs());
            t = n;
        }
        assert_eq!(seen, vec![5, 12, 14, 20, 25]);
    }

    #[test]
    fn repeating_schedule_folds_time() {
        let sch = Schedule::from_toml_str(
            r#"
            repeat = true
            period = "10s"
            [[phase]]
            from = "2s"
            to = "4s"
            mode = "reset"
            "#,
        )
        .unwrap();
        assert!(sch.is_repeating());
        assert_eq!(sch.period(), s(10));
        assert_eq!(sch.mode_at(s(1)), Toxics::ok());
        assert_eq!(sch.mode_at(s(3)), Toxics::reset());
        assert_eq!(sch.mode_at(s(13)), Toxics::reset());
        assert_eq!(sch.mode_at(s(14)), Toxics::ok());
        assert_eq!(sch.mode_at(s(9)), Toxics::ok());
        let mut t = Duration::ZERO;
        let mut seen = vec![];
        for _ in 0..6 {
            t = sch.next_change_after(t).unwrap();
            seen.push(t.as_secs());
        }
        assert_eq!(seen, vec![2, 4, 10, 12, 14, 20]);
        let w = sch.outage_windows_until(s(23));
        let spans: Vec<_> = w
            .iter()
            .map(|w| (w.from.as_secs(), w.to.as_secs()))
            .collect();
        assert_eq!(spans, vec![(2, 4), (12, 14), (22, 23)]);
        assert_eq!(w[0].label, "reset");
    }

    #[test]
    fn repeat_without_period_loops_at_last_phase_end() {
        let sch = Schedule::repeating(
            vec![
                Phase::new(s(0), s(1), Mode::Blackhole),
                Phase::new(s(1), s(3), Mode::Ok),
            ],
            None,
        )
        .unwrap();
        assert_eq!(sch.period(), s(3));
        assert_eq!(sch.mode_at(s(3)), Toxics::blackhole());
        assert_eq!(sch.next_change_after(s(2)), Some(s(3)));
        assert_eq!(sch.next_change_after(s(3)), Some(s(4)));
    }

    #[test]
    fn outage_windows_skip_ok_phases() {
        let sch = Schedule::from_toml_str(EXAMPLE).unwrap();
        let w = sch.outage_windows();
        let got: Vec<_> = w
            .iter()
            .map(|w| (w.phase, w.from.as_secs(), w.to.as_secs(), w.label.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, 5, 12, "blackhole"),
                (2, 12, 14, "latency 200ms±50ms"),
                (3, 20, 25, "refusing"),
            ]
        );
    }

    fn err(text: &str) -> String {
        Schedule::from_toml_str(text).unwrap_err().to_string()
    }

    #[test]
    fn invalid_schedules_name_phase_field_and_value() {
        let e =
            err("[[phase]]\nfrom = \"0s\"\nto = \"5s\"\n[[phase]]\nfrom = \"4s\"\nto = \"6s\"\n");
        assert_eq!(
            e,
            "invalid schedule: phase[1].from = \"4s\": overlaps phase[0], which ends at 5s"
        );
        let e =
            err("[[phase]]\nfrom = \"5s\"\nto = \"6s\"\n[[phase]]\nfrom = \"1s\"\nto = \"2s\"\n");
        assert!(
            e.contains("phase[1].from = \"1s\": phases must be in time order"),
            "{e}"
        );
        let e = err("[[phase]]\nfrom = \"5s\"\nto = \"5s\"\n");
        assert_eq!(
            e,
            "invalid schedule: phase[0].to = \"5s\": must be after `from` (5s)"
        );
        let e = err("[[phase]]\nfrom = \"0s\"\nto = \"5x\"\n");
        assert!(
            e.contains("phase[0].to = \"5x\": unknown unit \"x\""),
            "{e}"
        );
        let e = err("[[phase]]\nfrom = \"0s\"\n");
        assert!(e.contains("phase[0].to: missing"), "{e}");
        let e = err("[[phase]]\nfrom = 0\nto = \"1s\"\n");
        assert!(
            e.contains("phase[0].from = 0: expected a duration string"),
            "{e}"
        );
        let e = err("[[phase]]\nfrom = \"0s\"\nto = \"1s\"\nmode = \"down\"\n");
        assert!(
            e.contains("phase[0].mode = \"down\": expected one of"),
            "{e}"
        );
        let e = err("[[phase]]\nfrom = \"0s\"\nto = \"1s\"\nlatncy = \"1s\"\n");
        assert!(
            e.contains("phase[0].latncy: unknown key (expected one of: from, to, name, mode"),
            "{e}"
        );
        let e = err(
            "[[phase]]\nfrom = \"0s\"\nto = \"1s\"\n[phase.downstream]\nbandwidth = \"fast\"\n",
        );
        assert!(
            e.contains("phase[0].downstream.bandwidth = \"fast\": expected a non-negative integer"),
            "{e}"
        );
        let e = err("[[phase]]\nfrom = \"0s\"\nto = \"1s\"\n[phase.upstream]\nfoo = 1\n");
        assert!(e.contains("phase[0].upstream.foo: unknown key"), "{e}");
        let e = err("repeat = 1\n[[phase]]\nfrom = \"0s\"\nto = \"1s\"\n");
        assert!(e.contains("repeat = 1: expected true or false"), "{e}");
        let e = err("period = \"5s\"\n[[phase]]\nfrom = \"0s\"\nto = \"1s\"\n");
        assert!(
            e.contains("period: only meaningful with `repeat = true`"),
            "{e}"
        );
        let e = err("repeat = true\nperiod = \"5s\"\n[[phase]]\nfrom = \"0s\"\nto = \"6s\"\n");
        assert!(
            e.contains("period = \"5s\": shorter than the timeline"),
            "{e}"
        );
        let e = err("");
        assert!(e.contains("phase: missing"), "{e}");
        let e = err("phases = []");
        assert!(e.contains("phases: unknown key"), "{e}");
    }

    #[test]
    fn huge_times_and_tiny_periods_are_rejected() {
        let e = err("[[phase]]\nfrom = \"0s\"\nto = \"10000000000000000000s\"\n");
        assert!(
            e.contains("phase[0].to = \"10000000000000000000s\": too large (at most 8760h)"),
            "{e}"
        );
        // Built in code, the same bound holds.
        let e = Schedule::new(vec![Phase::new(s(0), Duration::MAX, Mode::Reset)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("phase[0].to") && e.contains("too large"), "{e}");
        let e = Schedule::repeating(
            vec![Phase::new(s(0), s(1), Mode::Reset)],
            Some(Duration::MAX),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("period") && e.contains("too large"), "{e}");
        let e = err("repeat = true\nperiod = \"10ns\"\n[[phase]]\nfrom = \"0ns\"\nto = \"5ns\"\n");
        assert!(
            e.contains("period = \"10ns\": a repeating schedule's period"),
            "{e}"
        );
        assert!(e.contains("must be at least 1ms"), "{e}");
        // The default period (the end of the last phase) too.
        let tiny = vec![Phase::new(
            Duration::ZERO,
            Duration::from_nanos(5),
            Mode::Reset,
        )];
        assert!(Schedule::repeating(tiny.clone(), None).is_err());
        // Played once, a short phase is fine.
        assert!(Schedule::new(tiny).is_ok());
    }

    #[test]
    fn next_change_stays_ahead_after_billions_of_passes() {
        // 200 days of 3 ms passes: 5.76e9 passes, more than u32 counts.
        let sch =
            Schedule::repeating(vec![Phase::new(ms(1), ms(2), Mode::Reset)], Some(ms(3))).unwrap();
        let start = Duration::from_secs(200 * 86_400);
        assert_eq!(sch.next_change_after(start), Some(start + ms(1)));
        assert_eq!(sch.next_change_after(start + ms(1)), Some(start + ms(2)));
        assert_eq!(sch.next_change_after(start + ms(2)), Some(start + ms(3)));
        assert_eq!(sch.mode_at(start + ms(1)), Toxics::reset());
    }

    #[test]
    fn syntax_errors_are_one_line_with_position() {
        let e = Schedule::from_toml_str("[[phase]]\nfrom = \"0s\nto = \"1s\"\n").unwrap_err();
        let ScheduleErrorKind::Syntax { line, .. } = e.kind() else {
            panic!("{e:?}")
        };
        assert_eq!(*line, 2);
        let text = e.to_string();
        assert!(text.starts_with("invalid TOML at line 2, column"), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }

    #[test]
    fn toml_round_trip() {
        let sch = Schedule::from_toml_str(EXAMPLE).unwrap();
        let text = toml::to_string(&sch).unwrap();
        assert_eq!(Schedule::from_toml_str(&text).unwrap(), sch, "{text}");
        let rep = Schedule::repeating(
            vec![Phase::new(s(1), s(2), Mode::Reset).named("x")],
            Some(s(4)),
        )
        .unwrap();
        let text = toml::to_string(&rep).unwrap();
        assert_eq!(Schedule::from_toml_str(&text).unwrap(), rep, "{text}");
    }
}
