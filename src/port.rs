//! The worker port (DESIGN.md §7 "Workers never take control locks"): the one way a worker tells
//! the control plane something. Workers read everything they need from the published snapshot;
//! what they report (a refused connect, an offline slot to wake, a cold model cache to fill) goes
//! as a [`PortMsg`] over a lock-free channel that one control thread drains.
//!
//! A leaf of the crate: it imports nothing else from slotgate, so `proxy` holds a [`Port`] and
//! no path from a worker reaches the control plane's state.

use futures_channel::oneshot;
use std::sync::mpsc;
use std::time::Duration;

/// What a worker tells the control plane.
#[derive(Debug)]
pub enum PortMsg {
    /// A connect to `upstream` was refused: mark it failing at once and re-probe it.
    MarkDown {
        /// The upstream's name.
        upstream: String,
    },
    /// A request found `upstream` offline: call its wake hook (the worker already claimed the
    /// debounce window, see `UpstreamCounters::claim_wake`).
    Wake {
        /// The upstream's name.
        upstream: String,
        /// The model the request asked for, if any.
        model: Option<String>,
    },
    /// Fill the cold model caches of `upstreams` (single-flight per upstream); `reply` fires when
    /// every fetch finished and was published, or `timeout` passed.
    Fetch {
        /// Upstream names.
        upstreams: Vec<String>,
        /// How long the asker waits at most.
        timeout: Duration,
        /// Completed (or dropped) when the asker may look at the snapshot again.
        reply: oneshot::Sender<()>,
    },
}

/// The workers' side of the port: cloneable, and sending never blocks or takes a lock.
#[derive(Debug, Clone)]
pub struct Port {
    tx: mpsc::Sender<PortMsg>,
}

/// The control side of the port: one control thread receives from it.
#[derive(Debug)]
pub struct Inbox {
    rx: mpsc::Receiver<PortMsg>,
}

/// A connected port and inbox.
pub fn channel() -> (Port, Inbox) {
    let (tx, rx) = mpsc::channel();
    (Port { tx }, Inbox { rx })
}

impl Port {
    /// Sends `msg`; when the control side is gone the message is dropped (a `Fetch`'s reply
    /// with it, which ends the asker's wait).
    pub fn send(&self, msg: PortMsg) {
        let _ = self.tx.send(msg);
    }

    /// Reports a refused connect to `upstream`.
    pub fn mark_down(&self, upstream: &str) {
        self.send(PortMsg::MarkDown {
            upstream: upstream.to_string(),
        });
    }

    /// Asks for `upstream`'s wake hook.
    pub fn wake(&self, upstream: &str, model: Option<&str>) {
        self.send(PortMsg::Wake {
            upstream: upstream.to_string(),
            model: model.map(str::to_string),
        });
    }

    /// Asks for the model lists of `upstreams`; the receiver resolves (`Ok` or `Canceled`) when
    /// the fetches are done, the timeout passed, or the control side went away.
    pub fn fetch(&self, upstreams: Vec<String>, timeout: Duration) -> oneshot::Receiver<()> {
        let (reply, rx) = oneshot::channel();
        self.send(PortMsg::Fetch {
            upstreams,
            timeout,
            reply,
        });
        rx
    }
}

impl Inbox {
    /// The next message, waiting at most `wait`; `Err(Disconnected)` once every `Port` is gone.
    pub fn recv_timeout(&self, wait: Duration) -> Result<PortMsg, mpsc::RecvTimeoutError> {
        self.rx.recv_timeout(wait)
    }

    /// The next message if one is queued.
    pub fn try_recv(&self) -> Option<PortMsg> {
        self.rx.try_recv().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_arrive_in_order_and_a_lost_control_side_ends_a_fetch_wait() {
        let (port, inbox) = channel();
        port.mark_down("chat");
        port.wake("agent", Some("m1"));
        assert!(
            matches!(inbox.try_recv(), Some(PortMsg::MarkDown { upstream }) if upstream == "chat")
        );
        assert!(matches!(
            inbox.try_recv(),
            Some(PortMsg::Wake { upstream, model: Some(m) }) if upstream == "agent" && m == "m1"
        ));
        drop(inbox);
        let mut rx = port.fetch(vec!["or".into()], Duration::from_secs(1));
        assert!(
            rx.try_recv().is_err(),
            "the reply was dropped with the message"
        );
    }
}
