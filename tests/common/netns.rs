//! Private network namespaces for the live-capture tests, and the little they need around them.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs `program args` to its end; panics with its stderr when it fails.
pub fn run_ok(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A private network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// A namespace with its loopback up at MTU 1500, offloads off where ethtool is there.
    pub fn new(tag: &str) -> Netns {
        let name = format!("wsnoop-{}-{tag}", std::process::id());
        // A leftover of a killed earlier run that had the same pid.
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        run_ok("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        run_ok(
            "ip",
            &["-n", &ns.name, "link", "set", "lo", "mtu", "1500", "up"],
        );
        match ns
            .command(
                "ethtool",
                &["-K", "lo", "tso", "off", "gso", "off", "gro", "off"],
            )
            .output()
        {
            Ok(out) => assert!(
                out.status.success(),
                "ethtool -K lo failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
            // Without ethtool the capture sees offloaded super-segments: still a valid test.
            Err(e) => eprintln!("note: ethtool not available ({e}); loopback offloads stay on"),
        }
        ns
    }

    /// `program args` in the namespace; `ip netns exec` execs it, so the child is the program.
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program])
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    /// Moves the calling thread (only it) into the namespace.
    pub fn enter(&self) -> Result<(), String> {
        enter_netns(&self.name)
    }
}

/// Moves the calling thread (only it) into the network namespace `name`.
pub fn enter_netns(name: &str) -> Result<(), String> {
    let path = format!("/var/run/netns/{name}");
    let file = File::open(&path).map_err(|e| format!("{path}: {e}"))?;
    // SAFETY: a valid namespace descriptor; CLONE_NEWNET changes this thread's network
    // namespace alone.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(format!("setns {path}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
