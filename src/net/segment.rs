//! Link, IP and TCP decoding: from a captured packet to a borrowed view of its TCP segment.
//! etherparse does IP and TCP; the link layers it lacks (SLL2, BSD NULL/LOOP) are read here.

use std::net::{IpAddr, SocketAddr};

use etherparse::defrag::{IpDefragPayloadVec, IpDefragPool};
use etherparse::{
    EtherType, IpNumber, Ipv4HeaderSlice, LaxIpPayloadSlice, LaxNetSlice, LaxSlicedPacket,
    NetSlice, SlicedPacket, TcpSlice, TransportSlice,
};

use crate::event::Timestamp;

/// The link-layer types wsnoop reads (libpcap DLT values as `pcap_datalink` reports them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    Ethernet,
    /// BSD loopback: a 4-byte address family, host (NULL) or network (LOOP) byte order.
    Null,
    Raw,
    LinuxSll,
    LinuxSll2,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "unsupported link type {name} (DLT {dlt}); wsnoop reads Ethernet, Linux cooked (SLL, SLL2), BSD loopback and raw IP"
)]
pub struct UnsupportedLinkType {
    pub dlt: i32,
    pub name: String,
}

impl LinkType {
    pub fn from_dlt(dlt: i32, name: &str) -> Result<LinkType, UnsupportedLinkType> {
        match dlt {
            1 => Ok(LinkType::Ethernet),
            0 | 108 => Ok(LinkType::Null),
            // DLT_RAW is 12 or 14 depending on the platform; 101 is its file value, and
            // LINKTYPE_IPV4/IPV6 are raw IP too.
            12 | 14 | 101 | 228 | 229 => Ok(LinkType::Raw),
            113 => Ok(LinkType::LinuxSll),
            276 => Ok(LinkType::LinuxSll2),
            _ => Err(UnsupportedLinkType {
                dlt,
                name: name.to_string(),
            }),
        }
    }
}

/// TCP flags wsnoop acts on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpFlags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
}

/// What the capture's snapshot length cut off one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cut {
    /// Payload bytes the sender sent that the capture did not keep: the IP header's length
    /// minus what was captured.
    pub bytes: u32,
    /// The packet's captured length, link layer included: the snapshot length it was cut at.
    pub snaplen: u32,
}

/// One TCP segment, borrowing the packet's bytes.
#[derive(Clone, Copy, Debug)]
pub struct TcpSegment<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    /// What was captured of the payload: all of it, or its start when `cut` says so.
    pub payload: &'a [u8],
    /// The snapshot length cut the payload short; it continues for `cut.bytes` on the wire.
    pub cut: Option<Cut>,
}

/// Why a packet yielded no TCP segment; counted, never fatal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Well-formed but not TCP over IP (ARP, UDP, ICMP, ...).
    NotTcp,
    /// Cut short or malformed below TCP.
    Malformed,
    /// An IP fragment; reassembly is not done here.
    Fragment,
    /// The snapshot length cut the packet inside its TCP header, before its place in the
    /// stream: its bytes will show as a gap.
    CutHeader,
}

/// Slices one packet of the given link type down to its transport layer.
fn slice(link: LinkType, data: &[u8]) -> Result<SlicedPacket<'_>, Skip> {
    match link {
        LinkType::Ethernet => SlicedPacket::from_ethernet(data),
        LinkType::Raw => SlicedPacket::from_ip(data),
        LinkType::Null => SlicedPacket::from_ip(data.get(4..).ok_or(Skip::Malformed)?),
        // Both cooked headers are read here rather than by etherparse, whose SLL reader refuses
        // every ARPHRD type but a few: loopback (772), tun devices (65534) and ppp (512), all
        // common in `-i any` captures, carry IP with an EtherType protocol field all the same.
        LinkType::LinuxSll => {
            // SLL header: packet type (2), ARPHRD type (2), address length (2), address (8),
            // protocol type (2).
            let protocol = data.get(14..16).ok_or(Skip::Malformed)?;
            let protocol = u16::from_be_bytes([protocol[0], protocol[1]]);
            SlicedPacket::from_ether_type(EtherType(protocol), &data[16..])
        }
        LinkType::LinuxSll2 => {
            // SLL2 header: protocol type (2), reserved (2), interface index (4),
            // ARPHRD type (2), packet type (1), address length (1), address (8).
            if data.len() < 20 {
                return Err(Skip::Malformed);
            }
            let protocol = u16::from_be_bytes([data[0], data[1]]);
            SlicedPacket::from_ether_type(EtherType(protocol), &data[20..])
        }
    }
    .map_err(|_| Skip::Malformed)
}

fn addresses(sliced: &SlicedPacket<'_>) -> Option<(IpAddr, IpAddr, bool)> {
    match &sliced.net {
        Some(NetSlice::Ipv4(ip)) => Some((
            IpAddr::V4(ip.header().source_addr()),
            IpAddr::V4(ip.header().destination_addr()),
            ip.is_payload_fragmented(),
        )),
        Some(NetSlice::Ipv6(ip)) => Some((
            IpAddr::V6(ip.header().source_addr()),
            IpAddr::V6(ip.header().destination_addr()),
            ip.is_payload_fragmented(),
        )),
        _ => None,
    }
}

fn segment_of(src: IpAddr, dst: IpAddr, tcp: &TcpSlice<'_>) -> TcpSegment<'static> {
    TcpSegment {
        src: SocketAddr::new(src, tcp.source_port()),
        dst: SocketAddr::new(dst, tcp.destination_port()),
        seq: tcp.sequence_number(),
        ack: tcp.acknowledgment_number(),
        flags: TcpFlags {
            syn: tcp.syn(),
            ack: tcp.ack(),
            fin: tcp.fin(),
            rst: tcp.rst(),
        },
        payload: &[],
        cut: None,
    }
}

/// The cut of a packet whose IP header says `declared` payload bytes follow its headers, of
/// which `captured` were captured.
fn cut_of(declared: usize, captured: usize, data: &[u8]) -> Option<Cut> {
    let bytes = declared.checked_sub(captured).filter(|&n| n > 0)?;
    Some(Cut {
        bytes: u32::try_from(bytes).ok()?,
        snaplen: u32::try_from(data.len()).ok()?,
    })
}

/// The common case, untagged Ethernet with an unfragmented IPv4 TCP segment, read straight
/// from etherparse's header views without building a whole `SlicedPacket`. Anything else, or
/// anything odd, goes the general way.
fn ethernet_ipv4_tcp(data: &[u8]) -> Option<TcpSegment<'_>> {
    const ETHERNET: usize = 14;
    if data.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = Ipv4HeaderSlice::from_slice(data.get(ETHERNET..)?).ok()?;
    if ip.protocol() != IpNumber::TCP || ip.is_fragmenting_payload() {
        return None;
    }
    let start = ETHERNET + ip.slice().len();
    // A packet cut by the snapshot length keeps what was captured, and says how much is
    // missing, so TCP knows where the next segment starts.
    let whole = ETHERNET + usize::from(ip.total_len());
    let end = whole.min(data.len());
    let tcp = TcpSlice::from_slice(data.get(start..end)?).ok()?;
    let (src, dst) = (
        IpAddr::V4(ip.source_addr()),
        IpAddr::V4(ip.destination_addr()),
    );
    Some(TcpSegment {
        payload: tcp.payload(),
        cut: cut_of(whole, end, data),
        ..segment_of(src, dst, &tcp)
    })
}

/// A TCP header cut by the snapshot length: with its first 14 bytes (ports, numbers, header
/// length, flags) the segment still has a place in the stream, all of its payload missing.
fn header_cut_segment(
    src: IpAddr,
    dst: IpAddr,
    tcp: &[u8],
    declared: usize,
    data: &[u8],
) -> Option<TcpSegment<'static>> {
    let h = tcp.get(..14)?;
    let header_len = usize::from(h[12] >> 4) * 4;
    if header_len < 20 {
        return None;
    }
    let port = |at: usize| u16::from_be_bytes([h[at], h[at + 1]]);
    let number = |at: usize| u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
    Some(TcpSegment {
        src: SocketAddr::new(src, port(0)),
        dst: SocketAddr::new(dst, port(2)),
        seq: number(4),
        ack: number(8),
        flags: TcpFlags {
            fin: h[13] & 0x01 != 0,
            syn: h[13] & 0x02 != 0,
            rst: h[13] & 0x04 != 0,
            ack: h[13] & 0x10 != 0,
        },
        payload: &[],
        cut: cut_of(declared.checked_sub(header_len)?, 0, data),
    })
}

/// A packet the snapshot length cut short, which strict slicing refuses: its layers read
/// laxly (the link layers of [`slice`]), its segment what was captured of it.
fn cut_segment(link: LinkType, data: &[u8]) -> Result<TcpSegment<'_>, Skip> {
    lax_cut_segment(link, data).unwrap_or(Err(Skip::Malformed))
}

/// None: not a cut TCP packet.
fn lax_cut_segment(link: LinkType, data: &[u8]) -> Option<Result<TcpSegment<'_>, Skip>> {
    let cooked = |protocol_at: usize, header: usize| {
        let protocol = u16::from_be_bytes([*data.get(protocol_at)?, *data.get(protocol_at + 1)?]);
        Some(LaxSlicedPacket::from_ether_type(
            EtherType(protocol),
            data.get(header..)?,
        ))
    };
    let lax = match link {
        LinkType::Ethernet => LaxSlicedPacket::from_ethernet(data).ok()?,
        LinkType::Raw => LaxSlicedPacket::from_ip(data).ok()?,
        LinkType::Null => LaxSlicedPacket::from_ip(data.get(4..)?).ok()?,
        LinkType::LinuxSll => cooked(14, 16)?,
        LinkType::LinuxSll2 => cooked(0, 20)?,
    };
    let (src, dst, ip, declared): (IpAddr, IpAddr, &LaxIpPayloadSlice<'_>, usize) = match &lax.net {
        Some(LaxNetSlice::Ipv4(ip)) => {
            let header = ip.header();
            let declared = usize::from(header.total_len()).checked_sub(
                header.slice().len() + ip.extensions().auth.map_or(0, |a| a.slice().len()),
            )?;
            (
                header.source_addr().into(),
                header.destination_addr().into(),
                ip.payload(),
                declared,
            )
        }
        Some(LaxNetSlice::Ipv6(ip)) => {
            let header = ip.header();
            let declared =
                usize::from(header.payload_length()).checked_sub(ip.extensions().slice().len())?;
            (
                header.source_addr().into(),
                header.destination_addr().into(),
                ip.payload(),
                declared,
            )
        }
        _ => return None,
    };
    if !ip.incomplete || ip.fragmented || ip.ip_number != IpNumber::TCP {
        return None;
    }
    Some(match &lax.transport {
        Some(TransportSlice::Tcp(tcp)) => Ok(TcpSegment {
            payload: tcp.payload(),
            cut: cut_of(declared, ip.payload.len(), data),
            ..segment_of(src, dst, tcp)
        }),
        _ => header_cut_segment(src, dst, ip.payload, declared, data).ok_or(Skip::CutHeader),
    })
}

/// Decodes one packet of the given link type.
pub fn decode(link: LinkType, data: &[u8]) -> Result<TcpSegment<'_>, Skip> {
    if link == LinkType::Ethernet
        && let Some(segment) = ethernet_ipv4_tcp(data)
    {
        return Ok(segment);
    }
    let sliced = match slice(link, data) {
        Ok(sliced) => sliced,
        Err(_) => return cut_segment(link, data),
    };
    let (src, dst, fragmented) = addresses(&sliced).ok_or(Skip::NotTcp)?;
    match &sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => Ok(TcpSegment {
            payload: tcp.payload(),
            ..segment_of(src, dst, tcp)
        }),
        None if fragmented => Err(Skip::Fragment),
        _ => Err(Skip::NotTcp),
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn ipv4_tcp(payload: &[u8]) -> Vec<u8> {
        let builder = PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 8080, 1000, 512)
            .ack(77)
            .psh();
        let mut out = Vec::new();
        builder.write(&mut out, payload).unwrap();
        out
    }

    #[test]
    fn each_link_type_reaches_tcp() {
        let ip = ipv4_tcp(b"hello");
        let mut eth = vec![0u8; 12];
        eth.extend_from_slice(&[0x81, 0x00, 0x00, 0x05, 0x08, 0x00]); // one 802.1Q tag
        eth.extend_from_slice(&ip);
        let mut null = 2u32.to_ne_bytes().to_vec();
        null.extend_from_slice(&ip);
        let mut sll2 = vec![0x08, 0x00, 0, 0, 0, 0, 0, 1, 0, 1, 0, 6];
        sll2.extend_from_slice(&[0; 8]);
        sll2.extend_from_slice(&ip);
        // Linux cooked v1 as `-i any` writes it: loopback (ARPHRD 772), a tun device (65534),
        // ppp (512) and Ethernet (1), each with the IPv4 EtherType.
        let sll = |arphrd: u16| {
            let mut h = vec![0, 4]; // packet type: outgoing
            h.extend_from_slice(&arphrd.to_be_bytes());
            h.extend_from_slice(&[0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00]);
            h.extend_from_slice(&ip);
            h
        };
        let (sll_lo, sll_tun, sll_ppp, sll_eth) = (sll(772), sll(65534), sll(512), sll(1));
        for (link, bytes) in [
            (LinkType::LinuxSll, &sll_lo),
            (LinkType::LinuxSll, &sll_tun),
            (LinkType::LinuxSll, &sll_ppp),
            (LinkType::LinuxSll, &sll_eth),
            (LinkType::Ethernet, &eth),
            (LinkType::Raw, &ip),
            (LinkType::Null, &null),
            (LinkType::LinuxSll2, &sll2),
        ] {
            let seg = decode(link, bytes).unwrap();
            assert_eq!(seg.payload, b"hello", "{link:?}");
            assert_eq!(seg.src, "10.0.0.1:40000".parse().unwrap());
            assert_eq!(seg.dst, "10.0.0.2:8080".parse().unwrap());
            assert_eq!((seg.seq, seg.ack), (1000, 77));
        }
    }

    /// An IPv6 TCP segment cut into fragments (RFC 8200 4.5), delivered last piece first.
    #[test]
    fn ipv6_fragments_are_reassembled() {
        let payload: Vec<u8> = (0..200u8).collect();
        let builder = PacketBuilder::ipv6([0x20; 16], [0x21; 16], 64).tcp(40000, 8080, 7, 512);
        let mut whole = Vec::new();
        builder.write(&mut whole, &payload).unwrap();
        let tcp = &whole[40..]; // the TCP segment after the fixed IPv6 header
        let fragment = |offset: usize, piece: &[u8], more: bool| {
            let mut p = Vec::new();
            p.extend_from_slice(&[0x60, 0, 0, 0]);
            p.extend_from_slice(&((8 + piece.len()) as u16).to_be_bytes());
            p.extend_from_slice(&[44, 64]); // next header: fragment; hop limit
            p.extend_from_slice(&[0x20; 16]);
            p.extend_from_slice(&[0x21; 16]);
            let offset_field = ((offset / 8) as u16) << 3 | u16::from(more);
            p.extend_from_slice(&[6, 0]); // then TCP; reserved
            p.extend_from_slice(&offset_field.to_be_bytes());
            p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
            p.extend_from_slice(piece);
            p
        };
        let first = fragment(0, &tcp[..96], true);
        let last = fragment(96, &tcp[96..], false);
        assert_eq!(decode(LinkType::Raw, &first).unwrap_err(), Skip::Fragment);
        let mut defrag = Defragmenter::default();
        let ts = Timestamp::default();
        assert!(defrag.add(LinkType::Raw, &last, ts).is_none());
        let datagram = defrag.add(LinkType::Raw, &first, ts).expect("complete");
        let seg = datagram.segment().expect("a TCP segment");
        assert_eq!(seg.payload, &payload[..]);
        assert_eq!(seg.dst.port(), 8080);
        assert_eq!(seg.seq, 7);
    }

    #[test]
    fn short_and_foreign_packets_are_skipped() {
        assert_eq!(
            decode(LinkType::LinuxSll2, &[0; 5]).unwrap_err(),
            Skip::Malformed
        );
        assert_eq!(
            decode(LinkType::LinuxSll, &[0; 15]).unwrap_err(),
            Skip::Malformed
        );
        assert_eq!(
            decode(LinkType::Null, &[0; 2]).unwrap_err(),
            Skip::Malformed
        );
        let ip = ipv4_tcp(b"x");
        // Cut inside the TCP header before its flags: a cut, but not a segment.
        assert_eq!(
            decode(LinkType::Raw, &ip[..30]).unwrap_err(),
            Skip::CutHeader
        );
        assert_eq!(
            decode(LinkType::Raw, &ip[..19]).unwrap_err(),
            Skip::Malformed
        );
        assert!(LinkType::from_dlt(105, "IEEE802_11").is_err());
    }

    /// A packet cut by the snapshot length keeps its captured payload and says how many bytes
    /// the IP header declares beyond it, on the fast path and the lax one, for IPv6 and SLL2
    /// too; cut inside the TCP header after its flags, it keeps its place with no payload.
    #[test]
    fn cut_packets_say_what_was_cut() {
        let payload: Vec<u8> = (0..100u8).collect();
        let ip = ipv4_tcp(&payload);
        let mut eth = vec![0u8; 12];
        eth.extend_from_slice(&[0x08, 0x00]);
        eth.extend_from_slice(&ip);
        let mut vlan = vec![0u8; 12];
        vlan.extend_from_slice(&[0x81, 0x00, 0x00, 0x05, 0x08, 0x00]);
        vlan.extend_from_slice(&ip);
        let mut v6 = Vec::new();
        PacketBuilder::ipv6([0x20; 16], [0x21; 16], 64)
            .tcp(40000, 8080, 1000, 512)
            .write(&mut v6, &payload)
            .unwrap();
        let mut sll2 = vec![0x86, 0xdd, 0, 0, 0, 0, 0, 1, 0, 1, 0, 6];
        sll2.extend_from_slice(&[0; 8]);
        sll2.extend_from_slice(&v6);
        // (link, packet, bytes of headers before the payload)
        for (link, bytes, headers) in [
            (LinkType::Ethernet, &eth, 14 + 20 + 20),
            (LinkType::Ethernet, &vlan, 18 + 20 + 20),
            (LinkType::Raw, &ip, 20 + 20),
            (LinkType::LinuxSll2, &sll2, 20 + 40 + 20),
        ] {
            let whole = decode(link, bytes).unwrap();
            assert_eq!((whole.payload, whole.cut), (&payload[..], None), "{link:?}");
            let snap = headers + 30;
            let seg = decode(link, &bytes[..snap]).unwrap();
            assert_eq!(seg.payload, &payload[..30], "{link:?}");
            let want = Cut {
                bytes: 70,
                snaplen: snap as u32,
            };
            assert_eq!(seg.cut, Some(want), "{link:?}");
            assert_eq!((seg.seq, seg.dst.port()), (1000, 8080), "{link:?}");
            let in_header = decode(link, &bytes[..headers - 4]).unwrap();
            assert_eq!(in_header.payload, b"", "{link:?}");
            assert_eq!(in_header.cut.map(|c| c.bytes), Some(100), "{link:?}");
            assert_eq!(
                (in_header.seq, in_header.src.port()),
                (1000, 40000),
                "{link:?}"
            );
        }
    }
}
