//! `wsnoop report` in a real browser: Debian's chromium, driven by playwright-core
//! (tests/browser/report.js) with no browser download. What the page shows is checked against
//! wsnoop's `--json` of the same capture (every connection, each one's messages and control
//! frames in order), against Python's `re` for the filter, and, for the large capture built
//! here, against what was written into it.
//!
//! The browser tests need node and tests/browser/node_modules (`.ci/setup --test` installs
//! them, `npm ci` in tests/browser); they fail, not skip, without them. Screenshots are kept
//! in target/report-screenshots/.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use common::{fixtures_dir, manifest_dir, run_wsnoop_json, wsnoop_bin};

fn browser_dir() -> PathBuf {
    let dir = manifest_dir().join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "tests/browser/node_modules is missing: run `.ci/setup --test` (or `npm ci` in tests/browser)"
    );
    dir
}

fn artifacts() -> PathBuf {
    let dir = manifest_dir().join("target/report-screenshots");
    std::fs::create_dir_all(&dir).expect("artifact directory");
    dir
}

/// Writes the report of `capture` to `page`, with `extra` arguments; returns stderr.
fn report(capture: &Path, page: &Path, extra: &[&str]) -> String {
    let out = Command::new(wsnoop_bin())
        .arg("report")
        .arg("-r")
        .arg(capture)
        .arg("-o")
        .arg(page)
        .args(extra)
        .output()
        .expect("wsnoop runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "wsnoop report failed: {stderr}");
    stderr
}

/// Runs the browser over `jobs` (see tests/browser/report.js); one result per job.
fn look(jobs: &[Value]) -> Vec<Value> {
    let dir = browser_dir();
    let spec = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(spec.path(), serde_json::to_vec(jobs).expect("json")).expect("jobs written");
    let out = Command::new("node")
        .arg(dir.join("report.js"))
        .arg(spec.path())
        .current_dir(&dir)
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "the browser script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("the script prints JSON");
    v.as_array().expect("a list").clone()
}

/// What the page lists for one connection, from `--json`: its messages and its control
/// frames, in the order they happened, each as the text the filter searches (the text, or
/// the payload in base64).
fn items_of(events: &[Value], flow: u64) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["flow"] == flow)
        .filter(|e| {
            e["type"] == "message"
                || (e["type"] == "frame"
                    && ["close", "ping", "pong"].contains(&e["opcode"].as_str().unwrap_or("")))
        })
        .map(|e| {
            e.get("text")
                .or_else(|| e.get("data"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

/// The `--json` events of what the page lists for one connection, in order.
fn item_events(events: &[Value], flow: u64) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| e["flow"] == flow)
        .filter(|e| {
            e["type"] == "message"
                || (e["type"] == "frame"
                    && ["close", "ping", "pong"].contains(&e["opcode"].as_str().unwrap_or("")))
        })
        .collect()
}

/// Runs a Python expression on `input` (bound to `d`), returning what it prints.
fn python(expr: &str, input: &Value) -> String {
    use std::io::Write;
    let mut child = Command::new("python3")
        .args([
            "-c",
            &format!("import json, sys\nd = json.load(sys.stdin)\nsys.stdout.write({expr})"),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&serde_json::to_vec(input).unwrap())
        .unwrap();
    let out = child.wait_with_output().expect("python3 ends");
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
fn connections_sort_by_a_column_both_ways() {
    let dir = tempfile::tempdir().expect("temp dir");
    let capture = fixtures_dir().join("concurrent.pcap");
    let page = dir.path().join("sort.html");
    report(&capture, &page, &[]);
    let events = run_wsnoop_json(&capture, &[]);
    // Duration: from the upgrade (the handshake) to the connection's end (its flow event).
    let at = |kind: &str, flow: u64| {
        events
            .iter()
            .find(|e| e["type"] == kind && e["flow"] == flow)
            .and_then(|e| e["ts"].as_f64())
            .expect("event")
    };
    let mut flows: Vec<(f64, u64)> = (0..20)
        .map(|f| (at("flow", f) - at("handshake", f), f))
        .collect();
    flows.sort_by(|a, b| a.0.total_cmp(&b.0));
    let ascending: Vec<u64> = flows.iter().map(|f| f.1).collect();
    let descending: Vec<u64> = ascending.iter().rev().copied().collect();
    // Client addresses, as text: the same length here, so byte order is the page's order.
    let seen =
        look(&[json!({"page": page, "flows": [], "sort": ["dur", "dur", "client", "flow"]})]);
    let sorted = seen[0]["sorted"].as_array().unwrap();
    assert_eq!(numbers(&sorted[0]), ascending, "by duration");
    assert_eq!(numbers(&sorted[1]), descending, "by duration, descending");
    let mut by_client: Vec<(String, u64)> = (0..20)
        .map(|f| {
            let e = events.iter().find(|e| e["flow"] == f).unwrap();
            (e["client"].as_str().unwrap().to_owned(), f)
        })
        .collect();
    by_client.sort();
    assert_eq!(
        numbers(&sorted[2]),
        by_client.iter().map(|c| c.1).collect::<Vec<_>>(),
        "by client"
    );
    assert_eq!(
        numbers(&sorted[3]),
        (0..20).collect::<Vec<_>>(),
        "by number"
    );
}

#[test]
fn messages_are_shown_as_devtools_shows_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut jobs = Vec::new();
    let mut cases = Vec::new();
    for name in ["signalling-8080", "python-basic"] {
        let capture = fixtures_dir().join(format!("{name}.pcap"));
        let page = dir.path().join(format!("{name}.html"));
        report(&capture, &page, &[]);
        let events = run_wsnoop_json(&capture, &[]);
        let items: Vec<Value> = item_events(&events, 0).into_iter().cloned().collect();
        // The first JSON text, the first other text and the first binary message.
        let first = |f: &dyn Fn(&Value) -> bool| items.iter().position(f);
        let json_text = first(&|e| {
            e.get("text")
                .and_then(Value::as_str)
                .is_some_and(|t| serde_json::from_str::<serde_json::Map<String, Value>>(t).is_ok())
        });
        let plain_text = first(&|e| {
            e.get("text")
                .and_then(Value::as_str)
                .is_some_and(|t| !t.is_empty() && serde_json::from_str::<Value>(t).is_err())
        });
        let binary = first(&|e| e["opcode"] == "binary" && e["len"].as_u64() > Some(16));
        let picks: Vec<usize> = [json_text, plain_text, binary]
            .into_iter()
            .flatten()
            .collect();
        match name {
            "signalling-8080" => assert!(json_text.is_some(), "{name}: a JSON message"),
            _ => assert!(
                plain_text.is_some() && binary.is_some(),
                "{name}: text and binary"
            ),
        }
        jobs.push(json!({
            "page": page,
            "flows": [],
            "kinds": 0,
            "details": picks.iter().map(|i| json!([0, i])).collect::<Vec<_>>(),
        }));
        cases.push((name, items, picks));
    }
    let seen = look(&jobs);
    for ((name, items, picks), page) in cases.into_iter().zip(&seen) {
        assert_eq!(page["errors"], json!([]), "{name}");
        let control = |e: &Value| e["type"] == "frame";
        let indices = |f: &dyn Fn(&Value) -> bool| -> Vec<u64> {
            (0..items.len() as u64)
                .filter(|i| f(&items[*i as usize]))
                .collect()
        };
        let kinds = &page["kinds"];
        assert_eq!(
            numbers(&kinds["send"]["rows"]),
            indices(&|e| e["dir"] == "c2s"),
            "{name}: Sent"
        );
        assert_eq!(
            numbers(&kinds["receive"]["rows"]),
            indices(&|e| e["dir"] == "s2c"),
            "{name}: Received"
        );
        assert_eq!(
            numbers(&kinds["control"]["rows"]),
            indices(&control),
            "{name}: Control"
        );
        assert_eq!(kinds["all"]["count"].as_u64(), Some(items.len() as u64));
        assert_eq!(page["details"].as_array().unwrap().len(), picks.len());
        for (pick, detail) in picks.iter().zip(page["details"].as_array().unwrap()) {
            let e = &items[*pick];
            let text = detail["text"].as_str().unwrap();
            if let Some(t) = e.get("text").and_then(Value::as_str) {
                let parsed = serde_json::from_str::<serde_json::Map<String, Value>>(t).is_ok();
                assert_eq!(detail["pretty"], parsed, "{name} #{pick}: JSON offered");
                let want = if parsed {
                    python(
                        "json.dumps(json.loads(d), indent=2, ensure_ascii=False)",
                        &json!(t),
                    )
                } else {
                    t.to_owned()
                };
                assert_eq!(text, want, "{name} #{pick}");
            } else {
                // Binary: offset, 16 bytes in hex, then as ASCII, a line per 16 bytes.
                let bytes = base64::Engine::decode(
                    &base64::engine::general_purpose::STANDARD,
                    e["data"].as_str().unwrap(),
                )
                .unwrap();
                let line = python(
                    "' '.join('%02x' % b for b in bytes(d[:8])) + '  ' + \
                     ' '.join('%02x' % b for b in bytes(d[8:16])) + '  |' + \
                     ''.join(chr(b) if 32 <= b < 127 else '.' for b in d[:16]) + '|'",
                    &json!(bytes),
                );
                let first_line = text.lines().next().unwrap();
                assert_eq!(first_line, format!("00000000  {line}"), "{name} #{pick}");
                assert_eq!(
                    text.lines().count(),
                    bytes.len().div_ceil(16),
                    "{name} #{pick}"
                );
            }
        }
    }
}

/// The indices of `items` that Python's `re.search(regex, item, re.I)` matches.
fn python_matches(items: &[String], regex: &str) -> Vec<u64> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, re, sys\n\
             d = json.load(sys.stdin)\n\
             r = re.compile(d['regex'], re.I)\n\
             print(json.dumps([i for i, t in enumerate(d['items']) if r.search(t)]))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            let input = serde_json::to_vec(&json!({"regex": regex, "items": items})).unwrap();
            child.stdin.take().expect("stdin").write_all(&input)?;
            child.wait_with_output()
        })
        .expect("python3 runs");
    serde_json::from_slice::<Vec<u64>>(&out.stdout).expect("python prints the indices")
}

fn numbers(v: &Value) -> Vec<u64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

#[test]
fn reports_of_real_captures_show_what_the_json_says() {
    // Chromium's own session, a compressed one, 20 at once, refused upgrades, pings.
    let cases: &[(&str, &[&str])] = &[
        ("chromium", &["hello", "w.rld", "^x+$"]),
        ("chromium-deflate", &["héllo", "EOF|done"]),
        ("concurrent", &["message [24]$", "CLIENT 0[37]"]),
        ("python-basic", &["^frag", "\\d{2}", "payload"]),
        ("python-deflate", &["e"]),
        ("rejected-403", &["."]),
    ];
    let dir = tempfile::tempdir().expect("temp dir");
    let shots = artifacts();
    let mut jobs = Vec::new();
    let mut expected = Vec::new();
    for (name, regexes) in cases {
        let capture = fixtures_dir().join(format!("{name}.pcap"));
        let page = dir.path().join(format!("{name}.html"));
        report(&capture, &page, &["--threads", "1"]);
        let events = run_wsnoop_json(&capture, &[]);
        let flows: BTreeSet<u64> = events
            .iter()
            .filter(|e| e["type"] == "flow" || e["type"] == "handshake")
            .filter_map(|e| e["flow"].as_u64())
            .collect();
        assert!(!flows.is_empty(), "{name}: the capture has connections");
        let busiest = *flows
            .iter()
            .max_by_key(|f| (items_of(&events, **f).len(), std::cmp::Reverse(**f)))
            .expect("a flow");
        let filters: Vec<Value> = regexes.iter().map(|r| json!([busiest, r])).collect();
        jobs.push(json!({
            "page": page,
            "shot": shots.join(format!("{name}.png")),
            "flows": flows.iter().collect::<Vec<_>>(),
            "filters": filters,
        }));
        expected.push((name, events, flows, busiest, regexes));
    }
    let seen = look(&jobs);
    let mut links_followed = 0;
    for ((name, events, flows, busiest, regexes), page) in expected.into_iter().zip(&seen) {
        assert_eq!(
            page["requests"],
            json!([]),
            "{name}: the page made requests"
        );
        assert_eq!(page["errors"], json!([]), "{name}: console errors");
        let listed: BTreeSet<u64> = numbers(&page["flows"]).into_iter().collect();
        assert_eq!(listed, flows, "{name}: connections listed");
        for flow in &flows {
            let items = items_of(&events, *flow);
            let shown = &page["clicked"][flow.to_string()];
            assert_eq!(
                shown["count"].as_u64(),
                Some(items.len() as u64),
                "{name}: messages and control frames of #{flow}"
            );
            // Small enough to be all in the window: every row, in order.
            assert_eq!(
                numbers(&shown["rows"]),
                (0..items.len() as u64).collect::<Vec<_>>(),
                "{name}: rows of #{flow}"
            );
        }
        let items = items_of(&events, busiest);
        for (regex, filtered) in regexes.iter().zip(page["filters"].as_array().unwrap()) {
            let want = python_matches(&items, regex);
            assert_eq!(
                numbers(&filtered["rows"]),
                want,
                "{name}: rows the filter {regex:?} leaves of #{busiest}"
            );
            assert_eq!(filtered["count"].as_u64(), Some(want.len() as u64));
        }
        let timeline = &page["timeline"];
        assert_eq!(timeline["svg"], 1, "{name}: one timeline");
        assert_eq!(
            timeline["gantt"].as_u64(),
            Some(flows.len() as u64),
            "{name}: a bar per connection"
        );
        if !items.is_empty() {
            assert!(
                timeline["bins"].as_u64() > Some(0),
                "{name}: rate bars drawn"
            );
        }
        let closes = events
            .iter()
            .filter(|e| e["type"] == "close" && e["flow"] == busiest && !e["code"].is_null())
            .count();
        if closes > 0 {
            assert!(
                timeline["markers"].as_u64() >= Some(1),
                "{name}: close marked"
            );
        }
        // The diagnosis, as `wsnoop diagnose --json` gives it, each example linked.
        let capture = fixtures_dir().join(format!("{name}.pcap"));
        let diagnosis = Command::new(wsnoop_bin())
            .args(["diagnose", "--json", "-r"])
            .arg(&capture)
            .output()
            .expect("wsnoop diagnose runs");
        let findings = common::parse_json_lines(&String::from_utf8_lossy(&diagnosis.stdout), name);
        let kinds: Vec<&Value> = findings.iter().map(|f| &f["kind"]).collect();
        assert_eq!(
            page["findings"]
                .as_array()
                .unwrap()
                .iter()
                .collect::<Vec<_>>(),
            kinds,
            "{name}"
        );
        let examples: Vec<u64> = findings
            .iter()
            .flat_map(|f| numbers(&f["flows"]))
            .filter(|f| flows.contains(f))
            .collect();
        let links = page["links"].as_array().unwrap();
        assert_eq!(
            links
                .iter()
                .map(|l| l["to"].as_u64().unwrap())
                .collect::<Vec<_>>(),
            examples,
            "{name}: example connections linked"
        );
        for link in links {
            assert_eq!(
                link["to"], link["selected"],
                "{name}: a link selects its connection"
            );
        }
        links_followed += links.len();
    }
    assert!(links_followed > 0, "some finding links a connection");
}

// ---------------------------------------------------------------------------------------------
// A capture built here: one connection, 100,000 messages, their texts known.

fn segment(from: ([u8; 4], u16), to: ([u8; 4], u16), seq: u32, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut p = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45, 0];
    p.extend_from_slice(&((40 + data.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]);
    p.extend_from_slice(&from.0);
    p.extend_from_slice(&to.0);
    p.extend_from_slice(&from.1.to_be_bytes());
    p.extend_from_slice(&to.1.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    p.extend_from_slice(data);
    p
}

/// `n` server messages "message 0" .. on one upgraded connection, many frames a segment.
fn many_messages(path: &Path, n: usize) {
    let client = ([10, 0, 0, 1], 40000);
    let server = ([10, 0, 0, 2], 8080);
    let request = "GET /many HTTP/1.1\r\nHost: server\r\nUpgrade: websocket\r\nConnection: \
                   Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                   Sec-WebSocket-Version: 13\r\n\r\n";
    // RFC 6455 1.3's example key and its accept value.
    let response = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: \
                    Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    let mut packets = vec![
        segment(client, server, 0, 0x02, b""),
        segment(server, client, 0, 0x12, b""),
        segment(client, server, 1, 0x18, request.as_bytes()),
        segment(server, client, 1, 0x18, response.as_bytes()),
    ];
    let mut seq = 1 + response.len() as u32;
    let mut chunk = Vec::new();
    for i in 0..n {
        let text = format!("message {i}");
        chunk.extend_from_slice(&[0x81, text.len() as u8]);
        chunk.extend_from_slice(text.as_bytes());
        if chunk.len() > 1300 || i + 1 == n {
            packets.push(segment(server, client, seq, 0x18, &chunk));
            seq += chunk.len() as u32;
            chunk.clear();
        }
    }
    let mut out = Vec::new();
    for field in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 262_144, 1] {
        out.extend_from_slice(&field.to_le_bytes());
    }
    for (i, p) in packets.iter().enumerate() {
        // A millisecond apart, from 2026-01-01.
        let micros = 1_767_225_600_000_000u64 + i as u64 * 1000;
        for field in [
            (micros / 1_000_000) as u32,
            (micros % 1_000_000) as u32,
            p.len() as u32,
            p.len() as u32,
        ] {
            out.extend_from_slice(&field.to_le_bytes());
        }
        out.extend_from_slice(p);
    }
    std::fs::write(path, out).expect("capture written");
}

#[test]
fn a_hundred_thousand_messages_are_windowed_and_all_there() {
    const N: u64 = 100_000;
    let dir = tempfile::tempdir().expect("temp dir");
    let capture = dir.path().join("many.pcap");
    many_messages(&capture, N as usize);
    let page = dir.path().join("many.html");
    report(&capture, &page, &[]);
    let size = std::fs::metadata(&page).expect("page written").len();
    // Proportional to what it shows: some tens of bytes a message, not kilobytes.
    assert!(size < N * 80, "{size} bytes for {N} messages");
    let seen = look(&[json!({
        "page": page,
        "shot": artifacts().join("many.png"),
        "flows": [0],
        "filters": [[0, "MESSAGE 9999\\d$"]],
        "scroll": 0,
    })]);
    let page = &seen[0];
    assert_eq!(page["errors"], json!([]));
    assert_eq!(page["requests"], json!([]));
    assert_eq!(page["clicked"]["0"]["count"].as_u64(), Some(N));
    let rows = numbers(&page["clicked"]["0"]["rows"]);
    assert!(
        !rows.is_empty() && rows.len() < 200,
        "{} rows in the DOM",
        rows.len()
    );
    assert_eq!(rows[0], 0);
    let after = numbers(&page["scrolled"]["after"]["rows"]);
    assert_eq!(
        after.last(),
        Some(&(N - 1)),
        "the end of the list, scrolled to"
    );
    assert!(after.len() < 200);
    // "message 99990" to "message 99999": what was written, messages 99990 to 99999.
    assert_eq!(
        numbers(&page["filters"][0]["rows"]),
        (N - 10..N).collect::<Vec<_>>()
    );
}

#[test]
fn what_the_caps_leave_out_is_said() {
    let dir = tempfile::tempdir().expect("temp dir");
    let capture = fixtures_dir().join("python-basic.pcap");
    let page = dir.path().join("cut.html");
    let har = dir.path().join("cut.har");
    let stderr = report(
        &capture,
        &page,
        &["--max-messages", "10", "--har", har.to_str().unwrap()],
    );
    let total = items_of(&run_wsnoop_json(&capture, &[]), 0).len() as u64;
    assert!(total > 10);
    let not_kept = total - 10;
    assert!(
        stderr.contains(&format!("{not_kept} messages and control frames not kept")),
        "{stderr}"
    );
    let har: Value = serde_json::from_slice(&std::fs::read(&har).unwrap()).unwrap();
    let entry = &har["log"]["entries"][0];
    assert_eq!(entry["_webSocketMessages"].as_array().unwrap().len(), 10);
    assert_eq!(entry["_wsnoop"]["messagesNotKept"].as_u64(), Some(not_kept));
    assert!(har["log"]["comment"].as_str().unwrap().contains("not kept"));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains(&format!("\"notKept\":{not_kept}")));
}

/// The data block of a report page, as JSON, without the time it was written.
fn page_data(page: &Path) -> Value {
    let html = std::fs::read_to_string(page).expect("page written");
    let start = r#"<script type="application/json" id="wsnoop-data">"#;
    let from = html.find(start).expect("the data block") + start.len();
    let to = from + html[from..].find("</script>").expect("its end");
    let mut data: Value = serde_json::from_str(&html[from..to]).expect("the data is JSON");
    data.as_object_mut().unwrap().remove("generated");
    data
}

#[test]
fn the_report_is_the_same_whatever_the_threads() {
    let dir = tempfile::tempdir().expect("temp dir");
    for name in ["concurrent", "python-deflate", "rejected-403"] {
        let capture = fixtures_dir().join(format!("{name}.pcap"));
        let mut seen = Vec::new();
        for threads in ["1", "2"] {
            let page = dir.path().join(format!("{name}-{threads}.html"));
            let har = dir.path().join(format!("{name}-{threads}.har"));
            report(
                &capture,
                &page,
                &["--threads", threads, "--har", har.to_str().unwrap()],
            );
            seen.push((page_data(&page), std::fs::read(&har).expect("har written")));
        }
        assert_eq!(seen[0], seen[1], "{name}: --threads 1 and 2");
        let conns = seen[0].0["conns"].as_array().unwrap();
        assert!(!conns.is_empty(), "{name}: connections in the data");
    }
}

#[test]
fn a_live_report_ends_at_ctrl_c_with_the_session_in_it() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    if !common::netns::is_root() {
        eprintln!("skipped: needs root for a network namespace");
        return;
    }
    let python = fixtures_dir().join(".venv/bin/python");
    assert!(
        python.exists(),
        "fixtures/.venv is missing: run `.ci/setup --test`"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let page = dir.path().join("live.html");
    let ns = common::netns::Netns::new("report");
    let mut wsnoop = ns
        .command(
            wsnoop_bin().to_str().unwrap(),
            // The duration only bounds a test that fails before its Ctrl-C.
            &[
                "report",
                "-i",
                "lo",
                "--duration",
                "60",
                "-o",
                page.to_str().unwrap(),
                "port",
                "9200",
            ],
        )
        .stderr(Stdio::piped())
        .spawn()
        .expect("wsnoop starts");
    let mut stderr = BufReader::new(wsnoop.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).expect("wsnoop says it records");
    assert!(line.contains("recording a report on lo"), "{line}");
    let server = manifest_dir().join("tests/browser/echo_server.py");
    let mut server = ns
        .command(
            python.to_str().unwrap(),
            &[server.to_str().unwrap(), "--port", "9200"],
        )
        .stdout(Stdio::piped())
        .spawn()
        .expect("the server starts");
    let mut ready = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut ready)
        .expect("the server says it is ready");
    assert_eq!(ready.trim(), "ready");
    let client = "from websockets.sync.client import connect\n\
                  with connect('ws://127.0.0.1:9200/live', subprotocols=['chat.v1']) as ws:\n\
                  \x20   for m in ['one', 'two', b'\\x00\\x01three']:\n\
                  \x20       ws.send(m)\n\
                  \x20       assert ws.recv() == m\n";
    let ran = ns
        .command(python.to_str().unwrap(), &["-c", client])
        .status()
        .expect("the client runs");
    assert!(ran.success());
    let _ = server.wait();
    // Ctrl-C: wsnoop drains what the kernel holds, then writes the page.
    // SAFETY: a signal to our own child, by its pid.
    unsafe { libc::kill(wsnoop.id() as i32, libc::SIGINT) };
    let status = wsnoop.wait().expect("wsnoop ends");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(status.success(), "{rest}");
    let data = page_data(&page);
    let conns = data["conns"].as_array().unwrap();
    assert_eq!(conns.len(), 1, "{rest}");
    let c = &conns[0];
    assert_eq!(c["uri"], "/live");
    assert_eq!(c["protocol"], "chat.v1");
    let items = c["items"].as_array().unwrap();
    // [t, dir, opcode, len, wire_len, flags, data, close code]: the three messages each way,
    // the server's ping and its pong, the closes.
    let data_items: Vec<(u64, u64, &str)> = items
        .iter()
        .filter(|i| i[2].as_u64() < Some(8))
        .map(|i| {
            (
                i[1].as_u64().unwrap(),
                i[2].as_u64().unwrap(),
                i[6].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        data_items,
        vec![
            (0, 1, "one"),
            (1, 1, "one"),
            (0, 1, "two"),
            (1, 1, "two"),
            (0, 2, "AAF0aHJlZQ=="),
            (1, 2, "AAF0aHJlZQ=="),
        ]
    );
    let controls: Vec<u64> = items
        .iter()
        .filter_map(|i| i[2].as_u64())
        .filter(|op| *op >= 8)
        .collect();
    assert_eq!(controls, vec![9, 10, 8, 8]);
}
