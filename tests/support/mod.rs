//! Shared integration-test helpers: a raw HTTP/1.1 client over std `TcpStream` that reads
//! Content-Length, chunked and close-delimited responses, a streaming reader, and deadline waits.
//!
//! The client is deliberately independent of slotgate's own framing code (only httparse for the
//! head) so tests check the server against a second implementation.

#![allow(dead_code)]

pub mod gate;
pub mod pki;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Default socket timeout so a broken server fails a test instead of hanging it.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// One HTTP response as received.
#[derive(Debug, Clone, Default)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// For chunked bodies, each chunk's payload in order (lets tests check event-per-chunk).
    pub chunks: Vec<Vec<u8>>,
    /// Every byte of this response as it came off the wire (head included).
    pub raw: Vec<u8>,
    /// Whether the body ended properly (length reached, terminating chunk seen, or EOF for a
    /// close-delimited body). False when the server cut the response.
    pub complete: bool,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8 text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON (panics with the body in the message when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    /// Whether the response was sent with `Transfer-Encoding: chunked`.
    pub fn is_chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }
}

/// A client connection that can carry several requests (keep-alive) and read incrementally.
pub struct Conn {
    /// The socket, for tests that need to shut it down or set options.
    pub stream: TcpStream,
    /// Bytes received but not yet consumed by a response.
    pending: Vec<u8>,
    eof: bool,
}

impl Conn {
    /// Connects with [`IO_TIMEOUT`] read/write timeouts.
    pub fn connect(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            stream,
            pending: Vec::new(),
            eof: false,
        }
    }

    /// Writes raw bytes.
    pub fn send(&mut self, raw: &[u8]) {
        self.stream.write_all(raw).expect("send");
    }

    /// Sends a request and reads its response.
    pub fn request(&mut self, raw: &[u8]) -> Response {
        self.send(raw);
        self.read_response()
    }

    /// Reads more bytes into `pending`; false on EOF or error.
    fn fill(&mut self) -> bool {
        if self.eof {
            return false;
        }
        let mut tmp = [0u8; 16384];
        match self.stream.read(&mut tmp) {
            Ok(0) | Err(_) => {
                self.eof = true;
                false
            }
            Ok(n) => {
                self.pending.extend_from_slice(&tmp[..n]);
                true
            }
        }
    }

    /// Reads one response (skipping 1xx interim heads); for a response to HEAD use
    /// [`Conn::read_response_to`]. Bytes after it stay buffered for the next call.
    pub fn read_response(&mut self) -> Response {
        self.read_response_to(false)
    }

    /// Reads one response; `head_request` marks a response that has no body whatever it says.
    pub fn read_response_to(&mut self, head_request: bool) -> Response {
        loop {
            let mut resp = Response::default();
            let head_len = loop {
                let mut headers = [httparse::EMPTY_HEADER; 128];
                let mut r = httparse::Response::new(&mut headers);
                match r.parse(&self.pending) {
                    Ok(httparse::Status::Complete(n)) => {
                        resp.status = r.code.unwrap_or(0);
                        resp.reason = r.reason.unwrap_or("").to_string();
                        resp.headers = r
                            .headers
                            .iter()
                            .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into()))
                            .collect();
                        break n;
                    }
                    Ok(httparse::Status::Partial) => {
                        if !self.fill() {
                            resp.raw = std::mem::take(&mut self.pending);
                            return resp;
                        }
                    }
                    Err(e) => panic!(
                        "bad response head ({e}): {:?}",
                        String::from_utf8_lossy(&self.pending)
                    ),
                }
            };
            if (100..200).contains(&resp.status) && resp.status != 101 {
                self.pending.drain(..head_len);
                continue;
            }
            let no_body = head_request || resp.status == 204 || resp.status == 304;
            let length = resp
                .header("content-length")
                .map(|v| v.trim().parse::<usize>().expect("content-length"));
            let used = if no_body {
                resp.complete = true;
                head_len
            } else if resp.is_chunked() {
                self.read_chunked(head_len, &mut resp)
            } else if let Some(n) = length {
                while self.pending.len() < head_len + n && self.fill() {}
                let end = (head_len + n).min(self.pending.len());
                resp.body = self.pending[head_len..end].to_vec();
                resp.complete = end == head_len + n;
                end
            } else {
                while self.fill() {}
                resp.body = self.pending[head_len..].to_vec();
                resp.complete = true;
                self.pending.len()
            };
            resp.raw = self.pending.drain(..used).collect();
            return resp;
        }
    }

    /// De-chunks from `pending[start..]`; returns the bytes used.
    fn read_chunked(&mut self, start: usize, resp: &mut Response) -> usize {
        let mut pos = start;
        loop {
            // Size line.
            let line_end = loop {
                if let Some(i) = find(&self.pending[pos..], b"\r\n") {
                    break pos + i;
                }
                if !self.fill() {
                    return self.pending.len();
                }
            };
            let line = std::str::from_utf8(&self.pending[pos..line_end]).expect("size line");
            let size_str = line.split(';').next().unwrap().trim();
            let size = usize::from_str_radix(size_str, 16)
                .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
            pos = line_end + 2;
            if size == 0 {
                // Trailers until an empty line.
                loop {
                    let end = loop {
                        if let Some(i) = find(&self.pending[pos..], b"\r\n") {
                            break pos + i;
                        }
                        if !self.fill() {
                            return self.pending.len();
                        }
                    };
                    let empty = end == pos;
                    pos = end + 2;
                    if empty {
                        resp.complete = true;
                        return pos;
                    }
                }
            }
            while self.pending.len() < pos + size + 2 {
                if !self.fill() {
                    let avail = self.pending.len().min(pos + size);
                    resp.body.extend_from_slice(&self.pending[pos..avail]);
                    return self.pending.len();
                }
            }
            let data = &self.pending[pos..pos + size];
            resp.body.extend_from_slice(data);
            resp.chunks.push(data.to_vec());
            assert_eq!(
                &self.pending[pos + size..pos + size + 2],
                b"\r\n",
                "chunk CRLF"
            );
            pos += size + 2;
        }
    }

    /// Returns bytes as they arrive (buffered ones first), waiting at most `timeout`.
    /// An empty vector means EOF; `Err` with `WouldBlock`/`TimedOut` means nothing arrived.
    pub fn read_some(&mut self, timeout: Duration) -> io::Result<Vec<u8>> {
        if !self.pending.is_empty() {
            return Ok(std::mem::take(&mut self.pending));
        }
        if self.eof {
            return Ok(Vec::new());
        }
        self.stream.set_read_timeout(Some(timeout))?;
        let mut tmp = [0u8; 16384];
        let res = self.stream.read(&mut tmp);
        self.stream.set_read_timeout(Some(IO_TIMEOUT))?;
        match res {
            Ok(0) => {
                self.eof = true;
                Ok(Vec::new())
            }
            Ok(n) => Ok(tmp[..n].to_vec()),
            Err(e) => Err(e),
        }
    }

    /// Reads raw bytes until they contain `needle` or `timeout` passes; returns what was read
    /// (ownership of those bytes moves to the caller).
    pub fn read_until(&mut self, needle: &[u8], timeout: Duration) -> Vec<u8> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        while find(&got, needle).is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.read_some(left) {
                Ok(b) if b.is_empty() => break,
                Ok(b) => got.extend_from_slice(&b),
                Err(_) => break,
            }
        }
        got
    }

    /// Reads until the bytes received but not yet consumed contain `needle` (true) or `timeout`
    /// passes (false); nothing is consumed, so [`Conn::read_response`] still sees it all.
    pub fn buffer_until(&mut self, needle: &[u8], timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while find(&self.pending, needle).is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.eof {
                return false;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let more = self.fill();
            self.stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            if !more {
                return false;
            }
        }
        true
    }

    /// Waits until the server closes the connection (EOF or reset), discarding any bytes;
    /// true if it did within `timeout`.
    pub fn wait_closed(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match self.read_some(left) {
                Ok(b) if b.is_empty() => return true,
                Ok(_) => {}
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    return false
                }
                Err(_) => return true,
            }
        }
    }

    /// Closes both directions now.
    pub fn close(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// Opens a connection, sends `raw`, reads one response.
pub fn http_request(addr: SocketAddr, raw: &[u8]) -> Response {
    Conn::connect(addr).request(raw)
}

/// `GET path` on a fresh connection.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    http_request(addr, get_raw(path).as_bytes())
}

/// `POST path` with a JSON body on a fresh connection.
pub fn post_json(addr: SocketAddr, path: &str, body: &str) -> Response {
    http_request(addr, post_raw(path, body, &[]).as_bytes())
}

/// A keep-alive GET request.
pub fn get_raw(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n")
}

/// A keep-alive POST with a Content-Length JSON body and extra header lines (`"Name: value"`).
pub fn post_raw(path: &str, body: &str, extra: &[&str]) -> String {
    let mut s = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in extra {
        s.push_str(h);
        s.push_str("\r\n");
    }
    s.push_str("\r\n");
    s.push_str(body);
    s
}

/// A POST whose body is sent chunked, split into `parts`.
pub fn post_chunked_raw(path: &str, parts: &[&str]) -> String {
    let mut s = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    for p in parts {
        s.push_str(&format!("{:x}\r\n{p}\r\n", p.len()));
    }
    s.push_str("0\r\n\r\n");
    s
}

/// The `data:` payloads of an SSE body, in order.
pub fn sse_data(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .split("\n\n")
        .filter_map(|ev| ev.strip_prefix("data: ").map(str::to_string))
        .collect()
}

/// The streamed text of a chat-completion SSE body: every event's `delta.content`, joined.
pub fn sse_text(body: &[u8]) -> String {
    sse_data(body)
        .iter()
        .filter(|e| e.as_str() != "[DONE]")
        .filter_map(|e| {
            serde_json::from_str::<serde_json::Value>(e).ok()?["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

/// The mock's text for `n` tokens (`tok0 tok1 ...`).
pub fn mock_text(n: usize) -> String {
    (0..n).map(|i| format!("tok{i} ")).collect()
}

/// Polls `cond` until it holds or `timeout` passes; true if it held. The short sleeps here are
/// polling intervals, not synchronisation: the condition decides.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(200);
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The Python the tests drive real clients and servers with: `$SLOTGATE_PYTHON`, else the
/// virtual environment `.ci/run` creates (`~/.cache/slotgate-ci-venv`), else `python3`.
pub fn python() -> String {
    if let Some(p) = std::env::var_os("SLOTGATE_PYTHON") {
        return p.to_string_lossy().into_owned();
    }
    if let Some(home) = std::env::var_os("HOME") {
        let venv = std::path::Path::new(&home).join(".cache/slotgate-ci-venv/bin/python");
        if venv.exists() {
            return venv.to_string_lossy().into_owned();
        }
    }
    "python3".into()
}

/// A free loopback port (bound, then released for a child to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
