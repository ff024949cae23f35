//! The close handshake (RFC 6455 5.5.1, 7.1.5): the close frames seen and what their
//! payloads say.

use std::borrow::Cow;

use crate::anomaly::{AnomalyKind, close_code_is_valid};
use crate::context::Context;
use crate::event::{Direction, Timestamp};
use crate::wire::frame::FrameHeader;

/// The close frames seen on a connection.
#[derive(Debug, Default)]
pub(super) struct CloseTrack {
    pub(super) first: Option<(Direction, Option<u16>, String)>,
    /// When the first close frame was captured.
    pub(super) first_ts: Timestamp,
    pub(super) reply: Option<Option<u16>>,
}

/// The code of a close frame sent by `dir`, whose kept payload is `payload`; what the code
/// and the reason break is reported. The reason is [`close_reason`]'s to read, where it is
/// needed: most are never kept or shown.
pub(super) fn check_close(
    h: &FrameHeader,
    payload: &[u8],
    dir: Direction,
    ctx: &mut Context<'_>,
) -> Option<u16> {
    if h.len == 1 {
        ctx.anomaly(
            Some(dir),
            AnomalyKind::InvalidClosePayload,
            "a close frame with a 1-byte payload",
        );
        return None;
    }
    let code = match payload {
        [hi, lo, reason @ ..] => {
            if std::str::from_utf8(reason).is_err() {
                ctx.anomaly(
                    Some(dir),
                    AnomalyKind::InvalidUtf8,
                    "a close reason that is not valid UTF-8",
                );
            }
            Some(u16::from_be_bytes([*hi, *lo]))
        }
        _ => None,
    };
    if let Some(code) = code
        && !close_code_is_valid(code)
    {
        ctx.anomaly(
            Some(dir),
            AnomalyKind::InvalidCloseCode,
            &format!("close code {code} may not be sent"),
        );
    }
    code
}

/// The reason of a close frame whose kept payload is `payload` (what follows the code), as
/// text: invalid UTF-8 replaced, as [`check_close`] reports.
pub(super) fn close_reason(payload: &[u8]) -> Cow<'_, str> {
    match payload {
        [_, _, reason @ ..] => String::from_utf8_lossy(reason),
        _ => Cow::Borrowed(""),
    }
}

#[cfg(test)]
mod tests {
    use super::close_reason;

    /// RFC 6455 5.5.1: the reason is what follows the two-byte code; with no code there is
    /// none. Bytes that are not UTF-8 show as U+FFFD.
    #[test]
    fn the_reason_follows_the_code() {
        assert_eq!(close_reason(b"\x03\xe8bye"), "bye");
        assert_eq!(close_reason(b"\x03\xe8"), "");
        assert_eq!(close_reason(b"\x03"), "");
        assert_eq!(close_reason(b""), "");
        assert_eq!(close_reason(b"\x03\xe8a\xffb"), "a\u{fffd}b");
    }
}
