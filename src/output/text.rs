//! One line per event for people. Payloads are escaped so that no byte off the wire can move
//! the cursor, change colours or reorder text on the terminal.

use std::io::{self, Write};

use super::escape::escaped;
use super::summary::Summary;
use super::{Out, OutputSink, TsPrecision};
use crate::event::{
    AnomalyEvent, CloseEvent, Direction, Event, EventSink, FlowEvent, FlowMeta, FrameEvent,
    HandshakeEvent, MessageEvent, Payload, Timestamp,
};

use crate::wire::frame::Opcode;

/// Binary payloads show this many bytes as hex; the rest is counted.
const HEX_PREVIEW: usize = 32;

pub struct TextWriter<W: Write> {
    out: Out<W>,
    /// `--summary`: one row per connection, printed as a table at the end.
    summary: Option<Summary>,
    precision: TsPrecision,
    color: bool,
    /// Local time of day for `clock_secs`, cached: most events share their second.
    clock_secs: i64,
    clock: [u8; 8],
}

struct Style {
    on: &'static str,
}

const RESET: &str = "\x1b[0m";
const DIM: Style = Style { on: "\x1b[2m" };
const GREEN: Style = Style { on: "\x1b[32m" };
const BLUE: Style = Style { on: "\x1b[34m" };
const YELLOW: Style = Style { on: "\x1b[33m" };
const RED: Style = Style { on: "\x1b[31m" };
const CYAN: Style = Style { on: "\x1b[36m" };
const MAGENTA: Style = Style { on: "\x1b[35m" };

impl<W: Write> TextWriter<W> {
    pub fn new(w: W, precision: TsPrecision, color: bool) -> Self {
        TextWriter {
            out: Out::new(w),
            summary: None,
            precision,
            color,
            clock_secs: i64::MIN,
            clock: *b"00:00:00",
        }
    }

    pub fn into_inner(self) -> W {
        self.out.w
    }

    /// The writer, e.g. to take what was written into a `Vec<u8>` so far.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out.w
    }

    pub fn get_ref(&self) -> &W {
        &self.out.w
    }

    /// Collects each connection's summary and prints them as a table when flushed.
    pub fn with_summary(mut self) -> Self {
        self.summary = Some(Summary::default());
        self
    }

    /// Prints `summary` as the table when flushed: `--threads` builds it from every decoder's.
    pub fn with_table(mut self, summary: Summary) -> Self {
        self.summary = Some(summary);
        self
    }

    fn flow(&mut self, e: &FlowEvent<'_>) -> io::Result<()> {
        if let Some(summary) = &mut self.summary {
            summary.add(e);
        }
        Ok(())
    }

    fn write_summary(&mut self) -> io::Result<()> {
        match self.summary.take() {
            Some(summary) => summary.write(&mut self.out.w),
            None => Ok(()),
        }
    }

    fn paint(&mut self, style: &Style, text: &str) -> io::Result<()> {
        if self.color {
            write!(self.out.w, "{}{text}{RESET}", style.on)
        } else {
            self.out.w.write_all(text.as_bytes())
        }
    }

    fn time(&mut self, ts: Timestamp) -> io::Result<()> {
        if ts.secs != self.clock_secs {
            self.clock_secs = ts.secs;
            self.clock = local_clock(ts.secs);
        }
        self.out.w.write_all(&self.clock)?;
        self.out.w.write_all(b".")?;
        self.precision.write_fraction(&mut self.out.w, ts)
    }

    fn handshake(&mut self, e: &HandshakeEvent<'_>) -> io::Result<()> {
        self.connection_prefix(e.ts, e.flow)?;
        let style = if e.upgraded { CYAN } else { RED };
        self.paint(&style, "handshake")?;
        let w = &mut self.out.w;
        w.write_all(b" ")?;
        escaped(w, &e.request.method)?;
        w.write_all(b" ")?;
        escaped(w, &e.request.uri)?;
        write!(w, " -> {} ", e.response.status)?;
        escaped(w, &e.response.reason)?;
        write!(w, " accept={}", e.accept.name())?;
        if let Some(p) = &e.response.protocol {
            w.write_all(b" protocol=")?;
            escaped(w, p)?;
        }
        if !e.response.extensions.is_empty() {
            w.write_all(b" extensions=")?;
            escaped(w, &e.response.extensions.join(", "))?;
        }
        if !e.upgraded {
            w.write_all(b" (not upgraded)")?;
        }
        write!(w, " latency={:.6}s", e.latency.max(0.0))?;
        if let Some(tls) = e.tls {
            // wss: what the decrypted bytes came through.
            write!(
                w,
                " tls={}/{}",
                tls.version_name().unwrap_or("?"),
                tls.cipher_name().unwrap_or("?")
            )?;
            if let Some(sni) = &tls.sni {
                w.write_all(b" sni=")?;
                escaped(w, sni)?;
            }
        }
        writeln!(w)
    }

    fn frame(&mut self, e: &FrameEvent<'_>) -> io::Result<()> {
        let h = e.header;
        self.prefix(e.ts, e.flow, e.dir)?;
        let style = match h.opcode {
            Opcode::Text => GREEN,
            Opcode::Binary => BLUE,
            Opcode::Continuation => DIM,
            Opcode::Close => RED,
            Opcode::Ping | Opcode::Pong => YELLOW,
            Opcode::Reserved(_) => MAGENTA,
        };
        self.paint(&style, h.opcode.name())?;
        let w = &mut self.out.w;
        if h.fin {
            w.write_all(b" fin")?;
        }
        if h.rsv != 0 {
            write!(w, " rsv={}", h.rsv)?;
        }
        if h.mask.is_some() {
            w.write_all(b" masked")?;
        }
        write!(w, " len={}", h.len)?;
        if let Some(close) = &e.close {
            match close.code {
                Some(code) => write!(w, " code={code}")?,
                None => w.write_all(b" code=none")?,
            }
            if !close.reason.is_empty() {
                w.write_all(b" reason=\"")?;
                escaped(w, close.reason)?;
                w.write_all(b"\"")?;
            }
        } else {
            payload(w, e.payload, e.truncated)?;
        }
        w.write_all(b"\n")
    }

    fn prefix(&mut self, ts: Timestamp, flow: &FlowMeta, dir: Direction) -> io::Result<()> {
        self.time(ts)?;
        write!(
            self.out.w,
            " #{} {} > {} ",
            flow.id,
            flow.source(dir),
            flow.destination(dir)
        )
    }

    /// Time, connection number and endpoints, client first.
    fn connection_prefix(&mut self, ts: Timestamp, flow: &FlowMeta) -> io::Result<()> {
        self.prefix(ts, flow, Direction::ClientToServer)
    }

    fn message(&mut self, e: &MessageEvent<'_>) -> io::Result<()> {
        self.prefix(e.ts, e.flow, e.dir)?;
        let style = if e.text { GREEN } else { BLUE };
        self.paint(
            &style,
            if e.text {
                "TEXT MESSAGE"
            } else {
                "BINARY MESSAGE"
            },
        )?;
        let w = &mut self.out.w;
        write!(w, " len={} frames={}", e.len, e.frames)?;
        if e.compressed {
            write!(w, " compressed wire_len={}", e.wire_len)?;
        }
        if e.undecodable {
            w.write_all(b" (undecodable)")?;
        }
        if e.incomplete {
            w.write_all(b" (incomplete)")?;
        }
        if e.partial {
            write!(w, " (partial: {} unknown bytes)", e.unknown_bytes)?;
        }
        payload(w, e.payload, e.truncated)?;
        w.write_all(b"\n")
    }

    fn close(&mut self, e: &CloseEvent<'_>) -> io::Result<()> {
        self.connection_prefix(e.ts, e.flow)?;
        let style = if e.clean { CYAN } else { RED };
        self.paint(&style, "closed")?;
        let w = &mut self.out.w;
        match e.initiator {
            Some(dir) => {
                let who = if dir == Direction::ClientToServer {
                    "client"
                } else {
                    "server"
                };
                write!(w, " by {who}")?;
                match e.code {
                    Some(code) => write!(w, " code={code}")?,
                    None => w.write_all(b" code=none")?,
                }
                if let Some(reason) = e.reason.filter(|r| !r.is_empty()) {
                    w.write_all(b" reason=\"")?;
                    escaped(w, reason)?;
                    w.write_all(b"\"")?;
                }
                match (e.reply_code, e.replied) {
                    (Some(code), _) => write!(w, " reply={code}")?,
                    (None, true) => w.write_all(b" reply=none")?,
                    (None, false) => w.write_all(b" (no reply)")?,
                }
            }
            None => w.write_all(b" without a close frame")?,
        }
        writeln!(
            w,
            " end={}{}",
            e.end.name(),
            if e.clean { " clean" } else { "" }
        )
    }

    fn anomaly(&mut self, e: &AnomalyEvent<'_>) -> io::Result<()> {
        match e.dir {
            Some(dir) => self.prefix(e.ts, e.flow, dir)?,
            None => self.connection_prefix(e.ts, e.flow)?,
        }
        self.paint(&RED, "ANOMALY")?;
        let w = &mut self.out.w;
        write!(w, " {}: ", e.kind.name())?;
        escaped(w, e.detail)?;
        w.write_all(b"\n")
    }
}

fn payload(w: &mut impl Write, payload: Payload<'_>, truncated: bool) -> io::Result<()> {
    match payload {
        Payload::Text(text) if !text.is_empty() => {
            w.write_all(b" \"")?;
            escaped(w, text)?;
            w.write_all(b"\"")?;
            if truncated {
                w.write_all(b"...")?;
            }
        }
        Payload::Data(data) if !data.is_empty() => {
            w.write_all(b" ")?;
            for b in data.iter().take(HEX_PREVIEW) {
                write!(w, "{b:02x}")?;
            }
            if data.len() > HEX_PREVIEW || truncated {
                w.write_all(b"...")?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// HH:MM:SS in local time, as tcpdump prints it.
fn local_clock(secs: i64) -> [u8; 8] {
    let (h, m, s) = crate::ffi::local_hms(secs).unwrap_or_else(|| {
        let day = secs.rem_euclid(86_400) as i32;
        (day / 3600, day / 60 % 60, day % 60)
    });
    let digit = |v: i32| b'0' + (v.clamp(0, 9) as u8);
    [
        digit(h / 10),
        digit(h % 10),
        b':',
        digit(m / 10),
        digit(m % 10),
        b':',
        digit(s / 10),
        digit(s % 10),
    ]
}

impl<W: Write> EventSink for TextWriter<W> {
    fn event(&mut self, event: &Event<'_>) {
        if self.out.error.is_some() {
            return;
        }
        let result = match event {
            Event::Handshake(e) => self.handshake(e),
            Event::Frame(e) => self.frame(e),
            Event::Message(e) => self.message(e),
            Event::Close(e) => self.close(e),
            Event::Anomaly(e) => self.anomaly(e),
            Event::Flow(e) => self.flow(e),
            Event::Connection(_) => Ok(()),
        };
        self.out.record(result);
    }
}

impl<W: Write> OutputSink for TextWriter<W> {
    fn error(&self) -> Option<&io::Error> {
        self.out.error.as_ref()
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn finish(&mut self) -> io::Result<()> {
        let result = self.write_summary();
        self.out.record(result);
        self.out.flush()
    }
}
