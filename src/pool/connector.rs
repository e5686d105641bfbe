//! How connections are dialled: pluggable, so tests and users can go through a chaos proxy,
//! a sidecar, or any address.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

/// The future a [`Connector`] returns.
pub type ConnectFuture = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;

/// Opens TCP connections to `host:port` (the configured server, or a redirect target).
pub trait Connector: Send + Sync + 'static {
    /// Dials `host:port`.
    fn connect(&self, host: &str, port: u16) -> ConnectFuture;
}

/// A shared connector.
pub type SharedConnector = Arc<dyn Connector>;

/// The default: plain TCP with `TCP_NODELAY` and keepalive.
#[derive(Debug, Clone)]
pub struct TcpConnector {
    keepalive: Option<Duration>,
}

impl Default for TcpConnector {
    /// Keepalive probes after 30 s idle.
    fn default() -> Self {
        TcpConnector {
            keepalive: Some(Duration::from_secs(30)),
        }
    }
}

impl TcpConnector {
    /// Sets the keepalive idle time (`None` disables keepalive). Defaults to 30 s.
    pub fn with_keepalive(mut self, idle: Option<Duration>) -> Self {
        self.keepalive = idle;
        self
    }
}

/// Applies `TCP_NODELAY` and keepalive to a fresh stream.
pub fn tune(stream: &TcpStream, keepalive: Option<Duration>) -> io::Result<()> {
    stream.set_nodelay(true)?;
    if let Some(idle) = keepalive {
        let sock = socket2::SockRef::from(stream);
        sock.set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(idle))?;
    }
    Ok(())
}

impl Connector for TcpConnector {
    fn connect(&self, host: &str, port: u16) -> ConnectFuture {
        let target = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let keepalive = self.keepalive;
        Box::pin(async move {
            let stream = TcpStream::connect(target).await?;
            tune(&stream, keepalive)?;
            Ok(stream)
        })
    }
}

/// Dials a fixed address whatever host is asked for: e.g. a chaos proxy in front of a
/// region, or a local tunnel. Redirect targets are dialled directly.
#[derive(Clone)]
pub struct FixedAddress {
    host: String,
    port: u16,
    address: std::net::SocketAddr,
    inner: TcpConnector,
}

impl fmt::Debug for FixedAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FixedAddress")
            .field("for", &format_args!("{}:{}", self.host, self.port))
            .field("address", &self.address)
            .finish()
    }
}

impl FixedAddress {
    /// Sends connections meant for `host:port` to `address` instead.
    pub fn new(host: impl Into<String>, port: u16, address: std::net::SocketAddr) -> Self {
        FixedAddress {
            host: host.into(),
            port,
            address,
            inner: TcpConnector::default(),
        }
    }
}

impl Connector for FixedAddress {
    fn connect(&self, host: &str, port: u16) -> ConnectFuture {
        if host == self.host && port == self.port {
            let address = self.address;
            let keepalive = self.inner.keepalive;
            Box::pin(async move {
                let stream = TcpStream::connect(address).await?;
                tune(&stream, keepalive)?;
                Ok(stream)
            })
        } else {
            self.inner.connect(host, port)
        }
    }
}

impl<F> Connector for F
where
    F: Fn(&str, u16) -> ConnectFuture + Send + Sync + 'static,
{
    fn connect(&self, host: &str, port: u16) -> ConnectFuture {
        self(host, port)
    }
}
