//! `[results]`: the most one materialized response may hold.

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::sql::ResultLimits;

/// The largest `results.max_rows`: 100 million rows.
pub const MAX_RESULT_ROWS: u32 = 100_000_000;

/// The largest `results.max_bytes`: 4 GiB.
pub const MAX_RESULT_BYTES: u64 = 4 << 30;

/// The smallest `results.max_bytes`: 1 KiB.
pub const MIN_RESULT_BYTES: u64 = 1 << 10;

/// `[results]`: caps on what one response may materialize in memory. A query whose result
/// goes past either cap fails with
/// [`ErrorKind::ResponseTooLarge`](crate::ErrorKind::ResponseTooLarge) (not retried);
/// stream such queries instead ([`Stack::stream`](crate::Stack::stream)), which the caps
/// do not apply to. Units of work read their own results and are not capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResultsConfig {
    /// Most rows over all result sets of one response, 1–100 000 000
    /// ([`MAX_RESULT_ROWS`]). Default 100 000.
    pub max_rows: u32,
    /// Most bytes of values in one response (text counted as UTF-8, binary as is, 16 per
    /// value of any other type), 1 KiB–4 GiB ([`MIN_RESULT_BYTES`], [`MAX_RESULT_BYTES`]).
    /// Default 64 MiB (67108864).
    pub max_bytes: u64,
}

impl Default for ResultsConfig {
    fn default() -> Self {
        let limits = ResultLimits::default();
        ResultsConfig {
            max_rows: limits.max_rows,
            max_bytes: limits.max_bytes,
        }
    }
}

impl ResultsConfig {
    /// Checks each range listed on the fields.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ConfigError::check_count("results.max_rows", self.max_rows, 1, MAX_RESULT_ROWS)?;
        if !(MIN_RESULT_BYTES..=MAX_RESULT_BYTES).contains(&self.max_bytes) {
            return Err(ConfigError::new(
                "results.max_bytes",
                self.max_bytes,
                format!("must be from {MIN_RESULT_BYTES} (1 KiB) to {MAX_RESULT_BYTES} (4 GiB)"),
            ));
        }
        Ok(())
    }

    /// The caps, for [`SqlService::with_limits`](crate::pool::SqlService::with_limits).
    pub fn limits(&self) -> ResultLimits {
        ResultLimits {
            max_rows: self.max_rows,
            max_bytes: self.max_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_checked_by_name() {
        assert!(ResultsConfig::default().validate().is_ok());
        let zero = ResultsConfig {
            max_rows: 0,
            ..ResultsConfig::default()
        };
        assert!(zero
            .validate()
            .unwrap_err()
            .to_string()
            .contains("results.max_rows"));
        let tiny = ResultsConfig {
            max_bytes: 10,
            ..ResultsConfig::default()
        };
        let e = tiny.validate().unwrap_err().to_string();
        assert!(e.contains("results.max_bytes") && e.contains("10"), "{e}");
        let huge = ResultsConfig {
            max_bytes: MAX_RESULT_BYTES + 1,
            ..ResultsConfig::default()
        };
        assert!(huge.validate().is_err());
    }
}
