//! The buffer one thread's events are written through: `std::io::BufWriter`'s job, with the
//! common case (the piece fits) small enough to be inlined into the writers, which write an
//! event in a dozen pieces: `BufWriter::write_all` was a call of 34 instructions a piece,
//! 3.8% of `--json --threads 1`.

use std::io::{self, Write};

pub struct Buffered<W: Write> {
    buf: Vec<u8>,
    inner: W,
    /// A write of `inner` failed: what is buffered is not written again on drop.
    failed: bool,
}

impl<W: Write> Buffered<W> {
    pub fn with_capacity(capacity: usize, inner: W) -> Buffered<W> {
        Buffered {
            buf: Vec::with_capacity(capacity.max(1)),
            inner,
            failed: false,
        }
    }

    /// Writes out what is buffered.
    fn drain(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let result = self.inner.write_all(&self.buf);
        self.failed |= result.is_err();
        self.buf.clear();
        result
    }

    #[cold]
    fn write_all_slow(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.drain()?;
        if bytes.len() >= self.buf.capacity() {
            let result = self.inner.write_all(bytes);
            self.failed |= result.is_err();
            return result;
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }
}

impl<W: Write> Write for Buffered<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.write_all(bytes)?;
        Ok(bytes.len())
    }

    #[inline(always)]
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.len() <= self.buf.capacity() - self.buf.len() {
            self.buf.extend_from_slice(bytes);
            return Ok(());
        }
        self.write_all_slow(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.drain()?;
        self.inner.flush()
    }
}

impl<W: Write> Drop for Buffered<W> {
    /// As `BufWriter`: what waits is written, errors and all ignored (a run that ends well
    /// has flushed already and seen them).
    fn drop(&mut self) {
        if !self.failed {
            let _ = self.drain();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `room` bytes in all, then fails.
    struct Tight {
        got: Vec<u8>,
        room: usize,
        writes: usize,
    }

    impl Write for Tight {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.writes += 1;
            let n = bytes.len().min(self.room - self.got.len());
            if n == 0 && !bytes.is_empty() {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "full"));
            }
            self.got.extend_from_slice(&bytes[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Pieces of every size around the capacity come out whole and in order, in as few
    /// writes as a buffer of that size needs, and the rest on flush.
    #[test]
    fn pieces_come_out_in_order() {
        let mut expected = Vec::new();
        let mut out = Buffered::with_capacity(
            16,
            Tight {
                got: Vec::new(),
                room: usize::MAX,
                writes: 0,
            },
        );
        for (i, len) in [1usize, 15, 16, 17, 3, 40, 0, 5].into_iter().enumerate() {
            let piece = vec![i as u8; len];
            out.write_all(&piece).unwrap();
            expected.extend_from_slice(&piece);
        }
        assert!(out.inner.got.len() < expected.len(), "something waits");
        out.flush().unwrap();
        assert_eq!(out.inner.got, expected);
        assert!(out.inner.writes <= 6, "{} writes", out.inner.writes);
    }

    /// A full device is an error at the write that meets it or at the flush, never lost.
    #[test]
    fn a_full_device_is_an_error() {
        let mut out = Buffered::with_capacity(
            8,
            Tight {
                got: Vec::new(),
                room: 10,
                writes: 0,
            },
        );
        let mut failed = false;
        for _ in 0..4 {
            failed |= out.write_all(b"abcdef").is_err();
        }
        failed |= out.flush().is_err();
        assert!(failed);
        assert_eq!(out.inner.got, b"abcdefabcd");
    }

    /// Dropped unflushed, it writes what waits, as BufWriter does.
    #[test]
    fn drop_writes_what_waits() {
        let mut got = Vec::new();
        {
            let mut out = Buffered::with_capacity(64, &mut got);
            out.write_all(b"tail").unwrap();
        }
        assert_eq!(got, b"tail");
    }
}
