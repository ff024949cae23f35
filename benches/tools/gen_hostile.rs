//! Writes the hostile captures of benches/memory.sh's `uris`, `onebyte` and `tiny` cases
//! (issue 19); what each holds is described in hostile.rs.
//!
//!   gen_hostile uris CONNS URI_LEN OUT
//!   gen_hostile onebyte CONNS OUT [BYTE]
//!   gen_hostile tiny CONNS FRAMES_PER_CONN OUT

#[path = "hostile.rs"]
mod hostile;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize| args.get(i).and_then(|a| a.parse::<u64>().ok());
    let out = |i: usize| {
        args.get(i)
            .and_then(|p| File::create(p).ok())
            .map(|f| BufWriter::with_capacity(1 << 20, f))
    };
    let written = match (args.first().map(String::as_str), args.len()) {
        (Some("uris"), 4) => match (num(1), num(2), out(3)) {
            (Some(c), Some(l), Some(w)) => hostile::long_uris(w, c, l as usize),
            _ => return usage(),
        },
        (Some("onebyte"), 3 | 4) => match (num(1), out(2)) {
            // The byte: `x` by default (not HTTP: given up at once); `G` starts a request.
            (Some(c), Some(w)) => {
                let byte = args
                    .get(3)
                    .map_or(b'x', |b| b.as_bytes().first().copied().unwrap_or(b'x'));
                hostile::one_byte(w, c, byte)
            }
            _ => return usage(),
        },
        (Some("tiny"), 4) => match (num(1), num(2), out(3)) {
            (Some(c), Some(f), Some(w)) => hostile::tiny_frames(w, c, f),
            _ => return usage(),
        },
        _ => return usage(),
    };
    match written.and_then(|mut w| w.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen_hostile: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: gen_hostile uris CONNS URI_LEN OUT | onebyte CONNS OUT [BYTE] | tiny CONNS FRAMES OUT"
    );
    ExitCode::from(2)
}
