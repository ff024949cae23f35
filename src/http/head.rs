//! The lenient head parser: a head parsed line by line, for the heads httparse refuses but endpoints may accept:
//! control bytes or invalid UTF-8 in the URI or a header value, bytes outside the token set in
//! a header name (`Sec-WebSocket Accept:`), whitespace before a colon, obsolete line folding,
//! more headers than httparse is given room for. httparse's `ParserConfig` tolerates a few of
//! these, in responses only, and silently (its `ignore_invalid_headers_*` drop the header), so
//! it cannot say what was odd; this parser does, and keeps every header.
//!
//! It runs only on a buffered head, which the session bounds to `MAX_HEAD_LEN` bytes, so what
//! it allocates is bounded by the bytes it was given.

use std::borrow::Cow;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Response,
}

/// What is worth naming in one detail; past it, a count.
const MAX_ODDITIES: usize = 4;

pub struct Head<'a> {
    /// Request: method, target, version. Response: version, status, reason.
    pub start: [&'a [u8]; 3],
    pub headers: Vec<(&'a [u8], Cow<'a, [u8]>)>,
    pub len: usize,
    /// What httparse refused, in words; None when only its header array was too small.
    pub odd: Option<String>,
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_control(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// A byte as the detail names it: `0x1b`, or `0x3a (':')` when printable.
fn byte_name(b: u8) -> String {
    if b.is_ascii_graphic() || b == b' ' {
        format!("0x{b:02x} ({:?})", b as char)
    } else {
        format!("0x{b:02x}")
    }
}

/// A header name as the detail quotes it (escaped; cut when long).
fn quoted(name: &[u8]) -> String {
    let cut = &name[..name.len().min(64)];
    format!("{:?}", String::from_utf8_lossy(cut))
}

/// Lines (without their CR LF or LF) of `buf` from `at`, with the offset after each.
fn lines(buf: &[u8], mut at: usize) -> impl Iterator<Item = (&[u8], usize)> {
    std::iter::from_fn(move || {
        let rest = buf.get(at..)?;
        let end = rest.iter().position(|&b| b == b'\n')?;
        let line = &rest[..end];
        at += end + 1;
        Some((line.strip_suffix(b"\r").unwrap_or(line), at))
    })
}

/// Name and value of each complete header line after the start line, as written.
pub fn header_lines(buf: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    lines(buf, 0)
        .skip(1)
        .take_while(|(line, _)| !line.is_empty())
        .filter_map(|(line, _)| {
            let colon = line.iter().position(|&b| b == b':')?;
            Some((&line[..colon], &line[colon + 1..]))
        })
}

/// Splits on runs of spaces; true when a run is longer than one.
fn fields(line: &[u8]) -> (bool, impl Iterator<Item = &[u8]>) {
    let wide = line.windows(2).any(|w| w == b"  ");
    (wide, line.split(|&b| b == b' ').filter(|f| !f.is_empty()))
}

fn version_ok(v: &[u8]) -> bool {
    matches!(v, [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
        if major.is_ascii_digit() && minor.is_ascii_digit())
}

struct Odd {
    what: Vec<String>,
    more: usize,
}

impl Odd {
    fn note(&mut self, what: impl FnOnce() -> String) {
        if self.what.len() < MAX_ODDITIES {
            self.what.push(what());
        } else {
            self.more += 1;
        }
    }
}

/// The first control byte of `bytes`, or the offset of its first invalid UTF-8 byte.
fn odd_bytes(bytes: &[u8]) -> Option<String> {
    if let Some(b) = bytes.iter().copied().find(|&b| is_control(b)) {
        return Some(format!("control byte {}", byte_name(b)));
    }
    if let Err(e) = std::str::from_utf8(bytes) {
        let at = e.valid_up_to();
        return Some(format!(
            "invalid UTF-8 (byte 0x{:02x} at offset {at})",
            bytes[at]
        ));
    }
    None
}

pub fn parse(
    buf: &[u8],
    kind: Kind,
    refused: httparse::Error,
) -> Result<Option<Head<'_>>, HeadError> {
    let malformed = |why: &str| Err(HeadError::Malformed(format!("{refused}; {why}")));
    let who = match kind {
        Kind::Request => "request",
        Kind::Response => "response",
    };
    // As httparse does: empty lines before a request are skipped.
    let skip = match kind {
        Kind::Request => buf
            .iter()
            .position(|&b| b != b'\r' && b != b'\n')
            .unwrap_or(buf.len()),
        Kind::Response => 0,
    };
    let mut odd = Odd {
        what: Vec::new(),
        more: 0,
    };
    let mut lines = lines(buf, skip);
    let Some((first, _)) = lines.next() else {
        return Ok(None);
    };
    let (wide, mut parts) = fields(first);
    let start = match kind {
        Kind::Request => {
            let (Some(method), Some(target), Some(version), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return malformed("the request line is not METHOD TARGET VERSION");
            };
            if !method.iter().all(|&b| is_token(b)) || !version_ok(version) {
                return malformed("the request line is not METHOD TARGET VERSION");
            }
            if let Some(what) = odd_bytes(target) {
                odd.note(|| format!("{what} in the URI"));
            }
            [method, target, version]
        }
        Kind::Response => {
            let (Some(version), Some(status)) = (parts.next(), parts.next()) else {
                return malformed("the status line is not VERSION STATUS REASON");
            };
            if !version_ok(version) || status.len() != 3 || !status.iter().all(u8::is_ascii_digit) {
                return malformed("the status line is not VERSION STATUS REASON");
            }
            // The reason is the rest of the line after the status, spaces and all.
            let after_status = first
                .windows(3)
                .position(|w| w == status)
                .map_or(first.len(), |at| at + 3);
            let reason = first[after_status..].trim_ascii();
            if let Some(what) = odd_bytes(reason) {
                odd.note(|| format!("{what} in the reason phrase"));
            }
            [version, status, reason]
        }
    };
    if wide {
        odd.note(|| format!("more than one space between the {who} line's parts"));
    }
    let mut headers: Vec<(&[u8], Cow<'_, [u8]>)> = Vec::new();
    let mut head_len = None;
    for (line, after) in lines {
        if line.is_empty() {
            head_len = Some(after);
            break;
        }
        if matches!(line[0], b' ' | b'\t') {
            match headers.last_mut() {
                Some((name, value)) => {
                    // RFC 9112 5.2: a recipient replaces obs-fold with spaces.
                    odd.note(|| format!("obsolete line folding in the header {}", quoted(name)));
                    let value = value.to_mut();
                    value.push(b' ');
                    value.extend_from_slice(line.trim_ascii());
                    continue;
                }
                None => odd.note(|| format!("whitespace before the {who}'s first header")),
            }
        }
        let line = line.trim_ascii_start();
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            odd.note(|| format!("a header line without a colon: {}", quoted(line)));
            continue;
        };
        let raw_name = &line[..colon];
        let name = raw_name.trim_ascii_end();
        let value = line[colon + 1..].trim_ascii();
        if name.len() != raw_name.len() {
            odd.note(|| {
                format!(
                    "whitespace between the header name {} and its colon",
                    quoted(name)
                )
            });
        }
        if name.is_empty() {
            odd.note(|| "a header line with no name before its colon".to_string());
        } else if let Some(&b) = name.iter().find(|&&b| !is_token(b)) {
            odd.note(|| format!("byte {} in the header name {}", byte_name(b), quoted(name)));
        }
        if let Some(b) = value.iter().copied().find(|&b| is_control(b)) {
            odd.note(|| {
                format!(
                    "control byte {} in the value of {}",
                    byte_name(b),
                    quoted(name)
                )
            });
        }
        headers.push((name, Cow::Borrowed(value)));
    }
    let Some(len) = head_len else {
        return Ok(None);
    };
    let odd = match (odd.what.is_empty(), refused) {
        (true, httparse::Error::TooManyHeaders) => None,
        (true, _) => Some(format!(
            "the {who} head was refused by httparse ({refused})"
        )),
        (false, _) => {
            let mut s = format!("the {who} head has {}", odd.what.join("; "));
            if odd.more > 0 {
                s.push_str(&format!("; and {} more", odd.more));
            }
            Some(s)
        }
    };
    Ok(Some(Head {
        start,
        headers,
        len,
        odd,
    }))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeadError {
    #[error("malformed HTTP head: {0}")]
    Malformed(String),
}
