//! Running translated statements on SQLite: parameter binding, result-set typing and
//! the mapping of SQLite errors onto SQL Server error numbers.

use super::errors::ErrorSpec;
use super::rpc::Param;
use super::translate::Kind;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::Duration;

/// A SQL value (parameters and result cells).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Value::Float(f) => ToSqlOutput::Borrowed(ValueRef::Real(*f)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

/// Column type on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColType {
    /// INTN of 1, 2, 4 or 8 bytes.
    Int(u8),
    /// FLTN of 4 or 8 bytes.
    Float(u8),
    /// BITN.
    Bit,
    /// NVARCHAR(n), n ≤ 4000 characters.
    NVarChar(u16),
    /// NVARCHAR(MAX), sent as PLP.
    NVarCharMax,
    /// VARBINARY(n), n ≤ 8000.
    VarBinary(u16),
    /// VARBINARY(MAX), sent as PLP.
    VarBinaryMax,
}

/// A result-set column.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Column {
    pub name: String,
    pub ty: ColType,
}

/// A materialised result set.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ResultSet {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Value>>,
}

/// The outcome of one statement.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub result: Option<ResultSet>,
    pub changes: u64,
}

/// Why a statement failed.
#[derive(Debug)]
pub(crate) enum SqlError {
    /// A SQL Server–style error to report.
    Error(ErrorSpec),
    /// SQLite was busy (a lock held by another session) past the busy timeout.
    Busy,
    /// Interrupted (attention, kill, shutdown).
    Interrupted,
}

/// Opens a session's connection to the shared database file.
pub(crate) fn open(path: &Path, busy_timeout: Duration) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(busy_timeout)?;
    conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")?;
    Ok(conn)
}

/// Prepares the database file once (WAL so readers never block the writer).
pub(crate) fn init(path: &Path) -> rusqlite::Result<()> {
    let conn = Connection::open(path)?;
    let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    Ok(())
}

/// Runs one translated statement with the request's parameters.
pub(crate) fn run(
    conn: &Connection,
    sql: &str,
    params: &[Param],
    kind: Kind,
    database: &str,
) -> Result<Outcome, SqlError> {
    let map = |e: rusqlite::Error| map_error(&e, kind, database);
    let mut stmt = conn.prepare(sql).map_err(map)?;
    for i in 1..=stmt.parameter_count() {
        let name = stmt.parameter_name(i).unwrap_or("?").to_string();
        let value = params
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(&name))
            .map(|p| &p.value)
            .ok_or_else(|| {
                SqlError::Error(ErrorSpec::new(
                    137,
                    15,
                    format!("Must declare the scalar variable \"{name}\"."),
                ))
            })?;
        stmt.raw_bind_parameter(i, value).map_err(map)?;
    }
    let ncols = stmt.column_count();
    if ncols == 0 {
        stmt.raw_execute().map_err(map)?;
        let changes = if kind.counts() { conn.changes() } else { 0 };
        return Ok(Outcome {
            result: None,
            changes,
        });
    }
    let meta: Vec<(String, Option<String>)> = stmt
        .columns()
        .map(|c| (c.name().to_string(), c.decl_type().map(str::to_string)))
        .collect();
    let mut rows = Vec::new();
    {
        let mut q = stmt.raw_query();
        while let Some(row) = q.next().map_err(map)? {
            let mut vals = Vec::with_capacity(ncols);
            for i in 0..ncols {
                vals.push(match row.get_ref(i).map_err(map)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(v) => Value::Int(v),
                    ValueRef::Real(v) => Value::Float(v),
                    ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Value::Blob(b.to_vec()),
                });
            }
            rows.push(vals);
        }
    }
    let columns = type_columns(&meta, &mut rows, sql)?;
    Ok(Outcome {
        changes: rows.len() as u64,
        result: Some(ResultSet { columns, rows }),
    })
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_' || c == '@' || c == '#')
        && chars.all(|c| c.is_alphanumeric() || c == '_' || c == '@' || c == '#' || c == '$')
}

/// Chooses wire types from declared types (or, for expressions, from the values) and
/// converts the values to them.
fn type_columns(
    meta: &[(String, Option<String>)],
    rows: &mut [Vec<Value>],
    sql: &str,
) -> Result<Vec<Column>, SqlError> {
    let mut cols = Vec::with_capacity(meta.len());
    for (idx, (name, decl)) in meta.iter().enumerate() {
        let values = rows.iter().map(|r| &r[idx]);
        let ty = match decl {
            Some(d) => from_decl(d, values),
            None => from_values(values),
        };
        // Unaliased expressions have no name in SQL Server.
        let name = if decl.is_none()
            && !is_identifier(name)
            && !sql.contains(&format!("\"{}\"", name.replace('"', "\"\"")))
        {
            String::new()
        } else {
            name.clone()
        };
        for row in rows.iter_mut() {
            let v = std::mem::replace(&mut row[idx], Value::Null);
            row[idx] = convert(v, ty)?;
        }
        cols.push(Column { name, ty });
    }
    Ok(cols)
}

fn fits_i32(v: &Value) -> bool {
    match v {
        Value::Int(i) => i32::try_from(*i).is_ok(),
        Value::Text(t) => t.trim().parse::<i32>().is_ok(),
        _ => true,
    }
}

fn decl_len(d: &str) -> Option<u32> {
    let open = d.find('(')?;
    let close = d[open..].find(')')? + open;
    d[open + 1..close].split(',').next()?.trim().parse().ok()
}

fn from_decl<'a>(decl: &str, mut values: impl Iterator<Item = &'a Value> + Clone) -> ColType {
    let d: String = decl.to_ascii_uppercase().split_whitespace().collect();
    let base = d.split('(').next().unwrap_or_default();
    match base {
        "BIT" => ColType::Bit,
        "TINYINT" => ColType::Int(1),
        "SMALLINT" => ColType::Int(2),
        "BIGINT" => ColType::Int(8),
        "INT" | "INTEGER" => {
            if values.all(fits_i32) {
                ColType::Int(4)
            } else {
                ColType::Int(8)
            }
        }
        "REAL" => ColType::Float(4),
        "FLOAT" | "DOUBLE" | "DOUBLEPRECISION" | "DECIMAL" | "NUMERIC" | "MONEY" | "SMALLMONEY" => {
            ColType::Float(8)
        }
        "BINARY" | "VARBINARY" | "BLOB" | "IMAGE" | "ROWVERSION" | "TIMESTAMP" => {
            match decl_len(&d) {
                Some(n) if n <= 8000 => ColType::VarBinary(n.max(1) as u16),
                _ => ColType::VarBinaryMax,
            }
        }
        "NVARCHAR" | "VARCHAR" | "NCHAR" | "CHAR" | "CHARACTER" | "NATIONALCHARACTER" => {
            match decl_len(&d) {
                // SQLite does not enforce the length; a longer stored value widens the
                // column rather than being cut.
                Some(n) if n <= 4000 => match longest_text(values) {
                    l if l <= n as usize => ColType::NVarChar(n.max(1) as u16),
                    l if l <= 4000 => ColType::NVarChar(4000),
                    _ => ColType::NVarCharMax,
                },
                Some(_) => ColType::NVarCharMax,
                None if base.starts_with('N') || base == "CHAR" => {
                    ColType::NVarChar(1.max(max_chars(values) as u16))
                }
                None => ColType::NVarChar(1),
            }
        }
        "TEXT" | "NTEXT" | "CLOB" | "XML" => ColType::NVarCharMax,
        "DATE" | "TIME" | "DATETIME" | "DATETIME2" | "SMALLDATETIME" | "DATETIMEOFFSET"
        | "UNIQUEIDENTIFIER" => ColType::NVarChar(64),
        _ => from_values(values),
    }
}

fn longest_text<'a>(values: impl Iterator<Item = &'a Value>) -> usize {
    values
        .map(|v| match v {
            Value::Text(t) => t.encode_utf16().count(),
            Value::Int(_) | Value::Float(_) => 24,
            Value::Blob(b) => b.len(),
            Value::Null => 0,
        })
        .max()
        .unwrap_or(0)
}

fn max_chars<'a>(values: impl Iterator<Item = &'a Value>) -> usize {
    values
        .map(|v| match v {
            Value::Text(t) => t.encode_utf16().count(),
            _ => 30,
        })
        .max()
        .unwrap_or(1)
        .min(4000)
}

fn from_values<'a>(values: impl Iterator<Item = &'a Value> + Clone) -> ColType {
    let (mut ints, mut floats, mut texts, mut blobs) = (false, false, false, false);
    let mut wide = false;
    let mut long_text = false;
    let mut long_blob = false;
    for v in values {
        match v {
            Value::Null => {}
            Value::Int(i) => {
                ints = true;
                wide |= i32::try_from(*i).is_err();
            }
            Value::Float(_) => floats = true,
            Value::Text(t) => {
                texts = true;
                long_text |= t.len() > 4000 && t.encode_utf16().count() > 4000;
            }
            Value::Blob(b) => {
                blobs = true;
                long_blob |= b.len() > 8000;
            }
        }
    }
    if texts {
        if long_text {
            ColType::NVarCharMax
        } else {
            ColType::NVarChar(4000)
        }
    } else if blobs {
        if long_blob {
            ColType::VarBinaryMax
        } else {
            ColType::VarBinary(8000)
        }
    } else if floats {
        ColType::Float(8)
    } else if ints && wide {
        ColType::Int(8)
    } else {
        ColType::Int(4)
    }
}

fn conversion_failed(v: &Value, to: &str) -> SqlError {
    let shown = match v {
        Value::Text(t) => t.clone(),
        Value::Float(f) => f.to_string(),
        Value::Int(i) => i.to_string(),
        _ => String::new(),
    };
    SqlError::Error(ErrorSpec::new(
        245,
        16,
        format!(
            "Conversion failed when converting the nvarchar value '{shown}' to data type {to}."
        ),
    ))
}

fn convert(v: Value, ty: ColType) -> Result<Value, SqlError> {
    Ok(match (ty, v) {
        (_, Value::Null) => Value::Null,
        (ColType::Int(_), Value::Int(i)) => Value::Int(i),
        (ColType::Int(_), Value::Float(f)) => Value::Int(f.trunc() as i64),
        (ColType::Int(_), v @ Value::Text(_)) => match &v {
            Value::Text(t) => match t.trim().parse::<i64>() {
                Ok(i) => Value::Int(i),
                Err(_) => return Err(conversion_failed(&v, "int")),
            },
            _ => Value::Null,
        },
        (ColType::Float(_), Value::Float(f)) => Value::Float(f),
        (ColType::Float(_), Value::Int(i)) => Value::Float(i as f64),
        (ColType::Float(_), v @ Value::Text(_)) => match &v {
            Value::Text(t) => match t.trim().parse::<f64>() {
                Ok(f) => Value::Float(f),
                Err(_) => return Err(conversion_failed(&v, "float")),
            },
            _ => Value::Null,
        },
        (ColType::Bit, Value::Int(i)) => Value::Int((i != 0) as i64),
        (ColType::Bit, Value::Float(f)) => Value::Int((f != 0.0) as i64),
        (ColType::Bit, v @ Value::Text(_)) => match &v {
            Value::Text(t) if t.eq_ignore_ascii_case("true") => Value::Int(1),
            Value::Text(t) if t.eq_ignore_ascii_case("false") => Value::Int(0),
            Value::Text(t) => match t.trim().parse::<i64>() {
                Ok(i) => Value::Int((i != 0) as i64),
                Err(_) => return Err(conversion_failed(&v, "bit")),
            },
            _ => Value::Null,
        },
        (ColType::NVarChar(_) | ColType::NVarCharMax, Value::Text(t)) => Value::Text(t),
        (ColType::NVarChar(_) | ColType::NVarCharMax, Value::Int(i)) => Value::Text(i.to_string()),
        (ColType::NVarChar(_) | ColType::NVarCharMax, Value::Float(f)) => {
            Value::Text(f.to_string())
        }
        (ColType::NVarChar(_) | ColType::NVarCharMax, Value::Blob(b)) => {
            Value::Text(String::from_utf8_lossy(&b).into_owned())
        }
        (ColType::VarBinary(_) | ColType::VarBinaryMax, Value::Blob(b)) => Value::Blob(b),
        (ColType::VarBinary(_) | ColType::VarBinaryMax, Value::Text(t)) => {
            Value::Blob(t.into_bytes())
        }
        (ColType::VarBinary(_) | ColType::VarBinaryMax, Value::Int(i)) => {
            Value::Blob(i.to_be_bytes().to_vec())
        }
        (ColType::VarBinary(_) | ColType::VarBinaryMax, Value::Float(f)) => {
            Value::Blob(f.to_be_bytes().to_vec())
        }
        (_, Value::Blob(_)) => {
            return Err(SqlError::Error(ErrorSpec::new(
                206,
                16,
                "Operand type clash: varbinary is incompatible with the column type.",
            )))
        }
    }
    .clamp_text(ty))
}

trait ClampText {
    fn clamp_text(self, ty: ColType) -> Value;
}

impl ClampText for Value {
    /// Text longer than an NVARCHAR(n) column is cut, as SQL Server would have refused
    /// to store it in the first place.
    fn clamp_text(self, ty: ColType) -> Value {
        match (ty, self) {
            (ColType::NVarChar(n), Value::Text(t)) if t.encode_utf16().count() > n as usize => {
                let units: Vec<u16> = t.encode_utf16().take(n as usize).collect();
                Value::Text(String::from_utf16_lossy(&units))
            }
            (ColType::VarBinary(n), Value::Blob(mut b)) if b.len() > n as usize => {
                b.truncate(n as usize);
                Value::Blob(b)
            }
            (_, v) => v,
        }
    }
}

/// The text after `prefix`, without the " in <sql> at offset N" context that newer
/// SQLite versions append.
fn after<'a>(msg: &'a str, prefix: &str) -> Option<&'a str> {
    msg.find(prefix)
        .map(|i| strip_context(msg[i + prefix.len()..].trim()))
}

fn strip_context(s: &str) -> &str {
    match s.find(" in ") {
        Some(i) => &s[..i],
        None => s,
    }
}

/// Maps a SQLite error onto the SQL Server error a client would see.
pub(crate) fn map_error(e: &rusqlite::Error, kind: Kind, database: &str) -> SqlError {
    use rusqlite::ErrorCode;
    let (code, ext, msg) = match e {
        rusqlite::Error::SqliteFailure(f, m) => (
            Some(f.code),
            f.extended_code,
            m.clone().unwrap_or_else(|| f.to_string()),
        ),
        other => (None, 0, other.to_string()),
    };
    match code {
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => return SqlError::Busy,
        Some(ErrorCode::OperationInterrupted) => return SqlError::Interrupted,
        Some(ErrorCode::ReadOnly) => return SqlError::Error(ErrorSpec::read_only(database)),
        _ => {}
    }
    let verb = kind.verb();
    let err = |n: u32, class: u8, m: String| SqlError::Error(ErrorSpec::new(n, class, m));
    let split_tc = |s: &str| -> (String, String) {
        let first = s.split(',').next().unwrap_or_default().trim();
        match first.split_once('.') {
            Some((t, c)) => (t.to_string(), c.to_string()),
            None => (first.to_string(), first.to_string()),
        }
    };
    if let Some(rest) = after(&msg, "UNIQUE constraint failed:") {
        let (t, c) = split_tc(rest);
        return if ext == 1555 {
            err(2627, 14, format!("Violation of PRIMARY KEY constraint 'PK_{t}'. Cannot insert duplicate key in object 'dbo.{t}'."))
        } else {
            err(2627, 14, format!("Violation of UNIQUE KEY constraint 'UQ_{t}_{c}'. Cannot insert duplicate key in object 'dbo.{t}'."))
        };
    }
    if let Some(rest) = after(&msg, "NOT NULL constraint failed:") {
        let (t, c) = split_tc(rest);
        return err(515, 16, format!("Cannot insert the value NULL into column '{c}', table '{database}.dbo.{t}'; column does not allow nulls. {verb} fails."));
    }
    if msg.contains("FOREIGN KEY constraint failed") {
        return err(547, 16, format!("The {verb} statement conflicted with the FOREIGN KEY constraint. The conflict occurred in database \"{database}\"."));
    }
    if let Some(rest) = after(&msg, "CHECK constraint failed:") {
        return err(547, 16, format!("The {verb} statement conflicted with the CHECK constraint \"{rest}\". The conflict occurred in database \"{database}\"."));
    }
    if let Some(rest) = after(&msg, "no such table:") {
        let name = rest.rsplit('.').next().unwrap_or(rest);
        if kind == Kind::Drop {
            return err(3701, 11, format!("Cannot drop the table '{name}', because it does not exist or you do not have permission."));
        }
        return err(208, 16, format!("Invalid object name '{name}'."));
    }
    if let Some(rest) = after(&msg, "no such column:") {
        let name = rest.rsplit('.').next().unwrap_or(rest);
        return err(207, 16, format!("Invalid column name '{name}'."));
    }
    if let Some(rest) = after(&msg, "no such function:") {
        return err(
            195,
            15,
            format!("'{rest}' is not a recognized built-in function name."),
        );
    }
    if let Some(rest) = after(&msg, "no such index:") {
        return err(3701, 11, format!("Cannot drop the index '{rest}', because it does not exist or you do not have permission."));
    }
    if let (Some(rest), Some(end)) = (msg.strip_prefix("table "), msg.find(" already exists")) {
        let name = rest
            .get(..end.saturating_sub(6))
            .unwrap_or(rest)
            .trim_matches('"');
        return err(
            2714,
            16,
            format!("There is already an object named '{name}' in the database."),
        );
    }
    if let (Some(rest), Some(end)) = (msg.strip_prefix("index "), msg.find(" already exists")) {
        let name = rest
            .get(..end.saturating_sub(6))
            .unwrap_or(rest)
            .trim_matches('"');
        return err(1913, 16, format!("The operation failed because an index or statistics with name '{name}' already exists."));
    }
    if let Some(i) = msg.find(": syntax error") {
        let near = msg[..i].trim_start_matches("near ").trim_matches('"');
        return err(102, 15, format!("Incorrect syntax near '{near}'."));
    }
    if msg.contains("incomplete input") {
        return err(
            102,
            15,
            "Incorrect syntax near the end of the batch.".into(),
        );
    }
    if msg.contains("datatype mismatch") {
        return err(
            245,
            16,
            "Conversion failed when converting a value to the column's data type.".into(),
        );
    }
    err(50000, 16, format!("SQLite: {msg}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, n NVARCHAR(10) NOT NULL, b BIT, f FLOAT, big BIGINT)",
        )
        .unwrap();
        c
    }

    fn spec(r: Result<Outcome, SqlError>) -> ErrorSpec {
        match r {
            Err(SqlError::Error(e)) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn types_follow_declarations() {
        let c = db();
        c.execute_batch("INSERT INTO t (n, b, f, big) VALUES ('x', 1, 1.5, 5)")
            .unwrap();
        let out = run(
            &c,
            "SELECT id, n, b, f, big, 1 + 1, 'a' AS s FROM t",
            &[],
            Kind::Select,
            "d",
        )
        .unwrap();
        let rs = out.result.unwrap();
        let tys: Vec<ColType> = rs.columns.iter().map(|c| c.ty).collect();
        assert_eq!(
            tys,
            vec![
                ColType::Int(4),
                ColType::NVarChar(10),
                ColType::Bit,
                ColType::Float(8),
                ColType::Int(8),
                ColType::Int(4),
                ColType::NVarChar(4000)
            ]
        );
        assert_eq!(rs.columns[5].name, "");
        assert_eq!(rs.columns[6].name, "s");
    }

    #[test]
    fn over_long_text_widens_the_column() {
        let c = db();
        c.execute_batch("INSERT INTO t (n) VALUES ('0123456789abcdef')")
            .unwrap();
        let rs = run(&c, "SELECT n FROM t", &[], Kind::Select, "d")
            .unwrap()
            .result
            .unwrap();
        assert_eq!(rs.columns[0].ty, ColType::NVarChar(4000));
        assert_eq!(rs.rows[0][0], Value::Text("0123456789abcdef".into()));
    }

    #[test]
    fn errors_map_to_sql_server_numbers() {
        let c = db();
        assert_eq!(
            spec(run(&c, "SELECT * FROM nope", &[], Kind::Select, "d")).number,
            208
        );
        assert_eq!(
            spec(run(&c, "SELECT nope FROM t", &[], Kind::Select, "d")).number,
            207
        );
        assert_eq!(spec(run(&c, "SELEC 1", &[], Kind::Other, "d")).number, 102);
        assert_eq!(
            spec(run(
                &c,
                "INSERT INTO t (n) VALUES (NULL)",
                &[],
                Kind::Insert,
                "d"
            ))
            .number,
            515
        );
        c.execute_batch("INSERT INTO t (id, n) VALUES (1, 'a')")
            .unwrap();
        assert_eq!(
            spec(run(
                &c,
                "INSERT INTO t (id, n) VALUES (1, 'a')",
                &[],
                Kind::Insert,
                "d"
            ))
            .number,
            2627
        );
        assert_eq!(
            spec(run(&c, "SELECT @P1", &[], Kind::Select, "d")).number,
            137
        );
    }
}
