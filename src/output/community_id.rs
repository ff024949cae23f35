//! Community ID v1 (corelight's community-id-spec): the flow identifier Zeek, Suricata and
//! Elastic compute from the 5-tuple, so that wsnoop's records join theirs.

use std::net::{IpAddr, SocketAddr};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest, Sha1};

use crate::event::FlowMeta;

const TCP: u8 = 6;
/// "1:" and the base64 of a SHA-1 digest.
const LEN: usize = 2 + 28;

/// A connection's Community ID, kept as its text.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CommunityId([u8; LEN]);

impl CommunityId {
    /// The ID of a TCP connection, with the spec's default seed 0.
    pub fn of(flow: &FlowMeta) -> CommunityId {
        tcp(flow.client, flow.server, 0)
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored: "1:" and base64.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Debug for CommunityId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn ip_bytes(ip: IpAddr, buf: &mut [u8; 16]) -> &[u8] {
    match ip {
        IpAddr::V4(v4) => {
            buf[..4].copy_from_slice(&v4.octets());
            &buf[..4]
        }
        IpAddr::V6(v6) => {
            *buf = v6.octets();
            &buf[..]
        }
    }
}

/// The spec's hash input: seed, the lower endpoint's address, the other's, protocol, a zero
/// byte, then the two ports in the same order. "Lower" compares addresses as bytes, then ports.
fn tcp(a: SocketAddr, b: SocketAddr, seed: u16) -> CommunityId {
    let (mut ab, mut bb) = ([0u8; 16], [0u8; 16]);
    let (a_ip, b_ip) = (ip_bytes(a.ip(), &mut ab), ip_bytes(b.ip(), &mut bb));
    let (lo, hi, lo_port, hi_port) = if (a_ip, a.port()) <= (b_ip, b.port()) {
        (a_ip, b_ip, a.port(), b.port())
    } else {
        (b_ip, a_ip, b.port(), a.port())
    };
    let mut h = Sha1::new();
    h.update(seed.to_be_bytes());
    h.update(lo);
    h.update(hi);
    h.update([TCP, 0]);
    h.update(lo_port.to_be_bytes());
    h.update(hi_port.to_be_bytes());
    let digest = h.finalize();
    let mut out = [0u8; LEN];
    out[..2].copy_from_slice(b"1:");
    // 20 bytes make exactly 28 base64 characters.
    let _ = STANDARD.encode_slice(digest, &mut out[2..]);
    CommunityId(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(a: &str, b: &str) -> String {
        tcp(a.parse().unwrap(), b.parse().unwrap(), 0)
            .as_str()
            .to_string()
    }

    #[test]
    fn the_specs_example_and_either_direction() {
        // The example of community-id-spec's README (TCP, seed 0).
        let want = "1:LQU9qZlK+B5F3KDmev6m5PMibrg=";
        assert_eq!(id("128.232.110.120:34855", "66.35.250.204:80"), want);
        assert_eq!(id("66.35.250.204:80", "128.232.110.120:34855"), want);
    }

    #[test]
    fn pycommunityid_agrees_on_v4_and_v6() {
        // Computed with corelight's Python reference implementation (communityid 1.5.0).
        assert_eq!(
            id("10.0.0.2:80", "10.0.0.1:5000"),
            "1:zZcrZw6iHYAz2U0wgSDHZWBCrMg="
        );
        assert_eq!(
            id("[fe80::1]:443", "[fe80::2]:1234"),
            "1:YskwbH/duaZeCbz3J2MOAR6inXM="
        );
    }
}
