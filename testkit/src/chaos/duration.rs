//! Humane durations: `"500ms"`, `"5s"`, `"1m30s"`, `"1.5s"`, `"0"`.
//!
//! Used by every textual form of the chaos proxy (the JSON control API, the TOML
//! schedule and the command line), so a value is written the same way everywhere.
//!
//! Grammar: one or more `NUMBER UNIT` terms, optionally separated by spaces, where
//! `NUMBER` is a non-negative decimal (`5`, `1.5`, `.25`) and `UNIT` is one of
//! `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`. A bare `0` is accepted as zero.
//! [`format_duration`] writes the canonical form, which [`parse_duration`] reads back
//! exactly (`1m30s500ms`, `0s`).

use std::time::Duration;

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (expected e.g. \"500ms\", \"5s\", \"1m30s\")")]
pub struct DurationError {
    input: String,
    reason: String,
}

impl DurationError {
    fn new(input: &str, reason: impl Into<String>) -> Self {
        Self {
            input: input.to_owned(),
            reason: reason.into(),
        }
    }

    /// The reason alone, without the input echoed back.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// The longest duration accepted (a year, written `8760h`): [`parse_duration`] rejects
/// longer ones, so no duration written in the control API, a schedule or on the
/// command line can overflow the clock it is added to.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Parses a humane duration such as `"500ms"`, `"5s"`, `"1m30s"` or `"1.5s"`.
///
/// Fractions below one nanosecond are truncated; durations above [`MAX_DURATION`] are
/// rejected.
///
/// ```
/// # use std::time::Duration;
/// use mssql_testkit::chaos::parse_duration;
/// assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
/// assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
/// assert!(parse_duration("5").is_err());
/// ```
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(DurationError::new(input, "empty"));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let num_len = rest
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
            .map_or(rest.len(), |(i, _)| i);
        let (num, tail) = rest.split_at(num_len);
        if num.is_empty() {
            let reason = if rest.starts_with('-') {
                "negative durations are not allowed".to_owned()
            } else {
                format!("expected a number at {rest:?}")
            };
            return Err(DurationError::new(input, reason));
        }
        let unit_len = tail
            .char_indices()
            .find(|(_, c)| !c.is_alphabetic())
            .map_or(tail.len(), |(i, _)| i);
        let (unit, tail) = tail.split_at(unit_len);
        if unit.is_empty() {
            return Err(DurationError::new(
                input,
                format!("missing unit after {num:?} (use ns, us, ms, s, m or h)"),
            ));
        }
        let Some(&(_, scale)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(DurationError::new(
                input,
                format!("unknown unit {unit:?} (use ns, us, ms, s, m or h)"),
            ));
        };
        let nanos = scale_number(num, scale)
            .ok_or_else(|| DurationError::new(input, format!("{num:?} is not a valid number")))?;
        total = total
            .checked_add(nanos)
            .ok_or_else(|| DurationError::new(input, "too large"))?;
        rest = tail;
    }
    if total > MAX_DURATION.as_nanos() {
        return Err(DurationError::new(
            input,
            format!("too large (at most {})", format_duration(MAX_DURATION)),
        ));
    }
    // Below MAX_DURATION: the seconds fit in u64 and the remainder, below 10^9, in u32.
    let secs = (total / 1_000_000_000) as u64;
    let nanos = (total % 1_000_000_000) as u32;
    Ok(Duration::new(secs, nanos))
}

/// `num` (decimal, maybe with a fraction) times `scale` nanoseconds, exactly.
fn scale_number(num: &str, scale: u128) -> Option<u128> {
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
        return None;
    }
    let int_val: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut nanos = int_val.checked_mul(scale)?;
    // Fraction: only the digits that matter at nanosecond precision (scale <= 3.6e12).
    let mut place = scale;
    for digit in frac.chars() {
        let d = u128::from(digit.to_digit(10)?);
        place /= 10;
        if place == 0 {
            break;
        }
        nanos = nanos.checked_add(d * place)?;
    }
    Some(nanos)
}

/// Writes `d` in the canonical humane form read back by [`parse_duration`]:
/// `0s`, `250ms`, `5s`, `1m30s`, `1h2m3s4ms5us6ns`.
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    let mut rest = d.as_nanos();
    let mut out = String::new();
    for (name, scale) in [
        ("h", 3_600_000_000_000u128),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
        ("ns", 1),
    ] {
        let n = rest / scale;
        if n > 0 {
            out.push_str(&n.to_string());
            out.push_str(name);
            rest %= scale;
        }
    }
    out
}

/// Serde adapter writing `Duration` fields as humane strings (reading goes
/// through the hand-written parsers, which name the offending field).
pub(crate) mod serde_humane {
    use super::format_duration;
    use serde::Serializer;
    use std::time::Duration;

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_combinations() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("500ms").unwrap(), ms(500));
        assert_eq!(parse_duration("5s").unwrap(), ms(5000));
        assert_eq!(parse_duration("1m").unwrap(), ms(60_000));
        assert_eq!(parse_duration("2h").unwrap(), ms(7_200_000));
        assert_eq!(parse_duration("1m30s").unwrap(), ms(90_000));
        assert_eq!(parse_duration("1m 30s").unwrap(), ms(90_000));
        assert_eq!(parse_duration(" 1.5s ").unwrap(), ms(1500));
        assert_eq!(parse_duration(".25s").unwrap(), ms(250));
        assert_eq!(parse_duration("1.5m").unwrap(), ms(90_000));
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert_eq!(parse_duration("7ns").unwrap(), Duration::from_nanos(7));
        assert_eq!(parse_duration("0.1ns").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("8760h").unwrap(), MAX_DURATION);
    }

    #[test]
    fn rejects_garbage_with_a_reason() {
        for (input, needle) in [
            ("", "empty"),
            ("5", "missing unit"),
            ("5x", "unknown unit \"x\""),
            ("-5s", "negative"),
            ("s", "expected a number"),
            ("1..5s", "not a valid number"),
            ("5sms", "unknown unit \"sms\""),
            ("99999999999999999999999h", "too large"),
            ("10000000000000000000s", "too large (at most 8760h)"),
            ("8760h1ns", "too large"),
        ] {
            let err = parse_duration(input).unwrap_err();
            assert!(
                err.to_string().contains(needle),
                "{input:?}: {err} should mention {needle:?}"
            );
        }
    }

    #[test]
    fn format_round_trips() {
        for d in [
            Duration::ZERO,
            Duration::from_millis(250),
            Duration::from_secs(5),
            Duration::from_secs(90),
            Duration::new(3723, 4_005_006),
            Duration::from_nanos(1),
        ] {
            let s = format_duration(d);
            assert_eq!(parse_duration(&s).unwrap(), d, "{s}");
        }
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1s500ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }
}
