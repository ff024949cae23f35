//! The last frame of a fragmented or compressed message, kept past its event until the message
//! event that comes right after it: the text view shows such a frame with its message's
//! inflated text, and `--grep` decides it by that text.

use super::{Direction, FlowMeta, FrameEvent, Payload, Timestamp};
use crate::wire::frame::{FrameHeader, Opcode};

/// What a held frame's event said, but its payload.
#[derive(Clone, Copy, Debug)]
pub struct HeldFrame {
    pub ts: Timestamp,
    pub flow: FlowMeta,
    pub dir: Direction,
    pub header: FrameHeader,
    pub text: bool,
    pub truncated: bool,
}

impl HeldFrame {
    /// The frame event again, with `payload` (the bytes it was held with).
    pub fn event<'a>(&'a self, payload: &'a [u8]) -> FrameEvent<'a> {
        FrameEvent {
            ts: self.ts,
            flow: &self.flow,
            dir: self.dir,
            header: &self.header,
            payload: self.payload(payload),
            truncated: self.truncated,
            close: None,
        }
    }

    /// `bytes`, as the payload they were: text if they were text.
    pub fn payload<'a>(&self, bytes: &'a [u8]) -> Payload<'a> {
        match std::str::from_utf8(bytes) {
            Ok(t) if self.text => Payload::Text(t),
            _ => Payload::Data(bytes),
        }
    }
}

/// At most one held frame, its payload in a buffer reused from frame to frame.
#[derive(Debug, Default)]
pub struct FrameHold {
    pub frame: Option<HeldFrame>,
    /// The held frame's own payload (as kept, `--max-payload`).
    pub payload: Vec<u8>,
}

impl FrameHold {
    /// The last frame of a fragmented or compressed message: its message event follows it.
    pub fn completes_a_message(h: &FrameHeader) -> bool {
        let data = matches!(
            h.opcode,
            Opcode::Continuation | Opcode::Text | Opcode::Binary
        );
        data && h.fin && (h.opcode == Opcode::Continuation || h.rsv & 4 != 0)
    }

    /// Keeps `e` (its payload copied into the reused buffer), in place of any held before.
    pub fn hold(&mut self, e: &FrameEvent<'_>) {
        let (bytes, text) = match e.payload {
            Payload::Text(t) => (t.as_bytes(), true),
            Payload::Data(d) => (d, false),
        };
        self.payload.clear();
        self.payload.extend_from_slice(bytes);
        self.frame = Some(HeldFrame {
            ts: e.ts,
            flow: *e.flow,
            dir: e.dir,
            header: *e.header,
            text,
            truncated: e.truncated,
        });
    }
}
