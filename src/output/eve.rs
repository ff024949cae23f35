//! `--format eve`: Suricata's EVE JSON, for the pipelines that already read Suricata's logs
//! (Filebeat's and Elastic Agent's Suricata modules, Logstash, the Splunk add-on, Tenzir).
//! Every line validates against Suricata's own `etc/schema.json`, which allows no field
//! outside it, so what EVE has no field for (messages apart from their last frame, the close
//! handshake, inflated sizes) stays in `--format json`.
//!
//! As Suricata does, there is one `websocket` event per frame, and the last frame of a
//! fragmented or compressed message carries the whole message, reassembled and inflated.

use std::io::{self, Write};
use std::net::SocketAddr;

use base64::Engine;

use super::community_id::CommunityId;
use super::json::{BASE64, boolean, num, string};
use super::per_connection::PerConnection;
use super::{Out, OutputSink, civil_from_days};
use crate::event::{
    AnomalyEvent, Direction, EndReason, Event, EventSink, FlowEvent, FlowMeta, FrameEvent,
    HandshakeEvent, MessageEvent, Payload, Timestamp,
};
use crate::wire::frame::Opcode;

pub struct EveWriter<W: Write> {
    out: Out<W>,
    community_ids: PerConnection<CommunityId>,
    /// The last frame of a message that the message event right after it completes.
    held: Option<HeldFrame>,
    /// The held frame's own payload, should no message event follow. Reused.
    held_payload: Vec<u8>,
    /// Write `pcap_cnt` (reading a capture file, as Suricata does).
    pcap_cnt: bool,
    /// The packet the events to come belong to.
    packet: Option<u64>,
}

/// What a `websocket` event needs of a frame, kept until its message arrives.
#[derive(Clone, Copy)]
struct HeldFrame {
    ts: Timestamp,
    packet: Option<u64>,
    flow: FlowMeta,
    dir: Direction,
    fin: bool,
    mask: Option<[u8; 4]>,
    opcode: Opcode,
}

impl<W: Write> EveWriter<W> {
    /// `pcap_cnt`: say which packet of the capture file each event came with.
    pub fn new(w: W, pcap_cnt: bool) -> Self {
        EveWriter {
            out: Out::new(w),
            community_ids: PerConnection::new(4096),
            held: None,
            held_payload: Vec::new(),
            pcap_cnt,
            packet: None,
        }
    }

    fn packet(&self) -> Option<u64> {
        self.packet.filter(|_| self.pcap_cnt)
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out.w
    }

    pub fn get_ref(&self) -> &W {
        &self.out.w
    }

    /// Writes the held frame with its own payload (no message event came for it): also at
    /// the end of its packet, so that a live reader does not wait for the next one when its
    /// message was not shown (`--grep`).
    pub(crate) fn release(&mut self) {
        if let Some(held) = self.held.take() {
            let id = *self.community_ids.get(&held.flow, CommunityId::of);
            let payload = std::mem::take(&mut self.held_payload);
            let result = websocket(&mut self.out.w, id.as_str(), &held, &payload);
            self.held_payload = payload;
            self.out.record(result);
        }
    }

    fn frame(&mut self, e: &FrameEvent<'_>) -> io::Result<()> {
        let h = e.header;
        let held = HeldFrame {
            ts: e.ts,
            packet: self.packet(),
            flow: *e.flow,
            dir: e.dir,
            fin: h.fin,
            mask: h.mask,
            opcode: h.opcode,
        };
        let bytes = match e.payload {
            Payload::Text(t) => t.as_bytes(),
            Payload::Data(d) => d,
        };
        let data = matches!(
            h.opcode,
            Opcode::Continuation | Opcode::Text | Opcode::Binary
        );
        // The last frame of a message of several frames, or of a compressed one: the message
        // event that follows at once has the payload Suricata shows for it.
        if data && h.fin && (h.opcode == Opcode::Continuation || h.rsv & 4 != 0) {
            self.held_payload.clear();
            self.held_payload.extend_from_slice(bytes);
            self.held = Some(held);
            return Ok(());
        }
        let id = *self.community_ids.get(e.flow, CommunityId::of);
        websocket(&mut self.out.w, id.as_str(), &held, bytes)
    }

    fn message(&mut self, e: &MessageEvent<'_>) -> io::Result<()> {
        let Some(held) = self
            .held
            .take_if(|h| h.flow.id == e.flow.id && h.dir == e.dir)
        else {
            return Ok(());
        };
        let id = *self.community_ids.get(e.flow, CommunityId::of);
        let payload = match e.payload {
            // Without its dictionary, the compressed bytes are all there is to show.
            _ if e.undecodable => &self.held_payload[..],
            Payload::Text(t) => t.as_bytes(),
            Payload::Data(d) => d,
        };
        websocket(&mut self.out.w, id.as_str(), &held, payload)
    }
}

/// Suricata's timestamp: local time with its offset; wsnoop writes UTC, `+0000`.
fn timestamp(w: &mut impl Write, ts: Timestamp) -> io::Result<()> {
    let days = ts.secs.div_euclid(86_400);
    let day = ts.secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    write!(
        w,
        "{{\"timestamp\":\"{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}+0000\"",
        day / 3600,
        day / 60 % 60,
        day % 60,
        ts.nanos / 1000
    )
}

/// A number for the connection that every record of it shares, as Suricata's flow_id: from
/// its Community ID and its number in the capture, below 2^53 so that every JSON reader
/// keeps it exact.
fn flow_id(community_id: &str, flow: &FlowMeta) -> u64 {
    use std::hash::BuildHasher;
    let h = foldhash::fast::FixedState::with_seed(0x5ec0_11d0).hash_one((community_id, flow.id));
    h & ((1 << 53) - 1)
}

/// What an event says of itself in the envelope.
struct Head<'a> {
    /// Suricata's event_type.
    kind: &'a str,
    /// The capture file's packet it came with, from 1.
    pcap_cnt: Option<u64>,
    /// The endpoints in the event's direction.
    from: SocketAddr,
    to: SocketAddr,
    app_proto: &'a str,
}

/// The envelope: time, flow_id, event_type, endpoints, protocols, Community ID.
fn envelope(
    w: &mut impl Write,
    ts: Timestamp,
    community_id: &str,
    flow: &FlowMeta,
    head: Head<'_>,
) -> io::Result<()> {
    let Head {
        kind,
        pcap_cnt,
        from,
        to,
        app_proto,
    } = head;
    timestamp(w, ts)?;
    w.write_all(b",\"flow_id\":")?;
    num(w, flow_id(community_id, flow))?;
    if let Some(n) = pcap_cnt {
        w.write_all(b",\"pcap_cnt\":")?;
        num(w, n)?;
    }
    write!(w, ",\"event_type\":\"{kind}\",\"src_ip\":")?;
    // An address has nothing to escape: written as it displays, without a String.
    write!(w, "\"{}\"", from.ip())?;
    w.write_all(b",\"src_port\":")?;
    num(w, from.port())?;
    w.write_all(b",\"dest_ip\":")?;
    write!(w, "\"{}\"", to.ip())?;
    w.write_all(b",\"dest_port\":")?;
    num(w, to.port())?;
    write!(
        w,
        ",\"proto\":\"TCP\",\"app_proto\":\"{app_proto}\",\"community_id\":\"{community_id}\""
    )
}

/// Suricata's name of an opcode: the RFC's in lower case, `unknown-N` for reserved ones.
fn opcode_name(op: Opcode) -> std::borrow::Cow<'static, str> {
    match op {
        Opcode::Reserved(n) => format!("unknown-{n}").into(),
        op => op.name().into(),
    }
}

fn websocket(w: &mut impl Write, id: &str, f: &HeldFrame, payload: &[u8]) -> io::Result<()> {
    let (from, to) = (f.flow.source(f.dir), f.flow.destination(f.dir));
    let head = Head {
        kind: "websocket",
        pcap_cnt: f.packet,
        from,
        to,
        app_proto: "websocket",
    };
    envelope(w, f.ts, id, &f.flow, head)?;
    w.write_all(b",\"websocket\":{\"fin\":")?;
    boolean(w, f.fin)?;
    if let Some(mask) = f.mask {
        w.write_all(b",\"mask\":")?;
        num(w, u32::from_be_bytes(mask))?;
    }
    w.write_all(b",\"opcode\":")?;
    string(w, &opcode_name(f.opcode))?;
    w.write_all(b",\"payload_base64\":\"")?;
    // In pieces of a multiple of 3 bytes, so that only the last is padded: no allocation.
    let mut out = [0u8; 1024];
    for piece in payload.chunks(768) {
        let n = BASE64.encode_slice(piece, &mut out).unwrap_or(0);
        w.write_all(&out[..n])?;
    }
    w.write_all(b"\",\"payload_printable\":")?;
    // As Suricata: the payload as UTF-8, invalid sequences replaced.
    string(w, &String::from_utf8_lossy(payload))?;
    w.write_all(b"}}\n")
}

/// The Host header without its port, as Suricata's `hostname`.
fn hostname(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(name, _)| name)
}

fn http(w: &mut impl Write, id: &str, cnt: Option<u64>, e: &HandshakeEvent<'_>) -> io::Result<()> {
    let (req, resp) = (e.request, e.response);
    let flow = e.flow;
    let head = Head {
        kind: "http",
        pcap_cnt: cnt,
        from: flow.client,
        to: flow.server,
        app_proto: "http",
    };
    envelope(w, e.ts, id, flow, head)?;
    w.write_all(b",\"tx_id\":0,\"http\":{")?;
    if let Some(host) = req.host() {
        w.write_all(b"\"hostname\":")?;
        string(w, hostname(host))?;
        w.write_all(b",")?;
    }
    w.write_all(b"\"url\":")?;
    string(w, req.uri())?;
    if let Some(ua) = req.user_agent() {
        w.write_all(b",\"http_user_agent\":")?;
        string(w, ua)?;
    }
    w.write_all(b",\"http_method\":")?;
    string(w, req.method())?;
    w.write_all(b",\"protocol\":\"HTTP/1.1\",\"status\":")?;
    num(w, resp.status)?;
    w.write_all(b",\"length\":0")?;
    // As Suricata's dump-all-headers logs them: the headers wsnoop keeps.
    headers(w, "request_headers", &req.kept_headers())?;
    headers(w, "response_headers", &resp.kept_headers())?;
    w.write_all(b"}}\n")
}

fn headers(w: &mut impl Write, key: &str, kept: &[(&str, String)]) -> io::Result<()> {
    // Suricata's schema wants at least one header when the field is there.
    if kept.is_empty() {
        return Ok(());
    }
    write!(w, ",\"{key}\":[")?;
    for (i, (name, value)) in kept.iter().enumerate() {
        if i > 0 {
            w.write_all(b",")?;
        }
        w.write_all(b"{\"name\":")?;
        string(w, name)?;
        w.write_all(b",\"value\":")?;
        string(w, value)?;
        w.write_all(b"}")?;
    }
    w.write_all(b"]")
}

/// Suricata's flow `state` and `reason` for how a connection ended.
fn state_reason(end: EndReason) -> (&'static str, &'static str) {
    match end {
        EndReason::Fin | EndReason::Rst => ("closed", "timeout"),
        EndReason::Timeout => ("established", "timeout"),
        EndReason::Evicted => ("established", "forced"),
        EndReason::CaptureEnd => ("established", "shutdown"),
    }
}

fn flow(w: &mut impl Write, id: &str, cnt: Option<u64>, e: &FlowEvent<'_>) -> io::Result<()> {
    let f = e.flow;
    let app = if e.status == Some(101) || f.midstream {
        "websocket"
    } else {
        "http"
    };
    let head = Head {
        kind: "flow",
        pcap_cnt: cnt,
        from: f.client,
        to: f.server,
        app_proto: app,
    };
    envelope(w, e.ts, id, f, head)?;
    let (state, reason) = state_reason(e.end);
    let t = &e.traffic;
    write!(
        w,
        ",\"flow\":{{\"pkts_toserver\":{},\"pkts_toclient\":{},\"bytes_toserver\":{},\"bytes_toclient\":{},\"start\":",
        t.packets[Direction::ClientToServer],
        t.packets[Direction::ServerToClient],
        t.bytes[Direction::ClientToServer],
        t.bytes[Direction::ServerToClient]
    )?;
    let mut start = Vec::with_capacity(48);
    timestamp(&mut start, e.start)?;
    // `{"timestamp":"` and the closing quote come off: the value alone.
    w.write_all(&start[13..])?;
    w.write_all(b",\"end\":")?;
    let mut end = Vec::with_capacity(48);
    timestamp(&mut end, e.ts)?;
    w.write_all(&end[13..])?;
    w.write_all(b",\"age\":")?;
    num(w, e.ts.secs.saturating_sub(e.start.secs).max(0))?;
    writeln!(
        w,
        ",\"state\":\"{state}\",\"reason\":\"{reason}\",\"alerted\":false}}}}"
    )
}

fn anomaly(w: &mut impl Write, id: &str, cnt: Option<u64>, e: &AnomalyEvent<'_>) -> io::Result<()> {
    let f = e.flow;
    let dir = e.dir.unwrap_or(Direction::ClientToServer);
    let name = e.kind.name();
    let app = if name.starts_with("tls_") {
        "tls"
    } else {
        "websocket"
    };
    let head = Head {
        kind: "anomaly",
        pcap_cnt: cnt,
        from: f.source(dir),
        to: f.destination(dir),
        app_proto: app,
    };
    envelope(w, e.ts, id, f, head)?;
    writeln!(
        w,
        ",\"anomaly\":{{\"type\":\"applayer\",\"event\":\"{name}\",\"layer\":\"proto_parser\",\"app_proto\":\"{app}\"}}}}"
    )
}

impl<W: Write> EventSink for EveWriter<W> {
    fn event(&mut self, event: &Event<'_>) {
        if self.out.error.is_some() {
            return;
        }
        if !matches!(event, Event::Message(_) | Event::Anomaly(_)) {
            self.release();
        }
        let Some(flow_meta) = event.flow() else {
            return;
        };
        let id = *self.community_ids.get(flow_meta, CommunityId::of);
        let cnt = self.packet();
        let result = match event {
            Event::Frame(e) => self.frame(e),
            Event::Message(e) => {
                let r = self.message(e);
                self.release();
                r
            }
            Event::Handshake(e) => http(&mut self.out.w, id.as_str(), cnt, e),
            Event::Anomaly(e) => anomaly(&mut self.out.w, id.as_str(), cnt, e),
            Event::Flow(e) => flow(&mut self.out.w, id.as_str(), cnt, e),
            Event::Close(_) | Event::Connection(_) => Ok(()),
        };
        self.out.record(result);
    }

    fn at_packet(&mut self, number: Option<u64>) {
        // Said again for each event when merged from threads: only a new packet ends one.
        if number != self.packet {
            self.release();
        }
        self.packet = number;
    }
}

impl<W: Write> OutputSink for EveWriter<W> {
    fn error(&self) -> Option<&io::Error> {
        self.out.error.as_ref()
    }

    fn flush(&mut self) -> io::Result<()> {
        self.release();
        self.out.flush()
    }

    fn finish(&mut self) -> io::Result<()> {
        self.release();
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_match_the_calendar() {
        // Checked against `date -u -d @SECS`.
        let day = |secs: i64| civil_from_days(secs.div_euclid(86_400));
        assert_eq!(day(0), (1970, 1, 1));
        assert_eq!(day(951_782_400), (2000, 2, 29));
        assert_eq!(day(1_795_611_253), (2026, 11, 25));
        assert_eq!(day(-86_400), (1969, 12, 31));
    }

    #[test]
    fn hostname_drops_the_port() {
        assert_eq!(hostname("example.com:8080"), "example.com");
        assert_eq!(hostname("example.com"), "example.com");
        assert_eq!(hostname("[::1]:9001"), "::1");
    }
}
