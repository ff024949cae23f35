//! One connection's application layer: HTTP/1.1 until a WebSocket upgrade succeeds, then
//! frames in both directions.
//!
//! Ordinary keep-alive requests may precede the upgrade; their bodies are skipped by length or
//! by chunks. A connection that is not HTTP, or whose HTTP wsnoop cannot follow (bodies
//! delimited by close, heads over 64 KiB, broken chunk framing, lost bytes), is given up at
//! once, so its bytes cost nothing more, and the reason is counted ([`GiveUp`]). When the
//! connection meant to become WebSocket (an upgrade request, a 101, a `--ws-port`), or its HTTP
//! broke, an `http_abandoned` anomaly says why; one that meant WebSocket is then decoded
//! mid-stream, as if its handshake had not been captured, so its frames are not lost.

use std::collections::VecDeque;

use crate::anomaly::AnomalyKind;
use crate::event::{Direction, EndReason, Event, FlowEvent, FlowMeta, HandshakeEvent, Timestamp};
use crate::frame::{ChainRule, ChainScan, Plausible};
use crate::handshake::{
    self, AcceptVerdict, BodyLength, MAX_HEAD_LEN, UpgradeRequest, UpgradeResponse,
};
pub use crate::http::give_up::{GiveUp, GiveUps};

use crate::context::Context;
use crate::event::FlowCounters;
use crate::ws::{FrameHunt, Negotiated, Scratch, WsConnection};

/// Requests may be pipelined; more unanswered than this and the connection is not followed.
const MAX_PENDING_REQUESTS: usize = 32;

#[derive(Debug)]
enum HttpSide {
    Head,
    SkipBody(u64),
    Chunked(ChunkedBody),
    /// The rest of a request head too large to hold.
    HeadTail(HeadTail),
}

/// The rest of a head over [`MAX_HEAD_LEN`], read without being held: only for where it ends
/// and for an `Upgrade: websocket` line, so padding a header cannot hide an upgrade.
#[derive(Debug, Clone, Copy)]
struct HeadTail {
    /// The current line's first bytes: enough for `Upgrade: websocket`.
    line: [u8; HeadTail::KEEP],
    /// Bytes of the current line so far.
    len: usize,
    upgrade: bool,
}

impl HeadTail {
    const KEEP: usize = 48;

    /// Starts inside the line that `held` (the bytes held so far) ends with.
    fn after(held: &[u8]) -> HeadTail {
        let start = held
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |at| at + 1);
        let mut tail = HeadTail {
            line: [0; HeadTail::KEEP],
            len: 0,
            upgrade: handshake::partial_head_upgrades(held),
        };
        tail.scan(&held[start..]);
        tail
    }

    /// Reads head bytes; at the head's end, returns how many of `input` it used.
    fn scan(&mut self, input: &[u8]) -> Option<usize> {
        for (i, &b) in input.iter().enumerate() {
            if b != b'\n' {
                if let Some(slot) = self.line.get_mut(self.len) {
                    *slot = b;
                }
                self.len = self.len.saturating_add(1);
                continue;
            }
            let kept = &self.line[..self.len.min(HeadTail::KEEP)];
            let kept = kept.strip_suffix(b"\r").unwrap_or(kept);
            if self.len <= 1 && kept.is_empty() {
                return Some(i + 1);
            }
            self.upgrade |= handshake::line_upgrades(kept);
            self.len = 0;
        }
        None
    }
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
    fn skip(&mut self, input: &mut &[u8]) -> Result<bool, GiveUp> {
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
                    _ => return Err(GiveUp::BadChunkedBody),
                },
                ChunkedBody::Size {
                    size,
                    digits_done,
                    line,
                } => {
                    *line += 1;
                    if *line > MAX_CHUNK_LINE {
                        return Err(GiveUp::BadChunkedBody);
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
                            *size = size.checked_mul(16).ok_or(GiveUp::BadChunkedBody)?
                                + u64::from(digit);
                        }
                        // Chunk extensions, whitespace and the CR are skipped to the line's end.
                        (_, _) if *line > 1 => *digits_done = true,
                        _ => return Err(GiveUp::BadChunkedBody),
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
                            return Err(GiveUp::BadChunkedBody);
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
    /// Where in `early_client_bytes` client bytes were lost, and how many.
    early_gap: Option<(usize, u64)>,
    awaiting_upgrade: bool,
    /// The connection showed it means to become WebSocket: an upgrade request or a 101.
    intent: bool,
    /// Complete heads parsed, both ways: the connection has spoken HTTP.
    heads: u32,
    /// An upgrade just refused, for the session to keep as its handshake.
    refused: Option<Box<Upgrade>>,
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
    /// The user said the server's port is WebSocket (`--ws-port`), though it speaks HTTP first.
    ws_port: bool,
    /// Per direction (index 0: client to server): picked up after the HTTP layer gave up, and
    /// no byte yet that is not a head: a complete head at the start of a segment is skipped,
    /// so the frames right behind it in the same segment are found.
    skip_heads: [bool; 2],
    /// Decoded mid-stream after the HTTP layer gave up on it.
    picked_up: bool,
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
            ws_port: false,
            skip_heads: [false; 2],
            picked_up: false,
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
            ws_port: false,
            skip_heads: [false; 2],
            picked_up: false,
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

    /// The server's port is one the user named WebSocket: if the HTTP layer gives up on this
    /// connection, it is reported and its frames looked for.
    pub fn expect_websocket(&mut self) {
        self.ws_port = true;
    }

    /// The HTTP layer stops following the connection: counts why, reports it when the
    /// connection meant WebSocket or its HTTP broke, and then, when it meant WebSocket, looks
    /// for its frames mid-stream (beginning with the client's bytes held for the upgrade).
    fn give_up(
        &mut self,
        reason: GiveUp,
        dir: Direction,
        extra: &str,
        input: &[u8],
        scratch: &mut Scratch,
        ctx: &mut Context<'_>,
    ) {
        let http = match std::mem::replace(&mut self.mode, Mode::Ignored) {
            Mode::Http(http) => Some(http),
            Mode::Fresh => None,
            other => {
                self.mode = other;
                return;
            }
        };
        let intent = self.ws_port || http.as_ref().is_some_and(|h| h.intent);
        let spoke_http = http.as_ref().is_some_and(|h| h.heads > 0);
        if !intent {
            count_give_up(reason, dir, extra, false, spoke_http, ctx);
            return;
        }
        // From here on the connection is decoded as one whose handshake was not captured.
        let flow = FlowMeta {
            midstream: true,
            ..*ctx.flow
        };
        let mut ctx = Context {
            ts: ctx.ts,
            flow: &flow,
            sink: &mut *ctx.sink,
            options: ctx.options,
            stats: &mut *ctx.stats,
            cause: ctx.cause,
            bytes_cut: ctx.bytes_cut,
        };
        count_give_up(reason, dir, extra, true, spoke_http, &mut ctx);
        self.mode = Mode::WebSocket(Box::new(WsConnection::midstream()));
        self.summarise = true;
        self.picked_up = true;
        self.skip_heads = [true; 2];
        if let Some(http) = http {
            self.replay_early(&http, scratch, &mut ctx);
        }
        // Frames may follow in the same bytes: a mid-stream decoder skips what is not one.
        if !input.is_empty() {
            self.data(dir, input, scratch, &mut ctx);
        }
    }

    /// The HTTP layer gave up on the connection and its frames are looked for: its events are
    /// mid-stream ones from then on.
    pub fn picked_up(&self) -> bool {
        self.picked_up
    }

    /// Once the connection is WebSocket: what the client sent while its upgrade awaited the
    /// response, with the gap it may have had.
    fn replay_early(&mut self, http: &HttpState, scratch: &mut Scratch, ctx: &mut Context<'_>) {
        let early = &http.early_client_bytes[..];
        let (before, after) = match http.early_gap {
            Some((at, _)) => early.split_at(at.min(early.len())),
            None => (early, &[][..]),
        };
        if !before.is_empty() {
            self.data(Direction::ClientToServer, before, scratch, ctx);
        }
        if let Some((_, lost)) = http.early_gap {
            self.gap(Direction::ClientToServer, lost, scratch, ctx);
        }
        if !after.is_empty() {
            self.data(Direction::ClientToServer, after, scratch, ctx);
        }
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
    pub fn gap(&mut self, dir: Direction, lost: u64, scratch: &mut Scratch, ctx: &mut Context<'_>) {
        match &mut self.mode {
            Mode::WebSocket(ws) => ws.gap(dir, lost, ctx),
            // Client bytes lost after an upgrade request are frames (or, if the upgrade is
            // refused, a next request): the response decides, so wait for it.
            Mode::Http(http)
                if dir == Direction::ClientToServer
                    && http.awaiting_upgrade
                    && http.early_gap.is_none() =>
            {
                http.early_gap = Some((http.early_client_bytes.len(), lost));
            }
            // An HTTP exchange cannot be followed across a hole. A head the hole cut short
            // may still show that the connection meant WebSocket (a snapshot length that cut
            // the request after its Upgrade line).
            Mode::Http(http) => {
                http.note_partial_heads();
                let extra = format!(", {lost} bytes lost");
                self.give_up(GiveUp::Gap, dir, &extra, &[], scratch, ctx);
            }
            Mode::Fresh => {
                let extra = format!(", {lost} bytes lost");
                self.give_up(GiveUp::Gap, dir, &extra, &[], scratch, ctx);
            }
            Mode::Probe(_) => self.mode = Mode::Ignored,
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
                {
                    // The connection ended inside a head too large to hold.
                    if let HttpSide::HeadTail(tail) = &http.client {
                        let intent = self.ws_port || http.intent || tail.upgrade;
                        let (dir, reason) = (Direction::ClientToServer, GiveUp::HeadTooLarge);
                        count_give_up(reason, dir, ", cut by the end", intent, true, ctx);
                    }
                    &no_counters
                },
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
            ping_rtt: counters.ping_rtt(),
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
                early_gap: None,
                awaiting_upgrade: false,
                intent: false,
                heads: 0,
                refused: None,
            }));
        }
        match &mut self.mode {
            Mode::WebSocket(ws) => {
                let skip = &mut self.skip_heads[dir.index()];
                let input = if *skip {
                    *skip = false;
                    after_head(dir, input)
                } else {
                    input
                };
                ws.feed(dir, input, scratch, ctx)
            }
            Mode::Ignored | Mode::Probe(_) | Mode::Fresh => {}
            Mode::Http(http) => {
                let next = match dir {
                    Direction::ClientToServer => http.client_data(input, ctx),
                    Direction::ServerToClient => http.server_data(input, ctx),
                };
                // An upgrade answered with something other than a switch to WebSocket.
                if let Some(refused) = http.refused.take() {
                    self.handshake = Some(refused);
                    self.summarise = true;
                }
                match next {
                    HttpOutcome::Continue => {}
                    HttpOutcome::GiveUp(reason) => {
                        self.give_up(reason, dir, "", input, scratch, ctx);
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
                        self.replay_early(&http, scratch, ctx);
                    }
                }
            }
        }
    }
}

enum HttpOutcome {
    Continue,
    /// The HTTP layer cannot follow the connection any more.
    GiveUp(GiveUp),
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
) -> Result<Option<(T, usize)>, GiveUp> {
    let before = buf.len();
    let room = MAX_HEAD_LEN + 1 - before;
    buf.extend_from_slice(&input[..input.len().min(room)]);
    match parse(buf) {
        Ok(Some((value, head_len))) => {
            buf.clear();
            Ok(Some((value, head_len - before)))
        }
        Ok(None) if buf.len() <= MAX_HEAD_LEN => Ok(None),
        Ok(None) => Err(GiveUp::HeadTooLarge),
        Err(_) => Err(GiveUp::MalformedHead),
    }
}

/// Skips body bytes; Err when the body's framing is broken.
fn skip_body(side: &mut HttpSide, input: &mut &[u8]) -> Result<(), GiveUp> {
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
        }
        HttpSide::Chunked(body) => {
            if body.skip(input)? {
                *side = HttpSide::Head;
            }
        }
        HttpSide::Head | HttpSide::HeadTail(_) => {}
    }
    Ok(())
}

fn body_side(body: BodyLength) -> Result<HttpSide, GiveUp> {
    match body {
        BodyLength::None | BodyLength::Fixed(0) => Ok(HttpSide::Head),
        BodyLength::Fixed(n) => Ok(HttpSide::SkipBody(n)),
        BodyLength::Chunked => Ok(HttpSide::Chunked(ChunkedBody::start())),
        BodyLength::UntilClose => Err(GiveUp::BodyUntilClose),
    }
}

/// Counts a give-up; reports it when the connection meant WebSocket or its HTTP broke.
fn count_give_up(
    reason: GiveUp,
    dir: Direction,
    extra: &str,
    intent: bool,
    spoke_http: bool,
    ctx: &mut Context<'_>,
) {
    ctx.stats.http_given_up.counts[reason as usize] += 1;
    if !(intent || (reason.breaks_http() && spoke_http)) {
        return;
    }
    ctx.stats.http_given_up.reported += 1;
    let then = if intent {
        "; frames are looked for mid-stream"
    } else {
        ""
    };
    let detail = format!(
        "{}: {} ({} stream){extra}; wsnoop stopped following its HTTP{then}",
        reason.name(),
        reason.sentence(),
        dir.name()
    );
    ctx.anomaly(Some(dir), AnomalyKind::HttpAbandoned, &detail);
}

/// `input` after the complete HTTP head it starts with, if it starts with one.
fn after_head(dir: Direction, input: &[u8]) -> &[u8] {
    let len = match dir {
        Direction::ClientToServer => handshake::parse_request(input).map(|h| h.map(|h| h.1)),
        Direction::ServerToClient => {
            handshake::parse_response(input, "GET").map(|h| h.map(|h| h.1))
        }
    };
    match len {
        Ok(Some(n)) => &input[n..],
        _ => input,
    }
}

/// A head that had to be parsed leniently, on a connection that means WebSocket.
fn report_malformed(dir: Direction, what: Option<&str>, ctx: &mut Context<'_>) {
    if let Some(what) = what {
        let detail = format!("{what}; it was parsed leniently");
        ctx.anomaly(Some(dir), AnomalyKind::MalformedHttp, &detail);
    }
}

impl HttpState {
    /// A head could not be taken: a head cut short may still show that the connection meant
    /// WebSocket.
    fn head_failed(&mut self, reason: GiveUp) -> HttpOutcome {
        self.note_partial_heads();
        HttpOutcome::GiveUp(reason)
    }

    /// What the heads held so far say of WebSocket intent: an `Upgrade: websocket` line in
    /// either, or a response's status line switching protocols.
    fn note_partial_heads(&mut self) {
        self.intent |= handshake::partial_head_upgrades(&self.request_head)
            || handshake::partial_head_upgrades(&self.response_head)
            || self.response_head.get(8..13) == Some(&b" 101 "[..]);
    }

    fn client_data(&mut self, mut input: &[u8], ctx: &mut Context<'_>) -> HttpOutcome {
        while !input.is_empty() {
            if self.awaiting_upgrade {
                if self.early_client_bytes.len() + input.len() > MAX_HEAD_LEN {
                    return HttpOutcome::GiveUp(GiveUp::EarlyClientBytes);
                }
                self.early_client_bytes.extend_from_slice(input);
                return HttpOutcome::Continue;
            }
            if let HttpSide::HeadTail(tail) = &mut self.client {
                if tail.scan(input).is_none() {
                    return HttpOutcome::Continue;
                }
                self.intent |= tail.upgrade;
                return HttpOutcome::GiveUp(GiveUp::HeadTooLarge);
            }
            if !matches!(self.client, HttpSide::Head) {
                if let Err(reason) = skip_body(&mut self.client, &mut input) {
                    return HttpOutcome::GiveUp(reason);
                }
                continue;
            }
            if self.request_head.is_empty() && !handshake::looks_like_request_start(input) {
                return HttpOutcome::GiveUp(GiveUp::NotHttp);
            }
            let held = self.request_head.len();
            let (request, used) =
                match take_head(&mut self.request_head, input, handshake::parse_request) {
                    Ok(Some(done)) => done,
                    Ok(None) => return HttpOutcome::Continue,
                    Err(GiveUp::HeadTooLarge) => {
                        // Read on to the head's end: an upgrade may come after the padding.
                        let tail = HeadTail::after(&self.request_head);
                        input = &input[self.request_head.len() - held..];
                        self.request_head = Vec::new();
                        self.client = HttpSide::HeadTail(tail);
                        continue;
                    }
                    Err(reason) => return self.head_failed(reason),
                };
            input = &input[used..];
            self.heads += 1;
            if self.pending.len() >= MAX_PENDING_REQUESTS {
                return HttpOutcome::GiveUp(GiveUp::TooManyPipelined);
            }
            let method = request.method.clone();
            if request.upgrade_websocket {
                self.intent = true;
                report_malformed(Direction::ClientToServer, request.malformed.as_deref(), ctx);
                self.awaiting_upgrade = true;
                self.pending.push_back(PendingRequest {
                    method,
                    upgrade: Some((Box::new(request), ctx.ts)),
                });
            } else if request.method.eq_ignore_ascii_case("CONNECT") {
                // A tunnel: what follows its 2xx is another protocol, for the proxy to relay.
                return HttpOutcome::GiveUp(GiveUp::OtherProtocol);
            } else {
                self.client = match body_side(request.body) {
                    Ok(side) => side,
                    Err(reason) => return HttpOutcome::GiveUp(reason),
                };
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
                if let Err(reason) = skip_body(&mut self.server, &mut input) {
                    return HttpOutcome::GiveUp(reason);
                }
                continue;
            }
            if self.response_head.is_empty() && !handshake::looks_like_response_start(input) {
                return HttpOutcome::GiveUp(GiveUp::NotHttp);
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
                Err(reason) => return self.head_failed(reason),
            };
            input = &input[used..];
            self.heads += 1;
            if response.status != 101 && (100..200).contains(&response.status) {
                continue; // an interim response; the final one follows
            }
            let Some(pending) = self.pending.pop_front() else {
                if response.status == 101 && response.upgrade_websocket {
                    report_malformed(
                        Direction::ServerToClient,
                        response.malformed.as_deref(),
                        ctx,
                    );
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
                return HttpOutcome::GiveUp(GiveUp::ResponseWithoutRequest);
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
                    report_malformed(
                        Direction::ServerToClient,
                        response.malformed.as_deref(),
                        ctx,
                    );
                    check_handshake(&request, &response, accept, ctx);
                    let negotiated = Negotiated::from_server_extensions(&response.extensions);
                    if !upgraded {
                        let (status, body) = (response.status, response.body);
                        self.refused = Some(Box::new(Upgrade {
                            request: *request,
                            response,
                            accept,
                            negotiated,
                        }));
                        if status == 101 {
                            // Switched, but not to WebSocket: what follows is not HTTP.
                            return HttpOutcome::GiveUp(GiveUp::OtherProtocol);
                        }
                        // Refused, the connection may go on: a retry with credentials, another
                        // path. Following it keeps a refused decoy from hiding a real upgrade.
                        self.awaiting_upgrade = false;
                        self.intent = false;
                        self.server = match body_side(body) {
                            Ok(side) => side,
                            Err(reason) => return HttpOutcome::GiveUp(reason),
                        };
                        if self.early_gap.is_some() {
                            return HttpOutcome::GiveUp(GiveUp::Gap);
                        }
                        let early = std::mem::take(&mut self.early_client_bytes);
                        match self.client_data(&early, ctx) {
                            HttpOutcome::Continue => continue,
                            other => return other,
                        }
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
                None if response.status == 101 => {
                    // A 101 that says WebSocket to a request that did not ask for it.
                    self.intent |= response.upgrade_websocket;
                    return HttpOutcome::GiveUp(GiveUp::OtherProtocol);
                }
                None => {
                    self.server = match body_side(response.body) {
                        Ok(side) => side,
                        Err(reason) => return HttpOutcome::GiveUp(reason),
                    };
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

    fn skip_all(body: &[u8], piece: usize) -> (Result<bool, GiveUp>, usize) {
        let mut state = ChunkedBody::start();
        let mut consumed = 0;
        for chunk in body.chunks(piece) {
            let mut input = chunk;
            match state.skip(&mut input) {
                Ok(true) => return (Ok(true), consumed + chunk.len() - input.len()),
                Ok(false) => consumed += chunk.len(),
                Err(e) => return (Err(e), consumed),
            }
        }
        (Ok(false), consumed)
    }

    use crate::anomaly::Cause;
    use crate::event::Payload;
    use crate::ws::{WsOptions, WsStats};

    enum Step<'a> {
        Data(Direction, &'a [u8]),
        Gap(Direction, u64),
    }
    use Direction::{ClientToServer as C2S, ServerToClient as S2C};
    use Step::{Data, Gap};

    /// Feeds a session; returns its events in words, and the stats.
    fn run(ws_port: bool, steps: &[Step<'_>]) -> (Vec<String>, WsStats) {
        let flow = FlowMeta {
            id: 0,
            client: "127.0.0.1:40000".parse().unwrap(),
            server: "127.0.0.1:9000".parse().unwrap(),
            midstream: false,
        };
        let options = WsOptions::default();
        let mut stats = WsStats::default();
        let mut events = Vec::new();
        let mut sink = |e: &Event<'_>| match e {
            Event::Anomaly(a) => events.push(format!("{} {}", a.kind.name(), a.detail)),
            Event::Handshake(h) => events.push(format!(
                "handshake {} {} accept={}",
                h.request.uri,
                h.response.status,
                h.accept.name()
            )),
            Event::Frame(f) => events.push(match f.payload {
                Payload::Text(t) => format!("frame {} {t}", f.dir.name()),
                Payload::Data(d) => format!("frame {} {d:?}", f.dir.name()),
            }),
            _ => {}
        };
        let mut scratch = Scratch::default();
        let mut session = Session::new();
        if ws_port {
            session.expect_websocket();
        }
        for step in steps {
            let mut ctx = Context {
                ts: Timestamp::default(),
                flow: &flow,
                sink: &mut sink,
                options: &options,
                stats: &mut stats,
                cause: Cause::Traffic,
                bytes_cut: [0; 2],
            };
            match step {
                Data(dir, bytes) => session.data(*dir, bytes, &mut scratch, &mut ctx),
                Gap(dir, lost) => session.gap(*dir, *lost, &mut scratch, &mut ctx),
            }
        }
        (events, stats)
    }

    /// A masked client text frame (mask 0) and an unmasked server one.
    fn client_text(t: &str) -> Vec<u8> {
        [&[0x81, 0x80 | t.len() as u8, 0, 0, 0, 0][..], t.as_bytes()].concat()
    }
    fn server_text(t: &str) -> Vec<u8> {
        [&[0x81, t.len() as u8][..], t.as_bytes()].concat()
    }
    fn frames(make: fn(&str) -> Vec<u8>, texts: &[&str]) -> Vec<u8> {
        texts.iter().flat_map(|t| make(t)).collect()
    }

    const UPGRADE: &[u8] =
        b"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    const SWITCH: &[u8] =
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

    fn count(events: &[String], prefix: &str) -> usize {
        events.iter().filter(|e| e.starts_with(prefix)).count()
    }

    #[test]
    fn an_odd_user_agent_and_uri_are_decoded_and_named() {
        let request = [
            &b"GET /caf\xff HTTP/1.1\r\nUser-Agent: x\x1b[2Jy\r\n"[..],
            &UPGRADE[b"GET /chat HTTP/1.1\r\n".len()..],
        ]
        .concat();
        let (events, stats) = run(
            false,
            &[
                Data(C2S, &request),
                Data(S2C, &[SWITCH, &server_text("hi")].concat()),
                Data(C2S, &client_text("yo")),
            ],
        );
        assert_eq!(count(&events, "malformed_http"), 1, "{events:?}");
        let odd = events
            .iter()
            .find(|e| e.starts_with("malformed_http"))
            .unwrap();
        assert!(
            odd.contains("control byte 0x1b in the value of \"User-Agent\""),
            "{odd}"
        );
        assert!(
            odd.contains("invalid UTF-8 (byte 0xff at offset 4) in the URI"),
            "{odd}"
        );
        assert!(
            events.contains(&"handshake /caf\u{fffd} 101 accept=ok".to_string()),
            "{events:?}"
        );
        assert!(events.contains(&"frame s2c hi".to_string()), "{events:?}");
        assert!(events.contains(&"frame c2s yo".to_string()), "{events:?}");
        assert_eq!((stats.handshakes, stats.upgrades), (1, 1));
        assert_eq!(stats.http_given_up.total(), 0);
    }

    #[test]
    fn a_101_with_a_bad_accept_header_name_is_followed() {
        let switch =
            String::from_utf8_lossy(SWITCH).replace("Sec-WebSocket-Accept", "Sec-WebSocket Accept");
        let (events, _) = run(
            false,
            &[
                Data(C2S, UPGRADE),
                Data(S2C, &[switch.as_bytes(), &server_text("hi")].concat()),
            ],
        );
        assert!(
            events.contains(&"handshake /chat 101 accept=missing".to_string()),
            "{events:?}"
        );
        assert_eq!(count(&events, "malformed_http"), 1, "{events:?}");
        assert_eq!(count(&events, "accept_mismatch"), 1, "{events:?}");
        assert!(events.contains(&"frame s2c hi".to_string()), "{events:?}");
    }

    #[test]
    fn odd_plain_http_is_quiet() {
        // No upgrade asked for: an odd head is read, not reported.
        let (events, stats) = run(
            false,
            &[
                Data(C2S, b"GET /x HTTP/1.1\r\nUser-Agent: a\x01b\r\n\r\n"),
                Data(
                    S2C,
                    b"HTTP/1.1 200 OK\r\nX-Odd : 1\r\nContent-Length: 2\r\n\r\nok",
                ),
            ],
        );
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(stats.http_given_up.total(), 0);
        // Another protocol on a port: counted, not reported.
        let (events, stats) = run(false, &[Data(C2S, b"SSH-2.0-OpenSSH_9.2\r\n")]);
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(stats.http_given_up.get(GiveUp::NotHttp), 1);
        assert_eq!(stats.http_given_up.reported, 0);
        // A plain download without length ends the HTTP: counted only.
        let (events, stats) = run(
            false,
            &[
                Data(C2S, b"GET / HTTP/1.0\r\n\r\n"),
                Data(S2C, b"HTTP/1.0 200 OK\r\n\r\nbody"),
                Gap(S2C, 100),
            ],
        );
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(stats.http_given_up.get(GiveUp::BodyUntilClose), 1);
        assert_eq!(stats.http_given_up.total(), 1);
    }

    #[test]
    fn broken_http_is_reported_even_without_an_upgrade() {
        let (events, stats) = run(
            false,
            &[
                Data(
                    C2S,
                    b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                ),
                Data(C2S, b"zz\r\n"),
            ],
        );
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(
            events[0].starts_with("http_abandoned bad_chunked_body: "),
            "{events:?}"
        );
        assert_eq!(stats.http_given_up.get(GiveUp::BadChunkedBody), 1);
        assert_eq!(stats.http_given_up.reported, 1);
    }

    #[test]
    fn a_gap_that_cuts_the_101_is_reported_and_frames_are_still_found() {
        let echoes = frames(server_text, &["one", "two", "three", "four"]);
        let (events, stats) = run(
            false,
            &[
                Data(C2S, UPGRADE),
                Data(C2S, &client_text("early")),
                Gap(S2C, SWITCH.len() as u64),
                Data(S2C, &echoes),
                Data(C2S, &frames(client_text, &["a", "b", "c"])),
            ],
        );
        assert!(events[0].starts_with("http_abandoned gap: "), "{events:?}");
        assert!(
            events[0].contains("129 bytes lost") && events[0].contains("mid-stream"),
            "{events:?}"
        );
        for text in ["one", "two", "three", "four"] {
            assert!(
                events.contains(&format!("frame s2c {text}")),
                "{text}: {events:?}"
            );
        }
        // The client's frames, those held while the 101 was awaited first.
        for text in ["early", "a", "b", "c"] {
            assert!(
                events.contains(&format!("frame c2s {text}")),
                "{text}: {events:?}"
            );
        }
        assert_eq!(stats.http_given_up.get(GiveUp::Gap), 1);
        assert_eq!(stats.handshakes, 0);
    }

    #[test]
    fn a_huge_upgrade_head_is_reported_and_its_frames_found() {
        let mut request = UPGRADE[..UPGRADE.len() - 2].to_vec();
        request.extend_from_slice(b"X-Pad: ");
        request.extend(std::iter::repeat_n(b'a', MAX_HEAD_LEN));
        request.extend_from_slice(b"\r\n\r\n");
        let (events, stats) = run(
            false,
            &[
                Data(C2S, &request),
                Data(
                    S2C,
                    &[SWITCH, &frames(server_text, &["x", "y", "z"])].concat(),
                ),
            ],
        );
        assert!(
            events[0].starts_with("http_abandoned head_too_large: "),
            "{events:?}"
        );
        assert_eq!(count(&events, "frame s2c"), 3, "{events:?}");
        assert_eq!(stats.http_given_up.get(GiveUp::HeadTooLarge), 1);
        // The same without the upgrade header: a plain oversized request, counted only.
        let plain: Vec<u8> = [
            &b"GET / HTTP/1.1\r\nX-Pad: "[..],
            &vec![b'a'; MAX_HEAD_LEN],
            b"\r\nHost: a\r\n\r\n",
        ]
        .concat();
        let (events, stats) = run(false, &[Data(C2S, &plain)]);
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(stats.http_given_up.get(GiveUp::HeadTooLarge), 1);
        // ... unless the user said the port is WebSocket.
        let (events, _) = run(true, &[Data(C2S, &plain)]);
        assert_eq!(
            count(&events, "http_abandoned head_too_large"),
            1,
            "{events:?}"
        );
    }

    #[test]
    fn padding_before_the_upgrade_header_does_not_hide_it() {
        let mut request = b"GET /chat HTTP/1.1\r\nX-Pad: ".to_vec();
        request.extend(std::iter::repeat_n(b'a', MAX_HEAD_LEN + 5000));
        request.extend_from_slice(b"\r\n");
        request.extend_from_slice(&UPGRADE[b"GET /chat HTTP/1.1\r\n".len()..]);
        let mut steps: Vec<Step<'_>> = request.chunks(1448).map(|c| Data(C2S, c)).collect();
        steps.push(Data(S2C, SWITCH));
        let echoes = frames(server_text, &["p", "q"]);
        steps.push(Data(S2C, &echoes));
        let (events, stats) = run(false, &steps);
        assert!(
            events[0].starts_with("http_abandoned head_too_large: "),
            "{events:?}"
        );
        assert_eq!(count(&events, "frame s2c"), 2, "{events:?}");
        assert_eq!(stats.http_given_up.get(GiveUp::HeadTooLarge), 1);
        // Still inside the padding: nothing decided yet.
        let (events, stats) = run(false, &steps[..10]);
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(stats.http_given_up.total(), 0);
    }

    #[test]
    fn client_bytes_lost_while_the_101_is_awaited_are_a_frame_gap() {
        let (events, stats) = run(
            false,
            &[
                Data(C2S, UPGRADE),
                Data(C2S, &client_text("before")),
                Gap(C2S, 12),
                Data(C2S, &frames(client_text, &["after", "and"])),
                Data(S2C, SWITCH),
            ],
        );
        assert_eq!(events[0], "handshake /chat 101 accept=ok");
        assert_eq!(events[1], "frame c2s before");
        assert!(events[2].starts_with("tcp_gap 12 bytes"), "{events:?}");
        assert_eq!(&events[3..], ["frame c2s after", "frame c2s and"]);
        assert_eq!(stats.http_given_up.total(), 0);
    }

    #[test]
    fn a_refused_decoy_does_not_hide_the_upgrade_after_it() {
        let decoy = String::from_utf8_lossy(UPGRADE).replace("/chat", "/decoy");
        let (events, stats) = run(
            false,
            &[
                Data(C2S, decoy.as_bytes()),
                Data(
                    S2C,
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot here\n",
                ),
                Data(C2S, UPGRADE),
                Data(S2C, &[SWITCH, &server_text("real")].concat()),
                Data(C2S, &client_text("hidden?")),
            ],
        );
        assert_eq!(
            events,
            [
                "handshake /decoy 404 accept=missing",
                "handshake /chat 101 accept=ok",
                "frame s2c real",
                "frame c2s hidden?",
            ],
        );
        assert_eq!((stats.handshakes, stats.upgrades), (2, 1));
        assert_eq!(stats.http_given_up.total(), 0);
    }

    #[test]
    fn a_101_that_does_not_say_websocket_is_reported_and_followed() {
        let switch = String::from_utf8_lossy(SWITCH).replace("Upgrade: websocket\r\n", "");
        let echoes = frames(server_text, &["1", "2"]);
        let (events, stats) = run(
            false,
            &[
                Data(C2S, UPGRADE),
                Data(S2C, switch.as_bytes()),
                Data(S2C, &echoes),
            ],
        );
        assert_eq!(events[0], "handshake /chat 101 accept=ok");
        assert!(
            events[1].starts_with("http_abandoned other_protocol: "),
            "{events:?}"
        );
        assert_eq!(count(&events, "frame s2c"), 2, "{events:?}");
        assert_eq!(stats.http_given_up.get(GiveUp::OtherProtocol), 1);
        // An h2c upgrade answered with 101 is another protocol, and ordinary: counted only.
        let (events, stats) = run(
            false,
            &[
                Data(C2S, b"GET / HTTP/1.1\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\r\n"),
                Data(S2C, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n"),
                Data(C2S, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            ],
        );
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(stats.http_given_up.get(GiveUp::OtherProtocol), 1);
        assert_eq!(stats.http_given_up.reported, 0);
    }

    /// The one reason a run gave up for, and whether it was reported.
    fn given_up(stats: &WsStats) -> (Vec<&'static str>, u64) {
        let reasons = GiveUp::ALL
            .iter()
            .filter(|r| stats.http_given_up.get(**r) > 0)
            .map(|r| r.name())
            .collect();
        (reasons, stats.http_given_up.reported)
    }

    #[test]
    fn every_other_reason_is_counted_and_reported_as_the_rules_say() {
        let get = b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n";
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        let pipelined: Vec<u8> = get.repeat(MAX_PENDING_REQUESTS + 1);
        let early = client_text("x").repeat(MAX_HEAD_LEN / 7 + 1);
        let cases: [(&str, bool, Vec<Step<'_>>, &str, u64); 8] = [
            // Broken HTTP after a head: reported though no upgrade was asked for.
            (
                "not HTTP after a response",
                false,
                vec![Data(C2S, get), Data(S2C, ok), Data(S2C, b"\x00\x01garbage")],
                "not_http",
                1,
            ),
            (
                "a bad start line after a request",
                false,
                vec![Data(C2S, get), Data(C2S, b"GET /b HTTP/9\r\n\r\n")],
                "malformed_head",
                1,
            ),
            // wsnoop's limits on plain HTTP: counted only.
            (
                "too many pipelined requests",
                false,
                vec![Data(C2S, &pipelined)],
                "too_many_pipelined",
                0,
            ),
            (
                "a response to nothing captured",
                false,
                vec![Data(S2C, ok)],
                "response_without_request",
                0,
            ),
            (
                "a CONNECT tunnel",
                false,
                vec![
                    Data(C2S, b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"),
                    Data(C2S, b"\x16\x03\x01"),
                ],
                "other_protocol",
                0,
            ),
            // ... and reported with WebSocket intent.
            (
                "too many pipelined on a --ws-port",
                true,
                vec![Data(C2S, &pipelined)],
                "too_many_pipelined",
                1,
            ),
            (
                "over 64 KiB before the 101",
                false,
                vec![Data(C2S, UPGRADE), Data(C2S, &early)],
                "early_client_bytes",
                1,
            ),
            (
                "a lost first byte on a --ws-port",
                true,
                vec![Gap(C2S, 1)],
                "gap",
                1,
            ),
        ];
        for (what, ws_port, steps, reason, reported) in cases {
            let (events, stats) = run(ws_port, &steps);
            assert_eq!(
                given_up(&stats),
                (vec![reason], reported),
                "{what}: {events:?}"
            );
            let abandoned = count(&events, &format!("http_abandoned {reason}: "));
            assert_eq!(abandoned as u64, reported, "{what}: {events:?}");
        }
    }

    #[test]
    fn chunked_bodies_end_exactly() {
        let body = b"4\r\nWiki\r\n6;ext=1\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nX-Trailer: 1\r\n\r\nGET /next";
        let end = body.len() - b"GET /next".len();
        for piece in [1, 2, 3, 7, body.len()] {
            assert_eq!(skip_all(body, piece), (Ok(true), end), "pieces of {piece}");
        }
        assert_eq!(skip_all(b"zz\r\n", 4).0, Err(GiveUp::BadChunkedBody));
        assert_eq!(skip_all(b"4\r\nabcdXY", 64).0, Err(GiveUp::BadChunkedBody));
        assert_eq!(
            skip_all(b"ffffffffffffffffff\r\n", 64).0,
            Err(GiveUp::BadChunkedBody)
        );
    }
}
