//! The proxy's side of the worker port ([`crate::port`], DESIGN.md §7): the fetches dispatch asks
//! for, wake hooks and fast failure marking, sent as messages; no worker touches control state.

use super::context::Worker;
use crate::routing::{FetchRequest, ModelFetcher, Snapshot, UpstreamEntry};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Adapts the worker port to dispatch's [`ModelFetcher`].
pub struct PortFetcher<'a> {
    w: &'a Rc<Worker>,
}

impl<'a> PortFetcher<'a> {
    /// A fetcher for this worker.
    pub fn new(w: &'a Rc<Worker>) -> PortFetcher<'a> {
        PortFetcher { w }
    }
}

impl ModelFetcher for PortFetcher<'_> {
    async fn fetch(&self, req: &FetchRequest) -> Arc<Snapshot> {
        let names: Vec<String> = req.targets.iter().map(|t| t.name.clone()).collect();
        let timeout = Duration::from_millis(req.timeout_ms);
        let done = self.w.shared.port.fetch(names, timeout);
        // The control side replies by `timeout` too; this bound holds even if it is busy.
        let _ = monoio::time::timeout(timeout, done).await;
        self.w.shared.cell.load()
    }
}

/// Asks for `entry`'s wake hook (a request found it offline): one `Wake` per upstream per
/// `max(hold_timeout_ms, 30 s)` across every worker, claimed on its counters; none without a
/// `wake_url`.
pub fn wake(w: &Worker, entry: &UpstreamEntry, model: Option<&str>) {
    let debounce = Duration::from_millis(entry.cfg.hold_timeout_ms.max(30_000));
    if entry.cfg.wake_url.is_some() && entry.counters().claim_wake(Instant::now(), debounce) {
        w.shared.port.wake(entry.name(), model);
    }
}

/// Marks `upstream` down after a refused connection. Upstreams that are not probed are left
/// alone (nothing would probe them back up), so they send nothing.
pub fn mark_down(w: &Rc<Worker>, upstream: &str) {
    let probed = w
        .snap
        .get()
        .by_name(upstream)
        .is_none_or(|u| u.cfg.probed());
    if probed {
        w.shared.port.mark_down(upstream);
    }
}
