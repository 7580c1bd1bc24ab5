//! A frame refused for the state limit and sent again: refused without a merge while nothing
//! could have made room for it, looked at afresh once something could.

use super::*;
use yrs::{GetString, Text};

const LIMIT: usize = 2_000;

fn limited() -> YjsDoc {
    YjsDoc::new().with_limits(YjsLimits {
        max_state_bytes: LIMIT,
        ..YjsLimits::unlimited()
    })
}

/// A sync update frame of `writer` appending `text` to the root text "t".
fn typing(writer: &Doc, text: &str) -> Vec<u8> {
    let t = writer.get_or_insert_text("t");
    let mut txn = writer.transact_mut();
    let end = t.len(&txn);
    t.insert(&mut txn, end, text);
    update_frame(&txn.encode_update_v1())
}

/// A sync update frame of `writer` deleting the first `len` characters of "t".
fn deleting(writer: &Doc, len: u32) -> Vec<u8> {
    let t = writer.get_or_insert_text("t");
    let mut txn = writer.transact_mut();
    t.remove_range(&mut txn, 0, len);
    update_frame(&txn.encode_update_v1())
}

fn text(doc: &YjsDoc) -> String {
    let d = doc.awareness.doc();
    d.get_or_insert_text("t").get_string(&d.transact())
}

fn refusal(result: Result<Handled, YjsError>) -> String {
    match result {
        Err(YjsError::StateLimit(why)) => why,
        other => panic!("expected a state limit refusal, got {other:?}"),
    }
}

#[test]
fn a_refused_frame_sent_again_is_refused_without_a_merge_while_others_keep_typing() {
    let mut doc = limited();
    let (alice, bob) = (Doc::with_client_id(1), Doc::with_client_id(2));
    // Bob shares Alice's document, so his edits land next to hers.
    doc.handle(&typing(&alice, &"a".repeat(1_000)), true)
        .unwrap();
    let oversized = typing(&bob, &"b".repeat(1_500));

    let first = refusal(doc.handle(&oversized, true));
    assert!(first.contains("limits.max_yjs_state_bytes"), "{first}");
    assert!(
        !first.contains("sent again"),
        "the first refusal merges: {first}"
    );
    for _ in 0..5 {
        // Alice keeps typing meanwhile: insertions only ever grow the document.
        doc.handle(&typing(&alice, "a"), true).unwrap();
        let again = refusal(doc.handle(&oversized, true));
        assert!(again.contains("sent again"), "{again}");
    }
    assert_eq!(text(&doc), "a".repeat(1_005), "nothing of Bob's applied");
}

#[test]
fn a_deletion_makes_room_and_the_same_frame_is_weighed_again() {
    let mut doc = limited();
    let alice = Doc::with_client_id(1);
    doc.handle(&typing(&alice, &"a".repeat(1_200)), true)
        .unwrap();
    let bob = Doc::with_client_id(2);
    let oversized = typing(&bob, &"b".repeat(900));
    refusal(doc.handle(&oversized, true));

    // Alice deletes most of her text: its content is collected, the document shrinks.
    doc.handle(&deleting(&alice, 1_100), true).unwrap();

    doc.handle(&oversized, true)
        .expect("the same frame fits now");
    let text = text(&doc);
    assert_eq!(text.matches('b').count(), 900, "Bob's text applied");
    assert_eq!(text.matches('a').count(), 100, "Alice's deletion kept");
}

#[test]
fn a_refused_frame_whose_edits_arrived_another_way_is_accepted_as_adding_nothing() {
    let mut doc = limited();
    let alice = Doc::with_client_id(1);
    doc.handle(&typing(&alice, &"a".repeat(1_000)), true)
        .unwrap();
    let bob = Doc::with_client_id(2);
    let oversized = typing(&bob, &"b".repeat(1_500));
    refusal(doc.handle(&oversized, true));

    // Bob's edits reach the document another way: another replica's log entry (whose room
    // accepted them before this one's document grew), which the document merges whatever its
    // size.
    let whole = bob
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    doc.absorb_update(&whole).unwrap();
    let before = doc.encode_state();

    let handled = doc
        .handle(&oversized, true)
        .expect("not refused from memory: the document holds Bob's blocks now");
    assert!(!handled.added, "it adds nothing");
    assert_eq!(doc.encode_state(), before);
}
