//! Key derivation (TLS 1.3 HKDF-Expand-Label, the TLS 1.2 PRF) and AEAD record protection.
//! Nothing here prints key material: [`Secret`] and [`RecordKey`] have opaque Debug output.

use hmac::{Hmac, KeyInit, Mac};
use ring::aead::{
    AES_128_GCM, AES_256_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, Tag, UnboundKey,
};
use sha2::{Sha256, Sha384};

use super::cbc::{CbcKey, MacAlg};

/// The longest secret a key log carries: a TLS 1.2 master secret, or a SHA-384 traffic secret.
pub(crate) const SECRET_MAX: usize = 48;
pub(crate) const TAG_LEN: usize = 16;

/// A secret read from a key log. Debug never shows its bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Secret {
    bytes: [u8; SECRET_MAX],
    len: u8,
}

impl Secret {
    /// None when `bytes` is empty or longer than any secret TLS uses.
    pub(crate) fn new(bytes: &[u8]) -> Option<Secret> {
        if bytes.is_empty() || bytes.len() > SECRET_MAX {
            return None;
        }
        let mut s = Secret {
            bytes: [0; SECRET_MAX],
            len: bytes.len() as u8,
        };
        s.bytes[..bytes.len()].copy_from_slice(bytes);
        Some(s)
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} bytes)", self.len)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HashAlg {
    Sha256,
    Sha384,
}

impl HashAlg {
    pub(crate) fn len(self) -> usize {
        match self {
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AeadAlg {
    Aes128Gcm,
    Aes256Gcm,
    ChaCha20Poly1305,
    /// TLS 1.2 CBC with HMAC (not an AEAD, but framed in the same place).
    Aes128Cbc(MacAlg),
    Aes256Cbc(MacAlg),
}

impl AeadAlg {
    pub(crate) fn key_len(self) -> usize {
        match self {
            AeadAlg::Aes128Gcm | AeadAlg::Aes128Cbc(_) => 16,
            AeadAlg::Aes256Gcm | AeadAlg::ChaCha20Poly1305 | AeadAlg::Aes256Cbc(_) => 32,
        }
    }
}

/// What a cipher suite needs for decryption.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Suite {
    pub id: u16,
    pub aead: AeadAlg,
    pub hash: HashAlg,
    pub tls13: bool,
}

/// The suites wsnoop decrypts; None for any other id (reported as unsupported).
pub(crate) fn suite(id: u16) -> Option<Suite> {
    use AeadAlg::*;
    use HashAlg::*;
    let (aead, hash, tls13) = match id {
        0x1301 => (Aes128Gcm, Sha256, true),
        0x1302 => (Aes256Gcm, Sha384, true),
        0x1303 => (ChaCha20Poly1305, Sha256, true),
        0x009C | 0x009E | 0xC02B | 0xC02F => (Aes128Gcm, Sha256, false),
        0x009D | 0x009F | 0xC02C | 0xC030 => (Aes256Gcm, Sha384, false),
        0xCCA8..=0xCCAA => (ChaCha20Poly1305, Sha256, false),
        0x002F | 0x0033 | 0xC009 | 0xC013 => (Aes128Cbc(MacAlg::Sha1), Sha256, false),
        0x0035 | 0x0039 | 0xC00A | 0xC014 => (Aes256Cbc(MacAlg::Sha1), Sha256, false),
        0x003C | 0x0067 | 0xC023 | 0xC027 => (Aes128Cbc(MacAlg::Sha256), Sha256, false),
        0x003D | 0x006B => (Aes256Cbc(MacAlg::Sha256), Sha256, false),
        0xC024 | 0xC028 => (Aes256Cbc(MacAlg::Sha384), Sha384, false),
        _ => return None,
    };
    Some(Suite {
        id,
        aead,
        hash,
        tls13,
    })
}

/// HKDF-Expand-Label (RFC 8446 section 7.1) with an empty context, the only kind wsnoop needs
/// (traffic keys, IVs, KeyUpdate).
pub(crate) fn expand_label(hash: HashAlg, secret: &[u8], label: &[u8], out: &mut [u8]) -> bool {
    // HkdfLabel: uint16 length, opaque label<7..255> ("tls13 " + label), opaque context<0..255>.
    let mut info = [0u8; 4 + 6 + 32];
    let full = 6 + label.len();
    if label.len() > 32 || out.len() > usize::from(u16::MAX) {
        return false;
    }
    info[..2].copy_from_slice(&(out.len() as u16).to_be_bytes());
    info[2] = full as u8;
    info[3..9].copy_from_slice(b"tls13 ");
    info[9..9 + label.len()].copy_from_slice(label);
    info[9 + label.len()] = 0;
    let info = &info[..10 + label.len()];
    match hash {
        HashAlg::Sha256 => {
            hkdf::Hkdf::<Sha256>::from_prk(secret).is_ok_and(|h| h.expand(info, out).is_ok())
        }
        HashAlg::Sha384 => {
            hkdf::Hkdf::<Sha384>::from_prk(secret).is_ok_and(|h| h.expand(info, out).is_ok())
        }
    }
}

/// The next TLS 1.3 traffic secret after a KeyUpdate.
pub(crate) fn next_traffic_secret(hash: HashAlg, secret: &Secret) -> Option<Secret> {
    let mut out = [0u8; SECRET_MAX];
    let n = hash.len();
    expand_label(hash, secret.as_bytes(), b"traffic upd", &mut out[..n])
        .then(|| Secret::new(&out[..n]))
        .flatten()
}

fn p_hash<M: Mac + KeyInit + Clone>(secret: &[u8], label: &[u8], seed: &[u8], out: &mut [u8]) {
    let Ok(keyed) = <M as KeyInit>::new_from_slice(secret) else {
        return;
    };
    // A(1) = HMAC(secret, label + seed); A(i) = HMAC(secret, A(i-1)).
    let mut a = keyed.clone();
    a.update(label);
    a.update(seed);
    let mut a = a.finalize().into_bytes();
    let mut done = 0;
    while done < out.len() {
        let mut m = keyed.clone();
        m.update(&a);
        m.update(label);
        m.update(seed);
        let block = m.finalize().into_bytes();
        let take = block.len().min(out.len() - done);
        out[done..done + take].copy_from_slice(&block[..take]);
        done += take;
        let mut m = keyed.clone();
        m.update(&a);
        a = m.finalize().into_bytes();
    }
}

/// The TLS 1.2 PRF (RFC 5246 section 5) with the suite's hash.
pub(crate) fn prf(hash: HashAlg, secret: &[u8], label: &[u8], seed: &[u8], out: &mut [u8]) {
    match hash {
        HashAlg::Sha256 => p_hash::<Hmac<Sha256>>(secret, label, seed, out),
        HashAlg::Sha384 => p_hash::<Hmac<Sha384>>(secret, label, seed, out),
    }
}

enum Cipher {
    /// AES-GCM and ChaCha20-Poly1305, by ring: its assembly decrypts and authenticates in one
    /// pass, several times faster than the portable crates on the 16 KiB records that carry
    /// most wss bytes.
    Aead(Box<LessSafeKey>),
    Cbc(Box<CbcKey>),
}

/// How a record's nonce and additional data are made.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Framing {
    /// RFC 8446 5.2: nonce = iv xor seq; AAD = the record header.
    Tls13,
    /// RFC 5288: nonce = 4-byte implicit iv + 8-byte explicit nonce carried in the record.
    Tls12Gcm,
    /// RFC 7905: nonce = iv xor seq, no explicit part.
    Tls12ChaCha,
    /// RFC 5246 6.2.3.2: explicit IV, HMAC (RFC 7366: over the ciphertext).
    Tls12Cbc,
}

/// One direction's record protection: a cipher, its IV and the framing of its version.
pub(crate) struct RecordKey {
    cipher: Cipher,
    iv: [u8; 12],
    framing: Framing,
}

impl std::fmt::Debug for RecordKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RecordKey({:?})", self.framing)
    }
}

/// Where the plaintext lies in a record's body after decryption in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Opened {
    pub content_type: u8,
    pub start: usize,
    pub end: usize,
}

impl RecordKey {
    fn with(aead: AeadAlg, key: &[u8], iv: &[u8], framing: Framing) -> Option<RecordKey> {
        let alg = match aead {
            AeadAlg::Aes128Gcm => &AES_128_GCM,
            AeadAlg::Aes256Gcm => &AES_256_GCM,
            AeadAlg::ChaCha20Poly1305 => &CHACHA20_POLY1305,
            AeadAlg::Aes128Cbc(_) | AeadAlg::Aes256Cbc(_) => return None,
        };
        let cipher = Cipher::Aead(Box::new(LessSafeKey::new(UnboundKey::new(alg, key).ok()?)));
        let mut full = [0u8; 12];
        full.get_mut(..iv.len())?.copy_from_slice(iv);
        Some(RecordKey {
            cipher,
            iv: full,
            framing,
        })
    }

    /// TLS 1.3 traffic key and IV from a traffic secret (RFC 8446 section 7.3).
    pub(crate) fn tls13(suite: Suite, secret: &Secret) -> Option<RecordKey> {
        let (key, iv) = traffic_key_iv(suite, secret)?;
        RecordKey::with(
            suite.aead,
            &key[..suite.aead.key_len()],
            &iv,
            Framing::Tls13,
        )
    }

    /// TLS 1.2 keys of one side from the master secret's key block (RFC 5246 section 6.3).
    pub(crate) fn tls12(
        suite: Suite,
        master: &Secret,
        client_random: &[u8; 32],
        server_random: &[u8; 32],
        client: bool,
        encrypt_then_mac: bool,
    ) -> Option<RecordKey> {
        let kl = suite.aead.key_len();
        if let AeadAlg::Aes128Cbc(mac) | AeadAlg::Aes256Cbc(mac) = suite.aead {
            return cbc_key(
                suite,
                mac,
                master,
                client_random,
                server_random,
                client,
                encrypt_then_mac,
            );
        }
        let ivl = match suite.aead {
            AeadAlg::ChaCha20Poly1305 => 12,
            _ => 4,
        };
        let mut block = [0u8; 2 * (32 + 12)];
        let block = &mut block[..2 * (kl + ivl)];
        key_expansion(suite, master, client_random, server_random, block);
        // client_write_key, server_write_key, client_write_IV, server_write_IV (AEAD: no MAC keys).
        let (key, iv) = if client {
            (&block[..kl], &block[2 * kl..2 * kl + ivl])
        } else {
            (&block[kl..2 * kl], &block[2 * kl + ivl..])
        };
        let framing = match suite.aead {
            AeadAlg::ChaCha20Poly1305 => Framing::Tls12ChaCha,
            _ => Framing::Tls12Gcm,
        };
        RecordKey::with(suite.aead, key, iv, framing)
    }

    fn xor_nonce(&self, seq: u64) -> [u8; 12] {
        let mut n = self.iv;
        for (b, s) in n[4..].iter_mut().zip(seq.to_be_bytes()) {
            *b ^= s;
        }
        n
    }

    /// The smallest body a record of this key can have (an empty plaintext).
    pub(crate) fn min_body(&self) -> usize {
        match self.framing {
            Framing::Tls13 => TAG_LEN + 1,
            Framing::Tls12Gcm => TAG_LEN + 8,
            Framing::Tls12ChaCha => TAG_LEN,
            Framing::Tls12Cbc => match &self.cipher {
                Cipher::Cbc(c) => c.min_body(),
                _ => 32,
            },
        }
    }

    /// Decrypts `body` (the record after its 5-byte `header`) in place. On failure the body
    /// is unchanged, so a caller may try again with another sequence number or key. ring
    /// clears a body whose tag does not match (it authenticates while it decrypts), so the
    /// body is saved first; where no second try follows, [`open_once`](Self::open_once)
    /// spares that copy.
    pub(crate) fn open(&self, seq: u64, header: [u8; 5], body: &mut [u8]) -> Option<Opened> {
        if let Cipher::Cbc(_) = &self.cipher {
            // CBC checks the MAC before keeping the decryption, and undoes it on failure.
            return self.open_once(seq, header, body);
        }
        thread_local! {
            // Reused so that trial decryption allocates only once per thread; it holds at
            // most one record.
            static SAVED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        SAVED.with_borrow_mut(|saved| {
            saved.clear();
            saved.extend_from_slice(body);
            let opened = self.open_once(seq, header, body);
            if opened.is_none() {
                body.copy_from_slice(saved);
            }
            opened
        })
    }

    /// [`open`](Self::open) for a record that is given up if it does not decrypt: on failure
    /// the body's bytes are undefined.
    pub(crate) fn open_once(&self, seq: u64, header: [u8; 5], body: &mut [u8]) -> Option<Opened> {
        if let Cipher::Cbc(c) = &self.cipher {
            let (start, end) = c.open(seq, header, body)?;
            return Some(Opened {
                content_type: header[0],
                start,
                end,
            });
        }
        let len = body.len();
        let (nonce, start, aad_buf, aad_len) = match self.framing {
            Framing::Tls13 => {
                let mut aad = [0u8; 13];
                aad[..5].copy_from_slice(&header);
                (self.xor_nonce(seq), 0, aad, 5)
            }
            Framing::Tls12Gcm | Framing::Tls12ChaCha | Framing::Tls12Cbc => {
                let start = if self.framing == Framing::Tls12Gcm {
                    8
                } else {
                    0
                };
                let plain = len.checked_sub(start + TAG_LEN)?;
                let mut aad = [0u8; 13];
                aad[..8].copy_from_slice(&seq.to_be_bytes());
                aad[8..11].copy_from_slice(&header[..3]);
                aad[11..].copy_from_slice(&(plain as u16).to_be_bytes());
                let nonce = if start == 8 {
                    let mut n = self.iv;
                    n[4..].copy_from_slice(body.get(..8)?);
                    n
                } else {
                    self.xor_nonce(seq)
                };
                (nonce, start, aad, 13)
            }
        };
        let tag_at = len.checked_sub(TAG_LEN).filter(|&t| t >= start)?;
        let (msg, tag) = body.split_at_mut(tag_at);
        let msg = msg.get_mut(start..)?;
        let aad = &aad_buf[..aad_len];
        let Cipher::Aead(key) = &self.cipher else {
            return None;
        };
        let tag = Tag::try_from(&tag[..]).ok()?;
        key.open_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            tag,
            msg,
            0..,
        )
        .ok()?;
        if self.framing != Framing::Tls13 {
            return Some(Opened {
                content_type: header[0],
                start,
                end: tag_at,
            });
        }
        // TLSInnerPlaintext: content, the real type, then zero padding.
        let last = msg.iter().rposition(|&b| b != 0)?;
        Some(Opened {
            content_type: msg[last],
            start: 0,
            end: last,
        })
    }

    /// Encrypts a record (tests build conversations with it): returns header + body.
    #[cfg(test)]
    pub(crate) fn seal(&self, seq: u64, content_type: u8, plain: &[u8], pad: usize) -> Vec<u8> {
        if let Cipher::Cbc(c) = &self.cipher {
            return c.seal(seq, content_type, plain);
        }
        let mut body = Vec::new();
        let outer = if self.framing == Framing::Tls13 {
            23
        } else {
            content_type
        };
        let explicit = if self.framing == Framing::Tls12Gcm {
            // Explicit nonce: the sequence number, as OpenSSL does.
            body.extend_from_slice(&seq.to_be_bytes());
            8
        } else {
            0
        };
        body.extend_from_slice(plain);
        if self.framing == Framing::Tls13 {
            body.push(content_type);
            body.extend(std::iter::repeat_n(0, pad));
        }
        let total = body.len() + TAG_LEN;
        let header = [outer, 3, 3, (total >> 8) as u8, total as u8];
        let mut aad = Vec::new();
        let nonce = match self.framing {
            Framing::Tls13 => {
                aad.extend_from_slice(&header);
                self.xor_nonce(seq)
            }
            _ => {
                aad.extend_from_slice(&seq.to_be_bytes());
                aad.extend_from_slice(&header[..3]);
                aad.extend_from_slice(&((body.len() - explicit) as u16).to_be_bytes());
                if explicit == 8 {
                    let mut n = self.iv;
                    n[4..].copy_from_slice(&seq.to_be_bytes());
                    n
                } else {
                    self.xor_nonce(seq)
                }
            }
        };
        let msg = &mut body[explicit..];
        if let Cipher::Aead(key) = &self.cipher
            && let Ok(tag) = key.seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad),
                msg,
            )
        {
            body.extend_from_slice(tag.as_ref());
        }
        let mut rec = header.to_vec();
        rec.extend_from_slice(&body);
        rec
    }
}

/// RFC 5246 6.3: the key block, PRF(master, "key expansion", server_random + client_random).
fn key_expansion(
    suite: Suite,
    master: &Secret,
    client_random: &[u8; 32],
    server_random: &[u8; 32],
    block: &mut [u8],
) {
    let mut seed = [0u8; 64];
    seed[..32].copy_from_slice(server_random);
    seed[32..].copy_from_slice(client_random);
    prf(
        suite.hash,
        master.as_bytes(),
        b"key expansion",
        &seed,
        block,
    );
}

/// TLS 1.2 CBC: the key block holds the MAC keys, then the cipher keys (no IVs: each record
/// carries its own).
fn cbc_key(
    suite: Suite,
    mac: MacAlg,
    master: &Secret,
    client_random: &[u8; 32],
    server_random: &[u8; 32],
    client: bool,
    etm: bool,
) -> Option<RecordKey> {
    let (kl, ml) = (suite.aead.key_len(), mac.len());
    let mut block = [0u8; 2 * (48 + 32)];
    let block = &mut block[..2 * (ml + kl)];
    key_expansion(suite, master, client_random, server_random, block);
    let (mac_key, key) = if client {
        (&block[..ml], &block[2 * ml..2 * ml + kl])
    } else {
        (&block[ml..2 * ml], &block[2 * ml + kl..])
    };
    Some(RecordKey {
        cipher: Cipher::Cbc(Box::new(CbcKey::new(key, mac, mac_key, etm)?)),
        iv: [0; 12],
        framing: Framing::Tls12Cbc,
    })
}

/// TLS 1.3 "key" and "iv" of a traffic secret.
pub(crate) fn traffic_key_iv(suite: Suite, secret: &Secret) -> Option<([u8; 32], [u8; 12])> {
    let mut key = [0u8; 32];
    let mut iv = [0u8; 12];
    let kl = suite.aead.key_len();
    (expand_label(suite.hash, secret.as_bytes(), b"key", &mut key[..kl])
        && expand_label(suite.hash, secret.as_bytes(), b"iv", &mut iv))
    .then_some((key, iv))
}
