//! Property tests of the decoding stages, through the library.
//!
//! 1. Framing: random frame sequences (every length encoding, masks, RSV bits, FIN), encoded by
//!    an RFC 6455 5.2 encoder written here and cross-checked byte for byte against tungstenite's
//!    encoder, cut at random points (anywhere, and next to frame starts so headers are split):
//!    `FrameDecoder` gives back exactly the headers and unmasked payloads, whatever the cuts,
//!    the same as from one whole-buffer feed.
//! 2. TCP reassembly: a random stream, segmented, with duplicates, overlapping retransmissions
//!    and reordering within a window, sequence numbers wrapping past 2^32, with ACKs of what
//!    was seen: `HalfStream` delivers exactly the stream, no gap, FIN last.
//! 3. Robustness: random and mutated inputs to the frame decoder, `HalfStream`, `segment::decode`
//!    (every link type), the HTTP head parsers and the whole `Analyzer` (random packets,
//!    generated WebSocket sessions with damage, and mutated packets of the real fixtures) never
//!    panic, and the JSON output stays valid JSON Lines.
//!
//! Case counts are modest so the file runs in seconds in a debug build;
//! `WSNOOP_PROPTEST_SCALE=N` multiplies them for a longer hunt. Failures are not persisted to
//! files; proptest prints the minimal failing input.

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::sample::Index;

use wsnoop::analyzer::{Analyzer, AnalyzerOptions, FlowLimits, MidstreamOptions};
use wsnoop::context::WsOptions;
use wsnoop::event::{Event, EventSink, Timestamp, TsPrecision};
use wsnoop::http::handshake;
use wsnoop::net::link::LinkType;
use wsnoop::net::segment::{self, TcpFlags};
use wsnoop::net::tcp::{Backing, Chunk, HalfStream, ReassemblyLimits};
use wsnoop::output::{JsonWriter, TextWriter};
use wsnoop::wire::frame::{FrameHeader, Opcode};
use wsnoop::wire::http::{looks_like_request_start, looks_like_response_start};
use wsnoop::ws::frame::{FrameDecoder, FrameVisitor, unmask};

/// `cases` per property, times `$WSNOOP_PROPTEST_SCALE` (default 1) for longer hunts.
fn config(cases: u32) -> ProptestConfig {
    let scale: u32 = std::env::var("WSNOOP_PROPTEST_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    ProptestConfig {
        cases: cases.saturating_mul(scale.max(1)),
        failure_persistence: None,
        max_shrink_iters: 2048,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// A small deterministic generator for bulk bytes (proptest draws the seeds and the shapes).

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    fn range(&mut self, lo: u64, hi_inclusive: u64) -> u64 {
        lo + self.below(hi_inclusive - lo + 1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(n);
        out
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

fn pseudo_bytes(seed: u64, n: usize) -> Vec<u8> {
    Rng(seed).bytes(n)
}

// =============================================================================================
// 1. Framing

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LenForm {
    /// The shortest encoding, as RFC 6455 requires.
    Minimal,
    /// A 16-bit length even for a payload of at most 125 bytes.
    Wide16,
    /// A 64-bit length even for a payload of at most 65535 bytes.
    Wide64,
}

#[derive(Clone, Debug)]
struct FrameSpec {
    fin: bool,
    rsv: u8,
    opcode: u8,
    mask: Option<[u8; 4]>,
    len: usize,
    seed: u64,
    form: LenForm,
}

impl FrameSpec {
    fn payload(&self) -> Vec<u8> {
        pseudo_bytes(self.seed, self.len)
    }

    fn minimal_ext(&self) -> usize {
        match self.len {
            0..=125 => 0,
            126..=0xffff => 2,
            _ => 8,
        }
    }

    /// Extended length bytes on the wire.
    fn ext(&self) -> usize {
        match self.form {
            LenForm::Minimal => self.minimal_ext(),
            LenForm::Wide16 => 2,
            LenForm::Wide64 => 8,
        }
    }

    fn expected_header(&self) -> FrameHeader {
        FrameHeader {
            fin: self.fin,
            rsv: self.rsv,
            opcode: Opcode::from_nibble(self.opcode),
            mask: self.mask,
            len: self.len as u64,
            header_len: (2 + self.ext() + if self.mask.is_some() { 4 } else { 0 }) as u8,
            minimal_length: self.ext() == self.minimal_ext(),
            length_msb_set: false,
        }
    }
}

/// RFC 6455 5.2, written from the RFC: FIN, RSV1-3, opcode; MASK, 7-bit length or 126 + 16-bit
/// or 127 + 64-bit, network byte order; masking key; payload XORed with key[i mod 4].
fn encode(f: &FrameSpec, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push((u8::from(f.fin) << 7) | (f.rsv << 4) | f.opcode);
    let mask_bit = if f.mask.is_some() { 0x80 } else { 0 };
    let n = payload.len();
    match f.ext() {
        0 => out.push(mask_bit | n as u8),
        2 => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        _ => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match f.mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// The same frame through tungstenite's encoder (minimal lengths only).
fn tungstenite_encode(f: &FrameSpec, payload: &[u8]) -> Vec<u8> {
    use tungstenite::protocol::frame::coding::OpCode;
    use tungstenite::protocol::frame::{Frame, FrameHeader as TFrameHeader};
    let header = TFrameHeader {
        is_final: f.fin,
        rsv1: f.rsv & 4 != 0,
        rsv2: f.rsv & 2 != 0,
        rsv3: f.rsv & 1 != 0,
        opcode: OpCode::from(f.opcode),
        mask: f.mask,
    };
    let mut out = Vec::new();
    Frame::from_payload(header, tungstenite::Bytes::from(payload.to_vec()))
        .format(&mut out)
        .expect("tungstenite formats into a Vec");
    out
}

/// Collects what the decoder reports and checks the start / payload / end nesting.
#[derive(Default)]
struct Collect {
    frames: Vec<(FrameHeader, Vec<u8>)>,
    open: Option<(FrameHeader, Vec<u8>)>,
    errors: Vec<String>,
}

impl FrameVisitor for Collect {
    fn frame_start(&mut self, header: &FrameHeader) {
        if let Some((open, _)) = &self.open {
            self.errors
                .push(format!("frame_start {header:?} while {open:?} is open"));
        }
        self.open = Some((*header, Vec::new()));
    }

    fn frame_payload(&mut self, header: &FrameHeader, payload: &[u8]) {
        match &mut self.open {
            Some((open, buf)) if open == header => buf.extend_from_slice(payload),
            other => self.errors.push(format!(
                "frame_payload for {header:?} while open is {:?}",
                other.as_ref().map(|o| o.0)
            )),
        }
    }

    fn frame_end(&mut self, header: &FrameHeader) {
        match self.open.take() {
            Some((open, buf)) if open == *header => {
                if buf.len() as u64 != header.len {
                    self.errors.push(format!(
                        "frame_end after {} payload bytes of {header:?}",
                        buf.len()
                    ));
                }
                self.frames.push((open, buf));
            }
            other => self.errors.push(format!(
                "frame_end {header:?} while open is {:?}",
                other.map(|o| o.0)
            )),
        }
    }
}

/// Feeds `bytes` cut at `cuts` (sorted offsets) to a fresh decoder.
fn decode_in_pieces(bytes: &[u8], cuts: &[usize]) -> (Collect, FrameDecoder) {
    let mut decoder = FrameDecoder::new();
    let mut collect = Collect::default();
    let mut scratch = Vec::new();
    let mut from = 0;
    for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
        let cut = cut.min(bytes.len());
        if cut > from {
            decoder.feed(&bytes[from..cut], &mut scratch, &mut collect);
            from = cut;
        }
    }
    (collect, decoder)
}

fn payload_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        6 => 0usize..=125,
        2 => prop::sample::select(vec![0usize, 1, 2, 3, 4, 5, 124, 125, 126, 127, 65535, 65536]),
        3 => 126usize..=65535,
        1 => 65536usize..=140_000,
    ]
}

fn frame_spec(opcodes: Vec<u8>) -> impl Strategy<Value = FrameSpec> {
    (
        any::<bool>(),
        0u8..8,
        prop::sample::select(opcodes),
        prop::option::of(any::<[u8; 4]>()),
        payload_len(),
        any::<u64>(),
        prop_oneof![
            6 => Just(LenForm::Minimal),
            1 => Just(LenForm::Wide16),
            1 => Just(LenForm::Wide64),
        ],
    )
        .prop_map(|(fin, rsv, opcode, mask, len, seed, form)| {
            // Control frames carry at most 125 bytes (RFC 6455 5.5).
            let len = if opcode & 0x8 != 0 { len % 126 } else { len };
            let form = match form {
                LenForm::Wide16 if len > 0xffff => LenForm::Wide64,
                f => f,
            };
            FrameSpec {
                fin,
                rsv,
                opcode,
                mask,
                len,
                seed,
                form,
            }
        })
}

/// Where to cut the encoded stream.
#[derive(Clone, Debug)]
enum Cut {
    Anywhere(Index),
    /// `offset` bytes after the start of a frame: inside or just after its header.
    NearFrame(Index, u8),
}

fn cut() -> impl Strategy<Value = Cut> {
    prop_oneof![
        any::<Index>().prop_map(Cut::Anywhere),
        (any::<Index>(), 0u8..16).prop_map(|(i, o)| Cut::NearFrame(i, o)),
    ]
}

fn resolve_cuts(cuts: &[Cut], frame_starts: &[usize], total: usize) -> Vec<usize> {
    let mut out: Vec<usize> = cuts
        .iter()
        .map(|c| match c {
            Cut::Anywhere(i) => i.index(total + 1),
            Cut::NearFrame(i, o) => {
                (frame_starts[i.index(frame_starts.len())] + usize::from(*o)).min(total)
            }
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

proptest! {
    #![proptest_config(config(256))]

    /// Random frames, encoded, cut anywhere: decoded exactly, as from one whole feed.
    #[test]
    fn frames_survive_any_segmentation(
        specs in prop::collection::vec(frame_spec(vec![0, 1, 2, 8, 9, 10]), 1..8),
        cuts in prop::collection::vec(cut(), 0..40),
    ) {
        let mut stream = Vec::new();
        let mut starts = Vec::new();
        let mut payloads = Vec::new();
        for spec in &specs {
            let payload = spec.payload();
            let bytes = encode(spec, &payload);
            if spec.ext() == spec.minimal_ext() {
                // The independent encoder agrees with tungstenite's, byte for byte.
                let theirs = tungstenite_encode(spec, &payload);
                prop_assert!(bytes == theirs, "encoders differ for {:?}", spec);
            }
            // The header alone parses; any shorter prefix of it asks for more bytes.
            let want = spec.expected_header();
            let header_len = usize::from(want.header_len);
            prop_assert_eq!(FrameHeader::parse(&bytes[..header_len]), Some(want));
            prop_assert_eq!(FrameHeader::parse(&bytes), Some(want));
            for short in 0..header_len {
                prop_assert_eq!(FrameHeader::parse(&bytes[..short]), None);
            }
            prop_assert_eq!(FrameHeader::needed_len(bytes[1]), header_len);
            starts.push(stream.len());
            stream.extend_from_slice(&bytes);
            payloads.push(payload);
        }
        let expected: Vec<(FrameHeader, Vec<u8>)> = specs
            .iter()
            .map(FrameSpec::expected_header)
            .zip(payloads)
            .collect();

        let (whole, whole_decoder) = decode_in_pieces(&stream, &[]);
        prop_assert!(whole.errors.is_empty(), "{:?}", whole.errors);
        prop_assert!(whole.open.is_none());
        prop_assert!(whole_decoder.at_frame_boundary());
        prop_assert_eq!(whole.frames.len(), expected.len());
        for (i, (got, want)) in whole.frames.iter().zip(&expected).enumerate() {
            prop_assert_eq!(got.0, want.0, "frame {} header", i);
            prop_assert!(got.1 == want.1, "frame {} payload differs ({} bytes)", i, want.1.len());
        }

        let cut_at = resolve_cuts(&cuts, &starts, stream.len());
        let (pieces, decoder) = decode_in_pieces(&stream, &cut_at);
        prop_assert!(pieces.errors.is_empty(), "{:?}", pieces.errors);
        prop_assert!(pieces.open.is_none());
        prop_assert!(decoder.at_frame_boundary());
        prop_assert!(decoder.current_frame().is_none());
        prop_assert!(pieces.frames == whole.frames, "cut at {:?}: frames differ", cut_at);

        // Cut just before the end: the last frame is pending, not reported.
        if stream.len() > 1 {
            let (partial, decoder) = decode_in_pieces(&stream[..stream.len() - 1], &cut_at);
            prop_assert!(partial.errors.is_empty(), "{:?}", partial.errors);
            prop_assert_eq!(partial.frames.len(), expected.len() - 1);
            prop_assert!(!decoder.at_frame_boundary());
        }
    }

    /// Unmasking in any phase, split anywhere, equals XOR with key[i mod 4].
    #[test]
    fn unmask_matches_the_definition(
        data in prop::collection::vec(any::<u8>(), 0..300),
        key in any::<[u8; 4]>(),
        splits in prop::collection::vec(any::<Index>(), 0..6),
    ) {
        let want: Vec<u8> = data.iter().enumerate().map(|(i, b)| b ^ key[i % 4]).collect();
        let mut cut: Vec<usize> = splits.iter().map(|i| i.index(data.len() + 1)).collect();
        cut.push(data.len());
        cut.sort_unstable();
        let mut got = Vec::new();
        let mut from = 0;
        for c in cut {
            let mut piece = data[from..c].to_vec();
            unmask(&mut piece, key, from);
            got.extend(piece);
            from = c;
        }
        prop_assert_eq!(got, want);
    }
}

// =============================================================================================
// 2. TCP reassembly

#[derive(Default, Debug)]
struct Delivered {
    data: Vec<u8>,
    gaps: Vec<u64>,
    fins: usize,
    data_after_fin: bool,
    /// Bytes reported as retransmitted with different content.
    conflicts: u64,
}

impl Delivered {
    fn take(&mut self, chunk: Chunk<'_>) {
        match chunk {
            Chunk::Data(d, _) => {
                if self.fins > 0 {
                    self.data_after_fin = true;
                }
                self.data.extend_from_slice(d);
            }
            Chunk::Gap(n) => self.gaps.push(n),
            Chunk::Fin => self.fins += 1,
            Chunk::Conflict(n) => self.conflicts += n,
            Chunk::Cut(n) => panic!("{n} bytes called cut; no segment was"),
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// Segmented, duplicated, overlapping, reordered within a window, wrapping past 2^32: the
    /// stream comes out whole, in order, once, with no gap; FIN last.
    #[test]
    fn reassembly_restores_the_stream(
        len in 1usize..=30_000,
        seed in any::<u64>(),
        isn_back in 0u32..=40_000,
        mss in 1usize..=1460,
        window in 1usize..=8,
        dup_percent in 0u64..=30,
        overlaps in 0usize..=12,
        ack_percent in 0u64..=60,
        with_fin in any::<bool>(),
    ) {
        let mut rng = Rng(seed);
        let stream = rng.bytes(len);
        // Keep the packet count bounded for tiny MSS values on long streams.
        let mss = mss.max(len / 3000).max(1);
        // The SYN is at `isn`; data starts at isn + 1, wrapping past 2^32 for most cases.
        let isn = u32::MAX.wrapping_sub(isn_back);

        // (start, end) offsets into the stream, in sending order.
        let mut sent: Vec<(usize, usize)> = Vec::new();
        let mut at = 0;
        while at < len {
            let size = rng.range(1, mss as u64) as usize;
            let end = (at + size).min(len);
            sent.push((at, end));
            if rng.chance(dup_percent) {
                sent.push((at, end));
            }
            at = end;
        }
        for _ in 0..overlaps {
            // A retransmission of bytes already sent, crossing segment borders.
            let a = rng.below(len as u64) as usize;
            let b = (a + rng.range(1, 2 * mss as u64) as usize).min(len);
            let pos = rng.range(0, sent.len() as u64) as usize;
            sent.insert(pos, (a, b));
        }
        // Reordering: each packet moves back by less than `window` places.
        let mut keyed: Vec<(usize, (usize, usize))> = sent
            .iter()
            .enumerate()
            .map(|(i, &r)| (i + rng.below(window as u64) as usize, r))
            .collect();
        keyed.sort_by_key(|&(k, _)| k);
        let packets: Vec<(usize, usize)> = keyed.into_iter().map(|(_, r)| r).collect();

        let limits = ReassemblyLimits::default();
        let mut half = HalfStream::default();
        let mut got = Delivered::default();
        let mut deliver = |c: Chunk<'_>| got.take(c);
        let syn = TcpFlags { syn: true, ..TcpFlags::default() };
        half.push(isn, syn, &[], Timestamp::default(), limits, &mut deliver);

        let mut seen = vec![false; len];
        let mut contiguous = 0;
        let mut fin_seen = false;
        for &(a, b) in &packets {
            let fin = with_fin && b == len;
            let flags = TcpFlags { ack: true, fin, ..TcpFlags::default() };
            let seq = isn.wrapping_add(1).wrapping_add(a as u32);
            half.push(seq, flags, &stream[a..b], Timestamp::default(), limits, &mut deliver);
            seen[a..b].iter_mut().for_each(|s| *s = true);
            fin_seen |= fin;
            while contiguous < len && seen[contiguous] {
                contiguous += 1;
            }
            if rng.chance(ack_percent) {
                // The receiver acknowledges what it has: never more than the capture showed.
                let fin_ack = u32::from(fin_seen && contiguous == len);
                let ack = isn
                    .wrapping_add(1)
                    .wrapping_add(contiguous as u32)
                    .wrapping_add(fin_ack);
                half.acked(ack, None, &mut deliver);
            }
        }
        // Every byte arrived, so nothing may still be waiting, even before the flush.
        prop_assert_eq!(half.held_bytes(), 0);
        half.flush(None, &mut deliver);

        prop_assert!(got.gaps.is_empty(), "gaps {:?}", got.gaps);
        // Every retransmission carried the same bytes: none may be called a conflict.
        prop_assert_eq!(got.conflicts, 0);
        prop_assert_eq!(got.data.len(), stream.len());
        prop_assert!(got.data == stream, "delivered bytes differ from the stream");
        prop_assert_eq!(got.fins, usize::from(with_fin));
        prop_assert!(!got.data_after_fin);
        prop_assert_eq!(half.is_finished(), with_fin);
    }
}

/// One direction's reassembly, fed a script of segments, with each payload either copied as
/// it is delivered (a pipe, a live capture) or, for those `in_file`, read again from `file` at
/// its place when compared: what `Delivered` records, chunk by chunk.
fn reassemble_script(
    script: &[(u32, Vec<u8>, Option<u32>, bool)],
    isn: u32,
    file: Option<(&std::fs::File, &[u64])>,
) -> (Vec<u8>, Vec<u64>, Vec<u64>) {
    let limits = ReassemblyLimits {
        max_bytes: 4096,
        max_segments: 8,
    };
    let mut half = HalfStream::default();
    let (mut data, mut gaps, mut conflicts) = (Vec::new(), Vec::new(), Vec::new());
    let mut deliver = |c: Chunk<'_>| match c {
        Chunk::Data(d, _) => data.extend_from_slice(d),
        Chunk::Gap(n) | Chunk::Cut(n) => gaps.push(n),
        Chunk::Conflict(n) => conflicts.push(n),
        Chunk::Fin => {}
    };
    let syn = TcpFlags {
        syn: true,
        ..TcpFlags::default()
    };
    half.push(isn, syn, &[], Timestamp::default(), limits, &mut deliver);
    let ack = TcpFlags {
        ack: true,
        ..TcpFlags::default()
    };
    for (i, (offset, payload, acked, in_file)) in script.iter().enumerate() {
        let seq = isn.wrapping_add(1).wrapping_add(*offset);
        let backing = match file {
            Some((f, places)) => Backing {
                file: Some(f),
                at: in_file.then_some(places[i]),
            },
            None => Backing::default(),
        };
        half.push_cut(
            seq,
            ack,
            payload,
            0,
            Timestamp::default(),
            limits,
            backing,
            &mut deliver,
        );
        if let Some(acked) = acked {
            let through = isn.wrapping_add(1).wrapping_add(*acked);
            half.acked(through, file.map(|(f, _)| f), &mut deliver);
        }
    }
    half.flush(file.map(|(f, _)| f), &mut deliver);
    (data, gaps, conflicts)
}

proptest! {
    // Cheap cases, and a slip by one byte shows only in a few in a thousand.
    #![proptest_config(config(4096))]

    /// Delivered bytes remembered by their place in the capture file are compared with a
    /// retransmission exactly as a copy of them is: the same data, gaps and conflicts, for
    /// retransmissions with changed bytes, overlaps, reordering, partial acknowledgments,
    /// runs of small segments (more than a direction remembers places for) and segments the
    /// file does not hold as they are (reassembled IP datagrams) mixed in.
    #[test]
    fn retransmissions_compare_the_same_read_again_from_the_file(
        seed in any::<u64>(),
        isn_back in 0u32..=5_000,
        packets in 1usize..=60,
        mss in 1u64..=1460,
        changed_percent in 0u64..=40,
        ack_percent in 0u64..=50,
        outside_percent in 0u64..=30,
    ) {
        let mut rng = Rng(seed);
        let isn = u32::MAX.wrapping_sub(isn_back);
        let len = (packets as u64 * mss) as usize;
        let stream = rng.bytes(len.max(1));
        let mut script = Vec::new();
        let mut sent = 0usize;
        let mut acked = 0usize;
        for _ in 0..packets {
            let (start, end) = if sent > 0 && rng.chance(35) {
                // Again, from somewhere in the last 3 KiB, maybe past what was sent.
                let a = sent.saturating_sub(rng.range(1, 3000) as usize);
                (a, (a + rng.range(1, 2 * mss) as usize).min(stream.len()))
            } else if rng.chance(10) && sent < stream.len() {
                // Ahead of a hole: held until it fills, or given up on.
                let a = (sent + rng.range(1, mss) as usize).min(stream.len() - 1);
                (a, (a + rng.range(1, mss) as usize).min(stream.len()))
            } else {
                (sent, (sent + rng.range(1, mss) as usize).min(stream.len()))
            };
            if start >= end {
                continue;
            }
            let mut payload = stream[start..end].to_vec();
            if start < sent && rng.chance(changed_percent) {
                let i = rng.below(payload.len() as u64) as usize;
                payload[i] ^= 0x5a;
            }
            if start <= sent {
                sent = sent.max(end);
            }
            let ack = rng.chance(ack_percent).then(|| {
                acked = (acked + rng.range(0, (sent - acked) as u64) as usize).min(sent);
                acked as u32
            });
            script.push((start as u32, payload, ack, !rng.chance(outside_percent)));
        }
        // The capture file: each payload at its own place, with other bytes between.
        let mut file = tempfile::tempfile().expect("temp file");
        let mut places = Vec::new();
        let mut at = 0u64;
        for (_, payload, _, _) in &script {
            let filler_len = rng.range(0, 40) as usize;
            let filler = rng.bytes(filler_len);
            file.write_all(&filler).expect("write");
            at += filler.len() as u64;
            places.push(at);
            file.write_all(payload).expect("write");
            at += payload.len() as u64;
        }
        let copied = reassemble_script(&script, isn, None);
        let read_again = reassemble_script(&script, isn, Some((&file, &places)));
        prop_assert_eq!(&copied.0, &read_again.0);
        prop_assert_eq!(&copied.1, &read_again.1);
        prop_assert_eq!(&copied.2, &read_again.2);
    }
}

/// A retransmission compared with bytes the file holds: the same bytes are no conflict,
/// changed ones are, and a file cut short since (nothing to read again) compares nothing.
#[test]
fn a_retransmission_is_compared_with_the_file() {
    let mut file = tempfile::tempfile().expect("temp file");
    file.write_all(b"xxhello world").expect("write");
    let limits = ReassemblyLimits::default();
    let ack = TcpFlags {
        ack: true,
        ..TcpFlags::default()
    };
    let run = |again: &[u8], file: &std::fs::File| {
        let mut half = HalfStream::default();
        let mut conflicts = Vec::new();
        let mut deliver = |c: Chunk<'_>| {
            if let Chunk::Conflict(n) = c {
                conflicts.push(n);
            }
        };
        let backing = Backing {
            file: Some(file),
            at: Some(2),
        };
        half.push_cut(
            1000,
            ack,
            b"hello world",
            0,
            Timestamp::default(),
            limits,
            backing,
            &mut deliver,
        );
        let backing = Backing {
            file: Some(file),
            at: None,
        };
        half.push_cut(
            1006,
            ack,
            again,
            0,
            Timestamp::default(),
            limits,
            backing,
            &mut deliver,
        );
        conflicts
    };
    assert_eq!(run(b"world", &file), Vec::<u64>::new());
    assert_eq!(run(b"wOrld", &file), vec![5]);
    file.set_len(4).expect("truncate");
    assert_eq!(run(b"wOrld", &file), Vec::<u64>::new());
}

/// Walks what a `HalfStream` delivered, each gap advancing the position: every data byte must
/// be the stream's byte at that position. Returns the delivered positions.
fn check_positions(
    chunks: &[(Option<Vec<u8>>, u64)],
    stream: &[u8],
) -> Result<Vec<bool>, TestCaseError> {
    let mut at = 0usize;
    let mut delivered = vec![false; stream.len()];
    for (data, gap) in chunks {
        match data {
            Some(d) => {
                prop_assert!(
                    at + d.len() <= stream.len(),
                    "data past the end of the stream"
                );
                prop_assert!(
                    d[..] == stream[at..at + d.len()],
                    "bytes at offset {} differ",
                    at
                );
                delivered[at..at + d.len()]
                    .iter_mut()
                    .for_each(|x| *x = true);
                at += d.len();
            }
            None => {
                prop_assert!(*gap > 0, "empty gap");
                at += *gap as usize;
                prop_assert!(at <= stream.len(), "gap past the end of the stream");
            }
        }
    }
    Ok(delivered)
}

proptest! {
    #![proptest_config(config(256))]

    /// Segments lost by the capture (the receiver still gets them and ACKs them), reordering,
    /// duplicates, tight or default budgets: every delivered byte sits at its true position
    /// (gaps account exactly for what is missing). With the default budget and no ACKs, every
    /// byte the capture holds is delivered.
    #[test]
    fn reassembly_with_losses_is_position_exact(
        len in 1usize..=20_000,
        seed in any::<u64>(),
        isn_back in 0u32..=30_000,
        mss in 1usize..=1460,
        window in 1usize..=6,
        loss_percent in 0u64..=30,
        dup_percent in 0u64..=20,
        acks in any::<bool>(),
        ack_percent in 1u64..=60,
        tight in any::<bool>(),
    ) {
        let mut rng = Rng(seed);
        let stream = rng.bytes(len);
        let mss = mss.max(len / 2000).max(1);
        let isn = u32::MAX.wrapping_sub(isn_back);
        let limits = if tight {
            ReassemblyLimits { max_bytes: rng.range(1, 6000) as usize, max_segments: rng.range(1, 6) as usize }
        } else {
            ReassemblyLimits::default()
        };

        // (start, end, captured), in sending order; the first segment is always captured so
        // the stream's start is known from the SYN and the data alike.
        let mut sent: Vec<(usize, usize, bool)> = Vec::new();
        let mut at = 0;
        while at < len {
            let end = (at + rng.range(1, mss as u64) as usize).min(len);
            let captured = at == 0 || !rng.chance(loss_percent);
            sent.push((at, end, captured));
            if captured && rng.chance(dup_percent) {
                sent.push((at, end, true));
            }
            at = end;
        }
        let mut keyed: Vec<(usize, (usize, usize, bool))> = sent
            .iter()
            .enumerate()
            .map(|(i, &r)| (i + rng.below(window as u64) as usize, r))
            .collect();
        keyed.sort_by_key(|&(k, _)| k);
        let packets: Vec<(usize, usize, bool)> = keyed.into_iter().map(|(_, r)| r).collect();
        let use_acks = acks;

        let mut chunks: Vec<(Option<Vec<u8>>, u64)> = Vec::new();
        let mut fins = 0;
        let mut half = HalfStream::default();
        {
            let mut deliver = |c: Chunk<'_>| match c {
                Chunk::Data(d, _) => chunks.push((Some(d.to_vec()), 0)),
                Chunk::Gap(n) => chunks.push((None, n)),
                Chunk::Fin => fins += 1,
                Chunk::Conflict(n) => panic!("{n} bytes called a conflict; every copy was the same"),
                Chunk::Cut(n) => panic!("{n} bytes called cut; no segment was"),
            };
            half.push(isn, TcpFlags { syn: true, ..TcpFlags::default() }, &[], Timestamp::default(), limits, &mut deliver);
            let mut emitted = vec![false; len];
            let mut contiguous = 0;
            for &(a, b, captured) in &packets {
                if captured {
                    let seq = isn.wrapping_add(1).wrapping_add(a as u32);
                    let flags = TcpFlags { ack: true, ..TcpFlags::default() };
                    half.push(seq, flags, &stream[a..b], Timestamp::default(), limits, &mut deliver);
                    prop_assert!(half.held_bytes() <= limits.max_bytes);
                }
                emitted[a..b].iter_mut().for_each(|x| *x = true);
                while contiguous < len && emitted[contiguous] {
                    contiguous += 1;
                }
                if use_acks && rng.chance(ack_percent) {
                    // The receiver got the bytes even when the capture did not.
                    half.acked(isn.wrapping_add(1).wrapping_add(contiguous as u32), None, &mut deliver);
                }
            }
            half.flush(None, &mut deliver);
        }
        prop_assert_eq!(half.held_bytes(), 0);
        prop_assert_eq!(fins, 0);
        let delivered = check_positions(&chunks, &stream)?;
        if !tight && !use_acks {
            for &(a, b, captured) in &packets {
                if captured {
                    prop_assert!(
                        delivered[a..b].iter().all(|&x| x),
                        "captured bytes {}..{} were not delivered", a, b
                    );
                }
            }
        }
    }
}

// =============================================================================================
// 3. Never panics

proptest! {
    #![proptest_config(config(512))]

    /// Arbitrary bytes in arbitrary pieces: no panic, well-nested callbacks, never more payload
    /// than input, and the same frames as from one whole feed.
    #[test]
    fn frame_decoder_takes_any_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..3000),
        cuts in prop::collection::vec(any::<Index>(), 0..30),
    ) {
        let mut cut_at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        cut_at.sort_unstable();
        let (whole, whole_decoder) = decode_in_pieces(&bytes, &[]);
        let (pieces, decoder) = decode_in_pieces(&bytes, &cut_at);
        prop_assert!(whole.errors.is_empty(), "{:?}", whole.errors);
        prop_assert!(pieces.errors.is_empty(), "{:?}", pieces.errors);
        prop_assert!(pieces.frames == whole.frames);
        prop_assert_eq!(
            pieces.open.as_ref().map(|o| (o.0, o.1.clone())),
            whole.open.as_ref().map(|o| (o.0, o.1.clone()))
        );
        prop_assert_eq!(decoder.at_frame_boundary(), whole_decoder.at_frame_boundary());
        let consumed: u64 = whole
            .frames
            .iter()
            .map(|(h, p)| u64::from(h.header_len) + p.len() as u64)
            .sum();
        prop_assert!(consumed <= bytes.len() as u64);
    }
}

#[derive(Clone, Debug)]
enum SeqPick {
    /// Near the stream's base: overlaps, holes, retransmissions.
    Near(i32),
    Any(u32),
}

impl SeqPick {
    fn at(&self, base: u32) -> u32 {
        match *self {
            SeqPick::Near(d) => base.wrapping_add(d as u32),
            SeqPick::Any(s) => s,
        }
    }
}

fn seq_pick() -> impl Strategy<Value = SeqPick> {
    prop_oneof![
        5 => (-3000i32..6000).prop_map(SeqPick::Near),
        1 => any::<u32>().prop_map(SeqPick::Any),
    ]
}

#[derive(Clone, Debug)]
enum StreamOp {
    Push {
        seq: SeqPick,
        flags: u8,
        len: usize,
        seed: u64,
    },
    Ack(SeqPick),
    Flush,
}

fn stream_op() -> impl Strategy<Value = StreamOp> {
    prop_oneof![
        6 => (seq_pick(), any::<u8>(), 0usize..400, any::<u64>())
            .prop_map(|(seq, flags, len, seed)| StreamOp::Push { seq, flags, len, seed }),
        2 => seq_pick().prop_map(StreamOp::Ack),
        1 => Just(StreamOp::Flush),
    ]
}

proptest! {
    #![proptest_config(config(512))]

    /// Random segments, flags and ACKs, with tight or default limits: no panic, the budget
    /// holds, FIN at most once, never more bytes out than in.
    #[test]
    fn half_stream_takes_any_segments(
        base in any::<u32>(),
        ops in prop::collection::vec(stream_op(), 0..60),
        tight in any::<bool>(),
        max_bytes in 0usize..4000,
        max_segments in 0usize..12,
    ) {
        let limits = if tight {
            ReassemblyLimits { max_bytes, max_segments }
        } else {
            ReassemblyLimits::default()
        };
        let mut half = HalfStream::default();
        let mut got = Delivered::default();
        let mut pushed = 0usize;
        for op in &ops {
            let mut deliver = |c: Chunk<'_>| got.take(c);
            match op {
                StreamOp::Push { seq, flags, len, seed } => {
                    let payload = pseudo_bytes(*seed, *len);
                    let flags = TcpFlags {
                        syn: flags & 1 != 0,
                        ack: flags & 2 != 0,
                        fin: flags & 4 != 0,
                        rst: flags & 8 != 0,
                    };
                    half.push(seq.at(base), flags, &payload, Timestamp::default(), limits, &mut deliver);
                    pushed += payload.len();
                }
                StreamOp::Ack(ack) => half.acked(ack.at(base), None, &mut deliver),
                StreamOp::Flush => {
                    half.flush(None, &mut deliver);
                    prop_assert_eq!(half.held_bytes(), 0);
                }
            }
            prop_assert!(half.held_bytes() <= limits.max_bytes,
                "{} bytes held, limit {}", half.held_bytes(), limits.max_bytes);
            prop_assert!(got.fins <= 1, "{} FINs", got.fins);
            prop_assert!(got.data.len() <= pushed);
        }
        half.flush(None, &mut |c| got.take(c));
        prop_assert_eq!(half.held_bytes(), 0);
        prop_assert!(got.fins <= 1);
        prop_assert!(got.data.len() <= pushed);
    }
}

// ---------------------------------------------------------------------------------------------
// Real packets from the fixtures (classic pcap records read here)

struct Capture {
    name: &'static str,
    link: LinkType,
    packets: Vec<(Timestamp, Vec<u8>)>,
}

/// Reads a classic pcap file (either byte order, micro- or nanosecond).
fn read_pcap(path: &Path) -> (LinkType, Vec<(Timestamp, Vec<u8>)>) {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    assert!(
        data.len() >= 24,
        "{}: too short for a pcap header",
        path.display()
    );
    let magic = u32::from_le_bytes(data[0..4].try_into().unwrap());
    let (big_endian, nanos) = match magic {
        0xa1b2_c3d4 => (false, false),
        0xa1b2_3c4d => (false, true),
        0xd4c3_b2a1 => (true, false),
        0x4d3c_b2a1 => (true, true),
        _ => panic!("{}: not a classic pcap file", path.display()),
    };
    let word = |at: usize| {
        let b: [u8; 4] = data[at..at + 4].try_into().unwrap();
        if big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    };
    let dlt = word(20) & 0x0fff_ffff;
    let link = LinkType::from_dlt(dlt as i32, "fixture")
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut packets = Vec::new();
    let mut at = 24;
    while at + 16 <= data.len() {
        let secs = i64::from(word(at));
        let frac = word(at + 4);
        let incl = word(at + 8) as usize;
        let body = data
            .get(at + 16..at + 16 + incl)
            .unwrap_or_else(|| panic!("{}: record cut short", path.display()));
        let nanos = if nanos { frac } else { frac * 1000 };
        packets.push((Timestamp { secs, nanos }, body.to_vec()));
        at += 16 + incl;
    }
    assert_eq!(at, data.len(), "{}: trailing bytes", path.display());
    (link, packets)
}

fn captures() -> &'static [Capture] {
    static CAPTURES: OnceLock<Vec<Capture>> = OnceLock::new();
    CAPTURES.get_or_init(|| {
        let names = [
            "node-ws.pcap",
            "rejected-403.pcap",
            "node-deflate-nocontext.pcap",
            "ipv6.pcap",
            "python-deflate.pcap",
            "chromium-deflate.pcap",
            "signalling-8080.pcap",
        ];
        let out: Vec<Capture> = names
            .iter()
            .map(|name| {
                let (link, packets) = read_pcap(&common::fixtures_dir().join(name));
                assert!(!packets.is_empty(), "{name}: no packets");
                Capture {
                    name,
                    link,
                    packets,
                }
            })
            .collect();
        out
    })
}

/// A change to a list of packets.
#[derive(Clone, Debug)]
enum Edit {
    Flip {
        packet: Index,
        at: Index,
        xor: u8,
    },
    Overwrite {
        packet: Index,
        at: Index,
        bytes: Vec<u8>,
    },
    Truncate {
        packet: Index,
        len: Index,
    },
    Drop(Index),
    Duplicate(Index),
    Swap(Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<Index>(), any::<Index>(), 1u8..=255)
            .prop_map(|(packet, at, xor)| Edit::Flip { packet, at, xor }),
        2 => (any::<Index>(), any::<Index>(), prop::collection::vec(any::<u8>(), 1..24))
            .prop_map(|(packet, at, bytes)| Edit::Overwrite { packet, at, bytes }),
        1 => (any::<Index>(), any::<Index>())
            .prop_map(|(packet, len)| Edit::Truncate { packet, len }),
        2 => any::<Index>().prop_map(Edit::Drop),
        1 => any::<Index>().prop_map(Edit::Duplicate),
        2 => any::<Index>().prop_map(Edit::Swap),
    ]
}

fn apply_edits(packets: &mut Vec<(Timestamp, Vec<u8>)>, edits: &[Edit]) {
    for e in edits {
        if packets.is_empty() {
            return;
        }
        let n = packets.len();
        match e {
            Edit::Flip { packet, at, xor } => {
                let p = &mut packets[packet.index(n)].1;
                if !p.is_empty() {
                    let i = at.index(p.len());
                    p[i] ^= xor;
                }
            }
            Edit::Overwrite { packet, at, bytes } => {
                let p = &mut packets[packet.index(n)].1;
                if !p.is_empty() {
                    let i = at.index(p.len());
                    for (j, b) in bytes.iter().enumerate() {
                        if let Some(slot) = p.get_mut(i + j) {
                            *slot = *b;
                        }
                    }
                }
            }
            Edit::Truncate { packet, len } => {
                let p = &mut packets[packet.index(n)].1;
                let keep = len.index(p.len() + 1);
                p.truncate(keep);
            }
            Edit::Drop(i) => {
                packets.remove(i.index(n));
            }
            Edit::Duplicate(i) => {
                let i = i.index(n);
                let copy = packets[i].clone();
                packets.insert(i + 1, copy);
            }
            Edit::Swap(i) => {
                let i = i.index(n);
                if i + 1 < n {
                    packets.swap(i, i + 1);
                }
            }
        }
    }
}

const LINKS: [LinkType; 5] = [
    LinkType::Ethernet,
    LinkType::Null,
    LinkType::Raw,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
];

/// Bytes to decode: random, or a real packet with damage.
#[derive(Clone, Debug)]
enum PacketBytes {
    Random(Vec<u8>),
    Real {
        capture: Index,
        packet: Index,
        edits: Vec<Edit>,
    },
}

fn packet_bytes() -> impl Strategy<Value = PacketBytes> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200).prop_map(PacketBytes::Random),
        (
            any::<Index>(),
            any::<Index>(),
            prop::collection::vec(edit(), 0..4)
        )
            .prop_map(|(capture, packet, edits)| PacketBytes::Real {
                capture,
                packet,
                edits
            }),
    ]
}

impl PacketBytes {
    fn bytes(&self) -> Vec<u8> {
        match self {
            PacketBytes::Random(b) => b.clone(),
            PacketBytes::Real {
                capture,
                packet,
                edits,
            } => {
                let c = &captures()[capture.index(captures().len())];
                let p = c.packets[packet.index(c.packets.len())].clone();
                let mut one = vec![p];
                apply_edits(&mut one, edits);
                one.pop().map(|p| p.1).unwrap_or_default()
            }
        }
    }
}

proptest! {
    #![proptest_config(config(1024))]

    /// segment::decode on random and damaged packets, as every link type: no panic, and a
    /// segment's payload is inside the packet.
    #[test]
    fn decode_takes_any_packet(input in packet_bytes()) {
        let data = input.bytes();
        for link in LINKS {
            if let Ok(segment) = segment::decode(link, &data) {
                let range = data.as_ptr_range();
                let p = segment.payload.as_ptr_range();
                prop_assert!(
                    segment.payload.is_empty()
                        || (range.start <= p.start && p.end <= range.end),
                    "payload outside the packet"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP heads

const HTTP_TOKENS: &[&str] = &[
    "GET ",
    "HEAD ",
    "POST ",
    "/chat",
    "/",
    "?a=b",
    " HTTP/1.1",
    " HTTP/1.0",
    "HTTP/1.1 ",
    "101",
    "200",
    "403",
    " Switching Protocols",
    " OK",
    "\r\n",
    "\n",
    "\r\n\r\n",
    ": ",
    ":",
    ",",
    ";",
    " ",
    "Host",
    "Upgrade",
    "websocket",
    "Connection",
    "upgrade",
    "keep-alive",
    "Sec-WebSocket-Key",
    "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Accept",
    "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
    "Sec-WebSocket-Version",
    "13",
    "Sec-WebSocket-Protocol",
    "chat, superchat",
    "Sec-WebSocket-Extensions",
    "permessage-deflate",
    "client_max_window_bits",
    "server_max_window_bits=8",
    "server_no_context_takeover",
    "Content-Length",
    "0",
    "12",
    "-1",
    "99999999999999999999999",
    "Transfer-Encoding",
    "chunked",
    "Origin",
    "User-Agent",
    "\u{e9}",
    "\u{2713}",
    "\0",
    "\t",
];

#[derive(Clone, Debug)]
enum HeadPiece {
    Token(Index),
    Bytes(Vec<u8>),
}

fn http_head() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        prop::collection::vec(
            prop_oneof![
                8 => any::<Index>().prop_map(HeadPiece::Token),
                1 => prop::collection::vec(any::<u8>(), 1..6).prop_map(HeadPiece::Bytes),
            ],
            0..60,
        )
        .prop_map(|pieces| {
            let mut out = Vec::new();
            for p in pieces {
                match p {
                    HeadPiece::Token(i) => {
                        out.extend_from_slice(HTTP_TOKENS[i.index(HTTP_TOKENS.len())].as_bytes())
                    }
                    HeadPiece::Bytes(b) => out.extend(b),
                }
            }
            out
        }),
    ]
}

proptest! {
    #![proptest_config(config(1024))]

    /// parse_request / parse_response on any bytes: no panic; a complete head lies inside the
    /// buffer; the accept check takes whatever was parsed.
    #[test]
    fn http_parsers_take_any_bytes(buf in http_head(), method in prop::sample::select(vec!["GET", "HEAD", ""])) {
        let request = handshake::parse_request(&buf);
        let response = handshake::parse_response(&buf, method);
        if let Ok(Some((_, n))) = &request {
            prop_assert!(*n > 0 && *n <= buf.len());
        }
        if let Ok(Some((_, n))) = &response {
            prop_assert!(*n > 0 && *n <= buf.len());
        }
        if let (Ok(Some((req, _))), Ok(Some((resp, _)))) = (&request, &response) {
            let _ = handshake::accept_verdict(req, resp);
        }
        let text = String::from_utf8_lossy(&buf);
        let _ = handshake::key_is_valid(&text);
        let _ = handshake::expected_accept(&text);
        let _ = looks_like_request_start(&buf);
        let _ = looks_like_response_start(&buf);
    }
}

// ---------------------------------------------------------------------------------------------
// The whole pipeline

/// Analyzer settings from generous to tight, so limits, eviction and truncation are exercised.
fn analyzer_options(variant: u8, server_ports: &[u16]) -> AnalyzerOptions {
    let mut o = AnalyzerOptions::default();
    match variant % 7 {
        0 => {}
        1 => {
            o.ws = WsOptions {
                max_payload: 7,
                max_message: 50,
                ..WsOptions::default()
            };
        }
        2 => {
            o.reassembly = ReassemblyLimits {
                max_bytes: 3000,
                max_segments: 4,
            };
        }
        3 => {
            o.flows = FlowLimits {
                max_flows: 1,
                idle_timeout_secs: 1,
            };
        }
        4 => {
            o.midstream = MidstreamOptions {
                ws_ports: server_ports.to_vec(),
                heuristics: true,
            };
        }
        5 => {
            o.midstream.heuristics = true;
            o.report_connections = true;
            o.ws = WsOptions {
                max_payload: 0,
                max_frames: Some(3),
                show_frames: false,
                ..WsOptions::default()
            };
        }
        _ => {
            o.ws = WsOptions {
                max_payload: 100_000_000,
                show_messages: false,
                ..WsOptions::default()
            };
            o.report_connections = true;
        }
    }
    o
}

/// Runs packets through an analyzer with a closure sink that writes JSON and text output;
/// checks the JSON is valid JSON Lines. Returns the number of events of each type.
fn run_pipeline(
    link: LinkType,
    options: AnalyzerOptions,
    packets: &[(Timestamp, Vec<u8>)],
) -> Result<BTreeMap<String, usize>, TestCaseError> {
    let mut analyzer = Analyzer::new(options);
    let mut json = JsonWriter::new(Vec::new(), TsPrecision::Nano);
    let mut text = TextWriter::new(Vec::new(), TsPrecision::Micro, true);
    let mut events = 0usize;
    {
        let mut sink = |e: &Event<'_>| {
            // Connection events are for `wsnoop diagnose` only: the writers skip them.
            if !matches!(e, Event::Connection(_)) {
                events += 1;
            }
            json.event(e);
            text.event(e);
        };
        for (ts, data) in packets {
            analyzer.packet(link, *ts, data, &mut sink);
        }
        analyzer.finish(&mut sink);
    }
    let out = json.into_inner();
    let out = String::from_utf8(out)
        .map_err(|e| TestCaseError::fail(format!("JSON output is not UTF-8: {e}")))?;
    let mut lines = 0;
    let mut types = BTreeMap::new();
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| TestCaseError::fail(format!("invalid JSON line ({e}): {line}")))?;
        let Some(kind) = v.get("type").and_then(|t| t.as_str()) else {
            return Err(TestCaseError::fail(format!("no type: {line}")));
        };
        *types.entry(kind.to_string()).or_insert(0) += 1;
        if kind == "message" && v["compressed"] == true && v["undecodable"] == false {
            // Counted apart so tests can see that inflating was exercised.
            *types.entry("message+inflated".to_string()).or_insert(0) += 1;
        }
        lines += 1;
    }
    prop_assert_eq!(lines, events, "one JSON line per event");
    let _ = text.into_inner();
    Ok(types)
}

/// Random timestamps: mostly increasing by milliseconds, sometimes jumping past the idle
/// timeout, sometimes stepping back a little (multi-queue captures do).
fn timestamps(seed: u64, n: usize) -> Vec<Timestamp> {
    let mut rng = Rng(seed);
    let mut t: i128 = 1_700_000_000 * 1_000_000_000 + i128::from(rng.below(1_000_000_000));
    (0..n)
        .map(|_| {
            match rng.below(100) {
                0..=1 => t += i128::from(rng.range(301, 900)) * 1_000_000_000,
                2..=4 => t -= i128::from(rng.below(1_000_000_000)),
                _ => t += i128::from(rng.below(50_000_000)),
            }
            Timestamp {
                secs: (t / 1_000_000_000) as i64,
                nanos: (t % 1_000_000_000) as u32,
            }
        })
        .collect()
}

// Generated WebSocket sessions -----------------------------------------------------------------

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

const OFFERS: &[&str] = &[
    "",
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
    "Sec-WebSocket-Extensions: permessage-deflate\r\nSec-WebSocket-Protocol: chat\r\n",
];

const SERVER_EXTENSIONS: &[&str] = &[
    "permessage-deflate",
    "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
    "permessage-deflate; server_max_window_bits=8",
    "permessage-deflate; server_max_window_bits=7",
    "permessage-deflate; server_max_window_bits=16",
    "permessage-deflate; client_max_window_bits=abc",
    "permessage-deflate; server_max_window_bits",
    "permessage-deflate, permessage-deflate",
    "x-webkit-deflate-frame",
    "permessage-deflate; unknown_param=1",
];

fn request(rng: &mut Rng) -> Vec<u8> {
    match rng.below(10) {
        0 => { let n = rng.range(0, 200) as usize; rng.bytes(n) },
        1 => b"HEAD /x HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(),
        2 => format!(
            "GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nContent-Length: {}\r\n\r\n",
            rng.below(20)
        )
        .into_bytes(),
        _ => format!(
            "GET /chat?{} HTTP/1.1\r\nHost: example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{}\r\n",
            rng.below(1000),
            rng.pick(OFFERS)
        )
        .into_bytes(),
    }
}

/// The response, and whether it negotiated permessage-deflate.
fn response(rng: &mut Rng) -> (Vec<u8>, bool) {
    match rng.below(12) {
        0 => (
            {
                let n = rng.range(0, 200) as usize;
                rng.bytes(n)
            },
            false,
        ),
        1 => (
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 19\r\n\r\nOrigin not allowed\n".to_vec(),
            false,
        ),
        2 => (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                .to_vec(),
            false,
        ),
        3 => (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: bm90IHRoZSByaWdodCBvbmU=\r\n\r\n"
                .to_vec(),
            false,
        ),
        4..=7 => {
            let ext = *rng.pick(SERVER_EXTENSIONS);
            (
                format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                     Sec-WebSocket-Accept: {ACCEPT}\r\nSec-WebSocket-Extensions: {ext}\r\n\r\n"
                )
                .into_bytes(),
                true,
            )
        }
        _ => (
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {ACCEPT}\r\n\r\n"
            )
            .into_bytes(),
            false,
        ),
    }
}

/// Raw DEFLATE with a sync flush and the trailing 00 00 ff ff removed (RFC 7692 7.2.1),
/// keeping the compressor's window between messages (context takeover).
fn deflate_message(encoder: &mut flate2::write::DeflateEncoder<Vec<u8>>, data: &[u8]) -> Vec<u8> {
    encoder.write_all(data).expect("deflate");
    encoder.flush().expect("deflate flush");
    let mut out = std::mem::take(encoder.get_mut());
    if out.ends_with(&[0, 0, 0xff, 0xff]) {
        out.truncate(out.len() - 4);
    }
    out
}

/// One direction's frames after the handshake.
fn frames(rng: &mut Rng, client: bool, deflate: bool, count: usize) -> Vec<u8> {
    let mut encoder =
        flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    let mut out = Vec::new();
    let mut in_message = false;
    for _ in 0..count {
        let kind = rng.below(100);
        let masked = if rng.chance(92) { client } else { !client };
        let mask = masked.then(|| {
            let k = rng.next().to_le_bytes();
            [k[0], k[1], k[2], k[3]]
        });
        let len = match rng.below(20) {
            0 => rng.range(126, 70_000) as usize,
            1..=3 => rng.range(126, 3000) as usize,
            _ => rng.below(126) as usize,
        };
        let (opcode, rsv, fin, payload): (u8, u8, bool, Vec<u8>) = match kind {
            // A compressed or plain data message, maybe fragmented.
            0..=44 => {
                let opcode = if in_message && rng.chance(80) {
                    0
                } else {
                    *rng.pick(&[1u8, 2])
                };
                let text: Vec<u8> = (0..len)
                    .map(|_| *rng.pick(b"hello world the quick brown fox \xc3\xa9\xe2\x9c\x93"))
                    .collect();
                let data = if rng.chance(50) { text } else { rng.bytes(len) };
                let compress = deflate && rng.chance(80);
                let payload = if compress {
                    deflate_message(&mut encoder, &data)
                } else {
                    data
                };
                let rsv = if compress && opcode != 0 { 4 } else { 0 };
                (opcode, rsv, rng.chance(70), payload)
            }
            45..=59 => (
                1,
                0,
                true,
                rng.bytes(len.min(125)).iter().map(|b| b & 0x7f).collect(),
            ),
            60..=67 => (9, 0, true, rng.bytes(len.min(125))),
            68..=74 => (10, 0, true, rng.bytes(len.min(125))),
            75..=82 => {
                // A close frame: code and reason, or something malformed.
                let mut p = Vec::new();
                match rng.below(4) {
                    0 => {}
                    1 => p.push(3),
                    _ => {
                        let code = *rng.pick(&[
                            1000u16, 1001, 1002, 1005, 1006, 1015, 2999, 3000, 4999, 5000, 0,
                        ]);
                        p.extend_from_slice(&code.to_be_bytes());
                        let reason = {
                            let n = rng.below(40) as usize;
                            rng.bytes(n)
                        };
                        if rng.chance(50) {
                            p.extend(reason.iter().map(|b| b'a' + b % 26));
                        } else {
                            p.extend(reason);
                        }
                    }
                }
                (8, 0, true, p)
            }
            83..=92 => {
                // Rule breakers: reserved opcodes, RSV bits, long or fragmented control frames.
                let opcode = rng.below(16) as u8;
                (opcode, rng.below(8) as u8, rng.chance(50), rng.bytes(len))
            }
            _ => {
                // Garbage between frames.
                out.extend({
                    let n = rng.range(1, 20) as usize;
                    rng.bytes(n)
                });
                continue;
            }
        };
        if opcode < 8 {
            in_message = !fin;
        }
        let spec = FrameSpec {
            fin,
            rsv,
            opcode,
            mask,
            len: payload.len(),
            seed: 0,
            form: if rng.chance(5) {
                LenForm::Wide64
            } else {
                LenForm::Minimal
            },
        };
        out.extend(encode(&spec, &payload));
    }
    out
}

fn tcp_packet(
    v6: bool,
    src: u16,
    dst: u16,
    seq: u32,
    ack: Option<u32>,
    flags: (bool, bool, bool),
    payload: &[u8],
) -> Vec<u8> {
    use etherparse::PacketBuilder;
    let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let ip = if v6 {
        let mut lo = [0u8; 16];
        lo[15] = 1;
        eth.ipv6(lo, lo, 64)
    } else {
        eth.ipv4([127, 0, 0, 1], [127, 0, 0, 1], 64)
    };
    let mut tcp = ip.tcp(src, dst, seq, 65535);
    let (syn, fin, rst) = flags;
    if syn {
        tcp = tcp.syn();
    }
    if let Some(ack) = ack {
        tcp = tcp.ack(ack);
    }
    if fin {
        tcp = tcp.fin();
    }
    if rst {
        tcp = tcp.rst();
    }
    let mut out = Vec::new();
    tcp.write(&mut out, payload).expect("building a packet");
    out
}

/// A whole TCP connection carrying an upgrade and frames, in capture order.
fn session(seed: u64, client_port: u16, server_port: u16, frames_each: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng(seed);
    let v6 = rng.chance(30);
    let (c, s) = (client_port, server_port);
    let c_isn = rng.next() as u32;
    let s_isn = if rng.chance(30) {
        u32::MAX - rng.below(3000) as u32
    } else {
        rng.next() as u32
    };
    let (resp, deflate) = response(&mut rng);
    let mut c2s = request(&mut rng);
    let c_head = c2s.len();
    c2s.extend(frames(&mut rng, true, deflate, frames_each));
    let mut s2c = resp;
    let s_head = s2c.len();
    s2c.extend(frames(&mut rng, false, deflate, frames_each));

    let mut packets = Vec::new();
    packets.push(tcp_packet(v6, c, s, c_isn, None, (true, false, false), &[]));
    packets.push(tcp_packet(
        v6,
        s,
        c,
        s_isn,
        Some(c_isn.wrapping_add(1)),
        (true, false, false),
        &[],
    ));
    let (mut c_next, mut s_next) = (c_isn.wrapping_add(1), s_isn.wrapping_add(1));
    packets.push(tcp_packet(
        v6,
        c,
        s,
        c_next,
        Some(s_next),
        (false, false, false),
        &[],
    ));

    let mss = rng.range(1, 1460) as usize;
    let segments = |bytes: &[u8], head: usize, rng: &mut Rng| -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let mut end = (at + rng.range(1, mss as u64) as usize).min(bytes.len());
            if at < head && end > head && rng.chance(50) {
                end = head;
            }
            out.push((at, end));
            at = end;
        }
        out
    };
    let c_segs = segments(&c2s, c_head, &mut rng);
    let s_segs = segments(&s2c, s_head, &mut rng);
    let (mut ci, mut si) = (0, 0);
    // The request goes first, then the response, then both directions interleave.
    while ci < c_segs.len() || si < s_segs.len() {
        let c_in_head = ci < c_segs.len() && c_segs[ci].0 < c_head;
        let s_in_head = si < s_segs.len() && s_segs[si].0 < s_head;
        let pick_client = c_in_head
            || (!s_in_head && ci < c_segs.len() && (si >= s_segs.len() || rng.chance(50)));
        if pick_client {
            let (a, b) = c_segs[ci];
            packets.push(tcp_packet(
                v6,
                c,
                s,
                c_next,
                Some(s_next),
                (false, false, false),
                &c2s[a..b],
            ));
            c_next = c_next.wrapping_add((b - a) as u32);
            ci += 1;
        } else {
            let (a, b) = s_segs[si];
            packets.push(tcp_packet(
                v6,
                s,
                c,
                s_next,
                Some(c_next),
                (false, false, false),
                &s2c[a..b],
            ));
            s_next = s_next.wrapping_add((b - a) as u32);
            si += 1;
        }
        if rng.chance(15) {
            // A pure ACK, one way or the other.
            if rng.chance(50) {
                packets.push(tcp_packet(
                    v6,
                    c,
                    s,
                    c_next,
                    Some(s_next),
                    (false, false, false),
                    &[],
                ));
            } else {
                packets.push(tcp_packet(
                    v6,
                    s,
                    c,
                    s_next,
                    Some(c_next),
                    (false, false, false),
                    &[],
                ));
            }
        }
    }
    match rng.below(4) {
        0 => {}
        1 => packets.push(tcp_packet(
            v6,
            s,
            c,
            s_next,
            Some(c_next),
            (false, false, true),
            &[],
        )),
        _ => {
            packets.push(tcp_packet(
                v6,
                c,
                s,
                c_next,
                Some(s_next),
                (false, true, false),
                &[],
            ));
            packets.push(tcp_packet(
                v6,
                s,
                c,
                s_next,
                Some(c_next.wrapping_add(1)),
                (false, true, false),
                &[],
            ));
            packets.push(tcp_packet(
                v6,
                c,
                s,
                c_next.wrapping_add(1),
                Some(s_next.wrapping_add(1)),
                (false, false, false),
                &[],
            ));
        }
    }
    packets
}

proptest! {
    #![proptest_config(config(256))]

    /// Random bytes as packets, and random packets with valid Ethernet/IP/TCP headers.
    #[test]
    fn analyzer_takes_random_packets(
        packets in prop::collection::vec(
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..120),
                (any::<bool>(), prop::sample::select(vec![80u16, 8080, 40000, 40001]),
                 prop::sample::select(vec![80u16, 8080, 40000, 40001]),
                 any::<u32>(), any::<Option<u32>>(), any::<(bool, bool, bool)>(),
                 prop::collection::vec(any::<u8>(), 0..300))
                    .prop_map(|(v6, sp, dp, seq, ack, flags, payload)| {
                        tcp_packet(v6, sp, dp, seq, ack, flags, &payload)
                    }),
            ],
            0..40,
        ),
        ts_seed in any::<u64>(),
        variant in any::<u8>(),
        link in prop::sample::select(LINKS.to_vec()),
    ) {
        let ts = timestamps(ts_seed, packets.len());
        let packets: Vec<(Timestamp, Vec<u8>)> = ts.into_iter().zip(packets).collect();
        run_pipeline(LinkType::Ethernet, analyzer_options(variant, &[80, 8080]), &packets)?;
        run_pipeline(link, analyzer_options(variant, &[80, 8080]), &packets)?;
    }

    /// Generated WebSocket sessions (valid and broken handshakes, compressed and plain frames,
    /// rule breakers), one to three at once, damaged by edits, with odd timestamps.
    #[test]
    fn analyzer_takes_damaged_sessions(
        seeds in prop::collection::vec(any::<u64>(), 1..=3),
        frames_each in 0usize..14,
        interleave_seed in any::<u64>(),
        edits in prop::collection::vec(edit(), 0..12),
        ts_seed in any::<u64>(),
        variant in any::<u8>(),
    ) {
        let server_port = if variant % 2 == 0 { 8080 } else { 9001 };
        let mut sessions: Vec<std::collections::VecDeque<Vec<u8>>> = seeds
            .iter()
            .enumerate()
            .map(|(i, &seed)| session(seed, 40_000 + i as u16, server_port, frames_each).into())
            .collect();
        let mut rng = Rng(interleave_seed);
        let mut merged = Vec::new();
        while sessions.iter().any(|s| !s.is_empty()) {
            let live: Vec<usize> = (0..sessions.len()).filter(|&i| !sessions[i].is_empty()).collect();
            let i = *rng.pick(&live);
            merged.push(sessions[i].pop_front().unwrap());
        }
        let ts = timestamps(ts_seed, merged.len());
        let mut packets: Vec<(Timestamp, Vec<u8>)> = ts.into_iter().zip(merged).collect();
        apply_edits(&mut packets, &edits);
        run_pipeline(LinkType::Ethernet, analyzer_options(variant, &[server_port]), &packets)?;
    }

    /// The real fixture captures, damaged: bytes flipped or overwritten, packets cut, dropped,
    /// duplicated and swapped.
    #[test]
    fn analyzer_takes_damaged_fixtures(
        capture in any::<Index>(),
        edits in prop::collection::vec(edit(), 0..24),
        variant in any::<u8>(),
    ) {
        let c = &captures()[capture.index(captures().len())];
        let mut packets = c.packets.clone();
        apply_edits(&mut packets, &edits);
        let ports = [9001, 9002, 9003, 9004, 9006, 9007, 9008, 8080];
        let events = run_pipeline(c.link, analyzer_options(variant, &ports), &packets)?;
        if edits.is_empty() && variant % 7 == 0 {
            prop_assert!(
                events.get("message").is_some_and(|&n| n > 0),
                "{}: no messages from the undamaged capture: {:?}", c.name, events
            );
        }
    }
}

/// The undamaged fixtures through the library: events come out, and the JSON is valid.
#[test]
fn fixtures_run_through_the_library() {
    for c in captures() {
        for variant in 0..7 {
            let ports = [9001, 9002, 9003, 9004, 9006, 9007, 9008, 8080];
            let events = run_pipeline(c.link, analyzer_options(variant, &ports), &c.packets)
                .unwrap_or_else(|e| panic!("{} variant {variant}: {e}", c.name));
            assert!(
                events.values().sum::<usize>() > 0,
                "{} variant {variant}: no events",
                c.name
            );
            if variant == 0 {
                // Undamaged and with default settings, every fixture decodes cleanly.
                assert!(
                    events.get("message").is_some_and(|&n| n > 0),
                    "{}: {events:?}",
                    c.name
                );
                assert_eq!(events.get("anomaly"), None, "{}: anomalies", c.name);
            }
        }
    }
}

/// The generated sessions reach the WebSocket layer: most handshakes upgrade and carry
/// messages, close frames and anomalies, so the damaged-session property tests deep code.
#[test]
fn generated_sessions_reach_the_websocket_layer() {
    let mut totals: BTreeMap<String, usize> = BTreeMap::new();
    let mut with_messages = 0;
    let runs = 64;
    for seed in 0..runs {
        let packets: Vec<(Timestamp, Vec<u8>)> = session(seed, 40_000, 8080, 10)
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let ts = Timestamp {
                    secs: 1_700_000_000,
                    nanos: i as u32 * 1000,
                };
                (ts, p)
            })
            .collect();
        let events = run_pipeline(LinkType::Ethernet, AnalyzerOptions::default(), &packets)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        if events.get("message").is_some_and(|&n| n > 0) {
            with_messages += 1;
        }
        for (k, v) in events {
            *totals.entry(k).or_insert(0) += v;
        }
    }
    eprintln!("{runs} generated sessions: {totals:?}, {with_messages} with messages");
    assert!(
        with_messages >= runs / 3,
        "only {with_messages} of {runs} sessions had messages: {totals:?}"
    );
    for kind in [
        "handshake",
        "frame",
        "message",
        "message+inflated",
        "close",
        "anomaly",
    ] {
        assert!(
            totals.get(kind).is_some_and(|&n| n > 0),
            "no {kind} events: {totals:?}"
        );
    }
}

// =============================================================================================
// 4. Clean sessions decode to exactly what was sent

/// Extensions a 101 may answer with that a window-15 compressor can honour, and whether each
/// side must start every message with a fresh window (client, server).
const CLEAN_EXTENSIONS: &[(&str, bool, bool)] = &[
    ("", false, false),
    ("permessage-deflate", false, false),
    (
        "permessage-deflate; client_max_window_bits=15",
        false,
        false,
    ),
    (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        true,
        true,
    ),
    (
        "permessage-deflate; client_no_context_takeover",
        true,
        false,
    ),
];

#[derive(Clone, Debug)]
struct MessageSpec {
    text: bool,
    len: usize,
    seed: u64,
    /// Compressed (RSV1) when the extension was negotiated.
    compress: bool,
    fragments: usize,
    /// A ping between the first and second fragment (RFC 6455 5.4 allows it).
    ping_inside: bool,
}

fn message_spec() -> impl Strategy<Value = MessageSpec> {
    (
        any::<bool>(),
        prop_oneof![
            8 => 0usize..200,
            3 => 200usize..5000,
            1 => 5000usize..70_000,
        ],
        any::<u64>(),
        any::<bool>(),
        prop_oneof![4 => Just(1usize), 3 => 2usize..=5],
        any::<bool>(),
    )
        .prop_map(
            |(text, len, seed, compress, fragments, ping_inside)| MessageSpec {
                text,
                len,
                seed,
                compress,
                fragments,
                ping_inside,
            },
        )
}

impl MessageSpec {
    /// The application payload: UTF-8 text (multi-byte characters included) or random bytes.
    fn data(&self) -> Vec<u8> {
        let mut rng = Rng(self.seed);
        if self.text {
            const WORDS: &[&str] = &[
                "hello",
                " ",
                "wörld",
                "✓",
                "😀",
                "the quick brown fox",
                "é",
                "\n",
            ];
            let mut s = String::new();
            while s.len() < self.len {
                let word: &&str = rng.pick(WORDS);
                s.push_str(word);
            }
            s.into_bytes()
        } else {
            rng.bytes(self.len)
        }
    }
}

/// What one message event showed.
#[derive(Debug, PartialEq, Eq)]
struct SeenMessage {
    text: bool,
    data: Vec<u8>,
    len: u64,
    frames: u64,
    compressed: bool,
}

/// Encodes one direction's messages; returns the bytes and the messages as they must be seen.
fn clean_direction(
    messages: &[MessageSpec],
    client: bool,
    deflate: bool,
    fresh_window: bool,
    rng: &mut Rng,
) -> (Vec<u8>, Vec<SeenMessage>) {
    let new_encoder =
        || flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    let mut encoder = new_encoder();
    let mut out = Vec::new();
    let mut seen = Vec::new();
    let frame =
        |out: &mut Vec<u8>, rng: &mut Rng, fin: bool, rsv: u8, opcode: u8, payload: &[u8]| {
            let mask = client.then(|| {
                let k = rng.next().to_le_bytes();
                [k[0], k[1], k[2], k[3]]
            });
            let spec = FrameSpec {
                fin,
                rsv,
                opcode,
                mask,
                len: payload.len(),
                seed: 0,
                form: LenForm::Minimal,
            };
            out.extend(encode(&spec, payload));
        };
    for m in messages {
        let data = m.data();
        let compress = deflate && m.compress;
        let wire = if compress {
            if fresh_window {
                encoder = new_encoder();
            }
            deflate_message(&mut encoder, &data)
        } else {
            data.clone()
        };
        let mut cuts: Vec<usize> = (1..m.fragments)
            .map(|_| rng.range(0, wire.len() as u64) as usize)
            .collect();
        cuts.sort_unstable();
        let mut from = 0;
        for (i, to) in cuts
            .into_iter()
            .chain(std::iter::once(wire.len()))
            .enumerate()
        {
            let opcode = if i > 0 {
                0
            } else if m.text {
                1
            } else {
                2
            };
            let rsv = if i == 0 && compress { 4 } else { 0 };
            frame(
                &mut out,
                rng,
                to == wire.len() && i + 1 == m.fragments,
                rsv,
                opcode,
                &wire[from..to],
            );
            if i == 0 && m.fragments > 1 && m.ping_inside {
                frame(&mut out, rng, true, 0, 9, b"ping!");
            }
            from = to;
        }
        seen.push(SeenMessage {
            text: m.text,
            len: data.len() as u64,
            data,
            frames: m.fragments as u64,
            compressed: compress,
        });
    }
    let mut close = 1000u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"bye");
    frame(&mut out, rng, true, 0, 8, &close);
    (out, seen)
}

proptest! {
    #![proptest_config(config(128))]

    /// A valid session (handshake, messages plain or compressed with or without context
    /// takeover, fragmented with pings between fragments, close both ways, FIN both ways) in
    /// random TCP segments: every message comes out exactly as sent, in order, the close is
    /// clean, and nothing is flagged.
    #[test]
    fn clean_sessions_decode_exactly(
        extension in 0..CLEAN_EXTENSIONS.len(),
        client_messages in prop::collection::vec(message_spec(), 0..8),
        server_messages in prop::collection::vec(message_spec(), 0..8),
        seed in any::<u64>(),
        mss in 1usize..=1460,
        v6 in any::<bool>(),
        shuffle_percent in 0u64..=30,
    ) {
        let (ext, client_fresh, server_fresh) = CLEAN_EXTENSIONS[extension];
        let deflate = !ext.is_empty();
        let mut rng = Rng(seed);
        let offer = if deflate {
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        } else {
            ""
        };
        let answer = if deflate {
            format!("Sec-WebSocket-Extensions: {ext}\r\n")
        } else {
            String::new()
        };
        let mut c2s = format!(
            "GET /clean HTTP/1.1\r\nHost: example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
        )
        .into_bytes();
        let mut s2c = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {ACCEPT}\r\n{answer}\r\n"
        )
        .into_bytes();
        let (c_head, s_head) = (c2s.len(), s2c.len());
        let (c_frames, c_want) = clean_direction(&client_messages, true, deflate, client_fresh, &mut rng);
        let (s_frames, s_want) = clean_direction(&server_messages, false, deflate, server_fresh, &mut rng);
        c2s.extend(c_frames);
        s2c.extend(s_frames);

        // TCP: handshake, the request, the response, then both directions interleaved.
        let (c, s) = (45_000u16, 8080u16);
        let c_isn = rng.next() as u32;
        let s_isn = u32::MAX - rng.below(5000) as u32;
        let mut packets = vec![
            tcp_packet(v6, c, s, c_isn, None, (true, false, false), &[]),
            tcp_packet(v6, s, c, s_isn, Some(c_isn.wrapping_add(1)), (true, false, false), &[]),
        ];
        let (mut c_next, mut s_next) = (c_isn.wrapping_add(1), s_isn.wrapping_add(1));
        let (mut c_at, mut s_at) = (0usize, 0usize);
        while c_at < c2s.len() || s_at < s2c.len() {
            let client_turn = c_at < c_head
                || (s_at >= s_head
                    && c_at < c2s.len()
                    && (s_at == s2c.len() || rng.chance(50)));
            let size = rng.range(1, mss as u64) as usize;
            if client_turn {
                let end = (c_at + size).min(c2s.len());
                packets.push(tcp_packet(v6, c, s, c_next, Some(s_next), (false, false, false), &c2s[c_at..end]));
                c_next = c_next.wrapping_add((end - c_at) as u32);
                c_at = end;
            } else {
                let end = (s_at + size).min(s2c.len());
                packets.push(tcp_packet(v6, s, c, s_next, Some(c_next), (false, false, false), &s2c[s_at..end]));
                s_next = s_next.wrapping_add((end - s_at) as u32);
                s_at = end;
            }
        }
        // Retransmissions and reordering within one direction (packets [3..] carry data after
        // the SYNs; the request stays first so the handshake is seen in order).
        let mut i = 3;
        while i + 1 < packets.len() {
            // The TCP source port, after Ethernet and the IP header.
            let port = if v6 { 14 + 40 } else { 14 + 20 };
            let same_way = packets[i][port..port + 2] == packets[i + 1][port..port + 2];
            let src = u16::from_be_bytes([packets[i][port], packets[i][port + 1]]);
            prop_assert!(src == c || src == s, "source port {} at offset {}", src, port);
            if rng.chance(shuffle_percent) {
                if rng.chance(50) {
                    let copy = packets[i].clone();
                    packets.insert(i + 1, copy);
                } else if same_way {
                    packets.swap(i, i + 1);
                }
                i += 1;
            }
            i += 1;
        }
        packets.push(tcp_packet(v6, c, s, c_next, Some(s_next), (false, true, false), &[]));
        packets.push(tcp_packet(v6, s, c, s_next, Some(c_next.wrapping_add(1)), (false, true, false), &[]));
        packets.push(tcp_packet(v6, c, s, c_next.wrapping_add(1), Some(s_next.wrapping_add(1)), (false, false, false), &[]));

        let options = AnalyzerOptions {
            ws: WsOptions { max_payload: 100_000_000, ..WsOptions::default() },
            ..AnalyzerOptions::default()
        };
        let mut analyzer = Analyzer::new(options);
        let mut got: [Vec<SeenMessage>; 2] = [Vec::new(), Vec::new()];
        let mut problems: Vec<String> = Vec::new();
        let mut closes = Vec::new();
        let mut handshakes = Vec::new();
        {
            let mut sink = |e: &Event<'_>| match e {
                Event::Message(m) => {
                    let data = match m.payload {
                        wsnoop::event::Payload::Text(t) => t.as_bytes().to_vec(),
                        wsnoop::event::Payload::Data(d) => d.to_vec(),
                    };
                    if m.truncated || m.incomplete || m.undecodable {
                        problems.push(format!(
                            "{} message: truncated {} incomplete {} undecodable {}",
                            m.dir.name(), m.truncated, m.incomplete, m.undecodable
                        ));
                    }
                    if m.text && matches!(m.payload, wsnoop::event::Payload::Data(_)) {
                        problems.push(format!("{} text message shown as data", m.dir.name()));
                    }
                    got[m.dir.index()].push(SeenMessage {
                        text: m.text,
                        data,
                        len: m.len,
                        frames: m.frames,
                        compressed: m.compressed,
                    });
                }
                Event::Anomaly(a) => problems.push(format!("anomaly {:?}: {}", a.kind, a.detail)),
                Event::Close(c) => closes.push((c.code, c.reply_code, c.replied, c.clean)),
                Event::Handshake(h) => handshakes.push((h.upgraded, h.response.extensions.clone())),
                _ => {}
            };
            let mut ts = Timestamp { secs: 1_700_000_000, nanos: 0 };
            for p in &packets {
                ts.nanos += 1000;
                analyzer.packet(LinkType::Ethernet, ts, p, &mut sink);
            }
            analyzer.finish(&mut sink);
        }
        prop_assert!(problems.is_empty(), "{:?}", problems);
        prop_assert_eq!(handshakes.len(), 1);
        prop_assert!(handshakes[0].0, "not upgraded");
        let want_ext: Vec<String> = if deflate {
            ext.split(',').map(|e| e.trim().to_string()).collect()
        } else {
            Vec::new()
        };
        prop_assert_eq!(&handshakes[0].1, &want_ext);
        for (dir, want) in [("c2s", &c_want), ("s2c", &s_want)] {
            let got = &got[usize::from(dir == "s2c")];
            prop_assert_eq!(got.len(), want.len(), "{} message count", dir);
            for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
                prop_assert!(
                    g == w,
                    "{} message {}: got text {} len {} frames {} compressed {} ({} bytes), \
                     sent text {} len {} frames {} compressed {} ({} bytes), payloads {}",
                    dir, i, g.text, g.len, g.frames, g.compressed, g.data.len(),
                    w.text, w.len, w.frames, w.compressed, w.data.len(),
                    if g.data == w.data { "equal" } else { "differ" }
                );
            }
        }
        prop_assert_eq!(closes, vec![(Some(1000), Some(1000), true, true)]);
    }
}
