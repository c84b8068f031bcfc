//! Relaying a response once its head arrived (DESIGN.md §3 "Streaming"): the client's head and
//! the body bytes that came with it in one write, then the rest as it arrives through one reused
//! buffer — no re-framing, no per-event allocation. A client that leaves closes the upstream at
//! once (`on_client_abort = "cancel"`) or lets it finish into the void (`"drain"`); an upstream
//! that dies or stalls mid-stream cuts the client's response (no terminating chunk).

use super::attempt::Attempt;
use super::client::{client_gone, ClientConn};
use super::context::{Outcome, Worker};
use super::send::Arrived;
use super::stream::{ClientStream, UpstreamStream};
use super::upstream_error::{BadResponse, UpstreamError};
use crate::config::OnClientAbort;
use crate::http::{BodyFraming, ChunkedDecoder};
use monoio::buf::IoBuf;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Relays the response whose head `a` holds; `total` bounds the whole exchange.
pub async fn relay(
    w: &Rc<Worker>,
    c: &mut ClientConn,
    at: &Attempt,
    a: Arrived,
    total: Option<Instant>,
) -> Outcome {
    let Arrived {
        up,
        head,
        filled,
        rbuf,
        reused,
    } = a;
    c.rec.response_head(head.status());
    let framing = head.framing();
    let upstream_keep_alive = head.keep_alive();
    let dechunk = at.client_http10 && framing == BodyFraming::Chunked;
    let close_client = !at.client_keep_alive
        || matches!(framing, BodyFraming::Close)
        || dechunk
        || w.shared.is_draining();
    let mut first = Vec::with_capacity(filled + 256);
    super::forward::response_head(&mut first, &head, &rbuf, at, close_client, dechunk);
    let head_len = head.head_len();
    drop(head);

    let mut body = BodyState::new(framing, dechunk);
    let avail = rbuf.get(head_len..filled).unwrap_or_default();
    let Ok((take, done)) = body.feed(avail, Some(&mut first)) else {
        // Bad framing from upstream before anything was sent: a clean 502.
        c.relay = Some(rbuf);
        let e = UpstreamError::bad_response(BadResponse::BodyFraming, reused);
        let reply = e.to_reply(at.upstream(), &at.addr, at.cfg().first_byte_ms);
        return super::reply::error(c, &reply, &at.request_id, at.client_keep_alive).await;
    };
    let extra_after = take < avail.len();
    c.rec
        .relayed(avail.get(..take).unwrap_or(avail), &w.metrics);
    c.rec.wrote(first.len());
    let idle = Duration::from_millis(at.cfg().idle_ms);
    c.probe.responding();
    let (written, _) = write_client(&mut c.stream, first, idle).await;
    c.probe.body_panic_point();
    let drain = at.cfg().on_client_abort == OnClientAbort::Drain;
    // Client gone (or not reading for `idle_ms`): `cancel` drops the upstream connection (never
    // pooled); `drain` reads on.
    let client_dead = !written;
    if client_dead {
        c.rec.client_gone();
        if !drain {
            c.relay = Some(rbuf);
            return Outcome::Close;
        }
    }
    let close = close_client || client_dead;
    if done {
        let reusable = upstream_keep_alive && !extra_after && framing != BodyFraming::Close;
        return complete(w, &mut c.relay, at, up, rbuf, reusable, close);
    }
    let rest = Rest {
        up,
        rbuf,
        body,
        upstream_keep_alive,
        client_dead,
        close,
        drain,
        idle,
        total,
    };
    stream_rest(w, c, at, rest).await
}

/// A response whose body is still arriving.
struct Rest {
    up: UpstreamStream,
    rbuf: Vec<u8>,
    body: BodyState,
    upstream_keep_alive: bool,
    client_dead: bool,
    close: bool,
    drain: bool,
    idle: Duration,
    total: Option<Instant>,
}

/// Streams the rest of the body: one reused buffer, bytes forwarded as they arrive.
async fn stream_rest(w: &Rc<Worker>, c: &mut ClientConn, at: &Attempt, r: Rest) -> Outcome {
    let Rest {
        mut up,
        mut rbuf,
        mut body,
        mut client_dead,
        ..
    } = r;
    let dechunk = body.dechunk;
    let mut gone = std::pin::pin!(client_gone(if r.drain { None } else { c.watch.as_ref() }));
    let mut scratch = Vec::new();
    loop {
        let Some(wait) = next_wait(r.idle, r.total) else {
            c.rec.cut();
            return Outcome::Close;
        };
        rbuf.clear();
        let read = monoio::time::timeout(wait, up.read(rbuf));
        let got = monoio::select! {
            x = read => Some(x),
            _ = &mut gone => None,
        };
        let (res, b) = match got {
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
                // Upstream ended: complete only for close-delimited bodies; otherwise it was cut.
                if body.framing == BodyFraming::Close {
                    c.relay = Some(rbuf);
                } else {
                    c.rec.cut();
                }
                return Outcome::Close;
            }
            Ok(n) => n,
        };
        scratch.clear();
        let got = rbuf.get(..n).unwrap_or_default();
        let Ok((take, done)) = body.feed(got, dechunk.then_some(&mut scratch)) else {
            c.rec.cut();
            return Outcome::Close;
        };
        c.rec
            .relayed(rbuf.get(..take).unwrap_or_default(), &w.metrics);
        if !client_dead {
            let written;
            let (stream, rec) = (&mut c.stream, &mut c.rec);
            (written, rbuf, scratch) =
                pass_on(stream, rec, rbuf, take, scratch, dechunk, r.idle).await;
            if !written {
                c.rec.client_gone();
                if !r.drain {
                    return Outcome::Close;
                }
                client_dead = true;
            }
        }
        if done {
            let reusable = r.upstream_keep_alive && take == n;
            let close = r.close || client_dead;
            return complete(w, &mut c.relay, at, up, rbuf, reusable, close);
        }
    }
}

/// Writes one read's body bytes to the client: `rbuf[..take]` as they came, or the de-chunked
/// payload in `scratch`. Returns whether the write completed and both buffers (a fresh relay
/// buffer when a timed-out write kept it: reading on, in `drain` mode, needs one).
async fn pass_on(
    stream: &mut ClientStream,
    rec: &mut crate::metrics::Record,
    rbuf: Vec<u8>,
    take: usize,
    scratch: Vec<u8>,
    dechunk: bool,
    idle: Duration,
) -> (bool, Vec<u8>, Vec<u8>) {
    rec.wrote(if dechunk { scratch.len() } else { take });
    if dechunk {
        let (ok, back) = write_client(stream, scratch, idle).await;
        return (ok, rbuf, back.unwrap_or_default());
    }
    let cap = rbuf.capacity();
    let (ok, back) = write_client(stream, rbuf.slice(0..take), idle).await;
    let rbuf = back.map_or_else(|| Vec::with_capacity(cap), |b| b.into_inner());
    (ok, rbuf, scratch)
}

/// How long the next upstream read may wait: `idle`, shortened by the whole-exchange deadline;
/// `None` once that deadline passed.
fn next_wait(idle: Duration, total: Option<Instant>) -> Option<Duration> {
    match total {
        None => Some(idle),
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            (!left.is_zero()).then(|| idle.min(left))
        }
    }
}

/// Writes `buf` to the client within `limit`: a client that stops reading for that long is
/// treated as gone, so a slow reader cannot hold a stream (and its upstream) forever. Returns
/// whether the write completed, and the buffer unless the write was cancelled.
async fn write_client<T: IoBuf>(
    stream: &mut ClientStream,
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
    at: &Attempt,
    up: UpstreamStream,
    rbuf: Vec<u8>,
    reusable: bool,
    close: bool,
) -> Outcome {
    if reusable {
        w.pool
            .checkin(&at.addr, up, at.cfg().pool_max_idle as usize);
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

    /// Accounts for `input`; returns how many of its bytes belong to the body and whether the
    /// body is complete. Those bytes are appended to `out` when given (de-chunking for an
    /// HTTP/1.0 client appends only the payload, and needs `out`); without `out` the caller
    /// forwards `input[..n]` itself.
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
                let out = out.ok_or(())?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_length_body_ends_at_its_length_and_leaves_the_rest() {
        let mut b = BodyState::new(BodyFraming::Length(5), false);
        assert_eq!(b.feed(b"abc", None), Ok((3, false)));
        assert_eq!(b.feed(b"defgh", None), Ok((2, true)));
    }

    #[test]
    fn chunked_is_tracked_across_reads_and_copied_when_asked() {
        let mut b = BodyState::new(BodyFraming::Chunked, false);
        let mut out = Vec::new();
        assert_eq!(b.feed(b"5\r\nhel", Some(&mut out)), Ok((6, false)));
        assert_eq!(b.feed(b"lo\r\n0\r\n\r\nX", Some(&mut out)), Ok((9, true)));
        assert_eq!(out, b"5\r\nhello\r\n0\r\n\r\n");
    }

    #[test]
    fn dechunking_keeps_only_the_payload_and_needs_a_buffer() {
        let mut b = BodyState::new(BodyFraming::Chunked, true);
        assert_eq!(b.feed(b"2\r\nhi\r\n", None), Err(()));
        let mut b = BodyState::new(BodyFraming::Chunked, true);
        let mut out = Vec::new();
        assert_eq!(
            b.feed(b"2\r\nhi\r\n0\r\n\r\n", Some(&mut out)),
            Ok((12, true))
        );
        assert_eq!(out, b"hi");
    }

    #[test]
    fn bad_chunk_framing_is_an_error_and_close_bodies_never_end_by_bytes() {
        let mut b = BodyState::new(BodyFraming::Chunked, false);
        assert_eq!(b.feed(b"zz\r\n", None), Err(()));
        let mut b = BodyState::new(BodyFraming::Close, false);
        assert_eq!(b.feed(b"anything", None), Ok((8, false)));
        let mut b = BodyState::new(BodyFraming::None, false);
        assert_eq!(b.feed(b"x", None), Ok((0, true)));
    }

    #[test]
    fn the_total_deadline_shortens_and_ends_the_wait() {
        let idle = Duration::from_secs(60);
        assert_eq!(next_wait(idle, None), Some(idle));
        let soon = Instant::now() + Duration::from_millis(500);
        assert!(next_wait(idle, Some(soon)).is_some_and(|d| d <= Duration::from_millis(500)));
        let past = Instant::now() - Duration::from_millis(1);
        assert_eq!(next_wait(idle, Some(past)), None);
    }
}
