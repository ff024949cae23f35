//! pcapng read as it is: interfaces of different link types and timestamp resolutions in one
//! file, several sections, simple and obsolete packet blocks, decryption secrets, BPF filters
//! per link type, `-w`, and a stream on standard input.
//!
//! The captures in fixtures/pcapng/ are made by fixtures/pcapng/make.sh with dumpcap, cat and
//! editcap; frames are checked against tshark, messages against what the sending programs
//! logged (NAME.expected.json), timestamps against tshark's. Files with simple or obsolete
//! packet blocks, which tools rarely write, are built here from node-ws.pcap's records, by
//! the pcapng spec.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{fixtures_dir, parse_json_lines, run_wsnoop_json, wsnoop_bin};
use serde_json::Value;
use sha2::Digest;

fn pcapng_dir() -> PathBuf {
    fixtures_dir().join("pcapng")
}

fn fixture(name: &str) -> PathBuf {
    pcapng_dir().join(name)
}

fn load_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

/// Runs wsnoop with these arguments; (exit code, stdout, stderr).
fn wsnoop(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(wsnoop_bin())
        .args(args)
        .output()
        .expect("running wsnoop");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn tshark(args: &[&str]) -> String {
    let out = Command::new("tshark")
        .args(args)
        .output()
        .expect("tshark runs (apt-get install tshark)");
    assert!(out.status.success(), "tshark {args:?} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One WebSocket frame: (sent by the client, opcode, payload length, fin, masked).
type Frame = (bool, u64, u64, bool, bool);

fn opcode_number(name: &str) -> u64 {
    match name {
        "continuation" => 0,
        "text" => 1,
        "binary" => 2,
        "close" => 8,
        "ping" => 9,
        "pong" => 10,
        other => panic!("opcode {other}"),
    }
}

fn wsnoop_frames(events: &[Value]) -> Vec<Frame> {
    events
        .iter()
        .filter(|e| s(e, "type") == "frame")
        .map(|e| {
            (
                s(e, "dir") == "c2s",
                opcode_number(s(e, "opcode")),
                e["len"].as_u64().expect("len"),
                e["fin"].as_bool().expect("fin"),
                e["masked"].as_bool().expect("masked"),
            )
        })
        .collect()
}

/// tshark's WebSocket frames, in file order.
fn tshark_frames(file: &Path, ports: &[u16]) -> Vec<Frame> {
    let mut args: Vec<String> = vec!["-r".into(), file.to_str().unwrap().into()];
    for port in ports {
        args.push("-d".into());
        args.push(format!("tcp.port=={port},http"));
    }
    args.push("-Y".into());
    args.push("websocket".into());
    let args: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .chain([
            "-T",
            "fields",
            "-E",
            "occurrence=a",
            "-e",
            "tcp.srcport",
            "-e",
            "websocket.opcode",
            "-e",
            "websocket.payload_length",
            "-e",
            "websocket.payload_length_ext_16",
            "-e",
            "websocket.payload_length_ext_64",
            "-e",
            "websocket.fin",
            "-e",
            "websocket.mask",
        ])
        .collect();
    let text = tshark(&args);
    let mut frames = Vec::new();
    for line in text.lines() {
        let cols: Vec<Vec<&str>> = line
            .split('\t')
            .map(|c| c.split(',').filter(|x| !x.is_empty()).collect())
            .collect();
        let client = cols[0]
            .first()
            .is_some_and(|p| !ports.iter().any(|port| *p == port.to_string()));
        let (mut ext16, mut ext64) = (cols[3].iter(), cols[4].iter());
        for (i, op) in cols[1].iter().enumerate() {
            let short: u64 = cols[2][i].parse().expect("length");
            let len = match short {
                126 => ext16
                    .next()
                    .expect("16-bit length")
                    .parse()
                    .expect("length"),
                127 => ext64
                    .next()
                    .expect("64-bit length")
                    .parse()
                    .expect("length"),
                n => n,
            };
            let flag = |v: &str| v == "1" || v == "True";
            frames.push((
                client,
                op.parse().expect("opcode"),
                len,
                flag(cols[5][i]),
                flag(cols[6][i]),
            ));
        }
    }
    frames
}

/// Frames per direction: the order across directions depends on which copy came first.
fn by_direction(frames: &[Frame]) -> [Vec<Frame>; 2] {
    [
        frames.iter().filter(|f| f.0).copied().collect(),
        frames.iter().filter(|f| !f.0).copied().collect(),
    ]
}

/// The messages of a sidecar connection, per direction: (opcode, len, content).
fn sidecar_messages(conn: &Value) -> [Vec<(String, u64, String)>; 2] {
    let mut out = [Vec::new(), Vec::new()];
    for m in conn["messages"].as_array().expect("messages") {
        let content = ["text", "hex", "sha256"]
            .iter()
            .find_map(|k| m[*k].as_str().map(|v| format!("{k}:{v}")))
            .expect("content");
        let i = usize::from(s(m, "dir") != "c2s");
        out[i].push((
            s(m, "opcode").to_string(),
            m["len"].as_u64().unwrap(),
            content,
        ));
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// wsnoop's messages of the connection from this client port, in the sidecar's terms.
fn wsnoop_messages(events: &[Value], client_port: u64) -> [Vec<(String, u64, String)>; 2] {
    use base64::Engine;
    let mut out = [Vec::new(), Vec::new()];
    for m in events.iter().filter(|e| {
        s(e, "type") == "message" && s(e, "client").ends_with(&format!(":{client_port}"))
    }) {
        let len = m["len"].as_u64().expect("len");
        let payload = if let Some(t) = m["text"].as_str() {
            t.as_bytes().to_vec()
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(s(m, "data"))
                .expect("base64 data")
        };
        let content = if s(m, "opcode") == "text" && len <= 1024 {
            format!("text:{}", String::from_utf8_lossy(&payload))
        } else if len <= 1024 {
            format!("hex:{}", hex(&payload))
        } else {
            format!("sha256:{}", hex(&sha2::Sha256::digest(&payload)))
        };
        out[usize::from(s(m, "dir") != "c2s")].push((s(m, "opcode").to_string(), len, content));
    }
    out
}

/// Every message and the close of each sidecar connection, from wsnoop's run on `file`.
fn check_against_sidecar(file: &Path, sidecar: &str) {
    let expected = load_json(&pcapng_dir().join(sidecar));
    let events = run_wsnoop_json(file, &["--show", "all", "--max-payload", "100000"]);
    for conn in expected["connections"].as_array().expect("connections") {
        let port = conn["client_port"].as_u64().expect("client_port");
        assert_eq!(
            wsnoop_messages(&events, port),
            sidecar_messages(conn),
            "{}: messages of client port {port} (sidecar {sidecar})",
            file.display()
        );
        let closes: Vec<&Value> = events
            .iter()
            .filter(|e| s(e, "type") == "close" && s(e, "client").ends_with(&format!(":{port}")))
            .collect();
        assert_eq!(closes.len(), 1, "{}: one close", file.display());
        let want = &conn["close"];
        assert_eq!(closes[0]["code"], want["code"], "{}", file.display());
    }
}

#[test]
fn interfaces_of_two_link_types_are_read_and_each_segment_delivered_once() {
    let file = fixture("multi-link.pcapng");
    // The file is what make.sh says: lo as Ethernet and any as SLL2, both carrying the
    // session.
    let links = tshark(&[
        "-r",
        file.to_str().unwrap(),
        "-T",
        "fields",
        "-e",
        "frame.interface_id",
        "-e",
        "frame.encap_type",
    ]);
    let kinds: BTreeSet<&str> = links.lines().collect();
    assert_eq!(
        kinds.len(),
        2,
        "two interfaces of two link types: {kinds:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    // dumpcap wrote each interface's packets in batches: here the whole session on one
    // interface, then all of it again on the other, so that the copy of the SYN comes after
    // the connection's FIN, where TCP sees a new connection. In capture-time order the copies
    // alternate, and TCP would take each second copy for a retransmission (as it does with
    // the duplicated packets of fixtures/mangle). wsnoop must give one session either way.
    let interleaved = write_temp(dir.path(), "interleaved.pcapng", &in_time_order(&file));
    let want_per_interface: Vec<[Vec<Frame>; 2]> = [0, 1]
        .iter()
        .map(|i| {
            let one = dir.path().join(format!("interface-{i}.pcapng"));
            let filter = format!("frame.interface_id == {i}");
            tshark(&[
                "-r",
                file.to_str().unwrap(),
                "-Y",
                &filter,
                "-w",
                one.to_str().unwrap(),
            ]);
            by_direction(&tshark_frames(&one, &[9011]))
        })
        .collect();
    assert!(!want_per_interface[0][0].is_empty() && !want_per_interface[0][1].is_empty());
    assert_eq!(
        want_per_interface[0], want_per_interface[1],
        "the same session on both"
    );
    for capture in [&file, &interleaved] {
        let events = run_wsnoop_json(capture, &[]);
        let got = by_direction(&wsnoop_frames(&events));
        assert_eq!(
            got,
            want_per_interface[0],
            "{}: each frame once",
            capture.display()
        );
        let flows: BTreeSet<u64> = events.iter().filter_map(|e| e["flow"].as_u64()).collect();
        assert_eq!(flows.len(), 1, "{}: one connection", capture.display());
        check_against_sidecar(capture, "multi-link.expected.json");
        // Every packet is read; the copies are counted as such.
        let mut source = wsnoop::capture::Source::open_file(capture).expect("opens");
        let mut handed_on = 0;
        while let wsnoop::capture::Next::Packet(_) = source.next_packet().expect("reads") {
            handed_on += 1;
        }
        let stats = source.file_stats().unwrap();
        let packets = tshark(&[
            "-r",
            capture.to_str().unwrap(),
            "-T",
            "fields",
            "-e",
            "frame.number",
        ]);
        assert_eq!(stats.packets_read, packets.lines().count() as u64);
        assert_eq!(stats.duplicates, stats.packets_read / 2);
        assert_eq!(handed_on, stats.packets_read / 2);
    }
}

/// The file's blocks with its packet blocks in capture-time order (a stable sort of the
/// enhanced packet blocks, which all follow the header and interface blocks).
fn in_time_order(file: &Path) -> Vec<u8> {
    let bytes = std::fs::read(file).unwrap();
    let blocks = pieces(&bytes);
    let word = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let is_epb = |b: &&[u8]| word(b, 0) == 6;
    let first = blocks.iter().position(is_epb).unwrap();
    let mut packets: Vec<&[u8]> = blocks[first..].iter().copied().filter(is_epb).collect();
    packets.sort_by_key(|b| (u64::from(word(b, 12)) << 32) | u64::from(word(b, 16)));
    let mut out: Vec<u8> = blocks[..first].concat();
    for p in packets {
        out.extend_from_slice(p);
    }
    out
}

#[test]
fn two_sections_each_with_its_own_interfaces() {
    let file = fixture("two-sections.pcapng");
    let events = run_wsnoop_json(&file, &[]);
    let got = by_direction(&wsnoop_frames(&events));
    assert_eq!(got, by_direction(&tshark_frames(&file, &[9012, 9013])));
    assert_eq!(got[0].len(), 12, "six frames each way per session");
    check_against_sidecar(&file, "two-sections-9012.expected.json");
    check_against_sidecar(&file, "two-sections-9013.expected.json");
}

/// The decimals of each event's "ts", as printed.
fn ts_texts(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| {
            let at = l.find("\"ts\":")? + 5;
            let end = l[at..].find(',')? + at;
            Some(l[at..end].to_string())
        })
        .collect()
}

#[test]
fn timestamps_follow_if_tsresol() {
    for (name, digits) in [
        ("tsresol-6.pcapng", 6),
        ("tsresol-9.pcapng", 9),
        ("multi-link.pcapng", 9),
        ("two-sections.pcapng", 9),
    ] {
        let file = fixture(name);
        let (code, out, err) = wsnoop(&["-r", file.to_str().unwrap(), "--json"]);
        assert_eq!(code, Some(0), "{err}");
        let epochs: BTreeSet<String> = tshark(&[
            "-r",
            file.to_str().unwrap(),
            "-T",
            "fields",
            "-e",
            "frame.time_epoch",
        ])
        .lines()
        .map(|t| t[..t.find('.').unwrap() + 1 + digits].to_string())
        .collect();
        let stamps = ts_texts(&out);
        assert!(stamps.len() > 10, "{name}");
        for ts in stamps {
            let decimals = ts.len() - ts.find('.').expect("a decimal point") - 1;
            assert_eq!(decimals, digits, "{name}: {ts}");
            assert!(
                epochs.contains(&ts),
                "{name}: {ts} is no packet's time per tshark"
            );
        }
    }
    // Both resolutions give the same messages (what the client and server sent).
    check_against_sidecar(
        &fixture("tsresol-6.pcapng"),
        "two-sections-9012.expected.json",
    );
    check_against_sidecar(
        &fixture("tsresol-9.pcapng"),
        "two-sections-9012.expected.json",
    );
}

fn keys() -> Vec<u8> {
    std::fs::read(fixture("keys.txt")).expect("keys.txt")
}

#[test]
fn decryption_secrets_are_kept_and_never_printed() {
    let file = fixture("secrets.pcapng");
    let mut source = wsnoop::capture::Source::open_file(&file).expect("opens");
    let mut secrets = source.take_secrets();
    let mut packets = 0;
    loop {
        match source.next_packet().expect("reads") {
            wsnoop::capture::Next::Packet(_) => packets += 1,
            wsnoop::capture::Next::End => break,
            wsnoop::capture::Next::Idle => {}
        }
        secrets.extend(source.take_secrets());
    }
    assert_eq!(
        packets, 28,
        "56 packets, each on two interfaces: 28 handed on"
    );
    assert_eq!(
        secrets,
        keys(),
        "the key log editcap injected, byte for byte"
    );
    let key_parts: Vec<String> = String::from_utf8(keys())
        .unwrap()
        .split_whitespace()
        .filter(|w| w.len() >= 32)
        .map(str::to_string)
        .collect();
    assert!(key_parts.len() >= 4);
    let path = file.to_str().unwrap();
    for args in [
        vec!["-r", path],
        vec!["-r", path, "--json", "--show", "all"],
        vec!["-r", path, "--summary"],
        vec!["-q", "-r", path],
        vec!["diagnose", "-r", path],
        vec!["diagnose", "-r", path, "--json"],
    ] {
        let (_, out, err) = wsnoop(&args);
        assert!(!out.is_empty() || !err.is_empty());
        for part in &key_parts {
            let lower = part.to_ascii_lowercase();
            assert!(
                !out.to_ascii_lowercase().contains(&lower)
                    && !err.to_ascii_lowercase().contains(&lower),
                "wsnoop {args:?} printed a secret"
            );
        }
        assert!(!out.contains("CLIENT_RANDOM") && !err.contains("CLIENT_RANDOM"));
    }
    // And the session reads as without them.
    check_against_sidecar(&file, "multi-link.expected.json");
}

/// Packet count of `wsnoop -q -r FILE FILTER`.
/// Packets of FILE that FILTER matches: handed on, or skipped as the copy of one that was.
fn filtered_count(file: &Path, filter: &str) -> u64 {
    let mut source = wsnoop::capture::Source::open_file(file).expect("opens");
    source.set_filter(filter).expect("compiles");
    let mut handed_on = 0;
    while let wsnoop::capture::Next::Packet(_) = source.next_packet().expect("reads") {
        handed_on += 1;
    }
    let stats = source.file_stats().unwrap();
    assert_eq!(
        stats.packets_read,
        handed_on + stats.duplicates + stats.filtered_out
    );
    handed_on + stats.duplicates
}

fn tshark_count(file: &Path, filter: &str) -> u64 {
    tshark(&[
        "-r",
        file.to_str().unwrap(),
        "-Y",
        filter,
        "-T",
        "fields",
        "-e",
        "frame.number",
    ])
    .lines()
    .count() as u64
}

#[test]
fn bpf_filters_are_compiled_for_each_link_type() {
    let file = fixture("multi-link.pcapng");
    // Offsets from the link header: right only if compiled for each link type (Ethernet 14
    // bytes, SLL2 20).
    for (bpf, display) in [
        ("ip6[6] == 6", "ipv6.nxt == 6"),
        ("ip6[40 + 13] & 2 != 0", "tcp.flags.syn == 1"),
        (
            "tcp port 9011 and ip6[40 + 13] & 1 != 0",
            "tcp.flags.fin == 1",
        ),
        ("ip", "ip"),
    ] {
        let want = tshark_count(&file, display);
        assert_eq!(
            filtered_count(&file, bpf),
            want,
            "{bpf} (tshark: {display})"
        );
    }
    assert!(
        tshark_count(&file, "tcp.flags.syn == 1") >= 4,
        "SYNs on both interfaces"
    );
    let (code, _, err) = wsnoop(&["-r", file.to_str().unwrap(), "tcp port"]);
    assert_eq!(code, Some(1));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("bad filter expression"), "{err}");
}

#[test]
fn write_keeps_every_packet_of_one_link_type_and_refuses_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.pcap");
    let out_s = out.to_str().unwrap();
    let (code, _, err) = wsnoop(&[
        "-q",
        "-r",
        fixture("tsresol-6.pcapng").to_str().unwrap(),
        "-w",
        out_s,
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        tshark(&[
            "-r",
            out_s,
            "-T",
            "fields",
            "-e",
            "frame.time_epoch",
            "-e",
            "frame.len"
        ]),
        tshark(&[
            "-r",
            fixture("tsresol-6.pcapng").to_str().unwrap(),
            "-T",
            "fields",
            "-e",
            "frame.time_epoch",
            "-e",
            "frame.len"
        ]),
        "the same packets, at the same times"
    );
    for name in ["multi-link.pcapng", "two-sections.pcapng"] {
        let (code, _, err) = wsnoop(&["-q", "-r", fixture(name).to_str().unwrap(), "-w", out_s]);
        assert_eq!(code, Some(1), "{name}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{name}: {err}");
        assert!(
            lines[0].contains(out_s) && lines[0].contains("LINUX_SLL2"),
            "{name}: {err}"
        );
    }
    // What came before the second link type is in the file: section 1, whole.
    assert_eq!(
        tshark(&["-r", out_s, "-T", "fields", "-e", "frame.time_epoch"]),
        tshark(&[
            "-r",
            fixture("tsresol-9.pcapng").to_str().unwrap(),
            "-T",
            "fields",
            "-e",
            "frame.time_epoch"
        ]),
    );
}

// ---------------------------------------------------------------------------------------------
// Files built here from node-ws.pcap's records: what tools rarely write.

/// node-ws.pcap's records: (seconds, nanoseconds, captured bytes, wire length).
fn node_ws_records() -> Vec<(u32, u32, Vec<u8>, u32)> {
    let data = std::fs::read(fixtures_dir().join("node-ws.pcap")).unwrap();
    assert_eq!(
        data[..4],
        [0x4d, 0x3c, 0xb2, 0xa1],
        "a little-endian nanosecond pcap"
    );
    let word = |at: usize| u32::from_le_bytes(data[at..at + 4].try_into().unwrap());
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= data.len() {
        let caplen = word(at + 8) as usize;
        out.push((
            word(at),
            word(at + 4),
            data[at + 16..at + 16 + caplen].to_vec(),
            word(at + 12),
        ));
        at += 16 + caplen;
    }
    out
}

struct Ng {
    big: bool,
    out: Vec<u8>,
}

impl Ng {
    fn new(big: bool) -> Ng {
        let mut ng = Ng {
            big,
            out: Vec::new(),
        };
        let mut body = ng.u32(0x1A2B_3C4D).to_vec();
        body.extend(ng.u16(1));
        body.extend(ng.u16(0));
        body.extend([0xff; 8]);
        ng.block(0x0A0D_0D0A, &body);
        ng
    }
    fn u16(&self, v: u16) -> [u8; 2] {
        if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }
    fn u32(&self, v: u32) -> [u8; 4] {
        if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }
    fn block(&mut self, kind: u32, body: &[u8]) {
        let padded = body.len().div_ceil(4) * 4;
        let len = (12 + padded) as u32;
        self.out.extend(self.u32(kind));
        self.out.extend(self.u32(len));
        self.out.extend(body);
        self.out.resize(self.out.len() + padded - body.len(), 0);
        self.out.extend(self.u32(len));
    }
    /// An interface of this link type in nanoseconds (if_tsresol 9).
    fn idb(&mut self, linktype: u16) {
        let mut body = self.u16(linktype).to_vec();
        body.extend([0, 0]);
        body.extend(self.u32(262_144));
        body.extend(self.u16(9));
        body.extend(self.u16(1));
        body.extend([9, 0, 0, 0]);
        body.extend([0; 4]);
        self.block(1, &body);
    }
    /// An enhanced (type 6) or obsolete (type 2) packet block.
    fn packet(&mut self, kind: u32, if_id: u32, secs: u32, nanos: u32, data: &[u8], wire: u32) {
        let ticks = u64::from(secs) * 1_000_000_000 + u64::from(nanos);
        let mut body = if kind == 6 {
            self.u32(if_id).to_vec()
        } else {
            let mut b = self.u16(if_id as u16).to_vec();
            b.extend(self.u16(0));
            b
        };
        body.extend(self.u32((ticks >> 32) as u32));
        body.extend(self.u32(ticks as u32));
        body.extend(self.u32(data.len() as u32));
        body.extend(self.u32(wire));
        body.extend(data);
        self.block(kind, &body);
    }
    fn spb(&mut self, data: &[u8]) {
        let mut body = self.u32(data.len() as u32).to_vec();
        body.extend(data);
        self.block(3, &body);
    }
}

fn write_temp(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// wsnoop's JSON lines for a file.
fn json_lines(file: &Path) -> Vec<String> {
    let (code, out, err) = wsnoop(&["-r", file.to_str().unwrap(), "--json"]);
    assert_eq!(code, Some(0), "{}: {err}", file.display());
    out.lines().map(str::to_string).collect()
}

#[test]
fn obsolete_and_big_endian_packet_blocks_read_as_the_pcap() {
    let dir = tempfile::tempdir().unwrap();
    let want = json_lines(&fixtures_dir().join("node-ws.pcap"));
    assert!(want.len() > 30);
    for (kind, big) in [(2, false), (2, true), (6, true)] {
        let mut ng = Ng::new(big);
        ng.idb(1);
        for (secs, nanos, data, wire) in node_ws_records() {
            ng.packet(kind, 0, secs, nanos, &data, wire);
        }
        let file = write_temp(dir.path(), "built.pcapng", &ng.out);
        assert_eq!(
            json_lines(&file),
            want,
            "block type {kind}, big endian {big}"
        );
    }
}

#[test]
fn simple_packet_blocks_have_no_time_but_the_same_frames() {
    let dir = tempfile::tempdir().unwrap();
    let mut ng = Ng::new(false);
    ng.idb(1);
    for (_, _, data, _) in node_ws_records() {
        ng.spb(&data);
    }
    let file = write_temp(dir.path(), "spb.pcapng", &ng.out);
    let strip = |events: Vec<Value>| -> Vec<Value> {
        events
            .into_iter()
            .filter(|e| matches!(s(e, "type"), "frame" | "message" | "close" | "handshake"))
            .map(|mut e| {
                let o = e.as_object_mut().unwrap();
                for k in ["ts", "latency", "duration", "first_seen", "last_seen"] {
                    o.remove(k);
                }
                e
            })
            .collect()
    };
    assert_eq!(
        strip(run_wsnoop_json(&file, &[])),
        strip(run_wsnoop_json(&fixtures_dir().join("node-ws.pcap"), &[]))
    );
}

#[test]
fn interfaces_wsnoop_cannot_decode_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let records = node_ws_records();
    // Interface 0 is USB (LINKTYPE_USB_LINUX, 189); interface 1 Ethernet.
    let mut ng = Ng::new(false);
    ng.idb(189);
    ng.idb(1);
    for (secs, nanos, data, wire) in &records {
        ng.packet(6, 0, *secs, *nanos, b"not decoded", 11);
        ng.packet(6, 1, *secs, *nanos, data, *wire);
    }
    let file = write_temp(dir.path(), "usb-and-ether.pcapng", &ng.out);
    assert_eq!(
        json_lines(&file),
        json_lines(&fixtures_dir().join("node-ws.pcap"))
    );
    let mut source = wsnoop::capture::Source::open_file(&file).expect("opens");
    let mut handed_on = 0;
    while let wsnoop::capture::Next::Packet(_) = source.next_packet().expect("reads") {
        handed_on += 1;
    }
    assert_eq!(handed_on, records.len());
    let stats = source.file_stats().expect("a file's counts");
    assert_eq!(stats.unsupported_link_packets, records.len() as u64);
    // ... and said at the end of the run.
    let (code, _, err) = wsnoop(&["-r", file.to_str().unwrap(), "-q"]);
    assert_eq!(code, Some(0), "{err}");
    let want = format!(
        "{n} packets skipped: {n} of a link type wsnoop does not read",
        n = records.len()
    );
    assert!(err.contains(&want), "{err}");
    // Only interfaces of such types: the one-line error of a pcap file of that type.
    let mut ng = Ng::new(false);
    ng.idb(189);
    ng.packet(6, 0, 1, 0, b"usb", 3);
    let file = write_temp(dir.path(), "usb.pcapng", &ng.out);
    let (code, out, err) = wsnoop(&["-r", file.to_str().unwrap()]);
    assert_eq!((code, out.as_str()), (Some(1), ""));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("unsupported link type") && err.contains("189"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Standard input, streaming

/// The pieces a file is written in: pcapng blocks, or a pcap header and its records.
fn pieces(bytes: &[u8]) -> Vec<&[u8]> {
    let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let mut out = Vec::new();
    let pcapng = bytes[..4] == [0x0a, 0x0d, 0x0d, 0x0a];
    let mut at = if pcapng { 0 } else { 24 };
    if !pcapng {
        out.push(&bytes[..24]);
    }
    while at < bytes.len() {
        let len = if pcapng {
            word(at + 4)
        } else {
            16 + word(at + 8)
        };
        out.push(&bytes[at..at + len]);
        at += len;
    }
    out
}

/// `cat FILE | wsnoop -r -`, written piece by piece: the handshake is printed as soon as the
/// piece holding the 101 response is in, while the rest of the file is not yet written.
fn streams(file: &Path, extra: &[&str]) {
    let bytes = std::fs::read(file).unwrap();
    let pieces = pieces(&bytes);
    let response = pieces
        .iter()
        .position(|p| p.windows(12).any(|w| w == b"HTTP/1.1 101"))
        .expect("a 101 response");
    assert!(response + 5 < pieces.len());
    let mut child = Command::new(wsnoop_bin())
        .args(["-r", "-"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wsnoop starts");
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let lines = std::thread::spawn(move || {
        let mut all = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("a line");
            let _ = tx.send(line.clone());
            all.push(line);
        }
        all
    });
    for p in &pieces[..=response] {
        stdin.write_all(p).unwrap();
    }
    stdin.flush().unwrap();
    // The bound only ends a run that would otherwise wait for the rest forever.
    let first = rx.recv_timeout(Duration::from_secs(60));
    let first = first.unwrap_or_else(|_| {
        panic!(
            "{}: no event before the rest of the file was written",
            file.display()
        )
    });
    assert!(first.contains("handshake"), "{first}");
    for p in &pieces[response + 1..] {
        stdin.write_all(p).unwrap();
    }
    drop(stdin);
    let all = lines.join().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success());
    let (_, whole, _) = wsnoop(&[&["-r", file.to_str().unwrap()][..], extra].concat());
    let mut all = all;
    let mut whole: Vec<&str> = whole.lines().collect();
    if extra.contains(&"--threads") {
        // Events of different connections interleave as the threads go.
        all.sort();
        whole.sort();
    }
    assert_eq!(all, whole, "the same output as from the file");
}

#[test]
fn standard_input_streams_pcap_and_pcapng() {
    streams(&fixture("multi-link.pcapng"), &[]);
    streams(&fixtures_dir().join("node-ws.pcap"), &["--json"]);
    streams(&fixture("two-sections.pcapng"), &["--threads", "2"]);
}

#[test]
fn standard_input_from_a_file_reads_as_the_file() {
    for file in [
        fixture("two-sections.pcapng"),
        fixtures_dir().join("node-ws.pcap"),
    ] {
        let out = Command::new(wsnoop_bin())
            .args(["-r", "-", "--json"])
            .stdin(std::fs::File::open(&file).unwrap())
            .output()
            .unwrap();
        assert!(out.status.success());
        let got = parse_json_lines(&String::from_utf8_lossy(&out.stdout), "stdin");
        assert_eq!(got, run_wsnoop_json(&file, &[]), "{}", file.display());
    }
}

/// Cut inside a block, a pcapng file gives what the blocks before the cut give, then one line
/// naming the file and exit status 1; cut between blocks, it is a shorter file.
#[test]
fn a_cut_pcapng_file_gives_everything_before_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("two-sections.pcapng")).unwrap();
    let blocks = pieces(&bytes);
    let mut boundaries = vec![0];
    for b in &blocks {
        boundaries.push(boundaries.last().unwrap() + b.len());
    }
    // Cuts in section 1's session, at its end, and in section 2's.
    for at in [blocks.len() / 4, blocks.len() / 2, blocks.len() * 3 / 4] {
        let whole = write_temp(dir.path(), "whole.pcapng", &bytes[..boundaries[at]]);
        let (code, want, err) = wsnoop(&["-r", whole.to_str().unwrap(), "--json"]);
        assert_eq!(code, Some(0), "{err}");
        let cut = boundaries[at] + blocks[at].len() / 2;
        let file = write_temp(dir.path(), "cut.pcapng", &bytes[..cut]);
        let (code, got, err) = wsnoop(&["-r", file.to_str().unwrap(), "--json"]);
        assert_eq!(code, Some(1), "cut at {cut}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{err}");
        assert!(lines[0].contains(file.to_str().unwrap()) && lines[0].contains("truncated"));
        assert_eq!(
            got, want,
            "cut at {cut}: the events of the blocks before it"
        );
    }
}
