//! Live capture holds a burst as tcpdump does: on `any`, with the same `-B`, wsnoop drops no more
//! packets than tcpdump, and it still prints each frame while the capture runs.
//!
//! In a private network namespace (loopback only, MTU 1500, offloads off, as in tests/live.rs)
//! tcpdump and wsnoop capture the same port on `any`. Both are stopped (SIGSTOP) while a few
//! hundred tungstenite clients connect at once and talk to an echo server, so the burst has to
//! wait in the kernel's ring; then both go on. Each client writes down what it sent: that, not
//! wsnoop's output, is what the frames are checked against. The drop counts come from what
//! each program prints at the end (libpcap's statistics).
//!
//! Measured with this test (300 clients and one more, `-B 65536`, both readers stopped through
//! the burst): in immediate mode, wsnoop's ring before, one 512 KiB slot per packet on `any`,
//! wsnoop dropped 14 158 and 14 161 of some 14 440 packets that the filter passed, and the test
//! failed; tcpdump, and wsnoop with its ring of packed blocks now, dropped none. At `-B 4096`
//! both drop, wsnoop somewhat more than tcpdump (4728 against 4364) as its blocks are handed
//! over after 100 ms, not 1000 ms: see `LIVE_READ_TIMEOUT_MS` in src/capture/mod.rs.
//!
//! Needs root (CI runs as root); skips itself otherwise. Every wait is bounded, and no
//! assertion is on timing beyond "printed before the sender closed".

#![cfg(target_os = "linux")]

mod common;

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use tungstenite::Message;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;

use common::lines_of;
use common::netns::{Netns, is_root};

/// Clients in the burst: enough that immediate mode's ring (256 slots at `-B 65536` on `any`)
/// overflows many times over, few enough for a debug build to decode in a few seconds.
const CLIENTS: usize = 300;
/// Text messages each client sends, then one binary message of [`BINARY_LEN`] bytes.
const TEXTS: usize = 2;
/// More than one segment at MTU 1500.
const BINARY_LEN: usize = 3000;
/// The kernel buffer of both captures, in KiB: the one the fixtures' tcpdump uses.
const BUFFER_KIB: &str = "65536";
const PORT: u16 = 9311;
const CLOSE_REASON: &str = "bye";
/// The longest any one wait lasts.
const WAIT: Duration = Duration::from_secs(15);

/// A capture program in the namespace; killed on drop unless it already ended.
struct Capture {
    what: &'static str,
    child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    stderr_seen: Vec<String>,
}

impl Capture {
    fn start(what: &'static str, ns: &Netns, program: &str, args: &[&str]) -> Capture {
        let mut child = ns
            .command(program, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {what}: {e}"));
        Capture {
            what,
            stdout: lines_of(child.stdout.take().unwrap()),
            stderr: lines_of(child.stderr.take().unwrap()),
            child,
            stderr_seen: Vec::new(),
        }
    }

    /// Waits for the "listening on" line (tcpdump prefixes it with "tcpdump: ").
    fn wait_listening(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    let listening = line.contains("listening on ");
                    self.stderr_seen.push(line);
                    if listening {
                        return;
                    }
                }
                Err(_) => panic!(
                    "{} did not start capturing: {:?}",
                    self.what, self.stderr_seen
                ),
            }
        }
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: our own child, not yet reaped, so the pid is still its.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill {}", self.what);
    }

    /// SIGSTOP, then waits until the kernel shows the process stopped: from then on what it
    /// captures waits in its ring.
    fn pause(&self) {
        self.signal(libc::SIGSTOP);
        let stat = format!("/proc/{}/stat", self.child.id());
        let deadline = Instant::now() + WAIT;
        loop {
            let text = std::fs::read_to_string(&stat).unwrap_or_default();
            // The state follows the parenthesised command name.
            let state = text
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next());
            if state == Some('T') {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not stop: {text}",
                self.what
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGINT, then waits for the end; returns the rest of stdout and all of stderr.
    fn stop(mut self) -> (Vec<String>, Vec<String>) {
        self.signal(libc::SIGINT);
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!("{} did not stop within {WAIT:?}", self.what);
            }
            thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = std::mem::take(&mut self.stderr_seen);
        stderr.extend(self.stderr.iter());
        assert!(status.success(), "{}: {status} {stderr:?}", self.what);
        (self.stdout.iter().collect(), stderr)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// "N packets dropped by kernel" from a program's closing statistics (tcpdump prints it on a
/// line of its own, wsnoop between the received and the interface counts).
fn kernel_drops(what: &str, stderr: &[String]) -> u64 {
    stderr
        .iter()
        .flat_map(|l| l.split(", "))
        .find_map(|part| {
            part.strip_suffix(" packets dropped by kernel")
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("{what} printed no kernel drop count: {stderr:?}"))
}

// ---------------------------------------------------------------------------------------------
// The traffic

/// A frame as a client sent it, or as its server echoed it: direction, opcode, payload.
type Sent = (String, String, Vec<u8>);

fn data_frames(dir: &str, msg: &Message) -> Sent {
    match msg {
        Message::Text(t) => (dir.into(), "text".into(), t.as_bytes().to_vec()),
        Message::Binary(b) => (dir.into(), "binary".into(), b.to_vec()),
        other => panic!("not a data message: {other:?}"),
    }
}

fn timeouts(stream: &TcpStream) {
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
}

/// Echoes data messages until the client's close is answered.
fn serve(stream: TcpStream) -> Result<(), String> {
    timeouts(&stream);
    let mut ws = tungstenite::accept(stream).map_err(|e| format!("server handshake: {e}"))?;
    loop {
        match ws.read() {
            Ok(msg @ (Message::Text(_) | Message::Binary(_))) => {
                ws.send(msg).map_err(|e| format!("server send: {e}"))?
            }
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => return Ok(()),
            Err(e) => return Err(format!("server read: {e}")),
        }
    }
}

/// Accepts `count` connections on 127.0.0.1:PORT inside `ns`, each on a thread of its own.
/// Returns once the listener is bound.
fn start_server(ns: &Arc<Netns>, count: usize) -> Receiver<Result<(), String>> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let ns = Arc::clone(ns);
    thread::spawn(move || {
        let listener = ns.enter().and_then(|()| {
            TcpListener::bind(("127.0.0.1", PORT)).map_err(|e| format!("bind {PORT}: {e}"))
        });
        let listener = match listener {
            Ok(l) => l,
            Err(e) => {
                let _ = ready_tx.send(Err(e));
                return;
            }
        };
        // std listens with a backlog of 128: a burst larger than that would lose SYNs and
        // wait a second for their retransmission. Listening again only raises the backlog.
        // SAFETY: a listening socket we own.
        unsafe { libc::listen(listener.as_raw_fd(), 4096) };
        let _ = ready_tx.send(Ok(()));
        let mut handlers = Vec::new();
        for _ in 0..count {
            match listener.accept() {
                Ok((stream, _)) => handlers.push(thread::spawn(move || serve(stream))),
                Err(e) => {
                    let _ = done_tx.send(Err(format!("accept: {e}")));
                    return;
                }
            }
        }
        let result = handlers.into_iter().try_for_each(|h| {
            h.join()
                .unwrap_or_else(|_| Err("server thread panicked".into()))
        });
        let _ = done_tx.send(result);
    });
    match ready_rx.recv_timeout(WAIT) {
        Ok(Ok(())) => done_rx,
        Ok(Err(e)) => panic!("server: {e}"),
        Err(_) => panic!("server did not start"),
    }
}

/// The messages client `i` sends, in order.
fn messages_of(i: usize) -> Vec<Message> {
    let mut msgs: Vec<Message> = (0..TEXTS)
        .map(|k| Message::text(format!("client {i} message {k} ✓")))
        .collect();
    msgs.push(Message::binary(
        (0..BINARY_LEN)
            .map(|b| ((b + i) % 251) as u8)
            .collect::<Vec<u8>>(),
    ));
    msgs
}

/// A connected client, upgraded: its local port (how wsnoop's events name it) and its socket.
fn connect(ns: &Netns) -> Result<(u16, tungstenite::WebSocket<TcpStream>), String> {
    ns.enter()?;
    let stream =
        TcpStream::connect(("127.0.0.1", PORT)).map_err(|e| format!("connect {PORT}: {e}"))?;
    timeouts(&stream);
    let port = stream.local_addr().map_err(|e| e.to_string())?.port();
    let url = format!("ws://127.0.0.1:{PORT}/burst");
    let (ws, _) =
        tungstenite::client(url.as_str(), stream).map_err(|e| format!("client handshake: {e}"))?;
    Ok((port, ws))
}

/// Sends `msg`, waits for its echo, and writes both frames down in `sent`.
fn exchange(
    ws: &mut tungstenite::WebSocket<TcpStream>,
    msg: Message,
    sent: &mut Vec<Sent>,
) -> Result<(), String> {
    ws.send(msg.clone())
        .map_err(|e| format!("client send: {e}"))?;
    let echo = ws.read().map_err(|e| format!("client read: {e}"))?;
    if echo != msg {
        return Err(format!("echo differs: {echo:?}"));
    }
    sent.push(data_frames("c2s", &msg));
    sent.push(data_frames("s2c", &echo));
    Ok(())
}

/// Sends a close frame and waits for the server's; both go down in `sent`.
fn close(mut ws: tungstenite::WebSocket<TcpStream>, sent: &mut Vec<Sent>) -> Result<(), String> {
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: CLOSE_REASON.into(),
    }))
    .map_err(|e| format!("client close: {e}"))?;
    loop {
        match ws.read() {
            Ok(Message::Close(_)) => {}
            Ok(other) => return Err(format!("got {other:?} while closing")),
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => return Err(format!("read while closing: {e}")),
        }
    }
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(CLOSE_REASON.as_bytes());
    // tungstenite answers a close with the same code and reason.
    for dir in ["c2s", "s2c"] {
        sent.push((dir.into(), "close".into(), payload.clone()));
    }
    Ok(())
}

fn client(ns: &Netns, i: usize, start: &Barrier) -> Result<(u16, Vec<Sent>), String> {
    start.wait();
    let (port, mut ws) = connect(ns)?;
    let mut sent = Vec::new();
    for msg in messages_of(i) {
        exchange(&mut ws, msg, &mut sent)?;
    }
    close(ws, &mut sent)?;
    Ok((port, sent))
}

/// `CLIENTS` clients connecting at once; what each sent and was sent, by its local port.
fn burst(ns: &Arc<Netns>) -> BTreeMap<u16, Vec<Sent>> {
    let start = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (ns, start) = (Arc::clone(ns), Arc::clone(&start));
            thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || client(&ns, i, &start))
                .expect("client thread")
        })
        .collect();
    clients
        .into_iter()
        .map(|c| match c.join() {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => panic!("client failed: {e}"),
            Err(_) => panic!("client panicked"),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// wsnoop's output

/// The client's port of an event ("client": "127.0.0.1:PORT").
fn client_port(e: &Value) -> u16 {
    e["client"]
        .as_str()
        .and_then(|c| c.rsplit_once(':'))
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("event without a client port: {e}"))
}

/// A frame event as [`Sent`] with the client port it belongs to.
fn frame_of(e: &Value) -> (u16, Sent) {
    let port = client_port(e);
    let payload = match (&e["text"], &e["data"]) {
        (Value::String(text), _) => text.as_bytes().to_vec(),
        (_, Value::String(data)) => STANDARD.decode(data).expect("data is base64"),
        _ => panic!("frame without payload: {e}"),
    };
    assert_eq!(e["truncated"], false, "{e}");
    assert_eq!(e["fin"], true, "{e}");
    let dir = e["dir"].as_str().expect("dir").to_string();
    let opcode = e["opcode"].as_str().expect("opcode").to_string();
    (port, (dir, opcode, payload))
}

/// Client ports whose every frame tshark finds in tcpdump's capture: the connections tcpdump's
/// drops did not touch.
fn complete_in_tcpdump(pcap: &Path, sent: &BTreeMap<u16, Vec<Sent>>) -> Vec<u16> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args([
            "-d",
            &format!("tcp.port=={PORT},http"),
            "-Y",
            "websocket",
            "-T",
            "fields",
            "-e",
            "tcp.srcport",
            "-e",
            "tcp.dstport",
            "-e",
            "websocket.opcode",
        ])
        .output()
        .expect("tshark");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut frames: BTreeMap<u16, usize> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        let (Some(src), Some(dst), Some(ops)) = (cols.first(), cols.get(1), cols.get(2)) else {
            continue;
        };
        let port = if *src == PORT.to_string() { dst } else { src };
        if let Ok(port) = port.parse() {
            // One packet may carry several frames: tshark lists their opcodes with commas.
            *frames.entry(port).or_default() += ops.split(',').count();
        }
    }
    sent.iter()
        .filter(|(port, want)| frames.get(port) == Some(&want.len()))
        .map(|(port, _)| *port)
        .collect()
}

#[test]
fn live_any_holds_a_burst_as_tcpdump_does() {
    if !is_root() {
        eprintln!("skipped: live capture tests need root (CAP_NET_RAW and CAP_SYS_ADMIN)");
        return;
    }
    let ns = Arc::new(Netns::new("burst"));
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("tcpdump.pcap");
    let filter = format!("tcp port {PORT}");
    let mut tcpdump = Capture::start(
        "tcpdump",
        &ns,
        "tcpdump",
        &[
            "-i",
            "any",
            "-B",
            BUFFER_KIB,
            "-Z",
            "root",
            "-w",
            pcap.to_str().unwrap(),
            &filter,
        ],
    );
    let wsnoop_bin = common::wsnoop_bin();
    let mut wsnoop = Capture::start(
        "wsnoop",
        &ns,
        wsnoop_bin.to_str().unwrap(),
        &[
            "-i",
            "any",
            "-B",
            BUFFER_KIB,
            "--json",
            "--max-payload",
            "4096",
            &filter,
        ],
    );
    tcpdump.wait_listening();
    wsnoop.wait_listening();

    tcpdump.pause();
    wsnoop.pause();
    let server = start_server(&ns, CLIENTS + 1);
    let mut sent = burst(&ns);
    tcpdump.signal(libc::SIGCONT);
    wsnoop.signal(libc::SIGCONT);

    // One more client, while both capture: its first frame must be printed before it goes on,
    // so wsnoop hands out a frame while the capture runs, not only when it stops.
    let (opened_tx, opened_rx) = mpsc::channel();
    let (go_on_tx, go_on_rx) = mpsc::channel::<()>();
    let live = {
        let ns = Arc::clone(&ns);
        thread::spawn(move || -> Result<(u16, Vec<Sent>), String> {
            let (port, mut ws) = connect(&ns)?;
            let marker = Message::text(format!("live client on port {port}"));
            let mut sent = Vec::new();
            exchange(&mut ws, marker.clone(), &mut sent)?;
            let _ = opened_tx.send((port, data_frames("c2s", &marker)));
            go_on_rx
                .recv_timeout(WAIT)
                .map_err(|_| "never told to close".to_string())?;
            close(ws, &mut sent)?;
            Ok((port, sent))
        })
    };
    let Ok((port, marker)) = opened_rx.recv_timeout(WAIT) else {
        panic!("live client: {:?}", live.join());
    };
    let mut events = Vec::new();
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = wsnoop.stdout.recv_timeout(left) else {
            panic!(
                "wsnoop did not print the live client's frame while its connection was open \
                 ({} events before)",
                events.len()
            );
        };
        let e: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let found = e["type"] == "frame" && frame_of(&e) == (port, marker.clone());
        events.push(e);
        if found {
            break;
        }
    }
    let _ = go_on_tx.send(());
    match live.join() {
        Ok(Ok((port, live_sent))) => sent.insert(port, live_sent),
        Ok(Err(e)) => panic!("live client: {e}"),
        Err(_) => panic!("live client panicked"),
    };
    match server.recv_timeout(WAIT) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("server: {e}"),
        Err(_) => panic!("server did not finish"),
    }

    // Let the last packets (the live client's close) through the ring before stopping.
    let want_frames: usize = sent.values().map(Vec::len).sum();
    let deadline = Instant::now() + WAIT;
    while events.iter().filter(|e| e["type"] == "frame").count() < want_frames {
        let left = deadline.saturating_duration_since(Instant::now());
        match wsnoop.stdout.recv_timeout(left) {
            Ok(line) => events.push(serde_json::from_str(&line).expect("JSON line")),
            Err(_) => break,
        }
    }
    let (rest, wsnoop_stderr) = wsnoop.stop();
    events.extend(
        rest.iter()
            .map(|l| serde_json::from_str::<Value>(l).expect("JSON line")),
    );
    // tcpdump reads a block of its ring when the block is full or 1000 ms old, and does not
    // read on after SIGINT: without this wait its file would miss the burst's last packets.
    thread::sleep(Duration::from_millis(1500));
    let (_, tcpdump_stderr) = tcpdump.stop();

    let tcpdump_drops = kernel_drops("tcpdump", &tcpdump_stderr);
    let wsnoop_drops = kernel_drops("wsnoop", &wsnoop_stderr);
    assert!(
        wsnoop_drops <= tcpdump_drops,
        "wsnoop dropped {wsnoop_drops} packets of the burst, tcpdump {tcpdump_drops}: \
         {wsnoop_stderr:?} / {tcpdump_stderr:?}"
    );

    let mut got: BTreeMap<u16, Vec<Sent>> = BTreeMap::new();
    for e in events.iter().filter(|e| e["type"] == "frame") {
        let (port, frame) = frame_of(e);
        got.entry(port).or_default().push(frame);
    }
    let checked = if tcpdump_drops == 0 {
        sent.keys().copied().collect()
    } else {
        complete_in_tcpdump(&pcap, &sent)
    };
    assert!(
        !checked.is_empty(),
        "tcpdump kept no connection whole ({tcpdump_drops} drops)"
    );
    for port in &checked {
        let (want, got) = (&sent[port], got.get(port).map_or(&[][..], Vec::as_slice));
        if want[..] != got[..] {
            let short = |f: &[Sent]| -> Vec<String> {
                f.iter()
                    .map(|(d, o, p)| format!("{d} {o} {} bytes", p.len()))
                    .collect()
            };
            panic!(
                "client port {port}: wsnoop printed {:?}, the client wrote down {:?} \
                 ({wsnoop_drops} packets dropped)",
                short(got),
                short(want)
            );
        }
    }
    eprintln!(
        "burst of {} connections: tcpdump dropped {tcpdump_drops} packets, wsnoop \
         {wsnoop_drops}; {} connections checked; wsnoop: {:?}",
        sent.len(),
        checked.len(),
        wsnoop_stderr.last()
    );
    let mut upgrades: BTreeMap<u16, usize> = BTreeMap::new();
    for e in events.iter().filter(|e| e["type"] == "handshake") {
        assert_eq!(e["upgraded"], true, "{e}");
        assert_eq!(e["uri"], "/burst", "{e}");
        *upgrades.entry(client_port(e)).or_default() += 1;
    }
    for port in &checked {
        assert_eq!(
            upgrades.get(port),
            Some(&1),
            "handshakes of client port {port}"
        );
    }
}
