//! What a snapshot knows about each upstream: its id, lifecycle state, probe result, model cache,
//! addresses and in-flight counters (DESIGN.md §1, §3a), as the control side keeps them live
//! and a [`Snapshot`] freezes them. Below both the snapshot and its index.
//!
//! [`Snapshot`]: super::Snapshot

use crate::admission::UpstreamCounters;
use crate::config::{UpstreamConfig, UpstreamKind, UpstreamName};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// Index of an upstream in [`Snapshot::upstreams`](super::Snapshot::upstreams) (priority order). Valid for one snapshot only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UpstreamId(pub u32);

/// Lifecycle state of a slot (DESIGN.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SlotState {
    /// Not running.
    Offline,
    /// Fetching weights or an image.
    Pulling,
    /// Process starting.
    Starting,
    /// Loading the model / warming caches.
    Warming,
    /// Loaded, nothing in flight.
    Ready,
    /// Loaded, serving requests.
    Serving,
    /// Loaded, idle for a while (still in the ready set).
    Idle,
    /// Being evicted.
    Unloading,
    /// Failed; needs the control plane.
    Error,
}

impl SlotState {
    /// The ready set: `ready serving idle`.
    pub fn is_ready(self) -> bool {
        matches!(
            self,
            SlotState::Ready | SlotState::Serving | SlotState::Idle
        )
    }

    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            SlotState::Offline => "offline",
            SlotState::Pulling => "pulling",
            SlotState::Starting => "starting",
            SlotState::Warming => "warming",
            SlotState::Ready => "ready",
            SlotState::Serving => "serving",
            SlotState::Idle => "idle",
            SlotState::Unloading => "unloading",
            SlotState::Error => "error",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<SlotState> {
        Some(match s {
            "offline" => SlotState::Offline,
            "pulling" => SlotState::Pulling,
            "starting" => SlotState::Starting,
            "warming" => SlotState::Warming,
            "ready" => SlotState::Ready,
            "serving" => SlotState::Serving,
            "idle" => SlotState::Idle,
            "unloading" => SlotState::Unloading,
            "error" => SlotState::Error,
            _ => return None,
        })
    }
}

/// Result of slotgate's own health probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProbeStatus {
    /// No probe has completed yet.
    #[default]
    Unknown,
    /// The last probe passed.
    Passing,
    /// The last probe failed.
    Failing,
}

/// The ids an upstream's `/v1/models` last returned (or its static list).
#[derive(Debug, Clone, Default)]
pub struct ModelList {
    /// Model ids, in the order advertised (the first one is "slot as truth").
    pub ids: Vec<String>,
    /// When fetched; `None` for a static list.
    pub fetched_at: Option<Instant>,
}

impl ModelList {
    /// Warm = non-empty.
    pub fn is_warm(&self) -> bool {
        !self.ids.is_empty()
    }
}

/// A state a control plane pushed with `PUT /admin/slots/{name}`.
#[derive(Debug, Clone, PartialEq)]
pub struct PushedState {
    /// The pushed lifecycle state.
    pub state: SlotState,
    /// The `progress` object as pushed (phase, requested_model, ...).
    pub progress: serde_json::Value,
}

/// Live state of one upstream, owned by the control thread.
#[derive(Debug, Clone, Default)]
pub struct LiveUpstream {
    /// Last health probe result.
    pub probe: ProbeStatus,
    /// When the last probe completed.
    pub last_probe_at: Option<Instant>,
    /// The model cache.
    pub models: Arc<ModelList>,
    /// From the first push on, a `slot` follows these and not its probes.
    pub pushed: Option<PushedState>,
    /// Resolved addresses (IP literal, or DNS done by the control thread).
    pub addrs: Arc<[SocketAddr]>,
    /// In-flight counters and the concurrency gate: shared with every worker, and the same `Arc`
    /// in every snapshot while the upstream's name stays (the control side keeps it on reload).
    pub counters: Arc<UpstreamCounters>,
}

/// Live state of every upstream, keyed by upstream name (case-insensitive).
#[derive(Debug, Clone, Default)]
pub struct LiveState {
    /// Per upstream, keyed by name.
    pub upstreams: HashMap<UpstreamName, LiveUpstream>,
}

/// One upstream as the snapshot sees it.
#[derive(Debug, Clone)]
pub struct UpstreamEntry {
    /// Its index in [`Snapshot::upstreams`](super::Snapshot::upstreams).
    pub id: UpstreamId,
    /// Its configuration.
    pub cfg: Arc<UpstreamConfig>,
    /// Its live state when the snapshot was built.
    pub live: LiveUpstream,
}

impl UpstreamEntry {
    /// The upstream's name as configured.
    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// The upstream's kind.
    pub fn kind(&self) -> UpstreamKind {
        self.cfg.kind
    }

    /// Its in-flight counters and concurrency gate (lock-free; shared by every worker).
    #[inline]
    pub fn counters(&self) -> &Arc<UpstreamCounters> {
        &self.live.counters
    }

    /// Its load now (requests in flight plus open streams), what replicas are compared by.
    #[inline]
    pub fn load(&self) -> u64 {
        self.live.counters.load()
    }

    /// The state the readiness gate uses (DESIGN.md §1, §3).
    pub fn state(&self) -> SlotState {
        match self.cfg.kind {
            UpstreamKind::Slot => match &self.live.pushed {
                Some(p) => p.state,
                None if self.live.probe == ProbeStatus::Passing => SlotState::Ready,
                None => SlotState::Offline,
            },
            UpstreamKind::Container => match self.live.probe {
                ProbeStatus::Passing => SlotState::Ready,
                ProbeStatus::Unknown => SlotState::Starting,
                ProbeStatus::Failing => SlotState::Offline,
            },
            UpstreamKind::Remote => {
                if self.cfg.probed() && self.live.probe == ProbeStatus::Failing {
                    SlotState::Offline
                } else {
                    SlotState::Ready
                }
            }
            UpstreamKind::Composite => SlotState::Offline,
        }
    }
}
