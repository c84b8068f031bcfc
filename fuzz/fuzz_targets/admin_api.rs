//! The whole admin API: one request through the admin router, as its connection loop answers it (`slotgate::fuzzing::admin_api`). No input may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = slotgate::fuzzing::admin_api(data);
});
