//! Decoding pieces of a request target (RFC 3986 percent-encoding) with the `percent-encoding`
//! crate: a hand-written decoder sliced a `&str` mid-character once and took the process down.
//! Both functions take any bytes (httparse lets 0x80–0xFF through in a target) and never panic;
//! invalid escapes stay as written and invalid UTF-8 becomes U+FFFD.

use percent_encoding::percent_decode;

/// Decodes `%XX` escapes in a path segment (model ids may contain `/` or `:` as `%2F`, `%3A`).
pub fn decode_segment(s: &[u8]) -> String {
    percent_decode(s).decode_utf8_lossy().into_owned()
}

/// Decodes a query-string value: `+` is a space, then `%XX` escapes (so `%2B` stays `+`).
pub fn decode_query_value(s: &[u8]) -> String {
    if s.contains(&b'+') {
        let spaced: Vec<u8> = s
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect();
        decode_segment(&spaced)
    } else {
        decode_segment(s)
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::string_slice)] // tests: a panic is a failure
mod tests {
    use super::*;

    #[test]
    fn segments_and_queries_decode() {
        assert_eq!(decode_segment(b"qwen%3A7b"), "qwen:7b");
        assert_eq!(decode_segment(b"a%2Fb+c"), "a/b+c");
        assert_eq!(decode_query_value(b"a%2Fb+c"), "a/b c");
        assert_eq!(decode_query_value(b"1%2B1"), "1+1");
        assert_eq!(decode_segment(b"end%41"), "endA");
        assert_eq!(decode_segment(b"bad%zz%"), "bad%zz%");
    }

    #[test]
    fn broken_escapes_and_raw_high_bytes_never_panic() {
        // The input that aborted the process: `%`, one hex digit, then a two-byte character.
        assert_eq!(decode_segment("%a\u{e9}".as_bytes()), "%a\u{e9}");
        assert_eq!(decode_segment(b"%"), "%");
        assert_eq!(decode_segment(b"%4"), "%4");
        assert_eq!(decode_segment(b"%\xc3"), "%\u{fffd}");
        assert_eq!(decode_segment(b"\xff\xfe%41"), "\u{fffd}\u{fffd}A");
        assert_eq!(decode_segment(b"%c3%a9"), "\u{e9}");
        assert_eq!(decode_segment(b"%c3"), "\u{fffd}");
        assert_eq!(decode_query_value("%a\u{e9}+".as_bytes()), "%a\u{e9} ");
        for a in 0..=255u8 {
            for b in [b'%', b'4', 0xc3, 0xa9, b'+', 0xff] {
                let _ = decode_segment(&[b'%', a, b]);
                let _ = decode_query_value(&[a, b'%', b, a]);
            }
        }
    }
}
