//! The value that says how the proxy misbehaves: [`Toxics`] = a connection-level
//! [`Mode`] plus per-[`Direction`] [`DirectionToxics`].
//!
//! The same value is used by the in-process API ([`ChaosHandle::set`]), by each phase
//! of a [`Schedule`] and by the JSON control endpoint, so there is one textual form.
//!
//! # Textual form (JSON or TOML)
//!
//! ```json
//! { "mode": "ok",
//!   "latency": "100ms", "jitter": "20ms",
//!   "downstream": { "bandwidth": 10000, "cut_after": 4096 } }
//! ```
//!
//! * `mode`: `"ok"` (default), `"blackhole"`, `"reset"` or `"refuse"`; see [`Mode`].
//! * `toxicity`: the share of connections the toxics apply to, a number from 0 to 1
//!   (default 1: every connection); see [`Toxicity`]. `{"mode": "blackhole",
//!   "toxicity": 0.3}` black-holes about 30 % of the connections and leaves the others
//!   alone (a partial failure).
//! * Direction keys, valid at the top level (then they apply to **both** directions)
//!   and inside `upstream` (client → server) / `downstream` (server → client), where
//!   they override the top-level value:
//!   `latency`, `jitter`, `slow_close` (durations such as `"500ms"`),
//!   `bandwidth` (bytes per second), `cut_after` (bytes), `blackhole` (bool).
//! * `null` means "not set". Unknown keys are errors that name the key.
//! * A bare string is shorthand for a mode: `"blackhole"` = `{"mode": "blackhole"}`.
//!
//! Serialising writes the canonical form: `mode`, then `upstream` and `downstream`
//! with only their non-default keys.
//!
//! [`ChaosHandle::set`]: super::ChaosHandle::set
//! [`Schedule`]: super::Schedule

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::duration::{format_duration, parse_duration, serde_humane, MAX_DURATION};

/// Connection-level behaviour of the proxy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Forward traffic (subject to the direction toxics).
    #[default]
    Ok,
    /// Network partition: nothing gets through and nothing is ever closed.
    ///
    /// Open connections freeze: bytes read from either side (including bytes
    /// already delayed in flight) are discarded, a close from either side is held
    /// back. New connections are accepted, never dialled upstream, and their bytes
    /// are read and discarded until the client gives up; such a connection stays
    /// dead even after the black-hole ends, like a session whose first packets
    /// were lost. When the mode returns to `Ok`, open connections that had nothing
    /// in flight carry on (an idle pooled connection survives a short partition).
    Blackhole,
    /// Every open connection is closed with a TCP RST (both the client and the
    /// upstream side), and every new connection is accepted and immediately
    /// reset, as with [`Mode::Refuse`].
    Reset,
    /// New connections are accepted and immediately reset; open connections are
    /// left alone. The listener stays open (it does not stop accepting), so the
    /// TCP handshake completes and the client sees `ConnectionReset`: usually
    /// from its first read or write, or from `connect` itself when the RST
    /// arrives before the client noticed the handshake. (A real "connection
    /// refused" would need the port closed, which another process could then
    /// take.)
    Refuse,
}

impl Mode {
    /// The lowercase name used in JSON and TOML.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Ok => "ok",
            Mode::Blackhole => "blackhole",
            Mode::Reset => "reset",
            Mode::Refuse => "refuse",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = String;

    /// Parses `ok`, `blackhole` (also `black-hole`, `black_hole`), `reset`, `refuse`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ok" => Ok(Mode::Ok),
            "blackhole" | "black-hole" | "black_hole" => Ok(Mode::Blackhole),
            "reset" => Ok(Mode::Reset),
            "refuse" => Ok(Mode::Refuse),
            _ => Err("expected one of \"ok\", \"blackhole\", \"reset\", \"refuse\"".to_owned()),
        }
    }
}

/// A direction of traffic through the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Client → server (requests).
    Upstream,
    /// Server → client (responses).
    Downstream,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Upstream => "upstream",
            Direction::Downstream => "downstream",
        })
    }
}

/// Toxics applied to one direction of every connection. All combine; the default
/// is a clean pass-through.
///
/// Changes apply to open connections from the next byte on (latency: to bytes read
/// after the change; bytes already delayed keep their delivery time, and order is
/// always preserved).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DirectionToxics {
    /// Added one-way delay for every chunk of bytes.
    #[serde(with = "serde_humane", skip_serializing_if = "Duration::is_zero")]
    pub latency: Duration,
    /// Each chunk's delay is `latency ± U(jitter)` (uniform, from the proxy's seeded
    /// RNG), never below zero; order is preserved regardless.
    #[serde(with = "serde_humane", skip_serializing_if = "Duration::is_zero")]
    pub jitter: Duration,
    /// Bandwidth cap in bytes per second. `Some(0)` stalls the direction (bytes
    /// are held, not discarded, so TCP back-pressure builds up).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<u64>,
    /// Close the connection (FIN, both sides) once this many bytes have been
    /// forwarded in this direction, counted from when the value was set (for new
    /// connections: from their start). `Some(0)` closes as soon as a byte would
    /// be forwarded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cut_after: Option<u64>,
    /// When the sending side closes, hold the close back this long before passing
    /// it on.
    #[serde(with = "serde_humane", skip_serializing_if = "Duration::is_zero")]
    pub slow_close: Duration,
    /// Discard everything in this direction (read, never forwarded, never closed),
    /// while the other direction keeps working.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub blackhole: bool,
}

impl DirectionToxics {
    /// No toxics, as a constant.
    const CLEAN: DirectionToxics = DirectionToxics {
        latency: Duration::ZERO,
        jitter: Duration::ZERO,
        bandwidth: None,
        cut_after: None,
        slow_close: Duration::ZERO,
        blackhole: false,
    };

    /// No toxics.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets latency and jitter.
    pub fn with_latency(mut self, latency: Duration, jitter: Duration) -> Self {
        self.latency = latency;
        self.jitter = jitter;
        self
    }

    /// Sets the bandwidth cap in bytes per second.
    pub fn with_bandwidth(mut self, bytes_per_sec: u64) -> Self {
        self.bandwidth = Some(bytes_per_sec);
        self
    }

    /// Closes the connection after `bytes` have been forwarded in this direction.
    pub fn with_cut_after(mut self, bytes: u64) -> Self {
        self.cut_after = Some(bytes);
        self
    }

    /// Delays passing on a close by `delay`.
    pub fn with_slow_close(mut self, delay: Duration) -> Self {
        self.slow_close = delay;
        self
    }

    /// Black-holes this direction.
    pub fn with_blackhole(mut self) -> Self {
        self.blackhole = true;
        self
    }

    /// True when nothing is set.
    pub fn is_clean(&self) -> bool {
        *self == Self::default()
    }

    /// Draws one delay: `latency ± U(jitter)`, clamped to zero … [`MAX_DURATION`] (the
    /// bound written durations have; ones set in code get it here), so that it can be
    /// added to the clock.
    pub(crate) fn sample_delay(&self, rng: &mut fastrand::Rng) -> Duration {
        if self.jitter.is_zero() {
            return self.latency.min(MAX_DURATION);
        }
        let j = i128::try_from(self.jitter.as_nanos())
            .unwrap_or(i128::MAX)
            .min(i128::from(i64::MAX));
        let offset = i128::from(rng.i64(-(j as i64)..=(j as i64)));
        let base = i128::try_from(self.latency.as_nanos()).unwrap_or(i128::MAX);
        let nanos = (base + offset).max(0);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)).min(MAX_DURATION)
    }
}

impl fmt::Display for DirectionToxics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.blackhole {
            parts.push("blackhole".to_owned());
        }
        if !self.latency.is_zero() || !self.jitter.is_zero() {
            let mut s = format!("latency {}", format_duration(self.latency));
            if !self.jitter.is_zero() {
                s.push_str(&format!("±{}", format_duration(self.jitter)));
            }
            parts.push(s);
        }
        if let Some(b) = self.bandwidth {
            parts.push(format!("bandwidth {b}B/s"));
        }
        if let Some(n) = self.cut_after {
            parts.push(format!("cut after {n}B"));
        }
        if !self.slow_close.is_zero() {
            parts.push(format!("slow close {}", format_duration(self.slow_close)));
        }
        if parts.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// The share of connections a [`Toxics`] value applies to: a number from 0 to 1
/// (default 1, every connection).
///
/// # Which connections
///
/// The proxy gives every connection it accepts a *draw*, a number in `[0, 1)`: the
/// n-th connection accepted gets the n-th value of [`connection_draws`]`(seed)`, where
/// `seed` is the proxy's [`ProxyConfig::seed`](super::ProxyConfig::seed). The draw is
/// made once, at accept time, whatever the toxics are then. A connection is affected by
/// toxics of toxicity `p` exactly when its draw is below `p`: so for as long as it is
/// open, the toxics in force apply to it whole or not at all, and a run with the same
/// seed and the same order of connections affects the same connections. Toxics that
/// change at run time keep this rule: with a lower toxicity, the affected connections
/// are a subset of those affected with a higher one.
///
/// For an affected connection, the toxics act as without a toxicity; an unaffected one
/// sees a clean pass-through (no mode, no latency, nothing).
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Toxicity(f64);

// Never NaN (checked by `Toxicity::new`), so equality is total.
impl Eq for Toxicity {}

impl Default for Toxicity {
    fn default() -> Self {
        Toxicity::ALL
    }
}

impl Toxicity {
    /// Every connection (the default).
    pub const ALL: Toxicity = Toxicity(1.0);
    /// No connection.
    pub const NONE: Toxicity = Toxicity(0.0);

    /// A toxicity of `share` (0 to 1); anything else (including NaN) is an error.
    pub fn new(share: f64) -> Result<Self, String> {
        if (0.0..=1.0).contains(&share) {
            // `-0.0` is in the range; store it as `0.0` so that equality is plain.
            Ok(Toxicity(share + 0.0))
        } else {
            Err("expected a number from 0 to 1 (the share of connections affected)".to_owned())
        }
    }

    /// The share, from 0 to 1.
    pub fn get(self) -> f64 {
        self.0
    }

    /// True for the default (every connection).
    pub fn is_all(&self) -> bool {
        self.0 >= 1.0
    }

    /// Whether a connection with this draw (from [`connection_draws`]) is affected.
    pub fn affects(self, draw: f64) -> bool {
        draw < self.0
    }
}

impl Serialize for Toxicity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0)
    }
}

impl fmt::Display for Toxicity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The per-connection draws of a proxy started with `seed`: the n-th connection the
/// proxy accepts gets the n-th value (uniform in `[0, 1)`), and is affected by toxics
/// of [`Toxicity`] `p` when that value is below `p`. Public so that tests and reports
/// can tell in advance which connections a partial failure will hit.
pub fn connection_draws(seed: u64) -> impl Iterator<Item = f64> {
    // Its own stream, apart from the jitter RNG, so that adding a toxicity changes no
    // delay a run without one would have drawn.
    let mut rng = fastrand::Rng::with_seed(seed ^ DRAW_SEED_SALT);
    std::iter::repeat_with(move || rng.f64())
}

/// Mixed into the proxy's seed for the draw stream ("toxicity" in ASCII).
const DRAW_SEED_SALT: u64 = 0x746f_7869_6369_7479;

/// Everything the proxy does to traffic: a connection-level [`Mode`] plus toxics
/// for each direction, applied to a share of the connections (the [`Toxicity`]).
/// `Toxics::default()` is a clean pass-through ("ok").
///
/// See the [module documentation](self) for the JSON/TOML form.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Toxics {
    /// Connection-level behaviour.
    pub mode: Mode,
    /// The share of connections everything here applies to (default: all).
    #[serde(skip_serializing_if = "Toxicity::is_all")]
    pub toxicity: Toxicity,
    /// Toxics for client → server traffic.
    pub upstream: DirectionToxics,
    /// Toxics for server → client traffic.
    pub downstream: DirectionToxics,
}

impl From<Mode> for Toxics {
    fn from(mode: Mode) -> Self {
        Toxics {
            mode,
            ..Toxics::default()
        }
    }
}

/// What an unaffected connection sees (see [`Toxics::for_draw`]).
static CLEAN: Toxics = Toxics {
    mode: Mode::Ok,
    toxicity: Toxicity::ALL,
    upstream: DirectionToxics::CLEAN,
    downstream: DirectionToxics::CLEAN,
};

impl Toxics {
    /// A clean pass-through.
    pub fn ok() -> Self {
        Self::default()
    }

    /// [`Mode::Blackhole`].
    pub fn blackhole() -> Self {
        Mode::Blackhole.into()
    }

    /// [`Mode::Reset`].
    pub fn reset() -> Self {
        Mode::Reset.into()
    }

    /// [`Mode::Refuse`].
    pub fn refuse() -> Self {
        Mode::Refuse.into()
    }

    /// The same toxics in both directions, mode `Ok`.
    pub fn both(toxics: DirectionToxics) -> Self {
        Toxics {
            mode: Mode::Ok,
            toxicity: Toxicity::ALL,
            upstream: toxics.clone(),
            downstream: toxics,
        }
    }

    /// Latency (± jitter) in both directions: a request/response round trip gains
    /// about `2 × latency`.
    pub fn latency(latency: Duration, jitter: Duration) -> Self {
        Self::both(DirectionToxics::new().with_latency(latency, jitter))
    }

    /// Replaces the upstream (client → server) toxics.
    pub fn with_upstream(mut self, toxics: DirectionToxics) -> Self {
        self.upstream = toxics;
        self
    }

    /// Replaces the downstream (server → client) toxics.
    pub fn with_downstream(mut self, toxics: DirectionToxics) -> Self {
        self.downstream = toxics;
        self
    }

    /// Replaces the mode.
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Applies these toxics to a share of the connections only (see [`Toxicity`]).
    pub fn with_toxicity(mut self, toxicity: Toxicity) -> Self {
        self.toxicity = toxicity;
        self
    }

    /// The toxics as they act on a connection whose draw is `draw`: these toxics when
    /// their [`Toxicity`] affects it, else a clean pass-through.
    pub fn for_draw(&self, draw: f64) -> &Toxics {
        if self.toxicity.affects(draw) {
            self
        } else {
            &CLEAN
        }
    }

    /// The toxics of one direction.
    pub fn direction(&self, dir: Direction) -> &DirectionToxics {
        match dir {
            Direction::Upstream => &self.upstream,
            Direction::Downstream => &self.downstream,
        }
    }

    /// The toxics of one direction, mutably.
    pub fn direction_mut(&mut self, dir: Direction) -> &mut DirectionToxics {
        match dir {
            Direction::Upstream => &mut self.upstream,
            Direction::Downstream => &mut self.downstream,
        }
    }

    /// True for a clean pass-through (nothing set at all).
    pub fn is_ok(&self) -> bool {
        *self == Self::default()
    }

    /// True when bytes in `dir` are discarded (mode black-hole or a direction
    /// black-hole).
    pub fn blackholes(&self, dir: Direction) -> bool {
        self.mode == Mode::Blackhole || self.direction(dir).blackhole
    }

    /// Parses the JSON/TOML form from an already-parsed JSON value; errors name
    /// the offending key and value.
    pub fn from_json_value(value: &Value) -> Result<Self, FieldError> {
        parse_toxics(value, "")
    }
}

impl fmt::Display for Toxics {
    /// A short human description: `ok`, `blackhole`, `latency 200ms±50ms`,
    /// `refuse; down: cut after 10B`, …
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.mode != Mode::Ok {
            parts.push(self.mode.to_string());
        }
        if self.upstream == self.downstream {
            if !self.upstream.is_clean() {
                parts.push(self.upstream.to_string());
            }
        } else {
            if !self.upstream.is_clean() {
                parts.push(format!("up: {}", self.upstream));
            }
            if !self.downstream.is_clean() {
                parts.push(format!("down: {}", self.downstream));
            }
        }
        if !self.toxicity.is_all() {
            parts.push(format!("toxicity {}", self.toxicity));
        }
        if parts.is_empty() {
            f.write_str("ok")
        } else {
            f.write_str(&parts.join("; "))
        }
    }
}

impl<'de> Deserialize<'de> for Toxics {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        Toxics::from_json_value(&value).map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for DirectionToxics {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        let mut out = DirectionToxics::default();
        match &value {
            Value::Object(map) => {
                for (key, v) in map {
                    apply_direction_key(&mut out, key, v, &join_path("", key))
                        .map_err(serde::de::Error::custom)?;
                }
                Ok(out)
            }
            Value::Null => Ok(out),
            other => Err(serde::de::Error::custom(FieldError::new(
                "",
                Some(other),
                "expected a table/object of direction toxics",
            ))),
        }
    }
}

/// A rejected field in the textual form of toxics or a schedule: names the path
/// (`phase[2].downstream.latency`), the value and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct FieldError {
    /// Where: `latency`, `downstream.cut_after`, `phase[1].from`, …
    pub path: String,
    /// The offending value as JSON text, if there was one.
    pub value: Option<String>,
    /// Why it was rejected.
    pub reason: String,
}

impl FieldError {
    pub(crate) fn new(path: &str, value: Option<&Value>, reason: impl Into<String>) -> Self {
        FieldError {
            path: if path.is_empty() {
                "(top level)".to_owned()
            } else {
                path.to_owned()
            },
            value: value.map(|v| v.to_string()),
            reason: reason.into(),
        }
    }

    fn render(&self) -> String {
        match &self.value {
            Some(v) => format!("{} = {}: {}", self.path, v, self.reason),
            None => format!("{}: {}", self.path, self.reason),
        }
    }
}

pub(crate) fn join_path(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// The keys that configure one direction.
pub(crate) const DIRECTION_KEYS: &[&str] = &[
    "latency",
    "jitter",
    "bandwidth",
    "cut_after",
    "slow_close",
    "blackhole",
];

/// All keys of a toxics object.
pub(crate) const TOXICS_KEYS: &[&str] = &[
    "mode",
    "toxicity",
    "latency",
    "jitter",
    "bandwidth",
    "cut_after",
    "slow_close",
    "blackhole",
    "upstream",
    "downstream",
];

fn parse_toxics(value: &Value, prefix: &str) -> Result<Toxics, FieldError> {
    match value {
        Value::Object(map) => parse_toxics_map(map.iter(), prefix),
        Value::String(s) => {
            let mode = s
                .parse::<Mode>()
                .map_err(|reason| FieldError::new(prefix, Some(value), reason))?;
            Ok(mode.into())
        }
        Value::Null => Ok(Toxics::default()),
        other => Err(FieldError::new(
            prefix,
            Some(other),
            "expected an object of toxics, or a mode name",
        )),
    }
}

/// Parses toxics from `(key, value)` pairs; `prefix` is the path of the enclosing
/// object for error messages. Callers pass the pairs that are theirs to interpret
/// (a schedule phase strips `from`, `to` and `name` first).
pub(crate) fn parse_toxics_map<'a>(
    entries: impl Iterator<Item = (&'a String, &'a Value)> + Clone,
    prefix: &str,
) -> Result<Toxics, FieldError> {
    let mut toxics = Toxics::default();
    // Pass 1: mode and top-level (both-direction) keys; reject unknown keys.
    for (key, v) in entries.clone() {
        let path = join_path(prefix, key);
        match key.as_str() {
            "mode" => {
                toxics.mode = match v {
                    Value::Null => Mode::Ok,
                    Value::String(s) => s
                        .parse()
                        .map_err(|reason| FieldError::new(&path, Some(v), reason))?,
                    _ => {
                        return Err(FieldError::new(
                            &path,
                            Some(v),
                            "expected one of \"ok\", \"blackhole\", \"reset\", \"refuse\"",
                        ))
                    }
                }
            }
            "toxicity" => {
                toxics.toxicity = match v {
                    Value::Null => Toxicity::ALL,
                    Value::Number(n) => n
                        .as_f64()
                        .ok_or_else(|| "expected a number from 0 to 1".to_owned())
                        .and_then(Toxicity::new)
                        .map_err(|reason| FieldError::new(&path, Some(v), reason))?,
                    _ => {
                        return Err(FieldError::new(
                            &path,
                            Some(v),
                            "expected a number from 0 to 1 (the share of connections affected)",
                        ))
                    }
                }
            }
            "upstream" | "downstream" => {}
            k if DIRECTION_KEYS.contains(&k) => {
                apply_direction_key(&mut toxics.upstream, key, v, &path)?;
                apply_direction_key(&mut toxics.downstream, key, v, &path)?;
            }
            _ => {
                return Err(FieldError::new(
                    &path,
                    None,
                    format!("unknown key (expected one of: {})", TOXICS_KEYS.join(", ")),
                ))
            }
        }
    }
    // Pass 2: per-direction tables override the top level.
    for (key, v) in entries {
        let dir = match key.as_str() {
            "upstream" => &mut toxics.upstream,
            "downstream" => &mut toxics.downstream,
            _ => continue,
        };
        let path = join_path(prefix, key);
        match v {
            Value::Null => {}
            Value::Object(map) => {
                for (k, dv) in map {
                    apply_direction_key(dir, k, dv, &join_path(&path, k))?;
                }
            }
            other => {
                return Err(FieldError::new(
                    &path,
                    Some(other),
                    format!(
                        "expected a table/object with keys among: {}",
                        DIRECTION_KEYS.join(", ")
                    ),
                ))
            }
        }
    }
    Ok(toxics)
}

fn apply_direction_key(
    d: &mut DirectionToxics,
    key: &str,
    v: &Value,
    path: &str,
) -> Result<(), FieldError> {
    match key {
        "latency" => d.latency = duration_value(v, path)?,
        "jitter" => d.jitter = duration_value(v, path)?,
        "slow_close" => d.slow_close = duration_value(v, path)?,
        "bandwidth" => d.bandwidth = count_value(v, path, "bytes per second")?,
        "cut_after" => d.cut_after = count_value(v, path, "bytes")?,
        "blackhole" => {
            d.blackhole = match v {
                Value::Null => false,
                Value::Bool(b) => *b,
                _ => return Err(FieldError::new(path, Some(v), "expected true or false")),
            }
        }
        _ => {
            return Err(FieldError::new(
                path,
                None,
                format!(
                    "unknown key (expected one of: {})",
                    DIRECTION_KEYS.join(", ")
                ),
            ))
        }
    }
    Ok(())
}

pub(crate) fn duration_value(v: &Value, path: &str) -> Result<Duration, FieldError> {
    match v {
        Value::Null => Ok(Duration::ZERO),
        Value::String(s) => {
            parse_duration(s).map_err(|e| FieldError::new(path, Some(v), e.reason().to_owned()))
        }
        _ => Err(FieldError::new(
            path,
            Some(v),
            "expected a duration string such as \"500ms\", \"5s\" or \"1m\"",
        )),
    }
}

fn count_value(v: &Value, path: &str, unit: &str) -> Result<Option<u64>, FieldError> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n.as_u64().map(Some).ok_or_else(|| {
            FieldError::new(
                path,
                Some(v),
                format!("expected a non-negative integer ({unit})"),
            )
        }),
        _ => Err(FieldError::new(
            path,
            Some(v),
            format!("expected a non-negative integer ({unit})"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Toxics, FieldError> {
        Toxics::from_json_value(&v)
    }

    #[test]
    fn top_level_keys_apply_to_both_directions_and_tables_override() {
        let t = parse(json!({
            "latency": "200ms", "jitter": "50ms",
            "downstream": { "latency": "1s", "bandwidth": 1000 }
        }))
        .unwrap();
        assert_eq!(t.mode, Mode::Ok);
        assert_eq!(t.upstream.latency, Duration::from_millis(200));
        assert_eq!(t.upstream.jitter, Duration::from_millis(50));
        assert_eq!(t.downstream.latency, Duration::from_secs(1));
        assert_eq!(t.downstream.jitter, Duration::from_millis(50));
        assert_eq!(t.downstream.bandwidth, Some(1000));
        assert_eq!(t.upstream.bandwidth, None);
    }

    #[test]
    fn modes_and_shorthand() {
        assert_eq!(
            parse(json!({"mode": "blackhole"})).unwrap(),
            Toxics::blackhole()
        );
        assert_eq!(parse(json!("reset")).unwrap(), Toxics::reset());
        assert_eq!(
            parse(json!({"mode": "Black-Hole"})).unwrap(),
            Toxics::blackhole()
        );
        assert_eq!(parse(json!({})).unwrap(), Toxics::ok());
        assert_eq!(parse(json!(null)).unwrap(), Toxics::ok());
    }

    #[test]
    fn errors_name_path_and_value() {
        let e = parse(json!({"downstream": {"latency": "5x"}})).unwrap_err();
        assert_eq!(e.path, "downstream.latency");
        assert_eq!(e.value.as_deref(), Some("\"5x\""));
        assert!(e.to_string().contains("unknown unit"), "{e}");

        let e = parse(json!({"latncy": "5s"})).unwrap_err();
        assert_eq!(e.path, "latncy");
        assert!(e.to_string().contains("unknown key"), "{e}");

        let e = parse(json!({"bandwidth": -3})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "bandwidth = -3: expected a non-negative integer (bytes per second)"
        );

        let e = parse(json!({"mode": "down"})).unwrap_err();
        assert_eq!(e.path, "mode");

        let e = parse(json!({"upstream": {"cut_after": "ten"}})).unwrap_err();
        assert_eq!(e.path, "upstream.cut_after");

        let e = parse(json!(5)).unwrap_err();
        assert_eq!(e.path, "(top level)");
    }

    #[test]
    fn serde_round_trip() {
        let t = Toxics::refuse()
            .with_upstream(
                DirectionToxics::new()
                    .with_latency(Duration::from_millis(10), Duration::from_millis(2)),
            )
            .with_downstream(
                DirectionToxics::new()
                    .with_bandwidth(500)
                    .with_cut_after(7)
                    .with_slow_close(Duration::from_secs(1))
                    .with_blackhole(),
            );
        let text = serde_json::to_string(&t).unwrap();
        assert_eq!(
            text,
            r#"{"mode":"refuse","upstream":{"latency":"10ms","jitter":"2ms"},"downstream":{"bandwidth":500,"cut_after":7,"slow_close":"1s","blackhole":true}}"#
        );
        let back: Toxics = serde_json::from_str(&text).unwrap();
        assert_eq!(back, t);
        let via_toml: Toxics = toml::from_str(&toml::to_string(&t).unwrap()).unwrap();
        assert_eq!(via_toml, t);
    }

    #[test]
    fn toxicity_parses_serialises_and_is_validated() {
        let t = parse(json!({"mode": "blackhole", "toxicity": 0.3})).unwrap();
        assert_eq!(t.mode, Mode::Blackhole);
        assert_eq!(t.toxicity.get(), 0.3);
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"mode":"blackhole","toxicity":0.3,"upstream":{},"downstream":{}}"#
        );
        let back: Toxics = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(back, t);
        let via_toml: Toxics = toml::from_str(&toml::to_string(&t).unwrap()).unwrap();
        assert_eq!(via_toml, t);
        assert_eq!(t.to_string(), "blackhole; toxicity 0.3");
        assert_eq!(
            parse(json!({"toxicity": 1})).unwrap().toxicity,
            Toxicity::ALL
        );
        assert_eq!(
            parse(json!({"toxicity": 0})).unwrap().toxicity,
            Toxicity::NONE
        );
        assert_eq!(
            parse(json!({"toxicity": null})).unwrap().toxicity,
            Toxicity::ALL
        );

        let e = parse(json!({"mode": "reset", "toxicity": 1.5})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "toxicity = 1.5: expected a number from 0 to 1 (the share of connections affected)"
        );
        let e = parse(json!({"toxicity": -0.1})).unwrap_err();
        assert_eq!(e.path, "toxicity");
        let e = parse(json!({"toxicity": "30%"})).unwrap_err();
        assert_eq!(e.path, "toxicity");
        assert_eq!(e.value.as_deref(), Some("\"30%\""));
        let e = parse(json!({"upstream": {"toxicity": 0.5}})).unwrap_err();
        assert_eq!(e.path, "upstream.toxicity");
        assert!(e.reason.starts_with("unknown key"), "{e}");
        assert!(Toxicity::new(f64::NAN).is_err());
        assert_eq!(Toxicity::new(-0.0).unwrap(), Toxicity::NONE);
    }

    #[test]
    fn for_draw_applies_all_or_nothing() {
        let t = Toxics::blackhole()
            .with_downstream(DirectionToxics::new().with_bandwidth(10))
            .with_toxicity(Toxicity::new(0.25).unwrap());
        assert_eq!(t.for_draw(0.1), &t);
        assert_eq!(t.for_draw(0.25), &Toxics::ok());
        assert_eq!(t.for_draw(0.9), &Toxics::ok());
        let all = Toxics::reset();
        assert_eq!(all.for_draw(0.999_999), &all);
        let none = Toxics::reset().with_toxicity(Toxicity::NONE);
        assert_eq!(none.for_draw(0.0), &Toxics::ok());
    }

    #[test]
    fn connection_draws_are_seeded_and_uniform() {
        let a: Vec<f64> = connection_draws(7).take(1000).collect();
        let b: Vec<f64> = connection_draws(7).take(1000).collect();
        assert_eq!(a, b);
        assert_ne!(a, connection_draws(8).take(1000).collect::<Vec<_>>());
        assert!(a.iter().all(|d| (0.0..1.0).contains(d)));
        let below = a.iter().filter(|d| **d < 0.3).count();
        assert!((250..=350).contains(&below), "{below}");
    }

    #[test]
    fn display_is_short() {
        assert_eq!(Toxics::ok().to_string(), "ok");
        assert_eq!(Toxics::blackhole().to_string(), "blackhole");
        assert_eq!(
            Toxics::latency(Duration::from_millis(200), Duration::from_millis(50)).to_string(),
            "latency 200ms±50ms"
        );
        assert_eq!(
            Toxics::refuse()
                .with_downstream(DirectionToxics::new().with_cut_after(10))
                .to_string(),
            "refuse; down: cut after 10B"
        );
    }

    #[test]
    fn jitter_stays_within_bounds_and_is_seeded() {
        let d = DirectionToxics::new()
            .with_latency(Duration::from_millis(10), Duration::from_millis(30));
        let mut a = fastrand::Rng::with_seed(7);
        let mut b = fastrand::Rng::with_seed(7);
        for _ in 0..1000 {
            let x = d.sample_delay(&mut a);
            assert!(x <= Duration::from_millis(40));
            assert_eq!(x, d.sample_delay(&mut b));
        }
        let fixed = DirectionToxics::new().with_latency(Duration::from_millis(10), Duration::ZERO);
        assert_eq!(fixed.sample_delay(&mut a), Duration::from_millis(10));
    }

    #[test]
    fn delays_beyond_a_year_are_rejected_or_clamped() {
        // Written: rejected, naming the field.
        let e = parse(json!({"latency": "10000000000000000000s"})).unwrap_err();
        assert_eq!(e.path, "latency");
        assert!(e.to_string().contains("too large (at most 8760h)"), "{e}");
        let e = parse(json!({"upstream": {"slow_close": "8761h"}})).unwrap_err();
        assert_eq!(e.path, "upstream.slow_close");
        // Set in code: each delay drawn is clamped, so the pump can add it to the clock.
        let mut rng = fastrand::Rng::with_seed(1);
        for jitter in [Duration::ZERO, Duration::from_secs(1), Duration::MAX] {
            let d = DirectionToxics::new().with_latency(Duration::MAX, jitter);
            let delay = d.sample_delay(&mut rng);
            assert!(delay <= MAX_DURATION, "{delay:?}");
            assert!(tokio::time::Instant::now().checked_add(delay).is_some());
        }
    }
}
