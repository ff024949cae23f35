use super::deflate::DEFLATE_TAIL;
use super::utf8::{Utf8Check, incomplete_utf8_suffix, text_payload};
use super::*;
use crate::context::{WsOptions, WsStats};
use crate::event::{FlowMeta, Payload};

/// The connection every session of these tests belongs to.
fn test_flow() -> FlowMeta {
    FlowMeta {
        id: 0,
        client: "127.0.0.1:40000".parse().unwrap(),
        server: "127.0.0.1:9000".parse().unwrap(),
        midstream: false,
    }
}

#[test]
fn utf8_suffixes() {
    assert_eq!(incomplete_utf8_suffix(b"abc"), b"");
    assert_eq!(incomplete_utf8_suffix("é".as_bytes()), b"");
    assert_eq!(incomplete_utf8_suffix(&"é".as_bytes()[..1]), &[0xC3]);
    let smile = "😀".as_bytes();
    assert_eq!(incomplete_utf8_suffix(&smile[..3]), &smile[..3]);
    assert_eq!(incomplete_utf8_suffix(&smile[1..4]), b"");
}

#[test]
fn text_split_inside_a_character() {
    let word = "wörld".as_bytes(); // ö is 2 bytes at 1..3
    let mut display = Vec::new();
    let Payload::Text(first) = text_payload(&word[..2], &[], &mut display) else {
        panic!()
    };
    assert_eq!(first, "w");
    let mut display = Vec::new();
    let Payload::Text(second) = text_payload(&word[2..], &word[1..2], &mut display) else {
        panic!()
    };
    assert_eq!(second, "örld");
    let mut display = Vec::new();
    assert!(matches!(
        text_payload(b"\xff\xfe", &[], &mut display),
        Payload::Data(_)
    ));
}

#[test]
fn utf8_check_across_every_split() {
    let text = "añ€😀z".as_bytes();
    for a in 0..=text.len() {
        for b in a..=text.len() {
            let mut check = Utf8Check::default();
            check.feed(&text[..a]);
            check.feed(&text[a..b]);
            check.feed(&text[b..]);
            assert!(check.is_complete_and_valid(), "{a} {b}");
        }
    }
    let mut cut = Utf8Check::default();
    cut.feed(&text[..4]); // "añ" and the first byte of "€"
    assert!(!cut.is_complete_and_valid() && cut.is_valid_so_far());
    let mut bad = Utf8Check::default();
    bad.feed(b"a\xed\xa0\x80"); // an encoded surrogate
    assert!(!bad.is_valid_so_far());
}

#[test]
fn negotiated_parameters() {
    let n = Negotiated::from_server_extensions(&[
        "permessage-deflate; server_no_context_takeover; client_max_window_bits=10".into(),
    ]);
    let p = n.deflate.unwrap();
    assert!(p.server_no_context_takeover && !p.client_no_context_takeover);
    assert_eq!(p.client_max_window_bits, Some(10));
    assert_eq!(
        Negotiated::from_server_extensions(&["x-foo".into()]).deflate,
        None
    );
}

/// A sender without context takeover compresses each message afresh: bytes lost inside
/// one (a gap, a cut) leave the inflater mid-stream, and the next message must inflate
/// from a clean state, not fail as if the peer had sent garbage.
#[test]
fn no_context_takeover_inflates_again_after_lost_bytes() {
    use flate2::{Compress, Compression, FlushCompress};
    let text = |seed: u32| -> String {
        let mut x = seed;
        (0..3000)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                char::from(b'a' + (x >> 16) as u8 % 26)
            })
            .collect()
    };
    let frame = |message: &str| -> Vec<u8> {
        let mut z = Compress::new(Compression::default(), false);
        let mut out = Vec::with_capacity(message.len() + 64);
        z.compress_vec(message.as_bytes(), &mut out, FlushCompress::Sync)
            .unwrap();
        assert_eq!(out[out.len() - 4..], DEFLATE_TAIL);
        out.truncate(out.len() - 4);
        let mut f = vec![0xc1, 126];
        f.extend_from_slice(&(out.len() as u16).to_be_bytes());
        f.extend_from_slice(&out);
        f
    };
    let messages = [text(1), text(2), text(3)];
    let frames: Vec<Vec<u8>> = messages.iter().map(|m| frame(m)).collect();
    let flow = test_flow();
    let options = WsOptions {
        max_payload: 1 << 20,
        ..WsOptions::default()
    };
    let mut stats = WsStats::default();
    let mut got: Vec<String> = Vec::new();
    let mut anomalies: Vec<String> = Vec::new();
    let mut sink = |e: &Event<'_>| match e {
        Event::Message(m) => match m.payload {
            Payload::Text(t) if !m.incomplete => got.push(t.to_string()),
            _ => {}
        },
        Event::Anomaly(a) => anomalies.push(a.kind.name().to_string()),
        _ => {}
    };
    let mut ctx = Context::new(Timestamp::default(), &flow, &mut sink, &options, &mut stats);
    let negotiated = Negotiated::from_server_extensions(&[
        "permessage-deflate; server_no_context_takeover".into(),
    ]);
    let mut ws = WsSession::new(negotiated);
    let mut scratch = Scratch::default();
    let dir = Direction::ServerToClient;
    let half = frames[0].len() / 2;
    ws.feed(dir, &frames[0][..half], &mut scratch, &mut ctx);
    ctx.cause = Cause::Snaplen;
    ws.gap(dir, (frames[0].len() - half) as u64, &mut ctx);
    ctx.cause = Cause::Traffic;
    let rest: Vec<u8> = frames[1..].concat();
    ws.feed(dir, &rest, &mut scratch, &mut ctx);
    assert!(anomalies.is_empty(), "{anomalies:?}");
    assert_eq!(got, &messages[1..]);
}

/// With context takeover, bytes lost inside a compressed message leave later messages
/// referring to output never seen: they are inflated without it (partial where they refer
/// back), and once a whole window of new output is known zlib takes over, exactly. The
/// deflate_context_lost report says when.
#[test]
fn takeover_recovers_after_lost_bytes_and_resumes_exact() {
    use flate2::{Compress, Compression, FlushCompress};
    let mut x = 7u32;
    let mut word = || {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        (x >> 8) as u8
    };
    // A few messages repeating one phrase, then fresh random bytes (filling the window), then
    // the phrase again.
    let phrase = "the quick brown fox jumps over the lazy dog; ".repeat(20);
    let mut messages: Vec<Vec<u8>> = vec![phrase.clone().into_bytes(); 3];
    for _ in 0..4 {
        messages.push((0..300).map(|_| word()).collect());
    }
    messages.extend(vec![phrase.into_bytes(); 3]);
    // A 9-bit window: 512 bytes of new output make it known.
    let mut z = Compress::new_with_window_bits(Compression::default(), false, 9);
    let frames: Vec<Vec<u8>> = messages
        .iter()
        .map(|m| {
            let mut out = Vec::with_capacity(m.len() * 2 + 64);
            z.compress_vec(m, &mut out, FlushCompress::Sync).unwrap();
            out.truncate(out.len() - 4);
            let mut f = vec![0xc2];
            if out.len() < 126 {
                f.push(out.len() as u8);
            } else {
                f.push(126);
                f.extend_from_slice(&(out.len() as u16).to_be_bytes());
            }
            f.extend_from_slice(&out);
            f
        })
        .collect();
    let flow = test_flow();
    let options = WsOptions {
        max_payload: 1 << 20,
        ..WsOptions::default()
    };
    let mut stats = WsStats::default();
    let mut got: Vec<(Vec<u8>, bool, u64)> = Vec::new();
    let mut anomalies: Vec<(String, String)> = Vec::new();
    let mut sink = |e: &Event<'_>| match e {
        Event::Message(m) => {
            if let Payload::Data(d) = m.payload {
                got.push((d.to_vec(), m.partial, m.unknown_bytes));
            }
        }
        Event::Anomaly(a) => anomalies.push((a.kind.name().to_string(), a.detail.to_string())),
        _ => {}
    };
    let mut ctx = Context::new(Timestamp::default(), &flow, &mut sink, &options, &mut stats);
    let negotiated =
        Negotiated::from_server_extensions(
            &["permessage-deflate; server_max_window_bits=9".into()],
        );
    let mut ws = WsSession::new(negotiated);
    let mut scratch = Scratch::default();
    let dir = Direction::ServerToClient;
    ws.feed(dir, &frames[0], &mut scratch, &mut ctx);
    let half = frames[1].len() / 2;
    ws.feed(dir, &frames[1][..half], &mut scratch, &mut ctx);
    ctx.cause = Cause::Gap;
    ws.gap(dir, (frames[1].len() - half) as u64, &mut ctx);
    ctx.cause = Cause::Traffic;
    ws.feed(dir, &frames[2..].concat(), &mut scratch, &mut ctx);
    ws.end_report(EndReason::Fin, &mut ctx);
    // The first, then the one cut (incomplete), then the 8 after the gap.
    assert_eq!(got.len(), 10, "{anomalies:?}");
    assert_eq!(got[0].0, messages[0]);
    let after = &got[2..];
    // The phrase right after the gap refers back to what was lost.
    assert!(after[0].1 && after[0].2 > 0, "{:?}", after[0]);
    for (i, (data, partial, unknown)) in after.iter().enumerate() {
        let sent = &messages[i + 2];
        assert_eq!(data.len(), sent.len());
        if *partial {
            let differ = data.iter().zip(sent).filter(|(a, b)| a != b).count() as u64;
            assert!(*unknown >= differ && *unknown > 0);
            for (a, b) in data.iter().zip(sent) {
                assert!(a == b || *a == 0, "a known byte differs from the sent one");
            }
        } else {
            assert_eq!(data, sent, "message {} called exact", i + 2);
        }
    }
    // The last three repeat the phrase after the random ones filled the window: exact.
    assert!(after[5..].iter().all(|m| !m.1));
    let lost: Vec<&(String, String)> = anomalies
        .iter()
        .filter(|a| a.0 == "deflate_context_lost")
        .collect();
    assert_eq!(lost.len(), 1, "{anomalies:?}");
    assert!(
        lost[0].1.contains("until exact decoding resumed"),
        "{}",
        lost[0].1
    );
}

/// A connection between frames holds no kept-payload buffer: it went back to the decoder's
/// spares, and the next frame (of any connection) takes it again.
#[test]
fn kept_payload_buffers_go_back_to_the_spares() {
    // An unmasked server text frame (RFC 6455 5.7's "Hello"), then the same cut in two.
    let hello = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    let flow = test_flow();
    let options = WsOptions {
        max_payload: 4096,
        ..WsOptions::default()
    };
    let mut stats = WsStats::default();
    let mut sink = |_: &Event<'_>| {};
    let mut ctx = Context::new(Timestamp::default(), &flow, &mut sink, &options, &mut stats);
    let mut scratch = Scratch::default();
    let (mut one, mut two) = (
        WsSession::new(Negotiated::default()),
        WsSession::new(Negotiated::default()),
    );
    let dir = Direction::ServerToClient;
    one.feed(dir, &hello, &mut scratch, &mut ctx);
    assert_eq!(
        one.memory(),
        0,
        "a finished frame's buffer stays with its connection"
    );
    assert_eq!(scratch.spares.0.len(), 1);
    two.feed(dir, &hello[..4], &mut scratch, &mut ctx);
    assert!(
        scratch.spares.0.is_empty(),
        "the frame in progress took the spare"
    );
    assert!(two.memory() > 0);
    two.feed(dir, &hello[4..], &mut scratch, &mut ctx);
    assert_eq!((two.memory(), scratch.spares.0.len()), (0, 1));
    assert_eq!(ctx.stats.frames, 2);
}

/// The heap the budget is told of follows the kept buffers as they grow and are given back,
/// though it is measured only when a call changes them (debug builds also compare it with a
/// fresh walk at every ask).
#[test]
fn memory_follows_kept_buffers_as_they_grow_and_are_returned() {
    let flow = test_flow();
    let options = WsOptions {
        max_payload: 1 << 20,
        ..WsOptions::default()
    };
    let mut stats = WsStats::default();
    let mut messages = 0;
    let mut sink = |e: &Event<'_>| {
        if let Event::Message(_) = e {
            messages += 1;
        }
    };
    let mut ctx = Context::new(Timestamp::default(), &flow, &mut sink, &options, &mut stats);
    let mut ws = WsSession::new(Negotiated { deflate: None });
    let mut scratch = Scratch::default();
    let dir = Direction::ServerToClient;
    let at_start = ws.memory();
    // A text message's first fragment of 5,000 bytes (RFC 6455 5.2: FIN clear, opcode 1,
    // 16-bit length), then its last of 10 bytes (FIN set, opcode 0).
    let mut first = vec![0x01, 126];
    first.extend_from_slice(&5000u16.to_be_bytes());
    first.extend(std::iter::repeat_n(b'a', 5000));
    let mut last = vec![0x80, 10];
    last.extend_from_slice(b"bbbbbbbbbb");
    ws.feed(dir, &first[..2504], &mut scratch, &mut ctx);
    let inside_the_frame = ws.memory();
    assert!(inside_the_frame >= at_start + 2500, "{inside_the_frame}");
    ws.feed(dir, &first[2504..], &mut scratch, &mut ctx);
    let inside_the_message = ws.memory();
    assert!(
        inside_the_message >= at_start + 5000,
        "{inside_the_message}"
    );
    ws.feed(dir, &last, &mut scratch, &mut ctx);
    let after = ws.memory();
    assert!(after < at_start + KEEP_CAPACITY * 4, "{after}");
    assert!(after < inside_the_message);
    assert_eq!(messages, 1);
}
