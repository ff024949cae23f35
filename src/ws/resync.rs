//! Finding frames in bytes whose framing is unknown: after a gap, on a connection picked up
//! mid-stream, or on one nobody said is WebSocket (the probe). Every heuristic and limit of
//! that search is here: what a believable header looks like, how many frames in a row confirm
//! one, and how many bytes are held while looking.

use crate::wire::frame::{FrameHeader, Opcode};

/// Bytes held while looking for the next frame after a gap.
const RESYNC_BUFFER: usize = 64 * 1024;

/// The evidence that frames resume at a segment start after a gap: two frames back to back,
/// or one that ends exactly where the captured bytes do.
const RESYNC_CHAIN: ChainRule = ChainRule {
    min_frames: 2,
    min_frames_at_end: 1,
};

/// The evidence needed at an arbitrary offset, once no segment start worked.
const RESYNC_CHAIN_ANYWHERE: ChainRule = ChainRule {
    min_frames: 3,
    min_frames_at_end: 2,
};

/// The declared payload length believed of a frame found without knowing the framing; a
/// resync also believes up to `--max-message`.
pub(super) const PLAUSIBLE_LEN: u64 = 1 << 24;

/// Bytes a probe (or a direction picked up mid-stream) holds per side while hunting; beyond it
/// the window slides past the offsets already ruled out, so a side that starts inside a long
/// payload locks on at the next frame.
const PROBE_LIMIT: usize = 16 * 1024;

/// Bytes a probe holds per side while a plausible header at a segment start announces a frame
/// longer than `PROBE_LIMIT`: the chain is confirmed once the frame after it arrives.
const PROBE_HOLD: usize = 256 * 1024;

/// Bytes a probe hunts through per side before deciding the connection is not WebSocket: a
/// capture may start inside a message of a few MiB.
const PROBE_SPAN: u64 = 4 << 20;

/// Plausible frames in a row that make a connection WebSocket without a handshake.
const PROBE_CHAIN: ChainRule = ChainRule {
    min_frames: 3,
    min_frames_at_end: 2,
};

/// What a frame header must look like to be believed when looking for frames in bytes whose
/// framing is unknown: after a gap in the stream, or on a connection picked up mid-stream.
#[derive(Clone, Copy, Debug)]
pub struct Plausible {
    /// Whether frames must be masked (client) or not (server); `None` accepts either.
    pub masked: Option<bool>,
    /// RSV1 may start a data message (permessage-deflate negotiated or possibly so).
    pub rsv1_allowed: bool,
    /// Larger declared payloads are not believed.
    pub max_len: u64,
}

impl Plausible {
    pub fn accepts(&self, h: &FrameHeader) -> bool {
        let rsv_ok = h.rsv == 0
            || (h.rsv == 4
                && self.rsv1_allowed
                && matches!(h.opcode, Opcode::Text | Opcode::Binary));
        let control_ok = !h.opcode.is_control() || (h.fin && h.len <= 125);
        // An empty continuation that does not end its message carries nothing: legal, but
        // no sender makes one, while every run of zero bytes in a payload reads as a chain of
        // them.
        let empty_fragment = h.opcode == Opcode::Continuation && !h.fin && h.len == 0;
        !empty_fragment
            && !matches!(h.opcode, Opcode::Reserved(_))
            && rsv_ok
            && control_ok
            && h.minimal_length
            && !h.length_msb_set
            && h.len <= self.max_len
            && self.masked.is_none_or(|m| m == h.mask.is_some())
    }
}

/// How much evidence confirms that frames start at an offset.
#[derive(Clone, Copy, Debug)]
pub struct ChainRule {
    /// Plausible frames back to back, each header exactly where the previous frame ends.
    pub min_frames: usize,
    /// Fewer frames also confirm when the last one ends exactly at the end of the data.
    pub min_frames_at_end: usize,
}

/// What a scan for a chain of frames found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainScan {
    /// A confirmed chain starts here.
    Found(usize),
    /// The first offset not ruled out starts plausible frames that run past the data: more
    /// bytes will tell.
    Undecided(usize),
    /// Every offset offered was ruled out.
    None,
}

/// Whether a chain of plausible frames starts at `offset`: `Some(true)` confirmed,
/// `Some(false)` ruled out, `None` when the data ends first.
fn chain_at(buf: &[u8], offset: usize, rule: &Plausible, chain: &ChainRule) -> Option<bool> {
    let mut pos = offset;
    let mut frames = 0;
    loop {
        let h = FrameHeader::parse(buf.get(pos..)?)?;
        if !rule.accepts(&h) {
            return Some(false);
        }
        frames += 1;
        let end = (pos + usize::from(h.header_len))
            .saturating_add(usize::try_from(h.len).unwrap_or(usize::MAX));
        if frames >= chain.min_frames || (end == buf.len() && frames >= chain.min_frames_at_end) {
            return Some(true);
        }
        if end >= buf.len() {
            return None;
        }
        pos = end;
    }
}

/// Tries `offsets` in order and reports the first that is not ruled out. Callers offer TCP
/// segment starts first: senders usually begin frames there, and random bytes that happen to
/// parse as frames are far rarer at a few chosen offsets than at every one.
pub fn scan_chain(
    buf: &[u8],
    offsets: impl IntoIterator<Item = usize>,
    rule: &Plausible,
    chain: &ChainRule,
) -> ChainScan {
    for offset in offsets {
        match chain_at(buf, offset, rule, chain) {
            Some(true) => return ChainScan::Found(offset),
            Some(false) => {}
            None => return ChainScan::Undecided(offset),
        }
    }
    ChainScan::None
}

/// Bytes whose framing is unknown, with the offsets where TCP segments began in them.
#[derive(Debug, Default)]
pub struct FrameHunt {
    buf: Vec<u8>,
    starts: Vec<usize>,
}

impl FrameHunt {
    /// Segment starts remembered; later ones are still scanned, just not first.
    const MAX_STARTS: usize = 256;

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// What it keeps on the heap, for the memory budget.
    pub fn memory(&self) -> usize {
        self.buf.capacity() + self.starts.capacity() * std::mem::size_of::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Appends one TCP segment's bytes.
    pub fn push(&mut self, segment: &[u8]) {
        if self.starts.len() < Self::MAX_STARTS {
            self.starts.push(self.buf.len());
        }
        self.buf.extend_from_slice(segment);
    }

    /// Looks for frames at segment starts.
    pub fn scan(&self, rule: &Plausible, chain: &ChainRule) -> ChainScan {
        scan_chain(&self.buf, self.starts.iter().copied(), rule, chain)
    }

    /// Looks for frames at every offset.
    pub fn scan_everywhere(&self, rule: &Plausible, chain: &ChainRule) -> ChainScan {
        scan_chain(&self.buf, 0..self.buf.len(), rule, chain)
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// The bytes as the segments they arrived in.
    pub fn segments(&self) -> impl Iterator<Item = &[u8]> {
        let ends = self.starts.iter().skip(1).copied().chain([self.buf.len()]);
        self.starts
            .iter()
            .zip(ends)
            .map(|(&start, end)| &self.buf[start..end])
    }

    /// The probe's evidence, for bytes whose framing nothing told: a chain of [`PROBE_CHAIN`]
    /// at a segment start, by any of `rules`; returns where it starts and by which rule. A
    /// single header is never believed: while a long frame's chain is open its bytes are held
    /// (up to [`PROBE_HOLD`]), and past [`PROBE_LIMIT`] the segment starts ruled out are slid
    /// past. A chain confirmed at a later start wins over an earlier one still open: a header
    /// read in a payload often announces a long frame, three frames in a row rarely follow.
    fn hunt(&mut self, rules: &[Plausible]) -> Option<(usize, usize)> {
        // The earliest start still open whose frame fits in what may be held.
        let mut keep_from = self.len();
        for &start in &self.starts {
            let mut open = false;
            for (which, rule) in rules.iter().enumerate() {
                match chain_at(&self.buf, start, rule, &PROBE_CHAIN) {
                    Some(true) => return Some((start, which)),
                    Some(false) => {}
                    None => open = true,
                }
            }
            if open && self.len() - start <= PROBE_HOLD {
                keep_from = keep_from.min(start);
            }
        }
        if self.len() > PROBE_LIMIT {
            self.drop_before(keep_from);
        }
        None
    }

    /// Drops the bytes before `offset`, keeping the segment starts after it.
    fn drop_before(&mut self, offset: usize) {
        let cut = offset.min(self.buf.len());
        self.buf.drain(..cut);
        self.starts.retain(|&s| s >= cut);
        for s in &mut self.starts {
            *s -= cut;
        }
    }

    /// Keeps only the last bytes, which may hold the start of a header.
    pub(super) fn keep_tail(&mut self, keep: usize) {
        let cut = self.buf.len().saturating_sub(keep);
        self.buf.drain(..cut);
        self.starts.clear();
    }
}

/// The first bytes of each side of a TCP connection nobody said is WebSocket (A to B and B to
/// A: which side is the client is not known yet), held while looking for frames in them.
#[derive(Debug, Default)]
pub struct Probe {
    sides: [FrameHunt; 2],
    /// Bytes hunted through per side, held or slid past.
    hunted: [u64; 2],
}

/// What a probe concluded from the bytes so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeVerdict {
    /// No chain of frames yet; more bytes will tell.
    Undecided,
    /// A side sent over `PROBE_SPAN` (4 MiB) without a chain of frames.
    NotWebSocket,
    /// A chain of frames: masked ones are the client's.
    WebSocket { a_is_client: bool },
}

impl Probe {
    /// Holds one side's bytes and looks for a chain of frames in them.
    pub fn push(&mut self, from_a: bool, bytes: &[u8]) -> ProbeVerdict {
        let i = usize::from(!from_a);
        self.hunted[i] += bytes.len() as u64;
        if self.hunted[i] > PROBE_SPAN {
            return ProbeVerdict::NotWebSocket;
        }
        let side = &mut self.sides[i];
        side.push(bytes);
        let rule = |masked| Plausible {
            masked: Some(masked),
            rsv1_allowed: true,
            max_len: PLAUSIBLE_LEN,
        };
        match side.hunt(&[rule(true), rule(false)]) {
            Some((_, which)) => ProbeVerdict::WebSocket {
                a_is_client: (which == 0) == from_a,
            },
            None => ProbeVerdict::Undecided,
        }
    }

    /// What both sides' bytes keep on the heap, for the memory budget.
    pub fn memory(&self) -> usize {
        self.sides.iter().map(FrameHunt::memory).sum()
    }

    /// The bytes held, both sides.
    pub fn held(&self) -> usize {
        self.sides.iter().map(FrameHunt::len).sum()
    }

    /// What each side sent: A to B, then B to A.
    pub fn into_sides(self) -> [FrameHunt; 2] {
        self.sides
    }
}

/// Looking for where frames resume in one direction.
#[derive(Debug, Default)]
pub(super) struct Resync {
    hunt: FrameHunt,
    /// The direction was picked up mid-stream (no handshake seen, or `--ws-port`): nothing
    /// says frames were ever here, so it needs the probe's evidence. After a gap in a
    /// direction whose frames were followed, less will do.
    pickup: bool,
}

impl Resync {
    /// For a direction picked up mid-stream.
    pub(super) fn pickup() -> Resync {
        Resync {
            pickup: true,
            ..Resync::default()
        }
    }

    /// For a direction whose frames were followed until bytes were lost.
    pub(super) fn after_gap() -> Resync {
        Resync::default()
    }

    pub(super) fn memory(&self) -> usize {
        self.hunt.memory()
    }

    /// The bytes held while looking.
    pub(super) fn held(&self) -> usize {
        self.hunt.len()
    }

    /// Starts over (bytes were lost while looking), with the same evidence.
    pub(super) fn restart(&mut self) {
        *self = Resync {
            pickup: self.pickup,
            ..Resync::default()
        };
    }

    /// Adds one segment's bytes; once frames are found, returns all bytes from the first frame.
    pub(super) fn push(&mut self, input: &[u8], rule: &Plausible) -> Option<Vec<u8>> {
        if self.pickup {
            if input.is_empty() {
                return None;
            }
            self.hunt.push(input);
            let (start, _) = self.hunt.hunt(std::slice::from_ref(rule))?;
            let mut bytes = std::mem::take(&mut self.hunt).into_bytes();
            bytes.drain(..start);
            return Some(bytes);
        }
        self.push_after_gap(input, rule)
    }

    fn push_after_gap(&mut self, mut input: &[u8], rule: &Plausible) -> Option<Vec<u8>> {
        while !input.is_empty() {
            let room = RESYNC_BUFFER.saturating_sub(self.hunt.len()).max(1);
            let (now, later) = input.split_at(room.min(input.len()));
            input = later;
            self.hunt.push(now);
            let full = self.hunt.len() >= RESYNC_BUFFER;
            let start = match self.hunt.scan(rule, &RESYNC_CHAIN) {
                ChainScan::Found(offset) => Some(offset),
                // A frame too long to confirm within the buffer: believe its header.
                ChainScan::Undecided(offset) if full => Some(offset),
                ChainScan::None if full => {
                    match self.hunt.scan_everywhere(rule, &RESYNC_CHAIN_ANYWHERE) {
                        ChainScan::Found(offset) => Some(offset),
                        _ => {
                            // Nothing here starts a frame; keep what may hold a header's start.
                            self.hunt.keep_tail(13);
                            None
                        }
                    }
                }
                _ => None,
            };
            if let Some(start) = start {
                let mut bytes = std::mem::take(&mut self.hunt).into_bytes();
                bytes.drain(..start);
                bytes.extend_from_slice(input);
                return Some(bytes);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::frame::tests::encode;
    use super::*;

    /// A side whose first bytes are the inside of a 1 MiB payload (segments of bytes no header
    /// reading makes a chain of) locks on at the frames after it; the probe holds no more than
    /// its window meanwhile.
    #[test]
    fn a_probe_slides_past_a_long_payload() {
        let mut probe = Probe::default();
        let mut state = 0x1234_5678u32;
        let mut segment = [0u8; 1448];
        for _ in 0..(1 << 20) / 1448 {
            for b in &mut segment {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                *b = state as u8;
            }
            let verdict = probe.push(false, &segment);
            assert_ne!(verdict, ProbeVerdict::NotWebSocket);
            if let ProbeVerdict::WebSocket { .. } = verdict {
                panic!("random bytes taken for frames");
            }
            assert!(probe.sides[1].len() <= PROBE_HOLD + segment.len());
        }
        let mut frames = Vec::new();
        for word in [&b"one"[..], b"two", b"three"] {
            frames.extend(encode(true, 1, None, word));
        }
        assert_eq!(
            probe.push(false, &frames),
            ProbeVerdict::WebSocket { a_is_client: true }
        );
    }

    #[test]
    fn a_probe_gives_up_after_its_span() {
        let mut probe = Probe::default();
        let segment = [b'x'; 1400];
        let verdicts: Vec<_> = (0..(PROBE_SPAN as usize / 1400 + 2))
            .map(|_| probe.push(true, &segment))
            .collect();
        assert_eq!(verdicts.last(), Some(&ProbeVerdict::NotWebSocket));
        assert!(probe.sides[0].len() <= PROBE_LIMIT + segment.len());
    }

    #[test]
    fn finds_a_chain_after_garbage() {
        let rule = Plausible {
            masked: Some(true),
            rsv1_allowed: false,
            max_len: 1 << 20,
        };
        let two = ChainRule {
            min_frames: 2,
            min_frames_at_end: 1,
        };
        let mut buf = vec![0x47, 0x17, 0xff, 0x03]; // the tail of a lost frame
        let start = buf.len();
        buf.extend(encode(true, 1, Some([1, 2, 3, 4]), b"hello"));
        buf.extend(encode(true, 2, Some([5, 6, 7, 8]), b"world"));
        assert_eq!(
            scan_chain(&buf, 0..buf.len(), &rule, &two),
            ChainScan::Found(start)
        );
        // One frame that ends exactly at the end of the data also confirms.
        assert_eq!(
            scan_chain(&buf[..start + 11], 0..start + 11, &rule, &two),
            ChainScan::Found(start)
        );
        // A frame that runs past the data leaves the question open.
        assert_eq!(
            scan_chain(&buf[..start + 8], [start], &rule, &two),
            ChainScan::Undecided(start)
        );
        // Unmasked frames are not a client's.
        let server = encode(true, 1, None, b"hi");
        assert_eq!(scan_chain(&server, [0], &rule, &two), ChainScan::None);
        // Zero bytes (a payload's run of them after a gap) are no chain of empty fragments;
        // the frame after them is found.
        let server_rule = Plausible {
            masked: Some(false),
            ..rule
        };
        let mut zeros = vec![0u8; 64];
        zeros.extend(encode(true, 2, None, b"after"));
        assert_eq!(
            scan_chain(&zeros, 0..zeros.len(), &server_rule, &two),
            ChainScan::Found(64)
        );
    }

    /// A direction picked up inside a long masked payload: a header in the payload that
    /// announces a frame longer than the window (which an after-gap resync believes once its
    /// buffer is full) is not enough; the chain of real frames after the payload is.
    #[test]
    fn a_pickup_needs_a_chain_not_one_header() {
        let rule = Plausible {
            masked: Some(true),
            rsv1_allowed: true,
            max_len: PLAUSIBLE_LEN,
        };
        // A masked binary header announcing 1 MiB, at a segment start, then payload bytes
        // that are no header the rule believes (0x70: opcode 0 with RSV bits set).
        let mut header = vec![0x82, 0xFF];
        header.extend_from_slice(&(1u64 << 20).to_be_bytes());
        header.extend_from_slice(&[1, 2, 3, 4]);
        let filler = [0x70u8; 1400];
        let mut gap = Resync::after_gap();
        let mut pickup = Resync::pickup();
        let mut gap_locked = false;
        for i in 0..100 {
            let segment: &[u8] = if i == 0 { &header } else { &filler };
            gap_locked |= gap.push(segment, &rule).is_some();
            assert!(pickup.push(segment, &rule).is_none(), "segment {i}");
            assert!(pickup.hunt.len() <= PROBE_HOLD + filler.len());
        }
        assert!(gap_locked, "the after-gap rule believes a long header");
        let mut frames = Vec::new();
        for word in [&b"one"[..], b"two", b"three"] {
            frames.extend(encode(true, 1, Some([9, 8, 7, 6]), word));
        }
        let found = pickup.push(&frames, &rule).expect("the chain is found");
        assert_eq!(found, frames);
    }
}
