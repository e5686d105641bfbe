//! What a request may leave behind on its pooled session, for the pool to undo before the
//! connection serves someone else.
//!
//! SQL Server keeps per session: open transactions, `SET` options (isolation level,
//! `IMPLICIT_TRANSACTIONS`, `XACT_ABORT`, `NOCOUNT`, `LOCK_TIMEOUT`, the ANSI options…),
//! `#temp` tables, the current database (`USE`), session context, global cursors and
//! session-owned application locks. Drivers reset it with the TDS RESETCONNECTION flag;
//! tiberius does not expose that flag, and under TLS the bytes cannot be rewritten below
//! it. So:
//!
//! - **Statements** travel as `sp_executesql` (tiberius sends every query that way), and
//!   SQL Server ends the dynamic SQL's scope when it returns: `SET` options are restored,
//!   `#temp` tables dropped, `USE` undone. What outlives it is found by a lexical scan of
//!   the text (once, when the request is built): a transaction left open (`BEGIN TRAN`,
//!   `SAVE TRAN`, `EXEC` of a procedure, `IMPLICIT_TRANSACTIONS`) makes the pool run the
//!   reset batch ([`RESET_BATCH`]), which reports and rolls it back; session context,
//!   `CONTEXT_INFO`, cursors and session-owned application locks make the pool close the
//!   connection instead of reusing it.
//! - **Units of work** run code the crate cannot scan, and may send plain batches whose
//!   `SET`s last: they always get the reset batch (it also proves no transaction was left
//!   open). State only a connection close undoes (`#temp` tables, `USE`, …) is the unit
//!   of work's to clean up; see [`UnitOfWork`](super::UnitOfWork).
//! - Plain SELECT/INSERT/UPDATE/DELETE/MERGE: nothing, no extra round trip.
//!
//! The scan errs on the side of resetting: a word it cannot rule out counts.

use super::lex::{Token, Tokens};

/// What a request may have changed on its session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SessionEffects {
    /// It may have opened a transaction (`BEGIN TRAN`, `SAVE TRAN`, `EXEC` of a procedure,
    /// `IMPLICIT_TRANSACTIONS`).
    pub transactions: bool,
    /// It may have changed a `SET` option for the session (units of work; a statement's
    /// options end with its `sp_executesql`).
    pub options: bool,
    /// It may have left state only closing the connection undoes.
    pub lasting: bool,
}

/// Restores what [`SessionEffects::options`] covers, to the values a tiberius / ODBC /
/// SqlClient login starts with (and SQL Server's defaults for the rest), after reporting
/// and rolling back any open transaction. One batch, one round trip; its first result is
/// `@@TRANCOUNT` as the request left it.
pub(crate) const RESET_BATCH: &str = "SELECT @@TRANCOUNT AS open_transactions;\n\
IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION;\n\
SET TRANSACTION ISOLATION LEVEL READ COMMITTED;\n\
SET IMPLICIT_TRANSACTIONS, XACT_ABORT, NOCOUNT, ARITHABORT, ARITHIGNORE, NUMERIC_ROUNDABORT, CURSOR_CLOSE_ON_COMMIT, ANSI_NULL_DFLT_OFF OFF;\n\
SET ANSI_NULLS, ANSI_PADDING, ANSI_WARNINGS, ANSI_NULL_DFLT_ON, CONCAT_NULL_YIELDS_NULL, QUOTED_IDENTIFIER ON;\n\
SET LOCK_TIMEOUT -1;\n\
SET ROWCOUNT 0;\n\
SET DEADLOCK_PRIORITY NORMAL;";

/// Words that mean lasting session state wherever they appear.
const LASTING: &[&str] = &[
    "CURSOR",
    "SP_SET_SESSION_CONTEXT",
    "SP_GETAPPLOCK",
    "SP_SETAPPROLE",
];

impl SessionEffects {
    /// A unit of work: anything but lasting state is assumed (see the module docs).
    pub(crate) const UNIT_OF_WORK: SessionEffects = SessionEffects {
        transactions: true,
        options: true,
        lasting: false,
    };

    /// Nothing to undo (the crate's own requests that scope and check what they change).
    pub(crate) const NONE: SessionEffects = SessionEffects {
        transactions: false,
        options: false,
        lasting: false,
    };

    /// Scans a statement's text (no allocation: words are compared in place).
    pub(crate) fn of(sql: &str) -> SessionEffects {
        let is = |word: &str, any: &[&str]| any.iter().any(|k| word.eq_ignore_ascii_case(k));
        let mut effects = SessionEffects::NONE;
        let mut prev: Option<&str> = None;
        let mut tokens = Tokens::new(sql).peekable();
        while let Some(token) = tokens.next() {
            let Token::Word(word) = token else {
                prev = None;
                continue;
            };
            if prev.is_some_and(|p| is(p, &["BEGIN", "SAVE"]))
                && is(word, &["TRAN", "TRANSACTION", "DISTRIBUTED"])
            {
                effects.transactions = true;
            }
            if is(word, &["EXEC", "EXECUTE"]) {
                effects.transactions = true;
            }
            if is(word, LASTING) {
                effects.lasting = true;
            }
            if word.eq_ignore_ascii_case("SET") {
                // `SET <option>` ends with the statement's sp_executesql, except these.
                if let Some(Token::Word(option)) = tokens.peek() {
                    if is(option, &["IMPLICIT_TRANSACTIONS", "ANSI_DEFAULTS"]) {
                        effects.transactions = true;
                    } else if option.eq_ignore_ascii_case("CONTEXT_INFO") {
                        effects.lasting = true;
                    }
                }
            }
            prev = Some(word);
        }
        effects
    }

    /// Whether the reset batch must run after the request.
    pub(crate) fn reset(&self) -> bool {
        self.transactions || self.options
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(sql: &str) -> (bool, bool, bool) {
        let e = SessionEffects::of(sql);
        (e.transactions, e.options, e.lasting)
    }

    #[test]
    fn plain_statements_change_nothing() {
        for sql in [
            "SELECT 1",
            "SELECT id, name FROM items WHERE id = @P1",
            "INSERT INTO writes (write_id, note) VALUES (@P1, @P2)",
            "UPDATE t SET a = 1, b = 2 WHERE id = @P1",
            "UPDATE t SET t.a += 1",
            "UPDATE t SET [set] = 'SET XACT_ABORT ON' -- SET NOCOUNT ON",
            "SELECT 'BEGIN TRAN; USE other; #x' /* SET LANGUAGE x /* nested */ still */",
            "DELETE FROM orders WHERE created_at < @P1",
            "SELECT N'été'",
        ] {
            assert_eq!(of(sql), (false, false, false), "{sql}");
        }
    }

    #[test]
    fn transactions_and_lasting_state_are_found() {
        assert_eq!(of("BEGIN TRAN; UPDATE t SET a = 1"), (true, false, false));
        assert_eq!(of("begin transaction"), (true, false, false));
        assert_eq!(of("SAVE TRANSACTION s1"), (true, false, false));
        assert_eq!(of("EXEC dbo.do_it @P1"), (true, false, false));
        assert_eq!(
            of("SET IMPLICIT_TRANSACTIONS ON; INSERT t VALUES (1)"),
            (true, false, false)
        );
        assert_eq!(of("SET CONTEXT_INFO 0x01"), (false, false, true));
        assert_eq!(
            of("EXEC sp_set_session_context N'tenant', 42"),
            (true, false, true)
        );
        assert_eq!(of("DECLARE c CURSOR FOR SELECT 1"), (false, false, true));
    }

    #[test]
    fn what_ends_with_the_statement_is_left_to_the_server() {
        // sp_executesql restores SET options, drops #temp tables and undoes USE.
        for sql in [
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; SELECT 1",
            "set xact_abort on",
            "SET ANSI_NULLS, QUOTED_IDENTIFIER OFF",
            "CREATE TABLE #scratch (a INT)",
            "USE otherdb",
            "DECLARE @x INT; SET @x = 1",
        ] {
            assert_eq!(of(sql), (false, false, false), "{sql}");
        }
    }

    #[test]
    fn unterminated_literals_and_comments_end_the_scan() {
        assert_eq!(of("SELECT 'open"), (false, false, false));
        assert_eq!(of("SELECT 1 /* open"), (false, false, false));
        assert_eq!(of("SELECT [open"), (false, false, false));
    }
}
