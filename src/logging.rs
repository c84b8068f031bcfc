//! Log output (DESIGN.md §6): lines are formatted on the emitting thread; a worker keeps
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
        // The thread is ending: wait for room rather than drop its last lines.
        hand_over(std::mem::take(&mut self.0), true);
    }
}

/// Batches waiting for the writer thread; past this a worker drops a batch (and counts its
/// lines) instead of waiting on a slow log sink.
const QUEUED_BATCHES: usize = 16;

struct Writer {
    tx: std::sync::mpsc::SyncSender<Vec<u8>>,
    /// Signalled by the writer thread when it stopped; `None` once drained.
    done: parking_lot::Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

/// How long [`drain`] waits for a stuck sink before the process exits anyway.
const DRAIN_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

static WRITER: std::sync::OnceLock<Writer> = std::sync::OnceLock::new();
static DROPPED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Starts the thread that writes the workers' batches to stderr, so a slow sink (a full pipe,
/// a stalled journal) never blocks a worker: when [`QUEUED_BATCHES`] are waiting, a worker
/// drops its batch and counts the lines ([`dropped_lines`]). Call once at start (the binary
/// does); [`drain`] before exit. Without it, workers write their batches themselves.
pub fn start_writer() {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(QUEUED_BATCHES);
    let (stopped_tx, stopped_rx) = std::sync::mpsc::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || {
            // An empty batch is `drain`'s stop sign.
            while let Ok(b) = rx.recv() {
                if b.is_empty() {
                    break;
                }
                write_out(&b);
            }
            let _ = stopped_tx.send(());
        });
    if spawned.is_ok() {
        let _ = WRITER.set(Writer {
            tx,
            done: parking_lot::Mutex::new(Some(stopped_rx)),
        });
    }
}

/// Writes out every queued batch and stops the writer thread (after the workers ended); gives
/// up after [`DRAIN_WAIT`] when the sink is stuck, so a stalled pipe cannot hold the exit.
pub fn drain() {
    let Some(w) = WRITER.get() else { return };
    let Some(stopped) = w.done.lock().take() else {
        return;
    };
    let deadline = std::time::Instant::now() + DRAIN_WAIT;
    loop {
        match w.tx.try_send(Vec::new()) {
            Ok(()) => break,
            Err(std::sync::mpsc::TrySendError::Full(_)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(_) => return,
        }
    }
    let _ = stopped.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()));
}

/// Decision-log lines dropped because the log sink was slower than the workers.
pub fn dropped_lines() -> u64 {
    DROPPED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Gives a worker's full batch to the writer thread (or writes it, without one). `wait`: block
/// for room instead of dropping.
fn hand_over(batch: Vec<u8>, wait: bool) {
    if batch.is_empty() {
        return;
    }
    let Some(w) = WRITER.get().filter(|w| w.done.lock().is_some()) else {
        write_out(&batch);
        return;
    };
    let res = if wait {
        // A thread's last batch: wait for room, but not on a stuck sink.
        let mut b = batch;
        let deadline = std::time::Instant::now() + DRAIN_WAIT;
        loop {
            match w.tx.try_send(b) {
                Ok(()) => break Ok(()),
                Err(std::sync::mpsc::TrySendError::Full(back))
                    if std::time::Instant::now() < deadline =>
                {
                    b = back;
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(std::sync::mpsc::TrySendError::Full(back)) => {
                    count_dropped(&back);
                    break Ok(());
                }
                Err(std::sync::mpsc::TrySendError::Disconnected(back)) => break Err(back),
            }
        }
    } else {
        w.tx.try_send(batch).map_err(|e| match e {
            std::sync::mpsc::TrySendError::Full(b) => {
                count_dropped(&b);
                Vec::new()
            }
            std::sync::mpsc::TrySendError::Disconnected(b) => b,
        })
    };
    if let Err(b) = res {
        write_out(&b); // the writer is gone (drained): write it here
    }
}

/// Counts the lines of a batch that is dropped.
fn count_dropped(batch: &[u8]) {
    let lines = batch.iter().filter(|&&c| c == b'\n').count() as u64;
    DROPPED.fetch_add(lines, std::sync::atomic::Ordering::Relaxed);
}

/// Takes the batch's bytes for [`hand_over`], leaving a fresh buffer.
fn take_batch(v: &mut Vec<u8>) -> Vec<u8> {
    std::mem::replace(v, Vec::with_capacity(BATCH_BYTES))
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
            if !v.is_empty() {
                hand_over(take_batch(v), false);
            }
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
                    hand_over(take_batch(v), false);
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

/// How the process formats log lines, when slotgate's own formatter may write the decision log
/// (set once by the binary at start; library users and terminals keep `tracing`'s formatter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direct {
    /// `tracing`'s default text layout (`2026-12-06T12:19:14.333630Z  INFO target: msg k=v`).
    Text,
    /// `tracing`'s JSON layout (`{"timestamp":…,"level":"INFO","fields":{…},"target":…}`).
    Json,
}

static DIRECT: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Lets [`direct_format`] answer `d`: the decision log then skips `tracing`'s formatter (its
/// field visitor, `fmt::Write` plumbing and per-event timestamp formatting, ~4 µs a line) and is
/// written by [`LineBuilder`] in the very same layout.
pub fn set_direct(d: Option<Direct>) {
    let v = match d {
        None => 0,
        Some(Direct::Text) => 1,
        Some(Direct::Json) => 2,
    };
    DIRECT.store(v, std::sync::atomic::Ordering::Relaxed);
}

/// The layout the decision log may be written in directly, if any.
#[inline]
pub fn direct_format() -> Option<Direct> {
    match DIRECT.load(std::sync::atomic::Ordering::Relaxed) {
        1 => Some(Direct::Text),
        2 => Some(Direct::Json),
        _ => None,
    }
}

/// Appends one line built by `f` to this thread's batch (or writes it at once on a thread that
/// does not batch).
pub fn write_line(f: impl FnOnce(&mut Vec<u8>)) {
    BATCH.with(|b| match b.borrow_mut().as_mut() {
        Some(Batch(v)) => {
            f(v);
            if v.len() >= BATCH_BYTES {
                hand_over(take_batch(v), false);
            }
        }
        None => {
            let mut v = Vec::with_capacity(512);
            f(&mut v);
            write_out(&v);
        }
    });
}

thread_local! {
    /// This thread's last formatted second: (unix seconds, `YYYY-MM-DDTHH:MM:SS.`).
    static SECOND: std::cell::Cell<(u64, [u8; 20])> = const { std::cell::Cell::new((u64::MAX, [0; 20])) };
}

/// `now` as RFC 3339 with microseconds and `Z`, as `tracing-subscriber` writes it; the date and
/// time of day are formatted once per second per thread.
pub fn push_timestamp(out: &mut Vec<u8>, now: std::time::SystemTime) {
    let d = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs();
    let (cached, mut prefix) = SECOND.with(|c| c.get());
    if cached != secs {
        prefix = civil_prefix(secs);
        SECOND.with(|c| c.set((secs, prefix)));
    }
    out.extend_from_slice(&prefix);
    let micros = d.subsec_micros();
    let mut digits = [b'0'; 6];
    let mut m = micros;
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + (m % 10) as u8;
        m /= 10;
    }
    out.extend_from_slice(&digits);
    out.push(b'Z');
}

/// `YYYY-MM-DDTHH:MM:SS.` of a Unix time (proleptic Gregorian, days-from-civil inverted).
fn civil_prefix(secs: u64) -> [u8; 20] {
    let days = (secs / 86_400) as i64;
    let tod = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut s = [0u8; 20];
    let text = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.",
        year.clamp(0, 9999),
        month,
        day,
        tod / 3600,
        tod / 60 % 60,
        tod % 60
    );
    for (d, b) in s.iter_mut().zip(text.bytes()) {
        *d = b;
    }
    s
}

/// One `INFO` line in the [`Direct`] layout, field by field, with `tracing`'s escaping: text
/// quotes strings as Rust's `Debug` does, JSON as JSON.
pub struct LineBuilder<'a> {
    out: &'a mut Vec<u8>,
    json: bool,
    target: &'static str,
}

impl<'a> LineBuilder<'a> {
    /// Starts a line: timestamp, level, target, message.
    pub fn start(
        out: &'a mut Vec<u8>,
        layout: Direct,
        target: &'static str,
        message: &str,
    ) -> LineBuilder<'a> {
        let json = layout == Direct::Json;
        if json {
            out.extend_from_slice(b"{\"timestamp\":\"");
            push_timestamp(out, std::time::SystemTime::now());
            out.extend_from_slice(b"\",\"level\":\"INFO\",\"fields\":{\"message\":");
            json_str(out, message);
        } else {
            push_timestamp(out, std::time::SystemTime::now());
            out.extend_from_slice(b"  INFO ");
            out.extend_from_slice(target.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(message.as_bytes());
        }
        LineBuilder { out, json, target }
    }

    fn key(&mut self, k: &str) {
        if self.json {
            self.out.extend_from_slice(b",\"");
            self.out.extend_from_slice(k.as_bytes());
            self.out.extend_from_slice(b"\":");
        } else {
            self.out.push(b' ');
            self.out.extend_from_slice(k.as_bytes());
            self.out.push(b'=');
        }
    }

    /// A string field (`k="v"` in text).
    pub fn str(&mut self, k: &str, v: &str) -> &mut Self {
        self.key(k);
        if self.json {
            json_str(self.out, v);
        } else {
            debug_str(self.out, v);
        }
        self
    }

    /// A field recorded with `%` (`Display`): unquoted in text, a JSON string.
    pub fn display(&mut self, k: &str, v: &dyn std::fmt::Display) -> &mut Self {
        use std::io::Write as _;
        self.key(k);
        if self.json {
            let mut s = Vec::with_capacity(48);
            let _ = write!(s, "{v}");
            json_str(self.out, &String::from_utf8_lossy(&s));
        } else {
            let _ = write!(self.out, "{v}");
        }
        self
    }

    /// An unsigned number.
    pub fn num(&mut self, k: &str, v: u64) -> &mut Self {
        self.key(k);
        let mut buf = [0u8; 20];
        let mut i = buf.len();
        let mut n = v;
        loop {
            i -= 1;
            if let Some(slot) = buf.get_mut(i) {
                *slot = b'0' + (n % 10) as u8;
            }
            n /= 10;
            if n == 0 || i == 0 {
                break;
            }
        }
        self.out.extend_from_slice(buf.get(i..).unwrap_or_default());
        self
    }

    /// A boolean.
    pub fn bool(&mut self, k: &str, v: bool) -> &mut Self {
        self.key(k);
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        self
    }

    /// Ends the line.
    pub fn finish(self) {
        if self.json {
            self.out.extend_from_slice(b"},\"target\":");
            json_str(self.out, self.target);
            self.out.push(b'}');
        }
        self.out.push(b'\n');
    }
}

/// `v` as a JSON string.
fn json_str(out: &mut Vec<u8>, v: &str) {
    out.push(b'"');
    let mut plain = 0;
    let bytes = v.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(bytes.get(plain..i).unwrap_or_default());
        if esc.is_empty() {
            out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
        } else {
            out.extend_from_slice(esc);
        }
        plain = i + 1;
    }
    out.extend_from_slice(bytes.get(plain..).unwrap_or_default());
    out.push(b'"');
}

/// `v` quoted as Rust's `Debug` for `str` does (what `tracing`'s text layout prints).
fn debug_str(out: &mut Vec<u8>, v: &str) {
    let plain = |b: u8| b.is_ascii() && (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\';
    if v.bytes().all(plain) {
        out.push(b'"');
        out.extend_from_slice(v.as_bytes());
        out.push(b'"');
    } else {
        use std::io::Write as _;
        let _ = write!(out, "{v:?}");
    }
}

/// The text of a panic payload (`panic!` gives a `&str` or a `String`), for the log line that
/// reports it (a worker's contained panic, an admin connection's).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(non-string panic payload)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn timestamps_match_rfc3339_micros() {
        let cases = [
            (0, 0, "1970-01-01T00:00:00.000000Z"),
            (951_782_400, 7, "2000-02-29T00:00:00.000007Z"),
            (1_796_559_554, 333_630, "2026-12-06T12:19:14.333630Z"),
            (4_102_444_799, 999_999, "2099-12-31T23:59:59.999999Z"),
        ];
        for (s, us, want) in cases {
            let mut out = Vec::new();
            push_timestamp(
                &mut out,
                UNIX_EPOCH + Duration::from_secs(s) + Duration::from_micros(us),
            );
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }

    #[test]
    fn strings_are_escaped_like_tracing() {
        let hostile = "a\"b\\c\nd\u{1}é";
        let mut t = Vec::new();
        debug_str(&mut t, hostile);
        assert_eq!(String::from_utf8(t).unwrap(), format!("{hostile:?}"));
        let mut j = Vec::new();
        json_str(&mut j, hostile);
        let back: String = serde_json::from_slice(&j).unwrap();
        assert_eq!(back, hostile);
    }

    #[test]
    fn a_json_line_parses_with_fields_under_fields() {
        let mut out = Vec::new();
        let mut l = LineBuilder::start(&mut out, Direct::Json, "slotgate::access", "request");
        l.str("path", "/v1/\"x\"")
            .num("status", 200)
            .num("zero", 0)
            .num("max", u64::MAX)
            .bool("cut", false)
            .display("client", &"127.0.0.1:9");
        l.finish();
        assert_eq!(out.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["target"], "slotgate::access");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["fields"]["message"], "request");
        assert_eq!(v["fields"]["path"], "/v1/\"x\"");
        assert_eq!(v["fields"]["status"], 200);
        assert_eq!(v["fields"]["zero"], 0);
        assert_eq!(v["fields"]["max"], u64::MAX);
        assert_eq!(v["fields"]["cut"], false);
        assert_eq!(v["fields"]["client"], "127.0.0.1:9");
    }
}
