//! HAR 1.2 as Chrome writes it for WebSockets: one entry per handshake, `_resourceType`
//! "websocket", the session's messages in `_webSocketMessages`, text as text and everything
//! else in base64, times in epoch seconds. Chrome shows data messages only; wsnoop adds the
//! control frames (opcodes 8 to 10), which Chrome hides, and its own fields start with `_`.

use std::io::{self, Write};
use std::net::SocketAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use super::collect::{Collector, Connection, Handshake, Item, flag, websocket_url};
use crate::event::{Direction, Timestamp};

/// Epoch seconds as a JSON number: what Chrome writes as a message's `time`.
pub fn epoch(ts: Timestamp) -> f64 {
    ts.secs as f64 + f64::from(ts.nanos) / 1e9
}

/// ISO 8601 in UTC with milliseconds, as HAR's `startedDateTime`.
pub fn iso8601(ts: Timestamp) -> String {
    let days = ts.secs.div_euclid(86_400);
    let day = ts.secs.rem_euclid(86_400);
    let (y, m, d) = crate::output::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        day / 3600,
        day / 60 % 60,
        day % 60,
        ts.nanos / 1_000_000
    )
}

fn header(name: &str, value: &str) -> Value {
    json!({ "name": name, "value": value })
}

/// The request's headers, as far as wsnoop keeps them.
fn request_headers(h: &Handshake) -> Vec<Value> {
    let kept = h.request.kept_headers();
    kept.iter().map(|(n, v)| header(n, v)).collect()
}

fn response_headers(h: &Handshake) -> Vec<Value> {
    let kept = h.response.kept_headers();
    kept.iter().map(|(n, v)| header(n, v)).collect()
}

/// `name=value` pairs of the URL's query, as HAR's `queryString` (not percent-decoded).
fn query_string(uri: &str) -> Vec<Value> {
    let Some((_, query)) = uri.split_once('?') else {
        return Vec::new();
    };
    let query = query.split('#').next().unwrap_or_default();
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            header(n, v)
        })
        .collect()
}

/// What HAR names the server: its address without the port (IPv6 in brackets, as Chrome).
fn server_ip(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    }
}

/// One of `_webSocketMessages`.
pub fn message(collector: &Collector, item: &Item) -> Value {
    let payload = collector.payload(item);
    let data = match std::str::from_utf8(payload) {
        Ok(text) if item.opcode == 1 && item.text => text.to_owned(),
        _ => BASE64.encode(payload),
    };
    let mut m = json!({
        "type": if item.dir == Direction::ClientToServer { "send" } else { "receive" },
        "time": epoch(item.ts),
        "opcode": item.opcode,
        "data": data,
    });
    if item.flags != 0 || item.len != payload.len() as u64 {
        m["_length"] = json!(item.len);
        m["_wireLength"] = json!(item.wire_len);
    }
    for (bit, name) in [
        (flag::TRUNCATED, "_truncated"),
        (flag::COMPRESSED, "_compressed"),
        (flag::INCOMPLETE, "_incomplete"),
        (flag::UNDECODABLE, "_undecodable"),
        (flag::PARTIAL, "_partial"),
        (flag::DROPPED, "_payloadNotKept"),
    ] {
        if item.flags & bit != 0 {
            m[name] = json!(true);
        }
    }
    if let Some(code) = item.close_code {
        m["_closeCode"] = json!(code);
    }
    m
}

fn entry_fields(conn: &Connection, h: Option<&Handshake>, session: bool) -> Value {
    let tls = h.map_or(conn.summary.as_ref().is_some_and(|s| s.tls), |h| h.tls);
    let url = websocket_url(&conn.flow, h, tls);
    let ts = h.map_or(conn.first_seen, |h| h.ts);
    let latency_ms = h.map_or(0.0, |h| h.latency * 1000.0);
    let (request_headers, response_headers) = h.map_or((Vec::new(), Vec::new()), |h| {
        (request_headers(h), response_headers(h))
    });
    let (status, reason) = match h {
        Some(h) => (i64::from(h.response.status), h.response.reason()),
        // Picked up mid-stream: no handshake was seen; HAR wants a status all the same.
        None => (0, ""),
    };
    let mut wsnoop = json!({
        "flow": conn.flow.id,
        "client": conn.flow.client.to_string(),
        "server": conn.flow.server.to_string(),
        "midstream": conn.flow.midstream,
    });
    if let Some(h) = h {
        wsnoop["upgraded"] = json!(h.upgraded);
        wsnoop["accept"] = json!(h.accept.name());
    }
    if session {
        if let Some(s) = &conn.summary {
            wsnoop["end"] = json!(s.end_reason.name());
            wsnoop["duration"] = json!(s.end.seconds_since(conn.upgrade_ts()));
            wsnoop["pingRtt"] = json!(s.ping_rtt);
        }
        if let Some(c) = &conn.close {
            wsnoop["close"] = json!({
                "code": c.code, "reason": c.reason, "replyCode": c.reply_code, "clean": c.clean,
            });
        }
        if conn.items_dropped > 0 {
            wsnoop["messagesNotKept"] = json!(conn.items_dropped);
        }
    }
    json!({
        "startedDateTime": iso8601(ts),
        "time": latency_ms,
        "request": {
            "method": h.map_or("GET", |h| h.request.method()),
            "url": url,
            "httpVersion": "HTTP/1.1",
            "headers": request_headers,
            "queryString": query_string(&url),
            "cookies": [],
            "headersSize": -1,
            "bodySize": 0,
        },
        "response": {
            "status": status,
            "statusText": reason,
            "httpVersion": "HTTP/1.1",
            "headers": response_headers,
            "cookies": [],
            "content": { "size": 0, "mimeType": "x-unknown" },
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": 0,
            "_transferSize": 0,
            "_error": null,
        },
        "cache": {},
        "timings": {
            "blocked": -1, "dns": -1, "ssl": -1, "connect": -1,
            "send": 0, "wait": latency_ms, "receive": 0,
        },
        "serverIPAddress": server_ip(conn.flow.server),
        "connection": conn.flow.id.to_string(),
        "_resourceType": "websocket",
        "_wsnoop": wsnoop,
    })
}

/// Writes the HAR file: every connection's handshakes, the session's messages under the
/// handshake that upgraded it (or, picked up mid-stream, under an entry of its own).
pub fn write(w: &mut impl Write, collector: &Collector) -> io::Result<()> {
    let mut log = json!({
        "version": "1.2",
        "creator": { "name": "wsnoop", "version": env!("CARGO_PKG_VERSION") },
        "pages": [],
    });
    if let Some(cuts) = collector.cuts() {
        log["comment"] = json!(format!("wsnoop kept a bounded part of the capture: {cuts}"));
    }
    let head = serde_json::to_string(&json!({ "log": log })).map_err(io::Error::other)?;
    // The log object without its last two braces, the entries after it.
    w.write_all(&head.as_bytes()[..head.len() - 2])?;
    w.write_all(b",\"entries\":[")?;
    let mut first = true;
    for conn in collector.connections() {
        let session = conn.session_handshake();
        let entries: Vec<Option<usize>> = if conn.handshakes.is_empty() {
            vec![None]
        } else {
            (0..conn.handshakes.len()).map(Some).collect()
        };
        for index in entries {
            let h = index.map(|i| &conn.handshakes[i]);
            let carries = index == session;
            if !first {
                w.write_all(b",")?;
            }
            first = false;
            write_entry(w, collector, conn, h, carries)?;
        }
    }
    w.write_all(b"]}}\n")
}

fn write_entry(
    w: &mut impl Write,
    collector: &Collector,
    conn: &Connection,
    h: Option<&Handshake>,
    carries: bool,
) -> io::Result<()> {
    let fields =
        serde_json::to_string(&entry_fields(conn, h, carries)).map_err(io::Error::other)?;
    w.write_all(&fields.as_bytes()[..fields.len() - 1])?;
    w.write_all(b",\"_webSocketMessages\":[")?;
    if carries {
        for (i, item) in conn.items.iter().enumerate() {
            if i > 0 {
                w.write_all(b",")?;
            }
            serde_json::to_writer(&mut *w, &message(collector, item)).map_err(io::Error::other)?;
        }
    }
    w.write_all(b"]}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_iso8601() {
        // Checked with Python: datetime.fromtimestamp(1795611222.914, timezone.utc).
        let ts = Timestamp {
            secs: 1_795_611_222,
            nanos: 914_437_313,
        };
        assert_eq!(iso8601(ts), "2026-11-25T12:53:42.914Z");
        assert_eq!(iso8601(Timestamp::default()), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            iso8601(Timestamp {
                secs: 951_782_400,
                nanos: 0
            }),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn query_strings_split() {
        let q = query_string("ws://h/p?a=1&b=&c#frag");
        assert_eq!(q, vec![header("a", "1"), header("b", ""), header("c", "")]);
        assert!(query_string("ws://h/p").is_empty());
    }
}
