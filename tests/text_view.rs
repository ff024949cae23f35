//! The text view a troubleshooter reads (issue 17): a browser's compressed session reads as
//! its messages, each compressed message's text on its last frame, as the senders wrote it
//! (the fixtures' sidecars), in the default frame view and the same with threads.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;

fn text_output(capture: &str, args: &[&str]) -> String {
    let out = Command::new(common::wsnoop_bin())
        .arg("-r")
        .arg(common::fixtures_dir().join(capture))
        .args(args)
        .output()
        .expect("run wsnoop");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// The texts shown as inflated, per (client port, direction), in order.
fn inflated_texts(output: &str) -> BTreeMap<(u16, &'static str), Vec<String>> {
    let mut texts: BTreeMap<_, Vec<String>> = BTreeMap::new();
    for line in output.lines() {
        let Some((head, text)) = line.split_once(" inflated \"") else {
            continue;
        };
        let text = unescape(text.strip_suffix('"').expect("a quoted text, not cut"));
        // "TIME #N SRC > DST text ...": the client is the side whose port is not the server's.
        let fields: Vec<&str> = head.split(' ').collect();
        let port = |addr: &str| addr.rsplit(':').next().unwrap().parse::<u16>().unwrap();
        let (src, dst) = (port(fields[2]), port(fields[4]));
        let key = if fields.contains(&"masked") {
            (src, "c2s")
        } else {
            (dst, "s2c")
        };
        texts.entry(key).or_default().push(text);
    }
    texts
}

/// Undoes the text view's escapes (README: `\n`, `\r`, `\t`, `\"`, `\\`, `\xHH`, `\u{H}`).
fn unescape(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                out.push(char::from(u8::from_str_radix(&hex, 16).expect("\\xHH")));
            }
            Some('u') => {
                let hex: String = chars.by_ref().skip(1).take_while(|&c| c != '}').collect();
                out.push(char::from_u32(u32::from_str_radix(&hex, 16).unwrap()).unwrap());
            }
            Some(other) => out.push(other),
            None => panic!("a lone backslash"),
        }
    }
    out
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What the sidecar says each client sent and received as compressed text messages.
fn sent_texts(fixture: &str) -> BTreeMap<(u16, &'static str), Vec<String>> {
    let path = common::fixtures_dir().join(format!("{fixture}.expected.json"));
    let sidecar: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut texts: BTreeMap<_, Vec<String>> = BTreeMap::new();
    for c in sidecar["connections"].as_array().unwrap() {
        let port = c["client_port"].as_u64().unwrap() as u16;
        for m in c["messages"].as_array().unwrap() {
            if m["opcode"] != "text" {
                continue;
            }
            let dir = if m["dir"] == "c2s" { "c2s" } else { "s2c" };
            // Long texts are in the sidecar as their SHA-256.
            let text = match m["text"].as_str() {
                Some(t) => t.to_string(),
                None => format!("sha256:{}", m["sha256"].as_str().expect("text or sha256")),
            };
            texts.entry((port, dir)).or_default().push(text);
        }
    }
    texts
}

#[test]
fn a_browsers_compressed_session_shows_its_texts_in_the_frame_view() {
    for fixture in ["chromium-deflate", "python-deflate"] {
        let capture = format!("{fixture}.pcap");
        // Whole texts: nothing cut at the payload limit.
        let output = text_output(&capture, &["--max-payload", "10000000"]);
        let shown = inflated_texts(&output);
        let sent = sent_texts(fixture);
        assert!(!shown.is_empty(), "{fixture}: no inflated text shown");
        for (key, texts) in &shown {
            let want = sent.get(key).expect("a direction the sidecar has");
            assert_eq!(texts.len(), want.len(), "{fixture} {key:?}: how many");
            for (got, want) in texts.iter().zip(want) {
                match want.strip_prefix("sha256:") {
                    Some(digest) => assert_eq!(&sha256_hex(got), digest, "{fixture} {key:?}"),
                    None => assert_eq!(got, want, "{fixture} {key:?}"),
                }
            }
        }
        // Every compressed text message the peers sent is shown (none in these fixtures is
        // sent uncompressed).
        assert_eq!(
            shown.len(),
            sent.len(),
            "{fixture}: every direction with texts"
        );
        // The frame view prints no message lines; --show all does, and frames the same.
        assert!(!output.contains("TEXT MESSAGE"), "{fixture}");
        let all = text_output(&capture, &["--show", "all", "--max-payload", "10000000"]);
        assert_eq!(inflated_texts(&all), shown, "{fixture}: --show all");
        assert!(all.contains("TEXT MESSAGE"), "{fixture}");
        for threads in ["2", "3"] {
            assert_eq!(
                text_output(&capture, &["--threads", threads]),
                text_output(&capture, &["--threads", "1"]),
                "{fixture}: --threads {threads}"
            );
        }
    }
}
