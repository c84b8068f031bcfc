//! JSON model extraction and remap: extraction never panics; when a model span is found, the
//! remapped body re-extracts to the new model and every byte outside the span is unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slotgate::routing::facts;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    // First byte: length of the new model id taken from the end of the input.
    let k = (data[0] as usize) % 24;
    let rest = &data[1..];
    if rest.len() < k {
        return;
    }
    let (body, new) = rest.split_at(rest.len() - k);
    let Ok(new_model) = std::str::from_utf8(new) else {
        return;
    };
    let Ok(f) = facts::extract_json(body) else {
        return;
    };
    let _ = facts::extract(body, Some("multipart/form-data; boundary=x"));
    let Some(span) = f.span else {
        return;
    };
    assert!(span.start < span.end && span.end <= body.len());
    let out = facts::remap_model(body, span, new_model);
    assert_eq!(&out[..span.start], &body[..span.start]);
    assert_eq!(&out[out.len() - (body.len() - span.end)..], &body[span.end..]);
    let again = facts::extract_json(&out).expect("remapped body is still valid JSON");
    let trimmed = new_model.trim();
    let want = (!trimmed.is_empty()).then_some(trimmed);
    assert_eq!(again.model(), want, "remap did not re-extract to the new model");
    assert_eq!(again.stream, f.stream);
});
