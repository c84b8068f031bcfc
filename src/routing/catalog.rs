//! The front door's `GET /v1/models` and `GET /v1/models/{id}` bodies (DESIGN.md §3b): pure
//! functions of a snapshot (its load figures included: the counters travel in it), so workers
//! answer them without contacting any upstream or the control plane.

use super::snapshot::Snapshot;
use super::upstream::{SlotState, UpstreamEntry};
use crate::config::UpstreamKind;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

/// What a chat UI shows for one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelStatus {
    /// The serving upstream is in the ready set.
    Ready,
    /// The serving upstream is pulling, starting or warming.
    Loading,
    /// Anything else (offline, unloading, error, or nothing can serve it).
    Offline,
}

impl ModelStatus {
    /// From an upstream's state.
    pub fn of(state: SlotState) -> ModelStatus {
        match state {
            s if s.is_ready() => ModelStatus::Ready,
            SlotState::Pulling | SlotState::Starting | SlotState::Warming => ModelStatus::Loading,
            _ => ModelStatus::Offline,
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelStatus::Ready => "ready",
            ModelStatus::Loading => "loading",
            ModelStatus::Offline => "offline",
        }
    }
}

/// The ids the front door lists: advertised by `advertise_models` upstreams, plus registry ids.
pub fn listed_ids(snap: &Snapshot) -> BTreeSet<&str> {
    let mut ids: BTreeSet<&str> = snap.config.registry.keys().map(String::as_str).collect();
    for u in &snap.upstreams {
        if u.cfg.advertise_models && u.kind() != UpstreamKind::Composite {
            ids.extend(u.live.models.ids.iter().map(String::as_str));
        }
    }
    ids
}

fn has(u: &UpstreamEntry, id: &str) -> bool {
    u.live.models.ids.iter().any(|m| m == id)
}

/// The upstream that would serve `id` now, and its status: container preemption, else the
/// registry binding (if not composite), else the first upstream in priority order whose cache has
/// it. A binding to a composite nobody serves yields the composite, offline.
pub fn owner<'s>(snap: &'s Snapshot, id: &str) -> Option<(&'s str, ModelStatus)> {
    let serve = |u: &'s UpstreamEntry| (u.name(), ModelStatus::of(u.state()));
    if let Some(u) = snap
        .upstreams
        .iter()
        .find(|u| u.kind() == UpstreamKind::Container && has(u, id))
    {
        return Some(serve(u));
    }
    let binding = snap.config.registry.get(id);
    let bound = binding.and_then(|b| snap.by_name(b.upstream()));
    if let Some(u) = bound.filter(|u| u.kind() != UpstreamKind::Composite) {
        return Some(serve(u));
    }
    if let Some(u) = snap
        .upstreams
        .iter()
        .find(|u| u.kind() != UpstreamKind::Composite && has(u, id))
    {
        return Some(serve(u));
    }
    bound.map(|u| (u.name(), ModelStatus::Offline))
}

/// Live load of an upstream for the model list (`{inflight, queued, held}`), if known.
pub type LoadOf<'a> = &'a dyn Fn(&str) -> Option<Value>;

/// `{inflight, streams, queued, held}` of upstream `name`, read from the counters the snapshot
/// carries: the front door's [`LoadOf`].
pub fn load_json(snap: &Snapshot, name: &str) -> Option<Value> {
    let c = snap.by_name(name)?.counters();
    Some(json!({
        "inflight": c.requests(),
        "streams": c.streams(),
        "queued": c.gate.waiting(),
        "held": c.held(),
    }))
}

fn entry(snap: &Snapshot, id: &str, load: LoadOf<'_>) -> Value {
    let (owned_by, status) = owner(snap, id).unwrap_or(("slotgate", ModelStatus::Offline));
    let mut v = json!({
        "id": id,
        "object": "model",
        "created": 0,
        "owned_by": owned_by,
        "status": status.as_str(),
    });
    if let Some(l) = load(owned_by) {
        v["load"] = l;
    }
    v
}

/// `GET /v1/models`: the OpenAI list of every listed id, sorted, with `owned_by` and `status`.
pub fn models_list_json(snap: &Snapshot) -> Vec<u8> {
    models_list_json_with(snap, &|_| None)
}

/// The same list with each entry's live `load` (queue depth, waiting and held requests of the
/// upstream that would serve it), as the front door answers it.
pub fn models_list_json_with(snap: &Snapshot, load: LoadOf<'_>) -> Vec<u8> {
    let data: Vec<Value> = listed_ids(snap)
        .into_iter()
        .map(|id| entry(snap, id, load))
        .collect();
    serde_json::to_vec(&json!({"object": "list", "data": data})).expect("json")
}

/// `GET /v1/models/{id}`: one entry, or `None` (the caller answers `404 dispatch.no_route`).
pub fn model_json(snap: &Snapshot, id: &str) -> Option<Vec<u8>> {
    model_json_with(snap, id, &|_| None)
}

/// One entry with its live `load`.
pub fn model_json_with(snap: &Snapshot, id: &str, load: LoadOf<'_>) -> Option<Vec<u8>> {
    if !listed_ids(snap).contains(id) {
        return None;
    }
    Some(serde_json::to_vec(&entry(snap, id, load)).expect("json"))
}

/// A worker's memo of the `GET /v1/models` body: rebuilt only when the snapshot epoch moves, so
/// a model-list poll costs a cache hit (no lock, no atomics; one memo per worker thread).
#[derive(Debug, Default)]
pub struct CatalogMemo {
    cached: RefCell<Option<(u64, Rc<[u8]>)>>,
}

impl CatalogMemo {
    /// The list body for `snap`.
    pub fn list(&self, snap: &Snapshot) -> Rc<[u8]> {
        let mut c = self.cached.borrow_mut();
        match &*c {
            Some((epoch, body)) if *epoch == snap.epoch => body.clone(),
            _ => {
                let body: Rc<[u8]> = Rc::from(models_list_json(snap));
                *c = Some((snap.epoch, body.clone()));
                body
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::routing::{LiveState, LiveUpstream, ModelList, ProbeStatus, PushedState};
    use std::sync::Arc;

    fn snap() -> Snapshot {
        let cfg = Config::from_toml_str(
            r#"
[[upstream]]
name = "chat"
kind = "container"
url = "http://127.0.0.1:1/v1"
[[upstream]]
name = "agent"
kind = "slot"
url = "http://127.0.0.1:2/v1"
[[upstream]]
name = "hidden"
kind = "slot"
url = "http://127.0.0.1:3/v1"
advertise_models = false
[[upstream]]
name = "or"
kind = "remote"
url = "http://127.0.0.1:4/v1"
[[upstream]]
name = "local"
kind = "composite"
[registry]
"bound" = "agent"
"comp" = "local"
"shared" = "agent"
"#,
            None,
        )
        .unwrap();
        let mut live = LiveState::default();
        let models = |ids: &[&str]| {
            Arc::new(ModelList {
                ids: ids.iter().map(|s| s.to_string()).collect(),
                fetched_at: None,
            })
        };
        live.upstreams.insert(
            "chat".into(),
            LiveUpstream {
                probe: ProbeStatus::Passing,
                models: models(&["c1", "shared"]),
                ..Default::default()
            },
        );
        live.upstreams.insert(
            "agent".into(),
            LiveUpstream {
                probe: ProbeStatus::Passing,
                models: models(&["a1"]),
                pushed: Some(PushedState {
                    state: SlotState::Warming,
                    progress: json!({}),
                }),
                ..Default::default()
            },
        );
        live.upstreams.insert(
            "hidden".into(),
            LiveUpstream {
                models: models(&["h1", "c1"]),
                ..Default::default()
            },
        );
        live.upstreams.insert(
            "or".into(),
            LiveUpstream {
                models: models(&["r1", "h1"]),
                ..Default::default()
            },
        );
        Snapshot::build(Arc::new(cfg), &live, 1)
    }

    fn list(s: &Snapshot) -> Vec<(String, String, String)> {
        let v: Value = serde_json::from_slice(&models_list_json(s)).unwrap();
        assert_eq!(v["object"], "list");
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                assert_eq!(e["object"], "model");
                (
                    e["id"].as_str().unwrap().to_string(),
                    e["owned_by"].as_str().unwrap().to_string(),
                    e["status"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn union_owner_and_status() {
        let s = snap();
        let got = list(&s);
        let want: Vec<(String, String, String)> = [
            ("a1", "agent", "loading"),
            ("bound", "agent", "loading"),
            ("c1", "chat", "ready"),
            ("comp", "local", "offline"),
            // h1 is only advertised through the remote (hidden does not advertise), but the
            // hidden slot comes first in priority order and has it cached.
            ("h1", "hidden", "offline"),
            ("r1", "or", "ready"),
            // Container preemption beats the registry binding.
            ("shared", "chat", "ready"),
        ]
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn memo_follows_epoch() {
        let s = snap();
        let m = CatalogMemo::default();
        let a = m.list(&s);
        assert!(Rc::ptr_eq(&a, &m.list(&s)));
        let mut s2 = s.clone();
        s2.epoch += 1;
        assert!(!Rc::ptr_eq(&a, &m.list(&s2)));
        assert_eq!(&*a, models_list_json(&s).as_slice());
    }

    #[test]
    fn load_reads_the_snapshot_counters() {
        let s = snap();
        let _g = s.by_name("or").unwrap().counters().request();
        let body = model_json_with(&s, "r1", &|n| load_json(&s, n)).unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["load"]["inflight"], 1, "{v}");
        assert_eq!(v["load"]["queued"], 0, "{v}");
        assert!(load_json(&s, "ghost").is_none());
    }

    #[test]
    fn one_entry_or_none() {
        let s = snap();
        let v: Value = serde_json::from_slice(&model_json(&s, "r1").unwrap()).unwrap();
        assert_eq!(v["owned_by"], "or");
        assert!(model_json(&s, "nope").is_none());
        // Ids only a non-advertising upstream has are not listed.
        assert!(model_json(&s, "zzz").is_none());
    }
}
