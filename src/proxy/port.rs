//! The proxy's side of the worker port ([`crate::port`], DESIGN.md §7): the fetches dispatch asks
//! for and fast failure marking, sent as messages; no worker touches control state.

use super::worker::Worker;
use crate::routing::{FetchRequest, ModelFetcher, Snapshot};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

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

/// Marks `upstream` down after a refused connection.
pub fn mark_down(w: &Rc<Worker>, upstream: &str) {
    w.shared.port.mark_down(upstream);
}
