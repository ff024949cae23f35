//! The README is part of the contract: its anomaly table, its JSON field list and its jq
//! recipes must stay true to the code.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use wsnoop::anomaly::AnomalyKind;

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md is readable")
}

#[test]
fn every_anomaly_kind_is_documented_with_its_rule() {
    let readme = readme();
    for kind in AnomalyKind::ALL {
        let row = format!(
            "| `{}` | {} |",
            kind.name(),
            kind.rule().replace("--max-message", "`--max-message`")
        );
        assert!(readme.contains(&row), "README lacks the row: {row}");
    }
}

/// Every field name wsnoop writes on the fixtures appears in the README's contract.
#[test]
fn every_json_field_is_documented() {
    let readme = readme();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut fields = BTreeSet::new();
    for name in [
        "python-deflate.pcap",
        "rejected-403.pcap",
        "signalling-8080.pcap",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_wsnoop"))
            .arg("-r")
            .arg(fixtures.join(name))
            .arg("--json")
            .output()
            .expect("wsnoop runs");
        assert!(out.status.success());
        for line in String::from_utf8(out.stdout).expect("UTF-8").lines() {
            let value: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            let object = value.as_object().expect("an object");
            let kind = object["type"].as_str().expect("a type").to_string();
            for key in object.keys() {
                fields.insert((kind.clone(), key.clone()));
            }
        }
    }
    assert!(fields.len() > 60, "too few fields seen: {}", fields.len());
    for (kind, field) in fields {
        assert!(
            readme.contains(&format!("\"{field}\"")),
            "README does not document the field \"{field}\" of {kind} events"
        );
    }
}

/// The jq recipes run and print something on a capture they are meant for.
#[test]
fn jq_recipes_run() {
    let readme = readme();
    let recipes: Vec<&str> = readme
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("wsnoop -r f.pcap --json | jq"))
        .collect();
    assert!(recipes.len() >= 6, "the README's jq recipes were not found");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_wsnoop"))
        .parent()
        .expect("a directory");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let dir = tempfile::tempdir().expect("a temporary directory");
    for recipe in recipes {
        // Each recipe has a capture that gives it something to print.
        let capture = if recipe.contains("upgraded|not") {
            "rejected-403.pcap"
        } else if recipe.contains("binary") {
            "python-basic.pcap"
        } else if recipe.contains("clean|not") {
            "crafted/close-rst.pcap"
        } else if recipe.contains("anomaly") {
            "crafted/unmasked-client-frame.pcap"
        } else {
            "signalling-8080.pcap"
        };
        std::fs::copy(fixtures.join(capture), dir.path().join("f.pcap")).expect("copy");
        let out = Command::new("bash")
            .args(["-c", recipe])
            .current_dir(dir.path())
            .env("PATH", &path)
            .output()
            .expect("bash runs");
        // A recipe ending in `head` may cut the pipe early, so the last command's status and
        // an empty stderr say whether it worked.
        assert!(
            out.status.success() && !out.stdout.is_empty() && out.stderr.is_empty(),
            "recipe failed or printed nothing on {capture}: {recipe}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
