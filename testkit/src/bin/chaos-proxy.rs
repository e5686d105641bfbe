//! `chaos-proxy`: a TCP chaos proxy (Toxiproxy-style) in front of a server.
//!
//! ```text
//! chaos-proxy --listen 127.0.0.1:PORT --upstream HOST:PORT
//!             [--schedule FILE.toml] [--control 127.0.0.1:PORT]
//!             [--toxics JSON] [--seed N] [--connect-timeout DURATION]
//! ```
//!
//! Prints `listening on ADDR` as its first stdout line (port 0 shows the real
//! port), then `control on ADDR` with `--control`. Bad arguments, a taken port or
//! a bad schedule file give a one-line error on stderr and a non-zero exit.
//! Runs until SIGINT or SIGTERM. Changes of toxics are logged on stderr.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use mssql_testkit::chaos::{parse_duration, ChaosProxy, ProxyConfig, Schedule, Toxics};

const USAGE: &str = "\
chaos-proxy: a TCP chaos proxy (Toxiproxy-style) for resilience tests

USAGE:
    chaos-proxy --listen 127.0.0.1:PORT --upstream HOST:PORT [OPTIONS]

OPTIONS:
    --listen ADDR             address to listen on (port 0 picks a free port)
    --upstream HOST:PORT      server to forward connections to
    --schedule FILE.toml      play this timeline of phases from start-up
    --control ADDR            serve the HTTP/JSON control API on this loopback address
    --toxics JSON             initial toxics, e.g. '{\"mode\":\"blackhole\"}' (default: ok)
    --seed N                  seed of the jitter and toxicity RNGs (default: 0)
    --connect-timeout DUR     upstream connect timeout (default: 10s)
    -h, --help                print this help

OUTPUT:
    stdout line 1: listening on ADDR
    stdout line 2: control on ADDR        (with --control)
    stderr: one line per change of toxics

EXIT STATUS:
    0 after SIGINT/SIGTERM or --help; 2 for bad arguments or a bad schedule
    file; 1 when the proxy cannot run (port taken, ...). Errors are one line
    on stderr, and nothing is printed on stdout.

Stops on SIGINT or SIGTERM.
";

/// Exit code for bad arguments (including a bad upstream or control address)
/// or a bad schedule file.
const EXIT_USAGE: u8 = 2;
/// Exit code for run-time failures (port taken, ...).
const EXIT_RUNTIME: u8 = 1;

#[derive(Debug)]
struct Args {
    listen: SocketAddr,
    upstream: String,
    schedule: Option<PathBuf>,
    control: Option<SocketAddr>,
    toxics: Toxics,
    seed: u64,
    connect_timeout: Duration,
}

/// `Ok(None)` means `--help`.
fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut listen = None;
    let mut upstream = None;
    let mut schedule = None;
    let mut control = None;
    let mut toxics = Toxics::default();
    let mut seed = 0;
    let mut connect_timeout = Duration::from_secs(10);
    while let Some(arg) = argv.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(None);
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let known = [
            "--listen",
            "--upstream",
            "--schedule",
            "--control",
            "--toxics",
            "--seed",
            "--connect-timeout",
        ];
        if !known.contains(&flag.as_str()) {
            return Err(format!("unknown argument {arg:?} (see --help)"));
        }
        let value = match inline {
            Some(v) => v,
            None => argv
                .next()
                .ok_or_else(|| format!("{flag} needs a value (see --help)"))?,
        };
        let addr = |v: &str| {
            v.parse::<SocketAddr>().map_err(|_| {
                format!("{flag}: invalid address {v:?} (expected IP:PORT, e.g. 127.0.0.1:0)")
            })
        };
        match flag.as_str() {
            "--listen" => listen = Some(addr(&value)?),
            "--control" => control = Some(addr(&value)?),
            "--upstream" => upstream = Some(value),
            "--schedule" => schedule = Some(PathBuf::from(value)),
            "--toxics" => {
                toxics = serde_json::from_str(&value)
                    .map_err(|e| format!("--toxics: invalid toxics {value:?}: {e}"))?;
            }
            "--seed" => {
                seed = value
                    .parse()
                    .map_err(|_| format!("--seed: {value:?} is not an unsigned integer"))?;
            }
            "--connect-timeout" => {
                connect_timeout =
                    parse_duration(&value).map_err(|e| format!("--connect-timeout: {e}"))?;
            }
            _ => unreachable!("flag checked against the known list"),
        }
    }
    let listen = listen.ok_or("missing --listen ADDR (see --help)")?;
    let upstream = upstream.ok_or("missing --upstream HOST:PORT (see --help)")?;
    Ok(Some(Args {
        listen,
        upstream,
        schedule,
        control,
        toxics,
        seed,
        connect_timeout,
    }))
}

/// An invalid upstream or control address is a usage error; anything else
/// (port taken, ...) a run-time one.
fn exit_code(e: &std::io::Error) -> u8 {
    if e.kind() == std::io::ErrorKind::InvalidInput {
        EXIT_USAGE
    } else {
        EXIT_RUNTIME
    }
}

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    let one_line = message.to_string().replace('\n', " ");
    eprintln!("chaos-proxy: error: {one_line}");
    ExitCode::from(code)
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => return fail(EXIT_USAGE, e),
    };
    // Read the schedule before binding anything, so a bad file fails fast.
    let schedule = match &args.schedule {
        Some(path) => match Schedule::from_file(path) {
            Ok(s) => Some(s),
            Err(e) => return fail(EXIT_USAGE, e),
        },
        None => None,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(EXIT_RUNTIME, format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(run(args, schedule))
}

async fn run(args: Args, schedule: Option<Schedule>) -> ExitCode {
    let config = ProxyConfig::new(args.listen, &args.upstream)
        .with_toxics(args.toxics)
        .with_seed(args.seed)
        .with_connect_timeout(args.connect_timeout);
    let proxy = match ChaosProxy::start_with(config).await {
        Ok(p) => p,
        Err(e) => return fail(exit_code(&e), e),
    };
    // Bind the control endpoint before printing anything, so that any failure
    // leaves stdout empty.
    let control = match args.control {
        Some(addr) => match proxy.serve_control(addr).await {
            Ok(local) => Some(local),
            Err(e) => return fail(exit_code(&e), e),
        },
        None => None,
    };
    let shutdown = mssql_testkit::signal::shutdown_signal();
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {}", proxy.addr());
        if let Some(local) = control {
            let _ = writeln!(out, "control on {local}");
        }
        let _ = out.flush();
    }
    let handle = proxy.handle();
    let mut changes = handle.subscribe();
    tokio::spawn(async move {
        while changes.changed().await.is_ok() {
            let toxics = changes.borrow_and_update().clone();
            eprintln!("chaos-proxy: toxics now: {toxics}");
        }
    });
    let _schedule = schedule.map(|s| handle.run_schedule(s));
    shutdown.await;
    proxy.shutdown().await;
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Args>, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_flags_both_ways() {
        let a = parse(&[
            "--listen",
            "127.0.0.1:0",
            "--upstream=localhost:1433",
            "--control=127.0.0.1:0",
            "--seed",
            "7",
            "--toxics",
            r#"{"mode":"blackhole"}"#,
        ])
        .unwrap()
        .unwrap();
        assert_eq!(a.listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(a.upstream, "localhost:1433");
        assert_eq!(a.seed, 7);
        assert_eq!(a.toxics, Toxics::blackhole());
        assert!(a.control.is_some());
        assert!(parse(&["--help"]).unwrap().is_none());
    }

    #[test]
    fn rejects_bad_arguments() {
        assert!(parse(&["--upstream", "x:1"])
            .unwrap_err()
            .contains("missing --listen"));
        assert!(parse(&["--listen", "nope", "--upstream", "x:1"])
            .unwrap_err()
            .contains("--listen: invalid address \"nope\""));
        assert!(parse(&["--listen"]).unwrap_err().contains("needs a value"));
        assert!(parse(&["--bogus"])
            .unwrap_err()
            .contains("unknown argument"));
        assert!(parse(&["--seed", "-1"]).unwrap_err().contains("--seed"));
    }
}
