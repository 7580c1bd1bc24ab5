//! One document's entry, held as the journal holds it: a base version (a JSON version, or a Yjs
//! state) and the Yjs updates put since, not merged into it yet.
//!
//! Why increments: a Yjs save carries only the updates its room applied since its last save.
//! Merging each one into the whole state on the put's path made every acknowledgement cost the
//! document (a decode and an encode of the state, a record holding all of it, its sync), and a
//! long outage cost saves × document size. So a put appends the update as it came, and the
//! writer thread merges the increments into the base once they add up to the base's size, and
//! at least [`MERGE_MIN_BYTES`], after the batch that made the merge due has been answered. A
//! merge costs the document once per about a document's worth of updates: amortized, a put costs
//! what it appends, and an entry holds at most about twice its document (the same rule as
//! PostgreSQL's folds of `document_updates`).
//!
//! A merge changes memory only: the journal keeps the base's record and the increments' records,
//! which replay merges the same way, until a compaction writes the merged entry as one record.

use tracing::warn;

use super::record;
use crate::doc::{combine, CombineError, Kind, Version};

/// Increments wait for at least this many journal bytes before they are merged into the base.
pub(crate) const MERGE_MIN_BYTES: u64 = 64 * 1024;

#[derive(Clone, Debug)]
pub(crate) struct Entry {
    base: Version,
    /// Yjs updates put since `base`, in the order they were put.
    increments: Vec<Version>,
    /// Journal bytes of the increments' records.
    increment_bytes: u64,
    /// Increment bytes at which a merge is due.
    merge_at: u64,
}

impl Entry {
    pub(crate) fn new(base: Version) -> Entry {
        let merge_at = merge_threshold(&base);
        Entry {
            base,
            increments: Vec::new(),
            increment_bytes: 0,
            merge_at,
        }
    }

    pub(crate) fn base(&self) -> &Version {
        &self.base
    }

    pub(crate) fn kind(&self) -> Kind {
        self.base.kind
    }

    /// The base, then every increment in order: the entry without a merge.
    pub(crate) fn parts(&self) -> impl Iterator<Item = &Version> {
        std::iter::once(&self.base).chain(&self.increments)
    }

    /// Whether the entry is one version, nothing waiting to be merged into it.
    pub(crate) fn is_merged(&self) -> bool {
        self.increments.is_empty()
    }

    /// The hash of the last version the entry took (the base, or the newest increment): a Yjs
    /// put with this hash repeats it and adds nothing.
    pub(crate) fn last_hash(&self) -> &str {
        &self.increments.last().unwrap_or(&self.base).hash
    }

    /// `update`, a Yjs update the caller has checked ([`check_update`]), joins the entry.
    pub(crate) fn push(&mut self, update: Version) {
        self.increment_bytes += record::increment_len(&update);
        self.increments.push(update);
    }

    /// Bytes the entry's records take in the journal: the base's put record and the
    /// increments' records.
    pub(crate) fn record_len(&self) -> u64 {
        record::put_len(&self.base) + self.increment_bytes
    }

    /// Appends the entry's records to `out`: the base's put record, then one per increment.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<(), super::JournalError> {
        record::encode_put(&self.base, out)?;
        for update in &self.increments {
            record::encode_increment(update, out)?;
        }
        Ok(())
    }

    /// Whether the increments add up to enough to be merged now (see the module doc).
    pub(crate) fn merge_due(&self) -> bool {
        !self.increments.is_empty() && self.increment_bytes >= self.merge_at
    }

    /// The entry's content as one version: the base when nothing waits, otherwise the base and
    /// the increments merged, which costs the document.
    pub(crate) fn merged(&self) -> Result<Version, CombineError> {
        if self.is_merged() {
            return Ok(self.base.clone());
        }
        let merged = combine(self.parts().cloned())?;
        Ok(merged.expect("an entry has a base"))
    }

    /// Merges the increments into the base. On failure the entry stays as it is (nothing of it
    /// is lost: every part stays, in memory and in the journal) and the next try waits for
    /// twice the increments, so a document that cannot be merged does not cost a merge per put.
    pub(crate) fn merge(&mut self) -> Result<(), CombineError> {
        if self.is_merged() {
            return Ok(());
        }
        match self.merged() {
            Ok(merged) => {
                *self = Entry::new(merged);
                Ok(())
            }
            Err(error) => {
                let doc = &self.base.doc;
                warn!(%doc, %error, "yjs updates in the fallback could not be merged, kept apart");
                self.merge_at = self.increment_bytes.saturating_mul(2);
                Err(error)
            }
        }
    }
}

/// Increment bytes at which `base` is due a merge.
fn merge_threshold(base: &Version) -> u64 {
    (base.content.len() as u64).max(MERGE_MIN_BYTES)
}

/// Refuses a Yjs update that could never be merged, before it is journaled: what a merge would
/// refuse of it alone, checked on the update only (its cost is the update's, not the document's).
pub(crate) fn check_update(update: &Version) -> Result<(), CombineError> {
    use yrs::updates::decoder::Decode;
    let unmergeable = |why: String| CombineError::Unmergeable {
        doc: update.doc.clone(),
        why,
    };
    crate::protocol::yjs::decodable(&update.content).map_err(unmergeable)?;
    let decoded = std::panic::catch_unwind(|| yrs::Update::decode_v1(&update.content).map(drop));
    match decoded {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(unmergeable(e.to_string())),
        Err(_) => Err(unmergeable("the yjs decoder panicked".into())),
    }
}
