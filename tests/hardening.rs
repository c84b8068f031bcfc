//! Hardening (issue 6): framing defences, timeouts, limits, front-door keys, upstream
//! credentials and upstream faults, end to end through the real server on 127.0.0.1.
//! Conditions are waited on with deadlines, never with sleeps.

mod support;

#[path = "support/harness.rs"]
mod harness;

use harness::*;
use slotgate::mock::{self, MockConfig, MockHandle};
use slotgate::server::Server;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::{get_raw, post_raw, wait_until, Conn};

const CHAT: &str = "/v1/chat/completions";
const BODY: &str = r#"{"model":"mock","messages":[{"role":"user","content":"hi"}]}"#;

/// A mock upstream and a server in front of it, with `tuning` lines.
fn gate(tuning: &str) -> (Server, MockHandle) {
    let m = mock::spawn(MockConfig::default()).unwrap();
    let s = start(&config_text(
        &remote("up", &m.base_url(), &["mock"], ""),
        tuning,
        "",
    ));
    (s, m)
}

/// A normal chat completion on a fresh connection answers 200.
fn assert_serves(addr: SocketAddr) {
    let r = Conn::connect(addr).request(post_raw(CHAT, BODY, &[]).as_bytes());
    assert_eq!(r.status, 200, "normal request after fault: {}", r.text());
}

/// Sends `raw` on a fresh connection, expects the error and then EOF (nothing else answered).
fn refused_then_closed(addr: SocketAddr, raw: &[u8], status: u16, code: &str, what: &str) {
    let mut c = Conn::connect(addr);
    c.send(raw);
    let r = c.read_response();
    assert!(r.status != 0, "{what}: no response");
    assert_error(&r, status, code);
    assert_eq!(r.header("connection"), Some("close"), "{what}");
    assert!(
        c.wait_closed(Duration::from_secs(3)),
        "{what}: connection stayed open after a framing error"
    );
}

#[test]
fn framing_errors_are_refused_with_the_envelope_and_close() {
    let (s, _m) = gate(
        "max_header_bytes = 2048\nmax_headers = 8\nmax_uri_bytes = 256\nmax_body_bytes = 1024",
    );
    let pipelined = post_raw(CHAT, BODY, &[]);
    let long_uri = format!("GET /v1/{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(300));
    let many_headers: String = (0..9).map(|i| format!("X-H{i}: v\r\n")).collect();
    let big_head = format!(
        "GET /v1/models HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "b".repeat(2100)
    );
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("CL with TE", "POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(), 400, "request.bad_http"),
        ("TE with CL", "POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n".into(), 400, "request.bad_http"),
        ("differing CL", "POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!".into(), 400, "request.bad_http"),
        ("CL list", "POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello!".into(), 400, "request.bad_http"),
        ("signed CL", "POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello".into(), 400, "request.bad_http"),
        ("TE gzip", "POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n".into(), 400, "request.bad_http"),
        ("TE chunked then gzip", "POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n".into(), 400, "request.bad_http"),
        ("TE gzip then chunked", "POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n".into(), 400, "request.bad_http"),
        ("TE twice", "POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(), 400, "request.bad_http"),
        ("TE identity", "POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n".into(), 400, "request.bad_http"),
        ("TE on HTTP/1.0", "POST /v1/chat/completions HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(), 400, "request.bad_http"),
        ("bad chunk size", "POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n".into(), 400, "request.bad_http"),
        ("chunk size overflow", "POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\n".into(), 400, "request.bad_http"),
        ("chunk size sign", "POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n".into(), 400, "request.bad_http"),
        ("chunk ext control byte", "POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\x01\r\nhello\r\n0\r\n\r\n".into(), 400, "request.bad_http"),
        ("chunk bare LF", "POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n".into(), 400, "request.bad_http"),
        ("chunk data overrun", "POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n".into(), 400, "request.bad_http"),
        ("bare LF in head", "GET /v1/models HTTP/1.1\nHost: a\n\n".into(), 400, "request.bad_http"),
        ("bare LF after header", "GET /v1/models HTTP/1.1\r\nHost: a\nX: b\r\n\r\n".into(), 400, "request.bad_http"),
        ("obs-fold", "GET /v1/models HTTP/1.1\r\nHost: a\r\nX-Folded: a\r\n b\r\n\r\n".into(), 400, "request.bad_http"),
        ("space before colon", "GET /v1/models HTTP/1.1\r\nHost : a\r\n\r\n".into(), 400, "request.bad_http"),
        ("NUL in value", "GET /v1/models HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n".into(), 400, "request.bad_http"),
        ("control byte in value", "GET /v1/models HTTP/1.1\r\nHost: a\r\nX: a\x07b\r\n\r\n".into(), 400, "request.bad_http"),
        ("NUL in target", "GET /v1/mo\0dels HTTP/1.1\r\nHost: a\r\n\r\n".into(), 400, "request.bad_http"),
        ("bad version", "GET /v1/models HTTP/2.0\r\nHost: a\r\n\r\n".into(), 400, "request.bad_http"),
        ("garbage", "\x16\x03\x01\x02\x00\x01\x00\x01\x7f\x03\x03\r\n\r\n".into(), 400, "request.bad_http"),
        ("uri too long", long_uri, 414, "request.uri_too_long"),
        ("uri too long, unterminated", format!("GET /v1/{}", "a".repeat(400)), 414, "request.uri_too_long"),
        ("too many headers", format!("GET /v1/models HTTP/1.1\r\n{many_headers}\r\n"), 431, "request.headers_too_large"),
        ("head too large", big_head, 431, "request.headers_too_large"),
        ("head too large, unterminated", format!("GET /v1/models HTTP/1.1\r\nX: {}", "c".repeat(3000)), 431, "request.headers_too_large"),
        ("CL body too large", format!("POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 1025\r\n\r\n{}", "x".repeat(1025)), 413, "request.body_too_large"),
        ("chunked body too large", format!("POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{}", "40\r\n".to_string() + &"y".repeat(64) + "\r\n").repeat(1) + &format!("{}", ("40\r\n".to_string() + &"y".repeat(64) + "\r\n").repeat(20)), 413, "request.body_too_large"),
    ];
    for (what, raw, status, code) in &cases {
        // The valid pipelined request behind the bad one must never be answered.
        let mut bytes = raw.clone().into_bytes();
        if *status == 400 {
            bytes.extend_from_slice(pipelined.as_bytes());
        }
        refused_then_closed(s.addr, &bytes, *status, code, what);
    }
    assert_serves(s.addr);
}

#[test]
fn limits_at_the_boundary_are_accepted() {
    let (s, _m) = gate(
        "max_header_bytes = 2048\nmax_headers = 8\nmax_uri_bytes = 256\nmax_body_bytes = 1024",
    );
    let mut c = Conn::connect(s.addr);
    // Exactly max_uri_bytes of target: not 414 (404 from the router is fine).
    let target = format!("/v1/{}", "a".repeat(256 - 4));
    let r = c.request(get_raw(&target).as_bytes());
    assert_ne!(r.status, 414, "{}", r.text());
    // A body of exactly max_body_bytes: routed (valid JSON padded with spaces).
    let mut body = BODY.to_string();
    body.push_str(&" ".repeat(1024 - body.len()));
    let r = c.request(post_raw(CHAT, &body, &[]).as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    // Chunked with extensions and trailers, split oddly: accepted.
    let raw = format!(
        "POST {CHAT} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\n{}\r\n{:X}\r\n{}\r\n0\r\nX-Trailer: t\r\n\r\n",
        &BODY[..5],
        BODY.len() - 5,
        &BODY[5..]
    );
    let r = c.request(raw.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn chunked_body_buffer_stays_bounded() {
    // One-byte chunks with maximal leading zeros cost ~21 wire bytes per payload byte; the read
    // buffer must not hold the whole encoded body. We check behaviour: a body of max_body_bytes
    // payload in tiny chunks is accepted, one byte more is 413.
    let (s, _m) = gate("max_body_bytes = 4096");
    let mut body = BODY.to_string();
    body.push_str(&" ".repeat(4096 - body.len()));
    let mut raw = format!("POST {CHAT} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    for ch in body.chars() {
        raw.push_str(&format!("000000000000001\r\n{ch}\r\n"));
    }
    raw.push_str("0\r\n\r\n");
    let r = Conn::connect(s.addr).request(raw.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let mut raw = format!("POST {CHAT} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    for _ in 0..4097 {
        raw.push_str("000000000000001\r\n \r\n");
    }
    raw.push_str("0\r\n\r\n");
    refused_then_closed(
        s.addr,
        raw.as_bytes(),
        413,
        "request.body_too_large",
        "tiny chunks",
    );
}

#[test]
fn slowloris_head_gets_408_within_header_timeout() {
    let (s, _m) = gate("header_timeout_ms = 300\nkeepalive_timeout_ms = 5000");
    let mut c = Conn::connect(s.addr);
    let mut w = c.stream.try_clone().unwrap();
    let started = Instant::now();
    c.send(b"POST /v1/chat/completions HTTP/1.1\r\n");
    // Trickle a header line every 50 ms: each byte resets no timer.
    let trickler = std::thread::spawn(move || {
        use std::io::Write;
        for i in 0..60 {
            std::thread::sleep(Duration::from_millis(50));
            if w.write_all(format!("X-Slow-{i}: a\r\n").as_bytes())
                .is_err()
            {
                return;
            }
        }
    });
    let r = c.read_response();
    let took = started.elapsed();
    assert_error(&r, 408, "request.timeout");
    assert!(
        took >= Duration::from_millis(280),
        "408 too early: {took:?}"
    );
    assert!(took < Duration::from_millis(1500), "408 too late: {took:?}");
    assert!(c.wait_closed(Duration::from_secs(3)));
    trickler.join().unwrap();
    assert_serves(s.addr);
}

#[test]
fn idle_body_gets_408_and_close() {
    let (s, _m) = gate("body_timeout_ms = 300");
    let mut c = Conn::connect(s.addr);
    let started = Instant::now();
    c.send(
        format!("POST {CHAT} HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n{{\"mo").as_bytes(),
    );
    let r = c.read_response();
    assert_error(&r, 408, "request.timeout");
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert!(c.wait_closed(Duration::from_secs(3)));
    // Chunked body that stops mid-chunk.
    let mut c = Conn::connect(s.addr);
    c.send(
        format!("POST {CHAT} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc")
            .as_bytes(),
    );
    let r = c.read_response();
    assert_error(&r, 408, "request.timeout");
    assert!(c.wait_closed(Duration::from_secs(3)));
}

#[test]
fn idle_keepalive_connection_is_closed() {
    let (s, _m) = gate("keepalive_timeout_ms = 200\nheader_timeout_ms = 5000");
    let mut c = Conn::connect(s.addr);
    let r = c.request(post_raw(CHAT, BODY, &[]).as_bytes());
    assert_eq!(r.status, 200);
    let idle_from = Instant::now();
    assert!(
        c.wait_closed(Duration::from_secs(3)),
        "idle keep-alive connection not closed"
    );
    let took = idle_from.elapsed();
    assert!(
        took >= Duration::from_millis(150),
        "closed too early: {took:?}"
    );
    // Silent connections that never send a byte are closed the same way (no 408).
    let mut c = Conn::connect(s.addr);
    let got = c.read_until(b"HTTP/1.1", Duration::from_secs(3));
    assert!(got.is_empty(), "an idle connection got a response: {got:?}");
    assert!(c.wait_closed(Duration::from_secs(1)));
}

#[test]
fn connection_limit_answers_503_overloaded_and_recovers() {
    let (s, _m) = gate("max_connections = 2");
    let mut a = Conn::connect(s.addr);
    let mut b = Conn::connect(s.addr);
    assert_eq!(a.request(get_raw("/v1/models").as_bytes()).status, 200);
    assert_eq!(b.request(get_raw("/v1/models").as_bytes()).status, 200);
    let mut c = Conn::connect(s.addr);
    c.send(get_raw("/v1/models").as_bytes());
    let r = c.read_response();
    assert_error(&r, 503, "server.overloaded");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(c.wait_closed(Duration::from_secs(3)));
    // A freed slot is usable again.
    a.close();
    assert!(
        wait_until(Duration::from_secs(3), || {
            Conn::connect(s.addr)
                .request(get_raw("/v1/models").as_bytes())
                .status
                == 200
        }),
        "limit did not recover after a connection closed"
    );
    drop(b);
}
