//! Bounded and honest under hostile input (issue 19, part A): floods of IP fragments at high
//! offsets, HTTP heads sent a byte at a time, fragments and connections left waiting, output
//! that cannot be written, pcapng timestamps at the ends of their range.
//!
//! Every capture is built here, so what it holds is known from how it was built: the frames
//! written, which datagram's pieces came, which connections fell silent and for how long. The
//! memory bounds are peak RSS (the kernel's, through wait4) against the documented limit,
//! never a time; `--threads 2` must write exactly what one thread writes.

mod common;

use std::io::Read;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde_json::Value;
use sha1::{Digest, Sha1};

use common::{parse_json_lines, wsnoop_bin};

// ---------------------------------------------------------------------------------------------
// Packets and capture files.

const SYN: u8 = 0x02;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

type Ep = ([u8; 4], u16);

/// Ethernet and IPv4 around `l4`; `fragment` is the identification and the flags and offset
/// field (DF alone for a whole packet).
fn ipv4(src: [u8; 4], dst: [u8; 4], fragment: (u16, u16), l4: &[u8]) -> Vec<u8> {
    let mut p = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45, 0];
    p.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    p.extend_from_slice(&fragment.0.to_be_bytes());
    p.extend_from_slice(&fragment.1.to_be_bytes());
    p.extend_from_slice(&[64, 6, 0, 0]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(l4);
    p
}

fn tcp(src: Ep, dst: Ep, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(20 + payload.len());
    t.extend_from_slice(&src.1.to_be_bytes());
    t.extend_from_slice(&dst.1.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&ack.to_be_bytes());
    t.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend_from_slice(payload);
    t
}

/// A whole (unfragmented) TCP segment.
fn segment(src: Ep, dst: Ep, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    ipv4(
        src.0,
        dst.0,
        (0, 0x4000),
        &tcp(src, dst, seq, ack, flags, payload),
    )
}

/// A segment as IPv4 fragments: its TCP header and payload cut at `cut` (a multiple of 8).
fn fragmented(
    src: Ep,
    dst: Ep,
    seq: u32,
    ack: u32,
    payload: &[u8],
    id: u16,
    cut: usize,
) -> [Vec<u8>; 2] {
    let t = tcp(src, dst, seq, ack, ACK | PSH, payload);
    [
        ipv4(src.0, dst.0, (id, 0x2000), &t[..cut]),
        ipv4(src.0, dst.0, (id, (cut / 8) as u16), &t[cut..]),
    ]
}

/// A server's unmasked text frame.
fn text_frame(text: &str) -> Vec<u8> {
    assert!(text.len() < 126);
    let mut f = vec![0x81, text.len() as u8];
    f.extend_from_slice(text.as_bytes());
    f
}

fn accept_of(key: &str) -> String {
    let digest = Sha1::digest(format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(digest)
}

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn request(uri: &str, pad: usize) -> Vec<u8> {
    format!(
        "GET {uri} HTTP/1.1\r\nHost: server\r\nX-Pad: {}\r\nUpgrade: websocket\r\nConnection: \
         Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        "p".repeat(pad)
    )
    .into_bytes()
}

fn response() -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        accept_of(KEY)
    )
    .into_bytes()
}

/// One connection's two ends and where each one's bytes have got to.
struct Conn {
    client: Ep,
    server: Ep,
    c_seq: u32,
    s_seq: u32,
}

impl Conn {
    fn new(n: u8) -> Conn {
        Conn {
            client: ([10, 0, 1, n], 40_000 + u16::from(n)),
            server: ([10, 0, 0, 1], 80),
            c_seq: 1_000,
            s_seq: 50_000,
        }
    }

    fn handshake(&mut self) -> Vec<Vec<u8>> {
        let (c, s) = (self.client, self.server);
        let packets = vec![
            segment(c, s, self.c_seq, 0, SYN, &[]),
            segment(s, c, self.s_seq, self.c_seq + 1, SYN | ACK, &[]),
            segment(c, s, self.c_seq + 1, self.s_seq + 1, ACK, &[]),
        ];
        self.c_seq += 1;
        self.s_seq += 1;
        packets
    }

    /// Client bytes, `per` bytes a segment.
    fn client_sends(&mut self, bytes: &[u8], per: usize) -> Vec<Vec<u8>> {
        bytes
            .chunks(per)
            .map(|piece| {
                let p = segment(
                    self.client,
                    self.server,
                    self.c_seq,
                    self.s_seq,
                    ACK | PSH,
                    piece,
                );
                self.c_seq += piece.len() as u32;
                p
            })
            .collect()
    }

    fn server_sends(&mut self, bytes: &[u8]) -> Vec<u8> {
        let p = segment(
            self.server,
            self.client,
            self.s_seq,
            self.c_seq,
            ACK | PSH,
            bytes,
        );
        self.s_seq += bytes.len() as u32;
        p
    }

    /// Server bytes in one segment, as two IP fragments of datagram `id`.
    fn server_sends_fragmented(&mut self, bytes: &[u8], id: u16) -> [Vec<u8>; 2] {
        let f = fragmented(
            self.server,
            self.client,
            self.s_seq,
            self.c_seq,
            bytes,
            id,
            16,
        );
        self.s_seq += bytes.len() as u32;
        f
    }

    /// The opening handshake, whole segments.
    fn opens(&mut self, uri: &str) -> Vec<Vec<u8>> {
        let mut packets = self.handshake();
        packets.extend(self.client_sends(&request(uri, 0), 1460));
        packets.push(self.server_sends(&response()));
        packets
    }
}

/// A classic pcap (microseconds) of `(seconds, packet)`.
fn write_pcap(path: &Path, packets: &[(f64, Vec<u8>)]) {
    let mut out = Vec::new();
    for field in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 262_144, 1] {
        out.extend_from_slice(&field.to_le_bytes());
    }
    for (ts, p) in packets {
        let micros = (ts * 1e6).round() as u64;
        let len = p.len() as u32;
        for field in [
            (micros / 1_000_000) as u32,
            (micros % 1_000_000) as u32,
            len,
            len,
        ] {
            out.extend_from_slice(&field.to_le_bytes());
        }
        out.extend_from_slice(p);
    }
    std::fs::write(path, out).expect("capture written");
}

/// [`common::pcapng::pcapng`] written to `path`.
fn write_pcapng(path: &Path, interfaces: &[(u8, i64)], packets: &[(u32, u64, Vec<u8>)]) {
    let packets: Vec<(u32, u64, &[u8])> = packets
        .iter()
        .map(|(iface, ticks, p)| (*iface, *ticks, &p[..]))
        .collect();
    std::fs::write(path, common::pcapng::pcapng(interfaces, &packets)).expect("capture written");
}

// ---------------------------------------------------------------------------------------------
// Running wsnoop.

#[derive(Debug, PartialEq, Eq)]
struct Run {
    status: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

/// Runs `cmd` to its end; also its peak RSS in KiB, from wait4 (the kernel's count for this
/// one child, whatever else the test process runs).
#[allow(clippy::zombie_processes)] // reaped by wait4, which std's wait cannot stand in for
fn run_measured(mut cmd: Command) -> (Run, i64) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wsnoop starts");
    let mut out = child.stdout.take().expect("stdout piped");
    let mut err = child.stderr.take().expect("stderr piped");
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        out.read_to_end(&mut bytes).map(|_| bytes)
    });
    let mut stderr = String::new();
    err.read_to_string(&mut stderr).expect("stderr read");
    let stdout = reader.join().expect("reader thread").expect("stdout read");
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it and the status for our own child,
    // which nothing else waits for.
    let (pid, usage) = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        let pid = libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage);
        (pid, usage)
    };
    assert_eq!(
        pid,
        child.id() as libc::pid_t,
        "wait4: {}",
        std::io::Error::last_os_error()
    );
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    let run = Run {
        status: code,
        stdout,
        stderr,
    };
    (run, usage.ru_maxrss)
}

fn wsnoop(capture: &Path, args: &[&str], threads: usize) -> (Run, i64) {
    let mut cmd = Command::new(wsnoop_bin());
    cmd.arg("-r")
        .arg(capture)
        .args(args)
        .args(["--threads", &threads.to_string()]);
    run_measured(cmd)
}

/// Runs with one thread and with two, requires the same output, and returns it.
fn same_with_threads(capture: &Path, args: &[&str]) -> Run {
    let (one, _) = wsnoop(capture, args, 1);
    let (two, _) = wsnoop(capture, args, 2);
    assert_eq!(
        one,
        two,
        "{} {args:?}: one thread and two differ",
        capture.display()
    );
    assert!(!one.stderr.contains("panicked"), "{}", one.stderr);
    one
}

fn events(run: &Run) -> Vec<Value> {
    parse_json_lines(&String::from_utf8_lossy(&run.stdout), "wsnoop --json")
}

fn texts(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["type"] == "frame" && e["opcode"] == "text")
        .filter_map(|e| e["text"].as_str().map(str::to_string))
        .collect()
}

fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["type"] == "anomaly" && e["kind"] == kind)
        .collect()
}

fn temp() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

fn path_in(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

// ---------------------------------------------------------------------------------------------
// IP fragments.

/// N lone 8-byte fragments at offset 65,520: each the last piece of a datagram whose other
/// pieces never come. The old defragmenter reserved 64 KiB for each.
fn fragment_flood(n: u32, start: f64) -> Vec<(f64, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let src = [10, 200, (i >> 8) as u8, i as u8];
            let p = ipv4(src, [10, 0, 0, 1], (i as u16, 8190), &[0xab; 8]);
            (start + f64::from(i) * 1e-6, p)
        })
        .collect()
}

/// A WebSocket connection whose server sends "before" whole, then, after what `between`
/// holds, "after the flood" in a fragmented segment.
fn flood_capture(between: Vec<(f64, Vec<u8>)>) -> Vec<(f64, Vec<u8>)> {
    let mut conn = Conn::new(1);
    let mut packets: Vec<(f64, Vec<u8>)> = conn
        .opens("/flood")
        .into_iter()
        .map(|p| (10.0, p))
        .collect();
    packets.push((10.1, conn.server_sends(&text_frame("before"))));
    packets.extend(between);
    let [a, b] = conn.server_sends_fragmented(&text_frame("after the flood"), 7);
    packets.push((12.0, a));
    packets.push((12.0, b));
    packets
}

/// 12,000 fragments claiming 64 KiB each (768 MB of claims) cost what `--max-frag-bytes`
/// allows: the oldest datagrams are dropped, that is said, and a datagram completed after
/// the flood is still reassembled.
#[test]
fn a_fragment_flood_at_high_offsets_stays_within_its_bound() {
    let dir = temp();
    let (base, flood) = (path_in(&dir, "base.pcap"), path_in(&dir, "flood.pcap"));
    write_pcap(&base, &flood_capture(Vec::new()));
    write_pcap(&flood, &flood_capture(fragment_flood(12_000, 11.0)));
    let bound_kib = 1024;
    let bound = (bound_kib * 1024).to_string();
    let args = ["--json", "--max-frag-bytes", &bound];
    let run = same_with_threads(&flood, &args);
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    assert_eq!(texts(&events(&run)), ["before", "after the flood"]);
    let said: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("IP datagrams dropped"))
        .collect();
    assert_eq!(said.len(), 1, "the drops are said once: {}", run.stderr);
    assert!(said[0].contains(&bound), "{}", said[0]);
    for threads in [1, 2] {
        let (base_run, base_kib) = wsnoop(&base, &args, threads);
        assert_eq!(texts(&events(&base_run)), ["before", "after the flood"]);
        assert!(base_run.stderr.is_empty(), "{}", base_run.stderr);
        let (_, flood_kib) = wsnoop(&flood, &args, threads);
        // The accounting is the allocator's; its own slack and the table's growth are
        // within twice the bound, and 4 MiB more for what the run itself varies by.
        assert!(
            flood_kib - base_kib <= 2 * bound_kib + 4096,
            "{threads} threads: peak RSS {flood_kib} KiB with the flood, {base_kib} KiB without"
        );
    }
}

/// A datagram waits 30 s for its last piece, with one thread or two: completed 10 s later it
/// is reassembled, 60 s later its piece is a gap.
#[test]
fn fragments_expire_alike_with_one_thread_and_two() {
    for (wait, quiet_meanwhile) in [(10.0, true), (60.0, true), (10.0, false), (60.0, false)] {
        let dir = temp();
        let capture = path_in(&dir, "expire.pcap");
        let mut conn = Conn::new(2);
        let mut packets: Vec<(f64, Vec<u8>)> = conn
            .opens("/expire")
            .into_iter()
            .map(|p| (100.0, p))
            .collect();
        let [first, last] = conn.server_sends_fragmented(&text_frame("pieces"), 9);
        packets.push((101.0, first));
        if !quiet_meanwhile {
            // Other traffic every 5 s: sweeps between the two pieces.
            let mut other = Conn::new(3);
            let mut t = 102.0;
            for p in other.handshake() {
                packets.push((t, p));
            }
            while t < 101.0 + wait {
                packets.push((t, other.client_sends(b"x", 1).remove(0)));
                t += 5.0;
            }
        }
        packets.push((101.0 + wait, last));
        packets.push((102.0 + wait, conn.server_sends(&text_frame("whole"))));
        write_pcap(&capture, &packets);
        let run = same_with_threads(&capture, &["--json"]);
        let events = events(&run);
        let gaps = of_kind(&events, "tcp_gap");
        if wait < 30.0 {
            assert_eq!(texts(&events), ["pieces", "whole"], "after {wait} s");
            assert!(gaps.is_empty(), "after {wait} s: {gaps:?}");
        } else {
            assert_eq!(texts(&events), ["whole"], "after {wait} s");
            assert_eq!(gaps.len(), 1, "after {wait} s: {events:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Idle connections.

/// Connections spread over the reader and the workers, all silent for 400 s while another
/// goes on: each ends as "timeout" (the default 300 s), with 1, 2 or 3 threads.
#[test]
fn idle_connections_time_out_alike_with_threads() {
    let dir = temp();
    let capture = path_in(&dir, "idle.pcap");
    let mut packets = Vec::new();
    for n in 10..16 {
        let mut conn = Conn::new(n);
        packets.extend(
            conn.opens(&format!("/idle/{n}"))
                .into_iter()
                .map(|p| (1000.0, p)),
        );
    }
    let mut busy = Conn::new(30);
    packets.extend(busy.handshake().into_iter().map(|p| (1000.0, p)));
    for k in 1..=100 {
        packets.push((
            1000.0 + f64::from(k) * 4.0,
            busy.client_sends(b"y", 1).remove(0),
        ));
    }
    write_pcap(&capture, &packets);
    let one = same_with_threads(&capture, &["--json"]);
    let (three, _) = wsnoop(&capture, &["--json"], 3);
    assert_eq!(one, three, "one thread and three differ");
    let events = events(&one);
    let ends: Vec<(&str, f64)> = events
        .iter()
        .filter(|e| e["type"] == "close")
        .map(|e| {
            (
                e["end"].as_str().unwrap_or("?"),
                e["ts"].as_f64().unwrap_or(0.0),
            )
        })
        .collect();
    assert_eq!(ends.len(), 6, "{events:?}");
    for (end, ts) in ends {
        assert_eq!(end, "timeout");
        // Swept within 5 s of the 300 s mark.
        assert!((1300.0..1305.0).contains(&ts), "ended at {ts}");
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP heads a byte at a time.

/// Request heads of 40 KB sent a byte per segment, two connections interleaved, are taken
/// whole; one past 64 KiB is given up as head_too_large, its upgrade still seen.
#[test]
fn heads_sent_byte_by_byte_are_taken_whole() {
    let dir = temp();
    let capture = path_in(&dir, "heads.pcap");
    let mut conns: Vec<Conn> = (40..43).map(Conn::new).collect();
    let mut packets = Vec::new();
    for c in &mut conns {
        packets.extend(c.handshake().into_iter().map(|p| (1.0, p)));
    }
    let heads = [
        request("/a", 40_000),
        request("/b", 40_000),
        request("/big", 66_000),
    ];
    let mut segments: Vec<Vec<Vec<u8>>> = conns
        .iter_mut()
        .zip(&heads)
        .map(|(c, h)| c.client_sends(h, 1))
        .collect();
    let longest = segments.iter().map(Vec::len).max().unwrap_or(0);
    for i in 0..longest {
        for s in &mut segments {
            if let Some(p) = s.get_mut(i) {
                packets.push((2.0, std::mem::take(p)));
            }
        }
    }
    for c in &mut conns[..2] {
        packets.push((3.0, c.server_sends(&response())));
        packets.push((3.0, c.server_sends(&text_frame("upgraded"))));
    }
    write_pcap(&capture, &packets);
    let run = same_with_threads(&capture, &["--json"]);
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    let events = events(&run);
    let uris: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "handshake" && e["upgraded"] == true)
        .filter_map(|e| e["uri"].as_str())
        .collect();
    assert_eq!(uris, ["/a", "/b"]);
    assert_eq!(texts(&events), ["upgraded", "upgraded"]);
    let abandoned = of_kind(&events, "http_abandoned");
    assert_eq!(abandoned.len(), 1, "{events:?}");
    assert!(
        abandoned[0]["detail"]
            .as_str()
            .unwrap_or("")
            .contains("head_too_large")
    );
}

// ---------------------------------------------------------------------------------------------
// Output that cannot be written.

fn small_capture(dir: &tempfile::TempDir) -> PathBuf {
    let capture = path_in(dir, "small.pcap");
    let mut conn = Conn::new(50);
    let mut packets: Vec<(f64, Vec<u8>)> =
        conn.opens("/out").into_iter().map(|p| (5.0, p)).collect();
    for i in 0..200 {
        packets.push((6.0, conn.server_sends(&text_frame(&format!("frame {i}")))));
    }
    write_pcap(&capture, &packets);
    capture
}

fn one_line(run: &Run, needle: &str) {
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", run.stderr);
    assert!(
        lines[0].starts_with("wsnoop: ") && lines[0].contains(needle),
        "{}",
        run.stderr
    );
}

/// `-w /dev/full`: the file cannot be written, the run ends with one line and exit 1.
#[test]
fn a_save_file_that_cannot_be_written_is_an_error() {
    let dir = temp();
    let capture = small_capture(&dir);
    for args in [
        &["-q", "-w", "/dev/full"][..],
        &["--json", "-w", "/dev/full"],
    ] {
        for threads in [1, 2] {
            let (run, _) = wsnoop(&capture, args, threads);
            assert_eq!(run.status, Some(1), "{args:?} {threads}: {}", run.stderr);
            one_line(&run, "/dev/full");
        }
    }
}

/// A stdout closed before the start, or one that fails (a full device), ends the run with one
/// line and exit 1; a reader that goes away (`| head`) is no failure, and says nothing.
#[test]
fn output_that_cannot_be_written_is_an_error() {
    let dir = temp();
    let capture = small_capture(&dir);
    for threads in ["1", "2"] {
        let closed = |quiet: bool| {
            let mut cmd = Command::new(wsnoop_bin());
            cmd.arg("-r").arg(&capture).args(["--threads", threads]);
            if quiet {
                cmd.arg("-q");
            }
            // SAFETY: between fork and exec only close(2), which is async-signal-safe.
            unsafe {
                cmd.pre_exec(|| {
                    libc::close(1);
                    Ok(())
                });
            }
            let out = cmd.stderr(Stdio::piped()).output().expect("wsnoop runs");
            Run {
                status: out.status.code(),
                stdout: Vec::new(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        };
        let run = closed(false);
        assert_eq!(run.status, Some(1), "closed stdout: {}", run.stderr);
        one_line(&run, "standard output");
        // -q writes nothing there: nothing is lost.
        assert_eq!(closed(true).status, Some(0));

        let full = Command::new(wsnoop_bin())
            .arg("-r")
            .arg(&capture)
            .args(["--threads", threads])
            .stdout(std::fs::File::create("/dev/full").expect("/dev/full opens"))
            .output()
            .expect("wsnoop runs");
        let run = Run {
            status: full.status.code(),
            stdout: Vec::new(),
            stderr: String::from_utf8_lossy(&full.stderr).into_owned(),
        };
        assert_eq!(run.status, Some(1), "stdout on /dev/full: {}", run.stderr);
        one_line(&run, "No space left");

        let mut child = Command::new(wsnoop_bin())
            .arg("-r")
            .arg(&capture)
            .args(["--threads", threads, "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("wsnoop starts");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wsnoop ends");
        assert_eq!(out.status.code(), Some(0));
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Time at the ends of its range.

/// A session whose handshake is stamped -2^63 s and whose frames +2^63 - 1 s (pcapng's
/// if_tsoffset and a second interface allow both), and one whose clock runs backwards: no
/// overflow (these are debug builds), the same with two threads, durations that are the true
/// differences.
#[test]
fn extreme_pcapng_timestamps_give_sane_durations() {
    let dir = temp();
    let capture = path_in(&dir, "extreme.pcapng");
    // Interface 0 counts seconds from -2^63; interface 1 seconds from 0.
    let interfaces = [(0u8, i64::MIN), (0u8, 0)];
    let mut packets = Vec::new();
    let mut early = Conn::new(60);
    for (i, p) in early.opens("/extreme").into_iter().enumerate() {
        packets.push((0, i as u64, p));
    }
    packets.push((
        1,
        u64::MAX,
        early.server_sends(&text_frame("at the end of time")),
    ));
    // Backwards: from +2^63 - 1 to -2^63.
    let mut back = Conn::new(61);
    for p in back.opens("/back") {
        packets.push((1, u64::MAX, p));
    }
    packets.push((0, 0, back.server_sends(&text_frame("before the beginning"))));
    write_pcapng(&capture, &interfaces, &packets);
    for args in [&["--json"][..], &["--summary", "--show", "all"]] {
        let run = same_with_threads(&capture, args);
        assert_eq!(run.status, Some(0), "{args:?}: {}", run.stderr);
    }
    let diagnosed: Vec<Run> = [1, 2]
        .iter()
        .map(|threads| {
            let mut cmd = Command::new(wsnoop_bin());
            cmd.args(["diagnose", "--threads", &threads.to_string(), "-r"])
                .arg(&capture);
            run_measured(cmd).0
        })
        .collect();
    assert_eq!(
        diagnosed[0], diagnosed[1],
        "diagnose: one thread and two differ"
    );
    // Exit 1 for what is wrong: the first session fell silent for 2^64 s, past the timeout.
    assert_eq!(diagnosed[0].status, Some(1), "{}", diagnosed[0].stderr);
    assert!(diagnosed[0].stderr.is_empty(), "{}", diagnosed[0].stderr);
    assert!(String::from_utf8_lossy(&diagnosed[0].stdout).contains("idle timeout"));
    let run = same_with_threads(&capture, &["--json"]);
    let events = events(&run);
    let flows: Vec<&Value> = events.iter().filter(|e| e["type"] == "flow").collect();
    assert_eq!(flows.len(), 2, "{events:?}");
    let span = 2f64.powi(64);
    for flow in flows {
        let duration = flow["duration"].as_f64().expect("a duration");
        assert!(duration.is_finite() && duration >= 0.0, "{flow}");
        match flow["uri"].as_str() {
            // From the first packet at -2^63 s to its end at or after 2^63 - 1 s.
            Some("/extreme") => assert!((duration - span).abs() / span < 1e-9, "{flow}"),
            // Its last packet came before its first: no negative duration.
            Some("/back") => assert_eq!(duration, 0.0, "{flow}"),
            other => panic!("unexpected flow {other:?}"),
        }
    }
}
