//! Finding frames in bytes whose framing is unknown: after a gap, or on a connection picked
//! up mid-stream. The evidence required and the bytes held while looking are set here.

use crate::frame::{ChainRule, ChainScan, Plausible, scan_chain};

/// Bytes held while looking for the next frame after a gap or on a connection picked up
/// mid-stream.
pub(super) const RESYNC_BUFFER: usize = 64 * 1024;

/// The evidence that frames resume at a segment start after a gap: two frames back to back,
/// or one that ends exactly where the captured bytes do.
pub(super) const RESYNC_CHAIN: ChainRule = ChainRule {
    min_frames: 2,
    min_frames_at_end: 1,
};

/// The evidence needed at an arbitrary offset, once no segment start worked.
pub(super) const RESYNC_CHAIN_ANYWHERE: ChainRule = ChainRule {
    min_frames: 3,
    min_frames_at_end: 2,
};

/// Bytes a probe holds per side before deciding the connection is not WebSocket.
pub(crate) const PROBE_LIMIT: usize = 16 * 1024;

/// Plausible frames in a row that make a connection WebSocket without a handshake.
pub(crate) const PROBE_CHAIN: ChainRule = ChainRule {
    min_frames: 3,
    min_frames_at_end: 2,
};

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
    pub(super) fn keep_tail(&mut self, keep: usize) {
        let cut = self.buf.len().saturating_sub(keep);
        self.buf.drain(..cut);
        self.starts.clear();
    }
}

/// Looking for where frames resume in one direction.
#[derive(Debug, Default)]
pub(super) struct Resync {
    hunt: FrameHunt,
}

impl Resync {
    /// Adds one segment's bytes; once frames are found, returns all bytes from the first frame.
    pub(super) fn push(&mut self, mut input: &[u8], rule: &Plausible) -> Option<Vec<u8>> {
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
