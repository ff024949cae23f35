//! What each fuzz target does with its input, and what it checks besides "no panic".
//!
//! One file, included with `#[path]` by the targets in fuzz_targets/ and by tests/hostile.rs,
//! which replays every input kept in fuzz/regressions/TARGET/ through the same function: a
//! crash the fuzzer found stays a test on stable Rust, with no libFuzzer.
//!
//! Targets:
//! - `frame_decoder`: bytes fed in random chunks through `ws::frame::FrameDecoder`; the events must
//!   be those of one whole feed, every frame's payload the unmasked bytes where its header
//!   says, and `ws::resync::scan_chain` may only confirm chains of plausible frames.
//! - `handshake`: `handshake::parse_request` / `parse_response` on two parts of the input; a
//!   complete head must parse the same from its own bytes, and its prefixes as incomplete (the
//!   session parses a head again as each segment adds to it).
//! - `pipeline`: the input as a small header (link type, options, output) and a sequence of
//!   length-prefixed packets with time steps, through `analyzer::Analyzer` into a JSON, text or
//!   diagnose sink, then `finish`; JSON output must be one JSON object per line.
//! - `pcap_file`: the input as a capture file (pcap, pcapng, anything): written to a temp
//!   file, opened with `capture::Source::open_file` (read by src/capture/file/) and run
//!   with `wsnoop::run` into the JSON writer, whose every line must be a JSON object.
#![allow(dead_code)]

use std::io;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use wsnoop::analyzer::{Analyzer, AnalyzerOptions, FlowLimits, MidstreamOptions};
use wsnoop::capture::Source;
use wsnoop::context::WsOptions;
use wsnoop::diagnose::{DiagnoseOptions, Diagnoser};
use wsnoop::event::{EventSink, Timestamp, TsPrecision};
use wsnoop::http::handshake;
use wsnoop::net::link::LinkType;
use wsnoop::net::tcp::ReassemblyLimits;
use wsnoop::output::{JsonWriter, OutputSink, Quiet, TextWriter};
use wsnoop::wire::frame::FrameHeader;
use wsnoop::wire::http::{looks_like_request_start, looks_like_response_start};
use wsnoop::ws::Negotiated;
use wsnoop::ws::frame::{FrameDecoder, FrameVisitor};
use wsnoop::ws::resync::{ChainRule, ChainScan, Plausible, scan_chain};

// ---------------------------------------------------------------------------------------------
// frame_decoder

#[derive(Debug, PartialEq, Eq, Clone)]
enum FrameEvent {
    Start(FrameHeader),
    Payload(Vec<u8>),
    End(FrameHeader),
}

/// Records what the decoder reports, joining payload pieces, and checks the call order.
#[derive(Default)]
struct Recorder {
    events: Vec<FrameEvent>,
    open: Option<(FrameHeader, u64)>,
}

impl FrameVisitor for Recorder {
    fn frame_start(&mut self, header: &FrameHeader) {
        assert!(
            self.open.is_none(),
            "frame_start inside a frame: {header:?}"
        );
        assert!((2..=14).contains(&header.header_len), "{header:?}");
        self.open = Some((*header, 0));
        self.events.push(FrameEvent::Start(*header));
    }

    fn frame_payload(&mut self, header: &FrameHeader, payload: &[u8]) {
        let (open, got) = self.open.as_mut().expect("payload outside a frame");
        assert_eq!(open, header, "payload of another frame");
        assert!(!payload.is_empty(), "an empty payload call");
        *got += payload.len() as u64;
        assert!(
            *got <= header.len,
            "more payload than the header declares: {header:?}"
        );
        match self.events.last_mut() {
            Some(FrameEvent::Payload(p)) => p.extend_from_slice(payload),
            _ => self.events.push(FrameEvent::Payload(payload.to_vec())),
        }
    }

    fn frame_end(&mut self, header: &FrameHeader) {
        let (open, got) = self.open.take().expect("frame_end outside a frame");
        assert_eq!(&open, header, "the end of another frame");
        assert_eq!(
            got, header.len,
            "a frame ended before its payload: {header:?}"
        );
        self.events.push(FrameEvent::End(*header));
    }
}

/// A small deterministic generator for chunk sizes.
struct XorShift(u32);

impl XorShift {
    fn next(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }
}

pub fn frame_decoder(data: &[u8]) {
    let Some((&control, bytes)) = data.split_first() else {
        return;
    };
    // One feed of everything: the reference.
    let mut whole = Recorder::default();
    let mut whole_decoder = FrameDecoder::new();
    let mut scratch = Vec::new();
    whole_decoder.feed(bytes, &mut scratch, &mut whole);

    // The same bytes in chunks of 1 to 2^(control % 8) bytes (and empty feeds).
    let mut rng = XorShift(u32::from(control).wrapping_mul(2_654_435_761) | 1);
    let mut chunked = Recorder::default();
    let mut decoder = FrameDecoder::new();
    let mut rest = bytes;
    let max_chunk = 1usize << (control % 8);
    while !rest.is_empty() {
        let n = (rng.next() as usize % max_chunk + 1).min(rest.len());
        let (now, later) = rest.split_at(n);
        decoder.feed(now, &mut scratch, &mut chunked);
        if rng.next().is_multiple_of(8) {
            decoder.feed(&[], &mut scratch, &mut chunked);
        }
        rest = later;
    }
    assert_eq!(
        whole.events, chunked.events,
        "chunking changed what was decoded"
    );
    assert_eq!(
        whole_decoder.current_frame().map(|(h, r)| (*h, r)),
        decoder.current_frame().map(|(h, r)| (*h, r))
    );
    assert_eq!(
        whole_decoder.at_frame_boundary(),
        decoder.at_frame_boundary()
    );

    // Every header is where the frames before it end, and parses the same from there; every
    // payload is the bytes after it, unmasked.
    let mut pos = 0usize;
    let mut current: Option<FrameHeader> = None;
    for event in &whole.events {
        match event {
            FrameEvent::Start(h) => {
                let parsed = FrameHeader::parse(&bytes[pos..]).expect("a header where one began");
                assert_eq!(&parsed, h);
                pos += usize::from(h.header_len);
                current = Some(*h);
            }
            FrameEvent::Payload(p) => {
                let h = current.expect("payload before a header");
                let raw = &bytes[pos..pos + p.len()];
                let want: Vec<u8> = match h.mask {
                    Some(key) => raw
                        .iter()
                        .enumerate()
                        .map(|(i, b)| b ^ key[i % 4])
                        .collect(),
                    None => raw.to_vec(),
                };
                assert_eq!(p, &want, "payload not unmasked right");
                pos += p.len();
            }
            FrameEvent::End(_) => current = None,
        }
    }
    assert!(pos <= bytes.len());

    // Looking for frames in bytes of unknown framing (after a gap, mid-stream).
    let rule = Plausible {
        masked: match control >> 6 {
            0 => None,
            1 => Some(true),
            _ => Some(false),
        },
        rsv1_allowed: control & 0x20 != 0,
        max_len: 1 << 24,
    };
    for chain in [
        ChainRule {
            min_frames: 2,
            min_frames_at_end: 1,
        },
        ChainRule {
            min_frames: 3,
            min_frames_at_end: 2,
        },
    ] {
        match scan_chain(bytes, 0..bytes.len(), &rule, &chain) {
            ChainScan::Found(at) => {
                let h = FrameHeader::parse(&bytes[at..]).expect("a chain starts with a header");
                assert!(
                    rule.accepts(&h),
                    "a chain starting with an implausible frame"
                );
            }
            // Not ruled out: a plausible frame, or a header the data ends inside.
            ChainScan::Undecided(at) => {
                assert!(at < bytes.len());
                if let Some(h) = FrameHeader::parse(&bytes[at..]) {
                    assert!(rule.accepts(&h), "an implausible frame left undecided");
                }
            }
            ChainScan::None => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// handshake

const METHODS: [&str; 5] = ["GET", "HEAD", "POST", "CONNECT", "OPTIONS"];

pub fn handshake(data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let split = rest.len() * usize::from(control) / 256;
    let (request, response) = rest.split_at(split);
    let method = METHODS[usize::from(control) % METHODS.len()];

    let _ = looks_like_request_start(request);
    let _ = looks_like_response_start(response);
    let req = check_head(request, control, handshake::parse_request);
    let resp = check_head(response, control, |b| handshake::parse_response(b, method));
    if let Some(req) = &req
        && let Some(key) = req.key()
    {
        let _ = handshake::key_is_valid(key);
        let accept = handshake::expected_accept(key);
        assert_eq!(accept.len(), 28, "base64 of a SHA-1");
    }
    if let Some(resp) = &resp {
        let _ = Negotiated::from_server_extensions(&resp.extensions);
        for ext in &resp.extensions {
            let _ = wsnoop::http::rules::extension_name(ext);
        }
    }
    if let (Some(req), Some(resp)) = (&req, &resp) {
        let _ = handshake::accept_verdict(req, resp);
    }
}

/// Parses a head and checks that it parses the same from its own bytes, and that prefixes of
/// it are incomplete rather than malformed.
fn check_head<T: std::fmt::Debug>(
    buf: &[u8],
    control: u8,
    parse: impl Fn(&[u8]) -> Result<Option<(T, usize)>, handshake::HeadError>,
) -> Option<T> {
    let (value, len) = match parse(buf) {
        Ok(Some(done)) => done,
        Ok(None) | Err(_) => return None,
    };
    assert!(len <= buf.len(), "a head longer than its input");
    match parse(&buf[..len]) {
        Ok(Some((_, again))) => assert_eq!(again, len, "the head's own bytes parse differently"),
        other => panic!("a complete head of {len} bytes does not parse alone: {other:?}"),
    }
    let mut rng = XorShift(u32::from(control).wrapping_mul(40_503) | 1);
    for _ in 0..4 {
        let cut = rng.next() as usize % len.max(1);
        if let Err(e) = parse(&buf[..cut]) {
            panic!("the first {cut} bytes of a valid {len}-byte head are malformed: {e:?}");
        }
    }
    Some(value)
}

// ---------------------------------------------------------------------------------------------
// pipeline

/// Where events go in the pipeline target.
enum Sink {
    Json(JsonWriter<Vec<u8>>),
    Text(Box<TextWriter<io::Sink>>),
    Diagnose(Box<Diagnoser>),
    Quiet(Quiet),
}

impl EventSink for Sink {
    fn event(&mut self, event: &wsnoop::event::Event<'_>) {
        match self {
            Sink::Json(w) => w.event(event),
            Sink::Text(w) => w.event(event),
            Sink::Diagnose(d) => d.event(event),
            Sink::Quiet(q) => q.event(event),
        }
    }
}

const LINKS: [LinkType; 8] = [
    LinkType::Ethernet,
    LinkType::Ethernet,
    LinkType::Ethernet,
    LinkType::Ethernet,
    LinkType::Raw,
    LinkType::Null,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
];

/// The input format of the pipeline target:
/// byte 0: link type (bits 0-2: Ethernet x4, raw IP, BSD loopback, SLL, SLL2), heuristics
/// (bit 3), output (bits 4-5: JSON, text, diagnose, none), limits (bits 6-7: default, tiny,
/// no payloads, frames only); bytes 1-2: a `--ws-port` (0: none); then packets, each a time
/// step (1 byte: under 200, that many 10 ms; else that many minus 199 minutes), a length (2
/// bytes, big-endian) and that many bytes (fewer if the input ends).
pub struct PipelineInput<'a> {
    pub link: LinkType,
    pub options: AnalyzerOptions,
    pub output: u8,
    pub packets: Vec<(Timestamp, &'a [u8])>,
}

pub fn parse_pipeline_input(data: &[u8]) -> Option<PipelineInput<'_>> {
    if data.len() < 3 {
        return None;
    }
    let config = data[0];
    let port = u16::from_be_bytes([data[1], data[2]]);
    let mut options = AnalyzerOptions {
        midstream: MidstreamOptions {
            ws_ports: if port == 0 { Vec::new() } else { vec![port] },
            heuristics: config & 0x08 != 0,
        },
        ..AnalyzerOptions::default()
    };
    match config >> 6 {
        1 => {
            options.flows = FlowLimits {
                max_flows: 3,
                idle_timeout_secs: 2,
            };
            options.reassembly = ReassemblyLimits {
                max_bytes: 300,
                max_segments: 4,
            };
            options.ws.max_payload = 7;
            options.ws.max_message = 50;
            options.ws.max_frames = Some(20);
        }
        2 => {
            options.ws.max_payload = 0;
            options.report_connections = true;
        }
        3 => {
            options.ws = WsOptions {
                show_messages: false,
                ..WsOptions::default()
            };
        }
        _ => {}
    }
    let mut packets = Vec::new();
    let mut ts = Timestamp {
        secs: 1_700_000_000,
        nanos: 0,
    };
    let mut rest = &data[3..];
    while rest.len() >= 3 {
        let step = rest[0];
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
        rest = &rest[3..];
        let (packet, later) = rest.split_at(len.min(rest.len()));
        rest = later;
        if step < 200 {
            let nanos = u64::from(ts.nanos) + u64::from(step) * 10_000_000;
            ts.secs += (nanos / 1_000_000_000) as i64;
            ts.nanos = (nanos % 1_000_000_000) as u32;
        } else {
            ts.secs += i64::from(step - 199) * 60;
        }
        packets.push((ts, packet));
    }
    Some(PipelineInput {
        link: LINKS[usize::from(config & 7)],
        options,
        output: (config >> 4) & 3,
        packets,
    })
}

/// Returns the number of WebSocket frames decoded (for tests that the harness does work).
pub fn pipeline(data: &[u8]) -> u64 {
    let Some(input) = parse_pipeline_input(data) else {
        return 0;
    };
    let ports = input.options.midstream.ws_ports.clone();
    let mut sink = match input.output {
        0 => Sink::Json(JsonWriter::new(Vec::new(), TsPrecision::Nano)),
        1 => Sink::Text(Box::new(TextWriter::new(
            io::sink(),
            TsPrecision::Micro,
            true,
        ))),
        2 => Sink::Diagnose(Box::new(Diagnoser::new(
            ports,
            DiagnoseOptions {
                idle_secs: 1.0,
                keylog_given: false,
            },
        ))),
        _ => Sink::Quiet(Quiet),
    };
    let mut analyzer = Analyzer::new(input.options);
    for (ts, packet) in &input.packets {
        analyzer.packet(input.link, *ts, packet, &mut sink);
        if analyzer.is_done() {
            break;
        }
    }
    analyzer.finish(&mut sink);
    let stats = analyzer.stats();
    assert!(stats.tcp_packets <= stats.packets + stats.fragments);
    match &mut sink {
        Sink::Json(w) => w.finish().expect("writing to memory"),
        Sink::Text(w) => w.finish().expect("writing to io::sink"),
        Sink::Diagnose(d) => {
            let findings = d.findings(&stats);
            wsnoop::diagnose::write_json(&mut io::sink(), &findings).expect("io::sink");
            wsnoop::diagnose::write_text(&mut io::sink(), &findings, true).expect("io::sink");
        }
        Sink::Quiet(_) => {}
    }
    if let Sink::Json(w) = sink {
        check_json_lines(&w.into_inner());
    }
    stats.ws.frames
}

/// Every line wsnoop writes with --json is a JSON object with a "type".
pub fn check_json_lines(out: &[u8]) {
    let text = std::str::from_utf8(out).expect("JSON Lines output that is not UTF-8");
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "output not ended by a newline"
    );
    for line in text.lines() {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a line that is not JSON ({e}): {line}"));
        assert!(
            value
                .get("type")
                .and_then(serde_json::Value::as_str)
                .is_some(),
            "a line without a type: {line}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// pcap_file

/// A temp file that is removed when dropped; unique per call, so tests may run in parallel.
struct TempCapture(std::path::PathBuf);

impl Drop for TempCapture {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Every packet the reader shows ahead (for the analyzer to ask for its connection's state
/// early) is the one it hands on that many packets later; guessing its endpoints never fails
/// loudly.
fn check_packets_shown_ahead(path: &std::path::Path) {
    let Ok(mut source) = Source::open_file(path) else {
        return;
    };
    let mut shown = std::collections::VecDeque::new();
    loop {
        let ahead = source.buffered_ahead().map(|(link, data)| {
            let _ = wsnoop::net::segment::endpoints_hint(link, data);
            data.to_vec()
        });
        shown.push_back(ahead);
        let handed = match source.next_packet() {
            Ok(wsnoop::capture::Next::Packet(p)) => p.data.to_vec(),
            Ok(wsnoop::capture::Next::Idle) => continue,
            Ok(wsnoop::capture::Next::End) | Err(_) => return,
        };
        if shown.len() > wsnoop::capture::LOOK_AHEAD
            && let Some(Some(expected)) = shown.pop_front()
        {
            assert_eq!(
                expected, handed,
                "the packet shown ahead is not the one handed on"
            );
        }
    }
}

/// Returns the number of packets read (for tests that the harness does work).
pub fn pcap_file(data: &[u8]) -> u64 {
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file = TempCapture(
        std::env::temp_dir().join(format!("wsnoop-fuzz-{}-{n}.pcap", std::process::id())),
    );
    std::fs::write(&file.0, data).expect("writing the temp capture");
    check_packets_shown_ahead(&file.0);
    let Ok(mut source) = Source::open_file(&file.0) else {
        return 0;
    };
    let options = AnalyzerOptions {
        midstream: MidstreamOptions {
            ws_ports: vec![8080],
            heuristics: true,
        },
        ..AnalyzerOptions::default()
    };
    let mut analyzer = Analyzer::new(options);
    let mut sink = JsonWriter::new(Vec::new(), source.precision());
    let stop = AtomicBool::new(false);
    let mut on_drops = |_| {};
    let _ = wsnoop::run(
        &mut source,
        &mut analyzer,
        &mut sink,
        wsnoop::RunControl {
            stop: &stop,
            duration: None,
            on_drops: &mut on_drops,
            drop_report_interval: Duration::from_secs(5),
            keys: None,
            unbuffered: false,
        },
    );
    check_json_lines(&sink.into_inner());
    analyzer.stats().packets
}
