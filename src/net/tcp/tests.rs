use std::net::SocketAddr;

use super::reassembly::ACKED_HOLE_PATIENCE;
use super::*;
use crate::event::Timestamp;
use crate::net::segment::TcpFlags;

/// Pushes one plain data segment.
fn data(s: &mut HalfStream, seq: u32, payload: &[u8], sink: &mut impl FnMut(Chunk<'_>)) {
    let limits = ReassemblyLimits::default();
    s.push(
        seq,
        TcpFlags::default(),
        payload,
        Timestamp::default(),
        limits,
        sink,
    );
}

/// A chunk as the tests compare it: data without its timestamp.
fn show(chunk: &Chunk<'_>) -> String {
    match chunk {
        Chunk::Data(bytes, _) => format!("Data({bytes:?})"),
        other => format!("{other:?}"),
    }
}

fn collect(stream: &mut HalfStream, segments: &[(u32, &[u8])]) -> (Vec<u8>, Vec<u64>) {
    let mut bytes = Vec::new();
    let mut gaps = Vec::new();
    let mut sink = |c: Chunk<'_>| match c {
        Chunk::Data(d, _) => bytes.extend_from_slice(d),
        Chunk::Gap(n) => gaps.push(n),
        Chunk::Fin | Chunk::Conflict(_) | Chunk::Cut(_) => {}
    };
    for &(seq, payload) in segments {
        stream.push(
            seq,
            TcpFlags::default(),
            payload,
            Timestamp::default(),
            ReassemblyLimits::default(),
            &mut sink,
        );
    }
    stream.flush(&mut sink);
    (bytes, gaps)
}

#[test]
fn reorders_and_drops_duplicates_across_wraparound() {
    let base = u32::MAX - 3;
    let segs: [(u32, &[u8]); 5] = [
        (base, b"ab"),
        (base.wrapping_add(5), b"fgh"),
        (base.wrapping_add(2), b"cde"),
        (base.wrapping_add(1), b"bcd"),
        (base.wrapping_add(5), b"fg"),
    ];
    let (bytes, gaps) = collect(&mut HalfStream::default(), &segs);
    assert_eq!(bytes, b"abcdefgh");
    assert!(gaps.is_empty());
}

#[test]
fn flow_keys_are_the_same_both_ways() {
    for (a, b) in [
        ("10.0.0.1:40000", "10.0.0.2:8080"),
        ("[::1]:9004", "[::1]:51510"),
        ("[2001:db8::1]:443", "[2001:db8::2]:50000"),
    ] {
        let (a, b): (SocketAddr, SocketAddr) = (a.parse().unwrap(), b.parse().unwrap());
        let (k1, a_first) = FlowKey::new(a, b);
        let (k2, b_first) = FlowKey::new(b, a);
        assert_eq!(k1, k2);
        assert_ne!(a_first, b_first);
        let (first, second) = if a_first { (a, b) } else { (b, a) };
        assert_eq!((k1.side_a(), k1.side_b()), (first, second));
    }
}

#[test]
fn a_hole_that_never_fills_is_a_gap() {
    let (bytes, gaps) = collect(&mut HalfStream::default(), &[(100, b"ab"), (110, b"xyz")]);
    assert_eq!(bytes, b"abxyz");
    assert_eq!(gaps, [8]);
}

#[test]
fn a_hole_the_receiver_acknowledged_becomes_a_gap() {
    let mut s = HalfStream::default();
    let mut events = Vec::new();
    let mut sink = |c: Chunk<'_>| events.push(show(&c));
    data(&mut s, 100, b"ab", &mut sink);
    data(&mut s, 110, b"xyz", &mut sink);
    s.acked(101, &mut sink); // nothing new
    s.acked(105, &mut sink); // 102..105 may still come: the held data starts at 110
    s.acked(113, &mut sink); // the receiver has 102..110 and the capture has 110..113,
    // but captures reorder: the hole is given a few more packets to fill
    for _ in 0..ACKED_HOLE_PATIENCE {
        s.acked(113, &mut sink);
    }
    s.acked(120, &mut sink); // acked, never seen, nothing after them yet
    s.flush(&mut sink); // the connection ended without them
    assert_eq!(
        events,
        [
            "Data([97, 98])",
            "Gap(8)",
            "Data([120, 121, 122])",
            "Gap(7)"
        ]
    );
}

#[test]
fn conflicting_retransmissions_are_reported_and_the_first_copy_wins() {
    let mut s = HalfStream::default();
    let mut events = Vec::new();
    let limits = ReassemblyLimits::default();
    let mut sink = |c: Chunk<'_>| events.push(show(&c));
    let base = u32::MAX - 2; // across wraparound
    data(&mut s, base, b"abcd", &mut sink);
    data(&mut s, base, b"abcd", &mut sink); // same bytes: quiet
    s.push(
        base.wrapping_add(2),
        TcpFlags::default(),
        b"XdEF",
        Timestamp::default(),
        limits,
        &mut sink,
    );
    s.push(
        base.wrapping_add(10),
        TcpFlags::default(),
        b"jk",
        Timestamp::default(),
        limits,
        &mut sink,
    );
    s.push(
        base.wrapping_add(9),
        TcpFlags::default(),
        b"iJk",
        Timestamp::default(),
        limits,
        &mut sink,
    );
    assert_eq!(
        events,
        [
            "Data([97, 98, 99, 100])",
            "Conflict(2)",
            "Data([69, 70])",
            "Conflict(2)",
        ]
    );
}

/// The remembered bytes grow with what was delivered (a connection that carried one byte
/// does not cost 2 KiB), and still hold the last 2048 delivered however they came: byte by
/// byte across the ring's growth and the sequence numbers' wraparound.
#[test]
fn retransmissions_are_checked_against_a_ring_that_grows() {
    let mut s = HalfStream::default();
    let mut events = Vec::new();
    let mut sink = |c: Chunk<'_>| {
        if !matches!(c, Chunk::Data(..)) {
            events.push(show(&c));
        }
    };
    let base = u32::MAX - 1000;
    let byte = |i: u32| (i.wrapping_mul(31) % 251) as u8;
    for i in 0..3000u32 {
        data(&mut s, base.wrapping_add(i), &[byte(i)], &mut sink);
    }
    let again = |from: u32, to: u32| (from..to).map(byte).collect::<Vec<u8>>();
    // The last 2048 bytes, sent again the same: quiet.
    data(&mut s, base.wrapping_add(952), &again(952, 3000), &mut sink);
    // One of them changed, 2000 bytes back: reported.
    let mut changed = again(1000, 1010);
    changed[3] ^= 0xff;
    data(&mut s, base.wrapping_add(1000), &changed, &mut sink);
    // Older than what is remembered: not compared.
    let mut old = again(100, 110);
    old[0] ^= 0xff;
    data(&mut s, base.wrapping_add(100), &old, &mut sink);
    assert_eq!(events, ["Conflict(10)"]);
}

#[test]
fn an_ack_before_its_data_loses_nothing() {
    let mut s = HalfStream::default();
    let mut events = Vec::new();
    let mut sink = |c: Chunk<'_>| events.push(show(&c));
    data(&mut s, 100, b"ab", &mut sink);
    s.acked(105, &mut sink); // the capture shows the ACK first
    data(&mut s, 102, b"cde", &mut sink);
    s.flush(&mut sink);
    assert_eq!(events, ["Data([97, 98])", "Data([99, 100, 101])"]);
}

#[test]
fn fin_comes_after_all_data() {
    let mut s = HalfStream::default();
    let mut events = Vec::new();
    let limits = ReassemblyLimits::default();
    let syn = TcpFlags {
        syn: true,
        ..Default::default()
    };
    let fin = TcpFlags {
        fin: true,
        ack: true,
        ..Default::default()
    };
    let mut sink = |c: Chunk<'_>| events.push(show(&c));
    s.push(999, syn, b"", Timestamp::default(), limits, &mut sink);
    s.push(1003, fin, b"d", Timestamp::default(), limits, &mut sink);
    data(&mut s, 1000, b"abc", &mut sink);
    assert_eq!(events, ["Data([97, 98, 99])", "Data([100])", "Fin"]);
}

/// Segments cut by the snapshot length: each one's captured start, then its cut, in
/// stream order, out of order too; the FIN counts the cut bytes; a retransmission of a
/// cut segment brings nothing new.
#[test]
fn cut_segments_are_delivered_in_place() {
    let mut s = HalfStream::default();
    let mut events = Vec::new();
    let limits = ReassemblyLimits::default();
    let ts = Timestamp::default();
    let plain = TcpFlags::default();
    let fin = TcpFlags {
        fin: true,
        ..TcpFlags::default()
    };
    let mut sink = |c: Chunk<'_>| events.push(show(&c));
    let base = u32::MAX - 4; // across wraparound
    s.push_cut(base, plain, b"ab", 3, ts, limits, &mut sink); // ab + 3 cut
    s.push_cut(base.wrapping_add(9), plain, b"j", 2, ts, limits, &mut sink); // ahead: held
    s.push_cut(base.wrapping_add(5), plain, b"fg", 2, ts, limits, &mut sink); // fills
    s.push_cut(base, plain, b"ab", 3, ts, limits, &mut sink); // retransmitted
    s.push_cut(base.wrapping_add(12), fin, b"", 4, ts, limits, &mut sink); // header only
    s.flush(&mut sink);
    assert_eq!(
        events,
        [
            "Data([97, 98])",
            "Cut(3)",
            "Data([102, 103])",
            "Cut(2)",
            "Data([106])",
            "Cut(2)",
            "Cut(4)",
            "Fin",
        ]
    );
    assert!(s.held.is_empty());
}

/// Segments of a stream, each cut after a random length, delivered in a scrambled order
/// with retransmissions: every byte comes out once, in place, as itself or as part of a
/// cut; cuts cover exactly the bytes no copy captured; nothing is a gap.
#[test]
fn cuts_in_any_order_keep_every_byte_in_place() {
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n as u64) as usize
    };
    for round in 0..200 {
        let stream: Vec<u8> = (0..2000).map(|i| (i * 7 + round) as u8).collect();
        let base = u32::MAX - 700; // across wraparound
        // (offset, captured, cut)
        let mut segments = Vec::new();
        let mut at = 0;
        while at < stream.len() {
            let len = (1 + next(300)).min(stream.len() - at);
            let captured = if next(3) == 0 { len } else { next(len + 1) };
            segments.push((at, captured, len - captured));
            at += len;
        }
        let mut order: Vec<usize> = (0..segments.len()).collect();
        for _ in 0..segments.len() / 3 {
            order.push(next(segments.len()));
        }
        for i in (1..order.len()).rev() {
            order.swap(i, next(i + 1));
        }
        // The first segment first: the stream starts there.
        let first = order.iter().position(|&i| i == 0).unwrap();
        order.swap(0, first);
        let mut out: Vec<Option<u8>> = Vec::new();
        let mut gaps = 0;
        let mut half = HalfStream::default();
        let mut sink = |c: Chunk<'_>| match c {
            Chunk::Data(d, _) => out.extend(d.iter().map(|&b| Some(b))),
            Chunk::Cut(n) => out.extend((0..n).map(|_| None)),
            Chunk::Gap(_) => gaps += 1,
            Chunk::Fin | Chunk::Conflict(_) => {}
        };
        for &i in &order {
            let (offset, captured, cut) = segments[i];
            half.push_cut(
                base.wrapping_add(offset as u32),
                TcpFlags::default(),
                &stream[offset..offset + captured],
                cut as u32,
                Timestamp::default(),
                ReassemblyLimits::default(),
                &mut sink,
            );
        }
        half.flush(&mut sink);
        assert_eq!(gaps, 0, "round {round}");
        let want: Vec<Option<u8>> = segments
            .iter()
            .flat_map(|&(offset, captured, cut)| {
                let kept = stream[offset..offset + captured].iter().map(|&b| Some(b));
                kept.chain(std::iter::repeat_n(None, cut))
            })
            .collect();
        assert_eq!(out, want, "round {round}");
    }
}
