//! The `multipart/form-data` reader (audio transcriptions and the like): the `model` and `stream`
//! form fields, found by the part boundary without parsing the parts' contents.

use super::{BodyFacts, ModelSpan, SpanEncoding};
use memchr::memmem;
use std::borrow::Cow;

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

#[cfg(test)]
#[allow(clippy::string_slice)] // tests: a panic is a failure
mod tests {
    use super::*;
    use crate::routing::facts::{extract, remap_model};

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
}
