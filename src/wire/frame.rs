//! The RFC 6455 section 5.2 frame header as a value: its opcode, its fields, and how it is
//! read from its bytes.

/// A frame's opcode (RFC 6455 section 5.2, 11.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
    /// 0x3-0x7 (non-control) and 0xB-0xF (control) are reserved.
    Reserved(u8),
}

impl Opcode {
    pub fn from_nibble(value: u8) -> Opcode {
        match value & 0x0f {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            other => Opcode::Reserved(other),
        }
    }

    pub fn value(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
            Opcode::Reserved(n) => n,
        }
    }

    /// Control frames have the high bit of the opcode set, reserved ones included.
    pub fn is_control(self) -> bool {
        self.value() & 0x8 != 0
    }

    /// The name used in every output format: "text", "close", ..., "reserved-11".
    pub fn name(self) -> &'static str {
        const RESERVED: [&str; 16] = [
            "reserved-0",
            "reserved-1",
            "reserved-2",
            "reserved-3",
            "reserved-4",
            "reserved-5",
            "reserved-6",
            "reserved-7",
            "reserved-8",
            "reserved-9",
            "reserved-10",
            "reserved-11",
            "reserved-12",
            "reserved-13",
            "reserved-14",
            "reserved-15",
        ];
        match self {
            Opcode::Continuation => "continuation",
            Opcode::Text => "text",
            Opcode::Binary => "binary",
            Opcode::Close => "close",
            Opcode::Ping => "ping",
            Opcode::Pong => "pong",
            Opcode::Reserved(n) => RESERVED[usize::from(n & 0x0f)],
        }
    }
}

/// One decoded frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    /// RSV1 = 4, RSV2 = 2, RSV3 = 1, as Wireshark and Zeek number them.
    pub rsv: u8,
    pub opcode: Opcode,
    pub mask: Option<[u8; 4]>,
    /// The payload length as declared on the wire.
    pub len: u64,
    /// Bytes the header occupied: 2 to 14.
    pub header_len: u8,
    /// False when a 16- or 64-bit length encodes a value a shorter form could carry
    /// (RFC 6455 5.2: "the minimal number of bytes MUST be used").
    pub minimal_length: bool,
    /// The 64-bit length had its most significant bit set, which RFC 6455 forbids.
    pub length_msb_set: bool,
}

impl FrameHeader {
    /// Parses a complete header from the start of `bytes`, or returns `None` when more bytes
    /// are needed. Every bit pattern is a header; what breaks the rules is flagged, not refused.
    pub fn parse(bytes: &[u8]) -> Option<FrameHeader> {
        let [b0, b1, ..] = *bytes else { return None };
        let needed = Self::needed_len(b1);
        if bytes.len() < needed {
            return None;
        }
        let len7 = b1 & 0x7f;
        let (len, ext_len) = match len7 {
            126 => (u64::from(u16::from_be_bytes([bytes[2], bytes[3]])), 2),
            127 => {
                let mut raw = [0u8; 8];
                raw.copy_from_slice(&bytes[2..10]);
                (u64::from_be_bytes(raw), 8)
            }
            n => (u64::from(n), 0),
        };
        let minimal_length = match len7 {
            126 => len > 125,
            127 => len > 0xffff,
            _ => true,
        };
        let mask = if b1 & 0x80 != 0 {
            let at = 2 + ext_len;
            Some([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        } else {
            None
        };
        Some(FrameHeader {
            fin: b0 & 0x80 != 0,
            rsv: (b0 >> 4) & 0x07,
            opcode: Opcode::from_nibble(b0),
            mask,
            len,
            header_len: needed as u8,
            minimal_length,
            length_msb_set: len7 == 127 && len >> 63 != 0,
        })
    }

    /// The header's full length, known from its second byte alone.
    pub fn needed_len(second_byte: u8) -> usize {
        let ext = match second_byte & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if second_byte & 0x80 != 0 { 4 } else { 0 };
        2 + ext + mask
    }
}
