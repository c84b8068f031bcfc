//! Fallback chains (DESIGN-NOTES "Fallback chains"): when the upstream a request was first sent
//! to cannot take it — it would answer `503 slot.loading` or `429 dispatch.busy`, it is cooling
//! down, or the attempt failed before any response byte — the request moves on to the next
//! upstream of that upstream's `fallback` list that can take it now. Fallbacks that follow a
//! failed attempt spend from the first upstream's retry budget.

use crate::admission::clock_ms;
use crate::config::UpstreamKind;
use crate::routing::{MemberLoad, Snapshot, UpstreamId};

/// Why a request moves on to a fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The upstream is loading (after `hold_timeout_ms` when holding): `503 slot.loading`.
    Loading,
    /// Its concurrency queue is full or the wait timed out: `429 dispatch.busy`.
    Busy,
    /// Its cooldown breaker is open.
    Cooling,
    /// The attempt failed before the first response byte (connect failure, head timeout).
    Failed,
    /// A failure no fallback may follow (the upstream may have acted on the request).
    Final,
}

impl Trigger {
    /// The label used in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Loading => "loading",
            Trigger::Busy => "busy",
            Trigger::Cooling => "cooling",
            Trigger::Failed => "failed",
            Trigger::Final => "final",
        }
    }

    /// Fallbacks after a failed attempt double the work (the first upstream saw the request);
    /// only those spend the retry budget. The others send the request to exactly one upstream.
    pub fn spends_budget(self) -> bool {
        self == Trigger::Failed
    }
}

/// Where a request stands in the fallback chain of the upstream it was first sent to.
#[derive(Debug, Clone)]
pub struct Chain {
    /// The upstream first chosen (whose `fallback` list and retry budget count).
    pub first: UpstreamId,
    next: usize,
}

impl Chain {
    /// The chain of `first`.
    pub fn new(first: UpstreamId) -> Chain {
        Chain { first, next: 0 }
    }

    /// Whether some later fallback could take a request now (without moving along the chain).
    pub fn has_next(&self, snap: &Snapshot) -> bool {
        self.clone().next(snap, Trigger::Cooling).is_some()
    }

    /// Moves on for `trigger`: the next fallback that can take the request now (ready, not busy,
    /// not cooling), or `None` when none can, the trigger allows none, or the first upstream's
    /// retry budget is spent.
    pub fn next(&mut self, snap: &Snapshot, trigger: Trigger) -> Option<UpstreamId> {
        if trigger == Trigger::Final {
            return None;
        }
        let first = snap.upstream(self.first);
        let now = clock_ms();
        let names = &first.cfg.fallback;
        let found = loop {
            let name = names.get(self.next)?;
            self.next += 1;
            let Some(u) = snap.by_name(name) else {
                continue;
            };
            if u.kind() != UpstreamKind::Composite && MemberLoad::of(u, now).eligible {
                break u.id;
            }
        };
        if trigger.spends_budget() {
            let cfg = &first.cfg;
            let budget = &first.counters().budget;
            if !budget.try_spend(now, cfg.retry_budget_percent, cfg.retry_budget_min) {
                self.next = names.len();
                return None;
            }
        }
        Some(found)
    }
}
