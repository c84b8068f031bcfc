//! One request's life after framing (DESIGN.md §2, §3, §3a): the front desk (key, local
//! answers, body facts), admission (dispatch, replica pick, readiness and concurrency gates),
//! then one attempt per upstream — the first one chosen, then its fallbacks while they are
//! allowed — and the relay of the answer.

use super::admit::{self, Entered, Ready};
use super::attempt::Attempt;
use super::chain::{Chain, Trigger};
use super::client::{Body, ClientConn};
use super::context::{Outcome, Worker};
use super::forward::RequestId;
use super::front::{self, Desk};
use super::pool;
use super::send::{self, Failure, Outgoing};
use crate::admission::{clock_ms, Priority};
use crate::http::ErrorReply;
use crate::routing::{BodyFacts, Decision, RequestFacts, SnapshotRef};
use bytes::Bytes;
use std::rc::Rc;
use std::time::{Duration, Instant};

pub use super::reply::loading as loading_reply;

/// Handles a buffered request: its bytes `req` (head parsed into `c.head`, body located by
/// `body`).
pub async fn handle(w: &Rc<Worker>, c: &mut ClientConn, req: &Bytes, body: Body) -> Outcome {
    // The read-side watcher (a dup of the client fd) notices a client leaving while we wait.
    c.watcher();
    // The request keeps this `Rc` (no atomic touched) for its whole life, stream included.
    let mut snap: SnapshotRef = w.snap.get();
    let keep_alive = c.head.keep_alive();
    if !super::front_auth::allowed(&snap, c, req) {
        return super::front_auth::refuse(w, c, req, keep_alive).await;
    }
    let buf = &req[..];
    let request_id = RequestId::of(&w.ids, c.head.request_id(buf));
    c.rec.request_id(request_id.as_str());
    c.probe.request_id(&request_id);
    super::contain::test_panic_point(
        w.shared.test_panics,
        &c.probe,
        c.head.header(buf, b"x-slotgate-test-panic"),
    );
    let body = match body {
        Body::InBuf(r) => RequestBody::InBuf(req, r),
        Body::Owned(v) => RequestBody::Owned(Bytes::from(v)),
    };
    let body_bytes = body.bytes();
    let load = |n: &str| crate::routing::catalog::load_json(&snap, n);
    let bf = match front::examine(&snap, &c.head, buf, body_bytes, &load) {
        Desk::Route(bf) => bf,
        Desk::Json(out) => return super::reply::json(c, 200, &out, &request_id, keep_alive).await,
        Desk::Error(r) => return super::reply::error(c, &r, &request_id, keep_alive).await,
    };
    let rf = front::request_facts(&c.head, buf, &bf);
    c.rec.model(rf.model_id());
    let key = front::affinity(&snap, &c.head, buf, &bf, body_bytes);

    let first = admit::ready(w, c, &mut snap, &rf, key).await;
    c.rec.wait_end();
    let first = match first {
        Ready::Go(d) => Ok(d),
        Ready::Loading(d, reply) => Err((d, reply)),
        Ready::Refused(r) => return super::reply::error(c, &r, &request_id, keep_alive).await,
        Ready::ClientGone => return Outcome::Close,
    };
    let req = Request {
        snap,
        rf,
        bf: &bf,
        buf,
        body: &body,
        request_id,
        keep_alive,
    };
    attempts(w, c, &req, first).await
}

/// What every attempt of one request shares.
struct Request<'r> {
    snap: SnapshotRef,
    rf: RequestFacts<'r>,
    bf: &'r BodyFacts<'r>,
    buf: &'r [u8],
    body: &'r RequestBody<'r>,
    request_id: RequestId,
    keep_alive: bool,
}

/// The request body: a range of the connection's read buffer, or its own de-chunked bytes.
enum RequestBody<'r> {
    InBuf(&'r Bytes, std::ops::Range<usize>),
    Owned(Bytes),
}

impl RequestBody<'_> {
    /// The body's bytes.
    fn bytes(&self) -> &[u8] {
        match self {
            RequestBody::InBuf(req, r) => req.get(r.clone()).unwrap_or_default(),
            RequestBody::Owned(b) => b,
        }
    }

    /// The body as a shared buffer, for sending it apart from the head (no copy).
    fn shared(&self) -> Bytes {
        match self {
            RequestBody::InBuf(req, r) => req.slice(r.clone()),
            RequestBody::Owned(b) => b.clone(),
        }
    }
}

/// The first upstream, then its fallbacks while a trigger allows one: each gets the cooldown
/// check, the concurrency gate and one attempt; the first answer that arrives is relayed.
async fn attempts(
    w: &Rc<Worker>,
    c: &mut ClientConn,
    r: &Request<'_>,
    first: Result<Decision, (Decision, ErrorReply)>,
) -> Outcome {
    let (d0, mut next) = match first {
        Ok(d) => (d.clone(), Ok(d)),
        Err((d, reply)) => (d.clone(), Err((reply, Trigger::Loading))),
    };
    let mut chain = Chain::new(d0.upstream);
    let total = r.snap.upstream(d0.upstream).cfg.total_ms;
    let total = (total > 0).then(|| Instant::now() + Duration::from_millis(total));
    loop {
        let d = match next {
            Ok(d) => d,
            Err((reply, trigger)) => match chain.next(&r.snap, trigger) {
                Some(to) => {
                    let fd = d0.fallback(&r.snap, &r.rf, to);
                    let entry = r.snap.upstream(to);
                    let from = r.snap.upstream(chain.first).name();
                    c.rec.fallback(from, entry.name(), trigger.as_str());
                    let route = fd.route_header(&r.snap);
                    let warm = entry.live.models.is_warm();
                    c.rec
                        .routed(fd.breadcrumb, entry.name(), route, warm, fd.stream);
                    next = Ok(fd);
                    continue;
                }
                None => return super::reply::error(c, &reply, &r.request_id, r.keep_alive).await,
            },
        };
        next = match attempt(w, c, r, &chain, d, total).await {
            Tried::Answered(outcome) => return outcome,
            Tried::Refused(reply, trigger) => Err((reply, trigger)),
        };
    }
}

/// How one attempt ended.
enum Tried {
    /// An answer was relayed (or the client left).
    Answered(Outcome),
    /// Nothing was sent to the client: answer this, or move on for this trigger.
    Refused(ErrorReply, Trigger),
}

/// One attempt at `d`'s upstream: skipped when it is cooling and a fallback could serve,
/// admitted through its concurrency gate, sent, and its answer relayed.
async fn attempt(
    w: &Rc<Worker>,
    c: &mut ClientConn,
    r: &Request<'_>,
    chain: &Chain,
    d: Decision,
    total: Option<Instant>,
) -> Tried {
    let snap = &r.snap;
    let entry = snap.upstream(d.upstream);
    let counters = entry.counters();
    // The clock is read only when the breaker is open: the common path costs one atomic load.
    let trial_ms = entry.cfg.connect_ms + entry.cfg.first_byte_ms;
    let admitted = counters.cooldown.is_closed() || counters.cooldown.admits(clock_ms(), trial_ms);
    if !admitted && chain.has_next(snap) {
        return Tried::Refused(cooling_reply(entry), Trigger::Cooling);
    }
    let Some(&addr) = entry.live.addrs.first() else {
        return Tried::Refused(super::reply::no_address(entry), Trigger::Failed);
    };
    let prio = c
        .head
        .header(r.buf, snap.config.routing.priority_header.as_bytes())
        .map_or(Priority::Normal, Priority::parse);
    let _permit = match admit::enter(c, snap, entry, prio).await {
        Entered::Go(p) => p,
        Entered::Busy(reply) => return Tried::Refused(reply, Trigger::Busy),
        Entered::ClientGone => return Tried::Answered(Outcome::Close),
    };
    // The outgoing request: head plus the body, byte for byte unless the model must change. A
    // small body joins the head (one write); a large one is sent from the client's own bytes.
    let (head, body_apart) = front::outgoing(
        &c.head,
        r.buf,
        &d,
        entry,
        r.bf,
        r.body.bytes(),
        &r.request_id,
    );
    let out = Outgoing {
        head,
        body: body_apart.then(|| r.body.shared()),
    };
    let at = Attempt {
        upstream_id: d.upstream,
        crumb: d.breadcrumb,
        request_id: r.request_id.clone(),
        route_headers: snap.config.listen.route_headers,
        client_keep_alive: r.keep_alive,
        client_http10: c.head.version() == crate::http::Version::Http10,
        head_request: c.head.method() == crate::http::Method::Head,
        addr: pool::Target::new(&w.pool, snap, entry, addr),
        fallback_from: (d.upstream != chain.first).then_some(chain.first),
        snap: snap.clone(),
    };
    let mut inflight = counters.request();
    if d.stream {
        inflight.streaming();
    }
    // Only an upstream with a fallback chain ever spends its budget: the others skip the shared
    // counter and the clock.
    if !entry.cfg.fallback.is_empty() {
        counters.budget.record_request(clock_ms());
    }
    match send::send(w, c, &at, out, total).await {
        Ok(arrived) => Tried::Answered(super::relay::relay(w, c, &at, arrived, total).await),
        Err(Failure::ClientGone) => {
            c.rec.client_gone();
            Tried::Answered(Outcome::Close)
        }
        Err(Failure::Upstream(e)) => {
            let reply = e.to_reply(at.upstream(), &at.addr, at.cfg().first_byte_ms);
            let trigger = if e.falls_back() {
                Trigger::Failed
            } else {
                Trigger::Final
            };
            Tried::Refused(reply, trigger)
        }
    }
}

/// `503 slot.loading`-shaped refusal for an upstream whose cooldown breaker is open; answered
/// only when no fallback can serve (then the request is tried on the upstream anyway).
fn cooling_reply(entry: &crate::routing::UpstreamEntry) -> ErrorReply {
    let left = entry.counters().cooldown.remaining_ms(clock_ms());
    ErrorReply::new(
        crate::http::ErrorCode::UpstreamUnavailable,
        format!("upstream '{}' is cooling down after failures", entry.name()),
    )
    .details(serde_json::json!({"upstream": entry.name(), "cooldown_remaining_ms": left}))
}
