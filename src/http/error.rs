//! The error code table of DESIGN.md §4 and the one place its JSON envelope is rendered.

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

    /// The canonical reason phrase of the status.
    pub fn reason(self) -> &'static str {
        reason_phrase(self.status())
    }
}

/// Reason phrase for the statuses slotgate produces.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// An error answer: code, human message, details object and optional `Retry-After`.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorReply {
    pub code: ErrorCode,
    pub message: String,
    pub details: Value,
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

    /// The JSON envelope body.
    pub fn body(&self) -> Vec<u8> {
        let v = json!({"error": {
            "code": self.code.code(),
            "type": self.code.kind(),
            "message": self.message,
            "details": self.details,
        }});
        serde_json::to_vec(&v).expect("json")
    }

    /// The whole HTTP/1.1 response: status line, headers (plus `extra`, each ending in CRLF), body.
    pub fn to_response(&self, extra_headers: &str, close: bool) -> Vec<u8> {
        let body = self.body();
        let mut out = Vec::with_capacity(body.len() + 256);
        out.extend_from_slice(
            format!(
                "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
                self.code.status(),
                self.code.reason(),
                body.len()
            )
            .as_bytes(),
        );
        if let Some(s) = self.retry_after_s {
            out.extend_from_slice(format!("retry-after: {s}\r\n").as_bytes());
        }
        if close {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(extra_headers.as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&body);
        out
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::string_slice)] // tests: a panic is a failure
mod tests {
    use super::*;

    #[test]
    fn envelope_shape() {
        let r = ErrorReply::new(ErrorCode::SlotLoading, "slot 'chat' is warming")
            .details(json!({"slot": "chat", "state": "warming", "retry_after_s": 15}))
            .retry_after(15);
        let v: Value = serde_json::from_slice(&r.body()).unwrap();
        assert_eq!(v["error"]["code"], "slot.loading");
        assert_eq!(v["error"]["type"], "server_error");
        assert_eq!(v["error"]["details"]["state"], "warming");
        let resp = String::from_utf8(r.to_response("", false)).unwrap();
        assert!(resp.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(resp.contains("retry-after: 15\r\n"));
    }

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
}
