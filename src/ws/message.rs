//! Messages assembled from their fragments, inflated when compressed, checked for UTF-8 as
//! they stream, and reported when they end.

use super::DirState;
use super::deflate::{DEFLATE_TAIL, inflate};
use super::utf8::Utf8Check;
use super::visitor::Visitor;
use crate::anomaly::{AnomalyKind, Cause};
use crate::context::WsOptions;
use crate::event::{Event, MessageEvent, Payload};
use crate::wire::frame::{FrameHeader, Opcode};

#[derive(Debug, Default)]
pub(super) struct Message {
    pub(super) text: bool,
    pub(super) compressed: bool,
    /// One uncompressed frame: its kept payload is the message's, so it is not copied twice.
    pub(super) single_frame: bool,
    pub(super) undecodable: bool,
    /// Inflating stopped (a bomb or an error): the rest of the message is counted, not decoded.
    pub(super) inflate_stopped: bool,
    pub(super) frames: u64,
    pub(super) wire_len: u64,
    pub(super) len: u64,
    pub(super) too_large: bool,
    pub(super) utf8: Utf8Check,
}

impl Visitor<'_, '_, '_> {
    pub(super) fn start_message(&mut self, h: &FrameHeader) {
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
    pub(super) fn message_bytes(
        message: &mut Message,
        kept: &mut Vec<u8>,
        bytes: &[u8],
        options: &WsOptions,
    ) {
        message.len += bytes.len() as u64;
        if !message.single_frame {
            let room = options.max_payload.saturating_sub(kept.len());
            kept.extend_from_slice(&bytes[..room.min(bytes.len())]);
        }
        if message.text {
            message.utf8.feed(bytes);
        }
    }

    pub(super) fn message_payload(&mut self, payload: &[u8]) {
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

    pub(super) fn check_too_large(&mut self) {
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

    pub(super) fn after_inflate(&mut self, failure: Option<String>) {
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
    pub(super) fn lose_context(&mut self, why: &str) {
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
    pub(super) fn abandon_message(&mut self) {
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

    pub(super) fn finish_message(&mut self) {
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

    pub(super) fn emit_message(&mut self, incomplete: bool) {
        let Some(message) = self.state.message.take() else {
            return;
        };
        self.ctx.stats.messages += 1;
        self.counters.messages[self.state.dir] += 1;
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

    pub(super) fn message_payload_tail(&mut self) {
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
}
