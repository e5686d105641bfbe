//! The write-safety rule: whether a failed request may be sent again — by the retry layer
//! to any region, or by the failover router to the next region — without risking a
//! duplicate write. One rule, used by both.
//!
//! | outcome of the failed attempt | may be re-sent |
//! |---|---|
//! | [`Outcome::NotSent`]: no byte of the request reached the server | always |
//! | [`Outcome::Rejected`], and the error proves nothing was applied (a statement-level error on a lone statement; a deadlock, a fatal error or a rolled-back statement error while the unit's transaction was open) | always |
//! | [`Outcome::Rejected`] that [`may_have_applied`](crate::Error::may_have_applied) (e.g. the unit's `COMMIT` had completed before a later statement failed) | only when the request is idempotent |
//! | [`Outcome::Ambiguous`]: sent, then the connection broke or the attempt timed out | only when the request is idempotent |
//!
//! A server error is not, by itself, proof that nothing was applied: SQL Server undoes
//! the failing statement (or, for a deadlock victim, the open transaction), not what was
//! committed before it. [`classify::rollback`](crate::classify::rollback) holds the rule.
//!
//! Whether re-sending is *worth* it is a separate question, answered by the
//! [classifier](crate::classify) (a syntax error is safe to re-send and pointless).

use crate::error::{Error, Outcome};
use crate::request::RequestContext;

/// Whether the request behind `ctx` may be sent again after failing with `error`.
pub fn may_resend(ctx: &RequestContext, error: &Error) -> bool {
    may_resend_idempotent(ctx.is_idempotent(), error)
}

/// [`may_resend`] for a request whose idempotency is already known.
pub fn may_resend_idempotent(idempotent: bool, error: &Error) -> bool {
    match error.outcome() {
        Outcome::NotSent => true,
        Outcome::Rejected => idempotent || !error.may_have_applied(),
        Outcome::Ambiguous => idempotent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn failed(outcome: Outcome) -> Error {
        Error::new(ErrorKind::Io(std::io::ErrorKind::ConnectionReset), outcome)
    }

    #[test]
    fn ambiguous_writes_are_never_resent() {
        let write = RequestContext::write("w");
        assert!(may_resend(&write, &failed(Outcome::NotSent)));
        assert!(may_resend(&write, &failed(Outcome::Rejected)));
        assert!(!may_resend(&write, &failed(Outcome::Ambiguous)));
        let keyed = RequestContext::write("w").idempotent(true);
        assert!(may_resend(&keyed, &failed(Outcome::Ambiguous)));
        assert!(may_resend(
            &RequestContext::read("r"),
            &failed(Outcome::Ambiguous)
        ));
    }

    #[test]
    fn a_rejection_that_may_have_applied_is_resent_only_when_idempotent() {
        let mut err = failed(Outcome::Rejected);
        err.set_may_have_applied(true);
        assert!(err.may_have_applied());
        assert!(!may_resend(&RequestContext::write("w"), &err));
        assert!(may_resend(
            &RequestContext::write("w").idempotent(true),
            &err
        ));
        assert!(may_resend(&RequestContext::read("r"), &err));
        err.note_idempotency(false);
        assert!(err.is_outcome_unknown());
    }
}
