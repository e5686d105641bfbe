//! Types in translated T-SQL: `CAST`/`CONVERT` onto the server's conversion functions,
//! the types of select-list expressions (result-column hints), and the per-column
//! checks that make writes convert and length-check like SQL Server.

use super::errors::ErrorSpec;
use super::hints::Hint;
use super::translate::{deeper, matching_paren, quote_str, rewrite_nested, Ctx, Tok};
use super::types::SqlType;

/// Renders a type's tokens as declared text: `DECIMAL(18,2)`, `NVARCHAR(MAX)`.
pub(crate) fn type_text(toks: &[Tok]) -> String {
    let mut out = String::new();
    for t in toks {
        match t {
            Tok::Word(w) | Tok::Ident(w) => {
                if out.ends_with(|c: char| c.is_alphanumeric()) {
                    out.push(' ');
                }
                out.push_str(w);
            }
            Tok::Num(n) => out.push_str(n),
            Tok::Punct(p) => out.push_str(p),
            Tok::Str(s) | Tok::Hex(s) => out.push_str(s),
        }
    }
    out
}

fn undefined_type(text: &str) -> ErrorSpec {
    ErrorSpec::new(
        243,
        16,
        format!("Type {text} is not a defined system type."),
    )
}

/// Checks a type named in T-SQL; its declared text if the server knows it.
fn known_type(toks: &[Tok]) -> Result<String, ErrorSpec> {
    let text = type_text(toks);
    match SqlType::parse_decl(&text, true) {
        Some(_) => Ok(text),
        None => Err(undefined_type(&text)),
    }
}

/// A numeric literal with more than 15 significant digits (no exponent), as an exact
/// DECIMAL(p, s) conversion; `None` for literals a float holds exactly enough.
pub(crate) fn exact_literal(n: &str) -> Option<String> {
    if n.contains(['e', 'E']) {
        return None;
    }
    let body = n.trim_start_matches('-');
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let int = int.trim_start_matches('0');
    let digits = int.len() + frac.len();
    if digits <= 15 || digits > 38 {
        return None;
    }
    Some(format!(
        "tk_cast({}, 'DECIMAL({digits},{})')",
        quote_str(n),
        frac.len()
    ))
}

/// The type of a numeric literal that SQL Server types as DECIMAL(digits, fraction
/// digits): one with a decimal point, or an integer outside INT's range.
fn decimal_literal_type(n: &str) -> Option<String> {
    if n.contains(['e', 'E']) || (!n.contains('.') && n.parse::<i32>().is_ok()) {
        return None;
    }
    let (int, frac) = n.split_once('.').unwrap_or((n, ""));
    let int = int.trim_start_matches('0');
    let p = (int.len() + frac.len()).max(frac.len()).max(1);
    (p <= 38).then(|| format!("DECIMAL({p},{})", frac.len()))
}

/// Index of the first token at paren depth 0 in `toks` satisfying `f`.
fn top_level(toks: &[Tok], f: impl Fn(&Tok) -> bool) -> Option<usize> {
    let mut depth = 0i32;
    for (i, t) in toks.iter().enumerate() {
        if t.is_punct("(") {
            depth += 1;
        } else if t.is_punct(")") {
            depth -= 1;
        } else if depth == 0 && f(t) {
            return Some(i);
        }
    }
    None
}

/// Splits at commas of paren depth 0.
pub(crate) fn split_commas(toks: &[Tok]) -> Vec<&[Tok]> {
    let mut out = Vec::new();
    let mut rest = toks;
    while let Some(i) = top_level(rest, |t| t.is_punct(",")) {
        out.push(&rest[..i]);
        rest = &rest[i + 1..];
    }
    out.push(rest);
    out
}

/// `CAST(e AS t)`, `TRY_CAST`, `CONVERT(t, e[, style])`, `TRY_CONVERT` at `toks[i]`
/// (whose `(` is at `i + 1`): the SQLite call and the index of the closing `)`.
/// CONVERT's style argument is ignored (dates convert to and from ISO 8601 text).
/// `depth` is the rewrite nesting level of `toks` (see `translate::rewrite_nested`).
pub(crate) fn rewrite_cast(
    toks: &[Tok],
    i: usize,
    ctx: &Ctx,
    depth: usize,
) -> Result<Option<(String, usize)>, ErrorSpec> {
    let up = match toks.get(i) {
        Some(Tok::Word(w)) => w.to_ascii_uppercase(),
        _ => return Ok(None),
    };
    let func = match up.as_str() {
        "CAST" | "CONVERT" => "tk_cast",
        "TRY_CAST" | "TRY_CONVERT" => "tk_try_cast",
        _ => return Ok(None),
    };
    if !toks.get(i + 1).is_some_and(|t| t.is_punct("(")) {
        return Ok(None);
    }
    let close = matching_paren(toks, i + 1)
        .ok_or_else(|| ErrorSpec::new(102, 15, format!("Incorrect syntax near '{up}'.")))?;
    let inner = &toks[i + 2..close];
    let (expr, ty) = if up.ends_with("CAST") {
        let Some(as_at) = top_level(inner, |t| t.is_kw("AS")) else {
            return Err(ErrorSpec::new(
                102,
                15,
                format!("Incorrect syntax near '{up}'."),
            ));
        };
        (&inner[..as_at], &inner[as_at + 1..])
    } else {
        let parts = split_commas(inner);
        if parts.len() < 2 {
            return Err(ErrorSpec::new(
                174,
                15,
                format!(
                    "The {} function requires 2 to 3 arguments.",
                    up.to_lowercase()
                ),
            ));
        }
        (parts[1], parts[0])
    };
    let ty = known_type(ty)?;
    // `rewrite_nested` counts the operand's level itself.
    let expr = rewrite_nested(expr, ctx, depth)?;
    Ok(Some((format!("{func}({expr}, {})", quote_str(&ty)), close)))
}

/// The type of a select-list expression, when SQL Server's is known without running it;
/// `depth` is its nesting level (parentheses, CASE results), error 191 past
/// `translate::MAX_NESTING`.
fn expr_type(e: &[Tok], depth: usize) -> Result<Option<Hint>, ErrorSpec> {
    let Some(first) = e.first() else {
        return Ok(None);
    };
    let head = first.kw().unwrap_or_default();
    let spans_call =
        || e.get(1).is_some_and(|t| t.is_punct("(")) && matching_paren(e, 1) == Some(e.len() - 1);
    Ok(match head.as_str() {
        "CAST" | "TRY_CAST" if spans_call() => {
            let args = &e[2..e.len() - 1];
            top_level(args, |t| t.is_kw("AS")).map(|at| Hint::Type(type_text(&args[at + 1..])))
        }
        "CONVERT" | "TRY_CONVERT" if spans_call() => split_commas(&e[2..e.len() - 1])
            .first()
            .map(|ty| Hint::Type(type_text(ty))),
        "NEWID" if spans_call() => Some(Hint::Type("uniqueidentifier".into())),
        "GETDATE" | "GETUTCDATE" if spans_call() => Some(Hint::Type("datetime".into())),
        "SYSDATETIME" | "SYSUTCDATETIME" if spans_call() => Some(Hint::Type("datetime2(7)".into())),
        "CASE" if e.last().is_some_and(|t| t.is_kw("END")) => case_type(e, deeper(depth)?)?,
        // A decimal literal is NUMERIC(p, s) in SQL Server.
        _ if matches!(e, [Tok::Num(_)])
            || (matches!(e, [Tok::Punct(_), Tok::Num(_)])
                && (e[0].is_punct("-") || e[0].is_punct("+"))) =>
        {
            let Some(Tok::Num(n)) = e.last() else {
                return Ok(None);
            };
            decimal_literal_type(n).map(Hint::Type)
        }
        _ if e.len() == 1 => match first {
            Tok::Word(w) if w.starts_with('@') && !w.starts_with("@@") => {
                Some(Hint::Param(w.clone()))
            }
            _ => None,
        },
        _ if e.len() >= 3 && e[0].is_punct("(") && matching_paren(e, 0) == Some(e.len() - 1) => {
            expr_type(&e[1..e.len() - 1], deeper(depth)?)?
        }
        _ => None,
    })
}

/// A CASE expression whose every result (THEN / ELSE) has the same known type; `level`
/// is the nesting level of its results.
fn case_type(e: &[Tok], level: usize) -> Result<Option<Hint>, ErrorSpec> {
    let mut results: Vec<&[Tok]> = Vec::new();
    let mut depth = 0i32;
    let mut case_depth = 0i32;
    let mut start: Option<usize> = None;
    for (i, t) in e.iter().enumerate() {
        if t.is_punct("(") {
            depth += 1;
        } else if t.is_punct(")") {
            depth -= 1;
        }
        if depth != 0 {
            continue;
        }
        if t.is_kw("CASE") {
            case_depth += 1;
            continue;
        }
        let boundary = case_depth == 1 && (t.is_kw("WHEN") || t.is_kw("ELSE") || t.is_kw("END"));
        if boundary {
            if let Some(s) = start.take() {
                results.push(&e[s..i]);
            }
            if t.is_kw("ELSE") {
                start = Some(i + 1);
            }
        } else if case_depth == 1 && t.is_kw("THEN") {
            start = Some(i + 1);
        }
        if t.is_kw("END") {
            case_depth -= 1;
        }
    }
    let mut ty: Option<Hint> = None;
    for r in results {
        if r.len() == 1 && r[0].is_kw("NULL") {
            continue;
        }
        let Some(h) = expr_type(r, level)? else {
            return Ok(None);
        };
        match &ty {
            Some(prev) if *prev != h => return Ok(None),
            _ => ty = Some(h),
        }
    }
    Ok(ty)
}

/// Result-column hints of a SELECT (by output column); stops at `*`. Error 191 for an
/// expression nested too deeply.
pub(crate) fn select_hints(toks: &[Tok]) -> Result<Vec<(usize, Hint)>, ErrorSpec> {
    if !toks.first().is_some_and(|t| t.is_kw("SELECT")) {
        return Ok(Vec::new());
    }
    let mut i = 1;
    while toks
        .get(i)
        .is_some_and(|t| t.is_kw("DISTINCT") || t.is_kw("ALL"))
    {
        i += 1;
    }
    if toks.get(i).is_some_and(|t| t.is_kw("TOP")) {
        i += 1;
        if toks.get(i).is_some_and(|t| t.is_punct("(")) {
            i = matching_paren(toks, i).map_or(toks.len(), |c| c + 1);
        } else {
            i += 1;
        }
        while toks
            .get(i)
            .is_some_and(|t| t.is_kw("PERCENT") || t.is_kw("WITH") || t.is_kw("TIES"))
        {
            i += 1;
        }
    }
    let rest = toks.get(i..).unwrap_or_default();
    let end = top_level(rest, |t| {
        t.kw().is_some_and(|k| {
            matches!(
                k.as_str(),
                "FROM"
                    | "INTO"
                    | "WHERE"
                    | "GROUP"
                    | "HAVING"
                    | "ORDER"
                    | "UNION"
                    | "EXCEPT"
                    | "INTERSECT"
                    | "OPTION"
                    | "FOR"
            )
        })
    })
    .unwrap_or(rest.len());
    let mut out = Vec::new();
    for (idx, item) in split_commas(&rest[..end]).into_iter().enumerate() {
        if item.iter().any(|t| t.is_punct("*")) && item.last().is_some_and(|t| t.is_punct("*")) {
            break;
        }
        // `alias = expr`, `expr AS alias`, `expr alias`.
        let mut e = item;
        if e.len() > 2 && e[1].is_punct("=") && matches!(e[0], Tok::Word(_) | Tok::Ident(_)) {
            e = &e[2..];
        } else if e.len() > 2 && e[e.len() - 2].is_kw("AS") {
            e = &e[..e.len() - 2];
        } else if e.len() > 1
            && matches!(e[e.len() - 1], Tok::Word(_) | Tok::Ident(_) | Tok::Str(_))
            && !e[e.len() - 1].is_kw("END")
            && matches!(e[e.len() - 2], Tok::Punct(ref p) if p == ")")
        {
            e = &e[..e.len() - 1];
        }
        if let Some(h) = expr_type(e, 0)? {
            out.push((idx, h));
        }
    }
    Ok(out)
}

/// `CREATE TABLE` and `ALTER TABLE … ADD` with a `CHECK (tk_col(...))` added to every
/// column of a known type (IDENTITY and computed columns excepted), so values convert
/// and lengths are checked on every write as SQL Server does (245, 241, 8115, 2628, …).
pub(crate) fn add_column_checks(toks: &mut Vec<Tok>, ctx: &Ctx) {
    let table_before = |toks: &[Tok], at: usize| match at.checked_sub(1).map(|i| &toks[i]) {
        Some(Tok::Word(w) | Tok::Ident(w)) if w.starts_with('#') => Some(format!("tempdb.dbo.{w}")),
        Some(Tok::Word(w) | Tok::Ident(w)) => Some(format!("{}.dbo.{w}", ctx.database)),
        _ => None,
    };
    if toks.first().is_some_and(|t| t.is_kw("ALTER")) {
        // ALTER TABLE [schema .] name ADD def: SQLite adds one column per statement.
        let Some(add) = top_level(toks, |t| t.is_kw("ADD")) else {
            return;
        };
        let Some(table) = table_before(toks, add) else {
            return;
        };
        let def = &toks[add + 1..];
        if split_commas(def).len() == 1 {
            if let Some(check) = column_check(def, &table) {
                toks.extend(check);
            }
        }
        return;
    }
    // CREATE TABLE [schema .] name ( def, ... )
    let Some(open) = toks.iter().position(|t| t.is_punct("(")) else {
        return;
    };
    let Some(close) = matching_paren(toks, open) else {
        return;
    };
    let Some(table) = table_before(toks, open) else {
        return;
    };
    let mut inserts: Vec<(usize, Vec<Tok>)> = Vec::new();
    let mut start = open + 1;
    for def in split_commas(&toks[open + 1..close]) {
        let end = start + def.len();
        start = end + 1;
        if let Some(check) = column_check(def, &table) {
            inserts.push((end, check));
        }
    }
    for (at, check) in inserts.into_iter().rev() {
        toks.splice(at..at, check);
    }
}

/// The `CHECK (tk_col(...))` for column definition `def` of table `table` (qualified),
/// or `None` when `def` is a table constraint, an IDENTITY or computed column, or a
/// column of a type the server does not know.
fn column_check(def: &[Tok], table: &str) -> Option<Vec<Tok>> {
    let name = match def.first()? {
        Tok::Word(w)
            if !matches!(
                w.to_ascii_uppercase().as_str(),
                "CONSTRAINT" | "PRIMARY" | "UNIQUE" | "FOREIGN" | "CHECK" | "INDEX"
            ) =>
        {
            w.clone()
        }
        Tok::Ident(w) => w.clone(),
        _ => return None,
    };
    if def.iter().any(|t| t.is_kw("IDENTITY") || t.is_kw("AS")) {
        return None;
    }
    let ty_end = match def.get(2) {
        Some(t) if t.is_punct("(") => matching_paren(def, 2)? + 1,
        _ => 2,
    };
    let text = type_text(def.get(1..ty_end)?);
    SqlType::parse_decl(&text, false)?;
    let punct = |p: &'static str| Tok::Punct(p.into());
    Some(vec![
        Tok::Word("CHECK".into()),
        punct("("),
        Tok::Word("tk_col".into()),
        punct("("),
        Tok::Ident(name.clone()),
        punct(","),
        Tok::Str(text),
        punct(","),
        Tok::Str(table.to_string()),
        punct(","),
        Tok::Str(name),
        punct(")"),
        punct(")"),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tds::translate::tokenize;

    fn hints(sql: &str) -> Vec<(usize, Hint)> {
        select_hints(&tokenize(sql).unwrap()).unwrap()
    }

    #[test]
    fn the_nesting_limit_is_the_one_the_batch_check_allows() {
        use crate::tds::translate::MAX_NESTING;
        let parens = |n: usize| format!("SELECT {}1{} AS x", "(".repeat(n), ")".repeat(n));
        assert!(select_hints(&tokenize(&parens(MAX_NESTING)).unwrap()).is_ok());
        let too_deep = select_hints(&tokenize(&parens(MAX_NESTING + 1)).unwrap());
        assert_eq!(too_deep.unwrap_err().number, 191);
        // A CAST is one level, as its parentheses are.
        let casts =
            |n: usize| format!("SELECT {}1{} AS x", "CAST(".repeat(n), " AS INT)".repeat(n));
        assert!(rewrite_nested(&tokenize(&casts(MAX_NESTING - 1)).unwrap(), &ctx(), 0).is_ok());
    }

    #[test]
    fn select_list_types() {
        assert_eq!(
            hints("SELECT CAST(x AS DECIMAL(18, 2)) AS a, 1, NEWID() g, @P1, CONVERT(DATE, '2024-01-01') FROM t"),
            vec![
                (0, Hint::Type("DECIMAL(18,2)".into())),
                (2, Hint::Type("uniqueidentifier".into())),
                (3, Hint::Param("@P1".into())),
                (4, Hint::Type("DATE".into())),
            ]
        );
        assert_eq!(
            hints(
                "SELECT TOP (1) CASE WHEN a = 1 THEN CAST(1 AS BIT) ELSE CAST(0 AS BIT) END AS f"
            ),
            vec![(0, Hint::Type("BIT".into()))]
        );
        assert_eq!(hints("SELECT *, CAST(1 AS BIT) FROM t"), vec![]);
    }

    fn ctx() -> Ctx {
        Ctx::in_database("db")
    }

    #[test]
    fn column_checks_are_added() {
        let mut toks = tokenize(
            "CREATE TABLE t (id INT IDENTITY(1,1) PRIMARY KEY, n NVARCHAR(10) NOT NULL, d DECIMAL(18,2), CONSTRAINT u UNIQUE (n))",
        )
        .unwrap();
        let ctx = ctx();
        add_column_checks(&mut toks, &ctx);
        let text = type_text(&toks);
        assert!(
            text.contains("NOT NULL CHECK(tk_col(n,NVARCHAR(10),db.dbo.t,n))"),
            "{text}"
        );
        assert!(
            text.contains("DECIMAL(18,2)CHECK(tk_col(d,DECIMAL(18,2),db.dbo.t,d))"),
            "{text}"
        );
        assert_eq!(text.matches("tk_col").count(), 2);
    }

    #[test]
    fn alter_table_add_gets_the_same_column_check() {
        let ctx = ctx();
        let checked = |sql: &str| {
            let mut toks = tokenize(sql).unwrap();
            add_column_checks(&mut toks, &ctx);
            type_text(&toks)
        };
        assert_eq!(
            checked("ALTER TABLE dbo.t ADD c TIME(3) NULL"),
            "ALTER TABLE dbo.t ADD c TIME(3)NULL CHECK(tk_col(c,TIME(3),db.dbo.t,c))"
        );
        assert_eq!(
            checked("ALTER TABLE #t ADD [d] DATE"),
            "ALTER TABLE #t ADD d DATE CHECK(tk_col(d,DATE,tempdb.dbo.#t,d))"
        );
        // Constraints, computed columns and other ALTERs are left alone.
        for sql in [
            "ALTER TABLE t ADD CONSTRAINT u UNIQUE (a)",
            "ALTER TABLE t ADD c AS (a + 1)",
            "ALTER TABLE t ALTER COLUMN c INT",
            "ALTER TABLE t ADD c INT, d INT",
        ] {
            assert!(!checked(sql).contains("tk_col"), "{sql}");
        }
    }
}
