//! The one writer of the response heads slotgate produces itself: the front door's local answers
//! and errors, the admin API and the mock model server (a relayed upstream head is rebuilt in
//! `proxy::forward` instead, keeping the upstream's reason phrase).
//!
//! Headers are written in call order with the name exactly as given, so each caller keeps its
//! own byte layout (the mock plays an upstream and writes `Content-Type`, slotgate writes
//! `content-type`).

use std::fmt::Display;
use std::io::Write;

/// Appends a response head to a buffer: the status line at [`ResponseWriter::start`], each header
/// line as called, the blank line at [`ResponseWriter::end`]. The body is the caller's.
#[must_use = "a head is only complete after `end()`"]
pub struct ResponseWriter<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> ResponseWriter<'a> {
    /// Writes `HTTP/1.1 <status> <reason>` to `out` (appending to what is there).
    pub fn start(out: &'a mut Vec<u8>, status: u16) -> ResponseWriter<'a> {
        // Writing to a Vec cannot fail.
        let _ = write!(out, "HTTP/1.1 {status} {}\r\n", reason_phrase(status));
        ResponseWriter { out }
    }

    /// One header line `name: value`.
    pub fn header(self, name: &str, value: impl Display) -> ResponseWriter<'a> {
        let _ = write!(self.out, "{name}: {value}\r\n");
        self
    }

    /// `content-type: <value>`.
    pub fn content_type(self, value: &str) -> ResponseWriter<'a> {
        self.header("content-type", value)
    }

    /// `content-length: <n>`.
    pub fn content_length(self, n: usize) -> ResponseWriter<'a> {
        self.header("content-length", n)
    }

    /// `connection: close` when `close`, nothing otherwise.
    pub fn close(self, close: bool) -> ResponseWriter<'a> {
        if close {
            self.out.extend_from_slice(b"connection: close\r\n");
        }
        self
    }

    /// Header lines already formatted, each ending in CRLF (may be empty).
    pub fn lines(self, lines: &str) -> ResponseWriter<'a> {
        self.out.extend_from_slice(lines.as_bytes());
        self
    }

    /// Ends the head with the blank line.
    pub fn end(self) {
        self.out.extend_from_slice(b"\r\n");
    }
}

/// Reason phrase for the statuses slotgate (and its mock) produce; `Unknown` for any other.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn text(b: Vec<u8>) -> String {
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn headers_in_call_order_then_blank_line() {
        let mut out = b"prefix|".to_vec();
        ResponseWriter::start(&mut out, 404)
            .header("Server", "m")
            .content_type("application/json")
            .content_length(12)
            .lines("x-a: 1\r\n")
            .close(true)
            .end();
        assert_eq!(
            text(out),
            "prefix|HTTP/1.1 404 Not Found\r\nServer: m\r\ncontent-type: application/json\r\n\
             content-length: 12\r\nx-a: 1\r\nconnection: close\r\n\r\n"
        );
    }

    #[test]
    fn keep_alive_writes_no_connection_header() {
        let mut out = Vec::new();
        ResponseWriter::start(&mut out, 200).close(false).end();
        assert_eq!(text(out), "HTTP/1.1 200 OK\r\n\r\n");
    }

    #[test]
    fn unknown_status_has_a_placeholder_reason() {
        assert_eq!(reason_phrase(418), "Unknown");
        assert_eq!(reason_phrase(431), "Request Header Fields Too Large");
    }
}
