//! Captures cut by a snapshot length: one real WebSocket session (python websockets,
//! permessage-deflate with context takeover) captured at once by `tcpdump -s 200`, `-s 600`
//! and `-s 0` (fixtures/snaplen/make.sh). What must hold, each against an independent source:
//! - `-s 0`: every message equals what the programs sent (sent.json, written by session.py),
//!   every frame equals tshark's, no anomaly, `diagnose` says healthy;
//! - `-s 200` and `-s 600`: every frame wsnoop reports is a real one (equal to tshark's frame of
//!   the `-s 0` capture, in order), every frame tshark decodes from the cut capture that is real
//!   is reported too (for the connections whose handshake was captured whole); the cut bytes,
//!   per connection and direction, are those the pcap records say (`len - caplen`, read here
//!   from the files), in the flow event and the end-of-run counts; `truncated_capture` names
//!   every cut connection with the snapshot length the file header states; no `tcp_gap`, no
//!   anomaly blamed on the traffic; `diagnose` reports `truncated_capture`, and neither
//!   `protocol_violations` nor `capture_loss` (whose advice is about dropped packets).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};

const SERVER_PORT: u16 = 9011;

fn dir() -> PathBuf {
    common::fixtures_dir().join("snaplen")
}

// ---------------------------------------------------------------------------------------------
// The pcap records, read here: what the capture says it cut

/// One record of an Ethernet/IPv4/TCP capture.
struct Record {
    caplen: u64,
    len: u64,
    src_port: u16,
    dst_port: u16,
}

struct Pcap {
    snaplen: u32,
    records: Vec<Record>,
}

fn read_pcap(path: &Path) -> Pcap {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    assert!(
        matches!(u32_at(0), 0xa1b2_3c4d | 0xa1b2_c3d4),
        "{}: not a little-endian pcap",
        path.display()
    );
    assert_eq!(u32_at(20), 1, "{}: not Ethernet", path.display());
    let snaplen = u32_at(16);
    let mut records = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let caplen = u32_at(at + 8) as usize;
        let len = u32_at(at + 12);
        let data = &bytes[at + 16..at + 16 + caplen];
        at += 16 + caplen;
        assert_eq!(&data[12..14], [0x08, 0x00], "not IPv4");
        let ihl = usize::from(data[14] & 0x0f) * 4;
        let tcp = &data[14 + ihl..];
        records.push(Record {
            caplen: caplen as u64,
            len: u64::from(len),
            src_port: u16::from_be_bytes([tcp[0], tcp[1]]),
            dst_port: u16::from_be_bytes([tcp[2], tcp[3]]),
        });
    }
    Pcap { snaplen, records }
}

/// (client port, "c2s" | "s2c")
type DirKey = (u16, &'static str);

fn dir_of(r: &Record) -> DirKey {
    if r.dst_port == SERVER_PORT {
        (r.src_port, "c2s")
    } else {
        (r.dst_port, "s2c")
    }
}

/// Per direction: the bytes cut in all, and in the first packet cut.
fn cuts(pcap: &Pcap) -> BTreeMap<DirKey, (u64, u64)> {
    let mut out: BTreeMap<DirKey, (u64, u64)> = BTreeMap::new();
    for r in pcap.records.iter().filter(|r| r.len > r.caplen) {
        let e = out.entry(dir_of(r)).or_insert((0, r.len - r.caplen));
        e.0 += r.len - r.caplen;
    }
    out
}

// ---------------------------------------------------------------------------------------------
// wsnoop's and tshark's frames

#[derive(Debug, Clone, PartialEq, Eq)]
struct Frame {
    fin: bool,
    rsv: u64,
    opcode: u64,
    mask: Option<String>,
    len: u64,
    payload: Vec<u8>,
}

struct Run {
    events: Vec<Value>,
}

/// `wsnoop -q`'s counts at the end (stderr), with `--threads`.
fn counts(capture: &Path, threads: &str) -> String {
    let out = Command::new(common::wsnoop_bin())
        .arg("-r")
        .arg(capture)
        .args(["-q", "--threads", threads])
        .output()
        .expect("wsnoop runs");
    assert!(out.status.success(), "wsnoop -r {} -q", capture.display());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn wsnoop(capture: &Path) -> Run {
    let out = Command::new(common::wsnoop_bin())
        .arg("-r")
        .arg(capture)
        .args(["--json", "--max-payload", "1000000"])
        .output()
        .expect("wsnoop runs");
    assert!(out.status.success(), "wsnoop -r {}", capture.display());
    let stdout = String::from_utf8(out.stdout).expect("UTF-8");
    Run {
        events: common::parse_json_lines(&stdout, "wsnoop --json"),
    }
}

fn client_port(e: &Value) -> u16 {
    let client = e["client"].as_str().expect("client");
    client.rsplit(':').next().unwrap().parse().expect("a port")
}

fn dir_key(e: &Value) -> DirKey {
    let dir = match e["dir"].as_str() {
        Some("c2s") => "c2s",
        Some("s2c") => "s2c",
        other => panic!("dir {other:?}"),
    };
    (client_port(e), dir)
}

fn payload_of(e: &Value) -> Vec<u8> {
    match (e["text"].as_str(), e["data"].as_str()) {
        (Some(text), _) => text.as_bytes().to_vec(),
        (None, Some(data)) => base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("base64"),
        _ => Vec::new(),
    }
}

fn wsnoop_frames(events: &[Value]) -> BTreeMap<DirKey, Vec<Frame>> {
    let mut out: BTreeMap<DirKey, Vec<Frame>> = BTreeMap::new();
    for e in events.iter().filter(|e| e["type"] == "frame") {
        let opcode = match e["opcode"].as_str().unwrap() {
            "continuation" => 0,
            "text" => 1,
            "binary" => 2,
            "close" => 8,
            "ping" => 9,
            "pong" => 10,
            other => other
                .strip_prefix("reserved-")
                .and_then(|n| n.parse().ok())
                .expect("an opcode"),
        };
        assert_eq!(e["truncated"], false);
        out.entry(dir_key(e)).or_default().push(Frame {
            fin: e["fin"].as_bool().unwrap(),
            rsv: e["rsv"].as_u64().unwrap(),
            opcode,
            mask: e["mask"].as_str().map(str::to_string),
            len: e["len"].as_u64().unwrap(),
            payload: payload_of(e),
        });
    }
    out
}

/// tshark's frames, with the number of the packet each is shown in.
fn tshark_frames(capture: &Path) -> BTreeMap<DirKey, Vec<(u64, Frame)>> {
    let config = tempfile::tempdir().expect("a temporary directory");
    let out = Command::new("tshark")
        .env("WIRESHARK_CONFIG_DIR", config.path())
        .arg("-r")
        .arg(capture)
        .args(["-o", "tcp.reassemble_out_of_order:TRUE", "-d"])
        .arg(format!("tcp.port=={SERVER_PORT},http"))
        .args(["-Y", "websocket", "-T", "json", "-x", "--no-duplicate-keys"])
        .output()
        .expect("tshark runs");
    assert!(out.status.success(), "tshark -r {}", capture.display());
    let packets: Vec<Value> = serde_json::from_slice(&out.stdout).expect("tshark's JSON");
    let mut frames: BTreeMap<DirKey, Vec<(u64, Frame)>> = BTreeMap::new();
    for p in &packets {
        let layers = &p["_source"]["layers"];
        let number: u64 = layers["frame"]["frame.number"]
            .as_str()
            .and_then(|n| n.parse().ok())
            .expect("frame.number");
        let port = |name: &str| -> u16 {
            layers["tcp"][name]
                .as_str()
                .and_then(|n| n.parse().ok())
                .expect("a port")
        };
        let (src, dst) = (port("tcp.srcport"), port("tcp.dstport"));
        let key = if dst == SERVER_PORT {
            (src, "c2s")
        } else {
            (dst, "s2c")
        };
        let ws = &layers["websocket"];
        let list: Vec<&Value> = match ws {
            Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        for w in list {
            // A frame tshark makes of a cut packet may lack fields: it is no frame.
            if let Some(frame) = tshark_frame(w) {
                frames.entry(key).or_default().push((number, frame));
            }
        }
    }
    frames
}

fn tshark_frame(w: &Value) -> Option<Frame> {
    let field = |name: &str| w.get(name).and_then(Value::as_str);
    let int = |name: &str| -> Option<u64> {
        let s = field(name)?;
        match s.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => s.parse().ok(),
        }
    };
    let masked = int("websocket.mask")? == 1;
    let len = int("websocket.payload_length_ext_16")
        .or_else(|| int("websocket.payload_length_ext_64"))
        .or_else(|| int("websocket.payload_length"))?;
    let payload = match w.get("websocket.payload_raw") {
        None => Vec::new(),
        Some(raw) => decode_hex(raw.get(0)?.as_str()?)?,
    };
    Some(Frame {
        fin: int("websocket.fin")? == 1,
        rsv: int("websocket.rsv")?,
        opcode: int("websocket.opcode")?,
        mask: if masked {
            Some(field("websocket.masking_key")?.replace(':', ""))
        } else {
            None
        },
        len,
        payload,
    })
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Whether `part` is a subsequence of `whole`.
fn is_subsequence(part: &[Frame], whole: &[Frame]) -> bool {
    let mut rest = whole.iter();
    part.iter().all(|f| rest.any(|w| w == f))
}

fn describe(f: &Frame) -> String {
    format!(
        "opcode {} fin {} rsv {} len {} mask {:?} ({} payload bytes)",
        f.opcode,
        f.fin,
        f.rsv,
        f.len,
        f.mask,
        f.payload.len()
    )
}

// ---------------------------------------------------------------------------------------------
// The tests

fn sent() -> Value {
    let text = std::fs::read_to_string(dir().join("sent.json")).expect("sent.json");
    serde_json::from_str(&text).expect("sent.json is JSON")
}

#[test]
fn the_whole_capture_equals_what_was_sent_and_tshark() {
    let capture = dir().join("s0.pcap");
    let run = wsnoop(&capture);
    let sent = sent();
    let connections = sent["connections"].as_array().expect("connections");
    assert_eq!(connections.len(), 2);
    for c in connections {
        let port = c["client_port"].as_u64().unwrap() as u16;
        for dir in ["c2s", "s2c"] {
            let want: Vec<(String, u64, String)> = c["messages"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["dir"] == dir)
                .map(|m| {
                    (
                        m["opcode"].as_str().unwrap().to_string(),
                        m["len"].as_u64().unwrap(),
                        m["sha256"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            let got: Vec<(String, u64, String)> = run
                .events
                .iter()
                .filter(|e| e["type"] == "message" && dir_key(e) == (port, dir))
                .map(|e| {
                    (
                        e["opcode"].as_str().unwrap().to_string(),
                        e["len"].as_u64().unwrap(),
                        hex(&Sha256::digest(payload_of(e))),
                    )
                })
                .collect();
            assert_eq!(got, want, "connection {port} {dir}");
        }
    }
    let anomalies: Vec<&Value> = run
        .events
        .iter()
        .filter(|e| e["type"] == "anomaly")
        .collect();
    assert!(anomalies.is_empty(), "{anomalies:?}");
    for f in run.events.iter().filter(|e| e["type"] == "flow") {
        assert_eq!(
            (&f["bytes_cut_c2s"], &f["bytes_cut_s2c"]),
            (&0.into(), &0.into())
        );
    }
    let tshark: BTreeMap<DirKey, Vec<Frame>> = tshark_frames(&capture)
        .into_iter()
        .map(|(k, v)| (k, v.into_iter().map(|(_, f)| f).collect()))
        .collect();
    assert_eq!(wsnoop_frames(&run.events), tshark);
    let counts = counts(&capture, "1");
    assert!(!counts.contains("cut"), "{counts}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn check_cut_capture(name: &str, snaplen: u32) {
    let capture = dir().join(name);
    let pcap = read_pcap(&capture);
    assert_eq!(
        pcap.snaplen, snaplen,
        "{name}: the file header's snapshot length"
    );
    let cut = cuts(&pcap);
    let run = wsnoop(&capture);
    let what = format!("wsnoop -r {}", capture.display());

    // The counts at the end: every cut packet, every byte cut.
    let packets = pcap.records.iter().filter(|r| r.len > r.caplen).count();
    let bytes: u64 = cut.values().map(|c| c.0).sum();
    assert!(
        packets > 10 && bytes > 10_000,
        "{name}: too little was cut to test"
    );
    let line = format!(
        "{packets} packets cut at {snaplen} bytes by the snapshot length: {bytes} payload bytes not captured"
    );
    for threads in ["1", "2"] {
        let counts = counts(&capture, threads);
        assert!(
            counts.contains(&line),
            "{what} -q --threads {threads}: {counts:?} lacks {line:?}"
        );
    }

    // Anomalies: the capture's, never the traffic's; a cut is never a gap.
    let mut reported: BTreeMap<DirKey, u64> = BTreeMap::new();
    for a in run.events.iter().filter(|e| e["type"] == "anomaly") {
        let kind = a["kind"].as_str().unwrap();
        assert_ne!(kind, "tcp_gap", "{what}: {a}");
        assert_eq!(a["cause"], "snaplen", "{what}: {a}");
        if kind != "truncated_capture" {
            continue;
        }
        let key = dir_key(a);
        *reported.entry(key).or_default() += 1;
        let (_, first) = cut[&key];
        let detail = a["detail"].as_str().unwrap();
        for fact in [format!("at {snaplen} bytes"), format!(": {first} bytes")] {
            assert!(
                detail.contains(&fact),
                "{what}: {key:?}: {detail:?} lacks {fact:?}"
            );
        }
    }
    assert!(reported.values().all(|&n| n == 1), "{what}: {reported:?}");
    for &(port, _) in cut.keys() {
        // Every cut connection is named and followed after the cut, its handshake captured
        // or not: both directions' cuts are reported and counted in its summary.
        for dir in ["c2s", "s2c"] {
            let want = cut.get(&(port, dir)).map_or(0, |c| c.0);
            assert_eq!(
                reported.contains_key(&(port, dir)),
                want > 0,
                "{what}: connection {port} {dir}: {reported:?}"
            );
            let flow = run
                .events
                .iter()
                .find(|e| e["type"] == "flow" && client_port(e) == port)
                .unwrap_or_else(|| panic!("{what}: connection {port} has no flow event"));
            assert_eq!(
                flow[format!("bytes_cut_{dir}").as_str()].as_u64(),
                Some(want),
                "{what}: connection {port} {dir}"
            );
        }
    }

    // Frames: wsnoop reports only real ones, and every one tshark gets right from the cut
    // capture (tshark needs a whole 101 to decode frames at all).
    let whole: BTreeMap<DirKey, Vec<(u64, Frame)>> = tshark_frames(&dir().join("s0.pcap"));
    let from_cut = tshark_frames(&capture);
    let got = wsnoop_frames(&run.events);
    let mut verified = 0;
    for (key, frames) in &got {
        let real: Vec<Frame> = whole[key].iter().map(|(_, f)| f.clone()).collect();
        assert!(
            is_subsequence(frames, &real),
            "{what}: {key:?}: frames that are not the real ones, in order: {:?}",
            frames
                .iter()
                .filter(|f| !real.contains(f))
                .map(describe)
                .collect::<Vec<_>>()
        );
    }
    for (key, frames) in &from_cut {
        let real = &whole[key];
        let right: Vec<Frame> = frames
            .iter()
            .filter(|(n, f)| real.iter().any(|(m, r)| m == n && r == f))
            .map(|(_, f)| f.clone())
            .collect();
        verified += right.len();
        let ours = got.get(key).map_or(&[][..], Vec::as_slice);
        assert!(
            is_subsequence(&right, ours),
            "{what}: {key:?}: tshark decodes real frames wsnoop does not report: {:?}",
            right
                .iter()
                .filter(|f| !ours.contains(f))
                .map(describe)
                .collect::<Vec<_>>()
        );
    }
    if snaplen >= 600 {
        assert!(
            verified >= 10,
            "{what}: only {verified} frames compared with tshark"
        );
    }
}

#[test]
fn a_600_byte_snapshot_is_a_truncated_capture() {
    check_cut_capture("s600.pcap", 600);
}

#[test]
fn a_200_byte_snapshot_is_a_truncated_capture() {
    check_cut_capture("s200.pcap", 200);
}

fn diagnose(capture: &Path) -> Vec<Value> {
    let out = Command::new(common::wsnoop_bin())
        .arg("diagnose")
        .arg("-r")
        .arg(capture)
        .arg("--json")
        .output()
        .expect("wsnoop diagnose runs");
    let stdout = String::from_utf8(out.stdout).expect("UTF-8");
    common::parse_json_lines(&stdout, "wsnoop diagnose --json")
}

#[test]
fn diagnose_says_the_capture_was_cut() {
    let healthy = diagnose(&dir().join("s0.pcap"));
    let kinds: Vec<&str> = healthy
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["healthy"]);
    for (name, snaplen) in [("s600.pcap", 600), ("s200.pcap", 200)] {
        let pcap = read_pcap(&dir().join(name));
        let cut = cuts(&pcap);
        let connections = cut
            .keys()
            .map(|k| k.0)
            .collect::<std::collections::BTreeSet<_>>();
        let findings = diagnose(&dir().join(name));
        let of = |kind: &'static str| findings.iter().filter(move |f| f["kind"] == kind);
        let truncated: Vec<&Value> = of("truncated_capture").collect();
        assert_eq!(truncated.len(), 1, "{name}: {findings:?}");
        let t = truncated[0];
        assert_eq!(
            t["count"].as_u64(),
            Some(connections.len() as u64),
            "{name}"
        );
        let detail = t["detail"].as_str().unwrap();
        let to = |dir: &str| -> u64 {
            cut.iter()
                .filter(|(k, _)| k.1 == dir)
                .map(|(_, c)| c.0)
                .sum()
        };
        for fact in [
            format!("cut at {snaplen} bytes"),
            format!("{} bytes from the client", to("c2s")),
            format!("{} from the server", to("s2c")),
        ] {
            assert!(detail.contains(&fact), "{name}: {detail:?} lacks {fact:?}");
        }
        assert!(
            t["advice"].as_str().unwrap().contains("-s 0"),
            "{name}: {t}"
        );
        for wrong in ["protocol_violations", "capture_loss"] {
            assert_eq!(of(wrong).count(), 0, "{name}: {findings:?}");
        }
        for f in &findings {
            let advice = f["advice"].as_str().unwrap();
            assert!(
                !advice.contains("dropped") && !advice.contains("buffer"),
                "{name}: blames drops: {f}"
            );
            if f["kind"] == "no_websocket_traffic" {
                // Without a handshake whole, "no WebSocket" must say why that may be.
                let d = f["detail"].as_str().unwrap();
                assert!(
                    d.contains("snapshot length") && d.contains("-s 0"),
                    "{name}: {f}"
                );
            }
        }
    }
}
