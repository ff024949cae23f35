//! Issue 14, live: wsnoop started while a compressed session (python websockets, context
//! takeover, 15-bit windows) is already running recovers its messages. The sending programs'
//! logs are the oracle: a message wsnoop calls exact must be what was sent, a partial one's
//! known bytes must be.
//!
//! Needs root (a private network namespace, live capture) and fixtures/.venv with python
//! websockets (fixtures/midstream/make.sh makes it); skips itself otherwise.

#![cfg(target_os = "linux")]

mod common;

use std::process::{Child, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::netns::{Netns, is_root};
use common::{fixtures_dir, lines_of, parse_json_lines};

const WAIT: Duration = Duration::from_secs(60);

/// Kills and reaps a child on drop unless it already ended.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn wait_exit(child: &mut Reaped, what: &str) {
    let deadline = Instant::now() + WAIT;
    while child.0.try_wait().expect("wait").is_none() {
        assert!(
            Instant::now() < deadline,
            "{what} did not end within {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sent_lines(path: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    parse_json_lines(&text, &path.display().to_string())
        .into_iter()
        .filter(|e| e["ev"] == "send")
        .collect()
}

#[test]
fn wsnoop_started_inside_a_compressed_session_recovers_it() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let python = fixtures_dir().join(".venv/bin/python");
    let script = fixtures_dir().join("midstream/signalling.py");
    if !python.exists() {
        eprintln!(
            "skipped: no {} (fixtures/midstream/make.sh makes it)",
            python.display()
        );
        return;
    }
    let (python, script) = (python.to_str().unwrap(), script.to_str().unwrap());
    let tmp = tempfile::tempdir().unwrap();
    let log = |name: &str| tmp.path().join(name).to_str().unwrap().to_string();
    let (server_log, client_log) = (log("server.jsonl"), log("client.jsonl"));
    let ns = Netns::new("midlive");
    let mut server = Reaped(
        ns.command(
            python,
            &[
                script,
                "server",
                "--port",
                "8455",
                "--scenario",
                "long",
                "--log",
                &server_log,
            ],
        )
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the server"),
    );
    let listening = lines_of(server.0.stdout.take().unwrap());
    listening.recv_timeout(WAIT).expect("the server listens");
    let mut client = Reaped(
        ns.command(
            python,
            &[
                script,
                "client",
                "--port",
                "8455",
                "--scenario",
                "long",
                "--log",
                &client_log,
                "--pace-ms",
                "4",
            ],
        )
        .spawn()
        .expect("start the client"),
    );
    // Well into the session, its compression windows full of what wsnoop will never see.
    let deadline = Instant::now() + WAIT;
    while sent_lines(tmp.path().join("client.jsonl").as_path()).len() < 150 {
        assert!(Instant::now() < deadline, "the client did not get going");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out_path = tmp.path().join("wsnoop.jsonl");
    let out = std::fs::File::create(&out_path).unwrap();
    let mut wsnoop = Reaped(
        ns.command(
            env!("CARGO_BIN_EXE_wsnoop"),
            &[
                "-i",
                "lo",
                "--json",
                "--max-payload",
                "1000000",
                "tcp",
                "port",
                "8455",
            ],
        )
        .stdout(out)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wsnoop"),
    );
    let stderr = lines_of(wsnoop.0.stderr.take().unwrap());
    loop {
        match stderr.recv_timeout(WAIT) {
            Ok(line) if line.starts_with("listening on ") => break,
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                panic!("wsnoop did not start capturing")
            }
        }
    }
    wait_exit(&mut client, "the client");
    wait_exit(&mut server, "the server");
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: our own child, not yet reaped.
    unsafe { libc::kill(wsnoop.0.id() as libc::pid_t, libc::SIGINT) };
    wait_exit(&mut wsnoop, "wsnoop");
    let events = parse_json_lines(&std::fs::read_to_string(&out_path).unwrap(), "wsnoop");
    let sent = [
        ("c2s", sent_lines(tmp.path().join("client.jsonl").as_path())),
        ("s2c", sent_lines(tmp.path().join("server.jsonl").as_path())),
    ];
    let (mut exact, mut partial) = (0usize, 0usize);
    for (dir, sent) in &sent {
        let got: Vec<&Value> = events
            .iter()
            .filter(|e| e["type"] == "message" && e["dir"] == *dir)
            .collect();
        assert!(got.len() > 100, "{dir}: {} messages found", got.len());
        assert!(got.len() < sent.len(), "{dir}: more than after the start");
        // wsnoop saw the session's end: its messages are the tail of what was sent.
        let skipped = sent.len() - got.len();
        for (i, (g, w)) in got.iter().zip(&sent[skipped..]).enumerate() {
            assert_eq!(g["midstream"], true);
            let text = w["text"].as_str().unwrap();
            assert_eq!(g["len"].as_u64(), Some(text.len() as u64), "{dir} {i}");
            let shown = g["text"].as_str().unwrap_or("");
            if g["partial"] == true {
                partial += 1;
                assert_eq!(shown.chars().count(), text.len(), "{dir} {i}");
                for (c, s) in shown.chars().zip(text.chars()) {
                    assert!(c == '\u{FFFD}' || c == s, "{dir} {i}: a known byte differs");
                }
            } else {
                exact += 1;
                assert_eq!(shown, text, "{dir} {i}: called exact");
            }
        }
    }
    eprintln!("live: {exact} exact, {partial} partial");
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "close" && e["clean"] == true),
        "the close handshake"
    );
}
