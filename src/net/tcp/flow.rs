//! A TCP connection's identity: its two endpoints, whichever direction a packet goes.

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;

/// A connection's identity regardless of direction: the lower endpoint first. Packed as
/// integers, so hashing it (once per packet) is a few multiplications; addresses are pairs of
/// u64 rather than u128, whose 16-byte alignment would pad every table entry holding a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FlowKey {
    low_ip: (u64, u64),
    high_ip: (u64, u64),
    low_port: u16,
    high_port: u16,
    v6: bool,
}

/// Five words, not the derived field-by-field calls, and inlined into the table's probe: the
/// derived one was a call per packet and 1.3% of `-q`'s instructions. Equal keys write the
/// same words, as `Hash` requires.
impl Hash for FlowKey {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.low_ip.0);
        state.write_u64(self.low_ip.1);
        state.write_u64(self.high_ip.0);
        state.write_u64(self.high_ip.1);
        state.write_u64(
            u64::from(self.low_port) | u64::from(self.high_port) << 16 | u64::from(self.v6) << 32,
        );
    }
}

fn endpoint_bits(addr: SocketAddr) -> (u128, u16) {
    match addr {
        SocketAddr::V4(a) => (u128::from(a.ip().to_bits()), a.port()),
        SocketAddr::V6(a) => (a.ip().to_bits(), a.port()),
    }
}

/// Split so that the pairs order as the u128 does.
fn split(ip: u128) -> (u64, u64) {
    ((ip >> 64) as u64, ip as u64)
}

fn join((high, low): (u64, u64)) -> u128 {
    (u128::from(high) << 64) | u128::from(low)
}

impl FlowKey {
    /// Returns the key and whether `src` is the key's first endpoint ("side A").
    pub fn new(src: SocketAddr, dst: SocketAddr) -> (FlowKey, bool) {
        let (s, d) = (endpoint_bits(src), endpoint_bits(dst));
        let v6 = src.is_ipv6();
        let src_first = s <= d;
        let (low, high) = if src_first { (s, d) } else { (d, s) };
        let key = FlowKey {
            low_ip: split(low.0),
            high_ip: split(high.0),
            low_port: low.1,
            high_port: high.1,
            v6,
        };
        (key, src_first)
    }

    fn addr(&self, ip: (u64, u64), port: u16) -> SocketAddr {
        let ip = join(ip);
        if self.v6 {
            SocketAddr::new(std::net::Ipv6Addr::from_bits(ip).into(), port)
        } else {
            SocketAddr::new(std::net::Ipv4Addr::from_bits(ip as u32).into(), port)
        }
    }

    pub fn side_a(&self) -> SocketAddr {
        self.addr(self.low_ip, self.low_port)
    }

    pub fn side_b(&self) -> SocketAddr {
        self.addr(self.high_ip, self.high_port)
    }
}
