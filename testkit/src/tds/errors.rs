//! SQL Server error descriptions (number, class, state, message) sent as ERROR tokens.

use serde::{Deserialize, Serialize};

/// An error as SQL Server reports it: the number the client matches on, its severity
/// class, a state and the message text.
///
/// The message may contain the placeholders `{user}`, `{database}`, `{server}` and
/// `{spid}`, replaced when the error is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorSpec {
    /// Error number (e.g. 40613, 1205, 18456).
    pub number: u32,
    /// Severity class (e.g. 20 for Azure transient errors, 14 for login failures).
    pub class: u8,
    /// State byte (SQL Server uses it to tell causes apart; default 1).
    #[serde(default = "default_state")]
    pub state: u8,
    /// Message text.
    pub message: String,
}

fn default_state() -> u8 {
    1
}

impl ErrorSpec {
    /// An error with the given number, class and message (state 1).
    pub fn new(number: u32, class: u8, message: impl Into<String>) -> Self {
        ErrorSpec {
            number,
            class,
            state: 1,
            message: message.into(),
        }
    }

    /// The same error with another state byte.
    pub fn with_state(mut self, state: u8) -> Self {
        self.state = state;
        self
    }

    /// An error for a well-known number with SQL Server's class and message text
    /// (40613, 40501, 40197, 40615, 4060, 18456, 1205, 1222, 3906, 10928, 10929,
    /// 49918, 233, 208, 2627, 515, …); unknown numbers get class 16 and a generic text.
    pub fn known(number: u32) -> Self {
        let (class, message): (u8, &str) = match number {
            40613 => (
                20,
                "Database '{database}' on server '{server}' is not currently available.  Please retry the connection later.  If the problem persists, contact customer support, and provide them the session tracing ID of '00000000-0000-0000-0000-000000000000'.",
            ),
            40501 => (
                20,
                "The service is currently busy. Retry the request after 10 seconds. Incident ID: 00000000-0000-0000-0000-000000000000. Code: 0.",
            ),
            40197 => (
                20,
                "The service has encountered an error processing your request. Please try again. Error code 4815.",
            ),
            40615 => (
                14,
                "Cannot open server '{server}' requested by the login. Client is not allowed to access the server.",
            ),
            49918 => (
                16,
                "Cannot process request. Not enough resources to process request. The service is currently busy.Please retry the request later.",
            ),
            10928 => (
                20,
                "Resource ID : 1. The request limit for the database is 30 and has been reached.",
            ),
            10929 => (
                20,
                "Resource ID : 1. The request limit for the database is 30 and has been reached. However, the server is currently too busy to support requests greater than 30 for this database.",
            ),
            4060 => (
                11,
                "Cannot open database \"{database}\" requested by the login. The login failed.",
            ),
            18456 => (14, "Login failed for user '{user}'."),
            1205 => (
                13,
                "Transaction (Process ID {spid}) was deadlocked on lock resources with another process and has been chosen as the deadlock victim. Rerun the transaction.",
            ),
            1222 => (16, "Lock request time out period exceeded."),
            3906 => (
                16,
                "Failed to update database \"{database}\" because the database is read-only.",
            ),
            233 => (
                20,
                "A transport-level error has occurred when receiving results from the server.",
            ),
            208 => (16, "Invalid object name."),
            2627 => (14, "Violation of PRIMARY KEY constraint."),
            515 => (16, "Cannot insert the value NULL into column."),
            _ => (16, "Injected error."),
        };
        ErrorSpec::new(number, class, message)
    }

    /// 40613 class 20: "Database '…' on server '…' is not currently available."
    pub fn database_unavailable(database: &str) -> Self {
        let mut e = Self::known(40613);
        e.message = e.message.replace("{database}", database);
        e
    }

    /// 40501 class 20: "The service is currently busy."
    pub fn service_busy() -> Self {
        Self::known(40501)
    }

    /// 40197 class 20: "The service has encountered an error processing your request."
    pub fn service_error() -> Self {
        Self::known(40197)
    }

    /// 4060 class 11: "Cannot open database "…" requested by the login."
    pub fn cannot_open_database(database: &str) -> Self {
        let mut e = Self::known(4060);
        e.message = e.message.replace("{database}", database);
        e
    }

    /// 18456 class 14: "Login failed for user '…'." (the user placeholder is filled in
    /// with the login's user name when sent).
    pub fn login_failed() -> Self {
        Self::known(18456)
    }

    /// 1205 class 13: deadlock victim.
    pub fn deadlock() -> Self {
        Self::known(1205)
    }

    /// 3906 class 16: the database is read-only.
    pub fn read_only(database: &str) -> Self {
        let mut e = Self::known(3906);
        e.message = e.message.replace("{database}", database);
        e
    }

    pub(crate) fn render(&self, user: &str, database: &str, server: &str, spid: u16) -> String {
        self.message
            .replace("{user}", user)
            .replace("{database}", database)
            .replace("{server}", server)
            .replace("{spid}", &spid.to_string())
    }
}
