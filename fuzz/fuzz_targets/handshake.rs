//! cargo fuzz run handshake — see fuzz/README.md and fuzz/harness.rs.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::handshake(data));
