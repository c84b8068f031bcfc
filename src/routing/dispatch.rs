//! The five-step dispatch of DESIGN.md §2: a pure, resumable function of a snapshot and request facts.
//!
//! Steps 1 (one-shot `/v1/models` fetch of a cold `slot`) and 3 (cold prefetch of remotes) need IO,
//! which routing does not do. So [`dispatch`] returns either a decision or a [`FetchRequest`]; the
//! caller performs the fetch, records it in [`FetchesDone`] and calls [`dispatch`] again with the
//! snapshot published afterwards. [`dispatch_async`] and [`dispatch_blocking`] run that loop.
//!
//! Driving it from a worker: call `dispatch(&snap, &facts, &FetchesDone::new())`; almost always
//! that is `Step::Decided` and costs one hash lookup plus the outgoing path. On `Step::Fetch`,
//! hand over to `dispatch_async(&snap, &facts, &fetcher).await`, which fetches through the
//! control side's [`ModelFetcher`] and re-dispatches on each fresher snapshot (at most a one-shot
//! fetch and a prefetch per request); when [`Routed::snapshot`] is `Some`, the request must keep
//! *that* snapshot, since [`Decision::upstream`] indexes it.

use super::breadcrumb::Breadcrumb;
use super::snapshot::Snapshot;
use super::upstream::{UpstreamEntry, UpstreamId};
use crate::config::UpstreamName;
use crate::error::{ErrorCode, ErrorReply};
use serde::Serialize;
use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use super::index::{BoundStatus, Candidates};
use super::pool::{PoolId, PoolMember};

/// What dispatch reads from a request (DESIGN.md §2 "Input").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestFacts<'a> {
    /// Request method (not a routing input today; kept for explain and logs).
    pub method: &'a str,
    /// Request path without the query, e.g. `/v1/chat/completions`.
    pub path: &'a str,
    /// Query string without the `?`, kept on the outgoing path.
    pub query: Option<&'a str>,
    /// The body's top-level `model`; trimmed by dispatch, empty counts as absent.
    pub model: Option<&'a str>,
    /// The body's `stream` is JSON `true`.
    pub stream: bool,
}

impl<'a> RequestFacts<'a> {
    /// Facts from a method and a request target (`/v1/x?y`), with no model.
    pub fn new(method: &'a str, target: &'a str) -> RequestFacts<'a> {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        RequestFacts {
            method,
            path,
            query,
            model: None,
            stream: false,
        }
    }

    /// The same facts with this `model`.
    pub fn with_model(mut self, model: Option<&'a str>) -> RequestFacts<'a> {
        self.model = model;
        self
    }

    /// The same facts with this `stream`.
    pub fn with_stream(mut self, stream: bool) -> RequestFacts<'a> {
        self.stream = stream;
        self
    }

    /// The model id dispatch matches: trimmed, `None` when absent or empty.
    #[inline]
    pub fn model_id(&self) -> Option<&'a str> {
        self.model.map(str::trim).filter(|m| !m.is_empty())
    }

    /// The id dispatch matches at every step: [`model_id`](Self::model_id), else the path
    /// default ([`path_default`]).
    #[inline]
    pub fn id<'s>(&'s self, routing: &'s crate::config::Routing) -> &'s str {
        self.model_id()
            .unwrap_or_else(|| path_default(routing, self.path))
    }
}

/// Where a request goes and how it is rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The chosen upstream, an id of the snapshot the decision was made on (see [`Routed`]).
    pub upstream: UpstreamId,
    /// Which rule chose it.
    pub breadcrumb: Breadcrumb,
    /// Outgoing path: the upstream's base path + the request path without `/v1`, after rewrites,
    /// with the query kept.
    pub path: String,
    /// The id to write into the body's `model` when it must change (`upstream_model` or "slot as
    /// truth"); `None` when the body goes byte for byte.
    pub remap: Option<String>,
    /// The request asked for a stream.
    pub stream: bool,
    /// The replica pool `upstream` belongs to, when several upstreams qualified at the deciding
    /// step; the caller picks the member ([`super::pick`]) and [`Decision::retarget`]s.
    pub pool: Option<PoolId>,
}

impl Decision {
    /// The effective model id forwarded: the remap when set, else the request's.
    pub fn model<'s>(&'s self, facts: &RequestFacts<'s>) -> Option<&'s str> {
        self.remap.as_deref().or_else(|| facts.model_id())
    }

    /// The same decision served by pool member `m` instead: its upstream, outgoing path and remap.
    pub fn retarget(&mut self, snap: &Snapshot, facts: &RequestFacts<'_>, m: &PoolMember) {
        if m.id == self.upstream {
            return;
        }
        let (old, new) = (snap.upstream(self.upstream), snap.upstream(m.id));
        if base_path(old) != base_path(new) {
            self.path = outgoing_path(snap, new, facts.path, facts.query);
        }
        self.upstream = m.id;
        self.remap = m.remap.as_deref().map(str::to_string);
    }

    /// A decision for fallback upstream `to` (DESIGN-NOTES "Fallback chains"): breadcrumb
    /// `fallback`, the path on `to`, and `model` as the fallback should see it (`fallback_model`
    /// of the binding, else of the first upstream, else unchanged).
    pub fn fallback(&self, snap: &Snapshot, facts: &RequestFacts<'_>, to: UpstreamId) -> Decision {
        let model = facts.id(&snap.config.routing);
        let from = snap.upstream(self.upstream);
        let remap = snap
            .config
            .registry
            .get(model)
            .filter(|_| self.breadcrumb == Breadcrumb::Registry)
            .and_then(|b| b.fallback_model.as_deref())
            .or(from.cfg.fallback_model.as_deref())
            .filter(|m| *m != model);
        decision(snap, facts, to, Breadcrumb::Fallback, remap, None)
    }

    /// The `X-Slotgate-Route` value, borrowed from `snap` (the snapshot the decision was made on).
    pub fn route_header<'s>(&self, snap: &'s Snapshot) -> &'s str {
        snap.route_header(self.upstream, self.breadcrumb)
    }
}

/// Why dispatch found no upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DispatchError {
    /// Step 4's candidate is not a local (`slot`/`container`) upstream: `404 dispatch.no_route`.
    NoRoute {
        /// The model id dispatch used: the request's, else its path default (`rerank`, `agent`).
        model: String,
        /// The request path.
        path: String,
        /// The upstream name step 4 looked for.
        candidate: String,
    },
}

impl DispatchError {
    /// The error code of DESIGN.md §4.
    pub fn code(&self) -> ErrorCode {
        match self {
            DispatchError::NoRoute { .. } => ErrorCode::NoRoute,
        }
    }

    /// The error answer, details `{model, path, candidate}`.
    pub fn to_reply(&self) -> ErrorReply {
        match self {
            DispatchError::NoRoute {
                model,
                path,
                candidate,
            } => ErrorReply::new(self.code(), self.to_string()).details(serde_json::json!({
                "model": model, "path": path, "candidate": candidate,
            })),
        }
    }
}

impl fmt::Display for DispatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DispatchError::NoRoute {
                model, candidate, ..
            } => write!(
                f,
                "no upstream serves model '{model}': candidate '{candidate}' is not a local slot or container"
            ),
        }
    }
}

impl std::error::Error for DispatchError {}

impl From<&DispatchError> for ErrorReply {
    fn from(e: &DispatchError) -> ErrorReply {
        e.to_reply()
    }
}

/// Why a fetch is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FetchReason {
    /// Step 1: the bound `slot` has a cold cache; fetch its `/v1/models` once.
    OneShot,
    /// Step 3: fetch `/v1/models` of every cold `remote`, concurrently.
    Prefetch,
}

impl FetchReason {
    /// The lowercase name used in explanations and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            FetchReason::OneShot => "one_shot",
            FetchReason::Prefetch => "prefetch",
        }
    }
}

/// One upstream to fetch `/v1/models` from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchTarget {
    /// Its id in the snapshot that asked.
    pub id: UpstreamId,
    /// Its configured name: the stable key for single-flight across snapshots.
    pub name: String,
}

/// A request for `/v1/models` fetches that dispatch needs before it can decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    /// Step 1 or step 3.
    pub reason: FetchReason,
    /// What to fetch (single-flighted per upstream by whoever performs it).
    pub targets: Vec<FetchTarget>,
    /// Bound on the whole fetch (`[routing] prefetch_timeout_ms`).
    pub timeout_ms: u64,
}

/// The fetches already performed for one request, so none is asked twice.
#[derive(Debug, Clone, Default)]
pub struct FetchesDone {
    /// Names of upstreams fetched one-shot.
    one_shot: Vec<UpstreamName>,
    /// Names of the step-3 targets, once the prefetch ran.
    prefetched: Option<Vec<UpstreamName>>,
    /// After too many rounds, treat every fetch as done so dispatch must decide.
    exhausted: bool,
}

/// Rounds of fetching after which dispatch decides on what it has (a guard against a fetcher whose
/// snapshots keep changing bindings; normal requests need at most two).
const MAX_FETCH_ROUNDS: usize = 4;

impl FetchesDone {
    /// Nothing fetched yet.
    pub fn new() -> FetchesDone {
        FetchesDone::default()
    }

    /// Records that `req` was performed (whatever it returned).
    pub fn mark(&mut self, req: &FetchRequest) {
        let names = req.targets.iter().map(|t| UpstreamName::from(&t.name));
        match req.reason {
            FetchReason::OneShot => self.one_shot.extend(names),
            FetchReason::Prefetch => self.prefetched = Some(names.collect()),
        }
        if self.one_shot.len() + usize::from(self.prefetched.is_some()) >= MAX_FETCH_ROUNDS {
            self.exhausted = true;
        }
    }

    /// Whether the one-shot fetch of `name` ran.
    pub fn one_shot_done(&self, name: &str) -> bool {
        self.exhausted || self.one_shot.iter().any(|n| n.is(name))
    }

    /// Whether the step-3 prefetch ran.
    pub fn prefetch_done(&self) -> bool {
        self.exhausted || self.prefetched.is_some()
    }

    fn was_prefetched(&self, name: &str) -> bool {
        self.prefetched
            .as_ref()
            .is_some_and(|v| v.iter().any(|n| n.is(name)))
    }
}

/// One call of [`dispatch`]: a verdict, or the IO needed first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Dispatch decided.
    Decided(Result<Decision, DispatchError>),
    /// Perform this fetch, mark it in [`FetchesDone`], and dispatch again on the fresher snapshot.
    Fetch(FetchRequest),
}

/// A finished dispatch and the snapshot its [`Decision::upstream`] belongs to.
#[derive(Debug, Clone)]
pub struct Routed {
    /// The verdict.
    pub result: Result<Decision, DispatchError>,
    /// The fresher snapshot the decision was made on when fetches happened; `None` means the
    /// snapshot passed in (the request keeps using it).
    pub snapshot: Option<Arc<Snapshot>>,
}

/// Performs the `/v1/models` fetches dispatch asks for; implemented by the control side.
pub trait ModelFetcher {
    /// Fetches every target (concurrently, single-flighted per upstream, bounded by
    /// `req.timeout_ms`), waits until the results are published, and returns the snapshot then
    /// current. Failures leave caches cold; dispatch then falls through.
    fn fetch(&self, req: &FetchRequest) -> impl Future<Output = Arc<Snapshot>>;
}

/// How one step turned out, for [`explain`](super::explain).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The step chose the upstream.
    Hit,
    /// The step did not apply; dispatch went on.
    Miss,
    /// The step was not tried.
    Skip,
    /// The step needs a `/v1/models` fetch first.
    Fetch,
    /// Nothing can serve the request.
    NoRoute,
}

impl Outcome {
    /// The lowercase name (as serialized).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Miss => "miss",
            Outcome::Skip => "skip",
            Outcome::Fetch => "fetch",
            Outcome::NoRoute => "no_route",
        }
    }
}

/// Receives each step's verdict; [`NoTrace`] compiles to nothing on the request path.
pub(crate) trait Trace {
    /// Step `step` ended with `outcome`, because of `detail`.
    fn note(&mut self, step: u8, outcome: Outcome, detail: fmt::Arguments<'_>);
}

/// The request path's tracer: discards everything.
pub(crate) struct NoTrace;

impl Trace for NoTrace {
    #[inline(always)]
    fn note(&mut self, _: u8, _: Outcome, _: fmt::Arguments<'_>) {}
}

/// The five steps of DESIGN.md §2 on `snap`, given the fetches already `done` for this request.
#[inline]
pub fn dispatch(snap: &Snapshot, facts: &RequestFacts<'_>, done: &FetchesDone) -> Step {
    run(snap, facts, done, &mut NoTrace)
}

/// Dispatch to a verdict, awaiting `fetcher` whenever a fetch is needed.
///
/// On the request path call [`dispatch`] first with `FetchesDone::new()`: a `Decided` step needs no
/// future and no `Arc` clone. Fall back to this only on [`Step::Fetch`].
pub async fn dispatch_async<F: ModelFetcher>(
    snap: &Snapshot,
    facts: &RequestFacts<'_>,
    fetcher: &F,
) -> Routed {
    drive(snap, facts, fetcher, &mut NoTrace).await
}

/// Dispatch to a verdict, calling `fetch` synchronously (CLI, admin explain, tests).
pub fn dispatch_blocking(
    snap: &Snapshot,
    facts: &RequestFacts<'_>,
    fetch: &mut impl FnMut(&FetchRequest) -> Arc<Snapshot>,
) -> Routed {
    drive_blocking(snap, facts, fetch, &mut NoTrace)
}

/// [`drive`] with a synchronous fetcher; the future is always ready, so one poll finishes it.
pub(crate) fn drive_blocking<T: Trace>(
    snap: &Snapshot,
    facts: &RequestFacts<'_>,
    fetch: &mut impl FnMut(&FetchRequest) -> Arc<Snapshot>,
    trace: &mut T,
) -> Routed {
    struct Sync<'f, G>(RefCell<&'f mut G>);
    impl<G: FnMut(&FetchRequest) -> Arc<Snapshot>> ModelFetcher for Sync<'_, G> {
        fn fetch(&self, req: &FetchRequest) -> impl Future<Output = Arc<Snapshot>> {
            std::future::ready((self.0.borrow_mut())(req))
        }
    }
    let fetcher = Sync(RefCell::new(fetch));
    let fut = std::pin::pin!(drive(snap, facts, &fetcher, trace));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.poll(&mut cx) {
        std::task::Poll::Ready(r) => r,
        std::task::Poll::Pending => unreachable!("every awaited future is ready"),
    }
}

/// The resumable loop: dispatch, fetch, dispatch again on the fresher snapshot.
pub(crate) async fn drive<F: ModelFetcher, T: Trace>(
    snap: &Snapshot,
    facts: &RequestFacts<'_>,
    fetcher: &F,
    trace: &mut T,
) -> Routed {
    let mut done = FetchesDone::new();
    let mut fresher: Option<Arc<Snapshot>> = None;
    loop {
        let current = fresher.as_deref().unwrap_or(snap);
        match run(current, facts, &done, trace) {
            Step::Decided(result) => {
                return Routed {
                    result,
                    snapshot: fresher,
                }
            }
            Step::Fetch(req) => {
                fresher = Some(fetcher.fetch(&req).await);
                done.mark(&req);
            }
        }
    }
}

/// One pass of the five steps, reporting each verdict to `t`.
pub(crate) fn run<T: Trace>(
    snap: &Snapshot,
    facts: &RequestFacts<'_>,
    done: &FetchesDone,
    t: &mut T,
) -> Step {
    // No `model` in the body: the path default is the id at every step (DESIGN.md §2 "Input").
    let model = facts.id(&snap.config.routing);
    let defaulted = facts.model_id().is_none();
    let route = snap.index().models.get(model);

    // Step 0: a running container is authoritative for what it advertises.
    if let Some(c) = route.and_then(|r| r.container) {
        t.note(
            0,
            Outcome::Hit,
            format_args!(
                "container '{}' advertises '{model}'{}",
                snap.upstream(c.first).name(),
                PoolNote(snap, c.pool)
            ),
        );
        return Step::Decided(Ok(candidates(snap, facts, c, Breadcrumb::Container)));
    }
    t.note(
        0,
        Outcome::Miss,
        format_args!("no container advertises '{model}'"),
    );

    // Step 1: the registry.
    match route.and_then(|r| r.binding.as_ref()) {
        None => t.note(1, Outcome::Miss, format_args!("no registry binding")),
        Some(b) => {
            let u = snap.upstream(b.upstream);
            if b.status == BoundStatus::Composite {
                t.note(
                    1,
                    Outcome::Miss,
                    format_args!("bound to composite '{}': ignored", u.name()),
                );
            } else if let Some(fetch) = one_shots(snap, &b.fetch_first, done) {
                t.note(
                    1,
                    Outcome::Fetch,
                    format_args!(
                        "bound slot '{}' has a cold cache: fetch once",
                        snap.upstream(fetch[0]).name()
                    ),
                );
                return Step::Fetch(fetch_request(snap, FetchReason::OneShot, &fetch));
            } else if b.status == BoundStatus::ColdOffline {
                t.note(
                    1,
                    Outcome::Miss,
                    format_args!(
                        "bound to '{}', offline (cold cache, no passing probe)",
                        u.name()
                    ),
                );
            } else {
                let why = match b.status {
                    BoundStatus::Warm => "warm cache",
                    _ => "passing probe",
                };
                let pool = PoolNote(snap, b.pool);
                match &b.remap {
                    Some(m) => t.note(
                        1,
                        Outcome::Hit,
                        format_args!(
                            "bound to '{}' ({why}); model rewritten to '{m}'{pool}",
                            u.name()
                        ),
                    ),
                    None => t.note(
                        1,
                        Outcome::Hit,
                        format_args!("bound to '{}' ({why}){pool}", u.name()),
                    ),
                }
                return Step::Decided(Ok(decision(
                    snap,
                    facts,
                    b.upstream,
                    Breadcrumb::Registry,
                    b.remap.as_deref(),
                    b.pool,
                )));
            }
        }
    }

    // Step 2 (and step 3's repeat of it once the prefetch ran).
    if let Some(c) = route.and_then(|r| r.passthrough) {
        let name = snap.upstream(c.first).name();
        let (step, crumb) = if done.was_prefetched(name) {
            (3, Breadcrumb::Prefetched)
        } else {
            (2, Breadcrumb::Passthrough)
        };
        t.note(
            step,
            Outcome::Hit,
            format_args!("'{name}' advertises '{model}'{}", PoolNote(snap, c.pool)),
        );
        return Step::Decided(Ok(candidates(snap, facts, c, crumb)));
    }
    t.note(
        2,
        Outcome::Miss,
        format_args!("no upstream advertises '{model}'"),
    );

    // Step 3: cold prefetch of remotes, once per request.
    let cold = snap.cold_remotes();
    if done.prefetch_done() {
        t.note(
            3,
            Outcome::Miss,
            format_args!("prefetch done; still no upstream advertises '{model}'"),
        );
    } else if cold.is_empty() {
        t.note(3, Outcome::Skip, format_args!("no remote has a cold cache"));
    } else {
        t.note(
            3,
            Outcome::Fetch,
            format_args!("prefetch /v1/models of {} cold remote(s)", cold.len()),
        );
        return Step::Fetch(fetch_request(snap, FetchReason::Prefetch, cold));
    }

    Step::Decided(capability(snap, facts, model, defaulted, t))
}

/// The id of a request without a `model`: `embed`, `rerank`, `tts`, `img` by path, else the
/// default anchor (the `[routing]` names).
pub fn path_default<'r>(r: &'r crate::config::Routing, path: &str) -> &'r str {
    if path.contains("/embeddings") {
        &r.embed_slot
    } else if path.contains("/rerank") {
        &r.rerank_slot
    } else if path.contains("/audio/speech") {
        &r.tts_slot
    } else if path.contains("/images/") {
        &r.img_slot
    } else {
        &r.default_slot
    }
}

fn fetch_request(snap: &Snapshot, reason: FetchReason, ids: &[UpstreamId]) -> FetchRequest {
    FetchRequest {
        reason,
        targets: ids
            .iter()
            .map(|&id| FetchTarget {
                id,
                name: snap.upstream(id).name().to_string(),
            })
            .collect(),
        timeout_ms: snap.config.routing.prefetch_timeout_ms,
    }
}

/// Step 4: capability routing. The candidate a rule names must be a local upstream, or the answer
/// is `404 dispatch.no_route` naming it: a hint never falls back to another model. Only a plain id
/// that matches nothing goes to the default anchor. `defaulted`: `model` is the path default of a
/// request without one, which is its own candidate.
fn capability<T: Trace>(
    snap: &Snapshot,
    facts: &RequestFacts<'_>,
    model: &str,
    defaulted: bool,
    t: &mut T,
) -> Result<Decision, DispatchError> {
    let r = &snap.config.routing;
    let anchor = r.default_slot.as_str();
    let path = facts.path;
    let (candidate, why): (&str, &str) = if path.contains("/embeddings") {
        (&r.embed_slot, "path has /embeddings")
    } else if path.contains("/rerank") {
        (&r.rerank_slot, "path has /rerank or /rerankings")
    } else if path.contains("/audio/speech") {
        (&r.tts_slot, "path has /audio/speech")
    } else if is_image_op(path) {
        (&r.img_slot, "path has /images/generations|edits|variations")
    } else if defaulted {
        (model, "no model; the path default")
    } else if model.contains(':') {
        (&r.npu_slot, "model id has ':'")
    } else if is_image_model(model) {
        (&r.img_slot, "image model prefix")
    } else if contains_ci(model, "embed") || contains_ci(model, "rerank") {
        (&r.embed_slot, "model id hints embed/rerank")
    } else {
        match snap.local_named(model) {
            Some(u) if !u.name().eq_ignore_ascii_case(anchor) => {
                (u.name(), "model id names a local upstream")
            }
            _ => (anchor, "the default anchor"),
        }
    };
    match snap.local_named(candidate) {
        Some(u) => {
            t.note(
                4,
                Outcome::Hit,
                format_args!("{why} -> '{candidate}' = local '{}'", u.name()),
            );
            Ok(decision(
                snap,
                facts,
                u.id,
                Breadcrumb::Capability,
                None,
                None,
            ))
        }
        None => {
            t.note(
                4,
                Outcome::NoRoute,
                format_args!("{why} -> '{candidate}' is not a local upstream"),
            );
            Err(DispatchError::NoRoute {
                model: model.to_string(),
                path: path.to_string(),
                candidate: candidate.to_string(),
            })
        }
    }
}

#[inline]
fn decision(
    snap: &Snapshot,
    facts: &RequestFacts<'_>,
    id: UpstreamId,
    crumb: Breadcrumb,
    remap: Option<&str>,
    pool: Option<PoolId>,
) -> Decision {
    Decision {
        upstream: id,
        breadcrumb: crumb,
        path: outgoing_path(snap, snap.upstream(id), facts.path, facts.query),
        remap: remap.map(str::to_string),
        stream: facts.stream,
        pool,
    }
}

/// A step-0 or step-2 decision on `c`'s first upstream (its pool attached).
#[inline]
fn candidates(
    snap: &Snapshot,
    facts: &RequestFacts<'_>,
    c: Candidates,
    crumb: Breadcrumb,
) -> Decision {
    decision(snap, facts, c.first, crumb, None, c.pool)
}

/// The cold bound slots whose one-shot fetch has not run yet, or `None`.
fn one_shots(snap: &Snapshot, cold: &[UpstreamId], done: &FetchesDone) -> Option<Vec<UpstreamId>> {
    if cold.is_empty() {
        return None;
    }
    let due: Vec<UpstreamId> = cold
        .iter()
        .copied()
        .filter(|&id| !done.one_shot_done(snap.upstream(id).name()))
        .collect();
    (!due.is_empty()).then_some(due)
}

/// Explains a pool in a step's verdict: ` (pool: a, b, c)`, nothing without one.
struct PoolNote<'s>(&'s Snapshot, Option<PoolId>);

impl fmt::Display for PoolNote<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(p) = self.1 else { return Ok(()) };
        f.write_str(" (pool: ")?;
        for (i, m) in self.0.pool(p).iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(self.0.upstream(m.id).name())?;
        }
        f.write_str(")")
    }
}

fn base_path(u: &UpstreamEntry) -> &str {
    u.cfg
        .parsed_url
        .as_ref()
        .map_or("", |p| p.base_path.as_str())
}

/// The outgoing request target on `upstream`: its base path + `path` without its leading `/v1`,
/// after the `[routing] path_rewrites`, with `query` kept.
pub fn outgoing_path(
    snap: &Snapshot,
    upstream: &UpstreamEntry,
    path: &str,
    query: Option<&str>,
) -> String {
    let path = snap
        .index()
        .rewrites
        .iter()
        .find(|(from, _)| **from == *path)
        .map_or(path, |(_, to)| to);
    let rest = match path.strip_prefix("/v1") {
        Some(r) if r.is_empty() || r.starts_with('/') => r,
        _ => path,
    };
    let base = base_path(upstream);
    let mut out = String::with_capacity(base.len() + rest.len() + query.map_or(0, |q| q.len() + 1));
    out.push_str(base);
    out.push_str(rest);
    if out.is_empty() {
        out.push('/');
    }
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

fn is_image_op(path: &str) -> bool {
    ["/images/generations", "/images/edits", "/images/variations"]
        .iter()
        .any(|p| path.contains(p))
}

fn is_image_model(model: &str) -> bool {
    let m = model.as_bytes();
    [&b"sdxl"[..], b"sd-1.5", b"sd15", b"flux"]
        .iter()
        .any(|p| m.len() >= p.len() && m[..p.len()].eq_ignore_ascii_case(p))
}

/// ASCII case-insensitive substring test without allocating.
fn contains_ci(hay: &str, needle: &str) -> bool {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    h.len() >= n.len() && h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}
