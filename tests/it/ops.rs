//! Operations (DESIGN.md §6, docs/operations.md): `GET /metrics` checked with the real Prometheus parser,
//! the decision log, graceful stop of the real binary under a live stream, and systemd
//! notifications. Real sockets on 127.0.0.1; every wait is a condition with a deadline.

use crate::support;

use parking_lot::Mutex;
use serde_json::Value;
use slotgate::mock::{self, MockConfig, MockHandle};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::gate::{remote, start_gate};
use support::*;

fn mock_of(model: &str, tokens: usize, tokens_per_sec: f64) -> MockHandle {
    mock::spawn(MockConfig {
        models: vec![model.into()],
        tokens,
        tokens_per_sec,
        ..MockConfig::default()
    })
    .expect("spawn mock")
}

/// Every sample of a Prometheus text exposition as parsed by `prometheus_client` (Python):
/// `(sample name, labels, value)`, plus each family's type by family name.
struct Parsed {
    samples: Vec<(String, HashMap<String, String>, f64)>,
    types: HashMap<String, String>,
}

impl Parsed {
    fn of(text: &str) -> Parsed {
        const SCRIPT: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {"samples": [], "types": {}}
for fam in text_string_to_metric_families(sys.stdin.read()):
    out["types"][fam.name] = fam.type
    for s in fam.samples:
        out["samples"].append([s.name, s.labels, s.value])
print(json.dumps(out))
"#;
        let mut child = Command::new(support::python())
            .args(["-c", SCRIPT])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 (with prometheus_client: .ci/run installs it)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "the Prometheus parser refused /metrics: {}\n---\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let samples = v["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let labels = s[1]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect();
                (
                    s[0].as_str().unwrap().to_string(),
                    labels,
                    s[2].as_f64().unwrap(),
                )
            })
            .collect();
        let types = v["types"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        Parsed { samples, types }
    }

    /// The value of the sample `name` whose labels include `want` (0 when absent).
    fn value(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        let hits: Vec<f64> = self
            .samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && want
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| *v)
            .collect();
        hits.iter().sum()
    }

    fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|(n, _, _)| n == name)
    }
}

fn scrape(admin: SocketAddr) -> Parsed {
    let r = get(admin, "/metrics");
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .is_some_and(|v| v.starts_with("text/plain")));
    Parsed::of(&r.text())
}

const CHAT: &str = r#"{"model":"m1","messages":[{"role":"user","content":"hi"}]}"#;
const CHAT_STREAM: &str =
    r#"{"model":"m1","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

#[test]
fn metrics_count_the_traffic_sent() {
    let m = mock_of("m1", 3, 200.0);
    let gate = start_gate(&remote("up", &m.base_url(), &["m1"], ""), "");
    let admin = gate.admin_addr.unwrap();

    let mut conn = Conn::connect(gate.addr);
    for _ in 0..7 {
        let r = conn.request(post_raw("/v1/chat/completions", CHAT, &[]).as_bytes());
        assert_eq!(r.status, 200);
    }
    for i in 0..3 {
        let body = format!(r#"{{"model":"nobody-serves-{i}"}}"#);
        let r = conn.request(post_raw("/v1/chat/completions", &body, &[]).as_bytes());
        assert_eq!(r.status, 404);
        assert_eq!(r.json()["error"]["code"], "dispatch.no_route");
    }
    let mut events = 0;
    for _ in 0..2 {
        let r = conn.request(post_raw("/v1/chat/completions", CHAT_STREAM, &[]).as_bytes());
        assert_eq!(r.status, 200);
        assert!(r.complete);
        events += sse_data(&r.body).len();
    }
    assert_eq!(events, 10, "3 tokens, the finish event and [DONE], twice");

    // A request is handed to the metrics just after its last byte is written: wait for all 12.
    let mut p = scrape(admin);
    assert!(
        wait_until(Duration::from_secs(5), || {
            p = scrape(admin);
            p.value("slotgate_request_duration_seconds_count", &[]) == 12.0
        }),
        "the duration count never reached 12"
    );
    let req = |u: &str, route: &str, status: &str| {
        p.value(
            "slotgate_requests_total",
            &[("upstream", u), ("route", route), ("status", status)],
        )
    };
    assert_eq!(p.types["slotgate_requests"], "counter");
    assert_eq!(req("up", "passthrough", "200"), 9.0);
    assert_eq!(req("", "none", "404"), 3.0);
    assert_eq!(p.value("slotgate_requests_total", &[]), 12.0);
    assert_eq!(
        p.value("slotgate_errors_total", &[("code", "dispatch.no_route")]),
        3.0
    );
    assert_eq!(
        p.value("slotgate_sse_events_total", &[("upstream", "up")]),
        events as f64
    );
    assert_eq!(p.value("slotgate_client_aborts_total", &[]), 0.0);
    assert_eq!(p.value("slotgate_responses_cut_total", &[]), 0.0);
    assert!(p.value("slotgate_response_bytes_total", &[("upstream", "up")]) > 0.0);

    // Histograms: one observation per request, cumulative buckets ending at the count.
    assert_eq!(p.types["slotgate_request_duration_seconds"], "histogram");
    let dur = |s: &str| p.value(s, &[("upstream", "up")]);
    assert_eq!(dur("slotgate_request_duration_seconds_count"), 9.0);
    assert_eq!(dur("slotgate_ttfb_seconds_count"), 9.0);
    assert_eq!(
        p.value(
            "slotgate_request_duration_seconds_bucket",
            &[("upstream", "up"), ("le", "+Inf")]
        ),
        9.0
    );
    assert!(dur("slotgate_request_duration_seconds_sum") > 0.0);
    assert_eq!(p.value("slotgate_overhead_seconds_count", &[]), 9.0);
    // Routing time is recorded for requests that got a decision.
    assert_eq!(p.value("slotgate_routing_seconds_count", &[]), 9.0);
    // 2 streams x 5 events: one gap between consecutive event-bearing reads at most 4 each.
    let gaps = dur("slotgate_sse_gap_seconds_count");
    assert!((1.0..=8.0).contains(&gaps), "sse gaps {gaps}");
    assert!(p.has("slotgate_ttfb_quantile_seconds"));
    assert_eq!(p.types["slotgate_ttfb_quantile_seconds"], "gauge");
    let mut buckets: Vec<(f64, f64)> = p
        .samples
        .iter()
        .filter(|(n, l, _)| n == "slotgate_routing_seconds_bucket" && l["le"] != "+Inf")
        .map(|(_, l, v)| (l["le"].parse().unwrap(), *v))
        .collect();
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "cumulative");

    // Gauges.
    let driver = p
        .samples
        .iter()
        .find(|(n, _, _)| n == "slotgate_info")
        .map(|(_, l, _)| l["driver"].clone())
        .unwrap();
    assert_eq!(driver, gate.driver.as_str());
    assert_eq!(p.value("slotgate_active_connections", &[]), 1.0);
    assert_eq!(p.value("slotgate_queue_depth", &[("upstream", "up")]), 0.0);
    assert_eq!(p.value("slotgate_draining", &[]), 0.0);
    assert_eq!(p.value("slotgate_reloads_total", &[]), 0.0);
    assert!(p.value("slotgate_snapshot_epoch", &[]) >= 1.0);
    // The keep-alive connection went back to the pool (sampled at the worker's 1 s sweep).
    assert!(wait_until(Duration::from_secs(5), || {
        scrape(admin).value("slotgate_pool_idle_connections", &[("upstream", "up")]) >= 1.0
    }));
    conn.close();
    assert!(wait_until(Duration::from_secs(5), || {
        scrape(admin).value("slotgate_active_connections", &[]) == 0.0
    }));
    // A refused reload counts (the config did not come from a file).
    let r = http_request(
        admin,
        b"POST /admin/reload HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(r.status, 400);
    assert_eq!(
        scrape(admin).value("slotgate_reload_failures_total", &[]),
        1.0
    );
}

#[test]
fn a_client_leaving_mid_stream_is_counted() {
    let m = mock_of("m1", 200, 50.0);
    let gate = start_gate(&remote("up", &m.base_url(), &["m1"], ""), "");
    let mut conn = Conn::connect(gate.addr);
    conn.send(post_raw("/v1/chat/completions", CHAT_STREAM, &[]).as_bytes());
    conn.read_until(b"tok1 ", Duration::from_secs(5));
    conn.close();
    let admin = gate.admin_addr.unwrap();
    assert!(wait_until(Duration::from_secs(5), || {
        scrape(admin).value("slotgate_client_aborts_total", &[("upstream", "up")]) == 1.0
    }));
    let p = scrape(admin);
    let s = p.value(
        "slotgate_requests_total",
        &[("upstream", "up"), ("status", "200")],
    );
    assert_eq!(s, 1.0);
    assert!(p.value("slotgate_sse_events_total", &[]) >= 2.0);
}

struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str, ext: &str) -> TempFile {
        TempFile(std::env::temp_dir().join(format!(
            "slotgate-ops-{tag}-{}-{}.{ext}",
            std::process::id(),
            rand_suffix()
        )))
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The real binary serving `upstreams` on a fresh port; stderr lines are collected.
struct Proc {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<Vec<String>>>,
    _config: TempFile,
}

impl Proc {
    fn start(upstreams: &str, env: &[(&str, &str)], args: &[&str]) -> Proc {
        let port = free_port();
        let config = TempFile::new("cfg", "toml");
        std::fs::write(
            &config.0,
            format!(
                "[listen]\naddr = \"127.0.0.1:{port}\"\nadmin = \"\"\n\n{upstreams}\n[tuning]\ncores = 2\ndrain_timeout_ms = 10000\nkeepalive_timeout_ms = 60000\n"
            ),
        )
        .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_slotgate"));
        cmd.args(args)
            .arg("serve")
            .arg("--config")
            .arg(&config.0)
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("run slotgate");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr.clone();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { return };
                sink.lock().push(line);
            }
        });
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let up = wait_until(Duration::from_secs(10), || TcpStream::connect(addr).is_ok());
        assert!(up, "slotgate never listened: {:?}", stderr.lock());
        Proc {
            child,
            addr,
            stderr,
            _config: config,
        }
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: sending a signal to our own child's pid has no memory-safety implications.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0);
    }

    /// Waits for the exit within `timeout`; `None` when still running.
    fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut status = None;
        wait_until(timeout, || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        status
    }

    /// The decision-log events seen on stderr (JSON format).
    fn access_events(&self) -> Vec<Value> {
        self.stderr
            .lock()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["target"] == "slotgate::access")
            .collect()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn sigterm_drains_a_live_stream_refuses_new_connections_and_exits_zero() {
    // About four seconds of stream: long enough that a loaded machine still sees the listener
    // close and the idle connection go while it runs.
    let tokens = 80;
    let m = mock_of("m1", tokens, 20.0);
    let mut p = Proc::start(
        &remote("up", &m.base_url(), &["m1"], ""),
        &[("SLOTGATE_LOG", "info")],
        &["--log-format", "json"],
    );
    // An idle keep-alive connection: the drain must close it, not wait for its timeout.
    let mut idle = Conn::connect(p.addr);
    let r = idle.request(post_raw("/v1/chat/completions", CHAT, &[]).as_bytes());
    assert_eq!(r.status, 200);
    assert!(wait_until(Duration::from_secs(5), || m
        .stats()
        .completions_inflight
        == 0));

    let addr = p.addr;
    let stream = std::thread::spawn(move || {
        let mut c = Conn::connect(addr);
        c.request(post_raw("/v1/chat/completions", CHAT_STREAM, &[]).as_bytes())
    });
    assert!(wait_until(Duration::from_secs(5), || m
        .stats()
        .completions_inflight
        == 1));
    let term = Instant::now();
    p.signal(libc::SIGTERM);

    // New connections are refused while the stream is still being relayed.
    assert!(
        wait_until(Duration::from_secs(2), || TcpStream::connect(addr).is_err()),
        "the listener stayed open during the drain"
    );
    if stream.is_finished() {
        let s = stream.join().unwrap();
        panic!(
            "the stream ended early ({:.1?} after SIGTERM, complete {}): {}",
            term.elapsed(),
            s.complete,
            String::from_utf8_lossy(&s.raw)
        );
    }
    assert!(
        idle.wait_closed(Duration::from_secs(2)),
        "an idle keep-alive connection held the drain"
    );

    // The stream completes byte for byte.
    let s = stream.join().unwrap();
    assert_eq!(
        s.status,
        200,
        "{:.1?} after SIGTERM: {:?} / {:?}",
        term.elapsed(),
        String::from_utf8_lossy(&s.raw),
        p.stderr.lock()
    );
    assert!(s.complete, "the stream was cut by the drain");
    assert_eq!(sse_text(&s.body), mock_text(tokens));
    assert_eq!(sse_data(&s.body).last().map(String::as_str), Some("[DONE]"));

    // Then the process exits 0, well within the drain deadline.
    let status = p.wait_exit(Duration::from_secs(9)).expect("still running");
    assert!(status.success(), "exit status {status:?}");
    assert!(term.elapsed() < Duration::from_secs(10));

    // The decision log: one event per request, the stream's with its SSE count.
    let events = p.access_events();
    assert_eq!(events.len(), 2, "{events:?}");
    let f = &events[1]["fields"];
    assert_eq!(f["status"], 200);
    assert_eq!(f["upstream"], "up");
    assert_eq!(f["route"], "passthrough:up");
    assert_eq!(f["model"], "m1");
    assert_eq!(f["method"], "POST");
    assert_eq!(f["path"], "/v1/chat/completions");
    assert_eq!(f["cache"], "warm");
    assert_eq!(f["sse_events"], (tokens + 2) as u64);
    assert_eq!(f["client_abort"], false);
    assert_eq!(f["cut"], false);
    assert!(f["request_id"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(f["routing_ns"].as_u64().unwrap() > 0);
    assert!(f["total_us"].as_u64().unwrap() >= f["ttfb_us"].as_u64().unwrap());
    assert!(f["bytes_out"].as_u64().unwrap() > 0);
}

/// A datagram socket standing in for systemd's `$NOTIFY_SOCKET`.
fn recv_state(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = sock
        .recv(&mut buf)
        .expect("a notification within the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn notify_sequence(socket_env: &str, sock: &UnixDatagram) {
    let m = mock_of("m1", 3, 0.0);
    let mut p = Proc::start(
        &remote("up", &m.base_url(), &["m1"], ""),
        &[
            ("NOTIFY_SOCKET", socket_env),
            ("SLOTGATE_LOG", "info,slotgate::access=off"),
        ],
        &["--log-format", "json"],
    );
    assert!(recv_state(sock).lines().any(|l| l == "READY=1"));

    p.signal(libc::SIGHUP);
    let reloading = recv_state(sock);
    assert!(reloading.lines().any(|l| l == "RELOADING=1"), "{reloading}");
    let usec = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .expect("MONOTONIC_USEC");
    assert!(usec.parse::<u64>().unwrap() > 0);
    assert!(recv_state(sock).lines().any(|l| l == "READY=1"));

    // The access log can be off on its own while other logs stay on.
    let r = post_json(p.addr, "/v1/chat/completions", CHAT);
    assert_eq!(r.status, 200);

    p.signal(libc::SIGTERM);
    assert!(recv_state(sock).lines().any(|l| l == "STOPPING=1"));
    let status = p.wait_exit(Duration::from_secs(10)).expect("still running");
    assert!(status.success());
    assert!(p.access_events().is_empty());
    let lines = p.stderr.lock().clone();
    assert!(
        lines.iter().any(|l| l.contains("reloaded on SIGHUP")),
        "{lines:?}"
    );
}

#[test]
fn notifies_systemd_ready_reloading_stopping() {
    let path = TempFile::new("notify", "sock");
    let sock = UnixDatagram::bind(&path.0).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    notify_sequence(path.0.to_str().unwrap(), &sock);
}

#[test]
fn notifies_an_abstract_socket() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("slotgate-ops-test-{}-{}", std::process::id(), rand_suffix());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let sock = UnixDatagram::bind_addr(&addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    notify_sequence(&format!("@{name}"), &sock);
}

/// A log sink that stops reading (a full pipe, a stalled journal) never blocks a worker: the
/// decision log's batches go to a writer thread through a bounded queue, and past it the worker
/// drops the batch and counts its lines in `slotgate_log_lines_dropped_total`.
#[test]
fn a_stalled_log_sink_drops_lines_instead_of_blocking_workers() {
    let (port, admin_port) = (support::free_port(), support::free_port());
    let cfg = support::gate::TempFile::new(
        "stall.toml",
        &format!(
            "[listen]\naddr = \"127.0.0.1:{port}\"\nadmin = \"127.0.0.1:{admin_port}\"\n\n\
             [[upstream]]\nname = \"far\"\nkind = \"remote\"\nurl = \"http://127.0.0.1:9/v1\"\n\
             models = [\"m1\"]\n\n[tuning]\ncores = 1\n"
        ),
    );
    // stderr is a pipe this test never reads: it fills after ~64 KiB.
    let mut child = Command::new(env!("CARGO_BIN_EXE_slotgate"))
        .args(["serve", "--config"])
        .arg(&cfg.0)
        .env("SLOTGATE_LOG", "warn,slotgate::access=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn slotgate");
    let _stderr = child.stderr.take();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    let up = wait_until(Duration::from_secs(10), || {
        TcpStream::connect(addr).is_ok() && TcpStream::connect(admin).is_ok()
    });
    if !up {
        let _ = child.kill();
        panic!("slotgate did not start");
    }
    // ~330 bytes of log per request: 4,000 requests are ~1.3 MB, far past the pipe and the queue.
    let mut conn = Conn::connect(addr);
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..4000 {
        let r =
            conn.request(post_raw("/v1/chat/completions", r#"{"model":"nobody"}"#, &[]).as_bytes());
        assert_eq!(r.status, 404, "request {i}");
        assert!(Instant::now() < deadline, "blocked after {i} requests");
    }
    let mut dropped = 0.0;
    let counted = wait_until(Duration::from_secs(5), || {
        dropped = scrape(admin).value("slotgate_log_lines_dropped_total", &[]);
        dropped > 0.0
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(counted, "no dropped lines counted");
    assert!(dropped <= 4000.0, "{dropped}");
}
