use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::param::Param;
use super::response::SqlResponse;
use super::session_effects::SessionEffects;
use super::stream::RowSink;
use crate::error::Error;
use crate::pool::TrackedStream;
use crate::request::{HasContext, RequestContext};

/// The tiberius client a [`UnitOfWork`] is given.
pub type Client = tiberius::Client<tokio_util::compat::Compat<TrackedStream>>;

/// The future a [`UnitOfWork`] returns: a [`SqlResponse`], or your own type `T` for work
/// run with [`Stack::run`](crate::Stack::run).
pub type WorkFuture<'a, T = SqlResponse> =
    Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'a>>;

/// Work run on one pooled connection: typically `BEGIN TRAN … COMMIT`.
///
/// It may run more than once (after a deadlock, error 1205, while its transaction was open,
/// the server has rolled the transaction back and the whole unit is re-run), so it is `Fn`,
/// not `FnOnce` — and a unit that writes with several statements must wrap them in **one**
/// explicit transaction, or a re-run repeats the statements that had already committed.
/// A non-idempotent unit is re-run only when the error proves it left nothing applied
/// (see [`classify::rollback`](crate::classify::rollback)): an error after its `COMMIT` is
/// reported with [`Error::may_have_applied`](crate::Error::may_have_applied) instead. It must also end every
/// transaction it begins: one left open is rolled back and reported as an error. Errors from
/// tiberius convert with `?`; the innermost service corrects their outcome from what it saw
/// on the wire. A failed unit of work never returns its connection to the pool (it may hold
/// an open transaction).
///
/// After a unit of work succeeds, the pool runs its session reset batch before the
/// connection serves anyone else: open transactions are rolled back (and reported) and the
/// `SET` options it may have changed — isolation level, `IMPLICIT_TRANSACTIONS`,
/// `XACT_ABORT`, `NOCOUNT`, `LOCK_TIMEOUT`, `ROWCOUNT`, `DEADLOCK_PRIORITY`, the ANSI
/// options, `ARITHABORT` … — are restored to a login's defaults. State that only closing the
/// connection undoes is the unit's to clean up: **drop the `#temp` tables it creates**, and
/// do not `USE` another database, `SET LANGUAGE`/`DATEFORMAT`, or set session context.
pub trait UnitOfWork: Send + Sync + 'static {
    /// Runs the work on `client`.
    fn run<'a>(&'a self, client: &'a mut Client) -> WorkFuture<'a>;
}

impl<F> UnitOfWork for F
where
    F: for<'a> Fn(&'a mut Client) -> WorkFuture<'a> + Send + Sync + 'static,
{
    fn run<'a>(&'a self, client: &'a mut Client) -> WorkFuture<'a> {
        self(client)
    }
}

/// Lets the compiler see a closure as a [`UnitOfWork`] (closures taking a reference and
/// returning a future tied to it need the bound spelled out):
///
/// ```
/// use mssql_resilience::sql::{batch, work, SqlRequest, SqlResponse};
/// use mssql_resilience::RequestContext;
///
/// let transfer = SqlRequest::unit_of_work(
///     RequestContext::write("transfer"),
///     work(|client| Box::pin(async move {
///         batch(client, "BEGIN TRANSACTION").await?;
///         client.execute("UPDATE accounts SET balance = balance - @P1 WHERE id = @P2", &[&10i64, &1i32]).await?;
///         client.execute("UPDATE accounts SET balance = balance + @P1 WHERE id = @P2", &[&10i64, &2i32]).await?;
///         batch(client, "COMMIT TRANSACTION").await?;
///         Ok(SqlResponse::default())
///     })),
/// );
/// # let _ = transfer;
/// ```
///
/// It also names closures for [`Stack::run`](crate::Stack::run), which return a type of
/// your own.
pub fn work<T, F>(f: F) -> F
where
    F: for<'a> Fn(&'a mut Client) -> WorkFuture<'a, T> + Send + Sync + 'static,
{
    f
}

/// Runs `sql` as a plain batch (no parameters) on `client` and reads every result: for
/// `BEGIN TRANSACTION`, `COMMIT TRANSACTION`, `ROLLBACK TRANSACTION` and DDL inside a
/// [`UnitOfWork`].
pub async fn batch(client: &mut Client, sql: &str) -> Result<(), Error> {
    client.simple_query(sql).await?.into_results().await?;
    Ok(())
}

/// What a statement's response carries.
#[derive(Clone, Debug)]
pub(crate) enum Returns {
    /// Result sets.
    Rows,
    /// Rows-affected counts.
    RowsAffected,
    /// Rows handed one by one to a [`RowStream`](super::RowStream).
    Stream(Arc<RowSink>),
}

#[derive(Clone)]
pub(crate) enum Body {
    Statement {
        returns: Returns,
        sql: Arc<str>,
        params: Arc<[Param]>,
        /// What the statement may leave on its session (scanned once, here).
        effects: SessionEffects,
    },
    /// A unit of work, with what the pool must undo after it: everything resettable for
    /// user code, nothing for the crate's own units that scope and check what they change.
    Work {
        work: Arc<dyn UnitOfWork>,
        effects: SessionEffects,
    },
}

/// A request for the SQL stack. Cheap to clone (the retry layer clones it per attempt).
#[derive(Clone)]
pub struct SqlRequest {
    pub(crate) context: RequestContext,
    pub(crate) body: Body,
}

impl fmt::Debug for SqlRequest {
    /// Shows the context and the kind of body; SQL text and parameters are left out (they
    /// may hold personal data) — log them deliberately if you need them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body = match &self.body {
            Body::Statement {
                returns, params, ..
            } => format!("{returns:?} statement ({} params)", params.len()),
            Body::Work { .. } => "unit_of_work".to_owned(),
        };
        f.debug_struct("SqlRequest")
            .field("context", &self.context)
            .field("body", &body)
            .finish()
    }
}

impl SqlRequest {
    /// A statement returning result sets (materialized as [`SqlResponse::result_sets`]).
    ///
    /// `context` names the operation and says read or write; e.g.
    /// `SqlRequest::query(RequestContext::read("get_order"), "SELECT … WHERE id = @P1", [id.into()])`.
    pub fn query(
        context: RequestContext,
        sql: impl Into<Arc<str>>,
        params: impl IntoIterator<Item = Param>,
    ) -> Self {
        Self::statement(context, Returns::Rows, sql.into(), params)
    }

    /// A statement whose rows-affected counts are returned ([`SqlResponse::rows_affected`]).
    pub fn execute(
        context: RequestContext,
        sql: impl Into<Arc<str>>,
        params: impl IntoIterator<Item = Param>,
    ) -> Self {
        Self::statement(context, Returns::RowsAffected, sql.into(), params)
    }

    fn statement(
        context: RequestContext,
        returns: Returns,
        sql: Arc<str>,
        params: impl IntoIterator<Item = Param>,
    ) -> Self {
        SqlRequest {
            context,
            body: Body::Statement {
                returns,
                effects: SessionEffects::of(&sql),
                sql,
                params: collect_params(params),
            },
        }
    }

    /// Checks every parameter fits its SQL type (before anything is sent).
    pub(crate) fn check_params(&self) -> Result<(), Error> {
        match &self.body {
            Body::Statement { params, .. } => super::param::check_params(params).map_err(|e| {
                Error::new(
                    crate::error::ErrorKind::Conversion,
                    crate::error::Outcome::NotSent,
                )
                .with_source(e)
            }),
            Body::Work { .. } => Ok(()),
        }
    }

    /// A unit of work on one connection (a transaction). Writes are not idempotent unless
    /// the context says so.
    pub fn unit_of_work(context: RequestContext, work: impl UnitOfWork) -> Self {
        SqlRequest {
            context,
            body: Body::Work {
                work: Arc::new(work),
                effects: SessionEffects::UNIT_OF_WORK,
            },
        }
    }

    /// A unit of work written by this crate that ends every transaction it begins and
    /// checks `@@TRANCOUNT` in its own last request, saving the pool's check round trip.
    pub(crate) fn checked_unit_of_work(context: RequestContext, work: impl UnitOfWork) -> Self {
        SqlRequest {
            context,
            body: Body::Work {
                work: Arc::new(work),
                effects: SessionEffects::NONE,
            },
        }
    }

    /// The statement text, for statements.
    pub fn sql(&self) -> Option<&str> {
        match &self.body {
            Body::Statement { sql, .. } => Some(sql),
            Body::Work { .. } => None,
        }
    }

    /// The request's context.
    pub fn context(&self) -> &RequestContext {
        &self.context
    }

    pub(crate) fn is_unit_of_work(&self) -> bool {
        matches!(self.body, Body::Work { .. })
    }

    /// What the request may leave on its session, for the pool to undo.
    pub(crate) fn session_effects(&self) -> SessionEffects {
        match &self.body {
            Body::Statement { effects, .. } | Body::Work { effects, .. } => *effects,
        }
    }
}

impl HasContext for SqlRequest {
    fn context(&self) -> &RequestContext {
        &self.context
    }
    fn context_mut(&mut self) -> &mut RequestContext {
        &mut self.context
    }
}

/// The parameters of a statement; every statement without any shares one empty list
/// (an `Arc<[T]>` allocates even when empty).
fn collect_params(params: impl IntoIterator<Item = Param>) -> Arc<[Param]> {
    static NONE: std::sync::OnceLock<Arc<[Param]>> = std::sync::OnceLock::new();
    let mut params = params.into_iter().peekable();
    if params.peek().is_none() {
        return NONE.get_or_init(|| Arc::from([])).clone();
    }
    params.collect()
}
