//! Output under hostile input (issue 19, part B): terminal escaping by Unicode category,
//! bounded `--summary` rows, connections that carry one byte, `--ws-port` started inside
//! masked payloads, and output in flight with `--threads`. Each capture is generated here
//! (benches/tools/hostile.rs), so the test knows exactly what the senders sent.

mod common;

#[path = "common/peak.rs"]
mod peak;

#[path = "../benches/tools/hostile.rs"]
mod hostile;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;

use common::wsnoop_bin;
use peak::{Run, write_capture};

fn run(capture: &Path, args: &[&str]) -> Run {
    run_to(capture, args, Stdio::piped())
}

/// [`run`] with stdout somewhere else (a writer as fast as /dev/null).
fn run_to(capture: &Path, args: &[&str], stdout: Stdio) -> Run {
    peak::run_to(&wsnoop_bin(), capture, args, stdout)
}

/// The escape the text output promises for a code point: `\xNN` below U+0100, else
/// `\u{NNNN}` in lowercase hex, at least four digits.
fn escape_of(c: char) -> String {
    let cp = c as u32;
    if cp < 0x100 {
        format!("\\x{cp:02x}")
    } else {
        format!("\\u{{{cp:04x}}}")
    }
}

#[test]
fn bidi_controls_and_separators_in_text_frames_are_escaped() {
    // Each of these reached the terminal raw before, or is of a category the rule names:
    // Cf (bidi marks and embeddings, the BOM, a tag), Zl, Zp, Cc, noncharacters.
    let hostile = [
        '\u{061C}',
        '\u{2028}',
        '\u{2029}',
        '\u{200E}',
        '\u{202E}',
        '\u{2066}',
        '\u{FEFF}',
        '\u{E0001}',
        '\u{1B}',
        '\u{9B}',
        '\u{FDD0}',
        '\u{FFFE}',
        '\u{10FFFF}',
        '\u{AD}',
    ];
    let payloads: Vec<String> = hostile.iter().map(|c| format!("<{c}>")).collect();
    let refs: Vec<&str> = payloads.iter().map(String::as_str).collect();
    let dir = tempfile::tempdir().unwrap();
    let capture = write_capture(
        dir.path(),
        "text.pcap",
        hostile::text_frames(Vec::new(), &refs).unwrap(),
    );
    let out = run(&capture, &["--threads", "1", "--color", "never"]).stdout;
    for c in hostile {
        assert!(
            !out.contains(c),
            "U+{:04X} reached the output raw",
            c as u32
        );
        assert!(
            out.contains(&format!("\"<{}>\"", escape_of(c))),
            "U+{:04X} not escaped as {}:\n{out}",
            c as u32,
            escape_of(c)
        );
    }
    // Printable text beside them is kept as it was sent.
    let plain = hostile::text_frames(Vec::new(), &["a\u{A0}é日本🦀"]).unwrap();
    let capture = write_capture(dir.path(), "plain.pcap", plain);
    let out = run(&capture, &["--threads", "1", "--color", "never"]).stdout;
    assert!(out.contains("\"a\u{A0}é日本🦀\""), "{out}");
}

/// The `--summary` table's rows: (flow number, last column).
fn summary_rows(out: &str) -> Vec<(u64, String)> {
    let table = out
        .split_once("\n flow  client")
        .map(|(_, t)| t)
        .expect("a summary table");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let id = fields.first()?.parse().ok()?;
            // Fourteen columns of numbers and names, then the URI (these have no spaces;
            // the mark of a cut has single ones).
            Some((id, fields.get(14..)?.join(" ")))
        })
        .collect()
}

#[test]
fn long_uris_are_cut_in_the_summary_and_not_kept_after_their_connection() {
    let uri_len = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let small = write_capture(
        dir.path(),
        "few.pcap",
        hostile::long_uris(Vec::new(), 150, uri_len).unwrap(),
    );
    let large = write_capture(
        dir.path(),
        "many.pcap",
        hostile::long_uris(Vec::new(), 600, uri_len).unwrap(),
    );
    let one = run(&large, &["--threads", "1", "--summary", "--color", "never"]);
    let rows = summary_rows(&one.stdout);
    assert_eq!(rows.len(), 600);
    for (n, (id, uri)) in rows.iter().enumerate() {
        assert_eq!(*id, n as u64);
        let sent = hostile::long_uri(n as u64, uri_len);
        // The first 256 bytes (ASCII here, so no character is split), marked as cut, with
        // the length the client sent.
        assert_eq!(
            uri,
            &format!("{}... (cut, {} bytes)", &sent[..256], sent.len())
        );
    }
    // --threads builds the same table from its decoders' rows.
    let two = run(&large, &["--threads", "2", "--summary", "--color", "never"]);
    assert_eq!(two.stdout, one.stdout);
    // 450 more connections of 20 KB URIs: before, every URI stayed until the end (9 MB
    // more); now a connection ended costs its row and what a closed connection keeps in the
    // flow table until the next sweep.
    let few = run(&small, &["--threads", "1", "--summary", "-q"]);
    let many = run(&large, &["--threads", "1", "--summary", "-q"]);
    let per_conn = (many.max_rss_kb - few.max_rss_kb) * 1024 / 450;
    eprintln!(
        "{per_conn} bytes per connection ({} vs {} KiB)",
        many.max_rss_kb, few.max_rss_kb
    );
    assert!(per_conn < 8 * 1024, "{per_conn} bytes per connection");
}

/// The records of a classic little-endian pcap file: its global header, and each record.
fn pcap_records(bytes: &[u8]) -> (&[u8], Vec<&[u8]>) {
    let (head, mut rest) = bytes.split_at(24);
    assert!(
        head[..4] == [0xd4, 0xc3, 0xb2, 0xa1] || head[..4] == [0x4d, 0x3c, 0xb2, 0xa1],
        "a little-endian pcap"
    );
    let mut records = Vec::new();
    while rest.len() >= 16 {
        let caplen = u32::from_le_bytes(rest[8..12].try_into().unwrap()) as usize;
        let (record, later) = rest.split_at(16 + caplen);
        records.push(record);
        rest = later;
    }
    (head, records)
}

/// A frame as the sender made it: opcode, FIN, length and mask key (a random 32-bit key per
/// client frame, so a client frame is told apart from every other).
type FrameId = (String, bool, u64, Option<String>);

/// Frames by (client, direction).
type Frames = BTreeMap<(String, String), Vec<FrameId>>;

/// Each (client, direction)'s frames, in order, and the anomalies, of a `--json` run.
fn frames_of(capture: &Path, extra: &[&str]) -> (Frames, Vec<String>) {
    let events = common::run_wsnoop_json(capture, extra);
    let mut frames = Frames::new();
    let mut anomalies = Vec::new();
    for e in &events {
        let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
        match e["type"].as_str() {
            Some("frame") => frames.entry((s("client"), s("dir"))).or_default().push((
                s("opcode"),
                e["fin"].as_bool().unwrap(),
                e["len"].as_u64().unwrap(),
                e["mask"].as_str().map(str::to_string),
            )),
            Some("anomaly") => anomalies.push(format!("{}: {}", s("kind"), s("detail"))),
            _ => {}
        }
    }
    (frames, anomalies)
}

/// Real captures started at many packets after the handshake (inside the large masked
/// messages among them) and decoded with `--ws-port`: before, the forced pickup believed the
/// first plausible header in a masked payload (python-basic's cuts: 357 frames and 1,266
/// anomalies the senders never made; big-message's: 11,826 frames). Now every frame reported
/// is one the sender sent, in its place: each direction's frames are the tail of the uncut
/// capture's, and nothing is reported wrong of a session whose uncut capture has no anomaly.
#[test]
fn ws_port_started_inside_masked_payloads_reports_only_sent_frames() {
    let dir = tempfile::tempdir().unwrap();
    // (capture, every how many packets a cut starts)
    let cases = [
        ("python-basic.pcap", 1),
        ("node-ws.pcap", 1),
        ("midstream/big-message.pcap", 23),
    ];
    for (name, stride) in cases {
        let path = common::fixtures_dir().join(name);
        let (truth, anomalies) = frames_of(&path, &[]);
        assert!(anomalies.is_empty(), "{name}: {anomalies:?}");
        let events = common::run_wsnoop_json(&path, &[]);
        let port = events
            .iter()
            .find(|e| e["type"] == "handshake")
            .and_then(|e| e["server"].as_str()?.rsplit(':').next().map(str::to_string))
            .expect("a handshake");
        let bytes = std::fs::read(&path).unwrap();
        let (head, records) = pcap_records(&bytes);
        let upgraded = records
            .iter()
            .position(|r| r.windows(12).any(|w| w == b"HTTP/1.1 101"))
            .expect("a 101");
        let cuts: Vec<usize> = (upgraded + 1..records.len()).step_by(stride).collect();
        let found = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for half in cuts.chunks(cuts.len().div_ceil(2)) {
                let (dir, truth, records, port, found) = (&dir, &truth, &records, &port, &found);
                scope.spawn(move || {
                    for &cut in half {
                        let out = dir
                            .path()
                            .join(format!("{}-{cut}.pcap", name.replace('/', "-")));
                        let mut file = head.to_vec();
                        for r in &records[cut..] {
                            file.extend_from_slice(r);
                        }
                        std::fs::write(&out, file).unwrap();
                        let (got, anomalies) =
                            frames_of(&out, &["--ws-port", port, "--threads", "1"]);
                        assert!(
                            anomalies.is_empty(),
                            "{name} cut at packet {cut}: {} anomalies, first {:?}",
                            anomalies.len(),
                            &anomalies[..anomalies.len().min(3)]
                        );
                        for (key, frames) in &got {
                            let sent = truth.get(key).map_or(&[][..], Vec::as_slice);
                            assert!(
                                frames.len() <= sent.len() && sent.ends_with(frames),
                                "{name} cut at packet {cut}, {key:?}: {} frames are not the \
last ones sent; first: {:?}",
                                frames.len(),
                                frames.first()
                            );
                            found.fetch_add(frames.len(), std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        // Not vacuous: the frames after the cuts are found (most cuts leave many).
        let found = found.into_inner();
        eprintln!("{name}: {} cuts, {found} frames found", cuts.len());
        assert!(
            found > 10 * cuts.len(),
            "{name}: {found} frames over {} cuts",
            cuts.len()
        );
    }
}

/// Streams of tiny frames with `--threads 2`: the worker's output waits for the reading
/// thread's word on how far it got, and a batch of 256 KiB of two-byte frames is some 30 MB
/// of JSON. Before, 120,000 such frames peaked at about 55 MB (3 million through a pipe at
/// 97 MB, 12 million at 160 MB); now a decoder waits once 4 MiB of its output is in flight,
/// whatever the input's size (benches/memory.sh `tiny` shows it flat), and the output is
/// still one thread's.
#[test]
fn tiny_frames_with_threads_hold_little_output_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let frames = 40_000;
    let capture = write_capture(
        dir.path(),
        "tiny.pcap",
        hostile::tiny_frames(Vec::new(), 3, frames).unwrap(),
    );
    let peak = run_to(&capture, &["--threads", "2", "--json"], Stdio::null()).max_rss_kb;
    eprintln!("peak RSS: {peak} KiB for {} frames", 3 * frames);
    // The measuring python is about 10 MiB of it; the budgets (4 MiB per decoder, chunks of
    // 1 MiB) and the rest of wsnoop fit in what is left.
    assert!(peak < 28 * 1024, "{peak} KiB");
    let t1 = run(&capture, &["--color", "never", "--threads", "1"]).stdout;
    let t2 = run(&capture, &["--color", "never", "--threads", "2"]).stdout;
    assert!(t1 == t2, "--threads 2 writes what one thread does");
    // Every frame the servers sent is there.
    let sent = t1.matches("text fin len=2 \"ok\"").count();
    assert_eq!(sent as u64, 3 * frames);
}

/// Connections that carry one byte each and stay open, by the ten thousand: each costs its
/// flow table entry and what its first byte made (measured: about 550 bytes; before, 2.5 KiB,
/// most of it 2 KiB of recent bytes TCP kept for retransmissions from the first byte on),
/// and past `--max-flows` the longest-idle are evicted, so more of them cost nothing more.
#[test]
fn one_byte_connections_cost_a_bounded_entry_each() {
    let dir = tempfile::tempdir().unwrap();
    let capture = |n: u64| {
        write_capture(
            dir.path(),
            &format!("one-{n}.pcap"),
            hostile::one_byte(Vec::new(), n, b'x').unwrap(),
        )
    };
    let (few, many, flood) = (capture(5_000), capture(20_000), capture(80_000));
    let args = ["--threads", "1", "--max-flows", "20000"];
    let few = run_to(&few, &args, Stdio::null()).max_rss_kb;
    let many = run_to(&many, &args, Stdio::null()).max_rss_kb;
    let flood = run_to(&flood, &args, Stdio::null()).max_rss_kb;
    let per_conn = (many - few) * 1024 / 15_000;
    eprintln!("{per_conn} bytes per connection; {few}, {many}, {flood} KiB");
    assert!(per_conn <= 1024, "{per_conn} bytes per connection");
    // Four times the connections of a full table: evicted, not kept.
    assert!(flood <= many + many / 10, "{flood} KiB vs {many} KiB");
}
