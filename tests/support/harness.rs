//! Hardening-test harness: an in-process slotgate over a config text, raw `std::net` upstreams
//! whose misbehaviour a test scripts (they capture the request head they got), the real binary
//! as a child process, and `/proc` fd counts.

#![allow(dead_code)]

use super::support::Response;
use slotgate::config::Config;
use slotgate::server::Server;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

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

/// A `[[upstream]]` table of a `remote` upstream (ready without probes) serving `models`.
pub fn remote(name: &str, url: &str, models: &[&str], extra: &str) -> String {
    let models: Vec<String> = models.iter().map(|m| format!("\"{m}\"")).collect();
    format!(
        "[[upstream]]\nname = \"{name}\"\nkind = \"remote\"\nurl = \"{url}\"\nmodels = [{}]\n{extra}\n",
        models.join(", ")
    )
}

/// A whole config: loopback front door on port 0, no admin, one core, `tuning` lines added.
pub fn config_text(upstreams: &str, tuning: &str, more: &str) -> String {
    format!(
        "[listen]\naddr = \"127.0.0.1:0\"\nadmin = \"\"\n\n[routing]\ndefault_slot = \"agent\"\n\n\
         {upstreams}\n{more}\n[tuning]\ncores = 1\n{tuning}\n"
    )
}

/// Starts an in-process slotgate on `text`.
pub fn start(text: &str) -> Server {
    let cfg = Config::from_toml_str(text, None).unwrap_or_else(|e| panic!("config: {e}\n{text}"));
    Server::start(cfg).expect("server start")
}

/// What a scripted upstream does with one accepted connection after reading the request head
/// (and a Content-Length body).
pub type Script = Arc<dyn Fn(&mut TcpStream) + Send + Sync>;

/// A raw TCP upstream on 127.0.0.1 running `script` per connection (one thread each).
pub struct RawUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Raw request heads received, in order.
    pub heads: mpsc::Receiver<Vec<u8>>,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicUsize>,
}

impl RawUpstream {
    /// Listens and serves each connection with `script`, forever (threads die with the test).
    pub fn spawn(script: impl Fn(&mut TcpStream) + Send + Sync + 'static) -> RawUpstream {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = mpsc::channel();
        let accepted = Arc::new(AtomicUsize::new(0));
        let acc = accepted.clone();
        let script: Script = Arc::new(script);
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                acc.fetch_add(1, Ordering::SeqCst);
                let tx = tx.clone();
                let script = script.clone();
                std::thread::spawn(move || {
                    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
                    if let Some(head) = read_request(&mut s) {
                        let _ = tx.send(head);
                        script(&mut s);
                    }
                });
            }
        });
        RawUpstream {
            addr,
            heads: rx,
            accepted,
        }
    }

    /// The upstream base URL.
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The next captured request head (waits up to 5 s).
    pub fn next_head(&self) -> String {
        let h = self
            .heads
            .recv_timeout(Duration::from_secs(5))
            .expect("upstream got no request");
        String::from_utf8_lossy(&h).into_owned()
    }
}

/// Reads one request head and its Content-Length body; returns the head bytes.
fn read_request(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut tmp) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    };
    let head = buf[..head_end].to_vec();
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let len: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        match s.read(&mut tmp) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
    Some(head)
}

/// Writes `bytes`, ignoring errors (the peer may be gone).
pub fn put(s: &mut TcpStream, bytes: &[u8]) {
    let _ = s.write_all(bytes);
    let _ = s.flush();
}

/// Closes with RST instead of FIN (SO_LINGER 0).
pub fn reset(s: TcpStream) {
    let sock = socket2::SockRef::from(&s);
    let _ = sock.set_linger(Some(Duration::ZERO));
    drop(s);
}

/// Blocks this upstream thread until the peer closes (a stalled upstream); bounded to 10 s.
pub fn stall(s: &mut TcpStream) {
    let mut tmp = [0u8; 64];
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        match s.read(&mut tmp) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return,
        }
    }
}

/// Open fds of process `pid` (`/proc/PID/fd`).
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Resident set of process `pid` in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A temp file removed on drop.
pub struct TempFile(pub PathBuf);

impl TempFile {
    /// Writes `text` to a fresh temp file.
    pub fn new(tag: &str, text: &str) -> TempFile {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "slotgate-hardening-{}-{tag}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&p, text).unwrap();
        TempFile(p)
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

/// Lines of `BufRead` input, for tests that stream a child's output.
pub fn lines(r: impl Read) -> impl Iterator<Item = String> {
    BufReader::new(r).lines().map_while(Result::ok)
}
