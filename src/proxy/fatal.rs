//! The error that stops the proxy with the audit exit status: a decision could not be recorded.
//! It travels inside `io::Error` through the pumps and the outbox (whose other errors are
//! ordinary ends of a stream) and is recognised by its type, never by `io::ErrorKind`: an
//! unrelated error never exits with the audit status.

use std::fmt::Display;
use std::io;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct AuditFailure(String);

impl AuditFailure {
    /// An `io::Error` carrying an audit failure described by `what`.
    pub(crate) fn io(what: impl Display) -> io::Error {
        io::Error::other(AuditFailure(what.to_string()))
    }

    /// The audit failure inside `e`, if that is what `e` is.
    pub(crate) fn find(e: &io::Error) -> Option<&AuditFailure> {
        e.get_ref()?.downcast_ref::<AuditFailure>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_audit_failure_is_recognised_as_one() {
        let e = AuditFailure::io("cannot record a decision: disk full");
        assert_eq!(
            AuditFailure::find(&e).map(ToString::to_string).as_deref(),
            Some("cannot record a decision: disk full")
        );
        assert!(AuditFailure::find(&io::Error::other("recorder lock poisoned")).is_none());
        assert!(AuditFailure::find(&io::Error::from(io::ErrorKind::BrokenPipe)).is_none());
    }
}
