//! Admission end to end (DESIGN.md §3a): hold-while-loading, the wake hook, the
//! per-upstream concurrency queue with priorities, stream timeouts and the abort policies.

use crate::support;

use serde_json::Value;
use slotgate::mock::{self, MockConfig, MockHandle};
use slotgate::server::Server;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::gate::{start_gate, Piece, Scripted};
use support::*;

fn container(name: &str, url: &str, extra: &str) -> String {
    container_every(name, url, 50, extra)
}

/// A container probed every `probe_ms` (the probes' own connections show in the mock's stats).
fn container_every(name: &str, url: &str, probe_ms: u64, extra: &str) -> String {
    format!(
        "[[upstream]]\nname = \"{name}\"\nkind = \"container\"\nurl = \"{url}\"\nprobe_interval_ms = {probe_ms}\nprobe_backoff_ms = [50]\nmodels_refresh_ms = {probe_ms}\n{extra}\n"
    )
}

fn mock_with(cfg: MockConfig) -> MockHandle {
    mock::spawn(cfg).expect("mock")
}

fn stream_mock(tokens: usize, tps: f64) -> MockHandle {
    mock_with(MockConfig {
        models: vec!["m1".into()],
        tokens,
        tokens_per_sec: tps,
        ..MockConfig::default()
    })
}

fn wait_ready(gate: &Server, upstream: &str) {
    assert!(
        wait_until(Duration::from_secs(10), || {
            let s = gate.control.snapshot();
            s.by_name(upstream)
                .is_some_and(|u| u.state().is_ready() && u.live.models.is_warm())
        }),
        "{upstream} never ready"
    );
}

fn chat_req(id: &str, stream: bool, extra: &[&str]) -> String {
    let mut h = vec![format!("X-Request-Id: {id}")];
    h.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = h.iter().map(String::as_str).collect();
    post_raw(
        "/v1/chat/completions",
        &format!(r#"{{"model":"m1","stream":{stream}}}"#),
        &refs,
    )
}

#[test]
fn hold_serves_once_ready_and_never_before() {
    let m = mock_with(MockConfig {
        models: vec!["m1".into()],
        tokens: 3,
        load_ms: 1000,
        ..MockConfig::default()
    });
    let started = Instant::now();
    let gate = start_gate(
        &format!(
            "[routing]\ndefault_slot = \"chat\"\n{}",
            container(
                "chat",
                &m.base_url(),
                "on_loading = \"hold\"\nhold_timeout_ms = 10000"
            )
        ),
        "",
    );
    let r = http_request(gate.addr, chat_req("held", false, &[]).as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "served before the slot was ready"
    );
    let st = m.stats();
    assert_eq!(
        st.completions_total, 1,
        "exactly the one held request reached the model"
    );
    assert_eq!(r.header("x-slotgate-route"), Some("container:chat"));
}

#[test]
fn hold_times_out_with_503() {
    let m = mock_with(MockConfig {
        models: vec!["m1".into()],
        load_ms: 60_000,
        ..MockConfig::default()
    });
    let gate = start_gate(
        &format!(
            "[routing]\ndefault_slot = \"chat\"\n{}",
            container(
                "chat",
                &m.base_url(),
                "on_loading = \"hold\"\nhold_timeout_ms = 300"
            )
        ),
        "",
    );
    let t0 = Instant::now();
    let r = http_request(gate.addr, chat_req("h", false, &[]).as_bytes());
    assert_eq!(r.status, 503);
    assert!(t0.elapsed() >= Duration::from_millis(250));
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["error"]["code"], "slot.loading");
    assert!(r.header("retry-after").is_some());
    assert_eq!(m.stats().completions_total, 0);
}

#[test]
fn wake_hook_fires_once_for_many_requests() {
    let hook = Scripted::start(|_| {
        vec![Piece::Bytes(
            b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n".to_vec(),
        )]
    });
    // A port nothing listens on: the container is offline.
    let dead: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let gate = start_gate(
        &format!(
            "[routing]\ndefault_slot = \"chat\"\n{}",
            container(
                "chat",
                &format!("http://{dead}/v1"),
                &format!("wake_url = \"http://{}/wake\"", hook.addr)
            )
        ),
        "",
    );
    assert!(wait_until(Duration::from_secs(5), || {
        gate.control
            .snapshot()
            .by_name("chat")
            .is_some_and(|u| u.state() == slotgate::routing::SlotState::Offline)
    }));
    let addr = gate.addr;
    let hs: Vec<_> = (0..20)
        .map(|i| {
            std::thread::spawn(move || {
                http_request(addr, chat_req(&format!("w{i}"), false, &[]).as_bytes()).status
            })
        })
        .collect();
    for h in hs {
        assert_eq!(h.join().unwrap(), 503);
    }
    assert!(wait_until(Duration::from_secs(5), || !hook
        .seen()
        .is_empty()));
    // What is tested is an absence (no second POST), which no event announces: this sleep is
    // the window a wrongly repeated hook has to show up in, not synchronisation. Every claim was
    // decided before its 503 went out (all joined above); only a repeated POST's thread is late.
    std::thread::sleep(Duration::from_millis(200));
    let seen = hook.seen();
    assert_eq!(seen.len(), 1, "exactly one wake POST");
    assert_eq!(seen[0].request_line(), "POST /wake HTTP/1.1");
    let v: Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(v["slot"], "chat");
    assert_eq!(v["model"], "m1");
    assert_eq!(v["reason"], "request");
}

/// Starts the requests one after another, each only once the previous one was admitted or
/// queued, so the gate sees them in a defined order. With `stagger`, a request the gate admits
/// at once (one under the concurrency limit) starts only once the previous one's stream has
/// carried `stagger`, so their completions (and so the hand-overs to the queue) do not coincide.
fn start_in_order(
    gate: &Server,
    ids: &[(&str, &[&str])],
    stagger: Option<&'static [u8]>,
) -> Vec<std::thread::JoinHandle<Response>> {
    let counters = gate.control.counters("chat").unwrap();
    let limit = counters.gate.limit();
    let mut hs = Vec::new();
    let mut streaming: Option<std::sync::mpsc::Receiver<bool>> = None;
    for (n, (id, extra)) in ids.iter().enumerate() {
        if let Some(progress) = streaming.take().filter(|_| (n as u32) < limit) {
            assert!(
                progress.recv_timeout(Duration::from_secs(5)) == Ok(true),
                "the request before {id} never streamed far enough"
            );
        }
        let raw = chat_req(id, true, extra);
        let addr = gate.addr;
        let (tx, rx) = std::sync::mpsc::channel();
        hs.push(std::thread::spawn(move || {
            let mut c = Conn::connect(addr);
            c.send(raw.as_bytes());
            if let Some(marker) = stagger {
                let _ = tx.send(c.buffer_until(marker, Duration::from_secs(5)));
            }
            c.read_response()
        }));
        streaming = stagger.map(|_| rx);
        assert!(
            wait_until(Duration::from_secs(5), || {
                counters.gate.inflight() + counters.gate.waiting() > n as u32
            }),
            "request {id} never reached the gate"
        );
    }
    hs
}

#[test]
fn queue_limits_concurrency_and_keeps_fifo_order() {
    let m = stream_mock(20, 200.0);
    let gate = start_gate(
        &format!(
            "[routing]\ndefault_slot = \"chat\"\n{}",
            container("chat", &m.base_url(), "max_inflight = 2\nmax_queue = 16")
        ),
        "",
    );
    wait_ready(&gate, "chat");
    // Warm two pooled upstream connections, so every admitted request leaves at once and the
    // mock sees them in admission order (a fresh connect could reorder two close grants).
    let warm: Vec<_> = (0..2)
        .map(|i| {
            let (addr, raw) = (gate.addr, chat_req(&format!("warm{i}"), true, &[]));
            std::thread::spawn(move || http_request(addr, raw.as_bytes()).status)
        })
        .collect();
    for h in warm {
        assert_eq!(h.join().unwrap(), 200);
    }
    let ids: Vec<String> = (0..10).map(|i| format!("q{i}")).collect();
    let spec: Vec<(&str, &[&str])> = ids.iter().map(|s| (s.as_str(), &[][..])).collect();
    // q1 starts once q0 has streamed half its tokens (about 50 ms at 200 tokens/s).
    let hs = start_in_order(&gate, &spec, Some(b"tok9 "));
    for h in hs {
        let r = h.join().unwrap();
        assert_eq!(r.status, 200);
        assert!(r.complete);
    }
    let st = m.stats();
    assert_eq!(st.completions_total, 12);
    assert!(
        st.completions_inflight_max <= 2,
        "high-water mark {}",
        st.completions_inflight_max
    );
    let order: Vec<String> = st
        .completion_order
        .into_iter()
        .filter(|i| i.starts_with('q'))
        .collect();
    assert_eq!(order, ids, "served in FIFO order");
}

#[test]
fn full_queue_answers_429_with_retry_after() {
    let m = stream_mock(40, 40.0);
    let gate = start_gate(
        &format!(
            "[routing]\ndefault_slot = \"chat\"\n{}",
            container(
                "chat",
                &m.base_url(),
                "max_inflight = 1\nmax_queue = 1\nretry_after_s = 3"
            )
        ),
        "",
    );
    wait_ready(&gate, "chat");
    let hs = start_in_order(&gate, &[("a", &[]), ("b", &[])], None);
    let r = http_request(gate.addr, chat_req("c", false, &[]).as_bytes());
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("3"));
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["error"]["code"], "dispatch.busy");
    for h in hs {
        assert_eq!(h.join().unwrap().status, 200);
    }
}

#[test]
fn queue_timeout_answers_429() {
    let m = stream_mock(100, 50.0);
    let gate = start_gate(
        &format!(
            "[routing]\ndefault_slot = \"chat\"\n{}",
            container(
                "chat",
                &m.base_url(),
                "max_inflight = 1\nqueue_timeout_ms = 200"
            )
        ),
        "",
    );
    wait_ready(&gate, "chat");
    let hs = start_in_order(&gate, &[("long", &[])], None);
    assert!(wait_until(Duration::from_secs(5), || m
        .stats()
        .completions_inflight
        == 1));
    let t0 = Instant::now();
    let r = http_request(gate.addr, chat_req("late", false, &[]).as_bytes());
    assert_eq!(r.status, 429);
    assert!(t0.elapsed() >= Duration::from_millis(180));
    drop(hs);
}

#[test]
fn high_priority_overtakes_queued_low_ones() {
    let m = stream_mock(10, 100.0);
    let gate = start_gate(
        &format!(
            "[routing]\ndefault_slot = \"chat\"\n{}",
            container("chat", &m.base_url(), "max_inflight = 1\nmax_queue = 16")
        ),
        "",
    );
    wait_ready(&gate, "chat");
    let low: &[&str] = &["X-Priority: low"];
    let high: &[&str] = &["X-Priority: high"];
    let spec: Vec<(&str, &[&str])> = vec![
        ("first", &[]),
        ("low1", low),
        ("low2", low),
        ("low3", low),
        ("low4", low),
        ("low5", low),
        ("high", high),
    ];
    let hs = start_in_order(&gate, &spec, None);
    for h in hs {
        assert_eq!(h.join().unwrap().status, 200);
    }
    assert_eq!(
        m.stats().completion_order,
        ["first", "high", "low1", "low2", "low3", "low4", "low5"]
    );
}

#[test]
fn idle_timeout_cuts_a_stalled_stream() {
    let up = Scripted::start(|_| {
        vec![
            Piece::Bytes(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n9\r\ndata: 1\n\n\r\n".to_vec()),
            Piece::Pause(Duration::from_secs(3)),
            Piece::Bytes(b"0\r\n\r\n".to_vec()),
        ]
    });
    let gate = start_gate(
        &format!(
            "[[upstream]]\nname = \"up\"\nkind = \"remote\"\nurl = \"{}\"\nmodels = [\"m1\"]\nidle_ms = 200\n",
            up.url()
        ),
        "",
    );
    let t0 = Instant::now();
    let r = http_request(gate.addr, chat_req("s", true, &[]).as_bytes());
    assert_eq!(r.status, 200);
    assert!(!r.complete, "a cut stream has no terminating chunk");
    assert_eq!(sse_data(&r.body), ["1"]);
    assert!(
        t0.elapsed() < Duration::from_millis(2500),
        "cut after {:?}",
        t0.elapsed()
    );
}

#[test]
fn first_byte_timeout_is_504() {
    let up = Scripted::start(|_| vec![Piece::Pause(Duration::from_secs(3))]);
    let gate = start_gate(
        &format!(
            "[[upstream]]\nname = \"up\"\nkind = \"remote\"\nurl = \"{}\"\nmodels = [\"m1\"]\nfirst_byte_ms = 200\n",
            up.url()
        ),
        "",
    );
    let r = http_request(gate.addr, chat_req("s", false, &[]).as_bytes());
    assert_eq!(r.status, 504);
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["error"]["code"], "dispatch.upstream_timeout");
}

#[test]
fn drain_policy_finishes_the_stream_and_reuses_the_connection() {
    let m = stream_mock(30, 100.0);
    let gate = start_gate(
        &format!(
            "[routing]\ndefault_slot = \"chat\"\n{}",
            container_every("chat", &m.base_url(), 5000, "on_client_abort = \"drain\"")
        ),
        "",
    );
    wait_ready(&gate, "chat");
    let before = m.stats();
    let mut c = Conn::connect(gate.addr);
    c.send(chat_req("d", true, &[]).as_bytes());
    let got = c.read_until(b"tok1 ", Duration::from_secs(5));
    assert!(!got.is_empty());
    c.close();
    // The mock streams to the end (nothing cut) ...
    assert!(wait_until(Duration::from_secs(5), || {
        let s = m.stats();
        s.completions_total == before.completions_total + 1 && s.completions_inflight == 0
    }));
    assert_eq!(m.stats().streams_cut_by_peer, before.streams_cut_by_peer);
    // ... and the drained connection is reused by the next request.
    let accepted = m.stats().connections_accepted;
    let r = http_request(gate.addr, chat_req("next", false, &[]).as_bytes());
    assert_eq!(r.status, 200);
    assert_eq!(
        m.stats().connections_accepted,
        accepted,
        "the drained connection was pooled"
    );
}

#[test]
fn admin_shows_queue_and_hold_state() {
    let m = stream_mock(50, 50.0);
    let gate = start_gate(
        &format!(
            "[routing]\ndefault_slot = \"chat\"\n{}",
            container("chat", &m.base_url(), "max_inflight = 1\nmax_queue = 4")
        ),
        "",
    );
    wait_ready(&gate, "chat");
    let hs = start_in_order(&gate, &[("a", &[]), ("b", &[])], None);
    let admin = gate.admin_addr.unwrap();
    let v = get(admin, "/admin/upstreams").json();
    let chat = v["upstreams"]
        .as_array()
        .or_else(|| v.as_array())
        .unwrap()
        .iter()
        .find(|u| u["name"] == "chat")
        .cloned()
        .unwrap();
    assert_eq!(chat["queue"]["waiting"], 1, "{chat}");
    assert_eq!(chat["queue"]["max_inflight"], 1);
    assert_eq!(chat["held"], 0);
    let list = get(gate.addr, "/v1/models").json();
    let m1 = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "m1")
        .cloned()
        .unwrap();
    assert_eq!(m1["load"]["queued"], 1, "{m1}");
    assert_eq!(m1["load"]["inflight"], 1, "{m1}");
    for h in hs {
        assert_eq!(h.join().unwrap().status, 200);
    }
}

/// A client that stops reading cannot hold a stream (and its upstream) forever: the write to it
/// times out after `idle_ms`, the response is cut and the upstream connection closed.
#[test]
fn slow_reader_is_cut_and_upstream_closed() {
    let up = Scripted::start(|_| {
        let chunk = {
            let ev = format!("data: {}\n\n", "x".repeat(65_000));
            format!("{:x}\r\n{ev}\r\n", ev.len()).into_bytes()
        };
        let mut v = vec![Piece::Bytes(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                .to_vec(),
        )];
        // Far more than the socket buffers hold, so the relay's writes to the client block.
        v.extend(std::iter::repeat_n(Piece::Bytes(chunk), 1200));
        v
    });
    let gate = start_gate(
        &format!(
            "[[upstream]]\nname = \"up\"\nkind = \"remote\"\nurl = \"{}\"\nmodels = [\"m1\"]\nidle_ms = 300\n",
            up.url()
        ),
        "",
    );
    let mut c = Conn::connect(gate.addr);
    c.send(chat_req("slow", true, &[]).as_bytes());
    // Read a little, then stop reading while staying connected.
    assert!(!c.read_until(b"data: ", Duration::from_secs(5)).is_empty());
    let t0 = Instant::now();
    assert!(
        wait_until(Duration::from_secs(10), || up
            .ended
            .load(std::sync::atomic::Ordering::SeqCst)
            == 1),
        "the upstream connection was never closed"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "closed after {:?}",
        t0.elapsed()
    );
    drop(c);
}
