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

    /// Hands one row over, waiting while the caller's buffer is full. Fails when the
    /// caller dropped its stream.
    pub(crate) async fn send(&self, row: Row) -> Result<(), Error> {
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
/// Dropping the stream stops the query: the connection is closed rather than read to the end.
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
        // The call's task notices the closed buffer at its next row and stops.
        self.rx.close();
    }
}
