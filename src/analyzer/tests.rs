use super::*;
use crate::event::Event;
use crate::net::segment::TcpFlags;

fn key(port: u16) -> FlowKey {
    let a: std::net::SocketAddr = ([10, 0, 0, 1], port).into();
    let b: std::net::SocketAddr = ([10, 0, 0, 2], 80).into();
    FlowKey::new(a, b).0
}

fn at(secs: i64) -> Timestamp {
    Timestamp { secs, nanos: 0 }
}

/// A tenth of the table (at least one), the longest idle; among equally idle ones the
/// lowest numbers, whatever order the table lists them in.
#[test]
fn eviction_takes_the_longest_idle_tenth_ties_by_number() {
    let mut entries: Vec<(Timestamp, u64, FlowKey)> = (0..25u16)
        .map(|i| {
            (
                at(if i % 2 == 0 { 5 } else { 9 }),
                u64::from(i),
                key(1000 + i),
            )
        })
        .collect();
    entries.reverse();
    let victims = eviction_victims(entries.iter().copied());
    assert_eq!(
        victims,
        vec![(0, key(1000)), (2, key(1002))],
        "25 entries: 2 victims, the idle ones with the lowest numbers"
    );
    entries.rotate_left(7);
    assert_eq!(eviction_victims(entries.iter().copied()), victims);
    let one = [(at(3), 7, key(1))];
    assert_eq!(eviction_victims(one.iter().copied()), vec![(7, key(1))]);
    assert!(eviction_victims(std::iter::empty()).is_empty());
}

#[test]
fn stats_add_every_counter_and_keep_the_largest_snapshot_length() {
    let mut a = Stats {
        packets: 1,
        evicted: 2,
        snaplen: 96,
        ..Stats::default()
    };
    a.ws.frames = 3;
    let mut b = Stats {
        packets: 10,
        timed_out: 4,
        snaplen: 64,
        ..Stats::default()
    };
    b.ws.frames = 5;
    b.ws.http_given_up.reported = 1;
    a += b;
    assert_eq!(
        (a.packets, a.evicted, a.timed_out, a.snaplen, a.ws.frames),
        (11, 2, 4, 96, 8)
    );
    assert_eq!(a.ws.http_given_up.reported, 1);
}

/// A sweep's lists are the last sweep's, emptied: what one sweep ended and removed is not
/// ended again at the next, though a new connection on the same endpoints is in the table.
#[test]
fn a_sweep_lists_only_what_is_idle_at_its_own_time() {
    let mut analyzer = Analyzer::new(AnalyzerOptions::default());
    let timeout = analyzer.options.flows.idle_timeout_secs;
    let syn = |analyzer: &mut Analyzer, secs: i64| {
        let seg = TcpSegment {
            src: ([10, 0, 0, 1], 1000).into(),
            dst: ([10, 0, 0, 2], 80).into(),
            seq: 1,
            ack: 0,
            flags: TcpFlags {
                syn: true,
                ..TcpFlags::default()
            },
            payload: &[],
            cut: None,
            packet_len: 54,
            payload_at: None,
        };
        analyzer.segment_placed(at(secs), &seg, None, &mut |_: &Event<'_>| {});
    };
    let sweep = |analyzer: &mut Analyzer, secs: i64| {
        let plan = analyzer.sweep_plan(at(secs));
        let listed = (plan.linger.clone(), plan.timed_out.clone());
        analyzer.apply_sweep(&plan, at(secs), &mut |_: &Event<'_>| {}, &mut |_, _| {});
        analyzer.recycle_plan(plan);
        listed
    };
    syn(&mut analyzer, 0);
    assert_eq!(
        sweep(&mut analyzer, timeout + 1),
        (vec![], vec![(0, key(1000))])
    );
    syn(&mut analyzer, timeout + 2);
    assert_eq!(sweep(&mut analyzer, timeout + 3), (vec![], vec![]));
    assert_eq!(analyzer.stats().timed_out, 1);
    assert_eq!(
        analyzer.flows.len(),
        1,
        "the second connection is still open"
    );
}

/// Looking ahead only asks for lines: with it at every packet (below the number of
/// connections where the run loop would start it), every event of the bundled captures is
/// the same as without it.
#[test]
fn looking_ahead_changes_no_event() {
    use crate::capture::{Next, Source};
    let events = |path: &std::path::Path, ahead: bool| {
        let mut source = Source::open_file(path).unwrap_or_else(|e| panic!("{e}"));
        let mut analyzer = Analyzer::new(AnalyzerOptions::default());
        let mut out = Vec::new();
        let mut sink = |e: &Event<'_>| out.push(format!("{e:?}"));
        loop {
            if ahead {
                let hint = source
                    .buffered_ahead()
                    .and_then(|(link, data)| segment::endpoints_hint(link, data));
                analyzer.look_ahead(hint);
            }
            match source.next_packet().unwrap_or_else(|e| panic!("{e}")) {
                Next::Packet(p) => analyzer.packet_at(p.link, p.ts, p.data, p.at, &mut sink),
                Next::End => break,
                Next::Idle => {}
            }
        }
        analyzer.finish(&mut sink);
        out
    };
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    for name in [
        "concurrent.pcap",
        "chromium-deflate.pcap",
        "python-basic.pcap",
    ] {
        let path = fixtures.join(name);
        let without = events(&path, false);
        assert!(without.len() > 10, "{name}: {} events", without.len());
        assert_eq!(events(&path, true), without, "{name}");
    }
}
