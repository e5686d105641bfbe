//! The ambient deadline: a deadline set around a whole piece of work (typically by an HTTP
//! layer, from the API request's own time budget) that every call made inside it obeys.
//!
//! It can only shorten a call's budget, never lengthen it: nested scopes keep the earliest
//! deadline, and the [`Deadline`](super::Deadline) layer takes the minimum of its own budget,
//! the request's deadline and the ambient one.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

tokio::task_local! {
    static AMBIENT: Instant;
}

/// Runs `fut` with an ambient deadline of `deadline` (or the enclosing one, if earlier).
pub async fn with_deadline<F: Future>(deadline: Instant, fut: F) -> F::Output {
    let effective = current().map_or(deadline, |outer| outer.min(deadline));
    AMBIENT.scope(effective, fut).await
}

/// Runs `fut` with an ambient deadline `budget` from now (or the enclosing one, if earlier).
///
/// Any `budget` is accepted: one too long for the clock (`Duration::MAX`) saturates to a
/// far-future deadline (see [`instant_after`](super::instant_after)), which leaves the
/// calls inside bounded by their own budgets.
pub async fn with_budget<F: Future>(budget: Duration, fut: F) -> F::Output {
    with_deadline(super::instant_after(Instant::now(), budget), fut).await
}

/// The ambient deadline of the current task, if one is set.
pub fn current() -> Option<Instant> {
    AMBIENT.try_with(|d| *d).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn nested_scopes_keep_the_earliest_deadline() {
        assert_eq!(current(), None);
        let now = Instant::now();
        let outer = now + Duration::from_secs(1);
        with_deadline(outer, async move {
            assert_eq!(current(), Some(outer));
            with_budget(Duration::from_secs(10), async move {
                assert_eq!(current(), Some(outer));
            })
            .await;
            with_budget(Duration::from_millis(100), async move {
                assert_eq!(current(), Some(now + Duration::from_millis(100)));
            })
            .await;
        })
        .await;
        assert_eq!(current(), None);
    }
}
