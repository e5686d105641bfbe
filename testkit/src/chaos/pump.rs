//! Per-connection work: the two direction pumps of a proxied connection, and the
//! sink that swallows connections accepted during a black-hole.
//!
//! Each direction is a small delay line: a reader stamps every chunk with its
//! delivery time (`now + latency ± jitter`, never earlier than the previous chunk,
//! so order is kept) and queues it; a writer waits for the time, applies
//! black-hole, cut and bandwidth from the *current* toxics, and writes. Latency
//! therefore delays bytes without throttling throughput, and toxics switched at
//! run time take effect on the next chunk.
//!
//! Every connection carries its draw (see [`Toxicity`](super::Toxicity)): wherever
//! the toxics are read, they are read through [`Toxics::for_draw`], so toxics with a
//! toxicity below 1 act on the connections their toxicity covers and leave the others
//! clean.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep, sleep_until, timeout, Instant};

use super::counters::{ActiveGuard, Counters};
use super::proxy::Shared;
use super::toxics::{Direction, Mode, Toxics};

/// Largest chunk read at once.
const CHUNK: usize = 16 * 1024;
/// Chunks buffered in a direction's delay line before the reader waits.
const QUEUE: usize = 256;
/// A bandwidth-capped direction writes at most `rate / SLICES_PER_SEC` bytes at once.
const SLICES_PER_SEC: u64 = 20;

/// Closes `stream` abortively: with `SO_LINGER = 0`, dropping it sends an RST.
pub(crate) fn reset(stream: &TcpStream) {
    // `set_linger` is deprecated because a non-zero linger blocks on drop; a zero
    // linger does not block (tokio's own `set_zero_linger` needs tokio >= 1.50).
    #[allow(deprecated)]
    if let Err(e) = stream.set_linger(Some(Duration::ZERO)) {
        tracing::debug!(error = %e, "chaos: cannot set SO_LINGER=0; closing normally");
    }
}

/// What a connection's watchers saw.
enum Event {
    /// Reset the connection (mode `reset` or a one-shot reset).
    Kill,
    /// Mode `blackhole` began.
    BlackholeBegan,
    /// Some other change.
    Other,
}

/// Waits for the next change of toxics (as they act on a connection with `draw`) or a
/// one-shot reset.
async fn next_event(
    toxics: &mut watch::Receiver<Toxics>,
    kill: &mut watch::Receiver<u64>,
    was_blackhole: &mut bool,
    draw: f64,
) -> Event {
    tokio::select! {
        changed = toxics.changed() => {
            if changed.is_err() {
                // The proxy is gone; its tasks are being dropped.
                return std::future::pending().await;
            }
            let mode = toxics.borrow_and_update().for_draw(draw).mode;
            let began = mode == Mode::Blackhole && !*was_blackhole;
            *was_blackhole = mode == Mode::Blackhole;
            match mode {
                Mode::Reset => Event::Kill,
                _ if began => Event::BlackholeBegan,
                _ => Event::Other,
            }
        }
        changed = kill.changed() => {
            if changed.is_err() {
                return std::future::pending().await;
            }
            kill.borrow_and_update();
            Event::Kill
        }
    }
}

/// Resolves when the connection must be reset.
async fn wait_kill(
    toxics: &mut watch::Receiver<Toxics>,
    kill: &mut watch::Receiver<u64>,
    draw: f64,
) {
    let mut was_blackhole = false;
    loop {
        if let Event::Kill = next_event(toxics, kill, &mut was_blackhole, draw).await {
            return;
        }
    }
}

/// A connection accepted during a black-hole: read and discard, never answer,
/// never close, until the client gives up or the connection is reset.
pub(crate) async fn sink_connection(
    mut client: TcpStream,
    shared: Arc<Shared>,
    mut toxics: watch::Receiver<Toxics>,
    mut kill: watch::Receiver<u64>,
    draw: f64,
) {
    let counters = &shared.counters;
    let _active = ActiveGuard::new(counters);
    Counters::bump(&counters.blackholed);
    let mut buf = vec![0u8; CHUNK];
    let mut was_blackhole = true;
    let mut eof = false;
    loop {
        tokio::select! {
            read = client.read(&mut buf), if !eof => match read {
                Ok(0) if toxics.borrow().for_draw(draw).mode != Mode::Blackhole => return,
                Ok(0) => eof = true,
                Ok(n) => Counters::add(&counters.bytes_discarded, n),
                Err(_) => return,
            },
            event = next_event(&mut toxics, &mut kill, &mut was_blackhole, draw) => match event {
                Event::Kill => {
                    Counters::bump(&counters.reset);
                    reset(&client);
                    return;
                }
                // The client has sent its FIN: once the black-hole is over we may
                // close our side too (before that, "never close").
                _ if eof && !was_blackhole => return,
                _ => {}
            },
        }
    }
}

/// How a proxied connection ended.
enum Outcome {
    /// Both directions saw EOF and passed it on.
    Closed,
    /// A `cut_after` toxic closed it.
    Cut,
    /// Reset by mode `reset` or a one-shot reset.
    Reset,
    /// An I/O error on either side; the other side gets an RST.
    Error(io::Error),
}

/// A proxied connection: dial upstream, then pump both directions until both
/// close, a cut, an error, or a reset.
pub(crate) async fn proxy_connection(
    client: TcpStream,
    shared: Arc<Shared>,
    mut toxics: watch::Receiver<Toxics>,
    mut kill: watch::Receiver<u64>,
    seed: u64,
    draw: f64,
) {
    let counters = &shared.counters;
    let _active = ActiveGuard::new(counters);
    let _ = client.set_nodelay(true);
    let dial = timeout(
        shared.connect_timeout,
        TcpStream::connect(shared.upstream.as_str()),
    );
    let mut upstream = tokio::select! {
        dialled = dial => match dialled {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!(upstream = %shared.upstream, error = %e, "chaos: upstream connect failed");
                Counters::bump(&counters.upstream_errors);
                reset(&client);
                return;
            }
            Err(_) => {
                tracing::debug!(upstream = %shared.upstream, "chaos: upstream connect timed out");
                Counters::bump(&counters.upstream_errors);
                reset(&client);
                return;
            }
        },
        () = wait_kill(&mut toxics, &mut kill, draw) => {
            Counters::bump(&counters.reset);
            reset(&client);
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    let mut client = client;
    let mut rng = fastrand::Rng::with_seed(seed);
    let (up_seed, down_seed) = (rng.u64(..), rng.u64(..));

    let outcome = {
        let (client_read, client_write) = client.split();
        let (upstream_read, upstream_write) = upstream.split();
        let up = pump(
            Direction::Upstream,
            client_read,
            upstream_write,
            toxics.clone(),
            counters,
            up_seed,
            draw,
        );
        let down = pump(
            Direction::Downstream,
            upstream_read,
            client_write,
            toxics.clone(),
            counters,
            down_seed,
            draw,
        );
        tokio::pin!(up, down);
        let initial = toxics.borrow_and_update().for_draw(draw).mode;
        let mut was_blackhole = initial == Mode::Blackhole;
        if was_blackhole {
            Counters::bump(&counters.blackholed);
        }
        let (mut up_done, mut down_done) = (false, false);
        if initial == Mode::Reset {
            Outcome::Reset
        } else {
            loop {
                tokio::select! {
                    end = &mut up, if !up_done => match end {
                        PumpEnd::Eof => up_done = true,
                        PumpEnd::Cut => break Outcome::Cut,
                        PumpEnd::Error(e) => break Outcome::Error(e),
                    },
                    end = &mut down, if !down_done => match end {
                        PumpEnd::Eof => down_done = true,
                        PumpEnd::Cut => break Outcome::Cut,
                        PumpEnd::Error(e) => break Outcome::Error(e),
                    },
                    event = next_event(&mut toxics, &mut kill, &mut was_blackhole, draw) => match event {
                        Event::Kill => break Outcome::Reset,
                        Event::BlackholeBegan => Counters::bump(&counters.blackholed),
                        Event::Other => {}
                    },
                }
                if up_done && down_done {
                    break Outcome::Closed;
                }
            }
        }
    };

    match outcome {
        Outcome::Closed => {}
        Outcome::Cut => Counters::bump(&counters.cut),
        Outcome::Reset => {
            Counters::bump(&counters.reset);
            reset(&client);
            reset(&upstream);
        }
        Outcome::Error(e) => {
            tracing::debug!(error = %e, "chaos: connection error; resetting both sides");
            reset(&client);
            reset(&upstream);
        }
    }
}

/// How one direction ended.
enum PumpEnd {
    /// The source closed and the close was passed on.
    Eof,
    /// `cut_after` bytes were forwarded; the destination was shut down.
    Cut,
    /// Reading or writing failed.
    Error(io::Error),
}

/// A chunk in a direction's delay line.
enum Item {
    Data {
        due: Instant,
        data: Bytes,
    },
    /// The source closed; like data, the close is delivered after the latency.
    Eof {
        due: Instant,
    },
}

/// Forwards one direction, applying its toxics.
async fn pump<R, W>(
    dir: Direction,
    src: R,
    dst: W,
    toxics: watch::Receiver<Toxics>,
    counters: &Counters,
    seed: u64,
    draw: f64,
) -> PumpEnd
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (tx, queue) = mpsc::channel(QUEUE);
    let reader = read_side(
        dir,
        src,
        tx,
        toxics.clone(),
        counters,
        fastrand::Rng::with_seed(seed),
        draw,
    );
    let writer = write_side(dir, dst, queue, toxics, counters, draw);
    tokio::pin!(reader, writer);
    tokio::select! {
        biased;
        end = &mut writer => end,
        read = &mut reader => match read {
            Ok(()) => writer.await,
            Err(e) => PumpEnd::Error(e),
        },
    }
}

async fn read_side<R: AsyncRead + Unpin>(
    dir: Direction,
    mut src: R,
    tx: mpsc::Sender<Item>,
    toxics: watch::Receiver<Toxics>,
    counters: &Counters,
    mut rng: fastrand::Rng,
    draw: f64,
) -> io::Result<()> {
    let mut last_due = Instant::now();
    loop {
        let mut buf = BytesMut::with_capacity(CHUNK);
        let n = src.read_buf(&mut buf).await?;
        let (discard, delay) = {
            let current = toxics.borrow();
            let t = current.for_draw(draw);
            (t.blackholes(dir), t.direction(dir).sample_delay(&mut rng))
        };
        // `sample_delay` is at most MAX_DURATION: the sum cannot overflow.
        let due = (Instant::now() + delay).max(last_due);
        if n == 0 {
            let _ = tx.send(Item::Eof { due }).await;
            return Ok(());
        }
        if discard {
            Counters::add(&counters.bytes_discarded, n);
            continue;
        }
        last_due = due;
        if tx
            .send(Item::Data {
                due,
                data: buf.freeze(),
            })
            .await
            .is_err()
        {
            // The writer has finished (cut or error); the pump is ending.
            return Ok(());
        }
    }
}

async fn write_side<W: AsyncWrite + Unpin>(
    dir: Direction,
    mut dst: W,
    mut queue: mpsc::Receiver<Item>,
    mut toxics: watch::Receiver<Toxics>,
    counters: &Counters,
    draw: f64,
) -> PumpEnd {
    let forwarded = match dir {
        Direction::Upstream => &counters.bytes_up,
        Direction::Downstream => &counters.bytes_down,
    };
    // `cut_after` counts from when its current value was set.
    let mut cut_limit = toxics.borrow().for_draw(draw).direction(dir).cut_after;
    let mut cut_sent: u64 = 0;
    let mut next_free = Instant::now();
    while let Some(item) = queue.recv().await {
        match item {
            Item::Data { due, mut data } => {
                if due > Instant::now() {
                    sleep_until(due).await;
                }
                while !data.is_empty() {
                    if next_free > Instant::now() {
                        sleep_until(next_free).await;
                    }
                    let (discard, limit, rate) = {
                        let current = toxics.borrow_and_update();
                        let t = current.for_draw(draw);
                        let d = t.direction(dir);
                        (t.blackholes(dir), d.cut_after, d.bandwidth)
                    };
                    if discard {
                        Counters::add(&counters.bytes_discarded, data.len());
                        break;
                    }
                    if limit != cut_limit {
                        cut_limit = limit;
                        cut_sent = 0;
                    }
                    if rate == Some(0) {
                        // Stalled: hold the bytes until the toxics change.
                        if toxics.changed().await.is_err() {
                            return PumpEnd::Eof;
                        }
                        continue;
                    }
                    let mut n = data.len();
                    if let Some(rate) = rate {
                        let slice = (rate / SLICES_PER_SEC).clamp(1, CHUNK as u64);
                        n = n.min(usize::try_from(slice).unwrap_or(CHUNK));
                    }
                    if let Some(limit) = cut_limit {
                        let remaining = limit.saturating_sub(cut_sent);
                        if remaining == 0 {
                            return finish_cut(&mut dst).await;
                        }
                        n = n.min(usize::try_from(remaining).unwrap_or(usize::MAX));
                    }
                    if let Err(e) = dst.write_all(&data[..n]).await {
                        return PumpEnd::Error(e);
                    }
                    Counters::add(forwarded, n);
                    cut_sent += n as u64;
                    data.advance(n);
                    if let Some(rate) = rate {
                        next_free =
                            Instant::now() + Duration::from_secs_f64(n as f64 / rate as f64);
                    }
                    if cut_limit.is_some_and(|limit| cut_sent >= limit) {
                        return finish_cut(&mut dst).await;
                    }
                }
            }
            Item::Eof { due } => {
                if due > Instant::now() {
                    sleep_until(due).await;
                }
                // A black-hole never closes: hold the close until it ends.
                loop {
                    if !toxics.borrow_and_update().for_draw(draw).blackholes(dir) {
                        break;
                    }
                    if toxics.changed().await.is_err() {
                        break;
                    }
                }
                let delay = toxics.borrow().for_draw(draw).direction(dir).slow_close;
                if !delay.is_zero() {
                    sleep(delay).await;
                }
                return match dst.shutdown().await {
                    Ok(()) => PumpEnd::Eof,
                    Err(e) => PumpEnd::Error(e),
                };
            }
        }
    }
    // The reader stopped without an EOF marker: it failed, and the pump reports that.
    PumpEnd::Eof
}

async fn finish_cut<W: AsyncWrite + Unpin>(dst: &mut W) -> PumpEnd {
    let _ = dst.flush().await;
    let _ = dst.shutdown().await;
    PumpEnd::Cut
}
