//! The secrets of a run: NSS key log text from files (followed as they grow), the environment
//! or pcapng Decryption Secrets Blocks, shared by all connections and threads.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::crypto::Secret;

/// A key log line is at most ~ 13 + 1 + 64 + 1 + 96 characters plus a label; anything much
/// longer is not one, and is not buffered.
const LINE_MAX: usize = 1024;
/// How much of a followed file one refresh reads at most: the rest waits for the next call.
const READ_MAX: u64 = 16 << 20;

/// The secrets known for one client random.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Secrets {
    pub master: Option<Secret>,
    pub client_hs: Option<Secret>,
    pub server_hs: Option<Secret>,
    pub client_app: Option<Secret>,
    pub client_early: Option<Secret>,
    pub server_app: Option<Secret>,
}

/// What one read of key log text held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyLogCounts {
    /// Lines with a secret wsnoop uses.
    pub secrets: usize,
    /// Lines that are neither a secret, a comment, blank nor a known label wsnoop ignores.
    pub skipped_lines: usize,
}

impl std::ops::AddAssign for KeyLogCounts {
    fn add_assign(&mut self, o: KeyLogCounts) {
        self.secrets += o.secrets;
        self.skipped_lines += o.skipped_lines;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyLogError {
    /// The message names the file and the system's reason, never a line of it.
    #[error("cannot read key log {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Text not yet ended by a newline, kept for the next read.
#[derive(Default)]
struct Tail {
    bytes: Vec<u8>,
    /// The current line grew over LINE_MAX: drop it up to its newline.
    overlong: bool,
}

struct Followed {
    path: PathBuf,
    offset: u64,
    tail: Tail,
}

#[derive(Default)]
struct Inner {
    map: HashMap<[u8; 32], Secrets>,
    tail: Tail,
    files: Vec<Followed>,
}

/// The secrets of a run. `Send + Sync`; Debug shows counts only.
#[derive(Default)]
pub struct KeyStore {
    inner: Mutex<Inner>,
    /// Bumped whenever a secret is added: connections waiting for keys look again only then.
    generation: AtomicU64,
    growing: AtomicBool,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("client_randoms", &self.len())
            .field("generation", &self.generation())
            .field("growing", &self.is_growing())
            .finish()
    }
}

impl KeyStore {
    pub fn new() -> KeyStore {
        KeyStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves a map that is still consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds NSS key log text; a line split across two calls still parses.
    pub fn add(&self, text: &[u8]) -> KeyLogCounts {
        let mut inner = self.lock();
        let Inner { map, tail, .. } = &mut *inner;
        let (counts, added) = feed(map, tail, text);
        drop(inner);
        if added {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        counts
    }

    /// Loads a file now and remembers it, so that [`refresh`](Self::refresh) reads what is
    /// appended to it later.
    pub fn follow(&self, path: &Path) -> Result<KeyLogCounts, KeyLogError> {
        let mut f = Followed {
            path: path.to_path_buf(),
            offset: 0,
            tail: Tail::default(),
        };
        let mut inner = self.lock();
        let (counts, added) = read_more(&mut inner.map, &mut f)?;
        inner.files.push(f);
        drop(inner);
        if added {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        Ok(counts)
    }

    /// Reads what followed files gained since the last call (one `stat` per file when nothing
    /// changed). True if new secrets arrived. A file that cannot be read now is tried again
    /// next time.
    pub fn refresh(&self) -> bool {
        let mut inner = self.lock();
        let Inner { map, files, .. } = &mut *inner;
        let mut any = false;
        for f in files.iter_mut() {
            if let Ok((_, added)) = read_more(map, f) {
                any |= added;
            }
        }
        drop(inner);
        if any {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        any
    }

    /// Whether keys may still arrive (a live run following a key log).
    pub fn set_growing(&self, growing: bool) {
        self.growing.store(growing, Ordering::Release);
    }

    pub fn is_growing(&self) -> bool {
        self.growing.load(Ordering::Acquire)
    }

    /// Changes whenever secrets are added.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Client randoms known.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub(crate) fn lookup(&self, client_random: &[u8; 32]) -> Option<Secrets> {
        self.lock().map.get(client_random).copied()
    }
}

fn read_more(
    map: &mut HashMap<[u8; 32], Secrets>,
    f: &mut Followed,
) -> Result<(KeyLogCounts, bool), KeyLogError> {
    let err = |source| KeyLogError::Read {
        path: f.path.display().to_string(),
        source,
    };
    // A stat first: the usual refresh finds nothing new and opens nothing.
    let len = std::fs::metadata(&f.path).map_err(err)?.len();
    if len < f.offset {
        // Truncated or replaced: read it again from the start.
        f.offset = 0;
        f.tail = Tail::default();
    }
    if len == f.offset {
        return Ok((KeyLogCounts::default(), false));
    }
    let mut file = std::fs::File::open(&f.path).map_err(err)?;
    file.seek(SeekFrom::Start(f.offset)).map_err(err)?;
    let want = (len - f.offset).min(READ_MAX);
    let mut buf = Vec::with_capacity(want as usize);
    file.take(want).read_to_end(&mut buf).map_err(err)?;
    f.offset += buf.len() as u64;
    Ok(feed(map, &mut f.tail, &buf))
}

/// Parses complete lines of `tail` + `text`, keeps the unfinished last one in `tail`.
fn feed(
    map: &mut HashMap<[u8; 32], Secrets>,
    tail: &mut Tail,
    text: &[u8],
) -> (KeyLogCounts, bool) {
    let mut counts = KeyLogCounts::default();
    let mut added = false;
    let mut rest = text;
    while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
        let (part, after) = rest.split_at(nl);
        rest = after.get(1..).unwrap_or(&[]);
        if tail.overlong {
            tail.overlong = false;
            counts.skipped_lines += 1;
            continue;
        }
        let line: &[u8] = if tail.bytes.is_empty() {
            part
        } else if tail.bytes.len() + part.len() > LINE_MAX {
            tail.bytes.clear();
            counts.skipped_lines += 1;
            continue;
        } else {
            tail.bytes.extend_from_slice(part);
            &tail.bytes
        };
        match parse_line(line) {
            Line::Secret(random, slot, secret) => {
                counts.secrets += 1;
                let entry = map.entry(random).or_default();
                let field = match slot {
                    Slot::Master => &mut entry.master,
                    Slot::ClientHs => &mut entry.client_hs,
                    Slot::ServerHs => &mut entry.server_hs,
                    Slot::ClientApp => &mut entry.client_app,
                    Slot::ClientEarly => &mut entry.client_early,
                    Slot::ServerApp => &mut entry.server_app,
                };
                if *field != Some(secret) {
                    *field = Some(secret);
                    added = true;
                }
            }
            Line::Skipped => counts.skipped_lines += 1,
            Line::Ignored => {}
        }
        tail.bytes.clear();
    }
    if !rest.is_empty() && !tail.overlong {
        if tail.bytes.len() + rest.len() > LINE_MAX {
            tail.bytes.clear();
            tail.overlong = true;
        } else {
            tail.bytes.extend_from_slice(rest);
        }
    }
    (counts, added)
}

enum Slot {
    Master,
    ClientHs,
    ServerHs,
    ClientApp,
    ClientEarly,
    ServerApp,
}

enum Line {
    Secret([u8; 32], Slot, Secret),
    /// Malformed, or a label nobody knows.
    Skipped,
    /// A comment, a blank line, or a secret wsnoop has no use for.
    Ignored,
}

fn parse_line(line: &[u8]) -> Line {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = line.trim_ascii();
    if line.is_empty() || line.first() == Some(&b'#') {
        return Line::Ignored;
    }
    let mut parts = line
        .split(|b| b.is_ascii_whitespace())
        .filter(|p| !p.is_empty());
    let (Some(label), Some(random), Some(secret), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Line::Skipped;
    };
    let slot = match label {
        b"CLIENT_RANDOM" => Slot::Master,
        b"CLIENT_HANDSHAKE_TRAFFIC_SECRET" => Slot::ClientHs,
        b"SERVER_HANDSHAKE_TRAFFIC_SECRET" => Slot::ServerHs,
        b"CLIENT_TRAFFIC_SECRET_0" => Slot::ClientApp,
        b"CLIENT_EARLY_TRAFFIC_SECRET" => Slot::ClientEarly,
        b"SERVER_TRAFFIC_SECRET_0" => Slot::ServerApp,
        b"EXPORTER_SECRET" | b"EARLY_EXPORTER_SECRET" => {
            return Line::Ignored;
        }
        _ => return Line::Skipped,
    };
    let mut r = [0u8; 32];
    let mut s = [0u8; 48];
    if !unhex(random, &mut r) {
        return Line::Skipped;
    }
    let n = secret.len() / 2;
    let ok_len = match slot {
        Slot::Master => n == 48,
        _ => n == 32 || n == 48,
    };
    if !ok_len || !unhex(secret, &mut s[..n]) {
        return Line::Skipped;
    }
    match Secret::new(&s[..n]) {
        Some(secret) => Line::Secret(r, slot, secret),
        None => Line::Skipped,
    }
}

fn unhex(hex: &[u8], out: &mut [u8]) -> bool {
    if hex.len() != out.len() * 2 {
        return false;
    }
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let (Some(hi), Some(lo)) = (nibble(pair[0]), nibble(pair[1])) else {
            return false;
        };
        *o = hi << 4 | lo;
    }
    true
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}
