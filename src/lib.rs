//! wsnoop: a passive WebSocket traffic analyzer.
//!
//! Data flows one way through one folder per stage, one file per concern in each:
//!
//! ```text
//! capture    -> net/            -> session/         -> http/              -> ws/              -> event/   -> output/
//! libpcap       link, segment,     a TCP connection:   the HTTP/1.1         a WebSocket         what       JSON Lines,
//! files/live    defrag; tcp/:      HTTP until it       exchange, upgrade    session: frames,    happened   text,
//!               flow key,          upgrades, then      handshake, its       messages, close,               summary
//!               reassembly         WebSocket           rules, give-ups      resync
//! ```
//!
//! [`analyzer::Analyzer`] ties net, session, http and ws together: packets go in, events come
//! out through an [`event::EventSink`]; every handler of a connection's bytes gets a
//! [`context::Context`]. [`diagnose`] is an event sink that turns events into findings;
//! [`report`] one that keeps connections and messages, bounded, for `wsnoop report`'s page and
//! `--har`. [`run`] drives an analyzer from a [`capture::Source`] to an [`output::OutputSink`].
//! The values that stages and events share (a frame header, the handshake's heads) are in
//! [`wire`], which uses nothing else of the crate's.
//!
//! Words used throughout: a *TCP connection* (a flow, as the JSON names it: both directions of
//! one pair of endpoints, [`net::tcp::FlowKey`]) carries HTTP until it upgrades; from then on, or
//! from when it is picked up mid-stream, it is a *WebSocket session* ([`ws::WsSession`]), whose
//! frames make up *messages*. A session's *directions* are client to server and server to
//! client ([`event::Direction`], [`event::PerDir`]); a connection's *sides* A and B are its two
//! endpoints before it is known which one is the client.

#![deny(unsafe_code)]

pub mod analyzer;
pub mod anomaly;
pub mod capture;
pub mod context;
pub mod diagnose;
pub mod event;
// The one module that allows `unsafe`: C calls behind safe functions.
mod ffi;
pub mod http;
pub mod net;
pub mod output;
pub mod parallel;
pub mod report;
pub mod session;
pub mod tls;
pub mod wire;
pub mod ws;

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use analyzer::Analyzer;
use capture::{Batch, CaptureError, LiveStats, Next, Source};
use output::OutputSink;

/// The longest a live capture keeps reading after a stop request.
const DRAIN_LIMIT: Duration = Duration::from_millis(500);

/// How often a live run looks for secrets appended to its key logs: a browser writes them
/// right after its handshake, while its first records are on their way.
const KEYLOG_REFRESH: Duration = Duration::from_millis(50);

/// Why a run stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunEnd {
    /// The capture file ended.
    EndOfInput,
    /// `-c` frames were printed.
    FrameLimit,
    /// `--duration` elapsed.
    Duration,
    /// SIGINT or SIGTERM.
    Interrupted,
    /// The reader of our output went away (`wsnoop ... | head`).
    OutputClosed,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("writing output: {0}")]
    Output(std::io::Error),
    #[error("starting threads: {0}")]
    Threads(std::io::Error),
}

/// Limits and hooks for [`run`].
pub struct RunControl<'a> {
    /// Set from a signal handler to stop the run cleanly.
    pub stop: &'a AtomicBool,
    pub duration: Option<Duration>,
    /// Called with libpcap's counters when the kernel drops packets (live capture only), at
    /// most once per `drop_report_interval`.
    pub on_drops: &'a mut dyn FnMut(LiveStats),
    pub drop_report_interval: Duration,
    /// Where TLS secrets go that the capture itself holds (pcapng Decryption Secrets Blocks),
    /// and the key logs to follow as they grow while capturing live.
    pub keys: Option<&'a tls::KeyStore>,
    /// Each packet's events are written out at once, as when capturing live (`-l`, `-U`).
    pub unbuffered: bool,
}

fn output_end(sink: &mut dyn OutputSink) -> Result<Option<RunEnd>, RunError> {
    match sink.error() {
        None => Ok(None),
        Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Some(RunEnd::OutputClosed)),
        Some(e) => Err(RunError::Output(std::io::Error::new(
            e.kind(),
            e.to_string(),
        ))),
    }
}

/// One turn of [`read_loop`], for whoever drives the analysis.
pub(crate) enum Turn<'p> {
    /// Before a read that no packet's turn came before: a reason to end the run now (`-c`
    /// reached, output gone).
    Check,
    /// A packet; its turn also says whether to end after it, as `After` and `Check` would (two
    /// calls fewer per packet: 2.2% of `-q`'s instructions with one thread).
    Packet(capture::Packet<'p>),
    /// A packet some way ahead of the next, which the file's buffer already holds.
    Ahead(net::link::LinkType, &'p [u8]),
    /// Live and nothing captured, or a pipe used up for now: what waits to be written should
    /// go out.
    Idle,
    /// After each read (a packet, or nothing): a reason to end (output failed).
    After,
}

/// The one run loop, for one thread and for `--threads`: reads `source` until its end, a
/// stop request (live, after draining what the kernel captured), `--duration` or a reason
/// `turn` gives; reports the kernel's drops while capturing. A capture error comes back as
/// [`RunError::Capture`], after everything read before it was handed to `turn`.
pub(crate) fn read_loop(
    source: &mut Source,
    control: &mut RunControl<'_>,
    look_ahead: &Cell<bool>,
    turn: &mut dyn FnMut(Turn<'_>) -> Result<Option<RunEnd>, RunError>,
) -> Result<RunEnd, RunError> {
    let started = Instant::now();
    let live = source.is_live();
    // From a pipe (`tcpdump -U -w - | wsnoop -r -`) events are written as they happen too,
    // each time the reader has used up what arrived.
    let stream = source.is_stream();
    let mut last_drop_check = Instant::now();
    let mut drops_reported = 0u32;
    // Live, a stop request first drains what the kernel already captured, so Ctrl-C loses
    // nothing that the kernel captured before it: until the capture is quiet once the kernel
    // has handed over every block it had started, or DRAIN_LIMIT after the request.
    let mut stopped_at: Option<Instant> = None;
    let mut keys_refreshed = Instant::now();
    let mut reads = 0u32;
    // The last turn was a packet's, which said whether to end.
    let mut checked = false;
    loop {
        if let Some(keys) = control.keys {
            // Secrets the file held before the packet read last: in place before the
            // packets after it, which are the ones that can need them.
            let secrets = source.take_secrets();
            if !secrets.is_empty() {
                keys.add(&secrets);
            }
            reads = reads.wrapping_add(1);
            if live && reads.is_multiple_of(256) && keys_refreshed.elapsed() >= KEYLOG_REFRESH {
                keys_refreshed = Instant::now();
                keys.refresh();
            }
        }
        if control.stop.load(Ordering::Relaxed) {
            if !live {
                return Ok(RunEnd::Interrupted);
            }
            if stopped_at.get_or_insert_with(Instant::now).elapsed() >= DRAIN_LIMIT {
                return Ok(RunEnd::Interrupted);
            }
        }
        if !std::mem::take(&mut checked)
            && let Some(end) = turn(Turn::Check)?
        {
            return Ok(end);
        }
        if let Some(d) = control.duration
            && started.elapsed() >= d
        {
            return Ok(RunEnd::Duration);
        }
        let next = if live {
            // Straight from the kernel's ring, a batch at a time; each packet has the turns a
            // packet read alone would have.
            let mut ended = None;
            let batch = source.next_live_batch(&mut |packet| {
                checked = true;
                match turn(Turn::Packet(packet)) {
                    Ok(None) => true,
                    end => {
                        ended = Some(end);
                        false
                    }
                }
            });
            match ended {
                Some(Ok(Some(end))) => return Ok(end),
                Some(Err(e)) => return Err(e),
                _ => {}
            }
            match batch {
                Ok(Batch::Read) => None,
                Ok(Batch::Idle) => Some(Next::Idle),
                Ok(Batch::End) => Some(Next::End),
                Err(_) if control.stop.load(Ordering::Relaxed) => return Ok(RunEnd::Interrupted),
                Err(e) => return Err(e.into()),
            }
        } else {
            // Only while `turn` wants them: they cost instructions (7.7% at 500 connections).
            if look_ahead.get()
                && let Some((link, data)) = source.buffered_ahead()
            {
                turn(Turn::Ahead(link, data))?;
            }
            match source.next_packet() {
                Ok(next) => Some(next),
                // A signal interrupts a blocking read; that is a stop, not a failure.
                Err(_) if control.stop.load(Ordering::Relaxed) => {
                    return Ok(RunEnd::Interrupted);
                }
                Err(e) => return Err(e.into()),
            }
        };
        // A live batch had each packet's turns already.
        if let Some(next) = next {
            match next {
                Next::End => return Ok(RunEnd::EndOfInput),
                Next::Idle => {
                    if let Some(keys) = control.keys
                        && keys_refreshed.elapsed() >= KEYLOG_REFRESH
                    {
                        keys_refreshed = Instant::now();
                        keys.refresh();
                    }
                    if stopped_at.is_some_and(|at| at.elapsed() >= capture::LIVE_DELIVERY_LIMIT) {
                        return Ok(RunEnd::Interrupted);
                    }
                    turn(Turn::Idle)?;
                    source.wait_for_packets();
                }
                Next::Packet(packet) => {
                    if let Some(end) = turn(Turn::Packet(packet))? {
                        return Ok(end);
                    }
                    checked = true;
                    if !(stream && source.input_waits()) {
                        continue;
                    }
                    turn(Turn::Idle)?;
                }
            }
            if let Some(end) = turn(Turn::After)? {
                return Ok(end);
            }
        }
        if live && last_drop_check.elapsed() >= control.drop_report_interval {
            last_drop_check = Instant::now();
            if let Some(stats) = source.live_stats()
                && stats.dropped > drops_reported
            {
                drops_reported = stats.dropped;
                (control.on_drops)(stats);
            }
        }
    }
}

/// Reads `source` to its end (or until a limit or a stop request), feeding `analyzer` and
/// writing its events to `sink`. Live output is flushed as events happen.
pub fn run(
    source: &mut Source,
    analyzer: &mut Analyzer,
    sink: &mut dyn OutputSink,
    mut control: RunControl<'_>,
) -> Result<RunEnd, RunError> {
    let live = source.is_live() || control.unbuffered;
    analyzer.read_again_from(source.replay_file());
    let mut unflushed = false;
    let mut packets_read = 0u64;
    // After a packet or an idle turn: the output failed, or what waits goes out now.
    let after = |sink: &mut dyn OutputSink, unflushed: &mut bool| {
        if let Some(end) = output_end(sink)? {
            return Ok(Some(end));
        }
        if std::mem::take(unflushed) && sink.flush().is_err() {
            output_end(sink)?;
            return Ok(Some(RunEnd::OutputClosed));
        }
        Ok(None)
    };
    let look_ahead = Cell::new(false);
    let read = read_loop(source, &mut control, &look_ahead, &mut |turn| {
        match turn {
            Turn::Check => Ok(analyzer.is_done().then_some(RunEnd::FrameLimit)),
            Turn::Packet(packet) => {
                packets_read += 1;
                sink.at_packet(Some(packets_read));
                analyzer.packet_at(packet.link, packet.ts, packet.data, packet.at, &mut *sink);
                look_ahead.set(analyzer.wants_look_ahead());
                // Live, each event is written as it happens: a flush of an empty buffer costs
                // no system call.
                unflushed = live;
                Ok(after(sink, &mut unflushed)?
                    .or_else(|| analyzer.is_done().then_some(RunEnd::FrameLimit)))
            }
            Turn::Ahead(link, data) => {
                analyzer.look_ahead(net::segment::endpoints_hint(link, data));
                Ok(None)
            }
            Turn::Idle => {
                unflushed = true;
                Ok(None)
            }
            Turn::After => after(sink, &mut unflushed),
        }
    });
    let end = match read {
        Ok(end) => end,
        Err(RunError::Capture(e)) => {
            // A damaged file still yields everything before the damage.
            sink.at_packet(None);
            analyzer.finish(&mut *sink);
            let _ = sink.flush();
            return Err(e.into());
        }
        Err(e) => return Err(e),
    };
    // After -c, nothing more is printed; after the reader left, nothing can be.
    if !matches!(end, RunEnd::OutputClosed | RunEnd::FrameLimit) {
        sink.at_packet(None);
        analyzer.finish(&mut *sink);
    }
    let flushed = if end == RunEnd::OutputClosed {
        sink.flush()
    } else {
        sink.finish()
    };
    // A -w file that cannot be written is the run's failure, not a silent loss.
    source.flush_savefile()?;
    match (end, flushed) {
        (RunEnd::OutputClosed, _) => Ok(end),
        (_, Err(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(RunEnd::OutputClosed),
        (_, Err(e)) => Err(RunError::Output(e)),
        (_, Ok(())) => Ok(end),
    }
}
