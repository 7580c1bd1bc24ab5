//! What the open rooms hold that PostgreSQL does not have yet.
//!
//! Shared by the rooms, which record every new version they take in, and the registry, which
//! answers the flusher from it and drops what PostgreSQL committed. A flush then reads the
//! rooms' content under one lock instead of sending a message to every room and waiting for
//! each answer. An entry outlives its room if the room dies unexpectedly: its content still
//! reaches PostgreSQL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::doc::{DocId, Version};

/// Cloning is shallow: clones share one map.
#[derive(Clone, Default)]
pub struct Unpersisted(Arc<Mutex<HashMap<DocId, Version>>>);

impl Unpersisted {
    fn map(&self) -> MutexGuard<'_, HashMap<DocId, Version>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A room's newest version, which PostgreSQL does not have yet.
    pub fn record(&self, v: &Version) {
        self.map().insert(v.doc.clone(), v.clone());
    }

    /// PostgreSQL committed these (doc, hash) pairs: drop each entry still at that hash (a
    /// newer version recorded meanwhile stays).
    pub fn committed(&self, done: &[(DocId, String)]) {
        let mut map = self.map();
        for (doc, hash) in done {
            if map.get(doc).is_some_and(|v| &v.hash == hash) {
                map.remove(doc);
            }
        }
    }

    /// Every recorded version.
    pub fn versions(&self) -> Vec<Version> {
        self.map().values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::Kind;
    use bytes::Bytes;

    fn version(doc: &str, content: &'static str) -> Version {
        Version::new(DocId::parse(doc).unwrap(), Kind::Json, Bytes::from(content))
    }

    #[test]
    fn a_commit_drops_only_entries_still_at_the_committed_hash() {
        let ledger = Unpersisted::default();
        let (a1, a2, b) = (version("a", "1"), version("a", "2"), version("b", "1"));
        ledger.record(&a1);
        ledger.record(&b);
        ledger.record(&a2);
        ledger.committed(&[
            (a1.doc.clone(), a1.hash.clone()),
            (b.doc.clone(), b.hash.clone()),
        ]);
        let left = ledger.versions();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].hash, a2.hash, "the newer version of a must stay");
    }
}
