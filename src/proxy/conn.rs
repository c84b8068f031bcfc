//! One client connection: read and frame requests (keep-alive, pipelining, `Expect`), decide,
//! forward, relay, repeat (DESIGN.md §3).

use super::client::{Body, ClientConn};
use super::contain::ConnProbe;
use super::context::Outcome;
use super::context::Worker;
use super::exchange;
use super::stream::ClientStream;
use crate::http::request::Limits;
use crate::http::{BodyFraming, ChunkedDecoder, ErrorCode, ErrorReply, RequestHead, Status};
use crate::metrics::{Record, RequestLine};
use bytes::{Buf, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

struct ConnGuard(Rc<Worker>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.conns.set(self.0.conns.get() - 1);
        self.0.metrics.set_connections(self.0.conns.get());
    }
}

enum ReadResult {
    /// A whole request is buffered: head length, body, bytes the request occupies in `buf`.
    Request { body: Body, msg_len: usize },
    /// The client closed (or idled out) between requests.
    Closed,
    /// Refuse with this error (and close when its code says so).
    Refuse(ErrorReply),
    /// No valid front-door key and a body still on the wire: answer 401 and close, without
    /// reading (and buffering) what an unauthenticated client sends.
    Unauthorized,
}

/// Serves one accepted client connection until it closes.
pub async fn serve(w: Rc<Worker>, stream: TcpStream, peer: SocketAddr, probe: Rc<ConnProbe>) {
    w.conns.set(w.conns.get() + 1);
    w.metrics.set_connections(w.conns.get());
    let _guard = ConnGuard(w.clone());
    let t = &w.shared.tuning;
    super::sys::set_cloexec(stream.as_raw_fd());
    if t.tcp_nodelay {
        let _ = stream.set_nodelay(true);
    }
    let Some(stream) = handshake(&w, stream, peer).await else {
        return;
    };
    let mut c = ClientConn {
        stream,
        watch: None,
        buf: BytesMut::with_capacity(t.read_buffer_bytes),
        relay: None,
        head: RequestHead::new(),
        peer,
        rec: Record::default(),
        probe,
    };
    if c.stream.is_tls() {
        c.probe.set_tls();
    }
    tracing::trace!(%peer, worker = w.id, "connection accepted");
    if w.conns.get() > t.max_connections {
        let reply = ErrorReply::new(
            ErrorCode::Overloaded,
            "connection limit reached; try again shortly",
        )
        .details(serde_json::json!({"max_connections": t.max_connections}))
        .retry_after(1);
        c.probe.responding();
        let _ = c.stream.write_all(reply.to_response("", true)).await;
        return;
    }
    let limits = Limits::from_tuning(t);
    loop {
        match read_request(&w, &mut c, &limits).await {
            ReadResult::Closed => return,
            ReadResult::Unauthorized => {
                // The connection closes after the answer: the buffer is taken, not copied.
                let buf = std::mem::take(&mut c.buf);
                super::front_auth::refuse(&w, &mut c, &buf, false).await;
                return;
            }
            ReadResult::Refuse(reply) => {
                if !refuse(&w, &mut c, &reply).await {
                    return;
                }
            }
            ReadResult::Request { body, msg_len } => {
                if !exchange_one(&w, &mut c, body, msg_len).await {
                    return;
                }
            }
        }
    }
}

/// Hands the request's record over to the worker's metrics (and the decision log), once per
/// request, while its head (`buf`, the request's bytes) is still at hand.
fn finish_record(w: &Worker, c: &mut ClientConn, buf: &[u8]) {
    let mut req = RequestLine {
        client: c.peer,
        method: "",
        path: "",
    };
    if c.rec.wants_text() {
        req.method = std::str::from_utf8(c.head.method_bytes(buf)).unwrap_or("");
        req.path = std::str::from_utf8(c.head.path(buf)).unwrap_or("");
    }
    w.metrics.finish(&mut c.rec, req);
}

/// Reads into the spare capacity of `buf` (appending), growing it by at least `min_free`.
pub async fn read_more(
    stream: &mut ClientStream,
    mut buf: BytesMut,
    min_free: usize,
) -> (io::Result<usize>, BytesMut) {
    if buf.capacity() - buf.len() < min_free {
        buf.reserve(min_free);
    }
    let len = buf.len();
    let cap = buf.capacity();
    let (res, slice) = stream.read(buf.slice_mut(len..cap)).await;
    (res, slice.into_inner())
}

/// Reads with a deadline. `None` when the deadline passed (the read was cancelled: the buffer
/// is gone and the connection must be closed).
async fn read_until(
    stream: &mut ClientStream,
    buf: BytesMut,
    min_free: usize,
    deadline: Instant,
) -> Option<(io::Result<usize>, BytesMut)> {
    monoio::time::timeout_at(deadline.into(), read_more(stream, buf, min_free))
        .await
        .ok()
}

/// Above this many open connections on a worker, idle keep-alive connections release their
/// buffers while they wait, so many idle clients cost little memory.
const LEAN_IDLE_CONNS: usize = 256;

async fn read_request(w: &Rc<Worker>, c: &mut ClientConn, limits: &Limits) -> ReadResult {
    let head_len = match read_head(w, c, limits).await {
        Ok(n) => n,
        Err(r) => return r,
    };
    // An unauthenticated request is refused before its body is read; one whose body is already
    // buffered goes on to the same check in `exchange::handle`, which keeps the connection.
    let body_pending = match c.head.framing() {
        BodyFraming::Length(n) => c.buf.len() < head_len + n as usize,
        BodyFraming::Chunked => true,
        BodyFraming::None | BodyFraming::Close => false,
    };
    if body_pending && !super::front_auth::allowed(&w.snap.get(), c, &c.buf) {
        return ReadResult::Unauthorized;
    }
    let t = &w.shared.tuning;
    let body = BodyLimits {
        max: t.max_body_bytes as u64,
        idle: Duration::from_millis(t.body_timeout_ms),
        min_free: t.read_buffer_bytes / 2,
    };
    match c.head.framing() {
        BodyFraming::None | BodyFraming::Close => ReadResult::Request {
            body: Body::InBuf(head_len..head_len),
            msg_len: head_len,
        },
        BodyFraming::Length(n) => read_length_body(c, head_len, n, &body).await,
        BodyFraming::Chunked => read_chunked_body(c, head_len, &body).await,
    }
}

/// Reads until a whole request head is buffered; returns its length. While nothing of it has
/// arrived the connection is idle (keep-alive timeout, closed by a drain); from its first byte
/// the header timeout runs (slowloris guard).
async fn read_head(
    w: &Rc<Worker>,
    c: &mut ClientConn,
    limits: &Limits,
) -> Result<usize, ReadResult> {
    let t = &w.shared.tuning;
    let min_free = t.read_buffer_bytes / 2;
    let mut head_deadline: Option<Instant> = None;
    loop {
        if !c.buf.is_empty() {
            match c.head.parse(&c.buf, limits) {
                Ok(Status::Complete(n)) => return Ok(n),
                Ok(Status::Incomplete) => {}
                Err(e) => return Err(ReadResult::Refuse(ErrorReply::new(e.code(), e.message()))),
            }
            if head_deadline.is_none() {
                head_deadline = Some(Instant::now() + Duration::from_millis(t.header_timeout_ms));
            }
        }
        let deadline = match head_deadline {
            Some(d) => d,
            None if w.shared.is_draining() || w.drain.fired() => return Err(ReadResult::Closed),
            None => Instant::now() + Duration::from_millis(t.keepalive_timeout_ms),
        };
        let idle = head_deadline.is_none() && c.buf.is_empty();
        if idle && w.conns.get() > LEAN_IDLE_CONNS && !lean_idle_wait(w, c, deadline).await {
            return Err(ReadResult::Closed);
        }
        let buf = std::mem::take(&mut c.buf);
        let read = read_until(&mut c.stream, buf, min_free, deadline);
        let read = if head_deadline.is_none() {
            // Idle keep-alive: a drain closes the connection now (the cancelled read loses no
            // request byte worth keeping: none had arrived).
            monoio::select! {
                r = read => r,
                _ = w.drain.wait() => return Err(ReadResult::Closed),
            }
        } else {
            read.await
        };
        match read {
            None if head_deadline.is_some() => {
                return Err(ReadResult::Refuse(ErrorReply::new(
                    ErrorCode::RequestTimeout,
                    "request head not received in time",
                )))
            }
            None => return Err(ReadResult::Closed),
            Some((Ok(0) | Err(_), buf)) => {
                c.buf = buf;
                return Err(ReadResult::Closed);
            }
            Some((Ok(_), buf)) => c.buf = buf,
        }
    }
}

/// Many connections on this worker: an idle one gives its buffers back (TLS ones too, unless
/// the session still holds received bytes) and waits for readability without holding memory
/// (one extra poll per request in this mode). False when the connection should close.
async fn lean_idle_wait(w: &Rc<Worker>, c: &mut ClientConn, deadline: Instant) -> bool {
    let tcp = match &mut c.stream {
        ClientStream::Plain(s) => Some(&*s),
        ClientStream::Tls(s) => s.release_idle().then(|| s.tcp()),
    };
    let Some(s) = tcp else { return true };
    c.buf = BytesMut::new();
    c.relay = None;
    let ready = monoio::time::timeout_at(deadline.into(), s.readable(false));
    monoio::select! {
        r = ready => matches!(r, Ok(Ok(()))),
        _ = w.drain.wait() => false,
    }
}

/// The body limits of one request.
struct BodyLimits {
    /// `max_body_bytes`.
    max: u64,
    /// Longest gap between body bytes.
    idle: Duration,
    /// Free room a read asks for.
    min_free: usize,
}

impl BodyLimits {
    fn too_large(&self) -> ReadResult {
        ReadResult::Refuse(
            ErrorReply::new(ErrorCode::BodyTooLarge, "request body too large")
                .details(serde_json::json!({"max_body_bytes": self.max})),
        )
    }
}

fn body_timed_out() -> ReadResult {
    ReadResult::Refuse(ErrorReply::new(
        ErrorCode::RequestTimeout,
        "request body not received in time",
    ))
}

/// A `Content-Length` body of `n` bytes after the head: left in the read buffer (zero copy).
async fn read_length_body(
    c: &mut ClientConn,
    head_len: usize,
    n: u64,
    l: &BodyLimits,
) -> ReadResult {
    if n > l.max {
        return l.too_large();
    }
    let end = head_len + n as usize;
    if c.buf.len() < end && !send_continue(c).await {
        return ReadResult::Closed;
    }
    while c.buf.len() < end {
        let want = (end - c.buf.len()).max(l.min_free);
        if let Err(r) = read_body_more(c, want, l.idle, body_timed_out).await {
            return r;
        }
    }
    ReadResult::Request {
        body: Body::InBuf(head_len..end),
        msg_len: end,
    }
}

/// A chunked body: de-chunked into its own buffer as it arrives.
async fn read_chunked_body(c: &mut ClientConn, head_len: usize, l: &BodyLimits) -> ReadResult {
    if c.buf.len() == head_len && !send_continue(c).await {
        return ReadResult::Closed;
    }
    let mut dec = ChunkedDecoder::new();
    let mut body = Vec::new();
    let mut pos = head_len;
    loop {
        if let Some(rest) = c.buf.get(pos..).filter(|r| !r.is_empty()) {
            let p = match dec.decode(rest, |d| body.extend_from_slice(d)) {
                Ok(p) => p,
                Err(e) => {
                    return ReadResult::Refuse(ErrorReply::new(
                        ErrorCode::BadHttp,
                        format!("bad chunked request body: {e}"),
                    ))
                }
            };
            pos += p.consumed;
            if dec.payload_len() > l.max {
                return l.too_large();
            }
            if p.done {
                return ReadResult::Request {
                    body: Body::Owned(body),
                    msg_len: pos,
                };
            }
            // The payload is copied out: drop its wire bytes so the read buffer holds only the
            // head and one read, whatever the chunk overhead.
            pos = compact_after_head(&mut c.buf, head_len, pos);
        }
        if let Err(r) = read_body_more(c, l.min_free, l.idle, body_timed_out).await {
            return r;
        }
    }
}

/// Reads more of a request body into `c.buf` (at least `want` bytes of room), within
/// `body_idle`. `Err` carries what the connection must do instead: close, or answer 408.
async fn read_body_more(
    c: &mut ClientConn,
    want: usize,
    body_idle: Duration,
    timed_out: impl Fn() -> ReadResult,
) -> Result<(), ReadResult> {
    let buf = std::mem::take(&mut c.buf);
    match read_until(&mut c.stream, buf, want, Instant::now() + body_idle).await {
        None => Err(timed_out()),
        Some((res, buf)) => {
            c.buf = buf;
            match res {
                Ok(0) | Err(_) => Err(ReadResult::Closed),
                Ok(_) => Ok(()),
            }
        }
    }
}

/// Answers `Expect: 100-continue` (when the client asked) before reading a body that has not
/// arrived yet. False when the client is gone.
async fn send_continue(c: &mut ClientConn) -> bool {
    if !c.head.expect_continue() {
        return true;
    }
    let (res, _) = c
        .stream
        .write_all(&b"HTTP/1.1 100 Continue\r\n\r\n"[..])
        .await;
    res.is_ok()
}

/// Answers a request that could not be read (bad framing, limits, timeouts); true when the
/// connection goes on (the request was framed correctly and is dropped).
async fn refuse(w: &Rc<Worker>, c: &mut ClientConn, reply: &ErrorReply) -> bool {
    let close = reply.code.closes_connection();
    c.rec.begin(c.buf.len());
    let out = reply.to_response("", close);
    c.rec
        .replied(reply.code.status(), Some(reply.code), out.len());
    c.probe.responding();
    let _ = c.stream.write_all(out).await;
    c.probe.idle();
    let req = RequestLine {
        client: c.peer,
        method: "",
        path: "",
    };
    w.metrics.finish(&mut c.rec, req);
    if close {
        return false;
    }
    let consumed = c.head.head_len();
    c.buf.advance(consumed.min(c.buf.len()));
    true
}

/// Runs the exchange of the buffered request (`msg_len` bytes of the read buffer); true when
/// the connection reads the next one.
async fn exchange_one(w: &Rc<Worker>, c: &mut ClientConn, body: Body, msg_len: usize) -> bool {
    c.rec.begin(msg_len);
    // The request's bytes leave the read buffer (no copy: they share its allocation) so a large
    // body can be forwarded without copying it; pipelined bytes stay.
    let req = c.buf.split_to(msg_len).freeze();
    c.probe.request();
    let outcome = exchange::handle(w, c, &req, body).await;
    c.probe.idle();
    finish_record(w, c, &req);
    drop(req);
    // With many connections on the worker, an idle keep-alive connection holds one descriptor,
    // not two: the read-side watcher is duplicated again by the next proxied request
    // (DESIGN-NOTES.md). Below that, it is kept (no dup and close per request).
    if w.conns.get() > LEAN_IDLE_CONNS {
        c.watch = None;
    }
    outcome == Outcome::KeepAlive && !w.shared.is_draining()
}

/// The TLS handshake on a front door with `[listen] tls_cert`, bounded by the header timeout;
/// the plain stream otherwise. `None` when the handshake failed (the connection is closed).
async fn handshake(w: &Worker, stream: TcpStream, peer: SocketAddr) -> Option<ClientStream> {
    let Some(cfg) = w.shared.front_door.current() else {
        return Some(ClientStream::Plain(stream));
    };
    let limit = Duration::from_millis(w.shared.tuning.header_timeout_ms);
    match monoio::time::timeout(limit, super::tls_stream::accept(stream, cfg)).await {
        Ok(Ok(s)) => Some(ClientStream::Tls(Box::new(s))),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

/// Removes `buf[head_len..pos]` (decoded wire bytes) keeping the head and what follows `pos`;
/// returns the new position (`head_len`).
fn compact_after_head(buf: &mut BytesMut, head_len: usize, pos: usize) -> usize {
    if pos > head_len {
        let len = buf.len();
        buf.copy_within(pos..len, head_len);
        buf.truncate(head_len + (len - pos));
    }
    head_len
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::string_slice)] // tests: a panic is a failure
mod tests {
    use super::*;

    #[test]
    fn compaction_keeps_head_and_tail() {
        let mut b = BytesMut::from(&b"HEAD|chunks-consumed|tail"[..]);
        let pos = compact_after_head(&mut b, 5, 21);
        assert_eq!(pos, 5);
        assert_eq!(&b[..], b"HEAD|tail");
        let pos = compact_after_head(&mut b, 5, 5);
        assert_eq!((pos, &b[..]), (5, &b"HEAD|tail"[..]));
    }
}
