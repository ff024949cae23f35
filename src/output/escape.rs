//! Text from the wire made safe for a terminal.

use std::io::{self, Write};

/// Writes `s` with every control and bidirectional-formatting character escaped.
pub(super) fn escaped(w: &mut impl Write, s: &str) -> io::Result<()> {
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let escape = c.is_control()
            || c == '"'
            || c == '\\'
            || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
        if !escape {
            continue;
        }
        w.write_all(&s.as_bytes()[start..i])?;
        match c {
            '\n' => w.write_all(b"\\n")?,
            '\r' => w.write_all(b"\\r")?,
            '\t' => w.write_all(b"\\t")?,
            '"' => w.write_all(b"\\\"")?,
            '\\' => w.write_all(b"\\\\")?,
            c if (c as u32) < 0x100 => write!(w, "\\x{:02x}", c as u32)?,
            c => write!(w, "\\u{{{:04x}}}", c as u32)?,
        }
        start = i + c.len_utf8();
    }
    w.write_all(&s.as_bytes()[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_controls_are_escaped() {
        let mut out = Vec::new();
        escaped(&mut out, "a\x1b[2Jb\u{202E}c\"\n\u{85}").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a\\x1b[2Jb\\u{202e}c\\\"\\n\\x85"
        );
    }
}
