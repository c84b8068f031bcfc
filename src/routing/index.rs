//! Lookup tables precomputed once per snapshot so a dispatch hit is one hash lookup (DESIGN.md §2).
//!
//! Everything steps 0–2 need to know about a model id — the first container advertising it, its
//! registry binding already resolved to an upstream with its remap, the first upstream in priority
//! order advertising it — sits in one [`ModelRoute`] keyed by the id. Names and aliases are kept
//! lowercased so step 4 compares case-insensitively without allocating.

use super::pool::{PoolId, PoolMember};
use super::upstream::{ProbeStatus, UpstreamEntry, UpstreamId};
use super::Breadcrumb;
use crate::config::{Config, UpstreamKind};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A small multiply-rotate hasher with a strong final mix.
///
/// Why not SipHash: the keys are short model ids and the lookup is on every request; SipHash costs
/// more than the rest of dispatch. Flooding is not a concern because only the control side inserts
/// (from config and upstreams' `/v1/models`); clients only look up.
#[derive(Debug, Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, mut bytes: &[u8]) {
        while let Some((word, rest)) = bytes.split_first_chunk::<8>() {
            self.add(u64::from_le_bytes(*word));
            bytes = rest;
        }
        if let Some((word, rest)) = bytes.split_first_chunk::<4>() {
            self.add(u64::from(u32::from_le_bytes(*word)));
            bytes = rest;
        }
        for &b in bytes {
            self.add(u64::from(b));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // The multiply leaves the low bits depending only on the low input bits; the table indexes
        // by low bits, so fold the high half down (murmur3's fmix64 tail).
        let mut h = self.hash;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 33)
    }
}

/// A `HashMap` with [`FxHasher`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// The upstreams one step found: the first in priority order, and the pool when there are more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidates {
    /// The first (the only one when `pool` is `None`).
    pub first: UpstreamId,
    /// Every equivalent upstream, the first included, when there are two or more.
    pub pool: Option<PoolId>,
}

/// What steps 0–2 know about one model id.
#[derive(Debug, Clone, Default)]
pub struct ModelRoute {
    /// Step 0: the `container`s (priority order) whose warm cache holds the id.
    pub container: Option<Candidates>,
    /// Step 1: the registry binding, resolved against this snapshot.
    pub binding: Option<BindingRoute>,
    /// Step 2: the non-composite upstreams of the first advertising one's rank whose warm cache
    /// holds the id.
    pub passthrough: Option<Candidates>,
}

/// How the bound upstream of a registry binding stands in this snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoundStatus {
    /// Bound to a `composite`: the binding is ignored.
    Composite,
    /// Warm cache: online.
    Warm,
    /// Cold cache but a passing probe: online.
    ColdOnline,
    /// Cold cache and no passing probe: offline, fall through.
    ColdOffline,
}

/// A registry binding resolved to upstreams of this snapshot.
#[derive(Debug, Clone)]
pub struct BindingRoute {
    /// The bound upstream: the first online member of a pool binding (else its first member).
    pub upstream: UpstreamId,
    /// Whether it is online.
    pub status: BoundStatus,
    /// Bound `slot`s with a cold cache: one single-flighted `/v1/models` fetch each comes before
    /// the verdict.
    pub fetch_first: Box<[UpstreamId]>,
    /// The id to write into the body instead of the requested one (`upstream_model`, else "slot
    /// as truth"); `None` when the id stays.
    pub remap: Option<Box<str>>,
    /// A pool binding's online members, when two or more are online.
    pub pool: Option<PoolId>,
}

/// The `X-Slotgate-Route` values of one upstream, rendered once.
#[derive(Debug, Clone)]
pub struct Crumbs {
    container: Box<str>,
    passthrough: Box<str>,
    prefetched: Box<str>,
    capability: Box<str>,
    fallback: Box<str>,
}

impl Crumbs {
    fn new(name: &str) -> Crumbs {
        Crumbs {
            container: Breadcrumb::Container.render(name).into(),
            passthrough: Breadcrumb::Passthrough.render(name).into(),
            prefetched: Breadcrumb::Prefetched.render(name).into(),
            capability: Breadcrumb::Capability.render(name).into(),
            fallback: Breadcrumb::Fallback.render(name).into(),
        }
    }

    /// The rendered breadcrumb of `kind` for this upstream.
    pub fn get(&self, kind: Breadcrumb) -> &str {
        match kind {
            Breadcrumb::Container => &self.container,
            Breadcrumb::Registry => "registry",
            Breadcrumb::Passthrough => &self.passthrough,
            Breadcrumb::Prefetched => &self.prefetched,
            Breadcrumb::Capability => &self.capability,
            Breadcrumb::Fallback => &self.fallback,
        }
    }
}

/// Every precomputed table of one snapshot.
#[derive(Debug, Clone, Default)]
pub struct RouteIndex {
    /// Model id -> steps 0–2.
    pub models: FastMap<Box<str>, ModelRoute>,
    /// Lowercase name or alias -> local (`slot`/`container`) upstream.
    pub local: FastMap<Box<[u8]>, UpstreamId>,
    /// Longest key of `local`, so longer ids skip the lowercase copy.
    pub local_max_len: usize,
    /// `remote` upstreams with a cold cache, in priority order (step 3's targets).
    pub cold_remotes: Vec<UpstreamId>,
    /// Breadcrumbs per upstream id.
    pub crumbs: Vec<Crumbs>,
    /// `(from, to)` outgoing path rewrites.
    pub rewrites: Vec<(Box<str>, Box<str>)>,
    /// Replica pools, indexed by [`PoolId`].
    pub pools: Vec<Box<[PoolMember]>>,
}

impl RouteIndex {
    /// Builds the tables from the config and upstreams already in priority order.
    pub fn build(config: &Config, upstreams: &[UpstreamEntry]) -> RouteIndex {
        let mut local = FastMap::default();
        let mut cold_remotes = Vec::new();
        // Per model id, the upstreams advertising it: containers, and everyone of the first
        // advertiser's rank.
        let mut advertised: FastMap<Box<str>, (Vec<UpstreamId>, Vec<UpstreamId>)> =
            FastMap::default();
        for u in upstreams {
            let kind = u.kind();
            if kind == UpstreamKind::Composite {
                continue;
            }
            if kind.is_local() {
                local.insert(lower(u.name()), u.id);
            }
            if kind == UpstreamKind::Remote && !u.live.models.is_warm() {
                cold_remotes.push(u.id);
            }
            for id in &u.live.models.ids {
                let (containers, same_rank) = advertised.entry(id.as_str().into()).or_default();
                if kind == UpstreamKind::Container && containers.last() != Some(&u.id) {
                    containers.push(u.id);
                }
                let rank = |x: UpstreamId| upstreams[x.0 as usize].kind().rank();
                if same_rank.first().is_none_or(|&f| rank(f) == kind.rank())
                    && same_rank.last() != Some(&u.id)
                {
                    same_rank.push(u.id);
                }
            }
        }
        let mut pools = Pools::new(upstreams);
        let mut models: FastMap<Box<str>, ModelRoute> = FastMap::default();
        for (id, (containers, same_rank)) in advertised {
            let route = ModelRoute {
                container: pools.candidates(&containers),
                binding: None,
                passthrough: pools.candidates(&same_rank),
            };
            models.insert(id, route);
        }
        for (alias, target) in &config.routing.aliases {
            // Validation guarantees the target is local; an upstream's own name wins over an alias.
            if let Some(&id) = local.get(lower(target).as_ref()) {
                local.entry(lower(alias)).or_insert(id);
            }
        }
        let by_lower: FastMap<Box<[u8]>, &UpstreamEntry> =
            upstreams.iter().map(|u| (lower(u.name()), u)).collect();
        for (model, binding) in &config.registry {
            let mut members: Vec<&UpstreamEntry> = binding
                .upstreams
                .iter()
                .filter_map(|n| by_lower.get(lower(n).as_ref()).copied())
                .collect();
            if members.is_empty() {
                continue; // validation refuses unknown upstreams; nothing to route to anyway
            }
            members.sort_by_key(|u| u.id); // priority (name) order
            let route = pools.binding(model, binding, &members);
            models.entry(model.as_str().into()).or_default().binding = Some(route);
        }
        let local_max_len = local.keys().map(|k| k.len()).max().unwrap_or(0);
        RouteIndex {
            models,
            local,
            local_max_len,
            cold_remotes,
            crumbs: upstreams.iter().map(|u| Crumbs::new(u.name())).collect(),
            rewrites: config
                .routing
                .path_rewrites
                .iter()
                .map(|(f, t)| (f.as_str().into(), t.as_str().into()))
                .collect(),
            pools: pools.table,
        }
    }

    /// The local upstream named (or aliased) `name`, compared case-insensitively, no allocation.
    #[inline]
    pub fn local_named(&self, name: &str) -> Option<UpstreamId> {
        let b = name.as_bytes();
        if b.len() > self.local_max_len || b.is_empty() {
            return None;
        }
        let mut buf = [0u8; 64];
        if b.len() <= buf.len() {
            let key = &mut buf[..b.len()];
            key.copy_from_slice(b);
            key.make_ascii_lowercase();
            self.local.get(&*key).copied()
        } else {
            self.local.get(lower(name).as_ref()).copied()
        }
    }
}

/// The pool table under construction.
struct Pools<'u> {
    upstreams: &'u [UpstreamEntry],
    table: Vec<Box<[PoolMember]>>,
}

impl<'u> Pools<'u> {
    fn new(upstreams: &'u [UpstreamEntry]) -> Pools<'u> {
        Pools {
            upstreams,
            table: Vec::new(),
        }
    }

    fn add(&mut self, members: Vec<PoolMember>) -> PoolId {
        self.table.push(members.into_boxed_slice());
        PoolId(self.table.len() as u32 - 1)
    }

    /// Step 0 / step 2 candidates: the first, and a pool when there are more (no remaps).
    fn candidates(&mut self, ids: &[UpstreamId]) -> Option<Candidates> {
        let first = *ids.first()?;
        let pool = (ids.len() > 1).then(|| {
            let members = ids
                .iter()
                .map(|&id| PoolMember::new(id, self.upstreams[id.0 as usize].name(), None))
                .collect();
            self.add(members)
        });
        Some(Candidates { first, pool })
    }

    /// A registry binding over `members` (priority order, non-empty).
    fn binding(
        &mut self,
        model: &str,
        binding: &crate::config::Binding,
        members: &[&UpstreamEntry],
    ) -> BindingRoute {
        let statuses: Vec<BoundStatus> = members.iter().map(|u| bound_status(u)).collect();
        let online: Vec<usize> = (0..members.len())
            .filter(|&i| matches!(statuses[i], BoundStatus::Warm | BoundStatus::ColdOnline))
            .collect();
        let head = online.first().copied().unwrap_or(0);
        let remap_of = |u: &UpstreamEntry| binding_remap(model, binding, u);
        let pool = (online.len() > 1).then(|| {
            let ms = online
                .iter()
                .map(|&i| PoolMember::new(members[i].id, members[i].name(), remap_of(members[i])))
                .collect();
            self.add(ms)
        });
        BindingRoute {
            upstream: members[head].id,
            status: statuses[head],
            fetch_first: members
                .iter()
                .filter(|u| u.kind() == UpstreamKind::Slot && !u.live.models.is_warm())
                .map(|u| u.id)
                .collect(),
            remap: remap_of(members[head]),
            pool,
        }
    }
}

/// How a bound upstream stands: composite (ignored), warm, cold but probed, or offline.
fn bound_status(u: &UpstreamEntry) -> BoundStatus {
    match u.kind() {
        UpstreamKind::Composite => BoundStatus::Composite,
        _ if u.live.models.is_warm() => BoundStatus::Warm,
        _ if u.live.probe == ProbeStatus::Passing => BoundStatus::ColdOnline,
        _ => BoundStatus::ColdOffline,
    }
}

/// The id a binding forwards to `u` instead of `model`: `upstream_model`, else "slot as truth"
/// (the first id a warm cache that lacks `model` advertises); `None` when the id stays.
fn binding_remap(
    model: &str,
    binding: &crate::config::Binding,
    u: &UpstreamEntry,
) -> Option<Box<str>> {
    let ids = &u.live.models.ids;
    match &binding.upstream_model {
        Some(m) => Some(m.as_str()),
        None if !ids.is_empty() && !ids.iter().any(|i| i == model) => {
            ids.first().map(String::as_str)
        }
        None => None,
    }
    .filter(|m| *m != model)
    .map(Box::from)
}

fn lower(s: &str) -> Box<[u8]> {
    s.as_bytes().to_ascii_lowercase().into_boxed_slice()
}
