//! Blocking HTTP/1.1 message IO for the control side (probe client and admin server): a
//! deadline-bound buffered reader that hands out whole heads and reads bodies. Parsing and
//! framing are `crate::http`'s, the same as on the data plane: callers parse the head with
//! [`crate::http::RequestHead`] / [`crate::http::ResponseHead`] and pass its [`BodyFraming`]
//! here; chunked bodies go through [`ChunkedDecoder`].
//!
//! Everything here runs on control threads with std sockets, never on workers. Every read is
//! bounded by one absolute deadline so a peer that stalls cannot hold a thread past it.

#![deny(clippy::string_slice, clippy::indexing_slicing)]

use crate::http::{BodyFraming, ChunkedDecoder};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Longest head (request or status line plus headers) either side accepts.
pub const MAX_HEAD: usize = 64 * 1024;

/// A framing or IO failure while reading a message.
#[derive(Debug)]
pub enum WireError {
    /// The deadline passed.
    Timeout,
    /// The peer closed the connection before the message was complete.
    Closed,
    /// A socket error.
    Io(io::Error),
    /// The bytes are not valid HTTP/1.1 framing.
    Bad(String),
    /// The head or body is over its limit.
    TooLarge,
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Timeout => f.write_str("timed out"),
            WireError::Closed => f.write_str("connection closed early"),
            WireError::Io(e) => write!(f, "{e}"),
            WireError::Bad(m) => write!(f, "bad http: {m}"),
            WireError::TooLarge => f.write_str("message too large"),
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl From<io::Error> for WireError {
    fn from(e: io::Error) -> WireError {
        if is_timeout(&e) {
            WireError::Timeout
        } else {
            WireError::Io(e)
        }
    }
}

/// A control-side connection: plain TCP, or TLS to an `https://` upstream (rustls' blocking
/// stream; the deadlines are socket timeouts on the TCP stream underneath).
pub enum WireStream {
    /// Cleartext.
    Plain(TcpStream),
    /// TLS client connection.
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl WireStream {
    fn tcp(&self) -> &TcpStream {
        match self {
            WireStream::Plain(s) => s,
            WireStream::Tls(s) => s.get_ref(),
        }
    }
}

impl From<TcpStream> for WireStream {
    fn from(s: TcpStream) -> WireStream {
        WireStream::Plain(s)
    }
}

impl Read for WireStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            WireStream::Plain(s) => s.read(buf),
            // A peer that closes without close_notify ends the stream here as well (common
            // with `connection: close`); framing still catches a short body.
            WireStream::Tls(s) => match s.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                r => r,
            },
        }
    }
}

impl Write for WireStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            WireStream::Plain(s) => s.write(buf),
            WireStream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            WireStream::Plain(s) => s.flush(),
            WireStream::Tls(s) => s.flush(),
        }
    }
}

/// A socket with a read buffer and an absolute deadline for every operation.
pub struct Wire {
    stream: WireStream,
    buf: Vec<u8>,
    pos: usize,
    deadline: Instant,
}

impl Wire {
    /// Wraps a connected stream; every later read or write must finish before `deadline`.
    pub fn new(stream: impl Into<WireStream>, deadline: Instant) -> Wire {
        Wire {
            stream: stream.into(),
            buf: Vec::with_capacity(4096),
            pos: 0,
            deadline,
        }
    }

    /// Moves the deadline (the next keep-alive request on the same connection).
    pub fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = deadline;
    }

    fn remaining(&self) -> Result<Duration, WireError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(WireError::Timeout)
        } else {
            Ok(left)
        }
    }

    /// The buffered bytes not consumed yet.
    fn unread(&self) -> &[u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    /// Writes all of `bytes` before the deadline.
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        let mut off = 0;
        while off < bytes.len() {
            let left = self.remaining()?;
            self.stream.tcp().set_write_timeout(Some(left))?;
            match self.stream.write(bytes.get(off..).unwrap_or_default()) {
                Ok(0) => return Err(WireError::Closed),
                Ok(n) => off += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Reads more bytes into the buffer; `Ok(0)` at end of stream.
    fn fill(&mut self) -> Result<usize, WireError> {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        let left = self.remaining()?;
        self.stream.tcp().set_read_timeout(Some(left))?;
        let mut chunk = [0u8; 8192];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(n) => {
                    self.buf
                        .extend_from_slice(chunk.get(..n).unwrap_or_default());
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Reads until a whole head is buffered and returns it (bytes up to and including the blank
    /// line); `Ok(None)` when the peer closed before sending anything.
    pub fn read_head(&mut self) -> Result<Option<Vec<u8>>, WireError> {
        loop {
            let unread = self.unread();
            if let Some(i) = memchr::memmem::find(unread, b"\r\n\r\n") {
                let head = unread.get(..i + 4).unwrap_or(unread).to_vec();
                self.pos += i + 4;
                return Ok(Some(head));
            }
            if unread.len() > MAX_HEAD {
                return Err(WireError::TooLarge);
            }
            if self.fill()? == 0 {
                return if self.buf.len() == self.pos {
                    Ok(None)
                } else {
                    Err(WireError::Closed)
                };
            }
        }
    }

    /// Appends exactly `n` body bytes to `out`.
    fn read_exact_into(&mut self, mut n: usize, out: &mut Vec<u8>) -> Result<(), WireError> {
        while n > 0 {
            if self.pos == self.buf.len() && self.fill()? == 0 {
                return Err(WireError::Closed);
            }
            let take = n.min(self.buf.len() - self.pos);
            out.extend_from_slice(self.unread().get(..take).unwrap_or_default());
            self.pos += take;
            n -= take;
        }
        Ok(())
    }

    /// Reads a body framed as `framing` (from the parsed head), refusing more than `max` bytes.
    pub fn read_body(&mut self, framing: BodyFraming, max: usize) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::new();
        match framing {
            BodyFraming::None => {}
            BodyFraming::Length(n) => {
                if n > max as u64 {
                    return Err(WireError::TooLarge);
                }
                self.read_exact_into(n as usize, &mut out)?;
            }
            BodyFraming::Chunked => {
                let mut chunked = ChunkedDecoder::new();
                loop {
                    let progress = chunked
                        .decode(self.unread(), |data| out.extend_from_slice(data))
                        .map_err(|e| WireError::Bad(e.to_string()))?;
                    self.pos += progress.consumed;
                    if out.len() > max {
                        return Err(WireError::TooLarge);
                    }
                    if progress.done {
                        break;
                    }
                    if self.fill()? == 0 {
                        return Err(WireError::Closed);
                    }
                }
            }
            BodyFraming::Close => loop {
                if self.pos < self.buf.len() {
                    out.extend_from_slice(self.unread());
                    self.pos = self.buf.len();
                }
                if out.len() > max {
                    return Err(WireError::TooLarge);
                }
                if self.fill()? == 0 {
                    break;
                }
            },
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn pair(bytes: &'static [u8]) -> Wire {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.write_all(bytes).unwrap();
        });
        let s = TcpStream::connect(a).unwrap();
        t.join().unwrap();
        Wire::new(s, Instant::now() + Duration::from_secs(5))
    }

    #[test]
    fn chunked_body_with_extensions_and_trailers() {
        let mut w = pair(b"HTTP/1.1 200 OK\r\n\r\n4;x=y\r\nabcd\r\n3\r\nefg\r\n0\r\nT: v\r\n\r\n");
        w.read_head().unwrap().unwrap();
        assert_eq!(w.read_body(BodyFraming::Chunked, 100).unwrap(), b"abcdefg");
    }

    #[test]
    fn length_and_until_close() {
        let mut w = pair(b"hello world");
        assert_eq!(w.read_body(BodyFraming::Length(5), 100).unwrap(), b"hello");
        assert_eq!(w.read_body(BodyFraming::Close, 100).unwrap(), b" world");
    }

    #[test]
    fn limits() {
        let mut w = pair(b"5\r\nhello\r\n0\r\n\r\n");
        assert!(matches!(
            w.read_body(BodyFraming::Chunked, 3),
            Err(WireError::TooLarge)
        ));
    }

    #[test]
    fn bad_or_cut_chunked_body() {
        let mut w = pair(b"zz\r\nhello\r\n0\r\n\r\n");
        assert!(matches!(
            w.read_body(BodyFraming::Chunked, 100),
            Err(WireError::Bad(_))
        ));
        let mut w = pair(b"5\r\nhel");
        assert!(matches!(
            w.read_body(BodyFraming::Chunked, 100),
            Err(WireError::Closed)
        ));
    }
}
