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
        // With --har, threads hand the writer events, not text: the same lines.
        let plain = text_output(&capture, &[]);
        assert!(plain.contains(" inflated "), "{fixture}");
        let har = tempfile::NamedTempFile::new().unwrap();
        let har = har.path().to_str().unwrap();
        for threads in ["1", "2"] {
            assert_eq!(
                text_output(&capture, &["--threads", threads, "--har", har]),
                plain,
                "{fixture}: --har --threads {threads}"
            );
        }
    }
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(common::wsnoop_bin())
        .args(args)
        .output()
        .expect("run wsnoop")
}

fn fixture(name: &str) -> String {
    common::fixtures_dir()
        .join(name)
        .to_str()
        .unwrap()
        .to_string()
}

/// The JSON events of the lines text prints by default (handshakes, frames, closes, anomalies:
/// not messages), as capture times in nanoseconds.
fn json_times(capture: &str) -> Vec<i128> {
    let out = run(&["-r", capture, "--json", "--show", "frames"]);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("{\"type\":\"flow\""))
        .map(|l| {
            // The capture's 9 digits, exact: the number as written, not as an f64.
            let at = l.find("\"ts\":").unwrap() + 5;
            let raw = &l[at..at + l[at..].find(',').unwrap()];
            let (s, f) = raw.split_once('.').unwrap_or((raw, "0"));
            s.parse::<i128>().unwrap() * 1_000_000_000
                + format!("{f:0<9}")[..9].parse::<i128>().unwrap()
        })
        .collect()
}

fn first_words(output: &[u8], n: usize) -> Vec<String> {
    String::from_utf8_lossy(output)
        .lines()
        .map(|l| l.split(' ').take(n).collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn tcpdumps_time_flags() {
    let capture = fixture("python-basic.pcap");
    let times = json_times(&capture);
    assert!(times.len() > 10);
    let secs = |t: i128| format!("{}.{:09}", t / 1_000_000_000, t % 1_000_000_000);
    // -tt: seconds since the epoch, as the JSON's ts.
    let tt = first_words(&run(&["-r", &capture, "-tt"]).stdout, 1);
    assert_eq!(tt, times.iter().map(|&t| secs(t)).collect::<Vec<_>>());
    // -ttt: since the previous line; -ttttt: since the first.
    let ttt = first_words(&run(&["-r", &capture, "-ttt"]).stdout, 1);
    let deltas: Vec<String> = times
        .iter()
        .enumerate()
        .map(|(i, &t)| secs(t - times[i.saturating_sub(1)]))
        .collect();
    assert_eq!(ttt, deltas);
    let ttttt = first_words(&run(&["-r", &capture, "-ttttt"]).stdout, 1);
    assert_eq!(
        ttttt,
        times
            .iter()
            .map(|&t| secs(t - times[0]))
            .collect::<Vec<_>>()
    );
    // -tttt --utc: the date and time `date -u` gives for the same second.
    let tttt = first_words(&run(&["-r", &capture, "-tttt", "--utc"]).stdout, 2);
    let first = times[0];
    let date = Command::new("date")
        .args(["-u", "-d", &format!("@{}", first / 1_000_000_000), "+%F %T"])
        .output()
        .unwrap();
    let want = format!(
        "{}.{:09}",
        String::from_utf8(date.stdout).unwrap().trim(),
        first % 1_000_000_000
    );
    assert_eq!(tttt[0], want);
    // -t: no time, the line starts with the connection.
    let t = run(&["-r", &capture, "-t"]).stdout;
    assert!(
        String::from_utf8_lossy(&t)
            .lines()
            .all(|l| l.starts_with('#'))
    );
    // -n, -nn, -l, -U change nothing wsnoop prints.
    let plain = run(&["-r", &capture]).stdout;
    for flags in [&["-n"][..], &["-nn"], &["-l"], &["-U"], &["-n", "-l"]] {
        let mut args = vec!["-r", capture.as_str()];
        args.extend_from_slice(flags);
        assert_eq!(run(&args).stdout, plain, "{flags:?}");
    }
}

#[test]
fn hex_and_ascii_dumps_are_the_payloads() {
    let capture = fixture("node-ws.pcap");
    let out = String::from_utf8(run(&["-r", &capture, "-X"]).stdout).unwrap();
    let json =
        String::from_utf8(run(&["-r", &capture, "--json", "--show", "frames"]).stdout).unwrap();
    let frames: Vec<Value> = json
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["type"] == "frame")
        .collect();
    // Each frame line's dump, decoded from its hex columns.
    let mut dumps: Vec<Vec<u8>> = Vec::new();
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("\t0x") {
            let hex: String = rest[6..46].chars().filter(|c| !c.is_whitespace()).collect();
            let bytes =
                (0..hex.len() / 2).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap());
            dumps
                .last_mut()
                .expect("a line before its dump")
                .extend(bytes);
        } else if line.contains(" len=") && !line.contains("handshake") {
            dumps.push(Vec::new());
        }
    }
    assert_eq!(dumps.len(), frames.len());
    let mut texts = 0;
    for (dump, frame) in dumps.iter().zip(&frames) {
        if let Some(text) = frame["text"].as_str() {
            assert_eq!(dump, text.as_bytes());
            texts += 1;
        }
    }
    assert!(texts > 0);
}

#[test]
fn mistakes_get_a_word() {
    let capture = fixture("python-basic.pcap");
    // A Wireshark display filter gets a BPF hint.
    for filter in ["websocket", "tcp.port == 9001"] {
        let out = run(&["-r", &capture, filter]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("BPF capture filter"), "{filter}: {err}");
        assert!(err.contains("tcp port"), "{filter}: {err}");
    }
    // -w - with events on standard output too is refused; with -q it is a capture.
    let out = run(&["-r", &capture, "-w", "-"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("-q"));
    let out = run(&["-r", &capture, "-w", "-", "-q"]);
    assert!(out.status.success());
    assert_eq!(
        out.stdout,
        std::fs::read(&capture).unwrap(),
        "the same pcap, packet for packet"
    );
    // A capture with no WebSocket says what it saw, and points at diagnose.
    let tls = fixture("tls/tls13-python.pcap");
    let out = run(&["-r", &tls]);
    let err = String::from_utf8_lossy(&out.stderr);
    // Only why each connection stays encrypted, no frame.
    assert!(!String::from_utf8_lossy(&out.stdout).contains(" len="));
    assert!(
        err.contains("no WebSocket") && err.contains("TLS") && err.contains("diagnose"),
        "{err}"
    );
    // Connections ended by --max-flows are said once.
    let out = run(&["-r", &fixture("concurrent.pcap"), "--max-flows", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("--max-flows").count(), 1, "{err}");
}

#[test]
fn a_session_the_capture_ends_in_is_still_open() {
    // The first 100 packets of a session that goes on (and closes) after them.
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.pcap");
    let status = Command::new("editcap")
        .args([
            "-r",
            &fixture("python-basic.pcap"),
            cut.to_str().unwrap(),
            "1-100",
        ])
        .status()
        .expect("editcap (tshark's package)");
    assert!(status.success());
    let text = String::from_utf8(run(&["-r", cut.to_str().unwrap()]).stdout).unwrap();
    let last = text.lines().last().unwrap();
    assert!(
        last.ends_with("still open at the end of the capture"),
        "{last}"
    );
    assert!(!text.contains("closed"), "{text}");
    // The whole session closes, and says how.
    let whole = String::from_utf8(run(&["-r", &fixture("python-basic.pcap")]).stdout).unwrap();
    assert!(whole.lines().any(|l| l.contains(" closed by ")), "{whole}");
}

#[test]
fn json_texts_read_as_json_and_pretty_prints_them() {
    let sent = sent_texts("signalling-8080");
    let json_texts: Vec<&String> = sent
        .values()
        .flatten()
        .filter(|t| t.starts_with('{'))
        .collect();
    assert!(json_texts.len() > 5);
    let out = String::from_utf8(run(&["-r", &fixture("signalling-8080.pcap")]).stdout).unwrap();
    // Each JSON text the peers sent is on a frame line as it was sent: no quotes, no escapes.
    for text in &json_texts {
        assert!(
            out.lines().any(|l| l.ends_with(&format!(" {text}"))),
            "{text} not shown as it was sent"
        );
    }
    // --pretty: the indented lines under a frame line are the same JSON value.
    let pretty =
        String::from_utf8(run(&["-r", &fixture("signalling-8080.pcap"), "--pretty"]).stdout)
            .unwrap();
    let lines: Vec<&str> = pretty.lines().collect();
    let mut checked = 0;
    let mut i = 0;
    while i < lines.len() {
        let Some(at) = lines[i].find(" {") else {
            i += 1;
            continue;
        };
        let head: Value = serde_json::from_str(&lines[i][at + 1..]).expect("a JSON text");
        let block: Vec<&str> = lines[i + 1..]
            .iter()
            .take_while(|l| l.starts_with("    "))
            .copied()
            .collect();
        let body: Value = serde_json::from_str(&block.join("\n")).expect("pretty JSON");
        assert_eq!(head, body);
        checked += 1;
        i += 1 + block.len();
    }
    assert!(checked >= json_texts.len(), "{checked}");
}

/// The full run's JSON events, as lines and values.
fn json_lines(capture: &str, extra: &[&str]) -> Vec<(String, Value)> {
    let mut args = vec!["-r", capture, "--json"];
    args.extend_from_slice(extra);
    String::from_utf8(run(&args).stdout)
        .unwrap()
        .lines()
        .map(|l| (l.to_string(), serde_json::from_str(l).unwrap()))
        .collect()
}

#[test]
fn selecting_connections_and_directions_keeps_their_numbers() {
    let capture = fixture("concurrent.pcap");
    let all = json_lines(&capture, &[]);
    let pick = |keep: &dyn Fn(&Value) -> bool| -> Vec<String> {
        all.iter()
            .filter(|(_, v)| keep(v))
            .map(|(l, _)| l.clone())
            .collect()
    };
    let lines = |extra: &[&str]| -> Vec<String> {
        json_lines(&capture, extra)
            .into_iter()
            .map(|(l, _)| l)
            .collect()
    };
    // --flow: that connection's events, byte for byte as in the full run, with threads too.
    let want = pick(&|v| v["flow"] == 2);
    assert!(want.len() > 5);
    assert_eq!(lines(&["--flow", "2"]), want);
    assert_eq!(lines(&["--flow", "2", "--threads", "3"]), want);
    assert_eq!(
        lines(&["--flow", "2", "--flow", "5"]),
        pick(&|v| v["flow"] == 2 || v["flow"] == 5)
    );
    // --client: by address and port.
    let client = all.iter().find(|(_, v)| v["flow"] == 1).unwrap().1["client"].clone();
    let client = client.as_str().unwrap();
    assert_eq!(
        lines(&["--client", client]),
        pick(&|v| v["client"] == client)
    );
    // --uri: the connections whose upgrade asked for it.
    let flows_with_uri: Vec<Value> = all
        .iter()
        .filter(|(_, v)| {
            v["type"] == "handshake" && v["uri"].as_str().unwrap().contains("/client/01")
        })
        .map(|(_, v)| v["flow"].clone())
        .collect();
    assert!(!flows_with_uri.is_empty());
    assert_eq!(
        lines(&["--uri", "/client/01"]),
        pick(&|v| flows_with_uri.contains(&v["flow"]))
    );
    // --dir: frames, messages and anomalies of that direction; the rest of the connection stays.
    assert_eq!(
        lines(&["--dir", "s2c"]),
        pick(&|v| !matches!(v["type"].as_str(), Some("frame" | "message")) || v["dir"] == "s2c")
    );
    // Text output selects the same: every event line is connection 2's.
    let text = String::from_utf8(run(&["-r", &capture, "--flow", "2"]).stdout).unwrap();
    assert!(!text.is_empty());
    assert!(text.lines().all(|l| l.contains(" #2 ")), "{text}");
    let out = run(&["-r", &capture, "--client", "not-an-address"]);
    assert!(!out.status.success());
}

#[test]
fn a_close_frame_shows_its_code_and_reason_not_its_bytes() {
    // The signalling session's peers close with 1000 "bye" and 1000 "peer left" (the sidecar).
    let out = String::from_utf8(run(&["-r", &fixture("signalling-8080.pcap")]).stdout).unwrap();
    let closes: Vec<&str> = out.lines().filter(|l| l.contains(" close fin")).collect();
    assert_eq!(closes.len(), 4, "{out}");
    for line in closes {
        assert!(
            line.ends_with("code=1000 reason=\"bye\"")
                || line.ends_with("code=1000 reason=\"peer left\""),
            "{line}"
        );
    }
}

/// Checks each binary payload's line against the JSON of the same run, decoded by Python:
/// the line ends with the first 16 bytes as `hexdump -C` prints a row (hex, then the ASCII
/// column between bars, a dot for anything not printable), and `...` when there is more.
const BINARY_ROWS: &str = r#"
import base64, json, sys
events = [json.loads(l) for l in open(sys.argv[1])]
events = [e for e in events if e['type'] in ('frame', 'message')]
lines = [l.rstrip('\n') for l in open(sys.argv[2], encoding='utf-8')
         if ' len=' in l and ' handshake ' not in l]
assert len(lines) == len(events), (len(lines), len(events))
checked = 0
for i, (e, line) in enumerate(zip(events, lines)):
    shown = e
    if ' inflated' in line:
        # A compressed message's last frame shows the message that follows it.
        shown = events[i + 1]
    if 'data' not in shown or shown.get('opcode') == 'close' or not shown['data']:
        continue
    data = base64.b64decode(shown['data'])
    head = data[:16]
    want = ' ' + ' '.join('%02x' % b for b in head) + ' |'
    want += ''.join(chr(b) if 0x20 <= b < 0x7f else '.' for b in head) + '|'
    if len(data) > 16 or shown['truncated']:
        want += '...'
    assert line.endswith(want), (line, want)
    checked += 1
print(checked)
"#;

#[test]
fn binary_payloads_show_hex_and_ascii_on_their_line() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["node-ws", "chromium-deflate", "python-deflate"] {
        let capture = fixture(&format!("{name}.pcap"));
        let json = dir.path().join(format!("{name}.json"));
        let text = dir.path().join(format!("{name}.txt"));
        std::fs::write(&json, run(&["-r", &capture, "--json"]).stdout).unwrap();
        std::fs::write(&text, run(&["-r", &capture, "--show", "all"]).stdout).unwrap();
        let out = Command::new("python3")
            .args(["-c", BINARY_ROWS])
            .arg(&json)
            .arg(&text)
            .output()
            .expect("python3 (needed for this test)");
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let checked: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        assert!(checked >= 2, "{name}: only {checked} binary payloads");
    }
}

/// The records of a classic pcap file, after its 24-byte header.
fn pcap_records(bytes: &[u8]) -> Vec<&[u8]> {
    let little = bytes[..4] == [0xd4, 0xc3, 0xb2, 0xa1] || bytes[..4] == [0x4d, 0x3c, 0xb2, 0xa1];
    let word = |at: usize| {
        let b: [u8; 4] = bytes[at..at + 4].try_into().unwrap();
        if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let mut records = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let len = 16 + word(at + 8) as usize;
        records.push(&bytes[at..at + len]);
        at += len;
    }
    records
}

/// Writes the pcap header and `capture`'s packets up to the first that holds `wire` into
/// wsnoop's standard input, keeps the pipe open and waits for a line containing `want` (and
/// not `masked`); closes the pipe after. Says how long the line took after the last packet.
/// The bound only ends a run that would otherwise wait forever.
fn seen_while_the_pipe_is_open(capture: &str, wire: &[u8], args: &[&str], want: &str) -> bool {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    let bytes = std::fs::read(fixture(capture)).unwrap();
    let records = pcap_records(&bytes);
    let last = records
        .iter()
        .position(|r| r.windows(wire.len()).any(|w| w == wire))
        .expect("the frame in a packet");
    assert!(last + 2 < records.len(), "packets left unwritten");
    let mut child = Command::new(common::wsnoop_bin())
        .args(["-r", "-"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("wsnoop starts");
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.expect("a line")).is_err() {
                break;
            }
        }
    });
    stdin.write_all(&bytes[..24]).unwrap();
    for r in &records[..=last] {
        stdin.write_all(r).unwrap();
    }
    stdin.flush().unwrap();
    let written = Instant::now();
    let deadline = written + Duration::from_secs(20);
    let seen = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(want) && !line.contains("masked") => break true,
            Ok(_) => {}
            Err(_) => break false,
        }
    };
    // The latency is for the report, not an assertion.
    eprintln!(
        "{capture} {args:?}: {want:?} {:?} after the last packet was written",
        written.elapsed()
    );
    drop(stdin);
    assert!(child.wait().unwrap().success());
    reader.join().unwrap();
    seen
}

/// A slow writer into `-r -` (tcpdump -U -w - | wsnoop -r -): the pcap header and the
/// packets up to the server's first frame, then the pipe stays open; the frame's line must
/// come while it is open.
#[test]
fn a_slow_writer_into_standard_input_sees_frames_before_it_closes() {
    // The server's first text, as the sidecar says it sent it, and its frame on the wire
    // (unmasked, so findable in the packets).
    let sidecar: Value = serde_json::from_slice(
        &std::fs::read(common::fixtures_dir().join("python-basic.expected.json")).unwrap(),
    )
    .unwrap();
    let text = sidecar["connections"][0]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["dir"] == "s2c" && m["opcode"] == "text")
        .and_then(|m| m["text"].as_str())
        .unwrap()
        .to_string();
    assert!(text.len() < 126);
    let mut frame = vec![0x81, text.len() as u8];
    frame.extend_from_slice(text.as_bytes());
    let want = format!("text fin len={} \"{text}\"", text.len());
    for threads in ["1", "2"] {
        assert!(
            seen_while_the_pipe_is_open(
                "python-basic.pcap",
                &frame,
                &["--threads", threads],
                &want
            ),
            "--threads {threads}: no {want:?} while the pipe was open"
        );
    }
    // The last frame of a fragmented message, which the text view holds for its message:
    // when --grep keeps the frame ("réply") but not its message ("server fragmented réply"),
    // it is shown all the same at once.
    // EVE holds that frame too (to write it with its message's payload).
    let last_fragment = [&[0x80, 6][..], "réply".as_bytes()].concat();
    for threads in ["1", "2"] {
        for (format, want) in [
            ("text", "\"réply\""),
            ("eve", "\"payload_printable\":\"réply\""),
        ] {
            let args = ["--threads", threads, "--grep", "^r.ply", "--format", format];
            assert!(
                seen_while_the_pipe_is_open("node-ws.pcap", &last_fragment, &args, want),
                "--format {format} --threads {threads}: the held fragment waited"
            );
        }
    }
}
