//! Connections already open when the capture starts (issue 14): real captures cut after their
//! handshakes, decoded with no hint, checked against what the sending programs wrote down
//! (NAME.expected.json), never against wsnoop's own output.
//!
//! A message is reported exact only if it equals what was sent; a partial one's known bytes
//! must equal the sent ones.

mod common;

use std::path::Path;

use common::{fixtures_dir, run_wsnoop_json};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The records of a classic pcap file: its global header and each record with its header.
fn pcap_records(bytes: &[u8]) -> (&[u8], Vec<&[u8]>) {
    let (head, mut rest) = bytes.split_at(24);
    let little = head[..4] == [0x4d, 0x3c, 0xb2, 0xa1] || head[..4] == [0xd4, 0xc3, 0xb2, 0xa1];
    assert!(little, "a little-endian pcap");
    let mut records = Vec::new();
    while rest.len() >= 16 {
        let caplen = u32::from_le_bytes(rest[8..12].try_into().unwrap()) as usize;
        let (record, later) = rest.split_at(16 + caplen);
        records.push(record);
        rest = later;
    }
    (head, records)
}

fn find(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The capture from the `skip`th packet after the 101 response on: as if it had been started
/// while the session ran.
fn cut_after_handshake(src: &Path, skip: usize, out: &Path) -> bool {
    let bytes = std::fs::read(src).unwrap();
    let (head, records) = pcap_records(&bytes);
    let at = records
        .iter()
        .position(|r| find(r, b"HTTP/1.1 101"))
        .expect("a 101 response");
    let from = at + 1 + skip;
    if from >= records.len() {
        return false;
    }
    let mut cut = head.to_vec();
    for r in &records[from..] {
        cut.extend_from_slice(r);
    }
    std::fs::write(out, cut).unwrap();
    true
}

#[derive(Default, Debug)]
struct Tally {
    reported: usize,
    exact: usize,
    partial: usize,
    undecodable: usize,
}

/// Checks one cut capture's messages against the sender's sidecar; returns the tally.
fn check_cut(capture: &Path, sidecar: &Value, what: &str) -> Tally {
    let events = run_wsnoop_json(capture, &["--max-payload", "4000000"]);
    let sent = sidecar["connections"][0]["messages"].as_array().unwrap();
    let mut tally = Tally::default();
    for dir in ["c2s", "s2c"] {
        let want: Vec<&Value> = sent.iter().filter(|m| m["dir"] == dir).collect();
        let got: Vec<&Value> = events
            .iter()
            .filter(|e| e["type"] == "message" && e["dir"] == dir)
            .collect();
        assert!(
            got.len() <= want.len(),
            "{what} {dir}: more messages than were sent"
        );
        // The capture starts after some messages: what is reported is the sent ones' tail.
        let skipped = want.len() - got.len();
        for (i, (g, w)) in got.iter().zip(&want[skipped..]).enumerate() {
            let at = format!("{what} {dir} message {} (sent #{})", i, i + skipped);
            assert_eq!(g["opcode"], w["opcode"], "{at}");
            assert_eq!(g["incomplete"], false, "{at}");
            tally.reported += 1;
            if g["undecodable"] == true {
                tally.undecodable += 1;
                continue;
            }
            assert_eq!(g["len"], w["len"], "{at}: length");
            let partial = g["partial"] == true;
            if partial {
                tally.partial += 1;
                check_partial(g, w, &at);
                continue;
            }
            tally.exact += 1;
            if let Some(text) = w["text"].as_str() {
                assert_eq!(g["text"].as_str(), Some(text), "{at}: called exact");
            } else if let Some(sha) = w["sha256"].as_str() {
                assert_eq!(sha256_of(g, &at), sha, "{at}: called exact");
            } else if let Some(hex) = w["hex"].as_str() {
                let bytes = data_of(g, &at);
                let got_hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                assert_eq!(got_hex, hex, "{at}: called exact");
            }
        }
    }
    tally
}

fn data_of(g: &Value, at: &str) -> Vec<u8> {
    use base64::Engine;
    match (g["text"].as_str(), g["data"].as_str()) {
        (Some(t), _) => t.as_bytes().to_vec(),
        (None, Some(d)) => base64::engine::general_purpose::STANDARD
            .decode(d)
            .unwrap_or_else(|e| panic!("{at}: base64: {e}")),
        _ => panic!("{at}: no payload"),
    }
}

fn sha256_of(g: &Value, at: &str) -> String {
    Sha256::digest(data_of(g, at))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A partial message: each known byte is the sent one. Text shows U+FFFD per unknown byte, so
/// for ASCII text the characters line up with the sent bytes.
fn check_partial(g: &Value, w: &Value, at: &str) {
    let unknown = g["unknown_bytes"].as_u64().unwrap();
    assert!(unknown > 0, "{at}: partial with no unknown bytes");
    if let (Some(got), Some(sent)) = (g["text"].as_str(), w["text"].as_str()) {
        if !sent.is_ascii() {
            return;
        }
        assert_eq!(
            got.chars().count(),
            sent.len(),
            "{at}: one character per byte"
        );
        let mut replaced = 0;
        for (i, (c, s)) in got.chars().zip(sent.chars()).enumerate() {
            if c == '\u{FFFD}' {
                replaced += 1;
            } else {
                assert_eq!(c, s, "{at}: known byte {i}");
            }
        }
        assert_eq!(replaced, unknown, "{at}: U+FFFD for each unknown byte");
    }
}

/// Cuts `name`.pcap after its handshake at several points; returns the summed tally.
fn cuts(name: &str, skips: &[usize]) -> Tally {
    cuts_in(&fixtures_dir(), name, skips)
}

fn cuts_in(dir: &Path, name: &str, skips: &[usize]) -> Tally {
    let sidecar: Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.expected.json"))).unwrap())
            .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut total = Tally::default();
    for &skip in skips {
        let out = tmp.path().join(format!("{name}-{skip}.pcap"));
        if !cut_after_handshake(&dir.join(format!("{name}.pcap")), skip, &out) {
            continue;
        }
        let t = check_cut(&out, &sidecar, &format!("{name} cut {skip}"));
        eprintln!("{name} cut {skip}: {t:?}");
        total.reported += t.reported;
        total.exact += t.exact;
        total.partial += t.partial;
        total.undecodable += t.undecodable;
        let sent = sidecar["connections"][0]["messages"]
            .as_array()
            .unwrap()
            .len();
        // Every message sent after the cut's first captured bytes is found: at most the one
        // each way that the cut fell inside is missing. Which messages came before the cut is
        // not known here, so this is checked where the cut is after the handshake.
        if skip == 0 {
            assert!(
                t.reported + 2 >= sent,
                "{name} cut {skip}: {} of {sent}",
                t.reported
            );
        }
    }
    eprintln!("{name}: {total:?}");
    total
}

#[test]
fn python_deflate_12_bit_windows_cut_mid_stream() {
    let t = cuts("python-deflate", &[0, 2, 5, 9, 14, 20, 30, 45]);
    assert!(t.reported > 0);
    assert_eq!(t.undecodable, 0);
}

#[test]
fn chromium_deflate_cut_mid_stream() {
    let t = cuts("chromium-deflate", &[0, 2, 5, 9, 14, 20, 30]);
    assert!(t.reported > 0);
    assert_eq!(t.undecodable, 0);
}

#[test]
fn node_deflate_without_takeover_cut_mid_stream() {
    // Each message stands alone: after the cut every one is exact.
    let t = cuts("node-deflate-nocontext", &[0, 2, 5, 9]);
    assert!(t.reported > 0);
    assert_eq!(t.exact, t.reported);
}

fn midstream_dir() -> std::path::PathBuf {
    fixtures_dir().join("midstream")
}

/// A long signalling session (1100 JSON messages each way, 15-bit windows, context takeover)
/// cut at several points.
#[test]
fn long_deflate_session_cut_mid_stream() {
    let t = cuts_in(
        &midstream_dir(),
        "long-deflate",
        &[0, 10, 100, 500, 1200, 2000],
    );
    assert_eq!(t.undecodable, 0);
    assert!(t.reported > 3000, "{t:?}");
    eprintln!(
        "long-deflate: {:.1}% of the messages after the cuts exact",
        100.0 * t.exact as f64 / t.reported as f64
    );
}

/// Captures that begin inside a 1 MiB message (the snapshot spans packets 41 to ~300 after
/// the handshake): the probe locks on at the frames after it.
#[test]
fn capture_starting_inside_a_1_mib_message() {
    let t = cuts_in(&midstream_dir(), "big-message", &[90, 150, 250]);
    assert_eq!(t.undecodable, 0);
    // 300 messages each way follow the snapshot.
    assert!(t.reported >= 3 * 600, "{t:?}");
}

/// Rewrites `src` with the 101 response moved before its request (as a capture of two
/// interfaces, or a reordered one, shows it), or with the request dropped.
fn response_first(src: &Path, out: &Path, drop_request: bool) {
    let bytes = std::fs::read(src).unwrap();
    let (head, mut records) = pcap_records(&bytes);
    let request = records.iter().position(|r| find(r, b"GET /")).unwrap();
    let response = records
        .iter()
        .position(|r| find(r, b"HTTP/1.1 101"))
        .unwrap();
    assert!(request < response);
    let moved = records.remove(response);
    records.insert(request, moved);
    if drop_request {
        records.remove(request + 1);
    }
    let mut cut = head.to_vec();
    for r in &records {
        cut.extend_from_slice(r);
    }
    std::fs::write(out, cut).unwrap();
}

/// A 101 captured before its request still pairs with it into the handshake, and the request
/// is never taken for frames; every message is then exact.
#[test]
fn a_response_captured_before_its_request_pairs_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["python-basic", "python-deflate", "chromium-deflate"] {
        let dir = fixtures_dir();
        let sidecar: Value = serde_json::from_slice(
            &std::fs::read(dir.join(format!("{name}.expected.json"))).unwrap(),
        )
        .unwrap();
        let out = tmp.path().join(format!("{name}-swapped.pcap"));
        response_first(&dir.join(format!("{name}.pcap")), &out, false);
        let events = run_wsnoop_json(&out, &[]);
        let handshakes: Vec<&Value> = events.iter().filter(|e| e["type"] == "handshake").collect();
        assert_eq!(handshakes.len(), 1, "{name}");
        assert_eq!(
            handshakes[0]["uri"], sidecar["connections"][0]["path"],
            "{name}"
        );
        let anomalies: Vec<&Value> = events.iter().filter(|e| e["type"] == "anomaly").collect();
        assert!(anomalies.is_empty(), "{name}: {anomalies:?}");
        let t = check_cut(&out, &sidecar, name);
        let sent = sidecar["connections"][0]["messages"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!((t.exact, t.reported), (sent, sent), "{name}");
    }
}

/// A 101 whose request was not captured at all: the client's first bytes are frames, decoded
/// as such after the server's.
#[test]
fn a_response_without_its_request_is_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fixtures_dir();
    let name = "python-basic";
    let sidecar: Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.expected.json"))).unwrap())
            .unwrap();
    let out = tmp.path().join("no-request.pcap");
    response_first(&dir.join(format!("{name}.pcap")), &out, true);
    let events = run_wsnoop_json(&out, &[]);
    let bogus: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "anomaly" && e["cause"] == "traffic")
        .collect();
    assert!(bogus.is_empty(), "{bogus:?}");
    let t = check_cut(&out, &sidecar, "python-basic without its request");
    let sent = sidecar["connections"][0]["messages"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(t.exact, sent);
}
