//! Server-side HTTP/1.1 request head parsing over the caller's read buffer, with limits and
//! request-smuggling defences (DESIGN.md §4 `request.*` codes, §7 request path).
//!
//! The parse result holds [`Span`]s into the buffer rather than borrowed slices, so the caller
//! can keep it while it moves the buffer into the next read; nothing of the head is copied.

use std::mem::MaybeUninit;

use super::error::ErrorCode;
use super::headers::{has_bare_lf, name_eq, values, BodyFraming, FramingFacts, HeaderSpan, Span};
use crate::config::Tuning;

/// Upper bound on the headers array handed to httparse (config validation caps `max_headers`
/// at 1024 too).
const HEADER_CAP: usize = 1024;

/// Slack on top of `max_uri_bytes` for method, spaces and version while the request line is
/// still arriving, so a target exactly at the limit is not refused early.
const REQUEST_LINE_SLACK: usize = 32;

/// Request head limits, taken from [`Tuning`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Whole head (request line, headers, blank line) -> 431 beyond it.
    pub max_header_bytes: usize,
    /// Header count -> 431 beyond it.
    pub max_headers: usize,
    /// Request-target length -> 414 beyond it.
    pub max_uri_bytes: usize,
}

impl Limits {
    /// The limits of a tuning profile.
    pub fn from_tuning(t: &Tuning) -> Limits {
        Limits {
            max_header_bytes: t.max_header_bytes,
            max_headers: t.max_headers,
            max_uri_bytes: t.max_uri_bytes,
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::from_tuning(&Tuning::default())
    }
}

impl From<&Tuning> for Limits {
    fn from(t: &Tuning) -> Limits {
        Limits::from_tuning(t)
    }
}

/// Why a request head was refused. Every variant maps to one [`ErrorCode`] via [`RequestError::code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// The head exceeds `max_header_bytes` (431).
    HeadTooLarge,
    /// More than `max_headers` headers (431).
    TooManyHeaders,
    /// The request-target (or the unterminated request line) exceeds `max_uri_bytes` (414).
    UriTooLong,
    /// httparse refused the syntax: bad token, obs-fold, space before colon, NUL/control byte,
    /// bad version (400).
    Malformed(httparse::Error),
    /// A line ends in LF without CR (400).
    BareLf,
    /// Both `Content-Length` and `Transfer-Encoding` (400).
    LengthAndTransferEncoding,
    /// A `Content-Length` that is not plain digits, or several differing ones (400).
    BadContentLength,
    /// `Transfer-Encoding` other than a single final `chunked`, or on HTTP/1.0 (400).
    BadTransferEncoding,
}

impl RequestError {
    /// The error code table entry (DESIGN.md §4).
    pub fn code(self) -> ErrorCode {
        match self {
            RequestError::HeadTooLarge | RequestError::TooManyHeaders => ErrorCode::HeadersTooLarge,
            RequestError::UriTooLong => ErrorCode::UriTooLong,
            _ => ErrorCode::BadHttp,
        }
    }

    /// A short human message for the error envelope.
    pub fn message(self) -> &'static str {
        match self {
            RequestError::HeadTooLarge => "request head too large",
            RequestError::TooManyHeaders => "too many request headers",
            RequestError::UriTooLong => "request-target too long",
            RequestError::Malformed(_) => "malformed request head",
            RequestError::BareLf => "request head line not terminated by CRLF",
            RequestError::LengthAndTransferEncoding => {
                "both Content-Length and Transfer-Encoding present"
            }
            RequestError::BadContentLength => "invalid or conflicting Content-Length",
            RequestError::BadTransferEncoding => "unsupported Transfer-Encoding",
        }
    }
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::Malformed(e) => write!(f, "{}: {e}", self.message()),
            _ => f.write_str(self.message()),
        }
    }
}

impl std::error::Error for RequestError {}

/// HTTP version of a message (httparse only accepts these two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0.
    Http10,
    /// HTTP/1.1.
    Http11,
}

impl Version {
    pub(crate) fn from_minor(v: u8) -> Version {
        if v == 0 {
            Version::Http10
        } else {
            Version::Http11
        }
    }

    /// `HTTP/1.0` or `HTTP/1.1`.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// The request method; the well-known ones as variants so routing needs no string compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET.
    Get,
    /// HEAD (its response has no body).
    Head,
    /// POST.
    Post,
    /// PUT.
    Put,
    /// DELETE.
    Delete,
    /// OPTIONS.
    Options,
    /// PATCH.
    Patch,
    /// Any other token; read it with [`RequestHead::method_bytes`].
    Other,
}

impl Method {
    fn from_bytes(m: &[u8]) -> Method {
        match m {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"OPTIONS" => Method::Options,
            b"PATCH" => Method::Patch,
            _ => Method::Other,
        }
    }
}

/// Outcome of a parse attempt that did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The head is complete and this many bytes long; the body (if any) starts right after.
    Complete(usize),
    /// More bytes are needed; read more and parse again from the start of the buffer.
    Incomplete,
}

/// A parsed request head: spans into the caller's buffer plus derived framing facts.
/// Reusable: [`RequestHead::parse`] clears it first, keeping the header vector's capacity.
#[derive(Debug, Clone)]
pub struct RequestHead {
    method: Method,
    method_span: Span,
    target: Span,
    path: Span,
    query: Option<Span>,
    version: Version,
    head_len: usize,
    headers: Vec<HeaderSpan>,
    framing: BodyFraming,
    keep_alive: bool,
    expect_continue: bool,
    content_type: Option<u16>,
    request_id: Option<u16>,
    authorization: Option<u16>,
    x_api_key: Option<u16>,
    host: Option<u16>,
}

impl Default for RequestHead {
    fn default() -> Self {
        RequestHead::new()
    }
}

/// Convenience: parse `buf` into a fresh [`RequestHead`]; `Ok(None)` when incomplete.
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Option<RequestHead>, RequestError> {
    let mut head = RequestHead::new();
    match head.parse(buf, limits)? {
        Status::Complete(_) => Ok(Some(head)),
        Status::Incomplete => Ok(None),
    }
}

impl RequestHead {
    /// An empty head, ready for [`RequestHead::parse`].
    pub fn new() -> RequestHead {
        RequestHead {
            method: Method::Other,
            method_span: Span::default(),
            target: Span::default(),
            path: Span::default(),
            query: None,
            version: Version::Http11,
            head_len: 0,
            headers: Vec::new(),
            framing: BodyFraming::None,
            keep_alive: false,
            expect_continue: false,
            content_type: None,
            request_id: None,
            authorization: None,
            x_api_key: None,
            host: None,
        }
    }

    /// Parses the head at the start of `buf`. On `Complete` every accessor is valid for `buf`
    /// (or any buffer holding the same bytes at the same offsets).
    pub fn parse(&mut self, buf: &[u8], limits: &Limits) -> Result<Status, RequestError> {
        let n_headers = limits.max_headers.clamp(1, HEADER_CAP);
        let mut storage = [MaybeUninit::<httparse::Header<'_>>::uninit(); HEADER_CAP];
        let mut req = httparse::Request::new(&mut []);
        let res = httparse::ParserConfig::default().parse_request_with_uninit_headers(
            &mut req,
            buf,
            storage.get_mut(..n_headers).unwrap_or_default(),
        );
        let head_len = match res {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                // httparse fills the path as soon as it has it; otherwise judge the line so far.
                let line_len = match req.path {
                    Some(p) if p.len() > limits.max_uri_bytes => {
                        return Err(RequestError::UriTooLong)
                    }
                    Some(_) => 0,
                    None => memchr::memchr(b'\n', buf).unwrap_or(buf.len()),
                };
                if line_len > limits.max_uri_bytes + REQUEST_LINE_SLACK {
                    return Err(RequestError::UriTooLong);
                }
                if buf.len() > limits.max_header_bytes {
                    return Err(RequestError::HeadTooLarge);
                }
                return Ok(Status::Incomplete);
            }
            Err(httparse::Error::TooManyHeaders) => return Err(RequestError::TooManyHeaders),
            Err(e) => {
                // A target too long for the limit is a 414 even if something later is malformed.
                if req.path.is_some_and(|p| p.len() > limits.max_uri_bytes) {
                    return Err(RequestError::UriTooLong);
                }
                return Err(RequestError::Malformed(e));
            }
        };
        let target = req.path.unwrap_or_default();
        if target.len() > limits.max_uri_bytes {
            return Err(RequestError::UriTooLong);
        }
        if head_len > limits.max_header_bytes {
            return Err(RequestError::HeadTooLarge);
        }
        let head = buf.get(..head_len).unwrap_or(buf);
        if has_bare_lf(head) {
            return Err(RequestError::BareLf);
        }

        let method = req.method.unwrap_or_default().as_bytes();
        self.method = Method::from_bytes(method);
        self.method_span = Span::of(buf, method);
        let target = target.as_bytes();
        self.target = Span::of(buf, target);
        match memchr::memchr(b'?', target).and_then(|q| target.split_at_checked(q)) {
            Some((path, query)) => {
                self.path = Span::of(buf, path);
                self.query = Some(Span::of(buf, query.get(1..).unwrap_or_default()));
            }
            None => {
                self.path = self.target;
                self.query = None;
            }
        }
        self.version = Version::from_minor(req.version.unwrap_or(1));
        self.head_len = head_len;
        self.content_type = None;
        self.request_id = None;
        self.authorization = None;
        self.x_api_key = None;
        self.host = None;
        self.expect_continue = false;
        self.headers.clear();

        let mut facts = FramingFacts::default();
        for (i, h) in req.headers.iter().enumerate() {
            let name = h.name.as_bytes();
            let idx = Some(i as u16);
            facts.add(name, h.value);
            if name_eq(name, b"content-type") {
                self.content_type = self.content_type.or(idx);
            } else if name_eq(name, b"x-request-id") {
                self.request_id = self.request_id.or(idx);
            } else if name_eq(name, b"authorization") {
                self.authorization = self.authorization.or(idx);
            } else if name_eq(name, b"x-api-key") {
                self.x_api_key = self.x_api_key.or(idx);
            } else if name_eq(name, b"host") {
                self.host = self.host.or(idx);
            } else if name_eq(name, b"expect") {
                self.expect_continue = h.value.eq_ignore_ascii_case(b"100-continue");
            }
            self.headers.push(HeaderSpan {
                name: Span::of(buf, name),
                value: Span::of(buf, h.value),
            });
        }

        self.framing = if facts.transfer_encoding {
            if facts.content_length.is_some() || facts.conflicting_length {
                return Err(RequestError::LengthAndTransferEncoding);
            }
            if !facts.chunked_only || self.version == Version::Http10 {
                return Err(RequestError::BadTransferEncoding);
            }
            BodyFraming::Chunked
        } else if facts.conflicting_length {
            return Err(RequestError::BadContentLength);
        } else {
            match facts.content_length {
                None | Some(0) => BodyFraming::None,
                Some(n) => BodyFraming::Length(n),
            }
        };
        self.keep_alive = match self.version {
            Version::Http11 => !facts.conn_close,
            Version::Http10 => facts.conn_keep_alive && !facts.conn_close,
        };
        // 100-continue is an HTTP/1.1 mechanism; a 1.0 client would not understand the 100.
        self.expect_continue &= self.version == Version::Http11;
        Ok(Status::Complete(head_len))
    }

    /// The method.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The method token as received.
    pub fn method_bytes<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        self.method_span.get(buf)
    }

    /// The whole request-target (path and query).
    pub fn target<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        self.target.get(buf)
    }

    /// The path part of the target (before `?`).
    pub fn path<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        self.path.get(buf)
    }

    /// The query (after `?`, without it), if the target has one.
    pub fn query<'b>(&self, buf: &'b [u8]) -> Option<&'b [u8]> {
        self.query.map(|s| s.get(buf))
    }

    /// Spans of the target, path and query, for callers that keep offsets.
    pub fn target_spans(&self) -> (Span, Span, Option<Span>) {
        (self.target, self.path, self.query)
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

    /// The values of every header named `name` (case-insensitive).
    pub fn header_all<'a, 'b: 'a>(
        &'a self,
        buf: &'b [u8],
        name: &'a [u8],
    ) -> impl Iterator<Item = &'b [u8]> + 'a {
        values(&self.headers, buf, name)
    }

    /// How the body is delimited (`Length(0)` is reported as `None`).
    pub fn framing(&self) -> BodyFraming {
        self.framing
    }

    /// Whether the connection may serve another request after this one.
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// Whether the client sent `Expect: 100-continue` (HTTP/1.1 only).
    pub fn expect_continue(&self) -> bool {
        self.expect_continue
    }

    fn indexed<'b>(&self, buf: &'b [u8], idx: Option<u16>) -> Option<&'b [u8]> {
        idx.and_then(|i| self.headers.get(i as usize))
            .map(|h| h.value(buf))
    }

    /// `Content-Type`, if present.
    pub fn content_type<'b>(&self, buf: &'b [u8]) -> Option<&'b [u8]> {
        self.indexed(buf, self.content_type)
    }

    /// `X-Request-Id`, if present.
    pub fn request_id<'b>(&self, buf: &'b [u8]) -> Option<&'b [u8]> {
        self.indexed(buf, self.request_id)
    }

    /// `Authorization`, if present.
    pub fn authorization<'b>(&self, buf: &'b [u8]) -> Option<&'b [u8]> {
        self.indexed(buf, self.authorization)
    }

    /// `X-Api-Key`, if present.
    pub fn x_api_key<'b>(&self, buf: &'b [u8]) -> Option<&'b [u8]> {
        self.indexed(buf, self.x_api_key)
    }

    /// `Host`, if present.
    pub fn host<'b>(&self, buf: &'b [u8]) -> Option<&'b [u8]> {
        self.indexed(buf, self.host)
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::string_slice)] // tests: a panic is a failure
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> Result<Option<RequestHead>, RequestError> {
        parse_request(raw, &Limits::default())
    }

    fn ok(raw: &[u8]) -> RequestHead {
        parse(raw).expect("parse").expect("complete")
    }

    fn err(raw: &[u8]) -> RequestError {
        parse(raw).expect_err("must fail")
    }

    #[test]
    fn simple_get() {
        let raw = b"GET /v1/models?x=1&y=2 HTTP/1.1\r\nHost: a\r\nX-Request-Id: r1\r\n\r\nrest";
        let h = ok(raw);
        assert_eq!(h.method(), Method::Get);
        assert_eq!(h.method_bytes(raw), b"GET");
        assert_eq!(h.target(raw), b"/v1/models?x=1&y=2");
        assert_eq!(h.path(raw), b"/v1/models");
        assert_eq!(h.query(raw), Some(&b"x=1&y=2"[..]));
        assert_eq!(h.version(), Version::Http11);
        assert_eq!(h.head_len(), raw.len() - 4);
        assert_eq!(h.headers().len(), 2);
        assert_eq!(h.request_id(raw), Some(&b"r1"[..]));
        assert_eq!(h.host(raw), Some(&b"a"[..]));
        assert_eq!(h.header(raw, b"x-REQUEST-id"), Some(&b"r1"[..]));
        assert_eq!(h.framing(), BodyFraming::None);
        assert!(h.keep_alive());
        assert!(!h.expect_continue());
    }

    #[test]
    fn incomplete_at_every_prefix() {
        let raw = b"POST /v1/chat/completions HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n";
        for i in 0..raw.len() {
            assert!(matches!(parse(&raw[..i]), Ok(None)), "prefix {i}");
        }
        let h = ok(raw);
        assert_eq!(h.framing(), BodyFraming::Length(12));
        assert_eq!(h.content_type(raw), Some(&b"application/json"[..]));
    }

    #[test]
    fn reuse_clears_previous_state() {
        let mut h = RequestHead::new();
        let a = b"POST /a HTTP/1.1\r\nContent-Length: 3\r\nX-Request-Id: q\r\n\r\n";
        let b = b"GET /b HTTP/1.0\r\n\r\n";
        assert_eq!(
            h.parse(a, &Limits::default()),
            Ok(Status::Complete(a.len()))
        );
        assert_eq!(
            h.parse(b, &Limits::default()),
            Ok(Status::Complete(b.len()))
        );
        assert_eq!(h.request_id(b), None);
        assert_eq!(h.headers().len(), 0);
        assert_eq!(h.framing(), BodyFraming::None);
        assert!(!h.keep_alive());
    }

    #[test]
    fn keep_alive_rules() {
        assert!(!ok(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive());
        assert!(!ok(b"GET / HTTP/1.1\r\nConnection: foo, Close\r\n\r\n").keep_alive());
        assert!(!ok(b"GET / HTTP/1.0\r\n\r\n").keep_alive());
        assert!(ok(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive());
        assert!(ok(b"GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n").keep_alive());
    }

    #[test]
    fn expect_continue() {
        assert!(
            ok(b"POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n")
                .expect_continue()
        );
        assert!(
            !ok(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
                .expect_continue()
        );
    }

    #[test]
    fn chunked_framing() {
        let h = ok(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(h.framing(), BodyFraming::Chunked);
        let h = ok(b"POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n");
        assert_eq!(h.framing(), BodyFraming::Chunked);
    }

    #[test]
    fn smuggling_defences() {
        use RequestError::*;
        let cases: &[(&[u8], RequestError)] = &[
            (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", LengthAndTransferEncoding),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", LengthAndTransferEncoding),
            (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", BadContentLength),
            (b"POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n", BadContentLength),
            (b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", BadContentLength),
            (b"POST / HTTP/1.1\r\nContent-Length: 0x5\r\n\r\n", BadContentLength),
            (b"POST / HTTP/1.1\r\nContent-Length: \r\n\r\n", BadContentLength),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", BadTransferEncoding),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", BadTransferEncoding),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", BadTransferEncoding),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n", BadTransferEncoding),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n", BadTransferEncoding),
            (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", BadTransferEncoding),
            (b"GET / HTTP/1.1\nHost: a\r\n\r\n", BareLf),
            (b"GET / HTTP/1.1\r\nHost: a\n\r\n", BareLf),
            (b"GET / HTTP/1.1\r\nHost: a\r\n\n", BareLf),
        ];
        for (raw, want) in cases {
            assert_eq!(err(raw), *want, "{}", String::from_utf8_lossy(raw));
            assert_eq!(want.code(), ErrorCode::BadHttp);
        }
        // Identical duplicates fold into one length.
        let h = ok(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(h.framing(), BodyFraming::Length(5));
    }

    #[test]
    fn syntax_rejected_by_httparse() {
        for raw in [
            &b"GET / HTTP/1.1\r\nHost: a\r\n continued\r\n\r\n"[..], // obs-fold
            b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",                   // space before colon
            b"GET / HTTP/1.1\r\nHost\t: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n", // NUL in value
            b"GET / HTTP/1.1\r\nHost: a\x01b\r\n\r\n", // control byte
            b"GET / HTTP/1.1\r\nHost: a\x7fb\r\n\r\n", // DEL
            b"GET / HTTP/1.1\r\nHo\0st: a\r\n\r\n",
            b"GET /\0 HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", // bare CR
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"G(T / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\n: empty\r\n\r\n",
            b"GET / HTTP/1.1\r\nNoColon\r\n\r\n",
        ] {
            let e = err(raw);
            assert!(
                matches!(e, RequestError::Malformed(_)),
                "{:?} -> {e:?}",
                String::from_utf8_lossy(raw)
            );
            assert_eq!(e.code().status(), 400);
        }
    }

    #[test]
    fn limits() {
        let lim = Limits {
            max_header_bytes: 1024,
            max_headers: 4,
            max_uri_bytes: 64,
        };
        // Target exactly at the limit passes; one byte over is 414.
        let at = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(63));
        assert!(parse_request(at.as_bytes(), &lim).unwrap().is_some());
        let over = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(64));
        assert_eq!(
            parse_request(over.as_bytes(), &lim).unwrap_err(),
            RequestError::UriTooLong
        );
        // Unterminated request line already too long.
        let partial = format!("GET /{}", "a".repeat(200));
        assert_eq!(
            parse_request(partial.as_bytes(), &lim).unwrap_err(),
            RequestError::UriTooLong
        );
        // Request line done, target over the limit, headers still arriving.
        let partial = format!("GET /{} HTTP/1.1\r\nHost: x", "a".repeat(80));
        assert_eq!(
            parse_request(partial.as_bytes(), &lim).unwrap_err(),
            RequestError::UriTooLong
        );
        // Too many headers.
        let many = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n";
        assert_eq!(
            parse_request(many.as_bytes(), &lim).unwrap_err(),
            RequestError::TooManyHeaders
        );
        assert_eq!(RequestError::TooManyHeaders.code().status(), 431);
        // Head over max_header_bytes, complete or still arriving.
        let big = format!("GET / HTTP/1.1\r\nA: {}\r\n\r\n", "x".repeat(1100));
        assert_eq!(
            parse_request(big.as_bytes(), &lim).unwrap_err(),
            RequestError::HeadTooLarge
        );
        let big_partial = format!("GET / HTTP/1.1\r\nA: {}", "x".repeat(1100));
        assert_eq!(
            parse_request(big_partial.as_bytes(), &lim).unwrap_err(),
            RequestError::HeadTooLarge
        );
        assert_eq!(RequestError::HeadTooLarge.code().status(), 431);
        assert_eq!(RequestError::UriTooLong.code().status(), 414);
    }

    #[test]
    fn header_all_and_spans() {
        let raw = b"GET / HTTP/1.1\r\nConnection: a\r\nX: 1\r\nconnection: b\r\n\r\n";
        let h = ok(raw);
        let v: Vec<&[u8]> = h.header_all(raw, b"Connection").collect();
        assert_eq!(v, vec![&b"a"[..], &b"b"[..]]);
        // Values are trimmed of surrounding whitespace by httparse.
        let raw = b"GET / HTTP/1.1\r\nX:   padded  \r\n\r\n";
        assert_eq!(ok(raw).header(raw, b"x"), Some(&b"padded"[..]));
    }
}
