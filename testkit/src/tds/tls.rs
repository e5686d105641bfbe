//! TLS for the TDS server: the negotiation mode, a certificate authority and a server
//! certificate generated at start, and the PRELOGIN framing that carries the TLS
//! handshake (MS-TDS 2.2.6.5: in TDS 7.x the handshake travels as the payload of
//! PRELOGIN (0x12) packets; once it is done, TLS records flow on the bare TCP stream and
//! the TDS packets travel inside them).

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::fmt;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

use super::packet::{ptype, HEADER_LEN};

/// How the server answers a client's PRELOGIN ENCRYPTION option (MS-TDS 2.2.6.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// No certificate: the server answers `ENCRYPT_NOT_SUP` and everything, the login
    /// included, is plaintext. A client that requires encryption gives up. The default.
    #[default]
    Off,
    /// A certificate, encryption optional (SQL Server's "Force Encryption = No", whose
    /// PRELOGIN setting is `ENCRYPT_OFF`): a client offering `ENCRYPT_OFF` gets
    /// `ENCRYPT_OFF` and only its LOGIN7 is encrypted (the TLS session is dropped right
    /// after it, the login response is already plaintext); a client asking for
    /// `ENCRYPT_ON` or `ENCRYPT_REQ` gets `ENCRYPT_ON` and the whole session is
    /// encrypted; a client without encryption (`ENCRYPT_NOT_SUP`) gets
    /// `ENCRYPT_NOT_SUP` and a plaintext session.
    LoginOnly,
    /// A certificate, encryption forced (SQL Server's "Force Encryption = Yes", whose
    /// PRELOGIN setting is `ENCRYPT_ON`): every client gets `ENCRYPT_ON` (or
    /// `ENCRYPT_REQ` when it offered `ENCRYPT_OFF` or `ENCRYPT_NOT_SUP`) and the whole
    /// session is encrypted; a client that does not start a TLS handshake is
    /// disconnected.
    Required,
}

impl TlsMode {
    /// Parses `off`, `login-only` (or `login_only`) and `required`.
    pub fn parse(text: &str) -> Option<TlsMode> {
        match text {
            "off" => Some(TlsMode::Off),
            "login-only" | "login_only" => Some(TlsMode::LoginOnly),
            "required" => Some(TlsMode::Required),
            _ => None,
        }
    }
}

/// PRELOGIN ENCRYPTION values (MS-TDS 2.2.6.5).
pub(crate) mod encrypt {
    pub const OFF: u8 = 0;
    pub const ON: u8 = 1;
    pub const NOT_SUP: u8 = 2;
    pub const REQ: u8 = 3;
}

/// What a session encrypts, as negotiated in PRELOGIN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encrypted {
    /// Nothing.
    Nothing,
    /// The LOGIN7 message only.
    Login,
    /// Everything after the handshake.
    Everything,
}

/// The server's ENCRYPTION answer to the client's and what it means for the session
/// (MS-TDS 2.2.6.5's negotiation table). `client` is `None` when the client sent no
/// ENCRYPTION option (read as `ENCRYPT_NOT_SUP`); `ENCRYPT_CLIENT_CERT` (0x80) is not
/// supported and its bit is ignored.
pub(crate) fn negotiate(mode: TlsMode, client: Option<u8>) -> (u8, Encrypted) {
    let client = client.map_or(encrypt::NOT_SUP, |c| c & 0x7F);
    match mode {
        TlsMode::Off => (encrypt::NOT_SUP, Encrypted::Nothing),
        TlsMode::LoginOnly => match client {
            encrypt::OFF => (encrypt::OFF, Encrypted::Login),
            encrypt::ON | encrypt::REQ => (encrypt::ON, Encrypted::Everything),
            _ => (encrypt::NOT_SUP, Encrypted::Nothing),
        },
        TlsMode::Required => match client {
            encrypt::ON | encrypt::REQ => (encrypt::ON, Encrypted::Everything),
            // The client did not ask for encryption; the server demands it. A client
            // that cannot do TLS closes the connection (MS-TDS 2.2.6.5).
            _ => (encrypt::REQ, Encrypted::Everything),
        },
    }
}

/// The certificates a TLS-enabled server was started with: a CA generated for this
/// server alone, and a server certificate it signed for `localhost`, `127.0.0.1` and
/// `::1`. Clients trust the server by trusting [`TlsIdentity::ca_pem`].
pub struct TlsIdentity {
    mode: TlsMode,
    ca_pem: String,
    acceptor: TlsAcceptor,
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// The names the server certificate is valid for.
pub const SERVER_CERT_NAMES: &[&str] = &["localhost", "127.0.0.1", "::1"];

impl TlsIdentity {
    /// Generates a fresh CA and server certificate (ECDSA P-256) and the TLS 1.2
    /// acceptor serving them. TLS 1.2 only, as SQL Server speaks inside TDS 7.x PRELOGIN
    /// packets (TLS 1.3 comes with TDS 8.0's strict encryption, which is not supported).
    pub(crate) fn generate(mode: TlsMode) -> io::Result<TlsIdentity> {
        let err = |what: &str, e: &dyn fmt::Display| io::Error::other(format!("{what}: {e}"));
        let ca_key = KeyPair::generate().map_err(|e| err("CA key", &e))?;
        let mut ca_params =
            CertificateParams::new(Vec::<String>::new()).map_err(|e| err("CA", &e))?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "mssql-testkit test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params
            .self_signed(&ca_key)
            .map_err(|e| err("CA certificate", &e))?;

        let key = KeyPair::generate().map_err(|e| err("server key", &e))?;
        let names: Vec<String> = SERVER_CERT_NAMES.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).map_err(|e| err("server names", &e))?;
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let issuer = Issuer::new(ca_params, ca_key);
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|e| err("server certificate", &e))?;

        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS12])
            .map_err(|e| err("TLS versions", &e))?
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone(), ca_cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .map_err(|e| err("TLS configuration", &e))?;
        Ok(TlsIdentity {
            mode,
            ca_pem: pem_certificate(ca_cert.der()),
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// The negotiation mode.
    pub fn mode(&self) -> TlsMode {
        self.mode
    }

    /// The CA certificate (PEM) that signed the server certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The CA certificate in DER form.
    pub fn ca_der(&self) -> io::Result<CertificateDer<'static>> {
        use rustls::pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(self.ca_pem.as_bytes())
            .map_err(|e| io::Error::other(format!("CA PEM: {e}")))
    }

    /// Writes the CA certificate (PEM) to `path`, for clients that read a CA file
    /// (e.g. `TrustServerCertificateCA=<path>`; tiberius wants a `.pem`, `.crt` or `.der`
    /// extension).
    pub fn write_ca_pem(&self, path: impl AsRef<Path>) -> io::Result<()> {
        std::fs::write(path, &self.ca_pem)
    }

    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }
}

/// PEM text of one DER certificate (RFC 7468: base64 in lines of 64 characters).
fn pem_certificate(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Largest PRELOGIN packet the server sends while it carries the handshake (the
/// default packet size: the login has not negotiated another yet).
const HANDSHAKE_PACKET: usize = 4096;

/// A stream that, during the TLS handshake, unwraps the client's PRELOGIN packets into
/// raw TLS bytes and wraps the server's TLS bytes into PRELOGIN packets; after
/// [`PreloginFramed::handshake_done`] it passes bytes through untouched.
#[derive(Debug)]
pub(crate) struct PreloginFramed<S> {
    inner: S,
    handshaking: bool,
    /// The packet header being read, and how much of it has arrived.
    header: [u8; HEADER_LEN],
    header_len: usize,
    /// Payload bytes of the current packet not read yet.
    body_left: usize,
    /// TLS bytes written since the last flush (framed at the flush).
    unframed: Vec<u8>,
    /// Framed bytes not written to `inner` yet.
    framed: Vec<u8>,
    framed_pos: usize,
}

impl<S> PreloginFramed<S> {
    pub(crate) fn new(inner: S) -> Self {
        PreloginFramed {
            inner,
            handshaking: true,
            header: [0; HEADER_LEN],
            header_len: 0,
            body_left: 0,
            unframed: Vec::new(),
            framed: Vec::new(),
            framed_pos: 0,
        }
    }

    /// From now on bytes pass through unframed.
    pub(crate) fn handshake_done(&mut self) {
        self.handshaking = false;
    }

    pub(crate) fn into_inner(self) -> S {
        self.inner
    }

    /// Moves the unframed bytes into PRELOGIN packets.
    fn frame(&mut self) {
        let chunk = HANDSHAKE_PACKET - HEADER_LEN;
        let count = self.unframed.len().div_ceil(chunk);
        for (i, piece) in self.unframed.chunks(chunk).enumerate() {
            let len = (piece.len() + HEADER_LEN) as u16;
            let eom = u8::from(i + 1 == count);
            self.framed.push(ptype::PRELOGIN);
            self.framed.push(eom);
            self.framed.extend_from_slice(&len.to_be_bytes());
            self.framed
                .extend_from_slice(&[0, 0, (i as u8).wrapping_add(1), 0]);
            self.framed.extend_from_slice(piece);
        }
        self.unframed.clear();
    }
}

impl<S: AsyncWrite + Unpin> PreloginFramed<S> {
    /// Writes out the framed bytes.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.framed_pos < self.framed.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.framed[self.framed_pos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.framed_pos += n;
        }
        self.framed.clear();
        self.framed_pos = 0;
        Poll::Ready(Ok(()))
    }
}

fn bad(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl<S: AsyncRead + Unpin> AsyncRead for PreloginFramed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.handshaking {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        while this.body_left == 0 {
            while this.header_len < HEADER_LEN {
                let mut hb = ReadBuf::new(&mut this.header[this.header_len..]);
                ready!(Pin::new(&mut this.inner).poll_read(cx, &mut hb))?;
                let n = hb.filled().len();
                if n == 0 {
                    return if this.header_len == 0 {
                        Poll::Ready(Ok(()))
                    } else {
                        Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()))
                    };
                }
                this.header_len += n;
            }
            this.header_len = 0;
            if this.header[0] != ptype::PRELOGIN {
                return Poll::Ready(Err(bad(
                    "expected a PRELOGIN packet carrying the TLS handshake",
                )));
            }
            let len = u16::from_be_bytes([this.header[2], this.header[3]]) as usize;
            this.body_left = len
                .checked_sub(HEADER_LEN)
                .ok_or_else(|| bad("packet length shorter than its header"))?;
        }
        let want = this.body_left.min(buf.remaining());
        let mut limited = vec![0u8; want];
        let mut rb = ReadBuf::new(&mut limited);
        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
        let n = rb.filled().len();
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
        }
        buf.put_slice(&limited[..n]);
        this.body_left -= n;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PreloginFramed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.handshaking {
            this.unframed.extend_from_slice(buf);
            return Poll::Ready(Ok(buf.len()));
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.framed.is_empty() && !this.unframed.is_empty() {
            this.frame();
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn negotiation_follows_the_ms_tds_table() {
        use encrypt::*;
        use Encrypted::*;
        let off = TlsMode::Off;
        for c in [None, Some(OFF), Some(ON), Some(NOT_SUP), Some(REQ)] {
            assert_eq!(negotiate(off, c), (NOT_SUP, Nothing), "{c:?}");
        }
        let login = TlsMode::LoginOnly;
        assert_eq!(negotiate(login, Some(OFF)), (OFF, Login));
        assert_eq!(negotiate(login, Some(ON)), (ON, Everything));
        assert_eq!(negotiate(login, Some(REQ)), (ON, Everything));
        assert_eq!(negotiate(login, Some(NOT_SUP)), (NOT_SUP, Nothing));
        assert_eq!(negotiate(login, None), (NOT_SUP, Nothing));
        let req = TlsMode::Required;
        assert_eq!(negotiate(req, Some(OFF)), (REQ, Everything));
        assert_eq!(negotiate(req, Some(ON)), (ON, Everything));
        assert_eq!(negotiate(req, Some(REQ)), (ON, Everything));
        assert_eq!(negotiate(req, Some(NOT_SUP)), (REQ, Everything));
        // ENCRYPT_CLIENT_CERT's bit is ignored.
        assert_eq!(negotiate(req, Some(0x80 | ON)), (ON, Everything));
    }

    #[test]
    fn modes_parse() {
        assert_eq!(TlsMode::parse("off"), Some(TlsMode::Off));
        assert_eq!(TlsMode::parse("login-only"), Some(TlsMode::LoginOnly));
        assert_eq!(TlsMode::parse("required"), Some(TlsMode::Required));
        assert_eq!(TlsMode::parse("on"), None);
    }

    #[test]
    fn identity_has_a_pem_ca() {
        let id = TlsIdentity::generate(TlsMode::Required).unwrap();
        assert!(id.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(!id.ca_der().unwrap().is_empty());
        assert!(id.ca_pem().lines().all(|l| l.len() <= 64));
    }

    #[tokio::test]
    async fn handshake_bytes_are_framed_as_prelogin_packets() {
        let (a, mut b) = tokio::io::duplex(64 * 1024);
        let mut framed = PreloginFramed::new(a);
        let payload = vec![7u8; 5000];
        framed.write_all(&payload).await.unwrap();
        framed.flush().await.unwrap();
        let mut wire = vec![0u8; 5000 + 2 * HEADER_LEN];
        b.read_exact(&mut wire).await.unwrap();
        assert_eq!(&wire[..2], &[ptype::PRELOGIN, 0]);
        assert_eq!(u16::from_be_bytes([wire[2], wire[3]]), 4096);
        assert_eq!(&wire[4096..4098], &[ptype::PRELOGIN, 1]);
        assert_eq!(
            u16::from_be_bytes([wire[4098], wire[4099]]) as usize,
            5000 - 4088 + HEADER_LEN
        );
        // After the handshake bytes pass through.
        framed.handshake_done();
        framed.write_all(b"raw").await.unwrap();
        framed.flush().await.unwrap();
        let mut raw = [0u8; 3];
        b.read_exact(&mut raw).await.unwrap();
        assert_eq!(&raw, b"raw");
    }

    #[tokio::test]
    async fn prelogin_packets_are_unwrapped_and_others_rejected() {
        let (a, mut b) = tokio::io::duplex(1024);
        let mut framed = PreloginFramed::new(a);
        b.write_all(&[ptype::PRELOGIN, 1, 0, 11, 0, 0, 1, 0, 1, 2, 3])
            .await
            .unwrap();
        b.write_all(&[ptype::PRELOGIN, 1, 0, 10, 0, 0, 2, 0, 4, 5])
            .await
            .unwrap();
        let mut got = [0u8; 5];
        framed.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [1, 2, 3, 4, 5]);
        b.write_all(&[ptype::LOGIN7, 1, 0, 9, 0, 0, 1, 0, 9])
            .await
            .unwrap();
        let e = framed.read_u8().await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}
