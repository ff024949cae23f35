//! What a writer computes once per connection and reuses at every event of it (its Community
//! ID, its part of the JSON envelope): hashing or formatting it per event would cost more
//! than the event.

use std::net::SocketAddr;

use crate::event::FlowMeta;

/// A direct-mapped table by connection number: connections are numbered in order, so up to
/// `slots` interleaved ones never share a slot. A slot is keyed by the endpoints too, so a
/// stale one never speaks for another connection.
pub(crate) struct PerConnection<T> {
    slots: Box<[Slot<T>]>,
}

/// A connection's number, client and server, and its value.
type Slot<T> = Option<(u64, SocketAddr, SocketAddr, T)>;

impl<T> PerConnection<T> {
    pub(crate) fn new(slots: usize) -> Self {
        PerConnection {
            slots: (0..slots.max(1)).map(|_| None).collect(),
        }
    }

    /// The value of `flow`'s connection, made by `make` when its slot holds another.
    pub(crate) fn get(&mut self, flow: &FlowMeta, make: impl FnOnce(&FlowMeta) -> T) -> &T {
        let n = self.slots.len() as u64;
        let slot = &mut self.slots[(flow.id % n) as usize];
        let fresh = matches!(slot, Some((id, c, s, _))
            if *id == flow.id && *c == flow.client && *s == flow.server);
        if !fresh {
            *slot = None;
        }
        let (.., value) =
            slot.get_or_insert_with(|| (flow.id, flow.client, flow.server, make(flow)));
        value
    }
}
