//! `--output FILE`: events appended to a file that is opened again when asked (SIGHUP), as
//! Suricata does with eve.json, so that logrotate can move the file away and the next event
//! starts a new one.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

pub struct ReopeningFile {
    path: PathBuf,
    file: File,
    /// Set (from a signal handler) when the file is to be opened again.
    reopen: &'static AtomicBool,
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl ReopeningFile {
    pub fn new(path: &Path, reopen: &'static AtomicBool) -> io::Result<ReopeningFile> {
        Ok(ReopeningFile {
            path: path.to_path_buf(),
            file: open(path)?,
            reopen,
        })
    }

    /// Opens the path again if asked since the last write; the old file is closed after
    /// whatever was written to it.
    fn reopen_if_asked(&mut self) -> io::Result<()> {
        if self.reopen.swap(false, Ordering::Relaxed) {
            self.file.flush()?;
            self.file = open(&self.path)?;
        }
        Ok(())
    }
}

impl Write for ReopeningFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.reopen_if_asked()?;
        self.file.write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.reopen_if_asked()?;
        self.file.write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}
