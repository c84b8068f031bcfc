//! One thread per upstream: health probes (DESIGN.md §1 "readiness comes from slotgate's own
//! probes"), periodic `/v1/models` refreshes and DNS re-resolution.
//!
//! Probing is blocking std IO bounded by `probe_timeout_ms`; because every upstream has its own
//! thread, a hung health endpoint only delays its own next probe. While failing, the period walks
//! `probe_backoff_ms` (±10% jitter, the last step repeating); a probe that turns healthy triggers
//! a models refresh.

use super::client;
use super::state::Live;
use super::upstream::{fetchable, Ident};
use crate::config::{UpstreamConfig, UpstreamKind, UpstreamName};
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
            .name(format!("slotgate-probe-{}", UpstreamName::from(&cfg.name)))
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
        let mut sched = Schedule::new(&self.cfg, self as *const _ as u64);
        loop {
            if !self.wait_due(&mut sched) {
                return;
            }
            let Some(ctl) = control.upgrade() else { return };
            match sched.probe_if_due(self, &ctl) {
                None => return, // removed by a reload
                Some(false) => continue,
                Some(true) => {}
            }
            sched.refresh_if_due(&self.cfg, &ctl);
            sched.resolve_if_due(&self.cfg, &ctl);
        }
    }

    /// Sleeps until something in `sched` is due, applying signals as they come; false on stop.
    fn wait_due(&self, sched: &mut Schedule) -> bool {
        let cfg = &self.cfg;
        let mut s = self.signals.lock();
        loop {
            if s.stop {
                return false;
            }
            if std::mem::take(&mut s.down) && cfg.probed() {
                sched.fails = sched.fails.max(1);
                sched.next_probe = Some(Instant::now() + backoff(cfg, 0, &mut sched.rng));
                sched.next_refresh = None;
            }
            if std::mem::take(&mut s.wake) && cfg.probed() {
                sched.next_probe = Some(Instant::now());
            }
            match sched.due() {
                Some(d) if d <= Instant::now() => return true,
                Some(d) => {
                    self.cv.wait_until(&mut s, d);
                }
                None => self.cv.wait(&mut s),
            }
        }
    }
}

/// When a prober next probes, refreshes models and re-resolves, and how many probes failed in a
/// row.
struct Schedule {
    next_probe: Option<Instant>,
    next_refresh: Option<Instant>,
    next_dns: Option<Instant>,
    fails: usize,
    hostname: bool,
    rng: Jitter,
}

impl Schedule {
    fn new(cfg: &UpstreamConfig, salt: u64) -> Schedule {
        let now = Instant::now();
        let hostname = cfg
            .parsed_url
            .as_ref()
            .is_some_and(|u| u.literal_addr().is_none());
        Schedule {
            next_probe: cfg.probed().then_some(now),
            // Probed upstreams refresh models once a probe passes; others from the start.
            next_refresh: (fetchable(cfg) && !cfg.probed()).then_some(now),
            next_dns: hostname.then_some(now),
            fails: 0,
            hostname,
            rng: Jitter::seeded(salt),
        }
    }

    /// The earliest due time.
    fn due(&self) -> Option<Instant> {
        [self.next_probe, self.next_refresh, self.next_dns]
            .into_iter()
            .flatten()
            .min()
    }

    /// Probes when due. `None`: the upstream is gone; `Some(false)`: skip the rest of this
    /// round (probing stopped); `Some(true)`: go on.
    fn probe_if_due(&mut self, p: &Prober, ctl: &Live) -> Option<bool> {
        let cfg = &p.cfg;
        let now = Instant::now();
        if self.next_probe.is_none_or(|t| t > now) {
            return Some(true);
        }
        if busy_and_passing(ctl, cfg) {
            // Requests in flight prove it alive (a failed connect marks it down at once), and a
            // server that runs one request at a time (llama-cpp-python) would answer the probe
            // only after them, past its timeout: probe again once it is idle.
            self.next_probe = Some(now + ms(cfg.probe_interval_ms));
            return Some(true);
        }
        let Some(passing) = probe(ctl, cfg) else {
            // Cannot probe this scheme: stop probing and leave the status Unknown.
            self.next_probe = None;
            return Some(false);
        };
        self.next_dns = self.hostname.then(|| Instant::now() + DNS_REFRESH);
        let fetched_now = passing && fetch_if_cold_turning_up(ctl, cfg);
        let prev = ctl.record_probe(&cfg.name, &p.ident, passing)?;
        if passing {
            self.passed(cfg, prev, fetched_now);
        } else {
            self.failed(cfg, prev);
        }
        Some(true)
    }

    fn passed(&mut self, cfg: &UpstreamConfig, prev: ProbeStatus, fetched_now: bool) {
        self.fails = 0;
        self.next_probe = Some(Instant::now() + ms(cfg.probe_interval_ms));
        if prev != ProbeStatus::Passing {
            tracing::info!(upstream = %cfg.name, "probe passing");
        }
        // Turned healthy (or this prober just started): refresh the models now, unless that
        // fetch just ran.
        if fetched_now {
            self.next_refresh = Some(Instant::now() + ms(cfg.models_refresh_ms));
        } else if fetchable(cfg) && (prev != ProbeStatus::Passing || self.next_refresh.is_none()) {
            self.next_refresh = Some(Instant::now());
        }
    }

    fn failed(&mut self, cfg: &UpstreamConfig, prev: ProbeStatus) {
        if prev != ProbeStatus::Failing {
            tracing::warn!(upstream = %cfg.name, "probe failing");
        }
        self.next_probe = Some(Instant::now() + backoff(cfg, self.fails, &mut self.rng));
        self.fails += 1;
        self.next_refresh = None;
    }

    /// Starts a model-list refresh when due (later if the upstream is busy).
    fn refresh_if_due(&mut self, cfg: &UpstreamConfig, ctl: &Live) {
        if self.next_refresh.is_none_or(|t| t > Instant::now()) {
            return;
        }
        if busy_and_passing(ctl, cfg) {
            // Same reason as for probes: a model-list refresh waits until the upstream is idle.
            self.next_refresh = Some(Instant::now() + ms(cfg.probe_interval_ms));
            return;
        }
        ctl.start_fetch(&UpstreamName::from(&cfg.name), None);
        self.next_refresh = fetchable(cfg).then(|| Instant::now() + ms(cfg.models_refresh_ms));
        self.next_dns = self.hostname.then(|| Instant::now() + DNS_REFRESH);
    }

    /// Re-resolves the host name when due.
    fn resolve_if_due(&mut self, cfg: &UpstreamConfig, ctl: &Live) {
        if self.next_dns.is_some_and(|t| t <= Instant::now()) {
            ctl.resolve(cfg);
            self.next_dns = Some(Instant::now() + DNS_REFRESH);
        }
    }
}

/// A probe passed on an upstream coming up with a cold cache: fetch the model list before the
/// probe result is published, so no request sees it ready yet unaware of its models. Returns
/// whether the cache is warm now (a failed fetch leaves it cold: the refresh retries it).
fn fetch_if_cold_turning_up(ctl: &Live, cfg: &UpstreamConfig) -> bool {
    if !fetchable(cfg) {
        return false;
    }
    let cold_turning_up = ctl
        .snapshot()
        .by_name(&cfg.name)
        .is_some_and(|u| u.live.probe != ProbeStatus::Passing && !u.live.models.is_warm());
    if !cold_turning_up {
        return false;
    }
    ctl.fetch_models(std::slice::from_ref(&cfg.name), ms(cfg.probe_timeout_ms))
        .wait();
    ctl.snapshot()
        .by_name(&cfg.name)
        .is_some_and(|u| u.live.models.is_warm())
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
