//! Session `SET` options: what a session has set, as SQL Server keeps it per session and
//! reports it in `@@OPTIONS`, `@@LOCK_TIMEOUT` and `sys.dm_exec_sessions`.
//!
//! Tracked: the `@@OPTIONS` flags (`XACT_ABORT`, `NOCOUNT`, `IMPLICIT_TRANSACTIONS`, the
//! ANSI options, `ARITHABORT`, `QUOTED_IDENTIFIER`, …), `TRANSACTION ISOLATION LEVEL` and
//! `LOCK_TIMEOUT`. What the testkit *does* with them: `XACT_ABORT` changes error handling,
//! `NOCOUNT` drops row counts, `IMPLICIT_TRANSACTIONS` opens a transaction at the first
//! data statement; the others are only reported (SQLite has one isolation level and no lock
//! timeout of its own; see the README). SQL Server restores them when an RPC's dynamic SQL
//! returns, so a session saves and restores them around RPCs.

use super::errors::ErrorSpec;
use super::translate::{Action, Kind, Tok};

/// The `@@OPTIONS` bits, by option name (SQL Server's "user options" values).
const FLAGS: &[(&str, i64)] = &[
    ("DISABLE_DEF_CNST_CHK", 1),
    ("IMPLICIT_TRANSACTIONS", 2),
    ("CURSOR_CLOSE_ON_COMMIT", 4),
    ("ANSI_WARNINGS", 8),
    ("ANSI_PADDING", 16),
    ("ANSI_NULLS", 32),
    ("ARITHABORT", 64),
    ("ARITHIGNORE", 128),
    ("QUOTED_IDENTIFIER", 256),
    ("NOCOUNT", 512),
    ("ANSI_NULL_DFLT_ON", 1024),
    ("ANSI_NULL_DFLT_OFF", 2048),
    ("CONCAT_NULL_YIELDS_NULL", 4096),
    ("NUMERIC_ROUNDABORT", 8192),
    ("XACT_ABORT", 16384),
];

/// `@@OPTIONS` right after an ODBC / SqlClient / tiberius login: ANSI_WARNINGS,
/// ANSI_PADDING, ANSI_NULLS, QUOTED_IDENTIFIER, ANSI_NULL_DFLT_ON,
/// CONCAT_NULL_YIELDS_NULL (8 + 16 + 32 + 256 + 1024 + 4096).
pub(crate) const LOGIN_OPTIONS: i64 = 5432;

/// READ COMMITTED, as `sys.dm_exec_sessions.transaction_isolation_level` numbers it.
const READ_COMMITTED: u8 = 2;

/// One session's SET options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionOptions {
    /// `@@OPTIONS`.
    pub bits: i64,
    /// 1 READ UNCOMMITTED, 2 READ COMMITTED, 3 REPEATABLE READ, 4 SERIALIZABLE, 5 SNAPSHOT.
    pub isolation: u8,
    /// `@@LOCK_TIMEOUT` in milliseconds; -1 waits for ever.
    pub lock_timeout: i64,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            bits: LOGIN_OPTIONS,
            isolation: READ_COMMITTED,
            lock_timeout: -1,
        }
    }
}

impl SessionOptions {
    /// Whether each statement reads the latest committed data (READ UNCOMMITTED or READ
    /// COMMITTED) rather than what the transaction read first.
    pub fn reads_per_statement(&self) -> bool {
        self.isolation <= READ_COMMITTED
    }

    fn flag(&self, name: &str) -> bool {
        FLAGS
            .iter()
            .any(|(n, bit)| *n == name && self.bits & bit != 0)
    }

    /// `SET XACT_ABORT ON`.
    pub fn xact_abort(&self) -> bool {
        self.flag("XACT_ABORT")
    }

    /// `SET NOCOUNT ON`.
    pub fn nocount(&self) -> bool {
        self.flag("NOCOUNT")
    }

    /// `SET IMPLICIT_TRANSACTIONS ON`.
    pub fn implicit_transactions(&self) -> bool {
        self.flag("IMPLICIT_TRANSACTIONS")
    }

    /// Applies a `SET` statement that names a tracked option: `Some(Ok)` when applied,
    /// `Some(Err)` when malformed, `None` when the statement is not about one (other SET
    /// options are accepted and ignored by the caller).
    pub fn apply(&mut self, toks: &[Tok]) -> Option<Result<(), ErrorSpec>> {
        if !toks.first()?.is_kw("SET") {
            return None;
        }
        let words: Vec<String> = toks[1..].iter().filter_map(Tok::kw).collect();
        let first = words.first()?;
        if first == "TRANSACTION" {
            return Some(self.set_isolation(&words[1..]));
        }
        if first == "LOCK_TIMEOUT" {
            return Some(self.set_lock_timeout(&toks[2..]));
        }
        if first == "ANSI_DEFAULTS" {
            // ANSI_DEFAULTS ON/OFF sets this group at once (SQL Server's documented list).
            let on = on_off(words.last()?)?;
            for name in [
                "ANSI_NULLS",
                "ANSI_NULL_DFLT_ON",
                "ANSI_PADDING",
                "ANSI_WARNINGS",
                "CURSOR_CLOSE_ON_COMMIT",
                "IMPLICIT_TRANSACTIONS",
                "QUOTED_IDENTIFIER",
            ] {
                self.set_flag(name, on);
            }
            return Some(Ok(()));
        }
        // `SET A, B, C ON|OFF`: a list of flag options.
        let (value, names) = words.split_last()?;
        if names.is_empty() || !names.iter().all(|n| FLAGS.iter().any(|(f, _)| f == n)) {
            return None;
        }
        let on = match on_off(value) {
            Some(on) => on,
            None => return Some(Err(syntax(value))),
        };
        for name in names {
            self.set_flag(name, on);
        }
        Some(Ok(()))
    }

    fn set_flag(&mut self, name: &str, on: bool) {
        if let Some((_, bit)) = FLAGS.iter().find(|(n, _)| *n == name) {
            if on {
                self.bits |= bit;
            } else {
                self.bits &= !bit;
            }
        }
    }

    fn set_isolation(&mut self, words: &[String]) -> Result<(), ErrorSpec> {
        let level: Vec<&str> = words.iter().map(String::as_str).collect();
        self.isolation = match level.as_slice() {
            ["ISOLATION", "LEVEL", "READ", "UNCOMMITTED"] => 1,
            ["ISOLATION", "LEVEL", "READ", "COMMITTED"] => 2,
            ["ISOLATION", "LEVEL", "REPEATABLE", "READ"] => 3,
            ["ISOLATION", "LEVEL", "SERIALIZABLE"] => 4,
            ["ISOLATION", "LEVEL", "SNAPSHOT"] => 5,
            _ => return Err(syntax("TRANSACTION")),
        };
        Ok(())
    }

    fn set_lock_timeout(&mut self, rest: &[Tok]) -> Result<(), ErrorSpec> {
        let text: String = rest.iter().map(Tok::render).collect::<Vec<_>>().join("");
        match text.parse::<i64>() {
            Ok(ms) if ms >= -1 => {
                self.lock_timeout = ms;
                Ok(())
            }
            _ => Err(syntax("LOCK_TIMEOUT")),
        }
    }
}

/// Whether `action` opens a transaction under `IMPLICIT_TRANSACTIONS ON`: data and schema
/// statements, and a SELECT that reads a table (`SELECT 1` does not).
pub(crate) fn opens_implicit_transaction(action: &Action) -> bool {
    match action {
        Action::Sql { kind, sql } => match kind {
            Kind::Insert
            | Kind::Update
            | Kind::Delete
            | Kind::Create
            | Kind::Drop
            | Kind::Alter => true,
            Kind::Select => sql.to_ascii_uppercase().contains(" FROM "),
            Kind::Other => false,
        },
        _ => false,
    }
}

fn on_off(word: &str) -> Option<bool> {
    match word {
        "ON" => Some(true),
        "OFF" => Some(false),
        _ => None,
    }
}

fn syntax(near: &str) -> ErrorSpec {
    ErrorSpec::new(102, 15, format!("Incorrect syntax near '{near}'."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tds::translate::tokenize;

    fn set(o: &mut SessionOptions, sql: &str) -> Option<Result<(), ErrorSpec>> {
        o.apply(&tokenize(sql).unwrap())
    }

    #[test]
    fn flags_isolation_and_lock_timeout_are_tracked() {
        let mut o = SessionOptions::default();
        assert_eq!(o.bits, LOGIN_OPTIONS);
        assert!(set(&mut o, "SET XACT_ABORT, NOCOUNT ON").unwrap().is_ok());
        assert!(o.xact_abort() && o.nocount());
        assert_eq!(o.bits, LOGIN_OPTIONS + 16384 + 512);
        assert!(set(&mut o, "set implicit_transactions on").unwrap().is_ok());
        assert!(o.implicit_transactions());
        assert!(set(&mut o, "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
            .unwrap()
            .is_ok());
        assert_eq!(o.isolation, 4);
        assert!(set(&mut o, "SET LOCK_TIMEOUT 1800").unwrap().is_ok());
        assert_eq!(o.lock_timeout, 1800);
        assert!(set(&mut o, "SET LOCK_TIMEOUT -1").unwrap().is_ok());
        assert_eq!(o.lock_timeout, -1);
        assert!(set(&mut o, "SET ANSI_DEFAULTS OFF").unwrap().is_ok());
        assert!(!o.implicit_transactions());
        assert_eq!(o.bits & 32, 0, "ANSI_NULLS off");
    }

    #[test]
    fn other_statements_and_options_are_not_taken() {
        let mut o = SessionOptions::default();
        assert!(set(&mut o, "SELECT 1").is_none());
        assert!(set(&mut o, "SET DATEFORMAT dmy").is_none());
        assert!(set(&mut o, "SET ROWCOUNT 0").is_none());
        assert!(set(&mut o, "SET CONTEXT_INFO 0x01").is_none());
        assert!(set(&mut o, "SET XACT_ABORT MAYBE").unwrap().is_err());
        assert!(set(&mut o, "SET TRANSACTION ISOLATION LEVEL SOMETIMES")
            .unwrap()
            .is_err());
        assert!(set(&mut o, "SET LOCK_TIMEOUT soon").unwrap().is_err());
        assert_eq!(o, SessionOptions::default());
    }
}
