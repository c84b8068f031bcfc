//! One thread per upstream: health probes (DESIGN.md §1 "readiness comes from slotgate's own
//! probes"), periodic `/v1/models` refreshes and DNS re-resolution.
//!
//! Probing is blocking std IO bounded by `probe_timeout_ms`; because every upstream has its own
//! thread, a hung health endpoint only delays its own next probe. While failing, the period walks
//! `probe_backoff_ms` (±10% jitter, the last step repeating); a probe that turns healthy triggers
//! a models refresh.

use super::client;
use super::state::Live;
use super::upstream::{fetchable, key, Ident};
use crate::config::{UpstreamConfig, UpstreamKind};
use crate::routing::ProbeStatus;
use parking_lot::{Condvar, Mutex};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// How often a hostname upstream is re-resolved when nothing else resolves it.
const DNS_REFRESH: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Signals {
    wake: bool,
    down: bool,
    stop: bool,
}

/// Handle to one upstream's prober thread.
pub(crate) struct Prober {
    ident: Ident,
    /// Fixed for the thread's life: a reload that changes any setting replaces the prober (its
    /// live state, kept by [`Live`], carries over).
    cfg: UpstreamConfig,
    signals: Mutex<Signals>,
    cv: Condvar,
}

impl Prober {
    /// Starts the thread, or `Ok(None)` when the upstream needs none (composite, or neither
    /// probed, fetched nor named by host).
    pub(crate) fn start(
        control: Weak<Live>,
        cfg: &UpstreamConfig,
    ) -> std::io::Result<Option<Arc<Prober>>> {
        let hostname = cfg
            .parsed_url
            .as_ref()
            .is_some_and(|u| u.literal_addr().is_none());
        if cfg.kind == UpstreamKind::Composite || !(cfg.probed() || fetchable(cfg) || hostname) {
            return Ok(None);
        }
        let p = Arc::new(Prober {
            ident: Ident::of(cfg),
            cfg: cfg.clone(),
            signals: Mutex::default(),
            cv: Condvar::new(),
        });
        let me = p.clone();
        std::thread::Builder::new()
            .name(format!("slotgate-probe-{}", key(&cfg.name)))
            .spawn(move || me.run(control))?;
        Ok(Some(p))
    }

    /// The settings it runs with.
    pub(crate) fn config(&self) -> &UpstreamConfig {
        &self.cfg
    }

    /// Probe as soon as possible.
    pub(crate) fn wake(&self) {
        self.signals.lock().wake = true;
        self.cv.notify_one();
    }

    /// A worker saw the upstream refuse: continue on the failing schedule.
    pub(crate) fn mark_down(&self) {
        self.signals.lock().down = true;
        self.cv.notify_one();
    }

    /// Ends the thread (after its current probe, if any).
    pub(crate) fn stop(&self) {
        self.signals.lock().stop = true;
        self.cv.notify_one();
    }

    fn run(&self, control: Weak<Live>) {
        let mut rng = Jitter::seeded(self as *const _ as u64);
        let now = Instant::now();
        let cfg = &self.cfg;
        let hostname = cfg
            .parsed_url
            .as_ref()
            .is_some_and(|u| u.literal_addr().is_none());
        let mut next_probe = cfg.probed().then_some(now);
        // Probed upstreams refresh models once a probe passes; others from the start.
        let mut next_refresh = (fetchable(cfg) && !cfg.probed()).then_some(now);
        let mut next_dns = hostname.then_some(now);
        let mut fails: usize = 0;
        loop {
            {
                let mut s = self.signals.lock();
                loop {
                    if s.stop {
                        return;
                    }
                    if std::mem::take(&mut s.down) && cfg.probed() {
                        fails = fails.max(1);
                        next_probe = Some(Instant::now() + backoff(cfg, 0, &mut rng));
                        next_refresh = None;
                    }
                    if std::mem::take(&mut s.wake) && cfg.probed() {
                        next_probe = Some(Instant::now());
                    }
                    let due = [next_probe, next_refresh, next_dns]
                        .into_iter()
                        .flatten()
                        .min();
                    match due {
                        Some(d) if d <= Instant::now() => break,
                        Some(d) => {
                            self.cv.wait_until(&mut s, d);
                        }
                        None => self.cv.wait(&mut s),
                    }
                }
            }
            let Some(ctl) = control.upgrade() else { return };
            let now = Instant::now();
            if next_probe.is_some_and(|t| t <= now) && busy_and_passing(&ctl, cfg) {
                // Requests in flight prove it alive (a failed connect marks it down at once),
                // and a server that runs one request at a time (llama-cpp-python) would answer
                // the probe only after them, past its timeout: probe again once it is idle.
                next_probe = Some(now + ms(cfg.probe_interval_ms));
            } else if next_probe.is_some_and(|t| t <= now) {
                let Some(passing) = probe(&ctl, cfg) else {
                    // Cannot probe this scheme: stop probing and leave the status Unknown.
                    next_probe = None;
                    continue;
                };
                next_dns = hostname.then(|| Instant::now() + DNS_REFRESH);
                let mut fetched_now = false;
                if passing && fetchable(cfg) {
                    // Coming up with a cold cache: fetch the model list before publishing the
                    // upstream as ready, so no request sees it ready yet unaware of its models.
                    let cold_turning_up = ctl.snapshot().by_name(&cfg.name).is_some_and(|u| {
                        u.live.probe != ProbeStatus::Passing && !u.live.models.is_warm()
                    });
                    if cold_turning_up {
                        ctl.fetch_models(std::slice::from_ref(&cfg.name), ms(cfg.probe_timeout_ms))
                            .wait();
                        // A failed fetch leaves the cache cold: the refresh below retries it.
                        fetched_now = ctl
                            .snapshot()
                            .by_name(&cfg.name)
                            .is_some_and(|u| u.live.models.is_warm());
                    }
                }
                let Some(prev) = ctl.record_probe(&cfg.name, &self.ident, passing) else {
                    return; // removed by a reload
                };
                if passing {
                    fails = 0;
                    next_probe = Some(Instant::now() + ms(cfg.probe_interval_ms));
                    if prev != ProbeStatus::Passing {
                        tracing::info!(upstream = %cfg.name, "probe passing");
                    }
                    // Turned healthy (or this prober just started): refresh the models now,
                    // unless that fetch just ran above.
                    if fetched_now {
                        next_refresh = Some(Instant::now() + ms(cfg.models_refresh_ms));
                    } else if fetchable(cfg)
                        && (prev != ProbeStatus::Passing || next_refresh.is_none())
                    {
                        next_refresh = Some(Instant::now());
                    }
                } else {
                    if prev != ProbeStatus::Failing {
                        tracing::warn!(upstream = %cfg.name, "probe failing");
                    }
                    next_probe = Some(Instant::now() + backoff(cfg, fails, &mut rng));
                    fails += 1;
                    next_refresh = None;
                }
            }
            if next_refresh.is_some_and(|t| t <= Instant::now()) && busy_and_passing(&ctl, cfg) {
                // Same reason: a model-list refresh waits until the upstream is idle.
                next_refresh = Some(Instant::now() + ms(cfg.probe_interval_ms));
            } else if next_refresh.is_some_and(|t| t <= Instant::now()) {
                ctl.start_fetch(&key(&cfg.name), None);
                next_refresh = fetchable(cfg).then(|| Instant::now() + ms(cfg.models_refresh_ms));
                next_dns = hostname.then(|| Instant::now() + DNS_REFRESH);
            }
            if next_dns.is_some_and(|t| t <= Instant::now()) {
                ctl.resolve(cfg);
                next_dns = Some(Instant::now() + DNS_REFRESH);
            }
        }
    }
}

/// Whether `cfg` is passing its probe and has requests in flight through this process.
fn busy_and_passing(ctl: &Live, cfg: &UpstreamConfig) -> bool {
    ctl.counters(&cfg.name).is_some_and(|c| c.requests() > 0)
        && ctl
            .snapshot()
            .by_name(&cfg.name)
            .is_some_and(|u| u.live.probe == ProbeStatus::Passing)
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// The failing period for the `fails`-th consecutive failure, with ±10% jitter.
fn backoff(cfg: &UpstreamConfig, fails: usize, rng: &mut Jitter) -> Duration {
    let steps = &cfg.probe_backoff_ms;
    let base = steps
        .get(fails)
        .or(steps.last())
        .copied()
        .unwrap_or(cfg.probe_interval_ms);
    rng.spread(ms(base))
}

/// One health probe: `GET health_path` on the upstream's host; 2xx is passing. `None` when the
/// control client cannot probe it at all.
fn probe(ctl: &Live, cfg: &UpstreamConfig) -> Option<bool> {
    cfg.parsed_url.as_ref()?;
    let addrs = ctl.resolve(cfg);
    Some(
        match client::get_upstream(cfg, &addrs, &cfg.health_path, ms(cfg.probe_timeout_ms)) {
            Ok(r) => (200..300).contains(&r.status),
            Err(e) => {
                tracing::debug!(upstream = %cfg.name, error = %e, "probe failed");
                false
            }
        },
    )
}

/// xorshift64*: enough randomness to spread probes, no crate needed.
struct Jitter(u64);

impl Jitter {
    fn seeded(salt: u64) -> Jitter {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Jitter((t ^ salt.rotate_left(17)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// `d` scaled by a factor in [0.9, 1.1].
    fn spread(&mut self, d: Duration) -> Duration {
        let permille = 900 + self.next() % 201;
        d * permille as u32 / 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_walks_steps_with_jitter() {
        let mut cfg =
            UpstreamConfig::new("a", UpstreamKind::Container, Some("http://127.0.0.1:1/v1"));
        cfg.probe_backoff_ms = vec![100, 1000];
        let mut rng = Jitter::seeded(7);
        for _ in 0..200 {
            let d0 = backoff(&cfg, 0, &mut rng);
            assert!(d0 >= ms(90) && d0 <= ms(110), "{d0:?}");
            let d5 = backoff(&cfg, 5, &mut rng);
            assert!(d5 >= ms(900) && d5 <= ms(1100), "{d5:?}");
        }
    }
}
