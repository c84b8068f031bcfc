//! Request facts from a body: the top-level `model` and `stream`, found without altering a byte,
//! and the one-value rewrite of `model` (DESIGN.md §2 "Input" and "the body is forwarded byte
//! for byte unless `model` must change").
//!
//! The body's media type picks the reader: [`extract_json`] (the JSON scanner, `json.rs`) or
//! [`extract_multipart`] (`multipart.rs`); [`remap_segments`] and [`insert_model`] (`remap.rs`)
//! write a new `model`. This file holds what they share: [`BodyFacts`], [`ModelSpan`] and
//! [`FactsError`].

mod json;
mod multipart;
mod remap;

pub use json::extract_json;
pub use multipart::extract_multipart;
pub use remap::{insert_model, remap_model, remap_segments, RemappedBody};

use crate::error::{ErrorCode, ErrorReply};
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
    /// `body[start..end]`: the content of the top-level `user` string (escapes as sent), an
    /// affinity key source.
    pub user: Option<(usize, usize)>,
    /// `body[start..end]`: the top-level `messages` array, brackets included (prefix affinity).
    pub messages: Option<(usize, usize)>,
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
