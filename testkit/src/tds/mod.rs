//! A TDS 7.4 (SQL Server wire protocol) test server backed by SQLite, with
//! programmable faults.
//!
//! The server speaks enough of the protocol for the real `tiberius` client, FreeTDS
//! (`tsql`, ODBC), `python-tds`, pymssql and SQLAlchemy to log in, run SQL batches and
//! parameterised RPCs (`sp_executesql`, `sp_prepexec`, …) with every common SQL Server
//! data type, and read typed result sets; a T-SQL surface is translated onto SQLite
//! (see `testkit/README.md` for exactly what is supported). Plaintext by default; with
//! [`TdsServerConfig::tls`] it negotiates PRELOGIN encryption and serves a certificate
//! signed by a CA generated at start ([`TlsIdentity`]). Faults —
//! failed or redirected logins, failing or slow queries, read-only mode, connections
//! dropped mid-response, a listener that stops accepting, killed sessions, stalled TLS
//! handshakes — are set
//! in-process through [`Faults`] or at run time through the HTTP control endpoint.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use mssql_testkit::tds::{ErrorSpec, TdsServer, TdsServerConfig, Trigger};
//!
//! let server = TdsServer::start(TdsServerConfig::new("sa", "secret")).await?;
//! println!("connect tiberius to {}", server.addr());
//! // The next two logins fail the way Azure SQL fails during a reconfiguration.
//! server
//!     .faults()
//!     .fail_logins(ErrorSpec::database_unavailable("testdb"), Trigger::Next(2));
//! assert_eq!(server.counters().logins, 0);
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod batch;
mod catalog;
mod control;
mod convert;
mod counters;
mod datetime;
mod dec;
mod errors;
mod faults;
mod fedauth;
mod functions;
#[cfg(test)]
mod fuzz;
mod handshake;
mod hints;
mod login7;
mod options;
mod packet;
mod prelogin;
mod procs;
mod rpc;
mod server;
mod session;
mod sql;
mod tls;
mod tokens;
mod translate;
mod types;
mod typing;

pub use counters::Counters;
pub use errors::ErrorSpec;
pub use faults::{
    AcceptMode, DisconnectMode, DropPoint, Faults, QueryFault, StallFault, StallPoint, Trigger,
};
pub use server::{TdsServer, TdsServerConfig};
pub use tls::{TlsIdentity, TlsMode, SERVER_CERT_NAMES};
