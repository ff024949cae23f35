use super::*;
use crate::analyzer::Stats;
use crate::event::{CloseEvent, Direction};

fn close(flow: &FlowMeta, code: u16, reply_code: Option<u16>) -> Event<'_> {
    Event::Close(CloseEvent {
        ts: Timestamp::default(),
        flow,
        initiator: Some(Direction::ServerToClient),
        code: Some(code),
        reason: None,
        reply_code,
        replied: reply_code.is_some(),
        clean: true,
        end: EndReason::Fin,
    })
}

/// 25 sessions closed with 1008, each echoed: 25 sessions, not 50 close frames. A session
/// answered with another code counts under both codes.
#[test]
fn error_close_codes_count_sessions() {
    let mut d = Diagnoser::new(Vec::new(), DiagnoseOptions::default());
    let flows: Vec<FlowMeta> = (0..26)
        .map(|id| FlowMeta {
            id,
            client: "127.0.0.1:40000".parse().unwrap(),
            server: "127.0.0.1:8080".parse().unwrap(),
            midstream: false,
        })
        .collect();
    for flow in &flows[..25] {
        d.event(&close(flow, 1008, Some(1008)));
    }
    d.event(&close(&flows[25], 1011, Some(1008)));
    let findings = d.findings(&Stats::default());
    let detail = |code: &str| {
        findings
            .iter()
            .find(|f| f.kind == "abnormal_close" && f.detail.contains(code))
            .map(|f| (f.count, f.detail.clone()))
    };
    let (count, text) = detail("code 1008").expect("a finding for 1008");
    assert_eq!(count, 26, "{text}");
    assert!(
        text.starts_with("26 sessions closed with code 1008"),
        "{text}"
    );
    let (count, text) = detail("code 1011").expect("a finding for 1011");
    assert_eq!(count, 1, "{text}");
}
