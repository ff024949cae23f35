//! What codes and times say, in the words the findings use.

use crate::event::Timestamp;

/// What a close code says, and whether it reports an error.
pub fn close_code_meaning(code: u16) -> (&'static str, bool) {
    match code {
        1000 => ("normal closure", false),
        1001 => ("going away (a page left, or a server shutting down)", false),
        1002 => (
            "protocol error: the peer broke the WebSocket protocol",
            true,
        ),
        1003 => (
            "unsupported data: a text/binary message the peer cannot accept",
            true,
        ),
        1007 => (
            "invalid payload data (e.g. a text message that is not UTF-8)",
            true,
        ),
        1008 => (
            "policy violation: the peer refused the message or the client",
            true,
        ),
        1009 => ("message too big for the peer's limit", true),
        1010 => (
            "the client needed an extension the server did not accept",
            true,
        ),
        1011 => ("internal error in the server", true),
        1012 => ("service restart", true),
        1013 => ("try again later (overloaded)", true),
        1014 => ("bad gateway: a proxy got a bad answer upstream", true),
        3000..=3999 => ("a code registered by a library or framework", false),
        4000..=4999 => ("an application-defined code", false),
        _ => ("a code the RFC does not allow on the wire", true),
    }
}

pub(super) fn status_meaning(status: u16) -> &'static str {
    match status {
        200 => {
            "a plain web server answered: nothing on that path speaks WebSocket, or a proxy in between dropped the Upgrade header"
        }
        301 | 302 | 307 | 308 => {
            "a redirect: the WebSocket endpoint lives elsewhere (often http -> https, i.e. ws -> wss)"
        }
        400 => "the server found the upgrade request malformed (missing or bad WebSocket headers)",
        401 => "authentication required: the client sent no or bad credentials",
        403 => {
            "forbidden: typically the server rejected the Origin header or the client's credentials"
        }
        404 => "wrong path: no WebSocket endpoint at that URI",
        405 => "method not allowed: the upgrade must be a GET",
        426 => {
            "upgrade required: the server wants another protocol version (Sec-WebSocket-Version)"
        }
        429 => "rate limited: the client connects too often",
        500..=599 => "the server (or a proxy) failed while handling the upgrade",
        _ => "the server answered the upgrade with something other than 101 Switching Protocols",
    }
}

pub(super) fn clock(ts: Timestamp) -> String {
    let day = ts.secs.rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}.{:03} UTC",
        day / 3600,
        day / 60 % 60,
        day % 60,
        ts.nanos / 1_000_000
    )
}

pub(super) fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
