//! Replica pools: which member of a set of equivalent upstreams serves a request.
//!
//! The five steps of DESIGN.md §2 decide *which upstreams* may serve; when several qualify at the
//! same step (containers advertising the same id, a registry binding to a list, same-rank
//! upstreams advertising the id) they form a pool, and [`pick`] chooses *one of them*: among the
//! members that can take the request now (ready, not busy, not cooling down), the least loaded,
//! ties in priority (name) order, unless the request's affinity key prefers a member whose load
//! is within `slack` of the least. A one-member pool is never built, so the common path is
//! unchanged. Pure: the caller passes each member's live load.

use super::upstream::{UpstreamEntry, UpstreamId};

/// Index of a pool in a snapshot's pool table. Valid for one snapshot only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PoolId(pub u32);

/// One member of a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolMember {
    /// The upstream.
    pub id: UpstreamId,
    /// The id written into the body when this member serves (a registry binding's
    /// `upstream_model` or "slot as truth"); `None` when the body goes as sent.
    pub remap: Option<Box<str>>,
    /// The member's rendezvous-hash seed (from its lowercase name, so stable across snapshots).
    pub seed: u64,
}

impl PoolMember {
    /// A member for upstream `id` named `name`.
    pub fn new(id: UpstreamId, name: &str, remap: Option<Box<str>>) -> PoolMember {
        PoolMember {
            id,
            remap,
            seed: name_seed(name),
        }
    }
}

/// What the picker needs to know about one member right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemberLoad {
    /// Ready, not busy (at `max_inflight` with a full queue) and not cooling down.
    pub eligible: bool,
    /// Requests in flight plus open streams, across every worker.
    pub load: u64,
}

impl MemberLoad {
    /// What the picker knows about `u` at `now_ms` (the admission clock): eligible when ready,
    /// not busy (at `max_inflight` with a full queue) and not cooling down.
    pub fn of(u: &UpstreamEntry, now_ms: u64) -> MemberLoad {
        let c = u.counters();
        MemberLoad {
            eligible: u.state().is_ready() && !c.gate.is_busy() && !c.cooldown.is_cooling(now_ms),
            load: c.load(),
        }
    }
}

/// Why [`pick`] chose its member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PickReason {
    /// The affinity key's member, within the slack of the least loaded.
    Affinity,
    /// The least-loaded eligible member (ties in name order).
    LeastLoaded,
    /// No member could take the request: the first member, under today's rules (503, hold,
    /// queue, 429).
    NoneEligible,
}

impl PickReason {
    /// The lowercase name used in explanations and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            PickReason::Affinity => "affinity",
            PickReason::LeastLoaded => "least_loaded",
            PickReason::NoneEligible => "none_eligible",
        }
    }
}

/// Chooses a member of `members` (non-empty, in priority order). `load(i)` is member `i`'s live
/// state; `key` the request's affinity key; `slack` how much more loaded than the least the
/// key's member may be and still keep it.
pub fn pick(
    members: &[PoolMember],
    load: impl Fn(usize) -> MemberLoad,
    key: Option<u64>,
    slack: u64,
) -> (usize, PickReason) {
    let mut least: Option<(usize, u64)> = None;
    let mut sticky: Option<(usize, u64, u64)> = None; // (index, score, load)
    for (i, m) in members.iter().enumerate() {
        let l = load(i);
        if !l.eligible {
            continue;
        }
        if least.is_none_or(|(_, best)| l.load < best) {
            least = Some((i, l.load));
        }
        if let Some(k) = key {
            let score = rendezvous(k, m.seed);
            if sticky.is_none_or(|(_, best, _)| score > best) {
                sticky = Some((i, score, l.load));
            }
        }
    }
    let Some((least_i, least_load)) = least else {
        return (0, PickReason::NoneEligible);
    };
    match sticky {
        Some((i, _, l)) if l <= least_load.saturating_add(slack) => (i, PickReason::Affinity),
        _ => (least_i, PickReason::LeastLoaded),
    }
}

/// Highest-random-weight score of a key on a member: the member with the highest score owns the
/// key, so a member joining or leaving moves only its own share of keys.
#[inline]
pub fn rendezvous(key: u64, seed: u64) -> u64 {
    mix(key ^ seed)
}

/// The rendezvous seed of an upstream name (case-insensitive, stable across runs).
pub fn name_seed(name: &str) -> u64 {
    fnv1a(name.bytes().map(|b| b.to_ascii_lowercase())).rotate_left(17)
}

/// FNV-1a over `bytes`.
fn fnv1a(bytes: impl Iterator<Item = u8>) -> u64 {
    bytes.fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// splitmix64's finaliser: every input bit moves every output bit.
#[inline]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A stable 64-bit hash of affinity key bytes (FNV-1a then mixed; not for adversarial input,
/// which only chooses among equivalent replicas).
pub fn key_hash(bytes: &[u8]) -> u64 {
    mix(fnv1a(bytes.iter().copied()))
}

/// A request's affinity key (DESIGN-NOTES "Session affinity"): the affinity header, else the
/// body's top-level `user`, else with `affinity = "prefix"` the first `affinity_prefix_bytes` of
/// the body's `messages` value. `None` without any (or with `affinity = "off"`): the request
/// goes to the least-loaded member.
pub fn affinity_key(
    routing: &crate::config::Routing,
    header: Option<&[u8]>,
    user: Option<&str>,
    messages: Option<&[u8]>,
) -> Option<u64> {
    use crate::config::AffinityMode;
    let tagged = |tag: u64, b: &[u8]| key_hash(b) ^ tag;
    match routing.affinity {
        AffinityMode::Off => None,
        mode => header
            .filter(|h| !h.is_empty())
            .map(|h| tagged(1, h))
            .or_else(|| {
                user.filter(|u| !u.is_empty())
                    .map(|u| tagged(2, u.as_bytes()))
            })
            .or_else(|| {
                let m = messages.filter(|_| mode == AffinityMode::Prefix)?;
                let n = routing.affinity_prefix_bytes.min(m.len());
                m.get(..n).map(|p| tagged(3, p))
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(names: &[&str]) -> Vec<PoolMember> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| PoolMember::new(UpstreamId(i as u32), n, None))
            .collect()
    }

    fn ready(loads: &[u64]) -> impl Fn(usize) -> MemberLoad + '_ {
        move |i| MemberLoad {
            eligible: true,
            load: loads[i],
        }
    }

    #[test]
    fn least_loaded_wins_ties_go_in_order() {
        let p = pool(&["a", "b", "c"]);
        assert_eq!(
            pick(&p, ready(&[3, 1, 2]), None, 4),
            (1, PickReason::LeastLoaded)
        );
        assert_eq!(
            pick(&p, ready(&[2, 2, 2]), None, 4),
            (0, PickReason::LeastLoaded)
        );
        assert_eq!(
            pick(&p, ready(&[2, 1, 1]), None, 4),
            (1, PickReason::LeastLoaded)
        );
    }

    #[test]
    fn ineligible_members_are_skipped_while_another_can_serve() {
        let p = pool(&["a", "b"]);
        let view = |i: usize| MemberLoad {
            eligible: i == 1,
            load: [0, 9][i],
        };
        assert_eq!(pick(&p, view, None, 4), (1, PickReason::LeastLoaded));
        assert_eq!(pick(&p, view, Some(7), 0), (1, PickReason::Affinity));
    }

    #[test]
    fn none_eligible_means_the_first_member() {
        let p = pool(&["a", "b"]);
        let view = |_| MemberLoad {
            eligible: false,
            load: 0,
        };
        assert_eq!(pick(&p, view, Some(1), 4), (0, PickReason::NoneEligible));
    }

    #[test]
    fn affinity_sticks_within_the_slack_and_moves_beyond_it() {
        let p = pool(&["gpu0", "gpu1", "gpu2"]);
        let key = key_hash(b"session-42");
        let (home, why) = pick(&p, ready(&[0, 0, 0]), Some(key), 4);
        assert_eq!(why, PickReason::Affinity);
        let mut loads = [1u64, 1, 1];
        loads[home] = 5; // least + 4: still home
        assert_eq!(
            pick(&p, ready(&loads), Some(key), 4),
            (home, PickReason::Affinity)
        );
        loads[home] = 6; // beyond the slack: the least loaded
        let (moved, why) = pick(&p, ready(&loads), Some(key), 4);
        assert_eq!(why, PickReason::LeastLoaded);
        assert_ne!(moved, home);
    }

    #[test]
    fn keys_spread_and_a_leaving_member_moves_only_its_keys() {
        let names = ["gpu0", "gpu1", "gpu2", "gpu3"];
        let full = pool(&names);
        let keys: Vec<u64> = (0..4000)
            .map(|k| key_hash(format!("user-{k}").as_bytes()))
            .collect();
        let home = |p: &[PoolMember], k: u64| {
            let (i, _) = pick(
                p,
                |_| MemberLoad {
                    eligible: true,
                    load: 0,
                },
                Some(k),
                0,
            );
            p[i].seed
        };
        let mut share = [0usize; 4];
        for &k in &keys {
            let s = home(&full, k);
            share[full.iter().position(|m| m.seed == s).unwrap()] += 1;
        }
        for n in share {
            assert!((700..=1300).contains(&n), "uneven spread {share:?}");
        }
        // gpu2 leaves: the keys of the others stay where they were.
        let rest: Vec<PoolMember> = full
            .iter()
            .filter(|m| m.seed != full[2].seed)
            .cloned()
            .collect();
        for &k in &keys {
            let before = home(&full, k);
            if before != full[2].seed {
                assert_eq!(home(&rest, k), before);
            }
        }
    }

    #[test]
    fn affinity_key_sources_in_order() {
        use crate::config::{AffinityMode, Routing};
        let mut r = Routing::default();
        let msgs = br#"[{"role":"system","content":"You are helpful."},{"role":"user"}]"#;
        let h = affinity_key(&r, Some(b"s1"), Some("alice"), Some(msgs));
        assert_eq!(h, affinity_key(&r, Some(b"s1"), Some("bob"), None));
        let u = affinity_key(&r, None, Some("alice"), Some(msgs));
        assert!(u.is_some() && u != h);
        assert_eq!(
            affinity_key(&r, Some(b""), None, Some(msgs)),
            None,
            "session mode: no prefix"
        );
        r.affinity = AffinityMode::Prefix;
        r.affinity_prefix_bytes = 20;
        let p = affinity_key(&r, None, None, Some(msgs));
        assert!(p.is_some());
        // Only the first 20 bytes count.
        let mut other = msgs.to_vec();
        other[40] = b'X';
        assert_eq!(p, affinity_key(&r, None, None, Some(&other)));
        other[5] = b'X';
        assert_ne!(p, affinity_key(&r, None, None, Some(&other)));
        r.affinity = AffinityMode::Off;
        assert_eq!(
            affinity_key(&r, Some(b"s1"), Some("alice"), Some(msgs)),
            None
        );
    }

    #[test]
    fn seeds_ignore_case() {
        assert_eq!(name_seed("GPU0"), name_seed("gpu0"));
        assert_ne!(name_seed("gpu0"), name_seed("gpu1"));
    }
}
