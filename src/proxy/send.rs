//! Sending one request upstream and waiting for its response head (DESIGN.md §3): a pooled or
//! new connection, the one retry when a reused pooled connection turns out closed, the
//! `first_byte_ms` deadline, the client watched meanwhile, and the cooldown breaker told how
//! the upstream did. Nothing here writes to the client.

use super::attempt::Attempt;
use super::client::{client_gone, ClientConn};
use super::context::Worker;
use super::pool;
use super::stream::UpstreamStream;
use super::upstream_error::{BadResponse, UpstreamError, UpstreamErrorKind};
use crate::admission::clock_ms;
use crate::config::OnClientAbort;
use crate::http::response::ResponseHead;
use crate::http::Status;
use bytes::Bytes;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// The request as it goes upstream: the head (followed by the body when it is small or was
/// rewritten), then a large body as the client sent it.
pub struct Outgoing {
    /// Head, and the body when it joined the head.
    pub head: Vec<u8>,
    /// A large unchanged body, sent from the client's own bytes.
    pub body: Option<Bytes>,
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

/// A final response head (1xx skipped) and what came with it.
pub struct Arrived {
    /// The upstream connection, positioned after `filled` bytes.
    pub up: UpstreamStream,
    /// The parsed head.
    pub head: ResponseHead,
    /// Bytes of `rbuf` read so far (head and the body bytes that came along).
    pub filled: usize,
    /// The relay buffer.
    pub rbuf: Vec<u8>,
    /// The connection came from the pool.
    pub reused: bool,
}

/// Why no response head arrived.
pub enum Failure {
    /// The upstream attempt failed (502/504, or a fallback).
    Upstream(UpstreamError),
    /// The client left while we waited: not an upstream error, nothing is answered.
    ClientGone,
}

/// Sends `out` on a pooled or new connection and waits for the response head; a reused pooled
/// connection that fails before any response byte is retried once on a fresh one. The relay
/// buffer is taken from `c` and handed back on failure. `total` bounds the whole exchange.
pub async fn send(
    w: &Rc<Worker>,
    c: &mut ClientConn,
    at: &Attempt,
    mut out: Outgoing,
    total: Option<Instant>,
) -> Result<Arrived, Failure> {
    let cfg = at.cfg();
    let mut rbuf = c
        .relay
        .take()
        .unwrap_or_else(|| Vec::with_capacity(w.shared.tuning.read_buffer_bytes));
    let mut first_try = true;
    loop {
        let pooled = w
            .pool
            .checkout(&at.addr, Duration::from_millis(cfg.pool_idle_timeout_ms));
        let reused = pooled.is_some();
        let up = match pooled {
            Some(s) => s,
            None => match connect(w, at).await {
                Ok(s) => s,
                Err(e) => {
                    c.relay = Some(rbuf);
                    return Err(Failure::Upstream(e));
                }
            },
        };
        match wait_head(w, c, at, up, reused, out, rbuf, total).await {
            Ok(arrived) => {
                note_head(at, &arrived.head, &arrived.rbuf);
                return Ok(arrived);
            }
            Err((f, o, r)) => {
                out = o;
                rbuf = r;
                // The one retry: a pooled connection the upstream closed while it sat idle.
                if matches!(&f, Failure::Upstream(e) if e.retry_allowed()) && first_try {
                    first_try = false;
                    continue;
                }
                if let Failure::Upstream(e) = &f {
                    note_failure(at, e);
                }
                c.relay = Some(rbuf);
                return Err(f);
            }
        }
    }
}

/// A new connection to the attempt's upstream; a refusal marks it down and counts towards its
/// cooldown.
async fn connect(w: &Rc<Worker>, at: &Attempt) -> Result<UpstreamStream, UpstreamError> {
    let cfg = at.cfg();
    let connected = pool::connect(
        &at.addr,
        Duration::from_millis(cfg.connect_ms),
        w.uring,
        w.shared.tuning.tcp_nodelay,
    )
    .await;
    connected.map_err(|e| {
        let e = UpstreamError::connect(e);
        if e.is_refused() {
            super::port::mark_down(w, at.upstream());
        }
        note_failure(at, &e);
        e
    })
}

/// Tells the cooldown breaker about a failed attempt that counts (connect failure, head
/// timeout).
fn note_failure(at: &Attempt, e: &UpstreamError) {
    if e.trips_cooldown() {
        let cfg = at.cfg();
        let entry = at.snap.upstream(at.upstream_id);
        entry.counters().cooldown.record_failure(
            clock_ms(),
            cfg.cooldown_after,
            cfg.cooldown_ms,
            0,
        );
    }
}

/// Tells the cooldown breaker how a response head went: a 5xx (or a 429 with `Retry-After`)
/// counts as a failure, honouring the upstream's `Retry-After`; anything else closes it.
fn note_head(at: &Attempt, head: &ResponseHead, buf: &[u8]) {
    let cooldown = &at.snap.upstream(at.upstream_id).counters().cooldown;
    let status = head.status();
    let retry_after_ms = head
        .header(buf, b"retry-after")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(0, |s| s.saturating_mul(1000));
    if status >= 500 || (status == 429 && retry_after_ms > 0) {
        let cfg = at.cfg();
        cooldown.record_failure(
            clock_ms(),
            cfg.cooldown_after,
            cfg.cooldown_ms,
            retry_after_ms,
        );
    } else {
        cooldown.record_success();
    }
}

type SendErr = (Failure, Outgoing, Vec<u8>);

/// Writes the request and waits for a final response head (skipping 1xx), watching the client.
#[allow(clippy::too_many_arguments)]
async fn wait_head(
    w: &Rc<Worker>,
    c: &mut ClientConn,
    at: &Attempt,
    mut up: UpstreamStream,
    reused: bool,
    out: Outgoing,
    mut rbuf: Vec<u8>,
    total: Option<Instant>,
) -> Result<Arrived, SendErr> {
    let cfg = at.cfg();
    let (res, out) = out.write_to(&mut up).await;
    let failed = |kind, source| Failure::Upstream(UpstreamError::new(kind, source, reused));
    if let Err(e) = res {
        return Err((failed(UpstreamErrorKind::Write, Some(e)), out, rbuf));
    }
    c.rec.sent();
    let mut deadline = Instant::now() + Duration::from_millis(cfg.first_byte_ms);
    if let Some(d) = total {
        deadline = deadline.min(d);
    }
    let max_head = w.shared.tuning.max_header_bytes.max(16 * 1024);
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
                let timeout = UpstreamErrorKind::Timeout {
                    partial_head: filled > 0,
                };
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
        match final_head(&mut head, &mut rbuf, &mut filled, at.head_request, max_head) {
            Ok(true) => {
                return Ok(Arrived {
                    up,
                    head,
                    filled,
                    rbuf,
                    reused,
                })
            }
            Ok(false) => {}
            Err(bad) => return Err((failed(UpstreamErrorKind::BadResponse(bad), None), out, rbuf)),
        }
    }
}

/// Parses what `rbuf[..filled]` holds: `Ok(true)` at a final head, `Ok(false)` when more bytes
/// are needed. Interim 1xx heads are dropped from the buffer (the client's own `Expect` was
/// answered locally); a 101 is refused (upgrades are not proxied).
fn final_head(
    head: &mut ResponseHead,
    rbuf: &mut [u8],
    filled: &mut usize,
    head_request: bool,
    max_head: usize,
) -> Result<bool, BadResponse> {
    loop {
        match head.parse(
            rbuf.get(..*filled).unwrap_or_default(),
            head_request,
            max_head,
        ) {
            Ok(Status::Complete(n)) if head.is_informational() && head.status() != 101 => {
                rbuf.copy_within(n..*filled, 0);
                *filled -= n;
                if *filled == 0 {
                    return Ok(false);
                }
            }
            Ok(Status::Complete(_)) if head.status() == 101 => return Err(BadResponse::Upgrade),
            Ok(Status::Complete(_)) => return Ok(true),
            Ok(Status::Incomplete) => return Ok(false),
            Err(e) => return Err(BadResponse::MalformedHead(e)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)] // tests: a panic is a failure
mod tests {
    use super::*;

    #[test]
    fn interim_heads_are_skipped_and_a_final_head_is_found() {
        let mut head = ResponseHead::new();
        let mut buf =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi".to_vec();
        let mut filled = buf.len();
        assert_eq!(
            final_head(&mut head, &mut buf, &mut filled, false, 4096),
            Ok(true)
        );
        assert_eq!(head.status(), 200);
        assert_eq!(
            &buf[..filled],
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi"
        );
    }

    #[test]
    fn a_lone_interim_head_needs_more_and_an_upgrade_is_refused() {
        let mut head = ResponseHead::new();
        let mut buf = b"HTTP/1.1 103 Early Hints\r\n\r\n".to_vec();
        let mut filled = buf.len();
        assert_eq!(
            final_head(&mut head, &mut buf, &mut filled, false, 4096),
            Ok(false)
        );
        assert_eq!(filled, 0);
        let mut head = ResponseHead::new();
        let mut buf = b"HTTP/1.1 101 Switching Protocols\r\nupgrade: ws\r\n\r\n".to_vec();
        let mut filled = buf.len();
        assert_eq!(
            final_head(&mut head, &mut buf, &mut filled, false, 4096),
            Err(BadResponse::Upgrade)
        );
        let mut head = ResponseHead::new();
        let mut buf = b"HTTP/1.1 200 OK\r\ncontent-le".to_vec();
        let mut filled = buf.len();
        assert_eq!(
            final_head(&mut head, &mut buf, &mut filled, false, 4096),
            Ok(false)
        );
    }
}
