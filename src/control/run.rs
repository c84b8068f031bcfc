//! The control plane's threads (DESIGN.md §7 "Control thread"): starting probers, the one
//! control thread that drains the worker port and serves `SIGHUP` reloads, and shutdown.

use super::plane::Control;
use super::prober::Prober;
use super::signal;
use crate::config::UpstreamName;
use crate::port::Inbox;
use std::sync::atomic::Ordering;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the control thread looks for `SIGHUP` and shutdown when no message arrives.
const TICK: Duration = Duration::from_millis(200);

impl Control {
    /// Starts probers and periodic refreshes for every upstream, and the control thread (which
    /// serves the worker port, and `SIGHUP` once [`Control::handle_sighup`] was called). Call
    /// once.
    pub fn spawn(&self) -> std::io::Result<JoinHandle<()>> {
        if !self.started.swap(true, Ordering::AcqRel) {
            let cfg = self.config();
            let mut probers = self.probers.lock();
            for u in &cfg.upstreams {
                if let Some(p) = Prober::start(Arc::downgrade(&self.live), u)? {
                    probers.insert(UpstreamName::from(&u.name), p);
                }
            }
        }
        let me = self.me.clone();
        let inbox = self.inbox.lock().take();
        std::thread::Builder::new()
            .name("slotgate-control".into())
            .spawn(move || serve(me, inbox))
    }

    /// Installs the `SIGHUP` handler; the control thread then reloads on every `SIGHUP`.
    pub fn handle_sighup(&self) -> std::io::Result<()> {
        signal::install_sighup()?;
        self.sighup.store(true, Ordering::Release);
        Ok(())
    }

    /// Stops probers and the control thread (in-flight fetches finish on their own).
    pub fn shutdown(&self) {
        *self.stop.lock() = true;
        self.stop_cv.notify_all();
        for (_, p) in self.probers.lock().drain() {
            p.stop();
        }
    }

    fn stopped(&self) -> bool {
        *self.stop.lock()
    }

    /// Reloads if a `SIGHUP` arrived (and the handler is installed).
    fn serve_sighup(&self) {
        if self.sighup.load(Ordering::Acquire) && signal::take_sighup() {
            match self.reload() {
                Ok(epoch) => tracing::info!(epoch, "reloaded on SIGHUP"),
                Err(e) => {
                    tracing::error!(problems = %e, "SIGHUP reload refused; keeping the running config")
                }
            }
        }
    }

    /// Waits up to [`TICK`] for shutdown (the thread has no port to drain).
    fn idle(&self) {
        let mut stop = self.stop.lock();
        if !*stop {
            self.stop_cv.wait_for(&mut stop, TICK);
        }
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The control thread: worker port messages as they come, `SIGHUP` every tick, until shutdown
/// or until the control plane is dropped.
fn serve(me: Weak<Control>, inbox: Option<Inbox>) {
    loop {
        let msg = match &inbox {
            Some(i) => match i.recv_timeout(TICK) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                // Every port is gone, the control plane's own included: it was dropped.
                Err(RecvTimeoutError::Disconnected) => return,
            },
            None => None,
        };
        let Some(c) = me.upgrade() else { return };
        if c.stopped() {
            return;
        }
        match msg {
            Some(m) => c.handle(m),
            None if inbox.is_none() => c.idle(),
            None => {}
        }
        c.serve_sighup();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::routing::ProbeStatus;
    use std::time::Instant;

    #[test]
    fn the_control_thread_drains_the_port_until_shutdown() {
        let cfg = Config::from_toml_str(
            "[[upstream]]\nname = \"chat\"\nkind = \"container\"\nurl = \"http://127.0.0.1:1/v1\"\n",
            None,
        )
        .unwrap();
        // No probers (no `spawn`): only the port can turn the probe Failing.
        let c = Control::with_config(cfg);
        let (port, inbox) = crate::port::channel();
        let me = Arc::downgrade(&c);
        let t = std::thread::spawn(move || serve(me, Some(inbox)));
        port.mark_down("chat");
        let deadline = Instant::now() + Duration::from_secs(5);
        let probe = || c.snapshot().by_name("chat").map(|u| u.live.probe);
        while probe() != Some(ProbeStatus::Failing) && Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert_eq!(probe(), Some(ProbeStatus::Failing));
        c.shutdown();
        t.join().unwrap();
    }
}
