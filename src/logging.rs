//! Log output (DESIGN.md §6, issue 8): lines are formatted on the emitting thread; a worker keeps
//! its lines in a thread-local buffer written out when it fills or on the worker's one-second
//! tick, so the decision log costs a memcpy per request instead of a cross-thread hand-off and a
//! wake-up. Other threads (control, admin, start-up) write each line at once.

use std::cell::RefCell;
use std::io::{self, Write};

/// A worker's buffer is written out once it holds this much.
const BATCH_BYTES: usize = 32 * 1024;

struct Batch(Vec<u8>);

impl Drop for Batch {
    fn drop(&mut self) {
        write_out(&self.0);
    }
}

thread_local! {
    static BATCH: RefCell<Option<Batch>> = const { RefCell::new(None) };
}

fn write_out(bytes: &[u8]) {
    if !bytes.is_empty() {
        // stderr is unbuffered; a failed write (closed pipe) is not worth a worker's attention.
        let _ = io::stderr().lock().write_all(bytes);
    }
}

/// Makes this thread batch its log lines (a worker calls it once at start).
pub fn batch_this_thread() {
    BATCH.with(|b| *b.borrow_mut() = Some(Batch(Vec::with_capacity(BATCH_BYTES))));
}

/// Writes out this thread's batched lines (the worker's tick, and before it exits).
pub fn flush_thread() {
    BATCH.with(|b| {
        if let Some(Batch(v)) = b.borrow_mut().as_mut() {
            write_out(v);
            v.clear();
        }
    });
}

/// The subscriber's writer: `tracing_subscriber::fmt().with_writer(logging::Output)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Output;

/// One event's writer (the formatter writes a whole line at once).
#[derive(Debug)]
pub struct LineOut;

impl Write for LineOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        BATCH.with(|b| match b.borrow_mut().as_mut() {
            Some(Batch(v)) => {
                v.extend_from_slice(buf);
                if v.len() >= BATCH_BYTES {
                    write_out(v);
                    v.clear();
                }
            }
            None => write_out(buf),
        });
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Output {
    type Writer = LineOut;

    fn make_writer(&'a self) -> LineOut {
        LineOut
    }
}
