//! Types in translated T-SQL: `CAST`/`CONVERT` onto the server's conversion functions,
//! the types of select-list expressions (result-column hints), and the per-column
//! checks that make writes convert and length-check like SQL Server.

use super::errors::ErrorSpec;
use super::hints::Hint;
use super::translate::{matching_paren, quote_str, rewrite, Ctx, Tok};
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
pub(crate) fn rewrite_cast(
    toks: &[Tok],
    i: usize,
    ctx: &Ctx,
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
    let expr = rewrite(expr, ctx)?;
    Ok(Some((format!("{func}({expr}, {})", quote_str(&ty)), close)))
}

/// The type of a select-list expression, when SQL Server's is known without running it.
fn expr_type(e: &[Tok]) -> Option<Hint> {
    let first = e.first()?;
    let head = first.kw().unwrap_or_default();
    let spans_call =
        || e.get(1).is_some_and(|t| t.is_punct("(")) && matching_paren(e, 1) == Some(e.len() - 1);
    match head.as_str() {
        "CAST" | "TRY_CAST" if spans_call() => {
            let inner = &e[2..e.len() - 1];
            let as_at = top_level(inner, |t| t.is_kw("AS"))?;
            Some(Hint::Type(type_text(&inner[as_at + 1..])))
        }
        "CONVERT" | "TRY_CONVERT" if spans_call() => {
            let parts = split_commas(&e[2..e.len() - 1]);
            Some(Hint::Type(type_text(parts.first()?)))
        }
        "NEWID" if spans_call() => Some(Hint::Type("uniqueidentifier".into())),
        "GETDATE" | "GETUTCDATE" if spans_call() => Some(Hint::Type("datetime".into())),
        "SYSDATETIME" | "SYSUTCDATETIME" if spans_call() => Some(Hint::Type("datetime2(7)".into())),
        "CASE" if e.last().is_some_and(|t| t.is_kw("END")) => case_type(e),
        // A decimal literal is NUMERIC(p, s) in SQL Server.
        _ if matches!(e, [Tok::Num(_)])
            || (matches!(e, [Tok::Punct(_), Tok::Num(_)])
                && (e[0].is_punct("-") || e[0].is_punct("+"))) =>
        {
            let Some(Tok::Num(n)) = e.last() else {
                return None;
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
            expr_type(&e[1..e.len() - 1])
        }
        _ => None,
    }
}

/// A CASE expression whose every result (THEN / ELSE) has the same known type.
fn case_type(e: &[Tok]) -> Option<Hint> {
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
        let h = expr_type(r)?;
        match &ty {
            Some(prev) if *prev != h => return None,
            _ => ty = Some(h),
        }
    }
    ty
}

/// Result-column hints of a SELECT (by output column); stops at `*`.
pub(crate) fn select_hints(toks: &[Tok]) -> Vec<(usize, Hint)> {
    if !toks.first().is_some_and(|t| t.is_kw("SELECT")) {
        return Vec::new();
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
        if let Some(h) = expr_type(e) {
            out.push((idx, h));
        }
    }
    out
}

/// `CREATE TABLE` with a `CHECK (tk_col(...))` added to every column of a known type
/// (IDENTITY and computed columns excepted), so values convert and lengths are checked
/// on every write as SQL Server does (245, 241, 8115, 2628, …).
pub(crate) fn add_column_checks(toks: &mut Vec<Tok>, ctx: &Ctx) {
    // CREATE TABLE [schema .] name ( ... )
    let Some(open) = toks.iter().position(|t| t.is_punct("(")) else {
        return;
    };
    let Some(close) = matching_paren(toks, open) else {
        return;
    };
    let table = match toks[open - 1] {
        Tok::Word(ref w) | Tok::Ident(ref w) => w.clone(),
        _ => return,
    };
    let qualified = if table.starts_with('#') {
        format!("tempdb.dbo.{table}")
    } else {
        format!("{}.dbo.{table}", ctx.database)
    };
    let mut inserts: Vec<(usize, Vec<Tok>)> = Vec::new();
    let mut start = open + 1;
    for part in split_commas(&toks[open + 1..close]) {
        let end = start + part.len();
        let def = part;
        start = end + 1;
        let Some(name) = (match def.first() {
            Some(Tok::Word(w))
                if !matches!(
                    w.to_ascii_uppercase().as_str(),
                    "CONSTRAINT" | "PRIMARY" | "UNIQUE" | "FOREIGN" | "CHECK" | "INDEX"
                ) =>
            {
                Some(w.clone())
            }
            Some(Tok::Ident(w)) => Some(w.clone()),
            _ => None,
        }) else {
            continue;
        };
        if def.iter().any(|t| t.is_kw("IDENTITY") || t.is_kw("AS")) {
            continue;
        }
        let ty_end = match def.get(2) {
            Some(t) if t.is_punct("(") => match matching_paren(def, 2) {
                Some(c) => c + 1,
                None => continue,
            },
            _ => 2,
        };
        let Some(ty_toks) = def.get(1..ty_end) else {
            continue;
        };
        let text = type_text(ty_toks);
        if SqlType::parse_decl(&text, false).is_none() {
            continue;
        }
        let check = vec![
            Tok::Word("CHECK".into()),
            Tok::Punct("(".into()),
            Tok::Word("tk_col".into()),
            Tok::Punct("(".into()),
            Tok::Ident(name.clone()),
            Tok::Punct(",".into()),
            Tok::Str(text),
            Tok::Punct(",".into()),
            Tok::Str(qualified.clone()),
            Tok::Punct(",".into()),
            Tok::Str(name),
            Tok::Punct(")".into()),
            Tok::Punct(")".into()),
        ];
        inserts.push((end, check));
    }
    for (at, check) in inserts.into_iter().rev() {
        toks.splice(at..at, check);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tds::translate::tokenize;

    fn hints(sql: &str) -> Vec<(usize, Hint)> {
        select_hints(&tokenize(sql).unwrap())
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

    #[test]
    fn column_checks_are_added() {
        let mut toks = tokenize(
            "CREATE TABLE t (id INT IDENTITY(1,1) PRIMARY KEY, n NVARCHAR(10) NOT NULL, d DECIMAL(18,2), CONSTRAINT u UNIQUE (n))",
        )
        .unwrap();
        let ctx = Ctx {
            version: String::new(),
            server: String::new(),
            database: "db".into(),
            spid: 51,
            trancount: 0,
            read_only: false,
            options: Default::default(),
        };
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
}
