//! Observability (DESIGN.md §6 `GET /metrics`): the per-request [`Record`] the request
//! path fills, per-worker [`WorkerMetrics`] recorders merged at scrape, the decision log
//! (`slotgate::access`) and the Prometheus text rendering.
//!
//! The request path's only touch points: `Record::begin` before an exchange, a few capture
//! calls inside it, and one `WorkerMetrics::finish` after it (in `proxy::conn`).

#![forbid(unsafe_code)]

mod access;
pub mod record;
pub mod recorder;
mod render;

pub use access::RequestLine;
pub use record::{Record, RouteKind, SseCounter, ACCESS_TARGET};
pub use recorder::{Hist, Recorder, WorkerMetrics};

use parking_lot::{Mutex, RwLock};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// The process's metrics: the worker recorders and the gauges the scraper reads.
#[derive(Default)]
pub struct Metrics {
    workers: Mutex<Vec<Arc<WorkerMetrics>>>,
    driver: RwLock<&'static str>,
    draining: AtomicBool,
    panics: AtomicU64,
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// A new worker's recorder (the worker keeps the `Arc`; the scraper merges it).
    pub fn register_worker(&self) -> Arc<WorkerMetrics> {
        let w = Arc::new(WorkerMetrics::default());
        self.workers.lock().push(w.clone());
        w
    }

    /// The IO driver the workers run on (`slotgate_info{driver=..}`).
    pub fn set_driver(&self, driver: &'static str) {
        *self.driver.write() = driver;
    }

    /// A drain started (`slotgate_draining 1`).
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// A panic was caught on a connection's task (`slotgate_panics_total`).
    pub fn count_panic(&self) {
        self.panics.fetch_add(1, Ordering::Relaxed);
    }

    /// Panics caught so far.
    pub fn panics(&self) -> u64 {
        self.panics.load(Ordering::Relaxed)
    }

    /// Every worker's recorder merged into one.
    pub fn merged(&self) -> Recorder {
        let workers = self.workers.lock().clone();
        let mut all = Recorder::default();
        for w in &workers {
            w.merge_into(&mut all);
        }
        all
    }

    fn connections(&self) -> u64 {
        self.workers.lock().iter().map(|w| w.connections()).sum()
    }

    /// The Prometheus text of everything recorded here plus `control`'s reload counters, cache
    /// and probe ages (control's own gauges are rendered by the admin API before this).
    pub fn render(&self, control: &crate::control::Control) -> String {
        let merged = self.merged();
        render::render(&render::Inputs {
            rec: &merged,
            control,
            driver: *self.driver.read(),
            draining: self.draining.load(Ordering::Relaxed),
            connections: self.connections(),
            panics: self.panics(),
        })
    }
}
