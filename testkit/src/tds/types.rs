//! SQL Server data types: parsing declared types (`DECIMAL(18,2)`, `NVARCHAR(MAX)`, …),
//! their names, and their TYPE_INFO on the wire (MS-TDS 2.2.5.4–2.2.5.6).

use std::fmt;

/// A length: `n` or `MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Len {
    N(u16),
    Max,
}

/// A SQL Server data type, as declared on a column or a parameter and as sent in
/// COLMETADATA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SqlType {
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    Real,
    Float,
    Bit,
    /// DECIMAL/NUMERIC(precision, scale).
    Decimal(u8, u8),
    Money,
    SmallMoney,
    /// NVARCHAR(n ≤ 4000 characters | MAX).
    NVarChar(Len),
    /// VARCHAR(n ≤ 8000 bytes | MAX), code page 1252.
    VarChar(Len),
    NChar(u16),
    Char(u16),
    /// VARBINARY(n ≤ 8000 | MAX).
    VarBinary(Len),
    Binary(u16),
    UniqueIdentifier,
    Date,
    /// TIME(scale).
    Time(u8),
    /// DATETIME2(scale).
    DateTime2(u8),
    /// DATETIMEOFFSET(scale).
    DateTimeOffset(u8),
    DateTime,
    SmallDateTime,
    Xml,
}

/// Collation sent with character types and in the login ENVCHANGE:
/// SQL_Latin1_General_CP1_CI_AS (LCID 0x0409, flags 0xD0, sort id 52), code page 1252.
pub(crate) const COLLATION: [u8; 5] = [0x09, 0x04, 0xD0, 0x00, 0x34];

fn args(decl: &str) -> Vec<String> {
    match (decl.find('('), decl.rfind(')')) {
        (Some(o), Some(c)) if c > o => decl[o + 1..c]
            .split(',')
            .map(|a| a.trim().to_ascii_uppercase())
            .collect(),
        _ => Vec::new(),
    }
}

fn arg_u32(a: &[String], i: usize) -> Option<Option<u32>> {
    match a.get(i) {
        None => Some(None),
        Some(s) if s == "MAX" => Some(Some(u32::MAX)),
        Some(s) => s.parse().ok().map(Some),
    }
}

impl SqlType {
    /// Parses a declared type (`decimal(18, 2)`, `NVARCHAR(MAX)`, `datetime2(3)`,
    /// `national character varying(10)`, SQLite's `INTEGER`/`TEXT`/`BLOB`). `in_cast`
    /// selects the default length of `CAST(x AS NVARCHAR)` (30) over that of a
    /// declaration (1). `None` for an unknown type.
    pub fn parse_decl(decl: &str, in_cast: bool) -> Option<SqlType> {
        let head = decl.split('(').next().unwrap_or_default();
        let name: String = head
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_ascii_uppercase();
        let name = name.trim_start_matches("SYS.").trim_start_matches("DBO.");
        let a = args(decl);
        let default_len = if in_cast { 30 } else { 1 };
        let len = |max: u32| -> Option<Len> {
            match arg_u32(&a, 0)? {
                None => Some(Len::N(default_len)),
                Some(n) if n > max => Some(Len::Max),
                Some(0) => None,
                Some(n) => Some(Len::N(n as u16)),
            }
        };
        let fixed = |max: u32| -> Option<u16> {
            match arg_u32(&a, 0)? {
                None => Some(default_len),
                Some(n) if n == 0 || n > max => None,
                Some(n) => Some(n as u16),
            }
        };
        let scale = || -> Option<u8> {
            match arg_u32(&a, 0)? {
                None => Some(7),
                Some(n) if n <= 7 => Some(n as u8),
                Some(_) => None,
            }
        };
        Some(match name {
            "TINYINT" => SqlType::TinyInt,
            "SMALLINT" => SqlType::SmallInt,
            "INT" | "INTEGER" => SqlType::Int,
            "BIGINT" => SqlType::BigInt,
            "REAL" => SqlType::Real,
            "FLOAT" => match arg_u32(&a, 0)? {
                Some(n) if (1..=24).contains(&n) => SqlType::Real,
                Some(n) if n > 53 || n == 0 => return None,
                _ => SqlType::Float,
            },
            "DOUBLE" | "DOUBLE PRECISION" => SqlType::Float,
            "BIT" | "BOOLEAN" => SqlType::Bit,
            "DECIMAL" | "NUMERIC" | "DEC" => {
                let p = arg_u32(&a, 0)?.unwrap_or(18);
                let s = arg_u32(&a, 1)?.unwrap_or(0);
                if !(1..=38).contains(&p) || s > p {
                    return None;
                }
                SqlType::Decimal(p as u8, s as u8)
            }
            "MONEY" => SqlType::Money,
            "SMALLMONEY" => SqlType::SmallMoney,
            "NVARCHAR" | "NATIONAL CHARACTER VARYING" | "NATIONAL CHAR VARYING" => {
                SqlType::NVarChar(len(4000)?)
            }
            "VARCHAR" | "CHARACTER VARYING" | "CHAR VARYING" => SqlType::VarChar(len(8000)?),
            "NCHAR" | "NATIONAL CHARACTER" | "NATIONAL CHAR" => SqlType::NChar(fixed(4000)?),
            "CHAR" | "CHARACTER" => SqlType::Char(fixed(8000)?),
            "SYSNAME" => SqlType::NVarChar(Len::N(128)),
            // T-SQL's legacy TEXT/NTEXT and SQLite's TEXT (expressions) read as Unicode
            // text of any length.
            "NTEXT" | "TEXT" | "CLOB" => SqlType::NVarChar(Len::Max),
            "VARBINARY" | "BINARY VARYING" => SqlType::VarBinary(len(8000)?),
            "BINARY" => SqlType::Binary(fixed(8000)?),
            "IMAGE" | "BLOB" => SqlType::VarBinary(Len::Max),
            "ROWVERSION" | "TIMESTAMP" => SqlType::Binary(8),
            "UNIQUEIDENTIFIER" => SqlType::UniqueIdentifier,
            "DATE" => SqlType::Date,
            "TIME" => SqlType::Time(scale()?),
            "DATETIME2" => SqlType::DateTime2(scale()?),
            "DATETIMEOFFSET" => SqlType::DateTimeOffset(scale()?),
            "DATETIME" => SqlType::DateTime,
            "SMALLDATETIME" => SqlType::SmallDateTime,
            "XML" => SqlType::Xml,
            _ => return None,
        })
    }

    /// The type's name as SQL Server writes it in messages (`int`, `nvarchar`, …).
    pub fn name(&self) -> &'static str {
        match self {
            SqlType::TinyInt => "tinyint",
            SqlType::SmallInt => "smallint",
            SqlType::Int => "int",
            SqlType::BigInt => "bigint",
            SqlType::Real => "real",
            SqlType::Float => "float",
            SqlType::Bit => "bit",
            SqlType::Decimal(..) => "numeric",
            SqlType::Money => "money",
            SqlType::SmallMoney => "smallmoney",
            SqlType::NVarChar(_) => "nvarchar",
            SqlType::VarChar(_) => "varchar",
            SqlType::NChar(_) => "nchar",
            SqlType::Char(_) => "char",
            SqlType::VarBinary(_) => "varbinary",
            SqlType::Binary(_) => "binary",
            SqlType::UniqueIdentifier => "uniqueidentifier",
            SqlType::Date => "date",
            SqlType::Time(_) => "time",
            SqlType::DateTime2(_) => "datetime2",
            SqlType::DateTimeOffset(_) => "datetimeoffset",
            SqlType::DateTime => "datetime",
            SqlType::SmallDateTime => "smalldatetime",
            SqlType::Xml => "xml",
        }
    }

    /// The declared maximum length in characters (text) or bytes (binary), if bounded.
    pub fn max_len(&self) -> Option<usize> {
        match *self {
            SqlType::NVarChar(Len::N(n))
            | SqlType::VarChar(Len::N(n))
            | SqlType::VarBinary(Len::N(n))
            | SqlType::NChar(n)
            | SqlType::Char(n)
            | SqlType::Binary(n) => Some(n as usize),
            _ => None,
        }
    }

    /// Appends TYPE_INFO (the type byte and its length/precision/collation fields).
    pub fn type_info(&self, b: &mut Vec<u8>) {
        let len16 = |b: &mut Vec<u8>, l: Len, unit: u16| match l {
            Len::N(n) => b.extend_from_slice(&n.saturating_mul(unit).to_le_bytes()),
            Len::Max => b.extend_from_slice(&0xFFFFu16.to_le_bytes()),
        };
        match *self {
            SqlType::TinyInt => b.extend_from_slice(&[0x26, 1]),
            SqlType::SmallInt => b.extend_from_slice(&[0x26, 2]),
            SqlType::Int => b.extend_from_slice(&[0x26, 4]),
            SqlType::BigInt => b.extend_from_slice(&[0x26, 8]),
            SqlType::Real => b.extend_from_slice(&[0x6D, 4]),
            SqlType::Float => b.extend_from_slice(&[0x6D, 8]),
            SqlType::Bit => b.extend_from_slice(&[0x68, 1]),
            SqlType::Decimal(p, s) => b.extend_from_slice(&[0x6A, decimal_len(p), p, s]),
            SqlType::Money => b.extend_from_slice(&[0x6E, 8]),
            SqlType::SmallMoney => b.extend_from_slice(&[0x6E, 4]),
            SqlType::NVarChar(l) => {
                b.push(0xE7);
                len16(b, l, 2);
                b.extend_from_slice(&COLLATION);
            }
            SqlType::VarChar(l) => {
                b.push(0xA7);
                len16(b, l, 1);
                b.extend_from_slice(&COLLATION);
            }
            SqlType::NChar(n) => {
                b.push(0xEF);
                b.extend_from_slice(&(n * 2).to_le_bytes());
                b.extend_from_slice(&COLLATION);
            }
            SqlType::Char(n) => {
                b.push(0xAF);
                b.extend_from_slice(&n.to_le_bytes());
                b.extend_from_slice(&COLLATION);
            }
            SqlType::VarBinary(l) => {
                b.push(0xA5);
                len16(b, l, 1);
            }
            SqlType::Binary(n) => {
                b.push(0xAD);
                b.extend_from_slice(&n.to_le_bytes());
            }
            SqlType::UniqueIdentifier => b.extend_from_slice(&[0x24, 16]),
            SqlType::Date => b.push(0x28),
            SqlType::Time(s) => b.extend_from_slice(&[0x29, s]),
            SqlType::DateTime2(s) => b.extend_from_slice(&[0x2A, s]),
            SqlType::DateTimeOffset(s) => b.extend_from_slice(&[0x2B, s]),
            SqlType::DateTime => b.extend_from_slice(&[0x6F, 8]),
            SqlType::SmallDateTime => b.extend_from_slice(&[0x6F, 4]),
            SqlType::Xml => b.extend_from_slice(&[0xF1, 0]),
        }
    }
}

/// Byte length of a DECIMAL value on the wire (sign byte included) for a precision.
pub(crate) fn decimal_len(precision: u8) -> u8 {
    match precision {
        0..=9 => 5,
        10..=19 => 9,
        20..=28 => 13,
        _ => 17,
    }
}

/// Byte length of a TIME value on the wire for a scale.
pub(crate) fn time_len(scale: u8) -> usize {
    match scale {
        0..=2 => 3,
        3..=4 => 4,
        _ => 5,
    }
}

impl fmt::Display for SqlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = |l: &Len| match l {
            Len::N(n) => n.to_string(),
            Len::Max => "max".into(),
        };
        match self {
            SqlType::Decimal(p, s) => write!(f, "decimal({p},{s})"),
            SqlType::NVarChar(n) | SqlType::VarChar(n) | SqlType::VarBinary(n) => {
                write!(f, "{}({})", self.name(), l(n))
            }
            SqlType::NChar(n) | SqlType::Char(n) | SqlType::Binary(n) => {
                write!(f, "{}({n})", self.name())
            }
            SqlType::Time(s) | SqlType::DateTime2(s) | SqlType::DateTimeOffset(s) => {
                write!(f, "{}({s})", self.name())
            }
            other => f.write_str(other.name()),
        }
    }
}

/// Windows code page 1252 (the collation's code page) for 0x80–0x9F; other bytes are
/// Latin-1. Unassigned bytes map to themselves.
const CP1252_HIGH: [char; 32] = [
    '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8D}', 'Ž', '\u{8F}',
    '\u{90}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9D}', 'ž', 'Ÿ',
];

/// Decodes code page 1252 bytes.
pub(crate) fn cp1252_decode(b: &[u8]) -> String {
    b.iter()
        .map(|&c| match c {
            0x80..=0x9F => CP1252_HIGH[(c - 0x80) as usize],
            _ => c as char,
        })
        .collect()
}

/// Encodes text as code page 1252; characters it cannot represent become `?`, as
/// SQL Server does when it stores Unicode text in a VARCHAR.
pub(crate) fn cp1252_encode(s: &str) -> Vec<u8> {
    s.chars()
        .map(|ch| {
            let u = ch as u32;
            if u < 0x80 || (0xA0..=0xFF).contains(&u) {
                u as u8
            } else {
                CP1252_HIGH
                    .iter()
                    .position(|&c| c == ch)
                    .map(|i| 0x80 + i as u8)
                    .unwrap_or(b'?')
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_declarations() {
        assert_eq!(
            SqlType::parse_decl("decimal(18, 2)", false),
            Some(SqlType::Decimal(18, 2))
        );
        assert_eq!(
            SqlType::parse_decl("NUMERIC", false),
            Some(SqlType::Decimal(18, 0))
        );
        assert_eq!(
            SqlType::parse_decl("NVARCHAR(1073741823)", false),
            Some(SqlType::NVarChar(Len::Max))
        );
        assert_eq!(
            SqlType::parse_decl("nvarchar(max)", false),
            Some(SqlType::NVarChar(Len::Max))
        );
        assert_eq!(
            SqlType::parse_decl("VARCHAR", true),
            Some(SqlType::VarChar(Len::N(30)))
        );
        assert_eq!(
            SqlType::parse_decl("datetime2", false),
            Some(SqlType::DateTime2(7))
        );
        assert_eq!(
            SqlType::parse_decl("TIME(3)", false),
            Some(SqlType::Time(3))
        );
        assert_eq!(SqlType::parse_decl("float(24)", false), Some(SqlType::Real));
        assert_eq!(SqlType::parse_decl("decimal(39,0)", false), None);
        assert_eq!(SqlType::parse_decl("TIME(8)", false), None);
        assert_eq!(SqlType::parse_decl("geography", false), None);
    }

    #[test]
    fn cp1252_round_trips_what_it_can() {
        let s = "café €5 — ok";
        assert_eq!(cp1252_decode(&cp1252_encode(s)), s);
        assert_eq!(cp1252_encode("日本"), b"??");
    }
}
