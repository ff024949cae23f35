//! The process around a run: signals (Ctrl-C, SIGTERM, SIGHUP), dropping privileges, and how
//! standard output is found closed or its reader gone. The binary's `unsafe` C calls are here.

use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use wsnoop::RunError;
use wsnoop::capture::CaptureError;

/// Set by SIGHUP: `--output` opens its file again before the next write.
pub(crate) static REOPEN: AtomicBool = AtomicBool::new(false);

extern "C" fn on_hangup(_: libc::c_int) {
    REOPEN.store(true, Ordering::Relaxed);
}

/// SIGHUP asks `--output` to reopen its file (logrotate's postrotate), as Suricata does.
/// SA_RESTART: a read interrupted by it goes on.
pub(crate) fn install_hangup_handler() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_hangup as *const () as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigaction(libc::SIGHUP, &action, std::ptr::null_mut());
    }
}

pub(crate) static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// SIGINT and SIGTERM end the run cleanly: output and the -w file are flushed. No SA_RESTART,
/// so a blocking wait returns and the loop sees the request. SA_RESETHAND: a second signal,
/// should the clean stop hang (a reader that stopped reading), ends the process at once.
pub(crate) fn install_signal_handlers() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as usize;
            action.sa_flags = libc::SA_RESETHAND;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

pub(crate) fn drop_privileges(user: &str) -> anyhow::Result<()> {
    let name = std::ffi::CString::new(user).context("user name contains a NUL byte")?;
    // SAFETY: getpwnam returns a pointer into static storage, read at once; the set*id calls
    // take plain integers.
    unsafe {
        let pw = libc::getpwnam(name.as_ptr());
        if pw.is_null() {
            bail!("-Z {user}: no such user");
        }
        let (uid, gid) = ((*pw).pw_uid, (*pw).pw_gid);
        if libc::initgroups(name.as_ptr(), gid) != 0
            || libc::setgid(gid) != 0
            || libc::setuid(uid) != 0
        {
            bail!(
                "-Z {user}: cannot switch user: {}",
                io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

/// Whether standard output was closed when wsnoop started (`>&-`). Rust's runtime then
/// opens /dev/null on descriptor 1, read-write, so that the first file opened does not take
/// its place; a redirection to /dev/null by a shell opens it write-only. A closed stdout
/// would lose the output without a word.
pub(crate) fn stdout_was_closed() -> bool {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let Ok(null) = std::fs::metadata("/dev/null") else {
        return false;
    };
    let fd = io::stdout().as_raw_fd();
    // SAFETY: fcntl and fstat on a descriptor number only read the kernel's state of it;
    // the stat buffer is ours, zeroed, and fstat fills it.
    let (flags, stat) = unsafe {
        let mut stat: libc::stat = std::mem::zeroed();
        let flags = libc::fcntl(fd, libc::F_GETFL);
        (flags, (libc::fstat(fd, &mut stat) == 0).then_some(stat))
    };
    let Some(stat) = stat else {
        return false;
    };
    null.file_type().is_char_device()
        && stat.st_rdev == null.rdev()
        && (stat.st_mode & libc::S_IFMT) == libc::S_IFCHR
        && flags >= 0
        && flags & libc::O_ACCMODE == libc::O_RDWR
}

/// Writes `bytes` to standard output; a reader that went away (`| head`) is no failure.
pub(crate) fn print_all(bytes: &[u8]) -> anyhow::Result<ExitCode> {
    match io::stdout().lock().write_all(bytes) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

pub(crate) fn reader_gone(e: &anyhow::Error) -> bool {
    let saving = |c: &CaptureError| {
        matches!(
            c,
            CaptureError::Savefile {
                reader_gone: true,
                ..
            }
        )
    };
    e.chain().any(|cause| {
        cause.downcast_ref::<CaptureError>().is_some_and(saving)
            || matches!(cause.downcast_ref::<RunError>(), Some(RunError::Capture(c)) if saving(c))
    })
}
