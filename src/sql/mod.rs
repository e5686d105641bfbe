//! SQL requests, typed parameters and rows, and materialized or streamed responses.
//!
//! A [`SqlRequest`] is either a **statement** (T-SQL text plus typed [`Param`]s, run with
//! `sp_executesql`) or a **unit of work** (an async closure given one pooled connection,
//! for transactions). Each carries a [`RequestContext`]: an operation name for telemetry
//! (never the SQL text), the intent (read/write) and whether it is idempotent.
//!
//! Responses are materialized ([`SqlResponse`]: all result sets, or the rows affected)
//! before they leave the innermost service: a half-read stream can be neither retried nor
//! failed over. Materializing keeps each [`Row`] as the driver decoded it (no copy); values
//! are read typed and without loss with [`Row::try_get`] (see [`FromSqlValue`]), rows map
//! into your own types with [`FromRow`], and a unit of work returns your own type through
//! [`Stack::run`](crate::Stack::run). A response is capped (`[results]` in the config,
//! [`ResultLimits`]); a result too big for memory is read row by row with
//! [`Stack::stream`](crate::Stack::stream), whose retry rules [`RowStream`] documents.
//!
//! ## Types
//!
//! Dates and times are [`chrono`] types: tiberius supports `chrono` and `time`, and
//! `chrono` is the one most tiberius code uses (its `NaiveDateTime`/`DateTime<FixedOffset>`
//! map one to one onto `DATETIME2`/`DATETIMEOFFSET`); with default features off it adds
//! only itself and `num-traits` to the build. Exact decimals are [`rust_decimal::Decimal`]
//! (28 digits, the common choice for money) or tiberius's [`Numeric`] (all 38 digits of
//! `DECIMAL(38, s)`), GUIDs [`uuid::Uuid`]. The crates are re-exported at the crate root
//! (`mssql_resilience::{chrono, rust_decimal, uuid, tiberius}`), so the versions always
//! match.
//!
//! [`RequestContext`]: crate::request::RequestContext
//! [`Numeric`]: tiberius::numeric::Numeric

pub(crate) mod lex;
pub(crate) mod param;
pub(crate) mod request;
mod response;
mod row;
pub(crate) mod session_effects;
pub(crate) mod stream;
mod typed;

pub(crate) use self::param::{check_params, WireStatement};
pub use self::param::{Param, ParamError};
pub use self::request::{batch, work, Client, SqlRequest, UnitOfWork, WorkFuture};
pub use self::response::{ResultSet, SqlResponse, Value};
pub use self::row::{sql_type_name, ColumnIndex, FromRow, FromSqlValue, Reason, Row, RowError};
pub use self::stream::{RowStream, DEFAULT_STREAM_BUFFER, MAX_STREAM_BUFFER};
pub use self::typed::{ResultLimits, TypedOutput};
