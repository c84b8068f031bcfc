//! A worker's drain broadcast (DESIGN.md §6 `SIGTERM`): idle keep-alive connections wait on it
//! beside their read, so a drain closes them at once instead of after `keepalive_timeout_ms`.
//! Worker-local (`Cell`/`RefCell`): fired by the worker's own accept loop.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Fired once when the worker starts draining.
#[derive(Default)]
pub struct DrainSignal {
    fired: Cell<bool>,
    next: Cell<u64>,
    waiters: RefCell<HashMap<u64, Waker>>,
}

impl DrainSignal {
    /// Fires the signal: every current and future [`DrainSignal::wait`] resolves.
    pub fn fire(&self) {
        self.fired.set(true);
        for (_, w) in self.waiters.borrow_mut().drain() {
            w.wake();
        }
    }

    /// Whether the signal fired.
    pub fn fired(&self) -> bool {
        self.fired.get()
    }

    /// Resolves once the signal fired. Dropping the future unregisters it (no waker piles up
    /// across the keep-alive cycles of a long-lived connection).
    pub fn wait(&self) -> Wait<'_> {
        let id = self.next.get();
        self.next.set(id + 1);
        Wait { signal: self, id }
    }
}

/// See [`DrainSignal::wait`].
pub struct Wait<'a> {
    signal: &'a DrainSignal,
    id: u64,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.fired.get() {
            return Poll::Ready(());
        }
        self.signal
            .waiters
            .borrow_mut()
            .insert(self.id, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        self.signal.waiters.borrow_mut().remove(&self.id);
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::string_slice)] // tests: a panic is a failure
mod tests {
    use super::*;

    #[test]
    fn fires_and_unregisters() {
        let s = DrainSignal::default();
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        {
            let mut w = std::pin::pin!(s.wait());
            assert!(w.as_mut().poll(&mut cx).is_pending());
            assert_eq!(s.waiters.borrow().len(), 1);
        }
        assert!(s.waiters.borrow().is_empty());
        let mut w = std::pin::pin!(s.wait());
        assert!(w.as_mut().poll(&mut cx).is_pending());
        s.fire();
        assert!(s.fired());
        assert!(w.as_mut().poll(&mut cx).is_ready());
    }
}
