//! What a connection keeps of the layer between its TCP halves and its session: for now TLS
//! (`secure.rs` runs it). Apart from both, so the connection holds it without importing the
//! code that drives it.

use crate::tls::TlsStream;
use crate::wire::tls::TlsInfo;

/// One connection's TLS: the decryptor, and what it negotiated as the session's events show it.
#[derive(Debug)]
pub(super) struct TlsLayer {
    pub(super) stream: TlsStream,
    /// A copy of the stream's, so the session's events can borrow it while the stream works.
    pub(super) info: TlsInfo,
    /// Each kind of problem is reported once per connection.
    pub(super) reported: u8,
}

impl TlsLayer {
    pub(super) fn info(&self) -> &TlsInfo {
        &self.info
    }
}
