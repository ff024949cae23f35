//! A decoder's sink, which marks where each event belongs in one thread's order, and the
//! steps a decoder takes on its share of the connections (sweep, evict, finish) under those marks.

use std::cell::Cell;

use crate::analyzer::{Analyzer, SweepPlan};
use crate::event::{Event, EventSink, Selection, Selector, Timestamp};
use crate::net::tcp::FlowKey;
use crate::output::{EveWriter, JsonWriter, SummaryShard, TextWriter};

use super::owned::OwnedEvent;
use super::{FINISH_PACKET, Format, Mark, mark};

/// A worker's sink: events written into a buffer the writer thread takes.
enum WorkerSink {
    Json(JsonWriter<Vec<u8>>),
    Eve(EveWriter<Vec<u8>>),
    Text(TextWriter<Vec<u8>>),
    Quiet,
}

impl WorkerSink {
    fn new(format: Format) -> Self {
        match format {
            Format::Json(p) => WorkerSink::Json(JsonWriter::new(Vec::new(), p)),
            Format::Eve { pcap_cnt } => WorkerSink::Eve(EveWriter::new(Vec::new(), pcap_cnt)),
            Format::Text {
                precision,
                color,
                messages,
                style,
                ..
            } => {
                let text = TextWriter::new(Vec::new(), precision, color).with_style(style);
                WorkerSink::Text(if messages {
                    text
                } else {
                    text.without_message_lines()
                })
            }
            Format::Quiet | Format::Events => WorkerSink::Quiet,
        }
    }

    /// The held frame of the text view or EVE (a message's last frame), shown where the
    /// output is now.
    fn release_held(&mut self) {
        match self {
            WorkerSink::Text(w) => w.release_held(),
            WorkerSink::Eve(w) => w.release(),
            _ => {}
        }
    }

    /// Bytes written since the last [`WorkerSink::take`].
    fn pending(&self) -> usize {
        match self {
            WorkerSink::Json(w) => w.get_ref().len(),
            WorkerSink::Eve(w) => w.get_ref().len(),
            WorkerSink::Text(w) => w.get_ref().len(),
            WorkerSink::Quiet => 0,
        }
    }

    /// What was written since the last call, swapped for `spare` (a buffer the writer thread
    /// gave back), so buffers circulate instead of being allocated per batch.
    fn take(&mut self, spare: Vec<u8>) -> Vec<u8> {
        match self {
            WorkerSink::Json(w) => std::mem::replace(w.get_mut(), spare),
            WorkerSink::Eve(w) => std::mem::replace(w.get_mut(), spare),
            WorkerSink::Text(w) => std::mem::replace(w.get_mut(), spare),
            WorkerSink::Quiet => Vec::new(),
        }
    }
}

impl EventSink for WorkerSink {
    fn event(&mut self, event: &Event<'_>) {
        match self {
            WorkerSink::Json(w) => w.event(event),
            WorkerSink::Eve(w) => w.event(event),
            WorkerSink::Text(w) => w.event(event),
            WorkerSink::Quiet => {}
        }
    }

    fn at_packet(&mut self, number: Option<u64>) {
        if let WorkerSink::Eve(w) = self {
            w.at_packet(number);
        }
    }
}

/// A decoder's sink: the worker sink, with a mark wherever the output's place changes.
pub(super) struct Marked<'a> {
    sink: WorkerSink,
    /// The place of the events to come, set by whoever drives the analyzer (also from inside
    /// a sweep, through its marker).
    next: &'a Cell<Mark>,
    current: Mark,
    /// (place, end offset in the buffer): the bytes since the previous entry belong there.
    marks: Vec<(Mark, usize)>,
    /// `--summary`: this decoder's rows of the table at the end.
    pub(super) flows: Option<SummaryShard<Mark>>,
    /// [`Format::Events`]: the events themselves, their strings and payloads in `arena`.
    events: Option<Vec<(Mark, OwnedEvent)>>,
    arena: Vec<u8>,
    /// `--flow`, `--client`, ...: what is printed, decided where one thread decides it.
    selector: Option<Selector>,
}

impl<'a> Marked<'a> {
    pub(super) fn new(format: Format, next: &'a Cell<Mark>, selection: &Selection) -> Self {
        let summary = matches!(format, Format::Text { summary: true, .. });
        Marked {
            selector: Selector::new(selection),
            sink: WorkerSink::new(format),
            next,
            current: 0,
            marks: Vec::new(),
            flows: summary.then(SummaryShard::default),
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
    pub(super) fn pending(&self) -> usize {
        self.sink.pending()
            + self.arena.len()
            + self
                .events
                .as_ref()
                .map_or(0, |e| e.len() * std::mem::size_of::<(Mark, OwnedEvent)>())
    }

    /// What was written since the last call, marked; `spare` becomes the buffer.
    pub(super) fn take(&mut self, source: usize, spare: Vec<u8>, progress: Mark) -> Chunk {
        self.sink.release_held();
        self.close_mark();
        Chunk {
            cost: self.pending(),
            source,
            bytes: self.sink.take(spare),
            marks: std::mem::take(&mut self.marks),
            events: self.events.as_mut().map(std::mem::take).unwrap_or_default(),
            arena: std::mem::take(&mut self.arena),
            progress,
        }
    }
}

impl Marked<'_> {
    /// One shown event, where the output is now.
    fn deliver(&mut self, event: &Event<'_>) {
        if let Some(events) = &mut self.events {
            events.push((self.current, OwnedEvent::of(event, &mut self.arena)));
            return;
        }
        if let (Event::Flow(flow), Some(flows)) = (event, &mut self.flows) {
            flows.add(self.current, flow);
        }
        self.sink.event(event);
    }

    /// A frame `--grep` holds is decided before the output's place moves on (as one thread
    /// decides it at the next packet) and at the end.
    pub(super) fn release_held(&mut self) {
        if let Some(mut selector) = self.selector.take() {
            selector.release(&mut |e: &Event<'_>| self.deliver(e));
            self.selector = Some(selector);
        }
        self.sink.release_held();
    }
}

impl EventSink for Marked<'_> {
    fn event(&mut self, event: &Event<'_>) {
        let next = self.next.get();
        if next != self.current {
            self.release_held();
            self.close_mark();
            self.current = next;
            // Marks number packets from 0; one thread counts them from 1.
            let packet = (next >> 64) as u64;
            self.sink
                .at_packet((packet != FINISH_PACKET).then(|| packet + 1));
        }
        // Taken out for the call, so that what it passes on can reach the rest of self.
        match self.selector.take() {
            Some(mut selector) => {
                selector.pass(event, &mut |e: &Event<'_>| self.deliver(e));
                self.selector = Some(selector);
            }
            None => self.deliver(event),
        }
    }
}

/// A decoder's output and how far it has got: it will write nothing more before `progress`.
pub(super) struct Chunk {
    pub(super) source: usize,
    /// What it weighs against its decoder's output credit (see [`super::credit`]).
    pub(super) cost: usize,
    pub(super) bytes: Vec<u8>,
    pub(super) marks: Vec<(Mark, usize)>,
    /// [`Format::Events`]: the events instead of bytes.
    pub(super) events: Vec<(Mark, OwnedEvent)>,
    pub(super) arena: Vec<u8>,
    pub(super) progress: Mark,
}

/// Runs a sweep on a decoder's connections and says which it removed.
pub(super) fn sweep_shard(
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
    let removed = plan
        .linger
        .iter()
        .chain(&plan.timed_out)
        .map(|&(_, key)| key)
        .collect();
    analyzer.recycle_plan(plan);
    removed
}

pub(super) fn evict_shard(
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

pub(super) fn finish_shard(analyzer: &mut Analyzer, sink: &mut Marked<'_>) {
    let next = sink.next;
    analyzer.finish_marked(sink, &mut |step, id| {
        next.set(mark(FINISH_PACKET, step, id))
    });
    sink.release_held();
}
