//! Inflating a raw DEFLATE stream (RFC 1951) picked up where its history was never seen.
//!
//! With context takeover (RFC 7692 7.2.3), a message's back-references may reach into earlier
//! messages the capture missed. zlib cannot decode such a stream at all, so this decoder does
//! it itself: a reference into unseen history yields bytes marked unknown, unknown bytes copied
//! forward stay unknown, and the last 2^window_bits output bytes are tracked, a flag byte each.
//! Once all of them are known, every later byte is known too (references cannot reach further
//! back), and the window can seed zlib's own inflater as its dictionary.
//!
//! Memory is the window, its flags and a few KiB of pending input: nothing follows a length
//! read off the wire.

/// Input is taken this much at a time, which bounds the pending buffer.
const CHUNK: usize = 4096;
/// Output is handed on in runs of at most this many bytes.
const RUN: usize = 4096;
/// Back-references up to this long are copied byte by byte rather than by memmove.
const SHORT_COPY: usize = 8;

/// Why a stream could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecoverError {
    #[error("invalid deflate block type")]
    BlockType,
    #[error("stored block length does not match its complement")]
    StoredLength,
    #[error("invalid Huffman code lengths")]
    CodeLengths,
    #[error("invalid Huffman code")]
    Code,
    #[error("invalid length or distance symbol")]
    Symbol,
    #[error("distance too far back for the window")]
    Distance,
}

/// Codes up to this long are decoded with one table look-up; longer ones bit by bit.
const FAST_BITS: u32 = 10;

/// A canonical Huffman code, decoded as RFC 1951 3.2.2 builds it (as zlib's puff does), with
/// a table for the short codes that make up nearly all of a stream.
#[derive(Debug, Clone)]
struct Huffman {
    count: [u16; 16],
    symbol: [u16; 288],
    /// By the next FAST_BITS input bits: the symbol and its code length (len << 9 | symbol),
    /// or 0 when the code is longer.
    fast: [u16; 1 << FAST_BITS],
}

impl Default for Huffman {
    fn default() -> Self {
        Huffman {
            count: [0; 16],
            symbol: [0; 288],
            fast: [0; 1 << FAST_BITS],
        }
    }
}

impl Huffman {
    /// Builds the code from code lengths; over-subscribed sets are refused, incomplete ones
    /// are allowed (a code never sent is then an error when met).
    fn build(&mut self, lengths: &[u8]) -> Result<(), RecoverError> {
        self.count = [0; 16];
        for &len in lengths {
            let slot = self
                .count
                .get_mut(usize::from(len))
                .ok_or(RecoverError::CodeLengths)?;
            *slot += 1;
        }
        let mut left: i32 = 1;
        for len in 1..16 {
            left <<= 1;
            left -= i32::from(self.count[len]);
            if left < 0 {
                return Err(RecoverError::CodeLengths);
            }
        }
        let mut offs = [0u16; 16];
        for len in 1..15 {
            offs[len + 1] = offs[len] + self.count[len];
        }
        for (sym, &len) in lengths.iter().enumerate() {
            if len != 0 {
                let at = &mut offs[usize::from(len)];
                let slot = self
                    .symbol
                    .get_mut(usize::from(*at))
                    .ok_or(RecoverError::CodeLengths)?;
                *slot = sym as u16;
                *at += 1;
            }
        }
        self.fill_fast(lengths);
        Ok(())
    }

    fn fill_fast(&mut self, lengths: &[u8]) {
        self.fast = [0; 1 << FAST_BITS];
        let mut next = [0u32; 16];
        let mut code = 0u32;
        // RFC 1951 3.2.2: the first code of each length, lengths counted from 1.
        for (len, first) in next.iter_mut().enumerate().skip(1) {
            code = (code + u32::from(self.count[len - 1]) * u32::from(len > 1)) << 1;
            *first = code;
        }
        for (sym, &len) in lengths.iter().enumerate() {
            let len = u32::from(len);
            if len == 0 || len > FAST_BITS {
                if let Some(n) = next.get_mut(len as usize) {
                    *n += 1;
                }
                continue;
            }
            let Some(n) = next.get_mut(len as usize) else {
                continue;
            };
            // Codes are sent most significant bit first: the table is indexed by the bits as
            // read, least significant first.
            let reversed = n.reverse_bits() >> (32 - len);
            *n += 1;
            let entry = (len << 9) as u16 | sym as u16;
            let mut at = reversed as usize;
            while let Some(slot) = self.fast.get_mut(at) {
                *slot = entry;
                at += 1 << len;
            }
        }
    }
}

/// Reads bits LSB first from pending input; `None` means more input is needed.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn need(&self, n: usize) -> bool {
        self.pos + n <= self.data.len() * 8
    }

    /// The next 16 bits (zeros past the end), without consuming them.
    fn peek16(&self) -> u32 {
        let at = self.pos >> 3;
        let byte = |i: usize| u32::from(self.data.get(at + i).copied().unwrap_or(0));
        ((byte(0) | byte(1) << 8 | byte(2) << 16) >> (self.pos & 7)) & 0xffff
    }

    /// At least the next 57 bits, when 8 bytes are there: room for any whole symbol with its
    /// extra bits and distance (at most 48 bits).
    #[inline(always)]
    fn peek57(&self) -> Option<u64> {
        let at = self.pos >> 3;
        let bytes: [u8; 8] = self.data.get(at..at + 8)?.try_into().ok()?;
        Some(u64::from_le_bytes(bytes) >> (self.pos & 7))
    }

    /// `n` bits (at most 16).
    fn get(&mut self, n: u32) -> Option<u32> {
        if !self.need(n as usize) {
            return None;
        }
        let value = self.peek16() & ((1u32 << n) - 1);
        self.pos += n as usize;
        Some(value)
    }

    fn decode(&mut self, h: &Huffman) -> Option<Result<u16, RecoverError>> {
        let entry = h
            .fast
            .get((self.peek16() & ((1 << FAST_BITS) - 1)) as usize)
            .copied()
            .unwrap_or(0);
        let len = usize::from(entry >> 9);
        if entry != 0 && self.need(len) {
            self.pos += len;
            return Some(Ok(entry & 0x1ff));
        }
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for len in 1..16 {
            code |= self.get(1)? as i32;
            let count = i32::from(h.count[len]);
            if code - count < first {
                let at = (index + code - first) as usize;
                return Some(h.symbol.get(at).copied().ok_or(RecoverError::Code));
            }
            index += count;
            first += count;
            first <<= 1;
            code <<= 1;
        }
        Some(Err(RecoverError::Code))
    }
}

const LEN_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LEN_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];
const CODE_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    /// At a block header.
    Header,
    /// Inside a stored block, with this many bytes to go.
    Stored(u16),
    /// Inside a Huffman-coded block (its codes are `lit` and `dist`).
    Codes,
    /// After the final block: the sender starts a new stream with its next message.
    End,
}

/// The recovering decoder of one direction.
#[derive(Debug)]
pub struct Recover {
    window: Box<[u8]>,
    /// One byte per window byte: 1 when that byte is known, 0 when not. A byte rather than a
    /// bit, so that a back-reference copies its knownness with the same memmove as its bytes.
    known: Box<[u8]>,
    /// Where the next output byte goes in `window`.
    pos: usize,
    /// How many of the last bytes handed on were all known: once it reaches the window's
    /// size, every window byte is known (at first none is: the history was not seen).
    known_streak: usize,
    pending: Vec<u8>,
    /// Bits of `pending[0]` already consumed.
    bit: usize,
    block: Block,
    last_block: bool,
    lit: Huffman,
    dist: Huffman,
    /// RFC 1951 3.2.6's fixed codes, built once: most short messages use them.
    fixed: Box<(Huffman, Huffman)>,
    /// The current block uses the fixed codes rather than `lit` and `dist`.
    fixed_block: bool,
    /// Output bytes not handed on yet: the last `run_len` written to the window.
    run_len: usize,
    /// Bytes output that were not known, since the counter was last taken.
    unknown_out: u64,
}

/// How many of `flags` from the start equal `flag`, eight at a time.
#[inline]
fn same_run(flags: &[u8], flag: u8) -> usize {
    let pattern = u64::from_ne_bytes([flag; 8]);
    let mut words = flags.chunks_exact(8);
    let mut n = 0;
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        let differ = u64::from_le_bytes(bytes) ^ pattern;
        if differ != 0 {
            return n + (differ.trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    n + words
        .remainder()
        .iter()
        .position(|&f| f != flag)
        .unwrap_or(words.remainder().len())
}

impl Recover {
    /// What the decoder keeps on the heap, for the memory budget: its window, a byte per
    /// window byte saying whether it is known, the input waiting, and the fixed codes.
    pub fn memory(&self) -> usize {
        std::mem::size_of::<Recover>()
            + self.window.len()
            + self.known.len()
            + self.pending.capacity()
            + std::mem::size_of::<(Huffman, Huffman)>()
    }

    /// A decoder for a sender whose LZ77 window is 2^`window_bits` (9 to 15).
    pub fn new(window_bits: u8) -> Recover {
        let size = 1usize << window_bits.clamp(9, 15);
        let mut fixed = Box::new((Huffman::default(), Huffman::default()));
        let mut lengths = [0u8; 318];
        lengths[..144].fill(8);
        lengths[144..256].fill(9);
        lengths[256..280].fill(7);
        lengths[280..288].fill(8);
        lengths[288..318].fill(5);
        // Both codes are complete: building them cannot fail.
        let _ = fixed.0.build(&lengths[..288]);
        let _ = fixed.1.build(&lengths[288..318]);
        Recover {
            window: vec![0; size].into_boxed_slice(),
            known: vec![0; size].into_boxed_slice(),
            pos: 0,
            known_streak: 0,
            pending: Vec::with_capacity(CHUNK + 512),
            bit: 0,
            block: Block::Header,
            last_block: false,
            lit: Huffman::default(),
            dist: Huffman::default(),
            fixed,
            fixed_block: false,
            run_len: 0,
            unknown_out: 0,
        }
    }

    /// Unknown bytes output since the last call.
    pub fn take_unknown_out(&mut self) -> u64 {
        std::mem::take(&mut self.unknown_out)
    }

    /// The sender ended its deflate stream with a final block.
    pub fn stream_ended(&self) -> bool {
        self.block == Block::End
    }

    /// At a byte-aligned block boundary with nothing pending, and every window byte known: an
    /// exact inflater seeded with [`Recover::into_dictionary`] would decode on from here.
    pub fn ready_for_exact(&self) -> bool {
        self.known_streak >= self.window.len()
            && self.run_len == 0
            && self.block == Block::Header
            && self.bit == 0
            && self.pending.is_empty()
    }

    /// The window, oldest byte first, to seed the exact inflater.
    pub fn into_dictionary(mut self) -> Box<[u8]> {
        self.window.rotate_left(self.pos);
        self.window
    }

    /// Decodes `input`, handing output to `on_output` in runs of bytes with whether they are
    /// known (unknown ones are zero); `on_output` returns false to stop.
    pub fn feed(
        &mut self,
        input: &[u8],
        mut on_output: impl FnMut(&[u8], bool) -> bool,
    ) -> Result<(), RecoverError> {
        for chunk in input.chunks(CHUNK) {
            if self.block == Block::End {
                return Ok(());
            }
            self.pending.extend_from_slice(chunk);
            let result = self.run(&mut on_output);
            let used = (self.bit >> 3).min(self.pending.len());
            self.pending.drain(..used);
            self.bit &= 7;
            match result {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes one known output byte into the window. Output is handed on straight from the
    /// window, before the window wraps over it.
    #[inline(always)]
    fn put(&mut self, byte: u8, on_output: &mut impl FnMut(&[u8], bool) -> bool) -> bool {
        let pos = self.pos;
        if let (Some(slot), Some(k)) = (self.window.get_mut(pos), self.known.get_mut(pos)) {
            *slot = byte;
            *k = 1;
        }
        self.advance(1, on_output)
    }

    /// Copies `len` bytes from `dist` back, with their knownness, as LZ77 does: a copy longer
    /// than its distance repeats what it has just written, so it goes in pieces of at most
    /// `dist` bytes, each a plain memmove. Pieces also stop at the window's end (for source
    /// and destination) and where output is due.
    fn copy(
        &mut self,
        mut len: usize,
        dist: usize,
        on_output: &mut impl FnMut(&[u8], bool) -> bool,
    ) -> bool {
        let size = self.window.len();
        let mut go_on = true;
        while len > 0 {
            let from = self.pos.wrapping_sub(dist) & (size - 1);
            let n = len
                .min(dist)
                .min(size - self.pos)
                .min(size - from)
                .min(RUN - self.run_len);
            let (to, src) = (self.pos..self.pos + n, from..from + n);
            if n <= SHORT_COPY {
                // Most references are a few bytes: a loop beats two calls to memmove.
                for (t, f) in to.zip(src) {
                    let (Some(&byte), Some(&k)) = (self.window.get(f), self.known.get(f)) else {
                        break;
                    };
                    if let (Some(slot), Some(kt)) = (self.window.get_mut(t), self.known.get_mut(t))
                    {
                        *slot = byte;
                        *kt = k;
                    }
                }
            } else {
                self.window.copy_within(src.clone(), to.start);
                self.known.copy_within(src, to.start);
            }
            go_on &= self.advance(n, on_output);
            len -= n;
        }
        go_on
    }

    /// `n` bytes were written at `pos`: moves on, handing output on at the wrap (before it is
    /// overwritten) and often enough for `on_output` to stop a bomb early.
    #[inline(always)]
    fn advance(&mut self, n: usize, on_output: &mut impl FnMut(&[u8], bool) -> bool) -> bool {
        self.run_len += n;
        self.pos = (self.pos + n) & (self.window.len() - 1);
        if self.pos == 0 || self.run_len >= RUN {
            return self.flush(on_output);
        }
        true
    }

    /// Hands on the bytes written since the last flush, in runs of equal knownness.
    fn flush(&mut self, on_output: &mut impl FnMut(&[u8], bool) -> bool) -> bool {
        if self.run_len == 0 {
            return true;
        }
        let end = if self.pos == 0 {
            self.window.len()
        } else {
            self.pos
        };
        let start = end - self.run_len;
        self.run_len = 0;
        let (Some(bytes), Some(flags)) = (self.window.get(start..end), self.known.get(start..end))
        else {
            return true;
        };
        let mut at = 0;
        while at < flags.len() {
            let known = flags[at] != 0;
            let len = same_run(&flags[at..], flags[at]);
            if known {
                self.known_streak = self.known_streak.saturating_add(len);
            } else {
                self.unknown_out += len as u64;
                self.known_streak = 0;
            }
            if !on_output(&bytes[at..at + len], known) {
                return false;
            }
            at += len;
        }
        true
    }

    /// Decodes what `pending` holds; Ok(false) when `on_output` asked to stop.
    fn run(
        &mut self,
        on_output: &mut impl FnMut(&[u8], bool) -> bool,
    ) -> Result<bool, RecoverError> {
        let mut go_on = true;
        let result = self.blocks(on_output, &mut go_on);
        let flushed = self.flush(on_output);
        result.map(|()| go_on && flushed)
    }

    fn blocks(
        &mut self,
        on_output: &mut impl FnMut(&[u8], bool) -> bool,
        go_on: &mut bool,
    ) -> Result<(), RecoverError> {
        while *go_on {
            match self.block {
                Block::End => return Ok(()),
                Block::Header => {
                    let pending = std::mem::take(&mut self.pending);
                    let mut bits = Bits {
                        data: &pending,
                        pos: self.bit,
                    };
                    let header = self.header(&mut bits);
                    let pos = bits.pos;
                    self.pending = pending;
                    match header? {
                        None => return Ok(()),
                        Some(block) => {
                            self.bit = pos;
                            self.block = block;
                        }
                    }
                }
                Block::Stored(0) => self.block_done(),
                Block::Stored(left) => {
                    let at = self.bit >> 3;
                    let avail = self.pending.len().saturating_sub(at);
                    if avail == 0 {
                        return Ok(());
                    }
                    let n = avail.min(usize::from(left));
                    for i in at..at + n {
                        let byte = self.pending.get(i).copied().unwrap_or(0);
                        if !self.put(byte, on_output) {
                            *go_on = false;
                        }
                    }
                    self.bit += n * 8;
                    self.block = Block::Stored(left - n as u16);
                }
                Block::Codes => {
                    if !self.codes(on_output, go_on)? {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    fn block_done(&mut self) {
        self.block = if self.last_block {
            Block::End
        } else {
            Block::Header
        };
    }

    /// Reads a whole block header, or None (and nothing consumed) if more input is needed.
    fn header(&mut self, bits: &mut Bits<'_>) -> Result<Option<Block>, RecoverError> {
        let Some(head) = bits.get(3) else {
            return Ok(None);
        };
        let last = head & 1 != 0;
        let block = match head >> 1 {
            0 => {
                bits.pos = bits.pos.div_ceil(8) * 8;
                let (Some(len), Some(nlen)) = (bits.get(16), bits.get(16)) else {
                    return Ok(None);
                };
                if len != !nlen & 0xffff {
                    return Err(RecoverError::StoredLength);
                }
                Block::Stored(len as u16)
            }
            1 => {
                self.fixed_block = true;
                Block::Codes
            }
            2 => match self.dynamic(bits)? {
                None => return Ok(None),
                Some(()) => {
                    self.fixed_block = false;
                    Block::Codes
                }
            },
            _ => return Err(RecoverError::BlockType),
        };
        self.last_block = last;
        Ok(Some(block))
    }

    fn dynamic(&mut self, bits: &mut Bits<'_>) -> Result<Option<()>, RecoverError> {
        let (Some(nlen), Some(ndist), Some(ncode)) = (bits.get(5), bits.get(5), bits.get(4)) else {
            return Ok(None);
        };
        let (nlen, ndist, ncode) = (nlen as usize + 257, ndist as usize + 1, ncode as usize + 4);
        if nlen > 286 || ndist > 30 {
            return Err(RecoverError::CodeLengths);
        }
        let mut lengths = [0u8; 320];
        for &at in &CODE_ORDER[..ncode] {
            let Some(len) = bits.get(3) else {
                return Ok(None);
            };
            lengths[at] = len as u8;
        }
        let mut lencode = Huffman::default();
        lencode.build(&lengths[..19])?;
        lengths = [0; 320];
        let mut index = 0;
        while index < nlen + ndist {
            let sym = match bits.decode(&lencode) {
                None => return Ok(None),
                Some(sym) => sym?,
            };
            if sym < 16 {
                lengths[index] = sym as u8;
                index += 1;
                continue;
            }
            let (value, repeat) = match sym {
                16 => {
                    let prev = index
                        .checked_sub(1)
                        .and_then(|i| lengths.get(i).copied())
                        .ok_or(RecoverError::CodeLengths)?;
                    let Some(extra) = bits.get(2) else {
                        return Ok(None);
                    };
                    (prev, 3 + extra as usize)
                }
                17 => {
                    let Some(extra) = bits.get(3) else {
                        return Ok(None);
                    };
                    (0, 3 + extra as usize)
                }
                _ => {
                    let Some(extra) = bits.get(7) else {
                        return Ok(None);
                    };
                    (0, 11 + extra as usize)
                }
            };
            if index + repeat > nlen + ndist {
                return Err(RecoverError::CodeLengths);
            }
            lengths[index..index + repeat].fill(value);
            index += repeat;
        }
        if lengths[256] == 0 {
            return Err(RecoverError::CodeLengths);
        }
        self.lit.build(&lengths[..nlen])?;
        self.dist.build(&lengths[nlen..nlen + ndist])?;
        Ok(Some(()))
    }

    /// Decodes symbols of a Huffman block; Ok(false) when more input is needed.
    fn codes(
        &mut self,
        on_output: &mut impl FnMut(&[u8], bool) -> bool,
        go_on: &mut bool,
    ) -> Result<bool, RecoverError> {
        let pending = std::mem::take(&mut self.pending);
        let mut bits = Bits {
            data: &pending,
            pos: self.bit,
        };
        let result = self.symbols(&mut bits, on_output, go_on);
        self.pending = pending;
        result
    }

    fn symbols(
        &mut self,
        bits: &mut Bits<'_>,
        on_output: &mut impl FnMut(&[u8], bool) -> bool,
        go_on: &mut bool,
    ) -> Result<bool, RecoverError> {
        while *go_on {
            let start = bits.pos;
            // A whole symbol (with its distance) is at most 48 bits: read it all or nothing.
            let Some(step) = self.symbol(bits)? else {
                self.bit = start;
                return Ok(false);
            };
            self.bit = bits.pos;
            match step {
                Step::Literal(byte) => *go_on &= self.put(byte, on_output),
                Step::End => {
                    self.block_done();
                    return Ok(true);
                }
                Step::Copy(len, dist) => {
                    if dist > self.window.len() {
                        return Err(RecoverError::Distance);
                    }
                    *go_on &= self.copy(len, dist, on_output);
                }
            }
        }
        Ok(true)
    }

    /// A whole symbol from bits already in hand, when its codes are all short (nearly always);
    /// Ok(None) to take the bit-by-bit way instead, nothing consumed.
    #[inline(always)]
    fn fast_symbol(
        lit: &Huffman,
        dist: &Huffman,
        word: u64,
        used: &mut u32,
    ) -> Result<Option<Step>, RecoverError> {
        let code = |h: &Huffman, used: &mut u32| {
            let entry = h.fast[((word >> *used) & ((1 << FAST_BITS) - 1)) as usize];
            *used += u32::from(entry >> 9);
            (entry != 0).then_some(usize::from(entry & 0x1ff))
        };
        let extra = |n: u8, used: &mut u32| {
            let v = (word >> *used) as usize & ((1usize << n) - 1);
            *used += u32::from(n);
            v
        };
        let Some(sym) = code(lit, used) else {
            return Ok(None);
        };
        if sym < 256 {
            return Ok(Some(Step::Literal(sym as u8)));
        }
        if sym == 256 {
            return Ok(Some(Step::End));
        }
        let i = sym - 257;
        let (Some(&base), Some(&n)) = (LEN_BASE.get(i), LEN_EXTRA.get(i)) else {
            return Err(RecoverError::Symbol);
        };
        let len = usize::from(base) + extra(n, used);
        let Some(dsym) = code(dist, used) else {
            return Ok(None);
        };
        let (Some(&dbase), Some(&dn)) = (DIST_BASE.get(dsym), DIST_EXTRA.get(dsym)) else {
            return Err(RecoverError::Symbol);
        };
        Ok(Some(Step::Copy(len, usize::from(dbase) + extra(dn, used))))
    }

    #[inline(always)]
    fn symbol(&self, bits: &mut Bits<'_>) -> Result<Option<Step>, RecoverError> {
        let (lit, dist) = if self.fixed_block {
            (&self.fixed.0, &self.fixed.1)
        } else {
            (&self.lit, &self.dist)
        };
        if let Some(word) = bits.peek57() {
            let mut used = 0;
            if let Some(step) = Self::fast_symbol(lit, dist, word, &mut used)? {
                bits.pos += used as usize;
                return Ok(Some(step));
            }
        }
        let sym = match bits.decode(lit) {
            None => return Ok(None),
            Some(sym) => usize::from(sym?),
        };
        if sym < 256 {
            return Ok(Some(Step::Literal(sym as u8)));
        }
        if sym == 256 {
            return Ok(Some(Step::End));
        }
        let i = sym - 257;
        let (Some(&base), Some(&extra)) = (LEN_BASE.get(i), LEN_EXTRA.get(i)) else {
            return Err(RecoverError::Symbol);
        };
        let Some(more) = bits.get(u32::from(extra)) else {
            return Ok(None);
        };
        let len = usize::from(base) + more as usize;
        let dsym = match bits.decode(dist) {
            None => return Ok(None),
            Some(sym) => usize::from(sym?),
        };
        let (Some(&dbase), Some(&dextra)) = (DIST_BASE.get(dsym), DIST_EXTRA.get(dsym)) else {
            return Err(RecoverError::Symbol);
        };
        let Some(dmore) = bits.get(u32::from(dextra)) else {
            return Ok(None);
        };
        Ok(Some(Step::Copy(len, usize::from(dbase) + dmore as usize)))
    }
}

enum Step {
    Literal(u8),
    End,
    Copy(usize, usize),
}

#[cfg(test)]
mod tests;
