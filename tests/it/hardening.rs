//! Hardening: framing defences, timeouts, limits, front-door keys, upstream
//! credentials and upstream faults, end to end through the real server on 127.0.0.1.
//! Conditions are waited on with deadlines, never with sleeps.

use crate::support;

use slotgate::mock::{self, MockConfig, MockHandle};
use slotgate::server::Server;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::gate::*;
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
        ("chunked body too large", format!("POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{}", "40\r\n".to_string() + &"y".repeat(64) + "\r\n").repeat(1) + &("40\r\n".to_string() + &"y".repeat(64) + "\r\n").repeat(20), 413, "request.body_too_large"),
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

// ---------------------------------------------------------------------------------------------
// Front-door keys.

/// A unique environment variable name for this test process.
fn var(tag: &str) -> String {
    format!("SLOTGATE_HT_{tag}_{}", std::process::id())
}

/// An upstream that answers every request with a small JSON 200.
fn ok_upstream() -> Scripted {
    Scripted::start(|_| vec![Piece::Bytes(json_response("{}")), Piece::Close])
}

#[test]
fn front_door_keys_guard_every_path() {
    let keys = var("KEYS");
    std::env::set_var(&keys, "k-one, k-two");
    let up = ok_upstream();
    let s = start(&config_text(
        &remote("up", &up.url(), &["mock"], ""),
        "",
        &format!("[auth]\nkeys_env = \"{keys}\"\n"),
    ));
    let denied = [
        post_raw(CHAT, BODY, &[]),
        post_raw(CHAT, BODY, &["Authorization: Bearer k-three"]),
        post_raw(CHAT, BODY, &["Authorization: Basic k-one"]),
        post_raw(CHAT, BODY, &["X-Api-Key: k-on"]),
        post_raw(CHAT, BODY, &["Authorization: Bearer k-one-and-more"]),
        get_raw("/v1/models"),
        get_raw("/v1/models/mock"),
        get_raw("/not-v1"),
        "POST /v1/messages HTTP/1.1\r\nHost: a\r\nx-api-key: nope\r\nContent-Length: 0\r\n\r\n"
            .to_string(),
    ];
    let mut c = Conn::connect(s.addr);
    for raw in &denied {
        let r = c.request(raw.as_bytes());
        assert_error(&r, 401, "auth.unauthorized");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{raw}");
        assert!(r.header("x-request-id").is_some());
    }
    assert_eq!(
        up.accepted.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "upstream saw a refused request"
    );
    // Accepted keys, both header forms, same keep-alive connection.
    let r = c.request(post_raw(CHAT, BODY, &["Authorization: Bearer k-two"]).as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let r = c.request(post_raw(CHAT, BODY, &["X-Api-Key: k-one"]).as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let r = c.request(b"GET /v1/models HTTP/1.1\r\nHost: a\r\nauthorization: bearer k-one\r\n\r\n");
    assert_eq!(r.status, 200, "{}", r.text());
    // The front-door key is the client's credential: never forwarded upstream.
    let seen = up.seen();
    assert!(!seen.is_empty(), "upstream got no request");
    for head in seen.iter().map(|r| r.head.to_ascii_lowercase()) {
        assert!(
            !head.contains("k-two") && !head.contains("authorization"),
            "{head}"
        );
    }
}

#[test]
fn front_door_keys_file_is_reread_on_reload() {
    let up = ok_upstream();
    let keys = TempFile::new("keys", "# front-door keys\nold-key\n");
    let text = config_text(
        &remote("up", &up.url(), &["mock"], ""),
        "",
        &format!("[auth]\nkeys_file = \"{}\"\n", keys.0.display()),
    );
    let cfg_file = TempFile::new("cfg.toml", &text);
    let cfg = slotgate::config::Config::load(&cfg_file.0, None).unwrap();
    let s = Server::start(cfg).unwrap();
    let with = |k: &str| {
        Conn::connect(s.addr)
            .request(post_raw(CHAT, BODY, &[&format!("Authorization: Bearer {k}")]).as_bytes())
            .status
    };
    assert_eq!(with("old-key"), 200);
    assert_eq!(with("new-key"), 401);
    std::fs::write(&keys.0, "new-key\n").unwrap();
    s.control.reload().expect("reload");
    assert_eq!(with("new-key"), 200);
    assert_eq!(with("old-key"), 401);
    // A keys file that became empty is refused at reload; the running keys stay.
    std::fs::write(&keys.0, "\n# none\n").unwrap();
    assert!(s.control.reload().is_err());
    assert_eq!(with("new-key"), 200);
}

#[test]
fn front_door_keys_config_errors() {
    let missing = format!("[auth]\nkeys_env = \"{}\"\n", var("UNSET"));
    let e =
        slotgate::config::Config::from_toml_str(&config_text("", "", &missing), None).unwrap_err();
    assert!(e.to_string().contains("auth.keys_env"), "{e}");
    let nofile = "[auth]\nkeys_file = \"/nonexistent/slotgate/keys\"\n";
    let e =
        slotgate::config::Config::from_toml_str(&config_text("", "", nofile), None).unwrap_err();
    assert!(e.to_string().contains("auth.keys_file"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Upstream credentials.

#[test]
fn upstream_credentials_are_injected_and_client_credentials_stripped() {
    let secret = var("SECRET");
    std::env::set_var(&secret, "sk-upstream-123");
    let up = ok_upstream();
    let u = up.url();
    let ups = [
        remote(
            "bearer",
            &u,
            &["m-bearer"],
            &format!("auth = {{ style = \"bearer\", env = \"{secret}\" }}"),
        ),
        remote(
            "header",
            &u,
            &["m-header"],
            &format!(
                "auth = {{ style = \"header\", env = \"{secret}\", header = \"X-Custom-Key\" }}"
            ),
        ),
        remote(
            "anthropic",
            &u,
            &["m-anthropic"],
            &format!("auth = {{ style = \"anthropic\", env = \"{secret}\" }}"),
        ),
        remote("plain", &u, &["m-plain"], ""),
        remote("fwd", &u, &["m-fwd"], "forward_client_auth = true"),
        remote(
            "fwdinj",
            &u,
            &["m-fwdinj"],
            &format!(
                "forward_client_auth = true\nauth = {{ style = \"bearer\", env = \"{secret}\" }}"
            ),
        ),
    ]
    .concat();
    let s = start(&config_text(&ups, "", ""));
    let send = |model: &str| -> String {
        let body = format!(r#"{{"model":"{model}"}}"#);
        let r = Conn::connect(s.addr).request(
            post_raw(
                CHAT,
                &body,
                &[
                    "Authorization: Bearer client-tok",
                    "X-Api-Key: client-key",
                    "anthropic-version: client-ver",
                ],
            )
            .as_bytes(),
        );
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        let seen = up.seen();
        seen.last()
            .expect("upstream got no request")
            .head
            .to_ascii_lowercase()
    };
    let h = send("m-bearer");
    assert!(
        h.contains("\r\nauthorization: bearer sk-upstream-123\r\n"),
        "{h}"
    );
    assert!(
        !h.contains("client-tok") && !h.contains("client-key"),
        "{h}"
    );
    let h = send("m-header");
    assert!(h.contains("\r\nx-custom-key: sk-upstream-123\r\n"), "{h}");
    assert!(
        !h.contains("client-tok") && !h.contains("client-key"),
        "{h}"
    );
    let h = send("m-anthropic");
    assert!(h.contains("\r\nx-api-key: sk-upstream-123\r\n"), "{h}");
    assert!(h.contains("\r\nanthropic-version: "), "{h}");
    assert!(
        !h.contains("client-ver") && !h.contains("client-key") && !h.contains("client-tok"),
        "{h}"
    );
    let h = send("m-plain");
    assert!(
        !h.contains("authorization") && !h.contains("x-api-key"),
        "{h}"
    );
    let h = send("m-fwd");
    assert!(
        h.contains("\r\nauthorization: bearer client-tok\r\n"),
        "{h}"
    );
    assert!(h.contains("\r\nx-api-key: client-key\r\n"), "{h}");
    // The upstream's own credential wins over a forwarded client one: exactly one Authorization.
    let h = send("m-fwdinj");
    assert_eq!(h.matches("authorization:").count(), 1, "{h}");
    assert!(h.contains("bearer sk-upstream-123"), "{h}");
}

#[test]
fn missing_credential_variable_fails_check_and_is_logged() {
    let unset = var("NEVER_SET");
    let text = config_text(
        &remote(
            "or",
            "http://127.0.0.1:9/v1",
            &["m"],
            &format!("auth = {{ style = \"bearer\", env = \"{unset}\" }}"),
        ),
        "",
        "",
    );
    let f = TempFile::new("check.toml", &text);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_slotgate"))
        .args(["check", "--config"])
        .arg(&f.0)
        .env_remove(&unset)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "check passed with a missing credential variable"
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains(&unset), "{all}");
    let b = Binary::start(&text, "info", "", &[]);
    assert!(
        wait_until(Duration::from_secs(3), || b.log_text().contains(&unset)),
        "startup log does not name the missing variable: {}",
        b.log_text()
    );
}

#[test]
fn secrets_never_reach_logs_admin_or_error_bodies() {
    const SECRET: &str = "sk-SUPERSECRET-7f3a9c";
    const FRONT: &str = "front-KEY-19b2e";
    const ADMIN: &str = "adm-TOKEN-55d0";
    let up = ok_upstream();
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let ups = [
        remote(
            "good",
            &up.url(),
            &["m-good"],
            "auth = { style = \"bearer\", env = \"HT_UP_SECRET\" }",
        ),
        remote(
            "dead",
            &format!("http://{dead}/v1"),
            &["m-dead"],
            "auth = { style = \"header\", env = \"HT_UP_SECRET\", header = \"X-Key\" }",
        ),
        remote(
            "anth",
            &up.url(),
            &["m-anth"],
            "auth = { style = \"anthropic\", env = \"HT_UP_SECRET\" }",
        ),
    ]
    .concat();
    let text = config_text(&ups, "", "[auth]\nkeys_env = \"HT_FRONT_KEYS\"\n").replace(
        "admin = \"\"",
        "admin = \"127.0.0.1:0\"\nadmin_token_env = \"HT_ADMIN_TOKEN\"",
    );
    let b = Binary::start(
        &text,
        "trace",
        "",
        &[
            ("HT_UP_SECRET", SECRET),
            ("HT_FRONT_KEYS", FRONT),
            ("HT_ADMIN_TOKEN", ADMIN),
        ],
    );
    let mut bodies = String::new();
    let auth = format!("Authorization: Bearer {FRONT}");
    for (model, want) in [("m-good", 200), ("m-dead", 502), ("m-anth", 200)] {
        let r = Conn::connect(b.addr)
            .request(post_raw(CHAT, &format!(r#"{{"model":"{model}"}}"#), &[&auth]).as_bytes());
        assert_eq!(r.status, want, "{}", r.text());
        bodies.push_str(&String::from_utf8_lossy(&r.raw));
    }
    for raw in [
        post_raw(CHAT, BODY, &[&format!("Authorization: Bearer {SECRET}")]),
        post_raw(CHAT, "{bad json", &[&auth]),
        post_raw(CHAT, r#"{"model":"nothing-serves-this"}"#, &[&auth]),
        "GET /v1/models HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
            .to_string(),
    ] {
        let r = Conn::connect(b.addr).request(raw.as_bytes());
        assert!(r.status >= 400);
        bodies.push_str(&String::from_utf8_lossy(&r.raw));
    }
    let admin = b.admin.expect("admin address in the log");
    for path in ["/admin/upstreams", "/metrics", "/admin/route?model=m-good"] {
        let r = Conn::connect(admin).request(
            format!("GET {path} HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {ADMIN}\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        bodies.push_str(&String::from_utf8_lossy(&r.raw));
    }
    let r = Conn::connect(admin)
        .request(b"GET /admin/upstreams HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert_error(&r, 401, "auth.unauthorized");
    bodies.push_str(&String::from_utf8_lossy(&r.raw));
    // Requests seen by the upstream carry the secret (that is the point) ...
    assert!(up.seen()[0].head.contains(SECRET));
    // ... but nothing slotgate itself says or logs does.
    let log = b.log_text();
    assert!(log.contains("slotgate listening"), "no log captured: {log}");
    for s in [SECRET, FRONT, ADMIN] {
        assert!(!log.contains(s), "secret in the log:\n{log}");
        assert!(!bodies.contains(s), "secret in a response:\n{bodies}");
    }
}

// ---------------------------------------------------------------------------------------------
// Upstream faults.

/// A server with one remote upstream per fault, each serving the model of the same name, plus
/// `good` (a mock). Timeouts are short.
struct Faults {
    server: Server,
    _mock: MockHandle,
    _ups: Vec<Scripted>,
}

fn fault_upstreams() -> Vec<(&'static str, Scripted)> {
    use Piece::{Close, Reset, Stall};
    let bytes = |b: &[u8]| Piece::Bytes(b.to_vec());
    let huge_head = {
        let mut h = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..2000 {
            h.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "f".repeat(40)).as_bytes());
        }
        h.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        h
    };
    let faults: Vec<(&'static str, Vec<Piece>)> = vec![
        ("rst-now", vec![Reset]),
        ("close-now", vec![Close]),
        ("rst-head", vec![bytes(b"HTTP/1.1 200 OK\r\nContent-Ty"), Reset]),
        (
            "rst-body",
            vec![
                bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789"),
                Reset,
            ],
        ),
        (
            "rst-chunked",
            vec![
                bytes(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"),
                Reset,
            ],
        ),
        ("stall-head", vec![Stall]),
        (
            "stall-body",
            vec![
                bytes(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"),
                Stall,
            ],
        ),
        (
            "bad-status",
            vec![bytes(b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n"), Close],
        ),
        ("not-http", vec![bytes(b"SSH-2.0-OpenSSH_9.6\r\n\r\n"), Close]),
        (
            "bad-chunk",
            vec![
                bytes(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
                Close,
            ],
        ),
        (
            "bad-framing",
            vec![
                bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
                Close,
            ],
        ),
        ("huge-head", vec![Piece::Bytes(huge_head), Close]),
    ];
    faults
        .into_iter()
        .map(|(name, pieces)| (name, Scripted::start(move |_| pieces.clone())))
        .collect()
}

/// The `[[upstream]]` tables of the fault set: `good` (a mock), `refused`, and one scripted
/// upstream per fault, each serving the model of its own name, with short timeouts.
fn fault_tables() -> (String, MockHandle, Vec<Scripted>) {
    let m = mock::spawn(MockConfig::default()).unwrap();
    let timeouts = "first_byte_ms = 300\nidle_ms = 300\nconnect_ms = 500";
    let mut text = remote("good", &m.base_url(), &["mock"], timeouts);
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    text.push_str(&remote(
        "refused",
        &format!("http://{dead}/v1"),
        &["refused"],
        timeouts,
    ));
    let mut ups = Vec::new();
    for (name, u) in fault_upstreams() {
        text.push_str(&remote(name, &u.url(), &[name], timeouts));
        ups.push(u);
    }
    (text, m, ups)
}

fn faults(tuning: &str) -> Faults {
    let (text, m, ups) = fault_tables();
    Faults {
        server: start(&config_text(&text, tuning, "")),
        _mock: m,
        _ups: ups,
    }
}

fn ask(addr: SocketAddr, model: &str) -> (support::Response, Duration, bool) {
    let mut c = Conn::connect(addr);
    let t = Instant::now();
    let r = c.request(
        post_raw(
            CHAT,
            &format!(r#"{{"model":"{model}","stream":true}}"#),
            &[],
        )
        .as_bytes(),
    );
    let took = t.elapsed();
    // A cut response must be followed by EOF; a complete one leaves a keep-alive connection.
    let closed = !r.complete && c.wait_closed(Duration::from_secs(3));
    (r, took, closed)
}

#[test]
fn upstream_faults_before_the_head_are_502_or_504() {
    let f = faults("");
    let addr = f.server.addr;
    for model in [
        "refused",
        "rst-now",
        "close-now",
        "rst-head",
        "bad-status",
        "not-http",
        "bad-chunk",
        "huge-head",
    ] {
        let (r, _, _) = ask(addr, model);
        assert_error(&r, 502, "dispatch.upstream_unavailable");
        assert_eq!(
            r.json()["error"]["details"]["upstream"],
            model,
            "{}",
            r.text()
        );
        assert_serves(addr);
    }
    let (r, took, _) = ask(addr, "stall-head");
    assert_error(&r, 504, "dispatch.upstream_timeout");
    assert!(
        took >= Duration::from_millis(280) && took < Duration::from_millis(2000),
        "{took:?}"
    );
    assert_serves(addr);
}

#[test]
fn upstream_faults_mid_body_cut_the_client_response() {
    let f = faults("");
    let addr = f.server.addr;
    // Content-Length body cut short: the client sees fewer bytes than announced, then EOF.
    let (r, _, closed) = ask(addr, "rst-body");
    assert_eq!(r.status, 200);
    assert!(!r.complete && r.body.len() < 100 && closed, "{r:?}");
    // Chunked body cut: no terminating chunk.
    let (r, _, closed) = ask(addr, "rst-chunked");
    assert_eq!(r.status, 200);
    assert!(!r.complete && closed, "{r:?}");
    assert!(!r.raw.ends_with(b"0\r\n\r\n"));
    // Content-Length with Transfer-Encoding: TE wins (RFC 9112 §6.3) and the void
    // Content-Length is not passed on, so the client cannot be made to mis-frame.
    let (r, _, _) = ask(addr, "bad-framing");
    assert_eq!(r.status, 200);
    assert!(r.is_chunked() && r.complete, "{r:?}");
    assert_eq!(r.header("content-length"), None, "{r:?}");
    // Stalled body: cut after idle_ms.
    let (r, took, closed) = ask(addr, "stall-body");
    assert_eq!(r.status, 200);
    assert!(!r.complete && closed, "{r:?}");
    assert!(
        took >= Duration::from_millis(280) && took < Duration::from_millis(2000),
        "{took:?}"
    );
    assert_serves(addr);
}

#[test]
fn upstream_faults_leak_no_fds_in_the_binary() {
    // The real binary, so its fd table is its own (tests in this process run in parallel).
    let (text, _m, _ups) = fault_tables();
    let b = Binary::start(
        &config_text(&text, "", ""),
        "warn,slotgate::server=info",
        "",
        &[],
    );
    assert_serves(b.addr);
    // Baseline with the good upstream's connection pooled and no client connected.
    let settle = |want: Option<usize>| {
        let mut last = fd_count(b.pid());
        wait_until(Duration::from_secs(3), || {
            let n = fd_count(b.pid());
            let stable = n == last && want.is_none_or(|w| n <= w);
            last = n;
            stable
        });
        last
    };
    let base = settle(None);
    for model in [
        "refused",
        "rst-now",
        "close-now",
        "rst-head",
        "rst-body",
        "rst-chunked",
        "stall-head",
        "stall-body",
        "bad-status",
        "not-http",
        "bad-chunk",
        "bad-framing",
        "huge-head",
    ] {
        let _ = ask(b.addr, model);
    }
    assert_serves(b.addr);
    let after = settle(Some(base));
    assert!(after <= base, "fds leaked: {base} before, {after} after");
}

// ---------------------------------------------------------------------------------------------
// Descriptor exhaustion.

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the `(comm)`: state is 3rd, utime 14th, stime 15th.
    let rest = &s[s.rfind(')').map_or(0, |i| i + 2)..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

#[test]
fn emfile_backs_off_without_spinning_and_recovers() {
    let m = mock::spawn(MockConfig::default()).unwrap();
    let text = config_text(&remote("up", &m.base_url(), &["mock"], ""), "", "");
    let b = Binary::start(&text, "warn,slotgate::server=info", "", &[]);
    assert_serves(b.addr);
    let pid = b.pid();
    // Leave room for a handful of connections only.
    let limit = fd_count(pid) + 6;
    let st = std::process::Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={limit}:{limit}"))
        .status()
        .expect("prlimit");
    assert!(st.success());
    // Hold many idle connections: the worker runs out of descriptors and accept fails.
    let mut held: Vec<Conn> = (0..40).map(|_| Conn::connect(b.addr)).collect();
    assert!(
        wait_until(Duration::from_secs(3), || b
            .log_text()
            .contains("accept failed")),
        "accept never failed: {}",
        b.log_text()
    );
    // While exhausted the accept loop backs off: little CPU over a measurement window.
    let t0 = cpu_ticks(pid);
    let window = Instant::now();
    while window.elapsed() < Duration::from_millis(500) {
        std::thread::park_timeout(Duration::from_millis(50));
    }
    let used = cpu_ticks(pid) - t0;
    assert!(
        used <= 10,
        "accept loop spun while out of fds: {used} ticks in 500 ms"
    );
    // Freed descriptors: the queued connections and new ones are served again.
    for c in held.drain(..) {
        c.close();
    }
    assert!(
        wait_until(Duration::from_secs(4), || {
            let mut c = Conn::connect(b.addr);
            c.stream
                .set_read_timeout(Some(Duration::from_millis(800)))
                .unwrap();
            c.request(get_raw("/v1/models").as_bytes()).status == 200
        }),
        "did not recover after descriptors were freed"
    );
    assert_serves(b.addr);
}

#[test]
fn admin_token_variable_unset_locks_the_admin_api() {
    let text = config_text("", "", "").replace(
        "admin = \"\"",
        &format!(
            "admin = \"127.0.0.1:0\"\nadmin_token_env = \"{}\"",
            var("ADMIN_UNSET")
        ),
    );
    let s = start(&text);
    let admin = s.admin_addr.unwrap();
    let r = Conn::connect(admin).request(b"GET /admin/upstreams HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer \r\nConnection: close\r\n\r\n");
    assert_error(&r, 401, "auth.unauthorized");
    let r = Conn::connect(admin)
        .request(b"GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert_error(&r, 401, "auth.unauthorized");
    // Liveness stays open for orchestrators.
    let r = Conn::connect(admin)
        .request(b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 200);
}

#[test]
fn upstream_obs_text_reason_phrase_is_relayed_not_fatal() {
    // Fuzz finding: this status line used to abort the process (panic = "abort" in release).
    let up = Scripted::start(|_| {
        vec![
            Piece::Bytes(b"HTTP/1.1 200 \xc3\x96k\r\nContent-Length: 2\r\n\r\n{}".to_vec()),
            Piece::Close,
        ]
    });
    let s = start(&config_text(
        &remote("up", &up.url(), &["mock"], ""),
        "",
        "",
    ));
    let r = Conn::connect(s.addr).request(post_raw(CHAT, BODY, &[]).as_bytes());
    assert_eq!((r.status, r.body.as_slice()), (200, &b"{}"[..]));
    let r = Conn::connect(s.addr).request(post_raw(CHAT, BODY, &[]).as_bytes());
    assert_eq!(r.status, 200);
}

/// Targets that once aborted the process (a `%`, one hex digit, then a multi-byte character) and
/// their cousins: raw high bytes, broken escapes, a huge query. Each gets a clean answer and the
/// one worker goes on serving.
#[test]
fn hostile_targets_get_an_answer_and_the_worker_survives() {
    let (s, _m) = gate("");
    let targets: [&[u8]; 9] = [
        b"/v1/models/%a\xc3\xa9",
        b"/v1/models/%\xc3\xa9",
        b"/v1/models/%",
        b"/v1/models/%4",
        b"/v1/models/\xff\xfe%zz",
        b"/v1/models/%c3",
        b"/v1/\xe2\x82\xac?q=%a\xc3\xa9",
        b"/v1/models?%%%=\xc3",
        b"/\xc3\xa9%a",
    ];
    for t in targets {
        let mut raw = b"GET ".to_vec();
        raw.extend_from_slice(t);
        raw.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut c = Conn::connect(s.addr);
        c.send(&raw);
        let r = c.read_response();
        let what = String::from_utf8_lossy(t);
        assert!(
            matches!(r.status, 200 | 400 | 404),
            "{what}: status {}",
            r.status
        );
        if r.status != 200 {
            let v: serde_json::Value = serde_json::from_slice(&r.body).expect("envelope");
            assert!(v["error"]["code"].is_string(), "{what}: {}", r.text());
        }
        assert_serves(s.addr);
    }
    let huge = format!(
        "GET /v1/models/x?{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "%a\u{e9}&".repeat(2000)
    );
    let mut c = Conn::connect(s.addr);
    c.send(huge.as_bytes());
    let r = c.read_response();
    assert!(r.status >= 400, "huge query: {}", r.status);
    assert_serves(s.addr);
}

/// A panic on one connection's path (injected: debug builds with `SLOTGATE_TEST_PANICS=1`)
/// closes that connection only: before any answer byte the client gets `500 server.internal`,
/// after the head it sees the response cut; a stream on the same worker runs on to its end, the
/// worker keeps serving, and `slotgate_panics_total` counts both.
#[test]
fn a_panic_closes_only_its_own_connection() {
    std::env::set_var("SLOTGATE_TEST_PANICS", "1");
    let m = mock::spawn(MockConfig {
        tokens: 30,
        tokens_per_sec: 100.0,
        ..MockConfig::default()
    })
    .unwrap();
    let s = start_gate(&remote("up", &m.base_url(), &["mock"], ""), "");
    let admin = s.admin_addr.expect("admin");

    let stream_body =
        r#"{"model":"mock","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let mut streaming = Conn::connect(s.addr);
    streaming.send(post_raw(CHAT, stream_body, &[]).as_bytes());
    let first = streaming.read_until(b"data: ", Duration::from_secs(5));
    assert!(first.starts_with(b"HTTP/1.1 200"), "stream started");

    let mut c = Conn::connect(s.addr);
    c.send(
        post_raw(
            CHAT,
            BODY,
            &["X-Slotgate-Test-Panic: head", "X-Request-Id: boom-1"],
        )
        .as_bytes(),
    );
    let r = c.read_response();
    assert_error(&r, 500, "server.internal");
    assert_eq!(r.header("x-request-id"), Some("boom-1"));
    assert_eq!(r.header("connection"), Some("close"));
    assert!(
        c.wait_closed(Duration::from_secs(3)),
        "panicked connection closed"
    );

    let mut c = Conn::connect(s.addr);
    c.send(post_raw(CHAT, stream_body, &["X-Slotgate-Test-Panic: body"]).as_bytes());
    let got = c.read_until(b"\r\n\r\n", Duration::from_secs(5));
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "head went out before the panic"
    );
    assert!(c.wait_closed(Duration::from_secs(3)), "cut after the head");

    assert_serves(s.addr);
    let rest = streaming.read_until(b"data: [DONE]", Duration::from_secs(10));
    let all = [first, rest].concat();
    assert!(
        all.windows(12).any(|w| w == b"data: [DONE]"),
        "the other stream ran to its end: {}",
        String::from_utf8_lossy(&all)
    );
    let metrics = support::get(admin, "/metrics").text();
    assert!(
        metrics.lines().any(|l| l == "slotgate_panics_total 2"),
        "panics counted:\n{}",
        metrics
            .lines()
            .filter(|l| l.contains("panic"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// `serve` on a non-loopback address with no front-door keys does not start (nothing is bound:
/// the refusal comes from the config), and says how to fix it; `check` agrees, and accepts the
/// same file once it says `[auth] allow_unauthenticated = true`.
#[test]
fn an_open_non_loopback_front_door_is_refused_unless_meant() {
    let ups = remote("up", "http://127.0.0.1:9/v1", &["m"], "");
    let open = format!("[listen]\naddr = \"0.0.0.0:0\"\nadmin = \"\"\n\n{ups}");
    let f = TempFile::new("open.toml", &open);
    for cmd in ["serve", "check"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_slotgate"))
            .args([cmd, "--config"])
            .arg(&f.0)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{cmd} accepted an open 0.0.0.0 door");
        assert!(
            err.contains("listen.addr") && err.contains("allow_unauthenticated"),
            "{cmd}: {err}"
        );
    }
    let meant = format!("{open}\n[auth]\nallow_unauthenticated = true\n");
    let f = TempFile::new("meant.toml", &meant);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_slotgate"))
        .args(["check", "--config"])
        .arg(&f.0)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
