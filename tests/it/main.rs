//! The integration tests, gathered as modules of one test binary: one link instead of one per
//! file, and one harness that runs them all in parallel (the measurement is in DESIGN-NOTES.md,
//! "One integration test binary"). `cargo test --test it proxy::` runs one module.
//!
//! Three files stay binaries of their own because they touch process-wide state another
//! module's server would disturb: `tests/control.rs` raises SIGHUP at itself (every
//! `Server::start` installs the handler and takes the flag), `tests/tls_reload.rs` watches the
//! control client's process-wide TLS config cache; and `tests/shape.rs`, which reads `src/`
//! only, keeps its `cargo test --test shape`.

#[path = "../support/mod.rs"]
mod support;

mod admission;
mod clients;
mod fuzz_replay;
mod hardening;
mod live;
mod mock;
mod ops;
mod pools;
mod port;
mod proxy;
mod readme;
mod real_llama;
mod tls;
