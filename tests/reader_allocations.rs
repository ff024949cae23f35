//! Reading a capture file does not allocate per packet: a counting global allocator measures
//! reading a pcapng file of 200 packets and one of 20 000 (two interfaces of two link types,
//! packet options, copies of each packet on the second interface, a BPF filter); past the
//! first packets, more packets cost no allocation at all. A pcap file the same.

use etherparse::PacketBuilder;
use wsnoop::capture::{Next, Source};

#[path = "common/counting.rs"]
mod counting;

/// An IPv4 TCP segment, its payload numbered.
fn ip_packet(i: u32) -> Vec<u8> {
    let payload = format!("payload {i:08}").into_bytes();
    let builder = PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(40000, 8080, 1000 + i * 100, 65535)
        .ack(1);
    let mut out = Vec::new();
    builder.write(&mut out, &payload).unwrap();
    out
}

fn block(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
    let padded = body.len().div_ceil(4) * 4;
    let len = (12 + padded) as u32;
    out.extend(kind.to_le_bytes());
    out.extend(len.to_le_bytes());
    out.extend(body);
    out.resize(out.len() + padded - body.len(), 0);
    out.extend(len.to_le_bytes());
}

fn epb(out: &mut Vec<u8>, if_id: u32, ticks: u64, data: &[u8]) {
    let mut body = if_id.to_le_bytes().to_vec();
    body.extend(((ticks >> 32) as u32).to_le_bytes());
    body.extend((ticks as u32).to_le_bytes());
    body.extend((data.len() as u32).to_le_bytes());
    body.extend((data.len() as u32).to_le_bytes());
    body.extend(data);
    body.resize(body.len().div_ceil(4) * 4, 0);
    // epb_flags, then the end of options.
    body.extend([2, 0, 4, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
    block(out, 6, &body);
}

/// Ethernet on interface 0 and the same IP packet in SLL2 on interface 1.
fn pcapng(packets: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut shb = 0x1A2B_3C4Du32.to_le_bytes().to_vec();
    shb.extend([1, 0, 0, 0]);
    shb.extend([0xff; 8]);
    block(&mut out, 0x0A0D_0D0A, &shb);
    for linktype in [1u16, 276] {
        let mut idb = linktype.to_le_bytes().to_vec();
        idb.extend([0, 0]);
        idb.extend(262_144u32.to_le_bytes());
        block(&mut out, 1, &idb);
    }
    for i in 0..packets {
        let ip = ip_packet(i);
        let ether = [&[2u8; 6][..], &[4; 6], &[0x08, 0x00], &ip].concat();
        let sll2 = [&[0x08u8, 0x00][..], &[0; 18], &ip].concat();
        let ticks = 1_700_000_000_000_000 + u64::from(i) * 1000;
        epb(&mut out, 0, ticks, &ether);
        epb(&mut out, 1, ticks + 1, &sll2);
    }
    out
}

fn pcap(packets: u32) -> Vec<u8> {
    let mut out = 0xa1b2_c3d4u32.to_le_bytes().to_vec();
    out.extend([2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out.extend(262_144u32.to_le_bytes());
    out.extend(1u32.to_le_bytes());
    for i in 0..packets {
        let frame = [&[2u8; 6][..], &[4; 6], &[0x08, 0x00], &ip_packet(i)].concat();
        out.extend((1_700_000_000 + i).to_le_bytes());
        out.extend(0u32.to_le_bytes());
        out.extend((frame.len() as u32).to_le_bytes());
        out.extend((frame.len() as u32).to_le_bytes());
        out.extend(frame);
    }
    out
}

/// Allocations while reading all but the first ten packets; and how many were handed on.
fn allocations_reading(bytes: &[u8]) -> (usize, u64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capture");
    std::fs::write(&path, bytes).unwrap();
    let mut source = Source::open_file(&path).expect("opens");
    source.set_filter("tcp").expect("compiles");
    let mut handed_on = 0u64;
    let mut before = 0;
    loop {
        if handed_on == 10 {
            before = counting::allocations();
        }
        match source.next_packet().expect("reads") {
            Next::Packet(p) => {
                assert!(!p.data.is_empty());
                handed_on += 1;
            }
            Next::End => break,
            Next::Idle => {}
        }
    }
    (counting::allocations() - before, handed_on)
}

#[test]
fn reading_a_packet_allocates_nothing() {
    let _turn = counting::turn();
    for (what, small, large) in [
        ("pcapng", pcapng(200), pcapng(20_000)),
        ("pcap", pcap(200), pcap(20_000)),
    ] {
        let (a_small, n_small) = allocations_reading(&small);
        let (a_large, n_large) = allocations_reading(&large);
        assert_eq!(
            (n_small, n_large),
            (200, 20_000),
            "{what}: the copies are skipped"
        );
        assert_eq!(
            a_small, a_large,
            "{what}: {a_small} allocations for 200 packets, {a_large} for 20 000"
        );
        assert_eq!(a_large, 0, "{what}: reading allocates nothing once open");
    }
}
