//! Idempotency keys: a write that is safe to retry even after an ambiguous failure.
//!
//! A non-idempotent write whose connection breaks after it was sent has an *unknown*
//! outcome: retrying may apply it twice, not retrying may lose it. An idempotency key
//! removes the doubt. The write and a row in a dedupe table commit in **one
//! transaction**; a retry with the same key finds the row and returns the recorded outcome
//! instead of writing again. So the request can be marked idempotent, and the retry and
//! failover layers may re-send it.
//!
//! The whole guarded write is **one request** (one round trip), so its transaction holds
//! locks only while the server runs it, never across network round trips: on a slow path
//! (a second per round trip) a guarded write costs what a plain write costs.
//!
//! ```text
//! SET XACT_ABORT ON                         -- any error rolls back the whole unit
//! BEGIN TRANSACTION
//! IF EXISTS (SELECT 1 FROM <table> WITH (UPDLOCK, HOLDLOCK) WHERE idempotency_key = @k)
//!   SELECT rows_affected, 1 AS replayed FROM <table> WHERE idempotency_key = @k
//! ELSE BEGIN
//!   <the write>
//!   INSERT INTO <table> (idempotency_key, operation, rows_affected) VALUES (@k, @op, @@ROWCOUNT)
//!   SELECT rows_affected, 0 AS replayed FROM <table> WHERE idempotency_key = @k
//! END
//! COMMIT
//! SELECT @@TRANCOUNT                        -- proves the session is clean for the pool
//! ```
//!
//! `@k` and `@op` are appended after the write's own parameters (`@P1`…`@Pn` stay as the
//! caller wrote them). The request goes as `sp_executesql`, so `SET XACT_ABORT ON` lasts
//! for this request only (SQL Server restores SET options when dynamic SQL returns).
//!
//! If two attempts race (the first still running on a connection the client gave up on),
//! the `UPDLOCK, HOLDLOCK` read takes a key-range lock, so the second blocks until the
//! first ends and then either sees the committed row or, if the first rolled back, writes.
//! A primary-key violation (2627/2601) rolls the attempt back; if the key is then found
//! recorded, the other attempt wrote first and its outcome is returned, otherwise the
//! violation was the write's own and is returned as the error. Create the table once with
//! [`create_table_sql`] (e.g. in a migration).
//!
//! The recorded (and returned) row count is `@@ROWCOUNT` after the write: the count of
//! the write's **last** statement when it has several.
//!
//! Keys must be unique per logical operation (e.g. the API request's idempotency key, or
//! a client-generated UUID) and kept as long as a retry may arrive; deleting old rows is
//! the application's job.

use std::sync::Arc;

use crate::error::Error;
use crate::request::RequestContext;
use crate::sql::{
    batch, check_params, Client, Param, SqlRequest, SqlResponse, UnitOfWork, WireStatement,
    WorkFuture,
};

/// The default dedupe table name.
pub const DEFAULT_TABLE: &str = "mssql_resilience_idempotency";

/// The longest key accepted (the column is `NVARCHAR(200)`).
pub const MAX_KEY_LEN: usize = 200;

/// DDL for the dedupe table, in the T-SQL subset both SQL Server and the testkit accept.
pub fn create_table_sql(table: &str) -> String {
    format!(
        "CREATE TABLE {table} (\
         idempotency_key NVARCHAR(200) NOT NULL PRIMARY KEY, \
         operation NVARCHAR(200) NOT NULL, \
         rows_affected BIGINT NOT NULL)"
    )
}

/// The same DDL guarded by `OBJECT_ID`, so it can run at every start.
pub fn create_table_if_missing_sql(table: &str) -> String {
    format!(
        "IF OBJECT_ID('{table}') IS NULL {}",
        create_table_sql(table)
    )
}

/// Creates the dedupe table (through the stack, so in the writable region; geo-replication
/// carries it to the others) unless it exists. Safe to call at every start.
pub async fn ensure_table(stack: &crate::Stack, table: &str) -> Result<(), Error> {
    if table.is_empty()
        || !table
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    {
        return Err(Error::new(
            crate::error::ErrorKind::Other,
            crate::error::Outcome::NotSent,
        )
        .with_source(InvalidKey(format!(
            "invalid idempotency table name {table:?}: use letters, digits, '_' and '.'"
        ))));
    }
    stack
        .call(SqlRequest::execute(
            RequestContext::write("create_idempotency_table"),
            create_table_if_missing_sql(table),
            [],
        ))
        .await
        .map(|_| ())
}

/// A write guarded by an idempotency key. Build with [`idempotent_execute`].
#[derive(Clone)]
struct IdempotentWrite {
    table: Arc<str>,
    key: Arc<str>,
    operation: Arc<str>,
    sql: Arc<str>,
    params: Arc<[Param]>,
}

/// Errors from [`idempotent_execute`]'s arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidKey(String);

impl std::fmt::Display for InvalidKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidKey {}

/// A write (`sql` with `params`) that runs at most once per `key`, recorded in `table`.
///
/// The returned request is marked idempotent, so ambiguous failures are retried and may
/// fail over. Its response has `rows_affected` of the write — recorded, when replayed —
/// and [`SqlResponse::replayed`] tells which. Rejects an empty key, a key over
/// [`MAX_KEY_LEN`] characters and a table name that is not a plain identifier.
pub fn idempotent_execute(
    context: RequestContext,
    table: &str,
    key: impl Into<String>,
    sql: impl Into<Arc<str>>,
    params: impl IntoIterator<Item = Param>,
) -> Result<SqlRequest, InvalidKey> {
    let key = key.into();
    if key.is_empty() || key.chars().count() > MAX_KEY_LEN {
        return Err(InvalidKey(format!(
            "invalid idempotency key of {} characters: must be 1 to {MAX_KEY_LEN}",
            key.chars().count()
        )));
    }
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    };
    if !plain(table) {
        return Err(InvalidKey(format!(
            "invalid idempotency table name {table:?}: use letters, digits, '_' and '.'"
        )));
    }
    let params: Arc<[Param]> = params.into_iter().collect();
    let write = IdempotentWrite {
        table: table.into(),
        key: key.into(),
        operation: context.operation().into(),
        sql: sql.into(),
        params,
    };
    Ok(SqlRequest::checked_unit_of_work(
        context.idempotent(true),
        write,
    ))
}

impl UnitOfWork for IdempotentWrite {
    fn run<'a>(&'a self, client: &'a mut Client) -> WorkFuture<'a> {
        Box::pin(async move {
            // Refused before anything is sent, naming the parameter.
            check_params(&self.params).map_err(|e| {
                Error::new(
                    crate::error::ErrorKind::Conversion,
                    crate::error::Outcome::NotSent,
                )
                .with_source(e)
            })?;
            let sql = guarded_sql(&self.table, &self.sql, self.params.len());
            let mut params: Vec<Param> = Vec::with_capacity(self.params.len() + 2);
            params.extend(self.params.iter().cloned());
            params.push(Param::from(self.key.as_ref()));
            params.push(Param::from(self.operation.as_ref()));
            let statement = WireStatement::new(&sql, &params);
            let answer = match client
                .query(statement.sql.as_ref(), &statement.params())
                .await
            {
                Ok(stream) => stream.into_results().await,
                Err(e) => Err(e),
            };
            match answer {
                Ok(results) => match outcome(&results) {
                    Some((rows, replayed, 0)) if replayed => Ok(replay(rows)),
                    Some((rows, _, 0)) => Ok(SqlResponse {
                        rows_affected: vec![rows],
                        ..SqlResponse::default()
                    }),
                    // The write began a transaction of its own and left it open, so our
                    // COMMIT only closed the inner level: nothing is committed yet. Roll
                    // it all back and say so (the pool discards the connection anyway).
                    Some((_, _, open)) => {
                        batch(client, "ROLLBACK TRANSACTION").await?;
                        Err(Error::new(
                            crate::error::ErrorKind::Other,
                            crate::error::Outcome::Rejected,
                        )
                        .with_source(std::io::Error::other(format!(
                            "the idempotent write left {open} transaction(s) open; it was rolled back"
                        ))))
                    }
                    // No error came back, yet no outcome row: whether it committed is
                    // unknown (a retry of this idempotent request finds out).
                    None => Err(Error::new(
                        crate::error::ErrorKind::Other,
                        crate::error::Outcome::Ambiguous,
                    )
                    .with_source(NoOutcomeRow)),
                },
                Err(e) if e.code() == Some(2627) || e.code() == Some(2601) => {
                    // Rolled back (XACT_ABORT). Another attempt with this key may have
                    // committed first: then its outcome is this request's outcome.
                    match self.recorded(client).await? {
                        Some(recorded) => Ok(replay(recorded)),
                        None => Err(e.into()),
                    }
                }
                Err(e) => Err(e.into()),
            }
        })
    }
}

/// The one-request guarded write (see the module docs); `n` is the write's parameter count.
fn guarded_sql(table: &str, write: &str, n: usize) -> String {
    let key = n + 1;
    let operation = n + 2;
    let write = write.trim_end().trim_end_matches(';');
    format!(
        "SET XACT_ABORT ON;\n\
         BEGIN TRANSACTION;\n\
         IF EXISTS (SELECT 1 FROM {table} WITH (UPDLOCK, HOLDLOCK) WHERE idempotency_key = @P{key})\n\
         SELECT rows_affected, CAST(1 AS BIT) AS replayed FROM {table} WHERE idempotency_key = @P{key};\n\
         ELSE\n\
         BEGIN\n\
         {write}\n;\n\
         INSERT INTO {table} (idempotency_key, operation, rows_affected) VALUES (@P{key}, @P{operation}, @@ROWCOUNT);\n\
         SELECT rows_affected, CAST(0 AS BIT) AS replayed FROM {table} WHERE idempotency_key = @P{key};\n\
         END;\n\
         COMMIT TRANSACTION;\n\
         SELECT @@TRANCOUNT AS open_transactions;"
    )
}

/// Reads the guarded write's answer: the outcome row (rows, replayed) and then
/// `@@TRANCOUNT`, in its last two result sets (the write itself may return rows before
/// them, e.g. with `OUTPUT`). `None` when the answer does not have that shape.
fn outcome(results: &[Vec<tiberius::Row>]) -> Option<(u64, bool, i64)> {
    let [.., outcome, open] = results else {
        return None;
    };
    let row = outcome.first()?;
    let rows = row.try_get::<i64, _>(0).ok().flatten()?;
    let replayed = row.try_get::<bool, _>(1).ok().flatten()?;
    let open = crate::pool::service::trancount_of(open.first()?);
    Some((u64::try_from(rows).unwrap_or(0), replayed, open))
}

/// The guarded write's answer carried no error and no outcome row.
#[derive(Debug)]
struct NoOutcomeRow;

impl std::fmt::Display for NoOutcomeRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the idempotent write's answer had no outcome row (rows_affected, replayed)")
    }
}

impl std::error::Error for NoOutcomeRow {}

impl IdempotentWrite {
    async fn recorded(&self, client: &mut Client) -> Result<Option<u64>, Error> {
        let select = format!(
            "SELECT rows_affected FROM {} WHERE idempotency_key = @P1",
            self.table
        );
        let row = client
            .query(select, &[&self.key.as_ref()])
            .await?
            .into_row()
            .await?;
        Ok(row
            .and_then(|r| r.get::<i64, _>(0))
            .map(|n| u64::try_from(n).unwrap_or(0)))
    }
}

fn replay(rows: u64) -> SqlResponse {
    SqlResponse {
        rows_affected: vec![rows],
        replayed: true,
        ..SqlResponse::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_tables_are_checked() {
        let ctx = || RequestContext::write("w");
        assert!(idempotent_execute(ctx(), DEFAULT_TABLE, "", "x", []).is_err());
        let long = "k".repeat(MAX_KEY_LEN + 1);
        assert!(idempotent_execute(ctx(), DEFAULT_TABLE, long, "x", []).is_err());
        let bad = idempotent_execute(ctx(), "t; DROP TABLE x", "k", "x", []).unwrap_err();
        assert!(bad.to_string().contains("table name"));
        let ok = idempotent_execute(ctx(), DEFAULT_TABLE, "k", "x", []).unwrap();
        assert!(ok.context().is_idempotent());
    }

    #[test]
    fn the_guard_numbers_its_parameters_after_the_write() {
        let sql = guarded_sql("keys", "UPDATE t SET a = @P1 WHERE id = @P2;  ", 2);
        assert!(sql.contains("WHERE idempotency_key = @P3"), "{sql}");
        assert!(sql.contains("VALUES (@P3, @P4, @@ROWCOUNT)"), "{sql}");
        assert!(
            sql.contains("UPDATE t SET a = @P1 WHERE id = @P2\n;"),
            "{sql}"
        );
        assert!(!sql.contains("@P5"), "{sql}");
    }

    #[test]
    fn ddl_names_the_table() {
        assert!(create_table_sql("dbo.keys").starts_with("CREATE TABLE dbo.keys ("));
    }
}
