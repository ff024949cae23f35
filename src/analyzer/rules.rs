//! The flow table's rules, shared by the analyzer and the threaded reader's table, so
//! both place, sweep and evict connections alike.

use crate::event::Timestamp;
use crate::net::segment::TcpFlags;
use crate::net::tcp::FlowKey;

use super::FlowLimits;

/// How long a closed connection's entry lingers to absorb its last ACKs, in capture time.
pub(super) const CLOSED_LINGER_SECS: i64 = 10;
/// How often, in capture time, the flow table is swept.
pub(super) const SWEEP_INTERVAL_SECS: i64 = 5;

/// What the flow table decided about a segment's connection (see
/// [`Analyzer::placed_segment`](super::Analyzer::placed_segment)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// It continues the connection the table holds for its endpoints.
    Continue,
    /// It starts connection number `id`: a new entry, or a restart of a finished one.
    Start(u64),
}

/// Where the events of one step of a sweep, an eviction or the end of the capture belong:
/// one thread emits them in this order (the step, then the connection number).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    /// A finished connection leaves after lingering (reports only).
    Linger = 0,
    /// An idle connection is ended.
    TimeoutEnd = 1,
    TimeoutRemove = 2,
    /// A connection is evicted to make room.
    EvictEnd = 3,
    EvictRemove = 4,
    /// The packet itself.
    Packet = 5,
}

/// Told before each connection's part of a multi-connection step; one thread ignores it.
pub type Marker<'m> = &'m mut dyn FnMut(Step, u64);

/// What one sweep does, decided from the table: connections to drop after lingering, and
/// idle ones to end; each in connection order.
#[derive(Debug, Default)]
pub struct SweepPlan {
    pub linger: Vec<(u64, FlowKey)>,
    pub timed_out: Vec<(u64, FlowKey)>,
}

/// Whether a sweep can list a connection idle for `idle` seconds (see
/// [`Analyzer::sweep_plan`](super::Analyzer::sweep_plan)): a finished one lingers
/// [`CLOSED_LINGER_SECS`], an unfinished one times out. `may_be_finished`: false when it
/// surely is not.
pub fn sweep_may_list(idle: i64, may_be_finished: bool, limits: &FlowLimits) -> bool {
    let timeout = limits.idle_timeout_secs;
    if may_be_finished {
        idle >= timeout.min(CLOSED_LINGER_SECS)
    } else {
        idle >= timeout
    }
}

/// Whether a segment on endpoints the table holds starts a new connection there: a fresh SYN
/// on a finished connection does. `finished` is asked only for a fresh SYN.
pub fn starts_again(flags: TcpFlags, finished: impl FnOnce() -> bool) -> bool {
    flags.syn && !flags.ack && finished()
}

/// How far capture time may go back before the last sweep's time is taken for an absurd
/// stamp (one packet near +2^63 would otherwise stop every later sweep).
pub(super) const SWEEP_BACKWARDS_SECS: i64 = 3600;

/// True when a sweep is due at `now`: its interval has passed, or time went back more than
/// an hour (the sweep then runs at `now`, and later ones follow it).
pub fn sweep_due(last_sweep: i64, now: Timestamp) -> bool {
    now.secs >= last_sweep.saturating_add(SWEEP_INTERVAL_SECS)
        || now.secs < last_sweep.saturating_sub(SWEEP_BACKWARDS_SECS)
}

/// The connections evicted to make room in a full table, given as `(last_seen, id, key)`:
/// the longest-idle tenth, ties broken by connection number so the choice never depends on
/// the table's order; returned in connection order. Two passes over the table keep this
/// small: the cutoff from the ages alone, then the victims' keys.
pub fn eviction_victims(
    entries: impl Iterator<Item = (Timestamp, u64, FlowKey)> + Clone,
) -> Vec<(u64, FlowKey)> {
    let mut ages: Vec<(Timestamp, u64)> = entries.clone().map(|(ts, id, _)| (ts, id)).collect();
    if ages.is_empty() {
        return Vec::new();
    }
    let count = (ages.len() / 10).max(1);
    let (_, &mut cutoff, _) = ages.select_nth_unstable(count - 1);
    drop(ages);
    // (last_seen, id) is unique: exactly `count` entries are at or before the cutoff.
    let mut victims: Vec<(u64, FlowKey)> = entries
        .filter(|&(ts, id, _)| (ts, id) <= cutoff)
        .map(|(_, id, key)| (id, key))
        .collect();
    victims.sort_unstable();
    victims
}
