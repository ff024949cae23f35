//! TLS 1.2 CBC suites (RFC 5246 6.2.3.2): AES-CBC with an explicit IV per record and HMAC,
//! MAC-then-encrypt or, when negotiated, encrypt-then-MAC (RFC 7366). A passive reader checks
//! the MAC only to tell a right key and sequence number from a wrong one, so nothing here needs
//! to be constant-time.

use aes::cipher::{BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use aes::{Aes128, Aes256, Block};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Sha256, Sha384};

const BLOCK: usize = 16;
/// Blocks decrypted per batch (the AES backends work on several at once).
const BATCH: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MacAlg {
    Sha1,
    Sha256,
    Sha384,
}

impl MacAlg {
    pub(crate) fn len(self) -> usize {
        match self {
            MacAlg::Sha1 => 20,
            MacAlg::Sha256 => 32,
            MacAlg::Sha384 => 48,
        }
    }
}

enum Aes {
    A128(Box<Aes128>),
    A256(Box<Aes256>),
}

impl Aes {
    fn decrypt(&self, blocks: &mut [Block]) {
        match self {
            Aes::A128(c) => c.decrypt_blocks(blocks),
            Aes::A256(c) => c.decrypt_blocks(blocks),
        }
    }

    fn encrypt(&self, block: &mut Block) {
        match self {
            Aes::A128(c) => c.encrypt_block(block),
            Aes::A256(c) => c.encrypt_block(block),
        }
    }
}

/// One side's CBC keys. Debug shows nothing of them.
pub(crate) struct CbcKey {
    aes: Aes,
    mac: MacAlg,
    mac_key: [u8; 48],
    etm: bool,
}

impl std::fmt::Debug for CbcKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CbcKey({:?}, etm {})", self.mac, self.etm)
    }
}

impl CbcKey {
    pub(crate) fn new(key: &[u8], mac: MacAlg, mac_key: &[u8], etm: bool) -> Option<CbcKey> {
        let aes = match key.len() {
            16 => Aes::A128(Box::new(Aes128::new_from_slice(key).ok()?)),
            32 => Aes::A256(Box::new(Aes256::new_from_slice(key).ok()?)),
            _ => return None,
        };
        let mut k = [0u8; 48];
        k.get_mut(..mac_key.len())?.copy_from_slice(mac_key);
        Some(CbcKey {
            aes,
            mac,
            mac_key: k,
            etm,
        })
    }

    /// The smallest body: an IV, one block, and (encrypt-then-MAC) the MAC.
    pub(crate) fn min_body(&self) -> usize {
        2 * BLOCK + if self.etm { self.mac.len() } else { 0 }
    }

    fn hmac(&self, seq: u64, header: &[u8; 5], len: usize, parts: &[&[u8]]) -> [u8; 48] {
        let mut pseudo = [0u8; 13];
        pseudo[..8].copy_from_slice(&seq.to_be_bytes());
        pseudo[8..11].copy_from_slice(&header[..3]);
        pseudo[11..].copy_from_slice(&(len as u16).to_be_bytes());
        let key = &self.mac_key[..self.mac.len()];
        let mut out = [0u8; 48];
        fn run<M: Mac + KeyInit>(key: &[u8], pseudo: &[u8], parts: &[&[u8]], out: &mut [u8]) {
            if let Ok(mut m) = <M as KeyInit>::new_from_slice(key) {
                m.update(pseudo);
                for p in parts {
                    m.update(p);
                }
                let tag = m.finalize().into_bytes();
                let n = tag.len().min(out.len());
                out[..n].copy_from_slice(&tag[..n]);
            }
        }
        match self.mac {
            MacAlg::Sha1 => run::<Hmac<Sha1>>(key, &pseudo, parts, &mut out),
            MacAlg::Sha256 => run::<Hmac<Sha256>>(key, &pseudo, parts, &mut out),
            MacAlg::Sha384 => run::<Hmac<Sha384>>(key, &pseudo, parts, &mut out),
        }
        out
    }

    /// Decrypts `body` (IV + ciphertext [+ MAC]) in place; on failure it is left as it was,
    /// so that another sequence number may be tried. Returns the plaintext's range.
    pub(crate) fn open(
        &self,
        seq: u64,
        header: [u8; 5],
        body: &mut [u8],
    ) -> Option<(usize, usize)> {
        let ml = self.mac.len();
        if self.etm {
            let ct_end = body.len().checked_sub(ml)?;
            let (data, mac) = body.split_at_mut(ct_end);
            if data.len() < 2 * BLOCK || !data.len().is_multiple_of(BLOCK) {
                return None;
            }
            let want = self.hmac(seq, &header, data.len(), &[data]);
            if want.get(..ml)? != &mac[..] {
                return None;
            }
            cbc_decrypt(&self.aes, data);
            let pad = usize::from(*data.last()?);
            let end = data.len().checked_sub(pad + 1).filter(|&e| e >= BLOCK)?;
            return Some((BLOCK, end));
        }
        if body.len() < 2 * BLOCK || !body.len().is_multiple_of(BLOCK) {
            return None;
        }
        cbc_decrypt(&self.aes, body);
        let ok = (|| {
            let pad = usize::from(*body.last()?);
            let mac_end = body.len().checked_sub(pad + 1)?;
            if body
                .get(mac_end..body.len() - 1)?
                .iter()
                .any(|&b| usize::from(b) != pad)
            {
                return None;
            }
            let end = mac_end.checked_sub(ml).filter(|&e| e >= BLOCK)?;
            let plain = body.get(BLOCK..end)?;
            let want = self.hmac(seq, &header, plain.len(), &[plain]);
            (want.get(..ml)? == body.get(end..mac_end)?).then_some((BLOCK, end))
        })();
        if ok.is_none() {
            // Put the ciphertext back: CBC encryption with the same IV gives it again.
            cbc_encrypt(&self.aes, body);
        }
        ok
    }

    /// Encrypts a record (tests): header + IV + ciphertext (+ MAC).
    #[cfg(test)]
    pub(crate) fn seal(&self, seq: u64, content_type: u8, plain: &[u8]) -> Vec<u8> {
        let ml = self.mac.len();
        let iv = [seq as u8 ^ 0x5c; BLOCK];
        let mut body = iv.to_vec();
        body.extend_from_slice(plain);
        let mut header = [content_type, 3, 3, 0, 0];
        if !self.etm {
            let mac = self.hmac(seq, &header, plain.len(), &[plain]);
            body.extend_from_slice(&mac[..ml]);
        }
        let pad = BLOCK - 1 - (body.len() - BLOCK) % BLOCK;
        body.extend(std::iter::repeat_n(pad as u8, pad + 1));
        cbc_encrypt(&self.aes, &mut body);
        if self.etm {
            let mac = self.hmac(seq, &header, body.len(), &[&body]);
            body.extend_from_slice(&mac[..ml]);
        }
        header[3..].copy_from_slice(&(body.len() as u16).to_be_bytes());
        let mut rec = header.to_vec();
        rec.extend(body);
        rec
    }
}

/// In place: `data` is IV + ciphertext blocks; afterwards IV + plaintext blocks.
fn cbc_decrypt(aes: &Aes, data: &mut [u8]) {
    let mut prev = [0u8; BLOCK];
    prev.copy_from_slice(&data[..BLOCK]);
    let mut batch = [Block::default(); BATCH];
    for chunk in data[BLOCK..].chunks_mut(BLOCK * BATCH) {
        let n = chunk.len() / BLOCK;
        for (b, c) in batch.iter_mut().zip(chunk.chunks_exact(BLOCK)) {
            b.copy_from_slice(c);
        }
        aes.decrypt(&mut batch[..n]);
        for (i, c) in chunk.chunks_exact_mut(BLOCK).enumerate() {
            let mut next = [0u8; BLOCK];
            next.copy_from_slice(c);
            for ((o, d), p) in c.iter_mut().zip(batch[i].iter()).zip(prev.iter()) {
                *o = d ^ p;
            }
            prev = next;
        }
    }
}

/// In place: `data` is IV + plaintext blocks; afterwards IV + ciphertext blocks.
fn cbc_encrypt(aes: &Aes, data: &mut [u8]) {
    let mut prev = Block::default();
    prev.copy_from_slice(&data[..BLOCK]);
    for c in data[BLOCK..].chunks_exact_mut(BLOCK) {
        for (p, x) in prev.iter_mut().zip(c.iter()) {
            *p ^= x;
        }
        aes.encrypt(&mut prev);
        c.copy_from_slice(&prev);
    }
}
