//! Epoch-swapped snapshot publication (DESIGN.md §7 "Snapshot").
//!
//! The control thread publishes a new `Arc<Snapshot>` into an [`ArcSwap`] and then bumps an
//! `AtomicU64` epoch. Each worker keeps a [`LocalSnapshot`]: an `Rc<Arc<Snapshot>>` plus the epoch
//! it was loaded at. A read is one relaxed-acquire load of the epoch and, when unchanged, an `Rc`
//! clone (no atomic read-modify-write, so no cache-line ping-pong between cores). When the epoch
//! moved, the worker loads the new `Arc` once. A request holds its `Rc` for its whole life
//! (streams included), so it finishes on the snapshot it started with.
//!
//! Reclamation: an old snapshot is freed when the last `Arc` to it drops: the cell's own reference
//! goes at the next publish, each worker's cached one at its next read after the epoch moved, and
//! each in-flight request's when it ends. Nothing is freed while anything can still read it.

use super::Snapshot;
use arc_swap::ArcSwap;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The shared cell the control thread publishes into.
pub struct SnapshotCell {
    current: ArcSwap<Snapshot>,
    epoch: AtomicU64,
}

impl SnapshotCell {
    /// A cell holding `first`.
    pub fn new(first: Snapshot) -> SnapshotCell {
        let epoch = first.epoch;
        SnapshotCell {
            current: ArcSwap::from_pointee(first),
            epoch: AtomicU64::new(epoch),
        }
    }

    /// Publishes `snap` (its `epoch` must be greater than the current one) and bumps the epoch.
    pub fn publish(&self, snap: Snapshot) {
        let e = snap.epoch;
        self.current.store(Arc::new(snap));
        self.epoch.store(e, Ordering::Release);
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

/// A worker's cached view of the cell.
pub struct LocalSnapshot {
    cell: Arc<SnapshotCell>,
    // The `Rc` layer is the point: cloning it per request is a plain increment, where cloning the
    // shared `Arc` would bounce its counter's cache line between cores.
    #[allow(clippy::redundant_allocation)]
    cached: RefCell<(u64, Rc<Arc<Snapshot>>)>,
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
    pub fn get(&self) -> Rc<Arc<Snapshot>> {
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
