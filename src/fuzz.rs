//! Seeded fuzzing of the input the crate reads from outside: SQL text its scans classify
//! (the write-safety rule rests on them), stored idempotency records (read back from the
//! database), connection strings, durations and configuration files. Nothing may panic,
//! and the single-statement scan must stay conservative. The seeds are fixed, so every run
//! tries the same inputs, and a failure names the round that reproduces it.

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::classify::rollback::is_single_dml;
use crate::config::ado::AdoString;
use crate::config::duration::parse_duration;
use crate::config::Config;
use crate::idempotency::returned;
use crate::sql::session_effects::SessionEffects;

/// Inputs tried per target.
const ROUNDS: usize = 20_000;

/// Runs `f`; a panic fails the test with the round and the input's start.
fn no_panic<T>(what: &str, round: usize, input: &str, f: impl FnOnce() -> T) -> Option<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => Some(v),
        Err(_) => {
            let head: String = input.chars().take(80).collect();
            panic!("{what} panicked in round {round} on {:?}…", head);
        }
    }
}

/// A string of 0 to `n` pieces.
fn soup(rng: &mut fastrand::Rng, pieces: &[&str], n: usize) -> String {
    let mut out = String::new();
    for _ in 0..rng.usize(0..=n) {
        out.push_str(pieces[rng.usize(..pieces.len())]);
    }
    out
}

/// `seed` with one to four character-level mutations (a character replaced, removed,
/// repeated, or a piece inserted), always valid UTF-8.
fn mutate(rng: &mut fastrand::Rng, seed: &str, pieces: &[&str]) -> String {
    let mut chars: Vec<char> = seed.chars().collect();
    for _ in 0..rng.usize(1..=4) {
        let at = rng.usize(..=chars.len());
        match rng.u8(0..4) {
            0 if at < chars.len() => {
                chars[at] = ['"', '\'', '=', '[', '\n', 'é', '€', '0'][rng.usize(..8)]
            }
            1 if at < chars.len() => {
                chars.remove(at);
            }
            2 => {
                let end = (at + rng.usize(0..=12)).min(chars.len());
                let span = chars[at..end].to_vec();
                chars.splice(at..at, span);
            }
            _ => {
                let piece = pieces[rng.usize(..pieces.len())];
                chars.splice(at..at, piece.chars());
            }
        }
    }
    chars.into_iter().collect()
}

/// What T-SQL text may be made of, with the constructs the lexer must read as the server
/// does: quotes and their escapes, nested comments, CR/LF, literals glued to keywords,
/// multibyte text.
const SQL_PIECES: &[&str] = &[
    "INSERT",
    "INTO",
    "UPDATE",
    "DELETE",
    "SET",
    "SELECT",
    "FROM",
    "WHERE",
    "VALUES",
    "EXEC",
    "BEGIN",
    "TRAN",
    "COMMIT",
    "SAVE",
    "IMPLICIT_TRANSACTIONS",
    "CONTEXT_INFO",
    "CURSOR",
    "OPEN",
    "t",
    "a",
    " ",
    " ",
    " ",
    "\n",
    "\r\n",
    "\r",
    ";",
    ",",
    "(",
    ")",
    "=",
    "1",
    "0x1F",
    "1.5",
    "$",
    "€",
    "é",
    "'",
    "''",
    "N'",
    "\"",
    "[",
    "]",
    "]]",
    "--",
    "/*",
    "*/",
    "@P1",
    "#tmp",
    "GO",
];

#[test]
fn sql_scans_never_panic_and_a_second_statement_is_never_one() {
    let mut rng = fastrand::Rng::with_seed(11);
    let mut singles = 0;
    for round in 0..ROUNDS {
        let sql = soup(&mut rng, SQL_PIECES, 24);
        let single = no_panic("is_single_dml", round, &sql, || is_single_dml(&sql));
        no_panic("SessionEffects::of", round, &sql, || {
            SessionEffects::of(&sql)
        });
        if single == Some(true) {
            singles += 1;
            // Whatever `sql` is, a statement after a line break is a second statement:
            // text the scan called one statement cannot hide it.
            for tail in ["\nDELETE FROM t", "\n;DELETE FROM t", "\nEXEC p"] {
                let two = format!("{sql}{tail}");
                assert!(
                    !is_single_dml(&two),
                    "round {round}: {two:?} called one statement"
                );
            }
        }
    }
    assert!(
        singles > 100,
        "the soups reach the accepting path ({singles} times)"
    );
}

/// Text the server never runs: a block comment (nesting others), a line comment, a
/// string literal or a quoted name, with statement keywords, quotes, brackets and `;` in
/// it, written by T-SQL's rules (doubled quotes, nested comments). Free of the two
/// constructs the lexer refuses as ambiguous (a line comment in a block comment, a lone
/// CR), so the scan must see through every one of them.
fn hidden(rng: &mut fastrand::Rng, depth: usize) -> String {
    const INSIDE: &[&str] = &[
        "DELETE", "FROM", "t", "INSERT", "SELECT", "EXEC", ";", " ", "'", "\"", "[", "]", "1", "é",
        "€", "\n", "GO",
    ];
    let text = |rng: &mut fastrand::Rng| soup(rng, INSIDE, 8);
    match rng.u8(0..4) {
        0 => {
            let mut comment = String::from("/*");
            for _ in 0..rng.usize(0..=3) {
                if depth < 3 && rng.bool() {
                    comment.push_str(&hidden_block(rng, depth + 1));
                } else {
                    comment.push_str(&text(rng));
                }
            }
            comment.push_str("*/");
            comment
        }
        1 => format!("--{}\n", text(rng).replace('\n', " ")),
        2 => format!("'{}'", text(rng).replace('\'', "''")),
        _ => format!("[{}]", text(rng).replace(']', "]]")),
    }
}

/// A block comment (for nesting inside another).
fn hidden_block(rng: &mut fastrand::Rng, depth: usize) -> String {
    loop {
        let h = hidden(rng, depth);
        if h.starts_with("/*") {
            return h;
        }
    }
}

#[test]
fn the_single_statement_scan_agrees_with_text_built_by_t_sql_rules() {
    // One INSERT, UPDATE or DELETE with hidden text around it, and — half the time — a
    // second statement at top level, glued on without a separator (`…1)DELETE`) or after
    // one. The scan must call the first kind one statement and the second never.
    let verbs = [
        "INSERT INTO t VALUES (1)",
        "UPDATE t SET a = 1",
        "DELETE FROM t WHERE a = 1",
    ];
    let seconds = [
        "DELETE FROM t",
        "; SELECT 1",
        "\nEXEC p",
        " OPEN c",
        "\nSET XACT_ABORT ON",
    ];
    let mut rng = fastrand::Rng::with_seed(14);
    for round in 0..ROUNDS {
        let mut sql = String::from(verbs[rng.usize(..verbs.len())]);
        let second = rng.bool();
        let at = rng.usize(0..=3);
        for i in 0..=3 {
            if second && i == at {
                sql.push_str(seconds[rng.usize(..seconds.len())]);
            }
            if rng.bool() {
                sql.push(' ');
                sql.push_str(&hidden(&mut rng, 0));
                sql.push(' ');
            }
        }
        assert_eq!(is_single_dml(&sql), !second, "round {round}: {sql:?}");
    }
}

#[test]
fn stored_records_never_panic_when_damaged() {
    let seed = returned::encode(&returned::tests::sample_sets());
    assert!(returned::decode(&seed).is_ok(), "a valid seed");
    let pieces = [
        "0",
        "-1",
        "99999999999999999999",
        "[",
        "]",
        "{}",
        "null",
        "\"Date\"",
        ",",
    ];
    let mut rng = fastrand::Rng::with_seed(12);
    for round in 0..ROUNDS {
        let record = mutate(&mut rng, &seed, &pieces);
        no_panic("returned::decode", round, &record, || {
            returned::decode(&record)
        });
    }
}

#[test]
fn connection_strings_durations_and_config_files_never_panic() {
    let mut rng = fastrand::Rng::with_seed(13);
    let ado = [
        "Server",
        "=",
        ";",
        "tcp:",
        "host",
        ",",
        "1433",
        "Password",
        "'",
        "\"",
        "{",
        "}",
        "}}",
        " ",
        "Authentication",
        "Active Directory Default",
        "é",
        "Encrypt",
        "true",
    ];
    let durations = [
        "1",
        "5",
        ".",
        "0.5",
        "s",
        "ms",
        "m",
        "h",
        "ns",
        "us",
        " ",
        "-",
        "1e9",
        "9999999999999999999",
        "€",
    ];
    for round in 0..ROUNDS {
        let text = soup(&mut rng, &ado, 16);
        no_panic("AdoString::parse", round, &text, || {
            AdoString::parse(&text).map(|a| a.pairs.len())
        });
        let text = soup(&mut rng, &durations, 8);
        no_panic("parse_duration", round, &text, || parse_duration(&text));
    }
    // The sample configuration, with the passwords it leaves to the environment.
    let seed = include_str!("../examples/regions.toml");
    let passwords = || {
        (0..2).map(|i| {
            (
                format!("MSSQL_RESILIENCE__REGIONS__{i}__PASSWORD"),
                "fuzz-pw".to_owned(),
            )
        })
    };
    assert!(
        Config::from_toml_with_env(seed, passwords()).is_ok(),
        "a valid seed"
    );
    let pieces = [
        "\"",
        "=",
        "[[regions]]",
        "\n",
        "-1",
        "0",
        "1e400",
        "\"1h\"",
        "[",
        "]",
        "{",
        "#",
    ];
    for round in 0..ROUNDS / 10 {
        let toml = mutate(&mut rng, seed, &pieces);
        no_panic("Config::from_toml_with_env", round, &toml, || {
            Config::from_toml_with_env(&toml, passwords()).map(|_| ())
        });
    }
}
