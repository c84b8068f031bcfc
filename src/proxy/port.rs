//! The proxy's use of the control plane: fetches dispatch asks for, fast failure marking, and
//! in-flight accounting.

use super::worker::Worker;
use crate::routing::{FetchRequest, ModelFetcher, Snapshot};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// Adapts the control plane to dispatch's [`ModelFetcher`].
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
        let names: Vec<String> = req.targets.iter().map(|t| t.name.clone()).collect();
        self.w
            .shared
            .control
            .fetch_models(&names, Duration::from_millis(req.timeout_ms))
            .await;
        self.w.shared.control.cell().load()
    }
}

/// Marks `upstream` down after a refused connection.
pub fn mark_down(w: &Rc<Worker>, upstream: &str) {
    w.shared.control.mark_down(upstream);
}
