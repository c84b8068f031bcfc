//! Per-worker recorders (DESIGN.md §7 "Workers never take a lock on the request path"): each
//! worker owns one; only that worker and the `/metrics` scraper ever touch its mutex, so the
//! lock is uncontended except for the instant of a scrape. Merged at scrape time.

use super::access::{self, RequestLine};
use super::record::{Record, RouteKind};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Significant figures of every histogram (1% relative error, small buckets).
const SIGFIG: u8 = 2;

/// A latency histogram: hdrhistogram in a fixed unit plus the exact sum.
#[derive(Clone)]
pub struct Hist {
    pub(crate) h: Histogram<u64>,
    /// Nanoseconds per unit recorded in `h`.
    pub(crate) unit_ns: u64,
    pub(crate) sum_ns: u128,
}

impl Hist {
    /// Values in microseconds, up to one hour.
    pub fn micros() -> Hist {
        Hist::new(1_000, 3_600_000_000)
    }

    /// Values in nanoseconds, up to one minute (routing, which includes a cold prefetch).
    pub fn nanos() -> Hist {
        Hist::new(1, 60_000_000_000)
    }

    fn new(unit_ns: u64, max: u64) -> Hist {
        Hist {
            h: Histogram::new_with_bounds(1, max, SIGFIG).expect("valid histogram bounds"),
            unit_ns,
            sum_ns: 0,
        }
    }

    /// Records one duration (clamped into range).
    pub fn record(&mut self, d: Duration) {
        let ns = d.as_nanos();
        self.sum_ns += ns;
        let v = (ns / u128::from(self.unit_ns)).min(u128::from(u64::MAX)) as u64;
        self.h.saturating_record(v.max(1));
    }

    /// Adds `other` (same bounds) into `self`.
    pub fn add(&mut self, other: &Hist) {
        // Same constructor, same bounds: `add` cannot fail.
        let _ = self.h.add(&other.h);
        self.sum_ns += other.sum_ns;
    }

    /// An empty histogram with the same bounds.
    pub fn empty_like(&self) -> Hist {
        Hist {
            h: Histogram::new_from(&self.h),
            unit_ns: self.unit_ns,
            sum_ns: 0,
        }
    }
}

/// Per-upstream series (the upstream `""` holds requests that never reached one).
#[derive(Clone)]
pub struct UpstreamStats {
    /// Answered requests by route kind and status.
    pub requests: BTreeMap<(RouteKind, u16), u64>,
    pub client_aborts: u64,
    pub cut: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub sse_events: u64,
    pub ttfb: Hist,
    pub duration: Hist,
    pub sse_gap: Hist,
}

impl Default for UpstreamStats {
    fn default() -> UpstreamStats {
        UpstreamStats {
            requests: BTreeMap::new(),
            client_aborts: 0,
            cut: 0,
            bytes_in: 0,
            bytes_out: 0,
            sse_events: 0,
            ttfb: Hist::micros(),
            duration: Hist::micros(),
            sse_gap: Hist::micros(),
        }
    }
}

impl UpstreamStats {
    fn add(&mut self, o: &UpstreamStats) {
        for (k, v) in &o.requests {
            *self.requests.entry(*k).or_default() += v;
        }
        self.client_aborts += o.client_aborts;
        self.cut += o.cut;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.sse_events += o.sse_events;
        self.ttfb.add(&o.ttfb);
        self.duration.add(&o.duration);
        self.sse_gap.add(&o.sse_gap);
    }
}

/// Everything one worker (or, merged, the process) recorded.
#[derive(Clone)]
pub struct Recorder {
    /// Keyed by upstream name.
    pub upstreams: HashMap<String, UpstreamStats>,
    /// Errors slotgate produced, by code.
    pub errors: BTreeMap<&'static str, u64>,
    /// Request start to decision.
    pub routing: Hist,
    /// Total minus time waiting on the upstream (forwarded requests only).
    pub overhead: Hist,
    /// Admission wait (hold/queue) before forwarding.
    pub queue_wait: Hist,
    /// Idle pooled connections per upstream address, as of the worker's last pool sweep.
    pub pool_idle: Vec<(SocketAddr, usize)>,
    /// Fallbacks taken, by `(from, to, reason)`.
    pub fallbacks: BTreeMap<(String, String, &'static str), u64>,
}

impl Default for Recorder {
    fn default() -> Recorder {
        Recorder {
            upstreams: HashMap::new(),
            errors: BTreeMap::new(),
            routing: Hist::nanos(),
            overhead: Hist::micros(),
            queue_wait: Hist::micros(),
            pool_idle: Vec::new(),
            fallbacks: BTreeMap::new(),
        }
    }
}

impl Recorder {
    fn upstream(&mut self, name: &str) -> &mut UpstreamStats {
        // Look up by `&str` first: allocating the key only the first time an upstream is seen.
        if !self.upstreams.contains_key(name) {
            self.upstreams
                .insert(name.to_string(), UpstreamStats::default());
        }
        self.upstreams.get_mut(name).expect("inserted above")
    }

    /// Accounts one finished request.
    pub(crate) fn observe(&mut self, r: &Record, total: Duration) {
        if let Some(d) = r.routing {
            self.routing.record(d);
        }
        if let Some(d) = r.queue_wait {
            self.queue_wait.record(d);
        }
        if let Some(sent) = r.sent {
            let waited = r
                .upstream_end
                .map_or(Duration::ZERO, |e| e.saturating_duration_since(sent));
            self.overhead.record(total.saturating_sub(waited));
        }
        if let Some(code) = r.error {
            *self.errors.entry(code.code()).or_default() += 1;
        }
        for f in &r.fallbacks {
            *self.fallbacks.entry(f.clone()).or_default() += 1;
        }
        let start = r.start;
        let u = self.upstream(&r.upstream);
        *u.requests.entry((r.kind, r.status)).or_default() += 1;
        u.client_aborts += u64::from(r.client_abort);
        u.cut += u64::from(r.cut);
        u.bytes_in += r.bytes_in;
        u.bytes_out += r.bytes_out;
        u.sse_events += r.sse.events;
        if let (Some(s), Some(f)) = (start, r.first_byte) {
            u.ttfb.record(f.saturating_duration_since(s));
        }
        u.duration.record(total);
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Recorder) {
        for (name, s) in &other.upstreams {
            self.upstream(name).add(s);
        }
        for (k, v) in &other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.routing.add(&other.routing);
        self.overhead.add(&other.overhead);
        self.queue_wait.add(&other.queue_wait);
        self.pool_idle.extend_from_slice(&other.pool_idle);
        for (k, v) in &other.fallbacks {
            *self.fallbacks.entry(k.clone()).or_default() += v;
        }
    }
}

/// One worker's metrics: its recorder and the gauges it publishes.
#[derive(Default)]
pub struct WorkerMetrics {
    rec: Mutex<Recorder>,
    connections: AtomicU64,
}

impl WorkerMetrics {
    /// Hands over a finished request: the decision-log event (when enabled), then the
    /// recorder. The record stays for reuse by the next request.
    pub fn finish(&self, r: &mut Record, req: RequestLine<'_>) {
        let Some(start) = r.start else { return };
        let total = start.elapsed();
        if r.status == 0 {
            // Ended without any answer: the client left while we waited (hold, queue, head).
            r.client_gone();
        }
        if r.log {
            access::emit(r, &req, total);
        }
        self.rec.lock().observe(r, total);
        r.start = None;
    }

    /// Records a gap between SSE events of a stream relayed from `upstream`.
    pub fn sse_gap(&self, upstream: &str, gap: Duration) {
        self.rec.lock().upstream(upstream).sse_gap.record(gap);
    }

    /// Open client connections on this worker now (written by the worker only).
    pub fn set_connections(&self, n: usize) {
        self.connections.store(n as u64, Ordering::Relaxed);
    }

    /// The worker's idle pool, as of its periodic sweep.
    pub fn set_pool_idle(&self, idle: Vec<(SocketAddr, usize)>) {
        self.rec.lock().pool_idle = idle;
    }

    pub(crate) fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    pub(crate) fn merge_into(&self, into: &mut Recorder) {
        into.merge(&self.rec.lock());
    }
}

// `relayed` sits here, not in `record.rs`: it writes into the worker's recorder, and the record
// stays below the recorder (record.rs imports nothing of metrics).
impl Record {
    /// Response body bytes read from the upstream and relayed (`wrote` counts what reached the
    /// client). Counts SSE events of streams and records their inter-arrival gaps in `m`.
    pub fn relayed(&mut self, body: &[u8], m: &WorkerMetrics) {
        let now = Instant::now();
        self.upstream_end = Some(now);
        if self.stream && self.sse.feed(body) > 0 {
            if let Some(prev) = self.last_event.replace(now) {
                m.sse_gap(&self.upstream, now - prev);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hist_records_sum_and_merges() {
        let mut a = Hist::micros();
        a.record(Duration::from_millis(3));
        let mut b = a.empty_like();
        b.record(Duration::from_millis(5));
        a.add(&b);
        assert_eq!(a.h.len(), 2);
        assert_eq!(a.sum_ns, 8_000_000);
        let mut n = Hist::nanos();
        n.record(Duration::from_nanos(0));
        n.record(Duration::from_secs(3600));
        assert_eq!(n.h.len(), 2);
    }
}
