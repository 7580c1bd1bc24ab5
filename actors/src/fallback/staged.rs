//! What one batch of puts does to the entries before it is durable: the SPEC §6 rules applied
//! to each version against what the entries hold and what the batch staged before it. The
//! writer thread writes what is staged as one append, then makes it the entries.

use super::entry::Entry;
use super::error::JournalError;
use crate::doc::{later, CombineError, Kind, Version};

/// What one batch does to one document's entry, not yet durable.
#[derive(Default)]
pub(crate) struct Staged {
    /// A version that replaces the entry (JSON, or the first Yjs one): a put record.
    pub(crate) base: Option<Version>,
    /// Yjs updates that join the entry, after `base` if there is one: increment records.
    pub(crate) increments: Vec<Version>,
}

/// What a put does to the document, by the SPEC §6 rules.
pub(crate) enum Change {
    /// Nothing: the entry already is, or is later than, the version.
    None,
    Replace(Version),
    Append(Version),
}

impl Staged {
    pub(crate) fn replacing(base: Version) -> Staged {
        Staged {
            base: Some(base),
            increments: Vec::new(),
        }
    }
}

/// What `new` does to the document whose entry is `held` and of which this batch has staged
/// `staged` (SPEC §6 "Versions"; the caller checked its hash): a JSON version replaces a JSON
/// entry if it is later; a Yjs version joins a Yjs entry as an increment (unless it repeats the
/// last one; the caller checks that it decodes), or starts one.
pub(crate) fn change(
    held: Option<&Entry>,
    staged: Option<&Staged>,
    new: Version,
) -> Result<Change, JournalError> {
    let staged_base = staged.and_then(|s| s.base.as_ref());
    let Some(base) = staged_base.or(held.map(Entry::base)) else {
        return Ok(Change::Replace(new));
    };
    if base.kind != new.kind {
        Err(CombineError::KindMismatch {
            doc: new.doc.clone(),
        })?;
    }
    if new.kind == Kind::Json {
        return Ok(match resolve_json(base.clone(), new)? {
            Some(next) => Change::Replace(next),
            None => Change::None,
        });
    }
    let staged_last = staged.and_then(|s| s.increments.last()).or(staged_base);
    let last = match staged_last {
        Some(v) => Some(v.hash.as_str()),
        None => held.map(Entry::last_hash),
    };
    if last == Some(new.hash.as_str()) {
        return Ok(Change::None);
    }
    Ok(Change::Append(new))
}

/// The later of the JSON entry `held` and `new`: `Some` version to write, or `None` when `held`
/// already is, or is later than, `new`.
fn resolve_json(held: Version, new: Version) -> Result<Option<Version>, JournalError> {
    if held.stamp > new.stamp {
        return Ok(None);
    }
    // `new` first: between equal stamps (or none, from callers without stamps) the later put
    // wins, as it always did.
    let (held_hash, held_stamp) = (held.hash.clone(), held.stamp.clone());
    let next = later(new, held)?;
    if next.hash == held_hash && next.stamp <= held_stamp {
        return Ok(None);
    }
    Ok(Some(next))
}
