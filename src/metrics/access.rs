//! The decision log: one `tracing` event per request on target `slotgate::access` (turn it off
//! alone with `SLOTGATE_LOG=info,slotgate::access=off`). Field names are part of the operations
//! contract (README "Operations").

use super::record::{Record, ACCESS_TARGET};
use super::recorder::RequestLine;
use std::time::Duration;

fn micros(d: Duration) -> u64 {
    d.as_micros().min(u128::from(u64::MAX)) as u64
}

/// Emits `r`'s event. Called only when the event is enabled (checked once at `begin`).
pub(crate) fn emit(r: &Record, req: &RequestLine<'_>, total: Duration) {
    let ttfb_us = match (r.start, r.first_byte) {
        (Some(s), Some(f)) => micros(f.saturating_duration_since(s)),
        _ => 0,
    };
    let cache = match r.warm {
        Some(true) => "warm",
        Some(false) => "cold",
        None => "",
    };
    tracing::info!(
        target: ACCESS_TARGET,
        request_id = r.request_id.as_str(),
        client = %req.client,
        method = req.method,
        path = req.path,
        model = r.model.as_str(),
        route = if r.route.is_empty() { "none" } else { r.route.as_str() },
        upstream = r.upstream.as_str(),
        cache,
        status = r.status,
        error = r.error.map_or("", |c| c.code()),
        routing_ns = r.routing.map_or(0, |d| d.as_nanos() as u64),
        queue_us = r.queue_wait.map_or(0, micros),
        ttfb_us,
        total_us = micros(total),
        bytes_in = r.bytes_in,
        bytes_out = r.bytes_out,
        sse_events = r.sse.events,
        client_abort = r.client_abort,
        cut = r.cut,
        "request"
    );
}
