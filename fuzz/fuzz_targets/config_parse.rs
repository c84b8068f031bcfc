//! Config parsing and validation: arbitrary text is refused with problems, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // No base dir: a `tuning = "file"` include must not reach the filesystem from the fuzzer.
    if text.contains("tuning") && text.contains('"') && !text.contains("[tuning]") {
        return;
    }
    // Nor the PEM files validation reads (`ca_file`, `wake_ca_file`, `tls_cert`, `tls_key`).
    if text.contains("ca_file") || text.contains("tls_") {
        return;
    }
    if let Ok(cfg) = slotgate::config::Config::from_toml_str(text, None) {
        // A valid config builds a snapshot without panicking.
        let live = slotgate::routing::LiveState::default();
        let _ = slotgate::routing::Snapshot::build(std::sync::Arc::new(cfg), &live, 1);
    }
});
