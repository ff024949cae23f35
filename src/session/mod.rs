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

use crate::context::GiveUp;
use crate::http::exchange::Upgrade;

use crate::anomaly::AnomalyKind;
use crate::context::Context;
use crate::event::{
    Direction, EndReason, Event, FlowCounters, FlowEvent, FlowMeta, PerDir, Timestamp,
};
use crate::http::exchange::{
    HttpOutcome, HttpSide, HttpState, after_head, count_give_up, upgrade_memory,
};
use crate::wire::http::{ResponseText, UpgradeRequest};
use crate::ws::resync::{Probe, ProbeVerdict};
use crate::ws::{Scratch, WsSession};

#[derive(Debug)]
enum Mode {
    Http(Box<HttpState>),
    WebSocket(Box<WsSession>),
    /// No handshake seen and nobody said what this is: frames are looked for.
    Probe(Box<Probe>),
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
    /// What `handshake` costs ([`upgrade_memory`]), measured when it is kept or cut rather
    /// than at every packet.
    handshake_memory: usize,
    /// The connection is to be summarised when it ends (a handshake was tried, or frames
    /// were found without one).
    summarise: bool,
    /// The user said the server's port is WebSocket (`--ws-port`), though it speaks HTTP first.
    ws_port: bool,
    /// Per direction: picked up after the HTTP layer gave up, and
    /// no byte yet that is not a head: a complete head at the start of a segment is skipped,
    /// so the frames right behind it in the same segment are found.
    skip_heads: PerDir<bool>,
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
                SessionStart::WebSocket => Mode::WebSocket(Box::new(WsSession::midstream())),
                SessionStart::Probe => Mode::Probe(Box::default()),
            },
            fresh: false,
            handshake: None,
            handshake_memory: 0,
            ws_port: false,
            skip_heads: PerDir::new(false, false),
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
        let Mode::Probe(probe) = &mut self.mode else {
            return None;
        };
        match probe.push(from_a, bytes) {
            ProbeVerdict::Undecided => None,
            ProbeVerdict::NotWebSocket => {
                self.mode = Mode::Ignored;
                None
            }
            ProbeVerdict::WebSocket { a_is_client } => Some(a_is_client),
        }
    }

    /// After a probe succeeded: decodes what it held, as a mid-stream WebSocket connection.
    pub fn replay_probe(
        &mut self,
        client_is_a: bool,
        scratch: &mut Scratch,
        ctx: &mut Context<'_>,
    ) {
        let Mode::Probe(probe) = std::mem::replace(&mut self.mode, Mode::Ignored) else {
            return;
        };
        self.mode = Mode::WebSocket(Box::new(WsSession::midstream()));
        self.summarise = true;
        let [a_to_b, b_to_a] = probe.into_sides();
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
            handshake_memory: 0,
            summarise: false,
            ws_port: false,
            skip_heads: PerDir::new(false, false),
            picked_up: false,
            // Nothing is allocated until the first byte: most connections of a SYN flood or a
            // port scan never carry one.
            mode: Mode::Fresh,
        }
    }

    /// What the session keeps on the heap, for the memory budget: its mode's box and what
    /// that holds, and the handshake kept for the connection's summary.
    pub fn memory(&self) -> usize {
        use std::mem::size_of;
        let mode = match &self.mode {
            Mode::Http(http) => size_of::<HttpState>() + http.memory(),
            Mode::WebSocket(ws) => size_of::<WsSession>() + ws.memory(),
            Mode::Probe(probe) => size_of::<Probe>() + probe.memory(),
            Mode::Fresh | Mode::Ignored => 0,
        };
        mode + self.handshake_memory
    }

    /// A probing session gives up its bytes to stay within the memory budget: it stops
    /// probing (the connection is not decoded). Returns the bytes it held.
    pub fn shed_probe(&mut self) -> u64 {
        let Mode::Probe(probe) = &self.mode else {
            return 0;
        };
        let held = probe.held() as u64;
        self.mode = Mode::Ignored;
        held
    }

    /// Gives up what can be given up to stay within the memory budget, each loss reported: a
    /// WebSocket session's bytes held while looking for frames and its inflaters' contexts,
    /// and the kept handshake's URI beyond [`SHED_URI`] bytes (the summary says it was cut).
    /// Returns the data bytes given up and the inflaters dropped.
    pub fn shed(&mut self, ctx: &mut Context<'_>) -> (u64, u64) {
        let (mut bytes, inflaters) = match &mut self.mode {
            Mode::WebSocket(ws) => ws.shed(ctx),
            _ => (0, 0),
        };
        if let Some(handshake) = &mut self.handshake {
            bytes += cut_handshake(handshake);
            self.handshake_memory = upgrade_memory(handshake);
        }
        (bytes, inflaters)
    }

    fn keep_handshake(&mut self, handshake: Box<Upgrade>) {
        self.handshake_memory = upgrade_memory(&handshake);
        self.handshake = Some(handshake);
    }

    /// Starts bringing the decoder's state into the cache (see [`crate::ffi::prefetch`]).
    #[inline]
    pub fn prefetch(&self) {
        match &self.mode {
            Mode::Http(http) => crate::ffi::prefetch(&**http),
            Mode::WebSocket(ws) => crate::ffi::prefetch(&**ws),
            Mode::Probe(probe) => crate::ffi::prefetch(&**probe),
            Mode::Fresh | Mode::Ignored => {}
        }
    }

    pub fn is_ignored(&self) -> bool {
        matches!(self.mode, Mode::Ignored)
    }

    /// Looking for frames in a connection whose handshake was not captured.
    pub fn is_probing(&self) -> bool {
        matches!(self.mode, Mode::Probe(_))
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
        let mut ctx = ctx.with_flow(&flow);
        count_give_up(reason, dir, extra, true, spoke_http, &mut ctx);
        self.mode = Mode::WebSocket(Box::new(WsSession::midstream()));
        self.summarise = true;
        self.picked_up = true;
        self.skip_heads = PerDir::new(true, true);
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
            // A 101 seen first, then lost bytes: its request (or frames after it) went
            // missing, so the connection is followed without one.
            Mode::Http(http) if http.early_response.is_some() => {
                if let Some(early) = http.early_response.take()
                    && let HttpOutcome::Upgraded {
                        upgrade,
                        server_rest,
                    } = early.without_request()
                {
                    self.upgraded(upgrade, &server_rest, scratch, ctx);
                    self.gap(dir, lost, scratch, ctx);
                }
            }
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
        // A 101 seen first whose request never came: its frames are still decoded.
        if let Mode::Http(http) = &mut self.mode
            && let Some(early) = http.early_response.take()
            && let HttpOutcome::Upgraded {
                upgrade,
                server_rest,
            } = early.without_request()
        {
            let mut scratch = Scratch::default();
            self.upgraded(upgrade, &server_rest, &mut scratch, ctx);
        }
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
                    .find_map(|p| p.upgrade.as_ref().map(|(request, _)| request.uri())),
            ),
            _ => (&no_counters, None),
        };
        // The handshake is needed no more once the summary is made: a connection that lingers
        // in the flow table after its FIN must not keep its request (up to 64 KiB of URI).
        let handshake = self.handshake.take();
        self.handshake_memory = 0;
        if !(self.summarise || unanswered.is_some()) {
            return;
        }
        self.summarise = false;
        let handshake = handshake.as_deref();
        let uri = handshake
            .map(|h| h.request.uri())
            .filter(|u| !u.is_empty())
            .or(unanswered);
        ctx.sink.event(&Event::Flow(FlowEvent {
            ts: ctx.ts,
            flow: ctx.flow,
            start,
            uri,
            protocol: handshake.and_then(|h| h.response.protocol()),
            extensions: handshake.map_or(&[], |h| &h.response.extensions[..]),
            status: handshake.map(|h| h.response.status),
            counters,
            ping_rtt: counters.ping_rtt(),
            bytes_cut: ctx.bytes_cut,
            traffic: ctx.traffic,
            end: how,
            tls: ctx.tls,
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
                request_head: Default::default(),
                response_head: Default::default(),
                pending: VecDeque::new(),
                early_client_bytes: Vec::new(),
                early_gap: None,
                awaiting_upgrade: false,
                intent: false,
                heads: 0,
                refused: None,
                early_response: None,
            }));
        }
        match &mut self.mode {
            Mode::WebSocket(ws) => {
                let skip = &mut self.skip_heads[dir];
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
                    self.keep_handshake(refused);
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
                    } => self.upgraded(upgrade, &server_rest, scratch, ctx),
                }
            }
        }
    }

    fn upgraded(
        &mut self,
        upgrade: Box<Upgrade>,
        server_rest: &[u8],
        scratch: &mut Scratch,
        ctx: &mut Context<'_>,
    ) {
        let Mode::Http(http) = std::mem::replace(&mut self.mode, Mode::Ignored) else {
            return;
        };
        self.mode = Mode::WebSocket(Box::new(WsSession::new(upgrade.negotiated)));
        self.keep_handshake(upgrade);
        self.summarise = true;
        // Frames the server sent in the 101's own segment, then anything the client sent
        // before it saw the 101.
        self.data(Direction::ServerToClient, server_rest, scratch, ctx);
        self.replay_early(&http, scratch, ctx);
    }
}

/// The bytes of a kept handshake's URI left when the memory budget cuts it.
pub const SHED_URI: usize = 256;

/// Cuts a kept handshake to what the connection's summary shows: the URI to [`SHED_URI`] bytes
/// (on a character boundary, saying so), the request's other headers dropped (its handshake
/// event has shown them). Returns the URI bytes cut.
fn cut_handshake(handshake: &mut Upgrade) -> u64 {
    let request = &mut handshake.request;
    let uri = request.uri();
    let cut_from = uri.len();
    // A URI cut once stays: its note makes it a little longer than it was cut to.
    let mut keep = if cut_from > SHED_URI + 64 {
        SHED_URI
    } else {
        cut_from
    };
    while !uri.is_char_boundary(keep) {
        keep -= 1;
    }
    let cut = cut_from - keep;
    let cut_uri;
    let uri = if cut > 0 {
        cut_uri = format!(
            "{} ... (cut to stay within --max-memory, {cut_from} bytes)",
            &uri[..keep]
        );
        &cut_uri
    } else {
        uri
    };
    *request = UpgradeRequest::with_text([
        Some(request.method()),
        Some(uri),
        None,
        None,
        None,
        None,
        None,
    ]);
    handshake.response.retain_text(&[ResponseText::Protocol]);
    handshake.response.malformed = None;
    cut as u64
}

#[cfg(test)]
mod tests;
