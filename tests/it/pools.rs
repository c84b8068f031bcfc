//! Replica pools, session affinity and fallback chains over the real binary (the lead's
//! POOLS-SPEC: least-loaded pick, rendezvous affinity with a slack, fallback triggers, retry
//! budget, cooldown).
//!
//! The replicas are scripted model servers whose completions wait at a latch the test opens, so
//! every load the picker sees is set by the test (requests held open), never by a token rate or
//! a machine's speed. All waits are conditions with deadlines; loads are bounded; loopback only.

use crate::support;

use parking_lot::{Condvar, Mutex};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use support::gate::{json_response, remote, upstream, Binary, Hook, Piece, Scripted, Seen};
use support::*;

// ---------------------------------------------------------------------------------------------
// Fixture: latches, scripted replicas, the binary and its admin API.

/// How long anything may be held or waited for before the test fails instead of hanging.
const WAIT: Duration = Duration::from_secs(15);

/// A gate completions wait at until the test opens it (at most [`WAIT`]).
#[derive(Clone, Default)]
struct Latch(Arc<(Mutex<bool>, Condvar)>);

impl Latch {
    fn open(&self) {
        *self.0 .0.lock() = true;
        self.0 .1.notify_all();
    }

    fn close(&self) {
        *self.0 .0.lock() = false;
    }

    fn wait(&self) {
        let deadline = Instant::now() + WAIT;
        let mut open = self.0 .0.lock();
        while !*open && !self.0 .1.wait_until(&mut open, deadline).timed_out() {}
    }
}

/// A model server for `m1` on a scripted socket: `/health` and `/v1/models` answer at once; a
/// completion waits at `hold`: a stream after its head and first event (an open stream), a JSON
/// answer before its head (a request in flight).
struct Replica {
    up: Scripted,
    hold: Latch,
}

impl Replica {
    /// A replica that answers at once.
    fn start() -> Replica {
        let r = Replica::held();
        r.hold.open();
        r
    }

    /// A replica whose completions wait until `hold` opens.
    fn held() -> Replica {
        let hold = Latch::default();
        let h = hold.clone();
        Replica {
            up: model_server(move |s| answer(s, &h)),
            hold,
        }
    }

    fn url(&self) -> String {
        self.up.url()
    }

    /// The completion requests received so far.
    fn completions(&self) -> Vec<Seen> {
        self.up
            .seen()
            .into_iter()
            .filter(|s| s.request_line().starts_with("POST"))
            .collect()
    }

    fn served(&self) -> usize {
        self.completions().len()
    }

    /// The body `model` of every completion received.
    fn models_seen(&self) -> Vec<String> {
        self.completions()
            .iter()
            .map(|s| {
                let v: Value = serde_json::from_slice(&s.body).unwrap_or_default();
                v["model"].as_str().unwrap_or_default().to_string()
            })
            .collect()
    }
}

/// A scripted model server for `m1`: `/health` and `/v1/models` answer at once, completions as
/// `complete` says.
fn model_server(complete: impl Fn(&Seen) -> Vec<Piece> + Send + Sync + 'static) -> Scripted {
    Scripted::start(move |s| {
        let line = s.request_line();
        if line.contains("/health") {
            vec![Piece::Bytes(json_response(r#"{"status":"ok"}"#))]
        } else if line.contains("/models") {
            vec![Piece::Bytes(json_response(
                r#"{"object":"list","data":[{"id":"m1","object":"model"}]}"#,
            ))]
        } else {
            complete(s)
        }
    })
}

/// A completion answer held at `hold`: SSE (head and first event, the latch, two more events and
/// the end) when the body asks for a stream, else the latch and a JSON body.
fn answer(s: &Seen, hold: &Latch) -> Vec<Piece> {
    let h = hold.clone();
    let wait = Piece::Call(Hook(Arc::new(move || h.wait())));
    if !String::from_utf8_lossy(&s.body).contains(r#""stream":true"#) {
        return vec![wait, Piece::Bytes(json_response(r#"{"choices":[]}"#))];
    }
    let first = [SSE_HEAD, &chunk("data: {\"n\":0}\n\n")].concat();
    let rest = [
        chunk("data: {\"n\":1}\n\n"),
        chunk("data: [DONE]\n\n"),
        b"0\r\n\r\n".to_vec(),
    ]
    .concat();
    vec![Piece::Bytes(first), wait, Piece::Bytes(rest)]
}

const SSE_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";

fn chunk(s: &str) -> Vec<u8> {
    format!("{:x}\r\n{s}\r\n", s.len()).into_bytes()
}

/// A `container` (or `slot`) table probed and refreshed every 50 ms.
fn local(name: &str, kind: &str, url: &str, extra: &str) -> String {
    upstream(
        name,
        kind,
        url,
        &format!(
            "probe_interval_ms = 50\nprobe_backoff_ms = [50]\nmodels_refresh_ms = 50\n{extra}"
        ),
    )
}

/// A loopback address nothing listens on.
fn dead_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

const CHAT: &str = "/v1/chat/completions";
const STREAM: &str = r#"{"model":"m1","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
const PLAIN: &str = r#"{"model":"m1","messages":[{"role":"user","content":"hi"}]}"#;

/// The full config: front door and admin on loopback port 0, two workers.
fn config(routing: &str, tables: &str) -> String {
    format!(
        "[listen]\naddr = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\n[routing]\n\
         default_slot = \"agent\"\n{routing}\n\n{tables}\n[tuning]\ncores = 2\n"
    )
}

/// The real binary and its admin listener.
struct Gate {
    bin: Binary,
    admin: SocketAddr,
}

impl Gate {
    fn start(routing: &str, tables: &str) -> Gate {
        let bin = Binary::start(
            &config(routing, tables),
            "warn,slotgate::server=info,slotgate::access=info",
            "",
            &[],
        );
        let admin = bin.admin.expect("admin address in the log");
        Gate { bin, admin }
    }

    /// `POST /v1/chat/completions` with `body` and extra header lines.
    fn ask(&self, body: &str, headers: &[&str]) -> Response {
        http_request(self.bin.addr, post_raw(CHAT, body, headers).as_bytes())
    }

    /// [`Gate::ask`] on a thread of its own.
    fn ask_bg(&self, body: &str, headers: &[&str]) -> JoinHandle<Response> {
        let raw = post_raw(CHAT, body, headers);
        let addr = self.bin.addr;
        std::thread::spawn(move || http_request(addr, raw.as_bytes()))
    }

    fn admin_send(&self, method: &str, path: &str, body: &str) -> Response {
        let raw = format!(
            "{method} {path} HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        http_request(self.admin, raw.as_bytes())
    }

    /// A control plane's push of `state` for slot `name`.
    fn push(&self, name: &str, state: &str) {
        let r = self.admin_send(
            "PUT",
            &format!("/admin/slots/{name}"),
            &format!(r#"{{"state":"{state}"}}"#),
        );
        assert_eq!(r.status, 200, "push {name} {state}: {}", r.text());
    }

    /// Rewrites the config file and reloads it.
    fn reload(&self, routing: &str, tables: &str) {
        self.bin.rewrite_config(&config(routing, tables));
        let r = self.admin_send("POST", "/admin/reload", "");
        assert_eq!(r.status, 200, "reload: {}", r.text());
    }

    /// `/admin/upstreams` entry of `name`, if configured.
    fn upstream(&self, name: &str) -> Option<Value> {
        let v = get(self.admin, "/admin/upstreams").json();
        v["upstreams"]
            .as_array()?
            .iter()
            .find(|u| u["name"] == name)
            .cloned()
    }

    /// Waits until every named upstream is ready with `m1` in its model cache.
    fn wait_ready(&self, names: &[&str]) {
        for name in names {
            let ok = wait_until(WAIT, || {
                self.upstream(name).is_some_and(|u| {
                    u["state"] == "ready"
                        && u["models"]["ids"]
                            .as_array()
                            .is_some_and(|m| m.iter().any(|m| m == "m1"))
                })
            });
            assert!(ok, "{name} never ready with m1: {:?}", self.upstream(name));
        }
    }

    /// Waits until `name` has no request in flight and no open stream (its load is 0).
    fn wait_idle(&self, name: &str) {
        let ok = wait_until(WAIT, || {
            self.upstream(name)
                .is_some_and(|u| u["inflight"]["requests"] == 0 && u["inflight"]["streams"] == 0)
        });
        assert!(ok, "{name} never idle: {:?}", self.upstream(name));
    }

    /// Sum of `slotgate_fallbacks_total` samples from `from` to `to` (any reason).
    fn fallbacks_total(&self, from: &str, to: &str) -> f64 {
        let (f, t) = (format!("from=\"{from}\""), format!("to=\"{to}\""));
        get(self.admin, "/metrics")
            .text()
            .lines()
            .filter(|l| {
                l.starts_with("slotgate_fallbacks_total{") && l.contains(&f) && l.contains(&t)
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Waits until `slotgate_fallbacks_total` from `from` to `to` reaches `n` (a request is
    /// counted when its exchange ends, which may be just after the client read the response),
    /// then checks it stays there.
    fn wait_fallbacks(&self, from: &str, to: &str, n: f64) {
        let reached = wait_until(WAIT, || self.fallbacks_total(from, to) >= n);
        assert!(
            reached,
            "fallbacks {from}->{to}: {}",
            self.fallbacks_total(from, to)
        );
        assert_eq!(self.fallbacks_total(from, to), n, "fallbacks {from}->{to}");
    }
}

/// The gate over a pool of `kind` upstreams (`container`s or `slot`s) advertising `m1`, once
/// every member is ready.
fn pool_of(kind: &str, routing: &str, members: &[(&str, &Replica)]) -> Gate {
    let tables: String = members
        .iter()
        .map(|(name, r)| local(name, kind, &r.url(), ""))
        .collect();
    let gate = Gate::start(routing, &tables);
    let names: Vec<&str> = members.iter().map(|(n, _)| *n).collect();
    gate.wait_ready(&names);
    gate
}

/// The member that served `r` (`X-Slotgate-Upstream`).
fn member(r: &Response) -> String {
    assert_eq!(r.status, 200, "{}", r.text());
    r.header("x-slotgate-upstream")
        .unwrap_or_else(|| panic!("no X-Slotgate-Upstream: {:?}", r.headers))
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// Pools: the least-loaded member.

/// Two equal containers advertising `m1`; 100 concurrent streams are all held at the replicas
/// until every one has been placed, so each pick sees the loads of the ones before it.
#[test]
fn equal_replicas_split_concurrent_streams() {
    let (a, b) = (Replica::held(), Replica::held());
    let gate = pool_of("container", "", &[("a", &a), ("b", &b)]);
    let hs: Vec<_> = (0..100).map(|_| gate.ask_bg(STREAM, &[])).collect();
    let placed = wait_until(WAIT, || a.served() + b.served() == 100);
    a.hold.open();
    b.hold.open();
    assert!(
        placed,
        "only {} + {} streams reached a replica",
        a.served(),
        b.served()
    );
    let mut on_a = 0;
    for h in hs {
        let r = h.join().unwrap();
        assert!(r.complete, "stream cut: {r:?}");
        assert_eq!(sse_data(&r.body).last().map(String::as_str), Some("[DONE]"));
        let m = member(&r);
        assert_eq!(
            r.header("x-slotgate-route"),
            Some(format!("container:{m}").as_str())
        );
        on_a += usize::from(m == "a");
    }
    assert_eq!(
        (on_a, 100 - on_a),
        (a.served(), b.served()),
        "headers name the replica that served"
    );
    assert!(
        (40..=60).contains(&on_a),
        "split {on_a}/{}: a member above 60%",
        100 - on_a
    );
}

/// A replica that holds every request (an extreme time to first token) against one that answers
/// at once: of 20 requests, started one after another while the slow ones stay open, the slow
/// replica ends with few. It is first in name order, so it wins the first tie.
#[test]
fn a_slow_replica_gets_fewer() {
    let (slow, fast) = (Replica::held(), Replica::start());
    let gate = pool_of("container", "", &[("a-slow", &slow), ("b-fast", &fast)]);
    let done = Arc::new(AtomicUsize::new(0));
    let mut hs = Vec::new();
    for i in 1..=20 {
        let (h, d) = (gate.ask_bg(PLAIN, &[]), done.clone());
        hs.push(std::thread::spawn(move || {
            let r = h.join().unwrap();
            d.fetch_add(1, Ordering::SeqCst);
            r
        }));
        // The next starts once this one is held at the slow replica or answered by the fast one.
        let placed = wait_until(WAIT, || slow.served() + done.load(Ordering::SeqCst) == i);
        assert!(placed, "request {i} never placed");
    }
    let held = slow.served();
    slow.hold.open();
    let members: Vec<String> = hs.into_iter().map(|h| member(&h.join().unwrap())).collect();
    assert_eq!(members.iter().filter(|m| *m == "a-slow").count(), held);
    assert!(
        (1..=5).contains(&held),
        "the slow replica got {held} of 20: {members:?}"
    );
    assert_eq!(fast.served(), 20 - held);
}

/// Two `slot`s advertising `m1` (one pool at step 2): a member a control plane pushed to
/// `warming` gets nothing while the other is ready; with none ready the first member's
/// `503 slot.loading` answers; once ready again it serves.
#[test]
fn a_loading_member_gets_nothing_while_another_is_ready() {
    let (s1, s2) = (Replica::start(), Replica::start());
    let gate = pool_of("slot", "", &[("s1", &s1), ("s2", &s2)]);
    gate.push("s1", "warming");
    for _ in 0..10 {
        let r = gate.ask(PLAIN, &[]);
        assert_eq!(member(&r), "s2");
        assert_eq!(r.header("x-slotgate-route"), Some("passthrough:s2"));
    }
    assert_eq!((s1.served(), s2.served()), (0, 10));

    gate.push("s2", "warming");
    let r = gate.ask(PLAIN, &[]);
    support::gate::assert_error(&r, 503, "slot.loading");
    assert_eq!(
        r.json()["error"]["details"]["progress"]["upstream"],
        "s1",
        "{}",
        r.text()
    );
    assert!(r.header("retry-after").is_some());

    gate.push("s1", "ready");
    assert_eq!(member(&gate.ask(PLAIN, &[])), "s1");
    assert_eq!((s1.served(), s2.served()), (1, 10));
}

/// A registry binding to a list is a pool at step 1: overlapping requests spread over its
/// members, each sees the binding's `upstream_model`, and the breadcrumb stays `registry`.
#[test]
fn a_registry_pool_spreads_and_remaps() {
    let (r1, r2) = (Replica::held(), Replica::held());
    let tables = [
        remote("r1", &r1.url(), &["x"], ""),
        remote("r2", &r2.url(), &["x"], ""),
        "[registry]\n\"big\" = { upstreams = [\"r1\", \"r2\"], upstream_model = \"m1\" }\n".into(),
    ]
    .concat();
    let gate = Gate::start("", &tables);
    let hs: Vec<_> = (0..10)
        .map(|_| gate.ask_bg(r#"{"model":"big","messages":[]}"#, &[]))
        .collect();
    let placed = wait_until(WAIT, || r1.served() + r2.served() == 10);
    r1.hold.open();
    r2.hold.open();
    assert!(placed, "only {} + {} placed", r1.served(), r2.served());
    for h in hs {
        let r = h.join().unwrap();
        member(&r);
        assert_eq!(r.header("x-slotgate-route"), Some("registry"));
    }
    assert!(
        r1.served() >= 3 && r2.served() >= 3,
        "{} / {}",
        r1.served(),
        r2.served()
    );
    for m in [r1.models_seen(), r2.models_seen()].concat() {
        assert_eq!(m, "m1");
    }
}

/// `slotgate check` refuses broken pools and chains, every problem by key.
#[test]
fn check_refuses_broken_pools_and_chains() {
    let url = "http://127.0.0.1:9/v1";
    let tables = [
        remote("a", url, &["m"], "fallback = [\"a\", \"nowhere\", \"c\", \"c\"]\nretry_budget_percent = 101"),
        remote("b", url, &["m"], "fallback_model = \" \""),
        "[[upstream]]\nname = \"c\"\nkind = \"composite\"\n".into(),
        "[registry]\n\"p\" = { upstream = \"a\", upstreams = [\"b\"] }\n\"q\" = { upstreams = [\"a\", \"c\", \"a\"] }\n".into(),
    ]
    .concat();
    let text = config(
        "affinity_header = \"bad header\"\naffinity_prefix_bytes = 0",
        &tables,
    );
    let f = support::gate::TempFile::new("pools-check.toml", &text);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_slotgate"))
        .args(["check", "--config"])
        .arg(&f.0)
        .output()
        .unwrap();
    assert!(!out.status.success(), "check passed");
    let all =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    for want in [
        "upstream[0].fallback: an upstream cannot fall back to itself",
        "upstream[0].fallback: unknown upstream 'nowhere'",
        "upstream[0].fallback: 'c' is a composite",
        "upstream[0].fallback: 'c' is listed twice",
        "upstream[0].retry_budget_percent",
        "upstream[1].fallback_model: must not be empty",
        "registry.\"p\": give upstream or upstreams, not both",
        "registry.\"q\": a replica pool cannot hold composite 'c'",
        "registry.\"q\": 'a' is listed twice",
        "routing.affinity_header: must be a header name",
        "routing.affinity_prefix_bytes: must be > 0",
    ] {
        assert!(all.contains(want), "missing {want:?} in:\n{all}");
    }
}

// ---------------------------------------------------------------------------------------------
// Affinity.

/// The member each key lands on, one request per key, every member idle before each.
fn homes(gate: &Gate, members: &[&str], keys: &[String], header: bool) -> Vec<String> {
    keys.iter()
        .map(|k| {
            members.iter().for_each(|m| gate.wait_idle(m));
            let r = if header {
                gate.ask(PLAIN, &[&format!("X-Session-Id: {k}")])
            } else {
                gate.ask(
                    &format!(r#"{{"model":"m1","user":"{k}","messages":[]}}"#),
                    &[],
                )
            };
            member(&r)
        })
        .collect()
}

/// Keys spread over the members and stick to them at equal loads (header and body `user`); a
/// home holding more than `least + affinity_slack` requests loses its key to the least loaded.
#[test]
fn affinity_sticks_below_the_slack_and_moves_above_it() {
    let (a, b) = (Replica::start(), Replica::start());
    let gate = pool_of("container", "affinity_slack = 1", &[("a", &a), ("b", &b)]);
    let keys: Vec<String> = (0..16).map(|i| format!("session-{i}")).collect();
    for header in [true, false] {
        let first = homes(&gate, &["a", "b"], &keys, header);
        assert!(
            first.iter().any(|m| m == "a") && first.iter().any(|m| m == "b"),
            "keys do not steer (header {header}): {first:?}"
        );
        for _ in 0..2 {
            assert_eq!(
                homes(&gate, &["a", "b"], &keys, header),
                first,
                "a key moved at equal loads"
            );
        }
    }

    // Hold the home of one key: two of its requests stay (load 0 and 1 <= 0 + slack) ...
    let key = format!("X-Session-Id: {}", keys[0]);
    let home_name = homes(&gate, &["a", "b"], &keys[..1], true).remove(0);
    let (home, other, other_name) = if home_name == "a" {
        (&a, &b, "b")
    } else {
        (&b, &a, "a")
    };
    gate.wait_idle(&home_name);
    home.hold.close();
    let before = home.served();
    let held: Vec<_> = (1..=2)
        .map(|i| {
            let h = gate.ask_bg(PLAIN, &[&key]);
            assert!(
                wait_until(WAIT, || home.served() == before + i),
                "keyed request {i} did not stick"
            );
            h
        })
        .collect();
    // ... the third finds it at 2 > 0 + 1 and goes to the least loaded.
    gate.wait_idle(other_name);
    let moved = other.served();
    let r = gate.ask_bg(PLAIN, &[&key]);
    let went = wait_until(WAIT, || {
        other.served() == moved + 1 || home.served() == before + 3
    });
    home.hold.open();
    assert!(went);
    assert_eq!(
        member(&r.join().unwrap()),
        other_name,
        "the key stayed above the slack"
    );
    for h in held {
        assert_eq!(member(&h.join().unwrap()), home_name);
    }
}

/// Three members, 30 keys: after one member leaves (a reload without it), keys homed on the
/// others stay where they were; only its own keys move. When it comes back, they all return.
#[test]
fn a_member_leaving_moves_only_its_keys() {
    let reps: Vec<Replica> = (0..3).map(|_| Replica::start()).collect();
    let names = ["a", "b", "c"];
    let table = |n: usize| -> String {
        (0..n)
            .map(|i| local(names[i], "container", &reps[i].url(), ""))
            .collect()
    };
    let gate = Gate::start("", &table(3));
    gate.wait_ready(&names);
    let keys: Vec<String> = (0..30).map(|i| format!("user-{i}")).collect();
    let before = homes(&gate, &names, &keys, true);
    assert!(
        names.iter().all(|n| before.iter().any(|m| m == n)),
        "{before:?}"
    );

    gate.reload("", &table(2));
    assert!(
        wait_until(WAIT, || gate.upstream("c").is_none()),
        "c still configured"
    );
    let after = homes(&gate, &names[..2], &keys, true);
    for (k, (was, now)) in keys.iter().zip(before.iter().zip(&after)) {
        assert_ne!(now, "c", "{k} still on the member that left");
        if was != "c" {
            assert_eq!(now, was, "{k} moved from {was} though its member stayed");
        }
    }

    gate.reload("", &table(3));
    gate.wait_ready(&names);
    assert_eq!(
        homes(&gate, &names, &keys, true),
        before,
        "keys did not return"
    );
}

// ---------------------------------------------------------------------------------------------
// Fallbacks: each trigger, none after the first byte, the retry budget, the cooldown.

/// The primary's chain to the `backup` remote, which serves `m1-backup`.
const CHAIN: &str = "fallback = [\"backup\"]\nfallback_model = \"m1-backup\"\n";

fn backup_table(b: &Replica) -> String {
    remote("backup", &b.url(), &["m1-backup"], "")
}

/// The gate over the `primary` table and the `backup` remote.
fn with_backup(primary: &str, backup: &Replica) -> Gate {
    Gate::start("", &(primary.to_string() + &backup_table(backup)))
}

/// Asserts `r` was served by fallback `to` after `from` could not take it.
fn assert_fell_back(r: &Response, from: &str, to: &str) {
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("x-slotgate-route"),
        Some(format!("fallback:{to}").as_str()),
        "{:?}",
        r.headers
    );
    assert_eq!(r.header("x-slotgate-upstream"), Some(to));
    assert_eq!(r.header("x-slotgate-fallback-from"), Some(from));
}

/// A slot a control plane pushed to `warming` is a trigger; a fallback that is itself loading is
/// skipped for the next one; the body's `model` becomes the first upstream's `fallback_model`.
#[test]
fn a_loading_upstream_falls_back_along_its_chain() {
    let (primary, spare, backup) = (Replica::start(), Replica::start(), Replica::start());
    let tables = [
        local(
            "primary",
            "slot",
            &primary.url(),
            "fallback = [\"spare\", \"backup\"]\nfallback_model = \"m1-backup\"",
        ),
        local("spare", "slot", &spare.url(), "models = [\"spare-m\"]"),
        backup_table(&backup),
    ]
    .concat();
    let gate = Gate::start("", &tables);
    gate.wait_ready(&["primary"]);
    gate.push("primary", "warming");
    gate.push("spare", "warming");
    let r = gate.ask(STREAM, &[]);
    assert_fell_back(&r, "primary", "backup");
    assert!(r.complete);
    assert_eq!(backup.models_seen(), ["m1-backup"]);
    assert_eq!((primary.served(), spare.served()), (0, 0));
    gate.wait_fallbacks("primary", "backup", 1.0);

    gate.push("spare", "ready");
    assert_fell_back(&gate.ask(PLAIN, &[]), "primary", "spare");
    assert_eq!(spare.models_seen(), ["m1-backup"]);
    assert_eq!((primary.served(), backup.served()), (0, 1));
}

/// A registry binding's own `fallback_model` beats the upstream's.
#[test]
fn a_bindings_fallback_model_beats_the_upstreams() {
    let (primary, backup) = (Replica::start(), Replica::start());
    let tables = [
        local("primary", "slot", &primary.url(), CHAIN),
        backup_table(&backup),
        "[registry]\n\"alias\" = { upstream = \"primary\", upstream_model = \"m1\", fallback_model = \"bound-m\" }\n".into(),
    ]
    .concat();
    let gate = Gate::start("", &tables);
    gate.wait_ready(&["primary"]);
    gate.push("primary", "warming");
    assert_fell_back(
        &gate.ask(r#"{"model":"alias","messages":[]}"#, &[]),
        "primary",
        "backup",
    );
    assert_eq!(backup.models_seen(), ["bound-m"]);
    assert_eq!(primary.served(), 0);
}

/// With `on_loading = "hold"` the request waits the whole `hold_timeout_ms` before the chain is
/// tried (the backup sees nothing meanwhile); a slot that becomes ready during the hold serves.
#[test]
fn hold_falls_back_only_after_the_hold_timeout() {
    let (primary, backup) = (Replica::start(), Replica::start());
    let extra = format!("{CHAIN}on_loading = \"hold\"\nhold_timeout_ms = 600");
    let gate = with_backup(&local("primary", "slot", &primary.url(), &extra), &backup);
    gate.wait_ready(&["primary"]);
    gate.push("primary", "warming");
    let held = |n: u64| gate.upstream("primary").is_some_and(|u| u["held"] == n);

    let t0 = Instant::now();
    let h = gate.ask_bg(PLAIN, &[]);
    assert!(wait_until(WAIT, || held(1)), "never held");
    assert_eq!(backup.served(), 0, "fell back during the hold");
    let r = h.join().unwrap();
    assert!(
        t0.elapsed() >= Duration::from_millis(550),
        "fell back after {:?}",
        t0.elapsed()
    );
    assert_fell_back(&r, "primary", "backup");

    let h = gate.ask_bg(PLAIN, &[]);
    assert!(wait_until(WAIT, || held(1)), "never held");
    gate.push("primary", "ready");
    let r = h.join().unwrap();
    assert_eq!(member(&r), "primary");
    assert_eq!(r.header("x-slotgate-fallback-from"), None);
    assert_eq!((primary.served(), backup.served()), (1, 1));
}

/// An upstream at `max_inflight` with a full queue (`max_queue = 0`) is busy: a trigger.
#[test]
fn a_busy_upstream_falls_back() {
    let (primary, backup) = (Replica::held(), Replica::start());
    let extra = format!("{CHAIN}max_inflight = 1\nmax_queue = 0");
    let gate = with_backup(
        &local("primary", "container", &primary.url(), &extra),
        &backup,
    );
    gate.wait_ready(&["primary"]);
    let long = gate.ask_bg(STREAM, &[]);
    assert!(
        wait_until(WAIT, || primary.served() == 1),
        "the long request never arrived"
    );
    let r = gate.ask(PLAIN, &[]);
    primary.hold.open();
    assert_fell_back(&r, "primary", "backup");
    assert_eq!(member(&long.join().unwrap()), "primary");
    assert_eq!((primary.served(), backup.served()), (1, 1));
}

/// An upstream's own error answer: `status` with the body `{"error":"own <status>"}`.
fn own_error(status: u16) -> Vec<Piece> {
    let body = format!(r#"{{"error":"own {status}"}}"#);
    vec![Piece::Bytes(
        format!(
            "HTTP/1.1 {status} Oops\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )]
}

/// A refused connect (502 before any byte) is a trigger; the access log names where the request
/// was first sent.
#[test]
fn a_refused_connect_falls_back() {
    let backup = Replica::start();
    let dead = format!("http://{}/v1", dead_addr());
    let gate = with_backup(&remote("primary", &dead, &["m1"], CHAIN), &backup);
    let r = gate.ask(STREAM, &[]);
    assert_fell_back(&r, "primary", "backup");
    assert!(r.complete);
    assert_eq!(backup.models_seen(), ["m1-backup"]);
    let logged = wait_until(WAIT, || {
        gate.bin
            .log_text()
            .lines()
            .any(|l| l.contains("slotgate::access") && l.contains(r#"fallback_from="primary""#))
    });
    assert!(
        logged,
        "no access line with fallback_from:\n{}",
        gate.bin.log_text()
    );
}

/// An upstream that never answers past `first_byte_ms` (504 before any byte) is a trigger.
#[test]
fn a_first_byte_timeout_falls_back() {
    let backup = Replica::start();
    let primary = Scripted::start(|_| vec![Piece::Stall]);
    let extra = format!("{CHAIN}first_byte_ms = 300");
    let gate = with_backup(&remote("primary", &primary.url(), &["m1"], &extra), &backup);
    assert_fell_back(&gate.ask(PLAIN, &[]), "primary", "backup");
    assert_eq!(primary.seen().len(), 1, "the primary was tried first");
    assert_eq!(backup.served(), 1);
}

/// Once a response byte went to the client there is no fallback: a stream the primary cuts
/// reaches the client cut (no terminating chunk), and the backup sees nothing.
#[test]
fn no_fallback_after_the_first_byte() {
    let backup = Replica::start();
    let primary = Scripted::start(|_| {
        vec![
            Piece::Bytes([SSE_HEAD, &chunk("data: {\"n\":0}\n\n")].concat()),
            Piece::Close,
        ]
    });
    let gate = with_backup(&remote("primary", &primary.url(), &["m1"], CHAIN), &backup);
    let r = gate.ask(STREAM, &[]);
    assert_eq!(member(&r), "primary");
    assert!(!r.complete, "a cut stream has no terminating chunk: {r:?}");
    assert_eq!(sse_data(&r.body), ["{\"n\":0}"]);
    assert_eq!(r.header("x-slotgate-fallback-from"), None);
    assert_eq!(backup.served(), 0);
}

/// An upstream's own error response (500, 503) is relayed as it is, not a trigger.
#[test]
fn an_upstreams_own_error_is_relayed_not_a_trigger() {
    let backup = Replica::start();
    let primary = Scripted::start(|s| {
        own_error(if s.body.windows(4).any(|w| w == b"five") {
            500
        } else {
            503
        })
    });
    let extra = format!("{CHAIN}cooldown_after = 0");
    let gate = with_backup(&remote("primary", &primary.url(), &["m1"], &extra), &backup);
    for (tag, status) in [("five", 500), ("three", 503)] {
        let r = gate.ask(&format!(r#"{{"model":"m1","user":"{tag}"}}"#), &[]);
        assert_eq!(r.status, status, "{}", r.text());
        assert_eq!(r.text(), format!(r#"{{"error":"own {status}"}}"#));
        assert_eq!(r.header("x-slotgate-upstream"), Some("primary"));
    }
    assert_eq!(backup.served(), 0);
}

/// Fallbacks after failed attempts spend the first upstream's retry budget: with
/// `retry_budget_min = 3` (and 10% of 10 requests below it), three fall back within the 10 s
/// window and the rest get the original 502. No cooldown (`cooldown_after = 0`) interferes.
#[test]
fn retry_budget_limits_failure_fallbacks() {
    let backup = Replica::start();
    let dead = format!("http://{}/v1", dead_addr());
    let extra =
        format!("{CHAIN}cooldown_after = 0\nretry_budget_min = 3\nretry_budget_percent = 10");
    let gate = with_backup(&remote("primary", &dead, &["m1"], &extra), &backup);
    let t0 = Instant::now();
    let rs: Vec<Response> = (0..10).map(|_| gate.ask(PLAIN, &[])).collect();
    assert!(
        t0.elapsed() < Duration::from_secs(9),
        "precondition: one budget window"
    );
    for r in &rs[..3] {
        assert_fell_back(r, "primary", "backup");
    }
    for r in &rs[3..] {
        support::gate::assert_error(r, 502, "dispatch.upstream_unavailable");
        assert_eq!(r.header("x-slotgate-fallback-from"), None);
    }
    assert_eq!(backup.served(), 3);
    gate.wait_fallbacks("primary", "backup", 3.0);
    let budget = gate.upstream("primary").unwrap()["retry_budget"].clone();
    assert_eq!(budget["retries"], 3, "{budget}");
}

/// `cooldown_after = 2` first-byte timeouts open the breaker: requests then go straight to the
/// chain without touching the primary; once `cooldown_ms` passed, exactly one trial reaches it
/// (three clients keep asking meanwhile), and its failure opens the breaker again.
#[test]
fn cooldown_skips_a_failing_upstream_then_tries_one() {
    let backup = Replica::start();
    let primary = Scripted::start(|_| vec![Piece::Stall]);
    let extra = format!(
        "{CHAIN}first_byte_ms = 200\ncooldown_after = 2\ncooldown_ms = 1500\nretry_budget_min = 10"
    );
    let tables = [
        remote("primary", &primary.url(), &["m1"], &extra),
        backup_table(&backup),
    ]
    .concat();
    let gate = Arc::new(Gate::start("", &tables));
    for _ in 0..2 {
        assert_fell_back(&gate.ask(PLAIN, &[]), "primary", "backup");
    }
    assert_eq!(primary.seen().len(), 2);
    let cooldown = gate.upstream("primary").unwrap()["cooldown"].clone();
    assert_eq!(cooldown["cooling"], true, "{cooldown}");
    assert_eq!(cooldown["consecutive_failures"], 2, "{cooldown}");
    for _ in 0..3 {
        assert_fell_back(&gate.ask(PLAIN, &[]), "primary", "backup");
    }
    assert_eq!(primary.seen().len(), 2, "tried while cooling");
    assert_eq!(
        primary.accepted.load(Ordering::SeqCst),
        2,
        "connected while cooling"
    );

    let seen = primary.seen.clone();
    let pollers: Vec<_> = (0..3)
        .map(|_| {
            let (gate, seen) = (gate.clone(), seen.clone());
            std::thread::spawn(move || {
                wait_until(WAIT, || {
                    assert_fell_back(&gate.ask(PLAIN, &[]), "primary", "backup");
                    seen.lock().len() >= 3
                })
            })
        })
        .collect();
    for p in pollers {
        assert!(p.join().unwrap(), "no trial after the cooldown");
    }
    for _ in 0..3 {
        assert_fell_back(&gate.ask(PLAIN, &[]), "primary", "backup");
    }
    assert_eq!(primary.seen().len(), 3, "more than one trial");
}

/// A trial answered below 500 closes the breaker: the primary serves again.
#[test]
fn a_good_trial_closes_the_breaker() {
    let backup = Replica::start();
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let h = healthy.clone();
    let primary = Scripted::start(move |_| {
        if h.load(Ordering::SeqCst) {
            vec![Piece::Bytes(json_response(r#"{"choices":[]}"#))]
        } else {
            vec![Piece::Stall]
        }
    });
    let extra = format!(
        "{CHAIN}first_byte_ms = 200\ncooldown_after = 2\ncooldown_ms = 500\nretry_budget_min = 10"
    );
    let gate = with_backup(&remote("primary", &primary.url(), &["m1"], &extra), &backup);
    for _ in 0..2 {
        assert_fell_back(&gate.ask(PLAIN, &[]), "primary", "backup");
    }
    healthy.store(true, Ordering::SeqCst);
    let trial = wait_until(WAIT, || member(&gate.ask(PLAIN, &[])) == "primary");
    assert!(trial, "the primary never got its trial");
    for _ in 0..5 {
        assert_eq!(member(&gate.ask(PLAIN, &[])), "primary");
    }
    assert_eq!(primary.seen().len(), 2 + 6);
}

/// A pool skips a cooling member: `a` answers 500 (relayed, and with `cooldown_after = 1` it
/// opens a's breaker), then every request goes to `b`, though `a` would win the ties.
#[test]
fn a_pool_skips_a_cooling_member() {
    let a = model_server(|_| own_error(500));
    let b = Replica::start();
    let cool = "cooldown_after = 1\ncooldown_ms = 60000";
    let tables = [
        local("a", "container", &a.url(), cool),
        local("b", "container", &b.url(), cool),
    ]
    .concat();
    let gate = Gate::start("", &tables);
    gate.wait_ready(&["a", "b"]);
    let r = gate.ask(PLAIN, &[]);
    assert_eq!(
        (r.status, r.header("x-slotgate-upstream")),
        (500, Some("a"))
    );
    for _ in 0..5 {
        gate.wait_idle("a");
        assert_eq!(member(&gate.ask(PLAIN, &[])), "b");
    }
    let tried = a
        .seen()
        .iter()
        .filter(|s| s.request_line().starts_with("POST"))
        .count();
    assert_eq!(tried, 1, "a cooling member was tried");
}

/// A cooling upstream with no pool and no chain is tried anyway (nothing else could serve).
#[test]
fn a_cooling_upstream_with_nothing_else_is_tried_anyway() {
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    let primary = Scripted::start(move |_| match n2.fetch_add(1, Ordering::SeqCst) {
        0 => own_error(500),
        _ => vec![Piece::Bytes(json_response(r#"{"choices":[]}"#))],
    });
    let extra = "cooldown_after = 1\ncooldown_ms = 60000";
    let gate = Gate::start("", &remote("primary", &primary.url(), &["m1"], extra));
    assert_eq!(gate.ask(PLAIN, &[]).status, 500);
    assert_eq!(member(&gate.ask(PLAIN, &[])), "primary");
    assert_eq!(primary.seen().len(), 2);
}
