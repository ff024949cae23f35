//! `wsnoop diagnose`: the troubleshooting guide as a command. It watches every TCP connection
//! attempt and WebSocket session, then says in plain words what is wrong, what it most likely
//! means, and what to check.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::SocketAddr;

use crate::analyzer::Stats;
use crate::anomaly::{AnomalyKind, Cause};
use crate::event::{EndReason, Event, EventSink, FlowMeta, PayloadKind, Timestamp};
use crate::output::OutputSink;

/// Example connections kept per finding.
const EXAMPLES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// One thing the diagnosis found.
#[derive(Debug, Clone)]
pub struct Finding {
    pub kind: &'static str,
    pub severity: Severity,
    pub count: u64,
    /// Example connection numbers.
    pub flows: Vec<u64>,
    /// What was seen, with an example connection and its time.
    pub detail: String,
    /// What it most likely means and what to check.
    pub advice: String,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct DiagnoseOptions {
    /// A stretch without data frames at least this long makes a session idle.
    pub idle_secs: f64,
}

/// Connections of one kind: how many, and a few to point at.
#[derive(Debug, Default, Clone)]
struct Bucket {
    count: u64,
    examples: Vec<(u64, SocketAddr, SocketAddr, Timestamp)>,
    /// Server endpoints involved, with counts.
    servers: BTreeMap<SocketAddr, u64>,
}

impl Bucket {
    fn add(&mut self, flow: &FlowMeta, ts: Timestamp) {
        self.count += 1;
        if self.examples.len() < EXAMPLES {
            self.examples.push((flow.id, flow.client, flow.server, ts));
        }
        if self.servers.len() < 64 || self.servers.contains_key(&flow.server) {
            *self.servers.entry(flow.server).or_default() += 1;
        }
    }

    fn flows(&self) -> Vec<u64> {
        self.examples.iter().map(|e| e.0).collect()
    }

    fn servers(&self) -> String {
        let mut list: Vec<String> = self.servers.keys().take(4).map(|s| s.to_string()).collect();
        if self.servers.len() > 4 {
            list.push(format!("and {} more", self.servers.len() - 4));
        }
        list.join(", ")
    }

    fn example(&self) -> String {
        match self.examples.first() {
            Some((id, client, server, ts)) => format!(
                "e.g. connection #{id} from {client} to {server} at {}",
                clock(*ts)
            ),
            None => String::new(),
        }
    }
}

/// Collects what the analyzer reports and turns it into findings.
#[derive(Debug, Default)]
pub struct Diagnoser {
    ports: Vec<u16>,
    options: DiagnoseOptions,
    connections: u64,
    connections_by_port: BTreeMap<u16, u64>,
    port_closed: Bucket,
    no_answer: Bucket,
    syn_retransmissions: u64,
    tls: Bucket,
    handshakes: u64,
    upgraded: u64,
    not_websocket: BTreeMap<u16, Bucket>,
    bad_upgrade: Bucket,
    bad_upgrade_details: BTreeMap<String, u64>,
    accept_mismatch: Bucket,
    no_response: Bucket,
    sessions: u64,
    frames: u64,
    messages: u64,
    one_way: Bucket,
    one_way_silent_side: [u64; 2],
    idle: Bucket,
    longest_silence: f64,
    unanswered_pings: Bucket,
    no_close_frame: BTreeMap<&'static str, Bucket>,
    error_codes: BTreeMap<u16, Bucket>,
    unanswered_close: Bucket,
    violations: BTreeMap<AnomalyKind, Bucket>,
    gaps: Bucket,
    /// Connections with packets the snapshot length cut, and the bytes cut each way.
    truncated: Bucket,
    bytes_cut: [u64; 2],
    /// What bytes missing from the capture broke, by cause: anomalies that are consequences
    /// of a cut or a gap, not of anything a peer did.
    consequences: BTreeMap<(Cause, AnomalyKind), u64>,
    incomplete_messages: u64,
    clean_closes: u64,
    /// Connections the HTTP layer gave up on (http_abandoned), per reason name.
    http_abandoned: BTreeMap<&'static str, Bucket>,
}

impl Diagnoser {
    /// `ports`: the server ports to look at; empty means every port.
    pub fn new(ports: Vec<u16>, options: DiagnoseOptions) -> Self {
        Diagnoser {
            ports,
            options,
            ..Diagnoser::default()
        }
    }

    fn wanted(&self, flow: &FlowMeta) -> bool {
        self.ports.is_empty() || self.ports.contains(&flow.server.port())
    }
}

impl EventSink for Diagnoser {
    fn event(&mut self, event: &Event<'_>) {
        match event {
            Event::Connection(e) => {
                if !self.wanted(e.flow) {
                    return;
                }
                let t = e.tcp;
                self.connections += 1;
                if self.connections_by_port.len() < 4096 {
                    *self
                        .connections_by_port
                        .entry(e.flow.server.port())
                        .or_default() += 1;
                }
                let no_data = t.bytes == [0, 0];
                if t.syns > 0 && t.synacks == 0 && no_data {
                    if t.rst[1] {
                        self.port_closed.add(e.flow, t.first_seen);
                    } else {
                        self.no_answer.add(e.flow, t.first_seen);
                        self.syn_retransmissions += u64::from(t.syns - 1);
                    }
                }
                if t.first_payload[0] == Some(PayloadKind::Tls) {
                    self.tls.add(e.flow, t.first_seen);
                }
                if t.bytes_cut != [0, 0] {
                    self.truncated.add(e.flow, t.first_seen);
                    self.bytes_cut[0] += t.bytes_cut[0];
                    self.bytes_cut[1] += t.bytes_cut[1];
                }
            }
            Event::Handshake(e) => {
                if !self.wanted(e.flow) {
                    return;
                }
                self.handshakes += 1;
                if e.upgraded {
                    self.upgraded += 1;
                } else {
                    self.not_websocket
                        .entry(e.response.status)
                        .or_default()
                        .add(e.flow, e.ts);
                }
            }
            Event::Frame(e) => {
                if self.wanted(e.flow) {
                    self.frames += 1;
                }
            }
            Event::Message(e) => {
                if self.wanted(e.flow) {
                    self.messages += 1;
                    self.incomplete_messages += u64::from(e.incomplete);
                }
            }
            Event::Anomaly(e) => {
                if !self.wanted(e.flow) {
                    return;
                }
                match e.kind {
                    AnomalyKind::AcceptMismatch => self.accept_mismatch.add(e.flow, e.ts),
                    AnomalyKind::BadUpgradeRequest => {
                        self.bad_upgrade.add(e.flow, e.ts);
                        if self.bad_upgrade_details.len() < 16 {
                            *self
                                .bad_upgrade_details
                                .entry(e.detail.to_string())
                                .or_default() += 1;
                        }
                    }
                    AnomalyKind::TcpGap => self.gaps.add(e.flow, e.ts),
                    AnomalyKind::HttpAbandoned => self.http_abandoned(e.detail, e.flow, e.ts),
                    // Counted from the connections, which say how much was cut.
                    AnomalyKind::TruncatedCapture => {}
                    kind if e.cause.is_capture() => {
                        *self.consequences.entry((e.cause, kind)).or_default() += 1;
                    }
                    kind => self.violations.entry(kind).or_default().add(e.flow, e.ts),
                }
            }
            Event::Close(e) => {
                if !self.wanted(e.flow) {
                    return;
                }
                self.clean_closes += u64::from(e.clean);
                if e.initiator.is_some() && !e.replied && e.end != EndReason::CaptureEnd {
                    self.unanswered_close.add(e.flow, e.ts);
                }
                if e.initiator.is_none() {
                    let how = match e.end {
                        EndReason::Rst => "a TCP reset",
                        EndReason::Fin => "a TCP FIN",
                        EndReason::Timeout => "an idle timeout",
                        EndReason::Evicted | EndReason::CaptureEnd => return,
                    };
                    self.no_close_frame
                        .entry(how)
                        .or_default()
                        .add(e.flow, e.ts);
                }
                // A session counts once per code: the echo of the same code is not a second
                // session closed with it.
                let reply = e.reply_code.filter(|&r| Some(r) != e.code);
                for code in [e.code, reply].into_iter().flatten() {
                    if close_code_meaning(code).1 {
                        self.error_codes.entry(code).or_default().add(e.flow, e.ts);
                    }
                }
            }
            Event::Flow(e) => {
                if !self.wanted(e.flow) {
                    return;
                }
                let c = e.counters;
                match e.status {
                    None if e.uri.is_some() && !e.flow.midstream => {
                        self.no_response.add(e.flow, e.start);
                        return;
                    }
                    Some(status) if status != 101 => return,
                    _ => {}
                }
                self.sessions += 1;
                let [c2s, s2c] = c.frames;
                if (c2s == 0) != (s2c == 0) {
                    self.one_way.add(e.flow, e.start);
                    self.one_way_silent_side[usize::from(c2s != 0)] += 1;
                }
                self.longest_silence = self.longest_silence.max(c.longest_silence);
                if c.longest_silence >= self.options.idle_secs {
                    self.idle.add(e.flow, e.start);
                }
                if c.pings > 0 && c.pongs == 0 {
                    self.unanswered_pings.add(e.flow, e.start);
                }
            }
        }
    }
}

impl Diagnoser {
    /// An http_abandoned anomaly, bucketed by the reason that begins its detail.
    fn http_abandoned(&mut self, detail: &str, flow: &FlowMeta, ts: Timestamp) {
        let reason = crate::http::give_up::GiveUp::ALL
            .iter()
            .map(|r| r.name())
            .find(|name| detail.split(':').next() == Some(*name))
            .unwrap_or("other");
        self.http_abandoned.entry(reason).or_default().add(flow, ts);
    }
}

/// What a close code says, and whether it reports an error.
pub fn close_code_meaning(code: u16) -> (&'static str, bool) {
    match code {
        1000 => ("normal closure", false),
        1001 => ("going away (a page left, or a server shutting down)", false),
        1002 => (
            "protocol error: the peer broke the WebSocket protocol",
            true,
        ),
        1003 => (
            "unsupported data: a text/binary message the peer cannot accept",
            true,
        ),
        1007 => (
            "invalid payload data (e.g. a text message that is not UTF-8)",
            true,
        ),
        1008 => (
            "policy violation: the peer refused the message or the client",
            true,
        ),
        1009 => ("message too big for the peer's limit", true),
        1010 => (
            "the client needed an extension the server did not accept",
            true,
        ),
        1011 => ("internal error in the server", true),
        1012 => ("service restart", true),
        1013 => ("try again later (overloaded)", true),
        1014 => ("bad gateway: a proxy got a bad answer upstream", true),
        3000..=3999 => ("a code registered by a library or framework", false),
        4000..=4999 => ("an application-defined code", false),
        _ => ("a code the RFC does not allow on the wire", true),
    }
}

fn status_meaning(status: u16) -> &'static str {
    match status {
        200 => {
            "a plain web server answered: nothing on that path speaks WebSocket, or a proxy in between dropped the Upgrade header"
        }
        301 | 302 | 307 | 308 => {
            "a redirect: the WebSocket endpoint lives elsewhere (often http -> https, i.e. ws -> wss)"
        }
        400 => "the server found the upgrade request malformed (missing or bad WebSocket headers)",
        401 => "authentication required: the client sent no or bad credentials",
        403 => {
            "forbidden: typically the server rejected the Origin header or the client's credentials"
        }
        404 => "wrong path: no WebSocket endpoint at that URI",
        405 => "method not allowed: the upgrade must be a GET",
        426 => {
            "upgrade required: the server wants another protocol version (Sec-WebSocket-Version)"
        }
        429 => "rate limited: the client connects too often",
        500..=599 => "the server (or a proxy) failed while handling the upgrade",
        _ => "the server answered the upgrade with something other than 101 Switching Protocols",
    }
}

fn clock(ts: Timestamp) -> String {
    let day = ts.secs.rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}.{:03} UTC",
        day / 3600,
        day / 60 % 60,
        day % 60,
        ts.nanos / 1_000_000
    )
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl Diagnoser {
    /// The findings, most severe first.
    pub fn findings(&self, stats: &Stats) -> Vec<Finding> {
        let mut out = Vec::new();
        let mut push = |kind, severity, bucket: &Bucket, detail: String, advice: &str| {
            out.push(Finding {
                kind,
                severity,
                count: bucket.count,
                flows: bucket.flows(),
                detail,
                advice: advice.to_string(),
            });
        };
        if self.port_closed.count > 0 {
            let b = &self.port_closed;
            push(
                "port_closed",
                Severity::Error,
                b,
                format!(
                    "{} to {} answered by a TCP reset; {}.",
                    plural(b.count, "connection attempt", "connection attempts"),
                    b.servers(),
                    b.example()
                ),
                "Nothing listens on that port: the server is not running, crashed, or listens on \
another port or address. On the server check `ss -ltnp`, its logs and its configured port.",
            );
        }
        if self.no_answer.count > 0 {
            let b = &self.no_answer;
            push(
                "no_answer",
                Severity::Error,
                b,
                format!(
                    "{} to {} got no SYN-ACK ({} retransmitted SYNs); {}.",
                    plural(b.count, "connection attempt", "connection attempts"),
                    b.servers(),
                    self.syn_retransmissions,
                    b.example()
                ),
                "The SYNs go unanswered: a firewall drops them (iptables/nftables on the server, a \
security group, a cloud firewall) or routing does not reach the server. Check the firewall \
rules for the port and capture on the server's side to see whether the SYNs arrive.",
            );
        }
        for (status, b) in &self.not_websocket {
            push(
                "not_websocket",
                Severity::Error,
                b,
                format!(
                    "{} answered with HTTP {status} instead of 101 Switching Protocols by {}; {}.",
                    plural(b.count, "upgrade request was", "upgrade requests were"),
                    b.servers(),
                    b.example()
                ),
                &format!(
                    "HTTP {status}: {}. Check the URL the client uses and the server's (or proxy's) \
WebSocket configuration.",
                    status_meaning(*status)
                ),
            );
        }
        if self.bad_upgrade.count > 0 {
            let b = &self.bad_upgrade;
            let what: Vec<&str> = self
                .bad_upgrade_details
                .keys()
                .map(String::as_str)
                .collect();
            push(
                "bad_upgrade_request",
                Severity::Error,
                b,
                format!(
                    "{}: {}; {}.",
                    plural(
                        b.count,
                        "malformed upgrade request",
                        "malformed upgrade requests"
                    ),
                    what.join("; "),
                    b.example()
                ),
                "A client bug: an upgrade needs GET, `Connection: Upgrade`, `Upgrade: websocket`, a \
16-byte base64 Sec-WebSocket-Key and `Sec-WebSocket-Version: 13` (RFC 6455 4.1). Check the \
client library and any proxy that rewrites headers.",
            );
        }
        if self.accept_mismatch.count > 0 {
            let b = &self.accept_mismatch;
            push(
                "accept_mismatch",
                Severity::Error,
                b,
                format!(
                    "{} with a wrong Sec-WebSocket-Accept; {}.",
                    plural(b.count, "101 response", "101 responses"),
                    b.example()
                ),
                "Clients must drop such connections (RFC 6455 4.1). The server or a proxy computes the \
accept value wrongly, or a proxy altered the key: check what sits between client and server.",
            );
        }
        if self.no_response.count > 0 {
            let b = &self.no_response;
            push(
                "no_response",
                Severity::Error,
                b,
                format!(
                    "{} got no response at all; {}.",
                    plural(b.count, "upgrade request", "upgrade requests"),
                    b.example()
                ),
                "The server accepted the TCP connection but never answered the upgrade: it hangs, is \
overloaded, or a proxy holds the request. Check the server's logs and timeouts.",
            );
        }
        if self.tls.count > 0 {
            let b = &self.tls;
            push(
                "tls",
                Severity::Warning,
                b,
                format!(
                    "{} to {} TLS (wss); {}.",
                    plural(b.count, "connection speaks", "connections speak"),
                    b.servers(),
                    b.example()
                ),
                "The frames are encrypted and cannot be seen. Capture where TLS ends (behind the \
proxy that terminates it, e.g. the media server's plain ws port), or have the client log its \
session keys (SSLKEYLOGFILE=/tmp/keys for Chromium/Firefox/curl) and decrypt with Wireshark.",
            );
        }
        if self.one_way.count > 0 {
            let b = &self.one_way;
            let [silent_client, silent_server] = self.one_way_silent_side;
            push(
                "one_way",
                Severity::Warning,
                b,
                format!(
                    "{} carried frames in one direction only ({} with a silent client, {} with a \
silent server); {}.",
                    plural(b.count, "session", "sessions"),
                    silent_client,
                    silent_server,
                    b.example()
                ),
                "One side never sent a frame: the application on that side is stuck or does not \
answer the other's messages, or (with a silent server) it waits for a message the client \
never sends. Check both applications' logs for that connection.",
            );
        }
        if self.idle.count > 0 {
            let b = &self.idle;
            push(
                "idle",
                Severity::Warning,
                b,
                format!(
                    "{} went {:.0} s or more without a data frame (longest {:.1} s); {}.",
                    plural(b.count, "session", "sessions"),
                    self.options.idle_secs,
                    self.longest_silence,
                    b.example()
                ),
                "Idle connections are cut by proxies and NATs (often after 60 s). If that is what \
happens, have one side send pings more often than the shortest idle timeout on the path.",
            );
        }
        if self.unanswered_pings.count > 0 {
            let b = &self.unanswered_pings;
            push(
                "idle",
                Severity::Warning,
                b,
                format!(
                    "{} sent pings that never got a pong; {}.",
                    plural(b.count, "session", "sessions"),
                    b.example()
                ),
                "A peer that does not answer pings is hung, or something in between eats control \
frames. Check the peer's event loop and any proxy.",
            );
        }
        for (how, b) in &self.no_close_frame {
            push(
                "abnormal_close",
                Severity::Warning,
                b,
                format!(
                    "{} ended by {how} without a close frame; {}.",
                    plural(b.count, "session", "sessions"),
                    b.example()
                ),
                "Browsers report this as close code 1006. The peer process died or was killed, the \
network path dropped, or a proxy/load balancer cut the connection (check its idle timeout).",
            );
        }
        if self.unanswered_close.count > 0 {
            let b = &self.unanswered_close;
            push(
                "abnormal_close",
                Severity::Warning,
                b,
                format!(
                    "{} sent a close frame that the other side never answered; {}.",
                    plural(b.count, "session", "sessions"),
                    b.example()
                ),
                "RFC 6455 5.5.1: the receiver of a close frame must answer with one. The silent \
side is hung or busy (a blocking call in its event loop), and its peer sees 1006.",
            );
        }
        for (code, b) in &self.error_codes {
            push(
                "abnormal_close",
                Severity::Warning,
                b,
                format!(
                    "{} closed with code {code} ({}); {}.",
                    plural(b.count, "session", "sessions"),
                    close_code_meaning(*code).0,
                    b.example()
                ),
                "The side that sent this code says why it closed; look for the matching error in \
its logs at that time.",
            );
        }
        for (kind, b) in &self.violations {
            push(
                "protocol_violations",
                Severity::Warning,
                b,
                format!(
                    "{}: {} ({}); {}.",
                    kind.name(),
                    plural(b.count, "time", "times"),
                    kind.rule(),
                    b.example()
                ),
                "One side breaks RFC 6455: strict peers close such connections (code 1002 or 1007). \
Run `wsnoop -r FILE --json | jq 'select(.type==\"anomaly\")'` for each occurrence.",
            );
        }
        // Messages cut short go with the cuts when there are any: with a small snapshot
        // length nearly every long message is.
        let cut = self.truncated.count > 0;
        if cut {
            let b = &self.truncated;
            push(
                "truncated_capture",
                Severity::Warning,
                b,
                format!(
                    "packets were cut at {} bytes by the capture's snapshot length: {} lost {} \
bytes from the client and {} from the server that were sent but not captured{}; {}.",
                    stats.snaplen,
                    plural(b.count, "connection", "connections"),
                    self.bytes_cut[0],
                    self.bytes_cut[1],
                    self.broken(Cause::Snaplen, true),
                    b.example()
                ),
                &format!(
                    "The capture kept only the first {} bytes of each packet (tcpdump -s, or a \
capture tool's slice length): this is not a network problem and not a peer's fault. Frames that \
fit were decoded and decoding resumed after every cut, but longer frames, handshakes and \
compressed messages after a cut are unknown. Capture again with the whole packets: tcpdump -s 0 \
(wsnoop -i captures whole packets).",
                    stats.snaplen
                ),
            );
        }
        if self.gaps.count > 0 {
            let b = &self.gaps;
            // A packet cut inside its TCP header cannot be placed in its stream: its bytes are
            // a gap, and then the gaps may all be cuts, not drops.
            let header_cuts = stats.skipped_cut_header;
            let (why, advice) = if header_cuts > 0 {
                (
                    format!(
                        "; the snapshot length ({} bytes) also cut {} inside the TCP header, \
whose bytes can only show as gaps",
                        stats.snaplen,
                        plural(header_cuts, "packet", "packets")
                    ),
                    "The gaps may be packets the snapshot length cut, or packets the capture \
dropped (see libpcap's drop counts). Capture again with the whole packets (tcpdump -s 0); if \
gaps remain, with a larger buffer (-B), a filter, or to a file with -w.",
                )
            } else {
                (
                    String::new(),
                    "The capture dropped packets (see libpcap's drop counts), so some frames are \
unknown. Capture with a larger buffer (-B), a filter, or to a file with -w.",
                )
            };
            push(
                "capture_loss",
                Severity::Warning,
                b,
                format!(
                    "{} missing from the capture{}{why}; {}.",
                    plural(b.count, "stretch of bytes was", "stretches of bytes were"),
                    self.broken(Cause::Gap, !cut),
                    b.example()
                ),
                advice,
            );
        }
        if !self.http_abandoned.is_empty() {
            let count = self.http_abandoned.values().map(|b| b.count).sum();
            let why: Vec<String> = self
                .http_abandoned
                .iter()
                .map(|(reason, b)| format!("{reason} {}", b.count))
                .collect();
            let mut all = Bucket::default();
            for b in self.http_abandoned.values() {
                all.examples.extend(b.examples.iter().copied());
            }
            all.examples.sort_unstable_by_key(|e| e.0);
            all.examples.truncate(EXAMPLES);
            all.count = count;
            push(
                "http_abandoned",
                Severity::Warning,
                &all,
                format!(
                    "wsnoop stopped following the HTTP of {} ({}); {}.",
                    plural(count, "connection", "connections"),
                    why.join(", "),
                    all.example()
                ),
                "Those that asked for WebSocket were decoded mid-stream: their frames are shown, \
their handshake may be missing. `gap`: bytes of the handshake were not captured (the \
capture_loss or truncated_capture finding says why). `other_protocol`: a 101 that does not say `Upgrade: websocket`, a server bug. \
`head_too_large`, `early_client_bytes`, `too_many_pipelined`: an unusual client or an attack. \
`not_http`, `malformed_head`, `bad_chunked_body`: an endpoint or a proxy writes broken HTTP. \
The anomalies' details (`wsnoop -r FILE --json | jq 'select(.kind==\"http_abandoned\")'`) say \
which stream and why.",
            );
        }
        let websocket_seen = self.handshakes > 0 || self.sessions > 0;
        let wrong_before_ws = out.iter().any(|f| f.severity == Severity::Error);
        // TLS on the port may well be WebSocket (wss): the tls finding already says so.
        if !websocket_seen && !wrong_before_ws && self.tls.count == 0 {
            let mut ports: Vec<(u64, u16)> = self
                .connections_by_port
                .iter()
                .map(|(p, n)| (*n, *p))
                .collect();
            ports.sort_unstable_by(|a, b| b.cmp(a));
            let seen = if stats.packets == 0 {
                "no packets at all were captured".to_string()
            } else if self.connections == 0 {
                format!(
                    "{} packets but no TCP connection{}{}",
                    stats.packets,
                    if self.ports.is_empty() {
                        ""
                    } else {
                        " on the ports asked for"
                    },
                    skipped_note(stats)
                )
            } else {
                let top: Vec<String> = ports
                    .iter()
                    .take(5)
                    .map(|(n, p)| format!("port {p} ({})", plural(*n, "connection", "connections")))
                    .collect();
                format!(
                    "{} packets, {} on {}, none of them WebSocket",
                    stats.packets,
                    plural(self.connections, "TCP connection", "TCP connections"),
                    top.join(", ")
                )
            };
            let cut_note = if cut {
                format!(
                    "; but the snapshot length cut packets of {} at {} bytes, which hides \
handshakes longer than that (see truncated_capture: capture again with -s 0)",
                    plural(self.truncated.count, "connection", "connections"),
                    stats.snaplen
                )
            } else {
                String::new()
            };
            out.push(Finding {
                kind: "no_websocket_traffic",
                severity: Severity::Error,
                count: 0,
                flows: Vec::new(),
                detail: format!("No WebSocket handshake or session: {seen}{cut_note}."),
                advice: if cut { "First capture again with the whole packets (tcpdump -s 0): \
the handshakes may be there but cut. " } else { "" }.to_string() + "No WebSocket traffic means a problem in the client's or server's configuration, \
a firewall, or routing. Check that this is the right interface (-D lists them) and port, that \
the client really connects here (its URL), and that no proxy terminates the connection elsewhere.",
            });
        }
        if !out.iter().any(|f| f.severity > Severity::Info) {
            out.push(Finding {
                kind: "healthy",
                severity: Severity::Info,
                count: self.sessions,
                flows: Vec::new(),
                detail: format!(
                    "{} upgraded; {} carrying {} and {}, {} with a clean close handshake; no \
protocol violation.",
                    plural(self.upgraded, "handshake", "handshakes"),
                    plural(self.sessions, "session", "sessions"),
                    plural(self.frames, "frame", "frames"),
                    plural(self.messages, "message", "messages"),
                    self.clean_closes
                ),
                advice: "Nothing wrong was seen. If users still report problems, look at the \
application's messages: `wsnoop -r FILE --show messages`."
                    .to_string(),
            });
        }
        out.sort_by_key(|f| std::cmp::Reverse(f.severity));
        out
    }
}

/// The packets wsnoop could not read down to TCP, when they may be what hid the traffic.
fn skipped_note(stats: &Stats) -> String {
    let mut parts = Vec::new();
    if stats.skipped_not_tcp > 0 {
        parts.push(format!("{} not TCP over IP", stats.skipped_not_tcp));
    }
    if stats.skipped_malformed > 0 {
        parts.push(format!(
            "{} malformed or cut short below TCP",
            stats.skipped_malformed
        ));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

impl Diagnoser {
    /// What bytes missing for `cause` broke, as a clause ("; what that broke: ..."), with the
    /// messages cut short when `messages`.
    fn broken(&self, cause: Cause, messages: bool) -> String {
        let mut parts: Vec<String> = self
            .consequences
            .iter()
            .filter(|((c, _), _)| *c == cause)
            .map(|((_, kind), n)| format!("{} {}", kind.name(), plural(*n, "time", "times")))
            .collect();
        if messages && self.incomplete_messages > 0 {
            parts.insert(
                0,
                plural(
                    self.incomplete_messages,
                    "message incomplete",
                    "messages incomplete",
                ),
            );
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("; what that broke: {}", parts.join(", "))
        }
    }
}

/// Writes findings for people.
pub fn write_text(w: &mut impl Write, findings: &[Finding], color: bool) -> io::Result<()> {
    for f in findings {
        let (label, style) = match f.severity {
            Severity::Error => ("ERROR", "\x1b[1;31m"),
            Severity::Warning => ("WARNING", "\x1b[1;33m"),
            Severity::Info => ("OK", "\x1b[1;32m"),
        };
        if color {
            write!(w, "{style}{label}\x1b[0m")?;
        } else {
            w.write_all(label.as_bytes())?;
        }
        writeln!(w, " {}: {}", f.kind, f.detail)?;
        writeln!(w, "  -> {}", f.advice)?;
    }
    Ok(())
}

/// Writes findings as JSON Lines: {"type":"finding", ...}.
pub fn write_json(w: &mut impl Write, findings: &[Finding]) -> io::Result<()> {
    for f in findings {
        let line = serde_json::json!({
            "type": "finding",
            "kind": f.kind,
            "severity": f.severity.name(),
            "count": f.count,
            "flows": f.flows,
            "detail": f.detail,
            "advice": f.advice,
        });
        serde_json::to_writer(&mut *w, &line).map_err(io::Error::other)?;
        w.write_all(b"\n")?;
    }
    Ok(())
}

impl OutputSink for Diagnoser {
    fn error(&self) -> Option<&io::Error> {
        None
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{CloseEvent, Direction};

    fn close(flow: &FlowMeta, code: u16, reply_code: Option<u16>) -> Event<'_> {
        Event::Close(CloseEvent {
            ts: Timestamp::default(),
            flow,
            initiator: Some(Direction::ServerToClient),
            code: Some(code),
            reason: None,
            reply_code,
            replied: reply_code.is_some(),
            clean: true,
            end: EndReason::Fin,
        })
    }

    /// 25 sessions closed with 1008, each echoed: 25 sessions, not 50 close frames. A session
    /// answered with another code counts under both codes.
    #[test]
    fn error_close_codes_count_sessions() {
        let mut d = Diagnoser::new(Vec::new(), DiagnoseOptions::default());
        let flows: Vec<FlowMeta> = (0..26)
            .map(|id| FlowMeta {
                id,
                client: "127.0.0.1:40000".parse().unwrap(),
                server: "127.0.0.1:8080".parse().unwrap(),
                midstream: false,
            })
            .collect();
        for flow in &flows[..25] {
            d.event(&close(flow, 1008, Some(1008)));
        }
        d.event(&close(&flows[25], 1011, Some(1008)));
        let findings = d.findings(&Stats::default());
        let detail = |code: &str| {
            findings
                .iter()
                .find(|f| f.kind == "abnormal_close" && f.detail.contains(code))
                .map(|f| (f.count, f.detail.clone()))
        };
        let (count, text) = detail("code 1008").expect("a finding for 1008");
        assert_eq!(count, 26, "{text}");
        assert!(
            text.starts_with("26 sessions closed with code 1008"),
            "{text}"
        );
        let (count, text) = detail("code 1011").expect("a finding for 1011");
        assert_eq!(count, 1, "{text}");
    }
}
