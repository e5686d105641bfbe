//! The write-safety rule: whether a failed request may be sent again — by the retry layer
//! to any region, or by the failover router to the next region — without risking a
//! duplicate write. One rule, used by both.
//!
//! | outcome of the failed attempt | may be re-sent |
//! |---|---|
//! | [`Outcome::NotSent`]: no byte of the request reached the server | always |
//! | [`Outcome::Rejected`]: the server answered with an error; nothing was applied | always |
//! | [`Outcome::Ambiguous`]: sent, then the connection broke or the attempt timed out | only when the request is idempotent |
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
        Outcome::NotSent | Outcome::Rejected => true,
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
}
