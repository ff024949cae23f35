//! IP fragment reassembly, bounded in time and in the bytes it actually holds.
//!
//! etherparse's pool sizes each datagram's buffer from the offsets its fragments claim (one
//! 8-byte fragment at offset 65,520 reserves 64 KiB) and keeps every buffer for reuse; here a
//! datagram costs what its fragments brought, plus a fixed overhead, and is freed when it
//! completes, expires or is dropped to stay within [`DefragLimits::max_bytes`].

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use etherparse::{IpNumber, IpPayloadSlice, Ipv6ExtensionSlice, NetSlice, TcpSlice};

use super::link::LinkType;
use super::segment::{TcpSegment, addresses, segment_of, slice};
use crate::event::Timestamp;

/// How long, in capture time, the fragments of an IP datagram wait for the rest, counted
/// from its first fragment (as Linux's ipfrag_time): a trickle of fragments cannot keep one
/// alive.
pub const FRAGMENT_TIMEOUT_SECS: i64 = 30;
/// Fragments one datagram may come in: IPv4's smallest MTU (68) cuts 64 KiB into 1,366.
pub const MAX_PIECES: usize = 2048;
/// What a waiting datagram costs besides its buffers: its table slot (the table keeps room
/// for about twice its entries), its place in the age queue (which holds up to twice as many).
const DATAGRAM_OVERHEAD: usize =
    2 * std::mem::size_of::<(Key, Pending)>() + 2 * std::mem::size_of::<(u64, Key)>();
/// Emptied buffers kept for the next datagrams, so ordinary fragmented traffic allocates
/// little; any more are freed.
const SPARE_BUFFERS: usize = 4;
/// A spare buffer larger than this is freed rather than kept.
const SPARE_MAX_CAPACITY: usize = 16 * 1024;

/// The defragmenter's bound.
#[derive(Clone, Copy, Debug)]
pub struct DefragLimits {
    /// Bytes all incomplete datagrams may hold together (`--max-frag-bytes`): their fragments'
    /// payloads and [`DATAGRAM_OVERHEAD`] each. Past it the oldest are dropped.
    pub max_bytes: usize,
}

impl Default for DefragLimits {
    fn default() -> Self {
        DefragLimits { max_bytes: 4 << 20 }
    }
}

/// What became of the datagrams that never completed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DefragStats {
    /// Still incomplete [`FRAGMENT_TIMEOUT_SECS`] after their first fragment.
    pub expired: u64,
    /// Dropped, oldest first, to keep the fragments held within the bound, or because one
    /// came in more than [`MAX_PIECES`] fragments.
    pub dropped: u64,
}

/// One datagram's fragments are those with the same addresses, identification and protocol
/// (RFC 791, RFC 8200 4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    src: IpAddr,
    dst: IpAddr,
    id: u32,
    protocol: u8,
}

/// What the allocator takes for `bytes`: a header, and 32 bytes at least.
fn allocation(bytes: usize) -> usize {
    if bytes == 0 {
        0
    } else {
        (bytes + 8).max(32).next_multiple_of(16)
    }
}

#[derive(Debug)]
struct Pending {
    /// Its first fragment's time and arrival number: expiry and the age order of drops.
    started: i64,
    order: u64,
    /// Its end, once the last fragment (no "more fragments" flag) came.
    end: Option<u16>,
    /// Each fragment as it came: its offset and length (2 bytes each), then its payload.
    pieces: Vec<u8>,
    count: usize,
    /// The byte ranges received, sorted and merged: complete when one range covers 0..end.
    covered: Vec<(u16, u16)>,
}

impl Pending {
    fn cost(&self) -> usize {
        DATAGRAM_OVERHEAD
            + allocation(self.pieces.capacity())
            + allocation(self.covered.capacity() * 4)
    }

    fn is_complete(&self) -> bool {
        self.end.is_some_and(|end| self.covered == [(0, end)])
    }

    /// Marks `start..end` received, merging it with the ranges it touches.
    fn cover(&mut self, start: u16, end: u16) {
        let first = self.covered.partition_point(|&(_, e)| e < start);
        let mut last = first;
        let (mut s, mut e) = (start, end);
        while let Some(&(cs, ce)) = self.covered.get(last) {
            if cs > end {
                break;
            }
            s = s.min(cs);
            e = e.max(ce);
            last += 1;
        }
        self.covered.splice(first..last, [(s, e)]);
    }

    /// The whole payload, fragments placed at their offsets in the order they came (a later
    /// overlapping fragment wins).
    fn assemble(&self, out: &mut Vec<u8>) {
        out.clear();
        out.resize(usize::from(self.end.unwrap_or(0)), 0);
        let mut rest = &self.pieces[..];
        while let [o0, o1, l0, l1, tail @ ..] = rest {
            let offset = usize::from(u16::from_be_bytes([*o0, *o1]));
            let len = usize::from(u16::from_be_bytes([*l0, *l1]));
            let (data, after) = tail.split_at(len.min(tail.len()));
            if let Some(place) = out.get_mut(offset..offset + data.len()) {
                place.copy_from_slice(data);
            }
            rest = after;
        }
    }
}

/// IPv4 and IPv6 fragment reassembly of TCP datagrams.
pub struct Defragmenter {
    limits: DefragLimits,
    pending: HashMap<Key, Pending, foldhash::fast::RandomState>,
    /// Datagrams by age, oldest first; entries of those gone since are skipped.
    ages: VecDeque<(u64, Key)>,
    next_order: u64,
    /// What the waiting datagrams cost together ([`Pending::cost`]).
    held: usize,
    spare: Vec<Vec<u8>>,
    stats: DefragStats,
}

impl Default for Defragmenter {
    fn default() -> Self {
        Defragmenter::new(DefragLimits::default())
    }
}

/// A reassembled IP datagram.
pub struct Datagram {
    src: IpAddr,
    dst: IpAddr,
    payload: Vec<u8>,
}

impl Datagram {
    /// The datagram's TCP segment, if it carries a well-formed one; `packet` is the packet
    /// that completed it, which tshark also shows the reassembled segment in.
    pub fn segment(&self, packet: &[u8]) -> Option<TcpSegment<'_>> {
        let tcp = TcpSlice::from_slice(&self.payload).ok()?;
        Some(TcpSegment {
            payload: &self.payload[usize::from(tcp.data_offset()) * 4..],
            packet_len: u32::try_from(packet.len()).unwrap_or(u32::MAX),
            ..segment_of(self.src, self.dst, &tcp)
        })
    }
}

/// What a fragment says of its place: its datagram, offset, whether more follow, and payload.
struct Fragment<'a> {
    key: Key,
    offset: u16,
    more: bool,
    payload: &'a [u8],
}

fn fragment_of<'a>(
    net: &NetSlice<'a>,
    src: IpAddr,
    dst: IpAddr,
) -> Option<(Fragment<'a>, IpNumber)> {
    let (id, offset, more, payload): (u32, u16, bool, IpPayloadSlice<'a>) = match net {
        NetSlice::Ipv4(ip) => {
            let h = ip.header();
            (
                u32::from(h.identification()),
                h.fragments_offset().byte_offset(),
                h.more_fragments(),
                ip.payload().clone(),
            )
        }
        NetSlice::Ipv6(ip) => {
            let frag = ip.extensions().clone().into_iter().find_map(|e| match e {
                Ipv6ExtensionSlice::Fragment(f) => Some(f.to_header()),
                _ => None,
            })?;
            (
                frag.identification,
                frag.fragment_offset.byte_offset(),
                frag.more_fragments,
                ip.payload().clone(),
            )
        }
        _ => return None,
    };
    let protocol = payload.ip_number;
    let key = Key {
        src,
        dst,
        id,
        protocol: protocol.0,
    };
    Some((
        Fragment {
            key,
            offset,
            more,
            payload: payload.payload,
        },
        protocol,
    ))
}

/// Why a fragment was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Not TCP: never held, counted as a packet skipped when it starts its datagram.
    NotTcp { first: bool },
    /// Malformed: past 64 KiB, an unaligned middle piece, an end that contradicts another.
    Malformed,
}

impl Defragmenter {
    pub fn new(limits: DefragLimits) -> Self {
        Defragmenter {
            limits,
            pending: HashMap::default(),
            ages: VecDeque::new(),
            next_order: 0,
            held: 0,
            spare: Vec::new(),
            stats: DefragStats::default(),
        }
    }

    pub fn stats(&self) -> DefragStats {
        self.stats
    }

    /// What the waiting datagrams hold now, as counted against the bound.
    pub fn held_bytes(&self) -> usize {
        self.held
    }

    /// Adds a fragment; returns the whole datagram once its last missing piece arrives.
    pub fn add(&mut self, link: LinkType, data: &[u8], ts: Timestamp) -> Option<Datagram> {
        self.add_checked(link, data, ts).ok().flatten()
    }

    /// [`Defragmenter::add`], saying why a fragment was not taken.
    pub fn add_checked(
        &mut self,
        link: LinkType,
        data: &[u8],
        ts: Timestamp,
    ) -> Result<Option<Datagram>, Refused> {
        let sliced = slice(link, data).map_err(|_| Refused::Malformed)?;
        let (src, dst, _) = addresses(&sliced).ok_or(Refused::Malformed)?;
        let net = sliced.net.as_ref().ok_or(Refused::Malformed)?;
        let (frag, protocol) = fragment_of(net, src, dst).ok_or(Refused::Malformed)?;
        if protocol != IpNumber::TCP {
            return Err(Refused::NotTcp {
                first: frag.offset == 0,
            });
        }
        let len = u16::try_from(frag.payload.len()).map_err(|_| Refused::Malformed)?;
        let end = frag.offset.checked_add(len).ok_or(Refused::Malformed)?;
        if frag.more && len % 8 != 0 {
            return Err(Refused::Malformed);
        }
        let key = frag.key;
        let entry = self.pending.entry(key).or_insert_with(|| {
            let order = self.next_order;
            self.next_order += 1;
            self.ages.push_back((order, key));
            let fresh = Pending {
                started: ts.secs,
                order,
                end: None,
                pieces: self.spare.pop().unwrap_or_default(),
                count: 0,
                covered: Vec::new(),
            };
            self.held += fresh.cost();
            fresh
        });
        let conflicting = match entry.end {
            Some(known) => end > known || (!frag.more && end != known),
            None => !frag.more && entry.covered.last().is_some_and(|&(_, e)| e > end),
        };
        if conflicting {
            // A contradiction says nothing of which piece was wrong: the fragment goes, the
            // datagram waits on.
            return Err(Refused::Malformed);
        }
        if entry.count >= MAX_PIECES {
            self.drop_datagram(key);
            return Err(Refused::Malformed);
        }
        let before = entry.cost();
        entry.pieces.extend_from_slice(&frag.offset.to_be_bytes());
        entry.pieces.extend_from_slice(&len.to_be_bytes());
        entry.pieces.extend_from_slice(frag.payload);
        entry.count += 1;
        entry.cover(frag.offset, end);
        if !frag.more {
            entry.end = Some(end);
        }
        self.held = self.held - before + entry.cost();
        if entry.is_complete() {
            let done = self.pending.remove(&key).ok_or(Refused::Malformed)?;
            self.held -= done.cost();
            let mut payload = self.spare.pop().unwrap_or_default();
            done.assemble(&mut payload);
            self.give_back(done.pieces);
            self.compact_ages();
            return Ok(Some(Datagram { src, dst, payload }));
        }
        self.enforce_bound();
        Ok(None)
    }

    /// Gives a datagram's buffer back for reuse.
    pub fn recycle(&mut self, datagram: Datagram) {
        self.give_back(datagram.payload);
    }

    fn give_back(&mut self, mut buf: Vec<u8>) {
        if self.spare.len() < SPARE_BUFFERS && buf.capacity() <= SPARE_MAX_CAPACITY {
            buf.clear();
            self.spare.push(buf);
        }
    }

    /// Drops the oldest datagrams until what is held fits the bound again.
    fn enforce_bound(&mut self) {
        while self.held > self.limits.max_bytes {
            let Some((order, key)) = self.ages.pop_front() else {
                break;
            };
            if self.pending.get(&key).is_some_and(|p| p.order == order) {
                self.drop_datagram(key);
            }
        }
    }

    fn drop_datagram(&mut self, key: Key) {
        if let Some(p) = self.pending.remove(&key) {
            self.held -= p.cost();
            self.stats.dropped += 1;
            self.give_back(p.pieces);
        }
        self.compact_ages();
    }

    /// Forgets the ages of datagrams gone, once they outnumber those waiting.
    fn compact_ages(&mut self) {
        if self.ages.len() > 2 * self.pending.len() + 64 {
            let pending = &self.pending;
            self.ages
                .retain(|(order, key)| pending.get(key).is_some_and(|p| p.order == *order));
            self.ages.shrink_to(2 * self.ages.len() + 64);
        }
    }

    /// Drops datagrams still incomplete [`FRAGMENT_TIMEOUT_SECS`] after their first fragment.
    pub fn expire(&mut self, now: Timestamp) {
        let mut expired = 0;
        let mut freed = 0;
        self.pending.retain(|_, p| {
            let keep = now.secs.saturating_sub(p.started) < FRAGMENT_TIMEOUT_SECS;
            if !keep {
                expired += 1;
                freed += p.cost();
            }
            keep
        });
        self.stats.expired += expired;
        self.held -= freed;
        // A flood's table is given back once it has passed.
        if self.pending.capacity() > 4 * self.pending.len() + 64 {
            self.pending.shrink_to(2 * self.pending.len());
        }
        self.compact_ages();
    }
}
