//! Binary payloads for people: on the frame's line the first bytes as hex and ASCII, as
//! `hexdump -C` prints a row; with `-X` every byte, as tcpdump's `-X` dump.

use std::io::{self, Write};

/// Bytes of a binary payload shown on its line; the rest is marked `...` (`-X` shows all).
pub(crate) const PREVIEW: usize = 16;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Printable ASCII as itself, anything else (controls, UTF-8 bytes, DEL) as a dot: nothing
/// off the wire reaches the terminal as a control.
fn shown(b: u8) -> u8 {
    if (0x20..0x7f).contains(&b) { b } else { b'.' }
}

/// ` 68 65 6c 6c 6f |hello|`, then `...` when the payload has more than is shown.
pub(crate) fn preview(w: &mut impl Write, data: &[u8], truncated: bool) -> io::Result<()> {
    let head = &data[..data.len().min(PREVIEW)];
    // One row: 3 bytes of hex and one of ASCII per byte, the bars, the dots.
    let mut row = [0u8; PREVIEW * 4 + 8];
    let mut n = 0;
    for &b in head {
        row[n..n + 3].copy_from_slice(&[b' ', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        n += 3;
    }
    row[n..n + 2].copy_from_slice(b" |");
    n += 2;
    for &b in head {
        row[n] = shown(b);
        n += 1;
    }
    row[n] = b'|';
    n += 1;
    if data.len() > PREVIEW || truncated {
        row[n..n + 3].copy_from_slice(b"...");
        n += 3;
    }
    w.write_all(&row[..n])
}

/// `-X`: every byte, 16 a line, under the event's line: offset, hex in pairs, ASCII.
pub(crate) fn dump(w: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    for (i, line) in bytes.chunks(16).enumerate() {
        write!(w, "\t0x{:04x}:  ", i * 16)?;
        for pair in 0..8 {
            match line.get(pair * 2..(pair * 2 + 2).min(line.len())) {
                Some(p) if !p.is_empty() => {
                    for b in p {
                        write!(w, "{b:02x}")?;
                    }
                    if p.len() == 1 {
                        w.write_all(b"  ")?;
                    }
                }
                _ => w.write_all(b"    ")?,
            }
            w.write_all(b" ")?;
        }
        w.write_all(b" ")?;
        let mut ascii = [0u8; 16];
        for (a, &b) in ascii.iter_mut().zip(line) {
            *a = shown(b);
        }
        w.write_all(&ascii[..line.len()])?;
        w.write_all(b"\n")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(data: &[u8], truncated: bool) -> String {
        let mut out = Vec::new();
        preview(&mut out, data, truncated).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_row_as_hexdump_shows_it() {
        assert_eq!(row(b"\xca\xfe\x00A|", false), " ca fe 00 41 7c |...A||");
        assert_eq!(row(b"", true), " ||...");
        let long: Vec<u8> = (b'a'..=b'z').collect();
        assert_eq!(
            row(&long, false),
            " 61 62 63 64 65 66 67 68 69 6a 6b 6c 6d 6e 6f 70 |abcdefghijklmnop|..."
        );
    }
}
