//! `--threads N` gives every connection the same events, in the same order and with the same
//! connection numbers, as one thread does; only the interleaving of connections differs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What a run printed, by connection, and how it ended (damaged files end with an error after
/// printing what came before the damage).
struct Run {
    by_flow: BTreeMap<String, Vec<String>>,
    status: Option<i32>,
    stderr: String,
}

fn run(capture: &Path, threads: usize) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_wsnoop"))
        .arg("-r")
        .arg(capture)
        .args(["--json", "--threads", &threads.to_string()])
        .output()
        .expect("wsnoop runs");
    let mut by_flow: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in String::from_utf8(out.stdout).expect("UTF-8").lines() {
        let event: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        let flow = format!("{}", event["flow"]);
        by_flow.entry(flow).or_default().push(line.to_string());
    }
    Run {
        by_flow,
        status: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Every capture in fixtures/, and its subfolders.
fn captures(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("fixtures readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            captures(&path, found);
        } else if path
            .extension()
            .is_some_and(|e| e == "pcap" || e == "pcapng")
        {
            found.push(path);
        }
    }
}

/// Real sessions, crafted violations, mangled and diagnosed captures: the connections of each
/// come out the same with 2, 3 and 5 threads (the reader decodes some itself with 2 and 3).
#[test]
fn threads_keep_each_connection_exact() {
    let mut all = Vec::new();
    captures(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures"),
        &mut all,
    );
    all.sort();
    assert!(all.len() >= 90, "{} captures found", all.len());
    for capture in &all {
        let name = capture.display();
        let one = run(capture, 1);
        for threads in [2, 3, 5] {
            let many = run(capture, threads);
            assert_eq!(
                (one.status, &one.stderr),
                (many.status, &many.stderr),
                "{name} with {threads} threads: the run ends differently"
            );
            assert_eq!(
                one.by_flow.keys().collect::<Vec<_>>(),
                many.by_flow.keys().collect::<Vec<_>>(),
                "{name} with {threads} threads: connection numbers differ"
            );
            for (flow, events) in &one.by_flow {
                assert_eq!(
                    events, &many.by_flow[flow],
                    "{name} with {threads} threads: connection {flow} differs"
                );
            }
        }
    }
}

#[test]
fn threads_refuse_what_they_cannot_do() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/node-ws.pcap");
    for extra in [["-c", "3"], ["--summary", "--json"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_wsnoop"))
            .arg("-r")
            .arg(&fixture)
            .args(["--threads", "2"])
            .args(extra)
            .output()
            .expect("wsnoop runs");
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("--threads"));
    }
}

#[test]
fn thread_counts_out_of_range_are_refused() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/node-ws.pcap");
    for threads in ["0", "257", "many"] {
        let out = Command::new(env!("CARGO_BIN_EXE_wsnoop"))
            .arg("-r")
            .arg(&fixture)
            .args(["-q", "--threads", threads])
            .output()
            .expect("wsnoop runs");
        assert_eq!(out.status.code(), Some(2), "--threads {threads}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("--threads"));
    }
}

/// When the system will not start another thread, the run ends with one line, not a panic.
#[test]
fn threads_the_system_refuses_end_the_run_cleanly() {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to run as another user with a process limit");
        return;
    }
    // Copies that the unprivileged user can surely reach, wherever the build tree is.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let binary = dir.path().join("wsnoop");
    let capture = dir.path().join("capture.pcap");
    std::fs::copy(env!("CARGO_BIN_EXE_wsnoop"), &binary).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/node-ws.pcap"),
        &capture,
    )
    .unwrap();
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&capture, std::fs::Permissions::from_mode(0o644)).unwrap();
    // One process for the user: not one more thread.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["prlimit", "--nproc=1:1", "--"])
        .arg(&binary)
        .arg("-r")
        .arg(&capture)
        .args(["-q", "--threads", "4"])
        .current_dir("/")
        .output()
        .expect("setpriv and prlimit (util-linux)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("wsnoop: starting threads: "), "{stderr}");
}
