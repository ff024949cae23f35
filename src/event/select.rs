//! Which connections' events a user asked to see (`--flow`, `--client`, `--uri`, `--dir`):
//! chosen before output, so connections keep their numbers and every writer shows the same.

use std::collections::HashMap;
use std::net::IpAddr;

use super::{Direction, Event, EventSink};

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
}

impl Selection {
    pub fn is_empty(&self) -> bool {
        self == &Selection::default()
    }
}

/// Decides event by event. The URI is known from a connection's handshake on: what its
/// number matched is kept until its flow event, the last of it (so at most one entry per
/// connection in the flow table).
#[derive(Debug)]
pub struct Selector {
    selection: Selection,
    uri_matched: HashMap<u64, bool>,
}

impl Selector {
    /// None for an empty selection: nothing to decide.
    pub fn new(selection: &Selection) -> Option<Selector> {
        (!selection.is_empty()).then(|| Selector {
            selection: selection.clone(),
            uri_matched: HashMap::new(),
        })
    }

    /// Whether `event` is shown; keeps what its connection's URI matched.
    pub fn keeps(&mut self, event: &Event<'_>) -> bool {
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
                    let m = h.request.uri.contains(want.as_str());
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

impl<S> Selected<S> {
    pub fn new(inner: S, selector: Selector) -> Self {
        Selected { inner, selector }
    }
}

impl<S: EventSink> EventSink for Selected<S> {
    fn event(&mut self, event: &Event<'_>) {
        if self.selector.keeps(event) {
            self.inner.event(event);
        }
    }

    fn at_packet(&mut self, number: Option<u64>) {
        self.inner.at_packet(number);
    }
}
