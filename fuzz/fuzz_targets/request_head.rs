//! Request head parsing plus body framing: the head parser must never panic, every accepted
//! head has sane spans, and a chunked body decodes the same however the input is split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slotgate::http::{BodyFraming, ChunkedDecoder, Limits, RequestHead, Status};

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    // The first byte picks a split point for the chunked decoder; the rest is the wire.
    let split_seed = data[0] as usize;
    let wire = &data[1..];
    let limits = Limits {
        max_header_bytes: 4096,
        max_headers: 32,
        max_uri_bytes: 1024,
    };
    let mut head = RequestHead::new();
    let Ok(Status::Complete(n)) = head.parse(wire, &limits) else {
        return;
    };
    assert!(n <= wire.len() && n <= limits.max_header_bytes);
    assert!(head.target(wire).len() <= limits.max_uri_bytes);
    let _ = head.path(wire);
    let _ = head.query(wire);
    for h in head.headers() {
        let _ = (h.name(wire), h.value(wire));
    }
    let body = &wire[n..];
    match head.framing() {
        BodyFraming::Chunked => {
            let whole = decode_all(&[body]);
            let cut = if body.is_empty() { 0 } else { split_seed % (body.len() + 1) };
            let parts = decode_all(&[&body[..cut], &body[cut..]]);
            assert_eq!(whole, parts, "chunked decoding depends on the read split");
        }
        BodyFraming::Length(len) => assert!(len > 0),
        BodyFraming::None => {}
        BodyFraming::Close => panic!("requests are never close-delimited"),
    }
});

/// Feeds the pieces in order; returns (payload, consumed, done) or the error.
fn decode_all(pieces: &[&[u8]]) -> Result<(Vec<u8>, usize, bool), String> {
    let mut dec = ChunkedDecoder::new();
    let mut out = Vec::new();
    let mut consumed = 0;
    for p in pieces {
        let mut pos = 0;
        while pos < p.len() {
            let r = dec
                .decode(&p[pos..], |d| out.extend_from_slice(d))
                .map_err(|e| e.to_string())?;
            assert!(r.consumed <= p.len() - pos);
            pos += r.consumed;
            consumed += r.consumed;
            if r.done {
                assert_eq!(dec.payload_len(), out.len() as u64);
                return Ok((out, consumed, true));
            }
            if r.consumed == 0 {
                break;
            }
        }
    }
    assert_eq!(dec.payload_len(), out.len() as u64);
    Ok((out, consumed, false))
}
