//! The concurrency gate (DESIGN.md §3a): a per-upstream budget with a fair priority queue.
//!
//! The budget is shared by every worker. Under the limit, entering is one compare-and-swap and
//! leaving is one atomic decrement plus one atomic load: no lock on the fast path. Only when the
//! budget is exhausted does a request take the queue's lock, enqueue a oneshot and wait; a
//! leaving request then hands its permit straight to the best waiter (so the budget is never
//! exceeded, and a woken waiter never has to race newcomers for it).
//!
//! Queue order: each waiter gets a virtual deadline `enqueued_at + offset(priority)` (high 0 s,
//! normal 2 s, low 4 s) and the smallest deadline goes first. Within a class that is FIFO; across
//! classes a `high` request overtakes `low` ones, but a `low` request that has waited 4 s beats a
//! fresh `high` one, so nothing starves.

use futures_channel::oneshot;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A request's queue priority (from the configured priority header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    High,
    Normal,
    Low,
}

impl Priority {
    /// Parses a header value; anything unknown is `Normal`.
    pub fn parse(v: &[u8]) -> Priority {
        if v.eq_ignore_ascii_case(b"high") {
            Priority::High
        } else if v.eq_ignore_ascii_case(b"low") {
            Priority::Low
        } else {
            Priority::Normal
        }
    }

    /// How much later than a `high` request this class is served (its aging handicap).
    fn offset(self) -> Duration {
        match self {
            Priority::High => Duration::ZERO,
            Priority::Normal => Duration::from_secs(2),
            Priority::Low => Duration::from_secs(4),
        }
    }
}

struct Waiter {
    id: u64,
    deadline: Instant,
    tx: oneshot::Sender<Permit>,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The queue is full.
    QueueFull,
    /// The wait passed `queue_timeout_ms`.
    Timeout,
}

/// One upstream's concurrency budget across all workers.
pub struct Gate {
    max: AtomicU32,
    max_queue: AtomicU32,
    inflight: AtomicU32,
    waiting: AtomicU32,
    next_id: AtomicU64,
    queue: Mutex<VecDeque<Waiter>>,
    /// Longest wait seen, in microseconds (for metrics).
    pub max_wait_us: AtomicU64,
    /// Requests refused with 429.
    pub refused: AtomicU64,
}

/// Holds one unit of a gate's budget; released on drop (handed to the next waiter if any).
pub struct Permit {
    gate: Option<Arc<Gate>>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(g) = self.gate.take() {
            g.release();
        }
    }
}

impl Gate {
    /// A gate admitting `max` at once (0 = unlimited) with `max_queue` waiters.
    pub fn new(max: u32, max_queue: u32) -> Arc<Gate> {
        Arc::new(Gate {
            max: AtomicU32::new(max),
            max_queue: AtomicU32::new(max_queue),
            inflight: AtomicU32::new(0),
            waiting: AtomicU32::new(0),
            next_id: AtomicU64::new(0),
            queue: Mutex::new(VecDeque::new()),
            max_wait_us: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// Changes the limits (reload). Raising `max` lets waiters in at once.
    pub fn set_limits(self: &Arc<Self>, max: u32, max_queue: u32) {
        self.max.store(max, Ordering::SeqCst);
        self.max_queue.store(max_queue, Ordering::SeqCst);
        let mut q = self.queue.lock();
        self.grant_locked(&mut q);
    }

    /// Requests holding a permit now.
    pub fn inflight(&self) -> u32 {
        self.inflight.load(Ordering::Relaxed)
    }

    /// Requests waiting in the queue now.
    pub fn waiting(&self) -> u32 {
        self.waiting.load(Ordering::Relaxed)
    }

    /// At its limit with a full queue: a request now would be refused (`429 dispatch.busy`).
    pub fn is_busy(&self) -> bool {
        let max = self.max.load(Ordering::Relaxed);
        max > 0
            && self.inflight.load(Ordering::Relaxed) >= max
            && self.waiting.load(Ordering::Relaxed) >= self.max_queue.load(Ordering::Relaxed)
    }

    /// The configured limit (0 = unlimited).
    pub fn limit(&self) -> u32 {
        self.max.load(Ordering::Relaxed)
    }

    fn try_acquire(&self) -> bool {
        let max = self.max.load(Ordering::SeqCst);
        let mut cur = self.inflight.load(Ordering::SeqCst);
        loop {
            if max != 0 && cur >= max {
                return false;
            }
            match self.inflight.compare_exchange_weak(
                cur,
                cur + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    /// Takes a permit now if the budget allows (the fast path: no lock).
    pub fn try_enter(self: &Arc<Self>) -> Option<Permit> {
        self.try_acquire().then(|| Permit {
            gate: Some(self.clone()),
        })
    }

    /// Takes a permit, waiting in the queue up to `timeout` when the budget is exhausted.
    pub async fn enter(
        self: &Arc<Self>,
        priority: Priority,
        timeout: Duration,
    ) -> Result<Permit, Refusal> {
        if let Some(p) = self.try_enter() {
            return Ok(p);
        }
        let started = Instant::now();
        let (id, rx) = {
            let mut q = self.queue.lock();
            // Announce the wait before re-checking, so a release either sees us waiting or
            // happened before our re-check (which then succeeds): no lost wake-up.
            self.waiting.fetch_add(1, Ordering::SeqCst);
            if self.try_acquire() {
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                return Ok(Permit {
                    gate: Some(self.clone()),
                });
            }
            if q.len() as u32 >= self.max_queue.load(Ordering::SeqCst) {
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                self.refused.fetch_add(1, Ordering::Relaxed);
                return Err(Refusal::QueueFull);
            }
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            let w = Waiter {
                id,
                deadline: started + priority.offset(),
                tx,
            };
            let at = q.partition_point(|x| x.deadline <= w.deadline);
            q.insert(at, w);
            (id, rx)
        };
        let mut guard = WaitGuard {
            gate: self,
            id,
            rx: Some(rx),
        };
        let rx = guard.rx.as_mut().expect("receiver");
        let res = monoio::time::timeout(timeout, rx).await;
        let waited = started.elapsed().as_micros() as u64;
        self.max_wait_us.fetch_max(waited, Ordering::Relaxed);
        match res {
            Ok(Ok(p)) => {
                guard.rx = None;
                Ok(p)
            }
            _ => {
                // Dropping the guard leaves the queue (or releases a permit granted meanwhile).
                drop(guard);
                self.refused.fetch_add(1, Ordering::Relaxed);
                Err(Refusal::Timeout)
            }
        }
    }

    fn release(self: &Arc<Self>) {
        if self.waiting.load(Ordering::SeqCst) == 0 {
            self.inflight.fetch_sub(1, Ordering::SeqCst);
            if self.waiting.load(Ordering::SeqCst) == 0 {
                return;
            }
            let mut q = self.queue.lock();
            self.grant_locked(&mut q);
            return;
        }
        let mut q = self.queue.lock();
        // Hand the permit over directly: the budget stays at its level.
        while let Some(w) = q.pop_front() {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            let p = Permit {
                gate: Some(self.clone()),
            };
            match w.tx.send(p) {
                Ok(()) => return,
                Err(mut p) => {
                    // That waiter is gone; its permit must not run `release` recursively here.
                    p.gate = None;
                }
            }
        }
        self.inflight.fetch_sub(1, Ordering::SeqCst);
    }

    /// Lets waiters in while the budget has room (after a release on the fast path or a raised
    /// limit).
    fn grant_locked(self: &Arc<Self>, q: &mut VecDeque<Waiter>) {
        while !q.is_empty() && self.try_acquire() {
            let w = q.pop_front().expect("non-empty");
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            let p = Permit {
                gate: Some(self.clone()),
            };
            if let Err(mut p) = w.tx.send(p) {
                p.gate = None;
                self.inflight.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
}

/// Leaves the queue when a wait ends without a permit (timeout, or the request was dropped).
struct WaitGuard<'a> {
    gate: &'a Arc<Gate>,
    id: u64,
    rx: Option<oneshot::Receiver<Permit>>,
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        let Some(mut rx) = self.rx.take() else {
            return;
        };
        {
            let mut q = self.gate.queue.lock();
            if let Some(i) = q.iter().position(|w| w.id == self.id) {
                q.remove(i);
                self.gate.waiting.fetch_sub(1, Ordering::SeqCst);
                return;
            }
        }
        // Not queued any more: a permit was sent to us; dropping it passes it on.
        if let Ok(Some(p)) = rx.try_recv() {
            drop(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>> {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap()
    }

    #[test]
    fn fast_path_and_limit() {
        let g = Gate::new(2, 0);
        let a = g.try_enter().unwrap();
        let _b = g.try_enter().unwrap();
        assert!(g.try_enter().is_none());
        drop(a);
        assert_eq!(g.inflight(), 1);
        assert!(g.try_enter().is_some());
    }

    #[test]
    fn full_queue_refuses_and_timeout_leaves() {
        rt().block_on(async {
            let g = Gate::new(1, 0);
            let _p = g.try_enter().unwrap();
            let r = g.enter(Priority::Normal, Duration::from_millis(10)).await;
            assert_eq!(r.err(), Some(Refusal::QueueFull));
            let g = Gate::new(1, 4);
            let _p = g.try_enter().unwrap();
            let r = g.enter(Priority::Normal, Duration::from_millis(20)).await;
            assert_eq!(r.err(), Some(Refusal::Timeout));
            assert_eq!(g.waiting(), 0);
            assert_eq!(g.inflight(), 1);
        });
    }

    #[test]
    fn permits_handed_over_in_priority_then_fifo_order() {
        rt().block_on(async {
            let g = Gate::new(1, 16);
            let first = g.try_enter().unwrap();
            let order = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
            let mut tasks = Vec::new();
            for (i, p) in [
                Priority::Low,
                Priority::Low,
                Priority::Normal,
                Priority::High,
                Priority::Low,
            ]
            .into_iter()
            .enumerate()
            {
                let (g, o) = (g.clone(), order.clone());
                tasks.push(monoio::spawn(async move {
                    let permit = g.enter(p, Duration::from_secs(5)).await.unwrap();
                    o.borrow_mut().push(i);
                    monoio::time::sleep(Duration::from_millis(1)).await;
                    drop(permit);
                }));
                monoio::time::sleep(Duration::from_millis(2)).await;
            }
            assert_eq!(g.waiting(), 5);
            drop(first);
            for t in tasks {
                t.await;
            }
            assert_eq!(*order.borrow(), vec![3, 2, 0, 1, 4]);
            assert_eq!(g.inflight(), 0);
        });
    }

    #[test]
    fn raising_the_limit_admits_waiters() {
        rt().block_on(async {
            let g = Gate::new(1, 4);
            let _p = g.try_enter().unwrap();
            let g2 = g.clone();
            let t = monoio::spawn(async move {
                g2.enter(Priority::Normal, Duration::from_secs(5))
                    .await
                    .is_ok()
            });
            monoio::time::sleep(Duration::from_millis(5)).await;
            g.set_limits(2, 4);
            assert!(t.await);
        });
    }
}
