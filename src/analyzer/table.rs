//! The flow table: the connections, found by their endpoints.
//!
//! Laid out for few cache misses at tens of thousands of connections: the index holds only
//! a control byte and a pointer per slot (9 bytes, 50,000 connections in about 600 KB, which
//! stays in L2), and the key is compared in the connection itself, which the packet touches
//! anyway. A map from key to boxed connection had 48-byte slots (3-6 MB at 50,000
//! connections): every packet's probe was a miss before the connection's own.
//!
//! The lookup asks for all of a candidate's cache lines before comparing its key, and the
//! packet then asks for its session's (`ffi::prefetch`): the lines arrive together instead of
//! one miss after another as the code reaches each field (at 50,000 connections, 14% less CPU
//! with `-q`; the same at 500).
//!
//! At tens of thousands of connections even that leaves a chain of misses, each address
//! known only from the line before (slot, connection, session): the analyzer walks it for
//! packets still ahead in the file's buffer (`Analyzer::look_ahead`), a step per packet.
//!
//! Boxed connections never move when the index grows, so growing it (old and new index live
//! at once) costs the index's size, not the connections'.
//!
//! The index's order is the hasher's (random per run): nothing that prints may depend on it,
//! and every caller that lists connections sorts them (by number, or by age and number).

use std::hash::BuildHasher;

use hashbrown::HashTable;

use crate::net::tcp::FlowKey;

use super::connection::Connection;

/// What a flow table's slot holds: a key and what it finds. The analyzer's slots are boxed
/// connections that hold their key; the threaded reader's hold key and entry side by side.
pub(crate) trait Slot {
    type Value;
    fn key(&self) -> &FlowKey;
    fn value(&self) -> &Self::Value;
    fn value_mut(&mut self) -> &mut Self::Value;
    /// Asks for the lines the key compare and the packet after it read (`ffi::prefetch`).
    fn prefetch(&self);
}

impl Slot for Box<Connection> {
    type Value = Connection;

    #[inline]
    fn key(&self) -> &FlowKey {
        &self.app.key
    }

    #[inline]
    fn value(&self) -> &Connection {
        self
    }

    #[inline]
    fn value_mut(&mut self) -> &mut Connection {
        self
    }

    #[inline]
    fn prefetch(&self) {
        crate::ffi::prefetch(&**self);
    }
}

pub(crate) struct FlowTable<S> {
    index: HashTable<S>,
    hasher: foldhash::fast::RandomState,
}

/// A key's hash, computed once per packet and used for the lookup and any insert after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Hashed(u64);

impl<S> Default for FlowTable<S> {
    fn default() -> Self {
        FlowTable {
            index: HashTable::new(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }
}

impl<S: Slot> FlowTable<S> {
    #[inline]
    pub(crate) fn hash(&self, key: &FlowKey) -> Hashed {
        Hashed(self.hasher.hash_one(key))
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    #[inline]
    pub(crate) fn get(&self, key: &FlowKey) -> Option<&S::Value> {
        self.find_hashed(self.hash(key), key)
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, key: &FlowKey) -> Option<&mut S::Value> {
        let hash = self.hash(key);
        self.get_hashed(hash, key)
    }

    /// What `key`, whose hash is `hash`, finds.
    #[inline]
    pub(crate) fn get_hashed(&mut self, hash: Hashed, key: &FlowKey) -> Option<&mut S::Value> {
        self.index
            .find_mut(hash.0, |s| {
                s.prefetch();
                s.key() == key
            })
            .map(S::value_mut)
    }

    /// Asks for the lines of the first slot `hash` may find, without comparing keys.
    #[inline]
    pub(crate) fn prefetch_candidate(&self, hash: Hashed) {
        if let Some(slot) = self.index.find(hash.0, |_| true) {
            slot.prefetch();
        }
    }

    /// What the slot [`FlowTable::prefetch_candidate`] asked for finds, its key not
    /// compared: it may be another key's with the same 7 bits of hash in the same group.
    /// (`find` with no compare: hashbrown's `iter_hash` costs three times as much.)
    #[inline]
    pub(crate) fn candidate(&self, hash: Hashed) -> Option<&S::Value> {
        self.index.find(hash.0, |_| true).map(S::value)
    }

    /// Asks for the line of the first slot `hash` may find.
    #[inline]
    pub(crate) fn prefetch_slot(&self, hash: Hashed) {
        if let Some(slot) = self
            .index
            .iter_hash_buckets(hash.0)
            .next()
            .and_then(|i| self.index.get_bucket(i))
        {
            crate::ffi::prefetch(slot);
        }
    }

    /// What `key`, whose hash is `hash`, finds, its lines not asked for (for lookups off the
    /// packet's path).
    #[inline]
    pub(crate) fn find_hashed(&self, hash: Hashed, key: &FlowKey) -> Option<&S::Value> {
        self.index.find(hash.0, |s| s.key() == key).map(S::value)
    }

    /// Adds a slot whose key (`hash` is its hash) the table does not hold.
    pub(crate) fn insert_new(&mut self, hash: Hashed, slot: S) -> &mut S::Value {
        debug_assert_eq!(hash, self.hash(slot.key()));
        let hasher = &self.hasher;
        self.index
            .insert_unique(hash.0, slot, |s| hasher.hash_one(s.key()))
            .into_mut()
            .value_mut()
    }

    pub(crate) fn remove(&mut self, key: &FlowKey) -> Option<S> {
        let hash = self.hash(key);
        match self.index.find_entry(hash.0, |s| s.key() == key) {
            Ok(entry) => Some(entry.remove().0),
            Err(_) => None,
        }
    }

    /// Every slot, in no particular order.
    pub(crate) fn slots(&self) -> impl Iterator<Item = &S> + Clone {
        self.index.iter()
    }

    /// What every slot finds, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &S::Value> + Clone {
        self.index.iter().map(S::value)
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::analyzer::Analyzer;
    use crate::event::Timestamp;

    fn key(n: u32) -> FlowKey {
        let a: SocketAddr = format!("10.{}.{}.{}:{}", n >> 16, (n >> 8) & 255, n & 255, 40000)
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let b: SocketAddr = "192.0.2.1:80".parse().unwrap_or_else(|e| panic!("{e}"));
        FlowKey::new(a, b).0
    }

    fn conn(id: u64, key: FlowKey) -> Box<Connection> {
        Box::new(Analyzer::new_connection(
            id,
            key,
            Timestamp::default(),
            false,
        ))
    }

    #[test]
    fn finds_what_was_inserted_and_nothing_else() {
        let mut table = FlowTable::<Box<Connection>>::default();
        // Enough to grow the index several times: connections are found after each growth.
        for n in 0..5000 {
            let k = key(n);
            let hash = table.hash(&k);
            assert!(table.get_hashed(hash, &k).is_none());
            table.insert_new(hash, conn(u64::from(n), k));
        }
        assert_eq!(table.len(), 5000);
        for n in 0..5000 {
            assert_eq!(table.get(&key(n)).map(|c| c.app.id), Some(u64::from(n)));
        }
        assert!(table.get(&key(5000)).is_none());
        let mut ids: Vec<u64> = table.iter().map(|c| c.app.id).collect();
        ids.sort_unstable();
        assert_eq!(ids, (0..5000).collect::<Vec<u64>>());
    }

    #[test]
    fn both_directions_find_the_same_connection() {
        let mut table = FlowTable::<Box<Connection>>::default();
        let a: SocketAddr = "[2001:db8::7]:51000"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let b: SocketAddr = "[2001:db8::1]:443"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let (k, _) = FlowKey::new(a, b);
        let hash = table.hash(&k);
        table.insert_new(hash, conn(7, k));
        let (back, _) = FlowKey::new(b, a);
        assert_eq!(table.get(&back).map(|c| c.app.id), Some(7));
        assert_eq!(table.get_mut(&back).map(|c| c.app.id), Some(7));
    }

    #[test]
    fn removed_connections_are_gone_and_the_rest_stay() {
        let mut table = FlowTable::<Box<Connection>>::default();
        for n in 0..1000 {
            let k = key(n);
            let hash = table.hash(&k);
            table.insert_new(hash, conn(u64::from(n), k));
        }
        for n in (0..1000).step_by(2) {
            assert_eq!(table.remove(&key(n)).map(|c| c.app.id), Some(u64::from(n)));
            assert!(table.remove(&key(n)).is_none());
        }
        assert_eq!(table.len(), 500);
        for n in 0..1000 {
            assert_eq!(table.get(&key(n)).is_some(), n % 2 == 1, "connection {n}");
        }
        // A removed key may come back as a new connection.
        let k = key(0);
        let hash = table.hash(&k);
        table.insert_new(hash, conn(1000, k));
        assert_eq!(table.get(&k).map(|c| c.app.id), Some(1000));
    }
}
