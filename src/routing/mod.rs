//! Routing: the immutable snapshot, request facts and the five-step dispatch (DESIGN.md §2).
//!
//! Pure code: no sockets, no clocks, no threads. The control side builds [`Snapshot`]s from the
//! config and live state and publishes them; workers read them lock-free, extract
//! [`BodyFacts`] from the body and call [`dispatch`].
#![forbid(unsafe_code)]
#![deny(clippy::string_slice)]
#![warn(missing_docs)]

pub mod breadcrumb;
pub mod catalog;
pub mod dispatch;
pub mod explain;
pub mod facts;
mod index;
pub mod pool;
pub mod publish;
pub mod snapshot;
pub mod upstream;

pub use breadcrumb::Breadcrumb;
pub use dispatch::{
    dispatch, dispatch_async, dispatch_blocking, outgoing_path, Decision, DispatchError,
    FetchReason, FetchRequest, FetchTarget, FetchesDone, ModelFetcher, Outcome, RequestFacts,
    Routed, Step,
};
pub use explain::{
    explain, explain_with, routing_table, ExplainAt, ExplainedPool, Explanation, StepVerdict,
};
pub use facts::{
    extract, extract_json, extract_multipart, remap_model, remap_segments, BodyFacts, FactsError,
    ModelSpan, RemappedBody, SpanEncoding,
};
pub use pool::{pick, MemberLoad, PickReason, PoolId, PoolMember};
pub use publish::{LocalSnapshot, SnapshotCell, SnapshotRef};
pub use snapshot::*;
pub use upstream::*;

#[cfg(test)]
mod tests;
