//! Calendar arithmetic, parsing and printing for DATE, TIME, DATETIME2, DATETIMEOFFSET,
//! DATETIME and SMALLDATETIME. A date is a day number counted from 0001-01-01 (day 0,
//! proleptic Gregorian, as TDS sends it); a time of day is a count of 100 ns ticks.

/// 100 ns ticks per day.
pub(crate) const TICKS_PER_DAY: u64 = 864_000_000_000;

/// Day number of 9999-12-31.
pub(crate) const MAX_DAY: i32 = 3_652_058;

/// Day number of 1900-01-01 (day 0 of DATETIME and SMALLDATETIME).
pub(crate) const DAY_1900: i32 = 693_595;

/// Day number of 1753-01-01 (the first DATETIME).
pub(crate) const DAY_1753: i32 = 639_905;

/// Day number of 2079-06-06 (the last SMALLDATETIME).
pub(crate) const DAY_2079_06_06: i32 = 759_130;

/// The largest time zone offset, in minutes (±14:00).
pub(crate) const MAX_OFFSET: i16 = 840;

/// A day and time of day moved by `minutes`: the day (which may fall outside
/// 0001-01-01 … 9999-12-31) and the time of day. A DATETIMEOFFSET's UTC instant is its
/// local one moved by minus the offset.
pub(crate) fn shift_minutes(days: i32, ticks: u64, minutes: i64) -> (i64, u64) {
    // i128: no input can overflow it.
    let per_day = i128::from(TICKS_PER_DAY);
    let t = i128::from(days) * per_day + i128::from(ticks) + i128::from(minutes) * 600_000_000;
    (t.div_euclid(per_day) as i64, t.rem_euclid(per_day) as u64)
}

/// Whether a DATETIMEOFFSET (local day and time of day, offset in minutes) is a value of
/// the type: the offset within ±14:00 and both the local and the UTC date within
/// 0001-01-01 … 9999-12-31 (the UTC date is what TDS sends).
pub(crate) fn offset_in_range(days: i32, ticks: u64, offset: i16) -> bool {
    let (utc_day, _) = shift_minutes(days, ticks, -i64::from(offset));
    (-MAX_OFFSET..=MAX_OFFSET).contains(&offset)
        && (0..=MAX_DAY).contains(&days)
        && (0..=i64::from(MAX_DAY)).contains(&utc_day)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn month_days(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 0001-01-01 of a valid date in years 1–9999.
pub(crate) fn days_from_ymd(y: i64, m: u32, d: u32) -> Option<i32> {
    if !(1..=9999).contains(&y) || !(1..=12).contains(&m) || d == 0 || d > month_days(y, m) {
        return None;
    }
    // Days from civil (H. Hinnant's algorithm), shifted so 0001-01-01 is day 0.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days_since_0000_03_01 = era * 146_097 + doe;
    // 0001-01-01 is day 306 counted from 0000-03-01.
    Some((days_since_0000_03_01 - 306) as i32)
}

/// The date of a day number.
pub(crate) fn ymd_from_days(days: i32) -> (i64, u32, u32) {
    let z = days as i64 + 306;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

/// A parsed date/time string; absent parts were not in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Parsed {
    pub date: Option<i32>,
    pub ticks: Option<u64>,
    /// Offset from UTC in minutes.
    pub offset: Option<i16>,
}

fn num(s: &str, min_len: usize, max_len: usize) -> Option<u32> {
    if s.len() < min_len || s.len() > max_len || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_date(s: &str) -> Option<i32> {
    if s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit()) {
        return days_from_ymd(
            num(&s[..4], 4, 4)? as i64,
            num(&s[4..6], 2, 2)?,
            num(&s[6..], 2, 2)?,
        );
    }
    let parts: Vec<&str> = s.split(['-', '/', '.']).collect();
    if parts.len() != 3 {
        return None;
    }
    if parts[0].len() == 4 {
        days_from_ymd(
            num(parts[0], 4, 4)? as i64,
            num(parts[1], 1, 2)?,
            num(parts[2], 1, 2)?,
        )
    } else {
        // us_english (the default language): month/day/year.
        days_from_ymd(
            num(parts[2], 4, 4)? as i64,
            num(parts[0], 1, 2)?,
            num(parts[1], 1, 2)?,
        )
    }
}

fn parse_time(s: &str) -> Option<u64> {
    let s = s.trim();
    // An AM/PM suffix (a byte-safe split: the text may end in any character).
    let (s, pm) = match s.len().checked_sub(2).and_then(|i| s.split_at_checked(i)) {
        Some((t, ap)) if ap.eq_ignore_ascii_case("AM") => (t.trim_end(), Some(false)),
        Some((t, ap)) if ap.eq_ignore_ascii_case("PM") => (t.trim_end(), Some(true)),
        _ => (s, None),
    };
    let (hms, frac) = match s.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let parts: Vec<&str> = hms.split(':').collect();
    if parts.len() < 2 || parts.len() > 3 {
        return None;
    }
    let mut h = num(parts[0], 1, 2)?;
    let m = num(parts[1], 1, 2)?;
    let sec = match parts.get(2) {
        Some(p) => num(p, 1, 2)?,
        None => 0,
    };
    if let Some(pm) = pm {
        if h == 0 || h > 12 {
            return None;
        }
        h = match (pm, h) {
            (false, 12) => 0,
            (true, 12) => 12,
            (true, h) => h + 12,
            (false, h) => h,
        };
    }
    if h > 23 || m > 59 || sec > 59 {
        return None;
    }
    let frac_ticks = match frac {
        None => 0,
        Some("") => 0,
        Some(f) => {
            if f.len() > 7 || !f.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            f.parse::<u64>().ok()? * 10u64.pow(7 - f.len() as u32)
        }
    };
    Some(((h as u64 * 60 + m as u64) * 60 + sec as u64) * 10_000_000 + frac_ticks)
}

fn parse_offset(s: &str) -> Option<i16> {
    if s.eq_ignore_ascii_case("Z") {
        return Some(0);
    }
    let (neg, rest) = match s.as_bytes().first()? {
        b'+' => (false, &s[1..]),
        b'-' => (true, &s[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    let (h, m) = (num(h, 1, 2)? as i16, num(m, 2, 2)? as i16);
    if h > 14 || m > 59 || (h == 14 && m > 0) {
        return None;
    }
    let v = h * 60 + m;
    Some(if neg { -v } else { v })
}

/// Parses the ISO 8601 / ODBC forms SQL Server accepts: `YYYY-MM-DD`, `YYYYMMDD`,
/// `MM/DD/YYYY`, each optionally followed by ` ` or `T` and `hh:mm[:ss[.fffffff]]`
/// (optionally AM/PM), optionally followed by `Z` or `±hh:mm`; or a time alone.
pub(crate) fn parse(s: &str) -> Option<Parsed> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut p = Parsed::default();
    // Split off an offset: "Z", or a sign after the time part.
    let mut body = s;
    if let Some(stripped) = body.strip_suffix(['Z', 'z']) {
        p.offset = Some(0);
        body = stripped.trim_end();
    } else if let Some(i) = body.rfind(['+', '-']) {
        // A '-' inside the date part is not an offset.
        let tail = &body[i..];
        if body[..i].contains(':') || body[..i].ends_with(' ') {
            if let Some(off) = parse_offset(tail.trim()) {
                p.offset = Some(off);
                body = body[..i].trim_end();
            }
        }
    }
    let (date_part, time_part) = match body.find(['T', ' ']) {
        Some(i) if body[..i].contains(':') => (None, Some(body)),
        Some(i) => (Some(&body[..i]), Some(body[i + 1..].trim())),
        None if body.contains(':') => (None, Some(body)),
        None => (Some(body), None),
    };
    if let Some(d) = date_part {
        p.date = Some(parse_date(d)?);
    }
    if let Some(t) = time_part {
        p.ticks = Some(parse_time(t)?);
    }
    if p.offset.is_some() && p.ticks.is_none() {
        return None;
    }
    Some(p)
}

/// `YYYY-MM-DD`.
pub(crate) fn format_date(days: i32) -> String {
    let (y, m, d) = ymd_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `hh:mm:ss` plus `scale` fractional digits; `ticks` must already be rounded.
pub(crate) fn format_time(ticks: u64, scale: u8) -> String {
    let secs = ticks / 10_000_000;
    let frac = ticks % 10_000_000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if scale == 0 {
        format!("{h:02}:{m:02}:{s:02}")
    } else {
        let digits = format!("{frac:07}");
        format!("{h:02}:{m:02}:{s:02}.{}", &digits[..scale.min(7) as usize])
    }
}

/// `±hh:mm`.
pub(crate) fn format_offset(minutes: i16) -> String {
    let sign = if minutes < 0 { '-' } else { '+' };
    let a = minutes.unsigned_abs();
    format!("{sign}{:02}:{:02}", a / 60, a % 60)
}

/// Rounds a (day, ticks) instant to `scale` fractional digits, carrying into the next
/// day when it rounds up to midnight.
pub(crate) fn round(days: i32, ticks: u64, scale: u8) -> (i32, u64) {
    let unit = 10u64.pow(7 - scale.min(7) as u32);
    let t = (ticks + unit / 2) / unit * unit;
    if t >= TICKS_PER_DAY {
        (days + 1, t - TICKS_PER_DAY)
    } else {
        (days, t)
    }
}

/// DATETIME's 1/300 s resolution: the instant rounded to the nearest 1/300 s.
pub(crate) fn to_datetime_ticks(days: i32, ticks: u64) -> (i32, u32) {
    let t300 = (ticks * 3 + 50_000) / 100_000;
    if t300 >= 300 * 86_400 {
        (days + 1, (t300 - 300 * 86_400) as u32)
    } else {
        (days, t300 as u32)
    }
}

/// 100 ns ticks of a DATETIME 1/300 s count.
pub(crate) fn from_datetime_ticks(t300: u32) -> u64 {
    (t300 as u64 * 100_000 + 1) / 3
}

/// SMALLDATETIME's one-minute resolution (29.998 s rounds down, 29.999 s up).
pub(crate) fn to_minutes(days: i32, ticks: u64) -> (i32, u16) {
    let (days, t300) = to_datetime_ticks(days, ticks);
    let secs300 = t300 as u64;
    let min = (secs300 + 300 * 30) / (300 * 60);
    if min >= 24 * 60 {
        (days + 1, (min - 24 * 60) as u16)
    } else {
        (days, min as u16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_numbers_match_tds() {
        assert_eq!(days_from_ymd(1, 1, 1), Some(0));
        assert_eq!(days_from_ymd(9999, 12, 31), Some(MAX_DAY));
        assert_eq!(days_from_ymd(1900, 1, 1), Some(DAY_1900));
        assert_eq!(days_from_ymd(1753, 1, 1), Some(DAY_1753));
        assert_eq!(days_from_ymd(2079, 6, 6), Some(DAY_2079_06_06));
        assert_eq!(days_from_ymd(2024, 2, 30), None);
        for d in [0, 1, 59, 60, 365, 693_595, 738_945, MAX_DAY] {
            let (y, m, dd) = ymd_from_days(d);
            assert_eq!(days_from_ymd(y, m, dd), Some(d));
        }
    }

    #[test]
    fn parses_sql_server_forms() {
        let p = parse("2024-02-29 13:45:56.1234567").unwrap();
        assert_eq!(format_date(p.date.unwrap()), "2024-02-29");
        assert_eq!(format_time(p.ticks.unwrap(), 7), "13:45:56.1234567");
        let p = parse("2024-02-29T13:45:56.12+05:30").unwrap();
        assert_eq!(p.offset, Some(330));
        assert_eq!(format_time(p.ticks.unwrap(), 3), "13:45:56.120");
        let p = parse("2024-01-02 03:04:05 -08:00").unwrap();
        assert_eq!(p.offset, Some(-480));
        assert_eq!(parse("20240131").unwrap().date, days_from_ymd(2024, 1, 31));
        assert_eq!(
            parse("01/31/2024").unwrap().date,
            days_from_ymd(2024, 1, 31)
        );
        assert_eq!(parse("23:59:59").unwrap().date, None);
        assert_eq!(
            parse("1:05 PM").unwrap().ticks,
            Some((13 * 60 + 5) * 60 * 10_000_000)
        );
        assert!(parse("2024-02-30").is_none());
        assert!(parse("2024").is_none());
        assert!(parse("25:00").is_none());
        assert!(parse("hello").is_none());
    }

    #[test]
    fn text_ending_in_a_multibyte_character_is_not_a_date() {
        for s in ["12:00€", "€", "2024-01-01 12:00é", "1:05 P€"] {
            assert_eq!(parse(s), None, "{s}");
        }
    }

    #[test]
    fn rounding_carries_into_the_next_day() {
        assert_eq!(round(5, TICKS_PER_DAY - 1, 3), (6, 0));
        let (d, t) = to_datetime_ticks(0, 20_000); // 2 ms
        assert_eq!((d, t), (0, 1));
        assert_eq!(from_datetime_ticks(2), 66_667);
        assert_eq!(to_minutes(0, 299_980_000), (0, 0)); // 29.998 s
        assert_eq!(to_minutes(0, 299_990_000), (0, 1)); // 29.999 s
    }
}
