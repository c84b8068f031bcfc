//! Criterion micro-benches of the routing hot path: dispatch hits, snapshot reads, body facts, remap.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use slotgate::config::Config;
use slotgate::routing::{
    dispatch, extract_json, pick, remap_segments, FetchesDone, LiveState, LiveUpstream,
    LocalSnapshot, MemberLoad, ModelList, RequestFacts, Snapshot, SnapshotCell, Step,
};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A host with `n` upstreams (half containers, a quarter slots, a quarter remotes), 8 warm model
/// ids each, and `registry` bindings spread over the slots.
fn host(n: usize, registry: usize) -> Snapshot {
    let mut t = String::from("[routing]\ndefault_slot = \"u0\"\n");
    let kind = |i: usize| match i % 4 {
        0 | 1 => "container",
        2 => "slot",
        _ => "remote",
    };
    for i in 0..n {
        let _ = write!(
            t,
            "[[upstream]]\nname = \"u{i}\"\nkind = \"{}\"\nurl = \"http://127.0.0.1:{}/v1\"\n",
            kind(i),
            10000 + i
        );
    }
    t.push_str("[registry]\n");
    for r in 0..registry {
        let _ = writeln!(t, "\"registry-model-{r:05}\" = \"u{}\"", (r * 4 + 2) % n);
    }
    let cfg = Arc::new(Config::from_toml_str(&t, None).expect("bench config"));
    let mut live = LiveState::default();
    for i in 0..n {
        let mut ids: Vec<String> = (0..8).map(|m| format!("org/model-{i}-{m}")).collect();
        if i % 4 == 2 {
            // Slots advertise the ids bound to them, so step 1 needs no remap.
            ids.extend(
                (0..registry)
                    .filter(|r| (r * 4 + 2) % n == i)
                    .map(|r| format!("registry-model-{r:05}")),
            );
        }
        live.upstreams.insert(
            format!("u{i}").into(),
            LiveUpstream {
                models: Arc::new(ModelList {
                    ids,
                    fetched_at: None,
                }),
                ..LiveUpstream::default()
            },
        );
    }
    Snapshot::build(cfg, &live, 1)
}

fn bench_dispatch(c: &mut Criterion) {
    let mut g = c.benchmark_group("dispatch");
    let done = FetchesDone::new();
    for (n, registry) in [(100usize, 10_000usize), (1000, 10_000)] {
        let snap = host(n, registry);
        let cases = [
            ("step0_container", format!("org/model-{}-3", n - 4)),
            ("step1_registry", "registry-model-04321".to_string()),
            ("step2_passthrough", format!("org/model-{}-5", n - 1)),
        ];
        for (name, model) in &cases {
            let facts = RequestFacts::new("POST", "/v1/chat/completions").with_model(Some(model));
            // Check the case hits the step it is named after before timing it.
            let Step::Decided(Ok(d)) = dispatch(&snap, &facts, &done) else {
                panic!("{name}: not a hit");
            };
            assert_eq!(name.as_bytes()[4] - b'0', d.breadcrumb.step(), "{name}");
            g.bench_with_input(
                BenchmarkId::new(*name, format!("{n}up_{registry}reg")),
                &facts,
                |b, facts| b.iter(|| dispatch(black_box(&snap), black_box(facts), &done)),
            );
        }
    }
    g.finish();
}

/// Dispatch plus the member pick for a model `members` containers all advertise (step 0 pools),
/// loads read from atomics as the proxy reads its counters, with and without an affinity key.
fn bench_pool(c: &mut Criterion) {
    let mut g = c.benchmark_group("dispatch_pick");
    let done = FetchesDone::new();
    for members in [2usize, 8] {
        let mut t = String::new();
        for i in 0..members {
            let _ = write!(
                t,
                "[[upstream]]\nname = \"gpu{i}\"\nkind = \"container\"\nurl = \"http://127.0.0.1:{}/v1\"\n",
                11000 + i
            );
        }
        let cfg = Arc::new(Config::from_toml_str(&t, None).expect("bench config"));
        let mut live = LiveState::default();
        for i in 0..members {
            live.upstreams.insert(
                format!("gpu{i}").into(),
                LiveUpstream {
                    models: Arc::new(ModelList {
                        ids: vec!["qwen3-8b".into()],
                        fetched_at: None,
                    }),
                    ..LiveUpstream::default()
                },
            );
        }
        let snap = Snapshot::build(cfg, &live, 1);
        let loads: Vec<AtomicU64> = (0..members)
            .map(|i| AtomicU64::new((i as u64 * 7) % 5))
            .collect();
        let facts = RequestFacts::new("POST", "/v1/chat/completions").with_model(Some("qwen3-8b"));
        for (label, key) in [
            ("least_loaded", None),
            ("affinity", Some(0x9e37_79b9_7f4a_7c15u64)),
        ] {
            g.bench_function(BenchmarkId::new(label, format!("{members}members")), |b| {
                b.iter(|| {
                    let Step::Decided(Ok(mut d)) =
                        dispatch(black_box(&snap), black_box(&facts), &done)
                    else {
                        unreachable!()
                    };
                    if let Some(p) = d.pool {
                        let members = snap.pool(p);
                        let (i, _) = pick(
                            members,
                            |i| MemberLoad {
                                eligible: true,
                                load: loads[i].load(Ordering::Relaxed),
                            },
                            black_box(key),
                            4,
                        );
                        d.retarget(&snap, &facts, &members[i]);
                    }
                    d
                })
            });
        }
    }
    g.finish();
}

fn bench_snapshot_read(c: &mut Criterion) {
    let cell = Arc::new(SnapshotCell::new(host(100, 1000)));
    let local = LocalSnapshot::new(cell);
    c.bench_function("snapshot/local_get", |b| b.iter(|| black_box(local.get())));
}

/// A chat body of about `size` bytes in OpenAI SDK key order: messages first, `model` last.
fn chat_body(size: usize) -> Vec<u8> {
    let para = "The quick brown fox jumps over the lazy dog; \\\"quoted\\\" text, a tab\\t and\\n newlines, unicode caf\\u00e9 and \u{6a21}\u{578b}. ";
    let mut body =
        String::from("{\"messages\":[{\"role\":\"system\",\"content\":\"You are helpful.\"}");
    let tail = ",\"temperature\":0.7,\"stream\":true,\"model\":\"qwopus3.6-27b-v2\"}";
    // Messages of up to 4 KiB each, as long as a whole paragraph still fits.
    while body.len() + tail.len() + para.len() + 40 < size {
        body.push_str(",{\"role\":\"user\",\"content\":\"");
        let start = body.len();
        while body.len() - start < 4096 && body.len() + tail.len() + para.len() + 4 < size {
            body.push_str(para);
        }
        body.push_str("\"}");
    }
    body.push(']');
    body.push_str(tail);
    body.into_bytes()
}

fn bench_facts(c: &mut Criterion) {
    let mut g = c.benchmark_group("extract_json");
    for (label, size) in [("1KiB", 1024usize), ("64KiB", 64 << 10), ("1MiB", 1 << 20)] {
        let body = chat_body(size);
        let f = extract_json(&body).expect("valid bench body");
        assert_eq!(f.model(), Some("qwopus3.6-27b-v2"));
        assert!(f.stream);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(label), &body, |b, body| {
            b.iter(|| extract_json(black_box(body)).map(|f| f.span))
        });
    }
    // A vision request: one long string without escapes (a base64 data URL), `model` last.
    let image: String = (0..1 << 20)
        .map(|i| {
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[i * 7 % 64] as char
        })
        .collect();
    let body = format!(
        "{{\"messages\":[{{\"role\":\"user\",\"content\":[{{\"type\":\"image_url\",\"image_url\":{{\"url\":\"data:image/png;base64,{image}\"}}}}]}}],\"model\":\"qwopus3.6-27b-v2\"}}"
    )
    .into_bytes();
    assert_eq!(
        extract_json(&body).expect("valid").model(),
        Some("qwopus3.6-27b-v2")
    );
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_with_input(
        BenchmarkId::from_parameter("1MiB-image"),
        &body,
        |b, body| b.iter(|| extract_json(black_box(body)).map(|f| f.span)),
    );
    g.finish();

    let mut g = c.benchmark_group("serde_json_ignored_any");
    let body = chat_body(1 << 20);
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("1MiB", |b| {
        b.iter(|| serde_json::from_slice::<serde::de::IgnoredAny>(black_box(&body)).is_ok())
    });
    g.finish();
}

fn bench_remap(c: &mut Criterion) {
    let body = chat_body(64 << 10);
    let span = extract_json(&body).unwrap().span.unwrap();
    let mut g = c.benchmark_group("remap");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("64KiB_segments", |b| {
        b.iter(|| remap_segments(black_box(&body), span, "qwen-coder-32b").len())
    });
    g.bench_function("64KiB_to_vec", |b| {
        b.iter(|| remap_segments(black_box(&body), span, "qwen-coder-32b").to_vec())
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_dispatch,
    bench_pool,
    bench_snapshot_read,
    bench_facts,
    bench_remap
);
criterion_main!(benches);
