//! Helpers shared by the chaos proxy integration tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Generous bound for things that must happen (never a bound on how fast).
pub const EVENTUALLY: Duration = Duration::from_secs(10);
/// How long we wait to conclude that something does *not* happen.
pub const QUIET: Duration = Duration::from_millis(300);

pub fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().expect("literal address")
}

/// An echo server on 127.0.0.1:0; counts accepted connections.
pub struct Echo {
    pub addr: SocketAddr,
    pub accepted: mpsc::UnboundedReceiver<SocketAddr>,
    task: JoinHandle<()>,
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn echo_server() -> Echo {
    let listener = TcpListener::bind(any_port()).await.expect("bind echo");
    let addr = listener.local_addr().expect("echo addr");
    let (tx, accepted) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((mut s, peer)) = listener.accept().await {
            let _ = tx.send(peer);
            conns.spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = s.shutdown().await;
            });
        }
    });
    Echo {
        addr,
        accepted,
        task,
    }
}

/// What a recording server saw on one connection.
#[derive(Debug)]
pub struct Recorded {
    pub bytes: Vec<u8>,
    /// `Ok(())` for a clean EOF, the error kind otherwise.
    pub end: Result<(), std::io::ErrorKind>,
}

/// A server that sends `greeting` on accept, then reads until EOF/error and
/// reports what it received (it never closes first unless `close_after_greeting`).
pub struct Recorder {
    pub addr: SocketAddr,
    pub done: mpsc::UnboundedReceiver<Recorded>,
    task: JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn recording_server(greeting: &'static [u8], close_after_greeting: bool) -> Recorder {
    let listener = TcpListener::bind(any_port()).await.expect("bind recorder");
    let addr = listener.local_addr().expect("recorder addr");
    let (tx, done) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((mut s, _)) = listener.accept().await {
            let tx = tx.clone();
            conns.spawn(async move {
                let _ = s.write_all(greeting).await;
                if close_after_greeting {
                    return;
                }
                let mut bytes = Vec::new();
                let end = s
                    .read_to_end(&mut bytes)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.kind());
                let _ = tx.send(Recorded { bytes, end });
            });
        }
    });
    Recorder { addr, done, task }
}

/// Writes `msg` and reads exactly `msg.len()` bytes back (bounded by EVENTUALLY).
pub async fn round_trip(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    s.write_all(msg).await?;
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(EVENTUALLY, s.read_exact(&mut back))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "round trip timed out"))??;
    Ok(back)
}

/// Polls `cond` until it holds (bounded by EVENTUALLY).
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + EVENTUALLY;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One HTTP/1.1 request over a raw TcpStream (`Connection: close`); returns the
/// status and the JSON body.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let mut s = TcpStream::connect(addr).await.expect("connect to control");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).await.expect("send request");
    let mut raw = Vec::new();
    tokio::time::timeout(EVENTUALLY, s.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .expect("read response");
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP head");
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "unexpected chunked response"
    );
    let json = if body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("JSON body {body:?}: {e}"))
    };
    (status, json)
}

/// Connects to a proxy that is expected to reset the connection at once, and
/// returns what the client saw: the reset can already be reported by `connect`
/// (when the RST arrives before the handshake is noticed) or else by the first
/// read. `None` means a clean EOF.
pub async fn connect_and_read_outcome(addr: SocketAddr) -> Option<std::io::ErrorKind> {
    let mut s = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => return Some(e.kind()),
    };
    let mut buf = Vec::new();
    match tokio::time::timeout(EVENTUALLY, s.read_to_end(&mut buf))
        .await
        .expect("the connection should end")
    {
        Ok(_) => None,
        Err(e) => Some(e.kind()),
    }
}
