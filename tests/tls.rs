//! wss: wsnoop decrypting real TLS captures (fixtures/tls/, made by fixtures/tls/make.sh) with
//! their key logs.
//!
//! Two independent oracles, as for the plaintext fixtures:
//! - tshark 4.0 decrypting the same capture with `-o tls.keylog_file:` (or the capture's own
//!   Decryption Secrets Block): wsnoop's frames must equal tshark's per connection and
//!   direction, in order (FIN, RSV, opcode, MASK, masking key, length, unmasked payload), and
//!   the `tls` object of the handshake and flow events must say what tshark read in the
//!   ClientHello (SNI), the ServerHello (version from supported_versions, cipher suite, by its
//!   IANA name) and the server's ALPN choice;
//! - the senders' logs (`NAME.expected.json`): every message, ping, pong and close.
//!
//! A connection whose keys are left out of the key log must give a `tls_no_keys` anomaly, one
//! whose secret is wrong `tls_decrypt_failed`, and neither any WebSocket event (a connection of
//! a suite issue 13 does not require, `"suite_optional"`, decrypts exactly or gives
//! `tls_unsupported` and no WebSocket event); every other
//! capture no anomaly at all. The DSB pcapng must give what its pcap gives with `--keylog`, and
//! `SSLKEYLOGFILE` stands in for `--keylog`. No secret of any key log may appear in wsnoop's
//! output.
//!
//! The sidecars also record what the client's own TLS stack said it negotiated; those facts are
//! checked against tshark's reading first, so that an oracle that disagrees with the sender
//! fails the test rather than wsnoop.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use common::tls::{self as t, WsFrame};

/// Every fixture of fixtures/tls/ (the NAME of NAME.expected.json).
const CASES: &[&str] = &[
    "tls13-python",
    "tls13-hrr",
    "tls13-early-data",
    "tls12-python",
    "tls-resumption",
    "tls-other-suites",
    "node-wss",
    "keyupdate-openssl",
    "chromium-wss-deflate",
    "firefox-wss-deflate",
    "missing-keys",
    "wrong-secret",
    "crlf-keylog",
    "tls13-python-dsb",
];

const MAX_PAYLOAD: &str = "100000000";

struct Run {
    events: Vec<Value>,
    stdout: String,
    stderr: String,
}

/// `wsnoop -r CAPTURE --json --max-payload N ARGS`, SSLKEYLOGFILE as given (never inherited).
fn wsnoop(capture: &Path, args: &[&str], sslkeylogfile: Option<&Path>) -> Run {
    let mut cmd = Command::new(common::wsnoop_bin());
    cmd.arg("-r")
        .arg(capture)
        .args(["--json", "--max-payload", MAX_PAYLOAD])
        .args(args)
        .env_remove("SSLKEYLOGFILE");
    if let Some(k) = sslkeylogfile {
        cmd.env("SSLKEYLOGFILE", k);
    }
    let out = cmd.output().expect("running wsnoop");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "wsnoop -r {} --json {} failed ({}): {stderr}",
        capture.display(),
        args.join(" "),
        out.status
    );
    let events = common::parse_json_lines(&stdout, &capture.display().to_string());
    Run {
        events,
        stdout,
        stderr,
    }
}

fn is_dsb(exp: &Value) -> bool {
    t::capture_of(exp)
        .extension()
        .is_some_and(|e| e == "pcapng")
}

/// wsnoop on a case as the contract says: `--keylog KEYS`, or nothing for the DSB pcapng.
fn wsnoop_case(exp: &Value) -> Run {
    let keys = t::keylog_of(exp);
    let keys = keys.to_str().expect("UTF-8 path");
    if is_dsb(exp) {
        wsnoop(&t::capture_of(exp), &[], None)
    } else {
        wsnoop(&t::capture_of(exp), &["--keylog", keys], None)
    }
}

fn tshark_keys(exp: &Value) -> Option<std::path::PathBuf> {
    (!is_dsb(exp)).then(|| t::keylog_of(exp))
}

fn fail_on(errors: BTreeMap<&str, Vec<String>>) {
    let bad: Vec<String> = errors
        .iter()
        .filter(|(_, e)| !e.is_empty())
        .map(|(name, e)| format!("{name}:\n  {}", e.join("\n  ")))
        .collect();
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// The oracle itself, before wsnoop is judged by it: tshark decrypts every connection whose keys
/// are in the key log and none other, and what it reads in the hellos is what the client's TLS
/// stack said it negotiated (version, cipher suite, SNI), where the client could log it.
#[test]
fn tshark_decrypts_what_the_senders_logged() {
    let mut errors = BTreeMap::new();
    for name in CASES {
        let exp = t::expected(name);
        let capture = t::capture_of(&exp);
        let keys = tshark_keys(&exp);
        let port = t::server_port(&exp);
        let frames = t::tshark_frames(&capture, keys.as_deref(), port);
        let hellos = t::tshark_hellos(&capture, keys.as_deref(), port);
        let mut errs = Vec::new();
        for conn in t::connections(&exp) {
            let key = (t::client_of(&exp, conn), t::server_of(&exp));
            let n = frames.get(&key).map_or(0, Vec::len);
            let sent = conn["messages"].as_array().map_or(0, Vec::len);
            let decrypted = t::keys_state(conn) == "present";
            if decrypted && n < sent / 2 || !decrypted && n > 0 {
                errs.push(format!(
                    "tshark decrypted {n} client frames of {} (keys {}, {sent} messages)",
                    key.0,
                    t::keys_state(conn)
                ));
            }
            let Some(h) = hellos.get(&key) else {
                errs.push(format!("tshark saw no hello on {}", key.0));
                continue;
            };
            if !(h.client_hello && h.server_hello && h.version.is_some()) {
                errs.push(format!("{}: incomplete hellos {h:?}", key.0));
            }
            if h.cipher.and_then(t::iana_cipher).is_none() {
                errs.push(format!(
                    "{}: cipher suite {:?} not in the table",
                    key.0, h.cipher
                ));
            }
            if let Some(sent) = conn.get("tls") {
                let sent_version = sent["version"].as_str().map(sidecar_version);
                let sent_cipher = sent["cipher"].as_str().and_then(t::iana_of_openssl);
                let cipher = h.cipher.and_then(t::iana_cipher);
                if sent_version != h.version
                    || sent_cipher != cipher
                    || sent["sni"] != json(&h.sni)
                    || sent["alpn"] != json(&h.alpn)
                {
                    errs.push(format!(
                        "tshark's {h:?} is not what the client said: {sent}"
                    ));
                }
            }
        }
        errors.insert(*name, errs);
    }
    fail_on(errors);
}

#[test]
fn frames_equal_tshark_decrypted() {
    let mut errors = BTreeMap::new();
    for name in CASES {
        let exp = t::expected(name);
        let capture = t::capture_of(&exp);
        let mut tshark =
            t::tshark_frames(&capture, tshark_keys(&exp).as_deref(), t::server_port(&exp));
        let run = wsnoop_case(&exp);
        // A suite wsnoop need not decrypt, and says it does not: no frames, like tshark without
        // keys.
        for conn in t::connections(&exp) {
            if left_unsupported(&exp, conn, &run.events) {
                let (c, sv) = (t::client_of(&exp, conn), t::server_of(&exp));
                tshark.remove(&(c.clone(), sv.clone()));
                tshark.remove(&(sv, c));
            }
        }
        let got = t::wsnoop_frames(&run.events);
        let errs = t::frame_errors(&tshark, &got);
        errors.insert(*name, errs);
    }
    fail_on(errors);
}

#[test]
fn messages_equal_what_was_sent() {
    let mut errors = BTreeMap::new();
    for name in CASES {
        let exp = t::expected(name);
        let run = wsnoop_case(&exp);
        let server = t::server_of(&exp);
        let mut errs = Vec::new();
        let mut listed = Vec::new();
        for conn in t::connections(&exp) {
            let client = t::client_of(&exp, conn);
            let events = t::of_conn(&run.events, &client, &server);
            let what = format!("{client} (keys {})", t::keys_state(conn));
            if t::keys_state(conn) == "present" && !left_unsupported(&exp, conn, &run.events) {
                errs.extend(t::sidecar_errors(conn, &events, &what));
            } else {
                let ws: Vec<_> = events
                    .iter()
                    .filter(|e| ["handshake", "frame", "message", "close"].contains(&s(e)))
                    .collect();
                if !ws.is_empty() {
                    errs.push(format!(
                        "{what}: {} WebSocket events while encrypted",
                        ws.len()
                    ));
                }
            }
            listed.push(client);
        }
        for e in run
            .events
            .iter()
            .filter(|e| ["handshake", "frame", "message"].contains(&s(e)))
        {
            let client = t::s(e, "client");
            if !listed.iter().any(|c| c == client) {
                errs.push(format!(
                    "an event on a connection the senders did not log: {e}"
                ));
            }
        }
        errors.insert(*name, errs);
    }
    fail_on(errors);
}

/// A connection whose suite issue 13 does not require (`"suite_optional"`) and on which wsnoop
/// reported `tls_unsupported`: then it must stay encrypted, otherwise it must decrypt exactly.
fn left_unsupported(exp: &Value, conn: &Value, events: &[Value]) -> bool {
    conn.get("suite_optional") == Some(&Value::Bool(true))
        && t::of_conn(events, &t::client_of(exp, conn), &t::server_of(exp))
            .iter()
            .any(|e| e["type"] == "anomaly" && e["kind"] == "tls_unsupported")
}

fn s(e: &Value) -> &str {
    e["type"].as_str().unwrap_or_default()
}

fn sidecar_version(v: &str) -> String {
    v.replace("TLSv", "TLS ")
}

#[test]
fn tls_object_matches_the_hellos() {
    let mut errors = BTreeMap::new();
    for name in CASES {
        let exp = t::expected(name);
        let capture = t::capture_of(&exp);
        let hellos = t::tshark_hellos(&capture, tshark_keys(&exp).as_deref(), t::server_port(&exp));
        let run = wsnoop_case(&exp);
        let server = t::server_of(&exp);
        let mut errs = Vec::new();
        for conn in t::connections(&exp) {
            let client = t::client_of(&exp, conn);
            let Some(h) = hellos.get(&(client.clone(), server.clone())) else {
                errs.push(format!("tshark saw no hello on {client}"));
                continue;
            };
            let cipher = h.cipher.and_then(t::iana_cipher);
            if t::keys_state(conn) != "present" || left_unsupported(&exp, conn, &run.events) {
                continue;
            }
            let want = serde_json::json!({
                "version": h.version, "cipher": cipher, "sni": h.sni, "alpn": h.alpn,
                "decrypted": true,
            });
            let events = t::of_conn(&run.events, &client, &server);
            for ty in ["handshake", "flow"] {
                let evs: Vec<_> = events.iter().filter(|e| e["type"] == ty).collect();
                if evs.is_empty() {
                    errs.push(format!("{client}: no {ty} event"));
                }
                for e in evs {
                    if e.get("tls") != Some(&want) {
                        errs.push(format!(
                            "{client} {ty}: tls {}, the hellos say {want}",
                            e.get("tls").map_or("(none)".into(), Value::to_string)
                        ));
                    }
                }
            }
        }
        errors.insert(*name, errs);
    }
    // Plaintext connections carry no tls object.
    let plain = common::run_wsnoop_json(&common::fixtures_dir().join("node-ws.pcap"), &[]);
    errors.insert(
        "node-ws.pcap (plaintext)",
        plain
            .iter()
            .filter(|e| e.get("tls").is_some())
            .map(|e| format!("tls object on a plaintext event: {e}"))
            .collect(),
    );
    fail_on(errors);
}

fn json(v: &Option<String>) -> Value {
    v.as_ref().map_or(Value::Null, |s| Value::String(s.clone()))
}

/// The anomalies of a run that name no listed connection whose keys were missing or wrong, or
/// name one with another kind than the one its key log calls for.
fn anomaly_errors(exp: &Value, events: &[Value], keys_override: Option<&str>) -> Vec<String> {
    let server = t::server_of(exp);
    let mut errs = Vec::new();
    let mut expected_kinds = BTreeMap::new();
    for conn in t::connections(exp) {
        let state = keys_override.unwrap_or_else(|| t::keys_state(conn));
        let kind = match state {
            "missing" => Some("tls_no_keys"),
            "wrong" => Some("tls_decrypt_failed"),
            _ if left_unsupported(exp, conn, events) => Some("tls_unsupported"),
            _ => None,
        };
        expected_kinds.insert(t::client_of(exp, conn), kind);
    }
    let anomalies: Vec<&Value> = events.iter().filter(|e| e["type"] == "anomaly").collect();
    for (client, kind) in &expected_kinds {
        let here: Vec<&&Value> = anomalies
            .iter()
            .filter(|a| a.get("client").and_then(Value::as_str) == Some(client))
            .collect();
        match kind {
            Some(k) => {
                if !here.iter().any(|a| a["kind"] == *k) {
                    errs.push(format!("{client}: no {k} anomaly (got {here:?})"));
                }
                for a in here.iter().filter(|a| a["kind"] != *k) {
                    errs.push(format!("{client}: another anomaly than {k}: {a}"));
                }
                if let Some(a) = here.first()
                    && (a.get("server").and_then(Value::as_str) != Some(server.as_str())
                        || a.get("flow").is_none_or(Value::is_null))
                {
                    errs.push(format!("{client}: the anomaly does not name the flow: {a}"));
                }
            }
            None => errs.extend(
                here.iter()
                    .map(|a| format!("{client}: unexpected anomaly {a}")),
            ),
        }
    }
    for a in &anomalies {
        let named = a
            .get("client")
            .and_then(Value::as_str)
            .is_some_and(|c| expected_kinds.contains_key(c));
        if !named {
            errs.push(format!("anomaly on no listed connection: {a}"));
        }
    }
    errs
}

#[test]
fn anomalies_say_why_a_connection_stays_encrypted() {
    let mut errors = BTreeMap::new();
    for name in CASES {
        let exp = t::expected(name);
        errors.insert(
            name.to_string(),
            anomaly_errors(&exp, &wsnoop_case(&exp).events, None),
        );
    }
    // No key log at all: every connection of the capture lacks its keys.
    let exp = t::expected("tls13-python");
    let none = wsnoop(&t::capture_of(&exp), &[], None);
    errors.insert(
        "tls13-python without a key log".into(),
        anomaly_errors(&exp, &none.events, Some("missing")),
    );
    let errors: BTreeMap<&str, Vec<String>> = errors
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    fail_on(errors);
}

#[test]
fn dsb_pcapng_equals_pcap_with_keylog() {
    let dsb = t::expected("tls13-python-dsb");
    let pcap = t::expected("tls13-python");
    let keys = t::keylog_of(&pcap);
    let a = wsnoop(&t::capture_of(&dsb), &[], None);
    let b = wsnoop(
        &t::capture_of(&pcap),
        &["--keylog", keys.to_str().expect("UTF-8 path")],
        None,
    );
    let frames = |r: &Run| -> BTreeMap<t::DirKey, Vec<WsFrame>> { t::wsnoop_frames(&r.events) };
    assert!(
        frames(&a).values().map(Vec::len).sum::<usize>() > 0,
        "no frame decrypted from the DSB: {}",
        a.stderr
    );
    assert_eq!(a.events.len(), b.events.len(), "event counts differ");
    for (i, (x, y)) in a.events.iter().zip(&b.events).enumerate() {
        assert_eq!(
            x, y,
            "event {i} differs between the DSB pcapng and pcap + --keylog"
        );
    }
}

#[test]
fn sslkeylogfile_stands_in_for_keylog() {
    let exp = t::expected("tls12-python");
    let capture = t::capture_of(&exp);
    let keys = t::keylog_of(&exp);
    let with_flag = wsnoop(&capture, &["--keylog", keys.to_str().expect("UTF-8")], None);
    let with_env = wsnoop(&capture, &[], Some(&keys));
    assert!(
        t::wsnoop_frames(&with_env.events)
            .values()
            .map(Vec::len)
            .sum::<usize>()
            > 0,
        "nothing decrypted with SSLKEYLOGFILE: {}",
        with_env.stderr
    );
    assert_eq!(
        with_env.events, with_flag.events,
        "SSLKEYLOGFILE gives other events than --keylog"
    );
    assert!(
        with_env.stderr.contains("SSLKEYLOGFILE"),
        "wsnoop does not say on stderr that it uses SSLKEYLOGFILE: {:?}",
        with_env.stderr
    );
    // --keylog wins over the environment: a wrong SSLKEYLOGFILE changes nothing.
    let wrong = t::keylog_of(&t::expected("missing-keys"));
    let both = wsnoop(
        &capture,
        &["--keylog", keys.to_str().expect("UTF-8")],
        Some(&wrong),
    );
    assert_eq!(
        both.events, with_flag.events,
        "SSLKEYLOGFILE overrode --keylog"
    );
}

#[test]
fn secrets_never_appear_in_the_output() {
    let mut errors = BTreeMap::new();
    for name in CASES {
        let exp = t::expected(name);
        let secrets = t::secrets_of(&t::keylog_of(&exp));
        assert!(!secrets.is_empty(), "{name}: no secret in its key log");
        let run = wsnoop_case(&exp);
        let text = format!("{}\n{}", run.stdout, run.stderr).to_ascii_lowercase();
        // Half a secret is already too much: 16 hex digits of any secret anywhere.
        let leaked: Vec<String> = secrets
            .iter()
            .filter(|sec| {
                (0..sec.len().saturating_sub(16))
                    .step_by(8)
                    .filter_map(|i| sec.get(i..i + 16))
                    .any(|piece| text.contains(piece))
            })
            .map(|sec| format!("a secret of {} hex digits shows in the output", sec.len()))
            .collect();
        errors.insert(*name, leaked);
    }
    fail_on(errors);
}

/// The comparisons above, on plaintext captures wsnoop already decodes: they find nothing to
/// report there, and they do report a changed frame, message, ping or close.
#[test]
fn the_comparisons_work_on_plaintext_and_catch_differences() {
    let mut errors = BTreeMap::new();
    for name in ["node-ws", "python-deflate", "signalling-8080"] {
        let path = common::fixtures_dir().join(format!("{name}.expected.json"));
        let exp: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("JSON");
        let capture = common::fixtures_dir().join(exp["fixture"].as_str().expect("fixture"));
        let events = common::run_wsnoop_json(&capture, &["--max-payload", MAX_PAYLOAD]);
        let tshark = t::tshark_frames_plain(&capture, t::server_port(&exp));
        let n = tshark.values().map(Vec::len).sum::<usize>();
        assert!(n > 10, "{name}: tshark shows only {n} frames");
        let mut errs = t::frame_errors(&tshark, &t::wsnoop_frames(&events));
        for conn in t::connections(&exp) {
            let client = t::client_of(&exp, conn);
            let evs = t::of_conn(&events, &client, &t::server_of(&exp));
            errs.extend(t::sidecar_errors(conn, &evs, &client));
        }
        errors.insert(name, errs);
    }
    fail_on(errors);

    // Each change must be reported.
    let exp = t::expected("tls13-python");
    let conn = &t::connections(&exp)[0];
    let client = t::client_of(&exp, conn);
    let server = t::server_of(&exp);
    let capture = common::fixtures_dir().join("node-ws.pcap");
    let tshark = t::tshark_frames_plain(&capture, 9002);
    let mut changed = tshark.clone();
    let dir = changed.values_mut().next().expect("a direction");
    dir[0].mask = Some("00000000".into());
    assert!(
        !t::frame_errors(&tshark, &changed).is_empty(),
        "a changed mask went unnoticed"
    );
    let mut changed = tshark.clone();
    changed.values_mut().next().expect("a direction").pop();
    assert!(
        !t::frame_errors(&tshark, &changed).is_empty(),
        "a missing frame went unnoticed"
    );
    let mut changed = tshark.clone();
    let f = &mut changed.values_mut().next().expect("a direction")[0];
    f.payload.push(0);
    assert!(
        !t::frame_errors(&tshark, &changed).is_empty(),
        "a longer payload went unnoticed"
    );

    // A run that is right for conn, then wrong in one place at a time.
    let mut msgs: Vec<Value> = Vec::new();
    msgs.push(
        serde_json::json!({"type": "handshake", "client": client, "server": server,
        "uri": conn["path"], "status": 101}),
    );
    for m in conn["messages"].as_array().expect("messages") {
        let mut e = serde_json::json!({"type": "message", "client": client, "server": server,
            "dir": m["dir"], "opcode": m["opcode"], "len": m["len"],
            "frames": m.get("fragments").cloned().unwrap_or(Value::from(1)),
            "compressed": false, "truncated": false, "incomplete": false, "undecodable": false});
        if let Some(text) = m.get("text") {
            e["text"] = text.clone();
        } else {
            e["data"] = Value::from("");
        }
        msgs.push(e);
    }
    let refs: Vec<&Value> = msgs.iter().collect();
    let baseline = t::sidecar_errors(conn, &refs, "synthetic");
    // binaries given as "" and the ping/close missing: exactly those are reported
    assert!(
        baseline.iter().any(|e| e.contains("[\"content\"]")),
        "{baseline:?}"
    );
    assert!(baseline.iter().any(|e| e.contains("pings")), "{baseline:?}");
    assert!(
        baseline.iter().any(|e| e.contains("close events")),
        "{baseline:?}"
    );
    assert!(
        !baseline.iter().any(|e| e.contains("handshake")),
        "{baseline:?}"
    );
    let mut fewer = msgs.clone();
    fewer.pop();
    let refs: Vec<&Value> = fewer.iter().collect();
    assert!(
        t::sidecar_errors(conn, &refs, "synthetic").len() > baseline.len(),
        "a missing message went unnoticed"
    );
}

/// Decryption is per connection, so threads change nothing: the output of every case, with
/// its text view and `diagnose` too, is byte for byte that of one thread.
#[test]
fn threads_give_the_same_bytes() {
    let mut errors = BTreeMap::new();
    for name in CASES {
        let exp = t::expected(name);
        let capture = t::capture_of(&exp);
        let keys = t::keylog_of(&exp);
        let keys = keys.to_str().expect("UTF-8 path");
        let mut keyed = vec!["--keylog", keys];
        if is_dsb(&exp) {
            keyed.clear();
        }
        let mut errs = Vec::new();
        for view in [&["--json"][..], &["--summary"][..], &["diagnose"][..]] {
            let run = |threads: &str| {
                let mut cmd = Command::new(common::wsnoop_bin());
                if view == ["diagnose"] {
                    cmd.arg("diagnose");
                }
                cmd.arg("-r").arg(&capture).args(&keyed);
                if view != ["diagnose"] {
                    cmd.args(view);
                }
                let out = cmd
                    .args(["--threads", threads])
                    .env_remove("SSLKEYLOGFILE")
                    .output()
                    .expect("running wsnoop");
                out.stdout
            };
            let one = run("1");
            assert!(!one.is_empty(), "{name} {view:?}: no output");
            for n in ["2", "3"] {
                if run(n) != one {
                    errs.push(format!("{view:?}: --threads {n} differs from --threads 1"));
                }
            }
        }
        errors.insert(*name, errs);
    }
    fail_on(errors);
}

/// A record header that is no TLS (its content type zeroed, in the client's request record of
/// the first connection of a real capture): that connection reports `tls_malformed` and decodes
/// nothing more; the others decrypt as before.
#[test]
fn bytes_that_are_not_records_are_tls_malformed() {
    let exp = t::expected("tls13-python");
    let mut pcap = std::fs::read(t::capture_of(&exp)).expect("read the capture");
    assert!(
        pcap[..4] == [0xd4, 0xc3, 0xb2, 0xa1] || pcap[..4] == [0x4d, 0x3c, 0xb2, 0xa1],
        "a little-endian pcap"
    );
    // Ethernet, IPv4, TCP: the first SYN's source port is the first connection's client.
    let (mut at, mut client, mut payloads, mut corrupted) = (24, None, 0, false);
    while at + 16 <= pcap.len() && !corrupted {
        let caplen = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
        let frame = at + 16;
        let ip = frame + 14;
        let tcp = ip + usize::from(pcap[ip] & 0x0f) * 4;
        let data = tcp + usize::from(pcap[tcp + 12] >> 4) * 4;
        let src = u16::from_be_bytes([pcap[tcp], pcap[tcp + 1]]);
        let syn_only = pcap[tcp + 13] & 0x12 == 0x02;
        if syn_only && client.is_none() {
            client = Some(src);
        }
        if client == Some(src) && data < frame + caplen {
            payloads += 1;
            // ClientHello, then ChangeCipherSpec + Finished, then the upgrade request.
            if payloads == 3 {
                assert_eq!(
                    pcap[data], 0x17,
                    "the request starts an application data record"
                );
                pcap[data] = 0x00;
                corrupted = true;
            }
        }
        at = frame + caplen;
    }
    assert!(corrupted, "no third client payload found");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("malformed.pcap");
    std::fs::write(&path, &pcap).expect("write the capture");
    let keys = t::keylog_of(&exp);
    let run = wsnoop(&path, &["--keylog", keys.to_str().unwrap()], None);
    let client = format!("127.0.0.1:{}", client.unwrap());
    let of = |e: &&Value| e.get("client").and_then(Value::as_str) == Some(client.as_str());
    let mine: Vec<&Value> = run.events.iter().filter(of).collect();
    assert!(
        mine.iter()
            .any(|e| e["type"] == "anomaly" && e["kind"] == "tls_malformed"),
        "no tls_malformed for {client}: {mine:?}"
    );
    assert!(
        !mine
            .iter()
            .any(|e| e["type"] == "handshake" || e["type"] == "frame"),
        "{client} decoded past the bad record: {mine:?}"
    );
    let others = run
        .events
        .iter()
        .filter(|e| !of(e) && e["type"] == "handshake" && e["upgraded"] == true)
        .count();
    assert_eq!(
        others,
        t::connections(&exp).len() - 1,
        "the other connections"
    );
}
