//! Long lines cut at the terminal's width, with a marker, as `less -S` shows them: a line
//! that does not fit ends in `…` at the last column instead of wrapping onto the next ones.
//! Only for a terminal (a pipe or a file gets every byte), and only for text output.
//!
//! Columns are counted as a terminal counts them: colour escapes take none, a wide (CJK,
//! emoji) character two, a combining mark none, a tab up to the next multiple of 8. What is
//! written is text output, already escaped: no other control reaches here.

use std::io::{self, Write};

use unicode_width::UnicodeWidthChar;

/// The marker at the end of a cut line (one column).
pub const MARKER: &str = "\u{2026}";

/// The width to cut standard output's lines at: the terminal's, else `$COLUMNS`; None when
/// standard output is no terminal.
pub fn stdout_columns() -> Option<usize> {
    use std::io::IsTerminal;
    if !io::stdout().is_terminal() {
        return None;
    }
    crate::ffi::terminal_columns(libc::STDOUT_FILENO)
        .map(usize::from)
        .or_else(|| std::env::var("COLUMNS").ok()?.trim().parse().ok())
        .filter(|&w| w >= 2)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Escape {
    None,
    /// After ESC.
    Start,
    /// Inside `ESC [ ...`, until its final byte.
    Csi,
}

/// A writer that cuts each line at `width` columns.
pub struct CutLines<W: Write> {
    inner: W,
    width: usize,
    /// Columns written of the current line.
    col: usize,
    /// The line was cut: what is left of it is dropped (its escapes still pass, so a colour
    /// is still reset).
    cut: bool,
    /// A character that fills the last column: written if the line ends after it, replaced
    /// by the marker if more follows. With the escapes that came after it.
    pending: Vec<u8>,
    pending_escapes: Vec<u8>,
    escape: Escape,
    /// A UTF-8 character whose bytes came in two writes.
    utf8: [u8; 4],
    utf8_len: usize,
    utf8_need: usize,
    /// What one write makes, handed on in one piece.
    buf: Vec<u8>,
    /// Asks standard output's terminal its width at each write, so that a resized window is
    /// followed from the next line on.
    follow: bool,
    next_width: usize,
}

impl<W: Write> CutLines<W> {
    pub fn new(inner: W, width: usize) -> Self {
        CutLines {
            inner,
            width: width.max(2),
            col: 0,
            cut: false,
            pending: Vec::new(),
            pending_escapes: Vec::new(),
            escape: Escape::None,
            utf8: [0; 4],
            utf8_len: 0,
            utf8_need: 0,
            buf: Vec::new(),
            follow: false,
            next_width: width.max(2),
        }
    }

    /// Follows standard output's terminal when it is resized (one ioctl per write: at most
    /// one per buffer, or per packet live).
    pub fn following_stdout(mut self) -> Self {
        self.follow = true;
        self
    }

    pub fn into_inner(self) -> W {
        self.inner
    }

    /// Bytes that take no column.
    fn zero_width(&mut self, bytes: &[u8]) {
        if self.pending.is_empty() {
            self.buf.extend_from_slice(bytes);
        } else {
            self.pending_escapes.extend_from_slice(bytes);
        }
    }

    /// One character, `width` columns wide.
    fn visible(&mut self, bytes: &[u8], width: usize) {
        if self.cut {
            return;
        }
        if width == 0 {
            // A combining mark goes with the character before it.
            if self.pending.is_empty() {
                self.buf.extend_from_slice(bytes);
            } else {
                self.pending.extend_from_slice(bytes);
            }
            return;
        }
        if !self.pending.is_empty() {
            // More after the last column's character: the line is cut there.
            self.pending.clear();
            self.cut_here();
            return;
        }
        if self.col + width < self.width {
            self.buf.extend_from_slice(bytes);
            self.col += width;
        } else if self.col + width == self.width {
            self.pending.extend_from_slice(bytes);
        } else {
            self.cut_here();
        }
    }

    fn cut_here(&mut self) {
        self.buf.extend_from_slice(MARKER.as_bytes());
        self.buf.append(&mut self.pending_escapes);
        self.cut = true;
    }

    fn end_of_line(&mut self) {
        self.buf.append(&mut self.pending);
        self.buf.append(&mut self.pending_escapes);
        self.buf.push(b'\n');
        self.col = 0;
        self.cut = false;
        self.width = self.next_width;
    }

    fn byte(&mut self, b: u8) {
        match self.escape {
            Escape::None => {}
            Escape::Start => {
                self.zero_width(&[b]);
                self.escape = if b == b'[' { Escape::Csi } else { Escape::None };
                return;
            }
            Escape::Csi => {
                self.zero_width(&[b]);
                if (0x40..=0x7e).contains(&b) {
                    self.escape = Escape::None;
                }
                return;
            }
        }
        if self.utf8_need > 0 {
            if b & 0xc0 == 0x80 {
                self.utf8[self.utf8_len] = b;
                self.utf8_len += 1;
                if self.utf8_len == self.utf8_need {
                    self.utf8_need = 0;
                    let bytes = self.utf8;
                    let bytes = &bytes[..self.utf8_len];
                    let width = std::str::from_utf8(bytes)
                        .ok()
                        .and_then(|s| s.chars().next())
                        .map_or(1, |c| c.width().unwrap_or(0));
                    self.visible(bytes, width);
                }
                return;
            }
            // Not UTF-8 after all (text output always is): one column each.
            self.utf8_need = 0;
            let bytes = self.utf8;
            self.visible(&bytes[..self.utf8_len], 1);
        }
        match b {
            b'\n' => self.end_of_line(),
            0x1b => {
                self.zero_width(&[b]);
                self.escape = Escape::Start;
            }
            b'\t' => {
                let width = 8 - self.col % 8;
                self.visible(b"\t", width);
            }
            0x00..=0x1f | 0x7f => self.zero_width(&[b]),
            0xc0..=0xf7 => {
                self.utf8[0] = b;
                self.utf8_len = 1;
                self.utf8_need = match b {
                    0xc0..=0xdf => 2,
                    0xe0..=0xef => 3,
                    _ => 4,
                };
            }
            _ => self.visible(&[b], 1),
        }
    }
}

impl<W: Write> Write for CutLines<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.follow
            && let Some(cols) = crate::ffi::terminal_columns(libc::STDOUT_FILENO)
        {
            self.next_width = usize::from(cols).max(2);
            if self.col == 0 && !self.cut && self.pending.is_empty() {
                self.width = self.next_width;
            }
        }
        for &b in data {
            self.byte(b);
        }
        let written = self.inner.write_all(&self.buf);
        self.buf.clear();
        written.map(|()| data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(text: &str, width: usize) -> String {
        let mut w = CutLines::new(Vec::new(), width);
        // Byte by byte: a character or an escape split over writes is still one.
        for b in text.as_bytes() {
            w.write_all(std::slice::from_ref(b)).unwrap();
        }
        String::from_utf8(w.into_inner()).unwrap()
    }

    #[test]
    fn lines_that_fit_pass_whole_and_others_end_in_the_marker() {
        assert_eq!(
            cut("abcde\nabcdef\nabcdefg\n", 6),
            "abcde\nabcdef\nabcde…\n"
        );
        assert_eq!(cut("\n\nab\n", 2), "\n\nab\n");
    }

    #[test]
    fn escapes_take_no_column_and_still_reset() {
        assert_eq!(cut("\x1b[31mabcdefgh\x1b[0m\n", 4), "\x1b[31mabc…\x1b[0m\n");
        assert_eq!(cut("\x1b[31mabcd\x1b[0m\n", 4), "\x1b[31mabcd\x1b[0m\n");
    }

    #[test]
    fn wide_characters_take_two_columns() {
        // 😀 is two columns: "ab😀" fills 4, "ab😀c" does not fit.
        assert_eq!(cut("ab😀\n", 4), "ab😀\n");
        assert_eq!(cut("ab😀c\n", 4), "ab…\n");
        // A wide character that would cross the last column is not split.
        assert_eq!(cut("abc😀\n", 4), "abc…\n");
        // A combining mark stays with its letter.
        assert_eq!(cut("abce\u{301}\n", 4), "abce\u{301}\n");
    }
}
