//! Seeded fuzzing of everything a client controls: PRELOGIN, LOGIN7 and RPC messages
//! (valid messages with bytes flipped, lengths set to extremes, spans cut or repeated), SQL
//! text (soups of T-SQL tokens, through the parser, the translation and the typing), and
//! the text a `CAST` converts. Nothing may panic: a client's bad input is an error for that
//! client, never a crashed session or server. The seeds are fixed, so every run tries the
//! same inputs, and a failure names the round that reproduces it.

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::sql::Value;
use super::translate::{action, parse_batch, Ctx, Stmt};
use super::types::SqlType;
use super::{convert, login7, prelogin, rpc, typing};

/// Inputs tried per target (each takes well under a second).
const ROUNDS: usize = 20_000;

/// `seed` with one to four mutations: a random byte, a flipped bit, a cut, a run of
/// extreme bytes, an extreme 32-bit length, or a span removed or repeated.
fn mutate(rng: &mut fastrand::Rng, seed: &[u8]) -> Vec<u8> {
    let mut m = seed.to_vec();
    for _ in 0..rng.usize(1..=4) {
        let at = rng.usize(..=m.len());
        match rng.u8(0..7) {
            0 if at < m.len() => m[at] = rng.u8(..),
            1 if at < m.len() => m[at] ^= 1 << rng.u8(0..8),
            2 => m.truncate(at),
            3 => {
                let byte = [0x00, 0xFF, 0x7F, 0x80][rng.usize(..4)];
                let run = rng.usize(1..=8);
                m.splice(at..at, std::iter::repeat_n(byte, run));
            }
            4 if at + 4 <= m.len() => {
                let len = [0u32, u32::MAX, 0x7FFF_FFFF, 0xFFFF, 8001, 1][rng.usize(..6)];
                m[at..at + 4].copy_from_slice(&len.to_le_bytes());
            }
            5 => {
                let end = (at + rng.usize(0..=16)).min(m.len());
                m.drain(at..end);
            }
            _ => {
                let end = (at + rng.usize(0..=16)).min(m.len());
                let span = m[at..end].to_vec();
                m.splice(at..at, span);
            }
        }
    }
    m
}

/// Runs `f` on `input`; a panic fails the test with the round and the input's first bytes.
fn no_panic<T>(what: &str, round: usize, input: &[u8], f: impl FnOnce() -> T) {
    if catch_unwind(AssertUnwindSafe(f)).is_err() {
        let head: String = input.iter().take(48).map(|b| format!("{b:02x}")).collect();
        panic!(
            "{what} panicked in round {round} on {} bytes: {head}…",
            input.len()
        );
    }
}

/// Each seed mutated [`ROUNDS`] times in all, through `parse`.
fn fuzz_bytes<T>(what: &str, rng_seed: u64, seeds: &[Vec<u8>], parse: impl Fn(&[u8]) -> T) {
    let mut rng = fastrand::Rng::with_seed(rng_seed);
    for round in 0..ROUNDS {
        let input = mutate(&mut rng, &seeds[round % seeds.len()]);
        no_panic(what, round, &input, || parse(&input));
    }
}

/// An sp_executesql RPC with one parameter of each kind of TYPE_INFO the parser reads:
/// fixed and variable length, collated text, PLP, DECIMAL, dates and times, GUID, NULL.
fn rpc_seed() -> Vec<u8> {
    let mut p = rpc::tests::all_headers();
    p.extend_from_slice(&0xFFFFu16.to_le_bytes());
    p.extend_from_slice(&10u16.to_le_bytes());
    p.extend_from_slice(&0u16.to_le_bytes());
    let param = |p: &mut Vec<u8>, type_and_value: &[u8]| {
        p.extend_from_slice(&[0, 0]); // unnamed, no status bits
        p.extend_from_slice(type_and_value);
    };
    let collation = [0x09, 0x04, 0xD0, 0x00, 0x34];
    param(&mut p, &[0x26, 4, 4, 7, 0, 0, 0]); // INTN 7
    param(&mut p, &[0x26, 4, 0]); // INTN NULL
    param(&mut p, &[0x68, 1, 1, 1]); // BITN 1
    param(&mut p, &[0x6D, 8, 8, 0, 0, 0, 0, 0, 0, 0xF0, 0x3F]); // FLTN 1.0
    let mut nvarchar = vec![0xE7, 0x40, 0x1F];
    nvarchar.extend_from_slice(&collation);
    nvarchar.extend_from_slice(&[4, 0, b'a', 0, 0xAC, 0x20]); // "a€"
    param(&mut p, &nvarchar);
    let mut varchar_max = vec![0xA7, 0xFF, 0xFF];
    varchar_max.extend_from_slice(&collation);
    varchar_max.extend_from_slice(&3u64.to_le_bytes());
    varchar_max.extend_from_slice(&3u32.to_le_bytes());
    varchar_max.extend_from_slice(b"abc");
    varchar_max.extend_from_slice(&0u32.to_le_bytes());
    param(&mut p, &varchar_max);
    let mut decimal = vec![0x6A, 17, 38, 2, 17, 1];
    decimal.extend_from_slice(&12_345u128.to_le_bytes());
    param(&mut p, &decimal);
    let mut guid = vec![0x24, 16, 16];
    guid.extend_from_slice(&[0xAB; 16]);
    param(&mut p, &guid);
    param(&mut p, &[0x28, 3, 0xA6, 0x46, 0x0B]); // DATEN
    param(&mut p, &[0x29, 7, 5, 1, 0, 0, 0, 0]); // TIMEN(7)
    param(&mut p, &[0x2A, 7, 8, 1, 0, 0, 0, 0, 0xA6, 0x46, 0x0B]); // DATETIME2(7)
    param(
        &mut p,
        &[0x2B, 7, 10, 1, 0, 0, 0, 0, 0xA6, 0x46, 0x0B, 0x3C, 0x00],
    ); // +01:00
    param(&mut p, &[0x6F, 8, 8, 0, 0, 0, 0, 0, 0, 0, 0]); // DATETIMN
    param(&mut p, &[0x6F, 4, 4, 0, 0, 0, 0]); // SMALLDATETIME
    p
}

#[test]
fn mutated_prelogin_login_and_rpc_messages_never_panic() {
    let prelogins = [prelogin::reply(0), prelogin::reply(1), prelogin::reply(3)];
    assert!(prelogin::parse(&prelogins[0]).is_some(), "a valid seed");
    fuzz_bytes("PRELOGIN", 1, &prelogins, prelogin::parse);

    let login = login7::sample();
    assert!(login7::parse(&login).is_some(), "a valid seed");
    fuzz_bytes("LOGIN7", 2, &[login], login7::parse);

    let rpc = rpc_seed();
    let parsed = rpc::parse(&rpc).expect("a valid seed");
    assert_eq!(
        parsed.params.len(),
        14,
        "every parameter of the seed is read"
    );
    fuzz_bytes("RPC", 3, &[rpc], rpc::parse);
}

/// Tokens a batch may be made of: keywords and clauses the translation rewrites, literals
/// of every kind (multibyte text among them), comments, and punctuation.
const SQL_TOKENS: &[&str] = &[
    "SELECT",
    "INSERT",
    "INTO",
    "VALUES",
    "UPDATE",
    "SET",
    "DELETE",
    "FROM",
    "WHERE",
    "IF",
    "ELSE",
    "BEGIN",
    "END",
    "TRY",
    "CATCH",
    "CASE",
    "WHEN",
    "THEN",
    "CAST",
    "CONVERT",
    "AS",
    "INT",
    "DATE",
    "TIME",
    "DATETIME2",
    "DATETIMEOFFSET",
    "DECIMAL(38,2)",
    "NVARCHAR(10)",
    "VARCHAR(MAX)",
    "TOP",
    "(1)",
    "OFFSET",
    "ROWS",
    "FETCH",
    "NEXT",
    "ONLY",
    "ORDER",
    "BY",
    "WITH",
    "(NOLOCK)",
    "(UPDLOCK, HOLDLOCK)",
    "OUTPUT",
    "INSERTED.a",
    "DECLARE",
    "@p",
    "@P1",
    "@@TRANCOUNT",
    "=",
    "(",
    ")",
    ",",
    ";",
    "*",
    "+",
    "-",
    "<>",
    ">=",
    "N'é€'",
    "'x''y'",
    "'12:00€'",
    "'2024-01-02'",
    "[a]]b]",
    "\"q\"",
    "1",
    "1.5e3",
    "0x1F",
    "-- c\n",
    "/* /* n */ */",
    "GO",
    "EXEC",
    "sp_executesql",
    "TRAN",
    "COMMIT",
    "ROLLBACK",
    "WAITFOR",
    "DELAY",
    "'00:00:00.001'",
    "THROW",
    "RAISERROR",
    "CREATE",
    "TABLE",
    "t",
    "a",
    "b",
    "PRIMARY",
    "KEY",
    "IDENTITY(1,1)",
    "NOT",
    "NULL",
    "DEFAULT",
    "ALTER",
    "ADD",
    "UNION",
    "ALL",
    "EXISTS",
    "IN",
    "AND",
    "OR",
    "NEWID()",
    "GETDATE()",
    "SCOPE_IDENTITY()",
];

#[test]
fn soups_of_sql_tokens_never_panic_in_parsing_translation_or_typing() {
    let ctx = Ctx::in_database("db");
    let mut rng = fastrand::Rng::with_seed(4);
    for round in 0..ROUNDS {
        let mut sql = String::new();
        for _ in 0..rng.usize(1..=40) {
            sql.push_str(SQL_TOKENS[rng.usize(..SQL_TOKENS.len())]);
            if rng.u8(0..4) > 0 {
                sql.push(' ');
            }
        }
        no_panic("SQL", round, sql.as_bytes(), || {
            let Ok(batch) = parse_batch(&sql) else { return };
            let mut stack: Vec<&Stmt> = batch.iter().collect();
            while let Some(stmt) = stack.pop() {
                match stmt {
                    Stmt::Simple(toks) => {
                        let _ = action(toks, &ctx);
                        let _ = typing::select_hints(toks);
                    }
                    Stmt::If {
                        then, otherwise, ..
                    } => stack.extend(then.iter().chain(otherwise)),
                    Stmt::Try { body, catch } => stack.extend(body.iter().chain(catch)),
                }
            }
        });
    }
}

#[test]
fn casts_of_arbitrary_text_never_panic() {
    const PIECES: &[&str] = &[
        "0",
        "1",
        "9",
        "12",
        "2024",
        "-",
        ":",
        ".",
        " ",
        "T",
        "Z",
        "+",
        "AM",
        "pm",
        "€",
        "é",
        "e",
        "E",
        "$",
        ",",
        "0x",
        "99999999999999999999",
        "+14:00",
        "-14:01",
        "9999-12-31",
        "0001-01-01",
        "23:59:59.9999999",
        "{",
        "}",
        "Jan",
        "1e308",
        "NaN",
    ];
    let targets: Vec<SqlType> = [
        "DATE",
        "TIME(7)",
        "TIME(0)",
        "DATETIME2(7)",
        "DATETIMEOFFSET(7)",
        "DATETIME",
        "SMALLDATETIME",
        "DECIMAL(38,10)",
        "DECIMAL(5,2)",
        "INT",
        "BIGINT",
        "TINYINT",
        "BIT",
        "UNIQUEIDENTIFIER",
        "FLOAT",
        "REAL",
        "MONEY",
        "VARCHAR(3)",
        "NVARCHAR(3)",
        "VARBINARY(2)",
    ]
    .iter()
    .map(|decl| SqlType::parse_decl(decl, true).expect("a valid type"))
    .collect();
    let mut rng = fastrand::Rng::with_seed(5);
    for round in 0..ROUNDS {
        let mut text = String::new();
        for _ in 0..rng.usize(0..=8) {
            text.push_str(PIECES[rng.usize(..PIECES.len())]);
        }
        let to = targets[round % targets.len()];
        no_panic("CAST", round, text.as_bytes(), || {
            convert::coerce(Value::Text(text.clone()), to)
        });
    }
}
