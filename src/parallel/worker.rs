//! A worker thread: decodes the batches the reader hands it, answers the reader's questions,
//! hands its marked output to the writer.

use std::cell::Cell;
use std::sync::mpsc::{Receiver, SyncSender};

use crate::analyzer::{Analyzer, AnalyzerOptions, Stats, Step};
use crate::net::segment::TcpSegment;

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

/// `live`: every batch's events go out at once, so they appear as they happen.
pub(super) fn worker(
    index: usize,
    options: AnalyzerOptions,
    format: Format,
    ends: WorkerEnds,
    live: bool,
) -> (Stats, SummaryShard<Mark>) {
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
