use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime};
use tiberius::numeric::Numeric;
use tiberius::{ColumnData, ColumnType, FromSql};
use uuid::Uuid;

use super::row::{FromRow, Reason, Row, RowError};
use super::typed::TypedOutput;

/// One value, of whatever SQL type, held without loss: for code that does not know the
/// schema (a generic JSON endpoint, a test). Code that does reads typed values with
/// [`Row::try_get`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// SQL `NULL`.
    Null,
    /// `TINYINT`, `SMALLINT`, `INT`, `BIGINT`.
    Int(i64),
    /// `REAL`, `FLOAT`; also a `MONEY` beyond ±450 billion, which the driver hands over
    /// as an `f64` (see [`FromSqlValue`](super::FromSqlValue)).
    Float(f64),
    /// `BIT`.
    Bool(bool),
    /// Character data: `(N)VARCHAR`, `(N)CHAR`, `(N)TEXT`.
    Text(String),
    /// Binary data.
    Bytes(Vec<u8>),
    /// `DECIMAL`/`NUMERIC` (all 38 digits), and `MONEY`/`SMALLMONEY` (scale 4).
    Decimal(Numeric),
    /// `UNIQUEIDENTIFIER`.
    Guid(Uuid),
    /// `DATE`.
    Date(NaiveDate),
    /// `TIME`.
    Time(NaiveTime),
    /// `DATETIME2`, `DATETIME`, `SMALLDATETIME`.
    DateTime(NaiveDateTime),
    /// `DATETIMEOFFSET`.
    DateTimeOffset(DateTime<FixedOffset>),
    /// `XML`, as text.
    Xml(String),
}

impl Value {
    /// The integer, if this is one.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(v) => Some(*v),
            _ => None,
        }
    }

    /// The float, if this is one (integers convert).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(v) => Some(*v),
            Value::Int(v) => Some(*v as f64),
            _ => None,
        }
    }

    /// The text, if this is text (or XML).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(v) | Value::Xml(v) => Some(v),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(v) => Some(*v),
            _ => None,
        }
    }

    /// Whether this is `NULL`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The value of a cell, without its column type (a `MONEY` reads as [`Value::Float`]).
    pub fn from_column(data: &ColumnData<'_>) -> Value {
        Self::from_typed_column(data, ColumnType::Null)
    }

    /// The value of a cell of a column of type `ty`. A date/time the driver cannot decode
    /// (malformed, or outside chrono's range — SQL Server never sends one) reads as
    /// [`Value::Null`] here; [`Row::try_get`] reports it as an error instead.
    pub fn from_typed_column(data: &ColumnData<'_>, ty: ColumnType) -> Value {
        Self::decode(data, ty).unwrap_or(Value::Null)
    }

    /// The value of a cell of a column of type `ty`, or why it is not a valid value of
    /// that type.
    pub(crate) fn decode(data: &ColumnData<'_>, ty: ColumnType) -> Result<Value, Reason> {
        fn or_null<T>(v: &Option<T>, f: impl FnOnce(&T) -> Value) -> Result<Value, Reason> {
            Ok(v.as_ref().map_or(Value::Null, f))
        }
        fn date<'a, T: FromSql<'a>>(
            data: &'a ColumnData<'static>,
            f: impl FnOnce(T) -> Value,
        ) -> Result<Value, Reason> {
            match T::from_sql(data) {
                Ok(v) => Ok(v.map_or(Value::Null, f)),
                Err(_) => Err(Reason::OutOfRange("not a valid date/time")),
            }
        }
        match data {
            ColumnData::U8(v) => or_null(v, |v| Value::Int(i64::from(*v))),
            ColumnData::I16(v) => or_null(v, |v| Value::Int(i64::from(*v))),
            ColumnData::I32(v) => or_null(v, |v| Value::Int(i64::from(*v))),
            ColumnData::I64(v) => or_null(v, |v| Value::Int(*v)),
            ColumnData::F32(v) => or_null(v, |v| Value::Float(f64::from(*v))),
            ColumnData::F64(v) if matches!(ty, ColumnType::Money | ColumnType::Money4) => {
                or_null(v, |v| {
                    super::row::money_units(*v).map_or(Value::Float(*v), |units| {
                        Value::Decimal(Numeric::new_with_scale(units, 4))
                    })
                })
            }
            ColumnData::F64(v) => or_null(v, |v| Value::Float(*v)),
            ColumnData::Bit(v) => or_null(v, |v| Value::Bool(*v)),
            ColumnData::String(v) => or_null(v, |v| Value::Text(v.to_string())),
            ColumnData::Binary(v) => or_null(v, |v| Value::Bytes(v.to_vec())),
            ColumnData::Numeric(v) => or_null(v, |v| Value::Decimal(*v)),
            ColumnData::Guid(v) => or_null(v, |v| Value::Guid(*v)),
            ColumnData::Xml(v) => or_null(v, |v| Value::Xml(v.as_ref().as_ref().to_owned())),
            // The date/time payloads are plain `Copy` data: convert from an owned copy.
            other => {
                let owned: ColumnData<'static> = match other {
                    ColumnData::Date(v) => ColumnData::Date(*v),
                    ColumnData::Time(v) => ColumnData::Time(*v),
                    ColumnData::DateTime2(v) => ColumnData::DateTime2(*v),
                    ColumnData::DateTimeOffset(v) => ColumnData::DateTimeOffset(*v),
                    ColumnData::DateTime(v) => ColumnData::DateTime(*v),
                    ColumnData::SmallDateTime(v) => ColumnData::SmallDateTime(*v),
                    _ => return Ok(Value::Null),
                };
                match owned {
                    ColumnData::Date(_) => date(&owned, Value::Date),
                    ColumnData::Time(_) => date(&owned, Value::Time),
                    ColumnData::DateTimeOffset(_) => date(&owned, Value::DateTimeOffset),
                    _ => date(&owned, Value::DateTime),
                }
            }
        }
    }
}

/// One result set: column names and rows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResultSet {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// The rows, as the server sent them; read them with [`Row::try_get`] or map them
    /// with [`ResultSet::map`].
    pub rows: Vec<Row>,
}

impl ResultSet {
    /// The value at `row`, `column` (by name), if present.
    pub fn get(&self, row: usize, column: &str) -> Option<Value> {
        self.rows.get(row)?.value(column)
    }

    /// Every row mapped into `T` (see [`FromRow`]).
    pub fn map<T: FromRow>(&self) -> Result<Vec<T>, RowError> {
        self.rows.iter().map(T::from_row).collect()
    }
}

/// A materialized response.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SqlResponse {
    /// Result sets of a query (empty for `execute`).
    pub result_sets: Vec<ResultSet>,
    /// Rows affected per statement of an `execute` (empty for a query).
    pub rows_affected: Vec<u64>,
    /// True when an [idempotency key](crate::idempotency) found the write already done
    /// and this is its recorded outcome.
    pub replayed: bool,
    /// The value of a unit of work run with [`Stack::run`](crate::Stack::run) (taken out
    /// by it); `None` otherwise.
    pub typed: Option<TypedOutput>,
}

impl SqlResponse {
    /// The first result set, if any.
    pub fn first(&self) -> Option<&ResultSet> {
        self.result_sets.first()
    }

    /// The first row of the first result set.
    pub fn first_row(&self) -> Option<&Row> {
        self.first()?.rows.first()
    }

    /// The first column of the first row of the first result set.
    pub fn scalar(&self) -> Option<Value> {
        self.first_row()?.value(0)
    }

    /// The rows of the first result set mapped into `T` (none when there is no result
    /// set); see [`FromRow`].
    pub fn map<T: FromRow>(&self) -> Result<Vec<T>, RowError> {
        self.first().map_or(Ok(Vec::new()), ResultSet::map)
    }

    /// Total rows affected.
    pub fn total_rows_affected(&self) -> u64 {
        self.rows_affected.iter().sum()
    }
}
