//! Workers: one pinned monoio runtime per core, each with its own `SO_REUSEPORT` listener,
//! connections, upstream pool and buffers (DESIGN.md §7 "Workers", "Driver").

pub use super::context::Worker;
use super::drain::DrainSignal;
use super::pool::Pool;
use super::Shared;
use crate::config::{DriverChoice, Tuning, UringFlag};
use crate::routing::LocalSnapshot;
use monoio::net::{ListenerOpts, TcpListener};
use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

/// The IO driver a worker runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    IoUring,
    Epoll,
}

impl Driver {
    /// `io_uring` or `epoll`.
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::IoUring => "io_uring",
            Driver::Epoll => "epoll",
        }
    }

    /// The driver `choice` resolves to on this machine (`MONOIO_FORCE_LEGACY_DRIVER=1` forces epoll).
    pub fn resolve(choice: DriverChoice) -> Driver {
        match choice {
            DriverChoice::Epoll => Driver::Epoll,
            DriverChoice::IoUring | DriverChoice::Auto => {
                if uring_available() {
                    Driver::IoUring
                } else {
                    Driver::Epoll
                }
            }
        }
    }
}

/// Whether io_uring works here (`MONOIO_FORCE_LEGACY_DRIVER=1` says no). The probe ring is made
/// on a throwaway thread: its teardown queues io_uring task work, signalled to the creating
/// thread, which would otherwise interrupt (EINTR) that thread's next blocking socket call with a
/// timeout. monoio caches the answer, so workers' later calls are free.
pub fn uring_available() -> bool {
    std::thread::spawn(monoio::utils::detect_uring)
        .join()
        .unwrap_or(false)
}

/// Running workers.
pub struct Workers {
    /// The front door's bound address.
    pub addr: SocketAddr,
    /// The driver in use.
    pub driver: Driver,
    /// One per worker thread.
    pub handles: Vec<JoinHandle<()>>,
}

type Rt = monoio::FusionRuntime<
    monoio::time::TimeDriver<monoio::IoUringDriver>,
    monoio::time::TimeDriver<monoio::LegacyDriver>,
>;

/// Builds a worker's runtime. io_uring rings get `tuning.uring_flags`; the default set
/// (`coop_taskrun` alone) falls back to a plain ring on kernels before 5.19 that refuse it, any
/// other set is what the operator asked for, so a refusal is an error that names it.
fn build_runtime(driver: Driver, tuning: &Tuning) -> io::Result<Rt> {
    let entries = tuning.ring_entries;
    Ok(match driver {
        Driver::IoUring => {
            let flags = &tuning.uring_flags;
            let mut urb = io_uring::IoUring::builder();
            for f in flags {
                match f {
                    // Completions are handed over at this thread's next ring entry instead of
                    // by an inter-processor interrupt (the worker enters the ring constantly).
                    UringFlag::CoopTaskrun => urb.setup_coop_taskrun(),
                    // Each ring is built and entered by its worker thread only.
                    UringFlag::SingleIssuer => urb.setup_single_issuer(),
                    // monoio reaps completions after every wait (GETEVENTS), where deferred
                    // task work runs; its submit-only calls leave them for that wait.
                    UringFlag::DeferTaskrun => urb.setup_defer_taskrun(),
                    // The kernel thread inherits the worker's CPU affinity.
                    UringFlag::Sqpoll => urb.setup_sqpoll(tuning.uring_sqpoll_idle_ms),
                };
            }
            let built = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .uring_builder(urb)
                .enable_timer()
                .with_entries(entries)
                .build();
            match built {
                Ok(rt) => rt.into(),
                Err(_) if *flags == Tuning::default().uring_flags => {
                    monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                        .enable_timer()
                        .with_entries(entries)
                        .build()?
                        .into()
                }
                Err(e) => {
                    let names: Vec<&str> = flags.iter().map(|f| f.as_str()).collect();
                    return Err(io::Error::new(
                        e.kind(),
                        format!("io_uring refused tuning.uring_flags {names:?}: {e}"),
                    ));
                }
            }
        }
        Driver::Epoll => monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .with_entries(entries)
            .build()?
            .into(),
    })
}

/// Starts `tuning.cores` workers listening on `addr`. Returns once every worker has bound its
/// listener (so the port is known when `addr` had port 0).
pub fn spawn_workers(shared: Arc<Shared>, addr: SocketAddr) -> io::Result<Workers> {
    let tuning = shared.tuning.clone();
    if tuning.driver == DriverChoice::IoUring && !uring_available() {
        return Err(io::Error::other(
            "tuning.driver = \"io_uring\" but io_uring is unavailable here",
        ));
    }
    let driver = Driver::resolve(tuning.driver);
    let cpus = super::sys::allowed_cpus();
    let n = if tuning.cores == 0 {
        cpus.len().max(1)
    } else {
        tuning.cores
    };
    tracing::info!(driver = driver.as_str(), workers = n, "starting workers");
    let mut handles = Vec::with_capacity(n);
    // Every worker joins one concrete port (see `concrete_port` for why not port 0).
    let mut bound = crate::listener::concrete_port(addr)?;
    for id in 0..n {
        let (tx, rx) = mpsc::channel::<io::Result<SocketAddr>>();
        let shared = shared.clone();
        let cpu = cpus.get(id.checked_rem(cpus.len()).unwrap_or(0)).copied();
        let want = bound;
        let tuning = tuning.clone();
        let h = std::thread::Builder::new()
            .name(format!("slotgate-w{id}"))
            .spawn(move || {
                if let Some(c) = cpu {
                    let _ = monoio::utils::bind_to_cpu_set([c]);
                }
                let mut rt = match build_runtime(driver, &tuning) {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(async move {
                    let opts = ListenerOpts::new()
                        .reuse_port(true)
                        .backlog(tuning.backlog as i32);
                    let listener = match TcpListener::bind_with_config(want, &opts) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = tx.send(listener.local_addr());
                    let cell = shared.cell.clone();
                    let metrics = shared.metrics.register_worker();
                    let ids = super::request_id::IdSource::new(shared.id_seed, id);
                    let w = Rc::new(Worker {
                        id,
                        shared,
                        snap: LocalSnapshot::new(cell),
                        pool: Pool::default(),
                        uring: driver == Driver::IoUring,
                        conns: Cell::new(0),
                        ids,
                        metrics,
                        drain: DrainSignal::default(),
                    });
                    accept_loop(w, listener).await;
                });
            })?;
        let got = rx
            .recv()
            .map_err(|_| io::Error::other("worker died while starting"))??;
        if id == 0 {
            bound = got;
        }
        handles.push(h);
    }
    Ok(Workers {
        addr: bound,
        driver,
        handles,
    })
}

async fn accept_loop(w: Rc<Worker>, listener: TcpListener) {
    crate::logging::batch_this_thread();
    let sweep_w = w.clone();
    monoio::spawn(async move {
        // Close idle pooled connections the upstream dropped or that aged out.
        let mut was_busy = false;
        loop {
            monoio::time::sleep(Duration::from_secs(1)).await;
            crate::logging::flush_thread();
            // After a burst, once this worker has no connection left, give the freed heap back.
            if sweep_w.conns.get() == 0 {
                if was_busy {
                    super::sys::trim_heap();
                }
                was_busy = false;
            } else {
                was_busy = true;
            }
            sweep_w.pool.sweep(Duration::from_secs(60));
            sweep_w.metrics.set_pool_idle(sweep_w.pool.idle_counts());
            if sweep_w.shared.draining.load(Ordering::Relaxed) && sweep_w.conns.get() == 0 {
                break;
            }
        }
    });
    let drain = {
        let w = w.clone();
        async move {
            while !w.shared.draining.load(Ordering::Relaxed) {
                monoio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let mut drain = std::pin::pin!(drain);
    let mut backoff = Duration::from_millis(5);
    loop {
        monoio::select! {
            _ = &mut drain => break,
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    backoff = Duration::from_millis(5);
                    let w = w.clone();
                    let probe = super::contain::ConnProbe::new(std::os::fd::AsRawFd::as_raw_fd(&stream));
                    let task = super::conn::serve(w.clone(), stream, peer, probe.clone());
                    monoio::spawn(super::contain::Contained::new(w, probe, task));
                }
                Err(e) => {
                    // EMFILE/ENFILE and friends: back off instead of spinning, then recover.
                    tracing::warn!(error = %e, "accept failed; backing off");
                    monoio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
            }
        }
    }
    // Refuse new connections from now on, and close idle keep-alive connections at once.
    drop(listener);
    w.drain.fire();
    // Let in-flight connections finish (the drain deadline is enforced by the process).
    while w.conns.get() > 0 {
        monoio::time::sleep(Duration::from_millis(20)).await;
    }
    crate::logging::flush_thread();
}
