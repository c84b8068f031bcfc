//! TLS over a monoio `TcpStream` for the workers: a thin rent-IO adapter around a
//! rustls connection, used for `https://` upstreams and the TLS front door.
//!
//! It replaces `monoio-rustls`, which was unfit in three ways (DESIGN-NOTES.md "TLS stream"):
//! it held two 16 KiB zeroed buffers per connection for the connection's whole life (1,000 idle
//! TLS clients cost 52 MiB against nginx's 30), its `writev` sent only the first slice, and a
//! read cancelled by a timeout left the stream without its read buffer (a panic on the next
//! read). Here the ciphertext buffers are plain `Vec`s taken out for each socket operation (a
//! cancelled operation leaves an empty buffer, never a broken stream) and an idle connection can
//! give them back ([`TlsStream::release_idle`]).
//!
//! Ciphertext path: socket -> `rbuf` -> rustls (decrypted in its own buffer) -> caller's buffer;
//! caller's buffer -> rustls (encrypted into its record buffer) -> `wbuf` -> socket. Each
//! `write` is sealed into records and sent with one socket write; each `read` decrypts every
//! record already received that fits the caller's buffer before it waits again.

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio::BufResult;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, ConnectionCommon, ServerConfig, ServerConnection};
use std::io::{self, BufRead, Write};
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

/// Socket read size: one full TLS record (16 KiB of plaintext plus header and AEAD overhead).
const READ_CHUNK: usize = 16 * 1024 + 512;

/// A TLS session over a TCP stream: `C` is rustls' `ClientConnection` or `ServerConnection`.
pub struct TlsStream<C> {
    io: TcpStream,
    conn: C,
    /// Ciphertext read from the socket; `rbuf[rpos..]` is not yet handed to rustls.
    rbuf: Vec<u8>,
    rpos: usize,
    /// Ciphertext sealed by rustls, on its way to the socket (empty between writes).
    wbuf: Vec<u8>,
}

/// The client side of an upstream TLS connection.
pub type ClientTls = TlsStream<ClientConnection>;
/// The server side of a front-door TLS connection.
pub type ServerTls = TlsStream<ServerConnection>;

/// Completes a client handshake (SNI `name`, the config's ALPN and roots) over `io`.
pub async fn connect(
    io: TcpStream,
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
) -> io::Result<ClientTls> {
    let conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
    let mut s = TlsStream::new(io, conn);
    s.handshake().await?;
    Ok(s)
}

/// Completes a server handshake over an accepted `io`.
pub async fn accept(io: TcpStream, config: Arc<ServerConfig>) -> io::Result<ServerTls> {
    let conn = ServerConnection::new(config).map_err(io::Error::other)?;
    let mut s = TlsStream::new(io, conn);
    s.handshake().await?;
    Ok(s)
}

impl<C, SD> TlsStream<C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<SD>>,
    SD: rustls::SideData,
{
    fn new(io: TcpStream, conn: C) -> Self {
        TlsStream {
            io,
            conn,
            rbuf: Vec::new(),
            rpos: 0,
            wbuf: Vec::new(),
        }
    }

    /// The TCP stream under the session (for readiness waits; never read it directly).
    pub fn tcp(&self) -> &TcpStream {
        &self.io
    }

    /// Gives the ciphertext buffers back while the connection waits idle. Returns `false` (and
    /// keeps them) when anything is still buffered: received ciphertext or plaintext not yet
    /// read, or records not yet sent; the caller must then read instead of waiting for the socket.
    pub fn release_idle(&mut self) -> bool {
        let plaintext = match self.conn.process_new_packets() {
            Ok(state) => state.plaintext_bytes_to_read(),
            Err(_) => return false,
        };
        if plaintext > 0 || self.rpos < self.rbuf.len() || self.conn.wants_write() {
            return false;
        }
        self.rbuf = Vec::new();
        self.rpos = 0;
        self.wbuf = Vec::new();
        true
    }

    async fn handshake(&mut self) -> io::Result<()> {
        while self.conn.is_handshaking() {
            if self.conn.wants_write() {
                self.send_records().await?;
            } else if self.rpos < self.rbuf.len() {
                self.decrypt_buffered().await?;
            } else if self.fill().await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed the connection during the TLS handshake",
                ));
            }
        }
        self.send_records().await
    }

    /// Reads ciphertext from the socket into an empty `rbuf`. `Ok(0)` is the peer's EOF.
    async fn fill(&mut self) -> io::Result<usize> {
        let mut buf = std::mem::take(&mut self.rbuf);
        buf.clear();
        self.rpos = 0;
        if buf.capacity() < READ_CHUNK {
            buf.reserve_exact(READ_CHUNK);
        }
        let (res, buf) = self.io.read(buf).await;
        self.rbuf = buf;
        res
    }

    /// Hands buffered ciphertext to rustls and processes the records it completes. A protocol
    /// error sends rustls' alert (best effort) and fails with rustls' reason.
    async fn decrypt_buffered(&mut self) -> io::Result<()> {
        if let Err(e) = self.decrypt_step() {
            if self.conn.wants_write() {
                let _ = self.send_records().await;
            }
            return Err(e);
        }
        // A post-handshake message may need an answer (a key update): send it now.
        if !self.conn.is_handshaking() && self.conn.wants_write() {
            self.send_records().await?;
        }
        Ok(())
    }

    /// The synchronous part of [`Self::decrypt_buffered`].
    fn decrypt_step(&mut self) -> io::Result<()> {
        let mut pending = self.rbuf.get(self.rpos..).unwrap_or_default();
        match self.conn.read_tls(&mut pending) {
            Ok(n) => self.rpos += n,
            // rustls holds a full buffer of plaintext: nothing more to hand over now.
            Err(e) if e.kind() == io::ErrorKind::Other => return Ok(()),
            Err(e) => return Err(e),
        }
        self.process()
    }

    /// Tells rustls the socket reached EOF (it then answers `Ok(0)` after a `close_notify`, or
    /// `UnexpectedEof` without one).
    fn note_eof(&mut self) -> io::Result<()> {
        self.conn.read_tls(&mut &[][..])?;
        self.process()
    }

    /// Processes the records handed to rustls; a protocol error carries rustls' reason.
    fn process(&mut self) -> io::Result<()> {
        self.conn
            .process_new_packets()
            .map(drop)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Sends every record rustls has sealed, in one socket write.
    async fn send_records(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            self.conn.write_tls(&mut self.wbuf)?;
        }
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.wbuf);
        let (res, mut buf) = self.io.write_all(buf).await;
        buf.clear();
        self.wbuf = buf;
        res.map(|_| ())
    }

    /// Copies decrypted plaintext into `buf[at..]`; `Ok(None)` when rustls has none yet.
    fn take_plaintext<T: IoBufMut>(&mut self, buf: &mut T, at: usize) -> io::Result<Option<usize>> {
        let mut reader = self.conn.reader();
        let mut n = 0;
        loop {
            let chunk = match reader.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok((n > 0).then_some(n));
                }
                // Hand over what was read; the error comes back on the next read.
                Err(_) if n > 0 => return Ok(Some(n)),
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                // Clean close (`close_notify`) after everything was read.
                return Ok(Some(n));
            }
            let put = super::sys::buf_put(buf, at + n, chunk);
            reader.consume(put);
            n += put;
            if at + n == buf.bytes_total() {
                return Ok(Some(n));
            }
        }
    }

    /// Reads plaintext into `buf[at..]`, waiting for the socket only when nothing is decrypted.
    async fn read_plain<T: IoBufMut>(&mut self, buf: &mut T, at: usize) -> io::Result<usize> {
        if at >= buf.bytes_total() {
            return Ok(0);
        }
        loop {
            if let Some(mut n) = self.take_plaintext(buf, at)? {
                // Records already received decrypt into the room left, without another wait.
                while n > 0 && at + n < buf.bytes_total() && self.rpos < self.rbuf.len() {
                    if self.decrypt_step().is_err() {
                        break;
                    }
                    match self.take_plaintext(buf, at + n) {
                        Ok(Some(m)) if m > 0 => n += m,
                        _ => break,
                    }
                }
                return Ok(n);
            }
            if self.rpos < self.rbuf.len() {
                self.decrypt_buffered().await?;
            } else if self.fill().await? == 0 {
                self.note_eof()?;
            }
        }
    }
}

impl<C> AsRawFd for TlsStream<C> {
    fn as_raw_fd(&self) -> RawFd {
        self.io.as_raw_fd()
    }
}

impl<C, SD> AsyncReadRent for TlsStream<C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<SD>>,
    SD: rustls::SideData,
{
    async fn read<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        let res = self.read_plain(&mut buf, 0).await;
        (res, buf)
    }

    async fn readv<T: IoVecBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        // Into the first slice only, like a short read.
        let Some(mut first) = super::sys::first_iovec_mut(&mut buf) else {
            return (Ok(0), buf);
        };
        let res = self.read_plain(&mut first, 0).await;
        if let Ok(n) = res {
            super::sys::set_iovec_init(&mut buf, n);
        }
        (res, buf)
    }
}

impl<C, SD> AsyncWriteRent for TlsStream<C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<SD>>,
    SD: rustls::SideData,
{
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        let n = match self.conn.writer().write(super::sys::buf_bytes(&buf)) {
            Ok(n) => n,
            Err(e) => return (Err(e), buf),
        };
        let res = self.send_records().await;
        (res.map(|()| n), buf)
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // Every slice is sealed, then all records leave in one socket write.
        let mut n = 0;
        let mut failed = None;
        super::sys::for_each_iovec(&buf, |slice| match self.conn.writer().write(slice) {
            Ok(k) => {
                n += k;
                k == slice.len()
            }
            Err(e) => {
                failed = Some(e);
                false
            }
        });
        if let Some(e) = failed.filter(|_| n == 0) {
            return (Err(e), buf);
        }
        let res = self.send_records().await;
        (res.map(|()| n), buf)
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.send_records().await?;
        self.io.flush().await
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.conn.send_close_notify();
        self.send_records().await?;
        self.io.shutdown().await
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::string_slice)] // tests: a panic is a failure
mod tests {
    use super::*;
    use monoio::net::TcpListener;
    use std::time::Duration;

    /// A server and a client config sharing a throwaway CA (rcgen), for `localhost`.
    fn configs() -> (Arc<ServerConfig>, Arc<ClientConfig>) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        let dir = std::env::temp_dir().join(format!(
            "slotgate-tls-stream-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = |n: &str| dir.join(n);
        std::fs::write(path("ca.pem"), ca_cert.pem()).unwrap();
        std::fs::write(path("cert.pem"), leaf.pem()).unwrap();
        std::fs::write(path("key.pem"), leaf_key.serialize_pem()).unwrap();
        let server = crate::tls::server_config(&path("cert.pem"), &path("key.pem")).unwrap();
        let client = crate::tls::client_config(Some(&path("ca.pem")), false).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        (server, client)
    }

    fn run<F: std::future::Future>(f: F) -> F::Output {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    /// A connected client/server pair over loopback.
    async fn pair() -> (ClientTls, ServerTls) {
        let (server_cfg, client_cfg) = configs();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = monoio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            accept(tcp, server_cfg).await.unwrap()
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let client = connect(tcp, client_cfg, name).await.unwrap();
        (client, server.await)
    }

    async fn read_exact(s: &mut impl AsyncReadRent, n: usize, chunk: usize) -> Vec<u8> {
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            let (res, buf) = s.read(Vec::with_capacity(chunk)).await;
            let k = res.unwrap();
            assert!(k > 0, "early EOF after {} bytes", got.len());
            got.extend_from_slice(&buf);
        }
        got
    }

    #[test]
    fn large_transfers_are_byte_exact_both_ways() {
        run(async {
            let (mut client, mut server) = pair().await;
            let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
            let expect = data.clone();
            // Server: read it all through 40 KiB buffers, then send it back in one write.
            let echo = monoio::spawn(async move {
                let got = read_exact(&mut server, 1_000_000, 40 * 1024).await;
                let (res, _) = server.write_all(got).await;
                res.unwrap();
                // Then the client's close_notify reads as a clean EOF.
                let (res, _) = server.read(Vec::with_capacity(16)).await;
                assert_eq!(res.unwrap(), 0);
            });
            // Client: one vectored write of three slices (it may take only a prefix: rustls
            // buffers at most 64 KiB of records), the rest in one write; read the echo through
            // small buffers (many reads per record). monoio's `write_vectored_all` is not used:
            // in 0.2.4 it does not advance a partly written slice (DESIGN-NOTES.md).
            let slices = vec![
                data[..1].to_vec(),
                data[1..30_000].to_vec(),
                data[30_000..300_000].to_vec(),
            ];
            let (res, _) = client.writev(monoio::buf::VecBuf::from(slices)).await;
            let n = res.unwrap();
            assert!(n >= 30_000, "the first two slices fit: {n}");
            let (res, _) = client.write_all(data[n..].to_vec()).await;
            res.unwrap();
            let got = read_exact(&mut client, expect.len(), 1000).await;
            assert!(got == expect, "echo differs");
            client.shutdown().await.unwrap();
            echo.await;
        });
    }

    #[test]
    fn a_cancelled_read_leaves_a_usable_stream() {
        run(async {
            let (mut client, mut server) = pair().await;
            // Nothing to read: the timeout drops the read in flight.
            let r = monoio::time::timeout(
                Duration::from_millis(20),
                client.read(Vec::with_capacity(64)),
            )
            .await;
            assert!(r.is_err(), "no data yet: the read times out");
            let (res, _) = server.write_all(b"after the timeout".to_vec()).await;
            res.unwrap();
            let got = read_exact(&mut client, 17, 64).await;
            assert_eq!(got, b"after the timeout");
        });
    }

    #[test]
    fn release_idle_keeps_buffers_while_bytes_wait() {
        run(async {
            let (mut client, mut server) = pair().await;
            // Two messages arrive in one socket read; the first read takes only 3 bytes.
            let (res, _) = server.write_all(b"one".to_vec()).await;
            res.unwrap();
            let (res, _) = server.write_all(b"two".to_vec()).await;
            res.unwrap();
            monoio::time::sleep(Duration::from_millis(20)).await;
            let got = read_exact(&mut client, 3, 3).await;
            assert_eq!(got, b"one");
            assert!(!client.release_idle(), "undelivered bytes keep the buffers");
            let got = read_exact(&mut client, 3, 3).await;
            assert_eq!(got, b"two");
            assert!(client.release_idle(), "nothing buffered: released");
            assert_eq!(client.rbuf.capacity(), 0);
            // And the stream still works after giving its buffers back.
            let (res, _) = server.write_all(b"three".to_vec()).await;
            res.unwrap();
            assert_eq!(read_exact(&mut client, 5, 64).await, b"three");
        });
    }
}
