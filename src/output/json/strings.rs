//! JSON strings: escaped as serde_json escapes them, eight bytes at a time.

use std::io::{self, Write};

/// What each byte becomes inside a JSON string: 0 for itself, else the letter after the
/// backslash ('u' for \u00XX). The same escapes serde_json writes.
static ESCAPES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

const ONES: u64 = 0x0101_0101_0101_0101;
pub(in crate::output) const HIGH: u64 = 0x8080_8080_8080_8080;
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// The high bit of each byte of `word` that equals `byte`. Exact, unlike the classic
/// has-zero test: the additions cannot carry into the next byte.
pub(in crate::output) fn bytes_equal(word: u64, byte: u8) -> u64 {
    let diff = word ^ (ONES * u64::from(byte));
    !(((diff & LOW7) + LOW7) | diff) & HIGH
}

/// The high bit of each byte of `word` below 0x20 (a control character).
pub(in crate::output) fn bytes_below_space(word: u64) -> u64 {
    !(word | ((word & LOW7) + ONES * 0x60)) & HIGH
}

/// Input bytes escaped per block: the block's output, at most six bytes per input byte, is
/// built on the stack and written in one piece.
pub(in crate::output) const ESCAPE_BLOCK: usize = 512;
/// A block's worst case, and room for the eight-byte stores of the last word.
pub(in crate::output) const ESCAPE_OUT: usize = ESCAPE_BLOCK * 6 + 24;
/// The same for strings of at most this many bytes.
const SHORT_BLOCK: usize = 128;
const SHORT_OUT: usize = SHORT_BLOCK * 6 + 24;

/// Appends `byte`, escaped, at `out[n..]`; returns the new length. Quotes and backslashes are
/// common in payloads that are JSON themselves, so they take no branch: both bytes of a
/// two-byte escape are stored and the length moves by one or two.
#[inline(always)]
fn escape_byte<const N: usize>(byte: u8, out: &mut [u8; N], n: usize) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let escape = ESCAPES[usize::from(byte)];
    if escape == b'u' {
        out[n..n + 6].copy_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[usize::from(byte >> 4)],
            HEX[usize::from(byte & 15)],
        ]);
        return n + 6;
    }
    let escaped = usize::from(escape != 0);
    out[n] = if escaped == 1 { b'\\' } else { byte };
    out[n + 1] = escape;
    n + 1 + escaped
}

/// Writes `word` at `out[n..]` with a backslash before each byte marked in `quotes` (quotes
/// and backslashes, which escape as themselves after a backslash); returns the new length.
/// Every piece is stored as a whole word, the bytes past the piece overwritten by the next.
#[inline(always)]
fn escape_quotes<const N: usize>(
    word: u64,
    mut quotes: u64,
    out: &mut [u8; N],
    mut n: usize,
) -> usize {
    let mut start = 0;
    while quotes != 0 {
        let at = (quotes.trailing_zeros() / 8) as usize;
        out[n..n + 8].copy_from_slice(&(word >> (8 * start)).to_le_bytes());
        n += at - start;
        out[n] = b'\\';
        n += 1;
        start = at;
        quotes &= quotes - 1;
    }
    out[n..n + 8].copy_from_slice(&(word >> (8 * start)).to_le_bytes());
    n + 8 - start
}

/// A JSON string, escaped eight bytes at a time: clean words are copied whole, words whose
/// only escapes are quotes and backslashes (payloads are often JSON themselves) are escaped
/// without a loop over their bytes, and control characters go byte by byte.
pub(in crate::output) fn string(w: &mut impl Write, s: &str) -> io::Result<()> {
    // The block buffer is zeroed at every call: most strings are short, and get a short one.
    if s.len() <= SHORT_BLOCK {
        string_in(w, s, SHORT_BLOCK, &mut [0u8; SHORT_OUT])
    } else {
        string_in(w, s, ESCAPE_BLOCK, &mut [0u8; ESCAPE_OUT])
    }
}

/// [`string`] through `out`, whose bytes need not be zero: what is read of it was written.
pub(in crate::output) fn string_in<const N: usize>(
    w: &mut impl Write,
    s: &str,
    block: usize,
    out: &mut [u8; N],
) -> io::Result<()> {
    out[0] = b'"';
    let mut n = 1;
    for block in s.as_bytes().chunks(block) {
        if n + block.len() * 6 + 17 > out.len() {
            w.write_all(&out[..n])?;
            n = 0;
        }
        let mut words = block.chunks_exact(8);
        for chunk in &mut words {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(chunk);
            let word = u64::from_le_bytes(bytes);
            let quotes = bytes_equal(word, b'"') | bytes_equal(word, b'\\');
            if bytes_below_space(word) != 0 {
                for &b in chunk {
                    n = escape_byte(b, out, n);
                }
            } else if quotes != 0 {
                n = escape_quotes(word, quotes, out, n);
            } else {
                out[n..n + 8].copy_from_slice(chunk);
                n += 8;
            }
        }
        for &b in words.remainder() {
            n = escape_byte(b, out, n);
        }
    }
    out[n] = b'"';
    w.write_all(&out[..n + 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_masks_are_exact() {
        for byte in 0..=255u8 {
            for at in 0..8 {
                // The byte among neighbours that each test could be fooled by.
                for fill in [0u8, b' ', b'"', b'\\', 0x1f, 0x80, 0xff] {
                    let mut bytes = [fill; 8];
                    bytes[at] = byte;
                    let word = u64::from_le_bytes(bytes);
                    for (i, &b) in bytes.iter().enumerate() {
                        let bit = 0x80u64 << (8 * i);
                        assert_eq!(bytes_equal(word, b'"') & bit != 0, b == b'"');
                        assert_eq!(bytes_equal(word, b'\\') & bit != 0, b == b'\\');
                        assert_eq!(bytes_below_space(word) & bit != 0, b < 0x20);
                    }
                }
            }
        }
    }

    #[test]
    fn random_strings_escape_as_serde_json_does() {
        let alphabet = [
            'a', 'Z', ' ', '"', '\\', '\n', '\u{1}', '\u{7f}', 'é', '✓', '😀', '{', ':',
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 1200) as usize;
            let s: String = (0..len)
                .map(|i| alphabet[((state >> (i % 50)) as usize + i * 7) % alphabet.len()])
                .collect();
            let mut ours = Vec::new();
            string(&mut ours, &s).unwrap();
            assert_eq!(ours, serde_json::to_vec(&s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn strings_escape_exactly_as_serde_json_does() {
        let samples = [
            "",
            "plain ascii text that runs for a while",
            "{\"type\":\"offer\",\"sdp\":\"v=0\\r\\no=- 46 2 IN IP4 127.0.0.1\\r\\n\"}",
            "ctl \u{0}\u{1}\u{1f}\u{7f} tab\t nl\n cr\r bs\u{8} ff\u{c} \\ \"",
            "héllo wörld ✓ 😀 \u{2028} \u{202e}",
        ];
        // Long strings cross the escaper's blocks, with escapes on the borders.
        let long_clean = "abcdefgh".repeat(300);
        let long_dirty = "\"\u{1}\\é".repeat(700);
        let long_mixed = format!("{long_clean}{long_dirty}{long_clean}\n");
        let longs = [
            long_clean.as_str(),
            long_dirty.as_str(),
            long_mixed.as_str(),
        ];
        for s in longs {
            for cut in [0, 1, 3, 7] {
                let mut ours = Vec::new();
                string(&mut ours, &s[cut..]).unwrap();
                assert_eq!(ours, serde_json::to_vec(&s[cut..]).unwrap());
            }
        }
        for sample in samples {
            for cut in 0..sample.len().min(20) {
                let Some(s) = sample.get(cut..) else { continue };
                let mut ours = Vec::new();
                string(&mut ours, s).unwrap();
                assert_eq!(ours, serde_json::to_vec(s).unwrap(), "{s:?}");
            }
        }
    }
}
