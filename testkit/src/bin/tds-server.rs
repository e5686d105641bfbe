//! `tds-server`: the mssql-testkit TDS test server as a process.
//!
//! ```text
//! tds-server --listen 127.0.0.1:PORT --user U --password P [--database NAME]
//!            [--db-file PATH] [--control 127.0.0.1:PORT] [--access-token T]...
//!            [--disconnect rollback|complete] [--tls off|login-only|required]
//!            [--tls-ca PATH]
//! ```
//! Prints `listening on ADDR` as its first line (and `control on ADDR` when a control
//! endpoint is requested), then serves until SIGINT or SIGTERM.

use mssql_testkit::tds::{DisconnectMode, TdsServer, TdsServerConfig, TlsMode};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: tds-server --listen 127.0.0.1:PORT --user U --password P [--database NAME] [--db-file PATH] [--control 127.0.0.1:PORT] [--access-token T]... [--disconnect rollback|complete] [--tls off|login-only|required] [--tls-ca PATH]

A SQL Server wire-protocol (TDS 7.4) test server backed by SQLite.
Prints `listening on ADDR` as its first line; port 0 picks a free port.

  --listen ADDR     address to listen on (required)
  --user U          the SQL login accepted (required)
  --password P      its password (required)
  --database NAME   database name (default: testdb)
  --db-file PATH    SQLite file to use and keep (default: a temporary file)
  --control ADDR    serve the HTTP/JSON control endpoint on ADDR
  --disconnect M    what a client disconnect does to the request in flight:
                    rollback (default) or complete (it runs to its end and an
                    autocommit write commits)
  --access-token T  also accept Microsoft Entra ID (FEDAUTH) logins with token T
                    (repeatable; other tokens fail with 18456)
  --tls MODE        PRELOGIN encryption: off (default: ENCRYPT_NOT_SUP, plaintext),
                    login-only (a certificate, encryption optional: only the
                    LOGIN7 is encrypted for clients offering ENCRYPT_OFF) or
                    required (everything encrypted); a CA and a certificate for
                    localhost / 127.0.0.1 / ::1 are generated at start
  --tls-ca PATH     write the generated CA certificate (PEM) to PATH for clients
                    to trust (requires --tls login-only or required)
  --help            show this help";

enum Parsed {
    Help,
    Run(Box<TdsServerConfig>, Option<PathBuf>),
}

fn parse_args(args: &[String]) -> Result<Parsed, String> {
    let mut cfg = TdsServerConfig::default();
    let (mut listen, mut user, mut password) = (None, None, None);
    let mut tls_ca = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            return Ok(Parsed::Help);
        }
        let mut value = |name: &str| -> Result<String, String> {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let addr = |name: &str, v: String| -> Result<SocketAddr, String> {
            v.parse()
                .map_err(|_| format!("{name}: invalid address {v:?} (expected IP:PORT)"))
        };
        match flag.as_str() {
            "--listen" => listen = Some(addr("--listen", value("--listen")?)?),
            "--user" => user = Some(value("--user")?),
            "--password" => password = Some(value("--password")?),
            "--database" => cfg.database = value("--database")?,
            "--db-file" => cfg.db_file = Some(value("--db-file")?.into()),
            "--control" => cfg.control = Some(addr("--control", value("--control")?)?),
            "--disconnect" => {
                cfg.disconnect = match value("--disconnect")?.as_str() {
                    "rollback" => DisconnectMode::RollBack,
                    "complete" => DisconnectMode::Complete,
                    other => {
                        let shown: String = other.chars().take(40).collect();
                        return Err(format!(
                            "--disconnect: unknown mode {shown:?} (use rollback or complete)"
                        ));
                    }
                }
            }
            "--access-token" => cfg.access_tokens.push(value("--access-token")?),
            "--tls" => {
                let v = value("--tls")?;
                cfg.tls = TlsMode::parse(&v).ok_or_else(|| {
                    let shown: String = v.chars().take(40).collect();
                    format!("--tls: unknown mode {shown:?} (use off, login-only or required)")
                })?;
            }
            "--tls-ca" => tls_ca = Some(PathBuf::from(value("--tls-ca")?)),
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    cfg.listen = listen.ok_or("--listen is required (try --help)")?;
    cfg.user = user.ok_or("--user is required (try --help)")?;
    cfg.password = password.ok_or("--password is required (try --help)")?;
    if cfg.database.is_empty() {
        return Err("--database must not be empty".into());
    }
    if tls_ca.is_some() && cfg.tls == TlsMode::Off {
        return Err("--tls-ca needs --tls login-only or required".into());
    }
    Ok(Parsed::Run(Box::new(cfg), tls_ca))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cfg, tls_ca) = match parse_args(&args) {
        Ok(Parsed::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Run(cfg, tls_ca)) => (*cfg, tls_ca),
        Err(e) => {
            eprintln!("tds-server: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tds-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let listen = cfg.listen;
        let server = match TdsServer::start(cfg).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("tds-server: cannot listen on {listen}: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let (Some(path), Some(tls)) = (&tls_ca, server.tls()) {
            if let Err(e) = tls.write_ca_pem(path) {
                eprintln!(
                    "tds-server: cannot write the CA certificate to {}: {e}",
                    path.display()
                );
                return ExitCode::FAILURE;
            }
        }
        let shutdown = mssql_testkit::signal::shutdown_signal();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {}", server.addr());
        if let Some(c) = server.control_addr() {
            let _ = writeln!(out, "control on {c}");
        }
        let _ = out.flush();
        drop(out);
        shutdown.await;
        server.shutdown().await;
        ExitCode::SUCCESS
    })
}
