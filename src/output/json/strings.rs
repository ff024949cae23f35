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
    !not_controls(word) & HIGH
}

/// Input bytes escaped per block: the block's output, at most six bytes per input byte, is
/// built on the stack and written in one piece.
pub(in crate::output) const ESCAPE_BLOCK: usize = 512;
/// A block's worst case after the opening quote, and room for the whole window of its last
/// word (see [`string_in`]).
pub(in crate::output) const ESCAPE_OUT: usize = 1 + ESCAPE_BLOCK * 6 + WINDOW;
/// The same for strings of at most this many bytes.
const SHORT_BLOCK: usize = 128;
const SHORT_OUT: usize = 1 + SHORT_BLOCK * 6 + WINDOW;

const QUOTES: u64 = ONES * b'"' as u64;
const BACKSLASHES: u64 = ONES * b'\\' as u64;
const SPACES: u64 = ONES * b' ' as u64;

/// What a word may become: eight `\u00XX`.
const WINDOW: usize = 48;
/// What a word without control characters may become, with room for the eight-byte store
/// after its last backslash.
const QUOTED: usize = 24;

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

/// The high bit set in each byte of `word` that is not a control character.
#[inline(always)]
fn not_controls(word: u64) -> u64 {
    // The addition cannot carry into the next byte; a byte with its high bit set is no
    // control character.
    ((word & LOW7) + ONES * 0x60) | word
}

// Forced inline: left to itself the compiler called it for each word, 2.5% of `--json`'s
// instructions.
#[inline(always)]
fn word(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes.try_into().unwrap())
}

/// Writes `word` escaped at the start of `dst`; returns how many bytes that took.
#[inline(always)]
fn escape_word(word: u64, dst: &mut [u8; WINDOW]) -> usize {
    if not_controls(word) & HIGH == HIGH {
        return escape_quotes(word, (&mut dst[..QUOTED]).try_into().unwrap());
    }
    let mut k = 0;
    for b in word.to_le_bytes() {
        k = escape_byte(b, dst, k);
    }
    k
}

/// [`escape_word`] for a word without control characters, whose only escapes are quotes and
/// backslashes: it is stored whole, then again from each of those on, one byte further, after
/// a backslash. Every store is of a whole word, its bytes past the piece overwritten by the
/// next.
#[inline(always)]
fn escape_quotes(word: u64, dst: &mut [u8; QUOTED]) -> usize {
    // One `& LOW7` serves both tests; neither addition can carry into the next byte.
    let low = word & LOW7;
    let mut quotes = !((((low ^ QUOTES) + LOW7) & ((low ^ BACKSLASHES) + LOW7)) | word) & HIGH;
    dst[..8].copy_from_slice(&word.to_le_bytes());
    // A bound the compiler sees: the loop is unrolled and its stores go unchecked, where a
    // `while` over the quotes checked two of every nine instructions' bounds.
    for k in 0..8 {
        if quotes == 0 {
            return 8 + k;
        }
        let bit = quotes.trailing_zeros();
        let at = (bit / 8) as usize + k;
        dst[at] = b'\\';
        // `bit & 0x38` rather than `bit - 7`, which the compiler cannot bound.
        dst[at + 1..at + 9].copy_from_slice(&(word >> (bit & 0x38)).to_le_bytes());
        quotes &= quotes - 1;
    }
    16
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
/// `block` must be a multiple of eight.
pub(in crate::output) fn string_in<const N: usize>(
    w: &mut impl Write,
    s: &str,
    block: usize,
    out: &mut [u8; N],
) -> io::Result<()> {
    debug_assert!(block.is_multiple_of(8));
    let bytes = s.as_bytes();
    out[0] = b'"';
    let mut n = 1;
    for block in bytes.chunks(block) {
        // Each word is escaped into a window of `out` whose bounds are checked once, so the
        // block's worst case and a whole window past it must fit.
        if n + block.len() * 6 + WINDOW > out.len() {
            w.write_all(&out[..n])?;
            n = 0;
        }
        // Two words at a time: one test for control characters serves both (four at a time
        // gain nothing).
        let mut pairs = block.chunks_exact(16);
        for pair in &mut pairs {
            let (a, b) = (word(&pair[..8]), word(&pair[8..]));
            let dst: &mut [u8; 2 * WINDOW] = (&mut out[n..n + 2 * WINDOW]).try_into().unwrap();
            if not_controls(a) & not_controls(b) & HIGH == HIGH {
                let k = escape_quotes(a, (&mut dst[..QUOTED]).try_into().unwrap());
                n += k + escape_quotes(b, (&mut dst[k..k + QUOTED]).try_into().unwrap());
            } else {
                let k = escape_word(a, (&mut dst[..WINDOW]).try_into().unwrap());
                n += k + escape_word(b, (&mut dst[k..k + WINDOW]).try_into().unwrap());
            }
        }
        let rest = pairs.remainder();
        if rest.len() >= 8 {
            let dst: &mut [u8; WINDOW] = (&mut out[n..n + WINDOW]).try_into().unwrap();
            n += escape_word(word(&rest[..8]), dst);
        }
        let tail = rest.len() % 8;
        if tail == 0 {
            continue;
        }
        // Blocks being whole words, only the last has a tail: the string's.
        let dst: &mut [u8; WINDOW] = (&mut out[n..n + WINDOW]).try_into().unwrap();
        if let Some(last) = bytes.last_chunk::<8>() {
            // The string's last eight bytes as a word, those already escaped shifted out and
            // spaces, which stand for themselves, shifted in: cheaper than a loop over bytes.
            let word = u64::from_le_bytes(*last) >> (8 * (8 - tail)) | SPACES << (8 * tail);
            n += escape_word(word, dst) - (8 - tail);
        } else {
            let mut k = 0;
            for &b in &rest[rest.len() - tail..] {
                k = escape_byte(b, dst, k);
            }
            n += k;
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

    proptest::proptest! {
        /// Escapes anywhere in a word, in pairs of words, across blocks and in a string's
        /// last few bytes, through a buffer holding what earlier strings left in it.
        #[test]
        fn texts_escape_as_serde_json_does(
            texts in proptest::collection::vec(
                "([a-z {}:,0-9]{0,20}[\"\\\\\\x00-\\x1f\\x7f\u{80}-\u{10ffff}]?){0,60}",
                1..4,
            )
        ) {
            let mut out = Box::new([0xffu8; ESCAPE_OUT]);
            for s in &texts {
                let mut ours = Vec::new();
                string_in(&mut ours, s, ESCAPE_BLOCK, &mut out).unwrap();
                proptest::prop_assert_eq!(&ours, &serde_json::to_vec(s).unwrap());
                let mut ours = Vec::new();
                string(&mut ours, s).unwrap();
                proptest::prop_assert_eq!(&ours, &serde_json::to_vec(s).unwrap());
            }
        }
    }

    /// A last block that only just fits after the first, all control characters (six bytes
    /// each) up to its tail: the tail's window must fit too.
    #[test]
    fn a_full_buffer_leaves_room_for_the_tail() {
        for controls in 400..440 {
            for tail in 1..8 {
                let s = format!(
                    "{}{}{}",
                    "a".repeat(ESCAPE_BLOCK),
                    "\u{1}".repeat(controls),
                    "a".repeat(tail)
                );
                let mut ours = Vec::new();
                string(&mut ours, &s).unwrap();
                assert_eq!(ours, serde_json::to_vec(&s).unwrap());
            }
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
