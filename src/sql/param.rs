//! Statement parameters: every common SQL Server type, with NULLs, plus any value that
//! implements tiberius's [`ToSql`].

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};
use rust_decimal::Decimal;
use tiberius::numeric::Numeric;
use tiberius::xml::XmlData;
use tiberius::{ColumnData, ToSql};
use uuid::Uuid;

/// A typed statement parameter (`@P1`, `@P2`, … in order).
///
/// Build one with `From` (`42i32.into()`, `Some(uuid).into()`, `None::<NaiveDate>.into()`
/// for a typed NULL, `"text".into()`), with a constructor for the types Rust cannot tell
/// apart ([`Param::varchar`], [`Param::datetime`], [`Param::xml`]), or wrap any value
/// implementing tiberius's [`ToSql`] with [`Param::custom`]. Parameters are kept for the
/// whole call and re-sent as they are by retries, hedges and failover, so each one owns its
/// value (a custom one is shared behind an `Arc`).
///
/// | SQL Server type | Rust value |
/// |---|---|
/// | `TINYINT`, `SMALLINT`, `INT`, `BIGINT` | `u8`, `i16`, `i32`, `i64` |
/// | `REAL`, `FLOAT` | `f32`, `f64` |
/// | `BIT` | `bool` |
/// | `DECIMAL`/`NUMERIC` | [`Decimal`] (28 digits), [`Numeric`] (38 digits) |
/// | `MONEY`, `SMALLMONEY` | [`Decimal`]: sent as `DECIMAL(p, s)`, converted by the server (rounding to 4 places, as for any `DECIMAL`) |
/// | `NVARCHAR` | `String`, `&str` ([`Param::Text`]) |
/// | `VARCHAR` | [`Param::varchar`] (see [`Param::VarChar`]) |
/// | `VARBINARY` | `Vec<u8>`, `&[u8]` |
/// | `UNIQUEIDENTIFIER` | [`Uuid`] |
/// | `DATE`, `TIME` | [`NaiveDate`], [`NaiveTime`] |
/// | `DATETIME2` | [`NaiveDateTime`] |
/// | `DATETIMEOFFSET` | [`DateTime<FixedOffset>`], [`DateTime<Utc>`] (offset `+00:00`) |
/// | `DATETIME` | [`Param::datetime`] (rounded to 1/300 s, as SQL Server stores it) |
/// | `XML` | [`Param::xml`] |
///
/// Values outside a SQL type's range (a `DATE` before year 1, a `DATETIME` before 1753, a
/// leap second) are refused before anything is sent, with an error naming the parameter.
#[derive(Clone)]
#[non_exhaustive]
pub enum Param {
    /// `TINYINT`.
    U8(Option<u8>),
    /// `SMALLINT`.
    I16(Option<i16>),
    /// `INT` (32-bit).
    I32(Option<i32>),
    /// `BIGINT`.
    I64(Option<i64>),
    /// `REAL`.
    F32(Option<f32>),
    /// `FLOAT`.
    F64(Option<f64>),
    /// `BIT`.
    Bool(Option<bool>),
    /// `DECIMAL(p, s)` from a [`Decimal`] (up to 28 digits).
    Decimal(Option<Decimal>),
    /// `NUMERIC(p, s)` from a [`Numeric`] (up to 38 digits).
    Numeric(Option<Numeric>),
    /// `NVARCHAR` (`NVARCHAR(MAX)` when long): Unicode text.
    Text(Option<String>),
    /// `VARCHAR`: non-Unicode text, for `VARCHAR` columns (comparing a `VARCHAR` column
    /// with an `NVARCHAR` parameter makes SQL Server convert the column, which turns an
    /// index seek into a scan).
    ///
    /// tiberius declares every text parameter `NVARCHAR`, so a statement with a `VARCHAR`
    /// parameter is sent as `EXEC sp_executesql @P1, @P2, @P3, …`: the statement and a
    /// declaration naming this parameter `VARCHAR(8000)` (`VARCHAR(MAX)` when longer)
    /// are themselves parameters, and the server converts the value to the database's
    /// default code page when it binds it — inside the statement, the parameter *is* a
    /// `VARCHAR`. **Non-ASCII text:** characters the code page cannot hold arrive as `?`
    /// (with a UTF-8 collation, `…_UTF8`, every character is kept); use [`Param::Text`]
    /// for `NVARCHAR` columns. Inside a [unit of work](crate::sql::UnitOfWork), passed to
    /// tiberius directly, it is sent as `NVARCHAR`.
    VarChar(Option<String>),
    /// `VARBINARY` (`VARBINARY(MAX)` when long).
    Bytes(Option<Vec<u8>>),
    /// `UNIQUEIDENTIFIER`.
    Guid(Option<Uuid>),
    /// `DATE` (0001-01-01 to 9999-12-31).
    Date(Option<NaiveDate>),
    /// `TIME(7)` (100 ns resolution).
    Time(Option<NaiveTime>),
    /// `DATETIME2(7)` (0001-01-01 to 9999-12-31, 100 ns resolution).
    DateTime2(Option<NaiveDateTime>),
    /// `DATETIMEOFFSET(7)`.
    DateTimeOffset(Option<DateTime<FixedOffset>>),
    /// `DATETIME` (1753-01-01 to 9999-12-31, rounded to 1/300 s).
    DateTime(Option<NaiveDateTime>),
    /// `XML`.
    Xml(Option<String>),
    /// Any value implementing tiberius's [`ToSql`], shared so that re-sending it is cheap.
    Custom(Arc<dyn ToSql>),
}

impl Param {
    /// A `VARCHAR` parameter (see [`Param::VarChar`] for how it is sent).
    pub fn varchar(text: impl Into<String>) -> Param {
        Param::VarChar(Some(text.into()))
    }

    /// A `DATETIME` parameter (a [`NaiveDateTime`] alone is sent as `DATETIME2`).
    pub fn datetime(value: NaiveDateTime) -> Param {
        Param::DateTime(Some(value))
    }

    /// An `XML` parameter.
    pub fn xml(document: impl Into<String>) -> Param {
        Param::Xml(Some(document.into()))
    }

    /// Any value implementing tiberius's [`ToSql`] (e.g. a newtype of your own).
    pub fn custom(value: impl ToSql + 'static) -> Param {
        Param::Custom(Arc::new(value))
    }

    /// Whether this is a NULL (of its type). A custom parameter answers for its value.
    pub fn is_null(&self) -> bool {
        super::row::is_null(&self.to_sql())
    }

    /// The SQL type name, for messages (never the value).
    pub fn sql_type(&self) -> &'static str {
        match self {
            Param::U8(_) => "TINYINT",
            Param::I16(_) => "SMALLINT",
            Param::I32(_) => "INT",
            Param::I64(_) => "BIGINT",
            Param::F32(_) => "REAL",
            Param::F64(_) => "FLOAT",
            Param::Bool(_) => "BIT",
            Param::Decimal(_) | Param::Numeric(_) => "DECIMAL",
            Param::Text(_) => "NVARCHAR",
            Param::VarChar(_) => "VARCHAR",
            Param::Bytes(_) => "VARBINARY",
            Param::Guid(_) => "UNIQUEIDENTIFIER",
            Param::Date(_) => "DATE",
            Param::Time(_) => "TIME",
            Param::DateTime2(_) => "DATETIME2",
            Param::DateTimeOffset(_) => "DATETIMEOFFSET",
            Param::DateTime(_) => "DATETIME",
            Param::Xml(_) => "XML",
            Param::Custom(_) => "custom",
        }
    }

    /// Checks the value fits its SQL type; the message names the type, not the value.
    pub(crate) fn check(&self) -> Result<(), String> {
        let date_in = |d: NaiveDate, min_year: i32, ty: &str| {
            if (min_year..=9999).contains(&d.year()) {
                Ok(())
            } else {
                Err(format!(
                    "a {ty} value must be in the years {min_year} to 9999"
                ))
            }
        };
        let time_ok = |t: NaiveTime, ty: &str| {
            if t.nanosecond() < 1_000_000_000 {
                Ok(())
            } else {
                Err(format!("a {ty} value cannot hold a leap second"))
            }
        };
        match self {
            Param::Date(Some(d)) => date_in(*d, 1, "DATE"),
            Param::Time(Some(t)) => time_ok(*t, "TIME"),
            Param::DateTime2(Some(dt)) => {
                date_in(dt.date(), 1, "DATETIME2")?;
                time_ok(dt.time(), "DATETIME2")
            }
            Param::DateTimeOffset(Some(dt)) => {
                date_in(dt.naive_utc().date(), 1, "DATETIMEOFFSET")?;
                time_ok(dt.time(), "DATETIMEOFFSET")
            }
            Param::DateTime(Some(dt)) => {
                date_in(dt.date(), 1753, "DATETIME")?;
                time_ok(dt.time(), "DATETIME")?;
                if legacy_datetime(*dt).is_none() {
                    return Err("a DATETIME value must be at most 9999-12-31 23:59:59.997".into());
                }
                Ok(())
            }
            // tiberius declares a value below 1 with one integer digit more than it has (a
            // leading zero), so a scale of 38 goes on the wire as the invalid DECIMAL(39,38).
            Param::Numeric(Some(n)) if n.precision() > 38 && n.scale() == 38 => Err(
                "a DECIMAL value can have at most 37 decimal places (the driver declares scale 38 as DECIMAL(39,38))"
                    .into(),
            ),
            Param::Numeric(Some(n)) if n.precision() > 38 => {
                Err("a DECIMAL value must have at most 38 digits (integer digits + scale)".into())
            }
            Param::F32(Some(v)) if !v.is_finite() => Err("a REAL value must be finite".into()),
            Param::F64(Some(v)) if !v.is_finite() => Err("a FLOAT value must be finite".into()),
            _ => Ok(()),
        }
    }
}

/// `DATETIME`'s ticks (1/300 s) in a day.
pub(crate) const DATETIME_TICKS_PER_DAY: u32 = 300 * 86_400;

/// `DATETIME`'s wire form: days since 1900-01-01 and 1/300 s ticks since midnight,
/// rounded to the nearest tick (a value rounding to midnight moves to the next day).
fn legacy_datetime(dt: NaiveDateTime) -> Option<tiberius::time::DateTime> {
    let epoch = NaiveDate::from_ymd_opt(1900, 1, 1)?;
    let mut days = (dt.date() - epoch).num_days();
    let t = dt.time();
    let nanos =
        u64::from(t.num_seconds_from_midnight()) * 1_000_000_000 + u64::from(t.nanosecond());
    let mut ticks = (nanos * 3 + 5_000_000) / 10_000_000;
    if ticks >= u64::from(DATETIME_TICKS_PER_DAY) {
        ticks -= u64::from(DATETIME_TICKS_PER_DAY);
        days += 1;
    }
    // The last representable DATETIME is 9999-12-31 23:59:59.997.
    let last = (NaiveDate::from_ymd_opt(9999, 12, 31)? - epoch).num_days();
    if days > last {
        return None;
    }
    Some(tiberius::time::DateTime::new(
        i32::try_from(days).ok()?,
        u32::try_from(ticks).ok()?,
    ))
}

impl ToSql for Param {
    fn to_sql(&self) -> ColumnData<'_> {
        match self {
            Param::U8(v) => ColumnData::U8(*v),
            Param::I16(v) => ColumnData::I16(*v),
            Param::I32(v) => ColumnData::I32(*v),
            Param::I64(v) => ColumnData::I64(*v),
            Param::F32(v) => ColumnData::F32(*v),
            Param::F64(v) => ColumnData::F64(*v),
            Param::Bool(v) => ColumnData::Bit(*v),
            Param::Decimal(v) => v.to_sql(),
            Param::Numeric(v) => ColumnData::Numeric(*v),
            Param::Text(v) | Param::VarChar(v) => {
                ColumnData::String(v.as_deref().map(Cow::Borrowed))
            }
            Param::Bytes(v) => ColumnData::Binary(v.as_deref().map(Cow::Borrowed)),
            Param::Guid(v) => ColumnData::Guid(*v),
            Param::Date(v) => v.to_sql(),
            Param::Time(v) => v.to_sql(),
            Param::DateTime2(v) => v.to_sql(),
            Param::DateTimeOffset(v) => v.to_sql(),
            // Past DATETIME's last tick (which `check` refuses): sent as DATETIME2, never
            // as a NULL — a DATETIME column refuses it (out of range) rather than store
            // nothing; a DATETIME2 one stores it exactly.
            Param::DateTime(Some(v)) => match legacy_datetime(*v) {
                Some(legacy) => ColumnData::DateTime(Some(legacy)),
                None => v.to_sql(),
            },
            Param::DateTime(None) => ColumnData::DateTime(None),
            Param::Xml(v) => {
                ColumnData::Xml(v.as_ref().map(|s| Cow::Owned(XmlData::new(s.clone()))))
            }
            Param::Custom(v) => v.to_sql(),
        }
    }
}

impl fmt::Debug for Param {
    /// Shows the SQL type and whether the value is NULL, not the value (it may be
    /// personal data).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let null = if self.is_null() { " NULL" } else { "" };
        write!(f, "Param({}{null})", self.sql_type())
    }
}

impl PartialEq for Param {
    /// Same type and value; custom parameters are equal only to themselves.
    fn eq(&self, other: &Param) -> bool {
        use Param::*;
        match (self, other) {
            (U8(a), U8(b)) => a == b,
            (I16(a), I16(b)) => a == b,
            (I32(a), I32(b)) => a == b,
            (I64(a), I64(b)) => a == b,
            (F32(a), F32(b)) => a == b,
            (F64(a), F64(b)) => a == b,
            (Bool(a), Bool(b)) => a == b,
            (Decimal(a), Decimal(b)) => a == b,
            (Numeric(a), Numeric(b)) => a == b,
            (Text(a), Text(b)) | (VarChar(a), VarChar(b)) | (Xml(a), Xml(b)) => a == b,
            (Bytes(a), Bytes(b)) => a == b,
            (Guid(a), Guid(b)) => a == b,
            (Date(a), Date(b)) => a == b,
            (Time(a), Time(b)) => a == b,
            (DateTime2(a), DateTime2(b)) | (DateTime(a), DateTime(b)) => a == b,
            (DateTimeOffset(a), DateTimeOffset(b)) => a == b,
            (Custom(a), Custom(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

macro_rules! param_from {
    ($($t:ty => $v:ident),* $(,)?) => {$(
        impl From<$t> for Param {
            fn from(v: $t) -> Self { Param::$v(Some(v.into())) }
        }
        impl From<Option<$t>> for Param {
            fn from(v: Option<$t>) -> Self { Param::$v(v.map(Into::into)) }
        }
    )*};
}
param_from!(
    u8 => U8,
    i16 => I16,
    i32 => I32,
    i64 => I64,
    f32 => F32,
    f64 => F64,
    bool => Bool,
    Decimal => Decimal,
    Numeric => Numeric,
    String => Text,
    &str => Text,
    Vec<u8> => Bytes,
    &[u8] => Bytes,
    Uuid => Guid,
    NaiveDate => Date,
    NaiveTime => Time,
    NaiveDateTime => DateTime2,
    DateTime<FixedOffset> => DateTimeOffset,
);

impl From<DateTime<Utc>> for Param {
    fn from(v: DateTime<Utc>) -> Self {
        Param::DateTimeOffset(Some(v.fixed_offset()))
    }
}

impl From<Option<DateTime<Utc>>> for Param {
    fn from(v: Option<DateTime<Utc>>) -> Self {
        Param::DateTimeOffset(v.map(|v| v.fixed_offset()))
    }
}

/// A shared [`ToSql`] value: [`Param::Custom`].
impl From<Arc<dyn ToSql>> for Param {
    fn from(v: Arc<dyn ToSql>) -> Self {
        Param::Custom(v)
    }
}

/// Builds a `Vec<Param>` from values of mixed types: `params![id, "Ada", amount, None::<Uuid>]`.
#[macro_export]
macro_rules! params {
    ($($value:expr),* $(,)?) => {
        ::std::vec![$($crate::sql::Param::from($value)),*]
    };
}

/// The SQL type a parameter is declared with inside `sp_executesql`, as tiberius
/// declares it, except `VARCHAR` parameters.
fn declared_type(param: &Param) -> Cow<'static, str> {
    if let Param::VarChar(v) = param {
        return match v {
            Some(s) if s.len() > 8000 => "varchar(max)".into(),
            _ => "varchar(8000)".into(),
        };
    }
    match param.to_sql() {
        ColumnData::U8(_) => "tinyint".into(),
        ColumnData::I16(_) => "smallint".into(),
        ColumnData::I32(_) => "int".into(),
        ColumnData::I64(_) => "bigint".into(),
        ColumnData::F32(_) => "real".into(),
        ColumnData::F64(_) => "float".into(),
        ColumnData::Bit(_) => "bit".into(),
        ColumnData::String(Some(s)) if s.len() > 4000 => "nvarchar(max)".into(),
        ColumnData::String(_) => "nvarchar(4000)".into(),
        ColumnData::Guid(_) => "uniqueidentifier".into(),
        ColumnData::Binary(Some(b)) if b.len() > 8000 => "varbinary(max)".into(),
        ColumnData::Binary(_) => "varbinary(8000)".into(),
        ColumnData::Numeric(Some(n)) => format!("numeric({},{})", n.precision(), n.scale()).into(),
        ColumnData::Numeric(None) => "numeric".into(),
        ColumnData::Xml(_) => "xml".into(),
        ColumnData::DateTime(_) => "datetime".into(),
        ColumnData::SmallDateTime(_) => "smalldatetime".into(),
        ColumnData::Time(_) => "time".into(),
        ColumnData::Date(_) => "date".into(),
        ColumnData::DateTime2(_) => "datetime2".into(),
        ColumnData::DateTimeOffset(_) => "datetimeoffset".into(),
    }
}

/// A statement as it goes on the wire: unchanged, or — when a parameter is `VARCHAR` —
/// wrapped in `EXEC sp_executesql` with its own declaration (see [`Param::VarChar`]).
pub(crate) struct WireStatement<'a> {
    pub(crate) sql: Cow<'a, str>,
    wrapper: Option<[Param; 2]>,
    params: &'a [Param],
}

impl<'a> WireStatement<'a> {
    pub(crate) fn new(sql: &'a str, params: &'a [Param]) -> WireStatement<'a> {
        if !params.iter().any(|p| matches!(p, Param::VarChar(_))) {
            return WireStatement {
                sql: Cow::Borrowed(sql),
                wrapper: None,
                params,
            };
        }
        let mut exec = String::from("EXEC sp_executesql @P1, @P2");
        let mut declaration = String::new();
        for (i, param) in params.iter().enumerate() {
            exec.push_str(&format!(", @P{}", i + 3));
            if i > 0 {
                declaration.push_str(", ");
            }
            declaration.push_str(&format!("@P{} {}", i + 1, declared_type(param)));
        }
        WireStatement {
            sql: Cow::Owned(exec),
            wrapper: Some([
                Param::Text(Some(sql.to_owned())),
                Param::Text(Some(declaration)),
            ]),
            params,
        }
    }

    /// The parameters to hand to tiberius.
    pub(crate) fn params(&self) -> Vec<&dyn ToSql> {
        self.wrapper
            .iter()
            .flatten()
            .chain(self.params.iter())
            .map(|p| p as &dyn ToSql)
            .collect()
    }
}

/// A parameter whose value does not fit its SQL type. It names the parameter (`@P2`) and
/// the type, never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError(String);

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParamError {}

/// Checks every parameter of a statement.
pub(crate) fn check_params(params: &[Param]) -> Result<(), ParamError> {
    for (i, param) in params.iter().enumerate() {
        param.check().map_err(|e| {
            ParamError(format!("parameter @P{} ({}): {e}", i + 1, param.sql_type()))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_pick_the_sql_type() {
        let p: Param = 7u8.into();
        assert_eq!(p.sql_type(), "TINYINT");
        assert_eq!(Param::from(None::<Uuid>).sql_type(), "UNIQUEIDENTIFIER");
        assert!(Param::from(None::<Uuid>).is_null());
        assert!(!Param::from("x").is_null());
        let utc = DateTime::<Utc>::from_timestamp(0, 0).unwrap();
        assert!(matches!(Param::from(utc), Param::DateTimeOffset(Some(_))));
        assert_eq!(format!("{:?}", Param::from("secret")), "Param(NVARCHAR)");
        assert_eq!(format!("{:?}", Param::I32(None)), "Param(INT NULL)");
    }

    #[test]
    fn datetime_rounds_to_three_hundredths() {
        let d = NaiveDate::from_ymd_opt(1900, 1, 2).unwrap();
        let dt = d.and_hms_milli_opt(0, 0, 1, 2).unwrap();
        let wire = legacy_datetime(dt).unwrap();
        assert_eq!((wire.days(), wire.seconds_fragments()), (1, 301));
        // 23:59:59.999 rounds to the next midnight.
        let late = d.and_hms_milli_opt(23, 59, 59, 999).unwrap();
        let wire = legacy_datetime(late).unwrap();
        assert_eq!((wire.days(), wire.seconds_fragments()), (2, 0));
        let early = NaiveDate::from_ymd_opt(1753, 1, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        assert_eq!(legacy_datetime(early).unwrap().days(), -53690);
        let last = NaiveDate::from_ymd_opt(9999, 12, 31)
            .unwrap()
            .and_hms_milli_opt(23, 59, 59, 999)
            .unwrap();
        assert!(legacy_datetime(last).is_none());
        // Sent as it is (inside a unit of work, where `check` does not run), it is never a
        // NULL: it goes as DATETIME2, for the server to refuse.
        assert!(matches!(
            Param::datetime(last).to_sql(),
            ColumnData::DateTime2(Some(_))
        ));
        assert!(matches!(
            Param::DateTime(None).to_sql(),
            ColumnData::DateTime(None)
        ));
    }

    #[test]
    fn a_scale_of_38_is_refused_with_the_reason() {
        let tiny = Param::Numeric(Some(Numeric::new_with_scale(1, 38)));
        let err = check_params(&[tiny]).unwrap_err().to_string();
        assert!(err.contains("at most 37 decimal places"), "{err}");
        let ok = Param::Numeric(Some(Numeric::new_with_scale(1, 37)));
        assert!(check_params(&[ok]).is_ok());
    }

    #[test]
    fn out_of_range_values_are_refused_by_name() {
        let old = NaiveDate::from_ymd_opt(1752, 12, 31)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        let err = check_params(&[1i32.into(), Param::datetime(old)])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("parameter @P2 (DATETIME)"), "{err}");
        let bc = NaiveDate::from_ymd_opt(0, 12, 31).unwrap();
        assert!(check_params(&[bc.into()])
            .unwrap_err()
            .to_string()
            .contains("DATE"));
        let leap = NaiveTime::from_hms_nano_opt(23, 59, 59, 1_500_000_000).unwrap();
        assert!(check_params(&[leap.into()])
            .unwrap_err()
            .to_string()
            .contains("leap second"));
        assert!(check_params(&[f64::NAN.into()]).is_err());
        assert!(check_params(&[NaiveDate::MIN
            .max(NaiveDate::from_ymd_opt(1, 1, 1).unwrap())
            .into()])
        .is_ok());
    }

    #[test]
    fn varchar_statements_are_wrapped_with_their_declaration() {
        let params = [1i32.into(), Param::varchar("SKU-1"), Param::I64(None)];
        let wire = WireStatement::new("SELECT * FROM t WHERE id = @P1 AND sku = @P2", &params);
        assert_eq!(wire.sql, "EXEC sp_executesql @P1, @P2, @P3, @P4, @P5");
        let sent = wire.params();
        assert_eq!(sent.len(), 5);
        match (sent[0].to_sql(), sent[1].to_sql()) {
            (ColumnData::String(Some(stmt)), ColumnData::String(Some(decl))) => {
                assert_eq!(stmt, "SELECT * FROM t WHERE id = @P1 AND sku = @P2");
                assert_eq!(decl, "@P1 int, @P2 varchar(8000), @P3 bigint");
            }
            other => panic!("unexpected wrapper {other:?}"),
        }
        let plain = [Param::from("x")];
        let wire = WireStatement::new("SELECT @P1", &plain);
        assert_eq!(wire.sql, "SELECT @P1");
        assert_eq!(wire.params().len(), 1);
    }
}
