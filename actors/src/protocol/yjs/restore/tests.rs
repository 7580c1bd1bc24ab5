//! Restores measured by what they render: a document edited after an old version, the restore
//! update applied to it, must render as the old version does (every root's JSON, the Tiptap
//! fragment's ProseMirror JSON, a text's formatting), and restoring again must change nothing.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use yrs::types::text::{Diff, YChange};
use yrs::types::Attrs;
use yrs::updates::decoder::Decode;
use yrs::{
    Any, Array, ArrayPrelim, Doc, IdSet, Map, MapPrelim, ReadTxn, StateVector, Text, TextPrelim,
    Transact, Update,
};

use super::restore_update;
use crate::protocol::yjs::{YjsDoc, YjsError};

/// The fragment Tiptap binds by default.
pub(super) const FIELD: &str = "default";

pub(super) fn state(doc: &Doc) -> Vec<u8> {
    doc.transact()
        .encode_state_as_update_v1(&StateVector::default())
}

/// A document holding `state`, editing as `client`.
pub(super) fn doc_of(state: &[u8], client: u64) -> Doc {
    let doc = Doc::with_client_id(client);
    apply(&doc, state);
    doc
}

pub(super) fn apply(doc: &Doc, update: &[u8]) {
    let update = Update::decode_v1(update).unwrap();
    doc.transact_mut().apply_update(update).unwrap();
}

/// Every root's JSON, without the roots that render as nothing (an emptied root stays).
pub(super) fn json(state: &[u8]) -> Value {
    let mut json = YjsDoc::load(state).unwrap().to_json().unwrap();
    if let Value::Object(roots) = &mut json {
        roots.retain(|_, v| !v.is_null());
    }
    json
}

pub(super) fn prosemirror(state: &[u8]) -> Value {
    YjsDoc::load(state).unwrap().to_prosemirror(FIELD).unwrap()
}

/// The restore update of `current` to `old`, after checking that it is made by a client
/// `current` does not hold, that applied to `current` it renders as `old`, and that restoring
/// the result again changes nothing. Answers the update and the restored state.
pub(super) fn restore(current: &[u8], old: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let update = restore_update(current, old).unwrap().expect("a change");
    let known = Update::decode_v1(current).unwrap().state_vector();
    let clients = Update::decode_v1(&update).unwrap().insertions(true);
    for client in clients.client_ids() {
        assert!(!known.contains_client(&client), "a fresh client id");
    }
    let doc = doc_of(current, 1000);
    apply(&doc, &update);
    let restored = state(&doc);
    assert_eq!(json(&restored), json(old));
    assert_eq!(prosemirror(&restored), prosemirror(old));
    assert!(restore_update(&restored, old).unwrap().is_none(), "exact");
    (update, restored)
}

/// A text's runs and their formats.
pub(super) fn delta(state: &[u8], name: &str) -> Vec<Diff<YChange>> {
    let doc = doc_of(state, 1001);
    let text = doc.get_or_insert_text(name);
    let txn = doc.transact();
    text.diff(&txn, YChange::identity)
}

/// How many items (characters, values, formats) a set counts.
pub(super) fn count(set: &IdSet) -> u32 {
    let ranges = set
        .iter()
        .flat_map(|(_, ranges)| ranges.iter().cloned().collect::<Vec<_>>());
    ranges.map(|r| r.end - r.start).sum()
}

fn attrs(pairs: &[(&str, Any)]) -> Attrs {
    pairs
        .iter()
        .map(|(k, v)| (Arc::from(*k), v.clone()))
        .collect()
}

fn bold() -> Attrs {
    attrs(&[("bold", Any::Map(Arc::new(HashMap::new())))])
}

#[test]
fn a_formatted_text_gets_back_its_characters_and_formats() {
    let doc = Doc::with_client_id(1);
    let text = doc.get_or_insert_text("notes");
    {
        let mut txn = doc.transact_mut();
        text.insert(&mut txn, 0, "Hello wörld 😀, restore me please");
        text.format(&mut txn, 0, 5, bold());
        text.format(&mut txn, 6, 6, attrs(&[("italic", Any::Bool(true))]));
        text.insert_embed(&mut txn, 13, Any::from("an embed"));
    }
    let old = state(&doc);
    {
        let mut txn = doc.transact_mut();
        text.remove_range(&mut txn, 6, 6);
        text.insert(&mut txn, 6, "there");
        text.format(&mut txn, 0, 3, attrs(&[("bold", Any::Null)]));
        text.format(&mut txn, 20, 4, attrs(&[("color", Any::from("red"))]));
        text.insert_with_attributes(&mut txn, 0, ">> ", bold());
    }
    let extra = doc.get_or_insert_text("scratch");
    extra.insert(&mut doc.transact_mut(), 0, "new root");
    let current = state(&doc);
    assert_ne!(delta(&current, "notes"), delta(&old, "notes"));

    let (_, restored) = restore(&current, &old);

    assert_eq!(delta(&restored, "notes"), delta(&old, "notes"));
    assert_eq!(
        delta(&restored, "scratch"),
        vec![],
        "a root old lacks is emptied"
    );
}

#[test]
fn only_formats_that_differ_change() {
    let doc = Doc::with_client_id(1);
    let text = doc.get_or_insert_text("notes");
    text.insert(&mut doc.transact_mut(), 0, "one two three");
    let old = state(&doc);
    text.format(&mut doc.transact_mut(), 4, 3, bold());
    let current = state(&doc);

    let (update, restored) = restore(&current, &old);

    assert_eq!(delta(&restored, "notes"), delta(&old, "notes"));
    // Two formats set (bold off, and on again after), the four now redundant removed: no
    // character deleted or inserted.
    let update = Update::decode_v1(&update).unwrap();
    assert!(count(&update.insertions(true)) <= 2, "{update:?}");
    assert!(count(update.delete_set()) <= 4, "{update:?}");
}

#[test]
fn edits_far_apart_in_a_text_change_only_themselves() {
    let doc = Doc::with_client_id(1);
    let text = doc.get_or_insert_text("notes");
    let middle = "a long middle that nobody touched, ".repeat(20);
    text.insert(&mut doc.transact_mut(), 0, &format!("start {middle}end"));
    let old = state(&doc);
    {
        let mut txn = doc.transact_mut();
        text.insert(&mut txn, 0, "new ");
        text.push(&mut txn, "ing");
        text.remove_range(&mut txn, 30, 4);
    }
    let current = state(&doc);

    let (update, restored) = restore(&current, &old);

    assert_eq!(delta(&restored, "notes"), delta(&old, "notes"));
    // The four characters deleted in the middle, inserted again; nothing else.
    let update = Update::decode_v1(&update).unwrap();
    assert_eq!(count(&update.insertions(true)), 4);
    assert_eq!(count(update.delete_set()), "new ".len() as u32 + 3);
}

#[test]
fn a_map_is_restored_key_by_key_keeping_nested_types() {
    let doc = Doc::with_client_id(1);
    let meta = doc.get_or_insert_map("meta");
    let nested_id = {
        let mut txn = doc.transact_mut();
        meta.insert(&mut txn, "title", "Plan");
        meta.insert(&mut txn, "count", 3);
        let nested = meta.insert(&mut txn, "nested", MapPrelim::default());
        nested.insert(&mut txn, "a", 1);
        nested.insert(&mut txn, "list", ArrayPrelim::from([1, 2, 3]));
        nested.insert(&mut txn, "text", TextPrelim::new("inner text"));
        meta.insert(&mut txn, "tags", ArrayPrelim::from(["x", "y"]));
        nested.as_ref().id()
    };
    let old = state(&doc);
    {
        let mut txn = doc.transact_mut();
        meta.insert(&mut txn, "title", "Plan B");
        meta.remove(&mut txn, "count");
        meta.insert(&mut txn, "added", true);
        let Some(yrs::Out::YMap(nested)) = meta.get(&txn, "nested") else {
            panic!("a nested map")
        };
        nested.insert(&mut txn, "a", 2);
        nested.insert(&mut txn, "list", "no longer a list");
        let Some(yrs::Out::YText(inner)) = nested.get(&txn, "text") else {
            panic!("a nested text")
        };
        inner.insert(&mut txn, 0, "changed ");
        meta.insert(&mut txn, "tags", MapPrelim::from([("x", 1)]));
    }
    let current = state(&doc);

    let (_, restored) = restore(&current, &old);

    let doc = doc_of(&restored, 5);
    let meta = doc.get_or_insert_map("meta");
    let txn = doc.transact();
    let Some(yrs::Out::YMap(nested)) = meta.get(&txn, "nested") else {
        panic!("a nested map")
    };
    assert_eq!(nested.as_ref().id(), nested_id, "the nested map is kept");
}

#[test]
fn an_array_keeps_its_equal_ends_and_its_nested_types() {
    let doc = Doc::with_client_id(1);
    let list = doc.get_or_insert_array("list");
    {
        let mut txn = doc.transact_mut();
        list.insert_range(&mut txn, 0, [Any::from("a"), Any::from(1), Any::Bool(true)]);
        list.push_back(&mut txn, Any::Null);
        let json = Any::from(HashMap::from([("k".to_owned(), Any::from("v"))]));
        list.push_back(&mut txn, json);
        let map = list.push_back(&mut txn, MapPrelim::from([("m", 1)]));
        map.insert(&mut txn, "deep", ArrayPrelim::from([1, 2]));
        list.push_back(&mut txn, TextPrelim::new("a text"));
        list.push_back(&mut txn, "last");
    }
    let old = state(&doc);
    {
        let mut txn = doc.transact_mut();
        list.insert(&mut txn, 2, "inserted");
        list.remove_range(&mut txn, 4, 1);
        let Some(yrs::Out::YMap(map)) = list.get(&txn, 5) else {
            panic!("the map")
        };
        map.insert(&mut txn, "m", 2);
        let Some(yrs::Out::YText(text)) = list.get(&txn, 6) else {
            panic!("the text")
        };
        text.push(&mut txn, " edited");
        list.push_back(&mut txn, ArrayPrelim::from([9]));
    }
    let current = state(&doc);
    let ids = |state: &[u8]| {
        let doc = doc_of(state, 6);
        let list = doc.get_or_insert_array("list");
        let txn = doc.transact();
        list.iter(&txn)
            .filter_map(|v| super::sync::branch(&v).map(|b| b.id()))
            .collect::<Vec<_>>()
    };

    let (update, restored) = restore(&current, &old);

    assert_eq!(ids(&restored), ids(&old), "nested types kept, not rebuilt");
    // The null deleted and the map's old value: nothing kept is built again.
    let inserted = Update::decode_v1(&update).unwrap().insertions(true);
    assert_eq!(count(&inserted), 2, "{inserted:?}");
}

#[test]
fn roots_that_changed_kind_or_appeared_are_rebuilt() {
    let doc = Doc::with_client_id(1);
    let (a, b) = (doc.get_or_insert_text("a"), doc.get_or_insert_map("b"));
    let c = doc.get_or_insert_array("c");
    {
        let mut txn = doc.transact_mut();
        a.insert(&mut txn, 0, "was text");
        b.insert(&mut txn, "was", "map");
        c.push_back(&mut txn, "was array");
    }
    let old = state(&doc);
    // The same roots written as other kinds by another writer.
    let other = Doc::with_client_id(2);
    let (a, b) = (
        other.get_or_insert_array("a"),
        other.get_or_insert_text("b"),
    );
    let c = other.get_or_insert_map("c");
    {
        let mut txn = other.transact_mut();
        a.push_back(&mut txn, 1);
        b.insert(&mut txn, 0, "now text");
        c.insert(&mut txn, "now", "map");
    }
    let current = state(&other);

    restore(&current, &old);
    restore(&old, &current);
}

#[test]
fn equal_documents_need_no_update() {
    let doc = Doc::with_client_id(1);
    let text = doc.get_or_insert_text("t");
    text.insert(&mut doc.transact_mut(), 0, "same");
    let old = state(&doc);

    assert!(restore_update(&old, &old).unwrap().is_none());
    // The same content written by another client, with another history.
    let other = Doc::with_client_id(2);
    let text = other.get_or_insert_text("t");
    text.insert(&mut other.transact_mut(), 0, "sxame");
    text.remove_range(&mut other.transact_mut(), 1, 1);
    assert!(restore_update(&state(&other), &old).unwrap().is_none());
    let empty = state(&Doc::new());
    assert!(restore_update(&empty, &empty).unwrap().is_none());
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let doc = Doc::with_client_id(1);
    doc.get_or_insert_text("t")
        .insert(&mut doc.transact_mut(), 0, "fine");
    let good = state(&doc);
    assert!(matches!(
        restore_update(&[0xff, 0xc9, 0x9a, 0x3b], &good),
        Err(YjsError::BadState(_))
    ));
    assert!(matches!(
        restore_update(&good, &[1, 2, 3, 4, 5]),
        Err(YjsError::BadState(_))
    ));
    // Cut and flipped states, and noise: answered, never a panic.
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for i in 0..300 {
        let mut bytes = good.clone();
        bytes.truncate(i % (good.len() + 1));
        for _ in 0..(i % 4) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            if let Some(b) = bytes.get_mut(seed as usize % good.len().max(1)) {
                *b = (seed >> 32) as u8;
            }
        }
        let _ = restore_update(&bytes, &good);
        let _ = restore_update(&good, &bytes);
    }
}
