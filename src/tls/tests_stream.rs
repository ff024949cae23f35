//! Whole conversations through [`TlsStream`]: RFC 8448's trace, and TLS 1.3 / 1.2
//! conversations (tests_conv) split at every byte boundary, with gaps, late keys, KeyUpdate,
//! HelloRetryRequest and 0-RTT.

use super::tests::*;
use super::tests_conv::*;
use super::{KeyStore, TlsProblem, TlsStream};
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
fn tls12_cbc_suites_with_and_without_encrypt_then_mac() {
    for id in [0xC013, 0xC014, 0x003C, 0xC028] {
        for etm in [false, true] {
            let conv = tls12_conv_etm(id, false, true, etm);
            let ks = keys_of(&conv);
            for chunk in [1, 7, 1448] {
                let (got, _) = run(&conv, &ks, chunk, None);
                assert_clean(&conv, &got, &format!("{id:04x} etm {etm} chunk {chunk}"));
            }
            check_gaps(&conv, &format!("{id:04x} etm {etm}"));
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
    // The server picks TLS_RSA_WITH_3DES_EDE_CBC_SHA.
    let sh = &mut conv.events[1].1;
    let at = 5 + 4 + 2 + 32 + 1 + 32;
    sh[at..at + 2].copy_from_slice(&[0x00, 0x0a]);
    let (got, tls) = run(&conv, &keys_of(&conv), 100, None);
    let first = got.problems.first();
    assert_eq!(first, Some(&(None, TlsProblem::Unsupported(0x000A))));
    let name = tls.info().cipher_name();
    assert_eq!(name, Some("TLS_RSA_WITH_3DES_EDE_CBC_SHA"));
    assert!(TlsProblem::Unsupported(0x000A).describe().contains("3DES"));
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

/// Not a test of speed (no timing assertions): prints the decryption rate, for
/// `cargo test --release --lib tls::tests_stream::throughput -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check: cargo test --release --lib tls::tests_stream::throughput -- --ignored --nocapture"]
fn throughput() {
    use super::crypto::{RecordKey, Secret, suite};
    for id in [0x1301, 0x1302, 0x1303] {
        let suite = suite(id).unwrap();
        let hex = |b: &str| b.repeat(suite.hash.len());
        let (hs_secret, app) = (
            Secret::new(&vec![0x22; suite.hash.len()]).unwrap(),
            Secret::new(&vec![0x44; suite.hash.len()]).unwrap(),
        );
        let random = [0xA7; 32];
        let ks = KeyStore::new();
        ks.add(
            format!(
                "SERVER_HANDSHAKE_TRAFFIC_SECRET {} {}\nSERVER_TRAFFIC_SECRET_0 {} {}\n",
                "a7".repeat(32),
                hex("22"),
                "a7".repeat(32),
                hex("44")
            )
            .as_bytes(),
        );
        let head = client_hello(&random, true, false);
        let mut server = server_hello(&[0x5e; 32], id, true);
        server.extend(RecordKey::tls13(suite, &hs_secret).unwrap().seal(
            0,
            22,
            &hs(20, &[0xf1; 32]),
            0,
        ));
        let key = RecordKey::tls13(suite, &app).unwrap();
        let plain = vec![0x61u8; 16384];
        for seq in 0..2000 {
            server.extend(key.seal(seq, 23, &plain, 0));
        }
        let mut n = 0usize;
        let mut sink = |o: super::TlsOutput<'_>| {
            if let super::TlsOutput::Data(_, b) = o {
                n += b.len();
            }
        };
        let mut tls = TlsStream::new();
        let started = std::time::Instant::now();
        tls.data(C2S, &head, &ks, &mut sink);
        for seg in server.chunks(1448) {
            tls.data(S2C, seg, &ks, &mut sink);
        }
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(n, 2000 * 16384);
        eprintln!(
            "{id:04x}: {} MiB in 1448-byte segments, {:.0} MB/s",
            n >> 20,
            n as f64 / secs / 1e6
        );
    }
}

#[test]
fn late_keys_with_a_gap_while_held() {
    let conv = tls13_conv(
        0x1303,
        Opts {
            hrr: false,
            early: false,
            big: false,
        },
    );
    let ks = KeyStore::new();
    ks.set_growing(true);
    let last = conv.events.len() - 1;
    let starts = record_starts(&conv.events[last].1);
    let (from, to) = (starts[3] + 2, starts[5] + 1);
    let mut got = Got::default();
    let mut tls = TlsStream::new();
    for (i, (dir, bytes)) in conv.events.iter().enumerate() {
        if i == last {
            tls.data(*dir, &bytes[..from], &ks, &mut got.sink());
            tls.gap(*dir, (to - from) as u64, &ks, &mut got.sink());
            tls.data(*dir, &bytes[to..], &ks, &mut got.sink());
        } else {
            tls.data(*dir, bytes, &ks, &mut got.sink());
        }
    }
    assert!(tls.is_holding() && got.data[1].is_empty());
    ks.add(conv.keylog.as_bytes());
    tls.poll(&ks, &mut got.sink());
    tls.finish(&ks, &mut got.sink());
    // Records 3, 4 and 5 of the tail were touched by the gap.
    let tail_plain: usize = conv.tail.iter().map(|t| t.1.len()).sum();
    let mut want = conv.want[1][..conv.want[1].len() - tail_plain].to_vec();
    for (i, (_, p)) in conv.tail.iter().enumerate() {
        if !(3..=5).contains(&i) {
            want.extend(p);
        }
    }
    assert!(got.data[1] == want, "s2c differs");
    assert!(got.data[0] == conv.want[0], "c2s differs");
    assert!(got.lost[1] >= (to - from) as u64);
    assert!(got.problems.is_empty(), "{:?}", got.problems);
}

#[test]
fn held_records_are_bounded() {
    let conv = tls12_conv(0xC030, false, false);
    let ks = KeyStore::new();
    ks.set_growing(true);
    let (mut got, mut tls) = run_no_finish(&conv, &ks);
    assert!(tls.is_holding());
    // 320 KB more of application records for which no key has come.
    let mut junk = record(23, 3, &[0x42; 16000]);
    junk.extend(junk.clone());
    for _ in 0..10 {
        tls.data(S2C, &junk, &ks, &mut got.sink());
    }
    assert!(
        got.problems.iter().any(|p| p.1 == TlsProblem::NoKeys),
        "{:?}",
        got.problems
    );
    assert!(got.lost[1] >= 300_000);
    // The keys come too late for what was given up.
    ks.add(conv.keylog.as_bytes());
    tls.poll(&ks, &mut got.sink());
    tls.finish(&ks, &mut got.sink());
    assert!(got.data[1].is_empty());
}

#[test]
fn tls13_gap_in_the_first_encrypted_records_keeps_the_handshake_key() {
    let conv = tls13_conv(
        0x1302,
        Opts {
            hrr: false,
            early: false,
            big: false,
        },
    );
    let ks = keys_of(&conv);
    // The server's flight: SH, CCS, then handshake records 0 (EE), 1, 2 (with Finished).
    let flight = &conv.events[1].1;
    let starts = record_starts(flight);
    for (from, to) in [
        (starts[2], starts[3] + 7),
        (starts[2] + 3, starts[3]),
        (starts[1] + 2, starts[3] + 1),
    ] {
        let mut got = Got::default();
        let mut tls = TlsStream::new();
        {
            let mut sink = got.sink();
            tls.data(C2S, &conv.events[0].1, &ks, &mut sink);
            tls.data(S2C, &flight[..from], &ks, &mut sink);
            tls.gap(S2C, (to - from) as u64, &ks, &mut sink);
            tls.data(S2C, &flight[to..], &ks, &mut sink);
            for (dir, bytes) in &conv.events[2..] {
                tls.data(*dir, bytes, &ks, &mut sink);
            }
            tls.finish(&ks, &mut sink);
        }
        assert!(
            got.data[1] == conv.want[1],
            "{from}..{to}: s2c data differs: {:?} {:?} {} {}",
            got.problems,
            got.lost,
            got.data[1].len(),
            conv.want[1].len()
        );
        assert!(
            got.data[0] == conv.want[0],
            "{from}..{to}: c2s data differs"
        );
        assert!(got.problems.is_empty(), "{from}..{to}: {:?}", got.problems);
    }
}

#[test]
fn tls13_zero_rtt_decrypted_with_the_early_secret() {
    for id in [0x1301, 0x1302, 0x1303] {
        let mut conv = tls13_conv(
            id,
            Opts {
                hrr: false,
                early: true,
                big: false,
            },
        );
        // tls13_conv seals its 0-RTT records under a secret of 0x99 bytes; now it is logged.
        let n = super::crypto::suite(id).unwrap().hash.len();
        conv.keylog += &format!(
            "CLIENT_EARLY_TRAFFIC_SECRET {} {}\n",
            "a7".repeat(32),
            "99".repeat(n)
        );
        let mut want = b"early data nobody can readmore early".to_vec();
        want.extend(&conv.want[0]);
        conv.want[0] = want;
        let ks = keys_of(&conv);
        for chunk in [1, 10, usize::MAX] {
            let (got, _) = run(&conv, &ks, chunk, None);
            assert_clean(&conv, &got, &format!("{id:04x} chunk {chunk}"));
        }
    }
}
