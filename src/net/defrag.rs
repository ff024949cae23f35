//! IP fragment reassembly, bounded in time and memory.

use std::net::IpAddr;

use etherparse::defrag::{IpDefragPayloadVec, IpDefragPool};
use etherparse::{IpNumber, TcpSlice};

use super::link::LinkType;
use super::segment::{TcpSegment, addresses, segment_of, slice};
use crate::event::Timestamp;

/// How long, in capture time, the fragments of an IP datagram wait for the rest.
const FRAGMENT_TIMEOUT_SECS: i64 = 30;
/// Fragments accepted between two sweeps before the pool is dropped, so a flood of fragments
/// that never complete costs bounded memory.
const MAX_FRAGMENTS_PER_SWEEP: usize = 65_536;

/// IPv4 and IPv6 fragment reassembly, through etherparse's pool.
#[derive(Default)]
pub struct Defragmenter {
    pool: IpDefragPool<i64, ()>,
    added_since_sweep: usize,
}

/// A reassembled IP datagram.
pub struct Datagram {
    src: IpAddr,
    dst: IpAddr,
    payload: IpDefragPayloadVec,
}

impl Datagram {
    /// The datagram's TCP segment, if it carries a well-formed one.
    pub fn segment(&self) -> Option<TcpSegment<'_>> {
        if self.payload.ip_number != IpNumber::TCP {
            return None;
        }
        let tcp = TcpSlice::from_slice(&self.payload.payload).ok()?;
        Some(TcpSegment {
            payload: &self.payload.payload[usize::from(tcp.data_offset()) * 4..],
            ..segment_of(self.src, self.dst, &tcp)
        })
    }
}

impl Defragmenter {
    /// Adds a fragment; returns the whole datagram once its last missing piece arrives.
    pub fn add(&mut self, link: LinkType, data: &[u8], ts: Timestamp) -> Option<Datagram> {
        let sliced = slice(link, data).ok()?;
        let (src, dst, _) = addresses(&sliced)?;
        self.added_since_sweep += 1;
        if self.added_since_sweep > MAX_FRAGMENTS_PER_SWEEP {
            self.pool.retain(|_| false);
            self.added_since_sweep = 0;
        }
        let payload = self
            .pool
            .process_sliced_packet(&sliced, ts.secs, ())
            .ok()??;
        Some(Datagram { src, dst, payload })
    }

    /// Gives a datagram's buffer back for reuse.
    pub fn recycle(&mut self, datagram: Datagram) {
        self.pool.return_buf(datagram.payload);
    }

    /// Drops datagrams still incomplete after the timeout.
    pub fn expire(&mut self, now: Timestamp) {
        self.pool
            .retain(|started| now.secs.saturating_sub(*started) < FRAGMENT_TIMEOUT_SECS);
        self.added_since_sweep = 0;
    }
}
