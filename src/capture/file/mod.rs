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

use pcap::{BpfProgram, Capture, Linktype, Savefile};
use pcap_parser::nom;
use pcap_parser::pcapng::{
    parse_decryptionsecretsblock_be, parse_decryptionsecretsblock_le,
    parse_interfacedescriptionblock_be, parse_interfacedescriptionblock_le,
    parse_sectionheaderblock, parse_simplepacketblock_be, parse_simplepacketblock_le,
};
use pcap_parser::traits::PcapNGPacketBlock;
use pcap_parser::{
    LegacyPcapBlock, OptionCode, PcapError, SecretsType, parse_pcap_frame, parse_pcap_frame_be,
    parse_pcap_frame_modified, parse_pcap_header,
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
    /// Numbers every interface of the file, across sections.
    serial: u32,
}

impl Interface {
    fn new(linktype: i32, units: u64, offset: i64, serial: u32) -> Interface {
        Interface {
            linktype,
            link: LinkType::from_dlt(linktype, "").ok(),
            units,
            offset,
            program: None,
            serial,
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

/// The IP packet inside a link-layer frame (its start, as far as a copy on another interface
/// would share it).
fn network_layer(link: LinkType, data: &[u8]) -> &[u8] {
    let at = match link {
        LinkType::Ethernet => match data.get(12..14) {
            Some([0x81, 0x00]) => 18,
            _ => 14,
        },
        LinkType::Null => 4,
        LinkType::Raw => 0,
        LinkType::LinuxSll => 16,
        LinkType::LinuxSll2 => 20,
    };
    data.get(at..).unwrap_or(&[])
}

/// Packets seen lately on the file's interfaces, to skip the copy of one that a second
/// interface also captured (`dumpcap -i lo -i any`, a veth end and `any`). dumpcap writes
/// each interface's packets in batches, so the copy can come after the whole connection has
/// ended on the first interface, where TCP would take it for a new connection. A copy is the
/// same IP packet, byte for byte, on another interface, at most [`COPY_WINDOW_NANOS`] apart
/// in capture time. One fixed table, allocated once: a packet's entry lives until another
/// lands in its slot, so a copy more than a few thousand packets later can be missed.
struct Seen {
    slots: Vec<SeenPacket>,
    hasher: foldhash::fast::FixedState,
}

#[derive(Clone, Copy, Default)]
struct SeenPacket {
    hash: u64,
    interface: u32,
    ts: Timestamp,
}

const SEEN_SLOTS: usize = 1 << 16;
const COPY_WINDOW_NANOS: i128 = 1_000_000_000;

impl Seen {
    fn new() -> Seen {
        Seen {
            slots: vec![SeenPacket::default(); SEEN_SLOTS],
            hasher: foldhash::fast::FixedState::with_seed(0x5eed),
        }
    }

    /// Whether this packet copies one seen on another interface; else it is remembered.
    fn is_copy(&mut self, interface: u32, ts: Timestamp, packet: &[u8]) -> bool {
        use std::hash::BuildHasher;
        if packet.is_empty() {
            return false;
        }
        let hash = self.hasher.hash_one(packet);
        let slot = &mut self.slots[hash as usize & (SEEN_SLOTS - 1)];
        let nanos = |t: Timestamp| i128::from(t.secs) * 1_000_000_000 + i128::from(t.nanos);
        if slot.hash == hash
            && slot.interface != interface
            && (nanos(slot.ts) - nanos(ts)).abs() <= COPY_WINDOW_NANOS
        {
            return true;
        }
        *slot = SeenPacket {
            hash,
            interface,
            ts,
        };
        false
    }
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
    /// Copies of a packet that another interface of the file captured too (see [`Seen`]).
    pub duplicates: u64,
    /// Every packet record or block read, whether handed on or not.
    pub packets_read: u64,
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
    /// A pipe, socket or terminal rather than a regular file.
    stream: bool,
    format: Format,
    interfaces: Vec<Interface>,
    /// An interface finer than microseconds was described.
    nano: bool,
    filter: Option<Filter>,
    /// Set once a section has two interfaces wsnoop decodes.
    seen: Option<Box<Seen>>,
    serial: u32,
    secrets: Vec<u8>,
    stats: FileStats,
    save: Option<Save>,
}

/// The `-w` file: pcap, of one link type.
struct Save {
    file: Savefile,
    linktype: i32,
    name: String,
    /// Bytes handed to libpcap, its file header included: libpcap keeps quiet about a write
    /// that fails (a full disk), so the file's size is checked against this.
    written: u64,
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

/// Timestamp units per second for an `if_tsresol` value: 10^v, or 2^(v & 0x7f) with the top
/// bit set. Not pcap-parser's `build_ts_resolution`, which refuses every power of 2 but 2^0.
fn units_per_second(tsresol: u8) -> Option<u64> {
    if tsresol & 0x80 == 0 {
        10u64.checked_pow(u32::from(tsresol))
    } else {
        1u64.checked_shl(u32::from(tsresol & 0x7f))
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
        let stream = !input.metadata().is_ok_and(|m| m.is_file());
        let mut reader = FileReader {
            stream,
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
            seen: None,
            serial: 0,
            secrets: Vec::new(),
            stats: FileStats::default(),
            save: None,
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
                    .push(Interface::new(header.network.0 & 0x03FF_FFFF, units, 0, 0));
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

    pub fn is_stream(&self) -> bool {
        self.stream
    }

    /// Whether the next record or block is wholly in the buffer (no read needed for it).
    pub fn next_is_buffered(&self) -> bool {
        let (header, len_at, big, extra) = match self.format {
            Format::Pcap { big, modified, .. } => {
                let header = if modified { 24 } else { 16 };
                (header, 8, big, header)
            }
            Format::PcapNg { big } => (8, 4, big, 0),
        };
        let rest = &self.buf[self.start..self.end];
        if rest.len() < header {
            return false;
        }
        let mut big = big;
        if u32_at(rest, 0, false) == SHB {
            match rest.get(8..12) {
                Some([0x1a, 0x2b, 0x3c, 0x4d]) => big = true,
                Some(_) => big = false,
                None => return false,
            }
        }
        rest.len() >= extra + u32_at(rest, len_at, big) as usize
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

    /// Writes every packet the filter matches to `file` (`-w`), whose link type is `linktype`.
    pub fn save_to(&mut self, file: Savefile, linktype: i32, name: String) {
        self.save = Some(Save {
            file,
            linktype,
            name,
            written: 24,
        });
    }

    pub fn flush_savefile(&mut self) -> Result<(), CaptureError> {
        let Some(save) = &mut self.save else {
            return Ok(());
        };
        let error = |message: String| CaptureError::Savefile {
            path: save.name.clone(),
            message,
        };
        save.file.flush().map_err(|e| error(e.to_string()))?;
        if let Ok(meta) = std::fs::metadata(&save.name)
            && meta.is_file()
            && meta.len() < save.written
        {
            return Err(error(format!(
                "{} of {} bytes written (is the disk full?)",
                meta.len(),
                save.written
            )));
        }
        Ok(())
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
            if self.start > 0
                && (self.buf.len() - self.start < need || self.buf.len() - self.end < MIN_READ)
            {
                self.buf.copy_within(self.start..self.end, 0);
                self.base += self.start as u64;
                self.end -= self.start;
                self.start = 0;
            }
            if self.buf.len() < need {
                self.buf.resize(need.next_power_of_two().min(MAX_BLOCK), 0);
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
                Some(Step::Packet(r)) if self.keep(&r)? => return Ok(Step::Packet(r)),
                Some(Step::Packet(_)) => {}
                Some(step) => return Ok(step),
                None => {}
            }
        }
    }

    /// Whether a packet is handed on: its interface's link type is decoded, and the filter
    /// matches it.
    fn keep(&mut self, r: &Record) -> Result<bool, CaptureError> {
        self.stats.packets_read += 1;
        let data = &self.buf[r.start..r.start + r.len];
        let Some(iface) = self.interfaces.get(r.iface) else {
            return Ok(true);
        };
        if iface.link.is_none() {
            self.stats.unsupported_link_packets += 1;
            return Ok(false);
        }
        if let (Some(filter), Some(p)) = (&self.filter, iface.program)
            && !filter.programs[p].1.filter(data)
        {
            self.stats.filtered_out += 1;
            return Ok(false);
        }
        if let Some(save) = &mut self.save {
            if save.linktype != r.linktype {
                return Err(CaptureError::Savefile {
                    path: save.name.clone(),
                    message: format!(
                        "a packet of link type {} cannot go into this pcap file of link type {} \
                         (the capture's first interface): pcap holds one link type",
                        linktype_name(r.linktype),
                        linktype_name(save.linktype),
                    ),
                });
            }
            let header = pcap::PacketHeader {
                ts: libc::timeval {
                    tv_sec: r.ts.secs as libc::time_t,
                    tv_usec: libc::suseconds_t::from(r.ts.nanos as i32),
                },
                caplen: data.len() as u32,
                len: r.wire_len,
            };
            save.file.write(&pcap::Packet::new(&header, data));
            save.written += 16 + data.len() as u64;
        }
        if let (Some(seen), Some(link)) = (&mut self.seen, iface.link)
            && seen.is_copy(iface.serial, r.ts, network_layer(link, data))
        {
            self.stats.duplicates += 1;
            return Ok(false);
        }
        Ok(true)
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

impl CaptureError {
    /// The message without the file name (the opener names the file itself).
    fn message(&self) -> String {
        match self {
            CaptureError::Read { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// pcapng blocks by the spec (draft-ietf-opsawg-pcapng), in either byte order.
    struct Ng {
        big: bool,
        out: Vec<u8>,
    }

    impl Ng {
        fn new(big: bool) -> Ng {
            let mut ng = Ng {
                big,
                out: Vec::new(),
            };
            ng.shb();
            ng
        }
        fn u16(&self, v: u16) -> [u8; 2] {
            if self.big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        }
        fn u32(&self, v: u32) -> [u8; 4] {
            if self.big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        }
        fn block(&mut self, kind: u32, body: &[u8]) -> &mut Ng {
            let padded = body.len().div_ceil(4) * 4;
            let len = (12 + padded) as u32;
            let mut b = Vec::new();
            b.extend_from_slice(&self.u32(kind));
            b.extend_from_slice(&self.u32(len));
            b.extend_from_slice(body);
            b.resize(8 + padded, 0);
            b.extend_from_slice(&self.u32(len));
            self.out.extend_from_slice(&b);
            self
        }
        fn options(&self, options: &[(u16, Vec<u8>)]) -> Vec<u8> {
            let mut b = Vec::new();
            for (code, value) in options {
                b.extend_from_slice(&self.u16(*code));
                b.extend_from_slice(&self.u16(value.len() as u16));
                b.extend_from_slice(value);
                b.resize(b.len().div_ceil(4) * 4, 0);
            }
            if !options.is_empty() {
                b.extend_from_slice(&[0; 4]);
            }
            b
        }
        fn shb(&mut self) -> &mut Ng {
            let mut body = Vec::new();
            body.extend_from_slice(&self.u32(0x1A2B_3C4D));
            body.extend_from_slice(&self.u16(1));
            body.extend_from_slice(&self.u16(0));
            body.extend_from_slice(&[0xff; 8]);
            self.block(SHB, &body)
        }
        fn idb(&mut self, linktype: u16, options: &[(u16, Vec<u8>)]) -> &mut Ng {
            let mut body = Vec::new();
            body.extend_from_slice(&self.u16(linktype));
            body.extend_from_slice(&[0, 0]);
            body.extend_from_slice(&self.u32(262_144));
            body.extend(self.options(options));
            self.block(IDB, &body)
        }
        fn epb(&mut self, if_id: u32, ticks: u64, data: &[u8], wire: u32) -> &mut Ng {
            let mut body = Vec::new();
            body.extend_from_slice(&self.u32(if_id));
            body.extend_from_slice(&self.u32((ticks >> 32) as u32));
            body.extend_from_slice(&self.u32(ticks as u32));
            body.extend_from_slice(&self.u32(data.len() as u32));
            body.extend_from_slice(&self.u32(wire));
            body.extend_from_slice(data);
            body.resize(body.len().div_ceil(4) * 4, 0);
            // An option (epb_flags), which the reader must step over without collecting.
            body.extend(self.options(&[(2, self.u32(1).to_vec())]));
            self.block(EPB, &body)
        }
        fn opb(&mut self, if_id: u16, ticks: u64, data: &[u8]) -> &mut Ng {
            let mut body = Vec::new();
            body.extend_from_slice(&self.u16(if_id));
            body.extend_from_slice(&self.u16(0));
            body.extend_from_slice(&self.u32((ticks >> 32) as u32));
            body.extend_from_slice(&self.u32(ticks as u32));
            body.extend_from_slice(&self.u32(data.len() as u32));
            body.extend_from_slice(&self.u32(data.len() as u32));
            body.extend_from_slice(data);
            self.block(OPB, &body)
        }
        fn spb(&mut self, data: &[u8]) -> &mut Ng {
            let mut body = Vec::new();
            body.extend_from_slice(&self.u32(data.len() as u32));
            body.extend_from_slice(data);
            self.block(SPB, &body)
        }
        fn dsb(&mut self, kind: u32, secrets: &[u8]) -> &mut Ng {
            let mut body = Vec::new();
            body.extend_from_slice(&self.u32(kind));
            body.extend_from_slice(&self.u32(secrets.len() as u32));
            body.extend_from_slice(secrets);
            self.block(DSB, &body)
        }
    }

    fn reader_of(bytes: &[u8]) -> Result<FileReader, String> {
        let mut file = tempfile::tempfile().expect("temp file");
        file.write_all(bytes).expect("write");
        std::io::Seek::rewind(&mut file).expect("rewind");
        FileReader::open(file, "test".into())
    }

    /// A packet handed on: (ts, data, wire_len, link).
    type Got = (Timestamp, Vec<u8>, u32, LinkType);

    /// Every packet handed on, then the error if any.
    fn read_all(reader: &mut FileReader) -> (Vec<Got>, Option<String>) {
        let mut got = Vec::new();
        loop {
            match reader.next() {
                Ok(Some((r, data))) => got.push((r.ts, data.to_vec(), r.wire_len, r.link)),
                Ok(None) => return (got, None),
                Err(e) => return (got, Some(e.to_string())),
            }
        }
    }

    fn ts(secs: i64, nanos: u32) -> Timestamp {
        Timestamp { secs, nanos }
    }

    #[test]
    fn each_interface_has_its_own_link_type_and_resolution() {
        for big in [false, true] {
            let mut ng = Ng::new(big);
            // if_tsresol absent: microseconds.
            ng.idb(1, &[]);
            // Nanoseconds, and an offset of 100 s.
            ng.idb(276, &[(9, vec![9]), (14, ng.u64_bytes(100))]);
            // 2^-10 s units.
            ng.idb(101, &[(9, vec![0x80 | 10])]);
            ng.epb(0, 1_500_000, b"ether", 99);
            ng.epb(1, 2_000_000_007, b"sll2!", 5);
            ng.opb(2, 3 * 1024 + 512, b"raw");
            let mut r = reader_of(&ng.out).expect("opens");
            assert!(r.nano(), "an interface in ns makes the output ns");
            let (got, err) = read_all(&mut r);
            assert_eq!(err, None);
            assert_eq!(
                got,
                vec![
                    (
                        ts(1, 500_000_000),
                        b"ether".to_vec(),
                        99,
                        LinkType::Ethernet
                    ),
                    (ts(102, 7), b"sll2!".to_vec(), 5, LinkType::LinuxSll2),
                    (ts(3, 500_000_000), b"raw".to_vec(), 3, LinkType::Raw),
                ],
                "big endian: {big}"
            );
        }
    }

    impl Ng {
        fn u64_bytes(&self, v: i64) -> Vec<u8> {
            if self.big {
                v.to_be_bytes().to_vec()
            } else {
                v.to_le_bytes().to_vec()
            }
        }
    }

    #[test]
    fn microsecond_interfaces_make_microsecond_output() {
        let mut ng = Ng::new(false);
        ng.idb(1, &[(9, vec![6])]).idb(1, &[(9, vec![0x80 | 19])]);
        ng.epb(1, 1 << 19, b"x", 1);
        let mut r = reader_of(&ng.out).expect("opens");
        assert!(!r.nano(), "2^-19 s is coarser than a microsecond");
        assert_eq!(read_all(&mut r).0[0].0, ts(1, 0));
        let mut ng = Ng::new(false);
        ng.idb(1, &[(9, vec![0x80 | 20])]);
        assert!(
            reader_of(&ng.out).expect("opens").nano(),
            "2^-20 s is finer"
        );
    }

    #[test]
    fn simple_packets_unknown_blocks_and_sections() {
        let mut ng = Ng::new(false);
        ng.idb(1, &[]);
        ng.block(0x0BAD_F00D, b"something unknown");
        ng.block(5, &[0; 16]); // an interface statistics block
        ng.spb(b"simple");
        // A second section, other byte order, whose interface 0 is SLL2.
        let mut second = Ng::new(true);
        second.idb(276, &[]);
        second.epb(0, 7_000_000, b"second", 6);
        // Interface 1 existed in no section but the first: an error, after the packet before.
        let mut third = Ng::new(false);
        third.idb(1, &[]);
        third.epb(1, 0, b"gone", 4);
        let mut bytes = ng.out.clone();
        bytes.extend(&second.out);
        bytes.extend(&third.out);
        let mut r = reader_of(&bytes).expect("opens");
        let (got, err) = read_all(&mut r);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].1, b"simple");
        assert_eq!(got[0].2, 6);
        assert_eq!(got[1].0, ts(7, 0));
        assert_eq!(got[1].3, LinkType::LinuxSll2);
        let err = err.expect("an error for interface 1");
        assert!(err.contains("names interface 1"), "{err}");
    }

    #[test]
    fn unsupported_interfaces_are_skipped_and_counted() {
        let mut ng = Ng::new(false);
        ng.idb(147, &[]).idb(1, &[]);
        ng.epb(0, 0, b"user0", 5)
            .epb(1, 0, b"ether", 5)
            .epb(0, 0, b"user0", 5);
        let mut r = reader_of(&ng.out).expect("opens");
        assert!(matches!(r.first_link(), Some(Ok((LinkType::Ethernet, 1)))));
        let (got, err) = read_all(&mut r);
        assert_eq!((got.len(), err), (1, None));
        assert_eq!(r.stats().unsupported_link_packets, 2);
        let mut only = Ng::new(false);
        only.idb(147, &[]);
        let r = reader_of(&only.out).expect("opens");
        assert!(matches!(r.first_link(), Some(Err(e)) if e.dlt == 147));
    }

    /// The same IP packet on a second interface is a copy; on the same interface (a
    /// retransmission, a duplicate) or seconds later it is handed on, for TCP to judge.
    #[test]
    fn copies_on_another_interface_are_skipped() {
        let ether = |ip: &[u8]| [&[0u8; 12][..], &[0x86, 0xdd], ip].concat();
        let sll2 = |ip: &[u8]| [&[0x86u8, 0xdd][..], &[0; 18], ip].concat();
        let mut ng = Ng::new(false);
        ng.idb(1, &[(9, vec![9])]).idb(276, &[(9, vec![9])]);
        ng.epb(0, 1_000, &ether(b"ip packet one"), 27);
        ng.epb(0, 1_001, &ether(b"ip packet one"), 27); // same interface: kept
        ng.epb(1, 1_002, &sll2(b"ip packet one"), 33); // a copy
        ng.epb(1, 1_003, &sll2(b"ip packet two"), 33);
        ng.epb(0, 1_004, &ether(b"ip packet two"), 27); // a copy, the other way round
        ng.epb(1, 3_000_000_000, &sll2(b"ip packet one"), 33); // 3 s later: kept
        let mut r = reader_of(&ng.out).expect("opens");
        let (got, err) = read_all(&mut r);
        assert_eq!(err, None);
        let times: Vec<u32> = got.iter().map(|g| g.0.nanos).collect();
        assert_eq!(times, vec![1_000, 1_001, 1_003, 0]);
        assert_eq!(r.stats().duplicates, 2);
        assert_eq!(r.stats().packets_read, 6);
    }

    #[test]
    fn tls_key_logs_are_kept_in_order() {
        let mut ng = Ng::new(false);
        ng.dsb(0x544c_534b, b"CLIENT_RANDOM aa bb\n");
        ng.idb(1, &[]).epb(0, 0, b"p", 1);
        ng.dsb(0x5747_4b4c, b"wireguard, not kept");
        ng.dsb(0x544c_534b, b"CLIENT_RANDOM cc dd\n");
        let mut r = reader_of(&ng.out).expect("opens");
        assert_eq!(r.take_secrets(), b"CLIENT_RANDOM aa bb\n");
        let (got, _) = read_all(&mut r);
        assert_eq!(got.len(), 1);
        assert_eq!(r.take_secrets(), b"CLIENT_RANDOM cc dd\n");
        assert!(r.take_secrets().is_empty());
    }

    #[test]
    fn a_huge_block_length_is_an_error_not_an_allocation() {
        let mut ng = Ng::new(false);
        ng.idb(1, &[]).epb(0, 0, b"before", 6);
        let mut bytes = ng.out.clone();
        bytes.extend_from_slice(&6u32.to_le_bytes());
        bytes.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        bytes.extend_from_slice(&[0; 64]);
        let mut r = reader_of(&bytes).expect("opens");
        let (got, err) = read_all(&mut r);
        assert_eq!(got.len(), 1, "the packet before the damage");
        assert!(err.expect("an error").contains("more than the"));
        assert_eq!(r.buf.len(), BUFFER, "the buffer did not grow");
        // pcap: a record claiming 4 GiB.
        let mut pcap = Vec::new();
        pcap.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        pcap.extend_from_slice(&[2, 0, 4, 0]);
        pcap.extend_from_slice(&[0; 8]);
        pcap.extend_from_slice(&262_144u32.to_le_bytes());
        pcap.extend_from_slice(&1u32.to_le_bytes());
        pcap.extend_from_slice(&[0; 8]);
        pcap.extend_from_slice(&u32::MAX.to_le_bytes());
        pcap.extend_from_slice(&u32::MAX.to_le_bytes());
        let mut r = reader_of(&pcap).expect("opens");
        assert!(read_all(&mut r).1.expect("an error").contains("claims"));
        assert_eq!(r.buf.len(), BUFFER);
    }

    /// A block bigger than the first buffer is read whole.
    #[test]
    fn a_big_packet_grows_the_buffer_once() {
        let big = vec![0x5a; BUFFER * 2 + 3];
        let mut ng = Ng::new(false);
        ng.idb(1, &[])
            .epb(0, 0, &big, big.len() as u32)
            .epb(0, 1, b"next", 4);
        let mut r = reader_of(&ng.out).expect("opens");
        let (got, err) = read_all(&mut r);
        assert_eq!(err, None);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].1, big);
        assert_eq!(got[1].1, b"next");
    }

    /// Cut anywhere, a file yields the packets wholly before the cut, then the end (a cut
    /// between blocks) or one error (a cut inside one); never a panic.
    #[test]
    fn every_truncation() {
        let mut ng = Ng::new(false);
        let shb_end = ng.out.len();
        ng.idb(1, &[(9, vec![9])]);
        let mut blocks = vec![shb_end, ng.out.len()];
        let mut packets = Vec::new();
        for i in 0..4u8 {
            ng.epb(0, u64::from(i), &vec![i; 50 + usize::from(i)], 60);
            packets.push(ng.out.len());
            ng.spb(b"s");
            packets.push(ng.out.len());
        }
        blocks.extend(&packets);
        for cut in 0..=ng.out.len() {
            let Ok(mut r) = reader_of(&ng.out[..cut]) else {
                assert!(
                    cut < packets[0],
                    "cut at {cut}: a readable head was refused"
                );
                continue;
            };
            let (got, err) = read_all(&mut r);
            let whole = packets.iter().filter(|e| **e <= cut).count();
            assert_eq!(got.len(), whole, "cut at {cut}");
            assert_eq!(
                err.is_some(),
                !blocks.contains(&cut),
                "cut at {cut}: {err:?}"
            );
        }
    }

    #[test]
    fn pcap_in_both_orders_and_precisions() {
        for (magic, big, nano) in [
            (0xa1b2_c3d4u32, false, false),
            (0xa1b2_c3d4, true, false),
            (0xa1b2_3c4d, false, true),
            (0xa1b2_3c4d, true, true),
        ] {
            let w = |v: u32| {
                if big {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                }
            };
            let mut f = Vec::new();
            f.extend_from_slice(&w(magic));
            f.extend_from_slice(&if big { [0, 2, 0, 4] } else { [2, 0, 4, 0] });
            f.extend_from_slice(&[0; 8]);
            f.extend_from_slice(&w(262_144));
            f.extend_from_slice(&w(113));
            for (secs, frac, data) in [(5u32, 250_000u32, &b"one"[..]), (6, 999_999, b"two!")] {
                f.extend_from_slice(&w(secs));
                f.extend_from_slice(&w(frac));
                f.extend_from_slice(&w(data.len() as u32));
                f.extend_from_slice(&w(100));
                f.extend_from_slice(data);
            }
            let mut r = reader_of(&f).expect("opens");
            assert_eq!(r.nano(), nano);
            let (got, err) = read_all(&mut r);
            assert_eq!(err, None);
            let scale = if nano { 1 } else { 1000 };
            assert_eq!(
                got,
                vec![
                    (
                        ts(5, 250_000 * scale),
                        b"one".to_vec(),
                        100,
                        LinkType::LinuxSll
                    ),
                    (
                        ts(6, 999_999 * scale),
                        b"two!".to_vec(),
                        100,
                        LinkType::LinuxSll
                    ),
                ],
                "big {big} nano {nano}"
            );
        }
    }

    /// From a pipe, a packet is handed on once its bytes are in, before the writer is done.
    #[test]
    fn a_stream_gives_each_packet_as_it_arrives() {
        let mut ng = Ng::new(false);
        ng.idb(1, &[]).epb(0, 0, b"first", 5);
        let first = ng.out.len();
        ng.epb(0, 1, b"second", 6);
        let bytes = ng.out.clone();
        let (reader, mut writer) = std::io::pipe().expect("pipe");
        let (ack_tx, ack_rx) = std::sync::mpsc::channel();
        let feeder = std::thread::spawn(move || {
            writer.write_all(&bytes[..first]).expect("write");
            // The reader acknowledges the first packet while the rest is still unwritten
            // (the wait only bounds a broken reader that would never acknowledge).
            let acked = ack_rx
                .recv_timeout(std::time::Duration::from_secs(60))
                .is_ok();
            writer.write_all(&bytes[first..]).expect("write");
            acked
        });
        let file = File::from(std::os::fd::OwnedFd::from(reader));
        let mut r = FileReader::open(file, "pipe".into()).expect("opens");
        let (rec, data) = r.next().expect("reads").expect("a packet");
        assert_eq!((data, rec.wire_len), (&b"first"[..], 5));
        ack_tx.send(()).expect("ack");
        let (_, data) = r.next().expect("reads").expect("a packet");
        assert_eq!(data, b"second");
        assert!(r.next().expect("reads").is_none());
        assert!(
            feeder.join().expect("feeder"),
            "the first packet waited for more"
        );
    }
}
