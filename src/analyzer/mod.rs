//! The pipeline's middle: packets in, events out. Decodes each packet, finds its connection,
//! reassembles the direction's bytes and hands them to the connection's session.
//!
//! Memory is bounded whatever the input: the flow table has a maximum size (the longest-idle
//! connections are evicted to make room), idle connections time out in capture time, each
//! direction's out-of-order buffer has a budget, and IP fragments wait only so long.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use crate::anomaly::{AnomalyKind, Cause};
use crate::context::{Context, WsOptions, WsStats};
use crate::event::{
    ConnectionEvent, Direction, EndReason, Event, EventSink, FlowMeta, PayloadKind, TcpSummary,
    Timestamp,
};
use crate::net::defrag::Defragmenter;
use crate::net::link::LinkType;
use crate::net::segment::{self, Skip, TcpFlags, TcpSegment};
use crate::net::tcp::{Chunk, FlowKey, HalfStream, ReassemblyLimits};
use crate::session::{Session, SessionStart};
use crate::wire::http::{looks_like_request_start, looks_like_response_start};
use crate::ws::Scratch;

/// How long a closed connection's entry lingers to absorb its last ACKs, in capture time.
const CLOSED_LINGER_SECS: i64 = 10;
/// How often, in capture time, the flow table is swept.
const SWEEP_INTERVAL_SECS: i64 = 5;

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
    pub midstream: MidstreamOptions,
    /// Emit a connection event for every TCP connection as it leaves the table.
    pub report_connections: bool,
}

/// Counts reported at the end of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub packets: u64,
    pub tcp_packets: u64,
    pub skipped_not_tcp: u64,
    pub skipped_malformed: u64,
    pub fragments: u64,
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
            connections,
            evicted,
            timed_out,
            truncated_packets,
            bytes_cut,
            snaplen,
            skipped_cut_header,
            skipped_link_type,
            ws,
        } = self;
        *packets += o.packets;
        *tcp_packets += o.tcp_packets;
        *skipped_not_tcp += o.skipped_not_tcp;
        *skipped_malformed += o.skipped_malformed;
        *fragments += o.fragments;
        *connections += o.connections;
        *evicted += o.evicted;
        *timed_out += o.timed_out;
        *truncated_packets += o.truncated_packets;
        *bytes_cut += o.bytes_cut;
        *snaplen = (*snaplen).max(o.snaplen);
        *skipped_cut_header += o.skipped_cut_header;
        *skipped_link_type += o.skipped_link_type;
        *ws += &o.ws;
    }
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, o: Stats) {
        *self += &o;
    }
}

/// What the flow table decided about a segment's connection (see [`Analyzer::placed_segment`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// It continues the connection the table holds for its endpoints.
    Continue,
    /// It starts connection number `id`: a new entry, or a restart of a finished one.
    Start(u64),
}

/// Where the events of one step of a sweep, an eviction or the end of the capture belong:
/// one thread emits them in this order (the step, then the connection number).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    /// A finished connection leaves after lingering (reports only).
    Linger = 0,
    /// An idle connection is ended.
    TimeoutEnd = 1,
    TimeoutRemove = 2,
    /// A connection is evicted to make room.
    EvictEnd = 3,
    EvictRemove = 4,
    /// The packet itself.
    Packet = 5,
}

/// Told before each connection's part of a multi-connection step; one thread ignores it.
pub type Marker<'m> = &'m mut dyn FnMut(Step, u64);

/// What one sweep does, decided from the table: connections to drop after lingering, and
/// idle ones to end; each in connection order.
#[derive(Debug, Default)]
pub struct SweepPlan {
    pub linger: Vec<(u64, FlowKey)>,
    pub timed_out: Vec<(u64, FlowKey)>,
}

/// Whether a sweep can list a connection idle for `idle` seconds (see
/// [`Analyzer::sweep_plan`]): a finished one lingers [`CLOSED_LINGER_SECS`], an unfinished one
/// times out. `may_be_finished`: false when it surely is not.
pub fn sweep_may_list(idle: i64, may_be_finished: bool, limits: &FlowLimits) -> bool {
    let timeout = limits.idle_timeout_secs;
    if may_be_finished {
        idle >= timeout.min(CLOSED_LINGER_SECS)
    } else {
        idle >= timeout
    }
}

/// Whether a segment on endpoints the table holds starts a new connection there: a fresh SYN
/// on a finished connection does. `finished` is asked only for a fresh SYN.
pub fn starts_again(flags: TcpFlags, finished: impl FnOnce() -> bool) -> bool {
    flags.syn && !flags.ack && finished()
}

/// True when a sweep is due at `now`.
pub fn sweep_due(last_sweep: i64, now: Timestamp) -> bool {
    now.secs >= last_sweep.saturating_add(SWEEP_INTERVAL_SECS)
}

/// The connections evicted to make room in a full table, given as `(last_seen, id, key)`:
/// the longest-idle tenth, ties broken by connection number so the choice never depends on
/// the table's order; returned in connection order. Two passes over the table keep this
/// small: the cutoff from the ages alone, then the victims' keys.
pub fn eviction_victims(
    entries: impl Iterator<Item = (Timestamp, u64, FlowKey)> + Clone,
) -> Vec<(u64, FlowKey)> {
    let mut ages: Vec<(Timestamp, u64)> = entries.clone().map(|(ts, id, _)| (ts, id)).collect();
    if ages.is_empty() {
        return Vec::new();
    }
    let count = (ages.len() / 10).max(1);
    let (_, &mut cutoff, _) = ages.select_nth_unstable(count - 1);
    drop(ages);
    // (last_seen, id) is unique: exactly `count` entries are at or before the cutoff.
    let mut victims: Vec<(u64, FlowKey)> = entries
        .filter(|&(ts, id, _)| (ts, id) <= cutoff)
        .map(|(_, id, key)| (id, key))
        .collect();
    victims.sort_unstable();
    victims
}

/// The application half of a connection: who is the client, and the session.
#[derive(Debug)]
struct App {
    id: u64,
    key: FlowKey,
    /// Known from the SYN, or from which side speaks HTTP first.
    client_is_a: Option<bool>,
    /// The handshake was not captured: the connection was recognised from its frames.
    midstream: bool,
    first_seen: Timestamp,
    /// The session decoded WebSocket at some point.
    was_websocket: bool,
    /// What the snapshot length cut, once it cuts anything: most captures cut nothing, so
    /// the table's entries do not carry it.
    cuts: Option<Box<Cuts>>,
    session: Session,
}

/// What the snapshot length cut off one connection's packets.
#[derive(Debug, Default)]
struct Cuts {
    /// Payload bytes, per direction of side A -> B and B -> A.
    bytes: [u64; 2],
    /// The captured length of the last packet cut.
    snaplen: u32,
    /// Each direction's first cut was reported; later ones are only counted.
    reported: [bool; 2],
}

impl App {
    fn bytes_cut(&self) -> [u64; 2] {
        self.cuts.as_ref().map_or([0; 2], |c| c.bytes)
    }
}

/// TCP facts per side (index 0: side A), for connection events.
#[derive(Debug, Default)]
struct SideFacts {
    syns: [u32; 2],
    synacks: [u32; 2],
    rst: [bool; 2],
    fin: [bool; 2],
    bytes: [u64; 2],
    first_payload: [Option<PayloadKind>; 2],
}

#[derive(Debug)]
struct Connection {
    /// Index 0 carries bytes from side A to side B.
    halves: [HalfStream; 2],
    app: App,
    last_seen: Timestamp,
    /// Kept only for `wsnoop diagnose`, which reports every connection.
    facts: Option<Box<SideFacts>>,
    /// Why the connection was closed (RST, eviction, timeout, the capture's end), once it is.
    end: Option<EndReason>,
}

impl Connection {
    /// Closed: nothing more of it is delivered, its session has ended.
    fn closed(&self) -> bool {
        self.end.is_some()
    }

    fn is_finished(&self) -> bool {
        self.closed() || self.halves.iter().all(HalfStream::is_finished)
    }

    fn note(&mut self, seg: &TcpSegment<'_>, from_a: bool) {
        let side = usize::from(!from_a);
        let Some(f) = self.facts.as_deref_mut() else {
            return;
        };
        match (seg.flags.syn, seg.flags.ack) {
            (true, false) => f.syns[side] += 1,
            (true, true) => f.synacks[side] += 1,
            _ => {}
        }
        f.rst[side] |= seg.flags.rst;
        f.fin[side] |= seg.flags.fin;
        f.bytes[side] += seg.payload.len() as u64 + seg.cut.map_or(0, |c| u64::from(c.bytes));
        if f.first_payload[side].is_none() && !seg.payload.is_empty() {
            f.first_payload[side] = Some(PayloadKind::of(seg.payload));
        }
    }

    /// Reports the connection as it leaves the table, oriented client first.
    fn report(&self, sink: &mut dyn EventSink) {
        let key = self.app.key;
        let (client_is_a, guessed) = match self.app.client_is_a {
            Some(c) => (c, false),
            // Neither a SYN nor HTTP told: the ephemeral (higher) port is likely the client's.
            None => (key.side_a().port() > key.side_b().port(), true),
        };
        let flow = self.app.flow().unwrap_or_else(|| {
            let (a, b) = (key.side_a(), key.side_b());
            let (client, server) = if client_is_a { (a, b) } else { (b, a) };
            FlowMeta {
                id: self.app.id,
                client,
                server,
                midstream: false,
            }
        });
        let default = SideFacts::default();
        let f = self.facts.as_deref().unwrap_or(&default);
        let (c, s) = if client_is_a { (0, 1) } else { (1, 0) };
        let tcp = TcpSummary {
            syns: f.syns[c],
            synacks: f.synacks[s],
            rst: [f.rst[c], f.rst[s]],
            fin: [f.fin[c], f.fin[s]],
            bytes: [f.bytes[c], f.bytes[s]],
            bytes_cut: {
                let cut = self.app.bytes_cut();
                [cut[c], cut[s]]
            },
            first_payload: [f.first_payload[c], f.first_payload[s]],
            first_seen: self.app.first_seen,
            last_seen: self.last_seen,
            websocket: self.app.was_websocket,
            orientation_guessed: guessed,
        };
        let end = self.end.unwrap_or(if self.is_finished() {
            EndReason::Fin
        } else {
            EndReason::CaptureEnd
        });
        sink.event(&Event::Connection(ConnectionEvent {
            flow: &flow,
            tcp: &tcp,
            end,
        }));
    }
}

pub struct Analyzer {
    options: AnalyzerOptions,
    /// Boxed: the table's slots stay small, so growing it (when old and new tables live at
    /// once) costs little, and a connection never moves.
    flows: HashMap<FlowKey, Box<Connection>, foldhash::fast::RandomState>,
    defrag: Defragmenter,
    next_id: u64,
    scratch: Scratch,
    stats: Stats,
    last_sweep: i64,
}

/// What a chunk handler needs from the analyzer, borrowed apart from the flow table.
struct Env<'a> {
    ts: Timestamp,
    sink: &'a mut dyn EventSink,
    options: &'a AnalyzerOptions,
    stats: &'a mut WsStats,
    scratch: &'a mut Scratch,
}

impl Env<'_> {
    fn context<'e>(&'e mut self, flow: &'e FlowMeta) -> Context<'e> {
        self.context_and_scratch(flow).0
    }

    /// A session's context and the shared buffers, borrowed together.
    fn context_and_scratch<'e>(&'e mut self, flow: &'e FlowMeta) -> (Context<'e>, &'e mut Scratch) {
        let ctx = Context {
            ts: self.ts,
            flow,
            sink: &mut *self.sink,
            options: &self.options.ws,
            stats: &mut *self.stats,
            cause: Cause::Traffic,
            bytes_cut: [0; 2],
        };
        (ctx, &mut *self.scratch)
    }
}

impl Analyzer {
    pub fn new(options: AnalyzerOptions) -> Self {
        Analyzer {
            options,
            flows: HashMap::default(),
            defrag: Defragmenter::default(),
            next_id: 0,
            scratch: Scratch::default(),
            stats: Stats::default(),
            last_sweep: i64::MIN,
        }
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// True once `-c` frames have been emitted: reading further cannot change the output.
    pub fn is_done(&self) -> bool {
        self.options
            .ws
            .max_frames
            .is_some_and(|max| self.stats.ws.frames_emitted >= max)
    }

    /// One captured packet. The link type comes with each packet: a pcapng file may hold
    /// interfaces of several link types.
    pub fn packet(&mut self, link: LinkType, ts: Timestamp, data: &[u8], sink: &mut dyn EventSink) {
        self.stats.packets += 1;
        if ts.secs >= self.last_sweep.saturating_add(SWEEP_INTERVAL_SECS) {
            self.sweep(ts, sink);
        }
        match segment::decode(link, data) {
            Ok(segment) => {
                self.stats.tcp_packets += 1;
                self.segment(ts, &segment, sink);
            }
            Err(Skip::NotTcp) => self.stats.skipped_not_tcp += 1,
            Err(Skip::Malformed) => self.stats.skipped_malformed += 1,
            Err(Skip::CutHeader) => {
                self.stats.skipped_cut_header += 1;
                self.stats.snaplen = self.stats.snaplen.max(data.len() as u32);
            }
            Err(Skip::Fragment) => {
                self.stats.fragments += 1;
                let Some(datagram) = self.defrag.add(link, data, ts) else {
                    return;
                };
                match datagram.segment() {
                    Some(segment) => {
                        self.stats.tcp_packets += 1;
                        self.segment(ts, &segment, sink);
                    }
                    None => self.stats.skipped_not_tcp += 1,
                }
                self.defrag.recycle(datagram);
            }
        }
    }

    fn new_connection(id: u64, key: FlowKey, ts: Timestamp, facts: bool) -> Connection {
        Connection {
            halves: [HalfStream::default(), HalfStream::default()],
            app: App {
                id,
                key,
                client_is_a: None,
                midstream: false,
                first_seen: ts,
                was_websocket: false,
                cuts: None,
                session: Session::new(),
            },
            last_seen: ts,
            facts: facts.then(Box::default),
            end: None,
        }
    }

    /// A segment whose connection a flow table elsewhere (the parallel reader's) placed: this
    /// analyzer then holds a share of the connections and never sweeps or evicts on its own.
    pub fn placed_segment(
        &mut self,
        ts: Timestamp,
        seg: &TcpSegment<'_>,
        place: Place,
        sink: &mut dyn EventSink,
    ) {
        self.stats.tcp_packets += 1;
        self.segment_placed(ts, seg, Some(place), sink);
    }

    /// Whether the connection on these endpoints is finished: a fresh SYN on them starts
    /// another one.
    pub fn is_finished(&self, key: &FlowKey) -> bool {
        self.flows.get(key).is_some_and(|c| c.is_finished())
    }

    fn segment(&mut self, ts: Timestamp, seg: &TcpSegment<'_>, sink: &mut dyn EventSink) {
        self.segment_placed(ts, seg, None, sink);
    }

    /// `place`: what another table decided, or None to decide here.
    fn segment_placed(
        &mut self,
        ts: Timestamp,
        seg: &TcpSegment<'_>,
        place: Option<Place>,
        sink: &mut dyn EventSink,
    ) {
        let (key, from_a) = FlowKey::new(seg.src, seg.dst);
        if place.is_none()
            && self.flows.len() >= self.options.flows.max_flows
            && !self.flows.contains_key(&key)
        {
            self.evict(ts, sink);
        }
        // One hash lookup per packet: the entry either continues a connection or starts one.
        let conn = match self.flows.entry(key) {
            Entry::Occupied(entry) => {
                let conn = entry.into_mut();
                // A fresh SYN on a finished connection's endpoints starts a new connection.
                let restart = match place {
                    Some(Place::Start(id)) => Some(id),
                    Some(Place::Continue) => None,
                    None => starts_again(seg.flags, || conn.is_finished()).then_some(self.next_id),
                };
                if let Some(id) = restart {
                    if !conn.is_finished() {
                        let mut env = Env {
                            ts,
                            sink: &mut *sink,
                            options: &self.options,
                            stats: &mut self.stats.ws,
                            scratch: &mut self.scratch,
                        };
                        conn.close(EndReason::Evicted, &mut env);
                    }
                    if self.options.report_connections {
                        conn.report(sink);
                    }
                    **conn = Self::new_connection(id, key, ts, self.options.report_connections);
                    self.next_id = self.next_id.max(id + 1);
                    self.stats.connections += 1;
                }
                conn
            }
            Entry::Vacant(entry) => {
                let id = match place {
                    Some(Place::Start(id)) => id,
                    // The placing table knows a connection this one does not: cannot happen,
                    // but a number is better than a panic.
                    _ => self.next_id,
                };
                let conn = entry.insert(Box::new(Self::new_connection(
                    id,
                    key,
                    ts,
                    self.options.report_connections,
                )));
                self.next_id = self.next_id.max(id + 1);
                self.stats.connections += 1;
                conn
            }
        };
        conn.last_seen = ts;
        conn.note(seg, from_a);
        if let Some(cut) = seg.cut {
            self.stats.truncated_packets += 1;
            self.stats.bytes_cut += u64::from(cut.bytes);
            self.stats.snaplen = self.stats.snaplen.max(cut.snaplen);
            let cuts = conn.app.cuts.get_or_insert_with(Box::default);
            cuts.bytes[usize::from(!from_a)] += u64::from(cut.bytes);
            cuts.snaplen = cut.snaplen;
        }
        if seg.flags.syn && conn.app.client_is_a.is_none() {
            conn.app
                .set_client(if seg.flags.ack { !from_a } else { from_a }, false);
        }
        if conn.closed() {
            return;
        }
        let mut env = Env {
            ts,
            sink,
            options: &self.options,
            stats: &mut self.stats.ws,
            scratch: &mut self.scratch,
        };
        let [a_to_b, b_to_a] = &mut conn.halves;
        let (half, peer) = if from_a {
            (a_to_b, b_to_a)
        } else {
            (b_to_a, a_to_b)
        };
        let app = &mut conn.app;
        if !app.session.is_ignored() {
            // A half's FIN is delivered once, as its last chunk; the other half does not move
            // while one delivers, so whether its FIN came is known before.
            let peer_finished = peer.is_finished();
            half.push_cut(
                seg.seq,
                seg.flags,
                seg.payload,
                seg.cut.map_or(0, |c| c.bytes),
                ts,
                self.options.reassembly,
                &mut |chunk| app.chunk(from_a, chunk, peer_finished, &mut env),
            );
            if seg.flags.ack && !app.session.is_ignored() {
                let half_finished = half.is_finished();
                peer.acked(seg.ack, &mut |chunk| {
                    app.chunk(!from_a, chunk, half_finished, &mut env)
                });
            }
        }
        if seg.flags.rst {
            conn.close(EndReason::Rst, &mut env);
        }
    }

    /// Ends idle connections, drops long-closed ones and stale IP fragments, so the tables
    /// stay as small as the live traffic.
    fn sweep(&mut self, now: Timestamp, sink: &mut dyn EventSink) {
        self.last_sweep = now.secs;
        self.defrag.expire(now);
        let plan = self.sweep_plan(now);
        self.apply_sweep(&plan, now, sink, &mut |_, _| {});
    }

    /// What a sweep at `now` does to the connections this analyzer holds.
    pub fn sweep_plan(&self, now: Timestamp) -> SweepPlan {
        let idle_limit = self.options.flows.idle_timeout_secs;
        let mut plan = SweepPlan::default();
        for (key, conn) in &self.flows {
            let idle = now.secs.saturating_sub(conn.last_seen.secs);
            if conn.is_finished() {
                if idle >= CLOSED_LINGER_SECS {
                    plan.linger.push((conn.app.id, *key));
                }
            } else if idle >= idle_limit {
                plan.timed_out.push((conn.app.id, *key));
            }
        }
        plan.linger.sort_unstable();
        plan.timed_out.sort_unstable();
        plan
    }

    /// Carries out a sweep: the lingering leave, then the idle are ended, then they leave.
    pub fn apply_sweep(
        &mut self,
        plan: &SweepPlan,
        now: Timestamp,
        sink: &mut dyn EventSink,
        mark: Marker<'_>,
    ) {
        self.remove_connections(&plan.linger, sink, Step::Linger, mark);
        self.stats.timed_out += plan.timed_out.len() as u64;
        self.end_connections(
            &plan.timed_out,
            EndReason::Timeout,
            now,
            sink,
            Step::TimeoutEnd,
            mark,
        );
        self.remove_connections(&plan.timed_out, sink, Step::TimeoutRemove, mark);
    }

    /// Makes room for a new connection by ending the longest-idle tenth of the table.
    fn evict(&mut self, now: Timestamp, sink: &mut dyn EventSink) {
        let entries = self.flows.iter().map(|(k, c)| (c.last_seen, c.app.id, *k));
        let victims = eviction_victims(entries);
        self.apply_evict(&victims, now, sink, &mut |_, _| {});
    }

    /// Ends and removes `victims` (in connection order), chosen by [`eviction_victims`].
    pub fn apply_evict(
        &mut self,
        victims: &[(u64, FlowKey)],
        now: Timestamp,
        sink: &mut dyn EventSink,
        mark: Marker<'_>,
    ) {
        self.stats.evicted += victims.len() as u64;
        self.end_connections(victims, EndReason::Evicted, now, sink, Step::EvictEnd, mark);
        self.remove_connections(victims, sink, Step::EvictRemove, mark);
    }

    fn remove_connections(
        &mut self,
        keys: &[(u64, FlowKey)],
        sink: &mut dyn EventSink,
        step: Step,
        mark: Marker<'_>,
    ) {
        for &(id, key) in keys {
            if let Some(conn) = self.flows.remove(&key)
                && self.options.report_connections
            {
                mark(step, id);
                conn.report(sink);
            }
        }
    }

    fn end_connections(
        &mut self,
        keys: &[(u64, FlowKey)],
        how: EndReason,
        now: Timestamp,
        sink: &mut dyn EventSink,
        step: Step,
        mark: Marker<'_>,
    ) {
        for &(id, key) in keys {
            let Some(conn) = self.flows.get_mut(&key) else {
                continue;
            };
            if conn.closed() {
                continue;
            }
            mark(step, id);
            let mut env = Env {
                ts: if how == EndReason::CaptureEnd {
                    conn.last_seen
                } else {
                    now
                },
                sink: &mut *sink,
                options: &self.options,
                stats: &mut self.stats.ws,
                scratch: &mut self.scratch,
            };
            conn.close(how, &mut env);
        }
    }

    /// The capture ended: deliver what every connection still holds, in connection order.
    pub fn finish(&mut self, sink: &mut dyn EventSink) {
        self.finish_marked(sink, &mut |_, _| {});
    }

    /// [`Analyzer::finish`], telling `mark` whose events follow: the ends are
    /// [`Step::TimeoutEnd`]'s place, the reports [`Step::TimeoutRemove`]'s.
    pub fn finish_marked(&mut self, sink: &mut dyn EventSink, mark: Marker<'_>) {
        let mut open: Vec<(u64, FlowKey)> = self
            .flows
            .iter()
            .filter(|(_, c)| !c.closed())
            .map(|(k, c)| (c.app.id, *k))
            .collect();
        open.sort_unstable();
        self.end_connections(
            &open,
            EndReason::CaptureEnd,
            Timestamp::default(),
            sink,
            Step::TimeoutEnd,
            mark,
        );
        if self.options.report_connections {
            let mut all: Vec<(u64, FlowKey)> =
                self.flows.iter().map(|(k, c)| (c.app.id, *k)).collect();
            all.sort_unstable();
            self.remove_connections(&all, sink, Step::TimeoutRemove, mark);
        }
    }
}

impl Connection {
    fn close(&mut self, how: EndReason, env: &mut Env<'_>) {
        self.end.get_or_insert(how);
        let app = &mut self.app;
        let [a_to_b, b_to_a] = &mut self.halves;
        let b_finished = b_to_a.is_finished();
        a_to_b.flush(&mut |chunk| app.chunk(true, chunk, b_finished, env));
        let a_finished = a_to_b.is_finished();
        b_to_a.flush(&mut |chunk| app.chunk(false, chunk, a_finished, env));
        app.end(how, env);
    }
}

fn direction(from_a: bool, client_is_a: bool) -> Direction {
    if from_a == client_is_a {
        Direction::ClientToServer
    } else {
        Direction::ServerToClient
    }
}

impl App {
    fn set_client(&mut self, client_is_a: bool, midstream: bool) {
        self.client_is_a = Some(client_is_a);
        self.midstream = midstream;
    }

    /// The connection as events name it, once the client is known. Made on demand rather
    /// than stored: a flow table entry stays small.
    fn flow(&self) -> Option<FlowMeta> {
        let client_is_a = self.client_is_a?;
        let (a, b) = (self.key.side_a(), self.key.side_b());
        let (client, server) = if client_is_a { (a, b) } else { (b, a) };
        Some(FlowMeta {
            id: self.id,
            client,
            server,
            midstream: self.midstream,
        })
    }

    /// Decides, from a connection's first bytes, who is the client and how to decode it.
    fn orient(&mut self, from_a: bool, bytes: &[u8], options: &AnalyzerOptions) {
        let ws_port =
            |addr: std::net::SocketAddr| options.midstream.ws_ports.contains(&addr.port());
        let (a, b) = (self.key.side_a(), self.key.side_b());
        if self.client_is_a.is_none() {
            if looks_like_request_start(bytes) {
                self.set_client(from_a, false);
            } else if looks_like_response_start(bytes) {
                self.set_client(!from_a, false);
            } else if ws_port(b) != ws_port(a) {
                self.set_client(ws_port(b), true);
                self.session = Session::start(SessionStart::WebSocket);
            } else if options.midstream.heuristics {
                self.session = Session::start(SessionStart::Probe);
            } else {
                self.session.ignore();
            }
        } else if let (Some(flow), true) = (self.flow(), self.session.is_fresh()) {
            // The handshake was seen to start (SYN) but the first bytes are not HTTP: only a
            // port the user named makes them WebSocket.
            let client_sent = from_a == self.client_is_a.unwrap_or(true);
            let speaks_http = if client_sent {
                looks_like_request_start(bytes)
            } else {
                looks_like_response_start(bytes)
            };
            if !speaks_http && ws_port(flow.server) {
                self.midstream = true;
                self.session = Session::start(SessionStart::WebSocket);
            }
        }
        if let Some(flow) = self.flow()
            && ws_port(flow.server)
        {
            self.session.expect_websocket();
        }
    }

    /// Bytes lost before the client is known: a probe cannot look across the hole.
    fn give_up_probe(&mut self, env: &mut Env<'_>) {
        env.stats.probes_given_up += u64::from(self.session.is_probing());
        self.session.ignore();
    }

    /// One chunk of the half from side A (`from_a`) or B; `peer_finished`: the other half
    /// has delivered its FIN.
    fn chunk(&mut self, from_a: bool, chunk: Chunk<'_>, peer_finished: bool, env: &mut Env<'_>) {
        match chunk {
            Chunk::Data(bytes, ts) => {
                // Bytes held out of order carry the time their segment was captured.
                env.ts = ts;
                if self.session.is_fresh() {
                    self.orient(from_a, bytes, env.options);
                }
                if self.session.is_ignored() {
                    return;
                }
                if self.client_is_a.is_none() {
                    // Orientation unknown: a probing session decides from both directions.
                    let Some(client_is_a) = self.session.probe(from_a, bytes) else {
                        env.stats.probes_given_up += u64::from(self.session.is_ignored());
                        return;
                    };
                    self.set_client(client_is_a, true);
                    let Some(flow) = self.flow() else {
                        return;
                    };
                    let (mut ctx, scratch) = env.context_and_scratch(&flow);
                    self.session.replay_probe(client_is_a, scratch, &mut ctx);
                    self.was_websocket = true;
                    return;
                }
                let Some(flow) = self.flow() else {
                    return;
                };
                let dir = direction(from_a, self.client_is_a.unwrap_or(true));
                let (mut ctx, scratch) = env.context_and_scratch(&flow);
                self.session.data(dir, bytes, scratch, &mut ctx);
                self.was_websocket |= self.session.is_websocket();
                self.midstream |= self.session.picked_up();
            }
            Chunk::Gap(lost) => {
                let (Some(client_is_a), Some(flow)) = (self.client_is_a, self.flow()) else {
                    self.give_up_probe(env);
                    return;
                };
                let (mut ctx, scratch) = env.context_and_scratch(&flow);
                ctx.cause = Cause::Gap;
                self.session
                    .gap(direction(from_a, client_is_a), lost, scratch, &mut ctx);
                self.midstream |= self.session.picked_up();
            }
            Chunk::Cut(cut) => {
                if self.session.is_ignored() {
                    return;
                }
                let (Some(client_is_a), Some(flow)) = (self.client_is_a, self.flow()) else {
                    self.give_up_probe(env);
                    return;
                };
                let dir = direction(from_a, client_is_a);
                let (mut ctx, scratch) = env.context_and_scratch(&flow);
                ctx.cause = Cause::Snaplen;
                let side = usize::from(!from_a);
                // Once per direction: with a small snapshot length every packet is cut.
                let cuts = self.cuts.get_or_insert_with(Box::default);
                if !cuts.reported[side] {
                    cuts.reported[side] = true;
                    let detail = format!(
                        "the capture's snapshot length cut {} packets at {} bytes: {cut} bytes \
here were not captured (frames resume after them); later cuts of this direction are counted \
in the flow's bytes_cut_{}",
                        dir.name(),
                        cuts.snaplen,
                        dir.name()
                    );
                    ctx.anomaly(Some(dir), AnomalyKind::TruncatedCapture, &detail);
                }
                self.session.gap(dir, cut, scratch, &mut ctx);
                self.midstream |= self.session.picked_up();
            }
            Chunk::Conflict(bytes) => {
                if let (Some(client_is_a), Some(flow)) = (self.client_is_a, self.flow()) {
                    let mut ctx = env.context(&flow);
                    self.session
                        .conflict(direction(from_a, client_is_a), bytes, &mut ctx);
                }
            }
            Chunk::Fin => {
                if peer_finished {
                    self.end(EndReason::Fin, env);
                }
            }
        }
    }

    /// Ends the session; it reports only once, however often the connection is ended.
    fn end(&mut self, how: EndReason, env: &mut Env<'_>) {
        match self.flow() {
            Some(flow) => {
                let mut ctx = env.context(&flow);
                let client = usize::from(!self.client_is_a.unwrap_or(true));
                let cut = self.bytes_cut();
                ctx.bytes_cut = [cut[client], cut[1 - client]];
                self.session.end(how, self.first_seen, &mut ctx);
            }
            None => self.session.ignore(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16) -> FlowKey {
        let a: std::net::SocketAddr = ([10, 0, 0, 1], port).into();
        let b: std::net::SocketAddr = ([10, 0, 0, 2], 80).into();
        FlowKey::new(a, b).0
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp { secs, nanos: 0 }
    }

    /// A tenth of the table (at least one), the longest idle; among equally idle ones the
    /// lowest numbers, whatever order the table lists them in.
    #[test]
    fn eviction_takes_the_longest_idle_tenth_ties_by_number() {
        let mut entries: Vec<(Timestamp, u64, FlowKey)> = (0..25u16)
            .map(|i| {
                (
                    at(if i % 2 == 0 { 5 } else { 9 }),
                    u64::from(i),
                    key(1000 + i),
                )
            })
            .collect();
        entries.reverse();
        let victims = eviction_victims(entries.iter().copied());
        assert_eq!(
            victims,
            vec![(0, key(1000)), (2, key(1002))],
            "25 entries: 2 victims, the idle ones with the lowest numbers"
        );
        entries.rotate_left(7);
        assert_eq!(eviction_victims(entries.iter().copied()), victims);
        let one = [(at(3), 7, key(1))];
        assert_eq!(eviction_victims(one.iter().copied()), vec![(7, key(1))]);
        assert!(eviction_victims(std::iter::empty()).is_empty());
    }

    #[test]
    fn stats_add_every_counter_and_keep_the_largest_snapshot_length() {
        let mut a = Stats {
            packets: 1,
            evicted: 2,
            snaplen: 96,
            ..Stats::default()
        };
        a.ws.frames = 3;
        let mut b = Stats {
            packets: 10,
            timed_out: 4,
            snaplen: 64,
            ..Stats::default()
        };
        b.ws.frames = 5;
        b.ws.http_given_up.reported = 1;
        a += b;
        assert_eq!(
            (a.packets, a.evicted, a.timed_out, a.snaplen, a.ws.frames),
            (11, 2, 4, 96, 8)
        );
        assert_eq!(a.ws.http_given_up.reported, 1);
    }
}
