//! Running translated statements on SQLite: parameter binding, result-set typing and
//! the mapping of SQLite errors onto SQL Server error numbers.

use super::convert;
use super::dec::Dec;
use super::errors::ErrorSpec;
use super::functions;
use super::hints::{self, Hint};
use super::rpc::Param;
use super::translate::Kind;
use super::types::{Len, SqlType};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::Duration;

/// A SQL value (parameters and result cells). The first five are SQLite's storage
/// shapes; the others are typed values from RPC parameters or converted for output.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    Blob(Vec<u8>),
    /// DECIMAL/NUMERIC/MONEY, exact.
    Dec(Dec),
    /// UNIQUEIDENTIFIER in canonical (printed) byte order.
    Guid([u8; 16]),
    /// DATE: days since 0001-01-01.
    Date(i32),
    /// TIME: 100 ns ticks since midnight.
    Time(u64),
    /// DATETIME2/DATETIME/SMALLDATETIME: days and 100 ns ticks.
    DateTime(i32, u64),
    /// DATETIMEOFFSET: local days and ticks, offset in minutes.
    DateTimeOffset(i32, u64, i16),
}

impl rusqlite::ToSql for Value {
    /// How a value is stored in SQLite: integers, floats, text and blobs as themselves;
    /// decimals as an integer when whole, a float when 15 significant digits hold them
    /// exactly, otherwise as their ASCII text in a blob (SQLite's NUMERIC affinity would
    /// round longer text to a float); GUIDs and dates/times as canonical text, which
    /// sorts in time order.
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        use rusqlite::types::Value as Owned;
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Value::Float(f) => ToSqlOutput::Borrowed(ValueRef::Real(*f)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            Value::Dec(d) => match d.trunc_i64() {
                Some(i) if d.is_integral() => ToSqlOutput::Owned(Owned::Integer(i)),
                _ if d.digits() <= 15 => ToSqlOutput::Owned(Owned::Real(d.to_f64())),
                _ => ToSqlOutput::Owned(Owned::Blob(d.to_string().into_bytes())),
            },
            other => ToSqlOutput::Owned(Owned::Text(convert::text_of(other).unwrap_or_default())),
        })
    }
}

/// Column type on the wire.
pub(crate) type ColType = SqlType;

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
    /// A write in a transaction whose read snapshot is older than the last commit
    /// (`SQLITE_BUSY_SNAPSHOT`): SQLite cannot move the snapshot forward inside the
    /// transaction. See [`fresh_snapshot`].
    StaleSnapshot,
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
    functions::register(&conn)?;
    Ok(conn)
}

/// Prepares the database file once (WAL so readers never block the writer).
pub(crate) fn init(path: &Path) -> rusqlite::Result<()> {
    let conn = Connection::open(path)?;
    let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    Ok(())
}

/// Takes the database's write lock for the open transaction now, waiting for another
/// session's write transaction as long as the busy timeout allows: what an `UPDLOCK`
/// (or `XLOCK`, `TABLOCKX`) read does in SQL Server, where a second session asking for
/// the same lock waits before it reads. Without it both sessions would read, and the one
/// writing second would fail on its stale snapshot — a deadlock SQL Server does not have.
/// SQLite has no "lock now" statement inside a transaction; writing the header's
/// `user_version` (which the testkit keeps at 0) is the smallest write there is.
pub(crate) fn lock_for_update(conn: &Connection, database: &str) -> Result<(), SqlError> {
    conn.execute_batch("PRAGMA user_version = 0")
        .map_err(|e| map_error(&e, Kind::Update, database))
}

/// Moves a transaction that has written nothing yet to a fresh read snapshot (ends the
/// SQLite transaction and begins another), so its first write sees the latest commit
/// as READ COMMITTED SNAPSHOT does (each statement reads the data committed when it
/// starts). Nothing is lost: the transaction holds no writes, in the main database or
/// in `tempdb`. `Ok(false)` when it has written (then a stale snapshot is a real
/// conflict, reported as a deadlock).
pub(crate) fn fresh_snapshot(conn: &Connection) -> rusqlite::Result<bool> {
    use rusqlite::{TransactionState, MAIN_DB, TEMP_DB};
    for db in [MAIN_DB, TEMP_DB] {
        if conn.transaction_state(Some(db))? == TransactionState::Write {
            return Ok(false);
        }
    }
    conn.execute_batch("ROLLBACK; BEGIN")?;
    Ok(true)
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
                vals.push(functions::from_ref(row.get_ref(i).map_err(map)?));
            }
            rows.push(vals);
        }
    }
    let columns = type_columns(&meta, &mut rows, sql, params)?;
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

/// Chooses wire types — the column's declared type, else the translation's hint, else
/// one inferred from the values — and converts the values to them.
fn type_columns(
    meta: &[(String, Option<String>)],
    rows: &mut [Vec<Value>],
    sql: &str,
    params: &[Param],
) -> Result<Vec<Column>, SqlError> {
    let hints = hints::decode(sql);
    let mut cols = Vec::with_capacity(meta.len());
    for (idx, (name, decl)) in meta.iter().enumerate() {
        let values = rows.iter().map(|r| &r[idx]);
        let declared = decl.as_deref().and_then(|d| SqlType::parse_decl(d, false));
        let hinted = hints
            .iter()
            .find(|(i, _)| *i == idx)
            .and_then(|(_, h)| match h {
                Hint::Param(p) => params
                    .iter()
                    .find(|x| x.name.eq_ignore_ascii_case(p))
                    .map(|x| x.ty),
                other => hints::fixed(other),
            });
        let ty = match (declared, hinted) {
            (Some(d), _) => widen(d, values),
            (None, Some(h)) => widen(h, values),
            (None, None) => from_values(values),
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
            let v = convert::coerce(v, ty).map_err(SqlError::Error)?;
            row[idx] = pad(v, ty);
        }
        cols.push(Column { name, ty });
    }
    Ok(cols)
}

/// NCHAR/CHAR values are blank-padded to their length, as SQL Server stores them.
fn pad(v: Value, ty: SqlType) -> Value {
    match (ty, v) {
        (SqlType::NChar(n), Value::Text(mut t)) => {
            let len = t.encode_utf16().count();
            t.extend(std::iter::repeat_n(' ', (n as usize).saturating_sub(len)));
            Value::Text(t)
        }
        (SqlType::Char(n), Value::Text(mut t)) => {
            let len = t.chars().count();
            t.extend(std::iter::repeat_n(' ', (n as usize).saturating_sub(len)));
            Value::Text(t)
        }
        (_, v) => v,
    }
}

fn fits_i32(v: &Value) -> bool {
    match v {
        Value::Int(i) => i32::try_from(*i).is_ok(),
        Value::Text(t) => t.trim().parse::<i32>().is_ok(),
        _ => true,
    }
}

fn text_units(v: &Value) -> usize {
    match v {
        Value::Text(t) => t.encode_utf16().count(),
        Value::Int(_) | Value::Float(_) => 24,
        Value::Blob(b) => b.len(),
        _ => 0,
    }
}

/// A declared type, widened where SQLite holds values SQL Server would have refused
/// (tables created before length checks, or written by other tools): an INT column
/// holding 64-bit values reads as BIGINT, a text column holding longer text as the
/// next wider type, rather than cutting or failing.
fn widen<'a>(ty: SqlType, mut values: impl Iterator<Item = &'a Value> + Clone) -> SqlType {
    match ty {
        SqlType::Int if !values.all(fits_i32) => SqlType::BigInt,
        SqlType::NVarChar(Len::N(n)) | SqlType::NChar(n) => {
            match values.map(text_units).max().unwrap_or(0) {
                l if l <= n as usize => ty,
                l if l <= 4000 => SqlType::NVarChar(Len::N(4000)),
                _ => SqlType::NVarChar(Len::Max),
            }
        }
        SqlType::VarChar(Len::N(n)) | SqlType::Char(n) => {
            match values.map(text_units).max().unwrap_or(0) {
                l if l <= n as usize => ty,
                l if l <= 8000 => SqlType::VarChar(Len::N(8000)),
                _ => SqlType::VarChar(Len::Max),
            }
        }
        SqlType::VarBinary(Len::N(n)) | SqlType::Binary(n) => {
            match values.map(text_units).max().unwrap_or(0) {
                l if l <= n as usize => ty,
                l if l <= 8000 => SqlType::VarBinary(Len::N(8000)),
                _ => SqlType::VarBinary(Len::Max),
            }
        }
        other => other,
    }
}

fn from_values<'a>(values: impl Iterator<Item = &'a Value> + Clone) -> SqlType {
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
            Value::Blob(b) => {
                blobs = true;
                long_blob |= b.len() > 8000;
            }
            other => {
                texts = true;
                let t = convert::text_of(other).unwrap_or_default();
                long_text |= t.len() > 4000 && t.encode_utf16().count() > 4000;
            }
        }
    }
    if texts {
        if long_text {
            SqlType::NVarChar(Len::Max)
        } else {
            SqlType::NVarChar(Len::N(4000))
        }
    } else if blobs {
        if long_blob {
            SqlType::VarBinary(Len::Max)
        } else {
            SqlType::VarBinary(Len::N(8000))
        }
    } else if floats {
        SqlType::Float
    } else if ints && wide {
        SqlType::BigInt
    } else {
        SqlType::Int
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
        Some(ErrorCode::DatabaseBusy) if ext == rusqlite::ffi::SQLITE_BUSY_SNAPSHOT => {
            return SqlError::StaleSnapshot
        }
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => return SqlError::Busy,
        Some(ErrorCode::OperationInterrupted) => return SqlError::Interrupted,
        Some(ErrorCode::ReadOnly) => return SqlError::Error(ErrorSpec::read_only(database)),
        _ => {}
    }
    if let Some(spec) = functions::decode_error(&msg) {
        return SqlError::Error(spec);
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
        functions::register(&c).unwrap();
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
                SqlType::Int,
                SqlType::NVarChar(Len::N(10)),
                SqlType::Bit,
                SqlType::Float,
                SqlType::BigInt,
                SqlType::Int,
                SqlType::NVarChar(Len::N(4000))
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
        assert_eq!(rs.columns[0].ty, SqlType::NVarChar(Len::N(4000)));
        assert_eq!(rs.rows[0][0], Value::Text("0123456789abcdef".into()));
    }

    #[test]
    fn a_column_added_later_converts_like_a_created_one() {
        use crate::tds::translate::{action, tokenize, Action, Ctx};
        let c = db();
        let ctx = Ctx::in_database("d");
        let exec = |sql: &str| match action(&tokenize(sql).unwrap(), &ctx) {
            Action::Sql { sql, kind } => run(&c, &sql, &[], kind, "d"),
            other => panic!("{other:?}"),
        };
        exec("ALTER TABLE t ADD c TIME").unwrap();
        // Text that is no time (and ends in a multibyte character): 241, not a panic.
        let e = spec(exec("INSERT t (n, c) VALUES (N'x', N'12:00€')"));
        assert_eq!(e.number, 241);
        exec("INSERT t (n, c) VALUES (N'y', N'12:00')").unwrap();
        let rs = exec("SELECT c FROM t").unwrap().result.unwrap();
        assert_eq!(rs.columns[0].ty, SqlType::Time(7));
        assert_eq!(rs.rows, vec![vec![Value::Time(12 * 3600 * 10_000_000)]]);
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
