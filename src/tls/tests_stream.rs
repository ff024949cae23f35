//! Whole conversations through [`TlsStream`]: RFC 8448's trace, and TLS 1.3 / 1.2
//! conversations built here with the AEAD crates' encrypt side from known secrets, split at
//! every byte boundary, with gaps, late keys, KeyUpdate, HelloRetryRequest and 0-RTT.

use super::crypto::{self, RecordKey, Secret};
use super::tests::*;
use super::{KeyStore, TlsOutput, TlsProblem, TlsStream};
use crate::event::Direction;

const C2S: Direction = Direction::ClientToServer;
const S2C: Direction = Direction::ServerToClient;

#[derive(Debug, Default)]
struct Got {
    data: [Vec<u8>; 2],
    lost: [u64; 2],
    /// Data delivered after a Lost, per direction.
    after_lost: [Vec<u8>; 2],
    problems: Vec<(Option<Direction>, TlsProblem)>,
    negotiated: usize,
    close: [bool; 2],
}

impl Got {
    fn sink(&mut self) -> impl FnMut(TlsOutput<'_>) + '_ {
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

struct Conv {
    events: Vec<(Direction, Vec<u8>)>,
    keylog: String,
    want: [Vec<u8>; 2],
    /// The server's last event: application records (wire bytes, payload), for gap tests.
    tail: Vec<(Vec<u8>, Vec<u8>)>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hs(typ: u8, body: &[u8]) -> Vec<u8> {
    let n = body.len();
    let mut m = vec![typ, (n >> 16) as u8, (n >> 8) as u8, n as u8];
    m.extend_from_slice(body);
    m
}

fn record(typ: u8, minor: u8, body: &[u8]) -> Vec<u8> {
    let mut r = vec![typ, 3, minor, (body.len() >> 8) as u8, body.len() as u8];
    r.extend_from_slice(body);
    r
}

fn ext(typ: u16, body: &[u8]) -> Vec<u8> {
    let mut e = typ.to_be_bytes().to_vec();
    e.extend_from_slice(&(body.len() as u16).to_be_bytes());
    e.extend_from_slice(body);
    e
}

fn client_hello(random: &[u8; 32], tls13: bool, early: bool) -> Vec<u8> {
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

fn server_hello(random: &[u8; 32], cipher: u16, tls13: bool) -> Vec<u8> {
    let mut b = vec![3, 3];
    b.extend_from_slice(random);
    b.push(32);
    b.extend_from_slice(&[0x5a; 32]);
    b.extend_from_slice(&cipher.to_be_bytes());
    b.push(0);
    let exts = if tls13 {
        ext(43, &[3, 4])
    } else {
        ext(
            16,
            &[0, 9, 8, b'h', b't', b't', b'p', b'/', b'1', b'.', b'1'],
        )
    };
    b.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    b.extend(exts);
    record(22, 3, &hs(2, &b))
}

const CCS: [u8; 6] = [20, 3, 3, 0, 1, 1];
const HRR_RANDOM: [u8; 32] = [
    0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
    0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
];

fn payload(tag: u8, n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| tag.wrapping_add(i as u8).wrapping_mul(31))
        .collect()
}

/// Sizes of the server's last application records; `big` adds a full 16 KiB one.
fn tail_sizes(big: bool) -> Vec<usize> {
    let mut v = vec![40, 1, 300, 77, 1200, 5, 64, 900, 33, 150];
    if big {
        v.insert(4, 16384);
    }
    v
}

struct Opts {
    hrr: bool,
    early: bool,
    big: bool,
}

fn tls13_conv(suite_id: u16, o: Opts) -> Conv {
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

fn tls12_conv(suite_id: u16, resumed: bool, big: bool) -> Conv {
    let suite = crypto::suite(suite_id).unwrap();
    let master = Secret::new(&[0x6d; 48]).unwrap();
    let (cr, sr) = ([0xC1; 32], [0x5E; 32]);
    let keylog = format!("CLIENT_RANDOM {} {}\n", hex(&cr), hex(master.as_bytes()));
    let ck = RecordKey::tls12(suite, &master, &cr, &sr, true).unwrap();
    let sk = RecordKey::tls12(suite, &master, &cr, &sr, false).unwrap();
    let mut want: [Vec<u8>; 2] = Default::default();
    let mut events = vec![(C2S, client_hello(&cr, false, false))];
    let mut s = server_hello(&sr, suite_id, false);
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

fn keys_of(conv: &Conv) -> KeyStore {
    let ks = KeyStore::new();
    ks.add(conv.keylog.as_bytes());
    ks
}

/// Feeds each event in pieces of `chunk` bytes; event `split.0` is cut at `split.1` instead.
fn run(
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

fn assert_clean(conv: &Conv, got: &Got, what: &str) {
    assert!(got.problems.is_empty(), "{what}: {:?}", got.problems);
    assert_eq!(got.lost, [0, 0], "{what}");
    assert!(got.data[0] == conv.want[0], "{what}: c2s data differs");
    assert!(got.data[1] == conv.want[1], "{what}: s2c data differs");
}

#[test]
fn rfc8448_trace_through_the_stream() {
    let mut keylog = String::new();
    for (label, s) in [
        ("CLIENT_HANDSHAKE_TRAFFIC_SECRET", C_HS_TRAFFIC),
        ("SERVER_HANDSHAKE_TRAFFIC_SECRET", S_HS_TRAFFIC),
        ("CLIENT_TRAFFIC_SECRET_0", C_AP_TRAFFIC),
        ("SERVER_TRAFFIC_SECRET_0", S_AP_TRAFFIC),
    ] {
        keylog += &format!("{label} {} {}\n", hex(&h(CLIENT_RANDOM)), hex(&h(s)));
    }
    let ch = record(22, 1, &h(CLIENT_HELLO));
    let mut s1 = h(SERVER_HELLO_RECORD);
    s1.extend(h(SERVER_FLIGHT_RECORD));
    let events = vec![
        (C2S, ch),
        (S2C, s1),
        (C2S, h(CLIENT_FINISHED_RECORD)),
        (S2C, h(NEW_SESSION_TICKET_RECORD)),
        (C2S, h(CLIENT_APP_RECORD)),
        (S2C, h(SERVER_APP_RECORD)),
        (C2S, h(CLIENT_ALERT_RECORD)),
        (S2C, h(SERVER_ALERT_RECORD)),
    ];
    let payload: Vec<u8> = (0u8..50).collect();
    let conv = Conv {
        events,
        keylog,
        want: [payload.clone(), payload],
        tail: Vec::new(),
    };
    let ks = keys_of(&conv);
    for chunk in [1, 3, 100, 100_000] {
        let (got, tls) = run(&conv, &ks, chunk, None);
        assert_clean(&conv, &got, &format!("chunk {chunk}"));
        assert_eq!(got.close, [true, true]);
        let info = tls.info();
        assert_eq!(info.version_name(), Some("TLS 1.3"));
        assert_eq!(info.cipher_name(), Some("TLS_AES_128_GCM_SHA256"));
        assert_eq!(info.sni.as_deref(), Some("server"));
        assert!(info.decrypted);
    }
    // Only the traffic secrets: the handshake records are passed over, the switch found.
    let only_app: String = conv
        .keylog
        .lines()
        .filter(|l| l.contains("_TRAFFIC_SECRET_0"))
        .map(|l| format!("{l}\n"))
        .collect();
    let ks = KeyStore::new();
    ks.add(only_app.as_bytes());
    let (got, _) = run(&conv, &ks, 100_000, None);
    assert_clean(&conv, &got, "traffic secrets only");
    // No keys at all.
    let (got, tls) = run(&conv, &KeyStore::new(), 7, None);
    assert!(
        got.problems.contains(&(Some(S2C), TlsProblem::NoKeys)),
        "{:?}",
        got.problems
    );
    assert!(got.data[0].is_empty() && got.data[1].is_empty());
    assert!(got.lost[0] > 0 && got.lost[1] > 0);
    assert!(!tls.info().decrypted);
}

#[test]
fn tls13_every_suite_every_split() {
    for id in [0x1301, 0x1302, 0x1303] {
        let conv = tls13_conv(
            id,
            Opts {
                hrr: false,
                early: false,
                big: false,
            },
        );
        let ks = keys_of(&conv);
        let (got, tls) = run(&conv, &ks, usize::MAX, None);
        assert_clean(&conv, &got, &format!("{id:04x} whole"));
        assert_eq!(got.close, [true, false]);
        assert_eq!(tls.info().alpn.as_deref(), Some("want"));
        assert_eq!(tls.info().alpn_offered, ["h2", "http/1.1"]);
        assert_eq!(tls.info().sni.as_deref(), Some("example.org"));
        assert_eq!(tls.info().cipher, Some(id));
        // Every boundary for one suite; the others share the framing code (a debug build's
        // AES is slow, and the test stays within seconds).
        let step = if id == 0x1301 { 1 } else { 11 };
        for (e, (_, bytes)) in conv.events.iter().enumerate() {
            for at in (0..=bytes.len()).step_by(step) {
                let (got, _) = run(&conv, &ks, usize::MAX, Some((e, at)));
                assert_clean(&conv, &got, &format!("{id:04x} event {e} split {at}"));
            }
        }
        for chunk in [1, 2, 5, 17, 1000] {
            let (got, _) = run(&conv, &ks, chunk, None);
            assert_clean(&conv, &got, &format!("{id:04x} chunk {chunk}"));
        }
        let big = tls13_conv(
            id,
            Opts {
                hrr: false,
                early: false,
                big: true,
            },
        );
        let (got, _) = run(&big, &keys_of(&big), 1460, None);
        assert_clean(&big, &got, &format!("{id:04x} with a 16 KiB record"));
    }
}

#[test]
fn tls13_hello_retry_and_zero_rtt() {
    for (hrr, early) in [(true, false), (false, true), (true, true)] {
        let conv = tls13_conv(
            0x1301,
            Opts {
                hrr,
                early,
                big: false,
            },
        );
        let ks = keys_of(&conv);
        for chunk in [1, 9, usize::MAX] {
            let (got, _) = run(&conv, &ks, chunk, None);
            assert_clean(
                &conv,
                &got,
                &format!("hrr {hrr} early {early} chunk {chunk}"),
            );
        }
    }
}

#[test]
fn tls12_suites_full_and_resumed_every_split() {
    for id in [0xC02F, 0xC030, 0xCCA8, 0x009C] {
        for resumed in [false, true] {
            let conv = tls12_conv(id, resumed, false);
            let ks = keys_of(&conv);
            let (got, tls) = run(&conv, &ks, usize::MAX, None);
            let what = format!("{id:04x} resumed {resumed}");
            assert_clean(&conv, &got, &what);
            assert_eq!(got.close, [true, false], "{what}");
            assert_eq!(tls.info().version_name(), Some("TLS 1.2"));
            assert_eq!(tls.info().alpn.as_deref(), Some("http/1.1"));
            for (e, (_, bytes)) in conv.events.iter().enumerate() {
                for at in (0..=bytes.len()).step_by(if id == 0xC02F { 1 } else { 7 }) {
                    let (got, _) = run(&conv, &ks, usize::MAX, Some((e, at)));
                    assert_clean(&conv, &got, &format!("{what} event {e} split {at}"));
                }
            }
            let (got, _) = run(&conv, &ks, 3, None);
            assert_clean(&conv, &got, &format!("{what} chunk 3"));
        }
        let big = tls12_conv(id, false, true);
        let (got, _) = run(&big, &keys_of(&big), 1448, None);
        assert_clean(&big, &got, &format!("{id:04x} with a 16 KiB record"));
    }
}

/// Feeds the conversation, but in the last event drops `from..to`, reported as a gap.
fn run_gap(conv: &Conv, keys: &KeyStore, from: usize, to: usize) -> Got {
    let mut got = Got::default();
    let mut tls = TlsStream::new();
    {
        let mut sink = got.sink();
        let last = conv.events.len() - 1;
        for (i, (dir, bytes)) in conv.events.iter().enumerate() {
            if i == last {
                tls.data(*dir, &bytes[..from], keys, &mut sink);
                tls.gap(*dir, (to - from) as u64, keys, &mut sink);
                for piece in bytes[to..].chunks(500) {
                    tls.data(*dir, piece, keys, &mut sink);
                }
            } else {
                tls.data(*dir, bytes, keys, &mut sink);
            }
        }
        tls.finish(keys, &mut sink);
    }
    got
}

fn check_gaps(conv: &Conv, what: &str) {
    let ks = keys_of(conv);
    let starts: Vec<usize> = conv
        .tail
        .iter()
        .scan(0, |at, (r, _)| {
            let s = *at;
            *at += r.len();
            Some(s)
        })
        .collect();
    let total: usize = conv.tail.iter().map(|t| t.0.len()).sum();
    let n = conv.tail.len();
    // (first lost byte, end of the lost bytes) as (record, offset in it)
    let cases = [
        (3, 2, 3, 10),
        (3, 0, 4, 0),
        (3, 7, 6, 2),
        (2, 1, 2, 50),
        (1, 0, 9, 5),
        (5, 0, 5, 3),
    ];
    for (ra, oa, rb, ob) in cases {
        let from = starts[ra] + oa;
        let to = starts[rb] + ob;
        let got = run_gap(conv, &ks, from, to);
        // Records wholly before the gap, and from the first one that starts after it.
        let first_after = (0..n).find(|&i| starts[i] >= to).unwrap_or(n);
        let last_before = (0..n)
            .filter(|&i| starts[i] + conv.tail[i].0.len() <= from)
            .count();
        let mut want = conv.want[1].clone();
        let tail_plain: usize = conv.tail.iter().map(|t| t.1.len()).sum();
        want.truncate(want.len() - tail_plain);
        let mut after: Vec<u8> = Vec::new();
        for (i, (_, p)) in conv.tail.iter().enumerate() {
            if i < last_before {
                want.extend(p);
            } else if i >= first_after {
                want.extend(p);
                after.extend(p);
            }
        }
        let case = format!("{what} gap {ra}.{oa}..{rb}.{ob} of {total}");
        assert!(
            got.data[1] == want,
            "{case}: s2c data differs ({} vs {} bytes)",
            got.data[1].len(),
            want.len()
        );
        assert!(
            got.after_lost[1] == after,
            "{case}: the data after the Lost differs"
        );
        assert!(
            got.lost[1] >= (to - from) as u64,
            "{case}: lost {}",
            got.lost[1]
        );
        assert!(got.data[0] == conv.want[0], "{case}");
        assert!(
            !got.problems
                .iter()
                .any(|p| p.1 == TlsProblem::DecryptFailed),
            "{case}: {:?}",
            got.problems
        );
    }
}

#[test]
fn gaps_lose_the_records_they_touch() {
    check_gaps(
        &tls13_conv(
            0x1301,
            Opts {
                hrr: false,
                early: false,
                big: false,
            },
        ),
        "tls13 aes128",
    );
    check_gaps(
        &tls13_conv(
            0x1303,
            Opts {
                hrr: false,
                early: false,
                big: true,
            },
        ),
        "tls13 chacha big",
    );
    check_gaps(&tls12_conv(0xC02F, false, false), "tls12 gcm");
    check_gaps(&tls12_conv(0xCCA8, false, true), "tls12 chacha big");
}

#[test]
fn late_keys_decrypt_held_records_from_the_first() {
    let conv = tls13_conv(
        0x1302,
        Opts {
            hrr: false,
            early: false,
            big: false,
        },
    );
    let ks = KeyStore::new();
    ks.set_growing(true);
    let (mut got, mut tls) = run_no_finish(&conv, &ks);
    assert!(
        got.data[0].is_empty() && got.problems.is_empty(),
        "{:?}",
        got.problems
    );
    assert!(tls.is_holding());
    // The key log line arrives in two writes.
    let (a, b) = conv.keylog.split_at(50);
    ks.add(a.as_bytes());
    ks.add(b.as_bytes());
    tls.poll(&ks, &mut got.sink());
    tls.finish(&ks, &mut got.sink());
    assert_clean(&conv, &got, "late keys");

    // Keys that never come: given up at the end, with NoKeys.
    let ks = KeyStore::new();
    ks.set_growing(true);
    let (mut got, mut tls) = run_no_finish(&conv, &ks);
    tls.finish(&ks, &mut got.sink());
    assert!(
        got.problems.iter().any(|p| p.1 == TlsProblem::NoKeys),
        "{:?}",
        got.problems
    );
    assert!(got.lost[0] > 0 && got.lost[1] > 0);
    assert!(got.data[0].is_empty() && got.data[1].is_empty());
}

fn run_no_finish(conv: &Conv, keys: &KeyStore) -> (Got, TlsStream) {
    let mut got = Got::default();
    let mut tls = TlsStream::new();
    for (dir, bytes) in &conv.events {
        tls.data(*dir, bytes, keys, &mut got.sink());
    }
    (got, tls)
}

#[test]
fn wrong_secret_is_decrypt_failed_and_unknown_suite_unsupported() {
    let conv = tls12_conv(0xC02F, false, false);
    let ks = KeyStore::new();
    ks.add(conv.keylog.replace("6d6d", "6d6e").as_bytes());
    let (got, _) = run(&conv, &ks, 100, None);
    assert!(
        got.problems
            .contains(&(Some(C2S), TlsProblem::DecryptFailed)),
        "{:?}",
        got.problems
    );
    assert!(got.data[0].is_empty() && got.data[1].is_empty());
    assert!(got.lost[1] > 0);
    let mut conv = tls12_conv(0xC02F, false, false);
    // The server picks TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA.
    let sh = &mut conv.events[1].1;
    let at = 5 + 4 + 2 + 32 + 1 + 32;
    sh[at..at + 2].copy_from_slice(&[0xc0, 0x13]);
    let (got, tls) = run(&conv, &keys_of(&conv), 100, None);
    assert_eq!(
        got.problems.first(),
        Some(&(None, TlsProblem::Unsupported(0xC013)))
    );
    assert_eq!(
        tls.info().cipher_name(),
        Some("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA")
    );
    assert!(
        TlsProblem::Unsupported(0xC013)
            .describe()
            .contains("AES_128_CBC")
    );
}

#[test]
fn hello_checks() {
    let ch = client_hello(&[1; 32], true, false);
    assert!(TlsStream::looks_like_client_hello(&ch));
    assert!(!TlsStream::looks_like_server_hello(&ch));
    let sh = server_hello(&[1; 32], 0x1301, true);
    assert!(TlsStream::looks_like_server_hello(&sh));
    assert!(!TlsStream::looks_like_client_hello(b"GET / HTTP/1.1\r\n"));
    assert!(!TlsStream::looks_like_client_hello(&ch[..5]));
    let mut got = Got::default();
    let mut tls = TlsStream::new();
    let none = KeyStore::new();
    tls.data(C2S, &ch, &none, &mut got.sink());
    tls.data(S2C, b"HTTP/1.1 200 OK\r\n\r\n", &none, &mut got.sink());
    assert_eq!(got.problems, [(Some(S2C), TlsProblem::NotTls)]);
    // Picked up mid-stream: records without a hello, or bytes inside one.
    let mut got = Got::default();
    let mut tls = TlsStream::new();
    tls.data(C2S, &[0x17, 3, 3, 0, 4, 1, 2, 3, 4], &none, &mut got.sink());
    tls.data(S2C, &[0x01; 40], &none, &mut got.sink());
    assert_eq!(got.problems, [(Some(C2S), TlsProblem::HandshakeMissed)]);
    assert_eq!(got.lost, [9, 40]);
}

#[test]
fn mutated_conversations_never_panic() {
    // A small deterministic generator: the point is coverage of odd inputs, not randomness.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let convs = [
        tls13_conv(
            0x1301,
            Opts {
                hrr: true,
                early: true,
                big: false,
            },
        ),
        tls12_conv(0xCCA8, false, false),
    ];
    for round in 0..600 {
        let conv = &convs[round % 2];
        let ks = keys_of(conv);
        ks.set_growing(round % 3 == 0);
        let mut tls = TlsStream::new();
        let mut got = Got::default();
        let mut sink = got.sink();
        for (dir, bytes) in &conv.events {
            let mut b = bytes.clone();
            for _ in 0..(next() % 4) {
                let at = (next() as usize) % b.len();
                b[at] = next() as u8;
            }
            if next() % 5 == 0 {
                b.truncate((next() as usize) % b.len());
            }
            let mut at = 0;
            while at < b.len() {
                let n = 1 + (next() as usize) % 700;
                let end = (at + n).min(b.len());
                if next() % 9 == 0 {
                    tls.gap(*dir, next() % 3000, &ks, &mut sink);
                }
                tls.data(*dir, &b[at..end], &ks, &mut sink);
                at = end;
            }
        }
        tls.finish(&ks, &mut sink);
    }
}

fn record_starts(bytes: &[u8]) -> Vec<usize> {
    let mut v = Vec::new();
    let mut at = 0;
    while at + 5 <= bytes.len() {
        v.push(at);
        at += 5 + (usize::from(bytes[at + 3]) << 8 | usize::from(bytes[at + 4]));
    }
    v
}

#[test]
fn tls13_gap_over_the_server_finished_finds_the_application_key() {
    let conv = tls13_conv(
        0x1301,
        Opts {
            hrr: false,
            early: false,
            big: false,
        },
    );
    let ks = keys_of(&conv);
    // Events: 0 ClientHello, 1 the server's flight (SH, CCS, three handshake records), 2 the
    // client's Finished and data, 3 the server's NewSessionTicket then data, ...
    let flight = &conv.events[1].1;
    let cut = record_starts(flight)[4];
    let next = &conv.events[3].1;
    let nst = record_starts(next)[1];
    let mut got = Got::default();
    let mut tls = TlsStream::new();
    {
        let mut sink = got.sink();
        tls.data(C2S, &conv.events[0].1, &ks, &mut sink);
        tls.data(S2C, &flight[..cut], &ks, &mut sink);
        tls.gap(S2C, (flight.len() - cut + nst) as u64, &ks, &mut sink);
        tls.data(C2S, &conv.events[2].1, &ks, &mut sink);
        tls.data(S2C, &next[nst..], &ks, &mut sink);
        for (dir, bytes) in &conv.events[4..] {
            tls.data(*dir, bytes, &ks, &mut sink);
        }
        tls.finish(&ks, &mut sink);
    }
    // The Finished and the ticket were lost, no application data: all of it arrives.
    assert!(got.data[1] == conv.want[1], "s2c data differs");
    assert!(got.data[0] == conv.want[0], "c2s data differs");
    assert!(got.lost[1] >= (flight.len() - cut + nst) as u64);
    assert!(got.problems.is_empty(), "{:?}", got.problems);
}
