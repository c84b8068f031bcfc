//! Why an upstream attempt produced no relayable response (DESIGN.md §3 forwarding, §4 codes).
//!
//! One typed error says where the attempt broke (connect, write, waiting for the head, the
//! head or body framing), keeps the IO error behind it, and whether the connection was a reused
//! pooled one. The retry rule and the 502/504 choice both read it: the one retry is allowed only
//! when a reused pooled connection failed before any response byte (the upstream may have closed
//! it while idle); a timeout is never retried, since the upstream may still be working.
//!
//! "Response byte" means a byte of the final response head: a 1xx interim response is skipped and
//! never reaches the client, so it does not count.

use crate::error::{ErrorCode, ErrorReply};
use crate::http::ResponseError;
use std::fmt;
use std::io;

/// How a connect (TCP, then TLS for an `https://` upstream) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    /// `ECONNREFUSED`: nothing listens there; the upstream is marked down.
    Refused,
    /// The connection was reset or aborted while being set up.
    Reset,
    /// No connection within `connect_ms`.
    TimedOut,
    /// Anything else (unreachable, TLS refused, ...).
    Other,
}

impl ConnectFailure {
    /// Classifies a connect error by its kind.
    pub fn of(e: &io::Error) -> ConnectFailure {
        match e.kind() {
            io::ErrorKind::ConnectionRefused => ConnectFailure::Refused,
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                ConnectFailure::Reset
            }
            io::ErrorKind::TimedOut => ConnectFailure::TimedOut,
            _ => ConnectFailure::Other,
        }
    }
}

/// What about the upstream's answer could not be relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadResponse {
    /// The connection ended (closed or failed) after part of the head.
    ClosedMidHead,
    /// The head did not parse.
    MalformedHead(ResponseError),
    /// A `101 Switching Protocols`: slotgate does not tunnel upgrades.
    Upgrade,
    /// The body's framing was broken before anything was sent to the client.
    BodyFraming,
}

/// Where the attempt broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    /// Connecting failed.
    Connect(ConnectFailure),
    /// Writing the request failed.
    Write,
    /// Reading failed (reset, ...) before any response byte.
    Read,
    /// The upstream closed the connection before any response byte.
    ClosedBeforeHead,
    /// No complete response head within `first_byte_ms` (bounded by `total_ms`);
    /// `partial_head` when part of it had arrived.
    Timeout {
        /// Some bytes of the head had arrived.
        partial_head: bool,
    },
    /// The upstream answered with something slotgate does not relay.
    BadResponse(BadResponse),
}

/// An upstream attempt that failed: what broke, the IO error behind it, and whether the
/// connection came from the pool.
#[derive(Debug)]
pub struct UpstreamError {
    kind: UpstreamErrorKind,
    source: Option<io::Error>,
    reused: bool,
}

impl UpstreamError {
    /// A failure of `kind` on a connection that was `reused` from the pool, caused by `source`.
    pub fn new(kind: UpstreamErrorKind, source: Option<io::Error>, reused: bool) -> UpstreamError {
        UpstreamError {
            kind,
            source,
            reused,
        }
    }

    /// A failed connect (never a reused connection).
    pub fn connect(e: io::Error) -> UpstreamError {
        UpstreamError::new(
            UpstreamErrorKind::Connect(ConnectFailure::of(&e)),
            Some(e),
            false,
        )
    }

    /// A response that cannot be relayed.
    pub fn bad_response(why: BadResponse, reused: bool) -> UpstreamError {
        UpstreamError::new(UpstreamErrorKind::BadResponse(why), None, reused)
    }

    /// Where the attempt broke.
    pub fn kind(&self) -> UpstreamErrorKind {
        self.kind
    }

    /// Whether the connection was a reused pooled one.
    pub fn reused(&self) -> bool {
        self.reused
    }

    /// Whether the connect was refused (`ECONNREFUSED`).
    pub fn is_refused(&self) -> bool {
        self.kind == UpstreamErrorKind::Connect(ConnectFailure::Refused)
    }

    /// Whether the connect was reset or aborted.
    pub fn is_connect_reset(&self) -> bool {
        self.kind == UpstreamErrorKind::Connect(ConnectFailure::Reset)
    }

    /// Whether no response head came within `first_byte_ms` (answered 504). A connect timeout is
    /// not this: it is a connect failure (502).
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, UpstreamErrorKind::Timeout { .. })
    }

    /// Whether the attempt failed before any response byte arrived.
    pub fn before_first_byte(&self) -> bool {
        match self.kind {
            UpstreamErrorKind::Connect(_)
            | UpstreamErrorKind::Write
            | UpstreamErrorKind::Read
            | UpstreamErrorKind::ClosedBeforeHead => true,
            UpstreamErrorKind::Timeout { partial_head } => !partial_head,
            UpstreamErrorKind::BadResponse(_) => false,
        }
    }

    /// Whether the one retry on a fresh connection is allowed: only a reused pooled connection
    /// that failed before any response byte, and not by timing out.
    pub fn retry_allowed(&self) -> bool {
        self.reused && self.before_first_byte() && !self.is_timeout()
    }

    /// A connect failure (refused, reset, timed out) or no response head within `first_byte_ms`:
    /// what sends a request on to a fallback upstream and counts towards a cooldown. Other
    /// failures (a reset after the request was written, a malformed answer) are answered as
    /// they are: the upstream may have acted on the request.
    pub fn falls_back(&self) -> bool {
        matches!(self.kind, UpstreamErrorKind::Connect(_)) || self.is_timeout()
    }

    /// Whether this failure counts towards the upstream's cooldown (the same as
    /// [`falls_back`](Self::falls_back)).
    pub fn trips_cooldown(&self) -> bool {
        self.falls_back()
    }

    /// The §4 code: 504 `dispatch.upstream_timeout` for a timeout, else 502
    /// `dispatch.upstream_unavailable`.
    pub fn code(&self) -> ErrorCode {
        if self.is_timeout() {
            ErrorCode::UpstreamTimeout
        } else {
            ErrorCode::UpstreamUnavailable
        }
    }

    /// The error answer for the client: `upstream` is the upstream's name, `target` the address
    /// tried (shown for a connect failure), `first_byte_ms` its configured head timeout.
    pub fn to_reply(
        &self,
        upstream: &str,
        target: &dyn fmt::Display,
        first_byte_ms: u64,
    ) -> ErrorReply {
        let reason = |r: String| serde_json::json!({"upstream": upstream, "reason": r});
        let err = || {
            self.source
                .as_ref()
                .map_or_else(String::new, ToString::to_string)
        };
        let unavailable = |r: String| {
            ErrorReply::new(self.code(), format!("upstream '{upstream}' unavailable"))
                .details(reason(r))
        };
        let invalid = |r: String| {
            ErrorReply::new(
                self.code(),
                format!("upstream '{upstream}' sent an invalid response"),
            )
            .details(reason(r))
        };
        match self.kind {
            UpstreamErrorKind::Connect(_) => {
                unavailable(format!("connect to {target} failed: {}", err()))
            }
            UpstreamErrorKind::Write => unavailable(format!("write to upstream failed: {}", err())),
            UpstreamErrorKind::Read => {
                unavailable(format!("upstream connection failed: {}", err()))
            }
            UpstreamErrorKind::ClosedBeforeHead => {
                unavailable("upstream closed the connection before responding".into())
            }
            UpstreamErrorKind::Timeout { .. } => ErrorReply::new(
                self.code(),
                format!("upstream '{upstream}' sent no response head within {first_byte_ms} ms"),
            )
            .details(serde_json::json!({"upstream": upstream, "first_byte_ms": first_byte_ms})),
            UpstreamErrorKind::BadResponse(why) => invalid(match why {
                BadResponse::ClosedMidHead => "upstream closed the connection mid-head".into(),
                BadResponse::MalformedHead(e) => format!("malformed response head: {e}"),
                BadResponse::Upgrade => "upgrade responses are not proxied".into(),
                BadResponse::BodyFraming => "malformed response body framing".into(),
            }),
        }
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            UpstreamErrorKind::Connect(c) => write!(f, "upstream connect failed ({c:?})"),
            UpstreamErrorKind::Write => f.write_str("write to upstream failed"),
            UpstreamErrorKind::Read => f.write_str("upstream connection failed"),
            UpstreamErrorKind::ClosedBeforeHead => {
                f.write_str("upstream closed the connection before responding")
            }
            UpstreamErrorKind::Timeout { .. } => f.write_str("upstream response head timed out"),
            UpstreamErrorKind::BadResponse(b) => write!(f, "invalid upstream response ({b:?})"),
        }?;
        if let Some(e) = &self.source {
            write!(f, ": {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for UpstreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)] // tests: a panic is a failure
mod tests {
    use super::*;
    use serde_json::json;
    use UpstreamErrorKind as K;

    fn io(kind: io::ErrorKind) -> io::Error {
        io::Error::new(kind, "boom")
    }

    fn reply(e: &UpstreamError) -> ErrorReply {
        e.to_reply("gpu", &"127.0.0.1:9", 1500)
    }

    #[test]
    fn connect_errors_are_classified_by_kind() {
        use io::ErrorKind as E;
        for (k, want) in [
            (E::ConnectionRefused, ConnectFailure::Refused),
            (E::ConnectionReset, ConnectFailure::Reset),
            (E::ConnectionAborted, ConnectFailure::Reset),
            (E::TimedOut, ConnectFailure::TimedOut),
            (E::InvalidData, ConnectFailure::Other),
        ] {
            let e = UpstreamError::connect(io(k));
            assert_eq!(e.kind(), K::Connect(want), "{k:?}");
            assert!(e.before_first_byte());
            assert!(!e.reused());
            assert!(!e.retry_allowed(), "a fresh connect is never retried");
            assert_eq!(e.code(), ErrorCode::UpstreamUnavailable);
        }
        assert!(UpstreamError::connect(io(E::ConnectionRefused)).is_refused());
        assert!(UpstreamError::connect(io(E::ConnectionReset)).is_connect_reset());
        assert!(!UpstreamError::connect(io(E::TimedOut)).is_timeout());
    }

    /// The retry rule: reused, failed before any response byte, not a timeout.
    #[test]
    fn only_a_reused_connection_failing_before_the_first_byte_is_retried() {
        let bad = |why| K::BadResponse(why);
        for (kind, before, retry_if_reused) in [
            (K::Write, true, true),
            (K::Read, true, true),
            (K::ClosedBeforeHead, true, true),
            (
                K::Timeout {
                    partial_head: false,
                },
                true,
                false,
            ),
            (K::Timeout { partial_head: true }, false, false),
            (bad(BadResponse::ClosedMidHead), false, false),
            (bad(BadResponse::Upgrade), false, false),
            (bad(BadResponse::BodyFraming), false, false),
            (
                bad(BadResponse::MalformedHead(ResponseError::BareLf)),
                false,
                false,
            ),
        ] {
            let fresh = UpstreamError::new(kind, None, false);
            let reused = UpstreamError::new(kind, None, true);
            assert_eq!(fresh.before_first_byte(), before, "{kind:?}");
            assert!(!fresh.retry_allowed(), "{kind:?} fresh");
            assert_eq!(reused.retry_allowed(), retry_if_reused, "{kind:?} reused");
        }
    }

    #[test]
    fn timeouts_answer_504_with_first_byte_ms() {
        let e = UpstreamError::new(
            K::Timeout {
                partial_head: false,
            },
            None,
            true,
        );
        assert!(e.is_timeout());
        let r = reply(&e);
        assert_eq!(r.code, ErrorCode::UpstreamTimeout);
        assert_eq!(r.code.status(), 504);
        assert_eq!(
            r.message,
            "upstream 'gpu' sent no response head within 1500 ms"
        );
        assert_eq!(r.details, json!({"upstream": "gpu", "first_byte_ms": 1500}));
    }

    /// The 502 texts are the ones clients and logs have always seen.
    #[test]
    fn unavailable_and_invalid_answer_502_with_a_reason() {
        let cases = [
            (
                UpstreamError::connect(io(io::ErrorKind::ConnectionRefused)),
                "unavailable",
                "connect to 127.0.0.1:9 failed: boom",
            ),
            (
                UpstreamError::new(K::Write, Some(io(io::ErrorKind::BrokenPipe)), true),
                "unavailable",
                "write to upstream failed: boom",
            ),
            (
                UpstreamError::new(K::Read, Some(io(io::ErrorKind::ConnectionReset)), true),
                "unavailable",
                "upstream connection failed: boom",
            ),
            (
                UpstreamError::new(K::ClosedBeforeHead, None, false),
                "unavailable",
                "upstream closed the connection before responding",
            ),
            (
                UpstreamError::bad_response(BadResponse::ClosedMidHead, false),
                "sent an invalid response",
                "upstream closed the connection mid-head",
            ),
            (
                UpstreamError::bad_response(BadResponse::Upgrade, false),
                "sent an invalid response",
                "upgrade responses are not proxied",
            ),
            (
                UpstreamError::bad_response(BadResponse::BodyFraming, false),
                "sent an invalid response",
                "malformed response body framing",
            ),
            (
                UpstreamError::bad_response(
                    BadResponse::MalformedHead(ResponseError::BadContentLength),
                    false,
                ),
                "sent an invalid response",
                "malformed response head: invalid or conflicting upstream Content-Length",
            ),
        ];
        for (e, message, reason) in cases {
            let r = reply(&e);
            assert_eq!(r.code, ErrorCode::UpstreamUnavailable, "{e}");
            assert_eq!(r.message, format!("upstream 'gpu' {message}"));
            assert_eq!(r.details, json!({"upstream": "gpu", "reason": reason}));
        }
    }

    #[test]
    fn the_io_error_is_the_source() {
        use std::error::Error;
        let e = UpstreamError::new(K::Read, Some(io(io::ErrorKind::ConnectionReset)), true);
        assert_eq!(e.to_string(), "upstream connection failed: boom");
        assert!(e.source().is_some());
        assert!(UpstreamError::new(K::ClosedBeforeHead, None, true)
            .source()
            .is_none());
    }
}
