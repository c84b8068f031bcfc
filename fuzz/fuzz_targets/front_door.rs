//! The whole front door: request head → key check → local endpoints → body facts → dispatch → the outgoing head (or the answer) (`slotgate::fuzzing::front_door`). No input may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = slotgate::fuzzing::front_door(data);
});
