//! TCP reassembly: each direction of a connection becomes an ordered byte stream.
//!
//! In-order segments, the common case, are passed through without a copy. Segments that
//! arrive ahead of a hole are copied and held, within a byte and count budget, until the hole
//! fills; bytes seen twice (retransmissions, overlaps) are delivered once, the first copy
//! winning, as most operating systems do, and compared while the receiver has not
//! acknowledged them. Sequence numbers wrap.

use std::cell::RefCell;

use crate::event::Timestamp;
use crate::net::segment::TcpFlags;

/// What a direction's reassembler hands on, in stream order.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk<'a> {
    /// In-order bytes, with the capture time of the segment that carried them (held segments
    /// keep theirs).
    Data(&'a [u8], Timestamp),
    /// Bytes that will never arrive: the stream continues after them.
    Gap(u64),
    /// Bytes the capture's snapshot length cut off their segments: sent, never captured; the
    /// stream continues after them.
    Cut(u64),
    /// The sender's FIN, once every byte before it was delivered.
    Fin,
    /// This many bytes arrived again with different content; the first copy was kept.
    Conflict(u64),
}

/// Limits on what one direction may hold while waiting for a hole to fill.
#[derive(Clone, Copy, Debug)]
pub struct ReassemblyLimits {
    pub max_bytes: usize,
    pub max_segments: usize,
}

impl Default for ReassemblyLimits {
    fn default() -> Self {
        ReassemblyLimits {
            max_bytes: 1 << 20,
            max_segments: 1024,
        }
    }
}

#[derive(Debug)]
pub(super) struct HeldSegment {
    seq: u32,
    bytes: Vec<u8>,
    /// Bytes after `bytes` that the snapshot length cut.
    cut: u32,
    ts: Timestamp,
}

/// The most delivered bytes remembered per direction, to compare retransmissions against. A
/// power of two, so a byte's place is its sequence number modulo the ring's length, across
/// wraparound too.
const RECENT: usize = 2048;

/// The smallest ring: a few bytes more cost nothing at the allocator, and a ring this small
/// holds the typical small message and its successor without growing.
const MIN_RING: usize = 64;

/// The delivered bytes the receiver has not acknowledged yet, indexed by sequence number: what
/// a retransmission or an overlap can still repeat. As Zeek and Suricata keep stream data until
/// it is acknowledged, the other direction's ACK forgets what it covers, and an ACK of
/// everything delivered gives the ring back: a connection whose data is acknowledged (the
/// common case, and every idle one) costs nothing here. A retransmission of bytes already
/// acknowledged is not compared: the receiver has them and drops the copy (RFC 9293 3.10.7.4),
/// so a conflict there changes nothing its application sees.
#[derive(Debug)]
struct Recent {
    /// A power of two long, at most [`RECENT`].
    ring: Box<[u8]>,
    /// How many bytes before `next_seq` the ring holds.
    len: usize,
}

/// Rings given back, kept for the next ring of their size: with the receiver acknowledging
/// every second segment a connection takes a ring and gives it back every other segment, and
/// the allocator and the zeroing of a new ring would cost more than the copies. Per thread
/// (each decoder's connections are its own), one list per size (64 to 2048 bytes), each at most
/// [`SPARE_RINGS`] long: at most 126 KiB a thread, outside the budget's count.
const SPARE_RINGS: usize = 32;

/// The ring sizes, powers of two from [`MIN_RING`] to [`RECENT`].
const RING_SIZES: usize = (RECENT / MIN_RING).trailing_zeros() as usize + 1;

thread_local! {
    static SPARE: RefCell<[Vec<Box<[u8]>>; RING_SIZES]> =
        const { RefCell::new([const { Vec::new() }; RING_SIZES]) };
}

/// Which list of spares holds rings `len` long.
fn size_class(len: usize) -> Option<usize> {
    let class = (len / MIN_RING).trailing_zeros() as usize;
    (len.is_power_of_two() && (MIN_RING..=RECENT).contains(&len)).then_some(class)
}

/// A ring `len` long (a power of two); its bytes are whatever a previous ring left, unread
/// until written.
fn take_ring(len: usize) -> Box<[u8]> {
    size_class(len)
        .and_then(|class| {
            SPARE
                .try_with(|spare| spare.borrow_mut()[class].pop())
                .ok()
                .flatten()
        })
        .unwrap_or_else(|| vec![0; len].into_boxed_slice())
}

/// Keeps `ring` for a later [`take_ring`], or frees it when enough are kept.
fn give_back(ring: Box<[u8]>) {
    let Some(class) = size_class(ring.len()) else {
        return;
    };
    // At the thread's end the spares are gone already: the ring is simply freed.
    let _ = SPARE.try_with(|spare| {
        let spare = &mut spare.borrow_mut()[class];
        if spare.len() < SPARE_RINGS {
            spare.reserve_exact(SPARE_RINGS);
            spare.push(ring);
        }
    });
}

impl Drop for Recent {
    fn drop(&mut self) {
        give_back(std::mem::take(&mut self.ring));
    }
}

/// Writes `data` at its place in `ring` (a power of two long, at least as long as `data`).
fn put(ring: &mut [u8], seq: u32, data: &[u8]) {
    let at = seq as usize & (ring.len() - 1);
    let first = (ring.len() - at).min(data.len());
    ring[at..at + first].copy_from_slice(&data[..first]);
    // Most pieces do not wrap: no call to copy nothing.
    if first < data.len() {
        ring[..data.len() - first].copy_from_slice(&data[first..]);
    }
}

impl Recent {
    /// A ring for `data`, delivered at `seq`.
    fn new(seq: u32, data: &[u8]) -> Recent {
        let mut recent = Recent {
            ring: Box::new([]),
            len: 0,
        };
        recent.record(seq, data);
        recent
    }

    /// Remembers `data`, delivered at `seq`, after what is held (which ends at `seq`).
    fn record(&mut self, seq: u32, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let skip = data.len().saturating_sub(RECENT);
        let (data, seq) = (&data[skip..], seq.wrapping_add(skip as u32));
        let want = (self.len + data.len()).min(RECENT);
        if want > self.ring.len() {
            // Sized from what it must hold now; the bytes kept move to their places in the
            // larger ring, in at most two runs each way.
            let mut ring = take_ring(want.next_power_of_two().max(MIN_RING));
            let keep = self.len.min(RECENT - data.len());
            // A new ring (the common case: the last one went back at an ACK) has nothing
            // to move.
            if keep > 0 {
                let from = seq.wrapping_sub(keep as u32);
                let (first, second) = self.runs(from, keep);
                put(&mut ring, from, first);
                put(&mut ring, from.wrapping_add(first.len() as u32), second);
            }
            give_back(std::mem::replace(&mut self.ring, ring));
            self.len = keep;
        }
        put(&mut self.ring, seq, data);
        self.len = (self.len + data.len()).min(self.ring.len());
    }

    /// The `len` bytes held from `seq` on, as the ring stores them: one run, or two where the
    /// ring wraps. `seq..seq + len` must be within what is held.
    fn runs(&self, seq: u32, len: usize) -> (&[u8], &[u8]) {
        if len == 0 {
            return (&[], &[]);
        }
        let at = seq as usize & (self.ring.len() - 1);
        let first = (self.ring.len() - at).min(len);
        (&self.ring[at..at + first], &self.ring[..len - first])
    }

    /// Compares `data` at `seq`, all before `next`, with what was delivered; only the part still
    /// held (not acknowledged, and among the last [`RECENT`]) is compared. True when they differ.
    fn differs(&self, seq: u32, data: &[u8], next: u32) -> bool {
        let oldest = next.wrapping_sub(self.len as u32);
        let skip = seq_offset(oldest, seq).max(0) as usize;
        if skip >= data.len() {
            return false;
        }
        let (data, seq) = (&data[skip..], seq.wrapping_add(skip as u32));
        if seq_offset(next, seq) < data.len() as i64 {
            // Not all before `next`: callers never ask this.
            return false;
        }
        let (first, second) = self.runs(seq, data.len());
        first != &data[..first.len()] || second != &data[first.len()..]
    }
}

/// One direction of a connection.
#[derive(Debug, Default)]
pub struct HalfStream {
    /// The sequence number of the next byte to deliver, once known.
    next_seq: Option<u32>,
    fin_seq: Option<u32>,
    fin_delivered: bool,
    pub(super) held: Vec<HeldSegment>,
    held_bytes: usize,
    recent: Option<Recent>,
    /// The receiver acknowledged up to here, beyond what the capture showed. Only a sign of
    /// loss: captures also reorder an ACK before the data it acknowledges.
    acked_to: Option<u32>,
    /// Packets seen on this connection since `acked_to` was set: captures reorder, so a hole
    /// the receiver acknowledged is given this long to fill before it is declared lost.
    acked_patience: u8,
}

/// Packets a hole the receiver acknowledged may stay open before it is called lost.
pub(super) const ACKED_HOLE_PATIENCE: u8 = 16;

/// Signed distance from `base` to `seq`, valid while the two are within 2^31 of each other.
fn seq_offset(seq: u32, base: u32) -> i64 {
    i64::from(seq.wrapping_sub(base) as i32)
}

impl HalfStream {
    #[inline]
    pub fn is_finished(&self) -> bool {
        self.fin_delivered
    }

    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// What this direction keeps on the heap, for the memory budget: the segments held out of
    /// order and the ring of delivered bytes not acknowledged yet.
    #[inline]
    pub fn memory(&self) -> usize {
        self.held_bytes
            + self.held.capacity() * std::mem::size_of::<HeldSegment>()
            + self.recent.as_ref().map_or(0, |r| r.ring.len())
    }

    /// Whether it remembers delivered bytes not acknowledged yet: an ACK from the other side
    /// may then give memory back.
    #[inline]
    pub fn remembers(&self) -> bool {
        self.recent.is_some()
    }

    /// Drops the ring of delivered bytes, to stay within the memory budget or once the
    /// connection is closed: retransmissions of what was delivered before are no longer
    /// compared (a ring is made again as bytes come).
    pub fn forget_delivered(&mut self) {
        self.recent = None;
    }

    /// Gives up the segments held out of order, to stay within the memory budget: they and the
    /// hole before them are declared lost at once (one gap up to the end of the furthest),
    /// as when a hole does not fill within `--max-ooo`, but without delivering them. Returns
    /// the held payload bytes dropped.
    pub fn give_up_held(&mut self, deliver: &mut impl FnMut(Chunk<'_>)) -> u64 {
        let Some(next) = self.next_seq else {
            return 0;
        };
        let Some(end) = self
            .held
            .iter()
            .map(|h| h.seq.wrapping_add(h.bytes.len() as u32).wrapping_add(h.cut))
            .max_by_key(|&end| seq_offset(end, next))
        else {
            return 0;
        };
        let dropped = self.held_bytes as u64;
        self.held = Vec::new();
        self.held_bytes = 0;
        let lost = seq_offset(end, next);
        if lost > 0 {
            self.next_seq = Some(end);
            if self
                .acked_to
                .is_some_and(|acked| seq_offset(acked, end) <= 0)
            {
                self.acked_to = None;
            }
            self.forget_recent();
            deliver(Chunk::Gap(lost as u64));
        }
        self.maybe_fin(deliver);
        dropped
    }

    /// Takes one segment of this direction. `deliver` receives what is now in order.
    #[inline]
    pub fn push(
        &mut self,
        seq: u32,
        flags: TcpFlags,
        payload: &[u8],
        ts: Timestamp,
        limits: ReassemblyLimits,
        deliver: &mut impl FnMut(Chunk<'_>),
    ) {
        self.push_cut(seq, flags, payload, 0, ts, limits, deliver);
    }

    /// Takes one segment whose payload the snapshot length cut after `payload`: `cut` more
    /// bytes follow on the wire. They are delivered as [`Chunk::Cut`] in their place.
    #[allow(clippy::too_many_arguments)]
    // The analyzer calls this and `acked` once per packet: inlined there, as they were before
    // this file left tcp.rs.
    #[inline]
    pub fn push_cut(
        &mut self,
        seq: u32,
        flags: TcpFlags,
        payload: &[u8],
        cut: u32,
        ts: Timestamp,
        limits: ReassemblyLimits,
        deliver: &mut impl FnMut(Chunk<'_>),
    ) {
        let mut data_seq = seq;
        if flags.syn {
            // The SYN occupies one sequence number. A retransmitted SYN must not rewind a stream
            // that has moved on.
            data_seq = seq.wrapping_add(1);
            if self.next_seq.is_none() {
                self.next_seq = Some(data_seq);
            }
        }
        let next = *self.next_seq.get_or_insert(data_seq);
        let cut_at = data_seq.wrapping_add(payload.len() as u32);
        if flags.fin && self.fin_seq.is_none() {
            self.fin_seq = Some(cut_at.wrapping_add(cut));
        }
        if !payload.is_empty() || cut > 0 {
            let offset = seq_offset(data_seq, next);
            if offset <= 0 {
                let skip = offset.unsigned_abs() as usize;
                self.check_delivered(data_seq, &payload[..skip.min(payload.len())], next, deliver);
                if skip < payload.len() {
                    self.deliver_fresh(next, &payload[skip..], ts, deliver);
                }
                if self.deliver_cut(cut_at, cut, deliver) || skip < payload.len() {
                    self.drain_held(deliver);
                }
            } else {
                self.hold(data_seq, payload, cut, ts, limits, deliver);
            }
        }
        self.lose_acked_hole_if_overdue(deliver);
        self.maybe_fin(deliver);
    }

    fn hold(
        &mut self,
        seq: u32,
        payload: &[u8],
        cut: u32,
        ts: Timestamp,
        limits: ReassemblyLimits,
        deliver: &mut impl FnMut(Chunk<'_>),
    ) {
        // Overlaps with what is already held: the first copy wins; different bytes are a
        // conflict worth reporting.
        let mut conflicting = 0u64;
        for held in &self.held {
            let start = seq_offset(seq, held.seq).max(0) as usize;
            let end = seq_offset(seq.wrapping_add(payload.len() as u32), held.seq)
                .clamp(0, held.bytes.len() as i64) as usize;
            if start < end {
                let theirs = &held.bytes[start..end];
                let ours_at = seq_offset(held.seq.wrapping_add(start as u32), seq) as usize;
                let ours = &payload[ours_at..ours_at + theirs.len()];
                if theirs != ours {
                    conflicting += theirs.len() as u64;
                }
            }
        }
        if conflicting > 0 {
            deliver(Chunk::Conflict(conflicting));
        }
        let extent = payload.len() + cut as usize;
        if self.held.iter().any(|h| {
            h.seq == seq
                && h.bytes.len() >= payload.len()
                && h.bytes.len() + h.cut as usize >= extent
        }) {
            return;
        }
        self.held.push(HeldSegment {
            seq,
            bytes: payload.to_vec(),
            cut,
            ts,
        });
        self.held_bytes += payload.len();
        while self.held_bytes > limits.max_bytes || self.held.len() > limits.max_segments {
            // The hole is not going to fill within budget: give up on it.
            self.skip_to_earliest_held(deliver);
        }
    }

    /// Declares the bytes before the earliest held segment lost and delivers from there.
    fn skip_to_earliest_held(&mut self, deliver: &mut impl FnMut(Chunk<'_>)) {
        let Some(next) = self.next_seq else { return };
        let Some(earliest) = self
            .held
            .iter()
            .map(|h| h.seq)
            .min_by_key(|&s| seq_offset(s, next))
        else {
            return;
        };
        let lost = seq_offset(earliest, next);
        if lost > 0 {
            deliver(Chunk::Gap(lost as u64));
            self.next_seq = Some(earliest);
            self.forget_recent();
        }
        self.drain_held(deliver);
    }

    fn drain_held(&mut self, deliver: &mut impl FnMut(Chunk<'_>)) {
        while let Some(next) = self.next_seq {
            let Some(i) = self.held.iter().position(|h| seq_offset(h.seq, next) <= 0) else {
                break;
            };
            let held = self.held.swap_remove(i);
            self.held_bytes -= held.bytes.len();
            let skip = seq_offset(next, held.seq) as usize;
            let overlap = &held.bytes[..skip.min(held.bytes.len())];
            self.check_delivered(held.seq, overlap, next, deliver);
            if skip < held.bytes.len() {
                self.deliver_fresh(next, &held.bytes[skip..], held.ts, deliver);
            }
            let cut_at = held.seq.wrapping_add(held.bytes.len() as u32);
            self.deliver_cut(cut_at, held.cut, deliver);
        }
    }

    /// The `cut` bytes from `at` were cut by the snapshot length: the part not delivered yet
    /// is, as a cut, and the stream moves past it. True if anything was.
    fn deliver_cut(&mut self, at: u32, cut: u32, deliver: &mut impl FnMut(Chunk<'_>)) -> bool {
        let Some(next) = self.next_seq else {
            return false;
        };
        let end = at.wrapping_add(cut);
        let beyond = seq_offset(end, next);
        if cut == 0 || beyond <= 0 {
            return false;
        }
        let new_next = end;
        self.next_seq = Some(new_next);
        if self
            .acked_to
            .is_some_and(|acked| seq_offset(acked, new_next) <= 0)
        {
            self.acked_to = None;
        }
        self.forget_recent();
        deliver(Chunk::Cut(beyond.min(i64::from(cut)) as u64));
        true
    }

    /// Delivers in-order bytes starting at `next` and remembers them.
    fn deliver_fresh(
        &mut self,
        next: u32,
        fresh: &[u8],
        ts: Timestamp,
        deliver: &mut impl FnMut(Chunk<'_>),
    ) {
        let new_next = next.wrapping_add(fresh.len() as u32);
        self.next_seq = Some(new_next);
        // Bytes an ACK seen before them already covers are not remembered (captures reorder
        // an ACK before its data); what is remembered then starts after them.
        let acked = self.acked_to.map_or(0, |acked| {
            seq_offset(acked, next).clamp(0, fresh.len() as i64) as usize
        });
        if acked > 0 {
            self.recent = None;
        }
        let (seq, unacked) = (next.wrapping_add(acked as u32), &fresh[acked..]);
        if !unacked.is_empty() {
            match &mut self.recent {
                Some(recent) => recent.record(seq, unacked),
                None => self.recent = Some(Recent::new(seq, unacked)),
            }
        }
        if self
            .acked_to
            .is_some_and(|acked| seq_offset(acked, new_next) <= 0)
        {
            self.acked_to = None;
        }
        deliver(Chunk::Data(fresh, ts));
    }

    /// Bytes at `seq` that were delivered already: reports them if they differ.
    fn check_delivered(
        &self,
        seq: u32,
        again: &[u8],
        next: u32,
        deliver: &mut impl FnMut(Chunk<'_>),
    ) {
        if let Some(recent) = &self.recent
            && !again.is_empty()
            && recent.differs(seq, again, next)
        {
            deliver(Chunk::Conflict(again.len() as u64));
        }
    }

    fn maybe_fin(&mut self, deliver: &mut impl FnMut(Chunk<'_>)) {
        if let (Some(fin), Some(next), false) = (self.fin_seq, self.next_seq, self.fin_delivered)
            && seq_offset(next, fin) >= 0
        {
            self.fin_delivered = true;
            deliver(Chunk::Fin);
        }
    }

    /// The other side acknowledged up to `ack`. The delivered bytes it acknowledges are
    /// forgotten: a retransmission of them is no longer compared. Bytes it acknowledges that
    /// the capture never showed were lost by the capture, not the network: declare them a gap
    /// now rather than holding later data until the connection ends.
    #[inline]
    pub fn acked(&mut self, ack: u32, deliver: &mut impl FnMut(Chunk<'_>)) {
        let Some(next) = self.next_seq else { return };
        // Acknowledging the FIN does not acknowledge data.
        let data_end = match self.fin_seq {
            Some(fin) if seq_offset(ack, fin) > 0 => fin,
            _ => ack,
        };
        let missing = seq_offset(data_end, next);
        // Implausibly far ahead: not an acknowledgment of this stream.
        if missing > i64::from(i32::MAX) / 2 {
            return;
        }
        self.forget_acked(missing);
        if missing <= 0 {
            return;
        }
        if self.acked_to.is_none() {
            self.acked_patience = 0;
        }
        if self
            .acked_to
            .is_none_or(|known| seq_offset(data_end, known) > 0)
        {
            self.acked_to = Some(data_end);
        }
        // The missing bytes may be a few packets away in the capture, even after the FIN.
        self.lose_acked_hole_if_overdue(deliver);
    }

    /// A hole the receiver acknowledged, with captured data after it, that stayed open for
    /// [`ACKED_HOLE_PATIENCE`] packets: the capture lost those bytes.
    fn lose_acked_hole_if_overdue(&mut self, deliver: &mut impl FnMut(Chunk<'_>)) {
        if self.acked_to.is_none() {
            return;
        }
        self.acked_patience = self.acked_patience.saturating_add(1);
        if self.acked_patience >= ACKED_HOLE_PATIENCE && self.holds_data_acked() {
            self.skip_acked(false, deliver);
        }
    }

    /// Some held segment starts where the receiver has acknowledged.
    fn holds_data_acked(&self) -> bool {
        let (Some(next), Some(acked)) = (self.next_seq, self.acked_to) else {
            return false;
        };
        let limit = seq_offset(acked, next);
        self.held.iter().any(|h| seq_offset(h.seq, next) <= limit)
    }

    /// Declares the acknowledged bytes the capture never showed a gap, up to each held
    /// segment, and delivers on. Acknowledged bytes with nothing captured after them are
    /// declared lost only when that is `certain` (the sender's FIN, or the connection's end).
    fn skip_acked(&mut self, certain: bool, deliver: &mut impl FnMut(Chunk<'_>)) {
        while let (Some(next), Some(acked)) = (self.next_seq, self.acked_to) {
            let missing = seq_offset(acked, next);
            if missing <= 0 {
                self.acked_to = None;
                break;
            }
            let earliest_held = self.held.iter().map(|h| seq_offset(h.seq, next)).min();
            match earliest_held {
                Some(offset) if offset <= missing => self.skip_to_earliest_held(deliver),
                _ if certain => {
                    deliver(Chunk::Gap(missing as u64));
                    self.next_seq = Some(acked);
                    self.acked_to = None;
                    self.forget_recent();
                    self.drain_held(deliver);
                }
                _ => break,
            }
        }
        self.maybe_fin(deliver);
    }

    /// After a gap the remembered bytes no longer end at `next_seq`.
    fn forget_recent(&mut self) {
        self.recent = None;
    }

    /// The receiver acknowledged up to `past` bytes after `next_seq` (negative: up to that
    /// many before it): what it acknowledged is forgotten, and the ring is given back once
    /// nothing unacknowledged is left. An ACK from long before (reordered, or of an older
    /// stream) covers nothing remembered.
    #[inline]
    fn forget_acked(&mut self, past: i64) {
        let Some(recent) = &mut self.recent else {
            return;
        };
        if past >= 0 {
            self.recent = None;
        } else if let Ok(unacked) = usize::try_from(-past)
            && unacked < recent.len
        {
            recent.len = unacked;
        }
    }

    /// The connection is over (RST, end of capture, eviction): whatever is held is delivered
    /// after gaps, so nothing captured is lost.
    pub fn flush(&mut self, deliver: &mut impl FnMut(Chunk<'_>)) {
        self.skip_acked(true, deliver);
        while !self.held.is_empty() {
            self.skip_to_earliest_held(deliver);
        }
        self.maybe_fin(deliver);
    }
}
