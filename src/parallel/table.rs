//! The reader's flow table: each connection's [`Entry`], found by its endpoints.
//!
//! Entries sit in the table's slots (72 bytes: they always straddle two cache lines). At tens
//! of thousands of connections a slot is cold, and the lookup asks for both of its lines
//! before comparing the key, so that they arrive together rather than one after the other.

use std::hash::BuildHasher;

use hashbrown::HashTable;

use crate::net::tcp::FlowKey;

use super::Entry;

#[derive(Default)]
pub(super) struct ReaderTable {
    slots: HashTable<(FlowKey, Entry)>,
    hasher: foldhash::fast::RandomState,
}

impl ReaderTable {
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(super) fn contains_key(&self, key: &FlowKey) -> bool {
        let hash = self.hasher.hash_one(key);
        self.slots.find(hash, |(k, _)| k == key).is_some()
    }

    #[inline]
    pub(super) fn get_mut(&mut self, key: &FlowKey) -> Option<&mut Entry> {
        let hash = self.hasher.hash_one(key);
        self.slots
            .find_mut(hash, |slot| {
                crate::ffi::prefetch(slot);
                slot.0 == *key
            })
            .map(|(_, e)| e)
    }

    /// Adds an entry for a key the table does not hold.
    pub(super) fn insert_new(&mut self, key: FlowKey, entry: Entry) {
        let hasher = &self.hasher;
        let hash = hasher.hash_one(key);
        self.slots
            .insert_unique(hash, (key, entry), |(k, _)| hasher.hash_one(k));
    }

    pub(super) fn remove(&mut self, key: &FlowKey) -> Option<Entry> {
        let hash = self.hasher.hash_one(key);
        match self.slots.find_entry(hash, |(k, _)| k == key) {
            Ok(slot) => Some(slot.remove().0.1),
            Err(_) => None,
        }
    }

    /// Every entry, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&FlowKey, &Entry)> + Clone {
        self.slots.iter().map(|(k, e)| (k, e))
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &Entry> {
        self.slots.iter().map(|(_, e)| e)
    }
}
