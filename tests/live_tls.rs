//! Live wss: wsnoop captures on a namespace's loopback while a python websockets client and
//! server talk over TLS 1.3, and follows the key log the client writes as it goes
//! (`SSLContext.keylog_filename`): the file is empty when wsnoop starts.
//!
//! The traffic comes from fixtures/tls/wss.py (the program that made the python wss fixtures),
//! which logs what it sends; fixtures/py/merge_expected.py turns that log into the expected
//! messages, and wsnoop's messages must equal them. Needs root (namespaces, capture) and skips
//! itself otherwise; needs python websockets (fixtures/.venv, made by fixtures/make-fixtures.sh,
//! or a python3 that imports websockets) and fails with instructions without it. Waits are
//! bounded; nothing is asserted about timing.

#![cfg(target_os = "linux")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::lines_of;
use common::netns::{Netns, is_root};
use common::tls as t;

const WAIT: Duration = Duration::from_secs(30);
const PORT: u16 = 8443;

/// A child killed on drop unless it already ended.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn python() -> PathBuf {
    let venv = common::fixtures_dir().join(".venv/bin/python");
    let candidates = [venv, PathBuf::from("python3")];
    for py in &candidates {
        let ok = Command::new(py)
            .args(["-c", "import websockets"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return py.clone();
        }
    }
    panic!(
        "no python with websockets: run fixtures/make-fixtures.sh once (it makes fixtures/.venv \
         with websockets 17.4), or `python3 -m venv fixtures/.venv && fixtures/.venv/bin/pip \
         install websockets==17.4`"
    );
}

fn wait_child(child: &mut Child, what: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "{what} failed ({status})");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not end within {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_line(
    rx: &Receiver<String>,
    seen: &mut Vec<String>,
    what: &str,
    done: impl Fn(&str) -> bool,
) {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let found = done(&line);
                seen.push(line);
                if found {
                    return;
                }
            }
            Err(_) => panic!("wsnoop did not print {what}; it printed {seen:?}"),
        }
    }
}

fn merge(py: &Path, dir: &Path, label: &str) -> Value {
    let out = dir.join("live.expected.json");
    let status = Command::new(py)
        .arg(common::fixtures_dir().join("py/merge_expected.py"))
        .args(["--fixture", "live", "--implementation", "python websockets"])
        .args(["--server-port", &PORT.to_string()])
        .arg("--out")
        .arg(&out)
        .arg(dir.join(format!("{label}.server.jsonl")))
        .arg(dir.join(format!("{label}.client.jsonl")))
        .stdout(Stdio::null())
        .status()
        .expect("run merge_expected.py");
    assert!(status.success(), "merge_expected.py failed");
    serde_json::from_str(&std::fs::read_to_string(&out).expect("read expected")).expect("JSON")
}

#[test]
fn live_wss_follows_a_growing_key_log() {
    if !is_root() {
        eprintln!("skipped: live capture tests need root (CAP_NET_RAW and CAP_SYS_ADMIN)");
        return;
    }
    let py = python();
    let ns = Netns::new("tls");
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = dir.path().join("keys.log");
    std::fs::write(&keys, b"").expect("empty key log");
    let keys_arg = keys.to_str().expect("UTF-8 path");

    let mut wsnoop = Guard(
        ns.command(
            env!("CARGO_BIN_EXE_wsnoop"),
            &[
                "-i",
                "lo",
                "--keylog",
                keys_arg,
                "--json",
                "--max-payload",
                "100000000",
            ],
        )
        .env_remove("SSLKEYLOGFILE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wsnoop"),
    );
    let stdout = lines_of(wsnoop.0.stdout.take().expect("stdout"));
    let stderr = lines_of(wsnoop.0.stderr.take().expect("stderr"));
    let mut err_lines = Vec::new();
    wait_line(&stderr, &mut err_lines, "listening on", |l| {
        l.starts_with("listening on ")
    });

    let tls = t::tls_dir();
    let label = "live";
    let mut traffic = Guard(
        ns.command(
            py.to_str().expect("UTF-8 path"),
            &[
                tls.join("wss.py").to_str().expect("UTF-8"),
                "both",
                "--port",
                &PORT.to_string(),
                "--cert",
                tls.join("cert.pem").to_str().expect("UTF-8"),
                "--key",
                tls.join("key.pem").to_str().expect("UTF-8"),
                "--keylog",
                keys_arg,
                "--log-dir",
                dir.path().to_str().expect("UTF-8"),
                "--label",
                label,
            ],
        )
        .stdout(Stdio::null())
        .spawn()
        .expect("start wss.py"),
    );
    wait_child(&mut traffic.0, "wss.py (client and server)");
    let exp = merge(&py, dir.path(), label);
    let conn = &t::connections(&exp)[0];
    let client = t::client_of(&exp, conn);
    let server = t::server_of(&exp);

    // The flow event comes when the connection ends: everything before it is out.
    let mut out_lines = Vec::new();
    wait_line(
        &stdout,
        &mut out_lines,
        "the flow event of the wss connection",
        |l| {
            serde_json::from_str::<Value>(l)
                .is_ok_and(|e| e["type"] == "flow" && e["client"].as_str() == Some(client.as_str()))
        },
    );
    let pid = libc::pid_t::try_from(wsnoop.0.id()).expect("pid");
    // SAFETY: our own child, not yet reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    wait_child(&mut wsnoop.0, "wsnoop after SIGINT");
    out_lines.extend(stdout.iter());

    let events = common::parse_json_lines(&out_lines.join("\n"), "live wsnoop");
    let mine = t::of_conn(&events, &client, &server);
    let errors = t::sidecar_errors(conn, &mine, &client);
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    let hs = mine
        .iter()
        .find(|e| e["type"] == "handshake")
        .expect("a handshake event");
    assert_eq!(hs["tls"]["decrypted"], true, "handshake {hs}");
    assert_eq!(hs["tls"]["version"], "TLS 1.3", "handshake {hs}");
    assert_eq!(hs["tls"]["sni"], "localhost", "handshake {hs}");
    let anomalies: Vec<_> = events.iter().filter(|e| e["type"] == "anomaly").collect();
    assert!(anomalies.is_empty(), "anomalies: {anomalies:?}");
    // The secrets the client wrote never show.
    let text = out_lines.join("\n").to_ascii_lowercase();
    for secret in t::secrets_of(&keys) {
        assert!(
            !text.contains(&secret),
            "a secret of the key log shows in wsnoop's output"
        );
    }
    assert!(
        !t::secrets_of(&keys).is_empty(),
        "the client wrote no key log"
    );
}
