//! Long lines on a terminal (issue 17): under a real pseudo-terminal of a given size (Python's
//! `pty`, TIOCSWINSZ), every text line fits the terminal's width as Python's `unicodedata`
//! counts it (wide characters two columns, colour escapes none) and a cut line ends in `…`
//! after a prefix of the line a pipe gets; in a pipe, with `--wrap` and with `--json` nothing
//! is cut.

mod common;

use std::process::Command;

use serde_json::Value;

/// Runs wsnoop on a pseudo-terminal of `cols` columns (0: the terminal does not say, and
/// `$COLUMNS` is set to argv[2]) and prints, as JSON, its lines with escapes removed and the
/// widest line's columns.
const ON_A_PTY: &str = r#"
import fcntl, json, os, pty, re, struct, subprocess, sys, termios, unicodedata
cols, columns_env, args = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
master, slave = pty.openpty()
fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', 24, cols, 0, 0))
env = dict(os.environ)
env.pop('COLUMNS', None)
env.pop('NO_COLOR', None)
if columns_env:
    env['COLUMNS'] = columns_env
child = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=slave,
                         stderr=subprocess.DEVNULL, env=env)
os.close(slave)
out = b''
while True:
    try:
        chunk = os.read(master, 65536)
    except OSError:  # EIO: the child closed the terminal
        break
    if not chunk:
        break
    out += chunk
child.wait()
assert child.returncode == 0, child.returncode
text = out.decode('utf-8').replace('\r\n', '\n')
def width(line):
    w = 0
    for ch in line:
        if ch == '\t':
            w += 8 - w % 8
        elif unicodedata.combining(ch) or unicodedata.category(ch) in ('Mn', 'Me', 'Cf'):
            pass
        elif unicodedata.east_asian_width(ch) in ('W', 'F'):
            w += 2
        else:
            w += 1
    return w
lines = [re.sub(r'\x1b\[[0-9;]*m', '', l) for l in text.split('\n')[:-1]]
cut = [width(l) for l in lines if l.endswith('\u2026')]
print(json.dumps({'lines': lines, 'widest': max(map(width, lines), default=0),
                  'narrowest_cut': min(cut, default=cols)}))
"#;

/// The lines, the widest line's columns, the narrowest cut line's.
fn on_a_pty(cols: u16, columns_env: &str, args: &[&str]) -> (Vec<String>, u64, u64) {
    let out = Command::new("python3")
        .args(["-c", ON_A_PTY, &cols.to_string(), columns_env])
        .arg(common::wsnoop_bin())
        .args(args)
        .output()
        .expect("python3 (needed for this test)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let lines = v["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    let narrowest = v["narrowest_cut"].as_u64().unwrap();
    (lines, v["widest"].as_u64().unwrap(), narrowest)
}

fn in_a_pipe(args: &[&str]) -> Vec<String> {
    let out = Command::new(common::wsnoop_bin())
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Each terminal line is the pipe's line, or a prefix of it and the marker.
fn check_cut(tty: &[String], pipe: &[String], what: &str) -> usize {
    assert_eq!(tty.len(), pipe.len(), "{what}: the same lines");
    let mut cut = 0;
    for (t, p) in tty.iter().zip(pipe) {
        if t != p {
            let head = t
                .strip_suffix('…')
                .unwrap_or_else(|| panic!("{what}: {t:?}"));
            assert!(
                p.starts_with(head) && p.len() > head.len(),
                "{what}: {t:?} {p:?}"
            );
            cut += 1;
        }
    }
    cut
}

#[test]
fn a_terminals_lines_are_cut_at_its_width() {
    // Widths at which a wide character (🚀 in node-ws, 😀 in chromium-deflate) meets the
    // last column, and -X's dump lines (tabs).
    for (name, extra, widths) in [
        ("node-ws.pcap", "-X", [40u16, 86, 87, 88, 89, 90]),
        ("chromium-deflate.pcap", "-n", [60, 101, 102, 103, 122, 123]),
    ] {
        let capture = common::fixtures_dir().join(name);
        let capture = capture.to_str().unwrap();
        let args = ["-r", capture, "--show", "all", extra];
        let pipe = in_a_pipe(&args);
        for cols in widths {
            let (tty, widest, narrowest) = on_a_pty(cols, "", &args);
            assert!(widest <= u64::from(cols), "{name}: {widest} > {cols}");
            // A cut line fills the width (one column short when a wide character would cross it).
            assert!(
                narrowest + 1 >= u64::from(cols),
                "{name}: cut at {narrowest} of {cols}"
            );
            let cut = check_cut(&tty, &pipe, &format!("{name} at {cols}"));
            assert!(cut > 0, "{name} at {cols}: some line is longer");
            if cols == widths[1] {
                // Colour is on (a terminal): with it off, the same cut.
                let (plain, _, _) =
                    on_a_pty(cols, "", &[&args[..], &["--color", "never"]].concat());
                assert_eq!(tty, plain, "{name} at {cols}: escapes take no column");
            }
        }
    }
}

#[test]
fn columns_is_the_width_when_the_terminal_does_not_say() {
    let capture = common::fixtures_dir().join("signalling-8080.pcap");
    let capture = capture.to_str().unwrap();
    let (tty, widest, narrowest) = on_a_pty(0, "50", &["-r", capture]);
    assert!(widest <= 50 && narrowest >= 49, "{widest} {narrowest}");
    assert!(check_cut(&tty, &in_a_pipe(&["-r", capture]), "COLUMNS=50") > 0);
}

#[test]
fn nothing_is_cut_in_a_pipe_with_wrap_or_in_json() {
    let capture = common::fixtures_dir().join("signalling-8080.pcap");
    let capture = capture.to_str().unwrap();
    let pipe = in_a_pipe(&["-r", capture]);
    // Lines a terminal of 60 columns would have cut.
    assert!(pipe.iter().any(|l| l.chars().count() > 60));
    let (wrapped, _, _) = on_a_pty(60, "", &["-r", capture, "--wrap", "--color", "never"]);
    assert_eq!(wrapped, pipe, "--wrap");
    let (json, widest, _) = on_a_pty(60, "", &["-r", capture, "--json"]);
    assert!(widest > 60);
    assert_eq!(json, in_a_pipe(&["-r", capture, "--json"]), "--json");
}

/// A pseudo-terminal of 60 columns resized to 40 while wsnoop reads a slow pipe: the pcap
/// header and packets up to the server's "hello" frame, then (its line seen) the resize and
/// the rest. Prints the lines up to that one and those after, escapes removed, as JSON.
const RESIZED: &str = r#"
import fcntl, json, os, pty, re, select, struct, subprocess, sys, termios, time
wsnoop, capture = sys.argv[1], sys.argv[2]
data = open(capture, 'rb').read()
records, at = [], 24
while at + 16 <= len(data):
    n = 16 + struct.unpack('<I', data[at + 8:at + 12])[0]
    records.append(data[at:at + n])
    at += n
hello = b'\x81\x05hello'
last = next(i for i, r in enumerate(records) if hello in r)
master, slave = pty.openpty()
fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', 24, 60, 0, 0))
env = dict(os.environ)
env.pop('COLUMNS', None)
child = subprocess.Popen([wsnoop, '-r', '-', '-t', '--color', 'never'] + sys.argv[3:],
                         stdin=subprocess.PIPE, stdout=slave, stderr=subprocess.DEVNULL, env=env)
child.stdin.write(data[:24] + b''.join(records[:last + 1]))
child.stdin.flush()
out = b''
deadline = time.monotonic() + 20
while b'len=5 "hello"' not in out.replace(b'masked len=5', b''):
    left = deadline - time.monotonic()
    assert left > 0, 'no hello line while the pipe was open'
    if select.select([master], [], [], left)[0]:
        out += os.read(master, 65536)
before = out
fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', 24, 40, 0, 0))
os.close(slave)
child.stdin.write(b''.join(records[last + 1:]))
child.stdin.close()
while True:
    try:
        chunk = os.read(master, 65536)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
assert child.wait() == 0
lines = lambda b: b.decode().replace('\r\n', '\n').split('\n')[:-1]
print(json.dumps({'before': lines(before), 'after': lines(out[len(before):])}))
"#;

#[test]
fn a_resized_terminal_is_followed_from_the_next_line() {
    let capture = common::fixtures_dir().join("python-basic.pcap");
    for threads in ["1", "2"] {
        let out = Command::new("python3")
            .args(["-c", RESIZED])
            .arg(common::wsnoop_bin())
            .arg(&capture)
            .args(["--threads", threads])
            .output()
            .expect("python3 (needed for this test)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let columns = |part: &str| -> Vec<usize> {
            v[part]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l.as_str().unwrap().chars().count())
                .collect()
        };
        let (before, after) = (columns("before"), columns("after"));
        assert!(!before.is_empty() && !after.is_empty(), "{v}");
        // Cut before any wide character (😀): a character is a column.
        assert!(
            before.iter().all(|&w| w <= 60) && before.iter().any(|&w| w > 40),
            "{v}"
        );
        assert!(after.iter().all(|&w| w <= 40) && after.contains(&40), "{v}");
    }
}
