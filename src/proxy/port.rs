//! The proxy's view of the control plane: what a worker asks of it (fetches, fast failure
//! marking, in-flight accounting) without depending on how it is built.

use super::worker::Worker;
use crate::routing::{FetchRequest, ModelFetcher, Snapshot};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// What workers need from the control plane. Implemented by `control::Control`.
pub trait ControlPort: Send + Sync + 'static {
    /// Starts `/v1/models` fetches of `names` (single-flighted per upstream) and resolves once
    /// their results are published or `timeout` passed.
    fn fetch_models(&self, names: Vec<String>, timeout: Duration)
        -> Pin<Box<dyn Future<Output = ()>>>;
    /// A worker saw `upstream` refuse a connection: mark it down now.
    fn mark_down(&self, upstream: &str);
    /// A request to `upstream` starts (`+1`) or ends (`-1`).
    fn inflight(&self, upstream: &str, delta: i64);
}

/// Adapts the control port to dispatch's [`ModelFetcher`].
pub struct ControlFetcher<'a> {
    w: &'a Rc<Worker>,
}

impl<'a> ControlFetcher<'a> {
    /// A fetcher for this worker.
    pub fn new(w: &'a Rc<Worker>) -> ControlFetcher<'a> {
        ControlFetcher { w }
    }
}

impl ModelFetcher for ControlFetcher<'_> {
    async fn fetch(&self, req: &FetchRequest) -> Arc<Snapshot> {
        let names = req.targets.iter().map(|t| t.name.clone()).collect();
        self.w
            .shared
            .control
            .fetch_models(names, Duration::from_millis(req.timeout_ms))
            .await;
        self.w.shared.cell.load()
    }
}

/// Marks `upstream` down after a refused connection.
pub fn mark_down(w: &Rc<Worker>, upstream: &str) {
    w.shared.control.mark_down(upstream);
}

/// Counts a request as in flight on its upstream for as long as it lives.
pub struct InFlight<'a> {
    w: &'a Rc<Worker>,
    upstream: &'a str,
}

impl<'a> InFlight<'a> {
    /// Enters `upstream`.
    pub fn enter(w: &'a Rc<Worker>, upstream: &'a str) -> InFlight<'a> {
        w.shared.control.inflight(upstream, 1);
        InFlight { w, upstream }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.w.shared.control.inflight(self.upstream, -1);
    }
}

/// A control port that fetches nothing and counts nothing: for a proxy run without a control
/// plane (static models, tests of the data plane alone).
pub struct NoControl;

impl ControlPort for NoControl {
    fn fetch_models(&self, _: Vec<String>, _: Duration) -> Pin<Box<dyn Future<Output = ()>>> {
        Box::pin(async {})
    }
    fn mark_down(&self, _: &str) {}
    fn inflight(&self, _: &str, _: i64) {}
}
