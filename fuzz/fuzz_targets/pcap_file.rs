//! cargo fuzz run pcap_file — see fuzz/README.md and fuzz/harness.rs.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::pcap_file(data);
});
