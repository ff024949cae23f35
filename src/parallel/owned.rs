//! Events owned past their packet, for `diagnose` behind `--threads`
//! ([`Format::Events`](super::Format::Events)) and for `--summary`: their strings and payloads
//! copied into the chunk's arena, as spans.

use crate::anomaly::{AnomalyKind, Cause};
use crate::event::{
    AnomalyEvent, CloseEvent, CloseInfo, ConnectionEvent, Direction, EndReason, Event, EventSink,
    FlowCounters, FlowEvent, FlowMeta, FrameEvent, HandshakeEvent, MessageEvent, PacketCounts,
    Payload, PerDir, TcpSummary, Timestamp,
};
use crate::wire::frame::FrameHeader;
use crate::wire::http::{AcceptVerdict, UpgradeRequest, UpgradeResponse};
use crate::wire::tls::TlsInfo;

/// Where a string or payload of an owned event sits in its chunk's arena.
#[derive(Clone, Copy, Debug)]
pub(super) struct Span {
    start: usize,
    len: usize,
}

/// A payload: text or data, in the arena.
#[derive(Clone, Copy, Debug)]
pub(super) struct OwnedPayload {
    text: bool,
    span: Span,
}

/// An event, owned, to be handed to another thread's sink. Strings and payloads go into the
/// chunk's arena, so that a frame costs no allocation.
pub(super) enum OwnedEvent {
    Connection {
        flow: FlowMeta,
        tcp: TcpSummary,
        end: EndReason,
        tls: Option<Box<TlsInfo>>,
    },
    Flow(Box<OwnedFlow>),
    Handshake {
        ts: Timestamp,
        flow: FlowMeta,
        heads: Box<(UpgradeRequest, UpgradeResponse)>,
        accept: AcceptVerdict,
        upgraded: bool,
        latency: f64,
        tls: Option<Box<TlsInfo>>,
    },
    Frame {
        ts: Timestamp,
        flow: FlowMeta,
        dir: Direction,
        header: FrameHeader,
        payload: OwnedPayload,
        truncated: bool,
        close: Option<(Option<u16>, Span)>,
    },
    Message {
        ts: Timestamp,
        flow: FlowMeta,
        dir: Direction,
        text: bool,
        len: u64,
        wire_len: u64,
        frames: u64,
        compressed: bool,
        payload: OwnedPayload,
        truncated: bool,
        incomplete: bool,
        undecodable: bool,
        partial: bool,
        unknown_bytes: u64,
    },
    Close {
        ts: Timestamp,
        flow: FlowMeta,
        initiator: Option<Direction>,
        code: Option<u16>,
        reason: Option<Span>,
        reply_code: Option<u16>,
        replied: bool,
        clean: bool,
        end: EndReason,
    },
    Anomaly {
        ts: Timestamp,
        flow: FlowMeta,
        dir: Option<Direction>,
        kind: AnomalyKind,
        cause: Cause,
        detail: Span,
    },
}

fn keep(arena: &mut Vec<u8>, bytes: &[u8]) -> Span {
    let start = arena.len();
    arena.extend_from_slice(bytes);
    Span {
        start,
        len: bytes.len(),
    }
}

fn keep_payload(arena: &mut Vec<u8>, payload: &Payload<'_>) -> OwnedPayload {
    match payload {
        Payload::Text(t) => OwnedPayload {
            text: true,
            span: keep(arena, t.as_bytes()),
        },
        Payload::Data(d) => OwnedPayload {
            text: false,
            span: keep(arena, d),
        },
    }
}

fn bytes_at(arena: &[u8], span: Span) -> &[u8] {
    arena
        .get(span.start..span.start + span.len)
        .unwrap_or_default()
}

/// Text kept from a `&str`: always UTF-8.
fn str_at(arena: &[u8], span: Span) -> &str {
    std::str::from_utf8(bytes_at(arena, span)).unwrap_or_default()
}

fn payload_at(arena: &[u8], p: OwnedPayload) -> Payload<'_> {
    if p.text {
        Payload::Text(str_at(arena, p.span))
    } else {
        Payload::Data(bytes_at(arena, p.span))
    }
}

impl OwnedEvent {
    pub(super) fn of(event: &Event<'_>, arena: &mut Vec<u8>) -> Self {
        match event {
            Event::Connection(e) => OwnedEvent::Connection {
                flow: *e.flow,
                tcp: e.tcp.clone(),
                end: e.end,
                tls: e.tls.map(|t| Box::new(t.clone())),
            },
            Event::Flow(e) => OwnedEvent::Flow(Box::new(OwnedFlow::of(e))),
            Event::Handshake(e) => OwnedEvent::Handshake {
                ts: e.ts,
                flow: *e.flow,
                heads: Box::new((e.request.clone(), e.response.clone())),
                accept: e.accept,
                upgraded: e.upgraded,
                latency: e.latency,
                tls: e.tls.map(|t| Box::new(t.clone())),
            },
            Event::Frame(e) => OwnedEvent::Frame {
                ts: e.ts,
                flow: *e.flow,
                dir: e.dir,
                header: *e.header,
                payload: keep_payload(arena, &e.payload),
                truncated: e.truncated,
                close: e
                    .close
                    .as_ref()
                    .map(|c| (c.code, keep(arena, c.reason.as_bytes()))),
            },
            Event::Message(e) => OwnedEvent::Message {
                ts: e.ts,
                flow: *e.flow,
                dir: e.dir,
                text: e.text,
                len: e.len,
                wire_len: e.wire_len,
                frames: e.frames,
                compressed: e.compressed,
                payload: keep_payload(arena, &e.payload),
                truncated: e.truncated,
                incomplete: e.incomplete,
                undecodable: e.undecodable,
                partial: e.partial,
                unknown_bytes: e.unknown_bytes,
            },
            Event::Close(e) => OwnedEvent::Close {
                ts: e.ts,
                flow: *e.flow,
                initiator: e.initiator,
                code: e.code,
                reason: e.reason.map(|r| keep(arena, r.as_bytes())),
                reply_code: e.reply_code,
                replied: e.replied,
                clean: e.clean,
                end: e.end,
            },
            Event::Anomaly(e) => OwnedEvent::Anomaly {
                ts: e.ts,
                flow: *e.flow,
                dir: e.dir,
                kind: e.kind,
                cause: e.cause,
                detail: keep(arena, e.detail.as_bytes()),
            },
        }
    }

    /// Hands the event, as it was, to `sink`.
    pub(super) fn deliver(&self, arena: &[u8], sink: &mut dyn EventSink) {
        match self {
            OwnedEvent::Connection {
                flow,
                tcp,
                end,
                tls,
            } => sink.event(&Event::Connection(ConnectionEvent {
                flow,
                tcp,
                end: *end,
                tls: tls.as_deref(),
            })),
            OwnedEvent::Flow(f) => sink.event(&f.event()),
            OwnedEvent::Handshake {
                ts,
                flow,
                heads,
                accept,
                upgraded,
                latency,
                tls,
            } => sink.event(&Event::Handshake(HandshakeEvent {
                ts: *ts,
                flow,
                request: &heads.0,
                response: &heads.1,
                accept: *accept,
                upgraded: *upgraded,
                latency: *latency,
                tls: tls.as_deref(),
            })),
            OwnedEvent::Frame {
                ts,
                flow,
                dir,
                header,
                payload,
                truncated,
                close,
            } => sink.event(&Event::Frame(FrameEvent {
                ts: *ts,
                flow,
                dir: *dir,
                header,
                payload: payload_at(arena, *payload),
                truncated: *truncated,
                close: close.map(|(code, reason)| CloseInfo {
                    code,
                    reason: str_at(arena, reason),
                }),
            })),
            OwnedEvent::Message {
                ts,
                flow,
                dir,
                text,
                len,
                wire_len,
                frames,
                compressed,
                payload,
                truncated,
                incomplete,
                undecodable,
                partial,
                unknown_bytes,
            } => sink.event(&Event::Message(MessageEvent {
                ts: *ts,
                flow,
                dir: *dir,
                text: *text,
                len: *len,
                wire_len: *wire_len,
                frames: *frames,
                compressed: *compressed,
                payload: payload_at(arena, *payload),
                truncated: *truncated,
                incomplete: *incomplete,
                undecodable: *undecodable,
                partial: *partial,
                unknown_bytes: *unknown_bytes,
            })),
            OwnedEvent::Close {
                ts,
                flow,
                initiator,
                code,
                reason,
                reply_code,
                replied,
                clean,
                end,
            } => sink.event(&Event::Close(CloseEvent {
                ts: *ts,
                flow,
                initiator: *initiator,
                code: *code,
                reason: reason.map(|r| str_at(arena, r)),
                reply_code: *reply_code,
                replied: *replied,
                clean: *clean,
                end: *end,
            })),
            OwnedEvent::Anomaly {
                ts,
                flow,
                dir,
                kind,
                cause,
                detail,
            } => sink.event(&Event::Anomaly(AnomalyEvent {
                ts: *ts,
                flow,
                dir: *dir,
                kind: *kind,
                cause: *cause,
                detail: str_at(arena, *detail),
            })),
        }
    }
}

/// A flow event, owned: one per WebSocket connection, for `--summary`.
pub(super) struct OwnedFlow {
    ts: Timestamp,
    flow: FlowMeta,
    start: Timestamp,
    uri: Option<String>,
    protocol: Option<String>,
    extensions: Vec<String>,
    status: Option<u16>,
    counters: FlowCounters,
    ping_rtt: Option<f64>,
    bytes_cut: PerDir<u64>,
    traffic: PacketCounts,
    end: EndReason,
    tls: Option<TlsInfo>,
}

impl OwnedFlow {
    pub(super) fn of(e: &FlowEvent<'_>) -> Self {
        OwnedFlow {
            ts: e.ts,
            flow: *e.flow,
            start: e.start,
            uri: e.uri.map(str::to_string),
            protocol: e.protocol.map(str::to_string),
            extensions: e.extensions.to_vec(),
            status: e.status,
            counters: e.counters.clone(),
            ping_rtt: e.ping_rtt,
            bytes_cut: e.bytes_cut,
            traffic: e.traffic,
            end: e.end,
            tls: e.tls.cloned(),
        }
    }

    pub(super) fn event(&self) -> Event<'_> {
        Event::Flow(FlowEvent {
            ts: self.ts,
            flow: &self.flow,
            start: self.start,
            uri: self.uri.as_deref(),
            protocol: self.protocol.as_deref(),
            extensions: &self.extensions,
            status: self.status,
            counters: &self.counters,
            ping_rtt: self.ping_rtt,
            bytes_cut: self.bytes_cut,
            traffic: self.traffic,
            end: self.end,
            tls: self.tls.as_ref(),
        })
    }
}
