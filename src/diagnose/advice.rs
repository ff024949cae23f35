//! From what was watched to findings: what each kind of trouble most likely means and what
//! to check.

use super::words::{close_code_meaning, plural, status_meaning};
use super::{Bucket, Diagnoser, EXAMPLES, Finding, Severity};
use crate::analyzer::Stats;
use crate::anomaly::Cause;
use crate::event::Direction;

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
                    self.bytes_cut[Direction::ClientToServer],
                    self.bytes_cut[Direction::ServerToClient],
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
        if self.midstream.count > 0 {
            let b = &self.midstream;
            push(
                "midstream",
                Severity::Info,
                b,
                format!(
                    "{} without a captured handshake (already open when the capture started); \
{} of their {} came out exact, the others partial or undecodable; {}.",
                    plural(b.count, "session", "sessions"),
                    self.midstream_exact,
                    plural(self.midstream_messages, "message", "messages"),
                    b.example()
                ),
                "Their frames were found without the handshake. With permessage-deflate and \
context takeover, messages are inflated without the history the capture missed: bytes that \
refer back into it are unknown (`\"partial\": true`). Start the capture before the clients \
connect to see every message exactly.",
            );
        }
        out.extend(self.tls_findings());
        let websocket_seen = self.handshakes > 0 || self.sessions > 0;
        let wrong_before_ws = out.iter().any(|f| f.severity == Severity::Error);
        // TLS on the port may well be WebSocket (wss): the tls finding already says so.
        if !websocket_seen
            && !wrong_before_ws
            && self.tls.encrypted.count + self.tls.decrypted.count == 0
        {
            let mut ports: Vec<(u64, u16)> = self
                .connections_by_port
                .iter()
                .map(|(p, n)| (*n, *p))
                .collect();
            ports.sort_unstable_by(|a, b| b.cmp(a));
            let seen = if stats.packets == 0 && stats.skipped_link_type > 0 {
                format!(
                    "{} packets, all on interfaces of a link type wsnoop does not read",
                    stats.skipped_link_type
                )
            } else if stats.packets == 0 {
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
                let probed = match stats.ws.probes_given_up {
                    0 => String::new(),
                    n => format!(
                        " ({} without a captured handshake looked for WebSocket frames in vain)",
                        plural(n, "connection", "connections")
                    ),
                };
                format!(
                    "{} packets, {} on {}, none of them WebSocket{probed}",
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
    if stats.skipped_link_type > 0 {
        parts.push(format!(
            "{} of a link type wsnoop does not read",
            stats.skipped_link_type
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
