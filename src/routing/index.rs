//! Lookup tables precomputed once per snapshot so a dispatch hit is one hash lookup (DESIGN.md §2).
//!
//! Everything steps 0–2 need to know about a model id — the first container advertising it, its
//! registry binding already resolved to an upstream with its remap, the first upstream in priority
//! order advertising it — sits in one [`ModelRoute`] keyed by the id. Names and aliases are kept
//! lowercased so step 4 compares case-insensitively without allocating.

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

/// What steps 0–2 know about one model id.
#[derive(Debug, Clone, Default)]
pub struct ModelRoute {
    /// Step 0: the first `container` (priority order) whose warm cache holds the id.
    pub container: Option<UpstreamId>,
    /// Step 1: the registry binding, resolved against this snapshot.
    pub binding: Option<BindingRoute>,
    /// Step 2: the first non-composite upstream (priority order) whose warm cache holds the id.
    pub passthrough: Option<UpstreamId>,
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

/// A registry binding resolved to an upstream of this snapshot.
#[derive(Debug, Clone)]
pub struct BindingRoute {
    /// The bound upstream.
    pub upstream: UpstreamId,
    /// Whether it is online.
    pub status: BoundStatus,
    /// A cold `slot`: one single-flighted `/v1/models` fetch comes before the verdict.
    pub fetch_first: bool,
    /// The id to write into the body instead of the requested one (`upstream_model`, else "slot
    /// as truth"); `None` when the id stays.
    pub remap: Option<Box<str>>,
}

/// The `X-Slotgate-Route` values of one upstream, rendered once.
#[derive(Debug, Clone)]
pub struct Crumbs {
    container: Box<str>,
    passthrough: Box<str>,
    prefetched: Box<str>,
    capability: Box<str>,
}

impl Crumbs {
    fn new(name: &str) -> Crumbs {
        Crumbs {
            container: Breadcrumb::Container.render(name).into(),
            passthrough: Breadcrumb::Passthrough.render(name).into(),
            prefetched: Breadcrumb::Prefetched.render(name).into(),
            capability: Breadcrumb::Capability.render(name).into(),
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
}

impl RouteIndex {
    /// Builds the tables from the config and upstreams already in priority order.
    pub fn build(config: &Config, upstreams: &[UpstreamEntry]) -> RouteIndex {
        let mut models: FastMap<Box<str>, ModelRoute> = FastMap::default();
        let mut local = FastMap::default();
        let mut cold_remotes = Vec::new();
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
                let r = models.entry(id.as_str().into()).or_default();
                if kind == UpstreamKind::Container && r.container.is_none() {
                    r.container = Some(u.id);
                }
                if r.passthrough.is_none() {
                    r.passthrough = Some(u.id);
                }
            }
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
            let Some(u) = by_lower.get(lower(&binding.upstream).as_ref()) else {
                continue; // validation refuses unknown upstreams; nothing to route to anyway
            };
            let warm = u.live.models.is_warm();
            let status = match u.kind() {
                UpstreamKind::Composite => BoundStatus::Composite,
                _ if warm => BoundStatus::Warm,
                _ if u.live.probe == ProbeStatus::Passing => BoundStatus::ColdOnline,
                _ => BoundStatus::ColdOffline,
            };
            let remap = match &binding.upstream_model {
                Some(m) => Some(m.as_str()),
                None if warm && !u.live.models.ids.iter().any(|i| i == model) => {
                    u.live.models.ids.first().map(String::as_str)
                }
                None => None,
            }
            .filter(|m| m != model)
            .map(Box::from);
            let route = BindingRoute {
                upstream: u.id,
                status,
                fetch_first: u.kind() == UpstreamKind::Slot && !warm,
                remap,
            };
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

fn lower(s: &str) -> Box<[u8]> {
    s.as_bytes().to_ascii_lowercase().into_boxed_slice()
}
