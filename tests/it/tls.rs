//! TLS end to end (docs/operations.md "TLS"): `https://` upstreams behind the workers and the
//! control client (probes, `/v1/models`, cold prefetch, credential injection, session resumption
//! on both clients), and the front door over TLS with a certificate reload. Certificates are
//! generated here with rcgen; the TLS mock upstream is the scripted raw upstream of
//! `support::gate` behind rustls' blocking server stream.

use crate::support;

use parking_lot::Mutex;
use rustls::HandshakeKind;
use serde_json::Value;
use slotgate::server::Server;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::gate::{
    driver_tuning, json_response, start_gate, upstream, Piece, Scripted, Seen, Wire, DRIVERS,
};
use support::pki::Pki;
use support::*;

/// The scripted upstream of `support::gate`, speaking TLS with `pki`'s server certificate.
fn tls_scripted(
    pki: &Pki,
    script: impl Fn(&Seen) -> Vec<Piece> + Send + Sync + 'static,
) -> Scripted {
    tls_scripted_observed(pki, script).0
}

/// How each TLS connection's handshake went (full or resumed), in the order they answered.
type Handshakes = Arc<Mutex<Vec<HandshakeKind>>>;

/// [`tls_scripted`], also recording every connection's handshake kind. The server config is
/// slotgate's front-door one, whose session settings are rustls' defaults: stateful TLS 1.3
/// resumption (an in-memory session store, two tickets per connection).
fn tls_scripted_observed(
    pki: &Pki,
    script: impl Fn(&Seen) -> Vec<Piece> + Send + Sync + 'static,
) -> (Scripted, Handshakes) {
    let cfg = slotgate::tls::server_config(&pki.path("cert.pem"), &pki.path("key.pem"))
        .expect("server config");
    let kinds = Handshakes::default();
    let k2 = kinds.clone();
    let up = Scripted::start_on(
        move |c| Observed {
            tls: rustls::StreamOwned::new(rustls::ServerConnection::new(cfg.clone()).unwrap(), c),
            kinds: k2.clone(),
            recorded: false,
        },
        script,
    );
    (up, kinds)
}

/// A TLS server stream that records its handshake kind on its first write: a response is only
/// written after a request was read, so the handshake is done, and the record is made before the
/// client can see the response.
struct Observed {
    tls: rustls::StreamOwned<rustls::ServerConnection, TcpStream>,
    kinds: Handshakes,
    recorded: bool,
}

impl Read for Observed {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.tls.read(buf)
    }
}

impl Write for Observed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !self.recorded {
            if let Some(kind) = self.tls.conn.handshake_kind() {
                self.kinds.lock().push(kind);
                self.recorded = true;
            }
        }
        self.tls.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.tls.flush()
    }
}

impl Wire for Observed {
    fn tcp(&self) -> &TcpStream {
        &self.tls.sock
    }
}

/// A scripted answer echoing the request body as the response body, then closing the connection
/// (`connection: close`), so every request needs a new TLS connection.
fn echo_and_close(seen: &Seen) -> Vec<Piece> {
    let mut r = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        seen.body.len()
    )
    .into_bytes();
    r.extend_from_slice(&seen.body);
    vec![Piece::Bytes(r), Piece::Close]
}

/// The first handshake is full and every later one resumed an earlier session.
fn assert_resumed_after_first(kinds: &Handshakes, n: usize) {
    let kinds = kinds.lock().clone();
    let mut want = vec![HandshakeKind::Resumed; n];
    want[0] = HandshakeKind::Full;
    assert_eq!(kinds, want, "one full handshake, then resumptions");
}

/// `https://localhost:port/v1` for a TLS upstream (a DNS name, so SNI is sent).
fn https_url(up: &Scripted) -> String {
    format!("https://localhost:{}/v1", up.addr.port())
}

fn ca_line(p: &Path) -> String {
    format!("ca_file = {:?}\n", p.display().to_string())
}

fn body_after_head(raw: &[u8]) -> &[u8] {
    let i = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    &raw[i + 4..]
}

fn sse_chunks(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let ev = format!("data: {{\"i\":{i},\"pad\":\"{}\"}}\n\n", "y".repeat(i * 5));
            format!("{:x}\r\n{ev}\r\n", ev.len()).into_bytes()
        })
        .chain([b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n".to_vec()])
        .collect()
}

/// JSON and SSE through an `https://` upstream arrive byte for byte; the TLS connection is pooled.
fn https_upstream_relay(driver: &str) {
    let pki = Pki::new("relay");
    let json = r#"{"id":"c1","object":"chat.completion","choices":[{"message":{"content":"hi"}}]}"#;
    let chunks = sse_chunks(5);
    let wire = chunks.concat();
    let script_chunks = chunks.clone();
    let up = tls_scripted(&pki, move |seen| {
        if String::from_utf8_lossy(&seen.body).contains("\"stream\":true") {
            let mut v = vec![Piece::Bytes(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n".to_vec(),
            )];
            for c in &script_chunks {
                v.push(Piece::Pause(Duration::from_millis(10)));
                v.push(Piece::Bytes(c.clone()));
            }
            v
        } else {
            vec![Piece::Bytes(json_response(json))]
        }
    });
    let cfg = upstream(
        "up",
        "remote",
        &https_url(&up),
        &format!("models = [\"m1\"]\n{}", ca_line(&pki.ca())),
    );
    let gate = start_gate(&cfg, &driver_tuning(driver));
    let mut c = Conn::connect(gate.addr);
    let r = c.request(post_raw("/v1/chat/completions", r#"{"model":"m1"}"#, &[]).as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, json.as_bytes());
    assert_eq!(r.header("x-upstream"), Some("scripted"));
    let r = c.request(
        post_raw(
            "/v1/chat/completions",
            r#"{"model":"m1","stream":true}"#,
            &[],
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.complete);
    assert_eq!(body_after_head(&r.raw), &wire[..], "SSE relayed verbatim");
    assert_eq!(sse_data(&r.body).last().map(String::as_str), Some("[DONE]"));
    let seen = up.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].header("host").as_deref(),
        Some(&*format!("localhost:{}", up.addr.port()))
    );
    assert_eq!(seen[0].body, br#"{"model":"m1"}"#);
    // A body large enough to go out apart from its head, sealed into many records.
    let fill: String = (0..150_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let big = format!(r#"{{"messages":[{{"content":"{fill}"}}],"model":"m1"}}"#);
    let r = c.request(post_raw("/v1/chat/completions", &big, &[]).as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        up.seen()[2].body == big.as_bytes(),
        "large body over TLS differs"
    );
    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        1,
        "the TLS connection was pooled and reused"
    );
}

#[test]
fn https_upstream_relay_io_uring() {
    https_upstream_relay(DRIVERS[0]);
}

#[test]
fn https_upstream_relay_epoll() {
    https_upstream_relay(DRIVERS[1]);
}

/// Number of requests (so TLS connections) in the resumption tests.
const RESUMES: usize = 4;

/// docs/operations.md "TLS": a worker keeps one rustls client config per `https://` upstream, so its new
/// connections resume the sessions of earlier ones. The upstream closes after each response, so
/// each request is a new connection (one worker: `cores = 1`).
fn https_upstream_sessions_resume(driver: &str) {
    let pki = Pki::new("resume");
    let (up, kinds) = tls_scripted_observed(&pki, echo_and_close);
    let cfg = upstream(
        "up",
        "remote",
        &https_url(&up),
        &format!("models = [\"m1\"]\n{}", ca_line(&pki.ca())),
    );
    let gate = start_gate(&cfg, &driver_tuning(driver));
    for i in 0..RESUMES {
        let body = format!(r#"{{"model":"m1","n":{i}}}"#);
        let r = post_json(gate.addr, "/v1/chat/completions", &body);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.body, body.as_bytes(), "request {i}");
    }
    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        RESUMES,
        "a connection per request"
    );
    assert_resumed_after_first(&kinds, RESUMES);
}

#[test]
fn https_upstream_sessions_resume_io_uring() {
    https_upstream_sessions_resume(DRIVERS[0]);
}

#[test]
fn https_upstream_sessions_resume_epoll() {
    https_upstream_sessions_resume(DRIVERS[1]);
}

/// The control plane's client (probes, `/v1/models`, the wake POST) shares one rustls client
/// config per CA file, so its new connections resume too.
#[test]
fn control_client_sessions_resume() {
    use slotgate::control::client;
    let pki = Pki::new("control-resume");
    let (up, kinds) = tls_scripted_observed(&pki, echo_and_close);
    let url =
        slotgate::config::UpstreamUrl::parse(&format!("https://localhost:{}/wake", up.addr.port()))
            .unwrap();
    for i in 0..RESUMES {
        let body = format!(r#"{{"n":{i}}}"#);
        let r = client::post_json(&url, Some(&pki.ca()), body.as_bytes(), IO_TIMEOUT).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, body.as_bytes()));
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), RESUMES);
    assert_resumed_after_first(&kinds, RESUMES);
}

/// A server certificate from a CA the upstream does not trust: 502 with rustls' reason.
#[test]
fn wrong_ca_is_502_with_tls_reason() {
    let pki = Pki::new("server");
    let other = Pki::new("other");
    let up = tls_scripted(&pki, |_| vec![Piece::Bytes(json_response("{}"))]);
    let cfg = upstream(
        "up",
        "remote",
        &https_url(&up),
        &format!("models = [\"m1\"]\n{}", ca_line(&other.ca())),
    );
    let gate = start_gate(&cfg, &driver_tuning("auto"));
    let r = post_json(gate.addr, "/v1/chat/completions", r#"{"model":"m1"}"#);
    assert_eq!(r.status, 502, "{}", r.text());
    let v: Value = r.json();
    assert_eq!(v["error"]["code"], "dispatch.upstream_unavailable");
    let reason = v["error"]["details"]["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("invalid peer certificate") && reason.contains("UnknownIssuer"),
        "reason: {reason}"
    );
    assert!(
        up.seen().is_empty(),
        "no request crossed an unverified connection"
    );
}

/// `insecure_skip_verify = true` accepts the untrusted certificate.
#[test]
fn insecure_skip_verify_accepts_any_certificate() {
    let pki = Pki::new("insecure");
    let up = tls_scripted(&pki, |_| vec![Piece::Bytes(json_response("{\"ok\":1}"))]);
    let cfg = upstream(
        "up",
        "remote",
        &format!("https://127.0.0.1:{}/v1", up.addr.port()),
        "models = [\"m1\"]\ninsecure_skip_verify = true\n",
    );
    let gate = start_gate(&cfg, &driver_tuning("auto"));
    let r = post_json(gate.addr, "/v1/chat/completions", r#"{"model":"m1"}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, b"{\"ok\":1}");
}

fn models_body(ids: &[&str]) -> String {
    let data: Vec<String> = ids
        .iter()
        .map(|m| format!("{{\"id\":\"{m}\",\"object\":\"model\"}}"))
        .collect();
    format!("{{\"object\":\"list\",\"data\":[{}]}}", data.join(","))
}

/// Step 3 fetches an `https://` remote's model list (with its bearer credential) and routes there.
#[test]
fn cold_prefetch_over_https_with_credential() {
    let pki = Pki::new("prefetch");
    // The list is empty at start-up, so the cache stays cold until a request needs it.
    let lists = Arc::new(AtomicUsize::new(0));
    let lists2 = lists.clone();
    let up = tls_scripted(&pki, move |seen| {
        if seen.request_line().starts_with("GET /v1/models") {
            let ids: &[&str] = if lists2.fetch_add(1, Ordering::SeqCst) == 0 {
                &[]
            } else {
                &["tls-model"]
            };
            vec![Piece::Bytes(json_response(&models_body(ids)))]
        } else {
            vec![Piece::Bytes(json_response("{\"routed\":true}"))]
        }
    });
    std::env::set_var("SLOTGATE_TLS_TEST_KEY", "sekrit");
    let cfg = upstream(
        "far",
        "remote",
        &https_url(&up),
        &format!(
            "models_refresh_ms = 600000\nauth = {{ style = \"bearer\", env = \"SLOTGATE_TLS_TEST_KEY\" }}\n{}",
            ca_line(&pki.ca())
        ),
    );
    let gate = start_gate(&cfg, &driver_tuning("auto"));
    // The start-up fetch (empty list) must be recorded before the request, or the request's
    // prefetch would join that flight and see its empty answer (the admin API shows live state).
    let admin = gate.admin_addr.unwrap();
    assert!(wait_until(Duration::from_secs(5), || {
        let v = get(admin, "/admin/upstreams").json();
        v["upstreams"][0]["models"]["age_ms"].is_number()
    }));
    let r = post_json(
        gate.addr,
        "/v1/chat/completions",
        r#"{"model":"tls-model"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-slotgate-route"), Some("prefetched:far"));
    assert_eq!(r.body, b"{\"routed\":true}");
    let seen = up.seen();
    let fetch = seen
        .iter()
        .find(|s| s.request_line().starts_with("GET /v1/models"))
        .expect("models fetched over TLS");
    assert_eq!(
        fetch.header("authorization").as_deref(),
        Some("Bearer sekrit")
    );
    let fwd = seen
        .iter()
        .find(|s| s.request_line().starts_with("POST"))
        .unwrap();
    assert_eq!(
        fwd.header("authorization").as_deref(),
        Some("Bearer sekrit")
    );
}

/// A `container` upstream on https: probes and `/v1/models` refreshes run over TLS, so it becomes
/// ready and is preempted to (step 0).
#[test]
fn container_probed_over_https() {
    let pki = Pki::new("probe");
    let up = tls_scripted(&pki, |seen| {
        let line = seen.request_line();
        if line.starts_with("GET /health") {
            vec![Piece::Bytes(json_response("{\"status\":\"ok\"}"))]
        } else if line.starts_with("GET /v1/models") {
            vec![Piece::Bytes(json_response(&models_body(&["boxed"])))]
        } else {
            vec![Piece::Bytes(json_response("{\"from\":\"container\"}"))]
        }
    });
    let cfg = upstream(
        "box",
        "container",
        &https_url(&up),
        &format!(
            "probe_interval_ms = 100\nprobe_backoff_ms = [100]\nmodels_refresh_ms = 200\n{}",
            ca_line(&pki.ca())
        ),
    );
    let gate = start_gate(&cfg, &driver_tuning("auto"));
    let ok = wait_until(Duration::from_secs(10), || {
        let s = gate.control.snapshot();
        s.by_name("box")
            .is_some_and(|u| u.state().is_ready() && u.live.models.ids.iter().any(|m| m == "boxed"))
    });
    assert!(ok, "https container never became ready");
    let r = post_json(gate.addr, "/v1/chat/completions", r#"{"model":"boxed"}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-slotgate-route"), Some("container:box"));
}

// ---- Broken TLS files are config errors ----

/// The real binary on `args`, stdout and stderr together; fails the test if it runs past 10 s.
fn run_binary(args: &[&str], config: &Path) -> (bool, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_slotgate"))
        .args(args)
        .arg(config)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut status = None;
    let exited = wait_until(Duration::from_secs(10), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    if !exited {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    assert!(exited, "slotgate {args:?} did not exit");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (status.is_some_and(|s| s.success()), all)
}

/// `slotgate check` and `slotgate serve` refuse a config whose upstream CA bundle or front-door
/// key is broken, naming every such key and the reason, instead of a 502 at the first request.
#[test]
fn check_and_serve_refuse_broken_tls_files() {
    let pki = Pki::new("check");
    std::fs::write(pki.path("not-pem.txt"), "not a certificate\n").unwrap();
    let config = |key: &str, bad_ca: &str| {
        format!(
            "[listen]\naddr = \"127.0.0.1:0\"\nadmin = \"\"\ntls_cert = {:?}\ntls_key = {:?}\n\n{}{}",
            pki.path("cert.pem").display().to_string(),
            pki.path(key).display().to_string(),
            upstream("good", "remote", "https://localhost:1/v1", &ca_line(&pki.ca())),
            upstream("bad", "remote", "https://localhost:1/v1", &ca_line(&pki.path(bad_ca))),
        )
    };
    let file = pki.path("slotgate.toml");
    std::fs::write(&file, config("absent-key.pem", "not-pem.txt")).unwrap();
    for cmd in ["check", "serve"] {
        let (ok, out) = run_binary(&[cmd, "--config"], &file);
        assert!(!ok, "{cmd} accepted broken TLS files: {out}");
        assert!(
            out.contains("upstream[1].ca_file: ")
                && out.contains("not-pem.txt: no PEM certificate"),
            "{cmd}: {out}"
        );
        assert!(
            out.contains("listen.tls_key: ") && out.contains("absent-key.pem: I/O error"),
            "{cmd}: {out}"
        );
        assert!(!out.contains("upstream[0]"), "{cmd}: {out}");
    }
    // A PEM certificate block that holds no certificate.
    std::fs::write(
        pki.path("garbage.pem"),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    std::fs::write(&file, config("key.pem", "garbage.pem")).unwrap();
    let (ok, out) = run_binary(&["check", "--config"], &file);
    assert!(!ok, "{out}");
    assert!(
        out.contains("upstream[1].ca_file: ") && out.contains("no usable CA certificate"),
        "{out}"
    );
    // Fixed: the same file passes.
    std::fs::write(&file, config("key.pem", "ca.pem")).unwrap();
    let (ok, out) = run_binary(&["check", "--config"], &file);
    assert!(ok, "{out}");
    assert!(out.contains("config OK"), "{out}");
}

/// A reload whose CA bundle is broken (a path to nothing, or the file itself replaced by junk)
/// answers 400 with the problem by key; the running snapshot stays and the https upstream keeps
/// serving.
#[test]
fn reload_with_broken_ca_file_is_refused() {
    let pki = Pki::new("reload-ca");
    let up = tls_scripted(&pki, |_| vec![Piece::Bytes(json_response("{\"ok\":1}"))]);
    let config = |ca: &Path| {
        format!(
            "[listen]\naddr = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\n{}\n[tuning]\ncores = 1\n",
            upstream(
                "up",
                "remote",
                &https_url(&up),
                &format!("models = [\"m1\"]\n{}", ca_line(ca))
            )
        )
    };
    let file = pki.path("slotgate.toml");
    std::fs::write(&file, config(&pki.ca())).unwrap();
    let gate = Server::start(slotgate::config::Config::load(&file, None).unwrap()).unwrap();
    let admin = gate.admin_addr.unwrap();
    let chat = || post_json(gate.addr, "/v1/chat/completions", r#"{"model":"m1"}"#);
    let r = chat();
    assert_eq!(r.status, 200, "{}", r.text());
    let epoch = gate.control.cell().epoch();

    let refused = |reason: &str| {
        let r = post_json(admin, "/admin/reload", "");
        support::gate::assert_error(&r, 400, "request.invalid");
        let problems = r.json()["error"]["details"]["problems"].clone();
        assert_eq!(problems.as_array().map(Vec::len), Some(1), "{problems}");
        assert_eq!(problems[0]["key"], "upstream[0].ca_file", "{problems}");
        let message = problems[0]["message"].as_str().unwrap();
        assert!(message.contains(reason), "{message}");
    };
    std::fs::write(&file, config(&pki.path("absent.pem"))).unwrap();
    refused("absent.pem: I/O error");
    // The config is good again but the CA file it names is junk now.
    std::fs::write(&file, config(&pki.ca())).unwrap();
    std::fs::write(pki.ca(), "not a certificate\n").unwrap();
    refused("no PEM certificate");

    assert_eq!(
        gate.control.cell().epoch(),
        epoch,
        "the running snapshot stays"
    );
    assert_eq!(gate.control.reload_counts(), (0, 2));
    let r = chat();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, b"{\"ok\":1}");
}

// ---- The wake hook over https ----

/// A wake hook over TLS with `pki`'s certificate, answering 202 to every POST.
fn wake_hook(pki: &Pki) -> Scripted {
    tls_scripted(pki, |_| {
        vec![Piece::Bytes(
            b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n".to_vec(),
        )]
    })
}

/// The wake hook POSTs to an `https://` `wake_url` it verifies with `wake_ca_file`.
#[test]
fn wake_hook_over_https() {
    let pki = Pki::new("wake");
    let hook = wake_hook(&pki);
    // A port nothing listens on: the container is offline.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cfg = format!(
        "[routing]\ndefault_slot = \"chat\"\n{}",
        upstream(
            "chat",
            "container",
            &format!("http://{dead}/v1"),
            &format!(
                "probe_interval_ms = 50\nprobe_backoff_ms = [50]\nmodels = [\"m1\"]\n\
                 wake_url = \"https://localhost:{}/wake\"\nwake_ca_file = {:?}\n",
                hook.addr.port(),
                pki.ca().display().to_string()
            )
        )
    );
    let gate = start_gate(&cfg, &driver_tuning("auto"));
    assert!(wait_until(Duration::from_secs(5), || {
        gate.control
            .snapshot()
            .by_name("chat")
            .is_some_and(|u| u.state() == slotgate::routing::SlotState::Offline)
    }));
    let r = post_json(gate.addr, "/v1/chat/completions", r#"{"model":"m1"}"#);
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        wait_until(Duration::from_secs(5), || !hook.seen().is_empty()),
        "the wake POST never arrived"
    );
    let seen = hook.seen();
    assert_eq!(seen[0].request_line(), "POST /wake HTTP/1.1");
    assert_eq!(
        seen[0].header("host").as_deref(),
        Some(&*format!("localhost:{}", hook.addr.port()))
    );
    let v: Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(v["slot"], "chat");
    assert_eq!(v["model"], "m1");
    assert_eq!(v["reason"], "request");
}

/// The wake client trusts the bundled web roots plus `wake_ca_file` only: a private CA's
/// certificate fails verification without it and passes with it.
#[test]
fn wake_client_trusts_web_roots_plus_wake_ca_file() {
    use slotgate::control::client;
    let pki = Pki::new("wake-trust");
    let hook = wake_hook(&pki);
    let url = slotgate::config::UpstreamUrl::parse(&format!(
        "https://localhost:{}/wake",
        hook.addr.port()
    ))
    .unwrap();
    let e = client::post_json(&url, None, b"{}", IO_TIMEOUT).unwrap_err();
    let e = e.to_string();
    assert!(e.contains("UnknownIssuer"), "{e}");
    assert!(
        hook.seen().is_empty(),
        "nothing crossed an unverified connection"
    );
    let r = client::post_json(&url, Some(&pki.ca()), b"{\"a\":1}", IO_TIMEOUT).unwrap();
    assert_eq!(r.status, 202);
    let seen = hook.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, br#"{"a":1}"#);
}

// ---- The front door over TLS ----

/// Starts slotgate from a config file (so `/admin/reload` can re-read it) whose front door speaks
/// TLS with `pki`'s `cert.pem`/`key.pem`.
fn start_tls_gate(pki: &Pki, upstreams: &str, driver: &str) -> Server {
    let text = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\ntls_cert = {:?}\ntls_key = {:?}\n\n{upstreams}\n\n[tuning]\ncores = 1\n{}\n",
        pki.path("cert.pem").display().to_string(),
        pki.path("key.pem").display().to_string(),
        driver_tuning(driver)
    );
    let path = pki.path("slotgate.toml");
    std::fs::write(&path, text).unwrap();
    let cfg = slotgate::config::Config::load(&path, None).expect("config");
    Server::start(cfg).expect("start slotgate")
}

/// A mock serving model `m1` (the rest of `mock` as given) behind a TLS front door.
fn mock_behind_tls_gate(
    pki: &Pki,
    mock: slotgate::mock::MockConfig,
    driver: &str,
) -> (slotgate::mock::MockHandle, Server) {
    let m = slotgate::mock::spawn(slotgate::mock::MockConfig {
        models: vec!["m1".into()],
        ..mock
    })
    .expect("mock");
    let cfg = upstream("up", "remote", &m.base_url(), "models = [\"m1\"]\n");
    let gate = start_tls_gate(pki, &cfg, driver);
    (m, gate)
}

/// A TLS client connection to the front door that trusts only `ca`.
fn tls_connect(
    addr: SocketAddr,
    ca: &Path,
) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = std::net::TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(IO_TIMEOUT))?;
    let conn = rustls::ClientConnection::new(Arc::new(cfg), "localhost".try_into().unwrap())
        .map_err(std::io::Error::other)?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    // Drive the handshake now so a bad certificate fails here.
    s.flush()?;
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

use rustls::pki_types::pem::PemObject;

fn has(got: &[u8], needle: &[u8]) -> bool {
    got.windows(needle.len()).any(|w| w == needle)
}

/// curl through the TLS front door: JSON and a streamed completion, verified with `--cacert`.
fn front_door_curl(driver: &str) {
    let pki = Pki::new("front");
    let (_mock, gate) = mock_behind_tls_gate(
        &pki,
        slotgate::mock::MockConfig {
            tokens: 5,
            ..Default::default()
        },
        driver,
    );
    let url = format!("https://localhost:{}/v1/chat/completions", gate.addr.port());
    let curl = |body: &str| {
        let out = std::process::Command::new("curl")
            .args(["-sS", "-N", "--max-time", "10", "--cacert"])
            .arg(pki.ca())
            .args(["-H", "content-type: application/json", "-d", body, "-i"])
            .arg(&url)
            .output()
            .expect("curl runs");
        assert!(
            out.status.success(),
            "curl failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let r = curl(r#"{"model":"m1","messages":[{"role":"user","content":"hi"}]}"#);
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("chat.completion"), "{r}");
    let r = curl(r#"{"model":"m1","stream":true,"messages":[{"role":"user","content":"hi"}]}"#);
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("data: [DONE]"), "{r}");
    // Errors keep their envelope over TLS.
    let r = curl(r#"{"model":"#);
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    assert!(r.contains("request.invalid_json"), "{r}");
    // The server's cipher order decides: AES-128-GCM, though curl (OpenSSL) lists AES-256 first.
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "-v",
            "-o",
            "/dev/null",
            "--max-time",
            "10",
            "--cacert",
        ])
        .arg(pki.ca())
        .arg(format!("https://localhost:{}/v1/models", gate.addr.port()))
        .output()
        .expect("curl runs");
    let trace = String::from_utf8_lossy(&out.stderr);
    assert!(
        trace.contains("TLS_AES_128_GCM_SHA256"),
        "negotiated suite: {trace}"
    );
    // A client that does not trust the CA is refused at the handshake.
    let other = Pki::new("stranger");
    assert!(tls_connect(gate.addr, &other.ca()).is_err());
}

#[test]
fn front_door_curl_io_uring() {
    front_door_curl(DRIVERS[0]);
}

#[test]
fn front_door_curl_epoll() {
    front_door_curl(DRIVERS[1]);
}

/// A reload with new certificate files while a TLS stream is in flight: the stream completes on
/// its old session; new handshakes present the new certificate.
#[test]
fn front_door_certificate_reload_mid_stream() {
    let pki = Pki::new("reload");
    let up = Scripted::start(|_| {
        let mut v = vec![Piece::Bytes(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n".to_vec(),
        )];
        for i in 0..8 {
            v.push(Piece::Pause(Duration::from_millis(60)));
            v.push(Piece::Bytes(format!("9\r\ndata: {i}\n\n\r\n").into_bytes()));
        }
        v.push(Piece::Bytes(b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n".to_vec()));
        v
    });
    let cfg = upstream("up", "remote", &up.url(), "models = [\"m1\"]\n");
    let gate = start_tls_gate(&pki, &cfg, "auto");
    let old_ca = pki.path("old-ca.pem");
    std::fs::copy(pki.ca(), &old_ca).unwrap();

    let mut s = tls_connect(gate.addr, &old_ca).expect("handshake with the first certificate");
    let body = r#"{"model":"m1","stream":true}"#;
    s.write_all(chat_request(body, true).as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !has(&got, b"data: 1") {
        let n = s.read(&mut buf).expect("stream bytes");
        assert!(n > 0, "stream ended early");
        got.extend_from_slice(&buf[..n]);
    }

    // New CA and certificate under the same file names, then a reload through the admin API.
    pki.issue("ca.pem", "cert.pem", "key.pem", "slotgate test CA reissued");
    let r = post_json(gate.admin_addr.unwrap(), "/admin/reload", "");
    assert_eq!(r.status, 200, "{}", r.text());

    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => panic!("stream failed: {e}"),
        }
    }
    assert!(has(&got, b"data: 7"), "{}", String::from_utf8_lossy(&got));
    assert!(
        got.ends_with(b"0\r\n\r\n"),
        "the stream completed on its old session"
    );

    assert!(
        tls_connect(gate.addr, &pki.ca()).is_ok(),
        "a new handshake presents the new certificate"
    );
    assert!(
        tls_connect(gate.addr, &old_ca).is_err(),
        "the old certificate is no longer served"
    );

    // A broken certificate file is refused and the running one stays.
    std::fs::write(pki.path("cert.pem"), "not a certificate").unwrap();
    let r = post_json(gate.admin_addr.unwrap(), "/admin/reload", "");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(tls_connect(gate.addr, &pki.ca()).is_ok());
}

/// A TLS client leaving mid-stream closes the upstream connection at once (the watcher polls the
/// raw socket under TLS too).
#[test]
fn front_door_tls_client_gone_closes_upstream() {
    let pki = Pki::new("gone");
    let (m, gate) = mock_behind_tls_gate(
        &pki,
        slotgate::mock::MockConfig {
            tokens: 2000,
            tokens_per_sec: 50.0,
            ..Default::default()
        },
        "auto",
    );
    let mut s = tls_connect(gate.addr, &pki.ca()).unwrap();
    let body = r#"{"model":"m1","stream":true}"#;
    s.write_all(chat_request(body, false).as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !has(&got, b"tok1 ") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    let before = m.stats().streams_cut_by_peer;
    let t0 = Instant::now();
    // A polite TLS client: close_notify, then FIN.
    s.conn.send_close_notify();
    let _ = s.flush();
    drop(s);
    assert!(
        wait_until(Duration::from_secs(2), || m.stats().streams_cut_by_peer
            > before),
        "the mock never saw the upstream connection close"
    );
    assert!(
        t0.elapsed() < Duration::from_millis(300),
        "{:?}",
        t0.elapsed()
    );
}

/// A raw `POST /v1/chat/completions` with a JSON `body` (and `Connection: close` when `close`).
fn chat_request(body: &str, close: bool) -> String {
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{}Content-Length: {}\r\n\r\n{body}",
        if close { "Connection: close\r\n" } else { "" },
        body.len()
    )
}

/// Reads one response with a `content-length` body from a TLS client stream.
fn read_tls_response(
    s: &mut rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>,
    got: &mut Vec<u8>,
) -> Vec<u8> {
    use std::io::Read;
    let mut buf = [0u8; 8192];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .expect("content-length");
            if got.len() >= end + 4 + len {
                let rest = got.split_off(end + 4 + len);
                return std::mem::replace(got, rest);
            }
        }
        let n = s.read(&mut buf).expect("response bytes");
        assert!(n > 0, "connection closed mid-response");
        got.extend_from_slice(&buf[..n]);
    }
}

/// Above 256 connections a worker's idle keep-alive connections give their buffers back, TLS
/// ones included (docs/operations.md "Descriptors and memory"): every connection still answers its next request, and
/// pipelined requests that arrived together (bytes rustls holds) are not stranded.
#[test]
fn front_door_many_idle_tls_connections_keep_working() {
    let pki = Pki::new("idle");
    let (_mock, gate) = mock_behind_tls_gate(
        &pki,
        slotgate::mock::MockConfig {
            tokens: 3,
            ..Default::default()
        },
        "auto",
    );
    let body = r#"{"model":"m1"}"#;
    let req = chat_request(body, false);
    let mut conns: Vec<_> = (0..300)
        .map(|_| (tls_connect(gate.addr, &pki.ca()).unwrap(), Vec::new()))
        .collect();
    for round in 0..2 {
        for (i, (s, got)) in conns.iter_mut().enumerate() {
            s.write_all(req.as_bytes()).unwrap();
            let r = read_tls_response(s, got);
            assert!(
                r.starts_with(b"HTTP/1.1 200"),
                "round {round}, connection {i}: {}",
                String::from_utf8_lossy(&r)
            );
        }
    }
    // Two requests in one TLS write on an idle connection, with 300 open.
    let (s, got) = &mut conns[7];
    s.write_all(format!("{req}{req}").as_bytes()).unwrap();
    for _ in 0..2 {
        let r = read_tls_response(s, got);
        assert!(
            r.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&r)
        );
    }
}

/// Relative TLS file paths in a config file resolve against the file's directory (as `keys_file`
/// and a `tuning` include do), whatever the working directory.
#[test]
fn relative_tls_paths_resolve_against_the_config_file() {
    let pki = Pki::new("relative");
    let up = tls_scripted(&pki, |_| vec![Piece::Bytes(json_response("{\"ok\":1}"))]);
    let text = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n\n{}\n[tuning]\ncores = 1\n",
        upstream(
            "up",
            "remote",
            &https_url(&up),
            "models = [\"m1\"]\nca_file = \"ca.pem\"\n"
        )
    );
    let file = pki.path("slotgate.toml");
    std::fs::write(&file, text).unwrap();
    assert_ne!(
        std::env::current_dir().unwrap(),
        pki.dir,
        "run from elsewhere"
    );
    let cfg = slotgate::config::Config::load(&file, None).expect("relative paths load");
    assert_eq!(cfg.listen.tls_cert.as_deref(), Some(&*pki.path("cert.pem")));
    assert_eq!(
        cfg.upstreams[0].ca_file.as_deref(),
        Some(&*pki.path("ca.pem"))
    );
    let gate = Server::start(cfg).unwrap();
    let mut s = tls_connect(gate.addr, &pki.ca()).expect("front door serves cert.pem");
    let body = r#"{"model":"m1"}"#;
    std::io::Write::write_all(&mut s, chat_request(body, false).as_bytes()).unwrap();
    let r = read_tls_response(&mut s, &mut Vec::new());
    assert!(
        r.starts_with(b"HTTP/1.1 200") && r.ends_with(b"{\"ok\":1}"),
        "the upstream was verified with ca.pem: {}",
        String::from_utf8_lossy(&r)
    );
}
