//! Table tests of the five-step dispatch (DESIGN.md §2): fixtures in, decision and breadcrumb out.

use super::*;
use crate::config::{Config, UpstreamKind};
use crate::error::{ErrorCode, ErrorReply};
use std::future::Future;
use std::sync::Arc;

/// The host most rows run on: every kind of upstream, the capability names, a composite binding.
const BASE: &str = r#"
[routing]
default_slot = "agent"
aliases = { "agent-hermes" = "agent", "big-coder" = "coder" }

[[upstream]]
name = "agent"
kind = "slot"
url = "http://127.0.0.1:8101/v1"
[[upstream]]
name = "chat"
kind = "container"
url = "http://127.0.0.1:8102/v1"
[[upstream]]
name = "coder"
kind = "slot"
url = "http://127.0.0.1:8103/v1"
[[upstream]]
name = "embed"
kind = "container"
url = "http://127.0.0.1:8104/v1"
[[upstream]]
name = "rerank"
kind = "container"
url = "http://127.0.0.1:8105/v1"
[[upstream]]
name = "tts"
kind = "container"
url = "http://127.0.0.1:8106/v1"
[[upstream]]
name = "img"
kind = "container"
url = "http://127.0.0.1:8107/v1"
[[upstream]]
name = "npu"
kind = "slot"
url = "http://127.0.0.1:8108/v1"
[[upstream]]
name = "openrouter"
kind = "remote"
url = "https://openrouter.ai/api/v1"
[[upstream]]
name = "groq"
kind = "remote"
url = "https://api.groq.com/openai/v1"
[[upstream]]
name = "local"
kind = "composite"

[registry]
"qwopus3.6-27b-v2" = "local"
"gpt-4o-mini" = { upstream = "openrouter", upstream_model = "openai/gpt-4o-mini" }
"coder-model" = "coder"
"pinned-coder" = { upstream = "coder", upstream_model = "qwen-coder-32b-q8" }
"agent-model" = "agent"
"kokoro" = "tts"
"or-model" = "openrouter"
"#;

/// No `embed`, `npu` or `agent`; `rerank` is a remote; a composite with a static model list.
const SPARSE: &str = r#"
[routing]
default_slot = "agent"

[[upstream]]
name = "chat"
kind = "container"
url = "http://127.0.0.1:8102/v1"
[[upstream]]
name = "rerank"
kind = "remote"
url = "https://rerank.example.com/v1"
models = ["rr-1"]
[[upstream]]
name = "local"
kind = "composite"
models = ["ghost"]
"#;

/// Path defaults as ids: a container, a slot with bindings for `rerank` and `tts`, a remote.
const DEFAULTS: &str = r#"
[routing]
default_slot = "agent"

[[upstream]]
name = "agent"
kind = "slot"
url = "http://127.0.0.1:8101/v1"

[[upstream]]
name = "e5"
kind = "container"
url = "http://127.0.0.1:8111/v1"

[[upstream]]
name = "gpu"
kind = "slot"
url = "http://127.0.0.1:8112/v1"

[[upstream]]
name = "rr"
kind = "remote"
url = "https://rr.example.com/v1"

[registry]
"rerank" = "gpu"
"tts" = { upstream = "gpu", upstream_model = "kokoro-82m" }
"#;

/// Replica pools: two GPU containers, two slots bound as a pool, two remotes, a fallback chain.
const POOLS: &str = r#"
[[upstream]]
name = "gpu1"
kind = "container"
url = "http://127.0.0.1:8121/v1"
[[upstream]]
name = "gpu0"
kind = "container"
url = "http://127.0.0.1:8120/prefix/v1"
[[upstream]]
name = "slot-a"
kind = "slot"
url = "http://127.0.0.1:8122/v1"
fallback = ["or"]
fallback_model = "openai/gpt-4o-mini"
[[upstream]]
name = "slot-b"
kind = "slot"
url = "http://127.0.0.1:8123/v1"
[[upstream]]
name = "or"
kind = "remote"
url = "https://or.example.com/api/v1"
[[upstream]]
name = "or2"
kind = "remote"
url = "https://or2.example.com/v1"

[registry]
"qwen3-8b" = { upstreams = ["slot-b", "slot-a"] }
"qwen3-8b-q8" = { upstreams = ["slot-a", "slot-b"], upstream_model = "qwen3-8b-q8_0", fallback_model = "qwen/qwen3-8b" }
"single" = { upstreams = ["slot-a"] }
"#;

/// Like SPARSE but with the default anchor present.
const ANCHORED: &str = r#"
[routing]
default_slot = "agent"

[[upstream]]
name = "agent"
kind = "slot"
url = "http://127.0.0.1:8101/v1"
[[upstream]]
name = "local"
kind = "composite"
models = ["ghost"]
"#;

type Caches = &'static [(&'static str, &'static [&'static str])];

/// What a row expects.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// Upstream name, breadcrumb, outgoing path, remap.
    Route(
        &'static str,
        &'static str,
        &'static str,
        Option<&'static str>,
    ),
    /// `dispatch.no_route` with this candidate.
    NoRoute(&'static str),
}

#[derive(Debug, Clone, Copy)]
struct Row {
    name: &'static str,
    toml: &'static str,
    /// Warm caches before the request (remotes of BASE get [`REMOTES`] unless `cold_remotes`).
    warm: Caches,
    /// Upstreams whose probe passes.
    passing: &'static [&'static str],
    /// Upstreams whose probe fails.
    failing: &'static [&'static str],
    /// Leave BASE's remotes cold (step 3 then prefetches).
    cold_remotes: bool,
    /// Caches a fetch of these upstreams brings back.
    after: Caches,
    target: &'static str,
    model: Option<&'static str>,
    want: Want,
    /// Expected fetches, `reason:name,name`.
    fetches: &'static [&'static str],
    /// The replica pool the decision carries (empty: none).
    pool: &'static [&'static str],
}

const REMOTES: Caches = &[
    (
        "openrouter",
        &[
            "openai/gpt-4o-mini",
            "anthropic/claude-3.5-sonnet",
            "shared",
        ],
    ),
    ("groq", &["llama-3.3-70b-versatile", "shared"]),
];

const R: Row = Row {
    name: "",
    toml: BASE,
    warm: &[],
    passing: &[],
    failing: &[],
    cold_remotes: false,
    after: &[],
    target: "/v1/chat/completions",
    model: None,
    want: Want::NoRoute(""),
    fetches: &[],
    pool: &[],
};

const CHAT: &str = "/v1/chat/completions";

fn live_of(snap_cfg: &Config, row: &Row, extra: Caches, only: Option<&[String]>) -> LiveState {
    let mut live = LiveState::default();
    let is_base = row.toml == BASE;
    for u in &snap_cfg.upstreams {
        let key = u.name.as_str().into();
        let mut l = LiveUpstream::default();
        if row.passing.contains(&u.name.as_str()) {
            l.probe = ProbeStatus::Passing;
        }
        if row.failing.contains(&u.name.as_str()) {
            l.probe = ProbeStatus::Failing;
        }
        let mut ids: Option<&[&str]> = None;
        if is_base && !row.cold_remotes {
            ids = REMOTES.iter().find(|(n, _)| *n == u.name).map(|(_, m)| *m);
        }
        if let Some((_, m)) = row.warm.iter().find(|(n, _)| *n == u.name) {
            ids = Some(m);
        }
        if only.is_none_or(|names| names.contains(&u.name)) {
            if let Some((_, m)) = extra.iter().find(|(n, _)| *n == u.name) {
                ids = Some(m);
            }
        }
        if let Some(ids) = ids {
            l.models = Arc::new(ModelList {
                ids: ids.iter().map(|s| s.to_string()).collect(),
                fetched_at: None,
            });
        }
        live.upstreams.insert(key, l);
    }
    live
}

/// Runs one row through `dispatch_blocking`, checking the verdict and the fetches asked for.
fn check(row: &Row) {
    let cfg = Arc::new(Config::from_toml_str(row.toml, None).expect("fixture config"));
    let live = live_of(&cfg, row, &[], None);
    let snap = Snapshot::build(cfg.clone(), &live, 1);
    let facts = RequestFacts::new("POST", row.target).with_model(row.model);
    let mut fetched: Vec<String> = Vec::new();
    // A fetch brings back `row.after` for its targets only; everything fetched so far stays warm.
    let mut done_names: Vec<String> = Vec::new();
    let mut epoch = 1;
    let mut fetch = |req: &FetchRequest| {
        let names: Vec<String> = req.targets.iter().map(|t| t.name.clone()).collect();
        fetched.push(format!("{}:{}", req.reason.as_str(), names.join(",")));
        done_names.extend(names);
        epoch += 1;
        Arc::new(Snapshot::build(
            cfg.clone(),
            &live_of(&cfg, row, row.after, Some(&done_names)),
            epoch,
        ))
    };
    let routed = dispatch_blocking(&snap, &facts, &mut fetch);
    let final_snap = routed.snapshot.as_deref().unwrap_or(&snap);
    let name = row.name;
    match (row.want, &routed.result) {
        (Want::Route(up, crumb, path, remap), Ok(d)) => {
            let u = final_snap.upstream(d.upstream);
            assert_ne!(
                u.kind(),
                UpstreamKind::Composite,
                "{name}: forwarded to a composite"
            );
            assert_eq!(u.name(), up, "{name}: upstream");
            assert_eq!(d.route_header(final_snap), crumb, "{name}: breadcrumb");
            assert_eq!(
                d.breadcrumb.render(u.name()),
                crumb,
                "{name}: rendered breadcrumb"
            );
            assert_eq!(d.path, path, "{name}: outgoing path");
            assert_eq!(d.remap.as_deref(), remap, "{name}: remap");
            let pool: Vec<&str> = d
                .pool
                .map(|p| final_snap.pool(p))
                .unwrap_or_default()
                .iter()
                .map(|m| final_snap.upstream(m.id).name())
                .collect();
            assert_eq!(pool, row.pool, "{name}: pool");
        }
        (Want::NoRoute(cand), Err(e)) => {
            let DispatchError::NoRoute { candidate, .. } = e;
            assert_eq!(candidate, cand, "{name}: candidate");
            assert_eq!(e.code(), ErrorCode::NoRoute);
        }
        (want, got) => panic!("{name}: wanted {want:?}, got {got:?}"),
    }
    assert_eq!(fetched, row.fetches, "{name}: fetches");
}

fn rows() -> Vec<Row> {
    use Want::*;
    vec![
        // Replica pools: several upstreams qualify at the same step.
        Row {
            name: "pool: two containers advertise the id (step 0), first by name",
            toml: POOLS,
            warm: &[("gpu1", &["llama-70b"]), ("gpu0", &["llama-70b"])],
            model: Some("llama-70b"),
            want: Route(
                "gpu0",
                "container:gpu0",
                "/prefix/v1/chat/completions",
                None,
            ),
            pool: &["gpu0", "gpu1"],
            ..R
        },
        Row {
            name: "pool: one container advertises, no pool",
            toml: POOLS,
            warm: &[("gpu1", &["llama-70b"]), ("gpu0", &["other"])],
            model: Some("llama-70b"),
            want: Route("gpu1", "container:gpu1", CHAT, None),
            ..R
        },
        Row {
            name: "pool: a binding to a list, members warm (step 1), name order",
            toml: POOLS,
            warm: &[("slot-a", &["qwen3-8b"]), ("slot-b", &["qwen3-8b"])],
            model: Some("qwen3-8b"),
            want: Route("slot-a", "registry", CHAT, None),
            pool: &["slot-a", "slot-b"],
            ..R
        },
        Row {
            name: "pool: a binding's offline member is left out of the pool",
            toml: POOLS,
            warm: &[("slot-b", &["qwen3-8b"])],
            failing: &["slot-a"],
            after: &[],
            model: Some("qwen3-8b"),
            want: Route("slot-b", "registry", CHAT, None),
            fetches: &["one_shot:slot-a"],
            ..R
        },
        Row {
            name: "pool: cold bound slots are fetched once, together, then pooled",
            toml: POOLS,
            after: &[("slot-a", &["qwen3-8b"]), ("slot-b", &["qwen3-8b"])],
            model: Some("qwen3-8b"),
            want: Route("slot-a", "registry", CHAT, None),
            fetches: &["one_shot:slot-a,slot-b"],
            pool: &["slot-a", "slot-b"],
            ..R
        },
        Row {
            name: "pool: upstream_model applies to the member picked",
            toml: POOLS,
            warm: &[("slot-a", &["x"]), ("slot-b", &["y"])],
            model: Some("qwen3-8b-q8"),
            want: Route("slot-a", "registry", CHAT, Some("qwen3-8b-q8_0")),
            pool: &["slot-a", "slot-b"],
            ..R
        },
        Row {
            name: "pool: a one-name list is a plain binding",
            toml: POOLS,
            warm: &[("slot-a", &["x"])],
            model: Some("single"),
            want: Route("slot-a", "registry", CHAT, Some("x")),
            ..R
        },
        Row {
            name: "pool: same-rank upstreams advertise the id (step 2)",
            toml: POOLS,
            warm: &[("or2", &["shared"]), ("or", &["shared"])],
            model: Some("shared"),
            want: Route("or", "passthrough:or", "/api/v1/chat/completions", None),
            pool: &["or", "or2"],
            ..R
        },
        Row {
            name: "pool: step 2 never mixes ranks (a slot beats remotes alone)",
            toml: POOLS,
            warm: &[
                ("or", &["shared"]),
                ("slot-b", &["shared"]),
                ("or2", &["shared"]),
            ],
            model: Some("shared"),
            want: Route("slot-b", "passthrough:slot-b", CHAT, None),
            ..R
        },
        // Step 0: container preemption.
        Row {
            name: "original bug: container beats a composite binding",
            warm: &[("chat", &["qwopus3.6-27b-v2"])],
            model: Some("qwopus3.6-27b-v2"),
            want: Route("chat", "container:chat", CHAT, None),
            ..R
        },
        Row {
            name: "container beats a binding to a warm slot",
            warm: &[("chat", &["agent-model"]), ("agent", &["agent-model"])],
            model: Some("agent-model"),
            want: Route("chat", "container:chat", CHAT, None),
            ..R
        },
        Row {
            name: "container beats a binding to a remote",
            warm: &[("img", &["gpt-4o-mini"])],
            model: Some("gpt-4o-mini"),
            want: Route("img", "container:img", CHAT, None),
            ..R
        },
        Row {
            name: "first container by name wins (both form a pool)",
            warm: &[("embed", &["twin"]), ("chat", &["twin"])],
            model: Some("twin"),
            want: Route("chat", "container:chat", CHAT, None),
            pool: &["chat", "embed"],
            ..R
        },
        Row {
            name: "container beats a slot listed earlier in the same rank",
            warm: &[("agent", &["both"]), ("chat", &["both"])],
            model: Some("both"),
            want: Route("chat", "container:chat", CHAT, None),
            ..R
        },
        Row {
            name: "model id is trimmed",
            warm: &[("chat", &["qwopus3.6-27b-v2"])],
            model: Some("  qwopus3.6-27b-v2\t"),
            want: Route("chat", "container:chat", CHAT, None),
            ..R
        },
        Row {
            name: "container hit keeps the query string",
            warm: &[("chat", &["m1"])],
            target: "/v1/chat/completions?api-version=2024-01&x=1",
            model: Some("m1"),
            want: Route(
                "chat",
                "container:chat",
                "/v1/chat/completions?api-version=2024-01&x=1",
                None,
            ),
            ..R
        },
        Row {
            name: "container hit on the embeddings path wins over the path pin",
            warm: &[("chat", &["nomic-embed-text"])],
            target: "/v1/embeddings",
            model: Some("nomic-embed-text"),
            want: Route("chat", "container:chat", "/v1/embeddings", None),
            ..R
        },
        // Step 1: registry.
        Row {
            name: "composite binding with nobody advertising falls to the anchor",
            model: Some("qwopus3.6-27b-v2"),
            want: Route("agent", "capability:agent", CHAT, None),
            ..R
        },
        Row {
            name: "composite binding falls through to passthrough on a slot",
            warm: &[("coder", &["qwopus3.6-27b-v2"])],
            model: Some("qwopus3.6-27b-v2"),
            want: Route("coder", "passthrough:coder", CHAT, None),
            ..R
        },
        Row {
            name: "non-container model bound in the registry routes via registry",
            warm: &[("coder", &["coder-model"])],
            model: Some("coder-model"),
            want: Route("coder", "registry", CHAT, None),
            ..R
        },
        Row {
            name: "slot as truth: warm cache lacking the id rewrites to the first advertised",
            warm: &[("coder", &["qwen-coder-32b", "other"])],
            model: Some("coder-model"),
            want: Route("coder", "registry", CHAT, Some("qwen-coder-32b")),
            ..R
        },
        Row {
            name: "upstream_model is forwarded to a remote",
            model: Some("gpt-4o-mini"),
            want: Route(
                "openrouter",
                "registry",
                "/api/v1/chat/completions",
                Some("openai/gpt-4o-mini"),
            ),
            ..R
        },
        Row {
            name: "upstream_model wins over slot as truth",
            warm: &[("coder", &["something-else"])],
            model: Some("pinned-coder"),
            want: Route("coder", "registry", CHAT, Some("qwen-coder-32b-q8")),
            ..R
        },
        Row {
            name: "registry hit on a cold container with a passing probe",
            passing: &["tts"],
            target: "/v1/audio/speech",
            model: Some("kokoro"),
            want: Route("tts", "registry", "/v1/audio/speech", None),
            ..R
        },
        Row {
            name: "offline bound container falls through (no fetch for containers)",
            target: "/v1/audio/speech",
            model: Some("kokoro"),
            want: Route("tts", "capability:tts", "/v1/audio/speech", None),
            ..R
        },
        Row {
            name: "cold slot gets a one-shot fetch, then slot as truth",
            after: &[("coder", &["qwen-coder-32b"])],
            model: Some("coder-model"),
            want: Route("coder", "registry", CHAT, Some("qwen-coder-32b")),
            fetches: &["one_shot:coder"],
            ..R
        },
        Row {
            name: "cold slot fetch finds the id itself: no remap",
            after: &[("coder", &["x", "coder-model"])],
            model: Some("coder-model"),
            want: Route("coder", "registry", CHAT, None),
            fetches: &["one_shot:coder"],
            ..R
        },
        Row {
            name: "cold slot, fetch brings nothing, probe passing: online",
            passing: &["coder"],
            model: Some("coder-model"),
            want: Route("coder", "registry", CHAT, None),
            fetches: &["one_shot:coder"],
            ..R
        },
        Row {
            name: "cold slot, fetch brings nothing, probe failing: falls through",
            failing: &["coder"],
            model: Some("coder-model"),
            want: Route("agent", "capability:agent", CHAT, None),
            fetches: &["one_shot:coder"],
            ..R
        },
        Row {
            name: "offline bound slot falls through to passthrough",
            warm: &[("groq", &["coder-model"])],
            model: Some("coder-model"),
            want: Route(
                "groq",
                "passthrough:groq",
                "/openai/v1/chat/completions",
                None,
            ),
            fetches: &["one_shot:coder"],
            ..R
        },
        Row {
            name: "bound cold remote: prefetch warms it, then the registry",
            cold_remotes: true,
            after: &[("openrouter", &["openai/gpt-4o-mini"])],
            model: Some("gpt-4o-mini"),
            want: Route(
                "openrouter",
                "registry",
                "/api/v1/chat/completions",
                Some("openai/gpt-4o-mini"),
            ),
            fetches: &["prefetch:groq,openrouter"],
            ..R
        },
        Row {
            name: "bound remote without upstream_model, warm without the id: slot as truth",
            warm: &[("openrouter", &["first/model"])],
            model: Some("or-model"),
            want: Route(
                "openrouter",
                "registry",
                "/api/v1/chat/completions",
                Some("first/model"),
            ),
            ..R
        },
        // Step 2: passthrough.
        Row {
            name: "passthrough to a remote keeps its base path",
            model: Some("llama-3.3-70b-versatile"),
            want: Route(
                "groq",
                "passthrough:groq",
                "/openai/v1/chat/completions",
                None,
            ),
            ..R
        },
        Row {
            name: "passthrough: local slot before remote",
            warm: &[("agent", &["shared"])],
            model: Some("shared"),
            want: Route("agent", "passthrough:agent", CHAT, None),
            ..R
        },
        Row {
            name: "passthrough: remotes by name (both form a pool)",
            model: Some("shared"),
            want: Route(
                "groq",
                "passthrough:groq",
                "/openai/v1/chat/completions",
                None,
            ),
            pool: &["groq", "openrouter"],
            ..R
        },
        Row {
            name: "passthrough to a slot",
            warm: &[("npu", &["deepseek-r1"])],
            model: Some("deepseek-r1"),
            want: Route("npu", "passthrough:npu", CHAT, None),
            ..R
        },
        Row {
            name: "passthrough keeps the query on a remote with a prefixed base",
            target: "/v1/messages?beta=true",
            model: Some("anthropic/claude-3.5-sonnet"),
            want: Route(
                "openrouter",
                "passthrough:openrouter",
                "/api/v1/messages?beta=true",
                None,
            ),
            ..R
        },
        Row {
            name: "composite's static models are never passed through",
            toml: ANCHORED,
            model: Some("ghost"),
            want: Route("agent", "capability:agent", CHAT, None),
            ..R
        },
        Row {
            name: "model ids match exactly (case-sensitive)",
            warm: &[("chat", &["Qwopus"])],
            model: Some("qwopus"),
            want: Route("agent", "capability:agent", CHAT, None),
            ..R
        },
        // Step 3: cold prefetch.
        Row {
            name: "prefetch only the cold remote, then prefetched:",
            warm: &[("groq", &["g1"])],
            cold_remotes: true,
            after: &[("openrouter", &["mistral/x"])],
            model: Some("mistral/x"),
            want: Route(
                "openrouter",
                "prefetched:openrouter",
                "/api/v1/chat/completions",
                None,
            ),
            fetches: &["prefetch:openrouter"],
            ..R
        },
        Row {
            name: "prefetch every cold remote at once",
            cold_remotes: true,
            after: &[("openrouter", &["z"]), ("groq", &["z"])],
            model: Some("z"),
            want: Route(
                "groq",
                "prefetched:groq",
                "/openai/v1/chat/completions",
                None,
            ),
            fetches: &["prefetch:groq,openrouter"],
            pool: &["groq", "openrouter"],
            ..R
        },
        Row {
            name: "prefetch bringing nothing goes to capability",
            cold_remotes: true,
            model: Some("unknown-model"),
            want: Route("agent", "capability:agent", CHAT, None),
            fetches: &["prefetch:groq,openrouter"],
            ..R
        },
        Row {
            name: "no cold remote: no prefetch",
            model: Some("unknown-model"),
            want: Route("agent", "capability:agent", CHAT, None),
            ..R
        },
        Row {
            name: "no model: the path default 'agent' takes step 3 too (cold remotes prefetched)",
            cold_remotes: true,
            want: Route("agent", "capability:agent", CHAT, None),
            fetches: &["prefetch:groq,openrouter"],
            ..R
        },
        Row {
            name: "one-shot then prefetch in one request",
            cold_remotes: true,
            after: &[("groq", &["coder-model"])],
            model: Some("coder-model"),
            want: Route(
                "groq",
                "prefetched:groq",
                "/openai/v1/chat/completions",
                None,
            ),
            fetches: &["one_shot:coder", "prefetch:groq,openrouter"],
            ..R
        },
        // Step 4: path pins.
        Row {
            name: "/v1/embeddings -> embed",
            target: "/v1/embeddings",
            model: Some("text-embedding-3-small"),
            want: Route("embed", "capability:embed", "/v1/embeddings", None),
            ..R
        },
        Row {
            name: "/v1/rerank -> rerank",
            target: "/v1/rerank",
            model: Some("bge-reranker-v2-m3"),
            want: Route("rerank", "capability:rerank", "/v1/rerank", None),
            ..R
        },
        Row {
            name: "/v1/rerankings -> rerank, rewritten",
            target: "/v1/rerankings?top=3",
            model: Some("jina-reranker"),
            want: Route("rerank", "capability:rerank", "/v1/rerank?top=3", None),
            ..R
        },
        Row {
            name: "/v1/audio/speech -> tts",
            target: "/v1/audio/speech",
            model: Some("tts-1"),
            want: Route("tts", "capability:tts", "/v1/audio/speech", None),
            ..R
        },
        Row {
            name: "/v1/images/generations -> img",
            target: "/v1/images/generations",
            model: Some("dall-e-3"),
            want: Route("img", "capability:img", "/v1/images/generations", None),
            ..R
        },
        Row {
            name: "/v1/images/edits -> img",
            target: "/v1/images/edits",
            model: Some("gpt-image-1"),
            want: Route("img", "capability:img", "/v1/images/edits", None),
            ..R
        },
        Row {
            name: "/v1/images/variations -> img",
            target: "/v1/images/variations",
            model: Some("dall-e-2"),
            want: Route("img", "capability:img", "/v1/images/variations", None),
            ..R
        },
        // Step 4: model-id rules.
        Row {
            name: "name:tag -> npu",
            model: Some("llama3.2:3b"),
            want: Route("npu", "capability:npu", CHAT, None),
            ..R
        },
        Row {
            name: "sdxl prefix -> img",
            model: Some("sdxl-turbo"),
            want: Route("img", "capability:img", CHAT, None),
            ..R
        },
        Row {
            name: "sd-1.5 prefix, case-insensitive -> img",
            model: Some("SD-1.5-inpainting"),
            want: Route("img", "capability:img", CHAT, None),
            ..R
        },
        Row {
            name: "sd15 prefix -> img",
            model: Some("sd15-lcm"),
            want: Route("img", "capability:img", CHAT, None),
            ..R
        },
        Row {
            name: "flux prefix, case-insensitive -> img",
            model: Some("FLUX.1-dev"),
            want: Route("img", "capability:img", CHAT, None),
            ..R
        },
        Row {
            name: "prefix only at the start",
            model: Some("my-flux-model"),
            want: Route("agent", "capability:agent", CHAT, None),
            ..R
        },
        Row {
            name: "embed hint -> embed",
            model: Some("nomic-Embed-text-v1.5"),
            want: Route("embed", "capability:embed", CHAT, None),
            ..R
        },
        Row {
            name: "rerank hint -> embed",
            model: Some("bge-reranker-large"),
            want: Route("embed", "capability:embed", CHAT, None),
            ..R
        },
        Row {
            name: "local upstream name -> that upstream",
            model: Some("coder"),
            want: Route("coder", "capability:coder", CHAT, None),
            ..R
        },
        Row {
            name: "local upstream name, case-insensitive",
            model: Some("CoDeR"),
            want: Route("coder", "capability:coder", CHAT, None),
            ..R
        },
        Row {
            name: "alias to the anchor",
            model: Some("agent-hermes"),
            want: Route("agent", "capability:agent", CHAT, None),
            ..R
        },
        Row {
            name: "alias, case-insensitive",
            model: Some("Agent-HERMES"),
            want: Route("agent", "capability:agent", CHAT, None),
            ..R
        },
        Row {
            name: "alias to another slot",
            model: Some("BIG-CODER"),
            want: Route("coder", "capability:coder", CHAT, None),
            ..R
        },
        Row {
            name: "container name as model id",
            model: Some("chat"),
            want: Route("chat", "capability:chat", CHAT, None),
            ..R
        },
        Row {
            name: "remote name as model id is not a candidate: anchor",
            model: Some("openrouter"),
            want: Route("agent", "capability:agent", CHAT, None),
            ..R
        },
        Row {
            name: "composite name as model id is not a candidate: anchor",
            model: Some("local"),
            want: Route("agent", "capability:agent", CHAT, None),
            ..R
        },
        Row {
            name: "unknown model -> default anchor",
            model: Some("mystery-7b"),
            want: Route("agent", "capability:agent", CHAT, None),
            ..R
        },
        // Step 4: candidates must be local.
        Row {
            name: "pinned candidate missing -> 404",
            toml: SPARSE,
            target: "/v1/embeddings",
            model: Some("e5"),
            want: NoRoute("embed"),
            ..R
        },
        Row {
            name: "pinned candidate is a remote -> 404",
            toml: SPARSE,
            target: "/v1/rerank",
            model: Some("x-reranker"),
            want: NoRoute("rerank"),
            ..R
        },
        Row {
            name: "image prefix is pinned -> 404 when img is missing",
            toml: SPARSE,
            model: Some("flux-schnell"),
            want: NoRoute("img"),
            ..R
        },
        Row {
            name: "default anchor missing -> 404",
            toml: SPARSE,
            model: Some("mystery"),
            want: NoRoute("agent"),
            ..R
        },
        Row {
            name: "composite with static models is not forwarded; anchor missing -> 404",
            toml: SPARSE,
            model: Some("ghost"),
            want: NoRoute("agent"),
            ..R
        },
        Row {
            name: "npu hint missing -> 404 naming npu, never the anchor's model",
            toml: ANCHORED,
            model: Some("qwen3:4b"),
            want: NoRoute("npu"),
            ..R
        },
        Row {
            name: "embed hint missing, anchor present -> 404 naming embed",
            toml: ANCHORED,
            model: Some("nomic-embed-text"),
            want: NoRoute("embed"),
            ..R
        },
        Row {
            name: "embed hint missing, anchor missing -> 404 naming embed",
            toml: SPARSE,
            model: Some("nomic-embed"),
            want: NoRoute("embed"),
            ..R
        },
        Row {
            name: "remote passthrough still works without local candidates",
            toml: SPARSE,
            model: Some("rr-1"),
            want: Route("rerank", "passthrough:rerank", CHAT, None),
            ..R
        },
        // Path defaults when the model is absent.
        Row {
            name: "no model: /embeddings -> embed",
            target: "/v1/embeddings",
            want: Route("embed", "capability:embed", "/v1/embeddings", None),
            ..R
        },
        Row {
            name: "no model: /rerankings -> rerank, rewritten",
            target: "/v1/rerankings",
            want: Route("rerank", "capability:rerank", "/v1/rerank", None),
            ..R
        },
        Row {
            name: "no model: /audio/speech -> tts",
            target: "/v1/audio/speech",
            want: Route("tts", "capability:tts", "/v1/audio/speech", None),
            ..R
        },
        Row {
            name: "no model: any /images/ path -> img",
            target: "/v1/images/upscale",
            want: Route("img", "capability:img", "/v1/images/upscale", None),
            ..R
        },
        Row {
            name: "no model: anything else -> default anchor",
            target: "/v1/audio/transcriptions?lang=en",
            want: Route(
                "agent",
                "capability:agent",
                "/v1/audio/transcriptions?lang=en",
                None,
            ),
            ..R
        },
        Row {
            name: "blank model counts as absent",
            target: "/v1/embeddings",
            model: Some("   "),
            want: Route("embed", "capability:embed", "/v1/embeddings", None),
            ..R
        },
        Row {
            name: "no model and no anchor -> 404",
            toml: SPARSE,
            want: NoRoute("agent"),
            ..R
        },
        // The path default is the id at steps 0-3 too (DESIGN.md §2 "Input").
        Row {
            name: "no model: a container advertising the path default wins (step 0)",
            toml: DEFAULTS,
            target: "/v1/embeddings",
            warm: &[("e5", &["embed"])],
            want: Route("e5", "container:e5", "/v1/embeddings", None),
            ..R
        },
        Row {
            name: "no model: a registry binding of the path default, slot as truth",
            toml: DEFAULTS,
            target: "/v1/rerank",
            warm: &[("gpu", &["bge-m3"])],
            want: Route("gpu", "registry", "/v1/rerank", Some("bge-m3")),
            ..R
        },
        Row {
            name: "no model: a registry binding of the path default with upstream_model",
            toml: DEFAULTS,
            target: "/v1/audio/speech",
            warm: &[("gpu", &["bge-m3"])],
            want: Route("gpu", "registry", "/v1/audio/speech", Some("kokoro-82m")),
            ..R
        },
        Row {
            name: "no model: a remote advertising the path default (step 2)",
            toml: DEFAULTS,
            target: "/v1/images/upscale",
            warm: &[("rr", &["img"])],
            want: Route("rr", "passthrough:rr", "/v1/images/upscale", None),
            ..R
        },
        Row {
            name: "no model: the path default's candidate missing -> 404 naming it",
            toml: SPARSE,
            target: "/v1/audio/speech",
            want: NoRoute("tts"),
            ..R
        },
    ]
}

#[test]
fn dispatch_table() {
    let rows = rows();
    assert!(rows.len() >= 50, "{} rows", rows.len());
    for row in &rows {
        check(row);
    }
}

fn base_snapshot(warm: Caches) -> Snapshot {
    let cfg = Arc::new(Config::from_toml_str(BASE, None).unwrap());
    let row = Row { warm, ..R };
    Snapshot::build(cfg.clone(), &live_of(&cfg, &row, &[], None), 7)
}

#[test]
fn resumable_dispatch_asks_once_then_decides() {
    let snap = base_snapshot(&[]);
    let facts = RequestFacts::new("POST", CHAT).with_model(Some("coder-model"));
    let mut done = FetchesDone::new();
    let Step::Fetch(req) = dispatch(&snap, &facts, &done) else {
        panic!("a cold bound slot needs a fetch first");
    };
    assert_eq!(req.reason, FetchReason::OneShot);
    assert_eq!(req.targets.len(), 1);
    assert_eq!(req.targets[0].name, "coder");
    assert_eq!(snap.upstream(req.targets[0].id).name(), "coder");
    assert_eq!(req.timeout_ms, 8000);
    done.mark(&req);
    assert!(done.one_shot_done("CODER"));
    // The fetch failed (same snapshot): dispatch now decides instead of asking again.
    match dispatch(&snap, &facts, &done) {
        Step::Decided(Ok(d)) => assert_eq!(d.route_header(&snap), "capability:agent"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn step_hit_needs_no_fetch_and_carries_stream() {
    let snap = base_snapshot(&[("chat", &["m"])]);
    let facts = RequestFacts::new("POST", CHAT)
        .with_model(Some("m"))
        .with_stream(true);
    let Step::Decided(Ok(d)) = dispatch(&snap, &facts, &FetchesDone::new()) else {
        panic!("hit expected");
    };
    assert!(d.stream);
    assert_eq!(d.breadcrumb, Breadcrumb::Container);
    assert_eq!(d.model(&facts), Some("m"));
    assert_eq!(snap.upstream(d.upstream).name(), "chat");
}

#[test]
fn decision_model_is_the_remap_when_set() {
    let snap = base_snapshot(&[("coder", &["real-id"])]);
    let facts = RequestFacts::new("POST", CHAT).with_model(Some("coder-model"));
    let Step::Decided(Ok(d)) = dispatch(&snap, &facts, &FetchesDone::new()) else {
        panic!("registry hit expected");
    };
    assert_eq!(d.model(&facts), Some("real-id"));
}

#[test]
fn breadcrumbs_render_exactly() {
    assert_eq!(Breadcrumb::Container.render("chat"), "container:chat");
    assert_eq!(Breadcrumb::Registry.render("chat"), "registry");
    assert_eq!(Breadcrumb::Passthrough.render("groq"), "passthrough:groq");
    assert_eq!(Breadcrumb::Prefetched.render("groq"), "prefetched:groq");
    assert_eq!(Breadcrumb::Capability.render("embed"), "capability:embed");
    let snap = base_snapshot(&[]);
    let id = snap.by_name("groq").unwrap().id;
    assert_eq!(
        snap.route_header(id, Breadcrumb::Prefetched),
        "prefetched:groq"
    );
    assert_eq!(snap.route_header(id, Breadcrumb::Registry), "registry");
}

#[test]
fn no_route_becomes_a_404_envelope() {
    let cfg = Arc::new(Config::from_toml_str(SPARSE, None).unwrap());
    let snap = Snapshot::build(cfg, &LiveState::default(), 1);
    let facts = RequestFacts::new("POST", "/v1/embeddings").with_model(Some(" e5 "));
    let Step::Decided(Err(e)) = dispatch(&snap, &facts, &FetchesDone::new()) else {
        panic!("404 expected");
    };
    let reply = ErrorReply::from(&e);
    assert_eq!(reply.code.status(), 404);
    assert_eq!(reply.code.code(), "dispatch.no_route");
    assert_eq!(
        reply.details,
        serde_json::json!({"model": "e5", "path": "/v1/embeddings", "candidate": "embed"})
    );
    // No model: `details.model` is the path default, never null.
    for (target, default) in [("/v1/whatever", "agent"), ("/v1/rerank", "rerank")] {
        let absent = RequestFacts::new("POST", target);
        let Step::Decided(Err(e)) = dispatch(&snap, &absent, &FetchesDone::new()) else {
            panic!("404 expected for {target}");
        };
        assert_eq!(e.to_reply().details["model"], default, "{target}");
    }
}

#[test]
fn async_driver_awaits_the_fetcher() {
    struct Warming(Arc<Snapshot>, std::cell::Cell<u32>);
    impl ModelFetcher for Warming {
        fn fetch(&self, _: &FetchRequest) -> impl Future<Output = Arc<Snapshot>> {
            self.1.set(self.1.get() + 1);
            let snap = self.0.clone();
            async move { snap }
        }
    }
    let cold = base_snapshot(&[]);
    let warm = Arc::new(base_snapshot(&[("coder", &["coder-model"])]));
    let fetcher = Warming(warm.clone(), std::cell::Cell::new(0));
    let facts = RequestFacts::new("POST", CHAT).with_model(Some("coder-model"));
    let fut = std::pin::pin!(dispatch_async(&cold, &facts, &fetcher));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let std::task::Poll::Ready(routed) = fut.poll(&mut cx) else {
        panic!("ready futures only");
    };
    assert_eq!(fetcher.1.get(), 1);
    let snap = routed.snapshot.expect("decided on the fetched snapshot");
    assert!(Arc::ptr_eq(&snap, &warm));
    let d = routed.result.unwrap();
    assert_eq!(d.route_header(&snap), "registry");
    assert_eq!(d.remap, None);
}

#[test]
fn fetch_rounds_are_bounded() {
    // A fetcher whose snapshots never warm anything: dispatch must still decide.
    let snap = Arc::new(base_snapshot(&[]));
    let mut calls = 0;
    let facts = RequestFacts::new("POST", CHAT).with_model(Some("coder-model"));
    let routed = dispatch_blocking(&snap, &facts, &mut |_| {
        calls += 1;
        snap.clone()
    });
    assert!(routed.result.is_ok());
    assert_eq!(calls, 1, "one one-shot; remotes are warm so no prefetch");
}

#[test]
fn thousand_upstreams_route_by_index() {
    let mut text = String::from("[routing]\ndefault_slot = \"s0\"\n");
    for i in 0..1000 {
        let kind = if i % 2 == 0 { "slot" } else { "remote" };
        text.push_str(&format!(
            "[[upstream]]\nname = \"s{i}\"\nkind = \"{kind}\"\nurl = \"http://127.0.0.1:{}/v1\"\nmodels = [\"m{i}\", \"shared\"]\n",
            9000 + i
        ));
    }
    let cfg = Arc::new(Config::from_toml_str(&text, None).unwrap());
    let snap = Snapshot::build(cfg, &LiveState::default(), 1);
    let done = FetchesDone::new();
    for (model, crumb) in [
        ("m999", "passthrough:s999"),
        ("m998", "passthrough:s998"),
        ("shared", "passthrough:s0"),
        ("S17", "capability:s0"), // a remote's name is not a candidate
        ("S16", "capability:s16"),
    ] {
        let facts = RequestFacts::new("POST", CHAT).with_model(Some(model));
        let Step::Decided(Ok(d)) = dispatch(&snap, &facts, &done) else {
            panic!("{model}");
        };
        assert_eq!(d.route_header(&snap), crumb, "{model}");
    }
}

#[test]
fn outgoing_path_edges() {
    let snap = base_snapshot(&[]);
    let agent = snap.by_name("agent").unwrap();
    let or = snap.by_name("openrouter").unwrap();
    assert_eq!(outgoing_path(&snap, agent, "/v1", None), "/v1");
    assert_eq!(
        outgoing_path(&snap, or, "/v1/models", Some("")),
        "/api/v1/models?"
    );
    // A path not under /v1 is kept whole rather than mangled.
    assert_eq!(outgoing_path(&snap, agent, "/v10/x", None), "/v1/v10/x");
}

/// Names are case-insensitive: the snapshot finds an upstream under any spelling (binary search
/// over `UpstreamName`), keeps the spelling it was configured with, and orders by folded name
/// within a rank.
#[test]
fn snapshot_finds_upstreams_under_any_case() {
    let text = "[[upstream]]\nname = \"Zeta\"\nkind = \"remote\"\nurl = \"http://127.0.0.1:9/v1\"\nmodels = [\"m\"]\n\
                [[upstream]]\nname = \"alpha\"\nkind = \"remote\"\nurl = \"http://127.0.0.1:9/v1\"\nmodels = [\"m\"]\n\
                [[upstream]]\nname = \"Mid\"\nkind = \"remote\"\nurl = \"http://127.0.0.1:9/v1\"\nmodels = [\"m\"]\n";
    let cfg = Arc::new(Config::from_toml_str(text, None).unwrap());
    let snap = Snapshot::build(cfg, &LiveState::default(), 1);
    let names: Vec<&str> = snap.upstreams.iter().map(|u| u.name()).collect();
    assert_eq!(names, ["alpha", "Mid", "Zeta"]);
    for (asked, found) in [
        ("zeta", "Zeta"),
        ("ZETA", "Zeta"),
        ("ALPHA", "alpha"),
        ("mid", "Mid"),
    ] {
        assert_eq!(
            snap.by_name(asked).map(|u| u.name()),
            Some(found),
            "{asked}"
        );
    }
    assert!(snap.by_name("zet").is_none() && snap.by_name("zetaa").is_none());
}
