//! Writes a synthetic, protocol-correct capture of interleaved WebSocket connections for the
//! throughput and memory benchmarks (see benches/README.md).
//!
//!   gen_corpus [--size MB] [--connections N] [--seed S] [--deflate PCT] [--nanos] [--tls] -o FILE
//!   gen_corpus --syn-flood N [--half-open M] [--ooo-bytes B] [--seed S] -o FILE
//!
//! Default mode: classic pcap, Ethernet/IPv4/TCP to port 8080. Each connection has a real
//! three-way handshake, an HTTP upgrade with a valid key and the matching accept, then a mix of
//! small JSON texts, kilobyte texts, ~100 KB binary messages, fragmented messages (with control
//! frames between fragments), pings and pongs; permessage-deflate (context takeover) on
//! `--deflate` per cent of the connections (default 20); a close handshake and FIN/FIN/ACK at
//! the end. Client frames are masked with random keys, segments carry at most 1460 bytes, the
//! receiver acknowledges every second segment, and sequence and acknowledgment numbers are
//! exact. Connections are interleaved packet by packet. Everything is deterministic from the
//! seed.
//!
//! `--tls`: the same kind of traffic as wss on port 8443, TLS 1.2 with
//! ECDHE-RSA-AES128-GCM-SHA256 (tls_records.rs): every connection's hellos, ChangeCipherSpecs
//! and Finished, then each queued message sealed in records of at most 16 KiB; the key log that
//! decrypts it is written to FILE.keys.
//!
//! Flood mode (the memory check of issue 5): M half-open connections whose two directions
//! each send `--ooo-bytes` of data after a hole that never fills, interleaved with N SYNs from
//! distinct addresses and ports that are never answered.
//!
//! Output is streamed: memory stays bounded (per live connection: its pending bytes and, when
//! it negotiated deflate, two compressors), whatever `--size`.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

use base64::Engine;
use flate2::{Compress, Compression, FlushCompress};
use sha1::{Digest, Sha1};

mod tls_records;
use tls_records::TlsConn;

const MSS: usize = 1460;
const SERVER_PORT: u16 = 8080;
/// wss (`--tls`): the media server's TLS port.
const TLS_PORT: u16 = 8443;
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

// ---------------------------------------------------------------------------------------------
// PRNG: xorshift64*, deterministic from the seed.

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // splitmix64 of the seed, so that small seeds give well-mixed states (never zero).
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in 0..n (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in lo..=hi.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `per_mille` / 1000.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }
}

// ---------------------------------------------------------------------------------------------
// Classic pcap writer with Ethernet/IPv4/TCP framing and correct checksums.

#[derive(Clone, Copy)]
struct Ep {
    ip: [u8; 4],
    port: u16,
}

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

struct Pcap {
    w: BufWriter<File>,
    nanos: bool,
    /// Capture time in nanoseconds since the epoch.
    now_ns: u64,
    ip_id: u16,
    buf: Vec<u8>,
    bytes: u64,
    packets: u64,
    /// Gaps between packets, 1 to 100 microseconds.
    jitter: Rng,
}

fn csum_add(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        sum += u32::from(*b) << 8;
    }
    // Fold often enough that a 64 KiB packet cannot overflow.
    (sum & 0xffff) + (sum >> 16)
}

fn csum_fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

impl Pcap {
    fn create(path: &str, nanos: bool, start_secs: u64, seed: u64) -> io::Result<Pcap> {
        let mut w = BufWriter::with_capacity(1 << 20, File::create(path)?);
        let magic: u32 = if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
        w.write_all(&magic.to_le_bytes())?;
        w.write_all(&2u16.to_le_bytes())?;
        w.write_all(&4u16.to_le_bytes())?;
        w.write_all(&0i32.to_le_bytes())?; // thiszone
        w.write_all(&0u32.to_le_bytes())?; // sigfigs
        w.write_all(&262_144u32.to_le_bytes())?; // snaplen
        w.write_all(&1u32.to_le_bytes())?; // LINKTYPE_ETHERNET
        Ok(Pcap {
            w,
            nanos,
            now_ns: start_secs * 1_000_000_000,
            ip_id: 1,
            buf: Vec::with_capacity(2048),
            bytes: 24,
            packets: 0,
            jitter: Rng::new(seed ^ 0x5eed_7173),
        })
    }

    /// Writes one TCP segment; returns the bytes it took in the file.
    #[allow(clippy::too_many_arguments)]
    fn tcp(
        &mut self,
        src: Ep,
        dst: Ep,
        seq: u32,
        ack: u32,
        flags: u8,
        payload: &[u8],
    ) -> io::Result<u64> {
        self.now_ns += self.jitter.range(1_000, 100_000);
        let syn = flags & SYN != 0;
        let tcp_len = if syn { 24 } else { 20 };
        let ip_total = 20 + tcp_len + payload.len();
        let b = &mut self.buf;
        b.clear();
        // Ethernet: locally administered MACs derived from the addresses.
        b.extend_from_slice(&[0x02, 0x00, dst.ip[0], dst.ip[1], dst.ip[2], dst.ip[3]]);
        b.extend_from_slice(&[0x02, 0x00, src.ip[0], src.ip[1], src.ip[2], src.ip[3]]);
        b.extend_from_slice(&[0x08, 0x00]);
        // IPv4, DF, TTL 64.
        let ip_start = b.len();
        b.push(0x45);
        b.push(0);
        b.extend_from_slice(&(ip_total as u16).to_be_bytes());
        b.extend_from_slice(&self.ip_id.to_be_bytes());
        self.ip_id = self.ip_id.wrapping_add(1);
        b.extend_from_slice(&[0x40, 0x00, 64, 6, 0, 0]);
        b.extend_from_slice(&src.ip);
        b.extend_from_slice(&dst.ip);
        let ip_sum = csum_fold(csum_add(0, &b[ip_start..ip_start + 20]));
        b[ip_start + 10..ip_start + 12].copy_from_slice(&ip_sum.to_be_bytes());
        // TCP.
        let tcp_start = b.len();
        b.extend_from_slice(&src.port.to_be_bytes());
        b.extend_from_slice(&dst.port.to_be_bytes());
        b.extend_from_slice(&seq.to_be_bytes());
        b.extend_from_slice(&(if flags & ACK != 0 { ack } else { 0 }).to_be_bytes());
        b.push(((tcp_len / 4) as u8) << 4);
        b.push(flags);
        b.extend_from_slice(&65535u16.to_be_bytes()); // window
        b.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
        if syn {
            b.extend_from_slice(&[2, 4]); // MSS option
            b.extend_from_slice(&(MSS as u16).to_be_bytes());
        }
        b.extend_from_slice(payload);
        let mut sum = csum_add(0, &src.ip);
        sum = csum_add(sum, &dst.ip);
        sum = csum_add(sum, &[0, 6]);
        sum = csum_add(sum, &((tcp_len + payload.len()) as u16).to_be_bytes());
        sum = csum_add(sum, &b[tcp_start..]);
        let tcp_sum = csum_fold(sum);
        b[tcp_start + 16..tcp_start + 18].copy_from_slice(&tcp_sum.to_be_bytes());

        let secs = (self.now_ns / 1_000_000_000) as u32;
        let frac = if self.nanos {
            (self.now_ns % 1_000_000_000) as u32
        } else {
            ((self.now_ns % 1_000_000_000) / 1000) as u32
        };
        let len = self.buf.len() as u32;
        let mut rec = [0u8; 16];
        rec[0..4].copy_from_slice(&secs.to_le_bytes());
        rec[4..8].copy_from_slice(&frac.to_le_bytes());
        rec[8..12].copy_from_slice(&len.to_le_bytes());
        rec[12..16].copy_from_slice(&len.to_le_bytes());
        self.w.write_all(&rec)?;
        self.w.write_all(&self.buf)?;
        let written = 16 + u64::from(len);
        self.bytes += written;
        self.packets += 1;
        Ok(written)
    }
}

// ---------------------------------------------------------------------------------------------
// WebSocket frames and message contents.

const TEXT: u8 = 1;
const BINARY: u8 = 2;
const CONT: u8 = 0;
const CLOSE: u8 = 8;
const PING: u8 = 9;
const PONG: u8 = 10;

/// Appends one frame. Client frames (`mask`) get a random key.
fn frame(out: &mut Vec<u8>, rng: &mut Rng, fin: bool, rsv1: bool, op: u8, mask: bool, p: &[u8]) {
    out.push((u8::from(fin) << 7) | (u8::from(rsv1) << 6) | op);
    let m = if mask { 0x80 } else { 0 };
    match p.len() {
        n if n < 126 => out.push(m | n as u8),
        n if n <= 0xffff => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if mask {
        let key = (rng.next() as u32).to_be_bytes();
        out.extend_from_slice(&key);
        out.extend(p.iter().enumerate().map(|(i, b)| b ^ key[i & 3]));
    } else {
        out.extend_from_slice(p);
    }
}

const SYMBOLS: [&str; 8] = [
    "AAPL", "MSFT", "GOOG", "BTC-EUR", "ETH-USD", "Zürich", "東京", "€STR",
];
const KINDS: [&str; 5] = ["tick", "quote", "trade", "order", "heartbeat"];

/// A ~100-byte JSON object.
fn small_json(rng: &mut Rng, seq: u64, out: &mut Vec<u8>) {
    let kind = KINDS[rng.below(KINDS.len() as u64) as usize];
    let sym = SYMBOLS[rng.below(SYMBOLS.len() as u64) as usize];
    let _ = write!(
        out,
        r#"{{"type":"{kind}","seq":{seq},"sym":"{sym}","px":{}.{:02},"qty":{},"ts":{}}}"#,
        rng.range(1, 99_999),
        rng.below(100),
        rng.range(1, 5000),
        1_700_000_000_000u64 + rng.below(100_000_000),
    );
}

/// A JSON document of roughly `size` bytes.
fn big_json(rng: &mut Rng, size: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(br#"{"type":"snapshot","items":["#);
    let mut i = 0;
    while out.len() + 120 < size {
        if i > 0 {
            out.push(b',');
        }
        small_json(rng, i, out);
        i += 1;
    }
    out.extend_from_slice(b"]}");
}

/// permessage-deflate of one message with context takeover (RFC 7692 7.2.1): sync flush, then
/// the 00 00 ff ff tail removed.
fn deflate(c: &mut Compress, input: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let start = c.total_in();
    loop {
        out.reserve(input.len() / 2 + 1024);
        let consumed = (c.total_in() - start) as usize;
        c.compress_vec(&input[consumed..], out, FlushCompress::Sync)
            .expect("deflate");
        if (c.total_in() - start) as usize == input.len() && out.len() < out.capacity() {
            break;
        }
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]), "sync flush tail");
    out.truncate(out.len() - 4);
}

// ---------------------------------------------------------------------------------------------
// One connection of the corpus.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    New,
    SynSent,
    SynReceived,
    TlsServerHello,
    TlsClientFinished,
    TlsServerFinished,
    Requesting,
    Open,
    Closing,
    Closed,
    ServerFin,
    ClientFin,
    Done,
}

const C: usize = 0; // client side
const S: usize = 1; // server side

struct Conn {
    id: u64,
    ep: [Ep; 2],
    /// Next sequence number each side sends.
    seq: [u32; 2],
    /// Bytes queued by each side and not yet sent, from `off`.
    out: [Vec<u8>; 2],
    off: [usize; 2],
    /// Segments each side sent that the other has not acknowledged.
    unacked: [u32; 2],
    phase: Phase,
    key: String,
    deflate: bool,
    compressors: Option<Box<[Compress; 2]>>,
    budget: u64,
    used: u64,
    msg_seq: u64,
    /// The side that answers the first close frame.
    closer_reply: usize,
    /// wss: the connection's TLS, and how much of each side's queue is already sealed.
    tls: Option<Box<TlsConn>>,
    sealed: [usize; 2],
}

/// Bytes of payload scratch, shared by every connection.
struct Scratch {
    msg: Vec<u8>,
    z: Vec<u8>,
}

impl Conn {
    fn new(id: u64, rng: &mut Rng, budget: u64, deflate: bool, tls: bool) -> Conn {
        let n = id as u32;
        let client = Ep {
            ip: [10, 1 + (n / 60_000) as u8, (n >> 8) as u8, n as u8],
            port: 20_000 + (n % 40_000) as u16,
        };
        let server = Ep {
            ip: [10, 0, 0, 1 + (n % 4) as u8],
            port: if tls { TLS_PORT } else { SERVER_PORT },
        };
        let mut raw_key = [0u8; 16];
        rng.fill(&mut raw_key);
        Conn {
            id,
            ep: [client, server],
            seq: [rng.next() as u32, rng.next() as u32],
            out: [Vec::new(), Vec::new()],
            off: [0, 0],
            unacked: [0, 0],
            phase: Phase::New,
            key: base64::engine::general_purpose::STANDARD.encode(raw_key),
            deflate,
            compressors: None,
            budget,
            used: 0,
            msg_seq: 0,
            closer_reply: S,
            tls: tls.then(|| {
                let mut random = [0u8; 112];
                rng.fill(&mut random);
                Box::new(TlsConn::new(&random))
            }),
            sealed: [0, 0],
        }
    }

    /// wss: seals what the last step queued in plaintext as application data records.
    fn seal_queued(&mut self) {
        let Some(tls) = self.tls.as_deref_mut() else {
            return;
        };
        for side in [C, S] {
            if self.out[side].len() > self.sealed[side] {
                let plain = self.out[side].split_off(self.sealed[side]);
                tls.seal_data(side, &plain, &mut self.out[side]);
            }
            self.sealed[side] = self.out[side].len();
        }
    }

    /// The HTTP upgrade request, queued.
    fn request(&mut self) {
        let ext = if self.deflate {
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        } else {
            ""
        };
        let port = self.ep[S].port;
        let req = format!(
            "GET /feed/{} HTTP/1.1\r\nHost: 10.0.0.{}:{port}\r\nUser-Agent: gen_corpus\r\n\
             Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {}\r\n\
             Origin: http://example.test\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n",
            self.id, self.ep[S].ip[3], self.key
        );
        self.out[C].extend_from_slice(req.as_bytes());
    }

    fn pending(&self, side: usize) -> usize {
        self.out[side].len() - self.off[side]
    }

    fn send(&mut self, pcap: &mut Pcap, side: usize, flags: u8, payload: &[u8]) -> io::Result<()> {
        let (src, dst) = (self.ep[side], self.ep[1 - side]);
        let ack = self.seq[1 - side];
        self.used += pcap.tcp(src, dst, self.seq[side], ack, flags, payload)?;
        let len = payload.len() as u32 + u32::from(flags & (SYN | FIN) != 0);
        self.seq[side] = self.seq[side].wrapping_add(len);
        // Anything with ACK acknowledges all the peer sent.
        if flags & ACK != 0 {
            self.unacked[1 - side] = 0;
        }
        Ok(())
    }

    /// Sends the next segment of queued bytes of `side`, then the peer's ACK if one is due.
    fn send_segment(&mut self, pcap: &mut Pcap, rng: &mut Rng, side: usize) -> io::Result<()> {
        let start = self.off[side];
        let end = (start + MSS).min(self.out[side].len());
        let seg = std::mem::take(&mut self.out[side]);
        self.send(pcap, side, ACK | PSH, &seg[start..end])?;
        self.out[side] = seg;
        self.off[side] = end;
        if end == self.out[side].len() {
            self.off[side] = 0;
            self.sealed[side] = 0;
            // Give back the room of a large message: memory stays near what is in flight.
            if self.out[side].capacity() > 16 * 1024 {
                self.out[side] = Vec::new();
            } else {
                self.out[side].clear();
            }
        }
        self.unacked[side] += 1;
        let peer = 1 - side;
        // Delayed ACK: every second segment, or when the burst ends; unless the peer has data
        // of its own to carry the acknowledgment.
        if (self.unacked[side] >= 2 || self.pending(side) == 0)
            && self.pending(peer) == 0
            && !rng.chance(50)
        {
            self.send(pcap, peer, ACK, &[])?;
        }
        Ok(())
    }

    /// Queues one message from `side`, compressed if the connection negotiated deflate and
    /// `compress`, in `fragments` frames (a ping may sit between fragments).
    #[allow(clippy::too_many_arguments)]
    fn message(
        &mut self,
        rng: &mut Rng,
        scratch: &mut Scratch,
        side: usize,
        op: u8,
        compress: bool,
        fragments: usize,
        ping_between: bool,
    ) {
        let compress = compress && self.deflate;
        let body: &[u8] = if compress {
            let z = &mut self.compressors.as_mut().expect("compressors")[side];
            deflate(z, &scratch.msg, &mut scratch.z);
            &scratch.z
        } else {
            &scratch.msg
        };
        let mask = side == C;
        let fragments = fragments.clamp(1, body.len().max(1));
        let mut at = 0;
        for i in 0..fragments {
            let last = i + 1 == fragments;
            let end = if last {
                body.len()
            } else {
                // Fragment borders fall anywhere, even inside a UTF-8 character.
                let left = (body.len() - at) as u64;
                let max_here = left - (fragments - i - 1) as u64;
                let typical = 2 * left / (fragments - i) as u64;
                at + rng.range(1, typical.clamp(1, max_here)) as usize
            };
            let op_here = if i == 0 { op } else { CONT };
            frame(
                &mut self.out[side],
                rng,
                last,
                compress && i == 0,
                op_here,
                mask,
                &body[at..end],
            );
            at = end;
            if ping_between && i == 0 && !last {
                // Control frames may sit between a message's fragments; the peer answers.
                let mut ping = [0u8; 8];
                rng.fill(&mut ping);
                frame(&mut self.out[side], rng, true, false, PING, mask, &ping);
                frame(
                    &mut self.out[1 - side],
                    rng,
                    true,
                    false,
                    PONG,
                    !mask,
                    &ping,
                );
            }
        }
    }

    /// Queues the next exchange of an open connection.
    fn exchange(&mut self, rng: &mut Rng, scratch: &mut Scratch) {
        let side_mostly = |rng: &mut Rng, server_per_mille| {
            if rng.chance(server_per_mille) { S } else { C }
        };
        match rng.below(100) {
            // Request, response.
            0..45 => {
                self.small_json(rng, scratch);
                self.message(rng, scratch, C, TEXT, true, 1, false);
                for _ in 0..rng.range(1, 2) {
                    self.small_json(rng, scratch);
                    self.message(rng, scratch, S, TEXT, true, 1, false);
                }
            }
            // Server push: a burst of small texts that share segments.
            45..65 => {
                for _ in 0..rng.range(2, 12) {
                    self.small_json(rng, scratch);
                    self.message(rng, scratch, S, TEXT, true, 1, false);
                }
            }
            // Kilobyte texts.
            65..75 => {
                let side = side_mostly(rng, 700);
                scratch.msg.clear();
                let size = rng.range(1024, 16 * 1024) as usize;
                big_json(rng, size, &mut scratch.msg);
                self.message(rng, scratch, side, TEXT, true, 1, false);
            }
            // A large binary message, incompressible: sent uncompressed even with deflate.
            75..80 => {
                let side = side_mostly(rng, 800);
                scratch.msg.clear();
                scratch.msg.resize(rng.range(50_000, 150_000) as usize, 0);
                rng.fill(&mut scratch.msg);
                self.message(rng, scratch, side, BINARY, false, 1, false);
            }
            // A fragmented message, text or binary, sometimes with a ping between fragments.
            80..88 => {
                let side = side_mostly(rng, 500);
                scratch.msg.clear();
                let text = rng.chance(600);
                let size = rng.range(2 * 1024, 40 * 1024) as usize;
                if text {
                    big_json(rng, size, &mut scratch.msg);
                } else {
                    scratch.msg.resize(size, 0);
                    rng.fill(&mut scratch.msg);
                }
                let op = if text { TEXT } else { BINARY };
                let fragments = rng.range(2, 6) as usize;
                let ping = rng.chance(300);
                self.message(rng, scratch, side, op, text, fragments, ping);
            }
            // Ping and pong with the same payload.
            88..95 => {
                let side = side_mostly(rng, 400);
                let mut p = [0u8; 16];
                let n = rng.below(17) as usize;
                rng.fill(&mut p[..n]);
                frame(
                    &mut self.out[side],
                    rng,
                    true,
                    false,
                    PING,
                    side == C,
                    &p[..n],
                );
                let peer = 1 - side;
                frame(
                    &mut self.out[peer],
                    rng,
                    true,
                    false,
                    PONG,
                    peer == C,
                    &p[..n],
                );
            }
            // Small binary messages (protobuf-like).
            _ => {
                let side = side_mostly(rng, 500);
                scratch.msg.clear();
                scratch.msg.resize(rng.range(20, 500) as usize, 0);
                rng.fill(&mut scratch.msg);
                self.message(rng, scratch, side, BINARY, true, 1, false);
            }
        }
    }

    fn small_json(&mut self, rng: &mut Rng, scratch: &mut Scratch) {
        scratch.msg.clear();
        self.msg_seq += 1;
        small_json(rng, self.msg_seq, &mut scratch.msg);
    }

    fn close_frame(&mut self, rng: &mut Rng, side: usize) {
        let mut p = 1000u16.to_be_bytes().to_vec();
        p.extend_from_slice(if side == C { b"bye" } else { b"server closing" });
        frame(&mut self.out[side], rng, true, false, CLOSE, side == C, &p);
    }

    /// Moves the connection one step: a segment of queued bytes, or the script's next step.
    fn step(&mut self, pcap: &mut Pcap, rng: &mut Rng, scratch: &mut Scratch) -> io::Result<()> {
        match (self.pending(C) > 0, self.pending(S) > 0) {
            (true, true) => {
                let side = rng.below(2) as usize;
                return self.send_segment(pcap, rng, side);
            }
            (true, false) => return self.send_segment(pcap, rng, C),
            (false, true) => return self.send_segment(pcap, rng, S),
            (false, false) => {}
        }
        match self.phase {
            Phase::New => {
                self.send(pcap, C, SYN, &[])?;
                self.phase = Phase::SynSent;
            }
            Phase::SynSent => {
                self.send(pcap, S, SYN | ACK, &[])?;
                self.phase = Phase::SynReceived;
            }
            Phase::SynReceived => {
                self.send(pcap, C, ACK, &[])?;
                match self.tls.as_deref() {
                    Some(tls) => {
                        let name = format!("10.0.0.{}", self.ep[S].ip[3]);
                        tls.client_hello(&name, &mut self.out[C]);
                        // Handshake records go out as they are, not sealed as data.
                        self.sealed[C] = self.out[C].len();
                        self.phase = Phase::TlsServerHello;
                    }
                    None => {
                        self.request();
                        self.phase = Phase::Requesting;
                    }
                }
            }
            Phase::TlsServerHello => {
                if let Some(tls) = self.tls.as_deref() {
                    tls.server_hello(&mut self.out[S]);
                }
                self.sealed[S] = self.out[S].len();
                self.phase = Phase::TlsClientFinished;
            }
            Phase::TlsClientFinished | Phase::TlsServerFinished => {
                let side = if self.phase == Phase::TlsClientFinished {
                    C
                } else {
                    S
                };
                let mut filler = [0u8; 12];
                rng.fill(&mut filler);
                if let Some(tls) = self.tls.as_deref_mut() {
                    tls.finish(side, &filler, &mut self.out[side]);
                }
                self.sealed[side] = self.out[side].len();
                if side == C {
                    self.phase = Phase::TlsServerFinished;
                } else {
                    self.request();
                    self.phase = Phase::Requesting;
                }
            }
            Phase::Requesting => {
                let mut sha = Sha1::new();
                sha.update(self.key.as_bytes());
                sha.update(WS_GUID.as_bytes());
                let accept = base64::engine::general_purpose::STANDARD.encode(sha.finalize());
                let ext = if self.deflate {
                    "Sec-WebSocket-Extensions: permessage-deflate\r\n"
                } else {
                    ""
                };
                let resp = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n{ext}\r\n"
                );
                self.out[S].extend_from_slice(resp.as_bytes());
                if self.deflate {
                    let level = Compression::new(1 + rng.below(6) as u32);
                    self.compressors = Some(Box::new([
                        Compress::new(level, false),
                        Compress::new(level, false),
                    ]));
                }
                self.phase = Phase::Open;
            }
            Phase::Open => {
                if self.used < self.budget {
                    self.exchange(rng, scratch);
                } else {
                    let initiator = if rng.chance(500) { C } else { S };
                    self.close_frame(rng, initiator);
                    // The reply follows once the close is sent.
                    self.closer_reply = 1 - initiator;
                    self.phase = Phase::Closing;
                }
            }
            Phase::Closing => {
                self.close_frame(rng, self.closer_reply);
                self.compressors = None;
                self.phase = Phase::Closed;
            }
            Phase::Closed => {
                // RFC 6455 7.1.1: the server closes the TCP connection first.
                self.send(pcap, S, FIN | ACK, &[])?;
                self.phase = Phase::ServerFin;
            }
            Phase::ServerFin => {
                self.send(pcap, C, FIN | ACK, &[])?;
                self.phase = Phase::ClientFin;
            }
            Phase::ClientFin => {
                self.send(pcap, S, ACK, &[])?;
                self.phase = Phase::Done;
            }
            Phase::Done => {}
        }
        self.seal_queued();
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------

struct Args {
    size_mb: u64,
    connections: u64,
    seed: u64,
    out: Option<String>,
    nanos: bool,
    /// Per cent of connections that negotiate permessage-deflate.
    deflate_pct: u64,
    syn_flood: Option<u64>,
    half_open: u64,
    ooo_bytes: u64,
    tls: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: gen_corpus [--size MB] [--connections N] [--seed S] [--deflate PCT] [--nanos] [--tls] -o FILE\n\
         \x20      gen_corpus --syn-flood N [--half-open M] [--ooo-bytes B] [--seed S] -o FILE"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        size_mb: 200,
        connections: 500,
        seed: 1,
        out: None,
        nanos: false,
        deflate_pct: 20,
        syn_flood: None,
        half_open: 0,
        ooo_bytes: 1_000_000,
        tls: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut num = || -> u64 {
            it.next()
                .and_then(|v| v.replace('_', "").parse().ok())
                .unwrap_or_else(|| usage())
        };
        match arg.as_str() {
            "--size" => a.size_mb = num(),
            "--connections" => a.connections = num().max(1),
            "--seed" => a.seed = num(),
            "--syn-flood" => a.syn_flood = Some(num()),
            "--half-open" => a.half_open = num(),
            "--ooo-bytes" => a.ooo_bytes = num(),
            "--deflate" => a.deflate_pct = num().min(100),
            "--nanos" => a.nanos = true,
            "--tls" => a.tls = true,
            "-o" => a.out = Some(it.next().unwrap_or_else(|| usage())),
            _ => usage(),
        }
    }
    a
}

fn corpus(a: &Args) -> io::Result<()> {
    let path = a.out.as_deref().unwrap_or_else(|| usage());
    let mut rng = Rng::new(a.seed);
    let mut pcap = Pcap::create(path, a.nanos, 1_700_000_000, a.seed)?;
    let mut scratch = Scratch {
        msg: Vec::new(),
        z: Vec::new(),
    };
    let target = a.size_mb * 1_000_000;
    // A connection stops after the exchange that reaches its budget; on average that goes
    // ~40 KB past it (large messages dominate), so aim that much lower.
    let per_conn = target / a.connections;
    let per_conn = per_conn.saturating_sub(40_000).max(per_conn / 2);
    let mut live: Vec<Conn> = (0..a.connections)
        .map(|id| {
            let budget = per_conn / 2 + rng.below(per_conn.max(1));
            let deflate = rng.chance(a.deflate_pct * 10);
            Conn::new(id, &mut rng, budget, deflate, a.tls)
        })
        .collect();
    if a.tls {
        let keys: String = live
            .iter()
            .filter_map(|c| c.tls.as_deref().map(TlsConn::key_log_line))
            .collect();
        std::fs::write(format!("{path}.keys"), keys)?;
    }
    let (mut handshakes, mut deflates) = (0u64, 0u64);
    while !live.is_empty() {
        // Connections open gradually: a not-yet-started one is picked less often.
        let i = rng.below(live.len() as u64) as usize;
        let conn = &mut live[i];
        if conn.phase == Phase::New && !rng.chance(100) {
            continue;
        }
        conn.step(&mut pcap, &mut rng, &mut scratch)?;
        if conn.phase == Phase::Done {
            let done = live.swap_remove(i);
            handshakes += 1;
            deflates += u64::from(done.deflate);
        }
    }
    pcap.w.flush()?;
    eprintln!(
        "gen_corpus: {path}: {} bytes, {} packets, {} connections ({} with permessage-deflate), \
         {} handshakes",
        pcap.bytes, pcap.packets, a.connections, deflates, handshakes
    );
    Ok(())
}

/// SYNs from distinct endpoints interleaved with half-open connections that hold out-of-order
/// data in both directions behind a hole that never fills.
fn flood(a: &Args, syns: u64) -> io::Result<()> {
    let path = a.out.as_deref().unwrap_or_else(|| usage());
    let mut rng = Rng::new(a.seed);
    let mut pcap = Pcap::create(path, a.nanos, 1_700_000_000, a.seed)?;
    let server = Ep {
        ip: [10, 0, 0, 1],
        port: SERVER_PORT,
    };
    struct HalfOpen {
        client: Ep,
        /// Next sequence number to send per side; the hole's first byte per side.
        seq: [u32; 2],
        hole: [u32; 2],
        left: [u64; 2],
    }
    let mut half: Vec<HalfOpen> = Vec::new();
    for n in 0..a.half_open {
        let n = n as u32;
        let client = Ep {
            ip: [172, 16, (n >> 8) as u8, n as u8],
            port: 30_000 + (n % 30_000) as u16,
        };
        let (isn_c, isn_s) = (rng.next() as u32, rng.next() as u32);
        pcap.tcp(client, server, isn_c, 0, SYN, &[])?;
        pcap.tcp(server, client, isn_s, isn_c.wrapping_add(1), SYN | ACK, &[])?;
        pcap.tcp(
            client,
            server,
            isn_c.wrapping_add(1),
            isn_s.wrapping_add(1),
            ACK,
            &[],
        )?;
        let hole = [isn_c.wrapping_add(1), isn_s.wrapping_add(1)];
        half.push(HalfOpen {
            client,
            // The first segment of each side is never captured.
            seq: [
                hole[0].wrapping_add(MSS as u32),
                hole[1].wrapping_add(MSS as u32),
            ],
            hole,
            left: [a.ooo_bytes, a.ooo_bytes],
        });
    }
    let mut payload = vec![0u8; MSS];
    let segments_per_side = a.ooo_bytes.div_ceil(MSS as u64);
    let mut data_left = a.half_open * 2 * segments_per_side;
    let mut syns_left = syns;
    let mut syn_no = 0u64;
    while syns_left + data_left > 0 {
        if rng.below(syns_left + data_left) < syns_left {
            let n = syn_no;
            syn_no += 1;
            syns_left -= 1;
            let src = Ep {
                ip: [100, 64 + (n >> 16) as u8, (n >> 8) as u8, n as u8],
                port: 1024 + (n.wrapping_mul(7919) % 64_000) as u16,
            };
            pcap.tcp(src, server, rng.next() as u32, 0, SYN, &[])?;
            continue;
        }
        // A data segment of a random half-open connection that still has some to send.
        let mut i = rng.below(half.len() as u64) as usize;
        while half[i].left == [0, 0] {
            i = (i + 1) % half.len();
        }
        let h = &mut half[i];
        let side = if h.left[0] == 0 {
            1
        } else if h.left[1] == 0 {
            0
        } else {
            rng.below(2) as usize
        };
        let len = h.left[side].min(MSS as u64) as usize;
        rng.fill(&mut payload[..len]);
        let (src, dst) = if side == 0 {
            (h.client, server)
        } else {
            (server, h.client)
        };
        // Acknowledges only up to the peer's hole: a duplicate ACK, never a gap.
        pcap.tcp(
            src,
            dst,
            h.seq[side],
            h.hole[1 - side],
            ACK | PSH,
            &payload[..len],
        )?;
        h.seq[side] = h.seq[side].wrapping_add(len as u32);
        h.left[side] -= len as u64;
        data_left -= 1;
    }
    pcap.w.flush()?;
    eprintln!(
        "gen_corpus: {path}: {} bytes, {} packets: {} SYNs, {} half-open connections holding \
         {} bytes out of order per direction",
        pcap.bytes, pcap.packets, syns, a.half_open, a.ooo_bytes
    );
    Ok(())
}

fn main() -> ExitCode {
    let a = parse_args();
    let result = match a.syn_flood {
        Some(n) => flood(&a, n),
        None => corpus(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen_corpus: {e}");
            ExitCode::FAILURE
        }
    }
}
