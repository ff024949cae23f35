//! The opening handshake's rules (RFC 6455 4.1, 4.2.2): what a request and its 101 must say
//! of each other.

use super::handshake;
use crate::anomaly::AnomalyKind;
use crate::context::Context;
use crate::event::Direction;
use crate::wire::http::{AcceptVerdict, UpgradeRequest, UpgradeResponse};

/// Anomalies of the opening handshake itself.
pub(crate) fn check_handshake(
    request: &UpgradeRequest,
    response: &UpgradeResponse,
    accept: AcceptVerdict,
    ctx: &mut Context<'_>,
) {
    let mut missing = Vec::new();
    if !request.method().eq_ignore_ascii_case("GET") {
        missing.push("method GET");
    }
    if !request.connection_upgrade {
        missing.push("Connection: Upgrade");
    }
    if !request.key().is_some_and(handshake::key_is_valid) {
        missing.push("a Sec-WebSocket-Key of 16 base64 bytes");
    }
    if request.version() != Some("13") {
        missing.push("Sec-WebSocket-Version: 13");
    }
    if !missing.is_empty() {
        let detail = format!("the upgrade request lacks {}", missing.join(", "));
        ctx.anomaly(
            Some(Direction::ClientToServer),
            AnomalyKind::BadUpgradeRequest,
            &detail,
        );
    }
    if response.status != 101 {
        return;
    }
    // RFC 6455 4.1: a client fails the connection when the header is absent or wrong. A 101
    // whose request was not captured has nothing to check against. The digest is taken again
    // only for the message: a handshake that is right (nearly all) hashes its key once.
    let expected = || {
        request
            .key()
            .map(handshake::expected_accept)
            .unwrap_or_default()
    };
    let detail = match (accept, response.accept()) {
        (AcceptVerdict::Mismatch, Some(got)) => Some(format!(
            "Sec-WebSocket-Accept is {got:?}; the key calls for {:?}",
            expected()
        )),
        (AcceptVerdict::Missing, _) if !request.method().is_empty() => Some(format!(
            "the 101 has no Sec-WebSocket-Accept; the key calls for {:?}",
            expected()
        )),
        _ => None,
    };
    if let Some(detail) = detail {
        ctx.anomaly(
            Some(Direction::ServerToClient),
            AnomalyKind::AcceptMismatch,
            &detail,
        );
    }
    for ext in &response.extensions {
        let name = extension_name(ext);
        if !request
            .extensions
            .iter()
            .any(|offer| extension_name(offer).eq_ignore_ascii_case(name))
        {
            let detail = format!("the server accepted {name:?}, which the client did not offer");
            ctx.anomaly(
                Some(Direction::ServerToClient),
                AnomalyKind::UnrequestedExtension,
                &detail,
            );
        }
    }
    if let Some(protocol) = response.protocol()
        && !request.protocols.iter().any(|p| p == protocol)
    {
        let detail = format!("the server selected {protocol:?}, which the client did not offer");
        ctx.anomaly(
            Some(Direction::ServerToClient),
            AnomalyKind::UnrequestedProtocol,
            &detail,
        );
    }
}

/// "permessage-deflate; client_max_window_bits" -> "permessage-deflate".
pub fn extension_name(offer: &str) -> &str {
    offer.split(';').next().unwrap_or("").trim()
}
