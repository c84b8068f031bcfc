//! Per-worker upstream connections: connect with a deadline, and a LIFO keep-alive pool.
//!
//! Each worker owns its pool (no locks). Connections are keyed by socket address: two upstreams
//! on the same address are the same server. Checkout is LIFO (the warmest connection first) and
//! drops any idle connection that turned readable (the upstream closed it or sent junk) or aged
//! past its idle timeout; a periodic sweep closes the rest.

use super::sys;
use monoio::net::TcpStream;
use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

struct Idle {
    stream: TcpStream,
    since: Instant,
}

/// A worker's idle upstream connections.
#[derive(Default)]
pub struct Pool {
    idle: RefCell<HashMap<SocketAddr, Vec<Idle>>>,
}

impl Pool {
    /// The most recently returned live connection to `addr`, if any.
    pub fn checkout(&self, addr: SocketAddr, idle_timeout: Duration) -> Option<TcpStream> {
        let mut map = self.idle.borrow_mut();
        let list = map.get_mut(&addr)?;
        while let Some(c) = list.pop() {
            if c.since.elapsed() < idle_timeout && sys::peek(c.stream.as_raw_fd()) == sys::Peek::Empty
            {
                return Some(c.stream);
            }
        }
        None
    }

    /// Returns a connection whose exchange ended cleanly. Beyond `max_idle` the oldest is closed.
    pub fn checkin(&self, addr: SocketAddr, stream: TcpStream, max_idle: usize) {
        if max_idle == 0 {
            return;
        }
        let mut map = self.idle.borrow_mut();
        let list = map.entry(addr).or_default();
        if list.len() >= max_idle {
            list.remove(0);
        }
        list.push(Idle {
            stream,
            since: Instant::now(),
        });
    }

    /// Closes idle connections older than `max_age` or already closed by the upstream.
    pub fn sweep(&self, max_age: Duration) {
        let mut map = self.idle.borrow_mut();
        map.retain(|_, list| {
            list.retain(|c| {
                c.since.elapsed() < max_age && sys::peek(c.stream.as_raw_fd()) == sys::Peek::Empty
            });
            !list.is_empty()
        });
    }

    /// Idle connections per address, for metrics.
    pub fn idle_counts(&self) -> Vec<(SocketAddr, usize)> {
        self.idle
            .borrow()
            .iter()
            .map(|(a, l)| (*a, l.len()))
            .collect()
    }
}

/// Connects to `addr` within `timeout`. The wait can be dropped safely: the socket is owned from
/// the start (monoio 0.2.4 leaks the fd of a cancelled connect op).
pub async fn connect(
    addr: SocketAddr,
    timeout: Duration,
    uring: bool,
    nodelay: bool,
) -> io::Result<TcpStream> {
    let std = sys::start_connect(addr)?;
    let stream = TcpStream::from_std(std)?;
    match monoio::time::timeout(timeout, stream.writable(false)).await {
        Err(_) => {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connect to {addr} timed out"),
            ))
        }
        Ok(r) => r?,
    }
    sys::take_error(&stream)?;
    if uring {
        sys::set_blocking(&stream, true)?;
    }
    if nodelay {
        sys::set_nodelay(&stream)?;
    }
    Ok(stream)
}
