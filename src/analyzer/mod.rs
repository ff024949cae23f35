//! The pipeline's middle: packets in, events out. Decodes each packet, finds its connection,
//! reassembles the direction's bytes and hands them to the connection's session.
//!
//! Memory is bounded whatever the input: the flow table has a maximum size (the longest-idle
//! connections are evicted to make room), idle connections time out in capture time, each
//! direction's out-of-order buffer has a budget, and IP fragments wait only so long. Above
//! them all, `--max-memory` ([`budget`]) bounds what the connections cost together.

use std::net::SocketAddr;

use crate::anomaly::Cause;
use crate::context::{Context, WsStats};
use crate::event::{EndReason, EventSink, FlowMeta, Timestamp};
use crate::net::defrag::{Defragmenter, Refused};
use crate::net::link::LinkType;
use crate::net::segment::{self, Skip, TcpSegment};
use crate::net::tcp::{Backing, FlowKey, HalfStream};
use crate::session::Session;
use crate::ws::Scratch;

pub mod budget;
mod connection;
mod layer;
mod rules;
mod secure;
mod stats;
pub(crate) mod table;
#[cfg(test)]
mod tests;

use budget::Budget;
use connection::{App, Connection};
use rules::CLOSED_LINGER_SECS;
pub use rules::{
    Marker, Place, Step, SweepPlan, eviction_victims, starts_again, sweep_due, sweep_may_list,
};
pub use secure::TlsOptions;
pub use stats::{AnalyzerOptions, FlowLimits, MidstreamOptions, Stats};
use table::{FlowTable, Hashed};

pub struct Analyzer {
    options: AnalyzerOptions,
    flows: FlowTable<Box<Connection>>,
    defrag: Defragmenter,
    next_id: u64,
    scratch: Scratch,
    stats: Stats,
    last_sweep: i64,
    budget: Budget,
    /// The last sweep's lists, emptied, for the next: a plan lists thousands of connections
    /// at tens of thousands, and growing a new one at every sweep was half of the sweeps'
    /// 4.5% of such a run (the allocator merges every small free chunk before it hands out a
    /// large one).
    spare_plan: SweepPlan,
    /// The hashes of packets looked ahead at whose connections and sessions are still to be
    /// asked for (see [`Analyzer::look_ahead`]).
    ahead: [Option<Hashed>; AHEAD_RING],
    ahead_at: usize,
}

/// Below this many connections the caches hold enough of their state that looking ahead
/// ([`Analyzer::look_ahead`]) costs more than it saves: paired, one thread, 1.06x the CPU at
/// 5,000 connections, 0.96x at 15,000, 0.84x to 0.88x at 50,000; 7.7% more instructions at 500.
const LOOK_AHEAD_FROM: usize = 8192;
/// How many packets ahead of the one decoded [`Analyzer::look_ahead`] is shown one: the
/// capture's distance, which its steps below fit in.
pub use crate::capture::LOOK_AHEAD;
/// The packets [`Analyzer::look_ahead`] keeps, and how many packets after a slot's line it
/// asks for the connection's lines, and for the session's.
const AHEAD_RING: usize = 8;
const SLOT_TO_CONNECTION: usize = 3;
const SLOT_TO_SESSION: usize = 6;

/// What a chunk handler needs from the analyzer, borrowed apart from the flow table.
struct Env<'a> {
    ts: Timestamp,
    sink: &'a mut dyn EventSink,
    options: &'a AnalyzerOptions,
    stats: &'a mut WsStats,
    scratch: &'a mut Scratch,
    /// Whose fault a gap delivered now is: the capture's, or the memory budget's.
    gap_cause: Cause,
}

impl Env<'_> {
    fn context<'e>(&'e mut self, flow: &'e FlowMeta) -> Context<'e> {
        self.context_and_scratch(flow).0
    }

    /// A session's context and the shared buffers, borrowed together.
    fn context_and_scratch<'e>(&'e mut self, flow: &'e FlowMeta) -> (Context<'e>, &'e mut Scratch) {
        let ctx = Context::new(
            self.ts,
            flow,
            &mut *self.sink,
            &self.options.ws,
            &mut *self.stats,
        );
        (ctx, &mut *self.scratch)
    }
}

impl Analyzer {
    pub fn new(options: AnalyzerOptions) -> Self {
        Analyzer {
            defrag: Defragmenter::new(options.defrag),
            budget: Budget::new(options.memory),
            options,
            flows: FlowTable::default(),
            next_id: 0,
            scratch: Scratch::default(),
            stats: Stats::default(),
            last_sweep: i64::MIN,
            spare_plan: SweepPlan::default(),
            ahead: [None; AHEAD_RING],
            ahead_at: 0,
        }
    }

    /// Whether [`Analyzer::look_ahead`] is worth its cost now: only while the connections are
    /// too many for the caches to hold their state.
    #[inline]
    pub fn wants_look_ahead(&self) -> bool {
        self.flows.len() >= LOOK_AHEAD_FROM
    }

    /// A packet some packets ahead of the next one: its connection's state is asked for in
    /// three steps, packets apart, each needing what the one before brought into the cache
    /// (the table's slot, then the connection, then its session), so that it is there when
    /// the packet comes. Called once per packet, with the endpoints of the packet ahead when
    /// they are known (see [`segment::endpoints_hint`]).
    ///
    /// Only the key's hash is kept between the steps, and the last step asks for the session
    /// of the first connection whose slot the hash finds, without comparing keys: another
    /// connection's slot with the same 7 bits of hash before it is rare and costs only a
    /// useless prefetch, while keeping keys in the ring and comparing them cost 110
    /// instructions a packet (3.7% of a run at 50,000 connections, callgrind).
    #[inline]
    pub fn look_ahead(&mut self, endpoints: Option<(SocketAddr, SocketAddr)>) {
        let next = endpoints.map(|(src, dst)| {
            let hash = self.flows.hash(&FlowKey::new(src, dst).0);
            self.flows.prefetch_slot(hash);
            hash
        });
        let at = self.ahead_at;
        self.ahead[at] = next;
        self.ahead_at = (at + 1) % AHEAD_RING;
        if let Some(hash) = self.ahead[(at + AHEAD_RING - SLOT_TO_CONNECTION) % AHEAD_RING] {
            self.flows.prefetch_candidate(hash);
        }
        if let Some(hash) = self.ahead[(at + AHEAD_RING - SLOT_TO_SESSION) % AHEAD_RING]
            && let Some(conn) = self.flows.candidate(hash)
        {
            conn.app.session.prefetch();
        }
    }

    /// Delivered bytes of packets read with a place in `file` ([`Analyzer::packet_at`]) are
    /// read again from it when a retransmission is compared, instead of being copied.
    pub fn read_again_from(&mut self, file: Option<std::sync::Arc<std::fs::File>>) {
        self.options.replay = file;
    }

    pub fn stats(&self) -> Stats {
        Stats {
            defrag: self.defrag.stats(),
            memory: self.budget.stats,
            ..self.stats
        }
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
        self.packet_at(link, ts, data, None, sink);
    }

    /// One captured packet, which the capture file in [`AnalyzerOptions::replay`] holds at
    /// `at`.
    pub fn packet_at(
        &mut self,
        link: LinkType,
        ts: Timestamp,
        data: &[u8],
        at: Option<u64>,
        sink: &mut dyn EventSink,
    ) {
        self.stats.packets += 1;
        if sweep_due(self.last_sweep, ts) {
            self.sweep(ts, sink);
        }
        match segment::decode(link, data) {
            Ok(segment) => {
                self.stats.tcp_packets += 1;
                self.segment(ts, &segment.located(data, at), sink);
            }
            Err(Skip::NotTcp) => self.stats.skipped_not_tcp += 1,
            Err(Skip::Malformed) => self.stats.skipped_malformed += 1,
            Err(Skip::CutHeader) => {
                self.stats.skipped_cut_header += 1;
                self.stats.snaplen = self.stats.snaplen.max(data.len() as u32);
            }
            Err(Skip::Fragment) => {
                self.stats.fragments += 1;
                let datagram = match self.defrag.add_checked(link, data, ts) {
                    Ok(Some(datagram)) => datagram,
                    Ok(None) | Err(Refused::NotTcp { first: false }) => return,
                    Err(Refused::NotTcp { first: true }) => {
                        self.stats.skipped_not_tcp += 1;
                        return;
                    }
                    Err(Refused::Malformed) => {
                        self.stats.skipped_malformed += 1;
                        return;
                    }
                };
                match datagram.segment(data) {
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
                sides: [(0, 0); 2],
                tls: None,
                session: Session::new(),
            },
            last_seen: ts,
            facts: facts.then(Box::default),
            end: None,
            charged: 0,
            shed: false,
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
        // One probe per packet: it either continues a connection or starts one.
        let hash = self.flows.hash(&key);
        let conn = match self.flows.get_hashed(hash, &key) {
            Some(conn) => {
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
                            gap_cause: Cause::Gap,
                        };
                        conn.close(EndReason::Evicted, &mut env);
                    }
                    if self.options.report_connections {
                        conn.report(sink);
                    }
                    self.budget.charge(conn.charged, 0);
                    *conn = Self::new_connection(id, key, ts, self.options.report_connections);
                    self.next_id = self.next_id.max(id + 1);
                    self.stats.connections += 1;
                }
                conn
            }
            None => {
                if place.is_none() && self.flows.len() >= self.options.flows.max_flows {
                    self.evict(ts, sink);
                }
                let id = match place {
                    Some(Place::Start(id)) => id,
                    // The placing table knows a connection this one does not: cannot happen,
                    // but a number is better than a panic.
                    _ => self.next_id,
                };
                let conn = Box::new(Self::new_connection(
                    id,
                    key,
                    ts,
                    self.options.report_connections,
                ));
                self.next_id = self.next_id.max(id + 1);
                self.stats.connections += 1;
                self.flows.insert_new(hash, conn)
            }
        };
        conn.app.session.prefetch();
        conn.last_seen = ts;
        conn.note(seg, from_a);
        let side = &mut conn.app.sides[usize::from(!from_a)];
        side.0 += 1;
        side.1 += u64::from(seg.packet_len);
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
        // A bare ACK delivers nothing when nothing is held out of order, and frees nothing when
        // no delivered bytes wait for it: what the connection holds cannot change, so it is not
        // measured again (half the packets of most traffic).
        let measure = !seg.payload.is_empty()
            || seg.cut.is_some()
            || seg.flags.syn
            || seg.flags.fin
            || seg.flags.rst
            || conn
                .halves
                .iter()
                .any(|h| h.held_bytes() > 0 || h.remembers());
        let mut env = Env {
            ts,
            sink,
            options: &self.options,
            stats: &mut self.stats.ws,
            scratch: &mut self.scratch,
            gap_cause: Cause::Gap,
        };
        let file = self.options.replay.as_deref();
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
                Backing {
                    file,
                    at: seg.payload_at,
                },
                &mut |chunk| app.chunk(from_a, chunk, peer_finished, &mut env),
            );
            if seg.flags.ack && !app.session.is_ignored() {
                let half_finished = half.is_finished();
                peer.acked(seg.ack, file, &mut |chunk| {
                    app.chunk(!from_a, chunk, half_finished, &mut env)
                });
            }
        }
        if seg.flags.rst {
            conn.close(EndReason::Rst, &mut env);
        }
        // The accountant follows what the connection holds now; only past the budget does it
        // cost more than a comparison.
        if measure {
            let held = conn.held();
            self.budget.charge(conn.charged, held);
            conn.charged = held;
            if self.budget.over(self.flows.len()) {
                self.relieve(ts, sink);
            }
        }
    }

    /// Past the memory budget: the longest-idle connections give up what they hold until the
    /// total is under the low-water mark; if that is not enough, they are ended as evicted
    /// (their entries linger as finished ones do, so the table decides as before).
    fn relieve(&mut self, now: Timestamp, sink: &mut dyn EventSink) {
        let mut order: Vec<(Timestamp, u64, FlowKey)> = self
            .flows
            .iter()
            .filter(|c| !c.closed() && c.charged > 0)
            .map(|c| (c.last_seen, c.app.id, c.app.key))
            .collect();
        order.sort_unstable();
        let flows = self.flows.len();
        'passes: for evict in [false, true] {
            for &(_, _, key) in &order {
                if self.budget.relieved(flows) {
                    break 'passes;
                }
                let Some(conn) = self.flows.get_mut(&key) else {
                    continue;
                };
                if conn.closed() {
                    continue;
                }
                let mut env = Env {
                    ts: now,
                    sink: &mut *sink,
                    options: &self.options,
                    stats: &mut self.stats.ws,
                    scratch: &mut self.scratch,
                    gap_cause: Cause::Gap,
                };
                let lost = if evict {
                    conn.close(EndReason::Evicted, &mut env);
                    for half in &mut conn.halves {
                        half.forget_delivered();
                    }
                    self.budget.stats.evicted += 1;
                    true
                } else {
                    let shed = conn.shed(&mut env);
                    self.budget.stats.bytes += shed.bytes;
                    self.budget.stats.inflaters += shed.inflaters;
                    shed.any()
                };
                if lost && !conn.shed {
                    conn.shed = true;
                    self.budget.stats.connections += 1;
                }
                let held = conn.held();
                self.budget.charge(conn.charged, held);
                conn.charged = held;
            }
        }
        self.budget.relief_ended(flows);
    }

    /// Ends idle connections, drops long-closed ones and stale IP fragments, so the tables
    /// stay as small as the live traffic.
    fn sweep(&mut self, now: Timestamp, sink: &mut dyn EventSink) {
        self.last_sweep = now.secs;
        self.defrag.expire(now);
        let plan = self.sweep_plan(now);
        self.apply_sweep(&plan, now, sink, &mut |_, _| {});
        self.recycle_plan(plan);
    }

    /// What a sweep at `now` does to the connections this analyzer holds. Its lists are the
    /// last plan's, given back with [`Analyzer::recycle_plan`].
    pub fn sweep_plan(&mut self, now: Timestamp) -> SweepPlan {
        let idle_limit = self.options.flows.idle_timeout_secs;
        let mut plan = std::mem::take(&mut self.spare_plan);
        plan.linger.clear();
        plan.timed_out.clear();
        for conn in self.flows.iter() {
            let key = &conn.app.key;
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

    /// Keeps a carried-out plan's room for the next sweep. Its lists are at most as long as
    /// the table was.
    pub fn recycle_plan(&mut self, plan: SweepPlan) {
        self.spare_plan = plan;
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
        let entries = self
            .flows
            .iter()
            .map(|c| (c.last_seen, c.app.id, c.app.key));
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
            let Some(conn) = self.flows.remove(&key) else {
                continue;
            };
            self.budget.charge(conn.charged, 0);
            if self.options.report_connections {
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
                gap_cause: Cause::Gap,
            };
            conn.close(how, &mut env);
            let held = conn.held();
            self.budget.charge(conn.charged, held);
            conn.charged = held;
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
            .filter(|c| !c.closed())
            .map(|c| (c.app.id, c.app.key))
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
                self.flows.iter().map(|c| (c.app.id, c.app.key)).collect();
            all.sort_unstable();
            self.remove_connections(&all, sink, Step::TimeoutRemove, mark);
        }
    }
}
