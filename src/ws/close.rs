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

/// The code and reason of a close frame sent by `dir`, whose kept payload is `payload`; what
/// they break is reported.
pub(super) fn check_close(
    h: &FrameHeader,
    payload: &[u8],
    dir: Direction,
    ctx: &mut Context<'_>,
) -> (Option<u16>, Cow<'static, str>) {
    if h.len == 1 {
        ctx.anomaly(
            Some(dir),
            AnomalyKind::InvalidClosePayload,
            "a close frame with a 1-byte payload",
        );
        return (None, Cow::Borrowed(""));
    }
    let (code, reason) = match payload {
        [hi, lo, reason @ ..] => (Some(u16::from_be_bytes([*hi, *lo])), reason),
        _ => (None, &[][..]),
    };
    let reason_text = match std::str::from_utf8(reason) {
        Ok(text) => Cow::Owned(text.to_string()),
        Err(_) => {
            let lossy = String::from_utf8_lossy(reason).into_owned();
            ctx.anomaly(
                Some(dir),
                AnomalyKind::InvalidUtf8,
                "a close reason that is not valid UTF-8",
            );
            Cow::Owned(lossy)
        }
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
    (code, reason_text)
}
