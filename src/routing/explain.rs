//! Human and machine explanations of routing: the table `slotgate check` prints and the step-by-step
//! verdicts of `slotgate route` and `GET /admin/route` (DESIGN.md §5, §6).
//!
//! Explanations run the very same dispatch code as requests (through a recording tracer), so they
//! cannot drift from what the proxy does.

use super::dispatch::{drive_blocking, Outcome, Trace};
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
    /// Model id as dispatch saw it (trimmed).
    pub model: Option<String>,
    /// Snapshot epoch the verdict was reached on.
    pub epoch: u64,
    /// Each step's verdict, in order.
    pub steps: Vec<StepVerdict>,
    /// The decision, when there is one.
    pub decision: Option<ExplainedDecision>,
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

/// Explains `facts` on `snap` without any IO: a fetch dispatch asks for is recorded, then treated as
/// having brought nothing new (the verdict after it is what a failing fetch would give).
pub fn explain(snap: &Snapshot, facts: &RequestFacts<'_>) -> Explanation {
    // "Fetching" hands back an unchanged copy, made only if dispatch asks (CLI/admin path only).
    let mut unchanged: Option<Arc<Snapshot>> = None;
    explain_with(snap, facts, &mut |_| {
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
    fetch: &mut impl FnMut(&FetchRequest) -> Arc<Snapshot>,
) -> Explanation {
    let mut rec = Recorder {
        pass: 0,
        steps: Vec::new(),
    };
    let routed = drive_blocking(snap, facts, fetch, &mut rec);
    let final_snap: &Snapshot = routed.snapshot.as_deref().unwrap_or(snap);
    let (decision, error) = match &routed.result {
        Ok(d) => {
            let u = final_snap.upstream(d.upstream);
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
            (
                Some(ExplainedDecision {
                    upstream: u.name().to_string(),
                    kind: u.kind().as_str(),
                    state: u.state().as_str(),
                    breadcrumb: d.route_header(final_snap).to_string(),
                    path: d.path.clone(),
                    url,
                    remap: d.remap.clone(),
                }),
                None,
            )
        }
        Err(e) => (None, Some(explained_error(e))),
    };
    Explanation {
        method: facts.method.to_string(),
        path: facts.path.to_string(),
        query: facts.query.map(str::to_string),
        model: facts.model_id().map(str::to_string),
        epoch: final_snap.epoch,
        steps: rec.steps,
        decision,
        error,
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
            None => writeln!(f, "  no model  (snapshot epoch {})", self.epoch)?,
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
        let note = match snap.by_name(&b.upstream) {
            Some(u) if u.kind() == crate::config::UpstreamKind::Composite => {
                " (composite: dispatch falls through to local slots)"
            }
            _ => "",
        };
        match &b.upstream_model {
            Some(m) => {
                let _ = writeln!(w, "  {model} -> {} as '{m}'{note}", b.upstream);
            }
            None => {
                let _ = writeln!(w, "  {model} -> {}{note}", b.upstream);
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
