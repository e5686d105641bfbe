//! When an idle pooled connection must be proven with a `SELECT 1` round trip before
//! reuse, and the evidence that spares it: answers the server sent on established
//! sessions, kept per server address.
//!
//! The check exists to find a session that died while idle before a request is sent into
//! it. It costs one round trip, so on a region a second slower each way a check after the
//! configured 2 s of idleness doubled every request's time. It is skipped:
//! - while the connection has been idle for less than `revalidate_after`;
//! - while it has been idle for less than two of the region's round trips (its smoothed
//!   estimate), *if* its server answered within the last two round trips;
//! - up to [`PROVEN_PATH_MAX_IDLE`] of idleness, if its server (the same address: after a
//!   gateway redirect, the same node) answered a request sent after the connection's last
//!   use, within the last two round trips.
//!
//! The freshness condition matters: at the onset of a black hole, the answers that went
//! before it prove nothing for long, and the check's short timeout is what keeps requests
//! from being sent into it (without it, the 2023 replay lost ~30 writes in the first
//! second of its last stall). A session the server closed meanwhile has its FIN or RST
//! waiting in the socket, which the zero-wait check before a request's first byte finds
//! (the request fails *not sent*); a write that cannot be re-sent is still proven on a
//! suspect connection (see [`suspicion`](super::suspicion)).

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The longest idleness for which the server's answers on other sessions stand in for a
/// connection's own check: well under the idle timeouts at which load balancers and NATs
/// drop flows silently (Azure's load balancer: 4 minutes by default).
const PROVEN_PATH_MAX_IDLE: Duration = Duration::from_secs(30);

/// How many of the region's smoothed round trips an answer stays fresh, and a connection
/// may sit idle without a check while its server answers.
const ROUND_TRIPS: u32 = 2;

/// Server addresses remembered at once (a region has one, or a few after redirects);
/// the one answered longest ago gives way.
const MAX_PEERS: usize = 8;

#[derive(Debug, Clone, Copy)]
struct Peer {
    addr: SocketAddr,
    /// When its latest answer arrived.
    answered: Instant,
    /// When the latest-sent of its answered requests was sent — a lower bound (the
    /// moment its checkout began), so that it never proves too much.
    sent: Instant,
}

/// The answers a region's servers sent on established sessions, per address.
#[derive(Debug, Default)]
pub(crate) struct PathProof {
    peers: Mutex<Vec<Peer>>,
}

/// What the evidence says about one idle connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Evidence {
    /// How long ago its server last answered (on any session).
    pub last_answer_age: Option<Duration>,
    /// Whether its server answered a request sent after the connection's last use.
    pub answered_since_last_use: bool,
}

impl PathProof {
    /// A request sent no earlier than `sent` on a session to `addr` was answered at `at`
    /// — with rows or with an error of the server's own.
    pub(crate) fn answered(&self, addr: SocketAddr, sent: Instant, at: Instant) {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = peers.iter_mut().find(|p| p.addr == addr) {
            p.answered = p.answered.max(at);
            p.sent = p.sent.max(sent);
            return;
        }
        let peer = Peer {
            addr,
            answered: at,
            sent,
        };
        if peers.len() < MAX_PEERS {
            peers.push(peer);
        } else if let Some(oldest) = peers.iter_mut().min_by_key(|p| p.answered) {
            *oldest = peer;
        }
    }

    /// The evidence, at `now`, for a connection to `addr` last used at `last_used`.
    pub(crate) fn evidence(&self, addr: SocketAddr, last_used: Instant, now: Instant) -> Evidence {
        let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        peers
            .iter()
            .find(|p| p.addr == addr)
            .map_or_else(Evidence::default, |p| Evidence {
                last_answer_age: Some(now.saturating_duration_since(p.answered)),
                answered_since_last_use: p.sent > last_used,
            })
    }
}

/// Whether a connection idle for `idle` must be proven before reuse, on a region whose
/// smoothed round trip is `srtt`, with `evidence` from its server (see the module docs).
pub(crate) fn needs_check(
    idle: Duration,
    revalidate_after: Duration,
    srtt: Option<Duration>,
    evidence: Evidence,
) -> bool {
    if idle < revalidate_after {
        return false;
    }
    let Some(srtt) = srtt else { return true };
    let window = srtt.saturating_mul(ROUND_TRIPS).min(PROVEN_PATH_MAX_IDLE);
    let fresh = evidence.last_answer_age.is_some_and(|age| age <= window);
    if !fresh {
        return true;
    }
    let proven = evidence.answered_since_last_use && idle < PROVEN_PATH_MAX_IDLE;
    !(idle < window || proven)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn evidence(age: Option<u32>, since_last_use: bool) -> Evidence {
        Evidence {
            last_answer_age: age.map(|a| S * a),
            answered_since_last_use: since_last_use,
        }
    }

    #[test]
    fn an_idle_connection_is_checked_unless_its_server_lately_answered() {
        let after = 2 * S;
        let fast = Some(Duration::from_millis(1));
        let slow = Some(2 * S);
        let answering = evidence(Some(0), true);
        assert!(
            !needs_check(S, after, fast, evidence(None, false)),
            "used recently"
        );
        assert!(
            needs_check(2 * S, after, None, answering),
            "no estimate yet"
        );
        assert!(
            needs_check(2 * S, after, fast, evidence(None, false)),
            "no answer"
        );
        assert!(
            !needs_check(2 * S, after, fast, answering),
            "proven since its last use"
        );
        assert!(
            needs_check(2 * S, after, fast, evidence(Some(0), false)),
            "answered, but only requests sent before its last use"
        );
        assert!(
            needs_check(2 * S, after, fast, evidence(Some(1), true)),
            "no answer for two round trips: a black hole may have begun"
        );
        assert!(
            needs_check(PROVEN_PATH_MAX_IDLE, after, fast, answering),
            "idle for long: only its own round trip proves it"
        );
        // A 2 s round trip: idle for less than two of them is not worth a check while
        // the server answers — and is when it has stopped.
        assert!(!needs_check(3 * S, after, slow, evidence(Some(1), false)));
        assert!(needs_check(3 * S, after, slow, evidence(Some(5), false)));
        assert!(needs_check(4 * S, after, slow, evidence(Some(1), false)));
        assert!(!needs_check(10 * S, after, slow, evidence(Some(1), true)));
        // However slow the region, past the proven-path limit a check is made.
        assert!(needs_check(
            PROVEN_PATH_MAX_IDLE,
            after,
            Some(60 * S),
            answering
        ));
    }

    #[test]
    fn evidence_is_per_server_and_counts_requests_sent_after_the_last_use() {
        let proof = PathProof::default();
        let t0 = Instant::now();
        let a: SocketAddr = "10.0.0.1:1433".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:1433".parse().unwrap();
        assert_eq!(
            proof.evidence(a, t0, t0),
            Evidence::default(),
            "nothing yet"
        );
        proof.answered(a, t0 + S, t0 + 2 * S);
        let e = proof.evidence(a, t0, t0 + 3 * S);
        assert_eq!(e.last_answer_age, Some(S));
        assert!(e.answered_since_last_use);
        assert!(
            !proof
                .evidence(a, t0 + S, t0 + 3 * S)
                .answered_since_last_use,
            "sent at its last use, not after"
        );
        assert_eq!(
            proof.evidence(b, t0, t0 + 3 * S),
            Evidence::default(),
            "another node's answers prove nothing for this one"
        );
        // An older request answered late moves neither mark back.
        proof.answered(a, t0, t0 + S);
        let e = proof.evidence(a, t0, t0 + 3 * S);
        assert_eq!(e.last_answer_age, Some(S));
        assert!(e.answered_since_last_use);
    }

    #[test]
    fn at_most_eight_servers_are_remembered_the_longest_silent_giving_way() {
        let proof = PathProof::default();
        let t0 = Instant::now();
        let addr = |i: u8| SocketAddr::from(([10, 0, 0, i], 1433));
        for i in 0..9u8 {
            proof.answered(addr(i), t0, t0 + S * u32::from(i));
        }
        assert_eq!(proof.peers.lock().unwrap().len(), MAX_PEERS);
        assert_eq!(proof.evidence(addr(0), t0, t0), Evidence::default());
        assert!(proof.evidence(addr(8), t0, t0).last_answer_age.is_some());
    }
}
