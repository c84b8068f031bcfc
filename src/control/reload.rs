//! Hot reload (DESIGN.md §6 `POST /admin/reload`, `SIGHUP`): re-read the config file, refuse
//! it whole on any problem, or install it: live state carried over by identity, counters by
//! name, probers restarted where their settings changed. Reloads are serialised.

use super::client;
use super::notify;
use super::plane::Control;
use super::prober::Prober;
use crate::config::UpstreamName;
use crate::config::{Config, ConfigError};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl Control {
    /// Re-reads the config file (and tuning profile) it came from; on error every problem is
    /// returned and the running snapshot stays untouched. Returns the published epoch.
    /// Tells systemd (`RELOADING=1` ... `READY=1`) and counts the outcome.
    pub fn reload(&self) -> Result<u64, ConfigError> {
        let _one_at_a_time = self.reloading.lock();
        notify::reloading();
        let r = self.reload_file();
        self.reloads[usize::from(r.is_err())].fetch_add(1, Ordering::Relaxed);
        notify::ready();
        r
    }

    /// Reloads applied and reloads refused since start.
    pub fn reload_counts(&self) -> (u64, u64) {
        (
            self.reloads[0].load(Ordering::Relaxed),
            self.reloads[1].load(Ordering::Relaxed),
        )
    }

    fn reload_file(&self) -> Result<u64, ConfigError> {
        let old = self.config();
        let Some(path) = old.source.clone() else {
            return Err(ConfigError::single(
                "file",
                "the running config was not loaded from a file",
            ));
        };
        let cfg = Config::load(&path, old.tuning_source.as_deref())?;
        self.front_tls
            .reload(
                cfg.listen.tls_cert.as_deref(),
                cfg.listen.tls_key.as_deref(),
            )
            .map_err(|(k, m)| ConfigError::single(k, m))?;
        Ok(self.apply_config_serialised(cfg))
    }

    /// Installs a validated config: unchanged upstreams (same name, kind and url) keep their
    /// probe state, model cache and pushed state, and every upstream whose name stays keeps its
    /// counters; new ones start fresh (and probing); removed ones stop. Returns the published
    /// epoch.
    pub fn apply_config(&self, cfg: Config) -> u64 {
        let _one_at_a_time = self.reloading.lock();
        self.apply_config_serialised(cfg)
    }

    /// [`Self::apply_config`] with `reloading` held by the caller.
    fn apply_config_serialised(&self, cfg: Config) -> u64 {
        let cfg = Arc::new(cfg);
        // CA files are read again from this config on (the workers rebuild theirs per config).
        client::forget_tls_configs();
        // The counters travel in the snapshot: a request still on the old one keeps the old
        // entry's `Arc`, which is the new entry's too while the name stays.
        let epoch = self.live.install(cfg.clone());
        if self.started.load(Ordering::Acquire) {
            self.restart_probers(&cfg);
        }
        tracing::info!(epoch, upstreams = cfg.upstreams.len(), "config applied");
        epoch
    }

    /// Keeps the probers whose settings did not change, stops the others and starts new ones.
    fn restart_probers(&self, cfg: &Config) {
        let mut probers = self.probers.lock();
        let mut next = HashMap::new();
        for u in &cfg.upstreams {
            let k = UpstreamName::from(&u.name);
            match probers.remove(&k) {
                Some(p) if p.config() == u => {
                    next.insert(k, p);
                }
                old => {
                    if let Some(p) = old {
                        p.stop();
                    }
                    match Prober::start(Arc::downgrade(&self.live), u) {
                        Ok(Some(p)) => {
                            next.insert(k, p);
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::error!(upstream = %u.name, error = %e, "cannot start prober")
                        }
                    }
                }
            }
        }
        for (_, p) in probers.drain() {
            p.stop();
        }
        *probers = next;
    }
}
