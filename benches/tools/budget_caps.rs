//! Captures that press on `--max-memory` (issue 19's global budget), written with
//! [`hostile`](crate::hostile)'s packets: connections holding bytes out of order behind holes
//! that never fill, deflating WebSocket connections kept open, and open WebSocket
//! connections with long URIs. Used by `gen_bounds` (benches/memory.sh) and by tests/budget.rs,
//! which know from here exactly what each capture holds.

#![allow(dead_code)]

use std::io::{self, Write};

use flate2::{Compress, Compression, FlushCompress};

use crate::hostile::{ACK, Conn, MSS, PSH, Pcap, SERVER, SYN, accept_key, server_frame};

/// The bytes missing before what each connection of [`holes`] holds.
pub const HOLE: u32 = 100;

/// `conns` WebSocket connections one after the other, each (after its upgrade) sending
/// `bytes` from the server [`HOLE`] bytes past where its stream is: held out of order, the
/// hole never filled, the connection never closed.
pub fn holes<W: Write>(w: W, conns: u64, bytes: usize) -> io::Result<W> {
    let mut pcap = Pcap::new(w)?;
    let payload = vec![b'o'; bytes];
    for n in 0..conns {
        let client = Conn::client_of(n);
        let (c, s) = (1_000u32, 5_000u32);
        pcap.tcp(client, SERVER, c, 0, SYN, &[])?;
        pcap.tcp(SERVER, client, s, c + 1, SYN | ACK, &[])?;
        pcap.tcp(client, SERVER, c + 1, s + 1, ACK, &[])?;
        let (request, response) = upgrade_heads("/holes", "");
        pcap.tcp(client, SERVER, c + 1, s + 1, PSH | ACK, request.as_bytes())?;
        let c_next = c + 1 + request.len() as u32;
        pcap.tcp(
            SERVER,
            client,
            s + 1,
            c_next,
            PSH | ACK,
            response.as_bytes(),
        )?;
        let mut seq = s + 1 + response.len() as u32 + HOLE;
        for piece in payload.chunks(MSS) {
            pcap.tcp(SERVER, client, seq, c_next, PSH | ACK, piece)?;
            seq = seq.wrapping_add(piece.len() as u32);
        }
    }
    Ok(pcap.into_inner())
}

/// An upgrade request for `uri` and its 101, both with `extensions` if not empty.
fn upgrade_heads(uri: &str, extensions: &str) -> (String, String) {
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let ext = if extensions.is_empty() {
        String::new()
    } else {
        format!("Sec-WebSocket-Extensions: {extensions}\r\n")
    };
    let request = format!(
        "GET {uri} HTTP/1.1\r\nHost: example.test\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n"
    );
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: {}\r\n{ext}\r\n",
        accept_key(key)
    );
    (request, response)
}

/// The text of message `m` (0 or 1) of connection `n` of [`deflating`].
pub fn deflated_text(n: u64, m: u32) -> String {
    format!("message {m} of connection {n}: {}", "abc".repeat(20))
}

/// A permessage-deflate message (RFC 7692 7.2.1): the sync-flushed deflate stream, its
/// trailing 00 00 ff ff removed.
fn deflate(z: &mut Compress, text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 64);
    let _ = z.compress_vec(text, &mut out, FlushCompress::Sync);
    if out.ends_with(&[0, 0, 0xff, 0xff]) {
        out.truncate(out.len() - 4);
    }
    out
}

/// `conns` WebSocket connections negotiating permessage-deflate (context takeover, 15-bit
/// windows), each server sending one compressed text message ([`deflated_text`] 0) as it
/// opens; once all are open, each server sends a second ([`deflated_text`] 1) in the same
/// deflate stream, and they stay open.
pub fn deflating<W: Write>(w: W, conns: u64) -> io::Result<W> {
    let mut pcap = Pcap::new(w)?;
    let mut open = Vec::new();
    for n in 0..conns {
        let mut c = Conn::open(&mut pcap, n)?;
        upgrade_deflate(&mut c, &mut pcap)?;
        let mut z = Compress::new(Compression::default(), false);
        let mut frame = Vec::new();
        server_frame(
            &mut frame,
            1,
            &deflate(&mut z, deflated_text(n, 0).as_bytes()),
        );
        frame[0] |= 0x40; // RSV1: compressed
        c.send(&mut pcap, 1, &frame)?;
        open.push((c, z));
    }
    for (n, (c, z)) in open.iter_mut().enumerate() {
        let mut frame = Vec::new();
        server_frame(
            &mut frame,
            1,
            &deflate(z, deflated_text(n as u64, 1).as_bytes()),
        );
        frame[0] |= 0x40;
        c.send(&mut pcap, 1, &frame)?;
    }
    Ok(pcap.into_inner())
}

fn upgrade_deflate<W: Write>(c: &mut Conn, pcap: &mut Pcap<W>) -> io::Result<()> {
    let (request, response) = upgrade_heads("/deflate", "permessage-deflate");
    c.send(pcap, 0, request.as_bytes())?;
    c.send(pcap, 1, response.as_bytes())
}

/// `conns` WebSocket connections one after the other, each upgraded for a `uri_len`-byte URI
/// ([`hostile::long_uri`](crate::hostile::long_uri)), one text frame from the server, and
/// never closed: each keeps its handshake until the capture ends.
pub fn open_uris<W: Write>(w: W, conns: u64, uri_len: usize) -> io::Result<W> {
    let mut pcap = Pcap::new(w)?;
    let mut frame = Vec::new();
    server_frame(&mut frame, 1, b"hi");
    for n in 0..conns {
        let mut c = Conn::open(&mut pcap, n)?;
        c.upgrade(&mut pcap, &crate::hostile::long_uri(n, uri_len))?;
        c.send(&mut pcap, 1, &frame)?;
    }
    Ok(pcap.into_inner())
}

/// `conns` connections one after the other, each sending the first `head_bytes` of a request
/// head (one long header) whose end never comes: the HTTP layer holds each, waiting for it.
pub fn open_heads<W: Write>(w: W, conns: u64, head_bytes: usize) -> io::Result<W> {
    let mut pcap = Pcap::new(w)?;
    let mut head = b"GET /head HTTP/1.1\r\nHost: example.test\r\nX-Pad: ".to_vec();
    head.resize(head_bytes.max(head.len()), b'p');
    for n in 0..conns {
        let mut c = Conn::open(&mut pcap, n)?;
        c.send(&mut pcap, 0, &head)?;
    }
    Ok(pcap.into_inner())
}

/// `conns` connections whose start was not captured (no SYN), one after the other, each
/// client sending `bytes` that never parse as frames (0xff: a reserved opcode): wsnoop probes
/// them for frames, or with `--ws-port 8080` looks for where frames start, holding the bytes.
pub fn probes<W: Write>(w: W, conns: u64, bytes: usize) -> io::Result<W> {
    let mut pcap = Pcap::new(w)?;
    let payload = vec![0xff; bytes];
    for n in 0..conns {
        let client = Conn::client_of(n);
        let mut seq = 7_000u32;
        for piece in payload.chunks(MSS) {
            pcap.tcp(client, SERVER, seq, 3_000, PSH | ACK, piece)?;
            seq = seq.wrapping_add(piece.len() as u32);
        }
    }
    Ok(pcap.into_inner())
}
