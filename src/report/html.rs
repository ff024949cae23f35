//! The report page: one HTML file with its style, script and data inside, so that it opens
//! from disk with no network request. The data is JSON in a `<script type="application/json">`
//! block, its `<` written as `\u003c` so that nothing in a payload can end the block; the
//! page's script draws everything from it, a window of rows at a time.

use std::io::{self, Write};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use super::collect::{Collector, Connection, websocket_url};
use super::har::{epoch, iso8601};
use crate::diagnose::Finding;
use crate::event::{Direction, PerDir, Timestamp};

const TEMPLATE: &str = include_str!("report.html");
const STYLE: &str = include_str!("report.css");
const SCRIPT: &str = include_str!("report.js");

/// The items' flag for a payload written in base64 (binary, or text that is not UTF-8).
const BASE64_FLAG: u8 = 64;

/// What the page says about where its data came from.
pub struct PageInfo<'a> {
    /// The capture file or interface.
    pub source: &'a str,
    /// When the report was written.
    pub generated: Timestamp,
}

/// Copies JSON through, `<` escaped: in JSON it can only be inside a string, where `\u003c`
/// means the same, and without it no `</script>` can appear.
struct ScriptSafe<W: Write>(W);

impl<W: Write> Write for ScriptSafe<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while let Some(at) = rest.iter().position(|&b| b == b'<') {
            self.0.write_all(&rest[..at])?;
            self.0.write_all(b"\\u003c")?;
            rest = &rest[at + 1..];
        }
        self.0.write_all(rest)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

fn dir_index(dir: Option<Direction>) -> i8 {
    dir.map_or(-1, |d| d.index() as i8)
}

fn pair(p: PerDir<u64>) -> [u64; 2] {
    let mut it = p.iter();
    [
        it.next().copied().unwrap_or(0),
        it.next().copied().unwrap_or(0),
    ]
}

/// Everything the connections list and the timeline show of a connection; its items follow.
fn connection_fields(conn: &Connection) -> Value {
    let session = conn.session_handshake();
    let shown = session.or(conn.handshakes.len().checked_sub(1));
    let h = shown.map(|i| &conn.handshakes[i]);
    let summary = conn.summary.as_ref();
    let tls = h.map_or(summary.is_some_and(|s| s.tls), |h| h.tls);
    let t0 = conn.upgrade_ts();
    // Counted from the items when the connection had not ended (a cut capture can stop first).
    let counted = |data: bool| {
        let mut n = [0u64; 2];
        for item in conn.items.iter().filter(|i| (i.opcode < 8) == data) {
            n[item.dir.index()] += 1;
        }
        n
    };
    let anomalies: Vec<Value> = conn
        .anomalies
        .iter()
        .map(|a| {
            json!([
                a.ts.seconds_since(t0),
                dir_index(a.dir),
                a.kind,
                a.cause,
                a.detail
            ])
        })
        .collect();
    let rtts: Vec<Value> = conn
        .rtts
        .iter()
        .map(|(ts, rtt)| json!([ts.seconds_since(t0), rtt]))
        .collect();
    json!({
        "flow": conn.flow.id,
        "client": conn.flow.client.to_string(),
        "server": conn.flow.server.to_string(),
        "midstream": conn.flow.midstream,
        "url": websocket_url(&conn.flow, h, tls),
        "uri": summary.and_then(|s| s.uri.clone()).or_else(|| h.map(|h| h.request.uri().to_string())),
        "protocol": summary.and_then(|s| s.protocol.clone())
            .or_else(|| h.and_then(|h| h.response.protocol().map(str::to_string))),
        "extensions": summary.map_or_else(
            || h.map(|h| h.response.extensions.clone()).unwrap_or_default(),
            |s| s.extensions.clone()),
        "status": summary.and_then(|s| s.status).or_else(|| h.map(|h| h.response.status)),
        "reason": h.map(|h| h.response.reason().to_string()),
        "upgraded": h.is_some_and(|h| h.upgraded) || conn.flow.midstream,
        "handshakes": conn.handshakes.len(),
        "tls": tls,
        "t0": epoch(t0),
        "start": epoch(summary.map_or(conn.first_seen, |s| s.start)),
        "end": summary.map(|s| epoch(s.end)),
        "endReason": summary.map(|s| s.end_reason.name()),
        "messages": summary.map_or_else(|| counted(true), |s| pair(s.messages)),
        "bytes": summary.map(|s| pair(s.bytes)),
        "controls": counted(false),
        "pingRtt": summary.and_then(|s| s.ping_rtt),
        "close": conn.close.as_ref().map(|c| json!({
            "t": c.ts.seconds_since(t0),
            "initiator": dir_index(c.initiator),
            "code": c.code,
            "reason": c.reason,
            "replyCode": c.reply_code,
            "replied": c.replied,
            "clean": c.clean,
        })),
        "anomalies": anomalies,
        "anomaliesNotKept": conn.anomalies_dropped,
        "rtts": rtts,
        "notKept": conn.items_dropped,
    })
}

fn write_connection(
    w: &mut impl Write,
    collector: &Collector,
    conn: &Connection,
) -> io::Result<()> {
    let fields = serde_json::to_string(&connection_fields(conn)).map_err(io::Error::other)?;
    w.write_all(&fields.as_bytes()[..fields.len() - 1])?;
    w.write_all(b",\"items\":[")?;
    let t0 = conn.upgrade_ts();
    for (i, item) in conn.items.iter().enumerate() {
        if i > 0 {
            w.write_all(b",")?;
        }
        let payload = collector.payload(item);
        let (data, flags) = match std::str::from_utf8(payload) {
            Ok(text) if item.text => (json!(text), item.flags),
            _ => (json!(BASE64.encode(payload)), item.flags | BASE64_FLAG),
        };
        let row = json!([
            // Microseconds are what a capture holds: more digits would only cost bytes.
            (item.ts.seconds_since(t0) * 1e6).round() / 1e6,
            item.dir.index(),
            item.opcode,
            item.len,
            item.wire_len,
            flags,
            data,
            item.close_code,
        ]);
        serde_json::to_writer(&mut *w, &row).map_err(io::Error::other)?;
    }
    w.write_all(b"]}")
}

fn write_data(
    w: &mut impl Write,
    collector: &Collector,
    findings: &[Finding],
    info: &PageInfo<'_>,
) -> io::Result<()> {
    let findings: Vec<Value> = findings
        .iter()
        .map(|f| {
            json!({
                "kind": f.kind, "severity": f.severity.name(), "count": f.count,
                "flows": f.flows, "detail": f.detail, "advice": f.advice,
            })
        })
        .collect();
    let limits = collector.limits();
    let head = json!({
        "source": info.source,
        "generated": iso8601(info.generated),
        "version": env!("CARGO_PKG_VERSION"),
        "cuts": collector.cuts(),
        "limits": {
            "messagesPerConnection": limits.messages_per_connection,
            "messages": limits.messages,
            "payloadBytes": limits.payload_bytes,
            "connections": limits.connections,
        },
        "findings": findings,
    });
    let head = serde_json::to_string(&head).map_err(io::Error::other)?;
    w.write_all(&head.as_bytes()[..head.len() - 1])?;
    w.write_all(b",\"conns\":[")?;
    for (i, conn) in collector.connections().into_iter().enumerate() {
        if i > 0 {
            w.write_all(b",\n")?;
        }
        write_connection(w, collector, conn)?;
    }
    w.write_all(b"]}")
}

/// Escapes text for HTML (the page's title).
fn html_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

/// Writes the page: the template with its style, script and data in place.
pub fn write(
    w: &mut impl Write,
    collector: &Collector,
    findings: &[Finding],
    info: &PageInfo<'_>,
) -> io::Result<()> {
    let mut rest = TEMPLATE;
    while let Some(at) = rest.find("{{") {
        w.write_all(&rest.as_bytes()[..at])?;
        let after = &rest[at + 2..];
        let Some(end) = after.find("}}") else {
            rest = after;
            continue;
        };
        match &after[..end] {
            "TITLE" => w.write_all(html_text(info.source).as_bytes())?,
            "STYLE" => w.write_all(STYLE.as_bytes())?,
            "SCRIPT" => w.write_all(SCRIPT.as_bytes())?,
            "DATA" => write_data(&mut ScriptSafe(&mut *w), collector, findings, info)?,
            other => w.write_all(other.as_bytes())?,
        }
        rest = &after[end + 2..];
    }
    w.write_all(rest.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_in_the_data_can_end_its_script_block() {
        let mut out = Vec::new();
        serde_json::to_writer(ScriptSafe(&mut out), &json!({"t": "</script><!-- x"})).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains('<'));
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["t"], "</script><!-- x");
    }
}
