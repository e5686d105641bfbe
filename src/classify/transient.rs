//! The transient error-number table: SQL Server / Azure SQL error numbers that are worth
//! retrying, with the meaning of each and where the number comes from.
//!
//! The table is the union of four lists:
//!
//! * the default transient-error list of Microsoft.Data.SqlClient's configurable retry logic
//!   (`SqlConfigurableRetryFactory`, 20 numbers);
//! * the numbers EF Core's `SqlServerTransientExceptionDetector` retries on (every number it
//!   matches lies in this table);
//! * the "transient fault error codes" table of the Azure SQL troubleshooting documentation;
//! * network / transport-level failures that the client reports with a SQL error number
//!   (connection reset, time-out, name resolution and similar).
//!
//! Each [`TransientNumber`] records which of these lists it came from ([`Source`]), a one-line
//! paraphrase of the server's message, and, where the message names one, the minimum delay
//! before a retry. Classification code looks numbers up with [`lookup`]; a number that is not
//! in the table is not considered transient by this table. Whether a retry is actually safe
//! (for example, whether a statement is idempotent) is decided elsewhere.

use std::time::Duration;

/// Where a transient number was sourced from (a number can come from several).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Microsoft.Data.SqlClient's default transient-error list (`SqlConfigurableRetryFactory`).
    SqlClient,
    /// EF Core's `SqlServerTransientExceptionDetector`.
    EfCore,
    /// The Azure SQL documentation's transient-error list.
    AzureDocs,
    /// Network / transport-level error reported with a SQL error number.
    Network,
}

/// One transient error number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransientNumber {
    /// The SQL Server error number.
    pub number: u32,
    /// What the server means by it (one line).
    pub meaning: &'static str,
    /// Where the number was sourced from.
    pub sources: &'static [Source],
    /// The minimum delay the server asks for before a retry, if it states one.
    pub delay_hint: Option<Duration>,
}

/// All transient numbers, sorted ascending by `number`, no duplicates.
pub const TRANSIENT_NUMBERS: &[TransientNumber] = &[
    TransientNumber {
        number: 20,
        meaning: "The instance being connected to does not support encryption (DBNETLIB connection error)",
        sources: &[Source::EfCore, Source::Network],
        delay_hint: None,
    },
    TransientNumber {
        number: 64,
        meaning: "Connected, but login then failed: the specified network name is no longer available",
        sources: &[Source::EfCore, Source::Network],
        delay_hint: None,
    },
    TransientNumber {
        number: 121,
        meaning: "The semaphore timeout period has expired (transport-level time-out)",
        sources: &[Source::EfCore, Source::Network],
        delay_hint: None,
    },
    TransientNumber {
        number: 203,
        meaning: "Connected, but an error then occurred during the pre-login handshake",
        sources: &[Source::EfCore, Source::Network],
        delay_hint: None,
    },
    TransientNumber {
        number: 233,
        meaning: "Connection failed during initialization before login (server busy, out of resources, or reset)",
        sources: &[Source::SqlClient, Source::EfCore, Source::Network],
        delay_hint: None,
    },
    TransientNumber {
        number: 539,
        meaning: "The schema changed after the SELECT INTO target table was created; rerun the query",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 601,
        meaning: "Could not continue a scan with NOLOCK because of data movement",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 615,
        meaning: "Could not find the database by ID and name; it may be offline, wait a few minutes and try again",
        sources: &[Source::EfCore, Source::AzureDocs],
        delay_hint: None,
    },
    TransientNumber {
        number: 617,
        meaning: "An object descriptor was missing from the hash table (work table entry missing); rerun the query",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 669,
        meaning: "The row object is inconsistent; rerun the query",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 921,
        meaning: "The database has not been recovered yet; wait and try again",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 926,
        meaning: "The database cannot be opened because recovery marked it SUSPECT (seen briefly during reconfiguration)",
        sources: &[Source::EfCore, Source::AzureDocs],
        delay_hint: None,
    },
    TransientNumber {
        number: 927,
        meaning: "The database cannot be opened because it is in the middle of a restore",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 941,
        meaning: "The database cannot be opened because it is not started; retry when it is started",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 952,
        meaning: "The database is in transition; try the statement later",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 982,
        meaning: "No online secondary replica is enabled for read-only access; retry when one comes online",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 988,
        meaning: "The database lacks a quorum of nodes for high availability; try again later",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 997,
        meaning: "Connected, but login then failed: overlapped I/O operation in progress (Named Pipes)",
        sources: &[Source::SqlClient, Source::EfCore, Source::Network],
        delay_hint: None,
    },
    TransientNumber {
        number: 1203,
        meaning: "A process tried to unlock a resource it does not own, possibly a timing condition; retry",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 1204,
        meaning: "The Database Engine cannot obtain a LOCK resource now; rerun when there are fewer active users",
        sources: &[Source::SqlClient, Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 1205,
        meaning: "The transaction was deadlocked with another process and chosen as the victim; rerun it",
        sources: &[Source::SqlClient, Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 1215,
        meaning: "A conflicting ABORT_AFTER_WAIT = BLOCKERS request is waiting for transactions to roll back",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 1216,
        meaning: "An ABORT_AFTER_WAIT = BLOCKERS DDL statement conflicts with a system task; retry when it ends",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 1221,
        meaning: "The engine tried to release locks not held by the transaction; retry the transaction",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 1222,
        meaning: "The lock request time-out period was exceeded",
        sources: &[Source::SqlClient, Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 1232,
        meaning: "Failed to acquire a lock with the lock manager service, possibly a transient service failure",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 1404,
        meaning: "The command failed because the database mirror is busy; reissue it later",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 1413,
        meaning: "Communication with the remote instance failed before database mirroring fully started",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 1421,
        meaning: "Communication with the remote instance timed out; ALTER DATABASE may not have completed",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 1438,
        meaning: "The server instance rejected a configure request; transient, so retrying is likely to succeed",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 1532,
        meaning: "A new sort run found an extent not marked as shared; retry the transaction",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 1533,
        meaning: "Cannot share an extent because the correct extents could not be identified; retry",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 1534,
        meaning: "An extent was not found in the shared extent directory; retry the transaction",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 1535,
        meaning: "Cannot share an extent because the shared extent directory is full; retry the transaction",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 1807,
        meaning: "Could not obtain an exclusive lock on the model database; retry later",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 2021,
        meaning: "A referenced entity was modified during DDL execution; retry the operation",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 2816,
        meaning: "The metadata for an object has changed; retry the statement",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 3429,
        meaning: "Recovery could not resolve a cross-database transaction: the coordinating database was unavailable",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 3635,
        meaning: "An error occurred while processing database file metadata; retry the operation",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 3935,
        meaning: "A FILESTREAM transaction context could not be initialized, possibly a resource shortage",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 3941,
        meaning: "The transaction started before replication or CDC was enabled on the database; retry it",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 3947,
        meaning: "The transaction was aborted because the secondary compute failed to catch up on redo",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 3948,
        meaning: "The transaction was terminated by an availability replica change or ghost record cleanup; retry",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 3950,
        meaning: "A version store scan timed out reading the next row; retry when the system is less busy",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 3953,
        meaning: "Snapshot isolation failed: the database was not recovered when the transaction started",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 3957,
        meaning: "Snapshot isolation failed: the database did not allow it when the transaction started",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 3960,
        meaning: "A snapshot isolation transaction was aborted due to an update conflict",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 3966,
        meaning: "The transaction was rolled back: it needed row versions removed when tempdb ran short of space",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 3980,
        meaning: "The request was aborted because its batch was aborted or the session is busy with another request",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 4060,
        meaning: "Cannot open the database requested by the login; the login failed",
        sources: &[Source::SqlClient, Source::EfCore, Source::AzureDocs],
        delay_hint: None,
    },
    TransientNumber {
        number: 4117,
        meaning: "Cannot read table data: a table with a computed column is having its schema altered too often",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 4184,
        meaning: "Cannot read table data: a table with a filtered index or stats has its schema altered too often",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 4221,
        meaning: "Login to a readable secondary failed after a long wait for the transition to row versioning",
        sources: &[Source::SqlClient, Source::EfCore, Source::AzureDocs],
        delay_hint: None,
    },
    TransientNumber {
        number: 5280,
        meaning: "An unexpected protocol element was received during a consistency check command; retry",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 5529,
        meaning: "A FILESTREAM file cannot be removed until it is hardened on every secondary replica; retry",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 6292,
        meaning: "The transaction for this operation was already committed or rolled back; retry with a new one",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 7951,
        meaning: "Filestream consistency checks could not complete due to an OS error; likely transient, rerun",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 8628,
        meaning: "A time-out occurred while waiting to optimize the query; rerun the query",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 8645,
        meaning: "A time-out occurred while waiting for memory resources to execute the query; rerun the query",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 8651,
        meaning: "The requested memory grant was not available in the resource pool; rerun the query",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 9020,
        meaning: "The database log failed to grow while a shrink was in progress; retry",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 9515,
        meaning: "An XML schema was altered or dropped, so the query plan is no longer valid; rerun the batch",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 9985,
        meaning: "Not enough memory to build a search property list cache; rerun the full-text indexing statement",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 10053,
        meaning: "Transport-level error: an established connection was aborted by software on the host",
        sources: &[Source::EfCore, Source::Network],
        delay_hint: None,
    },
    TransientNumber {
        number: 10054,
        meaning: "Transport-level error: the existing connection was forcibly closed by the remote host",
        sources: &[Source::EfCore, Source::Network],
        delay_hint: None,
    },
    TransientNumber {
        number: 10060,
        meaning: "Network error while connecting: the connection attempt timed out (the host did not respond)",
        sources: &[Source::SqlClient, Source::EfCore, Source::Network],
        delay_hint: None,
    },
    TransientNumber {
        number: 10922,
        meaning: "The operation failed; rerun the statement",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 10928,
        meaning: "A resource limit for the database (such as workers or sessions) has been reached",
        sources: &[Source::SqlClient, Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 10929,
        meaning: "The server is too busy to serve requests above the database's minimum guarantee; try again",
        sources: &[Source::SqlClient, Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 10930,
        meaning: "The service is currently too busy; try again later",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 10936,
        meaning: "The request limit for the elastic pool has been reached",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 11001,
        meaning: "Network error while connecting: no such host is known (DNS lookup failure)",
        sources: &[Source::EfCore, Source::Network],
        delay_hint: None,
    },
    TransientNumber {
        number: 11539,
        meaning: "A type in the WITH RESULT SETS clause changed after EXECUTE started; rerun the statement",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 14355,
        meaning: "The MSSQLServerADHelper service is busy; retry later",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 14817,
        meaning: "The remote server is not accessible (check that it exists and the firewall rules); retry",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 14868,
        meaning: "Outbound migration cannot be set while inbound migration is in progress or paused; retry later",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 14906,
        meaning: "The remote database is not accessible; retry the command",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 16528,
        meaning: "The operation failed; retry it later",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 16554,
        meaning: "The operation failed due to an error in a background task; retry",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 16555,
        meaning: "The operation failed while processing rejected rows; discard partial results and retry",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 17065,
        meaning: "A SQL Server assertion failed (with extra detail); may be timing-related, rerun the statement",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 17066,
        meaning: "A SQL Server assertion failed; this may be timing-related, rerun the statement",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 17067,
        meaning: "A SQL Server assertion was raised at a file and line; may be timing-related, rerun the statement",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 17197,
        meaning: "Login failed due to a time-out and the connection was closed; may indicate heavy server load",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 17889,
        meaning: "A new connection was rejected because the session reached its connection limit; retry",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 18401,
        meaning: "Login failed: the server is in script upgrade mode (e.g. recovering after a failover)",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 18858,
        meaning: "Could not read data from a replication table; retry, or else reconfigure replication",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 19413,
        meaning: "Switching the availability group to the local cluster context waits for secondaries to sync",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 19416,
        meaning: "Databases in the availability group are not synchronized; wait until they are and retry",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 19494,
        meaning: "Automatic seeding of an availability database failed with a transient error; it will be retried",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 20041,
        meaning: "The transaction was rolled back because a trigger could not be executed; retry it",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 21503,
        meaning: "Merge metadata cleanup cannot run while merge processes are running; retry after they finish",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 22225,
        meaning: "An internal error occurred; retry the operation",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 22226,
        meaning: "An internal error occurred; retry the operation",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 22335,
        meaning: "Cannot obtain a LOCK resource now due to an internal error; rerun with fewer active users",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 22353,
        meaning: "The SQL instance is not correctly set up to allow this operation; retry",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 22355,
        meaning: "The lock manager does not exist; retry the operation",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 22358,
        meaning: "The database controller required for this operation was not found; retry",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 22427,
        meaning: "The operation failed due to an error in a background task; retry",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 22430,
        meaning: "The operation failed because the database is shutting down; retry",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 22491,
        meaning: "The DDL statement failed due to an internal error; retry",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 22493,
        meaning: "The database failed to sync; retry the operation",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 22498,
        meaning: "Not enough resources to perform the operation; retry later",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 22754,
        meaning: "Aborting the Synapse Link capture task for the database timed out; retry later",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 22758,
        meaning: "Aborting a Synapse Link commit task for a table group timed out; retry later",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 22759,
        meaning: "Aborting a Synapse Link snapshot task for a table timed out; retry later",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 22760,
        meaning: "Aborting a Synapse Link publish task for a partition timed out; retry later",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 22984,
        meaning: "An error occurred waiting on the log reader history cache event; may be transient, retry",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 25003,
        meaning: "Upgrading the distribution database MSmerge_subscriptions table failed; rerun the upgrade",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 25738,
        meaning: "The event session could not be started because the system is busy; try again later",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 25740,
        meaning: "Unable to start the event session because the system is busy; try again later",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 30080,
        meaning: "Full-text population cannot start while the catalog imports data; rerun after the import",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 30085,
        meaning: "Not enough memory to load the full-text stoplist cache; rerun when more resources are available",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 33123,
        meaning: "The database encryption key is still in use on a mirror or secondary replica; retry later",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 35216,
        meaning: "Adding or removing a log truncation holdup failed: the primary database is temporarily offline",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 35218,
        meaning: "Setting the initial backup LSN failed: the primary database is temporarily offline",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 35256,
        meaning: "The session timed out waiting for a response from the other availability replica; retry",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 35293,
        meaning: "The extended-recovery-fork stack changed while a secondary replica retrieved it; retry",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 37202,
        meaning: "The instance pool is busy with another ongoing operation",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 37327,
        meaning: "The maximum number of concurrent DBCC commands in the enclave was reached; rerun the query",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 39025,
        meaning: "External script execution failed because the extensibility environment is not ready yet",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 39108,
        meaning: "The maximum number of concurrent external script users was reached; retry",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 39110,
        meaning: "The maximum number of concurrent external script queries for this user was reached; retry",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 39151,
        meaning: "A transient error occurred communicating with the streaming runtime; retry",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 39152,
        meaning: "Transient streaming runtime error: a stop-streaming-job operation is unfinished; retry",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 40106,
        meaning: "The session's schema scope is not current for the partition; rerun the query",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 40143,
        meaning: "The service encountered an error processing the request; try again",
        sources: &[Source::SqlClient, Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 40189,
        meaning: "The database's resource quota was exceeded and the request aborted; rerun in the next window",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 40197,
        meaning: "The service encountered an error processing the request (failover or upgrade); try again",
        sources: &[Source::SqlClient, Source::EfCore, Source::AzureDocs],
        delay_hint: None,
    },
    TransientNumber {
        number: 40501,
        meaning: "The service is currently busy; retry the request after 10 seconds",
        sources: &[Source::SqlClient, Source::EfCore, Source::AzureDocs],
        delay_hint: Some(Duration::from_secs(10)),
    },
    TransientNumber {
        number: 40540,
        meaning: "The service encountered an error processing the request; try again",
        sources: &[Source::SqlClient, Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 40613,
        meaning: "The database on the server is not currently available; retry the connection later",
        sources: &[Source::SqlClient, Source::EfCore, Source::AzureDocs],
        delay_hint: None,
    },
    TransientNumber {
        number: 40623,
        meaning: "Reauthentication failed because the login became invalid (e.g. password change); retry login",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 40642,
        meaning: "The server is currently too busy; try again later",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 40648,
        meaning: "Too many requests have been performed; retry later",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 40671,
        meaning: "Unable to perform the requested operation on the server; retry the connection later",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 40675,
        meaning: "The service is currently too busy; try again later",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 40890,
        meaning: "The elastic pool is busy with another operation",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 40903,
        meaning: "The server is currently busy; wait a few minutes before trying again",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 40918,
        meaning: "The failover group is busy with another operation; try again later",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 40938,
        meaning: "The server DNS alias is busy with another operation; try again later",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 41301,
        meaning: "Dependency failure: the transaction depended on another one that later failed to commit",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 41302,
        meaning: "The transaction tried to update a record that was updated since the transaction started",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 41305,
        meaning: "The transaction failed to commit due to a repeatable read validation failure",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 41325,
        meaning: "The transaction failed to commit due to a serializable validation failure",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 41339,
        meaning: "A table was created or altered after the transaction started, so it was aborted; retry",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 41383,
        meaning: "An internal error occurred running a DMV query, likely due to concurrent DDL; retry the query",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 41614,
        meaning: "A fabric service hit a transient error during a Windows Fabric operation on the database",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 41619,
        meaning: "Windows Fabric hit a transient error waiting for a build replica operation on the database",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 41640,
        meaning: "The database encountered a transient error while performing a task",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 41700,
        meaning: "Windows Fabric partition and replica views are unavailable until replica manager starts; retry",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 41701,
        meaning: "The Windows Fabric activation context is unavailable at this time; retry later",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 41823,
        meaning: "The database has reached its quota for in-memory tables; may be transient, retry",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 41839,
        meaning: "The transaction exceeded the maximum number of commit dependencies",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 41840,
        meaning: "The elastic pool or managed instance reached its in-memory table quota; may be transient, retry",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 42029,
        meaning: "An internal error occurred generating a new DBTS for the database; retry",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 42108,
        meaning: "Cannot connect to the SQL pool because it is paused; resume it and try again",
        sources: &[Source::SqlClient, Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 42109,
        meaning: "The SQL pool is warming up; try again",
        sources: &[Source::SqlClient, Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 45153,
        meaning: "The management service is not currently available; retry later",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 45156,
        meaning: "The subscription is busy with another operation; try later",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 45157,
        meaning: "The server is busy with another operation; try later",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 45161,
        meaning: "The managed instance is busy with another operation; try later",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 45179,
        meaning: "The operation timed out and was automatically rolled back; retry",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 45182,
        meaning: "The database is busy with another operation; try later",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 45319,
        meaning: "The service objective update could not complete because the database is too busy",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 45547,
        meaning: "The create operation timed out in a backend workflow; retry",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 47132,
        meaning: "Joining the contained availability group failed: rebuilding contained MSDB failed; retry later",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 47137,
        meaning: "Cannot create contained system databases in the contained availability group; retry",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 47139,
        meaning: "Joining the contained availability group failed to create the group master database ID; retry",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 49510,
        meaning: "The managed instance is busy with another operation; try later",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 49802,
        meaning: "The database is unavailable at the moment; retry the connection later",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 49918,
        meaning: "Not enough resources to process the request; the service is busy, retry later",
        sources: &[Source::SqlClient, Source::EfCore, Source::AzureDocs],
        delay_hint: None,
    },
    TransientNumber {
        number: 49919,
        meaning: "Too many create or update operations are in progress for the subscription; retry later",
        sources: &[Source::SqlClient, Source::EfCore, Source::AzureDocs],
        delay_hint: None,
    },
    TransientNumber {
        number: 49920,
        meaning: "Too many operations are in progress for the subscription; retry later",
        sources: &[Source::SqlClient, Source::EfCore, Source::AzureDocs],
        delay_hint: None,
    },
    TransientNumber {
        number: 49977,
        meaning: "The elastic pool is busy with another operation; wait for it to finish and try again",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
    TransientNumber {
        number: 49983,
        meaning: "The operation failed to complete; retry it",
        sources: &[Source::EfCore],
        delay_hint: None,
    },
];

/// Looks a number up in [`TRANSIENT_NUMBERS`] (binary search).
pub fn lookup(number: u32) -> Option<&'static TransientNumber> {
    TRANSIENT_NUMBERS
        .binary_search_by_key(&number, |t| t.number)
        .ok()
        .map(|i| &TRANSIENT_NUMBERS[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Microsoft.Data.SqlClient's default transient-error list.
    const SQLCLIENT_DEFAULTS: [u32; 20] = [
        1204, 1205, 1222, 49918, 49919, 49920, 4060, 4221, 40143, 40613, 40501, 40540, 40197,
        42108, 42109, 10929, 10928, 10060, 997, 233,
    ];

    /// The Azure SQL documentation's transient fault error codes.
    const AZURE_DOCS: [u32; 10] = [
        926, 4060, 40197, 40501, 40613, 49918, 49919, 49920, 4221, 615,
    ];

    #[test]
    fn sorted_and_unique() {
        for pair in TRANSIENT_NUMBERS.windows(2) {
            assert!(
                pair[0].number < pair[1].number,
                "{} is not strictly before {}",
                pair[0].number,
                pair[1].number
            );
        }
    }

    #[test]
    fn every_sqlclient_default_is_present_and_tagged() {
        for number in SQLCLIENT_DEFAULTS {
            let entry = lookup(number).unwrap_or_else(|| panic!("{number} missing"));
            assert!(
                entry.sources.contains(&Source::SqlClient),
                "{number} is not tagged SqlClient"
            );
        }
        let tagged = TRANSIENT_NUMBERS
            .iter()
            .filter(|t| t.sources.contains(&Source::SqlClient))
            .count();
        assert_eq!(tagged, SQLCLIENT_DEFAULTS.len());
    }

    #[test]
    fn every_azure_docs_number_is_present_and_tagged() {
        for number in AZURE_DOCS {
            let entry = lookup(number).unwrap_or_else(|| panic!("{number} missing"));
            assert!(
                entry.sources.contains(&Source::AzureDocs),
                "{number} is not tagged AzureDocs"
            );
        }
    }

    #[test]
    fn every_entry_has_a_source_without_repeats() {
        for t in TRANSIENT_NUMBERS {
            assert!(!t.sources.is_empty(), "{} has no source", t.number);
            for (i, s) in t.sources.iter().enumerate() {
                assert!(
                    !t.sources[i + 1..].contains(s),
                    "{} repeats {s:?}",
                    t.number
                );
            }
        }
    }

    #[test]
    fn only_40501_has_a_delay_hint() {
        assert_eq!(
            lookup(40501).and_then(|t| t.delay_hint),
            Some(Duration::from_secs(10))
        );
        for t in TRANSIENT_NUMBERS.iter().filter(|t| t.number != 40501) {
            assert!(t.delay_hint.is_none(), "{} has a delay hint", t.number);
        }
    }

    #[test]
    fn lookup_finds_transient_and_rejects_permanent() {
        assert_eq!(lookup(1205).map(|t| t.number), Some(1205));
        assert!(
            lookup(2627).is_none(),
            "2627 (PK violation) is not transient"
        );
        assert!(lookup(102).is_none(), "102 (syntax error) is not transient");
        assert!(
            lookup(208).is_none(),
            "208 (invalid object name) is not transient"
        );
        assert!(lookup(0).is_none());
        assert!(lookup(u32::MAX).is_none());
    }

    #[test]
    fn meanings_are_one_line_without_placeholders() {
        for t in TRANSIENT_NUMBERS {
            assert!(
                !t.meaning.trim().is_empty(),
                "{} has an empty meaning",
                t.number
            );
            assert!(
                !t.meaning.contains('%'),
                "{} has a format placeholder",
                t.number
            );
            assert!(
                !t.meaning.contains('\n'),
                "{} spans several lines",
                t.number
            );
        }
    }
}
