//! What a version stores, sans IO: the change from the version before it or the whole content
//! (a checkpoint), and a version's content rebuilt from a checkpoint and the changes after it.
//!
//! Yjs: a change is the update from the previous version's state vector to this state, computed
//! on the encoded state (`yrs::diff_updates_v1`: decoded, never integrated, so it costs the
//! state's size and nothing more). It carries what was inserted since (what was deleted since
//! too, as garbage-collected ranges), and the deletions since: the state's delete set less the
//! previous version's. A state's delete set holds every deletion ever made; stored whole with
//! every change it would cost a heavily edited document's history more than its edits. JSON: a
//! change is a JSON Patch (RFC 6902) from the previous version, as text.

use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::Bytes;
use docroom_actors::doc::{canonical_json, Kind};
use docroom_actors::protocol::yjs::YjsDoc;
use serde_json::Value;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{IdSet, StateVector};

/// A checkpoint at least every this many versions, so reading one costs at most a checkpoint
/// and this many changes less one.
pub(super) const CHECKPOINT_EVERY: i32 = 50;

/// What the last version leaves for the next one.
#[derive(Clone)]
pub(super) struct Last {
    pub kind: Kind,
    /// Yjs: its state vector ...
    pub state_vector: Option<Vec<u8>>,
    /// ... and its delete set, if noted.
    pub delete_set: Option<Vec<u8>>,
    pub chain_len: i32,
    pub chain_bytes: i64,
}

impl Last {
    /// Whether the next version of `kind` may be stored as a change from this one (else it is
    /// a checkpoint whatever it holds).
    pub fn may_follow(&self, kind: Kind) -> bool {
        self.kind == kind && self.chain_len + 1 < CHECKPOINT_EVERY
    }
}

/// What a version stores.
#[derive(Debug)]
pub(super) struct Stored {
    pub checkpoint: bool,
    pub data: Bytes,
    /// Yjs: the version's state vector and delete set.
    pub state_vector: Option<Vec<u8>>,
    pub delete_set: Option<Vec<u8>>,
    pub chain_len: i32,
    pub chain_bytes: i64,
}

impl Stored {
    fn whole(content: &Bytes, (state_vector, delete_set): YjsMarks) -> Stored {
        Stored {
            checkpoint: true,
            data: content.clone(),
            state_vector,
            delete_set,
            chain_len: 0,
            chain_bytes: 0,
        }
    }

    /// `change` after `last`, unless the changes since the checkpoint would add up to more
    /// than the content itself: a checkpoint then costs no more and cuts the reading short.
    fn after(last: &Last, content: &Bytes, change: Option<Vec<u8>>, marks: YjsMarks) -> Stored {
        match change {
            Some(change) if last.chain_bytes + change.len() as i64 <= content.len() as i64 => {
                Stored {
                    checkpoint: false,
                    chain_len: last.chain_len + 1,
                    chain_bytes: last.chain_bytes + change.len() as i64,
                    data: Bytes::from(change),
                    state_vector: marks.0,
                    delete_set: marks.1,
                }
            }
            _ => Stored::whole(content, marks),
        }
    }
}

/// A Yjs version's state vector and delete set (v1), `None` for JSON.
type YjsMarks = (Option<Vec<u8>>, Option<Vec<u8>>);

/// A Yjs state as stored after `last` (`None`: the document's first version).
pub(super) fn store_yjs(content: &Bytes, last: Option<&Last>) -> Result<Stored, String> {
    let update = yrs_call(|| yrs::Update::decode_v1(content))?;
    let sv = update.state_vector();
    let deletions = update.delete_set().clone();
    drop(update);
    let marks = (Some(sv.encode_v1()), Some(deletions.encode_v1()));
    let Some(last) = last.filter(|l| l.may_follow(Kind::Yjs)) else {
        return Ok(Stored::whole(content, marks));
    };
    let Some(prev) = last.state_vector.as_deref() else {
        return Err("a yjs version without a state vector".into());
    };
    let prev_sv = StateVector::decode_v1(prev).map_err(|e| e.to_string())?;
    // A state that lacks part of the previous one is no continuation of it (never so for a
    // document that only grows): applied on top of it, a change would keep what it lacks.
    if !contains(&sv, &prev_sv) {
        return Ok(Stored::whole(content, marks));
    }
    let prev_deletions = match last.delete_set.as_deref().map(IdSet::decode_v1) {
        Some(Ok(ds)) => Some(ds),
        Some(Err(e)) => return Err(format!("a yjs version's delete set: {e}")),
        None => None,
    };
    // Nor is one that undid a deletion.
    if prev_deletions
        .as_ref()
        .is_some_and(|prev| !prev.diff(&deletions).is_empty())
    {
        return Ok(Stored::whole(content, marks));
    }
    let mut change = yrs_call(|| yrs::diff_updates_v1(content, prev))?;
    let all_deletions = marks.1.as_deref().unwrap_or_default();
    // The change ends with the state's whole delete set, encoded as above: it is replaced by
    // the deletions since. Without the previous delete set, the whole one stays (it is only
    // larger).
    if let Some(prev_deletions) = prev_deletions {
        if change.ends_with(all_deletions) {
            change.truncate(change.len() - all_deletions.len());
            change.extend(deletions.diff(&prev_deletions).encode_v1());
        }
    }
    Ok(Stored::after(last, content, Some(change), marks))
}

/// A JSON document's canonical text as stored after `last`, whose content was `prev`.
pub(super) fn store_json(content: &Bytes, last: Option<(&Last, &Value)>) -> Result<Stored, String> {
    let Some((last, prev)) = last.filter(|(l, _)| l.may_follow(Kind::Json)) else {
        return Ok(Stored::whole(content, (None, None)));
    };
    let now: Value = serde_json::from_slice(content).map_err(|e| e.to_string())?;
    let patch = json_patch::diff(prev, &now);
    let change = serde_json::to_vec(&patch).map_err(|e| e.to_string())?;
    Ok(Stored::after(last, content, Some(change), (None, None)))
}

/// One stored version, as reading takes it.
pub(super) struct Link {
    pub checkpoint: bool,
    pub data: Vec<u8>,
}

/// The content at the last of `chain`: a checkpoint, then the changes after it in order. A Yjs
/// content is the state encoded afresh (the same document as when it was cut; content deleted
/// since is garbage collected in both), a JSON one its canonical text.
pub(super) fn rebuild(kind: Kind, chain: Vec<Link>) -> Result<Bytes, String> {
    let mut links = chain.into_iter();
    let first = match links.next() {
        Some(first) if first.checkpoint => first,
        _ => return Err("a chain of versions that does not start at a checkpoint".into()),
    };
    let mut links = links.peekable();
    if links.peek().is_none() {
        return Ok(Bytes::from(first.data));
    }
    match kind {
        Kind::Yjs => {
            // Each applied in its own transaction through the rooms' decoding, which merges
            // chains of appended items first (yrs alone takes n² for them).
            let mut doc = YjsDoc::new();
            for link in std::iter::once(first).chain(links) {
                doc.absorb_update(&link.data).map_err(|e| e.to_string())?;
            }
            Ok(Bytes::from(doc.encode_state()))
        }
        Kind::Json => {
            let mut value: Value =
                serde_json::from_slice(&first.data).map_err(|e| e.to_string())?;
            for link in links {
                let patch: json_patch::Patch =
                    serde_json::from_slice(&link.data).map_err(|e| e.to_string())?;
                json_patch::patch(&mut value, &patch).map_err(|e| e.to_string())?;
            }
            Ok(Bytes::from(canonical_json(&value)))
        }
    }
}

/// Whether `sv` has seen everything `prev` has.
fn contains(sv: &StateVector, prev: &StateVector) -> bool {
    prev.iter().all(|(client, clock)| sv.get(client) >= *clock)
}

/// A call into yrs's decoding, a panic in it an error like any other.
fn yrs_call<T, E: std::fmt::Display>(f: impl FnOnce() -> Result<T, E>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err("yrs panicked decoding a state".into()),
    }
}
