//! The recorded form of the rows a keyed write returned (`OUTPUT`, a generated id), kept
//! with its key so a replay returns them as the first answer did.
//!
//! A JSON document, versioned, that keeps every value **exactly** as the driver decoded
//! it: the column's wire type and the cell's raw representation (integers as integers,
//! floats by their bits, decimals as their unscaled value and scale, dates and times as
//! the wire's day and increment counts). A replayed row therefore reads through
//! [`Row::try_get`](crate::sql::Row::try_get) and [`FromRow`](crate::sql::FromRow)
//! exactly like the original.
//!
//! ```text
//! {"v":1,"sets":[{"columns":[["id","Int4"],["note","NVarchar"]],
//!                 "rows":[[["I32",7],["String","first"]]]}]}
//! ```
//!
//! Decoding never panics: a stored document that is not of this shape (edited by hand,
//! truncated, from a future version) is an error naming what was wrong, never the data.

use std::borrow::Cow;
use std::fmt;

use serde_json::{json, Value as Json};
use tiberius::numeric::Numeric;
use tiberius::time::{Date, DateTime, DateTime2, DateTimeOffset, SmallDateTime, Time};
use tiberius::xml::XmlData;
use tiberius::{ColumnData, ColumnType};
use uuid::Uuid;

use crate::sql::{ResultSet, Row};

/// The format version written.
const VERSION: u64 = 1;

/// The most characters the recorded form of one write's returned rows may have; a write
/// returning more is rolled back (see [`crate::idempotency::idempotent_query`]).
pub const MAX_RECORDED_CHARS: usize = 1 << 20;

/// Every column type, with the name it is recorded under. One table for both directions.
const COLUMN_TYPES: [(ColumnType, &str); 35] = [
    (ColumnType::Null, "Null"),
    (ColumnType::Bit, "Bit"),
    (ColumnType::Int1, "Int1"),
    (ColumnType::Int2, "Int2"),
    (ColumnType::Int4, "Int4"),
    (ColumnType::Int8, "Int8"),
    (ColumnType::Datetime4, "Datetime4"),
    (ColumnType::Float4, "Float4"),
    (ColumnType::Float8, "Float8"),
    (ColumnType::Money, "Money"),
    (ColumnType::Datetime, "Datetime"),
    (ColumnType::Money4, "Money4"),
    (ColumnType::Guid, "Guid"),
    (ColumnType::Intn, "Intn"),
    (ColumnType::Bitn, "Bitn"),
    (ColumnType::Decimaln, "Decimaln"),
    (ColumnType::Numericn, "Numericn"),
    (ColumnType::Floatn, "Floatn"),
    (ColumnType::Datetimen, "Datetimen"),
    (ColumnType::Daten, "Daten"),
    (ColumnType::Timen, "Timen"),
    (ColumnType::Datetime2, "Datetime2"),
    (ColumnType::DatetimeOffsetn, "DatetimeOffsetn"),
    (ColumnType::BigVarBin, "BigVarBin"),
    (ColumnType::BigVarChar, "BigVarChar"),
    (ColumnType::BigBinary, "BigBinary"),
    (ColumnType::BigChar, "BigChar"),
    (ColumnType::NVarchar, "NVarchar"),
    (ColumnType::NChar, "NChar"),
    (ColumnType::Xml, "Xml"),
    (ColumnType::Udt, "Udt"),
    (ColumnType::Text, "Text"),
    (ColumnType::Image, "Image"),
    (ColumnType::NText, "NText"),
    (ColumnType::SSVariant, "SSVariant"),
];

fn type_name(ty: ColumnType) -> &'static str {
    COLUMN_TYPES
        .iter()
        .find(|(t, _)| *t == ty)
        .map_or("Null", |(_, name)| name)
}

fn type_named(name: &str) -> Option<ColumnType> {
    COLUMN_TYPES
        .iter()
        .find(|(_, n)| *n == name)
        .map(|(t, _)| *t)
}

/// Why the rows a keyed write returned could not be recorded or replayed. Names the
/// problem, never the data.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordError {
    /// The write returned more than [`MAX_RECORDED_CHARS`] in recorded form; it was rolled
    /// back.
    TooLarge,
    /// The stored document is not a recorded result (edited, truncated, or written by a
    /// newer format version); the detail says which part.
    Unreadable(&'static str),
    /// The key was recorded by a write that kept no returned rows (an
    /// [`idempotent_execute`](super::idempotent_execute), or a table upgraded from 0.1.0
    /// that recorded the key before fingerprints).
    NotRecorded,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::TooLarge => write!(
                f,
                "the rows the idempotent write returned take more than {MAX_RECORDED_CHARS} characters recorded; the write was rolled back"
            ),
            RecordError::Unreadable(what) => write!(
                f,
                "the returned rows recorded with this idempotency key cannot be read: {what}"
            ),
            RecordError::NotRecorded => f.write_str(
                "this idempotency key was recorded without the rows its write returned, so they cannot be replayed",
            ),
        }
    }
}

impl std::error::Error for RecordError {}

/// The recorded form of `sets`.
pub(crate) fn encode(sets: &[ResultSet]) -> String {
    let sets: Vec<Json> = sets.iter().map(encode_set).collect();
    json!({ "v": VERSION, "sets": sets }).to_string()
}

fn encode_set(set: &ResultSet) -> Json {
    // Column types come from the rows; an empty set keeps its names with no type.
    let types: Vec<Option<ColumnType>> = match set.rows.first() {
        Some(row) => row
            .as_tiberius()
            .columns()
            .iter()
            .map(|c| Some(c.column_type()))
            .collect(),
        None => vec![None; set.columns.len()],
    };
    let columns: Vec<Json> = set
        .columns
        .iter()
        .zip(types)
        .map(|(name, ty)| json!([name, ty.map_or("Null", type_name)]))
        .collect();
    let rows: Vec<Json> = set
        .rows
        .iter()
        .map(|row| {
            Json::Array(
                row.as_tiberius()
                    .cells()
                    .map(|(_, data)| encode_cell(data))
                    .collect(),
            )
        })
        .collect();
    json!({ "columns": columns, "rows": rows })
}

fn encode_cell(data: &ColumnData<'static>) -> Json {
    fn cell<T>(tag: &str, value: Option<T>, payload: impl FnOnce(T) -> Json) -> Json {
        json!([tag, value.map_or(Json::Null, payload)])
    }
    match data {
        ColumnData::U8(v) => cell("U8", *v, |v| json!(v)),
        ColumnData::I16(v) => cell("I16", *v, |v| json!(v)),
        ColumnData::I32(v) => cell("I32", *v, |v| json!(v)),
        ColumnData::I64(v) => cell("I64", *v, |v| json!(v)),
        ColumnData::F32(v) => cell("F32", *v, |v| json!(v.to_bits())),
        ColumnData::F64(v) => cell("F64", *v, |v| json!(v.to_bits())),
        ColumnData::Bit(v) => cell("Bit", *v, |v| json!(v)),
        ColumnData::String(v) => cell("String", v.as_deref(), |v| json!(v)),
        ColumnData::Guid(v) => cell("Guid", *v, |v| json!(v.hyphenated().to_string())),
        ColumnData::Binary(v) => cell("Binary", v.as_deref(), |v| json!(hex(v))),
        ColumnData::Numeric(v) => {
            cell("Numeric", *v, |v| json!([v.value().to_string(), v.scale()]))
        }
        ColumnData::Xml(v) => cell("Xml", v.as_deref(), |v| json!(v.as_ref())),
        ColumnData::DateTime(v) => {
            cell("DateTime", *v, |v| json!([v.days(), v.seconds_fragments()]))
        }
        ColumnData::SmallDateTime(v) => cell("SmallDateTime", *v, |v| {
            json!([v.days(), v.seconds_fragments()])
        }),
        ColumnData::Time(v) => cell("Time", *v, |v| json!([v.increments(), v.scale()])),
        ColumnData::Date(v) => cell("Date", *v, |v| json!(v.days())),
        ColumnData::DateTime2(v) => cell("DateTime2", *v, |v| {
            json!([v.date().days(), v.time().increments(), v.time().scale()])
        }),
        ColumnData::DateTimeOffset(v) => cell("DateTimeOffset", *v, |v| {
            let dt = v.datetime2();
            json!([
                dt.date().days(),
                dt.time().increments(),
                dt.time().scale(),
                v.offset()
            ])
        }),
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// The result sets recorded by [`encode`].
pub(crate) fn decode(text: &str) -> Result<Vec<ResultSet>, RecordError> {
    let doc: Json = serde_json::from_str(text).map_err(|_| RecordError::Unreadable("not JSON"))?;
    if doc.get("v").and_then(Json::as_u64) != Some(VERSION) {
        return Err(RecordError::Unreadable("unknown format version"));
    }
    let sets = doc
        .get("sets")
        .and_then(Json::as_array)
        .ok_or(RecordError::Unreadable("no result sets"))?;
    sets.iter()
        .enumerate()
        .map(|(index, set)| decode_set(index, set))
        .collect()
}

fn decode_set(index: usize, set: &Json) -> Result<ResultSet, RecordError> {
    let columns: Vec<(String, ColumnType)> = set
        .get("columns")
        .and_then(Json::as_array)
        .ok_or(RecordError::Unreadable("a result set has no columns"))?
        .iter()
        .map(|c| {
            let name = c.get(0).and_then(Json::as_str);
            let ty = c.get(1).and_then(Json::as_str).and_then(type_named);
            match (name, ty) {
                (Some(name), Some(ty)) => Ok((name.to_owned(), ty)),
                _ => Err(RecordError::Unreadable(
                    "a column is not a [name, type] pair",
                )),
            }
        })
        .collect::<Result<_, _>>()?;
    let rows = set
        .get("rows")
        .and_then(Json::as_array)
        .ok_or(RecordError::Unreadable("a result set has no rows"))?
        .iter()
        .map(|row| {
            let cells = row
                .as_array()
                .filter(|cells| cells.len() == columns.len())
                .ok_or(RecordError::Unreadable(
                    "a row does not have one value per column",
                ))?;
            let mut builder = tiberius::Row::builder().result_index(index);
            for ((name, ty), cell) in columns.iter().zip(cells) {
                builder = builder.column(name.clone(), *ty, decode_cell(cell)?);
            }
            Ok(Row::from(builder.build()))
        })
        .collect::<Result<_, _>>()?;
    Ok(ResultSet {
        columns: columns.into_iter().map(|(name, _)| name).collect(),
        rows,
    })
}

fn decode_cell(cell: &Json) -> Result<ColumnData<'static>, RecordError> {
    const BAD: RecordError = RecordError::Unreadable("a value does not match its type tag");
    /// 9999-12-31, the last day a DATE / DATETIME2 / DATETIMEOFFSET holds (days since 0001-01-01).
    const MAX_DAYS: u32 = 3_652_058;
    let tag = cell
        .get(0)
        .and_then(Json::as_str)
        .ok_or(RecordError::Unreadable("a value has no type tag"))?;
    let payload = cell.get(1).ok_or(BAD)?;
    // `None` for NULL, else the payload read by `read` (failing when it does not fit).
    fn value<T>(
        payload: &Json,
        read: impl FnOnce(&Json) -> Option<T>,
    ) -> Result<Option<T>, RecordError> {
        if payload.is_null() {
            return Ok(None);
        }
        read(payload).map(Some).ok_or(BAD)
    }
    let int = |j: &Json| j.as_i64();
    let uint = |j: &Json| j.as_u64();
    let at = |j: &Json, i: usize| j.get(i).cloned().unwrap_or(Json::Null);
    let scale = |j: &Json| {
        j.as_u64()
            .and_then(|s| u8::try_from(s).ok())
            .filter(|s| *s <= 7)
    };
    // Only values SQL Server can hold: `Date::new` asserts its day count fits in three
    // bytes, and a time of day past midnight would be encoded into a wrong value.
    let time = |j: &Json, from: usize| {
        let scale = scale(&at(j, from + 1))?;
        let increments = uint(&at(j, from))?;
        (increments < 86_400 * 10u64.pow(u32::from(scale))).then(|| Time::new(increments, scale))
    };
    let days = |j: &Json| {
        uint(j)
            .and_then(|d| u32::try_from(d).ok())
            .filter(|d| *d <= MAX_DAYS)
            .map(Date::new)
    };
    Ok(match tag {
        "U8" => ColumnData::U8(value(payload, |j| u8::try_from(uint(j)?).ok())?),
        "I16" => ColumnData::I16(value(payload, |j| i16::try_from(int(j)?).ok())?),
        "I32" => ColumnData::I32(value(payload, |j| i32::try_from(int(j)?).ok())?),
        "I64" => ColumnData::I64(value(payload, int)?),
        "F32" => ColumnData::F32(value(payload, |j| {
            Some(f32::from_bits(u32::try_from(uint(j)?).ok()?))
        })?),
        "F64" => ColumnData::F64(value(payload, |j| Some(f64::from_bits(uint(j)?)))?),
        "Bit" => ColumnData::Bit(value(payload, Json::as_bool)?),
        "String" => ColumnData::String(value(payload, |j| {
            Some(Cow::Owned(j.as_str()?.to_owned()))
        })?),
        "Guid" => ColumnData::Guid(value(payload, |j| Uuid::parse_str(j.as_str()?).ok())?),
        "Binary" => ColumnData::Binary(value(payload, |j| unhex(j.as_str()?).map(Cow::Owned))?),
        "Numeric" => ColumnData::Numeric(value(payload, |j| {
            let unscaled: i128 = at(j, 0).as_str()?.parse().ok()?;
            let scale = u8::try_from(uint(&at(j, 1))?).ok()?;
            (scale <= Numeric::MAX_NUMERIC_SCALE).then(|| Numeric::new_with_scale(unscaled, scale))
        })?),
        "Xml" => ColumnData::Xml(value(payload, |j| {
            Some(Cow::Owned(XmlData::new(j.as_str()?)))
        })?),
        "DateTime" => ColumnData::DateTime(value(payload, |j| {
            // Days since 1900-01-01 (1753-01-01 to 9999-12-31), 1/300 s since midnight.
            let days = i32::try_from(int(&at(j, 0))?)
                .ok()
                .filter(|d| (-53_690..=2_958_463).contains(d))?;
            let ticks = u32::try_from(uint(&at(j, 1))?)
                .ok()
                .filter(|t| *t < crate::sql::param::DATETIME_TICKS_PER_DAY)?;
            Some(DateTime::new(days, ticks))
        })?),
        "SmallDateTime" => ColumnData::SmallDateTime(value(payload, |j| {
            // Days since 1900-01-01 (every u16: 2079-06-06 is day 65 535), minutes since
            // midnight.
            let days = u16::try_from(uint(&at(j, 0))?).ok()?;
            let minutes = u16::try_from(uint(&at(j, 1))?)
                .ok()
                .filter(|m| *m < 1_440)?;
            Some(SmallDateTime::new(days, minutes))
        })?),
        "Time" => ColumnData::Time(value(payload, |j| time(j, 0))?),
        "Date" => ColumnData::Date(value(payload, days)?),
        "DateTime2" => ColumnData::DateTime2(value(payload, |j| {
            Some(DateTime2::new(days(&at(j, 0))?, time(j, 1)?))
        })?),
        "DateTimeOffset" => ColumnData::DateTimeOffset(value(payload, |j| {
            let dt = DateTime2::new(days(&at(j, 0))?, time(j, 1)?);
            // Offsets are at most ±14:00.
            let offset = i16::try_from(int(&at(j, 3))?)
                .ok()
                .filter(|m| (-840..=840).contains(m))?;
            Some(DateTimeOffset::new(dt, offset))
        })?),
        _ => return Err(RecordError::Unreadable("unknown type tag")),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn set(cells: Vec<(&str, ColumnType, ColumnData<'static>)>) -> ResultSet {
        let mut builder = tiberius::Row::builder();
        for (name, ty, data) in &cells {
            builder = builder.column(*name, *ty, data.clone());
        }
        ResultSet {
            columns: cells.iter().map(|(n, _, _)| (*n).to_owned()).collect(),
            rows: vec![Row::from(builder.build())],
        }
    }

    /// Two result sets: one row with a value of every type at a limit (and a NULL), and
    /// an empty set.
    pub(crate) fn sample_sets() -> Vec<ResultSet> {
        let dt2 = DateTime2::new(Date::new(3_652_058), Time::new(863_999_999_999, 7));
        vec![
            set(vec![
                ("u8", ColumnType::Int1, ColumnData::U8(Some(255))),
                ("i16", ColumnType::Int2, ColumnData::I16(Some(i16::MIN))),
                ("i32", ColumnType::Int4, ColumnData::I32(None)),
                ("i64", ColumnType::Int8, ColumnData::I64(Some(i64::MAX))),
                (
                    "f32",
                    ColumnType::Float4,
                    ColumnData::F32(Some(f32::MIN_POSITIVE)),
                ),
                ("f64", ColumnType::Float8, ColumnData::F64(Some(0.1 + 0.2))),
                ("bit", ColumnType::Bitn, ColumnData::Bit(Some(true))),
                (
                    "s",
                    ColumnType::NVarchar,
                    ColumnData::String(Some("ß\"'\n€".into())),
                ),
                (
                    "g",
                    ColumnType::Guid,
                    ColumnData::Guid(Some(Uuid::from_u128(u128::MAX - 1))),
                ),
                (
                    "b",
                    ColumnType::BigVarBin,
                    ColumnData::Binary(Some(vec![0, 1, 0xfe, 0xff].into())),
                ),
                (
                    "n",
                    ColumnType::Decimaln,
                    ColumnData::Numeric(Some(Numeric::new_with_scale(
                        -99_999_999_999_999_999_999_999_999_999_999_999_999,
                        2,
                    ))),
                ),
                (
                    "x",
                    ColumnType::Xml,
                    ColumnData::Xml(Some(Cow::Owned(XmlData::new("<a/>")))),
                ),
                (
                    "dt",
                    ColumnType::Datetime,
                    ColumnData::DateTime(Some(DateTime::new(-53_690, 0))),
                ),
                (
                    "sdt",
                    ColumnType::Datetime4,
                    ColumnData::SmallDateTime(Some(SmallDateTime::new(65_535, 1439))),
                ),
                (
                    "t",
                    ColumnType::Timen,
                    ColumnData::Time(Some(Time::new(1, 7))),
                ),
                ("d", ColumnType::Daten, ColumnData::Date(Some(Date::new(0)))),
                (
                    "d2",
                    ColumnType::Datetime2,
                    ColumnData::DateTime2(Some(dt2)),
                ),
                (
                    "dto",
                    ColumnType::DatetimeOffsetn,
                    ColumnData::DateTimeOffset(Some(DateTimeOffset::new(dt2, -840))),
                ),
            ]),
            ResultSet {
                columns: vec!["empty".into()],
                rows: Vec::new(),
            },
        ]
    }

    #[test]
    fn every_value_round_trips_exactly() {
        let original = sample_sets();
        let decoded = decode(&encode(&original)).unwrap();
        assert_eq!(decoded.len(), 2);
        assert_eq!(decoded[1].columns, ["empty"]);
        assert!(decoded[1].rows.is_empty());
        let (a, b) = (
            original[0].rows[0].as_tiberius(),
            decoded[0].rows[0].as_tiberius(),
        );
        assert_eq!(decoded[0].columns, original[0].columns);
        for ((ca, va), (cb, vb)) in a.cells().zip(b.cells()) {
            assert_eq!((ca.name(), ca.column_type()), (cb.name(), cb.column_type()));
            assert_eq!(va, vb, "{}", ca.name());
        }
        assert_eq!(a.len(), b.len());
    }

    #[test]
    fn bad_documents_are_errors_that_do_not_echo_them() {
        for bad in [
            "",
            "secret",
            r#"{"v":2,"sets":[]}"#,
            r#"{"v":1}"#,
            r#"{"v":1,"sets":[{"columns":[["a"]],"rows":[]}]}"#,
            r#"{"v":1,"sets":[{"columns":[["a","Int4"]],"rows":[[]]}]}"#,
            r#"{"v":1,"sets":[{"columns":[["a","Int4"]],"rows":[[["I32","secret"]]]}]}"#,
            r#"{"v":1,"sets":[{"columns":[["a","Int4"]],"rows":[[["I32",4294967296]]]}]}"#,
            r#"{"v":1,"sets":[{"columns":[["a","Int4"]],"rows":[[["Nope",1]]]}]}"#,
            r#"{"v":1,"sets":[{"columns":[["a","Decimaln"]],"rows":[[["Numeric",["1",39]]]]}]}"#,
            r#"{"v":1,"sets":[{"columns":[["a","Timen"]],"rows":[[["Time",[1,8]]]]}]}"#,
            r#"{"v":1,"sets":[{"columns":[["a","BigVarBin"]],"rows":[[["Binary","abc"]]]}]}"#,
            // Out of the types' ranges: a day count past three bytes (tiberius's `Date::new`
            // asserts on it), past 9999-12-31, and a time of day past midnight.
            r#"{"v":1,"sets":[{"columns":[["d","Daten"]],"rows":[[["Date",16777216]]]}]}"#,
            r#"{"v":1,"sets":[{"columns":[["d","Daten"]],"rows":[[["Date",3652059]]]}]}"#,
            r#"{"v":1,"sets":[{"columns":[["t","Timen"]],"rows":[[["Time",[864000000000,7]]]]}]}"#,
            r#"{"v":1,"sets":[{"columns":[["t","Datetime2"]],"rows":[[["DateTime2",[16777216,0,7]]]]}]}"#,
            r#"{"v":1,"sets":[{"columns":[["t","Datetimen"]],"rows":[[["DateTime",[0,25920000]]]]}]}"#,
            r#"{"v":1,"sets":[{"columns":[["t","Datetimen"]],"rows":[[["DateTime",[2958464,0]]]]}]}"#,
            r#"{"v":1,"sets":[{"columns":[["t","Datetimen"]],"rows":[[["SmallDateTime",[0,1440]]]]}]}"#,
            r#"{"v":1,"sets":[{"columns":[["t","DatetimeOffsetn"]],"rows":[[["DateTimeOffset",[1,0,7,841]]]]}]}"#,
        ] {
            let error = decode(bad).unwrap_err().to_string();
            assert!(!error.contains("secret"), "{error}");
            assert!(error.contains("cannot be read"), "{error}");
        }
    }
}
