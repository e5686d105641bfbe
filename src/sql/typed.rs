//! Calls that return your own types: mapped rows, the result of a unit of work, a stream.

use std::any::Any;
use std::fmt;
use std::sync::{Arc, Mutex};

use super::request::{Client, UnitOfWork, WorkFuture};
use super::row::FromRow;
use super::stream::{RowStream, DEFAULT_STREAM_BUFFER};
use super::{Param, SqlRequest, SqlResponse};
use crate::error::Error;
use crate::request::RequestContext;
use crate::Stack;

/// Caps on what one materialized response may hold (see
/// [`ResultsConfig`](crate::config::ResultsConfig) for the ranges).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResultLimits {
    /// Most rows over all result sets. Default 100 000.
    pub max_rows: u32,
    /// Most bytes of values (text as UTF-8, binary as is, 16 per other value). Default
    /// 64 MiB.
    pub max_bytes: u64,
}

impl Default for ResultLimits {
    fn default() -> Self {
        ResultLimits {
            max_rows: 100_000,
            max_bytes: 64 << 20,
        }
    }
}

/// The value a unit of work run with [`Stack::run`] returned, carried inside the
/// [`SqlResponse`] through the layers. Opaque; [`Stack::run`] takes it out.
#[derive(Clone)]
pub struct TypedOutput(Arc<Mutex<Option<Box<dyn Any + Send>>>>);

impl TypedOutput {
    fn new<T: Send + 'static>(value: T) -> TypedOutput {
        TypedOutput(Arc::new(Mutex::new(Some(Box::new(value)))))
    }

    fn take<T: 'static>(&self) -> Option<T> {
        let value = self.0.lock().unwrap_or_else(|e| e.into_inner()).take()?;
        value.downcast::<T>().ok().map(|b| *b)
    }
}

impl fmt::Debug for TypedOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TypedOutput(..)")
    }
}

impl PartialEq for TypedOutput {
    fn eq(&self, other: &TypedOutput) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// A unit of work whose closure returns `T`.
struct Typed<F> {
    f: F,
}

impl<T, F> UnitOfWork for Typed<F>
where
    T: Send + 'static,
    F: for<'a> Fn(&'a mut Client) -> WorkFuture<'a, T> + Send + Sync + 'static,
{
    fn run<'a>(&'a self, client: &'a mut Client) -> WorkFuture<'a> {
        Box::pin(async move {
            let value = (self.f)(client).await?;
            Ok(SqlResponse {
                typed: Some(TypedOutput::new(value)),
                ..SqlResponse::default()
            })
        })
    }
}

impl Stack {
    /// Runs a unit of work (see [`UnitOfWork`] for its rules: it may run more than once,
    /// and must end the transactions it begins) and returns the value it returned, of
    /// your own type.
    ///
    /// ```no_run
    /// use mssql_resilience::sql::{batch, work};
    /// use mssql_resilience::{RequestContext, Stack};
    /// # async fn f(stack: &Stack) -> Result<(), mssql_resilience::Error> {
    /// let new_id: i32 = stack
    ///     .run(RequestContext::write("create_order"), work(|client| Box::pin(async move {
    ///         batch(client, "BEGIN TRANSACTION").await?;
    ///         let row = client
    ///             .query("INSERT INTO orders (amount) OUTPUT inserted.id VALUES (@P1)", &[&10i32])
    ///             .await?
    ///             .into_row()
    ///             .await?;
    ///         batch(client, "COMMIT TRANSACTION").await?;
    ///         Ok(row.and_then(|r| r.get::<i32, _>(0)).unwrap_or_default())
    ///     })))
    ///     .await?;
    /// # let _ = new_id; Ok(()) }
    /// ```
    pub async fn run<T, F>(&self, context: RequestContext, work: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: for<'a> Fn(&'a mut Client) -> WorkFuture<'a, T> + Send + Sync + 'static,
    {
        let response = self
            .call(SqlRequest::unit_of_work(context, Typed { f: work }))
            .await?;
        response
            .typed
            .and_then(|out| out.take::<T>())
            .ok_or_else(|| {
                Error::new(
                    crate::error::ErrorKind::Other,
                    crate::error::Outcome::Ambiguous,
                )
                .with_source(std::io::Error::other(
                    "the unit of work's response carried no value (a layer replaced it)",
                ))
            })
    }

    /// Runs a query and maps the rows of its first result set into `T`s (see
    /// [`FromRow`]). A row that does not map fails the call with a
    /// [`Conversion`](crate::ErrorKind::Conversion) error naming the column and types.
    pub async fn query_as<T: FromRow>(
        &self,
        context: RequestContext,
        sql: impl Into<Arc<str>>,
        params: impl IntoIterator<Item = Param>,
    ) -> Result<Vec<T>, Error> {
        let response = self.call(SqlRequest::query(context, sql, params)).await?;
        Ok(response.map()?)
    }

    /// Streams the rows of a query (every result set, in order; [`Row::result_index`]
    /// tells them apart) instead of materializing them: for results too large for the
    /// `[results]` caps. See [`RowStream`] for the retry rules: a failure before the first
    /// row is retried as usual, one after is final. `request` must be a
    /// [`SqlRequest::query`]. Needs a tokio runtime (the call runs as a task).
    ///
    /// [`Row::result_index`]: super::Row::result_index
    pub fn stream(&self, request: SqlRequest) -> RowStream {
        self.stream_with_buffer(request, DEFAULT_STREAM_BUFFER)
    }

    /// [`stream`](Self::stream) with a buffer of `rows` rows between the connection and
    /// the caller, at least 1 and at most [`MAX_STREAM_BUFFER`](super::MAX_STREAM_BUFFER)
    /// (a larger value is clamped: the buffer's memory is what streaming bounds).
    pub fn stream_with_buffer(&self, request: SqlRequest, rows: usize) -> RowStream {
        RowStream::start(self, request, rows)
    }
}
