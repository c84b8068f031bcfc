//! The front desk: the pure part of a request's handling, between framing and dispatch, and the
//! outgoing head after it. No IO, no worker state: `exchange::handle` runs these on a live
//! request, and the whole-front-door fuzz target ([`crate::fuzzing`]) runs the very same code on
//! arbitrary bytes.

use super::forward;
use super::request_id::RequestId;
use crate::http::{ErrorCode, ErrorReply, RequestHead};
use crate::routing::catalog::{self, LoadOf};
use crate::routing::facts::{self, BodyFacts};
use crate::routing::{Decision, RequestFacts, Snapshot, UpstreamEntry};

/// Bodies up to this size join the outgoing head (one write); larger ones are sent from the
/// client's own bytes (one more write) instead of being copied behind the head (a copy, and for
/// large bodies a fresh allocation every request).
pub const INLINE_BODY: usize = 16 * 1024;

/// What the desk makes of a request that passed the front-door key check.
pub enum Desk<'a> {
    /// Answer `200` with this JSON body (the model list, one model).
    Json(Vec<u8>),
    /// Refuse with this error.
    Error(ErrorReply),
    /// Dispatch on [`request_facts`] of the head and these body facts (the model and its
    /// span, for a remap).
    Route(BodyFacts<'a>),
}

/// Whether `head` (parsed from `buf`) may pass the front door: no `[auth]` keys configured, or
/// it carries an accepted key. Uses the keys of the request's snapshot, so a reload applies to the
/// next request.
#[inline]
pub fn key_accepted(snap: &Snapshot, head: &RequestHead, buf: &[u8]) -> bool {
    match &snap.config.front_keys {
        None => true,
        Some(keys) => keys.accepts_request(head.authorization(buf), head.x_api_key(buf)),
    }
}

/// Paths outside `/v1`, the local endpoints (answered from the snapshot, never by calling
/// upstreams: DESIGN.md §3b), and the body's facts.
pub fn examine<'a>(
    snap: &Snapshot,
    head: &RequestHead,
    buf: &'a [u8],
    body: &'a [u8],
    load: LoadOf<'_>,
) -> Desk<'a> {
    let path = path_of(head, buf);
    if !(path == "/v1" || path.starts_with("/v1/")) {
        let reply = ErrorReply::new(ErrorCode::NotFound, format!("no endpoint at {path}"))
            .details(serde_json::json!({"path": path}));
        return Desk::Error(reply);
    }
    if head.method() == crate::http::Method::Get {
        if path == "/v1/models" {
            return Desk::Json(catalog::models_list_json_with(snap, load));
        }
        if let Some(id) = path.strip_prefix("/v1/models/") {
            let id = crate::http::target::decode_segment(id.as_bytes());
            return match catalog::model_json_with(snap, &id, load) {
                Some(body) => Desk::Json(body),
                None => Desk::Error(
                    ErrorReply::new(
                        ErrorCode::NoRoute,
                        format!("no upstream serves model '{id}'"),
                    )
                    .details(serde_json::json!({"model": id, "path": path})),
                ),
            };
        }
    }
    let ct = head
        .content_type(buf)
        .and_then(|v| std::str::from_utf8(v).ok());
    match facts::extract(body, ct) {
        Ok(bf) => Desk::Route(bf),
        Err(e) => Desk::Error(ErrorReply::new(ErrorCode::InvalidJson, e.to_string())),
    }
}

// httparse lets bytes 0x80–0xFF into a target: a path that is not UTF-8 matches nothing.
fn path_of<'a>(head: &RequestHead, buf: &'a [u8]) -> &'a str {
    std::str::from_utf8(head.path(buf)).unwrap_or("")
}

/// The facts dispatch reads: method, path and query of the head, model and `stream` of the body.
pub fn request_facts<'a>(
    head: &RequestHead,
    buf: &'a [u8],
    bf: &'a BodyFacts<'a>,
) -> RequestFacts<'a> {
    RequestFacts {
        method: std::str::from_utf8(head.method_bytes(buf)).unwrap_or(""),
        path: path_of(head, buf),
        query: head
            .query(buf)
            .map(|q| std::str::from_utf8(q).unwrap_or("")),
        model: bf.model(),
        stream: bf.stream,
    }
}

/// The request's affinity key (DESIGN-NOTES "Session affinity"): header, else `user`, else the
/// `messages` prefix; computed only when the snapshot has replica pools.
pub fn affinity(
    snap: &Snapshot,
    head: &RequestHead,
    buf: &[u8],
    bf: &BodyFacts<'_>,
    body: &[u8],
) -> Option<u64> {
    if !snap.has_pools() {
        return None;
    }
    let routing = &snap.config.routing;
    let header = head.header(buf, routing.affinity_header.as_bytes());
    let span = |s: Option<(usize, usize)>| s.and_then(|(a, b)| body.get(a..b));
    let user = span(bf.user).and_then(|u| std::str::from_utf8(u).ok());
    crate::routing::pool::affinity_key(routing, header, user, span(bf.messages))
}

/// The outgoing request for `decision`: the head for `entry`, followed by the body (remapped
/// when the decision says so) unless it is large and unchanged. Returns the bytes and whether the
/// client's body must still be sent after them.
pub fn outgoing(
    head: &RequestHead,
    buf: &[u8],
    decision: &Decision,
    entry: &UpstreamEntry,
    bf: &BodyFacts<'_>,
    body: &[u8],
    request_id: &RequestId,
) -> (Vec<u8>, bool) {
    let remapped = match (&decision.remap, bf.span) {
        (Some(new_model), Some(span)) => Some(facts::remap_segments(body, span, new_model)),
        // No `model` string in the body (the path default was routed): add the binding's id.
        (Some(new_model), None) => facts::insert_model(body, new_model),
        _ => None,
    };
    let body_len = remapped.as_ref().map_or(body.len(), |r| r.len());
    let body_apart = remapped.is_none() && body_len > INLINE_BODY;
    let mut out = Vec::with_capacity(512 + if body_apart { 0 } else { body_len });
    forward::request_head(
        &mut out,
        head,
        buf,
        &decision.path,
        entry,
        body_len,
        request_id,
    );
    match &remapped {
        Some(r) => {
            out.extend_from_slice(r.head);
            out.extend_from_slice(&r.value);
            out.extend_from_slice(r.tail);
        }
        None if body_apart => {}
        None => out.extend_from_slice(body),
    }
    (out, body_apart)
}
