//! # mssql-resilience
//!
//! Resilience middleware for API services that talk to SQL Server / Azure SQL through
//! [tiberius]: timeout budgets, retries with jitter and a retry budget, circuit breakers
//! and (with the SQL integration) regional failover, as plain [`tower`] layers.
//!
//! Each layer works on any `tower::Service` whose error converts into [`Error`] and whose
//! request carries a [`RequestContext`] (see [`HasContext`]), so the layers can be tested
//! with `tower_test::mock` and reused outside SQL. The standard order, outermost first:
//!
//! ```text
//! deadline (total budget) → retry (classifier, backoff, budget) → [failover router]
//!   → circuit breaker (per region) → attempt timeout → pool → tiberius
//! ```
//!
//! ```
//! use std::time::Duration;
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//! use mssql_resilience::{
//!     circuit_breaker::{CircuitBreakerConfig, CircuitBreakerHandle, CircuitBreakerLayer},
//!     deadline::TimeoutBudget,
//!     retry::{RetryLayer, RetryPolicy, budget::RetryBudget},
//!     Error, RequestContext, WithContext,
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let budget = TimeoutBudget::new(Duration::from_secs(5), Duration::from_secs(2))?;
//! let breaker = CircuitBreakerHandle::new(CircuitBreakerConfig::builder("primary").build()?);
//! let mut svc = ServiceBuilder::new()
//!     .layer(budget.deadline_layer())
//!     .layer(RetryLayer::new(RetryPolicy::default()).with_budget(RetryBudget::default()))
//!     .layer(CircuitBreakerLayer::new(breaker.clone()))
//!     .layer(budget.attempt_layer())
//!     .service(service_fn(|req: WithContext<u32>| async move { Ok::<_, Error>(req.payload * 2) }));
//!
//! let answer = svc.ready().await?.call(WithContext::new(RequestContext::read("double"), 21)).await?;
//! assert_eq!(answer, 42);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

pub mod auth;
pub mod builder;
pub mod circuit_breaker;
pub mod classify;
pub mod config;
pub mod deadline;
pub mod error;
pub mod failover;
pub mod idempotency;
pub mod observe;
pub mod pool;
pub mod request;
pub mod retry;
pub mod safety;
pub mod sql;
pub mod telemetry;

#[cfg(test)]
mod fuzz;

/// The README's examples compile as doc-tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use crate::builder::{Stack, StackBuilder};
pub use crate::sql::{FromRow, Param, Row, RowError, RowStream, SqlRequest, SqlResponse, Value};

pub use crate::error::{ConfigError, Error, ErrorKind, ForLogs, Outcome};
pub use crate::request::{Consistency, HasContext, Intent, RequestContext, WithContext};
/// Date and time types for parameters and rows (see [`sql`](crate::sql#types)).
pub use chrono;
/// Exact decimals for `DECIMAL`/`NUMERIC`/`MONEY` parameters and rows.
pub use rust_decimal;
/// The driver, re-exported so a unit of work names the same version the crate uses
/// (`tiberius::numeric::Numeric`, `tiberius::xml::XmlData`, `tiberius::ToSql`, …).
pub use tiberius;
/// `UNIQUEIDENTIFIER` values.
pub use uuid;
