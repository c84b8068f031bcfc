//! The immutable routing view: config plus live state, built by the control side.

use super::breadcrumb::Breadcrumb;
use super::index::RouteIndex;
use super::upstream::{LiveState, ModelList, UpstreamEntry, UpstreamId};
use crate::config::{Config, UpstreamConfig, UpstreamName};
use std::sync::Arc;

/// The immutable routing view workers read (DESIGN.md §1 "snapshot").
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Publication number; moves forward with every publish.
    pub epoch: u64,
    /// The validated config this view was built from.
    pub config: Arc<Config>,
    /// Upstreams in priority order: container/slot, then remote, then composite; by name within a
    /// rank.
    pub upstreams: Vec<UpstreamEntry>,
    /// Every upstream's name and id, sorted by name: looked up by binary search, no allocation.
    by_name: Vec<(UpstreamName, UpstreamId)>,
    /// Dispatch's precomputed tables.
    index: RouteIndex,
}

impl Snapshot {
    /// Builds a snapshot from a validated config and the live state.
    pub fn build(config: Arc<Config>, live: &LiveState, epoch: u64) -> Snapshot {
        let mut cfgs: Vec<(u8, UpstreamName, &UpstreamConfig)> = config
            .upstreams
            .iter()
            .map(|c| (c.kind.rank(), UpstreamName::from(&c.name), c))
            .collect();
        cfgs.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let mut upstreams = Vec::with_capacity(cfgs.len());
        let mut by_name = Vec::with_capacity(cfgs.len());
        for (i, (_, key, c)) in cfgs.into_iter().enumerate() {
            let id = UpstreamId(i as u32);
            let mut l = live.upstreams.get(&key).cloned().unwrap_or_default();
            if !c.models.is_empty() && l.models.ids.is_empty() {
                l.models = Arc::new(ModelList {
                    ids: c.models.clone(),
                    fetched_at: None,
                });
            }
            if l.addrs.is_empty() {
                if let Some(a) = c.parsed_url.as_ref().and_then(|u| u.literal_addr()) {
                    l.addrs = Arc::from(vec![a]);
                }
            }
            by_name.push((key, id));
            upstreams.push(UpstreamEntry {
                id,
                cfg: Arc::new(c.clone()),
                live: l,
            });
        }
        by_name.sort_by(|a, b| a.0.cmp(&b.0));
        let index = RouteIndex::build(&config, &upstreams);
        Snapshot {
            epoch,
            config,
            upstreams,
            by_name,
            index,
        }
    }

    /// The upstream with this id.
    pub fn upstream(&self, id: UpstreamId) -> &UpstreamEntry {
        &self.upstreams[id.0 as usize]
    }

    /// Looks an upstream up by name, case-insensitively.
    pub fn by_name(&self, name: &str) -> Option<&UpstreamEntry> {
        let at = self
            .by_name
            .binary_search_by(|(n, _)| n.cmp_str(name))
            .ok()?;
        let (_, id) = self.by_name.get(at)?;
        Some(self.upstream(*id))
    }

    /// The `X-Slotgate-Route` value for `crumb` on upstream `id`, rendered once per snapshot.
    pub fn route_header(&self, id: UpstreamId, crumb: Breadcrumb) -> &str {
        self.index.crumbs[id.0 as usize].get(crumb)
    }

    /// `remote` upstreams whose model cache is cold, in priority order (step 3's targets).
    pub fn cold_remotes(&self) -> &[UpstreamId] {
        &self.index.cold_remotes
    }

    /// The local (`slot`/`container`) upstream with this name or alias, case-insensitively.
    pub fn local_named(&self, name: &str) -> Option<&UpstreamEntry> {
        self.index.local_named(name).map(|id| self.upstream(id))
    }

    /// Whether any dispatch on this snapshot can yield a replica pool.
    #[inline]
    pub fn has_pools(&self) -> bool {
        !self.index.pools.is_empty()
    }

    /// The members of pool `id` (priority order).
    pub fn pool(&self, id: super::PoolId) -> &[super::PoolMember] {
        self.index.pools.get(id.0 as usize).map_or(&[], |p| p)
    }

    /// Dispatch's tables.
    pub(super) fn index(&self) -> &RouteIndex {
        &self.index
    }
}
