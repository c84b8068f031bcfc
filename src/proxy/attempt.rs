//! One attempt at one upstream (DESIGN.md §3): what sending the request and relaying the answer
//! need once the decision is made, including which upstream a fallback stands in for.

use super::pool;
use super::request_id::RequestId;
use crate::config::UpstreamConfig;
use crate::routing::{Breadcrumb, SnapshotRef, UpstreamId};

/// The facts of one attempt, kept while its response is relayed.
pub struct Attempt {
    /// The snapshot the decision was made on (its upstream entry, config and breadcrumb).
    pub snap: SnapshotRef,
    /// The upstream tried.
    pub upstream_id: UpstreamId,
    /// Which rule chose it.
    pub crumb: Breadcrumb,
    /// Sent upstream and back to the client.
    pub request_id: RequestId,
    /// `[listen] route_headers`.
    pub route_headers: bool,
    /// The client asked to keep the connection.
    pub client_keep_alive: bool,
    /// The client speaks HTTP/1.0 (a chunked answer is de-chunked for it).
    pub client_http10: bool,
    /// A `HEAD` request (the answer has no body whatever its framing says).
    pub head_request: bool,
    /// Where the upstream is (its pool key).
    pub addr: pool::Target,
    /// The upstream this attempt is a fallback for (`X-Slotgate-Fallback-From`).
    pub fallback_from: Option<UpstreamId>,
}

impl Attempt {
    /// The upstream's config.
    pub fn cfg(&self) -> &UpstreamConfig {
        &self.snap.upstream(self.upstream_id).cfg
    }

    /// The upstream's name.
    pub fn upstream(&self) -> &str {
        self.snap.upstream(self.upstream_id).name()
    }

    /// The `X-Slotgate-Route` value (rendered once per snapshot).
    pub fn route(&self) -> &str {
        self.snap.route_header(self.upstream_id, self.crumb)
    }

    /// The name of the upstream this attempt stands in for, when it is a fallback.
    pub fn fallback_from(&self) -> Option<&str> {
        self.fallback_from.map(|id| self.snap.upstream(id).name())
    }
}
