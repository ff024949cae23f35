//! Capture files read as they are: pcap (µs or ns, either byte order) and pcapng with every
//! interface's own link type and timestamp resolution, several sections one after another,
//! from a file or a stream on standard input.
//!
//! pcap-parser parses the file header and the pcapng blocks; this module frames them in one
//! buffer that is reused for the whole file. A record is handed on as soon as its bytes are in
//! (a `tcpdump -U -w - | wsnoop -r -` pipe prints as packets come), a length read off the file
//! is checked against [`MAX_BLOCK`] before anything is read or grown for it, and reading a
//! packet allocates nothing.

use std::fs::File;
use std::io::Read;

use pcap::{BpfProgram, Capture, Linktype};
use pcap_parser::nom;
use pcap_parser::pcapng::{
    parse_decryptionsecretsblock_be, parse_decryptionsecretsblock_le,
    parse_interfacedescriptionblock_be, parse_interfacedescriptionblock_le,
    parse_sectionheaderblock, parse_simplepacketblock_be, parse_simplepacketblock_le,
};
use pcap_parser::traits::PcapNGPacketBlock;
use pcap_parser::{
    LegacyPcapBlock, OptionCode, PcapError, SecretsType, build_ts_resolution, parse_pcap_frame,
    parse_pcap_frame_be, parse_pcap_frame_modified, parse_pcap_header,
};

use super::CaptureError;
use crate::decode::{LinkType, UnsupportedLinkType};
use crate::event::Timestamp;

/// The largest pcap record or pcapng block read: a 16 MiB packet with its headers and
/// options. A length beyond it is damage (or a hostile file) and ends the read with one line;
/// it is never an allocation.
pub const MAX_BLOCK: usize = (16 << 20) + (64 << 10);
/// The read buffer's first size; one read asks for up to this much.
const BUFFER: usize = 1 << 20;
/// Below this much free space at the end of the buffer, it is compacted before reading.
const MIN_READ: usize = 64 << 10;
/// Interfaces one pcapng section may describe: each costs a few dozen bytes, and a file of
/// nothing but interface blocks must not grow without end.
const MAX_INTERFACES: usize = 1 << 16;
/// TLS key log bytes kept until [`FileReader::take_secrets`] takes them.
const MAX_PENDING_SECRETS: usize = 16 << 20;

const SHB: u32 = 0x0A0D_0D0A;
const IDB: u32 = 1;
const OPB: u32 = 2;
const SPB: u32 = 3;
const EPB: u32 = 6;
const DSB: u32 = 0x0A;

/// One interface of a pcapng section (a pcap file has one).
#[derive(Debug)]
struct Interface {
    /// The link type as the file gives it (a LINKTYPE_ value).
    linktype: i32,
    link: Option<LinkType>,
    /// Timestamp units per second (`if_tsresol`).
    units: u64,
    /// Seconds added to every timestamp (`if_tsoffset`).
    offset: i64,
    /// This interface's filter in [`Filter::programs`].
    program: Option<usize>,
}

impl Interface {
    fn new(linktype: i32, units: u64, offset: i64) -> Interface {
        Interface {
            linktype,
            link: LinkType::from_dlt(linktype, "").ok(),
            units,
            offset,
            program: None,
        }
    }

    fn timestamp(&self, ticks: u64) -> Timestamp {
        let secs = i64::try_from(ticks / self.units).unwrap_or(i64::MAX);
        let frac = ticks % self.units;
        Timestamp {
            secs: secs.saturating_add(self.offset),
            nanos: (u128::from(frac) * 1_000_000_000 / u128::from(self.units)) as u32,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Format {
    Pcap {
        big: bool,
        nano: bool,
        modified: bool,
    },
    PcapNg {
        big: bool,
    },
}

/// A BPF filter compiled once per link type, as interfaces of new link types appear.
struct Filter {
    expression: String,
    programs: Vec<(i32, BpfProgram)>,
}

/// Where a packet's bytes are in the buffer, and what the file says about it.
#[derive(Clone, Copy, Debug)]
pub struct Record {
    pub ts: Timestamp,
    pub wire_len: u32,
    pub link: LinkType,
    /// The LINKTYPE_ of its interface.
    pub linktype: i32,
    iface: usize,
    start: usize,
    len: usize,
}

enum Step {
    Packet(Record),
    /// A packet block is next (only when asked to stop before one).
    AtPacket,
    End,
}

/// Counts of what the reader read but did not hand on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileStats {
    /// Packets of interfaces whose link type wsnoop does not decode.
    pub unsupported_link_packets: u64,
    /// Packets the BPF filter did not match.
    pub filtered_out: u64,
    /// TLS key log bytes not kept because [`MAX_PENDING_SECRETS`] were waiting to be taken.
    pub secrets_dropped: u64,
}

pub struct FileReader {
    input: File,
    name: String,
    buf: Vec<u8>,
    /// The unconsumed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// Bytes of the stream before `buf[0]`, for offsets in error messages.
    base: u64,
    eof: bool,
    format: Format,
    interfaces: Vec<Interface>,
    /// An interface finer than microseconds was described.
    nano: bool,
    filter: Option<Filter>,
    secrets: Vec<u8>,
    stats: FileStats,
}

fn u32_at(b: &[u8], at: usize, big: bool) -> u32 {
    let mut w = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        w.copy_from_slice(s);
    }
    if big {
        u32::from_be_bytes(w)
    } else {
        u32::from_le_bytes(w)
    }
}

fn u16_at(b: &[u8], at: usize, big: bool) -> u16 {
    let mut w = [0u8; 2];
    if let Some(s) = b.get(at..at + 2) {
        w.copy_from_slice(s);
    }
    if big {
        u16::from_be_bytes(w)
    } else {
        u16::from_le_bytes(w)
    }
}

/// libpcap's name for a link type ("EN10MB", "USB_LINUX"), for messages.
pub fn linktype_name(linktype: i32) -> String {
    Linktype(dlt_of(linktype))
        .get_name()
        .unwrap_or_else(|_| format!("LINKTYPE {linktype}"))
}

/// The DLT libpcap's filter compiler knows a file's LINKTYPE_ value by: they are the same but
/// for raw IP, whose DLT differs by platform.
pub(super) fn dlt_of(linktype: i32) -> i32 {
    match linktype {
        101 => 12,
        other => other,
    }
}

fn parse_error<I>(e: nom::Err<PcapError<I>>) -> String {
    match e {
        nom::Err::Incomplete(_) => "its contents run past its end".into(),
        nom::Err::Error(e) | nom::Err::Failure(e) => match e {
            PcapError::HeaderNotRecognized => "unknown byte-order magic".into(),
            PcapError::NomError(_, kind) | PcapError::OwnedNomError(_, kind) => {
                format!("malformed ({})", kind.description())
            }
            _ => "malformed".into(),
        },
    }
}

impl FileReader {
    /// Reads the file header, and in pcapng the blocks before the first packet, so that
    /// [`FileReader::nano`] and [`FileReader::first_link`] speak for the interfaces declared
    /// up front. Errors are the message alone; the caller names the file.
    pub fn open(input: File, name: String) -> Result<FileReader, String> {
        let mut reader = FileReader {
            input,
            name,
            buf: vec![0; BUFFER],
            start: 0,
            end: 0,
            base: 0,
            eof: false,
            format: Format::PcapNg { big: false },
            interfaces: Vec::new(),
            nano: false,
            filter: None,
            secrets: Vec::new(),
            stats: FileStats::default(),
        };
        let got = reader.fill(4).map_err(|e| e.to_string())?;
        if got == 0 {
            return Err("empty file: no pcap or pcapng header".into());
        }
        let magic = u32_at(&reader.buf, 0, false);
        match magic {
            0xa1b2_c3d4 | 0xa1b2_3c4d | 0xa1b2_cd34 | 0xd4c3_b2a1 | 0x4d3c_b2a1 => {
                if reader.fill(24).map_err(|e| e.to_string())? < 24 {
                    return Err(format!(
                        "truncated pcap file header: {} of 24 bytes",
                        reader.available()
                    ));
                }
                let (_, header) = parse_pcap_header(&reader.buf[..24])
                    .map_err(|e| format!("pcap file header: {}", parse_error(e)))?;
                if header.version_major != 2 {
                    return Err(format!(
                        "unsupported pcap file version {}.{}",
                        header.version_major, header.version_minor
                    ));
                }
                reader.format = Format::Pcap {
                    big: header.is_bigendian(),
                    nano: header.is_nanosecond_precision(),
                    modified: header.is_modified_format(),
                };
                reader.nano = header.is_nanosecond_precision();
                let units = if reader.nano {
                    1_000_000_000
                } else {
                    1_000_000
                };
                // The upper bits of the field carry FCS information, not the link type.
                reader
                    .interfaces
                    .push(Interface::new(header.network.0 & 0x03FF_FFFF, units, 0));
                reader.consume(24);
            }
            SHB => {
                reader.next_step(true).map_err(|e| e.message())?;
            }
            _ => return Err("unknown file format: neither pcap nor pcapng".into()),
        }
        Ok(reader)
    }

    pub fn nano(&self) -> bool {
        self.nano
    }

    /// The first interface's link type that wsnoop decodes; else the unsupported type of the
    /// first interface; None for a pcapng file that describes no interface before its first
    /// packet.
    pub fn first_link(&self) -> Option<Result<(LinkType, i32), UnsupportedLinkType>> {
        if let Some(i) = self.interfaces.iter().find(|i| i.link.is_some()) {
            return i.link.map(|l| Ok((l, i.linktype)));
        }
        self.interfaces.first().map(|i| {
            Err(UnsupportedLinkType {
                dlt: i.linktype,
                name: linktype_name(i.linktype),
            })
        })
    }

    pub fn stats(&self) -> FileStats {
        self.stats
    }

    /// The TLS key log bytes of the Decryption Secrets Blocks read since the last call, in
    /// file order.
    pub fn take_secrets(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.secrets)
    }

    /// Filters packets from now on; the expression is compiled at once for each link type
    /// known, and for each new one as its interface is described.
    pub fn set_filter(&mut self, expression: &str) -> Result<(), CaptureError> {
        self.filter = Some(Filter {
            expression: expression.to_string(),
            programs: Vec::new(),
        });
        for i in 0..self.interfaces.len() {
            self.compile_for(i)?;
        }
        Ok(())
    }

    fn compile_for(&mut self, index: usize) -> Result<(), CaptureError> {
        let (Some(filter), Some(iface)) = (&mut self.filter, self.interfaces.get_mut(index)) else {
            return Ok(());
        };
        // Packets of a link type wsnoop cannot decode are skipped before filtering.
        if iface.link.is_none() {
            return Ok(());
        }
        if let Some(at) = filter
            .programs
            .iter()
            .position(|(t, _)| *t == iface.linktype)
        {
            iface.program = Some(at);
            return Ok(());
        }
        let error = |message: String| CaptureError::Filter {
            filter: filter.expression.clone(),
            message: format!("{message} (link type {})", linktype_name(iface.linktype)),
        };
        let program = Capture::dead(Linktype(dlt_of(iface.linktype)))
            .map_err(|e| error(e.to_string()))?
            .compile(&filter.expression, true)
            .map_err(|e| error(super::clean_pcap_message(&e.to_string())))?;
        filter.programs.push((iface.linktype, program));
        iface.program = Some(filter.programs.len() - 1);
        Ok(())
    }

    /// The next packet to hand on, or None at the end of the file.
    pub fn next(&mut self) -> Result<Option<(Record, &[u8])>, CaptureError> {
        match self.next_step(false)? {
            Step::Packet(r) => Ok(Some((r, &self.buf[r.start..r.start + r.len]))),
            Step::AtPacket | Step::End => Ok(None),
        }
    }

    fn available(&self) -> usize {
        self.end - self.start
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
    }

    fn offset(&self) -> u64 {
        self.base + self.start as u64
    }

    /// Reads until `need` bytes are unconsumed or the input ends; returns how many are.
    /// One read asks for all the free space, so a file goes in large reads, and a pipe gives
    /// what it has at once.
    fn fill(&mut self, need: usize) -> std::io::Result<usize> {
        while self.available() < need && !self.eof {
            // Move the unconsumed tail to the front when the record would not fit after it,
            // or when only a small read would: what moves is less than one record.
            if self.buf.len() - self.start < need || self.buf.len() - self.end < MIN_READ {
                self.buf.copy_within(self.start..self.end, 0);
                self.base += self.start as u64;
                self.end -= self.start;
                self.start = 0;
                if self.buf.len() < need {
                    self.buf.resize(need.next_power_of_two().min(MAX_BLOCK), 0);
                }
            }
            // An interrupted read is returned: the run loop tells a stop request by its flag.
            match self.input.read(&mut self.buf[self.end..])? {
                0 => self.eof = true,
                n => self.end += n,
            }
        }
        Ok(self.available())
    }

    fn damaged(&self, message: String) -> CaptureError {
        CaptureError::Read {
            source_name: self.name.clone(),
            message,
        }
    }

    fn io_error(&self, e: std::io::Error) -> CaptureError {
        self.damaged(e.to_string())
    }

    /// Makes `need` bytes available for the record starting here, or says the file ends
    /// inside it.
    fn need(&mut self, need: usize, what: &str) -> Result<bool, CaptureError> {
        let got = self.fill(need).map_err(|e| self.io_error(e))?;
        if got >= need {
            return Ok(true);
        }
        if got == 0 {
            return Ok(false);
        }
        Err(self.damaged(format!(
            "truncated file: the {what} at byte {} needs {need} bytes, only {got} follow",
            self.offset()
        )))
    }

    fn next_step(&mut self, stop_before_packet: bool) -> Result<Step, CaptureError> {
        loop {
            let step = match self.format {
                Format::Pcap {
                    big,
                    nano,
                    modified,
                } => {
                    if stop_before_packet {
                        return Ok(Step::AtPacket);
                    }
                    self.pcap_record(big, nano, modified)?
                }
                Format::PcapNg { big } => self.pcapng_block(big, stop_before_packet)?,
            };
            match step {
                Some(Step::Packet(r)) if self.keep(&r) => return Ok(Step::Packet(r)),
                Some(Step::Packet(_)) => {}
                Some(step) => return Ok(step),
                None => {}
            }
        }
    }

    /// Whether a packet is handed on: its interface's link type is decoded, and the filter
    /// matches it.
    fn keep(&mut self, r: &Record) -> bool {
        let data = &self.buf[r.start..r.start + r.len];
        let Some(iface) = self.interfaces.get(r.iface) else {
            return true;
        };
        if iface.link.is_none() {
            self.stats.unsupported_link_packets += 1;
            return false;
        }
        if let (Some(filter), Some(p)) = (&self.filter, iface.program)
            && !filter.programs[p].1.filter(data)
        {
            self.stats.filtered_out += 1;
            return false;
        }
        true
    }

    fn pcap_record(
        &mut self,
        big: bool,
        nano: bool,
        modified: bool,
    ) -> Result<Option<Step>, CaptureError> {
        let header = if modified { 24 } else { 16 };
        if !self.need(header, "packet record header")? {
            return Ok(Some(Step::End));
        }
        let caplen = u32_at(&self.buf[self.start..], 8, big) as usize;
        if caplen > MAX_BLOCK - header {
            return Err(self.damaged(format!(
                "the packet record at byte {} claims {caplen} captured bytes, more than the {} \
                 a record may hold: the file is damaged",
                self.offset(),
                MAX_BLOCK - header
            )));
        }
        if !self.need(header + caplen, "packet record")? {
            return Ok(Some(Step::End));
        }
        let bytes = &self.buf[self.start..self.start + header + caplen];
        let parsed = if modified {
            parse_pcap_frame_modified(bytes)
        } else if big {
            parse_pcap_frame_be(bytes)
        } else {
            parse_pcap_frame(bytes)
        };
        let (_, frame): (_, LegacyPcapBlock<'_>) = parsed.map_err(|e| {
            self.damaged(format!(
                "the packet record at byte {}: {}",
                self.offset(),
                parse_error(e)
            ))
        })?;
        let iface = &self.interfaces[0];
        let frac = u64::from(frame.ts_usec);
        let nanos = if nano { frac } else { frac * 1000 }.min(999_999_999) as u32;
        let record = Record {
            ts: Timestamp {
                secs: i64::from(frame.ts_sec),
                nanos,
            },
            wire_len: frame.origlen,
            link: iface.link.unwrap_or(LinkType::Ethernet),
            linktype: iface.linktype,
            iface: 0,
            start: self.start + header,
            len: caplen,
        };
        self.consume(header + caplen);
        Ok(Some(Step::Packet(record)))
    }

    /// Reads one pcapng block: Some(step) for a packet or the end, None for a block that
    /// only informs (or is skipped).
    fn pcapng_block(
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
                let Some(units) = build_ts_resolution(idb.if_tsresol).filter(|u| *u > 0) else {
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
                self.interfaces
                    .push(Interface::new(linktype, units, offset));
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

impl CaptureError {
    /// The message without the file name (the opener names the file itself).
    fn message(&self) -> String {
        match self {
            CaptureError::Read { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }
}
