//! pcapng blocks (draft-ietf-opsawg-pcapng) and the interfaces a section describes: each with
//! its own link type, timestamp resolution and offset.

use pcap_parser::pcapng::{
    parse_decryptionsecretsblock_be, parse_decryptionsecretsblock_le,
    parse_interfacedescriptionblock_be, parse_interfacedescriptionblock_le,
    parse_sectionheaderblock, parse_simplepacketblock_be, parse_simplepacketblock_le,
};
use pcap_parser::traits::PcapNGPacketBlock;
use pcap_parser::{OptionCode, SecretsType};

use super::buffer::{u16_at, u32_at};
use super::copies::Seen;
use super::{
    CaptureError, FileReader, Format, MAX_BLOCK, MAX_INTERFACES, MAX_PENDING_SECRETS, Record, Step,
    parse_error,
};
use crate::event::Timestamp;
use crate::net::link::LinkType;

pub(super) const SHB: u32 = 0x0A0D_0D0A;
pub(super) const IDB: u32 = 1;
pub(super) const OPB: u32 = 2;
pub(super) const SPB: u32 = 3;
pub(super) const EPB: u32 = 6;
pub(super) const DSB: u32 = 0x0A;

/// One interface of a pcapng section (a pcap file has one).
#[derive(Debug)]
pub(super) struct Interface {
    /// The link type as the file gives it (a LINKTYPE_ value).
    pub(super) linktype: i32,
    pub(super) link: Option<LinkType>,
    /// Timestamp units per second (`if_tsresol`).
    pub(super) units: u64,
    /// Seconds added to every timestamp (`if_tsoffset`).
    pub(super) offset: i64,
    /// This interface's filter in [`Filter::programs`](super::Filter::programs).
    pub(super) program: Option<usize>,
    /// Numbers every interface of the file, across sections.
    pub(super) serial: u32,
}

impl Interface {
    pub(super) fn new(linktype: i32, units: u64, offset: i64, serial: u32) -> Interface {
        Interface {
            linktype,
            link: LinkType::from_dlt(linktype, "").ok(),
            units,
            offset,
            program: None,
            serial,
        }
    }

    pub(super) fn timestamp(&self, ticks: u64) -> Timestamp {
        let secs = i64::try_from(ticks / self.units).unwrap_or(i64::MAX);
        let frac = ticks % self.units;
        Timestamp {
            secs: secs.saturating_add(self.offset),
            nanos: (u128::from(frac) * 1_000_000_000 / u128::from(self.units)) as u32,
        }
    }
}

/// Timestamp units per second for an `if_tsresol` value: 10^v, or 2^(v & 0x7f) with the top
/// bit set. Not pcap-parser's `build_ts_resolution`, which refuses every power of 2 but 2^0.
fn units_per_second(tsresol: u8) -> Option<u64> {
    if tsresol & 0x80 == 0 {
        10u64.checked_pow(u32::from(tsresol))
    } else {
        1u64.checked_shl(u32::from(tsresol & 0x7f))
    }
}

impl FileReader {
    /// Reads one pcapng block: Some(step) for a packet or the end, None for a block that
    /// only informs (or is skipped).
    pub(super) fn pcapng_block(
        &mut self,
        big: bool,
        stop_before_packet: bool,
    ) -> Result<Option<Step>, CaptureError> {
        if !self.need(8, "block header")? {
            return Ok(Some(Step::End));
        }
        let at = self.offset();
        let kind = u32_at(&self.buf[self.start..], 0, big);
        let big = if kind == SHB {
            // A section says its own byte order, after its length.
            if !self.need(12, "section header block")? {
                return Ok(Some(Step::End));
            }
            match &self.buf[self.start + 8..self.start + 12] {
                [0x4d, 0x3c, 0x2b, 0x1a] => false,
                [0x1a, 0x2b, 0x3c, 0x4d] => true,
                _ => {
                    return Err(self.damaged(format!(
                        "the section header block at byte {at} has no byte-order magic"
                    )));
                }
            }
        } else {
            big
        };
        let len = u32_at(&self.buf[self.start..], 4, big) as usize;
        if len < 12 || !len.is_multiple_of(4) || len > MAX_BLOCK {
            return Err(self.damaged(format!(
                "the block at byte {at} (type {kind:#x}) has a length of {len} bytes, {}: the \
                 file is damaged",
                if len > MAX_BLOCK {
                    format!("more than the {MAX_BLOCK} a block may have")
                } else {
                    "not a multiple of 4 of at least 12".into()
                }
            )));
        }
        if stop_before_packet && matches!(kind, EPB | OPB | SPB) {
            return Ok(Some(Step::AtPacket));
        }
        if !self.need(len, "block")? {
            return Ok(Some(Step::End));
        }
        let block = &self.buf[self.start..self.start + len];
        if u32_at(block, len - 4, big) as usize != len {
            return Err(self.damaged(format!(
                "the block at byte {at} (type {kind:#x}) ends with a length other than its first"
            )));
        }
        let malformed = |what: &str, e: String| format!("the {what} at byte {at}: {e}");
        let mut packet = None;
        match kind {
            SHB => {
                let (_, shb) = parse_sectionheaderblock(block)
                    .map_err(|e| self.damaged(malformed("section header block", parse_error(e))))?;
                if shb.major_version != 1 {
                    return Err(self.damaged(format!(
                        "the section at byte {at} is pcapng version {}.{}, which wsnoop does not \
                         read",
                        shb.major_version, shb.minor_version
                    )));
                }
                self.format = Format::PcapNg { big };
                // A new section (captures concatenated with cat) describes its own interfaces.
                self.interfaces.clear();
            }
            IDB => {
                let parsed = if big {
                    parse_interfacedescriptionblock_be(block)
                } else {
                    parse_interfacedescriptionblock_le(block)
                };
                let (_, idb) = parsed.map_err(|e| {
                    self.damaged(malformed("interface description block", parse_error(e)))
                })?;
                let Some(units) = units_per_second(idb.if_tsresol) else {
                    return Err(self.damaged(format!(
                        "the interface description block at byte {at} has if_tsresol {:#x}, \
                         finer than a timestamp can count",
                        idb.if_tsresol
                    )));
                };
                // pcap-parser reads if_tsoffset little-endian whatever the section's order.
                let offset = idb
                    .options
                    .iter()
                    .find(|o| o.code == OptionCode::IfTsoffset && o.value().len() >= 8)
                    .map(|o| {
                        let v: [u8; 8] = o.value()[..8].try_into().unwrap_or_default();
                        if big {
                            i64::from_be_bytes(v)
                        } else {
                            i64::from_le_bytes(v)
                        }
                    })
                    .unwrap_or(0);
                let linktype = i32::from(idb.linktype.0 as u16);
                if self.interfaces.len() >= MAX_INTERFACES {
                    return Err(self.damaged(format!(
                        "the section describes more than {MAX_INTERFACES} interfaces"
                    )));
                }
                self.nano |= units > 1_000_000;
                self.serial = self.serial.wrapping_add(1);
                self.interfaces
                    .push(Interface::new(linktype, units, offset, self.serial));
                let decoded = self.interfaces.iter().filter(|i| i.link.is_some()).count();
                if decoded > 1 && self.seen.is_none() {
                    self.seen = Some(Box::new(Seen::new()));
                }
                self.consume(len);
                self.compile_for(self.interfaces.len() - 1)?;
                return Ok(None);
            }
            EPB | OPB => {
                // Read here, not by pcap-parser: its parser collects a packet's options into
                // a Vec (an allocation per packet), and it has no obsolete packet block.
                let body = &block[8..len - 4];
                if body.len() < 20 {
                    return Err(self.damaged(format!(
                        "the packet block at byte {at} is too short for its header"
                    )));
                }
                let if_id = if kind == EPB {
                    u32_at(body, 0, big) as usize
                } else {
                    usize::from(u16_at(body, 0, big))
                };
                let ticks =
                    (u64::from(u32_at(body, 4, big)) << 32) | u64::from(u32_at(body, 8, big));
                let caplen = u32_at(body, 12, big) as usize;
                let wire_len = u32_at(body, 16, big);
                if caplen > body.len() - 20 {
                    return Err(self.damaged(format!(
                        "the packet block at byte {at} claims {caplen} captured bytes but holds \
                         {}",
                        body.len() - 20
                    )));
                }
                packet = Some((if_id, ticks, 8 + 20, caplen, wire_len));
            }
            SPB => {
                let parsed = if big {
                    parse_simplepacketblock_be(block)
                } else {
                    parse_simplepacketblock_le(block)
                };
                let (_, spb) = parsed
                    .map_err(|e| self.damaged(malformed("simple packet block", parse_error(e))))?;
                // No timestamp: a simple packet block has none.
                packet = Some((0, 0, 12, spb.packet_data().len(), spb.orig_len()));
            }
            DSB => {
                let parsed = if big {
                    parse_decryptionsecretsblock_be(block)
                } else {
                    parse_decryptionsecretsblock_le(block)
                };
                let (_, dsb) = parsed.map_err(|e| {
                    self.damaged(malformed("decryption secrets block", parse_error(e)))
                })?;
                if dsb.secrets_type == SecretsType::TlsKeyLog {
                    let data = &dsb.data[..(dsb.secrets_len as usize).min(dsb.data.len())];
                    let room = MAX_PENDING_SECRETS.saturating_sub(self.secrets.len());
                    let kept = data.len().min(room);
                    self.secrets.extend_from_slice(&data[..kept]);
                    self.stats.secrets_dropped += (data.len() - kept) as u64;
                }
            }
            // Statistics, name resolution, custom and unknown blocks say nothing wsnoop uses.
            _ => {}
        }
        let Some((if_id, ticks, data_at, caplen, wire_len)) = packet else {
            self.consume(len);
            return Ok(None);
        };
        let Some(iface) = self.interfaces.get(if_id) else {
            return Err(self.damaged(format!(
                "the packet block at byte {at} names interface {if_id}, but its section \
                 describes {}",
                self.interfaces.len()
            )));
        };
        let record = Record {
            ts: iface.timestamp(ticks),
            wire_len,
            link: iface.link.unwrap_or(LinkType::Ethernet),
            linktype: iface.linktype,
            iface: if_id,
            start: self.start + data_at,
            len: caplen,
        };
        self.consume(len);
        Ok(Some(Step::Packet(record)))
    }
}
