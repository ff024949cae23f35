//! UTF-8 of text messages, checked across frame and segment borders.

use crate::event::Payload;

/// A single-frame text message's kept payload, validated once at the frame's end for the frame
/// and the message events.
#[derive(Clone, Copy)]
pub(super) struct CheckedFrame<'a> {
    /// What the frame kept of its payload.
    pub(super) bytes: &'a [u8],
    /// Those bytes as text, up to a character cut at the end, when they are UTF-8.
    pub(super) text: Option<&'a str>,
}

/// Checks UTF-8 across chunk borders without buffering more than one character.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Utf8Check {
    pub(super) partial: [u8; 4],
    pub(super) partial_len: usize,
    pub(super) invalid: bool,
}

#[inline]
pub(super) fn utf8_width(lead: u8) -> usize {
    match lead {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 1,
    }
}

impl Utf8Check {
    #[inline]
    pub(super) fn feed(&mut self, mut bytes: &[u8]) {
        if self.invalid {
            return;
        }
        if self.partial_len > 0 {
            let width = utf8_width(self.partial[0]);
            let take = (width - self.partial_len).min(bytes.len());
            self.partial[self.partial_len..self.partial_len + take].copy_from_slice(&bytes[..take]);
            self.partial_len += take;
            bytes = &bytes[take..];
            if self.partial_len < width {
                return;
            }
            if std::str::from_utf8(&self.partial[..width]).is_err() {
                self.invalid = true;
                return;
            }
            self.partial_len = 0;
        }
        self.checked(bytes, simdutf8::compat::from_utf8(bytes));
    }

    /// Takes in `bytes`, already validated as `result`, at a character boundary (nothing
    /// partial before them).
    #[inline]
    pub(super) fn checked(
        &mut self,
        bytes: &[u8],
        result: Result<&str, simdutf8::compat::Utf8Error>,
    ) {
        if let Err(e) = result {
            if e.error_len().is_some() {
                self.invalid = true;
            } else {
                let rest = &bytes[e.valid_up_to()..];
                self.partial[..rest.len()].copy_from_slice(rest);
                self.partial_len = rest.len();
            }
        }
    }

    #[inline]
    pub(super) fn is_valid_so_far(&self) -> bool {
        !self.invalid
    }

    #[inline]
    pub(super) fn is_complete_and_valid(&self) -> bool {
        !self.invalid && self.partial_len == 0
    }
}

/// Shows a text frame's bytes as text when they are UTF-8, allowing a character that began in
/// the previous frame (`carry`) and one that continues in the next.
#[inline]
pub(super) fn text_payload<'a>(
    kept: &'a [u8],
    carry: &[u8],
    display: &'a mut Vec<u8>,
) -> Payload<'a> {
    let candidate: &'a [u8] = if carry.is_empty() {
        kept
    } else {
        display.clear();
        display.extend_from_slice(carry);
        display.extend_from_slice(kept);
        display
    };
    checked_payload(candidate, simdutf8::compat::from_utf8(candidate), kept)
}

/// What [`text_payload`] shows for `candidate` once it was validated as `result`: text up to
/// a character the next frame continues, or `kept` as data when it is not UTF-8.
#[inline]
pub(super) fn checked_payload<'a>(
    candidate: &'a [u8],
    result: Result<&'a str, simdutf8::compat::Utf8Error>,
    kept: &'a [u8],
) -> Payload<'a> {
    match result {
        Ok(text) => Payload::Text(text),
        Err(e) if e.error_len().is_none() => {
            let valid = &candidate[..e.valid_up_to()];
            Payload::Text(std::str::from_utf8(valid).unwrap_or_default())
        }
        Err(_) => Payload::Data(kept),
    }
}

/// The bytes at the end of `tail` that start a UTF-8 character not yet complete.
#[inline]
pub(super) fn incomplete_utf8_suffix(tail: &[u8]) -> &[u8] {
    for back in 1..=tail.len().min(3) {
        let b = tail[tail.len() - back];
        if b & 0xC0 == 0x80 {
            continue; // a continuation byte: keep looking for the lead
        }
        return if utf8_width(b) > back {
            &tail[tail.len() - back..]
        } else {
            &[]
        };
    }
    &[]
}
