//! The JSON reader: validates the whole body (RFC 8259 grammar, UTF-8) but builds nothing, and
//! notes where the top-level `model` string sits and whether `stream` is `true`. String contents
//! are skipped sixteen bytes at a time (SWAR), and UTF-8 is checked only inside strings that hold
//! non-ASCII bytes, so a 1 MiB chat body with `model` last costs about one pass.

use super::{BodyFacts, FactsError, ModelSpan, SpanEncoding};
use std::borrow::Cow;

/// Facts from a JSON body; the whole body is validated.
pub fn extract_json(body: &[u8]) -> Result<BodyFacts<'_>, FactsError> {
    let found = Scanner { b: body, i: 0 }.scan()?;
    let mut facts = BodyFacts {
        stream: found.stream,
        user: found.user,
        messages: found.messages,
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
    /// Content bytes (no quotes, escapes as sent) of the last top-level `user` string.
    user: Option<(usize, usize)>,
    /// The last top-level `messages` array, brackets included.
    messages: Option<(usize, usize)>,
}

/// Which top-level key the next value belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    Model,
    Stream,
    User,
    Messages,
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
        // Where the top-level `messages` array being scanned opened.
        let mut messages_open: Option<usize> = None;
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
                    if at_top && key == Key::User {
                        found.user = None;
                    }
                    if at_top && key == Key::Messages && self.b[self.i] == b'[' {
                        messages_open = Some(self.i);
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
                            if depth == 1 {
                                if let Some(s) = messages_open.take() {
                                    found.messages = Some((s, self.i));
                                }
                            }
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
                            Key::User => found.user = Some((start + 1, self.i - 1)),
                            Key::Messages | Key::Other => {}
                        }
                    }
                }
                Some(b't') => {
                    self.literal(b"true")?;
                    if at_top {
                        match key {
                            Key::Model => found.model = None,
                            Key::User => found.user = None,
                            Key::Stream => found.stream = true,
                            Key::Messages | Key::Other => {}
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
                            Key::User => found.user = None,
                            Key::Messages | Key::Other => {}
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
                        if depth == 1 {
                            if let Some(s) = messages_open.take() {
                                found.messages = Some((s, self.i));
                            }
                        }
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
                b"user" => Key::User,
                b"messages" => Key::Messages,
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

#[cfg(test)]
#[allow(clippy::string_slice)] // tests: a panic is a failure
mod tests {
    #[test]
    fn user_and_messages_spans() {
        let body = br#"{"messages":[{"role":"user","content":"hi ]"}],"user":"al\"ice","n":{"user":"x","messages":[1]},"model":"m"}"#;
        let f = extract_json(body).unwrap();
        let (s, e) = f.messages.unwrap();
        assert_eq!(&body[s..e], br#"[{"role":"user","content":"hi ]"}]"#);
        let (s, e) = f.user.unwrap();
        assert_eq!(&body[s..e], br#"al\"ice"#);
        let f = extract_json(br#"{"user":7,"messages":"x"}"#).unwrap();
        assert_eq!((f.user, f.messages), (None, None));
        let f = extract_json(br#"{"user":"a","user":null,"messages":[]}"#).unwrap();
        assert_eq!(f.user, None);
        assert_eq!(f.messages, Some((35, 37)));
    }

    use super::*;
    use crate::error::ErrorCode;

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
}
