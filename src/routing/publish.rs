//! Epoch-swapped snapshot publication (DESIGN.md §7 "Snapshot").
//!
//! The control thread publishes a new `Arc<Snapshot>` into an [`ArcSwap`] and then bumps an
//! `AtomicU64` epoch. Each worker keeps a [`LocalSnapshot`]: an `Rc<Arc<Snapshot>>` plus the epoch
//! it was loaded at. A read is one relaxed-acquire load of the epoch and, when unchanged, an `Rc`
//! clone (no atomic read-modify-write, so no cache-line ping-pong between cores). When the epoch
//! moved, the worker loads the new `Arc` once. A request holds its `Rc` for its whole life
//! (streams included), so it finishes on the snapshot it started with.
//!
//! Held requests (`on_loading = "hold"`, DESIGN.md §3a) wait for the next publication with
//! [`SnapshotCell::next_publish`], so a worker never asks the control plane when to look again.
//!
//! Reclamation: an old snapshot is freed when the last `Arc` to it drops: the cell's own reference
//! goes at the next publish, each worker's cached one at its next read after the epoch moved, and
//! each in-flight request's when it ends. Nothing is freed while anything can still read it.

use super::snapshot::Snapshot;
use arc_swap::ArcSwap;
use futures_channel::oneshot;
use parking_lot::Mutex;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The shared cell the control thread publishes into.
pub struct SnapshotCell {
    current: ArcSwap<Snapshot>,
    epoch: AtomicU64,
    published: PublishWaiters,
}

impl SnapshotCell {
    /// A cell holding `first`.
    pub fn new(first: Snapshot) -> SnapshotCell {
        let epoch = first.epoch;
        SnapshotCell {
            current: ArcSwap::from_pointee(first),
            epoch: AtomicU64::new(epoch),
            published: PublishWaiters::default(),
        }
    }

    /// Publishes `snap` (its `epoch` must be greater than the current one), bumps the epoch and
    /// wakes whoever waits for a publication.
    pub fn publish(&self, snap: Snapshot) {
        let e = snap.epoch;
        self.current.store(Arc::new(snap));
        self.epoch.store(e, Ordering::Release);
        self.published.notify();
    }

    /// Resolves at the next publication (or when the cell goes away): what a held request waits
    /// on. Register first, then re-check the epoch, and no publication is missed.
    pub fn next_publish(&self) -> oneshot::Receiver<()> {
        self.published.next()
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The current snapshot (an `Arc` clone: for the control side, not the request path).
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }
}

/// Wakes futures on the next snapshot publication (held requests wait on it; no polling).
#[derive(Default)]
struct PublishWaiters {
    waiters: Mutex<Vec<oneshot::Sender<()>>>,
}

impl PublishWaiters {
    /// Resolves at the next publication (or when the cell goes away).
    fn next(&self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let mut w = self.waiters.lock();
        // Drop senders whose waiters gave up, so a long outage does not grow the list.
        w.retain(|t| !t.is_canceled());
        w.push(tx);
        rx
    }

    /// Wakes every waiter.
    fn notify(&self) {
        let waiting = std::mem::take(&mut *self.waiters.lock());
        for tx in waiting {
            let _ = tx.send(());
        }
    }
}

/// A request's hold on a snapshot: cloning it touches no atomic (the `Rc` is worker-local), while
/// the inner `Arc` keeps the snapshot alive across publications. The double pointer is the point
/// (see the module doc), hence the lint exception.
#[allow(clippy::redundant_allocation)]
pub type SnapshotRef = Rc<Arc<Snapshot>>;

/// A worker's cached view of the cell.
pub struct LocalSnapshot {
    cell: Arc<SnapshotCell>,
    // The `Rc` layer is the point: cloning it per request is a plain increment, where cloning the
    // shared `Arc` would bounce its counter's cache line between cores.
    cached: RefCell<(u64, SnapshotRef)>,
}

impl LocalSnapshot {
    /// A worker-local reader of `cell`.
    pub fn new(cell: Arc<SnapshotCell>) -> LocalSnapshot {
        let epoch = cell.epoch();
        let snap = cell.load();
        LocalSnapshot {
            cell,
            cached: RefCell::new((epoch, Rc::new(snap))),
        }
    }

    /// The current snapshot; refreshes the cache only when the epoch moved.
    #[inline]
    pub fn get(&self) -> SnapshotRef {
        let e = self.cell.epoch();
        let mut c = self.cached.borrow_mut();
        if c.0 != e {
            *c = (e, Rc::new(self.cell.load()));
        }
        c.1.clone()
    }

    /// The shared cell behind this reader.
    pub fn cell(&self) -> &Arc<SnapshotCell> {
        &self.cell
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::routing::LiveState;

    fn snap(epoch: u64) -> Snapshot {
        let cfg = Config::from_toml_str("", None).unwrap();
        Snapshot::build(Arc::new(cfg), &LiveState::default(), epoch)
    }

    #[test]
    fn a_request_keeps_its_snapshot_while_the_epoch_moves() {
        let cell = Arc::new(SnapshotCell::new(snap(1)));
        let local = LocalSnapshot::new(cell.clone());
        let held = local.get();
        assert_eq!(held.epoch, 1);
        cell.publish(snap(2));
        assert_eq!(cell.epoch(), 2);
        // The in-flight request still sees epoch 1; the next read sees epoch 2.
        assert_eq!(held.epoch, 1);
        let next = local.get();
        assert_eq!(next.epoch, 2);
        assert_eq!(held.epoch, 1);
        assert!(!Arc::ptr_eq(&held, &next));
    }

    #[test]
    fn unchanged_epoch_reuses_the_cached_snapshot() {
        let cell = Arc::new(SnapshotCell::new(snap(5)));
        let local = LocalSnapshot::new(cell.clone());
        let a = local.get();
        let b = local.get();
        // Same `Rc` allocation: no reload, no touch of the shared `Arc` counter.
        assert!(Rc::ptr_eq(&a, &b));
        assert_eq!(
            Arc::strong_count(&a),
            2,
            "the cell's reference and the worker's one"
        );
    }

    #[test]
    fn old_snapshot_is_freed_when_its_last_reader_ends() {
        let cell = Arc::new(SnapshotCell::new(snap(1)));
        let local = LocalSnapshot::new(cell.clone());
        let held = local.get();
        let weak = Arc::downgrade(&held);
        cell.publish(snap(2));
        let _ = local.get(); // the worker moves on to epoch 2
        assert!(weak.upgrade().is_some(), "the request still holds epoch 1");
        drop(held);
        assert!(weak.upgrade().is_none(), "nothing else keeps epoch 1 alive");
    }

    #[test]
    fn a_publication_wakes_its_waiters_once() {
        let cell = SnapshotCell::new(snap(1));
        let mut a = cell.next_publish();
        let mut b = cell.next_publish();
        assert_eq!(a.try_recv(), Ok(None));
        cell.publish(snap(2));
        assert_eq!((a.try_recv(), b.try_recv()), (Ok(Some(())), Ok(Some(()))));
        let mut c = cell.next_publish();
        assert_eq!(
            c.try_recv(),
            Ok(None),
            "a waiter registered after waits for the next one"
        );
    }

    #[test]
    fn workers_on_other_threads_see_the_new_epoch() {
        let cell = Arc::new(SnapshotCell::new(snap(1)));
        cell.publish(snap(2));
        let seen = std::thread::spawn({
            let cell = cell.clone();
            move || LocalSnapshot::new(cell).get().epoch
        })
        .join()
        .unwrap();
        assert_eq!(seen, 2);
    }
}
