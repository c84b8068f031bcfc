//! Whole-path fuzz entry points (`fuzz/fuzz_targets/front_door.rs`, `admin_api.rs`) and the
//! corpus replay test (`tests/it/fuzz_replay.rs`): arbitrary bytes through the same code a live
//! request runs, minus the sockets.
//!
//! [`front_door`]: request head → front-door key check → local endpoints (`/v1/models`,
//! `/v1/models/{id}`) → body facts → dispatch (its fetches treated as done) → the readiness
//! gate's `503 slot.loading` → the replica pick and the first fallback of the chain → the
//! outgoing heads that would be written, or the error answer.
//! [`admin_api`]: one admin request (head and body bytes) through the admin router, as
//! `serve_conn` would answer it. Neither may panic for any input.

use crate::config::Config;
use crate::control::Control;
use crate::http::{Limits, RequestHead, Status};
use crate::proxy::front::{self, Desk};
use crate::proxy::request_id::{IdSource, RequestId};
use crate::routing::{
    dispatch, FetchesDone, LiveState, LiveUpstream, ModelList, ProbeStatus, PushedState, SlotState,
    Snapshot, SnapshotCell, Step,
};
use std::sync::{Arc, OnceLock};

/// The host the fuzzers route on: every upstream kind, a registry with a remap, aliases, a
/// ready container, a loading one, a remote, a composite and front-door keys (on the `keyed`
/// snapshot).
const FIXTURE: &str = r#"
[listen]
addr = "127.0.0.1:0"
admin = ""

[routing]
default_slot = "chat"
aliases = { "agent-x" = "chat" }
affinity = "prefix"
affinity_prefix_bytes = 64

[[upstream]]
name = "chat"
kind = "container"
url = "http://127.0.0.1:9/v1"
fallback = ["or", "embed"]

[[upstream]]
name = "chat2"
kind = "container"
url = "http://127.0.0.1:9/v2/v1"
fallback = ["or"]
fallback_model = "vendor/big-model"

[[upstream]]
name = "embed"
kind = "slot"
url = "http://127.0.0.1:9/v1"
on_loading = "hold"

[[upstream]]
name = "npu"
kind = "container"
url = "http://127.0.0.1:9/v1"
send_request_id = false

[[upstream]]
name = "or"
kind = "remote"
url = "http://127.0.0.1:9/api/v1"
models = ["vendor/big-model", "qwen3:8b"]
auth = { style = "bearer", env = "SLOTGATE_FUZZ_UPSTREAM_KEY" }

[[upstream]]
name = "all"
kind = "composite"

[registry]
"bound" = "chat"
"stale" = "all"
"remapped" = { upstream = "or", upstream_model = "vendor/big-model" }
"pool-bound" = { upstreams = ["chat", "chat2"], upstream_model = "m-chat", fallback_model = "qwen3:8b" }
"#;

struct Fixture {
    open: Snapshot,
    keyed: Snapshot,
}

thread_local! {
    static IDS: IdSource = IdSource::new(7, 0);
}

// One fixture per fuzzing process; the fuzzer runs one input at a time on one thread.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        std::env::set_var("SLOTGATE_FUZZ_UPSTREAM_KEY", "sk-upstream");
        std::env::set_var("SLOTGATE_FUZZ_FRONT_KEYS", "k1,k2");
        let live = live_state();
        let open = Config::from_toml_str(FIXTURE, None).expect("fixture config");
        let keyed = Config::from_toml_str(
            &format!("{FIXTURE}\n[auth]\nkeys_env = \"SLOTGATE_FUZZ_FRONT_KEYS\"\n"),
            None,
        )
        .expect("keyed fixture config");
        Fixture {
            open: Snapshot::build(Arc::new(open), &live, 1),
            keyed: Snapshot::build(Arc::new(keyed), &live, 1),
        }
    })
}

fn live_state() -> LiveState {
    let addr: std::net::SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let mut live = LiveState::default();
    let mut up = |name: &str, ids: &[&str], probe: ProbeStatus, pushed: Option<PushedState>| {
        live.upstreams.insert(
            name.into(),
            LiveUpstream {
                probe,
                models: Arc::new(ModelList {
                    ids: ids.iter().map(|s| s.to_string()).collect(),
                    fetched_at: None,
                }),
                pushed,
                addrs: Arc::from(vec![addr]),
                ..LiveUpstream::default()
            },
        );
    };
    up(
        "chat",
        &["m-chat", "shared", "pooled"],
        ProbeStatus::Passing,
        None,
    );
    up("chat2", &["pooled", "twin"], ProbeStatus::Passing, None);
    up(
        "embed",
        &["e5", "shared"],
        ProbeStatus::Passing,
        Some(PushedState {
            state: SlotState::Warming,
            progress: serde_json::json!({"pct": 40}),
        }),
    );
    up("npu", &["qwen3:0.6b"], ProbeStatus::Failing, None);
    up("or", &[], ProbeStatus::Passing, None);
    live
}

/// Runs `data` as one front-door request; returns what would be written (to the client for a
/// local answer or a refusal, to the upstream for a forwarded request). The first byte picks the
/// snapshot: odd = front-door keys required.
pub fn front_door(data: &[u8]) -> Vec<u8> {
    let f = fixture();
    let Some((&sel, raw)) = data.split_first() else {
        return Vec::new();
    };
    let snap = if sel & 1 == 1 { &f.keyed } else { &f.open };
    let mut head = RequestHead::new();
    let limits = Limits {
        max_header_bytes: 16 * 1024,
        max_headers: 64,
        max_uri_bytes: 8 * 1024,
    };
    let body = match head.parse(raw, &limits) {
        Ok(Status::Complete(n)) => raw.get(n..).unwrap_or_default(),
        Ok(Status::Incomplete) | Err(_) => return Vec::new(),
    };
    let id = IDS.with(|ids| RequestId::of(ids, head.request_id(raw)));
    let id_line = format!("x-request-id: {}\r\n", id.as_str());
    if !front::key_accepted(snap, &head, raw) {
        return b"401".to_vec();
    }
    let load = |_: &str| Some(serde_json::json!({"inflight": 0}));
    let bf = match front::examine(snap, &head, raw, body, &load) {
        Desk::Route(bf) => bf,
        Desk::Json(body) => return body,
        Desk::Error(reply) => return reply.to_response(&id_line, true),
    };
    let rf = front::request_facts(&head, raw, &bf);
    let mut done = FetchesDone::new();
    // Dispatch asks for at most a few fetches; treat each as done (nothing new learned).
    for _ in 0..8 {
        match dispatch(snap, &rf, &done) {
            Step::Fetch(req) => done.mark(&req),
            Step::Decided(Err(e)) => return e.to_reply().to_response(&id_line, true),
            Step::Decided(Ok(mut decision)) => {
                // The replica pick (affinity key from the header, `user` or `messages`), then,
                // as a fallback would, the first upstream of its chain that can take it.
                let key = front::affinity(snap, &head, raw, &bf, body);
                crate::proxy::admit::pick_member(snap, &rf, &mut decision, key);
                let mut chain = crate::proxy::chain::Chain::new(decision.upstream);
                let fallback = chain
                    .next(snap, crate::proxy::chain::Trigger::Loading)
                    .map(|to| decision.fallback(snap, &rf, to));
                let mut out = Vec::new();
                for d in std::iter::once(&decision).chain(fallback.as_ref()) {
                    let entry = snap.upstream(d.upstream);
                    if !entry.state().is_ready() {
                        let id = rf.id(&snap.config.routing);
                        let reply = crate::proxy::loading_reply(snap, entry, id);
                        out.extend_from_slice(&reply.to_response(&id_line, true));
                        continue;
                    }
                    let (head_out, apart) = front::outgoing(&head, raw, d, entry, &bf, body, &id);
                    out.extend_from_slice(&head_out);
                    if apart {
                        out.extend_from_slice(body);
                    }
                    let _ = d.route_header(snap);
                }
                return out;
            }
        }
    }
    Vec::new()
}

/// Runs `data` as one admin request (head, then body bytes) on a control plane over the fixture
/// config; returns the answer's bytes.
pub fn admin_api(data: &[u8]) -> Vec<u8> {
    static C: OnceLock<Arc<Control>> = OnceLock::new();
    let control = C.get_or_init(|| {
        fixture();
        let cfg = Config::from_toml_str(FIXTURE, None).expect("fixture config");
        let live = live_state();
        let cell = Arc::new(SnapshotCell::new(Snapshot::build(
            Arc::new(cfg.clone()),
            &live,
            1,
        )));
        Control::new(cfg, cell)
    });
    crate::control::admin::answer_bytes(control, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pool seeds reach the replica pick and the fallback: two outgoing requests, the
    /// member's with the binding's `upstream_model`, the fallback's with its `fallback_model`.
    #[test]
    fn pool_seeds_reach_the_pick_and_the_fallback() {
        let seed = std::fs::read("fuzz/corpus/front_door/seed-pool-binding-user").unwrap();
        let out = String::from_utf8(front_door(&seed)).unwrap();
        assert_eq!(out.matches("POST ").count(), 2, "{out}");
        assert!(out.contains(r#""model":"m-chat""#), "{out}");
        assert!(out.contains(r#""model":"qwen3:8b""#), "{out}");
        let seed = std::fs::read("fuzz/corpus/front_door/seed-pool-session").unwrap();
        let out = String::from_utf8(front_door(&seed)).unwrap();
        assert_eq!(out.matches("POST ").count(), 2, "{out}");
    }
}
