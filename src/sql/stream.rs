//! Streaming a large result row by row, with retries only before the first row.

use std::fmt;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::Stream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::request::{Body, Returns};
use super::row::Row;
use super::{SqlRequest, SqlResponse};
use crate::error::{Error, ErrorKind, Outcome};

/// Rows buffered between the connection and the caller of a [`RowStream`] by default.
pub const DEFAULT_STREAM_BUFFER: usize = 64;

/// The largest buffer a [`RowStream`] holds, in rows (a larger request is clamped).
pub const MAX_STREAM_BUFFER: usize = 65_536;

/// The sending half a streamed request carries: the innermost service hands rows to it.
pub(crate) struct RowSink {
    tx: mpsc::Sender<Row>,
    delivered: AtomicU64,
    /// The attempt whose rows the caller gets (0: none yet): the first to hand a row
    /// over. Rows of any other attempt — one racing it, or one cut short and finishing in
    /// the background — never reach the caller, so no two executions interleave.
    owner: AtomicU64,
    /// Tickets handed to attempts so far.
    tickets: AtomicU64,
}

impl fmt::Debug for RowSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RowSink")
            .field("delivered", &self.delivered())
            .finish()
    }
}

impl RowSink {
    /// Rows handed to the caller's buffer so far (over every attempt).
    pub(crate) fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Acquire)
    }

    /// A ticket for a new attempt: its rows go to the caller only if it is the first to
    /// hand one over ([`send`](Self::send)).
    pub(crate) fn ticket(&self) -> u64 {
        self.tickets.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Hands one row of the attempt holding `ticket` over, waiting while the caller's
    /// buffer is full. Fails when another attempt's rows are the caller's, or the caller
    /// dropped its stream.
    pub(crate) async fn send(&self, ticket: u64, row: Row) -> Result<(), Error> {
        match self
            .owner
            .compare_exchange(0, ticket, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {}
            Err(owner) if owner == ticket => {}
            Err(_) => {
                return Err(
                    Error::new(ErrorKind::Other, Outcome::Ambiguous).with_source(
                        std::io::Error::other(
                            "another attempt of this streamed query is handing its rows over",
                        ),
                    ),
                )
            }
        }
        self.tx.send(row).await.map_err(|_| {
            Error::new(ErrorKind::Other, Outcome::Ambiguous).with_source(std::io::Error::other(
                "the row stream was dropped by its caller; the rest of the result was not read",
            ))
        })?;
        self.delivered.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// The error for a failure of a stream that had already handed rows over: it is final
    /// (another attempt would hand the first rows over again).
    pub(crate) fn interrupted(&self, cause: Option<Error>) -> Error {
        let rows = self.delivered();
        let error = Error::new(ErrorKind::StreamInterrupted { rows }, Outcome::Ambiguous);
        match cause {
            Some(cause) => error.with_source(cause),
            None => error,
        }
    }
}

/// A query's rows as they arrive, from [`Stack::stream`](crate::Stack::stream).
///
/// **Retry semantics.** Until the first row is handed over, the query is an ordinary
/// read: a failure is retried and may fail over like any other. Once a row has been
/// handed over (put in this stream's buffer — the caller may not have looked at it yet),
/// nothing is re-sent: a later failure ends the stream with
/// [`ErrorKind::StreamInterrupted`] (not retryable, outcome ambiguous), after the rows
/// already buffered. A streamed query is never hedged (two copies would interleave rows).
/// Restart from the last row you processed (e.g. `WHERE id > @P1 ORDER BY id`) if you need
/// to resume.
///
/// **Time.** The whole stream runs inside one attempt of the call, so it is bounded by the
/// attempt timeout and the call's total budget like any request: read it promptly (the
/// connection waits while the buffer is full), and give long exports a budget of their own.
///
/// The response-size cap (`[results]`) does not apply: memory is bounded by the buffer
/// ([`DEFAULT_STREAM_BUFFER`] rows unless [`Stack::stream_with_buffer`](crate::Stack::stream_with_buffer)).
/// Dropping the stream stops the query at once: a request already sent is cancelled on the
/// server (its connection drained or closed in the background), never read to the end.
pub struct RowStream {
    rx: mpsc::Receiver<Row>,
    call: Option<JoinHandle<Result<SqlResponse, Error>>>,
    error: Option<Error>,
    done: bool,
}

impl fmt::Debug for RowStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RowStream")
            .field("running", &self.call.is_some())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl RowStream {
    /// Starts `request` (a [`SqlRequest::query`]) on `stack`, streaming its rows.
    pub(crate) fn start(stack: &crate::Stack, request: SqlRequest, buffer: usize) -> RowStream {
        let (tx, rx) = mpsc::channel(buffer.clamp(1, MAX_STREAM_BUFFER));
        let mut request = request;
        match &mut request.body {
            Body::Statement { returns, .. } if matches!(returns, Returns::Rows) => {
                *returns = Returns::Stream(Arc::new(RowSink {
                    tx,
                    delivered: AtomicU64::new(0),
                    owner: AtomicU64::new(0),
                    tickets: AtomicU64::new(0),
                }));
            }
            _ => {
                return RowStream {
                    rx,
                    call: None,
                    error: Some(Error::new(ErrorKind::Other, Outcome::NotSent).with_source(
                        std::io::Error::new(
                            std::io::ErrorKind::InvalidInput,
                            "only a query (SqlRequest::query) can be streamed",
                        ),
                    )),
                    done: false,
                };
            }
        }
        request.context = request.context.hedge(false);
        let stack = stack.clone();
        let call = tokio::spawn(async move { stack.call(request).await });
        RowStream {
            rx,
            call: Some(call),
            error: None,
            done: false,
        }
    }

    /// The next row, `None` at the end; an error ends the stream.
    pub async fn next(&mut self) -> Option<Result<Row, Error>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Reads the rest of the stream into `T`s (see [`FromRow`](super::FromRow)).
    pub async fn map_all<T: super::FromRow>(&mut self) -> Result<Vec<T>, Error> {
        let mut out = Vec::new();
        while let Some(row) = self.next().await {
            out.push(row?.to::<T>()?);
        }
        Ok(out)
    }
}

impl Stream for RowStream {
    type Item = Result<Row, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        // A row already buffered goes first.
        if let Poll::Ready(Some(row)) = this.rx.poll_recv(cx) {
            return Poll::Ready(Some(Ok(row)));
        }
        if let Some(call) = this.call.as_mut() {
            let result = std::task::ready!(Pin::new(call).poll(cx));
            this.call = None;
            // The call is over: no attempt may add rows now (one drained in the background
            // after a timeout would otherwise keep sending).
            this.rx.close();
            match result {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => this.error = Some(e),
                Err(join) => {
                    this.error = Some(
                        Error::new(ErrorKind::Other, Outcome::Ambiguous)
                            .with_source(std::io::Error::other(join.to_string())),
                    )
                }
            }
        }
        // Rows buffered before the end, then the error, if any.
        if let Poll::Ready(Some(row)) = this.rx.poll_recv(cx) {
            return Poll::Ready(Some(Ok(row)));
        }
        this.done = true;
        Poll::Ready(this.error.take().map(Err))
    }
}

impl Drop for RowStream {
    fn drop(&mut self) {
        // A call still waiting for its first row (or a connection) would hold its
        // connection and its request slot until then for nobody: end it now. Dropping its
        // future cancels a request already sent (the pool drains it in the background).
        self.rx.close();
        if let Some(call) = self.call.take() {
            call.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiberius::{ColumnData, ColumnType};

    fn row(id: i32) -> Row {
        tiberius::Row::builder()
            .column("id", ColumnType::Int4, ColumnData::I32(Some(id)))
            .build()
            .into()
    }

    #[tokio::test]
    async fn the_first_attempt_to_hand_a_row_over_owns_the_stream() {
        let (tx, mut rx) = mpsc::channel(8);
        let sink = RowSink {
            tx,
            delivered: AtomicU64::new(0),
            owner: AtomicU64::new(0),
            tickets: AtomicU64::new(0),
        };
        let (first, second) = (sink.ticket(), sink.ticket());
        assert_ne!(first, second);
        sink.send(second, row(1))
            .await
            .expect("the first row claims the stream");
        let refused = sink.send(first, row(100)).await.unwrap_err();
        assert!(refused.to_string().contains("another attempt"), "{refused}");
        sink.send(second, row(2)).await.expect("its owner goes on");
        assert_eq!(sink.delivered(), 2);
        drop(sink);
        let mut ids = Vec::new();
        while let Some(row) = rx.recv().await {
            ids.push(row.try_get::<i32>("id").unwrap());
        }
        assert_eq!(ids, [1, 2], "only the owner's rows reach the caller");
    }
}
