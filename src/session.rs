//! One connection's application layer: HTTP/1.1 until a WebSocket upgrade succeeds, then
//! frames in both directions.
//!
//! Ordinary keep-alive requests may precede the upgrade; their bodies are skipped by length or
//! by chunks. A connection that is not HTTP, or whose HTTP wsnoop cannot follow (bodies
//! delimited by close, heads over 64 KiB, broken chunk framing), is dropped from analysis at
//! once, so its bytes cost nothing more.

use std::collections::VecDeque;

use crate::anomaly::AnomalyKind;
use crate::event::{Direction, EndReason, Event, FlowEvent, HandshakeEvent, Timestamp};
use crate::frame::{ChainRule, ChainScan, Plausible};
use crate::handshake::{
    self, AcceptVerdict, BodyLength, MAX_HEAD_LEN, UpgradeRequest, UpgradeResponse,
};
use crate::ws::{Context, FlowCounters, FrameHunt, Negotiated, Scratch, WsConnection};

/// Requests may be pipelined; more unanswered than this and the connection is not followed.
const MAX_PENDING_REQUESTS: usize = 32;

#[derive(Debug)]
enum HttpSide {
    Head,
    SkipBody(u64),
    Chunked(ChunkedBody),
}

/// Where a chunked body (RFC 9112 7.1) is being skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkedBody {
    /// In a chunk-size line; `line` counts its bytes so a runaway line is caught.
    Size {
        size: u64,
        digits_done: bool,
        line: u16,
    },
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// In the trailer section, `line` bytes into the current line.
    Trailer {
        line: u16,
    },
}

/// A chunk-size or trailer line longer than this is not HTTP worth following.
const MAX_CHUNK_LINE: u16 = 4096;

impl ChunkedBody {
    fn start() -> ChunkedBody {
        ChunkedBody::Size {
            size: 0,
            digits_done: false,
            line: 0,
        }
    }

    /// Skips body bytes; returns Ok(true) once the body is over, Err on malformed framing.
    fn skip(&mut self, input: &mut &[u8]) -> Result<bool, ()> {
        while let Some((&byte, rest)) = input.split_first() {
            match self {
                ChunkedBody::Data(remaining) => {
                    let take = usize::try_from(*remaining)
                        .unwrap_or(usize::MAX)
                        .min(input.len());
                    *input = &input[take..];
                    *remaining -= take as u64;
                    if *remaining == 0 {
                        *self = ChunkedBody::DataEnd;
                    }
                    continue;
                }
                ChunkedBody::DataEnd => match byte {
                    b'\r' => {}
                    b'\n' => *self = ChunkedBody::start(),
                    _ => return Err(()),
                },
                ChunkedBody::Size {
                    size,
                    digits_done,
                    line,
                } => {
                    *line += 1;
                    if *line > MAX_CHUNK_LINE {
                        return Err(());
                    }
                    match (byte, *digits_done) {
                        (b'\n', _) if *line > 1 => {
                            *self = if *size == 0 {
                                ChunkedBody::Trailer { line: 0 }
                            } else {
                                ChunkedBody::Data(*size)
                            };
                        }
                        (b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F', false) => {
                            let digit = (byte as char).to_digit(16).unwrap_or(0);
                            *size = size.checked_mul(16).ok_or(())? + u64::from(digit);
                        }
                        // Chunk extensions, whitespace and the CR are skipped to the line's end.
                        (_, _) if *line > 1 => *digits_done = true,
                        _ => return Err(()),
                    }
                }
                ChunkedBody::Trailer { line } => match byte {
                    b'\n' if *line == 0 => {
                        *input = rest;
                        return Ok(true);
                    }
                    b'\n' => *line = 0,
                    b'\r' if *line == 0 => {}
                    _ => {
                        *line += 1;
                        if *line > MAX_CHUNK_LINE {
                            return Err(());
                        }
                    }
                },
            }
            *input = rest;
        }
        Ok(false)
    }
}

#[derive(Debug)]
struct PendingRequest {
    method: String,
    upgrade: Option<(Box<UpgradeRequest>, Timestamp)>,
}

#[derive(Debug)]
struct HttpState {
    client: HttpSide,
    server: HttpSide,
    request_head: Vec<u8>,
    response_head: Vec<u8>,
    pending: VecDeque<PendingRequest>,
    /// Client bytes sent after an upgrade request, before its response decides what they are.
    early_client_bytes: Vec<u8>,
    awaiting_upgrade: bool,
}

/// The completed opening handshake of an upgraded connection.
#[derive(Debug)]
pub struct Upgrade {
    pub request: UpgradeRequest,
    pub response: UpgradeResponse,
    pub accept: AcceptVerdict,
    pub negotiated: Negotiated,
}

#[derive(Debug)]
enum Mode {
    Http(Box<HttpState>),
    WebSocket(Box<WsConnection>),
    /// No handshake seen and nobody said what this is: the first bytes of each side (A to B,
    /// B to A) are held while looking for WebSocket frames in them.
    Probe(Box<[FrameHunt; 2]>),
    /// No byte yet: HTTP is expected.
    Fresh,
    /// Not (or no longer) something wsnoop decodes.
    Ignored,
}

#[derive(Debug)]
pub struct Session {
    mode: Mode,
    /// No byte has been handed to the session yet.
    fresh: bool,
    /// The opening handshake, upgraded or refused; None mid-stream.
    handshake: Option<Box<Upgrade>>,
    /// The connection is to be summarised when it ends (a handshake was tried, or frames
    /// were found without one).
    summarise: bool,
}

/// How a session begins when the handshake was not seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStart {
    /// The user said this port is WebSocket (`--ws-port`).
    WebSocket,
    /// Look for frames; give up if they do not appear.
    Probe,
}

/// Bytes a probe holds per side before deciding the connection is not WebSocket.
const PROBE_LIMIT: usize = 16 * 1024;

/// Plausible frames in a row that make a connection WebSocket without a handshake.
const PROBE_CHAIN: ChainRule = ChainRule {
    min_frames: 3,
    min_frames_at_end: 2,
};

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

impl Session {
    pub fn start(start: SessionStart) -> Self {
        Session {
            summarise: start == SessionStart::WebSocket,
            mode: match start {
                SessionStart::WebSocket => Mode::WebSocket(Box::new(WsConnection::midstream())),
                SessionStart::Probe => Mode::Probe(Box::default()),
            },
            fresh: false,
            handshake: None,
        }
    }

    /// True until the first byte arrives: the moment to decide how to decode.
    pub fn is_fresh(&self) -> bool {
        self.fresh
    }

    /// Holds a probing session's bytes of one side; once one side's bytes parse as a chain of
    /// frames, returns whether side A is the client (masked frames are the client's).
    pub fn probe(&mut self, from_a: bool, bytes: &[u8]) -> Option<bool> {
        let Mode::Probe(sides) = &mut self.mode else {
            return None;
        };
        let side = &mut sides[usize::from(!from_a)];
        if side.len() + bytes.len() > PROBE_LIMIT {
            self.mode = Mode::Ignored;
            return None;
        }
        side.push(bytes);
        for masked in [true, false] {
            let rule = Plausible {
                masked: Some(masked),
                rsv1_allowed: true,
                max_len: 1 << 24,
            };
            if let ChainScan::Found(_) = side.scan(&rule, &PROBE_CHAIN) {
                // Masked frames come from the client.
                return Some(masked == from_a);
            }
        }
        None
    }

    /// After a probe succeeded: decodes what it held, as a mid-stream WebSocket connection.
    pub fn replay_probe(
        &mut self,
        client_is_a: bool,
        scratch: &mut Scratch,
        ctx: &mut Context<'_>,
    ) {
        let Mode::Probe(sides) = std::mem::replace(&mut self.mode, Mode::Ignored) else {
            return;
        };
        self.mode = Mode::WebSocket(Box::new(WsConnection::midstream()));
        self.summarise = true;
        let [a_to_b, b_to_a] = *sides;
        let (client, server) = if client_is_a {
            (a_to_b, b_to_a)
        } else {
            (b_to_a, a_to_b)
        };
        for segment in client.segments() {
            self.data(Direction::ClientToServer, segment, scratch, ctx);
        }
        for segment in server.segments() {
            self.data(Direction::ServerToClient, segment, scratch, ctx);
        }
    }

    pub fn new() -> Self {
        Session {
            fresh: true,
            handshake: None,
            summarise: false,
            // Nothing is allocated until the first byte: most connections of a SYN flood or a
            // port scan never carry one.
            mode: Mode::Fresh,
        }
    }

    pub fn is_ignored(&self) -> bool {
        matches!(self.mode, Mode::Ignored)
    }

    pub fn is_websocket(&self) -> bool {
        matches!(self.mode, Mode::WebSocket(_))
    }

    pub fn ignore(&mut self) {
        self.mode = Mode::Ignored;
    }

    /// Bytes of one direction arrived twice with different content.
    pub fn conflict(&mut self, dir: Direction, bytes: u64, ctx: &mut Context<'_>) {
        if let Mode::WebSocket(_) = self.mode {
            ctx.anomaly(
                Some(dir),
                AnomalyKind::TcpOverlapConflict,
                &format!(
                    "{bytes} bytes of the {} stream were retransmitted with different content; \
the first copy was kept",
                    dir.name()
                ),
            );
        }
    }

    /// Bytes of one direction were lost.
    pub fn gap(&mut self, dir: Direction, lost: u64, ctx: &mut Context<'_>) {
        match &mut self.mode {
            Mode::WebSocket(ws) => ws.gap(dir, lost, ctx),
            // An HTTP exchange cannot be followed across a hole.
            Mode::Http(_) | Mode::Probe(_) | Mode::Fresh => self.mode = Mode::Ignored,
            Mode::Ignored => {}
        }
    }

    /// The connection is over: reports the close handshake and the connection's summary, then
    /// frees the session's buffers. Only the first call does anything.
    pub fn end(&mut self, how: EndReason, start: Timestamp, ctx: &mut Context<'_>) {
        let mut mode = std::mem::replace(&mut self.mode, Mode::Ignored);
        let no_counters = FlowCounters::default();
        let (counters, unanswered) = match &mut mode {
            Mode::WebSocket(ws) => {
                ws.end_report(how, ctx);
                (ws.counters(), None)
            }
            // An upgrade request that never got a response.
            Mode::Http(http) => (
                &no_counters,
                http.pending
                    .iter()
                    .find_map(|p| p.upgrade.as_ref().map(|(request, _)| request.uri.as_str())),
            ),
            _ => (&no_counters, None),
        };
        if !(self.summarise || unanswered.is_some()) {
            return;
        }
        self.summarise = false;
        let handshake = self.handshake.as_deref();
        let uri = handshake
            .map(|h| h.request.uri.as_str())
            .filter(|u| !u.is_empty())
            .or(unanswered);
        ctx.sink.event(&Event::Flow(FlowEvent {
            ts: ctx.ts,
            flow: ctx.flow,
            start,
            uri,
            protocol: handshake.and_then(|h| h.response.protocol.as_deref()),
            extensions: handshake.map_or(&[], |h| &h.response.extensions[..]),
            status: handshake.map(|h| h.response.status),
            counters,
            bytes_cut: ctx.bytes_cut,
            end: how,
        }));
    }

    /// In-order bytes of one direction.
    pub fn data(
        &mut self,
        dir: Direction,
        input: &[u8],
        scratch: &mut Scratch,
        ctx: &mut Context<'_>,
    ) {
        self.fresh = false;
        if let Mode::Fresh = self.mode {
            self.mode = Mode::Http(Box::new(HttpState {
                client: HttpSide::Head,
                server: HttpSide::Head,
                request_head: Vec::new(),
                response_head: Vec::new(),
                pending: VecDeque::new(),
                early_client_bytes: Vec::new(),
                awaiting_upgrade: false,
            }));
        }
        match &mut self.mode {
            Mode::WebSocket(ws) => ws.feed(dir, input, scratch, ctx),
            Mode::Ignored | Mode::Probe(_) | Mode::Fresh => {}
            Mode::Http(http) => {
                let next = match dir {
                    Direction::ClientToServer => http.client_data(input, ctx.ts),
                    Direction::ServerToClient => http.server_data(input, ctx),
                };
                match next {
                    HttpOutcome::Continue => {}
                    HttpOutcome::Ignore => self.mode = Mode::Ignored,
                    HttpOutcome::Refused(handshake) => {
                        self.handshake = Some(handshake);
                        self.summarise = true;
                        self.mode = Mode::Ignored;
                    }
                    HttpOutcome::Upgraded {
                        upgrade,
                        server_rest,
                    } => {
                        let Mode::Http(http) = std::mem::replace(&mut self.mode, Mode::Ignored)
                        else {
                            return;
                        };
                        self.mode =
                            Mode::WebSocket(Box::new(WsConnection::new(upgrade.negotiated)));
                        self.handshake = Some(upgrade);
                        self.summarise = true;
                        // Frames the server sent in the 101's own segment, then anything the
                        // client sent before it saw the 101.
                        self.data(Direction::ServerToClient, &server_rest, scratch, ctx);
                        self.data(
                            Direction::ClientToServer,
                            &http.early_client_bytes,
                            scratch,
                            ctx,
                        );
                    }
                }
            }
        }
    }
}

enum HttpOutcome {
    Continue,
    Ignore,
    /// The upgrade was answered with something other than a switch to WebSocket.
    Refused(Box<Upgrade>),
    Upgraded {
        upgrade: Box<Upgrade>,
        server_rest: Vec<u8>,
    },
}

/// Appends to a head buffer and parses it. On completion returns the parsed value and how many
/// of `input`'s bytes the head used.
fn take_head<T>(
    buf: &mut Vec<u8>,
    input: &[u8],
    parse: impl Fn(&[u8]) -> Result<Option<(T, usize)>, handshake::HeadError>,
) -> Result<Option<(T, usize)>, ()> {
    let before = buf.len();
    let room = MAX_HEAD_LEN + 1 - before;
    buf.extend_from_slice(&input[..input.len().min(room)]);
    match parse(buf) {
        Ok(Some((value, head_len))) => {
            buf.clear();
            Ok(Some((value, head_len - before)))
        }
        Ok(None) if buf.len() <= MAX_HEAD_LEN => Ok(None),
        _ => Err(()),
    }
}

/// Skips body bytes; false when the body's framing is broken.
fn skip_body(side: &mut HttpSide, input: &mut &[u8]) -> bool {
    match side {
        HttpSide::SkipBody(remaining) => {
            let take = usize::try_from(*remaining)
                .unwrap_or(usize::MAX)
                .min(input.len());
            *input = &input[take..];
            *remaining -= take as u64;
            if *remaining == 0 {
                *side = HttpSide::Head;
            }
            true
        }
        HttpSide::Chunked(body) => match body.skip(input) {
            Ok(true) => {
                *side = HttpSide::Head;
                true
            }
            Ok(false) => true,
            Err(()) => false,
        },
        HttpSide::Head => true,
    }
}

fn body_side(body: BodyLength) -> Option<HttpSide> {
    match body {
        BodyLength::None | BodyLength::Fixed(0) => Some(HttpSide::Head),
        BodyLength::Fixed(n) => Some(HttpSide::SkipBody(n)),
        BodyLength::Chunked => Some(HttpSide::Chunked(ChunkedBody::start())),
        BodyLength::UntilClose => None,
    }
}

impl HttpState {
    fn client_data(&mut self, mut input: &[u8], ts: Timestamp) -> HttpOutcome {
        while !input.is_empty() {
            if self.awaiting_upgrade {
                if self.early_client_bytes.len() + input.len() > MAX_HEAD_LEN {
                    return HttpOutcome::Ignore;
                }
                self.early_client_bytes.extend_from_slice(input);
                return HttpOutcome::Continue;
            }
            if !matches!(self.client, HttpSide::Head) {
                if !skip_body(&mut self.client, &mut input) {
                    return HttpOutcome::Ignore;
                }
                continue;
            }
            if self.request_head.is_empty() && !handshake::looks_like_request_start(input) {
                return HttpOutcome::Ignore;
            }
            let (request, used) =
                match take_head(&mut self.request_head, input, handshake::parse_request) {
                    Ok(Some(done)) => done,
                    Ok(None) => return HttpOutcome::Continue,
                    Err(()) => return HttpOutcome::Ignore,
                };
            input = &input[used..];
            if self.pending.len() >= MAX_PENDING_REQUESTS {
                return HttpOutcome::Ignore;
            }
            let method = request.method.clone();
            if request.upgrade_websocket {
                self.awaiting_upgrade = true;
                self.pending.push_back(PendingRequest {
                    method,
                    upgrade: Some((Box::new(request), ts)),
                });
            } else {
                let Some(side) = body_side(request.body) else {
                    return HttpOutcome::Ignore;
                };
                self.client = side;
                self.pending.push_back(PendingRequest {
                    method,
                    upgrade: None,
                });
            }
        }
        HttpOutcome::Continue
    }

    fn server_data(&mut self, mut input: &[u8], ctx: &mut Context<'_>) -> HttpOutcome {
        while !input.is_empty() {
            if !matches!(self.server, HttpSide::Head) {
                if !skip_body(&mut self.server, &mut input) {
                    return HttpOutcome::Ignore;
                }
                continue;
            }
            if self.response_head.is_empty() && !handshake::looks_like_response_start(input) {
                return HttpOutcome::Ignore;
            }
            // With no request seen (the capture began between request and response), a GET
            // is the only request a 101 to WebSocket can answer.
            let method = match self.pending.front() {
                Some(pending) => pending.method.as_str(),
                None => "GET",
            };
            let (response, used) = match take_head(&mut self.response_head, input, |b| {
                handshake::parse_response(b, method)
            }) {
                Ok(Some(done)) => done,
                Ok(None) => return HttpOutcome::Continue,
                Err(()) => return HttpOutcome::Ignore,
            };
            input = &input[used..];
            if response.status != 101 && (100..200).contains(&response.status) {
                continue; // an interim response; the final one follows
            }
            let Some(pending) = self.pending.pop_front() else {
                if response.status == 101 && response.upgrade_websocket {
                    // The request was not captured: follow the connection without a handshake
                    // event, whose request half would be empty.
                    let negotiated = Negotiated::from_server_extensions(&response.extensions);
                    return HttpOutcome::Upgraded {
                        upgrade: Box::new(Upgrade {
                            request: UpgradeRequest::default(),
                            response,
                            accept: AcceptVerdict::Missing,
                            negotiated,
                        }),
                        server_rest: input.to_vec(),
                    };
                }
                return HttpOutcome::Ignore;
            };
            match pending.upgrade {
                Some((request, request_ts)) => {
                    let upgraded = response.status == 101 && response.upgrade_websocket;
                    let accept = handshake::accept_verdict(&request, &response);
                    ctx.stats.handshakes += 1;
                    ctx.stats.upgrades += u64::from(upgraded);
                    ctx.sink.event(&Event::Handshake(HandshakeEvent {
                        ts: ctx.ts,
                        flow: ctx.flow,
                        request: &request,
                        response: &response,
                        accept,
                        upgraded,
                        latency: ctx.ts.seconds_since(request_ts),
                    }));
                    check_handshake(&request, &response, accept, ctx);
                    let negotiated = Negotiated::from_server_extensions(&response.extensions);
                    if !upgraded {
                        return HttpOutcome::Refused(Box::new(Upgrade {
                            request: *request,
                            response,
                            accept,
                            negotiated,
                        }));
                    }
                    return HttpOutcome::Upgraded {
                        upgrade: Box::new(Upgrade {
                            request: *request,
                            response,
                            accept,
                            negotiated,
                        }),
                        server_rest: input.to_vec(),
                    };
                }
                None if response.status == 101 => return HttpOutcome::Ignore,
                None => {
                    let Some(side) = body_side(response.body) else {
                        return HttpOutcome::Ignore;
                    };
                    self.server = side;
                }
            }
        }
        HttpOutcome::Continue
    }
}

/// Anomalies of the opening handshake itself.
fn check_handshake(
    request: &UpgradeRequest,
    response: &UpgradeResponse,
    accept: AcceptVerdict,
    ctx: &mut Context<'_>,
) {
    let mut missing = Vec::new();
    if !request.method.eq_ignore_ascii_case("GET") {
        missing.push("method GET");
    }
    if !request.connection_upgrade {
        missing.push("Connection: Upgrade");
    }
    if !request.key.as_deref().is_some_and(handshake::key_is_valid) {
        missing.push("a Sec-WebSocket-Key of 16 base64 bytes");
    }
    if request.version.as_deref() != Some("13") {
        missing.push("Sec-WebSocket-Version: 13");
    }
    if !missing.is_empty() {
        let detail = format!("the upgrade request lacks {}", missing.join(", "));
        ctx.anomaly(
            Some(Direction::ClientToServer),
            AnomalyKind::BadUpgradeRequest,
            &detail,
        );
    }
    if response.status != 101 {
        return;
    }
    // RFC 6455 4.1: a client fails the connection when the header is absent or wrong. A 101
    // whose request was not captured has nothing to check against.
    let expected = request.key.as_deref().map(handshake::expected_accept);
    let detail = match (accept, &response.accept) {
        (AcceptVerdict::Mismatch, Some(got)) => Some(format!(
            "Sec-WebSocket-Accept is {got:?}; the key calls for {:?}",
            expected.unwrap_or_default()
        )),
        (AcceptVerdict::Missing, _) if !request.method.is_empty() => Some(format!(
            "the 101 has no Sec-WebSocket-Accept; the key calls for {:?}",
            expected.unwrap_or_default()
        )),
        _ => None,
    };
    if let Some(detail) = detail {
        ctx.anomaly(
            Some(Direction::ServerToClient),
            AnomalyKind::AcceptMismatch,
            &detail,
        );
    }
    for ext in &response.extensions {
        let name = extension_name(ext);
        if !request
            .extensions
            .iter()
            .any(|offer| extension_name(offer).eq_ignore_ascii_case(name))
        {
            let detail = format!("the server accepted {name:?}, which the client did not offer");
            ctx.anomaly(
                Some(Direction::ServerToClient),
                AnomalyKind::UnrequestedExtension,
                &detail,
            );
        }
    }
    if let Some(protocol) = &response.protocol
        && !request.protocols.iter().any(|p| p == protocol)
    {
        let detail = format!("the server selected {protocol:?}, which the client did not offer");
        ctx.anomaly(
            Some(Direction::ServerToClient),
            AnomalyKind::UnrequestedProtocol,
            &detail,
        );
    }
}

/// "permessage-deflate; client_max_window_bits" -> "permessage-deflate".
pub fn extension_name(offer: &str) -> &str {
    offer.split(';').next().unwrap_or("").trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skip_all(body: &[u8], piece: usize) -> (Result<bool, ()>, usize) {
        let mut state = ChunkedBody::start();
        let mut consumed = 0;
        for chunk in body.chunks(piece) {
            let mut input = chunk;
            match state.skip(&mut input) {
                Ok(true) => return (Ok(true), consumed + chunk.len() - input.len()),
                Ok(false) => consumed += chunk.len(),
                Err(()) => return (Err(()), consumed),
            }
        }
        (Ok(false), consumed)
    }

    #[test]
    fn chunked_bodies_end_exactly() {
        let body = b"4\r\nWiki\r\n6;ext=1\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nX-Trailer: 1\r\n\r\nGET /next";
        let end = body.len() - b"GET /next".len();
        for piece in [1, 2, 3, 7, body.len()] {
            assert_eq!(skip_all(body, piece), (Ok(true), end), "pieces of {piece}");
        }
        assert_eq!(skip_all(b"zz\r\n", 4).0, Err(()));
        assert_eq!(skip_all(b"4\r\nabcdXY", 64).0, Err(()));
        assert_eq!(skip_all(b"ffffffffffffffffff\r\n", 64).0, Err(()));
    }
}
