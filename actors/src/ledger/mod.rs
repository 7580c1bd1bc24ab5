//! The ledger: what PostgreSQL does not have yet, as this replica knows it. It is the one owner
//! of that fact; everything else that once said "not persisted yet" reads it from here.
//!
//! - The replica's [`Durability`](crate::durability::state::Durability), which the cache
//!   supervisor carries out, records every save that lands ([`Ledger::saved`]) with where it is
//!   durable besides memory: Redis (a cache, which may die and come back empty) or the journal.
//!   At start it is seeded from the journal.
//! - The flusher reads the versions to persist from here without asking anyone, and reports each
//!   commit to the supervisor, whose one `Committed` handler clears the ledger
//!   ([`Ledger::committed`]), the journal and Redis `modifiedDocs` together. A room's leave
//!   flush asks the flusher, which answers at once if nothing of the document waits.
//! - Rooms do not read it: a save's answer carries the content from elsewhere the entry holds
//!   ([`Ledger::foreign`]), which the room merges in.
//! - Redis `modifiedDocs` is the deployment-wide view (other processes' saves included); the
//!   flusher reads it through the supervisor for documents this ledger does not hold.
//!
//! An entry outlives the room that saved it, so a room that dies unexpectedly, or a Redis that
//! loses its data, never takes acknowledged content with it.

use foldhash::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tracing::warn;

use crate::doc::{combine, DocId, Kind, Version};
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

/// One document's entry as the map keeps it. A Yjs save is an increment: it is kept as a part
/// and merged into `merged` only when someone reads the entry (a flush, a load), so a save
/// costs the same whatever has accumulated. Parts and merged content a commit includes leave.
struct Slot {
    /// JSON: the newest version. Yjs: the parts merged so far.
    merged: Option<Version>,
    /// The log position of the newest save merged into `merged`, when everything merged came
    /// from saves with a position (`None`: some of it came from elsewhere, or nothing did).
    merged_to: Option<LogPos>,
    /// Yjs saves not merged yet, with their log positions.
    parts: Vec<(Version, Option<LogPos>)>,
    /// Counts the changes other than saves appended as parts, so a merge made outside the
    /// lock is taken in only if nothing else changed meanwhile.
    generation: u64,
    durable: Durable,
    foreign: bool,
    /// Content from elsewhere came in since the room was last handed it ([`Ledger::foreign`]).
    untold: bool,
    position: Option<LogPos>,
    since: Instant,
}

/// A slot's content taken out of the lock, to be merged there.
struct Unmerged {
    doc: DocId,
    merged: Option<Version>,
    merged_to: Option<LogPos>,
    parts: Vec<(Version, Option<LogPos>)>,
    generation: u64,
    entry: Entry,
}

impl Unmerged {
    /// The merge of `merged` and the parts, and its log position (see [`Slot::merged_to`]).
    fn merge(&self) -> (Option<Version>, Option<LogPos>) {
        let positioned = self.parts.iter().all(|(_, p)| p.is_some())
            && (self.merged.is_none() || self.merged_to.is_some());
        let newest = self.parts.iter().filter_map(|(_, p)| *p).max();
        let versions = self
            .merged
            .iter()
            .cloned()
            .chain(self.parts.iter().map(|(v, _)| v.clone()));
        let merged = combine(versions).unwrap_or_else(|e| {
            // Every part was applied by the room that saved it; keep what merged before.
            warn!(doc = %self.doc, error = %e, "yjs updates could not be merged, keeping the older");
            self.merged.clone()
        });
        let merged_to = positioned.then_some(newest.max(self.merged_to)).flatten();
        (merged, merged_to)
    }
}

impl Slot {
    fn waiting(&self, doc: &DocId) -> Waiting {
        Waiting {
            doc: doc.clone(),
            durable: self.durable,
            position: self.position,
        }
    }

    fn unmerged(&self) -> Option<Unmerged> {
        let version = self
            .merged
            .clone()
            .or_else(|| self.parts.first().map(|p| p.0.clone()))?;
        Some(Unmerged {
            doc: version.doc.clone(),
            merged: self.merged.clone(),
            merged_to: self.merged_to,
            parts: self.parts.clone(),
            generation: self.generation,
            entry: self.entry(version),
        })
    }

    /// Takes in the merge of what `from` took out, unless the slot changed otherwise since
    /// (parts saved meanwhile stay parts).
    fn merged_in(&mut self, from: &Unmerged, merged: Option<Version>, merged_to: Option<LogPos>) {
        if self.generation != from.generation || self.parts.len() < from.parts.len() {
            return;
        }
        self.parts.drain(..from.parts.len());
        self.merged = merged;
        self.merged_to = merged_to;
        self.generation += 1;
    }

    /// Merges the parts into `merged` in place: the entry's version, now. For the rare reads
    /// (a move back); the frequent ones merge outside the lock.
    fn version(&mut self) -> Option<&Version> {
        if !self.parts.is_empty() {
            let taken = self.unmerged()?;
            let (merged, merged_to) = taken.merge();
            self.merged_in(&taken, merged, merged_to);
        }
        self.merged.as_ref()
    }

    /// A commit of the log up to `upto` (by any replica) that does not include the newest save:
    /// drops the parts, and the merged content, it includes. Answers the merged content dropped.
    fn trim(&mut self, upto: LogPos) -> Option<Version> {
        self.generation += 1;
        self.parts.retain(|(_, p)| p.is_none_or(|p| p > upto));
        if self.merged_to.is_none_or(|m| m > upto) {
            return None;
        }
        self.merged_to = None;
        self.merged.take()
    }

    /// The entry as it leaves: its merged content (parts are saves of this replica's rooms,
    /// which nothing else holds by their hash).
    fn leaving(self) -> Option<Entry> {
        let version = self.merged.clone()?;
        Some(self.entry(version))
    }

    /// `version` with what the slot says of it.
    fn entry(&self, version: Version) -> Entry {
        Entry {
            version,
            durable: self.durable,
            foreign: self.foreign,
            position: self.position,
            since: self.since,
        }
    }
}

/// What [`Ledger::waiting`] says of one document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    pub doc: DocId,
    pub durable: Durable,
    pub position: Option<LogPos>,
}

/// Cloning is shallow: clones share one map. The lock is held only for map operations: a
/// read takes a Yjs entry's parts out, merges them, and puts the merge back.
#[derive(Clone, Default)]
pub struct Ledger(Arc<Mutex<HashMap<DocId, Slot>>>);

impl Ledger {
    fn map(&self) -> MutexGuard<'_, HashMap<DocId, Slot>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A room's save of `v` landed in `durable` (at `position` of the log, in Redis). A Yjs
    /// save is an incremental update: it joins the entry. A JSON version with a smaller stamp
    /// than the one held changes nothing (SPEC §6): the later one still waits.
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
        let Some(slot) = map.get_mut(&v.doc) else {
            let (merged, parts) = match v.kind {
                Kind::Json => (Some(v), Vec::new()),
                Kind::Yjs => (None, vec![(v, position)]),
            };
            let doc = merged
                .as_ref()
                .map_or_else(|| parts[0].0.doc.clone(), |m| m.doc.clone());
            map.insert(
                doc,
                Slot {
                    merged_to: merged.as_ref().and(position),
                    merged,
                    parts,
                    generation: 0,
                    durable,
                    foreign,
                    untold: foreign,
                    position,
                    since: Instant::now(),
                },
            );
            return;
        };
        if v.kind == Kind::Json {
            let held = slot.merged.as_ref();
            if held.is_some_and(|h| h.stamp.is_some() && h.stamp > v.stamp) {
                return;
            }
            slot.merged = Some(v);
            slot.merged_to = position;
            slot.generation += 1;
        } else {
            slot.parts.push((v, position));
        }
        slot.durable = durable;
        slot.foreign |= foreign;
        slot.untold |= foreign;
        slot.position = position.or(slot.position);
    }

    /// The entry of `moved`'s document moved to `durable` (at `position` of the log), if it is
    /// still that version (content and stamp): true if it was.
    pub fn moved(&self, moved: &Version, durable: Durable, position: Option<LogPos>) -> bool {
        let mut map = self.map();
        let Some(slot) = map.get_mut(&moved.doc) else {
            return false;
        };
        // Equal content under another stamp is another version.
        let same = |v: &Version| v.hash == moved.hash && v.stamp == moved.stamp;
        if !slot.version().is_some_and(same) {
            return false;
        }
        slot.durable = durable;
        slot.position = position;
        slot.merged_to = position;
        slot.generation += 1;
        true
    }

    /// PostgreSQL committed these: each entry still at the committed hash leaves (a newer one
    /// saved meanwhile stays), and so does each entry durable in Redis whose newest save the
    /// log position PostgreSQL recorded includes (whichever replica flushed it); of one whose newest
    /// save it does not include, the saves it does include leave. Answers the content that left
    /// (what the journal may hold by its hash).
    pub fn committed(&self, done: &[Commit]) -> Vec<Entry> {
        let mut map = self.map();
        let mut left = Vec::new();
        for c in done {
            let Some(slot) = map.get_mut(&c.doc) else {
                continue;
            };
            // Equal content under a larger stamp is a later version: it stays. JSON under a
            // smaller stamp than the committed one is superseded (PostgreSQL keeps the larger).
            let same = slot.parts.is_empty()
                && slot.merged.as_ref().is_some_and(|m| {
                    (m.hash == c.hash && m.stamp <= c.stamp)
                        || (m.kind == Kind::Json && c.stamp.is_some() && m.stamp < c.stamp)
                });
            let upto = c
                .recorded
                .map(|m| m.position)
                .filter(|_| slot.durable == Durable::Cache);
            let included = upto.is_some_and(|upto| slot.position.is_some_and(|p| p <= upto));
            if same || included {
                left.extend(map.remove(&c.doc).and_then(Slot::leaving));
                continue;
            }
            if let Some(version) = upto.and_then(|upto| slot.trim(upto)) {
                left.push(slot.entry(version));
            }
        }
        left
    }

    /// Entries durable in `durable` (the journal's count is the admin view's `fallback_docs`:
    /// documents whose newest version is in the journal and maybe not in Redis).
    pub fn count(&self, durable: Durable) -> usize {
        self.map().values().filter(|e| e.durable == durable).count()
    }

    /// The entry of `doc`, its Yjs parts merged.
    pub fn get(&self, doc: &DocId) -> Option<Entry> {
        let taken = self.map().get(doc)?.unmerged()?;
        self.merge(vec![taken]).pop()
    }

    /// The entries taken out of the lock, merged outside it (a merge costs what the parts hold:
    /// saves must not wait for it), and the merges taken back in.
    fn merge(&self, taken: Vec<Unmerged>) -> Vec<Entry> {
        let merged: Vec<(Option<Version>, Option<LogPos>)> = taken
            .iter()
            .map(|t| match t.parts.is_empty() {
                true => (t.merged.clone(), t.merged_to),
                false => t.merge(),
            })
            .collect();
        let mut map = self.map();
        taken
            .into_iter()
            .zip(merged)
            .filter_map(|(t, (version, to))| {
                if let Some(slot) = map.get_mut(&t.doc).filter(|_| !t.parts.is_empty()) {
                    slot.merged_in(&t, version.clone(), to);
                }
                Some(Entry {
                    version: version?,
                    ..t.entry
                })
            })
            .collect()
    }

    /// Where the entry of `doc` is durable, without reading its content.
    pub fn durable(&self, doc: &DocId) -> Option<Durable> {
        self.map().get(doc).map(|s| s.durable)
    }

    /// The entry of `doc` if content from elsewhere than its room's saves (see
    /// [`Entry::foreign`]) came in since the last call, unmerged: the merged content and the
    /// Yjs parts, which whoever takes them merges (the room, on its own thread); `None` if
    /// nothing new came in. The room is handed it once, not with every save after.
    pub fn foreign(&self, doc: &DocId) -> Option<Vec<Version>> {
        let mut map = self.map();
        let slot = map.get_mut(doc).filter(|s| s.untold)?;
        slot.untold = false;
        let parts = slot.parts.iter().map(|(v, _)| v.clone());
        Some(slot.merged.iter().cloned().chain(parts).collect())
    }

    /// The documents with an entry.
    pub fn docs(&self) -> Vec<DocId> {
        self.map().keys().cloned().collect()
    }

    /// Whether PostgreSQL still lacks something of `doc` that this replica accepted.
    pub fn lacks(&self, doc: &DocId) -> bool {
        self.map().contains_key(doc)
    }

    /// Every waiting entry (a snapshot), or those durable in `durable`.
    pub fn entries(&self, durable: Option<Durable>) -> Vec<Entry> {
        let taken = self
            .map()
            .values()
            .filter(|s| durable.is_none_or(|d| s.durable == d))
            .filter_map(Slot::unmerged)
            .collect();
        self.merge(taken)
    }

    /// [`Ledger::waiting`] of one document.
    pub fn waiting_of(&self, doc: &DocId) -> Option<Waiting> {
        self.map().get(doc).map(|s| s.waiting(doc))
    }

    /// Every waiting document, where it is durable and its newest save's log position, without
    /// reading any content.
    pub fn waiting(&self) -> Vec<Waiting> {
        self.map().iter().map(|(doc, s)| s.waiting(doc)).collect()
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
mod tests;
