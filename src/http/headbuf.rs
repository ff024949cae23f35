//! A head being received: its bytes so far, and where a parse could first succeed or fail.
//!
//! A head that arrives in small segments must not be parsed whole on every segment (a 64 KiB
//! head sent a byte at a time would be parsed 65,536 times). Only the new bytes are scanned,
//! for the two places a parse can change its answer: the end of the start line (a malformed
//! one is refused there) and the first empty line (the end of the head). A parse runs at
//! those and once more when the head outgrows [`MAX_HEAD_LEN`]; and once on a head's first
//! segment, where it lies, for the head that comes whole: linear in the bytes received.

use super::handshake::{HeadError, MAX_HEAD_LEN};
use crate::context::GiveUp;

#[derive(Debug, Default)]
pub(crate) struct HeadBuf {
    bytes: Vec<u8>,
    /// The start line is complete: it was parsed once, its verdict stands.
    start_line_seen: bool,
    /// Parses run on this head, for tests to count.
    #[cfg(test)]
    pub(crate) parses: usize,
}

impl std::ops::Deref for HeadBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl HeadBuf {
    /// What the buffer keeps on the heap, for the memory budget.
    pub(crate) fn capacity(&self) -> usize {
        self.bytes.capacity()
    }

    /// Forgets the head, keeping the buffer for the next one.
    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.start_line_seen = false;
    }

    /// Whether the bytes from `from` on can change what a parse says: they end the start line,
    /// or a line end in them ends an empty line (`\n\n` or `\n\r\n`, httparse's and the
    /// lenient parser's end of head alike; a head never starts with one, as it must start
    /// with a method or `HTTP/1.`).
    fn worth_parsing(&mut self, from: usize) -> bool {
        let mut found = false;
        for at in from..self.bytes.len() {
            if self.bytes[at] != b'\n' {
                continue;
            }
            if !self.start_line_seen {
                self.start_line_seen = true;
                found = true;
            }
            let before = |back: usize| at.checked_sub(back).map(|i| self.bytes[i]);
            if before(1) == Some(b'\n') || (before(1) == Some(b'\r') && before(2) == Some(b'\n')) {
                return true;
            }
        }
        found
    }
}

/// Appends to a head buffer and parses it when that can tell something new. On completion
/// returns the parsed value and how many of `input`'s bytes the head used.
pub(crate) fn take_head<T>(
    head: &mut HeadBuf,
    input: &[u8],
    parse: impl Fn(&[u8]) -> Result<Option<(T, usize)>, HeadError>,
) -> Result<Option<(T, usize)>, GiveUp> {
    // Most heads come whole in one segment: parsed where they lie, not copied first. Any
    // other answer is the slow path's to give, from the same bytes.
    if head.bytes.is_empty() && input.len() <= MAX_HEAD_LEN {
        #[cfg(test)]
        {
            head.parses += 1;
        }
        if let Ok(Some(done)) = parse(input) {
            return Ok(Some(done));
        }
    }
    let before = head.bytes.len();
    let room = MAX_HEAD_LEN + 1 - before;
    let taken = &input[..input.len().min(room)];
    // Grown by doubling, but never past what a head may hold: a head of 64 KiB costs 64 KiB,
    // not the 128 KiB doubling would reach.
    let needed = before + taken.len();
    if needed > head.bytes.capacity() {
        let target = (2 * head.bytes.capacity()).clamp(needed, MAX_HEAD_LEN + 1);
        head.bytes.reserve_exact(target - before);
    }
    head.bytes.extend_from_slice(taken);
    let over = head.bytes.len() > MAX_HEAD_LEN;
    if !head.worth_parsing(before) && !over {
        return Ok(None);
    }
    #[cfg(test)]
    {
        head.parses += 1;
    }
    match parse(&head.bytes) {
        Ok(Some((value, head_len))) => {
            head.clear();
            Ok(Some((value, head_len - before)))
        }
        Ok(None) if !over => Ok(None),
        Ok(None) => Err(GiveUp::HeadTooLarge),
        Err(_) => Err(GiveUp::MalformedHead),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::handshake::{parse_request, parse_response};

    /// What the parse-every-time take_head said: the reference.
    fn whole<T>(
        buf: &mut Vec<u8>,
        input: &[u8],
        parse: impl Fn(&[u8]) -> Result<Option<(T, usize)>, HeadError>,
    ) -> Result<Option<(T, usize)>, GiveUp> {
        let before = buf.len();
        let room = MAX_HEAD_LEN + 1 - before;
        buf.extend_from_slice(&input[..input.len().min(room)]);
        match parse(buf) {
            Ok(Some((value, head_len))) => {
                buf.clear();
                Ok(Some((value, head_len - before)))
            }
            Ok(None) if buf.len() <= MAX_HEAD_LEN => Ok(None),
            Ok(None) => Err(GiveUp::HeadTooLarge),
            Err(_) => Err(GiveUp::MalformedHead),
        }
    }

    /// Where a head ended: the segment's index, and the bytes of it the head used or the
    /// give-up.
    type Ending = Option<(usize, Result<usize, GiveUp>)>;

    /// (segment index, bytes used, or the give-up) at which a head fed in `step`-byte
    /// segments ends, by both ways of taking it; and the parses the scanning way ran.
    fn outcome(
        bytes: &[u8],
        step: usize,
        request: bool,
        reference: bool,
    ) -> (Ending, Ending, usize) {
        let parse = |b: &[u8]| -> Result<Option<((), usize)>, HeadError> {
            if request {
                parse_request(b).map(|r| r.map(|(_, n)| ((), n)))
            } else {
                parse_response(b, "GET").map(|r| r.map(|(_, n)| ((), n)))
            }
        };
        let mut head = HeadBuf::default();
        let mut buf = Vec::new();
        let (mut new, mut old) = (None, None);
        for (i, segment) in bytes.chunks(step).enumerate() {
            if new.is_none() {
                match take_head(&mut head, segment, parse) {
                    Ok(None) => {}
                    Ok(Some(((), used))) => new = Some((i, Ok(used))),
                    Err(e) => new = Some((i, Err(e))),
                }
            }
            if reference && old.is_none() {
                match whole(&mut buf, segment, parse) {
                    Ok(None) => {}
                    Ok(Some(((), used))) => old = Some((i, Ok(used))),
                    Err(e) => old = Some((i, Err(e))),
                }
            }
        }
        (new, old, head.parses)
    }

    /// Heads that parse, heads httparse refuses and the lenient parser takes, heads malformed
    /// from their start line, heads too large: fed in segments of every size from one byte,
    /// each ends at the same segment with the same outcome as when parsed whole every time.
    #[test]
    fn scanning_for_the_end_agrees_with_parsing_every_time() {
        let padded = format!(
            "GET / HTTP/1.1\r\nX-Pad: {}\r\nUpgrade: websocket\r\n\r\n",
            "a".repeat(MAX_HEAD_LEN)
        );
        let requests: [&[u8]; 7] = [
            b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\nrest",
            b"GET / HTTP/1.1\nHost: x\n\nafter",
            b"GET / HTTP/1.1\r\nBad Name: v\r\nX: \x01\r\n folded\r\n\r\n",
            b"GET /\x1b[31m HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET  /  HTTPS/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n\n",
            padded.as_bytes(),
        ];
        let responses: [&[u8]; 3] = [
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x00",
            b"HTTP/1.1 1O1 Nope\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX\r\n\r\n",
        ];
        let cases = requests
            .iter()
            .map(|r| (*r, true))
            .chain(responses.iter().map(|r| (*r, false)));
        for (bytes, request) in cases {
            // Parsing whole every time is quadratic: the long head gets the long steps.
            let steps = [1, 2, 3, 5, 7, 16, 100, 4096, bytes.len()];
            for step in steps.into_iter().filter(|s| bytes.len() / s < 2000) {
                let (new, old, _) = outcome(bytes, step, request, true);
                assert!(old.is_some(), "{step}: every case ends");
                assert_eq!(new, old, "step {step}: {:?}", &bytes[..bytes.len().min(60)]);
            }
        }
    }

    /// A 64 KiB head sent a byte at a time is parsed a bounded number of times, not once per
    /// byte; so is one that never ends.
    #[test]
    fn a_head_sent_byte_by_byte_is_parsed_a_few_times() {
        let mut head = String::from("GET / HTTP/1.1\r\nHost: x\r\nX-Pad: ");
        head.push_str(&"p".repeat(MAX_HEAD_LEN - head.len() - 8));
        head.push_str("\r\n\r\n");
        assert!(head.len() <= MAX_HEAD_LEN);
        let (new, _, parses) = outcome(head.as_bytes(), 1, true, false);
        assert_eq!(new, Some((head.len() - 1, Ok(1))));
        assert!(parses <= 3, "{parses} parses");
        let endless = format!("GET / HTTP/1.1\r\nX: {}", "p".repeat(2 * MAX_HEAD_LEN));
        let (new, _, parses) = outcome(endless.as_bytes(), 1, true, false);
        assert_eq!(new, Some((MAX_HEAD_LEN, Err(GiveUp::HeadTooLarge))));
        assert!(parses <= 3, "{parses} parses");
    }
}
