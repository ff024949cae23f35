//! The floor for `wsnoop -r FILE -q`: a bare libpcap loop that reads every packet of a capture
//! and touches every byte of it, and nothing else.
//!
//!   pcap_floor FILE
//!
//! Prints the packet count, the byte count and a checksum of all bytes (so the reads cannot be
//! optimised away).

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: pcap_floor FILE");
        return ExitCode::from(2);
    };
    // The same open wsnoop uses for files: nanosecond precision.
    let mut cap = match pcap::Capture::from_file_with_precision(&path, pcap::Precision::Nano) {
        Ok(cap) => cap,
        Err(e) => {
            eprintln!("pcap_floor: {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (mut packets, mut bytes, mut sum) = (0u64, 0u64, 0u64);
    loop {
        match cap.next_packet() {
            Ok(p) => {
                packets += 1;
                bytes += p.data.len() as u64;
                // Eight bytes at a time, as the fastest decode pass would read them.
                let mut chunks = p.data.chunks_exact(8);
                for c in &mut chunks {
                    sum = sum.wrapping_add(u64::from_le_bytes(c.try_into().unwrap()));
                }
                for &b in chunks.remainder() {
                    sum = sum.wrapping_add(u64::from(b));
                }
                sum = sum.wrapping_add(p.header.ts.tv_usec as u64);
            }
            Err(pcap::Error::NoMorePackets) => break,
            Err(e) => {
                eprintln!("pcap_floor: {path}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    eprintln!("{packets} packets, {bytes} bytes, checksum {sum:016x}");
    ExitCode::SUCCESS
}
