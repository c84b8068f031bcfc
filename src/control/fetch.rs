//! Single-flight `/v1/models` fetches (DESIGN.md §2 steps 1 and 3, §7 "Control thread"): at most
//! one per upstream, on its own std thread, joined by any number of askers (the worker port's
//! `Fetch`, probers, tests), each released when its fetches are published or its time is up.

use super::client;
use super::flight::{ModelsFetch, Ticket};
use super::models;
use super::state::Live;
use super::upstream::{fetchable, upstream_cfg, Ident};
use crate::config::UpstreamName;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Upper bound on one `/v1/models` fetch (a large remote list over a slow link still fits).
const MIN_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

impl Live {
    /// Starts (or joins) one fetch per named upstream and returns a future that completes when
    /// every one finished and its result is published, or when `timeout` passed. Names that are
    /// unknown, composite, static or already warm are skipped.
    pub(crate) fn fetch_models(&self, names: &[String], timeout: Duration) -> ModelsFetch {
        let (ticket, fut) = Ticket::new();
        self.fetch_for(names, timeout, &ticket);
        fut
    }

    /// [`Self::fetch_models`] for a ticket made by the caller (it holds one guard count, which
    /// this releases).
    pub(crate) fn fetch_for(&self, names: &[String], timeout: Duration, ticket: &Arc<Ticket>) {
        // Decided from the published snapshot (lock-free); the single-flight table's short lock
        // is taken only for cold upstreams.
        let snap = self.snapshot();
        for n in names {
            let Some(u) = snap.by_name(n) else { continue };
            if fetchable(&u.cfg) && !u.live.models.is_warm() {
                self.start_fetch(&UpstreamName::from(n), Some(ticket));
            }
        }
        ticket.done_one();
        if !ticket.fired() {
            self.flights.deadline(Instant::now() + timeout, ticket);
        }
    }

    /// Starts `key`'s fetch unless one is in flight (joining it with `ticket`).
    pub(crate) fn start_fetch(&self, key: &UpstreamName, ticket: Option<&Arc<Ticket>>) {
        if !self.flights.join(key, ticket) {
            return;
        }
        // An on-demand fetch whose upstream turned warm between the caller's check and this
        // join (a flight finished in between: it published before it finished) is not needed.
        if ticket.is_some() && self.is_warm(key) {
            self.flights.finish(key);
            return;
        }
        let me = self.arc();
        let k = key.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("slotgate-models-{k}"))
            .spawn(move || {
                me.run_fetch(&k);
                me.flights.finish(&k);
            });
        if let Err(e) = spawned {
            tracing::error!(upstream = %key, error = %e, "cannot spawn a models fetch thread");
            self.flights.finish(key);
        }
    }

    /// One `/v1/models` fetch, on its own thread.
    fn run_fetch(&self, k: &UpstreamName) {
        let cfg = match upstream_cfg(&self.config(), k) {
            Some(u) if fetchable(u) => u.clone(),
            _ => return,
        };
        let Some(url) = cfg.parsed_url.as_ref() else {
            return;
        };
        let addrs = self.resolve(&cfg);
        let path = format!("{}/models", url.base_path);
        let timeout = Duration::from_millis(cfg.probe_timeout_ms).max(MIN_FETCH_TIMEOUT);
        match client::get_upstream(&cfg, &addrs, &path, timeout) {
            Ok(r) if (200..300).contains(&r.status) => match models::parse_model_ids(&r.body) {
                Ok(ids) => {
                    tracing::debug!(upstream = %cfg.name, models = ids.len(), "model list fetched");
                    self.record_models(&cfg.name, &Ident::of(&cfg), ids);
                }
                Err(e) => tracing::warn!(upstream = %cfg.name, error = %e, "bad model list"),
            },
            Ok(r) => {
                tracing::warn!(upstream = %cfg.name, status = r.status, "model list fetch refused")
            }
            Err(e) => tracing::warn!(upstream = %cfg.name, error = %e, "model list fetch failed"),
        }
    }
}
