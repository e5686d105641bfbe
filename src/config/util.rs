//! Helpers to rename and re-word [`ConfigError`]s coming from the layers.

use std::fmt;

use crate::error::ConfigError;

/// A value that a [`ConfigError`] prints verbatim (its `Debug` is the text itself).
pub(crate) struct Raw(String);

impl fmt::Debug for Raw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Wraps already-formatted text for [`ConfigError::new`]'s value.
pub(crate) fn raw(text: impl Into<String>) -> Raw {
    Raw(text.into())
}

/// The rule part of an error (`ConfigError` has no accessor for it; its `Display` is
/// ``invalid `field` = value: reason``).
pub(crate) fn reason_of(e: &ConfigError) -> String {
    let text = e.to_string();
    let prefix = format!("invalid `{}` = {}: ", e.field(), e.value());
    match text.strip_prefix(&prefix) {
        Some(reason) => reason.to_owned(),
        None => text,
    }
}

/// Renames the field (and mentions of the other fields in the reason) by `renames`.
pub(crate) fn renamed(e: ConfigError, renames: &[(&str, &str)]) -> ConfigError {
    let mut field = e.field().to_owned();
    let mut reason = reason_of(&e);
    for (from, to) in renames {
        if field == *from {
            field = (*to).to_owned();
        }
        reason = reason.replace(&format!("`{from}`"), &format!("`{to}`"));
    }
    ConfigError::new(field, raw(e.value()), reason)
}

/// The same rule, reported on another field with another (already formatted) value.
pub(crate) fn with_field(e: ConfigError, field: impl Into<String>, value: String) -> ConfigError {
    let reason = reason_of(&e);
    ConfigError::new(field.into(), raw(value), reason)
}

/// The same error with `suffix` appended to its reason.
pub(crate) fn with_suffix(e: ConfigError, suffix: &str) -> ConfigError {
    let reason = format!("{}{suffix}", reason_of(&e));
    ConfigError::new(e.field().to_owned(), raw(e.value()), reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewording_keeps_the_rest() {
        let e = ConfigError::new(
            "attempt_timeout",
            std::time::Duration::from_secs(2),
            "must not exceed `total_timeout` (1s)",
        );
        assert_eq!(reason_of(&e), "must not exceed `total_timeout` (1s)");
        let e = renamed(
            e,
            &[
                ("total_timeout", "timeouts.total"),
                ("attempt_timeout", "timeouts.attempt"),
            ],
        );
        assert_eq!(
            e.to_string(),
            "invalid `timeouts.attempt` = 2s: must not exceed `timeouts.total` (1s)"
        );
        let e = with_field(e, "x.y", "\"v\"".into());
        assert_eq!(
            e.to_string(),
            "invalid `x.y` = \"v\": must not exceed `timeouts.total` (1s)"
        );
        let e = with_suffix(e, " (from `VAR`)");
        assert_eq!(
            e.to_string(),
            "invalid `x.y` = \"v\": must not exceed `timeouts.total` (1s) (from `VAR`)"
        );
    }
}
