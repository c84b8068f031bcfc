//! Admission on the request path (DESIGN.md §3 "counts as serving", §3a): per-upstream
//! concurrency budgets with a fair priority queue, the lock-free counters workers bump, and the
//! cooldown breaker and retry budget that guard fallbacks (DESIGN-NOTES "Fallback chains").
//!
//! A leaf of the crate: it imports nothing else from slotgate, so the routing snapshot can carry
//! the counters and the workers can run the gate without reaching the control plane.

mod breaker;
mod counters;
mod gate;

pub use breaker::{Cooldown, RetryBudget, Tripped, BUDGET_WINDOW_MS};
pub use counters::{HeldGuard, InflightGuard, UpstreamCounters};
pub use gate::{Gate, Permit, Priority, Refusal};

/// Milliseconds on the process's monotonic clock: the time base of [`Cooldown`] and
/// [`RetryBudget`] (shared by every worker, never 0).
pub fn clock_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(std::time::Instant::now);
    start.elapsed().as_millis() as u64 + 1
}
