//! The stream layer between a connection's TCP halves and its session: TLS, when the
//! connection is TLS and there are keys to try. Plain connections pass straight through.
//!
//! The session never knows: it gets the decrypted bytes as chunks, a record lost (to a capture
//! gap, a missing key, a failed tag) as a gap, exactly as it gets plaintext from TCP.

use std::sync::Arc;

use crate::anomaly::AnomalyKind;
use crate::event::{Direction, Timestamp};
use crate::net::tcp::Chunk;
use crate::tls::{KeyStore, TlsOutput, TlsProblem, TlsStream};
use crate::wire::tls::TlsInfo;

use super::Env;
use super::connection::App;
use super::layer::TlsLayer;

/// Where a run's TLS secrets come from.
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    /// None: TLS connections are not followed at all (the library's default). The command
    /// always gives a store, empty when there is no key log: every TLS connection is then
    /// followed far enough to say why it stays encrypted.
    pub keys: Option<Arc<KeyStore>>,
    /// The user named a key log (`--keylog`, SSLKEYLOGFILE); without one, a connection without
    /// keys says that none was given.
    pub keys_expected: bool,
}

fn problem_kind(problem: TlsProblem) -> (AnomalyKind, u8) {
    match problem {
        TlsProblem::NoKeys | TlsProblem::HandshakeMissed => (AnomalyKind::TlsNoKeys, 1),
        TlsProblem::DecryptFailed => (AnomalyKind::TlsDecryptFailed, 2),
        TlsProblem::Unsupported(_) => (AnomalyKind::TlsUnsupported, 4),
        TlsProblem::NotTls => (AnomalyKind::TlsMalformed, 8),
    }
}

impl App {
    pub(super) fn tls_info(&self) -> Option<&TlsInfo> {
        self.tls.as_deref().map(TlsLayer::info)
    }

    /// A connection's first bytes: TLS hellos make it a TLS connection, when there are keys to
    /// try, and say who the client is.
    fn start_tls(&mut self, from_a: bool, bytes: &[u8], env: &mut Env<'_>) {
        if env.options.tls.keys.is_none() {
            return;
        }
        let client_is_a = if TlsStream::looks_like_client_hello(bytes) {
            from_a
        } else if TlsStream::looks_like_server_hello(bytes) {
            !from_a
        } else {
            return;
        };
        self.set_client(client_is_a, false);
        env.stats.tls_connections += 1;
        self.tls = Some(Box::new(TlsLayer {
            stream: TlsStream::new(),
            info: TlsInfo::default(),
            reported: 0,
        }));
    }

    /// One chunk of the half from side A (`from_a`) or B, as TCP delivered it; `peer_finished`:
    /// the other half has delivered its FIN.
    pub(super) fn chunk(
        &mut self,
        from_a: bool,
        chunk: Chunk<'_>,
        peer_finished: bool,
        env: &mut Env<'_>,
    ) {
        if let Chunk::Data(bytes, _) = chunk
            && self.tls.is_none()
            && self.session.is_fresh()
        {
            self.start_tls(from_a, bytes, env);
        }
        let Some(mut layer) = self.tls.take() else {
            return self.plain(from_a, chunk, peer_finished, None, env);
        };
        let client_is_a = self.client_is_a.unwrap_or(true);
        let dir = if from_a == client_is_a {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        let options = env.options;
        let Some(keys) = options.tls.keys.as_deref() else {
            return self.plain(from_a, chunk, peer_finished, None, env);
        };
        match chunk {
            Chunk::Data(bytes, ts) => {
                env.ts = ts;
                let mut negotiated = false;
                layer.stream.data(dir, bytes, keys, &mut |out| {
                    negotiated |=
                        self.tls_output(out, ts, &mut layer.info, &mut layer.reported, env);
                });
                if negotiated {
                    let decrypted = layer.info.decrypted;
                    layer.info = layer.stream.info().clone();
                    layer.info.decrypted |= decrypted;
                }
            }
            Chunk::Gap(lost) | Chunk::Cut(lost) => {
                if let Chunk::Cut(_) = chunk
                    && let Some(flow) = self.flow()
                {
                    let mut ctx = env.context(&flow);
                    ctx.tls = Some(&layer.info);
                    ctx.cause = crate::anomaly::Cause::Snaplen;
                    self.report_cut(from_a, dir, lost, &mut ctx);
                }
                let ts = env.ts;
                layer.stream.gap(dir, lost, keys, &mut |out| {
                    self.tls_output(out, ts, &mut layer.info, &mut layer.reported, env);
                });
            }
            Chunk::Conflict(_) => self.plain(from_a, chunk, peer_finished, Some(&layer.info), env),
            Chunk::Fin => {
                // The session may end here: its summary names the TLS, and what TLS still
                // holds goes first.
                self.tls = Some(layer);
                if peer_finished {
                    self.finish_tls(env);
                }
                return self.plain(from_a, chunk, peer_finished, None, env);
            }
        }
        self.tls = Some(layer);
    }

    /// Before the session ends: what TLS still held (records waiting for keys) is given up.
    pub(super) fn finish_tls(&mut self, env: &mut Env<'_>) {
        let Some(mut layer) = self.tls.take() else {
            return;
        };
        if let Some(keys) = env.options.tls.keys.as_deref() {
            let ts = env.ts;
            // Live, a short session can end before the loop looked at the key log again: its
            // keys may be there by now.
            if layer.stream.is_holding() && keys.is_growing() {
                keys.refresh();
            }
            layer.stream.finish(keys, &mut |out| {
                self.tls_output(out, ts, &mut layer.info, &mut layer.reported, env);
            });
        }
        if layer.info.decrypted {
            env.stats.tls_decrypted += 1;
        }
        self.tls = Some(layer);
    }

    /// What the TLS layer made of the bytes; true when it negotiated (its info changed).
    fn tls_output(
        &mut self,
        out: TlsOutput<'_>,
        ts: Timestamp,
        info: &mut TlsInfo,
        reported: &mut u8,
        env: &mut Env<'_>,
    ) -> bool {
        let client_is_a = self.client_is_a.unwrap_or(true);
        let from_a = |dir: Direction| (dir == Direction::ClientToServer) == client_is_a;
        if self.session.is_ignored() && !matches!(out, TlsOutput::Negotiated) {
            return false;
        }
        match out {
            TlsOutput::Data(dir, bytes) => {
                info.decrypted = true;
                self.plain(from_a(dir), Chunk::Data(bytes, ts), false, Some(info), env);
            }
            // Nothing decrypted yet: the session has nothing the loss could break.
            TlsOutput::Lost(_, _) if self.session.is_fresh() => {}
            TlsOutput::Lost(dir, lost) => {
                self.plain(from_a(dir), Chunk::Gap(lost), false, Some(info), env);
            }
            TlsOutput::Problem(dir, problem) => {
                let (kind, bit) = problem_kind(problem);
                let env_keys_expected = env.options.tls.keys_expected;
                if *reported & bit == 0
                    && let Some(flow) = self.flow()
                {
                    *reported |= bit;
                    let mut ctx = env.context(&flow);
                    ctx.tls = Some(info);
                    let mut detail = problem.describe();
                    if kind == AnomalyKind::TlsNoKeys && !env_keys_expected {
                        detail.push_str(" (no key log was given: --keylog FILE or SSLKEYLOGFILE)");
                    }
                    ctx.anomaly(dir, kind, &detail);
                }
                // One direction that cannot be read makes the connection unreadable: what the
                // other says (a 101 without its request, frames without a handshake) would be
                // a guess.
                self.session.ignore();
            }
            TlsOutput::Negotiated => return true,
            TlsOutput::CloseNotify(_) => {}
        }
        false
    }
}
