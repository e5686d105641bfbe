//! The *achievable* figure: the share of the requests that an oracle could have served
//! given the network at that moment, computed from the timeline alone (not from any
//! arm's behaviour), so that every arm can be judged against the same ceiling.
//!
//! # The model
//!
//! The oracle knows every phase of the timeline in advance. It holds open, logged-in
//! connections to both regions from the start (as many as it wants: no pool limit), and
//! sends each request **once**, on one connection, to the best region for it, at the best
//! moment between the moment the load generator issued it (`t`) and its deadline (it may
//! hold a request until the network lets it through):
//!
//! * a **read** to either region (the read-only secondary serves reads);
//! * a **write** only to the region writable when it is sent: the primary, or the
//!   secondary from `flip_at` on in a run with the failover-group flip.
//!
//! A request issued at `t` and sent to region `r` at `s` (`t <= s`; the conditions below
//! change only at phase boundaries, so the oracle tries `t` and every boundary up to the
//! deadline) is served when all of these hold:
//!
//! 1. **A connection exists.** Connections opened before a `reset` phase are killed by
//!    it. After the reset ends, a new one is ready once a login has gone through: the
//!    first moment `s` after the reset at which `[s, s + login]` has no `blackhole`,
//!    `reset` or `refuse` and no `login_error` is in force at `s`, where `login` is
//!    [`LOGIN_ROUND_TRIPS`] round trips plus the login's bytes at the bandwidth in force.
//!    `login_error` and `refuse` only stop new logins: open connections keep working.
//! 2. **The request gets there.** It leaves at `s` and reaches the server at
//!    `t1 = s + up latency + request bytes / up bandwidth` (the phases in force at `s`);
//!    no phase that black-holes client → server traffic (`blackhole`, or one with
//!    `direction = "upstream"`) overlaps `[s, t1]`.
//! 3. **The answer gets back.** It arrives at `t2 = t1 + down latency + answer bytes /
//!    down bandwidth` (the phases in force at `t1`); no phase that black-holes
//!    server → client traffic overlaps `[t1, t2]`, and no `reset` overlaps `[s, t2]`.
//! 4. **In time.** `t2 - t` is at most the request's deadline (`--budget`).
//!
//! Latency is the phase's mean one-way `latency` (jitter is ignored); the bytes are
//! those of the replay's queries as measured through the chaos proxy with the test
//! server ([`READ_BYTES`], [`WRITE_BYTES`], [`LOGIN_BYTES`]). The server answers at
//! once. The oracle is not limited by a pool size, so a rise in latency at a high
//! request rate (Little's law) costs it nothing.
//!
//! **Partial failure.** A phase with toxicity `p` affects a share `p` of the
//! connections. The oracle does not know which: its connection for a request carries a
//! uniform draw `u`, and a phase affects it when `u < p` (the chaos proxy's own rule).
//! The request's achievable value is the probability, over `u`, that the rules above
//! serve it (so one phase of toxicity `p` alone makes `1 - p` of the requests on that
//! region achievable). The same draw stands for the connections to both regions and for
//! a connection's replacement after a reset. A `login_error` with a toxicity below 1 is
//! different: there each login fails at random, so the oracle tries again until one goes
//! through, and only a `login_error` of toxicity 1 stops new logins.
//! Since the oracle sends once, an arm that retries on another connection during a
//! partial failure can serve more than this: its `of_achievable` may exceed 100 % there.
//!
//! The figure is an upper bound for a client that sends each request once: no arm can
//! serve more than the oracle, except by trying again on another connection during a
//! partial failure.
//!
//! The figure per arm is the sum of the requests' achievable values over the number of
//! requests the load generator issued (shed ones included), for reads and writes apart,
//! over the whole run and within the primary's outage windows; `of_achievable` is the
//! arm's successes (within the deadline) over that sum.

use std::time::Duration;

use serde_json::{json, Value};

use crate::report::{in_windows, Record};
use crate::timeline::{Direction, Kind, OutagePhase, Target, Timeline};

/// Round trips of a new login over the proxy (PRELOGIN, then LOGIN7; no TLS).
pub const LOGIN_ROUND_TRIPS: u32 = 2;
/// Bytes of a read (the replay's `SELECT ... WHERE id = @P1`): client → server,
/// server → client.
pub const READ_BYTES: (f64, f64) = (191.0, 98.0);
/// Bytes of a write (the replay's `INSERT`).
pub const WRITE_BYTES: (f64, f64) = (301.0, 39.0);
/// Bytes of a login (PRELOGIN and LOGIN7 with their answers).
pub const LOGIN_BYTES: (f64, f64) = (207.0, 288.0);

/// One region's phases as they act on connections of one draw (toxicity resolved).
#[derive(Debug, Clone, Default)]
struct RegionView {
    phases: Vec<OutagePhase>,
    /// For each `reset` phase: its start, and when the first login after it completes
    /// (infinite when none does before the horizon).
    relogins: Vec<(f64, f64)>,
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn overlaps(p: &OutagePhase, a: f64, b: f64) -> bool {
    secs(p.from) <= b && secs(p.to) > a
}

impl RegionView {
    fn at(&self, t: f64) -> impl Iterator<Item = &OutagePhase> {
        self.phases
            .iter()
            .filter(move |p| secs(p.from) <= t && t < secs(p.to))
    }

    /// One-way time for `bytes` leaving at `t` in one direction.
    fn one_way(&self, t: f64, bytes: f64, upstream: bool) -> f64 {
        let mut time = 0.0;
        for p in self.at(t) {
            let applies = match p.direction {
                Direction::Both => true,
                Direction::Upstream => upstream,
                Direction::Downstream => !upstream,
            };
            if !applies {
                continue;
            }
            match p.kind {
                Kind::Latency => time += secs(p.latency),
                Kind::Bandwidth if p.bandwidth == 0 => return f64::INFINITY,
                Kind::Bandwidth => time += bytes / p.bandwidth as f64,
                _ => {}
            }
        }
        time
    }

    fn blackholes(&self, a: f64, b: f64, upstream: bool) -> bool {
        self.phases.iter().any(|p| {
            p.kind == Kind::Blackhole
                && overlaps(p, a, b)
                && match p.direction {
                    Direction::Both => true,
                    Direction::Upstream => upstream,
                    Direction::Downstream => !upstream,
                }
        })
    }

    fn resets(&self, a: f64, b: f64) -> bool {
        self.phases
            .iter()
            .any(|p| p.kind == Kind::Reset && overlaps(p, a, b))
    }

    /// A request with `bytes` (up, down) sent at `t` on an open connection: the time
    /// its answer arrives, or `None` when it is lost.
    fn round_trip(&self, t: f64, bytes: (f64, f64)) -> Option<f64> {
        let t1 = t + self.one_way(t, bytes.0, true);
        let t2 = t1 + self.one_way(t1, bytes.1, false);
        if !t2.is_finite()
            || self.blackholes(t, t1, true)
            || self.blackholes(t1, t2, false)
            || self.resets(t, t2)
        {
            return None;
        }
        Some(t2)
    }

    /// When a login started at `s` completes, or `None` when it cannot.
    fn login(&self, s: f64) -> Option<f64> {
        if self
            .at(s)
            .any(|p| matches!(p.kind, Kind::LoginError | Kind::Refuse))
        {
            return None;
        }
        let mut t = s;
        // The login's bytes split evenly over its round trips.
        let share = f64::from(LOGIN_ROUND_TRIPS);
        let bytes = (LOGIN_BYTES.0 / share, LOGIN_BYTES.1 / share);
        for _ in 0..LOGIN_ROUND_TRIPS {
            t = self.round_trip(t, bytes)?;
        }
        Some(t)
    }

    /// Finds, for every reset, the first login after it that goes through (searched
    /// in 10 ms steps up to `horizon`).
    fn with_relogins(mut self, horizon: f64) -> Self {
        self.relogins = self
            .phases
            .iter()
            .filter(|p| p.kind == Kind::Reset)
            .map(|p| {
                let mut s = secs(p.to);
                let done = loop {
                    if s > horizon {
                        break f64::INFINITY;
                    }
                    if let Some(done) = self.login(s) {
                        break done;
                    }
                    s += 0.01;
                };
                (secs(p.from), done)
            })
            .collect();
        self
    }

    /// Whether the oracle has an open connection at `t`: none since the last reset
    /// until a login went through.
    fn connected(&self, t: f64) -> bool {
        self.relogins
            .iter()
            .filter(|(from, _)| *from <= t)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .is_none_or(|(_, done)| *done <= t)
    }

    /// Whether a request with `bytes` sent at `s` is answered by `by`.
    fn serves(&self, s: f64, bytes: (f64, f64), by: f64) -> bool {
        self.connected(s) && self.round_trip(s, bytes).is_some_and(|t2| t2 <= by)
    }

    /// The moments at which what this region does may change.
    fn boundaries(&self) -> Vec<f64> {
        self.phases
            .iter()
            .flat_map(|p| [secs(p.from), secs(p.to)])
            .chain(self.relogins.iter().map(|(_, done)| *done))
            .collect()
    }
}

/// The oracle of one replay (one timeline, with or without the flip).
#[derive(Debug, Clone)]
pub struct Oracle {
    /// `(weight, [primary, secondary])`: the network as it acts on connections whose
    /// draw falls in an interval of that width.
    views: Vec<(f64, [RegionView; 2])>,
    flip_at: Option<f64>,
    deadline: f64,
    /// Every moment at which the network or the writable region may change, sorted.
    boundaries: Vec<f64>,
}

impl Oracle {
    /// The oracle for `timeline` (as played), its flip time if the run flips, and the
    /// requests' deadline.
    pub fn new(timeline: &Timeline, flip_at: Option<Duration>, deadline: Duration) -> Oracle {
        // Every toxicity is a breakpoint of the draw: within two neighbours the set of
        // phases acting on a connection does not change.
        // A login error that fails only some logins stops no login of the oracle's (it
        // tries again): leave it out.
        let phases: Vec<&OutagePhase> = timeline
            .phases
            .iter()
            .filter(|p| p.kind != Kind::LoginError || p.toxicity >= 1.0)
            .collect();
        let mut cuts: Vec<f64> = vec![0.0, 1.0];
        cuts.extend(phases.iter().map(|p| p.toxicity));
        cuts.sort_by(f64::total_cmp);
        cuts.dedup();
        let horizon = secs(timeline.duration + deadline);
        let views: Vec<(f64, [RegionView; 2])> = cuts
            .windows(2)
            .filter(|w| w[1] > w[0])
            .map(|w| {
                // Draws in [w0, w1): a phase acts on them when its toxicity is >= w1.
                let view = |target: Target| {
                    RegionView {
                        phases: phases
                            .iter()
                            .filter(|p| p.target == target && p.toxicity >= w[1])
                            .map(|p| (*p).clone())
                            .collect(),
                        relogins: Vec::new(),
                    }
                    .with_relogins(horizon)
                };
                (
                    w[1] - w[0],
                    [view(Target::Primary), view(Target::Secondary)],
                )
            })
            .collect();
        let flip_at = flip_at.map(secs);
        let mut boundaries: Vec<f64> = views
            .iter()
            .flat_map(|(_, regions)| regions.iter().flat_map(RegionView::boundaries))
            .chain(flip_at)
            .filter(|b| b.is_finite())
            .collect();
        boundaries.sort_by(f64::total_cmp);
        boundaries.dedup();
        Oracle {
            views,
            flip_at,
            deadline: secs(deadline),
            boundaries,
        }
    }

    /// The probability that the oracle serves a request issued at `at`.
    pub fn achievable(&self, at: Duration, write: bool) -> f64 {
        let t = secs(at);
        let by = t + self.deadline;
        // Send now, or at a later boundary up to the deadline (in between, nothing
        // changes, and sending earlier is never worse).
        let later = self.boundaries.partition_point(|b| *b <= t);
        let moments: Vec<f64> = std::iter::once(t)
            .chain(
                self.boundaries[later..]
                    .iter()
                    .copied()
                    .take_while(|b| *b <= by),
            )
            .collect();
        self.views
            .iter()
            .filter(|(_, regions)| {
                moments.iter().any(|&s| {
                    if write {
                        let writer = usize::from(self.flip_at.is_some_and(|f| s >= f));
                        regions[writer].serves(s, WRITE_BYTES, by)
                    } else {
                        regions.iter().any(|r| r.serves(s, READ_BYTES, by))
                    }
                })
            })
            .map(|(weight, _)| weight)
            .sum()
    }

    /// The `achievable` and `of_achievable` figures of one arm's records (see the
    /// module documentation), as JSON.
    pub fn figures(&self, records: &[Record], windows: &[(Duration, Duration)]) -> Value {
        let mut sums = [[0.0f64; 2]; 2]; // [whole, windows][read, write]
        let mut counts = [[0usize; 2]; 2];
        let mut ok = [[0usize; 2]; 2];
        for r in records {
            let a = self.achievable(r.at, r.write);
            let kind = usize::from(r.write);
            for (scope, inside) in [(0, true), (1, in_windows(r.at, windows))] {
                if inside {
                    sums[scope][kind] += a;
                    counts[scope][kind] += 1;
                    ok[scope][kind] += usize::from(r.ok);
                }
            }
        }
        let share = |scope: usize, kind: usize| {
            (counts[scope][kind] > 0).then(|| sums[scope][kind] / counts[scope][kind] as f64)
        };
        let of = |scope: usize, kind: usize| {
            (sums[scope][kind] > 0.0).then(|| ok[scope][kind] as f64 / sums[scope][kind])
        };
        json!({
            "achievable": {
                "reads": share(0, 0),
                "writes": share(0, 1),
                "outage": { "reads": share(1, 0), "writes": share(1, 1) },
            },
            "of_achievable": {
                "reads": of(0, 0),
                "writes": of(0, 1),
                "outage": { "reads": of(1, 0), "writes": of(1, 1) },
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "name = \"t\"\nduration = \"60s\"\nflip_at = \"30s\"\n";

    fn oracle(phases: &str, flip: bool) -> Oracle {
        let t = Timeline::parse(&format!("{HEAD}{phases}"), "t.toml").unwrap();
        let flip_at = if flip { t.flip_at } else { None };
        Oracle::new(&t, flip_at, Duration::from_secs(5))
    }

    fn phase(from: u32, to: u32, rest: &str) -> String {
        format!("[[phase]]\nfrom = \"{from}s\"\nto = \"{to}s\"\n{rest}\n")
    }

    fn at(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn a_clean_network_serves_everything() {
        let o = oracle("", false);
        assert_eq!(o.achievable(at(1.0), false), 1.0);
        assert_eq!(o.achievable(at(59.0), true), 1.0);
    }

    #[test]
    fn a_primary_blackhole_stops_writes_not_reads() {
        let o = oracle(&phase(10, 20, "kind = \"blackhole\""), false);
        assert_eq!(o.achievable(at(12.0), false), 1.0, "the secondary reads");
        assert_eq!(o.achievable(at(12.0), true), 0.0);
        // Held until the stall ends at 20 s, a write is answered then: too late for one
        // issued before 15 s, in time for one issued after.
        assert_eq!(o.achievable(at(14.9), true), 0.0);
        assert_eq!(o.achievable(at(15.1), true), 1.0);
        assert_eq!(o.achievable(at(9.0), true), 1.0);
        // A write sent just before the stall starts is answered before it.
        assert_eq!(o.achievable(at(9.999), true), 1.0);
        // Idle connections survive a blackhole.
        assert_eq!(o.achievable(at(20.0), true), 1.0);
    }

    #[test]
    fn writes_follow_the_flip() {
        let o = oracle(&phase(40, 50, "kind = \"blackhole\""), true);
        assert_eq!(o.achievable(at(45.0), true), 1.0, "the secondary writes");
        let o = oracle(
            &phase(40, 50, "kind = \"blackhole\"\ntarget = \"secondary\""),
            true,
        );
        assert_eq!(o.achievable(at(42.0), true), 0.0);
        assert_eq!(o.achievable(at(42.0), false), 1.0);
        // Before the flip the primary writes; a write held past the flip goes to the
        // secondary.
        let o = oracle(&phase(20, 40, "kind = \"blackhole\""), true);
        assert_eq!(o.achievable(at(24.0), true), 0.0);
        assert_eq!(o.achievable(at(26.0), true), 1.0);
    }

    #[test]
    fn latency_counts_against_the_deadline() {
        let slow = |latency: &str| {
            oracle(
                &phase(
                    10,
                    20,
                    &format!("kind = \"latency\"\nlatency = \"{latency}\""),
                ),
                false,
            )
        };
        // 1 s each way: a 2 s round trip fits 5 s.
        assert_eq!(slow("1s").achievable(at(12.0), true), 1.0);
        // 3 s each way does not, unless held until the slow phase ends.
        assert_eq!(slow("3s").achievable(at(12.0), true), 0.0);
        assert_eq!(slow("3s").achievable(at(16.0), true), 1.0);
        // From 14 s the answer would arrive at 20 s, and holding it until the phase
        // ends at 20 s is too late too.
        assert_eq!(slow("3s").achievable(at(14.0), true), 0.0);
    }

    #[test]
    fn one_direction_and_bandwidth() {
        let o = oracle(
            &phase(10, 20, "kind = \"blackhole\"\ndirection = \"downstream\""),
            false,
        );
        assert_eq!(o.achievable(at(12.0), true), 0.0);
        let bandwidth = |b: u32| {
            oracle(
                &phase(10, 20, &format!("kind = \"bandwidth\"\nbandwidth = {b}")),
                false,
            )
        };
        // 301 bytes up at 100 B/s take 3 s, 39 down 0.39 s: in time.
        assert_eq!(bandwidth(100).achievable(at(11.0), true), 1.0);
        assert_eq!(
            bandwidth(50).achievable(at(11.0), true),
            0.0,
            "6 s up: too late"
        );
        assert_eq!(bandwidth(0).achievable(at(11.0), true), 0.0, "stalled");
    }

    #[test]
    fn a_reset_kills_connections_until_a_login_goes_through() {
        let o = oracle(
            &(phase(10, 12, "kind = \"reset\"")
                + &phase(12, 20, "kind = \"login_error\"\nerror = 40613")),
            false,
        );
        assert_eq!(o.achievable(at(11.0), true), 0.0);
        assert_eq!(o.achievable(at(14.0), true), 0.0, "no connection, no login");
        assert_eq!(
            o.achievable(at(16.0), true),
            1.0,
            "held until a login at 20 s"
        );
        assert_eq!(o.achievable(at(20.1), true), 1.0, "logged in again");
        // A login storm alone leaves the open connections working.
        let o = oracle(
            &phase(12, 20, "kind = \"login_error\"\nerror = 40613"),
            false,
        );
        assert_eq!(o.achievable(at(13.0), true), 1.0);
        // Logins that fail only at random do not stop the oracle's.
        let o = oracle(
            &(phase(10, 12, "kind = \"reset\"")
                + &phase(
                    12,
                    20,
                    "kind = \"login_error\"\nerror = 40613\ntoxicity = 0.9",
                )),
            false,
        );
        assert_eq!(o.achievable(at(12.5), true), 1.0);
        // Refuse stops new connections only.
        let o = oracle(&phase(12, 20, "kind = \"refuse\""), false);
        assert_eq!(o.achievable(at(13.0), true), 1.0);
    }

    #[test]
    fn toxicity_makes_the_complement_achievable() {
        let o = oracle(
            &phase(10, 20, "kind = \"blackhole\"\ntoxicity = 0.3"),
            false,
        );
        assert!((o.achievable(at(12.0), true) - 0.7).abs() < 1e-9);
        assert_eq!(o.achievable(at(12.0), false), 1.0);
        // Two partial phases: one draw decides both.
        let o = oracle(
            &(phase(10, 20, "kind = \"blackhole\"\ntoxicity = 0.3")
                + &phase(
                    10,
                    20,
                    "kind = \"blackhole\"\ntoxicity = 0.6\ntarget = \"secondary\"",
                )),
            false,
        );
        assert!((o.achievable(at(12.0), false) - 0.7).abs() < 1e-9);
    }

    #[test]
    fn the_2023_replay() {
        let t = Timeline::parse(include_str!("../incident-2023-09-15.toml"), "2023").unwrap();
        let o = Oracle::new(&t, None, Duration::from_secs(5));
        for s in 0..75 {
            assert_eq!(o.achievable(at(f64::from(s)), false), 1.0, "read at {s} s");
        }
        assert_eq!(o.achievable(at(6.0), true), 0.0, "stall");
        assert_eq!(
            o.achievable(at(7.5), true),
            1.0,
            "held until the stall ends at 12 s"
        );
        assert_eq!(o.achievable(at(13.0), true), 1.0, "calm");
        assert_eq!(
            o.achievable(at(16.0), true),
            1.0,
            "held past the reset (15-18 s)"
        );
        assert_eq!(o.achievable(at(20.0), true), 1.0, "latency 400 ms: in time");
        assert_eq!(
            o.achievable(at(24.5), true),
            0.0,
            "reset, then no login until 30 s"
        );
        assert_eq!(
            o.achievable(at(25.5), true),
            1.0,
            "held until a login at 30 s"
        );
        assert_eq!(o.achievable(at(31.0), true), 1.0);
        let with_flip = Oracle::new(&t, t.flip_at, Duration::from_secs(5));
        assert_eq!(
            with_flip.achievable(at(24.5), true),
            1.0,
            "the secondary writes"
        );
    }

    #[test]
    fn figures_sum_over_requests() {
        let o = oracle(&phase(10, 20, "kind = \"blackhole\""), false);
        let rec = |s: f64, write: bool, ok: bool| Record {
            at: at(s),
            latency: Duration::ZERO,
            write,
            ok,
            outcome_unknown: false,
            shed: false,
            error: None,
        };
        let records = vec![
            rec(5.0, true, true),
            rec(11.0, true, false),
            rec(11.0, false, true),
            rec(12.0, true, false),
        ];
        let windows = vec![(at(10.0), at(20.0))];
        let f = o.figures(&records, &windows);
        assert_eq!(f["achievable"]["writes"], json!(1.0 / 3.0));
        assert_eq!(f["achievable"]["reads"], json!(1.0));
        assert_eq!(f["of_achievable"]["writes"], json!(1.0));
        assert_eq!(f["achievable"]["outage"]["writes"], json!(0.0));
        assert_eq!(f["of_achievable"]["outage"]["writes"], Value::Null);
    }
}
