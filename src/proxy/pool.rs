//! Per-worker upstream connections: connect with a deadline, and a LIFO keep-alive pool.
//!
//! Each worker owns its pool (no locks). Connections are keyed by socket address plus, for TLS,
//! the upstream's TLS client (server name and verification settings), so a plain and a TLS
//! upstream on one address never share a connection; two plain upstreams on the same address
//! are the same server. Checkout is LIFO (the warmest connection first) and
//! drops any idle connection that turned readable (the upstream closed it or sent junk) or aged
//! past its idle timeout; a periodic sweep closes the rest.

use super::stream::UpstreamStream;
use super::sys;
use crate::config::{Config, Scheme};
use crate::routing::{Snapshot, UpstreamEntry};
use monoio::net::TcpStream;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Idle {
    stream: UpstreamStream,
    since: Instant,
}

/// Which idle connections may serve a target: the address, and the TLS client's tag (0 = plain).
type Key = (SocketAddr, u64);

/// Idle age under which a pooled connection is reused without peeking at it first.
const FRESH: Duration = Duration::from_millis(500);

/// A worker's idle upstream connections and its TLS clients.
#[derive(Default)]
pub struct Pool {
    idle: RefCell<HashMap<Key, Vec<Idle>>>,
    tls: RefCell<TlsClients>,
}

/// Where an exchange connects: an address, and for an `https://` upstream its TLS client.
pub struct Target {
    /// The upstream's socket address.
    pub addr: SocketAddr,
    tls: Option<Rc<TlsClient>>,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.tls {
            None => write!(f, "{}", self.addr),
            Some(_) => write!(f, "{} (tls)", self.addr),
        }
    }
}

impl Target {
    /// The target for `entry` at `addr` under `snap`, with the worker's TLS client for an
    /// `https://` upstream.
    pub fn new(pool: &Pool, snap: &Snapshot, entry: &UpstreamEntry, addr: SocketAddr) -> Target {
        let https = entry
            .cfg
            .parsed_url
            .as_ref()
            .is_some_and(|u| u.scheme == Scheme::Https);
        let tls = https.then(|| pool.tls.borrow_mut().get(&snap.config, entry));
        Target { addr, tls }
    }

    fn key(&self) -> Key {
        (self.addr, self.tls.as_ref().map_or(0, |t| t.tag))
    }
}

/// One `https://` upstream's client side: its server name and its rustls config (one per
/// upstream per worker, so its session cache lets new connections resume).
struct TlsClient {
    name: Result<ServerName<'static>, String>,
    config: Result<Arc<ClientConfig>, String>,
    /// Unique per worker and never reused: the pool key's TLS part.
    tag: u64,
}

/// The worker's TLS clients for the config in force, by upstream name. Built lazily (reading a
/// `ca_file` once per worker) and dropped when a reload installs a new config, so replaced CA
/// files are read again.
#[derive(Default)]
struct TlsClients {
    config: Option<Arc<Config>>,
    by_name: HashMap<String, Rc<TlsClient>>,
    next_tag: u64,
}

impl TlsClients {
    fn get(&mut self, config: &Arc<Config>, entry: &UpstreamEntry) -> Rc<TlsClient> {
        if !self.config.as_ref().is_some_and(|c| Arc::ptr_eq(c, config)) {
            self.config = Some(config.clone());
            self.by_name.clear();
        }
        if let Some(t) = self.by_name.get(entry.name()) {
            return t.clone();
        }
        let cfg = &entry.cfg;
        let host = cfg.parsed_url.as_ref().map_or("", |u| u.host.as_str());
        self.next_tag += 1;
        let t = Rc::new(TlsClient {
            name: crate::tls::server_name(host),
            config: crate::tls::client_config(cfg.ca_file.as_deref(), cfg.insecure_skip_verify),
            tag: self.next_tag,
        });
        if let Err(e) = &t.config {
            tracing::error!(upstream = entry.name(), error = %e, "tls client config failed");
        }
        self.by_name.insert(entry.name().to_string(), t.clone());
        t
    }
}

impl Pool {
    /// The most recently returned live connection to `target`, if any.
    pub fn checkout(&self, target: &Target, idle_timeout: Duration) -> Option<UpstreamStream> {
        let mut map = self.idle.borrow_mut();
        let list = map.get_mut(&target.key())?;
        while let Some(c) = list.pop() {
            let age = c.since.elapsed();
            // A connection back in the pool for under `FRESH` skips the peek syscall: the
            // sweep and the retry-once of a reused connection that fails before any byte cover
            // the rare upstream that closed it in that window.
            if age < idle_timeout
                && (age < FRESH || sys::peek(c.stream.as_raw_fd()) == sys::Peek::Empty)
            {
                return Some(c.stream);
            }
        }
        None
    }

    /// Returns a connection whose exchange ended cleanly. Beyond `max_idle` the oldest is closed.
    pub fn checkin(&self, target: &Target, stream: UpstreamStream, max_idle: usize) {
        if max_idle == 0 {
            return;
        }
        let mut map = self.idle.borrow_mut();
        let list = map.entry(target.key()).or_default();
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
            .map(|((a, _), l)| (*a, l.len()))
            .collect()
    }
}

/// Connects to `target` within `timeout`, then, for TLS, handshakes within another `timeout`.
/// A handshake failure is an error of kind `InvalidData` (or `Other`) whose text is rustls' reason
/// (e.g. "invalid peer certificate: UnknownIssuer").
pub async fn connect(
    target: &Target,
    timeout: Duration,
    uring: bool,
    nodelay: bool,
) -> io::Result<UpstreamStream> {
    let tcp = connect_tcp(target.addr, timeout, uring, nodelay).await?;
    let Some(tls) = &target.tls else {
        return Ok(UpstreamStream::Plain(tcp));
    };
    let config = tls.config.clone().map_err(io::Error::other)?;
    let name = tls.name.clone().map_err(io::Error::other)?;
    match monoio::time::timeout(timeout, super::tls_stream::connect(tcp, config, name)).await {
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "TLS handshake timed out",
        )),
        Ok(Err(e)) => Err(io::Error::new(
            e.kind(),
            format!("TLS handshake failed: {e}"),
        )),
        Ok(Ok(s)) => Ok(UpstreamStream::Tls(Box::new(s))),
    }
}

/// Connects to `addr` within `timeout`. The wait can be dropped safely: the socket is owned from
/// the start (monoio 0.2.4 leaks the fd of a cancelled connect op).
async fn connect_tcp(
    addr: SocketAddr,
    timeout: Duration,
    uring: bool,
    nodelay: bool,
) -> io::Result<TcpStream> {
    if uring {
        // io_uring: one IORING_OP_CONNECT instead of connect + poll + getsockopt + 2 fcntl. The
        // op runs in its own task, so a timeout only detaches it: the task still owns the
        // socket and closes it when the op ends (monoio 0.2.4 leaks the fd of a connect op that
        // is dropped in flight).
        let task = monoio::spawn(TcpStream::connect_addr(addr));
        let stream = match monoio::time::timeout(timeout, task).await {
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connect to {addr} timed out"),
                ))
            }
            Ok(r) => r?,
        };
        if nodelay {
            stream.set_nodelay(true)?;
        }
        return Ok(stream);
    }
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
    if nodelay {
        sys::set_nodelay(&stream)?;
    }
    Ok(stream)
}
