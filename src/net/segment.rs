//! IP and TCP decoding: from a captured packet to a borrowed view of its TCP segment.
//! etherparse does IP and TCP; the link layers it lacks (SLL2, BSD NULL/LOOP) are read here.

use std::net::{IpAddr, SocketAddr};

use etherparse::{
    EtherType, IpNumber, Ipv4HeaderSlice, LaxIpPayloadSlice, LaxNetSlice, LaxSlicedPacket,
    NetSlice, SlicedPacket, TcpSlice, TransportSlice,
};

use super::link::LinkType;

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
    /// The captured length of the packet it came in, link header included (what Suricata and
    /// tshark count as a flow's bytes).
    pub packet_len: u32,
    /// Where the capture file holds the payload, when it is read from one: see
    /// [`TcpSegment::located`].
    pub payload_at: Option<u64>,
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
pub(super) fn slice(link: LinkType, data: &[u8]) -> Result<SlicedPacket<'_>, Skip> {
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

pub(super) fn addresses(sliced: &SlicedPacket<'_>) -> Option<(IpAddr, IpAddr, bool)> {
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

pub(super) fn segment_of(src: IpAddr, dst: IpAddr, tcp: &TcpSlice<'_>) -> TcpSegment<'static> {
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
        packet_len: 0,
        payload_at: None,
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

/// The endpoints of an Ethernet, IPv4 and TCP packet, unfragmented, read with no checks
/// beyond the lengths: a guess at which connection a packet ahead belongs to, for asking for
/// that connection's state early. Never used to decode.
#[inline]
pub fn endpoints_hint(link: LinkType, data: &[u8]) -> Option<(SocketAddr, SocketAddr)> {
    const ETHERNET: usize = 14;
    if link != LinkType::Ethernet || data.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = data.get(ETHERNET..ETHERNET + 20)?;
    let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
    if ip[0] >> 4 != 4 || ip[9] != 6 || fragment {
        return None;
    }
    let tcp = ETHERNET + usize::from(ip[0] & 0x0f) * 4;
    let ports = data.get(tcp..tcp + 4)?;
    let addr = |at: usize| std::net::Ipv4Addr::new(ip[at], ip[at + 1], ip[at + 2], ip[at + 3]);
    Some((
        SocketAddr::new(
            IpAddr::V4(addr(12)),
            u16::from_be_bytes([ports[0], ports[1]]),
        ),
        SocketAddr::new(
            IpAddr::V4(addr(16)),
            u16::from_be_bytes([ports[2], ports[3]]),
        ),
    ))
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
        packet_len: 0,
        payload_at: None,
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

impl TcpSegment<'_> {
    /// The segment of `packet`, which the capture file holds at `at` (if it is read from
    /// one), with where its payload is there: a payload that is not part of the packet (an IP
    /// datagram reassembled from fragments) has none.
    pub fn located(mut self, packet: &[u8], at: Option<u64>) -> Self {
        let offset = (self.payload.as_ptr() as usize).wrapping_sub(packet.as_ptr() as usize);
        let inside = offset
            .checked_add(self.payload.len())
            .is_some_and(|end| end <= packet.len());
        self.payload_at = at.filter(|_| inside).map(|at| at + offset as u64);
        self
    }
}

/// Decodes one packet of the given link type.
pub fn decode(link: LinkType, data: &[u8]) -> Result<TcpSegment<'_>, Skip> {
    let packet_len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    decode_tcp(link, data).map(|segment| TcpSegment {
        packet_len,
        ..segment
    })
}

fn decode_tcp(link: LinkType, data: &[u8]) -> Result<TcpSegment<'_>, Skip> {
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
