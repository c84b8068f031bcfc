//! Live state through the real proxy: hot reload over the admin API while streams run,
//! refused reloads, and the single-flighted cold prefetch.

use crate::support;

use slotgate::config::Config;
use slotgate::mock::{self, MockConfig, MockHandle};
use slotgate::server::Server;
use std::time::Duration;
use support::gate::TempFile;
use support::*;

fn head() -> String {
    "[listen]\naddr = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n[tuning]\ncores = 1\n".into()
}

fn container(name: &str, m: &MockHandle) -> String {
    format!(
        "[[upstream]]\nname = \"{name}\"\nkind = \"container\"\nurl = \"{}\"\nprobe_interval_ms = 100\n",
        m.base_url()
    )
}

fn mock_of(model: &str, tokens: usize, tps: f64) -> MockHandle {
    mock::spawn(MockConfig {
        models: vec![model.into()],
        tokens,
        tokens_per_sec: tps,
        ..MockConfig::default()
    })
    .unwrap()
}

fn ready(gate: &Server, name: &str) -> bool {
    gate.control
        .snapshot()
        .by_name(name)
        .is_some_and(|u| u.state().is_ready() && u.live.models.is_warm())
}

fn post_admin(gate: &Server, path: &str) -> Response {
    http_request(
        gate.admin_addr.unwrap(),
        format!("POST {path} HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n").as_bytes(),
    )
}

#[test]
fn reload_adds_an_upstream_while_a_stream_completes() {
    let a = mock_of("model-a", 30, 40.0);
    let b = mock_of("model-b", 3, 0.0);
    let file = TempFile::new("add.toml", &(head() + &container("a", &a)));
    let gate = Server::start(Config::load(&file.0, None).unwrap()).unwrap();
    assert!(wait_until(Duration::from_secs(10), || ready(&gate, "a")));

    // A stream that began before the reload ...
    let addr = gate.addr;
    let stream = std::thread::spawn(move || {
        post_json(
            addr,
            "/v1/chat/completions",
            r#"{"model":"model-a","stream":true}"#,
        )
    });
    assert!(wait_until(Duration::from_secs(5), || a
        .stats()
        .completions_inflight
        == 1));
    let epoch = gate.control.cell().epoch();
    file.write(&(head() + &container("a", &a) + &container("b", &b)));
    let r = post_admin(&gate, "/admin/reload");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(gate.control.cell().epoch() > epoch);
    // ... the new upstream is routed once probed ...
    assert!(wait_until(Duration::from_secs(10), || ready(&gate, "b")));
    let r = post_json(gate.addr, "/v1/chat/completions", r#"{"model":"model-b"}"#);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-slotgate-route"), Some("container:b"));
    // ... and the old stream completes byte for byte.
    let s = stream.join().unwrap();
    assert_eq!(s.status, 200);
    assert!(s.complete);
    assert_eq!(sse_text(&s.body), mock_text(30));
}

#[test]
fn broken_reload_is_refused_and_routing_unchanged() {
    let a = mock_of("model-a", 3, 0.0);
    let good = head() + &container("a", &a);
    let file = TempFile::new("broken.toml", &good);
    let gate = Server::start(Config::load(&file.0, None).unwrap()).unwrap();
    assert!(wait_until(Duration::from_secs(10), || ready(&gate, "a")));
    // Live state (probes, model refreshes) may publish new snapshots meanwhile; what a refused
    // reload must not replace is the config they are built from.
    let config = gate.control.cell().load().config.clone();
    file.write(&(good.clone() + "[registry]\n\"x\" = \"no-such-upstream\"\n[listen]\nbogus = 1\n"));
    let r = post_admin(&gate, "/admin/reload");
    assert_eq!(r.status, 400);
    let v = r.json();
    assert_eq!(v["error"]["code"], "request.invalid");
    assert!(
        !v["error"]["details"]["problems"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{v}"
    );
    file.write(&(good + "[registry]\n\"x\" = \"no-such-upstream\"\n"));
    let r = post_admin(&gate, "/admin/reload");
    assert_eq!(r.status, 400);
    let problems = r.json()["error"]["details"]["problems"].to_string();
    assert!(problems.contains("no-such-upstream"), "{problems}");
    assert!(
        std::sync::Arc::ptr_eq(&gate.control.cell().load().config, &config),
        "the running config was not replaced"
    );
    let r = post_json(gate.addr, "/v1/chat/completions", r#"{"model":"model-a"}"#);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-slotgate-route"), Some("container:a"));
}

/// The five keys `tests/fixtures/five-problems.toml` is refused for, all named in one run.
const FIVE_PROBLEMS: [&str; 5] = [
    "upstream[4].bogus_key",
    "upstream[1].name",
    "upstream[2].url",
    "upstream[3].url",
    "registry.\"m\"",
];

#[test]
fn check_and_reload_name_all_five_problems_of_one_file() {
    let five = include_str!("../fixtures/five-problems.toml");
    // `slotgate check`: exit non-zero, one line per problem, each by its key path.
    let bad = TempFile::new("five.toml", five);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_slotgate"))
        .args(["check", "--config"])
        .arg(&bad.0)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "check accepted it: {err}");
    assert!(err.contains("config refused, 5 problems:"), "{err}");
    let lines: Vec<&str> = err.lines().skip(1).collect();
    assert_eq!(lines.len(), 5, "{err}");
    for (line, key) in lines.iter().zip(FIVE_PROBLEMS) {
        assert!(line.starts_with(&format!("{key}: ")), "{key}: {err}");
    }
    assert!(String::from_utf8_lossy(&out.stdout).is_empty());

    // `POST /admin/reload` of the same file: the same five in `details`, nothing replaced.
    let a = mock_of("model-a", 3, 0.0);
    let file = TempFile::new("five-reload.toml", &(head() + &container("a", &a)));
    let gate = Server::start(Config::load(&file.0, None).unwrap()).unwrap();
    assert!(wait_until(Duration::from_secs(10), || ready(&gate, "a")));
    // Probes and model refreshes may publish meanwhile: the config is what must stay.
    let config = gate.control.cell().load().config.clone();
    file.write(five);
    let r = post_admin(&gate, "/admin/reload");
    assert_eq!(r.status, 400, "{}", r.text());
    let v = r.json();
    assert_eq!(v["error"]["code"], "request.invalid");
    let problems = v["error"]["details"]["problems"].as_array().unwrap();
    let keys: Vec<&str> = problems
        .iter()
        .map(|p| p["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, FIVE_PROBLEMS, "{v}");
    assert!(
        problems
            .iter()
            .all(|p| !p["message"].as_str().unwrap().is_empty()),
        "{v}"
    );
    assert!(
        std::sync::Arc::ptr_eq(&gate.control.cell().load().config, &config),
        "the config was replaced"
    );
    assert_eq!(gate.control.reload_counts(), (0, 1));
    let r = post_json(gate.addr, "/v1/chat/completions", r#"{"model":"model-a"}"#);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-slotgate-route"), Some("container:a"));
}

#[test]
fn cold_prefetch_is_single_flighted() {
    // The remote's list is empty at start-up (still "loading"), so its cache stays cold until a
    // request needs it.
    let remote = mock::spawn(MockConfig {
        models: vec!["remote-model".into()],
        tokens: 2,
        load_ms: 400,
        ..MockConfig::default()
    })
    .unwrap();
    let local = mock_of("local-model", 2, 0.0);
    let text = format!(
        "{}{}[[upstream]]\nname = \"cloud\"\nkind = \"remote\"\nurl = \"{}\"\nmodels_refresh_ms = 600000\n",
        head(),
        container("agent", &local),
        remote.base_url()
    );
    let file = TempFile::new("prefetch.toml", &text);
    let gate = Server::start(Config::load(&file.0, None).unwrap()).unwrap();
    assert!(wait_until(Duration::from_secs(10), || ready(
        &gate, "agent"
    )));
    assert!(wait_until(Duration::from_secs(5), || !remote
        .stats()
        .loading));
    let before = remote.stats().models_requests;
    assert!(gate
        .control
        .snapshot()
        .by_name("cloud")
        .is_some_and(|u| !u.live.models.is_warm()));
    let addr = gate.addr;
    let hs: Vec<_> = (0..100)
        .map(|_| {
            std::thread::spawn(move || {
                post_json(addr, "/v1/chat/completions", r#"{"model":"remote-model"}"#)
            })
        })
        .collect();
    let mut crumbs = Vec::new();
    for h in hs {
        let r = h.join().unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        crumbs.push(r.header("x-slotgate-route").unwrap_or("").to_string());
    }
    assert_eq!(
        remote.stats().models_requests - before,
        1,
        "exactly one /v1/models fetch for 100 concurrent cold requests: {:?} {crumbs:?}",
        remote.stats()
    );
    assert!(crumbs.iter().any(|c| c == "prefetched:cloud"), "{crumbs:?}");
    assert!(crumbs
        .iter()
        .all(|c| c == "prefetched:cloud" || c == "passthrough:cloud"));
}
