//! `wsnoop report` and `--har`: what a capture held, in the forms people open in a browser.
//!
//! A [`Collector`] keeps connections, messages and control frames from the events, within
//! [`Limits`]; [`har::write`] writes them as a HAR file in Chrome's form, [`html::write`] as
//! one self-contained HTML page (its template, style and script are in this folder) with the
//! `diagnose` findings at the top. Both are event sinks like any writer, so they work behind
//! `--threads` through [`crate::parallel::run_events`] and see the events one thread would.

mod collect;
pub mod har;
pub mod html;

use std::io;

pub use collect::{
    Anomaly, Close, Collector, Connection, Handshake, Item, Limits, Summary, flag, websocket_url,
};

use crate::diagnose::Diagnoser;
use crate::event::{Event, EventSink};
use crate::output::OutputSink;

/// The plain run with `--har`: events go to the output writer as they would without it (the
/// data events `--show` asked for) and to a collector for the HAR file.
pub struct HarTee {
    pub out: Box<dyn OutputSink + Send>,
    pub collector: Collector,
    frames: bool,
    messages: bool,
    /// Behind `--threads`, live: the writer thread flushes after each event, as one thread
    /// would after each packet.
    flush_each: bool,
}

impl HarTee {
    pub fn new(
        out: Box<dyn OutputSink + Send>,
        limits: Limits,
        frames: bool,
        messages: bool,
        flush_each: bool,
    ) -> HarTee {
        HarTee {
            out,
            collector: Collector::new(limits),
            frames,
            messages,
            flush_each,
        }
    }
}

impl EventSink for HarTee {
    fn event(&mut self, event: &Event<'_>) {
        self.collector.event(event);
        let wanted = match event {
            Event::Frame(_) => self.frames,
            Event::Message(_) => self.messages,
            _ => true,
        };
        if wanted {
            self.out.event(event);
            if self.flush_each {
                let _ = self.out.flush();
            }
        }
    }

    fn at_packet(&mut self, number: Option<u64>) {
        self.out.at_packet(number);
    }
}

impl OutputSink for HarTee {
    fn error(&self) -> Option<&io::Error> {
        self.out.error()
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn finish(&mut self) -> io::Result<()> {
        self.out.finish()
    }
}

/// `wsnoop report`: the connections and messages, and the diagnosis of the same events.
pub struct ReportSink {
    pub collector: Collector,
    pub diagnoser: Diagnoser,
}

impl EventSink for ReportSink {
    fn event(&mut self, event: &Event<'_>) {
        self.collector.event(event);
        self.diagnoser.event(event);
    }
}

impl OutputSink for ReportSink {
    fn error(&self) -> Option<&io::Error> {
        None
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
