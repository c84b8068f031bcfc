//! The control plane (DESIGN.md §1, §3, §3b, §6, §7 "Control thread"): live upstream state,
//! health probes, model caches, single-flight fetches, hot reload, the admin API, and snapshot
//! publication.
//!
//! Every change to live state or config goes through one lock (`state::Live`) and ends in one
//! publish that builds the next routing `Snapshot`. Workers never take that lock and hold no
//! `Control`: they read the published `SnapshotCell` (the per-upstream counters, gate and config
//! travel in it) and tell the control plane things through the worker port
//! ([`crate::port`]: `MarkDown`, `Wake`, `Fetch`), which one control thread drains. Probes and
//! fetches run on blocking std threads, one prober per upstream, so a hung upstream delays nobody
//! else.
//!
//! Files, each importing only those listed before it (this file only declares and re-exports):
//! `signal`, `notify`, `wire`, `models`, `upstream` (keys, identity, credentials) → `client`,
//! `flight` → `state` (live state and publication) → `fetch`, `wake`, `prober` → `plane`
//! ([`Control`] and its accessors) → `inbox` (port messages), `reload`, `run` (threads) →
//! `admin`.
//!
//! Wiring in `server` (startup order):
//! 1. `let control = Control::with_config(config)` — publishes the first snapshot;
//!    `control.cell()` is what workers build their `LocalSnapshot` from.
//! 2. `control.front_door().install(..)` (and, to replace `GET /admin/route`'s
//!    `routing::explain` answer, `control.set_route_explainer(..)`; the server does not).
//! 3. `control.spawn()?` (probers, refreshes, the control thread) and `control.handle_sighup()?`.
//! 4. Start the workers with `Shared::new(tuning, control.cell().clone(), control.port(),
//!    control.front_door().clone())`; when they are up, `control.set_ready(driver, n)` and
//!    `control.set_metrics_hook(..)`.
//! 5. `spawn_admin(control.clone(), listen.admin.parse()?)` unless `listen.admin` is empty.

pub mod admin;
pub mod client;
mod fetch;
mod flight;
mod inbox;
pub mod models;
pub mod notify;
mod plane;
mod prober;
mod reload;
mod run;
pub mod signal;
mod state;
mod upstream;
mod wake;
mod wire;

pub use admin::spawn_admin;
pub use flight::ModelsFetch;
pub use plane::{Control, MetricsHook, Readiness, RouteExplainer};
pub use state::PushError;
