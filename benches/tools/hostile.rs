//! Hostile captures for the output bounds of issue 19, written as classic pcap: many
//! connections with long URIs (`--summary`), connections that carry one byte, streams of tiny
//! frames (`--threads`), and text frames of chosen payloads (terminal escaping). Used by
//! `gen_hostile` (benches/memory.sh) and by tests/hostile_output.rs, which know from here
//! exactly what each capture holds.

#![allow(dead_code)]

use std::io::{self, Write};

use base64::Engine as _;
use sha1::{Digest, Sha1};

pub const SYN: u8 = 0x02;
pub const FIN: u8 = 0x01;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

/// Payload bytes per segment.
pub const MSS: usize = 1460;

/// The server every connection goes to.
pub const SERVER: ([u8; 4], u16) = ([192, 0, 2, 1], 8080);

/// A pcap file being written: Ethernet, IPv4, TCP; one packet every 10 microseconds.
pub struct Pcap<W: Write> {
    w: W,
    now_us: u64,
    buf: Vec<u8>,
}

impl<W: Write> Pcap<W> {
    pub fn new(mut w: W) -> io::Result<Self> {
        w.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
        w.write_all(&2u16.to_le_bytes())?;
        w.write_all(&4u16.to_le_bytes())?;
        w.write_all(&[0; 8])?; // thiszone, sigfigs
        w.write_all(&262_144u32.to_le_bytes())?;
        w.write_all(&1u32.to_le_bytes())?; // LINKTYPE_ETHERNET
        Ok(Pcap {
            w,
            now_us: 1_700_000_000_000_000,
            buf: Vec::with_capacity(2048),
        })
    }

    pub fn into_inner(self) -> W {
        self.w
    }

    /// One TCP segment from `src` to `dst`.
    pub fn tcp(
        &mut self,
        src: ([u8; 4], u16),
        dst: ([u8; 4], u16),
        seq: u32,
        ack: u32,
        flags: u8,
        payload: &[u8],
    ) -> io::Result<()> {
        self.now_us += 10;
        let b = &mut self.buf;
        b.clear();
        b.extend_from_slice(&[2, 0, dst.0[0], dst.0[1], dst.0[2], dst.0[3]]);
        b.extend_from_slice(&[2, 0, src.0[0], src.0[1], src.0[2], src.0[3]]);
        b.extend_from_slice(&[0x08, 0x00]);
        let total = (40 + payload.len()) as u16;
        b.extend_from_slice(&[0x45, 0]);
        b.extend_from_slice(&total.to_be_bytes());
        b.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]);
        b.extend_from_slice(&src.0);
        b.extend_from_slice(&dst.0);
        b.extend_from_slice(&src.1.to_be_bytes());
        b.extend_from_slice(&dst.1.to_be_bytes());
        b.extend_from_slice(&seq.to_be_bytes());
        b.extend_from_slice(&(if flags & ACK != 0 { ack } else { 0 }).to_be_bytes());
        b.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        b.extend_from_slice(payload);
        let len = b.len() as u32;
        let mut rec = [0u8; 16];
        rec[0..4].copy_from_slice(&((self.now_us / 1_000_000) as u32).to_le_bytes());
        rec[4..8].copy_from_slice(&((self.now_us % 1_000_000) as u32).to_le_bytes());
        rec[8..12].copy_from_slice(&len.to_le_bytes());
        rec[12..16].copy_from_slice(&len.to_le_bytes());
        self.w.write_all(&rec)?;
        self.w.write_all(&self.buf)
    }
}

/// One TCP connection from a client numbered `n` to [`SERVER`].
pub struct Conn {
    pub client: ([u8; 4], u16),
    /// Next sequence number of the client (0) and the server (1).
    seq: [u32; 2],
}

impl Conn {
    /// Connection `n`'s client: a distinct address and port for every n below 2^32.
    pub fn client_of(n: u64) -> ([u8; 4], u16) {
        let n = n as u32;
        (
            [10, (n >> 16) as u8, (n >> 8) as u8, n as u8],
            40_000 + (n >> 24) as u16,
        )
    }

    /// The three-way handshake.
    pub fn open<W: Write>(pcap: &mut Pcap<W>, n: u64) -> io::Result<Conn> {
        let client = Conn::client_of(n);
        let (c, s) = (1_000u32, 5_000u32);
        pcap.tcp(client, SERVER, c, 0, SYN, &[])?;
        pcap.tcp(SERVER, client, s, c + 1, SYN | ACK, &[])?;
        pcap.tcp(client, SERVER, c + 1, s + 1, ACK, &[])?;
        Ok(Conn {
            client,
            seq: [c + 1, s + 1],
        })
    }

    fn ends(&self, side: usize) -> (([u8; 4], u16), ([u8; 4], u16)) {
        if side == 0 {
            (self.client, SERVER)
        } else {
            (SERVER, self.client)
        }
    }

    /// `bytes` from the client (side 0) or the server (1), in segments of at most [`MSS`].
    pub fn send<W: Write>(
        &mut self,
        pcap: &mut Pcap<W>,
        side: usize,
        bytes: &[u8],
    ) -> io::Result<()> {
        let (src, dst) = self.ends(side);
        for piece in bytes.chunks(MSS) {
            pcap.tcp(
                src,
                dst,
                self.seq[side],
                self.seq[1 - side],
                PSH | ACK,
                piece,
            )?;
            self.seq[side] = self.seq[side].wrapping_add(piece.len() as u32);
        }
        Ok(())
    }

    /// FIN from both sides.
    pub fn close<W: Write>(&mut self, pcap: &mut Pcap<W>) -> io::Result<()> {
        for side in [0, 1] {
            let (src, dst) = self.ends(side);
            pcap.tcp(src, dst, self.seq[side], self.seq[1 - side], FIN | ACK, &[])?;
            self.seq[side] = self.seq[side].wrapping_add(1);
        }
        Ok(())
    }

    /// An upgrade request for `uri` and the server's 101 with the right accept key.
    pub fn upgrade<W: Write>(&mut self, pcap: &mut Pcap<W>, uri: &str) -> io::Result<()> {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let request = format!(
            "GET {uri} HTTP/1.1\r\nHost: example.test\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        self.send(pcap, 0, request.as_bytes())?;
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: {}\r\n\r\n",
            accept_key(key)
        );
        self.send(pcap, 1, response.as_bytes())
    }
}

/// RFC 6455's Sec-WebSocket-Accept for `key`.
pub fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// An unmasked (server) frame.
pub fn server_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n < 65_536 => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

/// The URI connection `n` of [`long_uris`] asks for: `len` bytes (more if `len` is shorter
/// than its number), unique by its start.
pub fn long_uri(n: u64, len: usize) -> String {
    let mut uri = format!("/{n}/");
    while uri.len() < len {
        uri.push(char::from(b'a' + (uri.len() % 26) as u8));
    }
    uri
}

/// `conns` WebSocket connections one after the other, each upgraded for a `uri_len`-byte URI,
/// one text frame from the server, then closed with FIN.
pub fn long_uris<W: Write>(w: W, conns: u64, uri_len: usize) -> io::Result<W> {
    let mut pcap = Pcap::new(w)?;
    let mut frame = Vec::new();
    server_frame(&mut frame, 1, b"hi");
    for n in 0..conns {
        let mut c = Conn::open(&mut pcap, n)?;
        c.upgrade(&mut pcap, &long_uri(n, uri_len))?;
        c.send(&mut pcap, 1, &frame)?;
        c.close(&mut pcap)?;
    }
    Ok(pcap.into_inner())
}

/// `conns` connections that each carry one byte, `byte`, from the client and are never
/// closed: they stay in the flow table.
pub fn one_byte<W: Write>(w: W, conns: u64, byte: u8) -> io::Result<W> {
    let mut pcap = Pcap::new(w)?;
    for n in 0..conns {
        let mut c = Conn::open(&mut pcap, n)?;
        c.send(&mut pcap, 0, &[byte])?;
    }
    Ok(pcap.into_inner())
}

/// A quiet WebSocket connection, then `conns` WebSocket connections sending, interleaved,
/// `frames` two-byte-payload text frames each from the server, packed into full segments.
/// (With `--threads 2` the first connection, quiet, is the reading thread's and up to three
/// busy ones are the worker's: the worker's output waits for the reader's word on how far
/// it got.)
pub fn tiny_frames<W: Write>(w: W, conns: u64, frames: u64) -> io::Result<W> {
    let mut pcap = Pcap::new(w)?;
    let mut quiet = Conn::open(&mut pcap, 0)?;
    quiet.upgrade(&mut pcap, "/quiet")?;
    let mut all = Vec::new();
    for n in 1..=conns {
        let mut c = Conn::open(&mut pcap, n)?;
        c.upgrade(&mut pcap, "/tiny")?;
        all.push(c);
    }
    let mut frame = Vec::new();
    server_frame(&mut frame, 1, b"ok");
    let per_segment = (MSS / frame.len()) as u64;
    let segment = frame.repeat(per_segment as usize);
    let mut sent = 0;
    while sent < frames {
        let count = per_segment.min(frames - sent);
        for c in &mut all {
            c.send(&mut pcap, 1, &segment[..count as usize * frame.len()])?;
        }
        sent += count;
    }
    for c in &mut all {
        c.close(&mut pcap)?;
    }
    quiet.close(&mut pcap)?;
    Ok(pcap.into_inner())
}

/// One WebSocket connection whose server sends one text frame per payload.
pub fn text_frames<W: Write>(w: W, payloads: &[&str]) -> io::Result<W> {
    let mut pcap = Pcap::new(w)?;
    let mut c = Conn::open(&mut pcap, 0)?;
    c.upgrade(&mut pcap, "/text")?;
    for p in payloads {
        let mut frame = Vec::new();
        server_frame(&mut frame, 1, p.as_bytes());
        c.send(&mut pcap, 1, &frame)?;
    }
    c.close(&mut pcap)?;
    Ok(pcap.into_inner())
}
