//! The pipeline's middle: packets in, events out. Decodes each packet, finds its connection,
//! reassembles the direction's bytes and hands them to the connection's session.

use std::collections::HashMap;

use crate::decode::{self, LinkType, Skip, TcpSegment};
use crate::event::{Direction, EndReason, EventSink, FlowMeta, Timestamp};
use crate::handshake;
use crate::session::Session;
use crate::tcp::{Chunk, FlowKey, HalfStream, ReassemblyLimits};
use crate::ws::{Context, Scratch, WsOptions, WsStats};

/// How long a closed connection's entry lingers to absorb its last ACKs, in capture time.
const CLOSED_LINGER_SECS: i64 = 10;
/// How often, in capture time, the flow table is swept.
const SWEEP_INTERVAL_SECS: i64 = 5;

#[derive(Clone, Copy, Debug, Default)]
pub struct AnalyzerOptions {
    pub ws: WsOptions,
    pub reassembly: ReassemblyLimits,
}

/// Counts reported at the end of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub packets: u64,
    pub tcp_packets: u64,
    pub skipped_not_tcp: u64,
    pub skipped_malformed: u64,
    pub skipped_fragments: u64,
    pub connections: u64,
    pub ws: WsStats,
}

/// The application half of a connection: who is the client, and the session.
#[derive(Debug)]
struct App {
    id: u64,
    key: FlowKey,
    /// Known from the SYN, or from which side speaks HTTP first.
    client_is_a: Option<bool>,
    flow: Option<FlowMeta>,
    /// FIN delivered, per direction of side A -> B and B -> A.
    fins: [bool; 2],
    session: Session,
}

#[derive(Debug)]
struct Connection {
    /// Index 0 carries bytes from side A to side B.
    halves: [HalfStream; 2],
    app: App,
    closed: bool,
    last_seen: Timestamp,
}

pub struct Analyzer {
    link: LinkType,
    options: AnalyzerOptions,
    flows: HashMap<FlowKey, Connection, foldhash::fast::RandomState>,
    next_id: u64,
    scratch: Scratch,
    stats: Stats,
    last_sweep: i64,
}

/// What a chunk handler needs from the analyzer, borrowed apart from the flow table.
struct Env<'a> {
    ts: Timestamp,
    sink: &'a mut dyn EventSink,
    options: &'a WsOptions,
    stats: &'a mut WsStats,
    scratch: &'a mut Scratch,
}

impl Analyzer {
    pub fn new(link: LinkType, options: AnalyzerOptions) -> Self {
        Analyzer {
            link,
            options,
            flows: HashMap::default(),
            next_id: 0,
            scratch: Scratch::default(),
            stats: Stats::default(),
            last_sweep: i64::MIN,
        }
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// True once `-c` frames have been emitted: reading further cannot change the output.
    pub fn is_done(&self) -> bool {
        self.options
            .ws
            .max_frames
            .is_some_and(|max| self.stats.ws.frames_emitted >= max)
    }

    pub fn packet(&mut self, ts: Timestamp, data: &[u8], sink: &mut dyn EventSink) {
        self.stats.packets += 1;
        match decode::decode(self.link, data) {
            Ok(segment) => {
                self.stats.tcp_packets += 1;
                self.segment(ts, &segment, sink);
            }
            Err(Skip::NotTcp) => self.stats.skipped_not_tcp += 1,
            Err(Skip::Malformed) => self.stats.skipped_malformed += 1,
            Err(Skip::Fragment) => self.stats.skipped_fragments += 1,
        }
        if ts.secs >= self.last_sweep.saturating_add(SWEEP_INTERVAL_SECS) {
            self.sweep(ts);
        }
    }

    fn segment(&mut self, ts: Timestamp, seg: &TcpSegment<'_>, sink: &mut dyn EventSink) {
        let (key, from_a) = FlowKey::new(seg.src, seg.dst);
        let new_syn = seg.flags.syn && !seg.flags.ack;
        let reuse = match self.flows.get(&key) {
            None => true,
            // A fresh SYN on a finished connection's endpoints starts a new connection.
            Some(conn) => {
                new_syn && (conn.closed || conn.halves.iter().all(HalfStream::is_finished))
            }
        };
        if reuse {
            let id = self.next_id;
            self.next_id += 1;
            self.stats.connections += 1;
            let conn = Connection {
                halves: [HalfStream::default(), HalfStream::default()],
                app: App {
                    id,
                    key,
                    client_is_a: None,
                    flow: None,
                    fins: [false; 2],
                    session: Session::new(),
                },
                closed: false,
                last_seen: ts,
            };
            self.flows.insert(key, conn);
        }
        let Some(conn) = self.flows.get_mut(&key) else {
            return;
        };
        conn.last_seen = ts;
        if seg.flags.syn && conn.app.client_is_a.is_none() {
            conn.app
                .set_client(if seg.flags.ack { !from_a } else { from_a });
        }
        if conn.closed {
            return;
        }
        let mut env = Env {
            ts,
            sink,
            options: &self.options.ws,
            stats: &mut self.stats.ws,
            scratch: &mut self.scratch,
        };
        let half = &mut conn.halves[usize::from(!from_a)];
        let app = &mut conn.app;
        if !app.session.is_ignored() {
            half.push(
                seg.seq,
                seg.flags,
                seg.payload,
                self.options.reassembly,
                &mut |chunk| app.chunk(from_a, chunk, &mut env),
            );
        }
        if seg.flags.rst {
            conn.close(EndReason::Rst, &mut env);
        }
    }

    /// Drops connections long closed, so the table stays as small as the live traffic.
    fn sweep(&mut self, now: Timestamp) {
        self.last_sweep = now.secs;
        self.flows.retain(|_, conn| {
            !(conn.closed || conn.halves.iter().all(HalfStream::is_finished))
                || now.secs - conn.last_seen.secs < CLOSED_LINGER_SECS
        });
    }

    /// The capture ended: deliver what every connection still holds, in connection order.
    pub fn finish(&mut self, sink: &mut dyn EventSink) {
        let mut open: Vec<(u64, FlowKey)> = self
            .flows
            .iter()
            .filter(|(_, c)| !c.closed)
            .map(|(k, c)| (c.app.id, *k))
            .collect();
        open.sort_unstable();
        for (_, key) in open {
            let Some(conn) = self.flows.get_mut(&key) else {
                continue;
            };
            let mut env = Env {
                ts: conn.last_seen,
                sink,
                options: &self.options.ws,
                stats: &mut self.stats.ws,
                scratch: &mut self.scratch,
            };
            conn.close(EndReason::CaptureEnd, &mut env);
        }
    }
}

impl Connection {
    fn close(&mut self, how: EndReason, env: &mut Env<'_>) {
        self.closed = true;
        let app = &mut self.app;
        for (i, half) in self.halves.iter_mut().enumerate() {
            half.flush(&mut |chunk| app.chunk(i == 0, chunk, env));
        }
        app.end(how, env);
    }
}

fn direction(from_a: bool, client_is_a: bool) -> Direction {
    if from_a == client_is_a {
        Direction::ClientToServer
    } else {
        Direction::ServerToClient
    }
}

impl App {
    fn set_client(&mut self, client_is_a: bool) {
        self.client_is_a = Some(client_is_a);
        let (a, b) = (self.key.side_a(), self.key.side_b());
        let (client, server) = if client_is_a { (a, b) } else { (b, a) };
        self.flow = Some(FlowMeta {
            id: self.id,
            client,
            server,
        });
    }

    fn chunk(&mut self, from_a: bool, chunk: Chunk<'_>, env: &mut Env<'_>) {
        match chunk {
            Chunk::Data(bytes) => {
                if self.client_is_a.is_none() {
                    // No SYN seen: the side that speaks HTTP first is the client.
                    if handshake::looks_like_request_start(bytes) {
                        self.set_client(from_a);
                    } else if handshake::looks_like_response_start(bytes) {
                        self.set_client(!from_a);
                    } else {
                        self.session.ignore();
                        return;
                    }
                }
                let (Some(client_is_a), Some(flow)) = (self.client_is_a, self.flow.as_ref()) else {
                    return;
                };
                let dir = direction(from_a, client_is_a);
                let mut ctx = Context {
                    ts: env.ts,
                    flow,
                    sink: &mut *env.sink,
                    options: env.options,
                    stats: &mut *env.stats,
                };
                self.session.data(dir, bytes, env.scratch, &mut ctx);
            }
            Chunk::Gap(lost) => {
                let (Some(client_is_a), Some(flow)) = (self.client_is_a, self.flow.as_ref()) else {
                    self.session.ignore();
                    return;
                };
                let mut ctx = Context {
                    ts: env.ts,
                    flow,
                    sink: &mut *env.sink,
                    options: env.options,
                    stats: &mut *env.stats,
                };
                self.session
                    .gap(direction(from_a, client_is_a), lost, &mut ctx);
            }
            Chunk::Fin => {
                self.fins[usize::from(!from_a)] = true;
                if self.fins == [true, true] {
                    self.end(EndReason::Fin, env);
                }
            }
        }
    }

    /// Ends the session once; later calls find it ignored and do nothing.
    fn end(&mut self, how: EndReason, env: &mut Env<'_>) {
        if self.session.is_ignored() {
            return;
        }
        match self.flow.as_ref() {
            Some(flow) => {
                let mut ctx = Context {
                    ts: env.ts,
                    flow,
                    sink: &mut *env.sink,
                    options: env.options,
                    stats: &mut *env.stats,
                };
                self.session.end(how, &mut ctx);
            }
            None => self.session.ignore(),
        }
    }
}
