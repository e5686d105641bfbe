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
//!   SELECT rows_affected, 1 AS replayed, request_fingerprint FROM <table> WHERE …
//! ELSE BEGIN
//!   <the write>
//!   INSERT INTO <table> (idempotency_key, operation, rows_affected, request_fingerprint)
//!     VALUES (@k, @op, @@ROWCOUNT, @fp)
//!   SELECT rows_affected, 0 AS replayed, request_fingerprint FROM <table> WHERE …
//! END
//! COMMIT
//! SELECT @@TRANCOUNT                        -- proves the session is clean for the pool
//! ```
//!
//! `@k`, `@op` and `@fp` are appended after the write's own parameters (`@P1`…`@Pn` stay
//! as the caller wrote them). The request goes as `sp_executesql`, so `SET XACT_ABORT ON`
//! lasts for this request only (SQL Server restores SET options when dynamic SQL returns).
//!
//! **A key reused for a different request is a conflict.** `@fp` is a fingerprint of the
//! request (operation name, SQL text, every parameter's type and value); a replay whose
//! recorded fingerprint differs fails with
//! [`ErrorKind::IdempotencyConflict`] instead of
//! answering "replayed" for a write that never happened. Keys recorded before fingerprints
//! (a table upgraded with [`upgrade_table_sql`]) replay without the check.
//!
//! If two attempts race (the first still running on a connection the client gave up on),
//! the `UPDLOCK, HOLDLOCK` read takes a key-range lock, so the second blocks until the
//! first ends and then either sees the committed row or, if the first rolled back, writes.
//! A primary-key violation (2627/2601) rolls the attempt back; if the key is then found
//! recorded, the other attempt wrote first and its outcome is returned (or the conflict),
//! otherwise the violation was the write's own and is returned as the error. Create the
//! table once with [`create_table_sql`] (e.g. in a migration).
//!
//! The recorded (and returned) row count is `@@ROWCOUNT` after the write: the count of
//! the write's **last** statement when it has several.
//!
//! **Returned values.** [`idempotent_execute`] answers the row count only. When the caller
//! must learn what the write returned (`OUTPUT INSERTED.id`, `SELECT SCOPE_IDENTITY()`)
//! even after a retry, use [`idempotent_query`]: the rows are recorded with the key, in
//! the same transaction, and a replay returns them value for value. It costs three round
//! trips instead of one (see its docs); generating ids client-side (a
//! `UNIQUEIDENTIFIER` the caller chooses) with [`idempotent_execute`] stays the cheapest.
//!
//! Keys must be unique per logical operation (e.g. the API request's idempotency key, or
//! a client-generated UUID) and kept as long as a retry may arrive; deleting old rows is
//! the application's job.

mod fingerprint;
pub(crate) mod returned;

use std::sync::Arc;

pub use self::returned::{RecordError, MAX_RECORDED_CHARS};
use crate::error::{Error, ErrorKind, Outcome};
use crate::pool::service::{materialize, materialize_within};
use crate::request::RequestContext;
use crate::sql::{
    batch, check_params, Client, Param, ResultLimits, ResultSet, SqlRequest, SqlResponse,
    UnitOfWork, WireStatement, WorkFuture,
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
         rows_affected BIGINT NOT NULL, \
         request_fingerprint NVARCHAR(64) NULL, \
         returned NVARCHAR(MAX) NULL)"
    )
}

/// Upgrades a dedupe table created by crate version 0.1.0: one `ALTER TABLE` per column
/// added since (`request_fingerprint`, the request fingerprint; `returned`, the rows an
/// [`idempotent_query`] returned), both nullable. Run them once, in order. Keys recorded
/// before the upgrade have no fingerprint and replay without the conflict check.
pub fn upgrade_table_sql(table: &str) -> [String; 2] {
    [
        format!("ALTER TABLE {table} ADD request_fingerprint NVARCHAR(64) NULL"),
        format!("ALTER TABLE {table} ADD returned NVARCHAR(MAX) NULL"),
    ]
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
    check_table(table)
        .map_err(|e| Error::new(ErrorKind::Other, Outcome::NotSent).with_source(e))?;
    stack
        .call(SqlRequest::execute(
            RequestContext::write("create_idempotency_table"),
            create_table_if_missing_sql(table),
            [],
        ))
        .await
        .map(|_| ())
}

/// A write guarded by an idempotency key. Build with [`idempotent_execute`] or
/// [`idempotent_query`].
#[derive(Clone)]
struct IdempotentWrite {
    answer: Answer,
    table: Arc<str>,
    key: Arc<str>,
    operation: Arc<str>,
    sql: Arc<str>,
    params: Arc<[Param]>,
    /// What this request would do, recorded with the key (see `fingerprint`).
    fingerprint: Arc<str>,
}

/// Errors from [`idempotent_execute`]'s and [`idempotent_query`]'s arguments.
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
/// and [`SqlResponse::replayed`] tells which. Rows the write returns are not kept: use
/// [`idempotent_query`] when the caller needs them (e.g. a generated id). One round trip.
/// Rejects an empty key, a key over [`MAX_KEY_LEN`] characters and a table name that is
/// not a plain identifier.
pub fn idempotent_execute(
    context: RequestContext,
    table: &str,
    key: impl Into<String>,
    sql: impl Into<Arc<str>>,
    params: impl IntoIterator<Item = Param>,
) -> Result<SqlRequest, InvalidKey> {
    keyed(
        Answer::RowsAffected,
        context,
        table,
        key.into(),
        sql.into(),
        params,
    )
}

/// A write that runs at most once per `key` and whose **returned rows** (`OUTPUT
/// INSERTED.id`, a `SELECT SCOPE_IDENTITY()`) are recorded with the key: a replay returns
/// them exactly as the first answer did, so a caller whose answer was lost still learns
/// the generated id.
///
/// The response has the write's result sets in `result_sets` and its row count in
/// `rows_affected`, fresh or recorded ([`SqlResponse::replayed`]). It costs three round
/// trips instead of [`idempotent_execute`]'s one and holds the write's locks across two
/// of them: SQL Server refuses a transaction begun or ended inside a parameterised
/// request (error 266), so the transaction is begun and committed in plain batches
/// around it. A write whose returned rows take more than [`MAX_RECORDED_CHARS`]
/// characters recorded is rolled back ([`RecordError::TooLarge`]). The dedupe table
/// needs the `returned` column ([`create_table_sql`] has it; [`upgrade_table_sql`] adds
/// it). Same argument checks as [`idempotent_execute`].
pub fn idempotent_query(
    context: RequestContext,
    table: &str,
    key: impl Into<String>,
    sql: impl Into<Arc<str>>,
    params: impl IntoIterator<Item = Param>,
) -> Result<SqlRequest, InvalidKey> {
    keyed(Answer::Rows, context, table, key.into(), sql.into(), params)
}

fn keyed(
    answer: Answer,
    context: RequestContext,
    table: &str,
    key: String,
    sql: Arc<str>,
    params: impl IntoIterator<Item = Param>,
) -> Result<SqlRequest, InvalidKey> {
    if key.is_empty() || key.chars().count() > MAX_KEY_LEN {
        return Err(InvalidKey(format!(
            "invalid idempotency key of {} characters: must be 1 to {MAX_KEY_LEN}",
            key.chars().count()
        )));
    }
    check_table(table)?;
    let params: Arc<[Param]> = params.into_iter().collect();
    let fingerprint =
        fingerprint::fingerprint(context.operation(), answer == Answer::Rows, &sql, &params);
    let write = IdempotentWrite {
        answer,
        table: table.into(),
        key: key.into(),
        operation: context.operation().into(),
        fingerprint: fingerprint.into(),
        sql,
        params,
    };
    Ok(SqlRequest::checked_unit_of_work(
        context.idempotent(true),
        write,
    ))
}

/// A table name is a plain (optionally schema-qualified) identifier: it is spliced into SQL.
fn check_table(table: &str) -> Result<(), InvalidKey> {
    let plain = !table.is_empty()
        && table
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if plain {
        Ok(())
    } else {
        Err(InvalidKey(format!(
            "invalid idempotency table name {table:?}: use letters, digits, '_' and '.'"
        )))
    }
}

impl UnitOfWork for IdempotentWrite {
    fn run<'a>(&'a self, client: &'a mut Client) -> WorkFuture<'a> {
        Box::pin(async move {
            // Refused before anything is sent, naming the parameter.
            check_params(&self.params)
                .map_err(|e| Error::new(ErrorKind::Conversion, Outcome::NotSent).with_source(e))?;
            match self.answer {
                Answer::RowsAffected => self.run_in_one_request(client).await,
                Answer::Rows => self.run_recording_rows(client).await,
            }
        })
    }
}

impl IdempotentWrite {
    /// The guarded write as sent: its SQL and the write's parameters followed by the
    /// guard's (`@k`, `@op`, `@fp`).
    fn guarded(&self) -> (String, Vec<Param>) {
        let sql = guarded_sql(self.answer, &self.table, &self.sql, self.params.len());
        let mut params: Vec<Param> = Vec::with_capacity(self.params.len() + 3);
        params.extend(self.params.iter().cloned());
        params.push(Param::from(self.key.as_ref()));
        params.push(Param::from(self.operation.as_ref()));
        params.push(Param::from(self.fingerprint.as_ref()));
        (sql, params)
    }

    /// [`idempotent_execute`]: the whole guarded write, transaction included, in one request.
    async fn run_in_one_request(&self, client: &mut Client) -> Result<SqlResponse, Error> {
        let (sql, params) = self.guarded();
        let statement = WireStatement::new(&sql, &params);
        let answer = match client
            .query(statement.sql.as_ref(), &statement.params())
            .await
        {
            Ok(stream) => materialize(stream).await,
            Err(e) => Err(e.into()),
        };
        let sets = match answer {
            Ok(response) => response.result_sets,
            Err(e) => return self.after_error(client, e).await,
        };
        let Some((_, recorded)) = split_outcome(sets) else {
            return Err(no_outcome_row());
        };
        match recorded.open_transactions {
            0 => self.answer(recorded, Vec::new()),
            // The write began a transaction of its own and left it open, so our COMMIT
            // only closed the inner level: nothing is committed yet.
            n => Err(roll_back(client, left_open(n)).await),
        }
    }

    /// [`idempotent_query`]: begin (a plain batch); the guarded write without transaction
    /// statements (one request, answering the write's rows and the outcome); then record
    /// the rows with the key and commit (a plain batch).
    async fn run_recording_rows(&self, client: &mut Client) -> Result<SqlResponse, Error> {
        batch(client, "BEGIN TRANSACTION").await?;
        let (sql, params) = self.guarded();
        let statement = WireStatement::new(&sql, &params);
        // Read no more than can be recorded (the exact check is on the recorded form).
        let cap = ResultLimits {
            max_rows: u32::MAX,
            max_bytes: returned::MAX_RECORDED_CHARS as u64,
        };
        let answer = match client
            .query(statement.sql.as_ref(), &statement.params())
            .await
        {
            Ok(stream) => materialize_within(stream, cap).await,
            Err(e) => Err(e.into()),
        };
        let sets = match answer {
            Ok(response) => response.result_sets,
            Err(e) if matches!(e.kind(), ErrorKind::ResponseTooLarge { .. }) => {
                return Err(roll_back(client, too_large()).await);
            }
            Err(e) => return self.after_error(client, e).await,
        };
        let Some((write_sets, recorded)) = split_outcome(sets) else {
            return Err(roll_back(client, no_outcome_row()).await);
        };
        if recorded.replayed {
            // Nothing was written in this transaction: end it, then answer the record.
            batch(client, "ROLLBACK TRANSACTION").await?;
            return self.answer(recorded, Vec::new());
        }
        match recorded.open_transactions {
            1 => {}
            // The write ended our transaction (its own COMMIT or ROLLBACK): what it left
            // is not the guarded unit this request promises.
            0 => {
                return Err(Error::new(ErrorKind::Other, Outcome::Rejected).with_source(
                    std::io::Error::other(
                        "the idempotent write ended the transaction it runs in (COMMIT or ROLLBACK in the write)",
                    ),
                ))
            }
            n => return Err(roll_back(client, left_open(n - 1)).await),
        }
        let text = returned::encode(&write_sets);
        if text.chars().count() > returned::MAX_RECORDED_CHARS {
            return Err(roll_back(client, too_large()).await);
        }
        // A plain batch (no parameters), so the COMMIT is not inside a parameterised
        // request: the recorded rows and the key as N'' literals. XACT_ABORT makes a
        // failed UPDATE roll back the whole unit instead of committing it unrecorded.
        let commit = format!(
            "SET XACT_ABORT ON;\n\
             UPDATE {table} SET returned = {rows} WHERE idempotency_key = {key};\n\
             COMMIT TRANSACTION;\n\
             SET XACT_ABORT OFF;\n\
             SELECT @@TRANCOUNT AS open_transactions;",
            table = self.table,
            rows = nvarchar_literal(&text),
            key = nvarchar_literal(&self.key),
        );
        let open = client.simple_query(commit).await?.into_row().await?;
        match open.as_ref().map(crate::pool::service::trancount_of) {
            Some(0) => self.answer(recorded, write_sets),
            Some(n) => Err(roll_back(client, left_open(n)).await),
            None => Err(no_outcome_row()),
        }
    }

    /// A failed guarded write: a primary-key violation on the key (2627/2601) means
    /// another attempt with this key committed first (ours was rolled back by
    /// `XACT_ABORT`), so its record is this request's outcome; anything else is the error.
    async fn after_error(&self, client: &mut Client, error: Error) -> Result<SqlResponse, Error> {
        if !matches!(error.server_number(), Some(2627 | 2601)) {
            return Err(error);
        }
        // Tables without the `returned` column still serve `idempotent_execute`.
        let returned = match self.answer {
            Answer::RowsAffected => "",
            Answer::Rows => ", returned",
        };
        let select = format!(
            "SELECT rows_affected, request_fingerprint{returned} FROM {} WHERE idempotency_key = @P1",
            self.table
        );
        let row = client
            .query(select, &[&self.key.as_ref()])
            .await?
            .into_row()
            .await?;
        let Some(row) = row else {
            return Err(error);
        };
        let Some(rows) = row.try_get::<i64, _>(0).ok().flatten() else {
            return Err(error);
        };
        let recorded = Recorded {
            rows: u64::try_from(rows).unwrap_or(0),
            replayed: true,
            fingerprint: text_at(&row, 1),
            returned: text_at(&row, 2),
            open_transactions: 0,
        };
        self.answer(recorded, Vec::new())
    }

    /// The response for a recorded outcome: this write's, or a replay of an earlier one
    /// with the same key — refused as a conflict when that one was a different request.
    /// `fresh` are the rows this attempt's write returned; a replay answers the recorded ones.
    fn answer(&self, recorded: Recorded, fresh: Vec<ResultSet>) -> Result<SqlResponse, Error> {
        let mut sets = fresh;
        if recorded.replayed {
            if recorded
                .fingerprint
                .as_deref()
                .is_some_and(|stored| stored != &*self.fingerprint)
            {
                return Err(Error::new(
                    ErrorKind::IdempotencyConflict,
                    Outcome::Rejected,
                ));
            }
            if self.answer == Answer::Rows {
                // Keys recorded by an `idempotent_execute` differ in fingerprint; one
                // recorded before fingerprints has no rows to replay.
                let text = recorded.returned.as_deref().ok_or(RecordError::NotRecorded);
                sets = text.and_then(returned::decode).map_err(|e| {
                    Error::new(ErrorKind::Conversion, Outcome::Rejected).with_source(e)
                })?;
            }
        }
        Ok(SqlResponse {
            result_sets: sets,
            rows_affected: vec![recorded.rows],
            replayed: recorded.replayed,
            ..SqlResponse::default()
        })
    }
}

/// What the caller asked the keyed write to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// The row count ([`idempotent_execute`]).
    RowsAffected,
    /// The returned rows and the row count ([`idempotent_query`]).
    Rows,
}

/// The guarded write (see the module docs); `n` is the write's parameter count. For
/// [`Answer::Rows`] it runs inside a transaction the caller began, reports the recorded
/// rows (`returned`) too and leaves the COMMIT to the caller.
fn guarded_sql(answer: Answer, table: &str, write: &str, n: usize) -> String {
    let key = n + 1;
    let operation = n + 2;
    let fingerprint = n + 3;
    let write = write.trim_end().trim_end_matches(';');
    let (begin, returned, commit) = match answer {
        Answer::RowsAffected => ("BEGIN TRANSACTION;\n", "", "COMMIT TRANSACTION;\n"),
        Answer::Rows => ("", ", returned", ""),
    };
    let outcome = |replayed: u8| {
        format!(
            "SELECT rows_affected, CAST({replayed} AS BIT) AS replayed, request_fingerprint{returned} FROM {table} WHERE idempotency_key = @P{key};"
        )
    };
    format!(
        "SET XACT_ABORT ON;\n\
         {begin}\
         IF EXISTS (SELECT 1 FROM {table} WITH (UPDLOCK, HOLDLOCK) WHERE idempotency_key = @P{key})\n\
         {replay}\n\
         ELSE\n\
         BEGIN\n\
         {write}\n;\n\
         INSERT INTO {table} (idempotency_key, operation, rows_affected, request_fingerprint) VALUES (@P{key}, @P{operation}, @@ROWCOUNT, @P{fingerprint});\n\
         {fresh}\n\
         END;\n\
         {commit}\
         SELECT @@TRANCOUNT AS open_transactions;",
        replay = outcome(1),
        fresh = outcome(0),
    )
}

/// A T-SQL Unicode string literal of `text` (quotes doubled).
fn nvarchar_literal(text: &str) -> String {
    format!("N'{}'", text.replace('\'', "''"))
}

/// What the guarded write's answer says.
struct Recorded {
    rows: u64,
    replayed: bool,
    /// The fingerprint stored with the key (`None` for keys recorded before fingerprints).
    fingerprint: Option<String>,
    /// The recorded form of the rows the write returned ([`idempotent_query`] only).
    returned: Option<String>,
    open_transactions: i64,
}

/// Splits the guarded write's answer into the write's own result sets and the outcome:
/// the outcome row (rows, replayed, fingerprint[, returned]) and then `@@TRANCOUNT` are
/// its last two result sets. `None` when the answer does not have that shape.
fn split_outcome(mut sets: Vec<ResultSet>) -> Option<(Vec<ResultSet>, Recorded)> {
    let ours = sets.split_off(sets.len().checked_sub(2)?);
    let row = ours[0].rows.first()?.as_tiberius();
    let open = ours[1].rows.first()?.as_tiberius();
    let rows = row.try_get::<i64, _>(0).ok().flatten()?;
    let recorded = Recorded {
        rows: u64::try_from(rows).unwrap_or(0),
        replayed: row.try_get::<bool, _>(1).ok().flatten()?,
        fingerprint: text_at(row, 2),
        returned: text_at(row, 3),
        open_transactions: crate::pool::service::trancount_of(open),
    };
    Some((sets, recorded))
}

/// The text in column `index`, if there is one and it is not NULL.
fn text_at(row: &tiberius::Row, index: usize) -> Option<String> {
    if index >= row.len() {
        return None;
    }
    row.try_get::<&str, _>(index)
        .ok()
        .flatten()
        .map(str::to_owned)
}

/// Rolls back what the guarded write left open and returns `error` (a rollback that
/// fails leaves the connection to the pool, which discards a unit of work's connection).
async fn roll_back(client: &mut Client, error: Error) -> Error {
    let _ = batch(client, "ROLLBACK TRANSACTION").await;
    error
}

fn left_open(n: i64) -> Error {
    Error::new(ErrorKind::Other, Outcome::Rejected).with_source(std::io::Error::other(format!(
        "the idempotent write left {n} transaction(s) open; it was rolled back"
    )))
}

/// Rolled back before any COMMIT was sent, so nothing applied.
fn too_large() -> Error {
    Error::new(ErrorKind::Conversion, Outcome::Rejected).with_source(RecordError::TooLarge)
}

/// No error came back, yet no outcome row: whether it committed is unknown (a retry of
/// this idempotent request finds out).
fn no_outcome_row() -> Error {
    Error::new(ErrorKind::Other, Outcome::Ambiguous).with_source(NoOutcomeRow)
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
        let sql = guarded_sql(
            Answer::RowsAffected,
            "keys",
            "UPDATE t SET a = @P1 WHERE id = @P2;  ",
            2,
        );
        assert!(sql.contains("WHERE idempotency_key = @P3"), "{sql}");
        assert!(sql.contains("VALUES (@P3, @P4, @@ROWCOUNT, @P5)"), "{sql}");
        assert!(
            sql.contains("UPDATE t SET a = @P1 WHERE id = @P2\n;"),
            "{sql}"
        );
        assert!(!sql.contains("@P6"), "{sql}");
    }

    #[test]
    fn ddl_names_the_table() {
        assert!(create_table_sql("dbo.keys").starts_with("CREATE TABLE dbo.keys ("));
    }
}
