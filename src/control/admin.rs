//! The admin API (DESIGN.md §6) on `[listen] admin`: a small blocking HTTP/1.1 server, one std
//! thread per connection (low traffic), every error in the §4 envelope.
//!
//! `/admin/*` and `/metrics` need `Authorization: Bearer <token>` when `listen.admin_token_env`
//! is configured (compared in constant time; if the variable it names is unset they are locked,
//! never open); `/healthz` and `/readyz` never do, so orchestrator probes keep working.

#![deny(clippy::string_slice, clippy::indexing_slicing)]

use super::plane::Control;
use super::state::PushError;
use super::wire::{Wire, WireError, MAX_HEAD};
use crate::admission;
use crate::config::ct_eq;
use crate::config::UpstreamKind;
use crate::http::{ErrorCode, ErrorReply, Limits, RequestError, RequestHead, ResponseWriter};
use crate::prometheus;
use crate::routing::{self, ExplainAt, ProbeStatus, RequestFacts, SlotState, Snapshot};
use serde_json::{json, Value};
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Connections served at once; more are closed at accept (a misbehaving scraper cannot pile up
/// threads).
const MAX_CONNS: usize = 64;
/// Time for one request (head and body) once its first byte may arrive.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request body (slot pushes are small JSON).
const MAX_BODY: usize = 1024 * 1024;

/// Binds the admin listener on `addr` and serves it on a background thread. Returns the bound
/// address (useful with port 0) and the accept thread's handle.
pub fn spawn_admin(
    control: Arc<Control>,
    addr: SocketAddr,
) -> io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = bind_reuseport(crate::listener::concrete_port(addr)?)?;
    let local = listener.local_addr()?;
    let active = Arc::new(AtomicUsize::new(0));
    let h = std::thread::Builder::new()
        .name("slotgate-admin".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(stream) = conn else { continue };
                if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNS {
                    active.fetch_sub(1, Ordering::AcqRel);
                    continue;
                }
                let c = control.clone();
                let a = active.clone();
                let spawned = std::thread::Builder::new()
                    .name("slotgate-admin-conn".into())
                    .spawn(move || {
                        serve_conn(&c, stream);
                        a.fetch_sub(1, Ordering::AcqRel);
                    });
                if spawned.is_err() {
                    active.fetch_sub(1, Ordering::AcqRel);
                }
            }
        })?;
    Ok((local, h))
}

/// Binds with `SO_REUSEPORT` (like the front door), so a new slotgate can start on the same
/// ports while the old one drains (docs/operations.md "Graceful stop and upgrade").
fn bind_reuseport(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&addr.into())?;
    s.listen(128)?;
    Ok(s.into())
}

/// An answer: status, content type, body, extra header lines.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    extra: String,
    /// Answering `HEAD`: the length of the body, not the body.
    head_only: bool,
}

impl Reply {
    fn json(status: u16, v: &Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: serde_json::to_vec(v).expect("json"),
            extra: String::new(),
            head_only: false,
        }
    }

    fn error(e: ErrorReply) -> Reply {
        Reply {
            status: e.code.status(),
            content_type: "application/json",
            extra: e
                .retry_after_s
                .map(|s| format!("retry-after: {s}\r\n"))
                .unwrap_or_default(),
            body: e.body(),
            head_only: false,
        }
    }

    fn with_header(mut self, line: &str) -> Reply {
        self.extra.push_str(line);
        self.extra.push_str("\r\n");
        self
    }

    fn bytes(&self, close: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 160);
        ResponseWriter::start(&mut out, self.status)
            .content_type(self.content_type)
            .content_length(self.body.len())
            .lines(&self.extra)
            .close(close)
            .end();
        if !self.head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// A parsed request the router sees.
struct Request {
    method: String,
    path: String,
    query: String,
    authorization: Option<Vec<u8>>,
    body: Vec<u8>,
}

fn serve_conn(control: &Control, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut w = Wire::new(stream, Instant::now() + REQUEST_TIMEOUT);
    loop {
        let (reply, close) = match read_request(&mut w) {
            Ok(None) => return,
            Ok(Some((req, close))) => match answer_request(control, &req) {
                Some(reply) => (reply, close),
                None => (internal_error(), true),
            },
            Err(WireError::Timeout) | Err(WireError::Closed) | Err(WireError::Io(_)) => return,
            Err(WireError::TooLarge) => (
                Reply::error(ErrorReply::new(
                    ErrorCode::BodyTooLarge,
                    "admin request over its size limit",
                )),
                true,
            ),
            Err(WireError::Bad(m)) => (Reply::error(ErrorReply::new(ErrorCode::BadHttp, m)), true),
        };
        if w.write_all(&reply.bytes(close)).is_err() || close {
            return;
        }
        w.set_deadline(Instant::now() + REQUEST_TIMEOUT);
    }
}

/// Routes one request; `None` when that panicked (a bug: logged, answered `500
/// server.internal`, and the connection closed; the admin API and the proxy go on).
fn answer_request(control: &Control, req: &Request) -> Option<Reply> {
    let routed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| route(control, req)));
    match routed {
        Ok(mut reply) => {
            if req.method == "HEAD" {
                reply.head_only = true;
            }
            Some(reply)
        }
        Err(payload) => {
            tracing::error!(
                method = %req.method,
                path = %req.path,
                panic = crate::logging::panic_message(payload.as_ref()),
                "an admin request panicked (a bug); closed that connection only"
            );
            None
        }
    }
}

fn internal_error() -> Reply {
    Reply::error(ErrorReply::new(
        ErrorCode::Internal,
        "internal error; the admin request was not completed (see the server log)",
    ))
}

/// The whole answer to one admin request given as bytes (head, then the body bytes after it;
/// `Content-Length` or chunked framing is not re-checked): what `serve_conn` would write. For the
/// admin fuzz target; never panics out.
pub fn answer_bytes(control: &Control, raw: &[u8]) -> Vec<u8> {
    let mut head = RequestHead::new();
    let reply = match head.parse(raw, &HEAD_LIMITS) {
        Ok(crate::http::Status::Complete(n)) => {
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            let req = Request {
                method: text(head.method_bytes(raw)),
                path: text(head.path(raw)),
                query: head.query(raw).map(text).unwrap_or_default(),
                authorization: head.authorization(raw).map(<[u8]>::to_vec),
                body: raw.get(n..).unwrap_or_default().to_vec(),
            };
            answer_request(control, &req).unwrap_or_else(internal_error)
        }
        Ok(_) => Reply::error(ErrorReply::new(ErrorCode::BadHttp, "incomplete head")),
        Err(e) => Reply::error(ErrorReply::new(ErrorCode::BadHttp, e.to_string())),
    };
    reply.bytes(true)
}

/// Admin request head limits: [`MAX_HEAD`] bytes in all (the target has no limit of its own)
/// and 64 headers.
const HEAD_LIMITS: Limits = Limits {
    max_header_bytes: MAX_HEAD,
    max_headers: 64,
    max_uri_bytes: MAX_HEAD,
};

fn read_request(w: &mut Wire) -> Result<Option<(Request, bool)>, WireError> {
    let Some(raw) = w.read_head()? else {
        return Ok(None);
    };
    // `raw` ends in the blank line, so the parse is complete or an error.
    let mut head = RequestHead::new();
    head.parse(&raw, &HEAD_LIMITS).map_err(|e| match e {
        RequestError::HeadTooLarge => WireError::TooLarge,
        e => WireError::Bad(e.to_string()),
    })?;
    let body = w.read_body(head.framing(), MAX_BODY)?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let req = Request {
        method: text(head.method_bytes(&raw)),
        path: text(head.path(&raw)),
        query: head.query(&raw).map(text).unwrap_or_default(),
        authorization: head.authorization(&raw).map(<[u8]>::to_vec),
        body,
    };
    Ok(Some((req, !head.keep_alive())))
}

fn not_allowed(allow: &str) -> Reply {
    Reply::error(ErrorReply::new(
        ErrorCode::MethodNotAllowed,
        format!("method not allowed; use {allow}"),
    ))
    .with_header(&format!("allow: {allow}"))
}

fn route(control: &Control, req: &Request) -> Reply {
    let m = req.method.as_str();
    match req.path.as_str() {
        "/healthz" => match m {
            "GET" | "HEAD" => Reply::json(200, &json!({"status": "ok"})),
            _ => not_allowed("GET"),
        },
        "/readyz" => match m {
            "GET" | "HEAD" => readyz(control),
            _ => not_allowed("GET"),
        },
        p if p == "/metrics" || p.starts_with("/admin/") => {
            if let Err(r) = authorize(control, req) {
                return r;
            }
            admin_route(control, req)
        }
        _ => Reply::error(ErrorReply::new(
            ErrorCode::NotFound,
            format!("no admin endpoint {}", req.path),
        )),
    }
}

fn authorize(control: &Control, req: &Request) -> Result<(), Reply> {
    let Some(var) = control.config().listen.admin_token_env.clone() else {
        return Ok(());
    };
    // A named but unset (or empty) variable locks the API rather than opening it: a token that
    // went missing from the service environment must not turn authentication off.
    let token = std::env::var(&var).ok().filter(|t| !t.is_empty());
    let Some(token) = token else {
        return Err(Reply::error(ErrorReply::new(
            ErrorCode::Unauthorized,
            format!("the admin API is locked: {var} (listen.admin_token_env) is not set"),
        ))
        .with_header("www-authenticate: Bearer"));
    };
    let given = req
        .authorization
        .as_deref()
        .and_then(|v| {
            v.strip_prefix(b"Bearer ")
                .or_else(|| v.strip_prefix(b"bearer "))
        })
        .unwrap_or_default();
    if ct_eq(given, token.as_bytes()) {
        Ok(())
    } else {
        Err(Reply::error(ErrorReply::new(
            ErrorCode::Unauthorized,
            "the admin API requires a valid bearer token",
        ))
        .with_header("www-authenticate: Bearer"))
    }
}

fn admin_route(control: &Control, req: &Request) -> Reply {
    let m = req.method.as_str();
    match req.path.as_str() {
        "/metrics" if m == "GET" => metrics(control),
        "/metrics" => not_allowed("GET"),
        "/admin/upstreams" if m == "GET" => Reply::json(200, &upstreams_json(control)),
        "/admin/upstreams" => not_allowed("GET"),
        "/admin/route" if m == "GET" => route_explain(control, &req.query),
        "/admin/route" => not_allowed("GET"),
        "/admin/reload" if m == "POST" => match control.reload() {
            Ok(epoch) => Reply::json(200, &json!({"reloaded": true, "epoch": epoch})),
            Err(e) => Reply::error(
                ErrorReply::new(
                    ErrorCode::InvalidRequest,
                    format!(
                        "config refused ({}); still serving the previous one",
                        e.count()
                    ),
                )
                .details(json!({"problems": e.problems})),
            ),
        },
        "/admin/reload" => not_allowed("POST"),
        p => match p.strip_prefix("/admin/slots/") {
            Some(name) if !name.is_empty() && !name.contains('/') => {
                if m == "PUT" || m == "POST" {
                    push_slot(
                        control,
                        &crate::http::target::decode_segment(name.as_bytes()),
                        &req.body,
                    )
                } else {
                    not_allowed("PUT")
                }
            }
            _ => Reply::error(ErrorReply::new(
                ErrorCode::NotFound,
                format!("no admin endpoint {p}"),
            )),
        },
    }
}

fn readyz(control: &Control) -> Reply {
    match control.readiness() {
        Some(r) => Reply::json(
            200,
            &json!({"ready": true, "driver": r.driver, "workers": r.workers, "epoch": control.cell().epoch()}),
        ),
        None => Reply::json(503, &json!({"ready": false, "workers": 0})),
    }
}

fn push_slot(control: &Control, name: &str, body: &[u8]) -> Reply {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return Reply::error(ErrorReply::new(
                ErrorCode::InvalidJson,
                format!("body is not JSON: {e}"),
            ))
        }
    };
    let state = v.get("state").and_then(Value::as_str);
    let Some(state) = state.and_then(SlotState::parse) else {
        return Reply::error(
            ErrorReply::new(
                ErrorCode::InvalidRequest,
                "\"state\" must be one of offline pulling starting warming ready serving idle unloading error",
            )
            .details(json!({"slot": name, "state": v.get("state")})),
        );
    };
    let progress = v.get("progress").cloned().unwrap_or_else(|| json!({}));
    if !progress.is_object() {
        return Reply::error(
            ErrorReply::new(ErrorCode::InvalidRequest, "\"progress\" must be an object")
                .details(json!({"slot": name})),
        );
    }
    match control.push_slot_state(name, state, progress) {
        Ok(epoch) => Reply::json(
            200,
            &json!({"slot": name, "state": state.as_str(), "epoch": epoch}),
        ),
        Err(PushError::UnknownSlot) => Reply::error(
            ErrorReply::new(ErrorCode::NotFound, format!("no upstream named '{name}'"))
                .details(json!({"slot": name})),
        ),
        Err(PushError::NotASlot(kind)) => Reply::error(
            ErrorReply::new(
                ErrorCode::InvalidRequest,
                format!(
                    "'{name}' is a {} upstream; only slot upstreams take pushed state",
                    kind.as_str()
                ),
            )
            .details(json!({"slot": name, "kind": kind.as_str()})),
        ),
    }
}

fn age_ms(t: Option<Instant>) -> Value {
    t.map(|t| json!(t.elapsed().as_millis() as u64))
        .unwrap_or(Value::Null)
}

fn probe_str(p: ProbeStatus) -> &'static str {
    match p {
        ProbeStatus::Unknown => "unknown",
        ProbeStatus::Passing => "passing",
        ProbeStatus::Failing => "failing",
    }
}

/// `GET /admin/upstreams`: every upstream in priority order with its live state.
fn upstreams_json(control: &Control) -> Value {
    let (config, live, epoch) = control.live_view();
    let view = Snapshot::build(config, &live, epoch);
    let now_ms = admission::clock_ms();
    let list: Vec<Value> = view
        .upstreams
        .iter()
        .map(|u| {
            let c = control.counters(u.name());
            let l = &u.live;
            let (requests, retries) = c.as_ref().map_or((0, 0), |c| c.budget.window(now_ms));
            json!({
                "name": u.name(),
                "kind": u.kind().as_str(),
                "url": u.cfg.url,
                "state": u.state().as_str(),
                "probe": {
                    "enabled": u.cfg.probed(),
                    "status": probe_str(l.probe),
                    "last_age_ms": age_ms(l.last_probe_at),
                },
                "models": {
                    "ids": l.models.ids,
                    "static": !u.cfg.models.is_empty(),
                    "age_ms": age_ms(l.models.fetched_at),
                    "advertised": u.cfg.advertise_models && u.kind() != UpstreamKind::Composite,
                },
                "pushed": l.pushed.as_ref().map(|p| json!({"state": p.state.as_str(), "progress": p.progress})),
                "inflight": {
                    // DESIGN.md §3: a local upstream with a request in flight counts as serving.
                    "serving": c.as_ref().is_some_and(|c| c.requests() > 0),
                    "requests": c.as_ref().map_or(0, |c| c.requests()),
                    "streams": c.as_ref().map_or(0, |c| c.streams()),
                    "total": c.as_ref().map_or(0, |c| c.total()),
                },
                "queue": {
                    "max_inflight": u.cfg.max_inflight,
                    "max_queue": u.cfg.max_queue,
                    "admitted": c.as_ref().map_or(0, |c| c.gate.inflight()),
                    "waiting": c.as_ref().map_or(0, |c| c.gate.waiting()),
                    "refused": c.as_ref().map_or(0, |c| c.gate.refused.load(std::sync::atomic::Ordering::Relaxed)),
                    "max_wait_ms": c.as_ref().map_or(0, |c| c.gate.max_wait_us.load(std::sync::atomic::Ordering::Relaxed) / 1000),
                },
                "on_loading": match u.cfg.on_loading { crate::config::OnLoading::Hold => "hold", crate::config::OnLoading::Reject => "reject" },
                "held": c.as_ref().map_or(0, |c| c.held()),
                "fallback": u.cfg.fallback,
                "cooldown": {
                    "cooling": c.as_ref().is_some_and(|c| c.cooldown.is_cooling(now_ms)),
                    "remaining_ms": c.as_ref().map_or(0, |c| c.cooldown.remaining_ms(now_ms)),
                    "consecutive_failures": c.as_ref().map_or(0, |c| c.cooldown.failures()),
                },
                "retry_budget": {"requests": requests, "retries": retries},
                "addrs": l.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({"epoch": control.cell().epoch(), "upstreams": list})
}

/// `GET /admin/route?model=M&path=P&session=S`: `routing::explain` on the current snapshot now
/// (each step's verdict, the decision, the replica pool's pick with and without the session
/// key), unless an explainer was registered to replace it.
fn route_explain(control: &Control, query: &str) -> Reply {
    let mut model = String::new();
    let mut path = "/v1/chat/completions".to_string();
    let mut session = String::new();
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "model" => model = crate::http::target::decode_query_value(v.as_bytes()),
            "path" => path = crate::http::target::decode_query_value(v.as_bytes()),
            "session" => session = crate::http::target::decode_query_value(v.as_bytes()),
            _ => {}
        }
    }
    let snap = control.snapshot();
    if let Some(explain) = control.explainer.read().as_ref() {
        return Reply::json(200, &explain(&snap, &model, &path));
    }
    // The request a client would send: model in the body, `path` (with any query) as target.
    let model = Some(model.as_str()).filter(|m| !m.is_empty());
    let facts = RequestFacts::new("POST", &path).with_model(model);
    let at = ExplainAt::new(admission::clock_ms()).with_session(Some(&session));
    let explained = routing::explain(&snap, &facts, at);
    Reply::json(200, &serde_json::to_value(explained).expect("json"))
}

/// Appends one per-upstream gauge family (HELP, TYPE, one sample per upstream with a value).
fn gauge<'a>(
    out: &mut String,
    name: &str,
    help: &str,
    samples: impl Iterator<Item = (&'a str, u64)>,
) {
    prometheus::header(out, name, prometheus::Kind::Gauge, help);
    for (upstream, v) in samples {
        prometheus::sample(out, name, &prometheus::labels(&[("upstream", upstream)]), v);
    }
}

/// `GET /metrics`: control's own gauges, then whatever the registered hook renders.
fn metrics(control: &Control) -> Reply {
    let (config, live, epoch) = control.live_view();
    let view = Snapshot::build(config, &live, epoch);
    let ups = || view.upstreams.iter();
    let count = |name: &str, f: fn(&crate::admission::UpstreamCounters) -> u64| {
        control.counters(name).map_or(0, |c| f(&c))
    };
    let mut out = String::new();
    let epoch = "slotgate_snapshot_epoch";
    let help = "Routing snapshot publication number.";
    prometheus::header(&mut out, epoch, prometheus::Kind::Gauge, help);
    prometheus::sample(&mut out, epoch, "", control.cell().epoch());
    gauge(
        &mut out,
        "slotgate_upstream_probe_up",
        "1 when the last health probe passed.",
        ups()
            .filter(|u| u.cfg.probed())
            .map(|u| (u.name(), u64::from(u.live.probe == ProbeStatus::Passing))),
    );
    gauge(
        &mut out,
        "slotgate_upstream_models",
        "Model ids in the upstream's cache.",
        ups().map(|u| (u.name(), u.live.models.ids.len() as u64)),
    );
    gauge(
        &mut out,
        "slotgate_upstream_inflight_requests",
        "Requests in flight per upstream.",
        ups().map(|u| (u.name(), count(u.name(), |c| c.requests()))),
    );
    gauge(
        &mut out,
        "slotgate_upstream_open_streams",
        "Streaming responses open per upstream.",
        ups().map(|u| (u.name(), count(u.name(), |c| c.streams()))),
    );
    if let Some(hook) = control.metrics.read().as_ref() {
        out.push_str(&hook());
    }
    Reply {
        status: 200,
        content_type: prometheus::CONTENT_TYPE,
        body: out.into_bytes(),
        extra: String::new(),
        head_only: false,
    }
}
