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

/// How well a region is serving, from probes and live traffic.
///
/// Routing prefers `Healthy` over `Degraded` and uses `Down` only as a last resort;
/// writes keep flowing to the only writable region while it is `Degraded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Grade {
    /// Probes answer promptly and live traffic succeeds.
    #[default]
    Healthy,
    /// Answering, but slow (probe round trip at or over
    /// [`HealthPolicy::degraded_latency`]), partly failing (a quarter or more of recent
    /// live attempts failed), recovering (answered again, fewer than
    /// [`HealthPolicy::healthy_after`] good probes since it was down), failing its
    /// probes while live requests still succeed, or short of connections (its pool was
    /// starved within the last second: new connections fail while every open one is
    /// busy, so it can carry no more than it has).
    Degraded,
    /// Its last [`HealthPolicy::unhealthy_after`] probes failed and no live request has
    /// succeeded since.
    Down,
}

impl Grade {
    /// `healthy`, `degraded` or `down`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Grade::Healthy => "healthy",
            Grade::Degraded => "degraded",
            Grade::Down => "down",
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
    /// Consecutive failed probes (with no live success since) that make a region `Down`.
    pub unhealthy_after: u32,
    /// Consecutive good probes that take a recovering region from `Degraded` to
    /// `Healthy`. One good probe (or one live success) is enough to take a `Down` region
    /// to `Degraded`, which writes use at once.
    pub healthy_after: u32,
    /// How long a more preferred region must stay trouble-free before reads fail back.
    pub failback_hysteresis: Duration,
    /// A probe round trip at or above this makes a region `Degraded`.
    pub degraded_latency: Duration,
}

impl Default for HealthPolicy {
    /// 1 failed probe, 2 good probes, 30 s of hysteresis, 200 ms degraded latency.
    fn default() -> Self {
        HealthPolicy {
            unhealthy_after: 1,
            healthy_after: 2,
            failback_hysteresis: Duration::from_secs(30),
            degraded_latency: Duration::from_millis(200),
        }
    }
}

/// Live attempts counted before their failure rate can degrade a region.
const LIVE_MIN_SAMPLES: u32 = 10;
/// Recent failure rate (exponentially weighted) that degrades a region.
const LIVE_FAILURE_RATE: f64 = 0.25;
/// Weight of the newest live attempt in the failure rate.
const LIVE_WEIGHT: f64 = 0.1;
/// How long a region stays degraded after its pool was last seen starved (a checkout
/// kept waiting because new connections fail while every open one is busy).
pub(crate) const STARVED_HOLD: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Inner {
    grade: Grade,
    /// `None` until a probe or a refused write tells; treated as writable meanwhile.
    writable: Option<bool>,
    consecutive_ok: u32,
    consecutive_failed: u32,
    /// Went down and has not had `healthy_after` good probes since.
    recovering: bool,
    /// The last probe's round trip (its latency over its round trips).
    probe_rtt: Duration,
    /// A live attempt succeeded after the last failed probe.
    live_ok_since_probe_failed: bool,
    live_failure_rate: f64,
    live_samples: u32,
    healthy_since: Instant,
    last_trouble: Option<Instant>,
    last_probe: Option<ProbeRecord>,
    /// Degraded until then: its pool was starved (see [`Health::pool_starved`]).
    starved_until: Option<Instant>,
}

impl Inner {
    fn grade(&self, policy: &HealthPolicy, now: Instant) -> Grade {
        if self.consecutive_failed >= policy.unhealthy_after.max(1) {
            return if self.live_ok_since_probe_failed {
                Grade::Degraded
            } else {
                Grade::Down
            };
        }
        let slow = self.probe_rtt >= policy.degraded_latency;
        let failing =
            self.live_samples >= LIVE_MIN_SAMPLES && self.live_failure_rate >= LIVE_FAILURE_RATE;
        let starved = self.starved_until.is_some_and(|until| now < until);
        if self.recovering || slow || failing || starved {
            Grade::Degraded
        } else {
            Grade::Healthy
        }
    }

    /// Recomputes the grade; whether grade or writability changed since `before`.
    fn settle(&mut self, policy: &HealthPolicy, before: (Grade, bool), now: Instant) -> bool {
        let grade = self.grade(policy, now);
        if grade == Grade::Down {
            self.recovering = true;
        }
        if grade == Grade::Healthy && self.grade != Grade::Healthy {
            self.healthy_since = now;
        }
        self.grade = grade;
        before != (self.grade, self.writable.unwrap_or(true))
    }
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
    /// Round trips the probe needed (1 on an open connection, more with a login).
    pub round_trips: u32,
}

impl Health {
    pub(crate) fn new(role: Role, policy: HealthPolicy) -> Self {
        Health {
            role,
            policy,
            inner: Mutex::new(Inner {
                // Optimistic until the first probe: traffic flows at start, and a failing
                // region is caught by its breaker and its first probe.
                grade: Grade::Healthy,
                writable: match role {
                    Role::ReadWrite => Some(true),
                    Role::ReadOnly => Some(false),
                    Role::Auto => None,
                },
                consecutive_ok: 0,
                consecutive_failed: 0,
                recovering: false,
                probe_rtt: Duration::ZERO,
                live_ok_since_probe_failed: false,
                live_failure_rate: 0.0,
                live_samples: 0,
                healthy_since: Instant::now(),
                last_trouble: None,
                last_probe: None,
                starved_until: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn role(&self) -> Role {
        self.role
    }

    /// (grade, writable); writability not yet known counts as writable, so writes can
    /// flow before the first probe (a refused write marks the region read-only at once).
    pub(crate) fn status(&self) -> (Grade, bool) {
        let i = self.lock();
        (i.grade, i.writable.unwrap_or(true))
    }

    pub(crate) fn last_probe(&self) -> Option<ProbeRecord> {
        self.lock().last_probe.clone()
    }

    /// Healthy and trouble-free for at least the hysteresis period.
    #[cfg(test)]
    pub(crate) fn is_stable(&self, now: Instant) -> bool {
        self.view(now).2
    }

    /// (grade, writable, stable) under one lock: what routing reads for every request.
    pub(crate) fn view(&self, now: Instant) -> (Grade, bool, bool) {
        let i = self.lock();
        let since = i
            .last_trouble
            .map_or(i.healthy_since, |t| t.max(i.healthy_since));
        let stable = i.grade == Grade::Healthy
            && now.saturating_duration_since(since) >= self.policy.failback_hysteresis;
        (i.grade, i.writable.unwrap_or(true), stable)
    }

    /// Records a good probe. Returns `true` if grade or writability changed.
    pub(crate) fn probe_ok(&self, result: ProbeSuccess, now: Instant) -> bool {
        let mut i = self.lock();
        let before = (i.grade, i.writable.unwrap_or(true));
        i.consecutive_ok = i.consecutive_ok.saturating_add(1);
        i.consecutive_failed = 0;
        if i.consecutive_ok >= self.policy.healthy_after {
            i.recovering = false;
        }
        i.probe_rtt = result.latency / result.round_trips.max(1);
        // An answering probe also ages out old live failures.
        i.live_failure_rate /= 2.0;
        i.writable = Some(result.read_write && self.role != Role::ReadOnly);
        i.last_probe = Some(ProbeRecord {
            at: now,
            ok: true,
            latency: result.latency,
            error: None,
        });
        i.settle(&self.policy, before, now)
    }

    /// Records a failed probe. Returns `true` if the grade changed.
    pub(crate) fn probe_failed(&self, error: String, latency: Duration, now: Instant) -> bool {
        let mut i = self.lock();
        let before = (i.grade, i.writable.unwrap_or(true));
        i.consecutive_failed = i.consecutive_failed.saturating_add(1);
        i.consecutive_ok = 0;
        i.live_ok_since_probe_failed = false;
        i.last_trouble = Some(now);
        i.last_probe = Some(ProbeRecord {
            at: now,
            ok: false,
            latency,
            error: Some(error),
        });
        i.settle(&self.policy, before, now)
    }

    /// Records a live attempt's end: `failed` when it failed in a way that counts against
    /// health. Returns whether the grade changed, and whether the region is writable.
    pub(crate) fn live(&self, failed: bool, now: Instant) -> (bool, bool) {
        let mut i = self.lock();
        // The common case, a success on a healthy region, changes nothing but the rate.
        if !failed && i.grade == Grade::Healthy && i.live_failure_rate == 0.0 {
            i.live_samples = i.live_samples.saturating_add(1);
            i.live_ok_since_probe_failed = true;
            return (false, i.writable.unwrap_or(true));
        }
        let before = (i.grade, i.writable.unwrap_or(true));
        i.live_samples = i.live_samples.saturating_add(1);
        let x = if failed { 1.0 } else { 0.0 };
        i.live_failure_rate += LIVE_WEIGHT * (x - i.live_failure_rate);
        if failed {
            i.last_trouble = Some(now);
        } else {
            i.live_ok_since_probe_failed = true;
        }
        if i.live_failure_rate < 1e-3 {
            i.live_failure_rate = 0.0;
        }
        (
            i.settle(&self.policy, before, now),
            i.writable.unwrap_or(true),
        )
    }

    /// Its pool was starved: a checkout had to keep waiting because new connections fail
    /// while every open one is busy. The region serves what its open connections can
    /// carry — and no more: it is degraded for [`STARVED_HOLD`] from now (and the
    /// fail-back clock restarts), so reads go to a region where they need not queue
    /// while writes keep using its connections. Returns `true` if the grade changed.
    pub(crate) fn pool_starved(&self, now: Instant) -> bool {
        let mut i = self.lock();
        let before = (i.grade, i.writable.unwrap_or(true));
        i.starved_until = Some(now + STARVED_HOLD);
        i.last_trouble = Some(now);
        i.settle(&self.policy, before, now)
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
    /// Not [`Grade::Down`]: it answers probes or live requests.
    pub healthy: bool,
    /// Healthy, degraded or down.
    pub grade: Grade,
    /// The region's round-trip estimate.
    pub latency: super::latency::LatencySnapshot,
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

    const MS: Duration = Duration::from_millis(1);

    fn ok(read_write: bool) -> ProbeSuccess {
        ProbeSuccess {
            latency: 3 * MS,
            read_write,
            round_trips: 1,
        }
    }

    fn policy() -> HealthPolicy {
        HealthPolicy {
            unhealthy_after: 2,
            healthy_after: 2,
            failback_hysteresis: Duration::from_secs(10),
            degraded_latency: 200 * MS,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn down_after_failed_probes_then_degraded_at_the_first_answer() {
        let h = Health::new(Role::Auto, policy());
        let t0 = Instant::now();
        assert!(!h.probe_failed("x".into(), Duration::ZERO, t0));
        assert_eq!(
            h.status().0,
            Grade::Healthy,
            "one failure is below the threshold"
        );
        assert!(h.probe_failed("x".into(), Duration::ZERO, t0));
        assert_eq!(h.status().0, Grade::Down);
        // One good probe: usable again (writes go there at once), but not yet healthy.
        assert!(h.probe_ok(ok(true), t0 + Duration::from_secs(1)));
        assert_eq!(h.status(), (Grade::Degraded, true));
        assert!(h.probe_ok(ok(true), t0 + Duration::from_secs(2)));
        assert_eq!(h.status(), (Grade::Healthy, true));
        assert!(!h.is_stable(t0 + Duration::from_secs(11)));
        assert!(h.is_stable(t0 + Duration::from_secs(12)));
        h.note_trouble(t0 + Duration::from_secs(12));
        assert!(!h.is_stable(t0 + Duration::from_secs(21)));
        assert!(h.is_stable(t0 + Duration::from_secs(22)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_live_success_lifts_a_down_region_at_once() {
        let h = Health::new(Role::ReadWrite, policy());
        let t0 = Instant::now();
        h.probe_failed("x".into(), Duration::ZERO, t0);
        h.probe_failed("x".into(), Duration::ZERO, t0);
        assert_eq!(h.status().0, Grade::Down);
        assert!(h.live(false, t0).0);
        assert_eq!(h.status().0, Grade::Degraded);
        // The next failed probe with no live success since takes it down again.
        assert!(h.probe_failed("x".into(), Duration::ZERO, t0));
        assert_eq!(h.status().0, Grade::Down);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_probes_degrade_and_fast_ones_heal() {
        let h = Health::new(Role::Auto, policy());
        let now = Instant::now();
        let slow = ProbeSuccess {
            latency: 1500 * MS,
            read_write: true,
            round_trips: 5,
        };
        assert!(h.probe_ok(slow, now), "300 ms per round trip is degraded");
        assert_eq!(h.status().0, Grade::Degraded);
        assert!(!h.is_stable(now + Duration::from_secs(3600)));
        let login = ProbeSuccess {
            latency: 500 * MS,
            read_write: true,
            round_trips: 5,
        };
        assert!(h.probe_ok(login, now), "100 ms per round trip is fine");
        assert_eq!(h.status().0, Grade::Healthy);
    }

    #[tokio::test(start_paused = true)]
    async fn live_failures_degrade_and_successes_heal() {
        let h = Health::new(Role::Auto, policy());
        let now = Instant::now();
        for _ in 0..LIVE_MIN_SAMPLES {
            h.live(false, now);
        }
        assert_eq!(h.status().0, Grade::Healthy);
        let mut changed = false;
        for _ in 0..3 {
            changed |= h.live(true, now).0;
        }
        assert!(changed);
        assert_eq!(
            h.status().0,
            Grade::Degraded,
            "a quarter of recent attempts failed"
        );
        for _ in 0..20 {
            h.live(false, now);
        }
        assert_eq!(h.status().0, Grade::Healthy);
    }

    #[tokio::test(start_paused = true)]
    async fn a_starved_pool_degrades_its_region_for_a_while_and_restarts_the_failback_clock() {
        let h = Health::new(Role::Auto, policy());
        let t0 = Instant::now();
        h.probe_ok(ok(true), t0);
        let stable_at = t0 + policy().failback_hysteresis;
        assert_eq!(h.view(stable_at), (Grade::Healthy, true, true));
        let starved = stable_at + MS;
        assert!(h.pool_starved(starved), "degraded at once");
        assert_eq!(h.view(starved), (Grade::Degraded, true, false));
        assert!(
            !h.pool_starved(starved + 10 * MS),
            "still degraded: no news"
        );
        // Still within the hold from the last starvation: a success changes nothing.
        let held = starved + 10 * MS + STARVED_HOLD - MS;
        assert!(!h.live(false, held).0);
        assert_eq!(h.status().0, Grade::Degraded);
        // Past the hold, the next live answer (or probe) finds it healthy again ...
        let past = starved + 10 * MS + STARVED_HOLD;
        assert!(h.live(false, past).0);
        assert_eq!(h.status().0, Grade::Healthy);
        // ... but not stable: reads fail back only a whole hysteresis later.
        assert!(!h.view(past + policy().failback_hysteresis - MS).2);
        assert!(h.view(past + policy().failback_hysteresis).2);
    }

    #[tokio::test(start_paused = true)]
    async fn auto_regions_are_writable_until_told_otherwise() {
        let h = Health::new(Role::Auto, HealthPolicy::default());
        assert_eq!(h.status(), (Grade::Healthy, true));
        assert!(h.probe_ok(ok(false), Instant::now()));
        assert_eq!(h.status(), (Grade::Healthy, false));
        assert!(h.probe_ok(ok(true), Instant::now()));
        assert!(h.mark_read_only());
        assert_eq!(h.status(), (Grade::Healthy, false));
    }

    #[tokio::test(start_paused = true)]
    async fn read_only_role_is_never_writable() {
        let h = Health::new(Role::ReadOnly, HealthPolicy::default());
        h.probe_ok(ok(true), Instant::now());
        assert_eq!(h.status(), (Grade::Healthy, false));
        let rw = Health::new(Role::ReadWrite, HealthPolicy::default());
        assert_eq!(rw.status(), (Grade::Healthy, true));
        assert!(rw.mark_read_only());
        assert!(!rw.mark_read_only());
    }
}
