//! JSON Lines, one object per event. The field names and meanings are the contract in the
//! README; fields may be added, never renamed.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::LazyLock;

use base64::Engine;
use base64::engine::{Simd, general_purpose};

mod strings;

use strings::{ESCAPE_BLOCK, ESCAPE_OUT, string_in};
pub(super) use strings::{HIGH, bytes_below_space, bytes_equal, string};

use super::community_id::CommunityId;
use super::per_connection::PerConnection;
use super::{Out, OutputSink, TsPrecision};
use crate::event::{
    AnomalyEvent, CloseEvent, Direction, Event, EventSink, FlowEvent, FlowMeta, FrameEvent,
    HandshakeEvent, MessageEvent, Payload, Timestamp,
};
use crate::wire::tls::TlsInfo;

use Direction::{ClientToServer as C2S, ServerToClient as S2C};

/// Binary payloads in base64: the engine checks once whether the CPU has AVX2.
pub(super) static BASE64: LazyLock<Simd> = LazyLock::new(|| Simd::standard(general_purpose::PAD));

pub struct JsonWriter<W: Write> {
    out: Out<W>,
    precision: TsPrecision,
    /// Reused, so no event allocates.
    payloads: PayloadMemo,
    envelopes: PerConnection<EnvelopePart>,
}

impl<W: Write> JsonWriter<W> {
    pub fn new(w: W, precision: TsPrecision) -> Self {
        JsonWriter {
            out: Out::new(w),
            precision,
            payloads: PayloadMemo::default(),
            envelopes: PerConnection::new(1024),
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
}

pub(super) fn num(w: &mut impl Write, n: impl itoa::Integer) -> io::Result<()> {
    w.write_all(itoa::Buffer::new().format(n).as_bytes())
}

pub(super) fn boolean(w: &mut impl Write, b: bool) -> io::Result<()> {
    w.write_all(if b { b"true" } else { b"false" })
}

fn opt_string(w: &mut impl Write, s: Option<&str>) -> io::Result<()> {
    match s {
        Some(s) => string(w, s),
        None => w.write_all(b"null"),
    }
}

fn string_list(w: &mut impl Write, items: &[String]) -> io::Result<()> {
    w.write_all(b"[")?;
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            w.write_all(b",")?;
        }
        string(w, item)?;
    }
    w.write_all(b"]")
}

fn endpoint(w: &mut impl Write, addr: SocketAddr) -> io::Result<()> {
    match addr {
        // Every event names two endpoints: the common case skips the formatting machinery.
        SocketAddr::V4(v4) => {
            let [a, b, c, d] = v4.ip().octets();
            w.write_all(b"\"")?;
            for (i, octet) in [a, b, c, d].into_iter().enumerate() {
                if i > 0 {
                    w.write_all(b".")?;
                }
                num(w, octet)?;
            }
            w.write_all(b":")?;
            num(w, v4.port())?;
            w.write_all(b"\"")
        }
        // "[::1]:5": nothing in it needs escaping.
        SocketAddr::V6(_) => write!(w, "\"{addr}\""),
    }
}

/// What every event's envelope needs besides the event: the capture's precision and the
/// connection's part of it, already written.
#[derive(Clone, Copy)]
struct Env<'a> {
    precision: TsPrecision,
    /// `,"flow":N,"client":"...","server":"...","community_id":"..."`.
    connection: &'a [u8],
}

/// The connection's part of the envelope: the longest is two IPv6 endpoints, a 20-digit
/// number and the ID, well under this.
const ENVELOPE_MAX: usize = 232;

/// A connection's part of the envelope, written once.
struct EnvelopePart {
    len: u8,
    bytes: [u8; ENVELOPE_MAX],
}

impl EnvelopePart {
    fn of(flow: &FlowMeta) -> EnvelopePart {
        let mut part = Vec::with_capacity(ENVELOPE_MAX);
        // Writing into a Vec cannot fail.
        let _ = connection_part(&mut part, flow);
        let len = part.len().min(ENVELOPE_MAX);
        let mut bytes = [0; ENVELOPE_MAX];
        bytes[..len].copy_from_slice(&part[..len]);
        EnvelopePart {
            len: len as u8,
            bytes,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

fn connection_part(w: &mut impl Write, flow: &FlowMeta) -> io::Result<()> {
    w.write_all(b",\"flow\":")?;
    num(w, flow.id)?;
    w.write_all(b",\"client\":")?;
    endpoint(w, flow.client)?;
    w.write_all(b",\"server\":")?;
    endpoint(w, flow.server)?;
    // Base64 and "1:": nothing to escape.
    w.write_all(b",\"community_id\":\"")?;
    w.write_all(CommunityId::of(flow).as_str().as_bytes())?;
    w.write_all(b"\"")
}

fn envelope(
    w: &mut impl Write,
    kind: &str,
    ts: Timestamp,
    env: Env<'_>,
    flow: &FlowMeta,
) -> io::Result<()> {
    let precision = env.precision;
    w.write_all(b"{\"type\":\"")?;
    w.write_all(kind.as_bytes())?;
    w.write_all(b"\",\"ts\":")?;
    ts_value(w, ts, precision)?;
    w.write_all(env.connection)?;
    if flow.midstream {
        w.write_all(b",\"midstream\":true")?;
    }
    Ok(())
}

fn handshake(w: &mut impl Write, p: Env<'_>, e: &HandshakeEvent<'_>) -> io::Result<()> {
    let (req, resp) = (e.request, e.response);
    envelope(w, "handshake", e.ts, p, e.flow)?;
    w.write_all(b",\"uri\":")?;
    string(w, req.uri())?;
    w.write_all(b",\"host\":")?;
    opt_string(w, req.host())?;
    w.write_all(b",\"origin\":")?;
    opt_string(w, req.origin())?;
    w.write_all(b",\"user_agent\":")?;
    opt_string(w, req.user_agent())?;
    w.write_all(b",\"key\":")?;
    opt_string(w, req.key())?;
    w.write_all(b",\"version\":")?;
    opt_string(w, req.version())?;
    w.write_all(b",\"protocols\":")?;
    string_list(w, &req.protocols)?;
    w.write_all(b",\"extensions\":")?;
    string_list(w, &req.extensions)?;
    write!(w, ",\"status\":{},\"reason\":", resp.status)?;
    string(w, resp.reason())?;
    write!(w, ",\"accept\":\"{}\",\"protocol\":", e.accept.name())?;
    opt_string(w, resp.protocol())?;
    w.write_all(b",\"server_extensions\":")?;
    string_list(w, &resp.extensions)?;
    write!(
        w,
        ",\"upgraded\":{},\"latency\":{:.9}",
        e.upgraded,
        e.latency.max(0.0)
    )?;
    tls(w, e.tls)?;
    w.write_all(b"}\n")
}

/// `,"tls":{...}` on the events of a connection decrypted from TLS; nothing on plaintext ones.
fn tls(w: &mut impl Write, info: Option<&TlsInfo>) -> io::Result<()> {
    let Some(info) = info else {
        return Ok(());
    };
    w.write_all(b",\"tls\":{\"version\":")?;
    opt_string(w, info.version_name())?;
    w.write_all(b",\"cipher\":")?;
    opt_string(w, info.cipher_name())?;
    w.write_all(b",\"sni\":")?;
    opt_string(w, info.sni.as_deref())?;
    w.write_all(b",\"alpn\":")?;
    opt_string(w, info.alpn.as_deref())?;
    write!(w, ",\"decrypted\":{}}}", info.decrypted)
}

fn frame(
    w: &mut impl Write,
    p: Env<'_>,
    e: &FrameEvent<'_>,
    payloads: &mut PayloadMemo,
) -> io::Result<()> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let h = e.header;
    envelope(w, "frame", e.ts, p, e.flow)?;
    w.write_all(b",\"dir\":\"")?;
    w.write_all(e.dir.name().as_bytes())?;
    w.write_all(b"\",\"fin\":")?;
    boolean(w, h.fin)?;
    w.write_all(b",\"rsv\":")?;
    num(w, h.rsv)?;
    w.write_all(b",\"opcode\":\"")?;
    w.write_all(h.opcode.name().as_bytes())?;
    w.write_all(b"\",\"masked\":")?;
    boolean(w, h.mask.is_some())?;
    match h.mask {
        Some(key) => {
            let mut hex = [b'"'; 10];
            for (i, byte) in key.iter().enumerate() {
                hex[1 + 2 * i] = HEX[usize::from(byte >> 4)];
                hex[2 + 2 * i] = HEX[usize::from(byte & 15)];
            }
            w.write_all(b",\"mask\":")?;
            w.write_all(&hex)?;
        }
        None => w.write_all(b",\"mask\":null")?,
    }
    w.write_all(b",\"len\":")?;
    num(w, h.len)?;
    payload(w, e.payload, payloads)?;
    w.write_all(b",\"truncated\":")?;
    boolean(w, e.truncated)?;
    if let Some(close) = &e.close {
        match close.code {
            Some(code) => {
                w.write_all(b",\"close_code\":")?;
                num(w, code)?;
            }
            None => w.write_all(b",\"close_code\":null")?,
        }
        w.write_all(b",\"close_reason\":")?;
        string(w, close.reason)?;
    }
    w.write_all(b"}\n")
}

/// The last payload written and what it became. A single-frame message's payload is its
/// frame's, written again in the message event: it is escaped or encoded once.
struct PayloadMemo {
    /// Whether the memo holds a text or a binary payload; None before the first.
    text: Option<bool>,
    input: Vec<u8>,
    /// A binary payload's JSON string (base64, quotes included) in its first `output_len`
    /// bytes; grown, never shrunk, so that base64 does not zero it again for every payload.
    output: Vec<u8>,
    output_len: usize,
    /// A text payload's JSON string, quotes included.
    escaped_text: Vec<u8>,
    /// The block buffer texts are escaped through, reused rather than zeroed for each payload
    /// (with base64's buffer zeroed again after each text: 2.1% of `--json`'s instructions).
    escaped: Box<[u8; ESCAPE_OUT]>,
}

impl Default for PayloadMemo {
    fn default() -> Self {
        PayloadMemo {
            text: None,
            input: Vec::new(),
            output: Vec::new(),
            output_len: 0,
            escaped_text: Vec::new(),
            escaped: Box::new([0; ESCAPE_OUT]),
        }
    }
}

fn payload(w: &mut impl Write, payload: Payload<'_>, memo: &mut PayloadMemo) -> io::Result<()> {
    let (text, bytes) = match payload {
        Payload::Text(text) => (true, text.as_bytes()),
        Payload::Data(data) => (false, data),
    };
    w.write_all(if text { b",\"text\":" } else { b",\"data\":" })?;
    if memo.text != Some(text) || memo.input != bytes {
        memo.text = Some(text);
        memo.input.clear();
        memo.input.extend_from_slice(bytes);
        match payload {
            Payload::Text(text) => {
                memo.escaped_text.clear();
                string_in(
                    &mut memo.escaped_text,
                    text,
                    ESCAPE_BLOCK,
                    &mut memo.escaped,
                )?;
            }
            Payload::Data(data) => {
                let need = data.len().div_ceil(3) * 4 + 2;
                if memo.output.len() < need {
                    memo.output.resize(need, 0);
                }
                let out = &mut memo.output[..need];
                out[0] = b'"';
                out[need - 1] = b'"';
                BASE64
                    .encode_slice(data, &mut out[1..need - 1])
                    .map_err(io::Error::other)?;
                memo.output_len = need;
            }
        }
    }
    if text {
        w.write_all(&memo.escaped_text)
    } else {
        w.write_all(&memo.output[..memo.output_len])
    }
}

fn message(
    w: &mut impl Write,
    p: Env<'_>,
    e: &MessageEvent<'_>,
    payloads: &mut PayloadMemo,
) -> io::Result<()> {
    envelope(w, "message", e.ts, p, e.flow)?;
    w.write_all(b",\"dir\":\"")?;
    w.write_all(e.dir.name().as_bytes())?;
    w.write_all(if e.text {
        b"\",\"opcode\":\"text\",\"len\":"
    } else {
        b"\",\"opcode\":\"binary\",\"len\":"
    })?;
    num(w, e.len)?;
    w.write_all(b",\"wire_len\":")?;
    num(w, e.wire_len)?;
    w.write_all(b",\"frames\":")?;
    num(w, e.frames)?;
    w.write_all(b",\"compressed\":")?;
    boolean(w, e.compressed)?;
    payload(w, e.payload, payloads)?;
    w.write_all(b",\"truncated\":")?;
    boolean(w, e.truncated)?;
    w.write_all(b",\"incomplete\":")?;
    boolean(w, e.incomplete)?;
    w.write_all(b",\"undecodable\":")?;
    boolean(w, e.undecodable)?;
    // Only messages inflated without their history have these: exact ones stay as they were.
    if e.partial {
        w.write_all(b",\"partial\":true,\"unknown_bytes\":")?;
        num(w, e.unknown_bytes)?;
    }
    w.write_all(b"}\n")
}

fn side(dir: Option<Direction>) -> &'static str {
    match dir {
        Some(Direction::ClientToServer) => "\"client\"",
        Some(Direction::ServerToClient) => "\"server\"",
        None => "null",
    }
}

fn opt_u16(w: &mut impl Write, value: Option<u16>) -> io::Result<()> {
    match value {
        Some(v) => write!(w, "{v}"),
        None => w.write_all(b"null"),
    }
}

fn close(w: &mut impl Write, p: Env<'_>, e: &CloseEvent<'_>) -> io::Result<()> {
    envelope(w, "close", e.ts, p, e.flow)?;
    write!(w, ",\"initiator\":{},\"code\":", side(e.initiator))?;
    opt_u16(w, e.code)?;
    w.write_all(b",\"reason\":")?;
    opt_string(w, e.reason)?;
    w.write_all(b",\"reply_code\":")?;
    opt_u16(w, e.reply_code)?;
    writeln!(
        w,
        ",\"replied\":{},\"clean\":{},\"end\":\"{}\"}}",
        e.replied,
        e.clean,
        e.end.name()
    )
}

fn anomaly(w: &mut impl Write, p: Env<'_>, e: &AnomalyEvent<'_>) -> io::Result<()> {
    envelope(w, "anomaly", e.ts, p, e.flow)?;
    match e.dir {
        Some(dir) => write!(w, ",\"dir\":\"{}\"", dir.name())?,
        None => w.write_all(b",\"dir\":null")?,
    }
    write!(
        w,
        ",\"kind\":\"{}\",\"cause\":\"{}\",\"detail\":",
        e.kind.name(),
        e.cause.name()
    )?;
    string(w, e.detail)?;
    w.write_all(b"}\n")
}

/// A timestamp as seconds with the capture's digits. Before the epoch the fraction counts
/// back from the whole second: `secs` -5 and 250 ms is -4.75 s, written `-4.750000`.
fn ts_value(w: &mut impl Write, ts: Timestamp, p: TsPrecision) -> io::Result<()> {
    if ts.secs < 0 && ts.nanos > 0 {
        w.write_all(b"-")?;
        num(w, (ts.secs + 1).unsigned_abs())?;
        w.write_all(b".")?;
        return p.write_fraction(
            w,
            Timestamp {
                secs: 0,
                nanos: 1_000_000_000 - ts.nanos,
            },
        );
    }
    num(w, ts.secs)?;
    w.write_all(b".")?;
    p.write_fraction(w, ts)
}

fn flow(w: &mut impl Write, p: Env<'_>, e: &FlowEvent<'_>) -> io::Result<()> {
    let c = e.counters;
    envelope(w, "flow", e.ts, p, e.flow)?;
    w.write_all(b",\"uri\":")?;
    opt_string(w, e.uri)?;
    w.write_all(b",\"protocol\":")?;
    opt_string(w, e.protocol)?;
    w.write_all(b",\"extensions\":")?;
    string_list(w, e.extensions)?;
    w.write_all(b",\"status\":")?;
    opt_u16(w, e.status)?;
    w.write_all(b",\"start\":")?;
    ts_value(w, e.start, p.precision)?;
    write!(
        w,
        ",\"duration\":{:.9},\"frames_c2s\":{},\"frames_s2c\":{},\"messages_c2s\":{},\"messages_s2c\":{},\"bytes_c2s\":{},\"bytes_s2c\":{},\"pings\":{},\"pongs\":{},\"ping_rtt\":",
        e.ts.seconds_since(e.start).max(0.0),
        c.frames[C2S],
        c.frames[S2C],
        c.messages[C2S],
        c.messages[S2C],
        c.bytes[C2S],
        c.bytes[S2C],
        c.pings,
        c.pongs
    )?;
    match e.ping_rtt {
        Some(rtt) => write!(w, "{rtt:.9}")?,
        None => w.write_all(b"null")?,
    }
    write!(w, ",\"longest_silence\":{:.6}", c.longest_silence)?;
    w.write_all(b",\"close_code_c2s\":")?;
    opt_u16(w, c.close_codes[C2S])?;
    w.write_all(b",\"close_code_s2c\":")?;
    opt_u16(w, c.close_codes[S2C])?;
    write!(
        w,
        ",\"bytes_cut_c2s\":{},\"bytes_cut_s2c\":{}",
        e.bytes_cut[Direction::ClientToServer],
        e.bytes_cut[Direction::ServerToClient]
    )?;
    let t = &e.traffic;
    write!(
        w,
        ",\"packets_c2s\":{},\"packets_s2c\":{},\"packet_bytes_c2s\":{},\"packet_bytes_s2c\":{}",
        t.packets[C2S], t.packets[S2C], t.bytes[C2S], t.bytes[S2C]
    )?;
    write!(w, ",\"end\":\"{}\"", e.end.name())?;
    tls(w, e.tls)?;
    w.write_all(b"}\n")
}

impl<W: Write> EventSink for JsonWriter<W> {
    fn event(&mut self, event: &Event<'_>) {
        if self.out.error.is_some() {
            return;
        }
        let w = &mut self.out.w;
        // Only `wsnoop diagnose` asks for connection events; they are not part of the stream.
        let Some(flow_meta) = event.flow() else {
            return;
        };
        let p = Env {
            precision: self.precision,
            connection: self.envelopes.get(flow_meta, EnvelopePart::of).as_bytes(),
        };
        let result = match event {
            Event::Handshake(e) => handshake(w, p, e),
            Event::Frame(e) => frame(w, p, e, &mut self.payloads),
            Event::Message(e) => message(w, p, e, &mut self.payloads),
            Event::Close(e) => close(w, p, e),
            Event::Anomaly(e) => anomaly(w, p, e),
            Event::Flow(e) => flow(w, p, e),
            Event::Connection(_) => Ok(()),
        };
        self.out.record(result);
    }
}

impl<W: Write> OutputSink for JsonWriter<W> {
    fn error(&self) -> Option<&io::Error> {
        self.out.error.as_ref()
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_written_again_come_out_the_same() {
        use base64::engine::general_purpose::STANDARD;
        let payloads = [
            Payload::Data(b""),
            Payload::Text(""),
            Payload::Data(b""),
            Payload::Text("a \"quoted\" \\ text"),
            Payload::Text("a \"quoted\" \\ text"),
            Payload::Data(b"a \"quoted\" \\ text"),
            Payload::Data(b"\x00\xff binary"),
            Payload::Data(b"\x00\xff binary"),
            Payload::Text("shorter"),
        ];
        let mut memo = PayloadMemo::default();
        for p in payloads {
            let want = match p {
                Payload::Text(t) => format!(",\"text\":{}", serde_json::to_string(t).unwrap()),
                Payload::Data(d) => format!(",\"data\":\"{}\"", STANDARD.encode(d)),
            };
            let mut got = Vec::new();
            payload(&mut got, p, &mut memo).unwrap();
            assert_eq!(String::from_utf8(got).unwrap(), want);
        }
    }

    #[test]
    fn timestamps_before_the_epoch_count_back() {
        let text = |secs, nanos, p| {
            let mut out = Vec::new();
            ts_value(&mut out, Timestamp { secs, nanos }, p).unwrap();
            String::from_utf8(out).unwrap()
        };
        // Each value read back as a number is the timestamp: secs + nanos / 1e9.
        assert_eq!(text(-5, 250_000_000, TsPrecision::Micro), "-4.750000");
        assert_eq!(text(-1, 999_999_999, TsPrecision::Nano), "-0.000000001");
        assert_eq!(text(-5, 0, TsPrecision::Micro), "-5.000000");
        assert_eq!(text(3, 5_000, TsPrecision::Micro), "3.000005");
        assert_eq!(
            text(i64::MIN, 1, TsPrecision::Nano),
            "-9223372036854775807.999999999"
        );
    }
}
