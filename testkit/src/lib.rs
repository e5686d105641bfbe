//! # mssql-testkit
//!
//! Test infrastructure for `mssql-resilience`: a SQL Server wire-protocol (TDS 7.4,
//! plaintext) server backed by SQLite with programmable faults, and a TCP chaos proxy
//! (Toxiproxy-style) whose behaviour can be switched at run time or scripted by a
//! schedule. Both are usable in-process from tests and as the `tds-server` and
//! `chaos-proxy` binaries.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod chaos;
pub mod signal;
pub mod tds;
