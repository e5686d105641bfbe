//! The environment overlay: `MSSQL_RESILIENCE__<SECTION>__<KEY>` variables edit the TOML
//! table before it is deserialized. The rules are in the [module docs](super).

use std::cmp::Ordering;

use toml::{Table, Value};

use super::util::raw;
use crate::error::ConfigError;

/// The prefix of overlay variables.
pub const ENV_PREFIX: &str = "MSSQL_RESILIENCE__";

/// Keys whose values are text: an environment value for them is never read as a number or
/// a boolean (a password `0123`, a database `2024`, a region `1`).
const TEXT_KEYS: &[&str] = &[
    "name",
    "connection_string",
    "host",
    "instance_name",
    "database",
    "user",
    "password",
    "application_name",
];

/// One applied variable: the dotted path it set (`regions[0].password`) and its name.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    pub(crate) path: String,
    pub(crate) var: String,
}

/// Applies the overlay variables among `vars` to `table`, in order of their names (indices
/// compared as numbers), and returns what each set.
pub(crate) fn overlay(
    table: &mut Table,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<Origin>, ConfigError> {
    let mut selected: Vec<(Vec<String>, String, String)> = Vec::new();
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let segments: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if segments.len() < 2 || segments.iter().any(|s| s.is_empty()) {
            return Err(ConfigError::new(
                name.clone(),
                raw(rest),
                "must be `MSSQL_RESILIENCE__<SECTION>__<KEY>` (or `..._REGIONS__<INDEX>__<KEY>`)",
            ));
        }
        selected.push((segments, name, value));
    }
    selected.sort_by(|a, b| compare_paths(&a.0, &b.0));

    let mut root = Value::Table(std::mem::take(table));
    let mut origins = Vec::with_capacity(selected.len());
    let mut result = Ok(());
    for (segments, var, text) in selected {
        let key = segments.last().map(String::as_str).unwrap_or_default();
        let value = typed(key, text);
        let mut path = String::new();
        if let Err(e) = set(&mut root, &segments, value, &mut path, &var) {
            result = Err(e);
            break;
        }
        origins.push(Origin { path, var });
    }
    if let Value::Table(t) = root {
        *table = t;
    }
    result.map(|()| origins)
}

/// Compares two variable paths segment by segment, numbers as numbers.
fn compare_paths(a: &[String], b: &[String]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let order = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => x.cmp(y),
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

/// The TOML value for an environment value: an integer, float or boolean when it looks
/// like one (unless `key` is text), else a string.
fn typed(key: &str, text: String) -> Value {
    if TEXT_KEYS.contains(&key) {
        return Value::String(text);
    }
    let t = text.trim();
    if t.eq_ignore_ascii_case("true") {
        return Value::Boolean(true);
    }
    if t.eq_ignore_ascii_case("false") {
        return Value::Boolean(false);
    }
    let numeric = !t.is_empty()
        && t.bytes().any(|b| b.is_ascii_digit())
        && t.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'));
    if numeric {
        if let Ok(n) = t.parse::<i64>() {
            return Value::Integer(n);
        }
        if let Ok(f) = t.parse::<f64>() {
            return Value::Float(f);
        }
    }
    Value::String(text)
}

/// Sets `segments` under `node` to `value`, creating tables (and array entries at index
/// `len`) on the way. `path` accumulates the dotted path for messages.
fn set(
    node: &mut Value,
    segments: &[String],
    value: Value,
    path: &mut String,
    var: &str,
) -> Result<(), ConfigError> {
    let (segment, rest) = segments.split_first().expect("at least one segment");
    match node {
        Value::Table(table) => {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(segment);
            if rest.is_empty() {
                table.insert(segment.clone(), value);
                return Ok(());
            }
            let next_is_index = rest[0].bytes().all(|b| b.is_ascii_digit());
            let child = table.entry(segment.clone()).or_insert_with(|| {
                if next_is_index {
                    Value::Array(Vec::new())
                } else {
                    Value::Table(Table::new())
                }
            });
            set(child, rest, value, path, var)
        }
        Value::Array(items) => {
            let Ok(index) = segment.parse::<usize>() else {
                return Err(ConfigError::new(
                    var.to_owned(),
                    raw(segment.as_str()),
                    format!("`{path}` is a list: expected an index (0, 1, …) here"),
                ));
            };
            if index > items.len() {
                return Err(ConfigError::new(
                    var.to_owned(),
                    index,
                    format!(
                        "skips an index: `{path}` has {} entr{}, so the next new one is {}",
                        items.len(),
                        if items.len() == 1 { "y" } else { "ies" },
                        items.len()
                    ),
                ));
            }
            path.push_str(&format!("[{index}]"));
            if rest.is_empty() {
                return Err(ConfigError::new(
                    var.to_owned(),
                    index,
                    format!("names the entry `{path}`, not a key in it: add `__<KEY>`"),
                ));
            }
            if index == items.len() {
                items.push(Value::Table(Table::new()));
            }
            set(&mut items[index], rest, value, path, var)
        }
        other => Err(ConfigError::new(
            var.to_owned(),
            raw(segment.as_str()),
            format!(
                "`{path}` is not a table (its value is of type {}), so it has no key `{segment}`",
                other.type_str()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn values_are_typed_unless_text() {
        assert_eq!(typed("max_attempts", "5".into()), Value::Integer(5));
        assert_eq!(typed("ratio", "0.5".into()), Value::Float(0.5));
        assert_eq!(typed("ratio", "1e-3".into()), Value::Float(0.001));
        assert_eq!(typed("x", "TRUE".into()), Value::Boolean(true));
        assert_eq!(typed("total", "2s".into()), Value::String("2s".into()));
        assert_eq!(typed("jitter", "none".into()), Value::String("none".into()));
        assert_eq!(typed("x", "inf".into()), Value::String("inf".into()));
        assert_eq!(typed("x", "1.2.3".into()), Value::String("1.2.3".into()));
        assert_eq!(
            typed("password", "0123".into()),
            Value::String("0123".into())
        );
        assert_eq!(
            typed("database", "2024".into()),
            Value::String("2024".into())
        );
    }

    #[test]
    fn indices_sort_numerically() {
        let mut table = Table::new();
        let list: Vec<_> = (0..12)
            .rev()
            .map(|i| {
                (
                    format!("MSSQL_RESILIENCE__REGIONS__{i}__NAME"),
                    format!("r{i}"),
                )
            })
            .collect();
        let origins = overlay(&mut table, list).unwrap();
        assert_eq!(origins[0].path, "regions[0].name");
        assert_eq!(origins[11].path, "regions[11].name");
        assert_eq!(table["regions"].as_array().unwrap().len(), 12);
    }

    #[test]
    fn malformed_names_are_errors() {
        for name in [
            "MSSQL_RESILIENCE__RETRY",
            "MSSQL_RESILIENCE__",
            "MSSQL_RESILIENCE__RETRY__",
            "MSSQL_RESILIENCE____X",
        ] {
            let e = overlay(&mut Table::new(), vars(&[(name, "1")])).unwrap_err();
            assert_eq!(e.field(), name);
        }
        let e = overlay(
            &mut Table::new(),
            vars(&[("MSSQL_RESILIENCE__REGIONS__0", "x")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("not a key in it"), "{e}");
        let mut table: Table = "retry = 3".parse().unwrap();
        let e = overlay(&mut table, vars(&[("MSSQL_RESILIENCE__RETRY__BASE", "1s")])).unwrap_err();
        assert!(
            e.to_string()
                .contains("`retry` is not a table (its value is of type integer)"),
            "{e}"
        );
        let e = overlay(
            &mut Table::new(),
            vars(&[
                ("MSSQL_RESILIENCE__REGIONS__0__NAME", "a"),
                ("MSSQL_RESILIENCE__REGIONS__X__NAME", "b"),
            ]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("expected an index"), "{e}");
    }

    #[test]
    fn other_variables_are_ignored() {
        let mut table = Table::new();
        let origins = overlay(
            &mut table,
            vars(&[
                ("PATH", "/bin"),
                ("MSSQL_RESILIENCE_CONFIG", "x.toml"),
                ("MSSQL_RESILIENCEX__A__B", "1"),
            ]),
        )
        .unwrap();
        assert!(origins.is_empty() && table.is_empty());
    }
}
