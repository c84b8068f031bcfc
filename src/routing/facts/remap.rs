//! The one-value rewrite of `model` (DESIGN.md §2 "the body is forwarded byte for byte unless
//! `model` must change"): only the bytes under the [`ModelSpan`] change, and the result comes in
//! pieces for a vectored write.

use super::{ModelSpan, SpanEncoding};

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
mod tests {
    use super::*;
    use crate::routing::facts::extract_json;

    #[test]
    fn remap_replaces_only_the_value() {
        let body = r#"{"messages":[{"role":"user","content":"x"}], "model" : "coder-model" ,"stream":true}"#;
        let f = extract_json(body.as_bytes()).unwrap();
        let span = f.span.unwrap();
        let seg = remap_segments(body.as_bytes(), span, "qwen-coder-32b");
        let out = seg.to_vec();
        assert_eq!(seg.len(), out.len());
        assert!(!seg.is_empty());
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            body.replace("\"coder-model\"", "\"qwen-coder-32b\"")
        );
        assert_eq!(extract_json(&out).unwrap().model(), Some("qwen-coder-32b"));
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
        let span = extract_json(body.as_bytes()).unwrap().span.unwrap();
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
