//! The frame parser's callbacks for one direction: the rules every frame header must keep,
//! what is kept of each frame's payload, and the connection's counters.

use super::close::{CloseTrack, check_close, close_reason};
use super::frame::FrameVisitor;
use super::utf8::{CheckedFrame, checked_payload, incomplete_utf8_suffix, text_payload};
use super::{DirState, Spares};
use crate::anomaly::AnomalyKind;
use crate::context::Context;
use crate::event::{CloseInfo, Direction, Event, FlowCounters, FrameEvent, Payload};
use crate::wire::frame::{FrameHeader, Opcode};

/// RFC 6455 5.5: control frame payloads are at most 125 bytes; that much is always kept so a
/// close code and reason survive even `--max-payload 0`.
pub(super) const CONTROL_PAYLOAD_MAX: usize = 125;

pub(super) struct Visitor<'s, 'c, 'a> {
    pub(super) state: &'s mut DirState,
    pub(super) close: &'s mut CloseTrack,
    pub(super) counters: &'s mut FlowCounters,
    pub(super) inflate_buf: &'s mut [u8],
    /// The decoder's spare buffers; none outside frames (a gap, shedding, the end), where no
    /// frame begins or ends.
    pub(super) spares: Option<&'s mut Spares>,
    pub(super) ctx: &'c mut Context<'a>,
}

impl Visitor<'_, '_, '_> {
    pub(super) fn anomaly(&mut self, kind: AnomalyKind, detail: &str) {
        self.ctx.anomaly(Some(self.state.dir), kind, detail);
    }

    pub(super) fn check_header(&mut self, h: &FrameHeader) {
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
}

impl FrameVisitor for Visitor<'_, '_, '_> {
    fn frame_start(&mut self, header: &FrameHeader) {
        self.check_header(header);
        self.settle_single_frame_utf8();
        let s = &mut *self.state;
        s.frame_kept.clear();
        s.tail_len = 0;
        s.keep_limit = if header.opcode.is_control() {
            self.ctx.options.max_payload.max(CONTROL_PAYLOAD_MAX)
        } else {
            self.ctx.options.max_payload
        };
        // What will be kept of this frame, bounded by the option, not by the length it claims:
        // one allocation at most instead of a dozen growth steps, and no more than needed.
        let keep = header.len.min(s.keep_limit as u64) as usize;
        if keep > 0 {
            if s.frame_kept.capacity() == 0 {
                s.frame_kept = self
                    .spares
                    .as_deref_mut()
                    .map(Spares::take)
                    .unwrap_or_default();
            }
            s.frame_kept.reserve(keep);
        }
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
        let d = self.state.dir;
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
            let code = check_close(header, &self.state.frame_kept, self.state.dir, self.ctx);
            if !self.state.close_sent {
                self.state.close_sent = true;
                self.counters.close_codes[d] = code;
                self.counters.close_sent[d] = true;
                let ts = self.ctx.ts;
                let close = &mut *self.close;
                match &close.first {
                    None => {
                        let reason = close_reason(&self.state.frame_kept).into_owned();
                        close.first = Some((self.state.dir, code, reason));
                        close.first_ts = ts;
                    }
                    // Decoded second, captured first: one direction's frames waited for a
                    // segment that arrived late. The capture time says who closed first.
                    Some((dir, first_code, _)) if *dir != self.state.dir && ts < close.first_ts => {
                        close.reply = Some(*first_code);
                        let reason = close_reason(&self.state.frame_kept).into_owned();
                        close.first = Some((self.state.dir, code, reason));
                        close.first_ts = ts;
                    }
                    Some((dir, ..)) if *dir != self.state.dir && close.reply.is_none() => {
                        close.reply = Some(code)
                    }
                    _ => {}
                }
            }
            Some(code)
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
        if is_data
            && header.fin
            && options.max_payload > 0
            && self
                .state
                .message
                .as_ref()
                .is_some_and(|m| m.single_frame && m.text)
        {
            self.end_single_text_frame(header, counted);
        } else {
            if counted && options.show_frames {
                let s = &mut *self.state;
                let shown = s.frame_kept.len().min(options.max_payload);
                let kept = &s.frame_kept[..shown];
                let payload = if in_text {
                    text_payload(kept, &s.carry[..s.carry_len], &mut s.display)
                } else {
                    Payload::Data(kept)
                };
                let code_and_reason = close.map(|code| (code, close_reason(&s.frame_kept)));
                let close = code_and_reason.as_ref().map(|(code, reason)| CloseInfo {
                    code: *code,
                    reason,
                });
                emit_frame(self.ctx, s.dir, header, payload, shown, close);
            }
            if is_data {
                self.after_data_frame(header, in_text);
            }
        }
        if let Some(spares) = self.spares.as_deref_mut() {
            self.state.return_buffers(spares);
        }
    }
}

/// A frame's event.
fn emit_frame(
    ctx: &mut Context<'_>,
    dir: Direction,
    header: &FrameHeader,
    payload: Payload<'_>,
    shown: usize,
    close: Option<CloseInfo<'_>>,
) {
    ctx.sink.event(&Event::Frame(FrameEvent {
        ts: ctx.ts,
        flow: ctx.flow,
        dir,
        header,
        payload,
        truncated: header.len > shown as u64,
        close,
    }));
}

impl Visitor<'_, '_, '_> {
    /// The end of a text message of one frame: its kept bytes are out of the state until the
    /// message is reported, so that what is validated here serves the check, the frame and
    /// the message: once when they are the whole frame (the deferred check), else once for
    /// both displays.
    fn end_single_text_frame(&mut self, header: &FrameHeader, counted: bool) {
        let options = self.ctx.options;
        let bytes = std::mem::take(&mut self.state.frame_kept);
        let whole = self
            .state
            .message
            .as_mut()
            .and_then(|message| message.settle_utf8(&bytes));
        let kept = &bytes[..bytes.len().min(options.max_payload)];
        let mut shown_text = None;
        if counted && options.show_frames {
            let result = whole.unwrap_or_else(|| simdutf8::compat::from_utf8(kept));
            let payload = checked_payload(kept, result, kept);
            if let Payload::Text(text) = payload {
                shown_text = Some(text);
            }
            emit_frame(self.ctx, self.state.dir, header, payload, kept.len(), None);
        }
        if let Some(message) = &mut self.state.message {
            message.frames += 1;
        }
        let text = shown_text.or_else(|| whole.and_then(Result::ok));
        self.finish_message(Some(CheckedFrame { bytes: kept, text }));
        self.state.frame_kept = bytes;
        self.state.carry_len = 0;
    }

    /// A data frame has ended: counted in its message, which ends with it or carries a
    /// character cut at its end into the next frame.
    fn after_data_frame(&mut self, header: &FrameHeader, in_text: bool) {
        if let Some(message) = &mut self.state.message {
            message.frames += 1;
        }
        if header.fin {
            self.finish_message(None);
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
