//! A panic on one connection's path stays on that connection (DESIGN-NOTES "A panic closes only
//! its own connection"). Each connection task runs inside [`Contained`], which catches an unwind
//! out of the task's poll, counts it (`slotgate_panics_total`), logs it with the request id,
//! answers `500 server.internal` when no response byte of the request was sent yet (plain
//! connections; a TLS session's state died with the task, so a TLS client only sees the close),
//! then drops the task, which closes the client and upstream sockets and releases everything
//! the task held. The worker, its other connections and every other worker go on.

use super::context::Worker;
use super::request_id::RequestId;
use crate::http::{ErrorCode, ErrorReply};
use crate::logging::panic_message;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::os::fd::RawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

/// Where a connection is in its current request, as far as a panic's answer cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Between requests (or before the first).
    Idle,
    /// A request is being handled and no byte of its answer was written.
    Request,
    /// Bytes of the answer may have reached the client: a panic can only close.
    Responding,
}

/// What the containment wrapper knows of its connection (shared with the task by `Rc`).
#[derive(Debug)]
pub struct ConnProbe {
    fd: RawFd,
    tls: Cell<bool>,
    phase: Cell<Phase>,
    request_id: RefCell<Option<RequestId>>,
    test_body_panic: Cell<bool>,
}

impl ConnProbe {
    /// A probe for the connection on socket `fd`.
    pub fn new(fd: RawFd) -> Rc<ConnProbe> {
        Rc::new(ConnProbe {
            fd,
            tls: Cell::new(false),
            phase: Cell::new(Phase::Idle),
            request_id: RefCell::new(None),
            test_body_panic: Cell::new(false),
        })
    }

    /// The connection speaks TLS.
    pub fn set_tls(&self) {
        self.tls.set(true);
    }

    /// A request was read; nothing of its answer is written yet.
    #[inline]
    pub fn request(&self) {
        self.phase.set(Phase::Request);
        self.request_id.borrow_mut().take();
    }

    /// The request's id is known.
    #[inline]
    pub fn request_id(&self, id: &RequestId) {
        *self.request_id.borrow_mut() = Some(id.clone());
    }

    /// Answer bytes are about to be written.
    #[inline]
    pub fn responding(&self) {
        self.phase.set(Phase::Responding);
    }

    /// The request is done.
    #[inline]
    pub fn idle(&self) {
        self.phase.set(Phase::Idle);
    }

    /// Panics if [`test_panic_point`] armed a panic for after the response head.
    #[inline]
    pub fn body_panic_point(&self) {
        if cfg!(debug_assertions) && self.test_body_panic.replace(false) {
            panic!("injected test panic after the response head");
        }
    }

    /// The phase now.
    pub fn phase(&self) -> Phase {
        self.phase.get()
    }
}

/// A connection task that cannot take its worker down (see the module doc).
pub struct Contained<F> {
    task: Option<Pin<Box<F>>>,
    probe: Rc<ConnProbe>,
    w: Rc<Worker>,
}

impl<F: Future<Output = ()>> Contained<F> {
    /// Wraps the connection task `task`, which updates `probe` as it goes.
    pub fn new(w: Rc<Worker>, probe: Rc<ConnProbe>, task: F) -> Contained<F> {
        Contained {
            task: Some(Box::pin(task)),
            probe,
            w,
        }
    }
}

impl<F: Future<Output = ()>> Future for Contained<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // Every field is `Unpin` (the task is boxed), so is `Contained`.
        let this = self.get_mut();
        let Some(task) = this.task.as_mut() else {
            return Poll::Ready(());
        };
        match catch_unwind(AssertUnwindSafe(|| task.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(())) => {
                this.task = None;
                Poll::Ready(())
            }
            Err(payload) => {
                on_panic(&this.w, &this.probe, panic_message(payload.as_ref()));
                let task = this.task.take();
                // Dropping the task closes its sockets; a destructor that panics again (state
                // left half-updated by the first panic) must not escape either.
                if catch_unwind(AssertUnwindSafe(move || drop(task))).is_err() {
                    tracing::error!(
                        worker = this.w.id,
                        "a panicked task panicked again while dropped"
                    );
                }
                drop(payload);
                Poll::Ready(())
            }
        }
    }
}

fn on_panic(w: &Worker, probe: &ConnProbe, msg: &str) {
    w.shared.metrics.count_panic();
    let id = probe.request_id.borrow().clone();
    let id_str = id.as_ref().map_or("", RequestId::as_str);
    let phase = probe.phase();
    tracing::error!(
        worker = w.id,
        request_id = id_str,
        phase = ?phase,
        panic = msg,
        "a connection's task panicked (a bug); closed that connection only"
    );
    if phase == Phase::Request && !probe.tls.get() {
        let reply = ErrorReply::new(
            ErrorCode::Internal,
            "internal error; the request was not completed (see the server log)",
        );
        let extra = if id_str.is_empty() {
            String::new()
        } else {
            format!("x-request-id: {id_str}\r\n")
        };
        let _ = super::sys::send_now(probe.fd, &reply.to_response(&extra, true));
    }
    crate::logging::flush_thread();
}

/// Test panics (debug builds only, with `SLOTGATE_TEST_PANICS=1` in the environment at start;
/// a release binary has no such switch): a request whose `X-Slotgate-Test-Panic` header is
/// `head` panics before any answer byte; `body` arms a panic right after its response head
/// went out ([`ConnProbe::body_panic_point`]). The tests prove containment with them.
#[inline]
pub fn test_panic_point(enabled: bool, probe: &ConnProbe, header: Option<&[u8]>) {
    if !(cfg!(debug_assertions) && enabled) {
        return;
    }
    match header {
        Some(b"head") => panic!("injected test panic before the answer"),
        Some(b"body") => probe.test_body_panic.set(true),
        _ => {}
    }
}
