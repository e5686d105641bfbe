//! A customer-facing status line from the health document ([`health::document`]): what
//! customers can and cannot do right now, in words, for a status page or a banner.
//!
//! It reads only the document, so a status page can compute it from a service's
//! `/health` answer as well as the service itself. Per capability:
//!
//! | capability | state | when (in the document's `checks`) |
//! |---|---|---|
//! | reads | `unavailable` | no region both `servingReads` and `status` `pass` or `warn` |
//! | reads | `stale` | the regions serving reads are all not `writable`: replicas, which lag the primary |
//! | reads | `slow` | a region serving reads has `grade: degraded` (its probes are slow) |
//! | writes | `unavailable` | no region `servingWrites`, `writable` and `status` `pass` or `warn` |
//! | writes | `slow` | the region serving writes has `grade: degraded` |
//! | either | `normal` | otherwise |
//!
//! The overall level is `outage` when reads are unavailable, `degraded` when anything is
//! not `normal`, `operational` otherwise. A document without usable `checks` (not a health
//! document, or none of its fields readable) gives `outage`: never a panic.
//!
//! [`health::document`]: super::health::document

use serde_json::{json, Value};

/// What customers can do with one capability (reads or writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// Works as usual.
    Normal,
    /// Works, but slower than usual.
    Slow,
    /// Works, but answers may be a few seconds out of date (reads from a replica).
    Stale,
    /// Does not work right now.
    Unavailable,
}

impl Capability {
    /// `normal`, `slow`, `stale` or `unavailable`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Capability::Normal => "normal",
            Capability::Slow => "slow",
            Capability::Stale => "stale",
            Capability::Unavailable => "unavailable",
        }
    }
}

/// The overall level of a [`CustomerStatus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Everything works as usual.
    Operational,
    /// Something works less well, or writes do not work.
    Degraded,
    /// Reads do not work.
    Outage,
}

impl Level {
    /// `operational`, `degraded` or `outage`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Level::Operational => "operational",
            Level::Degraded => "degraded",
            Level::Outage => "outage",
        }
    }
}

/// The customer-facing status: per capability, the level and one sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerStatus {
    /// The overall level.
    pub level: Level,
    /// Viewing data.
    pub reads: Capability,
    /// Saving changes.
    pub writes: Capability,
}

impl CustomerStatus {
    /// Reads the health document (see the module docs for the rules).
    pub fn from_health(doc: &Value) -> CustomerStatus {
        let checks: Vec<&Value> = doc
            .get("checks")
            .and_then(Value::as_object)
            .map(|c| {
                c.values()
                    .filter_map(|v| v.as_array().and_then(|a| a.first()))
                    .collect()
            })
            .unwrap_or_default();
        fn flag(c: &Value, key: &str) -> bool {
            c.get(key).and_then(Value::as_bool).unwrap_or(false)
        }
        fn text<'a>(c: &'a Value, key: &str) -> &'a str {
            c.get(key).and_then(Value::as_str).unwrap_or("")
        }
        // A region with no readable status is not counted on.
        let usable = |c: &&&Value| matches!(text(c, "status"), "pass" | "warn");
        let slow = |c: &&&Value| text(c, "grade") == "degraded";

        let readers: Vec<&&Value> = checks
            .iter()
            .filter(usable)
            .filter(|c| flag(c, "servingReads"))
            .collect();
        let reads = if readers.is_empty() {
            Capability::Unavailable
        } else if readers.iter().all(|c| !flag(c, "writable")) {
            Capability::Stale
        } else if readers.iter().any(slow) {
            Capability::Slow
        } else {
            Capability::Normal
        };
        let writers: Vec<&&Value> = checks
            .iter()
            .filter(usable)
            .filter(|c| flag(c, "servingWrites") && flag(c, "writable"))
            .collect();
        let writes = if writers.is_empty() {
            Capability::Unavailable
        } else if writers.iter().any(slow) {
            Capability::Slow
        } else {
            Capability::Normal
        };
        let level = if reads == Capability::Unavailable {
            Level::Outage
        } else if reads == Capability::Normal && writes == Capability::Normal {
            Level::Operational
        } else {
            Level::Degraded
        };
        CustomerStatus {
            level,
            reads,
            writes,
        }
    }

    /// One line for customers, e.g. "Degraded: saving changes is unavailable right now;
    /// data you see may be a few seconds out of date."
    pub fn line(&self) -> String {
        if self.level == Level::Operational {
            return "All systems operational.".into();
        }
        let mut parts = Vec::new();
        match self.reads {
            Capability::Unavailable => parts.push("viewing data is unavailable right now"),
            Capability::Stale => parts.push("data you see may be a few seconds out of date"),
            Capability::Slow => parts.push("viewing data is slower than usual"),
            Capability::Normal => {}
        }
        match self.writes {
            Capability::Unavailable => parts.push("saving changes is unavailable right now"),
            Capability::Slow => parts.push("saving changes is slower than usual"),
            // Writes cannot be stale; `from_health` never says so.
            Capability::Stale | Capability::Normal => {}
        }
        // Writes first: what customers cannot do matters more than what is late.
        if self.writes == Capability::Unavailable && parts.len() == 2 {
            parts.swap(0, 1);
        }
        let mut line = format!(
            "{}: {}.",
            if self.level == Level::Outage {
                "Outage"
            } else {
                "Degraded"
            },
            parts.join("; ")
        );
        line.push_str(" We are on it; no action is needed on your side.");
        line
    }

    /// `{"level", "reads", "writes", "message"}`, for a status page.
    pub fn to_json(&self) -> Value {
        json!({
            "level": self.level.as_str(),
            "reads": self.reads.as_str(),
            "writes": self.writes.as_str(),
            "message": self.line(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(status: &str, writable: bool, reads: bool, writes: bool, grade: &str) -> Value {
        json!([{ "status": status, "writable": writable, "servingReads": reads,
                 "servingWrites": writes, "grade": grade }])
    }

    fn doc(primary: Value, secondary: Value) -> Value {
        json!({ "status": "warn", "checks": {
            "region:westeurope": primary, "region:northeurope": secondary } })
    }

    #[test]
    fn both_regions_fine_is_operational() {
        let s = CustomerStatus::from_health(&doc(
            check("pass", true, true, true, "healthy"),
            check("pass", false, false, false, "healthy"),
        ));
        assert_eq!(s.level, Level::Operational);
        assert_eq!(s.line(), "All systems operational.");
    }

    #[test]
    fn primary_down_without_flip_means_stale_reads_and_no_writes() {
        // The 2023 replay: westeurope unhealthy, reads from the read-only northeurope.
        let s = CustomerStatus::from_health(&doc(
            check("fail", true, false, false, "healthy"),
            check("pass", false, true, false, "healthy"),
        ));
        assert_eq!(
            (s.level, s.reads, s.writes),
            (Level::Degraded, Capability::Stale, Capability::Unavailable)
        );
        assert_eq!(
            s.line(),
            "Degraded: saving changes is unavailable right now; data you see may be a few \
             seconds out of date. We are on it; no action is needed on your side."
        );
        assert_eq!(s.to_json()["writes"], "unavailable");
    }

    #[test]
    fn after_a_flip_writes_work_and_reads_are_not_stale() {
        let s = CustomerStatus::from_health(&doc(
            check("fail", false, false, false, "healthy"),
            check("pass", true, true, true, "degraded"),
        ));
        assert_eq!(
            (s.level, s.reads, s.writes),
            (Level::Degraded, Capability::Slow, Capability::Slow)
        );
    }

    #[test]
    fn nothing_usable_is_an_outage() {
        let s = CustomerStatus::from_health(&doc(
            check("fail", true, true, true, "healthy"),
            check("fail", false, true, false, "healthy"),
        ));
        assert_eq!(
            (s.level, s.reads, s.writes),
            (
                Level::Outage,
                Capability::Unavailable,
                Capability::Unavailable
            )
        );
        assert!(s
            .line()
            .starts_with("Outage: saving changes is unavailable right now; viewing"));
    }

    #[test]
    fn garbage_is_an_outage_not_a_panic() {
        for v in [
            json!(null),
            json!({"checks": 3}),
            json!({"checks": {"x": [1]}}),
        ] {
            assert_eq!(CustomerStatus::from_health(&v).level, Level::Outage);
        }
    }
}
