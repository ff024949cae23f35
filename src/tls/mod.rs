//! STUB of the TLS layer's API (replaced by the tls-core branch): never decrypts.
use std::path::Path;

use crate::event::Direction;
pub use crate::wire::tls::TlsInfo;

#[derive(Debug, Default, Clone, Copy)]
pub struct KeyLogCounts {
    pub secrets: usize,
    pub skipped_lines: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("reading key log {path}: {source}")]
pub struct KeyLogError {
    path: String,
    source: std::io::Error,
}

#[derive(Debug, Default)]
pub struct KeyStore {}

impl KeyStore {
    pub fn new() -> KeyStore {
        KeyStore {}
    }
    pub fn add(&self, _text: &[u8]) -> KeyLogCounts {
        KeyLogCounts::default()
    }
    pub fn follow(&self, path: &Path) -> Result<KeyLogCounts, KeyLogError> {
        std::fs::metadata(path).map_err(|source| KeyLogError {
            path: path.display().to_string(),
            source,
        })?;
        Ok(KeyLogCounts::default())
    }
    pub fn refresh(&self) -> bool {
        false
    }
    pub fn set_growing(&self, _growing: bool) {}
    pub fn is_empty(&self) -> bool {
        true
    }
    pub fn len(&self) -> usize {
        0
    }
}

#[derive(Debug, Default)]
pub struct TlsStream {
    info: TlsInfo,
    reported: bool,
}

pub enum TlsOutput<'a> {
    Data(Direction, &'a [u8]),
    Lost(Direction, u64),
    Problem(Option<Direction>, TlsProblem),
    Negotiated,
    CloseNotify(Direction),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsProblem {
    NoKeys,
    DecryptFailed,
    Unsupported(u16),
    NotTls,
    HandshakeMissed,
}

impl TlsProblem {
    pub fn describe(&self) -> String {
        format!("{self:?}")
    }
}

impl TlsStream {
    pub fn new() -> TlsStream {
        TlsStream::default()
    }
    pub fn looks_like_client_hello(bytes: &[u8]) -> bool {
        matches!(bytes, [0x16, 0x03, 0x00..=0x04, _, _, 1, ..])
    }
    pub fn looks_like_server_hello(bytes: &[u8]) -> bool {
        matches!(bytes, [0x16, 0x03, 0x00..=0x04, _, _, 2, ..])
    }
    pub fn data(
        &mut self,
        dir: Direction,
        bytes: &[u8],
        _keys: &KeyStore,
        out: &mut dyn FnMut(TlsOutput<'_>),
    ) {
        if !self.reported {
            self.reported = true;
            out(TlsOutput::Problem(None, TlsProblem::NoKeys));
        }
        out(TlsOutput::Lost(dir, bytes.len() as u64));
    }
    pub fn gap(
        &mut self,
        dir: Direction,
        lost: u64,
        _keys: &KeyStore,
        out: &mut dyn FnMut(TlsOutput<'_>),
    ) {
        out(TlsOutput::Lost(dir, lost));
    }
    pub fn finish(&mut self, _keys: &KeyStore, _out: &mut dyn FnMut(TlsOutput<'_>)) {}
    pub fn info(&self) -> &TlsInfo {
        &self.info
    }
}
