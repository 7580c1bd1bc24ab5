//! ProseMirror (Tiptap) JSON written into a Yjs XML fragment with the smallest change: what
//! lets a backend change a document that editors are editing, as one more collaborator, without
//! undoing what they type meanwhile.
//!
//! The layout written is y-prosemirror's, the one the ProseMirror rendering reads back
//! (`render/prosemirror.rs`): a node is an `XmlElement` named for its type, its attrs the
//! element's attributes (an attr set to `null` is not stored, as y-prosemirror does not store
//! one); consecutive text nodes are one `XmlText`, each node a piece of it formatted with its
//! marks (a mark's name → its attrs, `{}` for a mark without attrs).
//!
//! The change is y-prosemirror's `updateYFragment`, written anew: of a node's children, those
//! that already equal their targets are kept; between them, a child that is the same kind of
//! node as its target is changed in place (attributes that differ set, those gone removed, its
//! own children compared so), a text as [`text`] says; the rest are deleted and the missing
//! ones built. A node whose content is emptied keeps its only text, emptied. A write that
//! changes nothing makes no Yjs change at all.
//!
//! Differences from y-prosemirror:
//! - children equal to their targets are kept wherever they are ([`children`]), not only from
//!   either end;
//! - a text that is not the same kind of node as its target on the left but is on the right
//!   is changed in place rather than replaced;
//! - whether a mark may overlap itself is in the editor's schema, not in the JSON: only several
//!   marks of one name on one text node are named with a suffix, from a hash of their own
//!   (y-prosemirror's hashes its encoding of the mark, whose key order serde does not keep),
//!   and a suffixed format the text already holds keeps its name.
//!
//! Every walk over nodes, the body's and the fragment's, keeps its stack on the heap, so nodes
//! nested as deep as they may be ([`parse::MAX_DEPTH`]) cost the thread's stack no more than
//! flat ones. Values nested inside attrs, which yrs walks recursively when it encodes them, are
//! bounded by the same depth.
//!
//! # Layout
//! - this file: the entry point, a node's children changed, nodes built and compared
//! - [`parse`]: the body validated whole before anything changes
//! - [`children`]: which children stay as they are
//! - [`text`]: a run of text nodes against its `XmlText`

use yrs::types::xml::{XmlIn, XmlOut};
use yrs::{
    Doc, Out, Transact, TransactionMut, Xml, XmlElementPrelim, XmlElementRef, XmlFragment,
    XmlTextPrelim,
};

mod children;
mod parse;
mod text;

use parse::{Child, Element};

/// Why a body cannot be written: it is not a ProseMirror document.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotProsemirror(pub String);

/// Changes the XML fragment `field` of `doc` to equal the ProseMirror JSON `target`
/// ({"type":"doc","content":[...]}) with the smallest change: nodes, attributes and text runs
/// that already match are kept, so concurrent edits elsewhere (and in the unchanged parts of the
/// same text) survive a merge. Validates the whole body before changing anything.
pub fn write_prosemirror(
    doc: &Doc,
    field: &str,
    target: &serde_json::Value,
) -> Result<(), NotProsemirror> {
    let content = parse::document(target)?;
    // Before the transaction: yrs takes one of its own to create the root.
    let fragment = doc.get_or_insert_xml_fragment(field);
    let mut txn = doc.transact_mut();
    let mut pending = Vec::new();
    update_children(&mut txn, &fragment, &content, &mut pending);
    while let Some((element, target)) = pending.pop() {
        update_element(&mut txn, &element, target, &mut pending);
    }
    Ok(())
}

/// Elements to change in place into their targets, once their parent's children are settled:
/// the walk's stack, on the heap (changing an element leaves its siblings where they are).
type Pending<'t, 'a> = Vec<(XmlElementRef, &'t Element<'a>)>;

/// Changes the children of `parent` to `target`: those equal to their targets stay
/// ([`children::anchors`]), those between are changed a stretch at a time ([`stretch`]); the
/// elements to change in place go onto `pending`.
fn update_children<'t, 'a, P: XmlFragment>(
    txn: &mut TransactionMut,
    parent: &P,
    target: &'t [Child<'a>],
    pending: &mut Pending<'t, 'a>,
) {
    let ys: Vec<XmlOut> = parent.children(txn).collect();
    // A node emptied keeps its only text, emptied (y-prosemirror's edge case: what someone
    // else types into it meanwhile survives).
    if let ([XmlOut::Text(only)], []) = (ys.as_slice(), target) {
        return text::clear(txn, only);
    }
    let anchors = children::anchors(txn, &ys, target);
    // Where the next stretch starts, in `ys`, in `target` and among the children as they are
    // now (the stretches before it changed how many there are).
    let (mut y, mut t, mut at) = (0, 0, 0);
    for (y_end, t_end) in anchors.into_iter().chain([(ys.len(), target.len())]) {
        if y < y_end || t < t_end {
            stretch(txn, parent, at, &ys[y..y_end], &target[t..t_end], pending);
        }
        at += t_end - t + 1;
        (y, t) = (y_end + 1, t_end + 1);
    }
}

/// Changes the children `ys`, the `at`th of `parent` on, into `target`, none of them equal to
/// its target at the same place: in place where one can be changed into its target, taken in
/// turn from either end ([`side`]); deleted and built anew otherwise.
fn stretch<'t, 'a, P: XmlFragment>(
    txn: &mut TransactionMut,
    parent: &P,
    at: usize,
    ys: &[XmlOut],
    target: &'t [Child<'a>],
    pending: &mut Pending<'t, 'a>,
) {
    let (mut left, mut right) = (0, 0);
    while left + right < ys.len().min(target.len()) {
        let (ly, lt) = (&ys[left], &target[left]);
        let (ry, rt) = (&ys[ys.len() - 1 - right], &target[target.len() - 1 - right]);
        let (y, t) = match side(txn, (ly, lt), (ry, rt)) {
            Some(Side::Left) => {
                left += 1;
                (ly, lt)
            }
            Some(Side::Right) => {
                right += 1;
                (ry, rt)
            }
            None => {
                parent.remove_range(txn, index(at + left), 1);
                insert(txn, parent, index(at + left), lt);
                left += 1;
                continue;
            }
        };
        match (y, t) {
            (XmlOut::Text(y), Child::Text(nodes)) => text::update(txn, y, nodes),
            (XmlOut::Element(y), Child::Element(t)) => pending.push((y.clone(), t)),
            _ => unreachable!("only a text and an element of the target's name are kept"),
        }
    }
    let stale = ys.len() - left - right;
    if stale > 0 {
        parent.remove_range(txn, index(at + left), index(stale));
    }
    for (i, child) in target[left..target.len() - right].iter().enumerate() {
        insert(txn, parent, index(at + left + i), child);
    }
}

/// Changes `y` into `t` in place: its attributes, then its children.
fn update_element<'t, 'a>(
    txn: &mut TransactionMut,
    y: &XmlElementRef,
    t: &'t Element<'a>,
    pending: &mut Pending<'t, 'a>,
) {
    let old: Vec<(String, Out)> = y
        .attributes(txn)
        .map(|(key, value)| (key.to_owned(), value))
        .collect();
    for (key, value) in &t.attrs {
        if !old.iter().any(|(k, v)| k == key && is(v, value)) {
            y.insert_attribute(txn, *key, value.clone());
        }
    }
    for (key, _) in &old {
        if !t.attrs.iter().any(|(k, _)| k == key) {
            y.remove_attribute(txn, key);
        }
    }
    update_children(txn, y, &t.content, pending);
}

/// Which end of the middle to change in place.
enum Side {
    Left,
    Right,
}

/// The end of the middle whose child can be changed into its target in place: a text into
/// text, an element into a node of its name. When both ends' elements can, the one more of
/// whose children already equal their targets.
fn side(
    txn: &TransactionMut,
    (ly, lt): (&XmlOut, &Child<'_>),
    (ry, rt): (&XmlOut, &Child<'_>),
) -> Option<Side> {
    let element = |y: &XmlOut, t: &Child<'_>| match (y, t) {
        (XmlOut::Element(y), Child::Element(t)) if y.tag().as_ref() == t.name => Some(y.clone()),
        _ => None,
    };
    let texts = |y: &XmlOut, t: &Child<'_>| matches!((y, t), (XmlOut::Text(_), Child::Text(_)));
    if texts(ly, lt) {
        return Some(Side::Left);
    }
    match (element(ly, lt), element(ry, rt)) {
        (Some(l), Some(r)) => {
            let (Child::Element(lt), Child::Element(rt)) = (lt, rt) else {
                unreachable!("both matched an element")
            };
            match kept(txn, &r, rt) > kept(txn, &l, lt) {
                true => Some(Side::Right),
                false => Some(Side::Left),
            }
        }
        (Some(_), None) => Some(Side::Left),
        (None, Some(_)) => Some(Side::Right),
        (None, None) if texts(ry, rt) => Some(Side::Right),
        (None, None) => None,
    }
}

/// How many of `y`'s children equal their targets in `t`, counted from both ends.
fn kept(txn: &TransactionMut, y: &XmlElementRef, t: &Element<'_>) -> usize {
    let ys: Vec<XmlOut> = y.children(txn).collect();
    let ts = &t.content;
    let min = ys.len().min(ts.len());
    let left = (0..min).take_while(|&i| equal(txn, &ys[i], &ts[i])).count();
    let right = (0..min - left)
        .take_while(|&i| equal(txn, &ys[ys.len() - 1 - i], &ts[ts.len() - 1 - i]))
        .count();
    left + right
}

/// Builds `child` at `at` among `parent`'s children, and everything inside it.
fn insert<P: XmlFragment>(txn: &mut TransactionMut, parent: &P, at: u32, child: &Child<'_>) {
    let mut open: Vec<(XmlElementRef, std::slice::Iter<'_, Child<'_>>, u32)> = Vec::new();
    let mut next = Some((parent.insert(txn, at, node(child)), child));
    loop {
        if let Some((built, child)) = next.take() {
            match (built, child) {
                (XmlOut::Text(text), Child::Text(nodes)) => text::fill(txn, &text, nodes),
                (XmlOut::Element(element), Child::Element(t)) => {
                    for (key, value) in &t.attrs {
                        element.insert_attribute(txn, *key, value.clone());
                    }
                    open.push((element, t.content.iter(), 0));
                }
                _ => unreachable!("`node` builds what the child is"),
            }
        }
        let Some((element, rest, at)) = open.last_mut() else {
            return;
        };
        match rest.next() {
            Some(child) => {
                let built = element.insert(txn, *at, node(child));
                *at += 1;
                next = Some((built, child));
            }
            None => {
                open.pop();
            }
        }
    }
}

/// An empty node of `child`'s kind, to insert and then fill.
fn node(child: &Child<'_>) -> XmlIn {
    match child {
        Child::Text(_) => XmlIn::from(XmlTextPrelim::new("")),
        Child::Element(element) => XmlIn::from(XmlElementPrelim::empty(element.name)),
    }
}

/// Whether `y` holds exactly `t`, all the way down.
fn equal(txn: &TransactionMut, y: &XmlOut, t: &Child<'_>) -> bool {
    let mut pairs = vec![(y.clone(), t)];
    while let Some((y, t)) = pairs.pop() {
        match (y, t) {
            (XmlOut::Text(y), Child::Text(nodes)) if text::equal(txn, &y, nodes) => {}
            (XmlOut::Element(y), Child::Element(t)) if same_element(txn, &y, t) => {
                let ys: Vec<XmlOut> = y.children(txn).collect();
                match (ys.as_slice(), t.content.as_slice()) {
                    // What an emptied node keeps (see `update_children`).
                    ([XmlOut::Text(only)], []) if yrs::Text::len(only, txn) == 0 => {}
                    (ys, ts) if ys.len() == ts.len() => pairs.extend(ys.iter().cloned().zip(ts)),
                    _ => return false,
                }
            }
            _ => return false,
        }
    }
    true
}

/// Whether `y` has `t`'s name and attributes.
fn same_element(txn: &TransactionMut, y: &XmlElementRef, t: &Element<'_>) -> bool {
    let same =
        |(key, value): &(&str, yrs::Any)| y.get_attribute(txn, key).is_some_and(|v| is(&v, value));
    y.tag().as_ref() == t.name
        && y.attributes(txn).count() == t.attrs.len()
        && t.attrs.iter().all(same)
}

/// Whether an attribute's value is `value`.
fn is(out: &Out, value: &yrs::Any) -> bool {
    matches!(out, Out::Any(any) if any == value)
}

/// A child's index as yrs takes it (a node of a body held in memory has fewer than 2³²
/// children).
fn index(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod merge_tests;
#[cfg(test)]
mod refused_tests;
#[cfg(test)]
mod tests;
