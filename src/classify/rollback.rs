//! Which server errors prove that a failed request left **nothing applied**.
//!
//! A server error ([`Outcome::Rejected`](crate::error::Outcome::Rejected)) says the server
//! answered; it does not say the request had no effect. SQL Server (with `XACT_ABORT OFF`,
//! its default) undoes only the failing *statement* for most errors and goes on with the
//! batch; a deadlock victim (1205) has its *transaction* rolled back; a fatal error (class
//! 20 and above: 40613, 40197, 40501 from Azure) ends the session, which rolls back an open
//! transaction. What was committed before the error — an autocommit statement earlier in
//! the batch, or a unit of work's `COMMIT` before a later statement failed — stays
//! committed, and nothing the server says afterwards proves otherwise.
//!
//! So a failed request is proven to have left nothing applied only when:
//!
//! - **Inside a transaction** (a unit of work): the failing request was sent while the
//!   unit's transaction was open (the transaction descriptor tiberius sent is non-zero),
//!   the attempt never saw another transaction (a second descriptor means one ended), no
//!   request of the attempt could commit (none mentions `COMMIT`, none is a
//!   transaction-manager request), and that transaction is gone without a commit: the
//!   error rolled it back (1205, class ≥ 20), or it was still open after the error and
//!   the crate rolled it back. This relies on the unit's contract: every write of the unit
//!   is inside that one transaction (see [`UnitOfWork`](crate::sql::UnitOfWork)).
//! - **Outside a transaction** (a plain statement): the request was the attempt's only
//!   request and its text is a single `INSERT`, `UPDATE` or `DELETE` statement (see
//!   [`is_single_dml`]). A statement is atomic: whatever the error, that statement's
//!   changes are undone, and there was no other statement to commit anything.
//!
//! Anything else — e.g. `INSERT …; SELECT …` failing in the `SELECT`, a stored procedure,
//! an error after the unit's `COMMIT`, or a connection whose bytes the crate cannot read
//! (TLS) — is not proof, and the error reports [`Error::may_have_applied`]: the write-safety
//! rule then re-sends it only when the request is idempotent.
//!
//! [`Error::may_have_applied`]: crate::Error::may_have_applied

use crate::sql::lex::{Token, Tokens};

/// What the bytes written during one attempt show about transactions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TxEvidence {
    /// The bytes could be read as TDS requests (false, e.g., under TLS).
    pub readable: bool,
    /// Requests (SQL batches, RPCs, transaction-manager requests) the attempt sent.
    pub requests: u32,
    /// The transaction descriptor of the last request (0: no transaction open).
    pub last_tx: u64,
    /// The first non-zero descriptor of the attempt.
    pub first_tx: u64,
    /// Two different non-zero descriptors were sent: a transaction ended in the attempt.
    pub several_tx: bool,
    /// A request may have committed: it mentions `COMMIT`, or it is a
    /// transaction-manager request.
    pub may_commit: bool,
}

/// Errors that roll back the open transaction on the server: the deadlock victim, and
/// every fatal error (class 20 and above ends the session, and with it the transaction).
pub fn rolls_back_transaction(number: u32, class: u8) -> bool {
    number == 1205 || class >= 20
}

/// Whether a server error `number` of severity `class` on an attempt with `evidence`
/// proves the attempt left nothing applied. `rolled_back_after` says the transaction was
/// still open after the error and the crate rolled it back; `single_dml` says the request
/// was one plain statement that [`is_single_dml`] accepts.
pub(crate) fn proves_nothing_applied(
    evidence: &TxEvidence,
    number: u32,
    class: u8,
    rolled_back_after: bool,
    single_dml: bool,
) -> bool {
    if !evidence.readable || evidence.requests == 0 || evidence.may_commit {
        return false;
    }
    if evidence.last_tx != 0 {
        // The unit's transaction was open when the failing request went out.
        return !evidence.several_tx
            && evidence.first_tx == evidence.last_tx
            && (rolls_back_transaction(number, class) || rolled_back_after);
    }
    // No transaction open: only a lone statement is undone by its own error.
    evidence.requests == 1 && evidence.first_tx == 0 && single_dml
}

/// Whether `sql` is exactly one `INSERT`, `UPDATE` or `DELETE` statement: outside string
/// literals, quoted names and comments (read by the crate's T-SQL lexer), the only
/// statement keywords are that verb (with `INTO`, or the `UPDATE`'s one `SET`), and no `;`
/// separates it from anything else. Conservative: a subquery (`SELECT`), a CTE (`WITH`),
/// `MERGE`, `EXEC`, `OUTPUT … INTO`, any second statement, a literal or comment left
/// open, or a comment whose end depends on a rule the lexer does not claim to know
/// makes it false.
pub fn is_single_dml(sql: &str) -> bool {
    const STATEMENT_WORDS: &[&str] = &[
        "INSERT",
        "UPDATE",
        "DELETE",
        "MERGE",
        "SELECT",
        "WITH",
        "EXEC",
        "EXECUTE",
        "TRUNCATE",
        "CREATE",
        "DROP",
        "ALTER",
        "BEGIN",
        "COMMIT",
        "ROLLBACK",
        "SAVE",
        "DECLARE",
        "IF",
        "WHILE",
        "WAITFOR",
        "RAISERROR",
        "THROW",
        "PRINT",
        "USE",
        "GRANT",
        "REVOKE",
        "DENY",
        "BACKUP",
        "RESTORE",
        "DBCC",
        "GO",
        "RETURN",
        "GOTO",
        "BULK",
        "KILL",
        "SHUTDOWN",
        "CHECKPOINT",
        "RECONFIGURE",
        "INTO",
        // Statements that need no other keyword above (and a second `SET`); a column
        // named like one of them only costs a proof, never a wrong one.
        "SET",
        "OPEN",
        "FETCH",
        "CLOSE",
        "DEALLOCATE",
        "REVERT",
        "SEND",
        "RECEIVE",
        "CONVERSATION",
        "READTEXT",
        "UPDATETEXT",
        "WRITETEXT",
        "ENABLE",
        "DISABLE",
        "SETUSER",
    ];
    // The crate's one T-SQL lexer (nested comments, escaped quotes): this scan must see
    // every statement the server will run.
    let mut tokens = Tokens::new(sql);
    let mut words: Vec<&str> = Vec::new();
    let mut trailing_only = false;
    for token in tokens.by_ref() {
        match token {
            _ if trailing_only && token != Token::Punct(b';') => return false,
            Token::Punct(b';') => trailing_only = true,
            Token::Number | Token::Punct(_) => {}
            Token::Word(word) => {
                if let Some(known) = STATEMENT_WORDS
                    .iter()
                    .find(|known| word.eq_ignore_ascii_case(known))
                {
                    words.push(*known);
                }
            }
        }
    }
    if tokens.unterminated() || tokens.ambiguous() {
        return false;
    }
    match words.as_slice() {
        [verb] => matches!(*verb, "INSERT" | "DELETE"),
        // INSERT INTO t …, UPDATE t SET … (a second SET is a second statement).
        [first, second] => matches!((*first, *second), ("INSERT", "INTO") | ("UPDATE", "SET")),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_tx(tx: u64) -> TxEvidence {
        TxEvidence {
            readable: true,
            requests: 3,
            last_tx: tx,
            first_tx: tx,
            several_tx: false,
            may_commit: false,
        }
    }

    #[test]
    fn a_deadlock_inside_the_open_transaction_proves_the_rollback() {
        assert!(proves_nothing_applied(&in_tx(7), 1205, 13, false, false));
        assert!(proves_nothing_applied(&in_tx(7), 40613, 20, false, false));
        // A statement-level error leaves the transaction open: proof only once the
        // crate has rolled it back.
        assert!(!proves_nothing_applied(&in_tx(7), 1222, 16, false, false));
        assert!(proves_nothing_applied(&in_tx(7), 1222, 16, true, false));
    }

    #[test]
    fn nothing_proves_a_rollback_after_a_commit() {
        // The failing request went out after the COMMIT: no transaction open.
        let after_commit = TxEvidence {
            last_tx: 0,
            ..in_tx(7)
        };
        for (n, class) in [(1205, 13), (1222, 16), (40613, 20)] {
            assert!(!proves_nothing_applied(
                &after_commit,
                n,
                class,
                false,
                true
            ));
        }
        // A COMMIT in some request of the attempt.
        let commit = TxEvidence {
            may_commit: true,
            ..in_tx(7)
        };
        assert!(!proves_nothing_applied(&commit, 1205, 13, false, false));
        // One transaction committed, another began.
        let second = TxEvidence {
            first_tx: 7,
            last_tx: 8,
            several_tx: true,
            ..in_tx(8)
        };
        assert!(!proves_nothing_applied(&second, 1205, 13, false, false));
        // Unreadable bytes (TLS): no proof.
        let tls = TxEvidence {
            readable: false,
            ..in_tx(7)
        };
        assert!(!proves_nothing_applied(&tls, 1205, 13, false, false));
    }

    #[test]
    fn a_lone_statement_is_undone_by_its_own_error() {
        let one = TxEvidence {
            readable: true,
            requests: 1,
            ..TxEvidence::default()
        };
        assert!(proves_nothing_applied(&one, 1205, 13, false, true));
        assert!(proves_nothing_applied(&one, 2627, 14, false, true));
        assert!(!proves_nothing_applied(&one, 1205, 13, false, false));
        let two = TxEvidence { requests: 2, ..one };
        assert!(!proves_nothing_applied(&two, 1205, 13, false, true));
    }

    #[test]
    fn single_dml_is_recognised_conservatively() {
        for yes in [
            "INSERT INTO payments (id, amount) VALUES (@P1, @P2)",
            "insert payments values (1, 'select; insert')",
            "UPDATE accounts SET balance = balance - @P1 WHERE id = @P2;",
            "DELETE FROM t WHERE id = 1 -- and then SELECT\n",
            "UPDATE [select] SET a = 1 /* INSERT */",
            "UPDATE t SET a = 1 /* outer /* DELETE */ SELECT */; -- end",
        ] {
            assert!(is_single_dml(yes), "{yes}");
        }
        for no in [
            "INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)",
            "INSERT INTO t VALUES (1) INSERT INTO t VALUES (2)",
            "INSERT INTO t SELECT * FROM s",
            "INSERT INTO t (id) VALUES (1); SELECT SCOPE_IDENTITY()",
            "DELETE FROM t WHERE id IN (SELECT id FROM s)",
            "BEGIN TRAN; UPDATE t SET a = 1; COMMIT",
            "EXEC dbo.transfer 1, 2",
            "MERGE t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = 1",
            "SELECT 1",
            "INSERT INTO t VALUES ('unterminated",
            "DELETE FROM t /* unterminated",
            // T-SQL block comments nest: the first `*/` closes only the inner one, so the
            // quote is commented out and the DELETE is a second statement.
            "UPDATE accounts SET balance = balance - 10 WHERE id = 1 \
             /* /* */ ' */ DELETE FROM audit WHERE id = 1 --'",
            "INSERT INTO t VALUES (1); /* c */ DELETE FROM t",
            // A number or money literal ends before a keyword glued to it.
            "UPDATE accounts SET balance = balance - 10 WHERE id = 1DELETE FROM audit",
            "UPDATE accounts SET balance = $DELETE FROM audit",
            // Statements without any other statement keyword.
            "INSERT INTO t VALUES (1) OPEN c1",
            "UPDATE t SET a = 1 SET IDENTITY_INSERT t ON",
            "DELETE FROM t WHERE id = 1 FETCH NEXT FROM c1",
            "UPDATE",
            // Comments whose end is not certain.
            "UPDATE t SET a = 1 --x\r'y\nDELETE FROM audit --'",
            "UPDATE t SET a = 1 /* -- */",
            "",
        ] {
            assert!(!is_single_dml(no), "{no}");
        }
    }
}
