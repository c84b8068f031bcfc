//! Admission of a routed request (DESIGN.md §2, §3, §3a): dispatch with the fetches it asks for,
//! the replica pick inside a pool, the readiness gate (with `on_loading = "hold"` the request
//! waits for a publication that makes its target ready, re-dispatching each time), and the
//! concurrency gate's fair queue. Nothing here writes to the client.

use super::client::{client_gone, ClientConn};
use super::context::Worker;
use crate::admission::{clock_ms, HeldGuard, Permit, Priority};
use crate::config::{OnLoading, UpstreamConfig};
use crate::http::ErrorReply;
use crate::routing::{
    dispatch, dispatch_async, pick, Decision, FetchesDone, MemberLoad, PickReason, RequestFacts,
    SlotState, Snapshot, SnapshotRef, Step, UpstreamEntry,
};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How the readiness gate ended.
pub enum Ready {
    /// The decision's upstream is ready.
    Go(Decision),
    /// It is not, and holding (if configured) ran out: `503 slot.loading` unless a fallback
    /// takes the request.
    Loading(Decision, ErrorReply),
    /// Dispatch found nothing (`404 dispatch.no_route`): answered as is.
    Refused(ErrorReply),
    /// The client left while we waited.
    ClientGone,
}

/// Dispatch, the replica pick and the readiness gate, holding when the target says so.
/// `key` is the request's affinity key. `snap` moves on with every publication waited for.
pub async fn ready(
    w: &Rc<Worker>,
    c: &mut ClientConn,
    snap: &mut SnapshotRef,
    rf: &RequestFacts<'_>,
    key: Option<u64>,
) -> Ready {
    let cell = &w.shared.cell;
    let mut hold: Option<(Instant, HeldGuard)> = None;
    let mut woke = false;
    loop {
        let mut d = match decide(w, snap, rf).await {
            Ok(d) => d,
            Err(reply) => return Ready::Refused(reply),
        };
        pick_member(snap, rf, &mut d, key);
        let entry = snap.upstream(d.upstream);
        c.rec.routed(
            d.breadcrumb,
            entry.name(),
            d.route_header(snap),
            entry.live.models.is_warm(),
            d.stream,
        );
        let state = entry.state();
        if state.is_ready() {
            return Ready::Go(d);
        }
        if !woke && matches!(state, SlotState::Offline | SlotState::Error) {
            woke = true;
            super::port::wake(w, entry, rf.model_id());
        }
        let now = Instant::now();
        let deadline = hold_deadline(&entry.cfg, hold.as_ref().map(|h| h.0), now);
        if hold.is_none() && deadline > now {
            hold = Some((deadline, entry.counters().hold()));
            c.rec.wait_start();
        }
        if now >= deadline {
            let reply = super::reply::loading(snap, entry, rf.id(&snap.config.routing));
            return Ready::Loading(d, reply);
        }
        // Register for the next publication first, then look again: no lost wake-up.
        let next = cell.next_publish();
        let latest = cell.load();
        if latest.epoch != snap.epoch {
            *snap = Rc::new(latest);
            continue;
        }
        let woken = monoio::select! {
            r = monoio::time::timeout_at(deadline.into(), next) => Some(r.is_ok()),
            _ = client_gone(c.watch.as_ref()) => None,
        };
        let Some(woken) = woken else {
            return Ready::ClientGone;
        };
        if woken {
            *snap = Rc::new(cell.load());
        }
    }
}

/// Until when a request for a target that is not ready may wait: the deadline set when holding
/// began, else `hold_timeout_ms` from `now` with `on_loading = "hold"`, else `now` (refuse).
pub fn hold_deadline(cfg: &UpstreamConfig, since: Option<Instant>, now: Instant) -> Instant {
    match since {
        Some(d) => d,
        None if cfg.on_loading == OnLoading::Hold => {
            now + Duration::from_millis(cfg.hold_timeout_ms)
        }
        None => now,
    }
}

/// Runs dispatch on `snap`, performing the fetches it asks for (which may move `snap` on to a
/// fresher snapshot).
async fn decide(
    w: &Rc<Worker>,
    snap: &mut SnapshotRef,
    rf: &RequestFacts<'_>,
) -> Result<Decision, ErrorReply> {
    match dispatch(snap, rf, &FetchesDone::new()) {
        Step::Decided(r) => r.map_err(|e| e.to_reply()),
        Step::Fetch(_) => {
            let fetcher = super::port::PortFetcher::new(w);
            let routed = dispatch_async(snap, rf, &fetcher).await;
            if let Some(s) = routed.snapshot {
                *snap = Rc::new(s);
            }
            routed.result.map_err(|e| e.to_reply())
        }
    }
}

/// When the decision carries a replica pool, moves it to the member the picker chooses now
/// (least loaded among the eligible, or the affinity key's member within the slack).
pub fn pick_member(
    snap: &Snapshot,
    rf: &RequestFacts<'_>,
    d: &mut Decision,
    key: Option<u64>,
) -> Option<PickReason> {
    let members = snap.pool(d.pool?);
    let now = clock_ms();
    let load = |i: usize| {
        members.get(i).map_or(MemberLoad::default(), |m| {
            MemberLoad::of(snap.upstream(m.id), now)
        })
    };
    let (i, why) = pick(members, load, key, snap.config.routing.affinity_slack);
    if let Some(m) = members.get(i) {
        d.retarget(snap, rf, m);
    }
    Some(why)
}

/// How the concurrency gate ended.
pub enum Entered {
    /// Admitted (a permit when the upstream has a `max_inflight`).
    Go(Option<Permit>),
    /// Queue full or the wait timed out: `429 dispatch.busy` unless a fallback takes it.
    Busy(ErrorReply),
    /// The client left while queued.
    ClientGone,
}

/// The concurrency budget (DESIGN.md §3a): under the limit one CAS; over it a fair queue. A
/// waiting request holds no upstream connection.
pub async fn enter(
    c: &mut ClientConn,
    snap: &Snapshot,
    entry: &UpstreamEntry,
    prio: Priority,
) -> Entered {
    if entry.cfg.max_inflight == 0 {
        return Entered::Go(None);
    }
    let gate = &entry.counters().gate;
    if let Some(p) = gate.try_enter() {
        return Entered::Go(Some(p));
    }
    let wait = Duration::from_millis(entry.cfg.queue_timeout_ms);
    c.rec.wait_start();
    let res = monoio::select! {
        r = gate.enter(prio, wait) => r,
        _ = client_gone(c.watch.as_ref()) => return Entered::ClientGone,
    };
    c.rec.wait_end();
    match res {
        Ok(p) => Entered::Go(Some(p)),
        Err(why) => Entered::Busy(super::reply::busy(snap, entry, why)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UpstreamKind;

    #[test]
    fn hold_deadline_follows_on_loading_and_keeps_the_first_deadline() {
        let mut cfg = UpstreamConfig::new("s", UpstreamKind::Slot, Some("http://127.0.0.1:9/v1"));
        let now = Instant::now();
        assert_eq!(
            hold_deadline(&cfg, None, now),
            now,
            "reject: refuse at once"
        );
        cfg.on_loading = OnLoading::Hold;
        cfg.hold_timeout_ms = 1500;
        assert_eq!(
            hold_deadline(&cfg, None, now),
            now + Duration::from_millis(1500)
        );
        let first = now + Duration::from_millis(10);
        let later = now + Duration::from_millis(5000);
        assert_eq!(hold_deadline(&cfg, Some(first), later), first);
    }
}
