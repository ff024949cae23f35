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
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::thread;

use crate::analyzer::{
    Analyzer, AnalyzerOptions, Place, Stats, Step, eviction_victims, starts_again, sweep_due,
    sweep_may_list,
};
use crate::capture::Source;
use crate::event::{EventSink, Timestamp, TsPrecision};
use crate::net::defrag::{Defragmenter, Refused};
use crate::net::segment::{self, Cut, Skip, TcpFlags, TcpSegment};
use crate::net::tcp::FlowKey;
use crate::output::TextStyle;
use crate::{RunControl, RunEnd, RunError, Turn, read_loop};

mod credit;
mod marked;
mod merge;
mod owned;
mod table;
mod worker;

use credit::Credit;
use marked::{Chunk, Marked, evict_shard, finish_shard, sweep_shard};
use merge::{event_writer, summary_table, writer};
use table::ReaderTable;
use worker::{WorkerEnds, worker};

/// The most decoding threads a run uses; more would only cost memory and switches.
pub const MAX_THREADS: u16 = 256;

/// Threads when the user names none: one per CPU, within [`MAX_THREADS`], for a capture
/// file; one for a live capture. Live, the packets come at the network's pace, not the disk's:
/// at 450,000 packets a second (the most tcpreplay sent here, `benches/live.sh`) one decoder
/// used a sixth of a CPU and dropped nothing, while handing packets to workers cost `-q` a
/// sixth to a third more CPU (and a frame's latency through a pipe doubles with two threads).
pub fn default_threads(live: bool) -> usize {
    if live {
        return 1;
    }
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
/// What reading and routing every packet costs the reader, relative to decoding all of them;
/// printing events makes decoding dearer. From per-thread CPU samples (perf) of the default
/// run on the bench capture (`benches/run.sh`) on the 2-CPU VM: with 0.9 and 0.55 (tuned on
/// a VM whose reads cost more) the worker did 60% of the work and the reader waited; with
/// these the two threads are within a few per cent of each other, `-q` 15% shorter. The
/// connections of a capture mostly start at once, so the share cannot be learned while
/// running.
const READ_COST_QUIET: f64 = 0.5;
const READ_COST_PRINTING: f64 = 0.4;
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
    /// Suricata's EVE JSON (`--format eve`); `pcap_cnt`: with each event's packet number (a
    /// capture file's).
    Eve {
        pcap_cnt: bool,
    },
    Text {
        precision: TsPrecision,
        color: bool,
        /// `--summary`: the table of every connection at the end.
        summary: bool,
        /// Message events are printed (else they only complete their last frame).
        messages: bool,
        style: TextStyle,
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
        packet_len: u32,
        payload_at: Option<u64>,
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
            packet_len: seg.packet_len,
            payload_at: seg.payload_at,
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
        Format::Json(_) | Format::Eve { .. } | Format::Text { .. } | Format::Events => {
            READ_COST_PRINTING
        }
    };
    let workers = threads.max(2) as f64 - 1.0;
    ((1.0 - workers * read_cost) / (workers + 1.0)).max(0.0)
}

/// A reason to end the run now: a worker could not be started, or the writer is gone.
fn check(
    spawn_error: &mut Option<std::io::Error>,
    reader_gone: &AtomicBool,
) -> Result<Option<RunEnd>, RunError> {
    if let Some(e) = spawn_error.take() {
        return Err(RunError::Threads(e));
    }
    Ok(reader_gone
        .load(Ordering::Relaxed)
        .then_some(RunEnd::OutputClosed))
}

/// Where a threaded run's output goes.
enum Output<'s> {
    Bytes(Box<dyn Write + Send>),
    Events(&'s mut (dyn EventSink + Send)),
}

/// The reader's side of the workers: their batches filling, and the channels.
///
/// Before the reader waits for a worker (its batches queue full, or a reply), it says how far
/// it has got itself (`own`: hands over its output) and hands every other worker that would
/// otherwise not know it the batch it has, so that the writer waits for no one who waits for
/// the reader (a worker may be waiting for the writer: see [`credit`]).
struct Workers {
    filling: Vec<Batch>,
    senders: Vec<SyncSender<Batch>>,
    empties: Vec<Receiver<Batch>>,
    replies: Vec<Receiver<Reply>>,
    /// The `through` of each worker's last batch.
    sent: Vec<Mark>,
}

impl Workers {
    /// Worker `i`'s batch, ready to go with every step before `through`.
    fn take(&mut self, i: usize, through: Mark, request: Option<Request>) -> Batch {
        let fresh = self.empties[i].try_recv().unwrap_or_default();
        let mut full = std::mem::replace(&mut self.filling[i], fresh);
        full.through = through;
        full.request = request;
        self.sent[i] = self.sent[i].max(through);
        full
    }

    /// Hands worker `i` its batch, with every step before `through`.
    fn send(
        &mut self,
        i: usize,
        through: Mark,
        request: Option<Request>,
        own: &mut dyn FnMut(Mark),
    ) {
        let full = self.take(i, through, request);
        match self.senders[i].try_send(full) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(full)) => {
                self.before_waiting(i, through, own);
                let _ = self.senders[i].send(full);
            }
        }
    }

    /// The reader is about to wait for worker `i`: see [`Workers`].
    fn before_waiting(&mut self, i: usize, through: Mark, own: &mut dyn FnMut(Mark)) {
        own(through);
        for j in 0..self.filling.len() {
            if j == i || self.sent[j] >= through {
                continue;
            }
            let previous = self.sent[j];
            let batch = self.take(j, through, None);
            if let Err(TrySendError::Full(batch)) = self.senders[j].try_send(batch) {
                // Busy: it says how far it got when its queue runs dry. Its steps stay
                // where they were (the spare taken for it is dropped: rare).
                self.filling[j] = batch;
                self.sent[j] = previous;
            }
        }
    }

    fn send_all(&mut self, through: Mark, own: &mut dyn FnMut(Mark)) {
        for i in 0..self.filling.len() {
            self.send(i, through, None, own);
        }
    }

    /// Waits for worker `i`'s reply.
    fn reply(&mut self, i: usize, through: Mark, own: &mut dyn FnMut(Mark)) -> Option<Reply> {
        match self.replies[i].try_recv() {
            Ok(reply) => Some(reply),
            Err(TryRecvError::Disconnected) => None,
            Err(TryRecvError::Empty) => {
                self.before_waiting(i, through, own);
                self.replies[i].recv().ok()
            }
        }
    }

    /// Asks worker `i`, once it has done every step before `through`, and waits.
    fn ask(
        &mut self,
        i: usize,
        through: Mark,
        request: Request,
        own: &mut dyn FnMut(Mark),
    ) -> Option<Reply> {
        self.send(i, through, Some(request), own);
        self.reply(i, through, own)
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
    let live = source.is_live() || source.is_stream() || control.unbuffered;
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
    // Each decoder answers to an equal share of the memory budget: under pressure, and only
    // then, what is given up depends on the thread count.
    shard_options.memory = options.memory.split(threads);
    shard_options.replay = source.replay_file();
    let mut own = Analyzer::new(shard_options.clone());
    let own_next = Cell::new(0);
    let mut own_sink = Marked::new(format, &own_next, &options.select);
    let mut table = ReaderTable::default();
    let mut next_id = 0u64;
    let mut reader_taken = 0u64;
    let mut next_worker = 0usize;
    let mut last_sweep = i64::MIN;
    let mut defrag = Defragmenter::new(options.defrag);
    let mut control = control;
    let credit = Credit::new(workers + 1, shard_options.memory.output_credit());

    let (end, worker_stats, write_error) = thread::scope(|scope| {
        let reader_gone = &reader_gone;
        let credit = &credit;
        // A thread the system refuses ends the run before it reads anything.
        let mut spawn_error = None;
        let writer = if printing {
            let spawned = thread::Builder::new().spawn_scoped(scope, move || match out {
                Output::Bytes(out) => writer(
                    workers + 1,
                    output_rx,
                    spare_txs,
                    out,
                    live,
                    reader_gone,
                    credit,
                ),
                Output::Events(sink) => {
                    event_writer(workers + 1, output_rx, sink, credit);
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
            sent: Vec::new(),
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
            let spawned = thread::Builder::new().spawn_scoped(scope, move || {
                worker(index, options, format, ends, live, credit)
            });
            match spawned {
                Ok(handle) => handles.push(handle),
                Err(e) => spawn_error = Some(e),
            }
            pool.filling.push(Batch::default());
            pool.senders.push(batch_tx);
            pool.empties.push(empty_rx);
            pool.replies.push(reply_rx);
            pool.sent.push(0);
        }
        // The reader's own events, marked, with how far it has got.
        let hand_over_own = |own_sink: &mut Marked<'_>, progress: Mark| {
            if printing {
                let spare = reader_spares.try_recv().unwrap_or_default();
                let chunk = own_sink.take(reader_tag, spare, progress);
                credit.handed(reader_tag, chunk.cost);
                let _ = output_tx.send(chunk);
            }
        };
        let mut packet: u64 = 0;
        let mut epoch_start: u64 = 0;
        let mut own_unreported = 0u32;
        // The run loop is one thread's (crate::read_loop); each turn is the reader's here.
        let mut turn = |turn: Turn<'_>| -> Result<Option<RunEnd>, RunError> {
            let packet_read = match turn {
                Turn::Check => return check(&mut spawn_error, reader_gone),
                Turn::After | Turn::Ahead(..) => return Ok(None),
                Turn::Idle => {
                    // Live and quiet: hand over what waits, so events appear as they happen.
                    if packet > epoch_start {
                        epoch_start = packet;
                        pool.send_all(mark(packet, Step::Linger, 0), &mut |m| {
                            hand_over_own(&mut own_sink, m)
                        });
                        hand_over_own(&mut own_sink, mark(packet, Step::Linger, 0));
                    }
                    return Ok(None);
                }
                Turn::Packet(p) => p,
            };
            stats.packets += 1;
            let (ts, data, link, at) = (
                packet_read.ts,
                packet_read.data,
                packet_read.link,
                packet_read.at,
            );
            let here = mark(packet, Step::Linger, 0);
            if sweep_due(last_sweep, ts) {
                last_sweep = ts.secs;
                defrag.expire(ts);
                // A worker none of whose connections the sweep can list is not asked: a clock
                // that jumps at every packet costs no round trip per packet.
                let mut asked = vec![false; pool.filling.len()];
                for e in table.iter() {
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
                        pool.send(i, here, Some(Request::Sweep { packet, ts }), &mut |m| {
                            hand_over_own(&mut own_sink, m)
                        });
                    }
                }
                for key in sweep_shard(&mut own, packet, ts, &mut own_sink) {
                    table.remove(&key);
                }
                for (i, &ask) in asked.iter().enumerate() {
                    if ask
                        && let Some(Reply::Swept(keys)) =
                            pool.reply(i, here, &mut |m| hand_over_own(&mut own_sink, m))
                    {
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
                    let hash = table.hash(&key);
                    if table.len() >= limits.max_flows && table.get(&key).is_none() {
                        let entries = table.slots().map(|(k, e)| (e.last_seen, e.id, *k));
                        let victims = eviction_victims(entries);
                        let mut per_worker: Vec<Vec<(u64, FlowKey)>> = vec![Vec::new(); workers];
                        let mut mine = Vec::new();
                        for &(id, k) in &victims {
                            match table.remove(&k).map(|(_, e)| e.owner) {
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
                    let (owner, place) = match table.get_hashed(hash, &key) {
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
                                            pool.ask(
                                                usize::from(i),
                                                here,
                                                Request::Finished(key),
                                                &mut |m| hand_over_own(own_sink, m)
                                            ),
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
                            table.insert_new(hash, (key, entry));
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
                Ok(seg) => route(&seg.located(data, at), &mut pool, &mut own_sink),
                Err(Skip::NotTcp) => stats.skipped_not_tcp += 1,
                Err(Skip::Malformed) => stats.skipped_malformed += 1,
                Err(Skip::CutHeader) => {
                    stats.skipped_cut_header += 1;
                    stats.snaplen = stats.snaplen.max(data.len() as u32);
                }
                Err(Skip::Fragment) => {
                    stats.fragments += 1;
                    match defrag.add_checked(link, data, ts) {
                        Ok(Some(datagram)) => {
                            match datagram.segment(data) {
                                Some(seg) => route(&seg, &mut pool, &mut own_sink),
                                None => stats.skipped_not_tcp += 1,
                            }
                            defrag.recycle(datagram);
                        }
                        Ok(None) | Err(Refused::NotTcp { first: false }) => {}
                        Err(Refused::NotTcp { first: true }) => stats.skipped_not_tcp += 1,
                        Err(Refused::Malformed) => stats.skipped_malformed += 1,
                    }
                }
            }
            packet += 1;
            // Every worker gets its batch when one is full, so none falls far behind the
            // others and the writer holds little.
            if full || packet - epoch_start >= EPOCH_PACKETS || own_sink.pending() >= OUTPUT_CHUNK {
                epoch_start = packet;
                let through = mark(packet, Step::Linger, 0);
                pool.send_all(through, &mut |m| hand_over_own(&mut own_sink, m));
                // Like a worker's: when much waits, or now and then to say how far it got.
                own_unreported += 1;
                if live || own_sink.pending() >= OUTPUT_CHUNK || own_unreported >= PROGRESS_EVERY {
                    own_unreported = 0;
                    hand_over_own(&mut own_sink, through);
                    // Every worker has its batch up to here: none holds the writer up for
                    // long (an idle one says how far it got).
                    if printing && !live {
                        credit.wait(reader_tag, through);
                    }
                }
            }
            check(&mut spawn_error, reader_gone)
        };
        let end = read_loop(
            source,
            &mut control,
            &std::cell::Cell::new(false),
            &mut turn,
        );
        // Fewer workers than asked for when the system refused one.
        for i in 0..pool.filling.len() {
            if !pool.filling[i].ops.is_empty() {
                pool.send(i, mark(packet, Step::Linger, 0), None, &mut |m| {
                    hand_over_own(&mut own_sink, m)
                });
            }
        }
        drop(pool);
        finish_shard(&mut own, &mut own_sink);
        hand_over_own(&mut own_sink, Mark::MAX);
        let mut flows = vec![own_sink.flows.take().unwrap_or_default()];
        let mut worker_stats: Vec<Stats> = Vec::new();
        for handle in handles {
            let (stats, more) = handle.join().unwrap_or_default();
            worker_stats.push(stats);
            flows.push(more);
        }
        worker_stats.push(own.stats());
        // As one thread: the table ends a run that read its input, not one that failed or
        // whose reader went away.
        if let Format::Text {
            precision,
            color,
            summary: true,
            ..
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
                // The last chunk: nobody waits for it.
                cost: 0,
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
    stats.defrag = defrag.stats();
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
