//! `--format eve` and Community ID, against independent sources: every EVE line of every
//! fixture validates against Suricata 8's own schema (tests/data, checked by Python's
//! jsonschema); each frame's websocket event has the frame's fields as tshark decodes them;
//! every `--json` event's `community_id` is what corelight's Python reference implementation
//! (communityid) computes; SIGHUP makes `--output` open its file again.
//!
//! Needs fixtures/.venv with jsonschema and communityid (`.ci/setup --test` makes it).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

fn venv_python() -> PathBuf {
    let python = common::fixtures_dir().join(".venv/bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import jsonschema, communityid"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} lacks jsonschema or communityid: run `.ci/setup --test` (or fixtures/.venv/bin/pip \
         install jsonschema==4.26.0 communityid==1.5.0)",
        python.display()
    );
    python
}

/// The plaintext fixtures: every capture directly in fixtures/ and in its subfolders of
/// real traffic (TLS ones need their key logs and are run apart).
fn fixtures() -> Vec<PathBuf> {
    let dir = common::fixtures_dir();
    let mut all = common::captures_in(&dir);
    for sub in ["midstream", "pcapng", "http-odd", "snaplen"] {
        all.extend(common::captures_in(&dir.join(sub)));
    }
    assert!(all.len() >= 10, "fixtures missing: {all:?}");
    all
}

fn wsnoop(capture: &Path, args: &[&str]) -> String {
    let out = Command::new(common::wsnoop_bin())
        .arg("-r")
        .arg(capture)
        .args(args)
        .output()
        .expect("run wsnoop");
    assert!(
        out.status.success(),
        "wsnoop {} {args:?}: {}",
        capture.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Runs a Python program on `input` (on its stdin) and returns what it printed.
fn python(program: &str, input: &str) -> String {
    let mut child = Command::new(venv_python())
        .args(["-c", program])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_string();
    let feeder = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("python output");
    feeder.join().expect("feeder").expect("write to python");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

const VALIDATE: &str = r#"
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
v = jsonschema.Draft7Validator(schema)
n = 0
for line in sys.stdin:
    n += 1
    for e in v.iter_errors(json.loads(line)):
        print(f"line {n}: {e.message[:300]}")
        break
print(f"checked {n}")
"#;

fn validate(eve: &str, what: &str) -> usize {
    let schema = common::manifest_dir().join("tests/data/suricata-8.0.6-schema.json");
    let program = format!(
        "import sys; sys.argv = ['', {:?}]\n{VALIDATE}",
        schema.to_str().expect("UTF-8 path")
    );
    let report = python(&program, eve);
    let (errors, last) = report.trim_end().rsplit_once('\n').unwrap_or(("", &report));
    assert!(
        errors.is_empty(),
        "{what}: lines outside Suricata's schema:\n{errors}"
    );
    last.trim()
        .strip_prefix("checked ")
        .and_then(|n| n.parse().ok())
        .expect("a count")
}

#[test]
fn every_eve_line_of_every_fixture_fits_suricatas_schema() {
    let mut all = String::new();
    let mut types = BTreeMap::new();
    for capture in fixtures() {
        let eve = wsnoop(&capture, &["--format", "eve", "--threads", "1"]);
        // The same bytes whatever the thread count, as every other output.
        let threaded = wsnoop(&capture, &["--format", "eve", "--threads", "3"]);
        assert!(
            eve == threaded,
            "{}: --threads 3 differs",
            capture.display()
        );
        for line in eve.lines() {
            let v: Value = serde_json::from_str(line).expect("JSON");
            *types
                .entry(v["event_type"].as_str().unwrap_or("?").to_string())
                .or_insert(0) += 1;
        }
        all.push_str(&eve);
    }
    for kind in ["websocket", "http", "flow", "anomaly"] {
        assert!(
            types.get(kind).is_some_and(|&n| n > 0),
            "no {kind} events: {types:?}"
        );
    }
    // Every field written, at any depth, is in the README's SIEM section.
    let readme = std::fs::read_to_string(common::manifest_dir().join("README.md")).expect("README");
    let siem = readme
        .split("## Shipping to a SIEM")
        .nth(1)
        .expect("README has a SIEM section");
    for line in all.lines() {
        let v: Value = serde_json::from_str(line).expect("JSON");
        let mut stack = vec![&v];
        while let Some(value) = stack.pop() {
            let Value::Object(map) = value else {
                continue;
            };
            for (key, value) in map {
                assert!(
                    siem.contains(&format!("\"{key}\"")),
                    "README lacks EVE field {key}"
                );
                stack.push(value);
            }
        }
    }
    let lines = validate(&all, "the fixtures");
    assert_eq!(lines, types.values().sum::<usize>());
    assert!(lines > 1000, "only {lines} lines checked");
}

#[test]
fn wss_fixtures_fit_the_schema_too() {
    let tls = common::fixtures_dir().join("tls");
    for name in ["tls13-python", "chromium-wss-deflate", "tls12-python"] {
        let capture = tls.join(format!("{name}.pcap"));
        let keys = tls.join(format!("{name}.keys"));
        let eve = wsnoop(
            &capture,
            &["--keylog", keys.to_str().expect("path"), "--format", "eve"],
        );
        assert!(
            eve.contains("\"event_type\":\"websocket\""),
            "{name}: no frames"
        );
        validate(&eve, name);
    }
}

/// A frame as both tools see it: fin, opcode, masking key, and the number of the packet that
/// completed it.
type FrameFields = (bool, u8, Option<u32>, u64);

/// tshark's frames of one capture: per direction (by source port), each frame's fields.
fn tshark_frames(capture: &Path) -> BTreeMap<u16, Vec<FrameFields>> {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(capture)
        .args([
            "-Y",
            "websocket",
            "-T",
            "fields",
            "-E",
            "occurrence=a",
            "-E",
            "aggregator=|",
            "-e",
            "frame.number",
            "-e",
            "tcp.srcport",
            "-e",
            "websocket.fin",
            "-e",
            "websocket.opcode",
            "-e",
            "websocket.mask",
            "-e",
            "websocket.masking_key",
        ])
        .output()
        .expect("run tshark (apt-get install tshark)");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut frames: BTreeMap<u16, Vec<_>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let (number, cols) = line.split_once('\t').expect("columns");
        let number: u64 = number.parse().expect("frame number");
        let cols: Vec<&str> = cols.split('\t').collect();
        let port: u16 = cols[0].parse().expect("port");
        let fins: Vec<&str> = cols[1].split('|').collect();
        let ops: Vec<&str> = cols[2].split('|').collect();
        let masked: Vec<&str> = cols[3].split('|').collect();
        // Only masked frames have a key: tshark lists the keys of a packet's masked frames.
        let mut keys = cols.get(4).filter(|k| !k.is_empty()).map(|k| k.split('|'));
        for ((fin, op), masked) in fins.iter().zip(&ops).zip(&masked) {
            let fin = matches!(*fin, "1" | "True" | "true");
            let op: u8 = op.parse().expect("opcode");
            let key = if matches!(*masked, "1" | "True" | "true") {
                keys.as_mut()
                    .and_then(|k| k.next())
                    .map(|k| u32::from_str_radix(&k.replace(':', ""), 16).expect("hex key"))
            } else {
                None
            };
            frames.entry(port).or_default().push((fin, op, key, number));
        }
    }
    frames
}

fn opcode_value(name: &str) -> u8 {
    match name {
        "continuation" => 0,
        "text" => 1,
        "binary" => 2,
        "close" => 8,
        "ping" => 9,
        "pong" => 10,
        other => other
            .strip_prefix("unknown-")
            .and_then(|n| n.parse().ok())
            .expect("opcode name"),
    }
}

#[test]
fn one_websocket_event_per_frame_with_the_frames_fields_and_packet() {
    let dir = common::fixtures_dir();
    for name in [
        "python-basic",
        "node-ws",
        "chromium-deflate",
        "signalling-8080",
        "concurrent",
    ] {
        let capture = dir.join(format!("{name}.pcap"));
        let eve = wsnoop(&capture, &["--format", "eve"]);
        let mut ours: BTreeMap<u16, Vec<FrameFields>> = BTreeMap::new();
        for line in eve.lines() {
            let v: Value = serde_json::from_str(line).expect("JSON");
            if v["event_type"] != "websocket" {
                continue;
            }
            let ws = &v["websocket"];
            ours.entry(v["src_port"].as_u64().expect("port") as u16)
                .or_default()
                .push((
                    ws["fin"].as_bool().expect("fin"),
                    opcode_value(ws["opcode"].as_str().expect("opcode")),
                    ws["mask"].as_u64().map(|m| m as u32),
                    v["pcap_cnt"].as_u64().expect("pcap_cnt reading a file"),
                ));
        }
        let theirs = tshark_frames(&capture);
        assert!(!theirs.is_empty(), "{name}: tshark found no frames");
        assert_eq!(
            ours, theirs,
            "{name}: EVE websocket events against tshark's frames"
        );
    }
}

const COMMUNITY_IDS: &str = r#"
import json, sys, communityid
cid = communityid.CommunityID()
def split(a):
    host, port = a.rsplit(":", 1)
    return host.strip("[]"), int(port)
bad = 0
n = 0
for line in sys.stdin:
    e = json.loads(line)
    (ci, cp), (si, sp) = split(e["client"]), split(e["server"])
    want = cid.calc(communityid.FlowTuple.make_tcp(ci, si, cp, sp))
    n += 1
    if e.get("community_id") != want:
        bad += 1
        print(f"{e['type']} flow {e['flow']}: {e.get('community_id')} != {want}")
print(f"checked {n}")
"#;

#[test]
fn community_id_is_the_reference_implementations() {
    let mut all = String::new();
    for capture in fixtures() {
        let json = wsnoop(&capture, &["--json"]);
        // EVE carries the same ID.
        let ids: std::collections::BTreeSet<String> = json
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("JSON")["community_id"].to_string())
            .collect();
        for line in wsnoop(&capture, &["--format", "eve"]).lines() {
            let v: Value = serde_json::from_str(line).expect("JSON");
            assert!(ids.contains(&v["community_id"].to_string()), "{line}");
        }
        all.push_str(&json);
    }
    let report = python(COMMUNITY_IDS, &all);
    let (errors, last) = report.trim_end().rsplit_once('\n').unwrap_or(("", &report));
    assert!(errors.is_empty(), "{errors}");
    let checked: usize = last
        .trim()
        .strip_prefix("checked ")
        .and_then(|n| n.parse().ok())
        .expect("count");
    assert_eq!(checked, all.lines().count());
    assert!(checked > 1000, "only {checked} events");
}

/// Reads a file until `want` says it has what is expected, for at most ten seconds.
fn wait_for(path: &Path, want: impl Fn(&str) -> bool) -> String {
    for _ in 0..200 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if want(&text) {
            return text;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("{} never had what was expected", path.display());
}

#[test]
fn sighup_opens_the_output_file_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("eve.json");
    let rotated = dir.path().join("eve.json.1");
    let capture = std::fs::read(common::fixtures_dir().join("python-basic.pcap")).expect("fixture");
    // Two copies of the capture, fed through a pipe: the second after the rotation.
    let mut child = Command::new(common::wsnoop_bin())
        .args(["-r", "-", "--threads", "1", "--format", "eve", "--output"])
        .arg(&out)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run wsnoop");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(&capture).expect("first copy");
    stdin.flush().expect("flush");
    let first = wait_for(&out, |t| t.contains("\"event_type\":\"websocket\""));
    std::fs::rename(&out, &rotated).expect("rotate");
    let status = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(status.success());
    // The same packets again (the pcap header skipped): the same connection, seen anew.
    stdin.write_all(&capture[24..]).expect("second copy");
    drop(stdin);
    let exit = child.wait_with_output().expect("wsnoop ends");
    assert!(
        exit.status.success(),
        "{}",
        String::from_utf8_lossy(&exit.stderr)
    );
    let fresh = std::fs::read_to_string(&out).expect("a new file after SIGHUP");
    let old = std::fs::read_to_string(&rotated).expect("rotated file");
    assert!(
        old.starts_with(&first),
        "the rotated file keeps what was written before"
    );
    assert!(
        fresh.contains("\"event_type\":\"websocket\""),
        "events after SIGHUP go to the new file: {fresh:?}"
    );
    assert!(
        fresh
            .lines()
            .chain(old.lines())
            .all(|l| serde_json::from_str::<Value>(l).is_ok()),
        "every line whole"
    );
}

/// Each connection's packets and captured bytes each way, from tshark, counting the packets up
/// to and including `last` (the one the flow record came with).
fn tshark_traffic(capture: &Path, last: u64) -> BTreeMap<(u16, u16), (u64, u64)> {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(capture)
        .args([
            "-Y",
            &format!("tcp && frame.number <= {last}"),
            "-T",
            "fields",
            "-e",
            "tcp.srcport",
            "-e",
            "tcp.dstport",
            "-e",
            "frame.cap_len",
        ])
        .output()
        .expect("run tshark");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut sums: BTreeMap<(u16, u16), (u64, u64)> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let cols: Vec<u64> = line
            .split('\t')
            .map(|c| c.parse().expect("number"))
            .collect();
        let e = sums.entry((cols[0] as u16, cols[1] as u16)).or_default();
        e.0 += 1;
        e.1 += cols[2];
    }
    sums
}

#[test]
fn flow_records_count_packets_and_bytes_as_tshark_does() {
    let dir = common::fixtures_dir();
    let mut checked = 0;
    for name in [
        "python-basic",
        "node-ws",
        "chromium-deflate",
        "concurrent",
        "ipv6",
    ] {
        let capture = dir.join(format!("{name}.pcap"));
        for line in wsnoop(&capture, &["--format", "eve"]).lines() {
            let v: Value = serde_json::from_str(line).expect("JSON");
            if v["event_type"] != "flow" {
                continue;
            }
            // A record at the end of the capture counts every packet.
            let last = v["pcap_cnt"].as_u64().unwrap_or(u64::MAX >> 12);
            let theirs = tshark_traffic(&capture, last);
            let (client, server) = (
                v["src_port"].as_u64().expect("port") as u16,
                v["dest_port"].as_u64().expect("port") as u16,
            );
            let f = &v["flow"];
            let to_server = theirs.get(&(client, server)).copied().unwrap_or_default();
            let to_client = theirs.get(&(server, client)).copied().unwrap_or_default();
            assert_eq!(
                (f["pkts_toserver"].as_u64(), f["bytes_toserver"].as_u64()),
                (Some(to_server.0), Some(to_server.1)),
                "{name}: {line}"
            );
            assert_eq!(
                (f["pkts_toclient"].as_u64(), f["bytes_toclient"].as_u64()),
                (Some(to_client.0), Some(to_client.1)),
                "{name}: {line}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} flow records");
}

#[test]
fn http_records_carry_the_headers_tshark_sees() {
    let capture = common::fixtures_dir().join("python-basic.pcap");
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(&capture)
        .args([
            "-Y",
            "http",
            "-T",
            "fields",
            "-E",
            "occurrence=a",
            "-E",
            "aggregator=|",
        ])
        .args(["-e", "http.request.line", "-e", "http.response.line"])
        .output()
        .expect("run tshark");
    let lines: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .split(['|', '\t', '\n'])
        .map(|l| l.trim_end_matches("\\r\\n").trim().to_ascii_lowercase())
        .filter(|l| !l.is_empty())
        .collect();
    assert!(!lines.is_empty(), "tshark saw no HTTP header lines");
    let mut seen = 0;
    for line in wsnoop(&capture, &["--format", "eve"]).lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        if v["event_type"] != "http" {
            continue;
        }
        for key in ["request_headers", "response_headers"] {
            for h in v["http"][key].as_array().expect(key) {
                let line = format!(
                    "{}: {}",
                    h["name"].as_str().unwrap(),
                    h["value"].as_str().unwrap()
                )
                .to_ascii_lowercase();
                assert!(lines.contains(&line), "{line} not among tshark's {lines:?}");
                seen += 1;
            }
        }
    }
    assert!(seen >= 8, "{seen}");
}
