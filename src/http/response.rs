//! Upstream response head parsing and body framing for the relay (DESIGN.md §3 forwarding).
//!
//! Like the request side it returns [`Span`]s into the read buffer; any failure here is an
//! upstream fault the proxy answers with 502 `dispatch.upstream_unavailable`.

use std::mem::MaybeUninit;

use super::headers::{has_bare_lf, values, BodyFraming, FramingFacts, HeaderSpan, Span};
use super::request::{Status, Version};

/// Most headers accepted in one upstream response head.
pub const MAX_RESPONSE_HEADERS: usize = 256;

/// Why an upstream response head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseError {
    /// The head exceeds the size limit given to [`ResponseHead::parse`].
    HeadTooLarge,
    /// More than [`MAX_RESPONSE_HEADERS`] headers.
    TooManyHeaders,
    /// httparse refused the syntax (status line, header tokens, control bytes).
    Malformed(httparse::Error),
    /// A line ends in LF without CR.
    BareLf,
    /// A `Content-Length` that is not plain digits, or several differing ones.
    BadContentLength,
}

impl std::fmt::Display for ResponseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResponseError::HeadTooLarge => f.write_str("upstream response head too large"),
            ResponseError::TooManyHeaders => f.write_str("too many upstream response headers"),
            ResponseError::Malformed(e) => write!(f, "malformed upstream response head: {e}"),
            ResponseError::BareLf => f.write_str("upstream response head line ends in bare LF"),
            ResponseError::BadContentLength => {
                f.write_str("invalid or conflicting upstream Content-Length")
            }
        }
    }
}

impl std::error::Error for ResponseError {}

/// A parsed response head: spans into the read buffer plus derived framing.
/// Reusable: [`ResponseHead::parse`] clears it first.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    status: u16,
    reason: Span,
    version: Version,
    head_len: usize,
    headers: Vec<HeaderSpan>,
    framing: BodyFraming,
    keep_alive: bool,
}

impl Default for ResponseHead {
    fn default() -> Self {
        ResponseHead::new()
    }
}

impl ResponseHead {
    /// An empty head, ready for [`ResponseHead::parse`].
    pub fn new() -> ResponseHead {
        ResponseHead {
            status: 0,
            reason: Span::default(),
            version: Version::Http11,
            head_len: 0,
            headers: Vec::new(),
            framing: BodyFraming::None,
            keep_alive: false,
        }
    }

    /// Parses the response head at the start of `buf`. `request_was_head` marks a response to a
    /// HEAD request (never a body); `max_head_bytes` bounds the head.
    pub fn parse(
        &mut self,
        buf: &[u8],
        request_was_head: bool,
        max_head_bytes: usize,
    ) -> Result<Status, ResponseError> {
        let mut storage = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_RESPONSE_HEADERS];
        let mut resp = httparse::Response::new(&mut []);
        let res = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut resp,
            buf,
            &mut storage,
        );
        let head_len = match res {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                if buf.len() > max_head_bytes {
                    return Err(ResponseError::HeadTooLarge);
                }
                return Ok(Status::Incomplete);
            }
            Err(httparse::Error::TooManyHeaders) => return Err(ResponseError::TooManyHeaders),
            Err(e) => return Err(ResponseError::Malformed(e)),
        };
        if head_len > max_head_bytes {
            return Err(ResponseError::HeadTooLarge);
        }
        if has_bare_lf(buf.get(..head_len).unwrap_or(buf)) {
            return Err(ResponseError::BareLf);
        }
        self.status = resp.code.unwrap_or(0);
        self.reason = Span::of(buf, resp.reason.unwrap_or_default().as_bytes());
        self.version = Version::from_minor(resp.version.unwrap_or(1));
        self.head_len = head_len;
        self.headers.clear();
        let mut facts = FramingFacts::default();
        for h in resp.headers.iter() {
            facts.add(h.name.as_bytes(), h.value);
            self.headers.push(HeaderSpan {
                name: Span::of(buf, h.name.as_bytes()),
                value: Span::of(buf, h.value),
            });
        }

        let no_body =
            self.is_informational() || self.status == 204 || self.status == 304 || request_was_head;
        let mut reusable = true;
        self.framing = if no_body {
            BodyFraming::None
        } else if facts.transfer_encoding {
            // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length; a message carrying both
            // may be an attack, so the connection must not be reused afterwards.
            if facts.content_length.is_some() || facts.conflicting_length {
                reusable = false;
            }
            if facts.chunked_last {
                BodyFraming::Chunked
            } else {
                BodyFraming::Close
            }
        } else if facts.conflicting_length {
            return Err(ResponseError::BadContentLength);
        } else {
            match facts.content_length {
                Some(0) => BodyFraming::None,
                Some(n) => BodyFraming::Length(n),
                None => BodyFraming::Close,
            }
        };
        let persistent = match self.version {
            Version::Http11 => !facts.conn_close,
            Version::Http10 => facts.conn_keep_alive && !facts.conn_close,
        };
        self.keep_alive = persistent && reusable && self.framing != BodyFraming::Close;
        Ok(Status::Complete(head_len))
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Whether this is a 1xx interim response: no body, the real head follows on the same
    /// connection (101 Switching Protocols included; slotgate does not tunnel upgrades).
    pub fn is_informational(&self) -> bool {
        (100..200).contains(&self.status)
    }

    /// The reason phrase as received.
    pub fn reason<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        self.reason.get(buf)
    }

    /// The HTTP version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Length of the head in bytes, blank line included.
    pub fn head_len(&self) -> usize {
        self.head_len
    }

    /// All headers, in order received.
    pub fn headers(&self) -> &[HeaderSpan] {
        &self.headers
    }

    /// The value of the first header named `name` (case-insensitive).
    pub fn header<'b>(&self, buf: &'b [u8], name: &[u8]) -> Option<&'b [u8]> {
        values(&self.headers, buf, name).next()
    }

    /// How the body is delimited.
    pub fn framing(&self) -> BodyFraming {
        self.framing
    }

    /// Whether the upstream connection may be reused after this response's body.
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::string_slice)] // tests: a panic is a failure
mod tests {
    use super::*;

    fn parse(raw: &[u8], head_req: bool) -> Result<Option<ResponseHead>, ResponseError> {
        let mut h = ResponseHead::new();
        Ok(match h.parse(raw, head_req, 8192)? {
            Status::Complete(_) => Some(h),
            Status::Incomplete => None,
        })
    }

    fn ok(raw: &[u8]) -> ResponseHead {
        parse(raw, false).unwrap().unwrap()
    }

    /// Fuzz regression (response_head crash-8efd35f7): a reason phrase with obs-text bytes makes
    /// httparse return a static `""` that is not inside the buffer; computing its span
    /// underflowed and would have aborted the process on any upstream sending one.
    #[test]
    fn obs_text_reason_phrase_does_not_panic() {
        let raw = b"HTTP/1.1 100 Conti\x91ue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        let h = ok(raw);
        assert_eq!(h.status(), 100);
        assert_eq!(h.reason(raw), b"");
        let raw = b"HTTP/1.1 200 \xc3\x96k\r\nContent-Length: 0\r\n\r\n";
        let h = ok(raw);
        assert_eq!((h.status(), h.reason(raw)), (200, &b""[..]));
    }

    #[test]
    fn basic_fields() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello";
        let h = ok(raw);
        assert_eq!(h.status(), 200);
        assert_eq!(h.reason(raw), b"OK");
        assert_eq!(h.version(), Version::Http11);
        assert_eq!(h.head_len(), raw.len() - 5);
        assert_eq!(h.header(raw, b"x-a"), Some(&b"b"[..]));
        assert_eq!(h.framing(), BodyFraming::Length(5));
        assert!(h.keep_alive());
        for i in 0..h.head_len() {
            assert!(parse(&raw[..i], false).unwrap().is_none(), "prefix {i}");
        }
    }

    #[test]
    fn framing_rules() {
        let f = |raw: &[u8], head: bool| {
            let h = parse(raw, head).unwrap().unwrap();
            (h.framing(), h.keep_alive())
        };
        use BodyFraming::*;
        assert_eq!(f(b"HTTP/1.1 100 Continue\r\n\r\n", false), (None, true));
        assert_eq!(
            f(
                b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n",
                false
            ),
            (None, true)
        );
        assert_eq!(f(b"HTTP/1.1 304 Not Modified\r\n\r\n", false), (None, true));
        assert_eq!(
            f(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true),
            (None, true)
        );
        assert_eq!(
            f(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                false
            ),
            (Chunked, true)
        );
        assert_eq!(
            f(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                false
            ),
            (Chunked, true)
        );
        assert_eq!(
            f(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false),
            (Close, false)
        );
        assert_eq!(
            f(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
                false
            ),
            (Chunked, false)
        );
        assert_eq!(f(b"HTTP/1.1 200 OK\r\n\r\n", false), (Close, false));
        assert_eq!(
            f(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false),
            (None, true)
        );
        assert_eq!(
            f(
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
                false
            ),
            (Length(1), false)
        );
        assert_eq!(
            f(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false),
            (Length(1), false)
        );
        assert_eq!(
            f(
                b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
                false
            ),
            (Length(1), true)
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                false
            )
            .unwrap_err(),
            ResponseError::BadContentLength
        );
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\nA: b\r\n\r\n", false).unwrap_err(),
            ResponseError::BareLf
        );
        assert!(matches!(
            parse(b"HTTP/1.1 2x0 OK\r\n\r\n", false),
            Err(ResponseError::Malformed(_))
        ));
        assert!(matches!(
            parse(b"SSH-2.0-OpenSSH\r\n\r\n", false),
            Err(ResponseError::Malformed(_))
        ));
        let mut h = ResponseHead::new();
        let big = format!("HTTP/1.1 200 OK\r\nA: {}\r\n\r\n", "x".repeat(200));
        assert_eq!(
            h.parse(big.as_bytes(), false, 100),
            Err(ResponseError::HeadTooLarge)
        );
        assert_eq!(
            h.parse(&big.as_bytes()[..150], false, 100),
            Err(ResponseError::HeadTooLarge)
        );
        let many: String = (0..MAX_RESPONSE_HEADERS + 1)
            .map(|i| format!("H{i}: v\r\n"))
            .collect();
        let many = format!("HTTP/1.1 200 OK\r\n{many}\r\n");
        assert_eq!(
            h.parse(many.as_bytes(), false, 1 << 20),
            Err(ResponseError::TooManyHeaders)
        );
    }
}
