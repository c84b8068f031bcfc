//! Single-flight bookkeeping for `/v1/models` fetches and the waiter future workers await
//! (DESIGN.md §2 steps 1 and 3).
//!
//! Per upstream at most one fetch runs; any number of requesters join it with a [`Ticket`]. A
//! ticket counts the fetches it still waits for and fires a `futures_channel::oneshot` when the
//! last one finishes, or when its deadline passes (a small timer thread, started on first use,
//! so the future needs no timer from the runtime that awaits it).

use crate::config::UpstreamName;
use futures_channel::oneshot;
use parking_lot::{Condvar, Mutex};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

/// One `fetch_models` call: how many fetches it still waits for, and how to wake its future.
pub(crate) struct Ticket {
    remaining: AtomicUsize,
    tx: Mutex<Option<oneshot::Sender<()>>>,
}

impl Ticket {
    /// A ticket holding one guard count (so it cannot fire while fetches are being registered)
    /// and the future that completes when it fires.
    pub(crate) fn new() -> (Arc<Ticket>, ModelsFetch) {
        let (tx, rx) = oneshot::channel();
        let t = Arc::new(Ticket {
            remaining: AtomicUsize::new(1),
            tx: Mutex::new(Some(tx)),
        });
        (t, ModelsFetch { rx: Some(rx) })
    }

    /// A ticket (holding the registration guard count) that completes `tx` when it fires: the
    /// reply of a worker port's `Fetch`.
    pub(crate) fn replying(tx: oneshot::Sender<()>) -> Arc<Ticket> {
        Arc::new(Ticket {
            remaining: AtomicUsize::new(1),
            tx: Mutex::new(Some(tx)),
        })
    }

    /// Counts one more fetch to wait for.
    pub(crate) fn add(&self) {
        self.remaining.fetch_add(1, Ordering::AcqRel);
    }

    /// One awaited fetch (or the registration guard) finished.
    pub(crate) fn done_one(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.fire();
        }
    }

    /// Completes the future now (all done, or deadline).
    pub(crate) fn fire(&self) {
        if let Some(tx) = self.tx.lock().take() {
            let _ = tx.send(());
        }
    }

    /// Whether the future was already completed.
    pub(crate) fn fired(&self) -> bool {
        self.tx.lock().is_none()
    }
}

/// Completes when every requested `/v1/models` fetch finished (results published) or the timeout
/// passed. Awaitable from any executor (a monoio worker included: monoio's `sync` feature lets
/// the control thread wake it), or blocking with [`ModelsFetch::wait`].
#[must_use = "the fetch runs anyway; await this to wait for its result"]
pub struct ModelsFetch {
    rx: Option<oneshot::Receiver<()>>,
}

impl ModelsFetch {
    /// The future of a worker port's `Fetch` reply, to wait on it in a test.
    #[cfg(test)]
    pub(crate) fn from_receiver(rx: oneshot::Receiver<()>) -> ModelsFetch {
        ModelsFetch { rx: Some(rx) }
    }

    /// Blocks the calling (non-worker) thread until the future completes.
    pub fn wait(self) {
        struct Unpark(std::thread::Thread);
        impl Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut me = self;
        while Pin::new(&mut me).poll(&mut cx).is_pending() {
            std::thread::park();
        }
    }
}

impl Future for ModelsFetch {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.rx.as_mut() {
            None => Poll::Ready(()),
            Some(rx) => match Pin::new(rx).poll(cx) {
                // A dropped sender (control shut down) also ends the wait.
                Poll::Ready(_) => {
                    self.rx = None;
                    Poll::Ready(())
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

/// Upstreams with a fetch in flight, each with the tickets waiting for it.
#[derive(Default)]
pub(crate) struct Flights {
    inflight: Mutex<HashMap<UpstreamName, Vec<Arc<Ticket>>>>,
    timer: Timer,
}

impl Flights {
    /// Joins `key`'s fetch with `ticket` (if any); true when none was in flight and the caller
    /// must start it.
    pub(crate) fn join(&self, key: &UpstreamName, ticket: Option<&Arc<Ticket>>) -> bool {
        let mut m = self.inflight.lock();
        let start = !m.contains_key(key);
        let waiters = m.entry(key.clone()).or_default();
        if let Some(t) = ticket {
            t.add();
            waiters.push(t.clone());
        }
        start
    }

    /// `key`'s fetch finished (its result is published): releases every ticket waiting for it.
    pub(crate) fn finish(&self, key: &UpstreamName) {
        let waiters = self.inflight.lock().remove(key).unwrap_or_default();
        for t in waiters {
            t.done_one();
        }
    }

    /// Fires `ticket` at `deadline` unless it completed before. When the timer thread cannot
    /// be started (the process is out of threads), the ticket fires now: the waiter stops
    /// waiting and routes on what is known, instead of the worker panicking.
    pub(crate) fn deadline(&self, deadline: Instant, ticket: &Arc<Ticket>) {
        if let Err(e) = self.timer.add(deadline, Arc::downgrade(ticket)) {
            tracing::warn!(error = %e, "cannot start the fetch timer thread; not waiting for the fetch");
            ticket.fire();
        }
    }
}

/// Deadline heap served by one lazily started thread.
#[derive(Default)]
struct Timer {
    shared: Arc<TimerShared>,
    started: Mutex<bool>,
}

#[derive(Default)]
struct TimerShared {
    pending: Mutex<BTreeMap<(Instant, u64), Weak<Ticket>>>,
    cv: Condvar,
    seq: AtomicUsize,
    stop: AtomicBool,
}

impl Timer {
    fn add(&self, at: Instant, t: Weak<Ticket>) -> std::io::Result<()> {
        {
            let mut started = self.started.lock();
            if !*started {
                let s = self.shared.clone();
                std::thread::Builder::new()
                    .name("slotgate-fetch-timer".into())
                    .spawn(move || timer_loop(&s))?;
                *started = true;
            }
        }
        let seq = self.shared.seq.fetch_add(1, Ordering::Relaxed) as u64;
        let mut p = self.shared.pending.lock();
        let earliest = p.keys().next().is_none_or(|k| at < k.0);
        p.insert((at, seq), t);
        if earliest {
            self.shared.cv.notify_one();
        }
        Ok(())
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        let _g = self.shared.pending.lock();
        self.shared.cv.notify_one();
    }
}

fn timer_loop(s: &TimerShared) {
    let mut p = s.pending.lock();
    loop {
        if s.stop.load(Ordering::Acquire) {
            return;
        }
        let now = Instant::now();
        while let Some(entry) = p.first_entry() {
            if entry.key().0 > now {
                break;
            }
            if let Some(t) = entry.remove().upgrade() {
                t.fire();
            }
        }
        match p.keys().next().map(|k| k.0) {
            Some(at) => {
                s.cv.wait_until(&mut p, at);
            }
            None => s.cv.wait(&mut p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn fires_when_all_done() {
        let f = Flights::default();
        let (t, fut) = Ticket::new();
        assert!(f.join(&"a".into(), Some(&t)));
        assert!(
            !f.join(&"A".into(), Some(&t)),
            "one flight per name, any case"
        );
        assert!(f.join(&"b".into(), Some(&t)));
        t.done_one();
        f.finish(&"a".into());
        assert!(!t.fired());
        f.finish(&"b".into());
        assert!(t.fired());
        fut.wait();
    }

    #[test]
    fn deadline_fires() {
        let f = Flights::default();
        let (t, fut) = Ticket::new();
        assert!(f.join(&"a".into(), Some(&t)));
        t.done_one();
        let start = Instant::now();
        f.deadline(start + Duration::from_millis(50), &t);
        fut.wait();
        assert!(start.elapsed() >= Duration::from_millis(50));
        assert!(start.elapsed() < Duration::from_secs(2));
    }
}
