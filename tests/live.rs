//! Live capture, end to end: wsnoop captures on a real interface while real WebSocket traffic
//! passes.
//!
//! Each test makes its own network namespace (named after the test and this process), with
//! only a loopback at MTU 1500 and segmentation and receive offloads off, so the capture sees
//! wire-sized segments as a server's interface would. wsnoop runs in it through
//! `ip netns exec`; the traffic comes from a tungstenite server and client in this process, on
//! a thread that entered the namespace with setns(2). Nothing leaves the namespace.
//!
//! The tests need root (CI runs them as root) and skip themselves otherwise. No assertion
//! depends on timing: waits are bounded, and a wait that runs out kills what it waited for and
//! fails. Namespaces and processes are cleaned up by guards, also when a test fails.

#![cfg(target_os = "linux")]

mod common;

use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::frame::{CloseFrame, Frame};
use tungstenite::{Bytes, Message};

use common::lines_of;
use common::netns::{Netns, enter_netns, is_root, run_ok};

const WSNOOP: &str = env!("CARGO_BIN_EXE_wsnoop");

/// Longest wait for wsnoop to start capturing, for the traffic, and for wsnoop to exit.
const WAIT: Duration = Duration::from_secs(15);

/// Live capture and network namespaces need root; elsewhere these tests say so and pass.
macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipped: live capture tests need root (CAP_NET_RAW and CAP_SYS_ADMIN)");
            return;
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Namespaces

// ---------------------------------------------------------------------------------------------
// wsnoop as a child process

/// A running wsnoop, killed on drop unless it already ended.
struct Wsnoop {
    child: Child,
    stdout_lines: Receiver<String>,
    stdout: Vec<String>,
    stderr_lines: Receiver<String>,
    stderr: Vec<String>,
}

struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: Vec<String>,
}

impl Wsnoop {
    fn start(ns: &Netns, args: &[&str]) -> Wsnoop {
        let mut child = ns
            .command(WSNOOP, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wsnoop");
        let stdout_lines = lines_of(child.stdout.take().unwrap());
        let stderr_lines = lines_of(child.stderr.take().unwrap());
        Wsnoop {
            child,
            stdout_lines,
            stdout: Vec::new(),
            stderr_lines,
            stderr: Vec::new(),
        }
    }

    /// Waits until wsnoop has printed a line that `done` accepts, while it still runs: live
    /// output comes out as the traffic passes, not at the end.
    fn wait_output(&mut self, what: &str, done: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout_lines.recv_timeout(left) {
                Ok(line) => {
                    let found = done(&line);
                    self.stdout.push(line);
                    if found {
                        return;
                    }
                }
                Err(_) => {
                    self.stderr.extend(self.stderr_lines.try_iter());
                    panic!(
                        "wsnoop did not print {what}; printed {} lines; stderr {:?}",
                        self.stdout.len(),
                        self.stderr
                    );
                }
            }
        }
    }

    /// Waits for the "listening on ..." line: from then on every packet is captured.
    fn wait_listening(&mut self) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr_lines.recv_timeout(left) {
                Ok(line) => {
                    self.stderr.push(line.clone());
                    if line.starts_with("listening on ") {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("wsnoop did not start capturing: {:?}", self.stderr)
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().expect("wait for wsnoop");
                    panic!(
                        "wsnoop ended ({status}) before capturing: {:?}",
                        self.stderr
                    );
                }
            }
        }
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: our own child, not yet reaped, so the pid is still its.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// Waits for wsnoop to end by itself; kills it and fails after `WAIT`.
    fn finish(mut self) -> Finished {
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for wsnoop") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.stderr.extend(self.stderr_lines.try_iter());
                panic!("wsnoop did not stop within {WAIT:?}: {:?}", self.stderr);
            }
            thread::sleep(Duration::from_millis(20));
        };
        // The readers end at end of file, now that the process is gone.
        let mut stdout = std::mem::take(&mut self.stdout);
        stdout.extend(self.stdout_lines.iter());
        let mut stderr = std::mem::take(&mut self.stderr);
        stderr.extend(self.stderr_lines.iter());
        Finished {
            status,
            stdout: stdout.join("\n"),
            stderr,
        }
    }
}

impl Drop for Wsnoop {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs wsnoop in `ns` to completion, bounded in time, for commands that end by themselves.
fn wsnoop_output(ns: &Netns, args: &[&str]) -> Output {
    let child = ns
        .command(WSNOOP, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wsnoop");
    wait_output(child)
}

fn wait_output(mut child: Child) -> Output {
    let deadline = Instant::now() + WAIT;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "command did not end within {WAIT:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("collect output")
}

// ---------------------------------------------------------------------------------------------
// The traffic

/// A frame as the test sent it, and as wsnoop must report it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    dir: String,
    opcode: String,
    fin: bool,
    payload: Vec<u8>,
    close: Option<(u64, String)>,
}

fn seen(dir: &str, opcode: &str, fin: bool, payload: impl Into<Vec<u8>>) -> Seen {
    Seen {
        dir: dir.into(),
        opcode: opcode.into(),
        fin,
        payload: payload.into(),
        close: None,
    }
}

fn close_seen(dir: &str, code: u16, reason: &str) -> Seen {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    Seen {
        close: Some((u64::from(code), reason.into())),
        ..seen(dir, "close", true, payload)
    }
}

const UTF8_TEXT: &str = "héllo wörld ✓ 🚀 — ünïcødé";
const CLOSE_REASON: &str = "bye ✓";

fn big_binary() -> Vec<u8> {
    // 70000 bytes: a 64-bit payload length, and many segments at MTU 1500.
    (0..70_000u32).map(|i| (i % 251) as u8).collect()
}

/// Every frame of [`drive_traffic`]'s connection, in capture order. The client waits for each
/// answer before it sends on, so the order across directions is fixed too.
fn expected_frames() -> Vec<Seen> {
    vec![
        seen("c2s", "text", true, "hello"),
        seen("s2c", "text", true, "hello"),
        seen("c2s", "text", true, UTF8_TEXT),
        seen("s2c", "text", true, UTF8_TEXT),
        seen("c2s", "binary", true, vec![0, 1, 2, 0xfe, 0xff]),
        seen("s2c", "binary", true, vec![0, 1, 2, 0xfe, 0xff]),
        seen("c2s", "binary", true, big_binary()),
        seen("s2c", "binary", true, big_binary()),
        seen("c2s", "text", false, "frag-"),
        seen("c2s", "continuation", true, "ment ✓"),
        seen("s2c", "text", true, "frag-ment ✓"),
        seen("c2s", "ping", true, "p1"),
        seen("s2c", "pong", true, "p1"),
        close_seen("c2s", 1000, CLOSE_REASON),
        close_seen("s2c", 1000, CLOSE_REASON),
    ]
}

/// `--max-payload` that keeps the largest payload whole.
const MAX_PAYLOAD: &str = "80000";

type Ws = tungstenite::WebSocket<TcpStream>;

fn timeouts(stream: &TcpStream) {
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
}

/// Echoes data messages, answers pings, and returns once the client's close is answered.
fn serve(listener: TcpListener) -> Result<(), String> {
    let (stream, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    timeouts(&stream);
    let mut ws = tungstenite::accept(stream).map_err(|e| format!("server handshake: {e}"))?;
    loop {
        match ws.read() {
            Ok(msg @ (Message::Text(_) | Message::Binary(_))) => {
                ws.send(msg).map_err(|e| format!("server send: {e}"))?
            }
            // tungstenite queued the pong; send it now rather than at the next read.
            Ok(Message::Ping(_)) => ws.flush().map_err(|e| format!("server pong: {e}"))?,
            // The close reply goes out at the next read, which then reports the end.
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => return Ok(()),
            Err(e) => return Err(format!("server read: {e}")),
        }
    }
}

fn expect_read(ws: &mut Ws, want: &Message) -> Result<(), String> {
    let got = ws.read().map_err(|e| format!("client read: {e}"))?;
    if &got != want {
        return Err(format!("client got {got:?}, wanted {want:?}"));
    }
    Ok(())
}

fn send(ws: &mut Ws, msg: Message) -> Result<(), String> {
    ws.send(msg).map_err(|e| format!("client send: {e}"))
}

fn client(port: u16) -> Result<(), String> {
    let stream =
        TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect {port}: {e}"))?;
    timeouts(&stream);
    let url = format!("ws://127.0.0.1:{port}/live");
    let (mut ws, _) =
        tungstenite::client(url.as_str(), stream).map_err(|e| format!("client handshake: {e}"))?;
    for msg in [
        Message::text("hello"),
        Message::text(UTF8_TEXT),
        Message::binary(vec![0u8, 1, 2, 0xfe, 0xff]),
        Message::binary(big_binary()),
    ] {
        send(&mut ws, msg.clone())?;
        expect_read(&mut ws, &msg)?;
    }
    // A text message in two frames: tungstenite sends whole messages only, so frame by frame.
    for frame in [
        Frame::message("frag-", OpCode::Data(Data::Text), false),
        Frame::message("ment ✓", OpCode::Data(Data::Continue), true),
    ] {
        ws.write(Message::Frame(frame))
            .map_err(|e| format!("client write: {e}"))?;
    }
    ws.flush().map_err(|e| format!("client flush: {e}"))?;
    expect_read(&mut ws, &Message::text("frag-ment ✓"))?;
    send(&mut ws, Message::Ping(Bytes::from_static(b"p1")))?;
    expect_read(&mut ws, &Message::Pong(Bytes::from_static(b"p1")))?;
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: CLOSE_REASON.into(),
    }))
    .map_err(|e| format!("client close: {e}"))?;
    loop {
        match ws.read() {
            Ok(Message::Close(Some(frame)))
                if frame.code == CloseCode::Normal && frame.reason == CLOSE_REASON => {}
            Ok(other) => return Err(format!("client got {other:?} while closing")),
            Err(tungstenite::Error::ConnectionClosed) => return Ok(()),
            Err(e) => return Err(format!("client read while closing: {e}")),
        }
    }
}

/// One WebSocket connection on 127.0.0.1:`port` inside `ns`, carrying [`expected_frames`].
fn drive_traffic(ns: &Netns, port: u16) {
    let (tx, rx) = mpsc::channel();
    let name = ns.name.clone();
    thread::spawn(move || {
        let result = (|| {
            enter_netns(&name)?;
            let listener =
                TcpListener::bind(("127.0.0.1", port)).map_err(|e| format!("bind {port}: {e}"))?;
            let server = thread::spawn(move || serve(listener));
            let client = client(port);
            let server = server
                .join()
                .unwrap_or_else(|_| Err("server panicked".into()));
            client.and(server)
        })();
        let _ = tx.send(result);
    });
    match rx.recv_timeout(WAIT * 2) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("traffic failed: {e}"),
        Err(_) => panic!("traffic did not finish within {:?}", WAIT * 2),
    }
}

// ---------------------------------------------------------------------------------------------
// Reading wsnoop's output

/// The last frame of the traffic `drive_traffic` makes, as a JSON line.
fn is_server_close(line: &str) -> bool {
    let e: Value = serde_json::from_str(line).expect("JSON line");
    e["type"] == "frame" && e["dir"] == "s2c" && e["opcode"] == "close"
}

fn events(jsonl: &str) -> Vec<Value> {
    jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

/// A frame event as [`Seen`], checking what must hold of every frame on the way.
fn frame_seen(e: &Value) -> Seen {
    let dir = e["dir"].as_str().expect("dir").to_string();
    let payload = match (&e["text"], &e["data"]) {
        (Value::String(text), _) => text.as_bytes().to_vec(),
        (_, Value::String(data)) => STANDARD.decode(data).expect("data is base64"),
        _ => panic!("frame without payload: {e}"),
    };
    assert_eq!(e["truncated"], false, "{e}");
    assert_eq!(e["len"].as_u64(), Some(payload.len() as u64), "{e}");
    assert_eq!(
        e["masked"],
        dir == "c2s",
        "clients mask, servers do not: {e}"
    );
    assert_eq!(e["rsv"], 0, "{e}");
    let close = (e["opcode"] == "close").then(|| {
        (
            e["close_code"].as_u64().expect("close_code"),
            e["close_reason"]
                .as_str()
                .expect("close_reason")
                .to_string(),
        )
    });
    Seen {
        dir,
        opcode: e["opcode"].as_str().expect("opcode").to_string(),
        fin: e["fin"].as_bool().expect("fin"),
        payload,
        close,
    }
}

fn frames_seen(events: &[Value]) -> Vec<Seen> {
    of_type(events, "frame")
        .into_iter()
        .map(frame_seen)
        .collect()
}

/// Compares frame lists without printing 70000-byte payloads in full.
fn assert_frames(got: &[Seen], want: &[Seen], what: &str) {
    let short = |s: &Seen| {
        let p = &s.payload;
        format!(
            "{} {} fin={} {}{} bytes {:?}",
            s.dir,
            s.opcode,
            s.fin,
            p.len(),
            if p.len() > 24 { "+" } else { "" },
            String::from_utf8_lossy(&p[..p.len().min(24)])
        )
    };
    if got != want {
        let got: Vec<String> = got.iter().map(short).collect();
        let want: Vec<String> = want.iter().map(short).collect();
        panic!("{what}: frames differ\n got: {got:#?}\nwant: {want:#?}");
    }
}

fn assert_handshake(events: &[Value], port: u16) {
    let handshakes = of_type(events, "handshake");
    assert_eq!(handshakes.len(), 1, "one handshake: {handshakes:?}");
    let h = handshakes[0];
    assert_eq!(h["accept"], "ok", "{h}");
    assert_eq!(h["status"], 101, "{h}");
    assert_eq!(h["upgraded"], true, "{h}");
    assert_eq!(h["uri"], "/live", "{h}");
    assert_eq!(h["server"], format!("127.0.0.1:{port}"), "{h}");
    assert_eq!(h["host"], format!("127.0.0.1:{port}"), "{h}");
}

/// The counters wsnoop prints on stderr at the end of a live capture.
fn assert_live_stats(stderr: &[String], frames: usize) {
    let counts = stderr
        .iter()
        .find(|l| l.contains(" connections, ") && l.contains(" frames"))
        .unwrap_or_else(|| panic!("no counters line: {stderr:?}"));
    assert!(counts.contains(" 1 connections,"), "{counts}");
    assert!(counts.contains(" 1 handshakes (1 upgraded)"), "{counts}");
    assert!(counts.contains(&format!(" {frames} frames")), "{counts}");
    let pcap = stderr
        .iter()
        .find(|l| l.contains("packets received by filter"))
        .unwrap_or_else(|| panic!("no libpcap statistics line: {stderr:?}"));
    let numbers: Vec<u64> = pcap
        .split(", ")
        .map(|part| {
            part.split(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("unexpected statistics line {pcap:?}"))
        })
        .collect();
    assert_eq!(numbers.len(), 3, "{pcap}");
    assert!(pcap.contains("packets dropped by kernel"), "{pcap}");
    assert!(pcap.contains("packets dropped by interface"), "{pcap}");
    assert!(numbers[0] > 0, "packets were received: {pcap}");
}

// ---------------------------------------------------------------------------------------------
// The tests

/// Ctrl-C ends a live capture cleanly: every frame printed, the -w file complete, statistics on
/// stderr. A capture on `any` at the same time sees the same frames through Linux cooked v2.
#[test]
fn live_capture_on_lo_and_any_until_sigint() {
    require_root!();
    let ns = Netns::new("sigint");
    let port = 9101u16;
    let filter = format!("tcp port {port}");
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("live.pcap");
    let pcap_arg = pcap.to_str().unwrap();

    let mut lo = Wsnoop::start(
        &ns,
        &[
            "-i",
            "lo",
            "--json",
            "--max-payload",
            MAX_PAYLOAD,
            "-w",
            pcap_arg,
            &filter,
        ],
    );
    let mut any = Wsnoop::start(
        &ns,
        &["-i", "any", "--json", "--max-payload", MAX_PAYLOAD, &filter],
    );
    let listening = lo.wait_listening();
    assert!(
        listening.starts_with("listening on lo, link-type EN10MB")
            && listening.ends_with("snapshot length 262144 bytes"),
        "{listening}"
    );
    let listening = any.wait_listening();
    assert!(
        listening.starts_with("listening on any, link-type LINUX_SLL2"),
        "{listening}"
    );

    drive_traffic(&ns, port);
    // Stop once the last frame is out (wsnoop, like tcpdump, stops reading at once, and a
    // debug build may lag behind the traffic). The interface is quiet by then: a stop request
    // must still get through.
    lo.wait_output("the server's close frame", is_server_close);
    any.wait_output("the server's close frame", is_server_close);
    lo.signal(libc::SIGINT);
    any.signal(libc::SIGTERM);
    let lo = lo.finish();
    let any = any.finish();

    let want = expected_frames();
    for (name, run) in [("-i lo", &lo), ("-i any", &any)] {
        assert!(
            run.status.success(),
            "{name}: {} {:?}",
            run.status,
            run.stderr
        );
        let events = events(&run.stdout);
        assert_frames(
            &frames_seen(&events),
            &want,
            &format!("{name} {:?}", run.stderr),
        );
        assert_handshake(&events, port);
        assert_live_stats(&run.stderr, want.len());
    }

    // The -w file holds the same packets: reading it back gives the same events, timestamps
    // included (the file keeps the capture's nanoseconds).
    let out = Command::new(WSNOOP)
        .args(["-r", pcap_arg, "--json", "--max-payload", MAX_PAYLOAD])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let live = events(&lo.stdout);
    let replay = events(&String::from_utf8(out.stdout).unwrap());
    for kind in ["handshake", "frame"] {
        assert_eq!(
            of_type(&replay, kind),
            of_type(&live, kind),
            "{kind} events of the -w file and of the live capture"
        );
    }
}

/// `--threads` on a live interface: the events come out while the capture runs (the wait below
/// would time out otherwise) and are exact. With two threads the reader decodes the first
/// connection itself; with five, a worker does.
#[test]
fn live_capture_with_threads() {
    require_root!();
    let ns = Netns::new("threads");
    let port = 9104u16;
    let filter = format!("tcp port {port}");
    let want = expected_frames();
    for threads in ["2", "5"] {
        let mut run = Wsnoop::start(
            &ns,
            &[
                "-i",
                "lo",
                "--json",
                "--max-payload",
                MAX_PAYLOAD,
                "--threads",
                threads,
                &filter,
            ],
        );
        run.wait_listening();
        drive_traffic(&ns, port);
        run.wait_output("the server's close frame", is_server_close);
        run.signal(libc::SIGINT);
        let run = run.finish();
        assert!(run.status.success(), "{} {:?}", run.status, run.stderr);
        let events = events(&run.stdout);
        assert_frames(
            &frames_seen(&events),
            &want,
            &format!("--threads {threads} {:?}", run.stderr),
        );
        assert_handshake(&events, port);
    }
}

/// A live capture decodes on the thread that reads it unless `--threads` asks for more: live,
/// the network sets the pace, and handing packets to workers only costs CPU. The threads are
/// counted once the traffic has been decoded, so the workers of `--threads 2` exist by then.
#[test]
fn live_capture_uses_one_thread_unless_asked() {
    require_root!();
    let ns = Netns::new("onethread");
    let port = 9106u16;
    let filter = format!("tcp port {port}");
    for (threads, more_than_one) in [(None, false), (Some("2"), true)] {
        let mut args = vec!["-i", "lo", "--json", "--max-payload", MAX_PAYLOAD];
        if let Some(n) = threads {
            args.extend(["--threads", n]);
        }
        args.push(&filter);
        let mut run = Wsnoop::start(&ns, &args);
        run.wait_listening();
        drive_traffic(&ns, port);
        run.wait_output("the server's close frame", is_server_close);
        let tasks = std::fs::read_dir(format!("/proc/{}/task", run.child.id()))
            .expect("wsnoop's /proc tasks")
            .count();
        run.signal(libc::SIGINT);
        let run = run.finish();
        assert!(run.status.success(), "{} {:?}", run.status, run.stderr);
        assert_eq!(
            tasks > 1,
            more_than_one,
            "--threads {threads:?}: {tasks} threads"
        );
        assert_frames(
            &frames_seen(&events(&run.stdout)),
            &expected_frames(),
            &format!("--threads {threads:?}"),
        );
    }
}

/// `-c` stops a live capture by itself once that many frames are out. With `-Z` the capture
/// goes on as another user once the device is open.
#[test]
fn live_capture_stops_after_count() {
    require_root!();
    let ns = Netns::new("count");
    let port = 9102u16;
    let filter = format!("tcp port {port}");
    let mut wsnoop = Wsnoop::start(
        &ns,
        &["-i", "lo", "--json", "-c", "3", "-Z", "nobody", &filter],
    );
    wsnoop.wait_listening();
    let status = std::fs::read_to_string(format!("/proc/{}/status", wsnoop.child.id()))
        .expect("wsnoop's /proc status");
    // SAFETY: getpwnam's answer is read at once, before any other call can overwrite it.
    let nobody = unsafe {
        let pw = libc::getpwnam(c"nobody".as_ptr());
        assert!(!pw.is_null(), "no user nobody");
        (*pw).pw_uid.to_string()
    };
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(
        uid.split_whitespace().skip(1).collect::<Vec<_>>(),
        [nobody.as_str(); 4],
        "-Z nobody: {uid}"
    );
    drive_traffic(&ns, port);
    let run = wsnoop.finish();
    assert!(run.status.success(), "{} {:?}", run.status, run.stderr);
    let events = events(&run.stdout);
    assert_frames(&frames_seen(&events), &expected_frames()[..3], "-c 3");
    assert_handshake(&events, port);
    assert!(
        run.stderr
            .iter()
            .any(|l| l.contains("packets received by filter")),
        "{:?}",
        run.stderr
    );
}

/// `--duration` stops a live capture by itself, on a quiet interface as on a busy one.
#[test]
fn live_capture_stops_after_duration() {
    require_root!();
    let ns = Netns::new("duration");
    let port = 9103u16;
    let filter = format!("tcp port {port}");

    // Nothing passes: the capture must still notice that its time is up.
    let mut quiet = Wsnoop::start(&ns, &["-i", "lo", "--json", "--duration", "1", &filter]);
    quiet.wait_listening();
    let run = quiet.finish();
    assert!(run.status.success(), "{} {:?}", run.status, run.stderr);
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr
            .iter()
            .any(|l| l.starts_with("0 packets received by filter")),
        "{:?}",
        run.stderr
    );

    // With traffic: however the time falls, what was printed is the start of the connection.
    let mut busy = Wsnoop::start(
        &ns,
        &[
            "-i",
            "lo",
            "--json",
            "--max-payload",
            MAX_PAYLOAD,
            "--duration",
            "2",
            &filter,
        ],
    );
    busy.wait_listening();
    drive_traffic(&ns, port);
    let run = busy.finish();
    assert!(run.status.success(), "{} {:?}", run.status, run.stderr);
    let got = frames_seen(&events(&run.stdout));
    let want = expected_frames();
    assert!(got.len() <= want.len(), "{} frames", got.len());
    assert_frames(&got, &want[..got.len()], "--duration 2");
    assert!(
        run.stderr
            .iter()
            .any(|l| l.contains("packets received by filter")),
        "{:?}",
        run.stderr
    );
}

/// Without root or CAP_NET_RAW, wsnoop says what is missing and how to grant it.
#[test]
fn live_capture_without_privileges_explains_the_fix() {
    require_root!();
    let ns = Netns::new("noperm");
    // A copy that the unprivileged user can surely reach, wherever the build tree is.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let binary = dir.path().join("wsnoop");
    std::fs::copy(WSNOOP, &binary).unwrap();
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    let binary = binary.to_str().unwrap();

    let child = ns
        .command(
            "setpriv",
            &[
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                binary,
                "-i",
                "lo",
                "--duration",
                "5",
            ],
        )
        .current_dir(Path::new("/"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("setpriv (util-linux)");
    let out = wait_output(child);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for needle in [
        "lo:",
        "root",
        "CAP_NET_RAW",
        &format!("setcap cap_net_raw,cap_net_admin=eip {binary}"),
    ] {
        assert!(
            stderr.contains(needle),
            "{needle:?} missing from {stderr:?}"
        );
    }
    assert!(!stderr.contains("listening on"), "{stderr}");
}

fn assert_one_line_error(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.starts_with("wsnoop: "), "{stderr:?}");
    assert!(
        stderr.contains(needle),
        "{needle:?} missing from {stderr:?}"
    );
    assert!(out.stdout.is_empty());
}

/// Unknown interface, interface down, bad filter: one line and a failure. `-D` lists `lo`.
#[test]
fn live_capture_errors_and_interface_list() {
    require_root!();
    let ns = Netns::new("errors");
    // --duration bounds a run that should have failed but started capturing instead.
    let out = wsnoop_output(&ns, &["-i", "doesnotexist0", "--duration", "3"]);
    assert_one_line_error(&out, "doesnotexist0");

    let out = wsnoop_output(&ns, &["-i", "lo", "--duration", "3", "tcp port"]);
    assert_one_line_error(&out, "tcp port");

    run_ok(
        "ip",
        &[
            "-n", &ns.name, "link", "add", "wsdown0", "type", "veth", "peer", "name", "wsdown1",
        ],
    );
    let out = wsnoop_output(&ns, &["-i", "wsdown0", "--duration", "3"]);
    assert_one_line_error(&out, "wsdown0: That device is not up");

    let out = wsnoop_output(&ns, &["-D"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lo = stdout
        .lines()
        .find(|l| {
            l.split_once('.')
                .is_some_and(|(_, rest)| rest.starts_with("lo "))
        })
        .unwrap_or_else(|| panic!("no lo in {stdout:?}"));
    assert!(lo.contains("[Up, Running, Loopback]"), "{lo}");
    assert!(lo.contains("127.0.0.1"), "{lo}");
    assert!(stdout.lines().any(|l| l.contains(".wsdown0")), "{stdout:?}");
}
