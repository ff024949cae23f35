//! What wsnoop says about packets it cannot read down to TCP, and that a stderr whose reader
//! has gone never makes it panic. The captures are built here packet by packet, so what each
//! packet is (UDP, an IPv4 header cut short) is known without asking wsnoop.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use etherparse::PacketBuilder;

/// A microsecond pcap of Ethernet packets.
fn write_pcap(path: &Path, packets: &[Vec<u8>]) {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
    for (i, p) in packets.iter().enumerate() {
        out.extend_from_slice(&1_700_000_000u32.to_le_bytes());
        out.extend_from_slice(&(i as u32).to_le_bytes());
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        out.extend_from_slice(p);
    }
    std::fs::write(path, out).expect("writing the capture");
}

fn udp_packet(n: u8) -> Vec<u8> {
    let mut p = Vec::new();
    PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
        .udp(5000, 53)
        .write(&mut p, &[n; 20])
        .expect("building a UDP packet");
    p
}

/// An Ethernet frame that says IPv4 but holds only 10 bytes of the IPv4 header.
fn cut_ipv4_packet() -> Vec<u8> {
    let mut p = vec![4; 6];
    p.extend_from_slice(&[2; 6]);
    p.extend_from_slice(&[0x08, 0x00]);
    p.extend_from_slice(&[0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6]);
    p
}

/// `wsnoop BEFORE CAPTURE AFTER`, to its end.
fn wsnoop(before: &[&str], capture: &Path, after: &[&str]) -> std::process::Output {
    Command::new(common::wsnoop_bin())
        .args(before)
        .arg(capture)
        .args(after)
        .output()
        .expect("running wsnoop")
}

fn three_udp_two_cut() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("skipped.pcap");
    let packets = vec![
        udp_packet(1),
        cut_ipv4_packet(),
        udp_packet(2),
        udp_packet(3),
        cut_ipv4_packet(),
    ];
    write_pcap(&path, &packets);
    (dir, path)
}

#[test]
fn skipped_packets_are_counted_by_reason() {
    let (_dir, path) = three_udp_two_cut();
    let out = wsnoop(&["-r"], &path, &["-q"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("5 packets skipped: 3 not TCP over IP, 2 malformed or cut short below TCP"),
        "{stderr}"
    );

    let out = wsnoop(&["diagnose", "-r"], &path, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.contains("no_websocket_traffic"))
        .unwrap_or_else(|| panic!("no no_websocket_traffic finding in {stdout}"));
    assert!(
        line.contains("5 packets but no TCP connection (3 not TCP over IP, 2 malformed or cut short below TCP)"),
        "{line}"
    );
}

/// Error messages, end-of-run counts and diagnose's findings to a stderr pipe nobody reads:
/// the exit code is the one the run would have had, never a panic's 101.
#[test]
fn a_gone_stderr_reader_changes_no_exit_code() {
    let (_dir, path) = three_udp_two_cut();
    let cases: [(&[&str], i32); 4] = [
        (&["-r", "/nonexistent/capture.pcap"], 1),
        (&["-r", path.to_str().expect("a UTF-8 temp path"), "-q"], 0),
        (&["diagnose", "-r", "/nonexistent/capture.pcap"], 1),
        (&["--threads", "0"], 2),
    ];
    for (args, want) in cases {
        let (reader, writer) = std::io::pipe().expect("a pipe");
        drop(reader);
        let status = Command::new(common::wsnoop_bin())
            .args(args)
            .stdout(Stdio::null())
            .stderr(writer)
            .status()
            .expect("running wsnoop");
        assert_eq!(status.code(), Some(want), "wsnoop {args:?}");
    }
}

/// A TCP segment of a connection already open when the capture began (no SYN).
fn midstream_segment(seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
        .tcp(40000, 5432, seq, 65535)
        .ack(1)
        .psh()
        .write(&mut p, payload)
        .expect("building a TCP segment");
    p
}

/// A connection picked up mid-stream that ends with no chain of WebSocket frames found is
/// given up, and said to be: in the counts and in diagnose. The bytes are text that no frame
/// header makes plausible (ASCII letters: opcode nibbles 1 and 2 are the only valid ones).
#[test]
fn a_probe_given_up_is_counted() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("probe.pcap");
    let chunk = [b'x'; 1400];
    let packets: Vec<Vec<u8>> = (0..14u32)
        .map(|i| midstream_segment(1000 + i * 1400, &chunk))
        .collect();
    write_pcap(&path, &packets);
    let out = wsnoop(&["-r"], &path, &["-q"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "1 connections without a captured handshake probed for WebSocket frames and given up"
        ),
        "{stderr}"
    );
    let out = wsnoop(&["diagnose", "-r"], &path, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "(1 connection without a captured handshake looked for WebSocket frames in vain)"
        ),
        "{stdout}"
    );
}
