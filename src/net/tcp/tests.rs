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
    stream.flush(None, &mut sink);
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
    s.acked(101, None, &mut sink); // nothing new
    s.acked(105, None, &mut sink); // 102..105 may still come: the held data starts at 110
    s.acked(113, None, &mut sink); // the receiver has 102..110 and the capture has 110..113,
    // but captures reorder: the hole is given a few more packets to fill
    for _ in 0..ACKED_HOLE_PATIENCE {
        s.acked(113, None, &mut sink);
    }
    s.acked(120, None, &mut sink); // acked, never seen, nothing after them yet
    s.flush(None, &mut sink); // the connection ended without them
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
    s.acked(105, None, &mut sink); // the capture shows the ACK first
    data(&mut s, 102, b"cde", &mut sink);
    s.flush(None, &mut sink);
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
    let mut push = |s: &mut HalfStream, seq: u32, flags: TcpFlags, bytes: &[u8], cut: u32| {
        s.push_cut(
            seq,
            flags,
            bytes,
            cut,
            ts,
            limits,
            Backing::default(),
            &mut sink,
        )
    };
    let base = u32::MAX - 4; // across wraparound
    push(&mut s, base, plain, b"ab", 3); // ab + 3 cut
    push(&mut s, base.wrapping_add(9), plain, b"j", 2); // ahead: held
    push(&mut s, base.wrapping_add(5), plain, b"fg", 2); // fills
    push(&mut s, base, plain, b"ab", 3); // retransmitted
    push(&mut s, base.wrapping_add(12), fin, b"", 4); // header only
    s.flush(None, &mut sink);
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
                Backing::default(),
                &mut sink,
            );
        }
        half.flush(None, &mut sink);
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

/// Pushes a segment with flags.
fn flagged(
    s: &mut HalfStream,
    seq: u32,
    flags: TcpFlags,
    payload: &[u8],
    sink: &mut impl FnMut(Chunk<'_>),
) {
    s.push(
        seq,
        flags,
        payload,
        Timestamp::default(),
        ReassemblyLimits::default(),
        sink,
    );
}

/// What a stream reported besides its data.
fn not_data(events: &mut Vec<String>) -> impl FnMut(Chunk<'_>) + '_ {
    |c: Chunk<'_>| {
        if !matches!(c, Chunk::Data(..)) {
            events.push(show(&c));
        }
    }
}

/// Bytes delivered and not acknowledged yet are compared with any copy of them, a partial
/// overlap too ("XdEF" over "abcd": "X" differs from "c", "d" is the same); an ACK of part of
/// them forgets that part only.
#[test]
fn unacknowledged_bytes_are_compared_and_a_partial_ack_trims() {
    let mut s = HalfStream::default();
    let mut events = Vec::new();
    let mut sink = not_data(&mut events);
    let base = u32::MAX - 2; // across wraparound
    data(&mut s, base, b"abcd", &mut sink);
    data(&mut s, base.wrapping_add(2), b"XdEF", &mut sink); // 2 old bytes, one differs
    assert!(s.remembers());
    s.acked(base.wrapping_add(3), None, &mut sink); // "abc" acknowledged, "dEF" not
    data(&mut s, base, b"ABC", &mut sink); // acknowledged: not compared
    data(&mut s, base.wrapping_add(2), b"Cd", &mut sink); // "C" acked, "d" the same
    data(&mut s, base.wrapping_add(3), b"dEf", &mut sink); // unacked, "f" differs
    drop(sink);
    assert_eq!(events, ["Conflict(2)", "Conflict(3)"]);
}

/// Once everything delivered is acknowledged the ring is given back: the direction holds
/// nothing, a changed copy of acknowledged bytes is not compared and makes no ring.
#[test]
fn a_full_ack_frees_the_ring_and_acknowledged_copies_are_not_compared() {
    let mut s = HalfStream::default();
    let mut events = Vec::new();
    let mut sink = not_data(&mut events);
    data(&mut s, 1000, &[7; 1500], &mut sink);
    assert!(s.memory() >= 1500);
    s.acked(900, None, &mut sink); // from long before: covers nothing
    s.acked(1000, None, &mut sink); // covers nothing delivered
    assert!(s.memory() >= 1500);
    s.acked(2500, None, &mut sink);
    assert_eq!(s.memory(), 0);
    assert!(!s.remembers());
    data(&mut s, 1000, &[8; 1500], &mut sink); // a changed copy, acknowledged: quiet
    data(&mut s, 2000, &[9; 500], &mut sink);
    assert_eq!(s.memory(), 0, "an acknowledged copy allocates nothing");
    // New bytes after it are remembered again, and compared.
    data(&mut s, 2500, b"new", &mut sink);
    assert!(s.remembers());
    data(&mut s, 2400, &[0; 103], &mut sink); // 100 acked (not compared), "new" changed
    s.acked(2503, None, &mut sink);
    assert_eq!(s.memory(), 0);
    drop(sink);
    assert_eq!(events, ["Conflict(103)"]);
}

/// The ACK of the FIN (one past the last byte) acknowledges all the data: the ring is given
/// back and nothing is taken for a lost byte.
#[test]
fn the_ack_of_the_fin_frees_the_ring() {
    let mut s = HalfStream::default();
    let mut events = Vec::new();
    let mut sink = |c: Chunk<'_>| events.push(show(&c));
    let syn = TcpFlags {
        syn: true,
        ..Default::default()
    };
    let fin = TcpFlags {
        fin: true,
        ack: true,
        ..Default::default()
    };
    let isn = u32::MAX - 1; // the FIN's sequence number wraps to 2
    flagged(&mut s, isn, syn, b"", &mut sink);
    flagged(&mut s, isn.wrapping_add(1), fin, b"abc", &mut sink);
    assert!(s.remembers());
    s.acked(isn.wrapping_add(4), None, &mut sink); // all data, not the FIN
    assert!(!s.remembers());
    data(&mut s, isn.wrapping_add(1), b"ab", &mut sink);
    s.acked(isn.wrapping_add(5), None, &mut sink); // the FIN too
    s.flush(None, &mut sink);
    assert_eq!(s.memory(), 0);
    assert_eq!(events, ["Data([97, 98, 99])", "Fin"]);
}

/// An ACK seen before the data it acknowledges (captures reorder): the data is delivered but
/// not remembered, so a later copy of it is not compared; the bytes after the ACK are.
#[test]
fn data_acknowledged_before_it_is_seen_is_not_remembered() {
    let mut s = HalfStream::default();
    let mut events = Vec::new();
    let mut sink = not_data(&mut events);
    let base = u32::MAX - 1;
    data(&mut s, base, b"ab", &mut sink);
    s.acked(base.wrapping_add(4), None, &mut sink); // "ab" and 2 bytes not seen yet
    assert!(!s.remembers());
    data(&mut s, base.wrapping_add(2), b"cdef", &mut sink); // "cd" acked, "ef" not
    data(&mut s, base.wrapping_add(2), b"CDEF", &mut sink); // only "EF" compared
    drop(sink);
    assert_eq!(events, ["Conflict(4)"]);
    // Sized from what it holds, not the 2 KiB it may grow to.
    assert!(s.remembers() && s.memory() < 2048);
}

/// The ring keeps what was not acknowledged, at most the last 2048 bytes, however it grows:
/// segments of every size, acknowledged now and then, across wraparound; every copy of a
/// remembered byte is compared, every copy of an acknowledged or older one is not.
#[test]
fn the_ring_holds_exactly_the_unacknowledged_tail() {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |n: u32| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % u64::from(n)) as u32
    };
    let byte = |i: u32| (i.wrapping_mul(131) % 251) as u8;
    let base = u32::MAX - 5000;
    let mut s = HalfStream::default();
    let (mut sent, mut acked) = (0u32, 0u32);
    for _ in 0..2000 {
        let most = if next(4) == 0 { 3000 } else { 300 };
        let len = 1 + next(most);
        let stream: Vec<u8> = (sent..sent + len).map(byte).collect();
        data(&mut s, base.wrapping_add(sent), &stream, &mut |_| {});
        sent += len;
        if next(3) == 0 {
            acked = sent - next(sent - acked + 1);
            s.acked(base.wrapping_add(acked), None, &mut |_| {});
        }
        // One byte, changed: compared exactly when it is unacknowledged and in the last 2048.
        let at = sent - 1 - next(sent.min(5000));
        let remembered = at >= acked && sent - at <= 2048;
        let mut conflicts = 0;
        let changed = [byte(at) ^ 1];
        data(&mut s, base.wrapping_add(at), &changed, &mut |c| {
            conflicts += u32::from(matches!(c, Chunk::Conflict(1)));
        });
        assert_eq!(
            conflicts,
            u32::from(remembered),
            "byte {at} of {sent}, acked {acked}"
        );
        assert_eq!(s.remembers(), acked < sent);
        assert!(s.memory() <= 2048);
    }
}
