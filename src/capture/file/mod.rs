//! Capture files read as they are: pcap (µs or ns, either byte order) and pcapng with every
//! interface's own link type and timestamp resolution, several sections one after another,
//! from a file or a stream on standard input.
//!
//! pcap-parser parses the file header and the pcapng blocks; this module frames them in one
//! buffer that is reused for the whole file. A record is handed on as soon as its bytes are in
//! (a `tcpdump -U -w - | wsnoop -r -` pipe prints as packets come), a length read off the file
//! is checked against [`MAX_BLOCK`] before anything is read or grown for it, and reading a
//! packet allocates nothing.
//!
//! Here, the reader and what it hands on; in `buffer` the one buffer and the reads into it,
//! in `classic` pcap records, in `pcapng` its blocks and interfaces, in `copies` the packets
//! two interfaces both captured.

use std::fs::File;

use pcap::{BpfProgram, Capture, Linktype};
use pcap_parser::PcapError;
use pcap_parser::nom;

use super::CaptureError;
use super::save::SaveFile;
use crate::event::Timestamp;
use crate::net::link::{LinkType, UnsupportedLinkType};

mod buffer;
mod classic;
mod copies;
mod pcapng;
#[cfg(test)]
mod tests;

use buffer::{u16_at, u32_at};
use copies::{Seen, network_layer};
use pcapng::{Interface, SHB};

/// The largest pcap record or pcapng block read: a 16 MiB packet with its headers and
/// options. A length beyond it is damage (or a hostile file) and ends the read with one line;
/// it is never an allocation.
pub const MAX_BLOCK: usize = (16 << 20) + (64 << 10);
/// The read buffer's first size; one read asks for up to this much.
const BUFFER: usize = 1 << 20;
/// Interfaces one pcapng section may describe: each costs a few dozen bytes, and a file of
/// nothing but interface blocks must not grow without end.
const MAX_INTERFACES: usize = 1 << 16;
/// TLS key log bytes kept until [`FileReader::take_secrets`] takes them.
const MAX_PENDING_SECRETS: usize = 16 << 20;

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

/// A packet read: its record, its bytes, and where the file holds them (a regular file's).
pub type ReadPacket<'a> = (Record, &'a [u8], Option<u64>);

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
    /// Copies of a packet that another interface of the file captured too (see `Seen` in copies.rs).
    pub duplicates: u64,
    /// Every packet record or block read, whether handed on or not.
    pub packets_read: u64,
    /// TLS key log bytes not kept because `MAX_PENDING_SECRETS` (16 MiB) were waiting to be taken.
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
    /// A regular file: the same file, for reading packets' bytes again at their place (see
    /// [`FileReader::replay_file`]), and where in it `buf[0]`'s bytes are minus `base`.
    replay: Option<(std::sync::Arc<File>, u64)>,
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
    /// The `-w` file: pcap, of the link type of the first interface.
    save: Option<SaveFile>,
    ahead: classic::Ahead,
}

/// libpcap's name for a link type ("EN10MB", "USB_LINUX"), for messages.
pub fn linktype_name(linktype: i32) -> String {
    Linktype(dlt_of(linktype))
        .get_name()
        .unwrap_or_else(|_| format!("LINKTYPE {linktype}"))
}

/// The DLT libpcap's filter compiler knows a file's LINKTYPE_ value by: they are the same but
/// for raw IP, whose DLT differs by platform.
/// The LINKTYPE_ value a file states for a libpcap DLT: DLT_RAW is 12 or 14 by platform,
/// LINKTYPE_RAW 101 everywhere; the others wsnoop reads are the same.
pub(super) fn linktype_of_dlt(dlt: i32) -> i32 {
    match dlt {
        12 | 14 => 101,
        other => other,
    }
}

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
        let stream = !input.metadata().is_ok_and(|m| m.is_file());
        // Standard input may be a file opened part way in; a clone that cannot be made only
        // means delivered bytes are copied to be compared later, as from a pipe.
        let replay = if stream {
            None
        } else {
            use std::io::Seek;
            let start = (&input).stream_position().ok();
            start.and_then(|start| Some((std::sync::Arc::new(input.try_clone().ok()?), start)))
        };
        let mut reader = FileReader {
            stream,
            replay,
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
            ahead: classic::Ahead::default(),
        };
        let got = reader.fill(4).map_err(|e| e.to_string())?;
        if got == 0 {
            return Err("empty file: no pcap or pcapng header".into());
        }
        let magic = u32_at(&reader.buf, 0, false);
        match magic {
            0xa1b2_c3d4 | 0xa1b2_3c4d | 0xa1b2_cd34 | 0xd4c3_b2a1 | 0x4d3c_b2a1 | 0x34cd_b2a1 => {
                if reader.fill(24).map_err(|e| e.to_string())? < 24 {
                    return Err(format!(
                        "truncated pcap file header: {} of 24 bytes",
                        reader.available()
                    ));
                }
                // The magic in the writer's byte order says the order, the timestamps'
                // resolution, and whether records have the modified format's longer header
                // (libpcap reads all six; pcap-parser knows no swapped modified magic).
                let big = magic & 0xff == 0xa1;
                let native = u32_at(&reader.buf, 0, big);
                let header = &reader.buf[..24];
                let (major, minor) = (u16_at(header, 4, big), u16_at(header, 6, big));
                if major != 2 {
                    return Err(format!("unsupported pcap file version {major}.{minor}"));
                }
                let network = u32_at(header, 20, big);
                reader.format = Format::Pcap {
                    big,
                    nano: native == 0xa1b2_3c4d,
                    modified: native == 0xa1b2_cd34,
                };
                reader.nano = native == 0xa1b2_3c4d;
                let units = if reader.nano {
                    1_000_000_000
                } else {
                    1_000_000
                };
                // The upper bits of the field carry FCS information, not the link type.
                reader
                    .interfaces
                    .push(Interface::new((network & 0x03FF_FFFF) as i32, units, 0, 0));
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

    /// The capture file again, when it is a regular file, for reading packets' bytes at the
    /// places [`FileReader::next`] gives.
    pub fn replay_file(&self) -> Option<std::sync::Arc<File>> {
        self.replay.as_ref().map(|(file, _)| file.clone())
    }

    /// Where the record's bytes are in the file, when it is a regular file.
    fn place_of(&self, record: &Record) -> Option<u64> {
        self.replay
            .as_ref()
            .map(|(_, start)| start + self.base + record.start as u64)
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

    /// Writes every packet the filter matches to `file` (`-w`).
    pub(super) fn save_to(&mut self, file: SaveFile) {
        self.save = Some(file);
    }

    pub fn flush_savefile(&mut self) -> Result<(), CaptureError> {
        match &mut self.save {
            Some(save) => save.flush(),
            None => Ok(()),
        }
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
    /// The next packet: what the file says of it, its bytes, and where they are in the file
    /// (a regular file's only).
    pub fn next(&mut self) -> Result<Option<ReadPacket<'_>>, CaptureError> {
        // A pcap record already in the buffer, of the file's one interface, with nothing to
        // filter, save or compare it with: what `keep` would say is known.
        if let Format::Pcap {
            big,
            nano,
            modified,
        } = self.format
            && self.keeps_every_packet()
            && let Some(r) = self.buffered_pcap_record(big, nano, modified)
        {
            self.stats.packets_read += 1;
            let at = self.place_of(&r);
            return Ok(Some((r, &self.buf[r.start..r.start + r.len], at)));
        }
        match self.next_step(false)? {
            Step::Packet(r) => {
                let at = self.place_of(&r);
                Ok(Some((r, &self.buf[r.start..r.start + r.len], at)))
            }
            Step::AtPacket | Step::End => Ok(None),
        }
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

    /// Whether [`FileReader::keep`] would hand on every packet of a pcap file (its one
    /// interface decoded, no filter, no `-w` file, no copies to compare): `next` then skips it.
    fn keeps_every_packet(&self) -> bool {
        self.filter.is_none()
            && self.save.is_none()
            && self.seen.is_none()
            && self.interfaces.first().is_some_and(|i| i.link.is_some())
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
                    path: save.name().to_string(),
                    message: format!(
                        "a packet of link type {} cannot go into this pcap file of link type {} \
                         (the capture's first interface): pcap holds one link type",
                        linktype_name(r.linktype),
                        linktype_name(save.linktype),
                    ),
                    reader_gone: false,
                });
            }
            save.write(r.ts, data, r.wire_len)?;
        }
        if let (Some(seen), Some(link)) = (&mut self.seen, iface.link)
            && seen.is_copy(iface.serial, r.ts, network_layer(link, data))
        {
            self.stats.duplicates += 1;
            return Ok(false);
        }
        Ok(true)
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
