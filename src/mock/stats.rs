//! Counters the mock keeps so integration tests can assert on what a backend saw (`GET /mock/stats`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use parking_lot::Mutex;
use serde::Serialize;

/// Distinct paths tracked by name; beyond this they are counted under `"other"` so a scanner
/// cannot grow the map without bound.
const MAX_TRACKED_PATHS: usize = 256;

/// Live counters, shared between the server thread and [`super::MockHandle`].
#[derive(Debug)]
pub(crate) struct Stats {
    pub connections_accepted: AtomicU64,
    pub connections_open: AtomicI64,
    pub connections_closed_by_peer: AtomicU64,
    pub streams_cut_by_peer: AtomicU64,
    pub streams_failed_on_purpose: AtomicU64,
    pub requests_total: AtomicU64,
    pub models_requests: AtomicU64,
    pub completions_total: AtomicU64,
    pub completions_inflight: AtomicI64,
    pub completions_inflight_max: AtomicI64,
    by_path: Mutex<BTreeMap<String, u64>>,
    order: Mutex<VecDeque<String>>,
    order_cap: usize,
}

impl Stats {
    pub fn new(order_cap: usize) -> Stats {
        Stats {
            connections_accepted: AtomicU64::new(0),
            connections_open: AtomicI64::new(0),
            connections_closed_by_peer: AtomicU64::new(0),
            streams_cut_by_peer: AtomicU64::new(0),
            streams_failed_on_purpose: AtomicU64::new(0),
            requests_total: AtomicU64::new(0),
            models_requests: AtomicU64::new(0),
            completions_total: AtomicU64::new(0),
            completions_inflight: AtomicI64::new(0),
            completions_inflight_max: AtomicI64::new(0),
            by_path: Mutex::new(BTreeMap::new()),
            order: Mutex::new(VecDeque::with_capacity(order_cap)),
            order_cap,
        }
    }

    /// Counts one request to `path`.
    pub fn request(&self, path: &[u8]) {
        self.requests_total.fetch_add(1, Relaxed);
        let path = std::str::from_utf8(path).unwrap_or("other");
        let mut map = self.by_path.lock();
        if let Some(n) = map.get_mut(path) {
            *n += 1;
        } else if map.len() < MAX_TRACKED_PATHS {
            map.insert(path.to_string(), 1);
        } else {
            *map.entry("other".to_string()).or_default() += 1;
        }
    }

    /// Records the arrival of a completion request (its id, or `""` when it carried none).
    pub fn completion_arrived(&self, id: &str) {
        self.completions_total.fetch_add(1, Relaxed);
        if self.order_cap == 0 {
            return;
        }
        let mut ring = self.order.lock();
        // Reuse the evicted entry's allocation once the ring is full.
        let mut slot = if ring.len() == self.order_cap {
            ring.pop_front().unwrap_or_default()
        } else {
            String::new()
        };
        slot.clear();
        slot.push_str(id);
        ring.push_back(slot);
    }

    /// Marks one completion in flight until the guard drops.
    pub fn inflight(&self) -> InflightGuard<'_> {
        let now = self.completions_inflight.fetch_add(1, Relaxed) + 1;
        self.completions_inflight_max.fetch_max(now, Relaxed);
        InflightGuard(self)
    }

    /// A consistent-enough copy for reporting.
    pub fn snapshot(&self, loading: bool) -> StatsSnapshot {
        StatsSnapshot {
            connections_accepted: self.connections_accepted.load(Relaxed),
            connections_open: self.connections_open.load(Relaxed).max(0) as u64,
            connections_closed_by_peer: self.connections_closed_by_peer.load(Relaxed),
            streams_cut_by_peer: self.streams_cut_by_peer.load(Relaxed),
            streams_failed_on_purpose: self.streams_failed_on_purpose.load(Relaxed),
            requests_total: self.requests_total.load(Relaxed),
            requests_by_path: self.by_path.lock().clone(),
            models_requests: self.models_requests.load(Relaxed),
            completions_total: self.completions_total.load(Relaxed),
            completions_inflight: self.completions_inflight.load(Relaxed).max(0) as u64,
            completions_inflight_max: self.completions_inflight_max.load(Relaxed).max(0) as u64,
            completion_order: self.order.lock().iter().cloned().collect(),
            loading,
        }
    }
}

/// Decrements the in-flight completion count when dropped (also when a stream is cut).
pub(crate) struct InflightGuard<'a>(&'a Stats);

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        self.0.completions_inflight.fetch_sub(1, Relaxed);
    }
}

/// What the mock has seen so far; the body of `GET /mock/stats` and [`super::MockHandle::stats`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StatsSnapshot {
    /// TCP connections accepted since start.
    pub connections_accepted: u64,
    /// TCP connections currently open.
    pub connections_open: u64,
    /// Connections the client closed or reset (EOF or error seen on read or write).
    pub connections_closed_by_peer: u64,
    /// Of those, connections closed while an SSE stream was being written.
    pub streams_cut_by_peer: u64,
    /// Streams the mock cut itself because of `fail_after`.
    pub streams_failed_on_purpose: u64,
    /// Requests parsed, all paths.
    pub requests_total: u64,
    /// Requests per path (query excluded).
    pub requests_by_path: BTreeMap<String, u64>,
    /// `GET /v1/models` requests (also counted in `requests_by_path`).
    pub models_requests: u64,
    /// Completion requests (chat and text) received.
    pub completions_total: u64,
    /// Completions being answered right now.
    pub completions_inflight: u64,
    /// Highest `completions_inflight` seen.
    pub completions_inflight_max: u64,
    /// Ids of the last completion requests in arrival order (`x-request-id`, else the body's
    /// `"user"`, else `""`), oldest first.
    pub completion_order: Vec<String>,
    /// Whether the mock is still inside its `load_ms` window.
    pub loading: bool,
}
