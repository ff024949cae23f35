//! One TCP connection's TLS, both directions: record framing, the handshake states, keys from
//! the [`KeyStore`], decryption in place, records held while keys may still arrive, and
//! resynchronisation after a capture gap.

use super::crypto::{self, Opened, RecordKey, Secret, Suite};
use super::hello::{self, HsReader};
use super::keylog::Secrets;
use super::{
    ALERT, APPLICATION_DATA, CHANGE_CIPHER_SPEC, HANDSHAKE, KeyStore, TlsInfo, TlsOutput,
    TlsProblem, looks_like_hello,
};
use crate::event::{Direction, PerDir};

mod resync;

const HEADER: usize = 5;
const PLAIN_MAX: usize = 1 << 14;
const CIPHER13_MAX: usize = PLAIN_MAX + 256;
const CIPHER12_MAX: usize = PLAIN_MAX + 2048;
/// Records waiting for keys, per connection.
const HELD_MAX: usize = 256 * 1024;
const HELD_GAPS_MAX: usize = 64;
/// Sequence numbers tried on one candidate record after a gap.
const TRIAL_MAX: u64 = 256;
/// TLS 1.3 records passed over without a key: 0-RTT, or handshake records whose secret the
/// key log lacks while looking for the first application record.
const SKIP_MAX: u32 = 1024;
/// Consecutive records failing their tag before a direction is given up.
const FAILS_MAX: u32 = 8;
const HEARTBEAT: u8 = 24;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Phase {
    /// Plaintext records: the hellos (and, in TLS 1.2, the rest of the handshake).
    #[default]
    Clear,
    /// TLS 1.3 client 0-RTT records under the early traffic key (until EndOfEarlyData).
    Early13,
    /// TLS 1.3 records under the handshake traffic key.
    Handshake13,
    /// Application traffic keys (TLS 1.3 after Finished, TLS 1.2 after ChangeCipherSpec).
    App,
    /// Nothing more is decrypted; what arrives is counted as lost.
    Dead,
}

#[derive(Default)]
struct Dir {
    /// The record being assembled, header included; capacity reserved once.
    rec: Vec<u8>,
    /// Bytes that followed a record found while resynchronising, fed again after it.
    spare: Vec<u8>,
    hs: HsReader,
    phase: Phase,
    key: Option<RecordKey>,
    seq: u64,
    /// TLS 1.3: the current traffic secret, from which a KeyUpdate derives the next.
    secret: Option<Secret>,
    /// TLS 1.3 handshake phase without the handshake secret: `key` is the application key
    /// and records that fail with it are the handshake's.
    app_search: bool,
    hs_decrypted: bool,
    /// TLS 1.3 handshake phase after a gap: a record failing with the handshake key may be
    /// the first under the application key.
    hs_desync: bool,
    skipped: u32,
    fails: u32,
    /// Lost bytes not yet reported.
    lost: u64,
    /// Raw bytes waiting for keys, and where gaps fell in them.
    held: Vec<u8>,
    held_gaps: Vec<(usize, u64)>,
    holding: bool,
    /// Bytes still to drop of a record cut by a gap.
    skip: usize,
    resync: Option<Window>,
    records: u64,
    record_bytes: u64,
}

/// Sequence numbers that the first record after a gap may have.
#[derive(Clone, Copy, Debug)]
struct Window {
    lo: u64,
    hi: u64,
    est: u64,
    /// Bytes lost after the last known boundary, for the TLS 1.3 application key's window.
    rest: u64,
}

/// One TCP connection's TLS, both directions; the client is the side that sent the
/// ClientHello.
#[derive(Default)]
pub struct TlsStream {
    dirs: PerDir<Dir>,
    info: TlsInfo,
    client_random: Option<[u8; 32]>,
    server_random: Option<[u8; 32]>,
    suite: Option<Suite>,
    server_hello: bool,
    tls13: bool,
    encrypt_then_mac: bool,
    early_data: bool,
    /// The key store generation last looked at.
    generation: Option<u64>,
    secrets: Option<Secrets>,
    reported: u8,
    held_total: usize,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("info", &self.info)
            .field("keys_known", &self.secrets.is_some())
            .finish()
    }
}

type Out<'o> = &'o mut dyn FnMut(TlsOutput<'_>);

impl TlsStream {
    pub fn new() -> TlsStream {
        TlsStream::default()
    }

    /// What the stream keeps on the heap, for the memory budget: each direction's record
    /// being assembled, bytes kept to feed again, and bytes held waiting for keys.
    pub fn memory(&self) -> usize {
        self.dirs
            .iter()
            .map(|d| {
                d.rec.capacity()
                    + d.spare.capacity()
                    + d.held.capacity()
                    + d.held_gaps.capacity() * std::mem::size_of::<(usize, u64)>()
            })
            .sum()
    }

    /// A TLS handshake record holding a ClientHello.
    pub fn looks_like_client_hello(bytes: &[u8]) -> bool {
        looks_like_hello(bytes, hello::CLIENT_HELLO)
    }

    /// A TLS handshake record holding a ServerHello.
    pub fn looks_like_server_hello(bytes: &[u8]) -> bool {
        looks_like_hello(bytes, hello::SERVER_HELLO)
    }

    pub fn info(&self) -> &TlsInfo {
        &self.info
    }

    /// Records wait for keys that may still arrive: call [`poll`](Self::poll) after the key
    /// store grew, or they wait for the next bytes of the connection.
    pub fn is_holding(&self) -> bool {
        self.dirs.iter().any(|d| d.holding)
    }

    /// Decrypts held records if their keys arrived since.
    pub fn poll(&mut self, keys: &KeyStore, out: Out<'_>) {
        self.retry_held(keys, out);
        self.flush_lost(out);
    }

    /// In-order TCP bytes of one direction.
    pub fn data(&mut self, dir: Direction, bytes: &[u8], keys: &KeyStore, out: Out<'_>) {
        self.retry_held(keys, out);
        self.feed(dir, bytes, keys, out);
        self.flush_lost(out);
    }

    /// `lost` bytes of `dir` will never arrive: the records they touched are lost; decryption
    /// resumes at the next record found.
    pub fn gap(&mut self, dir: Direction, lost: u64, keys: &KeyStore, out: Out<'_>) {
        self.retry_held(keys, out);
        self.cut(dir, lost, out);
        self.flush_lost(out);
    }

    /// The connection ends: records still waiting for keys are given up.
    pub fn finish(&mut self, keys: &KeyStore, out: Out<'_>) {
        self.retry_held(keys, out);
        for dir in [Direction::ClientToServer, Direction::ServerToClient] {
            if self.dirs[dir].holding {
                self.give_up_held(dir, out);
            }
            let d = &mut self.dirs[dir];
            if d.phase != Phase::Clear && !d.rec.is_empty() {
                d.lost += d.rec.len() as u64;
                d.rec.clear();
            }
        }
        self.flush_lost(out);
    }

    fn problem(&mut self, dir: Option<Direction>, p: TlsProblem, out: Out<'_>) {
        if self.reported & p.bit() == 0 {
            self.reported |= p.bit();
            out(TlsOutput::Problem(dir, p));
        }
    }

    fn flush_lost(&mut self, out: Out<'_>) {
        for dir in [Direction::ClientToServer, Direction::ServerToClient] {
            flush_dir(&mut self.dirs[dir], dir, out);
        }
    }

    fn kill(&mut self, dir: Direction) {
        let d = &mut self.dirs[dir];
        d.phase = Phase::Dead;
        d.lost += (d.rec.len() + d.spare.len()) as u64;
        d.rec.clear();
        d.spare.clear();
        d.resync = None;
        d.key = None;
    }

    fn limit(&self, dir: Direction) -> usize {
        if self.tls13 && self.dirs[dir].phase != Phase::Clear {
            CIPHER13_MAX
        } else {
            CIPHER12_MAX
        }
    }

    fn lookup(&mut self, keys: &KeyStore) {
        let g = keys.generation();
        if self.generation == Some(g) {
            return;
        }
        self.generation = Some(g);
        if let Some(r) = &self.client_random {
            self.secrets = keys.lookup(r);
        }
    }

    fn feed(&mut self, dir: Direction, mut input: &[u8], keys: &KeyStore, out: Out<'_>) {
        while !input.is_empty() {
            let limit = self.limit(dir);
            let d = &mut self.dirs[dir];
            if d.holding {
                self.hold_bytes(dir, input, out);
                return;
            }
            if d.phase == Phase::Dead {
                d.lost += input.len() as u64;
                return;
            }
            if d.skip > 0 {
                let n = d.skip.min(input.len());
                d.skip -= n;
                d.lost += n as u64;
                input = input.get(n..).unwrap_or_default();
                continue;
            }
            if d.resync.is_some() {
                let n = self.resync_feed(dir, input, keys, out);
                input = input.get(n..).unwrap_or_default();
                continue;
            }
            if d.rec.capacity() == 0 {
                d.rec.reserve_exact(HEADER + CIPHER12_MAX);
            }
            if d.rec.len() < HEADER {
                let take = (HEADER - d.rec.len()).min(input.len());
                d.rec.extend_from_slice(&input[..take]);
                input = &input[take..];
                if d.rec.len() < HEADER {
                    return;
                }
                if !header_plausible(&d.rec, limit, None) {
                    // Picked up mid-stream (no hello seen), the bytes may be inside a record.
                    let p = if self.client_random.is_none() && !self.server_hello {
                        TlsProblem::HandshakeMissed
                    } else {
                        TlsProblem::NotTls
                    };
                    self.problem(Some(dir), p, out);
                    self.kill(dir);
                    continue;
                }
            }
            let total = HEADER + record_len(&d.rec);
            let take = (total - d.rec.len()).min(input.len());
            d.rec.extend_from_slice(&input[..take]);
            input = &input[take..];
            if d.rec.len() < total {
                return;
            }
            d.records += 1;
            d.record_bytes += total as u64;
            self.record(dir, keys, out);
            let d = &mut self.dirs[dir];
            if !d.holding {
                d.rec.clear();
            }
        }
    }

    /// A complete record in `rec`.
    fn record(&mut self, dir: Direction, keys: &KeyStore, out: Out<'_>) {
        let d = &mut self.dirs[dir];
        let Some(&typ) = d.rec.first() else {
            return;
        };
        match (d.phase, typ) {
            (Phase::Dead, _) => d.lost += d.rec.len() as u64,
            (_, HEARTBEAT) => {}
            (Phase::Clear, HANDSHAKE) => self.clear_handshake(dir, out),
            (Phase::Clear, CHANGE_CIPHER_SPEC) => {
                if self.server_hello && !self.tls13 {
                    let d = &mut self.dirs[dir];
                    d.phase = Phase::App;
                    d.seq = 0;
                    d.key = None;
                }
            }
            (Phase::Clear, APPLICATION_DATA) => {
                if dir == Direction::ClientToServer && self.early_data {
                    // The client's first encrypted records after offering early_data: 0-RTT
                    // (or, the server having declined it, already its Finished).
                    self.dirs[dir].phase = Phase::Early13;
                    self.encrypted(dir, keys, out);
                } else if self.tls13 && self.server_hello {
                    self.dirs[dir].phase = Phase::Handshake13;
                    self.encrypted(dir, keys, out);
                } else {
                    self.problem(Some(dir), TlsProblem::HandshakeMissed, out);
                    self.kill(dir);
                }
            }
            (Phase::Clear, _) => {}
            // Middlebox-compatibility ChangeCipherSpec (TLS 1.3), or a renegotiation's.
            (_, CHANGE_CIPHER_SPEC) => {}
            // TLS 1.3 encrypts everything as application_data; a plaintext alert is ignored.
            (_, _) if self.tls13 && typ != APPLICATION_DATA => {}
            (_, _) => self.encrypted(dir, keys, out),
        }
    }

    fn clear_handshake(&mut self, dir: Direction, out: Out<'_>) {
        let mut ch = None;
        let mut sh = None;
        let d = &mut self.dirs[dir];
        let body = d.rec.get(HEADER..).unwrap_or_default();
        let res = d.hs.feed(body, &mut |typ, msg| match typ {
            hello::CLIENT_HELLO => ch = hello::client_hello(msg),
            hello::SERVER_HELLO => sh = hello::server_hello(msg),
            _ => {}
        });
        if res.is_err() {
            self.problem(Some(dir), TlsProblem::NotTls, out);
            self.kill(dir);
            return;
        }
        if let Some(ch) = ch {
            self.client_random = Some(ch.random);
            self.info.sni = ch.sni;
            self.info.alpn_offered = ch.alpn;
            // Sticky: 0-RTT sent before a HelloRetryRequest still precedes the second hello.
            self.early_data |= ch.early_data;
            self.generation = None;
        }
        if let Some(sh) = sh {
            self.info.version = Some(sh.version);
            self.info.cipher = Some(sh.cipher);
            self.tls13 = sh.version == 0x0304;
            if sh.retry {
                // HelloRetryRequest: a second ClientHello and the real ServerHello follow.
                return;
            }
            self.server_hello = true;
            self.server_random = Some(sh.random);
            self.encrypt_then_mac = sh.encrypt_then_mac;
            if sh.alpn.is_some() {
                self.info.alpn = sh.alpn;
            }
            self.suite = crypto::suite(sh.cipher).filter(|s| s.tls13 == self.tls13);
            if self.suite.is_none() {
                self.problem(None, TlsProblem::Unsupported(sh.cipher), out);
            }
            out(TlsOutput::Negotiated);
        }
    }

    /// Makes the direction's key for its phase. False when it cannot (the record is then
    /// held or counted lost, and a problem reported).
    fn ensure_key(&mut self, dir: Direction, keys: &KeyStore, out: Out<'_>) -> bool {
        if self.dirs[dir].key.is_some() {
            return true;
        }
        let (Some(suite), Some(cr)) = (self.suite, self.client_random) else {
            if self.server_hello && self.suite.is_none() {
                // Unsupported suite, already reported.
                self.kill(dir);
            } else {
                self.problem(Some(dir), TlsProblem::HandshakeMissed, out);
                self.kill(dir);
            }
            return false;
        };
        self.lookup(keys);
        let Some(secrets) = self.secrets else {
            return self.no_keys(dir, keys, out);
        };
        let client = dir == Direction::ClientToServer;
        let (hs, app) = if client {
            (secrets.client_hs, secrets.client_app)
        } else {
            (secrets.server_hs, secrets.server_app)
        };
        let d = &mut self.dirs[dir];
        let key = if suite.tls13 {
            let (secret, search) = match (d.phase, hs, app) {
                (Phase::Handshake13, Some(s), _) => (Some(s), false),
                (Phase::Handshake13, None, Some(a)) => (Some(a), true),
                (Phase::App, _, Some(a)) => (d.secret.or(Some(a)), false),
                _ => (None, false),
            };
            let Some(secret) = secret else {
                return self.no_keys(dir, keys, out);
            };
            d.app_search = search;
            d.secret = Some(secret);
            RecordKey::tls13(suite, &secret)
        } else {
            let (Some(master), Some(sr)) = (secrets.master, self.server_random) else {
                return self.no_keys(dir, keys, out);
            };
            RecordKey::tls12(suite, &master, &cr, &sr, client, self.encrypt_then_mac)
        };
        match key {
            Some(k) => {
                self.dirs[dir].key = Some(k);
                true
            }
            None => {
                // A secret of the wrong length for the suite's hash.
                self.problem(Some(dir), TlsProblem::DecryptFailed, out);
                self.kill(dir);
                false
            }
        }
    }

    fn no_keys(&mut self, dir: Direction, keys: &KeyStore, out: Out<'_>) -> bool {
        let d = &mut self.dirs[dir];
        if keys.is_growing() && self.held_total + d.rec.len() <= HELD_MAX {
            d.holding = true;
            d.held.extend_from_slice(&d.rec);
            self.held_total += d.rec.len();
            d.rec.clear();
            return false;
        }
        if d.holding {
            self.give_up_held(dir, out);
        }
        self.problem(Some(dir), TlsProblem::NoKeys, out);
        self.kill(dir);
        false
    }

    fn hold_bytes(&mut self, dir: Direction, bytes: &[u8], out: Out<'_>) {
        if self.held_total + bytes.len() > HELD_MAX {
            self.give_up_held(dir, out);
            self.dirs[dir].lost += bytes.len() as u64;
            return;
        }
        self.dirs[dir].held.extend_from_slice(bytes);
        self.held_total += bytes.len();
    }

    fn give_up_held(&mut self, dir: Direction, out: Out<'_>) {
        let d = &mut self.dirs[dir];
        let gaps: u64 = d.held_gaps.iter().map(|g| g.1).sum();
        d.lost += d.held.len() as u64 + gaps;
        self.held_total -= d.held.len().min(self.held_total);
        d.held.clear();
        d.held_gaps.clear();
        d.holding = false;
        self.problem(Some(dir), TlsProblem::NoKeys, out);
        self.kill(dir);
    }

    fn retry_held(&mut self, keys: &KeyStore, out: Out<'_>) {
        if !self.is_holding() || self.generation == Some(keys.generation()) {
            return;
        }
        let before = self.secrets;
        self.lookup(keys);
        // The generation is the whole store's: replay only when this session's keys changed.
        if self.secrets.is_none() || self.secrets == before {
            return;
        }
        for dir in [Direction::ClientToServer, Direction::ServerToClient] {
            let d = &mut self.dirs[dir];
            if !d.holding {
                continue;
            }
            d.holding = false;
            let held = std::mem::take(&mut d.held);
            let gaps = std::mem::take(&mut d.held_gaps);
            self.held_total -= held.len().min(self.held_total);
            let mut at = 0;
            for &(pos, lost) in &gaps {
                self.feed(dir, held.get(at..pos).unwrap_or_default(), keys, out);
                self.cut(dir, lost, out);
                at = pos;
            }
            self.feed(dir, held.get(at..).unwrap_or_default(), keys, out);
        }
    }

    /// Decrypts the record in `rec` with the direction's key at its sequence number.
    fn encrypted(&mut self, dir: Direction, keys: &KeyStore, out: Out<'_>) {
        if self.dirs[dir].phase == Phase::Early13 {
            self.early(dir, keys, out);
            return;
        }
        if !self.ensure_key(dir, keys, out) {
            return;
        }
        let early = self.early_data;
        let d = &mut self.dirs[dir];
        let Some(key) = &d.key else {
            return;
        };
        let Some((header, body)) = split_record(&mut d.rec) else {
            return;
        };
        // After a gap in the handshake the record may be under the application key instead:
        // it is kept for that second try.
        let retry = d.phase == Phase::Handshake13 && d.hs_desync;
        let opened = if retry {
            key.open(d.seq, header, body)
        } else {
            key.open_once(d.seq, header, body)
        };
        if let Some(opened) = opened {
            if d.app_search {
                d.app_search = false;
                d.phase = Phase::App;
            }
            self.opened(dir, opened, out);
            return;
        }
        if d.phase == Phase::Handshake13 && d.hs_desync && self.try_app_key(dir, 4, out) {
            return;
        }
        let d = &mut self.dirs[dir];
        let len = d.rec.len() as u64;
        if d.app_search
            || (d.phase == Phase::Handshake13
                && dir == Direction::ClientToServer
                && early
                && !d.hs_decrypted)
        {
            // A handshake record without its secret, or 0-RTT data without an early secret.
            d.skipped += 1;
            if d.skipped <= SKIP_MAX {
                return;
            }
        }
        d.seq += 1;
        d.fails += 1;
        d.lost += len;
        let dead = d.fails >= FAILS_MAX || d.skipped > SKIP_MAX;
        self.problem(Some(dir), TlsProblem::DecryptFailed, out);
        if dead {
            self.kill(dir);
        }
    }

    /// A client record while 0-RTT may be going on: under the early secret (the suite is the
    /// resumed session's, not known before the ServerHello: tried by the secret's length),
    /// else the end of early data. Without an early secret 0-RTT records are passed over.
    fn early(&mut self, dir: Direction, keys: &KeyStore, out: Out<'_>) {
        self.lookup(keys);
        let Some(secrets) = self.secrets else {
            if self.client_random.is_none() {
                self.problem(Some(dir), TlsProblem::HandshakeMissed, out);
                self.kill(dir);
            } else {
                self.no_keys(dir, keys, out);
            }
            return;
        };
        let suite = self.suite;
        let d = &mut self.dirs[dir];
        let Some((header, body)) = split_record(&mut d.rec) else {
            return;
        };
        let mut opened = None;
        if let Some(k) = &d.key {
            opened = k.open(d.seq, header, body);
        } else if let Some(early) = secrets.client_early {
            let ids: &[u16] = match (suite, early.as_bytes().len()) {
                (Some(s), _) => &[s.id],
                (None, 48) => &[0x1302],
                (None, _) => &[0x1301, 0x1303],
            };
            for s in ids.iter().filter_map(|&id| crypto::suite(id)) {
                if let Some(k) = RecordKey::tls13(s, &early)
                    && let Some(o) = k.open(d.seq, header, body)
                {
                    d.key = Some(k);
                    opened = Some(o);
                    break;
                }
            }
        }
        if let Some(o) = opened {
            self.opened(dir, o, out);
            return;
        }
        if self.server_hello {
            // Not early data (any more): the handshake key's records from here.
            let d = &mut self.dirs[dir];
            d.phase = Phase::Handshake13;
            d.key = None;
            d.seq = 0;
            self.encrypted(dir, keys, out);
        }
    }

    /// A record decrypted in place: deliver or act on its content.
    fn opened(&mut self, dir: Direction, o: Opened, out: Out<'_>) {
        let tls13 = self.tls13;
        let d = &mut self.dirs[dir];
        d.seq += 1;
        d.fails = 0;
        if o.content_type == APPLICATION_DATA && o.end > o.start {
            flush_dir(d, dir, out);
        }
        let content = d
            .rec
            .get(HEADER + o.start..HEADER + o.end)
            .unwrap_or_default();
        match o.content_type {
            APPLICATION_DATA if !content.is_empty() => {
                self.info.decrypted = true;
                out(TlsOutput::Data(dir, content));
            }
            ALERT if content.get(1) == Some(&0) => out(TlsOutput::CloseNotify(dir)),
            // After a gap in the handshake the messages cannot be told apart: the switch to
            // the application key is found by trial instead (try_app_key).
            HANDSHAKE if tls13 && d.hs_desync && d.phase == Phase::Handshake13 => {}
            HANDSHAKE if tls13 => {
                if d.phase == Phase::Handshake13 {
                    d.hs_decrypted = true;
                }
                let mut finished = false;
                let mut end_of_early = false;
                let mut update = false;
                let mut alpn = None;
                let mut ee = false;
                let res = d.hs.feed(content, &mut |typ, msg| match typ {
                    hello::FINISHED => finished = true,
                    hello::END_OF_EARLY_DATA => end_of_early = true,
                    hello::KEY_UPDATE => update = true,
                    hello::ENCRYPTED_EXTENSIONS => {
                        ee = true;
                        alpn = hello::encrypted_extensions_alpn(msg);
                    }
                    _ => {}
                });
                if res.is_err() {
                    d.hs.reset();
                }
                if ee {
                    if alpn.is_some() {
                        self.info.alpn = alpn;
                    }
                    out(TlsOutput::Negotiated);
                }
                let d = &mut self.dirs[dir];
                if end_of_early && d.phase == Phase::Early13 {
                    d.phase = Phase::Handshake13;
                    d.key = None;
                    d.seq = 0;
                } else if finished && d.phase == Phase::Handshake13 {
                    d.phase = Phase::App;
                    d.key = None;
                    d.secret = None;
                    d.seq = 0;
                } else if update && d.phase == Phase::App {
                    let next = self.suite.zip(d.secret).and_then(|(s, sec)| {
                        crypto::next_traffic_secret(s.hash, &sec).map(|n| (s, n))
                    });
                    d.key = next.and_then(|(s, n)| RecordKey::tls13(s, &n));
                    d.secret = next.map(|n| n.1);
                    d.seq = 0;
                    if d.key.is_none() {
                        self.kill(dir);
                    }
                }
            }
            _ => {}
        }
    }
}

fn flush_dir(d: &mut Dir, dir: Direction, out: Out<'_>) {
    if d.lost > 0 {
        out(TlsOutput::Lost(dir, d.lost));
        d.lost = 0;
    }
}

fn record_len(rec: &[u8]) -> usize {
    match rec {
        [_, _, _, a, b, ..] => usize::from(*a) << 8 | usize::from(*b),
        _ => 0,
    }
}

fn split_record(rec: &mut [u8]) -> Option<([u8; 5], &mut [u8])> {
    if rec.len() < HEADER {
        return None;
    }
    let (h, body) = rec.split_at_mut(HEADER);
    Some((h.try_into().ok()?, body))
}

/// A record header as the stream may carry one.
fn header_plausible(h: &[u8], limit: usize, want: Option<u8>) -> bool {
    let [typ, major, minor, ..] = *h else {
        return false;
    };
    (20..=24).contains(&typ)
        && want.is_none_or(|w| w == typ)
        && major == 3
        && minor <= 4
        && record_len(h) <= limit
}
