//! Classic pcap records: a 16-byte header (24 in the modified format) and the packet, in the
//! byte order and timestamp precision the file header gave.

use pcap_parser::{
    LegacyPcapBlock, parse_pcap_frame, parse_pcap_frame_be, parse_pcap_frame_modified,
};

use super::buffer::u32_at;
use super::{CaptureError, FileReader, MAX_BLOCK, Record, Step, parse_error};
use crate::event::Timestamp;
use crate::net::link::LinkType;

impl FileReader {
    pub(super) fn pcap_record(
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
}
