//! The smallest Yjs update that turns a document's content back into an older version's: what
//! version history's restore applies as one more live change, so connected editors see it,
//! keep their connections, and keep what they type meanwhile wherever it does not conflict.
//!
//! The update is made on a copy of the current document by a client id that document has not
//! used, changing only what differs from the old version, root by root (a root is known by its
//! name):
//! - an XML fragment (a Tiptap document) is first written as the old version's ProseMirror
//!   rendering with [`write_prosemirror`], which keeps the nodes and text runs that already
//!   match; what the rendering does not show (a mark's order, attrs that are `null`, a text
//!   emptied in place) is then settled by the general walk below;
//! - every root, and every shared type nested in one, is compared with the old one by the
//!   general walk ([`sync`]): the keys of a map (an element's attributes) one by one, a text's
//!   characters and formatting ([`text`]), an array's (a node's children's) elements by a diff
//!   ([`diff`]); shared types of the same kind kept in place are compared in turn, the rest is
//!   deleted and built anew from the old version;
//! - a root only the current document has is emptied (Yjs cannot remove a root); one only the
//!   old version has is created.
//!
//! What each root is follows from its content, as the rendering reads it (`render`): a decoded
//! root carries no type.
//!
//! # Layout
//! - this file: the entry point, the documents, the roots
//! - [`sync`]: the walk over shared types: maps, arrays, XML nodes
//! - [`text`]: a text's characters and formatting
//! - [`diff`]: which elements or characters of a sequence stay

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use yrs::branch::BranchPtr;
use yrs::{Doc, Map, MapRef, Options, ReadTxn, Transact};

use super::render::is_xml_node;
use super::render::prosemirror;
use super::render::sequence::{self, Sequence};
use super::{guarded, write_prosemirror, YjsDoc, YjsError};

mod diff;
mod sync;
mod text;

use sync::Task;

/// The update (v1) that, applied to the document `current` (a v1 state), makes every root type's
/// content equal to what it is in `old` (a v1 state): made by a fresh client id on a copy of
/// `current`, changing only what differs. `None` when they already agree.
pub fn restore_update(current: &[u8], old: &[u8]) -> Result<Option<Vec<u8>>, YjsError> {
    let old = load(old)?;
    let doc = fresh_copy(current)?;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    doc.observe_update_v1("restore", move |_, event| {
        if let Ok(mut updates) = sink.lock() {
            updates.push(event.update.clone());
        }
    })
    .map_err(|e| YjsError::BadState(format!("restoring: {e}")))?;
    // yrs may panic on content no editor writes; the copy is thrown away either way.
    guarded(|| restore(&doc, old.awareness.doc()))
        .map_err(|e| YjsError::BadState(format!("restoring: {e}")))?;
    let updates = std::mem::take(&mut *seen.lock().unwrap_or_else(|e| e.into_inner()));
    if updates.is_empty() {
        return Ok(None);
    }
    guarded(|| yrs::merge_updates_v1(&updates))
        .and_then(|r| r.map_err(|e| e.to_string()))
        .map(Some)
        .map_err(|e| YjsError::BadState(format!("restoring: {e}")))
}

/// A stored state, loaded as the room loads it (its nesting checked before yrs decodes it) and
/// renderable.
fn load(state: &[u8]) -> Result<YjsDoc, YjsError> {
    let doc = YjsDoc::load(state)?;
    doc.renderable()?;
    Ok(doc)
}

/// `current` as a document of its own, under a client id it does not hold (the restore's edits
/// must not pass for the edits of a client that already wrote to it) and that removes the
/// formats its edits leave with nothing to format, as Yjs does: a text formatted back as it was
/// must read as the same runs.
fn fresh_copy(current: &[u8]) -> Result<Doc, YjsError> {
    let checked = load(current)?;
    let held = checked.awareness.doc().transact().state_vector();
    let mut options = Options::default();
    // Ids are random among 2⁵³: taken again only by a vanishingly rare chance.
    while held.contains_client(&options.client_id) {
        options = Options::default();
    }
    options.cleanup_formatting = true;
    let doc = Doc::with_options(options);
    let update = super::decode_squashed(current).map_err(YjsError::BadState)?;
    guarded(|| doc.transact_mut().apply_update(update))
        .and_then(|r| r.map_err(|e| e.to_string()))
        .map_err(YjsError::BadState)?;
    Ok(doc)
}

/// What a root holds, as the rendering tells: a map's keys, text, XML nodes, other elements.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Empty,
    Map,
    Text,
    Xml,
    Array,
}

fn shape<T: ReadTxn>(branch: BranchPtr, txn: &T) -> Shape {
    if MapRef::from(branch).len(txn) > 0 {
        return Shape::Map;
    }
    match sequence::read(branch, txn) {
        Sequence::Empty => Shape::Empty,
        Sequence::Text(_) => Shape::Text,
        Sequence::Elements(elements) if elements.iter().any(is_xml_node) => Shape::Xml,
        Sequence::Elements(_) => Shape::Array,
    }
}

/// The roots of a document, by name.
fn roots<T: ReadTxn>(txn: &T) -> Vec<(String, BranchPtr)> {
    txn.root_refs()
        .filter_map(|(name, out)| Some((name.to_string(), sync::branch(&out)?)))
        .collect()
}

/// Changes `copy`'s roots into `old`'s: XML fragments first through their ProseMirror
/// rendering, roots only `old` has created, then every root walked in one transaction.
fn restore(copy: &Doc, old: &Doc) {
    let old_txn = old.transact();
    let olds = roots(&old_txn);
    let current: HashMap<String, Shape> = {
        let txn = copy.transact();
        roots(&txn)
            .into_iter()
            .map(|(name, branch)| {
                let shape = shape(branch, &txn);
                (name, shape)
            })
            .collect()
    };
    for (name, branch) in &olds {
        let now = current.get(name).copied();
        // Each of these takes a transaction of its own on `copy`.
        match shape(*branch, &old_txn) {
            // Only over XML or nothing: a text's items read as XML children would cost the
            // square of their number (see `sequence`); a root of another kind is rebuilt by
            // the walk.
            Shape::Xml if matches!(now, None | Some(Shape::Empty | Shape::Xml)) => {
                let body = prosemirror::document(&old_txn, name);
                // Already equal as ProseMirror sees it: what the rendering does not show (which
                // the writer would drop, for the walk to set again) is the walk's.
                if prosemirror::document(&copy.transact(), name) != body {
                    // A fragment that is no ProseMirror document is left to the walk.
                    let _ = write_prosemirror(copy, name, &body);
                }
            }
            _ if now.is_some() => {}
            Shape::Map => drop(copy.get_or_insert_map(name.as_str())),
            Shape::Text => drop(copy.get_or_insert_text(name.as_str())),
            Shape::Array => drop(copy.get_or_insert_array(name.as_str())),
            Shape::Xml => drop(copy.get_or_insert_xml_fragment(name.as_str())),
            Shape::Empty => {}
        }
    }
    let olds: HashMap<String, BranchPtr> = olds.into_iter().collect();
    let mut txn = copy.transact_mut();
    let tasks = roots(&txn)
        .into_iter()
        .map(|(name, cur)| Task {
            cur,
            old: olds.get(&name).copied(),
        })
        .collect();
    sync::run(&mut txn, &old_txn, tasks);
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod xml_tests;
