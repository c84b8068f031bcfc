//! The control side of the worker port (DESIGN.md §7): what a [`PortMsg`] from a worker does.
//! Runs on the control thread (`run`), so the lock it takes is never taken on a worker.

use super::flight::Ticket;
use super::plane::Control;
use super::upstream::upstream_cfg;
use super::wake;
use crate::config::UpstreamName;
use crate::port::PortMsg;
use std::time::{Duration, Instant};

impl Control {
    /// Does what `msg` asks; never waits for upstream IO (fetches and wake hooks run on their own
    /// threads, a fetch's reply fires when its results are published or its time is up).
    pub(crate) fn handle(&self, msg: PortMsg) {
        match msg {
            PortMsg::MarkDown { upstream } => self.mark_down(&upstream),
            PortMsg::Wake { upstream, model } => {
                if let Some(cfg) = upstream_cfg(&self.config(), &UpstreamName::from(upstream)) {
                    wake::call_hook(cfg, model.as_deref());
                }
            }
            PortMsg::Fetch {
                upstreams,
                timeout,
                reply,
            } => {
                let ticket = Ticket::replying(reply);
                self.live.fetch_for(&upstreams, timeout, &ticket);
            }
        }
    }

    /// An upstream refused a connect: mark its probe Failing at once, publish, and let its prober
    /// re-probe on the failing schedule.
    pub fn mark_down(&self, name: &str) {
        if self.live.mark_failing(name).is_some() {
            if let Some(p) = self.probers.lock().get(&UpstreamName::from(name)) {
                p.mark_down();
            }
        }
    }

    /// Fires `name`'s wake hook (a POST of `{"slot", "model", "reason": "request"}` to its
    /// `wake_url`) unless one fired in the last `debounce`; the POST runs on its own thread.
    /// Workers claim the window themselves and send a `PortMsg::Wake`.
    pub fn wake(&self, name: &str, model: Option<&str>, debounce: Duration) {
        let snap = self.snapshot();
        let Some(u) = snap.by_name(name) else { return };
        if u.cfg.wake_url.is_some() && u.counters().claim_wake(Instant::now(), debounce) {
            wake::call_hook(&u.cfg, model);
        }
    }

    /// Forgets a pending wake of `name` (it became ready), so the next outage wakes again.
    pub fn clear_wake(&self, name: &str) {
        if let Some(c) = self.counters(name) {
            c.forget_wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::routing::ProbeStatus;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::Arc;

    fn control(upstreams: &str) -> Arc<Control> {
        Control::with_config(Config::from_toml_str(upstreams, None).unwrap())
    }

    /// A one-shot HTTP server on 127.0.0.1 answering `body`; returns its URL and the request it
    /// saw (head and body) once the exchange is done.
    fn serve_once(body: &'static str) -> (String, std::thread::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1", l.local_addr().unwrap());
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            // Read until the head is complete and the declared body has arrived.
            loop {
                let n = s.read(&mut buf).unwrap_or(0);
                seen.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&seen).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if seen.len() >= end + 4 + len || n == 0 {
                        break;
                    }
                } else if n == 0 {
                    break;
                }
            }
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(reply.as_bytes());
            String::from_utf8_lossy(&seen).to_string()
        });
        (url, h)
    }

    #[test]
    fn mark_down_shows_in_the_next_snapshot() {
        let c = control("[[upstream]]\nname = \"chat\"\nkind = \"container\"\nurl = \"http://127.0.0.1:1/v1\"\n");
        let e = c.cell().epoch();
        c.handle(PortMsg::MarkDown {
            upstream: "CHAT".into(),
        });
        assert!(c.cell().epoch() > e);
        let s = c.snapshot();
        assert_eq!(s.by_name("chat").unwrap().live.probe, ProbeStatus::Failing);
        c.handle(PortMsg::MarkDown {
            upstream: "nope".into(),
        });
    }

    #[test]
    fn fetch_replies_after_the_fetch_is_published() {
        let (url, seen) = serve_once(r#"{"object":"list","data":[{"id":"m1"}]}"#);
        let c = control(&format!(
            "[[upstream]]\nname = \"or\"\nkind = \"remote\"\nurl = \"{url}\"\n"
        ));
        let (port, inbox) = crate::port::channel();
        let done = port.fetch(vec!["or".into()], Duration::from_secs(10));
        c.handle(inbox.try_recv().unwrap());
        crate::control::flight::ModelsFetch::from_receiver(done).wait();
        let s = c.snapshot();
        assert_eq!(s.by_name("or").unwrap().live.models.ids, ["m1"]);
        assert!(seen.join().unwrap().starts_with("GET /v1/models "));
    }

    #[test]
    fn a_wake_message_posts_the_hook_and_control_side_wakes_are_debounced() {
        let (url, seen) = serve_once("{}");
        let c = control(&format!(
            "[[upstream]]\nname = \"agent\"\nkind = \"slot\"\nurl = \"http://127.0.0.1:1/v1\"\nwake_url = \"{url}/wake\"\n"
        ));
        c.handle(PortMsg::Wake {
            upstream: "agent".into(),
            model: Some("m1".into()),
        });
        let req = seen.join().unwrap();
        assert!(req.starts_with("POST /v1/wake "), "{req}");
        assert!(
            req.contains(r#""model":"m1""#) && req.contains(r#""reason":"request""#),
            "{req}"
        );
        // The window is the counters' claim: the first control-side wake claims it, a second
        // within it does nothing; forgetting re-arms it.
        let counters = c.counters("agent").unwrap();
        let day = Duration::from_secs(86_400);
        assert!(counters.claim_wake(Instant::now(), day));
        c.wake("agent", None, day); // debounced: no thread, no POST (the listener is gone)
        assert!(!counters.claim_wake(Instant::now(), day));
        c.clear_wake("agent");
        assert!(counters.claim_wake(Instant::now(), day));
    }
}
