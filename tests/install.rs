//! What an install needs besides the binary: shell completions and the manual page, checked
//! against the options `--help` lists (clap's own text) and by the shells and man themselves.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

fn wsnoop(args: &[&str]) -> String {
    let out = Command::new(common::wsnoop_bin())
        .args(args)
        .output()
        .expect("run wsnoop");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// The long options `wsnoop --help` shows.
fn long_options() -> BTreeSet<String> {
    wsnoop(&["--help"])
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("--"))
        .map(|w| {
            w.trim_end_matches([',', '.', ')'])
                .split(['=', '['])
                .next()
                .unwrap()
                .to_string()
        })
        .filter(|w| w.len() > 1 && w.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        .collect()
}

#[test]
fn bash_completion_is_valid_and_knows_every_option() {
    let script = wsnoop(&["completions", "bash"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wsnoop.bash");
    std::fs::write(&path, &script).unwrap();
    let status = Command::new("bash").arg("-n").arg(&path).status().unwrap();
    assert!(status.success(), "bash -n refuses the completion script");
    let options = long_options();
    assert!(options.len() > 20, "{options:?}");
    for option in &options {
        assert!(
            script.contains(&format!("--{option}")),
            "--{option} not completed"
        );
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        assert!(
            wsnoop(&["completions", shell]).contains("keylog"),
            "{shell}"
        );
    }
}

#[test]
fn the_manual_page_renders_with_every_option() {
    let page = wsnoop(&["man"]);
    assert!(page.contains(".TH wsnoop 1"));
    for option in long_options() {
        // roff escapes the dashes of an option.
        let roff = format!("\\-\\-{}", option.replace('-', "\\-"));
        assert!(page.contains(&roff), "--{option} missing from the page");
    }
}
