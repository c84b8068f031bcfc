//! The few raw socket calls monoio does not offer: peeking for a peer's close, duplicating an fd
//! for a read-side watcher, and a cancellable non-blocking connect. All `unsafe` of the data plane
//! lives here.

#![allow(unsafe_code)] // every use carries a SAFETY note

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};

/// What a non-blocking one-byte peek saw on a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peek {
    /// Bytes are waiting (a pipelined request, or an unexpected upstream byte).
    Data,
    /// The peer closed its side (orderly EOF).
    Eof,
    /// Nothing to read yet: the peer is silent and still there.
    Empty,
    /// The socket failed (reset).
    Error,
}

/// Peeks one byte without blocking and without consuming it.
pub fn peek(fd: RawFd) -> Peek {
    let mut b = 0u8;
    // SAFETY: `fd` is a socket owned by the caller for the duration of the call, and the buffer is
    // one valid, writable byte on our stack.
    let n = unsafe {
        libc::recv(
            fd,
            (&mut b as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        1.. => Peek::Data,
        0 => Peek::Eof,
        _ => match io::Error::last_os_error().raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) => Peek::Empty,
            _ => Peek::Error,
        },
    }
}

/// Whether the peer shut its sending side down or the socket failed (`POLLRDHUP`/`POLLHUP`/
/// `POLLERR`), even with unread bytes still queued in front of the FIN.
pub fn peer_hung_up(fd: RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: `p` is one valid pollfd on our stack for a socket the caller owns; timeout 0 never
    // blocks.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

/// Duplicates a socket fd into a second monoio stream used only to wait for readability, so a
/// response can be written on the original while the read side is watched for the client leaving.
pub fn dup_stream(fd: RawFd) -> io::Result<monoio::net::TcpStream> {
    // SAFETY: `fd` is a valid open socket owned by the caller; `fcntl(F_DUPFD_CLOEXEC)` returns a
    // new fd (or -1) that nothing else owns, so handing it to `from_raw_fd` transfers ownership.
    let nfd = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if nfd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: see above: `nfd` is a fresh fd we own.
    let std = unsafe { std::net::TcpStream::from_raw_fd(nfd) };
    monoio::net::TcpStream::from_std(std)
}

/// Starts a non-blocking connect. Returns the socket, connected or in progress. Unlike monoio's
/// own connect, dropping the caller's wait never leaks the fd (it is owned here from the start).
pub fn start_connect(addr: SocketAddr) -> io::Result<std::net::TcpStream> {
    let domain = socket2::Domain::for_address(addr);
    let s = socket2::Socket::new(
        domain,
        socket2::Type::STREAM.nonblocking().cloexec(),
        Some(socket2::Protocol::TCP),
    )?;
    match s.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(s.into())
}

/// The pending error of a socket after a non-blocking connect (`SO_ERROR`).
pub fn take_error(s: &impl AsRawFd) -> io::Result<()> {
    let fd = BorrowedFdRef(s.as_raw_fd());
    let r = socket2::SockRef::from(&fd);
    match r.take_error()? {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Sets `TCP_NODELAY`.
pub fn set_nodelay(s: &impl AsRawFd) -> io::Result<()> {
    let fd = BorrowedFdRef(s.as_raw_fd());
    let r = socket2::SockRef::from(&fd);
    r.set_nodelay(true)
}

/// An fd borrowed for one socket2 call.
struct BorrowedFdRef(RawFd);

impl std::os::fd::AsFd for BorrowedFdRef {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        // SAFETY: the fd is owned by a live stream the caller holds for the duration of this
        // borrow (every use above is a single synchronous call).
        unsafe { std::os::fd::BorrowedFd::borrow_raw(self.0) }
    }
}

/// The CPUs this process may run on (respects `taskset`), in ascending order.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: `cpu_set_t` is plain data; zeroed is a valid empty set, and sched_getaffinity writes
    // at most `size_of::<cpu_set_t>()` bytes into it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Marks `fd` close-on-exec. io_uring accepts do not, and a child process (a hook, a test
/// harness, `sh -c`) would otherwise inherit client sockets and keep them open after we close
/// ours: the client would never see EOF.
pub fn set_cloexec(fd: RawFd) {
    // SAFETY: `fd` is an open descriptor owned by the caller; F_SETFD only changes its flags.
    unsafe {
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
    }
}

/// Returns freed heap memory to the kernel (glibc keeps it in its arenas otherwise, so RSS would
/// stay at the peak of a past burst).
pub fn trim_heap() {
    // SAFETY: `malloc_trim` only walks the allocator's own free lists; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The initialised bytes of a rent-IO buffer (what a write sends).
pub fn buf_bytes<T: monoio::buf::IoBuf>(buf: &T) -> &[u8] {
    // SAFETY: `IoBuf` guarantees `read_ptr` points at `bytes_init` initialised bytes that stay
    // valid and unchanged while the buffer is borrowed.
    unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) }
}

/// Copies as much of `src` as fits into `buf` at offset `at` and marks `buf` initialised up to
/// the end of the copy. Returns how many bytes were copied.
pub fn buf_put<T: monoio::buf::IoBufMut>(buf: &mut T, at: usize, src: &[u8]) -> usize {
    let total = buf.bytes_total();
    let n = src.len().min(total.saturating_sub(at));
    // SAFETY: `write_ptr` is valid for `bytes_total` bytes and `at + n <= bytes_total`; `src` is
    // another allocation (rustls' plaintext buffer), so the ranges do not overlap. The bytes up
    // to `at` were initialised by earlier copies into the same buffer (callers fill from 0).
    unsafe {
        std::ptr::copy_nonoverlapping(src.as_ptr(), buf.write_ptr().add(at), n);
        buf.set_init(at + n);
    }
    n
}

/// The first slice of a vectored read buffer, as a plain rent-IO buffer.
pub fn first_iovec_mut<T: monoio::buf::IoVecBufMut>(buf: &mut T) -> Option<monoio::buf::RawBuf> {
    // SAFETY: the `RawBuf` points into `buf`, which the caller keeps alive (and does not move)
    // for as long as it uses the `RawBuf`: both live in one `readv` call.
    unsafe { monoio::buf::RawBuf::new_from_iovec_mut(buf) }
}

/// Marks `n` bytes of a vectored read buffer initialised (after a read into its first slice).
pub fn set_iovec_init<T: monoio::buf::IoVecBufMut>(buf: &mut T, n: usize) {
    // SAFETY: the caller has just written `n` bytes into the buffer's first slice.
    unsafe { buf.set_init(n) }
}

/// Calls `f` on each slice of a vectored write buffer, in order, until it returns `false`.
pub fn for_each_iovec<T: monoio::buf::IoVecBuf>(buf: &T, mut f: impl FnMut(&[u8]) -> bool) {
    for i in 0..buf.read_iovec_len() {
        // SAFETY: `IoVecBuf` guarantees `read_iovec_ptr` points at `read_iovec_len` valid iovecs,
        // each describing initialised memory that lives as long as `buf` is borrowed.
        let slice = unsafe {
            let v = *buf.read_iovec_ptr().add(i);
            std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len)
        };
        if !f(slice) {
            return;
        }
    }
}

/// Sends `bytes` on the socket `fd` at once, without waiting (`MSG_DONTWAIT | MSG_NOSIGNAL`):
/// the last words of a connection whose task panicked. Returns whether all of it went.
pub fn send_now(fd: RawFd, bytes: &[u8]) -> bool {
    // SAFETY: `bytes` is a valid slice for its length; `fd` is owned by a connection task the
    // caller has not dropped yet, so it is open and still that connection's socket.
    let n = unsafe {
        libc::send(
            fd,
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    usize::try_from(n).is_ok_and(|n| n == bytes.len())
}
