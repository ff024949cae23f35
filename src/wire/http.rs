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
    /// What httparse refused in this head, in words, when it had to be parsed leniently.
    pub malformed: Option<String>,
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
    /// As in [`UpgradeRequest`].
    pub malformed: Option<String>,
}

impl UpgradeRequest {
    /// The headers wsnoop keeps, as (name, value): the ones a WebSocket handshake is about.
    /// Of Upgrade and Connection only their tokens' presence is kept, so they are written as
    /// the standard spelling.
    pub fn kept_headers(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for (name, value) in [
            ("Host", &self.host),
            ("Origin", &self.origin),
            ("User-Agent", &self.user_agent),
            ("Sec-WebSocket-Key", &self.key),
            ("Sec-WebSocket-Version", &self.version),
        ] {
            if let Some(v) = value {
                out.push((name, v.clone()));
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
    /// The headers wsnoop keeps, as [`UpgradeRequest::kept_headers`].
    pub fn kept_headers(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.upgrade_websocket {
            out.push(("Upgrade", "websocket".to_string()));
        }
        if let Some(v) = &self.accept {
            out.push(("Sec-WebSocket-Accept", v.clone()));
        }
        if let Some(v) = &self.protocol {
            out.push(("Sec-WebSocket-Protocol", v.clone()));
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
