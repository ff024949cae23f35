//! Output under hostile input (issue 19, part B): terminal escaping by Unicode category,
//! bounded `--summary` rows, connections that carry one byte, `--ws-port` started inside
//! masked payloads, and output in flight with `--threads`. Each capture is generated here
//! (benches/tools/hostile.rs), so the test knows exactly what the senders sent.

mod common;

#[path = "../benches/tools/hostile.rs"]
mod hostile;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::wsnoop_bin;

fn write_capture(dir: &Path, name: &str, bytes: Vec<u8>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

struct Run {
    stdout: String,
    /// Peak resident set of the wsnoop process, in KiB.
    max_rss_kb: i64,
}

/// Starts wsnoop from a small python3 process that reports its peak memory (wait4's
/// ru_maxrss). Not from this test process: Linux counts the parent's peak in a child it
/// starts (the child's memory is a copy of the parent's until exec), and this process holds
/// captures and other tests' output; python's own size (about 10 MiB) is the floor instead.
const MEASURE: &str = r#"
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"#;

fn run(capture: &Path, args: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let rss = dir.path().join("rss");
    let out = Command::new("python3")
        .args(["-c", MEASURE])
        .arg(&rss)
        .arg(wsnoop_bin())
        .arg("-r")
        .arg(capture)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "{:?}", out.status);
    Run {
        stdout: String::from_utf8(out.stdout).expect("text output is UTF-8"),
        max_rss_kb: std::fs::read_to_string(&rss)
            .unwrap()
            .trim()
            .parse()
            .unwrap(),
    }
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
