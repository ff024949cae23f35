//! The writer thread: every decoder's marked output merged back into one thread's order, as
//! bytes (writev) or as events for a sink.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};

use crate::event::{EventSink, TsPrecision};
use crate::output::OutputSink;
use crate::output::{SummaryShard, TextWriter};

use super::Mark;
use super::credit::Credit;
use super::marked::Chunk;

/// The `--summary` table of every decoder's connections, in one thread's order.
pub(super) fn summary_table(
    shards: Vec<SummaryShard<Mark>>,
    precision: TsPrecision,
    color: bool,
) -> std::io::Result<Vec<u8>> {
    let mut table =
        TextWriter::new(Vec::new(), precision, color).with_table(SummaryShard::merge(shards));
    table.finish()?;
    Ok(std::mem::take(table.get_mut()))
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
    credit: &Credit,
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
            credit.written_through(bound);
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
                credit.written(chunk.source, chunk.cost);
                let mut bytes = chunk.bytes;
                bytes.clear();
                let _ = spare.try_send(bytes);
            }
        }
    }
}

/// Writes every decoder's output in one thread's order: the smallest mark first, once no
/// decoder can still write anything before it.
pub(super) fn writer(
    sources: usize,
    output: Receiver<Chunk>,
    spares: Vec<SyncSender<Vec<u8>>>,
    mut out: Box<dyn Write + Send>,
    live: bool,
    reader_gone: &AtomicBool,
    credit: &Credit,
) -> std::io::Result<()> {
    let mut queues: Vec<Queue> = (0..sources).map(|_| Queue::default()).collect();
    let mut pieces = Vec::with_capacity(MAX_PIECES);
    let result = (|| {
        for chunk in &output {
            let source = chunk.source;
            let q = &mut queues[source];
            q.progress = q.progress.max(chunk.progress);
            if chunk.marks.is_empty() {
                credit.written(source, chunk.cost);
                let mut bytes = chunk.bytes;
                bytes.clear();
                let _ = spares[source].try_send(bytes);
            } else {
                q.chunks.push_back(chunk);
            }
            let bound = queues.iter().map(|q| q.progress).min().unwrap_or(Mark::MAX);
            write_merged(&mut queues, &mut *out, bound, &mut pieces, &spares, credit)?;
            if live {
                out.flush()?;
            }
        }
        write_merged(
            &mut queues,
            &mut *out,
            Mark::MAX,
            &mut pieces,
            &spares,
            credit,
        )?;
        out.flush()
    })();
    if result.is_err() {
        reader_gone.store(true, Ordering::Relaxed);
        credit.close();
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
fn deliver_merged(
    queues: &mut [EventQueue],
    sink: &mut dyn EventSink,
    bound: Mark,
    credit: &Credit,
) {
    loop {
        let Some((source, mark)) = queues
            .iter()
            .enumerate()
            .filter_map(|(i, q)| q.chunks.front().map(|c| (i, c.events[q.next].0)))
            .filter(|&(_, m)| m < bound)
            .min_by_key(|&(_, m)| m)
        else {
            credit.written_through(bound);
            return;
        };
        let q = &mut queues[source];
        let Some(chunk) = q.chunks.front() else {
            return;
        };
        // Marks number packets from 0; one thread counts them from 1.
        let packet = (mark >> 64) as u64;
        sink.at_packet((packet != super::FINISH_PACKET).then(|| packet + 1));
        chunk.events[q.next].1.deliver(&chunk.arena, sink);
        q.next += 1;
        if q.next == chunk.events.len() {
            credit.written(source, chunk.cost);
            q.chunks.pop_front();
            q.next = 0;
        }
    }
}

/// [`writer`] for a sink that takes events.
pub(super) fn event_writer(
    sources: usize,
    output: Receiver<Chunk>,
    sink: &mut (dyn EventSink + Send),
    credit: &Credit,
) {
    let mut queues: Vec<EventQueue> = (0..sources).map(|_| EventQueue::default()).collect();
    for chunk in &output {
        let q = &mut queues[chunk.source];
        q.progress = q.progress.max(chunk.progress);
        if chunk.events.is_empty() {
            credit.written(chunk.source, chunk.cost);
        } else {
            q.chunks.push_back(chunk);
        }
        let bound = queues.iter().map(|q| q.progress).min().unwrap_or(Mark::MAX);
        deliver_merged(&mut queues, sink, bound, credit);
    }
    deliver_merged(&mut queues, sink, Mark::MAX, credit);
}
