//! Protocol anomalies against crafted captures whose ground truth is known by construction.
//!
//! fixtures/crafted/make_crafted.py writes one capture per case and, beside it,
//! NAME.expected.json: the exact multiset of anomaly kinds wsnoop must report, the messages and
//! the close event, derived from the bytes the generator wrote (never from wsnoop's output).
//! Every capture there is checked; one without an expected file is a failure, not a skip.
//!
//! The real-implementation captures in fixtures/ (python websockets, Node ws, Chromium) are
//! correct by construction too, so they must produce no anomaly at all.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use serde_json::Value;
use wsnoop::anomaly::AnomalyKind;

/// The options the expected files were derived under (see fixtures/crafted/README.md).
const ARGS: [&str; 3] = ["--json", "--max-payload", "1000000"];

/// Anomaly kinds a crafted capture does not have to commit: capture problems, proven on real
/// captures with bytes lost on purpose (tcp_gap: tests/hostile.rs; truncated_capture:
/// tests/snaplen.rs, a session captured with tcpdump -s 200 and -s 600); malformed_http and
/// http_abandoned are committed by real programs in fixtures/http-odd/ (tests/http_odd.rs).
const NOT_CRAFTED: [&str; 8] = [
    // Real wss captures with key logs commit these (fixtures/tls/, tests/tls.rs).
    "tls_no_keys",
    "tls_decrypt_failed",
    "tls_unsupported",
    "tls_malformed",
    "tcp_gap",
    "truncated_capture",
    "malformed_http",
    "http_abandoned",
];

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn crafted_dir() -> PathBuf {
    manifest_dir().join("fixtures/crafted")
}

/// Files in `dir` with one of `exts`, sorted.
fn files_in(dir: &Path, exts: &[&str]) -> Vec<PathBuf> {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("directory entry").path())
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| exts.contains(&e))
        })
        .collect();
    files.sort();
    files
}

fn name_of(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// Runs wsnoop on `capture` and returns its JSON events.
fn run_wsnoop(capture: &Path, args: &[&str]) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_wsnoop"))
        .arg("-r")
        .arg(capture)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running wsnoop: {e}"));
    assert!(
        out.status.success(),
        "wsnoop -r {} {} failed ({}): {}",
        capture.display(),
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("wsnoop's output is UTF-8")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {l}", capture.display()))
        })
        .collect()
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

/// The anomaly kinds an expected file names, sorted as [`anomaly_kinds`] sorts.
fn expected_anomalies(want: &Value) -> Vec<String> {
    let mut kinds: Vec<String> = want["anomalies"]
        .as_array()
        .expect("anomalies")
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    kinds.sort();
    kinds
}

fn anomaly_kinds(events: &[Value]) -> Vec<String> {
    let mut kinds: Vec<String> = of_type(events, "anomaly")
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or("?").to_string())
        .collect();
    kinds.sort();
    kinds
}

/// The payload bytes a message or frame event shows: "text" as UTF-8 or "data" base64-decoded.
fn shown_bytes(event: &Value) -> Result<Vec<u8>, String> {
    if let Some(text) = event["text"].as_str() {
        return Ok(text.as_bytes().to_vec());
    }
    let data = event["data"].as_str().ok_or("neither text nor data")?;
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| format!("data is not base64: {e}"))
}

fn short(v: &Value) -> String {
    let mut s = v.to_string();
    if s.len() > 300 {
        let mut cut = 300;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// Compares one message event with its expected entry; returns what differs.
/// The messages the generator sent in direction `dir`.
fn wanted_messages<'a>(want: &'a Value, dir: &str) -> Vec<&'a Value> {
    want["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["dir"] == dir)
        .collect()
}

fn check_message(got: &Value, want: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    for field in ["opcode", "compressed", "frames", "wire_len"] {
        if let Some(w) = want.get(field)
            && got[field] != *w
        {
            errs.push(format!("{field} is {}, expected {w}", got[field]));
        }
    }
    let undecodable = want["undecodable"].as_bool().unwrap_or(false);
    if got["undecodable"].as_bool() != Some(undecodable) {
        errs.push(format!(
            "undecodable is {}, expected {undecodable}",
            got["undecodable"]
        ));
    }
    if undecodable {
        return errs;
    }
    // Inflated without its lost window (issue 14): exact, or partial with its known bytes.
    if want["recovered"] == true && got["partial"] == true {
        if got["len"] != want["len"] {
            errs.push(format!("len is {}, expected {}", got["len"], want["len"]));
        }
        if let (Some(g), Some(w)) = (got["text"].as_str(), want["text"].as_str())
            && w.is_ascii()
            && (g.chars().count() != w.len()
                || g.chars()
                    .zip(w.chars())
                    .any(|(a, b)| a != '\u{FFFD}' && a != b))
        {
            errs.push(format!(
                "partial text {} does not match {w}",
                short(&got["text"])
            ));
        }
        return errs;
    }
    let truncated = want["truncated"].as_bool().unwrap_or(false);
    if got["truncated"].as_bool() != Some(truncated) {
        errs.push(format!(
            "truncated is {}, expected {truncated}",
            got["truncated"]
        ));
    }
    let shown = match shown_bytes(got) {
        Ok(bytes) => bytes,
        Err(e) => {
            errs.push(e);
            return errs;
        }
    };
    if truncated {
        // Cut at --max-message: len is bounded, and the kept prefix is the repeating unit.
        let len = got["len"].as_u64().unwrap_or(0);
        let (min, max) = (
            want["min_len"].as_u64().unwrap(),
            want["max_len"].as_u64().unwrap(),
        );
        if !(min..=max).contains(&len) {
            errs.push(format!("len is {len}, expected {min}..={max}"));
        }
        let unit = hex_decode(want["prefix_unit_hex"].as_str().unwrap());
        let prefix_len = want["prefix_len"].as_u64().unwrap() as usize;
        // A text's prefix stops at a character boundary: up to unit.len() - 1 bytes early.
        let slack = if got.get("text").is_some() {
            unit.len() - 1
        } else {
            0
        };
        let periodic = shown.chunks(unit.len()).all(|c| c == &unit[..c.len()]);
        if !periodic || shown.len() > prefix_len || shown.len() + slack < prefix_len {
            errs.push(format!(
                "kept {} bytes, expected {prefix_len} (-{slack}) bytes of {} repeated",
                shown.len(),
                hex(&unit)
            ));
        }
    } else if let Some(text) = want.get("text") {
        if got.get("text") != Some(text) {
            errs.push(format!(
                "text is {}, expected {text}",
                got.get("text").map_or("absent".to_string(), short)
            ));
        }
    } else {
        let len = want["len"].as_u64().unwrap();
        if got["len"].as_u64() != Some(len) {
            errs.push(format!("len is {}, expected {len}", got["len"]));
        }
        let sha = hex(&sha256(&shown));
        if want["sha256"].as_str() != Some(sha.as_str()) {
            errs.push(format!(
                "payload sha256 {sha} ({} bytes shown), expected {}",
                shown.len(),
                want["sha256"]
            ));
        }
    }
    errs
}

/// Checks one crafted capture against its expected file; returns what differs.
fn check_crafted(capture: &Path) -> Vec<String> {
    let expected_path = capture.with_extension("expected.json");
    let Ok(text) = std::fs::read_to_string(&expected_path) else {
        return vec![format!("{} is missing", name_of(&expected_path))];
    };
    let want: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
    let events = run_wsnoop(capture, &ARGS);
    let mut errs = Vec::new();

    // Anomalies: the exact multiset.
    let got_kinds = anomaly_kinds(&events);
    let want_kinds = expected_anomalies(&want);
    if got_kinds != want_kinds {
        errs.push(format!(
            "anomalies are {got_kinds:?}, expected {want_kinds:?}"
        ));
        for a in of_type(&events, "anomaly") {
            errs.push(format!(
                "  reported: {} ({}): {}",
                a["kind"], a["dir"], a["detail"]
            ));
        }
    }

    // A crafted capture holds every byte its generator wrote: whatever it commits is the
    // traffic's, never the capture's.
    for a in of_type(&events, "anomaly") {
        if a["cause"] != "traffic" {
            errs.push(format!(
                "{} ({}) is blamed on the capture (cause {}): {}",
                a["kind"], a["dir"], a["cause"], a["detail"]
            ));
        }
    }

    // Messages, in order per direction.
    let messages = of_type(&events, "message");
    for dir in ["c2s", "s2c"] {
        let got: Vec<&Value> = messages
            .iter()
            .copied()
            .filter(|m| m["dir"] == dir)
            .collect();
        let wanted = wanted_messages(&want, dir);
        if got.len() != wanted.len() {
            errs.push(format!(
                "{} {dir} messages, expected {}",
                got.len(),
                wanted.len()
            ));
        }
        for (i, (g, w)) in got.iter().zip(&wanted).enumerate() {
            for e in check_message(g, w) {
                errs.push(format!(
                    "{dir} message {i}: {e}\n    got:      {}\n    expected: {}",
                    short(g),
                    short(w)
                ));
            }
        }
    }

    errs.extend(check_text_frames(&events, &want));

    // The close event.
    let closes = of_type(&events, "close");
    match &want["close"] {
        Value::Null => {
            if !closes.is_empty() {
                errs.push(format!("expected no close event, got {}", short(closes[0])));
            }
        }
        close => {
            if closes.len() != 1 {
                errs.push(format!("{} close events, expected 1", closes.len()));
            }
            if let Some(got) = closes.first() {
                for (field, w) in close.as_object().unwrap() {
                    if got[field] != *w {
                        errs.push(format!("close {field} is {}, expected {w}", got[field]));
                    }
                }
            }
        }
    }

    // A capture of the same session with another segmentation: every event must be the same.
    if let Some(other) = want["same_events_as"].as_str() {
        let reference = comparable(&run_wsnoop(&crafted_dir().join(other), &ARGS));
        let mine = comparable(&events);
        if reference.len() != mine.len() {
            errs.push(format!(
                "{} events, {other} has {}",
                mine.len(),
                reference.len()
            ));
        }
        if let Some((i, (a, b))) = mine
            .iter()
            .zip(&reference)
            .enumerate()
            .find(|(_, (a, b))| a != b)
        {
            errs.push(format!(
                "event {i} differs from {other}'s:\n    got:  {}\n    {other}: {}",
                short(a),
                short(b)
            ));
        }
    }
    errs
}

/// The frames of a valid, uncompressed text message are each shown as text (a character cut
/// by a frame border is shown in the frame where it completes), and together they are the
/// message's text.
fn check_text_frames(events: &[Value], want: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    for dir in ["c2s", "s2c"] {
        // Frames grouped into messages as a receiver assembles them.
        let mut groups: Vec<Vec<&Value>> = Vec::new();
        let mut open: Option<Vec<&Value>> = None;
        for f in of_type(events, "frame")
            .into_iter()
            .filter(|f| f["dir"] == dir)
        {
            match f["opcode"].as_str() {
                Some("text" | "binary") => open = Some(vec![f]),
                Some("continuation") => match open.as_mut() {
                    Some(group) => group.push(f),
                    None => continue,
                },
                _ => continue,
            }
            if f["fin"] == true {
                groups.extend(open.take());
            }
        }
        let wanted = wanted_messages(want, dir);
        if groups.len() != wanted.len() {
            errs.push(format!(
                "{} {dir} messages in frame events, expected {}",
                groups.len(),
                wanted.len()
            ));
            continue;
        }
        for (i, (group, w)) in groups.iter().zip(&wanted).enumerate() {
            let Some(text) = w["text"].as_str() else {
                continue;
            };
            if w["compressed"] == true {
                continue;
            }
            let mut joined = String::new();
            for (j, f) in group.iter().enumerate() {
                match f["text"].as_str() {
                    Some(t) => joined.push_str(t),
                    None => errs.push(format!(
                        "{dir} message {i} ({text:?}), frame {j} of {}: shown as data, not text: {}",
                        group.len(),
                        short(f)
                    )),
                }
            }
            if joined != text && group.iter().all(|f| f.get("text").is_some()) {
                errs.push(format!(
                    "{dir} message {i}: its frames show {joined:?}, the message is {text:?}"
                ));
            }
        }
    }
    errs
}

/// Events without what depends on packet timing: handshake, frame, message, close, anomaly.
fn comparable(events: &[Value]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| {
            matches!(
                e["type"].as_str(),
                Some("handshake" | "frame" | "message" | "close" | "anomaly")
            )
        })
        .map(|e| {
            let mut e = e.clone();
            let obj = e.as_object_mut().unwrap();
            obj.remove("ts");
            obj.remove("latency");
            e
        })
        .collect()
}

#[test]
fn crafted_captures_match_their_expected_results() {
    let captures = files_in(&crafted_dir(), &["pcap", "pcapng"]);
    assert!(
        !captures.is_empty(),
        "no captures in {}",
        crafted_dir().display()
    );
    let mut report = String::new();
    let mut failed = 0;
    for capture in &captures {
        let errs = check_crafted(capture);
        eprintln!(
            "checked {}: {}",
            name_of(capture),
            if errs.is_empty() { "ok" } else { "FAILED" }
        );
        if !errs.is_empty() {
            failed += 1;
            report.push_str(&format!("\n{}:\n", name_of(capture)));
            for e in errs {
                report.push_str(&format!("  {e}\n"));
            }
        }
    }
    assert!(
        failed == 0,
        "{failed} of {} crafted captures differ from their expected results:\n{report}",
        captures.len()
    );
}

/// What is judged does not depend on how much of a payload is kept for display: every crafted
/// capture's anomalies (the generator's expected multiset) come out the same when frames and
/// messages keep none, a byte or two of a character, or a few words. UTF-8 in particular is
/// checked on the whole message, in one piece when all of it is kept and as it streams when
/// it is not.
#[test]
fn anomalies_do_not_depend_on_max_payload() {
    let mut wrong = Vec::new();
    for capture in files_in(&crafted_dir(), &["pcap", "pcapng"]) {
        let Ok(text) = std::fs::read_to_string(capture.with_extension("expected.json")) else {
            continue; // every_expected_file_has_its_capture names it
        };
        let want: Value = serde_json::from_str(&text).unwrap();
        let want_kinds = expected_anomalies(&want);
        for kept in ["0", "1", "2", "3", "5", "7", "64"] {
            let got = anomaly_kinds(&run_wsnoop(&capture, &["--json", "--max-payload", kept]));
            if got != want_kinds {
                wrong.push(format!(
                    "{} --max-payload {kept}: {got:?}, want {want_kinds:?}",
                    name_of(&capture)
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_expected_file_has_its_capture() {
    let expected = files_in(&crafted_dir(), &["json"]);
    let orphans: Vec<String> = expected
        .iter()
        .map(|p| name_of(p))
        .filter(|n| n.ends_with(".expected.json"))
        .filter(|n| {
            !crafted_dir()
                .join(n.replace(".expected.json", ".pcap"))
                .is_file()
        })
        .collect();
    assert!(
        orphans.is_empty(),
        "expected files without a capture: {orphans:?}"
    );
}

#[test]
fn every_anomaly_kind_is_committed_by_a_crafted_capture() {
    let known: BTreeSet<&str> = AnomalyKind::ALL.iter().map(|k| k.name()).collect();
    let mut committed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for expected in files_in(&crafted_dir(), &["json"]) {
        let want: Value =
            serde_json::from_str(&std::fs::read_to_string(&expected).unwrap()).unwrap();
        for kind in want["anomalies"].as_array().into_iter().flatten() {
            let kind = kind.as_str().unwrap().to_string();
            assert!(
                known.contains(kind.as_str()),
                "{}: unknown anomaly kind {kind}",
                name_of(&expected)
            );
            committed.entry(kind).or_default().push(name_of(&expected));
        }
    }
    let missing: Vec<&str> = known
        .iter()
        .copied()
        .filter(|k| !NOT_CRAFTED.contains(k) && !committed.contains_key(*k))
        .collect();
    for (kind, files) in &committed {
        eprintln!("{kind}: {}", files.join(", "));
    }
    assert!(missing.is_empty(), "no crafted capture commits {missing:?}");
}

#[test]
fn real_implementation_captures_have_no_anomalies() {
    let captures = files_in(&manifest_dir().join("fixtures"), &["pcap", "pcapng"]);
    assert!(!captures.is_empty(), "no captures in fixtures/");
    let mut report = String::new();
    for capture in &captures {
        let events = run_wsnoop(capture, &["--json"]);
        let anomalies = of_type(&events, "anomaly");
        eprintln!(
            "checked {}: {} anomalies",
            name_of(capture),
            anomalies.len()
        );
        for a in anomalies {
            report.push_str(&format!("\n{}: {}", name_of(capture), short(a)));
        }
    }
    assert!(
        report.is_empty(),
        "real implementations are reported as misbehaving:{report}"
    );
}

#[test]
fn crafted_files_are_what_the_generator_writes() {
    let script = crafted_dir().join("make_crafted.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg("--check")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "running python3 {}: {e} (python3 is needed)",
                script.display()
            )
        });
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// --- small helpers: hex and SHA-256 (FIPS 180-4), so the test needs no extra crate.

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// SHA-256, from RustCrypto's sha2 (the family of the sha1 crate wsnoop uses).
fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}
