//! `SIGHUP` -> reload (DESIGN.md §6): the handler only sets a flag; the control supervisor thread
//! polls it and runs the reload outside signal context.

use std::sync::atomic::{AtomicBool, Ordering};

static HUP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_hup(_sig: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    HUP.store(true, Ordering::Release);
}

/// Installs the process-wide `SIGHUP` handler (idempotent).
pub fn install_sighup() -> std::io::Result<()> {
    // SAFETY: `sa` is fully initialised (zeroed, then handler and an empty mask set) before the
    // call; the handler only performs an atomic store, which is async-signal-safe.
    let rc = unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_hup as *const () as libc::sighandler_t;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGHUP, &sa, std::ptr::null_mut())
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// True once per `SIGHUP` received since the last call.
pub fn take_sighup() -> bool {
    HUP.swap(false, Ordering::AcqRel)
}
