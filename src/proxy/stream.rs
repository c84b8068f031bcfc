//! The two byte streams of an exchange, plain or TLS: the client side ([`ClientStream`]) and the
//! upstream side ([`UpstreamStream`]). Both dispatch rent-style reads and writes to a monoio
//! `TcpStream` or a [`TlsStream`](super::tls_stream::TlsStream) over one, so the relay loop is
//! the same for both.

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::TcpStream;
use monoio::BufResult;
use std::io;
use std::os::fd::{AsRawFd, RawFd};

/// Defines a plain-or-TLS stream enum that forwards monoio's rent IO to the variant it holds.
/// A read cancelled by a timeout or a `select!` may have lost bytes the kernel had already
/// handed over (plain or TLS): every caller closes the stream after a cancelled read.
macro_rules! plain_or_tls {
    ($(#[$doc:meta])* $name:ident, $tls:ty) => {
        $(#[$doc])*
        pub enum $name {
            /// Cleartext TCP.
            Plain(TcpStream),
            /// TLS over TCP (boxed: a rustls connection is large).
            Tls(Box<$tls>),
        }

        impl $name {
            /// Whether this stream is TLS.
            pub fn is_tls(&self) -> bool {
                matches!(self, $name::Tls(..))
            }
        }

        impl AsRawFd for $name {
            /// The TCP socket's fd (for peeks and the client-gone watcher).
            fn as_raw_fd(&self) -> RawFd {
                match self {
                    $name::Plain(s) => s.as_raw_fd(),
                    $name::Tls(s) => s.as_raw_fd(),
                }
            }
        }

        impl AsyncReadRent for $name {
            async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
                match self {
                    $name::Plain(s) => s.read(buf).await,
                    $name::Tls(s) => s.read(buf).await,
                }
            }

            async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
                match self {
                    $name::Plain(s) => s.readv(buf).await,
                    $name::Tls(s) => s.readv(buf).await,
                }
            }
        }

        impl AsyncWriteRent for $name {
            async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
                match self {
                    $name::Plain(s) => s.write(buf).await,
                    $name::Tls(s) => s.write(buf).await,
                }
            }

            async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
                match self {
                    $name::Plain(s) => s.writev(buf).await,
                    $name::Tls(s) => s.writev(buf).await,
                }
            }

            async fn flush(&mut self) -> io::Result<()> {
                match self {
                    $name::Plain(s) => s.flush().await,
                    $name::Tls(s) => s.flush().await,
                }
            }

            async fn shutdown(&mut self) -> io::Result<()> {
                match self {
                    $name::Plain(s) => s.shutdown().await,
                    $name::Tls(s) => s.shutdown().await,
                }
            }
        }
    };
}

plain_or_tls!(
    /// A connection to an upstream: `http://` or `https://`.
    UpstreamStream,
    super::tls_stream::ClientTls
);

plain_or_tls!(
    /// An accepted client connection: plain, or TLS when `[listen] tls_cert` is set.
    ClientStream,
    super::tls_stream::ServerTls
);
