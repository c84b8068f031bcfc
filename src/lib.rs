//! slotgate: the front door of an inference host (see DESIGN.md).
//!
//! The request's path through the crate: [`http`] parses, [`routing`] decides, [`admission`]
//! admits (per-upstream budgets and counters), [`proxy`] forwards and relays, while [`control`]
//! keeps live state and publishes routing snapshots beside it. Workers reach the control plane
//! only through the [`port`] (messages, never its lock: DESIGN.md §7).

// No `unsafe` outside the three modules that allow it, each use with a SAFETY note: `proxy::sys`
// (socket and buffer syscalls), `control::signal` (sigwait), `control::notify` (the clock).
#![deny(unsafe_code)]

pub mod admission;
pub mod config;
pub mod control;
pub mod error;
pub mod fuzzing;
pub mod http;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod mock;
pub mod port;
pub mod prometheus;
pub mod proxy;
pub mod routing;
pub mod server;
pub mod tls;
