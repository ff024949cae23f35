//! wsnoop against Zeek's own expected results.
//!
//! The peer corpus (`$WSNOOP_CORPUS`, default `../shared/corpus` beside the clone; see its
//! README.md) holds the WebSocket traces of Zeek's test suite and the baselines Zeek's tests
//! compare against. Every baseline that speaks about something wsnoop reports is checked here;
//! `every_baseline_is_accounted_for` fails when a baseline appears that this file does not know.
//!
//! What is compared, baseline by baseline:
//!
//! - `events--out` (Zeek test `events.zeek`, five traces, one section per trace) and
//!   `coalesced-reply-ping--out-{coalesced,separate}` (`coalesced-reply-ping.zeek`): Zeek's
//!   events against wsnoop's, per connection and per direction (`is_orig` T = client to server =
//!   wsnoop `c2s`), in order:
//!   - `websocket_frame` <-> frame event: fin, rsv (both RSV1=4, RSV2=2, RSV3=1: Zeek takes
//!     `(first2 & 0x7000) >> 12`), opcode (Zeek's `unknown-<hex>` <-> wsnoop `reserved-<dec>`),
//!     payload length.
//!   - `websocket_frame_data` <-> the frame's payload. Zeek raises it once per payload chunk (at
//!     most `WebSocket::payload_chunk_size` bytes, none for an empty payload; control frames
//!     capped at `WebSocket::max_control_frame_size`, 125) with the unmasked payload, and the
//!     test prints `data[:120]`, escaped: bytes outside printable ASCII as `\xNN`, a backslash as
//!     `\\`. So each chunk is compared, as a prefix at its offset, with wsnoop's payload (run
//!     with a `--max-payload` no frame reaches, so wsnoop's payload is whole). Compressed data:
//!     Zeek at the corpus' commit does not implement permessage-deflate (`WebSocket_Analyzer::
//!     Configure` leaves it as a TODO), so its frame data is the compressed bytes as sent, which
//!     is what wsnoop's frame events carry too (its message events carry the inflated bytes and
//!     are not compared with frame data). No frame of the corpus has RSV1 set.
//!     A text frame is compared byte for byte too: wsnoop moves a UTF-8 character cut by a
//!     frame border into the frame where it ends, which would show here as a difference, but
//!     the corpus has no fragmented text message (every text frame is a whole message).
//!   - `websocket_message`: Zeek raises it for every message, control frames included (a
//!     control frame is a message of one frame). wsnoop has message events for data messages
//!     only, so text/binary messages <-> message events (opcode, number of frames, wire length =
//!     sum of Zeek's payload lengths of those frames) and ping/pong/close messages <-> wsnoop's
//!     control frames (opcode, order). `coalesced-reply-ping.zeek` has no `websocket_message`
//!     handler, so its outputs say nothing about messages.
//!   - `websocket_close` (status 0 when the payload is empty) <-> the close frame's close_code
//!     (null when empty) and close_reason, and the connection's close event: initiator = side of
//!     the first close, code/reason = its status/reason, reply_code/replied = the other side's
//!     first close.
//!   - `websocket_established`'s `c$websocket` record (events--out only) <-> the handshake
//!     event, like websocket.log below, plus client_key <-> key and server_accept: wsnoop's
//!     accept verdict must be "ok" exactly when server_accept is base64(SHA-1(key + GUID)),
//!     computed here independently.
//! - `*--websocket.log` <-> handshake events, rows matched to flows by endpoints. Mapping (Zeek's
//!   script fills the fields from `http_header` events, see base/protocols/websocket/main.zeek):
//!   - host, uri, user_agent: the request's Host, URI, User-Agent; Zeek `-` (unset) <-> null.
//!   - subprotocol: the raw value of the response's Sec-WebSocket-Protocol <-> `protocol`.
//!   - client_protocols <-> `protocols`, client_extensions <-> `extensions`, server_extensions
//!     <-> `server_extensions`. Zeek concatenates, over all headers of that name,
//!     `split_string(value, / *, */)`: one element per comma-separated item, with the item's
//!     parameters kept (`permessage-deflate; client_max_window_bits` is one element). wsnoop
//!     splits each header at commas and trims the items, so the lists are compared element by
//!     element. The log joins elements with the set separator `,` (a comma inside an element
//!     would be escaped `\x2c`); `-` (never set, no such header) and `(empty)` both map to [].
//!   - The three `wstunnel-ssh-configure*` tests run on wstunnel-ssh.pcap with a
//!     `WebSocket::configure_analyzer` hook that only chooses the analyzer Zeek attaches to the
//!     tunnelled payload (SSH, HTTP, or none by breaking); websocket.log is written from the
//!     handshake regardless, so all three logs are compared like wstunnel-ssh's.
//!   - Each log must have as many rows as wsnoop has upgraded handshakes in the trace (Zeek logs
//!     at `websocket_established`).
//! - `*--weird.log`: `websocket_wrong_accept_header` <-> handshake accept "mismatch" and an
//!   `accept_mismatch` anomaly whose detail names Zeek's expected and found values;
//!   `websocket_control_frame_size_exceeded` ("N > 125") <-> a `control_frame_too_long` anomaly
//!   on the control frame of length N (same direction and timestamp);
//!   `protocol_data_with_HTTP_upgrade_reply` (bytes after the 101 in the same segment, seen by
//!   Zeek's HTTP analyzer) <-> wsnoop decoding those bytes as frames: the server frames that
//!   share the 101's timestamp add up to exactly that many wire bytes.
//! - `close-too-large--out-pac-uncapped`: `Close length: N`, Zeek's close reason length with
//!   `WebSocket::max_control_frame_size=0` (no cap, which is what wsnoop does: it reports the
//!   oversized frame and decodes it whole) <-> close_reason byte length of the close frames.
//! - `fragmented-http-reply--out`: one `websocket_established`, then the `http_header` events
//!   of the HTTP exchange tunnelled in binary messages, the reply fragmented over several frames
//!   <-> the headers parsed here from wsnoop's reassembled message payloads, per direction.
//! - `wstunnel-ssh-configure-break--out`: one `WebSocket::configure_analyzer` line per
//!   established WebSocket <-> wsnoop's upgraded handshakes, matched through the uids of
//!   `wstunnel-ssh-configure-break--websocket.log`.
//!
//! Not compared, because they depend on a Zeek-only configuration or on Zeek's internals:
//! - `wstunnel-ssh-configure-break--out`'s `disabling_analyzer` lines: what Zeek does after a
//!   `configure_analyzer` hook breaks (it stops analysing the connection); wsnoop has no such
//!   setting.
//! - Zeek's analyzer ids (`aid`) and uids, which name things only Zeek has.
//! - The absence of weird.log that some Zeek tests assert: Zeek's weirds and wsnoop's anomalies
//!   cover different rules (e.g. Zeek does not check masking), so "no weird" says nothing
//!   about wsnoop's anomalies.
//! - http-websocket.pcap has no baseline.
//!
//! Run `cargo test --test zeek_baselines -- --nocapture` to see the summary of what was
//! compared.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fmt::{Debug, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine as _;
use serde_json::Value;
use sha1::{Digest, Sha1};

/// More than any payload in the corpus: wsnoop's frame payloads are never cut.
const MAX_PAYLOAD: &str = "100000000";
/// Zeek's events.zeek and coalesced-reply-ping.zeek print `data[:120]`.
const ZEEK_DATA_PRINTED: usize = 120;
/// Zeek's default `WebSocket::max_control_frame_size`.
const ZEEK_MAX_CONTROL_FRAME: u64 = 125;
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Each `*--websocket.log` baseline and the trace its Zeek test reads (from the corpus README
/// and the tests' `zeek -r` lines).
const WEBSOCKET_LOGS: &[(&str, &str)] = &[
    ("broker-websocket--websocket.log", "broker-websocket.pcap"),
    ("jupyter-websocket--websocket.log", "jupyter-websocket.pcap"),
    (
        "key-accept-wrong--websocket.log",
        "wrong-accept-header.pcap",
    ),
    ("wstunnel-http--websocket.log", "wstunnel-http.pcap"),
    ("wstunnel-https--websocket.log", "wstunnel-https.pcap"),
    ("wstunnel-ssh--websocket.log", "wstunnel-ssh.pcap"),
    ("wstunnel-ssh-configure--websocket.log", "wstunnel-ssh.pcap"),
    (
        "wstunnel-ssh-configure-break--websocket.log",
        "wstunnel-ssh.pcap",
    ),
    (
        "wstunnel-ssh-configure-wrong--websocket.log",
        "wstunnel-ssh.pcap",
    ),
];

const WEIRD_LOGS: &[(&str, &str)] = &[
    ("key-accept-wrong--weird.log", "wrong-accept-header.pcap"),
    (
        "close-too-large--weird-pac.log",
        "oversized-close-frame.pcapng",
    ),
    (
        "coalesced-reply-ping--weird.log",
        "reply-ping-coalesced.pcap",
    ),
];

/// Event outputs of one trace each: (baseline, trace, the test has a websocket_message handler).
const SINGLE_TRACE_EVENT_OUTS: &[(&str, &str, bool)] = &[
    (
        "coalesced-reply-ping--out-coalesced",
        "reply-ping-coalesced.pcap",
        false,
    ),
    (
        "coalesced-reply-ping--out-separate",
        "reply-ping-separate.pcap",
        false,
    ),
];

const EVENTS_OUT: &str = "events--out";
const CLOSE_UNCAPPED_OUT: (&str, &str) = (
    "close-too-large--out-pac-uncapped",
    "oversized-close-frame.pcapng",
);
const FRAGMENTED_REPLY_OUT: (&str, &str) =
    ("fragmented-http-reply--out", "fragmented-http-reply.pcap");
const CONFIGURE_BREAK_OUT: (&str, &str, &str) = (
    "wstunnel-ssh-configure-break--out",
    "wstunnel-ssh-configure-break--websocket.log",
    "wstunnel-ssh.pcap",
);

// ---------------------------------------------------------------------------------------------
// Paths, running wsnoop

fn zeek_dir() -> PathBuf {
    let dir = common::corpus_dir().join("zeek");
    assert!(
        dir.join("baselines").is_dir() && dir.join("traces").is_dir(),
        "{} has no baselines/ and traces/: set WSNOOP_CORPUS to the peer corpus directory \
         (the one whose zeek/ holds traces/ and baselines/)",
        dir.display()
    );
    dir
}

fn baseline(name: &str) -> String {
    let path = zeek_dir().join("baselines").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn trace_path(name: &str) -> PathBuf {
    let path = zeek_dir().join("traces").join(name);
    assert!(path.is_file(), "trace {} is missing", path.display());
    path
}

/// wsnoop's events for a trace, run once per trace and test process.
fn wsnoop_events(trace: &str) -> Arc<Vec<Value>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Vec<Value>>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(events) = cache.lock().unwrap().get(trace) {
        return events.clone();
    }
    let events = Arc::new(common::run_wsnoop_json(
        &trace_path(trace),
        &["--max-payload", MAX_PAYLOAD],
    ));
    cache
        .lock()
        .unwrap()
        .insert(trace.to_string(), events.clone());
    events
}

// ---------------------------------------------------------------------------------------------
// wsnoop's view

const C2S: usize = 0;
const S2C: usize = 1;

fn dir_name(dir: usize) -> &'static str {
    if dir == C2S { "c2s" } else { "s2c" }
}

fn dir_index(v: &Value) -> usize {
    match v["dir"].as_str() {
        Some("c2s") => C2S,
        Some("s2c") => S2C,
        other => panic!("event without a direction ({other:?}): {v}"),
    }
}

/// One connection as wsnoop reports it.
#[derive(Default)]
struct WsFlow {
    id: u64,
    client: Option<SocketAddr>,
    server: Option<SocketAddr>,
    handshakes: Vec<Value>,
    frames: [Vec<Value>; 2],
    messages: [Vec<Value>; 2],
    closes: Vec<Value>,
    anomalies: Vec<Value>,
}

impl WsFlow {
    fn upgraded(&self) -> bool {
        self.handshakes
            .iter()
            .any(|h| h["upgraded"].as_bool() == Some(true))
    }

    fn label(&self, trace: &str) -> String {
        format!(
            "{trace} flow {} ({} -> {})",
            self.id,
            self.client.map_or("?".into(), |a| a.to_string()),
            self.server.map_or("?".into(), |a| a.to_string())
        )
    }

    /// The upgrading handshake (the last one, should a connection have several requests).
    fn handshake(&self) -> Option<&Value> {
        self.handshakes
            .iter()
            .rev()
            .find(|h| h["upgraded"].as_bool() == Some(true))
            .or(self.handshakes.last())
    }
}

fn ws_flows(events: &[Value]) -> Vec<WsFlow> {
    let mut flows: BTreeMap<u64, WsFlow> = BTreeMap::new();
    for e in events {
        let id = e["flow"]
            .as_u64()
            .unwrap_or_else(|| panic!("event without flow: {e}"));
        let flow = flows.entry(id).or_insert_with(|| WsFlow {
            id,
            ..WsFlow::default()
        });
        flow.client = flow
            .client
            .or(e["client"].as_str().and_then(|s| s.parse().ok()));
        flow.server = flow
            .server
            .or(e["server"].as_str().and_then(|s| s.parse().ok()));
        match e["type"].as_str() {
            Some("handshake") => flow.handshakes.push(e.clone()),
            Some("frame") => flow.frames[dir_index(e)].push(e.clone()),
            Some("message") => flow.messages[dir_index(e)].push(e.clone()),
            Some("close") => flow.closes.push(e.clone()),
            Some("anomaly") => flow.anomalies.push(e.clone()),
            // Event types added later (e.g. a per-connection summary) say nothing Zeek does.
            _ => {}
        }
    }
    flows.into_values().collect()
}

fn find_flow(flows: &[WsFlow], orig: SocketAddr, resp: SocketAddr) -> Option<&WsFlow> {
    flows
        .iter()
        .find(|f| f.client == Some(orig) && f.server == Some(resp))
}

/// A frame's or message's payload bytes as wsnoop shows them.
fn ws_payload(v: &Value) -> Vec<u8> {
    if let Some(text) = v["text"].as_str() {
        text.as_bytes().to_vec()
    } else if let Some(data) = v["data"].as_str() {
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap_or_else(|e| panic!("bad base64 in {v}: {e}"))
    } else {
        Vec::new()
    }
}

fn opt_str(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

fn str_list(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|x| x.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn is_control(opcode: &str) -> bool {
    matches!(opcode, "close" | "ping" | "pong")
        || opcode
            .strip_prefix("reserved-")
            .and_then(|n| n.parse::<u8>().ok())
            .is_some_and(|n| n >= 8)
}

/// Bytes on the wire of a frame with minimal length encoding.
fn frame_wire_len(v: &Value) -> u64 {
    let len = v["len"].as_u64().unwrap_or(0);
    let ext = match len {
        0..=125 => 0,
        126..=65535 => 2,
        _ => 8,
    };
    let mask = if v["masked"].as_bool() == Some(true) {
        4
    } else {
        0
    };
    2 + ext + mask + len
}

// ---------------------------------------------------------------------------------------------
// Zeek's formats

/// Zeek's string escaping as `print` and the ASCII logs write it: `\xNN` for a byte, `\\` for a
/// backslash, everything else literal.
fn zeek_unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            if b.get(i + 1) == Some(&b'x')
                && let Some(hex) = s.get(i + 2..i + 4)
                && let Ok(byte) = u8::from_str_radix(hex, 16)
            {
                out.push(byte);
                i += 4;
                continue;
            }
            if b.get(i + 1) == Some(&b'\\') {
                out.push(b'\\');
                i += 2;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Bytes written the way Zeek prints them, cut for messages.
fn show(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes.iter().take(48) {
        if (0x20..0x7f).contains(&b) && b != b'\\' {
            s.push(b as char);
        } else {
            let _ = write!(s, "\\x{b:02x}");
        }
    }
    if bytes.len() > 48 {
        let _ = write!(s, "...({} bytes)", bytes.len());
    }
    s
}

fn zeek_bool(s: &str) -> Option<bool> {
    match s {
        "T" => Some(true),
        "F" => Some(false),
        _ => None,
    }
}

/// Zeek's opcode name in wsnoop's terms: `unknown-<hex>` is wsnoop's `reserved-<decimal>`.
fn zeek_opcode(name: &str) -> String {
    match name.strip_prefix("unknown-") {
        Some(hex) => match u8::from_str_radix(hex, 16) {
            Ok(n) => format!("reserved-{n}"),
            Err(_) => name.to_string(),
        },
        None => name.to_string(),
    }
}

fn endpoint(host: &str, port: &str) -> Option<SocketAddr> {
    let ip: IpAddr = host.parse().ok()?;
    let port: u16 = port.trim_end_matches("/tcp").parse().ok()?;
    Some(SocketAddr::new(ip, port))
}

/// The handshake facts Zeek records in `c$websocket` / websocket.log.
#[derive(Debug, Default)]
struct ZeekHandshake {
    orig: Option<SocketAddr>,
    resp: Option<SocketAddr>,
    host: Option<String>,
    uri: Option<String>,
    user_agent: Option<String>,
    subprotocol: Option<String>,
    client_protocols: Option<Vec<String>>,
    server_extensions: Option<Vec<String>>,
    client_extensions: Option<Vec<String>>,
    /// Only in the `websocket_established` record (not &log).
    client_key: Option<String>,
    server_accept: Option<String>,
    has_key_fields: bool,
}

/// A Zeek ASCII log, either whole (`#fields` header) or cut with `zeek-cut -m` (first line is
/// the column names).
struct ZeekLog {
    fields: Vec<String>,
    rows: Vec<(usize, Vec<String>)>,
    set_separator: String,
}

impl ZeekLog {
    fn parse(text: &str) -> ZeekLog {
        let mut log = ZeekLog {
            fields: Vec::new(),
            rows: Vec::new(),
            set_separator: ",".into(),
        };
        for (n, line) in text.lines().enumerate() {
            if line.starts_with("###") || line.is_empty() {
                continue; // btest's header
            }
            if let Some(rest) = line.strip_prefix("#fields\t") {
                log.fields = rest.split('\t').map(String::from).collect();
                continue;
            }
            if let Some(rest) = line.strip_prefix("#set_separator\t") {
                log.set_separator = String::from_utf8_lossy(&zeek_unescape(rest)).into_owned();
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let cells: Vec<String> = line.split('\t').map(String::from).collect();
            if log.fields.is_empty() {
                log.fields = cells;
            } else {
                log.rows.push((n + 1, cells));
            }
        }
        log
    }

    fn raw<'a>(&self, row: &'a [String], field: &str) -> Option<&'a str> {
        let i = self.fields.iter().position(|f| f == field)?;
        row.get(i).map(String::as_str)
    }

    /// A string field: None when unset (`-`).
    fn string(&self, row: &[String], field: &str) -> Option<String> {
        match self.raw(row, field)? {
            "-" => None,
            v => Some(String::from_utf8_lossy(&zeek_unescape(v)).into_owned()),
        }
    }

    /// A vector field: None when unset (`-`), empty for `(empty)`.
    fn list(&self, row: &[String], field: &str) -> Option<Vec<String>> {
        match self.raw(row, field)? {
            "-" => None,
            "(empty)" => Some(Vec::new()),
            v => Some(
                v.split(self.set_separator.as_str())
                    .map(|e| String::from_utf8_lossy(&zeek_unescape(e)).into_owned())
                    .collect(),
            ),
        }
    }

    fn endpoints(&self, row: &[String]) -> (Option<SocketAddr>, Option<SocketAddr>) {
        let get = |h: &str, p: &str| endpoint(self.raw(row, h)?, self.raw(row, p)?);
        (get("id.orig_h", "id.orig_p"), get("id.resp_h", "id.resp_p"))
    }

    fn handshake(&self, row: &[String]) -> ZeekHandshake {
        let (orig, resp) = self.endpoints(row);
        ZeekHandshake {
            orig,
            resp,
            host: self.string(row, "host"),
            uri: self.string(row, "uri"),
            user_agent: self.string(row, "user_agent"),
            subprotocol: self.string(row, "subprotocol"),
            client_protocols: self.list(row, "client_protocols"),
            server_extensions: self.list(row, "server_extensions"),
            client_extensions: self.list(row, "client_extensions"),
            client_key: None,
            server_accept: None,
            has_key_fields: false,
        }
    }
}

/// Parses the `c$websocket` record `print` writes in `websocket_established`:
/// `[ts=.., uid=.., id=[orig_h=.., orig_p=../tcp, resp_h=.., resp_p=../tcp, ..], host=.., ...]`.
fn parse_established_record(rec: &str) -> Result<ZeekHandshake, String> {
    let rec = rec
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .ok_or("record not in brackets")?;
    // Top-level fields in declaration order (WebSocket::Info); each value runs to the next one.
    const FIELDS: [&str; 12] = [
        "ts",
        "uid",
        "id",
        "host",
        "uri",
        "user_agent",
        "subprotocol",
        "client_protocols",
        "server_extensions",
        "client_extensions",
        "client_key",
        "server_accept",
    ];
    let mut starts = Vec::new();
    let mut from = 0;
    for (i, name) in FIELDS.iter().enumerate() {
        let needle = if i == 0 {
            format!("{name}=")
        } else {
            format!(", {name}=")
        };
        let at = rec[from..]
            .find(&needle)
            .map(|p| p + from)
            .ok_or_else(|| format!("field {name} not found"))?;
        starts.push((at, at + needle.len()));
        from = at + needle.len();
    }
    let mut values = BTreeMap::new();
    for (i, name) in FIELDS.iter().enumerate() {
        let end = starts.get(i + 1).map_or(rec.len(), |s| s.0);
        values.insert(*name, &rec[starts[i].1..end]);
    }
    let scalar = |name: &str| -> Option<String> {
        match values[name] {
            "<uninitialized>" => None,
            v => Some(String::from_utf8_lossy(&zeek_unescape(v)).into_owned()),
        }
    };
    let vector = |name: &str| -> Result<Option<Vec<String>>, String> {
        match values[name] {
            "<uninitialized>" => Ok(None),
            v => {
                let inner = v
                    .strip_prefix('[')
                    .and_then(|v| v.strip_suffix(']'))
                    .ok_or_else(|| format!("{name} is not a vector: {v}"))?;
                Ok(Some(if inner.is_empty() {
                    Vec::new()
                } else {
                    inner
                        .split(", ")
                        .map(|e| String::from_utf8_lossy(&zeek_unescape(e)).into_owned())
                        .collect()
                }))
            }
        }
    };
    let id = values["id"];
    let id_field = |name: &str| -> Option<&str> {
        let start = id.find(&format!("{name}="))? + name.len() + 1;
        let rest = &id[start..];
        Some(&rest[..rest.find([',', ']']).unwrap_or(rest.len())])
    };
    let ep = |h: &str, p: &str| endpoint(id_field(h)?, id_field(p)?);
    Ok(ZeekHandshake {
        orig: ep("orig_h", "orig_p"),
        resp: ep("resp_h", "resp_p"),
        host: scalar("host"),
        uri: scalar("uri"),
        user_agent: scalar("user_agent"),
        subprotocol: scalar("subprotocol"),
        client_protocols: vector("client_protocols")?,
        server_extensions: vector("server_extensions")?,
        client_extensions: vector("client_extensions")?,
        client_key: scalar("client_key"),
        server_accept: scalar("server_accept"),
        has_key_fields: true,
    })
}

/// One event line of a Zeek test's output.
#[derive(Debug)]
enum ZeekEvent {
    Established {
        uid: String,
        record: Option<Box<ZeekHandshake>>,
    },
    Frame {
        uid: String,
        orig: bool,
        fin: bool,
        rsv: u8,
        opcode: String,
        len: u64,
    },
    FrameData {
        uid: String,
        orig: bool,
        len: u64,
        data: Vec<u8>,
    },
    Message {
        uid: String,
        orig: bool,
        opcode: String,
    },
    Close {
        uid: String,
        orig: bool,
        status: u16,
        reason: Vec<u8>,
    },
}

impl ZeekEvent {
    fn uid(&self) -> &str {
        match self {
            ZeekEvent::Established { uid, .. }
            | ZeekEvent::Frame { uid, .. }
            | ZeekEvent::FrameData { uid, .. }
            | ZeekEvent::Message { uid, .. }
            | ZeekEvent::Close { uid, .. } => uid,
        }
    }
}

/// The events of one trace: (line number in the baseline, event).
struct Section {
    trace: String,
    events: Vec<(usize, ZeekEvent)>,
    has_messages: bool,
}

fn parse_event_line(line: &str) -> Result<ZeekEvent, String> {
    let name = line.split(", ").next().unwrap_or_default();
    let label = |parts: &[&str], i: usize, want: &str| -> Result<(), String> {
        if parts.get(i) == Some(&want) {
            Ok(())
        } else {
            Err(format!("expected {want:?} as item {i}"))
        }
    };
    let num = |s: &str| s.parse::<u64>().map_err(|e| format!("{s:?}: {e}"));
    let boolean = |s: &str| zeek_bool(s).ok_or_else(|| format!("{s:?} is not T or F"));
    match name {
        "websocket_established" => {
            let parts: Vec<&str> = line.splitn(4, ", ").collect();
            let uid = parts.get(1).ok_or("no uid")?.to_string();
            let record = match parts.get(3) {
                Some(rec) => Some(Box::new(parse_established_record(rec)?)),
                None => None,
            };
            Ok(ZeekEvent::Established { uid, record })
        }
        "websocket_frame" => {
            let p: Vec<&str> = line.splitn(11, ", ").collect();
            if p.len() != 11 {
                return Err("websocket_frame with too few items".into());
            }
            label(&p, 3, "fin")?;
            label(&p, 5, "rsv")?;
            label(&p, 7, "opcode")?;
            label(&p, 9, "payload_len")?;
            Ok(ZeekEvent::Frame {
                uid: p[1].into(),
                orig: boolean(p[2])?,
                fin: boolean(p[4])?,
                rsv: num(p[6])? as u8,
                opcode: zeek_opcode(p[8]),
                len: num(p[10])?,
            })
        }
        "websocket_frame_data" => {
            // The data is the rest of the line: it may hold ", " itself.
            let p: Vec<&str> = line.splitn(7, ", ").collect();
            label(&p, 3, "len")?;
            let data = match (p.get(5), p.get(6)) {
                (Some(&"data"), Some(d)) => *d,
                (Some(&"data,"), None) => "", // trailing space lost
                _ => return Err("no data item".into()),
            };
            Ok(ZeekEvent::FrameData {
                uid: p[1].into(),
                orig: boolean(p[2])?,
                len: num(p.get(4).ok_or("no len")?)?,
                data: zeek_unescape(data),
            })
        }
        "websocket_message" => {
            let p: Vec<&str> = line.splitn(5, ", ").collect();
            label(&p, 3, "opcode")?;
            Ok(ZeekEvent::Message {
                uid: p[1].into(),
                orig: boolean(p[2])?,
                opcode: zeek_opcode(p.get(4).ok_or("no opcode")?),
            })
        }
        "websocket_close" => {
            let p: Vec<&str> = line.splitn(7, ", ").collect();
            label(&p, 3, "status")?;
            let reason = match (p.get(5), p.get(6)) {
                (Some(&"reason"), Some(r)) => *r,
                (Some(&"reason,"), None) => "",
                _ => return Err("no reason item".into()),
            };
            Ok(ZeekEvent::Close {
                uid: p[1].into(),
                orig: boolean(p[2])?,
                status: num(p.get(4).ok_or("no status")?)? as u16,
                reason: zeek_unescape(reason),
            })
        }
        _ => Err(format!("unknown event {name:?}")),
    }
}

/// Parses a Zeek test output made of websocket_* lines. A line that is only a trace name starts
/// a section (events--out); `default_trace` names the section of an output without such lines.
fn parse_event_output(
    text: &str,
    default_trace: Option<&str>,
    has_messages: bool,
    report: &mut Report,
    what: &str,
) -> Vec<Section> {
    let mut sections: Vec<Section> = Vec::new();
    if let Some(trace) = default_trace {
        sections.push(Section {
            trace: trace.into(),
            events: Vec::new(),
            has_messages,
        });
    }
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        if line.starts_with("###") || line.trim().is_empty() {
            continue;
        }
        if !line.contains(", ") && (line.ends_with(".pcap") || line.ends_with(".pcapng")) {
            sections.push(Section {
                trace: line.trim().into(),
                events: Vec::new(),
                has_messages,
            });
            continue;
        }
        let Some(section) = sections.last_mut() else {
            report.fail(format!("{what}:{line_no}: event before any trace name"));
            continue;
        };
        match parse_event_line(line) {
            Ok(event) => section.events.push((line_no, event)),
            Err(e) => report.fail(format!("{what}:{line_no}: cannot read {line:?}: {e}")),
        }
    }
    sections
}

// ---------------------------------------------------------------------------------------------
// Reporting

#[derive(Default)]
struct Report {
    failures: Vec<String>,
    summary: Vec<String>,
}

impl Report {
    fn fail(&mut self, msg: String) {
        self.failures.push(msg);
    }

    fn check(&mut self, ok: bool, msg: impl FnOnce() -> String) -> bool {
        if !ok {
            self.fail(msg());
        }
        ok
    }

    /// Zeek's value first, then wsnoop's.
    fn same<T: PartialEq + Debug>(
        &mut self,
        what: impl FnOnce() -> String,
        zeek: T,
        ws: T,
    ) -> bool {
        let ok = zeek == ws;
        if !ok {
            self.fail(format!("{}: Zeek {zeek:?}, wsnoop {ws:?}", what()));
        }
        ok
    }

    fn note(&mut self, line: String) {
        self.summary.push(line);
    }

    fn finish(self, test: &str) {
        println!("== {test}");
        for line in &self.summary {
            println!("   {line}");
        }
        if !self.failures.is_empty() {
            panic!(
                "{test}: {} disagreement(s) between wsnoop and Zeek's baselines:\n  - {}",
                self.failures.len(),
                self.failures.join("\n  - ")
            );
        }
    }
}

/// base64(SHA-1(key + GUID)), RFC 6455 4.2.2, computed here so the check does not rest on
/// wsnoop's own code.
fn expected_accept(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.trim().as_bytes());
    sha.update(WEBSOCKET_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Compares Zeek's handshake facts with wsnoop's handshake event (mapping in the module docs).
fn compare_handshake(r: &mut Report, ctx: &str, z: &ZeekHandshake, hs: &Value) {
    r.same(
        || format!("{ctx}: host"),
        z.host.clone(),
        opt_str(&hs["host"]),
    );
    r.same(|| format!("{ctx}: uri"), z.uri.clone(), opt_str(&hs["uri"]));
    r.same(
        || format!("{ctx}: user_agent"),
        z.user_agent.clone(),
        opt_str(&hs["user_agent"]),
    );
    r.same(
        || format!("{ctx}: subprotocol <-> protocol"),
        z.subprotocol.clone(),
        opt_str(&hs["protocol"]),
    );
    r.same(
        || format!("{ctx}: client_protocols <-> protocols"),
        z.client_protocols.clone().unwrap_or_default(),
        str_list(&hs["protocols"]),
    );
    r.same(
        || format!("{ctx}: client_extensions <-> extensions"),
        z.client_extensions.clone().unwrap_or_default(),
        str_list(&hs["extensions"]),
    );
    r.same(
        || format!("{ctx}: server_extensions"),
        z.server_extensions.clone().unwrap_or_default(),
        str_list(&hs["server_extensions"]),
    );
    r.same(
        || format!("{ctx}: upgraded (Zeek raised websocket_established)"),
        Some(true),
        hs["upgraded"].as_bool(),
    );
    if z.has_key_fields {
        r.same(
            || format!("{ctx}: client_key <-> key"),
            z.client_key.clone(),
            opt_str(&hs["key"]),
        );
        let verdict = match (&z.client_key, &z.server_accept) {
            (_, None) => "missing",
            (Some(key), Some(accept)) if expected_accept(key) == *accept => "ok",
            _ => "mismatch",
        };
        r.same(
            || {
                format!(
                    "{ctx}: accept verdict for Zeek's server_accept {:?}",
                    z.server_accept
                )
            },
            Some(verdict),
            hs["accept"].as_str(),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Event outputs

#[derive(Default)]
struct Tally {
    traces: usize,
    connections: usize,
    frames: usize,
    data_chunks: usize,
    payload_bytes: usize,
    data_messages: usize,
    control_messages: usize,
    closes: usize,
    close_summaries: usize,
    handshakes: usize,
}

/// A frame as Zeek's events show it.
struct ZFrame {
    line: usize,
    fin: bool,
    rsv: u8,
    opcode: String,
    len: u64,
    /// (line, chunk length, printed data).
    chunks: Vec<(usize, u64, Vec<u8>)>,
    /// (line, status, reason).
    close: Option<(usize, u16, Vec<u8>)>,
}

/// A message as Zeek's events show it.
struct ZMessage {
    line: usize,
    opcode: String,
    /// Data frames since the previous data message (0 for control messages).
    frames: u64,
    wire_len: u64,
}

#[derive(Default)]
struct ZConn {
    frames: [Vec<ZFrame>; 2],
    messages: [Vec<ZMessage>; 2],
    /// Close events in output order: (line, direction, status, reason).
    closes: Vec<(usize, usize, u16, Vec<u8>)>,
    established: Vec<(usize, Option<Box<ZeekHandshake>>)>,
}

fn compare_section(r: &mut Report, t: &mut Tally, baseline_name: &str, section: Section) {
    let trace = section.trace.clone();
    let events = wsnoop_events(&trace);
    let flows = ws_flows(&events);
    t.traces += 1;

    // Zeek's events per connection (uid), in order of first appearance.
    let mut order: Vec<String> = Vec::new();
    let mut conns: HashMap<String, ZConn> = HashMap::new();
    let mut pending: HashMap<(String, usize), (u64, u64)> = HashMap::new();
    for (line, event) in section.events {
        let uid = event.uid().to_string();
        if !conns.contains_key(&uid) {
            order.push(uid.clone());
        }
        let conn = conns.entry(uid.clone()).or_default();
        let at = |line: usize| format!("{baseline_name}:{line} ({trace})");
        match event {
            ZeekEvent::Established { record, .. } => conn.established.push((line, record)),
            ZeekEvent::Frame {
                orig,
                fin,
                rsv,
                opcode,
                len,
                ..
            } => {
                let dir = if orig { C2S } else { S2C };
                if !is_control(&opcode) {
                    let p = pending.entry((uid.clone(), dir)).or_default();
                    p.0 += 1;
                    p.1 += len;
                }
                conn.frames[dir].push(ZFrame {
                    line,
                    fin,
                    rsv,
                    opcode,
                    len,
                    chunks: Vec::new(),
                    close: None,
                });
            }
            ZeekEvent::FrameData {
                orig, len, data, ..
            } => {
                let dir = if orig { C2S } else { S2C };
                match conn.frames[dir].last_mut() {
                    Some(f) => f.chunks.push((line, len, data)),
                    None => r.fail(format!("{}: frame data before any frame", at(line))),
                }
            }
            ZeekEvent::Close {
                orig,
                status,
                reason,
                ..
            } => {
                let dir = if orig { C2S } else { S2C };
                match conn.frames[dir].last_mut() {
                    Some(f) if f.opcode == "close" && f.close.is_none() => {
                        f.close = Some((line, status, reason.clone()))
                    }
                    _ => r.fail(format!(
                        "{}: websocket_close does not follow a close frame",
                        at(line)
                    )),
                }
                conn.closes.push((line, dir, status, reason));
            }
            ZeekEvent::Message { orig, opcode, .. } => {
                let dir = if orig { C2S } else { S2C };
                let (frames, wire_len) = if is_control(&opcode) {
                    (0, 0)
                } else {
                    pending.remove(&(uid.clone(), dir)).unwrap_or_default()
                };
                conn.messages[dir].push(ZMessage {
                    line,
                    opcode,
                    frames,
                    wire_len,
                });
            }
        }
    }

    let upgraded: Vec<&WsFlow> = flows.iter().filter(|f| f.upgraded()).collect();
    let established = order
        .iter()
        .filter(|u| !conns[*u].established.is_empty())
        .count();
    r.same(
        || {
            format!(
                "{baseline_name} ({trace}): WebSocket connections (websocket_established <-> \
                 upgraded handshakes)"
            )
        },
        established,
        upgraded.len(),
    );

    for uid in &order {
        let conn = &conns[uid];
        // Which wsnoop flow: by the endpoints in the established record, else the only one.
        let record = conn.established.iter().find_map(|(_, r)| r.as_ref());
        let flow = match record {
            Some(rec) => match (rec.orig, rec.resp) {
                (Some(o), Some(p)) => find_flow(&flows, o, p),
                _ => None,
            },
            None if order.len() == 1 && upgraded.len() == 1 => Some(upgraded[0]),
            None => None,
        };
        let Some(flow) = flow else {
            r.fail(format!(
                "{baseline_name} ({trace}): no wsnoop connection for Zeek's {uid} ({:?} -> {:?})",
                record.and_then(|r| r.orig),
                record.and_then(|r| r.resp)
            ));
            continue;
        };
        t.connections += 1;
        let label = flow.label(&trace);

        if let Some(rec) = record {
            match flow.handshake() {
                Some(hs) => {
                    let line = conn.established[0].0;
                    compare_handshake(
                        r,
                        &format!("{label}: handshake vs {baseline_name}:{line} established"),
                        rec,
                        hs,
                    );
                    t.handshakes += 1;
                }
                None => r.fail(format!(
                    "{label}: Zeek established it, wsnoop has no handshake"
                )),
            }
        }

        for dir in [C2S, S2C] {
            compare_frames(
                r,
                t,
                baseline_name,
                &label,
                dir,
                &conn.frames[dir],
                &flow.frames[dir],
            );
            if section.has_messages {
                compare_messages(
                    r,
                    t,
                    baseline_name,
                    &label,
                    dir,
                    &conn.messages[dir],
                    &flow.messages[dir],
                    &flow.frames[dir],
                );
            }
        }
        compare_close_summary(r, t, baseline_name, &label, conn, flow);
    }
}

fn compare_frames(
    r: &mut Report,
    t: &mut Tally,
    baseline_name: &str,
    label: &str,
    dir: usize,
    zeek: &[ZFrame],
    ws: &[Value],
) {
    let d = dir_name(dir);
    r.same(
        || format!("{label} {d}: number of frames ({baseline_name})"),
        zeek.len(),
        ws.len(),
    );
    for (i, (z, w)) in zeek.iter().zip(ws).enumerate() {
        t.frames += 1;
        let ctx = format!(
            "{label} {d} frame #{i} (ts {}; {baseline_name}:{})",
            w["ts"], z.line
        );
        r.same(|| format!("{ctx}: fin"), Some(z.fin), w["fin"].as_bool());
        r.same(
            || format!("{ctx}: rsv"),
            Some(u64::from(z.rsv)),
            w["rsv"].as_u64(),
        );
        r.same(
            || format!("{ctx}: opcode"),
            Some(z.opcode.as_str()),
            w["opcode"].as_str(),
        );
        r.same(
            || format!("{ctx}: payload length"),
            Some(z.len),
            w["len"].as_u64(),
        );

        // Payload: Zeek's chunks, each printed as its first 120 bytes.
        let payload = ws_payload(w);
        if !r.check(
            w["truncated"].as_bool() == Some(false) && payload.len() as u64 == z.len,
            || {
                format!(
                    "{ctx}: wsnoop's payload is not whole ({} of {} bytes, truncated {})",
                    payload.len(),
                    z.len,
                    w["truncated"]
                )
            },
        ) {
            continue;
        }
        let emitted = if is_control(&z.opcode) {
            z.len.min(ZEEK_MAX_CONTROL_FRAME)
        } else {
            z.len
        };
        let chunk_total: u64 = z.chunks.iter().map(|c| c.1).sum();
        r.check(chunk_total == emitted, || {
            format!(
                "{ctx}: Zeek's frame data adds up to {chunk_total} bytes, expected {emitted} \
                 (baseline not understood)"
            )
        });
        let mut offset = 0usize;
        for (line, len, data) in &z.chunks {
            t.data_chunks += 1;
            let printed = (*len as usize).min(ZEEK_DATA_PRINTED);
            r.check(data.len() == printed, || {
                format!(
                    "{baseline_name}:{line}: decoded {} bytes of frame data, Zeek printed {printed} \
                     (escaping not understood)",
                    data.len()
                )
            });
            let end = (offset + data.len()).min(payload.len());
            let mine = &payload[offset.min(end)..end];
            if mine != data.as_slice() {
                let at = mine
                    .iter()
                    .zip(data)
                    .position(|(a, b)| a != b)
                    .unwrap_or(mine.len().min(data.len()));
                r.fail(format!(
                    "{ctx}: payload differs from websocket_frame_data ({baseline_name}:{line}) at \
                     byte {}: Zeek \"{}\", wsnoop \"{}\"",
                    offset + at,
                    show(&data[at.min(data.len())..]),
                    show(&mine[at.min(mine.len())..]),
                ));
            }
            t.payload_bytes += data.len();
            offset += *len as usize;
        }

        // Close frames: status and reason.
        if z.opcode == "close" {
            let Some((line, status, reason)) = &z.close else {
                r.fail(format!(
                    "{ctx}: Zeek printed no websocket_close for this close frame"
                ));
                continue;
            };
            t.closes += 1;
            let zeek_code = if *status == 0 && z.len == 0 {
                None
            } else {
                Some(u64::from(*status))
            };
            r.same(
                || format!("{ctx}: close status ({baseline_name}:{line}; 0 = no status)"),
                zeek_code,
                w["close_code"].as_u64(),
            );
            r.same(
                || format!("{ctx}: close reason ({baseline_name}:{line})"),
                show(reason),
                show(w["close_reason"].as_str().unwrap_or_default().as_bytes()),
            );
        }
    }
    for (i, z) in zeek.iter().enumerate().skip(ws.len()) {
        r.fail(format!(
            "{label} {d}: Zeek's frame #{i} ({baseline_name}:{}: {} len {}) is missing in wsnoop",
            z.line, z.opcode, z.len
        ));
    }
    for (i, w) in ws.iter().enumerate().skip(zeek.len()) {
        r.fail(format!(
            "{label} {d}: wsnoop's frame #{i} (ts {}, {} len {}) is not in {baseline_name}",
            w["ts"], w["opcode"], w["len"]
        ));
    }
}

#[allow(clippy::too_many_arguments)]
fn compare_messages(
    r: &mut Report,
    t: &mut Tally,
    baseline_name: &str,
    label: &str,
    dir: usize,
    zeek: &[ZMessage],
    ws_messages: &[Value],
    ws_frames: &[Value],
) {
    let d = dir_name(dir);
    let (z_data, z_control): (Vec<&ZMessage>, Vec<&ZMessage>) =
        zeek.iter().partition(|m| !is_control(&m.opcode));
    r.same(
        || format!("{label} {d}: number of data messages ({baseline_name})"),
        z_data.len(),
        ws_messages.len(),
    );
    for (i, (z, w)) in z_data.iter().zip(ws_messages).enumerate() {
        t.data_messages += 1;
        let ctx = format!("{label} {d} message #{i} ({baseline_name}:{})", z.line);
        r.same(
            || format!("{ctx}: opcode"),
            Some(z.opcode.as_str()),
            w["opcode"].as_str(),
        );
        r.same(
            || format!("{ctx}: frames"),
            Some(z.frames),
            w["frames"].as_u64(),
        );
        r.same(
            || format!("{ctx}: wire length"),
            Some(z.wire_len),
            w["wire_len"].as_u64(),
        );
    }
    // Control messages are single control frames for wsnoop.
    let ws_control: Vec<&Value> = ws_frames
        .iter()
        .filter(|f| is_control(f["opcode"].as_str().unwrap_or_default()))
        .collect();
    r.same(
        || format!("{label} {d}: number of control messages ({baseline_name}) <-> control frames"),
        z_control.len(),
        ws_control.len(),
    );
    for (i, (z, w)) in z_control.iter().zip(&ws_control).enumerate() {
        t.control_messages += 1;
        r.same(
            || {
                format!(
                    "{label} {d} control message #{i} ({baseline_name}:{}): opcode",
                    z.line
                )
            },
            Some(z.opcode.as_str()),
            w["opcode"].as_str(),
        );
    }
}

fn compare_close_summary(
    r: &mut Report,
    t: &mut Tally,
    baseline_name: &str,
    label: &str,
    conn: &ZConn,
    flow: &WsFlow,
) {
    let [close] = flow.closes.as_slice() else {
        r.fail(format!(
            "{label}: wsnoop reported {} close events, expected one",
            flow.closes.len()
        ));
        return;
    };
    t.close_summaries += 1;
    let ctx = format!("{label}: close event vs websocket_close lines of {baseline_name}");
    let code = |status: u16, reason: &[u8]| {
        // Zeek's 0 is its placeholder for "no status".
        if status == 0 && reason.is_empty() {
            None
        } else {
            Some(u64::from(status))
        }
    };
    let first = conn.closes.first();
    let side = |dir: usize| if dir == C2S { "client" } else { "server" };
    r.same(
        || format!("{ctx}: initiator"),
        first.map(|c| side(c.1)),
        close["initiator"].as_str(),
    );
    r.same(
        || format!("{ctx}: code"),
        first.and_then(|c| code(c.2, &c.3)),
        close["code"].as_u64(),
    );
    r.same(
        || format!("{ctx}: reason"),
        first.map(|c| show(&c.3)),
        close["reason"].as_str().map(|s| show(s.as_bytes())),
    );
    let reply = first.and_then(|f| conn.closes.iter().find(|c| c.1 != f.1));
    r.same(
        || format!("{ctx}: replied"),
        Some(reply.is_some()),
        close["replied"].as_bool(),
    );
    r.same(
        || format!("{ctx}: reply_code"),
        reply.and_then(|c| code(c.2, &c.3)),
        close["reply_code"].as_u64(),
    );
}

fn check_event_output(r: &mut Report, t: &mut Tally, name: &str, sections: Vec<Section>) {
    r.check(!sections.is_empty(), || {
        format!("{name}: no trace sections")
    });
    for section in sections {
        r.check(!section.events.is_empty(), || {
            format!("{name}: no events for {}", section.trace)
        });
        compare_section(r, t, name, section);
    }
}

fn tally_note(r: &mut Report, name: &str, t: &Tally) {
    r.note(format!(
        "{name}: {} traces, {} connections, {} handshakes (established records), {} frames \
         (fin/rsv/opcode/len), {} frame-data chunks ({} payload bytes), {} data messages, {} \
         control messages, {} close frames, {} close events",
        t.traces,
        t.connections,
        t.handshakes,
        t.frames,
        t.data_chunks,
        t.payload_bytes,
        t.data_messages,
        t.control_messages,
        t.closes,
        t.close_summaries
    ));
}

#[test]
fn events_out_matches_wsnoop() {
    let mut r = Report::default();
    let mut t = Tally::default();
    let sections = parse_event_output(&baseline(EVENTS_OUT), None, true, &mut r, EVENTS_OUT);
    let traces: Vec<String> = sections.iter().map(|s| s.trace.clone()).collect();
    check_event_output(&mut r, &mut t, EVENTS_OUT, sections);
    tally_note(&mut r, EVENTS_OUT, &t);
    r.note(format!("traces: {}", traces.join(", ")));
    r.check(t.frames > 0 && t.payload_bytes > 0, || {
        "events--out: nothing was compared".into()
    });
    r.finish("events--out");
}

#[test]
fn coalesced_reply_ping_outs_match_wsnoop() {
    let mut r = Report::default();
    for (name, trace, has_messages) in SINGLE_TRACE_EVENT_OUTS {
        let mut t = Tally::default();
        let sections =
            parse_event_output(&baseline(name), Some(trace), *has_messages, &mut r, name);
        check_event_output(&mut r, &mut t, name, sections);
        r.check(t.frames > 0, || format!("{name}: no frames compared"));
        tally_note(&mut r, name, &t);
    }
    r.finish("coalesced-reply-ping--out-*");
}

// ---------------------------------------------------------------------------------------------
// websocket.log

#[test]
fn websocket_logs_match_handshakes() {
    let mut r = Report::default();
    let mut rows_total = 0;
    for (name, trace) in WEBSOCKET_LOGS {
        let log = ZeekLog::parse(&baseline(name));
        let flows = ws_flows(&wsnoop_events(trace));
        let upgraded = flows.iter().filter(|f| f.upgraded()).count();
        for field in [
            "host",
            "uri",
            "user_agent",
            "subprotocol",
            "client_protocols",
            "server_extensions",
            "client_extensions",
        ] {
            r.check(log.fields.iter().any(|f| f == field), || {
                format!("{name}: no {field} column")
            });
        }
        r.same(
            || format!("{name} ({trace}): rows <-> upgraded handshakes"),
            log.rows.len(),
            upgraded,
        );
        for (line, row) in &log.rows {
            rows_total += 1;
            let z = log.handshake(row);
            let ctx = format!("{name}:{line} ({trace})");
            let (Some(orig), Some(resp)) = (z.orig, z.resp) else {
                r.fail(format!("{ctx}: no endpoints in the row"));
                continue;
            };
            let Some(flow) = find_flow(&flows, orig, resp) else {
                r.fail(format!("{ctx}: wsnoop has no connection {orig} -> {resp}"));
                continue;
            };
            let Some(hs) = flow.handshake() else {
                r.fail(format!(
                    "{ctx}: wsnoop has no handshake on {orig} -> {resp}"
                ));
                continue;
            };
            compare_handshake(&mut r, &format!("{} vs {ctx}", flow.label(trace)), &z, hs);
        }
        r.note(format!(
            "{name} <-> {trace}: {} handshake(s)",
            log.rows.len()
        ));
    }
    r.check(rows_total > 0, || "no websocket.log rows compared".into());
    r.note(format!(
        "{} websocket.log baselines, {rows_total} handshakes compared",
        WEBSOCKET_LOGS.len()
    ));
    r.finish("*--websocket.log");
}

// ---------------------------------------------------------------------------------------------
// weird.log

fn anomalies<'a>(flow: &'a WsFlow, kind: &str) -> Vec<&'a Value> {
    flow.anomalies
        .iter()
        .filter(|a| a["kind"].as_str() == Some(kind))
        .collect()
}

#[test]
fn weird_logs_match_wsnoop() {
    let mut r = Report::default();
    let mut compared = 0;
    for (name, trace) in WEIRD_LOGS {
        let log = ZeekLog::parse(&baseline(name));
        let flows = ws_flows(&wsnoop_events(trace));
        r.check(!log.rows.is_empty(), || format!("{name}: no rows"));
        for (line, row) in &log.rows {
            compared += 1;
            let ctx = format!("{name}:{line} ({trace})");
            let (Some(orig), Some(resp)) = log.endpoints(row) else {
                r.fail(format!("{ctx}: no endpoints in the row"));
                continue;
            };
            let Some(flow) = find_flow(&flows, orig, resp) else {
                r.fail(format!("{ctx}: wsnoop has no connection {orig} -> {resp}"));
                continue;
            };
            let label = flow.label(trace);
            let weird = log.string(row, "name").unwrap_or_default();
            let addl = log.string(row, "addl").unwrap_or_default();
            match weird.as_str() {
                "websocket_wrong_accept_header" => {
                    check_wrong_accept(&mut r, &ctx, &label, flow, &addl)
                }
                "websocket_control_frame_size_exceeded" => {
                    check_control_too_long(&mut r, &ctx, &label, flow, &addl)
                }
                "protocol_data_with_HTTP_upgrade_reply" => {
                    check_data_with_upgrade_reply(&mut r, &ctx, &label, flow, &addl)
                }
                other => r.fail(format!(
                    "{ctx}: weird {other:?} has no mapping to wsnoop in this test"
                )),
            }
            r.note(format!("{name}: {weird} ({addl}) <-> {label}"));
        }
    }
    r.note(format!("{compared} weird rows compared"));
    r.finish("*--weird*.log");
}

/// `expected=X, found=Y` <-> accept "mismatch" and an accept_mismatch anomaly naming X and Y.
fn check_wrong_accept(r: &mut Report, ctx: &str, label: &str, flow: &WsFlow, addl: &str) {
    let mut expected = None;
    let mut found = None;
    for part in addl.split(", ") {
        if let Some(v) = part.strip_prefix("expected=") {
            expected = Some(v.to_string());
        } else if let Some(v) = part.strip_prefix("found=") {
            found = Some(v.to_string());
        }
    }
    let (Some(expected), Some(found)) = (expected, found) else {
        r.fail(format!("{ctx}: cannot read addl {addl:?}"));
        return;
    };
    let Some(hs) = flow.handshake() else {
        r.fail(format!("{ctx}: {label} has no handshake"));
        return;
    };
    r.same(
        || format!("{ctx}: {label} handshake accept"),
        Some("mismatch"),
        hs["accept"].as_str(),
    );
    // Zeek's expected value is what RFC 6455 4.2.2 asks for, given the key wsnoop saw.
    r.same(
        || format!("{ctx}: expected accept vs base64(SHA-1(wsnoop's key + GUID))"),
        Some(expected.clone()),
        hs["key"].as_str().map(expected_accept),
    );
    let found_anomalies = anomalies(flow, "accept_mismatch");
    r.same(
        || format!("{ctx}: {label}: number of accept_mismatch anomalies"),
        1,
        found_anomalies.len(),
    );
    for a in found_anomalies {
        let detail = a["detail"].as_str().unwrap_or_default();
        let tokens: Vec<&str> = detail
            .split(|c: char| !(c.is_ascii_alphanumeric() || "+/=-".contains(c)))
            .filter(|s| !s.is_empty())
            .collect();
        r.check(tokens.contains(&expected.as_str()), || {
            format!("{ctx}: accept_mismatch detail {detail:?} does not name Zeek's expected value {expected:?}")
        });
        r.check(tokens.contains(&found.as_str()), || {
            format!(
                "{ctx}: accept_mismatch detail {detail:?} does not name the value found, {found:?}"
            )
        });
    }
}

/// `N > 125` <-> a control_frame_too_long anomaly on a control frame of length N.
fn check_control_too_long(r: &mut Report, ctx: &str, label: &str, flow: &WsFlow, addl: &str) {
    let numbers: Vec<u64> = addl
        .split(" > ")
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let [len, limit] = numbers[..] else {
        r.fail(format!("{ctx}: cannot read addl {addl:?}"));
        return;
    };
    r.same(
        || format!("{ctx}: Zeek's limit"),
        ZEEK_MAX_CONTROL_FRAME,
        limit,
    );
    let frames: Vec<&Value> = [C2S, S2C]
        .iter()
        .flat_map(|&d| &flow.frames[d])
        .filter(|f| {
            is_control(f["opcode"].as_str().unwrap_or_default()) && f["len"].as_u64() == Some(len)
        })
        .collect();
    let [frame] = frames[..] else {
        r.fail(format!(
            "{ctx}: {label}: expected one control frame of {len} bytes, wsnoop has {}",
            frames.len()
        ));
        return;
    };
    let on_frame: Vec<&Value> = anomalies(flow, "control_frame_too_long")
        .into_iter()
        .filter(|a| a["dir"] == frame["dir"] && a["ts"] == frame["ts"])
        .collect();
    r.same(
        || {
            format!(
                "{ctx}: {label}: control_frame_too_long anomalies on the {} {} frame of {len} bytes (ts {})",
                frame["dir"], frame["opcode"], frame["ts"]
            )
        },
        1,
        on_frame.len(),
    );
    for a in on_frame {
        let detail = a["detail"].as_str().unwrap_or_default();
        r.check(detail.contains(&len.to_string()), || {
            format!(
                "{ctx}: control_frame_too_long detail {detail:?} does not give the length {len}"
            )
        });
    }
}

/// Zeek's HTTP analyzer saw `addl` bytes after the 101 in the same segment: wsnoop must decode
/// them as server frames, which share the handshake's timestamp and add up to that many bytes.
fn check_data_with_upgrade_reply(
    r: &mut Report,
    ctx: &str,
    label: &str,
    flow: &WsFlow,
    addl: &str,
) {
    let Ok(bytes) = addl.trim().parse::<u64>() else {
        r.fail(format!("{ctx}: cannot read addl {addl:?}"));
        return;
    };
    let Some(hs) = flow.handshake() else {
        r.fail(format!("{ctx}: {label} has no handshake"));
        return;
    };
    let with_reply: Vec<&Value> = flow.frames[S2C]
        .iter()
        .filter(|f| f["ts"] == hs["ts"])
        .collect();
    r.check(!with_reply.is_empty(), || {
        format!(
            "{ctx}: {label}: no server frame in the 101's segment (ts {}): the data after the \
             upgrade reply was not decoded",
            hs["ts"]
        )
    });
    r.same(
        || format!("{ctx}: {label}: wire bytes of the server frames in the 101's segment"),
        bytes,
        with_reply.iter().map(|f| frame_wire_len(f)).sum::<u64>(),
    );
    r.note(format!(
        "{label}: frames in the 101's segment: {}",
        with_reply
            .iter()
            .map(|f| format!("{} len {}", f["opcode"], f["len"]))
            .collect::<Vec<_>>()
            .join(", ")
    ));
}

// ---------------------------------------------------------------------------------------------
// The other outputs

#[test]
fn close_too_large_uncapped_out() {
    let (name, trace) = CLOSE_UNCAPPED_OUT;
    let mut r = Report::default();
    let lengths: Vec<u64> = baseline(name)
        .lines()
        .filter_map(|l| l.strip_prefix("Close length: "))
        .map(|n| n.trim().parse().expect("Close length is a number"))
        .collect();
    r.check(!lengths.is_empty(), || {
        format!("{name}: no Close length line")
    });
    let flows = ws_flows(&wsnoop_events(trace));
    let closes: Vec<&Value> = flows
        .iter()
        .flat_map(|f| f.frames.iter().flatten())
        .filter(|f| f["opcode"].as_str() == Some("close"))
        .collect();
    r.same(
        || format!("{name} ({trace}): close frames"),
        lengths.len(),
        closes.len(),
    );
    for (i, (len, frame)) in lengths.iter().zip(&closes).enumerate() {
        let reason = frame["close_reason"].as_str().unwrap_or_default();
        r.same(
            || {
                format!(
                    "{name} ({trace}): close #{i} (ts {}) reason length",
                    frame["ts"]
                )
            },
            *len,
            reason.len() as u64,
        );
    }
    r.note(format!(
        "{name} <-> {trace}: {} close reason length(s)",
        lengths.len()
    ));
    r.finish(name);
}

/// The header fields of the HTTP messages in `stream`: (NAME in upper case, value).
fn http_headers(stream: &[u8]) -> Result<Vec<(String, String)>, String> {
    let text = String::from_utf8_lossy(stream);
    let mut rest: &str = &text;
    let mut headers = Vec::new();
    while !rest.is_empty() {
        let end = rest
            .find("\r\n\r\n")
            .ok_or("an HTTP head without its end")?;
        let mut body = 0usize;
        for line in rest[..end].split("\r\n").skip(1) {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| format!("header line {line:?}"))?;
            let (name, value) = (name.trim().to_ascii_uppercase(), value.trim().to_string());
            if name == "CONTENT-LENGTH" {
                body = value.parse().map_err(|e| format!("Content-Length: {e}"))?;
            }
            headers.push((name, value));
        }
        let next = (end + 4 + body).min(rest.len());
        rest = &rest[next..];
    }
    Ok(headers)
}

#[test]
fn fragmented_http_reply_out() {
    let (name, trace) = FRAGMENTED_REPLY_OUT;
    let mut r = Report::default();
    let mut established = 0;
    let mut zeek: [Vec<(String, String)>; 2] = Default::default();
    for (n, line) in baseline(name).lines().enumerate() {
        if line.starts_with("###") || line.trim().is_empty() {
            continue;
        }
        if line == "websocket_established" {
            established += 1;
            continue;
        }
        let p: Vec<&str> = line.splitn(4, ", ").collect();
        match (
            p.first(),
            p.get(1).and_then(|b| zeek_bool(b)),
            p.get(2),
            p.get(3),
        ) {
            (Some(&"http_header"), Some(orig), Some(hname), Some(value)) => {
                zeek[if orig { C2S } else { S2C }].push((
                    hname.to_string(),
                    String::from_utf8_lossy(&zeek_unescape(value)).into_owned(),
                ))
            }
            _ => r.fail(format!("{name}:{}: cannot read {line:?}", n + 1)),
        }
    }
    let flows = ws_flows(&wsnoop_events(trace));
    let upgraded: Vec<&WsFlow> = flows.iter().filter(|f| f.upgraded()).collect();
    r.same(
        || format!("{name} ({trace}): websocket_established <-> upgraded handshakes"),
        established,
        upgraded.len(),
    );
    if let [flow] = upgraded[..] {
        let label = flow.label(trace);
        for dir in [C2S, S2C] {
            let mut stream = Vec::new();
            for m in &flow.messages[dir] {
                r.check(m["truncated"].as_bool() == Some(false), || {
                    format!("{label}: message at ts {} is truncated", m["ts"])
                });
                stream.extend(ws_payload(m));
            }
            match http_headers(&stream) {
                Ok(headers) => r.same(
                    || {
                        format!(
                            "{label} {}: headers of the tunnelled HTTP (from {} message(s), {} frame(s))",
                            dir_name(dir),
                            flow.messages[dir].len(),
                            flow.messages[dir]
                                .iter()
                                .map(|m| m["frames"].as_u64().unwrap_or(0))
                                .sum::<u64>()
                        )
                    },
                    zeek[dir].clone(),
                    headers,
                ),
                Err(e) => {
                    r.fail(format!(
                        "{label} {}: wsnoop's messages are not HTTP ({e}): \"{}\"",
                        dir_name(dir),
                        show(&stream)
                    ));
                    false
                }
            };
        }
        r.note(format!(
            "{name} <-> {label}: {} client and {} server header(s) of the tunnelled HTTP, \
             server reply from {} frame(s)",
            zeek[C2S].len(),
            zeek[S2C].len(),
            flow.messages[S2C]
                .iter()
                .map(|m| m["frames"].as_u64().unwrap_or(0))
                .sum::<u64>()
        ));
    }
    r.check(!zeek[C2S].is_empty() && !zeek[S2C].is_empty(), || {
        format!("{name}: no http_header lines")
    });
    r.finish(name);
}

#[test]
fn configure_break_out() {
    // Only the `WebSocket::configure_analyzer` lines are compared: the hook runs once per
    // established WebSocket. The `disabling_analyzer` lines are the consequence of the test's
    // Zeek-only configuration (breaking from the hook), which wsnoop has no counterpart for.
    let (name, log_name, trace) = CONFIGURE_BREAK_OUT;
    let mut r = Report::default();
    let log = ZeekLog::parse(&baseline(log_name));
    let flows = ws_flows(&wsnoop_events(trace));
    let upgraded = flows.iter().filter(|f| f.upgraded()).count();
    let mut configured = 0;
    for (n, line) in baseline(name).lines().enumerate() {
        let p: Vec<&str> = line.split(", ").collect();
        match p.first() {
            Some(&"WebSocket::configure_analyzer") => {
                configured += 1;
                let uid = p.get(1).copied().unwrap_or_default();
                let row = log
                    .rows
                    .iter()
                    .find(|(_, row)| log.raw(row, "uid") == Some(uid));
                let flow = row.and_then(|(_, row)| match log.endpoints(row) {
                    (Some(o), Some(s)) => find_flow(&flows, o, s),
                    _ => None,
                });
                r.check(flow.is_some_and(WsFlow::upgraded), || {
                    format!(
                        "{name}:{}: Zeek configured the WebSocket analyzer of {uid} ({log_name} \
                         row {:?}), wsnoop has no upgraded connection for it",
                        n + 1,
                        row.map(|(l, _)| l)
                    )
                });
            }
            Some(&"disabling_analyzer") => {} // Zeek-only configuration, see above
            _ if line.starts_with("###") || line.trim().is_empty() => {}
            _ => r.fail(format!("{name}:{}: cannot read {line:?}", n + 1)),
        }
    }
    r.same(
        || format!("{name} ({trace}): configure_analyzer calls <-> upgraded handshakes"),
        configured,
        upgraded,
    );
    r.note(format!(
        "{name} <-> {trace}: {configured} established WebSocket(s); disabling_analyzer lines skipped (Zeek-only hook)"
    ));
    r.finish(name);
}

/// Every baseline file is either compared above or listed here as not comparable, so a new
/// baseline cannot be skipped silently.
#[test]
fn every_baseline_is_accounted_for() {
    let mut known: Vec<&str> = vec![
        EVENTS_OUT,
        CLOSE_UNCAPPED_OUT.0,
        FRAGMENTED_REPLY_OUT.0,
        CONFIGURE_BREAK_OUT.0,
    ];
    known.extend(WEBSOCKET_LOGS.iter().map(|(b, _)| *b));
    known.extend(WEIRD_LOGS.iter().map(|(b, _)| *b));
    known.extend(SINGLE_TRACE_EVENT_OUTS.iter().map(|(b, ..)| *b));
    let dir = zeek_dir().join("baselines");
    let mut present: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    present.sort();
    let unknown: Vec<&String> = present
        .iter()
        .filter(|p| !known.contains(&p.as_str()))
        .collect();
    let missing: Vec<&&str> = known
        .iter()
        .filter(|k| !present.iter().any(|p| p == **k))
        .collect();
    // Every trace a baseline names exists.
    let mut traces: Vec<&str> = WEBSOCKET_LOGS.iter().map(|(_, t)| *t).collect();
    traces.extend(WEIRD_LOGS.iter().map(|(_, t)| *t));
    traces.extend(SINGLE_TRACE_EVENT_OUTS.iter().map(|(_, t, _)| *t));
    traces.extend([
        CLOSE_UNCAPPED_OUT.1,
        FRAGMENTED_REPLY_OUT.1,
        CONFIGURE_BREAK_OUT.2,
    ]);
    for t in &traces {
        trace_path(t);
    }
    println!(
        "== baselines: {} present, all compared by this test",
        present.len()
    );
    assert!(
        unknown.is_empty() && missing.is_empty(),
        "baselines this test does not compare: {unknown:?}; baselines it expects but cannot find: \
         {missing:?} (in {})",
        dir.display()
    );
}

#[test]
fn zeek_escaping_is_decoded() {
    assert_eq!(zeek_unescape(r"\x03\xe8"), vec![3, 0xe8]);
    assert_eq!(zeek_unescape(r"a\\b\x0d\x0a"), b"a\\b\r\n".to_vec());
    assert_eq!(zeek_unescape(r" there!"), b" there!".to_vec());
    assert_eq!(zeek_unescape(r"\xzz"), br"\xzz".to_vec());
    assert_eq!(zeek_opcode("unknown-b"), "reserved-11");
    let rec = parse_established_record(
        "[ts=X, uid=C1, id=[orig_h=127.0.0.1, orig_p=1/tcp, resp_h=::1, resp_p=2/tcp, proto=6, \
         ctx=[]], host=h, uri=/a, b, user_agent=<uninitialized>, subprotocol=v1, \
         client_protocols=[v1, v2], server_extensions=<uninitialized>, client_extensions=[x; y], \
         client_key=k, server_accept=a]",
    )
    .unwrap();
    assert_eq!(rec.orig, Some("127.0.0.1:1".parse().unwrap()));
    assert_eq!(rec.resp, Some("[::1]:2".parse().unwrap()));
    assert_eq!(rec.uri.as_deref(), Some("/a, b"));
    assert_eq!(rec.user_agent, None);
    assert_eq!(rec.client_protocols, Some(vec!["v1".into(), "v2".into()]));
    assert_eq!(rec.server_extensions, None);
    assert_eq!(rec.client_extensions, Some(vec!["x; y".into()]));
    assert_eq!(
        expected_accept("dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" // RFC 6455 1.3
    );
}
