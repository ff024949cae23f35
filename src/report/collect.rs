//! What a report and a HAR file show, collected from the events as they go by, within fixed
//! bounds: payloads as the analyzer kept them (`--max-payload`), a cap on the messages kept per
//! connection and in all, on the payload bytes kept in all, and on the connections listed.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::event::{
    CloseEvent, Direction, EndReason, Event, EventSink, FlowEvent, FlowMeta, FrameEvent,
    HandshakeEvent, MessageEvent, Payload, PerDir, Timestamp,
};
use crate::wire::frame::Opcode;
use crate::wire::http::{AcceptVerdict, UpgradeRequest, UpgradeResponse};

/// How much a report or a HAR file keeps. Beyond a cap, what comes next is counted, not kept,
/// and the file says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Messages and control frames kept per connection.
    pub messages_per_connection: usize,
    /// Messages and control frames kept in all.
    pub messages: usize,
    /// Payload bytes kept in all; past it, messages are kept without their payload.
    pub payload_bytes: usize,
    /// Connections listed; later ones are counted only.
    pub connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            messages_per_connection: 100_000,
            messages: 200_000,
            payload_bytes: 64 << 20,
            connections: 20_000,
        }
    }
}

/// Handshakes kept per connection (a client retrying on one keep-alive connection).
const HANDSHAKES: usize = 8;
/// Anomalies kept per connection, and ping round trips timed.
const ANOMALIES: usize = 256;
const RTTS: usize = 4096;
/// Pings remembered per connection, waiting for their pong.
const PENDING_PINGS: usize = 16;

/// Flags of an [`Item`].
pub mod flag {
    pub const TRUNCATED: u8 = 1;
    pub const COMPRESSED: u8 = 2;
    pub const INCOMPLETE: u8 = 4;
    pub const UNDECODABLE: u8 = 8;
    pub const PARTIAL: u8 = 16;
    /// The payload was not kept: the report's payload byte cap was reached.
    pub const DROPPED: u8 = 32;
}

/// A data message or a control frame, as the connection's message list shows it.
#[derive(Clone, Copy, Debug)]
pub struct Item {
    pub ts: Timestamp,
    pub dir: Direction,
    /// The WebSocket opcode: 1 or 2 for messages, 8 to 10 (or reserved ones) for control frames.
    pub opcode: u8,
    /// The payload kept is valid UTF-8 text.
    pub text: bool,
    pub flags: u8,
    /// Payload length after inflating.
    pub len: u64,
    /// Payload bytes on the wire.
    pub wire_len: u64,
    pub close_code: Option<u16>,
    start: usize,
    kept: u32,
}

#[derive(Debug, Clone)]
pub struct Handshake {
    pub ts: Timestamp,
    pub request: UpgradeRequest,
    pub response: UpgradeResponse,
    pub accept: AcceptVerdict,
    pub upgraded: bool,
    pub latency: f64,
    pub tls: bool,
}

/// What the connection's `flow` event said when it ended.
#[derive(Debug, Clone)]
pub struct Summary {
    pub start: Timestamp,
    pub end: Timestamp,
    pub uri: Option<String>,
    pub protocol: Option<String>,
    pub extensions: Vec<String>,
    pub status: Option<u16>,
    pub messages: PerDir<u64>,
    pub frames: PerDir<u64>,
    pub bytes: PerDir<u64>,
    pub pings: u64,
    pub pongs: u64,
    pub ping_rtt: Option<f64>,
    pub end_reason: EndReason,
    pub tls: bool,
}

#[derive(Debug, Clone)]
pub struct Close {
    pub ts: Timestamp,
    pub initiator: Option<Direction>,
    pub code: Option<u16>,
    pub reason: Option<String>,
    pub reply_code: Option<u16>,
    pub replied: bool,
    pub clean: bool,
}

#[derive(Debug, Clone)]
pub struct Anomaly {
    pub ts: Timestamp,
    pub dir: Option<Direction>,
    pub kind: &'static str,
    pub cause: &'static str,
    pub detail: String,
}

/// One connection that attempted a WebSocket handshake or was picked up mid-stream.
#[derive(Debug, Clone)]
pub struct Connection {
    pub flow: FlowMeta,
    pub first_seen: Timestamp,
    pub handshakes: Vec<Handshake>,
    pub summary: Option<Summary>,
    pub close: Option<Close>,
    pub anomalies: Vec<Anomaly>,
    pub anomalies_dropped: u64,
    pub items: Vec<Item>,
    /// Messages and control frames not kept: a cap was reached.
    pub items_dropped: u64,
    /// Ping round trips: when the pong came, seconds since its ping.
    pub rtts: Vec<(Timestamp, f64)>,
    pending_pings: Vec<(Direction, u64, Timestamp)>,
}

impl Connection {
    /// When the session began: the upgrade, else the first event seen of it.
    pub fn upgrade_ts(&self) -> Timestamp {
        self.handshakes
            .iter()
            .rev()
            .find(|h| h.upgraded)
            .map_or(self.first_seen, |h| h.ts)
    }

    /// The handshake the session's messages belong to: the last one that upgraded.
    pub fn session_handshake(&self) -> Option<usize> {
        self.handshakes.iter().rposition(|h| h.upgraded)
    }
}

/// Collects connections, messages and control frames for a report or a HAR file.
#[derive(Debug, Default)]
pub struct Collector {
    limits: Limits,
    connections: HashMap<u64, Connection>,
    /// Every payload kept, end to end: one buffer, so a message costs no allocation of its own.
    arena: Vec<u8>,
    items: usize,
    /// Connections not listed, and messages not kept, for the cuts' account.
    pub connections_dropped: u64,
    pub items_dropped: u64,
    pub payloads_dropped: u64,
}

fn payload_bytes<'a>(p: &Payload<'a>) -> (&'a [u8], bool) {
    match *p {
        Payload::Text(t) => (t.as_bytes(), true),
        Payload::Data(d) => (d, false),
    }
}

fn hash(bytes: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0x7265_706f_7274).hash_one(bytes)
}

impl Collector {
    pub fn new(limits: Limits) -> Collector {
        Collector {
            limits,
            ..Collector::default()
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The connections, in the order of their numbers.
    pub fn connections(&self) -> Vec<&Connection> {
        let mut list: Vec<&Connection> = self.connections.values().collect();
        list.sort_by_key(|c| c.flow.id);
        list
    }

    /// The payload an item kept.
    pub fn payload(&self, item: &Item) -> &[u8] {
        self.arena
            .get(item.start..item.start + item.kept as usize)
            .unwrap_or_default()
    }

    /// Messages kept in all.
    pub fn items(&self) -> usize {
        self.items
    }

    /// What the caps left out, in words; None when nothing was.
    pub fn cuts(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.items_dropped > 0 {
            parts.push(format!(
                "{} messages and control frames not kept (at most {} per connection and {} in all)",
                self.items_dropped, self.limits.messages_per_connection, self.limits.messages
            ));
        }
        if self.payloads_dropped > 0 {
            parts.push(format!(
                "{} payloads not kept (at most {} payload bytes in all)",
                self.payloads_dropped, self.limits.payload_bytes
            ));
        }
        if self.connections_dropped > 0 {
            parts.push(format!(
                "{} connections not listed (at most {})",
                self.connections_dropped, self.limits.connections
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    fn connection(&mut self, flow: &FlowMeta, ts: Timestamp) -> Option<&mut Connection> {
        if !self.connections.contains_key(&flow.id) {
            if self.connections.len() >= self.limits.connections {
                self.connections_dropped += 1;
                return None;
            }
            self.connections.insert(
                flow.id,
                Connection {
                    flow: *flow,
                    first_seen: ts,
                    handshakes: Vec::new(),
                    summary: None,
                    close: None,
                    anomalies: Vec::new(),
                    anomalies_dropped: 0,
                    items: Vec::new(),
                    items_dropped: 0,
                    rtts: Vec::new(),
                    pending_pings: Vec::new(),
                },
            );
        }
        self.connections.get_mut(&flow.id)
    }

    /// Keeps an item, if the caps allow; its payload too, if the byte cap allows.
    fn keep(&mut self, flow: &FlowMeta, mut item: Item, payload: &[u8]) {
        let room_total = self.items < self.limits.messages;
        let per_connection = self.limits.messages_per_connection;
        let arena_room = self.limits.payload_bytes.saturating_sub(self.arena.len());
        let Some(conn) = self.connection(flow, item.ts) else {
            return;
        };
        if !room_total || conn.items.len() >= per_connection {
            conn.items_dropped += 1;
            self.items_dropped += 1;
            return;
        }
        let mut dropped_payload = false;
        if let Ok(kept) = u32::try_from(payload.len())
            && payload.len() <= arena_room
        {
            item.start = self.arena.len();
            item.kept = kept;
            self.arena.extend_from_slice(payload);
        } else {
            item.flags |= flag::DROPPED;
            dropped_payload = true;
        }
        if let Some(conn) = self.connections.get_mut(&flow.id) {
            conn.items.push(item);
        }
        self.items += 1;
        self.payloads_dropped += u64::from(dropped_payload);
    }

    fn handshake(&mut self, e: &HandshakeEvent<'_>) {
        let Some(conn) = self.connection(e.flow, e.ts) else {
            return;
        };
        if conn.handshakes.len() < HANDSHAKES {
            conn.handshakes.push(Handshake {
                ts: e.ts,
                request: e.request.clone(),
                response: e.response.clone(),
                accept: e.accept,
                upgraded: e.upgraded,
                latency: e.latency,
                tls: e.tls.is_some(),
            });
        }
    }

    fn frame(&mut self, e: &FrameEvent<'_>) {
        let opcode = e.header.opcode;
        // Data frames are shown as the messages they make up.
        if !opcode.is_control() {
            return;
        }
        let (payload, _) = payload_bytes(&e.payload);
        if let Some(conn) = self.connection(e.flow, e.ts) {
            ping_pong(conn, opcode, e.dir, payload, e.ts);
        }
        let item = Item {
            ts: e.ts,
            dir: e.dir,
            opcode: opcode.value(),
            text: false,
            flags: if e.truncated { flag::TRUNCATED } else { 0 },
            len: e.header.len,
            wire_len: e.header.len,
            close_code: e.close.and_then(|c| c.code),
            start: 0,
            kept: 0,
        };
        self.keep(e.flow, item, payload);
    }

    fn message(&mut self, e: &MessageEvent<'_>) {
        let (payload, text) = payload_bytes(&e.payload);
        let mut flags = 0;
        for (set, bit) in [
            (e.truncated, flag::TRUNCATED),
            (e.compressed, flag::COMPRESSED),
            (e.incomplete, flag::INCOMPLETE),
            (e.undecodable, flag::UNDECODABLE),
            (e.partial, flag::PARTIAL),
        ] {
            if set {
                flags |= bit;
            }
        }
        let item = Item {
            ts: e.ts,
            dir: e.dir,
            opcode: if e.text { 1 } else { 2 },
            text,
            flags,
            len: e.len,
            wire_len: e.wire_len,
            close_code: None,
            start: 0,
            kept: 0,
        };
        self.keep(e.flow, item, payload);
    }

    fn close(&mut self, e: &CloseEvent<'_>) {
        if let Some(conn) = self.connection(e.flow, e.ts) {
            conn.close = Some(Close {
                ts: e.ts,
                initiator: e.initiator,
                code: e.code,
                reason: e.reason.map(str::to_owned),
                reply_code: e.reply_code,
                replied: e.replied,
                clean: e.clean,
            });
        }
    }

    fn flow(&mut self, e: &FlowEvent<'_>) {
        if let Some(conn) = self.connection(e.flow, e.start) {
            let c = e.counters;
            conn.first_seen = conn.first_seen.min(e.start);
            conn.summary = Some(Summary {
                start: e.start,
                end: e.ts,
                uri: e.uri.map(str::to_owned),
                protocol: e.protocol.map(str::to_owned),
                extensions: e.extensions.to_vec(),
                status: e.status,
                messages: c.messages,
                frames: c.frames,
                bytes: c.bytes,
                pings: c.pings,
                pongs: c.pongs,
                ping_rtt: e.ping_rtt,
                end_reason: e.end,
                tls: e.tls.is_some(),
            });
        }
    }
}

/// Times a pong against the ping it echoes (same payload, the other way), for the timeline.
fn ping_pong(conn: &mut Connection, opcode: Opcode, dir: Direction, payload: &[u8], ts: Timestamp) {
    match opcode {
        Opcode::Ping => {
            if conn.pending_pings.len() == PENDING_PINGS {
                conn.pending_pings.remove(0);
            }
            conn.pending_pings.push((dir, hash(payload), ts));
        }
        Opcode::Pong => {
            let h = hash(payload);
            if let Some(i) = conn
                .pending_pings
                .iter()
                .position(|&(d, ph, _)| d != dir && ph == h)
            {
                let (_, _, sent) = conn.pending_pings.remove(i);
                if conn.rtts.len() < RTTS {
                    conn.rtts.push((ts, ts.seconds_since(sent)));
                }
            }
        }
        _ => {}
    }
}

impl EventSink for Collector {
    fn event(&mut self, event: &Event<'_>) {
        match event {
            Event::Connection(_) => {}
            Event::Handshake(e) => self.handshake(e),
            Event::Frame(e) => self.frame(e),
            Event::Message(e) => self.message(e),
            Event::Close(e) => self.close(e),
            Event::Flow(e) => self.flow(e),
            Event::Anomaly(e) => {
                if let Some(conn) = self.connection(e.flow, e.ts) {
                    if conn.anomalies.len() < ANOMALIES {
                        conn.anomalies.push(Anomaly {
                            ts: e.ts,
                            dir: e.dir,
                            kind: e.kind.name(),
                            cause: e.cause.name(),
                            detail: e.detail.to_owned(),
                        });
                    } else {
                        conn.anomalies_dropped += 1;
                    }
                }
            }
        }
    }
}

/// `ws://` or `wss://` and the host the client asked for (else the server's address).
pub fn websocket_url(flow: &FlowMeta, handshake: Option<&Handshake>, tls: bool) -> String {
    let scheme = if tls { "wss" } else { "ws" };
    let host = handshake
        .and_then(|h| h.request.host().map(str::to_string))
        .unwrap_or_else(|| host_of(flow.server));
    let uri = handshake.map_or("/", |h| h.request.uri());
    if uri.starts_with('/') {
        format!("{scheme}://{host}{uri}")
    } else {
        // An absolute-form request target already names its scheme and host.
        uri.to_owned()
    }
}

fn host_of(addr: SocketAddr) -> String {
    addr.to_string()
}
