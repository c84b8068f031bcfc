//! Minimal blocking HTTP/1.1 client for health probes, `/v1/models` fetches and the wake hook's
//! POST, over plain TCP or TLS (`https://` upstreams: rustls' blocking stream with the
//! upstream's roots, `ca_file` and `insecure_skip_verify`, as on the workers; an `https://`
//! `wake_url`: the bundled roots plus `wake_ca_file`).
//!
//! Control threads only (std sockets, one hard deadline for connect + write + read), so a hung
//! upstream costs its own prober thread at most `timeout` and never touches a worker.

use super::wire::{Wire, WireError, WireStream, MAX_HEAD};
use crate::config::{Scheme, UpstreamConfig, UpstreamUrl};
use crate::http::ResponseHead;
use parking_lot::Mutex;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Largest response body a control-side GET accepts (a big remote's model list fits).
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// A response: status and the whole decoded body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Why a GET failed.
#[derive(Debug)]
pub enum ClientError {
    /// No address to connect to (DNS gave nothing).
    NoAddress,
    /// The connection was refused (nothing listens).
    Refused,
    /// The deadline passed (connect, write or read).
    Timeout,
    /// Any other transport or framing failure.
    Failed(String),
}

impl ClientError {
    /// Whether the upstream refused the connection.
    pub fn is_refused(&self) -> bool {
        matches!(self, ClientError::Refused)
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::NoAddress => f.write_str("no address"),
            ClientError::Refused => f.write_str("connection refused"),
            ClientError::Timeout => f.write_str("timed out"),
            ClientError::Failed(m) => f.write_str(m),
        }
    }
}

impl From<WireError> for ClientError {
    fn from(e: WireError) -> ClientError {
        match e {
            WireError::Timeout => ClientError::Timeout,
            other => ClientError::Failed(other.to_string()),
        }
    }
}

/// `GET path` on the first address that accepts, sending `Host: authority` and `headers`
/// (`name: value` pairs); the whole exchange ends within `timeout`. Cleartext.
pub fn get(
    addrs: &[SocketAddr],
    authority: &str,
    path: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> Result<Response, ClientError> {
    exchange("GET", addrs, authority, path, headers, None, timeout, None)
}

/// `GET path` on upstream `u` (at one of `addrs`) with its `Host`, its credential and, for an
/// `https://` URL, TLS verified as `u` says.
pub fn get_upstream(
    u: &UpstreamConfig,
    addrs: &[SocketAddr],
    path: &str,
    timeout: Duration,
) -> Result<Response, ClientError> {
    let url = u.parsed_url.as_ref().ok_or(ClientError::NoAddress)?;
    let tls = tls_for(url, u.ca_file.as_deref(), u.insecure_skip_verify)?;
    let headers = super::upstream::auth_headers(u);
    exchange(
        "GET",
        addrs,
        &url.authority,
        path,
        &headers,
        None,
        timeout,
        tls,
    )
}

/// `POST` a JSON body to `url` (the wake hook): its host resolved here, and for an `https://`
/// URL TLS verified against the bundled web roots plus `ca_file` (the wake hook's own
/// `wake_ca_file`; it has no `insecure_skip_verify`).
pub fn post_json(
    url: &UpstreamUrl,
    ca_file: Option<&Path>,
    body: &[u8],
    timeout: Duration,
) -> Result<Response, ClientError> {
    // Blocking DNS is allowed here: the wake POST runs on a control thread, never a worker.
    #[allow(clippy::disallowed_methods)]
    let addrs: Vec<SocketAddr> = match url.literal_addr() {
        Some(a) => vec![a],
        None => (url.host.as_str(), url.port)
            .to_socket_addrs()
            .map_err(|e| ClientError::Failed(format!("dns lookup of {}: {e}", url.host)))?
            .collect(),
    };
    let path = if url.base_path.is_empty() {
        "/"
    } else {
        url.base_path.as_str()
    };
    let tls = tls_for(url, ca_file, false)?;
    exchange(
        "POST",
        &addrs,
        &url.authority,
        path,
        &[],
        Some(body),
        timeout,
        tls,
    )
}

/// The server name and client config for an `https://` URL (`None` for cleartext).
fn tls_for(
    url: &UpstreamUrl,
    ca_file: Option<&Path>,
    insecure: bool,
) -> Result<Option<(ServerName<'static>, Arc<ClientConfig>)>, ClientError> {
    if url.scheme != Scheme::Https {
        return Ok(None);
    }
    let name = crate::tls::server_name(&url.host).map_err(ClientError::Failed)?;
    let cfg = tls_config(ca_file, insecure).map_err(ClientError::Failed)?;
    Ok(Some((name, cfg)))
}

/// Control-side TLS client configs, shared by every probe, fetch and wake POST so sessions
/// resume. Keyed by CA file and `insecure_skip_verify`; emptied when a config is applied
/// ([`forget_tls_configs`]), so a CA file is read again at a reload, never between reloads: the
/// control plane sees the same CA files as the workers, which rebuild theirs per config.
type TlsKey = (Option<PathBuf>, bool);

fn tls_cache() -> &'static Mutex<HashMap<TlsKey, Arc<ClientConfig>>> {
    static CACHE: OnceLock<Mutex<HashMap<TlsKey, Arc<ClientConfig>>>> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

fn tls_config(ca_file: Option<&Path>, insecure: bool) -> Result<Arc<ClientConfig>, String> {
    let key = (ca_file.map(Path::to_path_buf), insecure);
    let mut cache = tls_cache().lock();
    if let Some(c) = cache.get(&key) {
        return Ok(c.clone());
    }
    let c = crate::tls::client_config(ca_file, insecure)?;
    cache.insert(key, c.clone());
    Ok(c)
}

/// Drops the cached TLS client configs: called when a config is applied (start or reload).
pub fn forget_tls_configs() {
    tls_cache().lock().clear();
}

#[allow(clippy::too_many_arguments)]
fn exchange(
    method: &str,
    addrs: &[SocketAddr],
    authority: &str,
    path: &str,
    headers: &[(String, String)],
    body: Option<&[u8]>,
    timeout: Duration,
    tls: Option<(ServerName<'static>, Arc<ClientConfig>)>,
) -> Result<Response, ClientError> {
    let deadline = Instant::now() + timeout;
    let stream = connect(addrs, deadline)?;
    let _ = stream.set_nodelay(true);
    let stream = match tls {
        None => WireStream::Plain(stream),
        Some((name, cfg)) => {
            // The handshake runs inside the first write: bound its reads by the deadline too.
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::Timeout);
            }
            let _ = stream.set_read_timeout(Some(left));
            let conn = rustls::ClientConnection::new(cfg, name)
                .map_err(|e| ClientError::Failed(format!("tls: {e}")))?;
            WireStream::Tls(Box::new(rustls::StreamOwned::new(conn, stream)))
        }
    };
    let mut w = Wire::new(stream, deadline);
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {authority}\r\naccept: application/json\r\nuser-agent: slotgate\r\nconnection: close\r\n"
    );
    for (n, v) in headers {
        req.push_str(n);
        req.push_str(": ");
        req.push_str(v);
        req.push_str("\r\n");
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "content-type: application/json\r\ncontent-length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    let mut req = req.into_bytes();
    if let Some(b) = body {
        req.extend_from_slice(b);
    }
    w.write_all(&req)?;
    loop {
        let raw = w.read_head()?.ok_or(ClientError::Failed(
            "connection closed before a response".into(),
        ))?;
        // `raw` ends in the blank line, so the parse is complete or an error.
        let mut head = ResponseHead::new();
        head.parse(&raw, false, MAX_HEAD)
            .map_err(|e| ClientError::Failed(e.to_string()))?;
        if head.is_informational() {
            // An interim response (100 Continue): the real one follows.
            continue;
        }
        let status = head.status();
        let body = w.read_body(head.framing(), MAX_BODY)?;
        return Ok(Response { status, body });
    }
}

fn connect(addrs: &[SocketAddr], deadline: Instant) -> Result<TcpStream, ClientError> {
    let mut last = ClientError::NoAddress;
    for a in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ClientError::Timeout);
        }
        match TcpStream::connect_timeout(a, left) {
            Ok(s) => return Ok(s),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                last = ClientError::Refused
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                ) =>
            {
                last = ClientError::Timeout
            }
            Err(e) => last = ClientError::Failed(format!("connect {a}: {e}")),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    fn serve_once(reply: &'static [u8]) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            s.write_all(reply).unwrap();
        });
        a
    }

    #[test]
    fn content_length_and_chunked() {
        let a = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        let r = get(&[a], "x", "/health", &[], Duration::from_secs(2)).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
        let a = serve_once(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 NO\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nno\r\n0\r\n\r\n",
        );
        let r = get(&[a], "x", "/health", &[], Duration::from_secs(2)).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (503, &b"no"[..]));
    }

    #[test]
    fn refused_and_timeout() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        drop(l);
        assert!(get(&[a], "x", "/", &[], Duration::from_secs(1))
            .unwrap_err()
            .is_refused());
        // Accepts (backlog) but never answers.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        let t = Instant::now();
        let e = get(&[a], "x", "/", &[], Duration::from_millis(150)).unwrap_err();
        assert!(matches!(e, ClientError::Timeout), "{e}");
        assert!(t.elapsed() < Duration::from_secs(1));
        drop(l);
    }
}
