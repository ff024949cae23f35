use super::defrag::Defragmenter;
use super::link::LinkType;
use super::segment::*;
use crate::event::Timestamp;
use etherparse::PacketBuilder;

fn ipv4_tcp(payload: &[u8]) -> Vec<u8> {
    let builder = PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(40000, 8080, 1000, 512)
        .ack(77)
        .psh();
    let mut out = Vec::new();
    builder.write(&mut out, payload).unwrap();
    out
}

#[test]
fn each_link_type_reaches_tcp() {
    let ip = ipv4_tcp(b"hello");
    let mut eth = vec![0u8; 12];
    eth.extend_from_slice(&[0x81, 0x00, 0x00, 0x05, 0x08, 0x00]); // one 802.1Q tag
    eth.extend_from_slice(&ip);
    let mut null = 2u32.to_ne_bytes().to_vec();
    null.extend_from_slice(&ip);
    let mut sll2 = vec![0x08, 0x00, 0, 0, 0, 0, 0, 1, 0, 1, 0, 6];
    sll2.extend_from_slice(&[0; 8]);
    sll2.extend_from_slice(&ip);
    // Linux cooked v1 as `-i any` writes it: loopback (ARPHRD 772), a tun device (65534),
    // ppp (512) and Ethernet (1), each with the IPv4 EtherType.
    let sll = |arphrd: u16| {
        let mut h = vec![0, 4]; // packet type: outgoing
        h.extend_from_slice(&arphrd.to_be_bytes());
        h.extend_from_slice(&[0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00]);
        h.extend_from_slice(&ip);
        h
    };
    let (sll_lo, sll_tun, sll_ppp, sll_eth) = (sll(772), sll(65534), sll(512), sll(1));
    for (link, bytes) in [
        (LinkType::LinuxSll, &sll_lo),
        (LinkType::LinuxSll, &sll_tun),
        (LinkType::LinuxSll, &sll_ppp),
        (LinkType::LinuxSll, &sll_eth),
        (LinkType::Ethernet, &eth),
        (LinkType::Raw, &ip),
        (LinkType::Null, &null),
        (LinkType::LinuxSll2, &sll2),
    ] {
        let seg = decode(link, bytes).unwrap();
        assert_eq!(seg.payload, b"hello", "{link:?}");
        assert_eq!(seg.src, "10.0.0.1:40000".parse().unwrap());
        assert_eq!(seg.dst, "10.0.0.2:8080".parse().unwrap());
        assert_eq!((seg.seq, seg.ack), (1000, 77));
    }
}

/// An IPv6 TCP segment cut into fragments (RFC 8200 4.5), delivered last piece first.
#[test]
fn ipv6_fragments_are_reassembled() {
    let payload: Vec<u8> = (0..200u8).collect();
    let builder = PacketBuilder::ipv6([0x20; 16], [0x21; 16], 64).tcp(40000, 8080, 7, 512);
    let mut whole = Vec::new();
    builder.write(&mut whole, &payload).unwrap();
    let tcp = &whole[40..]; // the TCP segment after the fixed IPv6 header
    let fragment = |offset: usize, piece: &[u8], more: bool| {
        let mut p = Vec::new();
        p.extend_from_slice(&[0x60, 0, 0, 0]);
        p.extend_from_slice(&((8 + piece.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[44, 64]); // next header: fragment; hop limit
        p.extend_from_slice(&[0x20; 16]);
        p.extend_from_slice(&[0x21; 16]);
        let offset_field = ((offset / 8) as u16) << 3 | u16::from(more);
        p.extend_from_slice(&[6, 0]); // then TCP; reserved
        p.extend_from_slice(&offset_field.to_be_bytes());
        p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        p.extend_from_slice(piece);
        p
    };
    let first = fragment(0, &tcp[..96], true);
    let last = fragment(96, &tcp[96..], false);
    assert_eq!(decode(LinkType::Raw, &first).unwrap_err(), Skip::Fragment);
    let mut defrag = Defragmenter::default();
    let ts = Timestamp::default();
    assert!(defrag.add(LinkType::Raw, &last, ts).is_none());
    let datagram = defrag.add(LinkType::Raw, &first, ts).expect("complete");
    let seg = datagram.segment().expect("a TCP segment");
    assert_eq!(seg.payload, &payload[..]);
    assert_eq!(seg.dst.port(), 8080);
    assert_eq!(seg.seq, 7);
}

#[test]
fn short_and_foreign_packets_are_skipped() {
    assert_eq!(
        decode(LinkType::LinuxSll2, &[0; 5]).unwrap_err(),
        Skip::Malformed
    );
    assert_eq!(
        decode(LinkType::LinuxSll, &[0; 15]).unwrap_err(),
        Skip::Malformed
    );
    assert_eq!(
        decode(LinkType::Null, &[0; 2]).unwrap_err(),
        Skip::Malformed
    );
    let ip = ipv4_tcp(b"x");
    // Cut inside the TCP header before its flags: a cut, but not a segment.
    assert_eq!(
        decode(LinkType::Raw, &ip[..30]).unwrap_err(),
        Skip::CutHeader
    );
    assert_eq!(
        decode(LinkType::Raw, &ip[..19]).unwrap_err(),
        Skip::Malformed
    );
    assert!(LinkType::from_dlt(105, "IEEE802_11").is_err());
}

/// A packet cut by the snapshot length keeps its captured payload and says how many bytes
/// the IP header declares beyond it, on the fast path and the lax one, for IPv6 and SLL2
/// too; cut inside the TCP header after its flags, it keeps its place with no payload.
#[test]
fn cut_packets_say_what_was_cut() {
    let payload: Vec<u8> = (0..100u8).collect();
    let ip = ipv4_tcp(&payload);
    let mut eth = vec![0u8; 12];
    eth.extend_from_slice(&[0x08, 0x00]);
    eth.extend_from_slice(&ip);
    let mut vlan = vec![0u8; 12];
    vlan.extend_from_slice(&[0x81, 0x00, 0x00, 0x05, 0x08, 0x00]);
    vlan.extend_from_slice(&ip);
    let mut v6 = Vec::new();
    PacketBuilder::ipv6([0x20; 16], [0x21; 16], 64)
        .tcp(40000, 8080, 1000, 512)
        .write(&mut v6, &payload)
        .unwrap();
    let mut sll2 = vec![0x86, 0xdd, 0, 0, 0, 0, 0, 1, 0, 1, 0, 6];
    sll2.extend_from_slice(&[0; 8]);
    sll2.extend_from_slice(&v6);
    // (link, packet, bytes of headers before the payload)
    for (link, bytes, headers) in [
        (LinkType::Ethernet, &eth, 14 + 20 + 20),
        (LinkType::Ethernet, &vlan, 18 + 20 + 20),
        (LinkType::Raw, &ip, 20 + 20),
        (LinkType::LinuxSll2, &sll2, 20 + 40 + 20),
    ] {
        let whole = decode(link, bytes).unwrap();
        assert_eq!((whole.payload, whole.cut), (&payload[..], None), "{link:?}");
        let snap = headers + 30;
        let seg = decode(link, &bytes[..snap]).unwrap();
        assert_eq!(seg.payload, &payload[..30], "{link:?}");
        let want = Cut {
            bytes: 70,
            snaplen: snap as u32,
        };
        assert_eq!(seg.cut, Some(want), "{link:?}");
        assert_eq!((seg.seq, seg.dst.port()), (1000, 8080), "{link:?}");
        let in_header = decode(link, &bytes[..headers - 4]).unwrap();
        assert_eq!(in_header.payload, b"", "{link:?}");
        assert_eq!(in_header.cut.map(|c| c.bytes), Some(100), "{link:?}");
        assert_eq!(
            (in_header.seq, in_header.src.port()),
            (1000, 40000),
            "{link:?}"
        );
    }
}
