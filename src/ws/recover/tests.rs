//! The recovering decoder against zlib's own compressor: what it calls known must be what was
//! compressed, and it must be ready for exact decoding exactly when the last window of output
//! is known.

use super::*;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use proptest::prelude::*;

/// A small deterministic generator, so each case's messages follow from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const WORDS: [&str; 12] = [
    "candidate",
    "offer",
    "answer",
    "sdp",
    "ice",
    "udp",
    "tcp",
    "typ host",
    "generation",
    "ufrag",
    "mid",
    "audio",
];

/// Signalling-like JSON, with now and then (and from `random_after` on, always) a message of
/// random bytes (stored blocks, or literals).
fn messages(rng: &mut Rng, n: usize, random_every: u64, random_after: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            if i >= random_after || rng.below(random_every) == 0 {
                let len = 1 + rng.below(3000) as usize;
                return (0..len).map(|_| rng.next() as u8).collect();
            }
            let mut m = format!(
                "{{\"seq\":{i},\"type\":\"{}\",\"body\":\"",
                WORDS[rng.below(12) as usize]
            );
            for _ in 0..rng.below(80) {
                m.push_str(WORDS[rng.below(12) as usize]);
                m.push(' ');
                m.push_str(&rng.below(100_000).to_string());
            }
            m.push_str("\"}");
            m.into_bytes()
        })
        .collect()
}

/// Each message compressed with a sync flush and its 4-byte tail removed (RFC 7692 7.2.1).
fn compress_all(msgs: &[Vec<u8>], level: u32, bits: u8) -> Vec<Vec<u8>> {
    let mut c = Compress::new_with_window_bits(Compression::new(level), false, bits);
    msgs.iter()
        .map(|m| {
            let mut out = Vec::with_capacity(m.len() * 2 + 64);
            let mut input = &m[..];
            loop {
                let before = c.total_in();
                c.compress_vec(input, &mut out, FlushCompress::Sync)
                    .unwrap();
                input = &input[(c.total_in() - before) as usize..];
                if input.is_empty() && out.len() < out.capacity() {
                    break;
                }
                out.reserve(out.capacity());
            }
            assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
            out.truncate(out.len() - 4);
            out
        })
        .collect()
}

fn inflate_exact(z: &mut Decompress, input: &[u8], out: &mut Vec<u8>) {
    let mut input = input;
    let mut buf = [0u8; 8192];
    loop {
        let (i, o) = (z.total_in(), z.total_out());
        z.decompress(input, &mut buf, FlushDecompress::Sync)
            .unwrap();
        let used = (z.total_in() - i) as usize;
        let made = (z.total_out() - o) as usize;
        out.extend_from_slice(&buf[..made]);
        input = &input[used..];
        if input.is_empty() && made < buf.len() {
            break;
        }
    }
}

/// Returns the unknown bytes output and the message after which exact decoding took over.
fn check(
    seed: u64,
    level: u32,
    bits: u8,
    n: usize,
    cut: usize,
    mix: (u64, usize),
) -> (u64, Option<usize>) {
    let mut rng = Rng(seed | 1);
    let msgs = messages(&mut rng, n, mix.0, mix.1);
    let wire = compress_all(&msgs, level, bits);
    let size = 1usize << bits;
    let cut = cut % n;
    let mut rec = Some(Recover::new(bits));
    let mut exact: Option<Decompress> = None;
    // The test's own record of which recent output bytes the decoder said it knew.
    let mut flags: std::collections::VecDeque<bool> = std::collections::VecDeque::new();
    let (mut unknown_total, mut switched) = (0u64, None);
    for (i, (msg, comp)) in msgs.iter().zip(&wire).enumerate().skip(cut) {
        let mut input = comp.clone();
        input.extend_from_slice(&[0, 0, 0xff, 0xff]);
        if let Some(z) = &mut exact {
            let mut out = Vec::new();
            inflate_exact(z, &input, &mut out);
            assert_eq!(&out, msg, "message {i} after the switch");
            continue;
        }
        let Some(r) = rec.as_mut() else {
            unreachable!()
        };
        let mut got: Vec<(u8, bool)> = Vec::new();
        let mut rest = &input[..];
        while !rest.is_empty() {
            let take = (1 + rng.below(rest.len() as u64) as usize).min(rest.len());
            r.feed(&rest[..take], |bytes, known| {
                got.extend(bytes.iter().map(|&b| (b, known)));
                true
            })
            .unwrap();
            rest = &rest[take..];
        }
        assert_eq!(got.len(), msg.len(), "message {i}'s length");
        for (at, (&(b, known), &truth)) in got.iter().zip(msg).enumerate() {
            if known {
                assert_eq!(b, truth, "message {i} byte {at} called known");
            } else {
                assert_eq!(b, 0, "unknown bytes are zeroed");
            }
        }
        let unknown_out = got.iter().filter(|g| !g.1).count() as u64;
        assert_eq!(r.take_unknown_out(), unknown_out);
        unknown_total += unknown_out;
        for &(_, known) in &got {
            flags.push_back(known);
            if flags.len() > size {
                flags.pop_front();
            }
        }
        let all_known = flags.len() == size && flags.iter().all(|&k| k);
        assert_eq!(r.ready_for_exact(), all_known, "message {i}");
        if all_known {
            let Some(r) = rec.take() else { unreachable!() };
            let mut z = Decompress::new_with_window_bits(false, bits);
            z.set_dictionary(&r.into_dictionary()).unwrap();
            exact = Some(z);
            switched = Some(i);
        }
    }
    (unknown_total, switched)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn known_bytes_are_true_and_exact_comes_when_the_window_is_known(
        seed in any::<u64>(),
        level in 0u32..=9,
        bits in 9u8..=15,
        n in 10usize..120,
        cut in any::<usize>(),
        random_every in 2u64..20,
        random_after in 0usize..200,
    ) {
        check(seed, level, bits, n, cut, (random_every, random_after));
    }
}

#[test]
fn a_cut_stream_has_unknown_bytes_and_then_turns_exact() {
    // The property test would pass vacuously if nothing were ever unknown or never switched.
    // Strings repeated in every message stay unknown for as long as each copy refers to the
    // previous one, so it takes new content (random bytes here) to fill the window.
    let (mut unknown, mut switched) = (0, 0);
    for seed in 1..20 {
        let (u, s) = check(seed, 6, 15, 150, 40, (5, 80));
        unknown += u;
        switched += usize::from(s.is_some_and(|at| at > 40));
    }
    assert!(unknown > 1000, "{unknown}");
    assert!(switched > 10, "{switched}");
}

#[test]
fn from_the_start_every_byte_is_known_once_a_window_is_written() {
    // Cut 0 is the stream's real start: the decoder does not know that and still calls the
    // bytes its references reach unknown only where they were never output.
    for bits in [9, 12, 15] {
        for level in [1, 6, 9] {
            check(7, level, bits, 200, 0, (10, 200));
        }
    }
}

#[test]
fn garbage_is_refused_not_panicked_on() {
    let mut rng = Rng(99);
    for _ in 0..2000 {
        let len = rng.below(600) as usize;
        let junk: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let mut r = Recover::new(15);
        let mut out = 0usize;
        let _ = r.feed(&junk, |b, _| {
            out += b.len();
            out < 1 << 20
        });
    }
}

#[test]
fn stopping_stops() {
    let msgs = vec![vec![b'a'; 100_000]];
    let _ = messages;
    let wire = compress_all(&msgs, 6, 15);
    let mut r = Recover::new(15);
    let mut out = 0usize;
    r.feed(&wire[0], |b, _| {
        out += b.len();
        out < 10_000
    })
    .unwrap();
    assert!(out < 20_000, "{out}");
}

#[test]
#[ignore = "a measurement, not a check: cargo test --release -- --ignored --nocapture"]
fn throughput_against_zlib() {
    let mut rng = Rng(5);
    let msgs = messages(&mut rng, 4000, 1000, usize::MAX);
    let wire = compress_all(&msgs, 6, 15);
    let total: usize = msgs.iter().map(Vec::len).sum();
    let start = std::time::Instant::now();
    let mut r = Recover::new(15);
    let mut out = 0usize;
    for comp in &wire {
        r.feed(comp, |b, _| {
            out += b.len();
            true
        })
        .unwrap();
        r.feed(&[0, 0, 0xff, 0xff], |b, _| {
            out += b.len();
            true
        })
        .unwrap();
    }
    let recover = start.elapsed();
    let start = std::time::Instant::now();
    let mut z = Decompress::new_with_window_bits(false, 15);
    let mut buf = Vec::new();
    for comp in &wire {
        buf.clear();
        let mut input = comp.clone();
        input.extend_from_slice(&[0, 0, 0xff, 0xff]);
        inflate_exact(&mut z, &input, &mut buf);
    }
    let exact = start.elapsed();
    assert_eq!(out, total);
    eprintln!(
        "{} MB: recovering {:.0} MB/s, zlib {:.0} MB/s",
        total >> 20,
        total as f64 / recover.as_secs_f64() / 1e6,
        total as f64 / exact.as_secs_f64() / 1e6
    );
}
