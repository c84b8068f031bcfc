//! Per-upstream failure guards shared by every worker (DESIGN-NOTES "Fallback chains"): the
//! cooldown circuit breaker and the retry budget. Lock-free atomics; time is passed in as
//! milliseconds on a monotonic clock, so tests drive them with a simulated one.
//!
//! - [`Cooldown`]: after `cooldown_after` consecutive failures (connect refused/reset, or a 5xx
//!   before the first response byte) the upstream is skipped for `cooldown_ms` (or the
//!   upstream's own `Retry-After`, when longer); then one trial request goes through, and its
//!   outcome closes the breaker or opens it again.
//! - [`RetryBudget`]: fallbacks and retries away from an upstream may be at most `percent` of its
//!   requests over a sliding 10 s window, or `min` per window, whichever is more, so a dead local
//!   slot cannot double its traffic onto a paid provider.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// The longest an upstream's own `Retry-After` extends a cooldown (one hour).
pub const MAX_RETRY_AFTER_MS: u64 = 3_600_000;

/// The retry budget's window.
pub const BUDGET_WINDOW_MS: u64 = 10_000;

/// A circuit breaker: closed, open until a deadline, then half-open for one trial request.
#[derive(Debug, Default)]
pub struct Cooldown {
    /// Consecutive failures since the last success.
    failures: AtomicU32,
    /// Open until this time (ms); 0 = closed.
    until_ms: AtomicU64,
    /// When the half-open trial went out (ms); 0 = none in flight.
    trial_ms: AtomicU64,
}

/// What a recorded failure did to the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tripped {
    /// Still closed (fewer than `cooldown_after` consecutive failures).
    No,
    /// Opened now, until the given time (ms).
    Until(u64),
}

impl Cooldown {
    /// Closed (no failure streak long enough to open it): the common case, one atomic load, no
    /// clock needed.
    #[inline]
    pub fn is_closed(&self) -> bool {
        self.until_ms.load(Ordering::Acquire) == 0
    }

    /// Whether a request may go to the upstream at `now`. Past the cooldown exactly one caller
    /// gets `true` (the trial); a trial that never reported back is replaced after `trial_ms`.
    pub fn admits(&self, now: u64, trial_timeout_ms: u64) -> bool {
        let until = self.until_ms.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        if now < until {
            return false;
        }
        let trial = self.trial_ms.load(Ordering::Acquire);
        if trial != 0 && now.saturating_sub(trial) < trial_timeout_ms {
            return false;
        }
        self.trial_ms
            .compare_exchange(trial, now.max(1), Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Whether the breaker is open (or half-open with its trial out) at `now`: for the admin
    /// API and metrics, and for skipping pool members without spending the trial.
    pub fn is_cooling(&self, now: u64) -> bool {
        let until = self.until_ms.load(Ordering::Acquire);
        until != 0 && (now < until || self.trial_ms.load(Ordering::Acquire) != 0)
    }

    /// Consecutive failures since the last success (for the admin API).
    pub fn failures(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Remaining cooldown at `now`, in ms (0 when closed or past the deadline).
    pub fn remaining_ms(&self, now: u64) -> u64 {
        self.until_ms.load(Ordering::Acquire).saturating_sub(now)
    }

    /// A request reached the upstream and got a response head below 500: close the breaker.
    pub fn record_success(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if self.until_ms.load(Ordering::Relaxed) != 0 {
            self.until_ms.store(0, Ordering::Release);
            self.trial_ms.store(0, Ordering::Release);
        }
    }

    /// A connect failure or a 5xx before the first response byte at `now`. `after` failures in
    /// a row open the breaker for `cooldown_ms` (or `retry_after_ms`, when longer); a failed
    /// trial reopens it at once. `after = 0` never opens it.
    pub fn record_failure(
        &self,
        now: u64,
        after: u32,
        cooldown_ms: u64,
        retry_after_ms: u64,
    ) -> Tripped {
        let n = self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let trial_failed = self.trial_ms.load(Ordering::Acquire) != 0;
        if after == 0 || (n < after && !trial_failed) {
            return Tripped::No;
        }
        // An upstream's `Retry-After` is its bytes: bounded, so a huge one cannot overflow the
        // clock or shut the upstream out for days.
        let wait = cooldown_ms.max(retry_after_ms.min(MAX_RETRY_AFTER_MS));
        let until = now.max(1).saturating_add(wait);
        self.until_ms.store(until, Ordering::Release);
        self.trial_ms.store(0, Ordering::Release);
        Tripped::Until(until)
    }
}

/// Requests and retries over a sliding window: the current window's counts plus the previous
/// window's, weighted by how much of it still overlaps.
#[derive(Debug, Default)]
pub struct RetryBudget {
    /// Start of the current window (ms).
    start_ms: AtomicU64,
    cur_requests: AtomicU64,
    cur_retries: AtomicU64,
    prev_requests: AtomicU64,
    prev_retries: AtomicU64,
}

impl RetryBudget {
    /// Counts one request sent to the upstream at `now`.
    pub fn record_request(&self, now: u64) {
        self.roll(now);
        self.cur_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one retry (a fallback or a retry away from the upstream) at `now` if the budget
    /// allows: retries ≤ max(`min`, `percent`% of requests) over the window.
    pub fn try_spend(&self, now: u64, percent: u32, min: u32) -> bool {
        self.roll(now);
        let (requests, retries) = self.window(now);
        let allowed = (requests * u64::from(percent) / 100).max(u64::from(min));
        if retries >= allowed {
            return false;
        }
        self.cur_retries.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// `(requests, retries)` over the sliding window at `now`.
    pub fn window(&self, now: u64) -> (u64, u64) {
        let start = self.start_ms.load(Ordering::Acquire);
        let into = now.saturating_sub(start).min(BUDGET_WINDOW_MS);
        let weigh = |prev: u64| prev * (BUDGET_WINDOW_MS - into) / BUDGET_WINDOW_MS;
        (
            self.cur_requests.load(Ordering::Relaxed)
                + weigh(self.prev_requests.load(Ordering::Relaxed)),
            self.cur_retries.load(Ordering::Relaxed)
                + weigh(self.prev_retries.load(Ordering::Relaxed)),
        )
    }

    /// Starts a new window when the current one is over; one caller wins the race, the others
    /// count into whichever window they see (off by a request at most).
    fn roll(&self, now: u64) {
        let start = self.start_ms.load(Ordering::Acquire);
        if now < start + BUDGET_WINDOW_MS {
            return;
        }
        let fresh = now - (now.saturating_sub(start) % BUDGET_WINDOW_MS);
        if self
            .start_ms
            .compare_exchange(start, fresh, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        let adjacent = fresh == start + BUDGET_WINDOW_MS;
        let (req, ret) = (
            self.cur_requests.swap(0, Ordering::Relaxed),
            self.cur_retries.swap(0, Ordering::Relaxed),
        );
        self.prev_requests
            .store(if adjacent { req } else { 0 }, Ordering::Relaxed);
        self.prev_retries
            .store(if adjacent { ret } else { 0 }, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cooldown_opens_after_n_failures_then_lets_one_trial_through() {
        let c = Cooldown::default();
        assert!(c.admits(1_000, 10_000));
        assert_eq!(c.record_failure(1_000, 3, 10_000, 0), Tripped::No);
        assert_eq!(c.record_failure(1_100, 3, 10_000, 0), Tripped::No);
        assert_eq!(c.failures(), 2);
        assert_eq!(
            c.record_failure(1_200, 3, 10_000, 0),
            Tripped::Until(11_200)
        );
        assert!(!c.admits(5_000, 10_000));
        assert!(c.is_cooling(5_000));
        assert_eq!(c.remaining_ms(5_000), 6_200);
        // Past the deadline: one trial, nobody else.
        assert!(c.admits(11_200, 10_000));
        assert!(!c.admits(11_300, 10_000));
        assert!(c.is_cooling(11_300));
        // The trial succeeds: closed.
        c.record_success();
        assert_eq!(c.failures(), 0);
        assert!(c.admits(11_400, 10_000));
        assert!(!c.is_cooling(11_400));
        assert_eq!(c.record_failure(11_500, 3, 10_000, 0), Tripped::No);
    }

    #[test]
    fn a_failed_trial_reopens_at_once_and_retry_after_counts() {
        let c = Cooldown::default();
        for t in 0..3 {
            c.record_failure(100 + t, 3, 1_000, 0);
        }
        assert!(c.admits(2_000, 5_000));
        assert_eq!(
            c.record_failure(2_000, 3, 1_000, 30_000),
            Tripped::Until(32_000)
        );
        assert!(!c.admits(31_999, 5_000));
        assert!(c.admits(32_000, 5_000));
    }

    #[test]
    fn a_huge_retry_after_is_bounded() {
        let c = Cooldown::default();
        let until = c.record_failure(5, 1, 1_000, u64::MAX);
        assert_eq!(until, Tripped::Until(5 + MAX_RETRY_AFTER_MS));
    }

    #[test]
    fn a_lost_trial_is_replaced_and_zero_never_opens() {
        let c = Cooldown::default();
        for _ in 0..3 {
            c.record_failure(10, 3, 100, 0);
        }
        assert!(c.admits(200, 1_000));
        assert!(!c.admits(900, 1_000));
        assert!(
            c.admits(1_300, 1_000),
            "a trial that never reported is replaced"
        );
        let never = Cooldown::default();
        for t in 0..100 {
            assert_eq!(never.record_failure(t, 0, 100, 0), Tripped::No);
        }
        assert!(never.admits(50, 1_000));
    }

    #[test]
    fn budget_is_a_share_of_requests_with_a_floor() {
        let b = RetryBudget::default();
        let t0 = 100_000;
        // No traffic: the floor (3 per window).
        assert!(b.try_spend(t0, 20, 3));
        assert!(b.try_spend(t0, 20, 3));
        assert!(b.try_spend(t0, 20, 3));
        assert!(!b.try_spend(t0, 20, 3));
        // 100 requests: 20% = 20 retries in all.
        for _ in 0..100 {
            b.record_request(t0 + 1);
        }
        let mut granted = 3;
        while b.try_spend(t0 + 2, 20, 3) {
            granted += 1;
        }
        assert_eq!(granted, 20);
    }

    #[test]
    fn budget_slides_with_time() {
        let b = RetryBudget::default();
        let t0 = 50_000;
        b.record_request(t0); // opens a window at t0
        for _ in 0..9 {
            b.record_request(t0);
        }
        while b.try_spend(t0, 20, 3) {}
        assert_eq!(b.window(t0), (10, 3));
        // Half of the next window: half of the old counts still weigh.
        b.record_request(t0 + 15_000);
        assert_eq!(b.window(t0 + 15_000), (1 + 5, 1));
        // Long idle: everything forgotten, the floor again.
        assert!(b.try_spend(t0 + 100_000, 20, 3));
        assert_eq!(b.window(t0 + 100_000), (0, 1));
    }
}
