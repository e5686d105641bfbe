//! One client connection: handshake (PRELOGIN, LOGIN7), then SQL batches, RPCs,
//! attentions and transaction-manager requests until the client leaves or the session
//! is killed.

use super::batch::{self, ErrorEffect, SessionValues};
use super::counters::bump;
use super::errors::ErrorSpec;
use super::faults::{DisconnectMode, DropPoint, LoginFate, SessionCtl, Shared, StallPoint};
use super::handshake::{self, BoxWrite, Opened};
use super::options::{opens_implicit_transaction, SessionOptions};
use super::packet::{self, ptype, read_message, Message};
use super::rpc::{self, Param, RpcError};
use super::sql::{self, SqlError, Value};
use super::tls::TlsIdentity;
use super::tokens::{done, tok, utf16_lossy, Reader, TokenWriter, COLLATION};
use super::translate::{self, Action, Kind, Stmt};
use super::{login7, procs};
use rusqlite::{Connection, InterruptHandle};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

/// Messages read ahead of the one the session is serving. A client waits for each
/// answer, so one is enough for the ATTENTION that cancels a running request (which
/// the reader counts as it reads it, before queueing it); more would only let a client
/// that pipelines make the server buffer more messages of up to 64 MB each.
const QUEUED_MESSAGES: usize = 1;

/// Server-wide settings every session reads.
#[derive(Debug)]
pub(crate) struct ServerCtx {
    pub shared: Arc<Shared>,
    pub user: String,
    pub password: String,
    pub access_tokens: Vec<String>,
    pub database: String,
    pub db_path: PathBuf,
    pub busy_timeout: Duration,
    pub server_name: String,
    pub version: String,
    pub next_spid: AtomicU64,
    /// The certificate and negotiation mode, when the server speaks TLS.
    pub tls: Option<Arc<TlsIdentity>>,
}

/// Why a request stopped early.
enum Stop {
    /// A batch-aborting error was written; the rest of the batch is skipped.
    Error,
    /// Inside a `TRY` block, an error it catches (message rendered, not written): the
    /// rest of the block is skipped and its `CATCH` block runs.
    Caught(Box<ErrorSpec>),
    /// An attention arrived (or the session is going away).
    Interrupted,
}

struct Session {
    ctx: Arc<ServerCtx>,
    ctl: Arc<SessionCtl>,
    events: watch::Receiver<u64>,
    attn: Arc<AtomicU64>,
    attn_base: u64,
    attn_answered: u64,
    closed: Arc<AtomicBool>,
    writer: BoxWrite,
    spid: u16,
    packet_size: usize,
    user: String,
    conn: Option<Connection>,
    interrupt: Option<Arc<InterruptHandle>>,
    trancount: u32,
    tran_desc: u64,
    /// The session's SET options (`XACT_ABORT`, `NOCOUNT`, isolation level, …).
    options: SessionOptions,
    /// `@@ERROR`: the last statement's error number (0 after a success).
    last_error: u32,
    /// Whether the current request reported an error (DONEPROC's error bit).
    request_failed: bool,
    /// `TRY` blocks the running statement is inside.
    try_depth: u32,
    /// The errors of the `CATCH` blocks running (innermost last, message rendered), for
    /// `ERROR_NUMBER()` & co and `THROW;`.
    catching: Vec<ErrorSpec>,
    /// The open transaction is doomed: a caught error would have rolled it back (see
    /// [`batch::dooms`]); only ROLLBACK ends it, and the batch's end rolls it back.
    doomed: bool,
    /// Offsets in the response buffer just after each ROW token (for stall faults).
    row_ends: Vec<usize>,
    /// Close the connection once the current response is written.
    close_after: bool,
    /// Prepared statements and RPC output parameters.
    procs: procs::ProcState,
}

/// Serves one connection until it ends.
pub(crate) async fn serve(ctx: Arc<ServerCtx>, stream: TcpStream, ctl: Arc<SessionCtl>) {
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().ok();
    let spid = 51 + (ctx.next_spid.fetch_add(1, Ordering::Relaxed) % 30000) as u16;
    // PRELOGIN and TLS, until the login; a kill ends it too.
    let opened = tokio::select! {
        opened = handshake::open(&ctx, stream, spid) => opened,
        _ = killed(&ctl) => None,
    };
    let Some(Opened {
        reader: mut rd,
        writer,
        first,
    }) = opened
    else {
        return;
    };
    let (tx, mut rx) = mpsc::channel::<(Message, u64)>(QUEUED_MESSAGES);
    let attn = Arc::new(AtomicU64::new(0));
    let closed = Arc::new(AtomicBool::new(false));
    let reader = {
        let attn = attn.clone();
        let closed = closed.clone();
        let ctl = ctl.clone();
        let shared = ctx.shared.clone();
        tokio::spawn(async move {
            loop {
                match read_message(&mut rd).await {
                    Ok(Some(m)) => {
                        // Each message carries the number of attentions seen before
                        // it, so a request is only cancelled by a later attention.
                        let seq = if m.ty == ptype::ATTENTION {
                            bump(&shared.counters.attentions);
                            let seq = attn.fetch_add(1, Ordering::SeqCst) + 1;
                            ctl.bump();
                            seq
                        } else {
                            attn.load(Ordering::SeqCst)
                        };
                        if tx.send((m, seq)).await.is_err() {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        debug!(?peer, error = %e, "closing session after a bad or truncated packet");
                        break;
                    }
                }
            }
            closed.store(true, Ordering::SeqCst);
            ctl.bump();
        })
    };
    let mut s = Session {
        events: ctl.events.subscribe(),
        ctx,
        ctl,
        attn,
        attn_base: 0,
        attn_answered: 0,
        closed,
        writer,
        spid,
        packet_size: 4096,
        user: String::new(),
        conn: None,
        interrupt: None,
        trancount: 0,
        tran_desc: 0,
        options: SessionOptions::default(),
        last_error: 0,
        request_failed: false,
        try_depth: 0,
        catching: Vec::new(),
        doomed: false,
        row_ends: Vec::new(),
        close_after: false,
        procs: procs::ProcState::default(),
    };
    if let Err(e) = s.run(&mut rx, first).await {
        debug!(?peer, error = %e, "session ended with an I/O error");
    }
    let _ = s.writer.shutdown().await;
    reader.abort();
    if let Some(h) = &s.interrupt {
        h.interrupt();
    }
    // Dropping the connection rolls back any open transaction; do it off the runtime.
    if let Some(conn) = s.conn.take() {
        let _ = tokio::task::spawn_blocking(move || drop(conn)).await;
    }
}

/// Resolves once the session is killed.
async fn killed(ctl: &SessionCtl) {
    let mut events = ctl.events.subscribe();
    while !ctl.killed.load(Ordering::SeqCst) {
        if events.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Session {
    fn killed(&self) -> bool {
        self.ctl.killed.load(Ordering::SeqCst)
    }

    fn peer_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn attention_pending(&self) -> bool {
        self.attn.load(Ordering::SeqCst) > self.attn_base
    }

    /// Whether the running request must stop: an attention, a kill, or the client
    /// disconnecting — unless the server is in [`DisconnectMode::Complete`], where work
    /// in flight at a disconnect runs to its end (and an autocommit statement commits).
    fn interrupt_requested(&self) -> bool {
        let disconnect_stops = self.ctx.shared.disconnect_mode() == DisconnectMode::RollBack;
        self.killed() || (disconnect_stops && self.peer_closed()) || self.attention_pending()
    }

    /// Waits until an attention, a kill or the peer closing.
    async fn interrupted(&mut self) {
        loop {
            if self.interrupt_requested() {
                return;
            }
            if self.events.changed().await.is_err() {
                return;
            }
        }
    }

    /// Sleeps, returning false if interrupted first.
    async fn sleep(&mut self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = self.interrupted() => false,
        }
    }

    async fn next_message(&mut self, rx: &mut mpsc::Receiver<(Message, u64)>) -> Option<Message> {
        loop {
            if self.killed() {
                return None;
            }
            tokio::select! {
                m = rx.recv() => {
                    return m.map(|(m, seq)| {
                        self.attn_base = seq;
                        m
                    });
                }
                r = self.events.changed() => {
                    if r.is_err() {
                        return None;
                    }
                }
            }
        }
    }

    async fn send(&mut self, tokens: &[u8]) -> std::io::Result<()> {
        let wire = packet::frame(tokens, self.packet_size, self.spid, true);
        self.writer.write_all(&wire).await?;
        self.writer.flush().await
    }

    fn render(&self, e: &ErrorSpec) -> String {
        e.render(
            &self.user,
            &self.ctx.database,
            &self.ctx.server_name,
            self.spid,
        )
    }

    fn error(&self, w: &mut TokenWriter, e: &ErrorSpec) {
        w.error(e, &self.render(e), &self.ctx.server_name);
    }

    /// Serves the session; `first` is a message the handshake already read.
    async fn run(
        &mut self,
        rx: &mut mpsc::Receiver<(Message, u64)>,
        first: Option<Message>,
    ) -> std::io::Result<()> {
        // PRELOGIN (and TLS) are done: LOGIN7 now.
        let m = match first {
            Some(m) => m,
            None => match self.next_message(rx).await {
                Some(m) => m,
                None => return Ok(()),
            },
        };
        if m.ty != ptype::LOGIN7 {
            debug!(ty = m.ty, "expected LOGIN7; closing");
            return Ok(());
        }
        if !self.login(&m.payload).await? {
            return Ok(());
        }
        while let Some(m) = self.next_message(rx).await {
            match m.ty {
                ptype::SQL_BATCH => {
                    bump(&self.ctx.shared.counters.batches);
                    let body = rpc::skip_all_headers(&m.payload).unwrap_or(&m.payload);
                    let text = utf16_lossy(body);
                    self.request(text, Vec::new(), false).await?;
                }
                ptype::RPC => {
                    bump(&self.ctx.shared.counters.rpcs);
                    self.rpc(&m.payload).await?;
                }
                ptype::ATTENTION => {
                    let seen = self.attn_base;
                    if seen > self.attn_answered {
                        self.attn_answered = seen;
                        let mut w = TokenWriter::new();
                        w.done(tok::DONE, done::ATTN, 0, 0);
                        self.send(&w.buf).await?;
                    }
                }
                ptype::TRANSACTION_MANAGER => self.transaction_manager(&m.payload).await?,
                other => {
                    warn!(ty = other, "unsupported packet type; closing session");
                    return Ok(());
                }
            }
            if self.close_after || self.killed() {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Handles LOGIN7; true when the session may continue.
    async fn login(&mut self, payload: &[u8]) -> std::io::Result<bool> {
        let counters = &self.ctx.shared.counters;
        let Some(l) = login7::parse(payload) else {
            debug!("malformed LOGIN7; closing");
            return Ok(false);
        };
        self.user = l.user.clone();
        self.packet_size = match l.packet_size {
            512..=32767 => l.packet_size as usize,
            _ => 4096,
        };
        let tds_version = match l.tds_version {
            v @ (0x7200_0009 | 0x7209_0002 | 0x730A_0003 | 0x730B_0003 | 0x7400_0004) => v,
            _ => 0x7400_0004,
        };
        let mut w = TokenWriter::new();
        match self.ctx.shared.login_fault() {
            LoginFate::Fail(e) => {
                bump(&counters.failed_logins);
                bump(&counters.errors_injected);
                self.error(&mut w, &e);
                w.done(tok::DONE, done::ERROR, 0, 0);
                self.send(&w.buf).await?;
                return Ok(false);
            }
            LoginFate::Redirect(host, port) => {
                bump(&counters.redirects);
                w.login_ack(tds_version);
                w.env_change_routing(&host, port);
                w.done(tok::DONE, done::FINAL, 0, 0);
                self.send(&w.buf).await?;
                return Ok(false);
            }
            LoginFate::Proceed => {}
        }
        let creds_ok = match &l.access_token {
            Some(token) => self.ctx.access_tokens.iter().any(|t| t == token),
            None => !l.sspi && l.user == self.ctx.user && l.password == self.ctx.password,
        };
        let db_ok = login7::database_accepted(&l.database, &self.ctx.database);
        if !creds_ok || !db_ok {
            bump(&counters.failed_logins);
            if creds_ok {
                let db = ErrorSpec::cannot_open_database(&l.database);
                self.error(&mut w, &db);
            }
            let e = ErrorSpec::login_failed().with_state(if creds_ok { 38 } else { 8 });
            self.error(&mut w, &e);
            w.done(tok::DONE, done::ERROR, 0, 0);
            self.send(&w.buf).await?;
            return Ok(false);
        }
        let path = self.ctx.db_path.clone();
        let busy = self.ctx.busy_timeout;
        let opened = tokio::task::spawn_blocking(move || sql::open(&path, busy)).await;
        let conn = match opened {
            Ok(Ok(c)) => c,
            other => {
                warn!(?other, "cannot open the SQLite database");
                bump(&counters.failed_logins);
                let e = ErrorSpec::cannot_open_database(&self.ctx.database);
                self.error(&mut w, &e);
                w.done(tok::DONE, done::ERROR, 0, 0);
                self.send(&w.buf).await?;
                return Ok(false);
            }
        };
        self.interrupt = Some(Arc::new(conn.get_interrupt_handle()));
        self.conn = Some(conn);
        let db = self.ctx.database.clone();
        w.env_change_str(1, &db, "master");
        w.info(
            5701,
            &format!("Changed database context to '{db}'."),
            &self.ctx.server_name,
        );
        w.env_change_bytes(7, &COLLATION, &[]);
        w.login_ack(tds_version);
        let ps = self.packet_size.to_string();
        w.env_change_str(4, &ps, &ps);
        w.done(tok::DONE, done::FINAL, 0, 0);
        bump(&counters.logins);
        self.send(&w.buf).await?;
        Ok(true)
    }

    /// Answers an RPC that fails before it runs: the error and a DONEPROC with the error bit.
    async fn rpc_error(&mut self, e: &ErrorSpec) -> std::io::Result<()> {
        let mut w = TokenWriter::new();
        self.error(&mut w, e);
        w.done(tok::DONEPROC, done::ERROR, 0, 0);
        self.send(&w.buf).await
    }

    async fn rpc(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let req = match rpc::parse(payload) {
            Ok(r) => r,
            Err(RpcError::Malformed) => {
                debug!("malformed RPC request; closing session");
                self.close_after = true;
                return Ok(());
            }
            Err(RpcError::InvalidValue { index, name, ty }) => {
                let e = ErrorSpec::new(
                    8023,
                    16,
                    format!(
                        "The incoming tabular data stream (TDS) remote procedure call (RPC) protocol stream is incorrect. Parameter {index} (\"{name}\"): The supplied value is not a valid instance of data type {ty}. Check the source data for invalid values. An example of an invalid value is data of numeric type with scale greater than precision."
                    ),
                );
                return self.rpc_error(&e).await;
            }
            Err(RpcError::InvalidLength { index, name, ty }) => {
                let e = ErrorSpec::new(
                    8016,
                    16,
                    format!(
                        "The incoming tabular data stream (TDS) remote procedure call (RPC) protocol stream is incorrect. Parameter {index} (\"{name}\"): Data type 0x{ty:02X} has an invalid data length or metadata length."
                    ),
                );
                return self.rpc_error(&e).await;
            }
            Err(RpcError::UnsupportedType { index, name, ty }) => {
                let e = ErrorSpec::new(
                    8009,
                    16,
                    format!(
                        "The incoming tabular data stream (TDS) remote procedure call (RPC) protocol stream is incorrect. Parameter {index} (\"{name}\"): Data type 0x{ty:02X} is unknown."
                    ),
                );
                return self.rpc_error(&e).await;
            }
        };
        let (stmt, values) = match self.procs.resolve(req) {
            Ok(procs::Call::Run { stmt, params }) => (stmt, params),
            Ok(procs::Call::Nothing) => (String::new(), Vec::new()),
            Err(e) => {
                return self.rpc_error(&e).await;
            }
        };
        // The statement runs as a module (dynamic SQL or a prepared statement): SQL Server
        // restores the SET options (XACT_ABORT, NOCOUNT, isolation level…) and drops the
        // #temp tables it created when it returns.
        let options = self.options;
        let temp_before = if stmt.contains('#') {
            Some(self.temp_tables().await)
        } else {
            None
        };
        let answered = self.request(stmt, values, true).await;
        self.options = options;
        if let Some(before) = temp_before {
            let created: Vec<String> = self
                .temp_tables()
                .await
                .into_iter()
                .filter(|t| !before.contains(t))
                .collect();
            if !created.is_empty() {
                self.blocking(move |c| {
                    for table in created {
                        let _ = c.execute(
                            &format!("DROP TABLE temp.\"{}\"", table.replace('"', "\"\"")),
                            [],
                        );
                    }
                })
                .await;
            }
        }
        answered
    }

    /// The session's `#temp` tables (SQLite TEMP tables of its connection).
    async fn temp_tables(&mut self) -> Vec<String> {
        self.blocking(|c| {
            let mut names = Vec::new();
            if let Ok(mut stmt) =
                c.prepare("SELECT name FROM temp.sqlite_master WHERE type = 'table'")
            {
                if let Ok(rows) = stmt.query_map([], |r| r.get::<_, String>(0)) {
                    names.extend(rows.flatten());
                }
            }
            names
        })
        .await
        .unwrap_or_default()
    }

    /// Runs a batch (or the statement of an `sp_executesql` RPC) and writes the response.
    async fn request(
        &mut self,
        text: String,
        params: Vec<Param>,
        in_proc: bool,
    ) -> std::io::Result<()> {
        let shared = self.ctx.shared.clone();
        let mut w = TokenWriter::new();
        let mut dones: Vec<usize> = Vec::new();
        let done_tok = if in_proc { tok::DONEINPROC } else { tok::DONE };
        let mut outcome: Result<(), Stop> = Ok(());
        let trancount_before = self.trancount;
        self.request_failed = false;
        self.row_ends.clear();
        if let Some(fault) = shared.query_fault(&text) {
            bump(&shared.counters.errors_injected);
            if fault.error.number == 1205 && self.trancount > 0 {
                self.rollback_now(&mut w).await;
            }
            self.error(&mut w, &fault.error);
            self.last_error = fault.error.number;
            self.request_failed = true;
            dones.push(w.len());
            w.done(done_tok, done::ERROR, 0, 0);
            if fault.close_connection {
                self.close_after = true;
            }
            outcome = Err(Stop::Error);
        }
        if outcome.is_ok() {
            let delay = shared.query_delay();
            if !delay.is_zero() && !self.sleep(delay).await {
                outcome = Err(Stop::Interrupted);
            }
        }
        if outcome.is_ok() {
            match translate::parse_batch(&text) {
                Ok(stmts) => {
                    outcome =
                        Box::pin(self.exec_list(&stmts, &params, &mut w, &mut dones, done_tok))
                            .await;
                }
                Err(e) => {
                    // A batch that does not parse runs no statement at all.
                    self.error(&mut w, &e);
                    self.last_error = e.number;
                    self.request_failed = true;
                    dones.push(w.len());
                    w.done(done_tok, done::ERROR, 0, 0);
                }
            }
        }
        if matches!(outcome, Err(Stop::Interrupted)) || self.interrupt_requested() {
            if self.killed() || self.peer_closed() {
                self.close_after = true;
                return Ok(());
            }
            // Attention: discard the partial response, acknowledge with DONE(ATTN). With
            // XACT_ABORT ON, SQL Server also rolls back the open transaction.
            self.attn_answered = self.attn.load(Ordering::SeqCst);
            let mut w = TokenWriter::new();
            if self.options.xact_abort() && self.trancount > 0 {
                self.rollback_now(&mut w).await;
            }
            w.done(tok::DONE, done::ATTN, 0, 0);
            return self.send(&w.buf).await;
        }
        if self.peer_closed() {
            // Disconnect-completes mode: the work ran to its end; no one reads the answer.
            self.close_after = true;
            return Ok(());
        }
        // A doomed transaction still open when the batch ends is rolled back, with 3998.
        if self.doomed && self.trancount > 0 {
            let e = batch::doomed_at_end();
            self.error(&mut w, &e);
            self.last_error = e.number;
            self.request_failed = true;
            self.rollback_now(&mut w).await;
        }
        if in_proc && outcome.is_ok() && self.trancount != trancount_before {
            // A module (dynamic SQL, a prepared statement) must end with the transaction
            // count it began with; SQL Server says so after the module ran, and the
            // transaction stays as the module left it.
            let e = ErrorSpec::new(
                266,
                16,
                format!(
                    "Transaction count after EXECUTE indicates a mismatching number of BEGIN and COMMIT statements. Previous count = {trancount_before}, current count = {}.",
                    self.trancount
                ),
            )
            .with_state(2);
            self.error(&mut w, &e);
            self.last_error = e.number;
            self.request_failed = true;
        }
        // DONE_MORE on every DONE but the last of a batch; in a proc, all DONEINPROC
        // are followed by RETURNSTATUS + DONEPROC.
        if dones.is_empty() {
            dones.push(w.len());
            w.done(done_tok, done::FINAL, 0, 0);
        }
        for (i, &at) in dones.iter().enumerate() {
            let last = i + 1 == dones.len() && !in_proc;
            let mut status = u16::from_le_bytes([w.buf[at + 1], w.buf[at + 2]]);
            if last {
                status &= !done::MORE;
            } else {
                status |= done::MORE;
            }
            w.buf[at + 1..at + 3].copy_from_slice(&status.to_le_bytes());
        }
        let mut final_done = *dones.last().unwrap_or(&0);
        if in_proc {
            let failed = self.request_failed;
            if !failed {
                w.return_status(0);
            }
            for r in self.procs.take_returns() {
                w.return_value(r.ordinal, &r.name, r.ty, &r.value);
            }
            final_done = w.len();
            w.done(
                tok::DONEPROC,
                if failed { done::ERROR } else { done::FINAL },
                0,
                0,
            );
        }
        if let Some(point) = shared.stall_fault(&text) {
            bump(&shared.counters.responses_stalled);
            return self.stall(&w.buf, final_done, point).await;
        }
        match shared.drop_fault() {
            None => self.send(&w.buf).await,
            Some(point) => {
                bump(&shared.counters.responses_dropped);
                self.close_after = true;
                let wire = match point {
                    DropPoint::AfterBytes(n) => {
                        let mut wire = packet::frame(&w.buf, self.packet_size, self.spid, true);
                        wire.truncate(n);
                        wire
                    }
                    DropPoint::BeforeFinalDone => {
                        packet::frame(&w.buf[..final_done], self.packet_size, self.spid, false)
                    }
                };
                self.writer.write_all(&wire).await?;
                self.writer.flush().await
            }
        }
    }

    /// Sends the start of a response (up to `point`), then sends nothing more and holds
    /// the connection until the client cancels (attention), leaves, or the session is
    /// killed. After an attention, a cut on a token boundary is completed with DONE(ATTN)
    /// (the connection stays usable, as with SQL Server); a cut inside a packet cannot
    /// be resumed, so the connection is closed.
    async fn stall(
        &mut self,
        tokens: &[u8],
        final_done: usize,
        point: StallPoint,
    ) -> std::io::Result<()> {
        let (wire, resumable) = match point {
            StallPoint::AfterRows(n) => {
                let cut = match n.checked_sub(1) {
                    None => 0,
                    Some(i) => self.row_ends.get(i).copied().unwrap_or(final_done),
                };
                let cut = cut.min(final_done);
                let wire = if cut == 0 {
                    Vec::new()
                } else {
                    packet::frame(&tokens[..cut], self.packet_size, self.spid, false)
                };
                (wire, true)
            }
            StallPoint::AfterBytes(n) => {
                let mut wire = packet::frame(tokens, self.packet_size, self.spid, true);
                wire.truncate(n);
                (wire, false)
            }
        };
        self.writer.write_all(&wire).await?;
        self.writer.flush().await?;
        loop {
            if self.killed() || self.peer_closed() {
                self.close_after = true;
                return Ok(());
            }
            if self.attention_pending() {
                break;
            }
            if self.events.changed().await.is_err() {
                self.close_after = true;
                return Ok(());
            }
        }
        if !resumable {
            self.close_after = true;
            return Ok(());
        }
        self.attn_answered = self.attn.load(Ordering::SeqCst);
        let mut w = TokenWriter::new();
        if self.options.xact_abort() && self.trancount > 0 {
            self.rollback_now(&mut w).await;
        }
        w.done(tok::DONE, done::ATTN, 0, 0);
        self.send(&w.buf).await
    }

    fn trans_ctx(&self) -> translate::Ctx {
        translate::Ctx {
            version: self.ctx.version.clone(),
            server: self.ctx.server_name.clone(),
            database: self.ctx.database.clone(),
            spid: self.spid,
            trancount: self.trancount,
            read_only: self.ctx.shared.read_only.load(Ordering::SeqCst),
            options: self.options,
        }
    }

    /// Runs a closure on the session's SQLite connection off the async runtime; an
    /// attention or kill meanwhile interrupts the running statement.
    async fn blocking<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&Connection) -> T + Send + 'static,
    ) -> Option<T> {
        let conn = self.conn.take()?;
        let mut handle = tokio::task::spawn_blocking(move || {
            let out = f(&conn);
            (conn, out)
        });
        let mut interrupted = false;
        loop {
            tokio::select! {
                res = &mut handle => {
                    return match res {
                        Ok((conn, out)) => {
                            self.conn = Some(conn);
                            Some(out)
                        }
                        Err(_) => None,
                    };
                }
                r = self.events.changed(), if !interrupted => {
                    if r.is_err() || self.interrupt_requested() {
                        if let Some(h) = &self.interrupt {
                            h.interrupt();
                        }
                        interrupted = true;
                    }
                }
            }
        }
    }

    /// Runs one translated statement. Inside a transaction, a read that asks for update
    /// locks (`update_locks`) takes the write lock before it reads
    /// ([`sql::lock_for_update`]), and a transaction that has written nothing yet and
    /// reads per statement (READ COMMITTED, as SQL Server's default READ COMMITTED
    /// SNAPSHOT does) moves to a fresh snapshot once when its first write finds the old
    /// one stale ([`sql::fresh_snapshot`]), instead of failing as a deadlock victim.
    async fn run_statement(
        &mut self,
        text: String,
        params: &[Param],
        kind: Kind,
        update_locks: bool,
    ) -> Result<sql::Outcome, SqlError> {
        let in_transaction = self.trancount > 0;
        let lock = in_transaction && update_locks;
        let text: std::sync::Arc<str> = text.into();
        let mut renewed = false;
        loop {
            let (text, p, db) = (text.clone(), params.to_vec(), self.ctx.database.clone());
            let r = self
                .blocking(move |c| {
                    if lock {
                        sql::lock_for_update(c, &db)?;
                    }
                    sql::run(c, &text, &p, kind, &db)
                })
                .await
                .unwrap_or(Err(SqlError::Interrupted));
            match r {
                Err(SqlError::StaleSnapshot)
                    if in_transaction && !renewed && self.options.reads_per_statement() =>
                {
                    renewed = true;
                    let fresh = self.blocking(sql::fresh_snapshot).await;
                    if !matches!(fresh, Some(Ok(true))) {
                        return Err(SqlError::StaleSnapshot);
                    }
                }
                other => return other,
            }
        }
    }

    async fn exec_simple(&mut self, sql_text: &'static str) -> Result<(), SqlError> {
        let db = self.ctx.database.clone();
        self.blocking(move |c| {
            c.execute_batch(sql_text)
                .map_err(|e| sql::map_error(&e, Kind::Other, &db))
        })
        .await
        .unwrap_or(Err(SqlError::Interrupted))
    }

    fn desc(&self) -> [u8; 8] {
        self.tran_desc.to_le_bytes()
    }

    async fn rollback_now(&mut self, w: &mut TokenWriter) {
        let _ = self.exec_simple("ROLLBACK").await;
        self.trancount = 0;
        self.doomed = false;
        w.env_change_bytes(10, &[], &self.desc());
    }

    async fn begin_now(&mut self, w: &mut TokenWriter) -> Result<(), SqlError> {
        if self.trancount == 0 {
            self.exec_simple("BEGIN").await?;
            self.doomed = false;
            self.tran_desc = self.tran_desc.wrapping_add(1).max(1);
            w.env_change_bytes(8, &self.desc(), &[]);
        }
        self.trancount += 1;
        Ok(())
    }

    /// Reports `e`, raised by a statement starting with keyword `first_kw`, and applies
    /// what SQL Server does after it (see [`batch::effect`]): Ok to go on with the next
    /// statement, `Err(Stop::Error)` when the batch is aborted (after rolling back the
    /// open transaction when the error does that).
    async fn report(
        &mut self,
        w: &mut TokenWriter,
        dones: &mut Vec<usize>,
        done_tok: u8,
        e: ErrorSpec,
        first_kw: &str,
    ) -> Result<(), Stop> {
        let effect = batch::effect(e.number, e.class, first_kw, self.options.xact_abort());
        if self.try_depth > 0 && batch::catchable(e.number, e.class) {
            // Caught: nothing reaches the client; a transaction the error would have
            // rolled back is doomed instead.
            if self.trancount > 0 && batch::dooms(effect) {
                self.doomed = true;
            }
            self.last_error = e.number;
            let message = self.render(&e);
            return Err(Stop::Caught(Box::new(ErrorSpec { message, ..e })));
        }
        self.error(w, &e);
        self.last_error = e.number;
        self.request_failed = true;
        if effect == ErrorEffect::AbortBatchRollback && self.trancount > 0 {
            self.rollback_now(w).await;
        }
        dones.push(w.len());
        w.done(done_tok, done::ERROR, 0, 0);
        match effect {
            ErrorEffect::Statement => Ok(()),
            ErrorEffect::AbortBatch | ErrorEffect::AbortBatchRollback => Err(Stop::Error),
        }
    }

    /// Reports a SQL failure (see [`Session::report`]).
    async fn sql_failure(
        &mut self,
        w: &mut TokenWriter,
        e: SqlError,
        dones: &mut Vec<usize>,
        done_tok: u8,
        first_kw: &str,
    ) -> Result<(), Stop> {
        let spec = match e {
            SqlError::Interrupted => return Err(Stop::Interrupted),
            // A lock wait inside a transaction is reported as a deadlock (the other
            // writer waits on this transaction's lock too); outside, as a lock timeout.
            SqlError::Busy | SqlError::StaleSnapshot if self.trancount > 0 => ErrorSpec::deadlock(),
            SqlError::Busy | SqlError::StaleSnapshot => ErrorSpec::known(1222),
            SqlError::Error(spec) => spec,
        };
        // Some SQLite failures end the transaction; tell the client, as SQL Server does.
        if self.trancount > 0 {
            let autocommit = self.blocking(|c| c.is_autocommit()).await.unwrap_or(true);
            if autocommit {
                self.trancount = 0;
                w.env_change_bytes(10, &[], &self.desc());
            }
        }
        self.report(w, dones, done_tok, spec, first_kw).await
    }

    async fn exec_list(
        &mut self,
        stmts: &[Stmt],
        params: &[Param],
        w: &mut TokenWriter,
        dones: &mut Vec<usize>,
        done_tok: u8,
    ) -> Result<(), Stop> {
        for stmt in stmts {
            if self.interrupt_requested() {
                return Err(Stop::Interrupted);
            }
            match stmt {
                Stmt::Simple(toks) => {
                    let toks = batch::substitute(toks, &self.values());
                    self.exec_one(&toks, params, w, dones, done_tok).await?
                }
                Stmt::Try { body, catch } => {
                    self.try_depth += 1;
                    let ran = Box::pin(self.exec_list(body, params, w, dones, done_tok)).await;
                    self.try_depth -= 1;
                    match ran {
                        Err(Stop::Caught(caught)) => {
                            self.catching.push(*caught);
                            let ran =
                                Box::pin(self.exec_list(catch, params, w, dones, done_tok)).await;
                            self.catching.pop();
                            ran?;
                        }
                        other => other?,
                    }
                }
                Stmt::If {
                    cond,
                    then,
                    otherwise,
                } => {
                    let ctx = self.trans_ctx();
                    let cond = batch::substitute(cond, &self.values());
                    let cond_sql = match translate::rewrite(&cond, &ctx) {
                        Ok(s) => format!("SELECT CASE WHEN ({s}) THEN 1 ELSE 0 END"),
                        Err(e) => {
                            self.report(w, dones, done_tok, e, "IF").await?;
                            continue;
                        }
                    };
                    let locks = translate::reads_with_write_locks(&cond);
                    let r = self
                        .run_statement(cond_sql, params, Kind::Select, locks)
                        .await;
                    let truth = match r {
                        Ok(o) => o
                            .result
                            .and_then(|rs| rs.rows.into_iter().next())
                            .and_then(|row| row.into_iter().next())
                            .is_some_and(|v| v == Value::Int(1)),
                        Err(e) => {
                            // SQL Server skips the IF's statement when its condition fails.
                            self.sql_failure(w, e, dones, done_tok, "IF").await?;
                            continue;
                        }
                    };
                    let branch = if truth { then } else { otherwise };
                    if branch.is_empty() {
                        dones.push(w.len());
                        w.done(done_tok, done::FINAL, 0, 0);
                    } else {
                        Box::pin(self.exec_list(branch, params, w, dones, done_tok)).await?;
                    }
                }
            }
        }
        Ok(())
    }

    fn values(&self) -> SessionValues<'_> {
        SessionValues {
            last_error: self.last_error,
            trancount: self.trancount,
            doomed: self.doomed,
            caught: self.catching.last(),
        }
    }

    /// Runs one statement. Ok also after a statement-level error (reported, the batch
    /// goes on); Err when the batch stops.
    async fn exec_one(
        &mut self,
        toks: &[translate::Tok],
        params: &[Param],
        w: &mut TokenWriter,
        dones: &mut Vec<usize>,
        done_tok: u8,
    ) -> Result<(), Stop> {
        let first_kw = toks.first().and_then(|t| t.kw()).unwrap_or_default();
        let ctx = self.trans_ctx();
        let bound = translate::bind_exec_args(toks, params);
        let toks = bound.as_deref().unwrap_or(toks);
        // `THROW;` re-raises the error of the CATCH block it is in.
        if first_kw == "THROW" && toks.len() == 1 {
            let e = self.catching.last().cloned().unwrap_or_else(|| {
                ErrorSpec::new(
                    10704,
                    15,
                    "To rethrow an error, a THROW statement must be used inside a CATCH block.",
                )
            });
            return self.report(w, dones, done_tok, e, &first_kw).await;
        }
        let action = match self.options.apply(toks) {
            Some(Ok(())) => Action::SetIgnored,
            Some(Err(e)) => Action::Unsupported(e),
            None => translate::action(toks, &ctx),
        };
        // A doomed transaction takes no more writes and no COMMIT: only ROLLBACK.
        if self.doomed && self.trancount > 0 {
            let writes = match &action {
                Action::Commit => true,
                Action::Sql { kind, .. } => kind.writes(),
                _ => false,
            };
            if writes {
                return self
                    .report(w, dones, done_tok, batch::doomed_write(), &first_kw)
                    .await;
            }
        }
        // IMPLICIT_TRANSACTIONS ON: a data or schema statement outside a transaction
        // opens one, which only COMMIT or ROLLBACK ends.
        if self.options.implicit_transactions()
            && self.trancount == 0
            && opens_implicit_transaction(&action)
        {
            if let Err(e) = self.begin_now(w).await {
                return self.sql_failure(w, e, dones, done_tok, &first_kw).await;
            }
        }
        let (status, cur_cmd, rows) = match action {
            Action::BeginTran => {
                if let Err(e) = self.begin_now(w).await {
                    return self.sql_failure(w, e, dones, done_tok, &first_kw).await;
                }
                (0, 0xD4, 0)
            }
            Action::Commit => {
                if self.trancount == 0 {
                    let e = ErrorSpec::new(
                        3902,
                        16,
                        "The COMMIT TRANSACTION request has no corresponding BEGIN TRANSACTION.",
                    );
                    return self.report(w, dones, done_tok, e, &first_kw).await;
                }
                if self.trancount == 1 {
                    if let Err(e) = self.exec_simple("COMMIT").await {
                        return self.sql_failure(w, e, dones, done_tok, &first_kw).await;
                    }
                    w.env_change_bytes(9, &[], &self.desc());
                }
                self.trancount -= 1;
                (0, 0xD5, 0)
            }
            Action::Rollback => {
                if self.trancount == 0 {
                    let e = ErrorSpec::new(
                        3903,
                        16,
                        "The ROLLBACK TRANSACTION request has no corresponding BEGIN TRANSACTION.",
                    );
                    return self.report(w, dones, done_tok, e, &first_kw).await;
                }
                self.rollback_now(w).await;
                (0, 0xD6, 0)
            }
            Action::SetIgnored => (0, 0xB9, 0),
            Action::Use(db) => {
                if !login7::database_accepted(&db, &self.ctx.database) {
                    let e = ErrorSpec::new(911, 16, format!("Database '{db}' does not exist. Make sure that the name is entered correctly."));
                    return self.report(w, dones, done_tok, e, &first_kw).await;
                }
                let name = self.ctx.database.clone();
                w.env_change_str(1, &name, &name);
                w.info(
                    5701,
                    &format!("Changed database context to '{name}'."),
                    &self.ctx.server_name,
                );
                (0, 0, 0)
            }
            Action::WaitFor(d) => {
                if !self.sleep(d).await {
                    return Err(Stop::Interrupted);
                }
                (0, 0, 0)
            }
            Action::Print(text) => {
                w.info(0, &text, &self.ctx.server_name);
                (0, 0, 0)
            }
            Action::Unsupported(e) => return self.report(w, dones, done_tok, e, &first_kw).await,
            Action::Sql { sql: text, kind } => {
                if kind.writes() && ctx.read_only {
                    bump(&self.ctx.shared.counters.errors_injected);
                    let e = ErrorSpec::read_only(&self.ctx.database);
                    return self.report(w, dones, done_tok, e, &first_kw).await;
                }
                let locks = translate::reads_with_write_locks(toks);
                let r = self.run_statement(text, params, kind, locks).await;
                match r {
                    Ok(o) => {
                        if let Some(rs) = &o.result {
                            w.col_metadata(&rs.columns);
                            for row in &rs.rows {
                                w.row(&rs.columns, row);
                                self.row_ends.push(w.len());
                            }
                        }
                        let counted = o.result.is_some() || kind.counts();
                        let status = if counted && !self.options.nocount() {
                            done::COUNT
                        } else {
                            0
                        };
                        (status, kind.cur_cmd(), o.changes)
                    }
                    Err(e) => return self.sql_failure(w, e, dones, done_tok, &first_kw).await,
                }
            }
        };
        self.last_error = 0;
        dones.push(w.len());
        w.done(done_tok, status, cur_cmd, rows);
        Ok(())
    }

    /// TransactionManager requests (begin, commit, rollback, save) as python-tds sends
    /// them when autocommit is off.
    async fn transaction_manager(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let Some(body) = rpc::skip_all_headers(payload) else {
            self.close_after = true;
            return Ok(());
        };
        let mut r = Reader::new(body);
        let mut w = TokenWriter::new();
        let ty = r.u16le().unwrap_or(0xFFFF);
        let result: Result<(), SqlError> = match ty {
            5 => self.begin_now(&mut w).await,
            7 | 8 => {
                let _name = r.b_varchar();
                let flags = r.u8().unwrap_or(0);
                if self.trancount > 0 {
                    if ty == 7 && self.doomed {
                        let mut dones = Vec::new();
                        let _ = self
                            .report(
                                &mut w,
                                &mut dones,
                                tok::DONE,
                                batch::doomed_write(),
                                "COMMIT",
                            )
                            .await;
                        return self.send(&w.buf).await;
                    }
                    if ty == 7 {
                        match self.exec_simple("COMMIT").await {
                            Ok(()) => {
                                self.trancount = 0;
                                w.env_change_bytes(9, &[], &self.desc());
                            }
                            Err(e) => {
                                let mut dones = Vec::new();
                                let _ = self
                                    .sql_failure(&mut w, e, &mut dones, tok::DONE, "COMMIT")
                                    .await;
                                return self.send(&w.buf).await;
                            }
                        }
                    } else {
                        self.rollback_now(&mut w).await;
                    }
                }
                if flags & 0x01 != 0 {
                    self.begin_now(&mut w).await
                } else {
                    Ok(())
                }
            }
            9 => Ok(()),
            _ => {
                let e = ErrorSpec::new(
                    8509,
                    16,
                    "Unsupported transaction manager request (mssql-testkit handles begin, commit, rollback).",
                );
                self.error(&mut w, &e);
                w.done(tok::DONE, done::ERROR, 0, 0);
                return self.send(&w.buf).await;
            }
        };
        match result {
            Ok(()) => w.done(tok::DONE, done::FINAL, 0, 0),
            Err(e) => {
                let mut dones = Vec::new();
                let _ = self
                    .sql_failure(&mut w, e, &mut dones, tok::DONE, "BEGIN")
                    .await;
            }
        }
        self.send(&w.buf).await
    }
}
