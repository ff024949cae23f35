//! `--summary`: one row per connection, printed as a table when the run ends.

use std::io::{self, Write};

use super::escape::escaped;
use crate::event::{Direction, FlowEvent};

use Direction::{ClientToServer as C2S, ServerToClient as S2C};

/// Rows kept for `--summary`; a capture with more connections says how many were left out.
const SUMMARY_ROWS: usize = 100_000;

#[derive(Default)]
pub(super) struct Summary {
    rows: Vec<String>,
    dropped: u64,
}

impl Summary {
    pub(super) fn add(&mut self, e: &FlowEvent<'_>) -> io::Result<()> {
        if self.rows.len() >= SUMMARY_ROWS {
            self.dropped += 1;
            return Ok(());
        }
        let c = e.counters;
        let code = |c: Option<u16>| c.map_or("-".to_string(), |c| c.to_string());
        let mut uri = Vec::new();
        escaped(&mut uri, e.uri.unwrap_or("-"))?;
        self.rows.push(format!(
            "{:>5}  {:<22} {:<22} {:>6} {:>9.3} {:>7} {:>7} {:>10} {:>10} {:>5} {:>9} {:>5} {:>5}  {:<11} {}",
            e.flow.id,
            e.flow.client.to_string(),
            e.flow.server.to_string(),
            e.status.map_or("-".to_string(), |s| s.to_string()),
            e.ts.seconds_since(e.start).max(0.0),
            c.frames[C2S],
            c.frames[S2C],
            c.bytes[C2S],
            c.bytes[S2C],
            c.pings,
            e.ping_rtt.map_or("-".to_string(), |r| format!("{:.2}ms", r * 1e3)),
            code(c.close_codes[C2S]),
            code(c.close_codes[S2C]),
            e.end.name(),
            String::from_utf8_lossy(&uri)
        ));
        Ok(())
    }

    pub(super) fn write(self, w: &mut impl Write) -> io::Result<()> {
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
            writeln!(w, "{row}")?;
        }
        if self.dropped > 0 {
            writeln!(w, "({} more connections not shown)", self.dropped)?;
        }
        Ok(())
    }
}
