//! Text from the wire made safe for a terminal.
//!
//! The rule, not a list: every code point of Unicode's general categories Cc (controls), Cf
//! (format characters, which include every bidirectional control: U+061C, U+200E/F,
//! U+202A..U+202E, U+2066..U+2069), Zl and Zp (U+2028, U+2029: line and paragraph separators,
//! which some terminals take as line breaks), and every noncharacter (U+FDD0..U+FDEF and the
//! last two code points of each plane) is written as an escape. Surrogates cannot occur in a
//! `str`. Quotes and backslashes are escaped too, so that an escape in the output is never
//! ambiguous with the text around it.

use std::io::{self, Write};

use unicode_general_category::{GeneralCategory, get_general_category};

use super::json::{HIGH, bytes_below_space, bytes_equal};

/// Whether `c` is written as an escape in text output.
pub(crate) fn needs_escape(c: char) -> bool {
    if c.is_ascii() {
        return needs_escape_ascii(c as u8);
    }
    let cp = c as u32;
    // Noncharacters: U+FDD0..U+FDEF, and U+xFFFE, U+xFFFF of every plane.
    if (0xFDD0..=0xFDEF).contains(&cp) || cp & 0xFFFE == 0xFFFE {
        return true;
    }
    matches!(
        get_general_category(c),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    )
}

/// The ASCII part of the rule, without a table lookup: C0 controls, DEL, quote, backslash.
fn needs_escape_ascii(b: u8) -> bool {
    b < 0x20 || b == 0x7f || b == b'"' || b == b'\\'
}

/// Writes `s` with every character of the rule above escaped.
pub(crate) fn escaped(w: &mut impl Write, s: &str) -> io::Result<()> {
    escape_with(w, s, true)
}

/// Writes a JSON text as it is, escaping only what could drive the terminal: its quotes and
/// backslashes are JSON's own (a backslash in a JSON string is always `\\` or an escape), so
/// the text stays readable and still cannot be confused with an escape of ours (`\u{...}`).
pub(crate) fn escaped_json(w: &mut impl Write, s: &str) -> io::Result<()> {
    escape_with(w, s, false)
}

fn escape_with(w: &mut impl Write, s: &str, quotes: bool) -> io::Result<()> {
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Most payloads are printable ASCII: eight bytes at a time pass when none is above
        // 0x7e, below 0x20, or (when quotes are escaped) a quote or backslash.
        while let Some(word) = bytes.get(i..i + 8) {
            let mut w8 = [0u8; 8];
            w8.copy_from_slice(word);
            let word = u64::from_le_bytes(w8);
            let mut stop = (word & HIGH) | bytes_below_space(word) | bytes_equal(word, 0x7f);
            if quotes {
                stop |= bytes_equal(word, b'"') | bytes_equal(word, b'\\');
            }
            if stop != 0 {
                // Straight to the first byte that needs a look.
                i += (stop.trailing_zeros() / 8) as usize;
                break;
            }
            i += 8;
        }
        let Some(&b) = bytes.get(i) else {
            break;
        };
        let (c, len) = if b < 0x80 {
            // The slow path's ASCII pays no table lookup and no decoding either.
            if !needs_escape_ascii(b) || (!quotes && (b == b'"' || b == b'\\')) {
                i += 1;
                continue;
            }
            (char::from(b), 1)
        } else {
            // A lead byte of a valid str: a whole char starts here.
            let Some(c) = s[i..].chars().next() else {
                break;
            };
            if !needs_escape(c) {
                i += c.len_utf8();
                continue;
            }
            (c, c.len_utf8())
        };
        w.write_all(&bytes[start..i])?;
        match c {
            '\n' => w.write_all(b"\\n")?,
            '\r' => w.write_all(b"\\r")?,
            '\t' => w.write_all(b"\\t")?,
            '"' => w.write_all(b"\\\"")?,
            '\\' => w.write_all(b"\\\\")?,
            c if (c as u32) < 0x100 => write!(w, "\\x{:02x}", c as u32)?,
            c => write!(w, "\\u{{{:04x}}}", c as u32)?,
        }
        i += len;
        start = i;
    }
    w.write_all(&bytes[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escape(s: &str) -> String {
        let mut out = Vec::new();
        escaped(&mut out, s).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn terminal_controls_are_escaped() {
        assert_eq!(
            escape("a\x1b[2Jb\u{202E}c\"\n\u{85}"),
            "a\\x1b[2Jb\\u{202e}c\\\"\\n\\x85"
        );
    }

    #[test]
    fn the_holes_of_the_old_list_are_escaped() {
        // U+061C (Arabic letter mark, Cf), U+2028 (Zl), U+2029 (Zp), U+FEFF (Cf), a
        // noncharacter of plane 0 and one of plane 16, and a tag character (Cf, plane 14).
        assert_eq!(
            escape("\u{61C}x\u{2028}y\u{2029}z\u{FEFF}\u{FDD0}\u{10FFFF}\u{E0041}"),
            "\\u{061c}x\\u{2028}y\\u{2029}z\\u{feff}\\u{fdd0}\\u{10ffff}\\u{e0041}"
        );
    }

    /// The reference: one character at a time, by the rule alone.
    fn escape_char_by_char(s: &str, quotes: bool) -> String {
        let mut out = String::new();
        for c in s.chars() {
            let shown = needs_escape(c) && (quotes || (c != '"' && c != '\\'));
            match c {
                _ if !shown => out.push(c),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
                c => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            }
        }
        out
    }

    proptest::proptest! {
        /// The eight-bytes-at-a-time path agrees with the rule wherever the bytes needing an
        /// escape fall in a long text (mostly ASCII, as payloads are, with some of everything).
        #[test]
        fn long_texts_escape_as_char_by_char(
            s in "([a-z {}:,0-9]{0,20}[\"\\\\\\x00-\\x1f\\x7f\u{80}-\u{10ffff}]?){0,40}"
        ) {
            for quotes in [true, false] {
                let mut out = Vec::new();
                escape_with(&mut out, &s, quotes).unwrap();
                proptest::prop_assert_eq!(
                    String::from_utf8(out).unwrap(),
                    escape_char_by_char(&s, quotes)
                );
            }
        }
    }

    #[test]
    fn printable_text_is_kept() {
        let s = "héllo wörld ✓ 日本語 🦀 a\u{A0}b \u{301}";
        assert_eq!(escape(s), s);
    }

    /// Every scalar value of Unicode against an independent oracle: Python's `unicodedata`
    /// (its own Unicode version, 14.0 on the machines today; the crate's is newer). Code points
    /// Python does not know as assigned are left out, except the noncharacters, which are
    /// fixed by the standard; everything assigned in Python's version must agree.
    #[test]
    fn every_code_point_follows_the_rule_python_says() {
        const ORACLE: &str = r#"
import sys, unicodedata
out = bytearray()
for cp in range(0x110000):
    if 0xD800 <= cp <= 0xDFFF:
        out += b"S"
        continue
    c = chr(cp)
    cat = unicodedata.category(c)
    if 0xFDD0 <= cp <= 0xFDEF or (cp & 0xFFFE) == 0xFFFE:
        out += b"N"
    elif cat == "Cn":
        out += b"U"
    elif cat in ("Cc", "Cf", "Zl", "Zp") or c in "\"\\":
        out += b"E"
    else:
        out += b"K"
sys.stdout.write(unicodedata.unidata_version + "\n")
sys.stdout.flush()
sys.stdout.buffer.write(bytes(out))
"#;
        let run = std::process::Command::new("python3")
            .args(["-c", ORACLE])
            .output()
            .expect("python3 runs");
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let newline = run.stdout.iter().position(|&b| b == b'\n').unwrap();
        let version = String::from_utf8_lossy(&run.stdout[..newline]).to_string();
        let expected = &run.stdout[newline + 1..];
        assert_eq!(expected.len(), 0x11_0000);
        let (mut compared, mut nonchars) = (0, 0);
        let mut out = Vec::new();
        for (cp, &want) in expected.iter().enumerate() {
            let Some(c) = char::from_u32(cp as u32) else {
                assert_eq!(want, b'S', "U+{cp:04X}");
                continue;
            };
            if want == b'U' {
                continue;
            }
            compared += 1;
            nonchars += usize::from(want == b'N');
            out.clear();
            escaped(&mut out, c.encode_utf8(&mut [0; 4])).unwrap();
            let was_escaped = out != c.encode_utf8(&mut [0; 4]).as_bytes();
            assert_eq!(
                was_escaped,
                want != b'K',
                "U+{cp:04X} (Python's Unicode {version})"
            );
            assert_eq!(needs_escape(c), want != b'K', "U+{cp:04X}");
        }
        // The standard's 66 noncharacters; and more than the private use areas alone
        // (137,468), so the comparison covered the assigned characters too.
        assert_eq!(nonchars, 66);
        assert!(compared > 280_000, "{compared} compared");
    }
}
