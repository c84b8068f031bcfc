//! Admission costs nothing under the limit: the fast path of the concurrency gate
//! (one CAS in, one decrement and one load out) against doing nothing, and the per-request
//! counters the proxy takes from its snapshot entry.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use slotgate::admission::Gate;
use slotgate::config::Config;
use slotgate::control::Control;

fn gate(c: &mut Criterion) {
    let mut g = c.benchmark_group("admission");
    let unlimited = Gate::new(0, 0);
    let limited = Gate::new(1_000_000, 128);
    g.bench_function("baseline_no_gate", |b| b.iter(|| black_box(&unlimited)));
    g.bench_function("enter_release_unlimited", |b| {
        b.iter(|| drop(black_box(unlimited.try_enter())))
    });
    g.bench_function("enter_release_under_limit", |b| {
        b.iter(|| drop(black_box(limited.try_enter())))
    });
    let cfg = Config::from_toml_str(
        "[[upstream]]\nname = \"chat\"\nkind = \"container\"\nurl = \"http://127.0.0.1:1/v1\"\nmax_inflight = 4\n",
        None,
    )
    .unwrap();
    let control = Control::with_config(cfg);
    let snap = control.snapshot();
    let entry = snap.by_name("chat").unwrap();
    // What the proxy does per request: the counters come with the routed snapshot entry.
    g.bench_function("counters_lookup_and_request_guard", |b| {
        b.iter(|| {
            let c = black_box(entry).counters();
            let guard = c.request();
            let permit = c.gate.try_enter();
            drop(permit);
            drop(guard);
        })
    });
    g.finish();
}

criterion_group!(benches, gate);
criterion_main!(benches);
