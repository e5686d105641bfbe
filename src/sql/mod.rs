//! SQL requests and their materialized responses.
//!
//! A [`SqlRequest`] is either a **statement** (T-SQL text plus typed [`Param`]s, run with
//! `sp_executesql`) or a **unit of work** (an async closure given one pooled connection,
//! for transactions). Each carries a [`RequestContext`]: an operation name for telemetry
//! (never the SQL text), the intent (read/write) and whether it is idempotent.
//!
//! Responses are materialized ([`SqlResponse`]: all result sets, or the rows affected)
//! before they leave the innermost service: a half-read stream can be neither retried nor
//! failed over.
//!
//! [`RequestContext`]: crate::request::RequestContext

pub(crate) mod request;
mod response;

pub use self::request::{batch, work, Client, Param, SqlRequest, UnitOfWork, WorkFuture};
pub use self::response::{ResultSet, SqlResponse, Value};
