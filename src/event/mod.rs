//! What the pipeline reports. Events borrow from the analyzer's state and live only for the
//! duration of one [`EventSink::event`] call, so emitting one costs no allocation.

mod counters;
mod held;
mod select;

use std::net::SocketAddr;

pub use counters::FlowCounters;
pub use held::{FrameHold, HeldFrame};
pub use select::{Grep, Selected, Selection, Selector};

use crate::wire::frame::FrameHeader;
use crate::wire::http::{
    AcceptVerdict, UpgradeRequest, UpgradeResponse, looks_like_request_start,
    looks_like_response_start,
};
use crate::wire::tls::TlsInfo;

/// The sub-second precision a capture's timestamps are written with: 6 digits for
/// microsecond captures, 9 for nanosecond ones. The capture says which; the writers follow it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TsPrecision {
    Micro,
    Nano,
}

/// Capture time: seconds since the Unix epoch and nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp {
    pub secs: i64,
    pub nanos: u32,
}

impl Timestamp {
    /// Seconds from `earlier` to `self`, negative when `self` is before it: any two
    /// timestamps a capture can hold (pcapng's reach ±2^63 s), whose difference can pass an
    /// i64, give their difference, never an overflow.
    pub fn seconds_since(self, earlier: Timestamp) -> f64 {
        let secs = i128::from(self.secs) - i128::from(earlier.secs);
        let nanos = i64::from(self.nanos) - i64::from(earlier.nanos);
        secs as f64 + nanos as f64 / 1e9
    }
}

/// Which way bytes travel on a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    ClientToServer,
    ServerToClient,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::ClientToServer => "c2s",
            Direction::ServerToClient => "s2c",
        }
    }

    #[inline]
    pub fn index(self) -> usize {
        match self {
            Direction::ClientToServer => 0,
            Direction::ServerToClient => 1,
        }
    }
}

/// One value per direction of a WebSocket session, indexed by [`Direction`]. Per-direction
/// state uses it rather than a `[T; 2]`, whose index could as well mean side A and side B of a
/// TCP connection whose client is not known yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PerDir<T>([T; 2]);

impl<T> PerDir<T> {
    pub const fn new(c2s: T, s2c: T) -> PerDir<T> {
        PerDir([c2s, s2c])
    }

    /// Client to server first.
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }

    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, T> {
        self.0.iter_mut()
    }
}

impl<T> std::ops::Index<Direction> for PerDir<T> {
    type Output = T;

    #[inline]
    fn index(&self, dir: Direction) -> &T {
        &self.0[dir.index()]
    }
}

impl<T> std::ops::IndexMut<Direction> for PerDir<T> {
    #[inline]
    fn index_mut(&mut self, dir: Direction) -> &mut T {
        &mut self.0[dir.index()]
    }
}

/// The connection an event belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowMeta {
    /// Connections are numbered from 0 in order of their first packet, as tshark's tcp.stream.
    pub id: u64,
    pub client: SocketAddr,
    pub server: SocketAddr,
    /// The handshake was not captured: the connection was recognised from its frames.
    pub midstream: bool,
}

impl FlowMeta {
    pub fn source(&self, dir: Direction) -> SocketAddr {
        match dir {
            Direction::ClientToServer => self.client,
            Direction::ServerToClient => self.server,
        }
    }

    pub fn destination(&self, dir: Direction) -> SocketAddr {
        match dir {
            Direction::ClientToServer => self.server,
            Direction::ServerToClient => self.client,
        }
    }
}

/// An HTTP upgrade request and the response it got.
#[derive(Debug)]
pub struct HandshakeEvent<'a> {
    pub ts: Timestamp,
    pub flow: &'a FlowMeta,
    pub request: &'a UpgradeRequest,
    pub response: &'a UpgradeResponse,
    pub accept: AcceptVerdict,
    pub upgraded: bool,
    /// Seconds from the request's last byte to the response's last header byte.
    pub latency: f64,
    /// The TLS the handshake was decrypted from (wss).
    pub tls: Option<&'a TlsInfo>,
}

/// How a frame's payload is shown.
#[derive(Debug, Clone, Copy)]
pub enum Payload<'a> {
    /// The frame belongs to an uncompressed text message and these bytes are valid UTF-8.
    Text(&'a str),
    /// Anything else, printed as base64 in JSON and as hex in text.
    Data(&'a [u8]),
}

/// The status code and reason of a close frame (RFC 6455 5.5.1).
#[derive(Debug, Clone, Copy)]
pub struct CloseInfo<'a> {
    pub code: Option<u16>,
    pub reason: &'a str,
}

/// One WebSocket frame, complete.
#[derive(Debug)]
pub struct FrameEvent<'a> {
    pub ts: Timestamp,
    pub flow: &'a FlowMeta,
    pub dir: Direction,
    pub header: &'a FrameHeader,
    /// The unmasked payload as kept: at most `--max-payload` bytes.
    pub payload: Payload<'a>,
    /// True when the payload was cut at `--max-payload`.
    pub truncated: bool,
    pub close: Option<CloseInfo<'a>>,
}

/// One complete data message: its frames reassembled and, if compressed, inflated.
#[derive(Debug)]
pub struct MessageEvent<'a> {
    pub ts: Timestamp,
    pub flow: &'a FlowMeta,
    pub dir: Direction,
    /// True for text, false for binary.
    pub text: bool,
    /// Payload length after decompression (as far as it was inflated).
    pub len: u64,
    /// Sum of the frames' payload lengths.
    pub wire_len: u64,
    pub frames: u64,
    pub compressed: bool,
    /// Shown as text when a text message is valid UTF-8, else as data; at most `--max-payload`.
    pub payload: Payload<'a>,
    pub truncated: bool,
    /// Bytes of the message were lost (a TCP gap): what is shown is only what arrived before.
    pub incomplete: bool,
    /// A compressed message that could not be inflated (its dictionary was lost or inflating
    /// failed): `payload` holds nothing useful.
    pub undecodable: bool,
    /// Inflated without the sender's history (picked up mid-stream, or after lost bytes):
    /// `unknown_bytes` of the message could not be known. Text shows U+FFFD for each unknown
    /// byte, binary shows them as zeros.
    pub partial: bool,
    pub unknown_bytes: u64,
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Both sides sent FIN.
    Fin,
    Rst,
    /// The capture ended with the connection still open.
    CaptureEnd,
    /// No packet for the idle timeout, in capture time.
    Timeout,
    /// Dropped to make room in a full flow table.
    Evicted,
}

impl EndReason {
    pub fn name(self) -> &'static str {
        match self {
            EndReason::Fin => "fin",
            EndReason::Rst => "rst",
            EndReason::CaptureEnd => "capture_end",
            EndReason::Timeout => "timeout",
            EndReason::Evicted => "evicted",
        }
    }
}

/// The close handshake of one upgraded connection (RFC 6455 7), reported when it ends.
#[derive(Debug)]
pub struct CloseEvent<'a> {
    pub ts: Timestamp,
    pub flow: &'a FlowMeta,
    /// The side that sent the first close frame, if any did.
    pub initiator: Option<Direction>,
    pub code: Option<u16>,
    pub reason: Option<&'a str>,
    /// The code of the other side's close frame, if it answered.
    pub reply_code: Option<u16>,
    pub replied: bool,
    /// Close frames both ways, then TCP FIN.
    pub clean: bool,
    pub end: EndReason,
}

/// Something that breaks RFC 6455 or 7692, or that wsnoop could not see.
#[derive(Debug)]
pub struct AnomalyEvent<'a> {
    pub ts: Timestamp,
    pub flow: &'a FlowMeta,
    pub dir: Option<Direction>,
    pub kind: crate::anomaly::AnomalyKind,
    /// In the traffic, or a consequence of what the capture missed.
    pub cause: crate::anomaly::Cause,
    pub detail: &'a str,
}

/// What a connection's packets came to each way, as captured: the counts Suricata's flow
/// records and tshark's conversations give (link headers included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketCounts {
    pub packets: PerDir<u64>,
    pub bytes: PerDir<u64>,
}

/// One connection's summary, when it ends: every connection that attempted a WebSocket
/// handshake or was picked up mid-stream.
#[derive(Debug)]
pub struct FlowEvent<'a> {
    pub ts: Timestamp,
    pub flow: &'a FlowMeta,
    pub start: Timestamp,
    pub uri: Option<&'a str>,
    /// The subprotocol the server selected.
    pub protocol: Option<&'a str>,
    /// The extensions the server accepted.
    pub extensions: &'a [String],
    /// The handshake response's status; None when no response was seen.
    pub status: Option<u16>,
    pub counters: &'a FlowCounters,
    /// The median seconds from a ping to the pong that echoed it ([`FlowCounters::ping_rtt`]).
    pub ping_rtt: Option<f64>,
    /// Payload bytes the capture's snapshot length cut off each direction's packets.
    pub bytes_cut: PerDir<u64>,
    /// The connection's packets until it ended (what lingers after is not counted).
    pub traffic: PacketCounts,
    pub end: EndReason,
    pub tls: Option<&'a TlsInfo>,
}

/// What the first payload bytes of one direction of a TCP connection looked like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadKind {
    HttpRequest,
    HttpResponse,
    /// A TLS record: wss, or https.
    Tls,
    Ssh,
    Other,
}

impl PayloadKind {
    pub fn of(bytes: &[u8]) -> PayloadKind {
        match bytes {
            [0x16, 0x03, 0x00..=0x04, ..] => PayloadKind::Tls,
            [b'S', b'S', b'H', b'-', ..] => PayloadKind::Ssh,
            b if looks_like_response_start(b) && b.len() >= 5 => PayloadKind::HttpResponse,
            b if looks_like_request_start(b) => PayloadKind::HttpRequest,
            _ => PayloadKind::Other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PayloadKind::HttpRequest => "http_request",
            PayloadKind::HttpResponse => "http_response",
            PayloadKind::Tls => "tls",
            PayloadKind::Ssh => "ssh",
            PayloadKind::Other => "other",
        }
    }
}

/// What TCP showed of one connection, whatever it carried (for `wsnoop diagnose`).
#[derive(Debug, Clone, Default)]
pub struct TcpSummary {
    /// SYNs from the client (retransmissions included) and SYN-ACKs from the server.
    pub syns: u32,
    pub synacks: u32,
    /// RST and FIN seen from each side, by the direction they were sent in.
    pub rst: PerDir<bool>,
    pub fin: PerDir<bool>,
    /// Payload bytes per direction, cut ones included.
    pub bytes: PerDir<u64>,
    /// Payload bytes the capture's snapshot length cut, per direction.
    pub bytes_cut: PerDir<u64>,
    pub first_payload: PerDir<Option<PayloadKind>>,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    /// Decoded as WebSocket (upgraded, or recognised mid-stream).
    pub websocket: bool,
    /// The orientation is a guess: neither a SYN nor HTTP said who the client was.
    pub orientation_guessed: bool,
}

/// A TCP connection left the flow table (only when asked for: `wsnoop diagnose`).
#[derive(Debug)]
pub struct ConnectionEvent<'a> {
    pub flow: &'a FlowMeta,
    pub tcp: &'a TcpSummary,
    pub end: EndReason,
    /// What the connection's TLS handshake said, if it was TLS and its hellos were seen.
    pub tls: Option<&'a TlsInfo>,
}

#[derive(Debug)]
pub enum Event<'a> {
    Connection(ConnectionEvent<'a>),
    Flow(FlowEvent<'a>),
    Handshake(HandshakeEvent<'a>),
    Frame(FrameEvent<'a>),
    Message(MessageEvent<'a>),
    Close(CloseEvent<'a>),
    Anomaly(AnomalyEvent<'a>),
}

impl Event<'_> {
    /// The connection of a WebSocket event; None for [`Event::Connection`], which is about
    /// any TCP connection and only `wsnoop diagnose` asks for.
    pub fn flow(&self) -> Option<&FlowMeta> {
        match self {
            Event::Connection(_) => None,
            Event::Flow(e) => Some(e.flow),
            Event::Handshake(e) => Some(e.flow),
            Event::Frame(e) => Some(e.flow),
            Event::Message(e) => Some(e.flow),
            Event::Close(e) => Some(e.flow),
            Event::Anomaly(e) => Some(e.flow),
        }
    }
}

/// Where events go: an output writer, a test's collector, a counter.
pub trait EventSink {
    fn event(&mut self, event: &Event<'_>);

    /// The events to come belong to the capture's packet `number` (from 1, in the order
    /// read), or to none (the end of the capture). Only writers that print it care.
    fn at_packet(&mut self, _number: Option<u64>) {}
}

impl<F: FnMut(&Event<'_>)> EventSink for F {
    fn event(&mut self, event: &Event<'_>) {
        self(event)
    }
}

#[cfg(test)]
mod tests {
    use super::Timestamp;

    fn ts(secs: i64, nanos: u32) -> Timestamp {
        Timestamp { secs, nanos }
    }

    #[test]
    fn differences_of_extreme_timestamps_do_not_overflow() {
        assert_eq!(ts(5, 250_000_000).seconds_since(ts(3, 750_000_000)), 1.5);
        assert_eq!(ts(3, 750_000_000).seconds_since(ts(5, 250_000_000)), -1.5);
        // 2^64 - 1 seconds apart, either way: past what an i64 holds.
        let span = ts(i64::MAX, 0).seconds_since(ts(i64::MIN, 0));
        assert_eq!(span, 2f64.powi(64));
        assert_eq!(
            ts(i64::MIN, 0).seconds_since(ts(i64::MAX, 999_999_999)),
            -2f64.powi(64)
        );
        assert_eq!(
            ts(i64::MAX, 999_999_999).seconds_since(ts(i64::MAX, 0)),
            0.999_999_999
        );
        assert_eq!(ts(i64::MIN, 0).seconds_since(ts(i64::MIN, 0)), 0.0);
    }
}
