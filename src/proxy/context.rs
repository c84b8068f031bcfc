//! What every part of the request path shares on one worker: the [`Worker`] (its snapshot cache,
//! upstream pool, ids, metrics) and the [`Outcome`] an exchange ends with. A leaf of `proxy/`, so
//! the connection loop, the exchange and the relay all import it and none of them each other.

use super::drain::DrainSignal;
use super::pool::Pool;
use super::Shared;
use crate::metrics::WorkerMetrics;
use crate::routing::LocalSnapshot;
use std::cell::Cell;
use std::sync::Arc;

/// Per-worker state: everything here is touched by one thread only.
pub struct Worker {
    /// Worker index.
    pub id: usize,
    /// Process-wide state.
    pub shared: Arc<Shared>,
    /// Cached routing snapshot.
    pub snap: LocalSnapshot,
    /// Idle upstream connections.
    pub pool: Pool,
    /// Whether this runtime is io_uring (sockets must then be blocking).
    pub uring: bool,
    /// Open client connections on this worker.
    pub conns: Cell<usize>,
    /// Counter of generated request ids.
    pub ids: super::request_id::IdSource,
    /// This worker's metrics recorder (only this worker and the scraper touch it).
    pub metrics: Arc<WorkerMetrics>,
    /// Fired when the worker starts draining: idle keep-alive connections close at once.
    pub drain: DrainSignal,
}

/// What the connection does after an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Read the next request.
    KeepAlive,
    /// Close the client connection.
    Close,
}
