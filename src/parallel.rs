//! `--threads N`: connections shared out among N decoders, the reading thread and N-1 workers.
//!
//! One reader (the calling thread) reads packets, decodes them to TCP, numbers connections and
//! gives each new connection to a decoder: to itself for a share that leaves it as busy as a
//! worker (see [`reader_share`]), to the worker threads in turn for the rest. Segments of a
//! worker's connections are handed over in batches; the reader's own are decoded at once,
//! without a copy.
//! Every decoder runs its own [`Analyzer`] and writes its events into a buffer that a writer
//! thread copies to the output. A connection lives on one decoder, so its events keep their
//! order; connection numbers come from the reader, so they stay in order of first packet.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread;
use std::time::Instant;

use crate::analyzer::{Analyzer, AnalyzerOptions, FlowLimits, Stats};
use crate::capture::{LIVE_DELIVERY_LIMIT, Next, Source};
use crate::decode::{self, Cut, Defragmenter, Skip, TcpFlags, TcpSegment};
use crate::event::{Event, EventSink, Timestamp};
use crate::output::{JsonWriter, TextWriter, TsPrecision};
use crate::tcp::FlowKey;
use crate::{DRAIN_LIMIT, RunControl, RunEnd, RunError};

/// The most decoding threads a run uses; more would only cost memory and switches.
pub const MAX_THREADS: u16 = 256;

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
/// Reading a file, a decoder hands its events to the writer thread once this many bytes wait:
/// every handover wakes the writer. Live, events go out after every batch.
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
    },
    /// `-q`: nothing.
    Quiet,
}

/// One segment, its payload in the batch's byte buffer.
struct Segment {
    ts: Timestamp,
    id: u64,
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    flags: TcpFlags,
    start: usize,
    len: usize,
    cut: Option<Cut>,
}

struct Batch {
    segments: Vec<Segment>,
    bytes: Vec<u8>,
}

impl Default for Batch {
    /// Room for a full batch from the start: batches circulate, and growing them would copy.
    fn default() -> Self {
        Batch {
            segments: Vec::with_capacity(BATCH_SEGMENTS),
            bytes: Vec::with_capacity(BATCH_BYTES + MAX_SEGMENT),
        }
    }
}

impl Batch {
    fn push(&mut self, ts: Timestamp, id: u64, seg: &TcpSegment<'_>) {
        self.segments.push(Segment {
            ts,
            id,
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
        self.bytes.len() >= BATCH_BYTES || self.segments.len() >= BATCH_SEGMENTS
    }

    fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }
}

/// What the reader remembers of a connection to number it as [`Analyzer`] would.
struct Identity {
    id: u64,
    decoder: Decoder,
    fin: [bool; 2],
    rst: bool,
    last_secs: i64,
}

/// The share of connections the reader decodes itself, so that with `threads` decoders on as
/// many CPUs it is as busy as each worker: with decoding all connections costing 1 and reading
/// costing `read_cost`, `read_cost + share = (1 - share) / (threads - 1)`. Zero when reading
/// alone keeps the reader busier than a worker.
fn reader_share(format: Format, threads: usize) -> f64 {
    let read_cost = match format {
        Format::Quiet => READ_COST_QUIET,
        Format::Json(_) | Format::Text { .. } => READ_COST_PRINTING,
    };
    let workers = threads.max(2) as f64 - 1.0;
    ((1.0 - workers * read_cost) / (workers + 1.0)).max(0.0)
}

/// Which thread decodes a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decoder {
    Reader,
    /// A worker's index: u16 keeps the reader's table entries small.
    Worker(u16),
}

/// Connection numbers in order of first packet, with the analyzer's rules: a fresh SYN on
/// endpoints whose connection ended starts a new one. Bounded like the flow table.
struct Identities {
    map: HashMap<FlowKey, Identity, foldhash::fast::RandomState>,
    next: u64,
    limits: FlowLimits,
    last_sweep: i64,
    workers: usize,
    next_worker: usize,
    reader_share: f64,
    reader_taken: u64,
}

/// How long a finished connection's number is kept for its last ACKs, as in the analyzer.
const FINISHED_LINGER_SECS: i64 = 10;

impl Identities {
    fn new(limits: FlowLimits, workers: usize, reader_share: f64) -> Self {
        Identities {
            map: HashMap::default(),
            next: 0,
            limits,
            last_sweep: i64::MIN,
            workers: workers.max(1),
            next_worker: 0,
            reader_share,
            reader_taken: 0,
        }
    }

    /// The connection's number and decoder.
    fn number(
        &mut self,
        key: FlowKey,
        from_a: bool,
        flags: TcpFlags,
        ts: Timestamp,
    ) -> (u64, Decoder) {
        if ts.secs >= self.last_sweep.saturating_add(5) {
            self.last_sweep = ts.secs;
            let timeout = self.limits.idle_timeout_secs;
            self.map.retain(|_, e| {
                let idle = ts.secs.saturating_sub(e.last_secs);
                let finished = e.rst || e.fin == [true, true];
                idle < timeout && !(finished && idle >= FINISHED_LINGER_SECS)
            });
        }
        if self.map.len() >= self.limits.max_flows && !self.map.contains_key(&key) {
            let mut ages: Vec<i64> = self.map.values().map(|e| e.last_secs).collect();
            let count = (ages.len() / 10).max(1);
            let (_, &mut cutoff, _) = ages.select_nth_unstable(count - 1);
            self.map.retain(|_, e| e.last_secs > cutoff);
        }
        let fresh_syn = flags.syn && !flags.ack;
        let fresh = |id, decoder| Identity {
            id,
            decoder,
            fin: [false; 2],
            rst: false,
            last_secs: ts.secs,
        };
        let entry = match self.map.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => {
                let entry = e.into_mut();
                if fresh_syn && (entry.rst || entry.fin == [true, true]) {
                    // The same decoder: it reports the finished connection before the new one.
                    *entry = fresh(self.next, entry.decoder);
                    self.next += 1;
                }
                entry
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                let id = self.next;
                self.next += 1;
                // The reader's count follows its share of all connections so far, evenly.
                let decoder = if (self.reader_taken as f64) < self.reader_share * (id + 1) as f64 {
                    self.reader_taken += 1;
                    Decoder::Reader
                } else {
                    let worker = self.next_worker;
                    self.next_worker = (worker + 1) % self.workers;
                    Decoder::Worker(u16::try_from(worker).unwrap_or(u16::MAX))
                };
                e.insert(fresh(id, decoder))
            }
        };
        entry.fin[usize::from(!from_a)] |= flags.fin;
        entry.rst |= flags.rst;
        entry.last_secs = ts.secs;
        (entry.id, entry.decoder)
    }
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
            Format::Text { precision, color } => {
                WorkerSink::Text(TextWriter::new(Vec::new(), precision, color))
            }
            Format::Quiet => WorkerSink::Quiet,
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

/// Output of one worker, tagged so the writer can give the buffer back to it.
type Output = (usize, Vec<u8>);

#[allow(clippy::too_many_arguments)]
fn worker(
    index: usize,
    options: AnalyzerOptions,
    format: Format,
    batches: Receiver<Batch>,
    empties: SyncSender<Batch>,
    output: SyncSender<Output>,
    spares: Receiver<Vec<u8>>,
    output_chunk: usize,
) -> Stats {
    let mut analyzer = Analyzer::new(options);
    let mut sink = WorkerSink::new(format);
    for mut batch in batches {
        for s in &batch.segments {
            let seg = TcpSegment {
                src: s.src,
                dst: s.dst,
                seq: s.seq,
                ack: s.ack,
                flags: s.flags,
                payload: &batch.bytes[s.start..s.start + s.len],
                cut: s.cut,
            };
            analyzer.numbered_segment(s.ts, &seg, s.id, &mut sink);
        }
        if sink.pending() >= output_chunk.max(1) {
            let spare = spares.try_recv().unwrap_or_default();
            if output.send((index, sink.take(spare))).is_err() {
                break;
            }
        }
        batch.segments.clear();
        batch.bytes.clear();
        // The reader may be gone already: then the batch is simply dropped.
        let _ = empties.try_send(batch);
    }
    analyzer.finish(&mut sink);
    let written = sink.take(Vec::new());
    if !written.is_empty() {
        let _ = output.send((index, written));
    }
    analyzer.stats()
}

/// Reads `source` to its end with `threads` decoders (the reader and `threads - 1` workers),
/// writing their events to `out`. Returns how the run ended and the counts (connections numbered
/// by the reader).
pub fn run(
    source: &mut Source,
    options: &AnalyzerOptions,
    threads: usize,
    format: Format,
    out: Box<dyn Write + Send>,
    control: RunControl<'_>,
) -> Result<(RunEnd, Stats), RunError> {
    // A pipe's events are written as they happen, as a live capture's are.
    let stream = source.is_stream();
    let live = source.is_live() || stream;
    let output_chunk = if live { 1 } else { OUTPUT_CHUNK };
    let threads = threads.clamp(2, usize::from(MAX_THREADS));
    let workers = threads - 1;
    // Output buffers are tagged with their decoder: the workers, then the reader.
    let reader_tag = workers;
    let (output_tx, output_rx) = sync_channel::<Output>((workers + 1) * CHUNKS_IN_FLIGHT);
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
    let mut identities = Identities::new(options.flows, workers, share);
    let mut defrag = Defragmenter::default();
    // --max-flows bounds all decoders together: each tracks its share of the connections.
    let with_share = |share: f64| {
        let mut options = options.clone();
        options.flows.max_flows = ((options.flows.max_flows as f64 * share).ceil() as usize).max(1);
        options
    };
    let worker_options = with_share((1.0 - share) / workers as f64);
    let mut own = Analyzer::new(with_share(share));
    let mut own_sink = WorkerSink::new(format);
    let started = Instant::now();

    let (end, worker_stats, write_error) = thread::scope(|scope| {
        let reader_gone = &reader_gone;
        // A thread the system refuses ends the run before it reads anything.
        let mut spawn_error = None;
        let writer = thread::Builder::new().spawn_scoped(scope, move || -> std::io::Result<()> {
            // Chunks are whole batches' events: written as they are, no second buffer.
            let mut out = out;
            for (decoder, mut chunk) in output_rx {
                if let Err(e) = out
                    .write_all(&chunk)
                    .and_then(|()| if live { out.flush() } else { Ok(()) })
                {
                    reader_gone.store(true, Ordering::Relaxed);
                    return Err(e);
                }
                chunk.clear();
                let _ = spare_txs[decoder].try_send(chunk);
            }
            out.flush()
        });
        let writer = writer.map_err(|e| spawn_error = Some(e)).ok();
        let mut senders = Vec::new();
        let mut empties = Vec::new();
        let mut handles = Vec::new();
        for (index, spares) in spare_rxs.into_iter().enumerate() {
            let (batch_tx, batch_rx) = sync_channel::<Batch>(BATCHES_IN_FLIGHT);
            let (empty_tx, empty_rx) = sync_channel::<Batch>(BATCHES_IN_FLIGHT + 1);
            let output = output_tx.clone();
            let options = worker_options.clone();
            if spawn_error.is_some() {
                break;
            }
            let spawned = thread::Builder::new().spawn_scoped(scope, move || {
                worker(
                    index,
                    options,
                    format,
                    batch_rx,
                    empty_tx,
                    output,
                    spares,
                    output_chunk,
                )
            });
            match spawned {
                Ok(handle) => handles.push(handle),
                Err(e) => spawn_error = Some(e),
            }
            senders.push(batch_tx);
            empties.push(empty_rx);
        }
        // The reader's events go out when enough wait, when the capture is quiet, and at the end.
        let hand_over_own = |own_sink: &mut WorkerSink, at_least: usize| {
            if own_sink.pending() >= at_least.max(1) {
                let spare = reader_spares.try_recv().unwrap_or_default();
                let _ = output_tx.send((reader_tag, own_sink.take(spare)));
            }
        };
        let mut filling: Vec<Batch> = (0..workers).map(|_| Batch::default()).collect();
        let send = |i: usize,
                    filling: &mut Vec<Batch>,
                    senders: &Vec<SyncSender<Batch>>,
                    empties: &Vec<Receiver<Batch>>| {
            let fresh = empties[i].try_recv().unwrap_or_default();
            let full = std::mem::replace(&mut filling[i], fresh);
            let _ = senders[i].send(full);
        };
        // As in the single-threaded run: a stop request first drains what the kernel captured.
        let mut stopped_at: Option<Instant> = None;
        let end = loop {
            if let Some(e) = spawn_error.take() {
                break Err(RunError::Threads(e));
            }
            if control.stop.load(Ordering::Relaxed)
                && (!live || stopped_at.get_or_insert_with(Instant::now).elapsed() >= DRAIN_LIMIT)
            {
                break Ok(RunEnd::Interrupted);
            }
            if reader_gone.load(Ordering::Relaxed) {
                break Ok(RunEnd::OutputClosed);
            }
            if let Some(d) = control.duration
                && started.elapsed() >= d
            {
                break Ok(RunEnd::Duration);
            }
            let packet = match source.next_packet() {
                Ok(Next::Packet(p)) => p,
                Ok(Next::End) => break Ok(RunEnd::EndOfInput),
                Ok(Next::Idle)
                    if stopped_at.is_some_and(|at| at.elapsed() >= LIVE_DELIVERY_LIMIT) =>
                {
                    break Ok(RunEnd::Interrupted);
                }
                Ok(Next::Idle) => {
                    // Live and quiet: hand over what waits, so events appear as they happen.
                    for i in 0..workers {
                        if !filling[i].is_empty() {
                            send(i, &mut filling, &senders, &empties);
                        }
                    }
                    hand_over_own(&mut own_sink, 1);
                    source.wait_for_packets();
                    continue;
                }
                Err(_) if control.stop.load(Ordering::Relaxed) => break Ok(RunEnd::Interrupted),
                Err(e) => break Err(RunError::from(e)),
            };
            stats.packets += 1;
            let (ts, data, link) = (packet.ts, packet.data, packet.link);
            let mut route = |seg: &TcpSegment<'_>, filling: &mut Vec<Batch>| {
                let (key, from_a) = FlowKey::new(seg.src, seg.dst);
                match identities.number(key, from_a, seg.flags, ts) {
                    (id, Decoder::Reader) => {
                        own.numbered_segment(ts, seg, id, &mut own_sink);
                        None
                    }
                    (id, Decoder::Worker(i)) => {
                        let i = usize::from(i);
                        filling[i].push(ts, id, seg);
                        filling[i].is_full().then_some(i)
                    }
                }
            };
            let full = match decode::decode(link, data) {
                Ok(seg) => route(&seg, &mut filling),
                Err(Skip::NotTcp) => {
                    stats.skipped_not_tcp += 1;
                    None
                }
                Err(Skip::Malformed) => {
                    stats.skipped_malformed += 1;
                    None
                }
                Err(Skip::CutHeader) => {
                    stats.skipped_cut_header += 1;
                    stats.snaplen = stats.snaplen.max(data.len() as u32);
                    None
                }
                Err(Skip::Fragment) => {
                    stats.fragments += 1;
                    let mut full = None;
                    if let Some(datagram) = defrag.add(link, data, ts) {
                        if let Some(seg) = datagram.segment() {
                            full = route(&seg, &mut filling);
                        }
                        defrag.recycle(datagram);
                    }
                    full
                }
            };
            if let Some(i) = full {
                send(i, &mut filling, &senders, &empties);
            }
            if stream && source.input_waits() {
                // The pipe is drained: what waits in batches goes to the workers now.
                for i in 0..workers {
                    if !filling[i].is_empty() {
                        send(i, &mut filling, &senders, &empties);
                    }
                }
            }
            hand_over_own(&mut own_sink, output_chunk);
        };
        for (i, batch) in filling.into_iter().enumerate() {
            if !batch.is_empty() {
                let _ = senders[i].send(batch);
            }
        }
        drop(senders);
        own.finish(&mut own_sink);
        hand_over_own(&mut own_sink, 1);
        drop(output_tx);
        let mut worker_stats: Vec<Stats> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect();
        worker_stats.push(own.stats());
        let write_error = writer.and_then(|w| w.join().ok()).and_then(Result::err);
        (end, worker_stats, write_error)
    });
    let saved = source.flush_savefile();
    for w in &worker_stats {
        stats.tcp_packets += w.tcp_packets;
        stats.evicted += w.evicted;
        stats.timed_out += w.timed_out;
        stats.truncated_packets += w.truncated_packets;
        stats.bytes_cut += w.bytes_cut;
        stats.snaplen = stats.snaplen.max(w.snaplen);
        let (a, b) = (&mut stats.ws, &w.ws);
        a.handshakes += b.handshakes;
        a.upgrades += b.upgrades;
        a.frames += b.frames;
        a.frames_emitted += b.frames_emitted;
        a.messages += b.messages;
        a.anomalies += b.anomalies;
        a.http_given_up.add(&b.http_given_up);
    }
    stats.connections = identities.next;
    let end = end?;
    saved?;
    match write_error {
        Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok((RunEnd::OutputClosed, stats)),
        Some(e) => Err(RunError::Output(e)),
        None => Ok((end, stats)),
    }
}
