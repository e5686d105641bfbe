//! Humane durations: `"250us"`, `"500ms"`, `"2s"`, `"1.5s"`, `"1m"`, `"1h"`, `"1m30s"`.
//!
//! A duration is one or more `<number><unit>` parts (spaces between parts are allowed);
//! the number may have a decimal fraction. Units: `ns`, `us` (or `µs`), `ms`, `s`, `m`,
//! `h`. A bare number is rejected: `"5"` could mean seconds or milliseconds, and guessing
//! wrong by a factor of 1000 is how a 5 s timeout becomes a 5 ms one. A fraction finer than
//! a nanosecond is truncated.
//!
//! [`format_duration`] writes a duration back in the largest unit that represents it
//! exactly (`"10m"`, `"1500ms"`), so a parsed value always formats to an equal value.
//!
//! The serde helpers are for `#[serde(with = "...")]`: this module itself for `Duration`
//! fields and [`option`] for `Option<Duration>` fields (where `"none"` means no value).
//!
//! ```
//! use std::time::Duration;
//! use mssql_resilience::config::duration::{format_duration, parse_duration};
//!
//! assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
//! assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
//! assert_eq!(parse_duration("5").unwrap_err(), "a duration needs a unit (ms, s, m, h)");
//! assert_eq!(format_duration(Duration::from_secs(600)), "10m");
//! ```

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Serializer;

/// The message for a number without a unit.
pub(crate) const NEEDS_UNIT: &str = "a duration needs a unit (ms, s, m, h)";

const NANOS_PER_SEC: u128 = 1_000_000_000;

fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => NANOS_PER_SEC,
        "m" => 60 * NANOS_PER_SEC,
        "h" => 3600 * NANOS_PER_SEC,
        _ => return None,
    })
}

/// Parses a humane duration such as `"500ms"`, `"1.5s"` or `"1m30s"`.
///
/// The error is a sentence for a [`ConfigError`](crate::ConfigError)'s reason; it never
/// repeats the input.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("a duration must not be empty; write e.g. \"500ms\" or \"2s\"".into());
    }
    if s.starts_with('-') {
        return Err("a duration must not be negative".into());
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        if number.is_empty() {
            return Err(format!(
                "a duration is a number followed by a unit (ns, us, ms, s, m, h), e.g. \"500ms\"; found {:?} where a number was expected",
                after.chars().next().unwrap_or(' ')
            ));
        }
        let after = after.trim_start();
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.' || c.is_whitespace())
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(NEEDS_UNIT.into());
        }
        let per_unit = unit_nanos(unit).ok_or_else(|| {
            // Quoted only when short: the reason never repeats a long input.
            match unit.chars().count() {
                // Escaped: control or bidi characters are not passed through.
                ..=8 => format!(
                    "unknown duration unit `{}` (expected ns, us, ms, s, m or h)",
                    unit.escape_default()
                ),
                _ => "unknown duration unit (expected ns, us, ms, s, m or h)".to_owned(),
            }
        })?;
        total = total
            .checked_add(part_nanos(number, per_unit)?)
            .ok_or_else(too_large)?;
        rest = next.trim_start();
    }
    let secs = u64::try_from(total / NANOS_PER_SEC).map_err(|_| too_large())?;
    Ok(Duration::new(secs, (total % NANOS_PER_SEC) as u32))
}

fn too_large() -> String {
    "the duration is too large".into()
}

/// `number` (digits with at most one `.`) times `per_unit` nanoseconds, truncated.
fn part_nanos(number: &str, per_unit: u128) -> Result<u128, String> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if fraction.contains('.') || (whole.is_empty() && fraction.is_empty()) {
        return Err(format!("`{number}` is not a number"));
    }
    let mut nanos: u128 = 0;
    for digit in whole.bytes() {
        nanos = nanos
            .checked_mul(10)
            .and_then(|n| n.checked_add(u128::from(digit - b'0')))
            .ok_or_else(too_large)?;
    }
    nanos = nanos.checked_mul(per_unit).ok_or_else(too_large)?;
    // The fraction: digits past the precision of a nanosecond add nothing.
    let mut scale = per_unit;
    for digit in fraction.bytes() {
        scale /= 10;
        if scale == 0 {
            break;
        }
        nanos = nanos
            .checked_add(u128::from(digit - b'0') * scale)
            .ok_or_else(too_large)?;
    }
    Ok(nanos)
}

/// Formats a duration in the largest unit that represents it exactly: `"10m"`, `"2s"`,
/// `"1500ms"`, `"250us"`, `"0s"`.
pub fn format_duration(d: Duration) -> String {
    let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
    if nanos == 0 {
        if secs != 0 && secs % 3600 == 0 {
            format!("{}h", secs / 3600)
        } else if secs != 0 && secs % 60 == 0 {
            format!("{}m", secs / 60)
        } else {
            format!("{secs}s")
        }
    } else if nanos % 1_000_000 == 0 {
        format!("{}ms", d.as_millis())
    } else if nanos % 1_000 == 0 {
        format!("{}us", d.as_micros())
    } else {
        format!("{}ns", d.as_nanos())
    }
}

/// Serializes a `Duration` as a humane string (for `#[serde(with = ...)]`).
pub fn serialize<S: Serializer>(d: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_duration(*d))
}

/// Deserializes a `Duration` from a humane string (for `#[serde(with = ...)]`). A number
/// (without a unit) is rejected with a message that asks for one.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    deserializer
        .deserialize_any(DurationVisitor { allow_none: false })?
        .ok_or_else(|| de::Error::custom("a duration is required"))
}

/// Serde helpers for `Option<Duration>`: `"none"` (any case) is `None`, anything else a
/// duration as [`parse_duration`] reads it. `None` serializes as `"none"`, so a default of
/// `Some(..)` can still be switched off in a file.
pub mod option {
    use super::*;

    /// Serializes `None` as `"none"`, `Some(d)` as a humane string.
    pub fn serialize<S: Serializer>(
        d: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::serialize(d, serializer),
            None => serializer.serialize_str("none"),
        }
    }

    /// Deserializes `"none"` as `None`, a humane string as `Some(..)`.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        deserializer.deserialize_any(DurationVisitor { allow_none: true })
    }
}

struct DurationVisitor {
    allow_none: bool,
}

impl<'de> Visitor<'de> for DurationVisitor {
    type Value = Option<Duration>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.allow_none {
            f.write_str("a duration with a unit, such as \"500ms\" or \"2s\", or \"none\"")
        } else {
            f.write_str("a duration with a unit, such as \"500ms\" or \"2s\"")
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        if self.allow_none && v.trim().eq_ignore_ascii_case("none") {
            return Ok(None);
        }
        parse_duration(v).map(Some).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(E::custom(NEEDS_UNIT))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(E::custom(NEEDS_UNIT))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(E::custom(NEEDS_UNIT))
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        if self.allow_none {
            Ok(None)
        } else {
            Err(E::custom("a duration is required"))
        }
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn valid_durations() {
        assert_eq!(parse_duration("500ms"), Ok(ms(500)));
        assert_eq!(parse_duration("2s"), Ok(ms(2000)));
        assert_eq!(parse_duration("1.5s"), Ok(ms(1500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("250µs"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse_duration(" 1m 30s "), Ok(Duration::from_secs(90)));
        assert_eq!(
            parse_duration("1h2m3s4ms"),
            Ok(Duration::new(3723, 4_000_000))
        );
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("2 s"), Ok(ms(2000)));
        assert_eq!(parse_duration(".5s"), Ok(ms(500)));
        assert_eq!(parse_duration("5.s"), Ok(ms(5000)));
        assert_eq!(parse_duration("0.1ms"), Ok(Duration::from_micros(100)));
        // Sub-nanosecond digits are truncated.
        assert_eq!(parse_duration("1.0000000019s"), Ok(Duration::new(1, 1)));
    }

    #[test]
    fn a_bare_number_needs_a_unit() {
        assert_eq!(parse_duration("5").unwrap_err(), NEEDS_UNIT);
        assert_eq!(parse_duration("1.5").unwrap_err(), NEEDS_UNIT);
        assert_eq!(parse_duration("1m30").unwrap_err(), NEEDS_UNIT);
    }

    #[test]
    fn invalid_durations() {
        assert!(parse_duration("").unwrap_err().contains("empty"));
        assert!(parse_duration("   ").unwrap_err().contains("empty"));
        assert!(parse_duration("5 sec")
            .unwrap_err()
            .contains("unknown duration unit `sec`"));
        assert!(parse_duration("5d")
            .unwrap_err()
            .contains("unknown duration unit `d`"));
        assert!(parse_duration("s")
            .unwrap_err()
            .contains("a number was expected"));
        assert!(parse_duration("1.2.3s")
            .unwrap_err()
            .contains("not a number"));
        assert!(parse_duration(".s").unwrap_err().contains("not a number"));
        assert!(parse_duration("+5s").is_err());
        assert!(parse_duration("5s!").is_err());
        let long = format!("5{}", "x".repeat(500));
        let reason = parse_duration(&long).unwrap_err();
        assert!(reason.starts_with("unknown duration unit ("), "{reason}");
        let bidi = parse_duration("5\u{202e}x").unwrap_err();
        assert!(bidi.contains("`\\u{202e}x`"), "{bidi}");
        assert!(!reason.contains("xxxxxxxxx"), "{reason}");
    }

    #[test]
    fn negative_durations_are_rejected() {
        assert_eq!(
            parse_duration("-5s").unwrap_err(),
            "a duration must not be negative"
        );
        assert_eq!(
            parse_duration(" -1ms").unwrap_err(),
            "a duration must not be negative"
        );
    }

    #[test]
    fn overflow_is_an_error_not_a_panic() {
        let max_secs = u64::MAX.to_string();
        assert_eq!(
            parse_duration(&format!("{max_secs}s")),
            Ok(Duration::from_secs(u64::MAX))
        );
        for text in [
            format!("{max_secs}h"),
            format!("{max_secs}0s"),
            "99999999999999999999999999999999999999999999h".to_owned(),
            format!("{max_secs}s 1s"),
        ] {
            assert_eq!(
                parse_duration(&text).unwrap_err(),
                "the duration is too large",
                "{text}"
            );
        }
    }

    #[test]
    fn formatting_is_exact_and_round_trips() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(ms(500)), "500ms");
        assert_eq!(format_duration(ms(1500)), "1500ms");
        assert_eq!(format_duration(ms(2000)), "2s");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_secs(600)), "10m");
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(format_duration(Duration::from_micros(250)), "250us");
        assert_eq!(
            format_duration(Duration::from_nanos(1_000_000_001)),
            "1000000001ns"
        );
        for d in [
            Duration::ZERO,
            ms(1),
            ms(1500),
            Duration::from_secs(3601),
            Duration::from_nanos(123_456_789),
            Duration::MAX,
        ] {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }

    #[derive(Debug, PartialEq, serde::Deserialize, serde::Serialize)]
    struct Holder {
        #[serde(with = "super")]
        d: Duration,
        #[serde(with = "super::option", default)]
        o: Option<Duration>,
    }

    #[test]
    fn serde_helpers() {
        let h: Holder = toml::from_str("d = \"1.5s\"\no = \"none\"").unwrap();
        assert_eq!(
            h,
            Holder {
                d: ms(1500),
                o: None
            }
        );
        let h: Holder = toml::from_str("d = \"2s\"\no = \"10m\"").unwrap();
        assert_eq!(h.o, Some(Duration::from_secs(600)));
        assert_eq!(toml::to_string(&h).unwrap(), "d = \"2s\"\no = \"10m\"\n");
        let e = toml::from_str::<Holder>("d = 5").unwrap_err();
        assert_eq!(e.message(), NEEDS_UNIT);
        let e = toml::from_str::<Holder>("d = 1.5").unwrap_err();
        assert_eq!(e.message(), NEEDS_UNIT);
        let e = toml::from_str::<Holder>("d = \"none\"").unwrap_err();
        assert!(e.message().contains("a number was expected"));
        let e = toml::from_str::<Holder>("d = true").unwrap_err();
        assert!(e.message().contains("a duration with a unit"));
    }
}
