//! TLS 1.2 for gen_corpus `--tls`: a minimal ECDHE-RSA-AES128-GCM-SHA256 handshake (hellos,
//! ChangeCipherSpec, encrypted Finished) and application data records, with the key log line
//! (CLIENT_RANDOM) that decrypts them. Only what a passive decryptor reads is real: the
//! randoms, the suite, record framing, the keys and the AEAD; the key exchange and the
//! Finished MACs are filler nobody checks.

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256.
const SUITE: u16 = 0xc02f;
/// The most plaintext one record carries (RFC 5246 6.2.1).
const MAX_FRAGMENT: usize = 1 << 14;

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// RFC 5246 5: P_SHA256(secret, label + seed), `out.len()` bytes.
fn prf(secret: &[u8], label: &[u8], seed: &[u8], out: &mut [u8]) {
    let mut a = hmac(secret, &[label, seed]);
    for chunk in out.chunks_mut(32) {
        let block = hmac(secret, &[&a, label, seed]);
        chunk.copy_from_slice(&block[..chunk.len()]);
        a = hmac(secret, &[&a]);
    }
}

/// One direction's write state.
struct Writer {
    cipher: Aes128Gcm,
    iv: [u8; 4],
    seq: u64,
}

impl Writer {
    /// Appends `plain` to `out` as records of content type `kind` (at most 16 KiB each).
    fn seal(&mut self, kind: u8, plain: &[u8], out: &mut Vec<u8>) {
        for fragment in plain.chunks(MAX_FRAGMENT) {
            let explicit = self.seq.to_be_bytes();
            let mut nonce = [0u8; 12];
            nonce[..4].copy_from_slice(&self.iv);
            nonce[4..].copy_from_slice(&explicit);
            let mut aad = [0u8; 13];
            aad[..8].copy_from_slice(&explicit);
            aad[8] = kind;
            aad[9..11].copy_from_slice(&[3, 3]);
            aad[11..].copy_from_slice(&(fragment.len() as u16).to_be_bytes());
            let len = 8 + fragment.len() + 16;
            out.extend_from_slice(&[kind, 3, 3]);
            out.extend_from_slice(&(len as u16).to_be_bytes());
            out.extend_from_slice(&explicit);
            let at = out.len();
            out.extend_from_slice(fragment);
            let nonce = Nonce::try_from(&nonce[..]).expect("12 bytes");
            let tag = self
                .cipher
                .encrypt_inout_detached(&nonce, &aad, (&mut out[at..]).into())
                .expect("a record is far below the AEAD's limit");
            out.extend_from_slice(&tag);
            self.seq += 1;
        }
    }
}

/// One connection's TLS: both writers, and the randoms and master secret of its key log line.
pub struct TlsConn {
    client_random: [u8; 32],
    server_random: [u8; 32],
    master: [u8; 48],
    writers: [Writer; 2],
}

fn record(kind: u8, body: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&[kind, 3, 3]);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
}

fn handshake_message(kind: u8, body: &[u8], out: &mut Vec<u8>) {
    out.push(kind);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(body);
}

impl TlsConn {
    /// `random`: 32 + 32 + 48 + 12 bytes of randomness (randoms, master secret, filler).
    pub fn new(random: &[u8; 112]) -> TlsConn {
        let mut client_random = [0u8; 32];
        let mut server_random = [0u8; 32];
        let mut master = [0u8; 48];
        client_random.copy_from_slice(&random[..32]);
        server_random.copy_from_slice(&random[32..64]);
        master.copy_from_slice(&random[64..]);
        // RFC 5246 6.3: client key, server key, client IV, server IV (no MAC keys with GCM).
        let mut block = [0u8; 40];
        let mut seed = [0u8; 64];
        seed[..32].copy_from_slice(&server_random);
        seed[32..].copy_from_slice(&client_random);
        prf(&master, b"key expansion", &seed, &mut block);
        let writer = |key: &[u8], iv: &[u8]| Writer {
            cipher: Aes128Gcm::new_from_slice(key).expect("16 bytes"),
            iv: iv.try_into().expect("4 bytes"),
            seq: 0,
        };
        TlsConn {
            client_random,
            server_random,
            master,
            writers: [
                writer(&block[..16], &block[32..36]),
                writer(&block[16..32], &block[36..40]),
            ],
        }
    }

    /// The NSS key log line that decrypts this connection.
    pub fn key_log_line(&self) -> String {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        format!(
            "CLIENT_RANDOM {} {}\n",
            hex(&self.client_random),
            hex(&self.master)
        )
    }

    pub fn client_hello(&self, server_name: &str, out: &mut Vec<u8>) {
        let mut body = vec![3, 3];
        body.extend_from_slice(&self.client_random);
        body.push(0); // no session id
        body.extend_from_slice(&[0, 2]);
        body.extend_from_slice(&SUITE.to_be_bytes());
        body.extend_from_slice(&[1, 0]); // compression: null
        // server_name (0) and ALPN http/1.1 (16)
        let name = server_name.as_bytes();
        let mut ext = Vec::new();
        ext.extend_from_slice(&[0, 0]);
        ext.extend_from_slice(&((name.len() + 5) as u16).to_be_bytes());
        ext.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
        ext.push(0);
        ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
        ext.extend_from_slice(name);
        ext.extend_from_slice(&[0, 16, 0, 11, 0, 9, 8]);
        ext.extend_from_slice(b"http/1.1");
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut hs = Vec::new();
        handshake_message(1, &body, &mut hs);
        record(22, &hs, out);
    }

    /// ServerHello, ServerHelloDone (a real server sends its certificate and key share between).
    pub fn server_hello(&self, out: &mut Vec<u8>) {
        let mut body = vec![3, 3];
        body.extend_from_slice(&self.server_random);
        body.push(0);
        body.extend_from_slice(&SUITE.to_be_bytes());
        body.push(0);
        // ALPN: http/1.1 chosen.
        body.extend_from_slice(&[0, 15, 0, 16, 0, 11, 0, 9, 8]);
        body.extend_from_slice(b"http/1.1");
        let mut hs = Vec::new();
        handshake_message(2, &body, &mut hs);
        handshake_message(14, &[], &mut hs);
        record(22, &hs, out);
    }

    /// ClientKeyExchange (filler), ChangeCipherSpec, and Finished sealed (client), or
    /// ChangeCipherSpec and Finished sealed (server).
    pub fn finish(&mut self, side: usize, filler: &[u8; 12], out: &mut Vec<u8>) {
        if side == 0 {
            let mut hs = Vec::new();
            let mut point = vec![65, 4];
            point.extend(std::iter::repeat_n(0x5a, 64));
            handshake_message(16, &point, &mut hs);
            record(22, &hs, out);
        }
        record(20, &[1], out);
        let mut fin = Vec::new();
        handshake_message(20, filler, &mut fin);
        self.writers[side].seal(22, &fin, out);
    }

    /// Application data from `side` (0 client, 1 server).
    pub fn seal_data(&mut self, side: usize, plain: &[u8], out: &mut Vec<u8>) {
        self.writers[side].seal(23, plain, out);
    }
}

#[test]
fn prf_matches_the_published_p_sha256_vector() {
    // The P_SHA256 test vector posted to the IETF TLS list (secret, seed, "test label").
    let secret = [
        0x9b, 0xbe, 0x43, 0x6b, 0xa9, 0x40, 0xf0, 0x17, 0xb1, 0x76, 0x52, 0x84, 0x9a, 0x71, 0xdb,
        0x35,
    ];
    let seed = [
        0xa0, 0xba, 0x9f, 0x93, 0x6c, 0xda, 0x31, 0x18, 0x27, 0xa6, 0xf7, 0x96, 0xff, 0xd5, 0x19,
        0x8c,
    ];
    let mut out = [0u8; 100];
    prf(&secret, b"test label", &seed, &mut out);
    assert_eq!(
        out[..16],
        [
            0xe3, 0xf2, 0x29, 0xba, 0x72, 0x7b, 0xe1, 0x7b, 0x8d, 0x12, 0x26, 0x20, 0x55, 0x7c,
            0xd4, 0x53
        ]
    );
}
