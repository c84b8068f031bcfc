//! One request's life after framing: facts, dispatch, readiness gate, forward, relay
//! (DESIGN.md §2, §3).

use super::client::{client_gone, Body, ClientConn};
use super::forward;
use super::front::{self, Desk};
use super::pool;
use super::stream::UpstreamStream;
use super::upstream_error::{BadResponse, UpstreamError, UpstreamErrorKind};
use super::context::{Outcome, Worker};
use crate::admission::{HeldGuard, Priority, Refusal};
use crate::config::{OnClientAbort, OnLoading, UpstreamConfig};
use crate::http::response::ResponseHead;
use crate::http::{BodyFraming, ChunkedDecoder, ErrorCode, ErrorReply, ResponseWriter, Status};
use crate::routing::{
    dispatch, dispatch_async, Decision, FetchesDone, RequestFacts, SlotState, Snapshot,
    SnapshotRef, Step, UpstreamEntry,
};
use bytes::Bytes;
use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Handles a buffered request: its bytes `req` (head parsed into `c.head`, body located by
/// `body`).
pub async fn handle(w: &Rc<Worker>, c: &mut ClientConn, req: &Bytes, body: Body) -> Outcome {
    // The read-side watcher (a dup of the client fd) notices a client leaving while we wait.
    c.watcher();
    // The request keeps this `Rc` (no atomic touched) for its whole life, stream included.
    let mut snap: SnapshotRef = w.snap.get();
    let client_keep_alive = c.head.keep_alive();
    if !super::front_auth::allowed(&snap, c, req) {
        return super::front_auth::refuse(w, c, req, client_keep_alive).await;
    }

    let buf = &req[..];
    let request_id = forward::RequestId::of(&w.ids, c.head.request_id(buf));
    c.rec.request_id(request_id.as_str());
    c.probe.request_id(&request_id);
    super::contain::test_panic_point(
        w.shared.test_panics,
        &c.probe,
        c.head.header(buf, b"x-slotgate-test-panic"),
    );

    let body_bytes: &[u8] = match &body {
        Body::InBuf(r) => buf.get(r.clone()).unwrap_or_default(),
        Body::Owned(v) => v,
    };
    let load = |n: &str| crate::routing::catalog::load_json(&snap, n);
    let bf = match front::examine(&snap, &c.head, buf, body_bytes, &load) {
        Desk::Route(bf) => bf,
        Desk::Json(body) => return reply_json(c, 200, &body, &request_id, client_keep_alive).await,
        Desk::Error(reply) => return reply_error(c, &reply, &request_id, client_keep_alive).await,
    };
    let rf = front::request_facts(&c.head, buf, &bf);
    c.rec.model(rf.model_id());

    // Dispatch, then the readiness gate (DESIGN.md §3): nothing is forwarded to a target that is
    // not ready. With `on_loading = "hold"` the request waits for a publication that makes it
    // ready (re-dispatching each time: a loaded slot may now advertise the model).
    let cell = &w.shared.cell;
    let mut hold: Option<(Instant, HeldGuard)> = None;
    let mut woke = false;
    let decision: Decision = loop {
        let decision = match decide(w, &mut snap, &rf).await {
            Ok(d) => d,
            Err(reply) => return reply_error(c, &reply, &request_id, client_keep_alive).await,
        };
        let entry = snap.upstream(decision.upstream);
        c.rec.routed(
            decision.breadcrumb,
            entry.name(),
            decision.route_header(&snap),
            entry.live.models.is_warm(),
            decision.stream,
        );
        let state = entry.state();
        if state.is_ready() {
            break decision;
        }
        if !woke && matches!(state, SlotState::Offline | SlotState::Error) {
            woke = true;
            super::port::wake(w, entry, rf.model_id());
        }
        let now = Instant::now();
        let deadline = match &hold {
            Some((d, _)) => *d,
            None if entry.cfg.on_loading == OnLoading::Hold => {
                let d = now + Duration::from_millis(entry.cfg.hold_timeout_ms);
                let guard = entry.counters().hold();
                hold = Some((d, guard));
                c.rec.wait_start();
                d
            }
            None => now,
        };
        if now >= deadline {
            let reply = loading_reply(&snap, entry, rf.id(&snap.config.routing));
            return reply_error(c, &reply, &request_id, client_keep_alive).await;
        }
        // Register for the next publication first, then look again: no lost wake-up.
        let next = cell.next_publish();
        let latest = cell.load();
        if latest.epoch != snap.epoch {
            snap = Rc::new(latest);
            continue;
        }
        let woken = monoio::select! {
            r = monoio::time::timeout_at(deadline.into(), next) => r.is_ok(),
            _ = client_gone(c.watch.as_ref()) => return Outcome::Close,
        };
        if woken {
            snap = Rc::new(cell.load());
        }
    };
    drop(hold);
    c.rec.wait_end();
    let entry = snap.upstream(decision.upstream);
    let counters = Some(entry.counters().clone());
    let Some(&addr) = entry.live.addrs.first() else {
        let reply = ErrorReply::new(
            ErrorCode::UpstreamUnavailable,
            format!("upstream '{}' has no resolved address", entry.name()),
        )
        .details(serde_json::json!({"upstream": entry.name()}));
        return reply_error(c, &reply, &request_id, client_keep_alive).await;
    };

    // Concurrency budget (DESIGN.md §3a): under the limit one CAS; over it a fair queue. A
    // waiting request holds no upstream connection.
    let _permit = match counters.as_ref().filter(|_| entry.cfg.max_inflight > 0) {
        None => None,
        Some(cn) => match cn.gate.try_enter() {
            Some(p) => Some(p),
            None => {
                let prio = c
                    .head
                    .header(buf, snap.config.routing.priority_header.as_bytes())
                    .map_or(Priority::Normal, Priority::parse);
                let wait = Duration::from_millis(entry.cfg.queue_timeout_ms);
                c.rec.wait_start();
                let res = monoio::select! {
                    r = cn.gate.enter(prio, wait) => r,
                    _ = client_gone(c.watch.as_ref()) => return Outcome::Close,
                };
                c.rec.wait_end();
                match res {
                    Ok(p) => Some(p),
                    Err(why) => {
                        let retry = entry.cfg.retry_after(&snap.config.routing);
                        let reply = ErrorReply::new(
                            ErrorCode::Busy,
                            format!(
                                "upstream '{}' is at its concurrency limit ({})",
                                entry.name(),
                                match why {
                                    Refusal::QueueFull => "queue full",
                                    Refusal::Timeout => "queue wait timed out",
                                }
                            ),
                        )
                        .details(serde_json::json!({
                            "upstream": entry.name(),
                            "max_inflight": entry.cfg.max_inflight,
                            "max_queue": entry.cfg.max_queue,
                            "queued": cn.gate.waiting(),
                        }))
                        .retry_after(retry);
                        return reply_error(c, &reply, &request_id, client_keep_alive).await;
                    }
                }
            }
        },
    };

    // The outgoing request: head plus the body, byte for byte unless the model must change. A
    // small body joins the head (one write); a large one is sent from the client's own bytes.
    let (head, body_apart) =
        front::outgoing(&c.head, buf, &decision, entry, &bf, body_bytes, &request_id);
    let out = Outgoing {
        head,
        body: body_apart.then(|| match body {
            Body::InBuf(r) => req.slice(r),
            Body::Owned(v) => Bytes::from(v),
        }),
    };
    let ctx = RelayCtx {
        upstream_id: decision.upstream,
        crumb: decision.breadcrumb,
        request_id,
        route_headers: snap.config.listen.route_headers,
        client_keep_alive,
        client_http10: c.head.version() == crate::http::Version::Http10,
        head_request: c.head.method() == crate::http::Method::Head,
        addr: pool::Target::new(&w.pool, &snap, entry, addr),
        snap: snap.clone(),
    };
    let mut inflight = counters.map(|cn| cn.request());
    if decision.stream {
        if let Some(g) = inflight.as_mut() {
            g.streaming();
        }
    }
    relay(w, c, &ctx, out).await
}

/// Runs dispatch on `snap`, performing the fetches it asks for (which may move `snap` on to a
/// fresher snapshot).
async fn decide(
    w: &Rc<Worker>,
    snap: &mut SnapshotRef,
    rf: &RequestFacts<'_>,
) -> Result<Decision, ErrorReply> {
    match dispatch(snap, rf, &FetchesDone::new()) {
        Step::Decided(r) => r.map_err(|e| e.to_reply()),
        Step::Fetch(_) => {
            let fetcher = super::port::PortFetcher::new(w);
            let routed = dispatch_async(snap, rf, &fetcher).await;
            if let Some(s) = routed.snapshot {
                *snap = Rc::new(s);
            }
            routed.result.map_err(|e| e.to_reply())
        }
    }
}

/// Per-exchange facts the relay needs once the snapshot is released.
pub struct RelayCtx {
    /// The snapshot the decision was made on (its upstream entry, config and breadcrumb).
    pub snap: SnapshotRef,
    pub upstream_id: crate::routing::UpstreamId,
    pub crumb: crate::routing::Breadcrumb,
    pub request_id: forward::RequestId,
    pub route_headers: bool,
    pub client_keep_alive: bool,
    pub client_http10: bool,
    pub head_request: bool,
    pub addr: pool::Target,
}

impl RelayCtx {
    /// The chosen upstream's config.
    pub fn cfg(&self) -> &UpstreamConfig {
        &self.snap.upstream(self.upstream_id).cfg
    }

    /// The chosen upstream's name.
    pub fn upstream(&self) -> &str {
        self.snap.upstream(self.upstream_id).name()
    }

    /// The `X-Slotgate-Route` value (rendered once per snapshot).
    pub fn route(&self) -> &str {
        self.snap.route_header(self.upstream_id, self.crumb)
    }
}

/// `503 slot.loading` for `entry` (DESIGN.md §3).
/// `model` is the id dispatch used (the request's, else its path default).
pub fn loading_reply(snap: &Snapshot, entry: &UpstreamEntry, model: &str) -> ErrorReply {
    let state = entry.state();
    let retry = entry.cfg.retry_after(&snap.config.routing);
    // `phase`, `requested_model` and `upstream` are always there; whatever the control plane
    // pushed joins them but never overwrites them (a pushed `phase` string is the phase).
    let mut progress = match &entry.live.pushed {
        Some(p) => p.progress.as_object().cloned().unwrap_or_default(),
        None => serde_json::Map::new(),
    };
    let phase = match progress.get("phase") {
        Some(serde_json::Value::String(p)) if !p.is_empty() => p.clone(),
        _ => state.as_str().to_string(),
    };
    progress.insert("phase".into(), phase.into());
    progress.insert("requested_model".into(), model.into());
    progress.insert("upstream".into(), entry.name().into());
    ErrorReply::new(
        ErrorCode::SlotLoading,
        format!(
            "slot '{}' is {} — not ready to serve",
            entry.name(),
            state.as_str()
        ),
    )
    .details(serde_json::json!({
        "slot": entry.name(),
        "state": state.as_str(),
        "retry_after_s": retry,
        "progress": progress,
    }))
    .retry_after(retry)
}

async fn reply_error(
    c: &mut ClientConn,
    reply: &ErrorReply,
    request_id: &forward::RequestId,
    keep_alive: bool,
) -> Outcome {
    let close = !keep_alive || reply.code.closes_connection();
    let extra = format!("x-request-id: {}\r\n", request_id.as_str());
    let out = reply.to_response(&extra, close);
    c.rec
        .replied(reply.code.status(), Some(reply.code), out.len());
    c.probe.responding();
    let (res, _) = c.stream.write_all(out).await;
    if res.is_err() || close {
        Outcome::Close
    } else {
        Outcome::KeepAlive
    }
}

async fn reply_json(
    c: &mut ClientConn,
    status: u16,
    body: &[u8],
    request_id: &forward::RequestId,
    keep_alive: bool,
) -> Outcome {
    let mut out = Vec::with_capacity(body.len() + 160);
    ResponseWriter::start(&mut out, status)
        .content_type("application/json")
        .content_length(body.len())
        .header("x-request-id", request_id.as_str())
        .close(!keep_alive)
        .end();
    out.extend_from_slice(body);
    c.rec.replied(status, None, out.len());
    c.probe.responding();
    let (res, _) = c.stream.write_all(out).await;
    if res.is_err() || !keep_alive {
        Outcome::Close
    } else {
        Outcome::KeepAlive
    }
}

/// Why an exchange ended before a response head could be relayed.
enum Failure {
    /// The upstream attempt failed (answered 502/504, or retried once).
    Upstream(UpstreamError),
    /// The client left while we waited: not an upstream error, nothing is answered.
    ClientGone,
}

async fn relay(w: &Rc<Worker>, c: &mut ClientConn, ctx: &RelayCtx, out: Outgoing) -> Outcome {
    let cfg = ctx.cfg();
    let started = Instant::now();
    let total_deadline = (cfg.total_ms > 0).then(|| started + Duration::from_millis(cfg.total_ms));
    let mut out = out;
    let mut rbuf = c
        .relay
        .take()
        .unwrap_or_else(|| Vec::with_capacity(w.shared.tuning.read_buffer_bytes));
    rbuf.clear();
    let max_head = w.shared.tuning.max_header_bytes.max(16 * 1024);
    // `cancel` watches the client's read side to close the upstream the moment it leaves;
    // `drain` does not watch: the upstream finishes into the void and the connection is pooled.
    let drain = cfg.on_client_abort == OnClientAbort::Drain;

    let mut attempt = 0;
    let ((mut up, head, filled, mut rbuf), reused) = loop {
        attempt += 1;
        let (up, reused) = match w
            .pool
            .checkout(&ctx.addr, Duration::from_millis(cfg.pool_idle_timeout_ms))
        {
            Some(s) => (s, true),
            None => {
                match pool::connect(
                    &ctx.addr,
                    Duration::from_millis(cfg.connect_ms),
                    w.uring,
                    w.shared.tuning.tcp_nodelay,
                )
                .await
                {
                    Ok(s) => (s, false),
                    Err(e) => {
                        let e = UpstreamError::connect(e);
                        if e.is_refused() {
                            super::port::mark_down(w, ctx.upstream());
                        }
                        c.relay = Some(rbuf);
                        return fail(c, ctx, Failure::Upstream(e)).await;
                    }
                }
            }
        };
        match send_and_wait_head(w, c, ctx, up, reused, out, rbuf, max_head, total_deadline).await {
            Ok(r) => break (r, reused),
            Err((f, o, r)) => {
                out = o;
                rbuf = r;
                // The one retry: a pooled connection the upstream closed while it sat idle.
                if matches!(&f, Failure::Upstream(e) if e.retry_allowed()) && attempt == 1 {
                    continue;
                }
                c.relay = Some(rbuf);
                return fail(c, ctx, f).await;
            }
        }
    };
    // Response head (1xx already skipped). Build the client's head and send it together with the
    // body bytes that came along.
    c.rec.response_head(head.status());
    let framing = head.framing();
    let upstream_keep_alive = head.keep_alive();
    let dechunk = ctx.client_http10 && framing == BodyFraming::Chunked;
    let close_client = !ctx.client_keep_alive
        || matches!(framing, BodyFraming::Close)
        || dechunk
        || w.shared.is_draining();
    let mut first = Vec::with_capacity(filled + 256);
    forward::response_head(&mut first, &head, &rbuf, ctx, close_client, dechunk);
    let head_len = head.head_len();
    drop(head);

    let mut body = BodyState::new(framing, dechunk);
    let avail = rbuf.get(head_len..filled).unwrap_or_default();
    let (take, done) = match body.feed(avail, Some(&mut first)) {
        Ok(x) => x,
        Err(_) => {
            // Bad framing from upstream before anything was sent: a clean 502.
            c.relay = Some(rbuf);
            let e = UpstreamError::bad_response(BadResponse::BodyFraming, reused);
            return fail(c, ctx, Failure::Upstream(e)).await;
        }
    };
    let extra_after = take < avail.len();
    c.rec
        .relayed(avail.get(..take).unwrap_or(avail), &w.metrics);
    c.rec.wrote(first.len());
    let idle = Duration::from_millis(cfg.idle_ms);
    c.probe.responding();
    let (written, _) = write_client(&mut c.stream, first, idle).await;
    c.probe.body_panic_point();
    // Client gone (or not reading for `idle_ms`): `cancel` drops the upstream connection (never
    // pooled); `drain` reads on.
    let mut client_dead = !written;
    if client_dead {
        c.rec.client_gone();
    }
    if client_dead && !drain {
        c.relay = Some(rbuf);
        return Outcome::Close;
    }
    if done {
        let reusable = upstream_keep_alive && !extra_after && framing != BodyFraming::Close;
        return complete(
            w,
            &mut c.relay,
            ctx,
            up,
            rbuf,
            reusable,
            close_client || client_dead,
        );
    }

    // Stream the rest: one reused buffer, bytes forwarded as they arrive.
    let rbuf_cap = rbuf.capacity();
    let mut gone = std::pin::pin!(client_gone(if drain { None } else { c.watch.as_ref() }));
    let mut scratch = Vec::new();
    loop {
        let mut wait = idle;
        if let Some(d) = total_deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                c.rec.cut();
                return Outcome::Close;
            }
            wait = wait.min(left);
        }
        rbuf.clear();
        let read = monoio::time::timeout(wait, up.read(rbuf));
        let r = monoio::select! {
            r = read => Some(r),
            _ = &mut gone => None,
        };
        let (res, b) = match r {
            // Client left mid-stream: drop the upstream connection now so generation stops.
            None => {
                c.rec.client_gone();
                return Outcome::Close;
            }
            // Stalled upstream: cut the stream (no terminating chunk).
            Some(Err(_)) => {
                c.rec.cut();
                return Outcome::Close;
            }
            Some(Ok(x)) => x,
        };
        rbuf = b;
        let n = match res {
            Ok(0) | Err(_) => {
                if framing == BodyFraming::Close {
                    c.relay = Some(rbuf);
                } else {
                    c.rec.cut();
                }
                // Upstream ended: complete only for close-delimited bodies; otherwise it was cut.
                return Outcome::Close;
            }
            Ok(n) => n,
        };
        scratch.clear();
        let got = rbuf.get(..n).unwrap_or_default();
        let (take, done) = match body.feed(got, dechunk.then_some(&mut scratch)) {
            Ok(x) => x,
            Err(_) => {
                c.rec.cut();
                return Outcome::Close;
            }
        };
        c.rec
            .relayed(rbuf.get(..take).unwrap_or_default(), &w.metrics);
        if !client_dead {
            c.rec.wrote(if dechunk { scratch.len() } else { take });
            let written = if dechunk {
                let (ok, back) =
                    write_client(&mut c.stream, std::mem::take(&mut scratch), idle).await;
                scratch = back.unwrap_or_default();
                ok
            } else {
                let (ok, back) = write_client(&mut c.stream, rbuf.slice(0..take), idle).await;
                // A timed-out write keeps its buffer: reading on (drain) needs a fresh one.
                rbuf = back.map_or_else(|| Vec::with_capacity(rbuf_cap), |b| b.into_inner());
                ok
            };
            if !written {
                c.rec.client_gone();
                if !drain {
                    return Outcome::Close;
                }
                client_dead = true;
            }
        }
        if done {
            let reusable = upstream_keep_alive && take == n;
            return complete(
                w,
                &mut c.relay,
                ctx,
                up,
                rbuf,
                reusable,
                close_client || client_dead,
            );
        }
    }
}

/// Writes `buf` to the client within `limit`: a client that stops reading for that long is
/// treated as gone, so a slow reader cannot hold a stream (and its upstream) forever. Returns
/// whether the write completed, and the buffer unless the write was cancelled.
async fn write_client<T: monoio::buf::IoBuf>(
    stream: &mut super::stream::ClientStream,
    buf: T,
    limit: Duration,
) -> (bool, Option<T>) {
    match monoio::time::timeout(limit, stream.write_all(buf)).await {
        Ok((res, buf)) => (res.is_ok(), Some(buf)),
        Err(_) => (false, None),
    }
}

/// A response that ended cleanly: pool the upstream connection when `reusable`, keep the relay
/// buffer for the next exchange, and tell the connection whether to go on.
fn complete(
    w: &Rc<Worker>,
    relay_buf: &mut Option<Vec<u8>>,
    ctx: &RelayCtx,
    up: UpstreamStream,
    rbuf: Vec<u8>,
    reusable: bool,
    close: bool,
) -> Outcome {
    if reusable {
        w.pool
            .checkin(&ctx.addr, up, ctx.cfg().pool_max_idle as usize);
    }
    *relay_buf = Some(rbuf);
    if close {
        Outcome::Close
    } else {
        Outcome::KeepAlive
    }
}

/// Tracks where a response body ends while its bytes pass through.
struct BodyState {
    framing: BodyFraming,
    remaining: u64,
    chunked: ChunkedDecoder,
    dechunk: bool,
}

impl BodyState {
    fn new(framing: BodyFraming, dechunk: bool) -> BodyState {
        BodyState {
            framing,
            remaining: match framing {
                BodyFraming::Length(n) => n,
                _ => 0,
            },
            chunked: ChunkedDecoder::new(),
            dechunk,
        }
    }

    /// Accounts for `input`; returns how many of its bytes belong to the body and whether the body
    /// is complete. Those bytes are appended to `out` when given (de-chunking for an HTTP/1.0
    /// client appends only the payload); without `out` the caller forwards `input[..n]` itself.
    fn feed(&mut self, input: &[u8], out: Option<&mut Vec<u8>>) -> Result<(usize, bool), ()> {
        let (take, done) = match self.framing {
            BodyFraming::None => (0, true),
            BodyFraming::Length(_) => {
                let take = (self.remaining as usize).min(input.len());
                self.remaining -= take as u64;
                (take, self.remaining == 0)
            }
            BodyFraming::Close => (input.len(), false),
            BodyFraming::Chunked if self.dechunk => {
                let out = out.expect("de-chunking needs an output buffer");
                let p = self
                    .chunked
                    .decode(input, |d| out.extend_from_slice(d))
                    .map_err(|_| ())?;
                return Ok((p.consumed, p.done));
            }
            BodyFraming::Chunked => {
                let p = self.chunked.track(input).map_err(|_| ())?;
                (p.consumed, p.done)
            }
        };
        if let Some(out) = out {
            out.extend_from_slice(input.get(..take).unwrap_or(input));
        }
        Ok((take, done))
    }
}

type SendErr = (Failure, Outgoing, Vec<u8>);

/// The request as it goes upstream: the head (followed by the body when it is small or was
/// rewritten), then a large body as the client sent it.
struct Outgoing {
    head: Vec<u8>,
    body: Option<Bytes>,
}

impl Outgoing {
    /// Writes the request; gives it back (for a retry on a fresh connection) either way.
    async fn write_to(self, up: &mut UpstreamStream) -> (io::Result<()>, Outgoing) {
        let (res, head) = up.write_all(self.head).await;
        let mut out = Outgoing {
            head,
            body: self.body,
        };
        if res.is_ok() {
            if let Some(body) = out.body.take() {
                let (res, body) = up.write_all(body).await;
                out.body = Some(body);
                return (res.map(drop), out);
            }
        }
        (res.map(drop), out)
    }
}

/// Writes the request and waits for a final response head (skipping 1xx), watching the client.
/// On success returns the connection, the parsed head and how many bytes of `rbuf` are filled.
#[allow(clippy::too_many_arguments)]
async fn send_and_wait_head(
    w: &Rc<Worker>,
    c: &mut ClientConn,
    ctx: &RelayCtx,
    mut up: UpstreamStream,
    reused: bool,
    out: Outgoing,
    mut rbuf: Vec<u8>,
    max_head: usize,
    total_deadline: Option<Instant>,
) -> Result<(UpstreamStream, ResponseHead, usize, Vec<u8>), SendErr> {
    let cfg = ctx.cfg();
    let (res, out) = out.write_to(&mut up).await;
    let failed = |kind, source| Failure::Upstream(UpstreamError::new(kind, source, reused));
    if let Err(e) = res {
        return Err((failed(UpstreamErrorKind::Write, Some(e)), out, rbuf));
    }
    c.rec.sent();
    let mut deadline = Instant::now() + Duration::from_millis(cfg.first_byte_ms);
    if let Some(d) = total_deadline {
        deadline = deadline.min(d);
    }
    let _ = w;
    let mut head = ResponseHead::new();
    let drain = cfg.on_client_abort == OnClientAbort::Drain;
    let mut gone = std::pin::pin!(client_gone(if drain { None } else { c.watch.as_ref() }));
    rbuf.clear();
    let mut filled = 0usize;
    loop {
        if rbuf.capacity() - filled < 4096 {
            rbuf.reserve(8192);
        }
        let cap = rbuf.capacity();
        // Append after what is buffered: read into the spare capacity through monoio's slice.
        let read = monoio::time::timeout_at(deadline.into(), up.read(rbuf.slice_mut(filled..cap)));
        let r = monoio::select! {
            r = read => Some(r),
            _ = &mut gone => None,
        };
        let (res, b) = match r {
            None => return Err((Failure::ClientGone, out, Vec::new())),
            Some(Err(_)) => {
                let partial_head = filled > 0;
                let timeout = UpstreamErrorKind::Timeout { partial_head };
                return Err((failed(timeout, None), out, Vec::new()));
            }
            Some(Ok(x)) => x,
        };
        rbuf = b.into_inner();
        match res {
            Err(e) if filled == 0 => {
                return Err((failed(UpstreamErrorKind::Read, Some(e)), out, rbuf));
            }
            Ok(0) if filled == 0 => {
                return Err((failed(UpstreamErrorKind::ClosedBeforeHead, None), out, rbuf));
            }
            Ok(0) | Err(_) => {
                let bad = UpstreamErrorKind::BadResponse(BadResponse::ClosedMidHead);
                return Err((failed(bad, res.err()), out, rbuf));
            }
            Ok(n) => filled += n,
        }
        loop {
            match head.parse(
                rbuf.get(..filled).unwrap_or_default(),
                ctx.head_request,
                max_head,
            ) {
                Ok(Status::Complete(n)) => {
                    if head.is_informational() && head.status() != 101 {
                        // 1xx: not relayed (the client's own `Expect` was answered locally).
                        rbuf.copy_within(n..filled, 0);
                        filled -= n;
                        if filled == 0 {
                            break;
                        }
                        continue;
                    }
                    if head.status() == 101 {
                        let bad = UpstreamErrorKind::BadResponse(BadResponse::Upgrade);
                        return Err((failed(bad, None), out, rbuf));
                    }
                    return Ok((up, head, filled, rbuf));
                }
                Ok(Status::Incomplete) => break,
                Err(e) => {
                    let bad = UpstreamErrorKind::BadResponse(BadResponse::MalformedHead(e));
                    return Err((failed(bad, None), out, rbuf));
                }
            }
        }
    }
}

/// Answers a failed exchange: nothing for a client that left, else the upstream error's 502/504.
async fn fail(c: &mut ClientConn, ctx: &RelayCtx, f: Failure) -> Outcome {
    let reply = match f {
        Failure::ClientGone => {
            c.rec.client_gone();
            return Outcome::Close;
        }
        Failure::Upstream(e) => e.to_reply(ctx.upstream(), &ctx.addr, ctx.cfg().first_byte_ms),
    };
    reply_error(c, &reply, &ctx.request_id, ctx.client_keep_alive).await
}
