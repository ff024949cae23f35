//! The handshake messages wsnoop reads (ClientHello, ServerHello, EncryptedExtensions,
//! KeyUpdate) and the reassembly of handshake messages across records.

/// A hello (or any message kept whole) longer than this is malformed, not an allocation.
pub(crate) const KEPT_MAX: usize = 64 * 1024;
const SNI_MAX: usize = 255;
const ALPN_MAX: usize = 8;

pub(crate) const CLIENT_HELLO: u8 = 1;
pub(crate) const SERVER_HELLO: u8 = 2;
pub(crate) const ENCRYPTED_EXTENSIONS: u8 = 8;
pub(crate) const FINISHED: u8 = 20;
pub(crate) const END_OF_EARLY_DATA: u8 = 5;
pub(crate) const KEY_UPDATE: u8 = 24;

/// RFC 8446 4.1.3: the ServerHello random that makes it a HelloRetryRequest.
const HRR_RANDOM: [u8; 32] = [
    0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
    0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
];

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }
    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
    }
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
    fn random(&mut self) -> Option<[u8; 32]> {
        self.take(32)?.try_into().ok()
    }
}

#[derive(Debug, Default)]
pub(crate) struct ClientHello {
    pub random: [u8; 32],
    pub sni: Option<String>,
    pub alpn: Vec<String>,
    pub early_data: bool,
}

#[derive(Debug, Default)]
pub(crate) struct ServerHello {
    pub random: [u8; 32],
    pub version: u16,
    pub cipher: u16,
    pub alpn: Option<String>,
    pub retry: bool,
    /// RFC 7366 encrypt_then_mac (changes only the CBC suites).
    pub encrypt_then_mac: bool,
}

fn lossy(b: &[u8], max: usize) -> String {
    String::from_utf8_lossy(b.get(..max).unwrap_or(b)).into_owned()
}

fn alpn_list(ext: &[u8], max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut r = Reader(ext);
    if let Some(list) = r.vec16() {
        let mut l = Reader(list);
        while let Some(p) = l.vec8() {
            if out.len() >= max {
                break;
            }
            out.push(lossy(p, SNI_MAX));
        }
    }
    out
}

/// Calls `f` with each extension's type and body.
fn extensions<'a>(r: &mut Reader<'a>, mut f: impl FnMut(u16, &'a [u8])) -> Option<()> {
    if r.0.is_empty() {
        return Some(());
    }
    let mut exts = Reader(r.vec16()?);
    while !exts.0.is_empty() {
        let typ = exts.u16()?;
        let body = exts.vec16()?;
        f(typ, body);
    }
    Some(())
}

pub(crate) fn client_hello(body: &[u8]) -> Option<ClientHello> {
    let mut r = Reader(body);
    r.u16()?;
    let mut ch = ClientHello {
        random: r.random()?,
        ..ClientHello::default()
    };
    r.vec8()?; // session id
    r.vec16()?; // cipher suites
    r.vec8()?; // compression methods
    extensions(&mut r, |typ, ext| match typ {
        0 => {
            // server_name: list<2> of (type, host_name<2>); the first host name counts.
            let mut e = Reader(ext);
            if let Some(list) = e.vec16() {
                let mut l = Reader(list);
                if let (Some(0), Some(name)) = (l.u8(), l.vec16()) {
                    ch.sni = Some(lossy(name, SNI_MAX));
                }
            }
        }
        16 => ch.alpn = alpn_list(ext, ALPN_MAX),
        42 => ch.early_data = true,
        _ => {}
    })?;
    Some(ch)
}

pub(crate) fn server_hello(body: &[u8]) -> Option<ServerHello> {
    let mut r = Reader(body);
    let legacy = r.u16()?;
    let random = r.random()?;
    r.vec8()?;
    let cipher = r.u16()?;
    r.u8()?;
    let mut sh = ServerHello {
        random,
        version: legacy,
        cipher,
        alpn: None,
        retry: random == HRR_RANDOM,
        encrypt_then_mac: false,
    };
    extensions(&mut r, |typ, ext| match typ {
        43 => {
            if let Some(v) = Reader(ext).u16() {
                sh.version = v;
            }
        }
        16 => sh.alpn = alpn_list(ext, 1).into_iter().next(),
        22 => sh.encrypt_then_mac = true,
        _ => {}
    })?;
    Some(sh)
}

/// The negotiated ALPN of a TLS 1.3 EncryptedExtensions.
pub(crate) fn encrypted_extensions_alpn(body: &[u8]) -> Option<String> {
    let mut alpn = None;
    extensions(&mut Reader(body), |typ, ext| {
        if typ == 16 {
            alpn = alpn_list(ext, 1).into_iter().next();
        }
    })?;
    alpn
}

/// Handshake messages reassembled from record payloads. Only the messages wsnoop reads are
/// kept whole (bounded); the others (certificates, tickets) are counted through.
#[derive(Default)]
pub(crate) struct HsReader {
    head: [u8; 4],
    head_len: usize,
    need: usize,
    kept: Vec<u8>,
    keep: bool,
}

/// A handshake message kept whole was longer than [`KEPT_MAX`].
#[derive(Debug)]
pub(crate) struct TooLong;

impl HsReader {
    pub(crate) fn reset(&mut self) {
        self.head_len = 0;
        self.need = 0;
        self.kept.clear();
    }

    /// Feeds one record's handshake payload; `f` gets each complete message (type and body;
    /// the body is empty for a message not kept).
    pub(crate) fn feed(
        &mut self,
        mut data: &[u8],
        f: &mut dyn FnMut(u8, &[u8]),
    ) -> Result<(), TooLong> {
        while !data.is_empty() {
            if self.head_len < 4 {
                let take = (4 - self.head_len).min(data.len());
                self.head[self.head_len..self.head_len + take].copy_from_slice(&data[..take]);
                self.head_len += take;
                data = &data[take..];
                if self.head_len < 4 {
                    return Ok(());
                }
                let [typ, a, b, c] = self.head;
                self.need = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
                self.keep = matches!(
                    typ,
                    CLIENT_HELLO | SERVER_HELLO | ENCRYPTED_EXTENSIONS | KEY_UPDATE
                );
                if self.keep && self.need > KEPT_MAX {
                    self.reset();
                    return Err(TooLong);
                }
                self.kept.clear();
            }
            let take = self.need.min(data.len());
            if self.keep {
                self.kept.extend_from_slice(&data[..take]);
            }
            self.need -= take;
            data = &data[take..];
            if self.need == 0 {
                f(self.head[0], &self.kept);
                self.head_len = 0;
                self.kept.clear();
            }
        }
        Ok(())
    }
}
