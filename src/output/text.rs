//! One line per event for people. Payloads are escaped so that no byte off the wire can move
//! the cursor, change colours or reorder text on the terminal.

use std::io::{self, Write};

use super::escape::{escaped, escaped_json};
use super::hexview;
use super::summary::Summary;
use super::{Out, OutputSink, TsPrecision, civil_from_days};
use crate::event::{
    AnomalyEvent, CloseEvent, CloseInfo, Direction, EndReason, Event, EventSink, FlowEvent,
    FlowMeta, FrameEvent, FrameHold, HandshakeEvent, MessageEvent, Payload, Timestamp,
};

use crate::wire::frame::{FrameHeader, Opcode};

/// How a text line starts: tcpdump's `-t` options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeFormat {
    /// The time of day (the default).
    Clock,
    /// `-t`: no time.
    None,
    /// `-tt`: seconds since the epoch.
    Epoch,
    /// `-ttt`: since the previous line.
    Delta,
    /// `-tttt`: the date and the time of day.
    DateTime,
    /// `-ttttt`: since the first line.
    SinceFirst,
}

/// tcpdump's habits in the text view: how lines start, the time zone, hex dumps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TextStyle {
    pub time: TimeFormat,
    pub utc: bool,
    pub hex_dump: bool,
    /// JSON texts pretty-printed under their line (`--pretty`).
    pub pretty: bool,
}

impl Default for TextStyle {
    fn default() -> Self {
        TextStyle {
            time: TimeFormat::Clock,
            utc: false,
            hex_dump: false,
            pretty: false,
        }
    }
}

pub struct TextWriter<W: Write> {
    out: Out<W>,
    /// `--summary`: one row per connection, printed as a table at the end.
    summary: Option<Summary>,
    precision: TsPrecision,
    color: bool,
    time: TimeFormat,
    /// Date and time in UTC rather than local time (`--utc`).
    utc: bool,
    /// `-X`: each payload shown also as hex and ASCII, under its line.
    hex_dump: bool,
    /// `--pretty`: JSON texts indented under their line.
    pretty: bool,
    /// The clock text of `clock_secs` ("HH:MM:SS", or with the date), cached: most events
    /// share their second.
    clock_secs: i64,
    clock: String,
    /// The first line's time, and the previous line's (`-ttttt`, `-ttt`).
    first_ts: Option<Timestamp>,
    last_ts: Option<Timestamp>,
    /// Print message events (`--show messages` or `all`); without, they only complete the
    /// held frames.
    messages: bool,
    /// The last frame of a fragmented or compressed message, waiting for the message event
    /// that follows it at once: a compressed message's frame then shows the inflated text, as
    /// DevTools shows a browser's messages.
    held: FrameHold,
    /// The packet the events belong to, as [`EventSink::at_packet`] said.
    packet: Option<u64>,
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
            time: TimeFormat::Clock,
            utc: false,
            hex_dump: false,
            pretty: false,
            clock_secs: i64::MIN,
            clock: String::new(),
            first_ts: None,
            last_ts: None,
            messages: true,
            held: FrameHold::default(),
            packet: None,
        }
    }

    /// How lines start and what follows them: tcpdump's habits.
    pub fn with_style(mut self, style: TextStyle) -> Self {
        self.time = style.time;
        self.utc = style.utc;
        self.hex_dump = style.hex_dump;
        self.pretty = style.pretty;
        self
    }

    /// Message events complete their last frame (a compressed one shows the inflated text)
    /// but are not printed themselves: the frame view.
    pub fn without_message_lines(mut self) -> Self {
        self.messages = false;
        self
    }

    /// A held frame whose message did not come with it is shown with its own payload: its
    /// message comes in the same packet, if at all (`--grep` may have dropped it), so a held
    /// frame never waits for the next packet.
    pub fn release_held(&mut self) {
        let released = self.held_frame(None);
        self.out.record(released);
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

    /// The line's time and the space after it (nothing with `-t`).
    fn time(&mut self, ts: Timestamp) -> io::Result<()> {
        let first = *self.first_ts.get_or_insert(ts);
        let last = self.last_ts.replace(ts).unwrap_or(ts);
        match self.time {
            TimeFormat::None => return Ok(()),
            TimeFormat::Epoch => {
                write!(self.out.w, "{}.", ts.secs)?;
                self.precision.write_fraction(&mut self.out.w, ts)?;
            }
            TimeFormat::Delta => self.duration(ts, last)?,
            TimeFormat::SinceFirst => self.duration(ts, first)?,
            TimeFormat::Clock | TimeFormat::DateTime => {
                if ts.secs != self.clock_secs {
                    self.clock_secs = ts.secs;
                    let (y, mo, d, h, mi, s) = calendar(ts.secs, self.utc);
                    self.clock.clear();
                    if self.time == TimeFormat::DateTime {
                        self.clock.push_str(&format!("{y:04}-{mo:02}-{d:02} "));
                    }
                    self.clock.push_str(&format!("{h:02}:{mi:02}:{s:02}"));
                }
                self.out.w.write_all(self.clock.as_bytes())?;
                self.out.w.write_all(b".")?;
                self.precision.write_fraction(&mut self.out.w, ts)?;
            }
        }
        self.out.w.write_all(b" ")
    }

    /// `ts - from` as seconds with the capture's digits, signed.
    fn duration(&mut self, ts: Timestamp, from: Timestamp) -> io::Result<()> {
        let nanos = (i128::from(ts.secs) - i128::from(from.secs)) * 1_000_000_000
            + i128::from(ts.nanos)
            - i128::from(from.nanos);
        let sign = if nanos < 0 { "-" } else { "" };
        let abs = nanos.unsigned_abs();
        write!(self.out.w, "{sign}{}.", abs / 1_000_000_000)?;
        let rest = Timestamp {
            secs: 0,
            nanos: (abs % 1_000_000_000) as u32,
        };
        self.precision.write_fraction(&mut self.out.w, rest)
    }

    fn handshake(&mut self, e: &HandshakeEvent<'_>) -> io::Result<()> {
        self.connection_prefix(e.ts, e.flow)?;
        let style = if e.upgraded { CYAN } else { RED };
        self.paint(&style, "handshake")?;
        let w = &mut self.out.w;
        w.write_all(b" ")?;
        escaped(w, e.request.method())?;
        w.write_all(b" ")?;
        escaped(w, e.request.uri())?;
        write!(w, " -> {} ", e.response.status)?;
        escaped(w, e.response.reason())?;
        write!(w, " accept={}", e.accept.name())?;
        if let Some(p) = e.response.protocol() {
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
        if FrameHold::completes_a_message(h) {
            self.held.hold(e);
            return Ok(());
        }
        self.frame_line(e.ts, e.flow, e.dir, h, e.close.as_ref())?;
        // A close frame's line says its code and reason instead.
        if e.close.is_none() {
            payload(&mut self.out.w, e.payload, e.truncated)?;
        }
        self.out.w.write_all(b"\n")?;
        self.dump(e.payload)
    }

    /// What follows a payload's line: `--pretty`'s JSON, then `-X`'s dump.
    fn dump(&mut self, payload: Payload<'_>) -> io::Result<()> {
        if self.pretty
            && let Payload::Text(text) = payload
            && looks_like_json(text)
            && let Ok(value) = serde_json::from_str::<serde_json::Value>(text)
            && let Ok(pretty) = serde_json::to_string_pretty(&value)
        {
            for line in pretty.lines() {
                self.out.w.write_all(b"    ")?;
                escaped_json(&mut self.out.w, line)?;
                self.out.w.write_all(b"\n")?;
            }
        }
        if !self.hex_dump {
            return Ok(());
        }
        let bytes = match payload {
            Payload::Text(t) => t.as_bytes(),
            Payload::Data(d) => d,
        };
        hexview::dump(&mut self.out.w, bytes)
    }

    /// A held frame, with the message's inflated payload when it is compressed, else its own.
    fn held_frame(&mut self, message: Option<&MessageEvent<'_>>) -> io::Result<()> {
        let Some(held) = self.held.frame.take() else {
            return Ok(());
        };
        self.frame_line(held.ts, &held.flow, held.dir, &held.header, None)?;
        let own = std::mem::take(&mut self.held.payload);
        let result = match message {
            Some(m) if m.compressed && !m.undecodable => {
                self.out.w.write_all(b" inflated")?;
                payload(&mut self.out.w, m.payload, m.truncated)
            }
            _ => payload(&mut self.out.w, held.payload(&own), held.truncated),
        };
        result?;
        self.out.w.write_all(b"\n")?;
        let dumped = match message {
            Some(m) if m.compressed && !m.undecodable => self.dump(m.payload),
            _ => self.dump(held.payload(&own)),
        };
        self.held.payload = own;
        dumped
    }

    /// A frame's line up to its payload.
    fn frame_line(
        &mut self,
        ts: Timestamp,
        flow: &FlowMeta,
        dir: Direction,
        h: &FrameHeader,
        close: Option<&CloseInfo<'_>>,
    ) -> io::Result<()> {
        self.prefix(ts, flow, dir)?;
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
        if let Some(close) = close {
            match close.code {
                Some(code) => write!(w, " code={code}")?,
                None => w.write_all(b" code=none")?,
            }
            if !close.reason.is_empty() {
                w.write_all(b" reason=\"")?;
                escaped(w, close.reason)?;
                w.write_all(b"\"")?;
            }
        }
        Ok(())
    }

    fn prefix(&mut self, ts: Timestamp, flow: &FlowMeta, dir: Direction) -> io::Result<()> {
        self.time(ts)?;
        write!(
            self.out.w,
            "#{} {} > {} ",
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
        w.write_all(b"\n")?;
        self.dump(e.payload)
    }

    fn close(&mut self, e: &CloseEvent<'_>) -> io::Result<()> {
        self.connection_prefix(e.ts, e.flow)?;
        // The capture, not the session, ended: nothing closed it (a live capture's Ctrl-C).
        if e.end == EndReason::CaptureEnd && e.initiator.is_none() {
            self.paint(&CYAN, "still open")?;
            return writeln!(self.out.w, " at the end of the capture");
        }
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

/// A text that reads as a JSON object or array (what signalling servers send): shown as it
/// is rather than quoted, so its own quotes need no escape.
fn looks_like_json(text: &str) -> bool {
    let t = text.trim();
    (t.starts_with('{') && t.ends_with('}')) || (t.starts_with('[') && t.ends_with(']'))
}

fn payload(w: &mut impl Write, payload: Payload<'_>, truncated: bool) -> io::Result<()> {
    match payload {
        Payload::Text(text) if !truncated && looks_like_json(text) => {
            w.write_all(b" ")?;
            escaped_json(w, text)?;
        }
        Payload::Text(text) if !text.is_empty() => {
            w.write_all(b" \"")?;
            escaped(w, text)?;
            w.write_all(b"\"")?;
            if truncated {
                w.write_all(b"...")?;
            }
        }
        Payload::Data(data) if !data.is_empty() => hexview::preview(w, data, truncated)?,
        _ => {}
    }
    Ok(())
}

/// The date and time of day of `secs`: local as tcpdump prints it, or UTC.
fn calendar(secs: i64, utc: bool) -> (i64, u32, u32, i64, i64, i64) {
    let local = (!utc)
        .then(|| crate::ffi::local_time(secs))
        .flatten()
        .map(|(y, mo, d, h, mi, s)| (y, mo, d, i64::from(h), i64::from(mi), i64::from(s)));
    local.unwrap_or_else(|| {
        let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
        let day = secs.rem_euclid(86_400);
        (y, mo, d, day / 3600, day / 60 % 60, day % 60)
    })
}

impl<W: Write> EventSink for TextWriter<W> {
    fn event(&mut self, event: &Event<'_>) {
        if self.out.error.is_some() {
            return;
        }
        // A held frame goes out before anything else; a message event completes it.
        let completes = match event {
            Event::Message(m) => self
                .held
                .frame
                .as_ref()
                .is_some_and(|h| h.flow.id == m.flow.id && h.dir == m.dir),
            _ => false,
        };
        let message = match event {
            Event::Message(m) if completes => Some(m),
            _ => None,
        };
        let released = self.held_frame(message);
        self.out.record(released);
        let result = match event {
            Event::Handshake(e) => self.handshake(e),
            Event::Frame(e) => self.frame(e),
            Event::Message(_) if !self.messages => Ok(()),
            Event::Message(e) => self.message(e),
            Event::Close(e) => self.close(e),
            Event::Anomaly(e) => self.anomaly(e),
            Event::Flow(e) => self.flow(e),
            Event::Connection(_) => Ok(()),
        };
        self.out.record(result);
    }

    fn at_packet(&mut self, number: Option<u64>) {
        // Said again for each event when merged from threads: only a new packet ends one.
        if number != self.packet {
            self.packet = number;
            self.release_held();
        }
    }
}

impl<W: Write> OutputSink for TextWriter<W> {
    fn error(&self) -> Option<&io::Error> {
        self.out.error.as_ref()
    }

    fn flush(&mut self) -> io::Result<()> {
        // What is flushed is what a live reader waits for: a held frame too.
        self.release_held();
        self.out.flush()
    }

    fn finish(&mut self) -> io::Result<()> {
        let held = self.held_frame(None);
        self.out.record(held);
        let result = self.write_summary();
        self.out.record(result);
        self.out.flush()
    }
}
