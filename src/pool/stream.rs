//! A TCP stream that knows whether the current attempt wrote anything.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
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
    attempt: Mutex<Option<Arc<WireState>>>,
    /// What the written requests show about transactions.
    tx: Mutex<WireTx>,
}

impl Tap {
    /// Bytes written since the connection opened.
    pub(crate) fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// Marks `wire` as sent on the next successful write (until [`detach`](Self::detach)).
    /// Also starts the attempt's transaction evidence afresh.
    pub(crate) fn attach(&self, wire: Option<Arc<WireState>>) {
        self.wire_tx().reset_evidence();
        *self.attempt.lock().unwrap_or_else(|e| e.into_inner()) = wire;
    }

    pub(crate) fn detach(&self) {
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

impl AsyncRead for TrackedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
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
