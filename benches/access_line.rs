//! One decision-log line, formatted: slotgate's own writer (`logging::LineBuilder`, what a worker
//! runs) against `tracing`'s formatter with the same 19 fields, both JSON and text, into a
//! reused buffer. `cargo bench --bench access_line`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use parking_lot::Mutex;
use slotgate::logging::{Direct, LineBuilder};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

const RID: &str = "01a24b4b-4675-7000-b9dc-c51000000000";

fn direct(out: &mut Vec<u8>, layout: Direct, client: &SocketAddr) {
    let mut l = LineBuilder::start(out, layout, "slotgate::access", "request");
    l.str("request_id", RID)
        .display("client", client)
        .str("method", "POST")
        .str("path", "/v1/chat/completions")
        .str("model", "qwopus3.6-27b-v2")
        .str("route", "container:chat")
        .str("upstream", "chat")
        .str("cache", "warm")
        .num("status", 200)
        .str("error", "")
        .num("routing_ns", 140_619)
        .num("queue_us", 0)
        .num("ttfb_us", 4239)
        .num("total_us", 168_083)
        .num("bytes_in", 295)
        .num("bytes_out", 625)
        .num("sse_events", 2)
        .bool("client_abort", false)
        .bool("cut", false);
    l.finish();
}

fn traced(client: &SocketAddr) {
    tracing::info!(
        target: "slotgate::access",
        request_id = RID,
        client = %client,
        method = "POST",
        path = "/v1/chat/completions",
        model = "qwopus3.6-27b-v2",
        route = "container:chat",
        upstream = "chat",
        cache = "warm",
        status = 200u16,
        error = "",
        routing_ns = 140_619u64,
        queue_us = 0u64,
        ttfb_us = 4239u64,
        total_us = 168_083u64,
        bytes_in = 295u64,
        bytes_out = 625u64,
        sse_events = 2u64,
        client_abort = false,
        cut = false,
        "request"
    );
}

#[derive(Clone)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let mut v = self.0.lock();
        if v.len() > 1 << 20 {
            v.clear();
        }
        v.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn bench(c: &mut Criterion) {
    let client: SocketAddr = "127.0.0.1:49158".parse().unwrap();
    let mut out = Vec::with_capacity(1 << 16);
    for (name, layout) in [("direct_json", Direct::Json), ("direct_text", Direct::Text)] {
        c.bench_function(name, |b| {
            b.iter(|| {
                if out.len() > 1 << 15 {
                    out.clear();
                }
                direct(&mut out, layout, black_box(&client));
            })
        });
    }
    let sink = Sink(Arc::new(Mutex::new(Vec::with_capacity(1 << 21))));
    for (name, json) in [("tracing_json", true), ("tracing_text", false)] {
        let s = sink.clone();
        let b = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || s.clone());
        let dispatch = if json {
            tracing::Dispatch::new(b.json().finish())
        } else {
            tracing::Dispatch::new(b.finish())
        };
        tracing::dispatcher::with_default(&dispatch, || {
            c.bench_function(name, |b| b.iter(|| traced(black_box(&client))));
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
