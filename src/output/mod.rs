//! Event writers: JSON Lines for programs, one readable line per event for people.
//!
//! Both write through one buffered writer and remember the first I/O error instead of
//! returning it from every event, so the pipeline's inner loops stay free of error plumbing;
//! the caller checks [`OutputSink::error`] between packets.

mod buffer;
mod community_id;
mod cut;
mod escape;
mod eve;
mod hexview;
mod json;
mod per_connection;
mod reopen;
mod summary;
mod text;

use std::io;

pub use buffer::Buffered;
pub use community_id::CommunityId;
pub use cut::{CutLines, stdout_columns};
pub(crate) use escape::escaped;
pub use eve::EveWriter;
pub use json::JsonWriter;
pub use reopen::ReopeningFile;
pub use summary::{SUMMARY_ROWS, SUMMARY_URI, Summary, SummaryShard};
pub use text::{TextStyle, TextWriter, TimeFormat};

use crate::event::{EventSink, Timestamp};

/// An event sink that writes somewhere and may fail.
pub trait OutputSink: EventSink {
    /// The first write error, if any; once set, further events are dropped.
    fn error(&self) -> Option<&io::Error>;
    /// Flushes buffered output, reporting any error so far.
    fn flush(&mut self) -> io::Result<()>;
    /// The run is over: writes whatever waits for the end (a summary table), then flushes.
    fn finish(&mut self) -> io::Result<()> {
        self.flush()
    }
}

/// A writer behind a selection (`--flow`, ...).
pub struct SelectedOutput {
    pub inner: Box<dyn OutputSink + Send>,
    pub selector: crate::event::Selector,
}

impl EventSink for SelectedOutput {
    fn event(&mut self, event: &crate::event::Event<'_>) {
        self.selector.pass(event, &mut *self.inner);
    }

    fn at_packet(&mut self, number: Option<u64>) {
        // A frame --grep holds belongs to the packet before.
        self.selector.release(&mut *self.inner);
        self.inner.at_packet(number);
    }
}

impl OutputSink for SelectedOutput {
    fn error(&self) -> Option<&io::Error> {
        self.inner.error()
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }

    fn finish(&mut self) -> io::Result<()> {
        self.selector.release(&mut *self.inner);
        self.inner.finish()
    }
}

impl<S: OutputSink> OutputSink for crate::event::Selected<S> {
    fn error(&self) -> Option<&io::Error> {
        self.inner.error()
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }

    fn finish(&mut self) -> io::Result<()> {
        self.release();
        self.inner.finish()
    }
}

/// Prints nothing: `-q` decodes everything and reports only the end-of-run counts.
#[derive(Debug, Default)]
pub struct Quiet;

impl EventSink for Quiet {
    fn event(&mut self, _event: &crate::event::Event<'_>) {}
}

impl OutputSink for Quiet {
    fn error(&self) -> Option<&io::Error> {
        None
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

use crate::event::TsPrecision;

impl TsPrecision {
    fn write_fraction(self, w: &mut impl io::Write, ts: Timestamp) -> io::Result<()> {
        let (mut value, digits) = match self {
            TsPrecision::Micro => (ts.nanos / 1000, 6),
            TsPrecision::Nano => (ts.nanos, 9),
        };
        // Zero-padded by hand: this runs for every event.
        let mut out = [b'0'; 9];
        for slot in out[..digits].iter_mut().rev() {
            *slot = b'0' + (value % 10) as u8;
            value /= 10;
        }
        w.write_all(&out[..digits])
    }
}

/// The proleptic Gregorian date of a day count from 1970-01-01 (Howard Hinnant's algorithm).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Holds a writer and its first error.
struct Out<W: io::Write> {
    w: W,
    error: Option<io::Error>,
}

impl<W: io::Write> Out<W> {
    fn new(w: W) -> Self {
        Out { w, error: None }
    }

    fn record(&mut self, result: io::Result<()>) {
        if let Err(e) = result
            && self.error.is_none()
        {
            self.error = Some(e);
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some(e) = &self.error {
            return Err(io::Error::new(e.kind(), e.to_string()));
        }
        self.w.flush()
    }
}
