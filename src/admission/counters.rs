//! Per-upstream in-flight accounting (DESIGN.md §3 "counts as serving", §3a): lock-free atomics
//! that workers bump on the request path and the admin API reads, plus the wake hook's debounce
//! latch (DESIGN.md §3a `wake_url`), so workers decide without asking the control plane.

use super::breaker::{Cooldown, RetryBudget};
use super::gate::Gate;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// In-flight requests and open streams of one upstream, shared by every worker.
///
/// The `Arc` travels in the routing snapshot (the upstream's live state): a worker takes it from
/// the entry it routed to and holds a guard for the request's life. The control plane hands the
/// same `Arc` to every later snapshot while the upstream's name stays, so a request that started
/// before a reload still decrements what it incremented.
pub struct UpstreamCounters {
    requests: AtomicU64,
    streams: AtomicU64,
    total: AtomicU64,
    held: AtomicU64,
    /// When the wake hook was last claimed, in ms after `born` plus one (0 = never / forgotten).
    woke_at: AtomicU64,
    born: Instant,
    /// The upstream's concurrency budget (`max_inflight`, `max_queue`; 0 = unlimited).
    pub gate: Arc<Gate>,
    /// The cooldown circuit breaker (`cooldown_after`, `cooldown_ms`).
    pub cooldown: Cooldown,
    /// The retry budget of fallbacks away from this upstream.
    pub budget: RetryBudget,
}

impl Default for UpstreamCounters {
    fn default() -> Self {
        UpstreamCounters {
            requests: AtomicU64::new(0),
            streams: AtomicU64::new(0),
            total: AtomicU64::new(0),
            held: AtomicU64::new(0),
            woke_at: AtomicU64::new(0),
            born: Instant::now(),
            gate: Gate::new(0, 0),
            cooldown: Cooldown::default(),
            budget: RetryBudget::default(),
        }
    }
}

impl std::fmt::Debug for UpstreamCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamCounters")
            .field("requests", &self.requests())
            .field("streams", &self.streams())
            .field("held", &self.held())
            .field("queued", &self.gate.waiting())
            .finish()
    }
}

impl UpstreamCounters {
    /// Counts one request in flight until the guard drops.
    pub fn request(self: &Arc<Self>) -> InflightGuard {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        InflightGuard {
            counters: self.clone(),
            stream: false,
        }
    }

    /// Counts one request held while the upstream loads, until the guard drops.
    pub fn hold(self: &Arc<Self>) -> HeldGuard {
        self.held.fetch_add(1, Ordering::Relaxed);
        HeldGuard {
            counters: self.clone(),
        }
    }

    /// Requests held (`on_loading = "hold"`) now.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// Requests in flight now.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Streaming responses open now.
    pub fn streams(&self) -> u64 {
        self.streams.load(Ordering::Relaxed)
    }

    /// Requests started since the upstream appeared.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// The load figure replicas are compared by: requests in flight plus open streams.
    #[inline]
    pub fn load(&self) -> u64 {
        self.requests() + self.streams()
    }

    /// Claims the right to fire the wake hook at `now`: true for exactly one caller per
    /// `debounce` window across every worker (one compare-and-swap; no lock).
    pub fn claim_wake(&self, now: Instant, debounce: Duration) -> bool {
        let at = now.saturating_duration_since(self.born).as_millis() as u64 + 1;
        let last = self.woke_at.load(Ordering::Relaxed);
        if last != 0 && at.saturating_sub(last) < debounce.as_millis() as u64 {
            return false;
        }
        self.woke_at
            .compare_exchange(last, at, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Forgets the last wake (the upstream became ready), so the next outage wakes again.
    pub fn forget_wake(&self) {
        self.woke_at.store(0, Ordering::Relaxed);
    }
}

/// Keeps one request counted; [`InflightGuard::streaming`] also counts it as an open stream.
#[derive(Debug)]
pub struct InflightGuard {
    counters: Arc<UpstreamCounters>,
    stream: bool,
}

impl InflightGuard {
    /// Marks the request as an open stream (idempotent) until the guard drops.
    pub fn streaming(&mut self) {
        if !self.stream {
            self.stream = true;
            self.counters.streams.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.counters.requests.fetch_sub(1, Ordering::Relaxed);
        if self.stream {
            self.counters.streams.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_count_and_uncount() {
        let c = Arc::new(UpstreamCounters::default());
        let g1 = c.request();
        let mut g2 = c.request();
        g2.streaming();
        g2.streaming();
        assert_eq!((c.requests(), c.streams(), c.total()), (2, 1, 2));
        drop(g2);
        assert_eq!((c.requests(), c.streams()), (1, 0));
        drop(g1);
        assert_eq!((c.requests(), c.total()), (0, 2));
    }

    #[test]
    fn one_wake_per_debounce_window() {
        let c = UpstreamCounters::default();
        let t0 = Instant::now();
        let d = Duration::from_secs(30);
        assert!(c.claim_wake(t0, d));
        assert!(!c.claim_wake(t0, d));
        assert!(!c.claim_wake(t0 + Duration::from_secs(29), d));
        assert!(c.claim_wake(t0 + Duration::from_secs(31), d));
        c.forget_wake();
        assert!(c.claim_wake(t0 + Duration::from_secs(32), d));
    }

    #[test]
    fn load_is_requests_plus_streams() {
        let c = Arc::new(UpstreamCounters::default());
        let _a = c.request();
        let mut b = c.request();
        b.streaming();
        assert_eq!(c.load(), 3);
    }
}

/// Keeps one held request counted.
#[derive(Debug)]
pub struct HeldGuard {
    counters: Arc<UpstreamCounters>,
}

impl Drop for HeldGuard {
    fn drop(&mut self) {
        self.counters.held.fetch_sub(1, Ordering::Relaxed);
    }
}
