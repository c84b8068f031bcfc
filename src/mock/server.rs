//! The mock's accept loop and per-connection HTTP/1.1 handling on monoio (keep-alive, SSE
//! streaming with pacing, failure injection, peer-close detection while streaming).

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use monoio::buf::{IoBufMut, SliceMut};
use monoio::io::{
    AsyncReadRent, AsyncWriteRentExt, CancelableAsyncReadRent, Canceller, OwnedReadHalf,
    OwnedWriteHalf, Splitable,
};
use monoio::net::{TcpListener, TcpStream};
use monoio::time::Instant;
use serde::Deserialize;

use super::render::{self, Kind, Meta};
use super::stats::Stats;
use super::MockConfig;
use crate::http::chunked::{encode_chunk, ChunkedDecoder, LAST_CHUNK};
use crate::http::{BodyFraming, ErrorCode, ErrorReply, Limits, Method, RequestHead, Status};

/// Read granularity; also the initial per-connection buffer sizes.
const READ_CHUNK: usize = 16 * 1024;
/// Batched SSE output is flushed once it grows past this (unpaced streams only).
const FLUSH_AT: usize = 64 * 1024;
/// Request bodies the mock accepts.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// State shared by every connection of one mock server (one thread, so `Rc`).
pub(crate) struct Server {
    pub cfg: MockConfig,
    pub stats: Arc<Stats>,
    pub stop: Arc<AtomicBool>,
    pub started: Instant,
    /// Token text for the default token count, padded for `response_bytes`; reused by every
    /// non-stream answer so benches measure the proxy, not the mock.
    default_content: Vec<u8>,
    limits: Limits,
    seq: Cell<u64>,
    /// Stop senders of open connections, by connection id.
    conns: RefCell<HashMap<u64, futures_channel::oneshot::Sender<()>>>,
    next_conn: Cell<u64>,
    /// Open connection tasks of this server (the stats gauge is shared with the handle).
    open: Cell<usize>,
}

impl Server {
    pub fn new(cfg: MockConfig, stats: Arc<Stats>, stop: Arc<AtomicBool>) -> Server {
        let mut default_content = Vec::new();
        for i in 0..cfg.tokens {
            render::token(&mut default_content, i);
        }
        if let Some(target) = cfg.response_bytes {
            // The envelope around the content is ~300 bytes; keep extending with more tokens.
            let mut i = cfg.tokens;
            while default_content.len() + 300 < target {
                render::token(&mut default_content, i);
                i += 1;
            }
        }
        Server {
            cfg,
            stats,
            stop,
            started: Instant::now(),
            default_content,
            limits: Limits::default(),
            seq: Cell::new(0),
            conns: RefCell::new(HashMap::new()),
            next_conn: Cell::new(0),
            open: Cell::new(0),
        }
    }

    fn loading(&self) -> bool {
        self.started.elapsed() < Duration::from_millis(self.cfg.load_ms)
    }

    fn next_seq(&self) -> u64 {
        let s = self.seq.get() + 1;
        self.seq.set(s);
        s
    }
}

/// Accepts until the stop flag is raised (the handle then connects once to wake the accept).
pub(crate) async fn serve(listener: TcpListener, srv: Rc<Server>) {
    loop {
        let accepted = listener.accept().await;
        if srv.stop.load(Relaxed) {
            drop(listener);
            srv.conns.borrow_mut().clear();
            // Let every connection task observe the dropped sender and close its socket.
            let deadline = Instant::now() + Duration::from_secs(1);
            while srv.open.get() > 0 && Instant::now() < deadline {
                monoio::time::sleep(Duration::from_millis(1)).await;
            }
            return;
        }
        match accepted {
            Ok((stream, _)) => {
                srv.stats.connections_accepted.fetch_add(1, Relaxed);
                srv.stats.connections_open.fetch_add(1, Relaxed);
                let _ = stream.set_nodelay(true);
                let srv = srv.clone();
                let id = srv.next_conn.get();
                srv.next_conn.set(id + 1);
                let (tx, rx) = futures_channel::oneshot::channel::<()>();
                srv.conns.borrow_mut().insert(id, tx);
                monoio::spawn(async move {
                    let _open = OpenGuard::new(&srv, id);
                    // Stopping the mock drops the sender: the connection future is dropped,
                    // closing the socket like a crashed backend would.
                    first_of(Conn::new(stream).run(&srv), rx).await;
                });
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "mock accept failed");
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Keeps the open-connection counts right however the connection task ends.
struct OpenGuard<'a>(&'a Server, u64);

impl<'a> OpenGuard<'a> {
    fn new(srv: &'a Server, id: u64) -> OpenGuard<'a> {
        srv.open.set(srv.open.get() + 1);
        OpenGuard(srv, id)
    }
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.stats.connections_open.fetch_sub(1, Relaxed);
        self.0.open.set(self.0.open.get() - 1);
        self.0.conns.borrow_mut().remove(&self.1);
    }
}

/// Runs `a` unless `b` finishes first (then `a` is dropped).
async fn first_of<A: Future, B: Future>(a: A, b: B) {
    let mut a = pin!(a);
    let mut b = pin!(b);
    poll_fn(|cx| {
        if a.as_mut().poll(cx).is_ready() || b.as_mut().poll(cx).is_ready() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}

/// Why a connection loop ended early.
enum End {
    /// Peer closed or reset; already counted.
    Peer,
    /// We close on purpose (error answered, `Connection: close`, `fail_after`).
    Close,
}

/// The read side: socket half and the request buffer.
struct Reader {
    rd: OwnedReadHalf<TcpStream>,
    buf: Vec<u8>,
    /// EOF was seen while watching a stream; the next read would return 0.
    eof: bool,
}

impl Reader {
    /// Reads more bytes, appending to `buf`. `Ok(0)` is EOF.
    async fn read_more(&mut self) -> io::Result<usize> {
        if self.eof {
            return Ok(0);
        }
        let slice = spare(&mut self.buf);
        let (res, slice) = self.rd.read(slice).await;
        self.buf = slice.into_inner();
        res
    }
}

/// Takes `buf` as a read target for its spare capacity (growing it when full).
fn spare(buf: &mut Vec<u8>) -> SliceMut<Vec<u8>> {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(READ_CHUNK);
    }
    let b = std::mem::take(buf);
    let (len, cap) = (b.len(), b.capacity());
    b.slice_mut(len..cap)
}

/// The write side: socket half and reused output buffers.
struct Writer {
    wr: OwnedWriteHalf<TcpStream>,
    out: Vec<u8>,
    scratch: Vec<u8>,
}

impl Writer {
    async fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let (res, mut b) = self.wr.write_all(std::mem::take(&mut self.out)).await;
        b.clear();
        self.out = b;
        res.map(|_| ())
    }

    /// Queues a whole response with a known length.
    fn respond(&mut self, status: u16, content_type: &str, body: &[u8], close: bool) {
        render::head(
            &mut self.out,
            status,
            content_type,
            Some(body.len()),
            false,
            close,
        );
        self.out.extend_from_slice(body);
    }

    /// Queues a response whose body was rendered into `scratch`.
    fn respond_scratch(&mut self, status: u16, close: bool) {
        let body = std::mem::take(&mut self.scratch);
        self.respond(status, "application/json", &body, close);
        self.scratch = body;
        self.scratch.clear();
    }

    fn openai_error(&mut self, status: u16, kind: &str, message: &str, close: bool) {
        self.scratch.clear();
        render::openai_error(&mut self.scratch, status, kind, message);
        self.respond_scratch(status, close);
    }
}

/// Where a request's body ended up.
enum BodyAt {
    /// `buf[range]` (Content-Length: no copy).
    Buf(usize, usize),
    /// Decoded from chunks into `Conn::body`.
    Decoded,
}

/// The body of a request: a range of the read buffer or the decoded chunks.
fn body_bytes<'a>(buf: &'a [u8], decoded: &'a [u8], at: &BodyAt) -> &'a [u8] {
    match *at {
        BodyAt::Buf(s, e) => &buf[s..e],
        BodyAt::Decoded => decoded,
    }
}

/// One client connection.
struct Conn {
    reader: Reader,
    writer: Writer,
    head: RequestHead,
    body: Vec<u8>,
    model: Vec<u8>,
}

/// The fields of a completion/embedding request the mock looks at; everything else is skipped.
#[derive(Deserialize, Default)]
struct ApiBody<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<serde_json::Value>,
    #[serde(borrow, default)]
    user: Option<Cow<'a, str>>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    input: Option<serde_json::Value>,
}

impl Conn {
    fn new(stream: TcpStream) -> Conn {
        let (rd, wr) = stream.into_split();
        Conn {
            reader: Reader {
                rd,
                buf: Vec::with_capacity(READ_CHUNK),
                eof: false,
            },
            writer: Writer {
                wr,
                out: Vec::with_capacity(READ_CHUNK),
                scratch: Vec::with_capacity(1024),
            },
            head: RequestHead::new(),
            body: Vec::new(),
            model: Vec::new(),
        }
    }

    /// Serves requests until either side ends the connection (dropping `self` closes it).
    async fn run(mut self, srv: &Server) {
        while let Ok(true) = self.one(srv).await {}
    }

    /// Serves one request; `Ok(true)` when the connection stays open.
    async fn one(&mut self, srv: &Server) -> Result<bool, End> {
        let head_len = self.read_head(srv).await?;
        let (body_at, consumed) = self.read_body(srv, head_len).await?;
        let keep = self.dispatch(srv, body_at).await?;
        let n = consumed.min(self.reader.buf.len());
        self.reader.buf.drain(..n);
        Ok(keep)
    }

    /// Answers a framing error with slotgate's envelope and gives up on the connection.
    async fn fail(&mut self, code: ErrorCode, message: &str) -> End {
        let reply = ErrorReply::new(code, message).to_response("", true);
        self.writer.out.extend_from_slice(&reply);
        let _ = self.writer.flush().await;
        End::Close
    }

    fn peer_gone(&self, srv: &Server) -> End {
        srv.stats.connections_closed_by_peer.fetch_add(1, Relaxed);
        End::Peer
    }

    async fn read_head(&mut self, srv: &Server) -> Result<usize, End> {
        loop {
            if !self.reader.buf.is_empty() {
                match self.head.parse(&self.reader.buf, &srv.limits) {
                    Ok(Status::Complete(n)) => return Ok(n),
                    Ok(Status::Incomplete) => {}
                    Err(e) => return Err(self.fail(e.code(), e.message()).await),
                }
            }
            match self.reader.read_more().await {
                Ok(0) | Err(_) => return Err(self.peer_gone(srv)),
                Ok(_) => {}
            }
        }
    }

    /// Reads the body; returns where it is and how many buffer bytes the request used.
    async fn read_body(&mut self, srv: &Server, head_len: usize) -> Result<(BodyAt, usize), End> {
        let expect = self.head.expect_continue() && self.reader.buf.len() == head_len;
        match self.head.framing() {
            BodyFraming::None | BodyFraming::Close => {
                Ok((BodyAt::Buf(head_len, head_len), head_len))
            }
            BodyFraming::Length(n) => {
                if n > MAX_BODY as u64 {
                    return Err(self.fail(ErrorCode::BodyTooLarge, "body too large").await);
                }
                if expect {
                    self.continue_100().await?;
                }
                let end = head_len + n as usize;
                while self.reader.buf.len() < end {
                    if let Ok(0) | Err(_) = self.reader.read_more().await {
                        return Err(self.peer_gone(srv));
                    }
                }
                Ok((BodyAt::Buf(head_len, end), end))
            }
            BodyFraming::Chunked => {
                if expect {
                    self.continue_100().await?;
                }
                let mut dec = ChunkedDecoder::new();
                self.body.clear();
                let mut pos = head_len;
                loop {
                    let body = &mut self.body;
                    match dec.decode(&self.reader.buf[pos..], |d| body.extend_from_slice(d)) {
                        Ok(p) => {
                            pos += p.consumed;
                            if p.done {
                                return Ok((BodyAt::Decoded, pos));
                            }
                        }
                        Err(e) => {
                            return Err(self.fail(ErrorCode::BadHttp, &e.to_string()).await);
                        }
                    }
                    if self.body.len() > MAX_BODY {
                        return Err(self.fail(ErrorCode::BodyTooLarge, "body too large").await);
                    }
                    if let Ok(0) | Err(_) = self.reader.read_more().await {
                        return Err(self.peer_gone(srv));
                    }
                }
            }
        }
    }

    async fn continue_100(&mut self) -> Result<(), End> {
        self.writer
            .out
            .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        self.writer.flush().await.map_err(|_| End::Peer)
    }

    /// Routes one request and writes its answer. `Ok(keep_alive)`.
    async fn dispatch(&mut self, srv: &Server, body_at: BodyAt) -> Result<bool, End> {
        let buf = &self.reader.buf;
        let path = self.head.path(buf);
        srv.stats.request(path);
        let route = route(self.head.method(), path);
        let close = !self.head.keep_alive();
        let w = &mut self.writer;
        match route {
            Route::Health => {
                if srv.loading() {
                    w.respond(503, "application/json", br#"{"status":"loading"}"#, close);
                } else {
                    w.respond(200, "application/json", br#"{"status":"ok"}"#, close);
                }
            }
            Route::Models => {
                srv.stats.models_requests.fetch_add(1, Relaxed);
                w.scratch.clear();
                let ids = srv.cfg.models.iter().map(String::as_str);
                let ids = ids.take(if srv.loading() { 0 } else { usize::MAX });
                render::models(&mut w.scratch, ids, srv.cfg.created);
                w.respond_scratch(200, close);
            }
            Route::Stats => {
                let body =
                    serde_json::to_vec(&srv.stats.snapshot(srv.loading())).unwrap_or_default();
                w.respond(200, "application/json", &body, close);
            }
            Route::NotFound => w.openai_error(404, "not_found_error", "File Not Found", close),
            Route::MethodNotAllowed => {
                w.openai_error(405, "invalid_request_error", "Method Not Allowed", close)
            }
            Route::Completion(kind) => return self.completion(srv, body_at, kind, close).await,
            Route::Embeddings => self.embeddings(srv, body_at, close),
        }
        self.writer.flush().await.map_err(|_| self.peer_gone(srv))?;
        Ok(!close)
    }

    /// Refusals shared by every inference endpoint: a forced status, then the loading window.
    fn refused(&mut self, srv: &Server, close: bool) -> bool {
        let forced = srv.cfg.status;
        if forced != 0 && forced != 200 {
            let kind = match forced {
                429 => "rate_limit_error",
                400..=499 => "invalid_request_error",
                _ => "server_error",
            };
            self.writer
                .openai_error(forced, kind, "mock: forced error status", close);
            return true;
        }
        if srv.loading() {
            self.writer
                .openai_error(503, "unavailable_error", "Loading model", close);
            return true;
        }
        false
    }

    fn embeddings(&mut self, srv: &Server, at: BodyAt, close: bool) {
        if self.refused(srv, close) {
            return;
        }
        let body = body_bytes(&self.reader.buf, &self.body, &at);
        let prompt = body.len() / 4;
        let Ok(req) = serde_json::from_slice::<ApiBody>(body) else {
            self.writer
                .openai_error(400, "invalid_request_error", "invalid JSON body", close);
            return;
        };
        let inputs = match &req.input {
            Some(serde_json::Value::Array(a))
                if a.iter().all(|v| v.is_string() || v.is_array()) && !a.is_empty() =>
            {
                a.len()
            }
            _ => 1,
        };
        let model = req.model.as_deref().unwrap_or_else(|| srv.default_model());
        let mut out = std::mem::take(&mut self.writer.scratch);
        out.clear();
        render::embeddings(&mut out, model, inputs, srv.cfg.embedding_dims, prompt);
        self.writer.scratch = out;
        self.writer.respond_scratch(200, close);
    }

    async fn completion(
        &mut self,
        srv: &Server,
        at: BodyAt,
        kind: Kind,
        close: bool,
    ) -> Result<bool, End> {
        let _inflight = srv.stats.inflight();
        // The model name is copied out so the body's borrow of the read buffer ends before the
        // stream watches the reader.
        let mut model = std::mem::take(&mut self.model);
        model.clear();
        let body = body_bytes(&self.reader.buf, &self.body, &at);
        let prompt = body.len() / 4;
        let parsed = serde_json::from_slice::<ApiBody>(body);
        let header_id = self.head.request_id(&self.reader.buf);
        let id = match (&parsed, header_id) {
            (_, Some(h)) => std::str::from_utf8(h).unwrap_or(""),
            (Ok(ApiBody { user: Some(u), .. }), None) => u.as_ref(),
            _ => "",
        };
        srv.stats.completion_arrived(id);
        let (stream, tokens) = match &parsed {
            Ok(req) => {
                model.extend_from_slice(
                    req.model
                        .as_deref()
                        .filter(|m| !m.is_empty())
                        .unwrap_or_else(|| srv.default_model())
                        .as_bytes(),
                );
                (
                    matches!(req.stream, Some(serde_json::Value::Bool(true))),
                    req.max_tokens
                        .map_or(srv.cfg.tokens, |m| srv.cfg.tokens.min(m as usize)),
                )
            }
            Err(_) => (false, 0),
        };
        let invalid = parsed.is_err();
        drop(parsed);
        let res = if invalid {
            self.writer
                .openai_error(400, "invalid_request_error", "invalid JSON body", close);
            self.finish(srv, close).await
        } else if self.refused(srv, close) {
            self.finish(srv, close).await
        } else {
            let meta = Meta {
                kind,
                seq: srv.next_seq(),
                created: srv.cfg.created,
                model: std::str::from_utf8(&model).unwrap_or("mock"),
            };
            if stream {
                let chunked = self.head.version() == crate::http::Version::Http11;
                self.stream(srv, &meta, tokens, prompt, close || !chunked, chunked)
                    .await
            } else {
                let content: &[u8] = if tokens == srv.cfg.tokens {
                    &srv.default_content
                } else {
                    self.body.clear();
                    for i in 0..tokens {
                        render::token(&mut self.body, i);
                    }
                    &self.body
                };
                let w = &mut self.writer;
                w.scratch.clear();
                render::completion(&mut w.scratch, &meta, content, prompt, tokens);
                w.respond_scratch(200, close);
                self.finish(srv, close).await
            }
        };
        self.model = model;
        res
    }

    async fn finish(&mut self, srv: &Server, close: bool) -> Result<bool, End> {
        self.writer.flush().await.map_err(|_| self.peer_gone(srv))?;
        Ok(!close)
    }

    /// Streams `tokens` SSE events, the final chunk and `[DONE]`, watching for the peer closing.
    async fn stream(
        &mut self,
        srv: &Server,
        meta: &Meta<'_>,
        tokens: usize,
        prompt: usize,
        close: bool,
        chunked: bool,
    ) -> Result<bool, End> {
        render::head(
            &mut self.writer.out,
            200,
            "text/event-stream",
            None,
            chunked,
            close,
        );
        let work = stream_events(&mut self.writer, srv, meta, tokens, prompt, chunked);
        match watched(&mut self.reader, work).await {
            None | Some(Err(_)) => {
                srv.stats.streams_cut_by_peer.fetch_add(1, Relaxed);
                Err(self.peer_gone(srv))
            }
            Some(Ok(StreamEnd::FailedOnPurpose)) => {
                srv.stats.streams_failed_on_purpose.fetch_add(1, Relaxed);
                Err(End::Close)
            }
            Some(Ok(StreamEnd::Complete)) => Ok(!close),
        }
    }
}

impl Server {
    fn default_model(&self) -> &str {
        self.cfg.models.first().map_or("mock", String::as_str)
    }
}

/// How a stream ended when the peer stayed.
enum StreamEnd {
    Complete,
    FailedOnPurpose,
}

/// Writes the SSE events, paced by `ttft_ms` and `tokens_per_sec`. Output is flushed before
/// every wait, so an unpaced stream goes out in few large writes and a paced one event by event.
async fn stream_events(
    w: &mut Writer,
    srv: &Server,
    meta: &Meta<'_>,
    tokens: usize,
    prompt: usize,
    chunked: bool,
) -> io::Result<StreamEnd> {
    let start = Instant::now();
    let ttft = Duration::from_millis(srv.cfg.ttft_ms);
    let interval = if srv.cfg.tokens_per_sec > 0.0 {
        Duration::from_secs_f64(1.0 / srv.cfg.tokens_per_sec)
    } else {
        Duration::ZERO
    };
    let events = tokens + 2;
    for e in 0..events {
        if srv.cfg.fail_after == Some(e) {
            w.flush().await?;
            return Ok(StreamEnd::FailedOnPurpose);
        }
        if e < tokens {
            let due = start + ttft + interval * e as u32;
            if due > Instant::now() {
                w.flush().await?;
                monoio::time::sleep_until(due).await;
            }
        }
        w.scratch.clear();
        if e < tokens {
            render::stream_token(&mut w.scratch, meta, e);
        } else if e == tokens {
            render::stream_final(&mut w.scratch, meta, prompt, tokens);
        } else {
            w.scratch.extend_from_slice(render::DONE_EVENT);
        }
        if chunked {
            encode_chunk(&mut w.out, &w.scratch);
        } else {
            w.out.extend_from_slice(&w.scratch);
        }
        if w.out.len() >= FLUSH_AT {
            w.flush().await?;
        }
    }
    if chunked {
        w.out.extend_from_slice(LAST_CHUNK);
    }
    w.flush().await?;
    Ok(StreamEnd::Complete)
}

/// Runs `work` while a read is pending on the connection, so a client that closes (or resets)
/// mid-stream is noticed at once rather than at the next write. `None` means the peer went away.
/// Bytes the client sends meanwhile (a pipelined request) are kept in the buffer.
async fn watched<F: Future>(reader: &mut Reader, work: F) -> Option<F::Output> {
    if reader.eof {
        return None;
    }
    let canceller = Canceller::new();
    let slice = spare(&mut reader.buf);
    let mut read = pin!(reader.rd.cancelable_read(slice, canceller.handle()));
    let mut work = pin!(work);
    let mut read_out = None;
    let out = poll_fn(|cx| {
        if read_out.is_none() {
            if let Poll::Ready(r) = read.as_mut().poll(cx) {
                let (res, _): &(io::Result<usize>, _) = &r;
                let closed = !matches!(res, Ok(n) if *n > 0);
                read_out = Some(r);
                if closed {
                    return Poll::Ready(None);
                }
            }
        }
        work.as_mut().poll(cx).map(Some)
    })
    .await;
    // Take the buffer back: either the read finished, or cancel it and await its completion
    // (a completed-before-cancel read still hands over its bytes).
    let (res, slice) = match read_out {
        Some(r) => r,
        None => {
            let _ = canceller.cancel();
            read.await
        }
    };
    reader.buf = slice.into_inner();
    match res {
        Ok(0) => reader.eof = true,
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => {}
        Err(_) => reader.eof = true,
    }
    out
}

/// What a request asks for.
enum Route {
    Health,
    Models,
    Stats,
    Completion(Kind),
    Embeddings,
    NotFound,
    MethodNotAllowed,
}

fn route(method: Method, path: &[u8]) -> Route {
    let (get, post) = (method == Method::Get, method == Method::Post);
    let want = |ok: bool, r: Route| if ok { r } else { Route::MethodNotAllowed };
    match path {
        b"/health" | b"/v1/health" => want(get, Route::Health),
        b"/v1/models" | b"/models" => want(get, Route::Models),
        b"/mock/stats" => want(get, Route::Stats),
        b"/v1/chat/completions" | b"/chat/completions" => want(post, Route::Completion(Kind::Chat)),
        b"/v1/completions" | b"/completions" => want(post, Route::Completion(Kind::Text)),
        b"/v1/embeddings" | b"/embeddings" => want(post, Route::Embeddings),
        _ => Route::NotFound,
    }
}
