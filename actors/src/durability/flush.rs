//! What a flush does with what it read of one document: write what the log holds after the
//! point PostgreSQL recorded, or, with nothing after it, carry only that recorded point.

use crate::doc::{DocId, Version};
use crate::fallback::CommittedContent;
use crate::ledger::Entry;
use crate::log::LogMark;
use crate::storage::{Commit, Pending};

/// A version to write, the log point it includes (read from the log: PostgreSQL records it
/// with the content), and the commit to report once PostgreSQL holds it (its `recorded` is
/// what PostgreSQL answers).
#[derive(Clone, Debug)]
pub struct Dirty {
    pub version: Version,
    pub includes: Option<LogMark>,
    pub commit: Commit,
}

/// What a flush does with one document it read from the log.
#[derive(Debug)]
pub enum Flushed {
    Write(Dirty),
    /// Nothing to write: only the commit (empty hash).
    Settled(Commit),
}

/// Every log entry after the point PostgreSQL recorded is written, whatever the dirty mark
/// says (JSON the latest content, Yjs the updates appended since), with the log point it
/// includes, which PostgreSQL records in the same transaction. With nothing after the recorded
/// point, the commit carries only that point, which PostgreSQL recorded already, so the ledger
/// learns it: no path marks an entry persisted that a transaction did not record. A compaction
/// (`compacted`, the whole document at the read's position, folding `folded` bytes of log) is
/// carried by the commit either way.
pub fn flushed(doc: DocId, p: Pending, compacted: Option<Version>, folded: u64) -> Flushed {
    let mark = |position| LogMark {
        incarnation: p.incarnation,
        position,
    };
    let commit = Commit {
        doc,
        hash: String::new(),
        stamp: None,
        recorded: None,
        read: Some(mark(p.position)),
        compacted,
        folded,
        added: 0,
        kept: None,
    };
    let version = p.version.filter(|_| p.position > p.persisted);
    let Some(version) = version else {
        return Flushed::Settled(Commit {
            recorded: Some(mark(p.persisted)),
            ..commit
        });
    };
    Flushed::Write(Dirty {
        includes: Some(mark(p.position)),
        commit: Commit {
            hash: version.hash.clone(),
            stamp: version.stamp.clone(),
            added: p.added,
            ..commit
        },
        version,
    })
}

/// What the journal may let go once PostgreSQL committed `done`: the content committed (under
/// its stamp), and that of the ledger's entries the commit included (`left`). The journal drops
/// an entry only if it still holds that content under a stamp no larger.
pub(super) fn journal_forgets(done: &[Commit], left: &[Entry]) -> Vec<CommittedContent> {
    let committed = done
        .iter()
        .map(|c| (c.doc.clone(), c.hash.clone(), c.stamp.clone()));
    let included = left.iter().map(|e| {
        let v = &e.version;
        (v.doc.clone(), v.hash.clone(), v.stamp.clone())
    });
    committed.chain(included).collect()
}
