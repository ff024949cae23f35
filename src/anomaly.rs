//! The protocol violations and capture problems wsnoop names. Each kind has a stable
//! snake_case name (the JSON contract) and the rule it enforces.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AnomalyKind {
    UnmaskedClientFrame,
    MaskedServerFrame,
    ReservedOpcode,
    RsvBitsWithoutExtension,
    Rsv1OnContinuationOrControl,
    ControlFrameFragmented,
    ControlFrameTooLong,
    InvalidCloseCode,
    InvalidClosePayload,
    InvalidUtf8,
    ContinuationWithoutStart,
    DataFrameInsideFragmentedMessage,
    FrameAfterClose,
    NonMinimalLength,
    LengthMsbSet,
    DecompressionFailed,
    DeflateContextLost,
    MessageTooLarge,
    AcceptMismatch,
    UnrequestedExtension,
    UnrequestedProtocol,
    BadUpgradeRequest,
    IncompleteFrame,
    TcpGap,
    TcpOverlapConflict,
    MalformedHttp,
    HttpAbandoned,
    TruncatedCapture,
    TlsNoKeys,
    TlsDecryptFailed,
    TlsUnsupported,
    TlsMalformed,
}

impl AnomalyKind {
    pub const ALL: [AnomalyKind; 32] = [
        AnomalyKind::UnmaskedClientFrame,
        AnomalyKind::MaskedServerFrame,
        AnomalyKind::ReservedOpcode,
        AnomalyKind::RsvBitsWithoutExtension,
        AnomalyKind::Rsv1OnContinuationOrControl,
        AnomalyKind::ControlFrameFragmented,
        AnomalyKind::ControlFrameTooLong,
        AnomalyKind::InvalidCloseCode,
        AnomalyKind::InvalidClosePayload,
        AnomalyKind::InvalidUtf8,
        AnomalyKind::ContinuationWithoutStart,
        AnomalyKind::DataFrameInsideFragmentedMessage,
        AnomalyKind::FrameAfterClose,
        AnomalyKind::NonMinimalLength,
        AnomalyKind::LengthMsbSet,
        AnomalyKind::DecompressionFailed,
        AnomalyKind::DeflateContextLost,
        AnomalyKind::MessageTooLarge,
        AnomalyKind::AcceptMismatch,
        AnomalyKind::UnrequestedExtension,
        AnomalyKind::UnrequestedProtocol,
        AnomalyKind::BadUpgradeRequest,
        AnomalyKind::IncompleteFrame,
        AnomalyKind::TcpGap,
        AnomalyKind::TcpOverlapConflict,
        AnomalyKind::MalformedHttp,
        AnomalyKind::HttpAbandoned,
        AnomalyKind::TruncatedCapture,
        AnomalyKind::TlsNoKeys,
        AnomalyKind::TlsDecryptFailed,
        AnomalyKind::TlsUnsupported,
        AnomalyKind::TlsMalformed,
    ];

    pub fn name(self) -> &'static str {
        self.describe().0
    }

    /// The rule, for documentation and `--list-anomalies`.
    pub fn rule(self) -> &'static str {
        self.describe().1
    }

    fn describe(self) -> (&'static str, &'static str) {
        use AnomalyKind::*;
        match self {
            UnmaskedClientFrame => (
                "unmasked_client_frame",
                "RFC 6455 5.1: a client MUST mask every frame it sends",
            ),
            MaskedServerFrame => (
                "masked_server_frame",
                "RFC 6455 5.1: a server MUST NOT mask any frame it sends",
            ),
            ReservedOpcode => (
                "reserved_opcode",
                "RFC 6455 5.2: opcodes 0x3-0x7 and 0xB-0xF are reserved",
            ),
            RsvBitsWithoutExtension => (
                "rsv_bits_without_extension",
                "RFC 6455 5.2: RSV1-3 MUST be 0 unless a negotiated extension defines them",
            ),
            Rsv1OnContinuationOrControl => (
                "rsv1_on_continuation_or_control",
                "RFC 7692 6.1: permessage-deflate sets RSV1 only on a message's first frame",
            ),
            ControlFrameFragmented => (
                "control_frame_fragmented",
                "RFC 6455 5.5: control frames MUST NOT be fragmented",
            ),
            ControlFrameTooLong => (
                "control_frame_too_long",
                "RFC 6455 5.5: control frames MUST have a payload of 125 bytes or less",
            ),
            InvalidCloseCode => (
                "invalid_close_code",
                "RFC 6455 7.4: a close code must be 1000-1003, 1007-1014 or 3000-4999",
            ),
            InvalidClosePayload => (
                "invalid_close_payload",
                "RFC 6455 5.5.1: a close payload is empty or starts with a 2-byte code",
            ),
            InvalidUtf8 => (
                "invalid_utf8",
                "RFC 6455 8.1: text messages and close reasons MUST be valid UTF-8",
            ),
            ContinuationWithoutStart => (
                "continuation_without_start",
                "RFC 6455 5.4: a continuation frame continues a fragmented message",
            ),
            DataFrameInsideFragmentedMessage => (
                "data_frame_inside_fragmented_message",
                "RFC 6455 5.4: fragments of one message MUST NOT be interleaved with another",
            ),
            FrameAfterClose => (
                "frame_after_close",
                "RFC 6455 5.5.1: an endpoint MUST NOT send frames after its close frame",
            ),
            NonMinimalLength => (
                "non_minimal_length",
                "RFC 6455 5.2: the minimal number of bytes MUST be used to encode the length",
            ),
            LengthMsbSet => (
                "length_msb_set",
                "RFC 6455 5.2: the most significant bit of a 64-bit length MUST be 0",
            ),
            DecompressionFailed => (
                "decompression_failed",
                "RFC 7692 7.2.2: a compressed message must inflate",
            ),
            DeflateContextLost => (
                "deflate_context_lost",
                "RFC 7692 7.2.3: with context takeover, later messages need every earlier one",
            ),
            MessageTooLarge => (
                "message_too_large",
                "a message exceeded --max-message bytes (after decompression)",
            ),
            AcceptMismatch => (
                "accept_mismatch",
                "RFC 6455 4.2.2: Sec-WebSocket-Accept MUST be base64(SHA-1(key + GUID))",
            ),
            UnrequestedExtension => (
                "unrequested_extension",
                "RFC 6455 9.1: a server MUST NOT accept an extension the client did not offer",
            ),
            UnrequestedProtocol => (
                "unrequested_protocol",
                "RFC 6455 4.1: the selected subprotocol MUST be one the client offered",
            ),
            BadUpgradeRequest => (
                "bad_upgrade_request",
                "RFC 6455 4.1: an upgrade request needs Connection: Upgrade, a 16-byte key and version 13",
            ),
            IncompleteFrame => (
                "incomplete_frame",
                "the connection ended inside a frame or a fragmented message",
            ),
            TcpGap => (
                "tcp_gap",
                "bytes of the TCP stream were not captured; decoding resumes after them",
            ),
            TcpOverlapConflict => (
                "tcp_overlap_conflict",
                "a retransmission of bytes the receiver had not acknowledged yet carried different bytes for the same sequence range; the first copy is kept (a changed copy of bytes already acknowledged is dropped by the receiver, RFC 9293 3.10.7.4, and not compared)",
            ),
            MalformedHttp => (
                "malformed_http",
                "RFC 9112 2-5: a handshake head with bytes HTTP forbids (control bytes, invalid UTF-8, a bad header name, obsolete folding); read leniently",
            ),
            HttpAbandoned => (
                "http_abandoned",
                "wsnoop stopped following the HTTP of a connection that meant WebSocket, or whose HTTP broke; the detail says why",
            ),
            TruncatedCapture => (
                "truncated_capture",
                "the capture's snapshot length cut packets short; decoding resumes after the bytes it cut",
            ),
            TlsNoKeys => (
                "tls_no_keys",
                "a TLS connection stays encrypted: no key log secret for its client random (or its handshake was not captured)",
            ),
            TlsDecryptFailed => (
                "tls_decrypt_failed",
                "a TLS record failed its authentication tag with the logged secrets: a wrong or stale key log",
            ),
            TlsUnsupported => (
                "tls_unsupported",
                "a TLS connection stays encrypted: its cipher suite is one wsnoop does not decrypt",
            ),
            TlsMalformed => (
                "tls_malformed",
                "RFC 8446 5.1 / RFC 5246 6.2: bytes of a TLS connection that are not a valid record; the rest of it stays encrypted",
            ),
        }
    }
}

/// Why an anomaly was reported: something an endpoint sent or did, or bytes the capture
/// missed and what their loss broke (a message cut short, a deflate context lost). Only the
/// first is a fault of the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Cause {
    #[default]
    Traffic,
    /// Bytes the capture did not see: dropped, before the capture began or after it ended.
    Gap,
    /// Bytes the capture's snapshot length cut off their packets.
    Snaplen,
    /// What wsnoop gave up to stay within `--max-memory`.
    Memory,
}

impl Cause {
    pub fn name(self) -> &'static str {
        match self {
            Cause::Traffic => "traffic",
            Cause::Gap => "gap",
            Cause::Snaplen => "snaplen",
            Cause::Memory => "memory",
        }
    }

    /// The capture, not the traffic, is at fault.
    pub fn is_capture(self) -> bool {
        self != Cause::Traffic
    }
}

/// Close codes an endpoint may send (RFC 6455 7.4.1 and the IANA registry): 1000-1003,
/// 1007-1014 and the application ranges 3000-4999. 1004-1006 and 1015 must never be sent.
pub fn close_code_is_valid(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_snake_case() {
        let mut names: Vec<&str> = AnomalyKind::ALL.iter().map(|k| k.name()).collect();
        assert!(names.iter().all(|n| {
            n.bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit())
        }));
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), AnomalyKind::ALL.len());
    }

    #[test]
    fn close_codes() {
        for ok in [1000, 1001, 1003, 1007, 1011, 1014, 3000, 4999] {
            assert!(close_code_is_valid(ok), "{ok}");
        }
        for bad in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
            assert!(!close_code_is_valid(bad), "{bad}");
        }
    }
}
