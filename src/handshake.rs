//! The HTTP/1.1 opening handshake (RFC 6455 section 4): request and response heads parsed with
//! httparse, and the Sec-WebSocket-Accept check.

use base64::Engine;
use sha1::{Digest, Sha1};

/// The GUID RFC 6455 4.2.2 appends to the client's key.
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Header heads larger than this are not an HTTP exchange worth following.
pub const MAX_HEAD_LEN: usize = 64 * 1024;

const MAX_HEADERS: usize = 96;

/// How many body bytes follow a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyLength {
    #[default]
    None,
    Fixed(u64),
    Chunked,
    /// A response without length: the body runs until the connection closes.
    UntilClose,
}

/// An HTTP request head, with the fields a WebSocket upgrade uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpgradeRequest {
    pub method: String,
    pub uri: String,
    pub host: Option<String>,
    pub origin: Option<String>,
    pub user_agent: Option<String>,
    pub key: Option<String>,
    pub version: Option<String>,
    pub protocols: Vec<String>,
    pub extensions: Vec<String>,
    /// `Upgrade: websocket` is present (case-insensitive token).
    pub upgrade_websocket: bool,
    /// `Connection` lists the `upgrade` token.
    pub connection_upgrade: bool,
    pub body: BodyLength,
}

/// An HTTP response head.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpgradeResponse {
    pub status: u16,
    pub reason: String,
    pub accept: Option<String>,
    pub protocol: Option<String>,
    pub extensions: Vec<String>,
    pub upgrade_websocket: bool,
    pub body: BodyLength,
}

/// The verdict on Sec-WebSocket-Accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptVerdict {
    Ok,
    Mismatch,
    Missing,
}

impl AcceptVerdict {
    pub fn name(self) -> &'static str {
        match self {
            AcceptVerdict::Ok => "ok",
            AcceptVerdict::Mismatch => "mismatch",
            AcceptVerdict::Missing => "missing",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeadError {
    #[error("malformed HTTP head: {0}")]
    Malformed(String),
}

/// The Sec-WebSocket-Accept value a server must send for `key`.
pub fn expected_accept(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.trim().as_bytes());
    sha.update(WEBSOCKET_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

pub fn accept_verdict(request: &UpgradeRequest, response: &UpgradeResponse) -> AcceptVerdict {
    match (&request.key, &response.accept) {
        (_, None) => AcceptVerdict::Missing,
        (Some(key), Some(accept)) if expected_accept(key) == accept.trim() => AcceptVerdict::Ok,
        _ => AcceptVerdict::Mismatch,
    }
}

/// RFC 6455 4.1: the key is 16 random bytes, base64-encoded.
pub fn key_is_valid(key: &str) -> bool {
    base64::engine::general_purpose::STANDARD
        .decode(key.trim())
        .is_ok_and(|raw| raw.len() == 16)
}

/// True when `bytes` can be the start of an HTTP/1.x request: an uppercase method token and a
/// space. Used to decide, from a connection's first bytes, whether to follow it at all.
pub fn looks_like_request_start(bytes: &[u8]) -> bool {
    let token_len = bytes
        .iter()
        .take(16)
        .take_while(|b| b.is_ascii_uppercase())
        .count();
    match bytes.get(token_len) {
        Some(b' ') => token_len >= 3,
        None => token_len == bytes.len() && bytes.len() < 16,
        _ => false,
    }
}

/// True when `bytes` can be the start of an HTTP/1.x response.
pub fn looks_like_response_start(bytes: &[u8]) -> bool {
    let prefix = b"HTTP/1.";
    let n = bytes.len().min(prefix.len());
    bytes[..n] == prefix[..n]
}

fn text(value: &[u8]) -> String {
    String::from_utf8_lossy(value).trim().to_string()
}

fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

fn push_list(list: &mut Vec<String>, value: &[u8]) {
    list.extend(
        value
            .split(|&b| b == b',')
            .map(text)
            .filter(|item| !item.is_empty()),
    );
}

fn body_from_headers(headers: &[httparse::Header<'_>]) -> Option<BodyLength> {
    let mut body = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") && has_token(h.value, "chunked") {
            return Some(BodyLength::Chunked);
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value).ok()?.trim().parse().ok()?;
            body = Some(BodyLength::Fixed(n));
        }
    }
    body
}

/// Parses a request head at the start of `buf`: `Ok(None)` when incomplete, else the request
/// and the head's length in bytes.
pub fn parse_request(buf: &[u8]) -> Result<Option<(UpgradeRequest, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(HeadError::Malformed(e.to_string())),
    };
    let mut out = UpgradeRequest {
        method: req.method.unwrap_or_default().to_string(),
        uri: req.path.unwrap_or_default().to_string(),
        ..UpgradeRequest::default()
    };
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            out.host = Some(text(h.value));
        } else if name.eq_ignore_ascii_case("origin") {
            out.origin = Some(text(h.value));
        } else if name.eq_ignore_ascii_case("user-agent") {
            out.user_agent = Some(text(h.value));
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            out.key = Some(text(h.value));
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            out.version = Some(text(h.value));
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
            push_list(&mut out.protocols, h.value);
        } else if name.eq_ignore_ascii_case("sec-websocket-extensions") {
            push_list(&mut out.extensions, h.value);
        } else if name.eq_ignore_ascii_case("upgrade") {
            out.upgrade_websocket |= has_token(h.value, "websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            out.connection_upgrade |= has_token(h.value, "upgrade");
        }
    }
    // A request has a body only when it says so (RFC 9112 6.3).
    out.body = body_from_headers(req.headers).unwrap_or(BodyLength::None);
    Ok(Some((out, head_len)))
}

/// Parses a response head at the start of `buf`, as [`parse_request`] does.
/// `request_method` decides whether a body follows (no body answers HEAD).
pub fn parse_response(
    buf: &[u8],
    request_method: &str,
) -> Result<Option<(UpgradeResponse, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(HeadError::Malformed(e.to_string())),
    };
    let status = resp.code.unwrap_or_default();
    let mut out = UpgradeResponse {
        status,
        reason: resp.reason.unwrap_or_default().to_string(),
        ..UpgradeResponse::default()
    };
    for h in resp.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("sec-websocket-accept") {
            out.accept = Some(text(h.value));
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
            out.protocol = Some(text(h.value));
        } else if name.eq_ignore_ascii_case("sec-websocket-extensions") {
            push_list(&mut out.extensions, h.value);
        } else if name.eq_ignore_ascii_case("upgrade") {
            out.upgrade_websocket |= has_token(h.value, "websocket");
        }
    }
    // RFC 9112 6.3: 1xx, 204, 304 and answers to HEAD have no body.
    out.body = if (100..200).contains(&status)
        || status == 204
        || status == 304
        || request_method.eq_ignore_ascii_case("HEAD")
    {
        BodyLength::None
    } else {
        body_from_headers(resp.headers).unwrap_or(BodyLength::UntilClose)
    };
    Ok(Some((out, head_len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6455_accept_example() {
        // RFC 6455 section 1.3.
        assert_eq!(
            expected_accept("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn request_fields() {
        let raw = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: WebSocket\r\n\
Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Origin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, x-foo\r\n\
Sec-WebSocket-Version: 13\r\n\r\nrest";
        let (req, n) = parse_request(raw).unwrap().unwrap();
        assert_eq!(&raw[n..], b"rest");
        assert!(req.upgrade_websocket && req.connection_upgrade);
        assert_eq!(req.uri, "/chat");
        assert_eq!(req.protocols, ["chat", "superchat"]);
        assert_eq!(
            req.extensions,
            ["permessage-deflate; client_max_window_bits", "x-foo"]
        );
        assert_eq!(req.version.as_deref(), Some("13"));
        assert_eq!(parse_request(&raw[..40]).unwrap(), None);
    }

    #[test]
    fn response_and_verdicts() {
        let raw =
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x00";
        let (resp, n) = parse_response(raw, "GET").unwrap().unwrap();
        assert_eq!(n, raw.len() - 2);
        assert_eq!(resp.status, 101);
        assert_eq!(resp.body, BodyLength::None);
        let mut req = UpgradeRequest {
            key: Some("dGhlIHNhbXBsZSBub25jZQ==".into()),
            ..Default::default()
        };
        assert_eq!(accept_verdict(&req, &resp), AcceptVerdict::Ok);
        req.key = Some("AAAAAAAAAAAAAAAAAAAAAA==".into());
        assert_eq!(accept_verdict(&req, &resp), AcceptVerdict::Mismatch);
        let no_accept = UpgradeResponse::default();
        assert_eq!(accept_verdict(&req, &no_accept), AcceptVerdict::Missing);
    }

    #[test]
    fn sniffing() {
        assert!(looks_like_request_start(b"GET / HTTP/1.1"));
        assert!(looks_like_request_start(b"GE"));
        assert!(!looks_like_request_start(b"\x16\x03\x01"));
        assert!(!looks_like_request_start(b"SSH-2.0"));
        assert!(looks_like_response_start(b"HTTP/1.1 200"));
        assert!(!looks_like_response_start(b"\x81\x05"));
    }
}
