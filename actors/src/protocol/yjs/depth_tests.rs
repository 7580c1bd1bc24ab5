//! The nesting bound at the document's edges: frames from members, read-only ones included,
//! stored states deeper than the bound, and the deepest document the bound allows.

use foldhash::HashSet;

use yrs::sync::{Message, SyncMessage};
use yrs::updates::encoder::Encode;
use yrs::{Any, Array, Doc, Map, MapPrelim, MapRef, ReadTxn, StateVector, Transact};

use super::{YjsDoc, YjsError, YjsLimits, DEPTH_CEILING};

fn limits(max_depth: usize) -> YjsLimits {
    YjsLimits {
        max_depth,
        ..YjsLimits::unlimited()
    }
}

/// A document whose map `m` nests `levels` maps, built one level at a time.
fn nested_maps(levels: usize) -> (Doc, MapRef) {
    let doc = Doc::new();
    let mut map = doc.get_or_insert_map("m");
    for _ in 0..levels {
        let mut txn = doc.transact_mut();
        map = map.insert(&mut txn, "k", MapPrelim::default());
    }
    (doc, map)
}

fn state(doc: &Doc) -> Vec<u8> {
    doc.transact()
        .encode_state_as_update_v1(&StateVector::default())
}

fn update_frame(update: Vec<u8>) -> Vec<u8> {
    Message::Sync(SyncMessage::Update(update)).encode_v1()
}

/// An array holding one value nested `levels` deep (about two bytes a level).
fn deep_array_frame(levels: usize) -> Vec<u8> {
    let mut value = Any::Null;
    for _ in 0..levels {
        value = Any::Array(vec![value].into());
    }
    let doc = Doc::new();
    let array = doc.get_or_insert_array("a");
    let mut txn = doc.transact_mut();
    array.push_back(&mut txn, value);
    update_frame(txn.encode_update_v1())
}

#[test]
fn a_deeply_nested_value_is_refused_from_writers_and_read_only_senders_alike() {
    let frame = deep_array_frame(7_500);
    for may_write in [true, false] {
        let mut doc = YjsDoc::new().with_limits(limits(256));
        let refused = doc.handle(&frame, may_write);
        assert!(matches!(refused, Err(YjsError::TooDeep(_))), "{refused:?}");
        assert_eq!(doc.encode_state(), YjsDoc::new().encode_state());
    }
}

#[test]
fn a_map_nested_past_the_limit_is_refused_and_the_document_keeps_what_it_had() {
    let (source, _) = nested_maps(300);
    let mut doc = YjsDoc::new().with_limits(limits(256));
    let refused = doc.handle(&update_frame(state(&source)), true);
    // Refused at the first level past the limit, before the rest is read.
    assert!(
        matches!(refused, Err(YjsError::TooDeep(ref why)) if why.contains("nests 257")),
        "{refused:?}"
    );
    assert!(doc.to_json().unwrap().as_object().unwrap().is_empty());
}

#[test]
fn a_document_stored_deeper_than_the_limit_syncs_but_is_not_rendered_and_takes_no_deletion() {
    let (source, _) = nested_maps(5_000);
    let stored = state(&source);
    let mut doc = YjsDoc::load_with(&stored, limits(256)).unwrap();

    let why = doc.to_json().unwrap_err().to_string();
    assert!(
        why.contains("5000") && why.contains("limits.max_yjs_depth"),
        "{why}"
    );
    // A fresh client's step 1 gets the whole document.
    let step1 = Message::Sync(SyncMessage::SyncStep1(StateVector::default())).encode_v1();
    let handled = doc.handle(&step1, false).unwrap();
    assert_eq!(handled.syncs.len(), 1);
    // Typing elsewhere in it is fine; deleting is not (yrs would recurse 5,000 levels).
    let text = source.get_or_insert_text("t");
    let typed = {
        let mut txn = source.transact_mut();
        yrs::Text::insert(&text, &mut txn, 0, "hi");
        txn.encode_update_v1()
    };
    assert!(doc.handle(&update_frame(typed), true).unwrap().changed);
    let root = source.get_or_insert_map("m");
    let deletion = {
        let mut txn = source.transact_mut();
        root.remove(&mut txn, "k");
        txn.encode_update_v1()
    };
    let refused = doc.handle(&update_frame(deletion.clone()), true);
    assert!(matches!(refused, Err(YjsError::TooDeep(_))), "{refused:?}");
    // A read-only sender's deletion is only dropped, as its updates always are.
    assert!(!doc.handle(&update_frame(deletion), false).unwrap().changed);
}

#[test]
fn the_deepest_document_the_ceiling_allows_is_rendered_and_deleted_on_a_small_stack() {
    let worker = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(|| {
            let (source, _) = nested_maps(DEPTH_CEILING - 1);
            let mut doc = YjsDoc::new().with_limits(limits(DEPTH_CEILING));
            doc.handle(&update_frame(state(&source)), true).unwrap();
            assert!(doc.to_json().is_ok());
            let root = source.get_or_insert_map("m");
            let deletion = {
                let mut txn = source.transact_mut();
                root.remove(&mut txn, "k");
                txn.encode_update_v1()
            };
            assert!(doc.handle(&update_frame(deletion), true).unwrap().changed);
            YjsDoc::load(&doc.encode_state()).unwrap();
        })
        .unwrap();
    worker.join().expect("no stack overflow");
}

#[test]
fn an_awareness_state_nested_past_the_limit_is_refused_from_a_read_only_sender() {
    // Every peer parses it; its depth is counted, not parsed, so any depth is cheap to refuse.
    let mut doc = YjsDoc::new().with_limits(limits(256));
    let owns = HashSet::default();
    let deep_state = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let mut clients = std::collections::HashMap::new();
    clients.insert(
        yrs::ClientID::new(1),
        yrs::sync::awareness::AwarenessUpdateEntry {
            clock: 1,
            json: deep_state.into(),
        },
    );
    let frame = Message::Awareness(yrs::sync::awareness::AwarenessUpdate { clients }).encode_v1();
    let refused = doc.handle_from(
        &frame,
        super::Sender {
            may_write: false,
            owns: &owns,
        },
    );
    assert!(
        matches!(refused, Err(YjsError::AwarenessLimit(_))),
        "{refused:?}"
    );
}
