//! The router's background tasks: one health probe per region (supervised: a panic is
//! logged and the probe restarts), and one listener per region breaker whose transitions
//! re-evaluate the serving regions.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::probe::{self, ProbeSettings, Prober};
use super::{FailoverSettings, Router};
use crate::circuit_breaker::BreakerState;

/// Starts every region's probe and breaker listener.
pub(super) fn spawn(
    router: &Router,
    probers: Vec<Option<Arc<dyn Prober>>>,
    settings: &FailoverSettings,
) -> Vec<JoinHandle<()>> {
    // Seeded per process: a fleet nudged at the same moment (a failover-group flip) must
    // not probe in lock-step.
    let process_seed = fastrand::u64(..);
    let mut tasks = Vec::new();
    for (index, prober) in probers.into_iter().enumerate() {
        let weak = Arc::downgrade(&router.shared);
        let region = &router.shared.regions[index];
        if let Some(prober) = prober {
            // `FailoverSettings` is a plain struct: values the configuration would reject
            // are raised to the smallest sane ones here rather than spin or never answer.
            let timeout = settings.probe_timeout.max(Duration::from_millis(1));
            let probe_settings = ProbeSettings {
                interval: settings
                    .probe_interval
                    .max(crate::config::MIN_PROBE_INTERVAL),
                timeout,
                max_timeout: settings.max_probe_timeout.max(timeout),
                jitter: settings.probe_jitter,
                seed: process_seed ^ index as u64,
            };
            let (health, latency, nudge, breaker) = (
                region.health.clone(),
                region.latency.clone(),
                region.nudge.clone(),
                region.breaker.clone(),
            );
            let name = region.name.clone();
            let weak = weak.clone();
            let pool = region.pool.clone();
            tasks.push(tokio::spawn(probe::supervise(name, move || {
                let (health, breaker, weak, pool) =
                    (health.clone(), breaker.clone(), weak.clone(), pool.clone());
                probe::run(
                    prober.clone(),
                    probe_settings,
                    latency.clone(),
                    nudge.clone(),
                    move |result| {
                        let now = Instant::now();
                        if result.is_ok() {
                            // The probe saw the region answer: an open breaker may try it
                            // now rather than wait out its (growing) open duration.
                            breaker.allow_probe_now();
                        }
                        let changed = match result {
                            Ok(ok) => health.probe_ok(ok, now),
                            Err((error, latency)) => {
                                // The region failed to answer: its idle connections may
                                // be as dead (a black hole, a reset path).
                                if let Some(pool) = &pool {
                                    pool.suspicion().unanswered();
                                }
                                health.probe_failed(error, latency, now)
                            }
                        };
                        if let Some(shared) = weak.upgrade() {
                            let router = Router { shared };
                            if changed {
                                router.health_changed(index);
                            } else {
                                router.publish();
                            }
                        }
                    },
                )
            })));
        }
        let mut transitions = region.breaker.subscribe();
        let health = region.health.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                match transitions.recv().await {
                    Ok(t) => {
                        if t.to == BreakerState::Open || t.to == BreakerState::Isolated {
                            health.note_trouble(t.at);
                        }
                        match weak.upgrade() {
                            Some(shared) => Router { shared }.reevaluate(),
                            None => return,
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        }));
    }
    tasks
}
