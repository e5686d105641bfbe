//! Idempotency keys: a write that is safe to retry even after an ambiguous failure.
//!
//! A non-idempotent write whose connection breaks after it was sent has an *unknown*
//! outcome: retrying may apply it twice, not retrying may lose it. An idempotency key
//! removes the doubt. The write and a row in a dedupe table commit in **one
//! transaction**; a retry with the same key finds the row and returns the recorded outcome
//! instead of writing again. So the request can be marked idempotent, and the retry and
//! failover layers may re-send it.
//!
//! ```text
//! BEGIN TRANSACTION
//!   SELECT rows_affected FROM <table> WHERE idempotency_key = @P1   -- seen? return it
//!   <the write>
//!   INSERT INTO <table> (idempotency_key, operation, rows_affected) VALUES (@P1, @P2, @P3)
//! COMMIT
//! ```
//!
//! If two attempts race (the first still running on a connection the client gave up on),
//! the `UPDLOCK, HOLDLOCK` read takes a key-range lock, so the second blocks until the
//! first ends and then either sees the committed row or, if the first rolled back, writes. A primary-key violation on the dedupe insert (2627) means the
//! other attempt recorded it first: the write is rolled back and the recorded outcome
//! returned. Create the table once with [`create_table_sql`] (e.g. in a migration).
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
    Ok(SqlRequest::unit_of_work(context.idempotent(true), write))
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
            batch(client, "BEGIN TRANSACTION").await?;
            if let Some(recorded) = self.recorded(client).await? {
                batch(client, "ROLLBACK TRANSACTION").await?;
                return Ok(replay(recorded));
            }
            let statement = WireStatement::new(&self.sql, &self.params);
            let written = client
                .execute(statement.sql.as_ref(), &statement.params())
                .await?;
            let rows: u64 = written.rows_affected().iter().sum();
            let insert = format!(
                "INSERT INTO {} (idempotency_key, operation, rows_affected) VALUES (@P1, @P2, @P3)",
                self.table
            );
            let rows_param = i64::try_from(rows).unwrap_or(i64::MAX);
            match client
                .execute(
                    insert,
                    &[&self.key.as_ref(), &self.operation.as_ref(), &rows_param],
                )
                .await
            {
                Ok(_) => {}
                Err(e) if e.code() == Some(2627) || e.code() == Some(2601) => {
                    // Another attempt with this key committed first: undo ours, report its.
                    batch(client, "ROLLBACK TRANSACTION").await?;
                    if let Some(recorded) = self.recorded(client).await? {
                        return Ok(replay(recorded));
                    }
                    return Err(e.into());
                }
                Err(e) => return Err(e.into()),
            }
            batch(client, "COMMIT TRANSACTION").await?;
            Ok(SqlResponse {
                rows_affected: written.rows_affected().to_vec(),
                ..SqlResponse::default()
            })
        })
    }
}

impl IdempotentWrite {
    async fn recorded(&self, client: &mut Client) -> Result<Option<u64>, Error> {
        let select = format!(
            "SELECT rows_affected FROM {} WITH (UPDLOCK, HOLDLOCK) WHERE idempotency_key = @P1",
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
    fn ddl_names_the_table() {
        assert!(create_table_sql("dbo.keys").starts_with("CREATE TABLE dbo.keys ("));
    }
}
