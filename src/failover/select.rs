//! Region selection: which regions a request may use, in which order, and which region
//! serves an intent — a pure function of the regions' views, tested without a runtime.
//!
//! - A region is **allowed** for a request when its breaker lets calls through, it is
//!   writable for a write, and — for a read that must see the latest data
//!   ([`Consistency::Latest`]) — it is writable (the primary; a read-only replica may lag).
//! - It is **usable** when also not [`Grade::Down`] and not saturated (a region that is not
//!   healthy and already holds as many requests as its pool has connections: more would
//!   only queue).
//! - Usable regions are ordered best grade first, then by priority.
//! - **Reads** keep their serving region while it is usable and in the best grade on
//!   offer; they move at once to a better region when it is not (failover), and back to
//!   a more preferred region only once that region has been healthy and trouble-free for
//!   the fail-back hysteresis (`stable`).
//! - **Writes** have no hysteresis: the best usable writable region serves at once, so a
//!   primary that answers again takes writes again at its first good probe or live answer.
//! - With no usable region, the last resort is every region that could take the request
//!   and is not saturated — down ones, and ones whose breaker is open (not isolated by
//!   hand), which the request may pass: a breaker fails fast to protect the caller when
//!   somewhere better exists, and there is none. Best grade first, then regions whose
//!   breaker lets calls through.

use crate::failover::health::Grade;
use crate::request::{Consistency, Intent};

/// What selection knows about one region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionView {
    /// Its health grade.
    pub grade: Grade,
    /// Its breaker lets calls through.
    pub permitted: bool,
    /// Its breaker is open but not isolated by hand: the very last resort may pass it.
    pub bypassable: bool,
    /// It takes writes.
    pub writable: bool,
    /// Healthy and trouble-free for the fail-back hysteresis.
    pub stable: bool,
    /// Not healthy and already holding as many requests as its pool has connections.
    pub saturated: bool,
}

impl RegionView {
    /// A region nothing may be sent to (a placeholder).
    pub const UNUSABLE: RegionView = RegionView {
        grade: Grade::Down,
        permitted: false,
        bypassable: false,
        writable: false,
        stable: false,
        saturated: true,
    };
}

/// The outcome of [`select`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// The region serving the intent now (`None` when only last-resort regions remain).
    pub serving: Option<usize>,
    /// The regions to try, in order (indices into the views).
    pub candidates: Vec<usize>,
    /// No region is usable: the candidates are the last resort (down regions, and regions
    /// whose breaker is open, which the request may pass).
    pub last_resort: bool,
}

/// Selects regions for one request. `current` is the region serving this intent so far.
pub fn select(
    views: &[RegionView],
    intent: Intent,
    consistency: Consistency,
    current: Option<usize>,
) -> Selection {
    let needs_writable = intent == Intent::Write || consistency == Consistency::Latest;
    let allowed = |v: &RegionView| v.permitted && (!needs_writable || v.writable);
    let usable = |v: &RegionView| allowed(v) && v.grade != Grade::Down && !v.saturated;
    let mut ranked: Vec<usize> = (0..views.len()).filter(|&i| usable(&views[i])).collect();
    ranked.sort_by_key(|&i| (views[i].grade, i));
    let Some(&best) = ranked.first() else {
        // The last resort: every region that could take the request but is down,
        // saturated-free, or behind an open (not hand-isolated) breaker, best grade
        // first, then those whose breaker lets calls through. Failing fast is only right
        // when there is somewhere better to go, and there is not.
        let fits = |v: &RegionView| {
            !v.saturated && (allowed(v) || (v.bypassable && (!needs_writable || v.writable)))
        };
        let mut last_resort: Vec<usize> = (0..views.len()).filter(|&i| fits(&views[i])).collect();
        last_resort.sort_by_key(|&i| (views[i].grade, !views[i].permitted, i));
        return Selection {
            serving: None,
            candidates: last_resort,
            last_resort: true,
        };
    };
    let best_grade = views[best].grade;
    let chosen = match current {
        Some(cur) if intent == Intent::Read && ranked.contains(&cur) => {
            if views[cur].grade > best_grade {
                best
            } else {
                // Fail back only to a more preferred region that has been stable.
                ranked
                    .iter()
                    .copied()
                    .filter(|&i| i < cur && views[i].stable)
                    .min()
                    .unwrap_or(cur)
            }
        }
        _ => best,
    };
    // The chosen region first, the rest in rank order.
    if let Some(at) = ranked.iter().position(|&i| i == chosen) {
        ranked[..=at].rotate_right(1);
    }
    Selection {
        serving: Some(chosen),
        candidates: ranked,
        last_resort: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEALTHY: RegionView = RegionView {
        grade: Grade::Healthy,
        permitted: true,
        bypassable: false,
        writable: true,
        stable: true,
        saturated: false,
    };

    fn replica(grade: Grade) -> RegionView {
        RegionView {
            grade,
            writable: false,
            stable: grade == Grade::Healthy,
            ..HEALTHY
        }
    }

    fn primary(grade: Grade) -> RegionView {
        RegionView {
            grade,
            stable: grade == Grade::Healthy,
            ..HEALTHY
        }
    }

    const STALE: Consistency = Consistency::AllowStale;

    #[test]
    fn reads_prefer_priority_among_equals() {
        let v = [primary(Grade::Healthy), replica(Grade::Healthy)];
        let s = select(&v, Intent::Read, STALE, None);
        assert_eq!(s.serving, Some(0));
        assert_eq!(s.candidates, vec![0, 1]);
    }

    #[test]
    fn a_degraded_region_loses_reads_to_a_healthy_one_but_keeps_writes() {
        let v = [primary(Grade::Degraded), replica(Grade::Healthy)];
        let reads = select(&v, Intent::Read, STALE, Some(0));
        assert_eq!(reads.candidates, vec![1, 0]);
        let writes = select(&v, Intent::Write, STALE, Some(0));
        assert_eq!(
            writes.candidates,
            vec![0],
            "the only writable region, degraded"
        );
    }

    #[test]
    fn latest_reads_never_go_to_a_replica() {
        let v = [primary(Grade::Degraded), replica(Grade::Healthy)];
        let s = select(&v, Intent::Read, Consistency::Latest, None);
        assert_eq!(s.candidates, vec![0]);
        let down = [primary(Grade::Down), replica(Grade::Healthy)];
        let s = select(&down, Intent::Read, Consistency::Latest, None);
        assert_eq!(s.serving, None);
        assert_eq!(s.candidates, vec![0], "last resort, never the replica");
    }

    #[test]
    fn fail_back_waits_for_stability() {
        let mut v = [primary(Grade::Healthy), replica(Grade::Healthy)];
        v[0].stable = false;
        let s = select(&v, Intent::Read, STALE, Some(1));
        assert_eq!(s.serving, Some(1), "hysteresis: stay on the secondary");
        assert_eq!(s.candidates, vec![1, 0]);
        v[0].stable = true;
        assert_eq!(select(&v, Intent::Read, STALE, Some(1)).serving, Some(0));
    }

    #[test]
    fn writes_fail_back_without_hysteresis() {
        let v = [
            RegionView {
                stable: false,
                ..primary(Grade::Degraded)
            },
            primary(Grade::Down),
        ];
        let s = select(&v, Intent::Write, STALE, Some(1));
        assert_eq!(s.serving, Some(0));
        assert_eq!(s.candidates, vec![0]);
    }

    #[test]
    fn down_regions_are_only_a_last_resort() {
        let v = [primary(Grade::Down), replica(Grade::Down)];
        let s = select(&v, Intent::Read, STALE, Some(0));
        assert_eq!(s.serving, None);
        assert_eq!(s.candidates, vec![0, 1]);
        let w = select(&v, Intent::Write, STALE, Some(0));
        assert_eq!(w.candidates, vec![0]);
    }

    #[test]
    fn open_breakers_and_saturation_exclude() {
        let mut v = [primary(Grade::Healthy), replica(Grade::Healthy)];
        v[0].permitted = false;
        assert_eq!(select(&v, Intent::Read, STALE, None).candidates, vec![1]);
        assert!(
            select(&v, Intent::Write, STALE, None).candidates.is_empty(),
            "isolated by hand"
        );
        v[0].bypassable = true;
        let s = select(&v, Intent::Write, STALE, None);
        assert_eq!(
            s.candidates,
            vec![0],
            "nowhere better to go: past the open breaker"
        );
        assert!(s.last_resort);
        assert!(!select(&v, Intent::Read, STALE, None).last_resort);
        v[0].permitted = true;
        v[0].grade = Grade::Degraded;
        v[0].saturated = true;
        assert!(
            select(&v, Intent::Write, STALE, None).candidates.is_empty(),
            "a saturated region sheds instead of queueing"
        );
    }

    #[test]
    fn the_last_resort_prefers_a_degraded_region_behind_an_open_breaker_to_a_down_one() {
        let mut v = [primary(Grade::Down), replica(Grade::Degraded)];
        v[1].permitted = false;
        v[1].bypassable = true;
        let s = select(&v, Intent::Read, STALE, None);
        assert!(s.last_resort);
        assert_eq!(s.candidates, vec![1, 0]);
        let w = select(&v, Intent::Write, STALE, None);
        assert_eq!(w.candidates, vec![0], "the replica takes no writes");
    }

    #[test]
    fn a_serving_region_in_the_best_grade_stays() {
        let v = [primary(Grade::Degraded), replica(Grade::Degraded)];
        let s = select(&v, Intent::Read, STALE, Some(1));
        assert_eq!(s.serving, Some(1));
        assert_eq!(s.candidates, vec![1, 0]);
    }
}
