//! TCP reassembly: each direction of a connection becomes an ordered byte stream.
//!
//! In-order segments, the common case, are passed through without a copy. Segments that
//! arrive ahead of a hole are copied and held, within a byte and count budget, until the hole
//! fills; bytes seen twice (retransmissions, overlaps) are delivered once, the first copy
//! winning, as most operating systems do, and compared while the receiver has not
//! acknowledged them. Sequence numbers wrap.

use std::fs::File;

use super::recent::{Backing, Recent};
use super::seq::seq_offset;
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
    /// Where the capture file holds `bytes`, if it does.
    at: Option<u64>,
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
            + self.recent.as_ref().map_or(0, Recent::memory)
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
        self.push_cut(
            seq,
            flags,
            payload,
            0,
            ts,
            limits,
            Backing::default(),
            deliver,
        );
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
        backing: Backing<'_>,
        deliver: &mut impl FnMut(Chunk<'_>),
    ) {
        let file = backing.file;
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
                let again = &payload[..skip.min(payload.len())];
                self.check_delivered(data_seq, again, next, file, deliver);
                if skip < payload.len() {
                    self.deliver_fresh(next, &payload[skip..], ts, backing.skip(skip), deliver);
                }
                if self.deliver_cut(cut_at, cut, deliver) || skip < payload.len() {
                    self.drain_held(file, deliver);
                }
            } else {
                self.hold(data_seq, payload, cut, ts, limits, backing, deliver);
            }
        }
        self.lose_acked_hole_if_overdue(file, deliver);
        self.maybe_fin(deliver);
    }

    #[allow(clippy::too_many_arguments)]
    fn hold(
        &mut self,
        seq: u32,
        payload: &[u8],
        cut: u32,
        ts: Timestamp,
        limits: ReassemblyLimits,
        backing: Backing<'_>,
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
            at: backing.at,
        });
        self.held_bytes += payload.len();
        while self.held_bytes > limits.max_bytes || self.held.len() > limits.max_segments {
            // The hole is not going to fill within budget: give up on it.
            self.skip_to_earliest_held(backing.file, deliver);
        }
    }

    /// Declares the bytes before the earliest held segment lost and delivers from there.
    fn skip_to_earliest_held(&mut self, file: Option<&File>, deliver: &mut impl FnMut(Chunk<'_>)) {
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
        self.drain_held(file, deliver);
    }

    fn drain_held(&mut self, file: Option<&File>, deliver: &mut impl FnMut(Chunk<'_>)) {
        while let Some(next) = self.next_seq {
            let Some(i) = self.held.iter().position(|h| seq_offset(h.seq, next) <= 0) else {
                break;
            };
            let held = self.held.swap_remove(i);
            self.held_bytes -= held.bytes.len();
            let skip = seq_offset(next, held.seq) as usize;
            let overlap = &held.bytes[..skip.min(held.bytes.len())];
            self.check_delivered(held.seq, overlap, next, file, deliver);
            if skip < held.bytes.len() {
                let backing = Backing { file, at: held.at };
                self.deliver_fresh(
                    next,
                    &held.bytes[skip..],
                    held.ts,
                    backing.skip(skip),
                    deliver,
                );
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
        backing: Backing<'_>,
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
                Some(recent) => recent.record(seq, unacked, backing.skip(acked)),
                None => self.recent = Some(Recent::new(seq, unacked, backing.skip(acked))),
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
        file: Option<&File>,
        deliver: &mut impl FnMut(Chunk<'_>),
    ) {
        if let Some(recent) = &self.recent
            && !again.is_empty()
            && recent.differs(seq, again, next, file)
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
    pub fn acked(&mut self, ack: u32, file: Option<&File>, deliver: &mut impl FnMut(Chunk<'_>)) {
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
        self.lose_acked_hole_if_overdue(file, deliver);
    }

    /// A hole the receiver acknowledged, with captured data after it, that stayed open for
    /// [`ACKED_HOLE_PATIENCE`] packets: the capture lost those bytes.
    fn lose_acked_hole_if_overdue(
        &mut self,
        file: Option<&File>,
        deliver: &mut impl FnMut(Chunk<'_>),
    ) {
        if self.acked_to.is_none() {
            return;
        }
        self.acked_patience = self.acked_patience.saturating_add(1);
        if self.acked_patience >= ACKED_HOLE_PATIENCE && self.holds_data_acked() {
            self.skip_acked(false, file, deliver);
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
    fn skip_acked(
        &mut self,
        certain: bool,
        file: Option<&File>,
        deliver: &mut impl FnMut(Chunk<'_>),
    ) {
        while let (Some(next), Some(acked)) = (self.next_seq, self.acked_to) {
            let missing = seq_offset(acked, next);
            if missing <= 0 {
                self.acked_to = None;
                break;
            }
            let earliest_held = self.held.iter().map(|h| seq_offset(h.seq, next)).min();
            match earliest_held {
                Some(offset) if offset <= missing => self.skip_to_earliest_held(file, deliver),
                _ if certain => {
                    deliver(Chunk::Gap(missing as u64));
                    self.next_seq = Some(acked);
                    self.acked_to = None;
                    self.forget_recent();
                    self.drain_held(file, deliver);
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
    pub fn flush(&mut self, file: Option<&File>, deliver: &mut impl FnMut(Chunk<'_>)) {
        self.skip_acked(true, file, deliver);
        while !self.held.is_empty() {
            self.skip_to_earliest_held(file, deliver);
        }
        self.maybe_fin(deliver);
    }
}
