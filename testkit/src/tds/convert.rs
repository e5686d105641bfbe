//! Conversions between values and SQL Server types (column output, `CAST`/`CONVERT`,
//! column checks on write), with SQL Server's error numbers and messages when a value
//! does not convert (245, 8114, 8115, 220, 241, 242, 8169, 529, 2628).

use super::datetime as dt;
use super::dec::Dec;
use super::errors::ErrorSpec;
use super::sql::Value;
use super::types::SqlType;

/// Canonical `XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX` (upper case, as SQL Server prints).
pub(crate) fn format_guid(g: &[u8; 16]) -> String {
    let h: String = g.iter().map(|b| format!("{b:02X}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Parses a GUID string (dashed, optionally in braces, any case).
pub(crate) fn parse_guid(s: &str) -> Option<[u8; 16]> {
    let s = s.trim();
    let s = s
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .unwrap_or(s);
    let groups: Vec<&str> = s.split('-').collect();
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    if lens != [8, 4, 4, 4, 12] {
        return None;
    }
    let hex: String = groups.concat();
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// GUID bytes on the wire: the first three groups little-endian.
pub(crate) fn guid_wire(g: &[u8; 16]) -> [u8; 16] {
    let mut w = *g;
    w[..4].reverse();
    w[4..6].reverse();
    w[6..8].reverse();
    w
}

/// The text form of a value (how SQL Server converts it to a string).
pub(crate) fn text_of(v: &Value) -> Option<String> {
    Some(match v {
        Value::Null => return None,
        Value::Int(i) => i.to_string(),
        Value::Float(f) => float_text(*f),
        Value::Text(t) => t.clone(),
        Value::Blob(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Dec(d) => d.to_string(),
        Value::Guid(g) => format_guid(g),
        Value::Date(d) => dt::format_date(*d),
        Value::Time(t) => dt::format_time(*t, 7),
        Value::DateTime(d, t) => format!("{} {}", dt::format_date(*d), dt::format_time(*t, 7)),
        Value::DateTimeOffset(d, t, o) => format!(
            "{} {} {}",
            dt::format_date(*d),
            dt::format_time(*t, 7),
            dt::format_offset(*o)
        ),
    })
}

fn float_text(f: f64) -> String {
    if f.is_finite() && f == f.trunc() && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

/// The SQL Server type name a value of this shape would have as a source in messages.
fn source_name(v: &Value) -> &'static str {
    match v {
        Value::Int(_) => "int",
        Value::Float(_) => "float",
        Value::Dec(_) => "numeric",
        Value::Blob(_) => "varbinary",
        Value::Guid(_) => "uniqueidentifier",
        Value::Date(_) => "date",
        Value::Time(_) => "time",
        Value::DateTime(..) => "datetime2",
        Value::DateTimeOffset(..) => "datetimeoffset",
        Value::Text(_) | Value::Null => "nvarchar",
    }
}

fn shown(v: &Value) -> String {
    let t = text_of(v).unwrap_or_default();
    // Long values are cut in messages (SQL Server's messages are bounded too).
    t.chars().take(100).collect()
}

fn conversion_failed(v: &Value, to: SqlType) -> ErrorSpec {
    ErrorSpec::new(
        245,
        16,
        format!(
            "Conversion failed when converting the {} value '{}' to data type {}.",
            source_name(v),
            shown(v),
            to.name()
        ),
    )
}

fn overflow(v: &Value, to: SqlType) -> ErrorSpec {
    match (v, to) {
        (
            Value::Int(_) | Value::Float(_) | Value::Dec(_),
            SqlType::TinyInt | SqlType::SmallInt | SqlType::Int,
        ) => ErrorSpec::new(
            220,
            16,
            format!(
                "Arithmetic overflow error for data type {}, value = {}.",
                to.name(),
                shown(v)
            ),
        ),
        _ => ErrorSpec::new(
            8115,
            16,
            format!(
                "Arithmetic overflow error converting {} to data type {}.",
                match v {
                    Value::Text(_) => "nvarchar",
                    Value::Float(_) => "float",
                    Value::Dec(_) => "numeric",
                    _ => "expression",
                },
                to.name()
            ),
        ),
    }
}

fn not_allowed(v: &Value, to: SqlType) -> ErrorSpec {
    ErrorSpec::new(
        529,
        16,
        format!(
            "Explicit conversion from data type {} to {} is not allowed.",
            source_name(v),
            to.name()
        ),
    )
}

fn date_failed() -> ErrorSpec {
    ErrorSpec::new(
        241,
        16,
        "Conversion failed when converting date and/or time from character string.",
    )
}

fn date_range(v: &Value, to: SqlType) -> ErrorSpec {
    ErrorSpec::new(
        242,
        16,
        format!(
            "The conversion of a {} data type to a {} data type resulted in an out-of-range value.",
            source_name(v),
            to.name()
        ),
    )
}

/// A numeric source as an exact decimal, or `None` if it is not numeric.
fn as_dec(v: &Value) -> Option<Result<Dec, ()>> {
    match v {
        Value::Int(i) => Some(Ok(Dec::from_i64(*i))),
        Value::Float(f) => Some(Dec::from_f64(*f).ok_or(())),
        Value::Dec(d) => Some(Ok(*d)),
        Value::Text(t) => Some(Dec::parse(t).ok_or(())),
        // Exact decimals too long for a float are stored as their ASCII text.
        Value::Blob(b) => Some(std::str::from_utf8(b).ok().and_then(Dec::parse).ok_or(())),
        _ => None,
    }
}

/// A date/time source as (date, ticks, offset); text is parsed.
fn as_instant(v: &Value) -> Option<Result<dt::Parsed, ()>> {
    Some(Ok(match v {
        Value::Text(t) => return Some(dt::parse(t).ok_or(())),
        Value::Date(d) => dt::Parsed {
            date: Some(*d),
            ..Default::default()
        },
        Value::Time(t) => dt::Parsed {
            ticks: Some(*t),
            ..Default::default()
        },
        Value::DateTime(d, t) => dt::Parsed {
            date: Some(*d),
            ticks: Some(*t),
            offset: None,
        },
        Value::DateTimeOffset(d, t, o) => dt::Parsed {
            date: Some(*d),
            ticks: Some(*t),
            offset: Some(*o),
        },
        _ => return None,
    }))
}

fn int_range(ty: SqlType) -> (i64, i64) {
    match ty {
        SqlType::TinyInt => (0, 255),
        SqlType::SmallInt => (i16::MIN as i64, i16::MAX as i64),
        SqlType::Int => (i32::MIN as i64, i32::MAX as i64),
        _ => (i64::MIN, i64::MAX),
    }
}

/// Converts a value to a type. Text keeps its length (callers that must enforce or cut
/// lengths do so: [`check_length`], [`cut`]).
pub(crate) fn coerce(v: Value, to: SqlType) -> Result<Value, ErrorSpec> {
    if v == Value::Null {
        return Ok(Value::Null);
    }
    match to {
        SqlType::TinyInt | SqlType::SmallInt | SqlType::Int | SqlType::BigInt => {
            let i = match &v {
                Value::Int(i) => *i,
                Value::Float(f) => {
                    let t = f.trunc();
                    if !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&t) {
                        return Err(overflow(&v, to));
                    }
                    t as i64
                }
                Value::Dec(d) => d.trunc_i64().ok_or_else(|| overflow(&v, to))?,
                Value::Text(t) => match t.trim().parse::<i64>() {
                    Ok(i) => i,
                    Err(_) => return Err(conversion_failed(&v, to)),
                },
                Value::Blob(_) => match as_dec(&v) {
                    Some(Ok(d)) => d.trunc_i64().ok_or_else(|| overflow(&v, to))?,
                    _ => return Err(not_allowed(&v, to)),
                },
                _ => return Err(not_allowed(&v, to)),
            };
            let (lo, hi) = int_range(to);
            if i < lo || i > hi {
                return Err(overflow(&v, to));
            }
            Ok(Value::Int(i))
        }
        SqlType::Bit => match &v {
            Value::Text(t) if t.trim().eq_ignore_ascii_case("true") => Ok(Value::Int(1)),
            Value::Text(t) if t.trim().eq_ignore_ascii_case("false") => Ok(Value::Int(0)),
            Value::Text(t) => match Dec::parse(t) {
                Some(d) => Ok(Value::Int((d.mag != 0) as i64)),
                None => Err(conversion_failed(&v, to)),
            },
            Value::Int(i) => Ok(Value::Int((*i != 0) as i64)),
            Value::Float(f) => Ok(Value::Int((*f != 0.0) as i64)),
            Value::Dec(d) => Ok(Value::Int((d.mag != 0) as i64)),
            _ => Err(not_allowed(&v, to)),
        },
        SqlType::Real | SqlType::Float => {
            let f = match &v {
                Value::Int(i) => *i as f64,
                Value::Float(f) => *f,
                Value::Dec(d) => d.to_f64(),
                Value::Text(t) => t.trim().parse::<f64>().map_err(|_| {
                    ErrorSpec::new(8114, 16, "Error converting data type nvarchar to float.")
                })?,
                _ => return Err(not_allowed(&v, to)),
            };
            if !f.is_finite() {
                return Err(overflow(&v, to));
            }
            Ok(Value::Float(if to == SqlType::Real {
                f as f32 as f64
            } else {
                f
            }))
        }
        SqlType::Decimal(..) | SqlType::Money | SqlType::SmallMoney => {
            let (p, s) = match to {
                SqlType::Money => (19, 4),
                SqlType::SmallMoney => (10, 4),
                SqlType::Decimal(p, s) => (p, s),
                _ => (38, 0),
            };
            let d = match as_dec(&v) {
                Some(Ok(d)) => d,
                Some(Err(())) if matches!(v, Value::Text(_)) => {
                    return Err(if matches!(to, SqlType::Money | SqlType::SmallMoney) {
                        ErrorSpec::new(
                            235,
                            16,
                            "Cannot convert a char value to money. The char value has incorrect syntax.",
                        )
                    } else {
                        ErrorSpec::new(8114, 16, "Error converting data type nvarchar to numeric.")
                    });
                }
                Some(Err(())) => return Err(overflow(&v, to)),
                None => return Err(not_allowed(&v, to)),
            };
            let d = d.fit(p, s).ok_or_else(|| overflow(&v, to))?;
            let in_range = match to {
                SqlType::Money => d.scaled_i64(4).is_some(),
                SqlType::SmallMoney => d
                    .scaled_i64(4)
                    .is_some_and(|x| i32::try_from(x).is_ok()),
                _ => true,
            };
            if !in_range {
                return Err(overflow(&v, to));
            }
            Ok(Value::Dec(d))
        }
        SqlType::NVarChar(_)
        | SqlType::VarChar(_)
        | SqlType::NChar(_)
        | SqlType::Char(_)
        | SqlType::Xml => Ok(Value::Text(match &v {
            Value::Blob(b) => String::from_utf8_lossy(b).into_owned(),
            other => text_of(other).unwrap_or_default(),
        })),
        SqlType::VarBinary(_) | SqlType::Binary(_) => Ok(Value::Blob(match v {
            Value::Blob(b) => b,
            Value::Text(t) => t.into_bytes(),
            Value::Int(i) => match i32::try_from(i) {
                Ok(x) => x.to_be_bytes().to_vec(),
                Err(_) => i.to_be_bytes().to_vec(),
            },
            Value::Float(f) => f.to_be_bytes().to_vec(),
            Value::Guid(g) => guid_wire(&g).to_vec(),
            other => return Err(not_allowed(&other, to)),
        })),
        SqlType::UniqueIdentifier => match &v {
            Value::Guid(g) => Ok(Value::Guid(*g)),
            Value::Text(t) => parse_guid(t).map(Value::Guid).ok_or_else(|| {
                ErrorSpec::new(
                    8169,
                    16,
                    "Conversion failed when converting from a character string to uniqueidentifier.",
                )
            }),
            Value::Blob(b) if b.len() == 16 => {
                let mut w = [0u8; 16];
                w.copy_from_slice(b);
                Ok(Value::Guid(guid_wire(&w)))
            }
            _ => Err(not_allowed(&v, to)),
        },
        SqlType::Date
        | SqlType::Time(_)
        | SqlType::DateTime2(_)
        | SqlType::DateTimeOffset(_)
        | SqlType::DateTime
        | SqlType::SmallDateTime => coerce_datetime(v, to),
    }
}

fn coerce_datetime(v: Value, to: SqlType) -> Result<Value, ErrorSpec> {
    // DATETIME and SMALLDATETIME also take numbers: days since 1900-01-01.
    if matches!(to, SqlType::DateTime | SqlType::SmallDateTime) {
        if let Value::Int(_) | Value::Float(_) | Value::Dec(_) = v {
            let days = match &v {
                Value::Int(i) => *i as f64,
                Value::Float(f) => *f,
                Value::Dec(d) => d.to_f64(),
                _ => 0.0,
            };
            let whole = days.floor();
            let ticks = ((days - whole) * dt::TICKS_PER_DAY as f64).round() as u64;
            if !(-1e7..1e7).contains(&whole) {
                return Err(date_range(&v, to));
            }
            let as_dt = Value::DateTime(dt::DAY_1900 + whole as i32, ticks);
            return coerce_datetime(as_dt, to).map_err(|_| date_range(&v, to));
        }
    }
    let p = match as_instant(&v) {
        Some(Ok(p)) => p,
        Some(Err(())) => return Err(date_failed()),
        None => return Err(not_allowed(&v, to)),
    };
    // A date from text with no date part is 1900-01-01, as in SQL Server.
    let date = p.date.unwrap_or(dt::DAY_1900);
    let ticks = p.ticks.unwrap_or(0);
    match to {
        SqlType::Date => {
            if matches!(v, Value::Time(_)) {
                return Err(not_allowed(&v, to));
            }
            Ok(Value::Date(date))
        }
        SqlType::Time(s) => {
            if matches!(v, Value::Date(_)) {
                return Err(not_allowed(&v, to));
            }
            let (_, t) = dt::round(0, ticks, s);
            Ok(Value::Time(t))
        }
        SqlType::DateTime2(s) => {
            let (d, t) = dt::round(date, ticks, s);
            if d > dt::MAX_DAY {
                return Err(date_range(&v, to));
            }
            Ok(Value::DateTime(d, t))
        }
        SqlType::DateTimeOffset(s) => {
            let (d, t) = dt::round(date, ticks, s);
            let offset = p.offset.unwrap_or(0);
            if !dt::offset_in_range(d, t, offset) {
                return Err(date_range(&v, to));
            }
            Ok(Value::DateTimeOffset(d, t, offset))
        }
        SqlType::DateTime => {
            let (d, t300) = dt::to_datetime_ticks(date, ticks);
            if !(dt::DAY_1753..=dt::MAX_DAY).contains(&d) {
                return Err(date_range(&v, to));
            }
            Ok(Value::DateTime(d, dt::from_datetime_ticks(t300)))
        }
        SqlType::SmallDateTime => {
            let (d, min) = dt::to_minutes(date, ticks);
            if !(dt::DAY_1900..=dt::DAY_2079_06_06).contains(&d) {
                return Err(date_range(&v, to));
            }
            Ok(Value::DateTime(d, min as u64 * 60 * 10_000_000))
        }
        _ => Err(not_allowed(&v, to)),
    }
}

/// Length of a value in the units of the type's declared length (characters for
/// NVARCHAR/NCHAR, code page bytes for VARCHAR/CHAR, bytes for binary).
fn units(v: &Value, ty: SqlType) -> usize {
    match (v, ty) {
        (Value::Text(t), SqlType::NVarChar(_) | SqlType::NChar(_)) => t.encode_utf16().count(),
        (Value::Text(t), _) => t.chars().count(),
        (Value::Blob(b), _) => b.len(),
        _ => 0,
    }
}

/// Checks that a converted value fits the declared length of a column: SQL Server's
/// error 2628 otherwise.
pub(crate) fn check_length(
    v: &Value,
    ty: SqlType,
    table: &str,
    column: &str,
) -> Result<(), ErrorSpec> {
    let Some(max) = ty.max_len() else {
        return Ok(());
    };
    if units(v, ty) <= max {
        return Ok(());
    }
    let truncated = match cut(v.clone(), ty) {
        Value::Text(t) => t,
        Value::Blob(b) => format!(
            "0x{}",
            b.iter().map(|x| format!("{x:02X}")).collect::<String>()
        ),
        _ => String::new(),
    };
    let truncated: String = truncated.chars().take(200).collect();
    Err(ErrorSpec::new(
        2628,
        16,
        format!(
            "String or binary data would be truncated in table '{table}', column '{column}'. Truncated value: '{truncated}'."
        ),
    ))
}

/// Cuts a value to the type's declared length (what `CAST(x AS NVARCHAR(n))` does).
pub(crate) fn cut(v: Value, ty: SqlType) -> Value {
    let Some(max) = ty.max_len() else {
        return v;
    };
    match v {
        Value::Text(t) if units(&Value::Text(t.clone()), ty) > max => {
            if matches!(ty, SqlType::NVarChar(_) | SqlType::NChar(_)) {
                let u: Vec<u16> = t.encode_utf16().take(max).collect();
                Value::Text(String::from_utf16_lossy(&u))
            } else {
                Value::Text(t.chars().take(max).collect())
            }
        }
        Value::Blob(mut b) if b.len() > max => {
            b.truncate(max);
            Value::Blob(b)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tds::types::Len;

    fn c(v: Value, ty: &str) -> Result<Value, u32> {
        coerce(v, SqlType::parse_decl(ty, true).unwrap()).map_err(|e| e.number)
    }

    fn t(s: &str) -> Value {
        Value::Text(s.into())
    }

    #[test]
    fn guids_print_canonically() {
        let g = parse_guid("{6f9619ff-8b86-d011-b42d-00c04fc964ff}").unwrap();
        assert_eq!(format_guid(&g), "6F9619FF-8B86-D011-B42D-00C04FC964FF");
        assert_eq!(guid_wire(&g)[..4], [0xFF, 0x19, 0x96, 0x6F]);
        assert!(parse_guid("6F9619FF8B86D011B42D00C04FC964FF").is_none());
    }

    #[test]
    fn casts_give_values_or_sql_server_errors() {
        assert_eq!(
            c(t("2024-02-29 13:45:56.1234567"), "DATETIME2"),
            Ok(Value::DateTime(
                crate::tds::datetime::days_from_ymd(2024, 2, 29).unwrap(),
                ((13 * 60 + 45) * 60 + 56) * 10_000_000 + 1_234_567
            ))
        );
        assert_eq!(c(t("2024-02-30"), "DATE"), Err(241));
        assert_eq!(c(t("1700-01-01"), "DATETIME"), Err(242));
        assert_eq!(c(t("12:00€"), "TIME"), Err(241));
        assert_eq!(c(t("abc"), "DECIMAL(10,2)"), Err(8114));
        assert_eq!(c(t("12345.678"), "DECIMAL(5,2)"), Err(8115));
        assert_eq!(
            c(t("123.456"), "DECIMAL(5,2)"),
            Ok(Value::Dec(Dec::parse("123.46").unwrap()))
        );
        assert_eq!(c(t("abc"), "INT"), Err(245));
        assert_eq!(c(t("abc"), "BIT"), Err(245));
        assert_eq!(c(t("2"), "BIT"), Ok(Value::Int(1)));
        assert_eq!(c(Value::Int(300), "TINYINT"), Err(220));
        assert_eq!(c(t("nope"), "UNIQUEIDENTIFIER"), Err(8169));
        assert_eq!(c(Value::Int(1), "DATE"), Err(529));
        assert_eq!(c(Value::Float(12.7), "INT"), Ok(Value::Int(12)));
        assert_eq!(
            c(
                Value::Blob(b"12345678901234567890.12345".to_vec()),
                "DECIMAL(38,5)"
            ),
            Ok(Value::Dec(
                Dec::parse("12345678901234567890.12345").unwrap()
            ))
        );
    }

    #[test]
    fn datetimeoffset_needs_its_utc_date_in_range_too() {
        let dto = |s: &str| c(t(s), "DATETIMEOFFSET");
        // UTC 0000-12-31 and 10000-01-01: not representable on the wire.
        assert_eq!(dto("0001-01-01 00:00:00 +14:00"), Err(242));
        assert_eq!(dto("9999-12-31 23:59:00 -14:00"), Err(242));
        let e = coerce(t("0001-01-01 00:00:00 +14:00"), SqlType::DateTimeOffset(7)).unwrap_err();
        assert_eq!(
            e.message,
            "The conversion of a nvarchar data type to a datetimeoffset data type resulted in an out-of-range value."
        );
        // The extremes whose UTC date is in range still convert.
        assert!(dto("0001-01-01 14:00:00 +14:00").is_ok());
        assert!(dto("9999-12-31 09:59:00 -14:00").is_ok());
    }

    #[test]
    fn lengths_are_checked_with_2628() {
        let ty = SqlType::NVarChar(Len::N(3));
        assert!(check_length(&t("abc"), ty, "db.dbo.t", "c").is_ok());
        let e = check_length(&t("abcdef"), ty, "db.dbo.t", "c").unwrap_err();
        assert_eq!(e.number, 2628);
        assert_eq!(
            e.message,
            "String or binary data would be truncated in table 'db.dbo.t', column 'c'. Truncated value: 'abc'."
        );
        assert_eq!(cut(t("abcdef"), ty), t("abc"));
    }
}
