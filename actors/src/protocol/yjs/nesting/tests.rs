//! The nesting walk against updates yrs itself writes.

use super::*;
use yrs::types::xml::{XmlElementPrelim, XmlFragment};
use yrs::updates::decoder::Decode;
use yrs::{
    Any, Array, ArrayPrelim, Doc, Map, MapPrelim, MapRef, ReadTxn, StateVector, Text, Transact,
};

fn state(doc: &Doc) -> Vec<u8> {
    doc.transact()
        .encode_state_as_update_v1(&StateVector::default())
}

/// A map nested `levels` deep under the root map `m`, built one level per transaction.
fn nested_maps(doc: &Doc, levels: usize) -> Vec<Vec<u8>> {
    let mut map: MapRef = doc.get_or_insert_map("m");
    let mut updates = Vec::new();
    for _ in 0..levels {
        let mut txn = doc.transact_mut();
        map = map.insert(&mut txn, "k", MapPrelim::default());
        updates.push(txn.encode_update_v1());
    }
    updates
}

/// An `Any` array nested `levels` deep, built without recursion.
fn nested_any(levels: usize) -> Any {
    let mut value = Any::Null;
    for _ in 0..levels {
        value = Any::Array(vec![value].into());
    }
    value
}

#[test]
fn a_map_nested_within_the_limit_is_accepted_and_one_level_more_is_refused() {
    let doc = Doc::new();
    let updates = nested_maps(&doc, 11);
    let mut nesting = Nesting::default();
    for update in &updates[..10] {
        let plan = nesting
            .plan([update.as_slice()], 10, Admit::Member)
            .unwrap();
        nesting.commit(plan);
    }
    assert_eq!(nesting.deepest(), 10);
    let refused = nesting.plan([updates[10].as_slice()], 10, Admit::Member);
    assert_eq!(refused.unwrap_err(), Refused::TooDeep(11));
}

#[test]
fn a_whole_state_is_measured_however_its_clients_are_ordered() {
    // Two clients nesting into each other's maps: blocks refer to blocks listed later.
    let (a, b) = (Doc::with_client_id(1), Doc::with_client_id(2));
    a.get_or_insert_map("m");
    b.get_or_insert_map("m");
    for i in 0..6 {
        let (writer, reader) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let root = writer.get_or_insert_map("m");
        let deepest = descend(&writer.transact(), root);
        let mut txn = writer.transact_mut();
        deepest.insert(&mut txn, "k", MapPrelim::default());
        let update = txn.encode_update_v1();
        drop(txn);
        reader
            .transact_mut()
            .apply_update(yrs::Update::decode_v1(&update).unwrap())
            .unwrap();
    }
    let mut nesting = Nesting::default();
    let plan = nesting
        .plan([state(&a).as_slice()], 100, Admit::Stored)
        .unwrap();
    nesting.commit(plan);
    assert_eq!(nesting.deepest(), 6);
}

fn descend<T: ReadTxn>(txn: &T, mut map: MapRef) -> MapRef {
    while let Some(yrs::Out::YMap(inner)) = map.get(txn, "k") {
        map = inner;
    }
    map
}

#[test]
fn values_nested_past_the_limit_are_refused_before_decoding_even_thousands_deep() {
    let doc = Doc::new();
    let array = doc.get_or_insert_array("a");
    let update = {
        let mut txn = doc.transact_mut();
        array.push_back(&mut txn, nested_any(20_000));
        txn.encode_update_v1()
    };
    let refused = Nesting::default().plan([update.as_slice()], 256, Admit::Member);
    assert_eq!(refused.unwrap_err(), Refused::TooDeep(257));
    let stored = Nesting::default().plan([update.as_slice()], 256, Admit::Stored);
    assert!(stored.is_err(), "values bind stored content too");
}

#[test]
fn value_depth_adds_to_the_level_it_sits_at() {
    let doc = Doc::new();
    let array = doc.get_or_insert_array("a");
    let update = {
        let mut txn = doc.transact_mut();
        let inner = array.push_back(&mut txn, ArrayPrelim::default());
        inner.push_back(&mut txn, nested_any(3));
        txn.encode_update_v1()
    };
    // root array (level 1 holds the inner array), its value at level 2 nests 3 more
    let plan = Nesting::default()
        .plan([update.as_slice()], 100, Admit::Member)
        .unwrap();
    assert_eq!(plan.deepest, 5);
    assert!(Nesting::default()
        .plan([update.as_slice()], 4, Admit::Member)
        .is_err());
}

#[test]
fn typing_in_a_tiptap_paragraph_is_one_run_per_level() {
    let doc = Doc::with_client_id(7);
    let fragment = doc.get_or_insert_xml_fragment("default");
    let mut nesting = Nesting::default();
    let mut apply = |update: Vec<u8>| {
        let plan = nesting
            .plan([update.as_slice()], 256, Admit::Member)
            .unwrap();
        nesting.commit(plan);
    };
    let paragraph = {
        let mut txn = doc.transact_mut();
        let p = fragment.push_back(&mut txn, XmlElementPrelim::empty("paragraph"));
        apply(txn.encode_update_v1());
        p
    };
    let text = {
        let mut txn = doc.transact_mut();
        let t = paragraph.push_back(&mut txn, yrs::XmlTextPrelim::new(""));
        apply(txn.encode_update_v1());
        t
    };
    for i in 0..200 {
        let mut txn = doc.transact_mut();
        text.insert(&mut txn, i, "x");
        apply(txn.encode_update_v1());
    }
    assert_eq!(nesting.deepest(), 3);
    assert!(nesting.runs.len() <= 3, "{:?}", nesting.runs);
}

#[test]
fn a_block_whose_reference_comes_later_waits_and_is_measured_when_it_arrives() {
    let doc = Doc::new();
    let updates = nested_maps(&doc, 6);
    let mut nesting = Nesting::default();
    // the deepest five arrive first: nothing they refer to is known yet
    for update in updates[1..].iter().rev() {
        let plan = nesting.plan([update.as_slice()], 5, Admit::Member).unwrap();
        nesting.commit(plan);
    }
    assert_eq!(nesting.deepest(), 0);
    // the first one places all six: one level past the limit
    let refused = nesting.plan([updates[0].as_slice()], 5, Admit::Member);
    assert_eq!(refused.unwrap_err(), Refused::TooDeep(6));
    let plan = nesting
        .plan([updates[0].as_slice()], 6, Admit::Member)
        .unwrap();
    nesting.commit(plan);
    assert_eq!(nesting.deepest(), 6);
    assert!(nesting.waiting.is_empty());
}

#[test]
fn a_document_stored_too_deep_takes_insertions_but_no_deletions() {
    let doc = Doc::new();
    nested_maps(&doc, 8);
    let mut nesting = Nesting::default();
    let plan = nesting
        .plan([state(&doc).as_slice()], 4, Admit::Stored)
        .unwrap();
    nesting.commit(plan);
    assert_eq!(nesting.deepest(), 8);

    let text = doc.get_or_insert_text("t");
    let insert = {
        let mut txn = doc.transact_mut();
        text.insert(&mut txn, 0, "hello");
        txn.encode_update_v1()
    };
    nesting.plan([insert.as_slice()], 4, Admit::Member).unwrap();
    let root = doc.get_or_insert_map("m");
    let delete = {
        let mut txn = doc.transact_mut();
        root.remove(&mut txn, "k");
        txn.encode_update_v1()
    };
    let refused = nesting.plan([delete.as_slice()], 4, Admit::Member);
    assert_eq!(refused.unwrap_err(), Refused::DeletesInTooDeep(8));
}

#[test]
fn truncated_and_foreign_bytes_are_malformed_not_a_panic() {
    let doc = Doc::new();
    let update = nested_maps(&doc, 2).concat();
    for cut in 0..update.len() {
        let _ = Nesting::default().plan([&update[..cut]], 256, Admit::Member);
    }
    assert!(matches!(
        Nesting::default().plan([&[1u8, 1, 1, 0, 0xff][..]], 256, Admit::Member),
        Err(Refused::Malformed(_))
    ));
}

#[test]
fn a_range_an_update_skips_is_measured_when_its_blocks_arrive() {
    // Updates 1 and 3 merged carry a skip where update 2 belongs. The skip holds nothing; the
    // blocks arriving for its range later nest, and so does everything under them.
    let doc = Doc::with_client_id(7);
    let updates = nested_maps(&doc, 12);
    let merged = yrs::merge_updates_v1([updates[0].as_slice(), updates[2].as_slice()]).unwrap();
    let mut nesting = Nesting::default();
    let mut admit = |update: &[u8]| {
        let plan = nesting.plan([update], 10, Admit::Member)?;
        nesting.commit(plan);
        Ok::<_, Refused>(())
    };
    admit(&merged).unwrap();
    admit(&updates[1]).unwrap();
    for update in &updates[3..10] {
        admit(update).unwrap();
    }
    assert_eq!(admit(&updates[10]), Err(Refused::TooDeep(11)));
    // What yrs does with them, had the last one been let through.
    let room = Doc::new();
    for update in [&merged]
        .into_iter()
        .chain(&updates[1..2])
        .chain(&updates[3..11])
    {
        apply(&room, update);
    }
    let root = room.get_or_insert_map("m");
    assert_eq!(depth(&room.transact(), root), 11);
}

fn apply(doc: &Doc, update: &[u8]) {
    doc.transact_mut()
        .apply_update(yrs::Update::decode_v1(update).unwrap())
        .unwrap();
}

fn depth<T: ReadTxn>(txn: &T, mut map: MapRef) -> usize {
    let mut levels = 0;
    while let Some(yrs::Out::YMap(inner)) = map.get(txn, "k") {
        map = inner;
        levels += 1;
    }
    levels
}
