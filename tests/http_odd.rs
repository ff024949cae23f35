//! Odd and abandoned HTTP handshakes (fixtures/http-odd/): sessions between raw-socket peers
//! whose heads httparse refuses but a lenient endpoint (and tshark) accepts, a head over
//! wsnoop's 64 KiB limit, a 101 lost from the capture, a 101 that does not say websocket, a
//! refused decoy upgrade before the real one on the same connection.
//!
//! Each capture's NAME.expected.json comes from what the peers wrote on the wire (their logs)
//! and from the case (which oddity its head has), never from wsnoop. Checked here:
//! - the frames wsnoop prints equal the peers' frames, direction by direction, and where tshark
//!   sees the 101, tshark's frames too;
//! - exactly the expected anomalies, with the words their details must hold (which header,
//!   which byte, which reason);
//! - the handshakes, their URI (invalid UTF-8 as U+FFFD), status and User-Agent as sent;
//! - the end-of-run count of connections given up by the HTTP layer, per reason;
//! - text output carries no raw control byte; `diagnose` names the given-up connections;
//! - the frames of a connection picked up after its HTTP was given up are `"midstream"`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use serde_json::Value;

use common::{fixtures_dir, parse_json_lines, wsnoop_bin};

fn odd_dir() -> PathBuf {
    fixtures_dir().join("http-odd")
}

fn cases() -> Vec<(PathBuf, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(odd_dir()).expect("fixtures/http-odd") {
        let path = entry.expect("an entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".expected.json") {
            let want: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            out.push((odd_dir().join(format!("{stem}.pcap")), want));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(out.len(), 8, "the eight captures of make.sh");
    out
}

struct Run {
    stdout: String,
    stderr: String,
}

fn wsnoop(args: &[&str], capture: &Path) -> Run {
    let out = Command::new(wsnoop_bin())
        .args(args)
        .arg("-r")
        .arg(capture)
        .output()
        .expect("wsnoop runs");
    Run {
        stdout: String::from_utf8(out.stdout).expect("UTF-8 output"),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn opcode_number(name: &str) -> u64 {
    match name {
        "text" => 1,
        "binary" => 2,
        "close" => 8,
        "ping" => 9,
        "pong" => 10,
        other => panic!("unexpected opcode {other}"),
    }
}

fn payload(event: &Value) -> Vec<u8> {
    if let Some(text) = event["text"].as_str() {
        return text.as_bytes().to_vec();
    }
    base64::engine::general_purpose::STANDARD
        .decode(event["data"].as_str().expect("text or data"))
        .expect("base64")
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// (opcode, payload) per direction.
type Frames = BTreeMap<String, Vec<(u64, Vec<u8>)>>;

fn wanted_frames(want: &Value) -> Frames {
    let mut out = Frames::new();
    for f in want["frames"].as_array().expect("frames") {
        out.entry(f["dir"].as_str().unwrap().to_string())
            .or_default()
            .push((
                f["opcode"].as_u64().unwrap(),
                hex_decode(f["hex"].as_str().unwrap()),
            ));
    }
    out
}

fn wsnoop_frames(events: &[Value]) -> Frames {
    let mut out = Frames::new();
    for e in events.iter().filter(|e| e["type"] == "frame") {
        out.entry(e["dir"].as_str().unwrap().to_string())
            .or_default()
            .push((opcode_number(e["opcode"].as_str().unwrap()), payload(e)));
    }
    out
}

/// tshark's frames, as opcode and payload: text as its text, close as code and reason.
fn tshark_frames(capture: &Path, port: u64) -> Frames {
    let out = Command::new("tshark")
        .env("WIRESHARK_CONFIG_DIR", tempfile::tempdir().unwrap().path())
        .args(["-r"])
        .arg(capture)
        .args([
            "-d",
            &format!("tcp.port=={port},http"),
            "-Y",
            "websocket",
            "-T",
            "fields",
            "-E",
            "occurrence=a",
            "-e",
            "tcp.srcport",
            "-e",
            "websocket.opcode",
            "-e",
            "websocket.payload.text",
            "-e",
            "websocket.payload.close.status_code",
            "-e",
            "websocket.payload.close.reason",
        ])
        .output()
        .expect("tshark runs (it is installed by .ci/setup)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut frames = Frames::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let dir = if f[0] == port.to_string() {
            "s2c"
        } else {
            "c2s"
        };
        // One frame per packet here: each peer writes each frame on its own.
        let opcode: u64 = f[1].parse().expect("one opcode");
        let bytes = match opcode {
            8 => {
                let code: u16 = f[3].parse().expect("a close code");
                [&code.to_be_bytes()[..], f[4].as_bytes()].concat()
            }
            _ => f[2].as_bytes().to_vec(),
        };
        frames
            .entry(dir.to_string())
            .or_default()
            .push((opcode, bytes));
    }
    frames
}

fn check(capture: &Path, want: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    let run = wsnoop(&["--json", "--max-payload", "1000000"], capture);
    let events = parse_json_lines(&run.stdout, &capture.display().to_string());

    let sent = wanted_frames(want);
    let seen = wsnoop_frames(&events);
    if seen != sent {
        errs.push(format!(
            "frames differ from what the peers sent: {} c2s / {} s2c seen, {} / {} sent",
            seen.get("c2s").map_or(0, Vec::len),
            seen.get("s2c").map_or(0, Vec::len),
            sent.get("c2s").map_or(0, Vec::len),
            sent.get("s2c").map_or(0, Vec::len),
        ));
    }
    let port = want["port"].as_u64().unwrap();
    let tshark = tshark_frames(capture, port);
    if want["tshark_decodes"] == true {
        if tshark != sent {
            errs.push("tshark's frames differ from what the peers sent".into());
        }
        if tshark != seen {
            errs.push("wsnoop's frames differ from tshark's".into());
        }
    } else if !tshark.is_empty() {
        errs.push("tshark decodes frames the case says it cannot".into());
    }

    let mut got: Vec<(String, String, String)> = events
        .iter()
        .filter(|e| e["type"] == "anomaly")
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["dir"].as_str().unwrap_or("-").to_string(),
                e["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    let mut wanted: Vec<(String, String, Vec<String>)> = want["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a[0].as_str().unwrap().to_string(),
                a[1].as_str().unwrap().to_string(),
                a[2].as_array()
                    .unwrap()
                    .iter()
                    .map(|w| w.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect();
    wanted.sort();
    let kinds = |v: &[(String, String, String)]| -> Vec<(String, String)> {
        v.iter().map(|(k, d, _)| (k.clone(), d.clone())).collect()
    };
    let wanted_kinds: Vec<(String, String)> = wanted
        .iter()
        .map(|(k, d, _)| (k.clone(), d.clone()))
        .collect();
    if kinds(&got) != wanted_kinds {
        errs.push(format!("anomalies {got:?}, want {wanted_kinds:?}"));
    } else {
        for ((_, _, detail), (kind, _, words)) in got.iter().zip(&wanted) {
            for w in words {
                if !detail.contains(w.as_str()) {
                    errs.push(format!("{kind}: {detail:?} does not say {w:?}"));
                }
            }
        }
    }

    // A connection picked up after its HTTP was given up is a mid-stream one from then on.
    let picked_up = !want["given_up"].as_object().unwrap().is_empty();
    let midstream_frames = events
        .iter()
        .filter(|e| e["type"] == "frame" && e["midstream"] == true)
        .count();
    let all_frames = events.iter().filter(|e| e["type"] == "frame").count();
    if midstream_frames != if picked_up { all_frames } else { 0 } {
        errs.push(format!(
            "{midstream_frames} of {all_frames} frames are midstream, picked up: {picked_up}"
        ));
    }

    let handshakes: Vec<Value> = events
        .iter()
        .filter(|e| e["type"] == "handshake")
        .map(|h| serde_json::json!([h["uri"], h["status"], h["upgraded"]]))
        .collect();
    if handshakes.as_slice() != want["handshakes"].as_array().unwrap().as_slice() {
        errs.push(format!(
            "handshakes {handshakes:?}, want {}",
            want["handshakes"]
        ));
    }
    for h in events.iter().filter(|e| e["type"] == "handshake") {
        if h["user_agent"] != want["user_agent"] {
            errs.push(format!(
                "user_agent {}, want {}",
                h["user_agent"], want["user_agent"]
            ));
        }
    }

    // The end-of-run counts (-q prints them): one line for the connections given up, if any.
    let given_up = want["given_up"].as_object().unwrap();
    let quiet = wsnoop(&["-q"], capture);
    let line = quiet
        .stderr
        .lines()
        .find(|l| l.contains("given up by the HTTP layer"));
    match (line, given_up.is_empty()) {
        (None, true) => {}
        (Some(l), true) => errs.push(format!("nothing was given up, yet: {l}")),
        (None, false) => errs.push(format!("no given-up count on stderr: {}", quiet.stderr)),
        (Some(l), false) => {
            let total: u64 = given_up.values().map(|v| v.as_u64().unwrap()).sum();
            let reasons: Vec<String> = given_up.iter().map(|(r, n)| format!("{r} {n}")).collect();
            let want_line = format!(
                "{total} connections given up by the HTTP layer ({}), {total} of them reported as http_abandoned",
                reasons.join(", ")
            );
            if l != want_line {
                errs.push(format!("stderr says {l:?}, want {want_line:?}"));
            }
        }
    }

    // Text output: the odd bytes escaped, the frames there.
    let text = wsnoop(&[], capture);
    if let Some(b) = text
        .stdout
        .bytes()
        .find(|&b| (b < 0x20 && b != b'\n') || b == 0x7f)
    {
        errs.push(format!("text output holds the raw byte 0x{b:02x}"));
    }
    let texts = text.stdout.matches(" text fin ").count();
    let want_texts = want["frames"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["opcode"] == 1)
        .count();
    if texts != want_texts {
        errs.push(format!(
            "text output shows {texts} text frames, want {want_texts}"
        ));
    }

    // diagnose names the connections the HTTP layer gave up on, and why.
    let diag = wsnoop(&["diagnose", "--json"], capture);
    let findings = parse_json_lines(&diag.stdout, "diagnose");
    let abandoned: Vec<&Value> = findings
        .iter()
        .filter(|f| f["kind"] == "http_abandoned")
        .collect();
    match (abandoned.as_slice(), given_up.keys().next()) {
        ([], None) => {}
        ([f], Some(reason)) => {
            let detail = f["detail"].as_str().unwrap();
            if f["count"] != 1 || !detail.contains(&format!("{reason} 1")) {
                errs.push(format!("diagnose finding {f}, want 1 connection, {reason}"));
            }
        }
        (found, _) => errs.push(format!("diagnose http_abandoned findings: {found:?}")),
    }
    errs
}

#[test]
fn odd_heads_are_decoded_and_abandoned_ones_reported() {
    let mut report = String::new();
    for (capture, want) in cases() {
        let errs = check(&capture, &want);
        eprintln!(
            "{}: {}",
            capture.display(),
            if errs.is_empty() { "ok" } else { "FAILED" }
        );
        for e in errs {
            report.push_str(&format!("\n{}: {e}", capture.display()));
        }
    }
    assert!(report.is_empty(), "{report}");
}

/// The captures are what make.sh's peers logged: each head in the capture byte for byte.
#[test]
fn the_heads_in_the_captures_are_the_logged_ones() {
    for (capture, want) in cases() {
        let bytes = std::fs::read(&capture).unwrap();
        for head in want["heads"].as_array().unwrap() {
            let dir = head["dir"].as_str().unwrap();
            // A head longer than one segment is not in one piece in the file.
            let (Some(hex), true) = (head["hex"].as_str(), head["len"].as_u64() < Some(1400))
            else {
                continue;
            };
            let head = hex_decode(hex);
            let within = bytes.windows(head.len()).any(|w| w == head.as_slice());
            // gap-101 lost its 101 on purpose.
            let lost = want["case"] == "gap-101" && dir == "s2c";
            assert_eq!(within, !lost, "{}: the {dir} head", capture.display());
        }
    }
}

/// Nothing else commits the new kinds: not the real captures, nor the crafted violations, the
/// mangled captures (lost, reordered, cut packets), the diagnose scenarios (plain web servers,
/// TLS, refused upgrades) or the peer corpus. All of them went through the HTTP layer as
/// before; the few connections it gives up on there (TLS, another protocol) are only counted.
#[test]
fn no_other_capture_commits_the_new_kinds() {
    let mut captures = Vec::new();
    for sub in ["", "crafted", "mangle", "diagnose"] {
        captures.extend(common::captures_in(&fixtures_dir().join(sub)));
    }
    captures.extend(common::captures_in(
        &common::corpus_dir().join("zeek/traces"),
    ));
    assert!(captures.len() >= 90, "{} captures", captures.len());
    let mut report = String::new();
    for capture in &captures {
        // Truncated captures end with an error, after their events.
        let run = wsnoop(&["--json"], capture);
        for e in parse_json_lines(&run.stdout, &capture.display().to_string()) {
            if e["type"] == "anomaly"
                && matches!(
                    e["kind"].as_str(),
                    Some("malformed_http" | "http_abandoned")
                )
            {
                report.push_str(&format!("\n{}: {e}", capture.display()));
            }
        }
    }
    assert!(report.is_empty(), "{report}");
}
