//! A TCP chaos proxy (Toxiproxy-style) for resilience tests.
//!
//! [`ChaosProxy`] listens on a loopback port and forwards every connection to an
//! upstream (`HOST:PORT`). Its behaviour is a [`Toxics`] value: a connection-level
//! [`Mode`] (`ok`, `blackhole`, `reset`, `refuse`) plus per-[`Direction`] toxics
//! (latency with jitter, bandwidth cap, cut after N bytes, slow close, one-way
//! black-hole), applied to every connection or, with a [`Toxicity`] below 1, to a
//! seeded share of them (a partial failure). Switch it at run time through a
//! [`ChaosHandle`] — changes reach
//! connections that are already open — or script an outage with a [`Schedule`]
//! (a TOML timeline played on tokio's clock), or drive it over HTTP with the
//! [control API](control_router). [`CountersSnapshot`] tells what happened.
//!
//! ```no_run
//! use std::time::Duration;
//! use mssql_testkit::chaos::{ChaosProxy, Mode, Schedule, Toxics};
//!
//! # async fn demo() -> std::io::Result<()> {
//! let proxy = ChaosProxy::start("127.0.0.1:0".parse().unwrap(), "127.0.0.1:1433").await?;
//! let chaos = proxy.handle();
//! // ... point the client at proxy.addr() ...
//! chaos.set(Toxics::latency(Duration::from_millis(50), Duration::from_millis(10)));
//! chaos.set_mode(Mode::Blackhole); // open connections freeze, new ones hang
//! chaos.set(Toxics::reset());      // open connections get an RST
//! chaos.clear();                   // back to normal
//!
//! let schedule = Schedule::from_toml_str(r#"
//!     [[phase]]
//!     from = "5s"
//!     to = "12s"
//!     mode = "blackhole"
//! "#).expect("valid schedule");
//! let guard = chaos.run_schedule(schedule); // dropping the guard cancels it
//! guard.finished().await;
//! println!("{:?}", proxy.counters());
//! proxy.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! Timing uses tokio's clock only, so schedules can be tested with
//! `tokio::time::pause()`; latency, jitter (from a seeded RNG) and bandwidth are
//! applied per chunk of bytes as read from the socket.

mod control;
mod counters;
mod duration;
mod proxy;
mod pump;
pub mod schedule;
pub mod toxics;

pub use control::control_router;
pub use counters::CountersSnapshot;
pub use duration::{format_duration, parse_duration, DurationError, MAX_DURATION};
pub use proxy::{ChaosHandle, ChaosProxy, ProxyConfig};
pub use schedule::{
    OutageWindow, Phase, RunningSchedule, Schedule, ScheduleError, ScheduleErrorKind, ScheduleGuard,
};
pub use toxics::{
    connection_draws, Direction, DirectionToxics, FieldError, Mode, Toxicity, Toxics,
};
