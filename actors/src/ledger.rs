//! The ledger: what PostgreSQL does not have yet, as this replica knows it. It is the one owner
//! of that fact; everything else that once said "not persisted yet" reads it from here.
//!
//! - The cache supervisor records every save that lands ([`Ledger::saved`]) with where it is
//!   durable besides memory: Redis (a cache, which may die and come back empty) or the journal.
//!   At start it is seeded from the journal.
//! - The flusher reads the versions to persist from here without asking anyone, and reports each
//!   commit to the supervisor, whose one `Committed` handler clears the ledger
//!   ([`Ledger::committed`]), the journal and Redis `modifiedDocs` together.
//! - Rooms ask whether their document is still waiting ([`Ledger::lacks`]) before they retire.
//! - Redis `modifiedDocs` is the deployment-wide view (other processes' saves included); the
//!   flusher reads it through the supervisor for documents this ledger does not hold.
//!
//! An entry outlives the room that saved it, so a room that dies unexpectedly, or a Redis that
//! loses its data, never takes acknowledged content with it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tracing::warn;

use crate::doc::{later, DocId, Kind, Version};

/// Where a version is durable besides this process's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durable {
    /// In Redis. A cache: if Redis is suspected of losing data, the supervisor journals it.
    Cache,
    /// In the journal, and possibly not in Redis: saves of this document keep going to the
    /// journal until the supervisor has moved it into Redis.
    Journal,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub version: Version,
    pub durable: Durable,
    /// The entry holds content that did not come from the room's own saves (the journal's
    /// replay, or Redis content merged in): a room's next Yjs state need not include it, so it
    /// is merged with that state instead of replaced by it, until PostgreSQL has it.
    pub foreign: bool,
}

/// Cloning is shallow: clones share one map. The lock is held only for map operations.
#[derive(Clone, Default)]
pub struct Ledger(Arc<Mutex<HashMap<DocId, Entry>>>);

impl Ledger {
    fn map(&self) -> MutexGuard<'_, HashMap<DocId, Entry>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A room's save of `v` landed in `durable`. A room's Yjs states only grow, so `v` replaces
    /// the entry unless that holds foreign content, which is merged in. A JSON version with a
    /// smaller stamp than the one held changes nothing (SPEC §6): the later one still waits.
    pub fn saved(&self, v: &Version, durable: Durable) {
        self.record(v.clone(), durable, false);
    }

    /// Content from elsewhere (the journal, Redis) that PostgreSQL lacks: merged with the entry
    /// (Yjs) or kept if later (JSON), and marked foreign.
    pub fn absorbed(&self, v: Version, durable: Durable) {
        self.record(v, durable, true);
    }

    fn record(&self, v: Version, durable: Durable, foreign: bool) {
        let mut map = self.map();
        let (version, foreign) = match map.remove(&v.doc) {
            None => (v, foreign),
            Some(held) if v.kind == Kind::Json => {
                if held.version.stamp.is_some() && held.version.stamp > v.stamp {
                    map.insert(held.version.doc.clone(), held);
                    return;
                }
                (v, foreign)
            }
            Some(held) if held.foreign || foreign => match later(v.clone(), held.version) {
                Ok(merged) => (merged, true),
                Err(e) => {
                    warn!(doc = %v.doc, error = %e, "yjs states could not be merged, keeping the newer");
                    (v, true)
                }
            },
            Some(_) => (v, false),
        };
        map.insert(
            version.doc.clone(),
            Entry {
                version,
                durable,
                foreign,
            },
        );
    }

    /// The entry of `doc` moved to `durable`, if it is still at `hash`: true if it was.
    pub fn moved(&self, doc: &DocId, hash: &str, durable: Durable) -> bool {
        match self.map().get_mut(doc) {
            Some(entry) if entry.version.hash == hash => {
                entry.durable = durable;
                true
            }
            _ => false,
        }
    }

    /// PostgreSQL committed these (doc, hash) pairs: each entry still at that hash leaves (a
    /// newer one saved meanwhile stays). Answers the entries that left.
    pub fn committed(&self, done: &[(DocId, String)]) -> Vec<Entry> {
        let mut map = self.map();
        done.iter()
            .filter_map(|(doc, hash)| {
                let current = map.get(doc).is_some_and(|e| &e.version.hash == hash);
                current.then(|| map.remove(doc)).flatten()
            })
            .collect()
    }

    /// Entries durable in `durable` (the journal's count is the admin view's `fallback_docs`:
    /// documents whose newest version is in the journal and maybe not in Redis).
    pub fn count(&self, durable: Durable) -> usize {
        self.map().values().filter(|e| e.durable == durable).count()
    }

    pub fn get(&self, doc: &DocId) -> Option<Entry> {
        self.map().get(doc).cloned()
    }

    /// Whether PostgreSQL still lacks something of `doc` that this replica accepted.
    pub fn lacks(&self, doc: &DocId) -> bool {
        self.map().contains_key(doc)
    }

    /// Every waiting entry (a snapshot).
    pub fn entries(&self) -> Vec<Entry> {
        self.map().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(doc: &str, content: &'static str, millis: u64) -> Version {
        crate::testing::stamped(doc, content, millis)
    }

    #[test]
    fn a_commit_clears_only_entries_still_at_the_committed_hash() {
        let ledger = Ledger::default();
        let (a1, a2, b) = (json("a", "1", 1), json("a", "2", 2), json("b", "1", 1));
        ledger.saved(&a1, Durable::Cache);
        ledger.saved(&b, Durable::Journal);
        ledger.saved(&a2, Durable::Cache);

        let left = ledger.committed(&[
            (a1.doc.clone(), a1.hash.clone()),
            (b.doc.clone(), b.hash.clone()),
        ]);

        let left: Vec<Version> = left.into_iter().map(|e| e.version).collect();
        assert_eq!(left, vec![b.clone()]);
        assert_eq!(ledger.get(&a1.doc).unwrap().version, a2, "a2 still waits");
        assert!(!ledger.lacks(&b.doc));
    }

    #[test]
    fn an_older_json_save_never_replaces_a_later_one() {
        let ledger = Ledger::default();
        let (old, new) = (json("a", "old", 1), json("a", "new", 2));
        ledger.saved(&new, Durable::Cache);
        ledger.saved(&old, Durable::Journal);
        assert_eq!(
            ledger.get(&new.doc),
            Some(Entry {
                version: new,
                durable: Durable::Cache,
                foreign: false,
            })
        );
    }

    #[test]
    fn moving_an_entry_needs_it_unchanged() {
        let ledger = Ledger::default();
        let (a1, a2) = (json("a", "1", 1), json("a", "2", 2));
        ledger.saved(&a1, Durable::Journal);
        ledger.saved(&a2, Durable::Journal);
        assert!(!ledger.moved(&a1.doc, &a1.hash, Durable::Cache));
        assert!(ledger.moved(&a2.doc, &a2.hash, Durable::Cache));
        assert_eq!(ledger.get(&a2.doc).unwrap().durable, Durable::Cache);
    }
}
