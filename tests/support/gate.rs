//! Starting a real slotgate in-process for tests, and a scripted raw upstream that records exactly
//! what slotgate sent and answers with exactly the bytes a test chooses.

use slotgate::config::Config;
use slotgate::server::Server;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Starts slotgate on `127.0.0.1:0` (admin on `127.0.0.1:0`) with `upstreams_toml` (the
/// `[[upstream]]`, `[routing]`, `[registry]` … tables) and `[tuning]` lines.
pub fn start_gate(upstreams_toml: &str, tuning: &str) -> Server {
    let text = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\n{upstreams_toml}\n\n[tuning]\ncores = 1\n{tuning}\n"
    );
    let cfg = Config::from_toml_str(&text, None).expect("test config");
    Server::start(cfg).expect("start slotgate")
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
    /// Close the connection now (no more requests on it).
    Close,
}

/// A scripted answer: the pieces to send for one request.
pub type Script = dyn Fn(&Seen) -> Vec<Piece> + Send + Sync;

/// A raw upstream on `127.0.0.1:0`: every request on every connection is recorded and answered
/// by `script`. Keep-alive unless the script closes.
pub struct Scripted {
    /// Bound address.
    pub addr: SocketAddr,
    /// Every request received, in order.
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Connections accepted.
    pub accepted: Arc<AtomicUsize>,
}

impl Scripted {
    /// Starts the upstream.
    pub fn start(script: impl Fn(&Seen) -> Vec<Piece> + Send + Sync + 'static) -> Scripted {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let script: Arc<Script> = Arc::new(script);
        let (s2, a2) = (seen.clone(), accepted.clone());
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { continue };
                a2.fetch_add(1, Ordering::SeqCst);
                let (s3, sc) = (s2.clone(), script.clone());
                let _ = c.set_nodelay(true);
                std::thread::spawn(move || serve(c, s3, sc));
            }
        });
        Scripted {
            addr,
            seen,
            accepted,
        }
    }

    /// `http://addr/v1`.
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Serves one connection (plain, or a TLS stream from tests/tls.rs) with `script`.
pub fn serve<S: Read + Write>(mut c: S, seen: Arc<Mutex<Vec<Seen>>>, script: Arc<Script>) {
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
        seen.lock().unwrap().push(req.clone());
        for p in script(&req) {
            match p {
                Piece::Bytes(b) => {
                    if c.write_all(&b).is_err() {
                        return;
                    }
                }
                Piece::Pause(d) => std::thread::sleep(d),
                Piece::Close => return,
            }
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
