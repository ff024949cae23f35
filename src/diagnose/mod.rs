//! `wsnoop diagnose`: the troubleshooting guide as a command. It watches every TCP connection
//! attempt and WebSocket session, then says in plain words what is wrong, what it most likely
//! means, and what to check.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;

mod advice;
mod findings;
mod tls;
mod words;

pub use findings::{Finding, Severity, write_json, write_text};
pub use words::close_code_meaning;

use crate::anomaly::{AnomalyKind, Cause};
use crate::event::{
    Direction, EndReason, Event, EventSink, FlowMeta, PayloadKind, PerDir, Timestamp,
};

use crate::output::OutputSink;
use Direction::{ClientToServer as C2S, ServerToClient as S2C};

/// Example connections kept per finding.
const EXAMPLES: usize = 5;
use words::clock;

#[derive(Debug, Clone, Copy, Default)]
pub struct DiagnoseOptions {
    /// A stretch without data frames at least this long makes a session idle.
    pub idle_secs: f64,
    /// A TLS key log was given: a TLS connection without keys is then its problem, not the
    /// absence of any key log.
    pub keylog_given: bool,
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
    tls: tls::TlsSeen,
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
    bytes_cut: PerDir<u64>,
    /// What bytes missing from the capture broke, by cause: anomalies that are consequences
    /// of a cut or a gap, not of anything a peer did.
    consequences: BTreeMap<(Cause, AnomalyKind), u64>,
    incomplete_messages: u64,
    clean_closes: u64,
    /// Connections the HTTP layer gave up on (http_abandoned), per reason name.
    http_abandoned: BTreeMap<&'static str, Bucket>,
    /// Sessions whose handshake was not captured (already open when the capture started, or
    /// picked up after the HTTP layer gave up), and their messages: all, and exact ones.
    midstream: Bucket,
    midstream_messages: u64,
    midstream_exact: u64,
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
                let no_data = t.bytes == PerDir::new(0, 0);
                if t.syns > 0 && t.synacks == 0 && no_data {
                    if t.rst[Direction::ServerToClient] {
                        self.port_closed.add(e.flow, t.first_seen);
                    } else {
                        self.no_answer.add(e.flow, t.first_seen);
                        self.syn_retransmissions += u64::from(t.syns - 1);
                    }
                }
                if t.first_payload[Direction::ClientToServer] == Some(PayloadKind::Tls) {
                    self.tls.connection(e.flow, t.first_seen, e.tls);
                }
                if t.bytes_cut != PerDir::new(0, 0) {
                    self.truncated.add(e.flow, t.first_seen);
                    for dir in [Direction::ClientToServer, Direction::ServerToClient] {
                        self.bytes_cut[dir] += t.bytes_cut[dir];
                    }
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
                    if e.flow.midstream {
                        self.midstream_messages += 1;
                        self.midstream_exact +=
                            u64::from(!e.partial && !e.undecodable && !e.incomplete);
                    }
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
                    // Without any key log, every TLS connection lacks keys: the tls finding says
                    // how to get them.
                    AnomalyKind::TlsNoKeys if !self.options.keylog_given => {}
                    AnomalyKind::TlsNoKeys
                    | AnomalyKind::TlsDecryptFailed
                    | AnomalyKind::TlsUnsupported
                    | AnomalyKind::TlsMalformed => self.tls.problem(e.kind, e.flow, e.ts),
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
                if e.flow.midstream {
                    self.midstream.add(e.flow, e.start);
                }
                let (c2s, s2c) = (c.frames[C2S], c.frames[S2C]);
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
        let reason = crate::context::GiveUp::ALL
            .iter()
            .map(|r| r.name())
            .find(|name| detail.split(':').next() == Some(*name))
            .unwrap_or("other");
        self.http_abandoned.entry(reason).or_default().add(flow, ts);
    }
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
mod tests;
