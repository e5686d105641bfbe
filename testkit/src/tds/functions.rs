//! SQL functions registered on every session's SQLite connection, which translated
//! statements call: `tk_cast` / `tk_try_cast` (T-SQL `CAST`, `CONVERT`, `TRY_CAST`),
//! `tk_col` (the column check that makes writes convert and length-check like SQL
//! Server), `tk_newid` (`NEWID()`). Errors travel as SQLite messages starting with
//! [`ERROR_TAG`] and become SQL Server errors in `sql::map_error`.

use super::convert;
use super::errors::ErrorSpec;
use super::sql::Value;
use super::types::SqlType;
use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::ValueRef;
use rusqlite::Connection;

/// Prefix of an error message that carries a SQL Server error: `tk-error N C message`.
pub(crate) const ERROR_TAG: &str = "tk-error ";

/// Encodes a SQL Server error as a SQLite function error.
fn fail(e: ErrorSpec) -> rusqlite::Error {
    rusqlite::Error::UserFunctionError(
        format!("{ERROR_TAG}{} {} {}", e.number, e.class, e.message).into(),
    )
}

/// Decodes a message produced by [`fail`].
pub(crate) fn decode_error(msg: &str) -> Option<ErrorSpec> {
    let rest = &msg[msg.find(ERROR_TAG)? + ERROR_TAG.len()..];
    let mut parts = rest.splitn(3, ' ');
    let number = parts.next()?.parse().ok()?;
    let class = parts.next()?.parse().ok()?;
    Some(ErrorSpec::new(
        number,
        class,
        parts.next().unwrap_or_default(),
    ))
}

/// A SQLite value as a [`Value`] (storage shapes only).
pub(crate) fn from_ref(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Float(f),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

fn type_arg(ctx: &Context<'_>, i: usize) -> rusqlite::Result<SqlType> {
    let decl: String = ctx.get(i)?;
    SqlType::parse_decl(&decl, true).ok_or_else(|| {
        fail(ErrorSpec::new(
            243,
            16,
            format!("Type {decl} is not a defined system type."),
        ))
    })
}

fn cast(ctx: &Context<'_>) -> rusqlite::Result<Value> {
    let ty = type_arg(ctx, 1)?;
    let v = from_ref(ctx.get_raw(0));
    let v = convert::coerce(v, ty).map_err(fail)?;
    Ok(convert::cut(v, ty))
}

/// One catalog attribute of a declared column type (`sys.columns`,
/// `INFORMATION_SCHEMA.COLUMNS`): `data_type`, `system_type_id`, `max_length`,
/// `precision`, `scale`, `collation_name`, `character_maximum_length`,
/// `character_octet_length`, `numeric_precision`, `numeric_scale`,
/// `datetime_precision`.
fn type_info(decl: &str, field: &str) -> Value {
    use super::types::Len;
    let Some(ty) = SqlType::parse_decl(decl, false) else {
        return Value::Null;
    };
    let int = |v: i64| Value::Int(v);
    let base = decl
        .split('(')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let (id, max_len, precision, scale): (i64, i64, i64, i64) = match ty {
        SqlType::TinyInt => (48, 1, 3, 0),
        SqlType::SmallInt => (52, 2, 5, 0),
        SqlType::Int => (56, 4, 10, 0),
        SqlType::BigInt => (127, 8, 19, 0),
        SqlType::Real => (59, 4, 24, 0),
        SqlType::Float => (62, 8, 53, 0),
        SqlType::Bit => (104, 1, 1, 0),
        SqlType::Decimal(p, s) => (
            if base == "numeric" { 108 } else { 106 },
            super::types::decimal_len(p) as i64,
            p as i64,
            s as i64,
        ),
        SqlType::Money => (60, 8, 19, 4),
        SqlType::SmallMoney => (122, 4, 10, 4),
        SqlType::NVarChar(Len::N(n)) => (231, 2 * n as i64, 0, 0),
        SqlType::NVarChar(Len::Max) => (231, -1, 0, 0),
        SqlType::VarChar(Len::N(n)) => (167, n as i64, 0, 0),
        SqlType::VarChar(Len::Max) => (167, -1, 0, 0),
        SqlType::NChar(n) => (239, 2 * n as i64, 0, 0),
        SqlType::Char(n) => (175, n as i64, 0, 0),
        SqlType::VarBinary(Len::N(n)) => (165, n as i64, 0, 0),
        SqlType::VarBinary(Len::Max) => (165, -1, 0, 0),
        SqlType::Binary(n) => (173, n as i64, 0, 0),
        SqlType::UniqueIdentifier => (36, 16, 0, 0),
        SqlType::Date => (40, 3, 10, 0),
        SqlType::Time(s) => (41, 5, 16, s as i64),
        SqlType::DateTime2(s) => (42, 8, 27, s as i64),
        SqlType::DateTimeOffset(s) => (43, 10, 34, s as i64),
        SqlType::DateTime => (61, 8, 23, 3),
        SqlType::SmallDateTime => (58, 4, 16, 0),
        SqlType::Xml => (241, -1, 0, 0),
    };
    let is_date = matches!(
        ty,
        SqlType::Date
            | SqlType::Time(_)
            | SqlType::DateTime2(_)
            | SqlType::DateTimeOffset(_)
            | SqlType::DateTime
            | SqlType::SmallDateTime
    );
    let is_num = precision > 0 && !is_date;
    let is_char = matches!(
        ty,
        SqlType::NVarChar(_) | SqlType::VarChar(_) | SqlType::NChar(_) | SqlType::Char(_)
    );
    let is_bin = matches!(ty, SqlType::VarBinary(_) | SqlType::Binary(_));
    let chars = if max_len < 0 {
        -1
    } else if matches!(ty, SqlType::NVarChar(_) | SqlType::NChar(_)) {
        max_len / 2
    } else {
        max_len
    };
    match field {
        "data_type" => Value::Text(match ty {
            SqlType::Decimal(..) if base == "numeric" => "numeric".into(),
            SqlType::Decimal(..) => "decimal".into(),
            other => other.name().into(),
        }),
        "system_type_id" => int(id),
        "max_length" => int(max_len),
        "precision" => int(precision),
        "scale" => int(scale),
        "collation_name" if is_char => Value::Text("SQL_Latin1_General_CP1_CI_AS".into()),
        "character_maximum_length" if is_char || is_bin => int(chars),
        "character_octet_length" if is_char || is_bin => int(max_len),
        "numeric_precision" if is_num => int(precision),
        "numeric_scale" if is_num => int(scale),
        "datetime_precision" if is_date => int(if ty == SqlType::Date { 0 } else { scale }),
        _ => Value::Null,
    }
}

/// Registers the functions on a connection.
pub(crate) fn register(conn: &Connection) -> rusqlite::Result<()> {
    let pure = FunctionFlags::SQLITE_UTF8
        | FunctionFlags::SQLITE_DETERMINISTIC
        | FunctionFlags::SQLITE_INNOCUOUS;
    conn.create_scalar_function("tk_cast", 2, pure, |ctx| cast(ctx))?;
    conn.create_scalar_function("tk_try_cast", 2, pure, |ctx| {
        Ok(cast(ctx).unwrap_or(Value::Null))
    })?;
    // tk_col(value, type, table, column): 1, or the error SQL Server gives when a value
    // does not convert to the column's type or is longer than its declared length.
    conn.create_scalar_function("tk_col", 4, pure, |ctx| {
        let v = from_ref(ctx.get_raw(0));
        if v == Value::Null {
            return Ok(1i64);
        }
        let ty = type_arg(ctx, 1)?;
        let table: String = ctx.get(2)?;
        let column: String = ctx.get(3)?;
        let v = convert::coerce(v, ty).map_err(fail)?;
        convert::check_length(&v, ty, &table, &column).map_err(fail)?;
        Ok(1i64)
    })?;
    conn.create_scalar_function("tk_type_info", 2, pure, |ctx| {
        let decl: Option<String> = ctx.get(0)?;
        let field: String = ctx.get(1)?;
        Ok(type_info(decl.as_deref().unwrap_or_default(), &field))
    })?;
    conn.create_scalar_function(
        "tk_newid",
        0,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_INNOCUOUS,
        |_| {
            let mut g = fastrand::u128(..).to_be_bytes();
            g[6] = (g[6] & 0x0F) | 0x40; // version 4
            g[8] = (g[8] & 0x3F) | 0x80; // RFC 4122 variant
            Ok(convert::format_guid(&g))
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        register(&c).unwrap();
        c
    }

    #[test]
    fn cast_and_errors() {
        let c = conn();
        let s: String = c
            .query_row(
                "SELECT tk_cast('2024-02-29 13:45:56.1234567', 'DATETIME2')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(s, "2024-02-29 13:45:56.1234567");
        let e = c
            .query_row("SELECT tk_cast('x', 'DATE')", [], |r| r.get::<_, String>(0))
            .unwrap_err();
        assert_eq!(decode_error(&e.to_string()).unwrap().number, 241);
        let n: Option<i64> = c
            .query_row("SELECT tk_try_cast('x', 'INT')", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, None);
        let g: String = c.query_row("SELECT tk_newid()", [], |r| r.get(0)).unwrap();
        assert!(convert::parse_guid(&g).is_some());
        assert_eq!(g, g.to_uppercase());
    }

    #[test]
    fn column_check_enforces_length() {
        let c = conn();
        c.execute_batch(
            "CREATE TABLE t (n NVARCHAR(3) CHECK (tk_col(n, 'NVARCHAR(3)', 'db.dbo.t', 'n')))",
        )
        .unwrap();
        c.execute("INSERT INTO t VALUES ('abc')", []).unwrap();
        let e = c.execute("INSERT INTO t VALUES ('abcd')", []).unwrap_err();
        let spec = decode_error(&e.to_string()).unwrap();
        assert_eq!(spec.number, 2628);
        assert!(spec.message.ends_with("Truncated value: 'abc'."));
    }
}
