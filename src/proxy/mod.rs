//! The data plane: workers, client connections, upstream pool and response relay
//! (DESIGN.md §3, §7).

#![deny(clippy::string_slice, clippy::indexing_slicing)]

pub(crate) mod admit;
mod attempt;
pub(crate) mod chain;
mod client;
mod conn;
pub mod contain;
pub mod context;
mod drain;
mod exchange;
mod forward;
pub mod front;
mod front_auth;
pub mod pool;
pub mod port;
mod relay;
mod reply;
pub mod request_id;
mod send;
mod stream;
pub(crate) mod sys;
mod tls_stream;
pub mod upstream_error;
pub mod worker;

pub use exchange::loading_reply;
pub use worker::{spawn_workers, Driver, Workers};

use crate::config::Tuning;
use crate::metrics::Metrics;
use crate::port::Port;
use crate::routing::SnapshotCell;
use crate::tls::FrontDoor;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Process-wide state the workers share (read-mostly).
pub struct Shared {
    /// The published routing snapshot.
    pub cell: Arc<SnapshotCell>,
    /// Tuning in force at start.
    pub tuning: Tuning,
    /// Set on SIGTERM: stop accepting, finish in-flight exchanges, close idle connections.
    pub draining: AtomicBool,
    /// What workers tell the control plane (a refused connect, a wake, a cold fetch): the only
    /// way to it, and it never blocks (DESIGN.md §7).
    pub port: Port,
    /// The front door's TLS certificate (the control plane swaps it on reload).
    pub front_door: Arc<FrontDoor>,
    /// Seed of generated request ids (differs per process).
    pub id_seed: u64,
    /// Per-worker recorders, merged at scrape (`GET /metrics`).
    pub metrics: Arc<Metrics>,
    /// Debug builds with `SLOTGATE_TEST_PANICS=1`: requests may ask for a panic
    /// (`contain::test_panic_point`), so tests can prove a panic stays on its connection.
    pub test_panics: bool,
}

impl Shared {
    /// Shared state over `cell`, reporting through `port`.
    pub fn new(
        tuning: Tuning,
        cell: Arc<SnapshotCell>,
        port: Port,
        front_door: Arc<FrontDoor>,
    ) -> Shared {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Shared {
            cell,
            tuning,
            draining: AtomicBool::new(false),
            port,
            front_door,
            id_seed: t ^ (u64::from(std::process::id()) << 32),
            metrics: Arc::new(Metrics::new()),
            test_panics: cfg!(debug_assertions)
                && std::env::var_os("SLOTGATE_TEST_PANICS").is_some_and(|v| v == "1"),
        }
    }

    /// Whether a drain is in progress.
    #[inline]
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}
