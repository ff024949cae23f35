//! Running wsnoop with its peak memory measured, for the tests of memory bounds.
//!
//! wsnoop is started from a small python3 process that reports its peak memory (wait4's
//! ru_maxrss). Not from the test process: Linux counts the parent's peak in a child it starts
//! (the child's memory is a copy of the parent's until exec), and a test process holds
//! captures and other tests' output; python's own size (about 10 MiB) is the floor instead.
//!
//! Each test crate that includes it uses only part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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

/// What a measured run printed, and its peak resident set in KiB.
pub struct Run {
    pub stdout: String,
    pub stderr: String,
    pub max_rss_kb: i64,
}

/// Writes a generated capture into `dir`.
pub fn write_capture(dir: &Path, name: &str, bytes: Vec<u8>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Runs `wsnoop -r CAPTURE ARGS` to a successful end, its stdout to `stdout` (kept when
/// piped) and its stderr kept.
pub fn run_to(wsnoop: &Path, capture: &Path, args: &[&str], stdout: Stdio) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let rss = dir.path().join("rss");
    let out = Command::new("python3")
        .args(["-c", MEASURE])
        .arg(&rss)
        .arg(wsnoop)
        .arg("-r")
        .arg(capture)
        .args(args)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "{:?}", out.status);
    Run {
        stdout: String::from_utf8(out.stdout).expect("output is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
        max_rss_kb: std::fs::read_to_string(&rss)
            .unwrap()
            .trim()
            .parse()
            .unwrap(),
    }
}
