//! Human and machine explanations of routing: the table `slotgate check` prints and the step-by-step
//! verdicts of `slotgate route` and `GET /admin/route` (DESIGN.md §5, §6).
//!
//! Explanations run the very same dispatch code as requests (through a recording tracer), so they
//! cannot drift from what the proxy does. When the decision carries a replica pool, the member
//! the proxy's picker ([`pick`]) would choose now is shown with every member's load and why it
//! was or was not picked; the time comes in as an argument ([`ExplainAt`]), since routing reads
//! no clock.

use super::dispatch::{drive_blocking, Decision, Outcome, Trace};
use super::pool::{affinity_key, pick, rendezvous, MemberLoad, PickReason, PoolId};
use super::{DispatchError, FetchRequest, RequestFacts, Snapshot};
use serde::Serialize;
use std::fmt::{self, Write as _};
use std::sync::Arc;

/// The name of each step of DESIGN.md §2.
pub const STEP_NAMES: [&str; 5] = [
    "container preemption",
    "registry",
    "passthrough",
    "cold prefetch",
    "capability routing",
];

/// Most model ids listed per upstream in the routing table.
const MODELS_SHOWN: usize = 8;

/// One step's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepVerdict {
    /// Dispatch pass (a fetch ends a pass; dispatch then starts over on the fresher snapshot).
    pub pass: u8,
    /// Step number, 0–4.
    pub step: u8,
    /// Step name.
    pub name: &'static str,
    /// How it turned out.
    pub outcome: Outcome,
    /// Why.
    pub detail: String,
}

/// The chosen upstream, for display.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExplainedDecision {
    /// Upstream name.
    pub upstream: String,
    /// Upstream kind.
    pub kind: &'static str,
    /// Its readiness state now (the proxy's gate may still answer 503).
    pub state: &'static str,
    /// `X-Slotgate-Route` value.
    pub breadcrumb: String,
    /// Outgoing request target.
    pub path: String,
    /// Full outgoing URL (`scheme://authority` + path).
    pub url: String,
    /// New body `model`, when rewritten.
    pub remap: Option<String>,
    /// The upstream's configured fallback chain, in order (empty: none).
    pub fallback: Vec<String>,
}

/// When and for whom an explanation looks at replica pools.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExplainAt<'a> {
    /// Now on the admission clock (`admission::clock_ms()`): cooldowns are judged against it.
    pub now_ms: u64,
    /// A session (affinity) key, as the request's affinity header would carry it.
    pub session: Option<&'a str>,
}

impl<'a> ExplainAt<'a> {
    /// At `now_ms`, with no session key.
    pub fn new(now_ms: u64) -> ExplainAt<'a> {
        ExplainAt {
            now_ms,
            session: None,
        }
    }

    /// The same, with this session key (empty counts as none).
    pub fn with_session(mut self, session: Option<&'a str>) -> ExplainAt<'a> {
        self.session = session.filter(|s| !s.is_empty());
        self
    }
}

/// One pool member as the picker sees it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExplainedMember {
    /// Upstream name.
    pub name: String,
    /// Its readiness state.
    pub state: &'static str,
    /// Requests in flight plus open streams, across every worker.
    pub load: u64,
    /// Ready, not busy and not cooling down: it can take the request now.
    pub eligible: bool,
    /// At `max_inflight` with a full queue.
    pub busy: bool,
    /// Its cooldown breaker is open (or half-open with its trial out).
    pub cooling: bool,
    /// Cooldown left, in ms (0 when closed, or past the deadline with the trial out).
    pub cooling_remaining_ms: u64,
    /// The member the decision names.
    pub picked: bool,
    /// Why it was or was not picked.
    pub note: String,
}

/// A member choice and its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExplainedPick {
    /// The member's name.
    pub member: String,
    /// `least_loaded`, `affinity` or `none_eligible` ([`PickReason`]).
    pub reason: &'static str,
}

/// The replica pool a decision carries, and what the picker does with it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExplainedPool {
    /// How much more loaded than the least the session's member may be and keep the request.
    pub affinity_slack: u64,
    /// Members in priority order.
    pub members: Vec<ExplainedMember>,
    /// The pick for a request with no affinity key.
    pub pick: ExplainedPick,
    /// The session key explained, when one was given.
    pub session: Option<String>,
    /// The pick for that key; `None` without a key, or when `[routing] affinity = "off"`.
    pub session_pick: Option<ExplainedPick>,
}

/// The error a request would get, for display.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExplainedError {
    /// Stable code (`dispatch.no_route`).
    pub code: &'static str,
    /// HTTP status.
    pub status: u16,
    /// Message.
    pub message: String,
    /// The envelope's details object.
    pub details: serde_json::Value,
}

/// Everything dispatch considered for one request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// Request method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Request query.
    pub query: Option<String>,
    /// The body's model id (trimmed), when there is one.
    pub model: Option<String>,
    /// The id dispatch matched: `model`, else the path default (`embed`, `rerank`, `agent`...).
    pub id: String,
    /// Snapshot epoch the verdict was reached on.
    pub epoch: u64,
    /// Each step's verdict, in order.
    pub steps: Vec<StepVerdict>,
    /// The decision, when there is one; with a pool, on the member the picker chooses now (for
    /// the session key, when one was given).
    pub decision: Option<ExplainedDecision>,
    /// The decision's replica pool, when it carries one.
    pub pool: Option<ExplainedPool>,
    /// The error, when there is one.
    pub error: Option<ExplainedError>,
}

/// Collects verdicts; a fetch ends a pass.
struct Recorder {
    pass: u8,
    steps: Vec<StepVerdict>,
}

impl Trace for Recorder {
    fn note(&mut self, step: u8, outcome: Outcome, detail: fmt::Arguments<'_>) {
        self.steps.push(StepVerdict {
            pass: self.pass,
            step,
            name: STEP_NAMES[usize::from(step.min(4))],
            outcome,
            detail: detail.to_string(),
        });
        if outcome == Outcome::Fetch {
            self.pass += 1;
        }
    }
}

/// Explains `facts` on `snap` at `at` without any IO: a fetch dispatch asks for is recorded, then
/// treated as having brought nothing new (the verdict after it is what a failing fetch would give).
pub fn explain(snap: &Snapshot, facts: &RequestFacts<'_>, at: ExplainAt<'_>) -> Explanation {
    // "Fetching" hands back an unchanged copy, made only if dispatch asks (CLI/admin path only).
    let mut unchanged: Option<Arc<Snapshot>> = None;
    explain_with(snap, facts, at, &mut |_| {
        unchanged
            .get_or_insert_with(|| Arc::new(snap.clone()))
            .clone()
    })
}

/// Explains `facts`, performing the fetches dispatch asks for through `fetch` (the admin API,
/// which can reach upstreams).
pub fn explain_with(
    snap: &Snapshot,
    facts: &RequestFacts<'_>,
    at: ExplainAt<'_>,
    fetch: &mut impl FnMut(&FetchRequest) -> Arc<Snapshot>,
) -> Explanation {
    let mut rec = Recorder {
        pass: 0,
        steps: Vec::new(),
    };
    let routed = drive_blocking(snap, facts, fetch, &mut rec);
    let final_snap: &Snapshot = routed.snapshot.as_deref().unwrap_or(snap);
    let (decision, pool, error) = match &routed.result {
        Ok(d) => {
            let mut d = d.clone();
            let pool = d
                .pool
                .map(|p| explain_pool(final_snap, facts, &mut d, p, at));
            (Some(explained_decision(final_snap, &d)), pool, None)
        }
        Err(e) => (None, None, Some(explained_error(e))),
    };
    Explanation {
        method: facts.method.to_string(),
        path: facts.path.to_string(),
        query: facts.query.map(str::to_string),
        model: facts.model_id().map(str::to_string),
        id: facts
            .model_id()
            .unwrap_or_else(|| {
                super::dispatch::path_default(&final_snap.config.routing, facts.path)
            })
            .to_string(),
        epoch: final_snap.epoch,
        steps: rec.steps,
        decision,
        pool,
        error,
    }
}

fn explained_decision(snap: &Snapshot, d: &Decision) -> ExplainedDecision {
    let u = snap.upstream(d.upstream);
    let url = match &u.cfg.parsed_url {
        Some(p) => {
            let scheme = match p.scheme {
                crate::config::Scheme::Http => "http",
                crate::config::Scheme::Https => "https",
            };
            format!("{scheme}://{}{}", p.authority, d.path)
        }
        None => d.path.clone(),
    };
    ExplainedDecision {
        upstream: u.name().to_string(),
        kind: u.kind().as_str(),
        state: u.state().as_str(),
        breadcrumb: d.route_header(snap).to_string(),
        path: d.path.clone(),
        url,
        remap: d.remap.clone(),
        fallback: u.cfg.fallback.clone(),
    }
}

/// Runs the proxy's member pick on pool `p` at `at` (with no key, and with the session's key when
/// one is given), retargets `d` to the member chosen, and says why each member was or was not.
fn explain_pool(
    snap: &Snapshot,
    facts: &RequestFacts<'_>,
    d: &mut Decision,
    p: PoolId,
    at: ExplainAt<'_>,
) -> ExplainedPool {
    let members = snap.pool(p);
    let routing = &snap.config.routing;
    let slack = routing.affinity_slack;
    let loads: Vec<MemberLoad> = members
        .iter()
        .map(|m| MemberLoad::of(snap.upstream(m.id), at.now_ms))
        .collect();
    let load = |i: usize| loads.get(i).copied().unwrap_or_default();
    let name = |i: usize| members.get(i).map_or("", |m| snap.upstream(m.id).name());
    let named = |(i, why): (usize, PickReason)| ExplainedPick {
        member: name(i).to_string(),
        reason: why.as_str(),
    };
    let keyless = pick(members, load, None, slack);
    let key = at
        .session
        .and_then(|s| affinity_key(routing, Some(s.as_bytes()), None, None));
    let keyed = key.map(|k| pick(members, load, Some(k), slack));
    let (chosen, why) = keyed.unwrap_or(keyless);
    if let Some(m) = members.get(chosen) {
        d.retarget(snap, facts, m);
    }
    // The key's own member among the eligible (rendezvous winner), to say why it lost.
    let home = key.and_then(|k| {
        members
            .iter()
            .enumerate()
            .filter(|(i, _)| load(*i).eligible)
            .max_by_key(|(_, m)| rendezvous(k, m.seed))
            .map(|(i, _)| i)
    });
    let least = loads.iter().filter(|l| l.eligible).map(|l| l.load).min();
    let chosen_load = load(chosen).load;
    let explained = members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let u = snap.upstream(m.id);
            let c = u.counters();
            let l = load(i);
            let cooling = c.cooldown.is_cooling(at.now_ms);
            let remaining = if cooling {
                c.cooldown.remaining_ms(at.now_ms)
            } else {
                0
            };
            let note = if i == chosen {
                match why {
                    PickReason::Affinity => format!(
                        "picked: the session's member (load {} <= least {} + slack {slack})",
                        l.load,
                        least.unwrap_or(0)
                    ),
                    PickReason::LeastLoaded if home.is_some() => {
                        "picked: least loaded (the session's member is past the slack)".to_string()
                    }
                    PickReason::LeastLoaded => "picked: least loaded".to_string(),
                    PickReason::NoneEligible => {
                        "picked: no member can take the request now; the first member, under \
                         today's rules (503 loading, hold, queue or 429)"
                            .to_string()
                    }
                }
            } else if !u.state().is_ready() {
                format!("skipped: {}, not ready", u.state().as_str())
            } else if c.gate.is_busy() {
                "skipped: busy (max_inflight reached, queue full)".to_string()
            } else if cooling {
                "skipped: cooling down".to_string()
            } else if home == Some(i) {
                format!(
                    "the session's member, but load {} > least {} + slack {slack}",
                    l.load,
                    least.unwrap_or(0)
                )
            } else if why == PickReason::Affinity {
                "not the session's member".to_string()
            } else if l.load > chosen_load {
                format!("more loaded ({} > {chosen_load})", l.load)
            } else {
                "as loaded, later in priority order".to_string()
            };
            ExplainedMember {
                name: u.name().to_string(),
                state: u.state().as_str(),
                load: l.load,
                eligible: l.eligible,
                busy: c.gate.is_busy(),
                cooling,
                cooling_remaining_ms: remaining,
                picked: i == chosen,
                note,
            }
        })
        .collect();
    ExplainedPool {
        affinity_slack: slack,
        members: explained,
        pick: named(keyless),
        session: at.session.map(str::to_string),
        session_pick: keyed.map(named),
    }
}

fn explained_error(e: &DispatchError) -> ExplainedError {
    let reply = e.to_reply();
    ExplainedError {
        code: reply.code.code(),
        status: reply.code.status(),
        message: reply.message,
        details: reply.details,
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)?;
        if let Some(q) = &self.query {
            write!(f, "?{q}")?;
        }
        match &self.model {
            Some(m) => writeln!(f, "  model '{m}'  (snapshot epoch {})", self.epoch)?,
            None => writeln!(
                f,
                "  no model: path default '{}'  (snapshot epoch {})",
                self.id, self.epoch
            )?,
        }
        for s in &self.steps {
            writeln!(
                f,
                "  pass {} step {} {:<20} {:<8} {}",
                s.pass,
                s.step,
                s.name,
                s.outcome.as_str(),
                s.detail
            )?;
        }
        if let Some(d) = &self.decision {
            write!(
                f,
                "=> {} ({}, {}) via {} -> {}",
                d.upstream, d.kind, d.state, d.breadcrumb, d.url
            )?;
            if let Some(m) = &d.remap {
                write!(f, "  model rewritten to '{m}'")?;
            }
            writeln!(f)?;
        }
        if let Some(p) = &self.pool {
            write!(f, "{p}")?;
        }
        if let Some(d) = &self.decision {
            if !d.fallback.is_empty() {
                writeln!(f, "   fallback chain: {}", d.fallback.join(" -> "))?;
            }
        }
        if let Some(e) = &self.error {
            writeln!(
                f,
                "=> {} {}: {}  details {}",
                e.status, e.code, e.message, e.details
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for ExplainedPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "   pool of {} (affinity slack {}): no session key -> {} ({})",
            self.members.len(),
            self.affinity_slack,
            self.pick.member,
            self.pick.reason
        )?;
        match (&self.session, &self.session_pick) {
            (Some(s), Some(p)) => writeln!(f, "   session '{s}' -> {} ({})", p.member, p.reason)?,
            (Some(s), None) => {
                writeln!(f, "   session '{s}' ignored: [routing] affinity = \"off\"")?
            }
            _ => {}
        }
        let width = self.members.iter().map(|m| m.name.len()).max().unwrap_or(4);
        for m in &self.members {
            let cooling = if m.cooling {
                format!("  cooling {} ms", m.cooling_remaining_ms)
            } else {
                String::new()
            };
            writeln!(
                f,
                "   {} {:<width$}  {:<9}  load {:<4}{cooling}  {}",
                if m.picked { '*' } else { ' ' },
                m.name,
                m.state,
                m.load,
                m.note
            )?;
        }
        Ok(())
    }
}

/// The routing table `slotgate check` prints: upstreams in priority order with kind, state, url and
/// models; registry bindings; aliases; capability names; path rewrites.
pub fn routing_table(snap: &Snapshot) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "upstreams (priority order):");
    let width = snap
        .upstreams
        .iter()
        .map(|u| u.name().len())
        .max()
        .unwrap_or(4)
        .max(4);
    for u in &snap.upstreams {
        let models = &u.live.models.ids;
        let listed = if models.is_empty() {
            "(cold)".to_string()
        } else {
            let mut s = models
                .iter()
                .take(MODELS_SHOWN)
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            if models.len() > MODELS_SHOWN {
                let _ = write!(s, ", … (+{} more)", models.len() - MODELS_SHOWN);
            }
            s
        };
        let _ = writeln!(
            w,
            "  {:>2}  {:<width$}  {:<9}  {:<9}  {}  models: {}",
            u.id.0,
            u.name(),
            u.kind().as_str(),
            u.state().as_str(),
            u.cfg.url.as_deref().unwrap_or("-"),
            listed,
        );
    }
    let cfg = &snap.config;
    let _ = writeln!(w, "registry:");
    if cfg.registry.is_empty() {
        let _ = writeln!(w, "  (empty)");
    }
    for (model, b) in &cfg.registry {
        let note = match snap.by_name(b.upstream()) {
            Some(u) if u.kind() == crate::config::UpstreamKind::Composite => {
                " (composite: dispatch falls through to local slots)"
            }
            _ => "",
        };
        match &b.upstream_model {
            Some(m) => {
                let _ = writeln!(w, "  {model} -> {} as '{m}'{note}", b.upstreams.join(" | "));
            }
            None => {
                let _ = writeln!(w, "  {model} -> {}{note}", b.upstreams.join(" | "));
            }
        }
    }
    let r = &cfg.routing;
    let _ = writeln!(w, "aliases:");
    if r.aliases.is_empty() {
        let _ = writeln!(w, "  (none)");
    }
    for (alias, target) in &r.aliases {
        let _ = writeln!(w, "  {alias} -> {target}");
    }
    let _ = writeln!(w, "capabilities:");
    for (what, name) in [
        ("default anchor", &r.default_slot),
        ("embeddings", &r.embed_slot),
        ("rerank", &r.rerank_slot),
        ("speech", &r.tts_slot),
        ("images", &r.img_slot),
        ("name:tag models", &r.npu_slot),
    ] {
        let target = match snap.local_named(name) {
            Some(u) => format!("{} ({})", u.name(), u.kind().as_str()),
            None => "no local upstream: 404 dispatch.no_route".to_string(),
        };
        let _ = writeln!(w, "  {what:<16} {name} -> {target}");
    }
    if !r.path_rewrites.is_empty() {
        let _ = writeln!(w, "path rewrites:");
        for (from, to) in &r.path_rewrites {
            let _ = writeln!(w, "  {from} -> {to}");
        }
    }
    let _ = writeln!(
        w,
        "prefetch: {} cold remote(s), bounded by {} ms",
        snap.cold_remotes().len(),
        r.prefetch_timeout_ms
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::routing::{LiveState, LiveUpstream, ModelList};

    const HOST: &str = r#"
[routing]
default_slot = "agent"
aliases = { "agent-hermes" = "agent" }
[[upstream]]
name = "agent"
kind = "slot"
url = "http://127.0.0.1:8101/v1"
[[upstream]]
name = "chat"
kind = "container"
url = "http://127.0.0.1:8102/v1"
models = ["qwopus3.6-27b-v2"]
[[upstream]]
name = "openrouter"
kind = "remote"
url = "https://openrouter.ai/api/v1"
[[upstream]]
name = "local"
kind = "composite"
[registry]
"qwopus3.6-27b-v2" = "local"
"gpt-4o-mini" = { upstream = "openrouter", upstream_model = "openai/gpt-4o-mini" }
"#;

    fn host() -> Snapshot {
        Snapshot::build(
            Arc::new(Config::from_toml_str(HOST, None).unwrap()),
            &LiveState::default(),
            3,
        )
    }

    #[test]
    fn table_lists_upstreams_bindings_and_capabilities() {
        let t = routing_table(&host());
        let order: Vec<usize> = ["agent", "chat", "openrouter", "local"]
            .iter()
            .map(|n| {
                t.find(&format!(" {n} "))
                    .unwrap_or_else(|| panic!("{n} in\n{t}"))
            })
            .collect();
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "priority order:\n{t}"
        );
        assert!(t.contains("models: qwopus3.6-27b-v2"), "{t}");
        assert!(t.contains("qwopus3.6-27b-v2 -> local (composite"), "{t}");
        assert!(
            t.contains("gpt-4o-mini -> openrouter as 'openai/gpt-4o-mini'"),
            "{t}"
        );
        assert!(t.contains("agent-hermes -> agent"), "{t}");
        assert!(
            t.contains("embeddings       embed -> no local upstream"),
            "{t}"
        );
        assert!(t.contains("default anchor   agent -> agent (slot)"), "{t}");
        assert!(t.contains("/v1/rerankings -> /v1/rerank"), "{t}");
        assert!(
            t.contains("prefetch: 1 cold remote(s), bounded by 8000 ms"),
            "{t}"
        );
    }

    #[test]
    fn explains_the_original_bug() {
        let snap = host();
        let facts =
            RequestFacts::new("POST", "/v1/chat/completions").with_model(Some("qwopus3.6-27b-v2"));
        let e = explain(&snap, &facts, ExplainAt::default());
        assert_eq!(e.steps.len(), 1);
        assert_eq!(e.steps[0].outcome, Outcome::Hit);
        let d = e.decision.as_ref().unwrap();
        assert_eq!(d.breadcrumb, "container:chat");
        assert_eq!(d.url, "http://127.0.0.1:8102/v1/chat/completions");
        assert_eq!(d.state, "starting", "no probe has passed yet");
        let text = e.to_string();
        assert!(
            text.contains("=> chat (container, starting) via container:chat"),
            "{text}"
        );
    }

    #[test]
    fn explains_every_step_and_the_pure_prefetch() {
        let snap = host();
        let facts = RequestFacts::new("POST", "/v1/embeddings?x=1").with_model(Some("e5"));
        let e = explain(&snap, &facts, ExplainAt::default());
        let seen: Vec<(u8, u8, Outcome)> = e
            .steps
            .iter()
            .map(|s| (s.pass, s.step, s.outcome))
            .collect();
        assert_eq!(
            seen,
            vec![
                (0, 0, Outcome::Miss),
                (0, 1, Outcome::Miss),
                (0, 2, Outcome::Miss),
                (0, 3, Outcome::Fetch),
                (1, 0, Outcome::Miss),
                (1, 1, Outcome::Miss),
                (1, 2, Outcome::Miss),
                (1, 3, Outcome::Miss),
                (1, 4, Outcome::NoRoute),
            ]
        );
        let err = e.error.as_ref().unwrap();
        assert_eq!((err.code, err.status), ("dispatch.no_route", 404));
        assert_eq!(err.details["candidate"], "embed");
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["steps"][3]["outcome"], "fetch");
        assert_eq!(json["steps"][8]["outcome"], "no_route");
        assert_eq!(json["query"], "x=1");
        assert!(e.to_string().contains("=> 404 dispatch.no_route"));
    }

    const POOL: &str = r#"
[[upstream]]
name = "gpu0"
kind = "container"
url = "http://127.0.0.1:8120/v1"
models = ["m"]
[[upstream]]
name = "gpu1"
kind = "container"
url = "http://127.0.0.1:8121/v1"
models = ["m"]
fallback = ["or"]
[[upstream]]
name = "gpu2"
kind = "container"
url = "http://127.0.0.1:8122/v1"
models = ["m"]
[[upstream]]
name = "or"
kind = "remote"
url = "https://or.example.com/v1"
"#;

    /// Three ready containers advertising `m` (a step-0 pool).
    fn pooled() -> Snapshot {
        let mut live = LiveState::default();
        for n in ["gpu0", "gpu1", "gpu2"] {
            live.upstreams.insert(
                n.into(),
                LiveUpstream {
                    probe: crate::routing::ProbeStatus::Passing,
                    ..LiveUpstream::default()
                },
            );
        }
        Snapshot::build(
            Arc::new(Config::from_toml_str(POOL, None).unwrap()),
            &live,
            7,
        )
    }

    fn chat_m() -> RequestFacts<'static> {
        RequestFacts::new("POST", "/v1/chat/completions").with_model(Some("m"))
    }

    #[test]
    fn a_pool_shows_every_member_and_the_least_loaded_pick() {
        let snap = pooled();
        let gpu = |n: &str| snap.by_name(n).unwrap().counters().clone();
        let _busy = [gpu("gpu0").request(), gpu("gpu0").request()];
        let mut s = gpu("gpu0").request();
        s.streaming();
        let _one = gpu("gpu1").request();
        let now = 50_000;
        // gpu2 would be idlest, but its breaker is open.
        gpu("gpu2")
            .cooldown
            .record_failure(now - 1_000, 1, 5_000, 0);
        let e = explain(&snap, &chat_m(), ExplainAt::new(now));
        let d = e.decision.as_ref().unwrap();
        assert_eq!(d.upstream, "gpu1", "the picked member");
        assert_eq!(d.breadcrumb, "container:gpu1");
        assert_eq!(d.url, "http://127.0.0.1:8121/v1/chat/completions");
        assert_eq!(d.fallback, ["or"]);
        let p = e.pool.as_ref().unwrap();
        let seen: Vec<(&str, u64, bool, bool, u64, bool)> = p
            .members
            .iter()
            .map(|m| {
                (
                    m.name.as_str(),
                    m.load,
                    m.eligible,
                    m.cooling,
                    m.cooling_remaining_ms,
                    m.picked,
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("gpu0", 4, true, false, 0, false),
                ("gpu1", 1, true, false, 0, true),
                ("gpu2", 0, false, true, 4_000, false),
            ]
        );
        assert_eq!(
            (p.pick.member.as_str(), p.pick.reason),
            ("gpu1", "least_loaded")
        );
        assert_eq!((p.session.as_ref(), p.session_pick.as_ref()), (None, None));
        assert_eq!(p.members[0].note, "more loaded (4 > 1)");
        assert_eq!(p.members[2].note, "skipped: cooling down");
        let text = e.to_string();
        for want in [
            "=> gpu1 (container, ready) via container:gpu1",
            "pool of 3 (affinity slack 4): no session key -> gpu1 (least_loaded)",
            "   * gpu1  ready      load 1     picked: least loaded",
            "     gpu2  ready      load 0     cooling 4000 ms  skipped: cooling down",
            "fallback chain: or",
        ] {
            assert!(text.contains(want), "{want:?} in\n{text}");
        }
        // Past the cooldown (trial not taken), gpu2 is eligible and idlest.
        let later = explain(&snap, &chat_m(), ExplainAt::new(now + 5_000));
        assert_eq!(later.decision.unwrap().upstream, "gpu2");
    }

    #[test]
    fn a_session_key_sticks_within_the_slack() {
        let snap = pooled();
        let at = ExplainAt::new(1_000).with_session(Some("conversation-1"));
        let e = explain(&snap, &chat_m(), at);
        let p = e.pool.as_ref().unwrap();
        let home = p.session_pick.clone().unwrap();
        assert_eq!(home.reason, "affinity");
        assert_eq!(
            (p.pick.member.as_str(), p.pick.reason),
            ("gpu0", "least_loaded")
        );
        assert_eq!(e.decision.as_ref().unwrap().upstream, home.member);
        assert!(e.to_string().contains(&format!(
            "session 'conversation-1' -> {} (affinity)",
            home.member
        )));
        // Loaded past least + slack: the least loaded takes it, and the note says why.
        let c = snap.by_name(&home.member).unwrap().counters().clone();
        let _g: Vec<_> = (0..5).map(|_| c.request()).collect();
        let e = explain(&snap, &chat_m(), at);
        let p = e.pool.as_ref().unwrap();
        assert_eq!(p.session_pick.as_ref().unwrap().reason, "least_loaded");
        assert_ne!(e.decision.as_ref().unwrap().upstream, home.member);
        let m = p.members.iter().find(|m| m.name == home.member).unwrap();
        assert_eq!(
            m.note,
            "the session's member, but load 5 > least 0 + slack 4"
        );
        // No pool, no section: a single upstream.
        let one =
            RequestFacts::new("POST", "/v1/chat/completions").with_model(Some("qwopus3.6-27b-v2"));
        let e = explain(&host(), &one, at);
        assert_eq!(e.decision.unwrap().upstream, "chat");
        assert!(e.pool.is_none());
    }

    #[test]
    fn no_eligible_member_means_the_first_and_the_json_shape_holds() {
        let snap = pooled();
        for n in ["gpu0", "gpu1", "gpu2"] {
            let c = snap.by_name(n).unwrap().counters();
            c.cooldown.record_failure(100, 1, 10_000, 0);
        }
        let e = explain(&snap, &chat_m(), ExplainAt::new(200).with_session(Some("")));
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["decision"]["upstream"], "gpu0");
        assert_eq!(json["decision"]["fallback"], serde_json::json!([]));
        assert_eq!(json["pool"]["affinity_slack"], 4);
        assert_eq!(json["pool"]["pick"]["member"], "gpu0");
        assert_eq!(json["pool"]["pick"]["reason"], "none_eligible");
        assert_eq!(
            json["pool"]["session"],
            serde_json::Value::Null,
            "empty = none"
        );
        assert_eq!(json["pool"]["session_pick"], serde_json::Value::Null);
        let m = &json["pool"]["members"][1];
        for key in [
            "name",
            "state",
            "load",
            "eligible",
            "busy",
            "cooling",
            "cooling_remaining_ms",
            "picked",
            "note",
        ] {
            assert!(m.get(key).is_some(), "member field {key}: {m}");
        }
        assert_eq!(
            (&m["name"], &m["cooling"], &m["cooling_remaining_ms"]),
            (
                &serde_json::json!("gpu1"),
                &serde_json::json!(true),
                &serde_json::json!(9_900)
            )
        );
        assert_eq!(json["pool"]["members"][0]["picked"], true);
        // A decision without a pool: `pool` is null.
        let one =
            RequestFacts::new("POST", "/v1/chat/completions").with_model(Some("qwopus3.6-27b-v2"));
        let json = serde_json::to_value(explain(&host(), &one, ExplainAt::new(1))).unwrap();
        assert_eq!(json["decision"]["upstream"], "chat");
        assert_eq!(json["pool"], serde_json::Value::Null);
    }

    #[test]
    fn explain_with_a_fetcher_uses_the_fresher_snapshot() {
        let snap = host();
        let cfg = snap.config.clone();
        let facts =
            RequestFacts::new("POST", "/v1/chat/completions").with_model(Some("gpt-4o-mini"));
        let e = explain_with(&snap, &facts, ExplainAt::default(), &mut |req| {
            assert_eq!(req.targets[0].name, "openrouter");
            let mut live = LiveState::default();
            live.upstreams.insert(
                "openrouter".into(),
                LiveUpstream {
                    models: Arc::new(ModelList {
                        ids: vec!["openai/gpt-4o-mini".into()],
                        fetched_at: None,
                    }),
                    ..LiveUpstream::default()
                },
            );
            Arc::new(Snapshot::build(cfg.clone(), &live, 4))
        });
        assert_eq!(e.epoch, 4);
        let d = e.decision.unwrap();
        assert_eq!(d.breadcrumb, "registry");
        assert_eq!(d.remap.as_deref(), Some("openai/gpt-4o-mini"));
        assert_eq!(d.url, "https://openrouter.ai/api/v1/chat/completions");
    }
}
