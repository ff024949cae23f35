//! What the wss tests compare wsnoop with: tshark 4.0 decrypting the captures of fixtures/tls/
//! with their key logs, and the senders' expected files (fixtures/tls/README.md).
//!
//! tshark is the frame oracle (`-o tls.keylog_file:KEYS`, the server port decoded as TLS and
//! the TLS payload as HTTP, an empty WIRESHARK_CONFIG_DIR); the expected files are the message
//! oracle. Nothing here reads an earlier wsnoop output.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use serde_json::Value;

/// One direction of a connection: (source, destination) as "ip:port".
pub type DirKey = (String, String);

/// A connection: (client, server) as "ip:port".
pub type ConnKey = (String, String);

pub fn tls_dir() -> PathBuf {
    super::fixtures_dir().join("tls")
}

/// fixtures/tls/NAME.expected.json.
pub fn expected(name: &str) -> Value {
    let path = tls_dir().join(format!("{name}.expected.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()))
}

pub fn capture_of(exp: &Value) -> PathBuf {
    tls_dir().join(
        exp["fixture"]
            .as_str()
            .expect("expected file names its fixture"),
    )
}

pub fn keylog_of(exp: &Value) -> PathBuf {
    tls_dir().join(
        exp["keylog"]
            .as_str()
            .expect("expected file names its key log"),
    )
}

pub fn server_port(exp: &Value) -> u16 {
    exp["server_port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .expect("expected file has a server_port")
}

pub fn connections(exp: &Value) -> &Vec<Value> {
    exp["connections"].as_array().expect("connections array")
}

/// The client's "ip:port"; on loopback the client's address is the server's.
pub fn client_of(exp: &Value, conn: &Value) -> String {
    let addr = conn
        .get("client_addr")
        .or_else(|| exp.get("server_addr"))
        .and_then(Value::as_str)
        .unwrap_or("127.0.0.1");
    format!("{addr}:{}", conn["client_port"])
}

pub fn server_of(exp: &Value) -> String {
    format!(
        "{}:{}",
        exp["server_addr"].as_str().unwrap_or("127.0.0.1"),
        server_port(exp)
    )
}

/// "present", "missing" (left out of the key log) or "wrong" (a secret changed).
pub fn keys_state(conn: &Value) -> &str {
    conn.get("keys")
        .and_then(Value::as_str)
        .unwrap_or("present")
}

/// The secrets (last field of every key log line) of a key log: they must never be printed.
pub fn secrets_of(keylog: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(keylog)
        .unwrap_or_else(|e| panic!("reading {}: {e}", keylog.display()));
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().nth(2))
        .map(str::to_ascii_lowercase)
        .collect()
}

// ---------------------------------------------------------------------------------- tshark ----

fn run_tshark(capture: &Path, args: &[String]) -> String {
    let conf = std::env::temp_dir().join(format!("wsnoop-tls-tshark-conf-{}", std::process::id()));
    std::fs::create_dir_all(&conf).expect("empty tshark config dir");
    let out = Command::new("tshark")
        .env("WIRESHARK_CONFIG_DIR", &conf)
        .arg("-n")
        .arg("-r")
        .arg(capture)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run tshark ({e}): the wss tests need it (apt-get install tshark)")
        });
    assert!(
        out.status.success(),
        "tshark -r {} {} failed ({}): {}",
        capture.display(),
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("tshark output is UTF-8")
}

/// tshark's decoding options: `keys` None leaves the keys to the capture (a pcapng DSB).
fn decrypt_args(keys: Option<&Path>, port: u16) -> Vec<String> {
    let mut args = vec![
        "-o".to_owned(),
        "tcp.reassemble_out_of_order:TRUE".to_owned(),
        "-d".to_owned(),
        format!("tcp.port=={port},tls"),
        "-d".to_owned(),
        format!("tls.port=={port},http"),
    ];
    if let Some(k) = keys {
        args.extend(["-o".to_owned(), format!("tls.keylog_file:{}", k.display())]);
    }
    args
}

/// Plaintext: the same view of a ws:// capture (to check this module on captures wsnoop already
/// decodes).
fn plain_args(port: u16) -> Vec<String> {
    vec![
        "-o".to_owned(),
        "tcp.reassemble_out_of_order:TRUE".to_owned(),
        "-d".to_owned(),
        format!("tcp.port=={port},http"),
    ]
}

fn tshark_packets(capture: &Path, decode: Vec<String>, filter: &str) -> Vec<Value> {
    let mut args: Vec<String> = ["-Y", filter, "-T", "json", "--no-duplicate-keys", "-x"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(decode);
    let out = run_tshark(capture, &args);
    if out.trim().is_empty() {
        return Vec::new();
    }
    match serde_json::from_str(&out) {
        Ok(Value::Array(a)) => a,
        other => panic!("tshark JSON on {}: {other:?}", capture.display()),
    }
}

fn one_or_many(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    }
}

fn field<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    match v.get(name)? {
        Value::String(s) => Some(s),
        Value::Array(a) => a.first()?.as_str(),
        _ => None,
    }
}

fn endpoints(layers: &Value) -> (String, String) {
    let tcp = layers
        .get("tcp")
        .map(one_or_many)
        .and_then(|t| t.last().copied());
    let tcp = tcp.expect("a packet with a tcp layer");
    let ip = layers
        .get("ip")
        .expect("an ip layer (the fixtures are IPv4)");
    let (sp, dp) = (
        field(tcp, "tcp.srcport").unwrap_or("?"),
        field(tcp, "tcp.dstport").unwrap_or("?"),
    );
    (
        format!("{}:{sp}", field(ip, "ip.src").unwrap_or("?")),
        format!("{}:{dp}", field(ip, "ip.dst").unwrap_or("?")),
    )
}

/// One WebSocket frame, as either tool shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsFrame {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub masked: bool,
    /// 8 lowercase hex digits.
    pub mask: Option<String>,
    pub len: u64,
    pub payload: Vec<u8>,
    /// wsnoop only: the payload came from "text", whose UTF-8 characters cut by a frame border
    /// wsnoop moves to the frame where they complete: compared as a stream, not per frame.
    pub text: bool,
    pub at: String,
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| s.get(2 * i..2 * i + 2))
        .map(|h| u8::from_str_radix(h, 16).unwrap_or_else(|e| panic!("hex {h:?}: {e}")))
        .collect()
}

fn tshark_int(w: &Value, name: &str, what: &str) -> u64 {
    let s = field(w, name).unwrap_or_else(|| panic!("{what}: no {name} in {w}"));
    let parsed = match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    parsed.unwrap_or_else(|e| panic!("{what}: {name} {s:?}: {e}"))
}

/// tshark's decrypted WebSocket frames per direction, in capture order.
pub fn tshark_frames(
    capture: &Path,
    keys: Option<&Path>,
    port: u16,
) -> BTreeMap<DirKey, Vec<WsFrame>> {
    frames_of(capture, decrypt_args(keys, port))
}

/// tshark's WebSocket frames of a plaintext capture.
pub fn tshark_frames_plain(capture: &Path, port: u16) -> BTreeMap<DirKey, Vec<WsFrame>> {
    frames_of(capture, plain_args(port))
}

fn frames_of(capture: &Path, decode: Vec<String>) -> BTreeMap<DirKey, Vec<WsFrame>> {
    let mut out: BTreeMap<DirKey, Vec<WsFrame>> = BTreeMap::new();
    for p in tshark_packets(capture, decode, "websocket") {
        let layers = &p["_source"]["layers"];
        let number = field(&layers["frame"], "frame.number")
            .unwrap_or("?")
            .to_owned();
        let what = format!("tshark on {} packet {number}", capture.display());
        let key = endpoints(layers);
        for w in one_or_many(&layers["websocket"]) {
            let flag = |name: &str| tshark_int(w, name, &what) != 0;
            let masked = flag("websocket.mask");
            let len = [
                "websocket.payload_length_ext_16",
                "websocket.payload_length_ext_64",
            ]
            .iter()
            .find(|n| w.get(**n).is_some())
            .map_or_else(
                || tshark_int(w, "websocket.payload_length", &what),
                |n| tshark_int(w, n, &what),
            );
            let payload = w
                .get("websocket.payload_raw")
                .and_then(|r| r.get(0))
                .and_then(Value::as_str)
                .map(hex)
                .unwrap_or_default();
            out.entry(key.clone()).or_default().push(WsFrame {
                fin: flag("websocket.fin"),
                rsv: u8::try_from(tshark_int(w, "websocket.rsv", &what)).expect("rsv"),
                opcode: u8::try_from(tshark_int(w, "websocket.opcode", &what)).expect("opcode"),
                masked,
                mask: masked.then(|| {
                    field(w, "websocket.masking_key")
                        .unwrap_or_default()
                        .replace(':', "")
                        .to_ascii_lowercase()
                }),
                len,
                payload,
                text: false,
                at: format!("tshark packet {number}"),
            });
        }
    }
    out
}

/// What the hellos (and, decrypted, EncryptedExtensions) of one connection say.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Hello {
    pub client_hello: bool,
    pub server_hello: bool,
    /// "TLS 1.2" / "TLS 1.3": the ServerHello's supported_versions, else its legacy version.
    pub version: Option<String>,
    /// The ServerHello's cipher suite code.
    pub cipher: Option<u16>,
    /// The ClientHello's server_name.
    pub sni: Option<String>,
    /// The server's ALPN choice (ServerHello in TLS 1.2, EncryptedExtensions in TLS 1.3).
    pub alpn: Option<String>,
}

fn find_all<'a>(v: &'a Value, name: &str, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == name {
                    for s in one_or_many(x) {
                        if let Some(s) = s.as_str() {
                            out.push(s);
                        }
                    }
                } else {
                    find_all(x, name, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| find_all(x, name, out)),
        _ => {}
    }
}

fn handshakes<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(m) => {
            if m.contains_key("tls.handshake.type") {
                out.push(v);
                return;
            }
            m.values().for_each(|x| handshakes(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| handshakes(x, out)),
        _ => {}
    }
}

fn first(v: &Value, name: &str) -> Option<String> {
    let mut all = Vec::new();
    find_all(v, name, &mut all);
    all.first().map(|s| s.to_string())
}

fn code(s: &str) -> Option<u16> {
    u16::from_str_radix(s.strip_prefix("0x")?, 16).ok()
}

/// Per connection (client, server), what tshark read from its handshake messages.
pub fn tshark_hellos(capture: &Path, keys: Option<&Path>, port: u16) -> BTreeMap<ConnKey, Hello> {
    let mut out: BTreeMap<ConnKey, Hello> = BTreeMap::new();
    for p in tshark_packets(capture, decrypt_args(keys, port), "tls.handshake") {
        let layers = &p["_source"]["layers"];
        let (src, dst) = endpoints(layers);
        let mut hs = Vec::new();
        handshakes(&layers["tls"], &mut hs);
        for h in hs {
            match field(h, "tls.handshake.type") {
                Some("1") => {
                    let e = out.entry((src.clone(), dst.clone())).or_default();
                    e.client_hello = true;
                    e.sni = first(h, "tls.handshake.extensions_server_name");
                }
                Some("2") => {
                    let e = out.entry((dst.clone(), src.clone())).or_default();
                    e.server_hello = true;
                    let v = first(h, "tls.handshake.extensions.supported_version")
                        .or_else(|| first(h, "tls.handshake.version"));
                    e.version = v.as_deref().and_then(code).map(|c| match c {
                        0x0304 => "TLS 1.3".to_owned(),
                        0x0303 => "TLS 1.2".to_owned(),
                        other => format!("0x{other:04x}"),
                    });
                    e.cipher = first(h, "tls.handshake.ciphersuite")
                        .as_deref()
                        .and_then(code);
                    if let Some(a) = first(h, "tls.handshake.extensions_alpn_str") {
                        e.alpn = Some(a);
                    }
                }
                Some("8") => {
                    let e = out.entry((dst.clone(), src.clone())).or_default();
                    if let Some(a) = first(h, "tls.handshake.extensions_alpn_str") {
                        e.alpn = Some(a);
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// IANA names (TLS Cipher Suites registry) of the suites the fixtures use.
pub fn iana_cipher(code: u16) -> Option<&'static str> {
    Some(match code {
        0x1301 => "TLS_AES_128_GCM_SHA256",
        0x1302 => "TLS_AES_256_GCM_SHA384",
        0x1303 => "TLS_CHACHA20_POLY1305_SHA256",
        0x1304 => "TLS_AES_128_CCM_SHA256",
        0xc027 => "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
        0xc02b => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        0xc02c => "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        0xc02f => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        0xc030 => "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        0xcca8 => "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        0xcca9 => "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        0x009c => "TLS_RSA_WITH_AES_128_GCM_SHA256",
        0x009d => "TLS_RSA_WITH_AES_256_GCM_SHA384",
        _ => return None,
    })
}

/// The IANA name of an OpenSSL cipher name (what python's ssl reports), from OpenSSL's
/// `openssl ciphers -stdname` table, for the suites the fixtures use.
pub fn iana_of_openssl(name: &str) -> Option<&'static str> {
    Some(match name {
        "TLS_AES_128_GCM_SHA256" => "TLS_AES_128_GCM_SHA256",
        "TLS_AES_256_GCM_SHA384" => "TLS_AES_256_GCM_SHA384",
        "TLS_CHACHA20_POLY1305_SHA256" => "TLS_CHACHA20_POLY1305_SHA256",
        "TLS_AES_128_CCM_SHA256" => "TLS_AES_128_CCM_SHA256",
        "ECDHE-RSA-AES128-SHA256" => "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256" => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-RSA-AES256-GCM-SHA384" => "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "ECDHE-RSA-CHACHA20-POLY1305" => "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        "AES128-GCM-SHA256" => "TLS_RSA_WITH_AES_128_GCM_SHA256",
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------- wsnoop ----

pub fn s<'a>(e: &'a Value, name: &str) -> &'a str {
    e.get(name)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string field {name:?} in {e}"))
}

/// The payload of a wsnoop frame or message event: "text" as UTF-8 bytes or base64 "data".
pub fn payload(e: &Value) -> (Vec<u8>, bool) {
    if let Some(t) = e.get("text").and_then(Value::as_str) {
        return (t.as_bytes().to_vec(), true);
    }
    let data = e.get("data").and_then(Value::as_str).unwrap_or_default();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap_or_else(|err| panic!("bad base64 ({err}) in {e}"));
    (bytes, false)
}

fn opcode_number(name: &str) -> u8 {
    match name {
        "continuation" => 0,
        "text" => 1,
        "binary" => 2,
        "close" => 8,
        "ping" => 9,
        "pong" => 10,
        other => other
            .strip_prefix("reserved-")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unknown opcode name {other:?}")),
    }
}

/// The direction of a frame or message event as (source, destination).
pub fn dir_key(e: &Value) -> DirKey {
    let (c, sv) = (s(e, "client").to_owned(), s(e, "server").to_owned());
    match s(e, "dir") {
        "c2s" => (c, sv),
        "s2c" => (sv, c),
        d => panic!("bad dir {d:?} in {e}"),
    }
}

/// wsnoop's frame events per direction, in output order.
pub fn wsnoop_frames(events: &[Value]) -> BTreeMap<DirKey, Vec<WsFrame>> {
    let mut out: BTreeMap<DirKey, Vec<WsFrame>> = BTreeMap::new();
    for e in events.iter().filter(|e| e["type"] == "frame") {
        let (payload, text) = payload(e);
        out.entry(dir_key(e)).or_default().push(WsFrame {
            fin: e["fin"].as_bool().expect("fin"),
            rsv: e["rsv"]
                .as_u64()
                .and_then(|r| u8::try_from(r).ok())
                .expect("rsv"),
            opcode: opcode_number(s(e, "opcode")),
            masked: e["masked"].as_bool().expect("masked"),
            mask: e
                .get("mask")
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase),
            len: e["len"].as_u64().expect("len"),
            payload,
            text,
            at: format!("wsnoop ts {}", e["ts"]),
        });
    }
    out
}

fn data_stream(frames: &[WsFrame]) -> Vec<u8> {
    frames
        .iter()
        .filter(|f| f.opcode < 8)
        .flat_map(|f| f.payload.iter().copied())
        .collect()
}

/// Differences between tshark's and wsnoop's frames, per direction: every field of every frame,
/// the payload per frame (text frames: the direction's data stream as a whole).
pub fn frame_errors(
    tshark: &BTreeMap<DirKey, Vec<WsFrame>>,
    wsnoop: &BTreeMap<DirKey, Vec<WsFrame>>,
) -> Vec<String> {
    let mut errors = Vec::new();
    let keys: std::collections::BTreeSet<&DirKey> = tshark.keys().chain(wsnoop.keys()).collect();
    for key in keys {
        let (t, w) = (
            tshark.get(key).map_or(&[][..], Vec::as_slice),
            wsnoop.get(key).map_or(&[][..], Vec::as_slice),
        );
        let dir = format!("{} -> {}", key.0, key.1);
        if t.len() != w.len() {
            errors.push(format!(
                "{dir}: tshark {} frames, wsnoop {}",
                t.len(),
                w.len()
            ));
        }
        let mut reported = 0;
        for (i, (a, b)) in t.iter().zip(w).enumerate() {
            let mut diff = String::new();
            for (name, x, y) in [
                ("fin", a.fin.to_string(), b.fin.to_string()),
                ("rsv", a.rsv.to_string(), b.rsv.to_string()),
                ("opcode", a.opcode.to_string(), b.opcode.to_string()),
                ("masked", a.masked.to_string(), b.masked.to_string()),
                ("mask", format!("{:?}", a.mask), format!("{:?}", b.mask)),
                ("len", a.len.to_string(), b.len.to_string()),
            ] {
                if x != y {
                    let _ = write!(diff, " {name}: tshark {x}, wsnoop {y};");
                }
            }
            if !b.text && a.payload != b.payload {
                let _ = write!(
                    diff,
                    " payload: tshark {} bytes, wsnoop {} bytes;",
                    a.payload.len(),
                    b.payload.len()
                );
            }
            if !diff.is_empty() && reported < 5 {
                reported += 1;
                errors.push(format!("{dir} frame {i} ({} / {}):{diff}", a.at, b.at));
            }
        }
        if data_stream(t) != data_stream(w) {
            errors.push(format!(
                "{dir}: the data frames' payloads differ as a stream"
            ));
        }
    }
    errors
}

/// wsnoop's events that name this connection.
pub fn of_conn<'a>(events: &'a [Value], client: &str, server: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| {
            e.get("client").and_then(Value::as_str) == Some(client)
                && e.get("server").and_then(Value::as_str) == Some(server)
        })
        .collect()
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(data)
        .iter()
        .fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Differences between wsnoop's messages, pings, pongs and close of one connection and what the
/// programs sent (one connection of an expected file).
pub fn sidecar_errors(conn: &Value, events: &[&Value], what: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let compressed = conn["compression"].as_str().is_some_and(|c| c != "none");
    let hs: Vec<_> = events.iter().filter(|e| e["type"] == "handshake").collect();
    match hs.as_slice() {
        [h] => {
            if h["uri"] != conn["path"] || h["status"] != conn["status"] {
                errors.push(format!(
                    "{what}: handshake uri {} status {}, sent {} {}",
                    h["uri"], h["status"], conn["path"], conn["status"]
                ));
            }
        }
        other => errors.push(format!(
            "{what}: {} handshake events, expected 1",
            other.len()
        )),
    }
    for dir in ["c2s", "s2c"] {
        let want: Vec<&Value> = conn["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .filter(|m| m["dir"] == dir)
            .collect();
        let got: Vec<&&Value> = events
            .iter()
            .filter(|e| e["type"] == "message" && e["dir"] == dir)
            .collect();
        if want.len() != got.len() {
            errors.push(format!(
                "{what} {dir}: wsnoop {} messages, sent {}",
                got.len(),
                want.len()
            ));
        }
        for (i, (w, g)) in want.iter().zip(&got).enumerate() {
            let (data, _) = payload(g);
            let content_ok = if let Some(t) = w.get("text").and_then(Value::as_str) {
                data == t.as_bytes()
            } else if let Some(h) = w.get("hex").and_then(Value::as_str) {
                data == hex(h)
            } else {
                w["sha256"].as_str() == Some(sha256_hex(&data).as_str())
            };
            let frames = w.get("fragments").and_then(Value::as_u64).unwrap_or(1);
            let checks = [
                ("opcode", g["opcode"] == w["opcode"]),
                ("len", g["len"] == w["len"]),
                ("content", content_ok),
                ("frames", g["frames"].as_u64() == Some(frames)),
                ("compressed", g["compressed"].as_bool() == Some(compressed)),
                ("truncated", g["truncated"] == false),
                ("incomplete", g["incomplete"] == false),
                ("undecodable", g["undecodable"] == false),
            ];
            let bad: Vec<&str> = checks.iter().filter(|c| !c.1).map(|c| c.0).collect();
            if !bad.is_empty() {
                errors.push(format!(
                    "{what} {dir} message {i}: {bad:?} differ (wsnoop {} {} bytes, sent {} {} bytes)",
                    g["opcode"], g["len"], w["opcode"], w["len"]
                ));
            }
        }
    }
    for (kind, opcode) in [("pings", "ping"), ("pongs", "pong")] {
        for dir in ["c2s", "s2c"] {
            let want: Vec<Vec<u8>> = conn[kind]
                .as_array()
                .expect("pings/pongs")
                .iter()
                .filter(|p| p["dir"] == dir)
                .map(|p| hex(p["hex"].as_str().unwrap_or_default()))
                .collect();
            let got: Vec<Vec<u8>> = events
                .iter()
                .filter(|e| e["type"] == "frame" && e["opcode"] == opcode && e["dir"] == dir)
                .map(|e| payload(e).0)
                .collect();
            if want != got {
                errors.push(format!(
                    "{what} {dir} {kind}: wsnoop {got:?}, sent {want:?}"
                ));
            }
        }
    }
    if let Some(cl) = conn.get("close").filter(|c| !c.is_null()) {
        let closes: Vec<_> = events.iter().filter(|e| e["type"] == "close").collect();
        match closes.as_slice() {
            [c] => {
                if c["initiator"] != cl["initiator"]
                    || c["code"] != cl["code"]
                    || c["reason"] != cl["reason"]
                    || c["reply_code"] != cl["reply"]["code"]
                {
                    errors.push(format!("{what}: close {c}, sent {cl}"));
                }
            }
            other => errors.push(format!("{what}: {} close events, expected 1", other.len())),
        }
    }
    errors
}
