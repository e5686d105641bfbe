//! A tokenizer for ADO.NET connection strings that follows tiberius' own rules (its
//! `ado_parser`), so a region can see which keys a string sets and drop the keys its
//! explicit `encryption` overrides before tiberius reads the rest.
//!
//! Rules: pairs are separated by `;` (empty pairs ignored); a key runs to the first single
//! `=` (`==` is a literal `=`), trimmed and lower-cased; a value is `'…'` or `"…"` (a
//! doubled quote embeds one), `{…}` (to the first `}`), or unquoted up to the next `;`
//! (trimmed). Only ASCII is accepted.

use std::ops::Range;

/// One `key=value` pair.
#[derive(Debug)]
pub(crate) struct Pair {
    /// The key, trimmed and lower-cased.
    pub(crate) key: String,
    /// The unquoted value.
    pub(crate) value: String,
    /// The pair's text in the input, without the separating `;`.
    pub(crate) span: Range<usize>,
}

/// The pairs of a connection string, in order.
#[derive(Debug)]
pub(crate) struct AdoString<'a> {
    input: &'a str,
    pub(crate) pairs: Vec<Pair>,
}

impl<'a> AdoString<'a> {
    /// Tokenizes `input`; the error is a short reason that never repeats the input.
    pub(crate) fn parse(input: &'a str) -> Result<Self, &'static str> {
        if !input.is_ascii() {
            return Err("it contains non-ASCII characters");
        }
        let b = input.as_bytes();
        let n = b.len();
        let mut i = 0;
        let mut pairs = Vec::new();
        while i < n {
            while i < n && (b[i] == b';' || b[i].is_ascii_whitespace()) {
                i += 1;
            }
            if i >= n {
                break;
            }
            let start = i;
            let mut key = String::new();
            loop {
                if i >= n || b[i] == b';' {
                    return Err("key-value pairs must be joined by a `=`");
                }
                if b[i] == b'=' {
                    if i + 1 < n && b[i + 1] == b'=' {
                        key.push('=');
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                key.push(b[i] as char);
                i += 1;
            }
            let key = key.trim().to_ascii_lowercase();
            if key.is_empty() {
                return Err("a key is empty");
            }
            while i < n && b[i].is_ascii_whitespace() {
                i += 1;
            }
            let value = if i < n && (b[i] == b'\'' || b[i] == b'"') {
                let quote = b[i];
                i += 1;
                let mut v = String::new();
                loop {
                    if i >= n {
                        return Err("a quoted value is not closed");
                    }
                    if b[i] == quote {
                        if i + 1 < n && b[i + 1] == quote {
                            v.push(quote as char);
                            i += 2;
                            continue;
                        }
                        i += 1;
                        break;
                    }
                    v.push(b[i] as char);
                    i += 1;
                }
                skip_trailing(b, &mut i)?;
                v
            } else if i < n && b[i] == b'{' {
                i += 1;
                let mut v = String::new();
                loop {
                    if i >= n {
                        return Err("a `{` value is not closed");
                    }
                    if b[i] == b'}' {
                        i += 1;
                        break;
                    }
                    v.push(b[i] as char);
                    i += 1;
                }
                skip_trailing(b, &mut i)?;
                v
            } else {
                let value_start = i;
                while i < n && b[i] != b';' {
                    i += 1;
                }
                input[value_start..i].trim_end().to_owned()
            };
            pairs.push(Pair {
                key,
                value,
                span: start..i,
            });
            if i < n && b[i] == b';' {
                i += 1;
            }
        }
        Ok(AdoString { input, pairs })
    }

    /// The value of the last pair with one of `keys` (lower-case), as ADO.NET reads it.
    pub(crate) fn get(&self, keys: &[&str]) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|p| keys.contains(&p.key.as_str()))
            .map(|p| p.value.as_str())
    }

    /// The string without the pairs whose key is in `drop` (lower-case).
    pub(crate) fn without(&self, drop: &[&str]) -> String {
        self.pairs
            .iter()
            .filter(|p| !drop.contains(&p.key.as_str()))
            .map(|p| &self.input[p.span.clone()])
            .collect::<Vec<_>>()
            .join(";")
    }

    /// The non-empty values of secret keys (`password`, `pwd`), to scrub from messages.
    pub(crate) fn secrets(&self) -> impl Iterator<Item = &str> {
        self.pairs
            .iter()
            .filter(|p| matches!(p.key.as_str(), "password" | "pwd") && !p.value.is_empty())
            .map(|p| p.value.as_str())
    }
}

fn skip_trailing(b: &[u8], i: &mut usize) -> Result<(), &'static str> {
    while *i < b.len() && b[*i] != b';' {
        if !b[*i].is_ascii_whitespace() {
            return Err("unexpected characters after a quoted value");
        }
        *i += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizes_like_tiberius() {
        let s = AdoString::parse(
            " Server=tcp:h,1433; USER ID = sa ;Password='p@ss;w=rd''x';k={a;b} ;;e==q=1;",
        )
        .unwrap();
        let got: Vec<_> = s
            .pairs
            .iter()
            .map(|p| (p.key.as_str(), p.value.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("server", "tcp:h,1433"),
                ("user id", "sa"),
                ("password", "p@ss;w=rd'x"),
                ("k", "a;b"),
                ("e=q", "1"),
            ]
        );
        assert_eq!(s.get(&["uid", "user id"]), Some("sa"));
        assert_eq!(
            s.without(&["password", "k"]),
            "Server=tcp:h,1433;USER ID = sa ;e==q=1"
        );
        assert_eq!(s.secrets().collect::<Vec<_>>(), ["p@ss;w=rd'x"]);
    }

    #[test]
    fn rejects_what_tiberius_rejects() {
        for bad in ["a", "=v", "p='x", "p={x", "p='x'y", "p=é"] {
            assert!(AdoString::parse(bad).is_err(), "{bad}");
            assert!(tiberius::Config::from_ado_string(bad).is_err(), "{bad}");
        }
    }
}
