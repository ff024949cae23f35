//! What every handler of a connection's bytes is given besides its own state: the event sink,
//! the options that shape events and the run's counters, among them why the HTTP stage gave up
//! on connections.

mod give_up;

pub use give_up::{GiveUp, GiveUps};

use crate::anomaly::{AnomalyKind, Cause};
use crate::event::{
    AnomalyEvent, Direction, Event, EventSink, FlowMeta, PacketCounts, PerDir, Timestamp,
};
use crate::wire::tls::TlsInfo;

/// Options that shape events.
#[derive(Clone, Copy, Debug)]
pub struct WsOptions {
    /// Payload bytes kept per frame or message event.
    pub max_payload: usize,
    /// Stop emitting frame events after this many (`-c`).
    pub max_frames: Option<u64>,
    /// A message larger than this, after decompression, is cut and reported.
    pub max_message: u64,
    pub show_frames: bool,
    pub show_messages: bool,
}

impl Default for WsOptions {
    fn default() -> Self {
        WsOptions {
            max_payload: 4096,
            max_frames: None,
            max_message: 16 << 20,
            show_frames: true,
            show_messages: true,
        }
    }
}

/// Counters the analyzer reports at the end of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WsStats {
    pub handshakes: u64,
    pub upgrades: u64,
    pub frames: u64,
    pub frames_emitted: u64,
    pub messages: u64,
    pub anomalies: u64,
    /// Connections the HTTP layer gave up on, and why.
    pub http_given_up: GiveUps,
    /// Connections without a captured handshake that were probed for frames and given up:
    /// no chain of frames within the probe's limit, or bytes lost before one was found.
    pub probes_given_up: u64,
    /// Connections followed as TLS (there were keys to try), and those of them of which at
    /// least one record decrypted.
    pub tls_connections: u64,
    pub tls_decrypted: u64,
}

/// Everything the direction's handlers need besides their own state.
pub struct Context<'a> {
    pub ts: Timestamp,
    pub flow: &'a FlowMeta,
    pub sink: &'a mut dyn EventSink,
    pub options: &'a WsOptions,
    pub stats: &'a mut WsStats,
    /// Why the bytes being handled are what they are: `Traffic` for captured bytes; for
    /// missing ones, whether the capture lost them or its snapshot length cut them. What is
    /// reported while handling them is a consequence of that.
    pub cause: Cause,
    /// Payload bytes the snapshot length cut off each direction's packets, for the
    /// connection's summary: set when the session ends, zeros before.
    pub bytes_cut: PerDir<u64>,
    /// The connection's packets each way, for its summary: set when the session ends.
    pub traffic: PacketCounts,
    /// What the TLS handshake negotiated, when the connection's bytes were decrypted.
    pub tls: Option<&'a TlsInfo>,
}

impl<'a> Context<'a> {
    /// A context for captured bytes (cause `Traffic`, nothing cut yet).
    pub fn new(
        ts: Timestamp,
        flow: &'a FlowMeta,
        sink: &'a mut dyn EventSink,
        options: &'a WsOptions,
        stats: &'a mut WsStats,
    ) -> Self {
        Context {
            ts,
            flow,
            sink,
            options,
            stats,
            cause: Cause::Traffic,
            bytes_cut: PerDir::new(0, 0),
            traffic: PacketCounts::default(),
            tls: None,
        }
    }

    /// The same context, for a connection now named by `flow` (picked up mid-stream).
    pub fn with_flow<'b>(&'b mut self, flow: &'b FlowMeta) -> Context<'b> {
        Context {
            ts: self.ts,
            flow,
            sink: &mut *self.sink,
            options: self.options,
            stats: &mut *self.stats,
            cause: self.cause,
            bytes_cut: self.bytes_cut,
            traffic: self.traffic,
            tls: self.tls,
        }
    }
}

impl Context<'_> {
    /// Reports an anomaly of the bytes being handled ([`Context::cause`]).
    pub fn anomaly(&mut self, dir: Option<Direction>, kind: AnomalyKind, detail: &str) {
        self.anomaly_caused(dir, kind, self.cause, detail);
    }

    pub fn anomaly_caused(
        &mut self,
        dir: Option<Direction>,
        kind: AnomalyKind,
        cause: Cause,
        detail: &str,
    ) {
        self.stats.anomalies += 1;
        self.sink.event(&Event::Anomaly(AnomalyEvent {
            ts: self.ts,
            flow: self.flow,
            dir,
            kind,
            cause,
            detail,
        }));
    }
}

/// The counts of separate decoders of one run made one. Every field is named, so that a new one
/// does not compile until it is added here.
impl std::ops::AddAssign<&WsStats> for WsStats {
    fn add_assign(&mut self, b: &WsStats) {
        let WsStats {
            handshakes,
            upgrades,
            frames,
            frames_emitted,
            messages,
            anomalies,
            http_given_up,
            probes_given_up,
            tls_connections,
            tls_decrypted,
        } = self;
        *handshakes += b.handshakes;
        *upgrades += b.upgrades;
        *frames += b.frames;
        *frames_emitted += b.frames_emitted;
        *messages += b.messages;
        *anomalies += b.anomalies;
        *http_given_up += &b.http_given_up;
        *probes_given_up += b.probes_given_up;
        *tls_connections += b.tls_connections;
        *tls_decrypted += b.tls_decrypted;
    }
}
