//! Control-plane integration tests: real sockets on 127.0.0.1, mock backends, conditions waited
//! on with deadlines (never sleeps as synchronisation).

#[path = "control/mock.rs"]
mod mock;
mod support;

use mock::Backend;
use serde_json::Value;
use slotgate::config::Config;
use slotgate::control::{self, Control};
use slotgate::routing::{catalog, ProbeStatus, SlotState, Snapshot};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use support::gate::TempFile;
use support::wait_until;

const DEADLINE: Duration = Duration::from_secs(10);

/// Polls `cond` until it holds; fails the test when the deadline passes first.
fn wait_for(what: &str, cond: impl FnMut() -> bool) {
    assert!(wait_until(DEADLINE, cond), "timed out waiting for: {what}");
}

/// A fast-probing upstream table.
fn upstream(name: &str, kind: &str, url: &str, extra: &str) -> String {
    format!(
        "[[upstream]]\nname = \"{name}\"\nkind = \"{kind}\"\nurl = \"{url}\"\n\
         probe_interval_ms = 50\nprobe_timeout_ms = 500\nprobe_backoff_ms = [50]\n\
         models_refresh_ms = 60000\n{extra}\n"
    )
}

fn config(text: &str) -> Config {
    Config::from_toml_str(text, None).unwrap()
}

/// A config file on disk (for reload tests), loaded.
fn load(f: &TempFile) -> Config {
    Config::load(&f.0, None).unwrap()
}

fn probe_of(s: &Snapshot, name: &str) -> ProbeStatus {
    s.by_name(name).unwrap().live.probe
}

fn models_of(s: &Snapshot, name: &str) -> Vec<String> {
    s.by_name(name).unwrap().live.models.ids.clone()
}

fn started(cfg: Config) -> Arc<Control> {
    let c = Control::with_config(cfg);
    c.spawn().unwrap();
    c
}

#[test]
fn probe_down_then_up_with_new_models() {
    let mut be = Backend::start(&["m1"]);
    let c = started(config(&upstream("chat", "container", &be.url(), "")));
    assert_eq!(
        c.snapshot().by_name("chat").unwrap().state(),
        SlotState::Starting
    );
    wait_for("passing with m1", || {
        let s = c.snapshot();
        probe_of(&s, "chat") == ProbeStatus::Passing && models_of(&s, "chat") == ["m1"]
    });
    assert_eq!(
        c.snapshot().by_name("chat").unwrap().state(),
        SlotState::Ready
    );

    let epoch = c.cell().epoch();
    be.stop();
    let t0 = Instant::now();
    wait_for("failing", || {
        probe_of(&c.snapshot(), "chat") == ProbeStatus::Failing
    });
    // One 50 ms interval plus an instant refusal; generous slack for a loaded CI box.
    assert!(
        t0.elapsed() < Duration::from_millis(50 + 500),
        "{:?}",
        t0.elapsed()
    );
    // `c.snapshot()` is the published cell, so seeing Failing there proves the failure was
    // published; the epoch only ever moves forward.
    assert!(c.cell().epoch() >= epoch);
    let s = c.snapshot();
    assert_eq!(s.by_name("chat").unwrap().state(), SlotState::Offline);
    // The cache stays: a container is authoritative for what it advertised (it answers 503).
    assert_eq!(models_of(&s, "chat"), ["m1"]);

    // Restarted with a different model list, in llama-server's shape.
    *be.b.models.lock() = vec!["m2".into(), "m3".into()];
    be.b.llama_shape.store(true, Ordering::Release);
    let hits = be.b.models_hits.load(Ordering::Relaxed);
    be.restart();
    wait_for("passing with the new list", || {
        let s = c.snapshot();
        probe_of(&s, "chat") == ProbeStatus::Passing && models_of(&s, "chat") == ["m2", "m3"]
    });
    assert_eq!(be.b.models_hits.load(Ordering::Relaxed), hits + 1);
    c.shutdown();
}

#[test]
fn hung_health_does_not_delay_other_probes() {
    let hung = Backend::start(&["h"]);
    hung.b.hang_health.store(true, Ordering::Release);
    let mut ok = Backend::start(&["o"]);
    let text = format!(
        "{}{}",
        upstream("hung", "container", &hung.url(), "")
            .replace("probe_timeout_ms = 500", "probe_timeout_ms = 3000"),
        upstream("ok", "container", &ok.url(), ""),
    );
    let c = started(config(&text));
    wait_for("ok passing", || {
        probe_of(&c.snapshot(), "ok") == ProbeStatus::Passing
    });
    wait_for("hung probed", || {
        hung.b.health_hits.load(Ordering::Relaxed) >= 1
    });
    ok.stop();
    let t0 = Instant::now();
    wait_for("ok failing", || {
        probe_of(&c.snapshot(), "ok") == ProbeStatus::Failing
    });
    assert!(
        t0.elapsed() < Duration::from_millis(1000),
        "{:?}",
        t0.elapsed()
    );
    // The hung upstream's first probe is still waiting out its 3 s timeout.
    assert_eq!(probe_of(&c.snapshot(), "hung"), ProbeStatus::Unknown);
    wait_for("hung failing after its timeout", || {
        probe_of(&c.snapshot(), "hung") == ProbeStatus::Failing
    });
    c.shutdown();
}

#[test]
fn mark_down_publishes_at_once_and_probe_recovers() {
    let be = Backend::start(&["m"]);
    let c = started(config(&upstream("chat", "container", &be.url(), "")));
    wait_for("passing", || {
        probe_of(&c.snapshot(), "chat") == ProbeStatus::Passing
    });
    let e = c.cell().epoch();
    c.mark_down("CHAT");
    assert_eq!(probe_of(&c.snapshot(), "chat"), ProbeStatus::Failing);
    assert!(c.cell().epoch() > e);
    wait_for("passing again", || {
        probe_of(&c.snapshot(), "chat") == ProbeStatus::Passing
    });
    c.mark_down("nope"); // unknown names are ignored
    c.shutdown();
}

#[test]
fn reload_broken_file_keeps_snapshot() {
    let be = Backend::start(&["m1"]);
    let good = upstream("chat", "container", &be.url(), "");
    let f = TempFile::new("control.toml", &good);
    let c = started(load(&f));
    wait_for("warm", || models_of(&c.snapshot(), "chat") == ["m1"]);
    wait_for("passing", || {
        probe_of(&c.snapshot(), "chat") == ProbeStatus::Passing
    });
    let before = c.snapshot();
    f.write(&format!(
        "{good}\n[registry]\n\"x\" = \"missing\"\n[listen]\nadr = \"1\"\n"
    ));
    let err = c.reload().unwrap_err();
    assert!(!err.problems.is_empty());
    f.write(&format!(
        "{good}\n[registry]\n\"x\" = \"missing\"\n\"y\" = \"gone\"\n"
    ));
    let err = c.reload().unwrap_err();
    assert_eq!(err.problems.len(), 2, "{err}");
    let after = c.snapshot();
    assert!(Arc::ptr_eq(&before, &after), "snapshot untouched");
    assert_eq!(after.epoch, before.epoch);
    c.shutdown();
}

#[test]
fn reload_adds_upstream_and_keeps_unchanged_state() {
    let be1 = Backend::start(&["m1"]);
    let be2 = Backend::start(&["m2"]);
    let chat = upstream("chat", "container", &be1.url(), "");
    let f = TempFile::new("control.toml", &chat);
    let c = started(load(&f));
    wait_for("chat warm and passing", || {
        let s = c.snapshot();
        probe_of(&s, "chat") == ProbeStatus::Passing && models_of(&s, "chat") == ["m1"]
    });
    let counters = c.counters("chat").unwrap();
    let _inflight = counters.request();
    let hits = be1.b.models_hits.load(Ordering::Relaxed);

    f.write(&format!(
        "{chat}{}",
        upstream("extra", "container", &be2.url(), "")
    ));
    let epoch = c.reload().unwrap();
    let s = c.snapshot();
    assert_eq!(s.epoch, epoch);
    assert!(s.by_name("extra").is_some());
    // Carried over in the very snapshot the reload published.
    assert_eq!(probe_of(&s, "chat"), ProbeStatus::Passing);
    assert_eq!(models_of(&s, "chat"), ["m1"]);
    assert!(Arc::ptr_eq(&counters, &c.counters("chat").unwrap()));
    assert_eq!(c.counters("chat").unwrap().requests(), 1);
    wait_for("extra probed and warm", || {
        let s = c.snapshot();
        probe_of(&s, "extra") == ProbeStatus::Passing && models_of(&s, "extra") == ["m2"]
    });
    assert_eq!(
        be1.b.models_hits.load(Ordering::Relaxed),
        hits,
        "no refetch for chat"
    );

    // Removing an upstream drops it; changing a url starts it fresh.
    f.write(&upstream("extra", "container", &be1.url(), ""));
    c.reload().unwrap();
    let s = c.snapshot();
    assert!(s.by_name("chat").is_none());
    assert_eq!(probe_of(&s, "extra"), ProbeStatus::Unknown);
    wait_for("extra follows its new url", || {
        models_of(&c.snapshot(), "extra") == ["m1"]
    });
    c.shutdown();
}

#[test]
fn single_flight_hundred_requesters_one_fetch() {
    let be = Backend::start(&["r1", "r2"]);
    // Slow enough that every requester arrives while the one fetch is in flight.
    be.b.models_delay_ms.store(300, Ordering::Release);
    // Not spawned: nothing fetches in the background, the remote stays cold until asked.
    let c = Control::with_config(config(&upstream("or", "remote", &be.url(), "")));
    assert!(models_of(&c.snapshot(), "or").is_empty());
    let names = vec!["or".to_string()];
    let barrier = Arc::new(Barrier::new(52));
    let mut threads = Vec::new();
    // 50 blocking requesters ...
    for _ in 0..50 {
        let (c, names, barrier) = (c.clone(), names.clone(), barrier.clone());
        threads.push(std::thread::spawn(move || {
            barrier.wait();
            c.fetch_models(&names, Duration::from_secs(5)).wait();
            assert_eq!(models_of(&c.snapshot(), "or"), ["r1", "r2"]);
        }));
    }
    // ... and 50 tasks on two monoio runtimes, as dispatch awaits it on workers.
    for _ in 0..2 {
        let (c, names, barrier) = (c.clone(), names.clone(), barrier.clone());
        threads.push(std::thread::spawn(move || {
            let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
                .enable_timer()
                .build()
                .unwrap();
            rt.block_on(async move {
                barrier.wait();
                let mut tasks = Vec::new();
                for _ in 0..25 {
                    let fut = c.fetch_models(&names, Duration::from_secs(5));
                    tasks.push(monoio::spawn(fut));
                }
                for t in tasks {
                    t.await;
                }
                assert_eq!(models_of(&c.snapshot(), "or"), ["r1", "r2"]);
            });
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(be.b.models_hits.load(Ordering::Relaxed), 1);
    // Warm now: asking again fetches nothing and completes at once.
    c.fetch_models(&names, Duration::from_secs(5)).wait();
    assert_eq!(be.b.models_hits.load(Ordering::Relaxed), 1);
}

#[test]
fn fetch_models_times_out_but_result_lands_later() {
    let be = Backend::start(&["late"]);
    be.b.models_delay_ms.store(600, Ordering::Release);
    let c = Control::with_config(config(&upstream("or", "remote", &be.url(), "")));
    let t0 = Instant::now();
    c.fetch_models(&["or".to_string()], Duration::from_millis(50))
        .wait();
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "{:?}",
        t0.elapsed()
    );
    assert!(models_of(&c.snapshot(), "or").is_empty());
    wait_for("late result published", || {
        models_of(&c.snapshot(), "or") == ["late"]
    });
    // Unknown and composite names are skipped without waiting.
    let t0 = Instant::now();
    c.fetch_models(&["nope".to_string()], Duration::from_secs(5))
        .wait();
    assert!(t0.elapsed() < Duration::from_millis(100));
}

#[test]
fn front_door_model_list_follows_snapshot() {
    let be = Backend::start(&["m1"]);
    let text = format!(
        "{}[[upstream]]\nname = \"local\"\nkind = \"composite\"\n[registry]\n\"alias-model\" = \"local\"\n",
        upstream("agent", "slot", &be.url(), "")
    );
    let c = started(config(&text));
    wait_for("warm", || models_of(&c.snapshot(), "agent") == ["m1"]);
    let v: Value = serde_json::from_slice(&catalog::models_list_json(&c.snapshot())).unwrap();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["alias-model", "m1"]);
    c.push_slot_state(
        "agent",
        SlotState::Warming,
        serde_json::json!({"phase": "load"}),
    )
    .unwrap();
    let one: Value =
        serde_json::from_slice(&catalog::model_json(&c.snapshot(), "m1").unwrap()).unwrap();
    assert_eq!(
        (one["owned_by"].as_str(), one["status"].as_str()),
        (Some("agent"), Some("loading"))
    );
    assert!(catalog::model_json(&c.snapshot(), "nope").is_none());
    c.shutdown();
}

/// One raw HTTP/1.1 exchange: (status, lowercase head, body).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, String, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n{headers}content-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    let v = serde_json::from_str(body).unwrap_or(Value::String(body.to_string()));
    (status, head.to_ascii_lowercase(), v)
}

#[test]
fn admin_api_over_http() {
    let be = Backend::start(&["m1"]);
    let text = format!(
        "{}{}",
        upstream("agent", "slot", &be.url(), ""),
        upstream("chat", "container", &be.url(), ""),
    );
    let f = TempFile::new("control.toml", &text);
    let c = started(load(&f));
    let (addr, _h) = control::spawn_admin(c.clone(), "127.0.0.1:0".parse().unwrap()).unwrap();
    wait_for("warm", || models_of(&c.snapshot(), "chat") == ["m1"]);

    assert_eq!(http(addr, "GET", "/healthz", "", "").0, 200);
    let (st, _, v) = http(addr, "GET", "/readyz", "", "");
    assert_eq!((st, &v["ready"]), (503, &Value::Bool(false)));
    c.set_ready("epoll", 3);
    let (st, _, v) = http(addr, "GET", "/readyz", "", "");
    assert_eq!(st, 200);
    assert_eq!(
        (
            v["ready"].as_bool(),
            v["driver"].as_str(),
            v["workers"].as_u64()
        ),
        (Some(true), Some("epoll"), Some(3))
    );

    let _g = c.counters("chat").unwrap().request();
    let (st, _, v) = http(addr, "GET", "/admin/upstreams", "", "");
    assert_eq!(st, 200);
    let chat = v["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "chat")
        .unwrap()
        .clone();
    assert_eq!(chat["kind"], "container");
    assert_eq!(chat["url"], be.url());
    assert_eq!(chat["state"], "ready");
    assert_eq!(chat["probe"]["status"], "passing");
    assert!(chat["probe"]["last_age_ms"].is_u64());
    assert_eq!(chat["models"]["ids"], serde_json::json!(["m1"]));
    assert!(chat["models"]["age_ms"].is_u64());
    assert_eq!(chat["inflight"]["requests"], 1);

    // Slot pushes.
    let push = r#"{"state":"warming","progress":{"phase":"load","requested_model":"m1"}}"#;
    let (st, _, v) = http(addr, "PUT", "/admin/slots/agent", "", push);
    assert_eq!(st, 200, "{v}");
    let s = c.snapshot();
    assert_eq!(s.by_name("agent").unwrap().state(), SlotState::Warming);
    let (_, _, v) = http(addr, "GET", "/admin/upstreams", "", "");
    let agent = v["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "agent")
        .unwrap()
        .clone();
    assert_eq!(agent["pushed"]["progress"]["phase"], "load");
    assert_eq!(agent["state"], "warming");
    // Refused pushes: (path, body, status, JSON pointer, expected).
    for (path, body, status, ptr, want) in [
        (
            "/admin/slots/ghost",
            push,
            404,
            "/error/code",
            "request.not_found",
        ),
        (
            "/admin/slots/agent",
            r#"{"state":"sleepy"}"#,
            400,
            "/error/code",
            "request.invalid",
        ),
        (
            "/admin/slots/chat",
            push,
            400,
            "/error/details/kind",
            "container",
        ),
        (
            "/admin/slots/agent",
            "{nope",
            400,
            "/error/code",
            "request.invalid_json",
        ),
    ] {
        let (st, _, v) = http(addr, "PUT", path, "", body);
        assert_eq!(
            (st, v.pointer(ptr).and_then(Value::as_str)),
            (status, Some(want)),
            "{path} {body}"
        );
    }

    // Route explanation, then an explainer that replaces it.
    let (st, _, v) = http(
        addr,
        "GET",
        "/admin/route?model=m1&path=%2Fv1%2Fembeddings",
        "",
        "",
    );
    assert_eq!(st, 200);
    assert_eq!(
        (v["model"].as_str(), v["path"].as_str()),
        (Some("m1"), Some("/v1/embeddings"))
    );
    // routing::explain: the running container advertising m1 preempts (step 0).
    assert_eq!(v["decision"]["upstream"], "chat", "{v}");
    assert_eq!(v["decision"]["breadcrumb"], "container:chat", "{v}");
    assert!(!v["steps"].as_array().unwrap().is_empty());
    c.set_route_explainer(Box::new(
        |s, m, p| serde_json::json!({"epoch": s.epoch, "m": m, "p": p}),
    ));
    let (_, _, v) = http(addr, "GET", "/admin/route?model=x", "", "");
    assert_eq!(
        (v["m"].as_str(), v["p"].as_str()),
        (Some("x"), Some("/v1/chat/completions"))
    );

    // Metrics: control's gauges plus the lead's hook.
    c.set_metrics_hook(Box::new(|| "slotgate_test_metric 7\n".to_string()));
    let (st, head, v) = http(addr, "GET", "/metrics", "", "");
    assert_eq!(st, 200);
    assert!(head.contains("content-type: text/plain"));
    let metrics = v.as_str().unwrap();
    assert!(
        metrics.contains("slotgate_upstream_probe_up{upstream=\"chat\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("slotgate_test_metric 7"));

    // Reload: refused with every problem, then accepted.
    let epoch = c.cell().epoch();
    f.write(&format!("{text}[registry]\n\"x\" = \"missing\"\n"));
    let (st, _, v) = http(addr, "POST", "/admin/reload", "", "");
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (400, Some("request.invalid"))
    );
    assert_eq!(
        v["error"]["details"]["problems"][0]["key"],
        "registry.\"x\""
    );
    assert_eq!(c.cell().epoch(), epoch);
    f.write(&text);
    let (st, _, v) = http(addr, "POST", "/admin/reload", "", "");
    assert_eq!(st, 200, "{v}");
    assert!(v["epoch"].as_u64().unwrap() > epoch);
    // The pushed state survived the reload (unchanged upstream).
    assert_eq!(
        c.snapshot().by_name("agent").unwrap().state(),
        SlotState::Warming
    );

    // Wrong method, unknown path.
    let (st, head, _) = http(addr, "GET", "/admin/reload", "", "");
    assert!(st == 405 && head.contains("allow: post"));
    assert_eq!(http(addr, "GET", "/nope", "", "").0, 404);
    c.shutdown();
}

#[test]
fn admin_bearer_token() {
    let var = format!("SLOTGATE_TEST_ADMIN_TOKEN_{}", std::process::id());
    std::env::set_var(&var, "s3cret");
    let c = Control::with_config(config(&format!(
        "[listen]\nadmin_token_env = \"{var}\"\n[[upstream]]\nname = \"c\"\nkind = \"composite\"\n"
    )));
    let (addr, _h) = control::spawn_admin(c.clone(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let (st, head, v) = http(addr, "GET", "/admin/upstreams", "", "");
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (401, Some("auth.unauthorized"))
    );
    assert!(head.contains("www-authenticate: bearer"));
    let (st, _, _) = http(
        addr,
        "GET",
        "/admin/upstreams",
        "authorization: Bearer s3cres\r\n",
        "",
    );
    assert_eq!(st, 401);
    let (st, _, _) = http(addr, "GET", "/metrics", "", "");
    assert_eq!(st, 401);
    let (st, _, v) = http(
        addr,
        "GET",
        "/admin/upstreams",
        "authorization: Bearer s3cret\r\n",
        "",
    );
    assert_eq!(st, 200);
    assert_eq!(v["upstreams"][0]["state"], "offline");
    assert_eq!(http(addr, "GET", "/healthz", "", "").0, 200);
}

#[test]
fn sighup_reloads() {
    let be = Backend::start(&["m1"]);
    let chat = upstream("chat", "container", &be.url(), "");
    let f = TempFile::new("control.toml", &chat);
    let c = started(load(&f));
    c.handle_sighup().unwrap();
    f.write(&format!(
        "{chat}[[upstream]]\nname = \"local\"\nkind = \"composite\"\n"
    ));
    // SAFETY: raise(3) sends SIGHUP to this process, whose handler was installed just above.
    assert_eq!(unsafe { libc::raise(libc::SIGHUP) }, 0);
    wait_for("reloaded on SIGHUP", || {
        c.snapshot().by_name("local").is_some()
    });
    c.shutdown();
}

#[test]
fn worker_side_calls() {
    let be = Backend::start(&["r1"]);
    let c = Control::with_config(config(&upstream("or", "remote", &be.url(), "")));
    let n = c.counters("OR").unwrap();
    let g1 = n.request();
    let g2 = c.counters("or").unwrap().request();
    drop(g2);
    assert!(c.counters("ghost").is_none());
    assert_eq!((n.requests(), n.total()), (1, 2));
    drop(g1);
    let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .unwrap();
    rt.block_on(c.fetch_models(&["or".to_string()], Duration::from_secs(5)));
    assert_eq!(models_of(&c.snapshot(), "or"), ["r1"]);
}

/// Reloads from several threads at once (admin connections, SIGHUP) are applied one at a time:
/// whichever lands last, every upstream of the published config has its counters (and with
/// them its `max_inflight` gate).
#[test]
fn concurrent_reloads_never_lose_an_upstreams_counters() {
    let c = Control::with_config(config(&upstream(
        "base",
        "remote",
        "http://127.0.0.1:9/v1",
        "models = [\"m\"]",
    )));
    for round in 0..100 {
        let threads: Vec<_> = (0..6)
            .map(|i| {
                let c = c.clone();
                std::thread::spawn(move || {
                    let text = format!(
                        "{}{}",
                        upstream(
                            "base",
                            "remote",
                            "http://127.0.0.1:9/v1",
                            "models = [\"m\"]"
                        ),
                        upstream(
                            &format!("u{round}-{i}"),
                            "remote",
                            "http://127.0.0.1:9/v1",
                            "models = [\"m2\"]\nmax_inflight = 2"
                        )
                    );
                    c.apply_config(config(&text));
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let snap = c.snapshot();
        for u in &snap.config.upstreams {
            assert!(
                c.counters(&u.name).is_some(),
                "round {round}: upstream {} of the published config has no counters",
                u.name
            );
        }
    }
}

#[test]
fn admin_shows_pools_cooldowns_budgets_and_fallbacks() {
    let be = Backend::start(&["m1"]);
    let text = format!(
        "{}{}{}",
        upstream(
            "gpu0",
            "container",
            &be.url(),
            "fallback = [\"or\"]\ncooldown_after = 2"
        ),
        upstream("gpu1", "container", &be.url(), ""),
        upstream("or", "remote", &be.url(), ""),
    );
    let c = started(config(&text));
    let (addr, _h) = control::spawn_admin(c.clone(), "127.0.0.1:0".parse().unwrap()).unwrap();
    wait_for("both ready with m1", || {
        let s = c.snapshot();
        ["gpu0", "gpu1"]
            .iter()
            .all(|n| s.by_name(n).unwrap().state().is_ready() && models_of(&s, n) == ["m1"])
    });

    // /admin/upstreams: gpu0 has failed twice (breaker open) and counted requests and a retry.
    let gpu0 = c.counters("gpu0").unwrap();
    let now = slotgate::admission::clock_ms();
    gpu0.cooldown.record_failure(now, 2, 60_000, 0);
    gpu0.cooldown.record_failure(now, 2, 60_000, 0);
    for _ in 0..4 {
        gpu0.budget.record_request(now);
    }
    assert!(gpu0.budget.try_spend(now, 20, 3));
    let (st, _, v) = http(addr, "GET", "/admin/upstreams", "", "");
    assert_eq!(st, 200);
    let find = |name: &str| {
        v["upstreams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == name)
            .unwrap()
            .clone()
    };
    let g0 = find("gpu0");
    assert_eq!(g0["fallback"], serde_json::json!(["or"]));
    assert_eq!(g0["cooldown"]["cooling"], true, "{g0}");
    assert_eq!(g0["cooldown"]["consecutive_failures"], 2);
    let left = g0["cooldown"]["remaining_ms"].as_u64().unwrap();
    assert!(left > 0 && left <= 60_000, "{left}");
    assert_eq!(
        (
            &g0["retry_budget"]["requests"],
            &g0["retry_budget"]["retries"]
        ),
        (&serde_json::json!(4), &serde_json::json!(1))
    );
    let g1 = find("gpu1");
    assert_eq!(g1["fallback"], serde_json::json!([]));
    assert_eq!(
        g1["cooldown"],
        serde_json::json!({"cooling": false, "remaining_ms": 0, "consecutive_failures": 0})
    );
    assert_eq!(
        g1["retry_budget"],
        serde_json::json!({"requests": 0, "retries": 0})
    );

    // /admin/route: the pool, gpu0 skipped while cooling; the session key's pick.
    let (st, _, v) = http(addr, "GET", "/admin/route?model=m1&session=s%201", "", "");
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["decision"]["upstream"], "gpu1", "{v}");
    assert_eq!(v["decision"]["breadcrumb"], "container:gpu1", "{v}");
    let pool = &v["pool"];
    assert_eq!(pool["session"], "s 1");
    assert_eq!(pool["pick"]["member"], "gpu1");
    assert_eq!(pool["session_pick"]["member"], "gpu1", "{pool}");
    let members: Vec<(&str, bool, bool)> = pool["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap(),
                m["cooling"].as_bool().unwrap(),
                m["picked"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(members, [("gpu0", true, false), ("gpu1", false, true)]);

    // The breaker closes: gpu0 is eligible again and, idle like gpu1, first by name.
    gpu0.cooldown.record_success();
    let (_, _, v) = http(addr, "GET", "/admin/route?model=m1", "", "");
    assert_eq!(v["decision"]["upstream"], "gpu0", "{v}");
    assert_eq!(v["decision"]["fallback"], serde_json::json!(["or"]));
    assert_eq!(v["pool"]["session_pick"], Value::Null);
}
