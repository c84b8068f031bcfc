//! The per-request record (DESIGN.md §6: `GET /metrics` and the decision log): facts the
//! request path captures as it goes, handed over once at the end of the exchange.
//!
//! A record lives in its client connection and is reset per request, so its text buffers keep
//! their capacity: after the first request on a connection, capturing allocates nothing. Text
//! that only the access log needs (request id, model, breadcrumb) is copied only when the
//! `slotgate::access` event is enabled.

use crate::http::ErrorCode;
use crate::routing::Breadcrumb;
use std::time::{Duration, Instant};

/// The `tracing` target of the decision log.
pub const ACCESS_TARGET: &str = "slotgate::access";

/// Status recorded when the client went away before any response byte (nginx's convention).
pub const CLIENT_CLOSED: u16 = 499;

/// Which dispatch step chose the upstream (the breadcrumb without the name), or `None` when the
/// request never reached dispatch (front-door answers, refusals, no route).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum RouteKind {
    /// Step 0: `container:<name>`.
    Container,
    /// Step 1: `registry`.
    Registry,
    /// Step 2: `passthrough:<name>`.
    Passthrough,
    /// Step 3: `prefetched:<name>`.
    Prefetched,
    /// Step 4: `capability:<name>`.
    Capability,
    /// A fallback upstream: `fallback:<name>`.
    Fallback,
    /// Not routed.
    #[default]
    None,
}

impl RouteKind {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Container => "container",
            RouteKind::Registry => "registry",
            RouteKind::Passthrough => "passthrough",
            RouteKind::Prefetched => "prefetched",
            RouteKind::Capability => "capability",
            RouteKind::Fallback => "fallback",
            RouteKind::None => "none",
        }
    }
}

impl From<Breadcrumb> for RouteKind {
    fn from(b: Breadcrumb) -> RouteKind {
        match b {
            Breadcrumb::Container => RouteKind::Container,
            Breadcrumb::Registry => RouteKind::Registry,
            Breadcrumb::Passthrough => RouteKind::Passthrough,
            Breadcrumb::Prefetched => RouteKind::Prefetched,
            Breadcrumb::Capability => RouteKind::Capability,
            Breadcrumb::Fallback => RouteKind::Fallback,
        }
    }
}

/// Counts SSE event separators (`\n\n`) in relayed bytes, across read boundaries, without
/// allocating (memchr over each read). In `\n\n\n\n` two separators end; the third `\n`
/// opens a new one.
#[derive(Debug, Default, Clone)]
pub struct SseCounter {
    /// Events seen.
    pub events: u64,
    /// The previous read ended with a `\n` that may open a separator.
    open_at_end: bool,
}

impl SseCounter {
    /// Accounts for `bytes`; returns how many separators they completed.
    pub fn feed(&mut self, bytes: &[u8]) -> u64 {
        let mut n = 0;
        let mut last: Option<(usize, bool)> = None; // (index of the last `\n`, it is open)
        for i in memchr::memchr_iter(b'\n', bytes) {
            let preceded = match (i, last) {
                (0, _) => self.open_at_end,
                (_, Some((j, open))) => open && j + 1 == i,
                _ => false,
            };
            n += u64::from(preceded);
            last = Some((i, !preceded));
        }
        if !bytes.is_empty() {
            self.open_at_end = matches!(last, Some((j, true)) if j + 1 == bytes.len());
        }
        self.events += n;
        n
    }
}

/// One request's facts, captured along its path (see the module doc).
#[derive(Debug, Default)]
pub struct Record {
    pub(crate) start: Option<Instant>,
    /// The access-log event is enabled: copy the text fields.
    pub(crate) log: bool,
    pub(crate) request_id: String,
    /// Empty when the request named no model.
    pub(crate) model: String,
    pub(crate) route: String,
    pub(crate) upstream: String,
    pub(crate) kind: RouteKind,
    pub(crate) warm: Option<bool>,
    pub(crate) stream: bool,
    pub(crate) status: u16,
    pub(crate) error: Option<ErrorCode>,
    pub(crate) routing: Option<Duration>,
    pub(crate) queue_wait: Option<Duration>,
    /// A hold/queue wait in progress since.
    pub(crate) waiting_since: Option<Instant>,
    pub(crate) sent: Option<Instant>,
    pub(crate) first_byte: Option<Instant>,
    pub(crate) upstream_end: Option<Instant>,
    pub(crate) last_event: Option<Instant>,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) sse: SseCounter,
    pub(crate) client_abort: bool,
    pub(crate) cut: bool,
    /// Fallbacks taken, `(from, to, reason)`, in order (`slotgate_fallbacks_total`); empty on
    /// the common path, so it allocates only when a fallback happens.
    pub(crate) fallbacks: Vec<(String, String, &'static str)>,
}

impl Record {
    /// Starts a new request of `bytes_in` bytes (head and body as received) now.
    pub fn begin(&mut self, bytes_in: usize) {
        let mut text = [
            std::mem::take(&mut self.request_id),
            std::mem::take(&mut self.model),
            std::mem::take(&mut self.route),
            std::mem::take(&mut self.upstream),
        ];
        text.iter_mut().for_each(String::clear);
        let [request_id, model, route, upstream] = text;
        *self = Record {
            start: Some(Instant::now()),
            log: tracing::enabled!(target: ACCESS_TARGET, tracing::Level::INFO),
            request_id,
            model,
            route,
            upstream,
            bytes_in: bytes_in as u64,
            ..Record::default()
        };
    }

    /// The request id (kept for the log only).
    pub fn request_id(&mut self, id: &str) {
        if self.log {
            self.request_id.push_str(id);
        }
    }

    /// The body's model id (kept for the log only).
    pub fn model(&mut self, model: Option<&str>) {
        if let (true, Some(m)) = (self.log, model) {
            self.model.push_str(m);
        }
    }

    /// Dispatch chose `upstream` by `crumb` (`route` is the breadcrumb text, `warm` whether the
    /// upstream's model cache is warm); `stream` when the request asked for a stream. A request
    /// held for a loading slot is re-dispatched: the last decision wins, the routing time is the
    /// first decision's.
    pub fn routed(
        &mut self,
        crumb: Breadcrumb,
        upstream: &str,
        route: &str,
        warm: bool,
        stream: bool,
    ) {
        if self.routing.is_none() {
            self.routing = self.start.map(|s| s.elapsed());
        }
        self.kind = crumb.into();
        self.upstream.clear();
        self.upstream.push_str(upstream);
        self.warm = Some(warm);
        self.stream = stream;
        if self.log {
            self.route.clear();
            self.route.push_str(route);
        }
    }

    /// Admission: a wait (hold for a loading slot, or the concurrency queue) starts now.
    pub fn wait_start(&mut self) {
        self.waiting_since.get_or_insert_with(Instant::now);
    }

    /// Admission: the wait started by `wait_start` (if any) ended; adds it to the queue wait.
    pub fn wait_end(&mut self) {
        if let Some(t) = self.waiting_since.take() {
            *self.queue_wait.get_or_insert(Duration::ZERO) += t.elapsed();
        }
    }

    /// The request was written to the upstream.
    pub fn sent(&mut self) {
        self.sent = Some(Instant::now());
    }

    /// The upstream's response head (`status`) arrived and is about to go to the client.
    pub fn response_head(&mut self, status: u16) {
        let now = Instant::now();
        self.status = status;
        self.first_byte = Some(now);
        self.upstream_end = Some(now);
    }

    /// `n` bytes were written to the client.
    pub fn wrote(&mut self, n: usize) {
        self.bytes_out += n as u64;
    }

    /// slotgate answered itself with `status` (`code` when it is an error) in `n` bytes.
    pub fn replied(&mut self, status: u16, code: Option<ErrorCode>, n: usize) {
        self.status = status;
        self.error = code;
        self.first_byte.get_or_insert_with(Instant::now);
        self.bytes_out += n as u64;
    }

    /// The client went away (before the response head: status 499).
    pub fn client_gone(&mut self) {
        self.client_abort = true;
        if self.status == 0 {
            self.status = CLIENT_CLOSED;
        }
    }

    /// The request went from upstream `from` to its fallback `to` because of `reason` (a stable
    /// label value: e.g. `loading`, `busy`, `cooling`, `connect`, `first_byte`); counted in
    /// `slotgate_fallbacks_total{from,to,reason}` at hand-over.
    pub fn fallback(&mut self, from: &str, to: &str, reason: &'static str) {
        self.fallbacks
            .push((from.to_string(), to.to_string(), reason));
    }

    /// The response was cut: ended without its terminating chunk/length (upstream died,
    /// stalled, or sent bad framing mid-body).
    pub fn cut(&mut self) {
        self.cut = true;
    }

    /// The upstream first chosen when a fallback took the request (the decision log's
    /// `fallback_from`); empty otherwise.
    pub(crate) fn fallback_from(&self) -> &str {
        self.fallbacks.first().map_or("", |f| f.0.as_str())
    }

    /// Whether the hand-over needs the request line's text (the decision log is enabled).
    pub fn wants_text(&self) -> bool {
        self.log
    }

    /// Whether a request is recorded (between `begin` and the hand-over).
    pub fn is_open(&self) -> bool {
        self.start.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(parts: &[&[u8]]) -> u64 {
        let mut c = SseCounter::default();
        for p in parts {
            c.feed(p);
        }
        c.events
    }

    #[test]
    fn counts_event_separators() {
        assert_eq!(count(&[b"data: a\n\ndata: b\n\n"]), 2);
        assert_eq!(count(&[b"data: a\n", b"\ndata: b\n\n"]), 2);
        assert_eq!(count(&[b"data: a\n\n", b"\ndata: b"]), 1);
        assert_eq!(count(&[b"data: a\n\n\r\n1a\r\ndata: b\n\n\r\n"]), 2);
        assert_eq!(count(&[b"", b"x"]), 0);
        assert_eq!(count(&[b"a\n\n\n\nb"]), 2);
        assert_eq!(count(&[b"a\n\n\nb"]), 1);
        assert_eq!(count(&[b"a\n", b"\n", b"\n", b"\nb"]), 2);
    }

    #[test]
    fn route_kinds_label() {
        assert_eq!(
            RouteKind::from(Breadcrumb::Prefetched).as_str(),
            "prefetched"
        );
        assert_eq!(RouteKind::default().as_str(), "none");
    }
}
