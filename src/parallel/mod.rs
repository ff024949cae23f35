//! `--threads N`: connections shared out among N decoders, the reading thread and N-1 workers,
//! with the output one thread would write, byte for byte.
//!
//! One reader (the calling thread) reads packets, decodes them to TCP and keeps the flow
//! table: it numbers connections, sweeps, evicts, with the rules of [`crate::analyzer`]
//! ([`sweep_due`], [`eviction_victims`]). Each connection lives on one decoder: the reader
//! itself for a share that leaves it as busy as a worker (see [`reader_share`]), the worker
//! threads in turn for the rest. Every decoder runs an [`Analyzer`] that the reader's table
//! places segments in ([`Analyzer::placed_segment`]); what only the decoder knows (whether a
//! connection is finished: its FINs delivered, its session given up) the reader asks for and
//! waits: at a fresh SYN on known endpoints and at each sweep, rare in capture time.
//!
//! Every packet has a number. Decoders write their events into buffers marked with the
//! packet, the step ([`Step`]) and the connection they belong to, and say how far they have
//! got; a writer thread merges the buffers in that order, which is one thread's.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread;

use crate::analyzer::{
    Analyzer, AnalyzerOptions, Place, Stats, Step, SweepPlan, eviction_victims, starts_again,
    sweep_due, sweep_may_list,
};
use crate::anomaly::{AnomalyKind, Cause};
use crate::capture::Source;
use crate::event::{
    AnomalyEvent, CloseEvent, CloseInfo, ConnectionEvent, Direction, EndReason, Event, EventSink,
    FlowCounters, FlowEvent, FlowMeta, FrameEvent, HandshakeEvent, MessageEvent, Payload,
    TcpSummary, Timestamp, TsPrecision,
};
use crate::net::defrag::Defragmenter;
use crate::net::segment::{self, Cut, Skip, TcpFlags, TcpSegment};
use crate::net::tcp::FlowKey;
use crate::output::OutputSink;
use crate::output::{JsonWriter, TextWriter};
use crate::wire::frame::FrameHeader;
use crate::wire::http::{AcceptVerdict, UpgradeRequest, UpgradeResponse};
use crate::{RunControl, RunEnd, RunError, Turn, read_loop};

/// The most decoding threads a run uses; more would only cost memory and switches.
pub const MAX_THREADS: u16 = 256;

/// Threads when the user names none: one per CPU, within [`MAX_THREADS`].
pub fn default_threads() -> usize {
    thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, usize::from(MAX_THREADS))
}

/// A batch is handed over when it holds this many payload bytes or segments.
const BATCH_BYTES: usize = 256 * 1024;
const BATCH_SEGMENTS: usize = 2048;
/// The largest payload one segment can bring (IPv6 jumbograms aside): a batch is handed over
/// once it passes BATCH_BYTES, so this is its overshoot.
const MAX_SEGMENT: usize = 64 * 1024;
/// Batches in flight per worker: bounds the memory between reader and workers.
const BATCHES_IN_FLIGHT: usize = 4;
/// What reading and routing every packet costs the reader, relative to decoding all of them:
/// decoding alone is cheap enough that reading costs nearly as much; printing events makes
/// decoding about twice as dear. From per-thread CPU times on the bench capture
/// (`benches/run.sh`), then tuned there for the shortest runs with 2 CPUs.
const READ_COST_QUIET: f64 = 0.9;
const READ_COST_PRINTING: f64 = 0.55;
/// Reading a file, a decoder hands its events to the writer thread once this many bytes wait
/// (or after [`PROGRESS_EVERY`] batches): every handover wakes the writer. Live, events go out
/// after every batch.
const OUTPUT_CHUNK: usize = 1 << 20;
/// Output chunks waiting for the writer, and spare buffers, per decoder.
const CHUNKS_IN_FLIGHT: usize = 2;

/// How workers write events.
#[derive(Clone, Copy, Debug)]
pub enum Format {
    Json(TsPrecision),
    Text {
        precision: TsPrecision,
        color: bool,
        /// `--summary`: the table of every connection at the end.
        summary: bool,
    },
    /// `-q`: nothing.
    Quiet,
    /// Events for a sink that takes events, not bytes (`wsnoop diagnose`): see [`run_events`].
    Events,
}

/// Where output belongs in one thread's order: the packet's number, the step, the connection
/// (see [`mark`]). A decoder's output only ever goes forward in this order.
type Mark = u128;

/// Packs a mark; connection numbers below 2^56 (one thread would need years to pass it).
fn mark(packet: u64, step: Step, id: u64) -> Mark {
    (u128::from(packet) << 64) | (u128::from(step as u8) << 56) | u128::from(id & ((1 << 56) - 1))
}

/// The end of the capture, after every packet.
const FINISH_PACKET: u64 = u64::MAX;
/// A decoder with nothing new to write still says how far it got after this many batches:
/// until it does, the writer holds every other decoder's output.
const PROGRESS_EVERY: u32 = 4;
/// The reader hands every worker its batch at least this often (in packets), full or not, so
/// that a worker with quiet connections holds no one up for long.
const EPOCH_PACKETS: u64 = 8192;

/// One step for a worker, its payload (if any) in the batch's byte buffer.
enum Op {
    Segment {
        packet: u64,
        ts: Timestamp,
        place: Place,
        src: SocketAddr,
        dst: SocketAddr,
        seq: u32,
        ack: u32,
        flags: TcpFlags,
        start: usize,
        len: usize,
        cut: Option<Cut>,
    },
    Evict {
        packet: u64,
        ts: Timestamp,
        victims: Vec<(u64, FlowKey)>,
    },
}

/// What the reader waits for, after a batch's steps.
enum Request {
    Sweep { packet: u64, ts: Timestamp },
    Finished(FlowKey),
}

enum Reply {
    /// The connections the sweep removed.
    Swept(Vec<FlowKey>),
    Finished(bool),
}

struct Batch {
    ops: Vec<Op>,
    bytes: Vec<u8>,
    /// Every step marked before this is in this batch or an earlier one.
    through: Mark,
    request: Option<Request>,
}

impl Default for Batch {
    /// Room for a full batch from the start: batches circulate, and growing them would copy.
    fn default() -> Self {
        Batch {
            ops: Vec::with_capacity(BATCH_SEGMENTS),
            bytes: Vec::with_capacity(BATCH_BYTES + MAX_SEGMENT),
            through: 0,
            request: None,
        }
    }
}

impl Batch {
    fn push(&mut self, packet: u64, ts: Timestamp, place: Place, seg: &TcpSegment<'_>) {
        self.ops.push(Op::Segment {
            packet,
            ts,
            place,
            src: seg.src,
            dst: seg.dst,
            seq: seg.seq,
            ack: seg.ack,
            flags: seg.flags,
            start: self.bytes.len(),
            len: seg.payload.len(),
            cut: seg.cut,
        });
        self.bytes.extend_from_slice(seg.payload);
    }

    fn is_full(&self) -> bool {
        self.bytes.len() >= BATCH_BYTES || self.ops.len() >= BATCH_SEGMENTS
    }
}

/// The reader's flow table entry: what it needs to number, sweep and evict as the analyzer
/// would. The rest of the connection is on its decoder.
struct Entry {
    id: u64,
    last_seen: Timestamp,
    owner: Owner,
    /// A FIN routed per direction (side A -> B, B -> A), an RST: a connection can only be
    /// finished once FINs went both ways or an RST came (a half's FIN is delivered only after
    /// its FIN was seen; only an RST closes it otherwise), so without them no one is asked.
    fin: [bool; 2],
    rst: bool,
}

impl Entry {
    fn may_be_finished(&self) -> bool {
        self.rst || self.fin == [true, true]
    }

    fn note(&mut self, from_a: bool, flags: TcpFlags) {
        self.fin[usize::from(!from_a)] |= flags.fin;
        self.rst |= flags.rst;
    }
}

/// Which thread decodes a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    Reader,
    /// A worker's index: u16 keeps the reader's table entries small.
    Worker(u16),
}

/// The share of connections the reader decodes itself, so that with `threads` decoders on as
/// many CPUs it is as busy as each worker: with decoding all connections costing 1 and reading
/// costing `read_cost`, `read_cost + share = (1 - share) / (threads - 1)`. Zero when reading
/// alone keeps the reader busier than a worker.
fn reader_share(format: Format, threads: usize) -> f64 {
    let read_cost = match format {
        Format::Quiet => READ_COST_QUIET,
        Format::Json(_) | Format::Text { .. } | Format::Events => READ_COST_PRINTING,
    };
    let workers = threads.max(2) as f64 - 1.0;
    ((1.0 - workers * read_cost) / (workers + 1.0)).max(0.0)
}

/// A worker's sink: events written into a buffer the writer thread takes.
enum WorkerSink {
    Json(JsonWriter<Vec<u8>>),
    Text(TextWriter<Vec<u8>>),
    Quiet,
}

impl WorkerSink {
    fn new(format: Format) -> Self {
        match format {
            Format::Json(p) => WorkerSink::Json(JsonWriter::new(Vec::new(), p)),
            Format::Text {
                precision, color, ..
            } => WorkerSink::Text(TextWriter::new(Vec::new(), precision, color)),
            Format::Quiet | Format::Events => WorkerSink::Quiet,
        }
    }

    /// Bytes written since the last [`WorkerSink::take`].
    fn pending(&self) -> usize {
        match self {
            WorkerSink::Json(w) => w.get_ref().len(),
            WorkerSink::Text(w) => w.get_ref().len(),
            WorkerSink::Quiet => 0,
        }
    }

    /// What was written since the last call, swapped for `spare` (a buffer the writer thread
    /// gave back), so buffers circulate instead of being allocated per batch.
    fn take(&mut self, spare: Vec<u8>) -> Vec<u8> {
        match self {
            WorkerSink::Json(w) => std::mem::replace(w.get_mut(), spare),
            WorkerSink::Text(w) => std::mem::replace(w.get_mut(), spare),
            WorkerSink::Quiet => Vec::new(),
        }
    }
}

impl EventSink for WorkerSink {
    fn event(&mut self, event: &Event<'_>) {
        match self {
            WorkerSink::Json(w) => w.event(event),
            WorkerSink::Text(w) => w.event(event),
            WorkerSink::Quiet => {}
        }
    }
}

/// A decoder's sink: the worker sink, with a mark wherever the output's place changes.
struct Marked<'a> {
    sink: WorkerSink,
    /// The place of the events to come, set by whoever drives the analyzer (also from inside
    /// a sweep, through its marker).
    next: &'a Cell<Mark>,
    current: Mark,
    /// (place, end offset in the buffer): the bytes since the previous entry belong there.
    marks: Vec<(Mark, usize)>,
    /// `--summary`: every connection's flow event, kept for the table at the end.
    flows: Option<Vec<(Mark, OwnedFlow)>>,
    /// [`Format::Events`]: the events themselves, their strings and payloads in `arena`.
    events: Option<Vec<(Mark, OwnedEvent)>>,
    arena: Vec<u8>,
}

/// Where a string or payload of an owned event sits in its chunk's arena.
#[derive(Clone, Copy, Debug)]
struct Span {
    start: usize,
    len: usize,
}

/// A payload: text or data, in the arena.
#[derive(Clone, Copy, Debug)]
struct OwnedPayload {
    text: bool,
    span: Span,
}

/// An event, owned, to be handed to another thread's sink. Strings and payloads go into the
/// chunk's arena, so that a frame costs no allocation.
enum OwnedEvent {
    Connection {
        flow: FlowMeta,
        tcp: TcpSummary,
        end: EndReason,
    },
    Flow(Box<OwnedFlow>),
    Handshake {
        ts: Timestamp,
        flow: FlowMeta,
        heads: Box<(UpgradeRequest, UpgradeResponse)>,
        accept: AcceptVerdict,
        upgraded: bool,
        latency: f64,
    },
    Frame {
        ts: Timestamp,
        flow: FlowMeta,
        dir: Direction,
        header: FrameHeader,
        payload: OwnedPayload,
        truncated: bool,
        close: Option<(Option<u16>, Span)>,
    },
    Message {
        ts: Timestamp,
        flow: FlowMeta,
        dir: Direction,
        text: bool,
        len: u64,
        wire_len: u64,
        frames: u64,
        compressed: bool,
        payload: OwnedPayload,
        truncated: bool,
        incomplete: bool,
        undecodable: bool,
    },
    Close {
        ts: Timestamp,
        flow: FlowMeta,
        initiator: Option<Direction>,
        code: Option<u16>,
        reason: Option<Span>,
        reply_code: Option<u16>,
        replied: bool,
        clean: bool,
        end: EndReason,
    },
    Anomaly {
        ts: Timestamp,
        flow: FlowMeta,
        dir: Option<Direction>,
        kind: AnomalyKind,
        cause: Cause,
        detail: Span,
    },
}

fn keep(arena: &mut Vec<u8>, bytes: &[u8]) -> Span {
    let start = arena.len();
    arena.extend_from_slice(bytes);
    Span {
        start,
        len: bytes.len(),
    }
}

fn keep_payload(arena: &mut Vec<u8>, payload: &Payload<'_>) -> OwnedPayload {
    match payload {
        Payload::Text(t) => OwnedPayload {
            text: true,
            span: keep(arena, t.as_bytes()),
        },
        Payload::Data(d) => OwnedPayload {
            text: false,
            span: keep(arena, d),
        },
    }
}

fn bytes_at(arena: &[u8], span: Span) -> &[u8] {
    arena
        .get(span.start..span.start + span.len)
        .unwrap_or_default()
}

/// Text kept from a `&str`: always UTF-8.
fn str_at(arena: &[u8], span: Span) -> &str {
    std::str::from_utf8(bytes_at(arena, span)).unwrap_or_default()
}

fn payload_at(arena: &[u8], p: OwnedPayload) -> Payload<'_> {
    if p.text {
        Payload::Text(str_at(arena, p.span))
    } else {
        Payload::Data(bytes_at(arena, p.span))
    }
}

impl OwnedEvent {
    fn of(event: &Event<'_>, arena: &mut Vec<u8>) -> Self {
        match event {
            Event::Connection(e) => OwnedEvent::Connection {
                flow: *e.flow,
                tcp: e.tcp.clone(),
                end: e.end,
            },
            Event::Flow(e) => OwnedEvent::Flow(Box::new(OwnedFlow::of(e))),
            Event::Handshake(e) => OwnedEvent::Handshake {
                ts: e.ts,
                flow: *e.flow,
                heads: Box::new((e.request.clone(), e.response.clone())),
                accept: e.accept,
                upgraded: e.upgraded,
                latency: e.latency,
            },
            Event::Frame(e) => OwnedEvent::Frame {
                ts: e.ts,
                flow: *e.flow,
                dir: e.dir,
                header: *e.header,
                payload: keep_payload(arena, &e.payload),
                truncated: e.truncated,
                close: e
                    .close
                    .as_ref()
                    .map(|c| (c.code, keep(arena, c.reason.as_bytes()))),
            },
            Event::Message(e) => OwnedEvent::Message {
                ts: e.ts,
                flow: *e.flow,
                dir: e.dir,
                text: e.text,
                len: e.len,
                wire_len: e.wire_len,
                frames: e.frames,
                compressed: e.compressed,
                payload: keep_payload(arena, &e.payload),
                truncated: e.truncated,
                incomplete: e.incomplete,
                undecodable: e.undecodable,
            },
            Event::Close(e) => OwnedEvent::Close {
                ts: e.ts,
                flow: *e.flow,
                initiator: e.initiator,
                code: e.code,
                reason: e.reason.map(|r| keep(arena, r.as_bytes())),
                reply_code: e.reply_code,
                replied: e.replied,
                clean: e.clean,
                end: e.end,
            },
            Event::Anomaly(e) => OwnedEvent::Anomaly {
                ts: e.ts,
                flow: *e.flow,
                dir: e.dir,
                kind: e.kind,
                cause: e.cause,
                detail: keep(arena, e.detail.as_bytes()),
            },
        }
    }

    /// Hands the event, as it was, to `sink`.
    fn deliver(&self, arena: &[u8], sink: &mut dyn EventSink) {
        match self {
            OwnedEvent::Connection { flow, tcp, end } => {
                sink.event(&Event::Connection(ConnectionEvent {
                    flow,
                    tcp,
                    end: *end,
                }))
            }
            OwnedEvent::Flow(f) => sink.event(&f.event()),
            OwnedEvent::Handshake {
                ts,
                flow,
                heads,
                accept,
                upgraded,
                latency,
            } => sink.event(&Event::Handshake(HandshakeEvent {
                ts: *ts,
                flow,
                request: &heads.0,
                response: &heads.1,
                accept: *accept,
                upgraded: *upgraded,
                latency: *latency,
            })),
            OwnedEvent::Frame {
                ts,
                flow,
                dir,
                header,
                payload,
                truncated,
                close,
            } => sink.event(&Event::Frame(FrameEvent {
                ts: *ts,
                flow,
                dir: *dir,
                header,
                payload: payload_at(arena, *payload),
                truncated: *truncated,
                close: close.map(|(code, reason)| CloseInfo {
                    code,
                    reason: str_at(arena, reason),
                }),
            })),
            OwnedEvent::Message {
                ts,
                flow,
                dir,
                text,
                len,
                wire_len,
                frames,
                compressed,
                payload,
                truncated,
                incomplete,
                undecodable,
            } => sink.event(&Event::Message(MessageEvent {
                ts: *ts,
                flow,
                dir: *dir,
                text: *text,
                len: *len,
                wire_len: *wire_len,
                frames: *frames,
                compressed: *compressed,
                payload: payload_at(arena, *payload),
                truncated: *truncated,
                incomplete: *incomplete,
                undecodable: *undecodable,
            })),
            OwnedEvent::Close {
                ts,
                flow,
                initiator,
                code,
                reason,
                reply_code,
                replied,
                clean,
                end,
            } => sink.event(&Event::Close(CloseEvent {
                ts: *ts,
                flow,
                initiator: *initiator,
                code: *code,
                reason: reason.map(|r| str_at(arena, r)),
                reply_code: *reply_code,
                replied: *replied,
                clean: *clean,
                end: *end,
            })),
            OwnedEvent::Anomaly {
                ts,
                flow,
                dir,
                kind,
                cause,
                detail,
            } => sink.event(&Event::Anomaly(AnomalyEvent {
                ts: *ts,
                flow,
                dir: *dir,
                kind: *kind,
                cause: *cause,
                detail: str_at(arena, *detail),
            })),
        }
    }
}

/// A flow event, owned: one per WebSocket connection, for `--summary`.
struct OwnedFlow {
    ts: Timestamp,
    flow: FlowMeta,
    start: Timestamp,
    uri: Option<String>,
    protocol: Option<String>,
    extensions: Vec<String>,
    status: Option<u16>,
    counters: FlowCounters,
    ping_rtt: Option<f64>,
    bytes_cut: [u64; 2],
    end: EndReason,
}

impl OwnedFlow {
    fn of(e: &FlowEvent<'_>) -> Self {
        OwnedFlow {
            ts: e.ts,
            flow: *e.flow,
            start: e.start,
            uri: e.uri.map(str::to_string),
            protocol: e.protocol.map(str::to_string),
            extensions: e.extensions.to_vec(),
            status: e.status,
            counters: e.counters.clone(),
            ping_rtt: e.ping_rtt,
            bytes_cut: e.bytes_cut,
            end: e.end,
        }
    }

    fn event(&self) -> Event<'_> {
        Event::Flow(FlowEvent {
            ts: self.ts,
            flow: &self.flow,
            start: self.start,
            uri: self.uri.as_deref(),
            protocol: self.protocol.as_deref(),
            extensions: &self.extensions,
            status: self.status,
            counters: &self.counters,
            ping_rtt: self.ping_rtt,
            bytes_cut: self.bytes_cut,
            end: self.end,
        })
    }
}

/// The `--summary` table of every decoder's connections, in one thread's order.
fn summary_table(
    mut flows: Vec<(Mark, OwnedFlow)>,
    precision: TsPrecision,
    color: bool,
) -> std::io::Result<Vec<u8>> {
    flows.sort_by_key(|f| f.0);
    let mut table = TextWriter::new(Vec::new(), precision, color).with_summary();
    for (_, flow) in &flows {
        table.event(&flow.event());
    }
    // The decoders printed the events; only the table is wanted from this writer.
    table.get_mut().clear();
    table.finish()?;
    Ok(std::mem::take(table.get_mut()))
}

impl<'a> Marked<'a> {
    fn new(format: Format, next: &'a Cell<Mark>) -> Self {
        let summary = matches!(format, Format::Text { summary: true, .. });
        Marked {
            sink: WorkerSink::new(format),
            next,
            current: 0,
            marks: Vec::new(),
            flows: summary.then(Vec::new),
            events: matches!(format, Format::Events).then(Vec::new),
            arena: Vec::new(),
        }
    }

    fn close_mark(&mut self) {
        let len = self.sink.pending();
        if len > self.marks.last().map_or(0, |m| m.1) {
            self.marks.push((self.current, len));
        }
    }

    /// What waits to be handed over, roughly in bytes.
    fn pending(&self) -> usize {
        self.sink.pending()
            + self.arena.len()
            + self
                .events
                .as_ref()
                .map_or(0, |e| e.len() * std::mem::size_of::<(Mark, OwnedEvent)>())
    }

    /// What was written since the last call, marked; `spare` becomes the buffer.
    fn take(&mut self, source: usize, spare: Vec<u8>, progress: Mark) -> Chunk {
        self.close_mark();
        Chunk {
            source,
            bytes: self.sink.take(spare),
            marks: std::mem::take(&mut self.marks),
            events: self.events.as_mut().map(std::mem::take).unwrap_or_default(),
            arena: std::mem::take(&mut self.arena),
            progress,
        }
    }
}

impl EventSink for Marked<'_> {
    fn event(&mut self, event: &Event<'_>) {
        let next = self.next.get();
        if next != self.current {
            self.close_mark();
            self.current = next;
        }
        if let Some(events) = &mut self.events {
            events.push((next, OwnedEvent::of(event, &mut self.arena)));
            return;
        }
        if let (Event::Flow(flow), Some(flows)) = (event, &mut self.flows) {
            flows.push((next, OwnedFlow::of(flow)));
        }
        self.sink.event(event);
    }
}

/// A decoder's output and how far it has got: it will write nothing more before `progress`.
struct Chunk {
    source: usize,
    bytes: Vec<u8>,
    marks: Vec<(Mark, usize)>,
    /// [`Format::Events`]: the events instead of bytes.
    events: Vec<(Mark, OwnedEvent)>,
    arena: Vec<u8>,
    progress: Mark,
}

/// Runs a sweep on a decoder's connections and says which it removed.
fn sweep_shard(
    analyzer: &mut Analyzer,
    packet: u64,
    ts: Timestamp,
    sink: &mut Marked<'_>,
) -> Vec<FlowKey> {
    let plan: SweepPlan = analyzer.sweep_plan(ts);
    let next = sink.next;
    analyzer.apply_sweep(&plan, ts, sink, &mut |step, id| {
        next.set(mark(packet, step, id))
    });
    plan.linger
        .iter()
        .chain(&plan.timed_out)
        .map(|&(_, key)| key)
        .collect()
}

fn evict_shard(
    analyzer: &mut Analyzer,
    packet: u64,
    ts: Timestamp,
    victims: &[(u64, FlowKey)],
    sink: &mut Marked<'_>,
) {
    let next = sink.next;
    analyzer.apply_evict(victims, ts, sink, &mut |step, id| {
        next.set(mark(packet, step, id))
    });
}

fn finish_shard(analyzer: &mut Analyzer, sink: &mut Marked<'_>) {
    let next = sink.next;
    analyzer.finish_marked(sink, &mut |step, id| {
        next.set(mark(FINISH_PACKET, step, id))
    });
}

/// The channels of one worker.
struct WorkerEnds {
    batches: Receiver<Batch>,
    empties: SyncSender<Batch>,
    replies: SyncSender<Reply>,
    output: Option<SyncSender<Chunk>>,
    spares: Receiver<Vec<u8>>,
}

/// `live`: every batch's events go out at once, so they appear as they happen.
fn worker(
    index: usize,
    options: AnalyzerOptions,
    format: Format,
    ends: WorkerEnds,
    live: bool,
) -> (Stats, Vec<(Mark, OwnedFlow)>) {
    let mut analyzer = Analyzer::new(options);
    let next = Cell::new(0);
    let mut sink = Marked::new(format, &next);
    let mut unreported = 0u32;
    let mut progress = 0;
    for mut batch in ends.batches {
        for op in &mut batch.ops {
            match op {
                Op::Segment {
                    packet,
                    ts,
                    place,
                    src,
                    dst,
                    seq,
                    ack,
                    flags,
                    start,
                    len,
                    cut,
                } => {
                    let seg = TcpSegment {
                        src: *src,
                        dst: *dst,
                        seq: *seq,
                        ack: *ack,
                        flags: *flags,
                        payload: &batch.bytes[*start..*start + *len],
                        cut: *cut,
                    };
                    next.set(mark(*packet, Step::Packet, 0));
                    analyzer.placed_segment(*ts, &seg, *place, &mut sink);
                }
                Op::Evict {
                    packet,
                    ts,
                    victims,
                } => evict_shard(&mut analyzer, *packet, *ts, victims, &mut sink),
            }
        }
        match batch.request.take() {
            None => {}
            Some(Request::Sweep { packet, ts }) => {
                let removed = sweep_shard(&mut analyzer, packet, ts, &mut sink);
                let _ = ends.replies.send(Reply::Swept(removed));
            }
            Some(Request::Finished(key)) => {
                let _ = ends
                    .replies
                    .send(Reply::Finished(analyzer.is_finished(&key)));
            }
        }
        progress = progress.max(batch.through);
        unreported += 1;
        if let Some(output) = &ends.output
            && (live || sink.pending() >= OUTPUT_CHUNK || unreported >= PROGRESS_EVERY)
        {
            unreported = 0;
            let spare = ends.spares.try_recv().unwrap_or_default();
            if output.send(sink.take(index, spare, progress)).is_err() {
                break;
            }
        }
        batch.ops.clear();
        batch.bytes.clear();
        batch.through = 0;
        // The reader may be gone already: then the batch is simply dropped.
        let _ = ends.empties.try_send(batch);
    }
    finish_shard(&mut analyzer, &mut sink);
    if let Some(output) = &ends.output {
        let _ = output.send(sink.take(index, Vec::new(), Mark::MAX));
    }
    (analyzer.stats(), sink.flows.take().unwrap_or_default())
}

/// One decoder's chunks, waiting to be written in order: the first chunk's next mark and
/// where its bytes start.
#[derive(Default)]
struct Queue {
    chunks: VecDeque<Chunk>,
    cursor: Cursor,
    progress: Mark,
}

/// A place in a queue: which chunk, which of its marks, from which byte.
#[derive(Clone, Copy, Default)]
struct Cursor {
    chunk: usize,
    mark: usize,
    start: usize,
}

/// The most pieces one write(2) takes (IOV_MAX on Linux).
const MAX_PIECES: usize = 1024;

/// Writes what every decoder has handed over, in one thread's order, up to `bound`: the
/// smallest mark first. Pieces go out together with writev, not copied into one buffer.
fn write_merged(
    queues: &mut [Queue],
    out: &mut dyn Write,
    bound: Mark,
    pieces: &mut Vec<(usize, usize, usize, usize)>,
    spares: &[SyncSender<Vec<u8>>],
) -> std::io::Result<()> {
    loop {
        pieces.clear();
        let mut cursors: Vec<Cursor> = queues.iter().map(|q| q.cursor).collect();
        while pieces.len() < MAX_PIECES {
            let head = |i: usize| {
                let c = cursors[i];
                queues[i]
                    .chunks
                    .get(c.chunk)
                    .map(|chunk| chunk.marks[c.mark].0)
            };
            let Some((source, _)) = (0..queues.len())
                .filter_map(|i| head(i).map(|m| (i, m)))
                .filter(|&(_, m)| m < bound)
                .min_by_key(|&(_, m)| m)
            else {
                break;
            };
            let c = &mut cursors[source];
            let chunk = &queues[source].chunks[c.chunk];
            let end = chunk.marks[c.mark].1;
            match pieces.last_mut() {
                // The same decoder's next bytes: one piece.
                Some(last) if last.0 == source && last.1 == c.chunk && last.3 == c.start => {
                    last.3 = end;
                }
                _ => pieces.push((source, c.chunk, c.start, end)),
            }
            c.start = end;
            c.mark += 1;
            if c.mark == chunk.marks.len() {
                *c = Cursor {
                    chunk: c.chunk + 1,
                    mark: 0,
                    start: 0,
                };
            }
        }
        if pieces.is_empty() {
            return Ok(());
        }
        let mut slices: Vec<std::io::IoSlice<'_>> = pieces
            .iter()
            .map(|&(q, chunk, start, end)| {
                std::io::IoSlice::new(&queues[q].chunks[chunk].bytes[start..end])
            })
            .collect();
        let mut slices = &mut slices[..];
        while !slices.is_empty() {
            match out.write_vectored(slices) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => std::io::IoSlice::advance_slices(&mut slices, n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        for ((q, c), spare) in queues.iter_mut().zip(cursors).zip(spares) {
            q.cursor = c;
            q.cursor.chunk = 0;
            // Written chunks go back to their decoder to be filled again.
            for chunk in q.chunks.drain(..c.chunk) {
                let mut bytes = chunk.bytes;
                bytes.clear();
                let _ = spare.try_send(bytes);
            }
        }
    }
}

/// Writes every decoder's output in one thread's order: the smallest mark first, once no
/// decoder can still write anything before it.
fn writer(
    sources: usize,
    output: Receiver<Chunk>,
    spares: Vec<SyncSender<Vec<u8>>>,
    mut out: Box<dyn Write + Send>,
    live: bool,
    reader_gone: &AtomicBool,
) -> std::io::Result<()> {
    let mut queues: Vec<Queue> = (0..sources).map(|_| Queue::default()).collect();
    let mut pieces = Vec::with_capacity(MAX_PIECES);
    let result = (|| {
        for chunk in &output {
            let source = chunk.source;
            let q = &mut queues[source];
            q.progress = q.progress.max(chunk.progress);
            if chunk.marks.is_empty() {
                let mut bytes = chunk.bytes;
                bytes.clear();
                let _ = spares[source].try_send(bytes);
            } else {
                q.chunks.push_back(chunk);
            }
            let bound = queues.iter().map(|q| q.progress).min().unwrap_or(Mark::MAX);
            write_merged(&mut queues, &mut *out, bound, &mut pieces, &spares)?;
            if live {
                out.flush()?;
            }
        }
        write_merged(&mut queues, &mut *out, Mark::MAX, &mut pieces, &spares)?;
        out.flush()
    })();
    if result.is_err() {
        reader_gone.store(true, Ordering::Relaxed);
        // Keep taking chunks so that no decoder waits on a writer that stopped.
        for _ in &output {}
    }
    result
}

/// One decoder's events waiting for the sink: the first chunk's next event.
#[derive(Default)]
struct EventQueue {
    chunks: VecDeque<Chunk>,
    next: usize,
    progress: Mark,
}

/// Hands every decoder's events to `sink` in one thread's order, up to `bound`.
fn deliver_merged(queues: &mut [EventQueue], sink: &mut dyn EventSink, bound: Mark) {
    loop {
        let Some((source, _)) = queues
            .iter()
            .enumerate()
            .filter_map(|(i, q)| q.chunks.front().map(|c| (i, c.events[q.next].0)))
            .filter(|&(_, m)| m < bound)
            .min_by_key(|&(_, m)| m)
        else {
            return;
        };
        let q = &mut queues[source];
        let Some(chunk) = q.chunks.front() else {
            return;
        };
        chunk.events[q.next].1.deliver(&chunk.arena, sink);
        q.next += 1;
        if q.next == chunk.events.len() {
            q.chunks.pop_front();
            q.next = 0;
        }
    }
}

/// [`writer`] for a sink that takes events.
fn event_writer(sources: usize, output: Receiver<Chunk>, sink: &mut (dyn EventSink + Send)) {
    let mut queues: Vec<EventQueue> = (0..sources).map(|_| EventQueue::default()).collect();
    for chunk in &output {
        let q = &mut queues[chunk.source];
        q.progress = q.progress.max(chunk.progress);
        if !chunk.events.is_empty() {
            q.chunks.push_back(chunk);
        }
        let bound = queues.iter().map(|q| q.progress).min().unwrap_or(Mark::MAX);
        deliver_merged(&mut queues, sink, bound);
    }
    deliver_merged(&mut queues, sink, Mark::MAX);
}

/// Where a threaded run's output goes.
enum Output<'s> {
    Bytes(Box<dyn Write + Send>),
    Events(&'s mut (dyn EventSink + Send)),
}

/// The reader's side of the workers: their batches filling, and the channels.
struct Workers {
    filling: Vec<Batch>,
    senders: Vec<SyncSender<Batch>>,
    empties: Vec<Receiver<Batch>>,
    replies: Vec<Receiver<Reply>>,
}

impl Workers {
    /// Hands worker `i` its batch, with every step before `through`.
    fn send(&mut self, i: usize, through: Mark, request: Option<Request>) {
        let fresh = self.empties[i].try_recv().unwrap_or_default();
        let mut full = std::mem::replace(&mut self.filling[i], fresh);
        full.through = through;
        full.request = request;
        let _ = self.senders[i].send(full);
    }

    fn send_all(&mut self, through: Mark) {
        for i in 0..self.filling.len() {
            self.send(i, through, None);
        }
    }

    /// Asks worker `i`, once it has done every step before `through`, and waits.
    fn ask(&mut self, i: usize, through: Mark, request: Request) -> Option<Reply> {
        self.send(i, through, Some(request));
        self.replies[i].recv().ok()
    }
}

/// Reads `source` to its end with `threads` decoders (the reader and `threads - 1` workers),
/// writing their events to `out` as one thread would. Returns how the run ended and the counts.
pub fn run(
    source: &mut Source,
    options: &AnalyzerOptions,
    threads: usize,
    format: Format,
    out: Box<dyn Write + Send>,
    control: RunControl<'_>,
) -> Result<(RunEnd, Stats), RunError> {
    run_to(
        source,
        options,
        threads,
        format,
        Output::Bytes(out),
        control,
    )
}

/// [`run`] for a sink that takes events (`wsnoop diagnose`): it gets them in one thread's
/// order, on the writer thread.
pub fn run_events(
    source: &mut Source,
    options: &AnalyzerOptions,
    threads: usize,
    sink: &mut (dyn EventSink + Send),
    control: RunControl<'_>,
) -> Result<(RunEnd, Stats), RunError> {
    run_to(
        source,
        options,
        threads,
        Format::Events,
        Output::Events(sink),
        control,
    )
}

fn run_to(
    source: &mut Source,
    options: &AnalyzerOptions,
    threads: usize,
    format: Format,
    out: Output<'_>,
    control: RunControl<'_>,
) -> Result<(RunEnd, Stats), RunError> {
    // A pipe's events are written as they happen, as a live capture's are.
    let live = source.is_live() || source.is_stream();
    let threads = threads.clamp(2, usize::from(MAX_THREADS));
    let workers = threads - 1;
    let printing = !matches!(format, Format::Quiet);
    // Output is tagged with its decoder: the workers, then the reader.
    let reader_tag = workers;
    let (output_tx, output_rx) = sync_channel::<Chunk>((workers + 1) * CHUNKS_IN_FLIGHT);
    let mut spare_txs = Vec::new();
    let mut spare_rxs = Vec::new();
    for _ in 0..=workers {
        let (tx, rx) = sync_channel::<Vec<u8>>(CHUNKS_IN_FLIGHT);
        spare_txs.push(tx);
        spare_rxs.push(rx);
    }
    let reader_spares = spare_rxs.pop().expect("one spare channel per decoder");
    let reader_gone = AtomicBool::new(false);
    let mut stats = Stats::default();
    let share = reader_share(format, threads);
    let limits = options.flows;
    // Decoders hold what the reader's table places in them: they never sweep or evict.
    let mut shard_options = options.clone();
    shard_options.flows.max_flows = usize::MAX;
    let mut own = Analyzer::new(shard_options.clone());
    let own_next = Cell::new(0);
    let mut own_sink = Marked::new(format, &own_next);
    let mut table: HashMap<FlowKey, Entry, foldhash::fast::RandomState> = HashMap::default();
    let mut next_id = 0u64;
    let mut reader_taken = 0u64;
    let mut next_worker = 0usize;
    let mut last_sweep = i64::MIN;
    let mut defrag = Defragmenter::default();
    let mut control = control;

    let (end, worker_stats, write_error) = thread::scope(|scope| {
        let reader_gone = &reader_gone;
        // A thread the system refuses ends the run before it reads anything.
        let mut spawn_error = None;
        let writer = if printing {
            let spawned = thread::Builder::new().spawn_scoped(scope, move || match out {
                Output::Bytes(out) => {
                    writer(workers + 1, output_rx, spare_txs, out, live, reader_gone)
                }
                Output::Events(sink) => {
                    event_writer(workers + 1, output_rx, sink);
                    Ok(())
                }
            });
            spawned.map_err(|e| spawn_error = Some(e)).ok()
        } else {
            drop(output_rx);
            None
        };
        let mut pool = Workers {
            filling: Vec::new(),
            senders: Vec::new(),
            empties: Vec::new(),
            replies: Vec::new(),
        };
        let mut handles = Vec::new();
        for (index, spares) in spare_rxs.into_iter().enumerate() {
            if spawn_error.is_some() {
                break;
            }
            let (batch_tx, batch_rx) = sync_channel::<Batch>(BATCHES_IN_FLIGHT);
            let (empty_tx, empty_rx) = sync_channel::<Batch>(BATCHES_IN_FLIGHT + 1);
            let (reply_tx, reply_rx) = sync_channel::<Reply>(1);
            let ends = WorkerEnds {
                batches: batch_rx,
                empties: empty_tx,
                replies: reply_tx,
                output: printing.then(|| output_tx.clone()),
                spares,
            };
            let options = shard_options.clone();
            let spawned = thread::Builder::new()
                .spawn_scoped(scope, move || worker(index, options, format, ends, live));
            match spawned {
                Ok(handle) => handles.push(handle),
                Err(e) => spawn_error = Some(e),
            }
            pool.filling.push(Batch::default());
            pool.senders.push(batch_tx);
            pool.empties.push(empty_rx);
            pool.replies.push(reply_rx);
        }
        // The reader's own events, marked, with how far it has got.
        let hand_over_own = |own_sink: &mut Marked<'_>, progress: Mark| {
            if printing {
                let spare = reader_spares.try_recv().unwrap_or_default();
                let _ = output_tx.send(own_sink.take(reader_tag, spare, progress));
            }
        };
        let mut packet: u64 = 0;
        let mut epoch_start: u64 = 0;
        let mut own_unreported = 0u32;
        // The run loop is one thread's (crate::read_loop); each turn is the reader's here.
        let mut turn = |turn: Turn<'_>| -> Result<Option<RunEnd>, RunError> {
            let packet_read = match turn {
                Turn::Check => {
                    if let Some(e) = spawn_error.take() {
                        return Err(RunError::Threads(e));
                    }
                    return Ok(reader_gone
                        .load(Ordering::Relaxed)
                        .then_some(RunEnd::OutputClosed));
                }
                Turn::After => return Ok(None),
                Turn::Idle => {
                    // Live and quiet: hand over what waits, so events appear as they happen.
                    if packet > epoch_start {
                        epoch_start = packet;
                        pool.send_all(mark(packet, Step::Linger, 0));
                        hand_over_own(&mut own_sink, mark(packet, Step::Linger, 0));
                    }
                    return Ok(None);
                }
                Turn::Packet(p) => p,
            };
            stats.packets += 1;
            let (ts, data, link) = (packet_read.ts, packet_read.data, packet_read.link);
            let here = mark(packet, Step::Linger, 0);
            if sweep_due(last_sweep, ts) {
                last_sweep = ts.secs;
                defrag.expire(ts);
                // A worker none of whose connections the sweep can list is not asked: a clock
                // that jumps at every packet costs no round trip per packet.
                let mut asked = vec![false; pool.filling.len()];
                for e in table.values() {
                    if let Owner::Worker(i) = e.owner
                        && let idle = ts.secs.saturating_sub(e.last_seen.secs)
                        && sweep_may_list(idle, e.may_be_finished(), &limits)
                        && let Some(a) = asked.get_mut(usize::from(i))
                    {
                        *a = true;
                    }
                }
                for (i, &ask) in asked.iter().enumerate() {
                    if ask {
                        pool.send(i, here, Some(Request::Sweep { packet, ts }));
                    }
                }
                for key in sweep_shard(&mut own, packet, ts, &mut own_sink) {
                    table.remove(&key);
                }
                for (i, &ask) in asked.iter().enumerate() {
                    if ask && let Ok(Reply::Swept(keys)) = pool.replies[i].recv() {
                        for key in keys {
                            table.remove(&key);
                        }
                    }
                }
            }
            let mut full = false;
            let mut route =
                |seg: &TcpSegment<'_>, pool: &mut Workers, own_sink: &mut Marked<'_>| {
                    let (key, from_a) = FlowKey::new(seg.src, seg.dst);
                    if table.len() >= limits.max_flows && !table.contains_key(&key) {
                        let entries = table.iter().map(|(k, e)| (e.last_seen, e.id, *k));
                        let victims = eviction_victims(entries);
                        let mut per_worker: Vec<Vec<(u64, FlowKey)>> = vec![Vec::new(); workers];
                        let mut mine = Vec::new();
                        for &(id, k) in &victims {
                            match table.remove(&k).map(|e| e.owner) {
                                Some(Owner::Reader) => mine.push((id, k)),
                                Some(Owner::Worker(i)) => per_worker[usize::from(i)].push((id, k)),
                                None => {}
                            }
                        }
                        if !mine.is_empty() {
                            evict_shard(&mut own, packet, ts, &mine, own_sink);
                        }
                        for (i, victims) in per_worker.into_iter().enumerate() {
                            if !victims.is_empty() {
                                pool.filling[i].ops.push(Op::Evict {
                                    packet,
                                    ts,
                                    victims,
                                });
                            }
                        }
                    }
                    let (owner, place) = match table.get_mut(&key) {
                        Some(e) => {
                            let owner = e.owner;
                            // The analyzer's rule; whether the connection is finished its decoder
                            // knows once it has caught up, asked only when it may be.
                            let may_be_finished = e.may_be_finished();
                            let restart = starts_again(seg.flags, || {
                                may_be_finished
                                    && match owner {
                                        Owner::Reader => own.is_finished(&key),
                                        Owner::Worker(i) => matches!(
                                            pool.ask(usize::from(i), here, Request::Finished(key)),
                                            Some(Reply::Finished(true))
                                        ),
                                    }
                            });
                            e.last_seen = ts;
                            let place = if restart {
                                e.id = next_id;
                                next_id += 1;
                                e.fin = [false; 2];
                                e.rst = false;
                                Place::Start(e.id)
                            } else {
                                Place::Continue
                            };
                            e.note(from_a, seg.flags);
                            (owner, place)
                        }
                        None => {
                            let id = next_id;
                            next_id += 1;
                            // The reader's count follows its share of all connections so far.
                            let owner = if (reader_taken as f64) < share * (id + 1) as f64 {
                                reader_taken += 1;
                                Owner::Reader
                            } else {
                                let worker = next_worker;
                                next_worker = (worker + 1) % workers;
                                Owner::Worker(u16::try_from(worker).unwrap_or(u16::MAX))
                            };
                            let mut entry = Entry {
                                id,
                                last_seen: ts,
                                owner,
                                fin: [false; 2],
                                rst: false,
                            };
                            entry.note(from_a, seg.flags);
                            table.insert(key, entry);
                            (owner, Place::Start(id))
                        }
                    };
                    match owner {
                        Owner::Reader => {
                            own_next.set(mark(packet, Step::Packet, 0));
                            own.placed_segment(ts, seg, place, own_sink);
                        }
                        Owner::Worker(i) => {
                            let batch = &mut pool.filling[usize::from(i)];
                            batch.push(packet, ts, place, seg);
                            full |= batch.is_full();
                        }
                    }
                };
            match segment::decode(link, data) {
                Ok(seg) => route(&seg, &mut pool, &mut own_sink),
                Err(Skip::NotTcp) => stats.skipped_not_tcp += 1,
                Err(Skip::Malformed) => stats.skipped_malformed += 1,
                Err(Skip::CutHeader) => {
                    stats.skipped_cut_header += 1;
                    stats.snaplen = stats.snaplen.max(data.len() as u32);
                }
                Err(Skip::Fragment) => {
                    stats.fragments += 1;
                    if let Some(datagram) = defrag.add(link, data, ts) {
                        match datagram.segment() {
                            Some(seg) => route(&seg, &mut pool, &mut own_sink),
                            None => stats.skipped_not_tcp += 1,
                        }
                        defrag.recycle(datagram);
                    }
                }
            }
            packet += 1;
            // Every worker gets its batch when one is full, so none falls far behind the
            // others and the writer holds little.
            if full || packet - epoch_start >= EPOCH_PACKETS || own_sink.pending() >= OUTPUT_CHUNK {
                epoch_start = packet;
                let through = mark(packet, Step::Linger, 0);
                pool.send_all(through);
                // Like a worker's: when much waits, or now and then to say how far it got.
                own_unreported += 1;
                if live || own_sink.pending() >= OUTPUT_CHUNK || own_unreported >= PROGRESS_EVERY {
                    own_unreported = 0;
                    hand_over_own(&mut own_sink, through);
                }
            }
            Ok(None)
        };
        let end = read_loop(source, &mut control, &mut turn);
        // Fewer workers than asked for when the system refused one.
        for i in 0..pool.filling.len() {
            if !pool.filling[i].ops.is_empty() {
                pool.send(i, mark(packet, Step::Linger, 0), None);
            }
        }
        drop(pool);
        finish_shard(&mut own, &mut own_sink);
        hand_over_own(&mut own_sink, Mark::MAX);
        let mut flows = own_sink.flows.take().unwrap_or_default();
        let mut worker_stats: Vec<Stats> = Vec::new();
        for handle in handles {
            let (stats, more) = handle.join().unwrap_or_default();
            worker_stats.push(stats);
            flows.extend(more);
        }
        worker_stats.push(own.stats());
        // As one thread: the table ends a run that read its input, not one that failed or
        // whose reader went away.
        if let Format::Text {
            precision,
            color,
            summary: true,
        } = format
            && matches!(
                end,
                Ok(RunEnd::EndOfInput | RunEnd::Interrupted | RunEnd::Duration)
            )
            && let Ok(bytes) = summary_table(flows, precision, color)
            && !bytes.is_empty()
        {
            let len = bytes.len();
            let _ = output_tx.send(Chunk {
                source: reader_tag,
                bytes,
                marks: vec![(Mark::MAX - 1, len)],
                events: Vec::new(),
                arena: Vec::new(),
                progress: Mark::MAX,
            });
        }
        drop(output_tx);
        let write_error = writer.and_then(|w| w.join().ok()).and_then(Result::err);
        (end, worker_stats, write_error)
    });
    let saved = source.flush_savefile();
    for w in &worker_stats {
        stats += w;
    }
    let end = end?;
    saved?;
    match write_error {
        Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok((RunEnd::OutputClosed, stats)),
        Some(e) => Err(RunError::Output(e)),
        None => Ok((end, stats)),
    }
}
