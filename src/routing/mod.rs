//! Routing: the immutable snapshot, request facts and the five-step dispatch (DESIGN.md §2).
//!
//! Pure code: no sockets, no clocks, no threads. The control side builds [`Snapshot`]s from the
//! config and live state and publishes them; workers read them lock-free and call `dispatch`.

pub mod publish;
pub mod snapshot;

pub use publish::{LocalSnapshot, SnapshotCell};
pub use snapshot::*;
