//! The one buffer a file is read into, reused for the whole file: large reads, compacted
//! only when a record would not fit, grown only for a record that a checked length says is
//! bigger; and the fixed-width fields read off it.

use std::io::Read;

use super::{CaptureError, FileReader, MAX_BLOCK};

/// Below this much free space at the end of the buffer, it is compacted before reading.
const MIN_READ: usize = 64 << 10;

pub(super) fn u32_at(b: &[u8], at: usize, big: bool) -> u32 {
    let mut w = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        w.copy_from_slice(s);
    }
    if big {
        u32::from_be_bytes(w)
    } else {
        u32::from_le_bytes(w)
    }
}

pub(super) fn u16_at(b: &[u8], at: usize, big: bool) -> u16 {
    let mut w = [0u8; 2];
    if let Some(s) = b.get(at..at + 2) {
        w.copy_from_slice(s);
    }
    if big {
        u16::from_be_bytes(w)
    } else {
        u16::from_le_bytes(w)
    }
}

impl FileReader {
    pub(super) fn available(&self) -> usize {
        self.end - self.start
    }

    pub(super) fn consume(&mut self, n: usize) {
        self.start += n;
    }

    pub(super) fn offset(&self) -> u64 {
        self.base + self.start as u64
    }

    /// Reads until `need` bytes are unconsumed or the input ends; returns how many are.
    /// One read asks for all the free space, so a file goes in large reads, and a pipe gives
    /// what it has at once.
    pub(super) fn fill(&mut self, need: usize) -> std::io::Result<usize> {
        while self.available() < need && !self.eof {
            // Move the unconsumed tail to the front when the record would not fit after it,
            // or when only a small read would: what moves is less than one record.
            if self.start > 0
                && (self.buf.len() - self.start < need || self.buf.len() - self.end < MIN_READ)
            {
                self.buf.copy_within(self.start..self.end, 0);
                self.base += self.start as u64;
                self.end -= self.start;
                self.start = 0;
            }
            if self.buf.len() < need {
                self.buf.resize(need.next_power_of_two().min(MAX_BLOCK), 0);
            }
            // An interrupted read is returned: the run loop tells a stop request by its flag.
            match self.input.read(&mut self.buf[self.end..])? {
                0 => self.eof = true,
                n => self.end += n,
            }
        }
        Ok(self.available())
    }

    pub(super) fn damaged(&self, message: String) -> CaptureError {
        CaptureError::Read {
            source_name: self.name.clone(),
            message,
        }
    }

    pub(super) fn io_error(&self, e: std::io::Error) -> CaptureError {
        self.damaged(e.to_string())
    }

    /// Makes `need` bytes available for the record starting here, or says the file ends
    /// inside it.
    #[inline]
    pub(super) fn need(&mut self, need: usize, what: &str) -> Result<bool, CaptureError> {
        if self.available() >= need {
            return Ok(true);
        }
        self.need_more(need, what)
    }

    #[inline(never)]
    fn need_more(&mut self, need: usize, what: &str) -> Result<bool, CaptureError> {
        let got = self.fill(need).map_err(|e| self.io_error(e))?;
        if got >= need {
            return Ok(true);
        }
        if got == 0 {
            return Ok(false);
        }
        Err(self.damaged(format!(
            "truncated file: the {what} at byte {} needs {need} bytes, only {got} follow",
            self.offset()
        )))
    }
}
