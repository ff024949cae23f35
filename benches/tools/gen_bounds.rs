//! Writes the hostile captures of issue 19 that benches/memory.sh measures wsnoop's peak RSS
//! on (see benches/README.md):
//!
//!   gen_bounds --frag N -o FILE
//!   gen_bounds --heads N [--head-bytes B] -o FILE
//!   gen_bounds --holes N [--hole-bytes B] -o FILE
//!   gen_bounds --deflate N -o FILE
//!   gen_bounds --open-uris N [--uri-bytes L] -o FILE
//!   gen_bounds --open-heads N [--head-bytes B] -o FILE
//!
//! `--frag N`: N IPv4 fragments of 8 bytes at offset 65,520, each the last piece of its own
//! TCP datagram (distinct sources and identifications), whose other pieces never come; one
//! every 10 microseconds, so none expires before the capture ends.
//!
//! `--heads N`: N connections (three-way handshakes) to port 80, each then sending a request
//! head of B bytes (default 65,000: under wsnoop's 64 KiB limit, padded with one long
//! header, `Upgrade: websocket` at its end) one byte per segment, the connections interleaved
//! byte by byte; no response.
//!
//! `--holes`, `--deflate`, `--open-uris`, `--open-heads` (the `--max-memory` budget): see
//! budget_caps.rs; `--hole-bytes` defaults to 1,000,000 bytes held per connection,
//! `--uri-bytes` to 60,000, `--head-bytes` to 65,000 (as for `--heads`).
//!
//! Classic pcap, Ethernet, microsecond timestamps, correct IP and TCP checksums (the budget's
//! captures: hostile.rs's packets, checksums left 0). Output is streamed.

#[path = "budget_caps.rs"]
mod budget_caps;
#[path = "hostile.rs"]
mod hostile;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

const SYN: u8 = 0x02;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

struct Pcap {
    w: BufWriter<File>,
    now_us: u64,
    buf: Vec<u8>,
}

fn csum(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        sum += u32::from(*b) << 8;
    }
    (sum & 0xffff) + (sum >> 16)
}

fn fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

impl Pcap {
    fn create(path: &str) -> io::Result<Pcap> {
        let mut w = BufWriter::with_capacity(1 << 20, File::create(path)?);
        for field in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 262_144, 1] {
            w.write_all(&field.to_le_bytes())?;
        }
        Ok(Pcap {
            w,
            now_us: 1_700_000_000 * 1_000_000,
            buf: Vec::with_capacity(2048),
        })
    }

    /// An Ethernet/IPv4 packet: `fragment` is (identification, flags and offset field).
    fn ipv4(
        &mut self,
        src: [u8; 4],
        dst: [u8; 4],
        fragment: (u16, u16),
        l4: &[u8],
    ) -> io::Result<()> {
        self.now_us += 10;
        let b = &mut self.buf;
        b.clear();
        b.extend_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00]);
        b.extend_from_slice(&[0x45, 0]);
        b.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
        b.extend_from_slice(&fragment.0.to_be_bytes());
        b.extend_from_slice(&fragment.1.to_be_bytes());
        b.extend_from_slice(&[64, 6, 0, 0]);
        b.extend_from_slice(&src);
        b.extend_from_slice(&dst);
        let sum = fold(csum(0, &b[14..34]));
        b[24..26].copy_from_slice(&sum.to_be_bytes());
        b.extend_from_slice(l4);
        let len = b.len() as u32;
        let (secs, micros) = (
            (self.now_us / 1_000_000) as u32,
            (self.now_us % 1_000_000) as u32,
        );
        for field in [secs, micros, len, len] {
            self.w.write_all(&field.to_le_bytes())?;
        }
        self.w.write_all(&self.buf)
    }

    #[allow(clippy::too_many_arguments)]
    fn tcp(
        &mut self,
        src: ([u8; 4], u16),
        dst: ([u8; 4], u16),
        seq: u32,
        ack: u32,
        flags: u8,
        payload: &[u8],
        seg: &mut Vec<u8>,
    ) -> io::Result<()> {
        seg.clear();
        seg.extend_from_slice(&src.1.to_be_bytes());
        seg.extend_from_slice(&dst.1.to_be_bytes());
        seg.extend_from_slice(&seq.to_be_bytes());
        seg.extend_from_slice(&ack.to_be_bytes());
        seg.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        seg.extend_from_slice(payload);
        let mut sum = csum(0, &src.0);
        sum = csum(sum, &dst.0);
        sum = csum(sum, &[0, 6]);
        sum = csum(sum, &(seg.len() as u16).to_be_bytes());
        let sum = fold(csum(sum, seg));
        seg[16..18].copy_from_slice(&sum.to_be_bytes());
        self.ipv4(src.0, dst.0, (0, 0x4000), seg)
    }
}

fn frag(out: &str, n: u64) -> io::Result<()> {
    let mut pcap = Pcap::create(out)?;
    for i in 0..n {
        let src = [10, (i >> 16) as u8, (i >> 8) as u8, i as u8];
        // Offset 65,520 (8,190 eight-byte units), no more fragments: a datagram's last piece.
        pcap.ipv4(src, [10, 255, 0, 1], (i as u16, 8190), &[0xab; 8])?;
    }
    pcap.w.flush()
}

fn heads(out: &str, n: u32, head_bytes: usize) -> io::Result<()> {
    let mut pcap = Pcap::create(out)?;
    let server = ([10, 255, 0, 2], 80);
    let client = |i: u32| {
        (
            [10, 1, (i >> 8) as u8, i as u8],
            20_000 + (i % 40_000) as u16,
        )
    };
    let start = b"GET /chat HTTP/1.1\r\nHost: server\r\nX-Pad: ";
    let end = b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    let pad = head_bytes.saturating_sub(start.len() + end.len());
    let mut head = start.to_vec();
    head.resize(start.len() + pad, b'p');
    head.extend_from_slice(end);
    let mut seg = Vec::with_capacity(128);
    let (c_isn, s_isn) = (1_000u32, 9_000u32);
    for i in 0..n {
        pcap.tcp(client(i), server, c_isn, 0, SYN, &[], &mut seg)?;
        pcap.tcp(
            server,
            client(i),
            s_isn,
            c_isn + 1,
            SYN | ACK,
            &[],
            &mut seg,
        )?;
        pcap.tcp(client(i), server, c_isn + 1, s_isn + 1, ACK, &[], &mut seg)?;
    }
    for (at, byte) in head.iter().enumerate() {
        for i in 0..n {
            let seq = c_isn + 1 + at as u32;
            pcap.tcp(
                client(i),
                server,
                seq,
                s_isn + 1,
                ACK | PSH,
                &[*byte],
                &mut seg,
            )?;
        }
    }
    pcap.w.flush()
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: gen_bounds --frag N -o FILE | gen_bounds --heads N [--head-bytes B] -o FILE\n\
         | --holes N [--hole-bytes B] -o FILE | --deflate N -o FILE\n\
         | --open-uris N [--uri-bytes L] -o FILE | --open-heads N [--head-bytes B] -o FILE"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut frags, mut conns, mut head_bytes, mut out) = (None, None, 65_000usize, None);
    let (mut holes, mut deflate, mut uris, mut open_heads) = (None, None, None, None);
    let (mut hole_bytes, mut uri_bytes) = (1_000_000usize, 60_000usize);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let Some(value) = it.next() else {
            return usage();
        };
        let ok = match flag.as_str() {
            "--frag" => value.parse().map(|v| frags = Some(v)).is_ok(),
            "--heads" => value.parse().map(|v| conns = Some(v)).is_ok(),
            "--head-bytes" => value.parse().map(|v| head_bytes = v).is_ok(),
            "--holes" => value.parse().map(|v| holes = Some(v)).is_ok(),
            "--hole-bytes" => value.parse().map(|v| hole_bytes = v).is_ok(),
            "--deflate" => value.parse().map(|v| deflate = Some(v)).is_ok(),
            "--open-uris" => value.parse().map(|v| uris = Some(v)).is_ok(),
            "--uri-bytes" => value.parse().map(|v| uri_bytes = v).is_ok(),
            "--open-heads" => value.parse().map(|v| open_heads = Some(v)).is_ok(),
            "-o" => {
                out = Some(value.clone());
                true
            }
            _ => false,
        };
        if !ok {
            return usage();
        }
    }
    let Some(out) = out else {
        return usage();
    };
    let file = || File::create(&out).map(|f| BufWriter::with_capacity(1 << 20, f));
    let written = match (frags, conns, holes, deflate, uris, open_heads) {
        (Some(n), None, None, None, None, None) => frag(&out, n),
        (None, Some(n), None, None, None, None) => heads(&out, n, head_bytes),
        (None, None, Some(n), None, None, None) => {
            file().and_then(|w| budget_caps::holes(w, n, hole_bytes)?.flush())
        }
        (None, None, None, Some(n), None, None) => {
            file().and_then(|w| budget_caps::deflating(w, n)?.flush())
        }
        (None, None, None, None, Some(n), None) => {
            file().and_then(|w| budget_caps::open_uris(w, n, uri_bytes)?.flush())
        }
        (None, None, None, None, None, Some(n)) => {
            file().and_then(|w| budget_caps::open_heads(w, n, head_bytes)?.flush())
        }
        _ => return usage(),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen_bounds: {out}: {e}");
            ExitCode::FAILURE
        }
    }
}
