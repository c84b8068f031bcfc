//! The decision log: one `tracing` event per request on target `slotgate::access` (turn it off
//! alone with `SLOTGATE_LOG=info,slotgate::access=off`). Field names are part of the operations
//! contract (docs/operations.md "Decision log").

use super::record::{Record, ACCESS_TARGET};
use std::net::SocketAddr;
use std::time::Duration;

/// The request line and peer, read at hand-over (only when the decision log is enabled).
#[derive(Debug, Clone, Copy)]
pub struct RequestLine<'a> {
    /// The client's address.
    pub client: SocketAddr,
    pub method: &'a str,
    pub path: &'a str,
}

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
    let route = if r.route.is_empty() {
        "none"
    } else {
        r.route.as_str()
    };
    if let Some(layout) = crate::logging::direct_format() {
        // The same line `tracing` would write, without its formatter (docs/operations.md "Decision log").
        crate::logging::write_line(|out| {
            let mut l = crate::logging::LineBuilder::start(out, layout, ACCESS_TARGET, "request");
            l.str("request_id", r.request_id.as_str())
                .display("client", &req.client)
                .str("method", req.method)
                .str("path", req.path)
                .str("model", r.model.as_str())
                .str("route", route)
                .str("upstream", r.upstream.as_str())
                .str("cache", cache)
                .num("status", u64::from(r.status))
                .str("error", r.error.map_or("", |c| c.code()))
                .num("routing_ns", r.routing.map_or(0, |d| d.as_nanos() as u64))
                .num("queue_us", r.queue_wait.map_or(0, micros))
                .num("ttfb_us", ttfb_us)
                .num("total_us", micros(total))
                .num("bytes_in", r.bytes_in)
                .num("bytes_out", r.bytes_out)
                .num("sse_events", r.sse.events)
                .bool("client_abort", r.client_abort)
                .bool("cut", r.cut)
                .str("fallback_from", r.fallback_from());
            l.finish();
        });
        return;
    }
    tracing::info!(
        target: ACCESS_TARGET,
        request_id = r.request_id.as_str(),
        client = %req.client,
        method = req.method,
        path = req.path,
        model = r.model.as_str(),
        route,
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
        fallback_from = r.fallback_from(),
        "request"
    );
}
