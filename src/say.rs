//! What a run says on stderr besides its events: the end-of-run counts, what was dropped or
//! missed, and hints for mistakes. A stderr nobody reads changes no exit code (`say!`).

use std::io::{self, Write};

use wsnoop::analyzer::Stats;
use wsnoop::analyzer::budget::{MemoryPlan, connection_cost};
use wsnoop::capture;
use wsnoop::net::defrag::{FRAGMENT_TIMEOUT_SECS, MAX_PIECES};

/// The packets that yielded no TCP segment, by reason; None when every packet did.
pub(crate) fn skipped_packets(stats: &Stats) -> Option<String> {
    let reasons = [
        (stats.skipped_not_tcp, "not TCP over IP"),
        (stats.skipped_malformed, "malformed or cut short below TCP"),
        (
            stats.skipped_link_type,
            "of a link type wsnoop does not read",
        ),
    ];
    let parts: Vec<String> = reasons
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, why)| format!("{n} {why}"))
        .collect();
    let total: u64 = reasons.iter().map(|(n, _)| n).sum();
    (total > 0).then(|| format!("{total} packets skipped: {}", parts.join(", ")))
}

pub(crate) fn report(stats: &Stats, live: Option<capture::LiveStats>) {
    let mut err = io::stderr().lock();
    let _ = writeln!(
        err,
        "{} packets, {} connections, {} handshakes ({} upgraded), {} frames, {} messages, {} anomalies",
        stats.packets,
        stats.connections,
        stats.ws.handshakes,
        stats.ws.upgrades,
        stats.ws.frames,
        stats.ws.messages,
        stats.ws.anomalies
    );
    if let Some(skipped) = skipped_packets(stats) {
        let _ = writeln!(err, "{skipped}");
    }
    if stats.ws.probes_given_up > 0 {
        let _ = writeln!(
            err,
            "{} connections without a captured handshake probed for WebSocket frames and given up \
(no chain of frames in their first 4 MiB or before they ended, or bytes lost before one)",
            stats.ws.probes_given_up
        );
    }
    let given_up = &stats.ws.http_given_up;
    if given_up.total() > 0 {
        let _ = writeln!(
            err,
            "{} connections given up by the HTTP layer ({}), {} of them reported as http_abandoned",
            given_up.total(),
            given_up.summary(),
            given_up.reported
        );
    }
    if stats.truncated_packets > 0 {
        let _ = writeln!(
            err,
            "{} packets cut at {} bytes by the snapshot length: {} payload bytes not captured",
            stats.truncated_packets, stats.snaplen, stats.bytes_cut
        );
    }
    if stats.skipped_cut_header > 0 {
        let _ = writeln!(
            err,
            "{} packets cut inside their TCP header by the snapshot length: their bytes are gaps",
            stats.skipped_cut_header
        );
    }
    if stats.defrag.expired > 0 {
        let _ = writeln!(
            err,
            "{} IP datagrams given up incomplete {FRAGMENT_TIMEOUT_SECS} s after their first fragment",
            stats.defrag.expired
        );
    }
    if let Some(l) = live {
        let _ = writeln!(
            err,
            "{} packets received by filter, {} packets dropped by kernel, {} packets dropped by interface",
            l.received, l.dropped, l.if_dropped
        );
    }
}

/// Datagrams the defragmenter dropped are lost bytes: said whatever the options, as drops are.
pub(crate) fn say_fragments_dropped(stats: &Stats, max_frag_bytes: usize) {
    if stats.defrag.dropped > 0 {
        say!(
            "wsnoop: {} incomplete IP datagrams dropped, the oldest first, to keep what their \
fragments hold within --max-frag-bytes ({max_frag_bytes} bytes), or for coming in more than \
{MAX_PIECES} fragments",
            stats.defrag.dropped
        );
    }
}

/// At start: limits that `--max-memory` could not hold were lowered.
pub(crate) fn say_memory_plan(plan: &MemoryPlan) {
    if let Some(asked) = plan.flows_lowered_from {
        say!(
            "wsnoop: --max-flows {asked} connections cannot fit in half of --max-memory ({} \
bytes) at {} bytes each: following at most {} at once",
            plan.max_memory,
            connection_cost(),
            plan.max_flows
        );
    }
    if let Some(asked) = plan.frag_lowered_from {
        say!(
            "wsnoop: --max-frag-bytes {asked} is more than an eighth of --max-memory ({} bytes): \
IP fragments hold at most {} bytes",
            plan.max_memory,
            plan.max_frag_bytes
        );
    }
}

/// At the end, once: what connections gave up to stay within `--max-memory`.
pub(crate) fn say_memory_shed(stats: &Stats, max_memory: usize) {
    let m = &stats.memory;
    if m.connections == 0 {
        return;
    }
    say!(
        "wsnoop: {} connections lost {} bytes to stay within --max-memory ({max_memory} bytes): \
held out of order, waiting for frames or a cut handshake URI; {} inflaters dropped, {} \
connections ended early (\"evicted\"); their anomalies have cause \"memory\"",
        m.connections,
        m.bytes,
        m.inflaters,
        m.evicted
    );
}

/// Kernel drops while capturing: a drop can explain a missing frame.
pub(crate) fn say_drops(s: capture::LiveStats) {
    say!("wsnoop: {} packets dropped by the kernel so far", s.dropped);
}

/// Never silence: a run that printed nothing says what it saw instead, and limits that
/// dropped connections say so (once, at the end).
pub(crate) fn say_what_was_missed(stats: &Stats, max_flows: usize) {
    if stats.evicted > 0 {
        say!(
            "wsnoop: {} connections ended early (\"evicted\") to stay within --max-flows {max_flows}: \
             raise it to follow them to their end",
            stats.evicted
        );
    }
    let ws = &stats.ws;
    if ws.handshakes > 0 || ws.frames > 0 {
        return;
    }
    let tls = if ws.tls_connections > 0 {
        format!(
            ", {} of them TLS (wss or https: decrypting needs the key log, --keylog)",
            ws.tls_connections
        )
    } else {
        String::new()
    };
    say!(
        "wsnoop: no WebSocket handshake or frame in {} packets ({} TCP connections{tls}); \
         `wsnoop diagnose` says what the connections did",
        stats.packets,
        stats.connections
    );
}

/// For a filter libpcap refused that reads like a Wireshark display filter: what to write.
pub(crate) fn filter_hint(expression: &str) -> Option<String> {
    let display = [
        "websocket",
        "ws",
        "http",
        "tls",
        "frame.",
        "ip.addr",
        "tcp.port",
        "==",
        "&&",
    ];
    if !display.iter().any(|w| expression.contains(w)) {
        return None;
    }
    let port = expression
        .split(|c: char| !c.is_ascii_digit())
        .find(|n| !n.is_empty() && n.len() <= 5)
        .unwrap_or("8080");
    Some(format!(
        "hint: the filter is a BPF capture filter, as tcpdump takes it, not a Wireshark display \
         filter: e.g. `tcp port {port}` or `host 10.0.0.1 and port {port}`; wsnoop already keeps \
         only WebSocket traffic, and --show, --json with jq select what is printed"
    ))
}
