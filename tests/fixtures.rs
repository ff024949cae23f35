//! Ground truth test: every capture in fixtures/ that has a `NAME.expected.json` is decoded by
//! wsnoop and compared with what the sending programs logged they sent (see fixtures/README.md).
//!
//! Every value compared comes from the expected files (application payloads before compression
//! and masking, fragment counts and sizes, pings, close codes and reasons, the negotiated
//! extension), never from an earlier wsnoop run. The one exception is the pcapng and
//! microsecond checks, which compare wsnoop's view of two encodings of the same packets with
//! each other (and both with the expected file).
//!
//! Per connection (matched by client and server address and port):
//! - the handshake: uri == path, status, upgraded, accept "ok" when upgraded, the 101's
//!   extensions == `compression`, endpoints formatted as `ip:port` / `[v6]:port`;
//! - the messages of each direction, in order, exactly: opcode, length after decompression,
//!   text or bytes (hex) or SHA-256, not truncated / incomplete / undecodable, compressed
//!   exactly when an extension was negotiated, frame count (fragments, or 1);
//! - for uncompressed connections, the frame lengths of fragmented messages == fragment_lens;
//! - ping and pong frames per direction, in order, with their payloads;
//! - the close event (initiator, code, reason, reply code, replied, clean) and the two close
//!   frames (code and reason each way);
//! - a refused upgrade has no frames, messages or close;
//! - no anomaly event anywhere, and no WebSocket event on a connection the fixture does not list.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use serde_json::Value;

/// Large enough that no payload of any fixture is cut.
const MAX_PAYLOAD: &str = "100000000";

// ---------------------------------------------------------------------------------------------
// Running wsnoop

/// One output line: its raw text (for the timestamp's digits) and its parsed value.
struct Line {
    raw: String,
    value: Value,
}

/// Runs `wsnoop -r CAPTURE --json --max-payload MAX_PAYLOAD` and returns every line.
fn run(capture: &Path) -> Vec<Line> {
    let out = Command::new(common::wsnoop_bin())
        .arg("-r")
        .arg(capture)
        .arg("--json")
        .arg("--max-payload")
        .arg(MAX_PAYLOAD)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", common::wsnoop_bin().display()));
    assert!(
        out.status.success(),
        "wsnoop -r {} --json failed ({}): {}",
        capture.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout)
        .unwrap_or_else(|e| panic!("{}: output is not UTF-8: {e}", capture.display()));
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| Line {
            raw: l.to_string(),
            value: serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}: line is not JSON ({e}): {l}", capture.display())),
        })
        .collect()
}

/// The digits after the decimal point of the raw `"ts":` value of a line.
fn ts_fraction(raw: &str) -> Option<&str> {
    let at = raw.find("\"ts\":")? + 5;
    let rest = &raw[at..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    let number = &rest[..end];
    let (secs, frac) = number.split_once('.')?;
    (!secs.is_empty()
        && secs.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit()))
    .then_some(frac)
}

// ---------------------------------------------------------------------------------------------
// Small helpers

fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn u(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

fn b(v: &Value, key: &str) -> Option<bool> {
    v.get(key).and_then(Value::as_bool)
}

fn hex_decode(hex: &str) -> Vec<u8> {
    assert!(hex.len().is_multiple_of(2), "odd hex string {hex:?}");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A short printable view of bytes for failure messages.
fn preview(bytes: &[u8]) -> String {
    if bytes.len() <= 48 {
        hex_encode(bytes)
    } else {
        format!(
            "{}... ({} bytes, sha256 {})",
            hex_encode(&bytes[..48]),
            bytes.len(),
            hex_encode(&sha256(bytes))
        )
    }
}

/// SHA-256, from RustCrypto's sha2 (the family of the sha1 crate wsnoop uses).
fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

/// The payload bytes of a frame or message event: its "text" or its base64 "data".
fn payload_bytes(event: &Value) -> Result<Vec<u8>, String> {
    if let Some(text) = s(event, "text") {
        return Ok(text.as_bytes().to_vec());
    }
    match s(event, "data") {
        Some(data) => base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| format!("bad base64 in \"data\": {e}")),
        None => Err("neither \"text\" nor \"data\"".to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// Expected files

struct Fixture {
    name: String,
    expected: Value,
    capture: PathBuf,
}

/// Every `*.expected.json` in fixtures/, sorted by name. Panics when there is none.
fn fixtures() -> Vec<Fixture> {
    let dir = common::fixtures_dir();
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading fixtures directory {}: {e}", dir.display()));
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.expect("directory entry").path();
        let Some(file) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(name) = file.strip_suffix(".expected.json") else {
            continue;
        };
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let expected: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        let capture_name = s(&expected, "fixture")
            .unwrap_or_else(|| panic!("{}: no \"fixture\" field", path.display()));
        let capture = dir.join(capture_name);
        assert!(
            capture.is_file(),
            "{}: capture {} does not exist",
            path.display(),
            capture.display()
        );
        assert!(
            expected
                .get("connections")
                .and_then(Value::as_array)
                .is_some_and(|c| !c.is_empty()),
            "{}: no connections",
            path.display()
        );
        out.push(Fixture {
            name: name.to_string(),
            expected,
            capture,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(
        !out.is_empty(),
        "no *.expected.json in {}: the fixtures are missing (make them with \
         fixtures/make-fixtures.sh)",
        dir.display()
    );
    out
}

fn fixture(name: &str) -> Fixture {
    fixtures()
        .into_iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("fixture {name} has no expected.json"))
}

fn connections(expected: &Value) -> &Vec<Value> {
    expected["connections"].as_array().expect("connections")
}

fn server_endpoint(expected: &Value) -> SocketAddr {
    let ip: IpAddr = s(expected, "server_addr")
        .expect("server_addr")
        .parse()
        .expect("server_addr is an IP address");
    let port = u(expected, "server_port").expect("server_port");
    SocketAddr::new(ip, u16::try_from(port).expect("port"))
}

/// A connection's client and server. A fixture with connections over several interfaces says
/// each one's `server_addr` and `client_addr`; otherwise the capture is on loopback and the
/// client has the server's address.
fn endpoints(expected: &Value, conn: &Value) -> (SocketAddr, SocketAddr) {
    let mut server = server_endpoint(expected);
    if let Some(ip) = s(conn, "server_addr") {
        server.set_ip(
            ip.parse()
                .expect("a connection's server_addr is an IP address"),
        );
    }
    let client_ip = s(conn, "client_addr").map_or(server.ip(), |ip| {
        ip.parse()
            .expect("a connection's client_addr is an IP address")
    });
    let port = u(conn, "client_port").expect("client_port");
    (
        SocketAddr::new(client_ip, u16::try_from(port).expect("port")),
        server,
    )
}

// ---------------------------------------------------------------------------------------------
// wsnoop's events, grouped

/// The events of one connection (one flow id), in output order.
#[derive(Default)]
struct Flow<'a> {
    client: String,
    server: String,
    events: Vec<&'a Value>,
}

impl<'a> Flow<'a> {
    fn of_type(&self, kind: &'a str) -> impl Iterator<Item = &'a Value> + '_ {
        self.events
            .iter()
            .copied()
            .filter(move |e| s(e, "type") == Some(kind))
    }

    fn frames(&self, dir: &'a str) -> Vec<&'a Value> {
        self.of_type("frame")
            .filter(|e| s(e, "dir") == Some(dir))
            .collect()
    }
}

/// Groups the events by flow id.
fn flows(lines: &[Line]) -> BTreeMap<u64, Flow<'_>> {
    let mut out: BTreeMap<u64, Flow<'_>> = BTreeMap::new();
    for line in lines {
        let Some(id) = u(&line.value, "flow") else {
            continue;
        };
        let flow = out.entry(id).or_default();
        if flow.client.is_empty() {
            flow.client = s(&line.value, "client").unwrap_or_default().to_string();
            flow.server = s(&line.value, "server").unwrap_or_default().to_string();
        }
        flow.events.push(&line.value);
    }
    out
}

const WS_EVENT_TYPES: [&str; 4] = ["frame", "message", "close", "anomaly"];

// ---------------------------------------------------------------------------------------------
// The comparison

/// Compares wsnoop's output for one fixture with its expected file; returns every difference.
fn check_fixture(fx: &Fixture, lines: &[Line]) -> Vec<String> {
    let mut errors = Vec::new();
    let mut err = |msg: String| errors.push(format!("{}: {msg}", fx.name));
    let expected = &fx.expected;
    let compression_none = |c: &Value| s(c, "compression").unwrap_or("none") == "none";

    for line in lines {
        if s(&line.value, "type") == Some("anomaly") {
            err(format!("anomaly event: {}", line.raw));
        }
    }

    let flows = flows(lines);
    // (client, server) -> flow ids.
    let mut by_endpoints: BTreeMap<(SocketAddr, SocketAddr), Vec<u64>> = BTreeMap::new();
    for (&id, flow) in &flows {
        match (
            flow.client.parse::<SocketAddr>(),
            flow.server.parse::<SocketAddr>(),
        ) {
            (Ok(c), Ok(srv)) => by_endpoints.entry((c, srv)).or_default().push(id),
            _ => err(format!(
                "flow {id}: endpoints {:?} / {:?} are not ip:port",
                flow.client, flow.server
            )),
        }
    }

    let listed: BTreeSet<(SocketAddr, SocketAddr)> = connections(expected)
        .iter()
        .map(|c| endpoints(expected, c))
        .collect();
    // A connection that the fixture does not list carries no WebSocket (e.g. Chromium's page).
    for (&id, flow) in &flows {
        let listed_here = match (
            flow.client.parse::<SocketAddr>(),
            flow.server.parse::<SocketAddr>(),
        ) {
            (Ok(c), Ok(srv)) => listed.contains(&(c, srv)),
            _ => false,
        };
        if !listed_here {
            for e in &flow.events {
                let kind = s(e, "type").unwrap_or_default();
                if WS_EVENT_TYPES.contains(&kind)
                    || (kind == "handshake" && b(e, "upgraded") == Some(true))
                {
                    err(format!(
                        "flow {id} ({} -> {}) is not a WebSocket connection of the fixture, \
                         yet has a {kind} event",
                        flow.client, flow.server
                    ));
                    break;
                }
            }
        }
    }

    for conn in connections(expected) {
        let (client, server) = endpoints(expected, conn);
        let mut cerr = |msg: String| err(format!("client {client}: {msg}"));
        let ids = by_endpoints
            .get(&(client, server))
            .cloned()
            .unwrap_or_default();
        let [id] = ids[..] else {
            cerr(format!(
                "expected exactly one flow to {server} from this client, wsnoop reported {}",
                ids.len()
            ));
            continue;
        };
        let flow = &flows[&id];
        errors_of_connection(conn, flow, client, server, compression_none(conn))
            .into_iter()
            .for_each(&mut cerr);
    }
    errors
}

/// Checks one expected connection against wsnoop's events on its flow.
fn errors_of_connection(
    conn: &Value,
    flow: &Flow<'_>,
    client: SocketAddr,
    server: SocketAddr,
    no_ext: bool,
) -> Vec<String> {
    let mut errors = Vec::new();
    let mut err = |msg: String| errors.push(msg);

    let client_text = client.to_string();
    if flow.client != client_text || flow.server != server.to_string() {
        err(format!(
            "endpoints: got client {:?} server {:?}, expected {client_text:?} {:?}",
            flow.client,
            flow.server,
            server.to_string()
        ));
    }
    for e in &flow.events {
        if s(e, "client") != Some(flow.client.as_str())
            || s(e, "server") != Some(flow.server.as_str())
        {
            err(format!("event with other endpoints on the flow: {e}"));
        }
    }

    // Handshake.
    let upgraded = b(conn, "upgraded").expect("upgraded");
    let handshakes: Vec<&Value> = flow.of_type("handshake").collect();
    match handshakes[..] {
        [h] => {
            if s(h, "uri") != s(conn, "path") {
                err(format!(
                    "handshake uri {:?}, expected path {:?}",
                    h.get("uri"),
                    conn.get("path")
                ));
            }
            if u(h, "status") != u(conn, "status") {
                err(format!(
                    "handshake status {:?}, expected {:?}",
                    h.get("status"),
                    conn.get("status")
                ));
            }
            if b(h, "upgraded") != Some(upgraded) {
                err(format!(
                    "handshake upgraded {:?}, expected {upgraded}",
                    h.get("upgraded")
                ));
            }
            if upgraded && s(h, "accept") != Some("ok") {
                err(format!(
                    "handshake accept {:?}, expected \"ok\"",
                    h.get("accept")
                ));
            }
            let exts: Vec<&str> = h
                .get("server_extensions")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let compression = s(conn, "compression").unwrap_or("none");
            let want: Vec<&str> = if compression == "none" {
                Vec::new()
            } else {
                compression.split(',').map(str::trim).collect()
            };
            if exts != want {
                err(format!(
                    "server_extensions {exts:?}, expected {want:?} (compression {compression:?})"
                ));
            }
            if let Some(origin) = s(conn, "origin")
                && s(h, "origin") != Some(origin)
            {
                err(format!(
                    "handshake origin {:?}, expected {origin:?}",
                    h.get("origin")
                ));
            }
            if let Some(ua) = s(conn, "user_agent")
                && s(h, "user_agent") != Some(ua)
            {
                err(format!(
                    "handshake user_agent {:?}, expected {ua:?}",
                    h.get("user_agent")
                ));
            }
            if let Some(offered) = s(conn, "offered_extensions") {
                let got: Vec<&str> = h
                    .get("extensions")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let want: Vec<&str> = offered.split(',').map(str::trim).collect();
                if got != want {
                    err(format!("offered extensions {got:?}, expected {want:?}"));
                }
            }
        }
        _ => err(format!("{} handshake events, expected 1", handshakes.len())),
    }

    let messages = conn["messages"].as_array().expect("messages");
    if !upgraded {
        // A refused upgrade: nothing of WebSocket follows.
        for e in &flow.events {
            let kind = s(e, "type").unwrap_or_default();
            if WS_EVENT_TYPES.contains(&kind) {
                err(format!("refused upgrade, yet a {kind} event: {e}"));
            }
        }
        if !messages.is_empty() {
            err("expected file lists messages on a refused upgrade".to_string());
        }
        return errors;
    }

    for dir in ["c2s", "s2c"] {
        // Data messages, in order.
        let want: Vec<&Value> = messages
            .iter()
            .filter(|m| s(m, "dir") == Some(dir))
            .collect();
        let got: Vec<&Value> = flow
            .of_type("message")
            .filter(|m| s(m, "dir") == Some(dir))
            .collect();
        if got.len() != want.len() {
            err(format!(
                "{dir}: {} messages, expected {}",
                got.len(),
                want.len()
            ));
        }
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            for m in compare_message(g, w, no_ext) {
                err(format!("{dir} message #{i}: {m}"));
            }
        }

        // Frame sizes of fragmented messages (the uncompressed chunk sizes are the wire sizes
        // only without compression).
        if no_ext {
            let groups = data_frame_groups(&flow.frames(dir));
            for f in conn["fragmented"].as_array().into_iter().flatten() {
                let index = u(f, "index").expect("index") as usize;
                if s(&messages[index], "dir") != Some(dir) {
                    continue;
                }
                let pos = messages[..index]
                    .iter()
                    .filter(|m| s(m, "dir") == Some(dir))
                    .count();
                let want: Vec<u64> = f["fragment_lens"]
                    .as_array()
                    .expect("fragment_lens")
                    .iter()
                    .map(|v| v.as_u64().expect("length"))
                    .collect();
                match groups.get(pos) {
                    Some(lens) if *lens == want => {}
                    other => err(format!(
                        "{dir} message #{pos} (index {index}): frame lengths {other:?}, expected {want:?}"
                    )),
                }
            }
        }

        // Pings and pongs, in order.
        for (opcode, key) in [("ping", "pings"), ("pong", "pongs")] {
            let want: Vec<Vec<u8>> = conn[key]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| s(p, "dir") == Some(dir))
                .map(|p| hex_decode(s(p, "hex").expect("hex")))
                .collect();
            let got: Vec<Vec<u8>> = flow
                .frames(dir)
                .into_iter()
                .filter(|f| s(f, "opcode") == Some(opcode))
                .map(|f| payload_bytes(f).unwrap_or_default())
                .collect();
            if got != want {
                err(format!(
                    "{dir} {opcode} payloads {:?}, expected {:?}",
                    got.iter().map(|p| hex_encode(p)).collect::<Vec<_>>(),
                    want.iter().map(|p| hex_encode(p)).collect::<Vec<_>>()
                ));
            }
        }
    }

    // The close handshake.
    let closes: Vec<&Value> = flow.of_type("close").collect();
    match (&conn["close"], &closes[..]) {
        (Value::Null, []) => {}
        (Value::Null, _) => err(format!("{} close events, expected none", closes.len())),
        (want, [c]) => {
            let initiator = s(want, "initiator").expect("close initiator");
            let code = u(want, "code");
            let reason = s(want, "reason");
            let reply = &want["reply"];
            if s(c, "initiator") != Some(initiator) {
                err(format!(
                    "close initiator {:?}, expected {initiator:?}",
                    c.get("initiator")
                ));
            }
            if u(c, "code") != code {
                err(format!("close code {:?}, expected {code:?}", c.get("code")));
            }
            if s(c, "reason") != reason {
                err(format!(
                    "close reason {:?}, expected {reason:?}",
                    c.get("reason")
                ));
            }
            if u(c, "reply_code") != u(reply, "code") {
                err(format!(
                    "close reply_code {:?}, expected {:?}",
                    c.get("reply_code"),
                    reply.get("code")
                ));
            }
            if b(c, "replied") != Some(!reply.is_null()) {
                err(format!("close replied {:?}", c.get("replied")));
            }
            if b(c, "clean") != Some(true) {
                err(format!("close not clean: {c}"));
            }
            // The close frames themselves, each way.
            let (first_dir, reply_dir) = if initiator == "client" {
                ("c2s", "s2c")
            } else {
                ("s2c", "c2s")
            };
            for (dir, w) in [(first_dir, want), (reply_dir, reply)] {
                let frames: Vec<&Value> = flow
                    .frames(dir)
                    .into_iter()
                    .filter(|f| s(f, "opcode") == Some("close"))
                    .collect();
                match frames[..] {
                    [f] if u(f, "close_code") == u(w, "code")
                        && s(f, "close_reason") == s(w, "reason") => {}
                    _ => err(format!(
                        "{dir} close frames {:?}, expected one with code {:?} reason {:?}",
                        frames
                            .iter()
                            .map(|f| (f.get("close_code"), f.get("close_reason")))
                            .collect::<Vec<_>>(),
                        w.get("code"),
                        w.get("reason")
                    )),
                }
            }
        }
        (_, _) => err(format!("{} close events, expected 1", closes.len())),
    }
    errors
}

/// Per message, the lengths of its data frames (first frame, then continuations to FIN).
fn data_frame_groups(frames: &[&Value]) -> Vec<Vec<u64>> {
    let mut groups: Vec<Vec<u64>> = Vec::new();
    let mut open = false;
    for f in frames {
        let len = u(f, "len").unwrap_or(u64::MAX);
        match s(f, "opcode") {
            Some("text" | "binary") => {
                groups.push(vec![len]);
                open = true;
            }
            Some("continuation") if open => groups.last_mut().expect("group").push(len),
            _ => continue,
        }
        if b(f, "fin") == Some(true) {
            open = false;
        }
    }
    groups
}

/// Compares one message event with the expected message.
fn compare_message(got: &Value, want: &Value, no_ext: bool) -> Vec<String> {
    let mut out = Vec::new();
    let opcode = s(want, "opcode").expect("opcode");
    let len = u(want, "len").expect("len");
    if s(got, "opcode") != Some(opcode) {
        out.push(format!(
            "opcode {:?}, expected {opcode:?}",
            got.get("opcode")
        ));
    }
    if u(got, "len") != Some(len) {
        out.push(format!("len {:?}, expected {len}", got.get("len")));
    }
    for flag in ["truncated", "incomplete", "undecodable"] {
        if b(got, flag) != Some(false) {
            out.push(format!("{flag} is {:?}", got.get(flag)));
        }
    }
    if b(got, "compressed") != Some(!no_ext) {
        out.push(format!(
            "compressed {:?}, but the extension was {}negotiated",
            got.get("compressed"),
            if no_ext { "not " } else { "" }
        ));
    }
    let frames = u(want, "fragments").unwrap_or(1);
    if u(got, "frames") != Some(frames) {
        out.push(format!("frames {:?}, expected {frames}", got.get("frames")));
    }
    // A text message that is valid UTF-8 must be shown as text.
    if opcode == "text" && got.get("text").is_none() {
        out.push("text message without a \"text\" field".to_string());
    }
    let bytes = match payload_bytes(got) {
        Ok(bytes) => bytes,
        Err(e) => {
            out.push(e);
            return out;
        }
    };
    if bytes.len() as u64 != len {
        out.push(format!(
            "{} payload bytes shown, expected {len}",
            bytes.len()
        ));
    }
    if let Some(text) = s(want, "text") {
        if bytes != text.as_bytes() {
            out.push(format!(
                "payload {:?}, expected {text:?}",
                String::from_utf8_lossy(&bytes)
            ));
        }
    } else if let Some(hex) = s(want, "hex") {
        if bytes != hex_decode(hex) {
            out.push(format!("payload {}, expected {hex}", preview(&bytes)));
        }
    } else if let Some(digest) = s(want, "sha256") {
        let got_digest = hex_encode(&sha256(&bytes));
        if got_digest != digest {
            out.push(format!(
                "payload {}, expected sha256 {digest}",
                preview(&bytes)
            ));
        }
    } else {
        out.push(format!(
            "expected message without text, hex or sha256: {want}"
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Tests

/// Every fixture with an expected.json, every connection, every message.
#[test]
fn every_fixture_matches_what_was_sent() {
    let fixtures = fixtures();
    let mut failures = Vec::new();
    let mut totals = (0usize, 0usize);
    for fx in &fixtures {
        let lines = run(&fx.capture);
        totals.0 += connections(&fx.expected).len();
        totals.1 += connections(&fx.expected)
            .iter()
            .map(|c| c["messages"].as_array().map_or(0, Vec::len))
            .sum::<usize>();
        failures.extend(check_fixture(fx, &lines));
    }
    assert!(
        failures.is_empty(),
        "{} differences from the expected files:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!(
        "{} fixtures, {} connections, {} messages: all as sent",
        fixtures.len(),
        totals.0,
        totals.1
    );
}

/// python-basic holds frames at every length-encoding edge: 7-bit (0, 125), 16-bit (126,
/// 65535) and 64-bit (70000), both ways.
#[test]
fn python_basic_length_encodings() {
    let fx = fixture("python-basic");
    let conn = &connections(&fx.expected)[0];
    let lines = run(&fx.capture);
    let flows = flows(&lines);
    let port = u(conn, "client_port").unwrap();
    let flow = flows
        .values()
        .find(|f| {
            f.client
                .parse::<SocketAddr>()
                .is_ok_and(|c| u64::from(c.port()) == port)
        })
        .expect("the python-basic connection");
    for dir in ["c2s", "s2c"] {
        let lens: BTreeSet<u64> = flow
            .frames(dir)
            .iter()
            .filter(|f| {
                matches!(s(f, "opcode"), Some("text" | "binary")) && b(f, "fin") == Some(true)
            })
            .filter_map(|f| u(f, "len"))
            .collect();
        for edge in [0u64, 125, 126, 65535, 70000] {
            // The expected file must hold an unfragmented message of that length that way...
            assert!(
                conn["messages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|m| s(m, "dir") == Some(dir)
                        && u(m, "len") == Some(edge)
                        && m.get("fragments").is_none()),
                "python-basic.expected.json has no {dir} message of {edge} bytes"
            );
            // ...and wsnoop must show it as one frame of exactly that declared length.
            assert!(
                lens.contains(&edge),
                "{dir}: no single-frame data message with len {edge}; frame lengths seen: {lens:?}"
            );
        }
        // The masking is per direction: client frames masked, server frames not.
        for f in flow.frames(dir) {
            let masked = b(f, "masked").unwrap();
            assert_eq!(masked, dir == "c2s", "{dir} frame masked={masked}: {f}");
            assert_eq!(f.get("mask").is_some_and(|m| !m.is_null()), masked, "{f}");
        }
    }
}

/// IPv6 endpoints are written "[addr]:port", on every event of the connection.
#[test]
fn ipv6_endpoints_are_bracketed() {
    let fx = fixture("ipv6");
    let server = server_endpoint(&fx.expected);
    assert!(server.is_ipv6(), "the ipv6 fixture's server is {server}");
    let port = u(&connections(&fx.expected)[0], "client_port").unwrap();
    let want_client = format!("[{}]:{port}", server.ip());
    let want_server = format!("[{}]:{}", server.ip(), server.port());
    let lines = run(&fx.capture);
    let ws_lines: Vec<&Line> = lines
        .iter()
        .filter(|l| s(&l.value, "server") == Some(want_server.as_str()))
        .collect();
    assert!(
        ws_lines.len() > 10,
        "only {} events on {want_server}",
        ws_lines.len()
    );
    for l in &lines {
        if l.value.get("client").is_none() {
            continue;
        }
        assert_eq!(
            s(&l.value, "client"),
            Some(want_client.as_str()),
            "{}",
            l.raw
        );
        assert_eq!(
            s(&l.value, "server"),
            Some(want_server.as_str()),
            "{}",
            l.raw
        );
        let raw_pair = format!("\"client\":\"{want_client}\",\"server\":\"{want_server}\"");
        assert!(l.raw.contains(&raw_pair), "{} lacks {raw_pair}", l.raw);
    }
}

/// The refused upgrade: status 403, upgraded false, and nothing of WebSocket after it; the
/// accepted connection beside it works.
#[test]
fn rejected_upgrade_has_no_frames() {
    let fx = fixture("rejected-403");
    let lines = run(&fx.capture);
    let flows = flows(&lines);
    let refused: Vec<&Value> = connections(&fx.expected)
        .iter()
        .filter(|c| b(c, "upgraded") == Some(false))
        .collect();
    assert_eq!(
        refused.len(),
        1,
        "rejected-403 lists one refused connection"
    );
    for conn in connections(&fx.expected) {
        let port = u(conn, "client_port").unwrap();
        let flow = flows
            .values()
            .find(|f| {
                f.client
                    .parse::<SocketAddr>()
                    .is_ok_and(|c| u64::from(c.port()) == port)
            })
            .unwrap_or_else(|| panic!("no flow from client port {port}"));
        let h: Vec<&Value> = flow.of_type("handshake").collect();
        assert_eq!(h.len(), 1, "port {port}: handshakes {h:?}");
        assert_eq!(u(h[0], "status"), u(conn, "status"), "port {port}");
        assert_eq!(b(h[0], "upgraded"), b(conn, "upgraded"), "port {port}");
        assert_eq!(s(h[0], "uri"), s(conn, "path"), "port {port}");
        let frames = flow.of_type("frame").count();
        let messages = flow.of_type("message").count();
        let closes = flow.of_type("close").count();
        if b(conn, "upgraded") == Some(false) {
            assert_eq!(u(h[0], "status"), Some(403));
            assert_eq!(
                (frames, messages, closes),
                (0, 0, 0),
                "port {port}: frames, messages, closes on a refused upgrade"
            );
        } else {
            let want = conn["messages"].as_array().unwrap().len();
            assert_eq!(messages, want, "port {port}: messages");
            assert!(frames >= want + 2, "port {port}: {frames} frames");
            assert_eq!(closes, 1, "port {port}: close events");
        }
    }
    assert!(
        lines.iter().all(|l| s(&l.value, "type") != Some("anomaly")),
        "anomalies in rejected-403"
    );
}

/// pcapng-nano is node-ws.pcap converted to pcapng: wsnoop's output is the same, line for line,
/// and timestamps have 9 fractional digits in both (nanosecond captures).
#[test]
fn pcapng_nano_equals_node_ws() {
    let png = fixture("pcapng-nano");
    let pcap = fixture("node-ws");
    // The expected files describe the same connections.
    assert_eq!(png.expected["connections"], pcap.expected["connections"]);
    let a = run(&pcap.capture);
    let b_lines = run(&png.capture);
    assert!(a.len() > 40, "node-ws gave only {} events", a.len());
    for l in a.iter().chain(&b_lines) {
        let frac = ts_fraction(&l.raw).unwrap_or_else(|| panic!("no ts in {}", l.raw));
        assert_eq!(
            frac.len(),
            9,
            "nanosecond capture, ts with {} digits: {}",
            frac.len(),
            l.raw
        );
    }
    assert_eq!(
        a.len(),
        b_lines.len(),
        "event counts of node-ws and pcapng-nano"
    );
    for (x, y) in a.iter().zip(&b_lines) {
        assert_eq!(x.raw, y.raw, "node-ws and pcapng-nano differ");
    }
    // And the pcapng output matches what was sent (the general test checks it too).
    let failures = check_fixture(&png, &b_lines);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Rewrites a little-endian nanosecond classic pcap as a microsecond one.
fn nano_to_micro_pcap(nano: &[u8]) -> Vec<u8> {
    assert_eq!(
        u32::from_le_bytes(nano[0..4].try_into().unwrap()),
        0xa1b2_3c4d,
        "not a little-endian nanosecond pcap"
    );
    let mut out = nano.to_vec();
    out[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    let mut at = 24;
    while at + 16 <= out.len() {
        let frac = u32::from_le_bytes(out[at + 4..at + 8].try_into().unwrap());
        out[at + 4..at + 8].copy_from_slice(&(frac / 1000).to_le_bytes());
        let incl = u32::from_le_bytes(out[at + 8..at + 12].try_into().unwrap()) as usize;
        at += 16 + incl;
    }
    assert_eq!(
        at,
        out.len(),
        "pcap records do not end at the end of the file"
    );
    out
}

/// A microsecond copy of node-ws.pcap: 6 fractional digits, the nanosecond timestamps cut to
/// microseconds, and otherwise the same events.
#[test]
fn microsecond_capture_has_six_digit_timestamps() {
    let fx = fixture("node-ws");
    let nano = std::fs::read(&fx.capture).expect("reading node-ws.pcap");
    let dir = tempfile::tempdir().expect("temp dir");
    let micro_path = dir.path().join("node-ws-micro.pcap");
    std::fs::write(&micro_path, nano_to_micro_pcap(&nano)).expect("writing the micro pcap");
    let n = run(&fx.capture);
    let m = run(&micro_path);
    assert_eq!(
        n.len(),
        m.len(),
        "event counts of the nano and micro copies"
    );
    for (x, y) in n.iter().zip(&m) {
        let xf = ts_fraction(&x.raw).unwrap();
        let yf = ts_fraction(&y.raw).unwrap();
        assert_eq!(xf.len(), 9, "{}", x.raw);
        assert_eq!(yf.len(), 6, "microsecond capture: {}", y.raw);
        assert_eq!(
            &xf[..6],
            yf,
            "micro ts is the nano ts cut: {} / {}",
            x.raw,
            y.raw
        );
        // The WebSocket events are the same but for the timestamp and the latency derived
        // from it (summary events hold more times: only their timestamps are compared).
        if !matches!(
            s(&x.value, "type"),
            Some("handshake" | "frame" | "message" | "close" | "anomaly")
        ) {
            assert_eq!(s(&x.value, "type"), s(&y.value, "type"));
            continue;
        }
        let strip = |v: &Value| {
            let mut v = v.clone();
            if let Some(o) = v.as_object_mut() {
                o.remove("ts");
                o.remove("latency");
            }
            v
        };
        assert_eq!(strip(&x.value), strip(&y.value));
    }
    let mut micro_fx = fixture("node-ws");
    micro_fx.name = "node-ws (microsecond copy)".to_string();
    let failures = check_fixture(&micro_fx, &m);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The comparison is not vacuous: changing any one expected fact makes it fail.
#[test]
fn the_comparison_catches_differences() {
    type Edit = fn(&mut Value);
    let edits: [(&str, &str, Edit); 12] = [
        ("python-basic", "a text", |c| {
            c["messages"][1]["text"] = "hellp".into()
        }),
        ("python-basic", "a binary", |c| {
            c["messages"][4]["hex"] = "000102fffe81".into()
        }),
        ("python-basic", "a sha256", |c| {
            c["messages"][16]["sha256"] = "00".repeat(32).into()
        }),
        ("python-basic", "a fragment count", |c| {
            c["messages"][18]["fragments"] = 4.into()
        }),
        ("python-basic", "fragment sizes", |c| {
            c["fragmented"][0]["fragment_lens"][1] = 7.into()
        }),
        ("python-basic", "a ping", |c| {
            c["pings"][0]["hex"] = "00".into()
        }),
        ("python-basic", "the message order", |c| {
            c["messages"].as_array_mut().unwrap().swap(0, 2)
        }),
        ("python-deflate", "a decompressed text", |c| {
            let m = c["messages"]
                .as_array_mut()
                .unwrap()
                .iter_mut()
                .find(|m| m.get("text").is_some())
                .unwrap();
            let t = m["text"].as_str().unwrap().to_string();
            m["text"] = format!("{}x", &t[..t.len() - 1]).into();
        }),
        ("python-deflate", "the extension", |c| {
            c["compression"] = "permessage-deflate".into()
        }),
        ("node-ws", "the close initiator", |c| {
            c["close"]["initiator"] = "client".into()
        }),
        ("node-ws", "the reply reason", |c| {
            c["close"]["reply"]["reason"] = "other".into()
        }),
        ("rejected-403", "the status", |c| c["status"] = 401.into()),
    ];
    for (name, what, edit) in edits {
        let mut fx = fixture(name);
        let lines = run(&fx.capture);
        assert!(
            check_fixture(&fx, &lines).is_empty(),
            "{name} must pass unedited"
        );
        edit(&mut fx.expected["connections"][0]);
        let failures = check_fixture(&fx, &lines);
        assert!(
            !failures.is_empty(),
            "{name}: changing {what} in the expected file went unnoticed"
        );
    }
}
