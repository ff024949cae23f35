//! What one connection carried, counted as its frames go by, for the connection's summary.

use super::{Direction, PerDir, Timestamp};

/// Outstanding pings remembered per connection, to time their pongs.
const PING_MEMORY: usize = 16;
/// Round-trip samples kept for the median.
const RTT_SAMPLES: usize = 1024;

/// What a connection carried, per direction.
#[derive(Debug, Default, Clone)]
pub struct FlowCounters {
    pub frames: PerDir<u64>,
    pub messages: PerDir<u64>,
    /// Frame payload bytes as declared on the wire.
    pub bytes: PerDir<u64>,
    pub pings: u64,
    pub pongs: u64,
    /// The code of each side's first close frame (None: no close frame, or one without code).
    pub close_codes: PerDir<Option<u16>>,
    pub close_sent: PerDir<bool>,
    /// The longest stretch, in seconds, without a data frame either way, counted from the
    /// upgrade (or the first frame seen) to the connection's end.
    pub longest_silence: f64,
    pub(crate) last_activity: Option<Timestamp>,
    pending_pings: std::collections::VecDeque<PendingPing>,
    rtts: Vec<f64>,
}

/// A ping waiting for its pong. The payload is kept as its length and a hash, so a ping
/// costs no allocation; a pong with another payload of the same length and hash could only
/// time one round trip wrongly.
#[derive(Debug, Clone, Copy)]
struct PendingPing {
    dir: Direction,
    len: usize,
    hash: u64,
    sent: Timestamp,
}

fn payload_hash(payload: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0x6a09_e667_f3bc_c908).hash_one(payload)
}

impl FlowCounters {
    /// The median seconds from a ping to the pong that echoed it.
    pub fn ping_rtt(&self) -> Option<f64> {
        if self.rtts.is_empty() {
            return None;
        }
        let mut sorted = self.rtts.clone();
        sorted.sort_by(f64::total_cmp);
        let mid = sorted.len() / 2;
        Some(if sorted.len() % 2 == 1 {
            sorted[mid]
        } else {
            (sorted[mid - 1] + sorted[mid]) / 2.0
        })
    }

    /// A data frame (or the upgrade) at `ts`: the silence before it ends.
    pub(crate) fn activity(&mut self, ts: Timestamp) {
        if let Some(last) = self.last_activity {
            self.longest_silence = self.longest_silence.max(ts.seconds_since(last));
        }
        self.last_activity = Some(ts);
    }

    /// The connection ended at `ts`: the silence since the last data frame counts too.
    pub fn end_at(&mut self, ts: Timestamp) {
        self.activity(ts);
    }

    pub(crate) fn ping(&mut self, dir: Direction, payload: &[u8], ts: Timestamp) {
        self.pings += 1;
        if self.pending_pings.len() == PING_MEMORY {
            self.pending_pings.pop_front();
        }
        self.pending_pings.push_back(PendingPing {
            dir,
            len: payload.len(),
            hash: payload_hash(payload),
            sent: ts,
        });
    }

    pub(crate) fn pong(&mut self, dir: Direction, payload: &[u8], ts: Timestamp) {
        self.pongs += 1;
        // RFC 6455 5.5.3: a pong echoes the ping's payload; it comes from the other side.
        let hash = payload_hash(payload);
        if let Some(i) = self
            .pending_pings
            .iter()
            .position(|p| p.dir != dir && p.len == payload.len() && p.hash == hash)
            && let Some(ping) = self.pending_pings.remove(i)
            && self.rtts.len() < RTT_SAMPLES
        {
            self.rtts.push(ts.seconds_since(ping.sent).max(0.0));
        }
    }
}
