//! A Yjs document rendered as JSON (`GET /docs/{id}` of a Yjs document), in time linear in the
//! document and with the walk over nested types and values on a heap stack, never the thread's.
//!
//! # Layout
//! - this file: the roots, and what an untyped root holds
//! - [`sequence`]: what an array, an XML node's children or an untyped root holds, read without
//!   yrs's per-character reads
//! - [`walker`]: shared types and their values as yrs's `to_json` renders them
//! - [`value`]: yrs's `Any` values as JSON and as yrs prints them inside XML
//! - [`prosemirror`]: an XML fragment as ProseMirror JSON, and as text (SPEC §9)

use yrs::branch::BranchPtr;
use yrs::{Any, Map, MapRef, Out, ReadTxn};

pub(super) mod prosemirror;
pub(super) mod sequence;
mod value;
mod walker;

use sequence::Sequence;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{StateVector, Transact};

use super::{YjsDoc, YjsError};

/// The renderings a backend reads (SPEC §9). Each is refused, as [`YjsDoc::to_json`] is, for a
/// document nested deeper than the limit.
impl YjsDoc {
    /// The XML fragment `field` as ProseMirror JSON (see [`prosemirror`]).
    pub fn to_prosemirror(&self, field: &str) -> Result<serde_json::Value, YjsError> {
        self.renderable()?;
        let txn = self.awareness.doc().transact();
        Ok(prosemirror::document(&txn, field))
    }

    /// The XML fragment `field` as text, one line per block.
    pub fn to_text(&self, field: &str) -> Result<String, YjsError> {
        Ok(prosemirror::text(&self.to_prosemirror(field)?))
    }

    /// What a peer at `state_vector` (a v1 state vector; `None`: nothing) lacks, as one v1
    /// update. A state vector that does not decode is [`YjsError::BadState`].
    pub fn update_since(&self, state_vector: Option<&[u8]>) -> Result<Vec<u8>, YjsError> {
        let since = match state_vector {
            None => StateVector::default(),
            Some(sv) => StateVector::decode_v1(sv)
                .map_err(|e| YjsError::BadState(format!("state vector: {e}")))?,
        };
        Ok(self.awareness.doc().transact().encode_diff_v1(&since))
    }

    /// The document's state vector (v1): what a rendering of it was read at, the `base` of a
    /// backend's edit of that rendering.
    pub fn state_vector(&self) -> Vec<u8> {
        self.awareness.doc().transact().state_vector().encode_v1()
    }
}

/// Each root type under its name.
pub(super) fn document<T: ReadTxn>(txn: &T) -> serde_json::Value {
    // One pass over the roots: looking each name up again costs the square of their number.
    let roots: Vec<(String, Out)> = txn
        .root_refs()
        .map(|(name, out)| (name.to_string(), out))
        .collect();
    let mut rendered = serde_json::Map::new();
    for (name, out) in roots {
        let any = match out {
            Out::UndefinedRef(branch) => untyped(branch, txn),
            typed => walker::render(typed, txn),
        };
        rendered.insert(name, value::json(&any));
    }
    serde_json::Value::Object(rendered)
}

/// A root that no one on this server asked for by type carries no type in the encoding; infer
/// it from its content: keys make a map; text items make text; XML elements make an XML
/// fragment (rendered as XML, as Tiptap documents are); any other sequence is an array. An
/// empty root is `null`: it could be any of them.
///
/// A root holding text items beside other elements (a Y.Text with embedded objects; no other
/// type writes both) renders as its text, which is what Y.Text's `toString` gives.
fn untyped<T: ReadTxn>(branch: BranchPtr, txn: &T) -> Any {
    let map = MapRef::from(branch);
    if map.len(txn) > 0 {
        return walker::render(Out::YMap(map), txn);
    }
    match sequence::read(branch, txn) {
        Sequence::Empty => Any::Null,
        Sequence::Text(text) => Any::from(text),
        Sequence::Elements(elements) if elements.iter().any(is_xml_node) => {
            walker::fragment(elements, txn)
        }
        Sequence::Elements(elements) => walker::array(elements, txn),
    }
}

pub(super) fn is_xml_node(out: &Out) -> bool {
    matches!(out, Out::YXmlElement(_) | Out::YXmlText(_))
}

#[cfg(test)]
mod prosemirror_tests;
#[cfg(test)]
mod tests;
