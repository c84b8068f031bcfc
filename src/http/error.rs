//! The one place the error envelope of DESIGN.md §4 is rendered: the JSON body and the whole
//! HTTP/1.1 response of an [`ErrorReply`] (the code table itself is data in [`crate::error`]).

use super::writer::ResponseWriter;
pub use crate::error::{ErrorCode, ErrorReply};
use serde_json::{json, Value};

impl ErrorReply {
    /// The JSON envelope body.
    pub fn body(&self) -> Vec<u8> {
        let v: Value = json!({"error": {
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
        let mut head = ResponseWriter::start(&mut out, self.code.status())
            .content_type("application/json")
            .content_length(body.len());
        if let Some(s) = self.retry_after_s {
            head = head.header("retry-after", s);
        }
        head.close(close).lines(extra_headers).end();
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

    /// The layout the front door has always written: retry-after, connection, then the caller's
    /// lines.
    #[test]
    fn response_bytes() {
        let r = ErrorReply::new(ErrorCode::Busy, "full").retry_after(2);
        let body = String::from_utf8(r.body()).unwrap();
        let resp = String::from_utf8(r.to_response("x-request-id: r1\r\n", true)).unwrap();
        assert_eq!(
            resp,
            format!(
                "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\nretry-after: 2\r\nconnection: close\r\n\
                 x-request-id: r1\r\n\r\n{body}",
                body.len()
            )
        );
    }
}
