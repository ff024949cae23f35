//! Passive TLS decryption from key logs (issue 13): the record layer of one TCP connection,
//! both directions, for TLS 1.3 and TLS 1.2 AEAD suites.
//!
//! [`KeyStore`] holds the secrets of a run (NSS key log format); [`TlsStream`] turns one
//! connection's in-order TCP bytes into decrypted application data, per direction, and says
//! what it could not decrypt and why ([`TlsOutput`]). Secrets never appear in any string,
//! error or Debug output.

mod cbc;
mod crypto;
mod hello;
mod keylog;
mod stream;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_conv;
#[cfg(test)]
mod tests_fixture;
#[cfg(test)]
mod tests_stream;

pub use keylog::{KeyLogCounts, KeyLogError, KeyStore};
pub use stream::TlsStream;

use crate::event::Direction;

/// What [`TlsStream`] reports, in order.
#[derive(Debug)]
pub enum TlsOutput<'a> {
    /// Decrypted application_data, in order per direction. Borrowed from an internal buffer.
    Data(Direction, &'a [u8]),
    /// Plaintext of the direction that will not be delivered (records lost to a gap, not
    /// decryptable, given up): the next Data of that direction does not follow the previous
    /// one. The count is the ciphertext bytes concerned (an upper bound of the plaintext).
    Lost(Direction, u64),
    /// At most once per connection for each problem: something to report as an anomaly.
    Problem(Option<Direction>, TlsProblem),
    /// ServerHello parsed (and, for TLS 1.3, EncryptedExtensions decrypted): see
    /// [`TlsStream::info`].
    Negotiated,
    /// close_notify received (decrypted) in this direction.
    CloseNotify(Direction),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsProblem {
    /// No secret for this client random (or, while keys may still arrive, none arrived in
    /// time, or the buffer for records waiting for them filled up).
    NoKeys,
    /// The tag check failed with the keys we have: a wrong or stale key log.
    DecryptFailed,
    /// A cipher suite wsnoop does not decrypt (the suite id).
    Unsupported(u16),
    /// The bytes stopped looking like TLS records (bad header, length over the limit).
    NotTls,
    /// No ClientHello/ServerHello seen (picked up mid-stream): nothing to decrypt with.
    HandshakeMissed,
}

impl TlsProblem {
    /// One plain sentence, no secrets.
    pub fn describe(&self) -> String {
        match self {
            TlsProblem::NoKeys => {
                "no key log entry for this TLS session's client random".to_string()
            }
            TlsProblem::DecryptFailed => {
                "TLS records fail to decrypt with the key log's secrets (wrong or stale key log)"
                    .to_string()
            }
            TlsProblem::Unsupported(id) => match cipher_name(*id) {
                Some(name) => format!("cipher suite {name} (0x{id:04x}) is not decrypted"),
                None => format!("cipher suite 0x{id:04x} is not decrypted"),
            },
            TlsProblem::NotTls => "the bytes stopped looking like TLS records".to_string(),
            TlsProblem::HandshakeMissed => {
                "the TLS handshake was not captured, so the session cannot be decrypted".to_string()
            }
        }
    }

    pub(crate) fn bit(&self) -> u8 {
        match self {
            TlsProblem::NoKeys => 1,
            TlsProblem::DecryptFailed => 2,
            TlsProblem::Unsupported(_) => 4,
            TlsProblem::NotTls => 8,
            TlsProblem::HandshakeMissed => 16,
        }
    }
}

pub use crate::wire::tls::{TlsInfo, cipher_name};

/// The record types, as the record header carries them.
pub(crate) const CHANGE_CIPHER_SPEC: u8 = 20;
pub(crate) const ALERT: u8 = 21;
pub(crate) const HANDSHAKE: u8 = 22;
pub(crate) const APPLICATION_DATA: u8 = 23;

/// A first-bytes check: a handshake record (version 3.0 to 3.4) whose message has `typ`.
fn looks_like_hello(bytes: &[u8], typ: u8) -> bool {
    matches!(
        bytes,
        [HANDSHAKE, 3, 0..=4, _, _, t, ..] if *t == typ
    )
}
