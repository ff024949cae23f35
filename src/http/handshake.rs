//! The HTTP/1.1 opening handshake (RFC 6455 section 4): request and response heads parsed with
//! httparse (or, when it refuses a head, leniently by hand), and the Sec-WebSocket-Accept check.

use std::borrow::Cow;

use base64::Engine;
use sha1::{Digest, Sha1};

pub use super::head::HeadError;
use crate::wire::http::{
    AcceptVerdict, BodyLength, REQUEST_TEXTS, RESPONSE_TEXTS, RequestText, ResponseText,
    UpgradeRequest, UpgradeResponse,
};

use super::head;

/// The GUID RFC 6455 4.2.2 appends to the client's key.
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Header heads larger than this are not an HTTP exchange worth following.
pub const MAX_HEAD_LEN: usize = 64 * 1024;

const MAX_HEADERS: usize = 96;

/// The Sec-WebSocket-Accept value a server must send for `key`.
pub fn expected_accept(key: &str) -> String {
    let mut accept = [0u8; ACCEPT_LEN];
    String::from_utf8_lossy(expected_accept_bytes(key, &mut accept)).into_owned()
}

/// A SHA-1 digest in base64: 28 characters.
const ACCEPT_LEN: usize = 28;

/// [`expected_accept`] written into `out`: every connection checks one, and none needs it kept.
fn expected_accept_bytes<'a>(key: &str, out: &'a mut [u8; ACCEPT_LEN]) -> &'a [u8] {
    let mut sha = Sha1::new();
    sha.update(key.trim().as_bytes());
    sha.update(WEBSOCKET_GUID.as_bytes());
    let n = base64::engine::general_purpose::STANDARD
        .encode_slice(sha.finalize(), out)
        .unwrap_or(0);
    &out[..n]
}

pub fn accept_verdict(request: &UpgradeRequest, response: &UpgradeResponse) -> AcceptVerdict {
    let mut expected = [0u8; ACCEPT_LEN];
    match (request.key(), response.accept()) {
        (_, None) => AcceptVerdict::Missing,
        (Some(key), Some(accept))
            if expected_accept_bytes(key, &mut expected) == accept.trim().as_bytes() =>
        {
            AcceptVerdict::Ok
        }
        _ => AcceptVerdict::Mismatch,
    }
}

/// RFC 6455 4.1: the key is 16 random bytes, base64-encoded.
pub fn key_is_valid(key: &str) -> bool {
    // Room for one byte more than a key: a longer one fails to fit, and is as invalid.
    let mut raw = [0u8; 17];
    base64::engine::general_purpose::STANDARD
        .decode_slice(key.trim(), &mut raw)
        .is_ok_and(|n| n == 16)
}

/// A header value as text, trimmed: borrowed from the head unless it is not UTF-8. Most
/// values are ASCII: they skip the lossy conversion's scan, and what `str::trim` would strip
/// is stripped the same either way.
fn text(value: &[u8]) -> Cow<'_, str> {
    // What `str::trim` strips that the ASCII trim leaves: anything not ASCII, and the
    // vertical tab. At any other end its decoding (a quarter of the call, callgrind) is skipped.
    let settled = |end: Option<&u8>| end.is_none_or(|&b| b.is_ascii() && b != 0x0b);
    let value = value.trim_ascii();
    match std::str::from_utf8(value) {
        Ok(text) if settled(value.first()) && settled(value.last()) => Cow::Borrowed(text),
        Ok(text) => Cow::Borrowed(text.trim()),
        Err(_) => Cow::Owned(String::from_utf8_lossy(value).trim().to_owned()),
    }
}

/// Whether a comma-separated header value lists `token` (no comma or space in it). The usual
/// value is the token alone, checked before the list is split.
fn has_token(value: &[u8], token: &str) -> bool {
    value.eq_ignore_ascii_case(token.as_bytes())
        || value
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

fn push_list(list: &mut Vec<String>, value: &[u8]) {
    list.extend(
        value
            .split(|&b| b == b',')
            .map(text)
            .filter(|item| !item.is_empty())
            .map(Cow::into_owned),
    );
}

fn body_from_headers<'h>(
    headers: impl Iterator<Item = (&'h [u8], &'h [u8])>,
) -> Option<BodyLength> {
    let mut body = None;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case(b"transfer-encoding") && has_token(value, "chunked") {
            return Some(BodyLength::Chunked);
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = std::str::from_utf8(value).ok()?.trim().parse().ok()?;
            body = Some(BodyLength::Fixed(n));
        }
    }
    body
}

/// A head's text values as read, before they are put in one buffer; the last of a repeated
/// header wins.
type Texts<'h, const N: usize> = [Option<Cow<'h, str>>; N];

fn texts_as_str<'t, const N: usize>(texts: &'t Texts<'_, N>) -> [Option<&'t str>; N] {
    std::array::from_fn(|field| texts[field].as_deref())
}

impl UpgradeRequest {
    fn header<'h>(&mut self, name: &[u8], value: &'h [u8], texts: &mut Texts<'h, REQUEST_TEXTS>) {
        let field = if name.eq_ignore_ascii_case(b"host") {
            RequestText::Host
        } else if name.eq_ignore_ascii_case(b"origin") {
            RequestText::Origin
        } else if name.eq_ignore_ascii_case(b"user-agent") {
            RequestText::UserAgent
        } else if name.eq_ignore_ascii_case(b"sec-websocket-key") {
            RequestText::Key
        } else if name.eq_ignore_ascii_case(b"sec-websocket-version") {
            RequestText::Version
        } else {
            if name.eq_ignore_ascii_case(b"sec-websocket-protocol") {
                push_list(&mut self.protocols, value);
            } else if name.eq_ignore_ascii_case(b"sec-websocket-extensions") {
                push_list(&mut self.extensions, value);
            } else if name.eq_ignore_ascii_case(b"upgrade") {
                self.upgrade_websocket |= has_token(value, "websocket");
            } else if name.eq_ignore_ascii_case(b"connection") {
                self.connection_upgrade |= has_token(value, "upgrade");
            }
            return;
        };
        texts[field as usize] = Some(text(value));
    }
}

impl UpgradeResponse {
    fn header<'h>(&mut self, name: &[u8], value: &'h [u8], texts: &mut Texts<'h, RESPONSE_TEXTS>) {
        if name.eq_ignore_ascii_case(b"sec-websocket-accept") {
            texts[ResponseText::Accept as usize] = Some(text(value));
        } else if name.eq_ignore_ascii_case(b"sec-websocket-protocol") {
            texts[ResponseText::Protocol as usize] = Some(text(value));
        } else if name.eq_ignore_ascii_case(b"sec-websocket-extensions") {
            push_list(&mut self.extensions, value);
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            self.upgrade_websocket |= has_token(value, "websocket");
        }
    }

    /// RFC 9112 6.3: 1xx, 204, 304 and answers to HEAD have no body; without a length, the
    /// body runs until the connection closes.
    fn set_body(&mut self, declared: Option<BodyLength>, request_method: &str) {
        self.body = if (100..200).contains(&self.status)
            || self.status == 204
            || self.status == 304
            || request_method.eq_ignore_ascii_case("HEAD")
        {
            BodyLength::None
        } else {
            declared.unwrap_or(BodyLength::UntilClose)
        };
    }
}

/// Parses a request head at the start of `buf`: `Ok(None)` when incomplete, else the request
/// and the head's length in bytes. A head httparse refuses is parsed again leniently (see
/// the `head` module); what was odd about it is in `malformed`.
pub fn parse_request(buf: &[u8]) -> Result<Option<(UpgradeRequest, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return lenient_request(buf, e),
    };
    let mut out = UpgradeRequest::default();
    let mut texts: Texts<'_, REQUEST_TEXTS> = Default::default();
    texts[RequestText::Method as usize] = Some(Cow::Borrowed(req.method.unwrap_or_default()));
    texts[RequestText::Uri as usize] = Some(Cow::Borrowed(req.path.unwrap_or_default()));
    for h in req.headers.iter() {
        out.header(h.name.as_bytes(), h.value, &mut texts);
    }
    out.replace_text(texts_as_str(&texts));
    // A request has a body only when it says so (RFC 9112 6.3).
    out.body = body_from_headers(req.headers.iter().map(|h| (h.name.as_bytes(), h.value)))
        .unwrap_or(BodyLength::None);
    Ok(Some((out, head_len)))
}

fn lenient_request(
    buf: &[u8],
    refused: httparse::Error,
) -> Result<Option<(UpgradeRequest, usize)>, HeadError> {
    let Some(head) = head::parse(buf, head::Kind::Request, refused)? else {
        return Ok(None);
    };
    let mut out = UpgradeRequest::default();
    let mut texts: Texts<'_, REQUEST_TEXTS> = Default::default();
    texts[RequestText::Method as usize] = Some(text(head.start[0]));
    texts[RequestText::Uri as usize] = Some(String::from_utf8_lossy(head.start[1]));
    for (name, value) in &head.headers {
        out.header(name, value, &mut texts);
    }
    out.replace_text(texts_as_str(&texts));
    out.malformed = head.odd;
    out.body = body_from_headers(head.headers.iter().map(|(n, v)| (*n, &v[..])))
        .unwrap_or(BodyLength::None);
    Ok(Some((out, head.len)))
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
        Err(e) => return lenient_response(buf, request_method, e),
    };
    let mut out = UpgradeResponse::default();
    let mut texts: Texts<'_, RESPONSE_TEXTS> = Default::default();
    texts[ResponseText::Reason as usize] = Some(Cow::Borrowed(resp.reason.unwrap_or_default()));
    for h in resp.headers.iter() {
        out.header(h.name.as_bytes(), h.value, &mut texts);
    }
    out.replace_text(texts_as_str(&texts));
    out.status = resp.code.unwrap_or_default();
    out.set_body(
        body_from_headers(resp.headers.iter().map(|h| (h.name.as_bytes(), h.value))),
        request_method,
    );
    Ok(Some((out, head_len)))
}

fn lenient_response(
    buf: &[u8],
    request_method: &str,
    refused: httparse::Error,
) -> Result<Option<(UpgradeResponse, usize)>, HeadError> {
    let Some(head) = head::parse(buf, head::Kind::Response, refused)? else {
        return Ok(None);
    };
    let mut out = UpgradeResponse::default();
    let mut texts: Texts<'_, RESPONSE_TEXTS> = Default::default();
    texts[ResponseText::Reason as usize] = Some(text(head.start[2]));
    for (name, value) in &head.headers {
        out.header(name, value, &mut texts);
    }
    out.replace_text(texts_as_str(&texts));
    // The start line's shape was checked: three digits.
    out.status = std::str::from_utf8(head.start[1])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    out.malformed = head.odd;
    out.set_body(
        body_from_headers(head.headers.iter().map(|(n, v)| (*n, &v[..]))),
        request_method,
    );
    Ok(Some((out, head.len)))
}

/// True when the start of a head (one too large to parse whole) has an `Upgrade: websocket`
/// header among its complete lines: the connection meant to become WebSocket.
pub fn partial_head_upgrades(buf: &[u8]) -> bool {
    head::header_lines(buf).any(|(name, value)| is_upgrade_websocket(name, value))
}

/// True when one header line (without its line end) is `Upgrade: websocket`.
pub fn line_upgrades(line: &[u8]) -> bool {
    line.iter()
        .position(|&b| b == b':')
        .is_some_and(|colon| is_upgrade_websocket(&line[..colon], &line[colon + 1..]))
}

fn is_upgrade_websocket(name: &[u8], value: &[u8]) -> bool {
    name.trim_ascii().eq_ignore_ascii_case(b"upgrade") && has_token(value, "websocket")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::http::{looks_like_request_start, looks_like_response_start};

    /// The quick paths against the plain formulas they replace: a value made text as the
    /// lossy conversion and `str::trim` make it; a key valid when it decodes to 16 bytes.
    #[test]
    fn header_text_and_key_checks_match_the_plain_formulas() {
        let values: [&[u8]; 9] = [
            b"  websocket ",
            b"\x0bvertical tab\x0b",
            b"\t\r\n",
            "\u{a0}nbsp\u{3000}".as_bytes(),
            b"caf\xc3\xa9 ",
            b" bad \xff utf-8 ",
            b"\xe2\x80",
            b"",
            b"\x0c \x0b x \x0b \x0c",
        ];
        for value in values {
            assert_eq!(
                text(value),
                String::from_utf8_lossy(value).trim(),
                "{value:?}"
            );
        }
        for value in [
            &b"websocket"[..],
            b"WebSocket",
            b" websocket\t",
            b"keep-alive, Upgrade",
            b"websockets",
            b"web socket",
            b",",
            b"",
        ] {
            for token in ["websocket", "upgrade"] {
                let plain = String::from_utf8_lossy(value)
                    .split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case(token));
                assert_eq!(has_token(value, token), plain, "{value:?} {token}");
            }
        }
        let std = &base64::engine::general_purpose::STANDARD;
        for len in 0..24 {
            let key = std.encode(vec![7u8; len]);
            for key in [
                key.clone(),
                format!(" {key}\t"),
                format!("{key}="),
                key.replace('H', "*"),
            ] {
                let plain = std.decode(key.trim()).is_ok_and(|raw| raw.len() == 16);
                assert_eq!(key_is_valid(&key), plain, "{key:?}");
            }
        }
        let accept = expected_accept(" dGhlIHNhbXBsZSBub25jZQ== ");
        assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

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
        assert_eq!(req.uri(), "/chat");
        assert_eq!(req.protocols, ["chat", "superchat"]);
        assert_eq!(
            req.extensions,
            ["permessage-deflate; client_max_window_bits", "x-foo"]
        );
        assert_eq!(req.version(), Some("13"));
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
        let mut req = UpgradeRequest::default();
        req.set_text(RequestText::Key, Some("dGhlIHNhbXBsZSBub25jZQ=="));
        assert_eq!(accept_verdict(&req, &resp), AcceptVerdict::Ok);
        req.set_text(RequestText::Key, Some("AAAAAAAAAAAAAAAAAAAAAA=="));
        assert_eq!(accept_verdict(&req, &resp), AcceptVerdict::Mismatch);
        let no_accept = UpgradeResponse::default();
        assert_eq!(accept_verdict(&req, &no_accept), AcceptVerdict::Missing);
    }

    const KEY_LINE: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

    fn odd_request(head: &[u8]) -> (UpgradeRequest, usize) {
        let full = [head, b"\x81\x80"].concat();
        let (req, n) = parse_request(&full)
            .expect("parsed leniently")
            .expect("complete");
        assert_eq!(n, head.len(), "the head ends where it does");
        // Every prefix is incomplete, none malformed: the session waits for more bytes.
        for cut in 0..head.len() {
            assert_eq!(parse_request(&head[..cut]), Ok(None), "first {cut} bytes");
        }
        (req, n)
    }

    #[test]
    fn control_byte_in_a_header_value_is_named() {
        let head = format!(
            "GET /chat HTTP/1.1\r\nHost: a\r\nUser-Agent: evil\x1b[31mred\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\n{KEY_LINE}Sec-WebSocket-Version: 13\r\n\r\n"
        );
        assert!(
            httparse::Request::new(&mut [httparse::EMPTY_HEADER; 16])
                .parse(head.as_bytes())
                .is_err()
        );
        let (req, _) = odd_request(head.as_bytes());
        assert_eq!(req.user_agent(), Some("evil\x1b[31mred"));
        assert!(req.upgrade_websocket && req.connection_upgrade);
        assert_eq!(req.key(), Some("dGhlIHNhbXBsZSBub25jZQ=="));
        let odd = req.malformed.expect("an oddity");
        assert!(
            odd.contains("control byte 0x1b") && odd.contains("\"User-Agent\""),
            "{odd}"
        );
    }

    #[test]
    fn invalid_utf8_in_the_uri_becomes_replacement_characters() {
        let head = [
            &b"GET /caf\xff\xfe?q=1 HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"[..],
            b"Connection: Upgrade\r\n\r\n",
        ]
        .concat();
        let (req, _) = odd_request(&head);
        assert_eq!(req.uri(), "/caf\u{fffd}\u{fffd}?q=1");
        let odd = req.malformed.expect("an oddity");
        assert!(
            odd.contains("invalid UTF-8 (byte 0xff at offset 4) in the URI"),
            "{odd}"
        );
    }

    #[test]
    fn space_before_colon_and_folding_are_read_as_endpoints_may() {
        let head = format!(
            "GET / HTTP/1.1\r\nUpgrade : websocket\r\nConnection: keep-alive,\r\n  Upgrade\r\n\
{KEY_LINE}\r\n"
        );
        let (req, _) = odd_request(head.as_bytes());
        assert!(req.upgrade_websocket, "the name is read without its space");
        assert!(
            req.connection_upgrade,
            "the folded line continues the value"
        );
        let odd = req.malformed.expect("an oddity");
        assert!(
            odd.contains("whitespace between the header name \"Upgrade\" and its colon"),
            "{odd}"
        );
        assert!(
            odd.contains("obsolete line folding in the header \"Connection\""),
            "{odd}"
        );
    }

    #[test]
    fn a_bad_header_name_in_a_101_is_kept_and_named() {
        let raw =
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x00";
        let (resp, n) = parse_response(raw, "GET").unwrap().unwrap();
        assert_eq!(n, raw.len() - 2);
        assert_eq!((resp.status, resp.reason()), (101, "Switching Protocols"));
        assert!(resp.upgrade_websocket);
        // Not the Sec-WebSocket-Accept header, so the accept is missing.
        assert_eq!(resp.accept(), None);
        assert_eq!(resp.body, BodyLength::None);
        let odd = resp.malformed.expect("an oddity");
        assert!(
            odd.contains("byte 0x20 (' ') in the header name \"Sec-WebSocket Accept\""),
            "{odd}"
        );
    }

    #[test]
    fn more_headers_than_the_array_holds_are_all_read() {
        let mut head = String::from("GET /many HTTP/1.1\r\n");
        for i in 0..MAX_HEADERS + 20 {
            head.push_str(&format!("X-Filler-{i}: {i}\r\n"));
        }
        head.push_str("Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
        let (req, _) = odd_request(head.as_bytes());
        assert!(req.upgrade_websocket && req.connection_upgrade);
        // Nothing is wrong with the head: only wsnoop's array was small.
        assert_eq!(req.malformed, None);
    }

    #[test]
    fn a_start_line_that_is_not_http_is_still_refused() {
        for raw in [
            &b"GET /\r\n\r\n"[..],
            b"GET / HTTP/1.1 x\r\nA\x01: b\r\n\r\n",
            b"GE\x01T / HTTP/1.1\r\n\r\n",
        ] {
            assert!(
                parse_request(raw).is_err(),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        assert!(parse_response(b"HTTP/1.1 1O1 x\r\nA\x01: b\r\n\r\n", "GET").is_err());
        // An ordinary head still goes through httparse, and says nothing odd.
        let (req, _) = parse_request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(req.malformed, None);
    }

    #[test]
    fn a_cut_head_shows_its_upgrade() {
        let head = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nX-Big: aaaaaaaa";
        assert!(partial_head_upgrades(head));
        assert!(!partial_head_upgrades(
            b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websock"
        ));
    }

    type HeadLen = dyn Fn(&[u8]) -> Result<Option<usize>, HeadError>;

    /// The fuzz harness's rules for heads, on heads made of odd pieces: a complete head parses
    /// the same from its own bytes, and no prefix of it is malformed.
    #[test]
    fn lenient_heads_keep_the_head_rules() {
        const PIECES: [&[u8]; 22] = [
            b"GET / HTTP/1.1\r\n",
            b"HTTP/1.1 101 Switching\r\n",
            b"Upgrade: websocket\r\n",
            b"Upgrade : websocket\r\n",
            b"X: a\x1bb\r\n",
            b"Sec-WebSocket Accept: x\r\n",
            b"  folded\r\n",
            b"\tfolded\n",
            b"\r\n",
            b"\n",
            b"no colon\r\n",
            b": empty\r\n",
            b"GET /\xff HTTP/1.1\r\n",
            b"Content-Length: 3\r\n",
            b"Transfer-Encoding: chunked\r\n",
            b"\r",
            b"\x00",
            b" ",
            b":",
            b"HTTP/1.1  200  OK\r\n",
            b"GET  /a  HTTP/1.0\r\n",
            b"\xff\xfe",
        ];
        let mut seed: u32 = 0x9e37_79b9;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        let mut lenient = 0;
        for _ in 0..20_000 {
            let mut buf = Vec::new();
            for _ in 0..(next() % 9) {
                buf.extend_from_slice(PIECES[next() as usize % PIECES.len()]);
            }
            let odd = |h: Option<bool>| usize::from(h == Some(true));
            lenient += odd(parse_request(&buf)
                .ok()
                .flatten()
                .map(|h| h.0.malformed.is_some()));
            lenient += odd(parse_response(&buf, "GET")
                .ok()
                .flatten()
                .map(|h| h.0.malformed.is_some()));
            let checks: [&HeadLen; 2] = [&|b| parse_request(b).map(|h| h.map(|h| h.1)), &|b| {
                parse_response(b, "GET").map(|h| h.map(|h| h.1))
            }];
            for parse in checks {
                let Ok(Some(len)) = parse(&buf) else {
                    continue;
                };
                let shown = String::from_utf8_lossy(&buf);
                assert_eq!(parse(&buf[..len]), Ok(Some(len)), "{shown:?}");
                for cut in 0..len {
                    assert!(parse(&buf[..cut]).is_ok(), "{shown:?} cut at {cut}");
                }
            }
        }
        assert!(
            lenient > 500,
            "only {lenient} heads needed the lenient parser"
        );
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
