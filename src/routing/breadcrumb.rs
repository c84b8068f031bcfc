//! The breadcrumb (DESIGN.md §2, §3 `X-Slotgate-Route`): which of the five steps chose the upstream.
//! A leaf: the snapshot's index renders it per upstream, dispatch decides it.

use serde::Serialize;

/// Which rule chose the upstream; rendered as the `X-Slotgate-Route` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Breadcrumb {
    /// Step 0: a container advertises the id (`container:<name>`).
    Container,
    /// Step 1: a registry binding (`registry`).
    Registry,
    /// Step 2: the first upstream advertising the id (`passthrough:<name>`).
    Passthrough,
    /// Step 3: advertised after the cold prefetch (`prefetched:<name>`).
    Prefetched,
    /// Step 4: capability rules (`capability:<name>`).
    Capability,
    /// The chosen upstream could not take the request; the next of its `fallback` chain did
    /// (`fallback:<name>`).
    Fallback,
}

impl Breadcrumb {
    /// The step (0–4) this breadcrumb stands for.
    pub fn step(self) -> u8 {
        match self {
            Breadcrumb::Container => 0,
            Breadcrumb::Registry => 1,
            Breadcrumb::Passthrough => 2,
            Breadcrumb::Prefetched => 3,
            Breadcrumb::Capability | Breadcrumb::Fallback => 4,
        }
    }

    /// The header value for a decision on `upstream` (e.g. `container:chat`, `registry`).
    pub fn render(self, upstream: &str) -> String {
        let prefix = match self {
            Breadcrumb::Container => "container:",
            Breadcrumb::Registry => return "registry".to_string(),
            Breadcrumb::Passthrough => "passthrough:",
            Breadcrumb::Prefetched => "prefetched:",
            Breadcrumb::Capability => "capability:",
            Breadcrumb::Fallback => "fallback:",
        };
        format!("{prefix}{upstream}")
    }
}
