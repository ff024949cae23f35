//! The heads of the HTTP/1.1 opening handshake as values, and what the first bytes of an
//! HTTP message look like.

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

/// A head's text values in one buffer, each found by where it lies: the handful a handshake
/// keeps cost one allocation, not one each (a String each was 1,560 instructions more per
/// connection, callgrind: 1.6% of a run at 50,000 connections).
#[derive(Clone)]
struct HeadText<const N: usize> {
    buf: String,
    spans: [Option<(u32, u32)>; N],
}

impl<const N: usize> Default for HeadText<N> {
    fn default() -> Self {
        HeadText {
            buf: String::new(),
            spans: [None; N],
        }
    }
}

impl<const N: usize> HeadText<N> {
    fn get(&self, field: usize) -> Option<&str> {
        let (at, len) = (*self.spans.get(field)?)?;
        self.buf.get(at as usize..at as usize + len as usize)
    }

    /// Sets a field; the bytes of a value it replaces stay in the buffer, which the head's
    /// own length bounds.
    fn set(&mut self, field: usize, value: Option<&str>) {
        let span = value.and_then(|value| {
            let at = u32::try_from(self.buf.len()).ok()?;
            let len = u32::try_from(value.len()).ok()?;
            at.checked_add(len)?;
            self.buf.push_str(value);
            Some((at, len))
        });
        if let Some(slot) = self.spans.get_mut(field) {
            *slot = span;
        }
    }

    /// Every field at once, in a buffer of their size.
    fn from_values(values: [Option<&str>; N]) -> Self {
        let mut text = HeadText {
            buf: String::with_capacity(values.iter().flatten().map(|v| v.len()).sum()),
            spans: [None; N],
        };
        for (field, value) in values.into_iter().enumerate() {
            text.set(field, value);
        }
        text
    }

    fn all(&self) -> [Option<&str>; N] {
        std::array::from_fn(|field| self.get(field))
    }

    /// Only the fields `keep` says to, in a buffer of their size.
    fn retain(&mut self, keep: impl Fn(usize) -> bool) {
        let values = std::array::from_fn(|field| self.get(field).filter(|_| keep(field)));
        *self = HeadText::from_values(values);
    }

    fn capacity(&self) -> usize {
        self.buf.capacity()
    }
}

impl<const N: usize> PartialEq for HeadText<N> {
    fn eq(&self, other: &Self) -> bool {
        self.all() == other.all()
    }
}

impl<const N: usize> Eq for HeadText<N> {}

impl<const N: usize> std::fmt::Debug for HeadText<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.all()).finish()
    }
}

/// The text fields of a request head, in [`UpgradeRequest`]'s order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestText {
    Method,
    Uri,
    Host,
    Origin,
    UserAgent,
    Key,
    Version,
}

pub const REQUEST_TEXTS: usize = 7;

/// The text fields of a response head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseText {
    Reason,
    Accept,
    Protocol,
}

pub const RESPONSE_TEXTS: usize = 3;

/// An HTTP request head, with the fields a WebSocket upgrade uses. Its text values are read
/// with the methods named after them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpgradeRequest {
    text: HeadText<REQUEST_TEXTS>,
    pub protocols: Vec<String>,
    pub extensions: Vec<String>,
    /// `Upgrade: websocket` is present (case-insensitive token).
    pub upgrade_websocket: bool,
    /// `Connection` lists the `upgrade` token.
    pub connection_upgrade: bool,
    pub body: BodyLength,
    /// What httparse refused in this head, in words, when it had to be parsed leniently.
    pub malformed: Option<String>,
}

/// An HTTP response head.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpgradeResponse {
    pub status: u16,
    text: HeadText<RESPONSE_TEXTS>,
    pub extensions: Vec<String>,
    pub upgrade_websocket: bool,
    pub body: BodyLength,
    /// As in [`UpgradeRequest`].
    pub malformed: Option<String>,
}

impl UpgradeRequest {
    /// A request with these text values (in [`RequestText`]'s order) and nothing else.
    pub fn with_text(values: [Option<&str>; REQUEST_TEXTS]) -> Self {
        UpgradeRequest {
            text: HeadText::from_values(values),
            ..UpgradeRequest::default()
        }
    }

    pub fn text(&self, field: RequestText) -> Option<&str> {
        self.text.get(field as usize)
    }

    pub fn set_text(&mut self, field: RequestText, value: Option<&str>) {
        self.text.set(field as usize, value);
    }

    /// Every text value at once (in [`RequestText`]'s order), in a buffer of their size.
    pub fn replace_text(&mut self, values: [Option<&str>; REQUEST_TEXTS]) {
        self.text = HeadText::from_values(values);
    }

    /// Empty when the head had none (only a request made by hand can lack one).
    pub fn method(&self) -> &str {
        self.text(RequestText::Method).unwrap_or_default()
    }

    pub fn uri(&self) -> &str {
        self.text(RequestText::Uri).unwrap_or_default()
    }

    pub fn host(&self) -> Option<&str> {
        self.text(RequestText::Host)
    }

    pub fn origin(&self) -> Option<&str> {
        self.text(RequestText::Origin)
    }

    pub fn user_agent(&self) -> Option<&str> {
        self.text(RequestText::UserAgent)
    }

    pub fn key(&self) -> Option<&str> {
        self.text(RequestText::Key)
    }

    pub fn version(&self) -> Option<&str> {
        self.text(RequestText::Version)
    }

    /// What the text values keep on the heap.
    pub fn text_capacity(&self) -> usize {
        self.text.capacity()
    }

    /// The headers wsnoop keeps, as (name, value): the ones a WebSocket handshake is about.
    /// Of Upgrade and Connection only their tokens' presence is kept, so they are written as
    /// the standard spelling.
    pub fn kept_headers(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for (name, value) in [
            ("Host", self.host()),
            ("Origin", self.origin()),
            ("User-Agent", self.user_agent()),
            ("Sec-WebSocket-Key", self.key()),
            ("Sec-WebSocket-Version", self.version()),
        ] {
            if let Some(v) = value {
                out.push((name, v.to_string()));
            }
        }
        if !self.protocols.is_empty() {
            out.push(("Sec-WebSocket-Protocol", self.protocols.join(", ")));
        }
        if !self.extensions.is_empty() {
            out.push(("Sec-WebSocket-Extensions", self.extensions.join(", ")));
        }
        if self.upgrade_websocket {
            out.push(("Upgrade", "websocket".to_string()));
        }
        if self.connection_upgrade {
            out.push(("Connection", "Upgrade".to_string()));
        }
        out
    }
}

impl UpgradeResponse {
    /// A response with this status and these text values (in [`ResponseText`]'s order).
    pub fn with_text(status: u16, values: [Option<&str>; RESPONSE_TEXTS]) -> Self {
        UpgradeResponse {
            status,
            text: HeadText::from_values(values),
            ..UpgradeResponse::default()
        }
    }

    pub fn text(&self, field: ResponseText) -> Option<&str> {
        self.text.get(field as usize)
    }

    pub fn set_text(&mut self, field: ResponseText, value: Option<&str>) {
        self.text.set(field as usize, value);
    }

    /// Every text value at once (in [`ResponseText`]'s order), in a buffer of their size.
    pub fn replace_text(&mut self, values: [Option<&str>; RESPONSE_TEXTS]) {
        self.text = HeadText::from_values(values);
    }

    /// Drops every text value but those in `keep`, and the room they took.
    pub fn retain_text(&mut self, keep: &[ResponseText]) {
        self.text
            .retain(|field| keep.iter().any(|&kept| kept as usize == field));
    }

    /// The status line's reason phrase; empty when it had none.
    pub fn reason(&self) -> &str {
        self.text(ResponseText::Reason).unwrap_or_default()
    }

    pub fn accept(&self) -> Option<&str> {
        self.text(ResponseText::Accept)
    }

    pub fn protocol(&self) -> Option<&str> {
        self.text(ResponseText::Protocol)
    }

    /// What the text values keep on the heap.
    pub fn text_capacity(&self) -> usize {
        self.text.capacity()
    }

    /// The headers wsnoop keeps, as [`UpgradeRequest::kept_headers`].
    pub fn kept_headers(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.upgrade_websocket {
            out.push(("Upgrade", "websocket".to_string()));
        }
        if let Some(v) = self.accept() {
            out.push(("Sec-WebSocket-Accept", v.to_string()));
        }
        if let Some(v) = self.protocol() {
            out.push(("Sec-WebSocket-Protocol", v.to_string()));
        }
        if !self.extensions.is_empty() {
            out.push(("Sec-WebSocket-Extensions", self.extensions.join(", ")));
        }
        out
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_values_share_one_buffer_and_compare_by_value() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let req = UpgradeRequest::with_text([
            Some("GET"),
            Some("/chat"),
            Some("example.com"),
            None,
            Some(""),
            Some(key),
            Some("13"),
        ]);
        assert_eq!(
            (req.method(), req.uri(), req.host(), req.origin()),
            ("GET", "/chat", Some("example.com"), None)
        );
        // Present but empty is not absent.
        assert_eq!(req.user_agent(), Some(""));
        assert_eq!((req.key(), req.version()), (Some(key), Some("13")));
        let values_len = "GET/chatexample.com13".len() + key.len();
        assert_eq!(req.text_capacity(), values_len, "one buffer, of their size");

        // Set one by one, in another order: the same request.
        let mut other = UpgradeRequest::default();
        for (field, value) in [
            (RequestText::Version, "13"),
            (RequestText::Key, key),
            (RequestText::UserAgent, ""),
            (RequestText::Host, "example.com"),
            (RequestText::Uri, "/chat"),
            (RequestText::Method, "POST"),
            (RequestText::Method, "GET"),
        ] {
            other.set_text(field, Some(value));
        }
        assert_eq!(other, req);
        other.set_text(RequestText::Host, None);
        assert_ne!(other, req);
        assert_eq!(UpgradeRequest::default().method(), "");
    }

    #[test]
    fn a_response_keeps_only_what_it_is_told_to() {
        let mut resp = UpgradeResponse::with_text(
            101,
            [
                Some("Switching Protocols"),
                Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
                Some("chat"),
            ],
        );
        assert_eq!(resp.reason(), "Switching Protocols");
        resp.retain_text(&[ResponseText::Protocol]);
        assert_eq!(
            (resp.status, resp.reason(), resp.accept(), resp.protocol()),
            (101, "", None, Some("chat"))
        );
        assert_eq!(
            resp.text_capacity(),
            "chat".len(),
            "the room went with them"
        );
    }
}
