//! Batch and transaction semantics: what an error does to the rest of the batch and to
//! an open transaction (SQL Server with `XACT_ABORT OFF`, its default, and `ON`), and
//! the session values `@@ERROR` and `XACT_STATE()`.
//!
//! The table is documented in `testkit/README.md` ("Batch and transaction semantics").

use super::translate::Tok;

/// What an error does to the batch and to an open transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorEffect {
    /// Statement-level: only the failing statement is undone; the batch goes on with
    /// the next statement and an open transaction stays open.
    Statement,
    /// The batch (scope) stops; an open transaction stays open (compile and name
    /// resolution errors, `THROW` with `XACT_ABORT OFF`).
    AbortBatch,
    /// The batch stops and an open transaction is rolled back (deadlock victim,
    /// conversion errors, any runtime error with `XACT_ABORT ON`, fatal classes).
    AbortBatchRollback,
}

/// Errors raised while compiling or resolving names: the scope stops, the transaction is
/// left as it was, and `XACT_ABORT` does not change that (SQL Server: "compile errors,
/// such as syntax errors, are not affected by SET XACT_ABORT").
const COMPILE: &[u32] = &[
    102,   // incorrect syntax
    105,   // unclosed quotation mark
    156,   // incorrect syntax near a keyword
    170,   // incorrect syntax (line)
    137,   // must declare the scalar variable
    195,   // not a recognized built-in function
    206,   // operand type clash
    207,   // invalid column name
    208,   // invalid object name (deferred name resolution at run time)
    4104,  // multi-part identifier could not be bound
    40517, // testkit: statement not supported
];

/// Runtime errors that abort the batch and roll the transaction back even with
/// `XACT_ABORT OFF`.
const BATCH_ROLLBACK: &[u32] = &[
    1205, // deadlock victim: SQL Server rolls the victim's transaction back
    241,  // conversion failed (date and/or time from character string)
    245,  // conversion failed (value to data type)
    8114, // error converting data type
];

/// What error `number` (of severity `class`) raised by a statement starting with keyword
/// `first_kw` does, with `XACT_ABORT` set to `xact_abort`.
pub(crate) fn effect(number: u32, class: u8, first_kw: &str, xact_abort: bool) -> ErrorEffect {
    if class >= 20 {
        // Fatal: the session ends, and with it any transaction.
        return ErrorEffect::AbortBatchRollback;
    }
    match first_kw {
        // RAISERROR never aborts anything, whatever XACT_ABORT says.
        "RAISERROR" => return ErrorEffect::Statement,
        "THROW" => {
            return if xact_abort {
                ErrorEffect::AbortBatchRollback
            } else {
                ErrorEffect::AbortBatch
            }
        }
        _ => {}
    }
    if COMPILE.contains(&number) {
        ErrorEffect::AbortBatch
    } else if BATCH_ROLLBACK.contains(&number) || xact_abort {
        ErrorEffect::AbortBatchRollback
    } else {
        ErrorEffect::Statement
    }
}

/// Session values that statements can read.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SessionValues {
    /// `@@ERROR`: the number of the last statement's error, 0 after a success.
    pub last_error: u32,
    /// `@@TRANCOUNT`.
    pub trancount: u32,
}

impl SessionValues {
    /// `XACT_STATE()`: 1 inside a transaction, 0 outside. (-1, a doomed transaction,
    /// needs TRY/CATCH, which the testkit does not run; see the README.)
    fn xact_state(&self) -> i64 {
        i64::from(self.trancount > 0)
    }
}

/// Replaces `@@ERROR` and `XACT_STATE()` with their values.
pub(crate) fn substitute(toks: &[Tok], v: SessionValues) -> Vec<Tok> {
    let mut out = Vec::with_capacity(toks.len());
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        if t.is_kw("@@ERROR") {
            out.push(Tok::Num(v.last_error.to_string()));
        } else if t.is_kw("XACT_STATE")
            && toks.get(i + 1).is_some_and(|n| n.is_punct("("))
            && toks.get(i + 2).is_some_and(|n| n.is_punct(")"))
        {
            out.push(Tok::Num(v.xact_state().to_string()));
            i += 2;
        } else {
            out.push(t.clone());
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tds::translate::tokenize;

    #[test]
    fn statement_errors_continue_unless_xact_abort() {
        for n in [2627, 2601, 547, 515, 1222, 8134, 2628, 3902, 2714] {
            assert_eq!(
                effect(n, 16, "INSERT", false),
                ErrorEffect::Statement,
                "{n}"
            );
            assert_eq!(
                effect(n, 16, "INSERT", true),
                ErrorEffect::AbortBatchRollback,
                "{n}"
            );
        }
    }

    #[test]
    fn deadlocks_and_conversions_roll_back() {
        for n in [1205, 245, 8114] {
            assert_eq!(
                effect(n, 16, "SELECT", false),
                ErrorEffect::AbortBatchRollback,
                "{n}"
            );
        }
        assert_eq!(
            effect(40613, 20, "SELECT", false),
            ErrorEffect::AbortBatchRollback
        );
    }

    #[test]
    fn compile_errors_abort_the_batch_whatever_xact_abort_says() {
        for xa in [false, true] {
            assert_eq!(effect(208, 16, "SELECT", xa), ErrorEffect::AbortBatch);
            assert_eq!(effect(102, 15, "SELECT", xa), ErrorEffect::AbortBatch);
        }
    }

    #[test]
    fn raiserror_continues_and_throw_aborts() {
        assert_eq!(effect(50000, 16, "RAISERROR", true), ErrorEffect::Statement);
        assert_eq!(effect(50001, 16, "THROW", false), ErrorEffect::AbortBatch);
        assert_eq!(
            effect(50001, 16, "THROW", true),
            ErrorEffect::AbortBatchRollback
        );
    }

    #[test]
    fn error_and_xact_state_are_substituted() {
        let toks = tokenize("SELECT @@ERROR, XACT_STATE(), @@error").unwrap();
        let v = SessionValues {
            last_error: 2627,
            trancount: 2,
        };
        let out = substitute(&toks, v);
        assert_eq!(out[1], Tok::Num("2627".into()));
        assert_eq!(out[3], Tok::Num("1".into()));
        assert_eq!(out[5], Tok::Num("2627".into()));
        assert_eq!(out.len(), 6);
    }
}
