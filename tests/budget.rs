//! The global memory budget, `--max-memory` (issue 19): connections holding bytes out of
//! order behind holes that never fill, deflating connections kept open, open connections
//! keeping long URIs. Each capture is generated here (benches/tools/budget_caps.rs), so the
//! test knows what each connection held: the bytes stderr says were lost, and the connections
//! whose events say so, are checked against it; peak RSS stays within the budget plus what
//! wsnoop takes with no traffic. Without pressure the output is what it is without the option,
//! and the same with two threads.

mod common;

#[path = "common/peak.rs"]
mod peak;

#[path = "../benches/tools/budget_caps.rs"]
mod budget_caps;
#[path = "../benches/tools/hostile.rs"]
mod hostile;

use std::path::Path;
use std::process::Stdio;

use serde_json::Value;

use common::{parse_json_lines, wsnoop_bin};
use peak::{Run, write_capture};

fn run(capture: &Path, args: &[&str]) -> Run {
    peak::run_to(&wsnoop_bin(), capture, args, Stdio::piped())
}

/// What wsnoop takes with (almost) no traffic: one connection, so the run's fixed cost.
fn base_rss_kb(dir: &Path) -> i64 {
    let capture = write_capture(
        dir,
        "base.pcap",
        budget_caps::holes(Vec::new(), 1, 10).unwrap(),
    );
    run(&capture, &["--json", "--threads", "1"]).max_rss_kb
}

/// The stderr line's numbers: (connections, bytes, inflaters, evicted), or None if not said.
fn said_lost(stderr: &str) -> Option<(u64, u64, u64, u64)> {
    let line = stderr
        .lines()
        .find(|l| l.contains("to stay within --max-memory"))?;
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .filter_map(|w| w.parse().ok())
        .collect();
    // "N connections lost B bytes ... (M bytes) ...; I inflaters dropped, E connections ..."
    match numbers[..] {
        [n, b, _, i, e] => Some((n, b, i, e)),
        _ => panic!("unexpected line: {line}"),
    }
}

fn events(run: &Run) -> Vec<Value> {
    parse_json_lines(&run.stdout, "wsnoop --json")
}

/// Anomalies of cause "memory", as (flow, kind, detail).
fn memory_anomalies(events: &[Value]) -> Vec<(u64, String, String)> {
    events
        .iter()
        .filter(|e| e["type"] == "anomaly" && e["cause"] == "memory")
        .map(|e| {
            (
                e["flow"].as_u64().unwrap(),
                e["kind"].as_str().unwrap().to_owned(),
                e["detail"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Segments waiting between the reader and each worker with `--threads` (outside the
/// budget, a constant): at most 11 batches of 320 KiB of payload and 240 KiB of records
/// (src/parallel/mod.rs, benches/memory.sh).
const BATCHES_KB: i64 = 11 * (320 + 240);

/// The budget's runs must stay within it, plus the run's fixed cost, plus 25% of the budget
/// for the allocator's slack (freed memory it keeps) and the buffers of a segment in flight,
/// plus the batches of each worker.
fn assert_within(run: &Run, base_kb: i64, max_memory: i64, threads: &str, what: &str) {
    let workers = threads.parse::<i64>().unwrap() - 1;
    let bound = base_kb + max_memory / 1024 * 5 / 4 + workers * BATCHES_KB;
    assert!(
        run.max_rss_kb <= bound,
        "{what}: peak RSS {} KiB over {bound} KiB (base {base_kb} KiB + --max-memory + 25% \
+ {workers} x batches)",
        run.max_rss_kb
    );
}

/// With a budget the run does not reach, the output is the default run's, and two threads
/// write what one does.
fn assert_no_pressure_changes_nothing(capture: &Path) {
    let plain = run(capture, &["--json", "--threads", "1"]);
    let roomy = run(
        capture,
        &["--json", "--threads", "1", "--max-memory", "900M"],
    );
    let two = run(
        capture,
        &["--json", "--threads", "2", "--max-memory", "900M"],
    );
    assert!(said_lost(&roomy.stderr).is_none(), "{}", roomy.stderr);
    assert!(plain.stdout == roomy.stdout, "{}", capture.display());
    assert!(plain.stdout == two.stdout, "{}", capture.display());
}

const MAX_MEMORY: i64 = 8 << 20;

#[test]
fn held_out_of_order_bytes_are_given_up_longest_idle_first() {
    let dir = tempfile::tempdir().unwrap();
    let (conns, held) = (24u64, 1_000_000usize);
    let capture = write_capture(
        dir.path(),
        "holes.pcap",
        budget_caps::holes(Vec::new(), conns, held).unwrap(),
    );
    let base = base_rss_kb(dir.path());
    let unbounded = run(&capture, &["--json", "--threads", "1"]);
    // The holes hold 24 x 1,000,000 bytes: well over twice the budget, in a debug build and
    // in a release one alike (three times would be more than the holes themselves).
    assert!(
        unbounded.max_rss_kb > base + 2 * MAX_MEMORY / 1024,
        "the capture must press: {} KiB",
        unbounded.max_rss_kb
    );
    for threads in ["1", "2"] {
        let r = run(
            &capture,
            &["--json", "--threads", threads, "--max-memory", "8M"],
        );
        assert_within(&r, base, MAX_MEMORY, threads, "holes");
        let (said, bytes, inflaters, evicted) = said_lost(&r.stderr).expect("the loss is said");
        let lost = memory_anomalies(&events(&r));
        // Each connection gave up what its server sent: the hole and every held byte.
        for (_, kind, detail) in &lost {
            assert_eq!(kind, "tcp_gap");
            let gap = format!("{} bytes", held as u64 + u64::from(budget_caps::HOLE));
            assert!(detail.starts_with(&gap), "{detail}");
        }
        assert_eq!(lost.len() as u64, said, "{}", r.stderr);
        assert_eq!(bytes, said * held as u64, "{}", r.stderr);
        assert_eq!((inflaters, evicted), (0, 0));
        assert!(said >= conns / 2 && said < conns, "{said} of {conns}");
        if threads == "1" {
            // Connections came one after the other: the longest idle are the first.
            let flows: Vec<u64> = lost.iter().map(|l| l.0).collect();
            assert_eq!(flows, (0..said).collect::<Vec<_>>());
        }
    }
    assert_no_pressure_changes_nothing(&capture);
}

#[test]
fn deflating_connections_drop_their_inflaters_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let conns = 400u64;
    let capture = write_capture(
        dir.path(),
        "deflate.pcap",
        budget_caps::deflating(Vec::new(), conns).unwrap(),
    );
    let base = base_rss_kb(dir.path());
    for threads in ["1", "2"] {
        let r = run(
            &capture,
            &["--json", "--threads", threads, "--max-memory", "8M"],
        );
        assert_within(&r, base, MAX_MEMORY, threads, "deflate");
        let (said, bytes, inflaters, evicted) = said_lost(&r.stderr).expect("the loss is said");
        let events = events(&r);
        let lost = memory_anomalies(&events);
        assert!(lost.iter().all(|l| l.1 == "deflate_context_lost"));
        assert_eq!((said, inflaters), (lost.len() as u64, lost.len() as u64));
        assert_eq!((bytes, evicted), (0, 0));
        assert!(said > 0 && said < conns, "{said} of {conns}");
        let dropped: std::collections::BTreeSet<u64> = lost.iter().map(|l| l.0).collect();
        // Every first message was inflated when it came; a second one is exactly what the
        // server compressed unless its connection's inflater was dropped before.
        for m in events.iter().filter(|e| e["type"] == "message") {
            let flow = m["flow"].as_u64().unwrap();
            let ts = m["ts"].as_f64().unwrap();
            let first = events
                .iter()
                .find(|e| e["type"] == "message" && e["flow"] == flow)
                .unwrap();
            let index = if first["ts"].as_f64().unwrap() == ts {
                0
            } else {
                1
            };
            if index == 1 && dropped.contains(&flow) {
                assert_eq!(m["undecodable"], true, "{m}");
            } else {
                assert_eq!(
                    m["text"].as_str(),
                    Some(budget_caps::deflated_text(flow, index).as_str()),
                    "{m}"
                );
            }
        }
        if threads == "1" {
            let flows: Vec<u64> = dropped.iter().copied().collect();
            assert_eq!(flows, (0..said).collect::<Vec<_>>());
        }
    }
    assert_no_pressure_changes_nothing(&capture);
}

#[test]
fn open_connections_long_uris_are_cut_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let (conns, uri_len) = (300u64, 20_000usize);
    let capture = write_capture(
        dir.path(),
        "uris.pcap",
        budget_caps::open_uris(Vec::new(), conns, uri_len).unwrap(),
    );
    let base = base_rss_kb(dir.path());
    for threads in ["1", "2"] {
        let r = run(
            &capture,
            &["--json", "--threads", threads, "--max-memory", "4M"],
        );
        assert_within(&r, base, 4 << 20, threads, "uris");
        let (said, bytes, _, evicted) = said_lost(&r.stderr).expect("the loss is said");
        assert_eq!(evicted, 0);
        let mut cut = 0;
        for flow in events(&r).iter().filter(|e| e["type"] == "flow") {
            let n = flow["flow"].as_u64().unwrap();
            let uri = flow["uri"].as_str().unwrap();
            let full = hostile::long_uri(n, uri_len);
            if uri != full {
                let note = format!(" ... (cut to stay within --max-memory, {uri_len} bytes)");
                assert_eq!(uri, format!("{}{note}", &full[..256]));
                cut += 1;
            }
        }
        assert_eq!(cut, said, "{}", r.stderr);
        assert_eq!(bytes, said * (uri_len as u64 - 256));
        assert!(said > 0 && said < conns, "{said} of {conns}");
    }
    assert_no_pressure_changes_nothing(&capture);
}

#[test]
fn heads_that_cannot_be_cut_end_their_connections_as_evicted() {
    // An unfinished head is all an HTTP connection holds: nothing to shed, so the longest
    // idle are ended.
    let dir = tempfile::tempdir().unwrap();
    let (conns, head) = (300u64, 30_000usize);
    let capture = write_capture(
        dir.path(),
        "heads.pcap",
        budget_caps::open_heads(Vec::new(), conns, head).unwrap(),
    );
    let base = base_rss_kb(dir.path());
    for threads in ["1", "2"] {
        let r = run(
            &capture,
            &["--json", "--threads", threads, "--max-memory", "4M"],
        );
        assert_within(&r, base, 4 << 20, threads, "heads");
        let (said, bytes, inflaters, evicted) = said_lost(&r.stderr).expect("the loss is said");
        assert_eq!((bytes, inflaters), (0, 0));
        assert_eq!(said, evicted);
        // 300 heads of 30,000 bytes in 3 MiB of pool: most must go, some stay.
        assert!(said >= conns / 2 && said < conns, "{said} of {conns}");
    }
    assert_no_pressure_changes_nothing(&capture);
}

#[test]
fn bytes_held_while_looking_for_frames_are_given_up() {
    let dir = tempfile::tempdir().unwrap();
    let (conns, held) = (400u64, 10_000usize);
    let capture = write_capture(
        dir.path(),
        "probes.pcap",
        budget_caps::probes(Vec::new(), conns, held).unwrap(),
    );
    let base = base_rss_kb(dir.path());
    for threads in ["1", "2"] {
        // Probes: nobody knows which side is the client, so only the counts say it.
        let r = run(
            &capture,
            &["--json", "--threads", threads, "--max-memory", "4M"],
        );
        assert_within(&r, base, 4 << 20, threads, "probes");
        let (said, bytes, _, evicted) = said_lost(&r.stderr).expect("the loss is said");
        assert_eq!(bytes, said * held as u64, "{}", r.stderr);
        assert_eq!(evicted, 0);
        assert!(said > 0 && said < conns, "{said} of {conns}");
        // Picked up on a --ws-port: the server is known, each loss is an event.
        let r = run(
            &capture,
            &[
                "--json",
                "--threads",
                threads,
                "--max-memory",
                "4M",
                "--ws-port",
                "8080",
            ],
        );
        assert_within(&r, base, 4 << 20, threads, "--ws-port");
        let (said, bytes, _, _) = said_lost(&r.stderr).expect("the loss is said");
        let lost = memory_anomalies(&events(&r));
        assert_eq!(lost.len() as u64, said);
        for (_, kind, detail) in &lost {
            assert_eq!(kind, "tcp_gap");
            assert!(
                detail.starts_with(&format!("{held} bytes of the c2s")),
                "{detail}"
            );
        }
        assert_eq!(bytes, said * held as u64);
        assert!(said > 0 && said < conns, "{said} of {conns}");
    }
    assert_no_pressure_changes_nothing(&capture);
}

#[test]
fn max_flows_that_cannot_fit_are_lowered_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let capture = write_capture(
        dir.path(),
        "one.pcap",
        budget_caps::holes(Vec::new(), 1, 10).unwrap(),
    );
    let r = run(
        &capture,
        &["-q", "--max-memory", "1M", "--max-flows", "100000"],
    );
    let line = r
        .stderr
        .lines()
        .find(|l| l.contains("--max-flows 100000 connections cannot fit"))
        .unwrap_or_else(|| panic!("{}", r.stderr));
    // Half of the budget at the stated cost per connection.
    let numbers: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    let [_, budget, cost, flows] = numbers[..] else {
        panic!("{line}");
    };
    assert_eq!(budget, 1 << 20);
    assert_eq!(flows, budget / 2 / cost);
    let r = run(&capture, &["-q", "--max-memory", "1G"]);
    assert!(!r.stderr.contains("cannot fit"), "{}", r.stderr);
}

/// Re-stamps a classic pcap's packets (records in order) as a pcapng whose interface counts
/// seconds: `stamps[i]` for packet i.
fn as_pcapng(pcap: &[u8], stamps: &[u64]) -> Vec<u8> {
    let mut packets = Vec::new();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let len = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
        packets.push((0, stamps[packets.len()], &pcap[at + 16..at + 16 + len]));
        at += 16 + len;
    }
    // if_tsresol 10^0: seconds.
    common::pcapng::pcapng(&[(0, 0)], &packets)
}

#[test]
fn a_packet_stamped_near_2_pow_63_does_not_stop_later_sweeps() {
    // Connection 0: one SYN stamped 2^63 - 1 s. Connection 1: upgraded at 1,000 s, then idle.
    // Connection 2: a SYN at 1,400 s, past --idle-timeout (300 s): a sweep must end 1 then.
    let mut pcap = hostile::Pcap::new(Vec::new()).unwrap();
    let c0 = hostile::Conn::client_of(0);
    pcap.tcp(c0, hostile::SERVER, 1, 0, hostile::SYN, &[])
        .unwrap();
    let mut c1 = hostile::Conn::open(&mut pcap, 1).unwrap();
    c1.upgrade(&mut pcap, "/idle").unwrap();
    let c2 = hostile::Conn::client_of(2);
    pcap.tcp(c2, hostile::SERVER, 1, 0, hostile::SYN, &[])
        .unwrap();
    let pcap = pcap.into_inner();
    let packets = 1 + 3 + 2 + 1;
    let mut stamps = vec![i64::MAX as u64];
    stamps.extend(std::iter::repeat_n(1_000, packets - 2));
    stamps.push(1_400);
    let dir = tempfile::tempdir().unwrap();
    let capture = write_capture(dir.path(), "stamps.pcapng", as_pcapng(&pcap, &stamps));
    for threads in ["1", "2"] {
        let r = run(&capture, &["--json", "--threads", threads]);
        let events = events(&r);
        let flow = events
            .iter()
            .find(|e| e["type"] == "flow")
            .unwrap_or_else(|| panic!("{}", r.stdout));
        assert_eq!(flow["uri"], "/idle");
        assert_eq!(flow["end"], "timeout", "{flow}");
    }
}
