//! A worker thread: decodes the batches the reader hands it, answers the reader's questions,
//! hands its marked output to the writer.

use std::cell::Cell;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};

use crate::analyzer::{Analyzer, AnalyzerOptions, LOOK_AHEAD, Stats, Step};
use crate::net::segment::TcpSegment;

use super::credit::Credit;
use super::marked::{Chunk, Marked, evict_shard, finish_shard, sweep_shard};
use super::{Batch, Format, Mark, OUTPUT_CHUNK, Op, PROGRESS_EVERY, Reply, Request, mark};
use crate::output::SummaryShard;

/// The channels of one worker.
pub(super) struct WorkerEnds {
    pub(super) batches: Receiver<Batch>,
    pub(super) empties: SyncSender<Batch>,
    pub(super) replies: SyncSender<Reply>,
    pub(super) output: Option<SyncSender<Chunk>>,
    pub(super) spares: Receiver<Vec<u8>>,
}

/// Hands `sink`'s output over, saying the worker will write nothing before `progress`.
/// False once the writer is gone.
fn hand_over(
    index: usize,
    ends: &WorkerEnds,
    credit: &Credit,
    sink: &mut Marked<'_>,
    progress: Mark,
) -> bool {
    let Some(output) = &ends.output else {
        return true;
    };
    let spare = ends.spares.try_recv().unwrap_or_default();
    let chunk = sink.take(index, spare, progress);
    // Counted before the writer can see it, so that it is never counted back first.
    credit.handed(index, chunk.cost);
    output.send(chunk).is_ok()
}

/// `live`: every batch's events go out at once, so they appear as they happen.
pub(super) fn worker(
    index: usize,
    options: AnalyzerOptions,
    format: Format,
    ends: WorkerEnds,
    live: bool,
    credit: &Credit,
) -> (Stats, SummaryShard<Mark>) {
    let next = Cell::new(0);
    let mut sink = Marked::new(format, &next, &options.select);
    let mut analyzer = Analyzer::new(options);
    let mut unreported = 0u32;
    let mut progress = 0;
    // The progress the writer was told of.
    let mut reported = 0;
    let mut gone = false;
    loop {
        let mut batch = match ends.batches.try_recv() {
            Ok(batch) => batch,
            Err(TryRecvError::Empty) => {
                // About to wait for work: the writer must not wait for word from here
                // meanwhile (it may hold other decoders' output, and they wait for it).
                if progress > reported {
                    unreported = 0;
                    reported = progress;
                    if !hand_over(index, &ends, credit, &mut sink, progress) {
                        break;
                    }
                }
                match ends.batches.recv() {
                    Ok(batch) => batch,
                    Err(_) => break,
                }
            }
            Err(TryRecvError::Disconnected) => break,
        };
        for i in 0..batch.ops.len() {
            if analyzer.wants_look_ahead() {
                let ahead = match batch.ops.get(i + LOOK_AHEAD) {
                    Some(Op::Segment { src, dst, .. }) => Some((*src, *dst)),
                    _ => None,
                };
                analyzer.look_ahead(ahead);
            }
            match &mut batch.ops[i] {
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
                    packet_len,
                    payload_at,
                } => {
                    let seg = TcpSegment {
                        src: *src,
                        dst: *dst,
                        seq: *seq,
                        ack: *ack,
                        flags: *flags,
                        payload: &batch.bytes[*start..*start + *len],
                        cut: *cut,
                        packet_len: *packet_len,
                        payload_at: *payload_at,
                    };
                    next.set(mark(*packet, Step::Packet, 0));
                    analyzer.placed_segment(*ts, &seg, *place, &mut sink);
                    // A batch of tiny frames makes many MiB of output: hand it over as it
                    // grows. Nothing more comes of this packet (one segment each), so the
                    // next packet's first mark is how far this worker has got.
                    if !live && sink.pending() >= OUTPUT_CHUNK {
                        let here = mark(packet.saturating_add(1), Step::Linger, 0);
                        reported = reported.max(here);
                        if !hand_over(index, &ends, credit, &mut sink, here) {
                            gone = true;
                            break;
                        }
                        credit.wait(index, here);
                    }
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
        if gone {
            break;
        }
        progress = progress.max(batch.through);
        unreported += 1;
        let handed = ends.output.is_some()
            && (live || sink.pending() >= OUTPUT_CHUNK || unreported >= PROGRESS_EVERY);
        if handed {
            unreported = 0;
            reported = progress;
            if !hand_over(index, &ends, credit, &mut sink, progress) {
                break;
            }
        }
        batch.ops.clear();
        batch.bytes.clear();
        batch.through = 0;
        // The reader may be gone already: then the batch is simply dropped.
        let _ = ends.empties.try_send(batch);
        if handed {
            credit.wait(index, progress);
        }
    }
    finish_shard(&mut analyzer, &mut sink);
    hand_over(index, &ends, credit, &mut sink, Mark::MAX);
    (analyzer.stats(), sink.flows.take().unwrap_or_default())
}
