//! The per-frame path does not allocate: a counting global allocator measures a session of
//! a hundred frames and one of ten thousand; once buffers have grown, more frames cost no
//! allocation at all. The same for pings and pongs, and for a session's close handshake.

use base64::Engine;
use etherparse::PacketBuilder;
use sha1::{Digest, Sha1};
use wsnoop::analyzer::{Analyzer, AnalyzerOptions};
use wsnoop::event::{Timestamp, TsPrecision};
use wsnoop::net::link::LinkType;
use wsnoop::output::JsonWriter;

#[path = "common/counting.rs"]
mod counting;

const CLIENT: [u8; 4] = [10, 0, 0, 1];
const SERVER: [u8; 4] = [10, 0, 0, 2];

/// An Ethernet frame carrying one TCP segment.
fn segment(from_client: bool, seq: u32, ack: u32, flags: &str, payload: &[u8]) -> Vec<u8> {
    let (src, dst, sport, dport) = if from_client {
        (CLIENT, SERVER, 40000, 8080)
    } else {
        (SERVER, CLIENT, 8080, 40000)
    };
    let mut builder = PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4(src, dst, 64)
        .tcp(sport, dport, seq, 65535);
    if flags.contains('S') {
        builder = builder.syn();
    }
    if flags.contains('A') {
        builder = builder.ack(ack);
    }
    if flags.contains('P') {
        builder = builder.psh();
    }
    let mut out = Vec::new();
    builder.write(&mut out, payload).expect("a packet");
    out
}

/// A masked (client) or unmasked (server) text frame, per RFC 6455 5.2.
fn text_frame(masked: bool, text: &[u8]) -> Vec<u8> {
    frame(0x81, masked, text)
}

/// A final frame of the given first byte (FIN and opcode) with a payload under 126 bytes.
fn frame(first: u8, masked: bool, text: &[u8]) -> Vec<u8> {
    let mut out = vec![first, if masked { 0x80 } else { 0 } | text.len() as u8];
    let key = [0x12, 0x34, 0x56, 0x78];
    if masked {
        out.extend_from_slice(&key);
        out.extend(text.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(text);
    }
    out
}

/// What a session carries after its handshake, per round: a text message each way, or a ping
/// from the client and the server's pong.
#[derive(Clone, Copy)]
enum Round {
    Texts,
    PingPong,
}

/// A whole session with `frames` text messages each way, as packets.
fn session(frames: usize) -> Vec<Vec<u8>> {
    session_of(frames, Round::Texts, false)
}

/// A session of `rounds` rounds, then, if `close`, a close handshake (1000 "bye" both ways).
fn session_of(rounds: usize, round: Round, close: bool) -> Vec<Vec<u8>> {
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let accept = base64::engine::general_purpose::STANDARD.encode(sha.finalize());
    let request = format!(
        "GET /chat HTTP/1.1\r\nHost: server\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    let (mut c, mut s) = (1000u32, 5000u32);
    let mut packets = vec![
        segment(true, c, 0, "S", b""),
        segment(false, s, c + 1, "SA", b""),
    ];
    c += 1;
    s += 1;
    packets.push(segment(true, c, s, "A", b""));
    for (from_client, bytes) in [(true, request.into_bytes()), (false, response.into_bytes())] {
        let (seq, ack) = if from_client { (c, s) } else { (s, c) };
        packets.push(segment(from_client, seq, ack, "PA", &bytes));
        if from_client {
            c += bytes.len() as u32;
        } else {
            s += bytes.len() as u32;
        }
    }
    let mut exchange = |up: Vec<u8>, down: Vec<u8>| {
        packets.push(segment(true, c, s, "PA", &up));
        c += up.len() as u32;
        packets.push(segment(false, s, c, "PA", &down));
        s += down.len() as u32;
    };
    for i in 0..rounds {
        match round {
            Round::Texts => {
                let text = format!("{{\"type\":\"tick\",\"seq\":{i},\"note\":\"héllo\"}}");
                exchange(
                    text_frame(true, text.as_bytes()),
                    text_frame(false, text.as_bytes()),
                );
            }
            Round::PingPong => {
                let payload = format!("keepalive {i}");
                exchange(
                    frame(0x89, true, payload.as_bytes()),
                    frame(0x8a, false, payload.as_bytes()),
                );
            }
        }
    }
    if close {
        let bye = [0x03, 0xe8, b'b', b'y', b'e'];
        exchange(frame(0x88, true, &bye), frame(0x88, false, &bye));
    }
    packets
}

/// Allocations made while analysing `packets` and writing every event as JSON.
fn allocations_for(packets: &[Vec<u8>]) -> usize {
    let mut analyzer = Analyzer::new(AnalyzerOptions::default());
    let mut sink = JsonWriter::new(std::io::sink(), TsPrecision::Micro);
    let before = counting::allocations();
    for (i, packet) in packets.iter().enumerate() {
        let ts = Timestamp {
            secs: 1_700_000_000,
            nanos: (i as u32) * 1000,
        };
        analyzer.packet(LinkType::Ethernet, ts, packet, &mut sink);
    }
    let after = counting::allocations();
    assert_eq!(analyzer.stats().ws.frames as usize, packets.len() - 5);
    after - before
}

/// Pings, their pongs and a close handshake. Round trips are kept for the median up to 1024
/// samples, so both sessions have more pongs than that: beyond it, a ping must cost nothing.
#[test]
fn pings_and_closes_do_not_allocate() {
    let _turn = counting::turn();
    let few = allocations_for(&session_of(1100, Round::PingPong, true));
    let many = allocations_for(&session_of(10_000, Round::PingPong, true));
    eprintln!("allocations: {few} for 2,202 ping, pong and close frames, {many} for 20,002");
    assert!(
        many <= few,
        "{few} allocations for 1,100 pings, {many} for 10,000: pings allocate"
    );
    assert!(few < 300, "{few} allocations for one session of pings");
}

#[test]
fn frames_do_not_allocate() {
    let _turn = counting::turn();
    let small = session(100);
    let large = session(10_000);
    let few = allocations_for(&small);
    let many = allocations_for(&large);
    eprintln!("allocations: {few} for 200 frames, {many} for 20,000");
    // The handshake and the connection allocate; 19,800 more frames and messages must not.
    assert!(
        many <= few,
        "{few} allocations for 200 frames, {many} for 20,000: the frame path allocates"
    );
    assert!(few < 200, "{few} allocations for one short session");
}
