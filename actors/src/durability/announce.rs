//! What follows a commit besides the ledger: content PostgreSQL committed that Redis may lack
//! is announced into the document's log, where Redis's readers and every replica's room take
//! it, and the journal lets an entry go only once nothing rests on it any more.
//!
//! Two kinds of content are announced:
//! - a journaled version PostgreSQL took before it went back into Redis (the breaker was open,
//!   or the flush came first): the other replicas' rooms and Redis have older content;
//! - the content PostgreSQL kept when a JSON write lost to a larger stamp
//!   ([`Commit::kept`]): Redis may hold the older content written (it restarted empty, or a
//!   journal moved it back), and would serve it until it expires.
//!
//! An announcement is written by stamp ([`crate::storage::DocumentLog::restore`]): whatever
//! later content Redis holds stays. While Redis is in use, the journal keeps what an
//! announcement rests on until the announcement is written: a crash in between replays the
//! journaled version, whose next flush announces it again. When it cannot be written (Redis
//! is out of use, or the write failed) the journal lets go of the content and records instead
//! that Redis is owed the document ([`crate::fallback::Fallback::settle`]): the next move back
//! announces what PostgreSQL holds of it then, after a crash too ([`Owed`]). Convergence rests
//! on announcements, durability does not.

use std::collections::BTreeSet;

use crate::doc::{DocId, Version};
use crate::fallback::CommittedContent;
use crate::ledger::{Durable, Entry};
use crate::storage::Commit;

use super::flush::journal_forgets;

/// Content to write into a document's log, and the journal's entries to let go once it is there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    pub version: Version,
    pub forget: Vec<CommittedContent>,
}

/// What PostgreSQL's commit of `done` lets the journal forget now, and what must be announced
/// before the journal forgets the rest. `left` is what left the ledger with the commit.
pub fn after_commit(
    done: &[Commit],
    left: Vec<Entry>,
) -> (Vec<CommittedContent>, Vec<Announcement>) {
    let mut forget = journal_forgets(done, &left);
    let lost = |doc: &DocId| done.iter().any(|c| &c.doc == doc && c.kept.is_some());
    let journaled = left
        .into_iter()
        .filter(|e| e.durable == Durable::Journal && !lost(&e.version.doc))
        .map(|e| e.version);
    let kept = done.iter().filter_map(|c| c.kept.clone());
    let announced = journaled
        .chain(kept)
        .map(|version| {
            let (rests, rest): (Vec<_>, Vec<_>) =
                forget.drain(..).partition(|(doc, ..)| *doc == version.doc);
            forget = rest;
            Announcement {
                version,
                forget: rests,
            }
        })
        .collect();
    (forget, announced)
}

/// Documents whose announcement could not be written (Redis out of use, or the write failed),
/// for the next move back: Redis is owed what PostgreSQL holds of each. The journal holds the
/// same debts ([`crate::fallback::Fallback::owed`]), so they outlive a crash.
#[derive(Default)]
pub struct Owed(BTreeSet<DocId>);

impl Owed {
    pub fn owe(&mut self, docs: impl IntoIterator<Item = DocId>) {
        self.0.extend(docs);
    }

    /// Every debt, taken out.
    pub fn take(&mut self) -> Vec<DocId> {
        std::mem::take(&mut self.0).into_iter().collect()
    }

    pub fn contains(&self, doc: &DocId) -> bool {
        self.0.contains(doc)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What the journal may forget once `announced` are all in Redis.
pub fn announced(announced: &[Announcement]) -> Vec<CommittedContent> {
    announced.iter().flat_map(|a| a.forget.clone()).collect()
}

#[cfg(test)]
mod tests;
