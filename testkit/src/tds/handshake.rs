//! Opening a session: the PRELOGIN exchange, the encryption it negotiates, the TLS
//! handshake carried in PRELOGIN packets, and — when only the login is encrypted — the
//! LOGIN7 read inside TLS before the session falls back to plaintext (MS-TDS 2.2.6.5,
//! 3.3.5.1–3.3.5.3).

use super::counters::bump;
use super::packet::{self, ptype, read_message, Message};
use super::prelogin;
use super::session::ServerCtx;
use super::tls::{self, Encrypted, PreloginFramed, TlsMode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::debug;

/// The session's byte streams once the handshake is over.
pub(crate) type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
/// See [`BoxRead`].
pub(crate) type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// A session ready for its login.
pub(crate) struct Opened {
    pub reader: BoxRead,
    pub writer: BoxWrite,
    /// A message already read (the LOGIN7, or whatever a client sent instead of a
    /// PRELOGIN); the session handles it first.
    pub first: Option<Message>,
}

impl Opened {
    fn plain(stream: TcpStream, first: Option<Message>) -> Opened {
        let (reader, writer) = stream.into_split();
        Opened {
            reader: Box::new(reader),
            writer: Box::new(writer),
            first,
        }
    }
}

/// Reads the PRELOGIN, answers it and runs the TLS handshake it negotiated. `None` when
/// the connection ends (or is not worth going on with) before the login.
pub(crate) async fn open(ctx: &ServerCtx, mut stream: TcpStream, spid: u16) -> Option<Opened> {
    let first = match read_message(&mut stream).await {
        Ok(Some(m)) => m,
        Ok(None) => return None,
        Err(e) => {
            debug!(error = %e, "bad first packet; closing");
            return None;
        }
    };
    if first.ty != ptype::PRELOGIN {
        // Clients may log in without a PRELOGIN (no encryption is negotiated then).
        return Some(Opened::plain(stream, Some(first)));
    }
    let Some(client) = prelogin::parse(&first.payload) else {
        debug!("malformed PRELOGIN; closing");
        return None;
    };
    let mode = ctx.tls.as_ref().map_or(TlsMode::Off, |t| t.mode());
    let (answer, encrypted) = tls::negotiate(mode, client.encryption);
    let reply = packet::frame(&prelogin::reply(answer), 4096, spid, true);
    if stream.write_all(&reply).await.is_err() || stream.flush().await.is_err() {
        return None;
    }
    let identity = match (&ctx.tls, encrypted) {
        (Some(identity), Encrypted::Login | Encrypted::Everything) => identity.clone(),
        _ => return Some(Opened::plain(stream, None)),
    };
    let counters = &ctx.shared.counters;
    if ctx.shared.tls_stall_fault() {
        bump(&counters.tls_handshakes_stalled);
        drain(stream).await;
        return None;
    }
    let mut tls = match identity
        .acceptor()
        .accept(PreloginFramed::new(stream))
        .await
    {
        Ok(tls) => tls,
        Err(e) => {
            bump(&counters.tls_handshakes_failed);
            debug!(error = %e, "TLS handshake failed");
            return None;
        }
    };
    bump(&counters.tls_handshakes);
    tls.get_mut().0.handshake_done();
    if encrypted == Encrypted::Everything {
        let (reader, writer) = tokio::io::split(tls);
        return Some(Opened {
            reader: Box::new(reader),
            writer: Box::new(writer),
            first: None,
        });
    }
    // ENCRYPT_OFF: the LOGIN7 comes inside TLS; everything after it, the login
    // response included, is plaintext on the bare connection.
    let login = match read_message(&mut tls).await {
        Ok(Some(m)) => m,
        Ok(None) => return None,
        Err(e) => {
            debug!(error = %e, "bad LOGIN7 inside TLS; closing");
            return None;
        }
    };
    let (framed, _) = tls.into_inner();
    Some(Opened::plain(framed.into_inner(), Some(login)))
}

/// Reads and discards until the client leaves.
async fn drain(mut stream: TcpStream) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}
