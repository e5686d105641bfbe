//! The health snapshot as `application/health+json`
//! (draft-inadarei-api-health-check): for load balancers, and for a status page that tells
//! customers what is degraded.
//!
//! | status | when | HTTP |
//! |--------|------|------|
//! | `pass` | every region healthy, breakers closed | 200 |
//! | `warn` | the service works (some region serves reads and one writes) but a region is unhealthy, read-only unexpectedly, or has a breaker not closed | 200 |
//! | `fail` | no region can serve reads, or none can take writes | 503 |

use serde_json::{json, Value};

use crate::circuit_breaker::BreakerState;
use crate::failover::RegionSnapshot;

/// The media type of the health document.
pub const CONTENT_TYPE: &str = "application/health+json";

/// Overall status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Healthy.
    Pass,
    /// Degraded but serving.
    Warn,
    /// Not serving reads or writes.
    Fail,
}

impl Status {
    /// `pass`, `warn` or `fail`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }

    /// The HTTP status the draft prescribes: 200 for pass and warn, 503 for fail.
    pub const fn http_status(self) -> u16 {
        match self {
            Status::Pass | Status::Warn => 200,
            Status::Fail => 503,
        }
    }
}

fn region_status(r: &RegionSnapshot) -> Status {
    let usable = r.healthy && !matches!(r.breaker, BreakerState::Open | BreakerState::Isolated);
    if !usable {
        Status::Fail
    } else if r.breaker != BreakerState::Closed || r.grade != crate::failover::Grade::Healthy {
        Status::Warn
    } else {
        Status::Pass
    }
}

/// The overall status of `regions`.
pub fn status(regions: &[RegionSnapshot]) -> Status {
    let usable = |r: &&RegionSnapshot| region_status(r) != Status::Fail;
    let can_read = regions.iter().any(|r| usable(&r));
    let can_write = regions.iter().filter(usable).any(|r| r.writable);
    if !can_read || !can_write {
        Status::Fail
    } else if regions.iter().all(|r| region_status(r) == Status::Pass) {
        Status::Pass
    } else {
        Status::Warn
    }
}

/// The `application/health+json` document and its HTTP status code.
pub fn document(service_id: &str, regions: &[RegionSnapshot]) -> (u16, Value) {
    let overall = status(regions);
    let mut checks = serde_json::Map::new();
    for r in regions {
        let status = region_status(r);
        let mut check = json!({
            "componentId": r.name,
            "componentType": "datastore",
            "status": status.as_str(),
            "breaker": r.breaker.as_str(),
            "healthy": r.healthy,
            "grade": r.grade.as_str(),
            "writable": r.writable,
            "role": r.role.as_str(),
            "servingReads": r.serving_reads,
            "servingWrites": r.serving_writes,
            "inFlight": r.in_flight,
        });
        if let Some(probe) = &r.last_probe {
            check["observedValue"] = json!(probe.latency.as_secs_f64() * 1000.0);
            check["observedUnit"] = json!("ms");
            if let Some(error) = &probe.error {
                check["output"] = json!(error);
            }
        }
        checks.insert(format!("region:{}", r.name), json!([check]));
    }
    let output = match overall {
        Status::Pass => None,
        Status::Warn => {
            Some("degraded: at least one region is down, slow or partly failing, or its breaker is not closed")
        }
        Status::Fail => Some("unavailable: no region can serve reads, or none can take writes"),
    };
    let mut doc = json!({
        "status": overall.as_str(),
        "serviceId": service_id,
        "description": "SQL Server regions behind mssql-resilience",
        "checks": checks,
    });
    if let Some(output) = output {
        doc["output"] = json!(output);
    }
    (overall.http_status(), doc)
}

/// An axum router serving the stack's health at `path` (feature `axum`).
#[cfg(feature = "axum")]
pub fn router<S>(stack: crate::Stack, path: &str, service_id: &str) -> axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    let service_id = service_id.to_owned();
    axum::Router::new().route(
        path,
        axum::routing::get(move || {
            let stack = stack.clone();
            let service_id = service_id.clone();
            async move {
                let (code, doc) = document(&service_id, &stack.health());
                (
                    StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                    [(header::CONTENT_TYPE, CONTENT_TYPE)],
                    doc.to_string(),
                )
                    .into_response()
            }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failover::Role;
    use std::borrow::Cow;

    fn region(
        name: &'static str,
        healthy: bool,
        writable: bool,
        breaker: BreakerState,
    ) -> RegionSnapshot {
        RegionSnapshot {
            name: Cow::Borrowed(name),
            role: Role::Auto,
            breaker,
            healthy,
            grade: if healthy {
                crate::failover::Grade::Healthy
            } else {
                crate::failover::Grade::Down
            },
            latency: crate::failover::LatencySnapshot {
                srtt: None,
                rto: None,
                backoff: 0,
            },
            writable,
            last_probe: None,
            in_flight: 0,
            pool_connections: 0,
            pool_idle: 0,
            pool_max: 10,
            serving_reads: false,
            serving_writes: false,
        }
    }

    #[test]
    fn pass_warn_fail() {
        use BreakerState::*;
        let all_good = [
            region("a", true, true, Closed),
            region("b", true, false, Closed),
        ];
        assert_eq!(status(&all_good), Status::Pass);
        let degraded = [
            region("a", false, true, Open),
            region("b", true, true, Closed),
        ];
        assert_eq!(status(&degraded), Status::Warn);
        let read_only = [
            region("a", false, true, Open),
            region("b", true, false, Closed),
        ];
        assert_eq!(
            status(&read_only),
            Status::Fail,
            "reads work but no write can"
        );
        let (code, doc) = document("api", &read_only);
        assert_eq!(code, 503);
        assert_eq!(doc["status"], "fail");
        assert_eq!(doc["checks"]["region:a"][0]["breaker"], "open");
        assert_eq!(doc["checks"]["region:b"][0]["status"], "pass");
    }
}
