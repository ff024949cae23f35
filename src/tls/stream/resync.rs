//! After a capture gap: the records the gap touched are lost, record sequence numbers keep
//! counting, and the next record boundary is found by trial decryption over a bounded window
//! of sequence numbers (a candidate header must be plausible; the tag decides).

use super::{
    CIPHER12_MAX, HEADER, HELD_GAPS_MAX, Out, Phase, TRIAL_MAX, TlsStream, Window, record_len,
    split_record,
};
use crate::event::Direction;
use crate::tls::crypto::RecordKey;
use crate::tls::{APPLICATION_DATA, CHANGE_CIPHER_SPEC, KeyStore};

impl TlsStream {
    /// A capture gap of `lost` bytes in `dir`.
    pub(super) fn cut(&mut self, dir: Direction, lost: u64, out: Out<'_>) {
        let tls13 = self.tls13;
        let limit = self.limit(dir);
        let d = &mut self.dirs[dir];
        if lost == 0 {
            return;
        }
        if d.holding {
            if d.held_gaps.len() < HELD_GAPS_MAX {
                d.held_gaps.push((d.held.len(), lost));
            } else {
                self.give_up_held(dir, out);
                self.dirs[dir].lost += lost;
            }
            return;
        }
        d.lost += lost;
        if d.phase == Phase::Dead {
            return;
        }
        let was_early = d.phase == Phase::Early13;
        if was_early {
            // The rest of the 0-RTT data goes with the gap; later records are judged with the
            // handshake key, whose first record is the client's Finished (seq 0).
            d.phase = Phase::Handshake13;
            d.key = None;
            d.seq = 0;
        }
        if tls13 && self.server_hello && d.phase == Phase::Clear {
            // After a TLS 1.3 ServerHello every record but a ChangeCipherSpec is encrypted:
            // the ones after the gap are judged with the handshake key.
            d.phase = Phase::Handshake13;
            d.key = None;
        }
        // The handshake messages are out of step now: the Finished may go unseen.
        d.hs_desync = d.phase == Phase::Handshake13;
        d.hs.reset();
        let min_total = HEADER as u64 + d.key.as_ref().map_or(1, |k| k.min_body()) as u64;
        let max_total = (HEADER + limit) as u64;
        let avg = (d.record_bytes / d.records.max(1)).max(min_total);
        let rest = if d.skip > 0 {
            let skip = d.skip as u64;
            if lost < skip {
                d.skip -= lost as usize;
                return;
            }
            d.skip = 0;
            lost - skip
        } else if let Some(w) = &mut d.resync {
            // Still looking: what was gathered before this gap is not contiguous with what follows.
            d.lost += d.rec.len() as u64;
            d.rec.clear();
            w.lo += lost.div_ceil(max_total);
            w.hi += lost.div_ceil(min_total) + 1;
            w.est += lost / avg;
            w.rest += lost;
            return;
        } else if d.rec.len() >= HEADER {
            let total = HEADER + record_len(&d.rec);
            let rem = (total - d.rec.len()) as u64;
            let typ = d.rec.first().copied().unwrap_or(0);
            let counted = match d.phase {
                Phase::Handshake13 | Phase::App => {
                    typ != CHANGE_CIPHER_SPEC && (!tls13 || typ == APPLICATION_DATA)
                }
                _ => false,
            };
            if counted && !d.app_search && !was_early {
                d.seq += 1;
            }
            d.lost += d.rec.len() as u64;
            d.rec.clear();
            if lost < rem {
                d.skip = (rem - lost) as usize;
                return;
            }
            lost - rem
        } else {
            let r = lost + d.rec.len() as u64;
            d.lost += d.rec.len() as u64;
            d.rec.clear();
            r
        };
        if rest == 0 {
            return;
        }
        let base = d.seq;
        d.resync = Some(Window {
            lo: if was_early {
                0
            } else {
                base + rest.div_ceil(max_total)
            },
            hi: base + rest.div_ceil(min_total) + 1,
            est: if was_early { 0 } else { base + rest / avg },
            rest,
        });
    }

    /// Looks for the next record boundary after a gap; returns how much of `input` it took.
    pub(super) fn resync_feed(
        &mut self,
        dir: Direction,
        input: &[u8],
        keys: &KeyStore,
        out: Out<'_>,
    ) -> usize {
        let limit = self.limit(dir);
        let phase = self.dirs[dir].phase;
        let enc = matches!(phase, Phase::Handshake13 | Phase::App);
        let tls13 = self.tls13;
        if enc {
            // A key is needed to judge candidates; without one, the direction is lost.
            if !self.ensure_key(dir, keys, out) {
                if self.dirs[dir].holding {
                    // Held from here on: replayed once keys come, resynchronising then.
                    self.hold_bytes(dir, input, out);
                } else {
                    self.dirs[dir].lost += input.len() as u64;
                }
                return input.len();
            }
        }
        let d = &mut self.dirs[dir];
        if d.rec.capacity() == 0 {
            d.rec.reserve_exact(HEADER + CIPHER12_MAX);
        }
        let room = (HEADER + limit).saturating_sub(d.rec.len());
        let take = room.min(input.len());
        d.rec.extend_from_slice(&input[..take]);
        let want_type = if enc && tls13 {
            Some(APPLICATION_DATA)
        } else {
            None
        };
        loop {
            let d = &mut self.dirs[dir];
            let min_body = d.key.as_ref().map_or(0, |k| k.min_body());
            let start = (0..d.rec.len())
                .find(|&i| header_prefix_plausible(&d.rec[i..], limit, want_type, enc, min_body))
                .unwrap_or(d.rec.len());
            if start > 0 {
                d.lost += start as u64;
                d.rec.drain(..start);
            }
            if d.rec.len() < HEADER {
                return take;
            }
            let total = HEADER + record_len(&d.rec);
            if d.rec.len() < total {
                return take;
            }
            d.spare.clear();
            d.spare
                .extend_from_slice(d.rec.get(total..).unwrap_or_default());
            d.rec.truncate(total);
            if self.trial(dir, keys, out) {
                let d = &mut self.dirs[dir];
                d.resync = None;
                d.rec.clear();
                let spare = std::mem::take(&mut d.spare);
                self.feed(dir, &spare, keys, out);
                let d = &mut self.dirs[dir];
                if d.spare.capacity() == 0 {
                    d.spare = spare;
                    d.spare.clear();
                }
                return take;
            }
            let d = &mut self.dirs[dir];
            let spare = std::mem::take(&mut d.spare);
            d.rec.extend_from_slice(&spare);
            d.spare = spare;
            d.rec.drain(..1);
            d.lost += 1;
        }
    }

    /// Tries the candidate record in `rec` at the sequence numbers of the resync window; on
    /// success it is processed and true returned.
    fn trial(&mut self, dir: Direction, keys: &KeyStore, out: Out<'_>) -> bool {
        let d = &mut self.dirs[dir];
        let Some(w) = d.resync else {
            return false;
        };
        if d.phase == Phase::Clear {
            // No key to judge with: the first plausible header is taken.
            self.record(dir, keys, out);
            return true;
        }
        let Some(key) = &d.key else {
            return false;
        };
        let Some((header, body)) = split_record(&mut d.rec) else {
            return false;
        };
        let lo = w.lo.max(d.seq);
        let hi = w.hi.max(lo);
        let est = w.est.clamp(lo, hi);
        // Outward from the estimate: est, est+1, est-1, ...
        let mut found = None;
        for i in 0..TRIAL_MAX.saturating_mul(2) {
            let cand = if i % 2 == 0 {
                est.checked_add(i / 2)
            } else {
                est.checked_sub(i / 2 + 1)
            };
            let Some(seq) = cand.filter(|s| (lo..=hi).contains(s)) else {
                if (est + i / 2 > hi) && (est < lo + i / 2 + 1) {
                    break;
                }
                continue;
            };
            if let Some(o) = key.open(seq, header, body) {
                found = Some((seq, o));
                break;
            }
        }
        if let Some((seq, o)) = found {
            d.seq = seq;
            if d.app_search {
                d.app_search = false;
                d.phase = Phase::App;
            }
            self.opened(dir, o, out);
            return true;
        }
        // TLS 1.3 handshake phase: the gap may have taken the Finished; try the application key.
        if d.phase == Phase::Handshake13 && !d.app_search {
            let span = w.rest.div_ceil(HEADER as u64 + 17) + 1;
            return self.try_app_key(dir, span.min(TRIAL_MAX), out);
        }
        false
    }

    /// TLS 1.3, handshake phase after a gap: the record in `rec` may be the first ones under
    /// the application key (the Finished lost, or cut so that its message was not seen). On
    /// success the direction switches to it and the record is processed.
    pub(super) fn try_app_key(&mut self, dir: Direction, max_seq: u64, out: Out<'_>) -> bool {
        let client = dir == Direction::ClientToServer;
        let app = self
            .secrets
            .and_then(|s| if client { s.client_app } else { s.server_app });
        let (Some(suite), Some(app)) = (self.suite, app) else {
            return false;
        };
        let Some(k) = RecordKey::tls13(suite, &app) else {
            return false;
        };
        let d = &mut self.dirs[dir];
        let Some((header, body)) = split_record(&mut d.rec) else {
            return false;
        };
        for seq in 0..=max_seq {
            if let Some(o) = k.open(seq, header, body) {
                d.phase = Phase::App;
                d.secret = Some(app);
                d.key = Some(k);
                d.seq = seq;
                d.hs_desync = false;
                // Keys change at a message boundary: what was half-read belonged to the handshake.
                d.hs.reset();
                self.opened(dir, o, out);
                return true;
            }
        }
        false
    }
}

/// While resynchronising: whether the bytes at hand may start a record (checks what is there
/// of the header). Encrypted phases want version 3.3 and room for a tag.
fn header_prefix_plausible(
    h: &[u8],
    limit: usize,
    want: Option<u8>,
    enc: bool,
    min_body: usize,
) -> bool {
    if let Some(&typ) = h.first() {
        let ok = if enc {
            want.map_or((21..=23).contains(&typ), |w| w == typ)
        } else {
            (20..=23).contains(&typ)
        };
        if !ok {
            return false;
        }
    }
    if h.get(1).is_some_and(|&m| m != 3) {
        return false;
    }
    if let Some(&minor) = h.get(2)
        && (if enc { minor != 3 } else { minor > 3 })
    {
        return false;
    }
    if h.len() >= HEADER {
        let len = record_len(h);
        return len <= limit && len >= min_body && (!enc || len > 0);
    }
    true
}
