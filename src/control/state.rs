//! Live upstream state and its publication (DESIGN.md §1, §7 "Control thread", "Snapshot"):
//! every change to probe results, model caches, pushed slot states or addresses goes through
//! [`Live`]'s one lock and ends in one publish that builds the next [`Snapshot`].
//!
//! Only control threads (the port's handler, probers, fetches, admin, reloads) call in here;
//! workers read the published [`SnapshotCell`].

use super::flight::Flights;
use super::upstream::{upstream_cfg, Ident};
use crate::admission::UpstreamCounters;
use crate::config::{Config, UpstreamConfig, UpstreamKind, UpstreamName};
use crate::routing::{
    LiveState, LiveUpstream, ModelList, ProbeStatus, PushedState, Snapshot, SnapshotCell,
};
use parking_lot::Mutex;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Weak};
use std::time::Instant;

/// Why `PUT /admin/slots/{name}` was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushError {
    /// No upstream has that name.
    UnknownSlot,
    /// The upstream exists but is not a `slot`.
    NotASlot(UpstreamKind),
}

struct State {
    config: Arc<Config>,
    live: LiveState,
    epoch: u64,
}

/// The live state under its lock, the cell it publishes into, and the single-flight table of
/// model-list fetches (their threads report back here).
pub(crate) struct Live {
    state: Mutex<State>,
    cell: Arc<SnapshotCell>,
    pub(crate) flights: Flights,
    me: Weak<Live>,
}

impl Live {
    /// Live state for `config` (every upstream fresh) publishing into `cell`; publishes its first
    /// snapshot at once (epoch = the cell's + 1).
    pub(crate) fn new(config: Config, cell: Arc<SnapshotCell>) -> Arc<Live> {
        let config = Arc::new(config);
        let live = merge_live(&config, LiveState::default(), &config);
        let epoch = cell.epoch();
        let l = Arc::new_cyclic(|me| Live {
            state: Mutex::new(State {
                config,
                live,
                epoch,
            }),
            cell,
            flights: Flights::default(),
            me: me.clone(),
        });
        l.publish_locked(&mut l.state.lock());
        l
    }

    /// A strong handle to self (for threads this spawns).
    pub(crate) fn arc(&self) -> Arc<Live> {
        self.me.upgrade().expect("live state alive while in use")
    }

    /// The cell workers read snapshots from.
    pub(crate) fn cell(&self) -> &Arc<SnapshotCell> {
        &self.cell
    }

    /// The current snapshot.
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.cell.load()
    }

    /// The config in force.
    pub(crate) fn config(&self) -> Arc<Config> {
        self.state.lock().config.clone()
    }

    /// Live state and config under one lock (fresher than the snapshot: probe times are recorded
    /// without publishing).
    pub(crate) fn view(&self) -> (Arc<Config>, LiveState, u64) {
        let st = self.state.lock();
        (st.config.clone(), st.live.clone(), st.epoch)
    }

    /// `name`'s counters, from the published snapshot (lock-free).
    pub(crate) fn counters(&self, name: &str) -> Option<Arc<UpstreamCounters>> {
        Some(self.cell.load().by_name(name)?.counters().clone())
    }

    /// Builds and publishes the next snapshot. Called with the state lock held, so epochs are
    /// published in order and a snapshot never mixes two configs.
    fn publish_locked(&self, st: &mut State) {
        st.epoch += 1;
        let snap = Snapshot::build(st.config.clone(), &st.live, st.epoch);
        self.cell.publish(snap);
    }

    /// Installs `cfg` (merged with the live state by [`merge_live`]) and publishes it. Returns
    /// the published epoch.
    pub(crate) fn install(&self, cfg: Arc<Config>) -> u64 {
        let mut st = self.state.lock();
        let old = std::mem::take(&mut st.live);
        st.live = merge_live(&st.config, old, &cfg);
        st.config = cfg;
        self.publish_locked(&mut st);
        st.epoch
    }

    /// Applies `f` to `name`'s live state if the upstream still exists with identity `ident`
    /// (any identity when `None`); publishes when `f` says it changed something the snapshot
    /// shows. Returns `f`'s answer, or `None` when the upstream is gone.
    pub(crate) fn update<R>(
        &self,
        name: &str,
        ident: Option<&Ident>,
        f: impl FnOnce(&mut LiveUpstream, &UpstreamConfig) -> (bool, R),
    ) -> Option<R> {
        let mut st = self.state.lock();
        let k = UpstreamName::from(name);
        let config = st.config.clone();
        let cfg = upstream_cfg(&config, &k)?;
        if ident.is_some_and(|i| *i != Ident::of(cfg)) {
            return None;
        }
        let live = st.live.upstreams.entry(k).or_default();
        let (changed, r) = f(live, cfg);
        if changed {
            self.publish_locked(&mut st);
        }
        Some(r)
    }

    /// Records a probe result; returns the previous status (`None` if the upstream is gone).
    pub(crate) fn record_probe(
        &self,
        name: &str,
        ident: &Ident,
        passing: bool,
    ) -> Option<ProbeStatus> {
        let now = Instant::now();
        self.update(name, Some(ident), |l, _| {
            let prev = l.probe;
            l.probe = if passing {
                ProbeStatus::Passing
            } else {
                ProbeStatus::Failing
            };
            // The probe time alone is not worth a new snapshot: the admin API reads live state.
            l.last_probe_at = Some(now);
            if passing && prev != ProbeStatus::Passing {
                // Up again: the next outage fires the wake hook at once, not after the debounce.
                l.counters.forget_wake();
            }
            (prev != l.probe, prev)
        })
    }

    /// Marks `name` failing now (a worker saw a refused connect). `None` when the upstream is
    /// unknown; `Some(false)` when it is not probed (nothing would probe it back up).
    pub(crate) fn mark_failing(&self, name: &str) -> Option<bool> {
        let now = Instant::now();
        self.update(name, None, |l, cfg| {
            if !cfg.probed() {
                // Nothing would ever probe it back up; the proxy's own 502 says enough.
                return (false, false);
            }
            let changed = l.probe != ProbeStatus::Failing;
            l.probe = ProbeStatus::Failing;
            l.last_probe_at = Some(now);
            (changed, true)
        })
    }

    /// Stores a fetched model list; publishes when the ids changed.
    pub(crate) fn record_models(&self, name: &str, ident: &Ident, ids: Vec<String>) {
        let now = Instant::now();
        self.update(name, Some(ident), |l, _| {
            let changed = l.models.ids != ids;
            l.models = Arc::new(ModelList {
                ids,
                fetched_at: Some(now),
            });
            (changed, ())
        });
    }

    /// A control plane's push: from now on the slot follows `pushed`. Returns the epoch in force.
    pub(crate) fn push(&self, name: &str, pushed: PushedState) -> Result<u64, PushError> {
        let r = self.update(name, None, |l, cfg| {
            if cfg.kind != UpstreamKind::Slot {
                return (false, Err(PushError::NotASlot(cfg.kind)));
            }
            let changed = l.pushed.as_ref() != Some(&pushed);
            if pushed.state.is_ready() {
                l.counters.forget_wake();
            }
            l.pushed = Some(pushed);
            (changed, Ok(()))
        });
        match r {
            None => Err(PushError::UnknownSlot),
            Some(Err(e)) => Err(e),
            Some(Ok(())) => Ok(self.cell.epoch()),
        }
    }

    /// Whether `key`'s model cache is warm in the live state.
    pub(crate) fn is_warm(&self, key: &UpstreamName) -> bool {
        self.state
            .lock()
            .live
            .upstreams
            .get(key)
            .is_some_and(|l| l.models.is_warm())
    }

    /// The upstream's addresses: its IP literal, or a fresh DNS answer (stored and published when
    /// it changed), or the last known ones when DNS fails. Control threads only.
    pub(crate) fn resolve(&self, cfg: &UpstreamConfig) -> Vec<SocketAddr> {
        let Some(url) = &cfg.parsed_url else {
            return Vec::new();
        };
        if let Some(a) = url.literal_addr() {
            return vec![a];
        }
        // Blocking DNS is allowed here: control threads only (clippy.toml bans it elsewhere).
        #[allow(clippy::disallowed_methods)]
        let answer = (url.host.as_str(), url.port).to_socket_addrs();
        match answer {
            Ok(it) => {
                let addrs: Vec<SocketAddr> = it.collect();
                let store = addrs.clone();
                self.update(&cfg.name, Some(&Ident::of(cfg)), move |l, _| {
                    let changed = *l.addrs != *store;
                    if changed {
                        l.addrs = Arc::from(store);
                    }
                    (changed, ())
                });
                addrs
            }
            Err(e) => {
                tracing::warn!(upstream = %cfg.name, error = %e, "dns lookup failed; keeping last addresses");
                let st = self.state.lock();
                st.live
                    .upstreams
                    .get(&UpstreamName::from(&cfg.name))
                    .map(|l| l.addrs.to_vec())
                    .unwrap_or_default()
            }
        }
    }
}

/// The live state for `new` after `old_cfg`: unchanged upstreams (same name, kind and url) keep
/// their probe state, model cache and pushed state; every upstream whose name stays keeps its
/// counters (a request that started before the reload decrements what it incremented); new ones
/// start fresh. Each upstream's gate gets `new`'s limits.
pub(crate) fn merge_live(old_cfg: &Config, mut old: LiveState, new: &Config) -> LiveState {
    let mut live = LiveState::default();
    for u in &new.upstreams {
        let k = UpstreamName::from(&u.name);
        let same = upstream_cfg(old_cfg, &k).is_some_and(|o| Ident::of(o) == Ident::of(u));
        let mut l = match old.upstreams.remove(&k) {
            Some(l) if same => l,
            // Addresses of IP literals are filled in by `Snapshot::build`.
            Some(l) => LiveUpstream {
                counters: l.counters,
                ..LiveUpstream::default()
            },
            None => LiveUpstream::default(),
        };
        if !u.models.is_empty() {
            // A static list replaces whatever was fetched before.
            l.models = Arc::default();
        }
        if u.kind != UpstreamKind::Slot {
            l.pushed = None;
        }
        l.counters.gate.set_limits(u.max_inflight, u.max_queue);
        live.upstreams.insert(k, l);
    }
    live
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        Config::from_toml_str(text, None).unwrap()
    }

    const TWO: &str = "[[upstream]]\nname = \"Chat\"\nkind = \"container\"\nurl = \"http://127.0.0.1:1/v1\"\nmax_inflight = 2\n\
                       [[upstream]]\nname = \"gone\"\nkind = \"remote\"\nurl = \"http://127.0.0.1:2/v1\"\n";

    #[test]
    fn reload_keeps_counters_by_name_and_sets_limits() {
        let old_cfg = cfg(TWO);
        let mut old = merge_live(&old_cfg, LiveState::default(), &old_cfg);
        let chat = old.upstreams[&"chat".into()].counters.clone();
        let _in_flight = chat.request();
        // Same name, new URL (a different identity) and a new limit; `gone` removed.
        let new_cfg = cfg("[[upstream]]\nname = \"chat\"\nkind = \"container\"\nurl = \"http://127.0.0.1:9/v1\"\nmax_inflight = 1\n");
        old.upstreams.get_mut(&"CHAT".into()).unwrap().probe = ProbeStatus::Passing;
        let new = merge_live(&old_cfg, old, &new_cfg);
        let l = &new.upstreams[&"chat".into()];
        assert!(
            Arc::ptr_eq(&l.counters, &chat),
            "the counters stay with the name"
        );
        assert_eq!(l.counters.requests(), 1);
        assert_eq!(
            l.probe,
            ProbeStatus::Unknown,
            "a new identity starts unprobed"
        );
        assert!(!new.upstreams.contains_key(&"gone".into()));
        let _one = l.counters.gate.try_enter().unwrap();
        assert!(
            l.counters.gate.try_enter().is_none(),
            "max_inflight = 1 applied"
        );
    }

    /// Live state for `text` publishing into a fresh cell.
    fn live_over(text: &str) -> (Arc<Live>, Arc<SnapshotCell>) {
        let empty = Snapshot::build(Arc::new(cfg("")), &LiveState::default(), 0);
        let cell = Arc::new(SnapshotCell::new(empty));
        (Live::new(cfg(text), cell.clone()), cell)
    }

    #[test]
    fn published_snapshots_carry_the_live_counters() {
        let (live, cell) = live_over(TWO);
        let c = live.counters("CHAT").unwrap();
        let epoch = live.install(Arc::new(cfg(TWO)));
        assert_eq!(cell.epoch(), epoch);
        assert!(Arc::ptr_eq(
            &c,
            cell.load().by_name("chat").unwrap().counters()
        ));
        assert!(live.counters("ghost").is_none());
    }

    #[test]
    fn turning_ready_forgets_the_wake_so_the_next_outage_wakes_at_once() {
        let slot = "[[upstream]]\nname = \"s\"\nkind = \"slot\"\nurl = \"http://127.0.0.1:1/v1\"\n";
        let (live, _cell) = live_over(&format!("{TWO}{slot}"));
        let day = std::time::Duration::from_secs(86_400);
        let chat = live.counters("chat").unwrap();
        let id = Ident::of(&live.config().upstreams[0]);
        assert!(chat.claim_wake(Instant::now(), day));
        live.record_probe("chat", &id, false);
        assert!(
            !chat.claim_wake(Instant::now(), day),
            "still debounced while down"
        );
        live.record_probe("chat", &id, true);
        assert!(
            chat.claim_wake(Instant::now(), day),
            "ready again: the window is reset"
        );
        let s = live.counters("s").unwrap();
        assert!(s.claim_wake(Instant::now(), day));
        let pushed = |state| PushedState {
            state,
            progress: serde_json::Value::Null,
        };
        live.push("s", pushed(crate::routing::SlotState::Warming))
            .unwrap();
        assert!(!s.claim_wake(Instant::now(), day));
        live.push("s", pushed(crate::routing::SlotState::Ready))
            .unwrap();
        assert!(s.claim_wake(Instant::now(), day));
    }

    #[test]
    fn mark_failing_publishes_at_once() {
        let (live, cell) = live_over(TWO);
        let id = Ident::of(&live.config().upstreams[0]);
        let e = cell.epoch();
        assert_eq!(live.mark_failing("chat"), Some(true));
        assert!(cell.epoch() > e);
        assert_eq!(
            cell.load().by_name("chat").unwrap().live.probe,
            ProbeStatus::Failing
        );
        assert_eq!(live.mark_failing("nope"), None);
        assert_eq!(
            live.record_probe("chat", &id, true),
            Some(ProbeStatus::Failing)
        );
        assert_eq!(
            live.mark_failing("gone"),
            Some(false),
            "a remote without probes stays"
        );
    }
}
