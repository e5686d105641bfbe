//! [`Secret`]: a string that never prints.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// What a [`Secret`] prints and serializes as.
pub const REDACTED: &str = "***";

/// A password or a connection string: `Debug`, `Display` and `Serialize` all write `***`.
///
/// Read the value with [`Secret::expose`], only where it is handed to the driver.
///
/// Deserializes from any string, and from an integer, float or boolean (stringified),
/// because a value that came from an environment variable may look like a number. In a
/// TOML file, quote such a password (`password = "0123"`): an unquoted `0123` is not a
/// valid TOML integer, and `1e3` would become `"1000"`.
///
/// # Why `Serialize` writes `***`
///
/// A configuration is serialized to show the effective settings (a startup log line, a
/// `/config` debug endpoint, a support bundle). Writing the value there would leak it, so
/// a serialized configuration is for reading, not for loading back: its secrets are
/// `***`.
///
/// ```
/// use mssql_resilience::config::Secret;
///
/// let password = Secret::new("hunter2");
/// assert_eq!(format!("{password} {password:?}"), "*** ***");
/// assert_eq!(password.expose(), "hunter2");
/// ```
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself. Hand it to the driver; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when the value is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    /// Writes `***`, never the value (see the type's docs).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SecretVisitor)
    }
}

struct SecretVisitor;

impl Visitor<'_> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
        Ok(Secret(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Secret, E> {
        Ok(Secret(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Secret, E> {
        Ok(Secret(v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Secret, E> {
        Ok(Secret(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Secret, E> {
        Ok(Secret(v.to_string()))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Secret, E> {
        Ok(Secret(v.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, Serialize)]
    struct Holder {
        password: Secret,
    }

    #[test]
    fn never_prints_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{s:#?}"), "***");
        assert_eq!(format!("{:?}", Some(&s)), "Some(***)");
        assert_eq!(s.expose(), "hunter2");
        assert_eq!(s, Secret::from("hunter2"));
        assert!(!s.is_empty());
    }

    #[test]
    fn serializes_redacted() {
        let h = Holder {
            password: Secret::new("hunter2"),
        };
        let text = toml::to_string(&h).unwrap();
        assert_eq!(text, "password = \"***\"\n");
        assert_eq!(serde_json::to_string(&h.password).unwrap(), "\"***\"");
    }

    #[test]
    fn deserializes_strings_and_stringified_scalars() {
        let p = |text: &str| toml::from_str::<Holder>(text).map(|h| h.password);
        assert_eq!(p("password = 'p@ss;w=rd'").unwrap().expose(), "p@ss;w=rd");
        assert_eq!(p("password = \"0123\"").unwrap().expose(), "0123");
        assert_eq!(p("password = 1234").unwrap().expose(), "1234");
        assert_eq!(p("password = -7").unwrap().expose(), "-7");
        assert_eq!(p("password = 1.5").unwrap().expose(), "1.5");
        assert_eq!(p("password = true").unwrap().expose(), "true");
        let e = p("password = [1, 2]").unwrap_err();
        assert!(e.message().contains("expected a string"), "{e}");
        let json: Secret = serde_json::from_str("18446744073709551615").unwrap();
        assert_eq!(json.expose(), "18446744073709551615");
    }
}
