//! The `metrics`-facade observer and the gauges read from the stack.

use metrics::{counter, gauge, histogram};

use super::names::*;
use crate::circuit_breaker::BreakerState;
use crate::error::Outcome;
use crate::failover::Grade;
use crate::observe::{Event, Observer};
use crate::request::Intent;
use crate::Stack;

/// Turns the layers' [`Event`]s into `metrics` counters and gauges. Install a recorder
/// (e.g. `metrics-exporter-prometheus`) in the application; without one this costs a few
/// no-op calls.
#[derive(Debug, Default, Clone, Copy)]
pub struct MetricsObserver;

fn outcome_label(outcome: Option<Outcome>) -> &'static str {
    outcome.map_or("success", Outcome::as_str)
}

impl Observer for MetricsObserver {
    fn on_event(&self, event: &Event<'_>) {
        match *event {
            Event::RetryScheduled { error, .. } => {
                counter!(RETRIES, "error_type" => error.kind().as_str()).increment(1)
            }
            Event::RetryBudgetExhausted { .. } => counter!(RETRY_BUDGET_EXHAUSTED).increment(1),
            Event::BreakerTransition { name, from, to } => {
                counter!(BREAKER_TRANSITIONS, "region" => name.to_owned(), "from" => from.as_str(), "to" => to.as_str())
                    .increment(1);
                set_breaker_state(name, to);
            }
            Event::BreakerRejected { name, .. } => {
                counter!(BREAKER_REJECTIONS, "region" => name.to_owned()).increment(1)
            }
            Event::DeadlineExceeded { operation } => {
                counter!(DEADLINE_EXCEEDED, "db_operation_name" => operation.to_owned()).increment(1)
            }
            Event::AttemptTimedOut { .. } => counter!(ATTEMPT_TIMEOUTS).increment(1),
            Event::FailoverAttempt { from, to, intent, .. } => counter!(
                FAILOVERS, "from" => from.to_owned(), "to" => to.to_owned(), "intent" => intent.as_str()
            )
            .increment(1),
            Event::Hedged { from, to, .. } => {
                counter!(HEDGES, "from" => from.to_owned(), "to" => to.to_owned()).increment(1)
            }
            Event::RegionSwitched { intent, from, to } => {
                counter!(
                    REGION_SWITCHES,
                    "intent" => intent.as_str(),
                    "from" => from.unwrap_or("none").to_owned(),
                    "to" => to.unwrap_or("none").to_owned()
                )
                .increment(1);
                if let Some(from) = from {
                    gauge!(REGION_SERVING, "region" => from.to_owned(), "intent" => intent.as_str()).set(0.0);
                }
                if let Some(to) = to {
                    gauge!(REGION_SERVING, "region" => to.to_owned(), "intent" => intent.as_str()).set(1.0);
                }
            }
            Event::RegionHealthChanged { region, healthy, grade, writable } => {
                gauge!(REGION_HEALTHY, "region" => region.to_owned()).set(f64::from(u8::from(healthy)));
                gauge!(REGION_DEGRADED, "region" => region.to_owned())
                    .set(f64::from(u8::from(grade == Grade::Degraded)));
                gauge!(REGION_WRITABLE, "region" => region.to_owned()).set(f64::from(u8::from(writable)));
            }
            Event::StaleRead { region, .. } => {
                counter!(STALE_READS, "region" => region.to_owned()).increment(1)
            }
            Event::RedirectFollowed { region } => {
                counter!(REDIRECTS, "region" => region.to_owned()).increment(1)
            }
            Event::ConnectFinished {
                region,
                duration,
                ok: true,
            } => histogram!(CONNECTION_CREATE_TIME, "region" => region.to_owned())
                .record(duration.as_secs_f64()),
            Event::CheckoutFinished { region, waited } => {
                histogram!(CONNECTION_WAIT_TIME, "region" => region.to_owned())
                    .record(waited.as_secs_f64())
            }
            Event::AttemptFinished { region, outcome, .. } => {
                counter!(ATTEMPTS, "region" => region.to_owned(), "outcome" => outcome_label(outcome))
                    .increment(1)
            }
            _ => {}
        }
    }
}

fn set_breaker_state(region: &str, current: BreakerState) {
    for state in BreakerState::ALL {
        gauge!(BREAKER_STATE, "region" => region.to_owned(), "state" => state.as_str())
            .set(if state == current { 1.0 } else { 0.0 });
    }
}

/// Sets every gauge from the stack's current state: region health, writability, serving,
/// breaker state, in-flight, last probe latency, and the pools' figures (bb8's `State`).
/// Call it before each scrape (the example's `/metrics` handler does) or on a timer.
pub fn record_gauges(stack: &Stack) {
    for region in stack.health() {
        let name = region.name.to_string();
        gauge!(REGION_HEALTHY, "region" => name.clone()).set(f64::from(u8::from(region.healthy)));
        gauge!(REGION_DEGRADED, "region" => name.clone())
            .set(f64::from(u8::from(region.grade == Grade::Degraded)));
        if let Some(srtt) = region.latency.srtt {
            gauge!(REGION_RTT, "region" => name.clone()).set(srtt.as_secs_f64());
        }
        gauge!(REGION_WRITABLE, "region" => name.clone()).set(f64::from(u8::from(region.writable)));
        for (intent, serving) in [
            (Intent::Read, region.serving_reads),
            (Intent::Write, region.serving_writes),
        ] {
            gauge!(REGION_SERVING, "region" => name.clone(), "intent" => intent.as_str())
                .set(f64::from(u8::from(serving)));
        }
        set_breaker_state(&name, region.breaker);
        gauge!(REGION_IN_FLIGHT, "region" => name.clone()).set(region.in_flight as f64);
        if let Some(probe) = &region.last_probe {
            gauge!(PROBE_LATENCY, "region" => name.clone()).set(probe.latency.as_secs_f64());
        }
    }
    for (name, pool) in stack.pools() {
        let state = pool.state();
        let used = state.connections.saturating_sub(state.idle_connections);
        gauge!(CONNECTION_COUNT, "region" => name.clone(), "state" => "idle")
            .set(f64::from(state.idle_connections));
        gauge!(CONNECTION_COUNT, "region" => name.clone(), "state" => "used").set(f64::from(used));
        gauge!(CONNECTION_MAX, "region" => name.clone()).set(f64::from(pool.settings().max_size));
        let stats = state.statistics;
        // The pool's own checkout accounting: bb8's leaves checkouts the caller's budget
        // cut short pending forever and never timed out.
        let checkouts = pool.checkout_stats();
        gauge!(CONNECTION_PENDING, "region" => name.clone()).set(checkouts.pending as f64);
        counter!(CONNECTION_TIMEOUTS, "region" => name.clone()).absolute(checkouts.timed_out);
        counter!(POOL_STARVED, "region" => name.clone()).absolute(checkouts.starved);
        counter!(CONNECTION_WAITS, "region" => name.clone()).absolute(stats.get_waited);
        counter!(CONNECTION_CREATED, "region" => name.clone()).absolute(stats.connections_created);
    }
}
