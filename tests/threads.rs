//! `--threads N` writes exactly what one thread writes: the same bytes in the same order, the
//! same counts on stderr, the same exit status, whatever N, including when connections are
//! evicted (`--max-flows`) or time out (`--idle-timeout`) and when ports are reused.
//!
//! The independent source here is the single-threaded run, whose own correctness the other
//! tests check against tshark and the sending programs; the captures built below also carry
//! their own truth (how many connections were put into them).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use proptest::prelude::*;
use proptest::sample::Index;

/// What a run wrote and how it ended.
#[derive(Debug, PartialEq, Eq)]
struct Run {
    stdout: Vec<u8>,
    stderr: String,
    status: Option<i32>,
}

fn run(capture: &Path, args: &[&str], threads: usize) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_wsnoop"))
        .arg("-r")
        .arg(capture)
        .args(args)
        .args(["--threads", &threads.to_string()])
        .output()
        .expect("wsnoop runs");
    Run {
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        status: out.status.code(),
    }
}

/// Runs with 1 thread and with each of `counts`, and requires the same output.
fn same_for_all(capture: &Path, args: &[&str], counts: &[usize]) -> Run {
    let one = run(capture, args, 1);
    for &threads in counts {
        let many = run(capture, args, threads);
        if many != one {
            let first_diff = one
                .stdout
                .iter()
                .zip(&many.stdout)
                .position(|(a, b)| a != b)
                .unwrap_or(one.stdout.len().min(many.stdout.len()));
            panic!(
                "{} {args:?} with {threads} threads differs from one thread: status {:?} vs \
{:?}, stderr {:?} vs {:?}, {} vs {} bytes of output, first difference at byte {first_diff}",
                capture.display(),
                one.status,
                many.status,
                one.stderr,
                many.stderr,
                one.stdout.len(),
                many.stdout.len()
            );
        }
    }
    one
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

/// Real sessions, crafted violations, mangled and diagnosed captures, in every output form and
/// with limits small enough to evict and time out connections on most of them.
#[test]
fn every_fixture_is_byte_identical_with_threads() {
    let mut all = Vec::new();
    captures(&common::fixtures_dir(), &mut all);
    all.sort();
    assert!(all.len() >= 90, "{} captures found", all.len());
    let variants: [&[&str]; 6] = [
        &["--json"],
        &["--show", "all"],
        &["--summary", "--max-flows", "4"],
        &["-q"],
        &["--json", "--max-flows", "1", "--idle-timeout", "1"],
        &["--show", "all", "--max-flows", "3", "--idle-timeout", "2"],
    ];
    let mut printed = 0;
    for capture in &all {
        for args in variants {
            let one = same_for_all(capture, args, &[2, 3, 5]);
            printed += usize::from(!one.stdout.is_empty());
        }
    }
    // Not a vacuous comparison of empty outputs.
    assert!(printed > all.len() * 3, "{printed} runs printed something");
}

/// `wsnoop diagnose`'s findings, text and JSON, and its exit status.
fn diagnose(capture: &Path, json: bool, threads: usize) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_wsnoop"))
        .arg("diagnose")
        .arg("-r")
        .arg(capture)
        .args(json.then_some("--json"))
        .args(["--threads", &threads.to_string()])
        .output()
        .expect("wsnoop runs");
    Run {
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        status: out.status.code(),
    }
}

/// The diagnoser takes events, not bytes: with threads it gets them in one thread's order,
/// and says the same, on every fixture (fixtures/diagnose/ has one of each problem).
#[test]
fn diagnose_is_byte_identical_with_threads() {
    let mut all = Vec::new();
    captures(&common::fixtures_dir(), &mut all);
    all.sort();
    let mut troubled = 0;
    for capture in &all {
        for json in [false, true] {
            // A damaged file ends with an error and no findings, the same with threads.
            let one = diagnose(capture, json, 1);
            troubled += usize::from(one.status == Some(1));
            for threads in [2, 3, 5] {
                assert_eq!(
                    one,
                    diagnose(capture, json, threads),
                    "{} diagnose (json: {json}) with {threads} threads",
                    capture.display()
                );
            }
        }
    }
    // Findings that matter, not only "healthy", were compared.
    assert!(troubled >= 20, "{troubled} runs found trouble");
}

/// `-c` (one thread's work: the run uses one thread) and `--summary` (the table merged from
/// every decoder's connections) give what one thread gives, with any `--threads`.
#[test]
fn count_and_summary_work_with_threads() {
    for name in ["node-ws.pcap", "concurrent.pcap", "chromium-deflate.pcap"] {
        let capture = common::fixtures_dir().join(name);
        for args in [
            &["-c", "3"][..],
            &["--json", "-c", "5"],
            &["--summary"],
            &["--summary", "--show", "all"],
        ] {
            let one = same_for_all(&capture, args, &[2, 3, 5]);
            assert_eq!(one.status, Some(0), "{name} {args:?}");
            assert!(!one.stdout.is_empty(), "{name} {args:?}");
        }
    }
}

#[test]
fn thread_counts_out_of_range_are_refused() {
    let fixture = common::fixtures_dir().join("node-ws.pcap");
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
    std::fs::copy(common::fixtures_dir().join("node-ws.pcap"), &capture).unwrap();
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

// Captures made of copies of real ones: each copy's client port moved (ports above 30000 are
// the clients' in these fixtures; the servers' are below 10000) and its clock shifted, so that
// one capture holds as many connections as wanted, at once or one after another.

/// One packet: seconds, nanoseconds, bytes (Ethernet).
type Packet = (i64, u32, Vec<u8>);

/// The Ethernet fixtures these captures are made of, each one connection or a few.
const SOURCES: [&str; 6] = [
    "node-ws.pcap",
    "python-basic.pcap",
    "chromium-deflate.pcap",
    "concurrent.pcap",
    "rejected-403.pcap",
    "node-deflate-nocontext.pcap",
];

/// Reads a classic little-endian pcap file.
fn read_pcap(path: &Path) -> Vec<Packet> {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let word = |at: usize| u32::from_le_bytes(data[at..at + 4].try_into().unwrap());
    let nanos = match word(0) {
        0xa1b2_c3d4 => false,
        0xa1b2_3c4d => true,
        m => panic!("{}: magic {m:#x}", path.display()),
    };
    assert_eq!(word(20), 1, "{}: Ethernet", path.display());
    let mut packets = Vec::new();
    let mut at = 24;
    while at + 16 <= data.len() {
        let incl = word(at + 8) as usize;
        let frac = word(at + 4);
        packets.push((
            i64::from(word(at)),
            if nanos { frac } else { frac * 1000 },
            data[at + 16..at + 16 + incl].to_vec(),
        ));
        at += 16 + incl;
    }
    packets
}

fn source(index: usize) -> Vec<Packet> {
    read_pcap(&common::fixtures_dir().join(SOURCES[index % SOURCES.len()]))
}

/// The capture's packets with client ports moved by `shift` and times by `millis`.
fn copy(packets: &[Packet], shift: u16, millis: i64) -> Vec<Packet> {
    packets
        .iter()
        .map(|(s, n, bytes)| {
            let mut bytes = bytes.clone();
            // Ethernet, IPv4, TCP: the ports follow the IP header.
            if bytes.len() > 34 && bytes[12..14] == [0x08, 0x00] && bytes[23] == 6 {
                let tcp = 14 + usize::from(bytes[14] & 0x0f) * 4;
                for at in [tcp, tcp + 2] {
                    if let Some(p) = bytes.get(at..at + 2) {
                        let port = u16::from_be_bytes([p[0], p[1]]);
                        if port > 30000 {
                            let moved = port.wrapping_add(shift).to_be_bytes();
                            bytes[at..at + 2].copy_from_slice(&moved);
                        }
                    }
                }
            }
            let nanos = i64::from(*n) + millis % 1000 * 1_000_000;
            (
                s + millis / 1000 + nanos / 1_000_000_000,
                (nanos % 1_000_000_000) as u32,
                bytes,
            )
        })
        .collect()
}

/// Writes the packets, in time order (a stable sort: one copy's packets keep their order), as
/// a nanosecond pcap.
fn write_pcap(path: &Path, mut packets: Vec<Packet>) {
    packets.sort_by_key(|p| (p.0, p.1));
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_3c4du32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&262_144u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for (s, n, bytes) in packets {
        out.extend_from_slice(&(s as u32).to_le_bytes());
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(&bytes);
    }
    std::fs::write(path, out).unwrap();
}

/// The issue's case: a burst of 21 connections, 20 ms apart, with room for 20. Finished
/// connections linger in the table, so the last ones to come evict the first, which are over:
/// all 21 handshakes seen, and the same connections with any thread count (the old reader's own
/// table evicted differently, and `--threads 2` split a connection in two).
#[test]
fn a_burst_over_max_flows_is_the_same_with_threads() {
    let node = source(0);
    let mut packets = Vec::new();
    for k in 0..21u16 {
        packets.extend(copy(&node, k, i64::from(k) * 20));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("burst.pcap");
    write_pcap(&path, packets);
    let quiet = same_for_all(&path, &["-q", "--max-flows", "20"], &[2, 3, 5]);
    let counts = quiet.stderr.lines().next().unwrap_or_default().to_string();
    // 21 handshakes were put in, all seen, whatever the eviction did to the sessions.
    assert!(counts.contains(" 21 handshakes (21 upgraded)"), "{counts}");
    // With room for all of them, exactly the 21 put in.
    let roomy = same_for_all(&path, &["-q", "--max-flows", "21"], &[2, 3]);
    assert!(
        roomy
            .stderr
            .contains(" 21 connections, 21 handshakes (21 upgraded)"),
        "{}",
        roomy.stderr
    );
    for args in [
        &["--json", "--max-flows", "20"][..],
        &["--json", "--max-flows", "5", "--idle-timeout", "1"],
        &["--show", "all", "--max-flows", "7"],
    ] {
        same_for_all(&path, args, &[2, 3, 5]);
    }
}

/// Connections one after another, far enough apart in capture time to time out and linger
/// out of the table, with endpoints reused (a fresh SYN on a finished connection's ports).
#[test]
fn timeouts_and_reused_ports_are_the_same_with_threads() {
    let mut packets = Vec::new();
    for k in 0..12u16 {
        let from = source(usize::from(k));
        // Every third copy reuses the previous one's ports.
        let shift = k - u16::from(k % 3 == 2);
        packets.extend(copy(&from, shift, i64::from(k) * 7000));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spread.pcap");
    write_pcap(&path, packets);
    for args in [
        &["--json", "--idle-timeout", "3"][..],
        &["--json", "--idle-timeout", "12", "--max-flows", "2"],
        &["--show", "all", "--idle-timeout", "1"],
        &["--summary", "--idle-timeout", "2", "--max-flows", "3"],
        &["-q", "--idle-timeout", "5", "--max-flows", "3"],
    ] {
        let one = same_for_all(&path, args, &[2, 3, 5]);
        assert_eq!(one.status, Some(0), "{args:?}: {}", one.stderr);
    }
    for json in [false, true] {
        let one = diagnose(&path, json, 1);
        for threads in [2, 3, 5] {
            assert_eq!(
                one,
                diagnose(&path, json, threads),
                "diagnose, {threads} threads"
            );
        }
    }
}

/// A finished connection, then its client's SYN 300 times, then the whole session again on the
/// same ports: the first SYN starts a second connection and the rest, and the second session,
/// continue it (a fresh SYN on an unfinished connection is a retransmission); with threads
/// the reader asks the decoder only while the connection may be over.
#[test]
fn repeated_syns_on_known_endpoints_are_the_same_with_threads() {
    let node = source(0);
    let mut packets = copy(&node, 0, 0);
    for k in 0..300 {
        packets.extend(copy(&node[..1], 0, 2000 + k));
    }
    packets.extend(copy(&node, 0, 3000));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("syns.pcap");
    write_pcap(&path, packets);
    let quiet = same_for_all(&path, &["-q"], &[2, 3, 5]);
    assert!(
        quiet
            .stderr
            .contains(" 2 connections, 2 handshakes (2 upgraded)"),
        "{}",
        quiet.stderr
    );
    for args in [
        &["--json"][..],
        &["--summary"],
        &["--json", "--idle-timeout", "1"],
    ] {
        same_for_all(&path, args, &[2, 3, 5]);
    }
}

/// A change to the list of packets of a random capture.
#[derive(Clone, Debug)]
enum Edit {
    Drop(Index),
    Duplicate(Index),
    Swap(Index),
    Flip { packet: Index, at: Index, xor: u8 },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        2 => any::<Index>().prop_map(Edit::Drop),
        1 => any::<Index>().prop_map(Edit::Duplicate),
        2 => any::<Index>().prop_map(Edit::Swap),
        1 => (any::<Index>(), any::<Index>(), 1u8..=255)
            .prop_map(|(packet, at, xor)| Edit::Flip { packet, at, xor }),
    ]
}

fn apply(packets: &mut Vec<Packet>, edits: &[Edit]) {
    for e in edits {
        let n = packets.len();
        if n == 0 {
            return;
        }
        match e {
            Edit::Drop(i) => {
                packets.remove(i.index(n));
            }
            Edit::Duplicate(i) => {
                let copy = packets[i.index(n)].clone();
                packets.insert(i.index(n), copy);
            }
            Edit::Swap(i) => {
                let i = i.index(n);
                if i + 1 < n {
                    // Keep the times in order: only the bytes change places.
                    let (a, b) = (packets[i].2.clone(), packets[i + 1].2.clone());
                    packets[i].2 = b;
                    packets[i + 1].2 = a;
                }
            }
            Edit::Flip { packet, at, xor } => {
                let p = &mut packets[packet.index(n)].2;
                if !p.is_empty() {
                    let i = at.index(p.len());
                    p[i] ^= xor;
                }
            }
        }
    }
}

/// One connection's copy: which fixture, the port shift, the start in seconds.
fn piece() -> impl Strategy<Value = (usize, u16, i64)> {
    (0..SOURCES.len(), 0u16..8, 0i64..40_000)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Random mixes of real connections, damaged, with random limits and thread counts.
    #[test]
    fn random_captures_are_byte_identical_with_threads(
        pieces in prop::collection::vec(piece(), 1..10),
        edits in prop::collection::vec(edit(), 0..6),
        max_flows in 1usize..12,
        idle in 1i64..30,
        threads in 2usize..6,
        form in 0usize..4,
    ) {
        let mut packets = Vec::new();
        for &(index, shift, secs) in &pieces {
            packets.extend(copy(&source(index), shift, secs));
        }
        packets.sort_by_key(|p| (p.0, p.1));
        apply(&mut packets, &edits);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("random.pcap");
        write_pcap(&path, packets);
        let (max_flows, idle) = (max_flows.to_string(), idle.to_string());
        let mut args = vec!["--max-flows", &max_flows, "--idle-timeout", &idle];
        args.push(["--json", "-q", "--show", "--summary"][form]);
        if form == 2 {
            args.push("all");
        }
        let one = run(&path, &args, 1);
        let many = run(&path, &args, threads);
        prop_assert_eq!(&one.status, &many.status);
        prop_assert_eq!(&one.stderr, &many.stderr);
        prop_assert!(one.stdout == many.stdout, "output differs with {} threads", threads);
    }
}
