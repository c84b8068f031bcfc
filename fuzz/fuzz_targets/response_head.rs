//! Response head parsing (the relay's view of an upstream): never panics, spans stay in bounds,
//! and pass-through chunk tracking agrees with decoding on where the body ends.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slotgate::http::{BodyFraming, ChunkedDecoder, ResponseHead, Status};

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let head_request = data[0] & 1 == 1;
    let wire = &data[1..];
    let mut head = ResponseHead::new();
    let Ok(Status::Complete(n)) = head.parse(wire, head_request, 8192) else {
        return;
    };
    assert!(n <= wire.len());
    let _ = head.reason(wire);
    for h in head.headers() {
        let _ = (h.name(wire), h.value(wire));
    }
    if head_request {
        assert_eq!(head.framing(), BodyFraming::None);
    }
    if head.framing() == BodyFraming::Chunked {
        let body = &wire[n..];
        let mut a = ChunkedDecoder::new();
        let mut b = ChunkedDecoder::new();
        let ta = a.track(body).map_err(|e| e.to_string());
        let tb = b.decode(body, |_| {}).map_err(|e| e.to_string());
        assert_eq!(ta, tb);
    }
});
