//! Configuration of the whole stack: one TOML file, overridable by environment variables.
//!
//! [`Config`] has one section per layer (`[timeouts]`, `[retry]`, `[retry_budget]`,
//! `[breaker]`, `[pool]`, `[failover]`, `[results]`) and a `[[regions]]` list. Every section is
//! optional and defaults to the values documented on its fields; `regions` is required
//! and must hold at least one region. Unknown keys are errors (a misspelled key must not
//! silently leave a default in place). `examples/regions.toml` is a complete, commented
//! sample with every default written out.
//!
//! Durations are strings with a unit: `"250us"`, `"500ms"`, `"2s"`, `"1.5s"`, `"1m"`,
//! `"1h"` (see [`duration`]); a bare number is rejected because its unit would be a guess.
//!
//! Loading ([`Config::from_toml_str`], [`Config::from_file`], [`Config::from_env`],
//! [`Config::from_toml_with_env`]) parses, applies the environment overlay, deserializes
//! and then [validates](Config::validate) with the layers' own rules (`TimeoutBudget`,
//! `RetryPolicy`, `Backoff`, `RetryBudget`, `CircuitBreakerConfig`), so a configuration
//! that loads also builds. Every error is a [`ConfigError`] that names the full path of the
//! field (`retry.max_attempts`, `regions[1].port`) and the rejected value:
//!
//! ```text
//! invalid `timeouts.total` = "5": a duration needs a unit (ms, s, m, h)
//! invalid `timeouts.attempt` = 6s: must not exceed `timeouts.total` (5s)
//! invalid `regions[1].name` = "westeurope": duplicates `regions[0].name`: region names must be unique
//! invalid `pool.max_size` = 4294967295: must be at most 1000
//! invalid `retry.max_attempts` = 99999999999999999999: is out of range: a TOML integer must fit in 64 bits (line 7, column 16)
//! ```
//!
//! Every duration, count and string has a range, written on its field (and in the
//! README's table): durations are at most 24 h (or less, e.g. `failover.probe_interval`
//! ≤ 1 h), counts have upper bounds (`pool.max_size` ≤ 1000, `breaker.window_calls`
//! ≤ 10 000, …), and the strings the TDS login packet carries are at most 128 characters
//! without control characters. A value shown in an error is cut to 64 characters.
//!
//! # Secrets
//!
//! `password` and `connection_string` are [`Secret`]s: `Debug`, `Display` and `Serialize`
//! write `***`, errors show `***` as their value, and the values of unknown keys are not
//! shown either (a misspelled `pasword` must not leak). Keep them out of the file: set them
//! through the environment, as below.
//!
//! # Environment overlay
//!
//! After the file is parsed, each variable named `MSSQL_RESILIENCE__<SECTION>__<KEY>` sets
//! `<section>.<key>` (lower-cased), replacing the file's value or adding it:
//!
//! ```text
//! MSSQL_RESILIENCE__RETRY__MAX_ATTEMPTS=5           # [retry] max_attempts = 5
//! MSSQL_RESILIENCE__TIMEOUTS__TOTAL=10s             # [timeouts] total = "10s"
//! MSSQL_RESILIENCE__RETRY_BUDGET__RATIO=0.1         # [retry_budget] ratio = 0.1
//! MSSQL_RESILIENCE__REGIONS__0__PASSWORD=…          # regions[0].password
//! MSSQL_RESILIENCE__REGIONS__2__NAME=uksouth        # adds regions[2] if there are 2 regions
//! ```
//!
//! - Regions are addressed by index (from 0). An index equal to the number of regions adds
//!   one; a larger index is an error that names the variable. Variables are applied in
//!   order of their names with indices compared as numbers, so `…__REGIONS__2__NAME` and
//!   `…__REGIONS__2__HOST` add one region, whatever order the environment lists them in.
//! - A value is read as an integer, a float or a boolean (`true`/`false`) when it looks
//!   like one, and as a string otherwise — except for text keys (`name`,
//!   `connection_string`, `host`, `instance_name`, `database`, `user`, `password`,
//!   `application_name`), which are always strings: a password `0123` stays `"0123"`.
//! - Other variables are ignored, including `MSSQL_RESILIENCE_CONFIG` (single `_`), which
//!   [`Config::from_env`] reads as the path of the file to start from.
//! - An error in a value that came from a variable names the variable too, e.g.
//!   ``invalid `retry.max_attempts` = 0: must be between 1 and 100 (from `MSSQL_RESILIENCE__RETRY__MAX_ATTEMPTS`)``.
//!
//! ```
//! use std::time::Duration;
//! use mssql_resilience::config::{Config, Role};
//!
//! let file = r#"
//!     [retry]
//!     max_attempts = 4
//!
//!     [[regions]]
//!     name = "westeurope"
//!     host = "myfog.database.windows.net"
//!     database = "app"
//!     user = "app"
//!     role = "read_write"
//! "#;
//! let env = [
//!     ("MSSQL_RESILIENCE__RETRY__MAX_ATTEMPTS", "5"),
//!     ("MSSQL_RESILIENCE__REGIONS__0__PASSWORD", "0123"),
//! ];
//! let config = Config::from_toml_with_env(
//!     file,
//!     env.map(|(k, v)| (k.to_owned(), v.to_owned())),
//! )?;
//! assert_eq!(config.retry.max_attempts, 5);
//! assert_eq!(config.timeouts.total, Duration::from_secs(5)); // a default
//! let region = &config.regions[0];
//! assert_eq!(region.role, Role::ReadWrite);
//! assert_eq!(region.password.as_ref().map(|p| p.expose()), Some("0123"));
//! assert!(!format!("{config:?}").contains("0123"));
//! assert_eq!(region.address()?, ("myfog.database.windows.net".to_owned(), 1433));
//!
//! let policy = config.retry.policy()?;
//! let budget = config.timeouts.budget()?;
//! let breaker = config.breaker.breaker_config(region.name.clone())?;
//! # let _ = (policy, budget, breaker);
//! # Ok::<(), mssql_resilience::ConfigError>(())
//! ```

pub(crate) mod ado;
pub mod duration;
mod env;
mod region;
mod results;
mod secret;
mod sections;
mod util;

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use toml::{Table, Value};

use self::env::Origin;
pub use self::env::ENV_PREFIX;
pub use self::region::{
    Authentication, Encryption, RegionConfig, Role, DEFAULT_APPLICATION_NAME, DEFAULT_PORT,
    MAX_CONNECTION_STRING_CHARS, MAX_INSTANCE_NAME_CHARS, MAX_LOGIN_FIELD_CHARS,
    MAX_REGION_NAME_CHARS,
};
pub use self::results::{ResultsConfig, MAX_RESULT_BYTES, MAX_RESULT_ROWS, MIN_RESULT_BYTES};
pub use self::secret::{Secret, REDACTED};
pub use self::sections::{
    BreakerConfig, FailoverConfig, JitterKind, PoolConfig, RetryBudgetConfig, RetryConfig,
    TimeoutsConfig, DEFAULT_MAX_TOTAL, DEFAULT_SLOW_CALL_DURATION, MAX_MIN_IDLE, MAX_POOL_SIZE,
    MAX_PROBES_IN_A_ROW, MAX_PROBE_INTERVAL, MAX_REDIRECTS_LIMIT, MAX_VALIDATION_TIMEOUT,
    MIN_PROBE_INTERVAL,
};
use self::util::{raw, with_suffix};
use crate::error::{truncate_chars, ConfigError, MAX_SHOWN_VALUE_CHARS};

/// The variable [`Config::from_env`] reads the configuration file's path from.
pub const CONFIG_FILE_VAR: &str = "MSSQL_RESILIENCE_CONFIG";

/// The whole stack's configuration. See the [module docs](self) for the format.
///
/// `Default` has every section at its defaults and **no regions**, so it does not validate
/// until at least one region is added.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[timeouts]`.
    #[serde(default)]
    pub timeouts: TimeoutsConfig,
    /// `[retry]`.
    #[serde(default)]
    pub retry: RetryConfig,
    /// `[retry_budget]`.
    #[serde(default)]
    pub retry_budget: RetryBudgetConfig,
    /// `[breaker]`: the settings of each region's breaker.
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// `[pool]`: the settings of each region's pool.
    #[serde(default)]
    pub pool: PoolConfig,
    /// `[failover]`.
    #[serde(default)]
    pub failover: FailoverConfig,
    /// `[results]`: caps on one materialized response.
    #[serde(default)]
    pub results: ResultsConfig,
    /// `[[regions]]`, in order of preference. Required, at least one.
    pub regions: Vec<RegionConfig>,
}

impl Config {
    /// Parses and validates a TOML document (no environment overlay).
    pub fn from_toml_str(toml: &str) -> Result<Config, ConfigError> {
        load(toml, None, std::iter::empty())
    }

    /// Reads, parses and validates a TOML file (no environment overlay). An I/O error is
    /// reported on the field `config_file`, with the path as the value; a syntax error's
    /// value is `<path>, line L, column C`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let text = read(path, "config_file")?;
        load(&text, Some(path), std::iter::empty())
    }

    /// The file named by `MSSQL_RESILIENCE_CONFIG` (if set and non-empty; otherwise an
    /// empty document), overlaid with the process's `MSSQL_RESILIENCE__…` variables (see
    /// the [module docs](self)), then validated. An I/O error is reported on the field
    /// `MSSQL_RESILIENCE_CONFIG`, with the path as the value.
    pub fn from_env() -> Result<Config, ConfigError> {
        let mut vars = Vec::new();
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str() else { continue };
            if !name.starts_with(ENV_PREFIX) {
                continue;
            }
            let value = value.into_string().map_err(|_| {
                ConfigError::new(name.to_owned(), raw(REDACTED), "is not valid UTF-8")
            })?;
            vars.push((name.to_owned(), value));
        }
        match std::env::var_os(CONFIG_FILE_VAR).filter(|p| !p.is_empty()) {
            Some(path) => {
                let path = Path::new(&path);
                let text = read(path, CONFIG_FILE_VAR)?;
                load(&text, Some(path), vars)
            }
            None => load("", None, vars),
        }
    }

    /// The testable core of [`Config::from_env`]: parses `toml`, applies the overlay
    /// variables among `vars` (others are ignored), deserializes and validates.
    pub fn from_toml_with_env(
        toml: &str,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        load(toml, None, vars)
    }

    /// Checks every section with the layers' rules, and each region (at least one; names
    /// unique). Errors name the full path, e.g. `regions[1].port`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.timeouts.validate()?;
        self.retry.policy()?;
        self.retry_budget.budget()?;
        self.breaker.breaker_config("breaker")?;
        let slow = self.breaker.slow_call_duration_for(self.timeouts.total);
        if slow >= self.timeouts.total {
            // The breaker sees attempts, and no attempt outlives the call's budget: the
            // slow-call rule could never fire.
            return Err(ConfigError::new(
                "breaker.slow_call_duration",
                slow,
                format!(
                    "must be less than `timeouts.total` ({:?}): no call lasts that long, so the slow-call rule could never fire",
                    self.timeouts.total
                ),
            ));
        }
        self.pool.validate()?;
        self.failover.validate()?;
        self.results.validate()?;
        if let Some(hedge_delay) = self.failover.hedge_delay {
            if hedge_delay > self.timeouts.attempt {
                return Err(ConfigError::new(
                    "failover.hedge_delay",
                    hedge_delay,
                    format!(
                        "must not exceed `timeouts.attempt` ({:?}), or \"none\" to disable hedging",
                        self.timeouts.attempt
                    ),
                ));
            }
        }
        if self.regions.is_empty() {
            return Err(ConfigError::new(
                "regions",
                raw("[]"),
                "at least one region is required (a `[[regions]]` table)",
            ));
        }
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, region) in self.regions.iter().enumerate() {
            region
                .validate()
                .map_err(|e| e.within(&format!("regions[{i}]")))?;
            if let Some(first) = seen.insert(&region.name, i) {
                return Err(ConfigError::new(
                    format!("regions[{i}].name"),
                    &region.name,
                    format!("duplicates `regions[{first}].name`: region names must be unique"),
                ));
            }
        }
        Ok(())
    }

    /// The region called `name`.
    pub fn region(&self, name: &str) -> Option<&RegionConfig> {
        self.regions.iter().find(|r| r.name == name)
    }
}

fn read(path: &Path, field: &'static str) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            field,
            path.display().to_string(),
            format!("cannot be read: {e}"),
        )
    })
}

fn load(
    text: &str,
    source: Option<&Path>,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let mut table: Table = text.parse().map_err(|e| syntax_error(&e, text, source))?;
    let origins = env::overlay(&mut table, vars)?;
    let config = deserialize(table).map_err(|e| annotate(e, &origins))?;
    config.validate().map_err(|e| annotate(e, &origins))?;
    Ok(config)
}

/// A TOML syntax error: field `toml`, the position as the value, toml's message (which
/// describes the problem without quoting the line, so it cannot leak a password).
///
/// A number the parser cannot hold (an integer beyond 64 bits, a float beyond `f64`) is
/// reported on its key instead, e.g. ``invalid `retry.max_attempts` = 99999999999999999999:
/// is out of range …``, with the literal cut short (and `***` for a secret key).
fn syntax_error(e: &toml::de::Error, text: &str, source: Option<&Path>) -> ConfigError {
    let position = match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            format!("line {line}, column {column}")
        }
        None => "TOML".to_owned(),
    };
    let position = match source {
        Some(path) => format!("{}, {position}", path.display()),
        None => position,
    };
    let message = e.message().trim();
    const INTEGER: &str = "is out of range: a TOML integer must fit in 64 bits";
    let out_of_range = if message.starts_with("invalid type: integer") {
        Some(INTEGER)
    } else if message.contains("number overflowed") {
        Some("is out of range: a TOML float must be finite")
    } else {
        None
    };
    if let Some(reason) = out_of_range {
        if let Some((field, literal)) = e.span().and_then(|span| number_at(text, span.start)) {
            let value = if is_secret_key(&field) {
                REDACTED
            } else {
                literal
            };
            // toml reports a very long run of digits as a float overflow.
            let digits = literal.trim_start_matches(['+', '-']);
            let integer = digits.starts_with("0x")
                || digits.starts_with("0o")
                || digits.starts_with("0b")
                || digits.bytes().all(|b| b.is_ascii_digit() || b == b'_');
            let reason = if integer { INTEGER } else { reason };
            return ConfigError::new(field, raw(value), format!("{reason} ({position})"));
        }
        // Not at a plain `key = value`: say what, without quoting the number (it may be a
        // password).
        return ConfigError::new("toml", raw(position), format!("a number {reason}"));
    }
    ConfigError::new("toml", raw(position), shorten_quoted(message))
}

/// The dotted path of the key whose value is the number literal at byte `start`, and the
/// literal, when `start` follows a plain `key =` on its line. Table headers above it give
/// the section (`[retry]`, or `regions[i]` for the i-th `[[regions]]`).
fn number_at(text: &str, start: usize) -> Option<(String, &str)> {
    let start = start.min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let key = text
        .get(line_start..start)?
        .trim_end()
        .strip_suffix('=')?
        .trim();
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ' ');
    if key.is_empty() || !key.chars().all(plain) {
        return None;
    }
    let key: Vec<&str> = key.split('.').map(str::trim).collect();
    if key.iter().any(|k| k.is_empty()) {
        return None;
    }
    let rest = &text[start..];
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.')))
        .unwrap_or(rest.len());
    let literal = &rest[..end];
    if literal.is_empty() {
        return None;
    }
    let mut section = String::new();
    let mut arrays: HashMap<String, usize> = HashMap::new();
    for line in text[..line_start].lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix("[[") {
            let name = name
                .split("]]")
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned();
            let count = arrays.entry(name.clone()).or_insert(0);
            section = format!("{name}[{count}]");
            *count += 1;
        } else if let Some(name) = line.strip_prefix('[') {
            section = name.split(']').next().unwrap_or_default().trim().to_owned();
        }
    }
    let mut field = section;
    for part in key {
        if !field.is_empty() {
            field.push('.');
        }
        field.push_str(part);
    }
    Some((field, literal))
}

/// True for a key whose value is a secret (`password`, `connection_string`).
fn is_secret_key(field: &str) -> bool {
    matches!(
        field.rsplit('.').next(),
        Some("password" | "connection_string")
    )
}

/// `message` with every `` `…` `` or `"…"` part longer than
/// [`MAX_SHOWN_VALUE_CHARS`](crate::error::MAX_SHOWN_VALUE_CHARS) cut short: serde's
/// messages quote the rejected value (`unknown variant `…``, `invalid type: string "…"`).
fn shorten_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(1024));
    let mut rest = message;
    while let Some(open) = rest.find(['`', '"']) {
        let quote = rest[open..].chars().next().unwrap_or('`');
        out.push_str(&rest[..=open]);
        rest = &rest[open + 1..];
        match rest.find(quote) {
            Some(close) => {
                out.push_str(&truncate_chars(&rest[..close], MAX_SHOWN_VALUE_CHARS));
                out.push(quote);
                rest = &rest[close + 1..];
            }
            None => {
                out.push_str(&truncate_chars(rest, MAX_SHOWN_VALUE_CHARS));
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// A friendlier message for serde's number-type mismatches, which name a Rust type
/// (`invalid value: integer `70000`, expected u16`), and none for other messages.
fn number_message(message: &str) -> Option<String> {
    let expected = message.rsplit("expected ").next()?;
    Some(match expected {
        "u8" => "must be a whole number from 0 to 255".to_owned(),
        "u16" => "must be a whole number from 0 to 65535".to_owned(),
        "u32" => "must be a whole number from 0 to 4294967295".to_owned(),
        "u64" => format!("must be a whole number from 0 to {}", u64::MAX),
        "i64" => "must be a whole number".to_owned(),
        "f64" | "f32" => "must be a number".to_owned(),
        _ => return None,
    })
}

/// Deserializes the (overlaid) table. Regions go one by one first, because toml's errors
/// carry the keys of a failing value but not its index in an array.
fn deserialize(table: Table) -> Result<Config, ConfigError> {
    if let Some(Value::Array(items)) = table.get("regions") {
        for (i, item) in items.iter().enumerate() {
            RegionConfig::deserialize(item.clone())
                .map_err(|e| de_error(&e, item, &format!("regions[{i}]")))?;
        }
    }
    let root = Value::Table(table);
    Config::deserialize(root.clone()).map_err(|e| de_error(&e, &root, ""))
}

/// Maps a deserialization error to the full path of the key and its value. The message
/// is serde's, with a number-type mismatch said in words, anything it quotes cut short,
/// and a secret's value never repeated.
fn de_error(e: &toml::de::Error, root: &Value, prefix: &str) -> ConfigError {
    let message = e.message().trim();
    let mut keys = error_keys(e);
    let mut secret = None;
    let value = if let Some(name) = quoted_after(message, "unknown field `") {
        keys.push(name.to_owned());
        REDACTED.to_owned()
    } else if let Some(name) = quoted_after(message, "missing field `") {
        keys.push(name.to_owned());
        "(missing)".to_owned()
    } else {
        match keys.last().map(String::as_str) {
            Some("password" | "connection_string") => {
                secret = lookup(root, &keys).map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                });
                REDACTED.to_owned()
            }
            _ => lookup(root, &keys).map_or_else(|| "(missing)".to_owned(), render),
        }
    };
    let mut message = number_message(message).unwrap_or_else(|| message.to_owned());
    if let Some(secret) = secret.filter(|s| !s.is_empty()) {
        message = message.replace(&secret, REDACTED);
    }
    let message = shorten_quoted(&message);
    let mut field = prefix.to_owned();
    for key in &keys {
        if !field.is_empty() {
            field.push('.');
        }
        field.push_str(key);
    }
    if field.is_empty() {
        field.push_str("toml");
    }
    ConfigError::new(field, raw(value), message)
}

/// The keys toml recorded on the way to the failing value. `toml::de::Error` has no
/// accessor for them; without a source span its `Display` is the message followed by
/// ``in `a.b` ``.
fn error_keys(e: &toml::de::Error) -> Vec<String> {
    let text = e.to_string();
    text.strip_prefix(e.message())
        .map(str::trim)
        .and_then(|rest| rest.strip_prefix("in `"))
        .and_then(|rest| rest.strip_suffix('`'))
        .map(|keys| keys.split('.').map(str::to_owned).collect())
        .unwrap_or_default()
}

/// The text between `prefix` and the next backtick, when `message` starts with `prefix`.
fn quoted_after<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = message.strip_prefix(prefix)?;
    rest.split_once('`').map(|(name, _)| name)
}

fn lookup<'a>(root: &'a Value, keys: &[String]) -> Option<&'a Value> {
    keys.iter()
        .try_fold(root, |node, key| node.get(key.as_str()))
}

/// A value as an error shows it: strings quoted, lists and tables elided (they may hold
/// a secret).
fn render(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Integer(n) => n.to_string(),
        Value::Float(f) => format!("{f:?}"),
        Value::Boolean(b) => b.to_string(),
        Value::Datetime(d) => d.to_string(),
        Value::Array(_) => "[…]".to_owned(),
        Value::Table(_) => "{…}".to_owned(),
    }
}

/// Adds `(from `VAR`)` to an error about a value an environment variable set.
fn annotate(e: ConfigError, origins: &[Origin]) -> ConfigError {
    let field = e.field();
    let origin = origins.iter().rev().find(|o| {
        o.path == field
            || o.path
                .strip_prefix(field)
                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
    });
    match origin {
        Some(o) => {
            let suffix = format!(" (from `{}`)", o.var);
            with_suffix(e, &suffix)
        }
        None => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_at_finds_the_key_and_its_section() {
        let text =
            "a = 1\n[[regions]]\nx = 1\n[[regions]]\nport = 123 # c\n[retry]\nmax_attempts=7\n";
        let at = |needle: &str| text.find(needle).unwrap();
        assert_eq!(
            number_at(text, at("123")),
            Some(("regions[1].port".to_owned(), "123"))
        );
        assert_eq!(
            number_at(text, at("7\n")),
            Some(("retry.max_attempts".to_owned(), "7"))
        );
        assert_eq!(number_at(text, at("1\n")), Some(("a".to_owned(), "1")));
        // Not after a plain `key =`.
        assert_eq!(number_at("x = [1, 2]", 5), None);
        assert_eq!(number_at("t = { a = 1 }", 10), None);
    }

    #[test]
    fn long_quoted_parts_are_cut() {
        let long = "x".repeat(500);
        let cut = shorten_quoted(&format!(
            "unknown variant `{long}`, expected `a` or \"{long}\""
        ));
        assert!(cut.len() < 200, "{cut}");
        assert!(cut.starts_with("unknown variant `xxx") && cut.contains("`, expected `a` or \""));
        assert_eq!(shorten_quoted("no quotes"), "no quotes");
        assert_eq!(shorten_quoted("open `quote"), "open `quote");
    }

    #[test]
    fn number_messages_in_words() {
        assert_eq!(
            number_message("invalid value: integer `70000`, expected u16").as_deref(),
            Some("must be a whole number from 0 to 65535")
        );
        assert_eq!(number_message("unknown variant `x`, expected `a`"), None);
    }
}
