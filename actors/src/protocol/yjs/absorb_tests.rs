//! `YjsDoc::absorb`: merged log entries applied to a room's document.

use super::*;
use yrs::updates::decoder::Decode;
use yrs::{GetString, Text, Transact};

fn typed(client: u64, text: &str) -> Vec<u8> {
    let doc = yrs::Doc::with_client_id(client);
    let t = doc.get_or_insert_text("t");
    t.insert(&mut doc.transact_mut(), 0, text);
    let state = doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    state
}

fn text_of_frame(frame: &[u8]) -> String {
    let Ok(Message::Sync(SyncMessage::Update(update))) = Message::decode_v1(frame) else {
        panic!("an update frame")
    };
    let doc = yrs::Doc::new();
    let t = doc.get_or_insert_text("t");
    doc.transact_mut()
        .apply_update(Update::decode_v1(&update).unwrap())
        .unwrap();
    let txn = doc.transact();
    t.get_string(&txn)
}

#[test]
fn a_merged_entry_relays_only_what_the_document_lacked() {
    let (one, two) = (typed(1, "one"), typed(2, "two"));
    let mut doc = YjsDoc::load(&one).unwrap();
    let merged = yrs::merge_updates_v1([&one[..], &two[..]]).unwrap();

    let frame = doc.absorb(&merged).unwrap().expect("two is new");
    assert_eq!(text_of_frame(&frame), "two", "one was there already");
    assert_eq!(
        doc.absorb(&merged).unwrap(),
        None,
        "nothing new the second time"
    );
}
