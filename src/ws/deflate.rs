//! permessage-deflate (RFC 7692): inflating each direction's compressed messages.

use flate2::{Decompress, FlushDecompress, Status};

use super::recover::Recover;
use crate::anomaly::Cause;

/// The tail RFC 7692 7.2.2 strips from every compressed message; inflating needs it back.
pub(super) const DEFLATE_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

#[derive(Debug)]
pub(super) struct Inflater {
    /// Made at the direction's first compressed message, so connections that negotiate
    /// permessage-deflate but never use it cost nothing.
    pub(super) z: Option<Decompress>,
    /// The sender's LZ77 window (max_window_bits), which bounds the decompressor's memory.
    pub(super) window_bits: u8,
    /// The sender resets its compressor after each message (no_context_takeover).
    pub(super) reset_each_message: bool,
    /// Earlier output was lost, so later messages that refer back to it cannot be inflated.
    pub(super) context_lost: bool,
    /// The loss was reported (once per direction).
    pub(super) loss_reported: bool,
    /// The sender ended the deflate stream with a final block; the next message starts anew.
    pub(super) stream_ended: bool,
    /// Inflating without the history, from the first compressed message after the loss until
    /// the window is known again.
    pub(super) recover: Option<Box<Recover>>,
    /// The loss not reported yet: its report says whether exact decoding resumed.
    pub(super) loss: Option<Loss>,
    /// The memory budget took the context: later compressed messages are not inflated.
    pub(super) dropped: bool,
}

/// What the memory budget charges for an inflater beside its window: zlib-rs's inflate state
/// (its tables and bit buffer, about 7 KiB) and flate2's box around it.
pub const INFLATE_STATE: usize = 8 << 10;

/// A lost deflate context, counted until exact decoding resumes or the connection ends.
#[derive(Debug, Clone, Copy)]
pub(super) struct Loss {
    pub(super) why: &'static str,
    pub(super) cause: Cause,
    /// Compressed messages since, and how many of them had unknown bytes.
    pub(super) messages: u64,
    pub(super) partial: u64,
}

impl Loss {
    pub(super) fn report(&self, resumed: Option<&str>) -> String {
        let Loss {
            why,
            messages,
            partial,
            ..
        } = *self;
        match resumed {
            Some(when) => format!(
                "{why}; later compressed messages in this direction were inflated without their \
history ({partial} of {messages} partial) until exact decoding resumed {when}"
            ),
            None => format!(
                "{why}; exact decoding did not resume: {partial} of {messages} later compressed \
messages in this direction were partial"
            ),
        }
    }
}

impl Inflater {
    /// What the memory budget charges: `2^window_bits + INFLATE_STATE` once the exact
    /// inflater is made, and the recovering decoder's [`Recover::memory`] while it runs.
    pub(super) fn memory(&self) -> usize {
        let exact = self
            .z
            .as_ref()
            .map_or(0, |_| (1usize << self.window_bits) + INFLATE_STATE);
        exact + self.recover.as_deref().map_or(0, Recover::memory)
    }

    /// Drops the context for the memory budget; false when nothing was held.
    pub(super) fn drop_context(&mut self) -> bool {
        if self.z.is_none() && self.recover.is_none() {
            return false;
        }
        self.z = None;
        self.recover = None;
        self.context_lost = false;
        self.dropped = true;
        true
    }

    /// A recovering decoder that reached a point where the exact inflater can take over: it
    /// does, seeded with the window. Returns whether it did.
    pub(super) fn try_resume(&mut self) -> bool {
        let Some(recover) = self.recover.as_deref() else {
            return false;
        };
        if recover.stream_ended() {
            // The sender starts a new stream: no history is needed.
            self.recover = None;
            if let Some(z) = &mut self.z {
                z.reset(false);
            }
            self.stream_ended = false;
            return true;
        }
        if !recover.ready_for_exact() {
            return false;
        }
        let Some(recover) = self.recover.take() else {
            return false;
        };
        let mut z = Decompress::new_with_window_bits(false, self.window_bits);
        if z.set_dictionary(&recover.into_dictionary()).is_err() {
            self.context_lost = true;
            return false;
        }
        self.z = Some(z);
        self.stream_ended = false;
        true
    }
}

/// Inflates `input`, handing output to `on_output` in pieces; `on_output` returns false to stop.
/// Returns an error description if the data is not valid deflate.
pub(super) fn inflate(
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
