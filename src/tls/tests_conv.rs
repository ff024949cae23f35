//! Conversations for the stream tests, built from known secrets with the AEAD crates' encrypt
//! side, and the helpers that feed them to a [`TlsStream`].

use super::crypto::{self, RecordKey, Secret};
use super::{KeyStore, TlsOutput, TlsProblem, TlsStream};
use crate::event::Direction;

pub(super) const C2S: Direction = Direction::ClientToServer;
pub(super) const S2C: Direction = Direction::ServerToClient;

#[derive(Debug, Default)]
pub(super) struct Got {
    pub(super) data: [Vec<u8>; 2],
    pub(super) lost: [u64; 2],
    /// Data delivered after a Lost, per direction.
    pub(super) after_lost: [Vec<u8>; 2],
    pub(super) problems: Vec<(Option<Direction>, TlsProblem)>,
    pub(super) negotiated: usize,
    pub(super) close: [bool; 2],
}

impl Got {
    pub(super) fn sink(&mut self) -> impl FnMut(TlsOutput<'_>) + '_ {
        |o| match o {
            TlsOutput::Data(d, b) => {
                self.data[d.index()].extend_from_slice(b);
                if self.lost[d.index()] > 0 {
                    self.after_lost[d.index()].extend_from_slice(b);
                }
            }
            TlsOutput::Lost(d, n) => self.lost[d.index()] += n,
            TlsOutput::Problem(d, p) => self.problems.push((d, p)),
            TlsOutput::Negotiated => self.negotiated += 1,
            TlsOutput::CloseNotify(d) => self.close[d.index()] = true,
        }
    }
}

pub(super) struct Conv {
    pub(super) events: Vec<(Direction, Vec<u8>)>,
    pub(super) keylog: String,
    pub(super) want: [Vec<u8>; 2],
    /// The server's last event: application records (wire bytes, payload), for gap tests.
    pub(super) tail: Vec<(Vec<u8>, Vec<u8>)>,
}

pub(super) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(super) fn hs(typ: u8, body: &[u8]) -> Vec<u8> {
    let n = body.len();
    let mut m = vec![typ, (n >> 16) as u8, (n >> 8) as u8, n as u8];
    m.extend_from_slice(body);
    m
}

pub(super) fn record(typ: u8, minor: u8, body: &[u8]) -> Vec<u8> {
    let mut r = vec![typ, 3, minor, (body.len() >> 8) as u8, body.len() as u8];
    r.extend_from_slice(body);
    r
}

pub(super) fn ext(typ: u16, body: &[u8]) -> Vec<u8> {
    let mut e = typ.to_be_bytes().to_vec();
    e.extend_from_slice(&(body.len() as u16).to_be_bytes());
    e.extend_from_slice(body);
    e
}

pub(super) fn client_hello(random: &[u8; 32], tls13: bool, early: bool) -> Vec<u8> {
    let mut b = vec![3, 3];
    b.extend_from_slice(random);
    b.push(32);
    b.extend_from_slice(&[0x5a; 32]);
    b.extend_from_slice(&[0, 8, 0x13, 0x01, 0x13, 0x02, 0x13, 0x03, 0xc0, 0x2f]);
    b.extend_from_slice(&[1, 0]);
    let mut exts = ext(
        0,
        &[
            0, 14, 0, 0, 11, b'e', b'x', b'a', b'm', b'p', b'l', b'e', b'.', b'o', b'r', b'g',
        ],
    );
    exts.extend(ext(
        16,
        &[
            0, 12, 2, b'h', b'2', 8, b'h', b't', b't', b'p', b'/', b'1', b'.', b'1',
        ],
    ));
    if tls13 {
        exts.extend(ext(43, &[4, 3, 4, 3, 3]));
    }
    if early {
        exts.extend(ext(42, &[]));
    }
    b.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    b.extend(exts);
    record(22, 1, &hs(1, &b))
}

pub(super) fn server_hello(random: &[u8; 32], cipher: u16, tls13: bool) -> Vec<u8> {
    server_hello_etm(random, cipher, tls13, false)
}

pub(super) fn server_hello_etm(random: &[u8; 32], cipher: u16, tls13: bool, etm: bool) -> Vec<u8> {
    let mut b = vec![3, 3];
    b.extend_from_slice(random);
    b.push(32);
    b.extend_from_slice(&[0x5a; 32]);
    b.extend_from_slice(&cipher.to_be_bytes());
    b.push(0);
    let mut exts = if tls13 {
        ext(43, &[3, 4])
    } else {
        ext(
            16,
            &[0, 9, 8, b'h', b't', b't', b'p', b'/', b'1', b'.', b'1'],
        )
    };
    if etm {
        exts.extend(ext(22, &[]));
    }
    b.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    b.extend(exts);
    record(22, 3, &hs(2, &b))
}

pub(super) const CCS: [u8; 6] = [20, 3, 3, 0, 1, 1];
pub(super) const HRR_RANDOM: [u8; 32] = [
    0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
    0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
];

pub(super) fn payload(tag: u8, n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| tag.wrapping_add(i as u8).wrapping_mul(31))
        .collect()
}

/// Sizes of the server's last application records; `big` adds a full 16 KiB one.
pub(super) fn tail_sizes(big: bool) -> Vec<usize> {
    let mut v = vec![40, 1, 300, 77, 1200, 5, 64, 900, 33, 150];
    if big {
        v.insert(4, 16384);
    }
    v
}

pub(super) struct Opts {
    pub(super) hrr: bool,
    pub(super) early: bool,
    pub(super) big: bool,
}

pub(super) fn tls13_conv(suite_id: u16, o: Opts) -> Conv {
    let suite = crypto::suite(suite_id).unwrap();
    let hl = suite.hash.len();
    let sec = |b: u8| Secret::new(&vec![b; hl]).unwrap();
    let key = |s: &Secret| RecordKey::tls13(suite, s).unwrap();
    let (chs, shs, cap, sap) = (sec(0x11), sec(0x22), sec(0x33), sec(0x44));
    let cap1 = crypto::next_traffic_secret(suite.hash, &cap).unwrap();
    let sap1 = crypto::next_traffic_secret(suite.hash, &sap).unwrap();
    let random = [0xA7; 32];
    let mut keylog = String::from("# made by the test\n");
    for (label, s) in [
        ("CLIENT_HANDSHAKE_TRAFFIC_SECRET", chs),
        ("SERVER_HANDSHAKE_TRAFFIC_SECRET", shs),
        ("CLIENT_TRAFFIC_SECRET_0", cap),
        ("SERVER_TRAFFIC_SECRET_0", sap),
    ] {
        keylog += &format!("{label} {} {}\r\n", hex(&random), hex(s.as_bytes()));
    }
    let mut want: [Vec<u8>; 2] = Default::default();
    let mut events = Vec::new();
    events.push((C2S, client_hello(&random, true, o.early)));
    if o.early {
        // 0-RTT under an early secret nobody logged.
        let early = key(&sec(0x99));
        let mut c = early.seal(0, 23, b"early data nobody can read", 0);
        c.extend(early.seal(1, 23, b"more early", 0));
        events.push((C2S, c));
    }
    if o.hrr {
        let mut hrr = server_hello(&HRR_RANDOM, suite_id, true);
        hrr.extend_from_slice(&CCS);
        events.push((S2C, hrr));
        let mut c = CCS.to_vec();
        c.extend(client_hello(&random, true, false));
        events.push((C2S, c));
    }
    let (shk, chk) = (key(&shs), key(&chs));
    let mut s = server_hello(&[0x5e; 32], suite_id, true);
    s.extend_from_slice(&CCS);
    let ee = hs(8, &[0, 11, 0, 16, 0, 7, 0, 5, 4, b'w', b'a', b'n', b't']);
    s.extend(shk.seal(0, 22, &ee, 5));
    // A certificate spanning two records, the Finished in the second one.
    let cert = hs(11, &payload(3, 700));
    let fin = hs(20, &[0xf1; 32]);
    let mut second = cert[300..].to_vec();
    second.extend_from_slice(&fin);
    s.extend(shk.seal(1, 22, &cert[..300], 0));
    s.extend(shk.seal(2, 22, &second, 0));
    events.push((S2C, s));
    let mut c = CCS.to_vec();
    if o.early && !o.hrr {
        // EndOfEarlyData under the early key: fails with the handshake key, skipped.
        c.extend(key(&sec(0x99)).seal(2, 22, &hs(5, &[]), 0));
    }
    c.extend(chk.seal(0, 22, &hs(20, &[0xc1; 32]), 0));
    let (cak, sak) = (key(&cap), key(&sap));
    let c1 = payload(1, 120);
    c.extend(cak.seal(0, 23, &c1, 0));
    want[0].extend(&c1);
    events.push((C2S, c));
    let mut s = sak.seal(0, 22, &hs(4, &payload(9, 200)), 0);
    let s1 = payload(2, 500);
    s.extend(sak.seal(1, 23, &s1, 10));
    want[1].extend(&s1);
    // KeyUpdate(update_requested) from the server, then its next key.
    s.extend(sak.seal(2, 22, &hs(24, &[1]), 0));
    let s1k = key(&sap1);
    let s2 = payload(4, 90);
    s.extend(s1k.seal(0, 23, &s2, 0));
    want[1].extend(&s2);
    events.push((S2C, s));
    let c1k = key(&cap1);
    let mut c = cak.seal(1, 22, &hs(24, &[0]), 0);
    let c2 = payload(5, 64);
    c.extend(c1k.seal(0, 23, &c2, 0));
    want[0].extend(&c2);
    c.extend(c1k.seal(1, 21, &[1, 0], 0));
    events.push((C2S, c));
    let mut s = Vec::new();
    let mut tail = Vec::new();
    for (i, n) in tail_sizes(o.big).into_iter().enumerate() {
        let p = payload(20 + i as u8, n);
        let r = s1k.seal(1 + i as u64, 23, &p, i % 3);
        s.extend(&r);
        want[1].extend(&p);
        tail.push((r, p));
    }
    events.push((S2C, s));
    Conv {
        events,
        keylog,
        want,
        tail,
    }
}

pub(super) fn tls12_conv(suite_id: u16, resumed: bool, big: bool) -> Conv {
    tls12_conv_etm(suite_id, resumed, big, false)
}

pub(super) fn tls12_conv_etm(suite_id: u16, resumed: bool, big: bool, etm: bool) -> Conv {
    let suite = crypto::suite(suite_id).unwrap();
    let master = Secret::new(&[0x6d; 48]).unwrap();
    let (cr, sr) = ([0xC1; 32], [0x5E; 32]);
    let keylog = format!("CLIENT_RANDOM {} {}\n", hex(&cr), hex(master.as_bytes()));
    let ck = RecordKey::tls12(suite, &master, &cr, &sr, true, etm).unwrap();
    let sk = RecordKey::tls12(suite, &master, &cr, &sr, false, etm).unwrap();
    let mut want: [Vec<u8>; 2] = Default::default();
    let mut events = vec![(C2S, client_hello(&cr, false, false))];
    let mut s = server_hello_etm(&sr, suite_id, false, etm);
    let fin = |b| hs(20, &[b; 12]);
    if resumed {
        s.extend_from_slice(&CCS);
        s.extend(sk.seal(0, 22, &fin(0xaa), 0));
        events.push((S2C, s));
        let mut c = CCS.to_vec();
        c.extend(ck.seal(0, 22, &fin(0xbb), 0));
        events.push((C2S, c));
    } else {
        let mut flight = hs(11, &payload(7, 1800));
        flight.extend(hs(12, &payload(8, 300)));
        flight.extend(hs(14, &[]));
        s.extend(record(22, 3, &flight));
        events.push((S2C, s));
        let mut c = record(22, 3, &hs(16, &payload(9, 66)));
        c.extend_from_slice(&CCS);
        c.extend(ck.seal(0, 22, &fin(0xbb), 0));
        events.push((C2S, c));
        let mut s = CCS.to_vec();
        s.extend(sk.seal(0, 22, &fin(0xaa), 0));
        events.push((S2C, s));
    }
    let c1 = payload(1, 333);
    let mut c = ck.seal(1, 23, &c1, 0);
    want[0].extend(&c1);
    c.extend(ck.seal(2, 21, &[1, 0], 0));
    events.push((C2S, c));
    let mut s = Vec::new();
    let mut tail = Vec::new();
    for (i, n) in tail_sizes(big).into_iter().enumerate() {
        let p = payload(40 + i as u8, n);
        let r = sk.seal(1 + i as u64, 23, &p, 0);
        s.extend(&r);
        want[1].extend(&p);
        tail.push((r, p));
    }
    events.push((S2C, s));
    Conv {
        events,
        keylog,
        want,
        tail,
    }
}

pub(super) fn keys_of(conv: &Conv) -> KeyStore {
    let ks = KeyStore::new();
    ks.add(conv.keylog.as_bytes());
    ks
}

/// Feeds each event in pieces of `chunk` bytes; event `split.0` is cut at `split.1` instead.
pub(super) fn run(
    conv: &Conv,
    keys: &KeyStore,
    chunk: usize,
    split: Option<(usize, usize)>,
) -> (Got, TlsStream) {
    let mut got = Got::default();
    let mut tls = TlsStream::new();
    {
        let mut sink = got.sink();
        for (i, (dir, bytes)) in conv.events.iter().enumerate() {
            match split {
                Some((e, at)) if e == i => {
                    tls.data(*dir, &bytes[..at], keys, &mut sink);
                    tls.data(*dir, &bytes[at..], keys, &mut sink);
                }
                _ => {
                    for piece in bytes.chunks(chunk) {
                        tls.data(*dir, piece, keys, &mut sink);
                    }
                }
            }
        }
        tls.finish(keys, &mut sink);
    }
    (got, tls)
}

pub(super) fn assert_clean(conv: &Conv, got: &Got, what: &str) {
    assert!(got.problems.is_empty(), "{what}: {:?}", got.problems);
    assert_eq!(got.lost, [0, 0], "{what}");
    assert!(got.data[0] == conv.want[0], "{what}: c2s data differs");
    assert!(got.data[1] == conv.want[1], "{what}: s2c data differs");
}

pub(super) fn record_starts(bytes: &[u8]) -> Vec<usize> {
    let mut v = Vec::new();
    let mut at = 0;
    while at + 5 <= bytes.len() {
        v.push(at);
        at += 5 + (usize::from(bytes[at + 3]) << 8 | usize::from(bytes[at + 4]));
    }
    v
}
