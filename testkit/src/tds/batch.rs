//! Batch and transaction semantics: what an error does to the rest of the batch and to
//! an open transaction (SQL Server with `XACT_ABORT OFF`, its default, and `ON`), which
//! errors a `TRY` block catches and which doom its transaction, and the session values
//! `@@ERROR`, `XACT_STATE()` and `ERROR_NUMBER()` & co.
//!
//! The table is documented in `testkit/README.md` ("Batch and transaction semantics").

use super::errors::ErrorSpec;
use super::translate::{tokenize, Tok};

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
    191,   // nested too deeply
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

/// Whether a `TRY` block catches error `number` of severity `class`. It catches errors
/// of severity 11 to 19 that do not end the session, except compile and name-resolution
/// errors, which SQL Server raises before the statement runs (they stop the batch at the
/// same level: "errors that occur during statement-level recompilation, such as object
/// name resolution errors, are not caught").
pub(crate) fn catchable(number: u32, class: u8) -> bool {
    (11..=19).contains(&class) && !COMPILE.contains(&number)
}

/// Whether an error caught with a transaction open dooms it (`XACT_STATE() = -1`: no
/// more writes, no COMMIT, only ROLLBACK): an error that outside `TRY` would have rolled
/// the transaction back — every runtime error with `XACT_ABORT ON`, conversion errors
/// and deadlocks without it.
pub(crate) fn dooms(effect: ErrorEffect) -> bool {
    effect == ErrorEffect::AbortBatchRollback
}

/// Error 3930: a write or a COMMIT in a doomed transaction.
pub(crate) fn doomed_write() -> ErrorSpec {
    ErrorSpec::new(
        3930,
        16,
        "The current transaction cannot be committed and cannot support operations that write to the log file. Roll back the transaction.",
    )
}

/// Error 3998: a doomed transaction still open when the batch ends (it is rolled back).
pub(crate) fn doomed_at_end() -> ErrorSpec {
    ErrorSpec::new(
        3998,
        16,
        "Uncommittable transaction is detected at the end of the batch. The transaction is rolled back.",
    )
}

/// Session values that statements can read.
#[derive(Debug, Clone, Default)]
pub(crate) struct SessionValues<'a> {
    /// `@@ERROR`: the number of the last statement's error, 0 after a success.
    pub last_error: u32,
    /// `@@TRANCOUNT`.
    pub trancount: u32,
    /// The open transaction is doomed (an error a `TRY` block caught).
    pub doomed: bool,
    /// In a `CATCH` block: the error it caught (message rendered), for `ERROR_NUMBER()`
    /// and the other error functions; `None` elsewhere, where they are NULL.
    pub caught: Option<&'a ErrorSpec>,
}

impl SessionValues<'_> {
    /// `XACT_STATE()`: 1 inside a transaction, -1 inside a doomed one, 0 outside.
    fn xact_state(&self) -> i64 {
        match (self.trancount > 0, self.doomed) {
            (false, _) => 0,
            (true, false) => 1,
            (true, true) => -1,
        }
    }

    /// The value of error function `name` (upper case), if it is one, as tokens: the
    /// value, or a NULL of the function's type (int, or nvarchar for the texts).
    fn error_function(&self, name: &str) -> Option<Vec<Tok>> {
        let null_text =
            |len: u32| tokenize(&format!("CAST(NULL AS NVARCHAR({len}))")).unwrap_or_default();
        let num = |n: Option<i64>| {
            vec![n.map_or_else(|| Tok::Word("NULL".into()), |n| Tok::Num(n.to_string()))]
        };
        let e = self.caught;
        Some(match name {
            "ERROR_NUMBER" => num(e.map(|e| i64::from(e.number))),
            "ERROR_SEVERITY" => num(e.map(|e| i64::from(e.class))),
            "ERROR_STATE" => num(e.map(|e| i64::from(e.state))),
            // Error tokens carry line 1 (lines are not tracked).
            "ERROR_LINE" => num(e.map(|_| 1)),
            // No procedures: a batch's error has none.
            "ERROR_PROCEDURE" => null_text(128),
            "ERROR_MESSAGE" => match e {
                Some(e) => vec![Tok::Str(e.message.clone())],
                None => null_text(4000),
            },
            _ => return None,
        })
    }
}

/// Replaces `@@ERROR`, `XACT_STATE()` and the error functions with their values.
pub(crate) fn substitute(toks: &[Tok], v: &SessionValues<'_>) -> Vec<Tok> {
    let mut out = Vec::with_capacity(toks.len());
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        let empty_call = toks.get(i + 1).is_some_and(|n| n.is_punct("("))
            && toks.get(i + 2).is_some_and(|n| n.is_punct(")"));
        if t.is_kw("@@ERROR") {
            out.push(Tok::Num(v.last_error.to_string()));
        } else if empty_call && t.is_kw("XACT_STATE") {
            out.push(Tok::Num(v.xact_state().to_string()));
            i += 2;
        } else if let Some(value) = empty_call
            .then(|| t.kw())
            .flatten()
            .and_then(|k| v.error_function(&k))
        {
            out.extend(value);
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
            assert_eq!(effect(191, 15, "SELECT", xa), ErrorEffect::AbortBatch);
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
            ..SessionValues::default()
        };
        let out = substitute(&toks, &v);
        assert_eq!(out[1], Tok::Num("2627".into()));
        assert_eq!(out[3], Tok::Num("1".into()));
        assert_eq!(out[5], Tok::Num("2627".into()));
        assert_eq!(out.len(), 6);
    }

    #[test]
    fn a_catch_block_reads_its_error_and_a_doomed_transaction_reads_minus_one() {
        let toks = tokenize(
            "SELECT ERROR_NUMBER(), ERROR_MESSAGE(), ERROR_SEVERITY(), ERROR_STATE(), XACT_STATE()",
        )
        .unwrap();
        let caught = ErrorSpec::new(2627, 14, "dup 'key'").with_state(2);
        let v = SessionValues {
            trancount: 1,
            doomed: true,
            caught: Some(&caught),
            ..SessionValues::default()
        };
        let out = substitute(&toks, &v);
        assert_eq!(out[1], Tok::Num("2627".into()));
        assert_eq!(out[3], Tok::Str("dup 'key'".into()));
        assert_eq!(out[5], Tok::Num("14".into()));
        assert_eq!(out[7], Tok::Num("2".into()));
        assert_eq!(out[9], Tok::Num("-1".into()));
        // Outside a CATCH block the error functions are NULL (typed).
        let outside = substitute(&toks, &SessionValues::default());
        assert_eq!(outside[1], Tok::Word("NULL".into()));
        let text: Vec<String> = outside.iter().map(Tok::render).collect();
        assert!(
            text.join(" ")
                .contains("CAST ( NULL AS NVARCHAR ( 4000 ) )"),
            "{text:?}"
        );
        assert_eq!(outside.last(), Some(&Tok::Num("0".into())));
    }

    #[test]
    fn try_catches_runtime_errors_not_compile_errors_or_fatal_ones() {
        assert!(catchable(2627, 14));
        assert!(catchable(245, 16));
        assert!(catchable(50000, 16));
        assert!(!catchable(208, 16));
        assert!(!catchable(102, 15));
        assert!(!catchable(50000, 10));
        assert!(!catchable(40613, 20));
        assert!(dooms(effect(245, 16, "SELECT", false)));
        assert!(dooms(effect(2627, 14, "INSERT", true)));
        assert!(!dooms(effect(2627, 14, "INSERT", false)));
    }
}
