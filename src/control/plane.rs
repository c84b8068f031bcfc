//! [`Control`], the control plane's handle (DESIGN.md §7 "Control thread"): what it owns and the
//! small accessors the admin API, metrics and startup read. What it does lives beside it: the
//! worker port's handler (`inbox`), reloads (`reload`), threads and shutdown (`run`), live state
//! and publication (`state`), fetches (`fetch`), probes (`prober`).

use super::flight::ModelsFetch;
use super::prober::Prober;
use super::state::{Live, PushError};
use crate::admission::UpstreamCounters;
use crate::config::{Config, UpstreamName};
use crate::port::{self, Inbox, Port};
use crate::routing::{LiveState, PushedState, SlotState, Snapshot, SnapshotCell};
use crate::tls::FrontDoor;
use parking_lot::{Condvar, Mutex, RwLock};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Renders the lead's Prometheus text for `GET /metrics` (appended after control's own gauges).
pub type MetricsHook = Box<dyn Fn() -> String + Send + Sync>;

/// Replaces `routing::explain` for `GET /admin/route`: `(snapshot, model, path) -> JSON`.
pub type RouteExplainer = Box<dyn Fn(&Snapshot, &str, &str) -> serde_json::Value + Send + Sync>;

/// What the workers reported once they were up (for `GET /readyz`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// `"io_uring"` or `"epoll"`: the driver the workers actually got.
    pub driver: String,
    /// Workers running.
    pub workers: usize,
}

/// The control plane. Create with [`Control::new`] (or [`Control::with_config`]), then
/// [`Control::spawn`] to start probes, refreshes and the thread that serves the worker port.
pub struct Control {
    /// Live state, its lock and its publication.
    pub(super) live: Arc<Live>,
    pub(super) probers: Mutex<HashMap<UpstreamName, Arc<Prober>>>,
    pub(super) started: AtomicBool,
    ready: RwLock<Option<Readiness>>,
    pub(super) metrics: RwLock<Option<MetricsHook>>,
    pub(super) explainer: RwLock<Option<RouteExplainer>>,
    pub(super) sighup: AtomicBool,
    /// Reloads applied / refused (`slotgate_reloads_total`, `slotgate_reload_failures_total`).
    pub(super) reloads: [AtomicU64; 2],
    /// The front door's TLS certificate, refreshed by every reload (workers hold the same `Arc`).
    pub(super) front_tls: Arc<FrontDoor>,
    /// The workers' side of the port, handed out by [`Control::port`].
    port: Port,
    /// The control side, taken by the thread [`Control::spawn`] starts.
    pub(super) inbox: Mutex<Option<Inbox>>,
    pub(super) stop: Mutex<bool>,
    pub(super) stop_cv: Condvar,
    /// Serialises reloads (admin threads, the SIGHUP supervisor, `apply_config` callers): each
    /// reads, merges and stores the live state as one step.
    pub(super) reloading: Mutex<()>,
    pub(super) me: Weak<Control>,
}

impl Control {
    /// A control plane for `config` publishing into `cell`; publishes its first snapshot at once
    /// (epoch = the cell's + 1). Starts no thread: call [`Control::spawn`].
    pub fn new(config: Config, cell: Arc<SnapshotCell>) -> Arc<Control> {
        let (port, inbox) = port::channel();
        Arc::new_cyclic(|me| Control {
            live: Live::new(config, cell),
            probers: Mutex::new(HashMap::new()),
            started: AtomicBool::new(false),
            ready: RwLock::new(None),
            metrics: RwLock::new(None),
            explainer: RwLock::new(None),
            sighup: AtomicBool::new(false),
            reloads: Default::default(),
            front_tls: Arc::default(),
            port,
            inbox: Mutex::new(Some(inbox)),
            stop: Mutex::new(false),
            stop_cv: Condvar::new(),
            reloading: Mutex::new(()),
            me: me.clone(),
        })
    }

    /// Creates the [`SnapshotCell`] too (for `main`): the cell is [`Control::cell`].
    pub fn with_config(config: Config) -> Arc<Control> {
        let config = Arc::new(config);
        let first = Snapshot::build(config.clone(), &LiveState::default(), 0);
        Control::new((*config).clone(), Arc::new(SnapshotCell::new(first)))
    }

    /// The cell workers read snapshots from.
    pub fn cell(&self) -> &Arc<SnapshotCell> {
        self.live.cell()
    }

    /// The worker port: what workers hold to tell the control plane something.
    pub fn port(&self) -> Port {
        self.port.clone()
    }

    /// The front door's TLS state (certificate and key, swapped on reload); workers hold a clone.
    pub fn front_door(&self) -> &Arc<FrontDoor> {
        &self.front_tls
    }

    /// The current snapshot (control side / admin; workers use a `LocalSnapshot`).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.live.snapshot()
    }

    /// The config in force.
    pub fn config(&self) -> Arc<Config> {
        self.live.config()
    }

    /// The in-flight counters of `name`, from the published snapshot (lock-free). Workers read
    /// them from their snapshot entry instead.
    pub fn counters(&self, name: &str) -> Option<Arc<UpstreamCounters>> {
        self.live.counters(name)
    }

    /// Starts (or joins) one `/v1/models` fetch per named upstream — never two at once for the
    /// same upstream however many ask — and returns a future that completes when every one
    /// finished and its result is published, or when `timeout` passed. Names that are unknown,
    /// composite, static or already warm are skipped. Control side (workers send a
    /// `PortMsg::Fetch`).
    pub fn fetch_models(&self, names: &[String], timeout: Duration) -> ModelsFetch {
        self.live.fetch_models(names, timeout)
    }

    /// A control plane's `PUT /admin/slots/{name}`: from now on the slot follows pushed state.
    /// Returns the published epoch.
    pub fn push_slot_state(
        &self,
        name: &str,
        state: SlotState,
        progress: serde_json::Value,
    ) -> Result<u64, PushError> {
        self.live.push(name, PushedState { state, progress })
    }

    /// Asks `name`'s prober to probe now (e.g. a control plane said it started the slot).
    pub fn wake_probe(&self, name: &str) {
        if let Some(p) = self.probers.lock().get(&UpstreamName::from(name)) {
            p.wake();
        }
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
        self.live.view()
    }
}
