//! One connection of the flow table: its two halves, its TCP facts for `diagnose`, and its
//! application half (who is the client, the session) that the halves' bytes go to.

use crate::anomaly::{AnomalyKind, Cause};
use crate::context::Context;
use crate::event::{
    ConnectionEvent, Direction, EndReason, Event, EventSink, FlowMeta, PacketCounts, PayloadKind,
    PerDir, TcpSummary, Timestamp,
};
use crate::net::segment::TcpSegment;
use crate::net::tcp::{Chunk, FlowKey, HalfStream};
use crate::session::{Session, SessionStart};
use crate::wire::http::{looks_like_request_start, looks_like_response_start};
use crate::wire::tls::TlsInfo;

use std::mem::size_of;

use super::layer::TlsLayer;

use super::{AnalyzerOptions, Env};

/// The application half of a connection: who is the client, and the session.
#[derive(Debug)]
pub(super) struct App {
    pub(super) id: u64,
    pub(super) key: FlowKey,
    /// Known from the SYN, or from which side speaks HTTP first.
    pub(super) client_is_a: Option<bool>,
    /// The handshake was not captured: the connection was recognised from its frames.
    pub(super) midstream: bool,
    pub(super) first_seen: Timestamp,
    /// The session decoded WebSocket at some point.
    pub(super) was_websocket: bool,
    /// What the snapshot length cut, once it cuts anything: most captures cut nothing, so
    /// the table's entries do not carry it.
    pub(super) cuts: Option<Box<Cuts>>,
    /// Packets and their captured bytes from side A and from side B.
    pub(super) sides: [(u64, u64); 2],
    /// The TLS between TCP and the session, when the connection is TLS and there are keys to
    /// try: the session then sees what it decrypts to.
    pub(super) tls: Option<Box<TlsLayer>>,
    pub(super) session: Session,
}

/// What the snapshot length cut off one connection's packets.
#[derive(Debug, Default)]
pub(super) struct Cuts {
    /// Payload bytes, per direction of side A -> B and B -> A.
    pub(super) bytes: [u64; 2],
    /// The captured length of the last packet cut.
    pub(super) snaplen: u32,
    /// Each direction's first cut was reported; later ones are only counted.
    reported: [bool; 2],
}

impl App {
    #[inline]
    fn memory(&self) -> usize {
        self.session.memory()
            + self
                .tls
                .as_deref()
                .map_or(0, |t| size_of::<TlsLayer>() + t.stream.memory())
            + self.cuts.as_ref().map_or(0, |_| size_of::<Cuts>())
    }

    fn bytes_cut(&self) -> [u64; 2] {
        self.cuts.as_ref().map_or([0; 2], |c| c.bytes)
    }
}

/// TCP facts per side (index 0: side A), for connection events.
#[derive(Debug, Default)]
pub(super) struct SideFacts {
    syns: [u32; 2],
    synacks: [u32; 2],
    rst: [bool; 2],
    fin: [bool; 2],
    bytes: [u64; 2],
    first_payload: [Option<PayloadKind>; 2],
}

/// What one connection gave up to the memory budget at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Shed {
    pub(super) bytes: u64,
    pub(super) inflaters: u64,
}

impl Shed {
    pub(super) fn any(&self) -> bool {
        self.bytes > 0 || self.inflaters > 0
    }
}

#[derive(Debug)]
pub(super) struct Connection {
    /// Index 0 carries bytes from side A to side B.
    pub(super) halves: [HalfStream; 2],
    pub(super) app: App,
    pub(super) last_seen: Timestamp,
    /// Kept only for `wsnoop diagnose`, which reports every connection.
    pub(super) facts: Option<Box<SideFacts>>,
    /// Why the connection was closed (RST, eviction, timeout, the capture's end), once it is.
    pub(super) end: Option<EndReason>,
    /// What the memory budget was last charged for what it holds ([`Connection::held`]).
    pub(super) charged: usize,
    /// It gave something up to the memory budget (counted once).
    pub(super) shed: bool,
}

impl Connection {
    /// Closed: nothing more of it is delivered, its session has ended.
    pub(super) fn closed(&self) -> bool {
        self.end.is_some()
    }

    pub(super) fn is_finished(&self) -> bool {
        self.closed() || self.halves.iter().all(HalfStream::is_finished)
    }

    pub(super) fn note(&mut self, seg: &TcpSegment<'_>, from_a: bool) {
        let side = usize::from(!from_a);
        let Some(f) = self.facts.as_deref_mut() else {
            return;
        };
        match (seg.flags.syn, seg.flags.ack) {
            (true, false) => f.syns[side] += 1,
            (true, true) => f.synacks[side] += 1,
            _ => {}
        }
        f.rst[side] |= seg.flags.rst;
        f.fin[side] |= seg.flags.fin;
        f.bytes[side] += seg.payload.len() as u64 + seg.cut.map_or(0, |c| u64::from(c.bytes));
        if f.first_payload[side].is_none() && !seg.payload.is_empty() {
            f.first_payload[side] = Some(PayloadKind::of(seg.payload));
        }
    }

    /// Reports the connection as it leaves the table, oriented client first.
    pub(super) fn report(&self, sink: &mut dyn EventSink) {
        let key = self.app.key;
        let (client_is_a, guessed) = match self.app.client_is_a {
            Some(c) => (c, false),
            // Neither a SYN nor HTTP told: the ephemeral (higher) port is likely the client's.
            None => (key.side_a().port() > key.side_b().port(), true),
        };
        let flow = self.app.flow().unwrap_or_else(|| {
            let (a, b) = (key.side_a(), key.side_b());
            let (client, server) = if client_is_a { (a, b) } else { (b, a) };
            FlowMeta {
                id: self.app.id,
                client,
                server,
                midstream: false,
            }
        });
        let default = SideFacts::default();
        let f = self.facts.as_deref().unwrap_or(&default);
        let (c, s) = if client_is_a { (0, 1) } else { (1, 0) };
        let tcp = TcpSummary {
            syns: f.syns[c],
            synacks: f.synacks[s],
            rst: PerDir::new(f.rst[c], f.rst[s]),
            fin: PerDir::new(f.fin[c], f.fin[s]),
            bytes: PerDir::new(f.bytes[c], f.bytes[s]),
            bytes_cut: {
                let cut = self.app.bytes_cut();
                PerDir::new(cut[c], cut[s])
            },
            first_payload: PerDir::new(f.first_payload[c], f.first_payload[s]),
            first_seen: self.app.first_seen,
            last_seen: self.last_seen,
            websocket: self.app.was_websocket,
            orientation_guessed: guessed,
        };
        let end = self.end.unwrap_or(if self.is_finished() {
            EndReason::Fin
        } else {
            EndReason::CaptureEnd
        });
        sink.event(&Event::Connection(ConnectionEvent {
            flow: &flow,
            tcp: &tcp,
            end,
            tls: self.app.tls_info(),
        }));
    }
}

impl Connection {
    /// What the connection holds beyond its fixed cost, for the memory budget: both halves'
    /// held segments and rings, the TLS layer, the session and what it keeps.
    #[inline]
    pub(super) fn held(&self) -> usize {
        self.halves[0].memory()
            + self.halves[1].memory()
            + self.app.memory()
            + self.facts.as_ref().map_or(0, |_| size_of::<SideFacts>())
    }

    /// Gives up what it holds to stay within the memory budget, each loss reported: segments
    /// held out of order (declared lost with the hole before them), a probe's bytes, bytes
    /// held while looking for frames, inflaters' contexts, the kept handshake's URI; and the
    /// rings of delivered bytes kept to check retransmissions (not a loss of data).
    pub(super) fn shed(&mut self, env: &mut Env<'_>) -> Shed {
        let mut shed = Shed::default();
        let app = &mut self.app;
        let [a_to_b, b_to_a] = &mut self.halves;
        env.gap_cause = Cause::Memory;
        let b_finished = b_to_a.is_finished();
        shed.bytes += a_to_b.give_up_held(&mut |chunk| app.chunk(true, chunk, b_finished, env));
        let a_finished = a_to_b.is_finished();
        shed.bytes += b_to_a.give_up_held(&mut |chunk| app.chunk(false, chunk, a_finished, env));
        env.gap_cause = Cause::Gap;
        a_to_b.forget_delivered();
        b_to_a.forget_delivered();
        if app.session.is_probing() {
            shed.bytes += app.session.shed_probe();
            env.stats.probes_given_up += 1;
        } else if let Some(flow) = app.flow() {
            let mut ctx = env.context(&flow);
            ctx.tls = app.tls.as_deref().map(TlsLayer::info);
            let (bytes, inflaters) = app.session.shed(&mut ctx);
            shed.bytes += bytes;
            shed.inflaters += inflaters;
        }
        shed
    }

    pub(super) fn close(&mut self, how: EndReason, env: &mut Env<'_>) {
        self.end.get_or_insert(how);
        let app = &mut self.app;
        let [a_to_b, b_to_a] = &mut self.halves;
        let file = env.options.replay.clone();
        let file = file.as_deref();
        let b_finished = b_to_a.is_finished();
        a_to_b.flush(file, &mut |chunk| app.chunk(true, chunk, b_finished, env));
        let a_finished = a_to_b.is_finished();
        b_to_a.flush(file, &mut |chunk| app.chunk(false, chunk, a_finished, env));
        // Nothing more is delivered: no retransmission needs comparing (an idle connection
        // the sweep ends, one evicted or reset, gives its rings back).
        a_to_b.forget_delivered();
        b_to_a.forget_delivered();
        app.finish_tls(env);
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
    pub(super) fn set_client(&mut self, client_is_a: bool, midstream: bool) {
        self.client_is_a = Some(client_is_a);
        self.midstream = midstream;
    }

    /// The connection as events name it, once the client is known. Made on demand rather
    /// than stored: a flow table entry stays small.
    pub(super) fn flow(&self) -> Option<FlowMeta> {
        let client_is_a = self.client_is_a?;
        let (a, b) = (self.key.side_a(), self.key.side_b());
        let (client, server) = if client_is_a { (a, b) } else { (b, a) };
        Some(FlowMeta {
            id: self.id,
            client,
            server,
            midstream: self.midstream,
        })
    }

    /// Decides, from a connection's first bytes, who is the client and how to decode it.
    fn orient(&mut self, from_a: bool, bytes: &[u8], options: &AnalyzerOptions) {
        let ws_port =
            |addr: std::net::SocketAddr| options.midstream.ws_ports.contains(&addr.port());
        let (a, b) = (self.key.side_a(), self.key.side_b());
        if self.client_is_a.is_none() {
            if looks_like_request_start(bytes) {
                self.set_client(from_a, false);
            } else if looks_like_response_start(bytes) {
                self.set_client(!from_a, false);
            } else if ws_port(b) != ws_port(a) {
                self.set_client(ws_port(b), true);
                self.session = Session::start(SessionStart::WebSocket);
            } else if options.midstream.heuristics {
                self.session = Session::start(SessionStart::Probe);
            } else {
                self.session.ignore();
            }
        } else if let (Some(flow), true) = (self.flow(), self.session.is_fresh()) {
            // The handshake was seen to start (SYN) but the first bytes are not HTTP: only a
            // port the user named makes them WebSocket.
            let client_sent = from_a == self.client_is_a.unwrap_or(true);
            let speaks_http = if client_sent {
                looks_like_request_start(bytes)
            } else {
                looks_like_response_start(bytes)
            };
            if !speaks_http && ws_port(flow.server) {
                self.midstream = true;
                self.session = Session::start(SessionStart::WebSocket);
            }
        }
        if let Some(flow) = self.flow()
            && ws_port(flow.server)
        {
            self.session.expect_websocket();
        }
    }

    /// Bytes lost before the client is known: a probe cannot look across the hole.
    fn give_up_probe(&mut self, env: &mut Env<'_>) {
        env.stats.probes_given_up += u64::from(self.session.is_probing());
        self.session.ignore();
    }

    /// One chunk of the session's bytes from side A (`from_a`) or B: what TCP delivered, or
    /// what TLS decrypted it to (then `tls` says what TLS negotiated); `peer_finished`: the
    /// other half has delivered its FIN.
    pub(super) fn plain(
        &mut self,
        from_a: bool,
        chunk: Chunk<'_>,
        peer_finished: bool,
        tls: Option<&TlsInfo>,
        env: &mut Env<'_>,
    ) {
        match chunk {
            Chunk::Data(bytes, ts) => {
                // Bytes held out of order carry the time their segment was captured.
                env.ts = ts;
                if self.session.is_fresh() {
                    self.orient(from_a, bytes, env.options);
                }
                if self.session.is_ignored() {
                    return;
                }
                if self.client_is_a.is_none() {
                    // Orientation unknown: a probing session decides from both directions.
                    let Some(client_is_a) = self.session.probe(from_a, bytes) else {
                        env.stats.probes_given_up += u64::from(self.session.is_ignored());
                        return;
                    };
                    self.set_client(client_is_a, true);
                    let Some(flow) = self.flow() else {
                        return;
                    };
                    let (mut ctx, scratch) = env.context_and_scratch(&flow);
                    ctx.tls = tls;
                    self.session.replay_probe(client_is_a, scratch, &mut ctx);
                    self.was_websocket = true;
                    return;
                }
                let Some(flow) = self.flow() else {
                    return;
                };
                let dir = direction(from_a, self.client_is_a.unwrap_or(true));
                let (mut ctx, scratch) = env.context_and_scratch(&flow);
                ctx.tls = tls;
                self.session.data(dir, bytes, scratch, &mut ctx);
                self.was_websocket |= self.session.is_websocket();
                self.midstream |= self.session.picked_up();
            }
            Chunk::Gap(lost) => {
                let (Some(client_is_a), Some(flow)) = (self.client_is_a, self.flow()) else {
                    self.give_up_probe(env);
                    return;
                };
                let cause = env.gap_cause;
                let (mut ctx, scratch) = env.context_and_scratch(&flow);
                ctx.tls = tls;
                ctx.cause = cause;
                self.session
                    .gap(direction(from_a, client_is_a), lost, scratch, &mut ctx);
                self.midstream |= self.session.picked_up();
            }
            Chunk::Cut(cut) => {
                if self.session.is_ignored() {
                    return;
                }
                let (Some(client_is_a), Some(flow)) = (self.client_is_a, self.flow()) else {
                    self.give_up_probe(env);
                    return;
                };
                let dir = direction(from_a, client_is_a);
                let (mut ctx, scratch) = env.context_and_scratch(&flow);
                ctx.tls = tls;
                ctx.cause = Cause::Snaplen;
                self.report_cut(from_a, dir, cut, &mut ctx);
                self.session.gap(dir, cut, scratch, &mut ctx);
                self.midstream |= self.session.picked_up();
            }
            Chunk::Conflict(bytes) => {
                if let (Some(client_is_a), Some(flow)) = (self.client_is_a, self.flow()) {
                    let mut ctx = env.context(&flow);
                    ctx.tls = tls;
                    self.session
                        .conflict(direction(from_a, client_is_a), bytes, &mut ctx);
                }
            }
            Chunk::Fin => {
                if peer_finished {
                    self.end(EndReason::Fin, env);
                }
            }
        }
    }

    /// Says, once per direction, that the snapshot length cut `cut` bytes here: with a small
    /// snapshot length every packet is cut.
    pub(super) fn report_cut(
        &mut self,
        from_a: bool,
        dir: Direction,
        cut: u64,
        ctx: &mut Context<'_>,
    ) {
        let side = usize::from(!from_a);
        // Once per direction: with a small snapshot length every packet is cut.
        let cuts = self.cuts.get_or_insert_with(Box::default);
        if !cuts.reported[side] {
            cuts.reported[side] = true;
            let detail = format!(
                "the capture's snapshot length cut {} packets at {} bytes: {cut} bytes \
here were not captured (frames resume after them); later cuts of this direction are counted \
in the flow's bytes_cut_{}",
                dir.name(),
                cuts.snaplen,
                dir.name()
            );
            ctx.anomaly(Some(dir), AnomalyKind::TruncatedCapture, &detail);
        }
    }

    /// Ends the session; it reports only once, however often the connection is ended.
    pub(super) fn end(&mut self, how: EndReason, env: &mut Env<'_>) {
        match self.flow() {
            Some(flow) => {
                let mut ctx = env.context(&flow);
                ctx.tls = self.tls.as_deref().map(TlsLayer::info);
                let client = usize::from(!self.client_is_a.unwrap_or(true));
                let cut = self.bytes_cut();
                ctx.bytes_cut = PerDir::new(cut[client], cut[1 - client]);
                let (c, s) = (self.sides[client], self.sides[1 - client]);
                ctx.traffic = PacketCounts {
                    packets: PerDir::new(c.0, s.0),
                    bytes: PerDir::new(c.1, s.1),
                };
                self.session.end(how, self.first_seen, &mut ctx);
            }
            // Still probing when it ended: no chain of frames was found.
            None => self.give_up_probe(env),
        }
    }
}
