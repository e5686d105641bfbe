//! The breaker's state machine and its shared handle.
//!
//! ```text
//!            failure or slow rate ≥ threshold
//!            (with ≥ minimum_calls in the window)
//!   Closed ────────────────────────────────────▶ Open ◀──── any probe fails
//!     ▲                                           │          (open duration grows)
//!     │ half_open_calls probes succeed            │ open duration elapsed
//!     └──────────────────────────────── HalfOpen ◀┘ (checked lazily on the next call)
//!
//!   isolate() ▶ Isolated (rejects everything)       reset() ▶ Closed (window cleared)
//! ```
//!
//! Results count only in the state *generation* they started in: a slow call that began
//! before the breaker opened cannot close it, and a probe from an earlier half-open period
//! cannot decide a later one. A probe whose caller gave up (the future was dropped) gives
//! its slot back.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::Instant;

use super::config::CircuitBreakerConfig;
use super::window::{Totals, Window};
use crate::classify::{SharedClassifier, SqlServerClassifier};
use crate::observe::{emit, Event, SharedObserver};

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls flow; results are judged.
    Closed,
    /// Calls are rejected until the open duration elapses.
    Open,
    /// A few probe calls are let through to test recovery; others are rejected.
    HalfOpen,
    /// Forced open by [`CircuitBreakerHandle::isolate`] until [`CircuitBreakerHandle::reset`].
    Isolated,
}

impl BreakerState {
    /// Every state, for exporting one gauge per state.
    pub const ALL: [BreakerState; 4] = [
        BreakerState::Closed,
        BreakerState::Open,
        BreakerState::HalfOpen,
        BreakerState::Isolated,
    ];

    /// `closed`, `open`, `half_open` or `isolated`.
    pub const fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
            BreakerState::Isolated => "isolated",
        }
    }

    fn to_u8(self) -> u8 {
        self as u8
    }

    fn from_u8(v: u8) -> Self {
        match v {
            0 => BreakerState::Closed,
            1 => BreakerState::Open,
            2 => BreakerState::HalfOpen,
            _ => BreakerState::Isolated,
        }
    }
}

/// One state change, as delivered to [`CircuitBreakerHandle::subscribe`]rs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The breaker's name.
    pub name: Cow<'static, str>,
    /// The state left.
    pub from: BreakerState,
    /// The state entered.
    pub to: BreakerState,
    /// When (tokio clock).
    pub at: Instant,
}

/// A point-in-time view of a breaker.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerSnapshot {
    /// Current state.
    pub state: BreakerState,
    /// Totals in the sliding window (closed state).
    pub window: Totals,
    /// When an open breaker will let probes through.
    pub open_until: Option<Instant>,
    /// Openings in a row without closing in between.
    pub consecutive_opens: u32,
    /// Calls rejected since the breaker was created.
    pub rejected_total: u64,
}

/// How a finished call counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CallResult {
    Success,
    Failure,
    /// Neither (e.g. nothing reached the dependency).
    Ignored,
}

/// A permission to run one call, tied to the state generation it was given in.
#[derive(Debug, Clone, Copy)]
pub(super) struct Permit {
    probe: bool,
    generation: u64,
}

#[derive(Debug)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { in_flight: u32, successes: u32 },
    Isolated,
}

impl Phase {
    fn state(&self) -> BreakerState {
        match self {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
            Phase::Isolated => BreakerState::Isolated,
        }
    }
}

#[derive(Debug)]
struct Machine {
    phase: Phase,
    generation: u64,
    window: Window,
    consecutive_opens: u32,
    rejected: u64,
    rng: fastrand::Rng,
}

struct Shared {
    config: CircuitBreakerConfig,
    classifier: SharedClassifier,
    observer: Option<SharedObserver>,
    state: AtomicU8,
    machine: Mutex<Machine>,
    transitions: broadcast::Sender<Transition>,
}

/// A circuit breaker: its configuration, state and subscribers. Cloning shares it; the
/// [`CircuitBreakerLayer`](super::CircuitBreakerLayer) and any number of services use the
/// same handle.
#[derive(Clone)]
pub struct CircuitBreakerHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for CircuitBreakerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreakerHandle")
            .field("name", &self.shared.config.name)
            .field("state", &self.state())
            .finish()
    }
}

impl CircuitBreakerHandle {
    /// A closed breaker using [`SqlServerClassifier`] and no observer.
    pub fn new(config: CircuitBreakerConfig) -> Self {
        Self::with_parts(config, Arc::new(SqlServerClassifier::new()), None)
    }

    /// A closed breaker judging errors with `classifier` and reporting to `observer`.
    pub fn with_parts(
        config: CircuitBreakerConfig,
        classifier: SharedClassifier,
        observer: Option<SharedObserver>,
    ) -> Self {
        let now = Instant::now();
        let rng = config
            .seed
            .map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed);
        CircuitBreakerHandle {
            shared: Arc::new(Shared {
                machine: Mutex::new(Machine {
                    phase: Phase::Closed,
                    generation: 0,
                    window: Window::new(config.window, now),
                    consecutive_opens: 0,
                    rejected: 0,
                    rng,
                }),
                config,
                classifier,
                observer,
                state: AtomicU8::new(BreakerState::Closed.to_u8()),
                transitions: broadcast::channel(64).0,
            }),
        }
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.shared.config.name
    }

    /// The current state: one atomic load. An open breaker whose open duration has elapsed
    /// reports `Open` until the next call moves it to `HalfOpen`.
    pub fn state(&self) -> BreakerState {
        BreakerState::from_u8(self.shared.state.load(Ordering::Acquire))
    }

    /// Whether a call made now would be let through (an open breaker whose open duration
    /// has elapsed would let a probe through). Half-open counts as permitted even when
    /// every probe slot is taken.
    pub fn is_call_permitted(&self) -> bool {
        match self.state() {
            BreakerState::Closed | BreakerState::HalfOpen => true,
            BreakerState::Isolated => false,
            BreakerState::Open => match self.lock().phase {
                Phase::Open { until } => Instant::now() >= until,
                _ => true,
            },
        }
    }

    /// A fuller view, including the window's totals.
    pub fn snapshot(&self) -> BreakerSnapshot {
        let now = Instant::now();
        let mut m = self.lock();
        BreakerSnapshot {
            state: m.phase.state(),
            window: m.window.totals(now),
            open_until: match m.phase {
                Phase::Open { until } => Some(until),
                _ => None,
            },
            consecutive_opens: m.consecutive_opens,
            rejected_total: m.rejected,
        }
    }

    /// Every later state change. A receiver that falls more than 64 changes behind skips
    /// the oldest (and is told so by `broadcast`).
    pub fn subscribe(&self) -> broadcast::Receiver<Transition> {
        self.shared.transitions.subscribe()
    }

    /// Forces the breaker open (e.g. to drain a region by hand) until [`reset`](Self::reset).
    pub fn isolate(&self) {
        self.transition_with(|m, _| {
            Some(Phase::Isolated).filter(|_| !matches!(m.phase, Phase::Isolated))
        });
    }

    /// Ends an open period now, so the next call goes through as a half-open probe. For
    /// outside evidence of recovery (a health probe that succeeded); does nothing unless
    /// the breaker is open.
    pub fn allow_probe_now(&self) {
        let now = Instant::now();
        let mut m = self.lock();
        if let Phase::Open { until } = &mut m.phase {
            if *until > now {
                *until = now;
            }
        }
    }

    /// Closes the breaker and clears its window and open-duration growth.
    pub fn reset(&self) {
        self.transition_with(|m, now| {
            m.consecutive_opens = 0;
            m.window.clear(now);
            Some(Phase::Closed).filter(|_| !matches!(m.phase, Phase::Closed))
        });
    }

    pub(super) fn classifier(&self) -> &SharedClassifier {
        &self.shared.classifier
    }

    pub(super) fn observer(&self) -> Option<&SharedObserver> {
        self.shared.observer.as_ref()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Machine> {
        self.shared
            .machine
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Asks to run one call now. `Err` carries the state that rejected it.
    pub(super) fn acquire(&self) -> Result<Permit, BreakerState> {
        let now = Instant::now();
        let mut m = self.lock();
        if let Phase::Open { until } = m.phase {
            if now >= until {
                let from = self.enter(
                    &mut m,
                    Phase::HalfOpen {
                        in_flight: 0,
                        successes: 0,
                    },
                    now,
                );
                drop(m);
                self.announce(from, BreakerState::HalfOpen, now);
                m = self.lock();
            }
        }
        let generation = m.generation;
        let result = match &mut m.phase {
            Phase::Closed => Ok(Permit {
                probe: false,
                generation,
            }),
            Phase::HalfOpen {
                in_flight,
                successes,
            } => {
                if *in_flight + *successes < self.shared.config.half_open_calls {
                    *in_flight += 1;
                    Ok(Permit {
                        probe: true,
                        generation,
                    })
                } else {
                    Err(BreakerState::HalfOpen)
                }
            }
            Phase::Open { .. } => Err(BreakerState::Open),
            Phase::Isolated => Err(BreakerState::Isolated),
        };
        if result.is_err() {
            m.rejected += 1;
        }
        result
    }

    /// Records how a permitted call ended.
    pub(super) fn record(&self, permit: Permit, result: CallResult, elapsed: Duration) {
        let now = Instant::now();
        let config = &self.shared.config;
        let slow = elapsed >= config.slow_call_duration;
        let mut m = self.lock();
        if m.generation != permit.generation {
            return;
        }
        let next = match (&mut m.phase, result) {
            (_, CallResult::Ignored) => {
                if permit.probe {
                    self.release_locked(&mut m);
                }
                None
            }
            (Phase::Closed, result) => {
                let failed = result == CallResult::Failure;
                m.window.record(failed, slow, now);
                let totals = m.window.totals(now);
                let judged = totals.calls >= config.minimum_calls;
                (judged
                    && (totals.failure_rate() >= config.failure_rate_threshold
                        || totals.slow_rate() >= config.slow_call_rate_threshold))
                    .then(|| self.open_phase(&mut m, now))
            }
            (
                Phase::HalfOpen {
                    in_flight,
                    successes,
                },
                result,
            ) => {
                *in_flight = in_flight.saturating_sub(1);
                let slow_counts = config.slow_call_rate_threshold < 1.0 && slow;
                if result == CallResult::Failure || slow_counts {
                    Some(self.open_phase(&mut m, now))
                } else {
                    *successes += 1;
                    (*successes >= config.half_open_calls).then_some(Phase::Closed)
                }
            }
            _ => None,
        };
        if let Some(next) = next {
            if matches!(next, Phase::Closed) {
                m.consecutive_opens = 0;
                m.window.clear(now);
            }
            let to = next.state();
            let from = self.enter(&mut m, next, now);
            drop(m);
            self.announce(from, to, now);
        }
    }

    /// Gives back a probe slot whose call was abandoned.
    pub(super) fn release(&self, permit: Permit) {
        if permit.probe {
            let mut m = self.lock();
            if m.generation == permit.generation {
                self.release_locked(&mut m);
            }
        }
    }

    fn release_locked(&self, m: &mut Machine) {
        if let Phase::HalfOpen { in_flight, .. } = &mut m.phase {
            *in_flight = in_flight.saturating_sub(1);
        }
    }

    fn open_phase(&self, m: &mut Machine, now: Instant) -> Phase {
        let c = &self.shared.config;
        m.consecutive_opens += 1;
        let growth = c
            .open_backoff_multiplier
            .powi(m.consecutive_opens.saturating_sub(1).min(64) as i32);
        let base = c
            .open_duration
            .mul_f64(growth.min(1e6))
            .min(c.max_open_duration);
        let spread = 1.0 + c.open_jitter * (2.0 * m.rng.f64() - 1.0);
        // `base` ≤ 24 h and `spread` < 2: neither can overflow, and the instant saturates.
        Phase::Open {
            until: crate::deadline::instant_after(now, base.mul_f64(spread)),
        }
    }

    /// Switches phase under the lock; returns the state left.
    fn enter(&self, m: &mut Machine, next: Phase, now: Instant) -> BreakerState {
        let from = m.phase.state();
        if matches!(next, Phase::Closed) {
            m.window.clear(now);
        }
        self.shared
            .state
            .store(next.state().to_u8(), Ordering::Release);
        m.phase = next;
        m.generation += 1;
        from
    }

    fn transition_with(&self, f: impl FnOnce(&mut Machine, Instant) -> Option<Phase>) {
        let now = Instant::now();
        let mut m = self.lock();
        if let Some(next) = f(&mut m, now) {
            let to = next.state();
            let from = self.enter(&mut m, next, now);
            drop(m);
            self.announce(from, to, now);
        }
    }

    /// Reports a transition after the lock is released.
    fn announce(&self, from: BreakerState, to: BreakerState, at: Instant) {
        if from == to {
            return;
        }
        let name = &self.shared.config.name;
        emit(
            self.shared.observer.as_ref(),
            Event::BreakerTransition { name, from, to },
        );
        // No receivers is fine.
        let _ = self.shared.transitions.send(Transition {
            name: name.clone(),
            from,
            to,
            at,
        });
    }
}
