//! WebSocket policy on top of the frame parser: for each direction, what to keep of each
//! frame's payload, how to show it, and the frame events themselves.

use std::borrow::Cow;

use crate::event::{
    CloseInfo, Direction, Event, EventSink, FlowMeta, FrameEvent, Payload, Timestamp,
};
use crate::frame::{FrameDecoder, FrameHeader, FrameVisitor, Opcode};

/// RFC 6455 5.5: control frame payloads are at most 125 bytes; that much is always kept so a
/// close code and reason survive even `--max-payload 0`.
const CONTROL_PAYLOAD_MAX: usize = 125;

/// Options that shape events.
#[derive(Clone, Copy, Debug)]
pub struct WsOptions {
    /// Payload bytes kept per frame event.
    pub max_payload: usize,
    /// Stop emitting frame events after this many (`-c`).
    pub max_frames: Option<u64>,
}

impl Default for WsOptions {
    fn default() -> Self {
        WsOptions {
            max_payload: 4096,
            max_frames: None,
        }
    }
}

/// What the extensions negotiated in the 101 response change about framing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Negotiated {
    /// permessage-deflate (RFC 7692): RSV1 on a message's first frame means compressed.
    pub deflate: bool,
}

/// Counters the analyzer reports at the end of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WsStats {
    pub handshakes: u64,
    pub upgrades: u64,
    pub frames: u64,
    pub frames_emitted: u64,
}

/// Everything the direction's handlers need besides their own state.
pub struct Context<'a> {
    pub ts: Timestamp,
    pub flow: &'a FlowMeta,
    pub sink: &'a mut dyn EventSink,
    pub options: &'a WsOptions,
    pub stats: &'a mut WsStats,
}

/// State of one direction of an upgraded connection.
#[derive(Debug)]
pub struct WsDirection {
    decoder: FrameDecoder,
    track: FrameTrack,
}

#[derive(Debug, Default)]
struct FrameTrack {
    dir: Option<Direction>,
    negotiated: Negotiated,
    /// The payload kept for the frame being received.
    kept: Vec<u8>,
    keep_limit: usize,
    /// The last up-to-3 payload bytes of the current frame, wherever they were in the frame.
    tail: [u8; 3],
    tail_len: usize,
    /// The data message in progress: text (true) or binary, and whether it is compressed.
    message: Option<(bool, bool)>,
    /// Bytes of a UTF-8 character that began at the end of the previous frame of this message.
    carry: [u8; 3],
    carry_len: usize,
    /// Reused to join `carry` to a frame's bytes for display.
    display: Vec<u8>,
}

impl WsDirection {
    pub fn new(dir: Direction, negotiated: Negotiated) -> Self {
        WsDirection {
            decoder: FrameDecoder::new(),
            track: FrameTrack {
                dir: Some(dir),
                negotiated,
                ..FrameTrack::default()
            },
        }
    }

    pub fn feed(&mut self, input: &[u8], scratch: &mut Vec<u8>, ctx: &mut Context<'_>) {
        let mut visitor = Visitor {
            track: &mut self.track,
            ctx,
        };
        self.decoder.feed(input, scratch, &mut visitor);
    }
}

struct Visitor<'t, 'c, 'a> {
    track: &'t mut FrameTrack,
    ctx: &'c mut Context<'a>,
}

impl FrameVisitor for Visitor<'_, '_, '_> {
    fn frame_start(&mut self, header: &FrameHeader) {
        let t = &mut *self.track;
        t.kept.clear();
        t.tail_len = 0;
        t.keep_limit = if header.opcode.is_control() {
            self.ctx.options.max_payload.max(CONTROL_PAYLOAD_MAX)
        } else {
            self.ctx.options.max_payload
        };
        match header.opcode {
            Opcode::Text | Opcode::Binary => {
                let compressed = t.negotiated.deflate && header.rsv & 4 != 0;
                t.message = Some((header.opcode == Opcode::Text, compressed));
                t.carry_len = 0;
            }
            _ => {}
        }
    }

    fn frame_payload(&mut self, _header: &FrameHeader, payload: &[u8]) {
        let t = &mut *self.track;
        let room = t.keep_limit.saturating_sub(t.kept.len());
        t.kept
            .extend_from_slice(&payload[..room.min(payload.len())]);
        // Keep the frame's real last bytes: a character cut at the frame's end continues in the
        // next frame even when this one's kept payload was truncated.
        if payload.len() >= 3 {
            t.tail.copy_from_slice(&payload[payload.len() - 3..]);
            t.tail_len = 3;
        } else {
            for &b in payload {
                if t.tail_len == 3 {
                    t.tail.copy_within(1.., 0);
                    t.tail[2] = b;
                } else {
                    t.tail[t.tail_len] = b;
                    t.tail_len += 1;
                }
            }
        }
    }

    fn frame_end(&mut self, header: &FrameHeader) {
        self.ctx.stats.frames += 1;
        let t = &mut *self.track;
        let is_data = matches!(
            header.opcode,
            Opcode::Continuation | Opcode::Text | Opcode::Binary
        );
        let in_text = is_data && matches!(t.message, Some((true, false)));
        let emit = self
            .ctx
            .options
            .max_frames
            .is_none_or(|max| self.ctx.stats.frames_emitted < max);
        if emit {
            self.ctx.stats.frames_emitted += 1;
            let shown = t.kept.len().min(self.ctx.options.max_payload);
            let kept = &t.kept[..shown];
            let truncated = header.len > shown as u64;
            let payload = if in_text {
                text_payload(kept, &t.carry[..t.carry_len], &mut t.display)
            } else {
                Payload::Data(kept)
            };
            let close_reason;
            let close = if header.opcode == Opcode::Close {
                let (code, reason) = parse_close(&t.kept);
                close_reason = reason;
                Some(CloseInfo {
                    code,
                    reason: &close_reason,
                })
            } else {
                None
            };
            let event = FrameEvent {
                ts: self.ctx.ts,
                flow: self.ctx.flow,
                dir: t.dir.unwrap_or(Direction::ClientToServer),
                header,
                payload,
                truncated,
                close,
            };
            self.ctx.sink.event(&Event::Frame(event));
        }
        if is_data {
            if header.fin {
                t.message = None;
                t.carry_len = 0;
            } else if in_text {
                let tail = &t.tail[..t.tail_len];
                let cut = incomplete_utf8_suffix(tail);
                t.carry[..cut.len()].copy_from_slice(cut);
                t.carry_len = cut.len();
            }
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
            // Safe by construction: simdutf8 validated exactly this prefix.
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
        let width = match b {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1,
        };
        return if width > back {
            &tail[tail.len() - back..]
        } else {
            &[]
        };
    }
    &[]
}

/// The close code and reason of a close frame's payload (RFC 6455 5.5.1).
pub fn parse_close(payload: &[u8]) -> (Option<u16>, Cow<'_, str>) {
    match payload {
        [hi, lo, reason @ ..] => (
            Some(u16::from_be_bytes([*hi, *lo])),
            String::from_utf8_lossy(reason),
        ),
        _ => (None, Cow::Borrowed("")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn close_payloads() {
        assert_eq!(
            parse_close(b"\x03\xe8bye"),
            (Some(1000), Cow::Borrowed("bye"))
        );
        assert_eq!(parse_close(b""), (None, Cow::Borrowed("")));
        assert_eq!(parse_close(b"\x03"), (None, Cow::Borrowed("")));
    }
}
