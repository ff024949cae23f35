//! WebSocket semantics on top of the frame parser (RFC 6455, RFC 7692): per direction, what to
//! keep of each frame, messages reassembled from fragments and inflated, UTF-8 checked as it
//! streams, the close handshake, and every rule a frame breaks.

pub mod frame;

use std::borrow::Cow;

use flate2::{Decompress, FlushDecompress, Status};

pub use crate::context::{Context, WsOptions, WsStats};
pub use crate::event::FlowCounters;

use crate::anomaly::{AnomalyKind, Cause, close_code_is_valid};
use crate::event::{
    CloseEvent, CloseInfo, Direction, EndReason, Event, FrameEvent, MessageEvent, Payload,
    Timestamp,
};
use crate::frame::{
    ChainRule, ChainScan, FrameDecoder, FrameHeader, FrameVisitor, Opcode, Plausible, scan_chain,
};

/// RFC 6455 5.5: control frame payloads are at most 125 bytes; that much is always kept so a
/// close code and reason survive even `--max-payload 0`.
const CONTROL_PAYLOAD_MAX: usize = 125;

/// Bytes held while looking for the next frame after a gap or on a connection picked up
/// mid-stream.
const RESYNC_BUFFER: usize = 64 * 1024;

/// The evidence that frames resume at a segment start after a gap: two frames back to back,
/// or one that ends exactly where the captured bytes do.
const RESYNC_CHAIN: ChainRule = ChainRule {
    min_frames: 2,
    min_frames_at_end: 1,
};

/// The evidence needed at an arbitrary offset, once no segment start worked.
const RESYNC_CHAIN_ANYWHERE: ChainRule = ChainRule {
    min_frames: 3,
    min_frames_at_end: 2,
};

/// The tail RFC 7692 7.2.2 strips from every compressed message; inflating needs it back.
const DEFLATE_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// permessage-deflate parameters from the 101 response (RFC 7692 7.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeflateParams {
    pub client_no_context_takeover: bool,
    pub server_no_context_takeover: bool,
    pub client_max_window_bits: Option<u8>,
    pub server_max_window_bits: Option<u8>,
}

/// What the extensions negotiated in the 101 response change about framing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Negotiated {
    pub deflate: Option<DeflateParams>,
}

impl Negotiated {
    /// Reads the server's Sec-WebSocket-Extensions values.
    pub fn from_server_extensions(extensions: &[String]) -> Negotiated {
        let mut negotiated = Negotiated::default();
        for ext in extensions {
            let mut parts = ext.split(';').map(str::trim);
            if !parts
                .next()
                .is_some_and(|n| n.eq_ignore_ascii_case("permessage-deflate"))
            {
                continue;
            }
            let mut params = DeflateParams::default();
            for param in parts {
                let (name, value) = match param.split_once('=') {
                    Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
                    None => (param, None),
                };
                let bits = value.and_then(|v| v.parse::<u8>().ok());
                match name.to_ascii_lowercase().as_str() {
                    "client_no_context_takeover" => params.client_no_context_takeover = true,
                    "server_no_context_takeover" => params.server_no_context_takeover = true,
                    "client_max_window_bits" => params.client_max_window_bits = bits,
                    "server_max_window_bits" => params.server_max_window_bits = bits,
                    _ => {}
                }
            }
            negotiated.deflate = Some(params);
            break;
        }
        negotiated
    }
}

/// Buffers shared by every connection, so decoding allocates nothing once they have grown.
pub struct Scratch {
    pub unmask: Vec<u8>,
    inflate: Box<[u8]>,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch {
            unmask: Vec::new(),
            inflate: vec![0; 64 * 1024].into_boxed_slice(),
        }
    }
}

/// Checks UTF-8 across chunk borders without buffering more than one character.
#[derive(Debug, Default, Clone, Copy)]
struct Utf8Check {
    partial: [u8; 4],
    partial_len: usize,
    invalid: bool,
}

fn utf8_width(lead: u8) -> usize {
    match lead {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 1,
    }
}

impl Utf8Check {
    fn feed(&mut self, mut bytes: &[u8]) {
        if self.invalid {
            return;
        }
        if self.partial_len > 0 {
            let width = utf8_width(self.partial[0]);
            let take = (width - self.partial_len).min(bytes.len());
            self.partial[self.partial_len..self.partial_len + take].copy_from_slice(&bytes[..take]);
            self.partial_len += take;
            bytes = &bytes[take..];
            if self.partial_len < width {
                return;
            }
            if std::str::from_utf8(&self.partial[..width]).is_err() {
                self.invalid = true;
                return;
            }
            self.partial_len = 0;
        }
        if let Err(e) = simdutf8::compat::from_utf8(bytes) {
            if e.error_len().is_some() {
                self.invalid = true;
            } else {
                let rest = &bytes[e.valid_up_to()..];
                self.partial[..rest.len()].copy_from_slice(rest);
                self.partial_len = rest.len();
            }
        }
    }

    fn is_valid_so_far(&self) -> bool {
        !self.invalid
    }

    fn is_complete_and_valid(&self) -> bool {
        !self.invalid && self.partial_len == 0
    }
}

/// Bytes whose framing is unknown, with the offsets where TCP segments began in them.
#[derive(Debug, Default)]
pub struct FrameHunt {
    buf: Vec<u8>,
    starts: Vec<usize>,
}

impl FrameHunt {
    /// Segment starts remembered; later ones are still scanned, just not first.
    const MAX_STARTS: usize = 256;

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Appends one TCP segment's bytes.
    pub fn push(&mut self, segment: &[u8]) {
        if self.starts.len() < Self::MAX_STARTS {
            self.starts.push(self.buf.len());
        }
        self.buf.extend_from_slice(segment);
    }

    /// Looks for frames at segment starts.
    pub fn scan(&self, rule: &Plausible, chain: &ChainRule) -> ChainScan {
        scan_chain(&self.buf, self.starts.iter().copied(), rule, chain)
    }

    /// Looks for frames at every offset.
    pub fn scan_everywhere(&self, rule: &Plausible, chain: &ChainRule) -> ChainScan {
        scan_chain(&self.buf, 0..self.buf.len(), rule, chain)
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// The bytes as the segments they arrived in.
    pub fn segments(&self) -> impl Iterator<Item = &[u8]> {
        let ends = self.starts.iter().skip(1).copied().chain([self.buf.len()]);
        self.starts
            .iter()
            .zip(ends)
            .map(|(&start, end)| &self.buf[start..end])
    }

    /// Keeps only the last bytes, which may hold the start of a header.
    fn keep_tail(&mut self, keep: usize) {
        let cut = self.buf.len().saturating_sub(keep);
        self.buf.drain(..cut);
        self.starts.clear();
    }
}

/// Looking for where frames resume in one direction.
#[derive(Debug, Default)]
struct Resync {
    hunt: FrameHunt,
}

impl Resync {
    /// Adds one segment's bytes; once frames are found, returns all bytes from the first frame.
    fn push(&mut self, mut input: &[u8], rule: &Plausible) -> Option<Vec<u8>> {
        while !input.is_empty() {
            let room = RESYNC_BUFFER.saturating_sub(self.hunt.len()).max(1);
            let (now, later) = input.split_at(room.min(input.len()));
            input = later;
            self.hunt.push(now);
            let full = self.hunt.len() >= RESYNC_BUFFER;
            let start = match self.hunt.scan(rule, &RESYNC_CHAIN) {
                ChainScan::Found(offset) => Some(offset),
                // A frame too long to confirm within the buffer: believe its header.
                ChainScan::Undecided(offset) if full => Some(offset),
                ChainScan::None if full => {
                    match self.hunt.scan_everywhere(rule, &RESYNC_CHAIN_ANYWHERE) {
                        ChainScan::Found(offset) => Some(offset),
                        _ => {
                            // Nothing here starts a frame; keep what may hold a header's start.
                            self.hunt.keep_tail(13);
                            None
                        }
                    }
                }
                _ => None,
            };
            if let Some(start) = start {
                let mut bytes = std::mem::take(&mut self.hunt).into_bytes();
                bytes.drain(..start);
                bytes.extend_from_slice(input);
                return Some(bytes);
            }
        }
        None
    }
}

#[derive(Debug)]
struct Inflater {
    /// Made at the direction's first compressed message, so connections that negotiate
    /// permessage-deflate but never use it cost nothing.
    z: Option<Decompress>,
    /// The sender's LZ77 window (max_window_bits), which bounds the decompressor's memory.
    window_bits: u8,
    /// The sender resets its compressor after each message (no_context_takeover).
    reset_each_message: bool,
    /// Earlier output was lost, so later messages that refer back to it cannot be inflated.
    context_lost: bool,
    /// The loss was reported (once per direction).
    loss_reported: bool,
    /// The sender ended the deflate stream with a final block; the next message starts anew.
    stream_ended: bool,
}

#[derive(Debug, Default)]
struct Message {
    text: bool,
    compressed: bool,
    /// One uncompressed frame: its kept payload is the message's, so it is not copied twice.
    single_frame: bool,
    undecodable: bool,
    /// Inflating stopped (a bomb or an error): the rest of the message is counted, not decoded.
    inflate_stopped: bool,
    frames: u64,
    wire_len: u64,
    len: u64,
    too_large: bool,
    utf8: Utf8Check,
}

/// One direction of an upgraded connection.
#[derive(Debug)]
struct DirState {
    dir: Direction,
    deflate: Option<Inflater>,
    /// Framing is unknown (after a gap, or mid-stream): bytes wait here until a chain of
    /// plausible frames shows where frames start.
    resync: Option<Resync>,
    /// Framing resumed after lost bytes: continuations of a message not seen may follow.
    orphans_expected: bool,
    close_sent: bool,
    frame_kept: Vec<u8>,
    keep_limit: usize,
    /// The frame's real last up-to-3 payload bytes, wherever they were in the frame.
    tail: [u8; 3],
    tail_len: usize,
    /// Bytes of a UTF-8 character that began at the end of the previous frame of this message.
    carry: [u8; 3],
    carry_len: usize,
    /// Reused to join `carry` to a frame's bytes for display.
    display: Vec<u8>,
    message: Option<Message>,
    message_kept: Vec<u8>,
}

impl DirState {
    fn new(dir: Direction, negotiated: Negotiated) -> DirState {
        let deflate = negotiated.deflate.map(|p| Inflater {
            z: None,
            window_bits: match dir {
                Direction::ClientToServer => p.client_max_window_bits,
                Direction::ServerToClient => p.server_max_window_bits,
            }
            .unwrap_or(15)
            .clamp(9, 15),
            reset_each_message: match dir {
                Direction::ClientToServer => p.client_no_context_takeover,
                Direction::ServerToClient => p.server_no_context_takeover,
            },
            context_lost: false,
            loss_reported: false,
            stream_ended: false,
        });
        DirState {
            dir,
            deflate,
            resync: None,
            orphans_expected: false,
            close_sent: false,
            frame_kept: Vec::new(),
            keep_limit: 0,
            tail: [0; 3],
            tail_len: 0,
            carry: [0; 3],
            carry_len: 0,
            display: Vec::new(),
            message: None,
            message_kept: Vec::new(),
        }
    }
}

/// The close frames seen on a connection.
#[derive(Debug, Default)]
struct CloseTrack {
    first: Option<(Direction, Option<u16>, String)>,
    /// When the first close frame was captured.
    first_ts: Timestamp,
    reply: Option<Option<u16>>,
}

/// An upgraded connection: both directions and their shared close handshake.
#[derive(Debug)]
pub struct WsConnection {
    decoders: [FrameDecoder; 2],
    dirs: [DirState; 2],
    close: CloseTrack,
    counters: FlowCounters,
}

impl WsConnection {
    pub fn new(negotiated: Negotiated) -> WsConnection {
        WsConnection {
            decoders: [FrameDecoder::new(), FrameDecoder::new()],
            dirs: [
                DirState::new(Direction::ClientToServer, negotiated),
                DirState::new(Direction::ServerToClient, negotiated),
            ],
            close: CloseTrack::default(),
            counters: FlowCounters::default(),
        }
    }

    pub fn counters(&self) -> &FlowCounters {
        &self.counters
    }

    /// The upgrade happened at `ts`: silence is counted from here.
    pub fn started_at(&mut self, ts: Timestamp) {
        self.counters.activity(ts);
    }

    /// A connection whose handshake was not seen: framing, extensions and the deflate
    /// context are unknown, so both directions start by looking for frames.
    pub fn midstream() -> WsConnection {
        let mut ws = WsConnection::new(Negotiated {
            deflate: Some(DeflateParams::default()),
        });
        for state in &mut ws.dirs {
            state.resync = Some(Resync::default());
            state.orphans_expected = true;
            if let Some(inflater) = &mut state.deflate {
                // Earlier messages may have filled the window; inflating later ones would
                // invent text, so compressed messages are reported undecodable.
                inflater.context_lost = true;
            }
        }
        ws
    }

    pub fn feed(
        &mut self,
        dir: Direction,
        input: &[u8],
        scratch: &mut Scratch,
        ctx: &mut Context<'_>,
    ) {
        let i = dir.index();
        let state = &mut self.dirs[i];
        let resumed;
        let input = match &mut state.resync {
            None => input,
            Some(resync) => {
                let rule = Plausible {
                    masked: Some(dir == Direction::ClientToServer),
                    rsv1_allowed: state.deflate.is_some(),
                    max_len: ctx.options.max_message.max(1 << 24),
                };
                let Some(bytes) = resync.push(input, &rule) else {
                    return;
                };
                state.resync = None;
                resumed = bytes;
                &resumed[..]
            }
        };
        let mut visitor = Visitor {
            state: &mut self.dirs[i],
            close: &mut self.close,
            counters: &mut self.counters,
            inflate_buf: &mut scratch.inflate,
            ctx,
        };
        self.decoders[i].feed(input, &mut scratch.unmask, &mut visitor);
    }

    /// Bytes of `dir` were never captured: what was in progress is reported incomplete and
    /// the direction looks for the next frame in what follows.
    /// Bytes the snapshot length cut (`ctx.cause` says so) are reported by whoever knows the
    /// snapshot length; they are handled the same way.
    pub fn gap(&mut self, dir: Direction, lost: u64, ctx: &mut Context<'_>) {
        let i = dir.index();
        if ctx.cause != Cause::Snaplen {
            ctx.anomaly(
                Some(dir),
                AnomalyKind::TcpGap,
                &format!(
                    "{lost} bytes of the {} stream were not captured",
                    dir.name()
                ),
            );
        }
        if self.dirs[i].resync.is_some() {
            self.dirs[i].resync = Some(Resync::default());
            self.dirs[i].orphans_expected = true;
            return;
        }
        self.decoders[i].reset();
        let mut visitor = Visitor {
            state: &mut self.dirs[i],
            close: &mut self.close,
            counters: &mut self.counters,
            inflate_buf: &mut [],
            ctx,
        };
        visitor.abandon_message();
        visitor.lose_context(if visitor.ctx.cause == Cause::Snaplen {
            "the snapshot length cut bytes of a compressed stream"
        } else {
            "bytes of a compressed stream were lost"
        });
        self.dirs[i].resync = Some(Resync::default());
        self.dirs[i].orphans_expected = true;
    }

    /// The connection ended: report what was left unfinished and the close handshake.
    pub fn end_report(&mut self, how: EndReason, ctx: &mut Context<'_>) {
        self.counters.end_at(ctx.ts);
        // A capture that stops inside a frame did not see its end; a peer that closes inside
        // one did not send it.
        let (cause, ended) = if how == EndReason::CaptureEnd {
            (Cause::Gap, "the capture ended")
        } else {
            (ctx.cause, "the connection ended")
        };
        for (decoder, state) in self.decoders.iter().zip(&self.dirs) {
            if state.resync.is_some() {
                continue;
            }
            if let Some((header, remaining)) = decoder.current_frame() {
                let detail = format!(
                    "{ended} {remaining} bytes before the end of a {} frame",
                    header.opcode.name()
                );
                ctx.anomaly_caused(
                    Some(state.dir),
                    AnomalyKind::IncompleteFrame,
                    cause,
                    &detail,
                );
            } else if !decoder.at_frame_boundary() {
                ctx.anomaly_caused(
                    Some(state.dir),
                    AnomalyKind::IncompleteFrame,
                    cause,
                    &format!("{ended} inside a frame header"),
                );
            } else if state.message.is_some() {
                ctx.anomaly_caused(
                    Some(state.dir),
                    AnomalyKind::IncompleteFrame,
                    cause,
                    &format!("{ended} inside a fragmented message"),
                );
            }
        }
        let first = self.close.first.as_ref();
        let replied = self.close.reply.is_some();
        ctx.sink.event(&Event::Close(CloseEvent {
            ts: ctx.ts,
            flow: ctx.flow,
            initiator: first.map(|f| f.0),
            code: first.and_then(|f| f.1),
            reason: first.map(|f| f.2.as_str()),
            reply_code: self.close.reply.flatten(),
            replied,
            clean: first.is_some() && replied && how == EndReason::Fin,
            end: how,
        }));
    }
}

struct Visitor<'s, 'c, 'a> {
    state: &'s mut DirState,
    close: &'s mut CloseTrack,
    counters: &'s mut FlowCounters,
    inflate_buf: &'s mut [u8],
    ctx: &'c mut Context<'a>,
}

impl Visitor<'_, '_, '_> {
    fn anomaly(&mut self, kind: AnomalyKind, detail: &str) {
        self.ctx.anomaly(Some(self.state.dir), kind, detail);
    }

    fn check_header(&mut self, h: &FrameHeader) {
        let dir = self.state.dir;
        let deflate = self.state.deflate.is_some();
        match (dir, h.mask.is_some()) {
            (Direction::ClientToServer, false) => self.anomaly(
                AnomalyKind::UnmaskedClientFrame,
                "a client frame without a mask",
            ),
            (Direction::ServerToClient, true) => {
                self.anomaly(AnomalyKind::MaskedServerFrame, "a server frame with a mask")
            }
            _ => {}
        }
        if let Opcode::Reserved(n) = h.opcode {
            self.anomaly(AnomalyKind::ReservedOpcode, &format!("opcode 0x{n:x}"));
        }
        let allowed_rsv = if deflate { 4 } else { 0 };
        if h.rsv & !allowed_rsv != 0 {
            self.anomaly(
                AnomalyKind::RsvBitsWithoutExtension,
                &format!("rsv={} with no extension defining those bits", h.rsv),
            );
        }
        if deflate && h.rsv & 4 != 0 && (h.opcode == Opcode::Continuation || h.opcode.is_control())
        {
            self.anomaly(
                AnomalyKind::Rsv1OnContinuationOrControl,
                &format!("RSV1 set on a {} frame", h.opcode.name()),
            );
        }
        if h.opcode.is_control() {
            if !h.fin {
                self.anomaly(
                    AnomalyKind::ControlFrameFragmented,
                    &format!("a {} frame without FIN", h.opcode.name()),
                );
            }
            if h.len > CONTROL_PAYLOAD_MAX as u64 {
                self.anomaly(
                    AnomalyKind::ControlFrameTooLong,
                    &format!("a {} frame of {} bytes", h.opcode.name(), h.len),
                );
            }
        }
        if !h.minimal_length {
            self.anomaly(
                AnomalyKind::NonMinimalLength,
                &format!("length {} encoded in {} bytes", h.len, h.header_len),
            );
        }
        if h.length_msb_set {
            self.anomaly(
                AnomalyKind::LengthMsbSet,
                "a 64-bit length with its most significant bit set",
            );
        }
        if self.state.close_sent {
            self.anomaly(
                AnomalyKind::FrameAfterClose,
                &format!("a {} frame after this side's close frame", h.opcode.name()),
            );
        }
    }

    fn start_message(&mut self, h: &FrameHeader) {
        match (h.opcode, self.state.message.is_some()) {
            (Opcode::Text | Opcode::Binary, true) => {
                self.anomaly(
                    AnomalyKind::DataFrameInsideFragmentedMessage,
                    &format!(
                        "a {} frame before the previous message's final fragment",
                        h.opcode.name()
                    ),
                );
            }
            // After lost bytes (or mid-stream) the message a continuation belongs to may have
            // begun where the capture could not see it: that is no violation.
            (Opcode::Continuation, false) if self.state.orphans_expected => {
                self.state.orphans_expected = !h.fin;
            }
            (Opcode::Continuation, false) => {
                self.anomaly(
                    AnomalyKind::ContinuationWithoutStart,
                    "a continuation frame with no message to continue",
                );
            }
            _ => {}
        }
        if let Opcode::Text | Opcode::Binary = h.opcode {
            self.state.orphans_expected = false;
            let compressed = self.state.deflate.is_some() && h.rsv & 4 != 0;
            let undecodable =
                compressed && self.state.deflate.as_ref().is_some_and(|d| d.context_lost);
            self.state.message = Some(Message {
                text: h.opcode == Opcode::Text,
                compressed,
                undecodable,
                single_frame: h.fin && !compressed,
                ..Message::default()
            });
            self.state.message_kept.clear();
            self.state.carry_len = 0;
        }
    }

    /// Decoded message bytes, in order.
    fn message_bytes(message: &mut Message, kept: &mut Vec<u8>, bytes: &[u8], options: &WsOptions) {
        message.len += bytes.len() as u64;
        if !message.single_frame {
            let room = options.max_payload.saturating_sub(kept.len());
            kept.extend_from_slice(&bytes[..room.min(bytes.len())]);
        }
        if message.text {
            message.utf8.feed(bytes);
        }
    }

    fn message_payload(&mut self, payload: &[u8]) {
        let options = self.ctx.options;
        let DirState {
            message: Some(message),
            message_kept,
            deflate,
            ..
        } = &mut *self.state
        else {
            return;
        };
        message.wire_len += payload.len() as u64;
        if !message.compressed {
            Self::message_bytes(message, message_kept, payload, options);
        } else if !message.undecodable
            && !message.inflate_stopped
            && let Some(inflater) = deflate
        {
            let failure = inflate(inflater, payload, self.inflate_buf, |out| {
                Self::message_bytes(message, message_kept, out, options);
                message.len <= options.max_message
            });
            self.after_inflate(failure);
        }
        self.check_too_large();
    }

    fn check_too_large(&mut self) {
        let max = self.ctx.options.max_message;
        let Some(message) = &mut self.state.message else {
            return;
        };
        if message.too_large || message.len <= max {
            return;
        }
        message.too_large = true;
        let compressed = message.compressed;
        let detail = format!("a message grew past --max-message ({max} bytes)");
        if compressed {
            // Stop inflating: memory and time must not follow the sender's compression ratio.
            message.inflate_stopped = true;
            self.lose_context("inflating stopped at --max-message");
        }
        self.anomaly(AnomalyKind::MessageTooLarge, &detail);
    }

    fn after_inflate(&mut self, failure: Option<String>) {
        if let Some(error) = failure {
            if let Some(message) = &mut self.state.message {
                message.undecodable = true;
                message.inflate_stopped = true;
            }
            self.anomaly(AnomalyKind::DecompressionFailed, &error);
            self.lose_context("a message failed to inflate");
        }
    }

    /// The inflater skipped part of the stream: with context takeover, later messages would
    /// inflate to garbage, so they are marked undecodable. Said once per direction.
    fn lose_context(&mut self, why: &str) {
        let Some(inflater) = &mut self.state.deflate else {
            return;
        };
        if inflater.reset_each_message || inflater.loss_reported {
            return;
        }
        inflater.context_lost = true;
        inflater.loss_reported = true;
        self.anomaly(
            AnomalyKind::DeflateContextLost,
            &format!("{why}; later compressed messages in this direction cannot be decoded"),
        );
    }

    /// A message cut by lost bytes is reported as far as it got, never joined to later data.
    fn abandon_message(&mut self) {
        let compressed = self.state.message.as_ref().is_some_and(|m| m.compressed);
        if self.state.message.is_some() {
            self.emit_message(true);
        }
        self.state.carry_len = 0;
        // Inflating stopped inside the message. A sender without context takeover starts the
        // next one afresh, and so must the inflater; with takeover the context is lost anyway.
        if compressed
            && let Some(inflater) = &mut self.state.deflate
            && inflater.reset_each_message
        {
            if let Some(z) = &mut inflater.z {
                z.reset(false);
            }
            inflater.stream_ended = false;
        }
    }

    fn finish_message(&mut self) {
        // RFC 7692 7.2.2: the sender removed the final empty block's 4 bytes; put them back.
        // A compressed message with no payload at all is empty: its sender's previous flush
        // already ended on a block boundary, and the tail appended to nothing would open a
        // stored block that swallows the next message.
        let compressed_ok = self.state.message.as_ref().is_some_and(|m| {
            m.compressed && !m.undecodable && !m.inflate_stopped && m.wire_len > 0
        });
        if compressed_ok {
            self.message_payload_tail();
        }
        if let Some(inflater) = &mut self.state.deflate
            && self.state.message.as_ref().is_some_and(|m| m.compressed)
            && (inflater.reset_each_message || inflater.stream_ended)
        {
            if let Some(z) = &mut inflater.z {
                z.reset(false);
            }
            inflater.stream_ended = false;
        }
        self.emit_message(false);
    }

    fn emit_message(&mut self, incomplete: bool) {
        let Some(message) = self.state.message.take() else {
            return;
        };
        self.ctx.stats.messages += 1;
        self.counters.messages[self.state.dir.index()] += 1;
        // A message cut short (a gap, or inflating stopped at --max-message) may end inside a
        // character: only what arrived is judged.
        let cut = incomplete || message.inflate_stopped;
        let valid_text = if cut {
            message.utf8.is_valid_so_far()
        } else {
            message.utf8.is_complete_and_valid()
        };
        if message.text && !message.undecodable && !valid_text {
            // Judged on bytes that were captured, even when a gap ends the message.
            self.ctx.anomaly_caused(
                Some(self.state.dir),
                AnomalyKind::InvalidUtf8,
                Cause::Traffic,
                "a text message that is not valid UTF-8",
            );
        }
        if !self.ctx.options.show_messages {
            return;
        }
        let kept = if message.single_frame {
            let s = &self.state;
            &s.frame_kept[..s.frame_kept.len().min(self.ctx.options.max_payload)]
        } else {
            &self.state.message_kept[..]
        };
        let payload = if message.undecodable {
            Payload::Data(&[])
        } else if message.text && valid_text {
            match simdutf8::compat::from_utf8(kept) {
                Ok(text) => Payload::Text(text),
                Err(e) => {
                    Payload::Text(std::str::from_utf8(&kept[..e.valid_up_to()]).unwrap_or_default())
                }
            }
        } else {
            Payload::Data(kept)
        };
        let truncated = message.len > kept.len() as u64 || message.inflate_stopped;
        self.ctx.sink.event(&Event::Message(MessageEvent {
            ts: self.ctx.ts,
            flow: self.ctx.flow,
            dir: self.state.dir,
            text: message.text,
            len: message.len,
            wire_len: message.wire_len,
            frames: message.frames,
            compressed: message.compressed,
            payload,
            truncated: truncated && !message.undecodable,
            incomplete,
            undecodable: message.undecodable,
        }));
    }

    fn message_payload_tail(&mut self) {
        let options = self.ctx.options;
        let DirState {
            message: Some(message),
            message_kept,
            deflate: Some(inflater),
            ..
        } = &mut *self.state
        else {
            return;
        };
        let failure = inflate(inflater, &DEFLATE_TAIL, self.inflate_buf, |out| {
            Self::message_bytes(message, message_kept, out, options);
            message.len <= options.max_message
        });
        self.after_inflate(failure);
        self.check_too_large();
    }

    fn check_close(&mut self, h: &FrameHeader) -> (Option<u16>, Cow<'static, str>) {
        let payload = &self.state.frame_kept;
        if h.len == 1 {
            self.anomaly(
                AnomalyKind::InvalidClosePayload,
                "a close frame with a 1-byte payload",
            );
            return (None, Cow::Borrowed(""));
        }
        let (code, reason) = match payload.as_slice() {
            [hi, lo, reason @ ..] => (Some(u16::from_be_bytes([*hi, *lo])), reason),
            _ => (None, &[][..]),
        };
        let reason_text = match std::str::from_utf8(reason) {
            Ok(text) => Cow::Owned(text.to_string()),
            Err(_) => {
                let lossy = String::from_utf8_lossy(reason).into_owned();
                self.anomaly(
                    AnomalyKind::InvalidUtf8,
                    "a close reason that is not valid UTF-8",
                );
                Cow::Owned(lossy)
            }
        };
        if let Some(code) = code
            && !close_code_is_valid(code)
        {
            self.anomaly(
                AnomalyKind::InvalidCloseCode,
                &format!("close code {code} may not be sent"),
            );
        }
        (code, reason_text)
    }
}

impl FrameVisitor for Visitor<'_, '_, '_> {
    fn frame_start(&mut self, header: &FrameHeader) {
        self.check_header(header);
        let s = &mut *self.state;
        s.frame_kept.clear();
        s.tail_len = 0;
        s.keep_limit = if header.opcode.is_control() {
            self.ctx.options.max_payload.max(CONTROL_PAYLOAD_MAX)
        } else {
            self.ctx.options.max_payload
        };
        self.start_message(header);
    }

    fn frame_payload(&mut self, header: &FrameHeader, payload: &[u8]) {
        let s = &mut *self.state;
        let room = s.keep_limit.saturating_sub(s.frame_kept.len());
        s.frame_kept
            .extend_from_slice(&payload[..room.min(payload.len())]);
        // Keep the frame's real last bytes: a character cut at the frame's end continues in the
        // next frame even when this one's kept payload was truncated.
        if payload.len() >= 3 {
            s.tail.copy_from_slice(&payload[payload.len() - 3..]);
            s.tail_len = 3;
        } else {
            for &b in payload {
                if s.tail_len == 3 {
                    s.tail.copy_within(1.., 0);
                    s.tail[2] = b;
                } else {
                    s.tail[s.tail_len] = b;
                    s.tail_len += 1;
                }
            }
        }
        if !header.opcode.is_control() {
            self.message_payload(payload);
        }
    }

    fn frame_end(&mut self, header: &FrameHeader) {
        self.ctx.stats.frames += 1;
        let d = self.state.dir.index();
        self.counters.frames[d] += 1;
        self.counters.bytes[d] += header.len;
        let ts = self.ctx.ts;
        match header.opcode {
            Opcode::Continuation | Opcode::Text | Opcode::Binary => self.counters.activity(ts),
            // Mid-stream, silence counts from the first frame seen.
            _ if self.counters.last_activity.is_none() => self.counters.activity(ts),
            _ => {}
        }
        match header.opcode {
            Opcode::Ping => self
                .counters
                .ping(self.state.dir, &self.state.frame_kept, self.ctx.ts),
            Opcode::Pong => self
                .counters
                .pong(self.state.dir, &self.state.frame_kept, self.ctx.ts),
            _ => {}
        }
        let is_data = matches!(
            header.opcode,
            Opcode::Continuation | Opcode::Text | Opcode::Binary
        );
        let in_text = is_data
            && self
                .state
                .message
                .as_ref()
                .is_some_and(|m| m.text && !m.compressed);
        let close = if header.opcode == Opcode::Close {
            let (code, reason) = self.check_close(header);
            if !self.state.close_sent {
                self.state.close_sent = true;
                self.counters.close_codes[d] = code;
                self.counters.close_sent[d] = true;
                let ts = self.ctx.ts;
                let close = &mut *self.close;
                match &close.first {
                    None => {
                        close.first = Some((self.state.dir, code, reason.to_string()));
                        close.first_ts = ts;
                    }
                    // Decoded second, captured first: one direction's frames waited for a
                    // segment that arrived late. The capture time says who closed first.
                    Some((dir, first_code, _)) if *dir != self.state.dir && ts < close.first_ts => {
                        close.reply = Some(*first_code);
                        close.first = Some((self.state.dir, code, reason.to_string()));
                        close.first_ts = ts;
                    }
                    Some((dir, ..)) if *dir != self.state.dir && close.reply.is_none() => {
                        close.reply = Some(code)
                    }
                    _ => {}
                }
            }
            Some((code, reason))
        } else {
            None
        };
        let options = self.ctx.options;
        // `-c` counts frames whether or not they are shown (`-q`).
        let counted = options
            .max_frames
            .is_none_or(|max| self.ctx.stats.frames_emitted < max);
        if counted {
            self.ctx.stats.frames_emitted += 1;
        }
        if counted && options.show_frames {
            let s = &mut *self.state;
            let shown = s.frame_kept.len().min(options.max_payload);
            let kept = &s.frame_kept[..shown];
            let payload = if in_text {
                text_payload(kept, &s.carry[..s.carry_len], &mut s.display)
            } else {
                Payload::Data(kept)
            };
            let event = FrameEvent {
                ts: self.ctx.ts,
                flow: self.ctx.flow,
                dir: s.dir,
                header,
                payload,
                truncated: header.len > shown as u64,
                close: close.as_ref().map(|(code, reason)| CloseInfo {
                    code: *code,
                    reason,
                }),
            };
            self.ctx.sink.event(&Event::Frame(event));
        }
        if is_data {
            if let Some(message) = &mut self.state.message {
                message.frames += 1;
            }
            if header.fin {
                self.finish_message();
                self.state.carry_len = 0;
            } else if in_text {
                // The bytes of a character still incomplete at this frame's end. A frame too
                // short to hold the character's start continues what was carried into it.
                let s = &mut *self.state;
                let mut joined = [0u8; 6];
                let mut len = 0;
                if header.len < 3 {
                    joined[..s.carry_len].copy_from_slice(&s.carry[..s.carry_len]);
                    len = s.carry_len;
                }
                joined[len..len + s.tail_len].copy_from_slice(&s.tail[..s.tail_len]);
                len += s.tail_len;
                let cut = incomplete_utf8_suffix(&joined[..len]);
                let mut next = [0u8; 3];
                next[..cut.len()].copy_from_slice(cut);
                s.carry = next;
                s.carry_len = cut.len();
            }
        }
    }
}

/// Inflates `input`, handing output to `on_output` in pieces; `on_output` returns false to stop.
/// Returns an error description if the data is not valid deflate.
fn inflate(
    inflater: &mut Inflater,
    mut input: &[u8],
    out: &mut [u8],
    mut on_output: impl FnMut(&[u8]) -> bool,
) -> Option<String> {
    let bits = inflater.window_bits;
    let z = inflater
        .z
        .get_or_insert_with(|| Decompress::new_with_window_bits(false, bits));
    loop {
        let (in_before, out_before) = (z.total_in(), z.total_out());
        let status = match z.decompress(input, out, FlushDecompress::Sync) {
            Ok(status) => status,
            Err(e) => return Some(format!("inflating failed: {e}")),
        };
        let consumed = (z.total_in() - in_before) as usize;
        let produced = (z.total_out() - out_before) as usize;
        input = &input[consumed.min(input.len())..];
        if produced > 0 && !on_output(&out[..produced]) {
            return None;
        }
        if status == Status::StreamEnd {
            inflater.stream_ended = true;
            return None;
        }
        if (input.is_empty() && produced < out.len()) || (consumed == 0 && produced == 0) {
            return None;
        }
    }
}

/// Shows a text frame's bytes as text when they are UTF-8, allowing a character that began in
/// the previous frame (`carry`) and one that continues in the next.
fn text_payload<'a>(kept: &'a [u8], carry: &[u8], display: &'a mut Vec<u8>) -> Payload<'a> {
    let candidate: &'a [u8] = if carry.is_empty() {
        kept
    } else {
        display.clear();
        display.extend_from_slice(carry);
        display.extend_from_slice(kept);
        display
    };
    match simdutf8::compat::from_utf8(candidate) {
        Ok(text) => Payload::Text(text),
        Err(e) if e.error_len().is_none() => {
            let valid = &candidate[..e.valid_up_to()];
            Payload::Text(std::str::from_utf8(valid).unwrap_or_default())
        }
        Err(_) => Payload::Data(kept),
    }
}

/// The bytes at the end of `tail` that start a UTF-8 character not yet complete.
fn incomplete_utf8_suffix(tail: &[u8]) -> &[u8] {
    for back in 1..=tail.len().min(3) {
        let b = tail[tail.len() - back];
        if b & 0xC0 == 0x80 {
            continue; // a continuation byte: keep looking for the lead
        }
        return if utf8_width(b) > back {
            &tail[tail.len() - back..]
        } else {
            &[]
        };
    }
    &[]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::FlowMeta;

    #[test]
    fn utf8_suffixes() {
        assert_eq!(incomplete_utf8_suffix(b"abc"), b"");
        assert_eq!(incomplete_utf8_suffix("é".as_bytes()), b"");
        assert_eq!(incomplete_utf8_suffix(&"é".as_bytes()[..1]), &[0xC3]);
        let smile = "😀".as_bytes();
        assert_eq!(incomplete_utf8_suffix(&smile[..3]), &smile[..3]);
        assert_eq!(incomplete_utf8_suffix(&smile[1..4]), b"");
    }

    #[test]
    fn text_split_inside_a_character() {
        let word = "wörld".as_bytes(); // ö is 2 bytes at 1..3
        let mut display = Vec::new();
        let Payload::Text(first) = text_payload(&word[..2], &[], &mut display) else {
            panic!()
        };
        assert_eq!(first, "w");
        let mut display = Vec::new();
        let Payload::Text(second) = text_payload(&word[2..], &word[1..2], &mut display) else {
            panic!()
        };
        assert_eq!(second, "örld");
        let mut display = Vec::new();
        assert!(matches!(
            text_payload(b"\xff\xfe", &[], &mut display),
            Payload::Data(_)
        ));
    }

    #[test]
    fn utf8_check_across_every_split() {
        let text = "añ€😀z".as_bytes();
        for a in 0..=text.len() {
            for b in a..=text.len() {
                let mut check = Utf8Check::default();
                check.feed(&text[..a]);
                check.feed(&text[a..b]);
                check.feed(&text[b..]);
                assert!(check.is_complete_and_valid(), "{a} {b}");
            }
        }
        let mut cut = Utf8Check::default();
        cut.feed(&text[..4]); // "añ" and the first byte of "€"
        assert!(!cut.is_complete_and_valid() && cut.is_valid_so_far());
        let mut bad = Utf8Check::default();
        bad.feed(b"a\xed\xa0\x80"); // an encoded surrogate
        assert!(!bad.is_valid_so_far());
    }

    #[test]
    fn negotiated_parameters() {
        let n = Negotiated::from_server_extensions(&[
            "permessage-deflate; server_no_context_takeover; client_max_window_bits=10".into(),
        ]);
        let p = n.deflate.unwrap();
        assert!(p.server_no_context_takeover && !p.client_no_context_takeover);
        assert_eq!(p.client_max_window_bits, Some(10));
        assert_eq!(
            Negotiated::from_server_extensions(&["x-foo".into()]).deflate,
            None
        );
    }

    /// A sender without context takeover compresses each message afresh: bytes lost inside
    /// one (a gap, a cut) leave the inflater mid-stream, and the next message must inflate
    /// from a clean state, not fail as if the peer had sent garbage.
    #[test]
    fn no_context_takeover_inflates_again_after_lost_bytes() {
        use flate2::{Compress, Compression, FlushCompress};
        let text = |seed: u32| -> String {
            let mut x = seed;
            (0..3000)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    char::from(b'a' + (x >> 16) as u8 % 26)
                })
                .collect()
        };
        let frame = |message: &str| -> Vec<u8> {
            let mut z = Compress::new(Compression::default(), false);
            let mut out = Vec::with_capacity(message.len() + 64);
            z.compress_vec(message.as_bytes(), &mut out, FlushCompress::Sync)
                .unwrap();
            assert_eq!(out[out.len() - 4..], DEFLATE_TAIL);
            out.truncate(out.len() - 4);
            let mut f = vec![0xc1, 126];
            f.extend_from_slice(&(out.len() as u16).to_be_bytes());
            f.extend_from_slice(&out);
            f
        };
        let messages = [text(1), text(2), text(3)];
        let frames: Vec<Vec<u8>> = messages.iter().map(|m| frame(m)).collect();
        let flow = FlowMeta {
            id: 0,
            client: "127.0.0.1:40000".parse().unwrap(),
            server: "127.0.0.1:9000".parse().unwrap(),
            midstream: false,
        };
        let options = WsOptions {
            max_payload: 1 << 20,
            ..WsOptions::default()
        };
        let mut stats = WsStats::default();
        let mut got: Vec<String> = Vec::new();
        let mut anomalies: Vec<String> = Vec::new();
        let mut sink = |e: &Event<'_>| match e {
            Event::Message(m) => match m.payload {
                Payload::Text(t) if !m.incomplete => got.push(t.to_string()),
                _ => {}
            },
            Event::Anomaly(a) => anomalies.push(a.kind.name().to_string()),
            _ => {}
        };
        let mut ctx = Context {
            ts: Timestamp::default(),
            flow: &flow,
            sink: &mut sink,
            options: &options,
            stats: &mut stats,
            cause: Cause::Traffic,
            bytes_cut: [0; 2],
        };
        let negotiated = Negotiated::from_server_extensions(&[
            "permessage-deflate; server_no_context_takeover".into(),
        ]);
        let mut ws = WsConnection::new(negotiated);
        let mut scratch = Scratch::default();
        let dir = Direction::ServerToClient;
        let half = frames[0].len() / 2;
        ws.feed(dir, &frames[0][..half], &mut scratch, &mut ctx);
        ctx.cause = Cause::Snaplen;
        ws.gap(dir, (frames[0].len() - half) as u64, &mut ctx);
        ctx.cause = Cause::Traffic;
        let rest: Vec<u8> = frames[1..].concat();
        ws.feed(dir, &rest, &mut scratch, &mut ctx);
        assert!(anomalies.is_empty(), "{anomalies:?}");
        assert_eq!(got, &messages[1..]);
    }
}
