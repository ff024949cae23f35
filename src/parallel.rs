//! `--threads N`: connections sharded across worker threads by their flow key.
//!
//! One reader (the calling thread) reads packets, decodes them to TCP, numbers connections and
//! hands each segment to the worker that owns its connection, in batches. Each worker runs its
//! own [`Analyzer`] and writes its events into a buffer that a writer thread copies to the
//! output. A connection lives on one worker, so its events keep their order; connection numbers
//! come from the reader, so they stay in order of first packet across workers.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread;
use std::time::Instant;

use crate::analyzer::{Analyzer, AnalyzerOptions, FlowLimits, Stats};
use crate::capture::{Next, Source};
use crate::decode::{self, Defragmenter, LinkType, Skip, TcpFlags, TcpSegment};
use crate::event::{Event, EventSink, Timestamp};
use crate::output::{JsonWriter, TextWriter, TsPrecision};
use crate::tcp::FlowKey;
use crate::{RunControl, RunEnd, RunError};

/// A batch is handed over when it holds this many payload bytes or segments.
const BATCH_BYTES: usize = 256 * 1024;
const BATCH_SEGMENTS: usize = 2048;
/// Batches in flight per worker: bounds the memory between reader and workers.
const BATCHES_IN_FLIGHT: usize = 4;

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
}

#[derive(Default)]
struct Batch {
    segments: Vec<Segment>,
    bytes: Vec<u8>,
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
    fin: [bool; 2],
    rst: bool,
    last_secs: i64,
}

/// Connection numbers in order of first packet, with the analyzer's rules: a fresh SYN on
/// endpoints whose connection ended starts a new one. Bounded like the flow table.
struct Identities {
    map: HashMap<FlowKey, Identity, foldhash::fast::RandomState>,
    next: u64,
    limits: FlowLimits,
    last_sweep: i64,
}

/// How long a finished connection's number is kept for its last ACKs, as in the analyzer.
const FINISHED_LINGER_SECS: i64 = 10;

impl Identities {
    fn new(limits: FlowLimits) -> Self {
        Identities {
            map: HashMap::default(),
            next: 0,
            limits,
            last_sweep: i64::MIN,
        }
    }

    fn number(&mut self, key: FlowKey, from_a: bool, flags: TcpFlags, ts: Timestamp) -> u64 {
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
        let next = &mut self.next;
        let entry = self.map.entry(key).or_insert_with(|| {
            *next += 1;
            Identity {
                id: *next - 1,
                fin: [false; 2],
                rst: false,
                last_secs: ts.secs,
            }
        });
        if fresh_syn && (entry.rst || entry.fin == [true, true]) {
            *entry = Identity {
                id: *next,
                fin: [false; 2],
                rst: false,
                last_secs: ts.secs,
            };
            *next += 1;
        }
        entry.fin[usize::from(!from_a)] |= flags.fin;
        entry.rst |= flags.rst;
        entry.last_secs = ts.secs;
        entry.id
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
    link: LinkType,
    options: AnalyzerOptions,
    format: Format,
    batches: Receiver<Batch>,
    empties: SyncSender<Batch>,
    output: SyncSender<Output>,
    spares: Receiver<Vec<u8>>,
) -> Stats {
    let mut analyzer = Analyzer::new(link, options);
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
            };
            analyzer.numbered_segment(s.ts, &seg, s.id, &mut sink);
        }
        let spare = spares.try_recv().unwrap_or_default();
        let written = sink.take(spare);
        if !written.is_empty() && output.send((index, written)).is_err() {
            break;
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

/// Reads `source` to its end with `threads` workers, writing their events to `out`.
/// Returns how the run ended and the counts (connections numbered by the reader).
pub fn run(
    source: &mut Source,
    options: &AnalyzerOptions,
    threads: usize,
    format: Format,
    out: Box<dyn Write + Send>,
    control: RunControl<'_>,
) -> Result<(RunEnd, Stats), RunError> {
    let link = source.link();
    let live = source.is_live();
    let threads = threads.max(1);
    let (output_tx, output_rx) = sync_channel::<Output>(threads * BATCHES_IN_FLIGHT);
    let mut spare_txs = Vec::new();
    let mut spare_rxs = Vec::new();
    for _ in 0..threads {
        let (tx, rx) = sync_channel::<Vec<u8>>(BATCHES_IN_FLIGHT);
        spare_txs.push(tx);
        spare_rxs.push(rx);
    }
    let reader_gone = AtomicBool::new(false);
    let mut stats = Stats::default();
    let mut identities = Identities::new(options.flows);
    let mut defrag = Defragmenter::default();
    let hasher = foldhash::fast::FixedState::with_seed(0x5eed);
    let started = Instant::now();

    let (end, worker_stats, write_error) = thread::scope(|scope| {
        let reader_gone = &reader_gone;
        let writer = scope.spawn(move || -> std::io::Result<()> {
            // Chunks are whole batches' events: written as they are, no second buffer.
            let mut out = out;
            for (worker, mut chunk) in output_rx {
                if let Err(e) = out
                    .write_all(&chunk)
                    .and_then(|()| if live { out.flush() } else { Ok(()) })
                {
                    reader_gone.store(true, Ordering::Relaxed);
                    return Err(e);
                }
                chunk.clear();
                let _ = spare_txs[worker].try_send(chunk);
            }
            out.flush()
        });
        let mut senders = Vec::new();
        let mut empties = Vec::new();
        let mut handles = Vec::new();
        for (index, spares) in spare_rxs.into_iter().enumerate() {
            let (batch_tx, batch_rx) = sync_channel::<Batch>(BATCHES_IN_FLIGHT);
            let (empty_tx, empty_rx) = sync_channel::<Batch>(BATCHES_IN_FLIGHT + 1);
            let output = output_tx.clone();
            let options = options.clone();
            handles.push(scope.spawn(move || {
                worker(
                    index, link, options, format, batch_rx, empty_tx, output, spares,
                )
            }));
            senders.push(batch_tx);
            empties.push(empty_rx);
        }
        drop(output_tx);
        let mut filling: Vec<Batch> = (0..threads).map(|_| Batch::default()).collect();
        let send = |i: usize,
                    filling: &mut Vec<Batch>,
                    senders: &Vec<SyncSender<Batch>>,
                    empties: &Vec<Receiver<Batch>>| {
            let fresh = empties[i].try_recv().unwrap_or_default();
            let full = std::mem::replace(&mut filling[i], fresh);
            let _ = senders[i].send(full);
        };
        let end = loop {
            if control.stop.load(Ordering::Relaxed) {
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
                Ok(Next::Idle) => {
                    // Live and quiet: hand over what waits, so events appear as they happen.
                    for i in 0..threads {
                        if !filling[i].is_empty() {
                            send(i, &mut filling, &senders, &empties);
                        }
                    }
                    continue;
                }
                Err(_) if control.stop.load(Ordering::Relaxed) => break Ok(RunEnd::Interrupted),
                Err(e) => break Err(RunError::from(e)),
            };
            stats.packets += 1;
            let (ts, data) = (packet.ts, packet.data);
            let mut route = |seg: &TcpSegment<'_>, filling: &mut Vec<Batch>| {
                let (key, from_a) = FlowKey::new(seg.src, seg.dst);
                let id = identities.number(key, from_a, seg.flags, ts);
                let i = (hasher.hash_one(key) % threads as u64) as usize;
                filling[i].push(ts, id, seg);
                filling[i].is_full().then_some(i)
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
        };
        for (i, batch) in filling.into_iter().enumerate() {
            if !batch.is_empty() {
                let _ = senders[i].send(batch);
            }
        }
        drop(senders);
        let worker_stats: Vec<Stats> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect();
        let write_error = writer.join().ok().and_then(Result::err);
        (end, worker_stats, write_error)
    });
    let _ = source.flush_savefile();
    for w in &worker_stats {
        stats.tcp_packets += w.tcp_packets;
        stats.evicted += w.evicted;
        stats.timed_out += w.timed_out;
        let (a, b) = (&mut stats.ws, &w.ws);
        a.handshakes += b.handshakes;
        a.upgrades += b.upgrades;
        a.frames += b.frames;
        a.frames_emitted += b.frames_emitted;
        a.messages += b.messages;
        a.anomalies += b.anomalies;
    }
    stats.connections = identities.next;
    let end = end?;
    match write_error {
        Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok((RunEnd::OutputClosed, stats)),
        Some(e) => Err(RunError::Output(e)),
        None => Ok((end, stats)),
    }
}
