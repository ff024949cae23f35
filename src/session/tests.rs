use super::*;
use crate::http::exchange::{ChunkedBody, MAX_PENDING_REQUESTS};
use crate::http::handshake::MAX_HEAD_LEN;

fn skip_all(body: &[u8], piece: usize) -> (Result<bool, GiveUp>, usize) {
    let mut state = ChunkedBody::start();
    let mut consumed = 0;
    for chunk in body.chunks(piece) {
        let mut input = chunk;
        match state.skip(&mut input) {
            Ok(true) => return (Ok(true), consumed + chunk.len() - input.len()),
            Ok(false) => consumed += chunk.len(),
            Err(e) => return (Err(e), consumed),
        }
    }
    (Ok(false), consumed)
}

use crate::context::{WsOptions, WsStats};
use crate::event::Payload;

enum Step<'a> {
    Data(Direction, &'a [u8]),
    Gap(Direction, u64),
}
use Direction::{ClientToServer as C2S, ServerToClient as S2C};
use Step::{Data, Gap};

/// Feeds a session; returns its events in words, and the stats.
fn run(ws_port: bool, steps: &[Step<'_>]) -> (Vec<String>, WsStats) {
    let flow = FlowMeta {
        id: 0,
        client: "127.0.0.1:40000".parse().unwrap(),
        server: "127.0.0.1:9000".parse().unwrap(),
        midstream: false,
    };
    let options = WsOptions::default();
    let mut stats = WsStats::default();
    let mut events = Vec::new();
    let mut sink = |e: &Event<'_>| match e {
        Event::Anomaly(a) => events.push(format!("{} {}", a.kind.name(), a.detail)),
        Event::Handshake(h) => events.push(format!(
            "handshake {} {} accept={}",
            h.request.uri(),
            h.response.status,
            h.accept.name()
        )),
        Event::Frame(f) => events.push(match f.payload {
            Payload::Text(t) => format!("frame {} {t}", f.dir.name()),
            Payload::Data(d) => format!("frame {} {d:?}", f.dir.name()),
        }),
        _ => {}
    };
    let mut scratch = Scratch::default();
    let mut session = Session::new();
    if ws_port {
        session.expect_websocket();
    }
    for step in steps {
        let mut ctx = Context::new(Timestamp::default(), &flow, &mut sink, &options, &mut stats);
        match step {
            Data(dir, bytes) => session.data(*dir, bytes, &mut scratch, &mut ctx),
            Gap(dir, lost) => session.gap(*dir, *lost, &mut scratch, &mut ctx),
        }
    }
    (events, stats)
}

/// A masked client text frame (mask 0) and an unmasked server one.
fn client_text(t: &str) -> Vec<u8> {
    [&[0x81, 0x80 | t.len() as u8, 0, 0, 0, 0][..], t.as_bytes()].concat()
}
fn server_text(t: &str) -> Vec<u8> {
    [&[0x81, t.len() as u8][..], t.as_bytes()].concat()
}
fn frames(make: fn(&str) -> Vec<u8>, texts: &[&str]) -> Vec<u8> {
    texts.iter().flat_map(|t| make(t)).collect()
}

const UPGRADE: &[u8] =
    b"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
const SWITCH: &[u8] =
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

fn count(events: &[String], prefix: &str) -> usize {
    events.iter().filter(|e| e.starts_with(prefix)).count()
}

#[test]
fn an_odd_user_agent_and_uri_are_decoded_and_named() {
    let request = [
        &b"GET /caf\xff HTTP/1.1\r\nUser-Agent: x\x1b[2Jy\r\n"[..],
        &UPGRADE[b"GET /chat HTTP/1.1\r\n".len()..],
    ]
    .concat();
    let (events, stats) = run(
        false,
        &[
            Data(C2S, &request),
            Data(S2C, &[SWITCH, &server_text("hi")].concat()),
            Data(C2S, &client_text("yo")),
        ],
    );
    assert_eq!(count(&events, "malformed_http"), 1, "{events:?}");
    let odd = events
        .iter()
        .find(|e| e.starts_with("malformed_http"))
        .unwrap();
    assert!(
        odd.contains("control byte 0x1b in the value of \"User-Agent\""),
        "{odd}"
    );
    assert!(
        odd.contains("invalid UTF-8 (byte 0xff at offset 4) in the URI"),
        "{odd}"
    );
    assert!(
        events.contains(&"handshake /caf\u{fffd} 101 accept=ok".to_string()),
        "{events:?}"
    );
    assert!(events.contains(&"frame s2c hi".to_string()), "{events:?}");
    assert!(events.contains(&"frame c2s yo".to_string()), "{events:?}");
    assert_eq!((stats.handshakes, stats.upgrades), (1, 1));
    assert_eq!(stats.http_given_up.total(), 0);
}

#[test]
fn a_101_with_a_bad_accept_header_name_is_followed() {
    let switch =
        String::from_utf8_lossy(SWITCH).replace("Sec-WebSocket-Accept", "Sec-WebSocket Accept");
    let (events, _) = run(
        false,
        &[
            Data(C2S, UPGRADE),
            Data(S2C, &[switch.as_bytes(), &server_text("hi")].concat()),
        ],
    );
    assert!(
        events.contains(&"handshake /chat 101 accept=missing".to_string()),
        "{events:?}"
    );
    assert_eq!(count(&events, "malformed_http"), 1, "{events:?}");
    assert_eq!(count(&events, "accept_mismatch"), 1, "{events:?}");
    assert!(events.contains(&"frame s2c hi".to_string()), "{events:?}");
}

#[test]
fn odd_plain_http_is_quiet() {
    // No upgrade asked for: an odd head is read, not reported.
    let (events, stats) = run(
        false,
        &[
            Data(C2S, b"GET /x HTTP/1.1\r\nUser-Agent: a\x01b\r\n\r\n"),
            Data(
                S2C,
                b"HTTP/1.1 200 OK\r\nX-Odd : 1\r\nContent-Length: 2\r\n\r\nok",
            ),
        ],
    );
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(stats.http_given_up.total(), 0);
    // Another protocol on a port: counted, not reported.
    let (events, stats) = run(false, &[Data(C2S, b"SSH-2.0-OpenSSH_9.2\r\n")]);
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(stats.http_given_up.get(GiveUp::NotHttp), 1);
    assert_eq!(stats.http_given_up.reported, 0);
    // A plain download without length ends the HTTP: counted only.
    let (events, stats) = run(
        false,
        &[
            Data(C2S, b"GET / HTTP/1.0\r\n\r\n"),
            Data(S2C, b"HTTP/1.0 200 OK\r\n\r\nbody"),
            Gap(S2C, 100),
        ],
    );
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(stats.http_given_up.get(GiveUp::BodyUntilClose), 1);
    assert_eq!(stats.http_given_up.total(), 1);
}

#[test]
fn broken_http_is_reported_even_without_an_upgrade() {
    let (events, stats) = run(
        false,
        &[
            Data(
                C2S,
                b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            ),
            Data(C2S, b"zz\r\n"),
        ],
    );
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        events[0].starts_with("http_abandoned bad_chunked_body: "),
        "{events:?}"
    );
    assert_eq!(stats.http_given_up.get(GiveUp::BadChunkedBody), 1);
    assert_eq!(stats.http_given_up.reported, 1);
}

#[test]
fn a_gap_that_cuts_the_101_is_reported_and_frames_are_still_found() {
    let echoes = frames(server_text, &["one", "two", "three", "four"]);
    let (events, stats) = run(
        false,
        &[
            Data(C2S, UPGRADE),
            Data(C2S, &client_text("early")),
            Gap(S2C, SWITCH.len() as u64),
            Data(S2C, &echoes),
            Data(C2S, &frames(client_text, &["a", "b", "c"])),
        ],
    );
    assert!(events[0].starts_with("http_abandoned gap: "), "{events:?}");
    assert!(
        events[0].contains("129 bytes lost") && events[0].contains("mid-stream"),
        "{events:?}"
    );
    for text in ["one", "two", "three", "four"] {
        assert!(
            events.contains(&format!("frame s2c {text}")),
            "{text}: {events:?}"
        );
    }
    // The client's frames, those held while the 101 was awaited first.
    for text in ["early", "a", "b", "c"] {
        assert!(
            events.contains(&format!("frame c2s {text}")),
            "{text}: {events:?}"
        );
    }
    assert_eq!(stats.http_given_up.get(GiveUp::Gap), 1);
    assert_eq!(stats.handshakes, 0);
}

#[test]
fn a_huge_upgrade_head_is_reported_and_its_frames_found() {
    let mut request = UPGRADE[..UPGRADE.len() - 2].to_vec();
    request.extend_from_slice(b"X-Pad: ");
    request.extend(std::iter::repeat_n(b'a', MAX_HEAD_LEN));
    request.extend_from_slice(b"\r\n\r\n");
    let (events, stats) = run(
        false,
        &[
            Data(C2S, &request),
            Data(
                S2C,
                &[SWITCH, &frames(server_text, &["x", "y", "z"])].concat(),
            ),
        ],
    );
    assert!(
        events[0].starts_with("http_abandoned head_too_large: "),
        "{events:?}"
    );
    assert_eq!(count(&events, "frame s2c"), 3, "{events:?}");
    assert_eq!(stats.http_given_up.get(GiveUp::HeadTooLarge), 1);
    // The same without the upgrade header: a plain oversized request, counted only.
    let plain: Vec<u8> = [
        &b"GET / HTTP/1.1\r\nX-Pad: "[..],
        &vec![b'a'; MAX_HEAD_LEN],
        b"\r\nHost: a\r\n\r\n",
    ]
    .concat();
    let (events, stats) = run(false, &[Data(C2S, &plain)]);
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(stats.http_given_up.get(GiveUp::HeadTooLarge), 1);
    // ... unless the user said the port is WebSocket.
    let (events, _) = run(true, &[Data(C2S, &plain)]);
    assert_eq!(
        count(&events, "http_abandoned head_too_large"),
        1,
        "{events:?}"
    );
}

#[test]
fn padding_before_the_upgrade_header_does_not_hide_it() {
    let mut request = b"GET /chat HTTP/1.1\r\nX-Pad: ".to_vec();
    request.extend(std::iter::repeat_n(b'a', MAX_HEAD_LEN + 5000));
    request.extend_from_slice(b"\r\n");
    request.extend_from_slice(&UPGRADE[b"GET /chat HTTP/1.1\r\n".len()..]);
    let mut steps: Vec<Step<'_>> = request.chunks(1448).map(|c| Data(C2S, c)).collect();
    steps.push(Data(S2C, SWITCH));
    let echoes = frames(server_text, &["p", "q"]);
    steps.push(Data(S2C, &echoes));
    let (events, stats) = run(false, &steps);
    assert!(
        events[0].starts_with("http_abandoned head_too_large: "),
        "{events:?}"
    );
    assert_eq!(count(&events, "frame s2c"), 2, "{events:?}");
    assert_eq!(stats.http_given_up.get(GiveUp::HeadTooLarge), 1);
    // Still inside the padding: nothing decided yet.
    let (events, stats) = run(false, &steps[..10]);
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(stats.http_given_up.total(), 0);
}

#[test]
fn client_bytes_lost_while_the_101_is_awaited_are_a_frame_gap() {
    let (events, stats) = run(
        false,
        &[
            Data(C2S, UPGRADE),
            Data(C2S, &client_text("before")),
            Gap(C2S, 12),
            Data(C2S, &frames(client_text, &["after", "and"])),
            Data(S2C, SWITCH),
        ],
    );
    assert_eq!(events[0], "handshake /chat 101 accept=ok");
    assert_eq!(events[1], "frame c2s before");
    assert!(events[2].starts_with("tcp_gap 12 bytes"), "{events:?}");
    assert_eq!(&events[3..], ["frame c2s after", "frame c2s and"]);
    assert_eq!(stats.http_given_up.total(), 0);
}

#[test]
fn a_refused_decoy_does_not_hide_the_upgrade_after_it() {
    let decoy = String::from_utf8_lossy(UPGRADE).replace("/chat", "/decoy");
    let (events, stats) = run(
        false,
        &[
            Data(C2S, decoy.as_bytes()),
            Data(
                S2C,
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot here\n",
            ),
            Data(C2S, UPGRADE),
            Data(S2C, &[SWITCH, &server_text("real")].concat()),
            Data(C2S, &client_text("hidden?")),
        ],
    );
    assert_eq!(
        events,
        [
            "handshake /decoy 404 accept=missing",
            "handshake /chat 101 accept=ok",
            "frame s2c real",
            "frame c2s hidden?",
        ],
    );
    assert_eq!((stats.handshakes, stats.upgrades), (2, 1));
    assert_eq!(stats.http_given_up.total(), 0);
}

/// RFC 9112 6.3: the answer to a HEAD has no body, whatever its Content-Length says. Read as a
/// GET's, the 101 behind it would be taken for the 200's body.
#[test]
fn the_answer_to_a_head_has_no_body_and_the_upgrade_behind_it_is_seen() {
    let (events, stats) = run(
        false,
        &[
            Data(C2S, b"HEAD /chat HTTP/1.1\r\nHost: example.com\r\n\r\n"),
            Data(C2S, UPGRADE),
            Data(
                S2C,
                &[
                    &b"HTTP/1.1 200 OK\r\nContent-Length: 19\r\n\r\n"[..],
                    SWITCH,
                    &server_text("after"),
                ]
                .concat(),
            ),
        ],
    );
    assert_eq!(
        events,
        ["handshake /chat 101 accept=ok", "frame s2c after"],
        "{stats:?}"
    );
    assert_eq!(stats.http_given_up.total(), 0);
}

#[test]
fn a_101_that_does_not_say_websocket_is_reported_and_followed() {
    let switch = String::from_utf8_lossy(SWITCH).replace("Upgrade: websocket\r\n", "");
    let echoes = frames(server_text, &["1", "2"]);
    let (events, stats) = run(
        false,
        &[
            Data(C2S, UPGRADE),
            Data(S2C, switch.as_bytes()),
            Data(S2C, &echoes),
        ],
    );
    assert_eq!(events[0], "handshake /chat 101 accept=ok");
    assert!(
        events[1].starts_with("http_abandoned other_protocol: "),
        "{events:?}"
    );
    assert_eq!(count(&events, "frame s2c"), 2, "{events:?}");
    assert_eq!(stats.http_given_up.get(GiveUp::OtherProtocol), 1);
    // An h2c upgrade answered with 101 is another protocol, and ordinary: counted only.
    let (events, stats) = run(
        false,
        &[
            Data(
                C2S,
                b"GET / HTTP/1.1\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\r\n",
            ),
            Data(
                S2C,
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
            ),
            Data(C2S, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        ],
    );
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(stats.http_given_up.get(GiveUp::OtherProtocol), 1);
    assert_eq!(stats.http_given_up.reported, 0);
}

/// The one reason a run gave up for, and whether it was reported.
fn given_up(stats: &WsStats) -> (Vec<&'static str>, u64) {
    let reasons = GiveUp::ALL
        .iter()
        .filter(|r| stats.http_given_up.get(**r) > 0)
        .map(|r| r.name())
        .collect();
    (reasons, stats.http_given_up.reported)
}

#[test]
fn every_other_reason_is_counted_and_reported_as_the_rules_say() {
    let get = b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n";
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    let pipelined: Vec<u8> = get.repeat(MAX_PENDING_REQUESTS + 1);
    let early = client_text("x").repeat(MAX_HEAD_LEN / 7 + 1);
    let cases: [(&str, bool, Vec<Step<'_>>, &str, u64); 8] = [
        // Broken HTTP after a head: reported though no upgrade was asked for.
        (
            "not HTTP after a response",
            false,
            vec![Data(C2S, get), Data(S2C, ok), Data(S2C, b"\x00\x01garbage")],
            "not_http",
            1,
        ),
        (
            "a bad start line after a request",
            false,
            vec![Data(C2S, get), Data(C2S, b"GET /b HTTP/9\r\n\r\n")],
            "malformed_head",
            1,
        ),
        // wsnoop's limits on plain HTTP: counted only.
        (
            "too many pipelined requests",
            false,
            vec![Data(C2S, &pipelined)],
            "too_many_pipelined",
            0,
        ),
        (
            "a response to nothing captured",
            false,
            vec![Data(S2C, ok)],
            "response_without_request",
            0,
        ),
        (
            "a CONNECT tunnel",
            false,
            vec![
                Data(C2S, b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"),
                Data(C2S, b"\x16\x03\x01"),
            ],
            "other_protocol",
            0,
        ),
        // ... and reported with WebSocket intent.
        (
            "too many pipelined on a --ws-port",
            true,
            vec![Data(C2S, &pipelined)],
            "too_many_pipelined",
            1,
        ),
        (
            "over 64 KiB before the 101",
            false,
            vec![Data(C2S, UPGRADE), Data(C2S, &early)],
            "early_client_bytes",
            1,
        ),
        (
            "a lost first byte on a --ws-port",
            true,
            vec![Gap(C2S, 1)],
            "gap",
            1,
        ),
    ];
    for (what, ws_port, steps, reason, reported) in cases {
        let (events, stats) = run(ws_port, &steps);
        assert_eq!(
            given_up(&stats),
            (vec![reason], reported),
            "{what}: {events:?}"
        );
        let abandoned = count(&events, &format!("http_abandoned {reason}: "));
        assert_eq!(abandoned as u64, reported, "{what}: {events:?}");
    }
}

#[test]
fn chunked_bodies_end_exactly() {
    let body = b"4\r\nWiki\r\n6;ext=1\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nX-Trailer: 1\r\n\r\nGET /next";
    let end = body.len() - b"GET /next".len();
    for piece in [1, 2, 3, 7, body.len()] {
        assert_eq!(skip_all(body, piece), (Ok(true), end), "pieces of {piece}");
    }
    assert_eq!(skip_all(b"zz\r\n", 4).0, Err(GiveUp::BadChunkedBody));
    assert_eq!(skip_all(b"4\r\nabcdXY", 64).0, Err(GiveUp::BadChunkedBody));
    assert_eq!(
        skip_all(b"ffffffffffffffffff\r\n", 64).0,
        Err(GiveUp::BadChunkedBody)
    );
}
