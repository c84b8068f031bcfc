//! Integration tests of `slotgate mock-backend`: spawned in-process on 127.0.0.1:0, driven with
//! raw HTTP over std `TcpStream`; all waits are conditions with deadlines.

use crate::support;

use std::time::{Duration, Instant};

use slotgate::mock::{spawn, MockConfig, MockHandle};
use support::*;

fn mock(cfg: MockConfig) -> MockHandle {
    spawn(cfg).expect("spawn mock")
}

fn cfg() -> MockConfig {
    MockConfig {
        models: vec!["m1".into(), "m2".into()],
        tokens: 3,
        ..MockConfig::default()
    }
}

const CHAT_STREAM: &str =
    r#"{"model":"m1","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

/// The exact SSE events for a 3-token chat stream of model `m1`, request `seq`.
fn expected_chat_events(seq: u64, prompt: usize) -> Vec<String> {
    let tail = format!(
        r#""created":1700000000,"id":"chatcmpl-mock-{seq}","model":"m1","system_fingerprint":"mock","object":"chat.completion.chunk""#
    );
    let mut ev = vec![format!(
        r#"data: {{"choices":[{{"finish_reason":null,"index":0,"delta":{{"role":"assistant","content":"tok0 "}}}}],{tail}}}"#
    )];
    for i in 1..3 {
        ev.push(format!(
            r#"data: {{"choices":[{{"finish_reason":null,"index":0,"delta":{{"content":"tok{i} "}}}}],{tail}}}"#
        ));
    }
    ev.push(format!(
        r#"data: {{"choices":[{{"finish_reason":"stop","index":0,"delta":{{}}}}],{tail},"usage":{{"completion_tokens":3,"prompt_tokens":{prompt},"total_tokens":{}}}}}"#,
        prompt + 3
    ));
    ev.push("data: [DONE]".to_string());
    ev.into_iter().map(|e| e + "\n\n").collect()
}

#[test]
fn health_and_models() {
    let m = mock(cfg());
    let r = get(m.addr(), "/health");
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), serde_json::json!({"status": "ok"}));
    let r = get(m.addr(), "/v1/models");
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["object"], "list");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["id"], "m1");
    assert_eq!(data[1]["id"], "m2");
    assert_eq!(data[0]["object"], "model");
    assert_eq!(data[0]["owned_by"], "mock");
    assert!(data[0]["created"].is_u64());
    assert_eq!(m.stats().models_requests, 1);
}

#[test]
fn chat_stream_is_byte_exact_one_event_per_chunk() {
    let m = mock(cfg());
    let r = post_json(m.addr(), "/v1/chat/completions", CHAT_STREAM);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    assert!(r.is_chunked());
    assert!(r.header("content-length").is_none());
    assert!(r.complete, "terminating chunk missing");
    let want = expected_chat_events(1, CHAT_STREAM.len() / 4);
    let chunks: Vec<String> = r
        .chunks
        .iter()
        .map(|c| String::from_utf8(c.clone()).unwrap())
        .collect();
    assert_eq!(chunks, want);
    assert_eq!(r.text(), want.concat());
    assert!(r.text().ends_with("data: [DONE]\n\n"));
    // Every event is valid JSON in the OpenAI chunk shape.
    for d in sse_data(&r.body).iter().filter(|d| *d != "[DONE]") {
        let v: serde_json::Value = serde_json::from_str(d).unwrap();
        assert_eq!(v["object"], "chat.completion.chunk");
    }
}

#[test]
fn text_completion_stream_shape() {
    let m = mock(cfg());
    let r = post_json(
        m.addr(),
        "/v1/completions",
        r#"{"model":"m2","prompt":"x","stream":true}"#,
    );
    assert_eq!(r.status, 200);
    let data = sse_data(&r.body);
    assert_eq!(data.len(), 5);
    let texts: Vec<String> = data[..3]
        .iter()
        .map(|d| {
            let v: serde_json::Value = serde_json::from_str(d).unwrap();
            assert_eq!(v["object"], "text_completion");
            assert_eq!(v["model"], "m2");
            v["choices"][0]["text"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(texts.concat(), "tok0 tok1 tok2 ");
    let last: serde_json::Value = serde_json::from_str(&data[3]).unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(data[4], "[DONE]");
}

#[test]
fn non_stream_completions_echo_model() {
    let m = mock(cfg());
    let r = post_json(
        m.addr(),
        "/v1/chat/completions",
        r#"{"model":"custom-model","messages":[]}"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "custom-model");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], "tok0 tok1 tok2 ");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["completion_tokens"], 3);

    let r = post_json(
        m.addr(),
        "/v1/completions",
        r#"{"prompt":"x","max_tokens":2}"#,
    );
    let v = r.json();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["model"], "m1", "default model is the first advertised");
    assert_eq!(v["choices"][0]["text"], "tok0 tok1 ");
}

#[test]
fn embeddings_shape() {
    let m = mock(cfg());
    let r = post_json(
        m.addr(),
        "/v1/embeddings",
        r#"{"model":"e","input":["a","b"]}"#,
    );
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "e");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["index"], 1);
    assert_eq!(data[0]["object"], "embedding");
    assert_eq!(data[0]["embedding"].as_array().unwrap().len(), 8);
    // Deterministic.
    let again = post_json(
        m.addr(),
        "/v1/embeddings",
        r#"{"model":"e","input":["a","b"]}"#,
    );
    assert_eq!(again.json()["data"], v["data"]);
}

#[test]
fn keep_alive_reuses_one_connection() {
    let m = mock(cfg());
    let mut c = Conn::connect(m.addr());
    for i in 0..3 {
        let r = c.request(post_raw("/v1/chat/completions", CHAT_STREAM, &[]).as_bytes());
        assert_eq!(r.status, 200);
        assert!(r.complete);
        assert_eq!(sse_data(&r.body).len(), 5, "stream {i}");
        let r = c.request(get_raw("/health").as_bytes());
        assert_eq!(r.status, 200);
        let r = c
            .request(post_chunked_raw("/v1/completions", &[r#"{"prompt""#, r#":"x"}"#]).as_bytes());
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["choices"][0]["text"], "tok0 tok1 tok2 ");
    }
    // Pipelined: two requests in one write, two answers in order.
    let mut two = get_raw("/health");
    two.push_str(&get_raw("/v1/models"));
    c.send(two.as_bytes());
    assert_eq!(c.read_response().json()["status"], "ok");
    assert_eq!(c.read_response().json()["object"], "list");
    let s = m.stats();
    assert_eq!(s.connections_accepted, 1);
    assert_eq!(s.connections_open, 1);
    assert_eq!(s.requests_total, 11);
    // Connection: close is honoured.
    let r = c.request(b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.wait_closed(Duration::from_secs(5)));
    assert!(wait_until(Duration::from_secs(5), || m
        .stats()
        .connections_open
        == 0));
}

#[test]
fn expect_continue_gets_interim_response() {
    let m = mock(cfg());
    let mut c = Conn::connect(m.addr());
    let body = r#"{"prompt":"x"}"#;
    c.send(
        format!(
            "POST /v1/completions HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    let interim = c.read_until(b"\r\n\r\n", Duration::from_secs(5));
    assert!(interim.starts_with(b"HTTP/1.1 100 Continue\r\n\r\n"));
    c.send(body.as_bytes());
    assert_eq!(c.read_response().status, 200);
}

#[test]
fn load_window() {
    let m = mock(MockConfig {
        load_ms: 300,
        ..cfg()
    });
    let r = get(m.addr(), "/health");
    assert_eq!(r.status, 503);
    assert_eq!(r.json(), serde_json::json!({"status": "loading"}));
    assert_eq!(
        get(m.addr(), "/v1/models").json()["data"],
        serde_json::json!([])
    );
    let r = post_json(m.addr(), "/v1/chat/completions", CHAT_STREAM);
    assert_eq!(r.status, 503);
    assert!(m.stats().loading);
    assert!(wait_until(Duration::from_secs(5), || get(
        m.addr(),
        "/health"
    )
    .status
        == 200));
    assert_eq!(
        get(m.addr(), "/v1/models").json()["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(!m.stats().loading);
}

#[test]
fn fail_after_cuts_the_stream() {
    let m = mock(MockConfig {
        fail_after: Some(2),
        ..cfg()
    });
    let mut c = Conn::connect(m.addr());
    let r = c.request(post_raw("/v1/chat/completions", CHAT_STREAM, &[]).as_bytes());
    assert_eq!(r.status, 200);
    assert!(!r.complete, "a cut stream must lack its terminating chunk");
    assert_eq!(r.chunks.len(), 2);
    assert!(!r.raw.ends_with(b"0\r\n\r\n"));
    assert!(c.wait_closed(Duration::from_secs(5)));
    assert!(wait_until(Duration::from_secs(5), || m
        .stats()
        .streams_failed_on_purpose
        == 1));
    // Non-stream answers are unaffected.
    let r = post_json(m.addr(), "/v1/completions", r#"{"prompt":"x"}"#);
    assert_eq!(r.status, 200);
}

#[test]
fn forced_status() {
    let m = mock(MockConfig {
        status: 500,
        ..cfg()
    });
    let r = post_json(m.addr(), "/v1/chat/completions", CHAT_STREAM);
    assert_eq!(r.status, 500);
    let v = r.json();
    assert_eq!(v["error"]["code"], 500);
    assert_eq!(v["error"]["type"], "server_error");
    assert_eq!(get(m.addr(), "/health").status, 200);
    let m = mock(MockConfig {
        status: 429,
        ..cfg()
    });
    let r = post_json(m.addr(), "/v1/completions", "{}");
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");
}

#[test]
fn pacing_respects_ttft_and_rate() {
    let m = mock(MockConfig {
        tokens: 5,
        ttft_ms: 100,
        tokens_per_sec: 50.0,
        ..cfg()
    });
    let t0 = Instant::now();
    let mut c = Conn::connect(m.addr());
    c.send(post_raw("/v1/chat/completions", CHAT_STREAM, &[]).as_bytes());
    let head = c.read_until(b"\r\n\r\n", Duration::from_secs(5));
    assert!(head.starts_with(b"HTTP/1.1 200"));
    let first = c.read_until(b"tok0", Duration::from_secs(5));
    let ttft = t0.elapsed();
    assert!(find_bytes(&[head, first].concat(), b"tok0"));
    assert!(ttft >= Duration::from_millis(100), "ttft {ttft:?}");
    let rest = c.read_until(b"[DONE]", Duration::from_secs(5));
    assert!(find_bytes(&rest, b"[DONE]"));
    let total = t0.elapsed();
    // 4 more tokens at 20 ms each after the first.
    assert!(total >= Duration::from_millis(180), "total {total:?}");
    assert!(total < Duration::from_secs(3), "total {total:?}");
}

fn find_bytes(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn stats_count_paths_order_and_inflight() {
    let m = mock(MockConfig {
        ttft_ms: 300,
        ..cfg()
    });
    let mut a = Conn::connect(m.addr());
    let mut b = Conn::connect(m.addr());
    a.send(
        post_raw(
            "/v1/chat/completions",
            CHAT_STREAM,
            &["X-Request-Id: first"],
        )
        .as_bytes(),
    );
    assert!(wait_until(Duration::from_secs(5), || m
        .stats()
        .completions_inflight
        == 1));
    let with_user = r#"{"model":"m1","stream":true,"user":"second"}"#;
    b.send(post_raw("/v1/chat/completions", with_user, &[]).as_bytes());
    assert!(wait_until(Duration::from_secs(5), || m
        .stats()
        .completions_inflight
        == 2));
    assert!(a.read_response().complete);
    assert!(b.read_response().complete);
    assert!(wait_until(Duration::from_secs(5), || m
        .stats()
        .completions_inflight
        == 0));
    get(m.addr(), "/v1/models");
    let s = m.stats();
    assert_eq!(s.completions_inflight_max, 2);
    assert_eq!(s.completions_total, 2);
    assert_eq!(s.completion_order, vec!["first", "second"]);
    assert_eq!(s.requests_by_path["/v1/chat/completions"], 2);
    assert_eq!(s.requests_by_path["/v1/models"], 1);
    assert_eq!(s.models_requests, 1);
    assert_eq!(s.connections_accepted, 3);
    // The same over HTTP.
    let v = get(m.addr(), "/mock/stats").json();
    assert_eq!(
        v["completion_order"],
        serde_json::json!(["first", "second"])
    );
    assert_eq!(v["completions_inflight_max"], 2);
    assert_eq!(v["requests_by_path"]["/mock/stats"], 1);
    assert!(v["connections_open"].as_u64().unwrap() >= 1);
}

#[test]
fn client_close_mid_stream_is_seen_promptly() {
    let m = mock(MockConfig {
        tokens: 10_000,
        tokens_per_sec: 20.0,
        ..cfg()
    });
    let mut c = Conn::connect(m.addr());
    c.send(post_raw("/v1/chat/completions", CHAT_STREAM, &[]).as_bytes());
    let got = c.read_until(b"tok1 ", Duration::from_secs(5));
    assert!(find_bytes(&got, b"tok1 "));
    assert_eq!(m.stats().completions_inflight, 1);
    c.close();
    let t0 = Instant::now();
    assert!(
        wait_until(Duration::from_millis(100), || m.stats().streams_cut_by_peer
            == 1),
        "close not seen within 100 ms"
    );
    eprintln!("mid-stream close seen after {:?}", t0.elapsed());
    let s = m.stats();
    assert_eq!(s.connections_closed_by_peer, 1);
    assert!(wait_until(Duration::from_secs(1), || m
        .stats()
        .completions_inflight
        == 0));
}

#[test]
fn client_close_before_first_token_is_seen_promptly() {
    let m = mock(MockConfig {
        ttft_ms: 10_000,
        ..cfg()
    });
    let mut c = Conn::connect(m.addr());
    c.send(post_raw("/v1/chat/completions", CHAT_STREAM, &[]).as_bytes());
    assert!(wait_until(Duration::from_secs(5), || m
        .stats()
        .completions_inflight
        == 1));
    c.close();
    assert!(
        wait_until(Duration::from_millis(100), || m.stats().streams_cut_by_peer
            == 1),
        "close during ttft not seen within 100 ms"
    );
}

#[test]
fn idle_close_counts_as_peer_close() {
    let m = mock(cfg());
    let mut c = Conn::connect(m.addr());
    assert_eq!(c.request(get_raw("/health").as_bytes()).status, 200);
    c.close();
    assert!(wait_until(Duration::from_secs(2), || {
        let s = m.stats();
        s.connections_closed_by_peer == 1 && s.connections_open == 0
    }));
}

#[test]
fn errors_and_unknown_paths() {
    let m = mock(cfg());
    let r = get(m.addr(), "/nope");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], 404);
    let r = http_request(m.addr(), b"GET /v1/chat/completions HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 405);
    let r = post_json(m.addr(), "/v1/chat/completions", "{not json");
    assert_eq!(r.status, 400);
    // Malformed framing gets slotgate's envelope and a closed connection.
    let mut c = Conn::connect(m.addr());
    let r = c.request(
        b"POST /v1/completions HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "request.bad_http");
    assert!(c.wait_closed(Duration::from_secs(5)));
}

#[test]
fn response_bytes_pads_non_stream_answers() {
    let m = mock(MockConfig {
        response_bytes: Some(64 * 1024),
        ..cfg()
    });
    let r = post_json(m.addr(), "/v1/chat/completions", r#"{"model":"m1"}"#);
    assert_eq!(r.status, 200);
    let n = r.body.len();
    assert!((60 * 1024..=68 * 1024).contains(&n), "body {n} bytes");
    let content = r.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(content.starts_with("tok0 tok1 tok2 tok3 "));
}

#[test]
fn stop_releases_the_port() {
    let m = mock(cfg());
    let addr = m.addr();
    let mut c = Conn::connect(addr);
    assert_eq!(c.request(get_raw("/health").as_bytes()).status, 200);
    m.stop();
    assert!(c.wait_closed(Duration::from_secs(5)));
    assert!(std::net::TcpStream::connect(addr).is_err());
}
