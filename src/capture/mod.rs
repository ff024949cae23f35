//! Packets in: capture files (pcap, pcapng, or a stream of either on stdin), read by
//! [`file`], and live interfaces, through libpcap.

mod file;
mod save;

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use pcap::{Active, Capture, Device, Linktype, Precision};

use crate::event::Timestamp;
use crate::event::TsPrecision;
use crate::net::link::{LinkType, UnsupportedLinkType};
use save::SaveFile;

pub use file::{FileStats, MAX_BLOCK};

/// How many packets after the next one [`Source::buffered_ahead`] shows: far enough for the
/// analyzer's steps of asking for a connection's state (`Analyzer::look_ahead`) to arrive in
/// time, near enough for the packet to be in the file's buffer.
pub const LOOK_AHEAD: usize = 8;

/// Snapshot length for live capture: whole packets, as tcpdump takes them. It costs no ring
/// space: the kernel packs packets into the ring's blocks by their captured length (TPACKET_V3).
pub const SNAPLEN: i32 = 262_144;
/// Kernel buffer for a live capture without `-B`, in KiB. Out of immediate mode libpcap makes
/// the buffer a ring of 256 KiB TPACKET_V3 blocks that the kernel fills with packets one after
/// another, as tcpdump's: with the traffic of tests/live_burst.rs (handshakes, short messages,
/// acknowledgements) 4 MiB took some 10 000 packets, so this holds some 80 000.
pub const DEFAULT_BUFFER_KIB: i32 = 32 * 1024;
/// The same for `any`, which sees the packets of every interface (and puts those of the
/// loopback in the ring twice, once each way, though libpcap passes on one copy).
pub const DEFAULT_ANY_BUFFER_KIB: i32 = 64 * 1024;
/// libpcap's packet buffer timeout, which it makes the TPACKET_V3 block retire timeout: the
/// kernel hands a block over when it is full, or once it has held packets this long. So it
/// bounds how late a packet on a quiet interface reaches wsnoop: from send to printed JSON
/// line, at most 116 ms here, with or without `--threads`. It also spends ring space: a reader
/// that stalls (its output paused) gets a block per timeout however few packets it holds, so
/// the ring lasts (buffer / 256 KiB) timeouts of a stall, where tcpdump's 1000 ms lasts ten
/// times as long. Shorter would cost more space, longer would print later.
///
/// Immediate mode, the alternative, hands each packet over at once but takes TPACKET_V2, a ring
/// of one fixed slot per packet, sized for the snapshot length on `any` (256 slots of 512 KiB
/// at `-B 65536`) and for the MTU on Ethernet devices (64 KiB with receive offloads). With the
/// burst of tests/live_burst.rs at `-B 65536` it dropped 14 158 of the 14 442 packets that the
/// filter passed, where tcpdump and this ring dropped none.
pub const LIVE_READ_TIMEOUT_MS: i32 = 100;
/// How long after capturing a packet the kernel has surely handed it over: one timeout as
/// measured here (the send-to-print figures above), twice that for margin.
pub const LIVE_DELIVERY_LIMIT: Duration = Duration::from_millis(2 * LIVE_READ_TIMEOUT_MS as u64);
/// After the ring is drained, wsnoop pauses before waiting on it again, while the ring fills,
/// for as long as a quarter of the ring lasted at the rate it filled before, at most this, so
/// that a packet on a busy interface is read at most this much later; on a quiet one there is
/// no pause (see [`nap_for`]). Each wait is a `poll` that takes the socket's receive lock,
/// which the kernel takes for every packet it puts in the ring, and with `--threads` every
/// return to the ring hands the workers what they have not had yet. At 150,000 packets a
/// second, waking for every 256 KiB block the kernel handed over spent some 30% of a live
/// run's CPU in that lock, in waking up and in batches handed over part full.
const LIVE_NAP_MAX: Duration = Duration::from_millis(50);
/// The size of the blocks libpcap makes the ring of, for this snapshot length (see
/// [`DEFAULT_BUFFER_KIB`]).
const RING_BLOCK_BYTES: u64 = 256 * 1024;
/// Smaller rings are waited on at once. At 150,000 packets a second (`benches/live.sh`), with
/// pauses as [`nap_for`] makes them the kernel dropped packets with `-B 2048` and `-B 4096`,
/// where tcpdump and polling at once dropped none; not with `-B 8192`, `16384` or `32768` (two
/// or three rounds each), so half of that is kept as a margin.
const NAP_MIN_RING_BYTES: u64 = 16 * 1024 * 1024;
/// What a packet takes in the ring beside its bytes (the TPACKET_V3 header and link address,
/// aligned), near enough for the pace of [`Source::wait_for_packets`].
const RING_PACKET_OVERHEAD: u64 = 64;
/// How far past a packet in the ring the CPU is asked for the bytes of those after it. The
/// kernel wrote them on the other CPU: the first touch of each line was a miss, a quarter of a
/// live run's user time beyond the same packets read from a file. About two packets ahead of
/// this mix, which the decoding of one packet outlasts.
const RING_PREFETCH_AHEAD: usize = 2048;
/// How long [`Source::wait_for_packets`] waits on a quiet interface before the run loop checks
/// for a stop request, a `--duration` limit or kernel drops.
const IDLE_WAIT_MS: i32 = 100;

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{path}: {message}")]
    Open { path: String, message: String },
    #[error("bad filter expression \"{filter}\": {message}")]
    Filter { filter: String, message: String },
    #[error(transparent)]
    Link(#[from] UnsupportedLinkType),
    #[error("reading {source_name}: {message}")]
    Read {
        source_name: String,
        message: String,
    },
    #[error(
        "{device}: {message}\nCapturing needs root or the CAP_NET_RAW capability: run as root, or once \
`sudo setcap cap_net_raw,cap_net_admin=eip {binary}`"
    )]
    Permission {
        device: String,
        message: String,
        binary: String,
    },
    #[error("{device}: {message}")]
    Device { device: String, message: String },
    #[error("no capture device found: {0}")]
    NoDevice(String),
    #[error("cannot write {path}: {message}")]
    Savefile {
        path: String,
        message: String,
        /// The reader of `-w -` went away (`| tcpdump -c 1 -r -`): an end, not a failure.
        reader_gone: bool,
    },
}

/// How to open a live capture.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    /// None: libpcap's default device, as tcpdump picks it.
    pub device: Option<String>,
    pub promiscuous: bool,
    /// Kernel buffer size in KiB (`-B`); None: [`DEFAULT_BUFFER_KIB`], or
    /// [`DEFAULT_ANY_BUFFER_KIB`] on `any`.
    pub buffer_kib: Option<i32>,
}

enum Handle {
    File(Box<file::FileReader>),
    Live(Capture<Active>),
}

/// One packet, borrowed from libpcap's buffer until the next read.
pub struct Packet<'a> {
    pub ts: Timestamp,
    pub data: &'a [u8],
    /// Length on the wire; more than `data.len()` when the snapshot length cut it.
    pub wire_len: u32,
    pub link: LinkType,
    /// Where the capture file holds `data`: a regular file's packets only.
    pub at: Option<u64>,
}

pub enum Next<'a> {
    Packet(Packet<'a>),
    /// A live read found nothing captured: [`Source::wait_for_packets`] before reading again.
    Idle,
    End,
}

/// What one [`Source::next_live_batch`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Batch {
    /// Packets were handed over.
    Read,
    /// Nothing captured: [`Source::wait_for_packets`] before reading again.
    Idle,
    End,
}

/// At most this many packets go to one batch: the run loop's checks (a stop request, the
/// kernel's drops) run between batches, and a batch of packets this small takes well under
/// a millisecond.
const LIVE_BATCH: usize = 256;

/// Kernel and interface counters of a live capture.
#[derive(Clone, Copy, Debug)]
pub struct LiveStats {
    pub received: u32,
    pub dropped: u32,
    pub if_dropped: u32,
}

pub struct Source {
    handle: Handle,
    name: String,
    link: LinkType,
    live: Option<LiveRing>,
    precision: TsPrecision,
    /// The `-w` file of a live capture (a file's reader writes its own).
    savefile: Option<SaveFile>,
}

/// A live capture's ring, and how fast it filled since the last wait on it.
struct LiveRing {
    /// Polled while no packet is waiting.
    fd: RawFd,
    ring_bytes: u64,
    round_start: Instant,
    round_bytes: u64,
}

impl LiveRing {
    fn nap(&self) -> Duration {
        nap_for(
            self.ring_bytes,
            self.round_start.elapsed(),
            self.round_bytes,
        )
    }
}

/// How long to let a ring of `ring_bytes` fill after `round_bytes` came in `round`: as long as
/// a quarter of it, less two blocks, lasts at that rate, at most [`LIVE_NAP_MAX`]. None after
/// a round that brought less than a block: the kernel then hands blocks over at its timeout,
/// not full, and a pause would only make them later (10 messages 300 ms apart on lo: median
/// 54 ms from send to printed line without a pause, 65-70 ms with one), while the wake-ups it
/// saves are a few a second; and a burst after a quiet spell has the ring's room. None either
/// in a ring smaller than [`NAP_MIN_RING_BYTES`].
fn nap_for(ring_bytes: u64, round: Duration, round_bytes: u64) -> Duration {
    let room = (ring_bytes / 4).saturating_sub(2 * RING_BLOCK_BYTES);
    if round_bytes < RING_BLOCK_BYTES || ring_bytes < NAP_MIN_RING_BYTES {
        return Duration::ZERO;
    }
    round
        .mul_f64(room as f64 / round_bytes as f64)
        .min(LIVE_NAP_MAX)
}

fn live_packet(raw: pcap::Packet<'_>, link: LinkType) -> Packet<'_> {
    let header = raw.header;
    Packet {
        at: None,
        // With nanosecond precision libpcap puts nanoseconds in tv_usec.
        ts: Timestamp {
            secs: header.ts.tv_sec,
            nanos: header.ts.tv_usec.clamp(0, 999_999_999) as u32,
        },
        data: raw.data,
        wire_len: header.len,
        link,
    }
}

fn link_of<T: pcap::Activated + ?Sized>(cap: &Capture<T>) -> Result<LinkType, CaptureError> {
    let dlt = cap.get_datalink();
    let name = dlt.get_name().unwrap_or_else(|_| "unknown".to_string());
    Ok(LinkType::from_dlt(dlt.0, &name)?)
}

impl Source {
    /// Opens a capture file, or standard input for "-". A pcapng file is read up to its
    /// first packet, so that the interfaces it declares there decide the output's precision.
    pub fn open_file(path: &Path) -> Result<Source, CaptureError> {
        let name = path.display().to_string();
        let open_err = |message: String| CaptureError::Open {
            path: name.clone(),
            message,
        };
        let stdin = path == Path::new("-");
        let input = if stdin {
            // Read straight from descriptor 0 in large reads, past std's own buffer.
            std::io::stdin()
                .as_fd()
                .try_clone_to_owned()
                .map(std::fs::File::from)
        } else {
            std::fs::File::open(path)
        }
        .map_err(|e| open_err(e.to_string()))?;
        let source_name = if stdin {
            "standard input".to_string()
        } else {
            name.clone()
        };
        let reader = file::FileReader::open(input, source_name.clone()).map_err(open_err)?;
        // A file whose interfaces are all of link types wsnoop cannot decode says so at once;
        // with one it decodes, packets of the others are skipped and counted.
        let link = match reader.first_link() {
            Some(Ok((link, _))) => link,
            Some(Err(unsupported)) => return Err(unsupported.into()),
            None => LinkType::Ethernet,
        };
        Ok(Source {
            link,
            precision: if reader.nano() {
                TsPrecision::Nano
            } else {
                TsPrecision::Micro
            },
            handle: Handle::File(Box::new(reader)),
            name: source_name,
            live: None,
            savefile: None,
        })
    }

    /// Opens a live capture whose ring packs packets (TPACKET_V3, as tcpdump's) and hands them
    /// over within [`LIVE_DELIVERY_LIMIT`].
    ///
    /// The handle is non-blocking and [`Source::wait_for_packets`] waits in its own `poll`: on
    /// Linux, libpcap's blocking read keeps polling through its read timeout until a packet
    /// comes, so a quiet interface would never give the run loop a chance to see Ctrl-C or
    /// `--duration`.
    pub fn open_live(options: &LiveOptions) -> Result<Source, CaptureError> {
        let device = match &options.device {
            // As tcpdump: a number is the interface at that place in `-D`'s list, unless an
            // interface has that name.
            Some(name) if name.bytes().all(|b| b.is_ascii_digit()) => {
                let list = Device::list().map_err(|e| CaptureError::NoDevice(e.to_string()))?;
                match list.iter().position(|d| d.name == *name) {
                    Some(at) => list[at].clone(),
                    None => {
                        let index: usize = name.parse().unwrap_or(0);
                        index
                            .checked_sub(1)
                            .and_then(|i| list.get(i).cloned())
                            .ok_or_else(|| {
                                CaptureError::NoDevice(format!(
                                    "no interface {name} in the list (`wsnoop -D` lists {})",
                                    list.len()
                                ))
                            })?
                    }
                }
            }
            Some(name) => Device::from(name.as_str()),
            None => Device::lookup()
                .map_err(|e| CaptureError::NoDevice(e.to_string()))?
                .ok_or_else(|| CaptureError::NoDevice("libpcap found none".into()))?,
        };
        let device_name = device.name.clone();
        let mut inactive = Capture::from_device(device)
            .map_err(|e| CaptureError::Device {
                device: device_name.clone(),
                message: e.to_string(),
            })?
            .promisc(options.promiscuous)
            .snaplen(SNAPLEN)
            .timeout(LIVE_READ_TIMEOUT_MS)
            .precision(Precision::Nano);
        let kib = options.buffer_kib.unwrap_or(if device_name == "any" {
            DEFAULT_ANY_BUFFER_KIB
        } else {
            DEFAULT_BUFFER_KIB
        });
        inactive = inactive.buffer_size(kib.saturating_mul(1024));
        let mut cap = inactive.open().map_err(|e| live_error(&device_name, e))?;
        if device_name == "any" {
            // As tcpdump does: the cooked v2 header also names the interface of each packet.
            // A libpcap without it keeps cooked v1, which decodes as well.
            let _ = cap.set_datalink(pcap::Linktype::LINUX_SLL2);
        }
        let cap = cap.setnonblock().map_err(|e| CaptureError::Device {
            device: device_name.clone(),
            message: clean_pcap_message(&e.to_string()),
        })?;
        Ok(Source {
            link: link_of(&cap)?,
            live: Some(LiveRing {
                fd: cap.as_raw_fd(),
                ring_bytes: u64::try_from(kib).unwrap_or(0).saturating_mul(1024),
                round_start: Instant::now(),
                round_bytes: 0,
            }),
            handle: Handle::Live(cap),
            name: device_name,
            precision: TsPrecision::Nano,
            savefile: None,
        })
    }

    pub fn link(&self) -> LinkType {
        self.link
    }

    pub fn precision(&self) -> TsPrecision {
        self.precision
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_live(&self) -> bool {
        matches!(self.handle, Handle::Live(_))
    }

    /// A capture file read from a pipe or socket, not from a regular file.
    pub fn is_stream(&self) -> bool {
        matches!(&self.handle, Handle::File(reader) if reader.is_stream())
    }

    /// The next packet of a stream is not wholly read yet: reading it may wait, so what was
    /// printed should be flushed first.
    pub fn input_waits(&self) -> bool {
        match &self.handle {
            Handle::File(reader) => !reader.next_is_buffered(),
            Handle::Live(_) => false,
        }
    }

    /// The link-layer header type as tcpdump names it: "EN10MB (Ethernet)".
    pub fn link_type_name(&self) -> String {
        let dlt = match &self.handle {
            Handle::File(reader) => match reader.first_link() {
                Some(Ok((_, linktype))) => Linktype(linktype),
                _ => Linktype(1),
            },
            Handle::Live(cap) => cap.get_datalink(),
        };
        match (dlt.get_name(), dlt.get_description()) {
            (Ok(name), Ok(desc)) => format!("{name} ({desc})"),
            (Ok(name), Err(_)) => name,
            _ => format!("DLT {}", dlt.0),
        }
    }

    /// Applies a BPF filter expression, as tcpdump takes it. A file's packets are filtered
    /// here, with the expression compiled for each link type its interfaces have.
    pub fn set_filter(&mut self, filter: &str) -> Result<(), CaptureError> {
        let result = match &mut self.handle {
            Handle::File(reader) => return reader.set_filter(filter),
            Handle::Live(cap) => cap.filter(filter, true),
        };
        result.map_err(|e| CaptureError::Filter {
            filter: filter.to_string(),
            message: clean_pcap_message(&e.to_string()),
        })
    }

    /// Also writes every packet read to a pcap file (`-w`). From a capture file, every packet
    /// the filter matches (copies on a second interface too, not those of interfaces wsnoop
    /// cannot decode); the pcap file has the link type of the first interface wsnoop decodes,
    /// and a packet of another link type ends the run with an error, since pcap holds one.
    pub fn save_to(&mut self, path: &Path) -> Result<(), CaptureError> {
        match &mut self.handle {
            // The reader writes, as it also sees the packets it does not hand on.
            Handle::File(reader) => {
                let first = match reader.first_link() {
                    Some(Ok((_, first))) => first,
                    _ => 1,
                };
                reader.save_to(SaveFile::create(path, first)?);
            }
            Handle::Live(cap) => {
                let linktype = file::linktype_of_dlt(cap.get_datalink().0);
                self.savefile = Some(SaveFile::create(path, linktype)?);
            }
        }
        Ok(())
    }

    /// Flushes the `-w` file, if any.
    pub fn flush_savefile(&mut self) -> Result<(), CaptureError> {
        if let Handle::File(reader) = &mut self.handle {
            return reader.flush_savefile();
        }
        match &mut self.savefile {
            Some(save) => save.flush(),
            None => Ok(()),
        }
    }

    /// The TLS key log bytes of the file's Decryption Secrets Blocks read since the last call,
    /// in file order (empty for a live capture).
    pub fn take_secrets(&mut self) -> Vec<u8> {
        match &mut self.handle {
            Handle::File(reader) => reader.take_secrets(),
            Handle::Live(_) => Vec::new(),
        }
    }

    /// What the file reader read but did not hand on (None for a live capture).
    pub fn file_stats(&self) -> Option<FileStats> {
        match &self.handle {
            Handle::File(reader) => Some(reader.stats()),
            Handle::Live(_) => None,
        }
    }

    /// The capture file again, when packets are read from a regular file: the places
    /// [`Packet::at`] gives are in it.
    pub fn replay_file(&self) -> Option<std::sync::Arc<std::fs::File>> {
        match &self.handle {
            Handle::File(reader) => reader.replay_file(),
            Handle::Live(_) => None,
        }
    }

    /// A packet some records after the next one, when the file's buffer already holds it:
    /// for asking for its connection's state ahead of time. Never for live captures, whose
    /// ring the kernel is still filling.
    #[inline]
    pub fn buffered_ahead(&mut self) -> Option<(LinkType, &[u8])> {
        match &mut self.handle {
            Handle::File(reader) => reader.buffered_ahead(),
            Handle::Live(_) => None,
        }
    }

    pub fn next_packet(&mut self) -> Result<Next<'_>, CaptureError> {
        let result = match &mut self.handle {
            Handle::File(reader) => {
                let Some((record, data, at)) = reader.next()? else {
                    return Ok(Next::End);
                };
                return Ok(Next::Packet(Packet {
                    ts: record.ts,
                    data,
                    wire_len: record.wire_len,
                    link: record.link,
                    at,
                }));
            }
            Handle::Live(cap) => cap.next_packet(),
        };
        let raw = match result {
            Ok(p) => p,
            Err(pcap::Error::NoMorePackets) => return Ok(Next::End),
            Err(pcap::Error::TimeoutExpired) => {
                // Nothing captured: what the -w file holds goes out, so that it keeps up
                // with a quiet interface, at no cost while packets flow.
                if let Some(save) = &mut self.savefile {
                    save.flush()?;
                }
                return Ok(Next::Idle);
            }
            Err(e) => {
                return Err(CaptureError::Read {
                    source_name: self.name.clone(),
                    message: clean_pcap_message(&e.to_string()),
                });
            }
        };
        let packet = live_packet(raw, self.link);
        if let Some(save) = &mut self.savefile {
            save.write(packet.ts, packet.data, packet.wire_len)?;
        }
        Ok(Next::Packet(packet))
    }

    /// Live: hands each packet the kernel has captured to `each` straight from the ring, up to
    /// [`LIVE_BATCH`] of them, until `each` returns false (the packets left of the batch are
    /// passed over). `next_packet` would go through `pcap_next_ex`, which copies every packet
    /// out of the ring first (7% of a live run's CPU). Files and streams read with
    /// [`Source::next_packet`].
    pub fn next_live_batch(
        &mut self,
        each: &mut dyn FnMut(Packet<'_>) -> bool,
    ) -> Result<Batch, CaptureError> {
        let Handle::Live(cap) = &mut self.handle else {
            return Ok(Batch::End);
        };
        let (link, savefile) = (self.link, &mut self.savefile);
        let mut wanted = true;
        let mut save_error = None;
        // The ring's blocks hold packets one after another: from each packet on, the lines up
        // to RING_PREFETCH_AHEAD bytes past it, each asked for once.
        let mut fetched_to = 0usize;
        let mut bytes = 0u64;
        let result = cap.dispatch(Some(LIVE_BATCH), |raw| {
            let at = raw.data.as_ptr() as usize;
            let wanted_to = at.saturating_add(raw.data.len() + RING_PREFETCH_AHEAD);
            if !(at..=wanted_to).contains(&fetched_to) {
                // The first packet, or the next block, which can be anywhere in the ring.
                fetched_to = at;
            }
            crate::ffi::prefetch_range(fetched_to, wanted_to);
            fetched_to = wanted_to;
            bytes += raw.data.len() as u64 + RING_PACKET_OVERHEAD;
            if !wanted {
                return;
            }
            let packet = live_packet(raw, link);
            if let Some(save) = savefile.as_mut()
                && let Err(e) = save.write(packet.ts, packet.data, packet.wire_len)
            {
                save_error = Some(e);
                wanted = false;
                return;
            }
            wanted = each(packet);
        });
        if let Some(ring) = &mut self.live {
            ring.round_bytes += bytes;
        }
        if let Some(e) = save_error {
            return Err(e);
        }
        match result {
            // Fewer than asked for: libpcap found no more blocks handed over. Asking again at
            // once would only poll the ring for nothing.
            Ok(n) if n < LIVE_BATCH => {
                if let Some(save) = &mut self.savefile {
                    save.flush()?;
                }
                Ok(Batch::Idle)
            }
            Ok(_) => Ok(Batch::Read),
            Err(pcap::Error::NoMorePackets) => Ok(Batch::End),
            Err(e) => Err(CaptureError::Read {
                source_name: self.name.clone(),
                message: clean_pcap_message(&e.to_string()),
            }),
        }
    }

    /// After [`Next::Idle`]: pauses while the ring fills (see [`LIVE_NAP_MAX`]), then waits
    /// until the kernel hands over packets, for at most `IDLE_WAIT_MS`, so that the caller
    /// checks its limits on a quiet interface too. A signal cuts both short (neither is
    /// restarted), so a stop request is seen at once.
    pub fn wait_for_packets(&mut self) {
        if let Some(ring) = &mut self.live {
            let nap = ring.nap();
            ring.round_start = Instant::now();
            ring.round_bytes = 0;
            crate::ffi::pause(nap);
            crate::ffi::wait_readable(ring.fd, IDLE_WAIT_MS);
        }
    }

    /// libpcap's counters, for live captures.
    pub fn live_stats(&mut self) -> Option<LiveStats> {
        match &mut self.handle {
            Handle::Live(cap) => cap.stats().ok().map(|s| LiveStats {
                received: s.received,
                dropped: s.dropped,
                if_dropped: s.if_dropped,
            }),
            Handle::File(_) => None,
        }
    }
}

fn clean_pcap_message(message: &str) -> String {
    message
        .trim_start_matches("libpcap error: ")
        .trim()
        .to_string()
}

fn live_error(device: &str, e: pcap::Error) -> CaptureError {
    let message = clean_pcap_message(&e.to_string());
    let lower = message.to_ascii_lowercase();
    if lower.contains("permission") || lower.contains("operation not permitted") {
        CaptureError::Permission {
            device: device.to_string(),
            message,
            binary: std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "wsnoop".into()),
        }
    } else {
        CaptureError::Device {
            device: device.to_string(),
            message,
        }
    }
}

/// Lists capture devices as `tcpdump -D` does, each followed by its addresses.
pub fn list_devices() -> Result<Vec<String>, CaptureError> {
    let devices = Device::list().map_err(|e| CaptureError::NoDevice(e.to_string()))?;
    Ok(devices
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let mut line = format!("{}.{}", i + 1, d.name);
            if let Some(desc) = &d.desc {
                line.push_str(&format!(" ({desc})"));
            }
            if let Some(flags) = device_flags(&d.flags) {
                line.push_str(&format!(" [{flags}]"));
            }
            let addrs: Vec<String> = d.addresses.iter().map(|a| a.addr.to_string()).collect();
            if !addrs.is_empty() {
                line.push_str(&format!(" {}", addrs.join(" ")));
            }
            line
        })
        .collect())
}

/// The bracketed flags of a `tcpdump -D` line, None where tcpdump prints none.
fn device_flags(flags: &pcap::DeviceFlags) -> Option<String> {
    use pcap::ConnectionStatus;
    let mut parts = Vec::new();
    if flags.is_up() {
        parts.push("Up");
    }
    if flags.is_running() {
        parts.push("Running");
    }
    if flags.is_wireless() {
        parts.push("Wireless");
    }
    if flags.is_loopback() {
        parts.push("Loopback");
    }
    let status = &flags.connection_status;
    if parts.is_empty() && *status == ConnectionStatus::Unknown {
        return None;
    }
    let mut text = if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join(", ")
    };
    let status = match (flags.is_wireless(), status) {
        (_, ConnectionStatus::NotApplicable) => None,
        (true, ConnectionStatus::Unknown) => Some("Association status unknown"),
        (true, ConnectionStatus::Connected) => Some("Associated"),
        (true, ConnectionStatus::Disconnected) => Some("Not associated"),
        (false, ConnectionStatus::Unknown) => Some("Connection status unknown"),
        (false, ConnectionStatus::Connected) => Some("Connected"),
        (false, ConnectionStatus::Disconnected) => Some("Disconnected"),
    };
    if let Some(status) = status {
        text.push_str(", ");
        text.push_str(status);
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn the_pause_leaves_three_quarters_of_the_ring_and_two_blocks_free_at_the_rate_seen() {
        // 4 MiB in 10 ms is 400 MiB/s: a quarter of a 16 MiB ring less two 256 KiB blocks
        // (3.5 MiB) lasts 8.75 ms, of a 32 MiB ring (7.5 MiB) 18.75 ms.
        let round = Duration::from_millis(10);
        assert_eq!(
            nap_for(16 * MIB, round, 4 * MIB),
            Duration::from_micros(8750)
        );
        assert_eq!(
            nap_for(32 * MIB, round, 4 * MIB),
            Duration::from_micros(18750)
        );
        // Twice the rate, half the pause.
        assert_eq!(
            nap_for(32 * MIB, round, 8 * MIB),
            Duration::from_micros(9375)
        );
        // tcpdump's 2 MiB, and anything under 16 MiB: no pause.
        assert_eq!(nap_for(2 * MIB, round, MIB), Duration::ZERO);
        assert_eq!(nap_for(8 * MIB, round, MIB), Duration::ZERO);
    }

    #[test]
    fn no_pause_after_a_quiet_round_and_never_past_the_bound() {
        assert_eq!(
            nap_for(32 * MIB, Duration::from_millis(100), 0),
            Duration::ZERO
        );
        // A trickle: blocks handed over at the kernel's timeout.
        assert_eq!(
            nap_for(32 * MIB, Duration::from_millis(100), 100_000),
            Duration::ZERO
        );
        // 1 MiB in 100 ms: 7.5 MiB would last 750 ms.
        assert_eq!(
            nap_for(32 * MIB, Duration::from_millis(100), MIB),
            LIVE_NAP_MAX
        );
        assert!(LIVE_NAP_MAX < Duration::from_millis(LIVE_READ_TIMEOUT_MS as u64));
    }
}
