//! Running slotgate for tests: in-process over a config text, or the real binary as a child
//! process; the config tables they take; a scripted raw upstream (plain or TLS) that records
//! exactly what slotgate sent and answers with exactly the bytes, pauses and faults a test
//! chooses; and the checks on what comes back (error envelope, `/proc` fd counts).

use super::Response;
use parking_lot::Mutex;
use slotgate::config::Config;
use slotgate::server::Server;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Starts an in-process slotgate on the config `text`.
pub fn start(text: &str) -> Server {
    let cfg = Config::from_toml_str(text, None).unwrap_or_else(|e| panic!("config: {e}\n{text}"));
    Server::start(cfg).expect("start slotgate")
}

/// Starts slotgate on `127.0.0.1:0` (admin on `127.0.0.1:0`) with `upstreams_toml` (the
/// `[[upstream]]`, `[routing]`, `[registry]` … tables) and `[tuning]` lines.
pub fn start_gate(upstreams_toml: &str, tuning: &str) -> Server {
    start(&format!(
        "[listen]\naddr = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\n{upstreams_toml}\n\n[tuning]\ncores = 1\n{tuning}\n"
    ))
}

/// The proxy drivers a test runs under: `io_uring`, and `epoll` beside it.
pub const DRIVERS: [&str; 2] = ["io_uring", "epoll"];

/// The `[tuning]` line that selects `driver`. `io_uring` is asked for explicitly (the server
/// refuses to start without it); where it is not available the test runs on `epoll` instead,
/// unless `SLOTGATE_REQUIRE_URING=1` (CI sets it), which makes that a failure.
pub fn driver_tuning(driver: &str) -> String {
    if driver == "epoll" {
        return "driver = \"epoll\"".into();
    }
    if slotgate::proxy::worker::uring_available() {
        return "driver = \"io_uring\"".into();
    }
    assert!(
        std::env::var("SLOTGATE_REQUIRE_URING").as_deref() != Ok("1"),
        "SLOTGATE_REQUIRE_URING=1 but io_uring is not available here (kernel too old, \
         io_uring_disabled, or a seccomp profile): an *_io_uring test would run on epoll"
    );
    "driver = \"epoll\"".into()
}

/// A whole config: loopback front door on port 0, no admin, default slot `agent`, one core,
/// `upstreams` and `more` tables and `tuning` lines added.
pub fn config_text(upstreams: &str, tuning: &str, more: &str) -> String {
    format!(
        "[listen]\naddr = \"127.0.0.1:0\"\nadmin = \"\"\n\n[routing]\ndefault_slot = \"agent\"\n\n\
         {upstreams}\n{more}\n[tuning]\ncores = 1\n{tuning}\n"
    )
}

/// An `[[upstream]]` table; `extra` lines go inside it (`ca_file`, `models`, `auth` …).
pub fn upstream(name: &str, kind: &str, url: &str, extra: &str) -> String {
    format!("[[upstream]]\nname = \"{name}\"\nkind = \"{kind}\"\nurl = \"{url}\"\n{extra}\n")
}

/// A `remote` upstream with a static model list (always ready, never probed) and `extra` lines.
pub fn remote(name: &str, url: &str, models: &[&str], extra: &str) -> String {
    let models: Vec<String> = models.iter().map(|m| format!("\"{m}\"")).collect();
    upstream(
        name,
        "remote",
        url,
        &format!("models = [{}]\n{extra}", models.join(", ")),
    )
}

/// Asserts `resp` is slotgate's JSON error envelope with `status` and `code`.
pub fn assert_error(resp: &Response, status: u16, code: &str) {
    assert_eq!(
        resp.status,
        status,
        "want {status} {code}, got {} {:?}",
        resp.status,
        resp.text()
    );
    assert_eq!(
        resp.header("content-type"),
        Some("application/json"),
        "error content type"
    );
    let v = resp.json();
    assert_eq!(v["error"]["code"], code, "body {}", resp.text());
    assert!(v["error"]["type"].is_string());
    assert!(v["error"]["message"].is_string());
    assert!(v["error"]["details"].is_object());
}

/// One request as a scripted upstream received it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The head, as raw text.
    pub head: String,
    /// The body bytes (Content-Length framing).
    pub body: Vec<u8>,
}

impl Seen {
    /// The request line.
    pub fn request_line(&self) -> &str {
        self.head.lines().next().unwrap_or("")
    }
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// A step of a scripted answer.
#[derive(Debug, Clone)]
pub enum Piece {
    /// Write these bytes.
    Bytes(Vec<u8>),
    /// Wait this long.
    Pause(Duration),
    /// Close the connection now (FIN; no more requests on it).
    Close,
    /// Close the connection now with RST instead of FIN (SO_LINGER 0).
    Reset,
    /// Read and discard until the peer closes (a stalled upstream; at most 10 s), then close.
    Stall,
    /// Run this before the next piece (a test's own latch, say: a stream held open mid-body).
    Call(Hook),
}

/// A function a [`Piece::Call`] runs on the connection's thread.
#[derive(Clone)]
pub struct Hook(pub Arc<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

/// A scripted answer: the pieces to send for one request.
pub type Script = dyn Fn(&Seen) -> Vec<Piece> + Send + Sync;

/// A connection a scripted upstream serves: plain TCP, or TLS over it (tests/it/tls.rs).
pub trait Wire: Read + Write + Send + 'static {
    /// The TCP socket underneath (for the socket options of [`Piece::Reset`] and [`Piece::Stall`]).
    fn tcp(&self) -> &TcpStream;
}

impl Wire for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Wire for rustls::StreamOwned<rustls::ServerConnection, TcpStream> {
    fn tcp(&self) -> &TcpStream {
        &self.sock
    }
}

/// A raw upstream on `127.0.0.1:0`: every request on every connection is recorded and answered
/// by `script`. Keep-alive unless the script closes.
pub struct Scripted {
    /// Bound address.
    pub addr: SocketAddr,
    /// Every request received, in order.
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Connections accepted.
    pub accepted: Arc<AtomicUsize>,
    /// Connections that ended (closed by slotgate, or by the script).
    pub ended: Arc<AtomicUsize>,
}

impl Scripted {
    /// Starts a plain-TCP upstream.
    pub fn start(script: impl Fn(&Seen) -> Vec<Piece> + Send + Sync + 'static) -> Scripted {
        Scripted::start_on(|c| c, script)
    }

    /// Starts an upstream that serves each accepted socket as `wrap` makes it (TLS, say).
    pub fn start_on<S: Wire>(
        wrap: impl Fn(TcpStream) -> S + Send + 'static,
        script: impl Fn(&Seen) -> Vec<Piece> + Send + Sync + 'static,
    ) -> Scripted {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let ended = Arc::new(AtomicUsize::new(0));
        let script: Arc<Script> = Arc::new(script);
        let (s2, a2, e2) = (seen.clone(), accepted.clone(), ended.clone());
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { continue };
                a2.fetch_add(1, Ordering::SeqCst);
                let (s3, sc, e3) = (s2.clone(), script.clone(), e2.clone());
                let _ = c.set_nodelay(true);
                let c = wrap(c);
                std::thread::spawn(move || {
                    serve(c, &s3, &*sc);
                    e3.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Scripted {
            addr,
            seen,
            accepted,
            ended,
        }
    }

    /// `http://addr/v1`.
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().clone()
    }
}

/// Serves one connection with `script` until the peer or the script ends it.
fn serve<S: Wire>(mut c: S, seen: &Mutex<Vec<Seen>>, script: &Script) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 65536];
    loop {
        // Read one head and its Content-Length body.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match c.read(&mut tmp) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.trim()
                    .eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buf.len() < head_end + len {
            match c.read(&mut tmp) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        }
        let req = Seen {
            head,
            body: buf[head_end..head_end + len].to_vec(),
        };
        buf.drain(..head_end + len);
        seen.lock().push(req.clone());
        for p in script(&req) {
            match p {
                Piece::Bytes(b) => {
                    if c.write_all(&b).and_then(|()| c.flush()).is_err() {
                        return;
                    }
                }
                Piece::Pause(d) => std::thread::sleep(d),
                Piece::Close => return,
                Piece::Reset => {
                    let _ = socket2::SockRef::from(c.tcp()).set_linger(Some(Duration::ZERO));
                    return;
                }
                Piece::Stall => return stall(&mut c),
                Piece::Call(h) => (h.0)(),
            }
        }
    }
}

/// Reads and discards until the peer closes, for at most 10 s.
fn stall<S: Wire>(c: &mut S) {
    let mut tmp = [0u8; 64];
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() || c.tcp().set_read_timeout(Some(left)).is_err() {
            return;
        }
        match c.read(&mut tmp) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return,
        }
    }
}

/// A complete `200` JSON response with Content-Length.
pub fn json_response(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-upstream: scripted\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Open fds of process `pid` (`/proc/PID/fd`).
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// A temp file removed on drop.
pub struct TempFile(pub PathBuf);

impl TempFile {
    /// Writes `text` to a fresh temp file whose name ends in `tag`.
    pub fn new(tag: &str, text: &str) -> TempFile {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "slotgate-test-{}-{}-{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let f = TempFile(p);
        f.write(text);
        f
    }

    /// Replaces the contents with `text`.
    pub fn write(&self, text: &str) {
        std::fs::write(&self.0, text).unwrap();
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The real `slotgate` binary serving a config file, stderr captured to a file.
pub struct Binary {
    /// The child.
    pub child: Child,
    /// The front door.
    pub addr: SocketAddr,
    /// The admin listener, when the log named one.
    pub admin: Option<SocketAddr>,
    /// The captured stderr.
    pub log: TempFile,
    _config: TempFile,
}

impl Binary {
    /// Runs `sh -c "<prefix> exec slotgate --log-level L serve --config F"` with `envs`; waits for
    /// the "listening" log line (up to 10 s).
    pub fn start(config: &str, level: &str, prefix: &str, envs: &[(&str, &str)]) -> Binary {
        let cfg = TempFile::new("cfg.toml", config);
        let log = TempFile::new("log", "");
        let bin = env!("CARGO_BIN_EXE_slotgate");
        let cmd = format!(
            "{prefix} exec '{bin}' --log-level {level} serve --config '{}' 2>>'{}'",
            cfg.0.display(),
            log.0.display()
        );
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        for (k, v) in envs {
            c.env(k, v);
        }
        let mut child = c.spawn().expect("spawn slotgate");
        let deadline = Instant::now() + Duration::from_secs(10);
        let (addr, admin) = loop {
            let text = strip_ansi(&std::fs::read_to_string(&log.0).unwrap_or_default());
            let found = text
                .lines()
                .find(|l| l.contains("slotgate listening"))
                .and_then(|l| Some((field_addr(l, "addr=")?, field_addr(l, "admin=Some("))));
            if let Some(a) = found {
                break a;
            }
            if Instant::now() >= deadline {
                // Never leave the child running when the test fails here.
                let _ = child.kill();
                let _ = child.wait();
                panic!("binary did not start: {text}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Binary {
            child,
            addr,
            admin,
            log,
            _config: cfg,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Replaces the config file's text (the next reload reads it).
    pub fn rewrite_config(&self, text: &str) {
        self._config.write(text);
    }

    /// Everything logged so far (colour codes removed).
    pub fn log_text(&self) -> String {
        strip_ansi(&std::fs::read_to_string(&self.log.0).unwrap_or_default())
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn field_addr(line: &str, key: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(key)? + key.len()..];
    let end = rest.find([' ', ')', ',']).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\u{1b}' {
            for d in it.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
