//! Sync step 2 answers shared between joiners: one encoding per state vector while the document
//! stays as it is, a fresh one once it changed.

use super::*;
use yrs::{GetString, Text};

/// A sync update frame of `writer` appending `text` to the root text "t".
fn typing(writer: &Doc, text: &str) -> Vec<u8> {
    let t = writer.get_or_insert_text("t");
    let mut txn = writer.transact_mut();
    let end = t.len(&txn);
    t.insert(&mut txn, end, text);
    update_frame(&txn.encode_update_v1())
}

/// A document `writer` typed `text` into.
fn typed_by(writer: &Doc, text: &str) -> YjsDoc {
    let mut doc = YjsDoc::new();
    doc.handle(&typing(writer, text), true).unwrap();
    doc
}

fn step1(sv: StateVector) -> Vec<u8> {
    Message::Sync(SyncMessage::SyncStep1(sv)).encode_v1()
}

/// The one answer a client gets to its step 1 with `sv`.
fn ask(doc: &mut YjsDoc, sv: StateVector) -> Step2 {
    let mut handled = doc.handle(&step1(sv), false).unwrap();
    assert_eq!(handled.syncs.len(), 1, "one step 1, one answer");
    handled.syncs.remove(0)
}

/// The text of "t" in a client holding `held` that applied `answer`.
fn text_after(held: &Doc, answer: &Step2) -> String {
    use yrs::updates::decoder::Decode;
    held.transact_mut()
        .apply_update(Update::decode_v1(&answer.update).unwrap())
        .unwrap();
    held.get_or_insert_text("t").get_string(&held.transact())
}

fn same_buffer(a: &Bytes, b: &Bytes) -> bool {
    a.as_ptr() == b.as_ptr() && a.len() == b.len()
}

#[test]
fn joiners_with_the_same_state_vector_share_one_encoded_answer() {
    let writer = Doc::with_client_id(1);
    let mut doc = typed_by(&writer, &"a large document ".repeat(1_000));

    let first = ask(&mut doc, StateVector::default());
    let answers: Vec<Step2> = (0..50)
        .map(|_| ask(&mut doc, StateVector::default()))
        .collect();

    assert!(!first.shared, "the first joiner's answer is encoded for it");
    for answer in &answers {
        assert!(answer.shared);
        assert!(
            same_buffer(&answer.update, &first.update),
            "every joiner gets the same bytes, not a copy"
        );
    }
    assert_eq!(text_after(&Doc::new(), &first).len(), 17_000);
    assert!(
        same_buffer(&doc.state(), &first.update),
        "the state is the empty state vector's answer"
    );
}

#[test]
fn an_edit_drops_the_answers_and_the_next_joiner_gets_the_edit() {
    let writer = Doc::with_client_id(1);
    let mut doc = typed_by(&writer, "before");
    let before = ask(&mut doc, StateVector::default());

    doc.handle(&typing(&writer, " and after"), true).unwrap();
    let after = ask(&mut doc, StateVector::default());

    assert!(!after.shared, "encoded anew after the edit");
    assert!(!same_buffer(&after.update, &before.update));
    assert_eq!(text_after(&Doc::new(), &after), "before and after");
    assert_eq!(text_after(&Doc::new(), &before), "before", "sent as it was");
}

#[test]
fn content_merged_from_elsewhere_drops_the_answers_too() {
    let writer = Doc::with_client_id(1);
    let mut doc = typed_by(&writer, "here");
    let before = doc.state();

    let elsewhere = Doc::with_client_id(2);
    let t = elsewhere.get_or_insert_text("u");
    t.insert(&mut elsewhere.transact_mut(), 0, "there");
    let entry = elsewhere
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    doc.absorb_update(&entry).unwrap().expect("new content");

    let after = ask(&mut doc, StateVector::default());
    assert!(!after.shared && !same_buffer(&after.update, &before));
    let joiner = Doc::new();
    text_after(&joiner, &after);
    let u = joiner.get_or_insert_text("u");
    assert_eq!(u.get_string(&joiner.transact()), "there");
}

#[test]
fn an_update_that_adds_nothing_keeps_the_shared_answer() {
    let writer = Doc::with_client_id(1);
    let mut doc = typed_by(&writer, "all of it");
    let first = ask(&mut doc, StateVector::default());

    // A reconnecting provider's step 2 repeats what the document holds.
    let repeated = writer
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    let message = Message::Sync(SyncMessage::SyncStep2(repeated)).encode_v1();
    let handled = doc.handle(&message, true).unwrap();
    assert!(!handled.added);

    let next = ask(&mut doc, StateVector::default());
    assert!(next.shared && same_buffer(&next.update, &first.update));
}

#[test]
fn other_state_vectors_get_their_own_answers_of_what_they_lack() {
    let writer = Doc::with_client_id(1);
    let mut doc = typed_by(&writer, "first part");
    // A client that was there for the first part and missed the second.
    let behind = Doc::new();
    text_after(&behind, &ask(&mut doc, StateVector::default()));
    doc.handle(&typing(&writer, ", second part"), true).unwrap();

    let sv = behind.transact().state_vector();
    let whole = ask(&mut doc, StateVector::default());
    let lacking = ask(&mut doc, sv.clone());
    let again = ask(&mut doc, sv);

    assert!(!lacking.shared, "not the empty state vector's answer");
    assert!(
        lacking.update.len() < whole.update.len(),
        "only what it lacks"
    );
    assert!(again.shared && same_buffer(&again.update, &lacking.update));
    assert!(same_buffer(
        &ask(&mut doc, StateVector::default()).update,
        &whole.update
    ));
    assert_eq!(text_after(&behind, &lacking), "first part, second part");
}

#[test]
fn the_header_and_the_shared_update_are_the_y_protocols_message() {
    for len in [0, 1, 127, 128, 16_383, 16_384, 70_000] {
        let update = vec![7u8; len];
        let expected = Message::Sync(SyncMessage::SyncStep2(update.clone())).encode_v1();
        assert_eq!(step2::message(&update), expected, "{len} bytes");
    }
}
