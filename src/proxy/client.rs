//! The client side of one exchange: the connection's state between requests ([`ClientConn`]),
//! where the current request's body sits ([`Body`]), and the read-side watch that notices a
//! client leaving while we wait or stream (DESIGN.md §3 "A client that goes away is noticed").

use super::contain::ConnProbe;
use super::stream::ClientStream;
use crate::http::RequestHead;
use crate::metrics::Record;
use bytes::BytesMut;
use monoio::net::TcpStream;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Duration;

/// How long an exchange runs before the client's read side is watched.
const WATCH_ARM_DELAY: Duration = Duration::from_millis(2);

/// Where a request's body is.
pub enum Body {
    /// Bytes `range` of the connection's read buffer (Content-Length bodies: zero copy).
    InBuf(std::ops::Range<usize>),
    /// De-chunked into its own buffer.
    Owned(Vec<u8>),
}

/// A client connection's state between requests.
pub struct ClientConn {
    /// The client connection (plain, or TLS when `[listen] tls_cert` is set).
    pub stream: ClientStream,
    /// A duplicate of the client fd used only to notice the client leaving mid-exchange.
    pub watch: Option<Watch>,
    /// Request bytes read so far (the current request first, pipelined ones after it).
    pub buf: BytesMut,
    /// The relay buffer, reused by every response on this connection.
    pub relay: Option<Vec<u8>>,
    /// The parsed head of the current request (reused allocation).
    pub head: RequestHead,
    /// Peer address.
    pub peer: SocketAddr,
    /// The current request's facts for metrics and the decision log (reused per request).
    pub rec: Record,
    /// What the panic containment wrapper knows of this connection.
    pub probe: Rc<ConnProbe>,
}

impl ClientConn {
    /// The read-side watcher, created on first use.
    pub fn watcher(&mut self) -> Option<&Watch> {
        if self.watch.is_none() {
            self.watch = super::sys::dup_stream(self.stream.as_raw_fd())
                .ok()
                .map(|sock| Watch {
                    sock,
                    tls: self.stream.is_tls(),
                });
        }
        self.watch.as_ref()
    }
}

/// The read-side watcher: a duplicate of the client's raw TCP fd, polled for readability and
/// peeked (never read), so it works the same under TLS.
pub struct Watch {
    sock: TcpStream,
    tls: bool,
}

/// Resolves when the client has gone away (EOF or reset on its read side). Bytes waiting there
/// are a pipelined request, not a departure: then it never resolves. Under TLS, waiting bytes
/// may also be a `close_notify` alert in front of the FIN, so the socket is then checked for a
/// peer hang-up (`POLLRDHUP`) every few milliseconds instead.
pub async fn client_gone(watch: Option<&Watch>) {
    let Some(Watch { sock: watch, tls }) = watch else {
        return std::future::pending().await;
    };
    // Most exchanges end within a couple of milliseconds: arm the poll only after that, so they
    // cost no poll-and-cancel pair (a timer here is a wheel entry, not a ring operation). A
    // client leaving is still noticed within milliseconds.
    monoio::time::sleep(WATCH_ARM_DELAY).await;
    loop {
        if watch.readable(false).await.is_err() {
            return;
        }
        match super::sys::peek(watch.as_raw_fd()) {
            super::sys::Peek::Eof | super::sys::Peek::Error => return,
            super::sys::Peek::Data if *tls => loop {
                if super::sys::peer_hung_up(watch.as_raw_fd()) {
                    return;
                }
                monoio::time::sleep(Duration::from_millis(20)).await;
            },
            super::sys::Peek::Data => return std::future::pending().await,
            super::sys::Peek::Empty => {
                // Spurious wake-up: wait again, but never spin.
                monoio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}
