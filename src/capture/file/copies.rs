//! Copies of one packet that two interfaces of a pcapng file both captured.

use crate::event::Timestamp;
use crate::net::link::LinkType;

/// The IP packet inside a link-layer frame (its start, as far as a copy on another interface
/// would share it).
pub(super) fn network_layer(link: LinkType, data: &[u8]) -> &[u8] {
    let at = match link {
        LinkType::Ethernet => match data.get(12..14) {
            Some([0x81, 0x00]) => 18,
            _ => 14,
        },
        LinkType::Null => 4,
        LinkType::Raw => 0,
        LinkType::LinuxSll => 16,
        LinkType::LinuxSll2 => 20,
    };
    data.get(at..).unwrap_or(&[])
}

/// Packets seen lately on the file's interfaces, to skip the copy of one that a second
/// interface also captured (`dumpcap -i lo -i any`, a veth end and `any`). dumpcap writes
/// each interface's packets in batches, so the copy can come after the whole connection has
/// ended on the first interface, where TCP would take it for a new connection. A copy is the
/// same IP packet, byte for byte, on another interface, at most [`COPY_WINDOW_NANOS`] apart
/// in capture time. One fixed table, allocated once: a packet's entry lives until another
/// lands in its slot, so a copy more than a few thousand packets later can be missed.
pub(super) struct Seen {
    slots: Vec<SeenPacket>,
    hasher: foldhash::fast::FixedState,
}

#[derive(Clone, Copy, Default)]
struct SeenPacket {
    hash: u64,
    interface: u32,
    ts: Timestamp,
}

const SEEN_SLOTS: usize = 1 << 16;

const COPY_WINDOW_NANOS: i128 = 1_000_000_000;

impl Seen {
    pub(super) fn new() -> Seen {
        Seen {
            slots: vec![SeenPacket::default(); SEEN_SLOTS],
            hasher: foldhash::fast::FixedState::with_seed(0x5eed),
        }
    }

    /// Whether this packet copies one seen on another interface; else it is remembered.
    pub(super) fn is_copy(&mut self, interface: u32, ts: Timestamp, packet: &[u8]) -> bool {
        use std::hash::BuildHasher;
        if packet.is_empty() {
            return false;
        }
        let hash = self.hasher.hash_one(packet);
        let slot = &mut self.slots[hash as usize & (SEEN_SLOTS - 1)];
        let nanos = |t: Timestamp| i128::from(t.secs) * 1_000_000_000 + i128::from(t.nanos);
        if slot.hash == hash
            && slot.interface != interface
            && (nanos(slot.ts) - nanos(ts)).abs() <= COPY_WINDOW_NANOS
        {
            return true;
        }
        *slot = SeenPacket {
            hash,
            interface,
            ts,
        };
        false
    }
}
