//! Result-column type hints from translation to execution. SQLite gives no type for an
//! expression column, but `CAST(x AS DATE)`, `NEWID()` or a bare `@param` in a select
//! list has one in SQL Server; translation finds these and prefixes the SQLite text with
//! a comment (`/*tk:types 0=date;2=@P1*/`) that SQLite ignores and `sql::run` reads.

use super::types::SqlType;

const OPEN: &str = "/*tk:types ";

/// The type of one result column, when translation knows it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Hint {
    /// A fixed type (from `CAST`, `CONVERT`, `NEWID()`, …), as declared text.
    Type(String),
    /// The type of an RPC parameter (`SELECT @P1`).
    Param(String),
}

/// Prefixes `sql` with the hints (column index, hint); unchanged when there are none.
pub(crate) fn encode(sql: String, hints: &[(usize, Hint)]) -> String {
    if hints.is_empty() {
        return sql;
    }
    let parts: Vec<String> = hints
        .iter()
        .map(|(i, h)| match h {
            // Declared types never contain ';', '=' or '*/'.
            Hint::Type(t) => format!("{i}={}", t.replace(['*', ';', '='], "")),
            Hint::Param(p) => format!("{i}={p}"),
        })
        .collect();
    format!("{OPEN}{}*/ {sql}", parts.join(";"))
}

/// The hints at the start of `sql`, by column index.
pub(crate) fn decode(sql: &str) -> Vec<(usize, Hint)> {
    let Some(rest) = sql.strip_prefix(OPEN) else {
        return Vec::new();
    };
    let Some(end) = rest.find("*/") else {
        return Vec::new();
    };
    rest[..end]
        .split(';')
        .filter_map(|p| {
            let (i, h) = p.split_once('=')?;
            let i = i.parse().ok()?;
            Some(if h.starts_with('@') {
                (i, Hint::Param(h.to_string()))
            } else {
                (i, Hint::Type(h.to_string()))
            })
        })
        .collect()
}

/// The fixed type a hint names, if it is one the server knows.
pub(crate) fn fixed(h: &Hint) -> Option<SqlType> {
    match h {
        Hint::Type(t) => SqlType::parse_decl(t, true),
        Hint::Param(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let hints = vec![
            (0, Hint::Type("decimal(18,2)".into())),
            (2, Hint::Param("@P1".into())),
        ];
        let sql = encode("SELECT 1".into(), &hints);
        assert!(sql.ends_with("*/ SELECT 1"));
        assert_eq!(decode(&sql), hints);
        assert_eq!(decode("SELECT 1"), vec![]);
        assert_eq!(encode("SELECT 1".into(), &[]), "SELECT 1");
    }
}
