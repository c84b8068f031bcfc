//! One client connection: read and frame requests (keep-alive, pipelining, `Expect`), decide,
//! forward, relay, repeat (DESIGN.md §3).

use super::exchange::{self, Outcome};
use super::worker::Worker;
use crate::http::request::Limits;
use crate::http::{BodyFraming, ChunkedDecoder, ErrorCode, ErrorReply, RequestHead, Status};
use bytes::{Buf, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Where a request's body is.
pub enum Body {
    /// Bytes `range` of the connection's read buffer (Content-Length bodies: zero copy).
    InBuf(std::ops::Range<usize>),
    /// De-chunked into its own buffer.
    Owned(Vec<u8>),
}

/// A client connection's state between requests.
pub struct ClientConn {
    /// The client socket.
    pub stream: TcpStream,
    /// A duplicate of the client fd used only to notice the client leaving mid-exchange.
    pub watch: Option<TcpStream>,
    /// Request bytes read so far (the current request first, pipelined ones after it).
    pub buf: BytesMut,
    /// The relay buffer, reused by every response on this connection.
    pub relay: Option<Vec<u8>>,
    /// The parsed head of the current request (reused allocation).
    pub head: RequestHead,
}

struct ConnGuard(Rc<Worker>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.conns.set(self.0.conns.get() - 1);
    }
}

enum ReadResult {
    /// A whole request is buffered: head length, body, bytes the request occupies in `buf`.
    Request { body: Body, msg_len: usize },
    /// The client closed (or idled out) between requests.
    Closed,
    /// Refuse with this error (and close when its code says so).
    Refuse(ErrorReply),
}

/// Serves one accepted client connection until it closes.
pub async fn serve(w: Rc<Worker>, stream: TcpStream, peer: SocketAddr) {
    w.conns.set(w.conns.get() + 1);
    let _guard = ConnGuard(w.clone());
    let t = &w.shared.tuning;
    if t.tcp_nodelay {
        let _ = stream.set_nodelay(true);
    }
    let mut c = ClientConn {
        stream,
        watch: None,
        buf: BytesMut::with_capacity(t.read_buffer_bytes),
        relay: None,
        head: RequestHead::new(),
    };
    tracing::trace!(%peer, worker = w.id, "connection accepted");
    if w.conns.get() > t.max_connections {
        let reply = ErrorReply::new(
            ErrorCode::Overloaded,
            "connection limit reached; try again shortly",
        )
        .details(serde_json::json!({"max_connections": t.max_connections}))
        .retry_after(1);
        let _ = c.stream.write_all(reply.to_response("", true)).await;
        return;
    }
    let limits = Limits::from_tuning(t);
    loop {
        match read_request(&w, &mut c, &limits).await {
            ReadResult::Closed => return,
            ReadResult::Refuse(reply) => {
                let close = reply.code.closes_connection();
                let _ = c.stream.write_all(reply.to_response("", close)).await;
                if close {
                    return;
                }
                // The request was framed correctly: drop it and go on.
                let consumed = c.head.head_len();
                c.buf.advance(consumed.min(c.buf.len()));
                continue;
            }
            ReadResult::Request { body, msg_len } => {
                let outcome = exchange::handle(&w, &mut c, body).await;
                c.buf.advance(msg_len);
                match outcome {
                    Outcome::KeepAlive if !w.shared.is_draining() => continue,
                    _ => return,
                }
            }
        }
    }
}

/// Reads into the spare capacity of `buf` (appending), growing it by at least `min_free`.
pub async fn read_more(
    stream: &mut TcpStream,
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
    stream: &mut TcpStream,
    buf: BytesMut,
    min_free: usize,
    deadline: Instant,
) -> Option<(io::Result<usize>, BytesMut)> {
    monoio::time::timeout_at(deadline.into(), read_more(stream, buf, min_free))
        .await
        .ok()
}

async fn read_request(w: &Rc<Worker>, c: &mut ClientConn, limits: &Limits) -> ReadResult {
    let t = &w.shared.tuning;
    let min_free = t.read_buffer_bytes / 2;
    // 1. The head. While nothing of it has arrived the connection is idle (keep-alive timeout);
    // from its first byte the header timeout runs (slowloris guard).
    let mut head_deadline: Option<Instant> = None;
    let head_len = loop {
        if !c.buf.is_empty() {
            match c.head.parse(&c.buf, limits) {
                Ok(Status::Complete(n)) => break n,
                Ok(Status::Incomplete) => {}
                Err(e) => {
                    return ReadResult::Refuse(ErrorReply::new(e.code(), e.message()));
                }
            }
            if head_deadline.is_none() {
                head_deadline = Some(Instant::now() + Duration::from_millis(t.header_timeout_ms));
            }
        }
        let deadline = match head_deadline {
            Some(d) => d,
            None => {
                if w.shared.is_draining() {
                    return ReadResult::Closed;
                }
                Instant::now() + Duration::from_millis(t.keepalive_timeout_ms)
            }
        };
        let buf = std::mem::take(&mut c.buf);
        match read_until(&mut c.stream, buf, min_free, deadline).await {
            None if head_deadline.is_some() => {
                return ReadResult::Refuse(ErrorReply::new(
                    ErrorCode::RequestTimeout,
                    "request head not received in time",
                ))
            }
            None => return ReadResult::Closed,
            Some((res, buf)) => {
                c.buf = buf;
                match res {
                    Ok(0) | Err(_) => return ReadResult::Closed,
                    Ok(_) => {}
                }
            }
        }
    };

    // 2. The body.
    let max_body = t.max_body_bytes as u64;
    let body_idle = Duration::from_millis(t.body_timeout_ms);
    let too_large = || {
        ReadResult::Refuse(
            ErrorReply::new(ErrorCode::BodyTooLarge, "request body too large")
                .details(serde_json::json!({"max_body_bytes": max_body})),
        )
    };
    let timed_out = || {
        ReadResult::Refuse(ErrorReply::new(
            ErrorCode::RequestTimeout,
            "request body not received in time",
        ))
    };
    match c.head.framing() {
        BodyFraming::None | BodyFraming::Close => ReadResult::Request {
            body: Body::InBuf(head_len..head_len),
            msg_len: head_len,
        },
        BodyFraming::Length(n) => {
            if n > max_body {
                return too_large();
            }
            let end = head_len + n as usize;
            if c.buf.len() < end && !send_continue(c).await {
                return ReadResult::Closed;
            }
            while c.buf.len() < end {
                let want = (end - c.buf.len()).max(min_free);
                let buf = std::mem::take(&mut c.buf);
                match read_until(&mut c.stream, buf, want, Instant::now() + body_idle).await {
                    None => return timed_out(),
                    Some((res, buf)) => {
                        c.buf = buf;
                        match res {
                            Ok(0) | Err(_) => return ReadResult::Closed,
                            Ok(_) => {}
                        }
                    }
                }
            }
            ReadResult::Request {
                body: Body::InBuf(head_len..end),
                msg_len: end,
            }
        }
        BodyFraming::Chunked => {
            if c.buf.len() == head_len && !send_continue(c).await {
                return ReadResult::Closed;
            }
            let mut dec = ChunkedDecoder::new();
            let mut body = Vec::new();
            let mut pos = head_len;
            loop {
                if pos < c.buf.len() {
                    let res = dec.decode(&c.buf[pos..], |d| body.extend_from_slice(d));
                    match res {
                        Ok(p) => {
                            pos += p.consumed;
                            if dec.payload_len() > max_body {
                                return too_large();
                            }
                            if p.done {
                                return ReadResult::Request {
                                    body: Body::Owned(body),
                                    msg_len: pos,
                                };
                            }
                        }
                        Err(e) => {
                            return ReadResult::Refuse(ErrorReply::new(
                                ErrorCode::BadHttp,
                                format!("bad chunked request body: {e}"),
                            ))
                        }
                    }
                }
                let buf = std::mem::take(&mut c.buf);
                match read_until(&mut c.stream, buf, min_free, Instant::now() + body_idle).await {
                    None => return timed_out(),
                    Some((res, buf)) => {
                        c.buf = buf;
                        match res {
                            Ok(0) | Err(_) => return ReadResult::Closed,
                            Ok(_) => {}
                        }
                    }
                }
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

impl ClientConn {
    /// The read-side watcher, created on first use.
    pub fn watcher(&mut self) -> Option<&TcpStream> {
        if self.watch.is_none() {
            self.watch = super::sys::dup_stream(self.stream.as_raw_fd()).ok();
        }
        self.watch.as_ref()
    }
}

/// Resolves when the client has gone away (EOF or reset on its read side). Bytes waiting there
/// are a pipelined request, not a departure: then it never resolves.
pub async fn client_gone(watch: Option<&TcpStream>) {
    let Some(watch) = watch else {
        return std::future::pending().await;
    };
    loop {
        if watch.readable(false).await.is_err() {
            return;
        }
        match super::sys::peek(watch.as_raw_fd()) {
            super::sys::Peek::Eof | super::sys::Peek::Error => return,
            super::sys::Peek::Data => return std::future::pending().await,
            super::sys::Peek::Empty => {
                // Spurious wake-up: wait again, but never spin.
                monoio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}
