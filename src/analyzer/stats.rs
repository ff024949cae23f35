//! What the analyzer is told (its options and limits) and what it counts.

use crate::context::{WsOptions, WsStats};
use crate::net::defrag::{DefragLimits, DefragStats};
use crate::net::tcp::ReassemblyLimits;

use super::TlsOptions;
use super::budget::{MemoryLimits, MemoryStats};

/// Limits on the flow table.
#[derive(Clone, Copy, Debug)]
pub struct FlowLimits {
    /// Connections tracked at once; beyond it the longest-idle are evicted.
    pub max_flows: usize,
    /// A connection with no packet for this long, in capture time, is ended.
    pub idle_timeout_secs: i64,
}

impl Default for FlowLimits {
    fn default() -> Self {
        FlowLimits {
            max_flows: 100_000,
            idle_timeout_secs: 300,
        }
    }
}

/// How to recognise WebSocket connections whose handshake was not captured.
#[derive(Clone, Debug, Default)]
pub struct MidstreamOptions {
    /// Server ports whose connections are WebSocket regardless (Wireshark's Decode As).
    pub ws_ports: Vec<u16>,
    /// Recognise connections whose bytes parse as a chain of valid frames.
    pub heuristics: bool,
}

#[derive(Clone, Debug, Default)]
pub struct AnalyzerOptions {
    pub ws: WsOptions,
    pub reassembly: ReassemblyLimits,
    pub flows: FlowLimits,
    /// IP fragments held while their datagrams are incomplete.
    pub defrag: DefragLimits,
    pub midstream: MidstreamOptions,
    pub tls: TlsOptions,
    /// Emit a connection event for every TCP connection as it leaves the table.
    pub report_connections: bool,
    /// Which connections' events are printed (`--flow`, ...); the analysis is the same.
    pub select: crate::event::Selection,
    /// This analyzer's share of `--max-memory`.
    pub memory: MemoryLimits,
    /// The capture file the segments' `payload_at` positions are in: delivered bytes it holds
    /// are read again from it to compare a retransmission with, not copied (see
    /// `net::tcp::Backing`). None: copied.
    pub replay: Option<std::sync::Arc<std::fs::File>>,
}

/// Counts reported at the end of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub packets: u64,
    pub tcp_packets: u64,
    pub skipped_not_tcp: u64,
    pub skipped_malformed: u64,
    pub fragments: u64,
    /// IP datagrams that never completed: expired, or dropped to stay within the bound.
    pub defrag: DefragStats,
    pub connections: u64,
    pub evicted: u64,
    pub timed_out: u64,
    /// TCP packets the snapshot length cut short, the payload bytes it cut off them, and the
    /// largest captured length of such a packet: the snapshot length, as far as it shows.
    pub truncated_packets: u64,
    pub bytes_cut: u64,
    pub snaplen: u32,
    /// Packets the snapshot length cut inside their TCP header: their bytes are gaps.
    pub skipped_cut_header: u64,
    /// Packets of capture-file interfaces whose link type wsnoop does not decode: the reader
    /// skips them before the analyzer, and [`Stats::add_file`] counts them here.
    pub skipped_link_type: u64,
    pub ws: WsStats,
    /// What the connections gave up to stay within `--max-memory`.
    pub memory: MemoryStats,
}

impl Stats {
    /// What the capture-file reader skipped before the analyzer saw a packet.
    pub fn add_file(&mut self, file: &crate::capture::FileStats) {
        self.skipped_link_type += file.unsupported_link_packets;
    }
}

impl std::ops::AddAssign<&Stats> for Stats {
    /// Counts of separate parts of one run (the reader's and each decoder's) made one: sums,
    /// but the snapshot length is the largest seen.
    fn add_assign(&mut self, o: &Stats) {
        let Stats {
            packets,
            tcp_packets,
            skipped_not_tcp,
            skipped_malformed,
            fragments,
            defrag,
            connections,
            evicted,
            timed_out,
            truncated_packets,
            bytes_cut,
            snaplen,
            skipped_cut_header,
            skipped_link_type,
            ws,
            memory,
        } = self;
        *packets += o.packets;
        *tcp_packets += o.tcp_packets;
        *skipped_not_tcp += o.skipped_not_tcp;
        *skipped_malformed += o.skipped_malformed;
        *fragments += o.fragments;
        defrag.expired += o.defrag.expired;
        defrag.dropped += o.defrag.dropped;
        *connections += o.connections;
        *evicted += o.evicted;
        *timed_out += o.timed_out;
        *truncated_packets += o.truncated_packets;
        *bytes_cut += o.bytes_cut;
        *snaplen = (*snaplen).max(o.snaplen);
        *skipped_cut_header += o.skipped_cut_header;
        *skipped_link_type += o.skipped_link_type;
        *ws += &o.ws;
        *memory += &o.memory;
    }
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, o: Stats) {
        *self += &o;
    }
}
