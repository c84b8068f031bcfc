//! systemd readiness notification (`Type=notify`, sd_notify(3)) without libsystemd: one unix
//! datagram to `$NOTIFY_SOCKET` (a path, or an abstract socket when it starts with `@`).
//! Without `NOTIFY_SOCKET` every call is a no-op, so the same binary runs anywhere.

#![allow(unsafe_code)] // every use carries a SAFETY note

use std::io;
use std::os::unix::net::UnixDatagram;

/// Sends `state` (newline-separated `KEY=value` lines) to `$NOTIFY_SOCKET`. `Ok(false)` when
/// there is no socket to notify.
pub fn send(state: &str) -> io::Result<bool> {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let target = target.to_string_lossy().into_owned();
    let sock = UnixDatagram::unbound()?;
    if let Some(name) = target.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        sock.send_to(state.as_bytes(), &target)?;
    }
    Ok(true)
}

/// Sends `state`, logging (not failing) when systemd cannot be told.
fn tell(state: &str) {
    if let Err(e) = send(state) {
        tracing::warn!(error = %e, state, "sd_notify failed");
    }
}

/// `CLOCK_MONOTONIC` in microseconds (what systemd compares `MONOTONIC_USEC` against).
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC is always supported on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

/// Workers and listeners are up (also ends a reload).
pub fn ready() {
    tell("READY=1\nSTATUS=serving");
}

/// A reload started (`Type=notify-reload` requires `MONOTONIC_USEC`).
pub fn reloading() {
    tell(&format!(
        "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading",
        monotonic_usec()
    ));
}

/// A graceful stop started.
pub fn stopping() {
    tell("STOPPING=1\nSTATUS=draining");
}

#[cfg(test)]
mod tests {
    #[test]
    fn monotonic_moves_forward() {
        let a = super::monotonic_usec();
        let b = super::monotonic_usec();
        assert!(a > 0 && b >= a);
    }
}
