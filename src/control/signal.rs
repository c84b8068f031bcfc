//! Signals (DESIGN.md §6): `SIGHUP` -> reload, `SIGTERM`/`SIGINT` -> graceful drain. The handlers
//! only set flags; the control supervisor and the main thread poll them outside signal context.

#![allow(unsafe_code)] // every use carries a SAFETY note

use std::sync::atomic::{AtomicBool, Ordering};

static HUP: AtomicBool = AtomicBool::new(false);
static TERM: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(sig: libc::c_int) {
    // Only atomic stores: async-signal-safe.
    if sig == libc::SIGHUP {
        HUP.store(true, Ordering::Release);
    } else {
        TERM.store(true, Ordering::Release);
    }
}

fn install(sig: libc::c_int) -> std::io::Result<()> {
    // SAFETY: `sa` is fully initialised (zeroed, then handler and an empty mask set) before the
    // call; the handler only performs an atomic store, which is async-signal-safe.
    let rc = unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as *const () as libc::sighandler_t;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(sig, &sa, std::ptr::null_mut())
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Installs the process-wide `SIGHUP` handler (idempotent).
pub fn install_sighup() -> std::io::Result<()> {
    install(libc::SIGHUP)
}

/// True once per `SIGHUP` received since the last call.
pub fn take_sighup() -> bool {
    HUP.swap(false, Ordering::AcqRel)
}

/// Installs the `SIGTERM` and `SIGINT` handlers (idempotent).
pub fn install_term() -> std::io::Result<()> {
    install(libc::SIGTERM)?;
    install(libc::SIGINT)
}

/// Whether `SIGTERM` or `SIGINT` arrived.
pub fn term_requested() -> bool {
    TERM.load(Ordering::Acquire)
}
