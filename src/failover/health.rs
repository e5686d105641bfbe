//! Per-region health: what the probes saw, what requests saw, and whether the region is
//! stable enough to fail back to.

use std::borrow::Cow;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::circuit_breaker::BreakerState;

/// What a region is for (in configuration: `"auto"`, `"read_write"`, `"read_only"`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Probes decide whether the region is writable (`DATABASEPROPERTYEX(…, 'Updateability')`);
    /// until the first probe it is assumed writable. The default.
    #[default]
    Auto,
    /// Assumed writable until a probe says otherwise: e.g. an Azure failover-group
    /// read-write listener `<fog>.database.windows.net`. Connections declare
    /// `ApplicationIntent=ReadWrite`.
    ReadWrite,
    /// Never takes writes: e.g. the read-only listener
    /// `<fog>.secondary.database.windows.net`. Connections declare
    /// `ApplicationIntent=ReadOnly`, which that listener needs to route to a readable
    /// secondary.
    ReadOnly,
}

impl Role {
    /// `auto`, `read_write` or `read_only`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Auto => "auto",
            Role::ReadWrite => "read_write",
            Role::ReadOnly => "read_only",
        }
    }
}

/// One health probe's result.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeRecord {
    /// When it finished (tokio clock).
    pub at: Instant,
    /// Whether it succeeded.
    pub ok: bool,
    /// How long it took.
    pub latency: Duration,
    /// Why it failed (error text, no secrets).
    pub error: Option<String>,
}

/// Health thresholds, shared by a router's regions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    /// Consecutive failed probes that make a healthy region unhealthy.
    pub unhealthy_after: u32,
    /// Consecutive good probes that make an unhealthy region healthy.
    pub healthy_after: u32,
    /// How long a more preferred region must stay trouble-free before traffic fails back.
    pub failback_hysteresis: Duration,
}

impl Default for HealthPolicy {
    /// 1 failed probe, 2 good probes, 30 s of hysteresis.
    fn default() -> Self {
        HealthPolicy {
            unhealthy_after: 1,
            healthy_after: 2,
            failback_hysteresis: Duration::from_secs(30),
        }
    }
}

#[derive(Debug)]
struct Inner {
    healthy: bool,
    /// `None` until a probe or a refused write tells; treated as writable meanwhile.
    writable: Option<bool>,
    consecutive_ok: u32,
    consecutive_failed: u32,
    healthy_since: Instant,
    last_trouble: Option<Instant>,
    last_probe: Option<ProbeRecord>,
}

/// A region's health state. Changes are reported by the methods' return values so the
/// router can publish them.
#[derive(Debug)]
pub(crate) struct Health {
    role: Role,
    policy: HealthPolicy,
    inner: Mutex<Inner>,
}

/// What a probe learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProbeSuccess {
    pub latency: Duration,
    pub read_write: bool,
}

impl Health {
    pub(crate) fn new(role: Role, policy: HealthPolicy) -> Self {
        Health {
            role,
            policy,
            inner: Mutex::new(Inner {
                // Optimistic until the first probe: traffic flows at start, and a failing
                // region is caught by its breaker and its first probe.
                healthy: true,
                writable: match role {
                    Role::ReadWrite => Some(true),
                    Role::ReadOnly => Some(false),
                    Role::Auto => None,
                },
                consecutive_ok: 0,
                consecutive_failed: 0,
                healthy_since: Instant::now(),
                last_trouble: None,
                last_probe: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn role(&self) -> Role {
        self.role
    }

    /// (healthy, writable); writability not yet known counts as writable, so writes can
    /// flow before the first probe (a refused write marks the region read-only at once).
    pub(crate) fn status(&self) -> (bool, bool) {
        let i = self.lock();
        (i.healthy, i.writable.unwrap_or(true))
    }

    pub(crate) fn last_probe(&self) -> Option<ProbeRecord> {
        self.lock().last_probe.clone()
    }

    /// Trouble-free and healthy for at least the hysteresis period.
    pub(crate) fn is_stable(&self, now: Instant) -> bool {
        let i = self.lock();
        let since = i
            .last_trouble
            .map_or(i.healthy_since, |t| t.max(i.healthy_since));
        i.healthy && now.saturating_duration_since(since) >= self.policy.failback_hysteresis
    }

    /// Records a good probe. Returns `true` if healthy or writable changed.
    pub(crate) fn probe_ok(&self, result: ProbeSuccess, now: Instant) -> bool {
        let mut i = self.lock();
        let before = (i.healthy, i.writable.unwrap_or(true));
        i.consecutive_ok += 1;
        i.consecutive_failed = 0;
        if !i.healthy && i.consecutive_ok >= self.policy.healthy_after {
            i.healthy = true;
            i.healthy_since = now;
        }
        i.writable = Some(result.read_write && self.role != Role::ReadOnly);
        i.last_probe = Some(ProbeRecord {
            at: now,
            ok: true,
            latency: result.latency,
            error: None,
        });
        before != (i.healthy, i.writable.unwrap_or(true))
    }

    /// Records a failed probe. Returns `true` if healthy changed.
    pub(crate) fn probe_failed(&self, error: String, latency: Duration, now: Instant) -> bool {
        let mut i = self.lock();
        let before = i.healthy;
        i.consecutive_failed += 1;
        i.consecutive_ok = 0;
        i.last_trouble = Some(now);
        if i.healthy && i.consecutive_failed >= self.policy.unhealthy_after {
            i.healthy = false;
        }
        i.last_probe = Some(ProbeRecord {
            at: now,
            ok: false,
            latency,
            error: Some(error),
        });
        before != i.healthy
    }

    /// A request or the breaker saw trouble: restarts the hysteresis clock.
    pub(crate) fn note_trouble(&self, now: Instant) {
        self.lock().last_trouble = Some(now);
    }

    /// The region refused a write as read-only (3906). Returns `true` if that is news.
    pub(crate) fn mark_read_only(&self) -> bool {
        let mut i = self.lock();
        i.writable.replace(false).unwrap_or(true)
    }
}

/// A point-in-time view of one region, for health endpoints and status pages.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionSnapshot {
    /// The region's name.
    pub name: Cow<'static, str>,
    /// Its configured role.
    pub role: Role,
    /// Its circuit breaker's state.
    pub breaker: BreakerState,
    /// Healthy by its probes.
    pub healthy: bool,
    /// Writable by its probes (or its role).
    pub writable: bool,
    /// The last probe, if one ran.
    pub last_probe: Option<ProbeRecord>,
    /// Requests in flight on it now.
    pub in_flight: usize,
    /// Pool connections open.
    pub pool_connections: u32,
    /// Pool connections idle.
    pub pool_idle: u32,
    /// The pool's maximum size.
    pub pool_max: u32,
    /// Whether reads currently go here first.
    pub serving_reads: bool,
    /// Whether writes currently go here first.
    pub serving_writes: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(read_write: bool) -> ProbeSuccess {
        ProbeSuccess {
            latency: Duration::from_millis(3),
            read_write,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn thresholds_and_hysteresis() {
        let policy = HealthPolicy {
            unhealthy_after: 2,
            healthy_after: 2,
            failback_hysteresis: Duration::from_secs(10),
        };
        let h = Health::new(Role::Auto, policy);
        let t0 = Instant::now();
        assert!(!h.probe_failed("x".into(), Duration::ZERO, t0));
        assert!(h.status().0, "one failure is below the threshold");
        assert!(h.probe_failed("x".into(), Duration::ZERO, t0));
        assert!(!h.status().0);
        assert!(!h.probe_ok(ok(true), t0 + Duration::from_secs(1)));
        assert!(!h.status().0, "one good probe is below the threshold");
        assert!(h.probe_ok(ok(true), t0 + Duration::from_secs(2)));
        assert_eq!(h.status(), (true, true));
        assert!(!h.is_stable(t0 + Duration::from_secs(11)));
        assert!(h.is_stable(t0 + Duration::from_secs(12)));
        h.note_trouble(t0 + Duration::from_secs(12));
        assert!(!h.is_stable(t0 + Duration::from_secs(21)));
        assert!(h.is_stable(t0 + Duration::from_secs(22)));
    }

    #[tokio::test(start_paused = true)]
    async fn auto_regions_are_writable_until_told_otherwise() {
        let h = Health::new(Role::Auto, HealthPolicy::default());
        assert_eq!(h.status(), (true, true));
        assert!(h.probe_ok(ok(false), Instant::now()));
        assert_eq!(h.status(), (true, false));
        assert!(h.probe_ok(ok(true), Instant::now()));
        assert!(h.mark_read_only());
        assert_eq!(h.status(), (true, false));
    }

    #[tokio::test(start_paused = true)]
    async fn read_only_role_is_never_writable() {
        let h = Health::new(Role::ReadOnly, HealthPolicy::default());
        h.probe_ok(ok(true), Instant::now());
        assert_eq!(h.status(), (true, false));
        let rw = Health::new(Role::ReadWrite, HealthPolicy::default());
        assert_eq!(rw.status(), (true, true));
        assert!(rw.mark_read_only());
        assert!(!rw.mark_read_only());
    }
}
