//! `wsnoop diagnose` on real captures of real failures (fixtures/diagnose/, made by
//! fixtures/diagnose/make.sh with python websockets, http.server, curl, nftables and the Linux
//! TCP stack in private network namespaces), and on the decoder fixtures of fixtures/.
//!
//! What each capture must yield comes from `NAME.expected.json`, written by make.sh from the
//! scenario it ran and the programs' own logs, never from a wsnoop run:
//! - `args`: extra diagnose arguments (e.g. `--idle 2`);
//! - `kinds`: findings that must be reported, with their severity;
//! - `counts`: the exact count of a kind (summed over its findings) where the script knows it;
//! - `detail_contains`: facts of the scenario (a port, a status code, a number of SYNs) that
//!   the detail of some finding of that kind must state;
//! - `absent`: kinds that must not be reported;
//! - `exit`: 0 when only info findings are expected, 1 otherwise.
//!
//! Every finding must also be well formed (type, known kind, severity, count, at most 5 example
//! flows, non-empty detail and advice), sorted most severe first, and the text form must say
//! the same thing as the JSON form.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Every kind src/diagnose/ can report.
const KINDS: &[&str] = &[
    "port_closed",
    "no_answer",
    "not_websocket",
    "bad_upgrade_request",
    "accept_mismatch",
    "no_response",
    "tls",
    "tls_no_keys",
    "tls_decrypt_failed",
    "tls_unsupported",
    "tls_malformed",
    "tls_decrypted",
    "websocket_over_h2",
    "one_way",
    "idle",
    "abnormal_close",
    "protocol_violations",
    "truncated_capture",
    "capture_loss",
    "http_abandoned",
    "no_websocket_traffic",
    "healthy",
];

/// The captures make.sh makes (names fixed by issue 7).
const CAPTURES: &[&str] = &[
    "closed-port",
    "firewalled",
    "plain-http",
    "origin-rejected",
    "wss",
    "idle",
    "client-vanishes",
    "one-way",
    "healthy",
    "no-websocket",
];

/// make.sh keeps every capture under this size.
const MAX_CAPTURE_BYTES: u64 = 100_000;

fn diagnose_dir() -> PathBuf {
    common::fixtures_dir().join("diagnose")
}

// ---------------------------------------------------------------------------------------------
// Running wsnoop diagnose

struct Run {
    exit: i32,
    stdout: String,
    stderr: String,
    /// Shown in failure messages.
    command: String,
}

fn diagnose(capture: &Path, args: &[&str]) -> Run {
    let out = Command::new(common::wsnoop_bin())
        .arg("diagnose")
        .arg("-r")
        .arg(capture)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", common::wsnoop_bin().display()));
    Run {
        exit: out
            .status
            .code()
            .unwrap_or_else(|| panic!("wsnoop diagnose killed by a signal: {}", out.status)),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        command: format!(
            "wsnoop diagnose -r {} {}",
            capture.display(),
            args.join(" ")
        ),
    }
}

/// One finding of the JSON form.
#[derive(Debug, Clone)]
struct Finding {
    kind: String,
    severity: String,
    count: u64,
    flows: Vec<u64>,
    detail: String,
    advice: String,
}

fn rank(severity: &str) -> u8 {
    match severity {
        "info" => 0,
        "warning" => 1,
        "error" => 2,
        other => panic!("unknown severity {other:?}"),
    }
}

/// Parses and checks the JSON form: every line a well-formed finding, most severe first.
fn parse_findings(run: &Run) -> Vec<Finding> {
    assert!(
        run.stderr.trim().is_empty(),
        "{}: unexpected stderr: {}",
        run.command,
        run.stderr
    );
    let lines = common::parse_json_lines(&run.stdout, &run.command);
    assert!(!lines.is_empty(), "{}: no finding at all", run.command);
    let findings: Vec<Finding> = lines
        .iter()
        .map(|v| {
            let ctx = || format!("{}: finding {v}", run.command);
            assert_eq!(v["type"], "finding", "{}", ctx());
            let obj = v.as_object().unwrap_or_else(|| panic!("{}", ctx()));
            let keys: BTreeSet<&str> = obj.keys().map(String::as_str).collect();
            let want: BTreeSet<&str> = [
                "type", "kind", "severity", "count", "flows", "detail", "advice",
            ]
            .into_iter()
            .collect();
            assert!(keys.is_superset(&want), "{}: fields {keys:?}", ctx());
            let text = |k: &str| {
                v[k].as_str()
                    .unwrap_or_else(|| panic!("{}: {k} is not a string", ctx()))
                    .to_string()
            };
            let f = Finding {
                kind: text("kind"),
                severity: text("severity"),
                count: v["count"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("{}: count", ctx())),
                flows: v["flows"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{}: flows is not an array", ctx()))
                    .iter()
                    .map(|n| {
                        n.as_u64()
                            .unwrap_or_else(|| panic!("{}: flow number {n}", ctx()))
                    })
                    .collect(),
                detail: text("detail"),
                advice: text("advice"),
            };
            assert!(KINDS.contains(&f.kind.as_str()), "{}: unknown kind", ctx());
            rank(&f.severity);
            assert!(!f.detail.trim().is_empty(), "{}: empty detail", ctx());
            assert!(!f.advice.trim().is_empty(), "{}: empty advice", ctx());
            assert!(f.flows.len() <= 5, "{}: more than 5 example flows", ctx());
            assert!(
                f.flows.len() as u64 <= f.count.max(1),
                "{}: more example flows than the count",
                ctx()
            );
            f
        })
        .collect();
    let ranks: Vec<u8> = findings.iter().map(|f| rank(&f.severity)).collect();
    assert!(
        ranks.windows(2).all(|w| w[0] >= w[1]),
        "{}: findings are not sorted most severe first: {:?}",
        run.command,
        findings.iter().map(|f| &f.severity).collect::<Vec<_>>()
    );
    findings
}

/// The exit code the findings call for: 1 when any is not info.
fn exit_for(findings: &[Finding]) -> i32 {
    i32::from(findings.iter().any(|f| f.severity != "info"))
}

fn summary(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(|f| {
            format!(
                "  {} {} (count {}): {}",
                f.severity, f.kind, f.count, f.detail
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The text form says what the JSON form says: each finding's label, kind and detail, then its
/// advice, in the same order.
fn check_text_matches_json(capture: &Path, args: &[&str], findings: &[Finding]) {
    let mut text_args = args.to_vec();
    text_args.extend(["--color", "never"]);
    let run = diagnose(capture, &text_args);
    assert_eq!(
        run.exit,
        exit_for(findings),
        "{}: text form exit code",
        run.command
    );
    let mut rest = run.stdout.as_str();
    for f in findings {
        let label = match f.severity.as_str() {
            "error" => "ERROR",
            "warning" => "WARNING",
            _ => "OK",
        };
        let block = format!("{label} {}: {}\n  -> {}\n", f.kind, f.detail, f.advice);
        let at = rest.find(&block).unwrap_or_else(|| {
            panic!(
                "{}: the text form does not say (in this order):\n{block}\ntext form:\n{}",
                run.command, run.stdout
            )
        });
        rest = &rest[at + block.len()..];
    }
    assert!(
        !run.stdout.contains('\x1b'),
        "{}: colour codes with --color never",
        run.command
    );
}

// ---------------------------------------------------------------------------------------------
// fixtures/diagnose/NAME.pcap against NAME.expected.json

struct Expected {
    args: Vec<String>,
    kinds: BTreeMap<String, String>,
    counts: BTreeMap<String, u64>,
    detail_contains: BTreeMap<String, Vec<String>>,
    absent: Vec<String>,
    exit: i32,
}

fn load_expected(path: &Path) -> Expected {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    let ctx = |what: &str| format!("{}: {what}", path.display());
    let strings = |v: &Value, what: &str| -> Vec<String> {
        v.as_array()
            .unwrap_or_else(|| panic!("{}", ctx(what)))
            .iter()
            .map(|s| {
                s.as_str()
                    .unwrap_or_else(|| panic!("{}", ctx(what)))
                    .to_string()
            })
            .collect()
    };
    let map = |v: &Value, what: &str| -> serde_json::Map<String, Value> {
        match v {
            Value::Null => serde_json::Map::new(),
            v => v
                .as_object()
                .unwrap_or_else(|| panic!("{}", ctx(what)))
                .clone(),
        }
    };
    let e = Expected {
        args: strings(&v["args"], "args"),
        kinds: map(&v["kinds"], "kinds")
            .into_iter()
            .map(|(k, s)| {
                (
                    k,
                    s.as_str()
                        .unwrap_or_else(|| panic!("{}", ctx("kinds")))
                        .into(),
                )
            })
            .collect(),
        counts: map(&v["counts"], "counts")
            .into_iter()
            .map(|(k, n)| (k, n.as_u64().unwrap_or_else(|| panic!("{}", ctx("counts")))))
            .collect(),
        detail_contains: map(&v["detail_contains"], "detail_contains")
            .into_iter()
            .map(|(k, list)| (k, strings(&list, "detail_contains")))
            .collect(),
        absent: strings(&v["absent"], "absent"),
        exit: i32::try_from(
            v["exit"]
                .as_i64()
                .unwrap_or_else(|| panic!("{}", ctx("exit"))),
        )
        .unwrap_or_else(|_| panic!("{}", ctx("exit"))),
    };
    for kind in e
        .kinds
        .keys()
        .chain(e.counts.keys())
        .chain(e.detail_contains.keys())
        .chain(&e.absent)
    {
        assert!(
            KINDS.contains(&kind.as_str()),
            "{}",
            ctx(&format!("unknown kind {kind}"))
        );
    }
    for kind in e.counts.keys().chain(e.detail_contains.keys()) {
        assert!(
            e.kinds.contains_key(kind),
            "{}",
            ctx(&format!("{kind} not in kinds"))
        );
    }
    for kind in &e.absent {
        assert!(
            !e.kinds.contains_key(kind),
            "{}",
            ctx(&format!("{kind} both expected and absent"))
        );
    }
    e
}

/// Checks one capture of fixtures/diagnose against its expected file; every problem found is
/// reported together.
fn check_capture(name: &str) {
    let capture = diagnose_dir().join(format!("{name}.pcap"));
    let expected_path = diagnose_dir().join(format!("{name}.expected.json"));
    assert!(
        capture.is_file(),
        "{} is missing: run fixtures/diagnose/make.sh {name} (as root)",
        capture.display()
    );
    let size = std::fs::metadata(&capture).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 24 && size < MAX_CAPTURE_BYTES,
        "{}: {size} bytes (expected a non-empty capture under {MAX_CAPTURE_BYTES})",
        capture.display()
    );
    let exp = load_expected(&expected_path);
    let mut args: Vec<&str> = vec!["--json"];
    args.extend(exp.args.iter().map(String::as_str));
    let run = diagnose(&capture, &args);
    let findings = parse_findings(&run);

    let mut problems = Vec::new();
    if run.exit != exp.exit {
        problems.push(format!("exit code {} (expected {})", run.exit, exp.exit));
    }
    if run.exit != exit_for(&findings) {
        problems.push(format!(
            "exit code {} does not follow the severities (1 when anything is not info)",
            run.exit
        ));
    }
    for (kind, severity) in &exp.kinds {
        let of_kind: Vec<&Finding> = findings.iter().filter(|f| &f.kind == kind).collect();
        if of_kind.is_empty() {
            problems.push(format!("missing finding {kind} ({severity})"));
            continue;
        }
        if !of_kind.iter().any(|f| &f.severity == severity) {
            problems.push(format!(
                "{kind} reported as {} (expected {severity})",
                of_kind
                    .iter()
                    .map(|f| f.severity.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if let Some(&count) = exp.counts.get(kind) {
            let got: u64 = of_kind.iter().map(|f| f.count).sum();
            if got != count {
                problems.push(format!("{kind}: count {got} (expected {count})"));
            }
        }
        for fact in exp.detail_contains.get(kind).into_iter().flatten() {
            if !of_kind.iter().any(|f| f.detail.contains(fact.as_str())) {
                problems.push(format!("{kind}: the detail does not say {fact:?}"));
            }
        }
        if kind != "healthy" && kind != "no_websocket_traffic" {
            for f in &of_kind {
                if f.flows.is_empty() {
                    problems.push(format!("{kind}: no example connection"));
                }
            }
        }
    }
    for kind in &exp.absent {
        if findings.iter().any(|f| &f.kind == kind) {
            problems.push(format!("false finding {kind}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{}:\n- {}\nfindings:\n{}",
        run.command,
        problems.join("\n- "),
        summary(&findings)
    );
    let plain: Vec<&str> = exp.args.iter().map(String::as_str).collect();
    check_text_matches_json(&capture, &plain, &findings);
}

macro_rules! capture_tests {
    ($($test:ident => $name:literal,)*) => {
        $(
            #[test]
            fn $test() {
                check_capture($name);
            }
        )*
    };
}

capture_tests! {
    closed_port => "closed-port",
    firewalled => "firewalled",
    plain_http => "plain-http",
    origin_rejected => "origin-rejected",
    wss => "wss",
    idle => "idle",
    client_vanishes => "client-vanishes",
    one_way => "one-way",
    healthy => "healthy",
    no_websocket => "no-websocket",
}

/// Every capture in fixtures/diagnose is one of the named ones, with its expected file.
#[test]
fn every_capture_is_tested() {
    let found: BTreeSet<String> = common::captures_in(&diagnose_dir())
        .iter()
        .map(|p| {
            p.file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    let named: BTreeSet<String> = CAPTURES.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        found, named,
        "fixtures/diagnose holds other captures than the tested ones (or lacks some)"
    );
    for name in CAPTURES {
        let e = diagnose_dir().join(format!("{name}.expected.json"));
        assert!(e.is_file(), "{} is missing", e.display());
    }
}

/// The healthy capture: exactly one finding, healthy, info, exit 0.
#[test]
fn healthy_is_only_healthy() {
    let capture = diagnose_dir().join("healthy.pcap");
    let run = diagnose(&capture, &["--json"]);
    let findings = parse_findings(&run);
    assert_eq!(run.exit, 0, "{}:\n{}", run.command, summary(&findings));
    assert_eq!(
        findings.len(),
        1,
        "{}:\n{}",
        run.command,
        summary(&findings)
    );
    assert_eq!(findings[0].kind, "healthy");
    assert_eq!(findings[0].severity, "info");
    assert_eq!(findings[0].count, 1, "one session");
}

/// The text form says in plain words what happened on the closed port.
#[test]
fn text_form_in_plain_words() {
    let capture = diagnose_dir().join("closed-port.pcap");
    let run = diagnose(&capture, &["--color", "never"]);
    assert_eq!(run.exit, 1, "{}: {}", run.command, run.stdout);
    let out = &run.stdout;
    assert!(
        out.starts_with("ERROR port_closed: "),
        "{}: {out}",
        run.command
    );
    for words in [
        "3 connection attempts",
        "127.0.0.1:8080",
        "reset",
        "Nothing listens",
    ] {
        assert!(
            out.contains(words),
            "{}: no {words:?} in: {out}",
            run.command
        );
    }
    assert!(
        !out.contains('{'),
        "{}: JSON in the text form: {out}",
        run.command
    );
    assert!(!out.contains('\x1b'), "{}: colour codes", run.command);

    let run = diagnose(&diagnose_dir().join("healthy.pcap"), &["--color", "never"]);
    assert_eq!(run.exit, 0, "{}: {}", run.command, run.stdout);
    assert!(
        run.stdout.starts_with("OK healthy: "),
        "{}: {}",
        run.command,
        run.stdout
    );
    assert!(
        run.stdout.contains("clean close"),
        "{}: {}",
        run.command,
        run.stdout
    );
}

// ---------------------------------------------------------------------------------------------
// The decoder fixtures of fixtures/: real implementations, all healthy but rejected-403

/// Upgraded connections listed by a fixture's expected file (the sessions diagnose counts).
fn upgraded_connections(capture: &Path) -> u64 {
    let stem = capture
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    let path = capture.with_file_name(format!("{stem}.expected.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    v["connections"]
        .as_array()
        .unwrap_or_else(|| panic!("{}: no connections", path.display()))
        .iter()
        .filter(|c| c["upgraded"] == true)
        .count() as u64
}

#[test]
fn decoder_fixtures() {
    let captures = common::captures_in(&common::fixtures_dir());
    assert!(
        captures.len() >= 10,
        "fixtures/ holds {} captures",
        captures.len()
    );
    let mut problems = Vec::new();
    for capture in &captures {
        let name = capture
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let run = diagnose(capture, &["--json"]);
        let findings = parse_findings(&run);
        let kinds: Vec<(&str, &str)> = findings
            .iter()
            .map(|f| (f.kind.as_str(), f.severity.as_str()))
            .collect();
        if name == "rejected-403.pcap" {
            // one upgrade refused with 403 (Origin), one accepted and closed cleanly
            let ok = kinds == [("not_websocket", "error")]
                && findings[0].count == 1
                && findings[0].detail.contains("HTTP 403")
                && run.exit == 1;
            if !ok {
                problems.push(format!(
                    "{name}: expected only not_websocket (error, count 1, HTTP 403) and exit 1; \
                     exit {}:\n{}",
                    run.exit,
                    summary(&findings)
                ));
            }
        } else {
            let sessions = upgraded_connections(capture);
            let ok =
                kinds == [("healthy", "info")] && findings[0].count == sessions && run.exit == 0;
            if !ok {
                problems.push(format!(
                    "{name}: expected only healthy (info, count {sessions}) and exit 0; exit {}:\n{}",
                    run.exit,
                    summary(&findings)
                ));
            }
        }
        check_text_matches_json(capture, &[], &findings);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
