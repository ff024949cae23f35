//! Hostile and imperfect captures (issue 5): real captures mangled by
//! fixtures/mangle/mangle.py — packets reordered, duplicated, dropped, the handshake cut off,
//! the file truncated inside a record, packets cut by a snapshot length, IP packets split into
//! out-of-order IPv4 fragments — each checked against the exact outcome in its
//! NAME.expected.json. Those files are derived from the original capture's ground truth (what
//! the programs sent) and from what the script did to the packets, never from wsnoop's output.
//!
//! Each variant is also compared with wsnoop's own decoding of the untouched original (which
//! tests/fixtures.rs holds to the ground truth): a variant that must decode like its original
//! must give the same events, and a frame that survives damage must be the original's frame.
//!
//! At the end: inputs the fuzz targets (fuzz/) found to crash wsnoop, kept as regressions.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use serde_json::{Map, Value};

use common::{fixtures_dir, manifest_dir, parse_json_lines, wsnoop_bin};

/// The options the expected files assume: whole payloads in every event.
const ARGS: [&str; 3] = ["--json", "--max-payload", "1000000"];

fn mangle_dir() -> PathBuf {
    fixtures_dir().join("mangle")
}

struct Output {
    code: Option<i32>,
    events: Vec<Value>,
    stderr: String,
}

fn run_wsnoop(capture: &Path, extra: &[&str]) -> Output {
    let out = Command::new(wsnoop_bin())
        .arg("-r")
        .arg(capture)
        .args(ARGS)
        .args(extra)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", wsnoop_bin().display()));
    let stdout = String::from_utf8(out.stdout).expect("wsnoop's output is UTF-8");
    Output {
        code: out.status.code(),
        events: parse_json_lines(&stdout, &capture.display().to_string()),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn load_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The payload bytes an event shows, from `"text"` or `"data"`.
fn payload(event: &Value) -> Option<Vec<u8>> {
    if let Some(text) = s(event, "text") {
        return Some(text.as_bytes().to_vec());
    }
    let data = s(event, "data")?;
    base64::engine::general_purpose::STANDARD.decode(data).ok()
}

/// An event without what may legitimately differ between a capture and its mangled copy:
/// capture times, the connection's number, timing-derived flow fields, and the packets the
/// mangling added, dropped or split.
fn normalized(event: &Value) -> Value {
    let mut map: Map<String, Value> = event.as_object().cloned().unwrap_or_default();
    for key in [
        "ts",
        "flow",
        "midstream",
        "latency",
        "start",
        "duration",
        "longest_silence",
        "ping_rtt",
        "packets_c2s",
        "packets_s2c",
        "packet_bytes_c2s",
        "packet_bytes_s2c",
    ] {
        map.remove(key);
    }
    Value::Object(map)
}

/// Events of one connection, by client endpoint.
fn by_connection(events: &[Value]) -> BTreeMap<String, Vec<&Value>> {
    let mut out: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for e in events {
        if let Some(client) = s(e, "client") {
            out.entry(client.to_string()).or_default().push(e);
        }
    }
    out
}

fn of<'a>(events: &[&'a Value], kind: &str, dir: Option<&str>) -> Vec<&'a Value> {
    events
        .iter()
        .copied()
        .filter(|e| s(e, "type") == Some(kind) && (dir.is_none() || s(e, "dir") == dir))
        .collect()
}

const DIRS: [&str; 2] = ["c2s", "s2c"];

/// Checks one connection's events against its expected outcome; returns what differs.
fn check_connection(want: &Value, got: &[&Value], source: &[&Value], errors: &mut Vec<String>) {
    let client = s(want, "client").unwrap_or("?");
    let errs = std::cell::RefCell::new(Vec::new());
    let err = |msg: String| {
        errs.borrow_mut()
            .push(format!("connection {client}: {msg}"))
    };
    if let Some(server) = s(want, "server") {
        for e in got {
            if s(e, "server") != Some(server) {
                err(format!(
                    "event with server {:?}, not {server}",
                    s(e, "server")
                ));
                break;
            }
        }
    }
    let midstream = want["midstream"].as_bool().unwrap_or(false);
    for e in got {
        if e.get("midstream").and_then(Value::as_bool).unwrap_or(false) != midstream {
            err(format!(
                "a {} event's midstream is {:?}, want {midstream}",
                s(e, "type").unwrap_or("?"),
                e.get("midstream")
            ));
            break;
        }
    }
    let handshakes = of(got, "handshake", None);
    match s(want, "handshake") {
        Some(uri) => {
            if handshakes.len() != 1
                || s(handshakes[0], "uri") != Some(uri)
                || handshakes[0]["upgraded"] != Value::Bool(true)
            {
                err(format!(
                    "want one upgraded handshake for {uri}, got {handshakes:?}"
                ));
            }
        }
        None => {
            if !handshakes.is_empty() {
                err(format!("want no handshake event, got {}", handshakes.len()));
            }
        }
    }
    for dir in DIRS {
        let frames = of(got, "frame", Some(dir));
        let source_frames = of(source, "frame", Some(dir));
        let want_frames = want["frames"][dir].as_array().cloned().unwrap_or_default();
        if frames.len() != want_frames.len() {
            err(format!(
                "{dir}: {} frames, want {} (got opcodes/lens {:?})",
                frames.len(),
                want_frames.len(),
                frames
                    .iter()
                    .map(|f| format!("{}/{}", s(f, "opcode").unwrap_or("?"), f["len"]))
                    .collect::<Vec<_>>()
            ));
        }
        // When frames are missing or extra, only the first that differs is worth reading.
        let misaligned = frames.len() != want_frames.len();
        for (i, (f, w)) in frames.iter().zip(&want_frames).enumerate() {
            let before = errs.borrow().len();
            for key in ["opcode", "fin", "rsv", "masked", "len"] {
                if f[key] != w[key] {
                    err(format!(
                        "{dir} frame {i}: {key} is {}, want {}",
                        f[key], w[key]
                    ));
                }
            }
            if f["truncated"] != Value::Bool(false) {
                err(format!("{dir} frame {i}: truncated"));
            }
            let shown_whole = w.get("utf8_whole").and_then(Value::as_bool) != Some(false);
            match payload(f) {
                Some(bytes) if f.get("data").is_some() || shown_whole => {
                    if w["sha256"].as_str() != Some(&hex(&sha256(&bytes))) {
                        err(format!(
                            "{dir} frame {i} ({} {}): payload differs from what was sent",
                            w["opcode"], w["len"]
                        ));
                    }
                }
                Some(_) => {}
                None => err(format!("{dir} frame {i}: no payload")),
            }
            for key in ["close_code", "close_reason"] {
                if w.get(key).is_some() && f[key] != w[key] {
                    err(format!(
                        "{dir} frame {i}: {key} is {}, want {}",
                        f[key], w[key]
                    ));
                }
            }
            // A frame that survives damage is the original's frame, as wsnoop decodes it there;
            // a continuation whose message began before a gap may show its text as data.
            let orphan = w["orphan"] == Value::Bool(true);
            let comparable = |e: &Value| {
                let mut e = normalized(e);
                if orphan && let Some(map) = e.as_object_mut() {
                    map.remove("text");
                    map.remove("data");
                }
                e
            };
            if let Some(k) = w["index"].as_u64()
                && let Some(orig) = source_frames.get(k as usize)
                && comparable(f) != comparable(orig)
            {
                err(format!(
                    "{dir} frame {i} differs from the original's frame {k}: {f} vs {orig}"
                ));
            }
            if misaligned && errs.borrow().len() > before {
                break;
            }
        }
        let messages = of(got, "message", Some(dir));
        let source_messages = of(source, "message", Some(dir));
        let want_messages = want["messages"][dir]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if messages.len() != want_messages.len() {
            err(format!(
                "{dir}: {} messages, want {} (got {:?})",
                messages.len(),
                want_messages.len(),
                messages
                    .iter()
                    .map(|m| format!(
                        "{}/{}{}",
                        s(m, "opcode").unwrap_or("?"),
                        m["len"],
                        if m["incomplete"] == Value::Bool(true) {
                            " incomplete"
                        } else {
                            ""
                        }
                    ))
                    .collect::<Vec<_>>()
            ));
        }
        let misaligned = messages.len() != want_messages.len();
        for (i, (m, w)) in messages.iter().zip(&want_messages).enumerate() {
            let before = errs.borrow().len();
            for key in [
                "opcode",
                "compressed",
                "frames",
                "incomplete",
                "undecodable",
                "wire_len",
            ] {
                if m[key] != w[key] {
                    err(format!(
                        "{dir} message {i}: {key} is {}, want {}",
                        m[key], w[key]
                    ));
                }
            }
            if m["truncated"] != Value::Bool(false) {
                err(format!("{dir} message {i}: truncated"));
            }
            match w["len"].as_u64() {
                Some(len) if m["len"].as_u64() != Some(len) => err(format!(
                    "{dir} message {i}: len is {}, want {len}",
                    m["len"]
                )),
                None if m["len"].as_u64() > w["len_max"].as_u64() => err(format!(
                    "{dir} message {i}: len {} is more than the whole message's {}",
                    m["len"], w["len_max"]
                )),
                _ => {}
            }
            // Inflated without its lost window: a partial one's unknown bytes differ.
            let partial = w["recovered"] == Value::Bool(true) && m["partial"] == Value::Bool(true);
            if let Some(want_sha) = w["sha256"].as_str().filter(|_| !partial) {
                match payload(m) {
                    Some(bytes) if hex(&sha256(&bytes)) == want_sha => {}
                    _ => err(format!(
                        "{dir} message {i} ({} {}{}): payload differs from what was sent",
                        w["opcode"],
                        w["len"],
                        if w["incomplete"] == Value::Bool(true) {
                            ", the part before the gap"
                        } else {
                            ""
                        }
                    )),
                }
            }
            let as_in_source =
                w["incomplete"] == Value::Bool(false) && w["undecodable"] == Value::Bool(false);
            if as_in_source
                && !partial
                && let Some(k) = w["index"].as_u64()
                && let Some(orig) = source_messages.get(k as usize)
                && normalized(m) != normalized(orig)
            {
                err(format!(
                    "{dir} message {i} differs from the original's message {k}: {m} vs {orig}"
                ));
            }
            if misaligned && errs.borrow().len() > before {
                break;
            }
        }
        let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
        let mut gaps = Vec::new();
        for a in of(got, "anomaly", Some(dir)) {
            let kind = s(a, "kind").unwrap_or("?").to_string();
            // Captures of clean implementations, damaged: what wsnoop reports is the capture's
            // doing, never the traffic's.
            if s(a, "cause") == Some("traffic") {
                err(format!("{dir}: {kind} is blamed on the traffic: {a}"));
            }
            if kind == "tcp_gap" {
                let detail = s(a, "detail").unwrap_or("");
                let n: String = detail.chars().take_while(char::is_ascii_digit).collect();
                gaps.push(n.parse::<u64>().unwrap_or(u64::MAX));
            }
            *kinds.entry(kind).or_default() += 1;
        }
        let want_kinds: BTreeMap<String, u64> = want["anomalies"][dir]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default();
        if kinds != want_kinds {
            let details: Vec<String> = of(got, "anomaly", Some(dir))
                .iter()
                .map(|a| {
                    format!(
                        "{}: {}",
                        s(a, "kind").unwrap_or("?"),
                        s(a, "detail").unwrap_or("")
                    )
                })
                .collect();
            err(format!(
                "{dir}: anomalies {kinds:?}, want {want_kinds:?} ({details:?})"
            ));
        }
        let want_gaps: Vec<u64> = want["gap_bytes"][dir]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        if kinds == want_kinds && gaps != want_gaps {
            err(format!(
                "{dir}: tcp_gap byte counts {gaps:?}, want {want_gaps:?}"
            ));
        }
    }
    let undirected: Vec<&Value> = of(got, "anomaly", None)
        .into_iter()
        .filter(|a| a["dir"].is_null())
        .collect();
    if !undirected.is_empty() {
        err(format!("anomalies without a direction: {undirected:?}"));
    }
    let closes = of(got, "close", None);
    let want_close = &want["close"];
    if closes.len() != 1 {
        err(format!("{} close events, want 1", closes.len()));
    } else {
        let c = closes[0];
        for key in ["initiator", "code", "reason", "replied", "end"] {
            if c[key] != want_close[key] {
                err(format!(
                    "close: {key} is {}, want {}",
                    c[key], want_close[key]
                ));
            }
        }
        if want_close["replied"] == Value::Bool(true) && c["reply_code"] != want_close["reply_code"]
        {
            err(format!(
                "close: reply_code is {}, want {}",
                c["reply_code"], want_close["reply_code"]
            ));
        }
    }
    let flows = of(got, "flow", None);
    if flows.len() != 1 {
        err(format!("{} flow events, want 1", flows.len()));
    } else if let Some(want_flow) = want["flow"].as_object() {
        for (key, value) in want_flow {
            if &flows[0][key] != value {
                err(format!("flow: {key} is {}, want {value}", flows[0][key]));
            }
        }
    }
    errors.extend(errs.into_inner());
}

/// The same events, per connection and per event type and direction, in order (times and
/// connection numbers aside).
fn compare_with_source(got: &[Value], source: &[Value], errors: &mut Vec<String>) {
    let got = by_connection(got);
    let source = by_connection(source);
    if got.keys().collect::<Vec<_>>() != source.keys().collect::<Vec<_>>() {
        errors.push(format!(
            "connections {:?}, the original has {:?}",
            got.keys().collect::<Vec<_>>(),
            source.keys().collect::<Vec<_>>()
        ));
    }
    for (client, events) in &source {
        let Some(mine) = got.get(client) else {
            continue;
        };
        for kind in ["handshake", "frame", "message", "close", "anomaly", "flow"] {
            for dir in [Some("c2s"), Some("s2c"), None] {
                let pick = |evs: &[&Value]| -> Vec<Value> {
                    evs.iter()
                        .filter(|e| {
                            s(e, "type") == Some(kind)
                                && match dir {
                                    Some(d) => s(e, "dir") == Some(d),
                                    None => e.get("dir").is_none_or(Value::is_null),
                                }
                        })
                        .map(|e| normalized(e))
                        .collect()
                };
                let (a, b) = (pick(mine), pick(events));
                if a != b {
                    let first = a
                        .iter()
                        .zip(&b)
                        .position(|(x, y)| x != y)
                        .unwrap_or(a.len().min(b.len()));
                    errors.push(format!(
                        "connection {client}: {kind} events {} differ from the original's: \
                         {} vs {} events, first difference at {first}: {:?} vs {:?}",
                        dir.unwrap_or("(no direction)"),
                        a.len(),
                        b.len(),
                        a.get(first),
                        b.get(first)
                    ));
                }
            }
        }
    }
}

/// Runs every expected run of one variant and asserts its outcome.
fn check_variant(name: &str) {
    let dir = mangle_dir();
    let capture = dir.join(format!("{name}.pcap"));
    let expected = load_json(&dir.join(format!("{name}.expected.json")));
    let source_path = fixtures_dir().join(s(&expected, "source").expect("source"));
    let same_as_source = expected["same_as_source"] == Value::Bool(true);
    let mut errors = Vec::new();
    for spec in expected["runs"].as_array().expect("runs") {
        let args: Vec<&str> = spec["args"]
            .as_array()
            .expect("args")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let label = format!("wsnoop -r {name}.pcap {}", args.join(" "));
        let source = run_wsnoop(&source_path, &[]);
        assert_eq!(
            source.code,
            Some(0),
            "the original {}: {}",
            source_path.display(),
            source.stderr
        );
        let out = run_wsnoop(&capture, &args);
        let want_code = spec["exit"].as_i64().unwrap_or(0) as i32;
        let mut errs = Vec::new();
        if out.code != Some(want_code) {
            errs.push(format!(
                "exit status {:?}, want {want_code}; stderr: {}",
                out.code, out.stderr
            ));
        }
        // A run that finds no WebSocket says so, in one line (and only then).
        let none_found = spec["connections"].as_array().is_some_and(Vec::is_empty)
            && out.stderr.trim().lines().count() == 1
            && out
                .stderr
                .starts_with("wsnoop: no WebSocket handshake or frame");
        if want_code == 0 {
            if !out.stderr.trim().is_empty() && !none_found {
                errs.push(format!("unexpected stderr: {}", out.stderr));
            }
        } else {
            let lines: Vec<&str> = out
                .stderr
                .lines()
                .filter(|l| !l.trim().is_empty())
                .collect();
            if lines.len() != 1 || !lines[0].contains(&capture.display().to_string()) {
                errs.push(format!(
                    "want a one-line error naming {}, got {:?}",
                    capture.display(),
                    out.stderr
                ));
            }
        }
        let want_conns = spec["connections"].as_array().expect("connections");
        let got = by_connection(&out.events);
        let source_events = by_connection(&source.events);
        let want_clients: Vec<&str> = want_conns.iter().filter_map(|c| s(c, "client")).collect();
        let got_clients: Vec<&str> = got.keys().map(String::as_str).collect();
        let mut sorted_want = want_clients.clone();
        sorted_want.sort_unstable();
        if got_clients != sorted_want {
            errs.push(format!(
                "events for connections {got_clients:?}, want {sorted_want:?}"
            ));
        }
        for want in want_conns {
            let client = s(want, "client").unwrap_or("?");
            let mine = got.get(client).cloned().unwrap_or_default();
            let orig = source_events.get(client).cloned().unwrap_or_default();
            check_connection(want, &mine, &orig, &mut errs);
        }
        if same_as_source {
            compare_with_source(&out.events, &source.events, &mut errs);
        }
        errors.extend(errs.into_iter().map(|e| format!("{label}: {e}")));
    }
    if !errors.is_empty() {
        let shown = errors.len().min(40);
        panic!(
            "{name} ({}): {} problem(s):\n  {}{}",
            s(&expected, "what").unwrap_or(""),
            errors.len(),
            errors[..shown].join("\n  "),
            if errors.len() > shown { "\n  ..." } else { "" }
        );
    }
}

macro_rules! variants {
    ($($test:ident => $name:literal,)*) => {
        $(
            #[test]
            fn $test() {
                check_variant($name);
            }
        )*

        /// Every variant in fixtures/mangle/ has a test above, and every test its files.
        #[test]
        fn every_variant_is_tested() {
            let mut tested: Vec<&str> = vec![$($name),*];
            tested.sort_unstable();
            let mut present: Vec<String> = common::captures_in(&mangle_dir())
                .iter()
                .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
                .collect();
            present.sort();
            assert_eq!(tested, present, "tests/hostile.rs lists the variants mangle.py writes");
            for name in &present {
                let json = mangle_dir().join(format!("{name}.expected.json"));
                assert!(json.is_file(), "{} is missing", json.display());
            }
        }
    };
}

variants! {
    // (a) reordered within windows of N, per connection and direction
    reorder_node_ws_w4 => "node-ws.reorder-w4",
    reorder_node_ws_causal_w4 => "node-ws.reorder-causal-w4",
    reorder_python_deflate_causal_w8 => "python-deflate.reorder-causal-w8",
    reorder_concurrent_causal_w6 => "concurrent.reorder-causal-w6",
    reorder_node_ws_swap_ack_before_request => "node-ws.swap-ack-before-request",
    reorder_node_ws_swap_ack_before_frame => "node-ws.swap-ack-before-frame",
    // (b) duplicated packets
    duplicate_node_ws => "node-ws.duplicate",
    duplicate_signalling_all => "signalling-8080.duplicate-all",
    // (c) dropped data packets
    drop_node_ws_c2s_mid_message => "node-ws.drop-c2s-mid-message",
    drop_node_ws_s2c_whole_frame => "node-ws.drop-s2c-whole-frame",
    drop_node_ws_s2c_fragment => "node-ws.drop-s2c-fragment",
    drop_python_basic_large => "python-basic.drop-large",
    drop_python_deflate_s2c_compressed => "python-deflate.drop-s2c-compressed",
    drop_signalling_c2s_offer => "signalling-8080.drop-c2s-offer",
    // (d) the handshake cut off
    midstream_node_ws => "node-ws.midstream",
    midstream_node_ws_midframe_c2s => "node-ws.midstream-midframe-c2s",
    midstream_node_ws_midframe_s2c => "node-ws.midstream-midframe-s2c",
    midstream_signalling => "signalling-8080.midstream",
    // (e) the file truncated inside a record
    truncated_in_record_data => "node-ws.truncated-in-data",
    truncated_in_record_header => "node-ws.truncated-in-header",
    // (f) snapshot length
    snaplen_node_ws => "node-ws.snaplen",
    // (g) IPv4 fragments, out of order
    ipfrag_concurrent => "concurrent.ipfrag",
    ipfrag_python_deflate => "python-deflate.ipfrag",
}

/// The committed variants are what mangle.py writes: remaking them changes nothing.
#[test]
fn mangle_script_reproduces_the_variants() {
    let out_dir = tempfile::tempdir().expect("temp dir");
    let status = Command::new("python3")
        .arg(mangle_dir().join("mangle.py"))
        .arg("--out")
        .arg(out_dir.path())
        .status()
        .expect("python3 runs fixtures/mangle/mangle.py");
    assert!(status.success(), "mangle.py failed");
    let made = std::fs::read_dir(out_dir.path()).expect("read temp dir");
    let mut count = 0;
    for entry in made {
        let path = entry.expect("entry").path();
        let name = path.file_name().unwrap();
        let committed = mangle_dir().join(name);
        let a = std::fs::read(&path).unwrap();
        let b = std::fs::read(&committed).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run fixtures/mangle/mangle.py)",
                committed.display()
            )
        });
        assert!(
            a == b,
            "{} is not what mangle.py writes now: run python3 fixtures/mangle/mangle.py",
            committed.display()
        );
        count += 1;
    }
    assert!(count > 0, "mangle.py wrote nothing");
}

// ---------------------------------------------------------------------------------------------
// Fuzzing (fuzz/): the targets' harness, replayed on stable Rust.

#[path = "../fuzz/harness.rs"]
mod harness;

fn fuzz_dir() -> PathBuf {
    manifest_dir().join("fuzz")
}

type Target = (&'static str, fn(&[u8]));

const TARGETS: [Target; 4] = [
    ("frame_decoder", harness::frame_decoder),
    ("handshake", harness::handshake),
    ("pipeline", |data| {
        harness::pipeline(data);
    }),
    ("pcap_file", |data| {
        harness::pcap_file(data);
    }),
];

/// Runs `f` on `data`; a panic becomes its message.
fn catch(f: fn(&[u8]), data: &[u8]) -> Result<(), String> {
    std::panic::catch_unwind(|| f(data)).map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic".into())
    })
}

/// Every input a fuzz target crashed on, kept in fuzz/regressions/TARGET/, must now pass
/// through that target's harness (the same code the fuzzer runs, without libFuzzer).
#[test]
fn fuzz_regressions() {
    let mut failures = Vec::new();
    let mut count = 0;
    for (name, f) in TARGETS {
        let dir = fuzz_dir().join("regressions").join(name);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries.map(|e| e.expect("entry").path()).collect();
        files.sort();
        for file in files
            .iter()
            .filter(|p| p.extension().is_none_or(|e| e != "md"))
        {
            let data = std::fs::read(file).expect("reading a regression input");
            count += 1;
            if let Err(msg) = catch(f, &data) {
                failures.push(format!("{name} {}: {msg}", file.display()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {count} fuzz regression input(s) still crash:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

/// The records of a classic little-endian pcap file, as the pipeline target's input format
/// (fuzz/harness.rs): a config byte, a port, then time step, length and bytes per packet.
fn pipeline_input(pcap: &[u8], config: u8, port: u16, limit: usize) -> Vec<u8> {
    let nano = pcap[..4] == [0x4d, 0x3c, 0xb2, 0xa1];
    let mut out = vec![config];
    out.extend_from_slice(&port.to_be_bytes());
    let mut pos = 24;
    let mut prev: Option<f64> = None;
    let word = |at: usize| u32::from_le_bytes(pcap[at..at + 4].try_into().unwrap());
    while pos + 16 <= pcap.len() && limit > 0 && out.len() < 1 << 20 {
        let t = f64::from(word(pos)) + f64::from(word(pos + 4)) / if nano { 1e9 } else { 1e6 };
        let caplen = word(pos + 8) as usize;
        let data = &pcap[pos + 16..(pos + 16 + caplen).min(pcap.len())];
        let step = prev.map_or(0, |p| ((t - p) * 100.0).clamp(0.0, 199.0) as u8);
        prev = Some(t);
        out.push(step);
        out.extend_from_slice(&(data.len().min(65535) as u16).to_be_bytes());
        out.extend_from_slice(&data[..data.len().min(65535)]);
        pos += 16 + caplen;
    }
    out
}

/// The harness keeps working on stable: each target on real inputs, every option profile of
/// the pipeline target on a real capture, and each mangled variant as a capture file.
#[test]
fn fuzz_harness_runs_on_real_inputs() {
    let node = std::fs::read(fixtures_dir().join("node-ws.pcap")).expect("node-ws.pcap");
    for config in [0x00u8, 0x08, 0x18, 0x28, 0x38, 0x48, 0x88, 0xc8, 0xf8] {
        let frames = harness::pipeline(&pipeline_input(&node, config, 0, usize::MAX));
        // node-ws.pcap has 31 frames; the tiny-limits profile (0x4_) stops at -c 20.
        assert!(frames >= 20, "config {config:#x}: {frames} frames");
        harness::pipeline(&pipeline_input(&node, config, 9002, usize::MAX));
    }
    let mut captures = common::captures_in(&fixtures_dir());
    captures.extend(common::captures_in(&mangle_dir()));
    for capture in captures {
        let data = std::fs::read(&capture).expect("capture");
        if data.len() <= 1 << 17 {
            let packets = harness::pcap_file(&data);
            assert!(packets > 0, "{}: no packet read", capture.display());
        }
    }
    let request = b"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let response = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    for control in 0..=255u8 {
        let mut input = vec![control];
        input.extend_from_slice(request);
        input.extend_from_slice(response);
        harness::handshake(&input);
    }
    let mut frames = vec![0u8];
    frames.extend_from_slice(&[
        0x81,
        0x85,
        1,
        2,
        3,
        4,
        b'h' ^ 1,
        b'e' ^ 2,
        b'l' ^ 3,
        b'l' ^ 4,
        b'o' ^ 1,
    ]);
    frames.extend_from_slice(&[0x02, 0x7e, 0x01, 0x00]);
    frames.extend(std::iter::repeat_n(7u8, 256));
    frames.extend_from_slice(&[0x80, 0x03, b'a', b'b', b'c', 0x88, 0x02, 0x03, 0xe8]);
    for control in 0..=255u8 {
        frames[0] = control;
        harness::frame_decoder(&frames);
    }
}

/// SHA-256, from RustCrypto's sha2 (the family of the sha1 crate wsnoop uses).
fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}
