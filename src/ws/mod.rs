//! WebSocket semantics on top of the frame parser (RFC 6455, RFC 7692): per direction, what to
//! keep of each frame, messages reassembled from fragments and inflated, UTF-8 checked as it
//! streams, the close handshake, and every rule a frame breaks.

mod close;
mod deflate;
mod extensions;
pub mod frame;
mod message;
pub mod recover;
pub mod resync;
mod utf8;
mod visitor;

pub use extensions::{DeflateParams, Negotiated};

use crate::context::Context;
use crate::event::FlowCounters;

use crate::anomaly::{AnomalyKind, Cause};
use crate::event::{CloseEvent, Direction, EndReason, Event, PerDir, Timestamp};
use close::CloseTrack;
use deflate::Inflater;
use frame::FrameDecoder;
use message::Message;
use resync::Resync;
use resync::{PLAUSIBLE_LEN, Plausible};
use visitor::Visitor;

/// Buffers shared by every connection, so decoding allocates nothing once they have grown.
pub struct Scratch {
    pub unmask: Vec<u8>,
    inflate: Box<[u8]>,
    spares: Spares,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch {
            unmask: Vec::new(),
            inflate: vec![0; 64 * 1024].into_boxed_slice(),
            spares: Spares::default(),
        }
    }
}

/// Kept-payload buffers that no frame or message holds, shared by every connection of a
/// decoder: a direction takes one when a frame or message begins whose payload is kept, and
/// gives it back when that ends. So a connection between frames holds none (at 50,000
/// connections under --json, each direction keeping its own held 74 MB), and the frame path
/// still allocates nothing once the spares have grown.
#[derive(Debug, Default)]
pub(super) struct Spares(Vec<Vec<u8>>);

/// Spare buffers kept at most; more are freed.
const MAX_SPARES: usize = 64;

impl Spares {
    fn take(&mut self) -> Vec<u8> {
        self.0.pop().unwrap_or_default()
    }

    fn give_back(&mut self, mut buffer: Vec<u8>) {
        if buffer.capacity() > 0 && buffer.capacity() <= KEEP_CAPACITY && self.0.len() < MAX_SPARES
        {
            buffer.clear();
            self.0.push(buffer);
        }
    }
}

/// One direction of an upgraded connection.
#[derive(Debug)]
struct DirState {
    dir: Direction,
    /// Boxed: most connections do not deflate, and an inline inflater would cost each of
    /// them its size twice over.
    deflate: Option<Box<Inflater>>,
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
    /// Reused to show a partial text message.
    lossy: String,
    message: Option<Message>,
    message_kept: Vec<u8>,
    /// What [`DirState::memory`] was after the last call that could change it ([`UNMEASURED`]:
    /// too large to keep here, measured when asked). The budget asks at every packet with
    /// data; walking both directions' buffers and the inflaters' boxes each time cost cache
    /// misses on state the packet had not touched. A u32 in what padding left free: the
    /// session's size, which the budget counts, is unchanged.
    heap: u32,
}

/// Kept-payload buffers larger than this are freed once their frame or message is done, not
/// kept as spares or by the direction, so a connection that once carried a large frame does not
/// hold that much for good (at --max-payload 4096, 50,000 connections under --json held 116 MB
/// that way). What it costs is an allocation per frame or message longer than this, not per
/// packet.
const KEEP_CAPACITY: usize = 1024;

impl DirState {
    /// The frame is done: its kept payload, and the message's once that is done too, go back
    /// to the spares.
    fn return_buffers(&mut self, spares: &mut Spares) {
        spares.give_back(std::mem::take(&mut self.frame_kept));
        if self.display.capacity() > KEEP_CAPACITY {
            self.display = Vec::new();
        }
        if self.message.is_none() {
            spares.give_back(std::mem::take(&mut self.message_kept));
            if self.lossy.capacity() > KEEP_CAPACITY {
                self.lossy = String::new();
            }
        }
    }

    /// What this direction keeps on the heap, for the memory budget.
    fn memory(&self) -> usize {
        self.frame_kept.capacity()
            + self.display.capacity()
            + self.lossy.capacity()
            + self.message_kept.capacity()
            + self.resync.as_ref().map_or(0, Resync::memory)
            + self.deflate.as_deref().map_or(0, Inflater::memory)
    }

    fn new(dir: Direction, negotiated: Negotiated) -> DirState {
        let deflate = negotiated.deflate.map(|p| {
            Box::new(Inflater {
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
                recover: None,
                loss: None,
                dropped: false,
            })
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
            lossy: String::new(),
            message: None,
            message_kept: Vec::new(),
            heap: UNMEASURED,
        }
    }
}

/// A WebSocket session: the upgraded TCP connection's two directions and their shared close
/// handshake.
#[derive(Debug)]
pub struct WsSession {
    decoders: PerDir<FrameDecoder>,
    dirs: PerDir<DirState>,
    close: CloseTrack,
    counters: FlowCounters,
}

/// A direction's heap too large for [`DirState::heap`]: it is measured when asked.
const UNMEASURED: u32 = u32::MAX;

impl WsSession {
    pub fn new(negotiated: Negotiated) -> WsSession {
        let mut ws = WsSession {
            decoders: PerDir::new(FrameDecoder::new(), FrameDecoder::new()),
            dirs: PerDir::new(
                DirState::new(Direction::ClientToServer, negotiated),
                DirState::new(Direction::ServerToClient, negotiated),
            ),
            close: CloseTrack::default(),
            counters: FlowCounters::default(),
        };
        ws.measured(Direction::ClientToServer);
        ws.measured(Direction::ServerToClient);
        ws
    }

    /// Measures `dir`'s heap again, after something that may have changed it.
    #[inline]
    fn measured(&mut self, dir: Direction) {
        let state = &mut self.dirs[dir];
        state.heap = u32::try_from(state.memory())
            .ok()
            .filter(|&m| m != UNMEASURED)
            .unwrap_or(UNMEASURED);
    }

    /// A visitor for what happens to a direction outside its frames (a gap, shedding, the
    /// end): it inflates nothing new and no frame begins, so it needs no shared buffers.
    fn outside_frames<'s, 'c, 'a>(
        &'s mut self,
        dir: Direction,
        ctx: &'c mut Context<'a>,
    ) -> Visitor<'s, 'c, 'a> {
        Visitor {
            state: &mut self.dirs[dir],
            close: &mut self.close,
            counters: &mut self.counters,
            inflate_buf: &mut [],
            spares: None,
            ctx,
        }
    }

    pub fn counters(&self) -> &FlowCounters {
        &self.counters
    }

    /// What the session keeps on the heap beyond its own box, for the memory budget: as
    /// measured after each call that could change it, so asking touches only the session.
    #[inline]
    pub fn memory(&self) -> usize {
        self.dirs
            .iter()
            .map(|d| match d.heap {
                UNMEASURED => d.memory(),
                heap => {
                    // Every call that changes a direction measures it again: the tests check.
                    debug_assert_eq!(heap as usize, d.memory());
                    heap as usize
                }
            })
            .sum()
    }

    /// Gives up, to stay within the memory budget, the bytes held while looking for frames
    /// (as if they had been lost) and the inflaters' contexts; each loss is reported. Returns
    /// the data bytes given up and the inflaters dropped.
    pub fn shed(&mut self, ctx: &mut Context<'_>) -> (u64, u64) {
        let (mut bytes, mut inflaters) = (0, 0);
        for dir in [Direction::ClientToServer, Direction::ServerToClient] {
            let state = &mut self.dirs[dir];
            if let Some(resync) = &mut state.resync
                && resync.held() > 0
            {
                let held = resync.held();
                resync.restart();
                bytes += held as u64;
                ctx.anomaly_caused(
                    Some(dir),
                    AnomalyKind::TcpGap,
                    Cause::Memory,
                    &format!(
                        "{held} bytes of the {} stream held while looking for frames were given \
up to stay within --max-memory",
                        dir.name()
                    ),
                );
            }
            let mut visitor = self.outside_frames(dir, ctx);
            if visitor.drop_inflater() > 0 {
                inflaters += 1;
            }
            self.measured(dir);
        }
        (bytes, inflaters)
    }

    /// The upgrade happened at `ts`: silence is counted from here.
    pub fn started_at(&mut self, ts: Timestamp) {
        self.counters.activity(ts);
    }

    /// A connection whose handshake was not seen: framing, extensions and the deflate
    /// context are unknown, so both directions start by looking for frames.
    pub fn midstream() -> WsSession {
        let mut ws = WsSession::new(Negotiated {
            deflate: Some(DeflateParams::default()),
        });
        for state in ws.dirs.iter_mut() {
            state.resync = Some(Resync::pickup());
            state.orphans_expected = true;
            if let Some(inflater) = &mut state.deflate {
                // Earlier messages may have filled the window: later ones are inflated
                // without it until it is known again.
                inflater.context_lost = true;
            }
        }
        ws.measured(Direction::ClientToServer);
        ws.measured(Direction::ServerToClient);
        ws
    }

    pub fn feed(
        &mut self,
        dir: Direction,
        input: &[u8],
        scratch: &mut Scratch,
        ctx: &mut Context<'_>,
    ) {
        self.feed_unmeasured(dir, input, scratch, ctx);
        self.measured(dir);
    }

    fn feed_unmeasured(
        &mut self,
        dir: Direction,
        input: &[u8],
        scratch: &mut Scratch,
        ctx: &mut Context<'_>,
    ) {
        let state = &mut self.dirs[dir];
        let resumed;
        let input = match &mut state.resync {
            None => input,
            Some(resync) => {
                let rule = Plausible {
                    masked: Some(dir == Direction::ClientToServer),
                    rsv1_allowed: state.deflate.is_some(),
                    max_len: ctx.options.max_message.max(PLAUSIBLE_LEN),
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
            state: &mut self.dirs[dir],
            close: &mut self.close,
            counters: &mut self.counters,
            inflate_buf: &mut scratch.inflate,
            spares: Some(&mut scratch.spares),
            ctx,
        };
        self.decoders[dir].feed(input, &mut scratch.unmask, &mut visitor);
    }

    /// Bytes of `dir` were never captured: what was in progress is reported incomplete and
    /// the direction looks for the next frame in what follows.
    /// Bytes the snapshot length cut (`ctx.cause` says so) are reported by whoever knows the
    /// snapshot length; they are handled the same way.
    pub fn gap(&mut self, dir: Direction, lost: u64, ctx: &mut Context<'_>) {
        self.gap_unmeasured(dir, lost, ctx);
        self.measured(dir);
    }

    fn gap_unmeasured(&mut self, dir: Direction, lost: u64, ctx: &mut Context<'_>) {
        if ctx.cause == Cause::Memory {
            ctx.anomaly(
                Some(dir),
                AnomalyKind::TcpGap,
                &format!(
                    "{lost} bytes of the {} stream were given up to stay within --max-memory \
(the segments held out of order behind a hole, and the hole)",
                    dir.name()
                ),
            );
        } else if ctx.cause != Cause::Snaplen {
            ctx.anomaly(
                Some(dir),
                AnomalyKind::TcpGap,
                &format!(
                    "{lost} bytes of the {} stream were not captured",
                    dir.name()
                ),
            );
        }
        if let Some(resync) = &mut self.dirs[dir].resync {
            resync.restart();
            self.dirs[dir].orphans_expected = true;
            return;
        }
        self.decoders[dir].reset();
        let mut visitor = self.outside_frames(dir, ctx);
        visitor.abandon_message();
        visitor.lose_context(if visitor.ctx.cause == Cause::Snaplen {
            "the snapshot length cut bytes of a compressed stream"
        } else {
            "bytes of a compressed stream were lost"
        });
        self.dirs[dir].resync = Some(Resync::after_gap());
        self.dirs[dir].orphans_expected = true;
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
        for dir in [Direction::ClientToServer, Direction::ServerToClient] {
            let mut visitor = self.outside_frames(dir, ctx);
            visitor.report_unresolved_loss();
            self.measured(dir);
        }
        for (decoder, state) in self.decoders.iter().zip(self.dirs.iter()) {
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

#[cfg(test)]
mod tests;
