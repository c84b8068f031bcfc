//! The control plane (DESIGN.md §1, §3, §3b, §6, §7 "Control thread"): live upstream state,
//! health probes, model caches, single-flight fetches, in-flight counters, hot reload, the admin
//! API, and snapshot publication.
//!
//! Every change to live state or config goes through [`Control`]'s one lock and ends in one
//! `publish()` that builds the next [`Snapshot`]; workers never take that lock, they only read the
//! [`SnapshotCell`] (and bump lock-free [`UpstreamCounters`]). Probes and fetches run on
//! blocking std threads, one prober per upstream, so a hung upstream delays nobody else.
//!
//! Wiring in `main` (startup order):
//! 1. `let control = Control::with_config(Config::load(..)?)` — publishes the first snapshot;
//!    `control.cell()` is what workers build their `LocalSnapshot` from.
//! 2. `control.set_metrics_hook(..)` (any time; `/admin/route` already uses `routing::explain`).
//! 3. `control.spawn()?` (probers, refreshes, supervisor) and `control.handle_sighup()?`.
//! 4. `spawn_admin(control.clone(), listen.admin.parse()?)` unless `listen.admin` is empty.
//! 5. Start the workers with `Arc<Control>`; when they are up, `control.set_ready(driver, n)`.
//!
//! Workers hold an `Arc<Control>` (`proxy::Shared`): `fetch_models`, `mark_down`,
//! `counters(name)` -> `request()` guard (`streaming()` for SSE); for `GET /v1/models` a
//! per-worker [`CatalogMemo`] (or [`models_list_json`]) and [`model_json`].

pub mod admin;
pub mod admission;
pub mod catalog;
pub mod client;
pub mod counters;
mod flight;
pub mod models;
pub mod notify;
mod prober;
pub mod signal;
mod wire;

pub use admin::spawn_admin;
pub use catalog::{
    model_json, model_json_with, models_list_json, models_list_json_with, CatalogMemo, LoadOf,
    ModelStatus,
};
pub use counters::{InflightGuard, UpstreamCounters};
pub use flight::ModelsFetch;

use crate::config::{AuthStyle, Config, ConfigError, UpstreamConfig, UpstreamKind};
use crate::routing::{
    LiveState, LiveUpstream, ModelList, ProbeStatus, PushedState, SlotState, Snapshot, SnapshotCell,
};
use arc_swap::ArcSwap;
use flight::{Flights, Ticket};
use parking_lot::{Condvar, Mutex, RwLock};
use prober::Prober;
use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Renders the lead's Prometheus text for `GET /metrics` (appended after control's own gauges).
pub type MetricsHook = Box<dyn Fn() -> String + Send + Sync>;

/// Replaces `routing::explain` for `GET /admin/route`: `(snapshot, model, path) -> JSON`.
pub type RouteExplainer = Box<dyn Fn(&Snapshot, &str, &str) -> serde_json::Value + Send + Sync>;

/// Upper bound on one `/v1/models` fetch (a large remote list over a slow link still fits).
const MIN_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// What the workers reported once they were up (for `GET /readyz`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// `"io_uring"` or `"epoll"`: the driver the workers actually got.
    pub driver: String,
    /// Workers running.
    pub workers: usize,
}

/// Why `PUT /admin/slots/{name}` was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushError {
    /// No upstream has that name.
    UnknownSlot,
    /// The upstream exists but is not a `slot`.
    NotASlot(UpstreamKind),
}

/// Identity of an upstream across reloads: same name (the map key), kind and URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ident {
    kind: UpstreamKind,
    url: Option<String>,
}

impl Ident {
    fn of(u: &UpstreamConfig) -> Ident {
        Ident {
            kind: u.kind,
            url: u.url.clone(),
        }
    }
}

struct State {
    config: Arc<Config>,
    live: LiveState,
    epoch: u64,
}

/// The control plane. Create with [`Control::new`] (or [`Control::with_config`]), then
/// [`Control::spawn`] to start probes and refreshes.
pub struct Control {
    state: Mutex<State>,
    cell: Arc<SnapshotCell>,
    /// Lock-free lookup for workers; replaced (not mutated) on reload.
    counters: ArcSwap<HashMap<String, Arc<UpstreamCounters>>>,
    probers: Mutex<HashMap<String, Arc<Prober>>>,
    started: AtomicBool,
    flights: Flights,
    ready: RwLock<Option<Readiness>>,
    metrics: RwLock<Option<MetricsHook>>,
    explainer: RwLock<Option<RouteExplainer>>,
    sighup: AtomicBool,
    /// Reloads applied / refused (`slotgate_reloads_total`, `slotgate_reload_failures_total`).
    reloads: [AtomicU64; 2],
    /// The front door's TLS certificate, refreshed by every reload.
    front_tls: crate::tls::FrontDoor,
    /// Held requests wait for the next publication here.
    published: admission::PublishWaiters,
    /// Upstreams whose wake hook fired, and when (debounce).
    wakes: Mutex<HashMap<String, Instant>>,
    stop: Mutex<bool>,
    stop_cv: Condvar,
    /// Serialises reloads (admin threads, the SIGHUP supervisor, `apply_config` callers): each
    /// reads, merges and stores the counters map and the live state as one step.
    reloading: Mutex<()>,
    me: Weak<Control>,
}

fn key(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// `name`'s config (names are case-insensitive).
fn upstream_cfg<'c>(config: &'c Config, name: &str) -> Option<&'c UpstreamConfig> {
    config
        .upstreams
        .iter()
        .find(|u| u.name.eq_ignore_ascii_case(name))
}

/// Whether `/v1/models` is fetched for this upstream (not composite, no static list, has a URL).
pub(crate) fn fetchable(u: &UpstreamConfig) -> bool {
    u.kind != UpstreamKind::Composite && u.models.is_empty() && u.parsed_url.is_some()
}

/// The upstream's own credential as request headers (value from the environment only).
pub(crate) fn auth_headers(u: &UpstreamConfig) -> Vec<(String, String)> {
    let Some(a) = &u.auth else { return Vec::new() };
    let Some(val) = a.env.as_deref().and_then(|e| std::env::var(e).ok()) else {
        return Vec::new();
    };
    match a.style {
        AuthStyle::Bearer => vec![("authorization".into(), format!("Bearer {val}"))],
        AuthStyle::Header => vec![(a.header.clone().unwrap_or_default(), val)],
        AuthStyle::Anthropic => vec![
            ("x-api-key".into(), val),
            ("anthropic-version".into(), a.anthropic_version.clone()),
        ],
        AuthStyle::None => Vec::new(),
    }
}

impl Control {
    /// A control plane for `config` publishing into `cell`; publishes its first snapshot at once
    /// (epoch = the cell's + 1). Starts no thread: call [`Control::spawn`].
    pub fn new(config: Config, cell: Arc<SnapshotCell>) -> Arc<Control> {
        let config = Arc::new(config);
        let live = LiveState {
            upstreams: config
                .upstreams
                .iter()
                .map(|u| (key(&u.name), LiveUpstream::default()))
                .collect(),
        };
        let counters = config
            .upstreams
            .iter()
            .map(|u| (key(&u.name), Arc::default()))
            .collect();
        let epoch = cell.epoch();
        let c = Arc::new_cyclic(|me| Control {
            state: Mutex::new(State {
                config,
                live,
                epoch,
            }),
            cell,
            counters: ArcSwap::from_pointee(counters),
            probers: Mutex::new(HashMap::new()),
            started: AtomicBool::new(false),
            flights: Flights::default(),
            ready: RwLock::new(None),
            metrics: RwLock::new(None),
            explainer: RwLock::new(None),
            sighup: AtomicBool::new(false),
            reloads: Default::default(),
            front_tls: crate::tls::FrontDoor::default(),
            published: admission::PublishWaiters::default(),
            wakes: Mutex::new(HashMap::new()),
            stop: Mutex::new(false),
            stop_cv: Condvar::new(),
            reloading: Mutex::new(()),
            me: me.clone(),
        });
        c.apply_limits(&c.config());
        c.publish_locked(&mut c.state.lock());
        c
    }

    /// Creates the [`SnapshotCell`] too (for `main`): the cell is [`Control::cell`].
    pub fn with_config(config: Config) -> Arc<Control> {
        let config = Arc::new(config);
        let first = Snapshot::build(config.clone(), &LiveState::default(), 0);
        Control::new((*config).clone(), Arc::new(SnapshotCell::new(first)))
    }

    /// The cell workers read snapshots from.
    pub fn cell(&self) -> &Arc<SnapshotCell> {
        &self.cell
    }

    /// The current snapshot (control side / admin; workers use a `LocalSnapshot`).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.cell.load()
    }

    /// The config in force.
    pub fn config(&self) -> Arc<Config> {
        self.state.lock().config.clone()
    }

    fn arc(&self) -> Arc<Control> {
        self.me.upgrade().expect("control alive while in use")
    }

    /// Builds and publishes the next snapshot. Called with the state lock held, so epochs are
    /// published in order and a snapshot never mixes two configs.
    fn publish_locked(&self, st: &mut State) {
        st.epoch += 1;
        let snap = Snapshot::build(st.config.clone(), &st.live, st.epoch);
        self.cell.publish(snap);
        self.published.notify();
    }

    /// Resolves at the next snapshot publication: what a held request waits on.
    pub fn next_publish(&self) -> futures_channel::oneshot::Receiver<()> {
        self.published.next()
    }

    /// Fires `name`'s wake hook (a POST of `{"slot", "model", "reason": "request"}` to its
    /// `wake_url`) unless one fired in the last `debounce`; the POST runs on its own thread.
    pub fn wake(&self, name: &str, model: Option<&str>, debounce: Duration) {
        let Some(cfg) = upstream_cfg(&self.config(), name).cloned() else {
            return;
        };
        let Some(url) = cfg
            .wake_url
            .as_deref()
            .and_then(|u| crate::config::UpstreamUrl::parse(u).ok())
        else {
            return;
        };
        {
            let mut w = self.wakes.lock();
            let now = Instant::now();
            if w.get(&key(name))
                .is_some_and(|t| now.duration_since(*t) < debounce)
            {
                return;
            }
            w.insert(key(name), now);
        }
        let body =
            serde_json::json!({"slot": cfg.name, "model": model, "reason": "request"}).to_string();
        let timeout = Duration::from_millis(cfg.connect_ms.max(cfg.probe_timeout_ms));
        let spawned = std::thread::Builder::new()
            .name("slotgate-wake".into())
            .spawn(move || {
                let ca_file = cfg.wake_ca_file.as_deref();
                match client::post_json(&url, ca_file, body.as_bytes(), timeout) {
                    Ok(r) => {
                        tracing::info!(upstream = %cfg.name, status = r.status, "wake hook called")
                    }
                    Err(e) => tracing::warn!(upstream = %cfg.name, error = %e, "wake hook failed"),
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot spawn the wake hook thread");
        }
    }

    /// Forgets a pending wake of `name` (it became ready), so the next outage wakes again.
    pub fn clear_wake(&self, name: &str) {
        let mut w = self.wakes.lock();
        if !w.is_empty() {
            w.remove(&key(name));
        }
    }

    /// Sets every upstream's concurrency budget from `cfg`.
    fn apply_limits(&self, cfg: &Config) {
        let m = self.counters.load();
        for u in &cfg.upstreams {
            if let Some(c) = m.get(&key(&u.name)) {
                c.gate.set_limits(u.max_inflight, u.max_queue);
            }
        }
    }

    /// Applies `f` to `name`'s live state if the upstream still exists with identity `ident`
    /// (any identity when `None`); publishes when `f` says it changed something the snapshot
    /// shows. Returns `f`'s answer, or `None` when the upstream is gone.
    fn update<R>(
        &self,
        name: &str,
        ident: Option<&Ident>,
        f: impl FnOnce(&mut LiveUpstream, &UpstreamConfig) -> (bool, R),
    ) -> Option<R> {
        let mut st = self.state.lock();
        let k = key(name);
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
            (prev != l.probe, prev)
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
                let ident = Ident::of(cfg);
                let store = addrs.clone();
                self.update(&cfg.name, Some(&ident), move |l, _| {
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
                let k = key(&cfg.name);
                let st = self.state.lock();
                st.live
                    .upstreams
                    .get(&k)
                    .map(|l| l.addrs.to_vec())
                    .unwrap_or_default()
            }
        }
    }

    /// A worker saw connection refused: mark the upstream's probe Failing at once, publish, and
    /// let its prober re-probe on the failing schedule.
    pub fn mark_down(&self, name: &str) {
        let now = Instant::now();
        let found = self.update(name, None, |l, cfg| {
            if !cfg.probed() {
                // Nothing would ever probe it back up; the proxy's own 502 says enough.
                return (false, ());
            }
            let changed = l.probe != ProbeStatus::Failing;
            l.probe = ProbeStatus::Failing;
            l.last_probe_at = Some(now);
            (changed, ())
        });
        if found.is_some() {
            if let Some(p) = self.probers.lock().get(&key(name)) {
                p.mark_down();
            }
        }
    }

    /// Asks `name`'s prober to probe now (e.g. a control plane said it started the slot).
    pub fn wake_probe(&self, name: &str) {
        if let Some(p) = self.probers.lock().get(&key(name)) {
            p.wake();
        }
    }

    /// `{inflight, queued, held}` of `name` for the front door's model list.
    pub fn load_json(&self, name: &str) -> Option<serde_json::Value> {
        let c = self.counters(name)?;
        Some(serde_json::json!({
            "inflight": c.requests(),
            "streams": c.streams(),
            "queued": c.gate.waiting(),
            "held": c.held(),
        }))
    }

    /// The in-flight counters of `name` (look up once per request; lock-free).
    pub fn counters(&self, name: &str) -> Option<Arc<UpstreamCounters>> {
        let m = self.counters.load();
        match m.get(name) {
            Some(c) => Some(c.clone()),
            None => m.get(&key(name)).cloned(),
        }
    }

    /// A control plane's `PUT /admin/slots/{name}`: from now on the slot follows pushed state.
    /// Returns the published epoch.
    pub fn push_slot_state(
        &self,
        name: &str,
        state: SlotState,
        progress: serde_json::Value,
    ) -> Result<u64, PushError> {
        let pushed = PushedState { state, progress };
        let r = self.update(name, None, |l, cfg| {
            if cfg.kind != UpstreamKind::Slot {
                return (false, Err(PushError::NotASlot(cfg.kind)));
            }
            let changed = l.pushed.as_ref() != Some(&pushed);
            l.pushed = Some(pushed);
            (changed, Ok(()))
        });
        match r {
            None => Err(PushError::UnknownSlot),
            Some(Err(e)) => Err(e),
            Some(Ok(())) => Ok(self.cell.epoch()),
        }
    }

    /// Starts (or joins) one `/v1/models` fetch per named upstream — never two at once for the
    /// same upstream however many requests ask — and returns a future that completes when every
    /// one finished and its result is published, or when `timeout` passed. Names that are
    /// unknown, composite, static or already warm are skipped. Awaitable on a monoio worker.
    pub fn fetch_models(&self, names: &[String], timeout: Duration) -> ModelsFetch {
        let (ticket, fut) = Ticket::new();
        // Decided from the published snapshot (lock-free), not the control lock: workers call
        // this. Only the single-flight table's short lock is taken, and only on this cold path.
        let snap = self.cell.load();
        for n in names {
            let Some(u) = snap.by_name(n) else { continue };
            if fetchable(&u.cfg) && !u.live.models.is_warm() {
                self.start_fetch(&key(n), Some(&ticket));
            }
        }
        ticket.done_one();
        if !ticket.fired() {
            self.flights.deadline(Instant::now() + timeout, &ticket);
        }
        fut
    }

    /// Starts `key`'s fetch unless one is in flight (joining it with `ticket`).
    pub(crate) fn start_fetch(&self, key: &str, ticket: Option<&Arc<Ticket>>) {
        if !self.flights.join(key, ticket) {
            return;
        }
        // An on-demand fetch whose upstream turned warm between the caller's check and this
        // join (a flight finished in between: it published before it finished) is not needed.
        if ticket.is_some() {
            let warm = self
                .state
                .lock()
                .live
                .upstreams
                .get(key)
                .is_some_and(|l| l.models.is_warm());
            if warm {
                self.flights.finish(key);
                return;
            }
        }
        let me = self.arc();
        let k = key.to_string();
        let spawned = std::thread::Builder::new()
            .name(format!("slotgate-models-{k}"))
            .spawn(move || {
                me.run_fetch(&k);
                me.flights.finish(&k);
            });
        if let Err(e) = spawned {
            tracing::error!(upstream = key, error = %e, "cannot spawn a models fetch thread");
            self.flights.finish(key);
        }
    }

    /// One `/v1/models` fetch, on its own thread.
    fn run_fetch(&self, k: &str) {
        let cfg = {
            let st = self.state.lock();
            match upstream_cfg(&st.config, k) {
                Some(u) if fetchable(u) => u.clone(),
                _ => return,
            }
        };
        let url = cfg.parsed_url.as_ref().expect("fetchable has a url");
        let addrs = self.resolve(&cfg);
        let path = format!("{}/models", url.base_path);
        let timeout = Duration::from_millis(cfg.probe_timeout_ms).max(MIN_FETCH_TIMEOUT);
        match client::get_upstream(&cfg, &addrs, &path, timeout) {
            Ok(r) if (200..300).contains(&r.status) => match models::parse_model_ids(&r.body) {
                Ok(ids) => {
                    tracing::debug!(upstream = %cfg.name, models = ids.len(), "model list fetched");
                    self.record_models(&cfg.name, &Ident::of(&cfg), ids);
                }
                Err(e) => tracing::warn!(upstream = %cfg.name, error = %e, "bad model list"),
            },
            Ok(r) => {
                tracing::warn!(upstream = %cfg.name, status = r.status, "model list fetch refused")
            }
            Err(e) => tracing::warn!(upstream = %cfg.name, error = %e, "model list fetch failed"),
        }
    }

    /// Starts probers and periodic refreshes for every upstream, and the supervisor thread (which
    /// also serves `SIGHUP` once [`Control::handle_sighup`] was called). Call once.
    pub fn spawn(&self) -> std::io::Result<JoinHandle<()>> {
        if !self.started.swap(true, Ordering::AcqRel) {
            let cfg = self.config();
            let mut probers = self.probers.lock();
            for u in &cfg.upstreams {
                if let Some(p) = Prober::start(self.me.clone(), u)? {
                    probers.insert(key(&u.name), p);
                }
            }
        }
        let me = self.me.clone();
        std::thread::Builder::new()
            .name("slotgate-control".into())
            .spawn(move || supervise(me))
    }

    /// The front door's TLS state (certificate and key, swapped on reload).
    pub fn front_door(&self) -> &crate::tls::FrontDoor {
        &self.front_tls
    }

    /// Installs the `SIGHUP` handler; the supervisor thread then reloads on every `SIGHUP`.
    pub fn handle_sighup(&self) -> std::io::Result<()> {
        signal::install_sighup()?;
        self.sighup.store(true, Ordering::Release);
        Ok(())
    }

    /// Stops probers and the supervisor (in-flight fetches finish on their own).
    pub fn shutdown(&self) {
        *self.stop.lock() = true;
        self.stop_cv.notify_all();
        for (_, p) in self.probers.lock().drain() {
            p.stop();
        }
    }

    /// Re-reads the config file (and tuning profile) it came from; on error every problem is
    /// returned and the running snapshot stays untouched. Returns the published epoch.
    /// Tells systemd (`RELOADING=1` ... `READY=1`) and counts the outcome.
    pub fn reload(&self) -> Result<u64, ConfigError> {
        let _one_at_a_time = self.reloading.lock();
        notify::reloading();
        let r = self.reload_file();
        self.reloads[usize::from(r.is_err())].fetch_add(1, Ordering::Relaxed);
        notify::ready();
        r
    }

    /// Reloads applied and reloads refused since start.
    pub fn reload_counts(&self) -> (u64, u64) {
        (
            self.reloads[0].load(Ordering::Relaxed),
            self.reloads[1].load(Ordering::Relaxed),
        )
    }

    fn reload_file(&self) -> Result<u64, ConfigError> {
        let old = self.config();
        let Some(path) = old.source.clone() else {
            return Err(ConfigError::single(
                "file",
                "the running config was not loaded from a file",
            ));
        };
        let cfg = Config::load(&path, old.tuning_source.as_deref())?;
        self.front_tls
            .reload(
                cfg.listen.tls_cert.as_deref(),
                cfg.listen.tls_key.as_deref(),
            )
            .map_err(|(k, m)| ConfigError::single(k, m))?;
        Ok(self.apply_config_serialised(cfg))
    }

    /// Installs a validated config: unchanged upstreams (same name, kind and url) keep their
    /// probe state, model cache, pushed state and counters; new ones start fresh (and probing);
    /// removed ones stop. Returns the published epoch.
    pub fn apply_config(&self, cfg: Config) -> u64 {
        let _one_at_a_time = self.reloading.lock();
        self.apply_config_serialised(cfg)
    }

    /// [`Self::apply_config`] with `reloading` held by the caller.
    fn apply_config_serialised(&self, cfg: Config) -> u64 {
        let cfg = Arc::new(cfg);
        // CA files are read again from this config on (the workers rebuild theirs per config).
        client::forget_tls_configs();
        // Counters first, as the union of old and new names, so a worker that sees a new
        // upstream in the snapshot finds its counters and one still on the old snapshot keeps
        // finding the removed upstream's; trimmed to the new names once published.
        let mut counters: HashMap<String, Arc<UpstreamCounters>> =
            (*self.counters.load_full()).clone();
        for u in &cfg.upstreams {
            counters.entry(key(&u.name)).or_default();
        }
        self.counters.store(Arc::new(counters.clone()));
        self.apply_limits(&cfg);
        let epoch = {
            let mut st = self.state.lock();
            let old = st.config.clone();
            let mut live = LiveState::default();
            for u in &cfg.upstreams {
                let k = key(&u.name);
                let same = upstream_cfg(&old, &k).is_some_and(|o| Ident::of(o) == Ident::of(u));
                let mut l = match st.live.upstreams.remove(&k) {
                    Some(l) if same => l,
                    // Addresses of IP literals are filled in by `Snapshot::build`.
                    _ => LiveUpstream::default(),
                };
                if !u.models.is_empty() {
                    // A static list replaces whatever was fetched before.
                    l.models = Arc::default();
                }
                if u.kind != UpstreamKind::Slot {
                    l.pushed = None;
                }
                live.upstreams.insert(k, l);
            }
            st.config = cfg.clone();
            st.live = live;
            self.publish_locked(&mut st);
            st.epoch
        };
        counters.retain(|k, _| upstream_cfg(&cfg, k).is_some());
        self.counters.store(Arc::new(counters));
        if self.started.load(Ordering::Acquire) {
            let mut probers = self.probers.lock();
            let mut next = HashMap::new();
            for u in &cfg.upstreams {
                let k = key(&u.name);
                match probers.remove(&k) {
                    Some(p) if p.config() == u => {
                        next.insert(k, p);
                    }
                    old => {
                        if let Some(p) = old {
                            p.stop();
                        }
                        match Prober::start(self.me.clone(), u) {
                            Ok(Some(p)) => {
                                next.insert(k, p);
                            }
                            Ok(None) => {}
                            Err(e) => {
                                tracing::error!(upstream = %u.name, error = %e, "cannot start prober")
                            }
                        }
                    }
                }
            }
            for (_, p) in probers.drain() {
                p.stop();
            }
            *probers = next;
        }
        tracing::info!(epoch, upstreams = cfg.upstreams.len(), "config applied");
        epoch
    }

    /// The lead's workers report they are up, with the IO driver they got (`io_uring`/`epoll`).
    pub fn set_ready(&self, driver: &str, workers: usize) {
        *self.ready.write() = Some(Readiness {
            driver: driver.to_string(),
            workers,
        });
    }

    /// What `set_ready` reported, if anything.
    pub fn readiness(&self) -> Option<Readiness> {
        self.ready.read().clone()
    }

    /// Registers the renderer of the proxy's Prometheus metrics for `GET /metrics`.
    pub fn set_metrics_hook(&self, hook: MetricsHook) {
        *self.metrics.write() = Some(hook);
    }

    /// Replaces the default `routing::explain` answer of `GET /admin/route`.
    pub fn set_route_explainer(&self, explainer: RouteExplainer) {
        *self.explainer.write() = Some(explainer);
    }

    /// Live state and config under one lock, for the admin API (fresher than the snapshot:
    /// probe times are recorded without publishing).
    pub(crate) fn live_view(&self) -> (Arc<Config>, LiveState, u64) {
        let st = self.state.lock();
        (st.config.clone(), st.live.clone(), st.epoch)
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The supervisor: serves `SIGHUP` reloads until shutdown.
fn supervise(me: Weak<Control>) {
    loop {
        let Some(c) = me.upgrade() else { return };
        if c.sighup.load(Ordering::Acquire) && signal::take_sighup() {
            match c.reload() {
                Ok(epoch) => tracing::info!(epoch, "reloaded on SIGHUP"),
                Err(e) => {
                    tracing::error!(problems = %e, "SIGHUP reload refused; keeping the running config")
                }
            }
        }
        let mut stop = c.stop.lock();
        if *stop {
            return;
        }
        c.stop_cv.wait_for(&mut stop, Duration::from_millis(200));
        if *stop {
            return;
        }
    }
}
