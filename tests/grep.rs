//! `--grep` (issue 17): what it keeps is what Python's `re` keeps of the full run's JSON, by
//! the rules the help states (a message and a frame by their payload, a compressed message's
//! last frame by the message's inflated text, a close frame by its reason, a connection's
//! flow record when something of it was kept; handshakes, closes, anomalies dropped), byte
//! for byte, with one thread and two; the text view shows the same events.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

fn wsnoop(capture: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(common::wsnoop_bin())
        .arg("-r")
        .arg(common::fixtures_dir().join(capture))
        .args(args)
        .output()
        .expect("run wsnoop");
    assert!(
        out.status.success(),
        "{capture} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The rules, written again in Python from the JSON alone: texts searched as `str`, binary
/// payloads (base64 in the JSON) as `bytes`.
const FILTER: &str = r#"
import base64, json, re, sys
text_re = re.compile(sys.argv[1])
bytes_re = re.compile(sys.argv[2].encode('latin-1'))
hide_messages = sys.argv[3] == '1'
lines = sys.stdin.buffer.read().splitlines(keepends=True)
events = [json.loads(l) for l in lines]

def matches(e):
    if e.get('opcode') == 'close' and 'close_reason' in e:
        return text_re.search(e['close_reason']) is not None
    if 'text' in e:
        return text_re.search(e['text']) is not None
    return bytes_re.search(base64.b64decode(e.get('data') or '')) is not None

def completes(e):
    return (e['type'] == 'frame' and e['fin']
            and e['opcode'] in ('continuation', 'text', 'binary')
            and (e['opcode'] == 'continuation' or e['rsv'] & 4))

decided = {}
for i, e in enumerate(events):
    if i in decided or not completes(e):
        continue
    # Its message: the next event that is not an anomaly.
    j = i + 1
    while j < len(events) and events[j]['type'] == 'anomaly':
        j += 1
    m = events[j] if j < len(events) else None
    if (m is not None and m['type'] == 'message' and m['flow'] == e['flow']
            and m['dir'] == e['dir'] and m['compressed'] and not m['undecodable']):
        decided[i] = decided[j] = matches(m)

out = sys.stdout.buffer
seen = set()
for i, e in enumerate(events):
    t = e['type']
    if t in ('frame', 'message'):
        keep = decided[i] if i in decided else matches(e)
        if keep:
            seen.add(e['flow'])
        if keep and not (t == 'message' and hide_messages):
            out.write(lines[i])
    elif t == 'flow' and e['flow'] in seen:
        seen.discard(e['flow'])
        out.write(lines[i])
"#;

fn python_filter(full: &[u8], text_re: &str, bytes_re: &str, hide_messages: bool) -> Vec<u8> {
    let mut child = Command::new("python3")
        .args(["-c", FILTER, text_re, bytes_re])
        .arg(if hide_messages { "1" } else { "0" })
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 (needed for this test)");
    child.stdin.take().unwrap().write_all(full).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the Python filter failed");
    out.stdout
}

/// (capture, pattern for wsnoop, the same for Python's str, the same for Python's bytes).
const CASES: &[(&str, &str, &str, &str)] = &[
    (
        "chromium-deflate.pcap",
        r"again #1\b",
        r"again #1\b",
        r"again #1\b",
    ),
    (
        "chromium-deflate.pcap",
        "(?i)WÖRLD|abcd",
        "(?i)WÖRLD|abcd",
        "abcd",
    ),
    (
        "python-deflate.pcap",
        "humidity=4",
        "humidity=4",
        "humidity=4",
    ),
    // Fragmented compressed messages and binary ones.
    (
        "python-deflate.pcap",
        r"continue|^\x00\x01",
        r"continue|^\x00\x01",
        r"continue|^\x00\x01",
    ),
    (
        "signalling-8080.pcap",
        "candidate",
        "candidate",
        "candidate",
    ),
    // The close frames' reason, and a text no payload has.
    ("signalling-8080.pcap", "^bye$", "^bye$", "^bye$"),
    (
        "signalling-8080.pcap",
        "no such text",
        "no such text",
        "no such text",
    ),
    // Raw bytes of a binary message, and fragmented uncompressed messages.
    (
        "node-ws.pcap",
        r"(?-u:\xca\xfe\xba\xbe)|node|server",
        "node|server",
        r"\xca\xfe\xba\xbe|node|server",
    ),
];

#[test]
fn grep_keeps_what_pythons_re_keeps_of_the_full_json() {
    for &(capture, pattern, text_re, bytes_re) in CASES {
        let full = wsnoop(capture, &["--json", "--threads", "1"]);
        let want = python_filter(&full, text_re, bytes_re, false);
        for threads in ["1", "2"] {
            let got = wsnoop(
                capture,
                &["--json", "--threads", threads, "--grep", pattern],
            );
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want),
                "{capture} --grep {pattern:?} --threads {threads}"
            );
        }
    }
    // Something was kept, and not everything: the cases test a choice.
    let full = wsnoop("signalling-8080.pcap", &["--json"]);
    let some = python_filter(&full, "candidate", "candidate", false);
    assert!(!some.is_empty() && some.len() < full.len());
}

#[test]
fn the_json_frame_view_decides_compressed_frames_by_their_message_too() {
    for capture in ["chromium-deflate.pcap", "python-deflate.pcap"] {
        let full = wsnoop(capture, &["--json", "--threads", "1"]);
        let want = python_filter(&full, "quick brown", "quick brown", true);
        assert!(!want.is_empty(), "{capture}");
        for threads in ["1", "2"] {
            let got = wsnoop(
                capture,
                &[
                    "--json",
                    "--show",
                    "frames",
                    "--threads",
                    threads,
                    "--grep",
                    "quick brown",
                ],
            );
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want),
                "{capture} --show frames --threads {threads}"
            );
        }
    }
}

/// (time, connection, frame or message) of each frame and message line of `-tt` text.
fn text_events(text: &[u8]) -> Vec<(String, u64, &'static str)> {
    String::from_utf8_lossy(text)
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            let kind = match f.get(5).copied()? {
                "TEXT" | "BINARY" if f.get(6) == Some(&"MESSAGE") => "message",
                "text" | "binary" | "continuation" | "close" | "ping" | "pong" => "frame",
                _ => return None,
            };
            Some((
                f[0].to_string(),
                f[1].strip_prefix('#')?.parse().ok()?,
                kind,
            ))
        })
        .collect()
}

fn json_events(json: &[u8]) -> Vec<(String, u64, &'static str)> {
    json.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_slice(l).unwrap();
            let kind = match v["type"].as_str()? {
                "frame" => "frame",
                "message" => "message",
                _ => return None,
            };
            // The JSON's ts as written: the text's -tt has the same digits.
            let text = std::str::from_utf8(l).unwrap();
            let ts = text.split("\"ts\":").nth(1)?.split(',').next()?.to_string();
            Some((ts, v["flow"].as_u64()?, kind))
        })
        .collect()
}

#[test]
fn the_text_view_shows_the_same_events() {
    for &(capture, pattern, text_re, bytes_re) in CASES {
        let full = wsnoop(capture, &["--json", "--threads", "1"]);
        let want = json_events(&python_filter(&full, text_re, bytes_re, false));
        for threads in ["1", "2"] {
            let text = wsnoop(
                capture,
                &[
                    "-tt",
                    "--show",
                    "all",
                    "--threads",
                    threads,
                    "--grep",
                    pattern,
                ],
            );
            assert_eq!(
                text_events(&text),
                want,
                "{capture} --grep {pattern:?} --threads {threads}"
            );
            // Handshakes and closes are not payload.
            let text = String::from_utf8_lossy(&text);
            assert!(!text.contains(" handshake ") && !text.contains(" closed "));
        }
    }
}

#[test]
fn a_bad_pattern_is_refused_with_the_reason() {
    let out = Command::new(common::wsnoop_bin())
        .arg("-r")
        .arg(common::fixtures_dir().join("python-basic.pcap"))
        .args(["--grep", "(unclosed"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--grep") && err.contains("unclosed"), "{err}");
}

#[test]
fn the_har_keeps_the_messages_json_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let (capture, pattern) = ("chromium-deflate.pcap", r"again #[12]\b|(?i)WÖRLD");
    let json = wsnoop(capture, &["--json", "--grep", pattern]);
    let want: Vec<String> = json
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == "message")
        .map(|v| v["text"].as_str().unwrap().to_string())
        .collect();
    assert!(want.len() >= 4, "{want:?}");
    for threads in ["1", "2"] {
        let har = dir.path().join(format!("{threads}.har"));
        let har_arg = har.to_str().unwrap();
        wsnoop(
            capture,
            &[
                "-q",
                "--threads",
                threads,
                "--grep",
                pattern,
                "--har",
                har_arg,
            ],
        );
        let har: serde_json::Value = serde_json::from_slice(&std::fs::read(&har).unwrap()).unwrap();
        let got: Vec<String> = har["log"]["entries"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|e| e["_webSocketMessages"].as_array().unwrap())
            .map(|m| m["data"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(got, want, "--threads {threads}");
    }
}
