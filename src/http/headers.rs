//! Header utilities shared by request and response framing: spans, lookups, hop-by-hop rules (DESIGN.md §3).

/// A byte range `[start, end)` into the buffer a head was parsed from; lets the caller keep the
/// parse result while it moves the buffer (rent-style IO) without copying the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl Span {
    /// The span of `part`, a sub-slice of `whole`. A `part` that is not inside `whole` gives the
    /// empty span: httparse hands out a static `""` for a reason phrase with obs-text bytes, and
    /// an upstream must not be able to crash a worker with one (found by fuzzing).
    pub(crate) fn of(whole: &[u8], part: &[u8]) -> Span {
        let start = (part.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize);
        if start > whole.len() || part.len() > whole.len() - start {
            return Span::default();
        }
        Span {
            start: start as u32,
            end: (start + part.len()) as u32,
        }
    }

    /// The bytes of this span in `buf` (the buffer the head was parsed from).
    #[inline]
    pub fn get(self, buf: &[u8]) -> &[u8] {
        // A span from another buffer (a bug) reads as empty rather than panicking.
        buf.get(self.start as usize..self.end as usize)
            .unwrap_or_default()
    }

    /// Length in bytes.
    #[inline]
    pub fn len(self) -> usize {
        (self.end - self.start) as usize
    }

    /// Whether the span is empty.
    #[inline]
    pub fn is_empty(self) -> bool {
        self.end == self.start
    }
}

/// One header as spans into the parsed buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeaderSpan {
    /// The name as received (case preserved).
    pub name: Span,
    /// The value, without surrounding whitespace.
    pub value: Span,
}

impl HeaderSpan {
    /// The name bytes.
    #[inline]
    pub fn name<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        self.name.get(buf)
    }

    /// The value bytes.
    #[inline]
    pub fn value<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        self.value.get(buf)
    }
}

/// The values of every header in `headers` named `name` (case-insensitive), in order.
pub fn values<'a, 'b: 'a>(
    headers: &'a [HeaderSpan],
    buf: &'b [u8],
    name: &'a [u8],
) -> impl Iterator<Item = &'b [u8]> + 'a {
    headers
        .iter()
        .filter(move |h| name_eq(h.name(buf), name))
        .map(move |h| h.value(buf))
}

/// Case-insensitive header name comparison (names are ASCII tokens).
#[inline]
pub fn name_eq(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Whether a header is hop-by-hop by itself (not counting the tokens `Connection` names):
/// `Connection`, `Keep-Alive`, `Proxy-*`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    const FIXED: [&[u8]; 6] = [
        b"connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    ];
    FIXED.iter().any(|f| name_eq(name, f)) || name.get(..6).is_some_and(|p| name_eq(p, b"proxy-"))
}

/// Whether `name` must not be forwarded given the `Connection` header values of the same message:
/// the fixed hop-by-hop set plus every token `Connection` names.
pub fn is_hop_by_hop_in<'a>(
    name: &[u8],
    mut connection_values: impl Iterator<Item = &'a [u8]>,
) -> bool {
    is_hop_by_hop(name) || connection_values.any(|v| tokens(v).any(|t| name_eq(t, name)))
}

/// The comma-separated tokens of a header value, trimmed, empty elements skipped.
pub fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').filter_map(|t| {
        let t = t.trim_ascii();
        (!t.is_empty()).then_some(t)
    })
}

/// Whether a comma-separated header value contains `token` (case-insensitive).
pub fn has_token(value: &[u8], token: &[u8]) -> bool {
    tokens(value).any(|t| name_eq(t, token))
}

/// Parses a Content-Length value: ASCII digits only (no sign, no space inside), fits `u64`.
/// A comma list of identical values (`5, 5`, from folded duplicates) is accepted as one.
pub fn parse_content_length(value: &[u8]) -> Option<u64> {
    let mut out: Option<u64> = None;
    for part in value.split(|&b| b == b',') {
        let n = parse_digits(part.trim_ascii())?;
        match out {
            Some(prev) if prev != n => return None,
            _ => out = Some(n),
        }
    }
    out
}

fn parse_digits(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        // 19 digits always fit u64; longer values are absurd for a body length anyway.
        return None;
    }
    let mut n: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    Some(n)
}

/// How the bytes that follow a head are delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body at all.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`; drive a [`super::ChunkedDecoder`].
    Chunked,
    /// Until the connection closes (responses only).
    Close,
}

/// Framing facts gathered from a message's headers, shared by requests and responses.
#[derive(Debug, Default)]
pub(crate) struct FramingFacts {
    pub content_length: Option<u64>,
    pub conflicting_length: bool,
    pub transfer_encoding: bool,
    /// The last transfer coding is `chunked` and it is the only coding.
    pub chunked_only: bool,
    /// The last transfer coding is `chunked` (other codings may precede it).
    pub chunked_last: bool,
    pub conn_close: bool,
    pub conn_keep_alive: bool,
}

impl FramingFacts {
    /// Folds one header into the facts.
    pub fn add(&mut self, name: &[u8], value: &[u8]) {
        if name_eq(name, b"content-length") {
            match (parse_content_length(value), self.content_length) {
                (None, _) => self.conflicting_length = true,
                (Some(n), Some(prev)) if n != prev => self.conflicting_length = true,
                (Some(n), _) => self.content_length = Some(n),
            }
        } else if name_eq(name, b"transfer-encoding") {
            // Several TE headers form one list; only the final coding matters for the framing,
            // and `chunked` must appear exactly once, last.
            let had_chunked_before = self.chunked_last;
            let first_header = !self.transfer_encoding;
            self.transfer_encoding = true;
            let mut count = 0usize;
            let mut last_chunked = false;
            let mut any_chunked_before_last = false;
            for t in tokens(value) {
                if last_chunked {
                    any_chunked_before_last = true;
                }
                last_chunked = name_eq(t, b"chunked");
                count += 1;
            }
            self.chunked_last = last_chunked && !any_chunked_before_last && count > 0;
            self.chunked_only = self.chunked_last && count == 1 && first_header;
            if had_chunked_before {
                // chunked applied twice, or a coding after chunked: both invalid.
                self.chunked_last = false;
                self.chunked_only = false;
            }
        } else if name_eq(name, b"connection") {
            for t in tokens(value) {
                if name_eq(t, b"close") {
                    self.conn_close = true;
                } else if name_eq(t, b"keep-alive") {
                    self.conn_keep_alive = true;
                }
            }
        }
    }
}

/// Whether a head contains a bare LF (an LF not preceded by CR), which httparse tolerates but
/// RFC 9112 forbids and which front-ends disagree on (a smuggling vector).
pub(crate) fn has_bare_lf(head: &[u8]) -> bool {
    memchr::memchr_iter(b'\n', head).any(|i| i == 0 || head.get(i - 1) != Some(&b'\r'))
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::string_slice)] // tests: a panic is a failure
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_set() {
        for n in [
            "Connection",
            "keep-alive",
            "Proxy-Authorization",
            "proxy-connection",
            "TE",
            "Trailer",
            "Transfer-Encoding",
            "UPGRADE",
        ] {
            assert!(is_hop_by_hop(n.as_bytes()), "{n}");
        }
        for n in ["Content-Type", "Authorization", "Trailers", "Proxy", "X-TE"] {
            assert!(!is_hop_by_hop(n.as_bytes()), "{n}");
        }
        let conn: [&[u8]; 2] = [b"close, X-Foo", b"x-bar"];
        assert!(is_hop_by_hop_in(b"x-foo", conn.iter().copied()));
        assert!(is_hop_by_hop_in(b"X-Bar", conn.iter().copied()));
        assert!(!is_hop_by_hop_in(b"X-Baz", conn.iter().copied()));
    }

    #[test]
    fn content_length_values() {
        assert_eq!(parse_content_length(b"0"), Some(0));
        assert_eq!(parse_content_length(b"42"), Some(42));
        assert_eq!(parse_content_length(b"42, 42"), Some(42));
        assert_eq!(parse_content_length(b"42, 43"), None);
        assert_eq!(parse_content_length(b"+42"), None);
        assert_eq!(parse_content_length(b"-1"), None);
        assert_eq!(parse_content_length(b"4 2"), None);
        assert_eq!(parse_content_length(b"0x10"), None);
        assert_eq!(parse_content_length(b""), None);
        assert_eq!(parse_content_length(b"99999999999999999999"), None);
    }

    #[test]
    fn transfer_encoding_lists() {
        let te = |vals: &[&str]| {
            let mut f = FramingFacts::default();
            for v in vals {
                f.add(b"transfer-encoding", v.as_bytes());
            }
            (f.chunked_only, f.chunked_last)
        };
        assert_eq!(te(&["chunked"]), (true, true));
        assert_eq!(te(&["Chunked"]), (true, true));
        assert_eq!(te(&["gzip, chunked"]), (false, true));
        assert_eq!(te(&["gzip", "chunked"]), (false, true));
        assert_eq!(te(&["chunked, gzip"]), (false, false));
        assert_eq!(te(&["chunked", "chunked"]), (false, false));
        assert_eq!(te(&["chunked, chunked"]), (false, false));
        assert_eq!(te(&["identity"]), (false, false));
        assert_eq!(te(&[""]), (false, false));
    }

    #[test]
    fn bare_lf() {
        assert!(!has_bare_lf(b"GET / HTTP/1.1\r\nA: b\r\n\r\n"));
        assert!(has_bare_lf(b"GET / HTTP/1.1\nA: b\r\n\r\n"));
        assert!(has_bare_lf(b"GET / HTTP/1.1\r\nA: b\r\n\n"));
    }
}
