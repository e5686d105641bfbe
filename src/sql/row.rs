//! Typed rows: lossless access by index or column name, and mapping rows into your types.

use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use rust_decimal::Decimal;
use tiberius::numeric::Numeric;
use tiberius::{ColumnData, ColumnType, FromSql};
use uuid::Uuid;

use super::response::Value;

/// One row of a result set, as the server sent it (no conversion happens until a value is
/// asked for).
///
/// ```
/// # use mssql_resilience::sql::{Row, RowError};
/// # fn f(row: &Row) -> Result<(), RowError> {
/// let id: i32 = row.try_get("id")?;            // by name
/// let note: Option<String> = row.try_get(4)?;   // by index; NULL → None
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Row {
    inner: tiberius::Row,
}

impl Clone for Row {
    fn clone(&self) -> Self {
        let mut builder = tiberius::Row::builder().result_index(self.inner.result_index());
        for (column, data) in self.inner.cells() {
            builder = builder.column(column.name(), column.column_type(), data.clone());
        }
        Row {
            inner: builder.build(),
        }
    }
}

impl PartialEq for Row {
    fn eq(&self, other: &Row) -> bool {
        self.len() == other.len()
            && self
                .inner
                .cells()
                .zip(other.inner.cells())
                .all(|((ca, a), (cb, b))| {
                    ca.name() == cb.name()
                        && Value::from_typed_column(a, ca.column_type())
                            == Value::from_typed_column(b, cb.column_type())
                })
    }
}

impl From<tiberius::Row> for Row {
    fn from(inner: tiberius::Row) -> Self {
        Row { inner }
    }
}

/// A column, by position (`0`, `1`, …) or by name (`"id"`; the first column of that
/// name).
pub trait ColumnIndex: fmt::Display + Copy {
    /// The position of the column in `row`, if it has one.
    fn position(self, row: &Row) -> Option<usize>;
}

impl ColumnIndex for usize {
    fn position(self, row: &Row) -> Option<usize> {
        (self < row.len()).then_some(self)
    }
}

impl ColumnIndex for &str {
    fn position(self, row: &Row) -> Option<usize> {
        row.inner.columns().iter().position(|c| c.name() == self)
    }
}

impl Row {
    /// The number of columns.
    pub fn len(&self) -> usize {
        self.inner.columns().len()
    }

    /// Whether the row has no columns.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Which result set of the response the row belongs to (0 for the first).
    pub fn result_index(&self) -> usize {
        self.inner.result_index()
    }

    /// The column names, in order.
    pub fn columns(&self) -> impl Iterator<Item = &str> {
        self.inner.columns().iter().map(|c| c.name())
    }

    /// The value of column `index` converted to `T`; NULL is an error unless `T` is an
    /// `Option`. See [`FromSqlValue`] for the conversions.
    pub fn try_get<'a, T: FromSqlValue<'a>>(
        &'a self,
        index: impl ColumnIndex,
    ) -> Result<T, RowError> {
        let position = index.position(self).ok_or_else(|| RowError {
            column: index.to_string(),
            sql_type: "",
            rust_type: std::any::type_name::<T>(),
            reason: Reason::NoSuchColumn,
        })?;
        let column = &self.inner.columns()[position];
        let data = self
            .inner
            .cells()
            .nth(position)
            .map(|(_, d)| d)
            .ok_or_else(|| RowError {
                column: column.name().to_owned(),
                sql_type: sql_type_name(column.column_type()),
                rust_type: std::any::type_name::<T>(),
                reason: Reason::NoSuchColumn,
            })?;
        T::from_sql_value(data, column.column_type()).map_err(|reason| RowError {
            column: column.name().to_owned(),
            sql_type: sql_type_name(column.column_type()),
            rust_type: std::any::type_name::<T>(),
            reason,
        })
    }

    /// Like [`try_get`](Self::try_get), panicking on an error (the message names the
    /// column and the types, not the value). For code that knows its schema.
    #[track_caller]
    pub fn get<'a, T: FromSqlValue<'a>>(&'a self, index: impl ColumnIndex) -> T {
        match self.try_get(index) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        }
    }

    /// The value of column `index` as a [`Value`], or `None` when there is no such column
    /// (or its value is not valid for its type; [`try_get`](Self::try_get) says which).
    pub fn value(&self, index: impl ColumnIndex) -> Option<Value> {
        self.try_get(index).ok()
    }

    /// Every value, in column order (an invalid date/time as [`Value::Null`], see
    /// [`Value::from_typed_column`]).
    pub fn values(&self) -> impl Iterator<Item = Value> + '_ {
        self.inner
            .cells()
            .map(|(c, d)| Value::from_typed_column(d, c.column_type()))
    }

    /// Maps the row into `T` (see [`FromRow`]).
    pub fn to<T: FromRow>(&self) -> Result<T, RowError> {
        T::from_row(self)
    }

    /// The tiberius row, for anything this type does not cover.
    pub fn as_tiberius(&self) -> &tiberius::Row {
        &self.inner
    }

    /// An estimate of the memory the row's values take (text as UTF-8, binary as is, a
    /// fixed size for the other types), used by the response-size cap.
    pub(crate) fn size_estimate(&self) -> usize {
        self.inner.cells().map(|(_, d)| cell_size(d)).sum()
    }
}

fn cell_size(data: &ColumnData<'_>) -> usize {
    match data {
        ColumnData::String(Some(s)) => s.len(),
        ColumnData::Binary(Some(b)) => b.len(),
        ColumnData::Xml(Some(x)) => x.as_ref().as_ref().len(),
        _ => 16,
    }
}

/// Why a value could not be read; never holds the value itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// The row has no such column.
    NoSuchColumn,
    /// The value is NULL and the requested type is not an `Option`.
    UnexpectedNull,
    /// The SQL type does not convert to the requested type (no lossy conversions are made).
    WrongType,
    /// The value does not fit the requested type (e.g. a 38-digit `DECIMAL` read as a
    /// 28-digit [`Decimal`]); the detail says which limit.
    OutOfRange(&'static str),
}

/// A value that could not be read as the requested type. It names the column, its SQL type
/// and the Rust type, never the value (it may be personal data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// The column's name (or the index or name asked for, when there is no such column).
    pub column: String,
    /// The column's SQL type, e.g. `DECIMAL` (empty when there is no such column).
    pub sql_type: &'static str,
    /// The requested Rust type.
    pub rust_type: &'static str,
    /// What went wrong.
    pub reason: Reason,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let RowError {
            column,
            sql_type,
            rust_type,
            ..
        } = self;
        match self.reason {
            Reason::NoSuchColumn => {
                write!(f, "no column `{column}` in the row (reading {rust_type})")
            }
            Reason::UnexpectedNull => write!(
                f,
                "column `{column}` ({sql_type}) is NULL; read it as Option<{rust_type}>"
            ),
            Reason::WrongType => write!(
                f,
                "column `{column}` ({sql_type}) cannot be read as {rust_type}"
            ),
            Reason::OutOfRange(why) => write!(
                f,
                "column `{column}` ({sql_type}) does not fit {rust_type}: {why}"
            ),
        }
    }
}

impl std::error::Error for RowError {}

impl From<RowError> for crate::error::Error {
    fn from(e: RowError) -> Self {
        crate::error::Error::new(
            crate::error::ErrorKind::Conversion,
            crate::error::Outcome::Rejected,
        )
        .with_source(e)
    }
}

/// The SQL type name of a column, for messages.
pub fn sql_type_name(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Null => "NULL",
        ColumnType::Bit | ColumnType::Bitn => "BIT",
        ColumnType::Int1 => "TINYINT",
        ColumnType::Int2 => "SMALLINT",
        ColumnType::Int4 => "INT",
        ColumnType::Int8 => "BIGINT",
        ColumnType::Intn => "INT",
        ColumnType::Datetime4 => "SMALLDATETIME",
        ColumnType::Float4 => "REAL",
        ColumnType::Float8 | ColumnType::Floatn => "FLOAT",
        ColumnType::Money => "MONEY",
        ColumnType::Money4 => "SMALLMONEY",
        ColumnType::Datetime | ColumnType::Datetimen => "DATETIME",
        ColumnType::Guid => "UNIQUEIDENTIFIER",
        ColumnType::Decimaln => "DECIMAL",
        ColumnType::Numericn => "NUMERIC",
        ColumnType::Daten => "DATE",
        ColumnType::Timen => "TIME",
        ColumnType::Datetime2 => "DATETIME2",
        ColumnType::DatetimeOffsetn => "DATETIMEOFFSET",
        ColumnType::BigVarBin => "VARBINARY",
        ColumnType::BigVarChar => "VARCHAR",
        ColumnType::BigBinary => "BINARY",
        ColumnType::BigChar => "CHAR",
        ColumnType::NVarchar => "NVARCHAR",
        ColumnType::NChar => "NCHAR",
        ColumnType::Xml => "XML",
        ColumnType::Udt => "UDT",
        ColumnType::Text => "TEXT",
        ColumnType::Image => "IMAGE",
        ColumnType::NText => "NTEXT",
        ColumnType::SSVariant => "SQL_VARIANT",
    }
}

/// A Rust type a column value converts to, without loss.
///
/// | Rust type | from SQL type |
/// |---|---|
/// | `bool` | `BIT` |
/// | `u8` | `TINYINT` |
/// | `i16`, `i32`, `i64` | any narrower or equal integer type |
/// | `f32` | `REAL` |
/// | `f64` | `REAL`, `FLOAT` |
/// | [`Numeric`] | `DECIMAL`/`NUMERIC` (38 digits), `MONEY` (see below) |
/// | [`Decimal`] | `DECIMAL`/`NUMERIC` up to 28 digits, `MONEY` (see below) |
/// | `String`, `&str` | `(N)VARCHAR`, `(N)CHAR`, `(N)TEXT`, `XML` |
/// | `Vec<u8>`, `&[u8]` | `(VAR)BINARY`, `IMAGE` |
/// | [`Uuid`] | `UNIQUEIDENTIFIER` |
/// | [`NaiveDate`], [`NaiveTime`] | `DATE`, `TIME` |
/// | [`NaiveDateTime`] | `DATETIME2`, `DATETIME`, `SMALLDATETIME` |
/// | [`DateTime<FixedOffset>`], [`DateTime<Utc>`] | `DATETIMEOFFSET` |
/// | [`Value`] | anything |
/// | `Option<T>` | as `T`, NULL as `None` |
///
/// **MONEY:** tiberius decodes `MONEY` into an `f64`; it is read back exactly (as a
/// 4-place decimal) as long as its magnitude is below 2^52 / 10^4 (about 450 billion), and
/// refused above that rather than rounded — cast such columns to `DECIMAL(19, 4)` in SQL.
///
/// Implement it for your own types by converting from one of these.
pub trait FromSqlValue<'a>: Sized {
    /// Converts `value` of a column of type `column_type`.
    fn from_sql_value(
        value: &'a ColumnData<'static>,
        column_type: ColumnType,
    ) -> Result<Self, Reason>;
}

/// tiberius reports NULL of any type with a `None` payload.
pub(crate) fn is_null(value: &ColumnData<'_>) -> bool {
    matches!(
        value,
        ColumnData::U8(None)
            | ColumnData::I16(None)
            | ColumnData::I32(None)
            | ColumnData::I64(None)
            | ColumnData::F32(None)
            | ColumnData::F64(None)
            | ColumnData::Bit(None)
            | ColumnData::String(None)
            | ColumnData::Guid(None)
            | ColumnData::Binary(None)
            | ColumnData::Numeric(None)
            | ColumnData::Xml(None)
            | ColumnData::DateTime(None)
            | ColumnData::SmallDateTime(None)
            | ColumnData::Time(None)
            | ColumnData::Date(None)
            | ColumnData::DateTime2(None)
            | ColumnData::DateTimeOffset(None)
    )
}

impl<'a, T: FromSqlValue<'a>> FromSqlValue<'a> for Option<T> {
    fn from_sql_value(value: &'a ColumnData<'static>, ty: ColumnType) -> Result<Self, Reason> {
        if is_null(value) {
            Ok(None)
        } else {
            T::from_sql_value(value, ty).map(Some)
        }
    }
}

macro_rules! from_ints {
    ($($t:ty: $($variant:ident)|*;)*) => {$(
        impl<'a> FromSqlValue<'a> for $t {
            fn from_sql_value(value: &'a ColumnData<'static>, _: ColumnType) -> Result<Self, Reason> {
                match value {
                    $(ColumnData::$variant(Some(v)) => Ok(<$t>::from(*v)),)*
                    v if is_null(v) => Err(Reason::UnexpectedNull),
                    _ => Err(Reason::WrongType),
                }
            }
        }
    )*};
}
from_ints! {
    bool: Bit;
    u8: U8;
    i16: U8 | I16;
    i32: U8 | I16 | I32;
    i64: U8 | I16 | I32 | I64;
    f32: F32;
    f64: F32 | F64;
    Uuid: Guid;
}

/// A MONEY value's exact scaled integer, when the driver's `f64` still holds it.
pub(super) fn money_units(v: f64) -> Result<i128, Reason> {
    const EXACT: f64 = 4_503_599_627_370_496.0; // 2^52
    let units = (v * 1e4).round();
    if units.abs() < EXACT {
        Ok(units as i128)
    } else {
        Err(Reason::OutOfRange(
            "MONEY beyond ±450 billion is not exact through tiberius; CAST it to DECIMAL(19, 4)",
        ))
    }
}

fn is_money(ty: ColumnType) -> bool {
    matches!(ty, ColumnType::Money | ColumnType::Money4)
}

impl<'a> FromSqlValue<'a> for Numeric {
    fn from_sql_value(value: &'a ColumnData<'static>, ty: ColumnType) -> Result<Self, Reason> {
        match value {
            ColumnData::Numeric(Some(n)) => Ok(*n),
            ColumnData::F64(Some(v)) if is_money(ty) => {
                Ok(Numeric::new_with_scale(money_units(*v)?, 4))
            }
            v if is_null(v) => Err(Reason::UnexpectedNull),
            _ => Err(Reason::WrongType),
        }
    }
}

impl<'a> FromSqlValue<'a> for Decimal {
    fn from_sql_value(value: &'a ColumnData<'static>, ty: ColumnType) -> Result<Self, Reason> {
        let n = Numeric::from_sql_value(value, ty)?;
        Decimal::try_from_i128_with_scale(n.value(), u32::from(n.scale())).map_err(|_| {
            Reason::OutOfRange("rust_decimal holds at most 28 digits; read it as Numeric")
        })
    }
}

impl<'a> FromSqlValue<'a> for &'a str {
    fn from_sql_value(value: &'a ColumnData<'static>, _: ColumnType) -> Result<Self, Reason> {
        match value {
            ColumnData::String(Some(s)) => Ok(s.as_ref()),
            ColumnData::Xml(Some(x)) => Ok(x.as_ref().as_ref()),
            v if is_null(v) => Err(Reason::UnexpectedNull),
            _ => Err(Reason::WrongType),
        }
    }
}

impl<'a> FromSqlValue<'a> for String {
    fn from_sql_value(value: &'a ColumnData<'static>, ty: ColumnType) -> Result<Self, Reason> {
        <&str>::from_sql_value(value, ty).map(str::to_owned)
    }
}

impl<'a> FromSqlValue<'a> for &'a [u8] {
    fn from_sql_value(value: &'a ColumnData<'static>, _: ColumnType) -> Result<Self, Reason> {
        match value {
            ColumnData::Binary(Some(b)) => Ok(b.as_ref()),
            v if is_null(v) => Err(Reason::UnexpectedNull),
            _ => Err(Reason::WrongType),
        }
    }
}

impl<'a> FromSqlValue<'a> for Vec<u8> {
    fn from_sql_value(value: &'a ColumnData<'static>, ty: ColumnType) -> Result<Self, Reason> {
        <&[u8]>::from_sql_value(value, ty).map(<[u8]>::to_vec)
    }
}

/// The date/time types go through tiberius's own conversions (`None` is NULL; an error is
/// a value chrono cannot hold).
macro_rules! from_dates {
    ($($t:ty: $($variant:ident)|*;)*) => {$(
        impl<'a> FromSqlValue<'a> for $t {
            fn from_sql_value(value: &'a ColumnData<'static>, _: ColumnType) -> Result<Self, Reason> {
                match value {
                    $(ColumnData::$variant(_))|* => match <$t as FromSql>::from_sql(value) {
                        Ok(Some(v)) => Ok(v),
                        Ok(None) => Err(Reason::UnexpectedNull),
                        Err(_) => Err(Reason::OutOfRange("not a valid date/time")),
                    },
                    v if is_null(v) => Err(Reason::UnexpectedNull),
                    _ => Err(Reason::WrongType),
                }
            }
        }
    )*};
}
from_dates! {
    NaiveDate: Date;
    NaiveTime: Time;
    NaiveDateTime: DateTime2 | DateTime | SmallDateTime;
    DateTime<FixedOffset>: DateTimeOffset;
    DateTime<Utc>: DateTimeOffset;
}

impl<'a> FromSqlValue<'a> for Value {
    fn from_sql_value(value: &'a ColumnData<'static>, ty: ColumnType) -> Result<Self, Reason> {
        Value::decode(value, ty)
    }
}

/// A type built from a [`Row`] — the crate's row mapping, in the style of `sqlx::FromRow`
/// and `tokio_postgres`' row conversions, without a derive macro (no proc-macro crate to
/// compile): implement it by reading each field with [`Row::try_get`].
///
/// ```
/// use mssql_resilience::sql::{FromRow, Row, RowError};
/// use rust_decimal::Decimal;
/// use uuid::Uuid;
///
/// struct Order { id: i32, customer_id: Uuid, amount: Decimal, note: Option<String> }
///
/// impl FromRow for Order {
///     fn from_row(row: &Row) -> Result<Self, RowError> {
///         Ok(Order {
///             id: row.try_get("id")?,
///             customer_id: row.try_get("customer_id")?,
///             amount: row.try_get("amount")?,
///             note: row.try_get("note")?,
///         })
///     }
/// }
/// ```
///
/// Tuples of up to 8 [`FromSqlValue`] types map the columns in order:
/// `let (id, name): (i32, String) = row.to()?`.
pub trait FromRow: Sized {
    /// Builds `Self` from `row`.
    fn from_row(row: &Row) -> Result<Self, RowError>;
}

macro_rules! tuple_from_row {
    ($($name:ident: $index:tt),+) => {
        impl<$($name),+> FromRow for ($($name,)+)
        where
            $($name: for<'a> FromSqlValue<'a>),+
        {
            fn from_row(row: &Row) -> Result<Self, RowError> {
                Ok(($(row.try_get::<$name>($index as usize)?,)+))
            }
        }
    };
}
tuple_from_row!(A: 0);
tuple_from_row!(A: 0, B: 1);
tuple_from_row!(A: 0, B: 1, C: 2);
tuple_from_row!(A: 0, B: 1, C: 2, D: 3);
tuple_from_row!(A: 0, B: 1, C: 2, D: 3, E: 4);
tuple_from_row!(A: 0, B: 1, C: 2, D: 3, E: 4, F: 5);
tuple_from_row!(A: 0, B: 1, C: 2, D: 3, E: 4, F: 5, G: 6);
tuple_from_row!(A: 0, B: 1, C: 2, D: 3, E: 4, F: 5, G: 6, H: 7);

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[test]
    fn an_invalid_date_time_is_an_error_not_a_null() {
        use tiberius::time::{Date, DateTime2, DateTimeOffset, Time};
        // An offset of 15 hours: no valid DATETIMEOFFSET has one (±14:00 at most).
        let bad = DateTimeOffset::new(DateTime2::new(Date::new(1), Time::new(0, 7)), 900);
        let row: Row = tiberius::Row::builder()
            .column(
                "at",
                ColumnType::DatetimeOffsetn,
                ColumnData::DateTimeOffset(Some(bad)),
            )
            .build()
            .into();
        let error = row.try_get::<Value>("at").unwrap_err();
        assert_eq!(error.reason, Reason::OutOfRange("not a valid date/time"));
        assert_eq!(error.column, "at");
        assert_eq!(row.value("at"), None, "not reported as NULL");
        assert!(row.try_get::<Option<DateTime<FixedOffset>>>("at").is_err());
    }

    fn row() -> Row {
        tiberius::Row::builder()
            .column("id", ColumnType::Int4, ColumnData::I32(Some(7)))
            .column("small", ColumnType::Int1, ColumnData::U8(Some(255)))
            .column(
                "amount",
                ColumnType::Decimaln,
                ColumnData::Numeric(Some(Numeric::new_with_scale(-12345, 2))),
            )
            .column(
                "big",
                ColumnType::Numericn,
                ColumnData::Numeric(Some(Numeric::new_with_scale(
                    99_999_999_999_999_999_999_999_999_999_999_999_999,
                    0,
                ))),
            )
            .column("note", ColumnType::NVarchar, ColumnData::String(None))
            .column(
                "name",
                ColumnType::NVarchar,
                ColumnData::String(Some(Cow::Borrowed("Ada"))),
            )
            .column("price", ColumnType::Money, ColumnData::F64(Some(12.3456)))
            .column(
                "huge",
                ColumnType::Money,
                ColumnData::F64(Some(900_000_000_000.0)),
            )
            .build()
            .into()
    }

    #[test]
    fn values_read_by_index_and_name_and_widen() {
        let row = row();
        assert_eq!(row.try_get::<i32>("id"), Ok(7));
        assert_eq!(row.try_get::<i64>(0), Ok(7));
        assert_eq!(row.try_get::<i16>("small"), Ok(255));
        assert_eq!(
            row.try_get::<Decimal>("amount"),
            Ok(Decimal::new(-12345, 2))
        );
        assert_eq!(row.try_get::<Option<String>>("note"), Ok(None));
        assert_eq!(row.try_get::<&str>("name"), Ok("Ada"));
        assert_eq!(row.try_get::<Decimal>("price"), Ok(Decimal::new(123456, 4)));
        assert_eq!(
            row.try_get::<Numeric>("big").map(|n| n.value()),
            Ok(99_999_999_999_999_999_999_999_999_999_999_999_999)
        );
        let (id, small): (i32, u8) = row.to().unwrap();
        assert_eq!((id, small), (7, 255));
    }

    #[test]
    fn errors_name_column_and_types_but_not_the_value() {
        let row = row();
        let e = row.try_get::<i32>("name").unwrap_err();
        assert_eq!(e.reason, Reason::WrongType);
        assert_eq!(
            e.to_string(),
            "column `name` (NVARCHAR) cannot be read as i32"
        );
        let e = row.try_get::<String>("note").unwrap_err();
        assert_eq!(e.reason, Reason::UnexpectedNull);
        assert!(e.to_string().contains("column `note` (NVARCHAR) is NULL"));
        let e = row.try_get::<Decimal>("big").unwrap_err();
        assert!(matches!(e.reason, Reason::OutOfRange(_)));
        assert!(!e.to_string().contains("99999"), "{e}");
        let e = row.try_get::<Decimal>("huge").unwrap_err();
        assert!(e.to_string().contains("MONEY"), "{e}");
        let e = row.try_get::<i32>("missing").unwrap_err();
        assert_eq!(e.reason, Reason::NoSuchColumn);
        assert_eq!(
            row.try_get::<i32>(99).unwrap_err().reason,
            Reason::NoSuchColumn
        );
        let e = row.try_get::<f32>("id").unwrap_err();
        assert_eq!(e.reason, Reason::WrongType);
    }

    #[test]
    fn rows_clone_and_compare() {
        let row = row();
        assert_eq!(row.clone(), row);
        assert_eq!(row.values().count(), 8);
        assert!(row.size_estimate() >= 3);
    }
}
