//! The error code table of DESIGN.md §4 and the error answer as data.
//!
//! A leaf: it imports nothing from the crate, so `routing` (pure) can build error answers without
//! depending on `http`. The JSON envelope and the HTTP response around it are rendered in one
//! place, `http::error`.

use serde_json::{json, Value};

/// Every error slotgate itself produces (DESIGN.md §4). `code()` is stable; the text is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Malformed request line or headers, conflicting framing, bad chunks.
    BadHttp,
    /// A JSON body that must be routed is not valid JSON.
    InvalidJson,
    /// Request line over its limit.
    UriTooLong,
    /// Request head over `max_header_bytes`, or too many headers.
    HeadersTooLarge,
    /// Body over `max_body_bytes`.
    BodyTooLarge,
    /// Head or body not received in time.
    RequestTimeout,
    /// Front-door key required and missing or wrong.
    Unauthorized,
    /// Nothing can serve the model.
    NoRoute,
    /// Upstream refused or dropped before responding.
    UpstreamUnavailable,
    /// Upstream sent no response head in time.
    UpstreamTimeout,
    /// Target not ready.
    SlotLoading,
    /// The upstream's concurrency queue is full or the wait timed out.
    Busy,
    /// A global connection limit is reached.
    Overloaded,
    /// A bug: the request's task panicked before any response byte was sent (the connection
    /// is closed; every other connection goes on).
    Internal,
    /// Admin API: the method is not allowed on this path.
    MethodNotAllowed,
    /// Admin API / front door: no such endpoint.
    NotFound,
    /// Admin API: the request is well-formed HTTP but its content is refused (bad reload, bad state).
    InvalidRequest,
}

impl ErrorCode {
    /// The stable dotted code.
    pub fn code(self) -> &'static str {
        match self {
            ErrorCode::BadHttp => "request.bad_http",
            ErrorCode::InvalidJson => "request.invalid_json",
            ErrorCode::UriTooLong => "request.uri_too_long",
            ErrorCode::HeadersTooLarge => "request.headers_too_large",
            ErrorCode::BodyTooLarge => "request.body_too_large",
            ErrorCode::RequestTimeout => "request.timeout",
            ErrorCode::Unauthorized => "auth.unauthorized",
            ErrorCode::NoRoute => "dispatch.no_route",
            ErrorCode::UpstreamUnavailable => "dispatch.upstream_unavailable",
            ErrorCode::UpstreamTimeout => "dispatch.upstream_timeout",
            ErrorCode::SlotLoading => "slot.loading",
            ErrorCode::Busy => "dispatch.busy",
            ErrorCode::Overloaded => "server.overloaded",
            ErrorCode::Internal => "server.internal",
            ErrorCode::MethodNotAllowed => "request.method_not_allowed",
            ErrorCode::NotFound => "request.not_found",
            ErrorCode::InvalidRequest => "request.invalid",
        }
    }

    /// The HTTP status.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::BadHttp | ErrorCode::InvalidJson | ErrorCode::InvalidRequest => 400,
            ErrorCode::UriTooLong => 414,
            ErrorCode::HeadersTooLarge => 431,
            ErrorCode::BodyTooLarge => 413,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::Unauthorized => 401,
            ErrorCode::NoRoute | ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::UpstreamUnavailable => 502,
            ErrorCode::UpstreamTimeout => 504,
            ErrorCode::SlotLoading | ErrorCode::Overloaded => 503,
            ErrorCode::Busy => 429,
            ErrorCode::Internal => 500,
        }
    }

    /// The OpenAI-style `type` SDKs read.
    pub fn kind(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => "authentication_error",
            ErrorCode::NoRoute | ErrorCode::NotFound => "not_found_error",
            ErrorCode::Busy => "rate_limit_error",
            ErrorCode::BadHttp
            | ErrorCode::InvalidJson
            | ErrorCode::UriTooLong
            | ErrorCode::HeadersTooLarge
            | ErrorCode::BodyTooLarge
            | ErrorCode::RequestTimeout
            | ErrorCode::MethodNotAllowed
            | ErrorCode::InvalidRequest => "invalid_request_error",
            ErrorCode::UpstreamUnavailable
            | ErrorCode::UpstreamTimeout
            | ErrorCode::SlotLoading
            | ErrorCode::Overloaded
            | ErrorCode::Internal => "server_error",
        }
    }

    /// Whether the connection must be closed after this error (framing can no longer be trusted).
    pub fn closes_connection(self) -> bool {
        matches!(
            self,
            ErrorCode::BadHttp
                | ErrorCode::UriTooLong
                | ErrorCode::HeadersTooLarge
                | ErrorCode::BodyTooLarge
                | ErrorCode::RequestTimeout
                | ErrorCode::Overloaded
                | ErrorCode::Internal
        )
    }
}

/// An error answer: code, human message, details object and optional `Retry-After`.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorReply {
    /// Which row of the code table (status, `code`, `type`).
    pub code: ErrorCode,
    /// Human text for `error.message`; not stable.
    pub message: String,
    /// The `error.details` object.
    pub details: Value,
    /// Seconds for the `Retry-After` header, when the answer carries one.
    pub retry_after_s: Option<u32>,
}

impl ErrorReply {
    /// An error with empty details.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorReply {
        ErrorReply {
            code,
            message: message.into(),
            details: json!({}),
            retry_after_s: None,
        }
    }

    /// Sets the details object.
    pub fn details(mut self, details: Value) -> ErrorReply {
        self.details = details;
        self
    }

    /// Sets `Retry-After`.
    pub fn retry_after(mut self, secs: u32) -> ErrorReply {
        self.retry_after_s = Some(secs);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_statuses() {
        for (c, s) in [
            (ErrorCode::BadHttp, 400),
            (ErrorCode::InvalidJson, 400),
            (ErrorCode::UriTooLong, 414),
            (ErrorCode::HeadersTooLarge, 431),
            (ErrorCode::BodyTooLarge, 413),
            (ErrorCode::RequestTimeout, 408),
            (ErrorCode::Unauthorized, 401),
            (ErrorCode::NoRoute, 404),
            (ErrorCode::UpstreamUnavailable, 502),
            (ErrorCode::UpstreamTimeout, 504),
            (ErrorCode::SlotLoading, 503),
            (ErrorCode::Busy, 429),
            (ErrorCode::Overloaded, 503),
            (ErrorCode::Internal, 500),
        ] {
            assert_eq!(c.status(), s, "{}", c.code());
        }
    }

    #[test]
    fn framing_errors_close_and_others_keep_the_connection() {
        assert!(ErrorCode::BadHttp.closes_connection());
        assert!(ErrorCode::Overloaded.closes_connection());
        assert!(!ErrorCode::NoRoute.closes_connection());
        assert!(!ErrorCode::UpstreamTimeout.closes_connection());
    }

    #[test]
    fn reply_builders_set_data_only() {
        let r = ErrorReply::new(ErrorCode::Busy, "full")
            .details(json!({"queued": 3}))
            .retry_after(2);
        assert_eq!(r.code, ErrorCode::Busy);
        assert_eq!(r.message, "full");
        assert_eq!(r.details, json!({"queued": 3}));
        assert_eq!(r.retry_after_s, Some(2));
        assert_eq!(ErrorReply::new(ErrorCode::Busy, "x").details, json!({}));
    }

    /// The shape this module exists for: it is a leaf, and routing (pure) reaches the code table
    /// through it, never through `http`.
    #[test]
    fn a_leaf_that_routing_uses_instead_of_http() {
        fn sources(dir: &std::path::Path, out: &mut Vec<(String, String)>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    sources(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    out.push((path.display().to_string(), text));
                }
            }
        }
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let own = std::fs::read_to_string(src.join("error.rs")).unwrap();
        assert!(
            !own.contains(concat!("crate", "::")),
            "error.rs imports from the crate"
        );
        let mut routing = Vec::new();
        sources(&src.join("routing"), &mut routing);
        assert!(!routing.is_empty());
        for (path, text) in routing {
            assert!(
                !text.contains(concat!("crate", "::http")),
                "{path} uses http"
            );
        }
    }
}
