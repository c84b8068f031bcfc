//! Prometheus text exposition (format 0.0.4) of the merged recorders: counters, histograms
//! (cumulative `_bucket{le}`, `_sum`, `_count` from hdrhistogram) and quantile gauges.

use super::recorder::{Hist, Recorder};
use crate::control::Control;
use crate::prometheus::{header, labels, sample, Kind};
use crate::routing::Snapshot;
use std::collections::BTreeMap;
use std::time::Instant;

/// Bucket bounds (seconds) of request-scale latencies.
const LATENCY_LE: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];
/// Bucket bounds (seconds) of slotgate's own overheads (routing, overhead).
const OVERHEAD_LE: &[f64] = &[
    0.000_000_5,
    0.000_001,
    0.000_002_5,
    0.000_005,
    0.000_01,
    0.000_025,
    0.000_05,
    0.000_1,
    0.000_25,
    0.000_5,
    0.001,
    0.005,
    0.01,
    0.1,
    1.0,
    10.0,
];
/// Quantiles exported as gauges.
const QUANTILES: &[f64] = &[0.5, 0.9, 0.99, 0.999];

pub(crate) struct Inputs<'a> {
    pub rec: &'a Recorder,
    pub control: &'a Control,
    pub driver: &'static str,
    pub draining: bool,
    pub connections: u64,
    pub panics: u64,
}

/// One histogram's `_bucket`, `_sum`, `_count` series (header written by the caller).
fn hist_sample(out: &mut String, name: &str, lbl: &str, h: &Hist, les: &[f64]) {
    let unit_s = h.unit_ns as f64 / 1e9;
    let mut counts = vec![0u64; les.len()];
    for v in h.h.iter_recorded() {
        // The bucket's highest equivalent value: a sample is never counted below its bucket.
        let secs = v.value_iterated_to() as f64 * unit_s;
        if let Some(i) = les.iter().position(|le| secs <= *le) {
            counts[i] += v.count_at_value();
        }
    }
    let sep = if lbl.is_empty() { "" } else { "," };
    let bucket = format!("{name}_bucket");
    let mut cum = 0;
    for (le, c) in les.iter().zip(&counts) {
        cum += c;
        sample(out, &bucket, &format!("{lbl}{sep}le=\"{le}\""), cum);
    }
    let total = h.h.len();
    sample(out, &bucket, &format!("{lbl}{sep}le=\"+Inf\""), total);
    sample(out, &format!("{name}_sum"), lbl, h.sum_ns as f64 / 1e9);
    sample(out, &format!("{name}_count"), lbl, total);
}

fn quantile_sample(out: &mut String, name: &str, lbl: &str, h: &Hist) {
    if h.h.is_empty() {
        return;
    }
    let unit_s = h.unit_ns as f64 / 1e9;
    let sep = if lbl.is_empty() { "" } else { "," };
    for q in QUANTILES {
        let v = h.h.value_at_quantile(*q) as f64 * unit_s;
        sample(out, name, &format!("{lbl}{sep}quantile=\"{q}\""), v);
    }
}

/// A per-upstream counter family: name, help, and how to read it from the stats.
type PerUpstream = (
    &'static str,
    &'static str,
    fn(&super::recorder::UpstreamStats) -> u64,
);

/// A histogram family plus its `<base>_quantile_seconds` gauge family, over labelled series.
fn hist_family(out: &mut String, base: &str, help: &str, les: &[f64], items: &[(String, &Hist)]) {
    let name = format!("{base}_seconds");
    header(out, &name, Kind::Histogram, help);
    for (lbl, h) in items {
        hist_sample(out, &name, lbl, h, les);
    }
    let q = format!("{base}_quantile_seconds");
    header(
        out,
        &q,
        Kind::Gauge,
        &format!("Quantiles of {name} since start (hdrhistogram, 1% precision)."),
    );
    for (lbl, h) in items {
        quantile_sample(out, &q, lbl, h);
    }
}

pub(crate) fn render(i: &Inputs<'_>) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let o = &mut out;
    let rec = i.rec;
    let mut ups: Vec<(&String, &super::recorder::UpstreamStats)> = rec.upstreams.iter().collect();
    ups.sort_by(|a, b| a.0.cmp(b.0));

    header(
        o,
        "slotgate_info",
        Kind::Gauge,
        "Build and runtime facts; the IO driver the workers got (io_uring or epoll).",
    );
    sample(
        o,
        "slotgate_info",
        &labels(&[("driver", i.driver), ("version", env!("CARGO_PKG_VERSION"))]),
        1,
    );
    header(
        o,
        "slotgate_draining",
        Kind::Gauge,
        "1 while a graceful stop drains in-flight requests.",
    );
    sample(o, "slotgate_draining", "", u8::from(i.draining));
    header(o, "slotgate_panics_total", Kind::Counter,
        "Panics caught on a connection's task (a bug: that connection was closed, the rest went on).",
    );
    sample(o, "slotgate_panics_total", "", i.panics);
    header(
        o,
        "slotgate_log_lines_dropped_total",
        Kind::Counter,
        "Decision-log lines dropped because the log sink (stderr) was slower than the workers.",
    );
    sample(
        o,
        "slotgate_log_lines_dropped_total",
        "",
        crate::logging::dropped_lines(),
    );

    header(o, "slotgate_requests_total", Kind::Counter,
        "Requests answered, by upstream (empty: none), route kind (container, registry, passthrough, prefetched, capability, none) and status (499: client left first).",
    );
    for (name, s) in &ups {
        for ((kind, status), n) in &s.requests {
            let st = status.to_string();
            let l = labels(&[
                ("upstream", name),
                ("route", kind.as_str()),
                ("status", &st),
            ]);
            sample(o, "slotgate_requests_total", &l, n);
        }
    }
    header(
        o,
        "slotgate_errors_total",
        Kind::Counter,
        "Error answers slotgate produced itself, by error code (DESIGN.md section 4).",
    );
    for (code, n) in &rec.errors {
        sample(o, "slotgate_errors_total", &labels(&[("code", code)]), n);
    }
    fallbacks_family(o, &rec.fallbacks);
    let per_upstream: [PerUpstream; 5] = [
        (
            "slotgate_client_aborts_total",
            "Requests whose client went away before the response ended.",
            |s| s.client_aborts,
        ),
        (
            "slotgate_responses_cut_total",
            "Responses ended without their terminating chunk/length (upstream died, stalled or misframed).",
            |s| s.cut,
        ),
        (
            "slotgate_request_bytes_total",
            "Request bytes received from clients (head and body).",
            |s| s.bytes_in,
        ),
        (
            "slotgate_response_bytes_total",
            "Response bytes written to clients (head and body).",
            |s| s.bytes_out,
        ),
        (
            "slotgate_sse_events_total",
            "Server-sent events relayed (blank-line separators in streamed bodies).",
            |s| s.sse_events,
        ),
    ];
    for (name, help, f) in per_upstream {
        header(o, name, Kind::Counter, help);
        for (u, s) in &ups {
            sample(o, name, &labels(&[("upstream", u)]), f(s));
        }
    }

    let lbl = |u: &str| labels(&[("upstream", u)]);
    hist_family(
        o,
        "slotgate_routing",
        "Request received to routing decision (facts, dispatch, any cold prefetch); requests that got a decision.",
        OVERHEAD_LE,
        &[(String::new(), &rec.routing)],
    );
    hist_family(
        o,
        "slotgate_overhead",
        "Time slotgate added to forwarded requests: total duration minus time waiting on the upstream (request sent to last response byte read).",
        OVERHEAD_LE,
        &[(String::new(), &rec.overhead)],
    );
    hist_family(
        o,
        "slotgate_queue_wait",
        "Admission wait (hold/queue) before forwarding.",
        LATENCY_LE,
        &[(String::new(), &rec.queue_wait)],
    );
    let items: Vec<(String, &Hist)> = ups.iter().map(|(u, s)| (lbl(u), &s.ttfb)).collect();
    hist_family(
        o,
        "slotgate_ttfb",
        "Request received to the first response byte sent to the client.",
        LATENCY_LE,
        &items,
    );
    let items: Vec<(String, &Hist)> = ups.iter().map(|(u, s)| (lbl(u), &s.duration)).collect();
    hist_family(
        o,
        "slotgate_request_duration",
        "Request received to response end (streams included).",
        LATENCY_LE,
        &items,
    );
    let items: Vec<(String, &Hist)> = ups
        .iter()
        .filter(|(_, s)| !s.sse_gap.h.is_empty())
        .map(|(u, s)| (lbl(u), &s.sse_gap))
        .collect();
    hist_family(
        o,
        "slotgate_sse_gap",
        "Gap between reads of a stream that carried SSE events (inter-token latency as relayed).",
        LATENCY_LE,
        &items,
    );

    header(
        o,
        "slotgate_active_connections",
        Kind::Gauge,
        "Open client connections (all workers).",
    );
    sample(o, "slotgate_active_connections", "", i.connections);

    // Upstream-keyed gauges from control's view.
    let (config, live, epoch) = i.control.live_view();
    let view = Snapshot::build(config, &live, epoch);
    let now = Instant::now();
    header(
        o,
        "slotgate_pool_idle_connections",
        Kind::Gauge,
        "Idle pooled upstream connections (as of each worker's last sweep, at most 1 s old).",
    );
    for u in view.upstreams.iter().filter(|u| !u.live.addrs.is_empty()) {
        let idle: usize = rec
            .pool_idle
            .iter()
            .filter(|(a, _)| u.live.addrs.contains(a))
            .map(|(_, n)| n)
            .sum();
        sample(o, "slotgate_pool_idle_connections", &lbl(u.name()), idle);
    }
    header(
        o,
        "slotgate_queue_depth",
        Kind::Gauge,
        "Requests waiting in the upstream's concurrency queue (max_inflight reached).",
    );
    for u in &view.upstreams {
        let d = u.counters().gate.waiting();
        sample(o, "slotgate_queue_depth", &lbl(u.name()), d);
    }
    header(
        o,
        "slotgate_held_requests",
        Kind::Gauge,
        "Requests held for a loading slot (on_loading = \"hold\").",
    );
    for u in &view.upstreams {
        let d = u.counters().held();
        sample(o, "slotgate_held_requests", &lbl(u.name()), d);
    }
    upstream_gauges(o, &view, crate::admission::clock_ms());
    header(
        o,
        "slotgate_upstream_models_age_seconds",
        Kind::Gauge,
        "Age of the upstream's fetched /v1/models cache (absent until the first fetch).",
    );
    for u in &view.upstreams {
        if let Some(t) = u.live.models.fetched_at {
            let age = now.saturating_duration_since(t).as_secs_f64();
            sample(
                o,
                "slotgate_upstream_models_age_seconds",
                &lbl(u.name()),
                age,
            );
        }
    }
    header(
        o,
        "slotgate_upstream_probe_age_seconds",
        Kind::Gauge,
        "Time since the upstream's last health probe (absent until the first).",
    );
    for u in &view.upstreams {
        if let Some(t) = u.live.last_probe_at {
            let age = now.saturating_duration_since(t).as_secs_f64();
            sample(
                o,
                "slotgate_upstream_probe_age_seconds",
                &lbl(u.name()),
                age,
            );
        }
    }
    let (reloads, failures) = i.control.reload_counts();
    header(
        o,
        "slotgate_reloads_total",
        Kind::Counter,
        "Config reloads applied (SIGHUP or POST /admin/reload).",
    );
    sample(o, "slotgate_reloads_total", "", reloads);
    header(
        o,
        "slotgate_reload_failures_total",
        Kind::Counter,
        "Config reloads refused (the running snapshot stayed).",
    );
    sample(o, "slotgate_reload_failures_total", "", failures);
    out
}

/// `slotgate_fallbacks_total{from,to,reason}`: requests sent on down a fallback chain.
fn fallbacks_family(o: &mut String, fallbacks: &BTreeMap<(String, String, &'static str), u64>) {
    let name = "slotgate_fallbacks_total";
    header(
        o,
        name,
        Kind::Counter,
        "Requests sent from an upstream to one of its fallbacks, by reason.",
    );
    for ((from, to, reason), n) in fallbacks {
        let l = labels(&[("from", from), ("to", to), ("reason", reason)]);
        sample(o, name, &l, n);
    }
}

/// What the replica picker and the fallback chains read, per upstream at `now_ms` (admission
/// clock): whether its cooldown breaker is open, and its load (requests in flight plus open
/// streams, what pool members are compared by).
fn upstream_gauges(o: &mut String, view: &Snapshot, now_ms: u64) {
    let lbl = |u: &str| labels(&[("upstream", u)]);
    header(
        o,
        "slotgate_upstream_cooling",
        Kind::Gauge,
        "1 while the upstream's cooldown breaker is open (pools skip it, fallback chains take over).",
    );
    for u in &view.upstreams {
        let cooling = u.counters().cooldown.is_cooling(now_ms);
        sample(
            o,
            "slotgate_upstream_cooling",
            &lbl(u.name()),
            u8::from(cooling),
        );
    }
    header(
        o,
        "slotgate_upstream_load",
        Kind::Gauge,
        "Requests in flight plus open streams per upstream (what replica pools compare).",
    );
    for u in &view.upstreams {
        sample(o, "slotgate_upstream_load", &lbl(u.name()), u.load());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Record;
    use std::time::Duration;

    #[test]
    fn cooling_and_load_gauges_per_upstream() {
        use crate::config::Config;
        use crate::routing::LiveState;
        use std::sync::Arc;
        let toml = "[[upstream]]\nname = \"gpu0\"\nkind = \"container\"\nurl = \"http://127.0.0.1:1/v1\"\n\
                    [[upstream]]\nname = \"gpu1\"\nkind = \"container\"\nurl = \"http://127.0.0.1:2/v1\"\n";
        let cfg = Arc::new(Config::from_toml_str(toml, None).unwrap());
        let view = Snapshot::build(cfg, &LiveState::default(), 1);
        let c0 = view.by_name("gpu0").unwrap().counters().clone();
        let _a = c0.request();
        let mut b = c0.request();
        b.streaming();
        let c1 = view.by_name("gpu1").unwrap().counters();
        c1.cooldown.record_failure(1_000, 1, 5_000, 0);
        let mut out = String::new();
        upstream_gauges(&mut out, &view, 2_000);
        for line in [
            "# TYPE slotgate_upstream_cooling gauge\n",
            "slotgate_upstream_cooling{upstream=\"gpu0\"} 0\n",
            "slotgate_upstream_cooling{upstream=\"gpu1\"} 1\n",
            "# TYPE slotgate_upstream_load gauge\n",
            "slotgate_upstream_load{upstream=\"gpu0\"} 3\n",
            "slotgate_upstream_load{upstream=\"gpu1\"} 0\n",
        ] {
            assert!(out.contains(line), "{line:?} in\n{out}");
        }
        out.clear();
        upstream_gauges(&mut out, &view, 6_000);
        assert!(
            out.contains("slotgate_upstream_cooling{upstream=\"gpu1\"} 0\n"),
            "{out}"
        );
    }

    #[test]
    fn fallbacks_are_counted_merged_and_rendered() {
        let mut r = Record::default();
        r.begin(10);
        r.fallback("gpu0", "openrouter", "cooling");
        let w = super::super::WorkerMetrics::default();
        w.finish(&mut r, line());
        r.begin(10);
        assert!(r.fallbacks.is_empty(), "begin starts afresh");
        r.fallback("gpu0", "openrouter", "cooling");
        r.fallback("gpu0", "groq", "connect");
        let other = super::super::WorkerMetrics::default();
        other.finish(&mut r, line());
        let mut all = Recorder::default();
        w.merge_into(&mut all);
        other.merge_into(&mut all);
        let mut out = String::new();
        fallbacks_family(&mut out, &all.fallbacks);
        assert_eq!(
            out,
            "# HELP slotgate_fallbacks_total Requests sent from an upstream to one of its fallbacks, by reason.\n\
             # TYPE slotgate_fallbacks_total counter\n\
             slotgate_fallbacks_total{from=\"gpu0\",to=\"groq\",reason=\"connect\"} 1\n\
             slotgate_fallbacks_total{from=\"gpu0\",to=\"openrouter\",reason=\"cooling\"} 2\n"
        );
    }

    fn line() -> super::super::RequestLine<'static> {
        super::super::RequestLine {
            client: "127.0.0.1:1".parse().unwrap(),
            method: "POST",
            path: "/v1/chat/completions",
        }
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut h = Hist::micros();
        h.record(Duration::from_micros(80));
        h.record(Duration::from_millis(3));
        h.record(Duration::from_secs(400));
        let mut out = String::new();
        hist_sample(&mut out, "x_seconds", "upstream=\"a\"", &h, LATENCY_LE);
        assert!(out.contains("x_seconds_bucket{upstream=\"a\",le=\"0.0001\"} 1\n"));
        assert!(out.contains("x_seconds_bucket{upstream=\"a\",le=\"0.005\"} 2\n"));
        assert!(out.contains("x_seconds_bucket{upstream=\"a\",le=\"300\"} 2\n"));
        assert!(out.contains("x_seconds_bucket{upstream=\"a\",le=\"+Inf\"} 3\n"));
        assert!(out.contains("x_seconds_count{upstream=\"a\"} 3\n"));
        assert!(out.contains("x_seconds_sum{upstream=\"a\"} 400.00308\n"));
    }
}
