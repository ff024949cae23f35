//! `--har FILE`: HAR 1.2 in Chrome's form for WebSockets.
//!
//! Against Chrome itself: a real session between headless Chromium and a python websockets
//! server in a private network namespace, captured by tcpdump while DevTools' protocol reports
//! the same session (tests/browser/har_session.js makes its HAR entry as DevTools' export
//! does); wsnoop's HAR of the capture must have the same messages (type, opcode, data, order),
//! the same URL and status, and every header it writes with Chrome's value. That test needs
//! root, node with tests/browser/node_modules and fixtures/.venv (`.ci/setup --test`); it
//! skips itself without root, as the live tests do, and fails without the rest.
//!
//! Against the JSON Lines of the same capture, for the fixtures: every message and control
//! frame, in order, at its time; and the same file whatever `--threads`, with the printed
//! output unchanged by `--har`.

mod common;

use std::path::Path;
use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use common::netns::{Netns, is_root};
use common::{fixtures_dir, manifest_dir, parse_json_lines, wsnoop_bin};

fn wsnoop(args: &[&str]) -> std::process::Output {
    let out = Command::new(wsnoop_bin())
        .args(args)
        .output()
        .expect("wsnoop runs");
    assert!(
        out.status.success(),
        "wsnoop {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("file written")).expect("valid JSON")
}

fn messages(entry: &Value) -> &Vec<Value> {
    entry["_webSocketMessages"]
        .as_array()
        .expect("_webSocketMessages")
}

/// The epoch seconds of a JSON Lines `ts`.
fn ts(e: &Value) -> f64 {
    e["ts"].as_f64().expect("ts")
}

#[test]
fn har_of_fixtures_holds_every_message_and_control_frame_of_the_json() {
    let dir = tempfile::tempdir().expect("temp dir");
    for name in [
        "chromium",
        "python-basic",
        "python-deflate",
        "concurrent",
        "rejected-403",
    ] {
        let capture = fixtures_dir().join(format!("{name}.pcap"));
        let capture = capture.to_str().unwrap();
        let har_path = dir.path().join(format!("{name}.har"));
        let har = har_path.to_str().unwrap();
        let printed = wsnoop(&["-r", capture, "--json", "--threads", "1", "--har", har]);
        let plain = wsnoop(&["-r", capture, "--json", "--threads", "1"]);
        assert_eq!(
            printed.stdout, plain.stdout,
            "{name}: --har changed the output"
        );
        let threaded_path = dir.path().join(format!("{name}.threads.har"));
        let threaded = wsnoop(&[
            "-r",
            capture,
            "--json",
            "--threads",
            "2",
            "--har",
            threaded_path.to_str().unwrap(),
        ]);
        assert_eq!(
            threaded.stdout, plain.stdout,
            "{name}: --threads 2 --har output"
        );
        assert_eq!(
            std::fs::read(&threaded_path).unwrap(),
            std::fs::read(&har_path).unwrap(),
            "{name}: the HAR file differs with --threads 2"
        );
        // -q prints nothing, and the HAR file still has everything.
        let quiet_path = dir.path().join(format!("{name}.quiet.har"));
        let quiet = wsnoop(&["-r", capture, "-q", "--har", quiet_path.to_str().unwrap()]);
        assert!(quiet.stdout.is_empty());
        assert_eq!(read_json(&quiet_path), read_json(&har_path), "{name}: -q");

        let events = parse_json_lines(&String::from_utf8_lossy(&plain.stdout), name);
        let har = read_json(&har_path);
        assert_eq!(har["log"]["version"], "1.2");
        let entries = har["log"]["entries"].as_array().expect("entries");
        let handshakes: Vec<&Value> = events.iter().filter(|e| e["type"] == "handshake").collect();
        assert_eq!(
            entries.len(),
            handshakes.len(),
            "{name}: an entry per handshake"
        );
        for (entry, hs) in entries.iter().zip(&handshakes) {
            let flow = hs["flow"].as_u64().unwrap();
            assert_eq!(entry["_resourceType"], "websocket");
            assert_eq!(entry["_wsnoop"]["flow"].as_u64(), Some(flow));
            assert_eq!(entry["response"]["status"], hs["status"]);
            assert_eq!(entry["response"]["statusText"], hs["reason"]);
            let host = hs["host"].as_str().unwrap();
            assert_eq!(
                entry["request"]["url"],
                format!("ws://{host}{}", hs["uri"].as_str().unwrap())
            );
            let want: Vec<&Value> = events
                .iter()
                .filter(|e| e["flow"] == flow)
                .filter(|e| {
                    e["type"] == "message"
                        || (e["type"] == "frame"
                            && ["close", "ping", "pong"].contains(&e["opcode"].as_str().unwrap()))
                })
                .collect();
            let got = messages(entry);
            assert_eq!(got.len(), want.len(), "{name}: messages of #{flow}");
            for (m, e) in got.iter().zip(&want) {
                let dir = if e["dir"] == "c2s" { "send" } else { "receive" };
                assert_eq!(m["type"], dir);
                let opcode = match e["opcode"].as_str().unwrap() {
                    "text" => 1,
                    "binary" => 2,
                    "close" => 8,
                    "ping" => 9,
                    "pong" => 10,
                    other => panic!("opcode {other}"),
                };
                assert_eq!(m["opcode"], opcode);
                let data = e.get("text").or_else(|| e.get("data")).unwrap();
                assert_eq!(&m["data"], data, "{name}: data of #{flow}");
                assert!((m["time"].as_f64().unwrap() - ts(e)).abs() < 1e-6);
                let truncated = e["truncated"].as_bool().unwrap();
                assert_eq!(m.get("_truncated").is_some(), truncated);
                if truncated {
                    assert_eq!(m["_length"], e["len"]);
                }
            }
        }
    }
}

#[test]
fn har_changes_nothing_that_is_printed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let har = dir.path().join("x.har");
    let har = har.to_str().unwrap();
    for name in ["python-basic", "concurrent"] {
        let capture = fixtures_dir().join(format!("{name}.pcap"));
        let capture = capture.to_str().unwrap();
        for extra in [
            &["--show", "messages"][..],
            &["--show", "frames", "--json"],
            &["--summary"],
            &["--format", "eve"],
        ] {
            for threads in ["1", "2"] {
                let mut args = vec!["-r", capture, "--threads", threads];
                args.extend_from_slice(extra);
                let plain = wsnoop(&args);
                args.extend_from_slice(&["--har", har]);
                let with_har = wsnoop(&args);
                assert_eq!(
                    String::from_utf8_lossy(&with_har.stdout),
                    String::from_utf8_lossy(&plain.stdout),
                    "{name} {extra:?} --threads {threads}"
                );
                let entries = read_json(Path::new(har))["log"]["entries"].clone();
                assert!(
                    !messages(&entries[0]).is_empty(),
                    "{name}: the HAR has messages"
                );
            }
        }
    }
}

#[test]
fn har_matches_chromiums_own_view_of_the_same_session() {
    if !is_root() {
        eprintln!("skipped: needs root for a network namespace and tcpdump");
        return;
    }
    let browser = manifest_dir().join("tests/browser");
    assert!(
        browser.join("node_modules/playwright-core").is_dir(),
        "tests/browser/node_modules is missing: run `.ci/setup --test`"
    );
    let python = fixtures_dir().join(".venv/bin/python");
    assert!(
        python.exists(),
        "fixtures/.venv is missing: run `.ci/setup --test`"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    // tcpdump drops to its own user: it must be able to write there.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let ns = Netns::new("har");
    let out = ns
        .command(
            "node",
            &[
                browser.join("har_session.js").to_str().unwrap(),
                dir.path().to_str().unwrap(),
                "9100",
                python.to_str().unwrap(),
            ],
        )
        .current_dir(&browser)
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "the Chromium session failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let capture = dir.path().join("capture.pcap");
    let ours_path = dir.path().join("wsnoop.har");
    wsnoop(&[
        "-r",
        capture.to_str().unwrap(),
        "-q",
        "--max-payload",
        "1000000",
        "--har",
        ours_path.to_str().unwrap(),
    ]);
    let chrome = read_json(&dir.path().join("chrome.har"));
    let ours = read_json(&ours_path);
    let sent = read_json(&dir.path().join("sent.json"));
    let chrome = &chrome["log"]["entries"].as_array().unwrap()[..];
    let ours = &ours["log"]["entries"].as_array().unwrap()[..];
    assert_eq!((chrome.len(), ours.len()), (1, 1), "one session");
    let (chrome, ours) = (&chrome[0], &ours[0]);

    // DevTools' record is the session the page ran: what the page sent, each echoed.
    let chrome_messages = messages(chrome);
    let sent = sent.as_array().unwrap();
    assert_eq!(chrome_messages.len(), 2 * sent.len());
    for (i, s) in sent.iter().enumerate() {
        let data = s.get("text").or_else(|| s.get("binary")).unwrap();
        assert_eq!(&chrome_messages[2 * i]["data"], data);
        assert_eq!(chrome_messages[2 * i]["type"], "send");
        assert_eq!(&chrome_messages[2 * i + 1]["data"], data);
    }

    assert_eq!(ours["_resourceType"], "websocket");
    assert_eq!(ours["request"]["url"], chrome["request"]["url"]);
    assert_eq!(ours["request"]["method"], chrome["request"]["method"]);
    assert_eq!(ours["response"]["status"], chrome["response"]["status"]);
    assert_eq!(
        ours["response"]["statusText"],
        chrome["response"]["statusText"]
    );
    for part in ["request", "response"] {
        let theirs = chrome[part]["headers"].as_array().unwrap();
        let mine = ours[part]["headers"].as_array().unwrap();
        assert!(mine.len() >= 4, "{part}: headers written");
        for h in mine {
            let name = h["name"].as_str().unwrap();
            let found = theirs.iter().find(|t| {
                t["name"].as_str().unwrap().eq_ignore_ascii_case(name) && t["value"] == h["value"]
            });
            assert!(
                found.is_some(),
                "{part} header {h} is not Chrome's: {theirs:?}"
            );
        }
    }

    // The data messages are Chrome's, in order; the control frames are what DevTools hides.
    let our_messages = messages(ours);
    let data: Vec<&Value> = our_messages
        .iter()
        .filter(|m| m["opcode"] == 1 || m["opcode"] == 2)
        .collect();
    if data.len() != chrome_messages.len() {
        let text = wsnoop(&["-r", capture.to_str().unwrap(), "--show", "all"]);
        panic!(
            "{} data messages in the capture, {} in DevTools' record; tcpdump said: {}\nwsnoop \
             read: {}",
            data.len(),
            chrome_messages.len(),
            std::fs::read_to_string(dir.path().join("tcpdump.txt")).unwrap_or_default(),
            String::from_utf8_lossy(&text.stdout)
        );
    }
    for (i, (m, c)) in data.iter().zip(chrome_messages).enumerate() {
        for field in ["type", "opcode", "data"] {
            assert_eq!(m[field], c[field], "message {i}: {field}");
        }
        // The same clock on both sides of the loopback: capture time and DevTools' time agree
        // within what a browser takes to hand a frame over.
        let gap = (m["time"].as_f64().unwrap() - c["time"].as_f64().unwrap()).abs();
        assert!(gap < 1.0, "message {i}: {gap} s between the two times");
    }
    let controls: Vec<(String, u64, Vec<u8>)> = our_messages
        .iter()
        .filter(|m| m["opcode"].as_u64() >= Some(8))
        .map(|m| {
            (
                m["type"].as_str().unwrap().to_owned(),
                m["opcode"].as_u64().unwrap(),
                STANDARD.decode(m["data"].as_str().unwrap()).unwrap(),
            )
        })
        .collect();
    // tests/browser/echo_server.py pings once; the page closes with 1000 "bye", echoed.
    let close = [&1000u16.to_be_bytes()[..], b"bye"].concat();
    assert_eq!(
        controls,
        vec![
            ("receive".into(), 9, b"wsnoop-ping".to_vec()),
            ("send".into(), 10, b"wsnoop-ping".to_vec()),
            ("send".into(), 8, close.clone()),
            ("receive".into(), 8, close),
        ]
    );
}
