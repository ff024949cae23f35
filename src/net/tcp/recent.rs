//! The delivered bytes of one direction that a retransmission or an overlap can still repeat,
//! kept to compare with: where the capture file holds them, only where (read again on the
//! rare retransmission); otherwise a copy, in a ring indexed by sequence number.

use std::cell::RefCell;
use std::fs::File;
use std::os::unix::fs::FileExt;

use super::seq::seq_offset;

/// The most delivered bytes remembered per direction, to compare retransmissions against. A
/// power of two, so a byte's place is its sequence number modulo the ring's length, across
/// wraparound too.
pub(super) const RECENT: usize = 2048;

/// The smallest ring: a few bytes more cost nothing at the allocator, and a ring this small
/// holds the typical small message and its successor without growing.
const MIN_RING: usize = 64;

/// Where payload bytes are in the capture file being read, so that they can be read again
/// instead of copied as they go by. `None` fields: bytes that did not come from the file as
/// they are (a live capture, a pipe, a reassembled IP datagram).
#[derive(Clone, Copy, Debug, Default)]
pub struct Backing<'f> {
    /// The capture file, for reading bytes it holds again.
    pub file: Option<&'f File>,
    /// The position in it of the first payload byte.
    pub at: Option<u64>,
}

impl<'f> Backing<'f> {
    /// The same file, at the payload byte `skip` bytes on.
    pub(super) fn skip(self, skip: usize) -> Backing<'f> {
        Backing {
            file: self.file,
            at: self.at.map(|at| at + skip as u64),
        }
    }
}

/// Delivered bytes, `len` long from `seq`, that the capture file holds at `at`.
#[derive(Clone, Copy, Debug)]
struct FileSpan {
    seq: u32,
    len: u32,
    at: u64,
}

/// A span as it is stored: its place in the file and its length in one word (its sequence
/// number follows from the spans after it), so that a connection's two directions cost 48
/// bytes more, not 112. Places past 2^48 (256 TiB into a file) are copied instead.
#[derive(Clone, Copy, Debug, Default)]
struct Place(u64);

const PLACE_LEN_BITS: u32 = 16;

impl Place {
    fn new(at: u64, len: usize) -> Option<Place> {
        (at < 1 << (64 - PLACE_LEN_BITS) && len <= RECENT)
            .then_some(Place(at << PLACE_LEN_BITS | len as u64))
    }

    fn at(self) -> u64 {
        self.0 >> PLACE_LEN_BITS
    }

    fn len(self) -> u32 {
        (self.0 & ((1 << PLACE_LEN_BITS) - 1)) as u32
    }
}

/// The file spans one direction remembers before its bytes are copied into a ring after all:
/// an ACK every second segment leaves two unacknowledged, and four full segments are more than
/// [`RECENT`] bytes.
const FILE_SPANS: usize = 4;

/// The delivered bytes the receiver has not acknowledged yet: what a retransmission or an
/// overlap can still repeat. As Zeek and Suricata keep stream data until it is acknowledged,
/// the other direction's ACK forgets what it covers, and an ACK of everything delivered gives
/// the ring back: a connection whose data is acknowledged (the common case, and every idle one)
/// costs nothing here. A retransmission of bytes already acknowledged is not compared: the
/// receiver has them and drops the copy (RFC 9293 3.10.7.4), so a conflict there changes
/// nothing its application sees.
///
/// Read from a capture file, the bytes are the file's: what is remembered is where they are,
/// and a retransmission (rare) reads them again to compare. That is the same comparison as
/// with a copy, whatever the source, so the output does not depend on it; it saves copying
/// every delivered byte (7% of `-q`'s CPU on the bench capture).
#[derive(Debug)]
pub(super) struct Recent {
    /// How many bytes before the direction's next sequence number are remembered.
    pub(super) len: usize,
    store: Store,
}

#[derive(Debug)]
enum Store {
    /// Where the file holds them, oldest first, one after another up to `end` (the sequence
    /// number after the last); spans wholly before the remembered bytes are stale (an ACK
    /// forgot them) and dropped when room is needed.
    File {
        places: [Place; FILE_SPANS],
        count: u8,
        end: u32,
    },
    /// A copy, a power of two long, at most [`RECENT`].
    Ring(Box<[u8]>),
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
        if let Store::Ring(ring) = &mut self.store {
            give_back(std::mem::take(ring));
        }
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

/// The `len` bytes held in `ring` from `seq` on: one run, or two where the ring wraps.
/// `seq..seq + len` must be within what is held.
fn runs(ring: &[u8], seq: u32, len: usize) -> (&[u8], &[u8]) {
    if len == 0 || ring.is_empty() {
        return (&[], &[]);
    }
    let len = len.min(ring.len());
    let at = seq as usize & (ring.len() - 1);
    let first = (ring.len() - at).min(len);
    (&ring[at..at + first], &ring[..len - first])
}

impl Recent {
    /// Remembers `data`, delivered at `seq`, which `backing` may say where to find again.
    pub(super) fn new(seq: u32, data: &[u8], backing: Backing<'_>) -> Recent {
        let store = match backing.at {
            Some(_) => Store::File {
                places: [Place::default(); FILE_SPANS],
                count: 0,
                end: seq,
            },
            None => Store::Ring(Box::new([])),
        };
        let mut recent = Recent { len: 0, store };
        recent.record(seq, data, backing);
        recent
    }

    /// The bytes it keeps on the heap, for the memory budget.
    pub(super) fn memory(&self) -> usize {
        match &self.store {
            Store::Ring(ring) => ring.len(),
            Store::File { .. } => 0,
        }
    }

    /// Remembers `data`, delivered at `seq`, after what is held (which ends at `seq`).
    pub(super) fn record(&mut self, seq: u32, data: &[u8], backing: Backing<'_>) {
        if data.is_empty() {
            return;
        }
        let skip = data.len().saturating_sub(RECENT);
        let (data, seq, backing) = (
            &data[skip..],
            seq.wrapping_add(skip as u32),
            backing.skip(skip),
        );
        let new_end = seq.wrapping_add(data.len() as u32);
        let place = backing.at.and_then(|at| Place::new(at, data.len()));
        if let (Store::File { places, count, end }, Some(place)) = (&mut self.store, place)
            && *end == seq
        {
            let new_len = (self.len + data.len()).min(RECENT);
            let oldest = new_end.wrapping_sub(new_len as u32);
            // Spans wholly before what stays remembered make room: they are the first ones.
            let mut start = spans_start(&places[..usize::from(*count)], *end);
            let mut stale = 0;
            for p in &places[..usize::from(*count)] {
                start = start.wrapping_add(p.len());
                if seq_offset(start, oldest) > 0 {
                    break;
                }
                stale += 1;
            }
            places.copy_within(stale..usize::from(*count), 0);
            let kept = usize::from(*count) - stale;
            if kept < FILE_SPANS {
                places[kept] = place;
                *count = kept as u8 + 1;
                *end = new_end;
                self.len = new_len;
                return;
            }
            *count = kept as u8;
        }
        if let Store::File { .. } = self.store {
            self.copy_to_ring(seq, backing.file);
        }
        self.record_in_ring(seq, data);
    }

    /// From remembering where the file holds the bytes to a copy of them, ending at `end`:
    /// the spans are read from the file. Bytes it cannot read are forgotten.
    fn copy_to_ring(&mut self, end: u32, file: Option<&File>) {
        let Store::File { places, count, .. } = &self.store else {
            return;
        };
        let spans = spans_of(&places[..usize::from(*count)], end);
        let held = self.len;
        let mut ring = take_ring(held.next_power_of_two().max(MIN_RING));
        let oldest = end.wrapping_sub(held as u32);
        let mut readable = held;
        let mut buf = [0u8; RECENT];
        for s in spans {
            let Some((from, part)) = within(&s, oldest, held) else {
                continue;
            };
            let bytes = &mut buf[..part];
            let read = file.is_some_and(|f| {
                f.read_exact_at(bytes, s.at + u64::from(from.wrapping_sub(s.seq)))
                    .is_ok()
            });
            if read {
                put(&mut ring, from, bytes);
            } else {
                // Unreadable: what it held and all before it is no longer remembered.
                readable = readable.min(seq_offset(end, from) as usize - part);
            }
        }
        self.len = readable;
        self.store = Store::Ring(ring);
    }

    /// Copies `data` at `seq` (after what is held) into the ring, growing it as needed.
    fn record_in_ring(&mut self, seq: u32, data: &[u8]) {
        let Store::Ring(ring) = &mut self.store else {
            return;
        };
        let want = (self.len + data.len()).min(RECENT);
        if want > ring.len() {
            // Sized from what it must hold now; the bytes kept move to their places in the
            // larger ring, in at most two runs each way.
            let mut grown = take_ring(want.next_power_of_two().max(MIN_RING));
            let keep = self.len.min(RECENT - data.len()).min(ring.len());
            // A new ring (the common case: the last one went back at an ACK) has nothing
            // to move.
            if keep > 0 {
                let from = seq.wrapping_sub(keep as u32);
                let (first, second) = runs(ring, from, keep);
                put(&mut grown, from, first);
                put(&mut grown, from.wrapping_add(first.len() as u32), second);
            }
            give_back(std::mem::replace(ring, grown));
            self.len = keep;
        }
        put(ring, seq, data);
        self.len = (self.len + data.len()).min(ring.len());
    }

    /// Compares `data` at `seq`, all before `next`, with what was delivered; only the part still
    /// held (not acknowledged, and among the last [`RECENT`]) is compared. True when they differ.
    pub(super) fn differs(&self, seq: u32, data: &[u8], next: u32, file: Option<&File>) -> bool {
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
        match &self.store {
            Store::Ring(ring) => {
                let (first, second) = runs(ring, seq, data.len());
                first != &data[..first.len()] || second != &data[first.len()..]
            }
            Store::File { places, count, end } => {
                let mut buf = [0u8; RECENT];
                spans_of(&places[..usize::from(*count)], *end).any(|s| {
                    let Some((from, part)) = within(&s, seq, data.len()) else {
                        return false;
                    };
                    let ours = &data[seq_offset(from, seq) as usize..][..part];
                    let theirs = &mut buf[..part];
                    // A file that cannot be read again (cut short since) compares nothing.
                    file.is_some_and(|f| {
                        f.read_exact_at(theirs, s.at + u64::from(from.wrapping_sub(s.seq)))
                            .is_ok()
                    }) && theirs != ours
                })
            }
        }
    }
}

/// The sequence number of the first of `places`, which end at `end`.
fn spans_start(places: &[Place], end: u32) -> u32 {
    places
        .iter()
        .fold(end, |start, p| start.wrapping_sub(p.len()))
}

/// `places`, ending at `end`, as spans, oldest first.
fn spans_of(places: &[Place], end: u32) -> impl Iterator<Item = FileSpan> + '_ {
    let mut seq = spans_start(places, end);
    places.iter().map(move |p| {
        let span = FileSpan {
            seq,
            len: p.len(),
            at: p.at(),
        };
        seq = seq.wrapping_add(p.len());
        span
    })
}

/// The part of span `s` within the `len` bytes from `start`: where it begins, how long.
fn within(s: &FileSpan, start: u32, len: usize) -> Option<(u32, usize)> {
    let from = if seq_offset(s.seq, start) > 0 {
        s.seq
    } else {
        start
    };
    let s_end = seq_offset(s.seq.wrapping_add(s.len), start);
    let end = s_end.min(len as i64);
    let begin = seq_offset(from, start);
    (end > begin).then(|| (from, (end - begin) as usize))
}
