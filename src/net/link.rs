//! The link layers wsnoop reads, named from libpcap's DLT values.

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
