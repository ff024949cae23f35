//! The global memory budget (`--max-memory`): one accountant for every store whose size
//! depends on the traffic.
//!
//! The budget is split once, at start, into fixed shares and one pool:
//! - IP fragments: `--max-frag-bytes` (lowered to an eighth of the budget if it is more);
//! - output in flight with `--threads`: an eighth of the budget, shared by the decoders (at
//!   most [`MAX_OUTPUT_SHARE`] each);
//! - the rest, the pool, for the connections: each one's fixed cost ([`connection_cost`],
//!   bounded by `--max-flows`, lowered when `--max-flows` connections would take more than
//!   half the budget) and what it holds (`Connection::held`): bytes out of
//!   order, probe and resync buffers, HTTP heads and the handshake kept until it ends,
//!   inflaters and their windows, TLS records.
//!
//! The shares are the same for any `--threads`, so whether the budget is reached does not
//! depend on the thread count; with several decoders each accounts for its own connections
//! against an equal share of the pool (decisions under pressure then depend on the thread
//! count, and only then).
//!
//! The accountant is a plain counter per analyzer (no lock, no allocation): after each segment
//! the connection's measure is compared with what it was charged. Past the budget the
//! longest-idle connections give up what they hold until the total is back under
//! the low-water mark, and if that is not enough they are ended as `"evicted"`.

use std::mem::size_of;

use super::connection::Connection;

/// `--max-memory` when not given: 1 GiB holds the default 100,000 connections' fixed cost
/// (about 60 MB), 4 MiB of fragments and every decoder's output in flight several times over,
/// and still leaves hundreds of MiB for what connections hold. A machine that monitors
/// traffic can spare it; a hostile capture cannot make wsnoop take more.
pub const DEFAULT_MAX_MEMORY: usize = 1 << 30;

/// The most output in flight one decoder may hold (the credit before it waits).
pub const MAX_OUTPUT_SHARE: usize = 4 << 20;

/// The least output in flight a decoder may hold: one event must fit.
const MIN_OUTPUT_SHARE: usize = 64 << 10;

/// A hash table slot and the allocator's overhead for a boxed entry, per table that knows the
/// connection (the analyzer's and, with threads, the reader's).
const TABLE_SLOT: usize = 64;

/// What the threaded reader's table keeps per connection (its key, owner, times, flags).
const READER_ENTRY: usize = 96;

/// Where a connection is cut back to once the budget is passed: a quarter of the pool above
/// the fixed costs is left free, so shedding runs seldom.
const LOW_WATER_NUM: usize = 3;
const LOW_WATER_DEN: usize = 4;

/// What one connection costs whatever it carries: its boxed entry in the analyzer's table and
/// the threaded reader's entry. The same for any `--threads`, so the effective `--max-flows`
/// is too.
pub fn connection_cost() -> usize {
    size_of::<Connection>() + TABLE_SLOT + READER_ENTRY
}

/// How the budget is split, decided once at start from the options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryPlan {
    /// `--max-memory`.
    pub max_memory: usize,
    /// The connections tracked at once: `--max-flows`, or less when they would not fit.
    pub max_flows: usize,
    /// `--max-flows` when it was lowered.
    pub flows_lowered_from: Option<usize>,
    /// Bytes IP fragments may hold: `--max-frag-bytes`, or less when it would not fit.
    pub max_frag_bytes: usize,
    /// `--max-frag-bytes` when it was lowered.
    pub frag_lowered_from: Option<usize>,
    /// Output in flight, all decoders together.
    pub output: usize,
    /// What the connections may cost together (fixed costs and what they hold).
    pub pool: usize,
}

impl MemoryPlan {
    pub fn new(max_memory: usize, max_flows: usize, max_frag_bytes: usize) -> MemoryPlan {
        let cost = connection_cost();
        let flow_room = (max_memory / 2 / cost).max(1);
        let frag_room = max_memory / 8;
        let output = max_memory / 8;
        let frag = max_frag_bytes.min(frag_room);
        MemoryPlan {
            max_memory,
            max_flows: max_flows.min(flow_room),
            flows_lowered_from: (max_flows > flow_room).then_some(max_flows),
            max_frag_bytes: frag,
            frag_lowered_from: (max_frag_bytes > frag_room).then_some(max_frag_bytes),
            output,
            pool: max_memory.saturating_sub(frag).saturating_sub(output),
        }
    }

    /// What one analyzer answers to, before threads split it ([`MemoryLimits::split`]).
    pub fn share(&self, decoders: usize) -> MemoryLimits {
        MemoryLimits {
            pool: self.pool,
            output: self.output,
        }
        .split(decoders)
    }
}

/// One analyzer's share of the budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryLimits {
    /// What its connections may cost together.
    pub pool: usize,
    /// The output it may have in flight with threads (see [`MemoryLimits::output_credit`]).
    pub output: usize,
}

impl MemoryLimits {
    /// An equal share for each of `decoders`.
    pub fn split(self, decoders: usize) -> MemoryLimits {
        let decoders = decoders.max(1);
        MemoryLimits {
            pool: self.pool / decoders,
            output: self.output / decoders,
        }
    }

    /// The output one decoder may have handed over and not yet written before it waits.
    pub fn output_credit(&self) -> usize {
        self.output.clamp(MIN_OUTPUT_SHARE, MAX_OUTPUT_SHARE)
    }
}

impl Default for MemoryLimits {
    fn default() -> Self {
        MemoryPlan::new(DEFAULT_MAX_MEMORY, usize::MAX, 0).share(1)
    }
}

/// What the budget took from connections, for the end-of-run line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Connections that gave something up (counted once each).
    pub connections: u64,
    /// Data bytes they gave up: held out of order, held by a probe or while looking for
    /// frames, or cut from a kept handshake.
    pub bytes: u64,
    /// Inflaters whose context was dropped.
    pub inflaters: u64,
    /// Connections ended as evicted because shedding was not enough.
    pub evicted: u64,
}

impl std::ops::AddAssign<&MemoryStats> for MemoryStats {
    fn add_assign(&mut self, o: &MemoryStats) {
        self.connections += o.connections;
        self.bytes += o.bytes;
        self.inflaters += o.inflaters;
        self.evicted += o.evicted;
    }
}

/// One analyzer's accountant.
#[derive(Debug)]
pub(super) struct Budget {
    limit: usize,
    /// What the connections hold, as last charged.
    held: usize,
    /// When shedding and eviction could not get under the limit (with threads, a decoder
    /// whose connections' fixed costs pass its share): the total the next try waits for, so
    /// the table is not scanned again at every packet.
    retry_at: usize,
    pub(super) stats: MemoryStats,
}

impl Budget {
    pub(super) fn new(limits: MemoryLimits) -> Budget {
        Budget {
            limit: limits.pool,
            held: 0,
            retry_at: 0,
            stats: MemoryStats::default(),
        }
    }

    /// A connection's measure went from `before` to `after`.
    #[inline]
    pub(super) fn charge(&mut self, before: usize, after: usize) {
        self.held = self.held.wrapping_add(after).wrapping_sub(before);
    }

    /// The total of `flows` connections' fixed costs and what they hold.
    #[inline]
    fn total(&self, flows: usize) -> usize {
        flows
            .saturating_mul(connection_cost())
            .saturating_add(self.held)
    }

    #[inline]
    pub(super) fn over(&self, flows: usize) -> bool {
        self.total(flows) > self.limit.max(self.retry_at)
    }

    /// Shedding ended: if still over the limit, the next try waits until the total has grown
    /// by an eighth of the limit.
    pub(super) fn relief_ended(&mut self, flows: usize) {
        let total = self.total(flows);
        self.retry_at = if total > self.limit {
            total.saturating_add(self.limit / 8)
        } else {
            0
        };
    }

    /// Back under the low-water mark: shedding stops.
    pub(super) fn relieved(&self, flows: usize) -> bool {
        let fixed = flows.saturating_mul(connection_cost());
        let room = self.limit.saturating_sub(fixed);
        self.held <= room / LOW_WATER_DEN * LOW_WATER_NUM
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_that_cannot_fit_are_lowered_the_same_for_any_share() {
        let cost = connection_cost();
        let plan = MemoryPlan::new(1000 * cost, 100_000, 4 << 20);
        assert_eq!(plan.max_flows, 500);
        assert_eq!(plan.flows_lowered_from, Some(100_000));
        assert_eq!(plan.max_frag_bytes, 1000 * cost / 8);
        let plan = MemoryPlan::new(DEFAULT_MAX_MEMORY, 100_000, 4 << 20);
        assert_eq!((plan.max_flows, plan.flows_lowered_from), (100_000, None));
        assert_eq!(plan.share(4).pool, plan.pool / 4);
        assert_eq!(plan.share(1).output_credit(), MAX_OUTPUT_SHARE);
    }

    /// An Ethernet/IPv4/TCP packet from 10.0.0.1:40000 (`from_client`) or 10.0.0.2:80.
    fn packet(from_client: bool, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let (client, server) = ([10, 0, 0, 1], [10, 0, 0, 2]);
        let (src, dst) = if from_client {
            (client, server)
        } else {
            (server, client)
        };
        let (sport, dport): (u16, u16) = if from_client {
            (40000, 80)
        } else {
            (80, 40000)
        };
        let mut p = vec![0u8; 12];
        p.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
        p.extend_from_slice(&(40 + payload.len() as u16).to_be_bytes());
        p.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]);
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ack.to_be_bytes());
        p.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        p.extend_from_slice(payload);
        p
    }

    struct Nothing;

    impl crate::event::EventSink for Nothing {
        fn event(&mut self, _: &crate::event::Event<'_>) {}
    }

    /// A bare ACK that acknowledges what a connection delivered gives the ring of those bytes
    /// back, and the budget is credited for it at once, by the ring's size: at least the
    /// bytes, at most the next power of two (a ring is sized from what it holds).
    #[test]
    fn a_ring_given_back_at_an_ack_is_credited() {
        use crate::analyzer::{Analyzer, AnalyzerOptions};
        use crate::event::Timestamp;
        use crate::net::link::LinkType;
        const SYN: u8 = 0x02;
        const ACK: u8 = 0x10;
        const PSH_ACK: u8 = 0x18;
        let mut analyzer = Analyzer::new(AnalyzerOptions::default());
        let mut at = 0;
        let mut send = |a: &mut Analyzer, from_client, seq, ack, flags, payload: &[u8]| {
            at += 1;
            let ts = Timestamp { secs: 1, nanos: at };
            let bytes = packet(from_client, seq, ack, flags, payload);
            a.packet(LinkType::Ethernet, ts, &bytes, &mut Nothing);
            a.budget.held
        };
        let (c, s) = (1000u32, 5000u32);
        send(&mut analyzer, true, c, 0, SYN, b"");
        send(&mut analyzer, false, s, c + 1, SYN | ACK, b"");
        send(&mut analyzer, true, c + 1, s + 1, ACK, b"");
        let request = b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n";
        let len = request.len() as u32;
        let with_ring = send(&mut analyzer, true, c + 1, s + 1, PSH_ACK, request);
        // Acknowledges only part of it: the ring stays.
        let partly = send(&mut analyzer, false, s + 1, c + 1 + len / 2, ACK, b"");
        assert_eq!(partly, with_ring);
        let acked = send(&mut analyzer, false, s + 1, c + 1 + len, ACK, b"");
        let ring = with_ring - acked;
        assert!(
            (request.len()..=request.len().next_power_of_two()).contains(&ring),
            "credited {ring} for a ring of {} bytes",
            request.len()
        );
    }

    #[test]
    fn shedding_stops_at_the_low_water_mark() {
        let mut budget = Budget::new(MemoryLimits {
            pool: 10_000 + connection_cost(),
            output: 0,
        });
        budget.charge(0, 10_001);
        assert!(budget.over(1));
        assert!(!budget.relieved(1));
        budget.charge(10_001, 7_500);
        assert!(budget.relieved(1));
        assert!(!budget.over(1));
    }
}
