//! What `diagnose` says of TLS: which connections were decrypted, which stayed encrypted and
//! why, and how to get the keys from each kind of client or server.

use std::collections::BTreeMap;

use super::words::plural;
use super::{Bucket, Diagnoser, Finding, Severity};
use crate::anomaly::AnomalyKind;
use crate::event::{FlowMeta, Timestamp};
use crate::wire::tls::TlsInfo;

/// Where each stack writes its TLS secrets, for whoever has to get them.
pub(super) const WHERE_KEYS_COME_FROM: &str = "Decrypt with `wsnoop --keylog FILE` (or set \
SSLKEYLOGFILE for wsnoop as for the client), given the NSS key log of the client or the server: \
Chromium, Firefox and curl write it to the file named by SSLKEYLOGFILE; Node with `node \
--tls-keylog=FILE` (or the TLS socket's 'keylog' event); Python with \
`ssl.SSLContext.keylog_filename`; Go with `tls.Config.KeyLogWriter`; a Java server with a \
key-extracting agent such as extract-tls-secrets (`-javaagent:`); nginx, HAProxy and other \
OpenSSL servers with an LD_PRELOAD key logger (sslkeylog.so). A pcapng with a Decryption \
Secrets Block (`editcap --inject-secrets tls,FILE`) carries its own keys. Or capture where TLS \
ends, behind the proxy that terminates it.";

/// TLS facts gathered from connection events and TLS anomalies.
#[derive(Debug, Default)]
pub(super) struct TlsSeen {
    /// Connections whose client spoke TLS and of which nothing was decrypted.
    pub(super) encrypted: Bucket,
    pub(super) decrypted: Bucket,
    /// Negotiated suites of the decrypted connections, by name.
    pub(super) suites: BTreeMap<String, u64>,
    /// HTTP/2 negotiated, or offered where the answer stayed encrypted.
    pub(super) h2: Bucket,
    pub(super) problems: BTreeMap<AnomalyKind, Bucket>,
}

impl TlsSeen {
    pub(super) fn connection(&mut self, flow: &FlowMeta, ts: Timestamp, tls: Option<&TlsInfo>) {
        match tls {
            Some(info) if info.decrypted => {
                self.decrypted.add(flow, ts);
                let suite = format!(
                    "{} {}",
                    info.version_name().unwrap_or("TLS"),
                    info.cipher_name().unwrap_or("(unknown suite)")
                );
                if self.suites.len() < 16 {
                    *self.suites.entry(suite).or_default() += 1;
                }
            }
            _ => self.encrypted.add(flow, ts),
        }
        if let Some(info) = tls {
            let h2 = match info.alpn.as_deref() {
                Some(alpn) => alpn == "h2",
                None => !info.decrypted && info.offers_h2(),
            };
            if h2 {
                self.h2.add(flow, ts);
            }
        }
    }

    /// A TLS anomaly: the reason a connection stayed encrypted.
    pub(super) fn problem(&mut self, kind: AnomalyKind, flow: &FlowMeta, ts: Timestamp) {
        self.problems.entry(kind).or_default().add(flow, ts);
    }
}

impl Diagnoser {
    pub(super) fn tls_findings(&self) -> Vec<Finding> {
        let seen = &self.tls;
        let mut out = Vec::new();
        let mut push = |kind, severity, b: &Bucket, detail: String, advice: String| {
            out.push(Finding {
                kind,
                severity,
                count: b.count,
                flows: b.flows(),
                detail,
                advice,
            })
        };
        if seen.problems.is_empty() && seen.encrypted.count > 0 {
            let b = &seen.encrypted;
            push(
                "tls",
                Severity::Warning,
                b,
                format!(
                    "{} to {} TLS (wss) and no key log was given; {}.",
                    plural(b.count, "connection speaks", "connections speak"),
                    b.servers(),
                    b.example()
                ),
                format!("The frames are encrypted and cannot be seen. {WHERE_KEYS_COME_FROM}"),
            );
        }
        for (kind, b) in &seen.problems {
            let (name, why, advice) = match kind {
                AnomalyKind::TlsNoKeys => (
                    "tls_no_keys",
                    "stayed encrypted: the key log has no secret for their client random, or \
their TLS handshake was not captured",
                    "The key log was written by another process, browser profile or machine than \
the one that made these connections, or it was rotated, or the capture began after the \
handshake (only a captured handshake can be decrypted). Log the keys of the side that made them.",
                ),
                AnomalyKind::TlsDecryptFailed => (
                    "tls_decrypt_failed",
                    "did not decrypt: their records failed the authentication check with the \
logged secrets",
                    "The key log holds secrets for these client randoms that are wrong: it was \
edited, mixes two runs, or belongs to another capture. Take the key log written during this \
capture.",
                ),
                AnomalyKind::TlsUnsupported => (
                    "tls_unsupported",
                    "stayed encrypted: they use a cipher suite wsnoop does not decrypt",
                    "wsnoop decrypts TLS 1.3 (AES-GCM, ChaCha20-Poly1305) and TLS 1.2 with AES-GCM \
or ChaCha20-Poly1305. To debug, allow those suites on the server, or capture behind the proxy \
that terminates TLS.",
                ),
                _ => (
                    "tls_malformed",
                    "carried bytes that are not valid TLS records; the rest of each stayed \
encrypted",
                    "Something other than TLS runs on the port after the first bytes, or the \
capture lost the record boundaries: check the capture for drops (tcpdump -B) and what the port \
serves.",
                ),
            };
            push(
                name,
                Severity::Warning,
                b,
                format!(
                    "{} to {} {why}; {}.",
                    plural(b.count, "TLS connection", "TLS connections"),
                    b.servers(),
                    b.example()
                ),
                format!("{advice} {WHERE_KEYS_COME_FROM}"),
            );
        }
        if seen.decrypted.count > 0 {
            let b = &seen.decrypted;
            let suites: Vec<String> = seen
                .suites
                .iter()
                .map(|(s, n)| format!("{n} {s}"))
                .collect();
            push(
                "tls_decrypted",
                Severity::Info,
                b,
                format!(
                    "{} to {} decrypted with the key log ({}); {}.",
                    plural(b.count, "TLS connection", "TLS connections"),
                    b.servers(),
                    suites.join(", "),
                    b.example()
                ),
                "Their handshakes, frames and messages are reported as for plain ws.".to_string(),
            );
        }
        if seen.h2.count > 0 {
            let b = &seen.h2;
            push(
                "websocket_over_h2",
                Severity::Info,
                b,
                format!(
                    "{} to {} negotiated or offered HTTP/2 (ALPN h2); {}.",
                    plural(b.count, "TLS connection", "TLS connections"),
                    b.servers(),
                    b.example()
                ),
                "A WebSocket may run inside HTTP/2 (RFC 8441, extended CONNECT) there, which \
wsnoop does not decode yet; over HTTP/1.1 it is decoded as usual."
                    .to_string(),
            );
        }
        out
    }
}
