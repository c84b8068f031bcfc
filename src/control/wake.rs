//! The wake hook (DESIGN.md §3a `wake_url`): a POST of `{"slot", "model", "reason": "request"}`
//! to an offline slot's `wake_url`, on its own thread so nothing waits for it. Who may fire it is
//! decided before (one claim per debounce window on the upstream's counters).

use super::client;
use crate::config::{UpstreamConfig, UpstreamUrl};
use std::time::Duration;

/// Calls `cfg`'s wake hook for `model` on a new thread; nothing when it has no (valid)
/// `wake_url`.
pub(crate) fn call_hook(cfg: &UpstreamConfig, model: Option<&str>) {
    let Some(url) = cfg
        .wake_url
        .as_deref()
        .and_then(|u| UpstreamUrl::parse(u).ok())
    else {
        return;
    };
    let body =
        serde_json::json!({"slot": cfg.name, "model": model, "reason": "request"}).to_string();
    let timeout = Duration::from_millis(cfg.connect_ms.max(cfg.probe_timeout_ms));
    let cfg = cfg.clone();
    let spawned = std::thread::Builder::new()
        .name("slotgate-wake".into())
        .spawn(move || {
            let ca_file = cfg.wake_ca_file.as_deref();
            match client::post_json(&url, ca_file, body.as_bytes(), timeout) {
                Ok(r) => {
                    tracing::info!(upstream = %cfg.name, status = r.status, "wake hook called")
                }
                Err(e) => tracing::warn!(upstream = %cfg.name, error = %e, "wake hook failed"),
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot spawn the wake hook thread");
    }
}
