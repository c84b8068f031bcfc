//! A running front door: control plane, workers and admin listener assembled in start-up order,
//! plus the graceful drain (DESIGN.md §6, §7).

use crate::config::Config;
use crate::control::{self, Control};
use crate::proxy::{spawn_workers, Driver, Shared};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A started slotgate.
pub struct Server {
    /// The front door's bound address.
    pub addr: SocketAddr,
    /// The admin listener's bound address (`None` when disabled).
    pub admin_addr: Option<SocketAddr>,
    /// The IO driver the workers run on.
    pub driver: Driver,
    /// The control plane.
    pub control: Arc<Control>,
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl Server {
    /// Starts control (probes, refreshes), the workers and the admin listener.
    pub fn start(config: Config) -> io::Result<Server> {
        let listen = config.listen.clone();
        let tuning = config.tuning.clone();
        let front: SocketAddr = listen.addr.parse().map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("listen.addr: {e}"))
        })?;
        if let Some(var) = listen.admin_token_env.as_deref() {
            if std::env::var_os(var).is_none_or(|v| v.is_empty()) {
                tracing::warn!(
                    env = var,
                    "admin token variable is not set: the admin API is locked"
                );
            }
        }
        for u in &config.upstreams {
            if let Some(a) = &u.auth {
                if let Some(var) = a.env.as_deref() {
                    if std::env::var_os(var).is_none() {
                        tracing::warn!(upstream = %u.name, env = var, "upstream credential variable is not set");
                    }
                }
            }
            if u.insecure_skip_verify {
                tracing::warn!(upstream = %u.name, "insecure_skip_verify is set: TLS certificates are NOT verified");
            }
        }
        let control = Control::with_config(config);
        let tls_cert = listen.tls_cert.as_deref();
        control
            .front_door()
            .install(tls_cert, listen.tls_key.as_deref())
            .map_err(|(k, m)| io::Error::new(io::ErrorKind::InvalidInput, format!("{k}: {m}")))?;
        if let Some(cert) = tls_cert {
            tracing::info!(cert = %cert.display(), "front door speaks TLS (http/1.1)");
        }
        control.spawn()?;
        control.handle_sighup()?;
        let shared = Arc::new(Shared::new(
            tuning,
            control.cell().clone(),
            control.port(),
            control.front_door().clone(),
        ));
        let workers = spawn_workers(shared.clone(), front)?;
        control.set_ready(workers.driver.as_str(), workers.handles.len());
        shared.metrics.set_driver(workers.driver.as_str());
        {
            // Weak: control owns the hook, so a strong reference would keep control alive.
            let metrics = shared.metrics.clone();
            let weak = Arc::downgrade(&control);
            control.set_metrics_hook(Box::new(move || {
                weak.upgrade()
                    .map(|c| metrics.render(&c))
                    .unwrap_or_default()
            }));
        }
        let admin_addr = if listen.admin.is_empty() {
            None
        } else {
            let a: SocketAddr = listen.admin.parse().map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("listen.admin: {e}"))
            })?;
            Some(control::spawn_admin(control.clone(), a)?.0)
        };
        tracing::info!(addr = %workers.addr, admin = ?admin_addr, driver = workers.driver.as_str(), "slotgate listening");
        Ok(Server {
            addr: workers.addr,
            admin_addr,
            driver: workers.driver,
            control,
            shared,
            workers: workers.handles,
        })
    }

    /// Stops accepting (every worker closes its listener, so new connections are refused or go
    /// to a new process on the same port), closes idle keep-alive connections, lets in-flight
    /// exchanges and streams finish until `timeout`, then returns whether every worker finished
    /// in time.
    pub fn drain(self, timeout: Duration) -> bool {
        control::notify::stopping();
        self.shared.metrics.set_draining();
        self.shared.draining.store(true, Ordering::Release);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.workers.iter().all(|h| h.is_finished()) {
                self.control.shutdown();
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.control.shutdown();
        false
    }

    /// Runs until `SIGTERM`/`SIGINT`, then drains within `tuning.drain_timeout_ms`.
    pub fn run_until_signalled(self) -> io::Result<()> {
        control::signal::install_term()?;
        // Workers, listeners and signal handlers are up: tell systemd (no-op without it).
        control::notify::ready();
        while !control::signal::term_requested() {
            std::thread::sleep(Duration::from_millis(50));
        }
        let t = Duration::from_millis(self.shared.tuning.drain_timeout_ms);
        tracing::info!(timeout_ms = t.as_millis() as u64, "draining");
        if !self.drain(t) {
            tracing::warn!("drain deadline passed with exchanges still in flight");
        }
        Ok(())
    }
}
