//! Messages assembled from their fragments, inflated when compressed, checked for UTF-8 (in one
//! piece while all of a message is kept, else as it streams), and reported when they end.

use super::deflate::{DEFLATE_TAIL, Loss, inflate};
use super::recover::Recover;
use super::utf8::{CheckedFrame, Utf8Check};
use super::visitor::Visitor;
use super::{DirState, Spares};
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
    /// A text message whose bytes are all kept so far: its UTF-8 is checked once, on all of
    /// them, when it ends (or when what is kept stops being all of it), not chunk by chunk and
    /// then again for display. See [`Message::settle_utf8`].
    pub(super) utf8_deferred: bool,
    /// Inflated by the recovering decoder: bytes may be unknown.
    pub(super) recovering: bool,
    /// Bytes whose value the recovering decoder could not know.
    pub(super) unknown: u64,
    /// `--max-payload` cut what was kept.
    pub(super) kept_cut: bool,
}

impl Message {
    /// The deferred UTF-8 check, if it is still to be done, done on `kept`: all the message
    /// received. Its result, for the message's text, or `None` when the check had been done
    /// as the bytes came.
    #[inline]
    pub(super) fn settle_utf8<'a>(
        &mut self,
        kept: &'a [u8],
    ) -> Option<Result<&'a str, simdutf8::compat::Utf8Error>> {
        if !self.utf8_deferred {
            return None;
        }
        self.utf8_deferred = false;
        let result = simdutf8::compat::from_utf8(kept);
        self.utf8.checked(kept, result);
        Some(result)
    }
}

/// U+FFFD, kept in a partial text message for each unknown byte.
const REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();

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
            let mut recovering = false;
            let mut dropped = false;
            if compressed && let Some(inflater) = &mut self.state.deflate {
                dropped = inflater.dropped;
                // A compressed message starts on a block boundary: the place to pick the
                // stream up without its history.
                if inflater.context_lost && !dropped {
                    inflater.context_lost = false;
                    inflater.stream_ended = false;
                    inflater.recover = Some(Box::new(Recover::new(inflater.window_bits)));
                }
                recovering = inflater.recover.is_some();
            }
            self.state.message = Some(Message {
                text: h.opcode == Opcode::Text,
                compressed,
                recovering,
                single_frame: h.fin && !compressed,
                // While the kept bytes are all the message's (frame_start keeps up to
                // max_payload of a frame); the recovering decoder's unknown bytes are not kept
                // as they came.
                utf8_deferred: h.opcode == Opcode::Text
                    && !recovering
                    && self.ctx.options.max_payload > 0
                    && (!h.fin || compressed || h.len <= self.ctx.options.max_payload as u64),
                undecodable: dropped,
                inflate_stopped: dropped,
                ..Message::default()
            });
            self.state.message_kept.clear();
            // A message of more than one frame (or inflated) keeps its own payload.
            if (!h.fin || compressed)
                && self.ctx.options.max_payload > 0
                && self.state.message_kept.capacity() == 0
            {
                self.state.message_kept = self
                    .spares
                    .as_deref_mut()
                    .map(Spares::take)
                    .unwrap_or_default();
            }
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
            if message.utf8_deferred && room < bytes.len() {
                // What is kept will no longer be all of the message: checked from here on
                // as the bytes come (feed, as below: the result is not needed).
                message.utf8_deferred = false;
                message.utf8.feed(kept);
            }
            kept.extend_from_slice(&bytes[..room.min(bytes.len())]);
            message.kept_cut |= room < bytes.len();
        }
        if message.text && !message.utf8_deferred {
            message.utf8.feed(bytes);
        }
    }

    /// A frame begins while a single-frame message is still open (its end was never seen):
    /// its deferred UTF-8 check ([`Message::utf8_deferred`]) is done now, on what the frame
    /// kept (all the message received), before that goes. A longer message keeps its own.
    pub(super) fn settle_single_frame_utf8(&mut self) {
        let s = &mut *self.state;
        if let Some(message) = &mut s.message
            && message.single_frame
        {
            message.settle_utf8(&s.frame_kept);
        }
    }

    /// Bytes from the recovering decoder: known ones as usual, unknown ones (zeros) counted
    /// and kept as U+FFFD in text. Once a byte is unknown, UTF-8 can no longer be judged.
    #[inline]
    fn recovered_bytes(
        message: &mut Message,
        kept: &mut Vec<u8>,
        bytes: &[u8],
        known: bool,
        options: &WsOptions,
    ) {
        if known && message.unknown == 0 {
            return Self::message_bytes(message, kept, bytes, options);
        }
        message.len += bytes.len() as u64;
        let room = options.max_payload.saturating_sub(kept.len());
        if known || !message.text {
            kept.extend_from_slice(&bytes[..room.min(bytes.len())]);
            message.kept_cut |= room < bytes.len();
        } else {
            let fits = (room / REPLACEMENT.len()).min(bytes.len());
            for _ in 0..fits {
                kept.extend_from_slice(REPLACEMENT);
            }
            message.kept_cut |= fits < bytes.len();
        }
        if !known {
            message.unknown += bytes.len() as u64;
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
            let failure = Self::inflate_into(
                inflater,
                message,
                message_kept,
                payload,
                self.inflate_buf,
                options,
            );
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

    /// The inflater skipped part of the stream: with context takeover, later messages refer
    /// to output it did not see, so they are inflated without their history from the next
    /// compressed message on. Reported once per direction, when it is known whether exact
    /// decoding resumed.
    pub(super) fn lose_context(&mut self, why: &'static str) {
        let cause = self.ctx.cause;
        let Some(inflater) = &mut self.state.deflate else {
            return;
        };
        if inflater.reset_each_message {
            return;
        }
        inflater.context_lost = true;
        inflater.recover = None;
        if let Some(earlier) = inflater.loss.take() {
            self.report_loss(&earlier, None);
            return;
        }
        if inflater.loss_reported {
            return;
        }
        inflater.loss_reported = true;
        inflater.loss = Some(Loss {
            why,
            cause,
            messages: 0,
            partial: 0,
        });
    }

    /// The memory budget takes the inflater's context (and a recovering decoder's window):
    /// this message and later compressed ones of the direction are not inflated, and that is
    /// said once. Returns the bytes the inflater held, 0 when it held none.
    pub(super) fn drop_inflater(&mut self) -> usize {
        let Some(inflater) = &mut self.state.deflate else {
            return 0;
        };
        let held = inflater.memory();
        if !inflater.drop_context() {
            return 0;
        }
        let earlier = inflater.loss.take();
        if let Some(earlier) = earlier {
            self.report_loss(&earlier, None);
        }
        if let Some(message) = &mut self.state.message
            && message.compressed
        {
            message.inflate_stopped = true;
        }
        let detail = format!(
            "the inflater's context ({held} bytes) was dropped to stay within --max-memory: \
later compressed messages in this direction are not inflated"
        );
        self.ctx.anomaly_caused(
            Some(self.state.dir),
            AnomalyKind::DeflateContextLost,
            Cause::Memory,
            &detail,
        );
        held
    }

    fn report_loss(&mut self, loss: &Loss, resumed: Option<&str>) {
        let detail = loss.report(resumed);
        self.ctx.anomaly_caused(
            Some(self.state.dir),
            AnomalyKind::DeflateContextLost,
            loss.cause,
            &detail,
        );
    }

    /// A message cut by lost bytes is reported as far as it got, never joined to later data.
    pub(super) fn abandon_message(&mut self) {
        let compressed = self.state.message.as_ref().is_some_and(|m| m.compressed);
        if self.state.message.is_some() {
            self.emit_message(true, None);
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

    pub(super) fn finish_message(&mut self, checked: Option<CheckedFrame<'_>>) {
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
        let (recovering, partial) = self
            .state
            .message
            .as_ref()
            .map_or((false, false), |m| (m.recovering, m.unknown > 0));
        let mut resumed = false;
        if let Some(inflater) = &mut self.state.deflate
            && self.state.message.as_ref().is_some_and(|m| m.compressed)
        {
            if recovering {
                resumed = inflater.try_resume();
            } else if inflater.reset_each_message || inflater.stream_ended {
                if let Some(z) = &mut inflater.z {
                    z.reset(false);
                }
                inflater.stream_ended = false;
            }
            if let Some(loss) = &mut inflater.loss {
                loss.messages += 1;
                loss.partial += u64::from(partial);
            }
        }
        if resumed && let Some(loss) = self.state.deflate.as_mut().and_then(|d| d.loss.take()) {
            let when = format!("after message {} of them", loss.messages);
            self.report_loss(&loss, Some(&when));
        }
        self.emit_message(false, checked);
    }

    /// The connection ended while a lost context was still being recovered.
    pub(super) fn report_unresolved_loss(&mut self) {
        if let Some(loss) = self.state.deflate.as_mut().and_then(|d| d.loss.take()) {
            self.report_loss(&loss, None);
        }
    }

    /// Reports the message. `checked`: its single frame, validated at the frame's end and
    /// taken out of the direction's state meanwhile.
    pub(super) fn emit_message(&mut self, incomplete: bool, checked: Option<CheckedFrame<'_>>) {
        let Some(mut message) = self.state.message.take() else {
            return;
        };
        let dir = self.state.dir;
        self.ctx.stats.messages += 1;
        self.counters.messages[dir] += 1;
        let DirState {
            frame_kept,
            message_kept,
            lossy,
            ..
        } = &mut *self.state;
        let kept: &[u8] = if let Some(frame) = checked {
            frame.bytes
        } else if message.single_frame {
            &frame_kept[..frame_kept.len().min(self.ctx.options.max_payload)]
        } else {
            &message_kept[..]
        };
        // The message as text, when it was validated whole (the deferred check, done here on
        // all it received, or at its single frame's end).
        let whole_text = if let Some(frame) = checked {
            frame.text
        } else {
            message.settle_utf8(kept).and_then(Result::ok)
        };
        // A message cut short (a gap, or inflating stopped at --max-message) may end inside a
        // character: only what arrived is judged.
        let cut = incomplete || message.inflate_stopped;
        let valid_text = if cut {
            message.utf8.is_valid_so_far()
        } else {
            message.utf8.is_complete_and_valid()
        };
        let partial = message.unknown > 0;
        if message.text && !message.undecodable && !partial && !valid_text {
            // Judged on bytes that were captured, even when a gap ends the message.
            self.ctx.anomaly_caused(
                Some(dir),
                AnomalyKind::InvalidUtf8,
                Cause::Traffic,
                "a text message that is not valid UTF-8",
            );
        }
        if !self.ctx.options.show_messages {
            return;
        }
        let payload = if message.undecodable {
            Payload::Data(&[])
        } else if message.text && partial {
            // Known bytes next to unknown ones may be pieces of characters: those become
            // U+FFFD too.
            lossy.clear();
            for chunk in kept.utf8_chunks() {
                lossy.push_str(chunk.valid());
                if !chunk.invalid().is_empty() {
                    lossy.push('\u{FFFD}');
                }
            }
            Payload::Text(lossy)
        } else if message.text
            && valid_text
            && let Some(text) = whole_text
        {
            Payload::Text(text)
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
        let truncated = if partial {
            message.kept_cut || message.inflate_stopped
        } else {
            message.len > kept.len() as u64 || message.inflate_stopped
        };
        self.ctx.sink.event(&Event::Message(MessageEvent {
            ts: self.ctx.ts,
            flow: self.ctx.flow,
            dir,
            text: message.text,
            len: message.len,
            wire_len: message.wire_len,
            frames: message.frames,
            compressed: message.compressed,
            payload,
            truncated: truncated && !message.undecodable,
            incomplete,
            undecodable: message.undecodable,
            partial,
            unknown_bytes: message.unknown,
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
        let failure = Self::inflate_into(
            inflater,
            message,
            message_kept,
            &DEFLATE_TAIL,
            self.inflate_buf,
            options,
        );
        self.after_inflate(failure);
        self.check_too_large();
    }

    /// Inflates compressed bytes of the message, exactly or (after a loss) without history.
    fn inflate_into(
        inflater: &mut super::deflate::Inflater,
        message: &mut Message,
        kept: &mut Vec<u8>,
        input: &[u8],
        buf: &mut [u8],
        options: &WsOptions,
    ) -> Option<String> {
        if let Some(recover) = &mut inflater.recover {
            let fed = recover.feed(input, |out, known| {
                Self::recovered_bytes(message, kept, out, known, options);
                message.len <= options.max_message
            });
            return fed.err().map(|e| format!("inflating failed: {e}"));
        }
        inflate(inflater, input, buf, |out| {
            Self::message_bytes(message, kept, out, options);
            message.len <= options.max_message
        })
    }
}
