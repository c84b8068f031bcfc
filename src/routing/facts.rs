//! Request facts from a body: the top-level `model` and `stream`, found without altering a byte,
//! and the one-value rewrite of `model` (DESIGN.md §2 "Input" and "the body is forwarded byte
//! for byte unless `model` must change").
//!
//! The JSON scanner validates the whole body (RFC 8259 grammar, UTF-8) but builds nothing: string
//! contents are skipped sixteen bytes at a time (SWAR), and UTF-8 is checked only inside strings
//! that hold non-ASCII bytes, so a 1 MiB chat body with `model` last costs about one pass.

use crate::error::{ErrorCode, ErrorReply};
use memchr::memmem;
use std::borrow::Cow;
use std::fmt;

/// How the bytes under a [`ModelSpan`] are encoded, hence how a new value must be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanEncoding {
    /// A JSON string, quotes included.
    JsonString,
    /// A `multipart/form-data` field value, raw bytes.
    Raw,
}

/// Where the `model` value sits in the body: `body[start..end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSpan {
    /// First byte (the opening quote for JSON).
    pub start: usize,
    /// One past the last byte (past the closing quote for JSON).
    pub end: usize,
    /// How to write a replacement.
    pub encoding: SpanEncoding,
}

/// What a body says about routing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BodyFacts<'a> {
    /// The top-level `model` string, trimmed and unescaped; `None` when absent, not a string, or
    /// blank.
    pub model: Option<Cow<'a, str>>,
    /// Where the (last) `model` string value sits, for [`remap_model`].
    pub span: Option<ModelSpan>,
    /// The top-level `stream` is JSON `true` (form field `true` for multipart).
    pub stream: bool,
}

impl BodyFacts<'_> {
    /// The model id, borrowed.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }
}

/// Why a body could not be read for routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactsError {
    /// Not valid JSON: `400 request.invalid_json`.
    InvalidJson {
        /// Byte offset where the scanner gave up.
        offset: usize,
        /// What was wrong there.
        reason: &'static str,
    },
}

impl FactsError {
    /// The error code of DESIGN.md §4.
    pub fn code(&self) -> ErrorCode {
        match self {
            FactsError::InvalidJson { .. } => ErrorCode::InvalidJson,
        }
    }

    /// The error answer, details `{offset, reason}`.
    pub fn to_reply(&self) -> ErrorReply {
        match *self {
            FactsError::InvalidJson { offset, reason } => {
                ErrorReply::new(self.code(), self.to_string())
                    .details(serde_json::json!({"offset": offset, "reason": reason}))
            }
        }
    }
}

impl fmt::Display for FactsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FactsError::InvalidJson { offset, reason } => {
                write!(
                    f,
                    "request body is not valid JSON at byte {offset}: {reason}"
                )
            }
        }
    }
}

impl std::error::Error for FactsError {}

/// Facts from a body given its `Content-Type`: multipart form fields, nothing for binary media
/// types, otherwise JSON (validated; also when the type is missing or mislabelled, as `curl -d`
/// sends form-urlencoded). An empty body has no model.
pub fn extract<'a>(
    body: &'a [u8],
    content_type: Option<&str>,
) -> Result<BodyFacts<'a>, FactsError> {
    if body.is_empty() {
        return Ok(BodyFacts::default());
    }
    if let Some(ct) = content_type {
        let mime = ct.split(';').next().unwrap_or("").trim();
        if mime.eq_ignore_ascii_case("multipart/form-data") {
            return Ok(match boundary_of(ct) {
                Some(b) => extract_multipart(body, b.as_bytes()),
                None => BodyFacts::default(),
            });
        }
        let binary = ["audio/", "image/", "video/", "application/octet-stream"];
        if binary.iter().any(|p| {
            mime.get(..p.len())
                .is_some_and(|m| m.eq_ignore_ascii_case(p))
        }) {
            return Ok(BodyFacts::default());
        }
    }
    extract_json(body)
}

/// The `boundary` parameter of a `multipart/form-data` content type, unquoted.
fn boundary_of(ct: &str) -> Option<&str> {
    ct.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|x| x.strip_suffix('"'))
            .unwrap_or(v);
        (!v.is_empty()).then_some(v)
    })
}

/// Facts from a JSON body; the whole body is validated.
pub fn extract_json(body: &[u8]) -> Result<BodyFacts<'_>, FactsError> {
    let found = Scanner { b: body, i: 0 }.scan()?;
    let mut facts = BodyFacts {
        stream: found.stream,
        ..BodyFacts::default()
    };
    if let Some((start, end, escaped)) = found.model {
        // The span includes the quotes; the scanner validated the content as UTF-8.
        let raw = std::str::from_utf8(&body[start + 1..end - 1]).unwrap_or_default();
        let value: Cow<'_, str> = if escaped {
            Cow::Owned(unescape(raw))
        } else {
            Cow::Borrowed(raw)
        };
        facts.model = trim_cow(value);
        facts.span = Some(ModelSpan {
            start,
            end,
            encoding: SpanEncoding::JsonString,
        });
    }
    Ok(facts)
}

fn trim_cow(v: Cow<'_, str>) -> Option<Cow<'_, str>> {
    let t = match v {
        Cow::Borrowed(s) => Cow::Borrowed(s.trim()),
        Cow::Owned(s) if s.trim().len() == s.len() => Cow::Owned(s),
        Cow::Owned(s) => Cow::Owned(s.trim().to_string()),
    };
    (!t.is_empty()).then_some(t)
}

/// What the scanner found at the top level.
#[derive(Default)]
struct Found {
    /// `(start, end, has_escapes)` of the last top-level `model` when it is a string.
    model: Option<(usize, usize, bool)>,
    stream: bool,
}

/// Which top-level key the next value belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    Model,
    Stream,
    Other,
}

/// Deepest nesting accepted (serde_json stops at 128; agents' tool schemas nest deeper than
/// people expect, so allow more, bounded so the stack stays a fixed bitset).
const MAX_DEPTH: usize = 1024;

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scanner<'_> {
    fn err<T>(&self, reason: &'static str) -> Result<T, FactsError> {
        Err(FactsError::InvalidJson {
            offset: self.i,
            reason,
        })
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            if !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                break;
            }
            self.i += 1;
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// Validates the whole document, iteratively (no recursion, fixed stack).
    fn scan(mut self) -> Result<Found, FactsError> {
        let mut found = Found::default();
        // Bit d set = the container at depth d+1 is an object.
        let mut objects = [0u64; MAX_DEPTH / 64];
        let mut depth = 0usize;
        // The key of the value about to be scanned, when that value sits in the top-level object.
        let mut key = Key::Other;
        loop {
            // A value.
            self.ws();
            let at_top = depth == 1;
            let start = self.i;
            match self.peek() {
                Some(b'{') | Some(b'[') => {
                    if at_top && key == Key::Model {
                        found.model = None;
                    }
                    if at_top && key == Key::Stream {
                        found.stream = false;
                    }
                    let is_obj = self.b[self.i] == b'{';
                    if depth == MAX_DEPTH {
                        return self.err("nesting too deep");
                    }
                    let (w, bit) = (depth / 64, 1u64 << (depth % 64));
                    if is_obj {
                        objects[w] |= bit;
                    } else {
                        objects[w] &= !bit;
                    }
                    depth += 1;
                    self.i += 1;
                    self.ws();
                    match (is_obj, self.peek()) {
                        (true, Some(b'}')) | (false, Some(b']')) => {
                            self.i += 1;
                            depth -= 1;
                        }
                        (true, _) => {
                            key = self.key(depth)?;
                            continue;
                        }
                        (false, _) => continue,
                    }
                }
                Some(b'"') => {
                    let escaped = self.string()?;
                    if at_top {
                        match key {
                            Key::Model => found.model = Some((start, self.i, escaped)),
                            Key::Stream => found.stream = false,
                            Key::Other => {}
                        }
                    }
                }
                Some(b't') => {
                    self.literal(b"true")?;
                    if at_top {
                        match key {
                            Key::Model => found.model = None,
                            Key::Stream => found.stream = true,
                            Key::Other => {}
                        }
                    }
                }
                Some(c) => {
                    match c {
                        b'f' => self.literal(b"false")?,
                        b'n' => self.literal(b"null")?,
                        b'-' | b'0'..=b'9' => self.number()?,
                        _ => return self.err("expected a value"),
                    }
                    if at_top {
                        match key {
                            Key::Model => found.model = None,
                            Key::Stream => found.stream = false,
                            Key::Other => {}
                        }
                    }
                }
                None => return self.err("unexpected end, expected a value"),
            }
            // After a value: close containers or move to the next element.
            loop {
                if depth == 0 {
                    self.ws();
                    if self.i != self.b.len() {
                        return self.err("trailing characters after the document");
                    }
                    return Ok(found);
                }
                self.ws();
                let in_obj = objects[(depth - 1) / 64] & (1u64 << ((depth - 1) % 64)) != 0;
                match (self.peek(), in_obj) {
                    (Some(b','), true) => {
                        self.i += 1;
                        self.ws();
                        key = self.key(depth)?;
                        break;
                    }
                    (Some(b','), false) => {
                        self.i += 1;
                        break;
                    }
                    (Some(b'}'), true) | (Some(b']'), false) => {
                        self.i += 1;
                        depth -= 1;
                    }
                    (None, _) => return self.err("unexpected end inside a container"),
                    (_, true) => return self.err("expected ',' or '}'"),
                    (_, false) => return self.err("expected ',' or ']'"),
                }
            }
        }
    }

    /// An object key and its `:`; classifies it when the object is the top-level one.
    fn key(&mut self, depth: usize) -> Result<Key, FactsError> {
        if self.peek() != Some(b'"') {
            return self.err("expected a string key");
        }
        let start = self.i;
        let escaped = self.string()?;
        let k = if depth != 1 {
            Key::Other
        } else {
            let raw = &self.b[start + 1..self.i - 1];
            let decoded;
            let name: &[u8] = if escaped {
                // Validated UTF-8 by `string`; a key with escapes is rare, decode it.
                decoded = unescape(std::str::from_utf8(raw).unwrap_or(""));
                decoded.as_bytes()
            } else {
                raw
            };
            match name {
                b"model" => Key::Model,
                b"stream" => Key::Stream,
                _ => Key::Other,
            }
        };
        self.ws();
        if self.peek() != Some(b':') {
            return self.err("expected ':' after a key");
        }
        self.i += 1;
        Ok(k)
    }

    /// A string starting at its opening quote; returns whether it holds escapes. Validates the
    /// escapes, the absence of raw control characters and, when a non-ASCII byte was seen, UTF-8.
    #[inline]
    fn string(&mut self) -> Result<bool, FactsError> {
        self.i += 1;
        let content = self.i;
        let mut escaped = false;
        let mut high = 0u64;
        loop {
            self.i = skip_plain(self.b, self.i, &mut high);
            match self.b.get(self.i) {
                None => return self.err("unterminated string"),
                Some(b'"') => break,
                Some(b'\\') => {}
                Some(_) => return self.err("control character in a string"),
            }
            escaped = true;
            match self.b.get(self.i + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 2,
                Some(b'u') => {
                    let hex = self.b.get(self.i + 2..self.i + 6);
                    if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                        return self.err("bad \\u escape");
                    }
                    self.i += 6;
                }
                _ => return self.err("bad escape"),
            }
        }
        // JSON text outside strings is ASCII by grammar, so UTF-8 only needs checking in strings,
        // and only in those where a byte had its high bit set.
        if high & HI != 0 {
            if let Err(e) = std::str::from_utf8(&self.b[content..self.i]) {
                self.i = content + e.valid_up_to();
                return self.err("not UTF-8");
            }
        }
        self.i += 1;
        Ok(escaped)
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), FactsError> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            self.err("expected a value")
        }
    }

    fn digits(&mut self) -> usize {
        let s = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        self.i - s
    }

    fn number(&mut self) -> Result<(), FactsError> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return self.err("bad number"),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return self.err("bad number fraction");
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return self.err("bad number exponent");
            }
        }
        Ok(())
    }
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Flags (high bit of each byte) the bytes that end a run of plain string content: `"`, `\\` and
/// control characters. The lowest flag is exact (borrows only propagate upwards), which is all
/// [`skip_plain`] uses.
#[inline(always)]
fn special(w: u64) -> u64 {
    let q = w ^ (LO * u64::from(b'"'));
    let s = w ^ (LO * u64::from(b'\\'));
    let quote = q.wrapping_sub(LO) & !q;
    let slash = s.wrapping_sub(LO) & !s;
    let ctl = w.wrapping_sub(LO * 0x20) & !w;
    (quote | slash | ctl) & HI
}

/// The index of the first `"`, `\\` or control byte at or after `i` (or `b.len()`), eight bytes
/// at a time; ORs every byte passed over into `high` so the caller knows whether any was
/// non-ASCII.
#[inline]
fn skip_plain(b: &[u8], mut i: usize, high: &mut u64) -> usize {
    while let Some(chunk) = b.get(i..i + 16) {
        let (w0, w1) = chunk.split_at(8);
        let w0 = u64::from_le_bytes(w0.try_into().unwrap_or_default());
        let w1 = u64::from_le_bytes(w1.try_into().unwrap_or_default());
        *high |= w0 | w1;
        let m0 = special(w0);
        if m0 != 0 {
            return i + (m0.trailing_zeros() / 8) as usize;
        }
        let m1 = special(w1);
        if m1 != 0 {
            return i + 8 + (m1.trailing_zeros() / 8) as usize;
        }
        i += 16;
    }
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            break;
        }
        *high |= u64::from(c);
        i += 1;
    }
    i
}

/// Decodes the escapes of a validated JSON string body (lone surrogates become U+FFFD).
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('u') => {
                let hi = hex4(&mut chars);
                let cp = if (0xD800..0xDC00).contains(&hi) {
                    let mut ahead = chars.clone();
                    if ahead.next() == Some('\\') && ahead.next() == Some('u') {
                        let lo = hex4(&mut ahead);
                        if (0xDC00..0xE000).contains(&lo) {
                            chars = ahead;
                            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                        } else {
                            0xFFFD
                        }
                    } else {
                        0xFFFD
                    }
                } else {
                    hi
                };
                out.push(char::from_u32(cp).unwrap_or('\u{FFFD}'));
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

fn hex4(chars: &mut std::str::Chars<'_>) -> u32 {
    (0..4).fold(0, |acc, _| {
        acc * 16 + chars.next().and_then(|c| c.to_digit(16)).unwrap_or(0)
    })
}

/// Facts from a `multipart/form-data` body with this `boundary`: the `model` and `stream` fields.
/// A malformed body yields no model (the upstream judges it), never an error.
pub fn extract_multipart<'a>(body: &'a [u8], boundary: &[u8]) -> BodyFacts<'a> {
    let mut delim = Vec::with_capacity(boundary.len() + 4);
    delim.extend_from_slice(b"\r\n--");
    delim.extend_from_slice(boundary);
    let finder = memmem::Finder::new(&delim);
    let mut facts = BodyFacts::default();
    // The first delimiter may open the body without the leading CRLF.
    let mut pos = if body.starts_with(&delim[2..]) {
        delim.len() - 2
    } else {
        match finder.find(body) {
            Some(p) => p + delim.len(),
            None => return facts,
        }
    };
    loop {
        let rest = &body[pos..];
        if rest.starts_with(b"--") {
            return facts; // closing delimiter
        }
        let Some(line_end) = memmem::find(rest, b"\r\n") else {
            return facts;
        };
        let head_start = pos + line_end + 2;
        let Some(head_len) = memmem::find(&body[head_start..], b"\r\n\r\n") else {
            return facts;
        };
        let value_start = head_start + head_len + 4;
        let Some(value_len) = finder.find(&body[value_start..]) else {
            return facts;
        };
        let value_end = value_start + value_len;
        let value = &body[value_start..value_end];
        match form_field_name(&body[head_start..head_start + head_len]) {
            Some(b"model") => {
                facts.model = std::str::from_utf8(value)
                    .ok()
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .map(Cow::Borrowed);
                facts.span = Some(ModelSpan {
                    start: value_start,
                    end: value_end,
                    encoding: SpanEncoding::Raw,
                });
            }
            Some(b"stream") => facts.stream = value.trim_ascii() == b"true",
            _ => {}
        }
        pos = value_end + delim.len();
    }
}

/// The `name` of a part from its `Content-Disposition: form-data; name="..."` header.
fn form_field_name(head: &[u8]) -> Option<&[u8]> {
    for line in head.split(|&c| c == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            continue;
        };
        if !line[..colon]
            .trim_ascii()
            .eq_ignore_ascii_case(b"content-disposition")
        {
            continue;
        }
        for param in line[colon + 1..].split(|&c| c == b';').skip(1) {
            let Some(eq) = param.iter().position(|&c| c == b'=') else {
                continue;
            };
            if !param[..eq].trim_ascii().eq_ignore_ascii_case(b"name") {
                continue;
            }
            let v = param[eq + 1..].trim_ascii();
            let v = v
                .strip_prefix(b"\"")
                .and_then(|x| x.strip_suffix(b"\""))
                .unwrap_or(v);
            return Some(v);
        }
    }
    None
}

/// A body with its `model` value replaced, as three pieces for a vectored write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemappedBody<'a> {
    /// The bytes before the value, untouched.
    pub head: &'a [u8],
    /// The new value, encoded like the old one (a quoted JSON string, or raw for multipart).
    pub value: Vec<u8>,
    /// The bytes after the value, untouched.
    pub tail: &'a [u8],
}

impl RemappedBody<'_> {
    /// The new body length (the proxy's `Content-Length`).
    pub fn len(&self) -> usize {
        self.head.len() + self.value.len() + self.tail.len()
    }

    /// Whether the new body is empty (never, for a real span).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The three pieces joined.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        out.extend_from_slice(self.head);
        out.extend_from_slice(&self.value);
        out.extend_from_slice(self.tail);
        out
    }
}

/// `body` with only the `model` value under `span` replaced by `new_model`, in pieces.
pub fn remap_segments<'a>(body: &'a [u8], span: ModelSpan, new_model: &str) -> RemappedBody<'a> {
    let value = match span.encoding {
        SpanEncoding::JsonString => json_string(new_model),
        SpanEncoding::Raw => new_model.as_bytes().to_vec(),
    };
    RemappedBody {
        head: &body[..span.start],
        value,
        tail: &body[span.end..],
    }
}

/// A JSON object `body` without a `model` string, with `"model":new_model` added as its last key
/// (so it wins over a `null` or non-string `model` for parsers that keep the last duplicate);
/// every other byte kept. `None` when the body is not a JSON object (empty, multipart, an array).
pub fn insert_model<'a>(body: &'a [u8], new_model: &str) -> Option<RemappedBody<'a>> {
    let open = body.iter().position(|b| !b.is_ascii_whitespace())?;
    let close = body.iter().rposition(|b| !b.is_ascii_whitespace())?;
    if body.get(open) != Some(&b'{') || body.get(close) != Some(&b'}') || close <= open {
        return None;
    }
    let inner = body.get(open + 1..close)?;
    let mut value = Vec::with_capacity(new_model.len() + 12);
    if inner.iter().any(|b| !b.is_ascii_whitespace()) {
        value.push(b',');
    }
    value.extend_from_slice(b"\"model\":");
    value.extend_from_slice(&json_string(new_model));
    Some(RemappedBody {
        head: body.get(..close)?,
        value,
        tail: body.get(close..)?,
    })
}

/// `body` with only the `model` value under `span` replaced by `new_model`; every other byte kept.
pub fn remap_model(body: &[u8], span: ModelSpan, new_model: &str) -> Vec<u8> {
    remap_segments(body, span, new_model).to_vec()
}

/// `s` as a quoted JSON string.
fn json_string(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 2);
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
    out
}

#[cfg(test)]
#[allow(clippy::string_slice)] // tests: a panic is a failure
mod tests {
    use super::*;

    fn facts(body: &str) -> BodyFacts<'_> {
        extract_json(body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e}"))
    }

    #[test]
    fn model_last_in_sdk_order() {
        let body = r#"{"messages":[{"role":"user","content":"hi \"model\": \"nope\""}],"stream":true,"model":"qwopus3.6-27b-v2"}"#;
        let f = facts(body);
        assert_eq!(f.model(), Some("qwopus3.6-27b-v2"));
        assert!(f.stream);
        let span = f.span.unwrap();
        assert_eq!(&body[span.start..span.end], "\"qwopus3.6-27b-v2\"");
        assert_eq!(span.encoding, SpanEncoding::JsonString);
    }

    #[test]
    fn only_top_level_keys_count() {
        let f = facts(r#"{"metadata":{"model":"inner","stream":true},"tools":[{"model":"x"}]}"#);
        assert_eq!(f.model(), None);
        assert!(!f.stream);
        assert_eq!(f.span, None);
        let f = facts(r#"[{"model":"in-array"}]"#);
        assert_eq!(f.model(), None);
    }

    #[test]
    fn stream_is_json_true_only() {
        for (body, want) in [
            (r#"{"stream":true}"#, true),
            (r#"{"stream" : true }"#, true),
            (r#"{"stream":false}"#, false),
            (r#"{"stream":"true"}"#, false),
            (r#"{"stream":1}"#, false),
            (r#"{"stream":null}"#, false),
            (r#"{"stream":{"x":true}}"#, false),
            (r#"{"stream":true,"stream":false}"#, false),
            (r#"{"stream":false,"stream":true}"#, true),
        ] {
            assert_eq!(facts(body).stream, want, "{body}");
        }
    }

    #[test]
    fn model_values() {
        for (body, want) in [
            (r#"{"model":"  spaced  "}"#, Some("spaced")),
            (r#"{"model":"   "}"#, None),
            (r#"{"model":""}"#, None),
            (r#"{"model":null}"#, None),
            (r#"{"model":42}"#, None),
            (r#"{"model":["a"]}"#, None),
            (r#"{"model":"a","model":"b"}"#, Some("b")),
            (r#"{"model":"a","model":7}"#, None),
            (r#"{"model":"quote\"d\\slash\/"}"#, Some("quote\"d\\slash/")),
            (r#"{"model":"\u00e9t\u00E9"}"#, Some("été")),
            (r#"{"model":"\ud83d\ude00x"}"#, Some("😀x")),
            (r#"{"model":"lone\ud800"}"#, Some("lone\u{FFFD}")),
            (r#"{"mod\u0065l":"escaped-key"}"#, Some("escaped-key")),
            (r#"{"model":"\tTabbed\n"}"#, Some("Tabbed")),
            ("{\"model\":\"ünïcode-模型\"}", Some("ünïcode-模型")),
        ] {
            assert_eq!(facts(body).model(), want, "{body}");
        }
        // Blank model: no id, but the span is still known.
        assert!(facts(r#"{"model":" "}"#).span.is_some());
    }

    #[test]
    fn valid_documents() {
        for body in [
            "{}",
            " \n{ } \t",
            "[]",
            "\"str\"",
            "0",
            "-0.5e+10",
            "1E5",
            "true",
            "null",
            r#"{"a":[1,2,{"b":[[]]}],"c":-12.5e-3,"d":"\u0041","e":false,"f":null}"#,
        ] {
            assert!(extract_json(body.as_bytes()).is_ok(), "{body}");
        }
        let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
        assert!(extract_json(deep.as_bytes()).is_ok());
    }

    #[test]
    fn invalid_documents() {
        for body in [
            "",
            " ",
            "{",
            "}",
            r#"{"model":"x",}"#,
            r#"{"model" "x"}"#,
            r#"{model:"x"}"#,
            r#"{'model':'x'}"#,
            r#"{"model":"unterminated}"#,
            "{\"model\":\"ctrl\u{1}char\"}",
            "{\"model\":\"raw\nnewline\"}",
            r#"{"model":"bad\escape"}"#,
            r#"{"model":"bad\u12"}"#,
            r#"{"n":01}"#,
            r#"{"n":-}"#,
            r#"{"n":1.}"#,
            r#"{"n":1e}"#,
            r#"{"n":.5}"#,
            r#"{"n":+1}"#,
            r#"{"n":NaN}"#,
            r#"{"t":tru}"#,
            r#"{"a":1}{"b":2}"#,
            r#"{"a":1} x"#,
            r#"[1,]"#,
            r#"[1 2]"#,
            r#"{"a":1]"#,
            r#"[1}"#,
            r#"{1:2}"#,
        ] {
            let e = extract_json(body.as_bytes()).expect_err(body);
            assert_eq!(e.code(), ErrorCode::InvalidJson, "{body}");
        }
        let deep = format!("{}{}", "[".repeat(1025), "]".repeat(1025));
        assert!(extract_json(deep.as_bytes()).is_err());
        let e = extract_json(b"{\"model\":\"\xff\"}").unwrap_err();
        assert_eq!(
            e,
            FactsError::InvalidJson {
                offset: 10,
                reason: "not UTF-8"
            }
        );
        let reply = e.to_reply();
        assert_eq!(reply.code.status(), 400);
        assert_eq!(reply.code.code(), "request.invalid_json");
        assert_eq!(reply.details["offset"], 10);
    }

    /// A deterministic xorshift for the differential test.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 as usize
        }
    }

    #[test]
    fn agrees_with_serde_json_on_mutations() {
        let seeds = [
            r#"{"model":"m-1","messages":[{"role":"user","content":"a\"b\\c\u00e9"}],"stream":true,"n":-1.5e3}"#,
            r#"[{"a":[1,2,3],"b":{"c":null,"d":false}},"x\ty",0.25]"#,
        ];
        let alphabet = b"{}[]:,\"\\ 0123456789.-+eEtrufalsn\x01\x7f";
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut checked = 0;
        for seed in seeds {
            for _ in 0..4000 {
                let mut doc = seed.as_bytes().to_vec();
                for _ in 0..1 + rng.next() % 3 {
                    let at = rng.next() % doc.len();
                    let c = alphabet[rng.next() % alphabet.len()];
                    match rng.next() % 3 {
                        0 => doc[at] = c,
                        1 => doc.insert(at, c),
                        _ => {
                            doc.remove(at);
                        }
                    }
                    if doc.is_empty() {
                        doc.push(b'0');
                    }
                }
                let ours = extract_json(&doc);
                let theirs = serde_json::from_slice::<serde_json::Value>(&doc);
                assert_eq!(
                    ours.is_ok(),
                    theirs.is_ok(),
                    "{:?}: ours {ours:?}, serde_json {theirs:?}",
                    String::from_utf8_lossy(&doc)
                );
                if let (Ok(f), Ok(v)) = (&ours, &theirs) {
                    let want = v.get("model").and_then(|m| m.as_str()).map(str::trim);
                    assert_eq!(f.model(), want.filter(|m| !m.is_empty()));
                    assert_eq!(
                        f.stream,
                        v.get("stream") == Some(&serde_json::Value::Bool(true))
                    );
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 8000);
    }

    const FORM: &str = "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFF\0\0model\r\n--XyZ\r\ncontent-disposition: form-data; name=model\r\n\r\nwhisper-large-v3\r\n--XyZ\r\nContent-Disposition: form-data; name=\"stream\"\r\n\r\ntrue\r\n--XyZ--\r\n";

    #[test]
    fn multipart_model_and_stream() {
        let f = extract(FORM.as_bytes(), Some("multipart/form-data; boundary=XyZ")).unwrap();
        assert_eq!(f.model(), Some("whisper-large-v3"));
        assert!(f.stream);
        let span = f.span.unwrap();
        assert_eq!(span.encoding, SpanEncoding::Raw);
        assert_eq!(&FORM[span.start..span.end], "whisper-large-v3");
        let quoted = extract(
            FORM.as_bytes(),
            Some("Multipart/Form-Data; charset=utf-8; Boundary=\"XyZ\""),
        )
        .unwrap();
        assert_eq!(quoted.model(), Some("whisper-large-v3"));
        // The remap replaces only the field value.
        let out = remap_model(FORM.as_bytes(), span, "whisper-1");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            FORM.replace("whisper-large-v3", "whisper-1")
        );
    }

    #[test]
    fn multipart_without_model_or_malformed() {
        let no_model =
            "--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nxx\r\n--b--\r\n";
        let f = extract_multipart(no_model.as_bytes(), b"b");
        assert_eq!((f.model(), f.span, f.stream), (None, None, false));
        for junk in [
            "",
            "--b",
            "--b\r\nno headers end",
            "garbage",
            "--b\r\n\r\nunterminated",
        ] {
            assert_eq!(
                extract_multipart(junk.as_bytes(), b"b"),
                BodyFacts::default(),
                "{junk:?}"
            );
        }
        // No boundary parameter: nothing to find, no error.
        assert_eq!(
            extract(FORM.as_bytes(), Some("multipart/form-data")).unwrap(),
            BodyFacts::default()
        );
    }

    #[test]
    fn content_type_selects_the_reader() {
        let json = br#"{"model":"m"}"#;
        assert_eq!(
            extract(b"", Some("application/json")).unwrap(),
            BodyFacts::default()
        );
        assert_eq!(extract(json, None).unwrap().model(), Some("m"));
        assert_eq!(
            extract(json, Some("application/x-www-form-urlencoded"))
                .unwrap()
                .model(),
            Some("m")
        );
        assert_eq!(
            extract(json, Some("application/json; charset=utf-8"))
                .unwrap()
                .model(),
            Some("m")
        );
        assert_eq!(
            extract(b"\x00\xff", Some("audio/wav")).unwrap(),
            BodyFacts::default()
        );
        assert_eq!(
            extract(b"\x00\xff", Some("application/octet-stream")).unwrap(),
            BodyFacts::default()
        );
        assert!(extract(b"not json", Some("application/json")).is_err());
    }

    #[test]
    fn remap_replaces_only_the_value() {
        let body = r#"{"messages":[{"role":"user","content":"x"}], "model" : "coder-model" ,"stream":true}"#;
        let f = facts(body);
        let span = f.span.unwrap();
        let seg = remap_segments(body.as_bytes(), span, "qwen-coder-32b");
        let out = seg.to_vec();
        assert_eq!(seg.len(), out.len());
        assert!(!seg.is_empty());
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            body.replace("\"coder-model\"", "\"qwen-coder-32b\"")
        );
        assert_eq!(
            facts(std::str::from_utf8(&out).unwrap()).model(),
            Some("qwen-coder-32b")
        );
    }

    #[test]
    fn insert_adds_the_model_as_the_last_key() {
        let cases: [(&str, Option<&str>); 7] = [
            (r#"{"input":"x"}"#, Some(r#"{"input":"x","model":"e5"}"#)),
            ("  {}\n", Some("  {\"model\":\"e5\"}\n")),
            ("{ }", Some("{ \"model\":\"e5\"}")),
            (r#"{"model":null}"#, Some(r#"{"model":null,"model":"e5"}"#)),
            ("", None),
            ("[1]", None),
            ("--b\r\n", None),
        ];
        for (body, want) in cases {
            let got = insert_model(body.as_bytes(), "e5").map(|r| r.to_vec());
            assert_eq!(got.as_deref(), want.map(str::as_bytes), "{body:?}");
        }
    }

    #[test]
    fn remap_escapes_json() {
        let body = r#"{"model":"x"}"#;
        let span = facts(body).span.unwrap();
        let tricky = "a\"b\\c\nd\u{1}é/😀";
        let out = remap_model(body.as_bytes(), span, tricky);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["model"], tricky);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "{\"model\":\"a\\\"b\\\\c\\nd\\u0001é/😀\"}"
        );
        assert_eq!(extract_json(&out).unwrap().model(), Some(tricky));
    }
}
