//! The data plane end to end (DESIGN.md §3): the real server on 127.0.0.1:0 in front of
//! scripted raw upstreams and the mock model server; every relay test runs on io_uring and epoll.

use crate::support;

use serde_json::Value;
use slotgate::mock::{self, MockConfig, MockHandle};
use slotgate::server::Server;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use support::gate::{driver_tuning, json_response, remote, start_gate, Piece, Scripted, DRIVERS};
use support::*;

fn container(name: &str, url: &str) -> String {
    format!("[[upstream]]\nname = \"{name}\"\nkind = \"container\"\nurl = \"{url}\"\nprobe_interval_ms = 100\nprobe_backoff_ms = [100]\nmodels_refresh_ms = 200\n")
}

fn wait_ready(gate: &Server, upstream: &str, model: &str) {
    let ok = wait_until(Duration::from_secs(10), || {
        let s = gate.control.snapshot();
        s.by_name(upstream)
            .is_some_and(|u| u.state().is_ready() && u.live.models.ids.iter().any(|m| m == model))
    });
    assert!(ok, "upstream {upstream} never became ready with {model}");
}

fn has(got: &[u8], needle: &[u8]) -> bool {
    got.windows(needle.len()).any(|w| w == needle)
}

fn body_after_head(raw: &[u8]) -> &[u8] {
    let i = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    &raw[i + 4..]
}

fn envelope(r: &Response) -> Value {
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v: Value = serde_json::from_slice(&r.body).expect("error body is JSON");
    assert!(v["error"]["message"].is_string());
    assert!(v["error"]["details"].is_object());
    v
}

fn relay_content_length(driver: &str) {
    let answer = r#"{"id":"x","choices":[{"message":{"content":"héllo \u00e9"}}]}"#;
    let up = Scripted::start(move |_| vec![Piece::Bytes(json_response(answer))]);
    let gate = start_gate(
        &remote("up", &up.url(), &["m1"], ""),
        &driver_tuning(driver),
    );
    let body =
        "{ \"messages\" : [ {\"role\":\"user\",\"content\":\"a\\u0041\"} ],\n \"model\":\"m1\" }";
    let r = http_request(
        gate.addr,
        post_raw(
            "/v1/chat/completions?x=1",
            body,
            &[
                "Connection: keep-alive, X-Hop",
                "X-Hop: 1",
                "X-Keep: yes",
                "Authorization: Bearer client",
            ],
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, answer.as_bytes(), "body relayed byte for byte");
    assert_eq!(r.header("x-upstream"), Some("scripted"));
    assert_eq!(r.header("x-slotgate-route"), Some("passthrough:up"));
    assert_eq!(r.header("x-slotgate-upstream"), Some("up"));
    assert!(r.header("x-request-id").is_some());
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(s.request_line(), "POST /v1/chat/completions?x=1 HTTP/1.1");
    assert_eq!(s.body, body.as_bytes(), "request body forwarded untouched");
    assert_eq!(s.header("host"), Some(up.addr.to_string()));
    assert_eq!(s.header("x-keep").as_deref(), Some("yes"));
    assert_eq!(
        s.header("x-hop"),
        None,
        "headers named by Connection are hop-by-hop"
    );
    assert_eq!(s.header("connection"), None);
    assert_eq!(
        s.header("authorization"),
        None,
        "client credentials are not forwarded"
    );
    assert_eq!(
        s.header("x-request-id").as_deref(),
        r.header("x-request-id")
    );
}

#[test]
fn relay_content_length_io_uring() {
    relay_content_length(DRIVERS[0]);
}

#[test]
fn relay_content_length_epoll() {
    relay_content_length(DRIVERS[1]);
}

/// A chunked SSE answer with irregular chunks and pauses reaches the client byte for byte.
fn relay_sse_chunks(driver: &str) {
    let chunks: Vec<Vec<u8>> = (0..6)
        .map(|i| {
            let ev = format!("data: {{\"i\":{i},\"pad\":\"{}\"}}\n\n", "x".repeat(i * 7));
            format!("{:x}\r\n{ev}\r\n", ev.len()).into_bytes()
        })
        .chain([b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n".to_vec()])
        .collect();
    let wire: Vec<u8> = chunks.concat();
    let script_chunks = chunks.clone();
    let up = Scripted::start(move |_| {
        let mut v = vec![Piece::Bytes(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n".to_vec(),
        )];
        for c in &script_chunks {
            v.push(Piece::Pause(Duration::from_millis(15)));
            v.push(Piece::Bytes(c.clone()));
        }
        v
    });
    let gate = start_gate(
        &remote("up", &up.url(), &["m1"], ""),
        &driver_tuning(driver),
    );
    let r = post_json(
        gate.addr,
        "/v1/chat/completions",
        r#"{"model":"m1","stream":true}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.complete);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(
        body_after_head(&r.raw),
        &wire[..],
        "chunked bytes relayed verbatim"
    );
    assert_eq!(sse_data(&r.body).last().map(String::as_str), Some("[DONE]"));
}

#[test]
fn relay_sse_chunks_io_uring() {
    relay_sse_chunks(DRIVERS[0]);
}

#[test]
fn relay_sse_chunks_epoll() {
    relay_sse_chunks(DRIVERS[1]);
}

/// Events arrive at the client one by one, not batched until the end.
fn sse_arrives_incrementally(driver: &str) {
    let up = Scripted::start(|_| {
        vec![
            Piece::Bytes(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n".to_vec()),
            Piece::Bytes(b"9\r\ndata: 1\n\n\r\n".to_vec()),
            Piece::Pause(Duration::from_millis(400)),
            Piece::Bytes(b"9\r\ndata: 2\n\n\r\n0\r\n\r\n".to_vec()),
        ]
    });
    let gate = start_gate(
        &remote("up", &up.url(), &["m1"], ""),
        &driver_tuning(driver),
    );
    let mut c = Conn::connect(gate.addr);
    c.send(
        post_raw(
            "/v1/chat/completions",
            r#"{"model":"m1","stream":true}"#,
            &[],
        )
        .as_bytes(),
    );
    let t0 = Instant::now();
    assert!(
        has(
            &c.read_until(b"data: 1", Duration::from_secs(5)),
            b"data: 1"
        ),
        "first event relayed"
    );
    let first = t0.elapsed();
    assert!(has(
        &c.read_until(b"data: 2", Duration::from_secs(5)),
        b"data: 2"
    ));
    assert!(
        t0.elapsed() >= first + Duration::from_millis(300),
        "the first event was not held back until the second"
    );
}

#[test]
fn sse_arrives_incrementally_io_uring() {
    sse_arrives_incrementally(DRIVERS[0]);
}

#[test]
fn sse_arrives_incrementally_epoll() {
    sse_arrives_incrementally(DRIVERS[1]);
}

fn chunked_request_body(driver: &str) {
    let up = Scripted::start(|_| vec![Piece::Bytes(json_response("{}"))]);
    let gate = start_gate(
        &remote("up", &up.url(), &["m1"], ""),
        &driver_tuning(driver),
    );
    let parts = ["{\"model\"", ":\"m1\",", "\"x\":[1,2,3]}"];
    let r = http_request(
        gate.addr,
        post_chunked_raw("/v1/completions", &parts).as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let s = &up.seen()[0];
    assert_eq!(s.body, parts.concat().as_bytes());
    assert_eq!(
        s.header("content-length"),
        Some(parts.concat().len().to_string())
    );
    assert_eq!(s.header("transfer-encoding"), None);
}

#[test]
fn chunked_request_body_io_uring() {
    chunked_request_body(DRIVERS[0]);
}

#[test]
fn chunked_request_body_epoll() {
    chunked_request_body(DRIVERS[1]);
}

fn pipelined_in_order(driver: &str) {
    let up = Scripted::start(|s| {
        let id = s.header("x-request-id").unwrap_or_default();
        // The first answer is slow so a reordering proxy would be caught.
        let pause = if id == "a" { 150 } else { 0 };
        vec![
            Piece::Pause(Duration::from_millis(pause)),
            Piece::Bytes(json_response(&format!("{{\"id\":\"{id}\"}}"))),
        ]
    });
    let gate = start_gate(
        &remote("up", &up.url(), &["m1"], ""),
        &driver_tuning(driver),
    );
    let mut c = Conn::connect(gate.addr);
    let mut all = String::new();
    for id in ["a", "b", "c"] {
        all.push_str(&post_raw(
            "/v1/chat/completions",
            r#"{"model":"m1"}"#,
            &[&format!("X-Request-Id: {id}")],
        ));
    }
    c.send(all.as_bytes());
    for id in ["a", "b", "c"] {
        let r = c.read_response();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), format!("{{\"id\":\"{id}\"}}"));
        assert_eq!(r.header("x-request-id"), Some(id));
    }
}

#[test]
fn pipelined_in_order_io_uring() {
    pipelined_in_order(DRIVERS[0]);
}

#[test]
fn pipelined_in_order_epoll() {
    pipelined_in_order(DRIVERS[1]);
}

fn upstream_connection_reuse(driver: &str) {
    let up = Scripted::start(|_| vec![Piece::Bytes(json_response("{}"))]);
    let gate = start_gate(
        &remote("up", &up.url(), &["m1"], ""),
        &driver_tuning(driver),
    );
    for _ in 0..20 {
        let r = post_json(gate.addr, "/v1/chat/completions", r#"{"model":"m1"}"#);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(up.seen().len(), 20);
    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        1,
        "20 sequential requests use one upstream connection"
    );
}

#[test]
fn upstream_connection_reuse_io_uring() {
    upstream_connection_reuse(DRIVERS[0]);
}

#[test]
fn upstream_connection_reuse_epoll() {
    upstream_connection_reuse(DRIVERS[1]);
}

/// A JSON body of about `size` bytes, `model` last (as OpenAI SDKs send it), distinct per `tag`.
fn big_json(size: usize, tag: &str) -> String {
    let fill: String = (0..size)
        .map(|i| (b'a' + (i * 7 % 26) as u8) as char)
        .collect();
    format!(r#"{{"messages":[{{"role":"user","content":"{tag} {fill}"}}],"model":"m1"}}"#)
}

/// Bodies above 16 KiB go upstream from the client's own bytes, not copied behind the head:
/// byte-exact with the right `Content-Length`, for a Content-Length body followed by a pipelined
/// request in the same write, and for a de-chunked body.
fn large_bodies_are_forwarded_byte_exact(driver: &str) {
    let up = Scripted::start(|s| {
        let id = s.header("x-request-id").unwrap_or_default();
        vec![Piece::Bytes(json_response(&format!("{{\"id\":\"{id}\"}}")))]
    });
    let gate = start_gate(
        &remote("up", &up.url(), &["m1"], ""),
        &driver_tuning(driver),
    );
    let big = big_json(200 << 10, "cl");
    let mut c = Conn::connect(gate.addr);
    let mut both = post_raw("/v1/chat/completions", &big, &["X-Request-Id: big"]);
    both.push_str(&post_raw(
        "/v1/chat/completions",
        r#"{"model":"m1"}"#,
        &["X-Request-Id: small"],
    ));
    c.send(both.as_bytes());
    for id in ["big", "small"] {
        let r = c.read_response();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), format!("{{\"id\":\"{id}\"}}"));
    }
    let seen = up.seen();
    assert!(seen[0].body == big.as_bytes(), "large body differs");
    assert_eq!(
        seen[0].header("content-length"),
        Some(big.len().to_string())
    );
    assert_eq!(seen[1].body, br#"{"model":"m1"}"#);

    let chunked = big_json(100 << 10, "chunked");
    let (a, b) = chunked.split_at(40_000);
    let r = http_request(
        gate.addr,
        post_chunked_raw("/v1/chat/completions", &[a, b]).as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let last = up.seen().pop().unwrap();
    assert!(last.body == chunked.as_bytes(), "de-chunked body differs");
    assert_eq!(
        last.header("content-length"),
        Some(chunked.len().to_string())
    );
}

#[test]
fn large_bodies_are_forwarded_byte_exact_io_uring() {
    large_bodies_are_forwarded_byte_exact(DRIVERS[0]);
}

#[test]
fn large_bodies_are_forwarded_byte_exact_epoll() {
    large_bodies_are_forwarded_byte_exact(DRIVERS[1]);
}

/// A pooled connection the upstream closed while idle is retried once on a fresh one.
#[test]
fn stale_pooled_connection_retried() {
    let up = Scripted::start(|s| {
        let mut v = vec![Piece::Bytes(json_response("{}"))];
        if s.header("x-request-id").as_deref() == Some("first") {
            v.push(Piece::Close);
        }
        v
    });
    let gate = start_gate(&remote("up", &up.url(), &["m1"], ""), "");
    // Once with a small body, once with one large enough to be sent apart from its head: the
    // retry resends it whole.
    let bodies = [r#"{"model":"m1"}"#.to_string(), big_json(64 << 10, "retry")];
    for (round, body) in bodies.iter().enumerate() {
        let r1 = http_request(
            gate.addr,
            post_raw(
                "/v1/chat/completions",
                r#"{"model":"m1"}"#,
                &["X-Request-Id: first"],
            )
            .as_bytes(),
        );
        assert_eq!(r1.status, 200);
        assert!(wait_until(Duration::from_secs(2), || up
            .accepted
            .load(Ordering::SeqCst)
            == round + 1));
        let r2 = post_json(gate.addr, "/v1/chat/completions", body);
        assert_eq!(r2.status, 200, "{}", r2.text());
        assert_eq!(up.accepted.load(Ordering::SeqCst), round + 2);
        assert!(up.seen().pop().unwrap().body == body.as_bytes());
    }
}

fn chat_mock(models: &[&str], tokens: usize, tps: f64) -> MockHandle {
    mock::spawn(MockConfig {
        models: models.iter().map(|m| m.to_string()).collect(),
        tokens,
        tokens_per_sec: tps,
        ..MockConfig::default()
    })
    .expect("mock")
}

fn client_disconnect_closes_upstream(driver: &str) {
    let m = chat_mock(&["m1"], 2000, 50.0);
    let gate = start_gate(&container("chat", &m.base_url()), &driver_tuning(driver));
    wait_ready(&gate, "chat", "m1");
    let mut c = Conn::connect(gate.addr);
    c.send(
        post_raw(
            "/v1/chat/completions",
            r#"{"model":"m1","stream":true}"#,
            &[],
        )
        .as_bytes(),
    );
    assert!(has(
        &c.read_until(b"tok1 ", Duration::from_secs(5)),
        b"tok1 "
    ));
    let before = m.stats().streams_cut_by_peer;
    let t0 = Instant::now();
    c.close();
    let seen = wait_until(Duration::from_secs(2), || {
        m.stats().streams_cut_by_peer > before
    });
    let took = t0.elapsed();
    assert!(seen, "the mock never saw the upstream connection close");
    assert!(
        took < Duration::from_millis(100),
        "upstream closed {took:?} after the client left"
    );
}

#[test]
fn client_disconnect_closes_upstream_io_uring() {
    client_disconnect_closes_upstream(DRIVERS[0]);
}

#[test]
fn client_disconnect_closes_upstream_epoll() {
    client_disconnect_closes_upstream(DRIVERS[1]);
}

/// The client leaving while the model still "processes the prompt" (before the first byte).
#[test]
fn client_disconnect_before_first_byte() {
    let m = mock::spawn(MockConfig {
        models: vec!["m1".into()],
        ttft_ms: 5000,
        ..MockConfig::default()
    })
    .unwrap();
    let gate = start_gate(&container("chat", &m.base_url()), "");
    wait_ready(&gate, "chat", "m1");
    let mut c = Conn::connect(gate.addr);
    c.send(
        post_raw(
            "/v1/chat/completions",
            r#"{"model":"m1","stream":true}"#,
            &[],
        )
        .as_bytes(),
    );
    assert!(wait_until(Duration::from_secs(5), || m
        .stats()
        .completions_inflight
        == 1));
    let before = m.stats().connections_closed_by_peer;
    let t0 = Instant::now();
    c.close();
    assert!(wait_until(Duration::from_secs(2), || m
        .stats()
        .connections_closed_by_peer
        > before));
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "took {:?}",
        t0.elapsed()
    );
}

fn upstream_drop_mid_stream(driver: &str) {
    let m = mock::spawn(MockConfig {
        models: vec!["m1".into()],
        tokens: 10,
        fail_after: Some(3),
        ..MockConfig::default()
    })
    .unwrap();
    let gate = start_gate(&container("chat", &m.base_url()), &driver_tuning(driver));
    wait_ready(&gate, "chat", "m1");
    let r = post_json(
        gate.addr,
        "/v1/chat/completions",
        r#"{"model":"m1","stream":true}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        !r.complete,
        "a cut stream must end without its terminating chunk"
    );
    assert_eq!(sse_data(&r.body).len(), 3);
}

#[test]
fn upstream_drop_mid_stream_io_uring() {
    upstream_drop_mid_stream(DRIVERS[0]);
}

#[test]
fn upstream_drop_mid_stream_epoll() {
    upstream_drop_mid_stream(DRIVERS[1]);
}

#[test]
fn refusals_use_the_envelope() {
    let up = Scripted::start(|_| vec![Piece::Bytes(json_response("{}"))]);
    let gate = start_gate(
        &remote("up", &up.url(), &["m1"], ""),
        "max_body_bytes = 100\nmax_header_bytes = 2048\nmax_uri_bytes = 1024",
    );
    // 413
    let big = format!("{{\"model\":\"m1\",\"x\":\"{}\"}}", "y".repeat(200));
    let r = post_json(gate.addr, "/v1/chat/completions", &big);
    assert_eq!(r.status, 413);
    assert_eq!(envelope(&r)["error"]["code"], "request.body_too_large");
    // 431
    let huge = format!("X-Big: {}", "z".repeat(4000));
    let r = http_request(
        gate.addr,
        post_raw("/v1/chat/completions", "{}", &[&huge]).as_bytes(),
    );
    assert_eq!(r.status, 431);
    assert_eq!(envelope(&r)["error"]["code"], "request.headers_too_large");
    // 400
    let r = http_request(gate.addr, b"GET /v1/models HTTP/1.1\r\nBad Header\r\n\r\n");
    assert_eq!(r.status, 400);
    assert_eq!(envelope(&r)["error"]["code"], "request.bad_http");
    // invalid JSON
    let r = post_json(gate.addr, "/v1/chat/completions", "{\"model\": ");
    assert_eq!(r.status, 400);
    assert_eq!(envelope(&r)["error"]["code"], "request.invalid_json");
    assert!(up.seen().is_empty(), "nothing refused reached the upstream");
}

#[test]
fn expect_continue_is_answered() {
    let up = Scripted::start(|_| vec![Piece::Bytes(json_response("{}"))]);
    let gate = start_gate(&remote("up", &up.url(), &["m1"], ""), "");
    let body = r#"{"model":"m1"}"#;
    let mut c = Conn::connect(gate.addr);
    c.send(
        format!("POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n", body.len())
            .as_bytes(),
    );
    assert!(has(
        &c.read_until(b"100 Continue", Duration::from_secs(5)),
        b"100 Continue"
    ));
    c.send(body.as_bytes());
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.seen()[0].header("expect"), None);
}

fn hundred_concurrent_streams(driver: &str) {
    let m = chat_mock(&["m1"], 40, 0.0);
    let gate = start_gate(&container("chat", &m.base_url()), &driver_tuning(driver));
    wait_ready(&gate, "chat", "m1");
    let addr = gate.addr;
    let handles: Vec<_> = (0..100)
        .map(|i| {
            std::thread::spawn(move || {
                let r = post_json(
                    addr,
                    "/v1/chat/completions",
                    &format!(r#"{{"model":"m1","stream":true,"user":"u{i}"}}"#),
                );
                (r.status, r.complete, r.body)
            })
        })
        .collect();
    for h in handles {
        let (status, complete, body) = h.join().unwrap();
        assert_eq!(status, 200);
        assert!(complete);
        let events = sse_data(&body);
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
        assert_eq!(sse_text(&body), mock_text(40));
    }
}

#[test]
fn hundred_concurrent_streams_io_uring() {
    hundred_concurrent_streams(DRIVERS[0]);
}

#[test]
fn hundred_concurrent_streams_epoll() {
    hundred_concurrent_streams(DRIVERS[1]);
}

/// The bug slotgate was written for: the registry binds the model to a composite, a container
/// advertises it -> the container serves it; with the container down -> 503, never elsewhere.
#[test]
fn container_preemption_over_composite_binding() {
    let chat = chat_mock(&["qwopus3.6-27b-v2"], 3, 0.0);
    let other = chat_mock(&["other-model"], 3, 0.0);
    let port = chat.addr().port();
    let cfg = format!(
        "{}{}[[upstream]]\nname = \"local\"\nkind = \"composite\"\n\n[routing]\ndefault_slot = \"agent\"\n\n[registry]\n\"qwopus3.6-27b-v2\" = \"local\"\n",
        container("chat", &chat.base_url()),
        container("agent", &other.base_url()),
    );
    let gate = start_gate(&cfg, "");
    wait_ready(&gate, "chat", "qwopus3.6-27b-v2");
    let req = r#"{"model":"qwopus3.6-27b-v2","messages":[{"role":"user","content":"hi"}]}"#;
    let r = post_json(gate.addr, "/v1/chat/completions", req);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-slotgate-route"), Some("container:chat"));
    assert_eq!(r.json()["model"], "qwopus3.6-27b-v2");

    // The container dies: 503 slot.loading within a probe interval, never the other upstream.
    let before_other = other.stats().completions_total;
    chat.stop();
    let t0 = Instant::now();
    let mut last = None;
    let got_503 = wait_until(Duration::from_secs(5), || {
        let r = post_json(gate.addr, "/v1/chat/completions", req);
        let is = r.status == 503;
        last = Some(r);
        is
    });
    assert!(
        got_503,
        "never 503: {:?}",
        last.map(|r| (r.status, r.text()))
    );
    let r = last.unwrap();
    let v = envelope(&r);
    assert_eq!(v["error"]["code"], "slot.loading");
    assert_eq!(v["error"]["details"]["slot"], "chat");
    assert!(r.header("retry-after").is_some());
    eprintln!("container down -> first 503 after {:?}", t0.elapsed());
    assert_eq!(
        other.stats().completions_total,
        before_other,
        "never routed elsewhere"
    );

    // It comes back on the same port: served again.
    let back = mock::spawn(MockConfig {
        port,
        models: vec!["qwopus3.6-27b-v2".into()],
        tokens: 3,
        ..MockConfig::default()
    })
    .expect("restart mock on the same port");
    let t1 = Instant::now();
    assert!(wait_until(Duration::from_secs(5), || {
        post_json(gate.addr, "/v1/chat/completions", req).status == 200
    }));
    eprintln!("container back -> first served after {:?}", t1.elapsed());
    drop(back);
}

#[test]
fn front_door_model_list_from_snapshot() {
    let m = chat_mock(&["m1", "m2"], 3, 0.0);
    let gate = start_gate(
        &format!(
            "{}[[upstream]]\nname = \"local\"\nkind = \"composite\"\n[registry]\n\"bound-only\" = \"local\"\n",
            container("chat", &m.base_url())
        ),
        "",
    );
    wait_ready(&gate, "chat", "m2");
    let before = m.stats().models_requests;
    let r = get(gate.addr, "/v1/models");
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"m1") && ids.contains(&"m2") && ids.contains(&"bound-only"),
        "{ids:?}"
    );
    let m1 = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "m1")
        .unwrap();
    assert_eq!(m1["owned_by"], "chat");
    assert_eq!(m1["status"], "ready");
    let r = get(gate.addr, "/v1/models/m2");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["id"], "m2");
    let r = get(gate.addr, "/v1/models/nope");
    assert_eq!(r.status, 404);
    assert_eq!(envelope(&r)["error"]["code"], "dispatch.no_route");
    // Answered from the snapshot: the mock's /v1/models saw no extra call beyond refreshes.
    assert!(m.stats().models_requests <= before + 2);
}

/// With more idle keep-alive connections than the lean threshold, idle connections give their
/// buffers back while they wait; every one of them must still be served on its next request.
#[test]
fn many_idle_keepalive_connections_stay_served() {
    raise_fd_limit();
    let up = Scripted::start(|_| vec![Piece::Bytes(json_response("{\"ok\":true}"))]);
    let gate = start_gate(&remote("up", &up.url(), &["m1"], ""), "");
    let req = post_raw("/v1/chat/completions", r#"{"model":"m1"}"#, &[]);
    let mut conns: Vec<Conn> = (0..300).map(|_| Conn::connect(gate.addr)).collect();
    for c in conns.iter_mut() {
        assert_eq!(c.request(req.as_bytes()).status, 200);
    }
    // All idle now; then a second request on each connection.
    for c in conns.iter_mut() {
        let r = c.request(req.as_bytes());
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.body, b"{\"ok\":true}");
    }
}

/// Lifts the soft descriptor limit to the hard one (a CI shell may start at 1024).
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit with a valid, initialised rlimit struct on this process.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// Without a valid front-door key, a request whose body is still on the wire is refused at once
/// (401, connection closed): slotgate never buffers what an unauthenticated client sends.
#[test]
fn unauthenticated_body_is_not_read() {
    std::env::set_var("SLOTGATE_TEST_EARLY_KEYS", "k-early");
    let up = Scripted::start(|_| vec![Piece::Bytes(json_response("{}"))]);
    let gate = start_gate(
        &format!(
            "{}[auth]\nkeys_env = \"SLOTGATE_TEST_EARLY_KEYS\"\n",
            remote("up", &up.url(), &["m1"], "")
        ),
        "",
    );
    let mut c = Conn::connect(gate.addr);
    c.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n{\"model\":");
    let r = c.read_response();
    assert_eq!(r.status, 401);
    assert_eq!(envelope(&r)["error"]["code"], "auth.unauthorized");
    assert!(
        c.wait_closed(Duration::from_secs(5)),
        "connection closed after the early 401"
    );
    // A small request whose body came along: 401 and the connection stays usable.
    let mut c = Conn::connect(gate.addr);
    let r = c.request(post_raw("/v1/chat/completions", r#"{"model":"m1"}"#, &[]).as_bytes());
    assert_eq!(r.status, 401);
    let r = c.request(
        post_raw(
            "/v1/chat/completions",
            r#"{"model":"m1"}"#,
            &["Authorization: Bearer k-early"],
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        up.seen().len(),
        1,
        "only the authenticated request reached the upstream"
    );
}

use slotgate::proxy::request_id::is_uuid_v7;

/// Generated request ids are UUIDv7 (real servers reject other shapes), a client's id goes
/// upstream as given, and `send_request_id = false` keeps it from one upstream while the client
/// still gets it back.
#[test]
fn request_ids_are_uuids_client_ids_pass_and_one_upstream_can_opt_out() {
    let up = Scripted::start(|_| vec![Piece::Bytes(json_response("{}"))]);
    let quiet = Scripted::start(|_| vec![Piece::Bytes(json_response("{}"))]);
    let cfg = format!(
        "{}{}",
        remote("up", &up.url(), &["m1"], ""),
        remote("quiet", &quiet.url(), &["m2"], "send_request_id = false\n")
    );
    let gate = start_gate(&cfg, &driver_tuning(DRIVERS[0]));

    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = http_request(
            gate.addr,
            post_raw("/v1/x", r#"{"model":"m1"}"#, &[]).as_bytes(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let id = r.header("x-request-id").expect("id sent back").to_string();
        assert!(is_uuid_v7(&id), "generated id {id} is a UUIDv7");
        ids.push(id);
    }
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 3, "ids never repeat: {ids:?}");
    let seen = up.seen();
    for (s, id) in seen.iter().zip(&ids) {
        assert_eq!(s.header("x-request-id").as_deref(), Some(id.as_str()));
    }

    let r = http_request(
        gate.addr,
        post_raw("/v1/x", r#"{"model":"m1"}"#, &["X-Request-Id: my-trace.42"]).as_bytes(),
    );
    assert_eq!(r.header("x-request-id"), Some("my-trace.42"));
    assert_eq!(
        up.seen()
            .last()
            .and_then(|s| s.header("x-request-id"))
            .as_deref(),
        Some("my-trace.42"),
        "a client's id is forwarded as given"
    );

    let r = http_request(
        gate.addr,
        post_raw("/v1/x", r#"{"model":"m2"}"#, &[]).as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("x-request-id").is_some_and(is_uuid_v7));
    let q = quiet.seen();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].header("x-request-id"), None, "send_request_id = false");
}

/// A scripted model server: `/v1/models` lists `ids`, anything else gets `{"ok":1}`.
fn lists(ids: &'static [&'static str]) -> Scripted {
    Scripted::start(move |seen| {
        if seen.request_line().contains("/models") {
            let data: Vec<Value> = ids
                .iter()
                .map(|id| serde_json::json!({"id": id, "object": "model"}))
                .collect();
            let list = serde_json::json!({"object": "list", "data": data}).to_string();
            vec![Piece::Bytes(json_response(&list))]
        } else {
            vec![Piece::Bytes(json_response(r#"{"ok":1}"#))]
        }
    })
}

fn last_body(up: &Scripted) -> (String, Vec<u8>) {
    let seen = up.seen();
    let s = seen
        .iter()
        .rev()
        .find(|s| !s.request_line().contains("/models"))
        .expect("a forwarded request");
    (s.request_line().to_string(), s.body.clone())
}

/// Dispatch without a `model`, hints and loading details over real sockets: a body without `model` is routed by its path default
/// at every step (container, registry), and forwarded untouched unless a binding remaps it; a
/// hint (`name:tag`, `embed`) whose candidate is missing is a 404 naming it, never the anchor's
/// model; `503 slot.loading` always carries `phase`, `requested_model` and `upstream`, merged
/// with what the control plane pushed.
#[test]
fn path_defaults_hints_and_loading_progress_follow_the_contract() {
    let e5 = lists(&["embed"]);
    let gpu = lists(&["bge-m3"]);
    let cfg = format!(
        "{}[[upstream]]\nname = \"gpu\"\nkind = \"slot\"\nurl = \"{}\"\nprobe_interval_ms = 100\n\
         models_refresh_ms = 200\n\n[routing]\ndefault_slot = \"gpu\"\n\n[registry]\n\"rerank\" = \"gpu\"\n",
        container("e5", &e5.url()),
        gpu.url()
    );
    let gate = start_gate(&cfg, "");
    wait_ready(&gate, "e5", "embed");
    wait_ready(&gate, "gpu", "bge-m3");

    // Step 0 on the path default: the container advertising `embed` wins; the body is untouched.
    let r = post_json(gate.addr, "/v1/embeddings", r#"{"input":"x"}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-slotgate-route"), Some("container:e5"));
    let (line, body) = last_body(&e5);
    assert!(line.starts_with("POST /v1/embeddings "), "{line}");
    assert_eq!(body, br#"{"input":"x"}"#);

    // Step 1 on the path default: the binding `rerank -> gpu`, slot as truth adds the model.
    let r = post_json(
        gate.addr,
        "/v1/rerank",
        r#"{"query":"q","documents":["a"]}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-slotgate-route"), Some("registry"));
    let (_, body) = last_body(&gpu);
    assert_eq!(
        String::from_utf8_lossy(&body),
        r#"{"query":"q","documents":["a"],"model":"bge-m3"}"#
    );

    // 404s name the missing candidate and the id used; never the anchor's model.
    for (path, body, model, candidate) in [
        ("/v1/audio/speech", r#"{"input":"x"}"#, "tts", "tts"),
        (
            "/v1/chat/completions",
            r#"{"model":"qwen3:0.6b"}"#,
            "qwen3:0.6b",
            "npu",
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"nomic-embed-text"}"#,
            "nomic-embed-text",
            "embed",
        ),
    ] {
        let r = post_json(gate.addr, path, body);
        let v = envelope(&r);
        assert_eq!(r.status, 404, "{body}: {v}");
        assert_eq!(v["error"]["code"], "dispatch.no_route");
        assert_eq!(v["error"]["details"]["model"], model, "{v}");
        assert_eq!(v["error"]["details"]["candidate"], candidate, "{v}");
    }
    // A plain id matching nothing goes to the default anchor.
    let r = post_json(gate.addr, "/v1/chat/completions", r#"{"model":"mystery"}"#);
    assert_eq!(r.header("x-slotgate-route"), Some("capability:gpu"));

    // The control plane pushes warming with its own progress: ours join it, never overwritten.
    let admin = gate.admin_addr.expect("admin listener");
    let push =
        r#"{"state":"warming","progress":{"pct":40,"upstream":"spoof","requested_model":"x"}}"#;
    let put = format!(
        "PUT /admin/slots/gpu HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{push}",
        push.len()
    );
    let r = http_request(admin, put.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post_json(gate.addr, "/v1/chat/completions", r#"{"model":"bge-m3"}"#);
    let v = envelope(&r);
    assert_eq!(r.status, 503, "{v}");
    assert_eq!(v["error"]["code"], "slot.loading");
    assert_eq!(
        v["error"]["details"]["progress"],
        serde_json::json!({"pct": 40, "phase": "warming", "requested_model": "bge-m3", "upstream": "gpu"})
    );
    // Without a model, `requested_model` is the path default.
    let r = post_json(gate.addr, "/v1/chat/completions", r#"{"messages":[]}"#);
    let v = envelope(&r);
    assert_eq!(
        v["error"]["details"]["progress"]["requested_model"], "gpu",
        "{v}"
    );
}

/// Probes and model-list refreshes wait while an upstream has requests in flight: a server that
/// runs one request at a time (llama-cpp-python) would answer a probe only after them, past the
/// probe timeout, or cancel the running stream for it. Once idle, probing resumes.
#[test]
fn a_busy_upstream_is_not_probed_until_idle() {
    let up = Scripted::start(|seen| {
        if seen.request_line().contains("/chat/") {
            vec![
                Piece::Pause(Duration::from_millis(1200)),
                Piece::Bytes(json_response(r#"{"ok":1}"#)),
            ]
        } else if seen.request_line().contains("/models") {
            vec![Piece::Bytes(json_response(
                r#"{"object":"list","data":[{"id":"m1","object":"model"}]}"#,
            ))]
        } else {
            vec![Piece::Bytes(json_response("{}"))]
        }
    });
    let gate = start_gate(&container("busy", &up.url()), "");
    wait_ready(&gate, "busy", "m1");
    let probes = |up: &Scripted| {
        up.seen()
            .iter()
            .filter(|s| !s.request_line().contains("/chat/"))
            .count()
    };
    let addr = gate.addr;
    let slow = std::thread::spawn(move || {
        post_json(
            addr,
            "/v1/chat/completions",
            r#"{"model":"m1","messages":[]}"#,
        )
    });
    assert!(
        wait_until(Duration::from_secs(5), || up
            .seen()
            .iter()
            .any(|s| s.request_line().contains("/chat/"))),
        "the request never reached the upstream"
    );
    std::thread::sleep(Duration::from_millis(150)); // a probe already on the wire lands
    let during = probes(&up);
    std::thread::sleep(Duration::from_millis(700)); // seven probe intervals
    assert_eq!(
        probes(&up),
        during,
        "probed or refreshed while a request was in flight"
    );
    let r = slow.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        wait_until(Duration::from_secs(3), || probes(&up) > during),
        "probing never resumed once idle"
    );
}
