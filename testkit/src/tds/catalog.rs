//! The system catalog and server metadata clients probe on connect (SQLAlchemy, ODBC
//! tools): `sys.tables`, `sys.objects`, `sys.views`, `sys.schemas`, `sys.columns`,
//! `sys.databases`, `sys.system_views`, `sys.dm_exec_sessions`,
//! `sys.extended_properties`, `INFORMATION_SCHEMA.TABLES` / `COLUMNS`,
//! `fn_listextendedproperty(...)`, `SERVERPROPERTY(...)`, `SCHEMA_NAME()`,
//! `SCHEMA_ID()`, `@@OPTIONS`, `@@MAX_PRECISION`, `@@LANGUAGE`. Each is translated
//! into a SQLite subquery or literal over `sqlite_master`, answering as SQL Server 2022
//! (16.0) would for a database whose objects all live in schema `dbo`.

use super::translate::{quote_str, Ctx, Tok};

/// The version the server reports (LOGINACK 16.0.4135; SERVERPROPERTY('ProductVersion')).
pub(crate) const PRODUCT_VERSION: &str = "16.0.4135.4";

/// User tables and views in `sqlite_master`, as SQL Server objects.
fn objects(types: &str) -> String {
    format!(
        "SELECT name, rowid AS object_id, NULL AS principal_id, 1 AS schema_id, 0 AS parent_object_id, \
         CASE type WHEN 'view' THEN 'V' ELSE 'U' END AS type, \
         CASE type WHEN 'view' THEN 'VIEW' ELSE 'USER_TABLE' END AS type_desc, \
         '2024-01-01 00:00:00.000' AS create_date, '2024-01-01 00:00:00.000' AS modify_date, \
         0 AS is_ms_shipped, 0 AS is_published, 0 AS is_schema_published \
         FROM sqlite_master WHERE type IN ({types}) AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
    )
}

/// The SQLite subquery for `sys.<name>` / `INFORMATION_SCHEMA.<name>`, if known.
fn view(schema: &str, name: &str, ctx: &Ctx) -> Option<String> {
    let db = quote_str(&ctx.database);
    Some(match (schema, name) {
        ("SYS", "TABLES") => objects("'table'"),
        ("SYS", "VIEWS") => objects("'view'"),
        ("SYS", "OBJECTS" | "ALL_OBJECTS") => objects("'table','view'"),
        ("SYS", "SCHEMAS") => "SELECT 'dbo' AS name, 1 AS schema_id, 1 AS principal_id \
             UNION ALL SELECT 'guest', 2, 2 UNION ALL SELECT 'INFORMATION_SCHEMA', 3, 3 \
             UNION ALL SELECT 'sys', 4, 4"
            .into(),
        ("SYS", "COLUMNS" | "ALL_COLUMNS") => "SELECT m.rowid AS object_id, p.name AS name, \
             p.cid + 1 AS column_id, tk_type_info(p.type, 'system_type_id') AS system_type_id, \
             tk_type_info(p.type, 'system_type_id') AS user_type_id, \
             tk_type_info(p.type, 'max_length') AS max_length, \
             tk_type_info(p.type, 'precision') AS precision, tk_type_info(p.type, 'scale') AS scale, \
             tk_type_info(p.type, 'collation_name') AS collation_name, \
             CASE WHEN p.\"notnull\" = 0 AND p.pk = 0 THEN 1 ELSE 0 END AS is_nullable, \
             CASE WHEN p.pk = 1 AND upper(p.type) = 'INTEGER' THEN 1 ELSE 0 END AS is_identity, \
             0 AS is_computed, 0 AS default_object_id \
             FROM sqlite_master m, pragma_table_info(m.name) p \
             WHERE m.type IN ('table','view') AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
            .into(),
        ("SYS", "DATABASES") => format!(
            "SELECT 'master' AS name, 1 AS database_id, 0 AS is_read_only, 'ONLINE' AS state_desc, 160 AS compatibility_level \
             UNION ALL SELECT 'tempdb', 2, 0, 'ONLINE', 160 UNION ALL SELECT 'model', 3, 0, 'ONLINE', 160 \
             UNION ALL SELECT 'msdb', 4, 0, 'ONLINE', 160 UNION ALL SELECT {db}, 5, {}, 'ONLINE', 160",
            ctx.read_only as i32
        ),
        ("SYS", "SYSTEM_VIEWS") => {
            let names = [
                "all_columns", "all_objects", "columns", "databases", "dm_exec_sessions",
                "extended_properties", "objects", "schemas", "system_views", "tables", "views",
            ];
            names
                .iter()
                .enumerate()
                .map(|(i, n)| format!("SELECT '{n}' AS name, {} AS object_id, 4 AS schema_id, 'V' AS type, 'VIEW' AS type_desc", -(i as i64) - 100))
                .collect::<Vec<_>>()
                .join(" UNION ALL ")
        }
        ("SYS", "DM_EXEC_SESSIONS") => format!(
            "SELECT {} AS session_id, {} AS transaction_isolation_level, 'running' AS status, \
             5 AS database_id, 1 AS is_user_process, {} AS open_transaction_count, \
             {} AS lock_timeout",
            ctx.spid, ctx.options.isolation, ctx.trancount, ctx.options.lock_timeout
        ),
        ("SYS", "EXTENDED_PROPERTIES") => "SELECT NULL AS class, NULL AS class_desc, NULL AS major_id, \
             NULL AS minor_id, NULL AS name, NULL AS value WHERE 0"
            .into(),
        ("INFORMATION_SCHEMA", "TABLES") => format!(
            "SELECT {db} AS TABLE_CATALOG, 'dbo' AS TABLE_SCHEMA, name AS TABLE_NAME, \
             CASE type WHEN 'view' THEN 'VIEW' ELSE 'BASE TABLE' END AS TABLE_TYPE \
             FROM sqlite_master WHERE type IN ('table','view') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
        ),
        ("INFORMATION_SCHEMA", "COLUMNS") => format!(
            "SELECT {db} AS TABLE_CATALOG, 'dbo' AS TABLE_SCHEMA, m.name AS TABLE_NAME, \
             p.name AS COLUMN_NAME, p.cid + 1 AS ORDINAL_POSITION, p.dflt_value AS COLUMN_DEFAULT, \
             CASE WHEN p.\"notnull\" = 0 AND p.pk = 0 THEN 'YES' ELSE 'NO' END AS IS_NULLABLE, \
             tk_type_info(p.type, 'data_type') AS DATA_TYPE, \
             tk_type_info(p.type, 'character_maximum_length') AS CHARACTER_MAXIMUM_LENGTH, \
             tk_type_info(p.type, 'character_octet_length') AS CHARACTER_OCTET_LENGTH, \
             tk_type_info(p.type, 'numeric_precision') AS NUMERIC_PRECISION, \
             tk_type_info(p.type, 'numeric_scale') AS NUMERIC_SCALE, \
             tk_type_info(p.type, 'datetime_precision') AS DATETIME_PRECISION, \
             tk_type_info(p.type, 'collation_name') AS COLLATION_NAME \
             FROM sqlite_master m, pragma_table_info(m.name) p \
             WHERE m.type IN ('table','view') AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
        ),
        _ => return None,
    })
}

fn word(t: Option<&Tok>) -> Option<String> {
    t.and_then(|t| t.ident_name())
        .map(|w| w.to_ascii_uppercase())
}

/// Words after a table reference that are not its alias.
const NOT_ALIAS: &[&str] = &[
    "WHERE",
    "JOIN",
    "INNER",
    "LEFT",
    "RIGHT",
    "FULL",
    "CROSS",
    "OUTER",
    "ON",
    "GROUP",
    "ORDER",
    "UNION",
    "EXCEPT",
    "INTERSECT",
    "WITH",
    "HAVING",
    "OPTION",
    "FOR",
    "AS",
];

/// A catalog reference at `toks[i]` (`[db.]sys.x`, `INFORMATION_SCHEMA.x`,
/// `fn_listextendedproperty(...)`): the SQLite text and the index of its last token.
/// `sys.tables.name`-style column references become `tables.name`.
pub(crate) fn rewrite(toks: &[Tok], i: usize, ctx: &Ctx) -> Option<(String, usize)> {
    let dot = |j: usize| toks.get(j).is_some_and(|t| t.is_punct("."));
    let mut j = i;
    let first = word(toks.get(j))?;
    // master.sys.x, tempdb.sys.x, <db>.sys.x
    if dot(j + 1)
        && matches!(
            word(toks.get(j + 2)).as_deref(),
            Some("SYS" | "INFORMATION_SCHEMA")
        )
        && first != "SYS"
        && first != "INFORMATION_SCHEMA"
    {
        j += 2;
    }
    let schema = word(toks.get(j))?;
    if first == "FN_LISTEXTENDEDPROPERTY" && toks.get(i + 1).is_some_and(|t| t.is_punct("(")) {
        let close = super::translate::matching_paren(toks, i + 1)?;
        let alias = if has_alias(toks, close + 1) {
            ""
        } else {
            " AS fn_listextendedproperty"
        };
        return Some((
            format!(
                "(SELECT NULL AS objtype, NULL AS objname, NULL AS name, NULL AS value WHERE 0){alias}"
            ),
            close,
        ));
    }
    if !matches!(schema.as_str(), "SYS" | "INFORMATION_SCHEMA") || !dot(j + 1) {
        return None;
    }
    let name = word(toks.get(j + 2))?;
    let sql = view(&schema, &name, ctx)?;
    let lower = name.to_ascii_lowercase();
    if dot(j + 3) {
        // A qualified column: sys.tables.name → tables.name
        return Some((lower, j + 2));
    }
    let alias = if has_alias(toks, j + 3) {
        String::new()
    } else {
        format!(" AS {lower}")
    };
    Some((format!("({sql}){alias}"), j + 2))
}

fn has_alias(toks: &[Tok], at: usize) -> bool {
    match toks.get(at) {
        Some(Tok::Ident(_)) => true,
        Some(t @ Tok::Word(_)) => {
            let k = t.kw().unwrap_or_default();
            k == "AS" || !NOT_ALIAS.contains(&k.as_str())
        }
        _ => false,
    }
}

/// A metadata function or variable at `toks[i]`: the literal and its last token index.
pub(crate) fn builtin(toks: &[Tok], i: usize, ctx: &Ctx) -> Option<(String, usize)> {
    let up = word(toks.get(i))?;
    let call = toks.get(i + 1).is_some_and(|t| t.is_punct("("));
    let close = if call {
        super::translate::matching_paren(toks, i + 1)
    } else {
        None
    };
    match up.as_str() {
        "@@OPTIONS" => Some((ctx.options.bits.to_string(), i)),
        "@@MAX_PRECISION" => Some(("38".into(), i)),
        "@@LANGUAGE" => Some(("'us_english'".into(), i)),
        "@@LOCK_TIMEOUT" => Some((ctx.options.lock_timeout.to_string(), i)),
        "@@TEXTSIZE" => Some(("2147483647".into(), i)),
        "SCHEMA_NAME" | "CURRENT_SCHEMA" if call => Some(("'dbo'".into(), close?)),
        "SCHEMA_ID" if call => Some(("1".into(), close?)),
        "ORIGINAL_DB_NAME" if call => Some((quote_str(&ctx.database), close?)),
        "SERVERPROPERTY" if call => {
            let prop = match toks.get(i + 2) {
                Some(Tok::Str(s)) => s.to_ascii_lowercase(),
                _ => return None,
            };
            let v = match prop.as_str() {
                "productversion" => quote_str(PRODUCT_VERSION),
                "productmajorversion" => "'16'".into(),
                "productminorversion" => "'0'".into(),
                "productbuild" => "'4135'".into(),
                "productlevel" => "'RTM'".into(),
                "edition" => "'Developer Edition (64-bit)'".into(),
                "editionid" => "-2117995310".into(),
                "engineedition" => "3".into(),
                "servername" | "machinename" => quote_str(&ctx.server),
                "instancename" => "NULL".into(),
                "collation" => "'SQL_Latin1_General_CP1_CI_AS'".into(),
                "sqlcharset" => "1".into(),
                "lcid" => "1033".into(),
                "ishadrenabled"
                | "isclustered"
                | "isfulltextinstalled"
                | "isintegratedsecurityonly"
                | "issingleuser"
                | "isxtpsupported" => "0".into(),
                _ => "NULL".into(),
            };
            Some((v, close?))
        }
        _ => None,
    }
}

/// `sp_datatype_info` / `sp_datatype_info_100` rows (what ODBC's SQLGetTypeInfo runs):
/// type name, ODBC type, column size, literal prefix and suffix, create params,
/// case sensitive, searchable, unsigned, money, minimum and maximum scale, SQL data
/// type, datetime subcode, radix.
#[allow(clippy::type_complexity)]
const DATATYPES: &[(
    &str,
    i32,
    i64,
    &str,
    &str,
    &str,
    u8,
    u8,
    &str,
    u8,
    &str,
    &str,
    i32,
    &str,
    &str,
)] = &[
    (
        "bigint", -5, 19, "", "", "", 0, 2, "0", 0, "0", "0", -5, "", "10",
    ),
    (
        "binary", -2, 8000, "0x", "", "length", 0, 2, "", 0, "", "", -2, "", "",
    ),
    ("bit", -7, 1, "", "", "", 0, 2, "", 0, "0", "0", -7, "", ""),
    (
        "char", 1, 8000, "'", "'", "length", 0, 3, "", 0, "", "", 1, "", "",
    ),
    (
        "date", 91, 10, "'", "'", "", 0, 3, "", 0, "", "", 9, "1", "",
    ),
    (
        "datetime", 93, 23, "'", "'", "", 0, 3, "", 0, "3", "3", 9, "3", "",
    ),
    (
        "datetime2",
        93,
        27,
        "'",
        "'",
        "scale",
        0,
        3,
        "",
        0,
        "0",
        "7",
        9,
        "3",
        "",
    ),
    (
        "datetimeoffset",
        -155,
        34,
        "'",
        "'",
        "scale",
        0,
        3,
        "",
        0,
        "0",
        "7",
        -155,
        "0",
        "",
    ),
    (
        "decimal",
        3,
        38,
        "",
        "",
        "precision,scale",
        0,
        2,
        "0",
        0,
        "0",
        "38",
        3,
        "",
        "10",
    ),
    ("float", 6, 53, "", "", "", 0, 2, "0", 0, "", "", 6, "", "2"),
    (
        "image",
        -4,
        2_147_483_647,
        "0x",
        "",
        "",
        0,
        0,
        "",
        0,
        "",
        "",
        -4,
        "",
        "",
    ),
    (
        "int", 4, 10, "", "", "", 0, 2, "0", 0, "0", "0", 4, "", "10",
    ),
    (
        "money", 3, 19, "$", "", "", 0, 2, "0", 1, "4", "4", 3, "", "10",
    ),
    (
        "nchar", -8, 4000, "N'", "'", "length", 0, 3, "", 0, "", "", -8, "", "",
    ),
    (
        "ntext",
        -10,
        1_073_741_823,
        "N'",
        "'",
        "",
        0,
        1,
        "",
        0,
        "",
        "",
        -10,
        "",
        "",
    ),
    (
        "numeric",
        2,
        38,
        "",
        "",
        "precision,scale",
        0,
        2,
        "0",
        0,
        "0",
        "38",
        2,
        "",
        "10",
    ),
    (
        "nvarchar",
        -9,
        4000,
        "N'",
        "'",
        "max length",
        0,
        3,
        "",
        0,
        "",
        "",
        -9,
        "",
        "",
    ),
    ("real", 7, 24, "", "", "", 0, 2, "0", 0, "", "", 7, "", "2"),
    (
        "smalldatetime",
        93,
        16,
        "'",
        "'",
        "",
        0,
        3,
        "",
        0,
        "0",
        "0",
        9,
        "3",
        "",
    ),
    (
        "smallint", 5, 5, "", "", "", 0, 2, "0", 0, "0", "0", 5, "", "10",
    ),
    (
        "smallmoney",
        3,
        10,
        "$",
        "",
        "",
        0,
        2,
        "0",
        1,
        "4",
        "4",
        3,
        "",
        "10",
    ),
    (
        "sysname", -9, 128, "N'", "'", "", 0, 3, "", 0, "", "", -9, "", "",
    ),
    (
        "text",
        -1,
        2_147_483_647,
        "'",
        "'",
        "",
        0,
        1,
        "",
        0,
        "",
        "",
        -1,
        "",
        "",
    ),
    (
        "time", -154, 16, "'", "'", "scale", 0, 3, "", 0, "0", "7", -154, "0", "",
    ),
    (
        "tinyint", -6, 3, "", "", "", 0, 2, "1", 0, "0", "0", -6, "", "10",
    ),
    (
        "uniqueidentifier",
        -11,
        36,
        "'",
        "'",
        "",
        0,
        2,
        "",
        0,
        "",
        "",
        -11,
        "",
        "",
    ),
    (
        "varbinary",
        -3,
        8000,
        "0x",
        "",
        "max length",
        0,
        2,
        "",
        0,
        "",
        "",
        -3,
        "",
        "",
    ),
    (
        "varchar",
        12,
        8000,
        "'",
        "'",
        "max length",
        0,
        3,
        "",
        0,
        "",
        "",
        12,
        "",
        "",
    ),
    (
        "xml", -152, 0, "N'", "'", "", 0, 0, "", 0, "", "", -152, "", "",
    ),
];

/// `[EXEC] sp_datatype_info[_100] [type [, odbc_version]]`: the SELECT answering it, or
/// `None` if the statement is something else.
pub(crate) fn datatype_info(toks: &[Tok]) -> Option<String> {
    let mut i = 0;
    if toks
        .first()
        .is_some_and(|t| t.is_kw("EXEC") || t.is_kw("EXECUTE"))
    {
        i = 1;
    }
    while toks.get(i + 1).is_some_and(|t| t.is_punct(".")) {
        i += 2;
    }
    let name = word(toks.get(i))?;
    if name != "SP_DATATYPE_INFO" && name != "SP_DATATYPE_INFO_100" {
        return None;
    }
    let mut filter: Option<i64> = None;
    match (toks.get(i + 1), toks.get(i + 2)) {
        (Some(Tok::Num(n)), _) => filter = n.parse().ok(),
        (Some(t), Some(Tok::Num(n))) if t.is_punct("-") => {
            filter = n.parse::<i64>().ok().map(|v| -v)
        }
        _ => {}
    }
    let opt = |s: &str| {
        if s.is_empty() {
            "NULL".to_string()
        } else {
            quote_str(s)
        }
    };
    let num = |s: &str| {
        if s.is_empty() {
            "NULL".to_string()
        } else {
            s.to_string()
        }
    };
    let rows: Vec<String> = DATATYPES
        .iter()
        .filter(|r| filter.is_none_or(|f| f == 0 || f == r.1 as i64))
        .map(|r| {
            format!(
                "SELECT {} AS TYPE_NAME, {} AS DATA_TYPE, {} AS PRECISION, {} AS LITERAL_PREFIX, \
                 {} AS LITERAL_SUFFIX, {} AS CREATE_PARAMS, 1 AS NULLABLE, {} AS CASE_SENSITIVE, \
                 {} AS SEARCHABLE, {} AS UNSIGNED_ATTRIBUTE, {} AS MONEY, 0 AS AUTO_INCREMENT, \
                 {} AS LOCAL_TYPE_NAME, {} AS MINIMUM_SCALE, {} AS MAXIMUM_SCALE, {} AS SQL_DATA_TYPE, \
                 {} AS SQL_DATETIME_SUB, {} AS NUM_PREC_RADIX, NULL AS INTERVAL_PRECISION, 0 AS USERTYPE",
                quote_str(r.0), r.1, r.2, opt(r.3), opt(r.4), opt(r.5), r.6, r.7, num(r.8), r.9,
                quote_str(r.0), num(r.10), num(r.11), r.12, num(r.13), num(r.14)
            )
        })
        .collect();
    if rows.is_empty() {
        return Some(
            "SELECT NULL AS TYPE_NAME, NULL AS DATA_TYPE, NULL AS PRECISION WHERE 0".into(),
        );
    }
    Some(format!(
        "SELECT * FROM ({}) ORDER BY DATA_TYPE, TYPE_NAME",
        rows.join(" UNION ALL ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tds::translate::tokenize;

    fn ctx() -> Ctx {
        Ctx {
            version: String::new(),
            server: "srv".into(),
            database: "db".into(),
            spid: 52,
            trancount: 0,
            read_only: false,
            options: Default::default(),
        }
    }

    #[test]
    fn catalog_names_become_subqueries() {
        let t = tokenize("sys.tables t").unwrap();
        let (sql, end) = rewrite(&t, 0, &ctx()).unwrap();
        assert!(sql.starts_with("(SELECT name"));
        assert!(!sql.ends_with("AS tables"));
        assert_eq!(end, 2);
        let t = tokenize("INFORMATION_SCHEMA.TABLES WHERE").unwrap();
        assert!(rewrite(&t, 0, &ctx()).unwrap().0.ends_with(" AS tables"));
        let t = tokenize("master.sys.databases").unwrap();
        assert_eq!(rewrite(&t, 0, &ctx()).unwrap().1, 4);
        let t = tokenize("sys.tables.name").unwrap();
        assert_eq!(rewrite(&t, 0, &ctx()).unwrap(), ("tables".into(), 2));
        let t = tokenize("sys.nope").unwrap();
        assert!(rewrite(&t, 0, &ctx()).is_none());
    }

    #[test]
    fn server_properties() {
        let t = tokenize("SERVERPROPERTY('ProductVersion')").unwrap();
        assert_eq!(builtin(&t, 0, &ctx()).unwrap(), ("'16.0.4135.4'".into(), 3));
        let t = tokenize("SERVERPROPERTY('EngineEdition')").unwrap();
        assert_eq!(builtin(&t, 0, &ctx()).unwrap().0, "3");
        let t = tokenize("schema_name()").unwrap();
        assert_eq!(builtin(&t, 0, &ctx()).unwrap(), ("'dbo'".into(), 2));
    }
}
