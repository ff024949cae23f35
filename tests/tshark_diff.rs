//! Differential test against tshark (Wireshark 4.0, as in Debian 12).
//!
//! For every capture in fixtures/ and every trace in `$WSNOOP_CORPUS/zeek/traces/`, the WebSocket
//! frames wsnoop reports must equal tshark's, per connection and direction, in order: FIN, RSV
//! bits, opcode, MASK bit, masking key, declared payload length and the unmasked payload bytes.
//!
//! How tshark's view is obtained:
//! - tshark dissects WebSocket only after an HTTP upgrade on a port it treats as HTTP, so every
//!   server port (source port of a SYN-ACK, found by a first tshark pass, plus the server ports
//!   of wsnoop's handshakes) is passed as `-d tcp.port==PORT,http`.
//! - The second pass prints `-T json -x --no-duplicate-keys`: a packet holding several frames has
//!   an array under "websocket"; a frame spanning several packets appears once, reassembled, in
//!   its last packet.
//! - `websocket.payload_raw` holds the payload after unmasking and before any permessage-deflate
//!   inflation (tshark adds the "Payload" item on the unmasked tvb and only then decompresses
//!   into a separate data source), which is exactly what wsnoop prints in a frame event. So the
//!   payload is compared for compressed frames too. tshark adds no payload item for an empty
//!   payload: missing means empty.
//! - tshark runs with WIRESHARK_CONFIG_DIR pointing at an empty directory, so personal
//!   preferences or Decode As entries cannot change its view.
//!
//! Frames are matched by endpoints (source ip:port, destination ip:port), not by connection
//! numbers. A connection whose 4-tuple is reused later in the same capture is compared as one
//! sequence: both tools list its frames in capture order.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use serde_json::Value;

/// Large enough that no payload of any fixture or trace is cut.
const MAX_PAYLOAD: &str = "100000000";
/// Differing frames reported per connection direction before the rest are only counted.
const MAX_REPORTED_FRAMES: usize = 5;

/// One WebSocket frame as one of the tools shows it.
#[derive(Debug, Clone)]
struct Frame {
    fin: bool,
    /// RSV1 = 4, RSV2 = 2, RSV3 = 1.
    rsv: u8,
    opcode: u8,
    masked: bool,
    /// Masking key as 8 lowercase hex digits.
    mask: Option<String>,
    /// Declared payload length.
    len: u64,
    /// Unmasked payload (compressed if the message is).
    payload: Vec<u8>,
    /// wsnoop only: the payload came from a "text" field. wsnoop moves a UTF-8 character cut by
    /// a frame border to the frame where it completes, so such a frame's bytes may differ from
    /// the wire by a few bytes at each end.
    text: bool,
    /// wsnoop only: payload cut at --max-payload.
    truncated: bool,
    /// Where to find it: tshark packet number or wsnoop timestamp.
    at: String,
}

/// One direction of a connection: (source, destination) as "ip:port" ("[v6]:port").
type DirKey = (String, String);

/// What one tool saw in one capture.
#[derive(Default)]
struct View {
    frames: BTreeMap<DirKey, Vec<Frame>>,
    /// Per direction, a label naming the connection in the tool's own terms.
    labels: BTreeMap<DirKey, String>,
}

impl View {
    fn frame_count(&self) -> usize {
        self.frames.values().map(Vec::len).sum()
    }
}

// ------------------------------------------------------------------------------ wsnoop ----

fn opcode_number(name: &str) -> Option<u8> {
    Some(match name {
        "continuation" => 0,
        "text" => 1,
        "binary" => 2,
        "close" => 8,
        "ping" => 9,
        "pong" => 10,
        _ => name.strip_prefix("reserved-")?.parse().ok()?,
    })
}

fn str_field<'a>(e: &'a Value, name: &str, what: &str) -> &'a str {
    e.get(name)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{what}: no string field {name:?} in {e}"))
}

fn wsnoop_view(capture: &Path) -> (View, BTreeSet<u16>) {
    let what = format!("wsnoop on {}", capture.display());
    let mut view = View::default();
    let mut server_ports = BTreeSet::new();
    for e in common::run_wsnoop_json(capture, &["--max-payload", MAX_PAYLOAD]) {
        let ty = e.get("type").and_then(Value::as_str);
        if ty == Some("handshake") {
            let server = str_field(&e, "server", &what);
            server_ports.insert(port_of(server, &what));
            continue;
        }
        if ty != Some("frame") {
            continue;
        }
        let client = str_field(&e, "client", &what).to_owned();
        let server = str_field(&e, "server", &what).to_owned();
        let dir = str_field(&e, "dir", &what);
        let key = match dir {
            "c2s" => (client, server),
            "s2c" => (server, client),
            _ => panic!("{what}: bad dir {dir:?} in {e}"),
        };
        let flow = e.get("flow").and_then(Value::as_u64);
        view.labels.entry(key.clone()).or_insert_with(|| {
            format!(
                "wsnoop flow {} {dir}",
                flow.map_or("?".into(), |f| f.to_string())
            )
        });
        view.frames
            .entry(key)
            .or_default()
            .push(wsnoop_frame(&e, &what));
    }
    (view, server_ports)
}

fn wsnoop_frame(e: &Value, what: &str) -> Frame {
    let boolean = |name: &str| {
        e.get(name)
            .and_then(Value::as_bool)
            .unwrap_or_else(|| panic!("{what}: no boolean field {name:?} in {e}"))
    };
    let number = |name: &str| {
        e.get(name)
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("{what}: no integer field {name:?} in {e}"))
    };
    let opcode_name = str_field(e, "opcode", what);
    let (payload, text) = if let Some(t) = e.get("text").and_then(Value::as_str) {
        (t.as_bytes().to_vec(), true)
    } else if let Some(d) = e.get("data").and_then(Value::as_str) {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(d)
            .unwrap_or_else(|err| panic!("{what}: bad base64 in \"data\" ({err}): {e}"));
        (bytes, false)
    } else {
        (Vec::new(), false)
    };
    Frame {
        fin: boolean("fin"),
        rsv: u8::try_from(number("rsv")).expect("rsv fits in u8"),
        opcode: opcode_number(opcode_name)
            .unwrap_or_else(|| panic!("{what}: unknown opcode name {opcode_name:?} in {e}")),
        masked: boolean("masked"),
        mask: e
            .get("mask")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase),
        len: number("len"),
        payload,
        text,
        truncated: e.get("truncated").and_then(Value::as_bool).unwrap_or(false),
        at: format!(
            "wsnoop ts {}",
            e.get("ts").map_or("?".into(), Value::to_string)
        ),
    }
}

fn port_of(endpoint: &str, what: &str) -> u16 {
    endpoint
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("{what}: endpoint {endpoint:?} has no port"))
}

// ------------------------------------------------------------------------------ tshark ----

/// Panics with installation instructions when tshark cannot be run; returns its version line.
fn tshark_version() -> String {
    let out = Command::new("tshark").arg("--version").output().unwrap_or_else(|e| {
        panic!(
            "cannot run tshark ({e}): this test compares wsnoop with tshark and needs it on PATH. \
             Install it: `sudo apt-get install tshark` (Debian/Ubuntu; answer the wireshark-common \
             question either way), `sudo dnf install wireshark-cli` (Fedora), \
             `brew install wireshark` (macOS)"
        )
    });
    assert!(
        out.status.success(),
        "tshark --version failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn run_tshark(config_dir: &Path, capture: &Path, args: &[String]) -> String {
    let out = Command::new("tshark")
        .env("WIRESHARK_CONFIG_DIR", config_dir)
        .arg("-n")
        .arg("-r")
        .arg(capture)
        .args(args)
        .output()
        .expect("running tshark");
    assert!(
        out.status.success(),
        "tshark -n -r {} {} failed ({}): {}",
        capture.display(),
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("tshark output is UTF-8")
}

/// Source ports of SYN-ACKs: the server port of every connection whose start was captured.
fn tshark_server_ports(config_dir: &Path, capture: &Path) -> BTreeSet<u16> {
    let args = [
        "-Y",
        "tcp.flags.syn == 1 && tcp.flags.ack == 1",
        "-T",
        "fields",
        "-e",
        "tcp.srcport",
    ];
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    run_tshark(config_dir, capture, &args)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.trim().parse().unwrap_or_else(|e| {
                panic!(
                    "tshark on {}: tcp.srcport {l:?} is not a port: {e}",
                    capture.display()
                )
            })
        })
        .collect()
}

fn tshark_view(config_dir: &Path, capture: &Path, http_ports: &BTreeSet<u16>) -> View {
    let what = format!("tshark on {}", capture.display());
    let mut args: Vec<String> = ["-Y", "websocket", "-T", "json", "-x", "--no-duplicate-keys"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(["-J".into(), "frame ip ipv6 tcp websocket".into()]);
    for port in http_ports {
        args.extend(["-d".into(), format!("tcp.port=={port},http")]);
    }
    let out = run_tshark(config_dir, capture, &args);
    let packets: Value = if out.trim().is_empty() {
        Value::Array(Vec::new())
    } else {
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{what}: output is not JSON: {e}"))
    };
    let packets = packets
        .as_array()
        .unwrap_or_else(|| panic!("{what}: output is not a JSON array"));

    let mut view = View::default();
    for packet in packets {
        let layers = packet
            .pointer("/_source/layers")
            .unwrap_or_else(|| panic!("{what}: packet without _source.layers: {packet}"));
        let number = layers
            .get("frame")
            .and_then(|f| f.get("frame.number"))
            .and_then(Value::as_str)
            .unwrap_or("?");
        let what = format!("{what}, packet {number}");
        let (src, dst) = tshark_endpoints(layers, &what);
        let stream = innermost(layers, "tcp")
            .and_then(|t| t.get("tcp.stream"))
            .and_then(Value::as_str)
            .unwrap_or("?");
        let key = (src, dst);
        view.labels
            .entry(key.clone())
            .or_insert_with(|| format!("tshark tcp.stream {stream}"));
        let Some(ws) = layers.get("websocket") else {
            panic!("{what}: matched -Y websocket but has no websocket layer");
        };
        for w in one_or_many(ws) {
            let frame = tshark_frame(w, &what, number);
            view.frames.entry(key.clone()).or_default().push(frame);
        }
    }
    view
}

/// `v` itself, or its elements when --no-duplicate-keys merged several values into an array.
fn one_or_many(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    }
}

/// The last (innermost) instance of a protocol layer.
fn innermost<'a>(layers: &'a Value, proto: &str) -> Option<&'a Value> {
    layers
        .get(proto)
        .map(one_or_many)
        .and_then(|v| v.last().copied())
}

fn tshark_endpoints(layers: &Value, what: &str) -> (String, String) {
    let tcp = innermost(layers, "tcp").unwrap_or_else(|| panic!("{what}: no tcp layer"));
    let sport = str_field(tcp, "tcp.srcport", what);
    let dport = str_field(tcp, "tcp.dstport", what);
    // With IP-in-IP the innermost IP layer carries the TCP; ip and ipv6 never both carry it here.
    if let Some(ip6) = innermost(layers, "ipv6") {
        let src = str_field(ip6, "ipv6.src", what);
        let dst = str_field(ip6, "ipv6.dst", what);
        (format!("[{src}]:{sport}"), format!("[{dst}]:{dport}"))
    } else if let Some(ip) = innermost(layers, "ip") {
        let src = str_field(ip, "ip.src", what);
        let dst = str_field(ip, "ip.dst", what);
        (format!("{src}:{sport}"), format!("{dst}:{dport}"))
    } else {
        panic!("{what}: neither ip nor ipv6 layer")
    }
}

fn tshark_frame(w: &Value, what: &str, packet: &str) -> Frame {
    let field = |name: &str| str_field(w, name, what);
    let flag = |name: &str| match field(name) {
        "1" | "True" | "true" => true,
        "0" | "False" | "false" => false,
        other => panic!("{what}: {name} is {other:?}, expected 0 or 1"),
    };
    let int = |name: &str| -> u64 {
        let s = field(name);
        let parsed = match s.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => s.parse(),
        };
        parsed.unwrap_or_else(|e| panic!("{what}: {name} is {s:?}, not a number: {e}"))
    };
    let masked = flag("websocket.mask");
    let len = if w.get("websocket.payload_length_ext_16").is_some() {
        int("websocket.payload_length_ext_16")
    } else if w.get("websocket.payload_length_ext_64").is_some() {
        int("websocket.payload_length_ext_64")
    } else {
        int("websocket.payload_length")
    };
    // "websocket.payload_raw": [hex, offset, length, bitmask, type]
    let payload = match w.get("websocket.payload_raw") {
        None => Vec::new(),
        Some(raw) => {
            let hex = raw.get(0).and_then(Value::as_str).unwrap_or_else(|| {
                panic!("{what}: websocket.payload_raw is not [hex, ...]: {raw}")
            });
            decode_hex(hex)
                .unwrap_or_else(|| panic!("{what}: websocket.payload_raw is not hex: {hex}"))
        }
    };
    Frame {
        fin: flag("websocket.fin"),
        rsv: u8::try_from(int("websocket.rsv")).expect("rsv fits in u8"),
        opcode: u8::try_from(int("websocket.opcode")).expect("opcode fits in u8"),
        masked,
        mask: masked.then(|| {
            field("websocket.masking_key")
                .replace(':', "")
                .to_ascii_lowercase()
        }),
        len,
        payload,
        text: false,
        truncated: false,
        at: format!("tshark packet {packet}"),
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

// --------------------------------------------------------------------------- comparing ----

fn hex_window(bytes: &[u8], at: usize) -> String {
    let start = at.saturating_sub(8);
    let end = (at + 24).min(bytes.len());
    let mut s = String::new();
    if start > 0 {
        s.push_str("...");
    }
    for (i, b) in bytes.iter().enumerate().take(end).skip(start) {
        if i == at {
            s.push('|');
        }
        let _ = write!(s, "{b:02x}");
    }
    if at == bytes.len() && at > start {
        s.push('|');
    }
    if end < bytes.len() {
        s.push_str("...");
    }
    if s.is_empty() {
        s.push_str("(nothing)");
    }
    s
}

fn describe_payloads(tshark: &[u8], wsnoop: &[u8]) -> (String, String) {
    let at = tshark
        .iter()
        .zip(wsnoop)
        .position(|(a, b)| a != b)
        .unwrap_or(tshark.len().min(wsnoop.len()));
    let show = |p: &[u8]| {
        format!(
            "{} bytes, first difference at byte {at} (marked |): {}",
            p.len(),
            hex_window(p, at)
        )
    };
    (show(tshark), show(wsnoop))
}

/// Data-frame (non-control) payloads of one direction, concatenated.
fn data_stream(frames: &[Frame]) -> Vec<u8> {
    frames
        .iter()
        .filter(|f| f.opcode < 8)
        .flat_map(|f| f.payload.iter().copied())
        .collect()
}

/// The differing fields of one frame pair, as (field, tshark value, wsnoop value).
/// `offset` is the tshark frame's position in the direction's data stream.
fn frame_diffs(
    t: &Frame,
    w: &Frame,
    offset: usize,
    w_stream: &[u8],
) -> Vec<(&'static str, String, String)> {
    let mut d = Vec::new();
    let mut check = |name, a: String, b: String| {
        if a != b {
            d.push((name, a, b));
        }
    };
    check("fin", t.fin.to_string(), w.fin.to_string());
    check("rsv", t.rsv.to_string(), w.rsv.to_string());
    check("opcode", t.opcode.to_string(), w.opcode.to_string());
    check("masked", t.masked.to_string(), w.masked.to_string());
    check("mask", format!("{:?}", t.mask), format!("{:?}", w.mask));
    check("len", t.len.to_string(), w.len.to_string());
    check("truncated", "false".into(), w.truncated.to_string());
    if t.payload.len() as u64 != t.len {
        // Guard against comparing payloads tshark itself did not fully show.
        d.push((
            "tshark payload",
            format!("{} bytes of declared {}", t.payload.len(), t.len),
            "-".into(),
        ));
    }
    if t.payload != w.payload {
        // A text frame whose border cut a UTF-8 character: wsnoop shows the character in the
        // frame where it completes. Accept when the direction's data stream holds the same bytes
        // at this frame's wire position.
        let moved_char = w.text
            && t.opcode < 8
            && w_stream.get(offset..offset + t.payload.len()) == Some(t.payload.as_slice());
        if !moved_char {
            let (a, b) = describe_payloads(&t.payload, &w.payload);
            d.push(("payload", a, b));
        }
    }
    d
}

/// Compares one direction; appends problems; returns the number of frames compared.
fn compare_direction(
    file: &str,
    conn: &str,
    tshark: &[Frame],
    wsnoop: &[Frame],
    problems: &mut Vec<String>,
) -> usize {
    let w_stream = data_stream(wsnoop);
    let mut offset = 0usize;
    let mut differing = 0usize;
    for (i, (t, w)) in tshark.iter().zip(wsnoop).enumerate() {
        let diffs = frame_diffs(t, w, offset, &w_stream);
        if t.opcode < 8 {
            offset += t.payload.len();
        }
        if diffs.is_empty() {
            continue;
        }
        differing += 1;
        if differing > MAX_REPORTED_FRAMES {
            continue;
        }
        for (field, a, b) in diffs {
            problems.push(format!(
                "{file}: {conn}: frame #{i} ({}, {}): {field}: tshark={a} wsnoop={b}",
                t.at, w.at
            ));
        }
    }
    if differing > MAX_REPORTED_FRAMES {
        problems.push(format!(
            "{file}: {conn}: ... {} more differing frames not shown",
            differing - MAX_REPORTED_FRAMES
        ));
    }
    if tshark.len() != wsnoop.len() {
        let n = tshark.len().min(wsnoop.len());
        let extra = tshark
            .get(n)
            .or(wsnoop.get(n))
            .expect("one side has frame n");
        problems.push(format!(
            "{file}: {conn}: frame count: tshark={} wsnoop={} (first unmatched: frame #{n} at {}, opcode {}, len {})",
            tshark.len(),
            wsnoop.len(),
            extra.at,
            extra.opcode,
            extra.len
        ));
    }
    tshark.len().min(wsnoop.len())
}

struct CaptureResult {
    name: String,
    tshark_frames: usize,
    wsnoop_frames: usize,
    compared: usize,
    problems: Vec<String>,
}

fn compare_capture(config_dir: &Path, capture: &Path) -> CaptureResult {
    let name = capture.display().to_string();
    let (wsnoop, wsnoop_ports) = wsnoop_view(capture);
    let mut ports = tshark_server_ports(config_dir, capture);
    ports.extend(wsnoop_ports);
    let tshark = tshark_view(config_dir, capture, &ports);

    let mut problems = Vec::new();
    let mut compared = 0;
    let keys: BTreeSet<&DirKey> = tshark.frames.keys().chain(wsnoop.frames.keys()).collect();
    for key in keys {
        let labels: Vec<&str> = [&wsnoop.labels, &tshark.labels]
            .iter()
            .filter_map(|l| l.get(key).map(String::as_str))
            .collect();
        let conn = format!("{} -> {} ({})", key.0, key.1, labels.join(", "));
        let t = tshark.frames.get(key).map_or(&[][..], Vec::as_slice);
        let w = wsnoop.frames.get(key).map_or(&[][..], Vec::as_slice);
        compared += compare_direction(&name, &conn, t, w, &mut problems);
    }
    CaptureResult {
        name,
        tshark_frames: tshark.frame_count(),
        wsnoop_frames: wsnoop.frame_count(),
        compared,
        problems,
    }
}

/// Compares all captures on two worker threads (tshark start-up dominates), in input order.
fn compare_all(config_dir: &Path, captures: &[PathBuf]) -> Vec<CaptureResult> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<CaptureResult>>> =
        Mutex::new((0..captures.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(capture) = captures.get(i) else {
                        break;
                    };
                    let r = compare_capture(config_dir, capture);
                    results.lock().expect("results lock")[i] = Some(r);
                }
            });
        }
    });
    results
        .into_inner()
        .expect("results lock")
        .into_iter()
        .map(|r| r.expect("every capture compared"))
        .collect()
}

#[test]
fn frames_match_tshark() {
    let version = tshark_version();
    let corpus_traces = common::corpus_dir().join("zeek/traces");
    let corpus = common::captures_in(&corpus_traces);
    assert!(
        !corpus.is_empty(),
        "no .pcap/.pcapng in {}: set WSNOOP_CORPUS to the peer corpus directory (the one holding zeek/traces/)",
        corpus_traces.display()
    );
    let fixtures = common::captures_in(&common::fixtures_dir());
    let captures: Vec<PathBuf> = fixtures.iter().chain(&corpus).cloned().collect();

    let config_dir = tempfile::tempdir().expect("creating an empty WIRESHARK_CONFIG_DIR");
    let results = compare_all(config_dir.path(), &captures);

    let mut problems = Vec::new();
    let mut summary = format!("{version}\n");
    let (mut with_ws, mut frames) = (0, 0);
    for r in &results {
        let _ = writeln!(
            summary,
            "  {}: tshark {} frames, wsnoop {} frames, {} compared{}",
            r.name,
            r.tshark_frames,
            r.wsnoop_frames,
            r.compared,
            if r.problems.is_empty() {
                ""
            } else {
                ", DIFFERENCES"
            }
        );
        if r.tshark_frames > 0 {
            with_ws += 1;
            // Non-trivial: a capture tshark sees WebSocket in yields frames from wsnoop too
            // (otherwise the frame-count check above already reports it).
            if r.wsnoop_frames == 0 {
                problems.push(format!(
                    "{}: tshark shows {} frames, wsnoop none",
                    r.name, r.tshark_frames
                ));
            }
        }
        frames += r.compared;
        problems.extend(r.problems.iter().cloned());
    }
    let _ = writeln!(
        summary,
        "compared {} captures ({} fixtures, {} corpus traces), {with_ws} with WebSocket frames, {frames} frames",
        results.len(),
        fixtures.len(),
        corpus.len()
    );
    println!("{summary}");

    // The corpus README: tshark decodes every frame of the Zeek traces with default settings,
    // and every one of them holds WebSocket frames.
    for r in results
        .iter()
        .filter(|r| r.name.starts_with(&corpus_traces.display().to_string()))
    {
        if r.tshark_frames == 0 {
            problems.push(format!(
                "{}: tshark shows no WebSocket frame in a corpus trace",
                r.name
            ));
        }
    }
    assert!(frames > 0, "no frame compared at all\n{summary}");
    assert!(
        problems.is_empty(),
        "wsnoop and tshark disagree ({} problems):\n{}\n\n{summary}",
        problems.len(),
        problems.join("\n")
    );
}
