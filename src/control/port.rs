//! `proxy::ControlPort` for [`Control`]: what workers ask of the control plane.

use super::Control;
use crate::proxy::ControlPort;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

impl ControlPort for Control {
    fn fetch_models(
        &self,
        names: Vec<String>,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = ()>>> {
        Box::pin(Control::fetch_models(self, &names, timeout))
    }

    fn mark_down(&self, upstream: &str) {
        Control::mark_down(self, upstream);
    }

    fn inflight(&self, upstream: &str, delta: i64) {
        if let Some(c) = self.counters(upstream) {
            c.adjust_requests(delta);
        }
    }
}
