//! The request's `X-Request-Id` (DESIGN.md §3 "Headers"): the client's own id, forwarded as
//! given, or a generated UUIDv7 (RFC 9562: time-ordered, so ids sort by arrival in logs).
//!
//! Generated ids must be UUIDs: real servers check them (llama-cpp-python's request-id
//! middleware answers `400` with an empty body to any other shape).

/// Longest client `X-Request-Id` kept (longer ones are replaced by a generated id).
pub const MAX_ID: usize = 128;

/// Length of a UUID in its 8-4-4-4-12 text form.
pub const UUID_LEN: usize = 36;

/// The request's `X-Request-Id`: the client's when it sent a sane one, else generated. Held
/// inline (no allocation per request).
#[derive(Clone)]
pub struct RequestId {
    bytes: [u8; MAX_ID],
    len: u8,
}

impl std::fmt::Debug for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a generated id's bits come from: one per worker.
#[derive(Debug)]
pub struct IdSource {
    /// Process seed mixed with the worker index (differs per worker and per process).
    node: u64,
    /// Ids generated so far by this worker.
    counter: std::cell::Cell<u64>,
}

impl IdSource {
    /// A source for worker `worker` of a process seeded with `seed`.
    pub fn new(seed: u64, worker: usize) -> IdSource {
        IdSource {
            node: splitmix(seed ^ (worker as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            counter: std::cell::Cell::new(0),
        }
    }

    /// The next id's 128 bits for Unix time `unix_ms`.
    pub fn next_bits(&self, unix_ms: u64) -> u128 {
        let n = self.counter.get();
        self.counter.set(n.wrapping_add(1));
        uuid_v7_bits(unix_ms, n, self.node)
    }
}

/// A UUIDv7's bits: 48 bits of Unix milliseconds, version 7, 12 bits of `counter`, the RFC 9562
/// variant, then 62 bits of which the low 32 are `counter` again and the rest come from `node`.
/// Two ids of one source differ in the counter (until 2^32 ids in one millisecond); sources
/// differ in `node` (30 bits: a collision needs two workers with equal mixed seeds).
pub fn uuid_v7_bits(unix_ms: u64, counter: u64, node: u64) -> u128 {
    let ts = u128::from(unix_ms & 0xffff_ffff_ffff);
    let rand_a = u128::from(counter & 0xfff);
    let rand_b = (u128::from(node & 0x3fff_ffff) << 32) | u128::from(counter & 0xffff_ffff);
    (ts << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
}

/// Writes `bits` as a lowercase 8-4-4-4-12 UUID.
pub fn write_uuid(out: &mut [u8; UUID_LEN], bits: u128) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut nibble = 32u32;
    for (i, slot) in out.iter_mut().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            *slot = b'-';
            continue;
        }
        nibble -= 1;
        let v = ((bits >> (4 * nibble)) & 0xf) as usize;
        *slot = HEX.get(v).copied().unwrap_or(b'0');
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl RequestId {
    /// Keeps a client id of 1–128 visible ASCII bytes as given; otherwise generates a UUIDv7.
    pub fn of(src: &IdSource, existing: Option<&[u8]>) -> RequestId {
        match existing.and_then(RequestId::client) {
            Some(id) => id,
            None => RequestId::generated(src.next_bits(unix_ms())),
        }
    }

    /// The client's id, when it is 1–128 visible ASCII bytes.
    pub fn client(v: &[u8]) -> Option<RequestId> {
        if v.is_empty() || v.len() > MAX_ID || !v.iter().all(|b| b.is_ascii_graphic()) {
            return None;
        }
        let mut id = RequestId {
            bytes: [0; MAX_ID],
            len: v.len() as u8,
        };
        id.bytes.get_mut(..v.len())?.copy_from_slice(v);
        Some(id)
    }

    /// The UUID of `bits`.
    pub fn generated(bits: u128) -> RequestId {
        let mut uuid = [0u8; UUID_LEN];
        write_uuid(&mut uuid, bits);
        let mut id = RequestId {
            bytes: [0; MAX_ID],
            len: UUID_LEN as u8,
        };
        if let Some(dst) = id.bytes.get_mut(..UUID_LEN) {
            dst.copy_from_slice(&uuid);
        }
        id
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        // Only visible ASCII is ever stored (checked above, or hex digits and '-').
        std::str::from_utf8(self.bytes.get(..self.len as usize).unwrap_or(&[])).unwrap_or("")
    }
}

/// Whether `s` is a lowercase UUIDv7 in its 8-4-4-4-12 text form.
pub fn is_uuid_v7(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == UUID_LEN
        && b.iter().enumerate().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                *c == b'-'
            } else {
                c.is_ascii_hexdigit() && !c.is_ascii_uppercase()
            }
        })
        && b.get(14) == Some(&b'7')
        && matches!(b.get(19), Some(b'8' | b'9' | b'a' | b'b'))
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::string_slice)] // tests: a panic is a failure
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_uuid_v7_with_the_time_in_front() {
        let src = IdSource::new(42, 0);
        let id = RequestId::generated(src.next_bits(0x0190_1234_5678));
        assert!(is_uuid_v7(id.as_str()), "{}", id.as_str());
        assert!(
            id.as_str().starts_with("01901234-5678-7"),
            "{}",
            id.as_str()
        );
    }

    #[test]
    fn ids_sort_by_time_and_never_repeat_across_workers() {
        let a = IdSource::new(7, 0);
        let b = IdSource::new(7, 1);
        let mut seen = std::collections::HashSet::new();
        let mut last = String::new();
        for ms in 1_000..1_050u64 {
            for _ in 0..40 {
                for src in [&a, &b] {
                    let id = RequestId::generated(src.next_bits(ms));
                    let s = id.as_str().to_string();
                    assert!(is_uuid_v7(&s), "{s}");
                    assert!(s[..13] >= last[..last.len().min(13)], "{s} after {last}");
                    assert!(seen.insert(s.clone()), "repeated {s}");
                    last = s;
                }
            }
        }
    }

    #[test]
    fn a_client_id_is_kept_as_given_and_a_bad_one_replaced() {
        let src = IdSource::new(1, 0);
        let kept = RequestId::of(&src, Some(b"trace-abc_123"));
        assert_eq!(kept.as_str(), "trace-abc_123");
        for bad in [
            &b""[..],
            b"has space",
            "caf\u{e9}".as_bytes(),
            &[b'a'; 129][..],
        ] {
            let id = RequestId::of(&src, Some(bad));
            assert!(is_uuid_v7(id.as_str()), "{:?} -> {}", bad, id.as_str());
        }
        assert!(is_uuid_v7(RequestId::of(&src, None).as_str()));
    }
}
