//! T-SQL → SQLite translation: a tokenizer, a statement splitter (T-SQL needs no `;`
//! between statements) and token rewrites (brackets, `N'…'`, `TOP`, `IDENTITY`,
//! `@@VERSION`, `DB_NAME()`, `OBJECT_ID()`, `(MAX)` types, table hints, …).

use super::errors::ErrorSpec;
use super::{catalog, hints, typing};
use std::borrow::Cow;
use std::time::Duration;

/// A T-SQL token.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// Bare word: keyword, identifier, `@var`, `@@fn`, `#temp`.
    Word(String),
    /// Delimited identifier (`[x]` or `"x"`), unescaped.
    Ident(String),
    /// String literal (`'x'` or `N'x'`), unescaped.
    Str(String),
    /// Numeric literal.
    Num(String),
    /// Hex literal `0x…` (digits only).
    Hex(String),
    /// Operator or punctuation (borrowed for the operators T-SQL has: no allocation).
    Punct(Cow<'static, str>),
}

impl Tok {
    /// Upper-cased keyword if this is a bare word.
    pub fn kw(&self) -> Option<String> {
        match self {
            Tok::Word(w) => Some(w.to_ascii_uppercase()),
            _ => None,
        }
    }

    pub fn is_kw(&self, k: &str) -> bool {
        matches!(self, Tok::Word(w) if w.eq_ignore_ascii_case(k))
    }

    pub fn is_punct(&self, p: &str) -> bool {
        matches!(self, Tok::Punct(x) if x == p)
    }

    /// Name of an identifier-like token (bare or delimited).
    pub(crate) fn ident_name(&self) -> Option<&str> {
        match self {
            Tok::Word(w) | Tok::Ident(w) => Some(w),
            _ => None,
        }
    }

    pub(crate) fn render(&self) -> String {
        match self {
            Tok::Word(w) if w.starts_with('#') => quote_ident(w),
            Tok::Word(w) => w.clone(),
            Tok::Ident(i) => quote_ident(i),
            Tok::Str(s) => quote_str(s),
            Tok::Num(n) => n.clone(),
            Tok::Hex(h) => format!("X'{h}'"),
            Tok::Punct(p) => p.to_string(),
        }
    }
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

pub(crate) fn quote_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn syntax_error(near: &str) -> ErrorSpec {
    ErrorSpec::new(102, 15, format!("Incorrect syntax near '{near}'."))
}

/// Splits T-SQL text into tokens (comments dropped).
pub(crate) fn tokenize(sql: &str) -> Result<Vec<Tok>, ErrorSpec> {
    // Byte offsets into `sql`, always on character boundaries.
    let at = |i: usize| sql.get(i..).and_then(|s| s.chars().next());
    let skip_while = |mut i: usize, f: fn(char) -> bool| {
        while let Some(c) = at(i).filter(|c| f(*c)) {
            i += c.len_utf8();
        }
        i
    };
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(c) = at(i) {
        let next = at(i + c.len_utf8());
        if c.is_whitespace() {
            i += c.len_utf8();
        } else if c == '-' && next == Some('-') {
            i = sql[i..].find('\n').map_or(sql.len(), |n| i + n);
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            loop {
                let rest = &sql[i..];
                if rest.starts_with("/*") {
                    depth += 1;
                    i += 2;
                } else if rest.starts_with("*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else if let Some(ch) = rest.chars().next() {
                    i += ch.len_utf8();
                } else {
                    return Err(ErrorSpec::new(113, 15, "Missing end comment mark '*/'."));
                }
            }
        } else if c == '\'' || ((c == 'N' || c == 'n') && next == Some('\'')) {
            let body = if c == '\'' { i + 1 } else { i + 2 };
            let (s, end) = quoted(sql, body, '\'')?;
            out.push(Tok::Str(s));
            i = end;
        } else if c == '[' || c == '"' {
            let close = if c == '[' { ']' } else { '"' };
            let (s, end) = quoted(sql, i + 1, close)?;
            out.push(Tok::Ident(s));
            i = end;
        } else if c == '0' && matches!(next, Some('x') | Some('X')) {
            let start = i + 2;
            i = skip_while(start, |c| c.is_ascii_hexdigit());
            let mut h = sql[start..i].to_string();
            if h.len() % 2 == 1 {
                h.insert(0, '0');
            }
            out.push(Tok::Hex(h));
        } else if c.is_ascii_digit() || (c == '.' && next.is_some_and(|d| d.is_ascii_digit())) {
            let start = i;
            i = skip_while(i, |c| c.is_ascii_digit() || c == '.');
            if matches!(at(i), Some('e' | 'E')) {
                let mut j = i + 1;
                if matches!(at(j), Some('+' | '-')) {
                    j += 1;
                }
                if at(j).is_some_and(|d| d.is_ascii_digit()) {
                    i = skip_while(j, |c| c.is_ascii_digit());
                }
            }
            out.push(Tok::Num(sql[start..i].to_string()));
        } else if c.is_alphabetic() || matches!(c, '_' | '@' | '#' | '$') {
            let start = i;
            i = skip_while(i, |c| {
                c.is_alphanumeric() || matches!(c, '_' | '@' | '#' | '$')
            });
            out.push(Tok::Word(sql[start..i].to_string()));
        } else if let Some(op) = TWO_CHAR_OPS.iter().find(|op| sql[i..].starts_with(**op)) {
            out.push(Tok::Punct(Cow::Borrowed(op)));
            i += op.len();
        } else {
            out.push(Tok::Punct(punct(c)));
            i += c.len_utf8();
        }
    }
    Ok(out)
}

/// Operators of two characters.
const TWO_CHAR_OPS: &[&str] = &["<>", "!=", ">=", "<=", "||", "!<", "!>"];

/// A one-character punctuation token; ASCII ones (all that valid T-SQL has) without an
/// allocation.
fn punct(c: char) -> Cow<'static, str> {
    const ASCII: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
    match ASCII.find(c) {
        Some(k) => Cow::Borrowed(&ASCII[k..k + c.len_utf8()]),
        None => Cow::Owned(c.to_string()),
    }
}

/// A quoted string or identifier whose body starts at byte `start` of `sql` and ends at
/// the ASCII `close` (doubled, it stands for itself): the unescaped text and the byte
/// offset after the closing quote.
fn quoted(sql: &str, start: usize, close: char) -> Result<(String, usize), ErrorSpec> {
    let mut s = String::new();
    let mut chars = sql[start..].char_indices();
    while let Some((k, ch)) = chars.next() {
        if ch != close {
            s.push(ch);
        } else if sql[start + k + 1..].starts_with(close) {
            s.push(close);
            chars.next();
        } else {
            return Ok((s, start + k + 1));
        }
    }
    Err(ErrorSpec::new(
        105,
        15,
        format!("Unclosed quotation mark after the character string '{s}'."),
    ))
}

/// A parsed statement.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Stmt {
    Simple(Vec<Tok>),
    If {
        cond: Vec<Tok>,
        then: Vec<Stmt>,
        otherwise: Vec<Stmt>,
    },
    /// `BEGIN TRY … END TRY BEGIN CATCH … END CATCH`.
    Try {
        body: Vec<Stmt>,
        catch: Vec<Stmt>,
    },
}

const STARTS: &[&str] = &[
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "CREATE",
    "DROP",
    "ALTER",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SET",
    "WAITFOR",
    "IF",
    "DECLARE",
    "EXEC",
    "EXECUTE",
    "PRINT",
    "TRUNCATE",
    "USE",
    "SAVE",
    "MERGE",
    "RAISERROR",
    "THROW",
    "RETURN",
    "WHILE",
];

/// How deeply a batch may nest: statements (`IF`, `BEGIN … END`, `TRY … CATCH`),
/// parentheses, and the expressions rewritten inside one another (`CAST` operands,
/// `CASE` results). Deeper batches get error 191, as SQL Server's parser gives for
/// nesting it cannot handle, instead of exhausting the stack.
pub(crate) const MAX_NESTING: usize = 128;

/// SQL Server nests CASE expressions at most 10 deep (error 125 past it).
const MAX_CASE_NESTING: i32 = 10;

/// Error 191: nested deeper than [`MAX_NESTING`].
pub(crate) fn nested_too_deeply() -> ErrorSpec {
    ErrorSpec::new(
        191,
        15,
        "Some part of your SQL statement is nested too deeply. Rewrite the query or break it up into smaller queries.",
    )
}

/// The nesting level inside `depth`, or error 191 past [`MAX_NESTING`].
pub(crate) fn deeper(depth: usize) -> Result<usize, ErrorSpec> {
    if depth < MAX_NESTING {
        Ok(depth + 1)
    } else {
        Err(nested_too_deeply())
    }
}

/// Checks that parentheses balance (102 at the first that does not) and nest at most
/// [`MAX_NESTING`] deep (191), so that the rewrites after parsing, which look for a
/// `(`'s match, always find it within a bounded span.
fn check_parens(toks: &[Tok]) -> Result<(), ErrorSpec> {
    let mut depth = 0;
    for t in toks {
        if t.is_punct("(") {
            depth = deeper(depth)?;
        } else if t.is_punct(")") {
            depth = usize::checked_sub(depth, 1).ok_or_else(|| syntax_error(")"))?;
        }
    }
    match toks.last() {
        Some(last) if depth > 0 => Err(syntax_error(&last.render())),
        _ => Ok(()),
    }
}

/// Splits a batch into statements.
pub(crate) fn parse_batch(sql: &str) -> Result<Vec<Stmt>, ErrorSpec> {
    let mut toks = tokenize(sql)?;
    check_parens(&toks)?;
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < toks.len() {
        match parse_stmt(&mut toks, &mut pos, 0)? {
            Some(s) => out.push(s),
            None => {
                if pos < toks.len() {
                    // A stray END / ELSE.
                    return Err(syntax_error(&toks[pos].render()));
                }
            }
        }
    }
    Ok(out)
}

/// Moves the token at `pos` out and steps past it: the parser never looks back at a
/// token it consumed, so statements take their tokens instead of copying them.
fn take(toks: &mut [Tok], pos: &mut usize) -> Tok {
    let t = std::mem::replace(&mut toks[*pos], Tok::Punct(Cow::Borrowed("")));
    *pos += 1;
    t
}

fn skip_separators(toks: &[Tok], pos: &mut usize) {
    while *pos < toks.len() && (toks[*pos].is_punct(";") || toks[*pos].is_kw("GO")) {
        *pos += 1;
    }
}

fn is_tran_word(t: Option<&Tok>) -> bool {
    t.is_some_and(|t| t.is_kw("TRAN") || t.is_kw("TRANSACTION") || t.is_kw("DISTRIBUTED"))
}

/// `BEGIN TRY` / `BEGIN CATCH` (as opposed to a `BEGIN … END` block or `BEGIN TRAN`).
fn is_try_or_catch(t: Option<&Tok>) -> bool {
    t.is_some_and(|t| t.is_kw("TRY") || t.is_kw("CATCH"))
}

/// Statements (at nesting level `depth`) up to `END <word>` (`END TRY`, `END CATCH`),
/// which it consumes.
fn parse_until_end(
    toks: &mut [Tok],
    pos: &mut usize,
    word: &str,
    depth: usize,
) -> Result<Vec<Stmt>, ErrorSpec> {
    let mut body = Vec::new();
    loop {
        skip_separators(toks, pos);
        match toks.get(*pos) {
            None => return Err(syntax_error(word)),
            Some(t) if t.is_kw("END") => {
                if !toks.get(*pos + 1).is_some_and(|n| n.is_kw(word)) {
                    return Err(syntax_error("END"));
                }
                *pos += 2;
                return Ok(body);
            }
            Some(_) => match parse_stmt(toks, pos, depth)? {
                Some(s) => body.push(s),
                None => return Err(syntax_error(&toks[*pos].render())),
            },
        }
    }
}

/// An `IF` / `ELSE` branch (at nesting level `depth`): a `BEGIN … END` block or one
/// statement.
fn parse_block(toks: &mut [Tok], pos: &mut usize, depth: usize) -> Result<Vec<Stmt>, ErrorSpec> {
    skip_separators(toks, pos);
    if toks.get(*pos).is_some_and(|t| t.is_kw("BEGIN"))
        && !is_tran_word(toks.get(*pos + 1))
        && !is_try_or_catch(toks.get(*pos + 1))
    {
        *pos += 1;
        let mut body = Vec::new();
        loop {
            skip_separators(toks, pos);
            match toks.get(*pos) {
                None => return Err(syntax_error("BEGIN")),
                Some(t) if t.is_kw("END") => {
                    *pos += 1;
                    return Ok(body);
                }
                Some(_) => match parse_stmt(toks, pos, depth)? {
                    Some(s) => body.push(s),
                    None => return Err(syntax_error(&toks[*pos].render())),
                },
            }
        }
    }
    match parse_stmt(toks, pos, depth)? {
        Some(s) => Ok(vec![s]),
        None => Err(syntax_error("IF")),
    }
}

/// One statement at nesting level `depth` (0 at the top of the batch).
fn parse_stmt(toks: &mut [Tok], pos: &mut usize, depth: usize) -> Result<Option<Stmt>, ErrorSpec> {
    skip_separators(toks, pos);
    let Some(first) = toks.get(*pos) else {
        return Ok(None);
    };
    if first.is_kw("END") || first.is_kw("ELSE") {
        return Ok(None);
    }
    if first.is_kw("BEGIN") && toks.get(*pos + 1).is_some_and(|t| t.is_kw("TRY")) {
        let inner = deeper(depth)?;
        *pos += 2;
        let body = parse_until_end(toks, pos, "TRY", inner)?;
        skip_separators(toks, pos);
        // A TRY block must be followed at once by its CATCH block.
        if !(toks.get(*pos).is_some_and(|t| t.is_kw("BEGIN"))
            && toks.get(*pos + 1).is_some_and(|t| t.is_kw("CATCH")))
        {
            let near = toks
                .get(*pos)
                .map_or_else(|| "TRY".to_string(), Tok::render);
            return Err(syntax_error(&near));
        }
        *pos += 2;
        let catch = parse_until_end(toks, pos, "CATCH", inner)?;
        return Ok(Some(Stmt::Try { body, catch }));
    }
    if first.is_kw("BEGIN") && toks.get(*pos + 1).is_some_and(|t| t.is_kw("CATCH")) {
        // A CATCH block without its TRY.
        return Err(syntax_error("CATCH"));
    }
    if first.is_kw("IF") {
        let inner = deeper(depth)?;
        *pos += 1;
        let mut cond = Vec::new();
        let mut parens = 0i32;
        while let Some(t) = toks.get(*pos) {
            if parens == 0 {
                if let Some(k) = t.kw() {
                    if STARTS.contains(&k.as_str()) && !(k == "SELECT" && cond.is_empty()) {
                        break;
                    }
                }
            }
            if t.is_punct("(") {
                parens += 1;
            } else if t.is_punct(")") {
                parens -= 1;
            }
            cond.push(take(toks, pos));
        }
        if cond.is_empty() {
            return Err(syntax_error("IF"));
        }
        let then = parse_block(toks, pos, inner)?;
        let mut otherwise = Vec::new();
        let save = *pos;
        skip_separators(toks, pos);
        if toks.get(*pos).is_some_and(|t| t.is_kw("ELSE")) {
            *pos += 1;
            otherwise = parse_block(toks, pos, inner)?;
        } else {
            *pos = save;
        }
        return Ok(Some(Stmt::If {
            cond,
            then,
            otherwise,
        }));
    }
    let mut cur: Vec<Tok> = Vec::new();
    let mut parens = 0i32;
    let mut case_depth = 0i32;
    let first_kw = first.kw().unwrap_or_default();
    while let Some(t) = toks.get(*pos) {
        if parens == 0 && !cur.is_empty() {
            if t.is_punct(";") || t.is_kw("GO") {
                break;
            }
            if let Some(k) = t.kw() {
                if k == "END" && case_depth == 0 {
                    break;
                }
                if k == "ELSE" && case_depth == 0 {
                    break;
                }
                if STARTS.contains(&k.as_str()) && splits(&first_kw, &cur, &k) {
                    break;
                }
            }
        }
        if t.is_punct("(") {
            parens += 1;
        } else if t.is_punct(")") {
            parens -= 1;
        } else if t.is_kw("CASE") {
            case_depth += 1;
            if case_depth > MAX_CASE_NESTING {
                return Err(ErrorSpec::new(
                    125,
                    15,
                    "Case expressions may only be nested to level 10.",
                ));
            }
        } else if t.is_kw("END") && case_depth > 0 {
            case_depth -= 1;
        }
        cur.push(take(toks, pos));
    }
    Ok(Some(Stmt::Simple(cur)))
}

/// Whether keyword `k` at paren depth 0 starts a new statement after `cur`.
fn splits(first_kw: &str, cur: &[Tok], k: &str) -> bool {
    let prev = cur.last().and_then(|t| t.kw()).unwrap_or_default();
    if prev == "ON" || prev == "FOR" {
        return false;
    }
    match k {
        "SELECT" => {
            let insert_values = first_kw == "INSERT" && cur.iter().any(|t| t.is_kw("VALUES"));
            (insert_values
                || !matches!(first_kw, "INSERT" | "WITH" | "CREATE" | "ALTER" | "DECLARE"))
                && !matches!(
                    prev.as_str(),
                    "UNION" | "ALL" | "EXCEPT" | "INTERSECT" | "AS"
                )
        }
        "SET" => !matches!(first_kw, "UPDATE" | "MERGE" | "CREATE" | "ALTER"),
        "IF" => !matches!(
            prev.as_str(),
            "TABLE"
                | "INDEX"
                | "VIEW"
                | "TRIGGER"
                | "PROCEDURE"
                | "PROC"
                | "FUNCTION"
                | "SCHEMA"
                | "DATABASE"
                | "COLUMN"
                | "CONSTRAINT"
        ),
        "INSERT" | "UPDATE" | "DELETE" => {
            first_kw != "MERGE" && !matches!(prev.as_str(), "OF" | "INSTEAD" | "AFTER")
        }
        _ => true,
    }
}

/// What a simple statement does.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    BeginTran,
    Commit,
    Rollback,
    /// A SET option: tracked by the session (see `options`) or accepted and ignored.
    SetIgnored,
    Use(String),
    WaitFor(Duration),
    Print(String),
    /// SQL for SQLite; `kind` classifies it.
    Sql {
        sql: String,
        kind: Kind,
    },
    /// A statement the testkit does not support.
    Unsupported(ErrorSpec),
}

/// Statement kind (drives read-only checks, DONE counts and error wording).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Select,
    Insert,
    Update,
    Delete,
    Create,
    Drop,
    Alter,
    Other,
}

impl Kind {
    pub fn writes(self) -> bool {
        matches!(
            self,
            Kind::Insert | Kind::Update | Kind::Delete | Kind::Create | Kind::Drop | Kind::Alter
        )
    }

    pub fn counts(self) -> bool {
        matches!(
            self,
            Kind::Select | Kind::Insert | Kind::Update | Kind::Delete
        )
    }

    /// The CURCMD value SQL Server reports in DONE.
    pub fn cur_cmd(self) -> u16 {
        match self {
            Kind::Select => 0xC1,
            Kind::Insert => 0xC3,
            Kind::Delete => 0xC4,
            Kind::Update => 0xC5,
            Kind::Create => 0xC6,
            Kind::Drop => 0xC8,
            Kind::Alter => 0xCB,
            Kind::Other => 0,
        }
    }

    pub fn verb(self) -> &'static str {
        match self {
            Kind::Update => "UPDATE",
            Kind::Delete => "DELETE",
            _ => "INSERT",
        }
    }
}

/// Values that translation substitutes into statements.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub version: String,
    pub server: String,
    pub database: String,
    pub spid: u16,
    pub trancount: u32,
    pub read_only: bool,
    pub options: super::options::SessionOptions,
}

#[cfg(test)]
impl Ctx {
    /// A session's context in `database`, for tests.
    pub(crate) fn in_database(database: &str) -> Ctx {
        Ctx {
            version: String::new(),
            server: String::new(),
            database: database.into(),
            spid: 51,
            trancount: 0,
            read_only: false,
            options: Default::default(),
        }
    }
}

/// Classifies and translates one simple statement.
pub(crate) fn action(toks: &[Tok], ctx: &Ctx) -> Action {
    match action_inner(toks, ctx) {
        Ok(a) => a,
        Err(e) => Action::Unsupported(e),
    }
}

fn kw_at(toks: &[Tok], i: usize) -> String {
    toks.get(i).and_then(|t| t.kw()).unwrap_or_default()
}

fn action_inner(toks: &[Tok], ctx: &Ctx) -> Result<Action, ErrorSpec> {
    if let Some(sql) = catalog::datatype_info(toks) {
        return Ok(Action::Sql {
            sql,
            kind: Kind::Select,
        });
    }
    let k0 = kw_at(toks, 0);
    let k1 = kw_at(toks, 1);
    match k0.as_str() {
        "BEGIN" if matches!(k1.as_str(), "TRAN" | "TRANSACTION") => return Ok(Action::BeginTran),
        "BEGIN" if k1 == "DISTRIBUTED" => {
            return Err(ErrorSpec::new(
                8501,
                16,
                "MSDTC on server is unavailable (distributed transactions are not supported by the testkit).",
            ))
        }
        "COMMIT" => return Ok(Action::Commit),
        "ROLLBACK" => return Ok(Action::Rollback),
        "SET" => {
            if toks.get(1).is_some_and(|t| matches!(t, Tok::Word(w) if w.starts_with('@'))) {
                return Err(unsupported("variables (SET @var)"));
            }
            return Ok(Action::SetIgnored);
        }
        "USE" => {
            let name = toks.get(1).and_then(|t| t.ident_name()).unwrap_or_default();
            return Ok(Action::Use(name.to_string()));
        }
        "WAITFOR" => {
            if k1 != "DELAY" {
                return Err(unsupported("WAITFOR TIME"));
            }
            return match toks.get(2) {
                Some(Tok::Str(s)) => parse_delay(s).map(Action::WaitFor),
                _ => Err(syntax_error("DELAY")),
            };
        }
        "PRINT" => {
            return match toks.get(1) {
                Some(Tok::Str(s)) => Ok(Action::Print(s.clone())),
                Some(t) => Ok(Action::Print(t.render())),
                None => Err(syntax_error("PRINT")),
            }
        }
        "EXEC" | "EXECUTE" => {
            if let Some(inner) = exec_sql(toks)? {
                return action_inner(&inner, ctx);
            }
            let name = toks.get(1).map(|t| t.render()).unwrap_or_default();
            return Err(ErrorSpec::new(
                2812,
                16,
                format!("Could not find stored procedure '{}'.", name.trim_matches('"')),
            ));
        }
        "DECLARE" => return Err(unsupported("variables (DECLARE)")),
        "WHILE" => return Err(unsupported("WHILE loops")),
        "MERGE" => return Err(unsupported("MERGE")),
        "SAVE" => return Err(unsupported("SAVE TRANSACTION")),
        "RAISERROR" | "THROW" => {
            let at = toks.iter().position(|t| matches!(t, Tok::Str(_)));
            let msg = match at.map(|i| &toks[i]) {
                Some(Tok::Str(s)) => s.clone(),
                _ => String::new(),
            };
            // THROW number, 'message', state: always severity 16.
            // RAISERROR ('message', severity, state): the severity decides whether it is
            // an error at all (11 and above) or a message (10 and below).
            let after_msg: Vec<i64> = at
                .map(|i| &toks[i + 1..])
                .unwrap_or_default()
                .iter()
                .filter_map(|t| match t {
                    Tok::Num(n) => n.parse().ok(),
                    _ => None,
                })
                .collect();
            let (number, class, state) = match (k0.as_str(), toks.get(1)) {
                ("THROW", Some(Tok::Num(n))) => (
                    n.parse().unwrap_or(50000),
                    16,
                    after_msg.first().copied().unwrap_or(1),
                ),
                ("THROW", _) => (50000, 16, 1),
                _ => {
                    let severity = after_msg.first().copied().unwrap_or(16);
                    if !(0..=18).contains(&severity) {
                        return Err(ErrorSpec::new(
                            2754,
                            16,
                            "Error severity levels greater than 18 can only be specified by members of the sysadmin role, using the WITH LOG option.",
                        ));
                    }
                    (50000, severity, after_msg.get(1).copied().unwrap_or(1))
                }
            };
            let class = u8::try_from(class).unwrap_or(16);
            let state = u8::try_from(state.clamp(0, 255)).unwrap_or(1);
            if class <= 10 {
                return Ok(Action::Print(msg));
            }
            return Err(ErrorSpec::new(number, class, msg).with_state(state));
        }
        _ => {}
    }
    let mut toks = toks.to_vec();
    let kind = match k0.as_str() {
        "SELECT" | "WITH" => Kind::Select,
        "INSERT" => {
            if k1 != "INTO" {
                toks.insert(1, Tok::Word("INTO".into()));
            }
            Kind::Insert
        }
        "UPDATE" => Kind::Update,
        "DELETE" => {
            if k1 != "FROM" {
                toks.insert(1, Tok::Word("FROM".into()));
            }
            Kind::Delete
        }
        "TRUNCATE" => {
            // TRUNCATE TABLE t → DELETE FROM t
            toks.splice(
                0..2.min(toks.len()),
                [Tok::Word("DELETE".into()), Tok::Word("FROM".into())],
            );
            Kind::Delete
        }
        "CREATE" => {
            if k1 == "TABLE" {
                typing::add_column_checks(&mut toks, ctx);
            }
            Kind::Create
        }
        "DROP" => Kind::Drop,
        "ALTER" => {
            if k1 == "TABLE" {
                typing::add_column_checks(&mut toks, ctx);
            }
            Kind::Alter
        }
        _ => Kind::Other,
    };
    let sql = rewrite(&toks, ctx)?;
    let sql = if kind == Kind::Select {
        hints::encode(sql, &typing::select_hints(&toks)?)
    } else {
        sql
    };
    Ok(Action::Sql { sql, kind })
}

/// `EXEC sp_executesql @stmt, @decl, @v1, …` inside an RPC whose own parameters hold the
/// statement, the declarations and the values (how a client wraps a statement to declare
/// its parameters itself, e.g. tiberius-based code sending VARCHAR): the RPC's values are
/// put in as literals, so the statement then runs as a batch `EXEC sp_executesql` with
/// literal arguments. `None` when `toks` is not such a statement or uses none of
/// `outer`. The name of a named argument (`@a = @P3`) is kept; only values are bound.
pub(crate) fn bind_exec_args(toks: &[Tok], outer: &[super::rpc::Param]) -> Option<Vec<Tok>> {
    if outer.is_empty()
        || !toks
            .first()
            .is_some_and(|t| t.is_kw("EXEC") || t.is_kw("EXECUTE"))
        || !toks.iter().any(|t| {
            t.ident_name()
                .is_some_and(|n| n.eq_ignore_ascii_case("sp_executesql"))
        })
    {
        return None;
    }
    let mut out = Vec::with_capacity(toks.len());
    let mut bound = false;
    for (i, t) in toks.iter().enumerate() {
        let value = match t {
            Tok::Word(w) if w.starts_with('@') && !w.starts_with("@@") => {
                let named_arg = toks.get(i + 1).is_some_and(|n| n.is_punct("="));
                outer
                    .iter()
                    .find(|p| !named_arg && p.name.eq_ignore_ascii_case(w))
                    .map(|p| &p.value)
            }
            _ => None,
        };
        match value {
            Some(v) => {
                bound = true;
                out.extend(literal(v));
            }
            None => out.push(t.clone()),
        }
    }
    bound.then_some(out)
}

/// A value as literal tokens.
fn literal(v: &super::sql::Value) -> Vec<Tok> {
    use super::sql::Value;
    match v {
        Value::Null => vec![Tok::Word("NULL".into())],
        Value::Int(n) if *n < 0 => vec![
            Tok::Punct("-".into()),
            Tok::Num(n.unsigned_abs().to_string()),
        ],
        Value::Int(n) => vec![Tok::Num(n.to_string())],
        Value::Float(f) if *f < 0.0 => vec![Tok::Punct("-".into()), Tok::Num(format!("{:e}", -f))],
        Value::Float(f) => vec![Tok::Num(format!("{f:e}"))],
        Value::Text(s) => vec![Tok::Str(s.clone())],
        Value::Blob(b) => vec![Tok::Hex(b.iter().map(|x| format!("{x:02X}")).collect())],
        other => match super::convert::text_of(other) {
            Some(text) => vec![Tok::Str(text)],
            None => vec![Tok::Word("NULL".into())],
        },
    }
}

/// `EXEC sp_executesql N'stmt' [, N'@a int, …' [, @a = value | value, …]]` in a batch:
/// the statement's tokens with the (literal) arguments substituted for its
/// parameters; `None` for any other procedure. The statement must be a single
/// statement.
fn exec_sql(toks: &[Tok]) -> Result<Option<Vec<Tok>>, ErrorSpec> {
    let mut i = 1;
    // Optional `@rc =`, then [master.][sys.|dbo.]sp_executesql
    if toks
        .get(i)
        .is_some_and(|t| matches!(t, Tok::Word(w) if w.starts_with('@')))
        && toks.get(i + 1).is_some_and(|t| t.is_punct("="))
    {
        i += 2;
    }
    while toks.get(i + 1).is_some_and(|t| t.is_punct("."))
        && toks.get(i).and_then(|t| t.ident_name()).is_some_and(|n| {
            ["master", "sys", "dbo"]
                .iter()
                .any(|p| n.eq_ignore_ascii_case(p))
        })
    {
        i += 2;
    }
    if !toks
        .get(i)
        .and_then(|t| t.ident_name())
        .is_some_and(|n| n.eq_ignore_ascii_case("sp_executesql"))
    {
        return Ok(None);
    }
    let args = typing::split_commas(toks.get(i + 1..).unwrap_or_default());
    let stmt = match args.first() {
        Some([Tok::Str(s)]) => s.clone(),
        _ => {
            return Err(ErrorSpec::new(
                214,
                16,
                "Procedure expects parameter '@statement' of type 'ntext/nchar/nvarchar'.",
            ))
        }
    };
    let decl = match args.get(1) {
        Some([Tok::Str(s)]) => s.clone(),
        _ => String::new(),
    };
    let declared = super::rpc::declared_names(&decl);
    let mut values: Vec<(String, Vec<Tok>)> = Vec::new();
    for (k, arg) in args.iter().skip(2).enumerate() {
        let (name, value) = match arg {
            [Tok::Word(n), eq, rest @ ..] if eq.is_punct("=") && n.starts_with('@') => {
                (n.clone(), rest.to_vec())
            }
            other => (declared.get(k).cloned().unwrap_or_default(), other.to_vec()),
        };
        let literal = matches!(
            value.as_slice(),
            [Tok::Num(_) | Tok::Str(_) | Tok::Hex(_)] | [Tok::Punct(_), Tok::Num(_)]
        ) || value.len() == 1 && value[0].is_kw("NULL");
        if !literal {
            return Err(unsupported("sp_executesql arguments other than literals"));
        }
        values.push((name, value));
    }
    let mut out = Vec::new();
    for t in tokenize(&stmt)? {
        match &t {
            Tok::Word(w) if w.starts_with('@') && !w.starts_with("@@") => {
                match values.iter().find(|(n, _)| n.eq_ignore_ascii_case(w)) {
                    Some((_, v)) => out.extend(v.iter().cloned()),
                    None => {
                        return Err(ErrorSpec::new(
                            137,
                            15,
                            format!("Must declare the scalar variable \"{w}\"."),
                        ))
                    }
                }
            }
            _ => out.push(t),
        }
    }
    let text = out.iter().map(Tok::render).collect::<Vec<_>>().join(" ");
    match parse_batch(&text)?.as_slice() {
        [Stmt::Simple(t)] => Ok(Some(t.clone())),
        _ => Err(unsupported(
            "several statements in sp_executesql inside a batch",
        )),
    }
}

fn unsupported(what: &str) -> ErrorSpec {
    ErrorSpec::new(
        40517,
        16,
        format!("Keyword or statement option '{what}' is not supported by mssql-testkit."),
    )
}

/// Parses `hh:mm:ss[.mmm]` (also `mm:ss`, `ss`).
pub(crate) fn parse_delay(s: &str) -> Result<Duration, ErrorSpec> {
    let bad = || {
        ErrorSpec::new(
            148,
            15,
            format!("Incorrect time syntax in time string '{s}' used with WAITFOR."),
        )
    };
    let mut parts: Vec<&str> = s.trim().split(':').collect();
    if parts.is_empty() || parts.len() > 3 {
        return Err(bad());
    }
    let sec_part = parts.pop().ok_or_else(bad)?;
    let secs: f64 = sec_part.parse().map_err(|_| bad())?;
    let mut total = secs;
    let mut mult = 60.0;
    while let Some(p) = parts.pop() {
        let v: f64 = p.parse().map_err(|_| bad())?;
        total += v * mult;
        mult *= 60.0;
    }
    if !total.is_finite() || !(0.0..86400.0).contains(&total) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(total))
}

/// Index of the `)` matching the `(` at `open`.
pub(crate) fn matching_paren(toks: &[Tok], open: usize) -> Option<usize> {
    let mut depth = 0;
    for (j, t) in toks.iter().enumerate().skip(open) {
        if t.is_punct("(") {
            depth += 1;
        } else if t.is_punct(")") {
            depth -= 1;
            if depth == 0 {
                return Some(j);
            }
        }
    }
    None
}

const HINTS: &[&str] = &[
    "NOLOCK",
    "ROWLOCK",
    "UPDLOCK",
    "HOLDLOCK",
    "READPAST",
    "TABLOCK",
    "TABLOCKX",
    "PAGLOCK",
    "NOWAIT",
    "READCOMMITTED",
    "READUNCOMMITTED",
    "REPEATABLEREAD",
    "SERIALIZABLE",
    "XLOCK",
    "FORCESEEK",
    "INDEX",
    "SNAPSHOT",
];

/// Table hints that take update or exclusive locks on the rows a statement reads.
const WRITE_LOCK_HINTS: &[&str] = &["UPDLOCK", "XLOCK", "TABLOCKX"];

/// Whether the statement (or an `IF` condition) reads a table `WITH (UPDLOCK)`,
/// `XLOCK` or `TABLOCKX`: a read that locks as a write does (see
/// `sql::lock_for_update`).
pub(crate) fn reads_with_write_locks(toks: &[Tok]) -> bool {
    toks.iter().enumerate().any(|(i, t)| {
        t.is_kw("WITH")
            && toks.get(i + 1).is_some_and(|t| t.is_punct("("))
            && matching_paren(toks, i + 1).is_some_and(|close| {
                toks[i + 2..close].iter().any(|t| {
                    t.kw()
                        .is_some_and(|k| WRITE_LOCK_HINTS.contains(&k.as_str()))
                })
            })
    })
}

/// Rewrites T-SQL tokens into SQLite SQL text.
pub(crate) fn rewrite(toks: &[Tok], ctx: &Ctx) -> Result<String, ErrorSpec> {
    rewrite_nested(toks, ctx, 0)
}

/// [`rewrite`] of tokens `depth` rewrites deep (a `CAST` operand, a `TOP`, `OFFSET`,
/// `OUTPUT` or `DEFAULT` expression inside the statement): error 191 past
/// [`MAX_NESTING`].
pub(crate) fn rewrite_nested(toks: &[Tok], ctx: &Ctx, depth: usize) -> Result<String, ErrorSpec> {
    let inner = deeper(depth)?;
    let mut out: Vec<String> = Vec::new();
    // Pending LIMIT per parenthesis level (from TOP).
    let mut limits: Vec<Option<String>> = vec![None];
    // IDENTITY column waiting for its PRIMARY KEY (paren level of the column list).
    let mut identity_level: Option<usize> = None;
    let mut identity_has_pk = false;
    let is_create_table = kw_at(toks, 0) == "CREATE" && kw_at(toks, 1) == "TABLE";
    let is_dml = matches!(kw_at(toks, 0).as_str(), "INSERT" | "UPDATE" | "DELETE");
    // OUTPUT INSERTED.x / DELETED.x → RETURNING x (appended at the end).
    let mut returning: Option<String> = None;
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        let next = toks.get(i + 1);
        let level = limits.len();
        match t {
            Tok::Punct(p) if p == "(" => {
                out.push("(".into());
                limits.push(None);
            }
            Tok::Punct(p) if p == ")" => {
                if level > 1 {
                    if identity_level == Some(level) && !identity_has_pk {
                        out.push("PRIMARY KEY AUTOINCREMENT".into());
                        identity_level = None;
                    }
                    if let Some(Some(l)) = limits.pop() {
                        out.push(format!("LIMIT {l}"));
                    }
                }
                out.push(")".into());
            }
            // A numeric literal longer than a float holds is an exact DECIMAL, as in
            // SQL Server (SQLite would read it as a float).
            // …negative ones too (unary minus before a long literal).
            Tok::Punct(p)
                if p == "-"
                    && matches!(next, Some(Tok::Num(n)) if typing::exact_literal(n).is_some())
                    && (i == 0
                        || matches!(&toks[i - 1], Tok::Punct(q) if q != ")")
                        || toks[i - 1].kw().is_some_and(|k| {
                            STARTS.contains(&k.as_str())
                                || matches!(
                                    k.as_str(),
                                    "VALUES"
                                        | "AND"
                                        | "OR"
                                        | "WHEN"
                                        | "THEN"
                                        | "ELSE"
                                        | "RETURN"
                                        | "NOT"
                                        | "IN"
                                        | "BETWEEN"
                                )
                        })) =>
            {
                if let Some(Tok::Num(n)) = next {
                    out.push(typing::exact_literal(&format!("-{n}")).unwrap_or_default());
                }
                i += 1;
            }
            Tok::Num(n) if typing::exact_literal(n).is_some() => {
                out.push(typing::exact_literal(n).unwrap_or_default());
            }
            // `+` next to a string literal concatenates (SQLite's `+` is numeric only).
            Tok::Punct(p)
                if p == "+"
                    && (matches!(next, Some(Tok::Str(_)))
                        || matches!(i.checked_sub(1).map(|j| &toks[j]), Some(Tok::Str(_)))) =>
            {
                out.push("||".into());
            }
            Tok::Punct(p) if p == "," => {
                if identity_level == Some(level) {
                    if !identity_has_pk {
                        out.push("PRIMARY KEY AUTOINCREMENT".into());
                    }
                    identity_level = None;
                }
                out.push(",".into());
            }
            Tok::Word(_) | Tok::Ident(_) => {
                let up = t.ident_name().unwrap_or_default().to_ascii_uppercase();
                let call = next.is_some_and(|n| n.is_punct("("));
                let empty_call = call && toks.get(i + 2).is_some_and(|n| n.is_punct(")"));
                // The system catalog and metadata functions.
                if let Some((text, end)) =
                    catalog::rewrite(toks, i, ctx).or_else(|| catalog::builtin(toks, i, ctx))
                {
                    out.push(text);
                    i = end + 1;
                    continue;
                }
                // Schema prefix dbo. / [dbo]. is dropped.
                if up == "DBO" && next.is_some_and(|n| n.is_punct(".")) {
                    i += 2;
                    continue;
                }
                if matches!(t, Tok::Ident(_)) {
                    out.push(t.render());
                    i += 1;
                    continue;
                }
                match up.as_str() {
                    "@@VERSION" => out.push(quote_str(&ctx.version)),
                    "@@SPID" => out.push(ctx.spid.to_string()),
                    "@@TRANCOUNT" => out.push(ctx.trancount.to_string()),
                    "@@ROWCOUNT" => out.push("changes()".into()),
                    "@@IDENTITY" => out.push("last_insert_rowid()".into()),
                    "@@SERVERNAME" => out.push(quote_str(&ctx.server)),
                    "@@ERROR" => out.push("0".into()),
                    "SCOPE_IDENTITY" | "IDENT_CURRENT" if call => {
                        out.push("last_insert_rowid()".into());
                        i = matching_paren(toks, i + 1).unwrap_or(i + 1);
                    }
                    "ISNULL" if call => out.push("ifnull".into()),
                    "LEN" if call => out.push("length".into()),
                    "COUNT_BIG" if call => out.push("count".into()),
                    "GETDATE" | "SYSDATETIME" if empty_call => {
                        out.push("strftime('%Y-%m-%d %H:%M:%f','now','localtime')".into());
                        i += 2;
                    }
                    "GETUTCDATE" | "SYSUTCDATETIME" if empty_call => {
                        out.push("strftime('%Y-%m-%d %H:%M:%f','now')".into());
                        i += 2;
                    }
                    "NEWID" if empty_call => {
                        out.push("tk_newid()".into());
                        i += 2;
                    }
                    "CAST" | "CONVERT" | "TRY_CAST" | "TRY_CONVERT" if call => {
                        if let Some((text, close)) = typing::rewrite_cast(toks, i, ctx, inner)? {
                            out.push(text);
                            i = close;
                        } else {
                            out.push(t.render());
                        }
                    }
                    "DB_NAME" if empty_call => {
                        out.push(quote_str(&ctx.database));
                        i += 2;
                    }
                    "SUSER_SNAME" | "SUSER_NAME" | "USER_NAME" if empty_call => {
                        out.push("'dbo'".into());
                        i += 2;
                    }
                    "DATABASEPROPERTYEX" if call => {
                        let close = matching_paren(toks, i + 1).ok_or_else(|| syntax_error("("))?;
                        let wants_updateability = toks[i + 1..close].iter().any(
                            |t| matches!(t, Tok::Str(s) if s.eq_ignore_ascii_case("Updateability")),
                        );
                        let wants_status = toks[i + 1..close]
                            .iter()
                            .any(|t| matches!(t, Tok::Str(s) if s.eq_ignore_ascii_case("Status")));
                        if wants_updateability {
                            out.push(
                                if ctx.read_only {
                                    "'READ_ONLY'"
                                } else {
                                    "'READ_WRITE'"
                                }
                                .into(),
                            );
                        } else if wants_status {
                            out.push("'ONLINE'".into());
                        } else {
                            out.push("NULL".into());
                        }
                        i = close;
                    }
                    "OBJECT_ID" if call => {
                        let close = matching_paren(toks, i + 1).ok_or_else(|| syntax_error("("))?;
                        let name = match toks.get(i + 2) {
                            Some(Tok::Str(s)) => s.clone(),
                            _ => return Err(unsupported("OBJECT_ID with a non-literal name")),
                        };
                        let bare = name
                            .rsplit('.')
                            .next()
                            .unwrap_or_default()
                            .trim_matches(|c| c == '[' || c == ']')
                            .to_string();
                        out.push(format!(
                            "(SELECT 1 FROM (SELECT name, type FROM sqlite_master UNION ALL SELECT name, type FROM sqlite_temp_master) WHERE type IN ('table','view') AND lower(name) = lower({}))",
                            quote_str(&bare)
                        ));
                        i = close;
                    }
                    "TOP" => {
                        let prev = out
                            .last()
                            .map(|s| s.to_ascii_uppercase())
                            .unwrap_or_default();
                        if !matches!(prev.as_str(), "SELECT" | "DISTINCT" | "ALL") {
                            return Err(syntax_error("TOP"));
                        }
                        let (expr, end) = if next.is_some_and(|n| n.is_punct("(")) {
                            let close =
                                matching_paren(toks, i + 1).ok_or_else(|| syntax_error("TOP"))?;
                            let text = rewrite_nested(&toks[i + 2..close], ctx, inner)?;
                            (text, close)
                        } else {
                            match next {
                                Some(n @ (Tok::Num(_) | Tok::Word(_))) => (n.render(), i + 1),
                                _ => return Err(syntax_error("TOP")),
                            }
                        };
                        if toks
                            .get(end + 1)
                            .is_some_and(|t| t.is_kw("PERCENT") || t.is_kw("WITH"))
                        {
                            return Err(unsupported("TOP PERCENT / WITH TIES"));
                        }
                        if let Some(slot) = limits.last_mut() {
                            *slot = Some(expr);
                        }
                        i = end;
                    }
                    "OFFSET" => {
                        // OFFSET n ROWS [FETCH FIRST|NEXT m ROWS ONLY] → LIMIT m OFFSET n
                        let mut j = i + 1;
                        let mut off = Vec::new();
                        while j < toks.len() && !(toks[j].is_kw("ROWS") || toks[j].is_kw("ROW")) {
                            off.push(toks[j].clone());
                            j += 1;
                        }
                        let mut fetch = "-1".to_string();
                        if toks.get(j + 1).is_some_and(|t| t.is_kw("FETCH")) {
                            let mut k = j + 3; // FETCH FIRST|NEXT
                            let mut f = Vec::new();
                            while k < toks.len() && !(toks[k].is_kw("ROWS") || toks[k].is_kw("ROW"))
                            {
                                f.push(toks[k].clone());
                                k += 1;
                            }
                            fetch = rewrite_nested(&f, ctx, inner)?;
                            j = k + 1; // ONLY
                        }
                        out.push(format!(
                            "LIMIT {fetch} OFFSET {}",
                            rewrite_nested(&off, ctx, inner)?
                        ));
                        i = j;
                    }
                    "IDENTITY" if is_create_table => {
                        // Replace the column's type with INTEGER (a rowid alias).
                        if out.last().is_some_and(|s| s == ")") {
                            while let Some(s) = out.pop() {
                                if s == "(" {
                                    break;
                                }
                            }
                        }
                        out.pop();
                        out.push("INTEGER".into());
                        if call {
                            i = matching_paren(toks, i + 1).unwrap_or(i + 1);
                        }
                        identity_level = Some(level);
                        identity_has_pk = false;
                    }
                    "KEY"
                        if identity_level == Some(level)
                            && out
                                .last()
                                .is_some_and(|s| s.eq_ignore_ascii_case("PRIMARY")) =>
                    {
                        out.push("KEY AUTOINCREMENT".into());
                        identity_has_pk = true;
                    }
                    "OUTPUT" if is_dml && level == 1 => {
                        let mut j = i + 1;
                        let mut cols = Vec::new();
                        let mut depth = 0i32;
                        while let Some(t) = toks.get(j) {
                            let stop = t.kw().is_some_and(|k| {
                                matches!(
                                    k.as_str(),
                                    "VALUES" | "SELECT" | "DEFAULT" | "WHERE" | "FROM" | "INTO"
                                )
                            });
                            if depth == 0 && stop {
                                break;
                            }
                            if t.is_punct("(") {
                                depth += 1;
                            } else if t.is_punct(")") {
                                depth -= 1;
                            }
                            let pseudo = t.is_kw("INSERTED") || t.is_kw("DELETED");
                            if pseudo && toks.get(j + 1).is_some_and(|n| n.is_punct(".")) {
                                j += 2;
                                continue;
                            }
                            cols.push(t.clone());
                            j += 1;
                        }
                        returning = Some(rewrite_nested(&cols, ctx, inner)?);
                        i = j;
                        continue;
                    }
                    "CLUSTERED" | "NONCLUSTERED" => {}
                    "TABLE"
                        if next
                            .is_some_and(|n| matches!(n, Tok::Word(w) if w.starts_with('#')))
                            && kw_at(toks, 0) == "CREATE" =>
                    {
                        out.push("TEMP TABLE".into());
                    }
                    "ON" if level == 1
                        && is_create_table
                        && next.is_some_and(|n| {
                            n.ident_name()
                                .is_some_and(|s| s.eq_ignore_ascii_case("PRIMARY"))
                        }) =>
                    {
                        i += 1;
                    }
                    "TEXTIMAGE_ON" => i += 1,
                    "WITH"
                        if call
                            && toks
                                .get(i + 2)
                                .and_then(|t| t.kw())
                                .is_some_and(|k| HINTS.contains(&k.as_str())) =>
                    {
                        i = matching_paren(toks, i + 1).ok_or_else(|| syntax_error("("))?;
                    }
                    "DEFAULT"
                        if next.is_some_and(|n| matches!(n, Tok::Word(_)))
                            && toks.get(i + 2).is_some_and(|n| n.is_punct("(")) =>
                    {
                        let close =
                            matching_paren(toks, i + 2).ok_or_else(|| syntax_error("DEFAULT"))?;
                        out.push(format!(
                            "DEFAULT ({})",
                            rewrite_nested(&toks[i + 1..=close], ctx, inner)?
                        ));
                        i = close;
                    }
                    _ if call
                        && toks.get(i + 2).is_some_and(|n| n.is_kw("MAX"))
                        && toks.get(i + 3).is_some_and(|n| n.is_punct(")")) =>
                    {
                        out.push(format!("{}(1073741823)", t.render()));
                        i += 3;
                    }
                    _ => out.push(t.render()),
                }
            }
            _ => out.push(t.render()),
        }
        i += 1;
    }
    if identity_level.is_some() && !identity_has_pk {
        out.push("PRIMARY KEY AUTOINCREMENT".into());
    }
    if let Some(Some(l)) = limits.first() {
        out.push(format!("LIMIT {l}"));
    }
    if let Some(r) = returning {
        out.push(format!("RETURNING {r}"));
    }
    Ok(out.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_lock_hints_are_found_in_a_with_list() {
        let locks = |sql: &str| reads_with_write_locks(&tokenize(sql).unwrap());
        assert!(locks(
            "SELECT 1 FROM t WITH (UPDLOCK, HOLDLOCK) WHERE k = 1"
        ));
        assert!(locks(
            "EXISTS (SELECT 1 FROM t WITH (rowlock, xlock) WHERE k = 1)"
        ));
        assert!(locks("SELECT * FROM t WITH (TABLOCKX)"));
        assert!(!locks("SELECT 1 FROM t WITH (NOLOCK)"));
        assert!(!locks("SELECT 1 FROM t WITH (HOLDLOCK) WHERE updlock = 1"));
        assert!(!locks("SELECT updlock FROM t"));
    }

    #[test]
    fn an_rpcs_values_are_bound_into_a_batch_exec_sp_executesql() {
        use crate::tds::rpc::Param;
        use crate::tds::sql::Value;
        use crate::tds::types::SqlType;
        let p = |name: &str, value: Value| Param {
            name: name.into(),
            value,
            ty: SqlType::Int,
        };
        let outer = [
            p(
                "@P1",
                Value::Text("INSERT INTO t (a, b) VALUES (@P1, @P2)".into()),
            ),
            p("@P2", Value::Text("@P1 varchar(8000), @P2 int".into())),
            p("@P3", Value::Text("x'y".into())),
            p("@P4", Value::Int(-5)),
        ];
        let toks = tokenize("EXEC sp_executesql @P1, @P2, @P3, @P4").unwrap();
        let bound = bind_exec_args(&toks, &outer).unwrap();
        let inner = exec_sql(&bound).unwrap().unwrap();
        let text: Vec<String> = inner.iter().map(Tok::render).collect();
        assert_eq!(
            text.join(" "),
            "INSERT INTO t ( a , b ) VALUES ( 'x''y' , - 5 )"
        );
        // A named argument keeps its name; other statements are left alone.
        let named = tokenize("EXEC sp_executesql @P1, @P2, @P2 = @P4").unwrap();
        let bound = bind_exec_args(&named, &outer).unwrap();
        assert!(bound.iter().any(|t| t.is_kw("@P2")));
        let select = tokenize("SELECT @P1").unwrap();
        assert!(bind_exec_args(&select, &outer).is_none());
    }

    fn ctx() -> Ctx {
        Ctx {
            version: "v".into(),
            server: "srv".into(),
            database: "testdb".into(),
            spid: 51,
            trancount: 0,
            read_only: false,
            options: Default::default(),
        }
    }

    fn simple(sql: &str) -> Vec<String> {
        parse_batch(sql)
            .unwrap()
            .into_iter()
            .map(|s| match s {
                Stmt::Simple(t) => rewrite(&t, &ctx()).unwrap(),
                Stmt::If { .. } => "IF".into(),
                Stmt::Try { .. } => "TRY".into(),
            })
            .collect()
    }

    #[test]
    fn splits_without_semicolons() {
        let s = simple("select 1\nselect 2; INSERT INTO t (a) SELECT a FROM u\nUPDATE t SET a = 1");
        assert_eq!(s.len(), 4);
        assert_eq!(s[2], "INSERT INTO t ( a ) SELECT a FROM u");
    }

    #[test]
    fn create_with_fk_actions_is_one_statement() {
        let s = simple(
            "CREATE TABLE c (id INT, p INT REFERENCES p(id) ON DELETE CASCADE ON UPDATE SET NULL)",
        );
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn top_becomes_limit() {
        assert_eq!(
            simple("SELECT TOP (5) a FROM [dbo].[t] ORDER BY a")[0],
            "SELECT a FROM \"t\" ORDER BY a LIMIT 5"
        );
        assert_eq!(
            simple("SELECT * FROM (SELECT TOP 2 a FROM t) x")[0],
            "SELECT * FROM ( SELECT a FROM t LIMIT 2 ) x"
        );
    }

    #[test]
    fn identity_becomes_autoincrement() {
        assert_eq!(
            simple("CREATE TABLE t (id INT IDENTITY(1,1) PRIMARY KEY CLUSTERED, n NVARCHAR(MAX) NOT NULL)")[0],
            "CREATE TABLE t ( id INTEGER PRIMARY KEY AUTOINCREMENT , n NVARCHAR(1073741823) NOT NULL )"
        );
        assert_eq!(
            simple("CREATE TABLE t (id BIGINT IDENTITY NOT NULL, n INT)")[0],
            "CREATE TABLE t ( id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT , n INT )"
        );
    }

    #[test]
    fn output_becomes_returning() {
        assert_eq!(
            simple("INSERT INTO t (a) OUTPUT INSERTED.id, INSERTED.a VALUES (1)")[0],
            "INSERT INTO t ( a ) VALUES ( 1 ) RETURNING id , a"
        );
        assert_eq!(
            simple("DELETE FROM t OUTPUT DELETED.* WHERE a = 1")[0],
            "DELETE FROM t WHERE a = 1 RETURNING *"
        );
    }

    #[test]
    fn if_with_block() {
        let b = parse_batch("IF OBJECT_ID('dbo.t') IS NULL BEGIN CREATE TABLE t (a INT); INSERT t VALUES (1) END ELSE SELECT 1\nSELECT 2").unwrap();
        assert_eq!(b.len(), 2);
        match &b[0] {
            Stmt::If {
                then, otherwise, ..
            } => {
                assert_eq!(then.len(), 2);
                assert_eq!(otherwise.len(), 1);
            }
            _ => panic!("expected IF"),
        }
    }

    #[test]
    fn case_end_does_not_split() {
        assert_eq!(
            simple("SELECT CASE WHEN 1=1 THEN 'a' ELSE 'b' END AS x").len(),
            1
        );
    }

    #[test]
    fn delays() {
        assert_eq!(
            parse_delay("00:00:01.500").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(parse_delay("01:00:00").unwrap(), Duration::from_secs(3600));
        assert!(parse_delay("xx").is_err());
    }

    #[test]
    fn unterminated_string_is_an_error() {
        assert_eq!(tokenize("select 'abc").unwrap_err().number, 105);
    }

    #[test]
    fn tokens_keep_multibyte_text_and_punctuation_is_borrowed() {
        let toks = tokenize("SELECT N'€''x' AS [a]]b], ü1 + 0x1F -- c\n/* d /* e */ */ € <= 1.5e3")
            .unwrap();
        assert_eq!(
            toks,
            vec![
                Tok::Word("SELECT".into()),
                Tok::Str("€'x".into()),
                Tok::Word("AS".into()),
                Tok::Ident("a]b".into()),
                Tok::Punct(",".into()),
                Tok::Word("ü1".into()),
                Tok::Punct("+".into()),
                Tok::Hex("1F".into()),
                Tok::Punct("€".to_string().into()),
                Tok::Punct("<=".into()),
                Tok::Num("1.5e3".into()),
            ]
        );
        // T-SQL's operators take no allocation of their own.
        assert!(toks
            .iter()
            .filter(|t| !t.is_punct("€"))
            .all(|t| !matches!(t, Tok::Punct(Cow::Owned(_)))));
        assert_eq!(tokenize("/* x").unwrap_err().number, 113);
        assert_eq!(tokenize("[x").unwrap_err().number, 105);
    }

    #[test]
    fn deep_nesting_is_error_191_not_a_stack_overflow() {
        let deep = |open: &str, middle: &str, close: &str, n: usize| {
            format!("{}{middle}{}", open.repeat(n), close.repeat(n))
        };
        let n = 100_000;
        for sql in [
            deep("IF 1=1 ", "SELECT 1", "", n),
            deep("IF 1=1 BEGIN ", "SELECT 1", " END", n),
            deep(
                "BEGIN TRY ",
                "SELECT 1",
                " END TRY BEGIN CATCH END CATCH",
                n,
            ),
            format!("SELECT {}", deep("(", "1", ")", n)),
            format!("SELECT {}", deep("CAST(", "1", " AS INT)", n)),
        ] {
            assert_eq!(parse_batch(&sql).unwrap_err().number, 191, "{}", &sql[..40]);
        }
        // Within the limit, nesting works.
        let ok = |sql: String| assert!(parse_batch(&sql).is_ok(), "{sql}");
        ok(deep("IF 1=1 ", "SELECT 1", "", MAX_NESTING));
        ok(deep(
            "BEGIN TRY ",
            "SELECT 1",
            " END TRY BEGIN CATCH END CATCH",
            MAX_NESTING,
        ));
        ok(format!("SELECT {}", deep("(", "1", ")", MAX_NESTING)));
        assert_eq!(
            parse_batch(&deep("IF 1=1 ", "SELECT 1", "", MAX_NESTING + 1))
                .unwrap_err()
                .number,
            191
        );
        // CASE nests 10 deep, as in SQL Server (125 past it).
        let cases = |n: usize| {
            format!(
                "SELECT {}1{} AS x",
                "CASE WHEN 1=1 THEN ".repeat(n),
                " END".repeat(n)
            )
        };
        assert!(parse_batch(&cases(10)).is_ok());
        assert_eq!(parse_batch(&cases(11)).unwrap_err().number, 125);
        // Rewrites that recurse without parentheses (OFFSET inside OFFSET) stop too.
        let offsets = format!(
            "SELECT a FROM t ORDER BY a OFFSET {} ROWS",
            "OFFSET ".repeat(20_000)
        );
        let Ok([Stmt::Simple(toks)]) = <[Stmt; 1]>::try_from(parse_batch(&offsets).unwrap()) else {
            panic!("one statement")
        };
        assert!(matches!(action(&toks, &ctx()), Action::Unsupported(e) if e.number == 191));
        // …and so does the select-list typing of nested CASE expressions.
        let cases = format!(
            "SELECT {}",
            deep("CASE WHEN 1 = 1 THEN ", "1", " END", 100_000)
        );
        let toks = tokenize(&cases).unwrap();
        assert_eq!(typing::select_hints(&toks).unwrap_err().number, 191);
    }

    #[test]
    fn unbalanced_parentheses_are_a_syntax_error_before_any_rewrite() {
        // Each unclosed `WITH (` used to make the hint rewrite scan to the end: quadratic.
        let hints = format!("SELECT 1 FROM t {}", "WITH (NOLOCK ".repeat(300_000));
        assert_eq!(parse_batch(&hints).unwrap_err().number, 191);
        let hints = format!("SELECT 1 FROM t {}", "WITH (NOLOCK ".repeat(100));
        assert_eq!(parse_batch(&hints).unwrap_err().number, 102);
        let e = parse_batch("SELECT (1").unwrap_err();
        assert_eq!(
            (e.number, e.message.as_str()),
            (102, "Incorrect syntax near '1'.")
        );
        let e = parse_batch("SELECT 1) + (2").unwrap_err();
        assert_eq!(
            (e.number, e.message.as_str()),
            (102, "Incorrect syntax near ')'.")
        );
        assert!(parse_batch("SELECT 1 FROM t WITH (NOLOCK) WHERE (a) = (1)").is_ok());
    }
}
