//! The `-w` file: classic pcap with nanosecond timestamps, written here rather than by
//! libpcap, whose `pcap_dump` keeps quiet about a write that fails (a full disk, `/dev/full`):
//! every failed write or flush is an error that ends the run.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use super::CaptureError;
use crate::event::Timestamp;

/// pcap's magic for nanosecond timestamps.
const NANO_MAGIC: u32 = 0xa1b2_3c4d;
/// The snapshot length the file header states: libpcap's largest, which every packet wsnoop
/// reads fits.
const FILE_SNAPLEN: u32 = 262_144;

pub(crate) struct SaveFile {
    out: BufWriter<Box<dyn Write + Send>>,
    name: String,
    /// The file's link type (a LINKTYPE_ value).
    pub(crate) linktype: i32,
}

impl SaveFile {
    /// Creates the file (`-` is standard output, as for tcpdump) and writes its header.
    pub(crate) fn create(path: &Path, linktype: i32) -> Result<SaveFile, CaptureError> {
        let name = path.display().to_string();
        let out: Box<dyn Write + Send> = if path == Path::new("-") {
            Box::new(io::stdout())
        } else {
            Box::new(File::create(path).map_err(|e| error(&name, &e))?)
        };
        let mut save = SaveFile {
            out: BufWriter::with_capacity(64 * 1024, out),
            name,
            linktype,
        };
        let mut header = [0u8; 24];
        header[0..4].copy_from_slice(&NANO_MAGIC.to_le_bytes());
        header[4..6].copy_from_slice(&2u16.to_le_bytes());
        header[6..8].copy_from_slice(&4u16.to_le_bytes());
        // thiszone and sigfigs: zero.
        header[16..20].copy_from_slice(&FILE_SNAPLEN.to_le_bytes());
        header[20..24].copy_from_slice(&(linktype as u32).to_le_bytes());
        save.put(&header)?;
        Ok(save)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), CaptureError> {
        self.out.write_all(bytes).map_err(|e| error(&self.name, &e))
    }

    /// One packet record: `data` as captured, `wire_len` as it was on the wire.
    pub(crate) fn write(
        &mut self,
        ts: Timestamp,
        data: &[u8],
        wire_len: u32,
    ) -> Result<(), CaptureError> {
        let mut header = [0u8; 16];
        // pcap holds 32 bits of seconds, as libpcap writes them.
        header[0..4].copy_from_slice(&(ts.secs as u32).to_le_bytes());
        header[4..8].copy_from_slice(&ts.nanos.min(999_999_999).to_le_bytes());
        let caplen = u32::try_from(data.len()).unwrap_or(u32::MAX);
        header[8..12].copy_from_slice(&caplen.to_le_bytes());
        header[12..16].copy_from_slice(&wire_len.max(caplen).to_le_bytes());
        self.put(&header)?;
        self.put(data)
    }

    pub(crate) fn flush(&mut self) -> Result<(), CaptureError> {
        self.out.flush().map_err(|e| error(&self.name, &e))
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

fn error(name: &str, e: &io::Error) -> CaptureError {
    CaptureError::Savefile {
        path: name.to_string(),
        message: e.to_string(),
        reader_gone: e.kind() == io::ErrorKind::BrokenPipe,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a `-w` file holds, read back by the capture reader: the packets as written.
    #[test]
    fn a_written_file_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.pcap");
        let mut save = SaveFile::create(&path, 1).unwrap();
        let packet = [0x5au8; 60];
        let ts = Timestamp {
            secs: 1_700_000_000,
            nanos: 123_456_789,
        };
        save.write(ts, &packet, 100).unwrap();
        save.flush().unwrap();
        drop(save);
        let mut source = crate::capture::Source::open_file(&path).unwrap();
        match source.next_packet().unwrap() {
            crate::capture::Next::Packet(p) => {
                assert_eq!(p.data, &packet[..]);
                assert_eq!(p.ts, ts);
                assert_eq!(p.wire_len, 100);
            }
            _ => panic!("one packet"),
        }
        assert!(matches!(
            source.next_packet().unwrap(),
            crate::capture::Next::End
        ));
    }

    #[test]
    fn a_full_device_is_an_error() {
        let mut save = SaveFile::create(Path::new("/dev/full"), 1).unwrap();
        // The first writes fill the buffer; one of them, or the flush, meets the full device.
        let wrote = (0..100).all(|_| save.write(Timestamp::default(), &[0; 1500], 1500).is_ok());
        assert!(!wrote || save.flush().is_err());
    }
}
