//! A backend's edit of a document's ProseMirror fragment, as one Yjs update (SPEC §9, `PUT
//! /docs/{id}/prosemirror`).
//!
//! The edit is made on a copy of the document as the backend saw it, by a client id of its own,
//! and what that copy gained is the update: applied to the live document it is a concurrent
//! change like a member's, so Yjs keeps what members typed meanwhile.
//! - Without a base, the copy is the document now; [`write_prosemirror`] changes only what
//!   differs, so members' typing in unchanged nodes and text runs survives.
//! - With a base (the state vector of the `update` rendering the backend read), the copy is the
//!   document at that state vector: the items inserted since are left out, so the edit is the
//!   change from what the backend read to its body, and members' typing since survives even in
//!   the nodes it edits. Deletions are not recorded by state vector: text deleted since the base
//!   is missing from the copy too, and comes back if the body still holds it.

use yrs::updates::decoder::Decode;
use yrs::updates::encoder::{Encoder, EncoderV1};
use yrs::{Doc, Options, ReadTxn, Snapshot, StateVector, Transact};

use super::{decode_squashed, guarded, write_prosemirror, YjsDoc, YjsError, YjsLimits};

/// Why an edit was not made.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// The body is not a ProseMirror document (400).
    #[error("the body is not a ProseMirror document: {0}")]
    NotProsemirror(String),
    /// `base` is not a state vector (400).
    #[error("base is not a state vector: {0}")]
    BadBase(String),
    /// `base` names content this replica has not received yet: read again, or retry shortly.
    #[error("base holds content this replica has not received yet")]
    BaseAhead,
    /// The stored document could not be loaded, or is beyond a limit (as its renderings).
    #[error(transparent)]
    Document(#[from] YjsError),
}

/// The update that changes fragment `field` of the document `state` to `body`, made on the
/// document at `base` if one is given. `None` when the body equals what the copy holds.
pub fn prosemirror_edit(
    state: &[u8],
    field: &str,
    body: &serde_json::Value,
    base: Option<&[u8]>,
    limits: YjsLimits,
) -> Result<Option<Vec<u8>>, EditError> {
    // A node is two levels of JSON (it and its `content`): a body within this cannot nest
    // its nodes deeper than the limit, which the update is checked against again anyway.
    let nesting = json_depth(body);
    if nesting > 2 * limits.max_depth + 4 {
        return Err(EditError::NotProsemirror(format!(
            "it nests {nesting} levels of JSON deep, beyond twice limits.max_yjs_depth ({})",
            limits.max_depth
        )));
    }
    // Loaded first through the checks every stored state passes, so the copies below cannot
    // recurse deeper than a rendering may.
    YjsDoc::load_with(state, limits)?.renderable()?;
    let base = base
        .map(|sv| guarded(|| StateVector::decode_v1(sv)))
        .transpose()
        .map_err(EditError::BadBase)?
        .transpose()
        .map_err(|e| EditError::BadBase(e.to_string()))?;
    let (copy, from) = match base {
        None => {
            let copy = load(Doc::new(), state)?;
            let from = copy.transact().state_vector();
            (copy, from)
        }
        Some(base) => at_base(state, &base)?,
    };
    // Inserts move the state vector; an edit that only deletes moves only the delete set.
    let before = copy.transact().snapshot();
    write_prosemirror(&copy, field, body).map_err(|e| EditError::NotProsemirror(e.0))?;
    let txn = copy.transact();
    if txn.snapshot() == before {
        return Ok(None);
    }
    Ok(Some(txn.encode_diff_v1(&from)))
}

/// A copy of the document `state` as it was at state vector `base`, and the state vector it
/// holds: every item up to `base`, and the deletions of now.
fn at_base(state: &[u8], base: &StateVector) -> Result<(Doc, StateVector), EditError> {
    let full = load(
        Doc::with_options(Options {
            skip_gc: true,
            ..Options::default()
        }),
        state,
    )?;
    let txn = full.transact();
    let now = txn.state_vector();
    let mut kept = StateVector::default();
    for (client, clock) in base.iter() {
        if *clock > now.get(client) {
            return Err(EditError::BaseAhead);
        }
        if *clock > 0 {
            kept.set_max(*client, *clock);
        }
    }
    let snapshot = Snapshot::new(kept, txn.snapshot().delete_set);
    let mut encoder = EncoderV1::new();
    txn.encode_state_from_snapshot(&snapshot, &mut encoder)
        .map_err(|e| YjsError::BadState(e.to_string()))?;
    let copy = load(Doc::new(), &encoder.to_vec())?;
    let from = copy.transact().state_vector();
    Ok((copy, from))
}

/// `doc` with `state` applied.
fn load(doc: Doc, state: &[u8]) -> Result<Doc, YjsError> {
    let update = decode_squashed(state).map_err(YjsError::BadState)?;
    guarded(|| doc.transact_mut().apply_update(update))
        .map_err(YjsError::BadState)?
        .map_err(|e| YjsError::BadState(e.to_string()))?;
    Ok(doc)
}

/// How deeply a JSON value nests (a scalar is 0), without recursion.
fn json_depth(value: &serde_json::Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((value, depth)) = stack.pop() {
        deepest = deepest.max(depth);
        match value {
            serde_json::Value::Array(items) => stack.extend(items.iter().map(|v| (v, depth + 1))),
            serde_json::Value::Object(map) => stack.extend(map.values().map(|v| (v, depth + 1))),
            _ => {}
        }
    }
    deepest
}
