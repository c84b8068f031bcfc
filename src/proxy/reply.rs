//! Answers slotgate writes itself on the front door (DESIGN.md §4): the error envelope and the
//! local JSON answers (`/v1/models`), plus the `503 slot.loading` and `429 dispatch.busy` bodies
//! the admission steps build.

use super::client::ClientConn;
use super::context::Outcome;
use super::request_id::RequestId;
use crate::admission::Refusal;
use crate::http::{ErrorCode, ErrorReply, ResponseWriter};
use crate::routing::{Snapshot, UpstreamEntry};
use monoio::io::AsyncWriteRentExt;

/// Writes `reply` as the answer; closes when the client asked or the code demands it.
pub async fn error(
    c: &mut ClientConn,
    reply: &ErrorReply,
    request_id: &RequestId,
    keep_alive: bool,
) -> Outcome {
    let close = !keep_alive || reply.code.closes_connection();
    let extra = format!("x-request-id: {}\r\n", request_id.as_str());
    let out = reply.to_response(&extra, close);
    c.rec
        .replied(reply.code.status(), Some(reply.code), out.len());
    c.probe.responding();
    let (res, _) = c.stream.write_all(out).await;
    if res.is_err() || close {
        Outcome::Close
    } else {
        Outcome::KeepAlive
    }
}

/// Writes a local JSON answer with `status`.
pub async fn json(
    c: &mut ClientConn,
    status: u16,
    body: &[u8],
    request_id: &RequestId,
    keep_alive: bool,
) -> Outcome {
    let mut out = Vec::with_capacity(body.len() + 160);
    ResponseWriter::start(&mut out, status)
        .content_type("application/json")
        .content_length(body.len())
        .header("x-request-id", request_id.as_str())
        .close(!keep_alive)
        .end();
    out.extend_from_slice(body);
    c.rec.replied(status, None, out.len());
    c.probe.responding();
    let (res, _) = c.stream.write_all(out).await;
    if res.is_err() || !keep_alive {
        Outcome::Close
    } else {
        Outcome::KeepAlive
    }
}

/// `503 slot.loading` for `entry` (DESIGN.md §3).
/// `model` is the id dispatch used (the request's, else its path default).
pub fn loading(snap: &Snapshot, entry: &UpstreamEntry, model: &str) -> ErrorReply {
    let state = entry.state();
    let retry = entry.cfg.retry_after(&snap.config.routing);
    // `phase`, `requested_model` and `upstream` are always there; whatever the control plane
    // pushed joins them but never overwrites them (a pushed `phase` string is the phase).
    let mut progress = match &entry.live.pushed {
        Some(p) => p.progress.as_object().cloned().unwrap_or_default(),
        None => serde_json::Map::new(),
    };
    let phase = match progress.get("phase") {
        Some(serde_json::Value::String(p)) if !p.is_empty() => p.clone(),
        _ => state.as_str().to_string(),
    };
    progress.insert("phase".into(), phase.into());
    progress.insert("requested_model".into(), model.into());
    progress.insert("upstream".into(), entry.name().into());
    ErrorReply::new(
        ErrorCode::SlotLoading,
        format!(
            "slot '{}' is {} — not ready to serve",
            entry.name(),
            state.as_str()
        ),
    )
    .details(serde_json::json!({
        "slot": entry.name(),
        "state": state.as_str(),
        "retry_after_s": retry,
        "progress": progress,
    }))
    .retry_after(retry)
}

/// `429 dispatch.busy`: `entry`'s concurrency queue is full or the wait timed out (§3a).
pub fn busy(snap: &Snapshot, entry: &UpstreamEntry, why: Refusal) -> ErrorReply {
    let retry = entry.cfg.retry_after(&snap.config.routing);
    let why = match why {
        Refusal::QueueFull => "queue full",
        Refusal::Timeout => "queue wait timed out",
    };
    ErrorReply::new(
        ErrorCode::Busy,
        format!(
            "upstream '{}' is at its concurrency limit ({why})",
            entry.name()
        ),
    )
    .details(serde_json::json!({
        "upstream": entry.name(),
        "max_inflight": entry.cfg.max_inflight,
        "max_queue": entry.cfg.max_queue,
        "queued": entry.counters().gate.waiting(),
    }))
    .retry_after(retry)
}

/// `502 dispatch.upstream_unavailable`: the upstream's name resolved to no address.
pub fn no_address(entry: &UpstreamEntry) -> ErrorReply {
    ErrorReply::new(
        ErrorCode::UpstreamUnavailable,
        format!("upstream '{}' has no resolved address", entry.name()),
    )
    .details(serde_json::json!({"upstream": entry.name()}))
}
