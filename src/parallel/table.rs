//! The reader's flow table: each connection's [`Entry`], found by its endpoints, in the
//! analyzer's kind of table.
//!
//! Entries sit in the table's slots beside their key (72 bytes: a slot always straddles two
//! cache lines). At tens of thousands of connections a slot is cold, and the lookup asks for
//! both of its lines before comparing the key, so that they arrive together.

use crate::analyzer::table::{FlowTable, Slot};
use crate::net::tcp::FlowKey;

use super::Entry;

pub(super) type ReaderTable = FlowTable<(FlowKey, Entry)>;

impl Slot for (FlowKey, Entry) {
    type Value = Entry;

    #[inline]
    fn key(&self) -> &FlowKey {
        &self.0
    }

    #[inline]
    fn value(&self) -> &Entry {
        &self.1
    }

    #[inline]
    fn value_mut(&mut self) -> &mut Entry {
        &mut self.1
    }

    #[inline]
    fn prefetch(&self) {
        crate::ffi::prefetch(self);
    }
}
