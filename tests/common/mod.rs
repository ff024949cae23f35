//! Helpers shared by the integration tests: where the wsnoop binary, the fixtures and the peer
//! corpus are, and running wsnoop with `--json`.
//!
//! Each test crate compiles its own copy of this module and uses only part of it.
#![allow(dead_code)]

#[cfg(target_os = "linux")]
pub mod netns;
pub mod pcapng;
pub mod tls;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The wsnoop binary Cargo built for these tests.
pub fn wsnoop_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wsnoop"))
}

/// The repository root.
pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The capture fixtures made by fixtures/make-fixtures.sh.
pub fn fixtures_dir() -> PathBuf {
    manifest_dir().join("fixtures")
}

/// The peer corpus: `$WSNOOP_CORPUS`, or `../shared/corpus` beside the clone when unset.
/// Panics with instructions when the directory does not exist: tests that need it must fail,
/// not skip.
pub fn corpus_dir() -> PathBuf {
    let dir = match std::env::var_os("WSNOOP_CORPUS") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => manifest_dir().join("../shared/corpus"),
    };
    assert!(
        dir.is_dir(),
        "peer corpus directory {} does not exist: set WSNOOP_CORPUS to the corpus directory \
         (the one holding zeek/traces/), e.g. WSNOOP_CORPUS=/path/to/shared/corpus cargo test",
        dir.display()
    );
    dir
}

/// The capture files (`*.pcap`, `*.pcapng`) directly in `dir`, sorted by name.
/// A missing directory yields an empty list.
pub fn captures_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| {
            e.unwrap_or_else(|e| panic!("reading directory {}: {e}", dir.display()))
                .path()
        })
        .filter(|p| {
            p.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("pcap" | "pcapng")
                )
        })
        .collect();
    files.sort();
    files
}

/// Runs `wsnoop -r CAPTURE --json EXTRA_ARGS...`, asserts it succeeds, and returns its events.
pub fn run_wsnoop_json(capture: &Path, extra_args: &[&str]) -> Vec<Value> {
    let out = Command::new(wsnoop_bin())
        .arg("-r")
        .arg(capture)
        .arg("--json")
        .args(extra_args)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", wsnoop_bin().display()));
    assert!(
        out.status.success(),
        "wsnoop -r {} --json {} failed ({}): {}",
        capture.display(),
        extra_args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    parse_json_lines(
        &String::from_utf8_lossy(&out.stdout),
        &capture.display().to_string(),
    )
}

/// Parses JSON Lines (blank lines ignored); `what` names the source in error messages.
pub fn parse_json_lines(text: &str, what: &str) -> Vec<Value> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{what}: line {} is not JSON ({e}): {l}", i + 1))
        })
        .collect()
}

/// Sends each line of `from` on a channel, as it comes (a child's stdout or stderr).
pub fn lines_of(from: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}
