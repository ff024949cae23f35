//! RFC 6455 section 5.2 base framing, decoded passively from one direction's byte stream.
//!
//! The decoder is a resumable state machine: it accepts the stream in whatever pieces TCP
//! delivers, keeps at most one partial header (14 bytes) between calls, and never buffers
//! payload. Payload bytes are handed to a [`FrameVisitor`] as they arrive, unmasked, so what
//! to keep of them is the caller's policy, not the parser's.

use crate::wire::frame::FrameHeader;

/// Receives what the decoder finds, in stream order.
pub trait FrameVisitor {
    fn frame_start(&mut self, header: &FrameHeader);
    /// Unmasked payload bytes; a frame's payload may arrive in any number of calls.
    fn frame_payload(&mut self, header: &FrameHeader, payload: &[u8]);
    fn frame_end(&mut self, header: &FrameHeader);
}

#[derive(Debug)]
enum State {
    Header,
    Payload {
        header: FrameHeader,
        remaining: u64,
        /// Offset of the next payload byte modulo 4, so a key is applied in phase across calls.
        mask_phase: usize,
    },
}

/// The streaming decoder for one direction.
#[derive(Debug)]
pub struct FrameDecoder {
    state: State,
    partial_header: [u8; 14],
    partial_len: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    pub fn new() -> Self {
        FrameDecoder {
            state: State::Header,
            partial_header: [0; 14],
            partial_len: 0,
        }
    }

    /// True between frames: nothing of a header or payload is pending.
    pub fn at_frame_boundary(&self) -> bool {
        matches!(self.state, State::Header) && self.partial_len == 0
    }

    /// The frame whose payload is being received, if any.
    pub fn current_frame(&self) -> Option<(&FrameHeader, u64)> {
        match &self.state {
            State::Payload {
                header, remaining, ..
            } => Some((header, *remaining)),
            State::Header => None,
        }
    }

    /// Forgets any partial frame, e.g. after bytes of the stream were lost.
    pub fn reset(&mut self) {
        self.state = State::Header;
        self.partial_len = 0;
    }

    /// Consumes `input`. `scratch` is reused for unmasking so that no call allocates once it
    /// has grown to the largest segment seen.
    pub fn feed<V: FrameVisitor>(
        &mut self,
        mut input: &[u8],
        scratch: &mut Vec<u8>,
        visitor: &mut V,
    ) {
        while !input.is_empty() {
            match &mut self.state {
                State::Header => {
                    let header = if self.partial_len == 0 {
                        match FrameHeader::parse(input) {
                            Some(header) => {
                                input = &input[usize::from(header.header_len)..];
                                header
                            }
                            None => {
                                self.partial_header[..input.len()].copy_from_slice(input);
                                self.partial_len = input.len();
                                return;
                            }
                        }
                    } else {
                        let have = self.partial_len;
                        let needed = if have >= 2 {
                            FrameHeader::needed_len(self.partial_header[1])
                        } else {
                            // One byte held: the second byte decides the length; take it first.
                            2
                        };
                        let take = (needed - have).min(input.len());
                        self.partial_header[have..have + take].copy_from_slice(&input[..take]);
                        self.partial_len += take;
                        input = &input[take..];
                        match FrameHeader::parse(&self.partial_header[..self.partial_len]) {
                            Some(header) => {
                                self.partial_len = 0;
                                header
                            }
                            None => continue,
                        }
                    };
                    visitor.frame_start(&header);
                    if header.len == 0 {
                        visitor.frame_end(&header);
                    } else {
                        self.state = State::Payload {
                            header,
                            remaining: header.len,
                            mask_phase: 0,
                        };
                    }
                }
                State::Payload {
                    header,
                    remaining,
                    mask_phase,
                } => {
                    let take = usize::try_from(*remaining)
                        .unwrap_or(usize::MAX)
                        .min(input.len());
                    let (chunk, rest) = input.split_at(take);
                    input = rest;
                    match header.mask {
                        Some(key) => {
                            scratch.clear();
                            scratch.extend_from_slice(chunk);
                            unmask(scratch, key, *mask_phase);
                            visitor.frame_payload(header, scratch);
                        }
                        None => visitor.frame_payload(header, chunk),
                    }
                    *mask_phase = (*mask_phase + take) & 3;
                    *remaining -= take as u64;
                    if *remaining == 0 {
                        let header = *header;
                        self.state = State::Header;
                        visitor.frame_end(&header);
                    }
                }
            }
        }
    }
}

/// XORs `data` with the masking key, starting `phase` bytes into the key's cycle.
/// Works eight bytes at a time; the compiler vectorises the inner loop.
pub fn unmask(data: &mut [u8], key: [u8; 4], phase: usize) {
    let rotated = [
        key[phase & 3],
        key[(phase + 1) & 3],
        key[(phase + 2) & 3],
        key[(phase + 3) & 3],
    ];
    let word = u64::from_ne_bytes([
        rotated[0], rotated[1], rotated[2], rotated[3], rotated[0], rotated[1], rotated[2],
        rotated[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= rotated[i & 3];
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::wire::frame::Opcode;

    #[derive(Default)]
    struct Collect {
        frames: Vec<(FrameHeader, Vec<u8>)>,
        open: Option<Vec<u8>>,
    }

    impl FrameVisitor for Collect {
        fn frame_start(&mut self, _header: &FrameHeader) {
            self.open = Some(Vec::new());
        }
        fn frame_payload(&mut self, _header: &FrameHeader, payload: &[u8]) {
            self.open.as_mut().unwrap().extend_from_slice(payload);
        }
        fn frame_end(&mut self, header: &FrameHeader) {
            self.frames.push((*header, self.open.take().unwrap()));
        }
    }

    pub(in crate::ws) fn encode(
        fin: bool,
        opcode: u8,
        mask: Option<[u8; 4]>,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut out = vec![(u8::from(fin) << 7) | opcode];
        let mask_bit = if mask.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => out.push(mask_bit | n as u8),
            n if n <= 0xffff => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        match mask {
            Some(key) => {
                out.extend_from_slice(&key);
                out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
            }
            None => out.extend_from_slice(payload),
        }
        out
    }

    #[test]
    fn rfc6455_section_5_7_examples() {
        // The single-frame unmasked and masked "Hello" from RFC 6455 5.7.
        let unmasked = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let masked = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        for bytes in [&unmasked[..], &masked[..]] {
            let mut c = Collect::default();
            FrameDecoder::new().feed(bytes, &mut Vec::new(), &mut c);
            assert_eq!(c.frames.len(), 1);
            assert_eq!(c.frames[0].1, b"Hello");
            assert_eq!(c.frames[0].0.opcode, Opcode::Text);
        }
        // 256 bytes binary in a single unmasked frame: 16-bit length.
        let mut long = vec![0x82, 0x7E, 0x01, 0x00];
        long.extend(std::iter::repeat_n(7u8, 256));
        let mut c = Collect::default();
        FrameDecoder::new().feed(&long, &mut Vec::new(), &mut c);
        assert_eq!(c.frames[0].0.len, 256);
        assert!(c.frames[0].0.minimal_length);
    }

    #[test]
    fn byte_at_a_time_equals_whole() {
        let mut stream = encode(false, 1, Some([1, 2, 3, 4]), b"frag one ");
        stream.extend(encode(true, 9, None, b"ping"));
        stream.extend(encode(true, 0, Some([9, 8, 7, 6]), &[0xAB; 70_000]));
        stream.extend(encode(true, 2, None, &[]));
        let mut whole = Collect::default();
        FrameDecoder::new().feed(&stream, &mut Vec::new(), &mut whole);
        let mut split = Collect::default();
        let mut decoder = FrameDecoder::new();
        let mut scratch = Vec::new();
        for byte in stream.chunks(1) {
            decoder.feed(byte, &mut scratch, &mut split);
        }
        assert_eq!(whole.frames.len(), 4);
        assert_eq!(whole.frames[2].0.len, 70_000);
        assert!(whole.frames[2].1.iter().all(|&b| b == 0xAB));
        assert_eq!(whole.frames, split.frames);
        assert!(decoder.at_frame_boundary());
    }

    #[test]
    fn non_minimal_and_msb_lengths_are_flagged() {
        let h = FrameHeader::parse(&[0x82, 126, 0, 5]).unwrap();
        assert!(!h.minimal_length);
        let h = FrameHeader::parse(&[0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 1]).unwrap();
        assert!(h.length_msb_set);
        assert_eq!(h.len, 0x8000_0000_0000_0001);
        assert_eq!(FrameHeader::parse(&[0x82, 127, 0]), None);
    }

    #[test]
    fn unmask_in_any_phase() {
        let key = [0x11, 0x22, 0x33, 0x44];
        let plain: Vec<u8> = (0..=255u8).collect();
        let masked: Vec<u8> = plain
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i % 4])
            .collect();
        for split in 0..20 {
            let mut a = masked[..split].to_vec();
            let mut b = masked[split..].to_vec();
            unmask(&mut a, key, 0);
            unmask(&mut b, key, split);
            a.extend(b);
            assert_eq!(a, plain);
        }
    }
}
