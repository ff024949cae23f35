//! Classic pcap records: a 16-byte header (24 in the modified format) and the packet, in the
//! byte order and timestamp precision the file header gave.

use super::buffer::u32_at;
use super::{CaptureError, FileReader, MAX_BLOCK, Record, Step};
use crate::event::Timestamp;
use crate::net::link::LinkType;

impl FileReader {
    /// The next record. Its header is read here rather than by pcap-parser: a packet costs
    /// a few loads, where the parser's general path cost more than the rest of reading it.
    #[inline]
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
        Ok(Some(Step::Packet(
            self.take_record(header, caplen, big, nano),
        )))
    }

    /// The next record when it is wholly in the buffer and its length is sound: the common
    /// case, with no read and nothing that can fail. None sends the caller the general way.
    #[inline]
    pub(super) fn buffered_pcap_record(
        &mut self,
        big: bool,
        nano: bool,
        modified: bool,
    ) -> Option<Record> {
        let header = if modified { 24 } else { 16 };
        let rest = &self.buf[self.start..self.end];
        let caplen = u32_at(rest.get(..header)?, 8, big) as usize;
        (caplen <= MAX_BLOCK - header && rest.len() >= header + caplen)
            .then(|| self.take_record(header, caplen, big, nano))
    }

    /// The record whose `header` and `caplen` bytes are at the start of the buffer.
    #[inline]
    fn take_record(&mut self, header: usize, caplen: usize, big: bool, nano: bool) -> Record {
        // The fields at the same places in both formats; the modified format's other eight
        // bytes (interface index, protocol, packet type) say nothing wsnoop uses.
        let fields = &self.buf[self.start..self.start + header];
        let (ts_sec, ts_frac, origlen) = (
            u32_at(fields, 0, big),
            u32_at(fields, 4, big),
            u32_at(fields, 12, big),
        );
        let iface = &self.interfaces[0];
        let frac = u64::from(ts_frac);
        let nanos = if nano { frac } else { frac * 1000 }.min(999_999_999) as u32;
        let record = Record {
            ts: Timestamp {
                secs: i64::from(ts_sec),
                nanos,
            },
            wire_len: origlen,
            link: iface.link.unwrap_or(LinkType::Ethernet),
            linktype: iface.linktype,
            iface: 0,
            start: self.start + header,
            len: caplen,
        };
        self.consume(header + caplen);
        self.ahead.lead = self.ahead.lead.saturating_sub(1);
        record
    }

    /// The bytes of the record [`AHEAD`] records after the next one, when it and those before
    /// it are wholly buffered and every packet is handed on as it is: for asking for its
    /// connection's state before it is needed. A cursor kept just past the record shown last
    /// makes this one header read per packet; each record is shown once (a second call
    /// before the next record is read shows none).
    pub(crate) fn buffered_ahead(&mut self) -> Option<(LinkType, &[u8])> {
        let super::Format::Pcap { big, modified, .. } = self.format else {
            return None;
        };
        if !self.keeps_every_packet() {
            return None;
        }
        let header = if modified { 24 } else { 16 };
        let next = self.offset();
        // Behind the next record (another path read past it), or not counted from it: start
        // again from the next record.
        if self.ahead.at < next || self.ahead.at - next > (self.end - self.start) as u64 {
            self.ahead = Ahead { at: next, lead: 0 };
        }
        if self.ahead.lead > AHEAD {
            return None;
        }
        let buf = &self.buf[..self.end];
        let mut at = usize::try_from(self.ahead.at - self.base).ok()?;
        loop {
            let caplen = u32_at(buf.get(at..at + header)?, 8, big) as usize;
            let data = buf.get(at + header..(at + header).checked_add(caplen)?)?;
            let lead = self.ahead.lead;
            at += header + caplen;
            self.ahead.at += (header + caplen) as u64;
            self.ahead.lead += 1;
            if lead == AHEAD {
                return Some((self.interfaces.first()?.link?, data));
            }
        }
    }
}

/// How many records ahead of the next one [`FileReader::buffered_ahead`] looks.
pub(super) const AHEAD: u32 = super::super::LOOK_AHEAD as u32;

/// Where [`FileReader::buffered_ahead`]'s cursor is: a record's offset in the stream, and how
/// many records after the next one it is (one more than [`AHEAD`] once that one was shown).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Ahead {
    pub(super) at: u64,
    pub(super) lead: u32,
}
