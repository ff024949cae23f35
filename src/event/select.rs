//! Which events a user asked to see (`--flow`, `--client`, `--uri`, `--dir`, `--grep`):
//! chosen before output, so connections keep their numbers and every writer shows the same.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use super::{Direction, Event, EventSink, FrameHold, HeldFrame, Payload};

/// What to show; empty shows everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// Connection numbers, as the JSON's `flow`.
    pub flows: Vec<u64>,
    /// Client addresses, each with a port or any.
    pub clients: Vec<(IpAddr, Option<u16>)>,
    /// A substring of the upgrade request's URI.
    pub uri: Option<String>,
    /// Frames, messages and anomalies of this direction only.
    pub dir: Option<Direction>,
    /// Frames and messages whose payload matches (see [`Selector`]).
    pub grep: Option<Grep>,
    /// Message events are decoded only for `--grep` to decide a compressed message's last
    /// frame by (the frame view of JSON): they are not passed on.
    pub hide_messages: bool,
}

impl Selection {
    pub fn is_empty(&self) -> bool {
        self == &Selection::default()
    }
}

/// A `--grep` pattern, on bytes: a payload need not be UTF-8 to be searched.
#[derive(Clone, Debug)]
pub struct Grep(regex::bytes::Regex);

impl Grep {
    pub fn new(pattern: &str) -> Result<Grep, regex::Error> {
        regex::bytes::Regex::new(pattern).map(Grep)
    }

    fn matches(&self, payload: Payload<'_>) -> bool {
        self.0.is_match(bytes(payload))
    }
}

impl PartialEq for Grep {
    fn eq(&self, other: &Grep) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for Grep {}

fn bytes(payload: Payload<'_>) -> &[u8] {
    match payload {
        Payload::Text(t) => t.as_bytes(),
        Payload::Data(d) => d,
    }
}

/// Decides event by event. The URI is known from a connection's handshake on: what its
/// number matched is kept until its flow event, the last of it (so at most one entry per
/// connection in the flow table).
///
/// `--grep` keeps the frames and messages whose payload, as the event carries it (unmasked,
/// inflated, at most `--max-payload` bytes), matches: a message by its text or bytes, a frame
/// by its own payload, a close frame by its reason, and the last frame of a compressed
/// message by the message's inflated payload, so that frame and message are kept together.
/// That message event comes right after its frame: the frame is held until then (one frame,
/// in a buffer reused). Handshakes, closes and anomalies are not payload and are dropped, as
/// grep drops lines; a connection's flow event (its summary) is kept when something of it
/// was.
#[derive(Debug)]
pub struct Selector {
    selection: Selection,
    uri_matched: HashMap<u64, bool>,
    /// `--grep`: connections with a data event kept, until their flow event.
    grep_matched: HashSet<u64>,
    held: FrameHold,
}

impl Selector {
    /// None for an empty selection: nothing to decide.
    pub fn new(selection: &Selection) -> Option<Selector> {
        (!selection.is_empty()).then(|| Selector {
            selection: selection.clone(),
            uri_matched: HashMap::new(),
            grep_matched: HashSet::new(),
            held: FrameHold::default(),
        })
    }

    /// Passes on to `out` what is shown of `event`, and a frame held for it first.
    pub fn pass(&mut self, event: &Event<'_>, out: &mut dyn EventSink) {
        if let Some(held) = self.held.frame {
            match event {
                // Anomalies are dropped under --grep: the frame keeps waiting for its message.
                Event::Anomaly(_) => {
                    let _ = self.keeps(event);
                    return;
                }
                Event::Message(m)
                    if m.flow.id == held.flow.id
                        && m.dir == held.dir
                        && m.compressed
                        && !m.undecodable =>
                {
                    self.held.frame = None;
                    let shown = self.keeps(event)
                        && self
                            .selection
                            .grep
                            .as_ref()
                            .is_some_and(|g| g.matches(m.payload));
                    if shown {
                        self.grep_matched.insert(m.flow.id);
                        self.emit_held(&held, out);
                        if !self.selection.hide_messages {
                            out.event(event);
                        }
                    }
                    return;
                }
                _ => self.release(out),
            }
        }
        if !self.keeps(event) {
            return;
        }
        let Some(grep) = &self.selection.grep else {
            if !(self.selection.hide_messages && matches!(event, Event::Message(_))) {
                out.event(event);
            }
            return;
        };
        let shown = match event {
            Event::Frame(e) if FrameHold::completes_a_message(e.header) => {
                self.held.hold(e);
                return;
            }
            Event::Frame(e) => match &e.close {
                Some(close) => grep.0.is_match(close.reason.as_bytes()),
                None => grep.matches(e.payload),
            },
            Event::Message(m) => !self.selection.hide_messages && grep.matches(m.payload),
            Event::Flow(f) => {
                let matched = self.grep_matched.remove(&f.flow.id);
                if matched {
                    out.event(event);
                }
                return;
            }
            Event::Connection(_) => true,
            Event::Handshake(_) | Event::Close(_) | Event::Anomaly(_) => false,
        };
        if shown {
            if let Some(flow) = event.flow() {
                self.grep_matched.insert(flow.id);
            }
            out.event(event);
        }
    }

    /// A held frame whose message did not come (or is not compressed) is decided by its own
    /// payload: at the end, or before its decoder's output moves on.
    pub fn release(&mut self, out: &mut dyn EventSink) {
        let Some(held) = self.held.frame.take() else {
            return;
        };
        let shown = self
            .selection
            .grep
            .as_ref()
            .is_some_and(|g| g.0.is_match(&self.held.payload));
        if shown {
            self.grep_matched.insert(held.flow.id);
            self.emit_held(&held, out);
        }
    }

    fn emit_held(&self, held: &HeldFrame, out: &mut dyn EventSink) {
        out.event(&Event::Frame(held.event(&self.held.payload)));
    }

    /// Whether `event` passes `--flow`, `--client`, `--uri` and `--dir`; keeps what its
    /// connection's URI matched.
    fn keeps(&mut self, event: &Event<'_>) -> bool {
        let Some(flow) = event.flow() else {
            return true;
        };
        let s = &self.selection;
        if !s.flows.is_empty() && !s.flows.contains(&flow.id) {
            return false;
        }
        if !s.clients.is_empty()
            && !s.clients.iter().any(|&(ip, port)| {
                flow.client.ip() == ip && port.is_none_or(|p| p == flow.client.port())
            })
        {
            return false;
        }
        if let Some(want) = &s.uri {
            let matched = match event {
                Event::Handshake(h) => {
                    let m = h.request.uri().contains(want.as_str());
                    self.uri_matched.insert(flow.id, m);
                    m
                }
                Event::Flow(f) => {
                    self.uri_matched.remove(&flow.id);
                    f.uri.is_some_and(|u| u.contains(want.as_str()))
                }
                _ => self.uri_matched.get(&flow.id).copied().unwrap_or(false),
            };
            if !matched {
                return false;
            }
        }
        let dir = match event {
            Event::Frame(e) => Some(e.dir),
            Event::Message(e) => Some(e.dir),
            Event::Anomaly(e) => e.dir,
            _ => None,
        };
        match (self.selection.dir, dir) {
            (Some(want), Some(dir)) => want == dir,
            _ => true,
        }
    }
}

/// A sink that passes on the selected events only.
pub struct Selected<S> {
    pub inner: S,
    selector: Selector,
}

impl<S: EventSink> Selected<S> {
    pub fn new(inner: S, selector: Selector) -> Self {
        Selected { inner, selector }
    }

    /// The end: a frame still held is decided.
    pub fn release(&mut self) {
        self.selector.release(&mut self.inner);
    }
}

impl<S: EventSink> EventSink for Selected<S> {
    fn event(&mut self, event: &Event<'_>) {
        self.selector.pass(event, &mut self.inner);
    }

    fn at_packet(&mut self, number: Option<u64>) {
        // A frame --grep holds belongs to the packet before.
        self.release();
        self.inner.at_packet(number);
    }
}
