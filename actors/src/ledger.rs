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
use std::time::{Duration, Instant};

use tracing::warn;

use crate::doc::{later, DocId, Kind, Version};
use crate::log::LogPos;
use crate::storage::Commit;

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
    /// Where the newest save of it landed in the document's log (entries durable in Redis):
    /// a commit of the log up to there, by any replica, includes it.
    pub position: Option<LogPos>,
    /// When this replica first accepted content of the document that PostgreSQL lacks.
    pub since: Instant,
}

/// Cloning is shallow: clones share one map. The lock is held only for map operations.
#[derive(Clone, Default)]
pub struct Ledger(Arc<Mutex<HashMap<DocId, Entry>>>);

impl Ledger {
    fn map(&self) -> MutexGuard<'_, HashMap<DocId, Entry>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A room's save of `v` landed in `durable` (at `position` of the log, in Redis). A Yjs
    /// save is an incremental update: merged into the entry. A JSON version with a smaller
    /// stamp than the one held changes nothing (SPEC §6): the later one still waits.
    pub fn saved(&self, v: &Version, durable: Durable, position: Option<LogPos>) {
        self.record(v.clone(), durable, false, position);
    }

    /// Content from elsewhere (the journal, Redis) that PostgreSQL lacks: merged with the entry
    /// (Yjs) or kept if later (JSON), and marked foreign.
    pub fn absorbed(&self, v: Version, durable: Durable) {
        self.record(v, durable, true, None);
    }

    fn record(&self, v: Version, durable: Durable, foreign: bool, position: Option<LogPos>) {
        let mut map = self.map();
        let held = map.remove(&v.doc);
        let position = position.or(held.as_ref().and_then(|h| h.position));
        let since = held.as_ref().map_or_else(Instant::now, |h| h.since);
        let (version, foreign) = match held {
            None => (v, foreign),
            Some(held) if v.kind == Kind::Json => {
                if held.version.stamp.is_some() && held.version.stamp > v.stamp {
                    map.insert(held.version.doc.clone(), held);
                    return;
                }
                (v, foreign)
            }
            Some(held) => match later(v.clone(), held.version) {
                Ok(merged) => (merged, held.foreign || foreign),
                Err(e) => {
                    warn!(doc = %v.doc, error = %e, "yjs updates could not be merged, keeping the newer");
                    (v, true)
                }
            },
        };
        map.insert(
            version.doc.clone(),
            Entry {
                version,
                durable,
                foreign,
                position,
                since,
            },
        );
    }

    /// The entry of `doc` moved to `durable` (at `position` of the log), if it is still at
    /// `hash`: true if it was.
    pub fn moved(
        &self,
        doc: &DocId,
        hash: &str,
        durable: Durable,
        position: Option<LogPos>,
    ) -> bool {
        match self.map().get_mut(doc) {
            Some(entry) if entry.version.hash == hash => {
                entry.durable = durable;
                entry.position = position;
                true
            }
            _ => false,
        }
    }

    /// PostgreSQL committed these: each entry still at the committed hash leaves (a newer one
    /// saved meanwhile stays), and so does each entry durable in Redis whose save the committed
    /// log position includes (whichever replica flushed it). Answers the entries that left.
    pub fn committed(&self, done: &[Commit]) -> Vec<Entry> {
        let mut map = self.map();
        done.iter()
            .filter_map(|c| {
                let entry = map.get(&c.doc)?;
                let same = entry.version.hash == c.hash;
                let included = entry.durable == Durable::Cache
                    && entry.position.is_some()
                    && entry.position <= c.position;
                (same || included).then(|| map.remove(&c.doc)).flatten()
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

    /// How long the oldest content PostgreSQL lacks has waited.
    pub fn oldest(&self) -> Duration {
        self.map()
            .values()
            .map(|e| e.since.elapsed())
            .max()
            .unwrap_or_default()
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
        ledger.saved(&a1, Durable::Journal, None);
        ledger.saved(&b, Durable::Journal, None);
        ledger.saved(&a2, Durable::Journal, None);

        let left = ledger.committed(&[
            Commit::of(a1.doc.clone(), a1.hash.clone()),
            Commit::of(b.doc.clone(), b.hash.clone()),
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
        ledger.saved(&new, Durable::Cache, Some(pos(1)));
        ledger.saved(&old, Durable::Journal, None);
        let entry = ledger.get(&new.doc).unwrap();
        assert_eq!(entry.version, new);
        assert_eq!(entry.durable, Durable::Cache);
        assert_eq!(entry.position, Some(pos(1)));
    }

    #[test]
    fn moving_an_entry_needs_it_unchanged() {
        let ledger = Ledger::default();
        let (a1, a2) = (json("a", "1", 1), json("a", "2", 2));
        ledger.saved(&a1, Durable::Journal, None);
        ledger.saved(&a2, Durable::Journal, None);
        assert!(!ledger.moved(&a1.doc, &a1.hash, Durable::Cache, Some(pos(1))));
        assert!(ledger.moved(&a2.doc, &a2.hash, Durable::Cache, Some(pos(2))));
        assert_eq!(ledger.get(&a2.doc).unwrap().durable, Durable::Cache);
    }

    fn pos(ms: u64) -> LogPos {
        LogPos { ms, seq: 0 }
    }

    #[test]
    fn a_commit_of_the_log_clears_every_save_it_includes_whoever_flushed_it() {
        let ledger = Ledger::default();
        let (a, b) = (json("a", "1", 1), json("b", "1", 1));
        ledger.saved(&a, Durable::Cache, Some(pos(5)));
        ledger.saved(&b, Durable::Cache, Some(pos(9)));
        let other = |v: &Version, at| Commit {
            position: Some(pos(at)),
            ..Commit::of(v.doc.clone(), "another replica's content".into())
        };

        let left = ledger.committed(&[other(&a, 7), other(&b, 7)]);

        assert_eq!(
            left.len(),
            1,
            "a's save at 5 is included in the log up to 7"
        );
        assert!(!ledger.lacks(&a.doc));
        assert!(ledger.lacks(&b.doc), "b's save at 9 is not");
    }

    #[test]
    fn yjs_saves_are_increments_and_merge_into_the_entry() {
        use crate::testing::{yjs_edit, yjs_text};
        let ledger = Ledger::default();
        let (one, two) = (yjs_edit("y", 1, "one"), yjs_edit("y", 2, "two"));
        ledger.saved(&one, Durable::Cache, Some(pos(1)));
        ledger.saved(&two, Durable::Cache, Some(pos(2)));
        let entry = ledger.get(&one.doc).unwrap();
        let text = yjs_text(&entry.version);
        assert!(text.contains("one") && text.contains("two"), "{text}");
        assert_eq!(entry.position, Some(pos(2)));
    }
}
