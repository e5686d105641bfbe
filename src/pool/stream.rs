//! A TCP stream that knows whether the current attempt wrote anything.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::wire_tx::WireTx;
use crate::classify::rollback::TxEvidence;
use crate::request::WireState;

/// Shared between a [`TrackedStream`] and the connection that owns it.
#[derive(Debug, Default)]
pub(crate) struct Tap {
    written: AtomicU64,
    /// Bytes the server has sent on this connection (it answers, however slowly).
    read: AtomicU64,
    /// Set when an attempt attaches; the attempt's first write checks the socket first.
    check_before_write: AtomicBool,
    attempt: Mutex<Option<Arc<WireState>>>,
    /// What the written requests show about transactions.
    tx: Mutex<WireTx>,
}

impl Tap {
    /// Bytes written since the connection opened.
    pub(crate) fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// Bytes the server has sent on this connection so far.
    pub(crate) fn read(&self) -> u64 {
        self.read.load(Ordering::Acquire)
    }

    /// Marks `wire` as sent on the next successful write (until [`detach`](Self::detach)).
    /// Also starts the attempt's transaction evidence afresh.
    pub(crate) fn attach(&self, wire: Option<Arc<WireState>>) {
        self.wire_tx().reset_evidence();
        self.check_before_write.store(true, Ordering::Release);
        *self.attempt.lock().unwrap_or_else(|e| e.into_inner()) = wire;
    }

    pub(crate) fn detach(&self) {
        self.check_before_write.store(false, Ordering::Release);
        *self.attempt.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// What the requests written since [`attach`](Self::attach) show about transactions.
    pub(crate) fn tx_evidence(&self) -> TxEvidence {
        self.wire_tx().evidence()
    }

    fn wire_tx(&self) -> std::sync::MutexGuard<'_, WireTx> {
        self.tx.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wrote(&self, bufs: &[&[u8]], n: usize) {
        if n > 0 {
            let mut tx = self.wire_tx();
            let mut left = n;
            for buf in bufs {
                let take = left.min(buf.len());
                tx.feed(&buf[..take]);
                left -= take;
                if left == 0 {
                    break;
                }
            }
            drop(tx);
            self.written.fetch_add(n as u64, Ordering::AcqRel);
            if let Some(wire) = &*self.attempt.lock().unwrap_or_else(|e| e.into_inner()) {
                wire.mark_sent();
            }
        }
    }
}

/// The TCP stream under every pooled tiberius client: counts bytes the kernel accepted, so
/// a failure can be called *not sent* (nothing written) or *ambiguous* (something written).
#[derive(Debug)]
pub struct TrackedStream {
    inner: TcpStream,
    tap: Arc<Tap>,
}

impl TrackedStream {
    pub(crate) fn new(inner: TcpStream) -> (Self, Arc<Tap>) {
        let tap = Arc::new(Tap::default());
        (
            TrackedStream {
                inner,
                tap: tap.clone(),
            },
            tap,
        )
    }
}

impl TrackedStream {
    /// The zero-wait check before an attempt's first byte: a pooled connection that the
    /// server (or a middlebox) closed while it sat idle has its FIN or RST waiting in the
    /// socket. Peeking without waiting finds it, and the attempt fails with nothing
    /// written — *not sent*, so even a non-idempotent write may be retried — instead of
    /// writing into a dead socket and reporting an unknown outcome. Unread bytes are not
    /// judged (a server says nothing unasked, but TLS may), only an orderly close or an
    /// error.
    fn closed_before_write(&self, cx: &mut Context<'_>) -> Option<io::Error> {
        if !self.tap.check_before_write.swap(false, Ordering::AcqRel) {
            return None;
        }
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        match self.inner.poll_peek(cx, &mut buf) {
            Poll::Ready(Ok(0)) => Some(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "the server had closed this pooled connection before the request was sent",
            )),
            Poll::Ready(Err(e)) => Some(e),
            Poll::Ready(Ok(_)) | Poll::Pending => None,
        }
    }
}

impl AsyncRead for TrackedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            // One writer (the stream is polled by one task at a time): no locked add.
            let total = self.tap.read.load(Ordering::Relaxed) + read as u64;
            self.tap.read.store(total, Ordering::Release);
        }
        poll
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(closed) = self.closed_before_write(cx) {
            return Poll::Ready(Err(closed));
        }
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            self.tap.wrote(&[buf], n);
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(closed) = self.closed_before_write(cx) {
            return Poll::Ready(Err(closed));
        }
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = poll {
            let slices: Vec<&[u8]> = bufs.iter().map(|b| &b[..]).collect();
            self.tap.wrote(&slices, n);
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
