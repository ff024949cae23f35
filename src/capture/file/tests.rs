use super::pcapng::{DSB, EPB, IDB, OPB, SPB};
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

/// Every packet handed on, then the error if any. Each packet's place in the file, which a
/// regular file always gives, holds its bytes.
fn read_all(reader: &mut FileReader) -> (Vec<Got>, Option<String>) {
    use std::os::unix::fs::FileExt;
    let mut got = Vec::new();
    let file = reader.replay_file().expect("a regular file is read again");
    loop {
        match reader.next() {
            Ok(Some((r, data, at))) => {
                let at = at.expect("a regular file's packets have a place");
                let mut again = vec![0; data.len()];
                file.read_exact_at(&mut again, at).expect("read again");
                assert_eq!(again, data, "the bytes at {at} are not the packet's");
                got.push((r.ts, data.to_vec(), r.wire_len, r.link));
            }
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

/// A classic pcap file of `linktype` in the writer's byte order `big`, its records of
/// (seconds, fraction, data), each with the modified format's eight more header bytes when
/// `modified` (interface index 3, protocol 0x0800, packet type 0, a pad byte); and where each
/// record ends.
fn classic_pcap(
    magic: u32,
    big: bool,
    modified: bool,
    linktype: u32,
    records: &[(u32, u32, &[u8])],
) -> (Vec<u8>, Vec<usize>) {
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
    f.extend_from_slice(&w(linktype));
    let mut ends = vec![f.len()];
    for &(secs, frac, data) in records {
        f.extend_from_slice(&w(secs));
        f.extend_from_slice(&w(frac));
        f.extend_from_slice(&w(data.len() as u32));
        f.extend_from_slice(&w(100));
        if modified {
            f.extend_from_slice(&w(3));
            f.extend_from_slice(&[8, 0, 0, 0]);
        }
        f.extend_from_slice(data);
        ends.push(f.len());
    }
    (f, ends)
}

/// A classic pcap cut at every byte, in the plain and the modified format: every record
/// wholly before the cut is read, and an error says so exactly when the cut is inside one.
#[test]
fn every_truncation_of_a_pcap() {
    let data: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 40 + usize::from(i)]).collect();
    let records: Vec<(u32, u32, &[u8])> =
        (0..4u32).map(|i| (i, 0, &data[i as usize][..])).collect();
    for (magic, big, modified) in [(0xa1b2_c3d4u32, false, false), (0xa1b2_cd34, true, true)] {
        let (f, ends) = classic_pcap(magic, big, modified, 1, &records);
        for cut in ends[0]..=f.len() {
            let mut r = reader_of(&f[..cut]).expect("the header is whole");
            let (got, err) = read_all(&mut r);
            let whole = ends[1..].iter().filter(|e| **e <= cut).count();
            assert_eq!(got.len(), whole, "big {big}, cut at {cut}");
            for (i, g) in got.iter().enumerate() {
                assert_eq!(g.1, vec![i as u8; 40 + i], "big {big}, cut at {cut}");
            }
            assert_eq!(
                err.is_some(),
                !ends.contains(&cut),
                "big {big}, cut at {cut}: {err:?}"
            );
        }
    }
}

#[test]
fn pcap_in_both_orders_and_precisions() {
    // The modified format (0xa1b2cd34, libpcap's "patched" headers) puts eight more bytes
    // after each record's four fields: a file made this way is read by tshark as "Modified
    // tcpdump - pcap" with these timestamps and lengths.
    for (magic, big, nano, modified) in [
        (0xa1b2_c3d4u32, false, false, false),
        (0xa1b2_c3d4, true, false, false),
        (0xa1b2_3c4d, false, true, false),
        (0xa1b2_3c4d, true, true, false),
        (0xa1b2_cd34, false, false, true),
        (0xa1b2_cd34, true, false, true),
    ] {
        let records: [(u32, u32, &[u8]); 2] = [(5, 250_000, b"one"), (6, 999_999, b"two!")];
        let (f, _) = classic_pcap(magic, big, modified, 113, &records);
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
            "big {big} nano {nano} modified {modified}"
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
    assert!(r.replay_file().is_none(), "a pipe cannot be read again");
    let (rec, data, at) = r.next().expect("reads").expect("a packet");
    assert_eq!((data, rec.wire_len, at), (&b"first"[..], 5, None));
    ack_tx.send(()).expect("ack");
    let (_, data, _) = r.next().expect("reads").expect("a packet");
    assert_eq!(data, b"second");
    assert!(r.next().expect("reads").is_none());
    assert!(
        feeder.join().expect("feeder"),
        "the first packet waited for more"
    );
}

/// The packet the reader shows ahead is the one handed on `AHEAD` packets later, in both
/// formats and byte orders, across the buffer's compactions (packets of up to 6 KB and some
/// of 60 KB, over 8 MB in all, read in 1 MiB reads); and none is shown ahead once a filter
/// decides what is handed on.
#[test]
fn the_packet_shown_ahead_is_the_one_handed_on_later() {
    let data: Vec<Vec<u8>> = (0..2400u32)
        .map(|i| {
            let len = if i % 97 == 0 {
                60_000
            } else {
                ((i * 7919) % 6100) as usize + 1
            };
            (0..len).map(|b| (b as u32 ^ i) as u8).collect()
        })
        .collect();
    let records: Vec<(u32, u32, &[u8])> = data.iter().map(|d| (1, 0, &d[..])).collect();
    let ahead = classic::AHEAD as usize;
    for (magic, big, modified) in [(0xa1b2_c3d4u32, false, false), (0xa1b2_cd34, true, true)] {
        let (f, _) = classic_pcap(magic, big, modified, 1, &records);
        let mut r = reader_of(&f).expect("a pcap");
        let mut shown = Vec::new();
        let mut handed = Vec::new();
        loop {
            shown.push(r.buffered_ahead().map(|(_, d)| d.to_vec()));
            match r.next() {
                Ok(Some((_, d, _))) => handed.push(d.to_vec()),
                Ok(None) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(handed, data, "big {big}");
        let mut seen = 0;
        for (i, s) in shown.iter().enumerate() {
            if let Some(s) = s {
                assert_eq!(Some(s), handed.get(i + ahead), "big {big}, packet {i}");
                seen += 1;
            }
        }
        // None is shown only where the buffer does not hold the packet ahead yet.
        assert!(seen > data.len() * 9 / 10, "big {big}: {seen} shown");
        let mut filtered = reader_of(&f).expect("a pcap");
        filtered.set_filter("tcp").unwrap_or_else(|e| panic!("{e}"));
        assert!(filtered.buffered_ahead().is_none());
    }
}
