use super::defrag::{DefragLimits, Defragmenter, Refused};
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
    let seg = datagram.segment(&[]).expect("a TCP segment");
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

/// IPv4 fragments of `ip` (a whole IPv4 packet with a 20-byte header): `(offset, len)` pieces
/// of its payload, each with the header copied, its length, offset and flags set.
fn ipv4_fragments(ip: &[u8], id: u16, pieces: &[(usize, usize)]) -> Vec<Vec<u8>> {
    let payload = &ip[20..];
    pieces
        .iter()
        .map(|&(offset, len)| {
            let mut p = ip[..20].to_vec();
            p[2..4].copy_from_slice(&((20 + len) as u16).to_be_bytes());
            p[4..6].copy_from_slice(&id.to_be_bytes());
            let more = offset + len < payload.len();
            let field = (offset / 8) as u16 | if more { 0x2000 } else { 0 };
            p[6..8].copy_from_slice(&field.to_be_bytes());
            p.extend_from_slice(&payload[offset..offset + len]);
            p
        })
        .collect()
}

/// A fragment of `len` bytes at `offset` of datagram `id` from 10.0.0.1, alone: the rest of
/// its datagram never comes.
fn lone_fragment(id: u16, offset: usize, len: usize, more: bool) -> Vec<u8> {
    let mut p = ipv4_tcp(&[]);
    p.truncate(20);
    p[2..4].copy_from_slice(&((20 + len) as u16).to_be_bytes());
    p[4..6].copy_from_slice(&id.to_be_bytes());
    let field = (offset / 8) as u16 | if more { 0x2000 } else { 0 };
    p[6..8].copy_from_slice(&field.to_be_bytes());
    p.resize(20 + len, 0xab);
    p
}

fn at(secs: i64) -> Timestamp {
    Timestamp { secs, nanos: 0 }
}

/// Out of order, overlapping, duplicated: the datagram comes back as it was sent.
#[test]
fn ipv4_fragments_reassemble_in_any_order() {
    let payload: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
    let ip = ipv4_tcp(&payload);
    let tcp_len = ip.len() - 20;
    let frags = ipv4_fragments(
        &ip,
        9,
        &[
            (512, tcp_len - 512),
            (0, 256),
            (256, 256),
            (128, 384),
            (0, 256),
        ],
    );
    let mut defrag = Defragmenter::default();
    for f in &frags[..2] {
        assert!(defrag.add(LinkType::Raw, f, at(1)).is_none());
    }
    let datagram = defrag
        .add(LinkType::Raw, &frags[2], at(1))
        .expect("complete");
    let seg = datagram.segment(&[]).expect("a TCP segment");
    assert_eq!(seg.payload, &payload[..]);
    assert_eq!(seg.seq, 1000);
    defrag.recycle(datagram);
    assert_eq!(defrag.held_bytes(), 0, "a completed datagram holds nothing");
}

/// One 8-byte fragment at offset 65,520 costs what it brought, not the 64 KiB its offset
/// claims.
#[test]
fn a_fragment_at_a_high_offset_holds_its_bytes_only() {
    let mut defrag = Defragmenter::default();
    assert!(
        defrag
            .add(LinkType::Raw, &lone_fragment(1, 65_520, 8, false), at(1))
            .is_none()
    );
    let held = defrag.held_bytes();
    assert!(held > 8 && held < 1024, "held {held}");
    // 65,528 + 8 is past what an IP datagram can hold: refused, nothing more held.
    assert!(
        defrag
            .add(LinkType::Raw, &lone_fragment(2, 65_528, 16, false), at(1))
            .is_none()
    );
    assert_eq!(defrag.held_bytes(), held);
}

/// Past the bound the oldest datagrams go, counted; the newest still completes.
#[test]
fn the_bound_drops_the_oldest_datagrams() {
    let bound = 64 * 1024;
    let mut defrag = Defragmenter::new(DefragLimits { max_bytes: bound });
    let ip = ipv4_tcp(&[7u8; 600]);
    let tcp_len = ip.len() - 20;
    let first = |id| ipv4_fragments(&ip, id, &[(0, 304)]).remove(0);
    let last = |id| ipv4_fragments(&ip, id, &[(304, tcp_len - 304)]).remove(0);
    let n = 1000u16;
    for id in 0..n {
        assert!(defrag.add(LinkType::Raw, &first(id), at(1)).is_none());
        assert!(defrag.held_bytes() <= bound, "held {}", defrag.held_bytes());
    }
    let dropped = defrag.stats().dropped;
    assert!(dropped > 0 && dropped < u64::from(n), "dropped {dropped}");
    // The oldest went: its last piece starts a datagram of its own.
    assert!(defrag.add(LinkType::Raw, &last(0), at(1)).is_none());
    let newest = defrag.add(LinkType::Raw, &last(n - 1), at(1));
    assert_eq!(
        newest
            .expect("the newest completes")
            .segment(&[])
            .unwrap()
            .payload,
        &[7u8; 600][..]
    );
}

/// 30 s after its first fragment a datagram is given up, whatever came since; its bytes are
/// freed.
#[test]
fn incomplete_datagrams_expire_from_their_first_fragment() {
    let ip = ipv4_tcp(&[1u8; 600]);
    let frags = ipv4_fragments(&ip, 5, &[(0, 200), (200, 200), (400, ip.len() - 420)]);
    let mut defrag = Defragmenter::default();
    assert!(defrag.add(LinkType::Raw, &frags[0], at(100)).is_none());
    assert!(defrag.add(LinkType::Raw, &frags[1], at(125)).is_none());
    defrag.expire(at(129));
    assert_eq!(defrag.stats().expired, 0);
    defrag.expire(at(130));
    assert_eq!(defrag.stats().expired, 1);
    assert_eq!(defrag.held_bytes(), 0);
    assert!(defrag.add(LinkType::Raw, &frags[2], at(130)).is_none());
    // Extreme clocks neither panic nor keep anything forever.
    defrag.expire(at(i64::MIN));
    defrag.expire(at(i64::MAX));
    assert_eq!(defrag.held_bytes(), 0);
}

/// Fragments of other protocols are not held: only TCP is reassembled.
#[test]
fn fragments_of_other_protocols_are_not_held() {
    let mut udp = lone_fragment(3, 0, 64, true);
    udp[9] = 17;
    let mut defrag = Defragmenter::default();
    assert!(matches!(
        defrag.add_checked(LinkType::Raw, &udp, at(1)),
        Err(Refused::NotTcp { first: true })
    ));
    assert_eq!(defrag.held_bytes(), 0);
}

/// Any cut of a datagram into pieces (multiples of 8 bytes, some overlapping, some sent
/// twice), in any order: it completes exactly when its last missing byte comes, as sent.
#[test]
fn any_order_and_overlap_of_pieces_reassembles_exactly() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    for round in 0..300 {
        let payload: Vec<u8> = (0..next(3000) + 1)
            .map(|i| (i * 31 + round) as u8)
            .collect();
        let ip = ipv4_tcp(&payload);
        let len = ip.len() - 20;
        let mut pieces = Vec::new();
        let mut pos = 0;
        while pos < len {
            let end = (pos + 8 * (next(40) + 1)).min(len);
            pieces.push((pos, end - pos));
            // Now and then a piece from inside this one to inside the next.
            if end < len && next(4) == 0 {
                let start = pos + 8 * next((end - pos) / 8);
                let over_end = (end + 8 * (next(4) + 1)).min(len);
                pieces.push((start, over_end - start));
            }
            pos = end;
        }
        if next(3) == 0 {
            let again = pieces[next(pieces.len())];
            pieces.push(again);
        }
        for i in (1..pieces.len()).rev() {
            pieces.swap(i, next(i + 1));
        }
        let frags = ipv4_fragments(&ip, round as u16, &pieces);
        // The piece after which every byte has come.
        let mut covered = vec![false; len];
        let completing = pieces
            .iter()
            .position(|&(o, l)| {
                covered[o..o + l].iter_mut().for_each(|c| *c = true);
                covered.iter().all(|&c| c)
            })
            .expect("the pieces cover the datagram");
        let mut defrag = Defragmenter::default();
        for (i, f) in frags.iter().enumerate().take(completing + 1) {
            let got = defrag.add(LinkType::Raw, f, at(1));
            if i < completing {
                assert!(
                    got.is_none(),
                    "round {round}: complete before piece {completing}"
                );
                continue;
            }
            let datagram = got.unwrap_or_else(|| panic!("round {round}: {pieces:?} incomplete"));
            assert_eq!(
                datagram.segment(&[]).expect("TCP").payload,
                &payload[..],
                "round {round}"
            );
        }
        assert_eq!(defrag.held_bytes(), 0);
    }
}

/// A datagram cut into more pieces than any MTU makes (2,048) is dropped, counted, freed;
/// a contradicting end is refused without losing the datagram.
#[test]
fn too_many_pieces_or_a_contradiction_are_refused() {
    let mut defrag = Defragmenter::default();
    for i in 0..2048 {
        // Every other 8-byte slot: never complete.
        let f = lone_fragment(4, 16 * i, 8, true);
        assert!(matches!(
            defrag.add_checked(LinkType::Raw, &f, at(1)),
            Ok(None)
        ));
    }
    let one_more = lone_fragment(4, 16 * 2048, 8, true);
    assert!(matches!(
        defrag.add_checked(LinkType::Raw, &one_more, at(1)),
        Err(Refused::Malformed)
    ));
    assert_eq!(defrag.stats().dropped, 1);
    assert_eq!(defrag.held_bytes(), 0);

    let ip = ipv4_tcp(&[3u8; 100]);
    let len = ip.len() - 20;
    let [first, last] = [
        ipv4_fragments(&ip, 5, &[(0, 64)]).remove(0),
        ipv4_fragments(&ip, 5, &[(64, len - 64)]).remove(0),
    ];
    assert!(defrag.add(LinkType::Raw, &last, at(1)).is_none());
    // A second "last" piece ending elsewhere contradicts the first.
    let liar = lone_fragment(5, 64, 8, false);
    assert!(matches!(
        defrag.add_checked(LinkType::Raw, &liar, at(1)),
        Err(Refused::Malformed)
    ));
    let datagram = defrag.add(LinkType::Raw, &first, at(1)).expect("complete");
    assert_eq!(datagram.segment(&[]).unwrap().payload, &[3u8; 100][..]);
}

/// The endpoints guessed for looking ahead are the decoder's for a plain Ethernet, IPv4 and
/// TCP packet (with IP options too), and no guess is made for anything else.
#[test]
fn the_endpoints_guessed_ahead_are_the_decoders() {
    let ether = |ethertype: [u8; 2], ip: &[u8]| {
        let mut p = vec![0u8; 12];
        p.extend_from_slice(&ethertype);
        p.extend_from_slice(ip);
        p
    };
    let plain = ether([0x08, 0x00], &ipv4_tcp(b"hello"));
    // The same with four bytes of IP options (a no-op and an end of list, padded).
    let mut with_options = ipv4_tcp(b"hello");
    with_options[0] = 0x46;
    with_options.splice(20..20, [1, 0, 0, 0]);
    let total = u16::from_be_bytes([with_options[2], with_options[3]]) + 4;
    with_options[2..4].copy_from_slice(&total.to_be_bytes());
    let with_options = ether([0x08, 0x00], &with_options);
    for packet in [&plain, &with_options] {
        let seg = decode(LinkType::Ethernet, packet).unwrap();
        assert_eq!(
            endpoints_hint(LinkType::Ethernet, packet),
            Some((seg.src, seg.dst))
        );
    }
    let mut tagged = vec![0u8; 12];
    tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x05, 0x08, 0x00]);
    tagged.extend_from_slice(&ipv4_tcp(b"x"));
    let mut fragment = plain.clone();
    fragment[14 + 6] = 0x20; // more fragments
    let mut udp = plain.clone();
    udp[14 + 9] = 17;
    let mut v6 = Vec::new();
    PacketBuilder::ipv6([0x20; 16], [0x21; 16], 64)
        .tcp(40000, 8080, 7, 512)
        .write(&mut v6, b"x")
        .unwrap();
    let v6 = ether([0x86, 0xdd], &v6);
    for (link, packet) in [
        (LinkType::Ethernet, &tagged[..]),
        (LinkType::Ethernet, &fragment[..]),
        (LinkType::Ethernet, &udp[..]),
        (LinkType::Ethernet, &v6[..]),
        (LinkType::Ethernet, &plain[..14 + 20 + 3]),
        (LinkType::Raw, &plain[14..]),
    ] {
        assert_eq!(endpoints_hint(link, packet), None, "{packet:?}");
    }
}
