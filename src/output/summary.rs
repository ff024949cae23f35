//! `--summary`: one row per connection, printed as a table when the run ends.
//!
//! Bounded whatever the capture: a row is a fixed set of numbers and the URI cut to
//! [`SUMMARY_URI`] bytes, and at most [`SUMMARY_ROWS`] rows are kept; the connections beyond
//! them are added into one line that says how many it stands for and what they carried.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::io::{self, Write};
use std::net::SocketAddr;

use super::escape::escaped;
use crate::event::{Direction, EndReason, FlowEvent};

use Direction::{ClientToServer as C2S, ServerToClient as S2C};

/// Rows kept for `--summary`; the connections after them are counted in one line.
pub const SUMMARY_ROWS: usize = 100_000;

/// Bytes of a URI a row keeps (cut on a character boundary); a longer one is marked as cut,
/// with its length.
pub const SUMMARY_URI: usize = 256;

/// One connection's row: what the table prints of it, nothing more.
pub struct SummaryRow {
    id: u64,
    client: SocketAddr,
    server: SocketAddr,
    status: Option<u16>,
    duration: f64,
    frames: [u64; 2],
    bytes: [u64; 2],
    pings: u64,
    ping_rtt: Option<f64>,
    close_codes: [Option<u16>; 2],
    end: EndReason,
    /// At most [`SUMMARY_URI`] bytes of it.
    uri: Option<Box<str>>,
    /// The URI's whole length, when it was cut.
    uri_len: Option<usize>,
}

impl SummaryRow {
    pub fn of(e: &FlowEvent<'_>) -> Self {
        let c = e.counters;
        let (uri, uri_len) = match e.uri {
            Some(uri) if uri.len() > SUMMARY_URI => {
                let cut = uri.floor_char_boundary(SUMMARY_URI);
                (Some(Box::from(&uri[..cut])), Some(uri.len()))
            }
            Some(uri) => (Some(Box::from(uri)), None),
            None => (None, None),
        };
        SummaryRow {
            id: e.flow.id,
            client: e.flow.client,
            server: e.flow.server,
            status: e.status,
            duration: e.ts.seconds_since(e.start).max(0.0),
            frames: [c.frames[C2S], c.frames[S2C]],
            bytes: [c.bytes[C2S], c.bytes[S2C]],
            pings: c.pings,
            ping_rtt: e.ping_rtt,
            close_codes: [c.close_codes[C2S], c.close_codes[S2C]],
            end: e.end,
            uri,
            uri_len,
        }
    }

    fn write(&self, w: &mut impl Write) -> io::Result<()> {
        let code = |c: Option<u16>| c.map_or("-".to_string(), |c| c.to_string());
        write!(
            w,
            "{:>5}  {:<22} {:<22} {:>6} {:>9.3} {:>7} {:>7} {:>10} {:>10} {:>5} {:>9} {:>5} {:>5}  {:<11} ",
            self.id,
            self.client.to_string(),
            self.server.to_string(),
            self.status.map_or("-".to_string(), |s| s.to_string()),
            self.duration,
            self.frames[0],
            self.frames[1],
            self.bytes[0],
            self.bytes[1],
            self.pings,
            self.ping_rtt
                .map_or("-".to_string(), |r| format!("{:.2}ms", r * 1e3)),
            code(self.close_codes[0]),
            code(self.close_codes[1]),
            self.end.name(),
        )?;
        escaped(w, self.uri.as_deref().unwrap_or("-"))?;
        if let Some(len) = self.uri_len {
            write!(w, "... (cut, {len} bytes)")?;
        }
        writeln!(w)
    }
}

/// The connections beyond the rows kept, added up.
#[derive(Default, Clone, Copy, PartialEq, Debug)]
pub struct SummaryRest {
    connections: u64,
    frames: [u64; 2],
    bytes: [u64; 2],
    pings: u64,
}

impl SummaryRest {
    fn add(&mut self, row: &SummaryRow) {
        self.connections += 1;
        for i in 0..2 {
            self.frames[i] = self.frames[i].saturating_add(row.frames[i]);
            self.bytes[i] = self.bytes[i].saturating_add(row.bytes[i]);
        }
        self.pings = self.pings.saturating_add(row.pings);
    }

    fn absorb(&mut self, other: &SummaryRest) {
        self.connections += other.connections;
        for i in 0..2 {
            self.frames[i] = self.frames[i].saturating_add(other.frames[i]);
            self.bytes[i] = self.bytes[i].saturating_add(other.bytes[i]);
        }
        self.pings = self.pings.saturating_add(other.pings);
    }

    fn write(&self, w: &mut impl Write) -> io::Result<()> {
        if self.connections == 0 {
            return Ok(());
        }
        writeln!(
            w,
            "({} more connections not shown, together: fr_c2s={} fr_s2c={} bytes_c2s={} bytes_s2c={} pings={})",
            self.connections,
            self.frames[0],
            self.frames[1],
            self.bytes[0],
            self.bytes[1],
            self.pings
        )
    }
}

/// The table as one thread builds it: rows in the order the connections ended.
#[derive(Default)]
pub struct Summary {
    rows: Vec<SummaryRow>,
    rest: SummaryRest,
}

impl Summary {
    pub(super) fn add(&mut self, e: &FlowEvent<'_>) {
        if self.rows.len() >= SUMMARY_ROWS {
            self.rest.add(&SummaryRow::of(e));
        } else {
            self.push(SummaryRow::of(e));
        }
    }

    /// A row, in order: kept while there is room, else added to the rest.
    pub fn push(&mut self, row: SummaryRow) {
        if self.rows.len() >= SUMMARY_ROWS {
            self.rest.add(&row);
        } else {
            self.rows.push(row);
        }
    }

    /// Connections already added up elsewhere (by a decoder of `--threads`).
    pub fn absorb(&mut self, rest: &SummaryRest) {
        self.rest.absorb(rest);
    }

    pub fn write(&self, w: &mut impl Write) -> io::Result<()> {
        writeln!(
            w,
            "{:>5}  {:<22} {:<22} {:>6} {:>9} {:>7} {:>7} {:>10} {:>10} {:>5} {:>9} {:>5} {:>5}  {:<11} uri",
            "flow",
            "client",
            "server",
            "status",
            "duration",
            "fr_c2s",
            "fr_s2c",
            "bytes_c2s",
            "bytes_s2c",
            "pings",
            "ping_rtt",
            "cc_c",
            "cc_s",
            "end"
        )?;
        for row in &self.rows {
            row.write(w)?;
        }
        self.rest.write(w)
    }
}

/// One decoder's share of the table, for `--threads`: the [`SUMMARY_ROWS`] rows of the
/// smallest keys (places in one thread's order) it has seen, the others added up. Whatever
/// the order rows come in, the rows one thread would keep are among those kept by the
/// decoders together, so the merged table is the same.
pub struct SummaryShard<K: Ord> {
    rows: BinaryHeap<Keyed<K>>,
    rest: SummaryRest,
}

impl<K: Ord> Default for SummaryShard<K> {
    fn default() -> Self {
        SummaryShard {
            rows: BinaryHeap::new(),
            rest: SummaryRest::default(),
        }
    }
}

struct Keyed<K>(K, SummaryRow);

impl<K: Ord> PartialEq for Keyed<K> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl<K: Ord> Eq for Keyed<K> {}
impl<K: Ord> PartialOrd for Keyed<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<K: Ord> Ord for Keyed<K> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.cmp(&other.0)
    }
}

impl<K: Ord> SummaryShard<K> {
    pub fn add(&mut self, key: K, e: &FlowEvent<'_>) {
        if self.rows.len() < SUMMARY_ROWS {
            self.rows.push(Keyed(key, SummaryRow::of(e)));
            return;
        }
        match self.rows.peek() {
            Some(last) if key < last.0 => {
                if let Some(Keyed(_, row)) = self.rows.pop() {
                    self.rest.add(&row);
                }
                self.rows.push(Keyed(key, SummaryRow::of(e)));
            }
            _ => self.rest.add(&SummaryRow::of(e)),
        }
    }

    /// The table of every shard's rows, in key order.
    pub fn merge(shards: impl IntoIterator<Item = SummaryShard<K>>) -> Summary {
        let mut summary = Summary::default();
        let mut rows = Vec::new();
        for shard in shards {
            summary.absorb(&shard.rest);
            rows.extend(shard.rows.into_vec());
        }
        rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for Keyed(_, row) in rows {
            summary.push(row);
        }
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{FlowCounters, FlowMeta, PerDir, Timestamp};

    fn meta(id: u64) -> FlowMeta {
        FlowMeta {
            id,
            client: ([10, 0, 0, 1], 40_000 + (id % 20_000) as u16).into(),
            server: ([192, 0, 2, 1], 8080).into(),
            midstream: false,
        }
    }

    fn with_flow(id: u64, uri: &str, frames: u64, f: impl FnOnce(&FlowEvent<'_>)) {
        let flow = meta(id);
        let mut counters = FlowCounters::default();
        counters.frames = PerDir::new(frames, 2 * frames);
        counters.bytes = PerDir::new(3 * frames, 5);
        f(&FlowEvent {
            ts: Timestamp { secs: 10, nanos: 0 },
            flow: &flow,
            start: Timestamp { secs: 9, nanos: 0 },
            uri: Some(uri),
            protocol: None,
            extensions: &[],
            status: Some(101),
            counters: &counters,
            ping_rtt: None,
            bytes_cut: PerDir::new(0, 0),
            traffic: Default::default(),
            end: EndReason::Fin,
            tls: None,
        });
    }

    fn table(s: &Summary) -> String {
        let mut out = Vec::new();
        s.write(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_long_uri_is_cut_and_says_so() {
        // 60,000 bytes, with a two-byte character across the cut.
        let uri = format!("/{}é{}", "a".repeat(SUMMARY_URI - 2), "b".repeat(60_000));
        let mut s = Summary::default();
        with_flow(0, &uri, 1, |e| s.add(e));
        let text = table(&s);
        let row = text.lines().nth(1).unwrap();
        let kept = format!("/{}", "a".repeat(SUMMARY_URI - 2));
        assert!(
            row.ends_with(&format!(" {kept}... (cut, {} bytes)", uri.len())),
            "{row}"
        );
        assert!(row.len() < 2 * SUMMARY_URI, "{}", row.len());
    }

    #[test]
    fn rows_beyond_the_bound_are_added_up_in_one_line() {
        let extra = 7u64;
        let mut s = Summary::default();
        for id in 0..SUMMARY_ROWS as u64 + extra {
            with_flow(id, "/u", id, |e| s.add(e));
        }
        let text = table(&s);
        let lines: Vec<&str> = text.lines().collect();
        // The header, the rows kept, one line for the rest.
        assert_eq!(lines.len(), 1 + SUMMARY_ROWS + 1);
        let first: u64 = SUMMARY_ROWS as u64;
        let frames: u64 = (first..first + extra).sum();
        assert_eq!(
            lines[SUMMARY_ROWS + 1],
            format!(
                "({extra} more connections not shown, together: fr_c2s={frames} fr_s2c={} \
bytes_c2s={} bytes_s2c={} pings=0)",
                2 * frames,
                3 * frames,
                5 * extra
            )
        );
    }

    #[test]
    fn shards_in_any_order_give_one_threads_table() {
        let total = SUMMARY_ROWS as u64 + 1000;
        let mut one = Summary::default();
        for id in 0..total {
            with_flow(id, &format!("/{id}"), id % 13, |e| one.add(e));
        }
        // Three decoders, each seeing its connections out of order.
        let mut shards: Vec<SummaryShard<u64>> = (0..3).map(|_| SummaryShard::default()).collect();
        let mut order: Vec<u64> = (0..total).collect();
        order.reverse();
        order.rotate_left(12_345);
        for id in order {
            with_flow(id, &format!("/{id}"), id % 13, |e| {
                shards[(id % 3) as usize].add(id, e)
            });
        }
        assert_eq!(table(&SummaryShard::merge(shards)), table(&one));
    }
}
